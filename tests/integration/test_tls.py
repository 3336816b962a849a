"""TLS: `moor serve --tls-listen` and `moor bench` over wss://.

A session fixture makes a PKI with the openssl CLI: a P-256 root CA, an
intermediate, two server leaves for localhost and 127.0.0.1 signed by the
intermediate (served as chain files, leaf then intermediate), an
unrelated self-signed certificate for other.example, and a key that
matches nothing.

- the TLS listener serves the plain listener's routes: wss echo with
  Python `websockets` (text and binary, up to 1 MiB: many records) and
  with node's `ws` (its `ca` option); HTTPS with curl (ALPN http/1.1,
  /healthz, /metrics, /debug/*), SSE over TLS with curl -N, POST /pub
  and a wss publisher reaching TLS subscribers.
- ALPN and SNI; --tls-min-version 1.3 refuses a TLS 1.2 client (counted
  as failed), the default takes 1.2 and 1.3.
- --handshake-timeout closes a client that sends nothing, half a
  ClientHello, or a ClientHello and then nothing.
- 2,000 TLS connections: the tls memory tag per connection while they
  are open, and back to exactly its baseline once they are gone.
- renegotiation is refused and costs nothing afterwards; plain HTTP on
  the TLS port gets a plaintext 400.
- a slow reader's TLS writes are retried with the same bytes; under
  --slow-policy drop-oldest a wss subscriber that stops reading still
  gets an intact stream (the half-sent record's messages are never
  dropped).
- SIGHUP reloads the certificate (open connections carry on, new ones
  get the new certificate); a reload that fails keeps the old one.
- `moor bench echo` over wss://: --tls-ca, the system store (fails),
  --insecure, host name mismatch.
- SIGTERM with TLS connections open exits cleanly; start-up errors.
"""

import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (HOST, Closed, Conn, Metrics, assert_clean_exit,
                      parse_metrics, read_pipe_until, run_moor, slack)
from conftest import NODE_DIR, example_bin, node_bin, need_curl
from wsutil import OP_BINARY, OP_TEXT, WsConn

HTTPS_BANNER_RE = re.compile(rb"https://127\.0\.0\.1:(\d+)")
KiB = 1 << 10
MiB = 1 << 20


# ---- certificates ----------------------------------------------------------

def openssl(*args, cwd=None, timeout=30):
    exe = shutil.which("openssl")
    if not exe:
        pytest.fail("the openssl command is not installed", pytrace=False)
    r = subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"openssl {' '.join(map(str, args))}:\n" \
                              f"{r.stderr}"
    return r.stdout


LEAF_EXT = ("basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n")


class Certs:
    """Paths of the test PKI; .der(name) is the DER of NAME.pem."""

    def __init__(self, d):
        self.dir = d
        self.ca = d / "ca.pem"
        self.chain = d / "leaf-chain.pem"      # leaf + intermediate
        self.key = d / "leaf.key"
        self.chain2 = d / "leaf2-chain.pem"    # for reload: another leaf
        self.key2 = d / "leaf2.key"            # and its own key
        self.other = d / "other.pem"           # self-signed, other.example
        self.other_key = d / "other.key"
        self.wrong_key = d / "wrong.key"       # matches no certificate

    def der(self, name):
        return ssl.PEM_cert_to_DER_cert((self.dir / f"{name}.pem").read_text())


def make_cert(d, name, subj, serial, ext, signer=None):
    key = f"{name}.key"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-out", key, cwd=d)
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-new", "-key", key, "-subj", subj, "-out", f"{name}.csr",
            cwd=d)
    if signer is None:
        sign = ["-signkey", key]
    else:
        sign = ["-CA", f"{signer}.pem", "-CAkey", f"{signer}.key"]
    openssl("x509", "-req", "-in", f"{name}.csr", *sign, "-set_serial",
            serial, "-days", "3650", "-sha256", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem", cwd=d)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_cert(d, "ca", "/CN=moor test root CA", 1,
              "basicConstraints=critical,CA:TRUE\n"
              "keyUsage=critical,keyCertSign,cRLSign\n"
              "subjectKeyIdentifier=hash\n")
    make_cert(d, "int", "/CN=moor test intermediate CA", 2,
              "basicConstraints=critical,CA:TRUE,pathlen:0\n"
              "keyUsage=critical,keyCertSign,cRLSign\n"
              "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
              signer="ca")
    make_cert(d, "leaf", "/CN=localhost/O=moor test leaf one", 0x1001,
              LEAF_EXT, signer="int")
    make_cert(d, "leaf2", "/CN=localhost/O=moor test leaf two", 0x2002,
              LEAF_EXT, signer="int")
    make_cert(d, "other", "/CN=other.example", 0x3003,
              "basicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\n"
              "subjectAltName=DNS:other.example\n")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-out", "wrong.key", cwd=d)
    inter = (d / "int.pem").read_text()
    for n in ("leaf", "leaf2"):
        (d / f"{n}-chain.pem").write_text((d / f"{n}.pem").read_text() +
                                          inter)
    c = Certs(d)
    # The PKI itself is right: both leaves verify through the
    # intermediate, and the leaf alone does not (so the chain file matters).
    openssl("verify", "-CAfile", c.ca, "-untrusted", d / "int.pem",
            d / "leaf.pem", d / "leaf2.pem")
    r = subprocess.run(["openssl", "verify", "-CAfile", c.ca,
                        d / "leaf.pem"], capture_output=True, text=True)
    assert r.returncode != 0, r.stdout
    return c


# ---- servers and clients ---------------------------------------------------

def start_tls(moor, certs, *args, cert=None, key=None, env=None):
    """A server with --tls-listen on a free port; .tls_port is set."""
    s = moor("--tls-listen", f"{HOST}:0",
             "--tls-cert", str(cert or certs.chain),
             "--tls-key", str(key or certs.key), *args, env=env)
    m = HTTPS_BANNER_RE.search(s.out_path.read_bytes())
    assert m, f"no https:// line in the banner:\n{s.stdout_text()}"
    s.tls_port = int(m.group(1))
    assert s.tls_port != s.port
    return s


def client_ctx(cafile, min_version=None, max_version=None, alpn=None,
               check_hostname=True):
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = check_hostname
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_sock(port, ctx, host="localhost", timeout=5.0):
    """A TCP connection to the TLS port, handshake done (raises on a failed
    handshake)."""
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


def tls_conn(port, ctx, host="localhost", timeout=5.0):
    """conftest's raw HTTP client over TLS."""
    return Conn(port, timeout=timeout, sock=tls_sock(port, ctx, host,
                                                     timeout))


def tls_get(s, certs, path="/healthz", **kw):
    with tls_conn(s.tls_port, client_ctx(certs.ca)) as c:
        return c.request("GET", path, **kw)


def ws_tls(port, ctx, path="/echo", host="localhost"):
    """wsutil's raw WebSocket client over TLS, upgraded (101 checked)."""
    c = WsConn(port)
    try:
        c.sock = ctx.wrap_socket(c.sock, server_hostname=host)
        c.open(path)
    except BaseException:
        c.close()
        raise
    return c


