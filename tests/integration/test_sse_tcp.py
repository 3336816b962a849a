"""Pub/sub over Server-Sent Events and length-prefixed TCP frames.

SSE (GET /sub/a,b with Accept: text/event-stream):
- curl -N as the subscriber and curl --data-binary @file as the publisher;
  headless Chromium's EventSource on a page of another origin (CORS via
  --allowed-origins), and the same page refused when its origin is not
  allowed.
- exact bytes of multi-line, CRLF, lone CR, empty and space-led payloads;
  ids are the publish's number on the server, across several channels.
- Last-Event-ID: decimal ids accepted (ids go on from the server's count),
  anything else 400 with no subscriber made.
- heartbeats (": heartbeat") after a short --sse-heartbeat of quiet, and
  none while events flow.
- a subscriber that never reads, with a small --queue-limit: closed under
  --slow-policy disconnect; under drop-oldest it stays and every gap in
  what it gets is announced by "event: dropped" counts that add up.
- SIGTERM closes every stream within a couple of seconds; the server
  exits 0 with live_bytes=0.

TCP (--tcp-listen; 4-byte big-endian length + payload; first frame
"SUB a b" or "PUB ch"):
- fan-out of one TCP publisher to TCP, WebSocket and SSE subscribers of
  the same channel; HTTP and WebSocket publishers reach TCP subscribers.
- lengths 0, 1, max and max+1; frames written one byte at a time; a
  truncated frame; a claimed 4 GiB length; memory follows the bytes
  received, not the length claimed (docs/principles.md rule 8).
- command errors (lower case, double space, no channel, too many) and no
  command within --header-timeout close the connection with the right
  moor_closed_total reason.
- empty heartbeat frames after quiet (and none while messages flow);
  --rate holds a TCP publisher; GET /debug/conns rows for every kind.
"""

import html
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import (Conn, assert_clean_exit, build_request, read_pipe_until,
                      slack)
from conftest import need_curl
from wsutil import OP_BINARY, OP_TEXT, connect as ws_connect

HOST = "127.0.0.1"
KiB = 1 << 10
TCP_BANNER_RE = re.compile(r"tcp://127\.0\.0\.1:(\d+)")
SSE_ACCEPT = ("Accept", "text/event-stream")


# ---- servers ---------------------------------------------------------------

def start(moor, *args, env=None):
    """A server with --tcp-listen on a free port; .tcp_port is set."""
    s = moor("--tcp-listen", f"{HOST}:0", *args, env=env)
    m = TCP_BANNER_RE.search(s.stdout_text())
    assert m, f"no tcp:// line in the banner:\n{s.stdout_text()}"
    s.tcp_port = int(m.group(1))
    return s


def stop_clean(s, within=10.0):
    """SIGTERM; exit 0 and a last log line with live_bytes=0."""
    rc, err = s.stop(signal.SIGTERM, timeout=slack(within))
    assert_clean_exit(rc, err)


def closed_total(m, reason):
    return m.get_value("moor_closed_total", reason=reason)


def wait_metric(s, name, want, timeout=5.0, **labels):
    m = s.wait_metric(lambda m: m.get_value(name, **labels) == want,
                      timeout=slack(timeout))
    got = m.get_value(name, **labels)
    assert got == want, f"{name}{labels or ''} = {got}, wanted {want}"
    return m


def post(s, ch, body, conn=None):
    """POST /pub/ch; returns the number of subscribers reached."""
    if conn is None:
        with s.conn() as c:
            return post(s, ch, body, c)
    r = conn.request("POST", f"/pub/{ch}", body=body)
    assert r.status == 202, r
    m = re.fullmatch(rb'\{"subscribers":(\d+)\}\n', r.body)
    assert m, r
    return int(m.group(1))


def debug_conns(s):
    r = s.get("/debug/conns")
    assert r.status == 200, r
    return [json.loads(line) for line in r.body.decode().splitlines()
            if line.strip()]


# ---- an SSE client on a raw socket ----------------------------------------

