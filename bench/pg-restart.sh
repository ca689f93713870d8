#!/usr/bin/env bash
# PostgreSQL going away under publish load: PiCloud publishes single events from 32
# connections (wrk) while the database server is stopped hard (MODE=immediate: a crash,
# recovered from its WAL; MODE=fast: a clean restart) and started again. It checks what
# users rely on:
#   - nothing acknowledged is lost: every 201 is in the log after the restart;
#   - failures are answered, quickly: non-2xx responses (503 `unavailable`), no hang;
#   - PiCloud recovers by itself: publishes succeed again once the database is back
#     (the publish writer reopens its own connection, the pool replaces dead ones), and
#     /readyz says ready.
#
#   bench/pg-restart.sh                      # DURATION=20 s of load, restart after 5 s
#   MODE=fast DOWN=3 bench/pg-restart.sh     # clean shutdown, 3 s without a database
#   PICLOUD_BIN_DIR=/some/target/release bench/pg-restart.sh   # prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
DURATION="${DURATION:-20}"
RESTART_AT="${RESTART_AT:-5}"
DOWN="${DOWN:-2}"
MODE="${MODE:-immediate}"

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
trap 'rc=$?; stop_server; rm -rf "$WORK"; (exit $rc); cleanup' EXIT

"$PGBIN/psql" -q "$PG_URL" -c 'CREATE DATABASE bench' >/dev/null
DB_URL="postgres://postgres@127.0.0.1:$PGPORT/bench"
SERVER_ENV="PICLOUD_LOG=warn" start_bench_server "$WORK/server" "$DB_URL"
base="$BASE"

step "publishing from 32 connections for ${DURATION}s; PostgreSQL stopped ($MODE) after ${RESTART_AT}s, down ${DOWN}s"
wrk -t2 -c32 -d"${DURATION}s" --timeout 10s -s bench/wrk/publish.lua \
    "$base/v1/apps/bench/topics/orders/events" >"$WORK/wrk.txt" &
WRK_PID=$!
sleep "$RESTART_AT"
as_pg "$PGBIN/pg_ctl" stop -D "$PGTMP/data" -m "$MODE" -w -t 60 >/dev/null
stopped_at="$(date +%s.%N)"
sleep "$DOWN"
as_pg "$PGBIN/pg_ctl" start -D "$PGTMP/data" -l "$PGLOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGTMP -c max_connections=300 -c shared_buffers=128MB" >/dev/null
started_at="$(date +%s.%N)"
# How long after the database was back until a publish went through again.
recovered=""
for _ in $(seq 600); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/v1/apps/bench/topics/orders/events" \
        -H "Authorization: Bearer $PICLOUD_KEY" -H 'content-type: application/json' -d '{"data":{"probe":true}}' || true)"
    if [ "$code" = 201 ]; then
        recovered="$(python3 -c "print(round($(date +%s.%N) - $started_at, 2))")"
        break
    fi
    sleep 0.05
done
wait "$WRK_PID"
[ -n "$recovered" ] || die "no publish succeeded within 30 s of the database's return"

ready=""
for _ in $(seq 100); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then ready=yes; break; fi
    sleep 0.1
done

requests="$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")"; non2xx="${non2xx:-0}"
timeouts="$(awk '/Socket errors/ {for (i = 1; i <= NF; i++) if ($i == "timeout") print $(i + 1)}' "$WORK/wrk.txt" | tr -d ,)"
timeouts="${timeouts:-0}"
acked=$((requests - non2xx + 1))   # and the probe that saw the recovery
in_log="$("$PGBIN/psql" -Atq "$DB_URL" -c "SELECT count(*) FROM topic_events WHERE app_id = 'bench'")"
last_seq="$("$PGBIN/psql" -Atq "$DB_URL" -c "SELECT last_seq FROM topics WHERE app_id = 'bench' AND name = 'orders'")"
stop_server

step "results"
printf '\nmachine: %s cores, %s; PostgreSQL stopped with -m %s for %ss\n\n' "$(nproc)" \
    "$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)" "$MODE" "$DOWN"
printf '| responses | 201 (acknowledged) | non-2xx | wrk timeouts | events in the log | topic last_seq | lost (acked, not in log) | first publish after the database is back | /readyz after |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
lost=$((acked > in_log ? acked - in_log : 0))
printf '| %s | %s | %s | %s | %s | %s | %s | %s s | %s |\n' "$((requests + 1))" "$acked" "$non2xx" \
    "$timeouts" "$in_log" "$last_seq" "$lost" "$recovered" "${ready:-not ready}"
[ "$lost" -eq 0 ] || die "$lost acknowledged publishes are missing from the log"
[ "$last_seq" -eq "$in_log" ] || die "seqs have gaps: last_seq $last_seq, $in_log events"
[ "$timeouts" -eq 0 ] || die "$timeouts requests hung past 10 s"
[ -n "$ready" ] || die "/readyz did not come back"
echo "ok: nothing acknowledged was lost, failures were answered, PiCloud recovered by itself"