def ws_echo(c, opcode, payload):
    if opcode == OP_TEXT:
        c.send_text(payload)
    else:
        c.send_binary(payload)
    got = c.recv_message(timeout=10)
    assert got == (opcode, payload), \
        f"echo of {len(payload)} bytes came back as {got[0]} with " \
        f"{len(got[1])} bytes"


def peer_der(port, certs):
    with tls_sock(port, client_ctx(certs.ca)) as t:
        return t.getpeercert(binary_form=True)


def client_hello():
    """The bytes of a real ClientHello (Python's, TLS 1.2-1.3)."""
    ctx = ssl.create_default_context()
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outb.read()
    assert hello[0] == 0x16 and len(hello) > 100, hello[:16]
    return hello


# ---- metrics ---------------------------------------------------------------

def handshakes(m, result):
    return m.get_value("moor_tls_handshakes_total", result=result)


def reloads(m, result):
    return m.get_value("moor_tls_reloads_total", result=result)


def closed(m, reason):
    return m.get_value("moor_closed_total", reason=reason)


def tls_bytes(m):
    return m.get_value("moor_mem_live_bytes", tag="tls")


def wait_for(s, what, pred, timeout=5.0):
    """Polls /metrics until pred(m); fails with what and the TLS figures."""
    m = s.wait_metric(pred, timeout=slack(timeout))
    assert pred(m), f"{what}: not so after {slack(timeout)} s; " \
                    f"{tls_figures(m)}"
    return m


def tls_figures(m):
    keys = [k for k in m if k.startswith(("moor_tls_", "moor_closed_total"))
            or k == 'moor_mem_live_bytes{tag="tls"}']
    return {k: m[k] for k in keys if m[k]}


def settled_tls_bytes(s, timeout=5.0):
    """The tls tag once no TLS connection is open and two readings 100 ms
    apart agree (a close frees its memory at the end of a loop turn)."""
    m = wait_for(s, "no TLS connection open",
                 lambda m: m.get_value("moor_tls_connections") == 0, timeout)
    last = tls_bytes(m)
    end = time.monotonic() + slack(timeout)
    while time.monotonic() < end:
        time.sleep(0.1)
        now = tls_bytes(s.metrics())
        if now == last:
            return now
        last = now
    raise AssertionError(f"tls bytes never settled (last {last})")


def wait_tls_bytes(s, want, timeout=5.0):
    m = s.wait_metric(lambda m: tls_bytes(m) == want
                      and m.get_value("moor_tls_connections") == 0,
                      timeout=slack(timeout))
    got = tls_bytes(m)
    assert got == want, \
        f"tls live bytes {got:.0f}, baseline {want:.0f} " \
        f"({got - want:+.0f}); {tls_figures(m)}"


# ---- the listener serves every route ---------------------------------------

def test_banner_and_routes_over_https(moor, certs):
    s = start_tls(moor, certs)
    out = s.stdout_text()
    line = next(l for l in out.splitlines() if "https://" in l)
    assert "--tls-listen" in line, out
    # The https:// line comes after the plain listener's routes, before
    # the closing line.
    assert out.index("serving http://") < out.index("https://") < \
        out.index("Stop with"), out
    for path in ("/healthz", "/metrics", "/debug/mem", "/debug/conns"):
        r = tls_get(s, certs, path)
        assert r.status == 200, (path, r)
    assert tls_get(s, certs).body == b"ok\n"
    assert "tls" in json.loads(tls_get(s, certs, "/debug/mem").body)["tags"]
    # Several requests on one keep-alive TLS connection.
    with tls_conn(s.tls_port, client_ctx(certs.ca)) as c:
        for _ in range(5):
            r = c.request("GET", "/healthz")
            assert (r.status, r.body) == (200, b"ok\n"), r
        m = s.metrics()
        assert m.get_value("moor_tls_connections") == 1, tls_figures(m)
    # The plain listener is unchanged.
    assert s.get("/healthz").body == b"ok\n"
    m = wait_for(s, "TLS connections closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") == 7, tls_figures(m)
    assert handshakes(m, "failed") == 0, tls_figures(m)


