#!/usr/bin/env python3
"""make_auth_seeds.py - writes the seeds of fuzz/fuzz_conn.c's --auth jwt
server (server 3) into fuzz/corpus/conn/, as auth_* files: tokens signed
with the target's fixed secret (FUZZ_SECRET in fuzz/fuzz_conn.c) in
Authorization: Bearer, ?token= and the moor_token cookie, the framed TCP
protocol's AUTH <token> first frame, refusals (no token, bad signature,
alg none, expired, not yet valid, wrong channel, too long), connections
closed part way, and tokens that expire while their connection is open
(the script moves the target's clock).

Needs Debian's python3-jwt (PyJWT). The input format is described at the
top of fuzz/fuzz_conn.c; the helpers are make_conn_seeds.py's. The output
is deterministic; change this script and rerun it rather than editing
the seed files (make_conn_seeds.py leaves auth_* files alone).

    /usr/bin/python3 fuzz/corpus/make_auth_seeds.py
"""
import os
import sys

import jwt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_conn_seeds import (  # noqa: E402
    CLOSE, OUT, REOPEN, RUN, SHUT, W, W8, close_frame, get, header, post,
    post_chunked, chunks, sse, text, tframe, upgrade)

SECRET = b"moor fuzz_conn secret, not a secret at all 0123"
# The target's wall clock at the start of every input (FAKE_EPOCH_S).
EPOCH = 1893456000   # 2030-01-01T00:00:00Z
FAR = 4102444800     # 2100-01-01T00:00:00Z: stays valid
ADV = {16: 1, 50: 2, 100: 3, 500: 4, 1000: 5, 2000: 6, 5000: 7, 9000: 8,
       10000: 9, 15000: 10, 16000: 11, 30000: 12, 35000: 13, 60000: 14,
       120000: 15}


def tok(claims, alg="HS256", key=SECRET, headers=None):
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


ALICE = tok({"sub": "alice", "exp": FAR, "channels": ["news", "chat.*"],
             "publish": ["news", "chat.alice"]})
READER = tok({"sub": "reader", "exp": FAR, "channels": ["news"]})
EVERYTHING = tok({"sub": "root", "exp": FAR, "channels": ["*"],
                  "publish": ["*"]})
HS384 = tok({"sub": "h384", "exp": FAR, "channels": ["news"],
             "publish": ["news"]}, alg="HS384")
HS512 = tok({"sub": "h512", "exp": FAR, "channels": ["news"],
             "publish": ["news"]}, alg="HS512")
# exp + the 5 s leeway is 25 s into the input: an advance of 30 s ends it.
SHORT = tok({"sub": "brief", "exp": EPOCH + 20, "channels": ["news"],
             "publish": ["news"]})
EXPIRED = tok({"sub": "late", "exp": EPOCH - 100, "channels": ["news"]})
NOT_YET = tok({"sub": "early", "exp": FAR, "nbf": EPOCH + 60,
               "channels": ["news"]})
NO_EXP = tok({"sub": "forever", "channels": ["news"]})
WRONG_KEY = tok({"sub": "mallory", "exp": FAR, "channels": ["*"],
                 "publish": ["*"]}, key=b"x" * 40)
BAD_SIG = ALICE[:-2] + ("AA" if ALICE[-2:] != "AA" else "BB")
ALG_NONE = jwt.encode({"sub": "none", "exp": FAR, "channels": ["*"]}, None,
                      algorithm="none")
KID = tok({"sub": "kid", "exp": FAR, "channels": ["news"]},
          headers={"kid": "nobody"})
CHANNELS_STRING = tok({"sub": "str", "exp": FAR, "channels": "news"})
LONG = tok({"sub": "long", "exp": FAR, "channels": ["news"],
            "pad": "p" * 1200})


def bearer(t):
    return f"Authorization: Bearer {t}\r\n"


def cookie(t):
    return f"Cookie: theme=dark; moor_token={t}; x=1\r\n"


def adv(conn, ms, k=3):
    """Run the loop k times after moving the clock ms forward (op 3)."""
    return RUN(conn, ADV[ms] << 4 | k)


