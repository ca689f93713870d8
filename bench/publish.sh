#!/usr/bin/env bash
# Durable publish throughput over HTTP, on SQLite and on PostgreSQL:
#   - single-event requests from 32 concurrent connections (wrk),
#   - batched requests (PICLOUD_BATCH events each, default 100) from 8 connections,
# next to this disk's fsync rate (pg_test_fsync), which bounds any one-fsync-per-publish
# design. Every acknowledged event is durable: SQLite runs WAL with synchronous=FULL,
# PostgreSQL with fsync and synchronous_commit on.
#
#   bench/publish.sh            # DURATION=10 seconds per run by default
#   PICLOUD_BIN_DIR=/some/target/release bench/publish.sh   # prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
DURATION="${DURATION:-10}"
export PICLOUD_BATCH="${PICLOUD_BATCH:-100}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=bench/lib.sh
source "$REPO_ROOT/bench/lib.sh"
need_wrk
bench_binaries

# shellcheck source=scripts/lib/postgres.sh
source "$REPO_ROOT/scripts/lib/postgres.sh"
pg_start_cluster ""   # durable settings: fsync and synchronous_commit on

WORK="$(mktemp -d)"
# Chain onto the cluster's EXIT trap, keeping the exit status for it.
trap 'rc=$?; stop_server; rm -rf "$WORK"; (exit $rc); cleanup' EXIT

step "measuring this disk's fsync rate"
FSYNCS="$("$PGBIN/pg_test_fsync" -s 2 -f "$WORK/fsync.tmp" | awk '$1 == "fdatasync" {print int($2); exit}')"

# run_backend NAME DATABASE_URL -> prints "NAME single_rps batch_events_per_s errors"
run_backend() {
    local name="$1" url="$2" out base key
    out="$WORK/$name"
    start_bench_server "$out" "$url"
    base="$BASE"
    key="$PICLOUD_KEY"

    step "$name: single-event publishes, 32 connections, ${DURATION}s"
    wrk -t2 -c32 -d"${DURATION}s" --latency -s bench/wrk/publish.lua \
        "$base/v1/apps/bench/topics/orders/events" >"$out/single.txt"
    # Requests per commit group in that run (the writer's histogram, sum over count),
    # and how much of the run the group writer spent committing: near 100%, the writer's
    # cycle, not the CPU, sets the rate.
    local per_group writer_busy
    per_group="$(curl -fs "$base/metrics" | awk '/^picloud_publish_group_requests_sum/ {s = $2}
        /^picloud_publish_group_requests_count/ {c = $2} END {printf "%.1f", c ? s / c : 0}')"
    writer_busy="$(curl -fs "$base/metrics" | awk -v d="$DURATION" \
        '/^picloud_publish_commit_seconds_sum/ {printf "%.0f%%", 100 * $2 / d}')"
    step "$name: batched publishes ($PICLOUD_BATCH events each), 8 connections, ${DURATION}s"
    wrk -t2 -c8 -d"${DURATION}s" --latency -s bench/wrk/publish_batch.lua \
        "$base/v1/apps/bench/events" >"$out/batch.txt"

    step "$name: single-event publishes with 200 triggers on the app (none matching), 32 connections, ${DURATION}s"
    for i in $(seq 100); do
        for source in "other.$i" "other$i.*"; do
            curl -fs -X POST "$base/v1/apps/bench/triggers" -H "Authorization: Bearer $key" \
                -H 'content-type: application/json' \
                -d "{\"source\":{\"kind\":\"topic\",\"topic\":\"$source\"},\"handler\":{\"kind\":\"webhook\",\"url\":\"https://example.com/hook\"}}" >/dev/null
        done
    done
    wrk -t2 -c32 -d"${DURATION}s" --latency -s bench/wrk/publish.lua \
        "$base/v1/apps/bench/topics/orders/events" >"$out/triggers.txt"

    # Every acknowledged request must be in the log: compare with the topic heads.
    local single_ok errors acked_single acked_batch
    errors="$(cat "$out/single.txt" "$out/batch.txt" "$out/triggers.txt" | awk '/Non-2xx/ {n += $NF} END {print n + 0}')"
    acked_single="$(curl -fs "$base/v1/apps/bench/topics/orders" -H "Authorization: Bearer $key" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["last_seq"])')"
    acked_batch=0
    for t in 0 1 2 3; do
        acked_batch=$((acked_batch + $(curl -fs "$base/v1/apps/bench/topics/orders.$t" -H "Authorization: Bearer $key" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["last_seq"])')))
    done
    single_ok="$(cat "$out/single.txt" "$out/triggers.txt" | awk '/requests in/ {n += $1} END {print n}')"
    stop_server
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$name" \
        "$(awk '/Requests\/sec/ {print int($2)}' "$out/single.txt")" \
        "$(awk '/ 99%/ {print $2}' "$out/single.txt")" \
        "$(awk -v b="$PICLOUD_BATCH" '/Requests\/sec/ {print int($2 * b)}' "$out/batch.txt")" \
        "$errors" "$acked_single/$single_ok" "$acked_batch" \
        "$(awk '/Requests\/sec/ {print int($2)}' "$out/triggers.txt")" "$per_group" "$writer_busy"
}

SQLITE="$(run_backend sqlite "sqlite://$WORK/sqlite.db")"
"$PGBIN/psql" -q "$PG_URL" -c 'CREATE DATABASE bench' >/dev/null
POSTGRES="$(run_backend postgres "postgres://postgres@127.0.0.1:$PGPORT/bench")"

step "results"
printf '\nmachine: %s cores, %s; fdatasync: %s/s (pg_test_fsync)\n\n' "$(nproc)" \
    "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)" "$FSYNCS"
printf '| backend | single-event publishes/s (32 conns) | p99 | batched events/s (%s/request) | single, 200 triggers on the app | non-2xx | in log / acked (single) | in log (batched) | publishes per fsync | requests per commit (single) | writer committing (single) |\n' "$PICLOUD_BATCH"
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for row in "$SQLITE" "$POSTGRES"; do
    read -r name single p99 batch errors acked acked_batch triggers per_group writer_busy <<<"$row"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$single" "$p99" "$batch" "$triggers" "$errors" "$acked" "$acked_batch" \
        "$(python3 -c "print(round($single / max($FSYNCS, 1), 1))")" "$per_group" "$writer_busy"
done
