/*
 * test_sse.c - unit tests for the Server-Sent Events encoder (src/sse.c).
 *
 * Exact bytes for every form (events, retry, comments, the response
 * head), the size/encode agreement on every payload shape (the caller
 * allocates exactly sse_event_size() bytes), no byte written past cap,
 * and a round trip through a small reference event-stream parser written
 * here from the WHATWG rules: what EventSource would dispatch is the
 * payload with "\r\n" and lone "\r" turned into "\n". sse.c allocates
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

#include "mem.h"
#include "sse.h"

#define BUF 8192

static void no_leak(void)
{
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- a reference event-stream parser (WHATWG "Server-sent events") ---- */

#define REF_MAX_EVENTS 16

struct ref_event {
    char type[SSE_EVENT_NAME_MAX + 16];
    uint8_t data[BUF];
    size_t len;
    char last_id[32];
};

struct ref {
    struct ref_event ev[REF_MAX_EVENTS];
    int n;
    long long retry; /* -1 until a retry field */
    /* the parser's buffers */
    uint8_t data[BUF];
    size_t data_len;
    char type[SSE_EVENT_NAME_MAX + 16];
    char id_buf[32];
};

static void ref_field(struct ref *r, const uint8_t *line, size_t n)
{
    const uint8_t *colon = memchr(line, ':', n);
    size_t fl = colon ? (size_t)(colon - line) : n;
    const uint8_t *v = colon ? colon + 1 : line + n;
    size_t vl = colon ? n - fl - 1 : 0;

    if (vl && v[0] == ' ') {
        v++;
        vl--;
    }
    if (fl == 5 && !memcmp(line, "event", 5)) {
        assert_true(vl < sizeof(r->type));
        memcpy(r->type, v, vl);
        r->type[vl] = '\0';
    } else if (fl == 4 && !memcmp(line, "data", 4)) {
        assert_true(r->data_len + vl + 1 <= sizeof(r->data));
        memcpy(r->data + r->data_len, v, vl);
        r->data_len += vl;
        r->data[r->data_len++] = '\n';
    } else if (fl == 2 && !memcmp(line, "id", 2)) {
        if (!memchr(v, '\0', vl)) {
            assert_true(vl < sizeof(r->id_buf));
            memcpy(r->id_buf, v, vl);
            r->id_buf[vl] = '\0';
        }
    } else if (fl == 5 && !memcmp(line, "retry", 5)) {
        long long t = 0;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9')
                return;
            t = t * 10 + (v[i] - '0');
        }
        if (vl)
            r->retry = t;
    }
}

static void ref_dispatch(struct ref *r)
{
    struct ref_event *e;

    if (r->data_len == 0) {
        r->type[0] = '\0';
        return;
    }
    assert_true(r->n < REF_MAX_EVENTS);
    e = &r->ev[r->n++];
    e->len = r->data_len - 1; /* the last "\n" goes */
    memcpy(e->data, r->data, e->len);
    strcpy(e->type, r->type[0] ? r->type : "message");
    strcpy(e->last_id, r->id_buf);
    r->data_len = 0;
    r->type[0] = '\0';
}

/* Parses the stream s[0..n); a line with no end at the end of the stream
 * is discarded, as is an event with no blank line after it. */
static void ref_parse(struct ref *r, const uint8_t *s, size_t n)
{
    size_t i = 0;

    memset(r, 0, sizeof(*r));
    r->retry = -1;
    if (n >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        i = 3;
    while (i < n) {
        size_t a = i;
        while (i < n && s[i] != '\r' && s[i] != '\n')
            i++;
        if (i == n)
            break; /* no line end: discarded */
        if (i == a)
            ref_dispatch(r);
        else if (s[a] != ':')
            ref_field(r, s + a, i - a);
        i += (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
    }
}

/* The payload as EventSource reports it: "\r\n" and lone "\r" become
 * "\n". Returns the length written to out. */
static size_t normalize(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r') {
            out[k++] = '\n';
            if (i + 1 < n && p[i + 1] == '\n')
                i++;
        } else {
            out[k++] = p[i];
        }
    }
    return k;
}

static struct ref ref;
static uint8_t out[BUF];
static uint8_t norm[BUF];

