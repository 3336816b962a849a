#!/usr/bin/env python3
"""make_http_client_seeds.py - writes the seed corpus of
fuzz/fuzz_http_client.c into fuzz/corpus/http_client/, one file per
scenario, from the server shapes tests/unit/http_client_fixture.h answers
with: Content-Length, chunked with extensions and trailers,
close-delimited, 100 Continue then 200, 204 and 304 (to GET and HEAD),
HTTP/1.0 and Connection: close, bodies from memory and produced, a pooled
connection reused and then closed, reset or sent stray bytes by the
server (the retry), a second response nobody asked for, pause, cancel, the
wait queue, and malformed heads and chunks.

The input format is described at the top of fuzz/fuzz_http_client.c. Run
from anywhere; the output is deterministic (same files, same bytes), so a
change to a seed shows in review as a change to this script.

    python3 fuzz/corpus/make_http_client_seeds.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "http_client")

# ---- the script format ----------------------------------------------------

# Request kinds (byte a, bits 0-2) and callback behaviours (bits 5-7).
GET, HEAD, POST_MEM, PUT_PRODUCED, POST_CHUNKED, DELETE, POST_KEY, PUT_MEM = \
    range(8)
NONE, PAUSE_BODY, CANCEL_HEAD, CANCEL_BODY, CANCEL_WRITABLE, CHAIN, \
    CLOSE_IDLE, CANCEL_OTHERS = range(8)
SIZES = {0: 0, 3: 1, 700: 2, 6000: 3}


def header(conns=2, small_rcvbuf=False, tight=False, max_req=False,
           small_limits=False, idle1=False, wait1=False, rbuf=0, age=0):
    """Bytes 0 and 1: the client's options, the loop's read buffer
    (0: 64 KiB, 1: 4 KiB, 2: 512, 3: 97 bytes) and max_conn_age_ms (0:
    none, 1: 1 ms, 2: 5 ms, 3: 30 ms)."""
    b = (conns - 1) & 3
    b |= 0x04 if small_rcvbuf else 0
    b |= 0x08 if tight else 0
    b |= 0x10 if max_req else 0
    b |= 0x20 if small_limits else 0
    b |= 0x40 if idle1 else 0
    b |= 0x80 if wait1 else 0
    return bytes([b, rbuf & 3 | (age & 3) << 2])


def REQ(kind=GET, size=0, behave=NONE, piece=4, lazy=False, bad=False,
        extra=0):
    """Start a request (op 0). extra: 1 the host is "localhost", 2
    timeout_ms 1, 3 a refused port."""
    a = kind | SIZES[size] << 3 | behave << 5
    b = piece | (0x10 if lazy else 0) | (0x20 if bad else 0) | extra << 6
    return bytes([0, a, b])


def W(slot, data):
    """Slot writes data (op 2: two-byte length)."""
    if isinstance(data, str):
        data = data.encode()
    out = b""
    while data:
        part, data = data[:65535], data[65535:]
        out += bytes([slot << 4 | 2]) + struct.pack("<H", len(part)) + part
    return out


def W8(slot, data):
    """Slot writes data one byte at a time (op 1, length 1)."""
    if isinstance(data, str):
        data = data.encode()
    return b"".join(bytes([slot << 4 | 1, 1, c]) for c in data)


def split(slot, data, at):
    if isinstance(data, str):
        data = data.encode()
    return W(slot, data[:at]) + W(slot, data[at:])


def RUN(k=3):
    return bytes([4, k])


def SHUT(slot):
    return bytes([slot << 4 | 5])


def CLOSE(slot):
    return bytes([slot << 4 | 6])


def RESET(slot):
    return bytes([slot << 4 | 7])


def ACCEPT(slot):
    return bytes([slot << 4 | 8])


def STALL(slot):
    return bytes([slot << 4 | 9])


def CANCEL(call):
    return bytes([call << 4 | 10])


def PAUSE(call):
    return bytes([call << 4 | 11])


def RESUME(call):
    return bytes([call << 4 | 12])


def PRODUCE(call):
    return bytes([call << 4 | 13])


def CLOSE_IDLE_OP():
    return bytes([14])


def SLEEP():
    return bytes([15])


# ---- responses ------------------------------------------------------------

def cl(body="ok", status="200 OK", extra=""):
    return (f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\n"
            f"\r\n{body}")


CHUNKED = ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5;name=value\r\nhello\r\n6;a=b;c=\"d\"\r\n world\r\n"
           "f\r\n, and 15 bytes.\r\n0\r\nX-Trailer: t\r\nX-Two: 2\r\n\r\n")
CLOSE_DELIM = "HTTP/1.1 200 OK\r\n\r\nuntil the close"
CONTINUE = ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
            "Content-Length: 5\r\n\r\nhello")
R204 = "HTTP/1.1 204 No Content\r\n\r\n"
R304 = "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
HEAD_CL = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
HTTP10 = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
CONNCLOSE = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
BIG = cl("b" * 2000)
BIG_CHUNKED = ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               "7d0\r\n" + "c" * 2000 + "\r\n0\r\n\r\n")

# ---- the seeds ------------------------------------------------------------

SEEDS = {}


def seed(name, data):
    assert name not in SEEDS, name
    SEEDS[name] = data


def basic_seeds():
    seed("get_cl", header() + REQ() + W(0, cl("hello world")) + RUN())
    seed("get_cl_split", header() + REQ() + split(0, cl("hello world"), 20))
    seed("get_cl_trickle", header() + REQ() + W8(0, cl("hi")))
    seed("get_chunked_trailers", header() + REQ() + W(0, CHUNKED) + RUN())
    seed("get_chunked_trickle", header(rbuf=3) + REQ() + W8(0, CHUNKED))
    seed("get_close_delimited", header() + REQ() + W(0, CLOSE_DELIM) +
         CLOSE(0) + RUN())
    seed("get_close_delimited_reset", header() + REQ() + W(0, CLOSE_DELIM) +
         RESET(0) + RUN())
    seed("get_100_continue", header() + REQ() + W(0, CONTINUE) + RUN())
    seed("post_100_continue", header() + REQ(POST_MEM, 700) +
         W(0, CONTINUE) + RUN())
    seed("get_204", header() + REQ() + W(0, R204) + RUN())
    seed("get_304", header() + REQ() + W(0, R304) + RUN())
    seed("head_cl", header() + REQ(HEAD) + W(0, HEAD_CL) + RUN())
    seed("head_204_then_get", header(conns=1) + REQ(HEAD) + W(0, R204) +
         RUN() + REQ() + W(0, cl()) + RUN())
    seed("get_http10", header() + REQ() + W(0, HTTP10) + RUN())
    seed("get_connection_close", header() + REQ() + W(0, CONNCLOSE) + RUN())
    seed("get_big_small_rbuf", header(rbuf=2) + REQ() + W(0, BIG) + RUN())
    seed("get_big_chunked_over_max_body", header(small_limits=True) + REQ() +
         W(0, BIG_CHUNKED) + RUN())
    seed("get_big_cl_over_max_body", header(small_limits=True) + REQ() +
         W(0, BIG) + RUN())
    seed("get_refused", header() + REQ(extra=3) + RUN())
    seed("get_localhost", header() + REQ(extra=1) + W(0, cl()) + RUN() +
         REQ() + W(1, cl()) + RUN() + REQ(extra=1) + W(0, cl()) + RUN())
    seed("delete_cl", header() + REQ(DELETE) + W(0, cl()) + RUN())


def body_seeds():
    seed("post_mem", header() + REQ(POST_MEM, 700) + RUN() + W(0, cl()) +
         RUN())
    seed("post_mem_big_small_rcvbuf", header(small_rcvbuf=True) +
         REQ(POST_MEM, 6000) + RUN(15) + W(0, cl()) + RUN())
    seed("put_mem", header() + REQ(PUT_MEM, 3) + W(0, cl()) + RUN())
    seed("put_produced", header() + REQ(PUT_PRODUCED, 700, piece=6) +
         RUN() + W(0, cl()) + RUN())
    seed("put_produced_bad", header() + REQ(PUT_PRODUCED, 700, piece=6,
                                            bad=True) + RUN() + W(0, cl()))
    seed("put_produced_small_queue", header(small_rcvbuf=True,
                                            small_limits=True) +
         REQ(PUT_PRODUCED, 6000, piece=11) + RUN(15) + RUN(15) +
         W(0, cl()) + RUN())
    seed("post_chunked_produced", header() +
         REQ(POST_CHUNKED, 6000, piece=12) + RUN(6) + W(0, cl()) + RUN())
    seed("post_chunked_lazy", header() +
         REQ(POST_CHUNKED, 700, piece=9, lazy=True) + RUN() + PRODUCE(0) +
         PRODUCE(0) + PRODUCE(0) + W(0, cl()) + RUN())
    seed("put_produced_answered_early", header() +
         REQ(PUT_PRODUCED, 6000, piece=0, lazy=True) + RUN() + PRODUCE(0) +
         W(0, cl()) + RUN() + PRODUCE(0))
    seed("post_key_cl", header() + REQ(POST_KEY, 3) + W(0, cl()) + RUN())


def pool_seeds():
    # A pooled connection reused, then the server closes it as the second
    # request goes out: the GET is sent again on a new connection.
    seed("reuse_then_close", header(conns=1) + REQ() + W(0, cl()) + RUN() +
         REQ() + RUN() + CLOSE(0) + RUN() + W(0, cl("again")) + RUN())
    seed("reuse_then_reset", header(conns=1) + REQ() + W(0, cl()) + RUN() +
         REQ() + RUN() + RESET(0) + RUN() + W(0, cl("again")) + RUN())
    seed("reuse_post_then_close", header(conns=1) + REQ() + W(0, cl()) +
         RUN() + REQ(POST_MEM, 3) + RUN() + CLOSE(0) + RUN())
    seed("reuse_post_key_then_close", header(conns=1) + REQ() + W(0, cl()) +
         RUN() + REQ(POST_KEY, 3) + RUN() + CLOSE(0) + RUN() +
         W(0, cl()) + RUN())
    seed("reuse_then_partial_head", header(conns=1) + REQ() + W(0, cl()) +
         RUN() + REQ() + RUN() + W(0, "HTTP/1.1 200 OK\r\nContent-Le") +
         CLOSE(0) + RUN())
    seed("idle_then_close", header() + REQ() + W(0, cl()) + RUN() +
         CLOSE(0) + RUN() + REQ() + RUN() + W(0, cl()) + RUN())
    seed("idle_stray_byte", header() + REQ() + W(0, cl()) + RUN() +
         W(0, "X") + RUN() + REQ() + W(1, cl()) + RUN())
    seed("pipelined_garbage", header() + REQ() +
         W(0, cl() + cl("second")) + RUN() + REQ() + W(1, cl()) + RUN())
    seed("three_in_flight", header(conns=3) + REQ() + REQ(HEAD) +
         REQ(POST_MEM, 3) + RUN() + W(0, cl("a")) + W(1, HEAD_CL) +
         W(2, CHUNKED) + RUN())
    seed("three_queued_one_conn", header(conns=1) + REQ() + REQ() + REQ() +
         RUN() + W(0, cl("1")) + RUN() + W(0, cl("2")) + RUN() +
         W(0, CHUNKED) + RUN())
    seed("queue_full", header(conns=1, wait1=True) + REQ() + REQ() + REQ() +
         RUN() + W(0, cl()) + RUN() + W(0, cl()) + RUN())
    seed("max_requests_per_conn", header(conns=1, max_req=True) + REQ() +
         W(0, cl()) + RUN() + REQ() + W(0, cl()) + RUN() + REQ() + RUN() +
         W(1, cl()) + RUN())
    # The second GET goes on the first connection if it is not 1 ms old
    # yet, else on a new one: answered on both.
    seed("max_conn_age", header(conns=1, age=1) + REQ() + W(0, cl()) +
         RUN() + REQ() + RUN() + W(0, cl()) + W(1, cl()) + RUN())
    seed("max_conn_age_idle", header(conns=1, age=3) + REQ() + W(0, cl()) +
         RUN(15) + RUN(15) + REQ() + W(0, cl()) + RUN())
    seed("idle1_two_conns", header(conns=2, idle1=True) + REQ() + REQ() +
         RUN() + W(0, cl()) + W(1, cl()) + RUN() + REQ() + W(0, cl()) +
         RUN())
    seed("close_idle", header() + REQ() + W(0, cl()) + RUN() +
         CLOSE_IDLE_OP() + RUN() + REQ() + RUN() + W(1, cl()) + RUN())
    seed("chain_from_done", header(conns=1) + REQ(behave=CHAIN) +
         W(0, cl()) + RUN() + W(0, cl()) + RUN())
    seed("close_idle_from_done", header() + REQ(behave=CLOSE_IDLE) +
         W(0, cl()) + RUN())
    # With no producer, lazy means: start a GET at the first body bytes;
    # bad means: close_idle in on_head.
    seed("request_from_body", header(conns=2, rbuf=2) + REQ() + W(0, cl()) +
         RUN() + REQ(lazy=True, bad=True) + W(0, BIG) + RUN() +
         W(1, cl()) + RUN())


def control_seeds():
    seed("pause_resume", header(rbuf=2) + REQ(behave=PAUSE_BODY) +
         W(0, BIG) + RUN() + RESUME(0) + RUN())
    seed("pause_from_op", header() + REQ() + PAUSE(0) + W(0, BIG_CHUNKED) +
         RUN() + RESUME(0) + RUN())
    seed("cancel_in_head", header() + REQ(behave=CANCEL_HEAD) + W(0, BIG) +
         RUN())
    seed("cancel_in_body", header(rbuf=2) + REQ(behave=CANCEL_BODY) +
         W(0, BIG_CHUNKED) + RUN())
    seed("cancel_in_writable", header() +
         REQ(PUT_PRODUCED, 6000, piece=4, behave=CANCEL_WRITABLE) + RUN())
    seed("cancel_others", header(conns=3) + REQ(behave=CANCEL_OTHERS) +
         REQ() + REQ(POST_CHUNKED, 700) + RUN() + W(1, cl()) + W(0, cl()) +
         RUN())
    seed("cancel_op_mid_body", header() + REQ() +
         W(0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal") +
         CANCEL(0) + RUN() + REQ() + W(1, cl()) + RUN())
    seed("cancel_op_queued", header(conns=1) + REQ() + REQ() + CANCEL(1) +
         W(0, cl()) + RUN())
    seed("timeout_total", header(tight=True) + REQ(extra=2) + SLEEP() + RUN())
    seed("tight_head_timeout", header(tight=True) + REQ() + SLEEP() +
         RUN() + W(0, cl()) + RUN())
    seed("tight_idle_timeout", header(tight=True) + REQ() + W(0, cl()) +
         RUN() + SLEEP() + RUN() + REQ() + W(1, cl()) + RUN())


def bad_seeds():
    for name, resp in [
        ("bad_status_line", "HTTP/1.1 2000 OK\r\n\r\n"),
        ("bad_lf_only", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok"),
        ("bad_cl_te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
         "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("bad_two_cl", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
         "Content-Length: 6\r\n\r\nhello!"),
        ("bad_chunk_size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
         "\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("bad_101", "HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        ("bad_obs_fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n"
         "Content-Length: 0\r\n\r\n"),
        ("bad_version", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ("bad_garbage", "garbage\r\n\r\n"),
        ("big_head", "HTTP/1.1 200 OK\r\nX-Pad: " + "p" * 2000 +
         "\r\nContent-Length: 2\r\n\r\nok"),
    ]:
        seed(name, header() + REQ() + W(0, resp) + RUN())
    seed("big_head_small_limits", header(small_limits=True) + REQ() +
         W(0, "HTTP/1.1 200 OK\r\n" + "X-H: v\r\n" * 20 +
           "Content-Length: 2\r\n\r\nok") + RUN())
    seed("half_close_mid_head", header() + REQ() +
         W(0, "HTTP/1.1 200 OK\r\nCont") + SHUT(0) + RUN())
    seed("close_mid_body", header() + REQ() +
         W(0, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc") +
         CLOSE(0) + RUN())
    seed("stalled_server_post", header(small_rcvbuf=True) +
         REQ(POST_MEM, 6000) + ACCEPT(0) + STALL(0) + RUN(15) + STALL(0) +
         RUN() + W(0, cl()) + RUN())


def main():
    basic_seeds()
    body_seeds()
    pool_seeds()
    control_seeds()
    bad_seeds()
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
