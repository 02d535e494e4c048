#!/usr/bin/env bash
# make up: PostgreSQL (logical replication), the Kafka-protocol broker, the
# users API and the streamer, all on loopback, in the foreground with prefixed
# logs. Ctrl-C or `make down` stops every process this script started, and
# nothing else. Data stays in .data/ until `make clean`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PG_PORT=${PG_PORT:-5432}
KAFKA_PORT=${KAFKA_PORT:-9092}
API_PORT=${API_PORT:-5000}
METRICS_PORT=${METRICS_PORT:-8081}
ARCHIVER_PORT=${ARCHIVER_PORT:-8082}
data=$PWD/.data
run=$data/run
mkdir -p "$run" "$data/log"
chmod 755 "$data"

if [ -f "$run/up.pid" ] && kill -0 "$(cat "$run/up.pid")" 2>/dev/null; then
	die "make up is already running (pid $(cat "$run/up.pid")): use it, or run 'make down'"
fi
pg_check_dir "$data/pg"
ensure_deps
for v in API_PORT METRICS_PORT ARCHIVER_PORT; do
	port_in_use "${!v}" && die "port ${!v} is in use: set $v to a free port"
done
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
	port_in_use "$KAFKA_PORT" && die "port $KAFKA_PORT is in use: set KAFKA_PORT to a free port (or KAFKA_BOOTSTRAP_SERVERS to use that Kafka)"
fi

log "[up] building"
build_programs "$data/bin"

echo $$ >"$run/up.pid"
pids=()
stop_all() {
	trap "" INT TERM; trap - EXIT
	log "[up] stopping"
	local i
	# Newest first, each waited for: the streamer drains into Kafka before the broker stops.
	for (( i=${#pids[@]}-1; i>=0; i-- )); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	pg_stop "$data/pg"
	[ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null || true
	rm -f "$run"/*.pid
	log "[up] stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run in the background with every line prefixed by [NAME].
start() {
	local name=$1; shift
	"$@" > >(sed -u "s/^/[$name] /") 2>&1 &
	pids+=($!)
	echo $! >"$run/$name.pid"
}

# start_service NAME CMD...: run one of our programs in the background. Its
# JSON log lines name it ("service") and go straight to the terminal: a
# prefixing pipe would cost the API a pipe write and a wake-up of sed per
# request, which is what a user measuring its speed would see.
start_service() {
	local name=$1; shift
	"$@" &
	pids+=($!)
	echo $! >"$run/$name.pid"
}

pg_init "$data/pg"
pg_start "$data/pg" "$PG_PORT" "$data/log/postgres.log"
tail -n 0 -F "$data/log/postgres.log" 2>/dev/null > >(sed -u 's/^/[postgres] /') &
tail_pid=$!
log "[up] PostgreSQL $(pg_version) on 127.0.0.1:$PG_PORT (wal_level=logical; PG_VERSION picks 15, 16, 17 or 18)"

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
	start kafka "$data/bin/devkafka" --port "$KAFKA_PORT" --data-dir "$data/kafka"
	wait_port "$KAFKA_PORT" 30 devkafka
	KAFKA_BOOTSTRAP_SERVERS=localhost:$KAFKA_PORT
	log "[up] Kafka-protocol broker (devkafka, franz-go kfake) on localhost:$KAFKA_PORT"
fi

. scripts/up-apps.sh

log "[up] ready. Ctrl-C or 'make down' stops everything."
wait
