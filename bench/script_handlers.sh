#!/usr/bin/env bash
# Script trigger handlers (issue #14), on SQLite with the server's default settings:
#   - runs/s of a trivial handler (`delivery.id`): EVENTS events (default 20000)
#     published in batches of 1000 to a topic whose trigger runs it, timed from the
#     first publish until the server counts every one delivered (/metrics);
#   - the same for a handler that publishes one event per run (`pubsub::publish`), its
#     published events counted too;
#   - for comparison, the same events delivered to a local webhook sink answering 200.
# Target: >= 2,000 runs/s for each handler on a 2-core machine. Three runs; the table
# has every run, so the spread shows.
#
#   bench/script_handlers.sh
#   PICLOUD_BIN_DIR=/some/target/release bench/script_handlers.sh   # prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
EVENTS="${EVENTS:-20000}"

step() { printf '\n==> %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
bench_binaries

WORK="$(mktemp -d)"
PIDS=()
stop_all() { for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap 'stop_all; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # run N -> one table row
    local n="$1" port base admin sink_port
    port="$(free_port)"; base="http://127.0.0.1:$port"
    PICLOUD_LOG=warn "$BIN/picloud" --data-dir "$WORK/data-$n" serve --bind "127.0.0.1:$port" \
        --webhook-allow-private true >"$WORK/out-$n" 2>&1 &
    PIDS+=($!)
    sink_port="$(free_port)"
    "$BIN/webhook-sink" --bind "127.0.0.1:$sink_port" --expect "$EVENTS" >"$WORK/sink-$n" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/out-$n" | head -1)"
    step "run $n: $EVENTS events to a trivial handler, a publishing handler and a webhook"
    python3 - "$base" "$admin" "$EVENTS" "http://127.0.0.1:$sink_port/hook" <<'PY'
import json, sys, time, urllib.request

base, admin, total, sink = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def call(method, path, key, body=None):
    req = urllib.request.Request(f"{base}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        text = r.read()
    return json.loads(text) if text else None

call("POST", "/v1/apps", admin, {"id": "bench"})
key = call("POST", "/v1/apps/bench/keys", admin, {"name": "bench", "scopes": ["app:admin"]})["key"]
call("PUT", "/v1/apps/bench/scripts/trivial", key, {"source": "delivery.id"})
call("PUT", "/v1/apps/bench/scripts/publishing", key,
     {"source": 'pubsub::publish("receipts", "receipt", #{ seq: event.seq })'})

def delivered():
    """Deliveries ended as delivered so far, from /metrics (cheap to poll)."""
    with urllib.request.urlopen(f"{base}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith('picloud_deliveries_total{outcome="delivered"}'):
                return int(float(line.split()[-1]))
    return 0

def measure(topic, handler):
    call("POST", "/v1/apps/bench/triggers", key,
         {"source": {"kind": "topic", "topic": topic}, "handler": handler})
    before = delivered()
    batch = [{"topic": topic, "data": {"n": i}} for i in range(1000)]
    start = time.monotonic()
    for _ in range(total // 1000):
        call("POST", "/v1/apps/bench/events", key, {"events": batch})
    published = time.monotonic() - start
    deadline = start + 600
    while delivered() - before < total and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - start
    return total / took, published, delivered() - before == total

trivial, trivial_pub, trivial_ok = measure("orders", {"kind": "script", "script": "trivial"})
publishing, _, publishing_ok = measure("invoices", {"kind": "script", "script": "publishing"})
receipts = call("GET", "/v1/apps/bench/topics/receipts", key)["last_seq"]
webhook, _, webhook_ok = measure("mail", {"kind": "webhook", "url": sink})
flag = lambda ok: "" if ok else " (NOT ALL DELIVERED)"
print(f"| {trivial:.0f}{flag(trivial_ok)} | {total / trivial_pub:.0f} | {publishing:.0f}{flag(publishing_ok)} "
      f"| {receipts}/{total} | {webhook:.0f}{flag(webhook_ok)} |")
PY
    stop_all
}

ROWS=()
for n in 1 2 3; do ROWS+=("| $n $(run "$n")"); done
step "results"
printf '\nmachine: %s cores, %s\n\n' "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "| run | trivial handler runs/s | publishing events/s (during it) | publishing handler runs/s | its events published | webhook deliveries/s (same events, sink) |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
