/*
 * test_ws.c - unit tests for the WebSocket protocol code (src/ws.c).
 *
 * Every rule in the top comment of ws.h has a test that checks its exact
 * close code or HTTP status. Frames are fed whole, in pieces and one byte
 * at a time through a harness that keeps unconsumed bytes the way conn.c's
 * carry buffer does; all must agree, and the carry never grows past one
 * header plus one control frame. The UTF-8 DFA is checked against a
 * reference decoder on every sequence of up to 3 bytes. ws.c allocates
 * nothing through mem.c, and every test ends by proving it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include <openssl/crypto.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "http1.h"
#include "mem.h"
#include "ws.h"

#define CARRY_CAP (WS_MAX_HEADER + WS_MAX_CONTROL)
#define MAX_RECS 64
#define FIN 0x80

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

static void no_leak(void)
{
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- the feeding harness ----------------------------------------------- */

/* One recorded event: a complete message, or a control frame. */
struct rec {
    enum ws_event_type type;
    uint8_t opcode;
    uint16_t code;
    size_t len; /* DATA: the whole message; else the payload or reason */
    uint8_t data[WS_MAX_CONTROL];
};

struct sink {
    struct ws_parser p;
    uint8_t carry[CARRY_CAP];
    size_t carry_len;
    size_t max_carry;
    size_t fed;      /* bytes given to feed() so far */
    size_t consumed; /* bytes ws_parse() consumed so far */
    uint8_t *msg;    /* the message being assembled (or the last one) */
    size_t msg_cap;
    size_t msg_len;
    bool in_msg;
    uint8_t msg_op;
    size_t pieces; /* DATA events */
    struct rec rec[MAX_RECS];
    int n_rec;
    bool failed;
    uint16_t code;
    size_t fail_fed; /* fed when the error came */
};

static void sink_init(struct sink *s, bool server, uint64_t max_message,
                      size_t msg_cap)
{
    memset(s, 0, sizeof(*s));
    ws_parser_init(&s->p, server, max_message);
    s->msg_cap = msg_cap;
    s->msg = mem_alloc(MEM_MISC, msg_cap ? msg_cap : 1);
    assert_non_null(s->msg);
}

static void sink_fini(struct sink *s)
{
    mem_free(MEM_MISC, s->msg);
    s->msg = NULL;
}

static struct rec *push_rec(struct sink *s, enum ws_event_type type)
{
    struct rec *r;

    assert_true(s->n_rec < MAX_RECS);
    r = &s->rec[s->n_rec++];
    memset(r, 0, sizeof(*r));
    r->type = type;
    return r;
}

static void record(struct sink *s, const struct ws_event *ev)
{
    struct rec *r;

    switch (ev->type) {
    case WS_EV_NONE:
        return;
    case WS_EV_DATA:
        s->pieces++;
        assert_true(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        if (ev->first) {
            assert_false(s->in_msg);
            s->in_msg = true;
            s->msg_len = 0;
            s->msg_op = ev->opcode;
        } else {
            assert_true(s->in_msg);
            assert_int_equal(ev->opcode, s->msg_op);
        }
        assert_true(s->msg_len + ev->len <= s->msg_cap);
        if (ev->len)
            memcpy(s->msg + s->msg_len, ev->data, ev->len);
        s->msg_len += ev->len;
        if (ev->fin) {
            s->in_msg = false;
            r = push_rec(s, WS_EV_DATA);
            r->opcode = s->msg_op;
            r->len = s->msg_len;
            memcpy(r->data, s->msg,
                   s->msg_len < WS_MAX_CONTROL ? s->msg_len : WS_MAX_CONTROL);
        }
        return;
    case WS_EV_PING:
    case WS_EV_PONG:
        assert_true(ev->len <= WS_MAX_CONTROL);
        r = push_rec(s, ev->type);
        r->len = ev->len;
        if (ev->len)
            memcpy(r->data, ev->data, ev->len);
        return;
    case WS_EV_CLOSE:
        assert_true(ev->reason_len <= WS_MAX_CONTROL - 2);
        r = push_rec(s, WS_EV_CLOSE);
        r->code = ev->close_code;
        r->len = ev->reason_len;
        if (ev->reason_len)
            memcpy(r->data, ev->reason, ev->reason_len);
        return;
    }
    fail_msg("unknown event type %d", ev->type);
}

/* Parses buf[0..n) until the parser wants more; returns bytes consumed. */
static size_t process(struct sink *s, uint8_t *buf, size_t n)
{
    size_t off = 0;

    while (off < n) {
        struct ws_event ev;
        uint16_t code = 0;
        ssize_t k = ws_parse(&s->p, buf + off, n - off, &ev, &code);

        if (k < 0) {
            assert_int_equal(ev.type, WS_EV_NONE);
            s->failed = true;
            s->code = code;
            s->fail_fed = s->fed;
            return off;
        }
        if (k == 0) {
            assert_int_equal(ev.type, WS_EV_NONE);
            break;
        }
        assert_true((size_t)k <= n - off);
        if (ev.type == WS_EV_DATA || ev.type == WS_EV_PING ||
            ev.type == WS_EV_PONG) {
            assert_true(ev.data >= buf + off);
            assert_true(ev.data + ev.len <= buf + off + k);
        }
        if (ev.type == WS_EV_CLOSE) {
            assert_true(ev.reason >= buf + off);
            assert_true(ev.reason + ev.reason_len <= buf + off + k);
        }
        off += (size_t)k;
        s->consumed += (size_t)k;
        record(s, &ev);
    }
    return off;
}

/*
 * Feeds chunk[0..n) as a read would: straight from the read buffer when no
 * tail is carried, else behind the carried tail in a buffer of exact size.
 * What is left unconsumed is carried, as conn.c does.
 */
static void feed(struct sink *s, uint8_t *chunk, size_t n)
{
    uint8_t *buf = chunk;
    size_t len = n;
    size_t off;

    if (s->failed || s->p.s.closed)
        return;
    s->fed += n;
    if (s->carry_len) {
        len = s->carry_len + n;
        buf = mem_alloc(MEM_CARRY, len);
        assert_non_null(buf);
        memcpy(buf, s->carry, s->carry_len);
        memcpy(buf + s->carry_len, chunk, n);
    }
    off = process(s, buf, len);
    if (!s->failed && !s->p.s.closed) {
        s->carry_len = len - off;
        assert_true(s->carry_len <= CARRY_CAP);
        memmove(s->carry, buf + off, s->carry_len);
        if (s->carry_len > s->max_carry)
            s->max_carry = s->carry_len;
    }
    if (buf != chunk)
        mem_free(MEM_CARRY, buf);
}

/* Feeds buf[0..n) in pieces of step bytes (0: all at once). */
static void feed_steps(struct sink *s, uint8_t *buf, size_t n, size_t step)
{
    if (step == 0)
        step = n ? n : 1;
    for (size_t off = 0; off < n && !s->failed; off += step)
        feed(s, buf + off, n - off < step ? n - off : step);
}

/* ---- building frames --------------------------------------------------- */

static uint8_t pat(uint64_t i)
{
    return (uint8_t)(i * 31 + (i >> 9));
}

/* An ASCII pattern, for text messages. */
static uint8_t pat_text(uint64_t i)
{
    return (uint8_t)('a' + i % 26);
}

/*
 * Writes a frame header to out: b0 holds FIN, RSV and the opcode; mk is
 * the mask key or NULL; form 0 picks the minimal length encoding, 7, 16 or
 * 64 forces one. Returns the header length.
 */
static size_t put_head(uint8_t *out, uint8_t b0, const uint8_t *mk,
                       uint64_t len, int form)
{
    size_t n = 2;

    if (form == 0)
        form = len < 126 ? 7 : len <= 0xFFFF ? 16 : 64;
    out[0] = b0;
    out[1] = mk ? 0x80 : 0;
    if (form == 7) {
        out[1] |= (uint8_t)len;
    } else if (form == 16) {
        out[1] |= 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] |= 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mk) {
        memcpy(out + n, mk, 4);
        n += 4;
    }
    return n;
}

/* Writes a whole frame (see put_head); the payload comes from pl, or from
 * pat() if pl is NULL. Returns the frame length. */
static size_t put_frame_form(uint8_t *out, uint8_t b0, const uint8_t *mk,
                             const void *pl, uint64_t len, int form)
{
    size_t n = put_head(out, b0, mk, len, form);

    for (uint64_t i = 0; i < len; i++) {
        uint8_t b = pl ? ((const uint8_t *)pl)[i] : pat(i);
        out[n + i] = mk ? b ^ mk[i & 3] : b;
    }
    return n + (size_t)len;
}

static size_t put_frame(uint8_t *out, uint8_t b0, const uint8_t *mk,
                        const void *pl, uint64_t len)
{
    return put_frame_form(out, b0, mk, pl, len, 0);
}

/* A client's frame (masked), as a server parser expects. */
static size_t cframe(uint8_t *out, uint8_t b0, const char *s)
{
    return put_frame(out, b0, key, s, strlen(s));
}

/* Runs buf[0..n) through a fresh server parser, whole, 3 bytes at a time
 * and 1 byte at a time; all three must end alike. Returns the close code
 * (0 if none) and leaves the byte-at-a-time run in *out if given. */
static uint16_t run_all(const uint8_t *buf, size_t n, bool server, uint64_t max,
                        struct sink *out)
{
    static const size_t steps[] = {0, 3, 1};
    uint8_t *copy = mem_alloc(MEM_MISC, n ? n : 1);
    struct sink s[3];

