/*
 * http1_response.c - strict HTTP/1.1 response head parser, for the HTTP
 * client (RFC 9112 sections 4, 5, 6; the rules are listed in http1.h).
 *
 * What it does: checks on every call that the input can still start with
 * "HTTP/1.0" or "HTTP/1.1" (garbage is refused after a few bytes, not at
 * max_header_bytes), finds the end of the head with the request parser's
 * resumable scan (trickled input costs O(n)), then parses the status line
 * and the fields (the request parser's field-line code) and decides the
 * framing: Content-Length, chunked, or until close.
 *
 * Invariants: every result points into the caller's buffer; no byte
 * outside in[0..len) is read; a rejection always comes with a static
 * *why; the same bytes give the same answer however they were split
 * across calls (the version prefix is checked before the scan on every
 * call, so an early refusal is the one a whole parse would give).
 *
 * Must not: make syscalls, allocate, keep mutable global state, or call
 * upward (docs/principles.md, rule 9: protocol layer).
 */
#include <errno.h>
#include <string.h>

#include "http1.h"
#include "http1_internal.h"
#include "util.h"

#define CR '\r'
#define LF '\n'

/* "HTTP/x.y" */
#define VERSION_LEN 8

/* True if s equals the string literal lit, ignoring case. */
#define STR_IS(s, lit) ascii_ci_equal((s).p, (s).len, (lit), sizeof(lit) - 1)

static const char BAD_STATUS_LINE[] = "bad status line";

/*
 * Checks the first min(len, 8) bytes against "HTTP/" DIGIT "." DIGIT, and
 * once all 8 are there, that the version is 1.0 or 1.1 (*minor gets it).
 * Return value: NULL (fine so far), or why not. A whole parse and any
 * split of it reach the same verdict: a byte that breaks the pattern is
 * reported as soon as it is seen, whatever follows.
 */
static const char *check_version(const uint8_t *in, size_t len, uint8_t *minor)
{
    static const char pat[] = "HTTP/d.d";
    size_t n = MIN(len, (size_t)VERSION_LEN);

    for (size_t i = 0; i < n; i++) {
        if (pat[i] == 'd' ? !ascii_is_digit(in[i]) : in[i] != (uint8_t)pat[i])
            return BAD_STATUS_LINE;
    }
    if (n < VERSION_LEN)
        return NULL;
    if (in[5] != '1' || in[7] > '1')
        return "unsupported HTTP version"; /* HTTP/2.0, HTTP/1.2, ... */
    *minor = (uint8_t)(in[7] - '0');
    return NULL;
}

/*
 * Parses the status line p[0..n) (without its CRLF):
 *   HTTP-version SP 3DIGIT SP [ reason-phrase ]
 * The version was checked by check_version. Return value: NULL or why.
 */
static const char *parse_status_line(const uint8_t *p, size_t n,
                                     struct http_response *r)
{
    if (n < VERSION_LEN + 4 || p[8] != ' ')
        return BAD_STATUS_LINE;
    for (size_t i = 9; i < 12; i++) {
        if (!ascii_is_digit(p[i]))
            return "bad status code";
    }
    if (p[9] < '1' || p[9] > '5')
        return "bad status code"; /* 100..599 (RFC 9110 15): a 6xx or
                                     above has no class to read it by */
    /* "HTTP/1.1 200 " is 13 bytes: the second SP is required (RFC 9112
     * 4), even when the reason is empty. */
    if (n < VERSION_LEN + 5 || p[12] != ' ')
        return BAD_STATUS_LINE;
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    for (size_t i = 13; i < n; i++) {
        if (!http1_is_value_char(p[i]))
            return "control character in reason phrase";
    }
    r->reason.p = (const char *)p + 13;
    r->reason.len = (uint32_t)(n - 13);
    return NULL;
}

/* What the fields say about framing and the connection. */
struct response_facts {
    struct http_response *r;
    bool cl_seen;
    bool cl_overflow; /* more than 2^64-1 */
    struct http1_te te;
    bool conn_close;
    bool conn_keep_alive;
};

/* Notes what one field means; return value 0, or EPROTO with *why. */
static int field_apply(void *ctx, const struct http_header *h, const char **why)
{
    struct response_facts *f = ctx;

    if (h->name.len == 10 && STR_IS(h->name, "connection")) {
        f->conn_close |= http_token_list_has(h->value, "close");
        f->conn_keep_alive |= http_token_list_has(h->value, "keep-alive");
    } else if (h->name.len == 14 && STR_IS(h->name, "content-length")) {
        /* A second one is refused even with the same value, as for
         * requests (RFC 9112 6.3 allows merging; we do not). */
        if (f->cl_seen) {
            *why = "duplicate Content-Length";
            return EPROTO;
        }
        f->cl_seen = true;
        *why = http1_content_length(h->value, &f->r->content_length,
                                    &f->cl_overflow);
        if (*why)
            return EPROTO;
    } else if (h->name.len == 17 && STR_IS(h->name, "transfer-encoding")) {
        *why = http1_transfer_encoding(h->value, &f->te);
        if (*why)
            return EPROTO;
    }
    return 0;
}

