#!/usr/bin/env bash
# make bench: a private PostgreSQL (durable settings) and broker, then the
# benchmark program; prints the table and writes docs/benchmarks.md.
# BENCH_QUICK=1 shortens every step (for trying it out).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
command -v wrk >/dev/null || apt_install wrk
# pgbench, for the API's and the catch-up's ceilings, is in Debian's server
# package; version 15 drives every newer server.
[ -x "$(pg_client_bin)/pgbench" ] || apt_install postgresql-15
# perf profiles the whole streamer process, librdkafka's threads and C code
# included; the report goes without it where it cannot be installed.
command -v perf >/dev/null || { [ "$(id -u)" -eq 0 ] && apt_install linux-perf; } || log "perf not installed: the report shows Go's own profile only"

work=$(mktemp -d /tmp/userstream-bench.XXXXXX)
chmod 755 "$work"
trap 'private_stack_stop; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
private_stack_start "$work"
mkdir -p "$work/profiles"
BENCH_DATABASE_URL="$STACK_DSN" BENCH_KAFKA="$STACK_KAFKA" BENCH_BIN="$work/bin" BENCH_PG_BIN="$(pg_client_bin)" BENCH_BROKER_PID="${STACK_KAFKA_PID:-}" \
	BENCH_OUT="${BENCH_OUT:-$PWD/docs/benchmarks.md}" BENCH_PROFILE_DIR="${BENCH_PROFILE_DIR:-$work/profiles}" \
	go run ./bench
