#!/bin/bash
# Instruction counts (valgrind's callgrind: repeatable, whatever else the machine does)
# of N single-event publishes (default 2000, after 200 unmeasured) on PostgreSQL, for
# comparing two builds where wall-clock benchmarks are too noisy:
#
#   bench/callgrind-publish.sh before /path/to/old/picloud
#   bench/callgrind-publish.sh after target/release/picloud
#   callgrind_annotate /tmp/cg-after/out.*.1 | head -40
#
# Needs a PostgreSQL at postgres://postgres@127.0.0.1:55432 (see CONTRIBUTING.md for a
# throwaway cluster), psql, valgrind and curl.
set -e
NAME=$1; BIN=$2; N=${N:-2000}
PG=postgres://postgres@127.0.0.1:55432
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS cg_$NAME" -c "CREATE DATABASE cg_$NAME" >/dev/null
rm -rf /tmp/cg-$NAME; mkdir -p /tmp/cg-$NAME
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PICLOUD_LOG=warn valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-$NAME/out.%p "$BIN" --data-dir /tmp/cg-$NAME/data --database-url "$PG/cg_$NAME" serve --bind 127.0.0.1:$PORT > /tmp/cg-$NAME/stdout 2>/tmp/cg-$NAME/stderr &
VPID=$!
for i in $(seq 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
ADMIN=$(grep -o 'pk_[A-Za-z0-9_-]\{43\}' /tmp/cg-$NAME/stdout | head -1)
python3 - "$PORT" "$ADMIN" "$N" "$VPID" <<'PY'
import json, sys, time, urllib.request, subprocess
port, admin, n, vpid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
base = f"http://127.0.0.1:{port}"
def call(method, path, key, body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.read()
call("POST", "/v1/apps", admin, {"id": "bench"})
key = json.loads(call("POST", "/v1/apps/bench/keys", admin, {"name": "b", "scopes": ["app:admin"]}))["key"]
for i in range(200):
    call("POST", "/v1/apps/bench/topics/orders/events", key, {"data": {"n": i}})
subprocess.run(["callgrind_control", "--zero", vpid], check=True, capture_output=True)
t = time.monotonic()
for i in range(n):
    call("POST", "/v1/apps/bench/topics/orders/events", key, {"data": {"n": i}})
print("published", n, "in", round(time.monotonic() - t, 1), "s")
subprocess.run(["callgrind_control", "--dump=measured", vpid], check=True, capture_output=True)
PY
kill -TERM $VPID; wait $VPID 2>/dev/null || true
ls /tmp/cg-$NAME/
