"""GET /dashboard (the live page) and GET /debug/stream (its feed).

Plain HTTP:
- /dashboard: 200 text/html with a Content-Security-Policy that allows
  nothing from elsewhere, Cache-Control, no absolute URL anywhere in the
  page, its EventSource on the relative debug/stream; HEAD too.
- /debug/stream: an event within about a second, JSON with every key the
  page draws (memory by tag, RSS, conns by state and protocol, pub/sub
  totals and rates, latency, paused, kicks, the top rows); the feed's own
  channel and subscribers are left out of the counts; the top rows are
  /debug/conns' (peer, role, channels, queued).
- where they are served: --admin-listen only when there is one (404 on
  --listen), else on --listen; the banner names the dashboard.
- --max-debug-streams: one more stream is 503 and counted; a stream that
  closes makes room; 0 turns the feed off.
- a stream that never reads is a slow consumer like any other: its queue
  stays under --queue-limit and it is disconnected (or, drop-oldest, its
  events dropped), while a reading stream goes on.

Headless Chromium, driven over the DevTools protocol (python3-websockets):
the page loads with no script error or console error, its charts get
points, the connection count it shows follows 500 new connections, the
layout has several columns at 1280 px and one at phone width (390 px)
with no horizontal overflow; a screenshot of each is kept under
$MOOR_ARTIFACTS (default tests/integration/artifacts/, gitignored).
"""

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Conn, slack

HOST = "127.0.0.1"
KiB = 1 << 10
ARTIFACTS = Path(os.environ.get("MOOR_ARTIFACTS") or
                 Path(__file__).resolve().parent / "artifacts")

# Every key the page reads, by path.
EVENT_KEYS = [
    ("t_ms",), ("interval_ms",),
    ("mem", "live"), ("mem", "rss"), ("mem", "budget"), ("mem", "tags"),
    ("conns", "open"), ("conns", "paused"), ("conns", "queued_bytes"),
    ("conns", "by_state"), ("conns", "by_protocol"),
    ("pubsub", "published"), ("pubsub", "delivered"), ("pubsub", "dropped"),
    ("pubsub", "kicks"), ("pubsub", "channels"), ("pubsub", "subscribers"),
    ("rates", "published"), ("rates", "delivered"), ("rates", "dropped"),
    ("latency", "p50_ms"), ("latency", "p99_ms"), ("latency", "count"),
    ("streams", "open"), ("streams", "max"), ("streams", "refused"),
    ("top",),
]
TOP_KEYS = {"id", "peer", "protocol", "role", "state", "queued", "channels"}


# ---- a /debug/stream client on a raw socket -------------------------------

class Stream:
    """GET /debug/stream on a raw socket: .status, .head; events() parses
    the SSE blocks moor writes (retry and comment blocks skipped)."""

    def __init__(self, port, rcvbuf=None, timeout=5.0, read_head=True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((HOST, port))
        self.c = Conn(port, sock=sock, timeout=timeout)
        self.c.send(f"GET /debug/stream HTTP/1.1\r\nHost: {HOST}\r\n"
                    "Accept: text/event-stream\r\n\r\n")
        self.status = None
        self.head = b""
        if read_head:
            self.read_head()

    def read_head(self):
        self.head = self.c.read_until(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1])

    def header(self, name):
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name:
                return v.strip()
        return None

    def event(self):
        """The next event: (id, JSON document)."""
        while True:
            block = self.c.read_until(b"\n\n").decode()
            ev_id, data = None, []
            for line in block.splitlines():
                if line.startswith("id: "):
                    ev_id = int(line[4:])
                elif line.startswith("data: "):
                    data.append(line[6:])
            if data:
                return ev_id, json.loads("\n".join(data))

    def close(self):
        self.c.close()


def open_stream(port, **kw):
    st = Stream(port, **kw)
    assert st.status == 200, st.head
    assert st.header("content-type") == "text/event-stream", st.head
    return st


def get(port, path, method="GET"):
    with Conn(port) as c:
        return c.request(method, path)


def dig(doc, path):
    for k in path:
        assert isinstance(doc, dict) and k in doc, \
            f"no {'.'.join(path)} in the event: {doc}"
        doc = doc[k]
    return doc