    assert_non_null(copy);
    for (int i = 0; i < 3; i++) {
        memcpy(copy, buf, n);
        sink_init(&s[i], server, max, n);
        feed_steps(&s[i], copy, n, steps[i]);
    }
    for (int i = 1; i < 3; i++) {
        assert_int_equal(s[i].failed, s[0].failed);
        assert_int_equal(s[i].code, s[0].code);
        assert_int_equal(s[i].n_rec, s[0].n_rec);
        assert_int_equal(s[i].p.s.closed, s[0].p.s.closed);
        for (int j = 0; j < s[0].n_rec; j++) {
            assert_int_equal(s[i].rec[j].type, s[0].rec[j].type);
            assert_int_equal(s[i].rec[j].opcode, s[0].rec[j].opcode);
            assert_int_equal(s[i].rec[j].code, s[0].rec[j].code);
            assert_int_equal(s[i].rec[j].len, s[0].rec[j].len);
            assert_memory_equal(s[i].rec[j].data, s[0].rec[j].data,
                                sizeof(s[0].rec[j].data));
        }
    }
    mem_free(MEM_MISC, copy);
    sink_fini(&s[0]);
    sink_fini(&s[1]);
    if (out) {
        *out = s[2];
        sink_fini(out); /* records stay; the message buffer goes */
    } else {
        sink_fini(&s[2]);
    }
    return s[0].failed ? s[0].code : 0;
}

static uint16_t run_server(const uint8_t *buf, size_t n)
{
    return run_all(buf, n, true, 0, NULL);
}

/* ---- handshake --------------------------------------------------------- */

static const struct http_limits hlim = {
    .max_header_bytes = 8192,
    .max_headers = 32,
    .max_body = 1 << 20,
};

/* Large (256 headers): static rather than on every test's stack. */
static struct http_request req;

#define GOOD_KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void parse_req(const char *s)
{
    uint32_t scan = 0;
    int status = 0;
    ssize_t n = http_parse_request((const uint8_t *)s, strlen(s), &hlim, &scan,
                                   &req, &status);

    if (n <= 0)
        fail_msg("request did not parse (%zd, %d): %s", n, status, s);
}

static int check(const char *s, struct ws_handshake *hs)
{
    parse_req(s);
    return ws_handshake_check(&req, hs);
}

static bool str_is(struct http_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static void test_accept_key(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    char head[512];
    ssize_t n;

    (void)state;
    /* RFC 6455 section 1.3. */
    assert_true(ws_accept_key(GOOD_KEY, strlen(GOOD_KEY), out));
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(out), WS_ACCEPT_LEN);

    n = ws_format_upgrade(head, sizeof(head), out, NULL);
    assert_string_equal(head, "HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: "
                              "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                              "\r\n");
    assert_int_equal(n, strlen(head));
    n = ws_format_upgrade(head, sizeof(head), out, "chat");
    assert_string_equal(head, "HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: "
                              "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                              "Sec-WebSocket-Protocol: chat\r\n"
                              "\r\n");
    assert_int_equal(n, strlen(head));
    /* Too small, by one (the NUL) and by a lot. */
    assert_int_equal(ws_format_upgrade(head, (size_t)n, out, "chat"), -ENOBUFS);
    assert_int_equal(ws_format_upgrade(head, (size_t)n + 1, out, "chat"), n);
    assert_int_equal(ws_format_upgrade(head, 10, out, NULL), -ENOBUFS);
    no_leak();
}

/*
 * OpenSSL's allocator, hooked so a test can make its n-th allocation fail
 * (SQLite style). Raw malloc is right here: these blocks belong to OpenSSL,
 * which frees them with ossl_free below, and moor's tls.c routes them
 * through mem.c in the real server.
 */
static long ossl_fail_at; /* 0: never; else counts down to the failure */
static bool ossl_failed;

static bool ossl_should_fail(void)
{
    if (ossl_fail_at == 0 || --ossl_fail_at != 0)
        return false;
    ossl_failed = true;
    return true;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return ossl_should_fail() ? NULL : malloc(n); /* lint: allow - OpenSSL */
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return ossl_should_fail() ? NULL : realloc(p, n); /* lint: allow */
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p); /* lint: allow - OpenSSL's own blocks */
}

/* When OpenSSL cannot allocate, ws_accept_key fails cleanly with "". */
static void test_accept_key_oom(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    bool ok = false;
    int fails = 0;

    (void)state;
    /* Once without failures, so OpenSSL's one-time set-up is done. */
    assert_true(ws_accept_key(GOOD_KEY, strlen(GOOD_KEY), out));
    for (long n = 1; n < 100 && !ok; n++) {
        ossl_failed = false;
        ossl_fail_at = n;
        memset(out, 'x', sizeof(out));
        ok = ws_accept_key(GOOD_KEY, strlen(GOOD_KEY), out);
        if (ok) {
            assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        } else {
            assert_true(ossl_failed);
            assert_string_equal(out, "");
            fails++;
        }
    }
    ossl_fail_at = 0;
    assert_true(ok);
    assert_true(fails > 0);
    no_leak();
}

#define REQ_HEAD "GET /chat HTTP/1.1\r\nHost: example.com\r\n"
#define REQ_OK                                                                 \
    REQ_HEAD "Upgrade: websocket\r\n"                                          \
             "Connection: Upgrade\r\n"                                         \
             "Sec-WebSocket-Key: " GOOD_KEY "\r\n"                             \
             "Sec-WebSocket-Version: 13\r\n"

static void test_handshake_ok(void **state)
{
    struct ws_handshake hs;

    (void)state;
    assert_int_equal(check(REQ_OK "\r\n", &hs), 0);
    assert_true(str_is(hs.key, GOOD_KEY));
    assert_int_equal(hs.protocols.len, 0);
    assert_int_equal(hs.origin.len, 0);
    assert_int_equal(hs.extensions.len, 0);

    assert_int_equal(check(REQ_OK "Origin: http://example.com\r\n"
                                  "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                  "Sec-WebSocket-Extensions: "
                                  "permessage-deflate\r\n\r\n",
                           &hs),
                     0);
    assert_true(str_is(hs.origin, "http://example.com"));
    assert_true(str_is(hs.protocols, "chat, superchat"));
    assert_true(str_is(hs.extensions, "permessage-deflate"));

    /* Token lists, any case, over several lines. */
    assert_int_equal(check(REQ_HEAD "Upgrade: WebSocket\r\n"
                                    "Connection: keep-alive, Upgrade\r\n"
                                    "Sec-WebSocket-Key: " GOOD_KEY "\r\n"
                                    "Sec-WebSocket-Version: 13\r\n\r\n",
                           &hs),
                     0);
    assert_int_equal(check(REQ_HEAD "UPGRADE: WEBSOCKET\r\n"
                                    "connection: UPGRADE\r\n"
                                    "sec-websocket-key: " GOOD_KEY "\r\n"
                                    "SEC-WEBSOCKET-VERSION: 13\r\n\r\n",
                           &hs),
                     0);
    assert_int_equal(check(REQ_HEAD "Upgrade: h2c, websocket\r\n"
                                    "Connection: keep-alive\r\n"
                                    "Connection: upgrade\r\n"
                                    "Sec-WebSocket-Key: " GOOD_KEY "\r\n"
                                    "Sec-WebSocket-Version: 13\r\n\r\n",
                           &hs),
                     0);
    /* The last key character carries 4 unused bits; any value decodes
     * to 16 bytes. */
    assert_int_equal(check(REQ_HEAD "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: "
                                    "AAAAAAAAAAAAAAAAAAAAA/==\r\n"
                                    "Sec-WebSocket-Version: 13\r\n\r\n",
                           &hs),
                     0);
    no_leak();
}

struct bad_req {
    const char *req;
    int status;
};

static const struct bad_req bad_reqs[] = {
    /* Method. */
    {"POST /chat HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     405},
    {"HEAD /chat HTTP/1.1\r\nHost: a\r\n"
     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     405},
    /* Version of HTTP. */
    {"GET /chat HTTP/1.0\r\nHost: a\r\n"
     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    /* Upgrade. */
    {REQ_HEAD "Connection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: h2c\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websockets\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    /* Connection. */
    {REQ_HEAD "Upgrade: websocket\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: keep-alive\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: upgrades\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    /* Sec-WebSocket-Version: missing or not 13 is 426. */
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY "\r\n\r\n",
     426},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 8\r\n\r\n",
     426},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 13, 8\r\n\r\n",
     426},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: 130\r\n\r\n",
     426},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY
              "\r\nSec-WebSocket-Version: \r\n\r\n",
     426},
    /* The version is checked before the key. */
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 8\r\n\r\n",
     426},
    /* Two versions: a bad field. */
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY "\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    /* Sec-WebSocket-Key: missing, twice, or not base64 of 16 bytes. */
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY "\r\n"
              "Sec-WebSocket-Key: " GOOD_KEY "\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    /* 17 bytes and 15 bytes of base64. */
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZTEx\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ*==\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSB ub25jZ==\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
    {REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: \r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n",
     400},
};

static void test_handshake_fail(void **state)
{
    struct ws_handshake hs;

    (void)state;
    for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
        int st = check(bad_reqs[i].req, &hs);
        if (st != bad_reqs[i].status)
            fail_msg("case %zu: %d, want %d:\n%s", i, st, bad_reqs[i].status,
                     bad_reqs[i].req);
    }
    no_leak();
}

static struct http_str hstr(const char *s)
{
    struct http_str h = {s, (uint32_t)strlen(s)};
    return h;
}

