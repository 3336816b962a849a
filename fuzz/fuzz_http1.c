/*
 * fuzz_http1.c - libFuzzer target for the HTTP/1.1 parser (src/http1.c).
 *
 * What it does: parses the input as a request header block with small
 * limits, whole, split in two at a position derived from the input, and
 * one byte at a time; all three must agree (the resume hint must not
 * change the answer). When a chunked body follows, it is decoded whole,
 * split and byte by byte, and the three must deliver the same bytes with
 * the same outcome. The raw input is also decoded as a chunked body, so
 * the decoder is exercised without needing a valid header block first.
 *
 * Invariants checked: results point into the input (or at the static "/"
 * of an absolute-form target), lengths and counts respect the limits,
 * rejections carry one of the documented statuses.
 *
 * Must not: allocate through mem.c (the parser needs none) or keep state
 * between inputs beyond scratch buffers that each run overwrites.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_http1.c
 *        src/http1.c   (or scripts/fuzz.sh)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "check.h"

#define MAX_BODY 4096
/* Byte-at-a-time runs are quadratic in the worst case; keep them small. */
#define TRICKLE_MAX 2048

static const struct http_limits lim = {
    .max_header_bytes = 512,
    .max_headers = 16,
    .max_body = MAX_BODY,
};

/* Scratch: large, so static rather than on the stack. Overwritten by
 * every run; nothing carries from one input to the next. */
static struct http_request req_whole, req_other;

struct body {
    ssize_t n;
    int status;
    bool done;
    size_t len;
    uint8_t data[MAX_BODY];
};

static struct body body_whole, body_other;

static void collect(void *arg, const uint8_t *p, size_t n)
{
    struct body *b = arg;

    CHECK(n > 0);
    CHECK(b->len + n <= sizeof(b->data));
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static bool status_ok(int st)
{
    return st == 400 || st == 413 || st == 414 || st == 431 || st == 501 ||
           st == 505;
}

static void check_str(struct http_str s, const uint8_t *d, size_t n)
{
    const char *lo = (const char *)d;

    CHECK(s.p >= lo && s.p + s.len <= lo + n);
}

/* Everything a successful parse returned is within in[0..n). */
static void check_req(const struct http_request *r, const uint8_t *d, size_t n)
{
    CHECK(r->method != HTTP_UNKNOWN);
    CHECK(r->version_minor <= 1);
    CHECK(r->n_headers <= lim.max_headers);
    CHECK(r->content_length <= lim.max_body);
    CHECK(r->has_body == (r->chunked || r->content_length > 0));
    CHECK(!(r->chunked && r->version_minor == 0));
    check_str(r->method_str, d, n);
    check_str(r->target, d, n);
    if (!(r->path.len == 1 && r->path.p[0] == '/'))
        check_str(r->path, d, n);
    check_str(r->query, d, n);
    check_str(r->host, d, n);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        check_str(r->headers[i].name, d, n);
        check_str(r->headers[i].value, d, n);
        CHECK(r->headers[i].name.len > 0);
        (void)http_token_list_has(r->headers[i].value, "close");
    }
    if (r->version_minor == 1)
        CHECK(http_header_get(r, "host") != NULL);
}

static bool str_same(struct http_str a, struct http_str b)
{
    return a.p == b.p && a.len == b.len;
}

static void same_req(const struct http_request *a, const struct http_request *b)
{
    CHECK(a->method == b->method);
    CHECK(str_same(a->method_str, b->method_str));
    CHECK(str_same(a->target, b->target));
    CHECK(a->path.len == b->path.len &&
          memcmp(a->path.p, b->path.p, a->path.len) == 0);
    CHECK(str_same(a->query, b->query));
    CHECK(str_same(a->host, b->host));
    CHECK(a->version_minor == b->version_minor);
    CHECK(a->keep_alive == b->keep_alive);
    CHECK(a->chunked == b->chunked);
    CHECK(a->has_body == b->has_body);
    CHECK(a->upgrade == b->upgrade);
    CHECK(a->expect_continue == b->expect_continue);
    CHECK(a->content_length == b->content_length);
    CHECK(a->n_headers == b->n_headers);
    for (uint32_t i = 0; i < a->n_headers; i++) {
        CHECK(str_same(a->headers[i].name, b->headers[i].name));
        CHECK(str_same(a->headers[i].value, b->headers[i].value));
    }
}

/* Parses d[0..cut) and then, if that was incomplete, d[0..n). */
static ssize_t parse_split(const uint8_t *d, size_t n, size_t cut,
                           struct http_request *r, int *status)
{
    uint32_t scan = 0;
    ssize_t k = http_parse_request(d, cut, &lim, &scan, r, status);

    if (k != 0)
        return k;
    CHECK(scan <= cut);
    return http_parse_request(d, n, &lim, &scan, r, status);
}

