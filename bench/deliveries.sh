#!/usr/bin/env bash
# Webhook delivery throughput and publish-to-webhook latency, on SQLite and PostgreSQL.
#   - throughput: EVENTS events published up front (batched), delivered to a local sink
#     that answers 200 at once; deliveries/s between the sink's first and last request.
#     The sink is stopped (SIGSTOP) while the backlog is published and continued after,
#     so this is the rate of draining a backlog, as graphile-worker's is (its jobs are
#     added before its workers start); HELD=0 delivers while publishing instead;
#   - latency: single events published at RATE/s for SECONDS s; p50/p99/max from each
#     event's published_at to its arrival at the sink;
#   - CPU seconds per 1,000 deliveries of the throughput phase (publishing the backlog
#     included), PiCloud's and PostgreSQL's (all of the throwaway cluster's processes);
#   - the same backlog drained by graphile-worker 0.18 (Node.js, bench/peers/graphile-worker)
#     on the same PostgreSQL cluster and sink: its defaults at concurrency 64, and its
#     batching options at each concurrency of GRAPHILE_CONCURRENCY (default "64 128");
#     PEERS="" leaves it out. The ratio issue #17 asks about is PiCloud's rate over the
#     best of these.
#
# Deliveries in flight: PiCloud runs with its default 128 dispatch workers (WORKERS=N
# sets --dispatch-workers). Its pacer lets one app use at most half of them, keeping the
# rest for apps that show up next, so the benchmark's one app has 64 deliveries in
# flight: graphile-worker's concurrency 64.
#
#   bench/deliveries.sh          # EVENTS=20000 RATE=500 DURATION=10 by default
#   PACING='{"max_in_flight":1}' bench/deliveries.sh   # the throughput trigger paced
#   PICLOUD_BIN_DIR=/some/target/release bench/deliveries.sh   # prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
EVENTS="${EVENTS:-20000}"
RATE="${RATE:-500}"
SECONDS_="${DURATION:-10}"
PACING="${PACING:-}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# PG_STATS=1 loads pg_stat_statements and prints PostgreSQL's busiest statements of the
# throughput phase (calls, distinct texts, execution and planning time, rows; and the whole)
# on stderr: where its CPU goes.
# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
bench_binaries

# shellcheck source=scripts/lib/postgres.sh
source "$REPO_ROOT/scripts/lib/postgres.sh"
if [ "${PG_STATS:-}" = "1" ]; then
    pg_start_cluster "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
else
    pg_start_cluster ""
fi

WORK="$(mktemp -d)"
PIDS=()
stop_all() { for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; PIDS=(); }
trap 'rc=$?; stop_all; rm -rf "$WORK"; (exit $rc); cleanup' EXIT

