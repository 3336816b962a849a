"""--influx-url: moor pushes every series of /metrics as InfluxDB line
protocol (issue 17, docs/monitoring.md), here to a sink of the test's own
that records what it gets and can fail: answer 500, refuse (400), or hang,
or refuse gzip (415, or 400 saying so); and to a real InfluxDB 1.6 and a
real VictoriaMetrics (v1 and v2 write paths).

Covered: the write's URL (precision added), headers (v2 token, v1 basic
auth), the body's line protocol (sorted tags, the host tag, integer
counters, timestamps), retries with backoff when the sink fails, the
bounded outbox when it stays down, a refused batch dropped and counted,
a hanging sink timed out, bad flags, and a clean exit with a write out;
gzip bodies (--influx-gzip) that decompress to the exact line protocol,
the fallback to plain bodies; the memory of the push bounded and the rest
of moor unaffected while the sink is down, hangs or fails; every series
the issue names arriving at InfluxDB, the delivery quantiles included.
"""

import base64
import gzip
import json
import os
import re
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import assert_clean_exit, run_moor, slack
from wsutil import connect

HOST = "127.0.0.1"
LINE_RE = re.compile(
    r"^(?P<m>(?:[^ ,\\]|\\.)+)(?P<tags>(?:,(?:[^ ,=\\]|\\.)+=(?:[^ ,=\\]|\\.)+)*)"
    r" value=(?P<v>-?[0-9.e+-]+i?) (?P<ts>[0-9]+)$")


class Sink:
    def __init__(self, mode="ok"):
        self.mode = mode
        self.writes = []  # (path, headers, body decompressed)
        self.raw = []     # the bodies as sent
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                gz = self.headers.get("Content-Encoding") == "gzip"
                body = gzip.decompress(raw) if gz else raw
                with sink.lock:
                    sink.raw.append(raw)
                    sink.writes.append((self.path, dict(self.headers), body))
                if sink.mode == "hang":
                    time.sleep(10)
                    return
                msg = b""
                if sink.mode in ("plain415", "plain400") and gz:
                    status = 415 if sink.mode == "plain415" else 400
                    if status == 400:
                        msg = b'{"error":"unsupported Content-Encoding"}'
                else:
                    status = {"ok": 204, "fail": 500, "reject": 400,
                              "plain415": 204, "plain400": 204}[sink.mode]
                    if status == 400:
                        msg = b'{"error":"unable to parse"}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path="/write?db=moor"):
        return f"http://{HOST}:{self.port}{path}"

    def wait(self, n, timeout):
        end = time.monotonic() + slack(timeout)
        while time.monotonic() < end:
            with self.lock:
                if len(self.writes) >= n:
                    return list(self.writes)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.writes)} writes, wanted {n}")

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.stop()


def parse(body):
    points = []
    for line in body.decode().splitlines():
        m = LINE_RE.match(line)
        assert m, f"not line protocol: {line!r}"
        tags = [t for t in re.split(r"(?<!\\),", m.group("tags")) if t]
        keys = [t.split("=", 1)[0] for t in tags]
        assert keys == sorted(keys), f"tags not sorted: {line!r}"
        points.append((m.group("m"), dict(t.split("=", 1) for t in tags),
                       m.group("v"), int(m.group("ts"))))
    return points


