/*
 * fuzz_ws.c - libFuzzer target for the WebSocket frame parser and the
 * frame helpers (src/ws.c).
 *
 * What it does: the first input byte picks the side (server parser, which
 * wants masked frames, or client parser) and max_message; the rest is the
 * byte stream. The stream is parsed whole, in pseudo-random pieces and,
 * when short, one byte at a time, each through a carry simulation that
 * keeps unconsumed bytes the way conn.c does. Every run writes a log of
 * what it saw (complete messages, control frames, the error code, the
 * bytes consumed); all logs must be identical. The raw bytes also drive
 * the UTF-8 validator (against a reference decoder written from the code
 * point rules), ws_mask (against a byte-by-byte loop), the header encoder
 * (round trip through the parser) and the close payload encoder.
 *
 * Invariants checked: event data lies inside the consumed bytes of the
 * buffer given; a control payload is at most 125 bytes; a delivered text
 * piece never holds invalid UTF-8 and a finished text message is valid;
 * no message passes max_message; a close code is valid or 1005; errors are
 * 1002, 1007 or 1009 (1009 only with a limit); the carried tail never
 * exceeds one header plus one control frame; nothing is reported after a
 * close or an error.
 *
 * Must not: allocate through mem.c (the parser needs none) or keep state
 * between inputs beyond scratch buffers that each run overwrites.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_ws.c
 *        src/ws.c src/http1.c -lcrypto   (or scripts/fuzz.sh 60 ws)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"
#include "check.h"

#define MAX_IN 65536
#define CARRY_CAP (WS_MAX_HEADER + WS_MAX_CONTROL)
#define MAX_PIECE 600
/* Byte-at-a-time runs cost a call per byte; keep them to short inputs. */
#define TRICKLE_MAX 4096
/* Each record costs at most 11 bytes of log for 2 bytes of input. */
#define LOG_CAP (8 * MAX_IN + 64)

static const uint64_t max_table[8] = {0, 1, 2, 125, 126, 1000, 65536, 0};

/* ---- reference UTF-8 check ---------------------------------------------- */

/*
 * Written from RFC 3629's code point rules, independently of the DFA:
 * decode each sequence and check its range; an open sequence at the end is
 * valid if some completion is (completions span one code point interval).
 * Return value: -1 invalid, 0 valid with a sequence open, 1 valid.
 */
static int ref_utf8(const uint8_t *p, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;

    while (i < n) {
        uint8_t b = p[i];
        int len = b < 0x80   ? 1
                  : b < 0xC0 ? 0
                  : b < 0xE0 ? 2
                  : b < 0xF0 ? 3
                  : b < 0xF8 ? 4
                             : 0;
        uint32_t lo, hi, a, z;
        int have;

        if (len == 0)
            return -1;
        lo = hi = len == 1 ? b : (uint32_t)(b & (0xFF >> (len + 1)));
        for (have = 1; have < len && i + have < n; have++) {
            uint8_t c = p[i + have];
            if ((c & 0xC0) != 0x80)
                return -1;
            lo = lo << 6 | (c & 0x3F);
            hi = hi << 6 | (c & 0x3F);
        }
        for (int k = have; k < len; k++) {
            lo <<= 6;
            hi = hi << 6 | 0x3F;
        }
        a = lo > min_cp[len] ? lo : min_cp[len];
        z = hi < 0x10FFFF ? hi : 0x10FFFF;
        if (a > z || (a >= 0xD800 && z <= 0xDFFF))
            return -1;
        if (have < len)
            return 0;
        i += (size_t)len;
    }
    return 1;
}

/* ---- one parse run --------------------------------------------------------
 */

struct run {
    struct ws_parser p;
    uint64_t max;
    bool check_pieces; /* check UTF-8 of the message so far at each piece */
    uint8_t carry[CARRY_CAP];
    size_t carry_len;
    uint8_t tmp[CARRY_CAP + MAX_PIECE];
    bool failed;
    uint16_t code;
    size_t consumed;
    bool in_msg;
    uint8_t msg_op;
    size_t msg_len;
    uint8_t msg[MAX_IN];
    size_t log_len;
    uint8_t log[LOG_CAP];
};

static struct run runs[3];

static void log_put(struct run *r, const void *p, size_t n)
{
    CHECK(r->log_len + n <= sizeof(r->log));
    memcpy(r->log + r->log_len, p, n);
    r->log_len += n;
}

