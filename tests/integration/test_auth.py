"""--auth jwt on the real `moor serve` (issue 16, docs/auth.md).

Tokens are made by other implementations, never by moor: Python's `jwt`
(Debian python3-jwt) and node's `jsonwebtoken` (tests/integration/node).
Keys are made with the openssl command line.

- no token, a bad one (tampered, wrong key, alg none, HS/ES confusion,
  expired, not yet valid, wrong audience, oversized): 401 with the RFC
  6750 challenge, on every route (WebSocket and SSE subscribe, WebSocket
  and POST publish), and counted by reason;
- a channel the token does not grant: 403, subscribe and publish apart,
  with wildcards ("chat.*");
- the token in the Authorization header, the token query parameter, a
  cookie (--auth-cookie), and the TCP protocol's AUTH frame;
- expiry closes an open WebSocket (close 4001), SSE stream ("event:
  expired") and TCP subscriber (a last "\\0token expired" frame) within a
  second or so of exp;
- SIGHUP reloads the secret; /debug/conns shows the token's subject;
- bad flags are refused with a precise message.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import jwt
import pytest

from conftest import (REPO, Conn, assert_clean_exit, build_request, run_moor,
                      slack)
from wsutil import WsConn

HOST = "127.0.0.1"
SECRET = b"moor-test-secret-0123456789-abcdefghijklmnop"
TCP_BANNER_RE = re.compile(r"tcp://127\.0\.0\.1:(\d+)")


# ---- keys and tokens ------------------------------------------------------

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwtkeys")
    (d / "secret").write_bytes(SECRET + b"\n")
    for name, args in (("ec", ["-algorithm", "EC", "-pkeyopt",
                               "ec_paramgen_curve:P-256"]),
                       ("ed", ["-algorithm", "ED25519"]),
                       ("rsa", ["-algorithm", "RSA", "-pkeyopt",
                                "rsa_keygen_bits:2048"])):
        subprocess.run(["openssl", "genpkey", *args, "-out",
                        str(d / f"{name}.key")], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(d / f"{name}.key"),
                        "-pubout", "-out", str(d / f"{name}.pem")],
                       check=True, capture_output=True)

    class K:
        dir = d
        secret = d / "secret"

        @staticmethod
        def priv(name):
            return (d / f"{name}.key").read_bytes()

        @staticmethod
        def pub(name):
            return (d / f"{name}.pem").read_bytes()
    return K


def claims(sub="alice", channels=("news",), publish=(), ttl=300, **extra):
    now = int(time.time())
    c = {"sub": sub, "exp": now + ttl, "iat": now,
         "channels": list(channels), "publish": list(publish)}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def hs(c, secret=SECRET, **kw):
    return jwt.encode(c, secret, algorithm="HS256", **kw)


def start(moor, keys, *args):
    """--auth jwt with the HMAC secret, the EC key (kid "ec") and a TCP
    listener; .tcp_port set."""
    s = moor("--auth", "jwt", "--jwt-secret-file", str(keys.secret),
             "--jwt-key-file", f"{keys.dir}/ec.pem,{keys.dir}/ed.pem",
             "--jwt-leeway", "0", "--tcp-listen", f"{HOST}:0", *args)
    m = TCP_BANNER_RE.search(s.stdout_text())
    assert m, s.stdout_text()
    s.tcp_port = int(m.group(1))
    return s


def bearer(tok):
    return [("Authorization", f"Bearer {tok}")]


def denied(s, reason):
    return s.metrics().get_value("moor_auth_total", result="denied",
                                 reason=reason)


def ws_sub(s, path, headers=(), expect=101):
    w = WsConn(s.port)
    head = w.handshake(path, headers=list(headers))
    assert head.status == expect, head
    return w, head


def post(s, ch, body, headers=()):
    with s.conn() as c:
        return c.request("POST", f"/pub/{ch}", headers=list(headers),
                         body=body)


# ---- refusals --------------------------------------------------------------

def test_no_token_is_401_on_every_route(moor, keys):
    s = start(moor, keys)
    w, head = ws_sub(s, "/sub/news", expect=401)
    assert head.header("WWW-Authenticate") == 'Bearer realm="moor"', head
    w.close()
    with s.conn() as c:
        r = c.request("GET", "/sub/news",
                      headers=[("Accept", "text/event-stream")])
        assert r.status == 401, r
    r = post(s, "news", b"x" * 1000)
    assert r.status == 401 and r.closes(), r
    w, head = ws_sub(s, "/pub/news", expect=401)
    w.close()
    assert denied(s, "no_token") == 4
    assert s.metrics().get_value("moor_pubsub_subscribers") == 0


@pytest.mark.parametrize("case,reason", [
    ("tampered", "bad_signature"),
    ("wrong_secret", "bad_signature"),
    ("alg_none", "bad_alg"),
    ("hs_with_ec_pem", "bad_alg"),
    ("expired", "expired"),
    ("not_yet", "not_yet_valid"),
    ("garbage", "malformed"),
    ("oversized", "malformed"),
])
def test_bad_tokens_are_401_with_their_reason(moor, keys, case, reason):
    s = start(moor, keys, "--max-token-bytes", "2KiB")
    good = hs(claims())
    tok = {
        "tampered": lambda: good.split(".")[0] + "." + base64.urlsafe_b64encode(
            json.dumps(claims(channels=["*"])).encode()).decode().rstrip("=")
            + "." + good.split(".")[2],
        "wrong_secret": lambda: hs(claims(), secret=b"x" * 40),
        "alg_none": lambda: jwt.encode(claims(), None, algorithm="none"),
        # The EC public key's PEM as an HMAC secret: moor never lets the
        # header choose HMAC for a public key.
        "hs_with_ec_pem": lambda: hmac_token(claims(), keys.pub("ec"),
                                             kid="ec"),
        "expired": lambda: hs(claims(ttl=-10)),
        "not_yet": lambda: hs(claims(nbf=int(time.time()) + 3600)),
        "garbage": lambda: "not.a.token",
        "oversized": lambda: hs(claims(pad="x" * 4000)),
    }[case]()
    w, head = ws_sub(s, "/sub/news", bearer(tok), expect=401)
    w.close()
    assert "invalid_token" in head.header("WWW-Authenticate"), head
    assert f"({reason})" in head.body.decode(), head
    assert denied(s, reason) == 1, s.metrics_text()
    assert tok not in s.stderr_text()  # never logged


def hmac_token(c, key, kid=None):
    """An HS256 token signed with key, made by hand (PyJWT refuses to use
    a PEM public key as an HMAC secret, which is the attack)."""
    import hashlib
    import hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).decode().rstrip("=")
    h = {"alg": "HS256", "typ": "JWT"}
    if kid:
        h["kid"] = kid
    si = b64(json.dumps(h).encode()) + "." + b64(json.dumps(c).encode())
    sig = hmac.new(key, si.encode(), hashlib.sha256).digest()
    return si + "." + b64(sig)


def test_audience_and_issuer(moor, keys):
    s = start(moor, keys, "--jwt-audience", "moor", "--jwt-issuer",
              "https://auth.example")
    iss = "https://auth.example"
    for c, want, reason in (
            (claims(aud="moor", iss=iss), 101, None),
            (claims(aud=["x", "moor"], iss=iss), 101, None),
            (claims(aud="other", iss=iss), 401, "wrong_audience"),
            (claims(iss=iss), 401, "wrong_audience"),
            (claims(aud="moor", iss="https://evil.example"), 401,
             "wrong_issuer")):
        w, head = ws_sub(s, "/sub/news", bearer(hs(c)), expect=want)
        w.close()
        if reason:
            assert f"({reason})" in head.body.decode(), head
    assert denied(s, "wrong_audience") == 2
    assert denied(s, "wrong_issuer") == 1


def test_channels_granted_apart_for_subscribe_and_publish(moor, keys):
    s = start(moor, keys)
    tok = hs(claims(channels=["chat.*", "news"], publish=["chat.room1"]))
    for path, want in (("/sub/news", 101), ("/sub/chat.room9", 101),
                       ("/sub/news,chat.a", 101), ("/sub/sports", 403),
                       ("/sub/news,sports", 403), ("/sub/chat", 403)):
        w, head = ws_sub(s, path, bearer(tok), expect=want)
        if want == 403:
            assert "insufficient_scope" in head.header("WWW-Authenticate")
        w.close()
    assert post(s, "chat.room1", b"hi", bearer(tok)).status == 202
    r = post(s, "news", b"hi", bearer(tok))  # may read news, not write it
    assert r.status == 403, r
    assert denied(s, "not_allowed") == 4  # 3 subscriptions, 1 publication


def test_message_flows_with_tokens_from_three_places(moor, keys):
    s = start(moor, keys, "--auth-cookie", "session")
    sub_tok = hs(claims(channels=["news"]))
    pub_tok = hs(claims(sub="publisher", channels=[], publish=["news"]))
    a, _ = ws_sub(s, "/sub/news", bearer(sub_tok))
    b, _ = ws_sub(s, f"/sub/news?token={sub_tok}")
    c, _ = ws_sub(s, "/sub/news", [("Cookie", f"theme=dark; session={sub_tok}")])
    r = post(s, "news", b"hello", bearer(pub_tok))
    assert r.status == 202 and json.loads(r.body)["subscribers"] == 3, r
    for w in (a, b, c):
        op, data = w.recv_message()
        assert data == b"hello"
        w.close()
    assert s.metrics().get_value("moor_auth_total", result="allowed",
                                 reason="token") == 4


def test_es256_and_eddsa_and_node_tokens(moor, keys):
    s = start(moor, keys)
    es = jwt.encode(claims(), keys.priv("ec"), algorithm="ES256",
                    headers={"kid": "ec"})
    ed = jwt.encode(claims(), keys.priv("ed"), algorithm="EdDSA")
    for tok in (es, ed, node_token(keys)):
        w, _ = ws_sub(s, "/sub/news", bearer(tok))
        w.close()
    # An ES256 token naming the Ed25519 key: refused.
    wrong = jwt.encode(claims(), keys.priv("ec"), algorithm="ES256",
                       headers={"kid": "ed"})
    w, _ = ws_sub(s, "/sub/news", bearer(wrong), expect=401)
    w.close()


def node_token(keys):
    """An HS256 token made by node's jsonwebtoken."""
    mod = REPO / "tests/integration/node/node_modules/jsonwebtoken"
    script = ("const jwt=require(process.argv[1]);"
              "process.stdout.write(jwt.sign({sub:'node',channels:['news']},"
              "process.argv[2],{algorithm:'HS256',expiresIn:300}))")
    out = subprocess.run(["node", "-e", script, str(mod), SECRET.decode()],
                         check=True, capture_output=True, text=True,
                         timeout=30)
    return out.stdout.strip()


