#!/usr/bin/env bash
# The Python SDK's checks: lint, format, generated files, types, tests.
#
#   clients/python/scripts/test.sh [extra pytest args]
#   clients/python/scripts/test.sh --install-only   # only the venv and the package
#
# Makes (or reuses) a venv under ${CARGO_TARGET_DIR:-<repo>/target}/python-sdk-venv,
# installs the package editable with its pinned dev tools, then runs ruff (check and
# format --check), scripts/generate.py --check (types.py and _sync_api.py must match
# docs/openapi.json and _async_api.py), mypy --strict and pytest.
#
# The tests run the real server: PICLOUD_BIN (default <repo>/target/debug/picloud).
# With PICLOUD_TEST_DATABASE_URL (a PostgreSQL superuser URL) the storage tests also
# run on PostgreSQL and the outbox tests run at all; without it they are skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
REPO_ROOT="$(pwd)"
SDK="clients/python"

step() { printf '\n==> %s\n' "$*"; }

VENV="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/python-sdk-venv"
case "$VENV" in /*) ;; *) VENV="$REPO_ROOT/$VENV" ;; esac
if [ ! -x "$VENV/bin/python" ]; then
    step "Python SDK: venv in $VENV"
    python3 -m venv "$VENV"
fi
step "Python SDK: pip install -e '$SDK[outbox,dev]'"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$SDK[outbox,dev]"
if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi

export PICLOUD_BIN="${PICLOUD_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/picloud}"

cd "$REPO_ROOT/$SDK"
step "Python SDK: ruff check"
"$VENV/bin/ruff" check src tests scripts
step "Python SDK: ruff format --check"
"$VENV/bin/ruff" format --check src tests scripts
step "Python SDK: generated files are fresh (scripts/generate.py --check)"
"$VENV/bin/python" scripts/generate.py --check
step "Python SDK: mypy --strict"
"$VENV/bin/mypy"
step "Python SDK: pytest against $PICLOUD_BIN"
"$VENV/bin/pytest" "$@"
