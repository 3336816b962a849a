"""--max-conns: the connection over the limit gets 503 and a close, and the
server serves again once others leave."""

import select
import time

from conftest import Closed, Conn, build_request


def held(port, n):
    conns = []
    for _ in range(n):
        c = Conn(port)
        r = c.request("GET", "/healthz")
        assert r.status == 200, r
        conns.append(c)
    return conns


def refused_answer(port):
    """Connects once more; returns the response the server gives (it may
    answer before any request is sent). Raises Closed if it only closes."""
    c = Conn(port)
    try:
        r, _, _ = select.select([c.sock], [], [], 1.0)
        if not r:
            try:
                c.send(build_request("GET", "/healthz"))
            except (BrokenPipeError, ConnectionResetError):
                pass
        resp = c.read_response()
        closed = c.wait_closed(3.0) is not None
        return resp, closed
    finally:
        c.close()


def served_again(port, timeout=3.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            with Conn(port) as c:
                r = c.request("GET", "/healthz")
                if r.status == 200:
                    return True
                last = r
        except (Closed, OSError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"not served again after others closed: {last}")


def test_max_conns(moor):
    s = moor("--max-conns", "5")
    conns = held(s.port, 5)
    try:
        resp, closed = refused_answer(s.port)
        assert resp.status == 503, resp
        assert resp.closes(), resp
        assert closed, "refused connection not closed"
        # Still full: another one is refused too.
        resp, _ = refused_answer(s.port)
        assert resp.status == 503
        # The held ones still work.
        for c in conns:
            assert c.request("GET", "/healthz").status == 200
        # Two leave: room again.
        for c in conns[:2]:
            c.close()
        served_again(s.port)
        m = s.metrics()
        assert m.get_value("moor_refused_total", reason="max_conns") == 2, m
    finally:
        for c in conns:
            c.close()


def test_max_conns_refusals_do_not_leak(moor):
    s = moor("--max-conns", "2")
    conns = held(s.port, 2)
    try:
        for _ in range(50):
            try:
                resp, _ = refused_answer(s.port)
                assert resp.status == 503
            except Closed:
                raise AssertionError("closed without 503")
        assert s.alive()
    finally:
        for c in conns:
            c.close()
    served_again(s.port)
    m = s.metrics()
    assert m.get_value("moor_refused_total", reason="max_conns") == 50
    # Only the /metrics conn is open now.
    assert m.sum("moor_connections") == 1, m.family("moor_connections")


def test_connections_gauge(moor):
    s = moor()
    conns = held(s.port, 7)
    try:
        m = s.metrics()
        # 7 held + the one fetching /metrics
        assert m.sum("moor_connections") == 8, m.family("moor_connections")
    finally:
        for c in conns:
            c.close()
    m = s.wait_metric(lambda m: m.sum("moor_connections") == 1)
    assert m.sum("moor_connections") == 1, m.family("moor_connections")