static void test_origin(void **state)
{
    const char *list = "https://a.example, http://b.example:8080";

    (void)state;
    /* No list: everything, with or without an Origin. */
    assert_true(ws_origin_allowed(hstr("http://evil"), NULL, true));
    assert_true(ws_origin_allowed(hstr("http://evil"), "", true));
    assert_true(ws_origin_allowed(hstr(""), NULL, true));
    /* Exact matches, any case. */
    assert_true(ws_origin_allowed(hstr("https://a.example"), list, false));
    assert_true(ws_origin_allowed(hstr("HTTPS://A.Example"), list, false));
    assert_true(ws_origin_allowed(hstr("http://b.example:8080"), list, true));
    /* Near misses. */
    assert_false(ws_origin_allowed(hstr("http://a.example"), list, false));
    assert_false(ws_origin_allowed(hstr("https://a.example:443"), list, false));
    assert_false(ws_origin_allowed(hstr("https://a.exampl"), list, false));
    assert_false(
        ws_origin_allowed(hstr("https://a.example.evil"), list, false));
    assert_false(ws_origin_allowed(hstr("http://b.example"), list, false));
    assert_false(ws_origin_allowed(hstr("null"), list, false));
    assert_false(ws_origin_allowed(hstr("https"), list, false));
    /* No Origin: allowed unless required. */
    assert_true(ws_origin_allowed(hstr(""), list, false));
    assert_false(ws_origin_allowed(hstr(""), list, true));
    /* "*" allows any origin, not a missing one when one is required. */
    assert_true(ws_origin_allowed(hstr("http://evil"), "*", true));
    assert_true(ws_origin_allowed(hstr("http://evil"), "https://x, *", true));
    assert_false(ws_origin_allowed(hstr(""), "*", true));
    assert_true(ws_origin_allowed(hstr(""), "*", false));
    /* Empty list elements match nothing. */
    assert_false(ws_origin_allowed(hstr("http://evil"), ",", false));
    no_leak();
}

static void test_pick_protocol(void **state)
{
    char out[16];

    (void)state;
    /* The client's order of preference wins. */
    assert_true(
        ws_pick_protocol(hstr("chat, superchat"), "superchat,chat", out, 16));
    assert_string_equal(out, "chat");
    assert_true(ws_pick_protocol(hstr(" v2.moor , v1.moor"), "v1.moor, v2.moor",
                                 out, sizeof(out)));
    assert_string_equal(out, "v2.moor");
    assert_true(ws_pick_protocol(hstr("x,,y"), "y", out, sizeof(out)));
    assert_string_equal(out, "y");
    /* Case-sensitive (RFC 7936). */
    assert_false(ws_pick_protocol(hstr("Chat"), "chat", out, sizeof(out)));
    /* Nothing in common, nothing offered, nothing supported. */
    assert_false(ws_pick_protocol(hstr("a, b"), "c", out, sizeof(out)));
    assert_false(ws_pick_protocol(hstr(""), "chat", out, sizeof(out)));
    assert_false(ws_pick_protocol(hstr("chat"), NULL, out, sizeof(out)));
    assert_false(ws_pick_protocol(hstr("chat"), "", out, sizeof(out)));
    assert_false(ws_pick_protocol(hstr(","), ",", out, sizeof(out)));
    /* A name that does not fit is skipped, not cut. */
    assert_true(ws_pick_protocol(hstr("abcdef, ab"), "ab, abcdef", out, 6));
    assert_string_equal(out, "ab");
    assert_true(ws_pick_protocol(hstr("abcde"), "abcde", out, 6));
    assert_string_equal(out, "abcde");
    /* Prefixes do not match. */
    assert_false(ws_pick_protocol(hstr("cha"), "chat", out, sizeof(out)));
    assert_false(ws_pick_protocol(hstr("chat"), "cha", out, sizeof(out)));
    no_leak();
}

/* ---- UTF-8 ------------------------------------------------------------- */

/*
 * Reference check written from the code point rules of RFC 3629, not from
 * the byte grammar the DFA uses: decode each sequence and check its range.
 * For an incomplete last sequence, it is valid if some completion is: the
 * completions span one interval of code points.
 * Return value: -1 invalid, 0 valid but a sequence is open, 1 valid.
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
        lo = hi = b & (0xFF >> (len + 1));
        if (len == 1)
            lo = hi = b;
        for (have = 1; have < len && i + have < n; have++) {
            uint8_t c = p[i + have];
            if ((c & 0xC0) != 0x80)
                return -1;
            lo = lo << 6 | (c & 0x3F);
            hi = hi << 6 | (c & 0x3F);
        }
        for (int k = have; k < len; k++) {
            lo = lo << 6;
            hi = hi << 6 | 0x3F;
        }
        a = lo > min_cp[len] ? lo : min_cp[len];
        z = hi < 0x10FFFF ? hi : 0x10FFFF;
        if (a > z || (a >= 0xD800 && z <= 0xDFFF))
            return -1;
        if (have < len)
            return 0; /* open at the end of the input */
        if (lo >= 0xD800 && lo <= 0xDFFF)
            return -1;
        i += (size_t)len;
    }
    return 1;
}

static int dfa_utf8(const uint8_t *p, size_t n)
{
    uint32_t st = WS_UTF8_ACCEPT;

    if (!ws_utf8_feed(&st, p, n))
        return -1;
    return st == WS_UTF8_ACCEPT ? 1 : 0;
}

static void expect_utf8(const uint8_t *p, size_t n, int want)
{
    int got = dfa_utf8(p, n);

    if (got != want || ref_utf8(p, n) != want) {
        char hex[64] = "";
        for (size_t i = 0; i < n && i < 16; i++)
            snprintf(hex + 3 * i, 4, "%02X ", p[i]);
        fail_msg("utf8 %s: dfa %d ref %d want %d", hex, got, ref_utf8(p, n),
                 want);
    }
}

static void test_utf8_exhaustive(void **state)
{
    static const uint8_t edge[] = {0x00, 0x7F, 0x80, 0x8F, 0x90,
                                   0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    uint8_t b[4];

    (void)state;
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        expect_utf8(b, 1, ref_utf8(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            expect_utf8(b, 2, ref_utf8(b, 2));
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                if (dfa_utf8(b, 3) != ref_utf8(b, 3))
                    expect_utf8(b, 3, ref_utf8(b, 3));
            }
            for (size_t i = 0; i < sizeof(edge); i++) {
                for (size_t j = 0; j < sizeof(edge); j++) {
                    b[2] = edge[i];
                    b[3] = edge[j];
                    if (dfa_utf8(b, 4) != ref_utf8(b, 4))
                        expect_utf8(b, 4, ref_utf8(b, 4));
                }
            }
        }
    }
    no_leak();
}

struct u8vec {
    const char *s;
    int want; /* as ref_utf8 */
};

static const struct u8vec u8vecs[] = {
    {"", 1},
    {"plain ascii", 1},
    {"\x7F", 1},
    {"\xC2\x80", 1},         /* U+0080 */
    {"\xDF\xBF", 1},         /* U+07FF */
    {"\xE0\xA0\x80", 1},     /* U+0800 */
    {"\xED\x9F\xBF", 1},     /* U+D7FF */
    {"\xEE\x80\x80", 1},     /* U+E000 */
    {"\xEF\xBF\xBF", 1},     /* U+FFFF */
    {"\xF0\x90\x80\x80", 1}, /* U+10000 */
    {"\xF4\x8F\xBF\xBF", 1}, /* U+10FFFF */
    {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 1},
    /* Overlong forms. */
    {"\xC0\x80", -1},
    {"\xC1\xBF", -1},
    {"\xE0\x80\x80", -1},
    {"\xE0\x9F\xBF", -1},
    {"\xF0\x80\x80\x80", -1},
    {"\xF0\x8F\xBF\xBF", -1},
    /* Surrogates. */
    {"\xED\xA0\x80", -1},
    {"\xED\xBF\xBF", -1},
    {"\xED\xA0\x80\xED\xB0\x80", -1},
    /* Above U+10FFFF, and bytes that never occur. */
    {"\xF4\x90\x80\x80", -1},
    {"\xF5\x80\x80\x80", -1},
    {"\xF7\xBF\xBF\xBF", -1},
    {"\xF8\x88\x80\x80\x80", -1},
    {"\xFE", -1},
    {"\xFF", -1},
    /* Bad continuation. */
    {"\x80", -1},
    {"\xBF", -1},
    {"a\xC2"
     "a",
     -1},
    {"\xE2\x82"
     "a",
     -1},
    {"\xF0\x9F\x98"
     "a",
     -1},
    {"\xC2\xC2\x80", -1},
    /* Truncated: valid so far, a sequence open. */
    {"\xC2", 0},
    {"\xE2\x82", 0},
    {"\xF0\x9F\x98", 0},
    {"abc\xF4", 0},
    {"\xE0\xA0", 0},
    {"\xF4\x8F", 0},
};

static void test_utf8_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(u8vecs) / sizeof(u8vecs[0]); i++)
        expect_utf8((const uint8_t *)u8vecs[i].s, strlen(u8vecs[i].s),
                    u8vecs[i].want);
    no_leak();
}

/* The ASCII fast path must not skip a bad byte at any offset, and state
 * carries over between calls whatever the split. */
static void test_utf8_fast_path(void **state)
{
    uint8_t buf[80];

    (void)state;
    for (size_t bad = 0; bad < 64; bad++) {
        for (size_t cut = 0; cut <= 64; cut++) {
            uint32_t st = WS_UTF8_ACCEPT;
            bool ok;
            memset(buf, 'x', sizeof(buf));
            buf[bad] = 0x80;
            ok = ws_utf8_feed(&st, buf, cut);
            assert_int_equal(ok, bad >= cut);
            if (ok)
                assert_false(ws_utf8_feed(&st, buf + cut, 64 - cut));
            assert_int_equal(st, WS_UTF8_REJECT);
            /* Once rejected, always rejected. */
            assert_false(ws_utf8_feed(&st, (const uint8_t *)"ok", 2));
        }
    }
    /* A 4-byte character split at every point, after ASCII runs. */
    for (size_t pre = 0; pre < 20; pre++) {
        for (size_t cut = 0; cut <= pre + 4; cut++) {
            uint32_t st = WS_UTF8_ACCEPT;
            memset(buf, 'y', pre);
            memcpy(buf + pre, "\xF0\x9F\x98\x80", 4);
            memset(buf + pre + 4, 'z', 16);
            assert_true(ws_utf8_feed(&st, buf, cut));
            assert_true(ws_utf8_feed(&st, buf + cut, pre + 20 - cut));
            assert_int_equal(st, WS_UTF8_ACCEPT);
        }
    }
    no_leak();
}

