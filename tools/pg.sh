#!/bin/sh
# tools/pg.sh - a private PostgreSQL cluster for development and tests.
#
#   tools/pg.sh init   [DIR] [PORT]   create the cluster (if missing), role and database "bus"
#   tools/pg.sh start  [DIR] [PORT]   init if needed, start, wait until it accepts connections
#   tools/pg.sh stop   [DIR]          fast shutdown
#   tools/pg.sh restart [DIR]         fast restart (used by tests: DB down under load)
#   tools/pg.sh status [DIR]          exit 0 when running
#   tools/pg.sh url    [DIR] [PORT]   prints the DATABASE_URL of the cluster (with the password)
#
# Defaults: DIR=var/pg, PORT=55432 (env PG_DIR / PG_PORT also work). Durable: fsync,
# full_page_writes and synchronous_commit on, given on the server's command line at every start
# (so a cluster made by an older pg.sh, whose postgresql.conf says "fsync = off", is durable
# too). PG_FSYNC=off trades fsync and full_page_writes for speed (tests: survives a process
# crash, not a power loss; PG_DURABLE=0 is its old name); synchronous commits stay on whatever is
# asked, and lib/db.c sets them on every connection anyway. DEVELOPMENT ONLY: production points
# the product at a real server with DATABASE_URL (e.g.
# postgresql://bus:PASSWORD@db.example:5432/bus) and never runs this script.
#
# Security (docs/security.md): the cluster listens on 127.0.0.1 and on a socket in DIR/sock
# (mode 0700), both with SCRAM-SHA-256 password authentication. init generates two passwords
# into DIR (mode 0700, files 0600): DIR/superuser.password for the superuser "postgres" (this
# script and the tests' set-up only) and DIR/bus.password for the product's role "bus", which is
# no superuser and may not create roles or databases: it owns the database "bus" and the schemas
# it creates, nothing else (so no COPY ... FROM PROGRAM, no reading server files). A cluster made
# by an older pg.sh (trust authentication, bus a superuser) is brought to this at its next start.
#
# PostgreSQL refuses to run as root: as root, initdb/pg_ctl run as the "postgres" system user
# (runuser) and DIR is chown'ed to it; as a normal user they run directly.
set -eu

cmd=${1:-}
DIR=${2:-${PG_DIR:-var/pg}}
PORT=${3:-${PG_PORT:-55432}}

find_bin() {
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
        return
    fi
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/$1" ]; then
            echo "$d/$1"
            return
        fi
    done
    echo "pg.sh: $1 not found (install postgresql: make deps)" >&2
    exit 1
}

INITDB=$(find_bin initdb)
PG_CTL=$(find_bin pg_ctl)
PSQL=$(find_bin psql)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
DATA="$DIR/data"
LOG="$DIR/postgres.log"
SOCK="$DIR/sock"
SUPER_PW="$DIR/superuser.password"
BUS_PW="$DIR/bus.password"

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

own_dir() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || {
            echo "pg.sh: running as root needs the 'postgres' system user" >&2
            exit 1
        }
        chown postgres: "$DIR"
        [ -d "$DATA" ] && chown -R postgres: "$DATA"
        [ -d "$SOCK" ] && chown postgres: "$SOCK"
        [ -f "$LOG" ] && chown postgres: "$LOG"
        [ -f "$SUPER_PW" ] && chown postgres: "$SUPER_PW"
        # The postgres user must be able to reach DIR through its parents.
        p=$DIR
        while [ "$p" != / ]; do
            p=$(dirname "$p")
            chmod o+x "$p" 2>/dev/null || true
        done
    fi
    return 0
}

# new_password FILE: a random password (hex: no quoting in URLs or SQL) in FILE, mode 0600.
new_password() {
    (umask 077 && openssl rand -hex 24 >"$1")
}