class Sse:
    """GET /sub/... as an event stream on a raw socket. Parses what moor
    writes (every line ends in LF; blocks end in a blank line) into items:
    ("retry", ms), ("comment", text), ("event", id, name, data). data is
    the data lines joined with LF, as EventSource would give it. .raw
    keeps every byte after the head."""

    def __init__(self, port, path, headers=(), rcvbuf=None, read_head=True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(5.0)
        sock.connect((HOST, port))
        self.c = Conn(port, sock=sock)
        hdrs = [SSE_ACCEPT] + list(headers)
        self.c.send(build_request("GET", path, hdrs))
        self.head = None
        self.raw = bytearray()
        self.pending = bytearray()
        self.items = []
        if read_head:
            self.read_head()

    def read_head(self):
        """Reads the response head. Returns the Response (body left in
        the stream)."""
        raw = self.c.read_until(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        self.head = (lines[0], status, headers)
        self._take(self.c.buf)
        self.c.buf = b""
        return self.head

    @property
    def status(self):
        return self.head[1]

    def header(self, name):
        for k, v in self.head[2]:
            if k == name.lower():
                return v
        return None

    def _take(self, data):
        self.raw += data
        self.pending += data
        while True:
            i = self.pending.find(b"\n\n")
            if i < 0:
                break
            block = bytes(self.pending[:i])
            del self.pending[:i + 2]
            self.items.append(parse_block(block))

    def pump(self, timeout):
        """Reads what arrives within timeout (one recv). Returns False at
        EOF."""
        r, _, _ = select.select([self.c.sock], [], [], max(0.0, timeout))
        if not r:
            return True
        try:
            chunk = self.c.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.c.eof = True
            return False
        self._take(chunk)
        return True

    def summary(self, last=8):
        """The last items, payloads cut to 40 bytes (for messages)."""
        cut = [i[:3] + (i[3][:40] + b"..." if len(i[3]) > 40 else i[3],)
               if i[0] == "event" else i for i in self.items[-last:]]
        return f"{len(self.items)} items, last {cut!r}"

    def wait_items(self, pred, timeout, what):
        end = time.monotonic() + slack(timeout)
        while not pred(self.items):
            left = end - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; " \
                             f"{self.summary()}; raw tail " \
                             f"{bytes(self.raw[-120:])!r}"
            assert self.pump(min(left, 0.2)), \
                f"stream closed while waiting for {what}; {self.summary()}"

    def events(self):
        return [i for i in self.items if i[0] == "event"]

    def wait_events(self, n, timeout=5.0):
        self.wait_items(lambda it: len([i for i in it if i[0] == "event"])
                        >= n, timeout, f"{n} events")
        return self.events()

    def collect(self, seconds):
        """Reads for seconds (the stream must stay open)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.pump(end - time.monotonic()), \
                f"stream closed; {self.summary()}"

    def wait_eof(self, timeout):
        """Seconds until EOF or reset, reading everything; None if open."""
        t0 = time.monotonic()
        end = t0 + timeout
        while time.monotonic() < end:
            if not self.pump(end - time.monotonic()):
                return time.monotonic() - t0
        return None

    def close(self):
        self.c.close()


def parse_block(block):
    lines = block.split(b"\n")
    if all(l.startswith(b":") for l in lines):
        return ("comment", b"\n".join(l[1:].lstrip(b" ") for l in lines))
    ev_id = name = None
    data = []
    retry = None
    for l in lines:
        field, sep, value = l.partition(b":")
        assert sep, f"SSE line without a colon: {l!r} in {block!r}"
        if value.startswith(b" "):
            value = value[1:]
        if field == b"id":
            ev_id = int(value)
        elif field == b"event":
            name = value.decode()
        elif field == b"data":
            data.append(value)
        elif field == b"retry":
            retry = int(value)
        else:
            raise AssertionError(f"unknown SSE field {l!r} in {block!r}")
    if retry is not None and not data:
        return ("retry", retry)
    assert data, f"an event with no data line: {block!r}"
    return ("event", ev_id, name, b"\n".join(data))


def sse_norm(payload):
    """What EventSource gives for a payload: CRLF and lone CR become LF."""
    return payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def sse_open(s, path, **kw):
    st = Sse(s.port, path, **kw)
    assert st.status == 200, st.head
    assert st.header("content-type") == "text/event-stream", st.head
    return st


# ---- a TCP frame client ----------------------------------------------------

def frame(payload):
    return struct.pack("!I", len(payload)) + payload


class Tcp:
    """A length-prefixed TCP client."""

    def __init__(self, s, command=None, rcvbuf=None, timeout=5.0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((HOST, s.tcp_port))
        self.c = Conn(s.tcp_port, sock=sock, timeout=timeout)
        if command is not None:
            self.send_frame(command)

    def send(self, data, split=False, tolerate_closed=False):
        try:
            if not split:
                self.c.send(data)
                return
            for i in range(len(data)):
                self.c.send(data[i:i + 1])
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_closed:
                raise

    def send_frame(self, payload, **kw):
        if isinstance(payload, str):
            payload = payload.encode()
        self.send(frame(payload), **kw)

    def recv_frame(self, timeout=5.0):
        self.c.sock.settimeout(slack(timeout))
        n = struct.unpack("!I", self.c.read_exact(4))[0]
        return self.c.read_exact(n)

    def recv_frames(self, n, timeout=5.0):
        return [self.recv_frame(timeout) for _ in range(n)]

    def nothing_more(self, wait=0.2):
        """True if no byte (and no EOF) arrives within wait."""
        if self.c.buf:
            return False
        r, _, _ = select.select([self.c.sock], [], [], wait)
        return not r

    def wait_closed(self, timeout):
        return self.c.wait_closed(slack(timeout))

    def close(self):
        self.c.close()


# ---- SSE: curl -------------------------------------------------------------

def test_sse_with_curl(moor, tmp_path):
    """curl -N subscribes; curl --data-binary @file publishes; curl's
    output is exactly the event stream."""
    curl = need_curl()
    s = moor("--sse-retry", "1500ms")
    sub = subprocess.Popen(
        [curl, "-sS", "-N", "-i", "--max-time", "30", "-H",
         "Accept: text/event-stream", s.url("/sub/news,sport")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = read_pipe_until(sub, bytearray(), lambda b: b"retry:" in b and
                              b.endswith(b"\n\n"), 5.0, "the retry line")
        head, _, body = bytes(out).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"\r\nContent-Type: text/event-stream" in head, head
        assert b"content-length" not in head.lower(), head
        assert b"transfer-encoding" not in head.lower(), head
        assert body == b"retry: 1500\n\n", body
        wait_metric(s, "moor_pubsub_subscribers", 1)

        payloads = [("news", b"plain"),
                    ("sport", b"line one\nline two\r\nline three"),
                    ("news", "κόσμε €".encode())]
        for i, (ch, data) in enumerate(payloads):
            f = tmp_path / f"msg{i}"
            f.write_bytes(data)
            r = subprocess.run(
                [curl, "-sS", "--max-time", "10", "-X", "POST",
                 "--data-binary", f"@{f}", s.url(f"/pub/{ch}")],
                capture_output=True, timeout=15)
            assert r.returncode == 0, r
            assert r.stdout == b'{"subscribers":1}\n', r.stdout
        want = (b"id: 1\ndata: plain\n\n"
                b"id: 2\ndata: line one\ndata: line two\ndata: line three\n\n"
                b"id: 3\ndata: " + "κόσμε €".encode() + b"\n\n")
        n0 = len(out)
        out = read_pipe_until(sub, out, lambda b: len(b) >= n0 + len(want),
                              5.0, "three events")
        assert bytes(out[n0:]) == want
    finally:
        sub.kill()
        sub.wait()
    wait_metric(s, "moor_pubsub_subscribers", 0)
    assert post(s, "news", b"after") == 0


# ---- SSE: headless Chromium ------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body><pre id="out">pending</pre>
<script>
const out = document.getElementById('out');
const got = [];
const want = %(want)d;
const es = new EventSource(%(url)s);
es.onopen = () => {
  fetch('/opened');
  if (want === 0) {
    es.close();
    out.textContent = JSON.stringify({ok: true, opened: true, events: got});
    fetch('/done');
  }
};
es.onmessage = (e) => {
  got.push({data: e.data, id: e.lastEventId, type: e.type, origin: e.origin});
  if (got.length === want) {
    es.close();
    out.textContent = JSON.stringify({ok: true, events: got});
    fetch('/done');
  }
};
es.onerror = () => {
  out.textContent = JSON.stringify({ok: false, readyState: es.readyState,
                                    events: got});
  es.close();
  fetch('/done');
};
</script>
<script src="/hold.js"></script>
</body></html>
"""


class PageServer:
    """The page, on another port (so another origin) than moor: moor has
    no route for files. /hold.js is answered only once the page calls
    /done, which holds the load event, so --dump-dom dumps the DOM after
    the script has written its results into it."""

    def __init__(self):
        self.page = b""
        self.opened = threading.Event()
        self.done = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/":
                    body, ctype = owner.page, "text/html; charset=utf-8"
                elif self.path == "/hold.js":
                    owner.done.wait(slack(20.0))
                    body, ctype = b"", "text/javascript"
                elif self.path == "/opened":
                    owner.opened.set()
                    body, ctype = b"", "text/plain"
                elif self.path == "/done":
                    owner.done.set()
                    body, ctype = b"", "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://{HOST}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.done.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium_bin():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    pytest.fail("headless Chromium is missing: install the Debian package "
                "`chromium` with scripts/install-deps.sh (as root)",
                pytrace=False)


def run_chromium(tmp_path, page, publish, wait_open=True):
    """Loads the page in headless Chromium; once its EventSource is open,
    calls publish(); returns the JSON the page wrote into #out."""
    exe = chromium_bin()
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASAN_", "UBSAN_", "LSAN_"))}
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox",
           f"--user-data-dir={profile}", "--no-first-run",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-default-apps",
           "--dump-dom", f"http://{HOST}:{page.port}/"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, stdin=subprocess.DEVNULL)
    try:
        if wait_open:
            if not page.opened.wait(slack(20.0)):
                p.kill()
                _, err = p.communicate(timeout=10)
                raise AssertionError(
                    "Chromium's EventSource did not open within 20 s; "
                    f"stderr tail:\n{err.decode(errors='replace')[-2000:]}")
            publish()
        out, err = p.communicate(timeout=slack(30.0))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = err.decode(errors="replace")
    assert p.returncode == 0, f"chromium exited {p.returncode}:\n{err[-2000:]}"
    m = re.search(r'<pre id="out">(.*?)</pre>', out.decode(), re.S)
    assert m, f"no #out in the dumped DOM:\n{out[:2000]!r}\n{err[-2000:]}"
    text = html.unescape(m.group(1))
    assert text != "pending", \
        f"the page wrote no result before the dump; stderr:\n{err[-2000:]}"
    return json.loads(text)