/* ---- events: exact bytes ----------------------------------------------- */

/* Encodes and checks size, encoding and the exact expected bytes. */
static void expect_event_n(uint64_t id, const char *event, const char *data,
                           size_t len, const char *want, size_t wl)
{
    size_t sz = sse_event_size(id, event, (const uint8_t *)data, len);
    size_t n;

    if (sz != wl)
        fail_msg("size %zu, want %zu for \"%.*s\"", sz, wl, (int)wl, want);
    memset(out, 0xAA, sizeof(out));
    n = sse_encode_event(out, sizeof(out), id, event, (const uint8_t *)data,
                         len);
    assert_int_equal(n, wl);
    if (memcmp(out, want, wl) != 0)
        fail_msg("got \"%.*s\", want \"%.*s\"", (int)n, (const char *)out,
                 (int)wl, want);
    assert_int_equal(out[n], 0xAA);
}

static void expect_event(uint64_t id, const char *event, const char *data,
                         size_t len, const char *want)
{
    expect_event_n(id, event, data, len, want, strlen(want));
}

#define EV(id, ev, s, want) expect_event(id, ev, s, sizeof(s) - 1, want)

static void test_event_bytes(void **state)
{
    (void)state;
    EV(1, NULL, "hello", "id: 1\ndata: hello\n\n");
    EV(42, "update", "x", "id: 42\nevent: update\ndata: x\n\n");
    EV(0, NULL, "x", "id: 0\ndata: x\n\n");
    EV(UINT64_MAX, NULL, "x", "id: 18446744073709551615\ndata: x\n\n");
    /* Each line end starts a new data line. */
    EV(7, NULL, "a\nb", "id: 7\ndata: a\ndata: b\n\n");
    EV(7, NULL, "a\r\nb", "id: 7\ndata: a\ndata: b\n\n");
    EV(7, NULL, "a\rb", "id: 7\ndata: a\ndata: b\n\n");
    EV(7, NULL, "a\n", "id: 7\ndata: a\ndata: \n\n");
    EV(7, NULL, "\na", "id: 7\ndata: \ndata: a\n\n");
    EV(7, NULL, "\r\n", "id: 7\ndata: \ndata: \n\n");
    EV(7, NULL, "\r", "id: 7\ndata: \ndata: \n\n");
    EV(7, NULL, "\n\r", "id: 7\ndata: \ndata: \ndata: \n\n");
    EV(7, NULL, "\r\r\n", "id: 7\ndata: \ndata: \ndata: \n\n");
    EV(7, NULL, "\n\n", "id: 7\ndata: \ndata: \ndata: \n\n");
    /* Leading space kept (the client strips only the one after ':'),
     * colons and NUL bytes pass as they are. */
    EV(2, NULL, " a: b", "id: 2\ndata:  a: b\n\n");
    expect_event_n(3, NULL, "a\0b", 3, "id: 3\ndata: a\0b\n\n", 17);
    no_leak();
}

/* An empty payload is one empty data line, so EventSource dispatches it
 * (with data ""); with no data line it would be dropped. */
static void test_empty_payload(void **state)
{
    (void)state;
    EV(5, NULL, "", "id: 5\ndata: \n\n");
    assert_int_equal(sse_event_size(5, "e", NULL, 0),
                     strlen("id: 5\nevent: e\ndata: \n\n"));
    assert_int_equal(sse_encode_event(out, sizeof(out), 5, "e", NULL, 0),
                     strlen("id: 5\nevent: e\ndata: \n\n"));
    assert_memory_equal(out, "id: 5\nevent: e\ndata: \n\n", 23);
    ref_parse(&ref, out, 23);
    assert_int_equal(ref.n, 1);
    assert_int_equal(ref.ev[0].len, 0);
    assert_string_equal(ref.ev[0].type, "e");
    assert_string_equal(ref.ev[0].last_id, "5");
    /* The reference parser does drop an event with no data line. */
    ref_parse(&ref, (const uint8_t *)"id: 5\n\n", 7);
    assert_int_equal(ref.n, 0);
    no_leak();
}

/* ---- size and cap ------------------------------------------------------ */

