"""Every wait has a deadline: header, body, idle keep-alive, write."""

import select
import socket
import time

from conftest import build_request


def closed_reason(server, reason):
    return server.metric("moor_closed_total", reason=reason)


def wait_reason(server, reason, at_least, timeout=5.0):
    m = server.wait_metric(
        lambda m: m.get_value("moor_closed_total", reason=reason) >= at_least,
        timeout=timeout)
    return m.get_value("moor_closed_total", reason=reason)


def trickle_until_closed(c, data, interval, limit, on_tick=None):
    """Sends data one byte every `interval` s until the server closes.
    Returns (seconds from the first byte to the close, bytes received
    before it). on_tick(i) is called after each byte."""
    got = b""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        try:
            c.sock.send(data[i % len(data):i % len(data) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - t0, got
        i += 1
        if on_tick:
            on_tick(i)
        end = time.monotonic() + interval
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([c.sock], [], [], left)
            if not r:
                break
            try:
                chunk = c.sock.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0, got
            if not chunk:
                return time.monotonic() - t0, got
            got += chunk
    return None, got


def test_slowloris_header_timeout(moor):
    s = moor("--header-timeout", "1s")
    before = closed_reason(s, "header_timeout")
    # A header block that never ends: one byte every 100 ms.
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    served = []

    def normal_client(i):
        if i == 5:  # ~0.5 s into the trickle
            t = time.monotonic()
            r = s.get("/healthz")
            served.append((r.status, time.monotonic() - t))

    with s.conn() as c:
        t, got = trickle_until_closed(c, data, 0.1, 10.0, normal_client)
    assert t is not None, "slowloris connection never closed"
    assert t < 2.5, f"closed {t:.2f} s after the first byte (limit 1 s)"
    assert t > 0.8, f"closed too early: {t:.2f} s (header-timeout 1s)"
    assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:100]
    assert served and served[0][0] == 200, served
    assert served[0][1] < 0.5, f"normal client waited {served[0][1]:.2f} s"
    assert wait_reason(s, "header_timeout", before + 1) == before + 1


def test_header_timeout_is_whole_block_not_per_read(moor):
    # Bytes every 300 ms keep any per-read timer happy; the whole block
    # still must finish within 1 s.
    s = moor("--header-timeout", "1s")
    data = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    with s.conn() as c:
        t, _ = trickle_until_closed(c, data, 0.3, 10.0)
    assert t is not None and t < 2.5, f"closed after {t}"


def test_header_timeout_complete_requests_fine(moor):
    s = moor("--header-timeout", "1s")
    with s.conn() as c:
        for _ in range(3):
            assert c.request().status == 200
            time.sleep(0.5)  # idle between requests is not header time
        assert c.request().status == 200


def test_header_timeout_second_request(moor):
    # The header deadline applies to each request on a keep-alive conn.
    s = moor("--header-timeout", "1s", "--idle-timeout", "30s")
    with s.conn() as c:
        assert c.request().status == 200
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t = c.wait_closed(5.0)
        assert t is not None and 0.8 < t < 2.5, f"closed after {t}"


def test_idle_timeout(moor):
    s = moor("--idle-timeout", "1s")
    before = closed_reason(s, "idle_timeout")
    with s.conn() as c:
        assert c.request().status == 200
        t0 = time.monotonic()
        assert c.is_open(0.8), "keep-alive conn closed before 0.8 s"
        t = c.wait_closed(3.0)
        assert t is not None, "idle conn not closed within 3.8 s"
        total = time.monotonic() - t0
        assert total < 2.5, f"idle conn closed after {total:.2f} s"
    assert wait_reason(s, "idle_timeout", before + 1) == before + 1


def test_idle_timeout_reset_by_activity(moor):
    s = moor("--idle-timeout", "1s")
    with s.conn() as c:
        for _ in range(5):  # 2.5 s in all, never 1 s idle
            assert c.request().status == 200
            time.sleep(0.5)
        assert c.request().status == 200


def test_silent_connection_has_deadline(moor):
    # A peer that connects and sends nothing is not kept forever.
    s = moor("--header-timeout", "1s", "--idle-timeout", "1s")
    with s.conn() as c:
        t = c.wait_closed(5.0)
    assert t is not None and t < 2.5, f"silent conn closed after {t}"
    m = s.metrics()
    assert m.get_value("moor_closed_total", reason="header_timeout") + \
        m.get_value("moor_closed_total", reason="idle_timeout") >= 1


def test_body_timeout(moor):
    s = moor("--body-timeout", "1s")
    before = closed_reason(s, "body_timeout")
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with s.conn() as c:
        c.send(head + b"x" * 10)
        t = c.wait_closed(5.0)
        assert t is not None, "stalled body never timed out"
        assert 0.8 < t < 2.5, f"closed {t:.2f} s after the body stalled"
    assert wait_reason(s, "body_timeout", before + 1) == before + 1


def test_body_timeout_chunked_stall(moor):
    # A chunked body that stops half-way (inside a chunk) is dropped.
    s = moor("--body-timeout", "1s")
    before = closed_reason(s, "body_timeout")
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" \
        b"Transfer-Encoding: chunked\r\n\r\n"
    with s.conn() as c:
        c.send(head + b"5\r\nhello\r\n10\r\nabc")
        t = c.wait_closed(5.0)
        assert t is not None, "stalled chunked body never timed out"
        assert 0.8 < t < 2.5, f"closed {t:.2f} s after the body stalled"
    assert wait_reason(s, "body_timeout", before + 1) == before + 1


def test_write_timeout_reader_that_never_reads(moor):
    """A peer that sends requests but never reads is dropped: either by
    --write-timeout or by the queue limit; and the server keeps serving."""
    s = moor("--write-timeout", "1s", "--queue-limit", "64KiB")
    before = s.metrics()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(5)
    c.connect(("127.0.0.1", s.port))
    c.setblocking(False)
    req = build_request("GET", "/metrics") * 50
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        try:
            c.send(req)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break

    def dropped(m):
        return (m.get_value("moor_closed_total", reason="write_timeout") +
                m.get_value("moor_closed_total", reason="slow_consumer")) > \
            (before.get_value("moor_closed_total", reason="write_timeout") +
             before.get_value("moor_closed_total", reason="slow_consumer"))

    m = s.wait_metric(dropped, timeout=6.0)
    c.close()
    assert dropped(m), "a peer that never reads was not dropped"
    assert s.get("/healthz").status == 200
