#!/usr/bin/env bash
# make faults: every fault scenario at full size, one at a time, each on its
# own private PostgreSQL cluster and devkafka process; writes
# docs/reliability.md. Bounded: every scenario ends by itself and cleans up
# every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
ensure_weed # the archiver scenarios on S3 start their own SeaweedFS
work=$(mktemp -d /tmp/userstream-faults.XXXXXX)
trap 'rm -rf "$work"' EXIT
build_programs "$work/bin"
# Every scenario on the default major, then those that depend on the
# server's version (restores, failovers) on the newest too; one report.
USERSTREAM_TEST_BIN="$work/bin" go test -count=1 -timeout 60m -parallel 1 -v ./faults \
	-args -faults.full -faults.rows "$work/rows.json"
newest=${PG_SUPPORTED_VERSIONS##* }
if [ "$(pg_version)" != "$newest" ]; then
	export PG_VERSION=$newest
	ensure_deps
	USERSTREAM_TEST_BIN="$work/bin" go test -count=1 -timeout 60m -parallel 1 -v \
		-run 'TestARestore|Failover|FormerPrimary' ./faults \
		-args -faults.full -faults.rows "$work/rows.json" -faults.report "$PWD/docs/reliability.md"
else
	USERSTREAM_TEST_BIN="$work/bin" go test -count=1 -run '^$' ./faults \
		-args -faults.rows "$work/rows.json" -faults.report "$PWD/docs/reliability.md"
fi
