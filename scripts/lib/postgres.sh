# Shared by scripts/test.sh and the benchmarks: finds (or installs) the PostgreSQL server
# binaries and starts a throwaway cluster in a temp dir on a free port of 127.0.0.1.
# Source it, then call:   pg_start_cluster [extra server options]
# It sets PGBIN, PGTMP, PGPORT and PG_URL, and registers an EXIT trap that stops the
# cluster and removes the temp dir. Requires: step() and die() defined by the caller.

IS_ROOT=0
if [ "$(id -u)" -eq 0 ]; then IS_ROOT=1; fi

# ---------------------------------------------------------------------------
# PostgreSQL binaries
# ---------------------------------------------------------------------------
find_initdb() {
    local f
    # Highest version first (sort -V handles 9.6 < 10 < 15 < 16).
    for f in $(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -rV); do
        if [ -x "$f" ]; then
            printf '%s\n' "$f"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    step "installing PostgreSQL server (apt-get)"
    # Keep the package's post-install scripts from starting the distribution's own
    # cluster service: a temporary policy-rc.d that denies service starts (only if the
    # system doesn't already have one; removed right after).
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    } || rc=$?
    if [ "$added_policy" -eq 1 ]; then rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get install postgresql failed (exit $rc)"
}

pg_start_cluster() {
local extra_options="${1:-}"
step "checking PostgreSQL server binaries"
if ! INITDB="$(find_initdb)"; then
    if [ "$IS_ROOT" -eq 1 ]; then
        install_postgres
        INITDB="$(find_initdb)" || die "PostgreSQL installed but no /usr/lib/postgresql/*/bin/initdb found"
    else
        die "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb).
Install them (e.g. 'sudo apt-get install postgresql') or re-run this script as root."
    fi
fi
PGBIN="$(dirname "$INITDB")"
echo "using $PGBIN"

if [ "$IS_ROOT" -eq 1 ]; then
    id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the database server as"
fi

# ---------------------------------------------------------------------------
# Throwaway cluster
# ---------------------------------------------------------------------------
PGTMP=""
PG_STARTED=0

# Run a PostgreSQL command as the right user (postgres when we are root, refuses to run
# as root otherwise). Run from inside the temp dir so the postgres user never needs
# access to the current directory.
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then
        (cd "$PGTMP" && runuser -u postgres -- "$@")
    else
        (cd "$PGTMP" && "$@")
    fi
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # A sourcing script's own clean-up (its background jobs), before the cluster goes.
    if declare -F before_cleanup >/dev/null; then before_cleanup; fi
    if [ -n "$PGTMP" ] && [ -d "$PGTMP" ]; then
        if [ "$PG_STARTED" -eq 1 ] && [ -f "$PGTMP/data/postmaster.pid" ]; then
            echo "==> stopping test PostgreSQL"
            if ! as_pg "$PGBIN/pg_ctl" stop -D "$PGTMP/data" -m immediate -w -t 30 >/dev/null 2>&1; then
                # Last resort: kill the postmaster we started, by its pid.
                local pid
                pid="$(head -n 1 "$PGTMP/data/postmaster.pid" 2>/dev/null)"
                if [ -n "$pid" ]; then kill -QUIT "$pid" 2>/dev/null; sleep 1; kill -KILL "$pid" 2>/dev/null; fi
            fi
        fi
        rm -rf "$PGTMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Temp dir: must be traversable by the postgres user when we are root, and short enough
# for a unix socket path (limit ~107 bytes).
tmp_base="${TMPDIR:-/tmp}"
if [ "${#tmp_base}" -gt 60 ]; then tmp_base=/tmp; fi
if [ "$IS_ROOT" -eq 1 ] && ! runuser -u postgres -- test -w "$tmp_base" -a -x "$tmp_base" 2>/dev/null; then
    tmp_base=/tmp
fi
PGTMP="$(mktemp -d "$tmp_base/picloud-pg.XXXXXX")"
if [ "$IS_ROOT" -eq 1 ]; then
    chown postgres: "$PGTMP"
fi
chmod 700 "$PGTMP"
PGLOG="$PGTMP/postgres.log"

find_free_port() {
    local p
    if p="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null)" && [ -n "$p" ]; then
        printf '%s\n' "$p"
    else
        printf '%s\n' "$((20000 + RANDOM % 20001))"
    fi
}

step "starting throwaway PostgreSQL in $PGTMP"
# --locale=C: works on minimal machines without generated locales, deterministic ordering.
as_pg "$PGBIN/initdb" -D "$PGTMP/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$PGTMP/initdb.log" 2>&1 || {
    cat "$PGTMP/initdb.log" >&2
    die "initdb failed"
}

# The port can be grabbed by someone else between picking and binding: retry a few times.
PGPORT=""
for attempt in 1 2 3; do
    port="$(find_free_port)"
    PG_STARTED=1
    if as_pg "$PGBIN/pg_ctl" start -w -t 60 -D "$PGTMP/data" -l "$PGLOG" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PGTMP -c max_connections=300 -c shared_buffers=128MB $extra_options" \
        >/dev/null; then
        PGPORT="$port"
        break
    fi
    echo "PostgreSQL failed to start on port $port (attempt $attempt)" >&2
    # Make sure a half-started server is gone before trying again.
    as_pg "$PGBIN/pg_ctl" stop -D "$PGTMP/data" -m immediate -w >/dev/null 2>&1 || true
done
if [ -z "$PGPORT" ]; then
    echo "----- postgres log ($PGLOG) -----" >&2
    cat "$PGLOG" >&2 || true
    echo "---------------------------------" >&2
    die "could not start PostgreSQL"
fi
PG_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
}
