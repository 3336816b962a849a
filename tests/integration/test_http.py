"""HTTP/1.1 basics: routes, methods, keep-alive, pipelining, bodies."""

import subprocess
import time

import pytest

from conftest import Conn, build_request


def test_healthz(server):
    r = server.get("/healthz")
    assert r.status == 200
    assert r.body == b"ok\n"
    assert r.header("content-type", "").startswith("text/plain")
    assert r.header("content-length") == "3"
    assert r.version == "HTTP/1.1"


def test_head_healthz_no_body_and_conn_reusable(server):
    with server.conn() as c:
        r = c.request("HEAD", "/healthz")
        assert r.status == 200
        assert r.header("content-type", "").startswith("text/plain")
        # If HEAD had sent a body, this response would not parse.
        r2 = c.request("GET", "/healthz")
        assert r2.status == 200 and r2.body == b"ok\n"


def test_not_found(server):
    with server.conn() as c:
        r = c.request("GET", "/nope")
        assert r.status == 404
        # A 404 is an answer, not bad input: the connection stays usable
        # unless the server said it closes.
        if not r.closes():
            assert c.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/debug/mem"])
def test_method_not_allowed(server, path):
    r = server.get(path, method="POST", body=b"x")
    assert r.status == 405
    allow = [m.strip() for m in (r.header("allow") or "").split(",")]
    assert allow == ["GET", "HEAD"], r.header("allow")


