"""--auth url on the real `moor serve` (issue 16, docs/auth.md): every
subscription and publication is asked of an HTTP service of the test's
own, which answers by the client's bearer token:

    allow   200, empty body            narrow  200 {"channels":["news"]}
    deny    403                        error   500
    stall   answers after 5 s          exp     200 {"exp": now + 2}
    big     200 with a 20 KB body      unauth  401

Covered: the question moor sends (action, protocol, channels, path,
client, forwarded headers, TCP's token); allow, deny (403), errors and
timeouts (503, fail closed), a service that is down; narrowing; the
expiry it sets; TCP's AUTH frame; --auth-max-inflight; the decision
cache; metrics; and a clean exit with every byte freed.
"""

import json
import re
import signal
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Conn, assert_clean_exit, build_request, slack
from wsutil import WsConn

HOST = "127.0.0.1"
TCP_BANNER_RE = re.compile(r"tcp://127\.0\.0\.1:(\d+)")


class AuthService:
    """The operator's auth service, on a free port of 127.0.0.1."""

    def __init__(self):
        self.questions = []
        self.lock = threading.Lock()
        svc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                q = json.loads(self.rfile.read(n))
                with svc.lock:
                    svc.questions.append(q)
                auth = q.get("headers", {}).get("authorization", "")
                mode = q.get("token") or auth.replace("Bearer ", "")
                status, body = 200, b""
                if mode == "deny":
                    status = 403
                elif mode == "unauth":
                    status = 401
                elif mode == "error":
                    status = 500
                elif mode == "narrow":
                    body = b'{"channels":["news"],"publish":[]}'
                elif mode == "exp":
                    body = json.dumps({"exp": int(time.time()) + 2,
                                       "sub": "short"}).encode()
                elif mode == "big":
                    body = b'{"sub":"' + b"x" * 20000 + b'"}'
                elif mode == "stall":
                    time.sleep(5)
                elif mode != "allow":
                    status = 403
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{HOST}:{self.port}/check"
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def svc():
    s = AuthService()
    yield s
    s.stop()


def start(moor, svc_url, *args):
    s = moor("--auth", "url", "--auth-url", svc_url, "--auth-timeout",
             "800ms", "--tcp-listen", f"{HOST}:0", *args)
    m = TCP_BANNER_RE.search(s.stdout_text())
    assert m, s.stdout_text()
    s.tcp_port = int(m.group(1))
    return s


def bearer(t):
    return [("Authorization", f"Bearer {t}")]


def ws(s, path, headers=(), expect=101):
    w = WsConn(s.port, timeout=10)
    head = w.handshake(path, headers=list(headers))
    assert head.status == expect, head
    return w, head


def denied(s, reason):
    return s.metrics().get_value("moor_auth_total", result="denied",
                                 reason=reason)


def test_allow_and_the_question_asked(moor, svc):
    s = start(moor, svc.url)
    w, _ = ws(s, "/sub/news,chat.1", bearer("allow") + [("Cookie", "a=b")])
    q = svc.questions[-1]
    assert q["action"] == "subscribe" and q["protocol"] == "websocket", q
    assert q["channels"] == ["news", "chat.1"] and q["method"] == "GET", q
    assert q["path"] == "/sub/news,chat.1", q
    assert q["headers"] == {"authorization": "Bearer allow", "cookie": "a=b"}
    assert q["client"].startswith("127.0.0.1:"), q
    with s.conn() as c:
        r = c.request("POST", "/pub/news", headers=bearer("allow"), body=b"hi")
    assert r.status == 202 and json.loads(r.body)["subscribers"] == 1, r
    assert svc.questions[-1]["action"] == "publish"
    assert svc.questions[-1]["protocol"] == "http"
    op, data = w.recv_message()
    assert data == b"hi"
    w.close()
    m = s.metrics()
    assert m.get_value("moor_auth_total", result="allowed",
                       reason="callback") == 2
    assert m.get_value("moor_auth_callback_calls_total") == 2
    assert m.get_value("moor_auth_callback_seconds_count") == 2
    rc, err = s.stop(signal.SIGTERM, timeout=slack(10))
    assert_clean_exit(rc, err)