def wait_value(fn, pred, timeout, what):
    end = time.monotonic() + slack(timeout)
    while True:
        v = fn()
        if pred(v):
            return v
        assert time.monotonic() < end, f"timed out waiting for {what}: {v!r}"
        time.sleep(0.05)


# ---- /dashboard over HTTP ---------------------------------------------------

def test_dashboard_page_http(server):
    """The page: text/html, a CSP that forbids every external load,
    Cache-Control, no absolute URL in it, its feed on a relative URL."""
    r = get(server.port, "/dashboard")
    assert r.status == 200, r
    assert r.header("content-type") == "text/html; charset=utf-8", r
    csp = r.header("content-security-policy") or ""
    for d in ("default-src 'none'", "connect-src 'self'",
              "base-uri 'none'", "frame-ancestors 'none'"):
        assert d in csp, f"{d!r} not in the CSP {csp!r}"
    assert "http" not in csp and "*" not in csp, csp
    assert r.header("cache-control") == "no-cache", r
    body = r.body.decode()
    assert body.startswith("<!doctype html>"), body[:80]
    assert body.rstrip().endswith("</html>"), body[-80:]
    assert "http://" not in body and "https://" not in body
    assert "//" not in re.sub(r"/\*.*?\*/|<!--.*?-->", "", body, flags=re.S) \
        .replace("://", ""), "a protocol-relative URL in the page"
    assert 'new EventSource("debug/stream")' in body
    assert len(r.body) == int(r.header("content-length"))
    h = get(server.port, "/dashboard", method="HEAD")
    assert h.status == 200 and h.body == b"", h
    assert h.header("content-length") == r.header("content-length")
    assert h.header("content-security-policy") == csp


def test_dashboard_routes_follow_debug(moor):
    """With --admin-listen, /dashboard and /debug/stream are served there
    and 404 on --listen; the banner names the dashboard's URL."""
    s = moor("--admin-listen", "127.0.0.1:0")
    for path in ("/dashboard", "/debug/stream"):
        assert get(s.port, path).status == 404, path
    assert get(s.admin_port, "/dashboard").status == 200
    st = open_stream(s.admin_port)
    st.close()
    assert f"http://127.0.0.1:{s.admin_port}/dashboard" in s.stdout_text()
    p = moor()
    assert f"http://127.0.0.1:{p.port}/dashboard" in p.stdout_text()


# ---- /debug/stream ----------------------------------------------------------

def test_stream_event_keys_and_counts(moor):
    """An event within about a second with every key the page reads; the
    counts are the clients' (the feed's own channel, subscriber and
    publishes are left out); the top rows are /debug/conns' rows."""
    s = moor()
    t0 = time.monotonic()
    st = open_stream(s.port)
    ev_id, ev = st.event()
    assert time.monotonic() - t0 < slack(1.5), "no event within 1.5 s"
    for path in EVENT_KEYS:
        dig(ev, path)
    assert ev["mem"]["rss"] > 0 and ev["mem"]["live"] > 0, ev["mem"]
    assert {"conn", "queue", "msg", "channel"} <= set(ev["mem"]["tags"])
    assert ev["conns"]["by_state"]["sse"] == 1, ev["conns"]
    assert ev["conns"]["by_protocol"] == {"sse": 1}, ev["conns"]
    assert ev["pubsub"]["subscribers"] == 0, ev["pubsub"]
    assert ev["pubsub"]["channels"] == 0, ev["pubsub"]
    assert ev["streams"] == {"open": 1, "max": 16, "refused": 0}
    assert [r["role"] for r in ev["top"]] == ["dashboard"], ev["top"]
    assert set(ev["top"][0]) >= TOP_KEYS, ev["top"][0]

    subs = [Conn(s.port) for _ in range(3)]
    for c in subs:
        c.send(f"GET /sub/news,sport HTTP/1.1\r\nHost: {HOST}\r\n"
               "Accept: text/event-stream\r\n\r\n")
        c.read_until(b"\r\n\r\n")
    with Conn(s.port) as pub:
        for _ in range(5):
            assert pub.request("POST", "/pub/news", body=b"x").status == 202

    def counts():
        return st.event()[1]
    ev = wait_value(counts, lambda e: e["pubsub"]["delivered"] == 15 and
                    e["conns"]["by_state"]["sse"] == 4, 5, "the deliveries")
    assert ev["pubsub"]["published"] == 5, ev["pubsub"]
    assert ev["pubsub"]["subscribers"] == 3, ev["pubsub"]
    assert ev["pubsub"]["channels"] == 2, ev["pubsub"]
    roles = sorted(r["role"] for r in ev["top"])
    assert roles == ["dashboard", "subscriber", "subscriber", "subscriber"], \
        ev["top"]
    sub_rows = [r for r in ev["top"] if r["role"] == "subscriber"]
    assert all(set(r["channels"].split(",")) == {"news", "sport"}
               for r in sub_rows), sub_rows
    assert all(r["peer"].startswith("127.0.0.1:") for r in ev["top"])
    # Later events: the rates fall back to zero once nothing is published.
    ev = wait_value(counts, lambda e: e["rates"]["delivered"] == 0, 5,
                    "a quiet interval")
    assert ev["rates"]["published"] == 0
    for c in subs:
        c.close()
    st.close()


