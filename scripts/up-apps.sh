# Sourced by up.sh once PostgreSQL and Kafka are up. The schema is migrated
# by its owner (the superuser here); the API and the streamer then run as
# their least-privilege roles, given a development password.
psql_admin() { "$(pg_client_bin)/psql" -X -q -v ON_ERROR_STOP=1 "postgres://postgres:postgres@127.0.0.1:$PG_PORT/${1:-postgres}?sslmode=disable" -c "$2"; }

if [ -z "$("$(pg_client_bin)/psql" -X -tA "postgres://postgres:postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable" -c "SELECT 1 FROM pg_database WHERE datname = 'userstream'")" ]; then
	psql_admin postgres "CREATE DATABASE userstream"
fi
ADMIN_URL="postgres://postgres:postgres@127.0.0.1:$PG_PORT/userstream?sslmode=disable"
"$data/bin/api" migrate --database-url "$ADMIN_URL" 2>&1 | sed -u 's/^/[migrate] /'
psql_admin userstream "ALTER ROLE userstream_api LOGIN PASSWORD 'userstream_api'; ALTER ROLE userstream_streamer LOGIN PASSWORD 'userstream_streamer'"

start_service api env DATABASE_URL="postgres://userstream_api:userstream_api@127.0.0.1:$PG_PORT/userstream?sslmode=disable" \
	LISTEN_ADDR="127.0.0.1:$API_PORT" MIGRATE=false "$data/bin/api"
wait_port "$API_PORT" 30 api
log "[up] users API on http://localhost:$API_PORT (POST /users)"

start_service streamer env DATABASE_URL="postgres://userstream_streamer:userstream_streamer@127.0.0.1:$PG_PORT/userstream?sslmode=disable" \
	KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" METRICS_ADDR="127.0.0.1:$METRICS_PORT" MIGRATE=false "$data/bin/streamer" run
wait_port "$METRICS_PORT" 30 streamer
log "[up] streamer: slot users_cdc → topic users.created; health and metrics on http://localhost:$METRICS_PORT"

# The archiver rolls a file every 10 s here (ROLL_AGE; the program's default
# is 5 minutes), so `make query` shows a new user within seconds.
mkdir -p "$data/spool"
start_service archiver env KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" LAKE_URL="file://$data/lake" ROLL_AGE="${ROLL_AGE:-10s}" \
	SPOOL_DIR="$data/spool" METRICS_ADDR="127.0.0.1:$ARCHIVER_PORT" "$data/bin/archiver" run
wait_port "$ARCHIVER_PORT" 30 archiver
log "[up] archiver: topic users.created → Parquet files in .data/lake, a file every ${ROLL_AGE:-10s} (ROLL_AGE; 5 min by default); make query Q=\"SELECT * FROM users_created\"; health and metrics on http://localhost:$ARCHIVER_PORT"