def test_push_writes_line_protocol(moor, sink):
    s = moor("--influx-url", sink.url(), "--influx-interval", "1s",
             "--influx-tags", "env=test,region=eu")
    assert "pushing metrics to" in s.stdout_text()
    path, headers, body = sink.wait(2, 5)[0]
    assert path == "/write?db=moor&precision=s", path
    assert headers["Content-Type"].startswith("text/plain"), headers
    assert "Authorization" not in headers, headers
    # --influx-gzip auto: gzip, which decompresses to the exact lines
    assert headers.get("Content-Encoding") == "gzip", headers
    with sink.lock:
        raw = sink.raw[0]
    assert raw[:2] == b"\x1f\x8b" and gzip.decompress(raw) == body
    assert len(raw) * 3 < len(body), (len(raw), len(body))
    assert body.endswith(b"\n") and body.count(b"\n") == len(parse(body))
    points = parse(body)
    now = time.time()
    host = socket.gethostname()
    for m, tags, v, ts in points:
        assert abs(ts - now) < 10, (m, ts)
        assert tags["env"] == "test" and tags["region"] == "eu", tags
        assert tags["host"] == host, tags
    by = {(m, tuple(sorted(t.items()))): v for m, t, v, _ in points}
    live = [v for (m, t), v in by.items()
            if m == "moor_mem_live_bytes" and ("tag", "conn") in t]
    assert live and not live[0].endswith("i"), live  # a gauge: a float
    counters = [v for (m, t), v in by.items()
                if m == "moor_http_requests_total"]
    assert counters and counters[0].endswith("i"), counters
    assert len(points) > 100, len(points)
    m = s.metrics()
    assert m.get_value("moor_influx_writes_total", result="ok") >= 2
    assert m.get_value("moor_influx_points_total", result="written") >= \
        2 * 100
    assert m.get_value("moor_influx_sent_bytes_total",
                       encoding="gzip") >= len(raw)
    assert m.get_value("moor_influx_sent_bytes_total",
                       encoding="identity") == 0
    rc, err = s.stop(signal.SIGTERM, timeout=slack(10))
    assert_clean_exit(rc, err)