static const char *const shapes[] = {
    "",     "a",       "\n",           "\r",       "\r\n",     "\n\r",
    "\r\r", "\n\n\n",  "ab\r\ncd\ref", "x\n\r\ny", "\r\n\r\n", "abc",
    "a\r",  "\r\na\r", "a b c",        ": hi",
};

/* sse_event_size() is exact for every shape, a cap one short refuses
 * without writing past it, and nothing after the event is touched. */
static void test_size_and_cap(void **state)
{
    static const char *const names[] = {NULL, "m", "a-much-longer:name"};

    (void)state;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const uint8_t *d = (const uint8_t *)shapes[i];
        size_t len = strlen(shapes[i]);
        for (size_t j = 0; j < 3; j++) {
            for (uint64_t id = 0; id < 100000; id = id * 10 + 9) {
                size_t sz = sse_event_size(id, names[j], d, len);
                memset(out, 0xAA, sizeof(out));
                assert_int_equal(
                    sse_encode_event(out, sz, id, names[j], d, len), sz);
                assert_int_equal(out[sz], 0xAA);
                memset(out, 0xAA, sizeof(out));
                assert_int_equal(
                    sse_encode_event(out, sz - 1, id, names[j], d, len), 0);
                for (size_t k = sz - 1; k < sz + 8; k++)
                    assert_int_equal(out[k], 0xAA);
                assert_int_equal(sse_encode_event(out, 0, id, names[j], d, len),
                                 0);
            }
        }
    }
    no_leak();
}

/* Worst case: every byte a line end; 7 bytes out per byte in. */
static void test_expansion_bound(void **state)
{
    uint8_t d[100];

    (void)state;
    memset(d, '\n', sizeof(d));
    assert_int_equal(sse_event_size(1, NULL, d, sizeof(d)),
                     strlen("id: 1\n") + 7 * (sizeof(d) + 1) + 1);
    assert_true(sse_event_size(UINT64_MAX, NULL, d, sizeof(d)) <=
                7 * sizeof(d) + SSE_PREFIX_MAX + 8);
    memset(d, '\r', sizeof(d));
    assert_int_equal(sse_event_size(1, NULL, d, sizeof(d)),
                     strlen("id: 1\n") + 7 * (sizeof(d) + 1) + 1);
    for (size_t i = 0; i + 1 < sizeof(d); i += 2) {
        d[i] = '\r';
        d[i + 1] = '\n';
    }
    assert_int_equal(sse_event_size(1, NULL, d, sizeof(d)),
                     strlen("id: 1\n") + 7 * (sizeof(d) / 2 + 1) + 1);
    no_leak();
}

/* ---- names ------------------------------------------------------------- */

static void test_event_name(void **state)
{
    char name[SSE_EVENT_NAME_MAX + 2];

    (void)state;
    assert_true(sse_event_name_ok("a"));
    assert_true(sse_event_name_ok("update"));
    assert_true(sse_event_name_ok("a:b/c!~"));
    assert_false(sse_event_name_ok(NULL));
    assert_false(sse_event_name_ok(""));
    assert_false(sse_event_name_ok("a b"));
    assert_false(sse_event_name_ok(" a"));
    assert_false(sse_event_name_ok("a\n"));
    assert_false(sse_event_name_ok("a\r"));
    assert_false(sse_event_name_ok("a\rb"));
    assert_false(sse_event_name_ok("\t"));
    assert_false(sse_event_name_ok("\x7f"));
    assert_false(sse_event_name_ok("caf\xc3\xa9"));
    for (int c = 1; c < 256; c++) {
        char s[2] = {(char)c, 0};
        assert_int_equal(sse_event_name_ok(s), c >= 0x21 && c <= 0x7E);
    }
    memset(name, 'n', sizeof(name));
    name[SSE_EVENT_NAME_MAX] = '\0';
    assert_true(sse_event_name_ok(name));
    name[SSE_EVENT_NAME_MAX] = 'n';
    name[SSE_EVENT_NAME_MAX + 1] = '\0';
    assert_false(sse_event_name_ok(name));
    /* A bad name makes size, encode and prefix refuse. */
    assert_int_equal(sse_event_size(1, "a\nb", (const uint8_t *)"x", 1), 0);
    assert_int_equal(
        sse_encode_event(out, sizeof(out), 1, "", (const uint8_t *)"x", 1), 0);
    assert_int_equal(sse_event_prefix(out, sizeof(out), 1, "a b"), 0);
    assert_int_equal(sse_event_size(1, name, (const uint8_t *)"x", 1), 0);
    no_leak();
}

