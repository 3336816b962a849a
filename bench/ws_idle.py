#!/usr/bin/python3
"""bench/ws_idle.py - bytes of server memory per idle WebSocket connection.

Opens N WebSocket connections to ws://127.0.0.1:PORT/echo (source
addresses 127.0.0.2, 127.0.0.3, ... 5000 each, so ports never run out),
completes each handshake, and reports the growth of the server's VmRSS
divided by N. One warm-up connection is opened and closed first, so code
pages faulted in on first use (libcrypto's SHA-1 for the handshake) are
not counted as per-connection memory.

An interim tool until `moor bench idle` (built on moor's own client).

usage: bench/ws_idle.py PORT PID [N]
"""
import re
import resource
import socket
import sys
import time

REQ = (b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       b"Sec-WebSocket-Version: 13\r\n\r\n")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024


def handshake(s):
    s.sendall(REQ)
    d = b""
    while b"\r\n\r\n" not in d:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed during the handshake")
        d += chunk
    if b" 101 " not in d.split(b"\r\n", 1)[0]:
        raise RuntimeError(d.split(b"\r\n", 1)[0].decode())


def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    w = socket.create_connection(("127.0.0.1", port), timeout=10)
    handshake(w)
    w.close()
    time.sleep(0.5)
    before = rss(pid)
    socks = []
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket()
        s.settimeout(10)
        s.bind((f"127.0.0.{2 + i // 5000}", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(REQ)
        socks.append(s)
    for s in socks:
        d = b""
        while b"\r\n\r\n" not in d:
            d += s.recv(4096)
    time.sleep(1.0)
    after = rss(pid)
    print(f"RESULT conns={n} rss_before={before} rss_after={after} "
          f"bytes_per_conn={(after - before) / n:.0f} "
          f"open_s={time.monotonic() - t0:.1f}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
