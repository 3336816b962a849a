/*
 * test_http1.c - unit tests for the strict HTTP/1.1 parser (src/http1.c).
 *
 * Every strictness rule in http1.h has a test that checks its exact status.
 * Requests are fed whole and one byte at a time; both must agree. The
 * parser allocates nothing, and every test ends by proving it.
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

/* Large (256 headers): static rather than on every test's stack. */
static struct http_request req;

static ssize_t parse_lim(const char *s, size_t len, const struct http_limits *l,
                         int *status)
{
    uint32_t scan = 0;

    *status = 0;
    return http_parse_request((const uint8_t *)s, len, l, &scan, &req, status);
}

static ssize_t parse(const char *s, int *status)
{
    return parse_lim(s, strlen(s), &lim, status);
}

/*
 * Feeds s[0..len) one byte more per call, as a trickling peer would, and
 * returns the first non-zero result. Checks that the resume hint never
 * runs backwards.
 */
static ssize_t parse_trickle(const char *s, size_t len,
                             const struct http_limits *l, int *status)
{
    uint32_t scan = 0;

    *status = 0;
    for (size_t i = 1; i <= len; i++) {
        uint32_t before = scan;
        ssize_t n =
            http_parse_request((const uint8_t *)s, i, l, &scan, &req, status);
        if (n != 0)
            return n;
        assert_true(scan >= before);
        assert_true(scan <= i);
    }
    return 0;
}

