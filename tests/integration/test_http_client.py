"""The pooled HTTP/1.1 + TLS client (moor_http_client_*), driven through
examples/http_get (build/<release|debug>/examples/http_get, the tree of
MOOR_BIN, so tests/run runs every test here on both builds, the second
under ASan + UBSan + LSan) against the adversarial servers of
httpc_servers.py, nginx and `moor serve`.

What is checked, by the contract in include/moor.h:
- bodies: Content-Length, chunked (extensions, trailers, 1-byte chunks),
  close-delimited, each decoded byte-exact (CRC-32 of the whole body, the
  first 256 bytes); HEAD, 204 and 304 carry no body and leave the
  connection reusable; 1xx are skipped; Connection: close and HTTP/1.0 are
  not reused; request bodies from memory and produced (length known, and
  chunked) arrive whole.
- every deadline gives its own error (resolve, connect, TLS, write, head,
  body gap, total, wait) near its configured time.
- the pool: max_conns_per_host and the wait queue, queue full,
  max_requests_per_conn, max_conn_age, idle_timeout, max_idle_per_host,
  max_idle_total, close_idle; an idle connection costs little.
- stale connections: closed, reset or sent a stray byte while idle are
  found while idle (no retry needed); a reused one that dies after taking
  the request is retried for GET, Idempotency-Key and --idempotent, never
  for a plain POST or a produced body.
- cancel mid-body closes the connection (closed_abandoned); pausing pushes
  the server back.
- malformed responses: bad_response; over a limit: too_big.
- TLS: the right CA; wrong CA, wrong name, expired: tls_verify naming why,
  --insecure passes; sessions are resumed (and not with --tls-sessions 0).
- DNS through --dns-servers: answers cached for their TTL, NXDOMAIN,
  silence.
- nginx, plain and TLS: connections reused under --parallel; nginx's own
  keepalive_timeout; 10,000 requests over churned connections against
  `moor serve` and nginx end with zero live bytes.
Every run of http_get must end with {"after_free":{"live_bytes":0}} and no
sanitizer report.
"""

import json
import socket
import struct
import ssl
import subprocess
import time
import zlib

import pytest

from conftest import (HOST, SANITIZER_MARKS, base_env, example_bin, slack,
                      tail_of)
from httpc_servers import (MALFORMED, FakeDns, FullListener, HttpServer,
                           Nginx, Pki, openssl, pattern)

LEAK_MARK = "BUG: moor still holds"
SHORT = 300  # ms: the deadlines under test


# ---- running the example ----------------------------------------------------

class Got:
    """One run of http_get: .rc, .reqs (the request lines, by "i"), .stats,
    .mem, .live_after, .err (stderr), .elapsed (s)."""

    def __init__(self, args, p, elapsed):
        self.args = args
        self.rc = p.returncode
        self.out = p.stdout.decode(errors="replace")
        self.err = p.stderr.decode(errors="replace")
        self.elapsed = elapsed
        self.reqs, self.stats, self.mem, self.live_after = [], None, None, None
        for line in self.out.splitlines():
            try:
                o = json.loads(line)
            except ValueError:
                raise AssertionError(f"not a JSON line {line!r}: {self!r}")
            if "i" in o:
                self.reqs.append(o)
            elif "stats" in o:
                self.stats, self.mem = o["stats"], o.get("mem")
            elif "after_free" in o:
                self.live_after = o["after_free"]["live_bytes"]
        self.reqs.sort(key=lambda r: r["i"])

    def __repr__(self):
        shown = [a if len(a) < 60 else a[:40] + "..." for a in self.args]
        return (f"http_get {' '.join(shown)}: exit {self.rc} after "
                f"{self.elapsed:.2f} s\nstdout: {tail_of(self.out, 12)}\n"
                f"stderr: {tail_of(self.err, 20)}")

    def errors(self):
        return [r["error"] for r in self.reqs]

    def col(self, key):
        return [r[key] for r in self.reqs]


def http_get(*args, timeout=60, repeat=None):
    """Runs http_get to completion and checks what every run must show:
    no sanitizer report, one line per request (numbered 0..n-1), the stats
    line, bytes_held equal to the http_client tag, and zero live bytes once
    everything is freed."""
    args = [str(a) for a in args]
    t0 = time.monotonic()
    p = subprocess.run([str(example_bin("http_get"))] + args, env=base_env(),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=slack(timeout))
    g = Got(args, p, time.monotonic() - t0)
    g.t_end = time.monotonic()
    for mark in SANITIZER_MARKS + (LEAK_MARK,):
        assert mark not in g.err, f"{mark!r} in the output of {g!r}"
    if repeat is None:
        repeat = int(args[args.index("--repeat") + 1]) \
            if "--repeat" in args else 1
    assert g.col("i") == list(range(repeat)), f"request lines: {g!r}"
    assert g.stats is not None, f"no stats line: {g!r}"
    assert g.mem is not None and \
        g.stats["bytes_held"] == g.mem["http_client"], \
        f"bytes_held is not the http_client tag: {g!r}"
    assert g.live_after == 0, f"live bytes after free: {g!r}"
    return g


def ok(g):
    """Every request succeeded (any HTTP status): exit 0."""
    assert g.errors() == [""] * len(g.reqs), g
    assert g.rc == 0, g
    return g


