#!/usr/bin/env bash
# Outbox sources (issue #15). PiCloud on SQLite (its embedded default), the app's own
# database a throwaway PostgreSQL cluster:
#   - relay throughput: BACKLOG rows (default 100,000) waiting in the app's outbox, then
#     a source is added; events/s from the first relayed event to the last
#     (target >= 10,000 events/s);
#   - app commit -> SSE subscriber at RATE events/s (default 1,000) for SECONDS_ (default
#     10): `picloud.publish` in the app's transaction relayed by the source, beside the
#     same events sent by HTTP publish after the app's own commit, in turns of 500 ms
#     within one run (bench/src/bin/source-latency.rs; target p99 < 50 ms).
# Three runs; the table has every run, so the spread shows. PiCloud runs on core
# SERVER_CORE (default 0); PostgreSQL and the load tools share the other.
#
#   bench/sources.sh
#   PICLOUD_BIN_DIR=/some/target/release bench/sources.sh   # prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
BACKLOG="${BACKLOG:-100000}"
RATE="${RATE:-1000}"
SECONDS_="${SECONDS_:-10}"
SERVER_CORE="${SERVER_CORE:-0}"
OTHER_CORE="${OTHER_CORE:-1}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
bench_binaries

# shellcheck source=scripts/lib/postgres.sh
source "$REPO_ROOT/scripts/lib/postgres.sh"
pg_start_cluster ""
taskset -acp "$OTHER_CORE" "$(head -1 "$PGTMP/data/postmaster.pid")" >/dev/null 2>&1 || true

WORK="$(mktemp -d)"
SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }
trap 'rc=$?; stop_server; rm -rf "$WORK"; (exit $rc); cleanup' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api() { # api METHOD PATH KEY [BODY]
    curl -fsS -X "$1" "$BASE$2" -H "Authorization: Bearer $3" -H 'content-type: application/json' ${4:+-d "$4"}
}
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

run() { # run N -> one table row
    local n="$1" port admin key app_url token
    "$PGBIN/psql" -q "$PG_URL" -c "CREATE DATABASE app_$n" >/dev/null
    app_url="postgres://postgres@127.0.0.1:$PGPORT/app_$n"
    "$BIN/picloud" sources install --database-url "$app_url" >/dev/null
    port="$(free_port)"; BASE="http://127.0.0.1:$port"
    PICLOUD_LOG=warn PICLOUD_SOURCE_ALLOW_PRIVATE=true taskset -c "$SERVER_CORE" "$BIN/picloud" --data-dir "$WORK/data-$n" serve \
        --bind "127.0.0.1:$port" >"$WORK/out-$n" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/out-$n" | head -1)"
    api POST /v1/apps "$admin" '{"id":"bench"}' >/dev/null
    key="$(api POST /v1/apps/bench/keys "$admin" '{"name":"bench","scopes":["app:admin"]}' | json_field '["key"]')"

    step "run $n: $BACKLOG rows waiting, then the source is added"
    "$PGBIN/psql" -q "$app_url" -c "INSERT INTO picloud.outbox (topic, type, data)
        SELECT 'backlog', 'bench', jsonb_build_object('n', g) FROM generate_series(1, $BACKLOG) g" >/dev/null
    api POST /v1/apps/bench/sources "$key" "{\"kind\":\"postgres_outbox\",\"database_url\":\"$app_url\"}" >/dev/null
    local throughput
    throughput="$(python3 - "$BASE" "$key" "$BACKLOG" <<'PY'
import json, sys, time, urllib.request
base, key, backlog = sys.argv[1], sys.argv[2], int(sys.argv[3])
def last_seq():
    req = urllib.request.Request(f"{base}/v1/apps/bench/topics/backlog", headers={"authorization": f"Bearer {key}"})
    try:
        return json.load(urllib.request.urlopen(req))["last_seq"]
    except Exception:
        return 0
deadline = time.time() + 300
first = None
while time.time() < deadline:
    seq = last_seq()
    now = time.monotonic()
    if first is None and seq > 0:
        first = (now, seq)
    if seq >= backlog:
        break
    time.sleep(0.01)
else:
    sys.exit("the backlog was never relayed")
t0, s0 = first
print(f"{(backlog - s0) / max(now - t0, 1e-9):.0f}")
PY
)"

    step "run $n: app commit -> SSE at $RATE/s, source and HTTP publish in turns"
    for topic in via_source via_http; do
        api POST /v1/apps/bench/topics "$key" "{\"name\":\"$topic\"}" >/dev/null
        api PATCH "/v1/apps/bench/topics/$topic/external" "$key" '{"external_subscribable":true}' >/dev/null
    done
    token="$(api POST /v1/apps/bench/subscriber-tokens "$key" '{"topics":["via_source","via_http"],"ttl_secs":3600}' | json_field '["token"]')"
    local latency
    latency="$(taskset -c "$OTHER_CORE" "$BIN/source-latency" --picloud "$BASE" --key "$key" --token "$token" \
        --database-url "$app_url" --rate "$RATE" --seconds "$SECONDS_")"
    stop_server
    python3 - "$n" "$throughput" "$latency" <<'PY'
import json, sys
n, throughput = sys.argv[1], sys.argv[2]
ways = {w["way"]: w for w in map(json.loads, sys.argv[3].splitlines())}
s, h = ways["outbox_source"], ways["http_after_commit"]
print(f"| {n} | {int(throughput):,} | {s['arrived']}/{s['sent']} | {s['p50_ms']} ms | {s['p99_ms']} ms | {s['max_ms']} ms "
      f"| {h['arrived']}/{h['sent']} | {h['p50_ms']} ms | {h['p99_ms']} ms | {h['max_ms']} ms | {s['duplicates']} |")
PY
}

ROWS=()
for n in 1 2 3; do ROWS+=("$(run "$n")"); done
step "results"
printf '\nmachine: %s cores, %s\n\n' "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "| run | relayed events/s from a ${BACKLOG}-row backlog | source: arrived/sent at ${RATE}/s | p50 commit→SSE | p99 | max | HTTP after commit: arrived/sent | p50 | p99 | max | duplicates |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
