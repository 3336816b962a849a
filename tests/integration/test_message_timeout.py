"""--message-timeout: a message begun must end in time (docs/principles.md,
rule 2).

A peer can park a connection with bytes held by starting a message and
never finishing it: a framed TCP publisher that sends a frame header and
part of the payload, then goes silent (heartbeats would keep it for ever);
a WebSocket client that sends a first fragment and then only pings or
pongs (proof of life, so the ping deadline never fires); a client that
trickles one byte at a time; a TLS client that sends half a record (held
inside OpenSSL, where no protocol sees it). Each is closed
--message-timeout after its first byte with reason message_timeout, and a
WebSocket peer is told why (close 1008 "message timeout"). A peer whose
message is slow only because moor paused reading it (--rate) is not.
"""

import socket
import ssl
import struct
import time

from conftest import HOST, slack
from test_sse_tcp import Tcp, closed_total, frame, start, stop_clean, \
    wait_metric
from test_tls import certs, start_tls  # noqa: F401 (a fixture)
from wsutil import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, WsConn

TIMEOUT_ARGS = ("--message-timeout", "1s")


def assert_closed_after(conn, t0, lo, hi, what):
    """conn ends between lo and hi seconds after t0."""
    t = conn.wait_closed(slack(hi + 2))
    assert t is not None, f"{what}: still open {hi + 2:.1f} s after starting"
    took = time.monotonic() - t0
    assert took >= lo, f"{what}: closed after {took:.2f} s, before the " \
                       f"message timeout"
    assert took <= slack(hi), f"{what}: closed only after {took:.2f} s"


# ---- framed TCP ------------------------------------------------------------

def recv_data(sub, timeout=2.0):
    """The next frame that is not a heartbeat (an empty frame)."""
    end = time.monotonic() + timeout
    while True:
        f = sub.recv_frame(timeout=max(0.05, end - time.monotonic()))
        if f:
            return f

def test_tcp_publisher_stalled_mid_frame(moor):
    """A publisher that stops mid-frame, one that trickles a byte every
    150 ms, and one that sent half a frame header are closed ~1 s after
    their first byte (a quiet publisher gets heartbeats, not an idle
    close, every 200 ms here, so nothing else would end them); a subscriber
    idle all along and a publisher whose frame comes in two parts 300 ms
    apart are not."""
    s = start(moor, *TIMEOUT_ARGS, "--sse-heartbeat", "200ms")
    mt0 = closed_total(s.metrics(), "message_timeout")
    sub = Tcp(s, "SUB ch")
    stalled = Tcp(s, "PUB ch")
    trickle = Tcp(s, "PUB ch")
    half = Tcp(s, "PUB ch")
    slow_ok = Tcp(s, "PUB ch")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    time.sleep(0.3)  # past one heartbeat: they are established publishers
    t0 = time.monotonic()
    stalled.send(struct.pack("!I", 100) + b"p" * 10)
    half.send(b"\x00\x00")
    trickle.send(struct.pack("!I", 100))
    slow_ok.send(struct.pack("!I", 6) + b"hel")
    for _ in range(4):
        time.sleep(0.15)
        trickle.send(b"t", tolerate_closed=True)
    slow_ok.send(b"lo!")
    assert recv_data(sub) == b"hel" + b"lo!"
    for name, c in (("stalled", stalled), ("half header", half),
                    ("trickle", trickle)):
        assert_closed_after(c, t0, 0.9, 2.5, name)
    m = s.metrics()
    assert closed_total(m, "message_timeout") == mt0 + 3
    # The partial frames were freed with their conns.
    assert s.debug_mem()["tags"]["msg"]["live_bytes"] == 0
    assert sub.c.is_open(0.3), "the idle subscriber was closed"
    assert slow_ok.c.is_open(0.0), "the publisher that finished its " \
                                   "frame was closed"
    slow_ok.send(frame(b"again"))
    assert recv_data(sub) == b"again"
    for c in (sub, stalled, trickle, half, slow_ok):
        c.close()
    stop_clean(s)


def test_tcp_rate_paused_publisher_is_not_charged(moor):
    """--rate 2 and 6 frames sent at once: moor stops reading the
    publisher for ~2.5 s with the rest of its bytes unread. That wait is
    moor's, so --message-timeout 500ms does not close it, and all 6
    arrive."""
    s = start(moor, "--message-timeout", "500ms", "--rate", "2", "--burst",
              "1")
    sub = Tcp(s, "SUB r")
    pub = Tcp(s, "PUB r")
    wait_metric(s, "moor_pubsub_subscribers", 1)
    # The last frame split: its second half comes while moor is paused.
    data = b"".join(frame(b"m%d" % i) for i in range(6))
    pub.send(data[:-1])
    time.sleep(0.7)
    pub.send(data[-1:])
    got = [sub.recv_frame(timeout=6.0) for _ in range(6)]
    assert got == [b"m%d" % i for i in range(6)]
    m = s.metrics()
    assert closed_total(m, "message_timeout") == 0
    assert m.get_value("moor_read_pauses_total", cause="rate") > 0
    for c in (sub, pub):
        c.close()
    stop_clean(s)


# ---- WebSocket -------------------------------------------------------------

