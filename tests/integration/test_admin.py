"""--admin-listen: the operator's routes (/metrics, /debug/*, /healthz) on
a listener of their own, gone from the public one; and the start-up
warnings for listeners reachable from the network without auth."""

import json
import re
import socket
import time

from conftest import (Conn, Metrics, assert_clean_exit, parse_metrics,
                      run_moor, slack)

OPERATOR = ("/metrics", "/debug/mem", "/debug/conns")
AUTH_WARNING = "with --auth none: anyone who can reach these addresses " \
               "can publish to and subscribe to every channel; see --auth"
ADMIN_WARNING = "admin listener on the network"


def get(port, path, method="GET", headers=None, body=b""):
    with Conn(port) as c:
        return c.request(method, path, headers=headers, body=body)


def admin_metrics(s):
    r = get(s.admin_port, "/metrics")
    assert r.status == 200, r
    return Metrics(parse_metrics(r.body.decode()))


def admin_server(moor, *args):
    s = moor("--admin-listen", "127.0.0.1:0", *args)
    assert s.admin_port, f"no admin listener line in the banner:\n" \
                         f"{s.stdout_text()}"
    assert s.admin_port != s.port
    return s


def warn_lines(s):
    """The warn lines of the start-up. They are logged before the loop
    runs, so once a request is answered they are all there."""
    assert s.get("/healthz").status == 200
    return [l for l in s.stderr_text().splitlines() if "level=warn" in l]


# ---- where the routes are ---------------------------------------------------

def test_operator_routes_move_to_the_admin_listener(moor):
    s = admin_server(moor)
    for path in OPERATOR + ("/healthz",):
        r = get(s.admin_port, path)
        assert r.status == 200, (path, r)
    assert get(s.admin_port, "/metrics", method="HEAD").status == 200
    for path in OPERATOR:
        r = get(s.port, path)
        assert r.status == 404, (path, r)
    assert get(s.port, "/healthz").status == 200
    json.loads(get(s.admin_port, "/debug/mem").body)