@pytest.mark.parametrize("mode,status,reason", [
    ("deny", 403, "callback_denied"), ("unauth", 403, "callback_denied"),
    ("error", 503, "callback_error"), ("big", 503, "callback_error"),
    ("stall", 503, "callback_timeout")])
def test_refusals_fail_closed(moor, svc, mode, status, reason):
    s = start(moor, svc.url)
    t0 = time.monotonic()
    w, head = ws(s, "/sub/news", bearer(mode), expect=status)
    took = time.monotonic() - t0
    w.close()
    assert f"({reason})" in head.body.decode(), head
    assert denied(s, reason) == 1
    if mode == "stall":
        assert 0.6 < took < slack(3), took  # --auth-timeout 800ms
    assert s.metrics().get_value("moor_pubsub_subscribers") == 0


def test_service_down_is_503(moor):
    probe = socket.socket()
    probe.bind((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    s = start(moor, f"http://{HOST}:{port}/check")
    w, head = ws(s, "/sub/news", bearer("allow"), expect=503)
    w.close()
    assert head.header("Retry-After") == "1", head
    assert denied(s, "callback_error") == 1


def test_a_refused_post_body_is_not_read(moor, svc):
    s = start(moor, svc.url)
    with s.conn() as c:
        c.send(build_request("POST", "/pub/news", bearer("deny"),
                             body=b"x" * 100000))
        r = c.read_response()
        assert r.status == 403 and r.closes(), r
    assert svc.questions[-1]["action"] == "publish"


def test_narrowed_channels(moor, svc):
    s = start(moor, svc.url)
    w, _ = ws(s, "/sub/news", bearer("narrow"))
    w.close()
    w, _ = ws(s, "/sub/news,sports", bearer("narrow"), expect=403)
    w.close()
    with s.conn() as c:  # "publish": [] grants none
        assert c.request("POST", "/pub/news", headers=bearer("narrow"),
                         body=b"x").status == 403


@pytest.mark.wall(30)
def test_expiry_from_the_answer(moor, svc):
    s = start(moor, svc.url)
    w, _ = ws(s, "/sub/news", bearer("exp"))
    r = s.get("/metrics")
    assert r.status == 200
    frame, _ = w.expect_close(4001, timeout=slack(6), reply=True)
    assert s.metrics().get_value("moor_auth_expired_total") == 1
    w.close()


def tcp_frames_until_eof(t):
    data = b""
    while True:
        b = t.recv(65536)
        if not b:
            break
        data += b
    out = []
    while len(data) >= 4:
        n = struct.unpack(">I", data[:4])[0]
        out.append(data[4:4 + n])
        data = data[4 + n:]
    return out


def tcp_send(t, payload):
    t.sendall(struct.pack(">I", len(payload)) + payload)


def test_tcp_auth_frame_asks_the_service(moor, svc):
    s = start(moor, svc.url)
    t = socket.create_connection((HOST, s.tcp_port), timeout=10)
    tcp_send(t, b"AUTH deny")
    tcp_send(t, b"SUB news")
    assert tcp_frames_until_eof(t) == [b"\0token refused: callback_denied"]
    t = socket.create_connection((HOST, s.tcp_port), timeout=10)
    tcp_send(t, b"AUTH narrow")
    tcp_send(t, b"SUB news")
    deadline = time.monotonic() + slack(5)
    while s.metrics().get_value("moor_pubsub_subscribers") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    q = svc.questions[-1]
    assert q["protocol"] == "tcp" and q["token"] == "narrow", q
    with s.conn() as c:
        c.request("POST", "/pub/news", headers=bearer("allow"), body=b"tcp")
    got = t.recv(64)
    assert got == struct.pack(">I", 3) + b"tcp", got
    t.close()


def test_max_inflight_refuses_at_once(moor, svc):
    s = start(moor, svc.url, "--auth-max-inflight", "1")
    slow = WsConn(s.port, timeout=10)
    slow.send_raw(b"GET /sub/news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: "
                  b"dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"Authorization: Bearer stall\r\n\r\n")
    deadline = time.monotonic() + slack(3)
    while s.metrics().get_value("moor_auth_callback_inflight") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    w, head = ws(s, "/sub/news", bearer("allow"), expect=503)
    assert time.monotonic() - t0 < slack(0.5)
    w.close()
    slow.close()
    assert denied(s, "callback_busy") == 1


def test_cache_answers_the_same_question(moor, svc):
    s = start(moor, svc.url, "--auth-cache-ttl", "10s")
    for _ in range(3):
        w, _ = ws(s, "/sub/news", bearer("allow"))
        w.close()
    for _ in range(2):
        w, _ = ws(s, "/sub/news", bearer("deny"), expect=403)
        w.close()
    assert len(svc.questions) == 2, svc.questions
    m = s.metrics()
    assert m.get_value("moor_auth_callback_cache_hits_total") == 3
    assert m.get_value("moor_auth_callback_cached") == 2


def test_sse_waits_for_the_answer(moor, svc):
    s = start(moor, svc.url)
    c = Conn(s.port, timeout=10)
    c.send(build_request("GET", "/sub/news",
                         [("Accept", "text/event-stream")] + bearer("allow")))
    head = c.read_until(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    assert svc.questions[-1]["protocol"] == "sse"
    c.close()


def test_bad_flags(moor):
    from conftest import run_moor
    r = run_moor(["serve", "--listen", f"{HOST}:0", "--auth", "url"])
    assert r.returncode == 2 and "--auth-url" in r.stderr, r.stderr
    r = run_moor(["serve", "--listen", f"{HOST}:0", "--auth-url",
                  "http://x/"])
    assert r.returncode == 2 and "--auth url" in r.stderr, r.stderr


def test_tcp_answer_not_taken_is_freed(moor, svc):
    """A TCP client that sends AUTH and leaves once it is answered, before
    its command: the answer waiting for it goes with the connection
    (moor_mem_live_bytes{tag="auth"} back where it was)."""
    s = start(moor, svc.url)
    base = s.metrics().get_value("moor_mem_live_bytes", tag="auth")
    for _ in range(5):
        t = socket.create_connection((HOST, s.tcp_port), timeout=10)
        tcp_send(t, b"AUTH allow")
        deadline = time.monotonic() + slack(5)
        while s.metrics().get_value("moor_auth_callback_inflight") != 0 or \
                len(svc.questions) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.1)
        t.close()
    deadline = time.monotonic() + slack(5)
    while s.metrics().get_value("moor_mem_live_bytes", tag="auth") != base:
        assert time.monotonic() < deadline, (
            s.metrics().get_value("moor_mem_live_bytes", tag="auth"), base)
        time.sleep(0.1)
    assert len(svc.questions) == 5


def test_metrics_show_both_clients_once(moor, svc):
    """/metrics carries the pools of both of moor's HTTP clients, the
    callback's and the InfluxDB push's: each moor_http_client_* family
    once (twice is a page Prometheus rejects), and a host both talk to as
    one row counting the requests of both."""
    s = start(moor, svc.url, "--influx-url",
              f"http://{HOST}:{svc.port}/write?db=moor",
              "--influx-interval", "1s")
    w, _ = ws(s, "/sub/news", bearer("allow"))
    w.close()
    host = f'http://{HOST}:{svc.port}'
    deadline = time.monotonic() + slack(10)
    while True:
        m = s.metrics()
        writes = sum(m.get_value("moor_influx_writes_total", result=r) or 0
                     for r in ("ok", "failed", "rejected"))
        if writes >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert writes >= 1
    text = s.metrics_text()
    for fam in ("moor_http_client_requests_total",
                "moor_http_client_connections"):
        assert text.count(f"# TYPE {fam} ") == 1, text
    # One auth question and at least one write, on one row.
    assert m.get_value("moor_http_client_requests_total", host=host) >= 2
    rc, err = s.stop(signal.SIGTERM, timeout=slack(10))
    assert_clean_exit(rc, err)