/* ---- frames: lengths and feeding --------------------------------------- */

/* One frame of len bytes from pattern, through a parser of the given side,
 * fed with step; checks every byte and the event count. */
static void one_length(uint64_t len, bool server, size_t step, bool text)
{
    size_t cap = (size_t)len + WS_MAX_HEADER;
    uint8_t *f = mem_alloc(MEM_MISC, cap);
    struct sink s;
    size_t n;

    assert_non_null(f);
    if (text) {
        uint8_t *pl = mem_alloc(MEM_MISC, len ? (size_t)len : 1);
        assert_non_null(pl);
        for (uint64_t i = 0; i < len; i++)
            pl[i] = pat_text(i);
        n = put_frame(f, FIN | WS_OP_TEXT, server ? key : NULL, pl, len);
        mem_free(MEM_MISC, pl);
    } else {
        n = put_frame(f, FIN | WS_OP_BINARY, server ? key : NULL, NULL, len);
    }
    sink_init(&s, server, 0, (size_t)len);
    feed_steps(&s, f, n, step);
    assert_false(s.failed);
    assert_int_equal(s.consumed, n);
    assert_int_equal(s.carry_len, 0);
    assert_true(s.max_carry < WS_MAX_HEADER);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].type, WS_EV_DATA);
    assert_int_equal(s.rec[0].opcode, text ? WS_OP_TEXT : WS_OP_BINARY);
    assert_int_equal(s.rec[0].len, len);
    assert_int_equal(s.msg_len, len);
    for (uint64_t i = 0; i < len; i++) {
        uint8_t want = text ? pat_text(i) : pat(i);
        if (s.msg[i] != want)
            fail_msg("len %llu step %zu: byte %llu is %u, want %u",
                     (unsigned long long)len, step, (unsigned long long)i,
                     s.msg[i], want);
    }
    if (step == 0)
        assert_int_equal(s.pieces, 1); /* whole: one event */
    if (step == 1 && len > 0)
        assert_int_equal(s.pieces, len); /* one piece per byte */
    assert_false(s.in_msg);
    sink_fini(&s);
    mem_free(MEM_MISC, f);
}

static void test_lengths(void **state)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536};
    static const size_t steps[] = {0, 1, 2, 7, 4096};

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (size_t j = 0; j < sizeof(steps) / sizeof(steps[0]); j++) {
            one_length(lens[i], true, steps[j], false);
            one_length(lens[i], false, steps[j], false);
            one_length(lens[i], true, steps[j], true);
        }
    }
    no_leak();
}

static void test_length_16mib(void **state)
{
    (void)state;
    one_length(16u << 20, true, 0, false);
    one_length(16u << 20, true, 65536, false);
    one_length(16u << 20, true, 1, false);
    one_length(16u << 20, false, 0, true);
    one_length(16u << 20, false, 1000, true);
    no_leak();
}

/* The examples of RFC 6455 section 5.7, as a client parser sees them. */
static void test_rfc_examples(void **state)
{
    static uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                               0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static uint8_t frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c,
                             0x80, 0x02, 0x6c, 0x6f};
    static uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                             0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct sink s;

    (void)state;
    assert_int_equal(run_all(hello, sizeof(hello), false, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_memory_equal(s.rec[0].data, "Hello", 5);
    assert_int_equal(run_all(masked, sizeof(masked), true, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].opcode, WS_OP_TEXT);
    assert_int_equal(s.rec[0].len, 5);
    assert_memory_equal(s.rec[0].data, "Hello", 5);
    assert_int_equal(run_all(frag, sizeof(frag), false, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].len, 5);
    assert_memory_equal(s.rec[0].data, "Hello", 5);
    assert_int_equal(run_all(ping, sizeof(ping), false, 0, &s), 0);
    assert_int_equal(s.rec[0].type, WS_EV_PING);
    assert_memory_equal(s.rec[0].data, "Hello", 5);
    assert_int_equal(run_all(pong, sizeof(pong), true, 0, &s), 0);
    assert_int_equal(s.rec[0].type, WS_EV_PONG);
    assert_int_equal(s.rec[0].len, 5);
    assert_memory_equal(s.rec[0].data, "Hello", 5);
    no_leak();
}

/* A header alone is consumed with no event; its payload follows later. */
static void test_header_then_payload(void **state)
{
    uint8_t f[64];
    size_t n = cframe(f, FIN | WS_OP_BINARY, "abcdef");
    struct ws_parser p;
    struct ws_event ev;
    uint16_t code = 0;

    (void)state;
    ws_parser_init(&p, true, 0);
    /* 5 of the 6 header bytes: nothing consumed, bytes untouched. */
    assert_int_equal(ws_parse(&p, f, 5, &ev, &code), 0);
    assert_int_equal(ev.type, WS_EV_NONE);
    assert_int_equal(ws_parse(&p, f, 6, &ev, &code), 6);
    assert_int_equal(ev.type, WS_EV_NONE);
    assert_int_equal(ws_parse(&p, f + 6, 2, &ev, &code), 2);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_true(ev.first);
    assert_false(ev.fin);
    assert_memory_equal(ev.data, "ab", 2);
    assert_int_equal(ws_parse(&p, f + 8, 4, &ev, &code), 4);
    assert_false(ev.first);
    assert_true(ev.fin);
    assert_memory_equal(ev.data, "cdef", 4);
    assert_int_equal(ws_parse(&p, f + 12, 0, &ev, &code), 0);
    assert_int_equal(n, 12);
    no_leak();
}

/* Bytes a call does not consume are left exactly as they were. */
static void test_unconsumed_untouched(void **state)
{
    uint8_t f[256], copy[256];
    size_t n = put_frame(f, FIN | WS_OP_PING, key, NULL, 125);
    struct ws_parser p;
    struct ws_event ev;
    uint16_t code = 0;

    (void)state;
    memcpy(copy, f, n);
    ws_parser_init(&p, true, 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ws_parse(&p, f, i, &ev, &code), 0);
        assert_memory_equal(f, copy, n);
    }
    assert_int_equal(ws_parse(&p, f, n, &ev, &code), (ssize_t)n);
    assert_int_equal(ev.type, WS_EV_PING);
    assert_int_equal(ev.len, 125);
    for (size_t i = 0; i < 125; i++)
        assert_int_equal(ev.data[i], pat(i));
    no_leak();
}

static void test_empty_frames(void **state)
{
    uint8_t f[64];
    size_t n = 0;
    struct ws_parser p;
    struct ws_event ev;
    uint16_t code = 0;
    struct sink s;

    (void)state;
    /* An empty message: one event, len 0, first and fin. */
    n = cframe(f, FIN | WS_OP_TEXT, "");
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, n, &ev, &code), (ssize_t)n);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_true(ev.first && ev.fin);
    assert_int_equal(ev.len, 0);
    assert_true(ev.data == f + n);

    /* Empty first and middle fragments. */
    n = cframe(f, WS_OP_BINARY, "");
    n += cframe(f + n, WS_OP_CONT, "");
    n += cframe(f + n, WS_OP_CONT, "ab");
    n += cframe(f + n, FIN | WS_OP_CONT, "");
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, n, &ev, &code), 6);
    assert_true(ev.type == WS_EV_DATA && ev.first && !ev.fin && ev.len == 0);
    assert_int_equal(ev.opcode, WS_OP_BINARY);
    assert_int_equal(ws_parse(&p, f + 6, n - 6, &ev, &code), 6);
    assert_true(ev.type == WS_EV_DATA && !ev.first && !ev.fin && ev.len == 0);
    assert_int_equal(ev.opcode, WS_OP_BINARY);
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].len, 2);
    assert_memory_equal(s.rec[0].data, "ab", 2);
    no_leak();
}

/* ---- frames: the 1002 rules -------------------------------------------- */

static void test_mask_direction(void **state)
{
    uint8_t f[64];
    size_t n;
    struct ws_parser p;
    struct ws_event ev;
    uint16_t code = 0;

    (void)state;
    /* A server gets an unmasked frame: 1002, decided from 2 bytes. */
    n = put_frame(f, FIN | WS_OP_TEXT, NULL, "hi", 2);
    assert_int_equal(run_all(f, n, true, 0, NULL), WS_CLOSE_PROTOCOL);
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, 2, &ev, &code), -1);
    assert_int_equal(code, WS_CLOSE_PROTOCOL);
    n = put_frame(f, FIN | WS_OP_PING, NULL, "hi", 2);
    assert_int_equal(run_all(f, n, true, 0, NULL), WS_CLOSE_PROTOCOL);
    /* A client gets a masked frame: 1002. */
    n = put_frame(f, FIN | WS_OP_TEXT, key, "hi", 2);
    assert_int_equal(run_all(f, n, false, 0, NULL), WS_CLOSE_PROTOCOL);
    n = put_frame(f, FIN | WS_OP_CLOSE, key, "\x03\xe8", 2);
    assert_int_equal(run_all(f, n, false, 0, NULL), WS_CLOSE_PROTOCOL);
    /* And each side takes its own kind. */
    n = put_frame(f, FIN | WS_OP_TEXT, key, "hi", 2);
    assert_int_equal(run_all(f, n, true, 0, NULL), 0);
    n = put_frame(f, FIN | WS_OP_TEXT, NULL, "hi", 2);
    assert_int_equal(run_all(f, n, false, 0, NULL), 0);
    no_leak();
}

