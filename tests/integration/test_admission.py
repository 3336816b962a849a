"""Admission: --memory-limit refuses new connections cleanly (503) and
--accept-rate paces accepting; both recover."""

import time

from conftest import Closed, Conn


def open_until_refused(port, limit):
    """Opens keep-alive connections (one GET each) until one is answered
    503. Returns (held connections, the 503 response or None, the number
    of connections that got no answer within 2 s)."""
    held = []
    starved = 0
    for _ in range(limit):
        c = Conn(port, timeout=2)
        try:
            r = c.request("GET", "/healthz")
        except TimeoutError:
            starved += 1    # accepted, then never answered
            held.append(c)
            continue
        except Closed:
            c.close()
            raise AssertionError(
                f"connection {len(held) + 1} closed without an answer")
        if r.status == 503:
            assert r.closes(), r
            assert c.wait_closed(3.0) is not None
            c.close()
            return held, r, starved
        assert r.status == 200, r
        held.append(c)
    return held, None, starved


def memory_limited(moor, headroom=32 * 1024):
    probe = moor()
    base = probe.metrics().sum("moor_mem_live_bytes")
    probe.stop()
    limit = int(base) + headroom
    return moor("--memory-limit", f"{limit}B"), base, limit


def test_memory_limit_refuses_with_503(moor):
    s, base, limit = memory_limited(moor)
    held, refused, starved = open_until_refused(s.port, 3000)
    try:
        assert refused is not None, \
            f"{len(held)} connections held under a {limit} B memory limit " \
            f"(baseline {base:.0f} B) and none was refused"
        assert len(held) > starved, "refused the very first connection"
        # docs/principles.md rule 6: refused cleanly, never accepted and then
        # starved.
        assert starved == 0, \
            f"{starved} connection(s) accepted near the memory limit got " \
            f"no answer within 2 s (reading paused), before the 503s began"
    finally:
        for c in held:
            c.close()


def test_memory_limit_recovers_when_peers_leave(moor):
    """Once the connections that used the memory close, new ones are
    served again promptly (the server must notice the closes even while
    it is over its budget)."""
    s, base, limit = memory_limited(moor)
    held, refused, _ = open_until_refused(s.port, 3000)
    for c in held:
        c.close()
    assert refused is not None
    t0 = time.monotonic()
    outcomes = []
    while time.monotonic() - t0 < 3.0:
        try:
            with Conn(s.port, timeout=1) as c:
                r = c.request("GET", "/healthz")
                outcomes.append(r.status)
                if r.status == 200:
                    break
        except (Closed, OSError) as e:
            outcomes.append(type(e).__name__)
        time.sleep(0.05)
    assert outcomes and outcomes[-1] == 200, \
        f"still refusing {time.monotonic() - t0:.1f} s after all " \
        f"{len(held)} connections closed: {outcomes[:3]}...{outcomes[-3:]}"
    m = s.metrics()
    assert m.get_value("moor_refused_total", reason="memory") >= 1, \
        m.family("moor_refused_total")
    assert m.get_value("moor_refused_total", reason="max_conns") == 0
    assert m.get_value("moor_closed_total", reason="peer_closed") >= \
        len(held), "the departed peers were not seen closing"


def time_to_serve(port, n):
    """Connects n times at once, then sends a GET on each; seconds until
    every one has its 200."""
    t0 = time.monotonic()
    conns = [Conn(port, timeout=15) for _ in range(n)]
    try:
        for c in conns:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for i, c in enumerate(conns):
            r = c.read_response()
            assert r.status == 200, f"conn {i}: {r}"
        return time.monotonic() - t0
    finally:
        for c in conns:
            c.close()


def test_accept_rate_paces(moor):
    s = moor("--accept-rate", "10", "--accept-burst", "5")
    time.sleep(1.0)  # let the bucket fill to its burst
    t = time_to_serve(s.port, 25)
    # 5 at once, then 10/s: the last of 25 waits about 2 s.
    assert t > 1.2, f"25 connections served in {t:.2f} s at 10/s burst 5"
    assert t < 6.0, f"25 connections took {t:.2f} s"
    m = s.metrics()
    assert m.get_value("moor_accept_paused_total", reason="rate") >= 1


def test_accept_rate_off(moor):
    s = moor("--accept-rate", "0")
    t = time_to_serve(s.port, 200)
    assert t < 3.0, f"200 connections took {t:.2f} s with no rate limit"