/* ---- the zero-copy prefix ---------------------------------------------- */

static void test_prefix(void **state)
{
    char name[SSE_EVENT_NAME_MAX + 1];
    uint8_t ev[BUF];
    size_t n;

    (void)state;
    n = sse_event_prefix(out, sizeof(out), 9, NULL);
    assert_int_equal(n, strlen("id: 9\ndata: "));
    assert_memory_equal(out, "id: 9\ndata: ", n);
    n = sse_event_prefix(out, sizeof(out), 10, "tick");
    assert_int_equal(n, strlen("id: 10\nevent: tick\ndata: "));
    assert_memory_equal(out, "id: 10\nevent: tick\ndata: ", n);
    assert_int_equal(sse_event_prefix(out, n - 1, 10, "tick"), 0);
    assert_int_equal(sse_event_prefix(out, n, 10, "tick"), n);
    /* The longest prefix is SSE_PREFIX_MAX. */
    memset(name, 'n', SSE_EVENT_NAME_MAX);
    name[SSE_EVENT_NAME_MAX] = '\0';
    assert_int_equal(sse_event_prefix(out, sizeof(out), UINT64_MAX, name),
                     SSE_PREFIX_MAX);

    /* One line: the event is prefix + payload + "\n\n". */
    assert_true(sse_data_one_line(NULL, 0));
    assert_true(sse_data_one_line((const uint8_t *)"abc: d\0e", 8));
    assert_false(sse_data_one_line((const uint8_t *)"a\n", 2));
    assert_false(sse_data_one_line((const uint8_t *)"a\rb", 3));
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const uint8_t *d = (const uint8_t *)shapes[i];
        size_t len = strlen(shapes[i]);
        size_t k, e;
        if (!sse_data_one_line(d, len))
            continue;
        k = sse_event_prefix(out, sizeof(out), 77, "x");
        memcpy(out + k, d, len);
        memcpy(out + k + len, "\n\n", 2);
        e = sse_encode_event(ev, sizeof(ev), 77, "x", d, len);
        assert_int_equal(e, k + len + 2);
        assert_memory_equal(ev, out, e);
    }
    no_leak();
}

/* ---- retry and comments ------------------------------------------------ */

static void test_retry(void **state)
{
    (void)state;
    assert_int_equal(sse_encode_retry(out, sizeof(out), 3000), 13);
    assert_memory_equal(out, "retry: 3000\n\n", 13);
    assert_int_equal(sse_encode_retry(out, sizeof(out), 0), 10);
    assert_memory_equal(out, "retry: 0\n\n", 10);
    assert_int_equal(sse_encode_retry(out, sizeof(out), UINT32_MAX),
                     SSE_RETRY_MAX);
    assert_memory_equal(out, "retry: 4294967295\n\n", SSE_RETRY_MAX);
    memset(out, 0xAA, 32);
    assert_int_equal(sse_encode_retry(out, 12, 3000), 0);
    assert_int_equal(out[0], 0xAA);
    assert_int_equal(sse_encode_retry(out, 13, 3000), 13);
    /* The client takes it, and dispatches nothing. */
    ref_parse(&ref, out, 13);
    assert_int_equal(ref.retry, 3000);
    assert_int_equal(ref.n, 0);
    no_leak();
}