# CPU seconds used so far by a process tree: its root's own and reaped children's time
# plus each live child's (PostgreSQL's backends are the postmaster's children).
cpu_seconds() { # cpu_seconds PID
    python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
hz = os.sysconf("SC_CLK_TCK")
def fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()
total = sum(int(v) for v in fields(root)[11:15])  # utime stime cutime cstime
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = fields(pid)
    except OSError:
        continue
    if f[1] == root:  # ppid
        total += int(f[11]) + int(f[12])
print(f"{total / hz:.2f}")
PY
}
postmaster_pid() { head -1 "$PGTMP/data/postmaster.pid"; }
# CPU seconds per 1,000 of the EVENTS deliveries: per_1k NOW [START]
per_1k() { python3 -c "print(f'{($1 - ${2:-0}) * 1000 / $EVENTS:.3f}')"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

start_sink() { # start_sink NAME EXPECT -> sets SINK_PID SINK_URL
    local port; port="$(free_port)"
    "$BIN/webhook-sink" --bind "127.0.0.1:$port" --expect "$2" >"$WORK/$1.sink" 2>&1 &
    SINK_PID=$!
    SINK_URL="http://127.0.0.1:$port/hook"
    for _ in $(seq 50); do grep -q listening "$WORK/$1.sink" 2>/dev/null && break; sleep 0.1; done
}

wait_sink() { # wait_sink NAME: waits for the sink to stop by itself (bounded), prints its JSON
    for _ in $(seq 600); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$SINK_PID" 2>/dev/null || true
    # Called in a command substitution (a subshell), so `wait` cannot wait for the sink:
    # wait for its JSON line instead. A sink stopped early reports what it got, so a
    # run that lost or delayed deliveries shows it in "distinct/received".
    for _ in $(seq 50); do tail -1 "$WORK/$1.sink" | grep -q '^{' && break; sleep 0.1; done
    tail -1 "$WORK/$1.sink"
}

run_backend() { # run_backend NAME URL -> one table row
    local name="$1" url="$2" port base admin key
    port="$(free_port)"; base="http://127.0.0.1:$port"
    "$BIN/picloud" --data-dir "$WORK/$name-data" --database-url "$url" serve --bind "127.0.0.1:$port" \
        --webhook-allow-private true ${WORKERS:+--dispatch-workers "$WORKERS"} >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    local server_pid=$!
    for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    admin="$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' "$WORK/$name.out" | head -1)"
    curl -fs -X POST "$base/v1/apps" -H "Authorization: Bearer $admin" -H 'content-type: application/json' -d '{"id":"bench"}' >/dev/null
    key="$(curl -fs -X POST "$base/v1/apps/bench/keys" -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
        -d '{"name":"bench","scopes":["app:admin"]}' | json_field key)"

    step "$name: $EVENTS deliveries to a sink answering 200 (pacing: ${PACING:-none})"
    start_sink "$name-throughput" "$EVENTS"
    local stats=0
    [ "$name" = postgres ] && [ "${PG_STATS:-}" = "1" ] && stats=1
    if [ "$stats" = 1 ]; then
        "$PGBIN/psql" -q "$url" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' -c 'SELECT pg_stat_statements_reset()' >/dev/null
    fi
    local server_cpu0 pg_cpu0
    server_cpu0="$(cpu_seconds "$server_pid")"; pg_cpu0="$(cpu_seconds "$(postmaster_pid)")"
    curl -fs -X POST "$base/v1/apps/bench/triggers" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
        -d "{\"source\":{\"kind\":\"topic\",\"topic\":\"load\"},\"handler\":{\"kind\":\"webhook\",\"url\":\"$SINK_URL\"}${PACING:+,\"pacing\":$PACING}}" >/dev/null
    # The first deliveries wait in the stopped sink's listen queue (well within the
    # webhook timeout) while the rest of the backlog stays pending.
    [ "${HELD:-1}" = 1 ] && kill -STOP "$SINK_PID"
    python3 - "$base" "$key" "$EVENTS" <<'PY'
import json, sys, urllib.request
base, key, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
batch = [{"topic": "load", "data": {"n": i}} for i in range(1000)]
for _ in range(total // 1000):
    req = urllib.request.Request(f"{base}/v1/apps/bench/events", data=json.dumps({"events": batch}).encode(),
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
PY
    [ "${HELD:-1}" = 1 ] && kill -CONT "$SINK_PID"
    local throughput; throughput="$(wait_sink "$name-throughput")"
    # CPU per 1k deliveries over the throughput phase, publishing the backlog included.
    local server_cpu pg_cpu
    server_cpu="$(per_1k "$(cpu_seconds "$server_pid")" "$server_cpu0")"
    pg_cpu="$(per_1k "$(cpu_seconds "$(postmaster_pid)")" "$pg_cpu0")"
    # The mean attempt (request to response) against the deliveries in flight tells what
    # bounds the drain: with every allowed delivery in flight the attempts, otherwise
    # the claims that keep the workers fed.
    curl -fs "$base/metrics" | python3 -c '
import sys
values = {line.split()[0]: float(line.split()[1]) for line in sys.stdin
          if line.startswith("picloud_delivery_attempt_seconds_")}
count, total = values.get("picloud_delivery_attempt_seconds_count", 0), values.get("picloud_delivery_attempt_seconds_sum", 0)
if count:
    print(f"'"$name"': mean webhook attempt {1000 * total / count:.2f} ms over {count:.0f} attempts", file=sys.stderr)
' || true
    if [ "$stats" = 1 ]; then
        step "$name: PostgreSQL's busiest statements over the throughput phase"
        # Each statement's texts together (a batch's list of another length is another
        # text), with planning time, and the whole.
        "$PGBIN/psql" "$url" -P pager=off -c "SELECT coalesce(statement, 'all statements') AS statement,
            sum(calls) AS calls, count(*) AS texts, round(sum(exec_ms)) AS exec_ms, round(sum(plan_ms)) AS plan_ms, sum(rows) AS rows
            FROM (SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 50) AS statement, calls,
                         total_exec_time AS exec_ms, total_plan_time AS plan_ms, rows FROM pg_stat_statements) s
            GROUP BY ROLLUP (statement) ORDER BY sum(exec_ms) + sum(plan_ms) DESC LIMIT 16" >&2
    fi

    step "$name: publish-to-webhook latency at $RATE events/s for ${SECONDS_}s"
    start_sink "$name-latency" "$((RATE * SECONDS_))"
    curl -fs -X POST "$base/v1/apps/bench/triggers" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
        -d "{\"source\":{\"kind\":\"topic\",\"topic\":\"paced\"},\"handler\":{\"kind\":\"webhook\",\"url\":\"$SINK_URL\"}}" >/dev/null
    "$BIN/paced-publisher" --url "$base/v1/apps/bench/topics/paced/events" --key "$key" --rate "$RATE" --seconds "$SECONDS_" >"$WORK/$name.pub"
    local latency; latency="$(wait_sink "$name-latency")"
    stop_all
    python3 - "$name" "$throughput" "$latency" "$(cat "$WORK/$name.pub")" "$server_cpu" "$pg_cpu" <<'PY'
import json, sys
name, t, l, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
server_cpu, pg_cpu = sys.argv[5], (sys.argv[6] if name == "postgres" else "-")
print(f"| {name} | {t['per_second']:.0f} | {t['distinct']}/{t['deliveries']} | {server_cpu} s | {pg_cpu} s | {l['p50_ms']} ms | {l['p99_ms']} ms | {l['max_ms']} ms | {p['published']}/{p['asked']} | {l['distinct']} |")
PY
}

run_graphile() { # run_graphile MODE CONCURRENCY -> one table row (graphile-worker, plain or batched)
    local mode="$1" concurrency="$2" name="graphile-$1-$2" db="graphile_$1_$2" url node_pid
    "$PGBIN/psql" -q "$PG_URL" -c "CREATE DATABASE $db" >/dev/null
    url="postgres://postgres@127.0.0.1:$PGPORT/$db"
    step "graphile-worker ($mode, concurrency $concurrency): $EVENTS jobs to the sink"
    start_sink "$name" "$EVENTS"
    local pg_cpu0; pg_cpu0="$(cpu_seconds "$(postmaster_pid)")"
    node "$PEER_DIR/run.mjs" "$url" "$SINK_URL" "$EVENTS" "$mode" "$concurrency" >"$WORK/$name.log" 2>&1 &
    node_pid=$!
    PIDS+=("$node_pid")
    local throughput; throughput="$(wait_sink "$name")"
    local node_cpu pg_cpu
    node_cpu="$(per_1k "$(cpu_seconds "$node_pid")")"
    pg_cpu="$(per_1k "$(cpu_seconds "$(postmaster_pid)")" "$pg_cpu0")"
    stop_all
    grep -iE 'error|warning' "$WORK/$name.log" | head -3 >&2 || true
    python3 - "$mode, concurrency $concurrency" "$throughput" "$node_cpu" "$pg_cpu" <<'PY'
import json, sys
mode, t, node_cpu, pg_cpu = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"| graphile-worker ({mode}) | {t['per_second']:.0f} | {t['distinct']}/{t['deliveries']} | {node_cpu} s (Node.js) | {pg_cpu} s | - | - | - | - | - |")
PY
}