A = dict(variant=3)

SEEDS = {}


def seed(name, data):
    name = "auth_" + name
    assert name not in SEEDS, name
    SEEDS[name] = data


def http_seeds():
    # Subscribers that hold a token, and a publisher that reaches them.
    seed("ws_sub_bearer", header(2, **A) +
         W(0, upgrade("/sub/news,chat.room1", bearer(ALICE))) + RUN() +
         W(1, post("/pub/news", "hello", bearer(ALICE))) + RUN() +
         W(0, close_frame()) + RUN())
    seed("sse_sub_query", header(2, **A) +
         W(0, sse(f"/sub/news?token={READER}")) + RUN() +
         W(1, post("/pub/news", "to sse", bearer(EVERYTHING))) + RUN())
    seed("sse_sub_query_second_param", header(**A) +
         W(0, sse(f"/sub/news?a=1&token={READER}&b=2")))
    seed("ws_sub_cookie", header(2, **A) +
         W(0, upgrade("/sub/news", cookie(READER))) + RUN() +
         W(1, post("/pub/news", "to cookie", cookie(ALICE))) + RUN())
    seed("sse_sub_cookie", header(**A) + W(0, sse("/sub/chat.x",
                                                  cookie(ALICE))))
    seed("ws_pub_bearer", header(2, **A) +
         W(0, upgrade("/sub/chat.alice", bearer(ALICE))) + RUN() +
         W(1, upgrade("/pub/chat.alice", bearer(ALICE))) + RUN() +
         W(1, text("m1") + text("m2") + close_frame()) + RUN())
    seed("ws_pub_query_hs384", header(2, **A) +
         W(0, sse(f"/sub/news?token={HS512}")) + RUN() +
         W(1, upgrade(f"/pub/news?token={HS384}")) + RUN() +
         W(1, text("384")) + RUN())
    seed("post_pub_bearer", header(**A) +
         W(0, post("/pub/news", "hi", bearer(ALICE)) +
           post("/pub/chat.alice", "again", bearer(ALICE))))
    seed("post_pub_chunked_bearer", header(**A) + W(
        0, post_chunked("/pub/news", chunks("ab", "cd"), bearer(ALICE))))
    # Refused on its head: the body is not read, the conn not kept.
    seed("post_pub_no_publish_right", header(**A) +
         W(0, post("/pub/news", "nope", bearer(READER)) +
           get("/healthz").encode()))
    seed("post_pub_no_token", header(**A) +
         W(0, post("/pub/news", "x" * 3000) + get("/healthz").encode()))
    seed("post_pub_chunked_no_token", header(**A) + W(
        0, post_chunked("/pub/news", b"zz\r\nbad chunk\r\n")))
    seed("post_pub_bad_sig", header(**A) +
         W(0, post("/pub/news", "x", bearer(BAD_SIG))))
    seed("post_pub_expect", header(**A) + W(
        0, post("/pub/news", "x", bearer(READER) +
                "Expect: 100-continue\r\n")))
    seed("post_pub_bad_channel_token", header(**A) +
         W(0, post("/pub/bad!name", "x", bearer(ALICE))))
    # Refusals of subscriptions.
    seed("ws_sub_no_token", header(**A) + W(0, upgrade("/sub/news")))
    seed("sse_sub_no_token", header(**A) + W(0, sse("/sub/news")))
    seed("ws_sub_not_granted", header(**A) +
         W(0, upgrade("/sub/news,secret", bearer(READER))))
    seed("sse_sub_prefix_not_bare", header(**A) +
         W(0, sse("/sub/chat", bearer(ALICE))))
    for name, t in (("bad_sig", BAD_SIG), ("wrong_key", WRONG_KEY),
                    ("alg_none", ALG_NONE), ("expired", EXPIRED),
                    ("not_yet", NOT_YET), ("no_exp", NO_EXP), ("kid", KID),
                    ("channels_string", CHANNELS_STRING),
                    ("too_long", LONG)):
        seed("ws_sub_" + name, header(**A) +
             W(0, upgrade("/sub/news", bearer(t))))
    seed("sse_sub_malformed", header(**A) + W(
        0, sse("/sub/news", bearer("eyJhbGciOiJIUzI1NiJ9.e30"))))
    seed("sse_sub_query_percent", header(**A) + W(
        0, sse("/sub/news?token=" + READER.replace(".", "%2E", 1))))
    seed("sse_sub_bearer_lowercase", header(**A) + W(
        0, sse("/sub/news", f"authorization: bearer  {READER} \r\n")))
    seed("sse_sub_basic_then_query", header(**A) + W(
        0, sse(f"/sub/news?token={READER}",
               "Authorization: Basic dXNlcjpwYXNz\r\n")))
    seed("sse_sub_empty_bearer", header(**A) + W(
        0, sse("/sub/news", "Authorization: Bearer \r\n")))
    seed("sse_sub_other_cookie", header(**A) + W(
        0, sse("/sub/news", f"Cookie: token={READER}\r\n")))
    seed("get_healthz", header(**A) + W(0, get("/healthz") +
                                         get("/debug/conns")))
    seed("echo", header(**A) + W(0, upgrade("/echo")) + RUN() +
         W(0, text("no token needed")))
    # The token in pieces, a byte at a time.
    seed("sse_sub_trickle", header(**A) + W8(0, sse("/sub/news",
                                                     bearer(READER))))