def body_is(r, want):
    assert r["body_bytes"] == len(want), r
    assert r["received"] == len(want), r
    assert r["crc32"] == zlib.crc32(want), f"body differs: {r}"
    assert r["body"].encode("latin-1") == want[:256], r


def near(ms, target):
    """A deadline fired near its configured time (generous: the suite runs
    on loaded machines, the sanitizer build slower)."""
    assert 0.5 * target <= ms <= slack(3 * target + 1000), \
        f"took {ms} ms for a {target} ms deadline"


def one_error(g, name, target=None):
    """The single request failed with error `name`, near `target` ms."""
    assert g.rc == 1, g
    assert g.errors() == [name], g
    r = g.reqs[0]
    assert r["code"] < 0 and r["message"], r
    if target is not None:
        near(r["ms"], target)
    return r


# ---- fixtures -----------------------------------------------------------------

@pytest.fixture
def srv():
    """Factory: srv(**kw) -> a started HttpServer, stopped at teardown."""
    made = []

    def make(**kw):
        s = HttpServer(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("httpc-pki"))


@pytest.fixture
def dns():
    d = FakeDns(a={"good.test": ("127.0.0.1", 60),
                   "short.test": ("127.0.0.1", 1)},
                silent={"silent.test"})
    yield d
    d.stop()


@pytest.fixture
def nginx(tmp_path, pki):
    """Factory: nginx(keepalive="75s") -> a started Nginx (plain + TLS)."""
    made = []

    def make(keepalive="75s"):
        n = Nginx(tmp_path / f"nginx{len(made)}", pki=pki,
                  keepalive=keepalive)
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


def closed_by_client_early(s, k, g):
    """Connection k of server s was closed by the client at least 0.5 s
    before http_get ended (a run with --hold 1000 or more): the pool
    closed it, not the process's exit."""
    c = s.conns[k]
    end = g.t_end
    assert c.client_closed and c.t_close is not None, c
    assert c.t_close < end - 0.5, (c, c.t_close, end)


def per_conn(s):
    """How many requests each connection of server s carried."""
    counts = [0] * len(s.conns)
    for r in s.requests:
        counts[r.conn.id] += 1
    return counts


# ---- the harness itself (runs without the client) ---------------------------

@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_harness_malformed_server_sends_exactly(srv, kind):
    s = srv()
    with socket.create_connection((HOST, s.port), 5) as c:
        c.sendall(f"GET /bad/{kind} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        c.settimeout(0.3)
        got = b""
        try:
            while len(got) < len(MALFORMED[kind]) + 1:
                b = c.recv(65536)
                if not b:
                    break
                got += b
        except socket.timeout:
            pass
    assert got == MALFORMED[kind]


def test_harness_idle_tricks():
    """Idle close sends FIN, idle reset an RST, stray a byte - each after
    its delay, not before."""
    for kw, want in (({"idle_close_ms": 200}, b""),
                     ({"idle_reset_ms": 200}, ConnectionResetError),
                     ({"stray_ms": 200}, b"X")):
        s = HttpServer(**kw)
        try:
            with socket.create_connection((HOST, s.port), 5) as c:
                c.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.05)
                assert c.recv(1000).endswith(b"hello\n")
                t0 = time.monotonic()
                try:
                    got = c.recv(100)
                except ConnectionResetError as e:
                    got = type(e)
                assert got == want, kw
                assert 0.1 <= time.monotonic() - t0 <= 1.0, kw
        finally:
            s.stop()


def test_harness_full_listener_hangs_connect():
    f = FullListener()
    try:
        c = socket.socket()
        c.settimeout(0.5)
        with pytest.raises(socket.timeout):
            c.connect((HOST, f.port))
        c.close()
    finally:
        f.stop()


def test_harness_pki(pki):
    openssl("verify", "-CAfile", pki.ca, "-verify_hostname", "localhost",
            pki.pem("good"))
    for name, ca, why in (("expired", pki.ca, "expired"),
                          ("wrongca", pki.ca, "issuer"),
                          ("wrongname", pki.ca, "hostname mismatch")):
        r = subprocess.run(["openssl", "verify", "-CAfile", str(ca),
                            "-verify_hostname", "localhost",
                            str(pki.pem(name))],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and why in r.stdout + r.stderr, (name, r)
    dates = openssl("x509", "-in", pki.pem("expired"), "-noout", "-enddate")
    assert "2021" in dates, dates


def test_harness_dns(dns):
    def ask(name, qtype=1):
        q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"".join(
            bytes([len(x)]) + x.encode() for x in name.split(".")) + \
            b"\0" + struct.pack("!HH", qtype, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(0.5)
            u.sendto(q, (HOST, dns.port))
            try:
                return u.recv(512)
            except socket.timeout:
                return None
    r = ask("good.test")
    assert r[3] & 15 == 0 and struct.unpack("!H", r[6:8])[0] == 1
    assert r.endswith(socket.inet_aton("127.0.0.1"))
    assert ask("nx.test")[3] & 15 == 3
    assert ask("silent.test") is None
    assert dns.count("good.test") == 1 and dns.count("silent.test") == 1


# ---- arguments ----------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [], ["--no-such-flag", "1", "http://127.0.0.1:1/"],
    ["--repeat", "many", "http://127.0.0.1:1/"],
    ["-H", "no colon here", "http://127.0.0.1:1/"],
    ["--chunked", "http://127.0.0.1:1/"],
    ["--connect-timeout"],
    ["ftp://127.0.0.1:1/"],                       # MOOR_EURL
    ["-H", "Content-Length: 5", "http://127.0.0.1:1/"],  # moor's header
    ["-X", "GE T", "http://127.0.0.1:1/"],          # a bad method
])
def test_usage_errors(args):
    p = subprocess.run([str(example_bin("http_get"))] + args, env=base_env(),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=slack(30))
    assert p.returncode == 2, (args, p)
    assert p.stderr.startswith("http_get: ") or \
        p.stderr.startswith("usage: http_get"), (args, p.stderr)
    for mark in SANITIZER_MARKS:
        assert mark not in p.stderr, (args, p.stderr)


