#!/usr/bin/python3
"""
bench/idle_conns.py - memory cost of idle keep-alive connections.

Opens N connections to an HTTP server, sends one GET on each and reads the
answer, then holds them all idle. Measures the server process's VmRSS
(/proc/PID/status) before opening and after all are open and prints

    bytes per connection = (rss_after - rss_before) / N

Sockets are spread over source addresses 127.0.0.2, 127.0.0.3, ...
(--per-addr each, bound before connect) so ephemeral ports never run out.
RLIMIT_NOFILE's soft limit is raised to the hard limit.

    bench/idle_conns.py --port 8080 --pid 1234 [--conns 10000]
    bench/idle_conns.py --port 8080 --pid MASTER --child   # nginx worker

The last stdout line is machine-readable:
    RESULT conns=N rss_before=B rss_after=A bytes_per_conn=X [accounted_per_conn=Y]

Only the standard library; bounded in time (--timeout, default 120 s).
"""

import argparse
import os
import re
import resource
import select
import signal
import socket
import sys
import time
import urllib.request

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    if not m:
        raise SystemExit(f"no VmRSS for pid {pid}")
    return int(m.group(1)) * 1024


def first_child(pid):
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    if not kids:
        raise SystemExit(f"pid {pid} has no child process")
    return sorted(kids)[0]


def accounted(url):
    """Sum of moor_mem_live_bytes from a moor /metrics URL."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("moor_mem_live_bytes"):
            total += float(line.split()[-1])
    return total


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < need:
        raise SystemExit(f"RLIMIT_NOFILE {soft} < {need} needed")


def read_response(s, buf):
    """Reads one Content-Length response; returns the leftover bytes."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"bad response: {head[:80]!r}")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the body")
        rest += chunk
    return rest[n:]


def open_conns(args):
    socks = []
    req = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n").encode()
    for i in range(args.conns):
        src = f"127.0.0.{2 + i // args.per_addr}"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        s.bind((src, 0))
        s.connect((args.host, args.port))
        s.sendall(req)
        read_response(s, b"")
        socks.append(s)
        if args.verbose and (i + 1) % 1000 == 0:
            print(f"  {i + 1} open", file=sys.stderr, flush=True)
    return socks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True,
                    help="server process to measure")
    ap.add_argument("--child", action="store_true",
                    help="measure the first child of --pid (nginx worker)")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--per-addr", type=int, default=5000)
    ap.add_argument("--path", default="/healthz")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait before each RSS reading")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="seconds to keep the connections open at the end")
    ap.add_argument("--metrics-url",
                    help="moor /metrics URL: also report accounted bytes")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    signal.signal(signal.SIGALRM, lambda *a: sys.exit("idle_conns: timeout"))
    signal.alarm(int(args.timeout))
    raise_nofile(args.conns + 64)
    pid = first_child(args.pid) if args.child else args.pid

    time.sleep(args.settle)
    before = vm_rss(pid)
    acc_before = accounted(args.metrics_url) if args.metrics_url else None
    t0 = time.monotonic()
    socks = open_conns(args)
    opened = time.monotonic() - t0
    time.sleep(args.settle)
    after = vm_rss(pid)
    acc_after = accounted(args.metrics_url) if args.metrics_url else None

    # Every connection must still be open (none closed by the server).
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    closed = poller.poll(0)
    if closed:
        sys.exit(f"idle_conns: {len(closed)} connections closed (or sent "
                 f"data) while idle")

    per = (after - before) / args.conns
    print(f"pid {pid}: {args.conns} idle connections opened in {opened:.1f} s;"
          f" VmRSS {before} -> {after} bytes")
    line = (f"RESULT conns={args.conns} rss_before={before} "
            f"rss_after={after} bytes_per_conn={per:.0f}")
    if acc_before is not None:
        acc = (acc_after - acc_before) / args.conns
        print(f"moor accounted live bytes {acc_before:.0f} -> {acc_after:.0f}")
        line += f" accounted_per_conn={acc:.0f}"
    if args.hold:
        time.sleep(args.hold)
    for s in socks:
        s.close()
    print(line, flush=True)


if __name__ == "__main__":
    main()
