/*
 * fuzz_http_response.c - libFuzzer target for the HTTP/1.1 response
 * parser (src/http1_response.c, with the field-line code of src/http1.c).
 *
 * What it does: parses the input as a response head with small limits,
 * whole, split in two at a position derived from the input, and one byte
 * at a time; all three must agree, reason string included (the resume
 * hint and the early version check must not change the answer). Then the
 * body that follows is framed by its kind, for a request method the input
 * picks: a Content-Length body is bounded, a chunked body is decoded with
 * http_chunked_parse whole, split and byte by byte (same bytes, same
 * outcome), a close-delimited body is the rest of the input.
 *
 * Invariants checked: results point into the input, lengths and counts
 * respect the limits, the flags match the documented rules (no chunked
 * in HTTP/1.0 or with a Content-Length, no body for HEAD/1xx/204/304),
 * rejections are -EPROTO, -E2BIG or -EFBIG with a reason.
 *
 * Must not: allocate (the parser needs nothing) or keep state between
 * inputs beyond scratch buffers that each run overwrites.
 *
 * Build: scripts/fuzz.sh 60 http_response
 */
#include <errno.h>
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

/* Scratch: large, so static rather than on the stack. */
static struct http_response resp_whole, resp_other;

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

static void check_str(struct http_str s, const uint8_t *d, size_t n)
{
    const char *lo = (const char *)d;

    CHECK(s.p >= lo && s.p + s.len <= lo + n);
}

static bool bodiless(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* Everything a successful parse returned is within d[0..n) and obeys the
 * rules of http1.h. */
static void check_resp(const struct http_response *r, const uint8_t *d,
                       size_t n)
{
    CHECK(r->status >= 100 && r->status <= 599);
    CHECK(r->version_minor <= 1);
    CHECK(r->n_headers <= lim.max_headers);
    CHECK(!(r->chunked && r->has_length));
    CHECK(!(r->chunked && r->version_minor == 0));
    CHECK(!(r->chunked && (r->status < 200 || r->status == 204)));
    if (!r->has_length)
        CHECK(r->content_length == 0);
    if (r->has_length && !bodiless(r->status))
        CHECK(r->content_length <= lim.max_body);
    if (r->status < 200 || r->status == 204)
        CHECK(r->content_length == 0);
    check_str(r->reason, d, n);
    for (uint32_t i = 0; i < r->n_headers; i++) {
        check_str(r->headers[i].name, d, n);
        check_str(r->headers[i].value, d, n);
        CHECK(r->headers[i].name.len > 0);
    }
    if (r->n_headers > 0) {
        char name[64];
        uint32_t len = r->headers[0].name.len;
        if (len < sizeof(name)) {
            memcpy(name, r->headers[0].name.p, len);
            name[len] = '\0';
            CHECK(http_response_header(r, name) == &r->headers[0].value);
        }
    }
    if (r->version_minor == 0 && r->keep_alive) {
        const struct http_str *c = http_response_header(r, "connection");
        CHECK(c != NULL);
    }
}

static bool str_same(struct http_str a, struct http_str b)
{
    return a.p == b.p && a.len == b.len;
}

static void same_resp(const struct http_response *a,
                      const struct http_response *b)
{
    CHECK(a->status == b->status);
    CHECK(a->version_minor == b->version_minor);
    CHECK(str_same(a->reason, b->reason));
    CHECK(a->keep_alive == b->keep_alive);
    CHECK(a->chunked == b->chunked);
    CHECK(a->has_length == b->has_length);
    CHECK(a->content_length == b->content_length);
    CHECK(a->n_headers == b->n_headers);
    for (uint32_t i = 0; i < a->n_headers; i++) {
        CHECK(str_same(a->headers[i].name, b->headers[i].name));
        CHECK(str_same(a->headers[i].value, b->headers[i].value));
    }
}

/* Parses d[0..cut) and then, if that was incomplete, d[0..n). */
static ssize_t parse_split(const uint8_t *d, size_t n, size_t cut,
                           struct http_response *r, const char **why)
{
    uint32_t scan = 0;
    ssize_t k = http_parse_response(d, cut, &lim, &scan, r, why);

    if (k != 0)
        return k;
    CHECK(*why == NULL);
    CHECK(scan <= cut);
    return http_parse_response(d, n, &lim, &scan, r, why);
}

static ssize_t parse_trickle(const uint8_t *d, size_t n,
                             struct http_response *r, const char **why)
{
    uint32_t scan = 0;

    *why = NULL;
    for (size_t i = 1; i <= n; i++) {
        uint32_t before = scan;
        ssize_t k = http_parse_response(d, i, &lim, &scan, r, why);
        if (k != 0)
            return k;
        CHECK(*why == NULL);
        CHECK(scan >= before && scan <= i);
    }
    return 0;
}

static void compare_parse(ssize_t k, const char *why, ssize_t k2,
                          const char *why2)
{
    CHECK(k == k2);
    CHECK(why == why2); /* the same static string */
    if (k > 0)
        same_resp(&resp_whole, &resp_other);
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

/* The body that follows a head of k bytes, for the method m. */
static void fuzz_body(const uint8_t *d, size_t n, size_t k, size_t cut,
                      enum http_method m)
{
    enum http_body_kind kind = http_response_body_kind(&resp_whole, m);
    size_t rest = n - k;

    switch (kind) {
    case HTTP_BODY_NONE:
        CHECK(m == HTTP_HEAD || bodiless(resp_whole.status) ||
              (m == HTTP_CONNECT && resp_whole.status / 100 == 2));
        break;
    case HTTP_BODY_LENGTH:
        CHECK(resp_whole.has_length && !resp_whole.chunked);
        CHECK(resp_whole.content_length <= lim.max_body);
        break;
    case HTTP_BODY_CHUNKED:
        CHECK(resp_whole.chunked && resp_whole.version_minor == 1);
        fuzz_chunked(d + k, rest, rest ? cut % (rest + 1) : 0);
        break;
    case HTTP_BODY_CLOSE:
        CHECK(!resp_whole.has_length && !resp_whole.chunked);
        break;
    default:
        CHECK(!"unknown body kind");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static const enum http_method methods[] = {HTTP_GET, HTTP_HEAD, HTTP_POST,
                                               HTTP_CONNECT};
    size_t cut = n ? (size_t)(d[0] | d[n - 1] << 8) % (n + 1) : 0;
    enum http_method m = methods[n ? d[n - 1] % 4 : 0];
    const char *why = NULL, *why2 = NULL;
    ssize_t k, k2;

    k = parse_split(d, n, n, &resp_whole, &why);
    CHECK(k <= (ssize_t)n && k <= (ssize_t)lim.max_header_bytes);
    if (k < 0) {
        CHECK(k == -EPROTO || k == -E2BIG || k == -EFBIG);
        CHECK(why != NULL && why[0] != '\0');
    } else {
        CHECK(why == NULL);
    }
    if (k == 0)
        CHECK(n < lim.max_header_bytes);
    if (k > 0)
        check_resp(&resp_whole, d, (size_t)k);

    k2 = parse_split(d, n, cut, &resp_other, &why2);
    compare_parse(k, why, k2, why2);
    if (n <= TRICKLE_MAX) {
        k2 = parse_trickle(d, n, &resp_other, &why2);
        compare_parse(k, why, k2, why2);
    }

    if (k > 0)
        fuzz_body(d, n, (size_t)k, cut, m);
    return 0;
}
