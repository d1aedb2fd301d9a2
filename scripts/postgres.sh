#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite.
#
#   scripts/postgres.sh start    start it (initdb on first use; reuses a running one)
#   scripts/postgres.sh url      print its SQLAlchemy URL
#   scripts/postgres.sh status   exit 0 when it is running
#   scripts/postgres.sh stop     stop it (the data stays for the next start)
#   scripts/postgres.sh destroy  stop it and delete its data
#
# The cluster lives in .pgdata/ (gitignored), listens on 127.0.0.1 only, on a free
# port from 55432 up, with trust authentication, and holds the database chatops_test.
# Missing server binaries are installed with apt-get (Debian). PostgreSQL refuses to
# run as root, so as root the server runs as the `postgres` system user; when that
# user cannot reach the repository, the data goes to a temporary directory instead
# and .pgdata/location says where.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STATE="$REPO/.pgdata"
DB="chatops_test"
FIRST_PORT=55432
LAST_PORT=55532

say() { echo "postgres.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- binaries --------------------------------------------------------------------------

find_bindir() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/pg_ctl" && -x "$dir/initdb" && -x "$dir/postgres" ]] || continue
        # Highest major version wins (sort -V handles 9.6 < 15).
        best="$(printf '%s\n%s\n' "$best" "$dir" | sed '/^$/d' | sort -V | tail -n 1)"
    done
    [[ -n "$best" ]] && echo "$best"
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 \
        || die "PostgreSQL server binaries not found and apt-get is unavailable; install PostgreSQL"
    if [[ $EUID -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        die "PostgreSQL server binaries not found, and this user cannot install them (not root, no sudo).
  Install them with: apt-get install postgresql   (or set CHATOPS_TEST_POSTGRES_URL yourself)"
    fi
    say "PostgreSQL server binaries not found; installing them with apt-get (a minute or so)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

BINDIR=""
need_binaries() {
    BINDIR="$(find_bindir || true)"
    if [[ -z "$BINDIR" ]]; then
        install_postgres
        BINDIR="$(find_bindir || true)"
        [[ -n "$BINDIR" ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/pg_ctl appeared"
    fi
}

# --- who runs the server ---------------------------------------------------------------

PGUSER_OS="$(id -un)"
ensure_server_user() {
    [[ $EUID -eq 0 ]] || return 0 # a normal user runs the server itself
    PGUSER_OS=postgres
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

# Run a command as the server's user, from /, so an unreadable cwd does not matter.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# --- where the data lives --------------------------------------------------------------

# Prints the directory that holds data/ and postgres.log (without creating anything).
location() {
    if [[ -f "$STATE/location" ]]; then
        cat "$STATE/location"
    else
        echo "$STATE"
    fi
}

prepare_location() {
    mkdir -p "$STATE"
    local loc
    loc="$(location)"
    if [[ -d "$loc/data" && -f "$loc/data/PG_VERSION" ]]; then
        return 0
    fi
    # First use (or the temporary location vanished, e.g. after a reboot): choose again.
    rm -f "$STATE/location"
    loc="$STATE"
    if [[ $EUID -eq 0 ]]; then
        chown postgres: "$STATE"
        chmod 0700 "$STATE"
        if ! as_pg test -w "$STATE" -a -x "$STATE"; then
            loc="$(mktemp -d /tmp/chatops-pg.XXXXXX)"
            chown postgres: "$loc"
            chmod 0700 "$loc"
            echo "$loc" >"$STATE/location"
            say "user postgres cannot reach $STATE; keeping the cluster in $loc"
        fi
    fi
}

# --- ports -----------------------------------------------------------------------------

port_free() {
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# --- the cluster -----------------------------------------------------------------------

running() {
    local loc
    loc="$(location)"
    [[ -f "$loc/data/PG_VERSION" && -f "$STATE/port" ]] || return 1
    [[ -n "$BINDIR" ]] || BINDIR="$(find_bindir || true)"
    [[ -n "$BINDIR" ]] || return 1
    as_pg "$BINDIR/pg_ctl" -D "$loc/data" status >/dev/null 2>&1
}

init_cluster() {
    local data="$1"
    if [[ -f "$data/PG_VERSION" ]]; then
        local major
        major="$(basename "$(dirname "$BINDIR")")"
        if [[ "$(cat "$data/PG_VERSION")" == "$major" ]]; then
            return 0
        fi
        say "the old cluster was made by PostgreSQL $(cat "$data/PG_VERSION"); recreating it for $major"
    fi
    rm -rf "$data"
    say "creating a throwaway cluster in $data"
    as_pg "$BINDIR/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
    cat >>"$data/postgresql.conf" <<'EOF'

# chatops test cluster: loopback only, and speed over durability (the data is throwaway)
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start() {
    need_binaries
    ensure_server_user
    if running; then
        say "already running on port $(cat "$STATE/port")"
        return 0
    fi
    prepare_location
    local loc data log port out
    loc="$(location)"
    data="$loc/data"
    log="$loc/postgres.log"
    init_cluster "$data"
    # A crash can leave a stale pid file behind; pg_ctl copes with that itself.
    for ((port = FIRST_PORT; port <= LAST_PORT; port++)); do
        port_free "$port" || continue
        if out="$(as_pg "$BINDIR/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 60 start 2>&1)"; then
            echo "$port" >"$STATE/port"
            break
        fi
        # Lost a race for the port (try the next one), or a real failure: the log tells which.
        if ! tail -n 5 "$log" 2>/dev/null | grep -qi "address already in use"; then
            echo "$out" >&2
            tail -n 20 "$log" >&2 || true
            die "PostgreSQL did not start (log: $log)"
        fi
    done
    ((port <= LAST_PORT)) || die "no free port between $FIRST_PORT and $LAST_PORT"
    recreate_database "$port"
    say "running on 127.0.0.1:$port (database $DB)"
}

recreate_database() {
    local port="$1"
    # A fresh database on every start: tests never see an earlier run's rows.
    as_pg env PGOPTIONS="-c client_min_messages=warning" "$BINDIR/dropdb" -h 127.0.0.1 -p "$port" -U postgres --if-exists "$DB"
    as_pg "$BINDIR/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB"
}

stop() {
    if running; then
        as_pg "$BINDIR/pg_ctl" -D "$(location)/data" -m fast -w -t 60 stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

destroy() {
    stop
    local loc
    loc="$(location)"
    if [[ "$loc" != "$STATE" ]]; then
        rm -rf "$loc"
    fi
    rm -rf "$STATE"
}

url() {
    [[ -f "$STATE/port" ]] || die "no cluster yet; run: scripts/postgres.sh start"
    echo "postgresql+psycopg://postgres@127.0.0.1:$(cat "$STATE/port")/$DB"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) running ;;
    url) url ;;
    destroy) destroy ;;
    *)
        echo "usage: $0 start|stop|status|url|destroy" >&2
        exit 2
        ;;
esac
