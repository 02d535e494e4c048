#!/usr/bin/env bash
# make test: install what is missing, check formatting and lint, start a
# private PostgreSQL and Kafka-protocol broker on free ports (never the ones
# make up uses), run the whole suite with the race detector, and stop them
# whatever the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps

# PKGS narrows the run to some packages (lint and fuzzing are then skipped):
#   make test PKGS=./streamer GOTESTFLAGS='-run Resume -v'
PKGS=${PKGS:-}
if [ -z "$PKGS" ]; then
log "== gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
[ -z "$unformatted" ] || die "gofmt would change: $unformatted"
go vet ./...
go tool staticcheck ./...
fi

work=$(mktemp -d /tmp/userstream-test.XXXXXX)
chmod 755 "$work"
pgdir="$work/pg"
kafka_pid=""
cleanup() {
	[ -n "$kafka_pid" ] && kill -TERM "$kafka_pid" 2>/dev/null && wait "$kafka_pid" 2>/dev/null || true
	pg_stop "$pgdir"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "== starting a private PostgreSQL ($(pg_bin))"
PG_FAST=1 pg_init "$pgdir"
for attempt in 1 2 3; do
	port=$(free_port)
	if (pg_start "$pgdir" "$port" "$work/pg.log"); then break; fi
	[ "$attempt" -eq 3 ] && die "could not start the test PostgreSQL"
done
export USERSTREAM_TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres?sslmode=disable"
export USERSTREAM_TEST_PG_BIN="$(pg_bin)"

go build -o "$work/bin/" ./cmd/...
export USERSTREAM_TEST_BIN="$work/bin"

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
	log "== using the Kafka at $KAFKA_BOOTSTRAP_SERVERS"
	export USERSTREAM_TEST_KAFKA="$KAFKA_BOOTSTRAP_SERVERS"
else
	log "== starting a private Kafka-protocol broker (devkafka)"
	"$work/bin/devkafka" --port 0 --data-dir "$work/kafka" --addr-file "$work/kafka.addr" 2>"$work/kafka.log" &
	kafka_pid=$!
	for _ in $(seq 1 100); do [ -s "$work/kafka.addr" ] && break; sleep 0.1; done
	[ -s "$work/kafka.addr" ] || { cat "$work/kafka.log" >&2; die "devkafka did not start"; }
	export USERSTREAM_TEST_KAFKA="$(cat "$work/kafka.addr")"
fi

log "== go test -race ./..."
go test -race -count=1 -timeout 18m ${GOTESTFLAGS:-} ${PKGS:-./...}
[ -n "$PKGS" ] && exit 0

log "== fuzzing request decoding (${FUZZTIME:-10s})"
go test -run='^$' -fuzz=FuzzCreateUserNeverPanicsNorAnswers5xx -fuzztime="${FUZZTIME:-10s}" ./api