static void test_comment(void **state)
{
    (void)state;
    assert_int_equal(sse_encode_comment(out, sizeof(out), "hb"), 6);
    assert_memory_equal(out, ": hb\n\n", 6);
    assert_int_equal(sse_encode_comment(out, sizeof(out), NULL), 3);
    assert_memory_equal(out, ":\n\n", 3);
    assert_int_equal(sse_encode_comment(out, sizeof(out), ""), 3);
    assert_memory_equal(out, ":\n\n", 3);
    assert_int_equal(sse_encode_comment(out, sizeof(out), "a: b"), 8);
    assert_memory_equal(out, ": a: b\n\n", 8);
    /* A line end inside would end the comment early. */
    assert_int_equal(sse_encode_comment(out, sizeof(out), "a\nb"), 0);
    assert_int_equal(sse_encode_comment(out, sizeof(out), "a\r"), 0);
    assert_int_equal(sse_encode_comment(out, sizeof(out), "\r\n"), 0);
    /* Cap. */
    memset(out, 0xAA, 32);
    assert_int_equal(sse_encode_comment(out, 5, "hb"), 0);
    assert_int_equal(out[0], 0xAA);
    assert_int_equal(sse_encode_comment(out, 6, "hb"), 6);
    assert_int_equal(sse_encode_comment(out, 2, NULL), 0);
    assert_int_equal(sse_encode_comment(out, 3, NULL), 3);
    /* A heartbeat between two events changes nothing for the client. */
    {
        size_t n = sse_encode_event(out, sizeof(out), 1, NULL,
                                    (const uint8_t *)"a", 1);
        n += sse_encode_comment(out + n, sizeof(out) - n, "keepalive");
        n += sse_encode_event(out + n, sizeof(out) - n, 2, "t",
                              (const uint8_t *)"b", 1);
        ref_parse(&ref, out, n);
        assert_int_equal(ref.n, 2);
        assert_memory_equal(ref.ev[0].data, "a", 1);
        assert_string_equal(ref.ev[0].type, "message");
        assert_string_equal(ref.ev[0].last_id, "1");
        assert_memory_equal(ref.ev[1].data, "b", 1);
        assert_string_equal(ref.ev[1].type, "t");
        assert_string_equal(ref.ev[1].last_id, "2");
    }
    no_leak();
}

/* ---- the response head ------------------------------------------------- */

#define HEAD                                                                   \
    "HTTP/1.1 200 OK\r\n"                                                      \
    "Content-Type: text/event-stream\r\n"                                      \
    "Cache-Control: no-cache\r\n"                                              \
    "X-Accel-Buffering: no\r\n"                                                \
    "Connection: keep-alive\r\n"

static void test_format_head(void **state)
{
    char h[512];
    const char *want = HEAD "\r\n";
    const char *want2 = HEAD "Access-Control-Allow-Origin: *\r\n"
                             "X-A: 1\r\n\r\n";
    static const char *const bad[] = {
        "X: y",         "X: y\n",         "\r\n",
        "X: y\r\n\r\n", "X: y\rZ: z\r\n", "X: y\r\n\r\nZ: z\r\n",
        "\nX: y\r\n",   "X: y\r",
    };
    ssize_t n;

    (void)state;
    n = sse_format_head(h, sizeof(h), NULL);
    assert_int_equal(n, strlen(want));
    assert_string_equal(h, want);
    n = sse_format_head(h, sizeof(h), "");
    assert_string_equal(h, want);
    n = sse_format_head(h, sizeof(h),
                        "Access-Control-Allow-Origin: *\r\nX-A: 1\r\n");
    assert_int_equal(n, strlen(want2));
    assert_string_equal(h, want2);
    /* No length, no chunking: the body ends with the connection. */
    assert_null(strstr(h, "Content-Length"));
    assert_null(strstr(h, "Transfer-Encoding"));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sse_format_head(h, sizeof(h), bad[i]), -EINVAL);
    /* Cap: the head and its NUL must fit. */
    assert_int_equal(sse_format_head(h, strlen(want), NULL), -ENOBUFS);
    assert_int_equal(sse_format_head(h, strlen(want) + 1, NULL),
                     (ssize_t)strlen(want));
    assert_int_equal(sse_format_head(h, 0, NULL), -ENOBUFS);
    no_leak();
}

/* ---- Last-Event-ID ----------------------------------------------------- */

static bool lei(const char *s, uint64_t *id)
{
    return sse_parse_last_event_id(s, strlen(s), id);
}