def test_feed_channel_is_out_of_reach(moor):
    """No client can subscribe or publish to the feed's channel: its name
    is outside the channel grammar (400 on /sub and /pub), so a stream's
    snapshots reach only /debug/stream, where /debug is served."""
    s = moor("--admin-listen", "127.0.0.1:0")
    st = open_stream(s.admin_port)
    with Conn(s.port) as c:
        r = c.request("GET", "/sub/$dashboard",
                      headers=[("Accept", "text/event-stream")])
        assert r.status == 400, r
    with Conn(s.port) as c:
        r = c.request("POST", "/pub/$dashboard", body=b'{"fake":1}')
        assert r.status == 400, r
    _, ev = st.event()
    assert "fake" not in ev and ev["pubsub"]["published"] == 0, ev
    st.close()


def test_stream_cap(moor):
    """--max-debug-streams 2: the third is 503 (counted); closing one makes
    room; --max-debug-streams 0: every request is 503."""
    s = moor("--max-debug-streams", "2")
    a, b = open_stream(s.port), open_stream(s.port)
    third = Stream(s.port)
    assert third.status == 503, third.head
    assert third.header("retry-after") is not None, third.head
    third.close()
    m = s.metrics()
    assert m.get_value("moor_debug_streams") == 2
    assert m.get_value("moor_debug_streams_refused_total") == 1
    _, ev = a.event()
    assert ev["streams"]["open"] == 2 and ev["streams"]["max"] == 2, ev
    b.close()
    s.wait_metric(lambda m: m.get_value("moor_debug_streams") == 1,
                  timeout=slack(5))
    c = open_stream(s.port)
    c.event()
    a.close()
    c.close()
    off = moor("--max-debug-streams", "0")
    st = Stream(off.port)
    assert st.status == 503, st.head
    st.close()
    assert off.metric("moor_debug_streams_refused_total") == 1


