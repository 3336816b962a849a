"""Malformed request bodies against every route that reads a body.

Each body shape (every chunked framing error, every Content-Length error,
a body cut short by the peer or stalled until --body-timeout, bodies over
--max-body, an error that arrives in a later read than the body bytes
before it, Expect: 100-continue, a request that says Connection: close,
and valid bodies for contrast) is sent to each route that has to frame a
body:

- POST /pub/ch, the body route: the body is collected, then published;
- POST /healthz, /metrics, /debug/mem, /debug/conns (405 with Allow) and
  POST to an unknown path (404): the answer is held while the body is read
  and discarded, and a bad body replaces it with the body's own status;
- GET /echo and GET /sub/ch with a body, and WebSocket upgrade requests
  with a body (to /echo, /sub/ch and /pub/ch): answered 400 and closed
  without reading the body (an upgrade request carries no body);
- GET /sub/ch as an event stream with a body (400, like an upgrade).

One server per route (a module-scoped fixture), with a WebSocket and an SSE
subscriber on channel "ch" for the whole run. Every case asserts the exact
status with Connection: close and then EOF (or the route's keep-alive
answer and a pipelined request after it, for a valid body), exactly one
count in moor_http_rejected_total, the close reason where there is no
answer (peer_closed, body_timeout), that /healthz answers on a new
connection, and that no connection is left over and moor_mem_live_bytes
is back to where it was before the route's first case. The last test of
each route checks the subscribers saw only the valid publishes and that
SIGTERM ends the server with live_bytes=0.

The remote crash this file was written for (f3f9e40: a bad chunk on
POST /pub freed the collected body as if it were a held answer) fails
every chunked-error case of the "pub" route.
"""

import json
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import (SANITIZER_MARKS, Closed, Conn, Metrics, Server,
                      assert_clean_exit, build_request, parse_metrics, slack,
                      tail_of)
from wsutil import connect as ws_connect

KiB = 1 << 10
MAX_BODY = 4 * KiB
MAX_HEADER_BYTES = 8 * KiB           # the default, stated for the trailer
BODY_TIMEOUT_MS = 300
ARGS = ("--max-body", str(MAX_BODY), "--max-header-bytes",
        str(MAX_HEADER_BYTES), "--body-timeout", f"{BODY_TIMEOUT_MS}ms",
        "--linger-timeout", "1s", "--ping-interval", "120s")
CHANNEL = "ch"
N_SUBSCRIBERS = 2                    # one WebSocket, one SSE, on CHANNEL
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13")]


# ---- the shapes ------------------------------------------------------------
#
# A shape is (framing headers, body bytes, kind, status):
#   head  - the header block itself is refused (http_parse_request): every
#           route gets `status`, before any route runs;
#   body  - the body is malformed or too big, found while it is read: a
#           route that reads the body gets `status`;
#   close - the peer sends part of the body and closes;
#   stall - the peer sends part of the body and waits: --body-timeout
#           closes the connection, with no answer;
#   valid - a good body: the route's own answer.

TE = [("Transfer-Encoding", "chunked")]


def cl(n):
    return [("Content-Length", str(n))]


def chunked(*shape):
    return (TE,) + shape


