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

# shellcheck source=scripts/lib/postgres.sh
source "$REPO_ROOT/scripts/lib/postgres.sh"
# The tests need speed, not durability: fsync off.
pg_start_cluster "-c fsync=off"

export PICLOUD_TEST_DATABASE_URL="$PG_URL"
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
# @picloud/client (clients/typescript): lint, typecheck, unit tests, build, then the
# integration tests against target/debug/picloud and the headless Chromium test.
step "TypeScript client: chromium for the browser test"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        die "/usr/bin/chromium is missing; install Debian's chromium package (apt-get install chromium)"
    fi
fi

export PICLOUD_BIN="$REPO_ROOT/target/debug/picloud"
step "cargo build -p picloud (the client's integration tests run this binary)"
cargo build -p picloud

(
    cd "$REPO_ROOT/clients/typescript"
    step "TypeScript client: npm ci"
    npm ci --no-audit --no-fund
    step "TypeScript client: npm run lint"
    npm run lint
    step "TypeScript client: npm run typecheck"
    npm run typecheck
    step "TypeScript client: npm test (unit)"
    npm test
    step "TypeScript client: npm run build"
    npm run build
    step "TypeScript client: integration tests against $PICLOUD_BIN"
    npm run test:integration
    step "TypeScript client: browser test (headless Chromium)"
    npm run test:browser
)

# The dashboard's test steps go next (PICLOUD_TEST_DATABASE_URL is still exported and the
# database is still running at this point).

step "all tests passed"
