#!/usr/bin/env bash
# Writes the OpenAPI document a picloud binary serves to docs/openapi.json.
#
#   clients/typescript/scripts/dump-openapi.sh [PICLOUD_BINARY]
#
# The binary defaults to the repository's target/debug/picloud (build it with
# `cargo build -p picloud`). It runs on a fresh SQLite database in a temp dir, bound to
# a free port of 127.0.0.1, and is stopped once the document is saved. Then run
# `npm run generate` in clients/typescript to refresh the TypeScript wire types.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
bin="${1:-$REPO_ROOT/target/debug/picloud}"
out="$REPO_ROOT/docs/openapi.json"
[ -x "$bin" ] || { echo "error: no picloud binary at $bin (cargo build -p picloud)" >&2; exit 1; }

d="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$d"
}
trap cleanup EXIT

db="sqlite://$d/picloud.db"
"$bin" migrate --data-dir "$d" --database-url "$db" >/dev/null
NO_COLOR=1 "$bin" serve --data-dir "$d" --database-url "$db" --bind 127.0.0.1:0 >"$d/log" 2>&1 &
pid=$!

port=""
for _ in $(seq 1 300); do
    port="$(sed -n 's/.*listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$d/log" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$d/log" >&2; echo "error: picloud exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { cat "$d/log" >&2; echo "error: picloud did not start listening" >&2; exit 1; }

curl -sSf "http://127.0.0.1:$port/openapi.json" | python3 -m json.tool --indent 2 >"$d/openapi.json"
mv "$d/openapi.json" "$out"
echo "wrote $out"