# ---- response bodies ------------------------------------------------------------

def test_content_length_body_exact_and_reused(srv):
    s = srv()
    g = ok(http_get("--repeat", 3, s.url("/ok?size=100000")))
    for r in g.reqs:
        assert r["status"] == 200
        body_is(r, pattern(100000))
    assert g.col("reused") == [0, 1, 1], g
    assert g.stats["conns_new"] == 1 and g.stats["conns_reused"] == 2, g
    assert g.stats["requests"] == 3 and g.stats["idle"] == 1, g
    assert len(s.conns) == 1


@pytest.mark.parametrize("chunks,size", [("1,7,100,4096,65536", 300000),
                                         ("1", 3000), ("65536", 65536)])
def test_chunked_body_exact_trailers_consumed(srv, chunks, size):
    s = srv()
    g = ok(http_get("--repeat", 2, s.url(f"/chunked?size={size}&chunks="
                                         f"{chunks}")))
    for r in g.reqs:
        body_is(r, pattern(size))
    # The trailers were read to their end: the connection was reused and
    # its next response parsed right.
    assert g.col("reused") == [0, 1], g
    assert len(s.conns) == 1


def test_close_delimited_body(srv):
    s = srv()
    g = ok(http_get("--repeat", 2, s.url("/close-delimited?size=50000")))
    for r in g.reqs:
        body_is(r, pattern(50000))
    assert g.col("reused") == [0, 0], g
    assert g.stats["conns_new"] == 2, g
    assert g.stats["closed_by_response"] == 2, g
    assert g.stats["idle"] == 0, g


@pytest.mark.parametrize("method,path,status", [
    ("HEAD", "/ok?size=1234", 200), ("GET", "/204", 204),
    ("GET", "/304", 304), ("HEAD", "/chunked", 200)])
def test_no_body_and_the_connection_is_reused(srv, method, path, status):
    s = srv()
    g = ok(http_get("-X", method, "--repeat", 3, s.url(path)))
    assert g.col("status") == [status] * 3, g
    assert g.col("body_bytes") == [0] * 3 and g.col("received") == [0] * 3
    assert g.col("reused") == [0, 1, 1], g
    assert len(s.conns) == 1 and len(s.seen(method)) == 3


def test_1xx_skipped(srv):
    s = srv()
    g = ok(http_get("--repeat", 2, s.url("/continue?size=1000")))
    assert g.col("status") == [200, 200], g
    for r in g.reqs:
        body_is(r, pattern(1000))
    assert g.col("reused") == [0, 1], g


@pytest.mark.parametrize("path", ["/close?size=3000", "/http10?size=3000"])
def test_close_and_http10_not_reused(srv, path):
    s = srv()
    g = ok(http_get("--repeat", 3, s.url(path)))
    for r in g.reqs:
        body_is(r, pattern(3000))
    assert g.col("reused") == [0, 0, 0], g
    assert g.stats["conns_new"] == 3 and g.stats["conns_reused"] == 0, g
    assert g.stats["closed_by_response"] == 3, g
    assert g.stats["idle"] == 0, g
    assert len(s.conns) == 3


# ---- request bodies and headers ---------------------------------------------------

def test_post_body_from_memory(srv):
    s = srv()
    data = "a body from memory: " + "0123456789" * 500
    g = ok(http_get("-X", "POST", "-d", data, s.url("/echo")))
    body_is(g.reqs[0], data.encode())
    [r] = s.seen("POST", "/echo")
    assert r.body == data.encode()
    assert r.header("content-length") == str(len(data))
    assert r.header("transfer-encoding") is None


def test_produced_body_with_length(srv):
    s = srv()
    n = 1000000 + 123
    g = ok(http_get("-X", "PUT", "--produce", n, s.url("/echo")))
    body_is(g.reqs[0], b"x" * n)
    [r] = s.seen("PUT", "/echo")
    assert r.body == b"x" * n
    assert r.header("content-length") == str(n)
    assert r.header("transfer-encoding") is None


def test_produced_body_chunked(srv):
    s = srv()
    n = 300000 + 7
    g = ok(http_get("-X", "POST", "--produce", n, "--chunked",
                    s.url("/echo")))
    body_is(g.reqs[0], b"x" * n)
    [r] = s.seen("POST", "/echo")
    assert r.body == b"x" * n
    assert "chunked" in r.header("transfer-encoding", "").lower()
    assert r.header("content-length") is None