def tcp_seeds():
    T = dict(variant=3)
    seed("tcp_auth_sub", header(2, tcp=(0, 1), **T) +
         W(0, tframe("AUTH " + READER) + tframe("SUB news")) + RUN() +
         W(1, tframe("AUTH " + ALICE) + tframe("PUB news") +
           tframe("one") + tframe("two")) + RUN())
    seed("tcp_auth_pub_frames", header(2, tcp=(1,), **T) +
         W(0, upgrade("/sub/chat.alice", bearer(ALICE))) + RUN() +
         W(1, tframe("AUTH " + ALICE) + tframe("PUB chat.alice") +
           b"".join(tframe(f"m{i}") for i in range(8))) + RUN())
    seed("tcp_auth_split", header(2, tcp=(0, 1), **T) +
         W8(0, tframe("AUTH " + EVERYTHING)) + W(0, tframe("SUB a b")) +
         W(1, tframe("AUTH " + EVERYTHING) + tframe("PUB b") +
           tframe("x")) + RUN())
    seed("tcp_no_auth", header(tcp=(0,), **T) + W(0, tframe("SUB news")))
    seed("tcp_auth_bad", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + BAD_SIG) + tframe("SUB news")))
    seed("tcp_auth_empty", header(tcp=(0,), **T) + W(0, tframe("AUTH ")))
    seed("tcp_auth_not_granted", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + READER) + tframe("SUB news secret")))
    seed("tcp_auth_pub_not_granted", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + READER) + tframe("PUB news")))
    # A refusal is the last frame: what follows it in the same read is
    # not read (a second AUTH or command once subscribed a refused conn).
    seed("tcp_refused_then_sub", header(2, tcp=(0, 1), **T) +
         W(0, tframe("AUTH " + READER) + tframe("SUB news secret") +
           tframe("SUB news")) + RUN() +
         W(1, tframe("AUTH " + ALICE) + tframe("PUB news") +
           tframe("after the refusal")) + RUN())
    seed("tcp_bad_then_good", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + BAD_SIG) + tframe("AUTH " + READER) +
           tframe("SUB news")))
    seed("tcp_auth_twice", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + READER) + tframe("AUTH " + READER)))
    seed("tcp_auth_too_long", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + LONG)))
    # Closed between AUTH and the command: the grant is freed.
    seed("tcp_auth_then_close", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + ALICE)) + RUN() + CLOSE(0))
    seed("tcp_auth_then_half_close", header(tcp=(0,), **T) +
         W(0, tframe("AUTH " + ALICE) + b"\x00\x00") + SHUT(0) + RUN())
    seed("tcp_auth_sub_reconnect", header(2, tcp=(0, 1), **T) +
         W(0, tframe("AUTH " + READER) + tframe("SUB news")) +
         W(1, tframe("AUTH " + ALICE) + tframe("PUB news") + tframe("1")) +
         REOPEN(0, tcp=True) + W(0, tframe("SUB news")) +
         W(1, tframe("2")) + RUN())


