#!/usr/bin/env bash
# Run the whole PiCloud test suite. This is the ONE command used locally and in CI.
#
#   scripts/test.sh [extra args passed to `cargo test`]
#
# What it does:
#   1. makes sure PostgreSQL server binaries are installed (installs them with apt when root),
#   2. starts a throwaway PostgreSQL cluster in a temp dir on a free port of 127.0.0.1
#      and exports PICLOUD_TEST_DATABASE_URL (tests create their own databases from it),
#   3. runs cargo fmt --check, cargo clippy -D warnings, cargo test,
#   4. always stops the cluster and removes the temp dir on exit.
#
# Environment knobs (debugging):
#   PICLOUD_TEST_ONLY_DB=1   only start the database, print `select version()` through
#                            psql, then stop it and exit (no cargo steps).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PGTMP -c fsync=off -c max_connections=300 -c shared_buffers=128MB" \
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

export PICLOUD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
echo "PICLOUD_TEST_DATABASE_URL=$PICLOUD_TEST_DATABASE_URL"

if [ "${PICLOUD_TEST_ONLY_DB:-}" = "1" ]; then
    step "PICLOUD_TEST_ONLY_DB=1: checking the database only"
    "$PGBIN/psql" "$PICLOUD_TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -c 'select version()'
    exit 0
fi

# ---------------------------------------------------------------------------
# Rust
# ---------------------------------------------------------------------------
cd "$REPO_ROOT"

step "checking Rust toolchain components"
missing=()
cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
if [ "${#missing[@]}" -gt 0 ]; then
    command -v rustup >/dev/null 2>&1 || die "missing ${missing[*]} and rustup is not available to install them"
    rustup component add "${missing[@]}"
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace $*"
cargo test --workspace "$@"

# ---------------------------------------------------------------------------
# TypeScript client and dashboard tests
# ---------------------------------------------------------------------------
# HOOK: the TypeScript client and dashboard test steps will be added here (npm ci +
# npm test in their directories). PICLOUD_TEST_DATABASE_URL is still exported and the
# database is still running at this point.

step "all tests passed"