def test_unknown_method_501(server):
    with server.conn() as c:
        c.send(b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 501
        assert r.closes()
        assert c.wait_closed(3.0) is not None


def test_query_string_routes(server):
    assert server.get("/healthz?x=1").status == 200


def test_keepalive_1000_requests_one_accept(server):
    before = server.metric("moor_accepted_total")
    with server.conn() as c:
        for i in range(1000):
            r = c.request("GET", "/healthz")
            assert r.status == 200, f"request {i}: {r}"
            assert r.body == b"ok\n"
            assert not r.closes(), f"request {i} closed the connection"
    after = server.metric("moor_accepted_total")
    # `before` already counts the connection that fetched it; `after`
    # counts the one that fetches it. So: our 1 connection + 1.
    assert after - before - 1 == 1, \
        f"1000 keep-alive requests made {after - before - 1} accepts"


def test_pipelined_50_in_order(server):
    paths = ["/healthz" if i % 2 == 0 else f"/nope{i}" for i in range(50)]
    data = b"".join(build_request("GET", p) for p in paths)
    with server.conn() as c:
        c.send(data)
        for i, p in enumerate(paths):
            r = c.read_response()
            want = 200 if p == "/healthz" else 404
            assert r.status == want, f"response {i} for {p}: {r}"
        # The connection is still alive after the burst.
        assert c.request("GET", "/healthz").status == 200


def test_pipelined_big_burst_backpressure(server):
    # Enough pipelined /metrics requests that answers pile up beyond what
    # the socket takes at once; all must arrive, in order.
    n = 300
    data = b"".join(build_request("GET", "/metrics" if i % 3 else "/nope")
                    for i in range(n))
    with server.conn(timeout=10) as c:
        c.send(data)
        for i in range(n):
            r = c.read_response()
            assert r.status == (200 if i % 3 else 404), f"response {i}: {r}"


def test_content_length_body_discarded(server):
    body = b"x" * 5000
    data = build_request("GET", "/healthz", body=body) + \
        build_request("GET", "/nope")
    with server.conn() as c:
        c.send(data)
        r1 = c.read_response()
        assert r1.status == 200 and r1.body == b"ok\n"
        r2 = c.read_response()
        assert r2.status == 404, "body bytes were parsed as a request"


def test_chunked_body_discarded(server):
    chunks = b"5\r\nhello\r\n1a;ext=1\r\n" + b"y" * 26 + b"\r\n0\r\n" \
        b"Trailer-X: 1\r\n\r\n"
    data = build_request("GET", "/healthz",
                         headers={"Transfer-Encoding": "chunked"},
                         body=chunks) + build_request("GET", "/nope")
    with server.conn() as c:
        c.send(data)
        assert c.read_response().status == 200
        assert c.read_response().status == 404


def test_body_split_over_reads(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    with server.conn() as c:
        c.send(head + b"12345")
        time.sleep(0.1)
        c.send(b"67890" + build_request("GET", "/nope"))
        # Whatever the timing of the first answer, the order holds.
        assert c.read_response().status == 200
        assert c.read_response().status == 404


def test_http10_closes(server):
    with server.conn() as c:
        r = c.request("GET", "/healthz", version="HTTP/1.0")
        assert r.status == 200
        assert c.wait_closed(3.0) is not None, "HTTP/1.0 connection kept"


def test_http10_keepalive(server):
    with server.conn() as c:
        for _ in range(3):
            r = c.request("GET", "/healthz", version="HTTP/1.0",
                          headers={"Connection": "keep-alive"})
            assert r.status == 200
        assert c.is_open(0.2)


def test_connection_close_honoured(server):
    with server.conn() as c:
        r = c.request("GET", "/healthz", headers={"Connection": "close"})
        assert r.status == 200
        assert r.closes()
        assert c.wait_closed(3.0) is not None


def test_request_split_byte_by_byte(server):
    data = build_request("GET", "/healthz", headers={"X-Long": "v" * 100})
    with server.conn() as c:
        for b in data:
            c.send(bytes([b]))
        assert c.read_response().status == 200


def test_curl_keepalive_reuse(server):
    url = server.url("/healthz")
    r = subprocess.run(["curl", "-sS", "-v", "--max-time", "10", url, url],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\nok\n"
    assert "Re-using existing connection" in r.stderr or \
        "Reusing existing connection" in r.stderr, r.stderr


def test_curl_head_and_http10(server):
    r = subprocess.run(["curl", "-sS", "-I", "--http1.0", "--max-time", "10",
                        server.url("/healthz")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[1] == "200"


def test_curl_post_body_405(server):
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w",
                        "%{http_code}", "--max-time", "10",
                        "--data-binary", "hello", server.url("/healthz")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "405"


def test_peer_close_counted(server):
    before = server.metric("moor_closed_total", reason="peer_closed")
    with server.conn() as c:
        assert c.request().status == 200
    m = server.wait_metric(
        lambda m: m.get_value("moor_closed_total", reason="peer_closed")
        >= before + 1)
    assert m.get_value("moor_closed_total", reason="peer_closed") \
        >= before + 1


def test_response_has_date_and_server_safe_headers(server):
    r = server.get("/healthz")
    assert r.header("date"), "no Date header"
    assert len(r.header_all("content-length")) == 1


def test_expect_100_continue(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" \
        b"Expect: 100-continue\r\n\r\n"
    with server.conn() as c:
        c.send(head)
        r = c.read_response()
        if r.status == 100:
            c.send(b"hello")
            r = c.read_response()
        else:
            c.send(b"hello")
        assert r.status == 200, r
        # Nothing stray (such as a late 100 Continue) before the next
        # request's own answer.
        c.send(build_request("GET", "/nope"))
        r2 = c.read_response()
        assert r2.status == 404, f"expected the 404, got {r2}"


def test_many_concurrent_connections(server):
    """200 connections, 10 interleaved rounds of one request each."""
    conns = [Conn(server.port, timeout=10) for _ in range(200)]
    try:
        for rnd in range(10):
            for c in conns:
                c.send(build_request("GET", "/healthz"))
            for i, c in enumerate(conns):
                r = c.read_response()
                assert r.status == 200, f"round {rnd} conn {i}: {r}"
    finally:
        for c in conns:
            c.close()
    m = server.wait_metric(lambda m: m.sum("moor_connections") == 1)
    assert m.sum("moor_connections") == 1
