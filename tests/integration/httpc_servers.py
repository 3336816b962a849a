"""Adversarial servers for the HTTP client's tests (test_http_client.py).

Everything here listens on 127.0.0.1, on a port of its own chosen by the
kernel, runs on daemon threads, bounds every wait (stop() ends every
stall), and records what it saw so a test can assert on the server's side
too:

- HttpServer: HTTP/1.1 over TCP or TLS (pass an ssl.SSLContext). What it
  answers is chosen per path (PATHS below: keep-alive with Content-Length,
  chunked with extensions and trailers, close-delimited, HEAD, 204, 304,
  1xx before the answer, Connection: close, HTTP/1.0, delays, a body
  dripped a byte at a time, a stalled head or body, malformed heads and
  bodies, huge heads) and per server (keyword arguments: close or reset
  idle connections after a delay, send a stray byte on an idle one, close
  a reused connection right after reading its next request, never answer,
  never read - the last also serves as a TLS server that never answers
  the ClientHello). .requests lists every request read (method, target,
  headers, body, which connection, its index on that connection);
  .conns every connection (when it opened and closed, whether the client
  closed it, TLS session reuse).
- FullListener: a listener whose accept queue is full (listen(0) and
  connections left unaccepted), so a new connect() hangs in SYN-SENT.
- FakeDns: a DNS server over UDP: A records with a TTL, NXDOMAIN for
  unknown names, no answer at all for "silent" names; .queries lists
  (name, qtype) of every query.
- Pki: certificates made with the openssl CLI: a test CA and a leaf for
  localhost/127.0.0.1, a leaf from another CA, a leaf for another name,
  an expired leaf (openssl ca -startdate/-enddate in the past); .ctx(name)
  is a server SSLContext for one of them.
- Nginx: Debian's nginx on a free port, plain and TLS, config in a
  temporary directory.
"""

import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
IO_TIMEOUT = 5.0


def pattern(n):
    """n deterministic bytes, every byte value included (NULs, high bytes);
    the period 251 lines up with no chunk or buffer size."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def free_port():
    """A port nothing listens on right now (for programs that want one on
    their command line: nginx)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---- what a server saw -------------------------------------------------------

class Request:
    def __init__(self, method, target, version, headers, body, conn, nth):
        self.method = method
        self.target = target
        u = urlsplit(target)
        self.path = u.path
        self.query = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.version = version
        self.headers = headers      # [(lower-case name, value)]
        self.body = body            # bytes, chunked coding removed
        self.conn = conn            # ConnInfo
        self.nth = nth              # 0: the first request on its connection
        self.t = time.monotonic()

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def __repr__(self):
        return (f"<Request {self.method} {self.target} conn={self.conn.id} "
                f"nth={self.nth} body={len(self.body)}B>")


class ConnInfo:
    def __init__(self, cid):
        self.id = cid
        self.t_open = time.monotonic()
        self.t_close = None
        self.client_closed = False  # EOF or reset from the client
        self.tls_error = None       # the handshake failed: why
        self.session_reused = None  # TLS: the handshake resumed a session
        self.alpn = None            # TLS: the protocol ALPN chose
        self.sent_done = None       # when the last response was all sent
        self.head_sent = None       # when the last response head went out

    def __repr__(self):
        return (f"<Conn {self.id} client_closed={self.client_closed} "
                f"tls_error={self.tls_error!r} "
                f"session_reused={self.session_reused}>")


class _Gone(Exception):
    """The client closed or reset the connection."""


class _Stop(Exception):
    """The server is stopping."""


# ---- malformed answers ---------------------------------------------------------

# /bad/<kind>: raw bytes; the connection then stays open and silent, so the
# only thing wrong is what was sent.
MALFORMED = {
    # Both framings: a smuggling vector; a client must refuse it.
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    # Two different lengths.
    "two_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
              b"Content-Length: 6\r\n\r\nhello!",
    "two_cl_list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "bad_status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_600": b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok",
    "bad_version": b"HTTQ/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "obs_fold": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: one\r\n"
                b" two\r\n\r\nok",
    "space_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk_overflow": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
    "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
    "te_not_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                      b"Content-Length: 2\r\n\r\nok",
}