def test_headers_sent(srv):
    s = srv()
    ok(http_get("-H", "X-One: 1", "-H", "X-Two: two words", s.url("/ok")))
    [r] = s.seen("GET", "/ok")
    assert r.header("x-one") == "1" and r.header("x-two") == "two words"
    assert r.header("host") == f"{HOST}:{s.port}"
    assert r.version == "HTTP/1.1"


# ---- deadlines ------------------------------------------------------------------

def test_timeout_resolve(dns, srv):
    s = srv()
    g = http_get("--dns-servers", dns.addr, "--resolve-timeout", SHORT,
                 f"http://silent.test:{s.port}/ok")
    one_error(g, "timeout_resolve", SHORT)
    assert dns.count("silent.test") >= 1 and not s.conns


def test_timeout_connect():
    f = FullListener()
    try:
        g = http_get("--connect-timeout", SHORT, f.url())
        one_error(g, "timeout_connect", SHORT)
    finally:
        f.stop()


def test_timeout_tls(srv):
    s = srv(never_read=True)
    g = http_get("--tls-timeout", SHORT, "--insecure",
                 f"https://{HOST}:{s.port}/ok")
    one_error(g, "timeout_tls", SHORT)
    assert len(s.conns) == 1


def test_timeout_write(srv):
    # The server reads nothing: its receive buffer and our send buffer
    # fill (a few MiB on loopback), then no byte moves.
    s = srv(never_read=True, rcvbuf=4096)
    g = http_get("-X", "POST", "--produce", 64 << 20, "--write-timeout",
                 SHORT, s.url("/echo"), timeout=60)
    r = one_error(g, "timeout_write")
    assert 0.5 * SHORT <= r["ms"] <= slack(3 * SHORT + 3000), r


def test_timeout_head(srv):
    s = srv()
    g = http_get("--head-timeout", SHORT, s.url("/stall-head"))
    one_error(g, "timeout_head", SHORT)
    assert len(s.seen("GET", "/stall-head")) == 1


def test_timeout_body_gap(srv):
    s = srv()
    g = http_get("--body-timeout", SHORT,
                 s.url("/stall-body?size=100000&after=5000"))
    r = one_error(g, "timeout_body", SHORT)
    assert r["status"] == 200 and r["received"] == 5000, r
    # The body deadline is the gap between bytes, not the whole body: a
    # byte every 100 ms for 1.2 s passes under a 400 ms deadline.
    g = ok(http_get("--body-timeout", 400, s.url("/drip?size=12&ms=100")))
    body_is(g.reqs[0], pattern(12))
    assert g.reqs[0]["ms"] >= 1000, g


def test_timeout_total(srv):
    s = srv()
    g = http_get("--total-timeout", 500, s.url("/drip?size=50&ms=100"))
    r = one_error(g, "timeout_total", 500)
    assert 0 < r["received"] < 50, r


def test_timeout_wait(srv):
    s = srv()
    g = http_get("--max-conns-per-host", 1, "--wait-timeout", SHORT,
                 "--parallel", 3, "--repeat", 3, s.url("/delay?ms=1500"))
    assert g.rc == 1, g
    assert sorted(g.errors()) == ["", "timeout_wait", "timeout_wait"], g
    for r in g.reqs:
        if r["error"]:
            near(r["ms"], SHORT)
            assert r["status"] == 0, r
    assert len(s.conns) == 1 and len(s.requests) == 1


# ---- the pool ---------------------------------------------------------------------

def test_queue_waits_for_the_one_connection(srv):
    s = srv()
    g = ok(http_get("--max-conns-per-host", 1, "--parallel", 4, "--repeat",
                    4, s.url("/delay?ms=100")))
    assert g.stats["conns_new"] == 1 and g.stats["conns_reused"] == 3, g
    assert sorted(g.col("reused")) == [0, 1, 1, 1], g
    assert len(s.conns) == 1
    assert g.elapsed >= 0.4, g  # one at a time


def test_queue_full(srv):
    s = srv()
    g = http_get("--max-conns-per-host", 1, "--max-waiting", 1,
                 "--parallel", 4, "--repeat", 4, s.url("/delay?ms=300"))
    assert g.rc == 1, g
    assert sorted(g.errors()) == ["", "", "queue_full", "queue_full"], g
    for r in g.reqs:
        if r["error"]:
            assert r["ms"] < slack(250), r  # at once, not after a wait
    assert len(s.requests) == 2 and len(s.conns) == 1


def test_max_requests_per_conn(srv):
    s = srv()
    g = ok(http_get("--max-requests-per-conn", 3, "--repeat", 7,
                    s.url("/ok")))
    assert g.col("reused") == [0, 1, 1, 0, 1, 1, 0], g
    assert g.stats["conns_new"] == 3, g
    assert g.stats["closed_max_age"] == 2, g
    assert per_conn(s) == [3, 3, 1]


