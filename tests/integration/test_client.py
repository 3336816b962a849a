"""moor's WebSocket client (moor_client_*), driven through the example
examples/ws_client.c, against three kinds of server:

- node's `ws` package (tests/integration/node/ws_echo_server.js): an
  independent implementation, for interop: text, binary, empty, 64 KiB,
  1 MiB, multi-byte text, byte-exact and in order;
- `moor serve` /echo;
- raw Python servers on plain sockets that read the client's bytes
  themselves: the request, the masking of every frame, and what the
  client does with a bad handshake, a silent server, a refused connect,
  a masked or otherwise broken server frame, a server close and pings.

The example is the one built beside the moor under test: build/release/
examples/ws_client, or build/debug/examples/ws_client (ASan + UBSan) when
MOOR_BIN is the debug build. It exits 1 and says so on stderr if moor
still holds memory at exit; every run here also fails on a sanitizer
report.
"""

import base64
import hashlib
import json
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time
import traceback

import pytest

from conftest import HOST, SANITIZER_MARKS, base_env, slack, tail_of
from conftest import NODE_DIR, example_bin, node_bin
from wsutil import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                    Frame, WsConn, accept_for, close_payload,
                    encode_frame, mask_bytes)

MiB = 1 << 20
LEAK_MARK = "BUG: moor still holds"


# ---- running the example ----------------------------------------------------

def client_bin():
    return example_bin("ws_client")


class Run:
    def __init__(self, args, rc, out, err, elapsed):
        self.args = args
        self.rc = rc
        self.out = out          # bytes
        self.err = err          # text
        self.elapsed = elapsed

    def __repr__(self):
        shown = [a if len(a) < 60 else a[:40] + f"...({len(a)} bytes)"
                 for a in map(str, self.args[:8])]
        if len(self.args) > 8:
            shown.append(f"... {len(self.args) - 8} more")
        return (f"ws_client {shown}: exit {self.rc} after "
                f"{self.elapsed:.2f} s\nstdout: {self.out[:300]!r}\n"
                f"stderr: {tail_of(self.err, 20)}")

    def lines(self):
        """stdout as a list of lines (every line ends with a newline)."""
        assert self.out == b"" or self.out.endswith(b"\n"), self
        return self.out.split(b"\n")[:-1]

    def replies(self):
        """-x output as [(is_text, bytes)]."""
        got = []
        for line in self.lines():
            kind, _, hexed = line.partition(b" ")
            assert kind in (b"text", b"binary"), f"bad -x line {line[:80]!r}"
            got.append((kind == b"text", bytes.fromhex(hexed.decode())))
        return got


