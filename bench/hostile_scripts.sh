#!/usr/bin/env bash
# Hostile scripts under publish/subscribe load (issue #14), on SQLite with the default
# settings. Does a flood of scripts that loop forever, grab memory, recurse without end,
# log and return too much, and aim http::request at metadata, private and loopback
# addresses slow the realtime path down for everyone else?
#
# Each run starts a server and measures publish-to-receive latency (bench/src/bin/
# fanout.rs: SUBSCRIBERS SSE subscribers, RATE publishes/s for DURATION s) twice: alone
# (baseline), then while HAMMERS threads call the hostile functions back to back. Every
# hostile call must answer a generic 500 and its run log entry must say what stopped it;
# every subscriber must get every event. The table has each run's tails and the p99 ratio
# (hostile / baseline). Three runs.
#
# The scripts try to reach other machines, so the whole bench runs in its own network
# namespace with only loopback (`unshare -n`, root): nothing can leave the machine even if
# the address guard had a bug.
#
#   bench/hostile_scripts.sh
#   PICLOUD_BIN_DIR=/some/target/release SUBSCRIBERS=200 RATE=100 bench/hostile_scripts.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
SUBSCRIBERS="${SUBSCRIBERS:-200}"
RATE="${RATE:-100}"
DURATION="${DURATION:-15}"
HAMMERS="${HAMMERS:-4}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ -z "${PICLOUD_BIN_DIR:-}" ]; then
    step "building picloud and the load generator (release)"
    cargo build --release -q -p picloud -p picloud-bench
    export PICLOUD_BIN_DIR="$REPO_ROOT/target/release"
fi
if [ -z "${HOSTILE_IN_NETNS:-}" ]; then
    [ "$(id -u)" -eq 0 ] || die "needs root for a loopback-only network namespace (unshare -n)"
    step "entering a loopback-only network namespace"
    exec unshare -n -- env HOSTILE_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
BIN="$PICLOUD_BIN_DIR"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fanout() { # fanout BASE PORT KEY NAME -> the load generator's JSON in $WORK/NAME.json
    PICLOUD_KEY="$3" "$BIN/fanout" --server picloud --addr "127.0.0.1:$2" \
        --sub-path "/v1/apps/bench/realtime?topic=fan" --pub-url "$1/v1/apps/bench/topics/fan/events" \
        --warm-url "$1/v1/apps/bench/topics/warm/events" --subscribers "$SUBSCRIBERS" \
        --rate "$RATE" --duration "$DURATION" --clk-tck "$(getconf CLK_TCK)" \
        >"$WORK/$4.json" 2>"$WORK/$4.log" || { cat "$WORK/$4.log" >&2; die "the load generator failed"; }
}

run() { # run N -> one table row
    local n="$1" port base admin key
    port="$(free_port)"; base="http://127.0.0.1:$port"
    PICLOUD_LOG=warn "$BIN/picloud" --data-dir "$WORK/data-$n" serve --bind "127.0.0.1:$port" >"$WORK/out-$n" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/out-$n" | head -1)"
    key="$(python3 "$WORK/setup.py" "$base" "$admin")"
    step "run $n: baseline, $SUBSCRIBERS subscribers, $RATE events/s for ${DURATION}s"
    fanout "$base" "$port" "$key" "baseline-$n"
    step "run $n: the same while $HAMMERS threads call hostile scripts"
    python3 "$WORK/hammer.py" "$base" "$key" "$HAMMERS" "$WORK/stop-$n" >"$WORK/hammer-$n.json" &
    local hammer=$!
    fanout "$base" "$port" "$key" "hostile-$n"
    touch "$WORK/stop-$n"; wait "$hammer"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    python3 - "$WORK/baseline-$n.json" "$WORK/hostile-$n.json" "$WORK/hammer-$n.json" >>"$WORK/errors" <<'PY'
import json, sys
base, hostile, hammer = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:4])
for name, errors in hammer["errors"].items():
    print(f"{name}: {errors}")
PY
    python3 - "$n" "$WORK/baseline-$n.json" "$WORK/hostile-$n.json" "$WORK/hammer-$n.json" <<'PY'