def test_max_conn_age(srv):
    s = srv()
    g = ok(http_get("--max-conn-age", 500, "--repeat", 4, "--interval", 300,
                    s.url("/ok")))
    assert g.col("reused") == [0, 1, 0, 1], g
    assert g.stats["conns_new"] == 2, g
    assert g.stats["closed_max_age"] >= 1, g
    assert per_conn(s) == [2, 2]


def test_idle_timeout(srv):
    s = srv()
    # Held past the idle timeout: closed by it.
    g = ok(http_get("--idle-timeout", SHORT, "--hold", 1500, s.url("/ok")))
    assert g.stats["closed_idle_timeout"] == 1 and g.stats["idle"] == 0, g
    closed_by_client_early(s, 0, g)
    # Not held so long: still pooled.
    g = ok(http_get("--idle-timeout", 5000, "--hold", SHORT, s.url("/ok")))
    assert g.stats["closed_idle_timeout"] == 0 and g.stats["idle"] == 1, g
    # The next request after the idle timeout gets a new connection.
    g = ok(http_get("--idle-timeout", 200, "--repeat", 2, "--interval", 600,
                    s.url("/ok")))
    assert g.col("reused") == [0, 0], g
    assert g.stats["closed_idle_timeout"] == 1, g


def test_max_idle_per_host(srv):
    s = srv()
    g = ok(http_get("--max-idle-per-host", 1, "--parallel", 4, "--repeat", 4,
                    "--hold", 1000, s.url("/delay?ms=300")))
    assert g.stats["conns_new"] == 4, g
    assert g.stats["idle"] == 1 and g.stats["closed_pool_full"] == 3, g
    early = [c for c in s.conns if c.t_close and c.t_close < g.t_end - 0.5]
    assert len(early) == 3, s.conns


def test_max_idle_total(srv):
    s = srv()
    g = ok(http_get("--max-idle", 2, "--parallel", 4, "--repeat", 4,
                    s.url("/delay?ms=300")))
    assert g.stats["idle"] == 2 and g.stats["closed_pool_full"] == 2, g


def test_close_idle(srv):
    s = srv()
    g = ok(http_get("--parallel", 3, "--repeat", 3, s.url("/delay?ms=200")))
    assert g.stats["idle"] == 3, g
    s2 = srv()
    g = ok(http_get("--parallel", 3, "--repeat", 3, "--close-idle",
                    s2.url("/delay?ms=200")))
    assert g.stats["idle"] == 0 and g.stats["active"] == 0, g
    assert s2.wait_closed(3) == 3


def test_idle_connections_hold_little(srv):
    """An idle pooled connection holds a small struct and no buffer: the
    client's accounted bytes grow by less than 2 KiB per idle one."""
    s = srv()
    one = ok(http_get(s.url("/ok")))
    n = 200
    many = ok(http_get("--parallel", n, "--repeat", n,
                       s.url("/delay?ms=500"), timeout=60))
    assert many.stats["idle"] == n, many
    per = (many.stats["bytes_held"] - one.stats["bytes_held"]) / (n - 1)
    assert per < 2048, (per, one.stats, many.stats)


# ---- stale connections -----------------------------------------------------------

@pytest.mark.parametrize("how", ["idle_close_ms", "idle_reset_ms"])
def test_idle_conn_closed_by_server_is_noticed_while_idle(srv, how):
    s = srv(**{how: 200})
    g = ok(http_get("--repeat", 4, "--interval", 500, s.url("/ok")))
    assert g.col("retried") == [0] * 4, g
    assert g.col("reused") == [0] * 4, g
    assert g.stats["retries"] == 0 and g.stats["conns_new"] == 4, g
    assert g.stats["closed_peer"] >= 3, g
    assert len(s.requests) == 4  # nothing was sent into a dead connection


def test_stray_byte_on_idle_conn_closes_it(srv):
    s = srv(stray_ms=150)
    g = ok(http_get("--repeat", 2, "--interval", 500, "--hold", 1000,
                    s.url("/ok")))
    assert g.col("retried") == [0, 0] and g.col("reused") == [0, 0], g
    assert g.stats["closed_peer"] >= 1, g
    closed_by_client_early(s, 0, g)


def test_reused_conn_dies_get_is_retried(srv):
    s = srv(close_reused=True)
    g = ok(http_get("--repeat", 2, s.url("/ok")))
    assert g.col("retried") == [0, 1], g
    assert g.stats["retries"] == 1, g
    assert len(s.seen("GET", "/ok")) == 3  # the second one twice


def test_reused_conn_dies_post_is_not_retried(srv):
    s = srv(close_reused=True)
    g = http_get("-X", "POST", "-d", "pay once", "--repeat", 2,
                 s.url("/echo"))
    assert g.rc == 1, g
    assert g.errors() == ["", "peer_closed"], g
    assert g.col("retried") == [0, 0], g
    assert g.stats["retries"] == 0, g
    posts = s.seen("POST", "/echo")
    assert len(posts) == 2 and posts[1].nth == 1  # the server saw it once


@pytest.mark.parametrize("extra", [["-H", "Idempotency-Key: k-1"],
                                   ["--idempotent"]])
