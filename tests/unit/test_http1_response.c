/*
 * test_http1_response.c - unit tests for the strict HTTP/1.1 response
 * parser (src/http1_response.c) and the body kinds the HTTP client
 * follows.
 *
 * Every rule listed in http1.h for responses has a case that fails if the
 * rule is dropped, checked by its exact return value and reason string.
 * Every response, valid or not, is parsed whole, one byte at a time and
 * split at every offset; all must agree. The parser allocates nothing,
 * and every test ends by proving it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http1.h"
#include "mem.h"

static const struct http_limits lim = {
    .max_header_bytes = 8192,
    .max_headers = 32,
    .max_body = 1 << 20,
};

/* Large (256 headers each): static rather than on every test's stack. */
static struct http_response resp, other;

static bool str_eq(struct http_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static bool str_same(struct http_str a, struct http_str b)
{
    return a.p == b.p && a.len == b.len;
}

/* The two parses of the same buffer returned the same response. */
static void assert_same(const struct http_response *a,
                        const struct http_response *b)
{
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->version_minor, b->version_minor);
    assert_true(str_same(a->reason, b->reason));
    assert_int_equal(a->keep_alive, b->keep_alive);
    assert_int_equal(a->chunked, b->chunked);
    assert_int_equal(a->has_length, b->has_length);
    assert_true(a->content_length == b->content_length);
    assert_int_equal(a->n_headers, b->n_headers);
    for (uint32_t i = 0; i < a->n_headers; i++) {
        assert_true(str_same(a->headers[i].name, b->headers[i].name));
        assert_true(str_same(a->headers[i].value, b->headers[i].value));
    }
}

static ssize_t parse_whole(const char *s, size_t len,
                           const struct http_limits *l, struct http_response *r,
                           const char **why)
{
    uint32_t scan = 0;

    return http_parse_response((const uint8_t *)s, len, l, &scan, r, why);
}

/* One byte more per call, as a trickling server would; the first
 * non-zero result. The resume hint never runs backwards. */
static ssize_t parse_trickle(const char *s, size_t len,
                             const struct http_limits *l,
                             struct http_response *r, const char **why)
{
    uint32_t scan = 0;

    *why = NULL;
    for (size_t i = 1; i <= len; i++) {
        uint32_t before = scan;
        ssize_t n =
            http_parse_response((const uint8_t *)s, i, l, &scan, r, why);
        if (n != 0)
            return n;
        assert_null(*why);
        assert_true(scan >= before && scan <= i);
    }
    return 0;
}

/* s[0..cut) first, then s[0..len) with the hint the first call left. */
static ssize_t parse_split(const char *s, size_t len, size_t cut,
                           const struct http_limits *l, struct http_response *r,
                           const char **why)
{
    uint32_t scan = 0;
    ssize_t n = http_parse_response((const uint8_t *)s, cut, l, &scan, r, why);

    if (n != 0)
        return n;
    return http_parse_response((const uint8_t *)s, len, l, &scan, r, why);
}

/*
 * Parses s whole into resp, then byte by byte and split at every offset
 * into other; every result must agree (value, reason string, fields).
 * Returns the whole parse's result and its *why.
 */
static ssize_t parse_all_ways(const char *s, size_t len,
                              const struct http_limits *l, const char **why)
{
    ssize_t n = parse_whole(s, len, l, &resp, why);
    const char *why2;
    ssize_t n2;

    if (n < 0)
        assert_non_null(*why);
    else
        assert_null(*why);
    n2 = parse_trickle(s, len, l, &other, &why2);
    if (n2 != n || why2 != *why)
        print_error("trickle: %s -> %zd %s, whole %zd %s\n", s, n2,
                    why2 ? why2 : "-", n, *why ? *why : "-");
    assert_int_equal(n2, n);
    assert_ptr_equal(why2, *why);
    if (n > 0)
        assert_same(&resp, &other);
    for (size_t cut = 0; cut <= len; cut++) {
        n2 = parse_split(s, len, cut, l, &other, &why2);
        assert_int_equal(n2, n);
        assert_ptr_equal(why2, *why);
        if (n > 0)
            assert_same(&resp, &other);
    }
    return n;
}

