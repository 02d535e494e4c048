#!/usr/bin/env bash
# make query Q="SELECT …": SQL over the archiver's lake (.data/lake, or
# LAKE_URL) with DuckDB. The lake's topic is the view users_created.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
[ -n "${1:-}" ] || die 'give the SQL: make query Q="SELECT country_code, count(*) FROM users_created GROUP BY 1"'
# DuckDB makes this program large (~70 MB): it is built on its own, on first use.
go build -o .data/bin/lakequery ./cmd/lakequery
exec .data/bin/lakequery --lake-url "${LAKE_URL:-file://$PWD/.data/lake}" "$1"
