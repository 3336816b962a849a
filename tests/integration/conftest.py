"""
Shared fixtures and helpers for the moor integration tests.

Every test runs against the real binary named by MOOR_BIN (default
build/release/moor, relative to the repository root), started on
127.0.0.1 port 0. The port is read from the start-up banner.

Helpers live here (tests import them with `from conftest import ...`):

- moor (fixture): a factory; moor(*args, env={...}) starts a server and
  returns a Server. Every server started by a test is killed on teardown.
- Server: .port, .admin_port (--admin-listen's, or None), .proc, .url(path),
  .metrics(), .metric(name, **labels), .stop(sig, timeout) -> (returncode,
  stderr), .stderr_text(), .alive()
- Conn: a raw-socket HTTP/1.x client with a timeout on every operation.

Every test is bounded: an autouse fixture arms SIGALRM (60 s by default,
@pytest.mark.wall(seconds) to change it), and every socket has a timeout.
"""

import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Tests open hundreds of sockets, and servers inherit this limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
HOST = "127.0.0.1"
BANNER_RE = re.compile(rb"http://127\.0\.0\.1:(\d+)")
# The banner's line for --admin-listen (printed before "Stop with").
ADMIN_BANNER_RE = re.compile(rb"http://127\.0\.0\.1:(\d+) +admin listener")
SOCK_TIMEOUT = 5.0


def moor_bin():
    p = Path(os.environ.get("MOOR_BIN", "build/release/moor"))
    if not p.is_absolute():
        p = REPO / p
    return p


def is_debug_build():
    """True for the sanitizer build (slower: timing slack is widened)."""
    if os.environ.get("MOOR_DEBUG_BUILD"):
        return os.environ["MOOR_DEBUG_BUILD"] not in ("0", "")
    return "debug" in moor_bin().parts


def example_bin(name):
    """build/<release|debug>/examples/NAME, the tree of the moor binary
    under test; fails the test if it was not built."""
    tree = "debug" if is_debug_build() else "release"
    exe = REPO / "build" / tree / "examples" / name
    if not exe.exists():
        pytest.fail(f"{exe} is missing: `make {tree}` builds examples/",
                    pytrace=False)
    return exe