@pytest.mark.parametrize("policy", ["disconnect", "drop-oldest"])
def test_stalled_stream_is_a_slow_consumer(moor, policy):
    """A page that never reads: with events every 10 ms its socket fills,
    then its queue, which never passes --queue-limit (the largest queue
    seen at a publish stays under it); disconnect closes it as a slow
    consumer, drop-oldest drops its oldest events; a reading stream goes
    on getting events all along."""
    limit = 32 * KiB
    s = moor("--queue-limit", str(limit), "--debug-stream-interval", "10ms",
             "--write-timeout", "60s", "--slow-policy", policy)
    # Ten subscribers with long channel lists make each event's top rows
    # about 10 KiB, so the kernel's socket buffers (autotuned up to
    # tcp_wmem's 4 MiB) fill within seconds and moor's queue is reached.
    subs = []
    for i in range(10):
        names = ",".join(f"{i}{j}" + "c" * 118 for j in range(8))
        c = Conn(s.port)
        c.send(f"GET /sub/{names} HTTP/1.1\r\nHost: {HOST}\r\n"
               "Accept: text/event-stream\r\n\r\n")
        c.read_until(b"\r\n\r\n")
        subs.append(c)
    good = open_stream(s.port)
    stalled = open_stream(s.port, rcvbuf=4096)  # and never read again
    if policy == "disconnect":
        m = s.wait_metric(
            lambda m: m.get_value("moor_pubsub_slow_disconnects_total",
                                  limit="hard") >= 1, timeout=slack(20))
        assert m.get_value("moor_pubsub_slow_disconnects_total",
                           limit="hard") == 1, "the stalled stream stayed"
        assert m.get_value("moor_closed_total", reason="slow_consumer") == 1
        assert m.get_value("moor_debug_streams") == 1
    else:
        m = s.wait_metric(
            lambda m: m.get_value("moor_pubsub_dropped_total",
                                  reason="drop_oldest") >= 5,
            timeout=slack(20))
        assert m.get_value("moor_pubsub_dropped_total",
                           reason="drop_oldest") >= 5, "nothing dropped"
        assert m.get_value("moor_pubsub_slow_disconnects_total",
                           limit="hard") == 0
        assert m.get_value("moor_debug_streams") == 2
        # Queued bytes now: the stalled stream's queue, at the limit.
        assert m.get_value("moor_queued_bytes") <= limit + 4 * KiB
    maxq = m.get_value("moor_pubsub_queue_max_bytes")
    assert limit // 2 <= maxq <= limit, \
        f"largest stream queue {maxq}, limit {limit}"
    mem = s.debug_mem()["tags"]
    assert mem["queue"]["live_bytes"] + mem["msg"]["live_bytes"] <= \
        limit + 64 * KiB, mem
    # The reading stream is not hurt: its events keep coming, in order.
    first, _ = good.event()
    for _ in range(20):
        nxt, ev = good.event()
        assert nxt > first
        first = nxt
    if policy == "disconnect":
        stalled.c.sock.settimeout(slack(10))
        stalled.c.read_to_eof()  # the server closed it: EOF after the data
        assert stalled.c.eof
    stalled.close()
    good.close()
    for c in subs:
        c.close()


# ---- headless Chromium ------------------------------------------------------

def chromium_bin():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    pytest.fail("headless Chromium is missing: install the Debian package "
                "`chromium` with scripts/install-deps.sh (as root)",
                pytrace=False)