def test_admin_listener_serves_nothing_else(moor):
    s = admin_server(moor)
    assert get(s.admin_port, "/sub/news").status == 404
    assert get(s.admin_port, "/sub/news",
               headers={"Accept": "text/event-stream"}).status == 404
    assert get(s.admin_port, "/pub/news", method="POST",
               body=b"hello").status == 404
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version": "13"}
    for path in ("/echo", "/sub/news", "/pub/news"):
        r = get(s.admin_port, path, headers=upgrade)
        assert r.status == 404, (path, r)
    # ...which the public listener still serves.
    r = get(s.port, "/pub/news", method="POST", body=b"hello")
    assert r.status == 202, r
    with Conn(s.port) as c:
        c.send(f"GET /echo HTTP/1.1\r\nHost: x\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in upgrade.items()) + "\r\n")
        assert c.read_response().status == 101


def test_without_admin_listen_nothing_moves(server):
    assert server.admin_port is None
    for path in OPERATOR + ("/healthz",):
        assert server.get(path).status == 200, path
    assert "admin listener" not in server.stdout_text()


def test_banner_points_operator_routes_at_the_admin_port(moor):
    s = admin_server(moor)
    out = s.stdout_text()
    for path in OPERATOR:
        assert f"http://127.0.0.1:{s.admin_port}{path}" in out, out
        assert f"http://127.0.0.1:{s.port}{path}" not in out, out
    assert f"http://127.0.0.1:{s.port}/healthz" in out, out
    assert re.search(rf"^  http://127\.0\.0\.1:{s.admin_port} +admin "
                     rf"listener \(--admin-listen\)", out, re.M), out


def test_admin_requests_are_counted(moor):
    s = admin_server(moor)
    before = admin_metrics(s)
    assert get(s.admin_port, "/sub/news").status == 404
    after = admin_metrics(s)
    assert after.get_value("moor_http_rejected_total", status="404") == \
        before.get_value("moor_http_rejected_total", status="404") + 1
    assert after.get_value("moor_http_requests_total") >= \
        before.get_value("moor_http_requests_total") + 2
    assert after.get_value("moor_accepted_total") >= \
        before.get_value("moor_accepted_total") + 2


def test_debug_conns_tells_admin_conns_apart(moor):
    s = admin_server(moor)
    with Conn(s.port) as sub:
        sub.send(b"GET /sub/news HTTP/1.1\r\nHost: x\r\n"
                 b"Accept: text/event-stream\r\n\r\n")
        sub.read_until(b"\r\n\r\n")
        r = get(s.admin_port, "/debug/conns")
        rows = [json.loads(l) for l in r.body.decode().splitlines() if l]
    roles = sorted(row["role"] for row in rows)
    assert roles == ["admin", "subscriber"], rows


# ---- bounded and deadlined like the others ----------------------------------

def test_idle_admin_conn_is_closed(moor):
    s = admin_server(moor, "--idle-timeout", "1s")
    with Conn(s.admin_port) as c:
        assert c.request("GET", "/healthz").status == 200
        t = c.wait_closed(slack(3.0))
        assert t is not None, "idle admin conn still open"
        assert 0.8 < t < slack(2.5), f"closed after {t:.2f} s"
    m = admin_metrics(s)
    assert m.get_value("moor_closed_total", reason="idle_timeout") >= 1


def test_admin_conns_count_against_max_conns(moor):
    s = admin_server(moor, "--max-conns", "2")
    with Conn(s.admin_port) as a, Conn(s.port) as p:
        assert a.request("GET", "/healthz").status == 200
        assert p.request("GET", "/healthz").status == 200
        for port in (s.port, s.admin_port):
            with Conn(port) as c:
                assert c.read_response().status == 503, port
    end = time.monotonic() + 5
    while True:
        try:
            m = admin_metrics(s)
            break
        except AssertionError:  # the two may not be closed yet: 503 again
            assert time.monotonic() < end
            time.sleep(0.05)
    assert m.get_value("moor_refused_total", reason="max_conns") >= 2


def test_shutdown_with_an_idle_admin_conn_is_clean(moor):
    s = admin_server(moor)
    with Conn(s.admin_port) as c:
        assert c.request("GET", "/metrics").status == 200
        rc, err = s.stop()
        assert c.wait_closed(1.0) is not None
    assert_clean_exit(rc, err)


# ---- the command line -------------------------------------------------------

def test_bad_admin_listen_exit_2():
    for value, expect in (
            ("9090", 'moor: invalid value "9090" for --admin-listen: '
                     'expected host:port, [v6]:port or :port, with a port '
                     'from 0 to 65535'),
            ("::1:9090", 'moor: invalid value "::1:9090" for '
                         '--admin-listen: an IPv6 address goes in '
                         'brackets: write [::1]:9090')):
        r = run_moor(["serve", "--admin-listen", value])
        assert r.returncode == 2, (value, r.returncode, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert lines == [expect], lines
        assert r.stdout == ""


def test_admin_port_taken_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_moor(["serve", "--listen", "127.0.0.1:0",
                      "--admin-listen", f"127.0.0.1:{port}"])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"moor: cannot listen on 127.0.0.1:{port} (--admin-listen): " \
           f"Address already in use" in r.stderr, r.stderr


# ---- the start-up warnings --------------------------------------------------

def test_warning_for_a_wildcard_listen(moor):
    s = moor("--listen", "0.0.0.0:0")
    assert s.get("/healthz").status == 200  # reached through 127.0.0.1
    lines = warn_lines(s)
    assert len(lines) == 1, lines
    assert AUTH_WARNING in lines[0], lines[0]
    assert f"listen=0.0.0.0:{s.port}" in lines[0], lines[0]
    assert "tcp_listen=" not in lines[0]


def test_no_warning_on_loopback(moor):
    s = moor("--tcp-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    assert warn_lines(s) == []


def test_warning_names_every_open_listener(moor):
    s = moor("--tcp-listen", "0.0.0.0:0")
    lines = warn_lines(s)
    assert len(lines) == 1, lines
    assert AUTH_WARNING in lines[0]
    assert re.search(r" tcp_listen=0\.0\.0\.0:\d+$", lines[0]), lines[0]
    assert " listen=" not in lines[0], "--listen is on loopback"


def test_warning_for_an_open_admin_listener(moor):
    s = moor("--admin-listen", "0.0.0.0:0")
    assert s.admin_port
    assert get(s.admin_port, "/metrics").status == 200
    lines = warn_lines(s)
    assert len(lines) == 1, lines
    assert ADMIN_WARNING in lines[0], lines[0]
    assert f"admin_listen=0.0.0.0:{s.admin_port}" in lines[0], lines[0]