static bool str_eq(struct http_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* The request must be refused with code, fed whole and fed byte by byte. */
static void reject_lim(const char *s, const struct http_limits *l, int code)
{
    int status;
    ssize_t n = parse_lim(s, strlen(s), l, &status);

    if (n >= 0 || status != code)
        print_error("whole: %s -> n=%zd status=%d\n", s, n, status);
    assert_true(n < 0);
    assert_int_equal(status, code);
    n = parse_trickle(s, strlen(s), l, &status);
    if (n >= 0 || status != code)
        print_error("trickle: %s -> n=%zd status=%d\n", s, n, status);
    assert_true(n < 0);
    assert_int_equal(status, code);
}

static void reject(const char *s, int code)
{
    reject_lim(s, &lim, code);
}

/* The request must be accepted whole and byte by byte, as all of s. */
static void accept_req(const char *s)
{
    int status;
    ssize_t n = parse_trickle(s, strlen(s), &lim, &status);

    if (n != (ssize_t)strlen(s))
        print_error("trickle: %s -> n=%zd status=%d\n", s, n, status);
    assert_int_equal(n, strlen(s));
    n = parse(s, &status);
    if (n != (ssize_t)strlen(s))
        print_error("whole: %s -> n=%zd status=%d\n", s, n, status);
    assert_int_equal(n, strlen(s));
}

/* ---- request line and fields ------------------------------------------- */

static void test_simple_get(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

    accept_req(s);
    assert_int_equal(req.method, HTTP_GET);
    assert_true(str_eq(req.method_str, "GET"));
    assert_true(str_eq(req.target, "/"));
    assert_true(str_eq(req.path, "/"));
    assert_int_equal(req.query.len, 0);
    assert_int_equal(req.version_minor, 1);
    assert_true(req.keep_alive);
    assert_false(req.chunked);
    assert_false(req.has_body);
    assert_false(req.upgrade);
    assert_false(req.expect_continue);
    assert_int_equal(req.content_length, 0);
    assert_true(str_eq(req.host, "example.com"));
    assert_int_equal(req.n_headers, 1);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_all_fields(void **state)
{
    const char *s = "POST /submit HTTP/1.1\r\n"
                    "Host: h:8080\r\n"
                    "User-Agent:   curl/8.0 \t\r\n"
                    "Accept: */*\r\n"
                    "X-Empty:\r\n"
                    "Content-Length: 12\r\n"
                    "x-obs: caf\xc3\xa9\r\n"
                    "\r\n";
    const struct http_str *v;

    accept_req(s);
    assert_int_equal(req.method, HTTP_POST);
    assert_int_equal(req.n_headers, 6);
    assert_true(str_eq(req.headers[0].name, "Host"));
    assert_true(str_eq(req.headers[1].value, "curl/8.0"));
    assert_true(str_eq(req.headers[3].name, "X-Empty"));
    assert_int_equal(req.headers[3].value.len, 0);
    v = http_header_get(&req, "user-agent");
    assert_non_null(v);
    assert_true(str_eq(*v, "curl/8.0"));
    v = http_header_get(&req, "ACCEPT");
    assert_non_null(v);
    assert_true(str_eq(*v, "*/*"));
    v = http_header_get(&req, "X-OBS");
    assert_non_null(v);
    assert_true(str_eq(*v, "caf\xc3\xa9"));
    assert_null(http_header_get(&req, "Cookie"));
    assert_null(http_header_get(&req, "Hos"));
    assert_int_equal(req.content_length, 12);
    assert_true(req.has_body);
    assert_true(str_eq(req.host, "h:8080"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_path_query(void **state)
{
    accept_req("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(str_eq(req.target, "/a/b?x=1&y=2?z"));
    assert_true(str_eq(req.path, "/a/b"));
    assert_true(str_eq(req.query, "x=1&y=2?z"));

    accept_req("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(str_eq(req.path, "/p"));
    assert_int_equal(req.query.len, 0);

    accept_req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.method, HTTP_OPTIONS);
    assert_true(str_eq(req.path, "*"));

    /* absolute-form: the authority is the host (RFC 9112 3.2.2). */
    accept_req("GET http://other.example/x?q HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(str_eq(req.path, "/x"));
    assert_true(str_eq(req.query, "q"));
    assert_true(str_eq(req.host, "other.example"));

    accept_req("GET HTTPS://a.b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(str_eq(req.path, "/"));
    assert_true(str_eq(req.host, "a.b"));

    accept_req("CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n");
    assert_int_equal(req.method, HTTP_CONNECT);
    assert_true(str_eq(req.host, "a.b:443"));
    assert_int_equal(req.path.len, 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bad_targets(void **state)
{
    reject("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("CONNECT h:x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("CONNECT :1 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_request_line_spacing(void **state)
{
    reject("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    reject(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET /\r\nHost: h\r\n\r\n", 400);
    reject("GET / \r\nHost: h\r\n\r\n", 400);
    /* A leading empty line is refused, not skipped. */
    reject("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_keep_alive_defaults(void **state)
{
    accept_req("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.version_minor, 1);
    assert_true(req.keep_alive);

    accept_req("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(req.version_minor, 0);
    assert_false(req.keep_alive);
    assert_int_equal(req.host.len, 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_connection_header(void **state)
{
    accept_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_false(req.keep_alive);

    accept_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n");
    assert_false(req.keep_alive);

    accept_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n");
    assert_true(req.keep_alive);

    accept_req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(req.keep_alive);

    accept_req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
               "Connection: close\r\n\r\n");
    assert_false(req.keep_alive);

    /* chunked and keep-alive together are fine. */
    accept_req("POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
    assert_true(req.keep_alive);
    assert_true(req.chunked);
    assert_true(req.has_body);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_upgrade(void **state)
{
    accept_req("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
               "Connection: keep-alive, Upgrade\r\n\r\n");
    assert_true(req.upgrade);

    accept_req("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    assert_false(req.upgrade);

    accept_req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n");
    assert_false(req.upgrade);

    /* HTTP/1.0 Upgrade is ignored (RFC 9110 7.8). */
    accept_req("GET /ws HTTP/1.0\r\nUpgrade: websocket\r\n"
               "Connection: upgrade\r\n\r\n");
    assert_false(req.upgrade);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_expect_continue(void **state)
{
    accept_req("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
               "Content-Length: 3\r\n\r\n");
    assert_true(req.expect_continue);
    assert_int_equal(req.method, HTTP_PUT);

    accept_req("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n");
    assert_false(req.expect_continue);

    accept_req("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert_false(req.expect_continue);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_all_methods(void **state)
{
    static const char *const names[] = {"GET",    "HEAD",    "POST",  "PUT",
                                        "DELETE", "OPTIONS", "PATCH", "TRACE"};
    char buf[128];
    int status;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: h\r\n\r\n",
                 names[i]);
        assert_int_equal(parse(buf, &status), strlen(buf));
        assert_string_equal(http_method_name(req.method), names[i]);
    }
    assert_string_equal(http_method_name(HTTP_CONNECT), "CONNECT");
    assert_string_equal(http_method_name(HTTP_UNKNOWN), "UNKNOWN");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_pipelined(void **state)
{
    const char *one = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
    char s[256];
    int status;
    ssize_t n;

    snprintf(s, sizeof(s), "%sGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", one);
    n = parse(s, &status);
    assert_int_equal(n, strlen(one));
    assert_true(str_eq(req.path, "/1"));
    n = parse(s + n, &status);
    assert_int_equal(n, strlen(s) - strlen(one));
    assert_true(str_eq(req.path, "/2"));

    /* Garbage after the first block does not matter to the first. */
    snprintf(s, sizeof(s), "%s\n\x01 junk", one);
    assert_int_equal(parse(s, &status), strlen(one));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_trickle(void **state)
{
    const char *s = "POST /up?x=1 HTTP/1.1\r\nHost: h\r\n"
                    "Content-Length: 5\r\nX-A: b\r\n\r\nhello";
    size_t head = strlen(s) - 5;
    uint32_t scan = 0, grew = 0;
    int status = 0;

    for (size_t i = 1; i < head; i++) {
        uint32_t before = scan;
        assert_int_equal(http_parse_request((const uint8_t *)s, i, &lim, &scan,
                                            &req, &status),
                         0);
        assert_true(scan >= before);
        if (scan > before)
            grew++;
    }
    assert_true(scan >= head - 4);
    assert_true(grew > head / 2);
    assert_int_equal(http_parse_request((const uint8_t *)s, head, &lim, &scan,
                                        &req, &status),
                     head);
    assert_int_equal(req.content_length, 5);
    assert_true(str_eq(req.query, "x=1"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- rejections -------------------------------------------------------- */

static void test_bare_lf(void **state)
{
    reject("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    reject("GET / HTTP/1.1\n\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bare_lf_early(void **state)
{
    /* Rejected before the block is complete: no need to wait. */
    int status;

    assert_true(parse("GET / HTTP/1.1\nHost", &status) < 0);
    assert_int_equal(status, 400);
    assert_true(parse("G@T", &status) < 0);
    assert_int_equal(status, 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bare_cr(void **state)
{
    reject("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_obs_fold(void **state)
{
    reject("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_space_before_colon(void **state)
{
    reject("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 0\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bad_name(void **state)
{
    reject("GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_ctl_in_value(void **state)
{
    static const char *const ctl[] = {"\x01", "\x7f", "\x1b", "\x0b"};
    char s[128];

    for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
        snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: h\r\nX: a%sb\r\n\r\n",
                 ctl[i]);
        reject(s, 400);
    }
    /* A NUL is a CTL too; strlen cannot carry it, so feed it by length. */
    {
        const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
        int status;
        assert_true(parse_lim(nul, sizeof(nul) - 1, &lim, &status) < 0);
        assert_int_equal(status, 400);
    }
    /* HTAB inside a value is allowed. */
    accept_req("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n");
    assert_true(str_eq(req.headers[1].value, "a\tb"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_content_length_rules(void **state)
{
    /* A second Content-Length is refused even with the same value. */
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
           "Content-Length: 5\r\n\r\n",
           400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
           "Content-Length: 6\r\n\r\n",
           400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400);
    accept_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n");
    assert_int_equal(req.content_length, 7);
    accept_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_false(req.has_body);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_cl_and_te(void **state)
{
    reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
           "Transfer-Encoding: chunked\r\n\r\n",
           400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
           "Content-Length: 5\r\n\r\n",
           400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_transfer_encoding_rules(void **state)
{
    reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
           501);
    reject("POST / HTTP/1.1\r\nHost: h\r\n"
           "Transfer-Encoding: gzip, chunked\r\n\r\n",
           501);
    reject("POST / HTTP/1.1\r\nHost: h\r\n"
           "Transfer-Encoding: chunked, gzip\r\n\r\n",
           400);
    reject("POST / HTTP/1.1\r\nHost: h\r\n"
           "Transfer-Encoding: chunked, chunked\r\n\r\n",
           400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
           "Transfer-Encoding: chunked\r\n\r\n",
           400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n", 400);
    reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chun ked\r\n\r\n",
           400);
    /* HTTP/1.0 has no chunked framing. */
    reject("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    accept_req("POST / HTTP/1.1\r\nHost: h\r\n"
               "Transfer-Encoding: , Chunked\r\n\r\n");
    assert_true(req.chunked);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_host_rules(void **state)
{
    reject("GET / HTTP/1.1\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    reject("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    reject("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400);
    accept_req("GET / HTTP/1.0\r\n\r\n");
    accept_req("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    assert_int_equal(req.host.len, 0);
    accept_req("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    assert_true(str_eq(req.host, "[::1]:8080"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_versions(void **state)
{
    reject("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    reject("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    reject("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
    reject("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400);
    reject("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    reject("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    reject("GET / HTTP/a.b\r\nHost: h\r\n\r\n", 400);
    reject("GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_methods(void **state)
{
    reject("FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 501);
    reject("get / HTTP/1.1\r\nHost: h\r\n\r\n", 501);
    reject("GETS / HTTP/1.1\r\nHost: h\r\n\r\n", 501);
    reject("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("GE\x01T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    reject("G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_header_bytes_limit(void **state)
{
    const struct http_limits small = {
        .max_header_bytes = 64, .max_headers = 32, .max_body = 100};
    char s[256];
    int status;

    /* Exactly at the limit is fine. */
    snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: h\r\nX: %032d\r\n\r\n", 0);
    assert_int_equal(strlen(s), 64);
    assert_int_equal(parse_lim(s, strlen(s), &small, &status), 64);
    /* One byte more is 431, whole or trickled. */
    snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: h\r\nX: %033d\r\n\r\n", 0);
    reject_lim(s, &small, 431);
    /* Incomplete but already past the limit: 431 without waiting. */
    snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: h\r\nX: %060d", 0);
    assert_true(parse_lim(s, strlen(s), &small, &status) < 0);
    assert_int_equal(status, 431);
    /* Below the limit and incomplete: wait. */
    assert_int_equal(parse_lim(s, 40, &small, &status), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_long_request_line(void **state)
{
    const struct http_limits small = {
        .max_header_bytes = 64, .max_headers = 32, .max_body = 100};
    char s[256];

    snprintf(s, sizeof(s), "GET /%070d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    reject_lim(s, &small, 414);
    /* The CRLF of the request line ends one byte past the limit. */
    snprintf(s, sizeof(s), "GET /%049d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    assert_int_equal(strstr(s, "\r\n") - s, 63);
    reject_lim(s, &small, 414);
    /* Here it ends just within: the fields are what is too long. */
    snprintf(s, sizeof(s), "GET /%048d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    reject_lim(s, &small, 431);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_too_many_headers(void **state)
{
    const struct http_limits few = {
        .max_header_bytes = 8192, .max_headers = 3, .max_body = 100};
    int status;

    reject_lim("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
               &few, 431);
    const char *ok = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";

    assert_int_equal(parse_lim(ok, strlen(ok), &few, &status), strlen(ok));
    assert_int_equal(req.n_headers, 3);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_headers_cap(void **state)
{
    /* max_headers above HTTP_MAX_HEADERS_CAP is clamped to it. */
    const struct http_limits many = {
        .max_header_bytes = 65536, .max_headers = 100000, .max_body = 1};
    static char s[16384];
    size_t off;
    int status;

    off = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS_CAP; i++)
        off += (size_t)snprintf(s + off, sizeof(s) - off, "X: %d\r\n", i);
    snprintf(s + off, sizeof(s) - off, "\r\n");
    assert_true(parse_lim(s, strlen(s), &many, &status) < 0);
    assert_int_equal(status, 431);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_body_too_large(void **state)
{
    const struct http_limits small = {
        .max_header_bytes = 8192, .max_headers = 32, .max_body = 100};
    int status;

    reject_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
               &small, 413);
    reject_lim("POST / HTTP/1.1\r\nHost: h\r\n"
               "Content-Length: 99999999999999999999999\r\n\r\n",
               &small, 413);
    const char *ok =
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n";

    assert_int_equal(parse_lim(ok, strlen(ok), &small, &status), strlen(ok));
    assert_int_equal(req.content_length, 100);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- helpers ------------------------------------------------------------- */

static void test_token_list(void **state)
{
    struct http_str v = {"a, b ,\tKeep-Alive\t,,c", 21};
    struct http_str empty = {"", 0};

    assert_true(http_token_list_has(v, "a"));
    assert_true(http_token_list_has(v, "b"));
    assert_true(http_token_list_has(v, "keep-alive"));
    assert_true(http_token_list_has(v, "C"));
    assert_false(http_token_list_has(v, "keep"));
    assert_false(http_token_list_has(v, "d"));
    assert_false(http_token_list_has(empty, "a"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* http_list_next(): elements in order, OWS trimmed, empty ones kept, a
 * trailing comma giving no element after it. */
static void test_list_next(void **state)
{
    static const char *const want[] = {"a", "b c", "", "", "d"};
    struct http_str v = {" a ,\tb c\t,, ,d,", 15}, el;
    uint32_t pos = 0;
    size_t i = 0;

    while (http_list_next(v, &pos, &el)) {
        assert_true(i < 5);
        assert_int_equal(el.len, strlen(want[i]));
        assert_memory_equal(el.p, want[i], el.len);
        i++;
    }
    assert_int_equal(i, 5);
    assert_false(http_list_next(v, &pos, &el)); /* stays exhausted */

    v.len = 0;
    pos = 0;
    assert_false(http_list_next(v, &pos, &el));
}

static void test_reason(void **state)
{
    static const int codes[] = {100, 101, 200, 201, 202, 204, 206, 301,
                                302, 304, 400, 401, 403, 404, 405, 408,
                                409, 411, 413, 414, 415, 426, 429, 431,
                                500, 501, 502, 503, 504, 505};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_string_not_equal(http_reason(codes[i]), "Unknown");
    assert_string_equal(http_reason(200), "OK");
    assert_string_equal(http_reason(404), "Not Found");
    assert_string_equal(http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_reason(299), "Unknown");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_format_head(void **state)
{
    char out[256];
    const char *want = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n"
                       "Connection: close\r\nX-A: b\r\n\r\n";
    ssize_t n;

    n = http_format_head(out, sizeof(out), 404, 9, false, "X-A: b\r\n");
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);

    n = http_format_head(out, sizeof(out), 200, -1, true, NULL);
    assert_string_equal(out, "HTTP/1.1 200 OK\r\n\r\n");
    assert_int_equal(n, 19);

    /* One byte short of room for the terminating NUL is too small. */
    assert_int_equal(http_format_head(out, 19, 200, -1, true, NULL), -ENOBUFS);
    assert_int_equal(http_format_head(out, 20, 200, -1, true, NULL), 19);
    assert_int_equal(http_format_head(NULL, 0, 200, 0, true, NULL), -ENOBUFS);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- chunked ------------------------------------------------------------- */

struct sink {
    char data[4096];
    size_t len;
    unsigned calls;
};

static void collect(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;

    assert_true(n > 0);
    assert_true(s->len + n <= sizeof(s->data));
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->calls++;
}

/* Decodes in whole; returns what http_chunked_parse returned. */
static ssize_t chunked_whole(const char *in, size_t len,
                             const struct http_limits *l, struct sink *s,
                             bool *done, int *status)
{
    struct http_chunked c;

    http_chunked_init(&c);
    memset(s, 0, sizeof(*s));
    *status = 0;
    return http_chunked_parse(&c, (const uint8_t *)in, len, l, collect, s, done,
                              status);
}

/* Decodes in one byte per call; returns the total consumed, or <0. */
static ssize_t chunked_trickle(const char *in, size_t len,
                               const struct http_limits *l, struct sink *s,
                               bool *done, int *status)
{
    struct http_chunked c;
    size_t used = 0;

    http_chunked_init(&c);
    memset(s, 0, sizeof(*s));
    *status = 0;
    *done = false;
    for (size_t i = 0; i < len && !*done; i++) {
        ssize_t n = http_chunked_parse(&c, (const uint8_t *)in + i, 1, l,
                                       collect, s, done, status);
        if (n < 0)
            return n;
        assert_int_equal(n, 1);
        used += (size_t)n;
    }
    return (ssize_t)used;
}

/* Decodes body whole and byte by byte, expecting want as the data, the
 * terminator to end at end_off. */
static void chunked_ok(const char *body, size_t len, const char *want,
                       size_t end_off)
{
    struct sink s;
    bool done;
    int status;

    assert_int_equal(chunked_whole(body, len, &lim, &s, &done, &status),
                     end_off);
    assert_true(done);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.data, want, s.len);

    assert_int_equal(chunked_trickle(body, len, &lim, &s, &done, &status),
                     end_off);
    assert_true(done);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.data, want, s.len);
}

static void chunked_bad(const char *body, const struct http_limits *l, int code)
{
    struct sink s;
    bool done;
    int status;

    assert_true(chunked_whole(body, strlen(body), l, &s, &done, &status) < 0);
    assert_int_equal(status, code);
    assert_true(chunked_trickle(body, strlen(body), l, &s, &done, &status) < 0);
    assert_int_equal(status, code);
}

static void test_chunked_normal(void **state)
{
    const char *b = "5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";

    chunked_ok(b, strlen(b), "hello 0123456789", strlen(b));
    b = "0\r\n\r\n";
    chunked_ok(b, strlen(b), "", strlen(b));
    b = "00a\r\n0123456789\r\n000\r\n\r\n";
    chunked_ok(b, strlen(b), "0123456789", strlen(b));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_extensions(void **state)
{
    const char *b = "5;name=value\r\nhello\r\n"
                    "3 ; a=\"q;x\" ;b\r\nabc\r\n"
                    "0;last\r\n\r\n";

    chunked_ok(b, strlen(b), "helloabc", strlen(b));
    chunked_bad("5 \r\nhello\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("5;a\x01\r\nhello\r\n0\r\n\r\n", &lim, 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_trailers(void **state)
{
    const struct http_limits small = {
        .max_header_bytes = 20, .max_headers = 32, .max_body = 100};
    const char *b = "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\n";

    chunked_ok(b, strlen(b), "abc", strlen(b));
    chunked_bad("0\r\n X: 1\r\n\r\n", &lim, 400);
    chunked_bad("0\r\nX : 1\r\n\r\n", &lim, 400);
    chunked_bad("0\r\nX: 1\n\r\n", &lim, 400);
    chunked_bad("0\r\nX: \x01\r\n\r\n", &lim, 400);
    chunked_bad("0\r\nX: 1\r\n\r\r", &lim, 400);
    chunked_bad("0\r\nX-Long: 0123456789\r\n\r\n", &small, 431);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_every_split(void **state)
{
    const char *b = "4;x=y\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks."
                    "\r\n0\r\nT: v\r\n\r\n";
    const char *want = "Wikipedia in \r\n\r\nchunks.";
    size_t len = strlen(b);

    /* Split in two at every position, then one byte at a time. */
    for (size_t cut = 0; cut <= len; cut++) {
        struct http_chunked c;
        struct sink s = {0};
        bool done = false;
        int status = 0;
        ssize_t n1, n2;

        http_chunked_init(&c);
        n1 = http_chunked_parse(&c, (const uint8_t *)b, cut, &lim, collect, &s,
                                &done, &status);
        assert_int_equal(n1, cut);
        assert_int_equal(done, cut == len);
        n2 = http_chunked_parse(&c, (const uint8_t *)b + cut, len - cut, &lim,
                                collect, &s, &done, &status);
        assert_int_equal(n2, len - cut);
        assert_true(done);
        assert_int_equal(s.len, strlen(want));
        assert_memory_equal(s.data, want, s.len);
    }
    chunked_ok(b, len, want, len);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_bad_hex(void **state)
{
    chunked_bad("g\r\nx\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("\r\nx\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("-1\r\nx\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("0x1\r\nx\r\n0\r\n\r\n", &lim, 400);
    chunked_bad(" 1\r\nx\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("1\nx\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("1\rx\r\n0\r\n\r\n", &lim, 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_missing_crlf(void **state)
{
    chunked_bad("3\r\nabcd\r\n0\r\n\r\n", &lim, 400);
    chunked_bad("3\r\nabc\n0\r\n\r\n", &lim, 400);
    chunked_bad("3\r\nabc\r0\r\n\r\n", &lim, 400);
    chunked_bad("3\r\nabc0\r\n\r\n", &lim, 400);
    chunked_bad("0\r\n\n", &lim, 400);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_overflow(void **state)
{
    const struct http_limits huge = {
        .max_header_bytes = 8192, .max_headers = 32, .max_body = UINT64_MAX};
    struct http_chunked c;
    bool done;
    int status = 0;

    /* Seventeen digits, even of leading zeros, are refused. */
    chunked_bad("00000000000000001\r\nx\r\n0\r\n\r\n", &huge, 400);
    /* A size of 2^48 or more is over any max_body moor takes (1 TiB):
     * 413 at the digit that gets there, even with no limit set. */
    chunked_bad("10000000000000000\r\n", &huge, 413);
    chunked_bad("1000000000000\r\n", &huge, 413);
    /* Just under 2^48 is read; with no body limit the data is awaited. */
    http_chunked_init(&c);
    assert_int_equal(http_chunked_parse(&c,
                                        (const uint8_t *)"0000ffffffffffff"
                                                         "\r\nab",
                                        20, &huge, NULL, NULL, &done, &status),
                     20);
    assert_false(done);
    /* A size line longer than 4 KiB (extensions) is refused. */
    {
        static char b[5000];
        memset(b, 'x', sizeof(b) - 1);
        memcpy(b, "1;", 2);
        chunked_bad(b, &lim, 400);
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_too_large(void **state)
{
    const struct http_limits small = {
        .max_header_bytes = 8192, .max_headers = 32, .max_body = 10};
    const char *ok = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    struct sink s;
    bool done;
    int status;

    chunked_bad("b\r\n", &small, 413);
    chunked_bad("5\r\nhello\r\n6\r\n", &small, 413);
    assert_int_equal(chunked_whole(ok, strlen(ok), &small, &s, &done, &status),
                     strlen(ok));
    assert_true(done);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_then_next_request(void **state)
{
    const char *s = "POST /c HTTP/1.1\r\nHost: h\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n"
                    "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    struct http_chunked c;
    struct sink sk = {0};
    bool done = false;
    int status = 0;
    ssize_t head, body;

    head = parse(s, &status);
    assert_true(head > 0);
    assert_true(req.chunked);
    http_chunked_init(&c);
    body = http_chunked_parse(&c, (const uint8_t *)s + head,
                              strlen(s) - (size_t)head, &lim, collect, &sk,
                              &done, &status);
    assert_true(done);
    assert_int_equal(body, strlen("3\r\nabc\r\n0\r\n\r\n"));
    assert_int_equal(sk.len, 3);
    /* Called again once done, it consumes nothing. */
    assert_int_equal(http_chunked_parse(&c, (const uint8_t *)s, 5, &lim,
                                        collect, &sk, &done, &status),
                     0);
    assert_true(done);
    assert_true(parse(s + head + body, &status) > 0);
    assert_true(str_eq(req.path, "/next"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_chunked_error_sticks(void **state)
{
    struct http_chunked c;
    bool done;
    int status = 0;

    http_chunked_init(&c);
    assert_true(http_chunked_parse(&c, (const uint8_t *)"z", 1, &lim, NULL,
                                   NULL, &done, &status) < 0);
    status = 0;
    assert_true(http_chunked_parse(&c, (const uint8_t *)"0\r\n\r\n", 5, &lim,
                                   NULL, NULL, &done, &status) < 0);
    assert_int_equal(status, 400);
    assert_false(done);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_all_fields),
        cmocka_unit_test(test_path_query),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_request_line_spacing),
        cmocka_unit_test(test_keep_alive_defaults),
        cmocka_unit_test(test_connection_header),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_all_methods),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_trickle),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_bare_lf_early),
        cmocka_unit_test(test_bare_cr),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_space_before_colon),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_ctl_in_value),
        cmocka_unit_test(test_content_length_rules),
        cmocka_unit_test(test_cl_and_te),
        cmocka_unit_test(test_transfer_encoding_rules),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_long_request_line),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_headers_cap),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_token_list),
        cmocka_unit_test(test_list_next),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_format_head),
        cmocka_unit_test(test_chunked_normal),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_bad_hex),
        cmocka_unit_test(test_chunked_missing_crlf),
        cmocka_unit_test(test_chunked_overflow),
        cmocka_unit_test(test_chunked_too_large),
        cmocka_unit_test(test_chunked_then_next_request),
        cmocka_unit_test(test_chunked_error_sticks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