static void test_rsv_bits(void **state)
{
    static const uint8_t ops[] = {WS_OP_TEXT, WS_OP_BINARY, WS_OP_PING,
                                  WS_OP_PONG, WS_OP_CLOSE};
    uint8_t f[64];

    (void)state;
    for (size_t i = 0; i < sizeof(ops); i++) {
        for (uint8_t rsv = 1; rsv < 8; rsv++) {
            size_t n = put_frame(f, (uint8_t)(FIN | rsv << 4 | ops[i]), key,
                                 "\x03\xe8", 2);
            assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
        }
    }
    /* In a continuation too. */
    {
        size_t n = cframe(f, WS_OP_TEXT, "a");
        n += cframe(f + n, FIN | 0x40 | WS_OP_CONT, "b");
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    }
    no_leak();
}

static void test_reserved_opcodes(void **state)
{
    static const uint8_t bad[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    uint8_t f[64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad); i++) {
        size_t n = put_frame(f, (uint8_t)(FIN | bad[i]), key, "x", 1);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
        /* Inside a fragmented message as well. */
        n = cframe(f, WS_OP_TEXT, "a");
        n += put_frame(f + n, (uint8_t)(FIN | bad[i]), key, "x", 1);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    }
    no_leak();
}

static void test_control_rules(void **state)
{
    static const uint8_t ops[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};
    uint8_t *f = mem_alloc(MEM_MISC, 1024);
    size_t n;

    (void)state;
    assert_non_null(f);
    for (size_t i = 0; i < sizeof(ops); i++) {
        /* 125 is the most a control frame may carry (a close needs a
         * code, so its payload is one made for the purpose). */
        uint8_t pl[126];
        memset(pl, 'r', sizeof(pl));
        pl[0] = 0x03;
        pl[1] = 0xe8;
        n = put_frame(f, FIN | ops[i], key, pl, 125);
        assert_int_equal(run_server(f, n), 0);
        /* 126 and more: 1002, whatever the length form. */
        n = put_frame(f, FIN | ops[i], key, pl, 126);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
        n = put_frame_form(f, FIN | ops[i], key, NULL, 200, 16);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
        n = put_frame_form(f, FIN | ops[i], key, NULL, 100, 16);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
        n = put_head(f, FIN | ops[i], key, 70000, 64);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
        /* Fragmented control frame: 1002. */
        n = put_frame(f, ops[i], key, pl, 2);
        assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    }
    mem_free(MEM_MISC, f);
    no_leak();
}

static void test_fragment_rules(void **state)
{
    uint8_t f[128];
    size_t n;

    (void)state;
    /* A continuation with no message: 1002. */
    n = cframe(f, FIN | WS_OP_CONT, "x");
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = cframe(f, WS_OP_CONT, "x");
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    /* Nor after a message has ended. */
    n = cframe(f, FIN | WS_OP_TEXT, "a");
    n += cframe(f + n, FIN | WS_OP_CONT, "b");
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    /* A new data frame inside a fragmented message: 1002. */
    n = cframe(f, WS_OP_TEXT, "a");
    n += cframe(f + n, FIN | WS_OP_TEXT, "b");
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = cframe(f, WS_OP_BINARY, "a");
    n += cframe(f + n, WS_OP_CONT, "b");
    n += cframe(f + n, FIN | WS_OP_BINARY, "c");
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = cframe(f, WS_OP_TEXT, "");
    n += cframe(f + n, WS_OP_BINARY, "c");
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    no_leak();
}

/* Control frames between fragments are reported at once; the message
 * goes on around them. */
static void test_ping_between_fragments(void **state)
{
    uint8_t f[256];
    size_t n;
    struct sink s;

    (void)state;
    n = cframe(f, WS_OP_TEXT, "Hel");
    n += cframe(f + n, FIN | WS_OP_PING, "p1");
    n += cframe(f + n, WS_OP_CONT, "l");
    n += cframe(f + n, FIN | WS_OP_PONG, "");
    n += cframe(f + n, FIN | WS_OP_PING, "p2");
    n += cframe(f + n, FIN | WS_OP_CONT, "o");
    n += cframe(f + n, FIN | WS_OP_BINARY, "next");
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 5);
    assert_int_equal(s.rec[0].type, WS_EV_PING);
    assert_int_equal(s.rec[0].len, 2);
    assert_memory_equal(s.rec[0].data, "p1", 2);
    assert_int_equal(s.rec[1].type, WS_EV_PONG);
    assert_int_equal(s.rec[1].len, 0);
    assert_int_equal(s.rec[2].type, WS_EV_PING);
    assert_memory_equal(s.rec[2].data, "p2", 2);
    assert_int_equal(s.rec[3].type, WS_EV_DATA);
    assert_int_equal(s.rec[3].opcode, WS_OP_TEXT);
    assert_int_equal(s.rec[3].len, 5);
    assert_memory_equal(s.rec[3].data, "Hello", 5);
    assert_int_equal(s.rec[4].opcode, WS_OP_BINARY);
    assert_memory_equal(s.rec[4].data, "next", 4);

    /* A close between fragments ends everything. */
    n = cframe(f, WS_OP_TEXT, "Hel");
    n += cframe(f + n, FIN | WS_OP_CLOSE,
                "\x03\xe9"
                "bye");
    n += cframe(f + n, FIN | WS_OP_CONT, "lo");
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].type, WS_EV_CLOSE);
    assert_int_equal(s.rec[0].code, 1001);
    assert_int_equal(s.rec[0].len, 3);
    assert_memory_equal(s.rec[0].data, "bye", 3);
    no_leak();
}

/* A message sent as 1-byte fragments, with a 2-byte character and a
 * 4-byte one split across fragments. */
static void test_one_byte_fragments(void **state)
{
    static const char text[] = "H\xC3\xA9llo \xF0\x9F\x98\x80!";
    size_t tl = sizeof(text) - 1;
    uint8_t f[512];
    size_t n = 0;
    struct sink s;

    (void)state;
    for (size_t i = 0; i < tl; i++) {
        uint8_t b0 = (uint8_t)((i == 0 ? WS_OP_TEXT : WS_OP_CONT) |
                               (i == tl - 1 ? FIN : 0));
        n += put_frame(f + n, b0, key, text + i, 1);
    }
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].opcode, WS_OP_TEXT);
    assert_int_equal(s.rec[0].len, tl);
    assert_memory_equal(s.rec[0].data, text, tl);
    assert_int_equal(s.pieces, tl);
    no_leak();
}

static void test_length_encoding(void **state)
{
    uint8_t *f = mem_alloc(MEM_MISC, 70000 + WS_MAX_HEADER);
    size_t n;

    (void)state;
    assert_non_null(f);
    /* 16-bit form for a length that fits in 7 bits. */
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 125, 16);
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 0, 16);
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 126, 16);
    assert_int_equal(run_server(f, n), 0);
    /* 64-bit form for a length that fits in 16 bits. */
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 65535, 64);
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 0, 64);
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 125, 64);
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    n = put_frame_form(f, FIN | WS_OP_BINARY, key, NULL, 65536, 64);
    assert_int_equal(run_server(f, n), 0);
    /* The top bit of a 64-bit length: 1002, even with no size limit, and
     * decided from the 10 header bytes before the mask key. */
    put_head(f, FIN | WS_OP_BINARY, key, 0, 64);
    f[2] = 0x80;
    f[9] = 0x01;
    assert_int_equal(run_all(f, 10, true, 0, NULL), WS_CLOSE_PROTOCOL);
    assert_int_equal(run_all(f, 10, true, 1000, NULL), WS_CLOSE_PROTOCOL);
    memset(f + 2, 0xFF, 8);
    assert_int_equal(run_all(f, 10, true, 0, NULL), WS_CLOSE_PROTOCOL);
    /* 2^63 - 1 is a legal encoding, but no message may pass 4 GiB - 1
     * (WS_MAX_MESSAGE_LIMIT) even with no limit set: 1009. */
    f[2] = 0x7F;
    assert_int_equal(run_all(f, 14, true, 0, NULL), WS_CLOSE_TOO_BIG);
    /* 4 GiB - 1 itself is accepted with no limit set. */
    memset(f + 2, 0, 8);
    f[6] = f[7] = f[8] = f[9] = 0xFF;
    assert_int_equal(run_all(f, 14, true, 0, NULL), 0);
    f[5] = 1;
    f[6] = f[7] = f[8] = f[9] = 0;
    assert_int_equal(run_all(f, 14, true, 0, NULL), WS_CLOSE_TOO_BIG);
    mem_free(MEM_MISC, f);
    no_leak();
}

/* ---- close frames ------------------------------------------------------ */

static uint16_t close_with(uint16_t code, const char *reason, size_t rlen,
                           struct sink *s)
{
    uint8_t pl[WS_MAX_CONTROL];
    uint8_t f[256];
    size_t n;

    pl[0] = (uint8_t)(code >> 8);
    pl[1] = (uint8_t)code;
    memcpy(pl + 2, reason, rlen);
    n = put_frame(f, FIN | WS_OP_CLOSE, key, pl, 2 + rlen);
    return run_all(f, n, true, 0, s);
}

