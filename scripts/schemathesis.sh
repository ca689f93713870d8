#!/usr/bin/env bash
# Fuzz the served OpenAPI document against the real binary with schemathesis, and fail on
# any finding (checks: not_a_server_error, status_code_conformance,
# content_type_conformance, response_schema_conformance, negative_data_rejection).
#
#   scripts/schemathesis.sh
#   scripts/schemathesis.sh --install-only   # only make the venv (scripts/test.sh does
#                                            # this in the background, early)
#
# The fuzzer creates triggers with arbitrary webhook URLs, so the server and the fuzzer
# run inside a network namespace of their own that has only a loopback interface
# (`unshare -n`): nothing can leave the machine even if a guard has a bug. Needs root
# (or user namespaces) for that.
#
# schemathesis comes from PyPI into a venv under the target dir, made on first use.
# Only its fuzzing phase runs. The coverage phase stops on this machine's Python 3.11
# with an internal error of hypothesis ("AST constructor recursion depth mismatch"),
# and the examples phase hit the same code now and then (CI, stop 24: a FlakyFailure
# raised while hypothesis described a lambda, for POST …/triggers): neither is a
# finding about PiCloud. The examples phase only ever reached two operations; fuzzing
# covers all of them.
# The run is bounded by SCHEMATHESIS_MAX_TIME seconds (default 150) and
# SCHEMATHESIS_MAX_EXAMPLES cases per operation (default 40).
#
# Environment:
#   PICLOUD_BIN                 the binary to test (default: target/debug/picloud, built
#                               with cargo when missing)
#   PICLOUD_SKIP_SCHEMATHESIS=1 skip this step (local debugging only; CI never sets it)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
SCHEMATHESIS_VERSION="4.32.5"

if [ "${PICLOUD_SKIP_SCHEMATHESIS:-}" = "1" ]; then
    echo "PICLOUD_SKIP_SCHEMATHESIS=1: schemathesis skipped"
    exit 0
fi

VENV="$TARGET/schemathesis-venv"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi

PICLOUD_BIN="${PICLOUD_BIN:-$TARGET/debug/picloud}"
if [ ! -x "$PICLOUD_BIN" ]; then
    cargo build -p picloud
fi
# The part inside the namespace runs from a temp dir: a relative path would not resolve.
PICLOUD_BIN="$(realpath "$PICLOUD_BIN")"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The part that runs inside the loopback-only namespace.
cat >"$WORK/inside.sh" <<'INSIDE'
set -euo pipefail
ip link set lo up
cd "$WORK"
PORT=18431
BASE="http://127.0.0.1:$PORT"
PICLOUD_WEBHOOK_ALLOW_PRIVATE=true "$PICLOUD_BIN" serve --bind "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    curl -fs "$BASE/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
INSTANCE_KEY="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/server.out" | head -n 1)"
[ -n "$INSTANCE_KEY" ] || { cat "$WORK/server.out" "$WORK/server.err"; echo "no instance key printed" >&2; exit 1; }
curl -fsS -X POST "$BASE/v1/apps" -H "authorization: Bearer $INSTANCE_KEY" \
    -H 'content-type: application/json' -d '{"id":"shop"}' >/dev/null
APP_KEY="$(curl -fsS -X POST "$BASE/v1/apps/shop/keys" -H "authorization: Bearer $INSTANCE_KEY" \
    -H 'content-type: application/json' \
    -d '{"name":"fuzz","scopes":["app:admin","triggers:manage","deliveries:manage"]}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"

# A trigger to a closed loopback port (webhooks to loopback allowed above; deliveries
# fail at once and never leave the namespace), so the trigger routes get past 404.
TRIGGER_ID="$(curl -fsS -X POST "$BASE/v1/apps/shop/triggers" -H "authorization: Bearer $APP_KEY" \
    -H 'content-type: application/json' \
    -d '{"source":{"kind":"topic","topic":"orders"},"handler":{"kind":"webhook","url":"http://127.0.0.1:9/hook"}}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
# A signed-in dashboard admin for the admin routes.
PASSWORD="correct horse battery staple"
echo "$PASSWORD" | "$PICLOUD_BIN" admins create --email fuzz@example.com --password-stdin \
    --data-dir "$WORK/data" >/dev/null
CSRF="$(curl -fsS -c "$WORK/cookies" -X POST "$BASE/v1/admin/session" -H 'content-type: application/json' \
    -d "{\"email\":\"fuzz@example.com\",\"password\":\"$PASSWORD\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')"
SESSION="$(awk '$6 == "picloud_session" { print $7 }' "$WORK/cookies")"

# Instance routes get the instance key, app routes the app's key, admin routes the
# session, and every `{app}` is the app that exists, so the fuzzer gets past 401, 403
# and 404 to the handlers.
cat >"$WORK/schemathesis.toml" <<TOML
[parameters]
"path.app" = "shop"
"path.trigger_id" = "$TRIGGER_ID"

[[operations]]
include-name = "DELETE /v1/apps/{app}"
enabled = false

# An HTTP function answers with what the app's script returns, 5xx included (a script
# may answer 500 itself, and one the fuzzer saved may throw): no server-error property
# holds there. Functions are covered end to end in crates/picloud/tests/it/functions.rs.
[[operations]]
include-path-regex = "^/v1/apps/\\\\{app\\\\}/functions/"
enabled = false

[[operations]]
include-path-regex = "^/v1/(keys|apps)(/\\\\{[a-z_]+\\\\})?$|^/v1/keys/"
headers = { Authorization = "Bearer $INSTANCE_KEY" }

[[operations]]
include-path-regex = "^/v1/apps/\\\\{app\\\\}/"
headers = { Authorization = "Bearer $APP_KEY" }

[[operations]]
include-path-regex = "^/v1/admin/(session|stats)$"
headers = { X-CSRF-Token = "$CSRF" }

[auth.openapi.session]
api_key = "$SESSION"
TOML

"$VENV/bin/schemathesis" --no-color --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --phases fuzzing \
    --max-time "${SCHEMATHESIS_MAX_TIME:-150}" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
    --request-timeout 10 \
    --workers 2 \
    --seed 12 && status=0 || status=$?
if grep -q "panicked" "$WORK/server.err"; then
    grep -m 5 "panicked" "$WORK/server.err" >&2
    echo "the server panicked during the run" >&2
    exit 1
fi
exit $status
INSIDE

export WORK VENV PICLOUD_BIN
unshare -n bash "$WORK/inside.sh"
