#!/usr/bin/env bash
# make test: install what is missing, check formatting and lint, start a
# private PostgreSQL and Kafka-protocol broker on free ports (never the ones
# make up uses), run the whole suite with the race detector, and stop them
# whatever the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_deps
ensure_test_deps
# SeaweedFS (the lake's S3 server) builds while lint runs: minutes on a fresh
# machine, nothing once built.
ensure_weed >"${TMPDIR:-/tmp}/userstream-weed-build.log" 2>&1 &
weed_build=$!

# PKGS narrows the run to some packages (lint and fuzzing are then skipped):
#   make test PKGS=./streamer GOTESTFLAGS='-run Resume -v'
PKGS=${PKGS:-}
if [ -z "$PKGS" ]; then
log "== gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
[ -z "$unformatted" ] || die "gofmt would change: $unformatted"
go vet ./...
go tool staticcheck ./...
if links_jemalloc; then go vet -tags jemalloc ./internal/jemalloc/ ./cmd/streamer/ ./cmd/archiver/; fi
fi

work=$(mktemp -d /tmp/userstream-test.XXXXXX)
chmod 755 "$work"
s3_pid=""
trap 'private_stack_stop; [ -z "$s3_pid" ] || s3_stop "$s3_pid" "$work/s3"; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

log "== starting a private PostgreSQL ($(pg_bin)) and ${KAFKA_BOOTSTRAP_SERVERS:+the Kafka at }${KAFKA_BOOTSTRAP_SERVERS:-a private devkafka broker}"
PG_FAST=1 private_stack_start "$work"
export USERSTREAM_TEST_DATABASE_URL="$STACK_DSN"
export USERSTREAM_TEST_BIN="$work/bin"
export USERSTREAM_TEST_KAFKA="$STACK_KAFKA"
# The lake's tests write to a real S3 server too (SeaweedFS).
wait "$weed_build" || { cat "${TMPDIR:-/tmp}/userstream-weed-build.log" >&2; die "could not build SeaweedFS"; }
read -r s3_pid s3_port < <(s3_up "$work/s3")
export USERSTREAM_TEST_S3="127.0.0.1:$s3_port"

log "== go test -race ./..."
go test -race -count=1 -timeout 18m ${GOTESTFLAGS:-} ${PKGS:-./...}
[ -n "$PKGS" ] && exit 0

log "== fuzzing POST /users bodies and GET /users/{id} ids (${FUZZTIME:-10s} each)"
for target in FuzzCreateUserNeverPanicsNorAnswers5xx FuzzGetUserNeverPanicsNorAnswers5xx; do
	go test -run='^$' -fuzz="^$target\$" -fuzztime="${FUZZTIME:-10s}" ./api
done

# Every other supported PostgreSQL major runs what depends on the server:
# the replication package's version pins, the streamer's end-to-end tests
# of what the server does (streaming, resuming, the snapshot, slots,
# publications, exactly-once's proof, failover settings and timelines) and
# the recovery and failover scenarios in exactly-once mode, the stricter.
# Without the race detector: the run above had it, on the same code, with
# every test in both modes. PG_MATRIX lists the majors (PG_MATRIX= skips
# them).
private_stack_stop
matrix=${PG_MATRIX-$(for v in $PG_SUPPORTED_VERSIONS; do [ "$v" = "$(pg_version)" ] || echo "$v"; done)}
for v in $matrix; do
	log "== PostgreSQL $v: replication, streamer, recovery and failover end to end"
	export PG_VERSION=$v
	ensure_deps
	rm -rf "$work/pg" "$work/kafka" "$work/kafka.addr"
	PG_FAST=1 private_stack_start "$work"
	export USERSTREAM_TEST_DATABASE_URL="$STACK_DSN" USERSTREAM_TEST_KAFKA="$STACK_KAFKA"
	go test -count=1 -timeout 15m ./replication
	go test -count=1 -timeout 15m ./streamer -run '^(TestExactlyOnce(ThreeSIGKILLs|Resumes|SkipsNothing)|TestAnExistingSlot|TestAnOlderTimeline|TestDuringAKafkaOutage|TestTheFirstRun|TestAStartLSN|TestStartLSN|TestADroppedPublication|TestARenamed|TestAPublicationChange|TestASnapshotInterrupted|TestEveryUserCreated|TestAfterSIGTERM|TestASIGKILLed|TestTheSlotAdvances|TestBackfillMissingRefuses|TestAFailedChunkQuery|TestWithPoisonStop)'
	go test -count=1 -timeout 15m ./faults -run '(TestARestore|TestABackfillInterrupted|TestARecoveryFinishes|Failover|FormerPrimary|TestADroppedSlot)/exactly-once'
	private_stack_stop
done
