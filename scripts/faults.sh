#!/usr/bin/env bash
# make faults: every fault scenario at full size, one at a time, each on its
# own private PostgreSQL cluster and devkafka process; writes
# docs/reliability.md. Bounded: every scenario ends by itself and cleans up
# every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
work=$(mktemp -d /tmp/userstream-faults.XXXXXX)
trap 'rm -rf "$work"' EXIT
build_programs "$work/bin"
USERSTREAM_TEST_BIN="$work/bin" go test -count=1 -timeout 60m -parallel 1 -v ./faults \
	-args -faults.full -faults.report "$PWD/docs/reliability.md"
