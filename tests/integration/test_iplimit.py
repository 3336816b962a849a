"""Per-address limits of `moor serve` (issue 16): --max-conns-per-ip,
--handshake-rate-per-ip / --handshake-burst-per-ip and --ip-table-size.

Loopback is not exempt, and it answers every 127/8 source, so a client
bound to 127.0.0.2 is another address. Over a limit an HTTP client gets
503 and a close, a --tcp-listen client only the close; the refusals are
counted in moor_refused_total{reason} and the addresses tracked in the
gauge moor_ip_table_entries.

The suite's servers run with per-address limits no test reaches
(conftest.SUITE_IP_LIMITS, set through the environment); the tests here
give their limits as flags, which win, or clear the variables to see the
defaults.
"""

import re
import socket
import struct
import time

from conftest import (Closed, Conn, Metrics, build_request, parse_metrics,
                      slack)

HOST = "127.0.0.1"
OTHER = "127.0.0.2"
TCP_BANNER_RE = re.compile(r"tcp://127\.0\.0\.1:(\d+)")
DEFAULTS = {"MOOR_MAX_CONNS_PER_IP": "", "MOOR_HANDSHAKE_RATE_PER_IP": "",
            "MOOR_HANDSHAKE_BURST_PER_IP": ""}  # empty: unset


def conn_from(port, src, timeout=5.0):
    """A Conn whose source address is src."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((src, 0))
    sock.connect((HOST, port))
    return Conn(port, timeout=timeout, sock=sock)


def metrics_from(s, src):
    """/metrics fetched from src (so the fetch is not counted against the
    address under test)."""
    with conn_from(s.port, src) as c:
        r = c.request("GET", "/metrics")
        assert r.status == 200, r
        return Metrics(parse_metrics(r.body.decode()))


def wait_metrics_from(s, src, pred, timeout=5.0):
    end = time.monotonic() + slack(timeout)
    while True:
        m = metrics_from(s, src)
        if pred(m) or time.monotonic() > end:
            return m
        time.sleep(0.05)


def held(port, src, n):
    conns = []
    for _ in range(n):
        c = conn_from(port, src)
        r = c.request("GET", "/healthz")
        assert r.status == 200, r
        conns.append(c)
    return conns


def refused(port, src):
    """Connects once more from src; returns (response, closed). The
    server answers at accept, before any request; Closed if it only
    closes."""
    c = conn_from(port, src)
    try:
        try:
            c.send(build_request("GET", "/healthz"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = c.read_response()
        return resp, c.wait_closed(3.0) is not None
    finally:
        c.close()


def close_all(conns, reset_every=0):
    """Closes conns; every reset_every-th one with a reset (SO_LINGER 0),
    so the close path is also taken after the peer's RST."""
    for i, c in enumerate(conns):
        if reset_every and i % reset_every == 0:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
        c.close()


def refusals(m, reason):
    return m.get_value("moor_refused_total", reason=reason)


def test_per_ip_conns_http(moor):
    s = moor("--max-conns-per-ip", "3")
    conns = held(s.port, HOST, 3)
    try:
        resp, closed = refused(s.port, HOST)
        assert resp.status == 503, resp
        assert resp.closes(), resp
        assert b"server at capacity" in resp.body, resp
        assert closed, "refused connection not closed"
        # Another address is not affected (and sees the count).
        m = metrics_from(s, OTHER)
        assert refusals(m, "per_ip_conns") == 1, m.family("moor_refused_total")
        assert refusals(m, "max_conns") == 0
        assert m.get_value("moor_ip_table_entries") == 2, m
        # The held ones still work; one leaves: room for one more.
        for c in conns:
            assert c.request("GET", "/healthz").status == 200
        conns.pop().close()
        wait_metrics_from(s, OTHER,
                          lambda m: m.sum("moor_connections") == 3)
        conns += held(s.port, HOST, 1)
        resp, _ = refused(s.port, HOST)
        assert resp.status == 503, resp
        s.wait_log("reason=per_ip_conns addr=127.0.0.1")
    finally:
        close_all(conns)


def tcp_port(s):
    m = TCP_BANNER_RE.search(s.stdout_text())
    assert m, f"no tcp:// line in the banner:\n{s.stdout_text()}"
    return int(m.group(1))