def test_reused_conn_dies_idempotent_post_is_retried(srv, extra):
    s = srv(close_reused=True)
    g = ok(http_get("-X", "POST", "-d", "pay once", *extra, "--repeat", 2,
                    s.url("/echo")))
    assert g.col("retried") == [0, 1], g
    assert len(s.seen("POST", "/echo")) == 3
    if extra[0] == "-H":
        assert all(r.header("idempotency-key") == "k-1"
                   for r in s.seen("POST"))


def test_produced_body_is_never_retried(srv):
    s = srv(close_reused=True)
    g = http_get("-X", "PUT", "--produce", 1000, "--idempotent", "--repeat",
                 2, s.url("/echo"))
    assert g.rc == 1 and g.errors() == ["", "peer_closed"], g
    assert g.col("retried") == [0, 0], g
    assert len(s.seen("PUT")) == 2


# ---- cancel and pause ----------------------------------------------------------------

def test_cancel_mid_body(srv):
    s = srv()
    g = http_get("--cancel-after-bytes", 1000, "--hold", 1000,
                 s.url("/stall-body?size=1000000&after=8192"))
    assert g.rc == 1 and g.errors() == ["canceled"], g
    r = g.reqs[0]
    assert r["status"] == 200 and r["received"] >= 1000, r
    assert r["ms"] < slack(1000), r
    assert g.stats["closed_abandoned"] == 1 and g.stats["idle"] == 0, g
    closed_by_client_early(s, 0, g)


def test_pause_pushes_the_server_back(srv):
    s = srv(sndbuf=65536)
    n = 8 << 20
    g = ok(http_get("--pause-ms", 800, s.url(f"/ok?size={n}"), timeout=60))
    body_is(g.reqs[0], pattern(n))
    assert g.reqs[0]["ms"] >= 750, g
    c = s.conns[0]
    # While the client did not read, the server could not finish sending.
    assert c.sent_done - c.head_sent >= 0.6, (c.head_sent, c.sent_done)


def test_pause_past_pause_timeout_ends_the_request(srv):
    """A body the caller keeps paused longer than pause_timeout_ms ends
    with timeout_pause near that time (before the body deadline), and
    its connection is closed, not pooled; a shorter pause is fine."""
    s = srv(sndbuf=65536)
    n = 8 << 20
    g = http_get("--pause-ms", 5000, "--pause-timeout", 600,
                 "--body-timeout", 3000, s.url(f"/ok?size={n}"))
    r = one_error(g, "timeout_pause", 600)
    assert "paused" in r["message"] and "pause_timeout_ms" in r["message"], r
    assert g.stats["idle"] == 0 and g.stats["closed_error"] == 1, g
    g = ok(http_get("--pause-ms", 300, "--pause-timeout", 2000,
                    s.url(f"/ok?size={n}"), timeout=60))
    body_is(g.reqs[0], pattern(n))


# ---- malformed and too big -----------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_response(srv, kind):
    s = srv()
    g = http_get("--head-timeout", 5000, s.url(f"/bad/{kind}"))
    # A chunk size of more hex digits than any body can have is refused
    # as too big (the chunked decoder's 413), not as malformed.
    one_error(g, "too_big" if kind == "chunk_overflow" else "bad_response")
    assert g.stats["closed_error"] == 1 and g.stats["idle"] == 0, g


def test_head_over_max_header_bytes(srv):
    s = srv()
    g = http_get(s.url("/huge-head?bytes=20000"))  # default limit 16 KiB
    one_error(g, "too_big")
    assert g.stats["closed_error"] == 1, g
    g = ok(http_get("--max-header-bytes", 65536,
                    s.url("/huge-head?bytes=20000")))
    assert g.reqs[0]["received"] == 2, g


def test_too_many_header_fields(srv):
    s = srv()
    one_error(http_get(s.url("/many-headers?n=150")), "too_big")  # 100 max
    ok(http_get(s.url("/many-headers?n=50")))


@pytest.mark.parametrize("path", ["/ok?size=5000", "/chunked?size=5000",
                                  "/close-delimited?size=5000"])
def test_body_over_max_body(srv, path):
    s = srv()
    r = one_error(http_get("--max-body", 1000, s.url(path)), "too_big")
    assert r["received"] <= 1000, r
    ok(http_get("--max-body", 1000, s.url(path.replace("5000", "900"))))


# ---- TLS ----------------------------------------------------------------------------

@pytest.mark.parametrize("host", [HOST, "good.test"])
def test_tls_good_ca_and_session_resumed(srv, pki, dns, host):
    s = srv(tls=pki.ctx("good"))
    g = ok(http_get("--tls-ca", pki.ca, "--dns-servers", dns.addr,
                    "--repeat", 3, "--max-requests-per-conn", 1,
                    s.url("/ok?size=20000", host=host)))
    for r in g.reqs:
        body_is(r, pattern(20000))
    assert g.stats["conns_new"] == 3, g
    assert [c.session_reused for c in s.conns] == [False, True, True]
    assert [c.alpn for c in s.conns] == ["http/1.1"] * 3
    if host == "good.test":  # SNI carries a name, never an address
        assert s.sni[:1] == ["good.test"], s.sni