def test_sse_chromium_eventsource(moor, tmp_path):
    """EventSource in headless Chromium, on a page of another origin that
    --allowed-origins names: every payload arrives as EventSource gives
    it (CRLF and CR as LF, the empty message too), with increasing ids."""
    page = PageServer()
    try:
        s = moor("--allowed-origins", page.origin)
        payloads = [("br1", b"hello browser"),
                    ("br2", b"two\nlines"),
                    ("br1", b"crlf\r\nand\rcr"),
                    ("br2", b""),
                    ("br1", "κόσμε €".encode()),
                    ("br2", b" leading space"),
                    ("br1", b"trailing newline\n")]
        url = json.dumps(s.url("/sub/br1,br2"))
        page.page = (PAGE % {"want": len(payloads), "url": url}).encode()

        def publish():
            wait_metric(s, "moor_pubsub_subscribers", 1)
            with s.conn() as c:
                for ch, data in payloads:
                    assert post(s, ch, data, c) == 1

        res = run_chromium(tmp_path, page, publish)
    finally:
        page.close()
    assert res["ok"], f"EventSource failed: {res}"
    got = res["events"]
    assert [e["data"] for e in got] == \
        [sse_norm(d).decode() for _, d in payloads]
    assert all(e["type"] == "message" for e in got), got
    assert all(e["origin"] == f"http://{HOST}:{s.port}" for e in got), got
    ids = [int(e["id"]) for e in got]
    assert ids == list(range(1, len(payloads) + 1)), ids
    wait_metric(s, "moor_pubsub_subscribers", 0)


def test_sse_chromium_origin_not_allowed(moor, tmp_path):
    """A page whose origin --allowed-origins does not name: moor answers
    403, and EventSource fails for good (readyState CLOSED, no retry)."""
    page = PageServer()
    try:
        s = moor("--allowed-origins", "https://example.com")
        url = json.dumps(s.url("/sub/nope"))
        page.page = (PAGE % {"want": 0, "url": url}).encode()
        res = run_chromium(tmp_path, page, None, wait_open=False)
    finally:
        page.close()
    assert res == {"ok": False, "readyState": 2, "events": []}, res
    assert s.metric("moor_pubsub_channels") == 0


def test_sse_cors_headers(moor):
    """The response head for a cross-origin subscriber: the origin echoed
    with Vary: Origin; no Origin: no CORS header; 403 for another."""
    s = moor("--allowed-origins", "http://a.example,http://b.example")
    st = sse_open(s, "/sub/x", headers=[("Origin", "http://b.example")])
    assert st.header("access-control-allow-origin") == "http://b.example"
    assert "origin" in (st.header("vary") or "").lower(), st.head
    st.close()
    st = sse_open(s, "/sub/x")
    assert st.header("access-control-allow-origin") is None, st.head
    st.close()
    with s.conn() as c:
        r = c.request("GET", "/sub/x", headers=[
            SSE_ACCEPT, ("Origin", "http://evil.example")])
        assert r.status == 403, r


# ---- SSE: payload shapes, ids, channels -------------------------------------

def test_sse_payload_bytes_exact(server):
    """Multi-line payloads: one data line per line, split at LF, CRLF and
    lone CR; the empty message is one empty data line; a leading space and
    a NUL are kept."""
    st = sse_open(server, "/sub/shapes")
    assert st.items == [] or st.items == [("retry", 3000)]
    st.wait_items(lambda it: it[:1] == [("retry", 3000)], 2.0, "retry: 3000")
    cases = [
        (b"one", b"data: one\n"),
        (b"", b"data: \n"),
        (b"a\nb", b"data: a\ndata: b\n"),
        (b"a\r\nb", b"data: a\ndata: b\n"),
        (b"a\rb", b"data: a\ndata: b\n"),
        (b"a\r\n\r\nb", b"data: a\ndata: \ndata: b\n"),
        (b"\n", b"data: \ndata: \n"),
        (b"\r\n", b"data: \ndata: \n"),
        (b"end\n", b"data: end\ndata: \n"),
        (b"\rstart", b"data: \ndata: start\n"),
        (b"  two spaces", b"data:   two spaces\n"),
        (b"nul\x00byte", b"data: nul\x00byte\n"),
        (b"id: 99\nevent: fake\n\ndata: x",
         b"data: id: 99\ndata: event: fake\ndata: \ndata: data: x\n"),
    ]
    with server.conn() as c:
        for payload, _ in cases:
            assert post(server, "shapes", payload, c) == 1
    want = b"retry: 3000\n\n" + b"".join(
        b"id: %d\n" % (i + 1) + lines + b"\n"
        for i, (_, lines) in enumerate(cases))
    end = time.monotonic() + slack(5.0)
    while len(st.raw) < len(want) and time.monotonic() < end:
        st.pump(0.2)
    assert bytes(st.raw) == want
    got = [e[3] for e in st.events()]
    assert got == [sse_norm(p) for p, _ in cases]
    st.close()