TRAILER_FIELDS = b"".join(b"X-Trailer-%03d: %s\r\n" % (i, b"v" * 90)
                          for i in range(MAX_HEADER_BYTES // 100 + 8))
assert len(TRAILER_FIELDS) > MAX_HEADER_BYTES

SHAPES = {
    # chunked framing errors (docs/http1.md, "Chunked bodies")
    "chunk-size-not-hex": chunked(b"zz\r\nhello\r\n0\r\n\r\n", "body", 400),
    "chunk-size-negative": chunked(b"-5\r\nhello\r\n0\r\n\r\n", "body", 400),
    "chunk-size-empty": chunked(b"\r\nhello\r\n0\r\n\r\n", "body", 400),
    "chunk-size-leading-space": chunked(b" 5\r\nhello\r\n0\r\n\r\n", "body",
                                        400),
    "chunk-size-leading-0x": chunked(b"0x5\r\nhello\r\n0\r\n\r\n", "body",
                                     400),
    "chunk-size-trailing-junk": chunked(b"5z\r\nhello\r\n0\r\n\r\n", "body",
                                        400),
    "chunk-size-trailing-space": chunked(b"5 \r\nhello\r\n0\r\n\r\n", "body",
                                         400),
    # 413, not 400: a size of 2^48 or more is over any max_body, and that
    # is found at the 13th digit, before the 16-digit rule (http1.c
    # chunk_size_byte; the first rule found wins)
    "chunk-size-overflow": chunked(b"ffffffffffffffffffff\r\nhello\r\n"
                                   b"0\r\n\r\n", "body", 413),
    "chunk-size-17-digits-leading-zeros": chunked(
        b"00000000000000005\r\nhello\r\n0\r\n\r\n", "body", 400),
    "chunk-size-line-over-4k": chunked(b"5;e=" + b"a" * 5000 +
                                       b"\r\nhello\r\n0\r\n\r\n", "body",
                                       400),
    "chunk-data-no-crlf": chunked(b"5\r\nhelloXY0\r\n\r\n", "body", 400),
    "chunk-data-longer-than-size": chunked(b"3\r\nhello\r\n0\r\n\r\n",
                                           "body", 400),
    "chunk-data-shorter-than-size": chunked(b"7\r\nhello\r\n0\r\n\r\n",
                                            "body", 400),
    "chunk-ext-ctl": chunked(b"5;a=b\x01c\r\nhello\r\n0\r\n\r\n", "body",
                             400),
    "chunk-bare-lf": chunked(b"5\nhello\n0\n\n", "body", 400),
    "chunk-bare-lf-after-data": chunked(b"5\r\nhello\n0\r\n\r\n", "body",
                                        400),
    "chunk-bare-cr": chunked(b"5\rhello\r\n0\r\n\r\n", "body", 400),
    "chunk-trailer-obs-fold": chunked(b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n"
                                      b"\r\n", "body", 400),
    "chunk-trailer-over-header-limit": chunked(
        b"5\r\nhello\r\n0\r\n" + TRAILER_FIELDS + b"\r\n", "body", 431),
    "chunk-one-size-over-max-body": chunked(
        b"%x\r\n" % (MAX_BODY + 1) + b"a" * 64, "body", 413),
    "chunk-16-digit-size": chunked(b"ffffffffffffffff\r\nhello\r\n", "body",
                                   413),
    "chunks-add-up-over-max-body": chunked(
        (b"400\r\n" + b"a" * KiB + b"\r\n") * (MAX_BODY // KiB + 1) +
        b"0\r\n\r\n", "body", 413),
    # Content-Length and framing errors (docs/http1.md, the strictness
    # table): the header block is refused
    "cl-duplicate-differ": (cl(5) + cl(6), b"hello!", "head", 400),
    "cl-duplicate-same": (cl(5) + cl(5), b"hello", "head", 400),
    "cl-list": ([("Content-Length", "5, 5")], b"hello", "head", 400),
    "cl-not-numeric": ([("Content-Length", "abc")], b"hello", "head", 400),
    "cl-empty": ([("Content-Length", "")], b"hello", "head", 400),
    "cl-negative": ([("Content-Length", "-5")], b"hello", "head", 400),
    "cl-plus": ([("Content-Length", "+5")], b"hello", "head", 400),
    "cl-overflow": ([("Content-Length", "99999999999999999999999")],
                    b"hello", "head", 413),
    "cl-2-to-the-64": ([("Content-Length", "18446744073709551616")],
                       b"hello", "head", 413),
    "cl-over-max-body": (cl(MAX_BODY + 1), b"", "head", 413),
    "cl-over-max-body-body-sent": (cl(MAX_BODY + 1), b"b" * (MAX_BODY + 1),
                                   "head", 413),
    "cl-and-te": (cl(5) + TE, b"5\r\nhello\r\n0\r\n\r\n", "head", 400),
    "te-and-cl": (TE + cl(5), b"5\r\nhello\r\n0\r\n\r\n", "head", 400),
    "te-chunked-twice": ([("Transfer-Encoding", "chunked, chunked")],
                         b"5\r\nhello\r\n0\r\n\r\n", "head", 400),
    "te-gzip-chunked": ([("Transfer-Encoding", "gzip, chunked")],
                        b"5\r\nhello\r\n0\r\n\r\n", "head", 501),
    # truncated: the peer closes mid-body
    "cl-peer-closes-mid-body": (cl(10), b"hel", "close", None),
    "chunk-peer-closes-mid-data": chunked(b"5\r\nhel", "close", None),
    "chunk-peer-closes-mid-size-line": chunked(b"5\r\nhello\r\n1", "close",
                                               None),
    # stalled: --body-timeout closes it
    "cl-stalls-mid-body": (cl(10), b"hel", "stall", None),
    "chunk-stalls-mid-data": chunked(b"5\r\nhel", "stall", None),
    "chunk-stalls-in-trailer": chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n",
                                       "stall", None),
    # the body arrives over several reads (sent in parts, 30 ms apart):
    # body bytes collected (or discarded) in one read, the error in a later
    # one; a valid body trickled in
    "chunk-error-in-later-read": chunked(
        (b"5\r\nhello\r\n", b"3\r\nabc", b"\r\nzz\r\n"), "body", 400),
    "chunks-over-max-body-in-later-read": chunked(
        (b"800\r\n" + b"a" * 2048 + b"\r\n", b"800\r\n" + b"b" * 2048,
         b"\r\n1\r\nc\r\n0\r\n\r\n"), "body", 413),
    "chunk-trailer-error-in-later-read": chunked(
        (b"5\r\nhello\r\n0\r\n", b"X-T: 1\r\n", b"X T: 2\r\n\r\n"),
        "body", 400),
    # a request pipelined after a bad body is never parsed: one answer
    # (assert_error_answer checks nothing follows it)
    "chunk-error-then-pipelined-request": chunked(
        b"zz\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "body",
        400),
    "chunk-data-longer-then-pipelined-request": chunked(
        b"1\r\nhello\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "body", 400),
    # Expect: 100-continue: a route that reads the body says 100 Continue
    # first, then the body's answer; a route that answers at once does not
    "expect-100-bad-chunk": (TE + [("Expect", "100-continue")],
                             b"zz\r\nhello\r\n0\r\n\r\n", "body", 400),
    "expect-100-over-max-body": (
        TE + [("Expect", "100-continue")],
        (b"400\r\n" + b"a" * KiB + b"\r\n") * (MAX_BODY // KiB + 1), "body",
        413),
    "expect-100-valid": (cl(10) + [("Expect", "100-continue")],
                         b"valid-e100", "valid", None),
    # Connection: close on the request: a route that answers without the
    # body (405, 404) answers and closes without reading it; the body route
    # still reads it and answers the body's status
    "conn-close-bad-chunk": (TE + [("Connection", "close")],
                             b"zz\r\nhello\r\n0\r\n\r\n", "body-close",
                             400),
    "conn-close-chunk-over-max-body": (
        TE + [("Connection", "close")],
        b"%x\r\n" % (MAX_BODY + 1), "body-close", 413),
    "conn-close-valid": (TE + [("Connection", "close")],
                         b"a\r\nvalid-conn\r\n6\r\n-close\r\n0\r\n\r\n",
                         "valid-close", None),
    # valid, for contrast (the payload is what a subscriber would see)
    "valid-cl": (cl(8), b"valid-cl", "valid", None),
    "valid-chunked": chunked(b"6;ext=1\r\nvalid-\r\n7\r\nchunked\r\n0\r\n"
                             b"X-Trailer: 1\r\n\r\n", "valid", None),
    "valid-cl-max-body": (cl(MAX_BODY), b"m" * MAX_BODY, "valid", None),
    "valid-chunked-trickled": chunked(
        (b"6\r\nval", b"id-\r\n10;x=y\r\nchunked-", b"trickled\r\n0",
         b"\r\n\r\n"), "valid", None),
}
VALID_PAYLOADS = {"valid-cl": b"valid-cl", "valid-chunked": b"valid-chunked",
                  "valid-cl-max-body": b"m" * MAX_BODY,
                  "valid-chunked-trickled": b"valid-chunked-trickled",
                  "expect-100-valid": b"valid-e100",
                  "conn-close-valid": b"valid-conn-close"}


# ---- the routes ------------------------------------------------------------
#
# A route is (method, path, extra headers, kind, answer):
#   collect - the body route: the body is collected, then handled
#             (answer: 202 and {"subscribers":N});
#   hold    - the answer (405 or 404) is made at once and held until the
#             body is complete; a bad body is answered instead;
#   early   - answered (400) and closed without reading the body.

ROUTES = {
    "pub": ("POST", f"/pub/{CHANNEL}", [], "collect", 202),
    "healthz": ("POST", "/healthz", [], "hold", 405),
    "metrics": ("POST", "/metrics", [], "hold", 405),
    "debug-mem": ("POST", "/debug/mem", [], "hold", 405),
    "debug-conns": ("POST", "/debug/conns", [], "hold", 405),
    "unknown-path": ("POST", "/no/such/path", [], "hold", 404),
    "echo-get": ("GET", "/echo", [], "early", 400),
    "sub-get": ("GET", f"/sub/{CHANNEL}", [], "early", 400),
    "ws-upgrade-echo": ("GET", "/echo", WS_HEADERS, "early", 400),
    "ws-upgrade-sub": ("GET", f"/sub/{CHANNEL}", WS_HEADERS, "early", 400),
    "ws-upgrade-pub": ("GET", f"/pub/{CHANNEL}", WS_HEADERS, "early", 400),
    "sse-sub": ("GET", f"/sub/{CHANNEL}", [("Accept", "text/event-stream")],
                "early", 400),
}

def expected(route, shape):
    """(status or None, keep_alive) the case must get."""
    _, _, _, rkind, answer = ROUTES[route]
    _, _, skind, status = SHAPES[shape]
    if skind == "head":
        return status, False
    if rkind == "early":
        return answer, False
    if skind in ("body-close", "valid-close") and rkind == "hold":
        return answer, False    # answered at once, the body left unread
    if skind in ("body", "body-close"):
        return status, False
    if skind == "valid":
        return answer, True
    if skind == "valid-close":
        return answer, False
    return None, False          # close, stall: no answer


def expects_100(route, shape):
    """A 100 Continue comes first: asked for, and the body is read."""
    framing, _, skind, _ = SHAPES[shape]
    return ("Expect", "100-continue") in framing and skind != "head" and \
        ROUTES[route][3] != "early"


def request_parts(route, shape):
    """The request as the pieces to send, 30 ms apart."""
    method, path, extra, _, _ = ROUTES[route]
    framing, body, _, _ = SHAPES[shape]
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in list(extra) + list(framing)) + "\r\n"
    if isinstance(body, bytes):
        return [head.encode("latin-1") + body]
    return [head.encode("latin-1")] + list(body)


# ---- subscribers -----------------------------------------------------------

class SseSub:
    """An event-stream subscriber on a raw socket; collects data payloads."""

    def __init__(self, port, channel):
        self.c = Conn(port)
        self.c.send(build_request("GET", f"/sub/{channel}",
                                  [("Accept", "text/event-stream")]))
        head = self.c.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        self.pending = self.c.buf
        self.c.buf = b""
        self.data = []

    def _parse(self):
        while b"\n\n" in self.pending:
            block, self.pending = self.pending.split(b"\n\n", 1)
            lines = [l[5:].lstrip(b" ") if l.startswith(b"data:") else None
                     for l in block.split(b"\n")]
            data = [l for l in lines if l is not None]
            if data:
                self.data.append(b"\n".join(data))

    def read_until_data(self, payload, timeout):
        end = time.monotonic() + timeout
        self._parse()
        while payload not in self.data:
            left = end - time.monotonic()
            assert left > 0, f"SSE subscriber: no {payload!r} within " \
                f"{timeout} s; got {self.data!r}"
            r, _, _ = select.select([self.c.sock], [], [], left)
            if r:
                chunk = self.c.sock.recv(65536)
                assert chunk, f"SSE subscriber closed; got {self.data!r}"
                self.pending += chunk
                self._parse()
        return self.data

    def close(self):
        self.c.close()


class WsSub:
    def __init__(self, port, channel):
        self.ws = ws_connect(port, f"/sub/{channel}")
        self.data = []

    def read_until_data(self, payload, timeout):
        end = time.monotonic() + timeout
        while payload not in self.data:
            left = end - time.monotonic()
            assert left > 0, f"WebSocket subscriber: no {payload!r}; " \
                f"got {self.data!r}"
            _, data = self.ws.recv_message(timeout=left)
            self.data.append(data)
        return self.data

    def close(self):
        self.ws.close()


# ---- one server per route ---------------------------------------------------

def conns_total(m):
    return m.sum("moor_connections")


def live_bytes(m):
    return m.sum("moor_mem_live_bytes")


class RouteServer:
    def __init__(self, route, workdir):
        self.route = route
        self.srv = Server(ARGS, None, workdir)
        self.port = self.srv.port
        self.ws = WsSub(self.port, CHANNEL)
        self.sse = SseSub(self.port, CHANNEL)
        self.obs = Conn(self.port)
        self.published = []     # payloads of the valid publishes, in order
        # The subscribers and the observer: this many connections are
        # open between cases.
        self.n_conns = N_SUBSCRIBERS + 1
        m = self.settled()
        self.base_live = live_bytes(m)
        self.base_mem = self.srv.debug_mem()

    def metrics(self):
        """/metrics on the keep-alive observer connection (so fetching
        them opens and closes nothing)."""
        r = self.obs.request("GET", "/metrics")
        assert r.status == 200, r
        return Metrics(parse_metrics(r.body.decode()))

    def settled(self, timeout=5.0):
        """Metrics once only the subscribers and the observer are
        connected."""
        end = time.monotonic() + slack(timeout)
        while True:
            m = self.metrics()
            if conns_total(m) == self.n_conns or time.monotonic() > end:
                break
            time.sleep(0.01)
        assert conns_total(m) == self.n_conns, \
            f"connections left open: {m.family('moor_connections')}\n" \
            f"{self.conns_text()}"
        return m

    def assert_live_bytes_back(self, m, when):
        """moor_mem_live_bytes is back at its value before the cases (a
        freed connection may be counted a moment after its close)."""
        end = time.monotonic() + slack(5.0)
        while live_bytes(m) != self.base_live and time.monotonic() < end:
            time.sleep(0.02)
            m = self.metrics()
        if live_bytes(m) != self.base_live:
            mem = self.srv.debug_mem()
            base = self.base_mem["tags"]
            moved = {t: (base[t]["live_bytes"], v["live_bytes"])
                     for t, v in mem["tags"].items()
                     if v["live_bytes"] != base[t]["live_bytes"]}
            pytest.fail(f"moor_mem_live_bytes {self.base_live} before the "
                        f"cases, {live_bytes(m)} {when}; by tag (before, "
                        f"now): {moved}", pytrace=False)

    def conns_text(self):
        try:
            return self.srv.get("/debug/conns").body.decode()
        except (OSError, Closed) as e:
            return f"(no /debug/conns: {e})"

    def check_alive(self, what):
        if not self.srv.alive():
            err = tail_of(self.srv.stderr_text(), 40)
            pytest.fail(f"the server died {what} (exit "
                        f"{self.srv.proc.poll()}); stderr tail:\n{err}",
                        pytrace=False)

    def close(self):
        self.ws.close()
        self.sse.close()
        self.obs.close()
        self.srv.kill()


@pytest.fixture(scope="module", params=list(ROUTES))
def rs(request, tmp_path_factory):
    s = RouteServer(request.param,
                    tmp_path_factory.mktemp(f"bodies-{request.param}"))
    yield s
    s.close()
    err = s.srv.stderr_text()
    for mark in SANITIZER_MARKS:
        assert mark not in err, f"sanitizer report ({mark}):\n" \
                                f"{tail_of(err, 60)}"


# ---- the cases -------------------------------------------------------------

def rejected(m):
    return {k: v for k, v in m.family("moor_http_rejected_total").items()
            if v}


def delta(after, before):
    keys = set(after) | set(before)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) != before.get(k, 0)}


def send_quietly(c, data):
    """Sends data; the server may already have answered and closed."""
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_status_first(c, status, data, interim=False):
    """Reads one response; the status line is checked before the body is
    read (an event stream's body never ends). interim: a 100 Continue must
    come first, else none may."""
    try:
        head = c.read_until(b"\r\n\r\n")
        if interim:
            assert head == b"HTTP/1.1 100 Continue\r\n\r\n", \
                f"no 100 Continue first: {head!r}"
            head = c.read_until(b"\r\n\r\n")
    except Closed as e:
        raise AssertionError(f"closed without an answer ({e}); expected "
                             f"{status} for {data[:300]!r}")
    line = head.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 %d " % status), \
        f"{line!r}, wanted {status}, for {data[:300]!r}; head {head!r}"
    c.buf = head + c.buf
    return c.read_response()


def assert_error_answer(c, status, data, interim=False):
    r = read_status_first(c, status, data, interim)
    assert r.closes(), f"{status} without Connection: close: {r}"
    assert c.wait_closed(slack(3.0)) is not None, \
        f"connection still open after {status}"
    assert c.buf == b"", f"bytes after the {status} answer: {c.buf[:200]!r}"
    return r


def assert_route_answer(rs, c, route, shape):
    """A valid body: the route's own answer, kept alive; a pipelined GET
    /healthz after the body is answered too (the body was framed)."""
    _, _, _, _, answer = ROUTES[route]
    r = read_status_first(c, answer, b"", expects_100(route, shape))
    assert not r.closes(), f"a valid body closed the connection: {r}"
    check_answer(rs, r, shape)
    r2 = c.read_response()
    assert r2.status == 200 and r2.body == b"ok\n", r2
    assert c.is_open(0.05)


def check_answer(rs, r, shape):
    """The route's own answer is whole (a 202 counts its subscribers)."""
    if r.status == 202:
        assert json.loads(r.body) == {"subscribers": N_SUBSCRIBERS}, r
        rs.published.append(VALID_PAYLOADS[shape])
    elif r.status == 405:
        assert r.header("allow") == "GET, HEAD", r


def assert_no_answer(c, data, timeout):
    """Nothing comes back within timeout; returns the seconds until the
    server closed (None if it did not)."""
    t = c.wait_closed(timeout)
    assert c.buf == b"", f"an answer to an incomplete body: {c.buf[:300]!r} " \
                         f"for {data[:300]!r}"
    return t


@pytest.mark.parametrize("shape", list(SHAPES))
def test_body_shape(rs, shape):
    run_case(rs, rs.route, shape)


def close_reason(route, shape):
    """Why the server must close the case's connection."""
    status, keep_alive = expected(route, shape)
    skind = SHAPES[shape][2]
    if keep_alive or skind == "close" and status is None:
        return "peer_closed"
    if skind == "stall" and status is None:
        return "body_timeout"
    if ROUTES[route][3] == "early" and skind != "head":
        return "done"   # answered at once, closed without reading the body
    if skind == "valid-close" or skind == "body-close" and \
            ROUTES[route][3] == "hold":
        return "done"   # answered, and the request asked for a close
    return "bad_request"


def exchange(rs, route, shape, parts, status, keep_alive, skind):
    """Sends the case's request and checks what comes back."""
    data = b"".join(parts)
    with Conn(rs.port, timeout=slack(5.0)) as c:
        for i, part in enumerate(parts):
            if i:
                time.sleep(0.03)
            send_quietly(c, part)
        if keep_alive:
            c.send(build_request("GET", "/healthz"))
            assert_route_answer(rs, c, route, shape)
        elif status is not None:
            r = assert_error_answer(c, status, data,
                                    expects_100(route, shape))
            check_answer(rs, r, shape)
        elif skind == "close":
            # Let the server take the partial body in, then leave.
            assert_no_answer(c, data, 0.1)
            c.sock.shutdown(socket.SHUT_WR)
            t = assert_no_answer(c, data, slack(3.0))
            assert t is not None, "still open after the peer closed"
        else:  # stall
            t = assert_no_answer(c, data, slack(BODY_TIMEOUT_MS / 1000 + 3))
            assert t is not None, \
                f"not closed within --body-timeout {BODY_TIMEOUT_MS} ms + 3 s"


def answers_healthz(port):
    try:
        with Conn(port, timeout=slack(2.0)) as c:
            return c.request("GET", "/healthz").status == 200
    except (OSError, Closed):
        return False


def run_case(rs, route, shape):
    rs.check_alive("before this case")
    status, keep_alive = expected(route, shape)
    skind = SHAPES[shape][2]
    parts = request_parts(route, shape)
    m0 = rs.metrics()
    try:
        exchange(rs, route, shape, parts, status, keep_alive, skind)
        r = rs.srv.get("/healthz")
        assert r.status == 200, f"/healthz after the case: {r}"
    except (AssertionError, Closed, OSError):
        # A crash shows as a closed connection: say so, with the log
        # (a sanitizer report takes a moment to be written).
        if not answers_healthz(rs.port):
            try:
                rs.srv.proc.wait(timeout=slack(5.0))
            except subprocess.TimeoutExpired:
                pass
            rs.check_alive("on this case")
        raise
    rs.check_alive("on this case")
    m1 = rs.settled()
    rs.assert_live_bytes_back(m1, f"after {shape}")
    # Exactly one answer counted, the one sent (a held answer that a bad
    # body replaced is not).
    got = delta(rejected(m1), rejected(m0))
    want = {f'moor_http_rejected_total{{status="{status}"}}': 1} \
        if status is not None and status >= 400 else {}
    assert got == want, f"rejected counts grew by {got}, wanted {want}"
    # Two closes: the case's, for its reason, and the /healthz check's.
    got = delta(m1.family("moor_closed_total"),
                m0.family("moor_closed_total"))
    want = {}
    for why in (close_reason(route, shape), "peer_closed"):
        k = f'moor_closed_total{{reason="{why}"}}'
        want[k] = want.get(k, 0) + 1
    assert got == want, f"closes counted {got}, wanted {want}"


def test_route_end(rs):
    """After every shape: the subscribers saw only the valid publishes,
    memory is where it was, nothing is left open, SIGTERM is clean."""
    rs.check_alive("during the cases")
    end = b"end-of-" + rs.route.encode()
    with rs.srv.conn() as c:
        r = c.request("POST", f"/pub/{CHANNEL}", body=end)
        assert r.status == 202, r
        assert json.loads(r.body) == {"subscribers": N_SUBSCRIBERS}, r
    want = rs.published + [end]
    assert rs.ws.read_until_data(end, slack(5.0)) == want
    assert rs.sse.read_until_data(end, slack(5.0)) == want
    rs.assert_live_bytes_back(rs.metrics(), "after every shape")
    rs.ws.close()
    rs.sse.close()
    rs.n_conns = 1
    rs.settled()
    rs.obs.close()
    rc, err = rs.srv.stop(signal.SIGTERM, timeout=slack(10.0))
    assert_clean_exit(rc, err, f"server of route {rs.route}")
