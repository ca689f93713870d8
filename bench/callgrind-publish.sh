#!/bin/bash
# Instruction counts (valgrind's callgrind: repeatable, whatever else the machine does)
# of N single-event publishes (default 2000, after 200 unmeasured) on PostgreSQL, or on
# the embedded SQLite with DB=sqlite, for comparing two builds where wall-clock
# benchmarks are too noisy:
#
#   bench/callgrind-publish.sh before /path/to/old/picloud
#   bench/callgrind-publish.sh after target/release/picloud
#   DB=sqlite bench/callgrind-publish.sh after target/release/picloud
#   callgrind_annotate /tmp/cg-after/out.*.1 | head -40
#
# PostgreSQL needs a server at postgres://postgres@127.0.0.1:55432 (see CONTRIBUTING.md
# for a throwaway cluster) and psql; both need valgrind and curl.
set -e
NAME=$1; BIN=$2; N=${N:-2000}
PG=postgres://postgres@127.0.0.1:55432
DATABASE=()
if [ "${DB:-postgres}" != sqlite ]; then
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS cg_$NAME" -c "CREATE DATABASE cg_$NAME" >/dev/null
    DATABASE=(--database-url "$PG/cg_$NAME")
fi
rm -rf /tmp/cg-$NAME; mkdir -p /tmp/cg-$NAME
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PICLOUD_LOG=warn valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-$NAME/out.%p "$BIN" --data-dir /tmp/cg-$NAME/data "${DATABASE[@]}" serve --bind 127.0.0.1:$PORT > /tmp/cg-$NAME/stdout 2>/tmp/cg-$NAME/stderr &
VPID=$!
for i in $(seq 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
ADMIN=$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' /tmp/cg-$NAME/stdout | head -1)
python3 - "$PORT" "$ADMIN" "$N" "$VPID" <<'PY'
import http.client, json, sys, time, subprocess
port, admin, n, vpid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# One kept-alive connection, as the wrk benchmarks use (bench/publish.sh), so the count is
# the publish's, not a TCP connection's set-up per request.
conn = http.client.HTTPConnection("127.0.0.1", int(port))
def call(method, path, key, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data)
    return data
call("POST", "/v1/apps", admin, {"id": "bench"})
key = json.loads(call("POST", "/v1/apps/bench/keys", admin, {"name": "b", "scopes": ["app:admin"]}))["key"]
# The event bench/wrk/publish.lua sends.
EVENT = {"type": "order.created", "data": {"id": 12345, "total": 99.5, "items": ["widget", "gadget"], "note": "a typical small event"}}
for i in range(200):
    call("POST", "/v1/apps/bench/topics/orders/events", key, EVENT)
subprocess.run(["callgrind_control", "--zero", vpid], check=True, capture_output=True)
t = time.monotonic()
for i in range(n):
    call("POST", "/v1/apps/bench/topics/orders/events", key, EVENT)
print("published", n, "in", round(time.monotonic() - t, 1), "s")
subprocess.run(["callgrind_control", "--dump=measured", vpid], check=True, capture_output=True)
PY
kill -TERM $VPID; wait $VPID 2>/dev/null || true
TOTAL=$(sed -n 's/^summary: //p' /tmp/cg-$NAME/out.*.1)
echo "$NAME: $TOTAL instructions, $((TOTAL / N)) per publish (/tmp/cg-$NAME/out.*.1)"