# ---- expiry on open connections ------------------------------------------

@pytest.mark.wall(30)
def test_expiry_closes_websocket_sse_and_tcp(moor, keys):
    s = start(moor, keys)
    exp = int(time.time()) + 3
    tok = hs(dict(claims(ttl=0, publish=["news"]), exp=exp))
    w, _ = ws_sub(s, "/sub/news", bearer(tok))
    sse = Conn(s.port, timeout=10)
    sse.send(build_request("GET", "/sub/news",
                           [("Accept", "text/event-stream")] + bearer(tok)))
    head = sse.read_until(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    t = tcp_connect(s)
    tcp_send(t, b"AUTH " + tok.encode())
    tcp_send(t, b"SUB news")
    time.sleep(0.3)
    assert s.metrics().get_value("moor_auth_connections") == 3
    frame, _ = w.expect_close(4001, timeout=slack(6), reply=True)
    assert frame.close_reason == b"token expired"
    assert abs(time.time() - exp) < slack(1.5)
    rest = sse.read_to_eof()
    assert b"event: expired\ndata: token expired\n\n" in rest, rest
    frames = tcp_frames(t)
    assert frames[-1] == b"\0token expired", frames
    m = s.metrics()
    assert m.get_value("moor_auth_expired_total") == 3
    assert m.get_value("moor_auth_connections") == 0
    w.close()
    t.close()
    rc, err = s.stop(signal.SIGTERM, timeout=slack(10))
    assert_clean_exit(rc, err)


# ---- TCP -------------------------------------------------------------------

def tcp_connect(s):
    t = socket.create_connection((HOST, s.tcp_port), timeout=10)
    return t


def tcp_send(t, payload):
    t.sendall(struct.pack(">I", len(payload)) + payload)


def tcp_frames(t):
    """Every frame until EOF."""
    data = b""
    while True:
        b = t.recv(65536)
        if not b:
            break
        data += b
    out = []
    while len(data) >= 4:
        n = struct.unpack(">I", data[:4])[0]
        out.append(data[4:4 + n])
        data = data[4 + n:]
    return out


def test_tcp_auth_frame(moor, keys):
    s = start(moor, keys)
    t = tcp_connect(s)
    tcp_send(t, b"SUB news")  # no AUTH first
    assert tcp_frames(t) == [b"\0no token: send AUTH <token> first"]
    t = tcp_connect(s)
    tcp_send(t, b"AUTH " + hs(claims(sub="x", channels=["*"]), secret=b"y" * 40).encode())
    assert tcp_frames(t) == [b"\0token refused: bad_signature"]
    t = tcp_connect(s)
    tcp_send(t, b"AUTH " + hs(claims(channels=["news"])).encode())
    tcp_send(t, b"SUB news sports")
    assert tcp_frames(t) == [b"\0not allowed: the token does not grant this"]
    # The refusal is the last frame even when more frames came in the same
    # write: they are not acted on (no second refusal, no subscription).
    allowed = s.metrics().get_value("moor_auth_total", result="allowed",
                                    reason="token")
    t = tcp_connect(s)
    t.sendall(b"".join(struct.pack(">I", len(p)) + p for p in (
        b"AUTH " + hs(claims(channels=["*"]), secret=b"y" * 40).encode(),
        b"SUB news")))
    assert tcp_frames(t) == [b"\0token refused: bad_signature"]
    t = tcp_connect(s)
    t.sendall(b"".join(struct.pack(">I", len(p)) + p for p in (
        b"AUTH " + hs(claims(channels=["*"]), secret=b"y" * 40).encode(),
        b"AUTH " + hs(claims(channels=["news"])).encode(), b"SUB news")))
    assert tcp_frames(t) == [b"\0token refused: bad_signature"]
    t = tcp_connect(s)
    t.sendall(b"".join(struct.pack(">I", len(p)) + p for p in (
        b"AUTH " + hs(claims(channels=["news"])).encode(),
        b"SUB news sports", b"SUB news")))
    assert tcp_frames(t) == [b"\0not allowed: the token does not grant this"]
    assert s.metrics().get_value("moor_auth_total", result="allowed",
                                 reason="token") == allowed
    # Allowed: subscribes and gets a message; a TCP publisher too.
    sub = tcp_connect(s)
    tcp_send(sub, b"AUTH " + hs(claims(channels=["news"])).encode())
    tcp_send(sub, b"SUB news")
    pub = tcp_connect(s)
    tcp_send(pub, b"AUTH " + hs(claims(channels=[], publish=["news"])).encode())
    tcp_send(pub, b"PUB news")
    deadline = time.monotonic() + slack(5)
    while s.metrics().get_value("moor_pubsub_subscribers") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    tcp_send(pub, b"over tcp")
    sub.settimeout(5)
    got = sub.recv(64)
    assert got == struct.pack(">I", 8) + b"over tcp", got
    sub.close()
    pub.close()


# ---- operations ------------------------------------------------------------

def test_debug_is_off_publicly_and_shows_the_subject_on_admin(moor, keys):
    """With --auth on, /debug/* is served only on --admin-listen (nowhere
    without one): a token does not entitle anyone to every peer's address.
    There, /debug/conns names each connection's token subject."""
    s = start(moor, keys)
    assert s.get("/debug/conns").status == 404
    assert s.get("/metrics").status == 200
    s = start(moor, keys, "--admin-listen", f"{HOST}:0")
    w, _ = ws_sub(s, "/sub/news", bearer(hs(claims(sub="carol"))))
    assert s.get("/debug/conns").status == 404
    with Conn(s.admin_port) as c:
        r = c.request("GET", "/debug/conns")
    assert r.status == 200, r
    rows = [json.loads(line) for line in r.body.decode().splitlines()]
    subs = [x for x in rows if x.get("role") == "subscriber"]
    assert len(subs) == 1 and subs[0]["sub"] == "carol", rows
    w.close()


def test_sighup_reloads_the_secret(moor, keys, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    s = moor("--auth", "jwt", "--jwt-secret-file", str(secret))
    old = hs(claims())
    w, _ = ws_sub(s, "/sub/news", bearer(old))
    w.close()
    new_secret = b"n" * 48
    secret.write_bytes(new_secret)
    s.proc.send_signal(signal.SIGHUP)
    s.wait_log("jwt keys reloaded")
    w, _ = ws_sub(s, "/sub/news", bearer(old), expect=401)
    w.close()
    w, _ = ws_sub(s, "/sub/news", bearer(hs(claims(), secret=new_secret)))
    w.close()
    secret.write_bytes(b"short")  # under 32 bytes: refused, old keys stay
    s.proc.send_signal(signal.SIGHUP)
    s.wait_log("jwt key reload failed")
    w, _ = ws_sub(s, "/sub/news", bearer(hs(claims(), secret=new_secret)))
    w.close()
    m = s.metrics()
    assert m.get_value("moor_auth_reloads_total", result="ok") == 1
    assert m.get_value("moor_auth_reloads_total", result="failed") == 1


@pytest.mark.parametrize("args,words", [
    (["--auth", "jwt"], "--auth jwt needs a key"),
    (["--jwt-secret-file", "/etc/hostname"], "used only with --auth jwt"),
    (["--auth", "jwt", "--jwt-secret-file", "/nonexistent/secret"],
     "/nonexistent/secret"),
    (["--auth", "magic"], "--auth"),
])
def test_bad_flags(args, words):
    r = run_moor(["serve", "--listen", f"{HOST}:0", *args])
    assert r.returncode in (1, 2), r
    assert words in r.stderr, r.stderr