import json, sys
n = sys.argv[1]
base, hostile, hammer = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[2:5])
lost = base["lost"] + hostile["lost"]
print(f"| {n} | {base['p50_ms']} / {base['p99_ms']} ms | {hostile['p50_ms']} / {hostile['p99_ms']} ms "
      f"| {hostile['p99_ms'] / base['p99_ms']:.2f} | {hostile['ack_p99_ms']} ms | {hammer['calls']} "
      f"| {hammer['generic_500']} | {hammer['explained']}/{hammer['logged']} | {lost} |")
PY
}

cat >"$WORK/setup.py" <<'PY'
import json, sys, urllib.request
base, admin = sys.argv[1:3]
def call(method, path, key, body):
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
call("POST", "/v1/apps", admin, {"id": "bench"})
key = call("POST", "/v1/apps/bench/keys", admin,
           {"name": "bench", "scopes": ["pubsub:publish", "pubsub:token", "app:admin"]})["key"]
call("POST", "/v1/apps/bench/topics", key, {"name": "fan", "auth_mode": "public"})
call("PATCH", "/v1/apps/bench/topics/fan/external", key, {"external_subscribable": True})
hostile = {
    "spin": "fn handle(req) { loop { } }",
    "grow_string": 'fn handle(req) { let s = "0123456789"; loop { s += s; } }',
    "grow_map": 'fn handle(req) { let m = #{}; let i = 0; loop { m["k" + i] = "x".pad(1000000, "x"); i += 1; } }',
    "recurse": "fn down(n) { down(n + 1) } fn handle(req) { down(0) }",
    "flood_output": 'fn handle(req) { for i in 0..1000000 { log::info(`line ${i}`); } }',
    "metadata": 'fn handle(req) { http::request(#{ method: "GET", url: "http://169.254.169.254/latest/meta-data/" }) }',
    "private": 'fn handle(req) { http::request(#{ method: "GET", url: "http://10.0.0.1/admin" }) }',
    "loopback": 'fn handle(req) { http::request(#{ method: "GET", url: "http://127.0.0.1:1/" }) }',
    "mapped": 'fn handle(req) { http::request(#{ method: "GET", url: "http://[::ffff:127.0.0.1]:1/" }) }',
}
for name, source in hostile.items():
    call("PUT", f"/v1/apps/bench/scripts/{name}", key, {"source": source, "access": "public"})
print(key)
PY

cat >"$WORK/hammer.py" <<'PY'
# Calls every hostile function in turn from THREADS threads until the stop file exists,
# then reads each script's run log: every run must have failed with an error text.
import json, os, sys, threading, urllib.error, urllib.request
base, key, threads, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
names = ["spin", "grow_string", "grow_map", "recurse", "flood_output", "metadata", "private",
         "loopback", "mapped"]
calls = generic = 0
lock = threading.Lock()
def hammer(offset):
    global calls, generic
    i = offset
    while not os.path.exists(stop):
        name = names[i % len(names)]; i += 1
        req = urllib.request.Request(f"{base}/v1/apps/bench/functions/{name}", method="POST", data=b"{}")
        try:
            urllib.request.urlopen(req, timeout=30).read()
            status, body = 200, b""
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        ok = status == 500 and b"the function failed" in body
        with lock:
            calls += 1; generic += ok
ts = [threading.Thread(target=hammer, args=(k,)) for k in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
logged = explained = 0
errors = {}
for name in names:
    req = urllib.request.Request(f"{base}/v1/apps/bench/scripts/{name}/runs?limit=1000",
                                 headers={"authorization": f"Bearer {key}"})
    runs = json.loads(urllib.request.urlopen(req).read())["runs"]
    logged += len(runs)
    explained += sum(1 for r in runs if r["outcome"] in ("error", "timeout") and r["error"])
    errors[name] = sorted({(r["error"] or r["outcome"])[:120] for r in runs})[:2]
print(json.dumps({"calls": calls, "generic_500": generic, "logged": logged, "explained": explained,
                  "errors": errors}))
PY

ROWS=()
for n in 1 2 3; do ROWS+=("$(run "$n")"); done
step "what stopped each hostile script (run log)"
sort -u "$WORK/errors" >&2
step "results"
printf '\nmachine: %s cores, %s\n\n' "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "| run | baseline p50 / p99 | under hostile scripts p50 / p99 | p99 ratio | publish ack p99 (hostile) | hostile calls | generic 500s | runs logged with an error | events lost |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
