#!/usr/bin/env bash
# run_regress.sh: the output plugin's pg_regress suite against a throwaway cluster.
#
# Creates a cluster with initdb in a temporary directory on a free loopback port,
# configured for logical decoding (wal_level=logical, logical_decoding_work_mem=64kB
# so that the spill path runs, walship allowed in output_plugin_libraries where the
# server has that setting), runs every tests/regress/sql/*.sql against it with
# pg_regress --use-existing, stops the cluster and exits non-zero on any failure,
# printing regression.diffs.
#
# walship must be installed (cmake --install <build dir>) in the PostgreSQL that
# pg_config (or $PG_CONFIG) names. Run as root, the cluster runs as the postgres OS
# user. Usage: tests/run_regress.sh [test ...]   (default: every test)
#
# Environment: PG_CONFIG; WALSHIP_EXTRA_CONF, extra postgresql.conf lines (e.g.
# dynamic_library_path to test an uninstalled build); KEEP_CLUSTER=1 leaves the
# data directory behind for inspection.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
regress_dir="$here/regress"
PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$("$PG_CONFIG" --bindir)
pg_regress="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress"
[ -x "$pg_regress" ] || { echo "pg_regress not found at $pg_regress" >&2; exit 2; }

if [ $# -gt 0 ]; then
    tests=("$@")
else
    tests=()
    for f in "$regress_dir"/sql/*.sql; do
        tests+=("$(basename "$f" .sql)")
    done
fi

# initdb refuses to run as root: the cluster then belongs to the postgres OS user.
as_owner() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    owner=postgres
    as_owner() { runuser -u "$owner" -- "$@"; }
else
    owner=$(id -un)
fi

tmp=$(mktemp -d /tmp/walship-regress.XXXXXX)
chmod 755 "$tmp"
[ "$(id -u)" = 0 ] && chown "$owner" "$tmp"
data="$tmp/data"
log="$tmp/server.log"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)

started=no
cleanup() {
    if [ "$started" = yes ]; then
        as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
        echo "cluster left in $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

as_owner "$bindir/initdb" -D "$data" -U "$owner" -A trust -E UTF8 --locale=C --no-sync >"$tmp/initdb.log" 2>&1 ||
    { cat "$tmp/initdb.log"; exit 2; }

cat >>"$data/postgresql.conf" <<EOF

# walship regression tests
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_prepared_transactions = 10
logical_decoding_work_mem = 64kB
fsync = off
timezone = 'UTC'
datestyle = 'ISO, MDY'
intervalstyle = 'postgres'
lc_messages = 'C'
extra_float_digits = 1
${WALSHIP_EXTRA_CONF:-}
EOF

as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null ||
    { cat "$log"; exit 2; }
started=yes

psql_admin() {
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" -U "$owner" -d postgres -Atc "$1"
}

# Servers with output_plugin_libraries refuse every plugin not listed there; older
# servers refuse to start with a setting they do not know, so ask before writing it.
if [ "$(psql_admin "SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'")" = 1 ]; then
    current=$(psql_admin "SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'")
    case ",${current// /}," in
    *,walship,*) ;;
    *)
        echo "output_plugin_libraries = '${current:+$current, }walship'" >>"$data/postgresql.conf"
        as_owner "$bindir/pg_ctl" -D "$data" reload >/dev/null
        for _ in $(seq 1 100); do
            case "$(psql_admin "SHOW output_plugin_libraries")" in
            *walship*) break ;;
            esac
            sleep 0.1
        done
        ;;
    esac
fi

dbname=walship_regression
psql_admin "CREATE DATABASE $dbname TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"

status=0
(cd "$regress_dir" &&
    "$pg_regress" --use-existing --bindir="$bindir" --host="$tmp" --port="$port" --user="$owner" \
        --dbname="$dbname" --inputdir="$regress_dir" --outputdir="$regress_dir" \
        "${tests[@]}") || status=$?

if [ $status -ne 0 ]; then
    if [ -f "$regress_dir/regression.diffs" ]; then
        echo "======== regression.diffs ========"
        cat "$regress_dir/regression.diffs"
    fi
    echo "======== server log (last 50 lines) ========"
    tail -n 50 "$log"
fi
exit $status
