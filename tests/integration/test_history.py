"""Channel history and recovery (--history-size, --history-ttl,
--history-max-bytes, --recovery-max; docs/pubsub.md "History and
recovery"), on the real binary:

- the two flags go together: one alone is a usage error naming both;
- SSE: ids EPOCH:OFFSET; a subscriber that comes back with
  ?last_event_id= (also as %3A) or the Last-Event-ID header (which wins)
  gets what it missed, in order, then live messages;
- WebSocket ?since= (plain, and with the ?ids=1 envelope) and TCP
  "SUB ch since=ID ids=1" the same;
- the reset notice, per protocol, for each reason: another epoch (made
  up, and a restart of the server), too old (--history-size), too many
  (--recovery-max), several channels with one id, too big for the queue
  (--slow-policy disconnect); under drop-oldest a replay loses its oldest
  part with a notice;
- no gap and no duplicate at the seam: a subscriber reconnecting again
  and again with the last id it saw while a publisher runs gets every
  message exactly once, in order;
- memory: a channel nobody listens to keeps its history for the TTL,
  then the history tag is back to 0 bytes; --history-max-bytes holds
  under a burst over many channels (oldest go first).
"""

import json
import re
import select
import signal
import socket
import struct
import threading
import time

from conftest import (Conn, assert_clean_exit, auth_mode_raw, build_request,
                      run_moor, slack)
from wsutil import OP_BINARY, OP_TEXT, connect as ws_connect

HOST = "127.0.0.1"
TCP_BANNER_RE = re.compile(r"tcp://127\.0\.0\.1:(\d+)")
ID_RE = re.compile(r"^[0-9a-f]{1,16}:[0-9]+$")


def start(moor, *args):
    s = moor("--tcp-listen", f"{HOST}:0", *args)
    m = TCP_BANNER_RE.search(s.stdout_text())
    assert m, s.stdout_text()
    s.tcp_port = int(m.group(1))
    return s


def hist(moor, *args, size="100", ttl="60s"):
    return start(moor, "--history-size", size, "--history-ttl", ttl, *args)


def publish(s, ch, body, conn=None):
    if isinstance(body, str):
        body = body.encode()
    c = conn or s.conn()
    try:
        r = c.request("POST", f"/pub/{ch}", body=body)
        assert r.status == 202, r
        return json.loads(r.body)["subscribers"]
    finally:
        if conn is None:
            c.close()


def split_id(ev_id):
    assert ID_RE.match(ev_id), ev_id
    e, o = ev_id.split(":")
    return e, int(o)


# ---- an SSE client ---------------------------------------------------------