static void log_rec(struct run *r, uint8_t tag, uint16_t code, const uint8_t *p,
                    size_t n)
{
    uint8_t h[7] = {tag, (uint8_t)(code >> 8), (uint8_t)code};
    uint32_t n32 = (uint32_t)n;

    memcpy(h + 3, &n32, 4);
    log_put(r, h, sizeof(h));
    log_put(r, p, n);
}

static void on_data(struct run *r, const struct ws_event *ev)
{
    CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
    if (ev->first) {
        CHECK(!r->in_msg);
        r->in_msg = true;
        r->msg_op = ev->opcode;
        r->msg_len = 0;
    } else {
        CHECK(r->in_msg);
        CHECK(ev->opcode == r->msg_op);
    }
    CHECK(r->msg_len + ev->len <= sizeof(r->msg));
    if (ev->len)
        memcpy(r->msg + r->msg_len, ev->data, ev->len);
    r->msg_len += ev->len;
    if (r->max)
        CHECK(r->msg_len <= r->max);
    if (r->msg_op == WS_OP_TEXT && (r->check_pieces || ev->fin))
        CHECK(ref_utf8(r->msg, r->msg_len) >= 0);
    if (!ev->fin)
        return;
    if (r->msg_op == WS_OP_TEXT)
        CHECK(ref_utf8(r->msg, r->msg_len) == 1);
    r->in_msg = false;
    log_rec(r, (uint8_t)('M' + r->msg_op), 0, r->msg, r->msg_len);
}

static void on_event(struct run *r, const struct ws_event *ev)
{
    switch (ev->type) {
    case WS_EV_NONE:
        break;
    case WS_EV_DATA:
        on_data(r, ev);
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        CHECK(ev->len <= WS_MAX_CONTROL);
        log_rec(r, ev->type == WS_EV_PING ? 'i' : 'o', 0, ev->data, ev->len);
        break;
    case WS_EV_CLOSE:
        CHECK(ev->reason_len <= WS_MAX_CONTROL - 2);
        if (ev->close_code == WS_CLOSE_NO_STATUS)
            CHECK(ev->reason_len == 0);
        else
            CHECK(ws_close_code_valid(ev->close_code));
        CHECK(ref_utf8(ev->reason, ev->reason_len) == 1);
        CHECK(r->p.s.closed);
        log_rec(r, 'c', ev->close_code, ev->reason, ev->reason_len);
        break;
    default:
        CHECK(!"unknown event type");
    }
}

/* Parses buf[0..n) until the parser wants more; returns bytes consumed. */
static size_t process(struct run *r, uint8_t *buf, size_t n)
{
    size_t off = 0;

    while (off < n) {
        struct ws_event ev;
        uint16_t code = 0;
        ssize_t k = ws_parse(&r->p, buf + off, n - off, &ev, &code);

        if (k < 0) {
            CHECK(k == -1);
            CHECK(ev.type == WS_EV_NONE);
            CHECK(code == WS_CLOSE_PROTOCOL || code == WS_CLOSE_INVALID_DATA ||
                  code == WS_CLOSE_TOO_BIG /* max, or 4 GiB - 1 */);
            CHECK(r->p.s.closed);
            r->failed = true;
            r->code = code;
            return off;
        }
        if (k == 0) {
            CHECK(ev.type == WS_EV_NONE);
            break;
        }
        CHECK((size_t)k <= n - off);
        if (ev.type == WS_EV_DATA || ev.type == WS_EV_PING ||
            ev.type == WS_EV_PONG) {
            CHECK(ev.data >= buf + off);
            CHECK(ev.data + ev.len <= buf + off + k);
        }
        if (ev.type == WS_EV_CLOSE) {
            CHECK(ev.reason >= buf + off);
            CHECK(ev.reason + ev.reason_len <= buf + off + k);
        }
        off += (size_t)k;
        r->consumed += (size_t)k;
        on_event(r, &ev);
    }
    return off;
}