static ssize_t parse_trickle(const uint8_t *d, size_t n, struct http_request *r,
                             int *status)
{
    uint32_t scan = 0;

    for (size_t i = 1; i <= n; i++) {
        uint32_t before = scan;
        ssize_t k = http_parse_request(d, i, &lim, &scan, r, status);
        if (k != 0)
            return k;
        CHECK(scan >= before && scan <= i);
    }
    return 0;
}

/* The split or trickled parse (into req_other) agrees with the whole. */
static void compare_parse(ssize_t k, int st, ssize_t k2, int st2)
{
    CHECK(k == k2);
    if (k < 0)
        CHECK(st == st2);
    else if (k > 0)
        same_req(&req_whole, &req_other);
}

/* Decodes d[0..cut) then d[cut..n) as a chunked body into b. */
static void chunked_split(const uint8_t *d, size_t n, size_t cut,
                          struct body *b)
{
    struct http_chunked c;
    ssize_t k;

    http_chunked_init(&c);
    b->len = 0;
    b->status = 0;
    b->done = false;
    k = http_chunked_parse(&c, d, cut, &lim, collect, b, &b->done, &b->status);
    if (k < 0 || b->done) {
        b->n = k;
        return;
    }
    CHECK((size_t)k == cut);
    k = http_chunked_parse(&c, d + cut, n - cut, &lim, collect, b, &b->done,
                           &b->status);
    b->n = k < 0 ? k : (ssize_t)cut + k;
}

static void chunked_trickle(const uint8_t *d, size_t n, struct body *b)
{
    struct http_chunked c;

    http_chunked_init(&c);
    b->len = 0;
    b->status = 0;
    b->done = false;
    b->n = 0;
    for (size_t i = 0; i < n && !b->done; i++) {
        ssize_t k = http_chunked_parse(&c, d + i, 1, &lim, collect, b, &b->done,
                                       &b->status);
        if (k < 0) {
            b->n = k;
            return;
        }
        CHECK(k == 1);
        b->n++;
    }
}

static void same_body(const struct body *a, const struct body *b)
{
    CHECK(a->n == b->n);
    CHECK(a->done == b->done);
    if (a->n < 0)
        CHECK(a->status == b->status);
    CHECK(a->len == b->len);
    CHECK(memcmp(a->data, b->data, a->len) == 0);
}

static void fuzz_chunked(const uint8_t *d, size_t n, size_t cut)
{
    chunked_split(d, n, n, &body_whole);
    if (body_whole.n < 0)
        CHECK(body_whole.status == 400 || body_whole.status == 413 ||
              body_whole.status == 431);
    else
        CHECK((size_t)body_whole.n <= n);
    if (body_whole.n >= 0 && !body_whole.done)
        CHECK((size_t)body_whole.n == n);
    CHECK(body_whole.len <= MAX_BODY);
    chunked_split(d, n, cut, &body_other);
    same_body(&body_whole, &body_other);
    if (n <= TRICKLE_MAX) {
        chunked_trickle(d, n, &body_other);
        same_body(&body_whole, &body_other);
    }
}

static void fuzz_format(const uint8_t *d, size_t n)
{
    char out[96];
    int status = n >= 2 ? 100 + (d[0] << 8 | d[1]) % 500 : 200;
    size_t cap = n >= 3 ? d[2] % sizeof(out) : sizeof(out);
    ssize_t k = http_format_head(out, cap, status, (long long)n - 3, n & 1,
                                 n & 2 ? "X-A: b\r\n" : NULL);

    if (k >= 0)
        CHECK((size_t)k < cap && strlen(out) == (size_t)k);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    size_t cut = n ? (size_t)(d[0] | d[n - 1] << 8) % (n + 1) : 0;
    int st = 0, st2 = 0;
    ssize_t k, k2;

    k = parse_split(d, n, n, &req_whole, &st);
    CHECK(k <= (ssize_t)n && k <= (ssize_t)lim.max_header_bytes);
    if (k < 0)
        CHECK(status_ok(st));
    if (k == 0)
        CHECK(n < lim.max_header_bytes);
    if (k > 0)
        check_req(&req_whole, d, (size_t)k);

    k2 = parse_split(d, n, cut, &req_other, &st2);
    compare_parse(k, st, k2, st2);
    if (n <= TRICKLE_MAX) {
        k2 = parse_trickle(d, n, &req_other, &st2);
        compare_parse(k, st, k2, st2);
    }

    if (k > 0 && req_whole.chunked) {
        size_t rest = n - (size_t)k;
        fuzz_chunked(d + k, rest, rest ? cut % (rest + 1) : 0);
    }
    fuzz_chunked(d, n, cut);
    fuzz_format(d, n);
    return 0;
}