class Sse:
    def __init__(self, port, path, headers=None, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        hdrs = [("Accept", "text/event-stream")] + list(headers or [])
        self.sock.sendall(auth_mode_raw(build_request("GET", path, hdrs)))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._read(timeout)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.head = head

    def _read(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        assert r, f"nothing within {timeout}s; have {self.buf[-200:]!r}"
        d = self.sock.recv(65536)
        assert d, f"stream closed; have {self.buf[-200:]!r}"
        self.buf += d

    def event(self, timeout=5.0):
        """The next event: (id, event name or None, data bytes)."""
        end = time.monotonic() + slack(timeout)
        while True:
            while b"\n\n" in self.buf:
                block, _, self.buf = self.buf.partition(b"\n\n")
                ev_id = name = None
                data = []
                for line in block.split(b"\n"):
                    if line.startswith(b":") or line.startswith(b"retry:"):
                        continue
                    f, _, v = line.partition(b": ")
                    if f == b"id":
                        ev_id = v.decode()
                    elif f == b"event":
                        name = v.decode()
                    elif f == b"data":
                        data.append(v)
                if data:
                    return ev_id, name, b"\n".join(data)
            self._read(max(0.01, end - time.monotonic()))

    def quiet(self, wait=0.2):
        """True if no event (only the retry line, comments) comes within
        wait."""
        end = time.monotonic() + wait
        while True:
            while b"\n\n" in self.buf:
                block, _, rest = self.buf.partition(b"\n\n")
                if any(l.startswith(b"data") for l in block.split(b"\n")):
                    return False
                self.buf = rest
            left = end - time.monotonic()
            if left <= 0:
                return True
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                d = self.sock.recv(65536)
                if not d:
                    return False
                self.buf += d

    def close(self):
        self.sock.close()


# ---- a TCP frame client ----------------------------------------------------

class Tcp:
    def __init__(self, s, command, timeout=5.0):
        self.sock = socket.create_connection((HOST, s.tcp_port),
                                             timeout=timeout)
        cmd = command.encode()
        self.sock.sendall(struct.pack("!I", len(cmd)) + cmd)
        self.buf = b""

    def _need(self, n, end):
        while len(self.buf) < n:
            left = end - time.monotonic()
            assert left > 0, f"timed out; have {self.buf[-100:]!r}"
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            d = self.sock.recv(65536)
            assert d, f"closed; have {self.buf[-100:]!r}"
            self.buf += d

    def frame(self, timeout=5.0, skip_heartbeats=True):
        end = time.monotonic() + slack(timeout)
        while True:
            self._need(4, end)
            n = struct.unpack("!I", self.buf[:4])[0]
            self._need(4 + n, end)
            p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            if p or not skip_heartbeats:
                return p

    def close(self):
        self.sock.close()


def envelope(p):
    """The id envelope: (head word, channel, payload)."""
    head, _, body = p.partition(b"\n")
    word, _, ch = head.decode().partition(" ")
    return word, ch, body


def learn_epoch(s, ch):
    """The channel's epoch and last offset, from the reset notice a made-up
    id gets (over SSE: its id is where to go on from)."""
    st = Sse(s.port, f"/sub/{ch}?last_event_id=1:1")
    try:
        ev_id, name, data = st.event()
        assert name == "reset", (ev_id, name, data)
        assert json.loads(data)["reason"] == "epoch", data
        return split_id(ev_id)
    finally:
        st.close()


# ---- flags -----------------------------------------------------------------

def test_size_and_ttl_go_together():
    for args in (["--history-size", "10"], ["--history-ttl", "1m"]):
        r = run_moor(["serve", "--listen", "127.0.0.1:0"] + args)
        assert r.returncode == 2, r
        assert "--history-size" in r.stderr and "--history-ttl" in r.stderr, \
            r.stderr


# ---- recovery per protocol ---------------------------------------------------

def test_sse_recovers_with_query_and_header(moor):
    s = hist(moor)
    live = Sse(s.port, "/sub/room")
    assert live.status == 200
    for i in range(1, 6):
        publish(s, "room", f"m{i}")
    ids = []
    for i in range(1, 6):
        ev_id, name, data = live.event()
        assert name is None and data == f"m{i}".encode()
        ids.append(split_id(ev_id))
    live.close()
    epoch = ids[0][0]
    # One epoch, offsets 1..5 in order.
    assert ids == [(epoch, i) for i in range(1, 6)]
    for i in range(6, 8):
        publish(s, "room", f"m{i}")

    # ?last_event_id= (':' as %3A, as URLSearchParams writes it): 4..7,
    # then live.
    st = Sse(s.port, f"/sub/room?last_event_id={epoch}%3A3")
    assert st.status == 200, st.head
    for i in range(4, 8):
        assert st.event() == (f"{epoch}:{i}", None, f"m{i}".encode())
    assert st.quiet()
    publish(s, "room", "m8")
    assert st.event() == (f"{epoch}:8", None, b"m8")
    st.close()

    # The header wins over the query (an EventSource reconnecting keeps
    # its URL and sends the last id it saw).
    st = Sse(s.port, f"/sub/room?last_event_id={epoch}:1",
             headers=[("Last-Event-ID", f"{epoch}:6")])
    assert [st.event()[2] for _ in range(2)] == [b"m7", b"m8"]
    assert st.quiet()
    st.close()

    # Up to date: nothing replayed, no notice.
    st = Sse(s.port, "/sub/room", headers=[("Last-Event-ID", f"{epoch}:8")])
    assert st.quiet(0.3)
    st.close()
    m = s.metrics()
    assert m.get_value("moor_history_replayed_total") == 6
    assert m.get_value("moor_history_messages") == 8
    # A malformed query id is the client's mistake: 400.
    st = Sse(s.port, "/sub/room?last_event_id=nope")
    assert st.status == 400
    st.close()


def test_ws_since_plain_and_envelope(moor):
    s = hist(moor)
    for i in range(1, 5):
        publish(s, "news", f"n{i}")
    epoch, last = learn_epoch(s, "news")
    assert last == 4
    ws = ws_connect(s.port, f"/sub/news?since={epoch}:1")
    try:
        assert [ws.recv_message() for _ in range(3)] == \
            [(OP_TEXT, f"n{i}".encode()) for i in (2, 3, 4)]
        publish(s, "news", "n5")
        assert ws.recv_message() == (OP_TEXT, b"n5")
    finally:
        ws.close()
    ws = ws_connect(s.port, f"/sub/news?since={epoch}:3&ids=1")
    try:
        op, p = ws.recv_message()
        assert op == OP_TEXT
        assert envelope(p) == (f"{epoch}:4", "news", b"n4")
        assert envelope(ws.recv_message()[1]) == (f"{epoch}:5", "news", b"n5")
        # Binary stays binary inside the envelope.
        publish(s, "news", b"\xff\x00")
        op, p = ws.recv_message()
        assert op == OP_BINARY
        assert envelope(p) == (f"{epoch}:6", "news", b"\xff\x00")
    finally:
        ws.close()
    # A malformed since is refused before the upgrade.
    with Conn(s.port) as c:
        r = c.request("GET", "/sub/news?since=12", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13")])
        assert r.status == 400, r


def test_tcp_since_and_envelope(moor):
    s = hist(moor)
    for i in range(1, 4):
        publish(s, "t", f"x{i}")
    epoch, _ = learn_epoch(s, "t")
    t = Tcp(s, f"SUB t since={epoch}:1")
    try:
        assert [t.frame(), t.frame()] == [b"x2", b"x3"]
        publish(s, "t", "x4")
        assert t.frame() == b"x4"
    finally:
        t.close()
    t = Tcp(s, f"SUB t since={epoch}:2 ids=1")
    try:
        assert envelope(t.frame()) == (f"{epoch}:3", "t", b"x3")
        assert envelope(t.frame()) == (f"{epoch}:4", "t", b"x4")
    finally:
        t.close()
    # A bad since closes the connection as a protocol error.
    t = Tcp(s, "SUB t since=zz")
    try:
        t.sock.settimeout(slack(3))
        assert t.sock.recv(100) == b""
    finally:
        t.close()
    s.wait_metric(lambda m: m.get_value("moor_closed_total",
                                        reason="protocol_error") >= 1)


# ---- reset notices -----------------------------------------------------------

def test_reset_notices(moor):
    s = hist(moor, "--recovery-max", "3", size="5")
    for i in range(1, 10):
        publish(s, "r", f"v{i}")  # 5..9 kept
    epoch, last = learn_epoch(s, "r")
    assert last == 9

    # Too old (offset 3 is gone), SSE: "event: reset", id where to go on.
    st = Sse(s.port, f"/sub/r?last_event_id={epoch}:2")
    ev_id, name, data = st.event()
    assert (ev_id, name) == (f"{epoch}:9", "reset")
    assert json.loads(data) == {"channel": "r", "reason": "too_old",
                                "id": f"{epoch}:9"}
    # Then live, with nothing replayed in between.
    publish(s, "r", "v10")
    assert st.event() == (f"{epoch}:10", None, b"v10")
    st.close()

    # Too many (7..10 missed, all kept, --recovery-max 3), WebSocket: a
    # text notice.
    ws = ws_connect(s.port, f"/sub/r?since={epoch}:6")
    try:
        op, p = ws.recv_message()
        assert op == OP_TEXT
        assert json.loads(p) == {"moor_reset": {
            "channel": "r", "reason": "too_many", "id": f"{epoch}:10"}}
    finally:
        ws.close()

    # Another epoch, TCP: a frame "\0{"moor_reset":...}"; in the envelope
    # "reset CHANNEL\n{...}".
    t = Tcp(s, "SUB r since=abc:9")
    try:
        p = t.frame()
        assert p[:1] == b"\0"
        assert json.loads(p[1:])["moor_reset"]["reason"] == "epoch"
    finally:
        t.close()
    t = Tcp(s, "SUB r since=abc:9 ids=1")
    try:
        word, ch, body = envelope(t.frame())
        assert (word, ch) == ("reset", "r")
        assert json.loads(body) == {"channel": "r", "reason": "epoch",
                                    "id": f"{epoch}:10"}
    finally:
        t.close()

    # One id for several channels: a reset for each.
    ws = ws_connect(s.port, f"/sub/r,other?since={epoch}:9")
    try:
        got = {json.loads(ws.recv_message()[1])["moor_reset"]["channel"]:
               None for _ in range(2)}
        assert set(got) == {"r", "other"}
    finally:
        ws.close()
    m = s.metrics()
    for reason, n in (("too_old", 1), ("too_many", 1), ("several", 2)):
        assert m.get_value("moor_history_resets_total", reason=reason) == n
    # learn_epoch's three and the two TCP ones.
    assert m.get_value("moor_history_resets_total", reason="epoch") == 3


def test_restart_changes_epoch(moor):
    s = hist(moor)
    publish(s, "x", "before")
    epoch, last = learn_epoch(s, "x")
    assert last == 1
    rc, err = s.stop(signal.SIGTERM)
    assert_clean_exit(rc, err)
    s2 = hist(moor)
    publish(s2, "x", "after")
    st = Sse(s2.port, "/sub/x", headers=[("Last-Event-ID", f"{epoch}:1")])
    ev_id, name, data = st.event()
    assert name == "reset" and json.loads(data)["reason"] == "epoch"
    new_epoch, off = split_id(ev_id)
    assert new_epoch != epoch and off == 1
    st.close()
    # A Last-Event-ID that is no EPOCH:OFFSET (a number from a server
    # without history) is a reset too, not a 400 that would stop an
    # EventSource for good.
    st = Sse(s2.port, "/sub/x", headers=[("Last-Event-ID", "41")])
    assert st.status == 200
    assert st.event()[1] == "reset"
    st.close()


# ---- the replay under the queue limit --------------------------------------

def test_replay_goes_through_the_slow_policy(moor):
    """A replay is queued like live messages, under --queue-limit and the
    slow policy: drop-oldest drops its oldest part and says so; under
    disconnect a replay that cannot fit at once is a reset (too_big)
    rather than a disconnect the client would meet again at every
    reconnect."""
    body = "z" * 200
    for policy in ("disconnect", "drop-oldest"):
        s = hist(moor, "--queue-limit", "16KiB", "--slow-policy", policy,
                 size="1000")
        with Conn(s.port) as c:
            for i in range(1, 301):
                publish(s, "q", f"{i:04d}{body}", conn=c)
        epoch, last = learn_epoch(s, "q")
        assert last == 300
        path = f"/sub/q?last_event_id={epoch}:0"
        if policy == "disconnect":
            # 60 KB at once is over 16 KiB: it would only get the client
            # let go as slow, at every reconnect. It gets a reset
            # (too_big) instead, on every protocol, and stays.
            st = Sse(s.port, path)
            ev_id, name, data = st.event()
            assert (ev_id, name) == (f"{epoch}:300", "reset")
            assert json.loads(data)["reason"] == "too_big"
            ws = ws_connect(s.port, f"/sub/q?since={epoch}:0")
            t = Tcp(s, f"SUB q since={epoch}:0")
            try:
                p = json.loads(ws.recv_message()[1])["moor_reset"]
                assert p["reason"] == "too_big"
                p = t.frame()
                assert json.loads(p[1:])["moor_reset"]["reason"] == \
                    "too_big"
                # A backlog that fits is replayed.
                st2 = Sse(s.port, f"/sub/q?last_event_id={epoch}:290")
                got = [int(st2.event()[2][:4]) for _ in range(10)]
                assert got == list(range(291, 301))
                st2.close()
                publish(s, "q", "live")
                assert st.event()[2] == b"live"
                assert ws.recv_message() == (OP_TEXT, b"live")
                assert t.frame() == b"live"
            finally:
                st.close()
                ws.close()
                t.close()
            m = s.metrics()
            assert m.get_value("moor_history_resets_total",
                               reason="too_big") == 3
            assert m.get_value("moor_pubsub_slow_disconnects_total",
                               limit="hard") == 0
            continue
        st = Sse(s.port, path)
        # drop-oldest: the oldest replayed go, the client is told how many
        # (a notice with no id: its last id stays that of the last message
        # it got), and what it gets plus what it is told adds up.
        got, dropped = [], 0
        while not got or got[-1] != 300:
            ev_id, name, data = st.event()
            if name == "dropped":
                assert ev_id is None, ev_id
                dropped += int(data)
                continue
            assert name is None
            got.append(int(data[:4]))
            assert ev_id == f"{epoch}:{got[-1]}"
        assert dropped > 0
        assert got == sorted(got)
        assert len(got) + dropped == 300
        st.close()
        m = s.metrics()
        assert m.get_value("moor_pubsub_dropped_total",
                           reason="drop_oldest") == dropped
        # The dropped ones are still in the history: a reconnect from the
        # last id seen before the gap, with room in the queue, gets them.
        st = Sse(s.port, f"/sub/q?last_event_id={epoch}:{got[0] - 1}")
        nxt = st.event()
        assert nxt[1] is None and nxt[0] == f"{epoch}:{got[0]}"
        st.close()


# ---- the seam ----------------------------------------------------------------

def test_no_gap_no_duplicate_while_publishing(moor):
    """A subscriber drops and comes back with the last id it saw, again
    and again, while a publisher runs: it gets every message once, in
    order."""
    s = hist(moor, "--recovery-max", "100000", "--rate", "0", size="100000")
    pub = ws_connect(s.port, "/pub/seam")
    stop = threading.Event()
    sent = [0]

    def run():
        while not stop.is_set() and sent[0] < 20000:
            for _ in range(20):
                sent[0] += 1
                pub.send_text(str(sent[0]))
            time.sleep(0.002)

    th = threading.Thread(target=run)
    got = []
    last = None
    th.start()
    try:
        for rnd in range(8):
            cmd = "SUB seam ids=1" + (f" since={last}" if last else "")
            t = Tcp(s, cmd)
            end = time.monotonic() + 0.15
            while time.monotonic() < end:
                word, ch, body = envelope(t.frame())
                assert word != "reset", body
                got.append((word, int(body)))
                last = word
            t.close()
            if last is None:
                continue
    finally:
        stop.set()
        th.join(10)
    total = sent[0]
    pub.close()
    # The last round: drain to the end.
    t = Tcp(s, f"SUB seam ids=1 since={last}")
    try:
        while not got or got[-1][1] < total:
            word, ch, body = envelope(t.frame())
            got.append((word, int(body)))
    finally:
        t.close()
    nums = [n for _, n in got]
    first = nums[0]
    assert nums == list(range(first, total + 1)), \
        f"gap or duplicate: {len(nums)} got, first {first}, last {total}"
    epochs = {w.split(":")[0] for w, _ in got}
    offs = [int(w.split(":")[1]) for w, _ in got]
    assert len(epochs) == 1
    assert offs == list(range(offs[0], offs[0] + len(offs)))
    assert total > 200, total


# ---- memory ------------------------------------------------------------------

def history_live(s):
    return s.debug_mem()["tags"]["history"]["live_bytes"]


def test_ttl_frees_unsubscribed_channels(moor):
    s = hist(moor, ttl="400ms")
    assert history_live(s) == 0
    with Conn(s.port) as c:
        for i in range(60):
            publish(s, f"c{i % 12}", "x" * 100, conn=c)
    m = s.metrics()
    assert m.get_value("moor_history_messages") == 60
    assert m.get_value("moor_history_channels") == 12
    assert history_live(s) > 0
    m = s.wait_metric(
        lambda m: m.get_value("moor_history_channels") == 0, timeout=5)
    assert m.get_value("moor_history_messages") == 0
    assert m.get_value("moor_history_bytes") == 0
    assert m.get_value("moor_history_evicted_total", reason="ttl") == 60
    assert history_live(s) == 0
    # A subscribed channel keeps its epoch (its record) past the TTL.
    st = Sse(s.port, "/sub/kept")
    publish(s, "kept", "a")
    ev_id, _, _ = st.event()
    time.sleep(slack(0.8))
    assert s.metric("moor_history_channels") == 1
    st2 = Sse(s.port, "/sub/kept", headers=[("Last-Event-ID", ev_id)])
    assert st2.quiet(0.3)  # nothing missed: no reset
    st.close()
    st2.close()
    s.wait_metric(lambda m: m.get_value("moor_history_channels") == 0)
    assert history_live(s) == 0
    rc, err = s.stop(signal.SIGTERM)
    assert_clean_exit(rc, err)


def test_max_bytes_holds_under_a_burst(moor):
    cap = 64 * 1024
    s = hist(moor, "--history-max-bytes", "64KiB", size="1000")
    body = b"y" * 1000
    peak = 0
    with Conn(s.port) as c:
        for i in range(400):
            publish(s, f"b{i % 23}", body, conn=c)
            if i % 50 == 49:
                b = s.metric("moor_history_bytes")
                peak = max(peak, b)
                assert b <= cap, b
    m = s.metrics()
    assert m.get_value("moor_history_bytes") <= cap
    assert m.get_value("moor_history_evicted_total", reason="bytes") > 300
    assert m.get_value("moor_history_messages") < 66
    assert peak > cap / 2
    # The history tag (records and entries) stays within the bound too.
    assert history_live(s) <= cap
    # The newest are the ones kept: a recovery from the last but one of
    # a channel gets exactly the last.
    epoch, last = learn_epoch(s, "b9")
    ws = ws_connect(s.port, f"/sub/b9?since={epoch}:{last - 1}")
    try:
        assert ws.recv_message() == (OP_TEXT, body)
    finally:
        ws.close()
