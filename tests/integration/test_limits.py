"""Bad input gets a precise status, Connection: close, a close, and a count
in moor_http_rejected_total{status}."""

import threading
import time

import pytest

from conftest import Closed, Conn, build_request

H = "GET /healthz HTTP/1.1\r\nHost: x\r\n"


def reject_case(server, data, status, send_more=None):
    """Sends data on a new connection, expects `status` with Connection:
    close, then a close by the server; checks the rejected counter grew by
    one."""
    before = server.metric("moor_http_rejected_total", status=str(status))
    with server.conn() as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
        except Closed as e:
            raise AssertionError(f"closed without a response ({e}); "
                                 f"expected {status} for {data[:200]!r}")
        assert r.status == status, f"{r} for {data[:200]!r}"
        assert r.closes(), f"{status} without Connection: close: {r}"
        assert c.wait_closed(5.0) is not None, \
            f"connection still open after {status}"
    after = server.metric("moor_http_rejected_total", status=str(status))
    assert after - before == 1, \
        f'rejected_total{{status="{status}"}} grew by {after - before}'
    return r


BAD_400 = {
    "no-colon": H + "Nocolon\r\n\r\n",
    "space-in-name": H + "Bad Name: v\r\n\r\n",
    "space-before-colon": H + "X-A : v\r\n\r\n",
    "double-space-request-line": "GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "no-version": "GET /healthz\r\nHost: x\r\n\r\n",
    "garbage-version": "GET /healthz HTTX/1.1\r\nHost: x\r\n\r\n",
    "binary": "\x00\x01\x02garbage\r\n\r\n",
    "ctl-in-value": H + "X-A: a\x01b\r\n\r\n",
    "cl-not-number": H + "Content-Length: abc\r\n\r\n",
    "cl-negative": H + "Content-Length: -1\r\n\r\n",
    "cl-plus": H + "Content-Length: +5\r\n\r\nhello",
    "empty-target": "GET  HTTP/1.1\r\nHost: x\r\n\r\n",
    "target-no-slash": "GET healthz HTTP/1.1\r\nHost: x\r\n\r\n",
}

