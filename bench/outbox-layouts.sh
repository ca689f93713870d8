#!/usr/bin/env bash
# PostgreSQL's CPU for one outbox backlog under two table layouts, in plain SQL (no
# PiCloud): what a redesign of the outbox for issue #17 item 2 would win or lose before
# anyone builds it. One psql session per run, EVENTS rows published 1,000 to a statement,
# then drained BATCH at a time the way the dispatcher does (claim under a lease, then
# record the outcome, each its own transaction):
#   - history: today's layout. One `outbox` table; the claim updates the lease in place
#     (HOT, fillfactor 50) and recording `delivered` changes `state`, which an index and
#     the pending index's predicate read, so it writes a new entry into every index.
#   - queue:   pending work in a table of its own (`queue`, claimed in place and deleted
#     when done) beside the history row, whose indexes leave `state` out so recording the
#     outcome is an in-place (HOT) update. Publishing writes both rows.
# Both claims start from a scan floor a few batches behind, as the dispatcher's does.
# Prints, per run, the session backend's CPU (ms) for publishing and for draining, and
# the busiest statements' execution times; RUNS runs alternate the layouts.
#
#   bench/outbox-layouts.sh             # EVENTS=20000 BATCH=48 RUNS=3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
EVENTS="${EVENTS:-20000}"
BATCH="${BATCH:-48}"
RUNS="${RUNS:-3}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/postgres.sh
source "$REPO_ROOT/scripts/lib/postgres.sh"
pg_start_cluster "-c shared_preload_libraries=pg_stat_statements"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"; cleanup' EXIT
chmod 755 "$WORK"
psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
psql_ -c "CREATE DATABASE layouts" >/dev/null
psql_ -d layouts -c "CREATE EXTENSION pg_stat_statements" >/dev/null

# Writes the psql script of one run of layout $1.
script() {
    python3 - "$1" "$EVENTS" "$BATCH" <<'PY'
import sys
layout, events, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
columns = """id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, app_id TEXT NOT NULL,
  trigger_id TEXT NOT NULL, topic TEXT NOT NULL, seq BIGINT NOT NULL, dead_letter_id BIGINT,
  state TEXT NOT NULL DEFAULT 'pending', attempts BIGINT NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL, lease_until BIGINT, leased_by TEXT, last_error TEXT,
  last_status BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, finished_at BIGINT"""
cpu = r"""\! awk '{ print "cpu_ms", ($14 + $15) * 10 }' /proc/$BACKEND/stat"""
out = [
    "SET client_min_messages = warning;",
    "DROP TABLE IF EXISTS outbox, queue;",
    f"CREATE TABLE outbox ({columns}) WITH (fillfactor = 50);",
    "CREATE INDEX ON outbox (app_id, topic, seq);",
    "CREATE INDEX ON outbox (app_id, id);",
]
if layout == "history":
    out += [
        "CREATE INDEX ON outbox (trigger_id, state, topic, seq);",
        "CREATE INDEX ON outbox (next_attempt_at, id) WHERE state = 'pending';",
    ]
else:
    out += [
        "CREATE INDEX ON outbox (trigger_id, topic, seq);",
        """CREATE TABLE queue (id BIGINT PRIMARY KEY, trigger_id TEXT NOT NULL, topic TEXT NOT NULL,
             seq BIGINT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
             next_attempt_at BIGINT NOT NULL, lease_until BIGINT, leased_by TEXT)
           WITH (fillfactor = 50);""",
        "CREATE INDEX ON queue (next_attempt_at, id);",
        "CREATE INDEX ON queue (trigger_id, topic, seq);",
    ]
out += [
    "CREATE TEMP TABLE claimed (id BIGINT);",
    "SELECT pg_stat_statements_reset();",
    r"SELECT pg_backend_pid() AS backend \gset",
    r"\setenv BACKEND :backend",
    cpu,
]
for first in range(1, events + 1, 1000):
    insert = f"""INSERT INTO outbox (app_id, trigger_id, topic, seq, next_attempt_at, created_at, updated_at)
        SELECT 'shop', 'hook', 'orders', s, 1000 + s, 1000, 1000
        FROM generate_series({first}, {min(first + 999, events)}) s"""
    if layout == "history":
        out.append(insert + ";")
    else:
        out.append(f"""WITH o AS ({insert} RETURNING id, seq, next_attempt_at)
            INSERT INTO queue (id, trigger_id, topic, seq, next_attempt_at)
            SELECT id, 'hook', 'orders', seq, next_attempt_at FROM o;""")
out += [cpu, "ANALYZE;"]
table = "outbox" if layout == "history" else "queue"
pending = "state = 'pending' AND " if layout == "history" else ""
for n in range(events // batch + 1):
    floor = 1000 + max(0, n * batch - 10 * batch)
    lease = ", updated_at = 2000" if layout == "history" else ""
    out.append(f"""WITH c AS (UPDATE {table} SET attempts = attempts + 1, lease_until = 99999999,
            leased_by = 'node'{lease}
        WHERE id IN (SELECT id FROM {table}
                     WHERE {pending}next_attempt_at <= 99999999 AND next_attempt_at >= {floor}
                       AND (lease_until IS NULL OR lease_until < 2000)
                     ORDER BY next_attempt_at, id LIMIT {batch} FOR UPDATE SKIP LOCKED)
        RETURNING id) INSERT INTO claimed SELECT id FROM c;""")
    if layout == "history":
        out.append("""UPDATE outbox SET state = 'delivered', lease_until = NULL, leased_by = NULL,
            last_status = 200, finished_at = 3000, updated_at = 3000
            WHERE id = ANY(ARRAY(SELECT id FROM claimed));""")
    else:
        out.append("DELETE FROM queue WHERE id = ANY(ARRAY(SELECT id FROM claimed));")
        out.append("""UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_status = 200,
            finished_at = 3000, updated_at = 3000 WHERE id = ANY(ARRAY(SELECT id FROM claimed));""")
    out.append("DELETE FROM claimed;")
out += [
    cpu,
    r"""SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 40) AS statement, calls,
               round(total_exec_time) AS exec_ms
        FROM pg_stat_statements WHERE query ~ '^(WITH|UPDATE|DELETE FROM queue|INSERT)'
        ORDER BY total_exec_time DESC LIMIT 4;""",
]
print("\n".join(out))
PY
}

for run in $(seq "$RUNS"); do
    for layout in history queue; do
        script "$layout" >"$WORK/$layout.sql"
        output="$(psql_ -d layouts -f "$WORK/$layout.sql")"
        read -r start published drained < <(awk '/^cpu_ms/ { printf "%s ", $2 } END { print "" }' <<<"$output")
        printf '\nrun %s, %s: publish %s ms, drain %s ms of PostgreSQL CPU (%s events, %s a claim)\n' \
            "$run" "$layout" "$((published - start))" "$((drained - published))" "$EVENTS" "$BATCH"
        grep -v '^cpu_ms' <<<"$output"
    done
done