# ---- the HTTP server -------------------------------------------------------------

class HttpServer:
    """Paths (GET, POST, ...; HEAD answers any of them without the body):

    /ok?size=N          200, Content-Length, pattern(N) (default b"hello\\n")
    /echo               200, the request body back
    /chunked?size=N&chunks=a,b,c   200 chunked (sizes cycled, default
                        1,7,100,4096,65536), an extension on every chunk,
                        two trailer fields
    /close-delimited?size=N  200, no length: the body ends at the close
    /204, /304          no body (the 304 carries Content-Length: 10)
    /continue?size=N    100 Continue and 103 Early Hints, then 200
    /close?size=N       200 with Connection: close, then the close
    /http10?size=N      an HTTP/1.0 answer without keep-alive, then close
    /delay?ms=M&size=N  200 after M ms
    /drip?size=N&ms=M   Content-Length N, one byte every M ms
    /stall-head         read, never answer
    /stall-body?size=N&after=K   Content-Length N, K bytes, then nothing
    /huge-head?bytes=N  a header field of N bytes, then a 2-byte body
    /many-headers?n=N   N header fields
    /bad/<kind>         MALFORMED[kind]

    Per server: idle_close_ms (FIN) / idle_reset_ms (RST) / stray_ms (one
    byte) once a connection has been idle that long after a response;
    close_reused (a connection's second and later requests are read,
    recorded, and answered with a close); never_answer; never_read (no
    byte is read: accept and hold - also a TLS server that never answers
    the ClientHello); drop_first (the first N connections are closed as
    soon as they are accepted, before a byte is read); stall_first (the
    first N are accepted and never read or answered); sndbuf/rcvbuf (SO_SNDBUF / SO_RCVBUF, small ones
    make backpressure come early); tls (an ssl.SSLContext).
    """

    def __init__(self, tls=None, idle_close_ms=None, idle_reset_ms=None,
                 stray_ms=None, close_reused=False, never_answer=False,
                 never_read=False, sndbuf=None, rcvbuf=None, drop_first=0,
                 stall_first=0):
        self.tls = tls
        self.drop_first = drop_first
        self.stall_first = stall_first
        self.idle_close_ms = idle_close_ms
        self.idle_reset_ms = idle_reset_ms
        self.stray_ms = stray_ms
        self.close_reused = close_reused
        self.never_answer = never_answer
        self.never_read = never_read
        self.sndbuf = sndbuf
        self.sni = []  # TLS: the server names clients asked for
        if tls:
            tls.sni_callback = lambda sslobj, name, ctx: \
                self.sni.append(name)
        self.requests = []
        self.conns = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = []
        self._threads = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # inherited by accepted sockets; set before listen
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self._spawn(self._accept_loop)

    # -- for tests

    def url(self, path="/ok", host=HOST):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def seen(self, method=None, path=None):
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and
                    (path is None or r.path == path)]

    def wait_closed(self, n, timeout=3.0):
        """Waits until n connections were closed by the client; returns how
        many were."""
        end = time.monotonic() + timeout
        while True:
            k = sum(1 for c in self.conns if c.client_closed)
            if k >= n or time.monotonic() > end:
                return k
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    # -- machinery

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self):
        self.lsock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                info = ConnInfo(len(self.conns))
                self.conns.append(info)
                self._socks.append(s)
            if self.sndbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            self._spawn(self._serve_conn, s, info)

    def _sleep(self, secs):
        if self._stop.wait(secs):
            raise _Stop()

    def _serve_conn(self, sock, info):
        try:
            if info.id < self.drop_first:
                # Closed unread: a TLS client's handshake meets EOF.
                sock.close()
                return
            if info.id < self.stall_first:
                self._stop.wait()  # accepted, never read nor answered
                return
            if self.never_read:
                self._stop.wait()
                return
            if self.tls:
                sock.settimeout(IO_TIMEOUT)
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    info.tls_error = str(e)
                    return
                with self._lock:
                    self._socks.append(sock)
                info.session_reused = sock.session_reused
                info.alpn = sock.selected_alpn_protocol()
            sock.settimeout(IO_TIMEOUT)
            self._conn_loop(sock, info)
        except _Gone:
            info.client_closed = True
        except (_Stop, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            info.t_close = time.monotonic()
            try:
                sock.close()
            except OSError:
                pass

    def _readable(self, sock, timeout):
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        end = time.monotonic() + timeout
        while not self._stop.is_set():
            left = min(0.1, end - time.monotonic())
            if left <= 0:
                return False
            r, _, _ = select.select([sock], [], [], left)
            if r:
                return True
        raise _Stop()

    def _recv(self, sock, timeout=IO_TIMEOUT):
        if not self._readable(sock, timeout):
            raise socket.timeout()
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            raise _Gone()
        except ssl.SSLError as e:
            raise _Gone() from e
        if not b:
            raise _Gone()
        return b

    def _conn_loop(self, sock, info):
        buf = bytearray()
        nth = 0
        while True:
            # Between requests: the idle behaviours.
            idle = [x for x in (self.idle_close_ms, self.idle_reset_ms,
                                self.stray_ms) if x is not None]
            if nth > 0 and idle and b"\r\n\r\n" not in buf:
                if not self._readable(sock, min(idle) / 1000):
                    if self.stray_ms is not None:
                        sock.sendall(b"X")
                        # Whatever the client does next is its business:
                        # wait for its close.
                        while True:
                            self._recv(sock, 60)
                    if self.idle_reset_ms is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    return
            req = self._read_request(sock, buf, info, nth, 600 if nth else
                                     IO_TIMEOUT)
            with self._lock:
                self.requests.append(req)
            if self.close_reused and nth > 0:
                return  # read it, answer nothing, close
            nth += 1
            if self.never_answer:
                self._hold(sock)
            if not self._answer(sock, req, info):
                return

    def _read_request(self, sock, buf, info, nth, first_timeout):
        timeout = first_timeout
        while b"\r\n\r\n" not in buf:
            buf += self._recv(sock, timeout)
            timeout = IO_TIMEOUT
            if len(buf) > 1 << 20:
                raise ValueError("request head too big")
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        del buf[:]
        buf += rest
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        hd = dict(headers)
        if hd.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = bytearray()
        if "chunked" in hd.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in buf:
                    buf += self._recv(sock)
                line, _, rest = bytes(buf).partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    rest += self._recv(sock)
                if size == 0:
                    # Trailers: lines until an empty one.
                    while b"\r\n\r\n" not in b"\r\n" + rest:
                        rest += self._recv(sock)
                    _, _, rest = (b"\r\n" + rest).partition(b"\r\n\r\n")
                    del buf[:]
                    buf += rest
                    break
                body += rest[:size]
                del buf[:]
                buf += rest[size + 2:]
        else:
            n = int(hd.get("content-length", "0"))
            while len(buf) < n:
                buf += self._recv(sock)
            body += buf[:n]
            del buf[:n]
        return Request(method, target, version, headers, bytes(body), info,
                       nth)

    def _send_head(self, sock, info, head):
        sock.sendall(head)
        info.head_sent = time.monotonic()

    def _answer(self, sock, req, info):
        """Sends the answer; returns False when the connection must close."""
        q = req.query
        size = int(q.get("size", -1))
        body = pattern(size) if size >= 0 else b"hello\n"
        head_only = req.method == "HEAD"
        path = req.path

        def plain(status="200 OK", extra=b"", version=b"HTTP/1.1", b=body):
            h = (version + b" " + status.encode() + b"\r\n"
                 b"Content-Type: application/octet-stream\r\n" + extra +
                 b"Content-Length: " + str(len(b)).encode() + b"\r\n\r\n")
            self._send_head(sock, info, h)
            if not head_only:
                sock.sendall(b)
            info.sent_done = time.monotonic()

        if path in ("/ok", "/"):
            plain()
        elif path == "/echo":
            plain(b=req.body)
        elif path == "/delay":
            self._sleep(int(q.get("ms", 100)) / 1000)
            plain()
        elif path == "/chunked":
            sizes = [int(x) for x in q.get("chunks",
                                           "1,7,100,4096,65536").split(",")]
            if size < 0:
                size = 70000
            body = pattern(size)
            self._send_head(sock, info,
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                            b"\r\nTrailer: X-Sum\r\n\r\n")
            if head_only:
                return True
            out, pos, k = bytearray(), 0, 0
            while pos < len(body):
                n = min(sizes[k % len(sizes)], len(body) - pos)
                out += b"%x;ext=%d\r\n" % (n, k) + body[pos:pos + n] + b"\r\n"
                pos += n
                k += 1
            out += b"0\r\nX-Sum: %d\r\nX-Other: a b c\r\n\r\n" % len(body)
            sock.sendall(bytes(out))
            info.sent_done = time.monotonic()
        elif path == "/close-delimited":
            self._send_head(sock, info, b"HTTP/1.1 200 OK\r\n"
                            b"Content-Type: application/octet-stream\r\n\r\n")
            if not head_only:
                sock.sendall(body)
            sock.shutdown(socket.SHUT_WR)
            self._drain_until_close(sock)
            return False
        elif path == "/204":
            self._send_head(sock, info, b"HTTP/1.1 204 No Content\r\n"
                            b"X-Thing: 1\r\n\r\n")
        elif path == "/304":
            self._send_head(sock, info, b"HTTP/1.1 304 Not Modified\r\n"
                            b"ETag: \"v1\"\r\nContent-Length: 10\r\n\r\n")
        elif path == "/continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"HTTP/1.1 103 Early Hints\r\n"
                         b"Link: </style.css>; rel=preload\r\n\r\n")
            plain()
        elif path == "/close":
            plain(extra=b"Connection: close\r\n")
            return False
        elif path == "/http10":
            plain(version=b"HTTP/1.0")
            return False
        elif path == "/drip":
            n = size if size >= 0 else 10
            self._send_head(sock, info, b"HTTP/1.1 200 OK\r\n"
                            b"Content-Length: %d\r\n\r\n" % n)
            if not head_only:
                for ch in pattern(n):
                    self._sleep(int(q.get("ms", 100)) / 1000)
                    sock.sendall(bytes([ch]))
            info.sent_done = time.monotonic()
        elif path == "/stall-head":
            self._hold(sock)
        elif path == "/stall-body":
            n = size if size >= 0 else 100000
            after = int(q.get("after", 4096))
            self._send_head(sock, info, b"HTTP/1.1 200 OK\r\n"
                            b"Content-Length: %d\r\n\r\n" % n)
            sock.sendall(pattern(n)[:after])
            self._hold(sock)
        elif path == "/huge-head":
            n = int(q.get("bytes", 100000))
            self._send_head(sock, info, b"HTTP/1.1 200 OK\r\nX-Big: " +
                            b"a" * n + b"\r\nContent-Length: 2\r\n\r\n")
            sock.sendall(b"ok")
        elif path == "/many-headers":
            n = int(q.get("n", 200))
            fields = b"".join(b"X-H%d: %d\r\n" % (k, k) for k in range(n))
            plain(extra=fields)
        elif path.startswith("/bad/"):
            sock.sendall(MALFORMED[path[5:]])
            self._hold(sock)
        else:
            plain("404 Not Found", b=b"no such path\n")
        return True

    def _hold(self, sock):
        """Answers nothing more; ends (client_closed) when the client
        closes, or when the server stops."""
        while True:
            self._recv(sock, 3600)

    def _drain_until_close(self, sock):
        try:
            while True:
                self._recv(sock, 10)
        except (_Gone, socket.timeout, OSError):
            pass


