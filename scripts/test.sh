#!/usr/bin/env bash
# Run the whole PiCloud test suite. This is the ONE command used locally and in CI.
#
#   scripts/test.sh [extra args passed to `cargo test`]
#
# What it does:
#   1. makes sure PostgreSQL server binaries are installed (installs them with apt when root),
#   2. starts a throwaway PostgreSQL cluster in a temp dir on a free port of 127.0.0.1
#      and exports PICLOUD_TEST_DATABASE_URL (tests create their own databases from it),
#   3. installs Chromium and the Python venvs in the background, and runs the TypeScript
#      client's and the dashboard's checks there (they fail when generated files or
#      dashboard/dist are stale), at a lower priority than the Rust build,
#   4. runs cargo fmt --check, then builds with clippy's lints (-D warnings) and the
#      tests; then runs the Rust tests beside the steps that need the built binary:
#      schemathesis; the Rust SDK's docs and the Python SDK's checks; the TypeScript
#      client's and the dashboard's tests in headless Chromium,
#   5. always stops the cluster, its background jobs and removes the temp dir on exit.
#
# Environment knobs (debugging):
#   PICLOUD_TEST_ONLY_DB=1   only start the database, print `select version()` through
#                            psql, then stop it and exit (no cargo steps).
#   PICLOUD_SKIP_SCHEMATHESIS=1  skip the schemathesis step (local debugging only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

step() { printf '\n==> [%4ds] %s\n' "$SECONDS" "$*"; }
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

# Background jobs: `background NAME FUNCTION` runs FUNCTION with its output in
# $PGTMP/NAME.log; `finish NAME` waits for it, prints that output and fails as it failed.
# A failing step leaves none running: postgres.sh's exit trap calls before_cleanup first.
declare -A JOBS=()
background() {
    "$2" >"$PGTMP/$1.log" 2>&1 &
    JOBS[$1]=$!
}
finish() {
    step "waiting for $1"
    local rc=0
    wait "${JOBS[$1]}" || rc=$?
    unset "JOBS[$1]"
    cat "$PGTMP/$1.log"
    return "$rc"
}
before_cleanup() {
    local pid
    for pid in "${JOBS[@]}"; do
        pkill -P "$pid" 2>/dev/null || true # the step it is running
        kill "$pid" 2>/dev/null || true
    done
}

# Chromium and the Python venvs the later steps need wait mostly on the network and the
# disk, while the Rust build below keeps both cores busy for most of a cold run: they are
# installed beside it, and the first step that needs them waits.
install_tools() {
    if [ ! -x /usr/bin/chromium ]; then
        [ "$(id -u)" = "0" ] || die "/usr/bin/chromium is missing; install Debian's chromium package (apt-get install chromium)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    "$REPO_ROOT/scripts/schemathesis.sh" --install-only
    "$REPO_ROOT/clients/python/scripts/test.sh" --install-only
}
step "installing Chromium and the Python venvs in the background"
background installs install_tools

# The TypeScript client (clients/typescript, @picloud/client) and the dashboard (dashboard/,
# which depends on the client's build). Their checks that need no server run from the
# start, at a lower priority than the Rust build, so they take the cores it leaves idle;
# the tests against the real binary wait for it ($BINARY_READY) and for Chromium.
BINARY_READY="$PGTMP/binary-ready"
web_checks() {
    cd "$REPO_ROOT/clients/typescript"
    npm ci --no-audit --no-fund
    # Its wire types regenerated from docs/openapi.json: fails when the committed ones
    # are stale.
    step "TypeScript client: regenerate the wire types from docs/openapi.json"
    npm run generate
    if [ -n "$(git -C "$REPO_ROOT" status --porcelain -- clients/typescript/src/generated)" ]; then
        git -C "$REPO_ROOT" status --short -- clients/typescript/src/generated
        die "clients/typescript/src/generated is stale: run 'npm ci && npm run generate' in clients/typescript and commit it"
    fi
    step "TypeScript client: npm run lint"
    npm run lint
    step "TypeScript client: npm run typecheck"
    npm run typecheck
    step "TypeScript client: npm test (unit)"
    npm test
    step "TypeScript client: npm run build"
    npm run build

    cd "$REPO_ROOT/dashboard"
    npm ci --no-audit --no-fund
    step "dashboard: svelte-check (strict TypeScript and accessibility)"
    npm run check
    step "dashboard: component tests (vitest)"
    npm test
    # Its built assets (dashboard/dist) are committed and embedded in the binary, so a
    # fresh clone serves /_/ with no Node installed. The build is deterministic: it is
    # rebuilt into a temp dir (rewriting dist/ would make cargo rebuild the binary) and
    # must equal the committed copy.
    step "dashboard: rebuild dist/ and compare with the committed copy"
    npm run build -- --outDir "$PGTMP/dashboard-dist" --emptyOutDir
    if [ -n "$(git -C "$REPO_ROOT" status --porcelain -- dashboard/dist)" ] ||
        ! diff -r dist "$PGTMP/dashboard-dist"; then
        die "dashboard/dist is stale: run 'npm ci && npm run build' in dashboard/ and commit dashboard/dist"
    fi
}
web_tests() {
    (
        renice -n 10 -p "$BASHPID" >/dev/null || true
        web_checks
    )
    until [ -e "$BINARY_READY" ]; do sleep 1; done
    cd "$REPO_ROOT/clients/typescript"
    step "TypeScript client: integration tests against $PICLOUD_BIN"
    npm run test:integration
    step "TypeScript client: browser test (headless Chromium)"
    npm run test:browser
    # The end-to-end test in headless Chromium against $PICLOUD_BIN, which embeds dist/.
    cd "$REPO_ROOT/dashboard"
    step "dashboard: end-to-end in headless Chromium against $PICLOUD_BIN"
    npm run test:e2e
}

