"""SIGTERM / SIGINT: stop accepting, finish requests in flight, close idle
keep-alive connections, exit 0 with every byte returned."""

import signal
import time

import pytest

from conftest import Closed, Conn, assert_clean_exit


def open_idle(port, n):
    conns = []
    for _ in range(n):
        c = Conn(port)
        assert c.request("GET", "/healthz").status == 200
        conns.append(c)
    return conns


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_shutdown_idle_and_in_flight(moor, sig):
    s = moor("--shutdown-timeout", "5s")
    idle = open_idle(s.port, 20)
    slow = Conn(s.port, timeout=10)
    # A request in flight: headers sent, body half sent.
    slow.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\n12345")
    time.sleep(0.2)
    t0 = time.monotonic()
    s.proc.send_signal(sig)
    try:
        # Idle keep-alive connections are closed promptly.
        for i, c in enumerate(idle):
            t = c.wait_closed(3.0)
            assert t is not None, f"idle conn {i} not closed on shutdown"
        # The request in flight still completes.
        time.sleep(0.3)
        assert s.alive(), "exited before the request in flight finished"
        slow.send(b"67890")
        r = slow.read_response()
        assert r.status == 200, r
        assert slow.wait_closed(3.0) is not None, \
            "conn kept open after its last answer during shutdown"
    finally:
        for c in idle + [slow]:
            c.close()
    rc, err = s.stop(sig, timeout=10)
    elapsed = time.monotonic() - t0
    assert elapsed < 5.0 + 1.0, f"shutdown took {elapsed:.2f} s"
    assert_clean_exit(rc, err)


def test_shutdown_stops_accepting(moor):
    s = moor("--shutdown-timeout", "3s")
    slow = Conn(s.port, timeout=10)
    slow.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\n1")
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert s.alive()
    # A new connection is refused, or accepted by the kernel and closed
    # without being served.
    try:
        c = Conn(s.port, timeout=3)
    except OSError:
        pass
    else:
        with c:
            try:
                c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response()
                assert r.status != 200, "served a new conn while draining"
            except (Closed, OSError):
                pass
    slow.send(b"234567890")
    try:
        assert slow.read_response().status == 200
    finally:
        slow.close()
    rc, err = s.stop(signal.SIGTERM, timeout=10)
    assert_clean_exit(rc, err)


def test_shutdown_timeout_bounds_stuck_request(moor):
    """A request that never completes does not hold the exit beyond
    --shutdown-timeout."""
    s = moor("--shutdown-timeout", "1s", "--body-timeout", "60s")
    slow = Conn(s.port, timeout=10)
    slow.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\n1")
    time.sleep(0.2)
    t0 = time.monotonic()
    rc, err = s.stop(signal.SIGTERM, timeout=10)
    elapsed = time.monotonic() - t0
    slow.close()
    assert rc is not None, "did not exit"
    assert elapsed < 2.5, f"exit took {elapsed:.2f} s with 1 s timeout"
    assert elapsed > 0.8, f"exit after {elapsed:.2f} s: did not wait"
    assert_clean_exit(rc, err)


def test_shutdown_partial_header_and_silent_conns(moor):
    s = moor("--shutdown-timeout", "2s")
    silent = [Conn(s.port) for _ in range(5)]
    partial = Conn(s.port)
    partial.send(b"GET /heal")
    time.sleep(0.2)
    t0 = time.monotonic()
    rc, err = s.stop(signal.SIGTERM, timeout=10)
    elapsed = time.monotonic() - t0
    for c in silent + [partial]:
        c.close()
    assert elapsed < 3.5, f"shutdown took {elapsed:.2f} s"
    assert_clean_exit(rc, err)


def test_shutdown_after_load(moor):
    s = moor()
    for _ in range(5):
        idle = open_idle(s.port, 20)
        for c in idle:
            c.close()
    with s.conn() as c:
        for _ in range(200):
            assert c.request("GET", "/metrics").status == 200
        assert c.request("GET", "/debug/mem").status == 200
        rc, err = s.stop(signal.SIGTERM, timeout=10)
    assert_clean_exit(rc, err)


def test_shutdown_with_mem_trace(moor):
    s = moor("--mem-trace")
    idle = open_idle(s.port, 5)
    rc, err = s.stop(signal.SIGTERM, timeout=10)
    for c in idle:
        c.close()
    assert_clean_exit(rc, err)


def test_double_signal(moor):
    s = moor("--shutdown-timeout", "2s")
    idle = open_idle(s.port, 3)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    rc, err = s.stop(signal.SIGTERM, timeout=10)
    for c in idle:
        c.close()
    assert rc is not None
    # A second signal may force a faster exit, but never a crash or leak.
    assert_clean_exit(rc, err)