def test_tls_sessions_zero_does_not_resume(srv, pki):
    s = srv(tls=pki.ctx("good"))
    ok(http_get("--tls-ca", pki.ca, "--tls-sessions", 0, "--repeat", 2,
                "--max-requests-per-conn", 1, s.url("/ok")))
    assert [c.session_reused for c in s.conns] == [False, False]


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_tls_parallel_dials_resume_from_one_full_handshake(srv, pki, version):
    """Eight requests at once to a host with no session: one connection
    makes the full handshake, the seven others hold their hello until its
    session comes, then resume from it (one ticket serves them all)."""
    ctx = pki.ctx("good")
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = srv(tls=ctx)
    g = ok(http_get("--tls-ca", pki.ca, "--parallel", 8, "--repeat", 8,
                    s.url("/delay?ms=300")))
    assert g.stats["conns_new"] == 8, g
    reused = [c.session_reused for c in s.conns]
    assert len(reused) == 8 and reused.count(False) == 1, reused
    assert g.stats["tls_resumed"] == 7, g


def test_tls_parallel_dials_to_a_server_without_tickets(srv, pki):
    """A TLS 1.3 server that issues no ticket: the leader's response comes
    with no session, so the held connections go on with full handshakes
    (all succeed) and later dials to that host hold nothing."""
    ctx = pki.ctx("good")
    ctx.num_tickets = 0
    s = srv(tls=ctx)
    g = ok(http_get("--tls-ca", pki.ca, "--parallel", 6, "--repeat", 6,
                    "--max-requests-per-conn", 1, s.url("/delay?ms=200")))
    assert g.stats["conns_new"] == 6, g
    assert [c.session_reused for c in s.conns] == [False] * 6
    assert g.stats["tls_resumed"] == 0, g


def test_tls_parallel_dials_when_the_leader_fails(srv, pki):
    """The first connection is closed before its handshake: its request
    fails, the next held connection leads, and the rest resume from its
    session."""
    s = srv(tls=pki.ctx("good"), drop_first=1)
    g = http_get("--tls-ca", pki.ca, "--parallel", 5, "--repeat", 5,
                 s.url("/delay?ms=300"))
    assert sorted(g.errors()).count("") == 4, g
    reused = [c.session_reused for c in s.conns[1:]]
    assert reused.count(False) == 1 and reused.count(True) == 3, reused


def test_tls_parallel_dials_when_the_leader_stalls(srv, pki):
    """The first connection's server never answers its ClientHello: the
    others hold theirs at most a second (HC_HOLD_MS), then make full
    handshakes and succeed; only the stalled one fails, at its own TLS
    deadline."""
    s = srv(tls=pki.ctx("good"), stall_first=1)
    g = http_get("--tls-ca", pki.ca, "--tls-timeout", 4000, "--parallel", 4,
                 "--repeat", 4, s.url("/ok"))
    errs = g.errors()
    assert sorted(errs) == ["", "", "", "timeout_tls"], g
    for r in g.reqs:
        if r["code"] == 0:
            assert r["ms"] < slack(2500), r  # the hold, not the deadline
        else:
            near(r["ms"], 4000)


@pytest.mark.parametrize("limit,waited", [(1, (1, 5)), (0, (0, 0))])
def test_tls_max_handshakes_queues_the_rest(srv, pki, limit, waited):
    """Six dials at once with max_handshakes 1: one handshake runs, the
    other connections wait their turn and then all succeed (how many
    waited depends on whether a handshake ended before the last TCP
    connect did: under load, not all five); with no limit nobody waits.
    Resumption off, so no dial waits for a leader."""
    s = srv(tls=pki.ctx("good"))
    g = ok(http_get("--tls-ca", pki.ca, "--tls-sessions", 0,
                    "--max-handshakes", limit, "--parallel", 6,
                    "--repeat", 6, s.url("/delay?ms=200")))
    assert g.stats["conns_new"] == 6 and len(s.conns) == 6, g
    assert waited[0] <= g.stats["tls_waited"] <= waited[1], g
    assert g.stats["tls_waiting"] == 0, g


def test_tls_max_handshakes_with_resumption(srv, pki):
    """Eight dials at once to a new host with max_handshakes 2: the
    leader's full handshake first, then the seven held ones two at a
    time, every one resuming the leader's session."""
    s = srv(tls=pki.ctx("good"))
    g = ok(http_get("--tls-ca", pki.ca, "--max-handshakes", 2,
                    "--parallel", 8, "--repeat", 8, s.url("/delay?ms=300")))
    reused = [c.session_reused for c in s.conns]
    assert len(reused) == 8 and reused.count(False) == 1, reused
    assert g.stats["tls_resumed"] == 7, g
    # Usually 5 wait for a slot (7 released at once, 2 slots); fewer if
    # some TCP connects finished late.
    assert g.stats["tls_waited"] <= 7 and g.stats["tls_waiting"] == 0, g


def test_tls_max_handshakes_wait_counts_against_tls_timeout(srv, pki):
    """The server never answers the first three ClientHellos and
    max_handshakes is 1: the two connections waiting behind the stalled
    one fail at their own TLS deadline, counted from their TCP connect,
    not one deadline after another (1.5 s, 3 s, 4.5 s)."""
    s = srv(tls=pki.ctx("good"), stall_first=3)
    g = http_get("--tls-ca", pki.ca, "--tls-sessions", 0,
                 "--max-handshakes", 1, "--tls-timeout", 1500,
                 "--parallel", 3, "--repeat", 3, s.url("/ok"))
    assert g.errors() == ["timeout_tls"] * 3, g
    ms = [r["ms"] for r in g.reqs]
    for m in ms:
        near(m, 1500)
    assert max(ms) - min(ms) < 1000, ms
    assert g.stats["tls_waiting"] == 0 and g.stats["dialing"] == 0, g