def expiry_seeds():
    # Tokens that end 25 s into the input; the clock moves 30 s.
    seed("expire_ws_sub", header(2, **A) +
         W(0, upgrade("/sub/news", bearer(SHORT))) + RUN() +
         W(1, post("/pub/news", "before", bearer(ALICE))) + RUN() +
         adv(0, 30000) + RUN() +
         W(1, post("/pub/news", "after", bearer(ALICE))) + RUN())
    seed("expire_sse_sub", header(**A) +
         W(0, sse(f"/sub/news?token={SHORT}")) + RUN() + adv(0, 30000) +
         RUN())
    seed("expire_tcp_sub", header(tcp=(0,), **A) +
         W(0, tframe("AUTH " + SHORT) + tframe("SUB news")) + RUN() +
         adv(0, 30000) + RUN())
    seed("expire_tcp_pub", header(tcp=(0,), **A) +
         W(0, tframe("AUTH " + SHORT) + tframe("PUB news") + tframe("a")) +
         adv(0, 30000) + W(0, tframe("b")) + RUN())
    seed("expire_ws_pub", header(2, **A) +
         W(0, upgrade("/pub/news", bearer(SHORT))) + RUN() +
         W(0, text("a")) + adv(0, 30000) + W(0, text("b")) + RUN())
    # Three at once, one closed before its expiry, one reconnects with a
    # fresh token after.
    seed("expire_three", header(3, tcp=(2,), **A) +
         W(0, upgrade("/sub/news", bearer(SHORT))) +
         W(1, sse("/sub/news", cookie(SHORT))) +
         W(2, tframe("AUTH " + SHORT) + tframe("SUB news")) + RUN() +
         CLOSE(1) + adv(0, 16000) + adv(0, 16000) +
         REOPEN(0) + W(0, upgrade("/sub/news", bearer(READER))) + RUN())
    # Still valid within the leeway, then refused once past it.
    # (A conn opened before an advance past 10 s meets its header
    # deadline: the requests after one go on a new conn.)
    seed("expire_then_refused", header(**A) + adv(0, 9000) +
         W(0, post("/pub/news", "valid", bearer(SHORT))) + adv(0, 9000) +
         REOPEN(0) + W(0, post("/pub/news", "in leeway", bearer(SHORT))) +
         adv(0, 9000) + REOPEN(0) +
         W(0, post("/pub/news", "late", bearer(SHORT))))
    seed("not_yet_then_valid", header(**A) +
         W(0, sse("/sub/news", bearer(NOT_YET))) + adv(0, 60000) +
         REOPEN(0) + W(0, sse("/sub/news", bearer(NOT_YET))) + RUN())
    # A stalled subscriber whose token ends with a full queue.
    seed("expire_stalled", header(2, small=True, **A) +
         W(0, upgrade("/sub/news", bearer(SHORT))) + RUN() +
         bytes([0 | 6 << 2]) +
         W(1, b"".join(post("/pub/news", "q" * 1500, bearer(ALICE))
                       for _ in range(10))) + adv(0, 30000, 15) +
         bytes([0 | 6 << 2]) + RUN(0, 15))
    # Deadlines the clock now reaches: a head never finished, a
    # subscriber's heartbeats.
    seed("header_timeout", header(**A) +
         W(0, "GET /sub/news HTTP/1.1\r\nAuthorization: Bearer ") +
         adv(0, 15000))
    seed("sse_heartbeat", header(**A) + W(0, sse("/sub/news",
                                                  bearer(READER))) +
         adv(0, 16000) + adv(0, 16000) + RUN())


def main():
    http_seeds()
    tcp_seeds()
    expiry_seeds()
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.startswith("auth_"):
            os.unlink(os.path.join(OUT, old))
    for name, data in sorted(SEEDS.items()):
        assert len(data) <= 64 * 1024, name
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