SMUGGLING_400 = {
    "cl-and-te": H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                     "\r\n0\r\n\r\n",
    "te-and-cl": H + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
                     "\r\n0\r\n\r\n",
    "duplicate-cl": H + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
                        "hello",
    "duplicate-cl-differ": H + "Content-Length: 5\r\nContent-Length: 6\r\n"
                               "\r\nhello!",
    "cl-list": H + "Content-Length: 5, 5\r\n\r\nhello",
    "obs-fold": H + "X-A: a\r\n b\r\n\r\n",
    "obs-fold-tab": H + "X-A: a\r\n\tb\r\n\r\n",
    "first-line-space": "GET /healthz HTTP/1.1\r\n Host: x\r\n\r\n",
    "http11-no-host": "GET /healthz HTTP/1.1\r\n\r\n",
    "duplicate-host": H + "Host: y\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_400))
def test_400_malformed(server, name):
    reject_case(server, BAD_400[name].encode("latin-1"), 400)


@pytest.mark.parametrize("name", sorted(SMUGGLING_400))
def test_400_smuggling_shapes(server, name):
    reject_case(server, SMUGGLING_400[name].encode("latin-1"), 400)


def test_400_bad_chunk_size(server):
    data = H + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    reject_case(server, data.encode(), 400)


def test_http10_without_host_ok(server):
    with server.conn() as c:
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert c.read_response().status == 200


def test_505_version(server):
    reject_case(server, b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505)


def test_501_unknown_method(server):
    reject_case(server, b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501)


def test_501_unknown_transfer_coding(server):
    reject_case(server, (H + "Transfer-Encoding: gzip\r\n\r\n").encode(),
                501)


def test_413_content_length_answered_without_body(server):
    # The body is never sent: the answer must not wait for it.
    data = (H + "Content-Length: 2000000\r\n\r\n").encode()
    t0 = time.monotonic()
    r = reject_case(server, data, 413)
    assert time.monotonic() - t0 < 4.0
    assert r.status == 413


def test_413_content_length_while_client_keeps_sending(moor):
    """The client streams its body while the 413 comes back: draining must
    let it read the response (no reset that eats it)."""
    s = moor("--max-body", "1KiB", "--linger-timeout", "2s")
    c = Conn(s.port, timeout=10)
    head = (H + "Content-Length: 4000000\r\n\r\n").encode()
    stop = threading.Event()

    def pump():
        try:
            c.sock.sendall(head)
            chunk = b"z" * 16384
            while not stop.is_set():
                c.sock.sendall(chunk)
        except OSError:
            pass

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        r = c.read_response()
        assert r.status == 413
        assert r.closes()
    finally:
        stop.set()
        c.close()
        t.join(5)


def test_413_chunked_total(moor):
    s = moor("--max-body", "1KiB")
    chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
    data = (H + "Transfer-Encoding: chunked\r\n\r\n").encode() + \
        chunk * 2 + b"0\r\n\r\n"
    reject_case(s, data, 413)


def test_max_body_exact_ok(moor):
    s = moor("--max-body", "1KiB")
    with s.conn() as c:
        r = c.request("GET", "/healthz", body=b"b" * 1024)
        assert r.status == 200
        chunked = b"200\r\n" + b"a" * 512 + b"\r\n"
        r = c.request("GET", "/healthz",
                      headers={"Transfer-Encoding": "chunked"},
                      body=chunked * 2 + b"0\r\n\r\n")
        assert r.status == 200


def test_content_length_overflow(server):
    # Too many digits for any integer: 400 (malformed) or 413 (too large)
    # are both precise answers; what matters is no wrap-around to a small
    # number.
    data = (H + "Content-Length: 99999999999999999999999\r\n\r\n").encode()
    with server.conn() as c:
        c.send(data)
        r = c.read_response()
        assert r.status in (400, 413), r
        assert r.closes()
        assert c.wait_closed(5.0) is not None
    data = (H + "Content-Length: 18446744073709551617\r\n\r\n").encode()
    with server.conn() as c:  # 2^64 + 1
        c.send(data)
        assert c.read_response().status in (400, 413)


def test_414_request_line(server):
    data = f"GET /{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    reject_case(server, data, 414)


def test_414_request_line_without_end(server):
    # A request line that never ends is still answered once it is too long.
    data = ("GET /" + "a" * 10000).encode()
    reject_case(server, data, 414)


def test_431_header_bytes(server):
    hdrs = "".join(f"X-H{i}: {'v' * 500}\r\n" for i in range(20))
    reject_case(server, (H + hdrs + "\r\n").encode(), 431)


def test_431_one_huge_header(server):
    reject_case(server, (H + "X-Big: " + "v" * 9000 + "\r\n\r\n").encode(),
                431)


def test_431_header_bytes_flag(moor):
    s = moor("--max-header-bytes", "1KiB")
    ok = H + "X-A: " + "v" * 500 + "\r\n\r\n"
    with s.conn() as c:
        c.send(ok.encode())
        assert c.read_response().status == 200
    reject_case(s, (H + "X-A: " + "v" * 1100 + "\r\n\r\n").encode(), 431)


def test_large_header_block_under_limit_ok(server):
    hdrs = "".join(f"X-H{i}: {'v' * 500}\r\n" for i in range(13))  # ~6.7 KB
    with server.conn() as c:
        c.send((H + hdrs + "\r\n").encode())
        assert c.read_response().status == 200


def test_431_header_count(server):
    # Host + 100 more = 101 fields > --max-headers 100
    hdrs = "".join(f"X-H{i}: v\r\n" for i in range(100))
    reject_case(server, (H + hdrs + "\r\n").encode(), 431)


def test_header_count_at_limit_ok(server):
    # Host + 99 more = 100 fields
    hdrs = "".join(f"X-H{i}: v\r\n" for i in range(99))
    with server.conn() as c:
        c.send((H + hdrs + "\r\n").encode())
        assert c.read_response().status == 200


def test_431_header_count_flag(moor):
    s = moor("--max-headers", "3")
    reject_case(s, (H + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n").encode(), 431)


def test_good_then_bad_pipelined(server):
    data = build_request("GET", "/healthz") + b"GARBAGE\x00\r\n\r\n"
    with server.conn() as c:
        c.send(data)
        assert c.read_response().status == 200
        r = c.read_response()
        assert r.status == 400 and r.closes()
        assert c.wait_closed(5.0) is not None


def test_linger_bounded(moor):
    """After an error answer, a client that neither sends nor closes is
    dropped once --linger-timeout passes."""
    s = moor("--linger-timeout", "500ms")
    with s.conn() as c:
        c.send(b"\x00bad\r\n\r\n")
        r = c.read_response()
        assert r.status == 400
        t = c.wait_closed(5.0)
        assert t is not None and t < 2.0, f"closed after {t}"


def test_rejects_do_not_leak_conn_memory(server):
    base = server.metrics().sum("moor_mem_live_bytes")
    for _ in range(20):
        with server.conn() as c:
            c.send((H + "X-Big: " + "v" * 9000 + "\r\n\r\n").encode())
            try:
                c.read_response()
            except Closed:
                pass
    # Slack: the /metrics page itself may be a few bytes longer.
    m = server.wait_metric(
        lambda m: m.sum("moor_mem_live_bytes") <= base + 512, timeout=5)
    assert m.sum("moor_mem_live_bytes") <= base + 512, \
        f"live bytes {base} -> {m.sum('moor_mem_live_bytes')} after 20 " \
        f"rejected connections closed"
