"""
A small raw WebSocket client (RFC 6455) on plain sockets, for tests that
need full control over the bytes: the handshake with our own key, frames
with any flags, opcode, mask and length encoding, optionally written one
byte per TCP segment.

Every operation is bounded: each socket read has a timeout, and the
helpers that wait for something take a deadline.

- handshake_request(...) -> bytes of an upgrade request
- accept_for(key) -> the Sec-WebSocket-Accept value for key
- encode_frame(...) -> bytes of one frame (client frames masked)
- WsConn(port): .handshake(...) -> HttpHead, .open(...) (asserts 101),
  .send_frame(...), .send_text/.send_binary/.send_ping/.send_pong/
  .send_close, .recv_frame(), .recv_message(), .expect_close(code),
  .wait_closed(timeout)
- connect(port, ...) -> an open WsConn (101 checked)
"""

import base64
import hashlib
import os
import select
import socket
import struct
import time

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 5.0

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
OP_NAMES = {OP_CONT: "cont", OP_TEXT: "text", OP_BINARY: "binary",
            OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}


class Closed(Exception):
    """The peer closed (EOF or reset) before what we were reading."""


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def handshake_request(path="/echo", key=None, method="GET",
                      version="HTTP/1.1", headers=None, omit=(),
                      replace=None):
    """Bytes of an upgrade request. The standard fields are Host, Upgrade,
    Connection, Sec-WebSocket-Key and Sec-WebSocket-Version; omit names
    fields (any case) to leave out, replace maps a field name to a new
    value; headers (list of pairs) are appended as they are."""
    key = key if key is not None else new_key()
    std = [("Host", f"{HOST}"), ("Upgrade", "websocket"),
           ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
           ("Sec-WebSocket-Version", "13")]
    omit = {n.lower() for n in omit}
    replace = {k.lower(): v for k, v in (replace or {}).items()}
    fields = []
    for k, v in std:
        if k.lower() in omit:
            continue
        fields.append((k, replace.get(k.lower(), v)))
    fields += list(headers or [])
    fields += _auth_headers(fields)
    head = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    return head.encode("latin-1")


def _auth_headers(fields):
    """MOOR_TEST_AUTH mode's token (conftest.auth_mode_headers)."""
    try:
        from conftest import auth_mode_headers
    except ImportError:
        return []
    return auth_mode_headers(fields)


