#!/usr/bin/env bash
# HTTP functions (issue #14), on SQLite:
#   - the tail of a token-minting public function at RATE calls/s (default 500) for
#     SECONDS_ (default 10), measured by bench/src/bin/paced-caller.rs: the call checks
#     the app's own HS256 session and mints a subscriber token (target: p99 < 5 ms);
#   - the same token minted by POST /v1/apps/{app}/subscriber-tokens with an API key: the
#     baseline. The two take turns of 500 ms within one paced run (the rate is the
#     total), so both meet the same stretches of a noisy machine; the table gives the
#     ratio of their p99s beside the absolute numbers;
#   - the machine's floor, in the same turns: nginx (one worker, on the server's core)
#     answering every call with a constant 200, so a tail that nginx has too is the
#     machine's (CPU steal, the scheduler), not PiCloud's;
#   - the most calls/s of a trivial function, closed loop, 32 connections (wrk);
#   - the server's RSS after RUNS token calls, against right after start.
# Three runs of each; the table has every run, so the spread shows. The server runs on
# core SERVER_CORE (default 0) and the load generators on LOADGEN_CORE (default 1), so
# the tail measured is the server's, not the two fighting over both cores.
#
#   bench/functions.sh
#   PICLOUD_BIN_DIR=/some/target/release bench/functions.sh   # prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
RATE="${RATE:-500}"
SECONDS_="${SECONDS_:-10}"
DURATION="${DURATION:-10}"
SERVER_CORE="${SERVER_CORE:-0}"
LOADGEN_CORE="${LOADGEN_CORE:-1}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "wrk is missing: apt-get install wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if ! command -v nginx >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "nginx is missing: apt-get install nginx-light"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
bench_binaries

WORK="$(mktemp -d)"
SERVER_PID=""
NGINX_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
    wait 2>/dev/null; rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The app's session for user-7, signed with the secret the script checks.
SESSION="$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": "user-7", "exp": int(time.time()) + 3600}).encode())
sig = b(hmac.new(b"bench-session-secret", f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)"
MINT='fn handle(req) {
    let claims = crypto::verify_hs256_jwt(req.headers["authorization"].sub_string(7), "bench-session-secret");
    #{ token: pubsub::subscriber_token(["chat"], 600, claims.sub) }
}'

run() { # run N -> one table row
    local n="$1" port base admin key
    port="$(free_port)"; base="http://127.0.0.1:$port"
    PICLOUD_LOG=warn taskset -c "$SERVER_CORE" "$BIN/picloud" --data-dir "$WORK/data-$n" serve --bind "127.0.0.1:$port" >"$WORK/out-$n" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/out-$n" | head -1)"
    curl -fs -X POST "$base/v1/apps" -H "Authorization: Bearer $admin" -H 'content-type: application/json' -d '{"id":"bench"}' >/dev/null
    key="$(curl -fs -X POST "$base/v1/apps/bench/keys" -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
        -d '{"name":"bench","scopes":["app:admin"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
    curl -fs -X POST "$base/v1/apps/bench/topics" -H "Authorization: Bearer $key" -H 'content-type: application/json' -d '{"name":"chat"}' >/dev/null
    curl -fs -X PATCH "$base/v1/apps/bench/topics/chat/external" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
        -d '{"external_subscribable":true}' >/dev/null
    python3 - "$base" "$key" "$MINT" <<'PY'
import json, sys, urllib.request
base, key, mint = sys.argv[1:4]
for name, source in [("mint_token", mint), ("trivial", "fn handle(req) { #{ ok: true } }")]:
    req = urllib.request.Request(f"{base}/v1/apps/bench/scripts/{name}", method="PUT",
        data=json.dumps({"source": source, "access": "public"}).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
PY
    local rss_before; rss_before="$(rss_kb "$SERVER_PID")"
    step "run $n: token function, POST /subscriber-tokens and nginx in turns, $RATE/s, ${SECONDS_}s each"
    local paced; paced="$(taskset -c "$LOADGEN_CORE" "$BIN/paced-caller" \
        --url "$base/v1/apps/bench/functions/mint_token" --authorization "Bearer $SESSION" --body '{}' \
        --url "$base/v1/apps/bench/subscriber-tokens" --authorization "Bearer $key" \
        --body '{"topics":["chat"],"ttl_secs":600,"sub":"user-7"}' \
        --url "http://127.0.0.1:$FLOOR_PORT/" --body '{}' \
        --rate "$RATE" --seconds "$((SECONDS_ * 3))" --turn-ms 500)"
    local route; route="$(sed -n 2p <<<"$paced")"
    local floor; floor="$(sed -n 3p <<<"$paced")"; paced="$(sed -n 1p <<<"$paced")"
    local rss_after; rss_after="$(rss_kb "$SERVER_PID")"
    step "run $n: trivial function, closed loop, ${DURATION}s"
    local wrk_out; wrk_out="$(taskset -c "$LOADGEN_CORE" wrk -t2 -c32 -d"${DURATION}s" -s "$REPO_ROOT/bench/wrk/function.lua" "$base/v1/apps/bench/functions/trivial")"
    local rps; rps="$(awk '/Requests\/sec/ {print $2}' <<<"$wrk_out")"
    local non2xx; non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$wrk_out")"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    python3 - "$n" "$paced" "$route" "$rps" "${non2xx:-0}" "$rss_before" "$rss_after" "$floor" <<'PY'
import json, sys
n, paced, route = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
rps, bad, before, after = sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
floor = json.loads(sys.argv[8])
ratio = paced['p99_ms'] / route['p99_ms'] if route['p99_ms'] else float('nan')
print(f"| {n} | {paced['ok']}/{paced['asked']} | {paced['p50_ms']} ms | {paced['p99_ms']} ms | {paced['max_ms']} ms "
      f"| {route['p50_ms']} ms | {route['p99_ms']} ms | {ratio:.2f} | {floor['ok']}/{floor['asked']}: {floor['p50_ms']} / {floor['p99_ms']} ms "
      f"| {float(rps):.0f} ({bad} non-2xx) | {before/1024:.1f} → {after/1024:.1f} MiB |")
PY
}

FLOOR_PORT="$(free_port)"
cat >"$WORK/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events {}
http {
    access_log off;
    client_body_temp_path $WORK/nginx-body;
    server {
        listen 127.0.0.1:$FLOOR_PORT;
        location / { return 200 '{}'; }
    }
}
CONF
taskset -c "$SERVER_CORE" nginx -c "$WORK/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 50); do curl -fs -X POST "http://127.0.0.1:$FLOOR_PORT/" >/dev/null 2>&1 && break; sleep 0.1; done

ROWS=()
for n in 1 2 3; do ROWS+=("$(run "$n")"); done
step "results"
printf '\nmachine: %s cores, %s\n\n' "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "| run | function token calls ok/asked at ${RATE}/s | p50 | p99 | max | route p50 | route p99 | p99 function/route | nginx ok/asked: p50 / p99 | trivial function calls/s | server RSS before → after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
