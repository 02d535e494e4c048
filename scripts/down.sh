#!/usr/bin/env bash
# make down: stop what make up started, and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
run=.data/run
if [ -f "$run/up.pid" ] && kill -TERM "$(cat "$run/up.pid")" 2>/dev/null; then
	for _ in $(seq 1 150); do kill -0 "$(cat "$run/up.pid" 2>/dev/null || echo 0)" 2>/dev/null || break; sleep 0.2; done
fi
# Whatever is left from an up.sh that was killed outright.
for f in "$run"/*.pid; do
	[ -f "$f" ] || continue
	pid=$(cat "$f")
	case "$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" in
		*"$PWD/.data/bin/"*) kill -TERM "$pid" 2>/dev/null || true ;;
	esac
	rm -f "$f"
done
[ -d .data/pg ] && pg_stop .data/pg
log "stopped"