def test_v2_token_and_v1_basic_auth(moor, sink, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("secret-token\n")
    s1 = moor("--influx-url", sink.url("/api/v2/write?org=o&bucket=b"),
              "--influx-interval", "1s", "--influx-token-file", str(tok),
              "--influx-precision", "ms")
    path, headers, body = sink.wait(1, 5)[0]
    assert path == "/api/v2/write?org=o&bucket=b&precision=ms", path
    assert headers["Authorization"] == "Token secret-token", headers
    ts = parse(body)[0][3]
    assert abs(ts / 1000 - time.time()) < 10, ts
    s1.stop(signal.SIGTERM, timeout=slack(10))
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    with sink.lock:
        sink.writes.clear()
    moor("--influx-url", sink.url(), "--influx-interval", "1s",
         "--influx-user", "moor", "--influx-password-file", str(pw))
    _, headers, _ = sink.wait(1, 5)[0]
    assert headers["Authorization"] == \
        "Basic " + base64.b64encode(b"moor:hunter2").decode(), headers


def test_sink_failing_retries_and_the_outbox_stays_bounded(moor):
    sink = Sink("fail")
    try:
        s = moor("--influx-url", sink.url(), "--influx-interval", "1s",
                 "--influx-buffer", "64KiB")
        sink.wait(3, 8)
        deadline = time.monotonic() + slack(8)
        while True:
            m = s.metrics()
            if m.get_value("moor_influx_points_total", result="dropped") > 0:
                break
            assert time.monotonic() < deadline, "no batch was ever dropped"
            time.sleep(0.2)
        assert m.get_value("moor_influx_queued_bytes") <= 64 * 1024
        assert m.get_value("moor_influx_writes_total", result="failed") >= 3
        assert m.get_value("moor_influx_points_total", result="written") == 0
        t0 = time.monotonic()
        assert s.get("/healthz").status == 200
        assert time.monotonic() - t0 < 1.0
        sink.mode = "ok"  # back: what is queued goes out
        deadline = time.monotonic() + slack(70)
        while s.metrics().get_value("moor_influx_points_total",
                                    result="written") == 0:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        sink.stop()


@pytest.mark.wall(90)
def test_sink_refusing_drops_the_batch(moor):
    sink = Sink("reject")
    try:
        s = moor("--influx-url", sink.url(), "--influx-interval", "1s")
        sink.wait(2, 5)
        m = s.metrics()
        assert m.get_value("moor_influx_writes_total", result="rejected") >= 2
        assert m.get_value("moor_influx_points_total", result="rejected") > 0
        assert m.get_value("moor_influx_writes_total", result="failed") == 0
        s.wait_log("the sink refused a batch")
        assert s.stderr_text().count("the sink refused a batch") == 1
    finally:
        sink.stop()


def test_sink_hanging_times_out_and_exit_is_clean(moor):
    sink = Sink("hang")
    try:
        s = moor("--influx-url", sink.url(), "--influx-interval", "1s")
        sink.wait(1, 5)
        deadline = time.monotonic() + slack(6)
        while s.metrics().get_value("moor_influx_writes_total",
                                    result="failed") == 0:
            assert time.monotonic() < deadline, "the hanging write never ended"
            time.sleep(0.2)
        rc, err = s.stop(signal.SIGTERM, timeout=slack(10))
        assert_clean_exit(rc, err)
    finally:
        sink.stop()


@pytest.mark.parametrize("args,words", [
    (["--influx-url", "ftp://x/write"], "--influx-url"),
    (["--influx-url", "http://127.0.0.1:1/write", "--influx-tags", "novalue"],
     "--influx-tags"),
    (["--influx-url", "http://127.0.0.1:1/write", "--influx-user", "u"],
     "--influx-password-file"),
    (["--influx-url", "http://127.0.0.1:1/write", "--influx-token-file",
      "/nonexistent/token"], "/nonexistent/token"),
    (["--influx-url", "http://127.0.0.1:1/write", "--influx-precision", "h"],
     "--influx-precision"),
])
def test_bad_flags(args, words):
    r = run_moor(["serve", "--listen", f"{HOST}:0", *args])
    assert r.returncode in (1, 2), r
    assert words in r.stderr, r.stderr


# ---- gzip ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain415", "plain400"])
def test_sink_refusing_gzip_gets_the_same_batch_plain(moor, mode):
    """--influx-gzip auto: a 415 (or a 400 that says it cannot read the
    encoding) to a gzipped write: the same batch goes again, plain, at
    once, and every later write is plain; nothing is dropped."""
    sink = Sink(mode)
    try:
        s = moor("--influx-url", sink.url(), "--influx-interval", "1s")
        w = sink.wait(3, 6)
        assert w[0][1].get("Content-Encoding") == "gzip", w[0][1]
        assert "Content-Encoding" not in w[1][1], w[1][1]
        assert w[1][2] == w[0][2]  # the same batch, now plain
        for _, headers, _ in w[2:]:
            assert "Content-Encoding" not in headers, headers
        with sink.lock:
            assert sink.raw[1] == w[1][2]
        m = s.metrics()
        assert m.get_value("moor_influx_writes_total", result="rejected") == 0
        assert m.get_value("moor_influx_points_total", result="rejected") == 0
        assert m.get_value("moor_influx_points_total", result="written") >= \
            2 * 100
        gz = m.get_value("moor_influx_sent_bytes_total", encoding="gzip")
        with sink.lock:
            assert gz == len(sink.raw[0]), (gz, len(sink.raw[0]))
        assert m.get_value("moor_influx_sent_bytes_total",
                           encoding="identity") >= 2 * len(w[1][2])
        assert s.wait_log("the sink cannot read gzip")
        assert s.stderr_text().count("the sink cannot read gzip") == 1
    finally:
        sink.stop()


def test_gzip_off_is_plain_and_on_stays_gzip(moor):
    sink = Sink("plain415")
    try:
        s = moor("--influx-url", sink.url(), "--influx-interval", "1s",
                 "--influx-gzip", "off")
        for _, headers, _ in sink.wait(2, 5):
            assert "Content-Encoding" not in headers, headers
        assert s.metrics().get_value("moor_influx_sent_bytes_total",
                                     encoding="gzip") == 0
        s.stop(signal.SIGTERM, timeout=slack(10))
        with sink.lock:
            sink.writes.clear()
        # on: gzip whatever the sink says; its 415 is a refusal (dropped)
        s = moor("--influx-url", sink.url(), "--influx-interval", "1s",
                 "--influx-gzip", "on")
        for _, headers, _ in sink.wait(2, 5):
            assert headers.get("Content-Encoding") == "gzip", headers
        m = s.metrics()
        assert m.get_value("moor_influx_writes_total", result="rejected") >= 2
        assert m.get_value("moor_influx_sent_bytes_total",
                           encoding="identity") == 0
    finally:
        sink.stop()


# ---- a misbehaving sink leaves the rest alone ------------------------------

def influx_live_bytes(s):
    return s.debug_mem()["tags"]["influx"]["live_bytes"]


@pytest.mark.wall(90)
@pytest.mark.parametrize("mode", ["down", "hang", "fail"])
def test_misbehaving_sink_bounded_and_harmless(moor, mode):
    """The sink down (connection refused), hanging (accepts, never
    answers) or answering 500: the push's memory (tag influx) stays under
    --influx-buffer plus a small constant while batches pile up and are
    dropped, and meanwhile a WebSocket subscriber gets a publish promptly
    and /metrics answers."""
    buffer = 64 * 1024
    const = 16 * 1024  # struct influx, the URL: not the outbox
    sink = None if mode == "down" else Sink(mode)
    url = (f"http://{HOST}:{free_port()}/write?db=moor" if mode == "down"
           else sink.url())
    try:
        # A long tag makes each batch big, so the outbox fills in seconds.
        s = moor("--influx-url", url, "--influx-interval", "1s",
                 "--influx-buffer", "64KiB",
                 "--influx-tags", "pad=" + "x" * 100)
        ws = connect(s.port, "/sub/ix")
        try:
            deadline = time.monotonic() + slack(20)
            n = 0
            while True:
                t0 = time.monotonic()
                body = f"m{n}".encode()
                r = s.get(f"/pub/ix", method="POST", body=body)
                assert r.status == 202, r
                op, got = ws.recv_message(timeout=slack(1.0))
                assert got == body, got
                m = s.metrics()
                assert time.monotonic() - t0 < slack(1.0), \
                    "publish + delivery + /metrics took too long"
                live = influx_live_bytes(s)
                assert live <= buffer + const, (live, m.get_value(
                    "moor_influx_queued_bytes"))
                assert m.get_value("moor_influx_queued_bytes") <= buffer
                n += 1
                if m.get_value("moor_influx_points_total",
                               result="dropped") > 0 and n >= 10:
                    break
                assert time.monotonic() < deadline, \
                    "the outbox never filled: " + str(m.get_value(
                        "moor_influx_queued_bytes"))
                time.sleep(0.1)
            assert m.get_value("moor_influx_points_total",
                               result="written") == 0
            assert m.get_value("moor_influx_writes_total",
                               result="failed") >= 1
        finally:
            ws.close()
        rc, err = s.stop(signal.SIGTERM, timeout=slack(10))
        assert_clean_exit(rc, err)
    finally:
        if sink:
            sink.stop()


# ---- a real InfluxDB 1.6 (Debian's influxdb) -------------------------------

def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def influxd(tmp_path):
    """influxd on free ports of 127.0.0.1, its data in tmp_path, with a
    database "moor"; yields its HTTP port."""
    import shutil
    import subprocess
    import urllib.parse
    import urllib.request
    exe = shutil.which("influxd")
    if not exe:
        pytest.fail("influxd is not installed: run `make deps`",
                    pytrace=False)
    http, rpc = free_port(), free_port()
    conf = tmp_path / "influx.conf"
    conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp_path}/meta"