/* The response parses (all ways) to a head of strlen(s) bytes. */
static void accept_lim(const char *s, const struct http_limits *l)
{
    const char *why;
    ssize_t n = parse_all_ways(s, strlen(s), l, &why);

    if (n != (ssize_t)strlen(s))
        print_error("%s -> %zd %s\n", s, n, why ? why : "-");
    assert_int_equal(n, (ssize_t)strlen(s));
}

static void accept(const char *s)
{
    accept_lim(s, &lim);
}

/* The response is refused (all ways) with err and exactly reason. */
static void reject_lim(const char *s, size_t len, const struct http_limits *l,
                       int err, const char *reason)
{
    const char *why;
    ssize_t n = parse_all_ways(s, len, l, &why);

    if (n != err || !why || strcmp(why, reason) != 0)
        print_error("%s -> %zd %s (want %d %s)\n", s, n, why ? why : "-", err,
                    reason);
    assert_int_equal(n, err);
    assert_string_equal(why, reason);
}

static void reject(const char *s, int err, const char *reason)
{
    reject_lim(s, strlen(s), &lim, err, reason);
}

#define EPROTO_(s, reason) reject((s), -EPROTO, (reason))

/* ---- valid responses ----------------------------------------------------- */

static void test_simple(void **state)
{
    static const char s[] = "HTTP/1.1 200 OK\r\n"
                            "Content-Type: text/plain\r\n"
                            "Content-Length: 5\r\n"
                            "\r\n"
                            "hello";
    const char *why;
    ssize_t n = parse_all_ways(s, sizeof(s) - 1, &lim, &why);

    assert_int_equal(n, sizeof(s) - 1 - 5);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.version_minor, 1);
    assert_true(str_eq(resp.reason, "OK"));
    assert_true(resp.keep_alive);
    assert_false(resp.chunked);
    assert_true(resp.has_length);
    assert_true(resp.content_length == 5);
    assert_int_equal(resp.n_headers, 2);
    assert_true(str_eq(resp.headers[0].name, "Content-Type"));
    assert_true(str_eq(resp.headers[0].value, "text/plain"));
    assert_int_equal(http_response_body_kind(&resp, HTTP_GET),
                     HTTP_BODY_LENGTH);
    assert_int_equal(memcmp(s + n, "hello", 5), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_header_lookup(void **state)
{
    static const char s[] = "HTTP/1.1 200 OK\r\n"
                            "X-A: one\r\n"
                            "x-a: two\r\n"
                            "Etag:   \"v1\" \t\r\n"
                            "Empty:\r\n"
                            "\r\n";
    const struct http_str *v;

    accept(s);
    v = http_response_header(&resp, "X-A");
    assert_non_null(v);
    assert_true(str_eq(*v, "one")); /* the first of two */
    v = http_response_header(&resp, "ETAG");
    assert_non_null(v);
    assert_true(str_eq(*v, "\"v1\"")); /* OWS stripped */
    v = http_response_header(&resp, "empty");
    assert_non_null(v);
    assert_int_equal(v->len, 0);
    assert_null(http_response_header(&resp, "X-B"));
    assert_null(http_response_header(&resp, "X-"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_reason_phrase(void **state)
{
    static const char nul_reason[] = "HTTP/1.1 200 O\0K\r\n\r\n";

    /* Empty reason after the second SP. */
    accept("HTTP/1.1 204 \r\n\r\n");
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.reason.len, 0);
    /* SP, HTAB and obs-text are reason bytes. */
    accept("HTTP/1.1 404 Not \tFound \xc3\xa9\r\n\r\n");
    assert_true(str_eq(resp.reason, "Not \tFound \xc3\xa9"));
    accept("HTTP/1.1 599 \r\n\r\n");
    assert_int_equal(resp.status, 599);
    accept("HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(resp.status, 100);
    /* A CTL or DEL is not. */
    EPROTO_("HTTP/1.1 200 O\x01K\r\n\r\n",
            "control character in reason phrase");
    EPROTO_("HTTP/1.1 200 O\x7fK\r\n\r\n",
            "control character in reason phrase");
    reject_lim(nul_reason, sizeof(nul_reason) - 1, &lim, -EPROTO,
               "control character in reason phrase");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_keep_alive(void **state)
{
    accept("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_true(resp.keep_alive);
    accept("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    assert_false(resp.keep_alive);
    accept("HTTP/1.1 200 OK\r\nConnection: Foo, CLOSE\r\n\r\n");
    assert_false(resp.keep_alive);
    /* The token, not a substring. */
    accept("HTTP/1.1 200 OK\r\nConnection: closed, xclose\r\n\r\n");
    assert_true(resp.keep_alive);
    /* A second Connection field counts too. */
    accept("HTTP/1.1 200 OK\r\nConnection: a\r\nconnection: Close\r\n\r\n");
    assert_false(resp.keep_alive);

    accept("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(resp.version_minor, 0);
    assert_false(resp.keep_alive);
    accept("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(resp.keep_alive);
    accept("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n");
    assert_false(resp.keep_alive);
    accept("HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n\r\n");
    assert_false(resp.keep_alive); /* the Keep-Alive field alone is not it */
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_pipelined(void **state)
{
    static const char s[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"
                            "HTTP/1.1 204 No Content\r\n\r\n";
    const char *why;
    uint32_t scan = 0;
    ssize_t n = http_parse_response((const uint8_t *)s, sizeof(s) - 1, &lim,
                                    &scan, &resp, &why);
    ssize_t m;

    assert_int_equal(n, 38);
    assert_true(resp.content_length == 2);
    scan = 0;
    m = http_parse_response((const uint8_t *)s + n + 2,
                            sizeof(s) - 1 - (size_t)n - 2, &lim, &scan, &resp,
                            &why);
    assert_int_equal(m, (ssize_t)(sizeof(s) - 1 - (size_t)n - 2));
    assert_int_equal(resp.status, 204);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_incomplete(void **state)
{
    const char *why = "x";
    uint32_t scan = 0;

    assert_int_equal(
        http_parse_response((const uint8_t *)"", 0, &lim, &scan, &resp, &why),
        0);
    assert_null(why);
    assert_int_equal(http_parse_response((const uint8_t *)"HTTP/1.1 200 OK\r\n",
                                         17, &lim, &scan, &resp, &why),
                     0);
    assert_int_equal(scan, 17);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- the status line ----------------------------------------------------- */

static void test_status_line(void **state)
{
    const char *bad = "bad status line";

    /* The second SP is required, even with no reason (RFC 9112 4). */
    EPROTO_("HTTP/1.1 200\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", bad);
    EPROTO_("HTTP/1.1  200 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1\t200 OK\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200\tOK\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 2000 OK\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 20 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1 2x0 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1 099 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1 600 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1 999 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1 -20 OK\r\n\r\n", "bad status code");
    EPROTO_("HTTP/1.1 \r\n\r\n", bad);
    EPROTO_("HTTP/1.1\r\n\r\n", bad);
    /* Not a status line at all: refused on the first wrong byte. */
    EPROTO_("http/1.1 200 OK\r\n\r\n", bad);
    EPROTO_(" HTTP/1.1 200 OK\r\n\r\n", bad);
    EPROTO_("\r\nHTTP/1.1 200 OK\r\n\r\n", bad);
    EPROTO_("ICY 200 OK\r\n\r\n", bad);
    EPROTO_("<html>", bad);
    EPROTO_("HTTPS/1.1 200 OK\r\n\r\n", bad);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_versions(void **state)
{
    const char *v = "unsupported HTTP version";

    EPROTO_("HTTP/2.0 200 OK\r\n\r\n", v);
    EPROTO_("HTTP/1.2 200 OK\r\n\r\n", v);
    EPROTO_("HTTP/0.9 200 OK\r\n\r\n", v);
    EPROTO_("HTTP/3.0 200 OK\r\n\r\n", v);
    EPROTO_("HTTP/9.9", v); /* known at 8 bytes, no need to wait */
    EPROTO_("HTTP/2 200 OK\r\n\r\n", "bad status line");
    EPROTO_("HTTP/11.1 200 OK\r\n\r\n", "bad status line");
    EPROTO_("HTTP/1.x 200 OK\r\n\r\n", "bad status line");
    EPROTO_("HTTP/1.10 200 OK\r\n\r\n", "bad status line");
    accept("HTTP/1.0 200 OK\r\n\r\n");
    assert_int_equal(resp.version_minor, 0);
    accept("HTTP/1.1 200 OK\r\n\r\n");
    assert_int_equal(resp.version_minor, 1);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Garbage is refused after a few bytes, not once max_header_bytes came. */
static void test_early_refusal(void **state)
{
    const char *why;
    uint32_t scan = 0;

    assert_int_equal(
        http_parse_response((const uint8_t *)"<", 1, &lim, &scan, &resp, &why),
        -EPROTO);
    assert_string_equal(why, "bad status line");
    scan = 0;
    assert_int_equal(http_parse_response((const uint8_t *)"HTTP/2.0", 8, &lim,
                                         &scan, &resp, &why),
                     -EPROTO);
    assert_string_equal(why, "unsupported HTTP version");
    scan = 0;
    assert_int_equal(http_parse_response((const uint8_t *)"HTTP/1.", 7, &lim,
                                         &scan, &resp, &why),
                     0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- field lines --------------------------------------------------------- */

static void test_bare_lf_cr(void **state)
{
    EPROTO_("HTTP/1.1 200 OK\n\n", "bare LF in header");
    EPROTO_("HTTP/1.1 200 OK\nA: b\r\n\r\n", "bare LF in header");
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\n\r\n", "bare LF in header");
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\r\n\n", "bare LF in header");
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "bare CR in header");
    EPROTO_("HTTP/1.1 200 OK\r\r\n\r\n", "bare CR in header");
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\r\n\r\r\n", "bare CR in header");
    /* A bare LF is refused at once, not when the head completes. */
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\n", "bare LF in header");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_obs_fold(void **state)
{
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "obs-fold in header");
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n", "obs-fold in header");
    EPROTO_("HTTP/1.1 200 OK\r\n A: b\r\n\r\n", "obs-fold in header");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_field_names(void **state)
{
    EPROTO_("HTTP/1.1 200 OK\r\nA : b\r\n\r\n", "whitespace before ':'");
    EPROTO_("HTTP/1.1 200 OK\r\nA\t: b\r\n\r\n", "whitespace before ':'");
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
            "whitespace before ':'");
    EPROTO_("HTTP/1.1 200 OK\r\n: b\r\n\r\n", "bad field name");
    EPROTO_("HTTP/1.1 200 OK\r\nA(b: c\r\n\r\n", "bad field name");
    EPROTO_("HTTP/1.1 200 OK\r\nA@b: c\r\n\r\n", "bad field name");
    EPROTO_("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "bad field name");
    EPROTO_("HTTP/1.1 200 OK\r\n\xc3\xa9: c\r\n\r\n", "bad field name");
    accept("HTTP/1.1 200 OK\r\nX!#$%&'*+-.^_`|~0z: v\r\n\r\n");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_field_values(void **state)
{
    static const char nul_value[] = "HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n";
    const char *ctl = "control character in field value";

    EPROTO_("HTTP/1.1 200 OK\r\nA: b\x01c\r\n\r\n", ctl);
    EPROTO_("HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n", ctl);
    EPROTO_("HTTP/1.1 200 OK\r\nA: \x1b[0m\r\n\r\n", ctl);
    reject_lim(nul_value, sizeof(nul_value) - 1, &lim, -EPROTO, ctl);
    accept("HTTP/1.1 200 OK\r\nA: b\tc \xff\r\n\r\n");
    assert_true(str_eq(resp.headers[0].value, "b\tc \xff"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- framing ------------------------------------------------------------- */

static void test_content_length(void **state)
{
    const char *bad = "bad Content-Length";

    accept("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_true(resp.has_length);
    assert_true(resp.content_length == 0);
    accept("HTTP/1.1 200 OK\r\ncontent-length:  007 \r\n\r\n");
    assert_true(resp.content_length == 7);
    accept("HTTP/1.1 200 OK\r\nX: 1\r\n\r\n");
    assert_false(resp.has_length);
    assert_true(resp.content_length == 0);

    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", bad);
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "empty Content-Length");
    /* A second one is refused, even with the same value. */
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "duplicate Content-Length");
    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
            "duplicate Content-Length");
    /* Over 2^64-1: -EFBIG whatever max_body and the status say. */
    reject("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
           -EFBIG, "Content-Length over 2^64-1");
    reject("HTTP/1.1 304 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
           -EFBIG, "Content-Length over 2^64-1");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_content_length_max(void **state)
{
    static const struct http_limits big = {
        .max_header_bytes = 8192,
        .max_headers = 32,
        .max_body = UINT64_MAX,
    };
    static const char over[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n";

    accept_lim(
        "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
        &big);
    assert_true(resp.content_length == UINT64_MAX);
    reject_lim(over, strlen(over), &big, -EFBIG, "Content-Length over 2^64-1");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_cl_and_te(void **state)
{
    const char *both = "both Content-Length and Transfer-Encoding";

    EPROTO_("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            both);
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "Content-Length: 5\r\n\r\n",
            both);
    /* Refused even where neither frames a body. */
    EPROTO_("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n"
            "Content-Length: 5\r\n\r\n",
            both);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_transfer_encoding(void **state)
{
    const char *unsup = "unsupported transfer coding";

    accept("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_true(resp.chunked);
    assert_false(resp.has_length);
    accept("HTTP/1.1 200 OK\r\nTransfer-Encoding: ChUnKeD\r\n\r\n");
    assert_true(resp.chunked);
    accept("HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked ,\r\n\r\n");
    assert_true(resp.chunked);
    accept("HTTP/1.1 200 OK\r\nX: 1\r\n\r\n");
    assert_false(resp.chunked);

    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", unsup);
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            unsup);
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            unsup);
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", unsup);
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "chunked is not the last coding");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "Transfer-Encoding: gzip\r\n\r\n",
            "chunked is not the last coding");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "chunked applied twice");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "transfer-encoding: chunked\r\n\r\n",
            "chunked applied twice");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chu nked\r\n\r\n",
            "bad transfer coding");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            "bad transfer coding");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            "empty Transfer-Encoding");
    EPROTO_("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
            "empty Transfer-Encoding");
    /* HTTP/1.0 has no transfer codings (RFC 9112 6.1). */
    EPROTO_("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding in an HTTP/1.0 response");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* 1xx, 204 and 304 have no body; TE (and a non-zero CL) in 1xx/204 is a
 * MUST NOT the parser refuses. */
static void test_bodiless_statuses(void **state)
{
    const char *te = "Transfer-Encoding in a 1xx or 204 response";
    const char *cl = "Content-Length in a 1xx or 204 response";

    EPROTO_("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            te);
    EPROTO_("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n", te);
    EPROTO_("HTTP/1.1 101 Switching Protocols\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            te);
    EPROTO_("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", cl);
    EPROTO_("HTTP/1.1 103 Early Hints\r\nContent-Length: 1\r\n\r\n", cl);
    /* Content-Length: 0 on a 204 is common and harmless. */
    accept("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(http_response_body_kind(&resp, HTTP_GET), HTTP_BODY_NONE);
    /* 304: the length and coding of the representation, not a body; no
     * max_body check. */
    accept("HTTP/1.1 304 Not Modified\r\nContent-Length: 999999999999\r\n\r\n");
    assert_true(resp.has_length);
    assert_int_equal(http_response_body_kind(&resp, HTTP_GET), HTTP_BODY_NONE);
    accept("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_true(resp.chunked);
    assert_int_equal(http_response_body_kind(&resp, HTTP_GET), HTTP_BODY_NONE);
    /* 101 is returned as is; the caller treats it as it must. */
    accept("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
           "Upgrade: websocket\r\n\r\n");
    assert_int_equal(resp.status, 101);
    assert_true(str_eq(resp.reason, "Switching Protocols"));
    assert_int_equal(http_response_body_kind(&resp, HTTP_GET), HTTP_BODY_NONE);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_body_kinds(void **state)
{
    static const struct {
        const char *head;
        enum http_method m;
        enum http_body_kind kind;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP_GET,
         HTTP_BODY_LENGTH},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HTTP_GET,
         HTTP_BODY_LENGTH},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_POST,
         HTTP_BODY_CHUNKED},
        {"HTTP/1.1 200 OK\r\n\r\n", HTTP_GET, HTTP_BODY_CLOSE},
        {"HTTP/1.0 200 OK\r\n\r\n", HTTP_GET, HTTP_BODY_CLOSE},
        {"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\n", HTTP_PUT,
         HTTP_BODY_CLOSE},
        /* HEAD: never a body, whatever the head says. */
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP_HEAD,
         HTTP_BODY_NONE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_HEAD,
         HTTP_BODY_NONE},
        {"HTTP/1.1 200 OK\r\n\r\n", HTTP_HEAD, HTTP_BODY_NONE},
        {"HTTP/1.1 100 Continue\r\n\r\n", HTTP_POST, HTTP_BODY_NONE},
        {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", HTTP_GET,
         HTTP_BODY_NONE},
        {"HTTP/1.1 199 X\r\n\r\n", HTTP_GET, HTTP_BODY_NONE},
        {"HTTP/1.1 204 No Content\r\n\r\n", HTTP_DELETE, HTTP_BODY_NONE},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", HTTP_GET,
         HTTP_BODY_NONE},
        {"HTTP/1.1 205 Reset Content\r\n\r\n", HTTP_GET, HTTP_BODY_CLOSE},
        {"HTTP/1.1 200 OK\r\n\r\n", HTTP_CONNECT, HTTP_BODY_NONE},
        {"HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", HTTP_CONNECT,
         HTTP_BODY_LENGTH},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        accept(cases[i].head);
        if (http_response_body_kind(&resp, cases[i].m) != cases[i].kind)
            print_error("case %zu: %s\n", i, cases[i].head);
        assert_int_equal(http_response_body_kind(&resp, cases[i].m),
                         cases[i].kind);
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- limits -------------------------------------------------------------- */

/* A head of exactly n bytes: the status line, one X field padded to fit. */
static size_t make_head(char *buf, size_t n)
{
    static const char pre[] = "HTTP/1.1 200 OK\r\nX: ";
    size_t pad = n - (sizeof(pre) - 1) - 4;

    memcpy(buf, pre, sizeof(pre) - 1);
    memset(buf + sizeof(pre) - 1, 'a', pad);
    memcpy(buf + n - 4, "\r\n\r\n", 4);
    buf[n] = '\0';
    return n;
}

static void test_header_bytes_limit(void **state)
{
    static const struct http_limits small = {
        .max_header_bytes = 64,
        .max_headers = 8,
        .max_body = 100,
    };
    char buf[128];
    const char *why;
    uint32_t scan = 0;

    make_head(buf, 64);
    accept_lim(buf, &small); /* exactly at the limit */
    make_head(buf, 65);
    reject_lim(buf, 65, &small, -E2BIG, "header section too large");
    /* Incomplete: refused once len reaches the limit, not before. */
    make_head(buf, 100);
    assert_int_equal(http_parse_response((const uint8_t *)buf, 63, &small,
                                         &scan, &resp, &why),
                     0);
    assert_int_equal(http_parse_response((const uint8_t *)buf, 64, &small,
                                         &scan, &resp, &why),
                     -E2BIG);
    assert_string_equal(why, "header section too large");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_headers_limit(void **state)
{
    static const struct http_limits three = {
        .max_header_bytes = 8192,
        .max_headers = 3,
        .max_body = 100,
    };
    static const struct http_limits huge = {
        .max_header_bytes = 65536,
        .max_headers = 100000, /* clamped to HTTP_MAX_HEADERS_CAP */
        .max_body = 100,
    };
    static const char four[] =
        "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    static char buf[16384];
    size_t n;

    accept_lim("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &three);
    assert_int_equal(resp.n_headers, 3);
    reject_lim(four, strlen(four), &three, -E2BIG, "too many header fields");

    n = (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS_CAP; i++)
        n += (size_t)sprintf(buf + n, "H%d: v\r\n", i);
    strcpy(buf + n, "\r\n");
    {
        const char *why;
        uint32_t scan = 0;
        assert_int_equal(http_parse_response((const uint8_t *)buf, n + 2, &huge,
                                             &scan, &resp, &why),
                         (ssize_t)(n + 2));
        assert_int_equal(resp.n_headers, HTTP_MAX_HEADERS_CAP);
        strcpy(buf + n, "Z: 1\r\n\r\n");
        scan = 0;
        assert_int_equal(http_parse_response((const uint8_t *)buf, n + 8, &huge,
                                             &scan, &resp, &why),
                         -E2BIG);
        assert_string_equal(why, "too many header fields");
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_body_limit(void **state)
{
    static const struct http_limits hundred = {
        .max_header_bytes = 8192,
        .max_headers = 8,
        .max_body = 100,
    };
    static const char over[] = "HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";

    accept_lim("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &hundred);
    assert_true(resp.content_length == 100);
    reject_lim(over, strlen(over), &hundred, -EFBIG,
               "Content-Length over max_body");
    /* No body, no limit: 304 carries the representation's length. */
    accept_lim("HTTP/1.1 304 Not Modified\r\nContent-Length: 101\r\n\r\n",
               &hundred);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- chunked bodies after a response head -------------------------------- */

struct sink {
    size_t len;
    char data[256];
};

static void collect(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;

    assert_true(s->len + n <= sizeof(s->data));
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

static void test_chunked_body(void **state)
{
    static const char s[] = "HTTP/1.1 200 OK\r\n"
                            "Transfer-Encoding: chunked\r\n"
                            "Trailer: X-Sum\r\n"
                            "\r\n"
                            "5;ext=1\r\nhello\r\n"
                            "6\r\n world\r\n"
                            "0\r\n"
                            "X-Sum: 42\r\n"
                            "X-More: a b\r\n"
                            "\r\n"
                            "HTTP/1.1 204 No Content\r\n\r\n";
    const size_t len = sizeof(s) - 1;
    const char *why;
    uint32_t scan = 0;
    ssize_t head =
        http_parse_response((const uint8_t *)s, len, &lim, &scan, &resp, &why);
    size_t body_end = (size_t)(strstr(s, "HTTP/1.1 204") - s);

    assert_true(head > 0);
    assert_int_equal(http_response_body_kind(&resp, HTTP_GET),
                     HTTP_BODY_CHUNKED);
    /* Whole, then split at every offset: same bytes, same end. */
    for (size_t cut = (size_t)head; cut <= len; cut++) {
        struct http_chunked c;
        struct sink sk = {0};
        bool done = false;
        int status = 0;
        ssize_t k, k2 = 0;

        http_chunked_init(&c);
        k = http_chunked_parse(&c, (const uint8_t *)s + head,
                               cut - (size_t)head, &lim, collect, &sk, &done,
                               &status);
        assert_true(k >= 0);
        if (!done) {
            assert_int_equal(k, (ssize_t)(cut - (size_t)head));
            k2 = http_chunked_parse(&c, (const uint8_t *)s + cut, len - cut,
                                    &lim, collect, &sk, &done, &status);
            assert_true(k2 >= 0);
        }
        assert_true(done);
        assert_int_equal((size_t)head + (size_t)(k + k2), body_end);
        assert_int_equal(sk.len, 11);
        assert_memory_equal(sk.data, "hello world", 11);
    }
    /* The next response starts where the trailer section ended. */
    scan = 0;
    assert_true(http_parse_response((const uint8_t *)s + body_end,
                                    len - body_end, &lim, &scan, &resp,
                                    &why) > 0);
    assert_int_equal(resp.status, 204);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_body_errors(void **state)
{
    static const struct http_limits small = {
        .max_header_bytes = 32,
        .max_headers = 8,
        .max_body = 10,
    };
    static const struct {
        const char *body;
        int status;
    } cases[] = {
        {"b\r\nhello world\r\n0\r\n\r\n", 413}, /* 11 > max_body */
        {"5\r\nhelloX\r\n0\r\n\r\n", 400},      /* no CRLF after data */
        {"g\r\n", 400},                         /* not hex */
        {"0\r\nX-A : b\r\n\r\n", 400},          /* space before ':' */
        {"0\r\n folded\r\n\r\n", 400},          /* obs-fold in trailers */
        {"0\r\nX: 0123456789012345678901234567890\r\n\r\n", 431},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_chunked c;
        bool done = false;
        int status = 0;
        ssize_t k;

        http_chunked_init(&c);
        k = http_chunked_parse(&c, (const uint8_t *)cases[i].body,
                               strlen(cases[i].body), &small, NULL, NULL, &done,
                               &status);
        assert_true(k < 0);
        assert_int_equal(status, cases[i].status);
        assert_false(done);
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_reason_phrase),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_early_refusal),
        cmocka_unit_test(test_bare_lf_cr),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_field_names),
        cmocka_unit_test(test_field_values),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_content_length_max),
        cmocka_unit_test(test_cl_and_te),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_bodiless_statuses),
        cmocka_unit_test(test_body_kinds),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_headers_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_chunked_body_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