/* Feeds chunk[0..n) behind the carried tail, as conn.c would. */
static void feed(struct run *r, uint8_t *chunk, size_t n)
{
    uint8_t *buf = chunk;
    size_t len = n;
    size_t off;

    if (r->failed || r->p.s.closed) {
        struct ws_event ev;
        uint16_t code = 0;
        /* Nothing is processed after a close or an error. */
        CHECK(ws_parse(&r->p, chunk, n, &ev, &code) == 0);
        CHECK(ev.type == WS_EV_NONE);
        return;
    }
    if (r->carry_len) {
        CHECK(n <= MAX_PIECE);
        len = r->carry_len + n;
        buf = r->tmp;
        memcpy(buf, r->carry, r->carry_len);
        memcpy(buf + r->carry_len, chunk, n);
    }
    off = process(r, buf, len);
    if (r->failed || r->p.s.closed)
        return;
    r->carry_len = len - off;
    CHECK(r->carry_len < CARRY_CAP);
    memmove(r->carry, buf + off, r->carry_len);
}

static void run_init(struct run *r, bool server, uint64_t max, bool pieces)
{
    ws_parser_init(&r->p, server, max);
    r->max = max;
    r->check_pieces = pieces;
    r->carry_len = 0;
    r->failed = false;
    r->code = 0;
    r->consumed = 0;
    r->in_msg = false;
    r->msg_len = 0;
    r->log_len = 0;
}

/* Ends a run: the partial message and the totals join the log. Partial
 * data is logged only without an error: a failing piece is not delivered,
 * so how much came before it depends on the split. */
static void run_end(struct run *r)
{
    uint8_t tail[16];

    if (!r->failed && r->in_msg)
        log_rec(r, 'P', r->msg_op, r->msg, r->msg_len);
    memset(tail, 0, sizeof(tail));
    tail[0] = r->failed;
    tail[1] = (uint8_t)(r->code >> 8);
    tail[2] = (uint8_t)r->code;
    tail[3] = r->p.s.closed;
    if (!r->failed && !r->p.s.closed) {
        uint64_t c = r->consumed;
        memcpy(tail + 4, &c, sizeof(c));
        tail[12] = (uint8_t)r->carry_len;
    }
    log_put(r, tail, sizeof(tail));
}

static uint8_t stream[3][MAX_IN];

/* A small xorshift generator seeded from the input, for the pieces. */
static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static size_t piece_len(uint32_t *rng)
{
    uint32_t v = rng_next(rng);

    switch (v & 3) {
    case 0:
        return 1;
    case 1:
        return 1 + (v >> 8) % 16;
    case 2:
        return 1 + (v >> 8) % 160;
    default:
        return 1 + (v >> 8) % MAX_PIECE;
    }
}

static void fuzz_parse(const uint8_t *d, size_t n, bool server, uint64_t max,
                       uint32_t seed)
{
    uint32_t rng = seed | 1;
    int nruns = n <= TRICKLE_MAX ? 3 : 2;

    for (int i = 0; i < nruns; i++) {
        memcpy(stream[i], d, n);
        run_init(&runs[i], server, max, i < 2);
    }
    /* Whole. */
    feed(&runs[0], stream[0], n);
    run_end(&runs[0]);
    /* Pseudo-random pieces. */
    for (size_t off = 0; off < n;) {
        size_t k = piece_len(&rng);
        if (k > n - off)
            k = n - off;
        feed(&runs[1], stream[1] + off, k);
        off += k;
    }
    run_end(&runs[1]);
    /* One byte at a time. */
    if (nruns == 3) {
        for (size_t off = 0; off < n; off++)
            feed(&runs[2], stream[2] + off, 1);
        run_end(&runs[2]);
    }
    for (int i = 1; i < nruns; i++) {
        CHECK(runs[i].log_len == runs[0].log_len);
        CHECK(memcmp(runs[i].log, runs[0].log, runs[0].log_len) == 0);
    }
}

/* ---- the helpers ----------------------------------------------------------
 */

static void fuzz_utf8(const uint8_t *d, size_t n, size_t cut)
{
    uint32_t st = WS_UTF8_ACCEPT, st2 = WS_UTF8_ACCEPT;
    int want = ref_utf8(d, n);
    bool ok = ws_utf8_feed(&st, d, n);

    CHECK(ok == (want >= 0));
    if (ok)
        CHECK((st == WS_UTF8_ACCEPT) == (want == 1));
    else
        CHECK(st == WS_UTF8_REJECT);
    /* The same in two pieces. */
    if (ws_utf8_feed(&st2, d, cut))
        ws_utf8_feed(&st2, d + cut, n - cut);
    CHECK(st2 == st);
}