static void test_close_codes(void **state)
{
    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 6000, 65535};
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                    1009, 1010, 1011, 1012, 1013, 1014,
                                    3000, 3999, 4000, 4999};
    struct sink s;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(ws_close_code_valid(bad[i]));
        assert_int_equal(close_with(bad[i], "", 0, NULL), WS_CLOSE_PROTOCOL);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(ws_close_code_valid(good[i]));
        assert_int_equal(close_with(good[i], "why", 3, &s), 0);
        assert_int_equal(s.n_rec, 1);
        assert_int_equal(s.rec[0].type, WS_EV_CLOSE);
        assert_int_equal(s.rec[0].code, good[i]);
        assert_int_equal(s.rec[0].len, 3);
        assert_memory_equal(s.rec[0].data, "why", 3);
        assert_true(s.p.s.closed);
    }
    for (uint32_t c = 0; c < 65536; c++) {
        bool want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                    (c >= 3000 && c <= 4999);
        assert_int_equal(ws_close_code_valid((uint16_t)c), want);
    }
    no_leak();
}

static void test_close_payload(void **state)
{
    uint8_t f[256];
    size_t n;
    struct sink s;
    char reason[124];

    (void)state;
    /* Empty: code 1005, no reason. */
    n = put_frame(f, FIN | WS_OP_CLOSE, key, "", 0);
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.rec[0].type, WS_EV_CLOSE);
    assert_int_equal(s.rec[0].code, WS_CLOSE_NO_STATUS);
    assert_int_equal(s.rec[0].len, 0);
    /* 1 byte: 1002. */
    n = put_frame(f, FIN | WS_OP_CLOSE, key, "\x03", 1);
    assert_int_equal(run_server(f, n), WS_CLOSE_PROTOCOL);
    /* Code only; longest reason. */
    assert_int_equal(close_with(1000, "", 0, &s), 0);
    assert_int_equal(s.rec[0].code, 1000);
    assert_int_equal(s.rec[0].len, 0);
    memset(reason, 'z', sizeof(reason));
    assert_int_equal(close_with(1000, reason, 123, &s), 0);
    assert_int_equal(s.rec[0].len, 123);
    /* Reason: valid UTF-8 passes, invalid or truncated is 1007. */
    assert_int_equal(close_with(1000, "\xC3\xA9t\xC3\xA9", 6, &s), 0);
    assert_int_equal(close_with(1000, "\xC0\x80", 2, NULL),
                     WS_CLOSE_INVALID_DATA);
    assert_int_equal(close_with(1000, "ok\xED\xA0\x80", 5, NULL),
                     WS_CLOSE_INVALID_DATA);
    assert_int_equal(close_with(1000, "cut\xE2\x82", 5, NULL),
                     WS_CLOSE_INVALID_DATA);
    /* An invalid code is reported before a bad reason. */
    assert_int_equal(close_with(1005, "\xFF", 1, NULL), WS_CLOSE_PROTOCOL);
    no_leak();
}

/* After a close, nothing is processed, in this call or the next. */
static void test_after_close(void **state)
{
    uint8_t f[128];
    size_t n, c;
    struct ws_parser p;
    struct ws_event ev;
    uint16_t code = 0;
    struct sink s;

    (void)state;
    c = cframe(f, FIN | WS_OP_CLOSE, "\x03\xe8");
    n = c + cframe(f + c, FIN | WS_OP_PING, "late");
    n += cframe(f + n, FIN | WS_OP_TEXT, "\xFF bad");
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, n, &ev, &code), (ssize_t)c);
    assert_int_equal(ev.type, WS_EV_CLOSE);
    assert_true(p.s.closed);
    for (size_t i = 0; i <= n - c; i++) {
        code = 0;
        assert_int_equal(ws_parse(&p, f + c, i, &ev, &code), 0);
        assert_int_equal(ev.type, WS_EV_NONE);
        assert_int_equal(code, 0);
    }
    /* Garbage after the close, fed in every way: still just the close.
     * (The parse above unmasked the close in place: build it again.) */
    cframe(f, FIN | WS_OP_CLOSE, "\x03\xe8");
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.rec[0].type, WS_EV_CLOSE);
    assert_int_equal(s.consumed, c);

    /* After an error too: the parser stays closed. */
    n = put_frame(f, FIN | 0x40 | WS_OP_TEXT, key, "x", 1);
    n += cframe(f + n, FIN | WS_OP_PING, "late");
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, n, &ev, &code), -1);
    assert_int_equal(code, WS_CLOSE_PROTOCOL);
    assert_true(p.s.closed);
    assert_int_equal(ws_parse(&p, f + 7, n - 7, &ev, &code), 0);
    assert_int_equal(ev.type, WS_EV_NONE);
    no_leak();
}

/* ---- UTF-8 in messages ------------------------------------------------- */

/* A single text frame holding s must fail with 1007 (bad >= 0) or pass
 * (bad < 0). With 1-byte feeding, the failure must come exactly at the
 * bad byte, after everything before it was delivered. */
static void text_frame(const char *s, size_t len, long bad)
{
    uint8_t f[256];
    size_t n = put_frame(f, FIN | WS_OP_TEXT, key, s, len);
    struct sink b;

    if (bad < 0) {
        assert_int_equal(run_all(f, n, true, 0, &b), 0);
        assert_int_equal(b.rec[0].len, len);
        return;
    }
    assert_int_equal(run_all(f, n, true, 0, &b), WS_CLOSE_INVALID_DATA);
    /* 6 header bytes, then byte `bad` is the one that failed. */
    assert_int_equal(b.fail_fed, 6 + (size_t)bad + 1);
    assert_int_equal(b.pieces, (size_t)bad);
    assert_int_equal(b.n_rec, 0);
}

static void test_text_utf8(void **state)
{
    (void)state;
    text_frame("hello \xE2\x82\xAC", 9, -1);
    text_frame("\xF4\x8F\xBF\xBF", 4, -1);
    /* Overlong: fail at the first byte that rules the text out. */
    text_frame("ab\xC0\x80", 4, 2);
    text_frame("ab\xE0\x80\x80", 5, 3);
    text_frame("ab\xF0\x80\x80\x80", 6, 3);
    /* Surrogates. */
    text_frame("\xED\xA0\x80", 3, 1);
    text_frame("x\xED\xBF\xBF", 4, 2);
    /* Above U+10FFFF, and F5..FF. */
    text_frame("\xF4\x90\x80\x80", 4, 1);
    for (unsigned b = 0xF5; b <= 0xFF; b++) {
        char s[3] = {'o', 'k', (char)b};
        text_frame(s, 3, 2);
    }
    /* Bad continuation. */
    text_frame("\xE2\x28\xA1", 3, 1);
    text_frame("abc\x80", 4, 3);
    text_frame("\xC3\x28", 2, 1);
    /* Truncated at the end of the message: 1007 at the last byte. */
    text_frame("abc\xE2\x82", 5, 4);
    text_frame("\xF0\x9F\x98", 3, 2);
    text_frame("\xC3", 1, 0);
    /* Binary is not checked. */
    {
        uint8_t f[64];
        size_t n = put_frame(f, FIN | WS_OP_BINARY, key, "\xC0\x80\xFF", 3);
        assert_int_equal(run_server(f, n), 0);
    }
    no_leak();
}

static void test_text_utf8_fragments(void **state)
{
    uint8_t f[256];
    size_t n;
    struct sink s;

    (void)state;
    /* A character split across fragments is fine. */
    n = cframe(f, WS_OP_TEXT, "ab\xE2");
    n += cframe(f + n, WS_OP_CONT, "\x82");
    n += cframe(f + n, FIN | WS_OP_CONT,
                "\xAC"
                "cd");
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.rec[0].len, 7);
    assert_memory_equal(s.rec[0].data,
                        "ab\xE2\x82\xAC"
                        "cd",
                        7);

    /* Split across fragments and bad: the valid pieces before are
     * delivered, the error comes at the bad byte, not at FIN. */
    n = cframe(f, WS_OP_TEXT, "ab\xE0");
    n += cframe(f + n, WS_OP_CONT, "\x80\x80");
    n += cframe(f + n, FIN | WS_OP_CONT, "tail");
    assert_int_equal(run_all(f, n, true, 0, &s), WS_CLOSE_INVALID_DATA);
    assert_int_equal(s.pieces, 3);       /* 'a', 'b', E0 one at a time */
    assert_int_equal(s.fail_fed, 9 + 7); /* first byte of frame 2 */
    {
        /* Whole: the first fragment is delivered, then the error. */
        struct ws_parser p;
        struct ws_event ev;
        uint16_t code = 0;
        ssize_t k;
        ws_parser_init(&p, true, 0);
        k = ws_parse(&p, f, n, &ev, &code);
        assert_int_equal(k, 9);
        assert_int_equal(ev.type, WS_EV_DATA);
        assert_memory_equal(ev.data, "ab\xE0", 3);
        assert_int_equal(ws_parse(&p, f + k, n - (size_t)k, &ev, &code), -1);
        assert_int_equal(code, WS_CLOSE_INVALID_DATA);
    }
    /* A surrogate split across fragments. */
    n = cframe(f, WS_OP_TEXT, "\xED");
    n += cframe(f + n, FIN | WS_OP_CONT, "\xA0\x80");
    assert_int_equal(run_server(f, n), WS_CLOSE_INVALID_DATA);
    /* Truncated at the end, the last fragment empty. */
    n = cframe(f, WS_OP_TEXT, "ok\xF0\x9F");
    n += cframe(f + n, FIN | WS_OP_CONT, "");
    assert_int_equal(run_all(f, n, true, 0, &s), WS_CLOSE_INVALID_DATA);
    assert_int_equal(s.pieces, 4);
    /* Each message starts from a clean state. */
    n = cframe(f, FIN | WS_OP_TEXT, "\xC3\xA9");
    n += cframe(f + n, FIN | WS_OP_TEXT, "x");
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 2);
    /* A ping between fragments does not disturb the state. */
    n = cframe(f, WS_OP_TEXT, "\xE2\x82");
    n += cframe(f + n, FIN | WS_OP_PING, "\xFF");
    n += cframe(f + n, FIN | WS_OP_CONT, "\xAC");
    assert_int_equal(run_all(f, n, true, 0, &s), 0);
    assert_int_equal(s.n_rec, 2);
    no_leak();
}