# ---- a listener that takes no more connections --------------------------------

class FullListener:
    """listen(0), then connections made to it and never accepted until
    the accept queue is full: a connect() to .port then hangs (the kernel
    drops its SYN), which is what a connect timeout needs."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            c = socket.socket()
            c.settimeout(0.3)
            try:
                c.connect((HOST, self.port))
            except (socket.timeout, BlockingIOError):
                c.close()
                break
            self.fillers.append(c)
        else:
            raise AssertionError("the accept queue never filled")

    def url(self, path="/ok"):
        return f"http://{HOST}:{self.port}{path}"

    def stop(self):
        for c in self.fillers:
            c.close()
        self.lsock.close()


# ---- DNS ---------------------------------------------------------------------

class FakeDns:
    """Answers A queries for the names of `a` ({name: (ip, ttl)}) and
    NOERROR without answers for their other types; never answers a name
    in `silent`; NXDOMAIN for every other name."""

    def __init__(self, a=None, silent=()):
        self.a = {k.lower().rstrip("."): v for k, v in (a or {}).items()}
        self.silent = {k.lower().rstrip(".") for k in silent}
        self.queries = []  # (name, qtype) in arrival order
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.addr = f"{HOST}:{self.port}"
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def count(self, name, qtype=1):
        return sum(1 for n, t in self.queries if n == name and t == qtype)

    def stop(self):
        self._stop.set()
        self._t.join(timeout=5)
        self.sock.close()

    def _loop(self):
        while not self._stop.is_set():
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                r = self.answer(q)
            except (ValueError, IndexError, struct.error):
                continue
            if r:
                self.sock.sendto(r, peer)

    def answer(self, q):
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            raise ValueError("one question only")
        pos, labels = 12, []
        while q[pos]:
            n = q[pos]
            labels.append(q[pos + 1:pos + 1 + n].decode("ascii"))
            pos += 1 + n
        pos += 1
        qtype, qclass = struct.unpack("!HH", q[pos:pos + 4])
        question = q[12:pos + 4]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        if name in self.silent:
            return None
        rflags = 0x8000 | (flags & 0x0100) | 0x0080  # QR, RD copied, RA
        answers = b""
        nans = 0
        if name in self.a:
            if qtype == 1:
                ip, ttl = self.a[name]
                answers = struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + \
                    socket.inet_aton(ip)
                nans = 1
        else:
            rflags |= 3  # NXDOMAIN
        return struct.pack("!HHHHHH", qid, rflags, 1, nans, 0, 0) + \
            question + answers


# ---- certificates ------------------------------------------------------------

LEAF_EXT = ("basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName={san}\n")
CA_EXT = ("basicConstraints=critical,CA:TRUE\n"
          "keyUsage=critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier=hash\n")
GOOD_SAN = "DNS:localhost,DNS:good.test,IP:127.0.0.1"
SERIALS = {"good": 11, "wrongname": 12, "wrongca": 13}

CA_CNF = """[ca]
default_ca = testca
[testca]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
"""


def openssl(*args, cwd=None):
    exe = shutil.which("openssl")
    if not exe:
        raise AssertionError("the openssl command is not installed")
    r = subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}:\n"
                             f"{r.stderr}")
    return r.stdout


class Pki:
    """In directory d: ca.pem (the CA the client trusts); leaves signed
    by it: good (localhost, 127.0.0.1), wrongname (other.example),
    expired (localhost, 127.0.0.1; 2020-2021); othca.pem, another CA, and
    its leaf wrongca (localhost, 127.0.0.1). .pem(name), .key(name),
    .ctx(name): a server context serving that leaf."""

    def __init__(self, d):
        self.dir = d
        self._key("ca")
        self._req("ca", "/CN=moor httpc test CA")
        self._sign("ca", CA_EXT, None)
        self._key("othca")
        self._req("othca", "/CN=some other CA")
        self._sign("othca", CA_EXT, None)
        for name, san, ca in (("good", GOOD_SAN, "ca"),
                              ("wrongname", "DNS:other.example", "ca"),
                              ("wrongca", GOOD_SAN, "othca")):
            self._key(name)
            self._req(name, f"/CN={name}")
            self._sign(name, LEAF_EXT.format(san=san), ca)
        # Expired: openssl x509 (3.0) cannot date a certificate in the
        # past; openssl ca can.
        self._key("expired")
        self._req("expired", "/CN=expired")
        (d / "index.txt").write_text("")
        (d / "serial").write_text("1000\n")
        (d / "newcerts").mkdir(exist_ok=True)
        (d / "ca.cnf").write_text(CA_CNF)
        (d / "expired.ext").write_text(LEAF_EXT.format(san=GOOD_SAN))
        openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem",
                "-keyfile", "ca.key", "-in", "expired.csr", "-out",
                "expired.pem", "-notext", "-startdate", "20200101000000Z",
                "-enddate", "20210101000000Z", "-extfile", "expired.ext",
                cwd=d)
        self.ca = d / "ca.pem"
        self.other_ca = d / "othca.pem"

    def _key(self, name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=self.dir)

    def _req(self, name, subj):
        openssl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out",
                f"{name}.csr", cwd=self.dir)

    def _sign(self, name, ext, ca):
        (self.dir / f"{name}.ext").write_text(ext)
        sign = ["-signkey", f"{name}.key"] if ca is None else \
            ["-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-set_serial",
             str(SERIALS[name])]
        openssl("x509", "-req", "-in", f"{name}.csr", *sign, "-days", "3650",
                "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
                cwd=self.dir)

    def pem(self, name):
        return self.dir / f"{name}.pem"

    def key(self, name):
        return self.dir / f"{name}.key"

    def ctx(self, name="good"):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(self.pem(name), self.key(name))
        c.set_alpn_protocols(["http/1.1"])
        return c


# ---- nginx -------------------------------------------------------------------

NGINX_CONF = """worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout {keepalive};
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {tls_listen}
        {tls_files}
        location = /healthz {{ default_type text/plain; return 200 "ok\\n"; }}
        location = /big {{ default_type text/plain; return 200 "{big}"; }}
    }}
}}
"""


class Nginx:
    """Debian's nginx (nginx-light) with one worker on free ports: .port
    plain, .tls_port with pki's good leaf when pki is given."""

    BIG = "nginx-" * 500  # a 3000-byte body at /big

    def __init__(self, d, pki=None, keepalive="75s"):
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(exe):
            raise AssertionError("nginx is not installed (Debian package "
                                 "nginx-light)")
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.port = free_port()
        self.tls_port = free_port() if pki else None
        tls_listen = f"listen 127.0.0.1:{self.tls_port} ssl;" if pki else ""
        tls_files = (f"ssl_certificate {pki.pem('good')}; "
                     f"ssl_certificate_key {pki.key('good')};") if pki else ""
        (d / "nginx.conf").write_text(NGINX_CONF.format(
            d=d, port=self.port, keepalive=keepalive, tls_listen=tls_listen,
            tls_files=tls_files, big=self.BIG))
        self.log = open(d / "nginx.out", "wb")
        self.proc = subprocess.Popen([exe, "-p", str(d), "-e",
                                      str(d / "error.log"), "-c",
                                      str(d / "nginx.conf")],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), 0.2).close()
                break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(
                    f"nginx did not start: "
                    f"{(d / 'nginx.out').read_text(errors='replace')}"
                    f"{(d / 'error.log').read_text(errors='replace')}")
            time.sleep(0.05)

    def url(self, path="/healthz", tls=False):
        if tls:
            return f"https://127.0.0.1:{self.tls_port}{path}"
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
