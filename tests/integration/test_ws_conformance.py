"""WebSocket conformance of GET /echo: RFC 6455 plus moor's choices.

Raw sockets throughout (wsutil), so every byte is ours: the handshake and
its failures, frame flags, opcodes, masks and length encodings, messages
written one byte per TCP segment, fragmentation with pings in between,
UTF-8 checked as it streams in (fail fast), close codes, --max-message
decided from the header, ping/pong liveness, and the SIGTERM drain.

The server's answer to a protocol error is a close frame with the code,
then the end of the TCP connection; expect_close() checks both.
"""

import os
import random
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import assert_clean_exit, slack
from wsutil import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                    Closed, WsConn, accept_for, connect, encode_frame)

MiB = 1 << 20


def text_payload(size):
    """Valid UTF-8 of exactly size bytes, with 1- to 4-byte characters."""
    unit = "moor κόσμε € 𝄞 ".encode()
    out = (unit * (size // len(unit) + 1))[:size]
    # Cut back to a character boundary, then pad with ASCII.
    while True:
        try:
            out.decode("utf-8")
            break
        except UnicodeDecodeError:
            out = out[:-1]
    return out + b"x" * (size - len(out))


def binary_payload(size):
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def payload_for(opcode, size):
    return text_payload(size) if opcode == OP_TEXT else binary_payload(size)


def close_clean(ws, code=1000):
    """Our close, the server's echo of the code, then the end of TCP."""
    ws.send_close(code, b"bye")
    ws.expect_close(code)


def assert_echo(ws, opcode, payload, **kw):
    op, got = ws.recv_message(**kw)
    assert op == opcode, f"echo has opcode {op}, sent {opcode}"
    assert len(got) == len(payload), \
        f"echo of {len(payload)} bytes has {len(got)}"
    assert got == payload, "echo differs from what was sent"


def violation(server, frames, code, split=False):
    """Opens a WebSocket, writes frames (bytes, or a list of bytes), and
    expects a close with code followed by the end of TCP."""
    if isinstance(frames, (bytes, bytearray)):
        frames = [frames]
    with connect(server.port) as ws:
        for f in frames:
            if not ws.send_raw(f, split=split, tolerate_closed=True):
                break
        return ws.expect_close(code)


# ---- handshake -------------------------------------------------------------

def test_handshake_101_and_accept(server):
    with WsConn(server.port) as ws:
        key = "dGhlIHNhbXBsZSBub25jZQ=="   # RFC 6455's example key
        head = ws.handshake(key=key)
        assert head.status == 101, head
        assert head.header("sec-websocket-accept") == \
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head
        assert "websocket" in head.tokens("upgrade")
        assert "upgrade" in head.tokens("connection")
        assert head.header("sec-websocket-protocol") is None
        assert head.header("sec-websocket-extensions") is None
        close_clean(ws)


@pytest.mark.parametrize("fields", [
    {"Upgrade": "WebSocket", "Connection": "upgrade"},
    {"Upgrade": "WEBSOCKET", "Connection": "UPGRADE"},
    {"Connection": "keep-alive, Upgrade"},
    {"Connection": "Upgrade,keep-alive"},
    {"Connection": "  keep-alive ,  upgrade  "},
    {"Upgrade": "foo/1, websocket"},
], ids=["mixed-case", "upper-case", "conn-list", "conn-list-2",
        "conn-list-spaces", "upgrade-list"])
def test_handshake_token_lists_any_case(server, fields):
    with WsConn(server.port) as ws:
        ws.open(replace=fields)
        ws.send_text("hi")
        assert_echo(ws, OP_TEXT, b"hi")
        close_clean(ws)


def test_handshake_fields_over_several_lines(server):
    """Connection and Upgrade tokens may come in several field lines."""
    with WsConn(server.port) as ws:
        ws.open(omit=["Connection", "Upgrade"],
                headers=[("Connection", "keep-alive"),
                         ("Upgrade", "foo/2"),
                         ("Connection", "Upgrade"),
                         ("Upgrade", "websocket")])
        ws.send_text("lines")
        assert_echo(ws, OP_TEXT, b"lines")
        close_clean(ws)


def test_upgrade_after_keepalive_request(server):
    """A keep-alive connection that served a plain request can then be
    upgraded."""
    with WsConn(server.port) as ws:
        ws.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = ws.read_head()
        assert head.status == 200 and head.body == b"ok\n", head
        ws.open()
        ws.send_text("upgraded late")
        assert_echo(ws, OP_TEXT, b"upgraded late")
        close_clean(ws)


def test_http_timeouts_do_not_apply_after_upgrade(moor):
    """--idle-timeout and --header-timeout are HTTP deadlines: a quiet
    WebSocket (ping interval 30 s) outlives them."""
    s = moor("--idle-timeout", "500ms", "--header-timeout", "500ms",
             "--body-timeout", "500ms")
    with connect(s.port) as ws:
        assert ws.wait_closed(2.0) is None, \
            "a quiet WebSocket was closed by an HTTP timeout"
        assert not ws.buf, f"unexpected bytes {bytes(ws.buf)!r}"
        ws.send_text("still open")
        assert_echo(ws, OP_TEXT, b"still open")
        close_clean(ws)


def test_handshake_split_into_bytes(server):
    with WsConn(server.port) as ws:
        ws.open(split=True)
        ws.send_text("after a byte-split handshake")
        assert_echo(ws, OP_TEXT, b"after a byte-split handshake")
        close_clean(ws)


def test_handshake_subprotocol_offered_none_chosen(server):
    with WsConn(server.port) as ws:
        head = ws.open(headers=[("Sec-WebSocket-Protocol", "chat, superchat")])
        assert head.header("sec-websocket-protocol") is None, head
        close_clean(ws)


def test_handshake_extension_offered_not_accepted(server):
    """permessage-deflate is not negotiated; RSV1 stays a protocol error."""
    with WsConn(server.port) as ws:
        offer = "permessage-deflate; client_max_window_bits"
        head = ws.open(headers=[("Sec-WebSocket-Extensions", offer)])
        assert head.header("sec-websocket-extensions") is None, head
        ws.send_text("plain")
        assert_echo(ws, OP_TEXT, b"plain")
        close_clean(ws)


BAD_HANDSHAKES = {
    # name: (request kwargs, status)
    "no-upgrade": (dict(omit=["Upgrade"]), 400),
    "upgrade-h2c": (dict(replace={"Upgrade": "h2c"}), 400),
    "no-connection": (dict(omit=["Connection"]), 400),
    "connection-keep-alive": (dict(replace={"Connection": "keep-alive"}), 400),
    "connection-upgrades": (dict(replace={"Connection": "upgrades"}), 400),
    "no-key": (dict(omit=["Sec-WebSocket-Key"]), 400),
    "key-not-base64": (dict(key="!!!!!!!!!!!!!!!!!!!!!!=="), 400),
    "key-15-bytes": (dict(key="AAAAAAAAAAAAAAAAAAAA"), 400),
    "key-17-bytes": (dict(key="AAAAAAAAAAAAAAAAAAAAAAA="), 400),
    "key-16-bytes-twice": (dict(headers=[("Sec-WebSocket-Key",
                                         "AAAAAAAAAAAAAAAAAAAAAA==")]), 400),
    "key-empty": (dict(key=""), 400),
    "http-1.0": (dict(version="HTTP/1.0"), 400),
    "post": (dict(method="POST", headers=[("Content-Length", "0")]), 405),
    "put": (dict(method="PUT", headers=[("Content-Length", "0")]), 405),
    "delete": (dict(method="DELETE"), 405),
    "head": (dict(method="HEAD"), 405),
    "no-version": (dict(omit=["Sec-WebSocket-Version"]), 426),
    "version-8": (dict(replace={"Sec-WebSocket-Version": "8"}), 426),
    "version-12": (dict(replace={"Sec-WebSocket-Version": "12"}), 426),
    "version-14": (dict(replace={"Sec-WebSocket-Version": "14"}), 426),
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
def test_handshake_rejected(server, name):
    kw, status = BAD_HANDSHAKES[name]
    with WsConn(server.port) as ws:
        head = ws.handshake(**kw)
        assert head.status == status, f"{name}: {head!r}"
        assert head.header("sec-websocket-accept") is None, head
        if status == 426:
            assert head.header("sec-websocket-version") == "13", head
        if status == 405:
            allow = (head.header("allow") or "").split(",")
            assert "GET" in [m.strip() for m in allow], head
    # The server is still fine.
    with connect(server.port) as ws:
        close_clean(ws)


def test_handshake_rejected_then_no_websocket(server):
    """After a refused upgrade the connection does not speak WebSocket: a
    frame sent next gets no echo."""
    with WsConn(server.port) as ws:
        head = ws.handshake(omit=["Sec-WebSocket-Version"])
        assert head.status == 426
        ws.send_text("not a websocket", tolerate_closed=True)
        deadline = time.monotonic() + 1.0
        try:
            while time.monotonic() < deadline:
                if ws.readable_within(deadline - time.monotonic()):
                    ws._fill(deadline)
        except (Closed, socket.timeout, OSError):
            pass
        assert b"not a websocket" not in bytes(ws.buf)


ORIGINS = "https://app.example,http://localhost:3000"


@pytest.mark.parametrize("origin,status", [
    ("https://app.example", 101),
    ("http://localhost:3000", 101),
    ("https://evil.example", 403),
    ("https://app.example.evil.example", 403),
    ("http://app.example", 403),
    ("http://localhost:3001", 403),
    ("null", 403),
])
def test_allowed_origins(moor, origin, status):
    s = moor("--allowed-origins", ORIGINS)
    with WsConn(s.port) as ws:
        head = ws.handshake(headers=[("Origin", origin)])
        assert head.status == status, f"Origin {origin}: {head!r}"
        if status == 101:
            assert head.header("sec-websocket-accept") == accept_for(ws.key)
            ws.send_text(origin)
            assert_echo(ws, OP_TEXT, origin.encode())
            close_clean(ws)
        else:
            assert head.header("sec-websocket-accept") is None


def test_any_origin_without_allowed_origins(server):
    with WsConn(server.port) as ws:
        head = ws.open(headers=[("Origin", "https://anything.example")])
        assert head.status == 101
        close_clean(ws)


# ---- echo: sizes, types, one byte per TCP write ---------------------------

SIZES = [0, 125, 126, 127, 65535, 65536]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_echo_sizes_whole_and_bytewise(server, opcode, size):
    payload = payload_for(opcode, size)
    with connect(server.port) as ws:
        ws.send_frame(opcode, payload)
        assert_echo(ws, opcode, payload)
        # The same message, one byte per TCP segment.
        ws.send_frame(opcode, payload, split=True)
        assert_echo(ws, opcode, payload, timeout=30)
        close_clean(ws)


@pytest.mark.wall(120)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_echo_16mib(server, opcode):
    """The default --max-message is 16 MiB: a message of exactly that size
    is echoed whole."""
    payload = payload_for(opcode, 16 * MiB)
    with connect(server.port, timeout=30) as ws:
        ws.send_frame(opcode, payload)
        assert_echo(ws, opcode, payload, timeout=60)
        # The connection is still fine afterwards.
        small = payload_for(opcode, 10)
        ws.send_frame(opcode, small)
        assert_echo(ws, opcode, small)
        close_clean(ws)


@pytest.mark.parametrize("mask_key", [b"\0\0\0\0", b"\xff\xff\xff\xff",
                                      b"\x01\x02\x03\x04"],
                         ids=["zero", "ones", "1234"])
def test_echo_mask_keys(server, mask_key):
    with connect(server.port) as ws:
        ws.send_frame(OP_BINARY, binary_payload(1000), mask_key=mask_key)
        assert_echo(ws, OP_BINARY, binary_payload(1000))
        close_clean(ws)


def test_echo_many_messages_in_one_write(server):
    msgs = [(OP_TEXT if i % 2 else OP_BINARY, payload_for(
        OP_TEXT if i % 2 else OP_BINARY, i * 37 % 300)) for i in range(100)]
    with connect(server.port) as ws:
        ws.send_raw(b"".join(encode_frame(op, p) for op, p in msgs))
        for op, p in msgs:
            assert_echo(ws, op, p)
        close_clean(ws)


# ---- fragmentation ---------------------------------------------------------

def fragments(opcode, payload, size=1, ping_between=False, empty_first=False):
    """Frames of a fragmented message: pieces of size bytes (the first
    with opcode, the rest continuations, FIN on the last), optionally a
    ping after every fragment but the last, optionally an empty first
    fragment. Returns (frames, ping payloads in order)."""
    pieces = [payload[i:i + size] for i in range(0, len(payload), size)]
    if empty_first or not pieces:
        pieces.insert(0, b"")
    if len(pieces) == 1:
        pieces.append(b"")
    frames, pings = [], []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        frames.append(encode_frame(opcode if i == 0 else OP_CONT, piece,
                                   fin=last))
        if ping_between and not last:
            p = f"p{i}".encode()
            pings.append(p)
            frames.append(encode_frame(OP_PING, p))
    return frames, pings


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_fragmented_1_byte_with_pings(server, opcode):
    payload = payload_for(opcode, 200)
    frames, pings = fragments(opcode, payload, 1, ping_between=True)
    with connect(server.port) as ws:
        ws.send_raw(b"".join(frames))
        pongs = []
        assert_echo(ws, opcode, payload, pongs=pongs)
        assert pongs == pings, "pongs between fragments missing or reordered"
        # The same, one byte per TCP segment.
        ws.send_raw(b"".join(frames), split=True)
        pongs = []
        assert_echo(ws, opcode, payload, pongs=pongs, timeout=30)
        assert pongs == pings
        close_clean(ws)


def test_fragmented_pong_comes_before_echo(server):
    """A ping between fragments is answered at once, not after the
    message."""
    with connect(server.port) as ws:
        ws.send_text("abc", fin=False)
        ws.send_ping(b"mid")
        f = ws.recv_frame(timeout=3)
        assert f.opcode == OP_PONG and f.payload == b"mid", f
        ws.send_frame(OP_CONT, b"def", fin=True)
        assert_echo(ws, OP_TEXT, b"abcdef")
        close_clean(ws)


def test_fragmented_empty_fragments(server):
    payload = binary_payload(10)
    with connect(server.port) as ws:
        ws.send_frame(OP_BINARY, b"", fin=False)
        ws.send_frame(OP_CONT, payload[:5], fin=False)
        ws.send_frame(OP_CONT, b"", fin=False)
        ws.send_frame(OP_CONT, payload[5:], fin=False)
        ws.send_frame(OP_CONT, b"", fin=True)
        assert_echo(ws, OP_BINARY, payload)
        # An all-empty fragmented text message is an empty message.
        ws.send_frame(OP_TEXT, b"", fin=False)
        ws.send_frame(OP_CONT, b"", fin=True)
        assert_echo(ws, OP_TEXT, b"")
        close_clean(ws)


def test_fragmented_large(server):
    payload = binary_payload(MiB + 3)
    frames, _ = fragments(OP_BINARY, payload, 64 * 1024 + 1)
    with connect(server.port) as ws:
        ws.send_raw(b"".join(frames))
        assert_echo(ws, OP_BINARY, payload)
        close_clean(ws)


def test_data_after_fragmented_message(server):
    with connect(server.port) as ws:
        frames, _ = fragments(OP_TEXT, b"first", 2)
        ws.send_raw(b"".join(frames))
        ws.send_binary(b"second")
        assert_echo(ws, OP_TEXT, b"first")
        assert_echo(ws, OP_BINARY, b"second")
        close_clean(ws)


# ---- ping / pong -----------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125])
@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
def test_ping_answered_with_same_payload(server, size, split):
    payload = os.urandom(size)
    with connect(server.port) as ws:
        ws.send_ping(payload, split=split)
        f = ws.recv_frame(timeout=3)
        assert f.opcode == OP_PONG, f
        assert f.fin, f
        assert f.payload == payload, f
        close_clean(ws)


def test_unsolicited_pong_ignored(server):
    with connect(server.port) as ws:
        ws.send_pong(b"nobody asked")
        ws.send_pong(b"")
        ws.send_text("after")
        f = ws.recv_frame(timeout=3)
        assert f.opcode == OP_TEXT and f.payload == b"after", \
            f"wanted the echo first, got {f!r}"
        close_clean(ws)


# ---- frame-level protocol errors: close 1002 -------------------------------

def test_unmasked_frame_1002(server):
    violation(server, encode_frame(OP_TEXT, b"hello", mask=False), 1002)


def test_unmasked_control_frame_1002(server):
    violation(server, encode_frame(OP_PING, b"x", mask=False), 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1, 7], ids=["rsv1", "rsv2", "rsv3",
                                                   "all"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_PING], ids=["text", "ping"])
def test_rsv_bits_1002(server, rsv, opcode):
    violation(server, encode_frame(opcode, b"x", rsv=rsv), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_1002(server, opcode):
    violation(server, encode_frame(opcode, b"x"), 1002)


def test_reserved_opcode_inside_fragmented_message_1002(server):
    violation(server, [encode_frame(OP_TEXT, b"a", fin=False),
                       encode_frame(0xB, b"")], 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_126_bytes_1002(server, opcode):
    payload = b"\x03\xe8" + b"r" * 124 if opcode == OP_CLOSE else b"p" * 126
    violation(server, encode_frame(opcode, payload), 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_1002(server, opcode):
    payload = b"\x03\xe8" if opcode == OP_CLOSE else b"x"
    violation(server, encode_frame(opcode, payload, fin=False), 1002)


@pytest.mark.parametrize("fin", [True, False], ids=["fin", "nofin"])
def test_continuation_without_message_1002(server, fin):
    violation(server, encode_frame(OP_CONT, b"x", fin=fin), 1002)


def test_continuation_after_complete_message_1002(server):
    with connect(server.port) as ws:
        ws.send_text("done")
        assert_echo(ws, OP_TEXT, b"done")
        ws.send_frame(OP_CONT, b"more", tolerate_closed=True)
        ws.expect_close(1002)


@pytest.mark.parametrize("first,second", [
    (OP_TEXT, OP_TEXT), (OP_TEXT, OP_BINARY),
    (OP_BINARY, OP_BINARY), (OP_BINARY, OP_TEXT)],
    ids=["text-text", "text-binary", "binary-binary", "binary-text"])
@pytest.mark.parametrize("fin", [True, False], ids=["fin", "nofin"])
def test_new_message_inside_fragmented_1002(server, first, second, fin):
    violation(server, [encode_frame(first, b"a", fin=False),
                       encode_frame(second, b"b", fin=fin)], 1002)


@pytest.mark.parametrize("n,form", [(0, 16), (125, 16), (0, 64), (125, 64),
                                    (126, 64), (65535, 64)])
def test_non_minimal_length_1002(server, n, form):
    opcode = OP_BINARY
    violation(server, encode_frame(opcode, binary_payload(n),
                                   length_form=form), 1002)


def test_non_minimal_length_control_frame_1002(server):
    violation(server, encode_frame(OP_PING, b"abc", length_form=16), 1002)


def test_64bit_length_top_bit_set(server):
    """RFC 6455 5.2: the most significant bit must be 0. moor says 1002;
    a server that checks the size first may say 1009."""
    violation(server, encode_frame(OP_BINARY, b"abc",
                                   claim_len=(1 << 63) | 3), {1002, 1009})


@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
def test_protocol_error_after_good_messages(server, split):
    """Earlier messages are echoed; the bad frame then gets 1002."""
    with connect(server.port) as ws:
        ws.send_text("one", split=split)
        ws.send_binary(b"two", split=split)
        ws.send_frame(OP_TEXT, b"three", rsv=4, split=split,
                      tolerate_closed=True)
        assert_echo(ws, OP_TEXT, b"one")
        assert_echo(ws, OP_BINARY, b"two")
        ws.expect_close(1002)


# ---- UTF-8 -----------------------------------------------------------------

VALID_UTF8 = ("κόσμε \u0000 \u007f \u0080 \u07ff \u0800 \ud7ff \ue000 "
              "\ufeff \ufffd \uffff \U00010000 \U0010ffff €𝄞").encode()

# Each of these is invalid before the end of the message: a streaming
# validator must fail at the bad byte.
INVALID_EARLY = {
    "overlong-2-nul": b"\xc0\x80",
    "overlong-2-max": b"\xc1\xbf",
    "overlong-3-slash": b"\xe0\x80\xaf",
    "overlong-3-max": b"\xe0\x9f\xbf",
    "overlong-4-slash": b"\xf0\x80\x80\xaf",
    "overlong-4-max": b"\xf0\x8f\xbf\xbf",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "surrogate-pair": b"\xed\xa0\x80\xed\xb0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "f5-lead": b"\xf5\x80\x80\x80",
    "f7-lead": b"\xf7\xbf\xbf\xbf",
    "5-byte-form": b"\xf8\x88\x80\x80\x80",
    "6-byte-form": b"\xfc\x84\x80\x80\x80\x80",
    "fe": b"\xfe",
    "ff": b"\xff",
    "lone-continuation": b"\x80",
    "lone-continuation-bf": b"\xbf",
    "truncated-2-then-ascii": b"\xc2A",
    "truncated-3-then-ascii": b"\xe2\x82A",
    "truncated-4-then-ascii": b"\xf0\x9f\x98A",
    "truncated-3-then-lead": b"\xe2\x82\xe2\x82\xac",
}

# Invalid only because the message ends inside a sequence.
INVALID_AT_END = {
    "truncated-2": b"\xc2",
    "truncated-3": b"\xe2\x82",
    "truncated-4": b"\xf0\x9f\x98",
    "truncated-4-one": b"\xf4",
}

PREFIX = "ok κόσμε ".encode()


def invalid_message(name):
    if name in INVALID_EARLY:
        return PREFIX + INVALID_EARLY[name] + b" tail"
    return PREFIX + INVALID_AT_END[name]


ALL_INVALID = list(INVALID_EARLY) + list(INVALID_AT_END)


def test_utf8_valid_echo_whole_and_fragmented(server):
    with connect(server.port) as ws:
        ws.send_text(VALID_UTF8)
        assert_echo(ws, OP_TEXT, VALID_UTF8)
        frames, _ = fragments(OP_TEXT, VALID_UTF8, 1)
        ws.send_raw(b"".join(frames))
        assert_echo(ws, OP_TEXT, VALID_UTF8)
        close_clean(ws)


def test_utf8_character_split_at_every_point(server):
    """A 4-byte character cut into two fragments at each of its inner
    boundaries, and a 3-byte one likewise."""
    with connect(server.port) as ws:
        for ch in ("𝄞".encode(), "€".encode()):
            msg = b"a" + ch + b"z"
            for cut in range(2, len(ch) + 1):
                ws.send_frame(OP_TEXT, msg[:cut], fin=False)
                ws.send_frame(OP_CONT, msg[cut:], fin=True)
                assert_echo(ws, OP_TEXT, msg)
        close_clean(ws)


@pytest.mark.parametrize("name", ALL_INVALID)
def test_utf8_invalid_whole_1007(server, name):
    violation(server, encode_frame(OP_TEXT, invalid_message(name)), 1007)


@pytest.mark.parametrize("name", ALL_INVALID)
def test_utf8_invalid_fragments_1007(server, name):
    frames, _ = fragments(OP_TEXT, invalid_message(name), 1)
    violation(server, frames, 1007)


@pytest.mark.parametrize("name", ["overlong-2-nul", "surrogate-high",
                                  "above-10ffff", "truncated-3",
                                  "truncated-4"])
def test_utf8_invalid_bytewise_1007(server, name):
    violation(server, encode_frame(OP_TEXT, invalid_message(name)), 1007,
              split=True)


@pytest.mark.parametrize("name", list(INVALID_EARLY))
def test_utf8_fail_fast_no_fin(server, name):
    """The message never ends: the bad byte alone must bring the 1007.
    1-byte fragments, FIN never sent."""
    msg = PREFIX + INVALID_EARLY[name]
    with connect(server.port) as ws:
        for i in range(len(msg)):
            op = OP_TEXT if i == 0 else OP_CONT
            if not ws.send_frame(op, msg[i:i + 1], fin=False,
                                 tolerate_closed=True):
                break
        ws.expect_close(1007, timeout=slack(2.0))


def test_utf8_fail_fast_first_fragment(server):
    """The first fragment holds the bad byte; nothing else is sent."""
    with connect(server.port) as ws:
        ws.send_frame(OP_TEXT, b"abc\xc0\x80def", fin=False)
        ws.expect_close(1007, timeout=slack(2.0))


def test_utf8_fail_fast_across_fragments(server):
    """A sequence starts in one fragment and goes bad in the next (a
    surrogate: ED then A0); the FIN fragment is never sent."""
    with connect(server.port) as ws:
        ws.send_frame(OP_TEXT, b"abc\xed", fin=False)
        ws.send_frame(OP_CONT, b"\xa0\x80", fin=False)
        ws.expect_close(1007, timeout=slack(2.0))


def test_utf8_fail_fast_inside_a_frame(server):
    """Checked as it streams in: the frame header claims 1000 bytes, only
    the first few arrive, and one of them is bad."""
    good_then_bad = b"hello \xf5"
    with connect(server.port) as ws:
        frame = encode_frame(OP_TEXT, good_then_bad + b"x" * (1000 - 7))
        head_len = 2 + 2 + 4
        ws.send_raw(frame[:head_len + len(good_then_bad)])
        ws.expect_close(1007, timeout=slack(2.0))


def test_utf8_binary_is_not_checked(server):
    payload = b"\xc0\x80\xed\xa0\x80\xff\xfe"
    with connect(server.port) as ws:
        ws.send_binary(payload)
        assert_echo(ws, OP_BINARY, payload)
        close_clean(ws)


# ---- close -----------------------------------------------------------------

VALID_CLOSE = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
               1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CLOSE = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                 5000, 65535]


@pytest.mark.parametrize("code", VALID_CLOSE)
def test_close_valid_code_echoed(server, code):
    with connect(server.port) as ws:
        ws.send_close(code, b"reason")
        ws.expect_close(code)


def test_close_without_reason_echoed(server):
    with connect(server.port) as ws:
        ws.send_close(1000)
        ws.expect_close(1000)


def test_close_longest_reason(server):
    with connect(server.port) as ws:
        ws.send_close(1000, "é" * 61 + "x")    # 2 + 123 = 125 bytes
        ws.expect_close(1000)


def test_close_bytewise(server):
    with connect(server.port) as ws:
        ws.send_close(4321, b"split", split=True)
        ws.expect_close(4321)


@pytest.mark.parametrize("code", INVALID_CLOSE)
def test_close_invalid_code_1002(server, code):
    with connect(server.port) as ws:
        ws.send_close(code, b"x")
        ws.expect_close(1002)


def test_close_one_byte_payload_1002(server):
    with connect(server.port) as ws:
        ws.send_close(payload=b"\x03")
        ws.expect_close(1002)


@pytest.mark.parametrize("reason", [b"\xc0\x80", b"ok\xed\xa0\x80",
                                    b"\xff", b"trunc\xe2\x82"],
                         ids=["overlong", "surrogate", "ff", "truncated"])
def test_close_invalid_utf8_reason_1007(server, reason):
    with connect(server.port) as ws:
        ws.send_close(1000, reason)
        ws.expect_close(1007)


def test_close_empty(server):
    with connect(server.port) as ws:
        ws.send_close()
        ws.expect_close({None, 1000})


def test_nothing_processed_after_close(server):
    with connect(server.port) as ws:
        ws.send_raw(encode_frame(OP_CLOSE, b"\x03\xe8") +
                    encode_frame(OP_TEXT, b"after close") +
                    encode_frame(OP_PING, b"after close"))
        f, before = ws.expect_close(1000)
        assert before == [], f"frames before the close echo: {before!r}"


def test_nothing_processed_after_close_separate_writes(server):
    with connect(server.port) as ws:
        ws.send_close(1000)
        ws.send_text("after close", tolerate_closed=True)
        ws.send_ping(b"after close", tolerate_closed=True)
        f, before = ws.expect_close(1000)
        assert before == [], f"frames before the close echo: {before!r}"


def test_close_inside_fragmented_message(server):
    """A close between fragments is allowed: it is answered, and the
    unfinished message is not echoed."""
    with connect(server.port) as ws:
        ws.send_frame(OP_TEXT, b"half", fin=False)
        ws.send_close(1000)
        ws.expect_close(1000)


# ---- --max-message ---------------------------------------------------------

def test_max_message_limit_exact_and_over(moor):
    s = moor("--max-message", "1KiB")
    with connect(s.port) as ws:
        ws.send_binary(binary_payload(1024))
        assert_echo(ws, OP_BINARY, binary_payload(1024))
        ws.send_text(text_payload(1024))
        assert_echo(ws, OP_TEXT, text_payload(1024))
        ws.send_binary(binary_payload(1025), tolerate_closed=True)
        ws.expect_close(1009)


def test_max_message_fragmented_total(moor):
    s = moor("--max-message", "1KiB")
    with connect(s.port) as ws:
        # 1024 in fragments: fine.
        frames, _ = fragments(OP_BINARY, binary_payload(1024), 300)
        ws.send_raw(b"".join(frames))
        assert_echo(ws, OP_BINARY, binary_payload(1024))
        # 600 + 425 = 1025: the second header already says too big.
        ws.send_frame(OP_BINARY, binary_payload(600), fin=False)
        ws.send_frame(OP_CONT, b"", claim_len=425, fin=True)
        ws.expect_close(1009, timeout=slack(2.0))


def test_max_message_control_frames_not_counted(moor):
    s = moor("--max-message", "100")
    with connect(s.port) as ws:
        ws.send_frame(OP_TEXT, b"a" * 60, fin=False)
        ws.send_ping(b"p" * 125)
        ws.send_frame(OP_CONT, b"b" * 40, fin=True)
        pongs = []
        assert_echo(ws, OP_TEXT, b"a" * 60 + b"b" * 40, pongs=pongs)
        assert pongs == [b"p" * 125]
        close_clean(ws)


@pytest.mark.parametrize("claim", [16 * MiB + 1, 1 << 30, 1 << 40],
                         ids=["16MiB+1", "1GiB", "1TiB"])
def test_max_message_decided_from_header(server, claim):
    """The header claims more than --max-message (default 16 MiB) and only
    a few payload bytes follow: 1009 comes at once, without waiting for
    (or buffering) the payload."""
    with connect(server.port) as ws:
        t0 = time.monotonic()
        ws.send_frame(OP_BINARY, b"abc", claim_len=claim)
        ws.expect_close(1009, timeout=slack(1.0))
        assert time.monotonic() - t0 < slack(1.0)


def test_max_message_fragment_pushes_over(server):
    """1 KiB already received; the next fragment's header claims 16 MiB:
    1009 from that header."""
    with connect(server.port) as ws:
        ws.send_frame(OP_TEXT, b"x" * 1024, fin=False)
        ws.send_frame(OP_CONT, b"abc", claim_len=16 * MiB, fin=True)
        ws.expect_close(1009, timeout=slack(1.0))


# ---- memory: nothing sized by a claimed length ------------------------------

def live_bytes(s):
    return s.debug_mem()["live_bytes"]


def wait_live_below(s, limit, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        v = live_bytes(s)
        if v < limit or time.monotonic() > end:
            return v
        time.sleep(0.05)


@pytest.mark.parametrize("fragmented", [False, True],
                         ids=["one-frame", "fragmented"])
def test_claimed_length_not_allocated(server, fragmented):
    """A header claims 15 MiB (under --max-message) and 100 bytes follow:
    live memory grows by what arrived, not by the claim."""
    base = live_bytes(server)
    with connect(server.port) as ws:
        if fragmented:
            ws.send_frame(OP_BINARY, b"a" * 50, fin=False)
            ws.send_frame(OP_CONT, b"b" * 50, claim_len=15 * MiB)
        else:
            ws.send_frame(OP_BINARY, b"a" * 100, claim_len=15 * MiB)
        time.sleep(0.2)
        grown = live_bytes(server) - base
        assert grown < 256 * 1024, \
            f"live bytes grew by {grown} for 100 bytes of a 15 MiB claim"
        ws.send_ping(b"still parsing the frame", tolerate_closed=True)
        # The frame is incomplete: the ping's bytes are payload, not a
        # ping. Nothing comes back.
        assert not ws.readable_within(0.3), "answer inside an open frame"


def test_memory_returns_after_16mib_message(server):
    base = live_bytes(server)
    payload = binary_payload(16 * MiB)
    with connect(server.port, timeout=30) as ws:
        ws.send_binary(payload)
        assert_echo(ws, OP_BINARY, payload, timeout=60)
        # Idle again: the message buffer and the queued echo are freed.
        v = wait_live_below(server, base + 256 * 1024)
        assert v < base + 256 * 1024, \
            f"live bytes {v} stay above {base} + 256 KiB after the echo"
        close_clean(ws)


# ---- a client that never reads --------------------------------------------

def test_client_that_never_reads_is_dropped(moor):
    """Echoes pile up for a client that sends but never reads: it is
    dropped (write timeout or queue limit), and the server goes on."""
    s = moor("--write-timeout", "1s", "--queue-limit", "64KiB")
    before = s.metrics()
    with connect(s.port, rcvbuf=4096) as ws:
        # Whole frames only (a partial write continues where it
        # stopped), so the stream stays valid WebSocket.
        ws.sock.setblocking(False)
        frame = encode_frame(OP_BINARY, binary_payload(32 * 1024))
        pos = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            try:
                pos += ws.sock.send(frame[pos:])
            except BlockingIOError:
                time.sleep(0.02)
            except OSError:
                break
            if pos == len(frame):
                pos = 0

        def dropped(m):
            keys = ("write_timeout", "slow_consumer")
            return sum(m.get_value("moor_closed_total", reason=k)
                       for k in keys) > sum(before.get_value(
                           "moor_closed_total", reason=k) for k in keys)

        m = s.wait_metric(dropped, timeout=slack(1.0) + 4.0)
        assert dropped(m), "a WebSocket that never reads was not dropped"
    with connect(s.port) as ws:
        ws.send_text("next")
        assert_echo(ws, OP_TEXT, b"next")
        close_clean(ws)


@pytest.mark.parametrize("queue_limit,count", [("64KiB", 200),
                                               ("1MiB", 1000)])
def test_slow_reader_gets_every_echo(moor, queue_limit, count):
    """/echo is a 1:1 stream: when echoes pile up past --queue-limit the
    server stops reading the client (TCP pushes back), it never drops an
    echo. The client writes count 10 KiB messages while reading nothing
    for 1 s, then reads: every echo arrives, in order."""
    s = moor("--queue-limit", queue_limit)
    msgs = [bytes([i % 251]) * 10240 for i in range(count)]
    data = b"".join(encode_frame(OP_BINARY, m) for m in msgs)
    with connect(s.port, rcvbuf=4096, timeout=10) as ws:
        errors = []
        # The writer's own socket object, so the reader's per-read
        # timeouts do not change the writer's.
        wsock = ws.sock.dup()
        wsock.settimeout(20)

        def writer():
            try:
                wsock.sendall(data)
            except OSError as e:
                errors.append(e)
            finally:
                wsock.close()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            time.sleep(1.0)
            for i, m in enumerate(msgs):
                try:
                    op, got = ws.recv_message(timeout=5)
                except socket.timeout:
                    over = s.metric("moor_queue_overflows_total")
                    pytest.fail(f"echo {i} of {count} never came (queue "
                                f"overflows: {over:.0f})")
                assert op == OP_BINARY
                assert got == m, \
                    f"echo {i} is message {got[0]}-ish: echoes were dropped"
        finally:
            if t.is_alive():
                try:    # unblocks the writer if the test failed
                    ws.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            t.join(10)
        assert not errors, errors
        close_clean(ws)


def test_ping_flood_slow_reader_not_out_of_memory(moor):
    """Pongs piling up for a client that does not read: the server may
    pause reading, coalesce pongs (RFC 6455 5.5.3) or drop the client as
    a slow consumer, but no allocation failed, so the close reason is
    not out_of_memory."""
    s = moor("--queue-limit", "64KiB")
    before = s.metric("moor_closed_total", reason="out_of_memory")
    data = encode_frame(OP_PING, b"p" * 125) * 1000
    with connect(s.port, rcvbuf=4096) as ws:
        # Whole frames only, for 1.5 s or until the server closes.
        ws.sock.setblocking(False)
        pos = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            try:
                pos += ws.sock.send(data[pos:])
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
            if pos == len(data):
                pos = 0
    time.sleep(0.2)
    after = s.metric("moor_closed_total", reason="out_of_memory")
    assert after == before, \
        "a ping flood from a slow reader was closed as out_of_memory"


# ---- ping / pong liveness --------------------------------------------------

LIVE_FLAGS = ("--ping-interval", "1s", "--pong-timeout", "1s")


def test_liveness_answering_client_stays(moor):
    s = moor(*LIVE_FLAGS)
    with connect(s.port) as ws:
        pings = 0
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            if not ws.readable_within(end - time.monotonic()):
                break
            try:
                f = ws.recv_frame(timeout=2)
            except Closed:
                pytest.fail(f"closed after {pings} pings although every "
                            f"ping was answered")
            assert f.opcode == OP_PING, f"unexpected {f!r}"
            pings += 1
            ws.send_pong(f.payload)
        assert pings >= 2, f"only {pings} pings in 3.5 s with a 1 s interval"
        ws.send_text("still here")
        assert_echo(ws, OP_TEXT, b"still here")
        close_clean(ws)
    assert s.metric("moor_closed_total", reason="pong_timeout") == 0


def test_liveness_silent_client_closed(moor):
    s = moor(*LIVE_FLAGS)
    before = s.metric("moor_closed_total", reason="pong_timeout")
    with connect(s.port) as ws:
        t0 = time.monotonic()
        f = ws.recv_frame(timeout=slack(1.0) + 1.5)
        t_ping = time.monotonic() - t0
        assert f.opcode == OP_PING, f
        assert 0.7 < t_ping < slack(1.0) + 1.0, \
            f"first ping after {t_ping:.2f} s, interval 1 s"
        # We never answer. The server closes TCP within the pong timeout
        # (it may send a close frame first).
        t = ws.wait_closed(slack(1.0) + 2.0)
        assert t is not None, "silent client still connected"
        total = time.monotonic() - t0
        assert total > 1.7, f"closed {total:.2f} s after the upgrade, " \
            f"before ping interval + pong timeout"
        assert total < slack(2.0) + 1.5, f"closed only after {total:.2f} s"
    m = s.wait_metric(lambda m: m.get_value(
        "moor_closed_total", reason="pong_timeout") >= before + 1)
    assert m.get_value("moor_closed_total", reason="pong_timeout") == \
        before + 1


def test_liveness_any_frame_is_proof_of_life(moor):
    """Pings are never answered with a pong, but a data message arrives
    within the pong timeout after each ping: the conn stays open."""
    s = moor(*LIVE_FLAGS)
    with connect(s.port) as ws:
        pings = 0
        t0 = time.monotonic()
        for i in range(3):
            f = ws.recv_frame(timeout=slack(1.0) + 1.5)
            assert f.opcode == OP_PING, f
            pings += 1
            time.sleep(0.4)
            ws.send_text(f"alive {i}")
            assert_echo(ws, OP_TEXT, f"alive {i}".encode())
        assert time.monotonic() - t0 > 3.0
        close_clean(ws)
    assert s.metric("moor_closed_total", reason="pong_timeout") == 0


def test_liveness_unsolicited_pongs_keep_alive(moor):
    """A client that sends a pong every 0.5 s is never idle long enough
    for a ping, and is never closed."""
    s = moor(*LIVE_FLAGS)
    with connect(s.port) as ws:
        end = time.monotonic() + 3.2
        while time.monotonic() < end:
            ws.send_pong(b"heartbeat")
            if ws.readable_within(0.5):
                f = ws.recv_frame(timeout=2)
                # A ping is allowed (timers are coarse); answer it.
                assert f.opcode == OP_PING, f
                ws.send_pong(f.payload)
        close_clean(ws)
    assert s.metric("moor_closed_total", reason="pong_timeout") == 0


# ---- SIGTERM drain ---------------------------------------------------------

def wait_exit(s, timeout):
    """Waits for the server to exit on its own (a second SIGTERM could
    force a faster exit and hide a slow drain)."""
    try:
        rc = s.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, s.stderr_text()


def collect_closes(clients, timeout, reply=True):
    """Waits for a close frame on every client; returns their arrival
    times (monotonic) and codes. reply: answer each close at once."""
    pending = {c.sock.fileno(): c for c in clients}
    times, codes = {}, {}
    end = time.monotonic() + timeout
    while pending and time.monotonic() < end:
        r, _, _ = select.select(list(pending), [], [],
                                max(0.0, end - time.monotonic()))
        for fd in r:
            c = pending[fd]
            try:
                f = c.recv_frame(timeout=2)
            except Closed:
                del pending[fd]
                codes[fd] = "eof"
                continue
            if f.opcode != OP_CLOSE:
                continue
            times[fd] = time.monotonic()
            codes[fd] = f.close_code
            del pending[fd]
            if reply:
                c.send_close(f.close_code, tolerate_closed=True)
    return times, codes, pending


def test_drain_sends_1001_spread_and_exits_clean(moor):
    s = moor("--drain-spread", "1s", "--shutdown-timeout", "5s")
    clients = [connect(s.port) for _ in range(10)]
    try:
        for c in clients:
            c.send_text("hi")
            assert_echo(c, OP_TEXT, b"hi")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        times, codes, pending = collect_closes(clients, slack(1.0) + 2.0)
        assert not pending, f"{len(pending)} clients got no close frame"
        assert set(codes.values()) == {1001}, codes
        last = max(times.values()) - t0
        assert last < slack(1.0) + 0.5, \
            f"last close 1001 {last:.2f} s after SIGTERM, spread 1 s"
        spread = max(times.values()) - min(times.values())
        assert spread > 0.05, \
            f"10 closes within {spread * 1000:.0f} ms: not spread out"
        # After our replies the server closes TCP and exits.
        for c in clients:
            assert c.wait_closed(3.0) is not None, \
                "TCP kept open after the close handshake"
        rc, err = wait_exit(s, 10)
        elapsed = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    assert elapsed < slack(1.0) + 2.0, \
        f"exit {elapsed:.2f} s after SIGTERM although every client replied"
    assert_clean_exit(rc, err)


def test_drain_client_that_never_replies(moor):
    """A client that ignores the close 1001 holds the exit no longer than
    --shutdown-timeout."""
    s = moor("--drain-spread", "200ms", "--shutdown-timeout", "2s")
    c = connect(s.port)
    try:
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        f, _ = c.expect_close(1001, timeout=slack(0.2) + 1.0,
                              then_eof=False)
        # No reply. The server ends the connection by the deadline.
        rc, err = wait_exit(s, 10)
        elapsed = time.monotonic() - t0
        assert c.wait_closed(1.0) is not None
    finally:
        c.close()
    assert elapsed < 2.0 + slack(1.0), f"exit took {elapsed:.2f} s"
    assert_clean_exit(rc, err)


def test_drain_with_message_in_flight(moor):
    """A half-sent message does not block the drain; the client still
    gets 1001 and may finish its close handshake."""
    s = moor("--drain-spread", "300ms", "--shutdown-timeout", "3s")
    with connect(s.port) as ws:
        ws.send_frame(OP_BINARY, b"half", fin=False)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        ws.expect_close(1001, timeout=slack(0.3) + 1.5, reply=True)
        rc, err = wait_exit(s, 10)
        elapsed = time.monotonic() - t0
    assert elapsed < slack(0.3) + 2.0, f"exit took {elapsed:.2f} s"
    assert_clean_exit(rc, err)


# ---- randomized: fragmentation and TCP splits; garbage ----------------------

def random_text(rng, n):
    pool = "aZ09 ~κόσμε€𝄞\u0080\u07ff\u0800\uffff\U00010000\U0010ffff"
    out = "".join(rng.choice(pool) for _ in range(n))
    return out.encode()


def random_session(rng, n_msgs):
    """Bytes of n_msgs messages, each cut into random fragments (a text
    character may be split between two) with pings between some; and the
    (opcode, payload) messages and ping payloads to expect back."""
    data, msgs, pings = [], [], []
    for i in range(n_msgs):
        op = rng.choice([OP_TEXT, OP_BINARY])
        n = rng.choice([0, 1, 2, 3, 7, 125, 126, 127, 1000, 65535, 65536,
                        rng.randrange(0, 20000)])
        if op == OP_TEXT:
            payload = random_text(rng, max(1, n // 3))[:n] if n else b""
            while True:          # the cut may have split a character
                try:
                    payload.decode()
                    break
                except UnicodeDecodeError:
                    payload = payload[:-1]
        else:
            payload = rng.randbytes(n)
        k = rng.randrange(1, 6)
        cuts = sorted(rng.randrange(0, len(payload) + 1)
                      for _ in range(k - 1))
        pieces = [payload[a:b] for a, b in
                  zip([0] + cuts, cuts + [len(payload)])]
        for j, piece in enumerate(pieces):
            last = j == len(pieces) - 1
            data.append(encode_frame(op if j == 0 else OP_CONT, piece,
                                     fin=last))
            if not last and rng.random() < 0.5:
                p = rng.randbytes(rng.randrange(0, 126))
                pings.append(p)
                data.append(encode_frame(OP_PING, p))
        msgs.append((op, payload))
    return b"".join(data), msgs, pings


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_fragments_and_splits(server, seed):
    rng = random.Random(seed)
    data, msgs, pings = random_session(rng, 25)
    with connect(server.port) as ws:
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 2, 3, 7, 13, 100, 1000, 4096, 65536])
            ws.send_raw(data[pos:pos + n])
            pos += n
        pongs = []
        for i, (op, payload) in enumerate(msgs):
            got_op, got = ws.recv_message(timeout=10, pongs=pongs)
            assert (got_op, len(got)) == (op, len(payload)), f"message {i}"
            assert got == payload, f"message {i} differs"
        while len(pongs) < len(pings):
            f = ws.recv_frame(timeout=3)
            assert f.opcode == OP_PONG, f
            pongs.append(f.payload)
        assert pongs == pings
        close_clean(ws)


@pytest.mark.parametrize("seed", [11, 12])
def test_garbage_never_crashes(server, seed):
    """Valid sessions with random bytes flipped, inserted or cut: whatever
    the server answers, every close code it sends is one a server may
    send, and it keeps serving. (The teardown checks the sanitizers.)"""
    rng = random.Random(seed)
    allowed = set(VALID_CLOSE)
    for batch in range(4):
        conns = []
        for _ in range(40):
            data, _, _ = random_session(rng, rng.randrange(1, 4))
            data = bytearray(data[:rng.randrange(1, min(len(data), 3000) + 1)])
            for _ in range(rng.randrange(1, 6)):
                if not data:
                    data += rng.randbytes(1)
                i = rng.randrange(len(data))
                r = rng.random()
                if r < 0.6:
                    data[i] ^= 1 << rng.randrange(8)
                elif r < 0.8:
                    data[i:i] = rng.randbytes(rng.randrange(1, 10))
                else:
                    del data[i:i + rng.randrange(1, 10)]
            ws = connect(server.port)
            conns.append(ws)
            if data:
                ws.send_raw(bytes(data), tolerate_closed=True)
        end = time.monotonic() + 0.5
        for ws in conns:
            try:
                while ws.readable_within(max(0.0, end - time.monotonic())):
                    f = ws.recv_frame(timeout=1)
                    if f.opcode == OP_CLOSE:
                        assert f.close_code in allowed | {None}, f
                        break
            except (Closed, socket.timeout):
                pass
            finally:
                ws.close()
    with connect(server.port) as ws:
        ws.send_text("survived")
        assert_echo(ws, OP_TEXT, b"survived")
        close_clean(ws)