class Cdp:
    """The DevTools protocol over one page's WebSocket: call() waits for
    its answer and keeps every event that came meanwhile."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events = []

    async def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        await self.ws.send(json.dumps({"id": my, "method": method,
                                       "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(),
                                                    slack(15)))
            if msg.get("id") == my:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg.get("result", {})
            self.events.append(msg)

    async def js(self, expr):
        r = await self.call("Runtime.evaluate", expression=expr,
                            returnByValue=True)
        assert "exceptionDetails" not in r, f"{expr}: {r}"
        return r["result"].get("value")

    async def wait(self, expr, timeout, what):
        end = time.monotonic() + slack(timeout)
        while True:
            v = await self.js(expr)
            if v:
                return v
            assert time.monotonic() < end, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    def errors(self):
        """Script exceptions, console errors and error log entries."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "") + " " +
                           json.dumps(p["exceptionDetails"].get(
                               "exception", {}).get("description", "")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error", "assert"):
                out.append(json.dumps(p.get("args")))
            elif m == "Log.entryAdded" and \
                    p.get("entry", {}).get("level") == "error":
                out.append(json.dumps(p["entry"]))
        return out


def start_chromium(tmp_path):
    """Headless Chromium with a fresh profile and the DevTools port on;
    returns (process, the port)."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASAN_", "UBSAN_", "LSAN_"))}
    cmd = [chromium_bin(), "--headless", "--disable-gpu", "--no-sandbox",
           f"--user-data-dir={profile}", "--no-first-run",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-default-apps",
           "--remote-debugging-port=0", "--remote-allow-origins=*",
           "--window-size=1280,900", "about:blank"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL,
                         stderr=open(tmp_path / "chromium.log", "wb"),
                         env=env)
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + slack(20)
    while not (port_file.exists() and port_file.read_text().strip()):
        if p.poll() is not None or time.monotonic() > end:
            p.kill()
            p.wait()
            raise AssertionError(
                "Chromium did not open its DevTools port; log tail:\n" +
                (tmp_path / "chromium.log").read_text(errors="replace")[-2000:])
        time.sleep(0.05)
    return p, int(port_file.read_text().split()[0])


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24],
                                                              "big")


async def drive_dashboard(devtools_port, url, open_conns):
    """Loads url and checks the page; returns the two screenshots."""
    import websockets

    with urllib.request.urlopen(
            f"http://{HOST}:{devtools_port}/json/list", timeout=10) as r:
        pages = [t for t in json.load(r) if t.get("type") == "page"]
    assert pages, "no page target in Chromium"
    async with websockets.connect(pages[0]["webSocketDebuggerUrl"],
                                  max_size=None) as ws:
        cdp = Cdp(ws)
        for domain in ("Runtime", "Log", "Page"):
            await cdp.call(f"{domain}.enable")
        await cdp.call("Page.navigate", url=url)
        await cdp.wait("document.readyState === 'complete'", 10, "the load")
        # Every chart has points (two events at least).
        charts = ["chart-mem", "chart-conns", "chart-msgs", "chart-lat"]
        await cdp.wait(" && ".join(
            f"Number(document.getElementById('{c}').dataset.points) >= 2"
            for c in charts), 10, "points on every chart")
        assert await cdp.js("document.getElementById('state').className") \
            == "live"
        before = await cdp.js(
            "Number(document.getElementById('kpi-conns').textContent)")
        assert 1 <= before < 10, before
        assert await cdp.js(
            "Number(document.getElementById('top').dataset.rows)") >= 1
        conns = open_conns()
        try:
            after = await cdp.wait(
                "(function(){var v = Number(document.getElementById("
                "'kpi-conns').textContent); return v >= 500 ? v : 0})()",
                10, "the page to show 500 more connections")
            assert after >= 500 + before
            rows = await cdp.js(
                "Number(document.getElementById('top').dataset.rows)")
            assert rows == 10, rows
        finally:
            for c in conns:
                c.close()
        cols = int(await cdp.js(
            "document.getElementById('grid').dataset.columns"))
        assert cols >= 2, f"{cols} column(s) at 1280 px"
        desktop = base64.b64decode(
            (await cdp.call("Page.captureScreenshot", format="png"))["data"])
        # Phone width: one column, nothing wider than the screen.
        await cdp.call("Emulation.setDeviceMetricsOverride", width=390,
                       height=844, deviceScaleFactor=2, mobile=True)
        await cdp.wait("window.innerWidth === 390 && "
                       "document.getElementById('grid').dataset.columns "
                       "=== '1'", 10, "one column at 390 px")
        overflow = await cdp.js(
            "document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px of horizontal overflow"
        widths = await cdp.js(
            "Array.from(document.querySelectorAll('canvas')).map("
            "function(c){return c.getBoundingClientRect().right})")
        assert all(w <= 390 for w in widths), widths
        await cdp.wait("Number(document.getElementById('chart-mem')"
                       ".dataset.points) >= 2", 5, "points after the resize")
        phone = base64.b64decode(
            (await cdp.call("Page.captureScreenshot", format="png"))["data"])
        count = await cdp.js(
            "document.getElementById('errors').dataset.count")
        text = await cdp.js("document.getElementById('errors').textContent")
        assert count == "0", f"the page recorded errors:\n{text}"
        assert cdp.errors() == [], f"errors in Chromium: {cdp.errors()}"
        return desktop, phone


@pytest.mark.wall(120)
def test_dashboard_in_chromium(moor, tmp_path):
    """The page live in headless Chromium (see the top of this file)."""
    s = moor("--debug-stream-interval", "300ms")

    def open_conns():
        conns = []
        for _ in range(500):
            c = Conn(s.port)
            c.send(f"GET /sub/load HTTP/1.1\r\nHost: {HOST}\r\n"
                   "Accept: text/event-stream\r\n\r\n")
            conns.append(c)
        return conns

    proc, port = start_chromium(tmp_path)
    try:
        desktop, phone = asyncio.run(asyncio.wait_for(
            drive_dashboard(port, s.url("/dashboard"), open_conns),
            slack(60)))
    finally:
        proc.kill()
        proc.wait()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "dashboard-1280.png").write_bytes(desktop)
    (ARTIFACTS / "dashboard-390.png").write_bytes(phone)
    assert png_size(desktop)[0] == 1280, png_size(desktop)
    assert png_size(phone)[0] == 390 * 2, png_size(phone)
    assert len(desktop) > 20 * KiB, "a nearly empty screenshot"