def tcp_sub(port, src, channel=b"ch"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.bind((src, 0))
    sock.connect((HOST, port))
    payload = b"SUB " + channel
    sock.sendall(struct.pack("!I", len(payload)) + payload)
    return sock


def closed_without_bytes(sock, timeout=3.0):
    """True if the server closes sock (EOF or reset) having sent nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_per_ip_conns_tcp_listener(moor):
    """--tcp-listen: over the limit the connection is only closed (a 503
    would be read as a frame); the HTTP listener counts the same address
    (one table for all listeners)."""
    s = moor("--tcp-listen", f"{HOST}:0", "--max-conns-per-ip", "2")
    port = tcp_port(s)
    subs = [tcp_sub(port, HOST), tcp_sub(port, HOST)]
    try:
        wait_metrics_from(s, OTHER, lambda m: m.sum("moor_connections") == 3)
        extra = tcp_sub(port, HOST)
        assert closed_without_bytes(extra)
        extra.close()
        # The HTTP listener: the same address is at its limit there too.
        resp, closed = refused(s.port, HOST)
        assert resp.status == 503 and closed, resp
        # Another address subscribes.
        other = tcp_sub(port, OTHER)
        m = wait_metrics_from(s, OTHER,
                              lambda m: m.sum("moor_connections") == 4)
        assert m.sum("moor_connections") == 4, m.family("moor_connections")
        assert refusals(m, "per_ip_conns") == 2, m.family("moor_refused_total")
        other.close()
        # The subscribers still get what is published.
        with conn_from(s.port, OTHER) as c:
            r = c.request("POST", "/pub/ch", body=b"hello")
            assert r.status in (200, 202, 204), r
        for sock in subs:
            hdr = sock.recv(4)
            assert len(hdr) == 4
    finally:
        for sock in subs:
            sock.close()


def test_rate_refuses_a_burst_and_recovers(moor):
    s = moor("--handshake-rate-per-ip", "5", "--handshake-burst-per-ip", "5")
    for _ in range(5):
        with conn_from(s.port, OTHER) as c:
            assert c.request("GET", "/healthz").status == 200
    resp, closed = refused(s.port, OTHER)
    assert resp.status == 503, resp
    assert resp.header("Retry-After") == "1", resp
    assert closed
    # 127.0.0.1 has a bucket of its own.
    m = metrics_from(s, HOST)
    assert refusals(m, "per_ip_rate") == 1, m.family("moor_refused_total")
    # A second later (5/s) the address is let in again.
    time.sleep(1.1)
    for _ in range(3):
        with conn_from(s.port, OTHER) as c:
            assert c.request("GET", "/healthz").status == 200
    assert refusals(metrics_from(s, HOST), "per_ip_rate") == 1


def test_counts_return_to_zero(moor):
    """Every close gives its slot back, also after a reset: the limit can
    be filled again, and the address leaves the table."""
    s = moor("--max-conns-per-ip", "20")
    for round_ in range(3):
        conns = held(s.port, OTHER, 20)
        try:
            resp, _ = refused(s.port, OTHER)
            assert resp.status == 503, (round_, resp)
            m = metrics_from(s, HOST)
            assert m.get_value("moor_ip_table_entries") == 2, m
        finally:
            close_all(conns, reset_every=2)
        # 127.0.0.2 is forgotten once its bucket is full again (it spent
        # 21 of 200 tokens; 100/s): only the fetching address is left.
        m = wait_metrics_from(
            s, HOST, lambda m: m.get_value("moor_ip_table_entries") == 1
            and m.sum("moor_connections") == 1)
        assert m.get_value("moor_ip_table_entries") == 1, m
        assert m.sum("moor_connections") == 1, m.family("moor_connections")
    assert refusals(m, "per_ip_conns") == 3, m.family("moor_refused_total")


def test_ip_table_full(moor):
    """Two addresses fit; while both have connections a third is refused
    (ip_table_full); once one has none, the third takes its place."""
    s = moor("--ip-table-size", "2")
    a = conn_from(s.port, OTHER)
    b = conn_from(s.port, "127.0.0.3")
    try:
        assert a.request("GET", "/healthz").status == 200
        assert b.request("GET", "/healthz").status == 200
        resp, closed = refused(s.port, "127.0.0.4")
        assert resp.status == 503 and closed, resp
        # Known addresses still get in; metrics over a held connection.
        r = a.request("GET", "/metrics")
        m = Metrics(parse_metrics(r.body.decode()))
        assert refusals(m, "ip_table_full") == 1, m.family(
            "moor_refused_total")
        assert m.get_value("moor_ip_table_entries") == 2, m
        b.close()
        end = time.monotonic() + slack(3.0)
        while True:
            try:
                with conn_from(s.port, "127.0.0.4") as c:
                    if c.request("GET", "/healthz").status == 200:
                        break
            except Closed:
                pass
            assert time.monotonic() < end, "127.0.0.4 never let in"
            time.sleep(0.05)
        s.wait_log("reason=ip_table_full addr=127.0.0.4")
    finally:
        a.close()
        b.close()


def test_defaults_bite(moor):
    """With nothing set, the defaults apply (100/s, burst 200): of 600
    connections opened at once from one address, the burst gets in and
    some are refused; the server keeps serving the others."""
    n = 600
    s = moor("--accept-rate", "0", env=DEFAULTS)
    socks = []
    fetches = [0]

    def done(m):
        fetches[0] += 1
        return (refusals(m, "per_ip_rate") +
                m.get_value("moor_accepted_total") - fetches[0] >= n)

    try:
        t0 = time.monotonic()
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((OTHER, 0))
            sock.connect((HOST, s.port))
            socks.append(sock)
        m = wait_metrics_from(s, HOST, done)
        elapsed = time.monotonic() - t0
        rate = refusals(m, "per_ip_rate")
        accepted = m.get_value("moor_accepted_total") - fetches[0]
        assert rate + accepted == n, (rate, accepted)
        assert accepted >= 200, accepted  # the burst
        # No more than the burst and what refilled meanwhile.
        assert accepted <= 200 + 100 * elapsed + 10, (accepted, elapsed)
        assert rate >= 1, m.family("moor_refused_total")
        assert refusals(m, "per_ip_conns") == 0
    finally:
        for sock in socks:
            sock.close()
    rc, err = s.stop()
    assert rc == 0, err[-2000:]