def test_sse_several_channels_and_ids(server):
    """/sub/a,b,c gets a, b and c in publish order; d is not delivered
    but still takes a number, so the ids show the gap; a channel named
    twice delivers once; a bad list is 400 before any stream."""
    abc = sse_open(server, "/sub/a,b,c")
    cc = sse_open(server, "/sub/c,c")
    wait_metric(server, "moor_pubsub_subscribers", 2)
    with server.conn() as c:
        sent = [("a", b"to a"), ("b", b"to b"), ("d", b"to d"),
                ("c", b"to c"), ("a", b"a again")]
        reached = [post(server, ch, data, c) for ch, data in sent]
    assert reached == [1, 1, 0, 2, 1], reached
    got = abc.wait_events(4)
    assert [(e[1], e[3]) for e in got] == \
        [(1, b"to a"), (2, b"to b"), (4, b"to c"), (5, b"a again")]
    assert all(e[2] is None for e in got), got
    got = cc.wait_events(1)
    assert [(e[1], e[3]) for e in got] == [(4, b"to c")]
    cc.collect(0.2)
    assert len(cc.events()) == 1, cc.items
    m = server.metrics()
    assert m.get_value("moor_pubsub_channels") == 3
    assert m.get_value("moor_pubsub_subscriptions") == 4
    for path in ("/sub/a,,b", "/sub/a,", "/sub/bad!", "/sub/"):
        with server.conn() as c:
            r = c.request("GET", path, headers=[SSE_ACCEPT])
            assert r.status == 400, (path, r)
    abc.close()
    cc.close()


