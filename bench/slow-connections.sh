#!/usr/bin/env bash
# /healthz and publish latency with and without 2,000 slow connections (issue #11,
# item 1). The release server runs on SQLite with `ulimit -n 1024` (soft and hard, so
# its raise at start goes to 1024 too) and default connection settings. The slow
# clients come from 127.0.0.2 and keep sending a request head one byte every 2 s,
# reopening whatever the server closes; the latency probe (each request on a new
# connection, one after another) comes from 127.0.0.1. Everything stays on loopback.
#
#   bench/slow-connections.sh      # RUNS=3, SLOW=2000, PROBES=200 per phase
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
RUNS="${RUNS:-3}"
SLOW="${SLOW:-2000}"
PROBES="${PROBES:-200}"
SLOW_SECONDS="${SLOW_SECONDS:-40}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The load generator needs SLOW sockets of its own (the server gets only 1024).
ulimit -n $((SLOW + 256)) 2>/dev/null || die "ulimit -n $((SLOW + 256)) refused (hard limit $(ulimit -Hn))"

step "building picloud (release)"
cargo build --release -q -p picloud
BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/picloud"
LOAD="python3 $REPO_ROOT/bench/slow_connections.py"

WORK="$(mktemp -d)"
SERVER_PID=""
LOAD_PID=""
stop_all() {
    [ -z "$LOAD_PID" ] || { kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; }
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID="" LOAD_PID=""
}
trap 'stop_all; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ROWS=()
for run in $(seq "$RUNS"); do
    port="$(free_port)"
    dir="$WORK/run$run"
    mkdir -p "$dir"
    step "run $run: server on 127.0.0.1:$port, SQLite, ulimit -n 1024"
    (
        ulimit -n 1024   # soft and hard
        export PICLOUD_LOG="${PICLOUD_LOG:-info}"
        exec "$BIN" --data-dir "$dir/data" serve --bind "127.0.0.1:$port"
    ) >"$dir/stdout" 2>"$dir/stderr" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    base="http://127.0.0.1:$port"
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$dir/stdout" | head -1)"
    [ -n "$admin" ] || die "run $run: no bootstrap key printed"
    curl -fs -X POST "$base/v1/apps" -H "Authorization: Bearer $admin" \
        -H 'content-type: application/json' -d '{"id":"bench"}' >/dev/null
    key="$(curl -fs -X POST "$base/v1/apps/bench/keys" -H "Authorization: Bearer $admin" \
        -H 'content-type: application/json' -d '{"name":"bench","scopes":["app:admin"]}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"

    step "run $run: $PROBES healthz + $PROBES publishes, no slow connections"
    quiet="$($LOAD probe 127.0.0.1 "$port" "$key" "$PROBES")"

    step "run $run: $SLOW slow connections from 127.0.0.2 for ${SLOW_SECONDS}s"
    $LOAD slowloris 127.0.0.1 "$port" 127.0.0.2 "$SLOW" "$SLOW_SECONDS" >"$dir/slow.json" &
    LOAD_PID=$!
    sleep 5   # let them all connect (and the refused ones retry)
    step "run $run: $PROBES healthz + $PROBES publishes, $SLOW slow connections"
    loaded="$($LOAD probe 127.0.0.1 "$port" "$key" "$PROBES")"
    open="$(curl -fs "$base/metrics" | awk '$1 == "picloud_connections_open" {print $2}')"
    wait "$LOAD_PID"
    LOAD_PID=""
    refused="$(curl -fs "$base/metrics" | awk '/^picloud_connections_refused_total/ {printf "%s ", $0}')"
    stop_all
    ROWS+=("$run|$quiet|$loaded|$open|$(cat "$dir/slow.json")|$refused")
    grep -h 'open-file limit\|connection limits' "$dir/stderr" | sed 's/^/    /' >&2 || true
done

printf '\nmachine: %s cores; %s\n' "$(nproc)" "$(free -h | awk '/^Mem:/ {print $2 " RAM"}')"
printf '\n| run | slow conns | healthz p50 ms | healthz p99 ms | publish p50 ms | publish p99 ms | probe errors |\n'
printf '|---|---|---|---|---|---|---|\n'
for row in "${ROWS[@]}"; do
    IFS='|' read -r run quiet loaded open slow refused <<<"$row"
    read -r hq50 hq99 pq50 pq99 eq <<<"$quiet"
    read -r hl50 hl99 pl50 pl99 el <<<"$loaded"
    printf '| %s | 0 | %s | %s | %s | %s | %s |\n' "$run" "$hq50" "$hq99" "$pq50" "$pq99" "$eq"
    printf '| %s | %s (server held %s) | %s | %s | %s | %s | %s |\n' "$run" "$SLOW" "$open" "$hl50" "$hl99" "$pl50" "$pl99" "$el"
done
printf '\nslow clients per run (what the server did with them) and refusal counters:\n'
for row in "${ROWS[@]}"; do
    IFS='|' read -r run quiet loaded open slow refused <<<"$row"
    printf '  run %s: %s\n         %s\n' "$run" "$slow" "$refused"
done
