#!/usr/bin/env python3
"""Load for bench/slow-connections.sh (python3 stdlib only, loopback only).

  slow_connections.py probe   HOST PORT KEY COUNT
      COUNT GET /healthz and COUNT single-event publishes, each on a new connection,
      one after another; prints "healthz_p50 healthz_p99 publish_p50 publish_p99 errors"
      in milliseconds.
  slow_connections.py slowloris HOST PORT SOURCE COUNT SECONDS
      keeps COUNT connections from SOURCE (a loopback address) sending a request head
      one byte every 2 s, reopening any the server closes (after 0.5 s), for SECONDS;
      then closes them all and prints what the server did with them.
"""

import asyncio
import json
import socket
import sys
import time


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def request(host, port, raw):
    """Sends one request on a new connection; returns (status, milliseconds)."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = (time.perf_counter() - started) * 1000
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, elapsed


def probe(host, port, key, count):
    body = json.dumps({"type": "bench", "data": {"n": 1}}).encode()
    healthz = f"GET /healthz HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode()
    publish = (
        f"POST /v1/apps/bench/topics/slow/events HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
    times = {"healthz": [], "publish": []}
    errors = 0
    for _ in range(count):
        for name, raw, ok in (("healthz", healthz, 200), ("publish", publish, 201)):
            try:
                status, ms = request(host, port, raw)
            except OSError:
                errors += 1
                continue
            if status != ok:
                errors += 1
                continue
            times[name].append(ms)
    h, p = times["healthz"], times["publish"]
    print(f"{percentile(h, 50):.2f} {percentile(h, 99):.2f} "
          f"{percentile(p, 50):.2f} {percentile(p, 99):.2f} {errors}")


async def slowloris(host, port, source, count, seconds):
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 10_000
    stats = {"opened": 0, "refused_429": 0, "refused_503": 0, "closed_by_server": 0,
             "connect_errors": 0}
    end = time.monotonic() + seconds

    async def one(i):
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(source, 0))
            except OSError:
                stats["connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["opened"] += 1
            try:
                sent = 0
                while time.monotonic() < end and sent < len(head):
                    writer.write(head[sent:sent + 1])
                    sent += 1
                    try:
                        answer = await asyncio.wait_for(reader.read(64), 2.0)
                    except asyncio.TimeoutError:
                        continue
                    if answer.startswith(b"HTTP/1.1 429"):
                        stats["refused_429"] += 1
                    elif answer.startswith(b"HTTP/1.1 503"):
                        stats["refused_503"] += 1
                    else:
                        stats["closed_by_server"] += 1
                    break
            except OSError:
                stats["closed_by_server"] += 1
            finally:
                writer.close()
            await asyncio.sleep(0.5)

    await asyncio.gather(*(one(i) for i in range(count)))
    print(json.dumps(stats))


def main():
    mode = sys.argv[1]
    if mode == "probe":
        probe(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    elif mode == "slowloris":
        asyncio.run(slowloris(sys.argv[2], int(sys.argv[3]), sys.argv[4],
                              int(sys.argv[5]), float(sys.argv[6])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