def test_tls_connection_reused(srv, pki):
    s = srv(tls=pki.ctx("good"))
    g = ok(http_get("--tls-ca", pki.ca, "--repeat", 3, s.url("/ok")))
    assert g.col("reused") == [0, 1, 1] and len(s.conns) == 1, g
    assert g.stats["idle"] == 1 and g.mem["tls"] > 0, g


@pytest.mark.parametrize("leaf,words", [
    ("wrongca", ("issuer", "unknown ca", "self-signed", "self signed",
                 "untrusted")),
    ("wrongname", ("name", "mismatch")),
    ("expired", ("expired",))])
def test_tls_verify_fails_naming_why(srv, pki, leaf, words):
    s = srv(tls=pki.ctx(leaf))
    g = http_get("--tls-ca", pki.ca, s.url("/ok"))
    r = one_error(g, "tls_verify")
    assert any(w in r["message"].lower() for w in words), r
    assert not s.requests  # nothing was sent to it
    # --insecure takes it anyway.
    g = ok(http_get("--insecure", s.url("/ok")))
    assert g.reqs[0]["body"] == "hello\n"


def test_tls_system_store_does_not_know_the_test_ca(srv, pki):
    s = srv(tls=pki.ctx("good"))
    one_error(http_get(s.url("/ok")), "tls_verify")


# ---- DNS ------------------------------------------------------------------------------

def test_dns_resolves_and_caches(dns, srv):
    s = srv()
    g = ok(http_get("--dns-servers", dns.addr, "--repeat", 3,
                    "--max-requests-per-conn", 1,
                    f"http://good.test:{s.port}/ok"))
    assert g.stats["conns_new"] == 3, g
    assert len(s.conns) == 3
    assert dns.count("good.test") == 1, dns.queries  # TTL 60: cached
    assert s.requests[0].header("host") == f"good.test:{s.port}"


def test_dns_ttl_expires(dns, srv):
    s = srv()
    ok(http_get("--dns-servers", dns.addr, "--repeat", 2, "--interval", 1600,
                "--max-requests-per-conn", 1,
                f"http://short.test:{s.port}/ok"))
    assert dns.count("short.test") == 2, dns.queries  # TTL 1 s


def test_dns_nxdomain(dns, srv):
    s = srv()
    one_error(http_get("--dns-servers", dns.addr,
                       f"http://nx.test:{s.port}/ok"), "resolve")
    assert dns.count("nx.test") >= 1 and not s.conns


def test_bad_dns_servers_is_a_usage_error():
    p = subprocess.run([str(example_bin("http_get")), "--dns-servers",
                        "not an address", "http://good.test:1/"],
                       env=base_env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=slack(30))
    assert p.returncode == 2 and p.stderr.startswith("http_get: "), p


# ---- against real servers ---------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True])
def test_nginx_parallel_reuses_connections(nginx, pki, tls):
    n = nginx()
    g = ok(http_get("--tls-ca", pki.ca, "--parallel", 8, "--repeat", 200,
                    n.url("/big", tls=tls)))
    assert g.col("status") == [200] * 200, g
    for r in g.reqs:
        body_is(r, Nginx.BIG.encode())
    assert g.stats["conns_new"] <= 8, g
    assert g.stats["conns_reused"] >= 192, g
    assert g.stats["idle"] == g.stats["conns_new"], g


def test_nginx_keepalive_timeout_closes_idle(nginx):
    n = nginx(keepalive="200ms")
    g = ok(http_get("--repeat", 3, "--interval", 500, n.url()))
    assert g.col("retried") == [0, 0, 0] and g.col("reused") == [0, 0, 0], g
    assert g.stats["closed_peer"] >= 2 and g.stats["retries"] == 0, g


@pytest.mark.wall(240)
def test_churn_moor_serve_ten_thousand(moor):
    s = moor("--accept-rate", "0")
    g = http_get("--parallel", 8, "--repeat", 10000,
                 "--max-requests-per-conn", 10, s.url("/healthz"),
                 timeout=200)
    ok(g)
    assert set(g.col("status")) == {200}, g
    assert set(g.col("body")) == {"ok\n"}, g
    # 10 requests a connection; at most the 8 last ones end short.
    assert 1000 <= g.stats["conns_new"] <= 1008, g
    assert g.stats["closed_max_age"] >= 992, g
    assert g.stats["requests"] == 10000, g


@pytest.mark.wall(240)
def test_churn_nginx_tls(nginx, pki):
    n = nginx()
    g = ok(http_get("--tls-ca", pki.ca, "--parallel", 8, "--repeat", 2000,
                    "--max-requests-per-conn", 10, n.url(tls=True),
                    timeout=200))
    assert 200 <= g.stats["conns_new"] <= 208, g
    assert g.stats["closed_max_age"] >= 192, g
    assert set(g.col("body")) == {"ok\n"}, g