/* ---- max_message ------------------------------------------------------- */

static void test_max_message(void **state)
{
    uint8_t *f = mem_alloc(MEM_MISC, 1024);
    size_t n;
    struct ws_parser p;
    struct ws_event ev;
    uint16_t code = 0;
    struct sink s;

    (void)state;
    assert_non_null(f);
    /* Exactly at the limit passes. */
    n = put_frame(f, FIN | WS_OP_BINARY, key, NULL, 100);
    assert_int_equal(run_all(f, n, true, 100, &s), 0);
    assert_int_equal(s.rec[0].len, 100);
    /* One over: 1009 from the header alone, no payload delivered. */
    n = put_frame(f, FIN | WS_OP_BINARY, key, NULL, 101);
    assert_int_equal(run_all(f, n, true, 100, &s), WS_CLOSE_TOO_BIG);
    assert_int_equal(s.pieces, 0);
    ws_parser_init(&p, true, 100);
    assert_int_equal(ws_parse(&p, f, 2, &ev, &code), -1);
    assert_int_equal(code, WS_CLOSE_TOO_BIG);
    /* The 16- and 64-bit forms: decided before the mask key arrives. */
    n = put_frame(f, FIN | WS_OP_BINARY, key, NULL, 300);
    ws_parser_init(&p, true, 299);
    assert_int_equal(ws_parse(&p, f, 3, &ev, &code), 0);
    assert_int_equal(ws_parse(&p, f, 4, &ev, &code), -1);
    assert_int_equal(code, WS_CLOSE_TOO_BIG);
    put_head(f, FIN | WS_OP_BINARY, key, UINT64_C(1) << 62, 64);
    ws_parser_init(&p, true, 1 << 20);
    assert_int_equal(ws_parse(&p, f, 10, &ev, &code), -1);
    assert_int_equal(code, WS_CLOSE_TOO_BIG);
    /* With no limit, 4 GiB - 1 is the ceiling: 2^62 is still 1009. */
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, 14, &ev, &code), -1);
    assert_int_equal(code, WS_CLOSE_TOO_BIG);
    /* A 3 GiB header with no limit is accepted: payload may stream. */
    put_head(f, FIN | WS_OP_BINARY, key, UINT64_C(3) << 30, 64);
    ws_parser_init(&p, true, 0);
    assert_int_equal(ws_parse(&p, f, 14, &ev, &code), 14);
    assert_true(p.s.in_frame);
    /* Across fragments: the sum counts; the first fragment is out. */
    n = put_frame(f, WS_OP_TEXT, key, "0123456789", 10);
    n += put_frame(f + n, WS_OP_CONT, key, "0123456789", 10);
    n += put_frame(f + n, FIN | WS_OP_CONT, key, "x", 1);
    assert_int_equal(run_all(f, n, true, 20, &s), WS_CLOSE_TOO_BIG);
    assert_int_equal(s.pieces, 20);
    assert_int_equal(run_all(f, n, true, 21, &s), 0);
    /* Control frames do not count, and each message starts again. */
    n = put_frame(f, WS_OP_TEXT, key, "0123456789", 10);
    n += put_frame(f + n, FIN | WS_OP_PING, key, "0123456789", 10);
    n += put_frame(f + n, FIN | WS_OP_CONT, key, "0123456789", 10);
    n += put_frame(f + n, FIN | WS_OP_BINARY, key, NULL, 20);
    assert_int_equal(run_all(f, n, true, 20, &s), 0);
    assert_int_equal(s.n_rec, 3);
    mem_free(MEM_MISC, f);
    no_leak();
}

/* ---- encoding ---------------------------------------------------------- */

static void test_mask(void **state)
{
    uint8_t a[128], b[128];
    static const uint8_t k[4] = {0x01, 0x80, 0xFE, 0x5A};

    (void)state;
    for (size_t len = 0; len <= 100; len++) {
        for (uint8_t pos = 0; pos < 4; pos++) {
            for (size_t off = 0; off < 8; off++) {
                uint8_t next;
                for (size_t i = 0; i < sizeof(a); i++)
                    a[i] = b[i] = pat(i + len);
                for (size_t i = 0; i < len; i++)
                    b[off + i] ^= k[(pos + i) % 4];
                next = ws_mask(a + off, len, k, pos);
                assert_int_equal(next, (pos + len) % 4);
                /* Bytes around the span are untouched too. */
                assert_memory_equal(a, b, sizeof(a));
            }
        }
    }
    /* Masking in pieces equals masking at once. */
    for (size_t cut = 0; cut <= 100; cut++) {
        uint8_t pos;
        for (size_t i = 0; i < 100; i++)
            a[i] = b[i] = pat(i);
        ws_mask(b, 100, k, 0);
        pos = ws_mask(a, cut, k, 0);
        ws_mask(a + cut, 100 - cut, k, pos);
        assert_memory_equal(a, b, 100);
    }
    no_leak();
}

static void test_encode_header(void **state)
{
    static const struct {
        uint64_t len;
        size_t hlen;
        uint8_t b1;
    } forms[] = {
        {0, 2, 0},       {125, 2, 125},    {126, 4, 126},
        {65535, 4, 126}, {65536, 10, 127}, {UINT64_C(1) << 40, 10, 127},
    };
    uint8_t h[WS_MAX_HEADER + 2];

    (void)state;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        for (int m = 0; m < 2; m++) {
            size_t n;
            memset(h, 0xEE, sizeof(h));
            n = ws_encode_header(h, WS_OP_BINARY, true, forms[i].len,
                                 m ? key : NULL);
            assert_int_equal(n, forms[i].hlen + (m ? 4 : 0));
            assert_int_equal(h[0], FIN | WS_OP_BINARY);
            assert_int_equal(h[1], forms[i].b1 | (m ? 0x80 : 0));
            if (forms[i].hlen == 4)
                assert_int_equal(h[2] << 8 | h[3], forms[i].len);
            if (forms[i].hlen == 10) {
                uint64_t v = 0;
                for (int j = 0; j < 8; j++)
                    v = v << 8 | h[2 + j];
                assert_true(v == forms[i].len);
            }
            if (m)
                assert_memory_equal(h + forms[i].hlen, key, 4);
            assert_int_equal(h[n], 0xEE); /* nothing written past it */
        }
    }
    /* FIN off, and the opcode kept to 4 bits. */
    ws_encode_header(h, WS_OP_CONT, false, 3, NULL);
    assert_int_equal(h[0], 0x00);
    ws_encode_header(h, 0xF8, false, 3, NULL);
    assert_int_equal(h[0], 0x08);
    no_leak();
}

/* Frames built by the encoder parse back: client frames in a server
 * parser, server frames in a client parser. */
static void test_encode_round_trip(void **state)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
    uint8_t *f = mem_alloc(MEM_MISC, 70000 + WS_MAX_HEADER);

    (void)state;
    assert_non_null(f);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int m = 0; m < 2; m++) {
            size_t h = ws_encode_header(f, WS_OP_BINARY, true, lens[i],
                                        m ? key : NULL);
            struct sink s;
            for (uint64_t j = 0; j < lens[i]; j++)
                f[h + j] = pat(j);
            if (m)
                ws_mask(f + h, (size_t)lens[i], key, 0);
            sink_init(&s, m == 1, 0, (size_t)lens[i]);
            feed_steps(&s, f, h + (size_t)lens[i], 1000);
            assert_false(s.failed);
            assert_int_equal(s.n_rec, 1);
            assert_int_equal(s.msg_len, lens[i]);
            for (uint64_t j = 0; j < lens[i]; j++)
                assert_int_equal(s.msg[j], pat(j));
            sink_fini(&s);
        }
    }
    /* A close frame from ws_encode_close_payload parses back. */
    {
        uint8_t pl[WS_MAX_CONTROL];
        size_t pn = ws_encode_close_payload(pl, 1001, "going away");
        size_t h = ws_encode_header(f, WS_OP_CLOSE, true, pn, NULL);
        struct sink s;
        memcpy(f + h, pl, pn);
        assert_int_equal(run_all(f, h + pn, false, 0, &s), 0);
        assert_int_equal(s.rec[0].type, WS_EV_CLOSE);
        assert_int_equal(s.rec[0].code, 1001);
        assert_memory_equal(s.rec[0].data, "going away", 10);
    }
    mem_free(MEM_MISC, f);
    no_leak();
}