def run_client(*args, timeout=30):
    """Runs the example to completion. Every run must be free of sanitizer
    reports and of the example's own live-memory check."""
    args = [a if isinstance(a, bytes) else str(a) for a in args]
    t0 = time.monotonic()
    p = subprocess.run([str(client_bin())] + args, env=base_env(),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    r = Run(args, p.returncode, p.stdout,
            p.stderr.decode(errors="replace"), time.monotonic() - t0)
    for mark in SANITIZER_MARKS + (LEAK_MARK,):
        assert mark not in r.err, f"{mark!r} in the output of {r!r}"
    return r


def own_lines(r):
    """The example's own stderr lines (the library may log lines of its
    own, "ts=... level=..."; those are not the example's)."""
    return [l for l in r.err.splitlines() if l.startswith("ws_client:")]


def expect_ok(r):
    assert r.rc == 0, f"wanted exit 0: {r!r}"
    assert not own_lines(r), f"wanted no complaint: {r!r}"


def expect_fail(r, *words):
    """Exit 1 and a one-line 'ws_client: ...' naming the cause: each of
    words (a string, or a tuple of alternatives) is in it, any case."""
    assert r.rc == 1, f"wanted exit 1: {r!r}"
    lines = own_lines(r)
    assert len(lines) == 1, f"wanted one 'ws_client: <why>' line: {r!r}"
    low = lines[0].lower()
    for w in words:
        alts = w if isinstance(w, tuple) else (w,)
        assert any(a.lower() in low for a in alts), \
            f"stderr does not name the cause ({' or '.join(alts)}): {r!r}"
    return lines[0]


def write_files(tmp_path, payloads):
    paths = []
    for i, data in enumerate(payloads):
        p = tmp_path / f"msg{i}"
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        paths.append(str(p))
    return paths


def text_of(n):
    """Exactly n bytes of UTF-8 with 1- to 4-byte characters."""
    unit = "moor κόσμε € 𝄞 "
    s = unit * (n // len(unit.encode()) + 1)
    b = s.encode()[:n]
    while True:
        try:
            return b.decode() + "x" * (n - len(b))
        except UnicodeDecodeError:
            b = b[:-1]


# ---- the node `ws` peer ---------------------------------------------------

class NodeServer:
    def __init__(self, tmp_path, path=None):
        self.out_path = tmp_path / "node-stdout.txt"
        self.err_path = tmp_path / "node-stderr.txt"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        cmd = [node_bin(), str(NODE_DIR / "ws_echo_server.js")]
        if path:
            cmd.append(path)
        self.proc = subprocess.Popen(cmd, cwd=NODE_DIR, stdout=self._out,
                                     stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        self.port = None
        end = time.monotonic() + 10
        while time.monotonic() < end and self.proc.poll() is None:
            first = self.out_path.read_bytes().split(b"\n", 1)
            if len(first) == 2:
                self.port = int(first[0])
                break
            time.sleep(0.01)
        if self.port is None:
            self.kill()
            raise AssertionError(
                f"node ws server gave no port: "
                f"{self.err_path.read_text(errors='replace')}")

    def url(self, path="/"):
        return f"ws://{HOST}:{self.port}{path}"

    def events(self, stop=True):
        """The JSON event lines so far (after SIGTERM and exit if stop)."""
        if stop and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        lines = self.out_path.read_text().splitlines()[1:]
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()


@pytest.fixture
def node_server(tmp_path):
    s = NodeServer(tmp_path)
    yield s
    s.kill()


def check_node_saw(events, sent, path="/"):
    """node's log: one connection to path, each message of sent
    [(is_text, bytes)] with its type and bytes, in order, then close
    1000 from the client."""
    conns = [e for e in events if e["event"] == "connection"]
    assert len(conns) == 1, events
    assert conns[0]["url"] == path, conns
    errors = [e for e in events if e["event"] == "error"]
    assert not errors, f"node ws saw a protocol error: {errors}"
    msgs = [e for e in events if e["event"] == "message"]
    assert len(msgs) == len(sent), \
        f"node got {len(msgs)} messages, the client sent {len(sent)}"
    for i, (m, (is_text, data)) in enumerate(zip(msgs, sent)):
        assert m["binary"] == (not is_text), f"message {i}: {m}"
        assert m["len"] == len(data), f"message {i}: {m}"
        assert m["sha256"] == hashlib.sha256(data).hexdigest(), \
            f"message {i}: bytes differ ({m})"
    closes = [e for e in events if e["event"] == "close"]
    assert [c["code"] for c in closes] == [1000], \
        f"node saw close {closes}, wanted one 1000 from the client"


# ---- raw servers ----------------------------------------------------------

class Peer(WsConn):
    """The server side of one accepted connection, on wsutil's buffered
    reader; frames from the client are parsed here (they are masked)."""

    def __init__(self, sock, timeout=5.0):  # pylint: disable=super-init-not-called
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.timeout = timeout
        self.port = None
        self.buf = bytearray()
        self.eof = False
        self.key = None
        self.request = None
        self.mask_keys = []

    def read_request(self):
        raw = self.read_until(b"\r\n\r\n", limit=16384)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            assert sep, f"bad request header line {line!r}"
            headers.append((k.strip().lower(), v.strip()))
        self.request = Request(method, target, version, headers, raw)
        return self.request

    def send_head(self, status_line, fields):
        head = status_line + "\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
        self.send_raw(head.encode("latin-1"))

    def accept(self):
        """Reads the request and answers a correct 101."""
        req = self.read_request()
        key = req.header("sec-websocket-key") or ""
        self.send_head("HTTP/1.1 101 Switching Protocols",
                       [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Accept", accept_for(key))])
        return req

    def send(self, opcode, payload=b"", fin=True, mask=False, rsv=0):
        self.send_raw(encode_frame(opcode, payload, fin=fin, rsv=rsv,
                                   mask=mask), tolerate_closed=True)

    def recv_client_frame(self, timeout=5.0):
        """One whole frame from the client. Asserts what every client frame
        must be: masked, RSV 0, minimal length encoding. Records the mask
        key."""
        deadline = time.monotonic() + timeout
        h = self.read_exact(2, deadline)
        fin, rsv, opcode = bool(h[0] & 0x80), (h[0] >> 4) & 7, h[0] & 0xF
        masked, n = bool(h[1] & 0x80), h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
            assert n > 125, f"client used a non-minimal 16-bit length {n}"
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
            assert 0xFFFF < n < (1 << 63), f"client sent 64-bit length {n}"
        assert masked, f"client frame (opcode {opcode}, {n} bytes) is not " \
                       f"masked: {bytes(h)!r}"
        key = self.read_exact(4, deadline)
        self.mask_keys.append(key)
        payload = mask_bytes(self.read_exact(n, deadline), key)
        assert rsv == 0, f"client frame has RSV bits {rsv}"
        return Frame(fin, rsv, opcode, masked, payload)

    def recv_client_message(self, timeout=5.0):
        op, parts = None, []
        while True:
            f = self.recv_client_frame(timeout)
            assert f.opcode != OP_CLOSE, \
                f"client closed ({f.close_code}) while a message was expected"
            if f.opcode in (OP_PING, OP_PONG):
                continue
            op = op if op is not None else f.opcode
            parts.append(f.payload)
            if f.fin:
                return op, b"".join(parts)

    def expect_client_close(self, code, timeout=5.0):
        """The next frame is a close with code; nothing but pongs first."""
        while True:
            f = self.recv_client_frame(timeout)
            if f.opcode == OP_PONG:
                continue
            assert f.opcode == OP_CLOSE, \
                f"wanted the client's close {code}, got {f!r}"
            assert f.close_code == code, \
                f"client's close code {f.close_code} " \
                f"(reason {f.close_reason!r}), wanted {code}"
            return f

    def finish_close(self, code=1000):
        """Answers the client's close and ends TCP (the server closes
        first, RFC 6455 7.1.1)."""
        self.send(OP_CLOSE, close_payload(code))
        self.end_tcp()

    def end_tcp(self):
        """Sends FIN, then expects the client's EOF and no more bytes."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        t = self.wait_closed(5.0)
        assert t is not None, "the client kept TCP open 5 s after the close"
        assert not self.buf, f"bytes after the close: {bytes(self.buf)[:80]!r}"


class Request:
    def __init__(self, method, target, version, headers, raw):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.raw = raw

    def header_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name):
        vals = self.header_all(name)
        return vals[0] if vals else None

    def tokens(self, name):
        return [t.strip().lower() for v in self.header_all(name)
                for t in v.split(",") if t.strip()]


class RawServer:
    """Listens on 127.0.0.1:0; a thread accepts `conns` connections one
    after another and runs handler(peer) on each. join() re-raises what a
    handler raised (a failed assertion about the client's bytes)."""

    def __init__(self, handler, conns=1):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(15)
        self.port = self.lsock.getsockname()[1]
        self.handler = handler
        self.conns = conns
        self.errors = []
        self.peers = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path="/"):
        return f"ws://{HOST}:{self.port}{path}"

    def _serve(self):
        for _ in range(self.conns):
            try:
                sock, _ = self.lsock.accept()
            except OSError as e:
                self.errors.append(f"no connection from the client: {e}")
                return
            peer = Peer(sock)
            self.peers.append(peer)
            try:
                self.handler(peer)
            except BaseException:   # reported by join()
                self.errors.append(traceback.format_exc())
            finally:
                peer.close()

    def join(self, timeout=15):
        self.thread.join(timeout)
        self.lsock.close()
        assert not self.thread.is_alive(), "the raw server is still busy"
        assert not self.errors, "raw server:\n" + "\n".join(self.errors)


def echo_handler(n, check=None):
    """Accepts, echoes n messages unmasked, then expects close 1000 and
    finishes the close. check(peer) runs after the handshake."""
    def handler(peer):
        peer.accept()
        if check:
            check(peer)
        for _ in range(n):
            op, data = peer.recv_client_message()
            peer.send(op, data)
        peer.expect_client_close(1000)
        peer.finish_close(1000)
    return handler


# ---- against node ws ------------------------------------------------------

def test_node_text_messages(node_server):
    msgs = ["hello", "", "héllo wörld € 𝄞", "a" * 125, "b" * 126, "c" * 127,
            text_of(65535), text_of(65536)]
    r = run_client("-x", node_server.url("/chat/room1"), *msgs)
    expect_ok(r)
    want = [(True, m.encode()) for m in msgs]
    got = r.replies()
    assert len(got) == len(want), f"{len(got)} replies to {len(want)}: {r!r}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"reply {i}: type text={g[0]}, {len(g[1])} bytes; " \
                       f"wanted {len(w[1])} bytes of text"
    check_node_saw(node_server.events(), want, path="/chat/room1")


def test_node_binary_messages(node_server, tmp_path):
    payloads = [b"", b"\x00", os.urandom(125), os.urandom(126),
                bytes(range(256)) * 256, os.urandom(65535), os.urandom(MiB),
                os.urandom(MiB + 1)]
    files = write_files(tmp_path, payloads)
    r = run_client("-b", "-f", "-x", node_server.url(), *files)
    expect_ok(r)
    got = r.replies()
    assert len(got) == len(payloads), f"{len(got)} replies: {r!r}"
    for i, ((is_text, data), want) in enumerate(zip(got, payloads)):
        assert not is_text, f"reply {i} came back as text"
        assert data == want, f"reply {i}: {len(data)} bytes, wanted " \
                             f"{len(want)} (or the bytes differ)"
    check_node_saw(node_server.events(), [(False, p) for p in payloads])


def test_node_large_text_and_plain_output(node_server, tmp_path):
    """1 MiB and 3 MiB of multi-byte text (many reads each way), from
    files; then the default output: each reply as it is, one per line."""
    texts = [text_of(MiB), text_of(3 * MiB)]
    r = run_client("-f", "-x", node_server.url(), *write_files(tmp_path,
                                                                texts))
    expect_ok(r)
    assert r.replies() == [(True, t.encode()) for t in texts], \
        "1 MiB / 3 MiB text replies differ"
    r = run_client(node_server.url(), "hello", "wörld", "", "last")
    expect_ok(r)
    assert r.out == "hello\nwörld\n\nlast\n".encode(), r
    events = node_server.events()
    assert [e["code"] for e in events if e["event"] == "close"] == [1000] * 2


def test_node_no_messages(node_server):
    """No MESSAGE: connect, close with 1000, exit 0."""
    r = run_client(node_server.url())
    expect_ok(r)
    assert r.out == b"", r
    check_node_saw(node_server.events(), [])


# ---- against moor serve ---------------------------------------------------

def test_moor_serve_echo(moor, tmp_path):
    server = moor()
    url = f"ws://{HOST}:{server.port}/echo"
    msgs = ["hello", "", "κόσμε 𝄞", text_of(65536)]
    r = run_client("-x", url, *msgs)
    expect_ok(r)
    assert r.replies() == [(True, m.encode()) for m in msgs], r
    big = [os.urandom(MiB), b"", os.urandom(70000)]
    r = run_client("-b", "-f", "-x", url, *write_files(tmp_path, big))
    expect_ok(r)
    assert r.replies() == [(False, b) for b in big], \
        "binary echoes from moor serve differ"


@pytest.mark.wall(30)
def test_moor_serve_pipelined_megabytes(moor, tmp_path):
    """24 messages of 1 MiB sent back to back (the example sends until
    moor reports backpressure, then on each on_drain): more than the
    queue limits and socket buffers of both sides together. Each side
    must keep reading while its writes are blocked, or the two
    backpressure pauses wait for each other forever."""
    server = moor()
    url = f"ws://{HOST}:{server.port}/echo"
    payloads = [os.urandom(MiB) for _ in range(4)]
    files = write_files(tmp_path, payloads) * 6
    # A deadlock never finishes; a slow run does. The sanitizer build
    # takes 7-9 s alone here (48 MB of hex replies), more under load, so
    # the client's own limit is generous: the test is about finishing.
    r = run_client("-t", "30", "-b", "-f", "-x", url, *files, timeout=60)
    assert r.rc == 0, f"pipelined 24 MiB through moor serve /echo: {r!r}\n" \
        f"server: {server.metrics().family('moor_connections_paused')}"
    got = r.replies()
    assert len(got) == 24
    assert all(g == (False, payloads[i % 4]) for i, g in enumerate(got))


def test_moor_serve_wrong_path(moor):
    server = moor()
    r = run_client(f"ws://{HOST}:{server.port}/nope")
    expect_fail(r, "404")


# ---- the request and masking ----------------------------------------------

def test_request_is_a_proper_upgrade():
    """GET with Host, Upgrade, Connection, a fresh 16-byte key per
    connection and version 13; nothing sent before the 101."""
    keys = []

    def check(peer):
        req = peer.request
        assert (req.method, req.target, req.version) == \
            ("GET", "/a/b", "HTTP/1.1"), req.raw
        assert req.header_all("host") == [f"{HOST}:{server.port}"], req.raw
        assert "websocket" in req.tokens("upgrade"), req.raw
        assert "upgrade" in req.tokens("connection"), req.raw
        assert req.header_all("sec-websocket-version") == ["13"], req.raw
        k = req.header_all("sec-websocket-key")
        assert len(k) == 1, req.raw
        assert len(base64.b64decode(k[0], validate=True)) == 16, req.raw
        assert len(k[0]) == 24, req.raw
        keys.append(k[0])
        # The client must wait for the 101 (sent by now) before a frame;
        # nothing else may follow the request head.
        assert not peer.buf, f"bytes after the request: {bytes(peer.buf)!r}"

    def handler(peer):
        req = peer.read_request()
        time.sleep(0.2)     # a frame sent too early would arrive meanwhile
        r, _, _ = select.select([peer.sock], [], [], 0)
        assert not r, "the client sent something before the 101"
        peer.request = req
        check(peer)
        peer.send_head("HTTP/1.1 101 Switching Protocols",
                       [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Accept",
                         accept_for(req.header("sec-websocket-key")))])
        op, data = peer.recv_client_message()
        assert (op, data) == (OP_TEXT, b"ping?"), (op, data)
        peer.send(OP_TEXT, b"pong!")
        peer.expect_client_close(1000)
        peer.finish_close()

    server = RawServer(handler, conns=3)
    for _ in range(3):
        r = run_client(server.url("/a/b"), "ping?")
        expect_ok(r)
        assert r.out == b"pong!\n", r
    server.join()
    assert len(set(keys)) == 3, f"Sec-WebSocket-Key repeats: {keys}"


def test_101_in_other_spellings():
    """Field names in any case, token lists, a reason phrase of our own:
    all a valid 101."""
    def handler(peer):
        req = peer.read_request()
        peer.send_raw(
            ("HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
             "upgrade: WebSocket\r\n"
             "CONNECTION: keep-alive, Upgrade\r\n"
             "Server: raw\r\n"
             f"sec-websocket-accept: "
             f"{accept_for(req.header('sec-websocket-key'))}\r\n"
             "\r\n").encode())
        op, data = peer.recv_client_message()
        peer.send(op, data)
        peer.expect_client_close(1000)
        peer.finish_close()

    server = RawServer(handler)
    r = run_client(server.url(), "spelled")
    server.join()
    expect_ok(r)
    assert r.out == b"spelled\n", r


def test_101_one_byte_at_a_time():
    """A response head split into 1-byte segments."""
    def handler(peer):
        req = peer.read_request()
        head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                f"{accept_for(req.header('sec-websocket-key'))}\r\n\r\n")
        for ch in head.encode():
            peer.send_raw(bytes([ch]))
            time.sleep(0.001)
        op, data = peer.recv_client_message()
        peer.send(op, data)
        peer.expect_client_close(1000)
        peer.finish_close()

    server = RawServer(handler)
    r = run_client(server.url(), "slow")
    server.join()
    expect_ok(r)
    assert r.out == b"slow\n", r


def test_frame_in_the_101_segment():
    """The server's first frame arrives in the same segment as the 101:
    the bytes after the head are frames, not lost."""
    def handler(peer):
        req = peer.read_request()
        head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                f"{accept_for(req.header('sec-websocket-key'))}\r\n\r\n")
        peer.send_raw(head.encode() +
                      encode_frame(OP_TEXT, b"welcome", mask=False))
        assert peer.recv_client_message() == (OP_TEXT, b"a")
        assert peer.recv_client_message() == (OP_TEXT, b"b")
        peer.send(OP_TEXT, b"a")
        peer.expect_client_close(1000)
        peer.finish_close()

    server = RawServer(handler)
    r = run_client(server.url(), "a", "b")
    server.join()
    expect_ok(r)
    assert r.out == b"welcome\na\n", r


def test_every_frame_masked_with_a_fresh_key():
    msgs = ["a", "", "b" * 125, "c" * 126, "d" * 65535, "e" * 65536, "f" * 9,
            "g" * 9, "g" * 9]
    got = []

    def handler(peer):
        peer.accept()
        for _ in msgs:
            op, data = peer.recv_client_message()
            got.append((op, data))
            peer.send(op, data)
        peer.expect_client_close(1000)
        keys = peer.mask_keys
        assert len(keys) == len(msgs) + 1, keys
        assert len(set(keys)) == len(keys), \
            f"mask keys repeat (a fresh random key per frame is required): " \
            f"{[k.hex() for k in keys]}"
        assert b"\x00\x00\x00\x00" not in keys, \
            f"an all-zero mask key: {[k.hex() for k in keys]}"
        peer.finish_close()

    server = RawServer(handler)
    r = run_client(server.url(), *msgs)
    server.join()
    expect_ok(r)
    assert got == [(OP_TEXT, m.encode()) for m in msgs], \
        "payloads did not unmask to what was sent"
    assert r.lines() == [m.encode() for m in msgs]


def test_mask_keys_across_many_frames():
    """300 frames: past any batch of random bytes a client might keep for
    its mask keys, no key repeats (a refill that reused old bytes would
    show here; a chance collision of 300 random keys is ~1e-5)."""
    msgs = [f"m{i}" for i in range(299)]

    def handler(peer):
        peer.accept()
        for m in msgs:
            assert peer.recv_client_message() == (OP_TEXT, m.encode())
            peer.send(OP_TEXT, m.encode())
        peer.expect_client_close(1000)
        keys = peer.mask_keys
        assert len(keys) == 300, len(keys)
        dup = {k.hex() for k in keys if keys.count(k) > 1}
        assert not dup, f"mask keys repeat: {sorted(dup)}"
        peer.finish_close()

    server = RawServer(handler)
    r = run_client(server.url(), *msgs)
    server.join()
    expect_ok(r)
    assert r.lines() == [m.encode() for m in msgs]


def test_binary_frames_masked(tmp_path):
    payloads = [os.urandom(70000), b"\x00" * 300, b""]
    got = []

    def handler(peer):
        peer.accept()
        for _ in payloads:
            got.append(peer.recv_client_message())
            peer.send(*got[-1])
        peer.expect_client_close(1000)
        assert len(set(peer.mask_keys)) == len(peer.mask_keys), \
            [k.hex() for k in peer.mask_keys]
        peer.finish_close()

    server = RawServer(handler)
    r = run_client("-b", "-f", "-x", server.url(),
                   *write_files(tmp_path, payloads))
    server.join()
    expect_ok(r)
    assert got == [(OP_BINARY, p) for p in payloads]
    assert r.replies() == [(False, p) for p in payloads]


# ---- handshake failures -----------------------------------------------------

BAD_ANSWERS = {
    "404": ("HTTP/1.1 404 Not Found",
            [("Content-Length", "9")], b"not here\n", ("404",)),
    "200": ("HTTP/1.1 200 OK",
            [("Content-Length", "3")], b"ok\n", ("200",)),
    "wrong accept": ("HTTP/1.1 101 Switching Protocols",
                     [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                      ("Sec-WebSocket-Accept",
                       "dGhlIHNhbXBsZSBub25jZQ==")], b"", ("accept",)),
    "no accept": ("HTTP/1.1 101 Switching Protocols",
                  [("Upgrade", "websocket"), ("Connection", "Upgrade")], b"",
                  ("accept",)),
    "no upgrade": ("HTTP/1.1 101 Switching Protocols",
                   [("Connection", "Upgrade"), ("Sec-WebSocket-Accept", None)],
                   b"", ("upgrade",)),
    "upgrade h2c": ("HTTP/1.1 101 Switching Protocols",
                    [("Upgrade", "h2c"), ("Connection", "Upgrade"),
                     ("Sec-WebSocket-Accept", None)], b"", ("upgrade",)),
    "no connection": ("HTTP/1.1 101 Switching Protocols",
                      [("Upgrade", "websocket"),
                       ("Sec-WebSocket-Accept", None)], b"",
                      ("connection",)),
    "unrequested extension": ("HTTP/1.1 101 Switching Protocols",
                              [("Upgrade", "websocket"),
                               ("Connection", "Upgrade"),
                               ("Sec-WebSocket-Accept", None),
                               ("Sec-WebSocket-Extensions",
                                "permessage-deflate")], b"",
                              ("extension",)),
    "unrequested protocol": ("HTTP/1.1 101 Switching Protocols",
                             [("Upgrade", "websocket"),
                              ("Connection", "Upgrade"),
                              ("Sec-WebSocket-Accept", None),
                              ("Sec-WebSocket-Protocol", "chat")], b"",
                             ("protocol",)),
    "huge head": ("HTTP/1.1 101 Switching Protocols",
                  [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("X-Pad", "a" * 10000), ("Sec-WebSocket-Accept", None)],
                  b"", (("large", "long"),)),
    "garbage": ("SSH-2.0-OpenSSH_9.2p1", [], b"", (("handshake", "http",
                                                    "response", "malformed",
                                                    "invalid", "bad"),)),
}


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_bad_handshake_answer(case):
    status, fields, body, words = BAD_ANSWERS[case]

    def handler(peer):
        req = peer.read_request()
        key = req.header("sec-websocket-key") or ""
        # None stands for the right accept value (the case is about
        # something else).
        out = [(k, accept_for(key) if v is None else v) for k, v in fields]
        peer.send_head(status, out)
        if body:
            peer.send_raw(body, tolerate_closed=True)
        t = peer.wait_closed(5.0)
        assert t is not None, "the client kept TCP open after a bad answer"
        assert not peer.buf, \
            f"the client sent bytes after a bad answer: {bytes(peer.buf)!r}"

    server = RawServer(handler)
    r = run_client("-t", "8", server.url(), "hello")
    server.join()
    expect_fail(r, *words)
    assert r.out == b"", r
    assert r.elapsed < slack(3), f"took {r.elapsed:.1f} s to give up: {r!r}"


def test_silent_server_connect_timeout():
    """TCP accepted, the request read, no answer: the client gives up at
    its connect timeout (-c), not at the run's deadline (-t)."""
    def handler(peer):
        peer.read_request()
        t = peer.wait_closed(10.0)
        assert t is not None, "the client never gave up"

    server = RawServer(handler)
    r = run_client("-c", "0.5", "-t", "8", server.url(), "hello")
    server.join()
    line = expect_fail(r, ("timeout", "timed out"))
    assert "after 8 s" not in line, \
        f"the run's deadline fired, not the connect timeout: {r!r}"
    assert 0.4 < r.elapsed < slack(2.5), \
        f"gave up after {r.elapsed:.2f} s, wanted about 0.5 s: {r!r}"


def test_server_hangs_up_before_answering():
    def handler(peer):
        peer.read_request()
        peer.sock.shutdown(socket.SHUT_RDWR)

    server = RawServer(handler)
    r = run_client(server.url(), "hello")
    server.join()
    expect_fail(r, "closed")
    assert r.elapsed < slack(2), r


def test_connection_refused():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))      # bound, not listening: a SYN gets a reset
    try:
        r = run_client(f"ws://{HOST}:{s.getsockname()[1]}/", "hello")
    finally:
        s.close()
    expect_fail(r, "refused")
    assert r.elapsed < slack(2), r