# SCRAM for everyone, on the socket and on 127.0.0.1 only (see header).
write_hba() {
    cat >"$DATA/pg_hba.conf" <<EOF
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
EOF
    [ "$(id -u)" = 0 ] && chown postgres: "$DATA/pg_hba.conf"
    return 0
}

# psql as the superuser over the private socket.
super_psql() {
    as_pg env PGPASSWORD="$(cat "$SUPER_PW")" "$PSQL" -X -h "$SOCK" -p "$PORT" -U postgres "$@"
}

do_init() {
    mkdir -p "$SOCK"
    chmod 700 "$DIR" "$SOCK"
    [ -f "$SUPER_PW" ] || new_password "$SUPER_PW"
    [ -f "$BUS_PW" ] || new_password "$BUS_PW"
    own_dir
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_pg "$INITDB" -D "$DATA" -U postgres -A scram-sha-256 --pwfile="$SUPER_PW" -E UTF8 \
            --no-locale >"$DIR/initdb.log" 2>&1 || {
            cat "$DIR/initdb.log" >&2
            exit 1
        }
        write_hba
        cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 200
EOF
        [ "$(id -u)" = 0 ] && chown postgres: "$DATA/pg_hba.conf" "$DATA/postgresql.conf"
    elif grep -q trust "$DATA/pg_hba.conf"; then
        # A cluster of an older pg.sh: set the superuser's password while trust still lets us
        # in, then require passwords (provision fixes the role bus).
        OLD_TRUST=1
    fi
}

# The role bus (no superuser, no role or database creation, its password) and its database.
provision() {
    super_psql -q -d postgres -v ON_ERROR_STOP=1 -v pw="$(cat "$BUS_PW")" <<'EOF'
SELECT 'CREATE ROLE bus LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bus')\gexec
ALTER ROLE bus LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD :'pw';
SELECT 'CREATE DATABASE bus OWNER bus' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'bus')\gexec
EOF
}

url() {
    echo "postgresql://bus:$(cat "$BUS_PW")@127.0.0.1:$PORT/bus"
}

do_start() {
    OLD_TRUST=0
    do_init
    if as_pg "$PG_CTL" -D "$DATA" status >/dev/null 2>&1; then
        return 0
    fi
    # fsync: see the header. `pg_ctl restart` reuses these options (postmaster.opts).
    FSYNC=on
    if [ "${PG_FSYNC:-on}" = off ] || [ "${PG_DURABLE:-1}" = 0 ]; then
        FSYNC=off
    fi
    DURABILITY="-c fsync=$FSYNC -c full_page_writes=$FSYNC -c synchronous_commit=on"
    as_pg "$PG_CTL" -D "$DATA" -l "$LOG" -o "-p $PORT -k $SOCK $DURABILITY" -w -t 60 start \
        >/dev/null || {
        tail -n 30 "$LOG" >&2
        exit 1
    }
    if [ "$OLD_TRUST" = 1 ]; then
        echo "ALTER ROLE postgres PASSWORD :'pw';" | as_pg "$PSQL" -X -q -h "$SOCK" -p "$PORT" \
            -U postgres -d postgres -v ON_ERROR_STOP=1 -v pw="$(cat "$SUPER_PW")" >/dev/null
        write_hba
        as_pg "$PG_CTL" -D "$DATA" reload >/dev/null
    fi
    provision
}

case "$cmd" in
init)
    do_init
    ;;
start)
    do_start
    url
    ;;
stop)
    if [ -f "$DATA/PG_VERSION" ]; then
        as_pg "$PG_CTL" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
restart)
    as_pg "$PG_CTL" -D "$DATA" -m fast -w -t 60 restart -l "$LOG" >/dev/null
    ;;
status)
    as_pg "$PG_CTL" -D "$DATA" status >/dev/null 2>&1
    ;;
url)
    url
    ;;
*)
    echo "usage: tools/pg.sh init|start|stop|restart|status|url [DIR] [PORT]" >&2
    exit 2
    ;;
esac