def test_ws_fragment_then_only_pings(moor):
    """A first fragment, then nothing but pings and pongs for ever: moor
    pings every 200 ms and gets its pongs, so the pong deadline never
    fires; the message deadline does: close 1008 "message timeout" ~1 s
    after the fragment."""
    s = moor(*TIMEOUT_ARGS, "--ping-interval", "200ms")
    with WsConn(s.port) as ws:
        ws.open("/echo")
        t0 = time.monotonic()
        ws.send_frame(OP_TEXT, b"first part", fin=False)
        code = reason = None
        pings = 0
        while time.monotonic() - t0 < slack(4.0):
            ws.send_ping(b"alive", tolerate_closed=True)
            try:
                f = ws.recv_frame(timeout=0.1)
            except socket.timeout:
                continue
            if f.opcode == OP_PING:
                pings += 1
                ws.send_pong(f.payload, tolerate_closed=True)
            elif f.opcode == OP_CLOSE:
                code, reason = f.close_code, f.close_reason
                break
            else:
                assert f.opcode == OP_PONG, f"unexpected {f!r}"
        took = time.monotonic() - t0
        assert code == 1008, f"no close 1008 within {took:.1f} s " \
                             f"(got {code})"
        assert reason == b"message timeout"
        assert took >= 0.9, f"closed after {took:.2f} s"
        assert ws.wait_closed(3.0) is not None, \
            "TCP stayed open after the close frame"
    m = wait_metric(s, "moor_closed_total", 1, reason="message_timeout")
    assert closed_total(m, "pong_timeout") == 0
    assert s.debug_mem()["tags"]["msg"]["live_bytes"] == 0
    stop_clean(s)


def test_ws_trickled_frame_and_half_header(moor):
    """One byte of a frame every 200 ms, and one byte of a frame header:
    both closed ~1 s after their first byte (trickling does not extend
    the deadline). A message sent as 3 fragments over 600 ms is echoed
    and its connection stays."""
    s = moor(*TIMEOUT_ARGS)
    trickle = WsConn(s.port)
    trickle.open("/echo")
    half = WsConn(s.port)
    half.open("/echo")
    ok = WsConn(s.port)
    ok.open("/echo")
    whole = bytearray()
    # A masked text frame of 40 bytes, sent a byte at a time.
    from wsutil import encode_frame
    raw = encode_frame(OP_TEXT, b"x" * 40)
    t0 = time.monotonic()
    half.send_raw(raw[:1])
    trickle.send_raw(raw[:2])
    ok.send_frame(OP_TEXT, b"one ", fin=False)
    for i in range(2, 8):
        time.sleep(0.2)
        trickle.send_raw(raw[i:i + 1], tolerate_closed=True)
        if i == 3:
            ok.send_frame(0, b"two ", fin=False)
        if i == 5:
            ok.send_frame(0, b"three", fin=True)
    op, data = ok.recv_message(timeout=3.0)
    whole += data
    assert (op, bytes(whole)) == (OP_TEXT, b"one two three")
    for name, c in (("trickle", trickle), ("half header", half)):
        c.expect_close(1008, timeout=slack(3.0))
        took = time.monotonic() - t0
        assert took >= 0.9, f"{name}: closed after {took:.2f} s"
        c.close()  # moor waits for our EOF (or --close-timeout)
    wait_metric(s, "moor_closed_total", 2, reason="message_timeout")
    ok.send_text("still here")
    assert ok.recv_message(timeout=3.0) == (OP_TEXT, b"still here")
    for c in (trickle, half, ok):
        c.close()
    stop_clean(s)


# ---- TLS: half a record ----------------------------------------------------

def tls_raw(port, cafile):
    """A TLS client over a raw socket through an SSLObject, so the test
    decides which encrypted bytes go out."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    sock = socket.create_connection((HOST, port), timeout=5.0)

    def pump():
        data = out.read()
        if data:
            sock.sendall(data)

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
            chunk = sock.recv(65536)
            assert chunk, "server closed during the handshake"
            inc.write(chunk)
    pump()
    return sock, obj, inc, out


def test_tls_half_record_on_event_stream(moor, certs):  # noqa: F811
    """An SSE subscriber over TLS that sends half a TLS record: SSE ignores
    what a subscriber sends, so only the record layer sees it, and
    OpenSSL holds the bytes. Closed ~1 s later (message_timeout), though
    heartbeats go out every 200 ms; a TLS subscriber that sends nothing
    stays."""
    s = start_tls(moor, certs, *TIMEOUT_ARGS, "--sse-heartbeat", "200ms")
    conns = []
    for _ in range(2):
        sock, obj, inc, out = tls_raw(s.tls_port, certs.ca)
        obj.write(b"GET /sub/t HTTP/1.1\r\nHost: localhost\r\n"
                  b"Accept: text/event-stream\r\n\r\n")
        sock.sendall(out.read())
        conns.append((sock, obj, inc, out))
    wait_metric(s, "moor_pubsub_subscribers", 2)
    sock, obj, inc, out = conns[0]
    obj.write(b"some bytes the server will never see whole")
    rec = out.read()
    assert len(rec) > 10
    t0 = time.monotonic()
    sock.sendall(rec[:len(rec) // 2])
    sock.settimeout(0.2)
    closed_at = None
    while time.monotonic() - t0 < slack(4.0):
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            closed_at = time.monotonic() - t0
            break
    assert closed_at is not None, "half a TLS record held for 4 s"
    assert closed_at >= 0.9, f"closed after {closed_at:.2f} s"
    m = s.metrics()
    assert closed_total(m, "message_timeout") == 1
    assert m.get_value("moor_pubsub_subscribers") == 1
    quiet = conns[1][0]
    quiet.settimeout(0.5)
    assert quiet.recv(65536), "the quiet TLS subscriber got no heartbeat"
    for c in conns:
        c[0].close()
    stop_clean(s)