def test_usage_and_bad_url():
    for args in ([], ["-t"], ["-t", "abc", "ws://127.0.0.1:1/"],
                 ["-q", "ws://127.0.0.1:1/"]):
        r = run_client(*args)
        assert r.rc == 2 and "usage" in r.err, r
    for url in ("http://127.0.0.1:1/", "ws://", "ws://127.0.0.1:99999/",
                "not a url"):
        r = run_client(url)
        assert r.rc == 2, r
        assert r.err.startswith("ws_client: "), r


# ---- what the server sends --------------------------------------------------

BAD_FRAMES = {
    "masked": (encode_frame(OP_TEXT, b"oops", mask=True), 1002),
    "rsv1": (encode_frame(OP_TEXT, b"oops", rsv=4, mask=False), 1002),
    "opcode 3": (encode_frame(3, b"oops", mask=False), 1002),
    "bad utf8": (encode_frame(OP_TEXT, b"ok \xff\xfe", mask=False), 1007),
    "long ping": (encode_frame(OP_PING, b"p" * 126, mask=False), 1002),
    "orphan cont": (encode_frame(OP_CONT, b"oops", mask=False), 1002),
    # Decided from the header, before any payload (max_message 16 MiB).
    "too big": (encode_frame(OP_BINARY, b"", mask=False,
                             claim_len=16 * MiB + 1), 1009),
    "close 1005": (encode_frame(OP_CLOSE, close_payload(1005), mask=False),
                   1002),
    "close 1 byte": (encode_frame(OP_CLOSE, b"\x03", mask=False), 1002),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_server_breaks_protocol(case):
    """The client fails the connection: a close frame with the code
    (masked, like every client frame) and no message delivered."""
    frame, code = BAD_FRAMES[case]

    def handler(peer):
        peer.accept()
        assert peer.recv_client_message() == (OP_TEXT, b"hi")
        peer.send_raw(frame)
        peer.expect_client_close(code)
        peer.send(OP_CLOSE, close_payload(code))
        t = peer.wait_closed(5.0)
        assert t is not None, "the client kept TCP open after failing"

    server = RawServer(handler)
    r = run_client(server.url(), "hi")
    server.join()
    expect_fail(r)
    assert r.out == b"", f"a bad frame was delivered: {r!r}"
    assert f"code {code}" in r.err or "code 1006" in r.err, r


@pytest.mark.parametrize("code", [1000, 1001, 4000, None])
def test_server_closes_first(code):
    """A server close before the reply: the client answers with a close
    echoing the code (none for none) and reports the code (1005 for
    none) and the missing reply (exit 1, as documented)."""
    def handler(peer):
        peer.accept()
        assert peer.recv_client_message() == (OP_TEXT, b"hello")
        peer.send(OP_CLOSE, close_payload(code, "bye" if code else b""))
        peer.expect_client_close(code)
        peer.end_tcp()

    server = RawServer(handler)
    r = run_client(server.url(), "hello")
    server.join()
    line = expect_fail(r, f"code {code or 1005}", "0 of 1 replies")
    assert re.match(r"ws_client: \S", line), f"moor_ws_error() empty: {r!r}"


def test_server_echoes_then_closes():
    """Reply and close 1000 back to back: all replies are in, the close
    handshake completes whoever started it: exit 0."""
    def handler(peer):
        peer.accept()
        op, data = peer.recv_client_message()
        peer.send_raw(encode_frame(op, data, mask=False) +
                      encode_frame(OP_CLOSE, close_payload(1000), mask=False))
        peer.expect_client_close(1000)
        peer.end_tcp()

    server = RawServer(handler)
    r = run_client(server.url(), "hello")
    server.join()
    expect_ok(r)
    assert r.out == b"hello\n"


def test_server_drops_tcp():
    """No close frame, just EOF: on_close with 1006, exit 1."""
    def handler(peer):
        peer.accept()
        peer.recv_client_message()
        peer.sock.shutdown(socket.SHUT_RDWR)

    server = RawServer(handler)
    r = run_client(server.url(), "hello")
    server.join()
    expect_fail(r, "code 1006", "0 of 1 replies")


def test_server_ping_and_fragments():
    """Pings (empty, short, 125 bytes) get pongs with the same payload;
    a fragmented message with a ping between its fragments arrives as
    one message."""
    pings = [b"are you there?", b"", bytes(range(125))]

    def handler(peer):
        peer.accept()
        assert peer.recv_client_message() == (OP_TEXT, b"x")
        for p in pings:
            peer.send(OP_PING, p)
            f = peer.recv_client_frame()
            assert f.opcode == OP_PONG, f"wanted a pong for ping {p!r}: {f!r}"
            assert f.payload == p, f"pong payload {f.payload!r}, wanted {p!r}"
        peer.send_raw(encode_frame(OP_TEXT, b"frag", fin=False, mask=False) +
                      encode_frame(OP_PING, b"mid", mask=False) +
                      encode_frame(OP_CONT, "mented κό".encode()[:-1],
                                   fin=False, mask=False) +
                      encode_frame(OP_CONT, "κό".encode()[-1:], mask=False))
        f = peer.recv_client_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"mid"), f
        peer.expect_client_close(1000)
        keys = peer.mask_keys
        assert len(set(keys)) == len(keys), [k.hex() for k in keys]
        peer.finish_close()

    server = RawServer(handler)
    r = run_client(server.url(), "x")
    server.join()
    expect_ok(r)
    assert r.out == "fragmented κό\n".encode(), r