def sanitizer_env(env):
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def base_env(extra=None):
    """The environment for a moor process: ours minus every MOOR_* setting
    (so a stray variable cannot change a test) plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MOOR_") or k in ("MOOR_BIN",)}
    sanitizer_env(env)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def run_moor(args, env=None, timeout=10):
    """Runs the binary to completion (CLI tests). Returns CompletedProcess
    with text stdout/stderr."""
    return subprocess.run([str(moor_bin())] + list(args), env=base_env(env),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


# ---- the wall clock limit --------------------------------------------------

class WallTimeout(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "wall(seconds): wall-clock limit for the test "
        "(default 60)")


@pytest.fixture(autouse=True)
def _wall_limit(request):
    m = request.node.get_closest_marker("wall")
    secs = int(m.args[0]) if m else 60

    def on_alarm(signum, frame):
        raise WallTimeout(f"test exceeded its wall limit of {secs} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(secs)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- metrics parsing -------------------------------------------------------

_LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
_SAMPLE_RE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def metric_key(name, labels=None):
    """Canonical key: name{k1="v1",k2="v2"} with labels sorted."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def parse_labels(text):
    labels = {}
    pos = 0
    inner = text[1:-1]
    while pos < len(inner):
        m = _LABEL_RE.match(inner, pos)
        if not m:
            raise ValueError(f"bad label set {text!r}")
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_metrics(text):
    """Prometheus text format -> {canonical key: float}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"unparsable metrics line {line!r}")
        labels = parse_labels(m.group(2)) if m.group(2) else None
        out[metric_key(m.group(1), labels)] = float(m.group(3))
    return out


class Metrics(dict):
    def get_value(self, name, **labels):
        return self.get(metric_key(name, labels), 0.0)

    def family(self, name):
        """{key: value} of every sample of one metric name."""
        return {k: v for k, v in self.items()
                if k == name or k.startswith(name + "{")}

    def sum(self, name):
        return sum(self.family(name).values())


# ---- a raw HTTP client -----------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (lower-case name, value)
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def closes(self):
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} {self.headers!r} " \
               f"body={self.body[:80]!r}>"


class Closed(Exception):
    """The peer closed (EOF or reset) before a complete response."""


class Conn:
    """One TCP connection with a receive buffer. Every operation is bounded
    by the socket timeout."""

    def __init__(self, port, timeout=SOCK_TIMEOUT, host=HOST, sock=None):
        self.port = port
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self._admin = None  # MOOR_TEST_AUTH mode: see request()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self._admin:
            self._admin.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if TEST_AUTH:
            data = auth_mode_raw(data)
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise Closed("eof")
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            raise Closed(f"reset: {e}")
        if not chunk:
            self.eof = True
            raise Closed("eof")
        self.buf += chunk

    def read_until(self, marker, limit=1 << 20):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError(f"no {marker!r} in {limit} bytes")
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self):
        while True:
            try:
                self._fill()
            except Closed:
                break
        out, self.buf = self.buf, b""
        return out

    def read_response(self, head=False):
        """Reads one response. head=True: the request was HEAD (no body).
        Raises Closed if the connection ends first."""
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise AssertionError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            assert sep, f"bad header line {line!r}"
            headers.append((k.strip().lower(), v.strip()))
        resp = Response(m.group(1), int(m.group(2)), m.group(3), headers, b"")
        status = resp.status
        if head or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                body += self.read_exact(size)
                self.read_exact(2)
            resp.body = body
        elif cl is not None:
            resp.body = self.read_exact(int(cl))
        else:
            resp.body = self.read_to_eof()
        return resp

    def request(self, method="GET", path="/healthz", headers=None,
                body=b"", version="HTTP/1.1"):
        if TEST_AUTH and self.port in _ADMIN_OF and \
                path.startswith(_OPERATOR_PATHS):
            # --auth leaves the operator's pages on the admin listener: a
            # keep-alive connection of its own, beside this one.
            if self._admin is None:
                self._admin = Conn(_ADMIN_OF[self.port], timeout=self.timeout)
            return self._admin.request(method, path, headers, body, version)
        self.send(build_request(method, path, headers, body, version))
        resp = self.read_response(head=(method == "HEAD"))
        while 100 <= resp.status < 200:
            resp = self.read_response(head=(method == "HEAD"))
        return resp

    def wait_closed(self, timeout):
        """Reads (discarding) until EOF or reset. Returns seconds it took,
        or None if the connection is still open after timeout."""
        t0 = time.monotonic()
        end = t0 + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0
            if not chunk:
                return time.monotonic() - t0
            self.buf += chunk

    def is_open(self, wait=0.0):
        """True if no EOF/reset arrives within wait seconds (data that
        arrives is kept in the buffer)."""
        return self.wait_closed(wait) is None


def build_request(method="GET", path="/healthz", headers=None, body=b"",
                  version="HTTP/1.1"):
    if isinstance(body, str):
        body = body.encode()
    hdrs = [("Host", "127.0.0.1")] if version == "HTTP/1.1" else []
    if headers:
        if isinstance(headers, dict):
            headers = list(headers.items())
        names = {k.lower() for k, _ in headers}
        if "host" in names:
            hdrs = []
        hdrs += headers
    hdrs += auth_mode_headers(hdrs)
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
    return head.encode("latin-1") + body


def raw_exchange(port, data, timeout=SOCK_TIMEOUT, head=False):
    """Opens a connection, sends data, reads one response. Returns
    (response, closed_after) where closed_after tells whether the server
    closed the connection within 3 s after the response."""
    with Conn(port, timeout=timeout) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = c.read_response(head=head)
        closed = c.wait_closed(3.0) is not None
        return resp, closed


# ---- the server ------------------------------------------------------------

# ---- MOOR_TEST_AUTH=1: the suites with --auth jwt ------------------------
# tests/run runs the pub/sub and WebSocket conformance suites a second time
# with MOOR_TEST_AUTH=1: every server started by the fixture gets --auth
# jwt with a secret made here, and every request built by build_request()
# or wsutil.handshake_request() carries a token granting every channel
# (unless it has an Authorization header of its own). The suites are
# unchanged: they must pass with auth on.

TEST_AUTH = os.environ.get("MOOR_TEST_AUTH", "") not in ("", "0")
_TEST_SECRET = b"moor-test-auth-secret-0123456789abcdef"
_test_token = None


def auth_mode_token():
    """The all-channels token of MOOR_TEST_AUTH mode (HS256, 1 hour)."""
    global _test_token
    if _test_token is None:
        import jwt
        _test_token = jwt.encode(
            {"sub": "suite", "exp": int(time.time()) + 3600,
             "channels": ["*"], "publish": ["*"]},
            _TEST_SECRET, algorithm="HS256")
    return _test_token


if TEST_AUTH:  # for clients in other processes (node)
    os.environ["MOOR_TEST_AUTH_TOKEN"] = auth_mode_token()


def auth_mode_headers(have):
    """[("Authorization", "Bearer ...")] in MOOR_TEST_AUTH mode unless
    have (pairs) holds one; [] otherwise."""
    if not TEST_AUTH or any(k.lower() == "authorization" for k, _ in have):
        return []
    return [("Authorization", f"Bearer {auth_mode_token()}")]


# Not anchored: a pipelined request follows the last one's body directly.
_REQUEST_LINE = re.compile(
    rb"(?:GET|POST|PUT|HEAD|DELETE|OPTIONS) /\S* HTTP/1\.[01]\r\n")
# Public port -> admin port of the servers started in MOOR_TEST_AUTH mode.
_ADMIN_OF = {}
_OPERATOR_PATHS = ("/metrics", "/debug/")


def auth_mode_raw(data):
    """Bytes written by hand (pipelined requests, chunked bodies): each
    request head in data without an Authorization field gets the mode's
    token after its request line."""
    out, pos = [], 0
    for m in _REQUEST_LINE.finditer(data):
        end = data.find(b"\r\n\r\n", m.end() - 2)
        head = data[m.start():end if end >= 0 else len(data)]
        if m.start() < pos or b"\nauthorization:" in head.lower():
            continue
        out += [data[pos:m.end()],
                f"Authorization: Bearer {auth_mode_token()}\r\n".encode()]
        pos = m.end()
    return b"".join(out) + data[pos:] if out else data


def auth_mode_args(workdir):
    """The flags of MOOR_TEST_AUTH mode ([] otherwise)."""
    if not TEST_AUTH:
        return []
    secret = Path(workdir) / "jwt-secret"
    secret.write_bytes(_TEST_SECRET)
    # /debug lives only on an admin listener once --auth is on.
    return ["--auth", "jwt", "--jwt-secret-file", str(secret),
            "--admin-listen", f"{HOST}:0"]


# Every test's clients come from 127.0.0.1, and many open thousands of
# connections at once: the per-address limits (--max-conns-per-ip 1000,
# --handshake-rate-per-ip 100/s by default) would refuse them. So servers
# start with limits no test reaches, set through the environment so that
# a flag given by a test wins. The table still runs (every accept and
# close goes through it); test_iplimit.py tests the limits and the
# defaults.
SUITE_IP_LIMITS = {
    "MOOR_MAX_CONNS_PER_IP": "10000000",
    "MOOR_HANDSHAKE_RATE_PER_IP": "10000000",
    "MOOR_HANDSHAKE_BURST_PER_IP": "10000000",
}


class Server:
    def __init__(self, args, env, workdir):
        self.args = list(args)
        self.workdir = Path(workdir)
        self.out_path = self.workdir / "stdout.txt"
        self.err_path = self.workdir / "stderr.txt"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        cmd = ([str(moor_bin()), "serve", "--listen", f"{HOST}:0"] +
               auth_mode_args(workdir) + self.args)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd,
                                     env=base_env({**SUITE_IP_LIMITS,
                                                   **(env or {})}),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err)
        self.port = None
        self.admin_port = None
        self.returncode = None
        self._wait_banner(10.0)

    def _wait_banner(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            data = self.out_path.read_bytes()
            m = BANNER_RE.search(data)
            admin = ADMIN_BANNER_RE.search(data)
            if m and (admin or not any(a.startswith("--admin-listen")
                                       for a in self.cmd)):
                self.port = int(m.group(1))
                self.admin_port = int(admin.group(1)) if admin else None
                if TEST_AUTH and self.admin_port:
                    _ADMIN_OF[self.port] = self.admin_port
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        rc = self.proc.poll()
        self.kill()
        raise AssertionError(
            f"no banner from {self.cmd} within {timeout} s (exit {rc})\n"
            f"stdout: {self.out_path.read_bytes()[-2000:]!r}\n"
            f"stderr: {self.err_path.read_bytes()[-4000:]!r}")

    def url(self, path="/"):
        return f"http://{HOST}:{self.port}{path}"

    def conn(self, timeout=SOCK_TIMEOUT):
        return Conn(self.port, timeout=timeout)

    def get(self, path="/healthz", method="GET", **kw):
        """One request on a fresh connection (in MOOR_TEST_AUTH mode the
        operator's pages are asked of the admin listener: Conn.request)."""
        with self.conn() as c:
            return c.request(method, path, **kw)

    def metrics_text(self):
        r = self.get("/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def metrics(self):
        return Metrics(parse_metrics(self.metrics_text()))

    def metric(self, name, **labels):
        return self.metrics().get_value(name, **labels)

    def debug_mem(self):
        r = self.get("/debug/mem")
        assert r.status == 200, r
        return json.loads(r.body)

    def wait_metric(self, pred, timeout=5.0, interval=0.05):
        """Polls /metrics until pred(metrics) is true; returns the last
        Metrics (the caller asserts on pred again for a clear message)."""
        end = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if pred(m) or time.monotonic() > end:
                return m
            time.sleep(interval)

    def alive(self):
        return self.proc.poll() is None

    def stdout_text(self):
        return self.out_path.read_bytes().decode(errors="replace")

    def stderr_text(self):
        return self.err_path.read_bytes().decode(errors="replace")

    def wait_log(self, needle, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.stderr_text():
                return True
            time.sleep(0.02)
        return needle in self.stderr_text()

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends sig and waits. Returns (returncode, stderr text). On
        timeout the process is killed and returncode is None."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.returncode = None
        return self.returncode, self.stderr_text()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def tail_of(text, n=30):
    return "\n".join(text.splitlines()[-n:])


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def assert_clean_exit(rc, err, what="server"):
    """Exit 0 and a last log line 'shutdown complete' with live_bytes=0."""
    tail = "\n".join(err.splitlines()[-30:])
    assert rc == 0, f"{what} exited {rc}; stderr tail:\n{tail}"
    last = last_line(err)
    assert 'msg="shutdown complete"' in last, \
        f"last stderr line is not shutdown complete: {last!r}\n{tail}"
    assert re.search(r"\blive_bytes=0\b", last), \
        f"live bytes not zero after shutdown: {last!r}\n{tail}"


def servers_of(cls, tmp_path, prefix="moor-"):
    """The body of a `moor` fixture for servers of class cls (Server, or a
    subclass that runs another program): yields the factory start(*args,
    env=None), then stops what the test left running and fails on a bad
    exit or a sanitizer report."""
    servers = []

    def start(*args, env=None):
        d = tempfile.mkdtemp(prefix=prefix, dir=tmp_path)
        s = cls(args, env, d)
        servers.append(s)
        return s

    yield start
    # Every server a test leaves running gets the graceful stop, so every
    # test also checks that shutdown is clean and that the sanitizers
    # found nothing.
    problems = []
    for s in servers:
        if s.alive():
            rc, err = s.stop(signal.SIGTERM, timeout=15)
            if rc != 0:
                problems.append(f"{s.cmd}: exit {rc} after SIGTERM at "
                                f"teardown\n{tail_of(err)}")
        s.kill()  # closes the log files
        err = s.stderr_text()
        for mark in SANITIZER_MARKS:
            if mark in err:
                problems.append(f"{s.cmd}: sanitizer report ({mark})\n"
                                f"{tail_of(err, 60)}")
                break
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def moor(tmp_path):
    """Factory: moor(*args, env=None) -> a started Server."""
    yield from servers_of(Server, tmp_path)


@pytest.fixture
def server(moor):
    """A server with default flags."""
    return moor()


def slack(t):
    """Extra seconds allowed for timing under the sanitizer build, and
    under MOOR_SLACK's factor when another suite runs beside this one
    (tests/run runs the release and debug suites at once)."""
    extra = float(os.environ.get("MOOR_SLACK") or 1.0)
    return t * (2.0 if is_debug_build() else 1.0) * extra


def read_pipe_until(proc, buf, pred, timeout, what):
    """Reads proc.stdout (a pipe, e.g. curl's) into buf until pred(buf);
    fails the test if it takes longer than timeout (scaled by slack) or
    the process ends first."""
    fd = proc.stdout.fileno()
    end = time.monotonic() + slack(timeout)
    while not pred(buf):
        left = end - time.monotonic()
        assert left > 0, f"timed out waiting for {what}; got {bytes(buf)!r}"
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            assert chunk, f"process ended ({proc.poll()}) before {what}; " \
                          f"it wrote {bytes(buf)!r}"
            buf += chunk
    return buf


NODE_DIR = Path(__file__).resolve().parent / "node"
DEPS_HINT = "run `make deps` (scripts/install-deps.sh)"


def node_bin():
    """node, with the `ws` package of tests/integration/node installed;
    the test fails (it is not skipped) without them."""
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.fail(f"node is not installed: {DEPS_HINT} (Debian packages "
                    f"nodejs and npm)", pytrace=False)
    r = subprocess.run([node, "-e", "require.resolve('ws')"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.fail(f"node module ws is missing in {NODE_DIR}: {DEPS_HINT} "
                    f"(npm ci --prefix tests/integration/node)\n{r.stderr}",
                    pytrace=False)
    return node


def need_curl():
    """curl; the test fails (it is not skipped) without it."""
    curl = shutil.which("curl")
    if not curl:
        pytest.fail(f"curl is not installed: {DEPS_HINT}", pytrace=False)
    return curl