static void test_encode_close_payload(void **state)
{
    uint8_t out[WS_MAX_CONTROL + 8];
    char r[200];
    size_t n;
    uint32_t st;

    (void)state;
    n = ws_encode_close_payload(out, 1000, NULL);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0x03);
    assert_int_equal(out[1], 0xE8);
    n = ws_encode_close_payload(out, 4999, "bye");
    assert_int_equal(n, 5);
    assert_int_equal(out[0] << 8 | out[1], 4999);
    assert_memory_equal(out + 2, "bye", 3);
    /* 123 bytes fit; 124 are cut to 123. */
    memset(r, 'a', sizeof(r));
    r[123] = '\0';
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 125);
    r[123] = 'a';
    r[124] = '\0';
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 125);
    r[199] = '\0';
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 125);
    /* A 2-byte character across byte 123: cut before it. */
    memset(r, 'a', sizeof(r));
    memcpy(r + 122, "\xC3\xA9", 3);
    assert_int_equal(strlen(r), 124);
    n = ws_encode_close_payload(out, 1000, r);
    assert_int_equal(n, 2 + 122);
    /* A 3-byte character starting at byte 121 or 122. */
    memset(r, 'a', sizeof(r));
    memcpy(r + 121, "\xE2\x82\xAC", 4);
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 2 + 121);
    memset(r, 'a', sizeof(r));
    memcpy(r + 122, "\xE2\x82\xAC", 4);
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 2 + 122);
    /* A 4-byte character ending exactly at 123 is kept. */
    memset(r, 'a', sizeof(r));
    memcpy(r + 119, "\xF0\x9F\x98\x80", 5);
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 2 + 123);
    memcpy(r + 119, "\xF0\x9F\x98\x80zz", 7);
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 2 + 123);
    /* Not UTF-8 at all (continuation bytes only): backs up at most 3. */
    memset(r, 0x80, sizeof(r));
    r[199] = '\0';
    assert_int_equal(ws_encode_close_payload(out, 1000, r), 2 + 120);
    /* Whatever the cut, the reason left is valid UTF-8. */
    for (size_t pre = 100; pre < 124; pre++) {
        memset(r, 'a', sizeof(r));
        memcpy(r + pre, "\xF0\x9F\x98\x80\xE2\x82\xAC\xC3\xA9", 10);
        n = ws_encode_close_payload(out, 1000, r);
        assert_true(n <= WS_MAX_CONTROL);
        st = WS_UTF8_ACCEPT;
        assert_true(ws_utf8_feed(&st, out + 2, n - 2));
        assert_int_equal(st, WS_UTF8_ACCEPT);
    }
    no_leak();
}

/* ---- the client's handshake ------------------------------------------ */

/* The RFC 6455 1.3 example key and its accept value. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static ssize_t check_resp(const char *resp, const char *protocols,
                          struct ws_response *r)
{
    return ws_check_response((const uint8_t *)resp, strlen(resp), RFC_ACCEPT,
                             protocols, r);
}

static void test_format_request(void **state)
{
    char out[512];
    ssize_t n;

    (void)state;
    n = ws_format_request(out, sizeof(out), "127.0.0.1:8080", "/echo?x=1",
                          RFC_KEY, NULL, NULL);
    assert_true(n > 0);
    assert_string_equal(out, "GET /echo?x=1 HTTP/1.1\r\n"
                             "Host: 127.0.0.1:8080\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n");
    n = ws_format_request(out, sizeof(out), "h", "/", RFC_KEY,
                          "https://a.example", "chat, superchat");
    assert_true(n > 0);
    assert_non_null(strstr(out, "\r\nOrigin: https://a.example\r\n"));
    assert_non_null(
        strstr(out, "\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
    assert_int_equal(ws_format_request(out, 40, "h", "/", RFC_KEY, NULL, NULL),
                     -ENOBUFS);
}

static void test_check_response(void **state)
{
    struct ws_response r;
    const char *ok = "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    char buf[512];

    (void)state;
    /* The accept value of the RFC's example key. */
    assert_true(ws_accept_key(RFC_KEY, strlen(RFC_KEY), buf));
    assert_string_equal(buf, RFC_ACCEPT);

    assert_int_equal(check_resp(ok, NULL, &r), (ssize_t)strlen(ok));
    assert_int_equal(r.status, 101);
    /* Incomplete at every cut: needs more, never a verdict. */
    for (size_t i = 0; i < strlen(ok); i++)
        assert_int_equal(
            ws_check_response((const uint8_t *)ok, i, RFC_ACCEPT, NULL, &r), 0);
    /* Frames right behind the head are not part of it. */
    snprintf(buf, sizeof(buf), "%s\x81\x02hi", ok);
    assert_int_equal(check_resp(buf, NULL, &r), (ssize_t)strlen(ok));
    /* Token lists and any case. */
    assert_true(check_resp("HTTP/1.1 101 OK\r\nupgrade: foo, WebSocket\r\n"
                           "CONNECTION: keep-alive, upgrade\r\n"
                           "sec-websocket-accept: " RFC_ACCEPT "\r\n\r\n",
                           NULL, &r) > 0);

    assert_true(
        check_resp("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", NULL,
                   &r) < 0);
    assert_int_equal(r.status, 404);
    assert_true(check_resp("HTTP/1.1 200 OK\r\n\r\n", NULL, &r) < 0);
    assert_int_equal(r.status, 200);
    assert_true(check_resp("HTTP/1.0 101 x\r\n\r\n", NULL, &r) < 0);
    assert_string_equal(r.why, "not an HTTP/1.1 response");
    assert_true(check_resp("HTTP/1.1 101 x\r\nConnection: upgrade\r\n"
                           "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
                           NULL, &r) < 0);
    assert_string_equal(r.why, "no Upgrade: websocket");
    assert_true(check_resp("HTTP/1.1 101 x\r\nUpgrade: websocket\r\n"
                           "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
                           NULL, &r) < 0);
    assert_string_equal(r.why, "no Connection: upgrade");
    assert_true(check_resp("HTTP/1.1 101 x\r\nUpgrade: websocket\r\n"
                           "Connection: upgrade\r\n\r\n",
                           NULL, &r) < 0);
    assert_string_equal(r.why, "no Sec-WebSocket-Accept");
    assert_true(
        check_resp("HTTP/1.1 101 x\r\nUpgrade: websocket\r\n"
                   "Connection: upgrade\r\n"
                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOO=\r\n\r\n",
                   NULL, &r) < 0);
    assert_string_equal(r.why, "wrong Sec-WebSocket-Accept");
    /* We offer no extension, and only the subprotocols we named. */
    snprintf(buf, sizeof(buf),
             "%.*sSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
             (int)strlen(ok) - 2, ok);
    assert_true(check_resp(buf, NULL, &r) < 0);
    assert_string_equal(r.why, "extension not offered");
    snprintf(buf, sizeof(buf), "%.*sSec-WebSocket-Protocol: chat\r\n\r\n",
             (int)strlen(ok) - 2, ok);
    assert_true(check_resp(buf, NULL, &r) < 0);
    assert_string_equal(r.why, "subprotocol not offered");
    assert_true(check_resp(buf, "superchat, chat", &r) > 0);
    assert_int_equal(r.protocol.len, 4);
    assert_memory_equal(r.protocol.p, "chat", 4);
    assert_true(check_resp(buf, "superchat", &r) < 0);
    /* A head that never ends is refused at WS_MAX_RESPONSE. */
    {
        static char big[WS_MAX_RESPONSE + 10];
        memset(big, 'a', sizeof(big));
        memcpy(big, "HTTP/1.1 101 x\r\nX: ", 19);
        assert_true(ws_check_response((const uint8_t *)big, sizeof(big),
                                      RFC_ACCEPT, NULL, &r) < 0);
        assert_string_equal(r.why, "response header too large");
    }
}

static void test_url_parse(void **state)
{
    struct ws_url u;
    const struct sockaddr_in *in = (const struct sockaddr_in *)&u.addr;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&u.addr;

    (void)state;
    assert_null(ws_url_parse("ws://127.0.0.1:8080/echo", &u));
    assert_string_equal(u.host, "127.0.0.1:8080");
    assert_string_equal(u.path, "/echo");
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 8080);
    assert_false(u.tls);

    assert_null(ws_url_parse("ws://localhost", &u));
    assert_string_equal(u.path, "/");
    assert_int_equal(ntohs(in->sin_port), 80);
    assert_int_equal(in->sin_addr.s_addr, htonl(0x7f000001));

    assert_null(ws_url_parse("wss://[::1]/a/b?c=d#frag", &u));
    assert_true(u.tls);
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 443);
    assert_string_equal(u.host, "[::1]");
    assert_string_equal(u.path, "/a/b?c=d");

    assert_null(ws_url_parse("ws://10.0.0.1:9?q", &u));
    assert_string_equal(u.path, "/?q");

    assert_non_null(ws_url_parse("http://127.0.0.1/", &u));
    assert_non_null(ws_url_parse("ws://", &u));
    assert_non_null(ws_url_parse("ws://127.0.0.1:0/", &u));
    assert_non_null(ws_url_parse("ws://127.0.0.1:65536/", &u));
    assert_non_null(ws_url_parse("ws://127.0.0.1:x/", &u));
    assert_non_null(ws_url_parse("ws://127.0.0.1:/", &u));
    assert_non_null(ws_url_parse("ws://example.com/", &u));
    assert_non_null(ws_url_parse("ws://[::1/", &u));
    assert_non_null(ws_url_parse("ws://u@127.0.0.1/", &u));
    assert_non_null(ws_url_parse("ws://127.0.0.1/a b", &u));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_accept_key_oom),
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_handshake_fail),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_pick_protocol),
        cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_utf8_vectors),
        cmocka_unit_test(test_utf8_fast_path),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_length_16mib),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_header_then_payload),
        cmocka_unit_test(test_unconsumed_untouched),
        cmocka_unit_test(test_empty_frames),
        cmocka_unit_test(test_mask_direction),
        cmocka_unit_test(test_rsv_bits),
        cmocka_unit_test(test_reserved_opcodes),
        cmocka_unit_test(test_control_rules),
        cmocka_unit_test(test_fragment_rules),
        cmocka_unit_test(test_ping_between_fragments),
        cmocka_unit_test(test_one_byte_fragments),
        cmocka_unit_test(test_length_encoding),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_close_payload),
        cmocka_unit_test(test_after_close),
        cmocka_unit_test(test_text_utf8),
        cmocka_unit_test(test_text_utf8_fragments),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_encode_close_payload),
        cmocka_unit_test(test_format_request),
        cmocka_unit_test(test_check_response),
        cmocka_unit_test(test_url_parse),
    };

    /* Before OpenSSL allocates anything, or the hooks are refused. */
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