SQLITE="$(run_backend sqlite "sqlite://$WORK/sqlite.db")"
"$PGBIN/psql" -q "$PG_URL" -c 'CREATE DATABASE bench' >/dev/null
POSTGRES="$(run_backend postgres "postgres://postgres@127.0.0.1:$PGPORT/bench")"
PEER_ROWS=()
if [[ " ${PEERS-graphile} " == *" graphile "* ]]; then
    command -v node >/dev/null || die "node is missing (graphile-worker runs on Node.js; PEERS= leaves it out)"
    PEER_DIR="$REPO_ROOT/bench/peers/graphile-worker"
    if [ ! -d "$PEER_DIR/node_modules/graphile-worker" ]; then
        step "installing graphile-worker (npm ci)"
        (cd "$PEER_DIR" && npm ci --no-audit --no-fund --silent) >&2
    fi
    PEER_ROWS+=("$(run_graphile plain 64)")
    for concurrency in ${GRAPHILE_CONCURRENCY:-64 128}; do
        PEER_ROWS+=("$(run_graphile batched "$concurrency")")
    done
fi

step "results"
printf '\nmachine: %s cores, %s\n\n' "$(nproc)" "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "| backend | deliveries/s | distinct/received | PiCloud CPU per 1k deliveries | PostgreSQL CPU per 1k | p50 publish-to-webhook at ${RATE}/s | p99 | max | published/asked | delivered (paced) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "$SQLITE"
echo "$POSTGRES"
for row in "${PEER_ROWS[@]}"; do echo "$row"; done
if [ "${#PEER_ROWS[@]}" -gt 0 ]; then
    python3 - "$POSTGRES" "${PEER_ROWS[@]}" <<'PY'
import sys
rate = lambda row: float(row.split("|")[2])
ours, best = rate(sys.argv[1]), max(rate(r) for r in sys.argv[2:])
print(f"\nPostgreSQL deliveries/s, PiCloud / graphile-worker's best: {ours / best:.2f}x (target >= 2.5x; PiCloud >= 8,000/s)")
PY
fi