def test_server_never_replies_deadline():
    """Open, but no reply ever: the run's deadline (-t) ends it, the
    connection is freed (moor_client_free closes it), exit 1."""
    def handler(peer):
        peer.accept()
        peer.recv_client_message()
        peer.wait_closed(10.0)

    server = RawServer(handler)
    r = run_client("-t", "0.7", server.url(), "hello")
    server.join()
    # moor_client_free() closed the open connection: on_close with 1006.
    expect_fail(r, "timed out", "code 1006", "0 of 1 replies")
    assert 0.6 < r.elapsed < slack(3), r


@pytest.mark.wall(30)
def test_server_ignores_our_close():
    """The server never answers the client's close and keeps TCP open:
    the client gives up after its close timeout (5 s by default), before
    the run's deadline (-t 9)."""
    def handler(peer):
        peer.accept()
        op, data = peer.recv_client_message()
        peer.send(op, data)
        peer.expect_client_close(1000)
        t = peer.wait_closed(9.0)
        assert t is not None, "the client never closed TCP"

    server = RawServer(handler)
    r = run_client("-t", "9", server.url(), "hello")
    server.join()
    assert r.out == b"hello\n", r
    assert "after 9 s" not in r.err, \
        f"the run's deadline ended it, not the close timeout: {r!r}"
    assert 4 < r.elapsed < slack(7), r
