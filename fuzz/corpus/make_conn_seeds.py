#!/usr/bin/env python3
"""make_conn_seeds.py - writes the seed corpus of fuzz/fuzz_conn.c into
fuzz/corpus/conn/, one file per scenario, from what the integration tests
(tests/integration/*.py) send: good and bad HTTP requests to each route,
chunked and Content-Length bodies, WebSocket upgrades and masked frames,
SSE subscriptions, and framed TCP SUB/PUB flows, alone and with a
publisher and a subscriber side by side.

The input format is described at the top of fuzz/fuzz_conn.c. Run from
anywhere; the output is deterministic (same files, same bytes), so a
change to a seed shows in review as a change to this script.

    python3 fuzz/corpus/make_conn_seeds.py

The seeds of the --auth jwt server (auth_*) are make_auth_seeds.py's.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conn")
MASK = b"\x37\xfa\x21\x3d"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


# ---- the script format ----------------------------------------------------

def header(n=1, tcp=(), small=False, variant=0):
    """Byte 0: n connections, which of them speak framed TCP, small
    socket buffers, which server (0 default flags, 1 drop-oldest with a
    soft limit and few channels, 2 paced publishers)."""
    b = (n - 1) & 3
    for i in tcp:
        b |= 1 << (2 + i)
    if small:
        b |= 0x20
    b |= variant << 6
    return bytes([b])


def W(conn, data):
    """Write data on conn (op 1: two-byte length)."""
    if isinstance(data, str):
        data = data.encode()
    out = b""
    while data:
        part, data = data[:65535], data[65535:]
        out += bytes([conn | 1 << 2]) + struct.pack("<H", len(part)) + part
    return out


def W8(conn, data):
    """Write data on conn in pieces of one byte (op 0, length 1)."""
    if isinstance(data, str):
        data = data.encode()
    return b"".join(bytes([conn, 1, c]) for c in data)


def split(conn, data, at):
    """Write data on conn in two writes, the first of `at` bytes."""
    if isinstance(data, str):
        data = data.encode()
    return W(conn, data[:at]) + W(conn, data[at:])


def RUN(conn=0, k=3):
    return bytes([conn | 3 << 2, k])


def SHUT(conn):
    return bytes([conn | 4 << 2])


def CLOSE(conn):
    return bytes([conn | 5 << 2])


def STALL(conn):
    """Toggle reading on conn."""
    return bytes([conn | 6 << 2])


def REOPEN(conn, tcp=False):
    return bytes([conn | 7 << 2 | (0x20 if tcp else 0)])


# ---- protocol helpers -----------------------------------------------------

def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"


def post(path, body, extra=""):
    if isinstance(body, str):
        body = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def post_chunked(path, chunks_raw, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n").encode() + chunks_raw


def chunks(*parts, ext=""):
    out = b""
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        out += b"%x%s\r\n" % (len(p), ext.encode()) + p + b"\r\n"
    return out + b"0\r\n\r\n"


def upgrade(path, extra=""):
    return get(path, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
               + extra)


def sse(path, extra=""):
    return get(path, "Accept: text/event-stream\r\n" + extra)


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    return hdr + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))


def text(s, **kw):
    return frame(1, s, **kw)


def binary(b, **kw):
    return frame(2, b, **kw)


def close_frame(code=1000, reason=b""):
    return frame(8, struct.pack(">H", code) + reason)


def tframe(payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return struct.pack(">I", len(payload)) + payload


# ---- the seeds ------------------------------------------------------------

SEEDS = {}


def seed(name, data):
    assert name not in SEEDS, name
    SEEDS[name] = data


def http_seeds():
    for path in ("/healthz", "/metrics", "/debug/mem", "/debug/conns"):
        seed("get" + path.replace("/", "_"), header() + W(0, get(path)))
    seed("head_healthz", header() + W(0, "HEAD /healthz HTTP/1.1\r\n"
                                       "Host: x\r\n\r\n"))
    seed("keepalive_three", header() + W(0, get("/healthz") * 3) + RUN())
    seed("pipelined_mixed", header() + W(
        0, get("/healthz") + get("/nope") + get("/metrics") +
        "HEAD /debug/mem HTTP/1.1\r\nHost: x\r\n\r\n"))
    seed("http10", header() + W(0, "GET /healthz HTTP/1.0\r\n\r\n"))
    seed("http10_keepalive", header() + W(
        0, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        + get("/healthz")))
    seed("connection_close", header() + W(
        0, get("/healthz", "Connection: close\r\n") + get("/healthz")))
    seed("not_found", header() + W(0, get("/nope")))
    seed("method_not_allowed", header() + W(0, post("/healthz", "x")))
    seed("delete_pub", header() + W(0, "DELETE /pub/x HTTP/1.1\r\n"
                                       "Host: x\r\n\r\n"))
    seed("bad_request_line", header() + W(0, "GARBAGE\r\n\r\n"))
    seed("bad_version", header() + W(0, "GET / HTTP/2.0\r\n\r\n"))
    seed("lf_only", header() + W(0, "GET /healthz HTTP/1.1\nHost: x\n\n"))
    seed("absolute_form", header() + W(
        0, "GET http://localhost/healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
    seed("header_too_big", header() + W(
        0, "GET /healthz HTTP/1.1\r\nX-Big: " + "a" * 9000 + "\r\n\r\n"))
    seed("many_headers", header() + W(
        0, "GET /healthz HTTP/1.1\r\n" +
        "".join(f"X-H{i}: v\r\n" for i in range(120)) + "\r\n"))
    seed("header_trickle", header() + W8(0, get("/healthz")))
    seed("header_split", header() + split(0, get("/metrics"), 17))
    seed("half_close_mid_header", header() + W(0, "GET /heal") + SHUT(0) +
         RUN())
    seed("close_mid_header", header() + W(0, "GET /healthz HTTP/1.1\r\n") +
         CLOSE(0))
    seed("stalled_reader_metrics", header(small=True) + STALL(0) +
         W(0, get("/metrics") * 8) + RUN(0, 15) + STALL(0) + RUN(0, 15))
    seed("obs_fold", header() + W(0, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                     " folded\r\n\r\n"))
    seed("null_in_header", header() + W(0, "GET /healthz HTTP/1.1\r\n"
                                           "Host: a\x00b\r\n\r\n"))


def body_seeds():
    seed("post_pub_cl", header() + W(0, post("/pub/x", "hello")))
    seed("post_pub_cl_split", header() + split(0, post("/pub/x", "hello"),
                                                 60))
    seed("post_pub_cl_trickle", header() + W8(0, post("/pub/x", "hi")))
    seed("post_pub_cl_truncated", header() + W(
        0, post("/pub/x", "hello")[:-2]) + SHUT(0) + RUN())
    seed("post_pub_cl_over_limit", header() + W(
        0, "POST /pub/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        "\r\n" + "a" * 100))
    seed("post_pub_cl_bad", header() + W(
        0, "POST /pub/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"))
    seed("post_pub_cl_twice", header() + W(
        0, "POST /pub/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        "Content-Length: 3\r\n\r\nabc"))
    seed("post_pub_cl_and_te", header() + W(
        0, "POST /pub/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
    seed("post_pub_chunked", header() + W(
        0, post_chunked("/pub/x", chunks("hel", "lo"))))
    seed("post_pub_chunked_ext_trailer", header() + W(
        0, post_chunked("/pub/x", b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")))
    seed("post_pub_chunked_split", header() + split(
        0, post_chunked("/pub/x", chunks("hello", "world")), 80))
    seed("post_pub_chunked_trickle", header() + W8(
        0, post_chunked("/pub/x", chunks("ab", "c"))))
    seed("post_pub_chunked_bad_zz", header() + W(
        0, post_chunked("/pub/x", b"zz\r\nhello\r\n0\r\n\r\n")))
    seed("post_pub_chunked_bad_neg", header() + W(
        0, post_chunked("/pub/x", b"-5\r\nhello\r\n0\r\n\r\n")))
    seed("post_pub_chunked_bad_then_get", header() + W(
        0, post_chunked("/pub/x", b"zz\r\n") + get("/healthz").encode()))
    seed("post_pub_chunked_bad_crlf", header() + W(
        0, post_chunked("/pub/x", b"5\r\nhelloXX0\r\n\r\n")))
    seed("post_pub_chunked_huge_size", header() + W(
        0, post_chunked("/pub/x", b"ffffffffffffffffff\r\n")))
    seed("post_pub_chunked_over_limit", header() + W(
        0, post_chunked("/pub/x", chunks(*(["a" * 1000] * 6)))))
    seed("post_pub_chunked_truncated", header() + W(
        0, post_chunked("/pub/x", b"5\r\nhel")) + CLOSE(0))
    seed("post_pub_chunked_half_close", header() + W(
        0, post_chunked("/pub/x", b"5\r\nhello\r\n")) + SHUT(0) + RUN())
    seed("post_pub_keepalive_two", header() + W(
        0, post("/pub/x", "one") + post_chunked("/pub/x", chunks("two"))))
    seed("post_pub_bad_channel", header() + W(0, post("/pub/bad!name", "x")))
    seed("post_pub_no_channel", header() + W(0, post("/pub/", "x")))
    seed("post_pub_expect", header() + W(
        0, post("/pub/x", "hello", "Expect: 100-continue\r\n")))
    seed("post_pub_empty", header() + W(0, post("/pub/x", "")))


def ws_seeds():
    up = upgrade("/echo")
    seed("ws_echo_text", header() + W(0, up) + RUN() + W(0, text("hello")))
    seed("ws_echo_all_at_once", header() + W(
        0, up.encode() + text("a") + binary(b"\x00\x01") + close_frame()))
    seed("ws_echo_binary", header() + W(0, up) + W(0, binary(bytes(300))))
    seed("ws_echo_fragmented", header() + W(0, up) + W(
        0, text("hel", fin=False) + frame(9, "p") + frame(0, "lo")))
    seed("ws_echo_ping_close", header() + W(0, up) + W(
        0, frame(9, "ping") + frame(10, "") + close_frame(1000, b"bye")))
    seed("ws_echo_trickle", header() + W(0, up) + W8(0, text("abc")))
    seed("ws_echo_split_frames", header() + W(0, up) + split(
        0, text("x" * 200) + binary(b"y" * 70000)[:3000], 3))
    seed("ws_echo_unmasked", header() + W(0, up) + W(
        0, text("x", mask=False)))
    seed("ws_echo_rsv", header() + W(0, up) + W(0, text("x", rsv=4)))
    seed("ws_echo_bad_opcode", header() + W(0, up) + W(0, frame(3, "x")))
    seed("ws_echo_bad_utf8", header() + W(0, up) + W(0, text(b"\xc3\x28")))
    seed("ws_echo_too_big", header() + W(0, up) + W(0, binary(b"z" * 5000)))
    seed("ws_echo_claims_huge", header() + W(0, up) + W(
        0, b"\x82\xff" + struct.pack(">Q", 1 << 62) + MASK))
    seed("ws_echo_continuation_first", header() + W(0, up) + W(
        0, frame(0, "x")))
    seed("ws_echo_big_ping", header() + W(0, up) + W(0, frame(9, "p" * 200)))
    seed("ws_echo_bad_close", header() + W(0, up) + W(0, frame(8, b"\x00")))
    seed("ws_echo_stalled", header(small=True) + W(0, up) + STALL(0) + W(
        0, b"".join(binary(b"q" * 3000) for _ in range(12))) + RUN(0, 15) +
        STALL(0) + RUN(0, 15))
    seed("ws_echo_half_close", header() + W(0, up) + W(
        0, text("x")) + SHUT(0) + RUN())
    seed("ws_upgrade_no_key", header() + W(0, get(
        "/echo", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n")))
    seed("ws_upgrade_bad_version", header() + W(0, get(
        "/echo", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n")))
    seed("ws_upgrade_post", header() + W(
        0, up.replace("GET", "POST", 1)))
    seed("ws_upgrade_origin", header() + W(
        0, upgrade("/echo", "Origin: https://evil.example\r\n")))
    seed("ws_upgrade_with_body", header() + W(
        0, upgrade("/sub/a", "Content-Length: 4\r\n") + "abcd"))
    seed("ws_pipelined_after_upgrade", header() + W(
        0, up + get("/healthz")))


def pubsub_seeds():
    # WebSocket subscriber and publisher on one channel.
    seed("ws_sub_ws_pub", header(2) + W(0, upgrade("/sub/a")) + RUN() +
         W(1, upgrade("/pub/a")) + RUN() +
         W(1, text("m1") + binary(b"m2") + text("m3")) + RUN() +
         W(1, close_frame()) + RUN())
    seed("ws_sub_many_channels", header(2) + W(0, upgrade("/sub/a,b,c")) +
         W(1, post("/pub/b", "x") + post("/pub/c", "y")) + RUN())
    seed("ws_sub_bad_channel", header() + W(0, upgrade("/sub/a,,b")))
    seed("ws_sub_too_many", header() + W(0, upgrade(
        "/sub/" + ",".join(f"c{i}" for i in range(100)))))
    seed("ws_sub_sends", header() + W(0, upgrade("/sub/a")) +
         W(0, text("subscribers do not talk")))
    seed("ws_sub_post_pub", header(2) + W(0, upgrade("/sub/x")) + RUN() +
         W(1, post("/pub/x", "hello") + post_chunked("/pub/x",
                                                     chunks("wor", "ld"))))
    seed("ws_sub_post_pub_bad_chunk", header(2) + W(0, upgrade("/sub/x")) +
         RUN() + W(1, post_chunked("/pub/x", b"zz\r\n")) + RUN())
    seed("ws_sub_stalled_pub_flood", header(2, small=True) +
         W(0, upgrade("/sub/a")) + RUN() + STALL(0) +
         W(1, upgrade("/pub/a")) + RUN() +
         W(1, b"".join(binary(b"f" * 1000) for _ in range(40))) +
         RUN(1, 15) + RUN(1, 15))
    seed("ws_pub_fragmented", header(2) + W(0, upgrade("/sub/a")) +
         W(1, upgrade("/pub/a")) + RUN() +
         W(1, text("a", fin=False) + frame(0, "b", fin=False) +
           frame(0, "c")))
    seed("ws_pub_too_big", header(2) + W(0, upgrade("/sub/a")) +
         W(1, upgrade("/pub/a")) + RUN() + W(1, binary(b"t" * 5000)))
    seed("ws_sub_closes_mid_fanout", header(3) + W(0, upgrade("/sub/a")) +
         W(1, upgrade("/sub/a")) + W(2, upgrade("/pub/a")) + RUN() +
         W(2, text("1")) + CLOSE(0) + W(2, text("2")) + CLOSE(1) +
         W(2, text("3")))
    # Server-Sent Events.
    seed("sse_sub_post_pub", header(2) + W(0, sse("/sub/a")) + RUN() +
         W(1, post("/pub/a", "ev1") + post("/pub/a", "line1\nline2")) +
         RUN())
    seed("sse_sub_last_event_id", header() + W(
        0, sse("/sub/a", "Last-Event-ID: 42\r\n")))
    seed("sse_sub_bad_last_event_id", header() + W(
        0, sse("/sub/a", "Last-Event-ID: abc\r\n")))
    seed("sse_sub_origin", header() + W(
        0, sse("/sub/a", "Origin: https://example.com\r\n")))
    # A subscription with a body: 400 and closed, the body unread.
    seed("sse_sub_with_body", header() + W(
        0, sse("/sub/a", "Transfer-Encoding: chunked\r\n") +
        "zz\r\nhello\r\n0\r\n\r\n"))
    seed("sse_sub_then_bytes", header() + W(0, sse("/sub/a")) +
         W(0, get("/healthz")) + RUN())
    seed("sse_sub_ws_pub", header(2) + W(0, sse("/sub/a,b")) +
         W(1, upgrade("/pub/b")) + RUN() + W(1, text("hi")) + RUN())
    seed("sse_stalled", header(2, small=True) + W(0, sse("/sub/a")) +
         STALL(0) + RUN() + W(1, b"".join(
             post("/pub/a", "s" * 1500) for _ in range(20))) + RUN(0, 15))
    seed("sse_sub_half_close", header() + W(0, sse("/sub/a")) + SHUT(0) +
         RUN())


def tcp_seeds():
    seed("tcp_sub_pub", header(2, tcp=(0, 1)) + W(0, tframe("SUB a b")) +
         RUN() + W(1, tframe("PUB a") + tframe("one") + tframe("two")) +
         RUN())
    seed("tcp_sub_split", header(2, tcp=(0, 1)) + W8(0, tframe("SUB a")) +
         W(1, tframe("PUB a")) + split(1, tframe("x" * 300), 2))
    seed("tcp_pub_http_sub", header(2, tcp=(1,)) + W(0, sse("/sub/c")) +
         W(1, tframe("PUB c") + tframe("to sse")) + RUN())
    seed("tcp_sub_ws_pub", header(2, tcp=(0,)) + W(0, tframe("SUB d")) +
         W(1, upgrade("/pub/d")) + RUN() + W(1, text("to tcp")) + RUN())
    seed("tcp_sub_post_pub", header(2, tcp=(0,)) + W(0, tframe("SUB e")) +
         RUN() + W(1, post_chunked("/pub/e", chunks("to", " tcp"))))
    seed("tcp_bad_command", header(tcp=(0,)) + W(0, tframe("HELLO")))
    seed("tcp_empty_command", header(tcp=(0,)) + W(0, tframe("")))
    seed("tcp_sub_no_channel", header(tcp=(0,)) + W(0, tframe("SUB")))
    seed("tcp_sub_bad_channel", header(tcp=(0,)) + W(0, tframe("SUB a!b")))
    seed("tcp_pub_two_channels", header(tcp=(0,)) + W(0, tframe("PUB a b")))
    seed("tcp_frame_too_big", header(tcp=(0,)) + W(
        0, tframe("PUB a") + struct.pack(">I", 0xFFFFFFFF)))
    seed("tcp_pub_over_limit", header(tcp=(0,)) + W(
        0, tframe("PUB a") + tframe("b" * 5000)))
    seed("tcp_pub_empty_frames", header(tcp=(0,)) + W(
        0, tframe("PUB a") + tframe("") * 5))
    seed("tcp_sub_sends", header(tcp=(0,)) + W(
        0, tframe("SUB a") + tframe("unexpected")))
    seed("tcp_truncated_header", header(tcp=(0,)) + W(0, b"\x00\x00") +
         SHUT(0) + RUN())
    seed("tcp_truncated_payload", header(tcp=(0,)) + W(
        0, tframe("PUB a") + b"\x00\x00\x00\x10abc") + CLOSE(0))
    seed("tcp_http_on_tcp_port", header(tcp=(0,)) + W(0, get("/healthz")))
    seed("tcp_stalled_sub", header(2, tcp=(0, 1), small=True) +
         W(0, tframe("SUB a")) + STALL(0) + RUN() + W(
             1, tframe("PUB a") + b"".join(tframe("p" * 2000)
                                           for _ in range(30))) +
         RUN(1, 15) + RUN(1, 15))
    seed("tcp_reconnect", header(2, tcp=(0, 1)) + W(0, tframe("SUB a")) +
         W(1, tframe("PUB a") + tframe("1")) + REOPEN(0, tcp=True) +
         W(0, tframe("SUB a")) + W(1, tframe("2")) + RUN())
    seed("mixed_three", header(3, tcp=(2,)) + W(0, upgrade("/sub/m")) +
         W(1, sse("/sub/m")) + W(2, tframe("PUB m") + tframe("all")) +
         RUN() + W(0, get("/debug/conns")) + REOPEN(0) +
         W(0, get("/debug/conns") + get("/metrics")) + RUN())


def variant_seeds():
    """The other servers: 1 is --slow-policy drop-oldest,
    --queue-soft-limit 4KiB, at most 6 channels and 3 per conn; 2 is
    --rate 20 --burst 4 --byte-rate 8KiB."""
    v = dict(variant=1)
    r = dict(variant=2)
    seed("v_ws_sub_stalled_drop_oldest", header(2, small=True, **v) +
         W(0, upgrade("/sub/a")) + RUN() + STALL(0) +
         W(1, upgrade("/pub/a")) + RUN() +
         W(1, b"".join(binary(b"d" * 1000) for _ in range(30))) +
         RUN(1, 15) + STALL(0) + RUN(0, 15))
    seed("v_sse_stalled_dropped_event", header(2, small=True, **v) +
         W(0, sse("/sub/a")) + RUN() + STALL(0) + W(1, b"".join(
             post("/pub/a", "e" * 1500) for _ in range(12))) +
         RUN(1, 15) + STALL(0) + RUN(0, 15))
    seed("v_tcp_stalled_drop_oldest", header(2, tcp=(0, 1), small=True, **v) +
         W(0, tframe("SUB a")) + RUN() + STALL(0) + W(
             1, tframe("PUB a") + b"".join(tframe("o" * 1500)
                                           for _ in range(30))) +
         RUN(1, 15) + STALL(0) + RUN(0, 15))
    seed("v_ws_pub_rate_limited", header(2, **r) + W(0, upgrade("/sub/r")) +
         W(1, upgrade("/pub/r")) + RUN() +
         W(1, b"".join(text(f"m{i}") for i in range(20))) + RUN(1, 15))
    seed("v_tcp_pub_rate_limited", header(2, tcp=(1,), **r) +
         W(0, sse("/sub/r")) + W(1, tframe("PUB r") + b"".join(
             tframe(f"m{i}") for i in range(20))) + RUN(1, 15) + CLOSE(1) +
         RUN())
    seed("v_ws_pub_byte_rate", header(2, **r) + W(0, upgrade("/sub/b")) +
         W(1, upgrade("/pub/b")) + RUN() +
         W(1, b"".join(binary(b"B" * 3000) for _ in range(5))) + RUN(1, 15))
    seed("v_sub_too_many_per_conn", header(**v) + W(
        0, upgrade("/sub/a,b,c,d")))
    seed("v_channels_run_out", header(3, tcp=(2,), **v) +
         W(0, upgrade("/sub/a,b,c")) + W(1, sse("/sub/d,e,f")) +
         W(2, tframe("SUB g")) + RUN() + CLOSE(0) +
         W(2, tframe("x")) + REOPEN(0) + W(0, upgrade("/sub/h")))
    seed("v_post_pub_rate", header(**r) + W(0, b"".join(
        post("/pub/p", f"b{i}") for i in range(10))) + RUN(0, 15))


def main():
    variant_seeds()
    http_seeds()
    body_seeds()
    ws_seeds()
    pubsub_seeds()
    tcp_seeds()
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if not old.startswith("auth_"):  # make_auth_seeds.py's
            os.unlink(os.path.join(OUT, old))
    for name, data in sorted(SEEDS.items()):
        assert len(data) <= 64 * 1024, name
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