# The SDKs' tests (clients/rust here, the TypeScript and Python ones and the dashboard's
# end-to-end test below) run the real binary, which `cargo test --no-run` builds
# below. That build has manager-core's `testing` feature, which only adds fault hooks
# that nothing outside the Rust tests can set; building the binary again without it
# took 4 of CI's minutes (the shipped feature set is still checked by clippy below).
# They make their PostgreSQL databases with this psql.
export PICLOUD_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/picloud"
export PICLOUD_PSQL="$PGBIN/psql"

step "the TypeScript client's and the dashboard's checks in the background"
background web web_tests

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

# Clippy's lints run inside the builds the suite makes anyway, not in `cargo clippy` check
# passes of their own: the workspace's crates are compiled by clippy-driver (rustc plus
# clippy's lints, warnings as errors; scripts/lib/clippy-rustc.sh), so a clean clone
# compiles the dependencies once, for the tests, not also in check mode for clippy (a
# cold run here: 1,488 s to this point before, 1,390 s after; the dependencies' full
# build is most of either). `cargo clippy --workspace --all-targets -- -D warnings`
# checks the same lints (nothing here is a bench target, which `cargo test` would not
# build).
export CLIPPY_DRIVER="$(rustc --print sysroot)/bin/clippy-driver"
LINTED="$REPO_ROOT/scripts/lib/clippy-rustc.sh"

# The tests turn on manager-core's `testing` feature (fault hooks) for everything; the
# shipped binary is built without it, so its library is linted as shipped too.
step "clippy, as shipped (no test features): cargo build -p picloud --lib"
RUSTC_WORKSPACE_WRAPPER="$LINTED" cargo build -p picloud --lib

# A test checks a script-minted subscriber token with PyJWT, the independent JWT library
# apps verify with: a venv with it, made once under the target dir.
PYJWT_VERSION="2.10.1"
PYJWT_VENV="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/pyjwt-venv"
if ! "$PYJWT_VENV/bin/python" -c "import jwt, sys; sys.exit(jwt.__version__ != '$PYJWT_VERSION')" 2>/dev/null; then
    step "PyJWT $PYJWT_VERSION in $PYJWT_VENV (for the token test)"
    python3 -m venv "$PYJWT_VENV"
    "$PYJWT_VENV/bin/pip" install --quiet --disable-pip-version-check "pyjwt==$PYJWT_VERSION"
fi
export PICLOUD_TEST_PYTHON="$PYJWT_VENV/bin/python"

# The tests are built first, so the steps that need only the binary run beside them: the
# Rust tests mostly wait (on servers, databases, timeouts), and so do these.
step "cargo test --workspace --no-run $* (clippy's lints in the build)"
RUSTC_WORKSPACE_WRAPPER="$LINTED" cargo test --workspace --no-run "$@"

# The served OpenAPI document, fuzzed against the real binary (in a loopback-only
# network namespace); fails on any finding. PICLOUD_SKIP_SCHEMATHESIS=1 skips it.
fuzz_api() {
    step "schemathesis against the served OpenAPI document"
    "$REPO_ROOT/scripts/schemathesis.sh"
}

# The Rust SDK's docs (warnings are errors); then the Python SDK (clients/python): ruff,
# its generated wire types and sync client checked against docs/openapi.json and the
# async client, mypy --strict, then pytest against $PICLOUD_BIN, on SQLite and on
# $PICLOUD_TEST_DATABASE_URL's PostgreSQL.
sdk_docs_and_python() {
    step "cargo doc -p picloud-client (the Rust SDK's docs, warnings are errors)"
    RUSTDOCFLAGS="-D warnings" cargo doc -p picloud-client --no-deps
    step "Python SDK: clients/python/scripts/test.sh"
    "$REPO_ROOT/clients/python/scripts/test.sh"
}

finish installs || die "the background installs failed (output above)"
touch "$BINARY_READY"
background schemathesis fuzz_api
background sdks sdk_docs_and_python

step "cargo test --workspace $*"
RUSTC_WORKSPACE_WRAPPER="$LINTED" cargo test --workspace "$@"

failed=()
for job in web schemathesis sdks; do
    finish "$job" || failed+=("$job")
done
[ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]} (output above)"

step "all tests passed"