static void test_last_event_id(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "\t ",
        "-1",
        "+1",
        "1a",
        "a1",
        "0x10",
        "1 2",
        "1.0",
        "1e3",
        "12,",
        "\xef\xbc\x91",
        "18446744073709551616",
        "99999999999999999999",
        "100000000000000000000",
    };
    uint64_t id;

    (void)state;
    assert_true(lei("0", &id));
    assert_int_equal(id, 0);
    assert_true(lei("42", &id));
    assert_int_equal(id, 42);
    assert_true(lei("  42\t", &id));
    assert_int_equal(id, 42);
    assert_true(lei("007", &id));
    assert_int_equal(id, 7);
    assert_true(lei("18446744073709551615", &id));
    assert_true(id == UINT64_MAX);
    assert_true(lei("0000000000000000000000018446744073709551615", &id));
    assert_true(id == UINT64_MAX);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        id = 12345;
        if (lei(bad[i], &id))
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(id, 12345); /* untouched */
    }
    /* Only n bytes are read: the value need not be NUL-terminated. */
    assert_true(sse_parse_last_event_id("123xyz", 3, &id));
    assert_int_equal(id, 123);
    assert_false(sse_parse_last_event_id("123", 0, &id));
    assert_false(sse_parse_last_event_id("1\0002", 3, &id));
    /* Every id the encoder writes parses back. */
    for (uint64_t v = 1; v != 0 && v < UINT64_MAX / 3; v = v * 3 + 1) {
        size_t n = sse_event_prefix(out, sizeof(out), v, NULL);
        assert_true(
            sse_parse_last_event_id((const char *)out + 4, n - 11, &id));
        assert_true(id == v);
    }
    no_leak();
}

/* ---- round trip -------------------------------------------------------- */

/* A stream of retry, events and heartbeats parses back to the payloads
 * (line ends normalised), types and ids that went in. */
static void test_round_trip(void **state)
{
    static uint8_t stream[BUF * 2];
    size_t n = 0, nshapes = sizeof(shapes) / sizeof(shapes[0]);
    uint32_t rng = 12345;
    uint8_t rnd[64];

    (void)state;
    n += sse_encode_retry(stream + n, sizeof(stream) - n, 2500);
    for (size_t i = 0; i < nshapes; i++) {
        n += sse_encode_event(stream + n, sizeof(stream) - n, 100 + i,
                              i % 2 ? "odd" : NULL, (const uint8_t *)shapes[i],
                              strlen(shapes[i]));
        if (i % 3 == 0)
            n += sse_encode_comment(stream + n, sizeof(stream) - n, "hb");
        if (i == REF_MAX_EVENTS - 2)
            break;
    }
    ref_parse(&ref, stream, n);
    assert_int_equal(ref.retry, 2500);
    assert_int_equal(ref.n, REF_MAX_EVENTS - 1);
    for (int i = 0; i < ref.n; i++) {
        size_t k =
            normalize((const uint8_t *)shapes[i], strlen(shapes[i]), norm);
        char id[32];
        snprintf(id, sizeof(id), "%d", 100 + i);
        assert_int_equal(ref.ev[i].len, k);
        assert_memory_equal(ref.ev[i].data, norm, k);
        assert_string_equal(ref.ev[i].type, i % 2 ? "odd" : "message");
        assert_string_equal(ref.ev[i].last_id, id);
    }
    /* Random payloads over a small alphabet heavy in line ends. */
    for (int round = 0; round < 2000; round++) {
        size_t len, k, e;
        rng = rng * 1103515245u + 12345u;
        len = (rng >> 16) % sizeof(rnd);
        for (size_t i = 0; i < len; i++) {
            rng = rng * 1103515245u + 12345u;
            rnd[i] = "\r\n a:\0\xff"[(rng >> 16) % 7];
        }
        e = sse_encode_event(out, sizeof(out), (uint64_t)round, "r", rnd, len);
        assert_int_equal(e, sse_event_size((uint64_t)round, "r", rnd, len));
        ref_parse(&ref, out, e);
        assert_int_equal(ref.n, 1);
        k = normalize(rnd, len, norm);
        assert_int_equal(ref.ev[0].len, k);
        assert_memory_equal(ref.ev[0].data, norm, k);
        assert_string_equal(ref.ev[0].type, "r");
    }
    no_leak();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_bytes),
        cmocka_unit_test(test_empty_payload),
        cmocka_unit_test(test_size_and_cap),
        cmocka_unit_test(test_expansion_bound),
        cmocka_unit_test(test_event_name),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_format_head),
        cmocka_unit_test(test_last_event_id),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