def test_wss_echo_websockets(moor, certs):
    import websockets

    s = start_tls(moor, certs)
    ctx = client_ctx(certs.ca)
    sizes = [0, 1, 125, 126, 16383, 16384, 16385, 65535, 65536, 300000, MiB]
    seen = {}

    async def run():
        url = f"wss://127.0.0.1:{s.tls_port}/echo"   # IP SAN checked
        async with websockets.connect(url, ssl=ctx, max_size=None,
                                      compression=None,
                                      open_timeout=10) as ws:
            for n in sizes:
                blob = bytes((i * 7 + n) & 0xff for i in range(n))
                await ws.send(blob)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(got, bytes) and got == blob, \
                    f"binary echo of {n} bytes: {len(got)} back"
                text = ("κόσμε €" * (n // 11 + 1)).encode()[:n].decode(
                    errors="ignore")
                await ws.send(text)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(got, str) and got == text, \
                    f"text echo of {len(text)} chars: {len(got)} back"
            # Twenty 100 KiB messages in flight at once.
            blobs = [os.urandom(100 * KiB) for _ in range(20)]
            for b in blobs:
                await ws.send(b)
            for i, b in enumerate(blobs):
                got = await asyncio.wait_for(ws.recv(), 10)
                assert got == b, f"pipelined echo {i} differs"
            tls = ws.transport.get_extra_info("ssl_object")
            seen["version"] = tls.version()
            seen["open"] = s.metric("moor_tls_connections")
        # The close handshake completed: websockets saw 1000 back.
        seen["close"] = ws.close_code

    asyncio.run(asyncio.wait_for(run(), slack(40)))
    assert seen["version"] == "TLSv1.3", seen
    assert seen["open"] == 1, seen
    assert seen["close"] == 1000, seen
    m = wait_for(s, "the wss connection closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") == 1, tls_figures(m)
    assert closed(m, "tls_error") == 0, tls_figures(m)


def test_wss_echo_node_ws(moor, certs):
    s = start_tls(moor, certs)
    node = node_bin()
    url = f"wss://127.0.0.1:{s.tls_port}/echo"
    r = subprocess.run([node, str(NODE_DIR / "wss_echo_client.js"), url,
                        str(certs.ca)], cwd=NODE_DIR, capture_output=True,
                       text=True, timeout=slack(40))
    assert r.returncode == 0, f"node: {r.stderr}\n{r.stdout}"
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["ok"] and d["close"] == 1000 and d["messages"] == 18, d
    assert d["protocol"] == "TLSv1.3" and d["authorized"], d
    assert d["subject"] == "moor test leaf one" and d["serial"] == "1001", d
    # The `ca` option is what makes it trust the server: another CA fails.
    r = subprocess.run([node, str(NODE_DIR / "wss_echo_client.js"), url,
                        str(certs.other)], cwd=NODE_DIR, capture_output=True,
                       text=True, timeout=slack(40))
    assert r.returncode == 1, r.stdout
    assert "certificate" in r.stderr, r.stderr
    m = wait_for(s, "node's connections closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") == 1, tls_figures(m)
    assert handshakes(m, "failed") == 1, tls_figures(m)


# ---- curl: HTTPS, ALPN, SSE ------------------------------------------------

def test_https_with_curl(moor, certs):
    curl = need_curl()
    s = start_tls(moor, certs)
    base = ["--max-time", "10", "-sS", "--cacert", str(certs.ca)]
    r = subprocess.run([curl, *base,
                        f"https://127.0.0.1:{s.tls_port}/healthz"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    # By name (DNS SAN), HTTP/1.1 asked for: ALPN picked http/1.1.
    r = subprocess.run([curl, *base, "-v", "--http1.1", "--resolve",
                        f"localhost:{s.tls_port}:127.0.0.1",
                        f"https://localhost:{s.tls_port}/healthz"],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr, r.stderr
    assert "SSL certificate verify ok" in r.stderr, r.stderr
    # curl's default offers h2 first; the server still picks http/1.1.
    r = subprocess.run([curl, *base, "-v",
                        f"https://127.0.0.1:{s.tls_port}/metrics"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr, r.stderr
    assert "moor_tls_handshakes_total" in r.stdout, r.stdout[:2000]
    # Without the CA, curl refuses the server (exit 60: peer certificate).
    r = subprocess.run([curl, "--max-time", "10", "-sS",
                        f"https://127.0.0.1:{s.tls_port}/healthz"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 60, (r.returncode, r.stderr)


def test_alpn_and_sni(moor, certs):
    s = start_tls(moor, certs)
    cases = [(["h2", "http/1.1"], "http/1.1"), (["http/1.1"], "http/1.1"),
             (None, None)]
    for offer, want in cases:
        with tls_conn(s.tls_port, client_ctx(certs.ca, alpn=offer)) as c:
            assert c.sock.selected_alpn_protocol() == want, offer
            assert c.request("GET", "/healthz").body == b"ok\n"
    # Any SNI name is accepted (one certificate for all).
    ctx = client_ctx(certs.ca, check_hostname=False)
    for name in ("anything.example", "localhost", "x" * 60 + ".test"):
        with tls_conn(s.tls_port, ctx, host=name) as c:
            assert c.request("GET", "/healthz").status == 200, name
    # ALPN offered without http/1.1: no_application_protocol (RFC 7301).
    with pytest.raises(ssl.SSLError, match="(?i)no.application.protocol"):
        tls_sock(s.tls_port, client_ctx(certs.ca, alpn=["h2"])).close()
    m = wait_for(s, "one handshake failed",
                 lambda m: handshakes(m, "failed") == 1)
    assert handshakes(m, "ok") == 6, tls_figures(m)


def test_sse_and_pubsub_over_tls(moor, certs):
    curl = need_curl()
    s = start_tls(moor, certs, "--sse-retry", "1500ms")
    ctx = client_ctx(certs.ca)
    sub = subprocess.Popen(
        [curl, "-sS", "-N", "-i", "--max-time", "30", "--cacert",
         str(certs.ca), "-H", "Accept: text/event-stream",
         f"https://127.0.0.1:{s.tls_port}/sub/x"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wsub = None
    try:
        buf = read_pipe_until(sub, bytearray(),
                            lambda b: b"retry: 1500\n\n" in b, 5.0,
                            "the event stream's head")
        assert bytes(buf).startswith(b"HTTP/1.1 200"), buf
        assert b"Content-Type: text/event-stream" in buf, buf
        wsub = ws_tls(s.tls_port, ctx, "/sub/x")
        wait_for(s, "two subscribers",
                 lambda m: m.get_value("moor_pubsub_subscribers") == 2)

        # POST /pub over TLS: 202 and both subscribers reached.
        with tls_conn(s.tls_port, ctx) as c:
            r = c.request("POST", "/pub/x", body=b"over tls")
        assert r.status == 202, r
        assert r.body == b'{"subscribers":2}\n', r
        buf = read_pipe_until(sub, buf, lambda b: b"data: over tls\n" in b,
                            5.0, "the first event")
        assert wsub.recv_message(timeout=5) == (OP_TEXT, b"over tls")

        # A wss publisher reaches both too.
        with ws_tls(s.tls_port, ctx, "/pub/x") as pub:
            pub.send_text("from wss")
            read_pipe_until(sub, buf, lambda b: b"data: from wss\n" in b, 5.0,
                          "the second event")
            assert wsub.recv_message(timeout=5) == (OP_TEXT, b"from wss")
        assert s.metric("moor_tls_connections") >= 2
    finally:
        if wsub:
            wsub.close()
        sub.kill()
        sub.wait(timeout=10)
    wait_for(s, "every TLS connection closed",
             lambda m: m.get_value("moor_tls_connections") == 0)


# ---- framed TCP over TLS (--tcp-tls) ---------------------------------------

TCP_BANNER_RE = re.compile(rb"tcp://127\.0\.0\.1:(\d+)\S* .*over TLS")


def tcp_frame(payload):
    return struct.pack("!I", len(payload)) + payload


def tls_recv_frame(sk, timeout=5.0):
    """One length-prefixed frame from a TLS socket."""
    sk.settimeout(timeout)
    buf = b""
    while len(buf) < 4:
        chunk = sk.recv(4 - len(buf))
        assert chunk, "closed before a frame header"
        buf += chunk
    (n,) = struct.unpack("!I", buf)
    body = b""
    while len(body) < n:
        chunk = sk.recv(n - len(body))
        assert chunk, "closed inside a frame"
        body += chunk
    return body


def test_tcp_frames_over_tls(moor, certs):
    """--tcp-tls: the framed TCP listener speaks TLS with the same
    certificate; a subscriber there gets what a POST publishes, a TLS
    publisher there reaches it too, a plaintext client is not served, and
    a silent one is closed at --handshake-timeout and counted."""
    s = moor("--tcp-listen", f"{HOST}:0", "--tcp-tls",
             "--tls-cert", str(certs.chain), "--tls-key", str(certs.key),
             "--handshake-timeout", "500ms")
    m = TCP_BANNER_RE.search(s.out_path.read_bytes())
    assert m, f"no tcp:// ... over TLS line in the banner:\n{s.stdout_text()}"
    port = int(m.group(1))
    ctx = client_ctx(certs.ca)
    sub = tls_sock(port, ctx)
    pub = None
    try:
        sub.sendall(tcp_frame(b"SUB news"))
        wait_for(s, "the TLS subscriber",
                 lambda m: m.get_value("moor_pubsub_subscribers") == 1)
        r = s.get("/pub/news", method="POST", body=b"hello over tls")
        assert r.status == 202 and r.body == b'{"subscribers":1}\n', r
        assert tls_recv_frame(sub) == b"hello over tls"
        pub = tls_sock(port, ctx)
        pub.sendall(tcp_frame(b"PUB news") + tcp_frame(b"from a tls pub"))
        assert tls_recv_frame(sub) == b"from a tls pub"
    finally:
        sub.close()
        if pub:
            pub.close()
    # Plaintext frames on the TLS port: no subscription, the conn closed.
    raw = socket.create_connection((HOST, port), timeout=5)
    try:
        raw.sendall(tcp_frame(b"SUB news"))
        raw.settimeout(slack(3))
        try:
            while raw.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        raw.close()
    # Plain HTTP on the TCP TLS port: counted as plaintext and closed
    # without an HTTP answer (that one belongs to --tls-listen).
    raw = socket.create_connection((HOST, port), timeout=slack(5))
    try:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    finally:
        raw.close()
    assert got == b"", got
    # A silent client: closed at the handshake timeout.
    t0 = time.monotonic()
    silent = socket.create_connection((HOST, port), timeout=slack(5))
    try:
        assert silent.recv(1) == b""
    except ConnectionResetError:
        pass
    finally:
        silent.close()
    took = time.monotonic() - t0
    assert 0.4 <= took <= slack(3), took
    m = wait_for(s, "the TLS conns on the TCP port closed",
                 lambda m: m.get_value("moor_tls_connections") == 0
                 and handshakes(m, "timeout") >= 1)
    assert handshakes(m, "ok") == 2, tls_figures(m)
    assert handshakes(m, "failed") >= 1, tls_figures(m)
    assert handshakes(m, "plaintext") == 1, tls_figures(m)
    assert m.get_value("moor_pubsub_subscribers") == 0


# ---- versions --------------------------------------------------------------

def test_default_accepts_tls12_and_tls13(moor, certs):
    s = start_tls(moor, certs)
    for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                    (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        ctx = client_ctx(certs.ca, min_version=v, max_version=v)
        with tls_conn(s.tls_port, ctx) as c:
            assert c.sock.version() == name
            cipher = c.sock.cipher()[0]
            # Forward secrecy and AEAD only (docs/tls.md).
            assert "GCM" in cipher or "CHACHA20" in cipher, cipher
            if name == "TLSv1.2":
                assert cipher.startswith("ECDHE-"), cipher
            assert c.request("GET", "/healthz").body == b"ok\n"
    m = wait_for(s, "two handshakes",
                 lambda m: handshakes(m, "ok") == 2)
    assert handshakes(m, "failed") == 0, tls_figures(m)


def test_min_version_13_refuses_tls12(moor, certs):
    s = start_tls(moor, certs, "--tls-min-version", "1.3")
    ctx12 = client_ctx(certs.ca, max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        tls_sock(s.tls_port, ctx12).close()
    m = wait_for(s, "the TLS 1.2 handshake counted as failed",
                 lambda m: handshakes(m, "failed") == 1)
    assert handshakes(m, "ok") == 0, tls_figures(m)
    m = wait_for(s, "closed as tls_error",
                 lambda m: closed(m, "tls_error") == 1)
    ctx13 = client_ctx(certs.ca, min_version=ssl.TLSVersion.TLSv1_3)
    with tls_conn(s.tls_port, ctx13) as c:
        assert c.sock.version() == "TLSv1.3"
        assert c.request("GET", "/healthz").body == b"ok\n"
    m = wait_for(s, "the TLS 1.3 handshake", lambda m: handshakes(m, "ok")
                 == 1 and m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "failed") == 1, tls_figures(m)


# ---- handshake deadline ----------------------------------------------------

def test_cipher_suite_preference(moor, certs):
    """TLS 1.3: ChaCha20-Poly1305 by default (the smallest state per
    connection), whatever order the client offers; --tls-ciphersuites
    changes it. TLS 1.2 follows --tls-ciphers."""
    s = start_tls(moor, certs)
    with tls_sock(s.tls_port, client_ctx(certs.ca)) as t:
        assert t.version() == "TLSv1.3"
        assert t.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256", t.cipher()
    s2 = start_tls(moor, certs, "--tls-ciphersuites", "TLS_AES_256_GCM_SHA384",
                   "--tls-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384:"
                   "ECDHE-RSA-AES256-GCM-SHA384")
    with tls_sock(s2.tls_port, client_ctx(certs.ca)) as t:
        assert t.cipher()[0] == "TLS_AES_256_GCM_SHA384", t.cipher()
    ctx = client_ctx(certs.ca, max_version=ssl.TLSVersion.TLSv1_2)
    with tls_sock(s2.tls_port, ctx) as t:
        assert t.version() == "TLSv1.2"
        assert "AES256-GCM-SHA384" in t.cipher()[0], t.cipher()


def test_stalled_handshakes_time_out(moor, certs):
    s = start_tls(moor, certs, "--handshake-timeout", "500ms")
    # One good handshake first: OpenSSL's first-use state is in the
    # baseline, not in what the stalled ones are charged.
    assert tls_get(s, certs).status == 200
    base = settled_tls_bytes(s)

    hello = client_hello()
    socks = {}
    t0 = {}
    for name, data in (("silent", b""), ("half hello", hello[:50]),
                       ("whole hello", hello)):
        sk = socket.create_connection((HOST, s.tls_port), timeout=5)
        t0[name] = time.monotonic()
        if data:
            sk.sendall(data)
        socks[name] = sk
    took = {}
    end = time.monotonic() + slack(4)
    try:
        while len(took) < len(socks) and time.monotonic() < end:
            live = [sk for n, sk in socks.items() if n not in took]
            r, _, _ = select.select(live, [], [], 0.05)
            for sk in r:
                name = next(n for n, x in socks.items() if x is sk)
                try:
                    chunk = sk.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    chunk = b""
                if not chunk:
                    took[name] = time.monotonic() - t0[name]
                # else: the server's first flight (ServerHello...) to the
                # whole hello; keep waiting for the close.
    finally:
        for sk in socks.values():
            sk.close()
    assert set(took) == set(socks), \
        f"still open after {slack(4)} s: {set(socks) - set(took)} " \
        f"(closed: {took})"
    for name, t in took.items():
        assert 0.4 <= t <= slack(3), f"{name} closed after {t:.2f} s"
    m = wait_for(s, "three handshake timeouts",
                 lambda m: handshakes(m, "timeout") == 3)
    assert closed(m, "handshake_timeout") == 3, tls_figures(m)
    assert handshakes(m, "ok") == 1, tls_figures(m)
    assert handshakes(m, "failed") == 0, tls_figures(m)
    wait_tls_bytes(s, base)


def test_deadline_after_handshake_is_the_header_timeout(moor, certs):
    """Once the handshake is done its deadline is gone: a client that then
    sends nothing is closed by --header-timeout, as on the plain port."""
    s = start_tls(moor, certs, "--handshake-timeout", "5s",
                  "--header-timeout", "500ms")
    t0 = time.monotonic()
    with tls_conn(s.tls_port, client_ctx(certs.ca)) as c:
        try:
            c._fill()
            got = c.buf
        except Closed:
            got = None
        took = time.monotonic() - t0
    assert got is None or got.startswith(b"HTTP/1.1 408"), got
    assert 0.4 <= took <= slack(3), f"closed after {took:.2f} s"
    m = wait_for(s, "closed as header_timeout",
                 lambda m: closed(m, "header_timeout") == 1)
    assert handshakes(m, "ok") == 1, tls_figures(m)
    assert handshakes(m, "timeout") == 0, tls_figures(m)
    assert closed(m, "handshake_timeout") == 0, tls_figures(m)


def test_garbage_is_a_tls_error(moor, certs):
    """Bytes that are not TLS: instead of a ClientHello (a handshake
    failure), and inside an established session (a bad record). Each is
    closed at once, counted, and costs nothing afterwards."""
    s = start_tls(moor, certs)
    assert tls_get(s, certs).status == 200
    base = settled_tls_bytes(s)

    def closes_soon(sk, data):
        sk.settimeout(slack(3))
        sk.sendall(data)
        t0 = time.monotonic()
        try:
            while sk.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            raise AssertionError(f"still open {slack(3)} s after "
                                 f"{data[:8]!r}...")
        return time.monotonic() - t0

    hello = client_hello()
    # A handshake record full of junk; a binary first byte that is no
    # record type; a ClientHello whose body was tampered with.
    bad_hellos = [b"\x16\x03\x01\x00\x40" + bytes(range(64)),
                  b"\x00" * 64,
                  hello[:9] + b"\xff" * (len(hello) - 9)]
    for data in bad_hellos:
        with socket.create_connection((HOST, s.tls_port), timeout=5) as sk:
            assert closes_soon(sk, data) < slack(2)
    # After a good handshake: a record that fails authentication, written
    # on a second descriptor of the same socket.
    t = tls_sock(s.tls_port, client_ctx(certs.ca))
    with t, socket.socket(fileno=os.dup(t.fileno())) as raw:
        rec = b"\x17\x03\x03\x00\x40" + os.urandom(64)
        assert closes_soon(raw, rec) < slack(2)
    m = wait_for(s, "three failed handshakes",
                 lambda m: handshakes(m, "failed") == 3)
    assert handshakes(m, "ok") == 2, tls_figures(m)
    assert handshakes(m, "plaintext") == 0, tls_figures(m)
    m = wait_for(s, "four tls_error closes",
                 lambda m: closed(m, "tls_error") == 4)
    wait_tls_bytes(s, base)
    assert tls_get(s, certs).body == b"ok\n"


def test_wss_echo_to_a_slow_reader(moor, certs):
    """Echoes larger than the socket buffers to a client that reads late
    and slowly: the server's TLS writes come back short and are retried
    with the same bytes, so every byte arrives, in order."""
    s = start_tls(moor, certs)
    c = WsConn(s.tls_port, rcvbuf=8192)
    try:
        c.sock = client_ctx(certs.ca).wrap_socket(c.sock,
                                                  server_hostname="localhost")
        c.open("/echo")
        blobs = [os.urandom(n) for n in (300 * KiB, 17 * KiB, 700 * KiB, 1)]
        for b in blobs:
            c.send_binary(b)
        time.sleep(0.5)             # the server is stuck mid-record now
        for i, b in enumerate(blobs):
            got = c.recv_message(timeout=slack(10))
            assert got == (OP_BINARY, b), \
                f"echo {i} of {len(b)} bytes: {len(got[1])} bytes back"
        ws_echo(c, OP_TEXT, b"and then")
    finally:
        c.close()
    m = wait_for(s, "closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert closed(m, "tls_error") == 0, tls_figures(m)


def test_wss_drop_oldest_keeps_the_half_sent_record(moor, certs):
    """A wss subscriber that stops reading, under drop-oldest: the server's
    TLS writes stop mid-record while publishes keep coming and drop its
    oldest queued messages. The ones that record holds are never among
    them (OpenSSL wants the same bytes offered again), so when the
    subscriber reads at last it gets an intact stream: every message whole
    and in order, notices that add up to what it missed, no tls_error."""
    size, n = 2000, 3000    # 6 MB: more than the socket buffers take
    filler = os.urandom(size)

    def payload(i):
        return struct.pack("!I", i) + filler[:size - 4]

    s = start_tls(moor, certs, "--queue-limit", "64KiB", "--slow-policy",
                  "drop-oldest", "--queue-soft-limit", "0", "--rate", "0")
    sub = WsConn(s.tls_port, rcvbuf=4096)
    pub = WsConn(s.port)
    try:
        sub.sock = client_ctx(certs.ca).wrap_socket(
            sub.sock, server_hostname="localhost")
        sub.open("/sub/slow")
        wait_for(s, "one subscriber",
                 lambda m: m.get_value("moor_pubsub_subscribers") == 1)
        pub.open("/pub/slow")
        for i in range(n):
            pub.send_binary(payload(i))
            if i % 200 == 199:
                time.sleep(0.02)    # bursts: the writes stop between them
        m = wait_for(s, "every message published", lambda m: m.get_value(
            "moor_pubsub_published_total") == n)
        assert m.get_value("moor_pubsub_dropped_total",
                           reason="drop_oldest") > 0, "nothing was dropped"
        seqs, notices = [], []

        def take(timeout):
            op, data = sub.recv_message(timeout=timeout)
            if op == OP_TEXT:
                mm = re.fullmatch(rb'\{"moor_dropped":(\d+)\}', data)
                assert mm, f"unexpected text message {data[:80]!r}"
                notices.append(int(mm.group(1)))
                return
            assert op == OP_BINARY and len(data) == size, (op, len(data))
            seq = struct.unpack("!I", data[:4])[0]
            assert data == payload(seq), f"message {seq} corrupted"
            assert not seqs or seq > seqs[-1], f"{seq} after {seqs[-1]}"
            seqs.append(seq)

        # Read what is queued, then one more message: a drop not yet told
        # is told before it.
        while s.metric("moor_queued_bytes") > 0 or sub.readable_within(0.3):
            take(slack(5))
        pub.send_binary(payload(n))
        while not seqs or seqs[-1] != n:
            take(slack(5))
    finally:
        sub.close()
        pub.close()
    missing = n + 1 - len(seqs)
    assert missing > 0 and notices, (missing, notices)
    assert sum(notices) == missing, \
        f"notices {notices} add up to {sum(notices)}, {missing} missing"
    m = wait_for(s, "closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert closed(m, "tls_error") == 0, tls_figures(m)
    assert m.get_value("moor_pubsub_dropped_total",
                       reason="drop_oldest") == missing


def test_no_resumption_by_default_tickets_when_asked(moor, certs):
    """By default the server issues no TLS 1.3 ticket and keeps no TLS 1.2
    session cache: a returning client does a full handshake. With
    --tls-tickets a TLS 1.3 client gets a ticket and resumes with it."""
    def connect_twice(port, version):
        ctx = client_ctx(certs.ca, min_version=version, max_version=version)
        with tls_conn(port, ctx) as c:
            # Tickets come after the handshake: a round trip reads them.
            assert c.request("GET", "/healthz").status == 200
            sess = c.sock.session
            had_ticket = sess.has_ticket
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost",
                                 session=sess) as t:
                return had_ticket, t.session_reused

    s = start_tls(moor, certs)
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        assert connect_twice(s.tls_port, v) == (False, False), v
    wait_for(s, "four full handshakes", lambda m: handshakes(m, "ok") == 4
             and m.get_value("moor_tls_connections") == 0)

    s2 = start_tls(moor, certs, "--tls-tickets")
    base = None
    for i in range(3):
        assert connect_twice(s2.tls_port, ssl.TLSVersion.TLSv1_3) == \
            (True, True), i
        if i == 0:
            base = settled_tls_bytes(s2)
    # Tickets cost the server nothing per session.
    wait_tls_bytes(s2, base)


def test_max_conns_refusal_on_the_tls_port(moor, certs):
    """Over --max-conns a TLS client is refused at once (it cannot read a
    plaintext 503, but it must not hang), the refusal is counted, and the
    next client after one leaves is served."""
    s = start_tls(moor, certs, "--max-conns", "2")
    ctx = client_ctx(certs.ca)
    a = tls_conn(s.tls_port, ctx)
    b = tls_conn(s.tls_port, ctx)
    try:
        for c in (a, b):
            assert c.request("GET", "/healthz").status == 200
        t0 = time.monotonic()
        with pytest.raises((ssl.SSLError, OSError)):
            tls_sock(s.tls_port, ctx, timeout=slack(5)).close()
        assert time.monotonic() - t0 < slack(2)
    finally:
        a.close()
    # Only now is there room for the /metrics request itself (once the
    # server has seen a go).
    end = time.monotonic() + slack(5)
    while True:
        r = s.get("/metrics")
        if r.status != 503 or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert r.status == 200, r
    m = Metrics(parse_metrics(r.body.decode()))
    assert m.get_value("moor_tls_connections") == 1, tls_figures(m)
    assert m.sum("moor_refused_total") >= 1, m.family("moor_refused_total")
    try:
        with tls_conn(s.tls_port, ctx) as c:
            assert c.request("GET", "/healthz").body == b"ok\n"
    finally:
        b.close()


# ---- 2,000 connections: memory per connection and back to baseline ---------

N_CONNS = 2000
BATCH = 200


def open_get(port, ctx):
    c = tls_conn(port, ctx, timeout=slack(15))
    try:
        r = c.request("GET", "/healthz")
        assert (r.status, r.body) == (200, b"ok\n"), r
    except BaseException:
        c.close()
        raise
    return c


def close_tls(c, notify):
    """notify: send close_notify first (and read the server's); else just
    close the socket (the server sees EOF without close_notify)."""
    try:
        if notify:
            c.sock.unwrap()
    except (OSError, ssl.SSLError, ValueError):
        pass
    c.close()


@pytest.mark.wall(150)
def test_2000_connections_memory(moor, certs):
    s = start_tls(moor, certs, "--accept-rate", "0", "--max-conns", "5000")
    ctx = client_ctx(certs.ca)
    # Warm-up: one connection closed each way.
    for notify in (True, False):
        close_tls(open_get(s.tls_port, ctx), notify)
    base = settled_tls_bytes(s)

    conns = []
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(16) as pool:
            while len(conns) < N_CONNS:
                conns += list(pool.map(lambda _: open_get(s.tls_port, ctx),
                                       range(BATCH)))
            opened = time.monotonic() - t0
            m = wait_for(s, f"{N_CONNS} TLS connections open",
                         lambda m: m.get_value("moor_tls_connections")
                         == N_CONNS)
            per_conn = (tls_bytes(m) - base) / N_CONNS
            print(f"\n{N_CONNS} TLS connections opened in {opened:.1f} s; "
                  f"tls tag {base:.0f} -> {tls_bytes(m):.0f} B: "
                  f"{per_conn:.0f} B per idle connection")
            assert 4000 < per_conn < 20000, per_conn
            # Half say goodbye with close_notify, half just go.
            list(pool.map(lambda ic: close_tls(ic[1], ic[0] % 2 == 0),
                          enumerate(conns)))
            conns = []
    finally:
        for c in conns:
            c.close()
    m = wait_for(s, "every TLS connection closed",
                 lambda m: m.get_value("moor_tls_connections") == 0, 30)
    assert handshakes(m, "ok") == N_CONNS + 2, tls_figures(m)
    assert handshakes(m, "failed") == 0, tls_figures(m)
    assert closed(m, "tls_error") == 0, tls_figures(m)
    wait_tls_bytes(s, base, 10)


# ---- renegotiation ---------------------------------------------------------

def renegotiate_once(s, certs, tmp_path, i):
    """openssl s_client over TLS 1.2 asks to renegotiate (its R command).
    Returns s_client's output; asserts it gave up on its own."""
    out_path = tmp_path / f"s_client{i}.out"
    with open(out_path, "wb") as out:
        p = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{s.tls_port}",
             "-tls1_2", "-CAfile", str(certs.ca), "-servername",
             "localhost"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + slack(5)
        while b"Verify return code:" not in out_path.read_bytes():
            assert p.poll() is None, out_path.read_bytes()
            assert time.monotonic() < end, out_path.read_bytes()
            time.sleep(0.02)
        text = out_path.read_bytes().decode(errors="replace")
        assert "Verify return code: 0 (ok)" in text, text
        assert "Protocol  : TLSv1.2" in text, text
        p.stdin.write(b"R\n")
        p.stdin.flush()
        # stdin stays open: s_client ends only if the connection does
        # (a renegotiation that succeeded would leave it waiting for us).
        try:
            rc = p.wait(timeout=slack(5))
        except subprocess.TimeoutExpired:
            rc = None
        text = out_path.read_bytes().decode(errors="replace")
        assert rc is not None, \
            f"s_client still connected after R (renegotiated?):\n{text}"
        assert "RENEGOTIATING" in text, text
        assert rc != 0, f"s_client exited 0 after R:\n{text}"
        return text
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdin.close()


def test_renegotiation_refused(moor, certs, tmp_path):
    if not shutil.which("openssl"):
        pytest.fail("the openssl command is not installed", pytrace=False)
    s = start_tls(moor, certs)
    renegotiate_once(s, certs, tmp_path, 0)    # warm-up
    base = settled_tls_bytes(s)
    for i in range(1, 4):
        text = renegotiate_once(s, certs, tmp_path, i)
    assert re.search(r"(?i)no renegotiation|alert", text), text
    m = wait_for(s, "four handshakes, no failures",
                 lambda m: handshakes(m, "ok") == 4)
    assert handshakes(m, "failed") == 0, tls_figures(m)
    assert closed(m, "tls_error") == 4, tls_figures(m)
    wait_tls_bytes(s, base)
    # The server is fine.
    assert tls_get(s, certs).body == b"ok\n"
    assert s.alive()


# ---- plain HTTP on the TLS port --------------------------------------------

def test_plain_http_on_tls_port(moor, certs):
    s = start_tls(moor, certs)
    with Conn(s.tls_port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r = c.read_response()
        assert r.version == "HTTP/1.1" and r.status == 400, r
        assert b"plain HTTP request was sent to HTTPS port" in r.body, r
        t = c.wait_closed(3.0)
        assert t is not None, "connection still open 3 s after the 400"
        assert c.buf == b"", c.buf
    m = wait_for(s, "one plaintext request counted",
                 lambda m: handshakes(m, "plaintext") == 1)
    assert handshakes(m, "ok") == 0, tls_figures(m)
    assert handshakes(m, "failed") == 0, tls_figures(m)
    wait_for(s, "no TLS connection open",
             lambda m: m.get_value("moor_tls_connections") == 0)
    # TLS on the same port still works.
    assert tls_get(s, certs).body == b"ok\n"


# ---- SIGHUP: certificate reload --------------------------------------------

def live_pki(certs, tmp_path):
    """Copies of the leaf chain and key that a test may overwrite."""
    d = tmp_path / "live"
    d.mkdir()
    cert, key = d / "server.crt", d / "server.key"
    shutil.copy(certs.chain, cert)
    shutil.copy(certs.key, key)
    return cert, key


def replace_file(path, data):
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def hup(s):
    s.proc.send_signal(signal.SIGHUP)


def log_lines(s, needle):
    return [l for l in s.stderr_text().splitlines() if needle in l]


def test_sighup_reloads_certificate(moor, certs, tmp_path):
    cert, key = live_pki(certs, tmp_path)
    s = start_tls(moor, certs, cert=cert, key=key)
    ctx = client_ctx(certs.ca)
    assert peer_der(s.tls_port, certs) == certs.der("leaf")
    a = ws_tls(s.tls_port, ctx)
    b = tls_conn(s.tls_port, ctx)
    try:
        ws_echo(a, OP_TEXT, b"before")
        assert b.request("GET", "/healthz").status == 200

        replace_file(cert, certs.chain2.read_bytes())
        replace_file(key, certs.key2.read_bytes())
        hup(s)
        m = wait_for(s, "one reload", lambda m: reloads(m, "ok") == 1)
        assert reloads(m, "failed") == 0, tls_figures(m)
        assert s.wait_log("tls certificate reloaded"), s.stderr_text()[-2000:]
        assert s.alive()

        # The open connections carry on with the old certificate.
        ws_echo(a, OP_TEXT, b"after")
        ws_echo(a, OP_BINARY, os.urandom(100 * KiB))
        assert b.request("GET", "/healthz").status == 200
        assert a.sock.getpeercert(binary_form=True) == certs.der("leaf")
        # New ones get the new certificate, chain and key.
        assert peer_der(s.tls_port, certs) == certs.der("leaf2")
        with tls_sock(s.tls_port, ctx) as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            assert subject["organizationName"] == "moor test leaf two"
            assert t.getpeercert()["serialNumber"] == "2002"
        with ws_tls(s.tls_port, ctx) as c:
            ws_echo(c, OP_TEXT, b"new cert")
    finally:
        a.close()
        b.close()
    m = wait_for(s, "all closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "failed") == 0, tls_figures(m)


def test_sighup_failed_reload_keeps_certificate(moor, certs, tmp_path):
    cert, key = live_pki(certs, tmp_path)
    s = start_tls(moor, certs, cert=cert, key=key)
    ctx = client_ctx(certs.ca)
    a = ws_tls(s.tls_port, ctx)
    try:
        ws_echo(a, OP_TEXT, b"before")

        # 1. The certificate file is garbage.
        replace_file(cert, b"this is not a certificate\n")
        hup(s)
        m = wait_for(s, "one failed reload",
                     lambda m: reloads(m, "failed") == 1)
        assert reloads(m, "ok") == 0, tls_figures(m)
        assert s.wait_log("tls reload failed"), s.stderr_text()[-2000:]
        lines = log_lines(s, "tls reload failed")
        assert len(lines) == 1 and str(cert) in lines[0], lines
        assert s.alive()
        assert peer_der(s.tls_port, certs) == certs.der("leaf")
        assert tls_get(s, certs).body == b"ok\n"
        ws_echo(a, OP_TEXT, b"still here")

        # 2. A good certificate with a key that does not match it.
        replace_file(cert, certs.chain2.read_bytes())
        replace_file(key, certs.wrong_key.read_bytes())
        hup(s)
        m = wait_for(s, "two failed reloads",
                     lambda m: reloads(m, "failed") == 2)
        assert reloads(m, "ok") == 0, tls_figures(m)
        lines = log_lines(s, "tls reload failed")
        assert len(lines) == 2, lines
        assert str(key) in lines[1] or "mismatch" in lines[1], lines
        assert peer_der(s.tls_port, certs) == certs.der("leaf")
        ws_echo(a, OP_BINARY, os.urandom(50 * KiB))

        # 3. Fixed: the next SIGHUP takes the new pair.
        replace_file(key, certs.key2.read_bytes())
        hup(s)
        m = wait_for(s, "then one good reload",
                     lambda m: reloads(m, "ok") == 1)
        assert reloads(m, "failed") == 2, tls_figures(m)
        assert peer_der(s.tls_port, certs) == certs.der("leaf2")
        ws_echo(a, OP_TEXT, b"after")
    finally:
        a.close()
    m = wait_for(s, "all closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "failed") == 0, tls_figures(m)


# ---- moor bench as a TLS client --------------------------------------------

def bench(*args, timeout=40):
    return run_moor(["bench"] + [str(a) for a in args], timeout=timeout)


def bench_echo_args(url, *extra):
    return ["echo", "--url", url, "--conns", "2", "--duration", "1s",
            "--warmup", "200ms", *extra]


def test_bench_wss_with_tls_ca(moor, certs):
    s = start_tls(moor, certs)
    url = f"wss://127.0.0.1:{s.tls_port}/echo"
    r = bench(*bench_echo_args(url, "--tls-ca", certs.ca, "--size", "20KiB",
                               "--json"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["open"] == 2 and d["failed"] == 0, d
    assert d["messages"] > 0 and d["mismatched"] == 0, d
    # By name: localhost is in the certificate too.
    r = bench(*bench_echo_args(f"wss://localhost:{s.tls_port}/echo",
                               "--tls-ca", certs.ca))
    assert r.returncode == 0, r.stderr
    m = wait_for(s, "the bench's connections closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") >= 4, tls_figures(m)
    assert handshakes(m, "failed") == 0, tls_figures(m)


def test_bench_idle_tls_flag(moor, certs):
    """--tls takes a ws:// URL as wss://: the idle connections are TLS
    connections the server counts, and the report names the wss:// URL."""
    s = start_tls(moor, certs)
    r = bench("idle", "--tls", "--url", f"ws://127.0.0.1:{s.tls_port}/echo",
              "--tls-ca", certs.ca, "--conns", 20, "--hold", "300ms",
              "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["url"] == f"wss://127.0.0.1:{s.tls_port}/echo", d
    assert d["open"] == 20 and d["failed"] == 0, d
    m = wait_for(s, "the bench's connections closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") >= 20, tls_figures(m)
    # Without --tls the same URL is plain WebSocket, which the TLS port
    # does not speak: every connection fails.
    r = bench("idle", "--url", f"ws://127.0.0.1:{s.tls_port}/echo",
              "--conns", 2, "--hold", "0", "--connect-timeout", "2s",
              "--json")
    assert r.returncode == 1, (r.stdout, r.stderr)


def test_bench_wss_verifies_by_default(moor, certs):
    s = start_tls(moor, certs)
    url = f"wss://127.0.0.1:{s.tls_port}/echo"
    # No --tls-ca: the system store does not know the test CA.
    r = bench(*bench_echo_args(url))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"(?i)certificate verif(y|ication) failed", r.stderr), \
        r.stderr
    # The wrong CA fails the same way.
    r = bench(*bench_echo_args(url, "--tls-ca", certs.other))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"(?i)certificate verif(y|ication) failed", r.stderr), \
        r.stderr
    m = wait_for(s, "the refused handshakes counted",
                 lambda m: handshakes(m, "failed") >= 2
                 and m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") == 0, tls_figures(m)


def test_bench_wss_insecure_and_hostname(moor, certs):
    s = start_tls(moor, certs, cert=certs.other, key=certs.other_key)
    # --insecure: a self-signed certificate for another name is accepted.
    r = bench(*bench_echo_args(f"wss://127.0.0.1:{s.tls_port}/echo",
                               "--insecure", "--json"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["open"] == 2 and d["messages"] > 0, d
    # Trusting that very certificate, but connecting as localhost: the
    # name does not match.
    r = bench(*bench_echo_args(f"wss://localhost:{s.tls_port}/echo",
                               "--tls-ca", certs.other))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"(?i)host ?name|certificate verif", r.stderr), r.stderr
    # The certificate itself is fine for its own name (so the failure
    # above was the name).
    ctx = client_ctx(certs.other)
    with tls_conn(s.tls_port, ctx, host="other.example") as c:
        assert c.request("GET", "/healthz").body == b"ok\n"


# ---- the library's client (examples/ws_client) ----------------------------

def example_client(*args):
    exe = example_bin("ws_client")
    return subprocess.run([str(exe), *[str(a) for a in args]],
                          capture_output=True, text=True, timeout=30)


def test_library_client_over_wss(moor, certs):
    """moor_client_options.tls_ca and .insecure through the example
    client: echo over wss:// with the test CA; without it the certificate
    fails verification with that reason; -k (insecure) accepts it; the
    wrong host name fails."""
    s = start_tls(moor, certs)
    url = f"wss://localhost:{s.tls_port}/echo"
    r = example_client("-a", certs.ca, url, "over tls", "again")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["over tls", "again"], r.stdout
    r = example_client(url, "x")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "certificate verification failed" in r.stderr, r.stderr
    r = example_client("-k", url, "insecure")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["insecure"], r.stdout
    m = wait_for(s, "the client's connections closed",
                 lambda m: m.get_value("moor_tls_connections") == 0)
    assert handshakes(m, "ok") == 2, tls_figures(m)
    # A certificate the client trusts, but for another name.
    s2 = start_tls(moor, certs, cert=certs.other, key=certs.other_key)
    r = example_client("-a", certs.other,
                       f"wss://localhost:{s2.tls_port}/echo", "x")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "certificate verification failed: hostname mismatch" in \
        r.stderr, r.stderr


# ---- shutdown and start-up -------------------------------------------------

def test_sigterm_with_tls_connections_open(moor, certs):
    s = start_tls(moor, certs, "--drain-spread", "100ms")
    ctx = client_ctx(certs.ca)
    a = ws_tls(s.tls_port, ctx)
    b = tls_conn(s.tls_port, ctx)
    c = socket.create_connection((HOST, s.tls_port), timeout=5)
    c.sendall(client_hello()[:50])
    try:
        ws_echo(a, OP_TEXT, b"hi")
        assert b.request("GET", "/healthz").status == 200
        wait_for(s, "two TLS connections up",
                 lambda m: m.get_value("moor_tls_connections") >= 2)
        rc, err = s.stop(signal.SIGTERM, timeout=slack(15))
        assert_clean_exit(rc, err)
    finally:
        a.close()
        b.close()
        c.close()


def serve_fails(*args):
    return run_moor(["serve", "--listen", f"{HOST}:0", *map(str, args)],
                    timeout=slack(10))


def test_startup_flag_errors(certs):
    L = ["--tls-listen", f"{HOST}:0"]
    cases = [
        (L + ["--tls-cert", certs.chain], "--tls-key"),
        (L + ["--tls-key", certs.key], "--tls-cert"),
        (L, "--tls-cert"),
        (L + ["--tls-cert", certs.chain, "--tls-key", certs.key,
              "--tls-min-version", "1.1"], "--tls-min-version"),
        (L + ["--tls-cert", certs.chain, "--tls-key", certs.key,
              "--handshake-timeout", "soon"], "--handshake-timeout"),
    ]
    for args, word in cases:
        r = serve_fails(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert word in r.stderr, (args, r.stderr)
        assert "unknown flag" not in r.stderr, (args, r.stderr)


def test_startup_file_errors(certs, tmp_path):
    L = ["--tls-listen", f"{HOST}:0"]
    missing = tmp_path / "no-such-dir" / "cert.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (["--tls-cert", missing, "--tls-key", certs.key], [str(missing)]),
        (["--tls-cert", certs.chain, "--tls-key", missing], [str(missing)]),
        (["--tls-cert", garbage, "--tls-key", certs.key], [str(garbage)]),
        (["--tls-cert", certs.chain, "--tls-key", garbage], [str(garbage)]),
        (["--tls-cert", certs.chain, "--tls-key", certs.wrong_key],
         [str(certs.wrong_key), str(certs.chain), "mismatch"]),
        (["--tls-cert", certs.chain, "--tls-key", certs.key,
          "--tls-ciphersuites", "TLS_NO_SUCH_SUITE"],
         ["--tls-ciphersuites TLS_NO_SUCH_SUITE"]),
        (["--tls-cert", certs.chain, "--tls-key", certs.key,
          "--tls-ciphers", "NO-SUCH-CIPHER"], ["--tls-ciphers NO-SUCH-CIPHER"]),
    ]
    for args, words in cases:
        r = serve_fails(*(L + args))
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert any(w in r.stderr for w in words), (args, r.stderr)
        assert "unknown flag" not in r.stderr, (args, r.stderr)


def test_help_lists_tls_flags():
    r = run_moor(["serve", "--help"])
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    for flag in ("--tls-listen", "--tls-cert", "--tls-key",
                 "--tls-min-version", "--handshake-timeout"):
        assert flag in text, f"serve --help does not mention {flag}"
    assert re.search(r"--tls-min-version \S+ .*?\(default 1\.2", text), text
    assert re.search(r"--handshake-timeout \S+ .*?\(default 10s", text), text
    r = run_moor(["bench", "--help"])
    assert r.returncode == 0, r.stderr
    for flag in ("--tls-ca", "--insecure"):
        assert flag in r.stdout, f"bench --help does not mention {flag}"


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_peer_gone_in_the_middle_of_its_hello_is_closed_at_once(
        moor, certs, how):
    """Half a ClientHello, then an RST (or a FIN): the rest of the record
    can never come, so the connection is closed at once. The half record
    still queued had hidden the hang-up from recv() while epoll kept
    reporting it: the loop spun at full CPU until --handshake-timeout."""
    s = start_tls(moor, certs, "--handshake-timeout", "30s")
    hello = client_hello()
    for _ in range(3):
        c = socket.create_connection((HOST, s.tls_port), timeout=5)
        c.sendall(hello[:len(hello) // 2])
        time.sleep(0.05)
        if how == "rst":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
        else:
            c.shutdown(socket.SHUT_WR)
        c.close()
    m = wait_for(s, "the three half hellos closed",
                 lambda m: m.get_value("moor_tls_connections") == 0
                 and handshakes(m, "failed") == 3, timeout=2.0)
    assert closed(m, "handshake_timeout") == 0, tls_figures(m)
    # And nothing spins: the process is idle afterwards.
    stat = f"/proc/{s.proc.pid}/stat"

    def ticks():
        f = open(stat).read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    t0 = ticks()
    time.sleep(1.0)
    assert ticks() - t0 < 50, "the loop is busy with nothing to do"
