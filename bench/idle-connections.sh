#!/usr/bin/env bash
# Memory per idle keep-alive connection on the routed HTTP path (API clients, the
# dashboard): starts a release `picloud serve` on SQLite, opens N connections that each
# make one `GET /healthz` and then stay open, and reports the server's RSS growth per
# connection. (Idle SSE subscribers on the direct path are measured by bench/fanout.sh.)
#
#   bench/idle-connections.sh          # N=2000
#   PICLOUD_BIN=/some/picloud bench/idle-connections.sh   # a prebuilt binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${N:-2000}"
if [ -z "${PICLOUD_BIN:-}" ]; then
    cargo build --release -q -p picloud
    PICLOUD_BIN=target/release/picloud
fi
python3 - "$PICLOUD_BIN" "$N" <<'PY'
import os, socket, subprocess, sys, tempfile, time
binary, n = sys.argv[1], int(sys.argv[2])
data = tempfile.mkdtemp()
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
# MIMALLOC_PURGE_DELAY=0: mimalloc otherwise hands freed memory back on a timer of its
# own, and a purge of start-up garbage between the two readings made one connection look
# 2.7 KB one run and 11.3 KB the next (glibc, and mimalloc without the delay: 12.5 KB).
env = dict(os.environ, PICLOUD_BIND=f"127.0.0.1:{port}", PICLOUD_DATA_DIR=data,
           PICLOUD_DATABASE_URL=f"sqlite://{data}/picloud.db", PICLOUD_LOG="warn",
           MIMALLOC_PURGE_DELAY="0")
server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss_kb():
    with open(f"/proc/{server.pid}/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))
def idle_connection():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:40]
    return s
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close(); break
        except OSError:
            time.sleep(0.1)
    warm = [idle_connection() for _ in range(200)]  # allocator and runtime at working size
    time.sleep(1)
    before = rss_kb()
    held = [idle_connection() for _ in range(n)]
    time.sleep(2)
    print(f"{(rss_kb() - before) / n:.1f} KB per idle routed connection ({n} connections)")
finally:
    server.terminate(); server.wait()
PY