def test_sse_last_event_id(server):
    """Decimal Last-Event-ID values are accepted and change nothing (no
    history: ids go on from the server's count); anything else is 400 and
    makes no subscriber."""
    with server.conn() as c:
        for i in range(3):
            post(server, "nobody", b"x", c)
    for value in ("0", "2", " 7 ", "007", "18446744073709551615"):
        st = sse_open(server, "/sub/lei", headers=[("Last-Event-ID", value)])
        wait_metric(server, "moor_pubsub_subscribers", 1)
        n = int(server.metric("moor_pubsub_published_total"))
        assert post(server, "lei", value.encode()) == 1
        got = st.wait_events(1)
        assert got == [("event", n + 1, None, value.encode())], (value, got)
        st.close()
        wait_metric(server, "moor_pubsub_subscribers", 0)
    bad = ("abc", "-1", "+5", "0x10", "1 2", "1.5", "18446744073709551616",
           "99999999999999999999999", "\u0661")    # an Arabic-Indic one
    for value in bad:
        raw = value.encode().decode("latin-1")
        with server.conn() as c:
            r = c.request("GET", "/sub/lei",
                          headers=[SSE_ACCEPT, ("Last-Event-ID", raw)])
            assert r.status == 400, (value, r)
    with server.conn() as c:
        c.send(b"GET /sub/lei HTTP/1.1\r\nHost: x\r\nAccept: "
               b"text/event-stream\r\nLast-Event-ID:\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, ("empty", r)
    m = server.metrics()
    assert m.get_value("moor_pubsub_subscribers") == 0
    assert m.get_value("moor_pubsub_channels") == 0


# ---- SSE: heartbeats -------------------------------------------------------

HB_MS = 300
BUSY_MS = 70      # an event this often: the stream is never quiet
BUSY_N = 30       # 2.1 s, 7 heartbeat periods


def test_sse_heartbeat_when_quiet(moor):
    s = moor("--sse-heartbeat", f"{HB_MS}ms")
    st = sse_open(s, "/sub/quiet")
    t0 = time.monotonic()
    times = []
    end = t0 + slack(1.4)
    while time.monotonic() < end:
        n = len(st.items)
        st.pump(end - time.monotonic())
        times += [time.monotonic() - t0] * (len(st.items) - n)
    kinds = [i[0] for i in st.items]
    assert kinds[0] == "retry", st.items
    hbs = [i for i in st.items[1:]]
    assert all(i == ("comment", b"heartbeat") for i in hbs), st.items
    assert len(hbs) >= 3, f"{len(hbs)} heartbeats in 1.4 s at {HB_MS} ms"
    first_hb = times[1]
    assert first_hb >= HB_MS / 1000 * 0.8, \
        f"first heartbeat after {first_hb:.3f} s (--sse-heartbeat {HB_MS}ms)"
    assert b": heartbeat\n\n" in st.raw
    # The stream still delivers.
    assert post(s, "quiet", b"x") == 1
    assert st.wait_events(1)[0][3] == b"x"
    st.close()


def test_sse_no_heartbeat_while_events_flow(moor):
    """A heartbeat is for a quiet stream (push.h: "a heartbeat comment
    after sse_heartbeat of quiet"; --help: "an event stream quiet this
    long"): an event every BUSY_MS for 7 periods leaves no room for one.
    (BUSY_MS does not divide the period, so the events do not line up
    with a timer that ignores them.)"""
    s = moor("--sse-heartbeat", f"{HB_MS}ms")
    st = sse_open(s, "/sub/busy")
    with s.conn() as c:
        t0 = time.monotonic()
        for i in range(BUSY_N):
            post(s, "busy", b"tick %d" % i, c)
            st.pump(0)
            time.sleep(max(0.0, t0 + (i + 1) * BUSY_MS / 1000 -
                           time.monotonic()))
    st.wait_events(BUSY_N)
    hbs = [i for i in st.items if i[0] == "comment"]
    assert not hbs, \
        f"{len(hbs)} heartbeat(s) while an event came every " \
        f"{BUSY_MS} ms (--sse-heartbeat {HB_MS}ms): the stream was " \
        f"never quiet for {HB_MS} ms"
    st.close()


# ---- SSE: slow consumers ---------------------------------------------------

MSG = 16 * KiB
QLIMIT = 64 * KiB


def seq_payload(i, filler):
    return b"%06d:" % i + filler[:MSG - 7]


def seq_of(data):
    return int(data[:6])


@pytest.mark.parametrize("policy", ["disconnect", "drop-oldest"])
def test_sse_slow_consumer(moor, policy):
    """A subscriber that never reads (4 KiB receive buffer) beside one that
    does; messages of 16 KiB against --queue-limit 64KiB."""
    s = start(moor, "--queue-limit", "64KiB", "--queue-soft-limit", "0",
              "--slow-policy", policy)
    slow = Sse(s.port, "/sub/flood", rcvbuf=4096, read_head=False)
    fast = sse_open(s, "/sub/flood")
    wait_metric(s, "moor_pubsub_subscribers", 2)
    pub = Tcp(s, "PUB flood")
    filler = os.urandom(MSG // 2).hex().encode()
    sent = 0
    key = ("moor_pubsub_slow_disconnects_total", {"limit": "hard"}) \
        if policy == "disconnect" else \
        ("moor_pubsub_dropped_total", {"reason": "drop_oldest"})
    t0 = time.monotonic()
    while sent < 640:      # at most 10 MiB
        # In step with the fast reader, so only the slow one falls behind.
        pub.send_frame(seq_payload(sent, filler))
        sent += 1
        fast.wait_events(sent, 10.0)
        if sent % 16 == 0 and s.metrics().get_value(key[0], **key[1]) >= (
                1 if policy == "disconnect" else 20):
            break
        assert time.monotonic() - t0 < slack(20.0)
    m = s.metrics()
    assert m.get_value(key[0], **key[1]) > 0, \
        f"{sent} messages of {MSG} B and the reader that never reads " \
        f"was not caught by --queue-limit"
    assert m.get_value("moor_pubsub_queue_max_bytes") <= QLIMIT + 64
    # The fast one got everything, in order, intact.
    got = fast.events()
    assert all(e[2] is None for e in got), \
        f"the fast reader got notices: {fast.summary()}"
    assert [seq_of(e[3]) for e in got] == list(range(sent))
    assert all(e[3] == seq_payload(seq_of(e[3]), filler) for e in got)
    assert [e[1] for e in got] == list(range(1, sent + 1))

    if policy == "disconnect":
        m = wait_metric(s, "moor_pubsub_subscribers", 1)
        assert closed_total(m, "slow_consumer") == 1
        assert m.get_value("moor_pubsub_slow_disconnects_total",
                           limit="hard") == 1
        # What the slow one gets before EOF is the start of the stream.
        slow.read_head()
        assert slow.status == 200
        assert slow.wait_eof(slack(5.0)) is not None, \
            "the slow consumer's stream is still open"
        evs = slow.events()
        assert [seq_of(e[3]) for e in evs] == list(range(len(evs)))
        assert len(evs) < sent
    else:
        slow.read_head()
        slow.collect(0.3)      # read what is queued
        assert post(s, "flood", b"last") == 2
        sent += 1
        slow.wait_items(lambda it: it and it[-1][0] == "event" and
                        it[-1][3] == b"last", 5.0, "the last message")
        check_drop_notices(slow.items, sent)
        for e in slow.events():
            if e[2] is None and e[3] != b"last":
                assert e[3] == seq_payload(seq_of(e[3]), filler), \
                    f"message {seq_of(e[3])} corrupted"
        m = s.metrics()
        dropped = sum(int(i[3]) for i in slow.items
                      if i[0] == "event" and i[2] == "dropped")
        assert m.get_value("moor_pubsub_dropped_total",
                           reason="drop_oldest") == dropped
        assert m.get_value("moor_pubsub_subscribers") == 2
        assert closed_total(m, "slow_consumer") == 0
    slow.close()
    fast.close()
    pub.close()
    stop_clean(s)


def stream_outline(items):
    """ "0-170 d2 171 d29 203-208" for messages 0..170, a dropped event
    of 2, message 171, ..."""
    out = []
    run = None
    for it in items:
        if it[0] != "event":
            continue
        if it[2] == "dropped":
            if run:
                out.append(f"{run[0]}" if run[0] == run[1] else
                           f"{run[0]}-{run[1]}")
                run = None
            out.append(f"d{int(it[3])}@id{it[1]}")
            continue
        seq = -1 if it[3] == b"last" else seq_of(it[3])
        if run and seq == run[1] + 1:
            run[1] = seq
        else:
            if run:
                out.append(f"{run[0]}" if run[0] == run[1] else
                           f"{run[0]}-{run[1]}")
            run = [seq, seq]
    if run:
        out.append(f"{run[0]}" if run[0] == run[1] else f"{run[0]}-{run[1]}")
    return " ".join(out)


def check_drop_notices(items, sent):
    """A drop-oldest subscriber: messages in publish order, each intact;
    a "dropped" event never announces more than has been lost by then,
    and the counts add up to everything it did not get.

    (Not checked: that each count sits exactly where its messages went
    missing. A notice is queued behind messages already waiting, and
    those can be dropped after it, so a count can arrive a few messages
    late.)"""
    assert items[0] == ("retry", 3000), items[:2]
    prev = -1
    announced = 0
    got = 0
    for it in items[1:]:
        assert it[0] == "event", it
        if it[2] == "dropped":
            n = int(it[3])
            assert n > 0, it
            announced += n
            continue
        assert it[2] is None, it
        seq = sent - 1 if it[3] == b"last" else seq_of(it[3])
        assert seq > prev, f"message {seq} after {prev}"
        missed = seq - got    # messages before this one that never came
        assert announced <= missed, \
            f"before message {seq}: {announced} announced as dropped, " \
            f"only {missed} missing; the stream: {stream_outline(items)}"
        prev = seq
        got += 1
    assert prev == sent - 1, "the last message did not come last"
    assert got + announced == sent, \
        f"{got} messages received + {announced} announced as dropped != " \
        f"{sent} published; the stream: {stream_outline(items)}"
    assert announced > 0


# ---- SSE and TCP: shutdown -------------------------------------------------

def test_shutdown_closes_streams(moor):
    """SIGTERM: every event stream and TCP connection (subscriber,
    publisher, no command yet) ends within 2 s; curl ends too; the server
    exits 0 with live_bytes=0."""
    curl = need_curl()
    s = start(moor)
    streams = [sse_open(s, f"/sub/sd{i},common") for i in range(3)]
    cp = subprocess.Popen(
        [curl, "-sS", "-N", "--max-time", "30", "-H",
         "Accept: text/event-stream", s.url("/sub/common")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tsub = Tcp(s, "SUB common")
    tpub = Tcp(s, "PUB common")
    tnone = Tcp(s)
    try:
        wait_metric(s, "moor_pubsub_subscribers", 5)
        tpub.send_frame(b"before shutdown")
        assert tsub.recv_frame() == b"before shutdown"
        for st in streams:
            assert st.wait_events(1)[0][3] == b"before shutdown"
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        for st in streams:
            t = st.wait_eof(slack(2.0))
            assert t is not None, "an event stream still open 2 s after " \
                                  "SIGTERM"
        for name, conn in (("subscriber", tsub), ("publisher", tpub),
                           ("no command", tnone)):
            t = conn.wait_closed(2.0)
            assert t is not None, f"TCP {name} still open 2 s after SIGTERM"
        out, _ = cp.communicate(timeout=slack(2.0))
        assert out.endswith(b"data: before shutdown\n\n"), out
        took = time.monotonic() - t0
        assert took < slack(2.5), f"streams took {took:.2f} s to close"
        rc, err = s.stop(signal.SIGTERM, timeout=slack(10.0))
        assert_clean_exit(rc, err)
    finally:
        if cp.poll() is None:
            cp.kill()
            cp.wait()
        for c in streams + [tsub, tpub, tnone]:
            c.close()


# ---- TCP: fan-out ----------------------------------------------------------

def test_tcp_fanout_to_tcp_ws_sse(moor):
    """One TCP publisher; TCP, WebSocket and SSE subscribers of the same
    channel each get every message in their own framing; a subscriber of
    another channel gets nothing; HTTP and WebSocket publishers reach a
    TCP subscriber too."""
    s = start(moor)
    tsub = Tcp(s, "SUB fan other")
    tother = Tcp(s, "SUB other")
    wsub = ws_connect(s.port, "/sub/fan")
    ssub = sse_open(s, "/sub/fan")
    wait_metric(s, "moor_pubsub_subscribers", 4)
    blob = b"\xff" + os.urandom(70000)     # not UTF-8: binary
    msgs = [b"hello", "κόσμε €".encode(), b"", blob, b"multi\nline\r\n"]
    pub = Tcp(s, "PUB fan")
    try:
        for m in msgs:
            pub.send_frame(m)
        assert tsub.recv_frames(len(msgs)) == msgs
        for m in msgs:
            op, data = wsub.recv_message(timeout=slack(5.0))
            assert data == m
            assert op == (OP_BINARY if m is blob else OP_TEXT), (op, m[:20])
        evs = ssub.wait_events(len(msgs))
        assert [e[3] for e in evs] == [sse_norm(m) for m in msgs]
        ids = [e[1] for e in evs]
        assert ids == sorted(set(ids)), ids
        assert tother.nothing_more(), "a subscriber of another channel got " \
                                      "a message"
        assert pub.nothing_more(), "the publisher got bytes back"
        # Other publishers reach the TCP subscriber.
        assert post(s, "fan", b"over http") == 3
        wpub = ws_connect(s.port, "/pub/fan")
        wpub.send_binary(b"over ws")
        assert tsub.recv_frames(2) == [b"over http", b"over ws"]
        wpub.close()
        m = s.metrics()
        assert m.get_value("moor_pubsub_published_total") == len(msgs) + 2
        assert m.get_value("moor_pubsub_delivered_total") == \
            3 * len(msgs) + 3 * 2
    finally:
        for c in (tsub, tother, wsub, ssub, pub):
            c.close()
    stop_clean(s)


# ---- TCP: lengths, splits, truncation --------------------------------------

def test_tcp_lengths_0_1_max_and_over(moor):
    """--max-message 1KiB: frames of 0, 1 and 1024 bytes arrive intact;
    1025 closes the publisher as a protocol error, before any of it is
    delivered."""
    s = start(moor, "--max-message", "1KiB")
    sub = Tcp(s, "SUB len")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    pub = Tcp(s, "PUB len")
    sizes = [0, 1, 1024]
    msgs = [os.urandom(n) for n in sizes]
    for m in msgs:
        pub.send_frame(m)
    got = sub.recv_frames(3)
    assert [len(g) for g in got] == sizes
    assert got == msgs
    pe0 = closed_total(s.metrics(), "protocol_error")
    pub.send(struct.pack("!I", 1025), tolerate_closed=True)
    assert pub.wait_closed(3.0) is not None, \
        "a frame header of 1025 > --max-message 1024 did not close"
    m = s.metrics()
    assert closed_total(m, "protocol_error") == pe0 + 1
    assert sub.nothing_more(0.3)
    # The same with the payload sent at once.
    pub = Tcp(s, "PUB len")
    pub.send(frame(os.urandom(1025)), tolerate_closed=True)
    assert pub.wait_closed(3.0) is not None
    assert sub.nothing_more(0.3)
    assert closed_total(s.metrics(), "protocol_error") == pe0 + 2
    assert s.metric("moor_pubsub_published_total") == 3
    sub.close()
    stop_clean(s)


def test_tcp_frames_one_byte_per_write(moor):
    """Commands and frames written one byte per segment (TCP_NODELAY)
    parse exactly as whole ones."""
    s = start(moor)
    sub = Tcp(s)
    sub.send(frame(b"SUB split x"), split=True)
    wait_metric(s, "moor_pubsub_subscribers", 1)
    pub = Tcp(s)
    pub.send(frame(b"PUB split"), split=True)
    msgs = [b"", b"z", bytes(range(256)) * 1, b"\x00\x00\x00\x05abcde"]
    pub.send(b"".join(frame(m) for m in msgs), split=True)
    assert sub.recv_frames(len(msgs)) == msgs
    assert sub.nothing_more()
    assert s.metric("moor_pubsub_published_total") == len(msgs)
    pub.close()
    sub.close()
    stop_clean(s)


def msg_live(s):
    mem = s.debug_mem()
    tags = mem["tags"]
    return tags["msg"]["live_bytes"] + tags["carry"]["live_bytes"]


def test_tcp_truncated_frames(moor):
    """A publisher that closes in the middle of a frame header or payload
    publishes nothing and leaves no buffer behind; the subscriber still
    gets the next whole frame from another publisher intact."""
    s = start(moor)
    sub = Tcp(s, "SUB tr")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    live0 = msg_live(s)
    cuts = [struct.pack("!I", 100)[:2],                   # half a header
            struct.pack("!I", 100) + b"p" * 50,           # half a payload
            struct.pack("!I", 100) + b"p" * 99,           # one byte short
            frame(b"whole") + struct.pack("!I", 9) + b"x"]
    for data in cuts:
        pub = Tcp(s, "PUB tr")
        pub.send(data)
        time.sleep(0.05)
        pub.close()
    end = time.monotonic() + slack(3.0)
    while any(r["protocol"] == "tcp" and r["role"] == "publisher"
              for r in debug_conns(s)):
        assert time.monotonic() < end, "a truncated publisher is still open"
        time.sleep(0.02)
    m = s.metrics()
    assert closed_total(m, "protocol_error") == 0
    assert sub.recv_frame() == b"whole"
    assert sub.nothing_more(0.2)
    assert m.get_value("moor_pubsub_published_total") == 1
    assert msg_live(s) == live0, "a truncated frame left a buffer"
    pub = Tcp(s, "PUB tr")
    pub.send_frame(b"next")
    assert sub.recv_frame() == b"next"
    pub.close()
    sub.close()
    stop_clean(s)


def test_tcp_claimed_4gib_length(moor):
    """A header of 0xFFFFFFFF (4 GiB - 1, the most 32 bits can claim), as
    the command frame or after PUB, closes the connection at once as a
    protocol error, and nothing is allocated for it."""
    s = start(moor)
    sub = Tcp(s, "SUB big")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    live0 = msg_live(s)
    pe0 = closed_total(s.metrics(), "protocol_error")
    huge = struct.pack("!I", 0xFFFFFFFF)
    for prefix in (b"", frame(b"PUB big")):
        for tail in (b"", b"x" * 4096):
            c = Tcp(s)
            c.send(prefix + huge + tail, tolerate_closed=True)
            t = c.wait_closed(2.0)
            assert t is not None, \
                f"a claimed 4 GiB frame after {prefix!r} left the " \
                f"connection open"
            c.close()
    m = s.metrics()
    assert closed_total(m, "protocol_error") == pe0 + 4
    assert msg_live(s) == live0
    assert sub.nothing_more(0.2)
    assert m.get_value("moor_pubsub_published_total") == 0
    sub.close()
    stop_clean(s)


def test_tcp_partial_frame_memory_follows_bytes_received(moor):
    """docs/principles.md rule 8: "No allocation is sized by a length the
    peer claims". Four publishers each claim a frame of --max-message
    (16 MiB) and send 1 byte of it: moor's memory must follow the 4 bytes
    received, not the 64 MiB claimed."""
    s = start(moor)
    live0 = s.debug_mem()["live_bytes"]
    pubs = []
    try:
        for _ in range(4):
            p = Tcp(s, "PUB claim")
            p.send(struct.pack("!I", 16 * 1024 * 1024) + b"x")
            pubs.append(p)
        time.sleep(0.3)
        mem = s.debug_mem()
        grown = mem["live_bytes"] - live0
        assert grown < 1024 * KiB, \
            f"4 partial frames of 1 byte each grew live memory by {grown} " \
            f"bytes (msg tag {mem['tags']['msg']}): the buffer is sized by " \
            f"the length the peer claims"
    finally:
        for p in pubs:
            p.close()
    stop_clean(s)


# ---- TCP: commands and the header timeout ----------------------------------

BAD_COMMANDS = [
    b"sub lower",               # lower case verb
    b"Sub mixed",
    b"SUB  double",             # double space
    b"SUB a  b",
    b"SUB",                     # no channel
    b"SUB ",
    b"PUB",
    b"PUB ",
    b"PUB a b",                 # PUB takes one
    b"SUB a b ",                # trailing space
    b" SUB a",                  # leading space
    b"SUB a\n",                 # line end
    b"SUB bad!name",
    b"SUB a,b",
    b"SUB " + b"n" * 129,
    b"",                        # empty command frame
    b"HELLO",
    b"SUB a b c d",             # over --max-channels-per-conn 3
]


def test_tcp_command_errors(moor):
    s = start(moor, "--max-channels-per-conn", "3")
    pe0 = closed_total(s.metrics(), "protocol_error")
    for i, cmd in enumerate(BAD_COMMANDS):
        c = Tcp(s, cmd)
        t = c.wait_closed(2.0)
        c.close()
        assert t is not None, f"command {cmd!r} did not close the connection"
        m = s.metrics()
        assert closed_total(m, "protocol_error") == pe0 + i + 1, \
            f"command {cmd!r}: protocol_error closes = " \
            f"{closed_total(m, 'protocol_error')}, wanted {pe0 + i + 1}"
    # A command frame longer than any valid one is refused from its header
    # (3 names, and room for the options " since=ID ids=1": 53 bytes).
    c = Tcp(s)
    c.send(struct.pack("!I", 3 + 3 * 129 + 53 + 1))
    assert c.wait_closed(2.0) is not None, "an over-long command frame"
    c.close()
    m = s.metrics()
    assert closed_total(m, "protocol_error") == pe0 + len(BAD_COMMANDS) + 1
    assert m.get_value("moor_pubsub_subscribers") == 0
    assert m.get_value("moor_pubsub_channels") == 0
    assert s.wait_log("tcp protocol error")
    # Exactly the limit works, and the longest valid command too.
    ok = Tcp(s, "SUB a b c")
    longest = Tcp(s, b"SUB " + b" ".join(bytes([65 + i]) * 128
                                          for i in range(3)))
    wait_metric(s, "moor_pubsub_subscribers", 2)
    assert post(s, "a", b"x") == 1
    assert ok.recv_frame() == b"x"
    assert post(s, "C" * 128, b"y") == 1
    assert longest.recv_frame() == b"y"
    ok.close()
    longest.close()
    stop_clean(s)


def test_tcp_header_timeout(moor):
    """No command within --header-timeout 300ms: closed (nothing sent,
    half a header, a partial command); a command in time keeps it open."""
    s = start(moor, "--header-timeout", "300ms")
    ht0 = closed_total(s.metrics(), "header_timeout")
    silent = Tcp(s)
    half = Tcp(s)
    half.send(b"\x00\x00")
    partial = Tcp(s)
    partial.send(struct.pack("!I", 7) + b"SUB")
    good = Tcp(s, "SUB ok")
    t0 = time.monotonic()
    for name, c in (("silent", silent), ("half header", half),
                    ("partial command", partial)):
        t = c.wait_closed(2.0)
        assert t is not None, f"{name}: still open 2 s after connecting"
        took = time.monotonic() - t0
        assert took >= 0.25, f"{name}: closed after {took:.2f} s"
    m = s.metrics()
    assert closed_total(m, "header_timeout") == ht0 + 3
    assert good.nothing_more(0.5), "the subscriber that sent its command " \
                                   "was closed"
    assert post(s, "ok", b"still here") == 1
    assert good.recv_frame() == b"still here"
    for c in (silent, half, partial, good):
        c.close()
    stop_clean(s)


# ---- TCP: heartbeats -------------------------------------------------------

def test_tcp_heartbeat_when_quiet(moor):
    s = start(moor, "--sse-heartbeat", f"{HB_MS}ms")
    sub = Tcp(s, "SUB hb")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    t0 = time.monotonic()
    frames = []
    end = t0 + slack(1.4)
    while time.monotonic() < end:
        if sub.nothing_more(max(0.0, end - time.monotonic())):
            continue
        frames.append((time.monotonic() - t0, sub.recv_frame()))
    assert len(frames) >= 3, f"{len(frames)} heartbeats in 1.4 s"
    assert all(f == b"" for _, f in frames), frames
    assert frames[0][0] >= HB_MS / 1000 * 0.6, frames
    assert post(s, "hb", b"real") == 1
    got = sub.recv_frame()
    while got == b"":
        got = sub.recv_frame()
    assert got == b"real"
    sub.close()


def test_tcp_no_heartbeat_while_messages_flow(moor):
    """push.h: "an empty frame is a heartbeat after sse_heartbeat of
    quiet": none while a message comes every BUSY_MS."""
    s = start(moor, "--sse-heartbeat", f"{HB_MS}ms")
    sub = Tcp(s, "SUB busy")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    got = []
    with s.conn() as c:
        t0 = time.monotonic()
        for i in range(BUSY_N):
            post(s, "busy", b"tick %d" % i, c)
            time.sleep(max(0.0, t0 + (i + 1) * BUSY_MS / 1000 -
                           time.monotonic()))
            while not sub.nothing_more(0):
                got.append(sub.recv_frame())
    while len([g for g in got if g]) < BUSY_N:
        got.append(sub.recv_frame())
    empties = got.count(b"")
    assert empties == 0, \
        f"{empties} heartbeat frame(s) while a message came every " \
        f"{BUSY_MS} ms (--sse-heartbeat {HB_MS}ms)"
    sub.close()


# ---- TCP: publisher rate ---------------------------------------------------

def test_tcp_publisher_rate_limit(moor):
    """--rate 40 --burst 5: 85 frames written at once take about
    (85 - 5) / 40 = 2 s to be published; meanwhile /debug/conns shows the
    publisher paused for "rate". An HTTP publisher is not slowed."""
    s = start(moor, "--rate", "40", "--burst", "5")
    sub = Tcp(s, "SUB rl other")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    pub = Tcp(s, "PUB rl")
    n = 85
    pub.send(b"".join(frame(b"m%d" % i) for i in range(n)))
    t0 = time.monotonic()
    times = []
    saw_pause = False
    while len(times) < n:
        assert time.monotonic() - t0 < slack(6.0), \
            f"{len(times)} of {n} in 6 s"
        if not saw_pause and len(times) > 20:
            rows = debug_conns(s)
            saw_pause = any(r["protocol"] == "tcp" and
                            r["role"] == "publisher" and
                            "rate" in r["paused"] for r in rows)
        f = sub.recv_frame(timeout=2.0)
        assert f == b"m%d" % len(times)
        times.append(time.monotonic() - t0)
    took = times[-1]
    want = (n - 5) / 40
    assert took >= want * 0.8, \
        f"{n} messages in {took:.2f} s at --rate 40 --burst 5 (want ~{want})"
    assert took <= slack(want * 1.5 + 0.5), f"{took:.2f} s, want ~{want}"
    mid = [t for t in times[20:60]]
    rate = (len(mid) - 1) / (mid[-1] - mid[0])
    assert 30 <= rate <= 52, f"steady rate {rate:.1f}/s, want 40"
    assert saw_pause, "/debug/conns never showed the publisher paused " \
                      "for rate"
    m = s.metrics()
    assert m.get_value("moor_read_pauses_total", cause="rate") > 0
    # HTTP publishing is not held by the TCP publisher's bucket.
    t1 = time.monotonic()
    with s.conn() as c:
        for i in range(20):
            post(s, "other", b"h%d" % i, c)
    assert time.monotonic() - t1 < slack(1.0)
    assert sub.recv_frames(20) == [b"h%d" % i for i in range(20)]
    pub.close()
    sub.close()
    stop_clean(s)


# ---- /debug/conns ----------------------------------------------------------

def test_debug_conns_rows(moor):
    s = start(moor)
    sse = sse_open(s, "/sub/dc1,dc2")
    tsub = Tcp(s, "SUB dc2 dc3")
    tpub = Tcp(s, "PUB dc1")
    tnone = Tcp(s)
    wsub = ws_connect(s.port, "/sub/dc3")
    wpub = ws_connect(s.port, "/pub/dc2")
    try:
        wait_metric(s, "moor_pubsub_subscribers", 3)
        tpub.send_frame(b"x")
        assert tsub.nothing_more(0.1)
        time.sleep(0.05)
        rows = debug_conns(s)
        got = sorted((r["protocol"], r["role"],
                      ",".join(sorted(r["channels"].split(",")))
                      if r["channels"] else "") for r in rows
                     if r["protocol"] != "http")
        want = sorted([("sse", "subscriber", "dc1,dc2"),
                       ("tcp", "subscriber", "dc2,dc3"),
                       ("tcp", "publisher", "dc1"),
                       ("tcp", "", ""),
                       ("websocket", "subscriber", "dc3"),
                       ("websocket", "publisher", "dc2")])
        assert got == want, json.dumps(rows, indent=1)
        # This request is a row of its own.
        assert any(r["protocol"] == "http" and r["role"] == "" and
                   r["channels"] == "" for r in rows), rows
        for r in rows:
            for k in ("id", "peer", "age_s", "idle_ms", "queued", "bytes_in",
                      "bytes_out", "state", "paused"):
                assert k in r, (k, r)
            assert r["peer"].startswith("127.0.0.1:"), r
        by = {(r["protocol"], r["role"]): r for r in rows}
        assert by[("tcp", "publisher")]["bytes_in"] >= 4 + 7 + 5
        assert by[("sse", "subscriber")]["state"] == "sse"
    finally:
        for c in (sse, tsub, tpub, tnone, wsub, wpub):
            c.close()