static uint8_t mbuf[2][MAX_IN + WS_MAX_HEADER];

static void fuzz_mask(const uint8_t *d, size_t n, uint8_t pos, size_t cut)
{
    static const uint8_t k[4] = {0xA5, 0x01, 0xFF, 0x3C};
    uint8_t next;

    memcpy(mbuf[0], d, n);
    memcpy(mbuf[1], d, n);
    for (size_t i = 0; i < n; i++)
        mbuf[1][i] ^= k[(pos + i) & 3];
    /* In two calls, at an odd offset, so unaligned words are used. */
    next = ws_mask(mbuf[0], cut, k, pos);
    CHECK(next == ((pos + cut) & 3));
    next = ws_mask(mbuf[0] + cut, n - cut, k, next);
    CHECK(next == ((pos + n) & 3));
    CHECK(memcmp(mbuf[0], mbuf[1], n) == 0);
}

/* A frame built with ws_encode_header around payload d[0..n) parses back
 * to the same message on the other side. */
static void fuzz_encode(const uint8_t *d, size_t n, bool masked, bool text)
{
    static const uint8_t k[4] = {0x11, 0x22, 0x33, 0x44};
    uint8_t op = text && ref_utf8(d, n) == 1 ? WS_OP_TEXT : WS_OP_BINARY;
    size_t h = ws_encode_header(mbuf[0], op, true, n, masked ? k : NULL);
    struct run *r = &runs[0];

    CHECK(h >= 2 && h <= WS_MAX_HEADER);
    CHECK(h == (n < 126 ? 2u : n <= 0xFFFF ? 4u : 10u) + (masked ? 4 : 0));
    memcpy(mbuf[0] + h, d, n);
    if (masked)
        ws_mask(mbuf[0] + h, n, k, 0);
    run_init(r, masked, 0, false);
    feed(r, mbuf[0], h + n);
    CHECK(!r->failed);
    CHECK(r->consumed == h + n);
    CHECK(!r->in_msg);
    CHECK(r->msg_len == n);
    CHECK(memcmp(r->msg, d, n) == 0);
}

static void fuzz_close_payload(const uint8_t *d, size_t n)
{
    char reason[256];
    uint8_t out[WS_MAX_CONTROL];
    size_t len = n < sizeof(reason) - 1 ? n : sizeof(reason) - 1;
    size_t slen, k;
    uint16_t code = n >= 2 ? (uint16_t)(d[0] << 8 | d[1]) : 1000;

    memcpy(reason, d, len);
    reason[len] = '\0';
    slen = strlen(reason);
    k = ws_encode_close_payload(out, code, reason);
    CHECK(k >= 2 && k <= WS_MAX_CONTROL);
    CHECK((out[0] << 8 | out[1]) == code);
    CHECK(memcmp(out + 2, reason, k - 2) == 0);
    if (slen <= WS_MAX_CONTROL - 2) {
        CHECK(k - 2 == slen);
    } else {
        /* Cut before a character start, at most 3 bytes back (a reason
         * that is not UTF-8 may leave a continuation byte at the cut
         * after 3). */
        size_t cut = k - 2;
        CHECK(cut >= WS_MAX_CONTROL - 2 - 3);
        if (cut > WS_MAX_CONTROL - 2 - 3)
            CHECK(((uint8_t)reason[cut] & 0xC0) != 0x80);
        for (size_t i = cut + 1; i <= WS_MAX_CONTROL - 2; i++)
            CHECK(((uint8_t)reason[i] & 0xC0) == 0x80);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    uint32_t seed = 2166136261u;
    bool server;
    uint64_t max;

    if (n < 1 || n > MAX_IN)
        return 0;
    server = d[0] & 1;
    max = max_table[(d[0] >> 1) & 7];
    for (size_t i = 0; i < n; i++)
        seed = (seed ^ d[i]) * 16777619u;

    fuzz_parse(d + 1, n - 1, server, max, seed);
    fuzz_utf8(d + 1, n - 1, seed % n);
    fuzz_mask(d + 1, n - 1, (uint8_t)(d[0] >> 4), (seed >> 8) % n);
    fuzz_encode(d + 1, n - 1, d[0] & 0x10, d[0] & 0x20);
    fuzz_close_payload(d + 1, n - 1);
    return 0;
}