/* A status whose response never has a body (RFC 9112 6.3 item 1). */
static bool status_bodiless(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* The checks that need every field. Return value 0 or -errno with *why. */
static int check_facts(const struct response_facts *f, struct http_response *r,
                       const struct http_limits *lim, const char **why)
{
    /* RFC 9110 8.6 and RFC 9112 6.1: never in a 1xx or 204. */
    bool no_framing = r->status < 200 || r->status == 204;

    if (f->te.seen) {
        const char *w = NULL;
        if (f->cl_seen)
            w = "both Content-Length and Transfer-Encoding";
        else if (r->version_minor == 0)
            w = "Transfer-Encoding in an HTTP/1.0 response";
        else if (f->te.unknown || !f->te.chunked)
            w = "unsupported transfer coding";
        else if (no_framing)
            w = "Transfer-Encoding in a 1xx or 204 response";
        if (w) {
            *why = w;
            return -EPROTO;
        }
        r->chunked = true;
    }
    if (f->cl_seen) {
        if (f->cl_overflow) {
            *why = "Content-Length over 2^64-1";
            return -EFBIG;
        }
        if (no_framing && r->content_length != 0) {
            *why = "Content-Length in a 1xx or 204 response";
            return -EPROTO;
        }
        if (!status_bodiless(r->status) && r->content_length > lim->max_body) {
            *why = "Content-Length over max_body";
            return -EFBIG;
        }
        r->has_length = true;
    }
    if (r->version_minor == 1)
        r->keep_alive = !f->conn_close;
    else
        r->keep_alive = f->conn_keep_alive && !f->conn_close;
    return 0;
}

/*
 * Parses the complete head in[0..end), which ends in CRLFCRLF, holds no
 * earlier one and has no bare CR or LF. Return value 0 or -errno, *why.
 */
static int parse_head(const uint8_t *in, size_t end,
                      const struct http_limits *lim, struct http_response *r,
                      const char **why)
{
    struct response_facts f = {.r = r};
    uint32_t max_fields = MIN(lim->max_headers, HTTP_MAX_HEADERS_CAP);
    const uint8_t *cr = memchr(in, CR, end); /* found: the head ends in one */
    int st;

    r->status = 0;
    r->reason.p = (const char *)in;
    r->reason.len = 0;
    r->keep_alive = false;
    r->chunked = false;
    r->has_length = false;
    r->content_length = 0;
    r->n_headers = 0;
    *why = parse_status_line(in, (size_t)(cr - in), r);
    if (*why)
        return -EPROTO;
    st = http1_parse_fields(in, (size_t)(cr - in) + 2, end, r->headers,
                            max_fields, &r->n_headers, field_apply, &f, why);
    if (st == HTTP1_FIELD_TOO_MANY) {
        *why = "too many header fields";
        return -E2BIG;
    }
    if (st)
        return -EPROTO; /* HTTP1_FIELD_BAD, or EPROTO from field_apply */
    return check_facts(&f, r, lim, why);
}

ssize_t http_parse_response(const uint8_t *in, size_t len,
                            const struct http_limits *lim, uint32_t *scan,
                            struct http_response *resp, const char **why)
{
    size_t max = lim->max_header_bytes;
    size_t to = MIN(len, max);
    size_t from = MIN((size_t)*scan, to);
    ssize_t end;
    int st;

    *why = NULL;
    if (len == 0)
        return 0;
    *why = check_version(in, len, &resp->version_minor);
    if (*why)
        return -EPROTO;
    /* Back up 3 bytes: CRLFCRLF may straddle the previous call's end. */
    from = from >= 3 ? from - 3 : 0;
    end = http1_find_block_end(in, from, to, why);
    if (end < 0)
        return -EPROTO;
    if (end == 0) {
        /* Any head still to end would end past max: refuse it now. */
        if (len >= max) {
            *why = "header section too large";
            return -E2BIG;
        }
        *scan = (uint32_t)to;
        return 0;
    }
    st = parse_head(in, (size_t)end, lim, resp, why);
    if (st)
        return st;
    return end;
}

enum http_body_kind http_response_body_kind(const struct http_response *r,
                                            enum http_method req)
{
    /* RFC 9112 6.3: items 1 and 2, then 4 (chunked), 6 (length), 8. */
    if (req == HTTP_HEAD || status_bodiless(r->status))
        return HTTP_BODY_NONE;
    if (req == HTTP_CONNECT && r->status / 100 == 2)
        return HTTP_BODY_NONE; /* the connection becomes a tunnel */
    if (r->chunked)
        return HTTP_BODY_CHUNKED;
    if (r->has_length)
        return HTTP_BODY_LENGTH;
    return HTTP_BODY_CLOSE;
}

const struct http_str *http_response_header(const struct http_response *r,
                                            const char *name)
{
    return http1_header_find(r->headers, r->n_headers, name);
}
