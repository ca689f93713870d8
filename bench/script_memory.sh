#!/usr/bin/env bash
# Memory per cached script (issue #14), on SQLite: the server's RSS grows by how much
# when SCRIPTS (default 2000) distinct token-minting functions are saved and each is
# called once, so every one sits in both caches (its source in the script cache, its
# compiled AST in the executor's)? Each script is the bench/functions.sh token function
# (~300 bytes of source) with its own constant, so no two are the same.
#
# RSS is read from /proc after a warm-up call (engines and threads exist), after the
# saves, and after the calls; the per-script figure is (after calls - after warm-up) /
# SCRIPTS. Three runs; the table has every run, so the spread shows.
#
#   bench/script_memory.sh
#   PICLOUD_BIN_DIR=/some/target/release SCRIPTS=5000 bench/script_memory.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
SCRIPTS="${SCRIPTS:-2000}"

step() { printf '\n==> %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
bench_binaries

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # run N -> one table row
    local n="$1" port base admin
    port="$(free_port)"; base="http://127.0.0.1:$port"
    PICLOUD_LOG=warn "$BIN/picloud" --data-dir "$WORK/data-$n" serve --bind "127.0.0.1:$port" >"$WORK/out-$n" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/out-$n" | head -1)"
    step "run $n: $SCRIPTS scripts saved and called once"
    python3 - "$base" "$admin" "$SCRIPTS" "$SERVER_PID" <<'PY'
import base64, hashlib, hmac, json, sys, time, urllib.request

base, admin, count, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

def call(method, path, key, body=None, headers=None):
    req = urllib.request.Request(f"{base}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req) as r:
        text = r.read()
    return json.loads(text) if text else None

b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "user-7", "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(b"bench-session-secret", f"{head}.{body}".encode(), hashlib.sha256).digest())
session = f"{head}.{body}.{sig}"

call("POST", "/v1/apps", admin, {"id": "bench"})
key = call("POST", "/v1/apps/bench/keys", admin, {"name": "bench", "scopes": ["app:admin"]})["key"]
call("POST", "/v1/apps/bench/topics", key, {"name": "chat"})
call("PATCH", "/v1/apps/bench/topics/chat/external", key, {"external_subscribable": True})

def source(i):
    return f"""fn handle(req) {{
    let claims = crypto::verify_hs256_jwt(req.headers["authorization"].sub_string(7), "bench-session-secret");
    let shard = {i};
    #{{ token: pubsub::subscriber_token(["chat"], 600, claims.sub), shard: shard }}
}}"""

def invoke(name):
    req = urllib.request.Request(f"{base}/v1/apps/bench/functions/{name}", method="POST", data=b"{}",
        headers={"authorization": f"Bearer {session}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert "token" in json.loads(r.read())

call("PUT", "/v1/apps/bench/scripts/warmup", key, {"source": source(-1), "access": "public"})
for _ in range(50):
    invoke("warmup")
time.sleep(1)
warm = rss_kib()
for i in range(count):
    call("PUT", f"/v1/apps/bench/scripts/s{i}", key, {"source": source(i), "access": "public"})
saved = rss_kib()
for i in range(count):
    invoke(f"s{i}")
time.sleep(1)
called = rss_kib()
per = (called - warm) * 1024 / count
print(f"| {count} | {len(source(0))} B | {warm/1024:.1f} MiB | {saved/1024:.1f} MiB | {called/1024:.1f} MiB | {per/1024:.1f} KiB |")
PY
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

ROWS=()
for n in 1 2 3; do ROWS+=("| $n $(run "$n")"); done
step "results"
printf '\nmachine: %s cores, %s\n\n' "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "| run | scripts | source each | RSS after warm-up | after the saves | after one call each | per cached script |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