[data]
  dir = "{tmp_path}/data"
  wal-dir = "{tmp_path}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
    p = subprocess.Popen([exe, "-config", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + slack(20)
        while True:
            try:
                q = urllib.parse.urlencode({"q": "CREATE DATABASE moor"})
                urllib.request.urlopen(
                    f"http://{HOST}:{http}/query", q.encode(), timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "influxd did not start"
                assert p.poll() is None, "influxd exited"
                time.sleep(0.2)
        yield http
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def influxql(port, q):
    import json
    import urllib.parse
    import urllib.request
    u = f"http://{HOST}:{port}/query?" + urllib.parse.urlencode(
        {"db": "moor", "q": q})
    with urllib.request.urlopen(u, timeout=5) as r:
        return json.loads(r.read())["results"][0]


@pytest.mark.wall(60)
def test_real_influxdb_takes_every_point(moor, influxd):
    s = moor("--influx-url", f"http://{HOST}:{influxd}/write?db=moor",
             "--influx-interval", "1s", "--influx-tags", "env=ci")
    for _ in range(5):
        assert s.get("/healthz").status == 200
    deadline = time.monotonic() + slack(10)
    while True:
        m = s.metrics()
        if m.get_value("moor_influx_writes_total", result="ok") >= 3:
            break
        assert time.monotonic() < deadline, s.metrics_text()
        time.sleep(0.3)
    assert m.get_value("moor_influx_writes_total", result="rejected") == 0
    assert m.get_value("moor_influx_points_total", result="rejected") == 0
    # InfluxDB reads gzip: every write went compressed
    assert m.get_value("moor_influx_sent_bytes_total", encoding="gzip") > 0
    assert m.get_value("moor_influx_sent_bytes_total",
                       encoding="identity") == 0
    r = influxql(influxd, 'SELECT last("value") FROM "moor_mem_live_bytes" '
                          "WHERE \"tag\" = 'conn' AND \"env\" = 'ci'")
    assert r["series"][0]["values"][0][1] > 0, r
    r = influxql(influxd, 'SELECT last("value") FROM '
                          '"moor_http_requests_total"')
    got = r["series"][0]["values"][0][1]
    assert isinstance(got, int) and got >= 5, r  # an integer field
    r = influxql(influxd, 'SHOW TAG VALUES FROM "moor_mem_live_bytes" '
                          'WITH KEY = "host"')
    assert r["series"][0]["values"][0][1] == socket.gethostname(), r
    n = influxql(influxd, "SHOW MEASUREMENTS")["series"][0]["values"]
    assert len(n) > 60, n


def self_signed(tmp_path):
    import subprocess
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def tls_handshake(port):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            assert t.recv(64).startswith(b"HTTP/1.1 200"), "no 200 over TLS"


# What issue 17 asks the push to carry: (measurement, tag key, tag values
# that must be there, or None for any).
ISSUE_SERIES = [
    ("moor_connections", "state", {"websocket", "idle", "active"}),
    ("moor_connections_by_protocol", "protocol", {"websocket", "http",
                                                  "sse", "tcp"}),
    ("moor_mem_live_bytes", "tag", {"conn", "channel", "msg", "influx",
                              "http_client", "tls"}),
    ("moor_process_resident_memory_bytes", None, None),
    ("moor_process_open_fds", None, None),
    ("moor_accepted_total", None, None),
    ("moor_closed_total", "reason", {"peer_closed"}),
    ("moor_pubsub_published_total", None, None),
    ("moor_pubsub_delivered_total", None, None),
    ("moor_pubsub_dropped_total", "reason", {"drop_oldest", "closing"}),
    ("moor_connections_paused", None, None),
    ("moor_connections_paused_by_cause", "cause", {"backpressure"}),
    ("moor_pubsub_slow_disconnects_total", "limit", {"hard", "soft"}),
    ("moor_pubsub_delivery_quantile_seconds", "quantile",
     {"0.5", "0.9", "0.99"}),
    ("moor_tls_handshakes_total", "result", {"ok", "failed"}),
    ("moor_http_client_connections", "state", {"active", "idle"}),
    ("moor_http_client_requests_total", None, None),
]


def last(port, measurement, key=None, value=None):
    where = f""" WHERE "{key}" = '{value}'""" if key else ""
    r = influxql(port, f'SELECT last("value") FROM "{measurement}"{where}')
    assert "series" in r, f"no {measurement}{where}: {r}"
    return r["series"][0]["values"][0][1]


@pytest.mark.wall(60)
def test_real_influxdb_gets_every_series_the_issue_names(moor, influxd,
                                                         tmp_path):
    """Traffic first (a WebSocket subscriber, publishes, a TLS handshake),
    then every series issue 17 names is read back from InfluxDB, the
    delivery latency quantiles included."""
    cert, key = self_signed(tmp_path)
    s = moor("--influx-url", f"http://{HOST}:{influxd}/write?db=moor",
             "--influx-interval", "1s", "--influx-tags", "env=ci",
             "--tls-listen", f"{HOST}:0", "--tls-cert", str(cert),
             "--tls-key", str(key))
    m = re.search(r"https://127\.0\.0\.1:(\d+)", s.stdout_text())
    assert m, s.stdout_text()
    tls_handshake(int(m.group(1)))
    ws = connect(s.port, "/sub/news")
    try:
        for i in range(20):
            r = s.get("/pub/news", method="POST", body=b"n%d" % i)
            assert r.status == 202, r
            assert ws.recv_message(timeout=5)[1] == b"n%d" % i
        # two more pushes after the deliveries: both in InfluxDB
        ok0 = s.metrics().get_value("moor_influx_writes_total", result="ok")
        deadline = time.monotonic() + slack(10)
        while s.metrics().get_value("moor_influx_writes_total",
                                    result="ok") < ok0 + 2:
            assert time.monotonic() < deadline, s.metrics_text()
            time.sleep(0.2)
    finally:
        ws.close()
    host = socket.gethostname()
    have = {v[0] for v in
            influxql(influxd, "SHOW MEASUREMENTS")["series"][0]["values"]}
    missing = [name for name, _, _ in ISSUE_SERIES if name not in have]
    assert not missing, f"not in InfluxDB: {missing}"
    for name, key, want in ISSUE_SERIES:
        r = influxql(influxd, f'SHOW TAG VALUES FROM "{name}" WITH KEY = '
                              '"env"')
        assert r["series"][0]["values"][0][1] == "ci", (name, r)
        if name.startswith("moor_http_client_"):
            # Its own host label (the pool's peer) is kept as
            # exported_host; the machine's host tag is there too.
            r = influxql(influxd, f'SHOW TAG VALUES FROM "{name}" WITH KEY '
                                  '= "exported_host"')
            assert r["series"][0]["values"][0][1].startswith("http://"), r
        r = influxql(influxd, f'SHOW TAG VALUES FROM "{name}" WITH KEY = '
                              '"host"')
        assert r["series"][0]["values"][0][1] == host, (name, r)
        if key:
            r = influxql(influxd, f'SHOW TAG VALUES FROM "{name}" WITH KEY '
                                  f'= "{key}"')
            got = {v[1] for v in r["series"][0]["values"]}
            assert want <= got, (name, key, got)
    assert last(influxd, "moor_process_resident_memory_bytes") > 1e6
    assert last(influxd, "moor_process_open_fds") >= 3
    assert last(influxd, "moor_accepted_total") >= 20
    assert last(influxd, "moor_pubsub_published_total") == 20
    assert last(influxd, "moor_pubsub_delivered_total") == 20
    assert last(influxd, "moor_tls_handshakes_total", "result", "ok") == 1
    assert last(influxd, "moor_mem_live_bytes", "tag", "influx") > 0
    assert last(influxd, "moor_http_client_requests_total") >= 1
    qs = {}
    for q in ("0.5", "0.9", "0.99"):
        v = last(influxd, "moor_pubsub_delivery_quantile_seconds",
                 "quantile", q)
        assert isinstance(v, float) and 0 < v < 1, (q, v)
        qs[q] = v
    assert qs["0.5"] <= qs["0.9"] <= qs["0.99"], qs
    # two more pushes with no delivery in between: no quantile point
    count = ('SELECT count("value") FROM '
             '"moor_pubsub_delivery_quantile_seconds" WHERE "quantile" = '
             "'0.5'")
    before = influxql(influxd, count)["series"][0]["values"][0][1]
    assert before >= 1
    ok0 = s.metrics().get_value("moor_influx_writes_total", result="ok")
    deadline = time.monotonic() + slack(10)
    while s.metrics().get_value("moor_influx_writes_total",
                                result="ok") < ok0 + 2:
        assert time.monotonic() < deadline, s.metrics_text()
        time.sleep(0.2)
    assert influxql(influxd, count)["series"][0]["values"][0][1] == before
    assert last(influxd, "moor_pubsub_delivered_total") == 20


# ---- a real VictoriaMetrics (Debian's victoria-metrics) --------------------

@pytest.fixture
def victoria(tmp_path):
    """VictoriaMetrics on a free port of 127.0.0.1, its data in tmp_path;
    yields its HTTP port. -search.latencyOffset=0s (and the test's call of
    /internal/force_flush) make points queryable at once."""
    import subprocess
    import urllib.request
    exe = "/usr/bin/victoria-metrics"
    if not os.path.exists(exe):
        pytest.fail("victoria-metrics is not installed: run `make deps`",
                    pytrace=False)
    port = free_port()
    p = subprocess.Popen([exe, f"-httpListenAddr={HOST}:{port}",
                          f"-storageDataPath={tmp_path}/vm",
                          "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + slack(20)
        while True:
            try:
                with urllib.request.urlopen(
                        f"http://{HOST}:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "victoria-metrics did not start"
            assert p.poll() is None, "victoria-metrics exited"
            time.sleep(0.1)
        yield port
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def vm_export(port, match):
    """Every series matching match, as {(name, labels...): last value}."""
    import urllib.parse
    import urllib.request
    urllib.request.urlopen(f"http://{HOST}:{port}/internal/force_flush",
                           timeout=5).read()
    u = f"http://{HOST}:{port}/api/v1/export?" + urllib.parse.urlencode(
        {"match[]": match})
    series = []
    with urllib.request.urlopen(u, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.strip():
                j = json.loads(line)
                series.append((j["metric"], j["values"][-1]))
    return series


@pytest.mark.wall(60)
def test_victoria_metrics_v1_and_v2(moor, victoria, tmp_path):
    """moor writes to VictoriaMetrics through the v1 path and the v2 path
    (with a token); both read back with /api/v1/export: a point
    measurement,field=value becomes measurement_value with the tags as
    labels: every measurement is there, with the right values and tags."""
    tok = tmp_path / "token"
    tok.write_text("vm-token\n")
    base = f"http://{HOST}:{victoria}"
    v1 = moor("--influx-url", f"{base}/write?db=moor", "--influx-interval",
              "1s", "--influx-tags", "env=v1,region=eu")
    v2 = moor("--influx-url", f"{base}/api/v2/write?org=o&bucket=b",
              "--influx-interval", "1s", "--influx-tags", "env=v2",
              "--influx-token-file", str(tok), "--influx-precision", "ms")
    ws = connect(v1.port, "/sub/vm")
    try:
        r = v1.get("/pub/vm", method="POST", body=b"hello")
        assert r.status == 202, r
        assert ws.recv_message(timeout=5)[1] == b"hello"
    finally:
        ws.close()
    for s in (v1, v2):
        ok0 = s.metrics().get_value("moor_influx_writes_total", result="ok")
        deadline = time.monotonic() + slack(10)
        while True:
            m = s.metrics()
            if m.get_value("moor_influx_writes_total", result="ok") >= ok0 + 2:
                break
            assert time.monotonic() < deadline, s.metrics_text()
            time.sleep(0.2)
        assert m.get_value("moor_influx_writes_total", result="rejected") == 0
        assert m.get_value("moor_influx_writes_total", result="failed") == 0
        # VictoriaMetrics reads gzip too
        assert m.get_value("moor_influx_sent_bytes_total",
                           encoding="identity") == 0
    host = socket.gethostname()
    for s, env in ((v1, "v1"), (v2, "v2")):
        series = vm_export(victoria, '{env="%s"}' % env)
        got = {}
        for labels, v in series:
            assert labels["host"] == host or \
                labels["__name__"].startswith("moor_http_client_"), labels
            if env == "v1":  # the v1 path's database becomes label db
                assert labels["region"] == "eu" and \
                    labels["db"] == "moor", labels
            got[labels["__name__"], tuple(sorted(
                (k, x) for k, x in labels.items()
                if k not in ("__name__", "env", "host", "region", "db")))] = v
        names = {n for n, _ in got}
        # every measurement moor serves (pushed each interval) arrived
        want = {n + "_value" for n in
                re.findall(r"^(moor_[a-z0-9_]+)", s.metrics_text(), re.M)}
        assert want - names == set(), sorted(want - names)
        assert got["moor_mem_live_bytes_value", (("tag", "conn"),)] > 0
        assert got["moor_process_resident_memory_bytes_value", ()] > 1e6
        assert got["moor_influx_writes_total_value", (("result", "ok"),)] >= 1
        assert [v for (n, _), v in got.items()
                if n == "moor_build_info_value"] == [1]
    v1_series = vm_export(victoria, '{env="v1"}')
    assert {l["__name__"] for l, _ in v1_series} >= {
        "moor_pubsub_delivery_quantile_seconds_value"}
    delivered = [v for l, v in v1_series
                 if l["__name__"] == "moor_pubsub_delivered_total_value"]
    assert delivered == [1], delivered
    q = {l["quantile"]: v for l, v in v1_series
         if l["__name__"] == "moor_pubsub_delivery_quantile_seconds_value"}
    assert set(q) == {"0.5", "0.9", "0.99"} and all(
        0 < x < 1 for x in q.values()), q