def mask_bytes(payload, key):
    """payload XOR the repeated 4-byte key; fast for megabytes."""
    n = len(payload)
    if n == 0:
        return b""
    reps = key * (n // 4 + 1)
    a = int.from_bytes(payload, "little")
    b = int.from_bytes(reps[:n], "little")
    return (a ^ b).to_bytes(n, "little")


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                 mask_key=None, length_form=None, claim_len=None):
    """One frame. rsv: 3 bits (4 = RSV1, 2 = RSV2, 1 = RSV3). mask: False
    sends the payload unmasked (a client must not). length_form: None for
    the minimal encoding, or 7, 16, 64 to force one (non-minimal forms are
    a protocol error). claim_len: the length written in the header when it
    should differ from len(payload) (e.g. claim 1 GiB, send a few bytes)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if claim_len is None else claim_len
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n <= 125 else 16 if n <= 0xFFFF else 64
    if length_form == 7:
        assert n <= 125
        head = bytes([b0, mbit | n])
    elif length_form == 16:
        assert n <= 0xFFFF
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    elif length_form == 64:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    else:
        raise ValueError(f"length_form {length_form}")
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    assert len(key) == 4
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    @property
    def close_code(self):
        """The code of a close frame, or None if it carries none."""
        assert self.opcode == OP_CLOSE
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        op = OP_NAMES.get(self.opcode, hex(self.opcode))
        p = self.payload
        shown = p[:40] + (b"..." if len(p) > 40 else b"")
        return (f"<Frame {op} fin={int(self.fin)} rsv={self.rsv} "
                f"masked={int(self.masked)} len={len(p)} {shown!r}>")


class HttpHead:
    """The status line and header fields of a response, plus its body
    when it has a Content-Length."""

    def __init__(self, status, reason, headers, body=b""):
        self.status = status
        self.reason = reason
        self.headers = headers    # list of (lower-case name, value)
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def tokens(self, name):
        """The comma-separated tokens of every line of a field, lower
        case."""
        out = []
        for k, v in self.headers:
            if k == name.lower():
                out += [t.strip().lower() for t in v.split(",") if t.strip()]
        return out

    def __repr__(self):
        return f"<HttpHead {self.status} {self.reason!r} {self.headers!r} " \
               f"body={self.body[:80]!r}>"


class WsConn:
    """One TCP connection to the server, speaking WebSocket once open.
    Reads go through a bytearray buffer (so a 16 MiB frame does not cost
    quadratic copying)."""

    def __init__(self, port, timeout=TIMEOUT, host=HOST, rcvbuf=None):
        """rcvbuf: SO_RCVBUF set before connecting (a small one makes a
        client that does not read stall the server's writes sooner)."""
        self.port = port
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.key = None

    # ---- plumbing --------------------------------------------------------

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data, split=False, tolerate_closed=False):
        """Writes data: at once, or one byte per TCP segment (split=True:
        TCP_NODELAY is on, so each sendall is its own segment).
        tolerate_closed: a reset or broken pipe while writing is not an
        error (the server may close before it has everything: the test
        reads its close frame next). Returns False if writing failed."""
        try:
            if split:
                mv = memoryview(data)
                for i in range(len(mv)):
                    self.sock.sendall(mv[i:i + 1])
            else:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_closed:
                raise
            return False
        return True

    def _fill(self, deadline=None):
        if self.eof:
            raise Closed("eof")
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("deadline passed")
            self.sock.settimeout(min(left, self.timeout))
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            raise Closed(f"reset: {e}")
        finally:
            if deadline is not None:
                self.sock.settimeout(self.timeout)
        if not chunk:
            self.eof = True
            raise Closed("eof")
        self.buf += chunk

    def read_exact(self, n, deadline=None):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, marker, limit=65536, deadline=None):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                i += len(marker)
                out = bytes(self.buf[:i])
                del self.buf[:i]
                return out
            if len(self.buf) > limit:
                raise AssertionError(f"no {marker!r} in {limit} bytes")
            self._fill(deadline)

    def wait_closed(self, timeout):
        """Reads (keeping the bytes in the buffer) until EOF or reset.
        Returns the seconds it took, or None if still open after
        timeout."""
        t0 = time.monotonic()
        end = t0 + timeout
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        return time.monotonic() - t0

    def readable_within(self, timeout):
        """True if bytes (or EOF) are buffered or arrive within timeout."""
        if self.buf or self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    # ---- handshake -------------------------------------------------------

    def read_head(self, deadline=None, no_body=False):
        """Reads a response head, and its body if it has a Content-Length
        (no_body: the request was HEAD)."""
        raw = self.read_until(b"\r\n\r\n", deadline=deadline)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0] in ("HTTP/1.1", "HTTP/1.0"), \
            f"bad status line {lines[0]!r}"
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            assert sep, f"bad header line {line!r}"
            headers.append((k.strip().lower(), v.strip()))
        head = HttpHead(status, reason, headers)
        cl = head.header("content-length")
        if status >= 200 and cl is not None and not no_body:
            head.body = self.read_exact(int(cl), deadline)
        return head

    def handshake(self, path="/echo", key=None, split=False, **kw):
        """Sends an upgrade request (see handshake_request) and reads the
        response head. Does not check it."""
        self.key = key if key is not None else new_key()
        self.send_raw(handshake_request(path, self.key, **kw), split=split)
        return self.read_head(no_body=kw.get("method") == "HEAD")

    def open(self, path="/echo", **kw):
        """handshake() and assert a correct 101. Returns the head."""
        head = self.handshake(path, **kw)
        check_101(head, self.key)
        return head

    # ---- frames out ------------------------------------------------------

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True,
                   mask_key=None, length_form=None, claim_len=None,
                   split=False, tolerate_closed=False):
        data = encode_frame(opcode, payload, fin, rsv, mask, mask_key,
                            length_form, claim_len)
        return self.send_raw(data, split=split,
                             tolerate_closed=tolerate_closed)

    def send_text(self, text, **kw):
        if isinstance(text, str):
            text = text.encode()
        return self.send_frame(OP_TEXT, text, **kw)

    def send_binary(self, data, **kw):
        return self.send_frame(OP_BINARY, data, **kw)

    def send_ping(self, payload=b"", **kw):
        return self.send_frame(OP_PING, payload, **kw)

    def send_pong(self, payload=b"", **kw):
        return self.send_frame(OP_PONG, payload, **kw)

    def send_close(self, code=None, reason=b"", payload=None, **kw):
        if payload is None:
            payload = close_payload(code, reason)
        return self.send_frame(OP_CLOSE, payload, **kw)

    # ---- frames in -------------------------------------------------------

    def recv_frame(self, timeout=None):
        """Reads one frame (whole). Raises Closed on EOF, socket.timeout
        when nothing complete arrives within timeout (default: the socket
        timeout per read). Checks what a server frame must be: unmasked,
        minimal length encoding."""
        deadline = time.monotonic() + (timeout if timeout is not None
                                       else max(self.timeout, 30.0))
        h = self.read_exact(2, deadline)
        fin = bool(h[0] & 0x80)
        rsv = (h[0] >> 4) & 7
        opcode = h[0] & 0xF
        masked = bool(h[1] & 0x80)
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
            assert n > 125, f"server used a non-minimal 16-bit length {n}"
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
            assert 0xFFFF < n < (1 << 63), \
                f"server used a bad 64-bit length {n}"
        key = self.read_exact(4, deadline) if masked else None
        payload = self.read_exact(n, deadline)
        if masked:
            payload = mask_bytes(payload, key)
        f = Frame(fin, rsv, opcode, masked, payload)
        assert not masked, f"server frame is masked: {f!r}"
        assert rsv == 0, f"server frame has RSV bits: {f!r}"
        return f

    def recv_message(self, timeout=10.0, answer_pings=True, pongs=None):
        """Reads frames until one whole data message; returns (opcode,
        payload). Pings are answered (answer_pings) and pongs skipped
        (their payloads appended to the list pongs, if given). A close
        frame raises AssertionError."""
        deadline = time.monotonic() + timeout
        op = None
        parts = []
        while True:
            f = self.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_pong(f.payload, tolerate_closed=True)
                continue
            if f.opcode == OP_PONG:
                if pongs is not None:
                    pongs.append(f.payload)
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError(
                    f"close {f.close_code} {f.close_reason!r} while "
                    f"waiting for a message")
            if op is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), \
                    f"server sent {f!r} with no message in progress"
                op = f.opcode
            else:
                assert f.opcode == OP_CONT, \
                    f"server sent {f!r} inside a fragmented message"
            parts.append(f.payload)
            if f.fin:
                return op, b"".join(parts)

    def expect_close(self, code, timeout=5.0, allow_data=False,
                     then_eof=True, reply=False):
        """Reads frames until a close frame, within timeout, and asserts its
        code: code is an int, a set/tuple of acceptable ints (None inside
        means "no code"). Pings and pongs before it are skipped; data
        frames are an error unless allow_data. then_eof: also assert the
        server closes TCP within 3 s after its close frame. reply: answer
        with a close frame of the same code first. Returns (frame, frames
        seen before it)."""
        ok = code if isinstance(code, (set, tuple, list, frozenset)) \
            else {code}
        deadline = time.monotonic() + timeout
        before = []
        while True:
            left = deadline - time.monotonic()
            try:
                f = self.recv_frame(timeout=max(0.01, left))
            except Closed as e:
                raise AssertionError(
                    f"connection ended ({e}) without a close frame; "
                    f"wanted close {sorted(ok, key=str)}; frames before: "
                    f"{before!r}")
            except socket.timeout:
                raise AssertionError(
                    f"no close frame within {timeout} s; wanted close "
                    f"{sorted(ok, key=str)}; frames before: {before!r}")
            if f.opcode == OP_CLOSE:
                break
            if f.opcode in (OP_TEXT, OP_BINARY, OP_CONT) and not allow_data:
                raise AssertionError(
                    f"data frame {f!r} before the close (wanted close "
                    f"{sorted(ok, key=str)})")
            before.append(f)
        assert f.close_code in ok, \
            f"close code {f.close_code} (reason {f.close_reason!r}), " \
            f"wanted {sorted(ok, key=str)}"
        assert len(f.payload) != 1, f"close frame with 1-byte payload {f!r}"
        if f.payload[2:]:
            f.payload[2:].decode("utf-8")   # the reason must be UTF-8
        if reply:
            self.send_close(f.close_code, tolerate_closed=True)
        if then_eof:
            t = self.wait_closed(3.0)
            assert t is not None, \
                "server kept TCP open 3 s after its close frame"
            extra = bytes(self.buf)
            assert not extra, f"bytes after the close frame: {extra[:80]!r}"
        return f, before


def check_101(head, key):
    assert head.status == 101, f"wanted 101, got {head!r}"
    assert "websocket" in head.tokens("upgrade"), head
    assert "upgrade" in head.tokens("connection"), head
    got = head.header("sec-websocket-accept")
    assert got == accept_for(key), \
        f"Sec-WebSocket-Accept {got!r}, wanted {accept_for(key)!r}"


def connect(port, path="/echo", timeout=TIMEOUT, rcvbuf=None, **kw):
    """An open WebSocket (101 checked)."""
    c = WsConn(port, timeout=timeout, rcvbuf=rcvbuf)
    try:
        c.open(path, **kw)
    except BaseException:
        c.close()
        raise
    return c
