/*
 * http1.c - strict HTTP/1.1 request parser, chunked body decoder and
 * response head formatter.
 *
 * What it does: finds the end of a request header block (resuming where
 * the previous call stopped, so trickled input costs O(n)), then parses
 * the request line and the fields in one pass, applying every strictness
 * rule listed in http1.h, and reports the framing (Content-Length or
 * chunked), keep-alive, upgrade and 100-continue. The chunked decoder is a
 * byte-driven state machine that hands body spans to a callback.
 *
 * Invariants: every result points into the caller's buffer (the one
 * exception is the static "/" used as the path of an absolute-form target
 * that has none); no byte outside in[0..len) is ever read; a rejection
 * always comes with the status to answer with; every line and count is
 * bounded by a limit before it can grow.
 *
 * Must not: make syscalls, allocate, keep mutable global state (only const
 * tables live here), or call upward into conn/server code. Why our own
 * parser rather than http-parser: see docs/http1.md.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http1.h"
#include "http1_internal.h"
#include "util.h"

#define CR '\r'
#define LF '\n'

/* Bytes checked for a method token before the header block is complete. */
#define METHOD_PEEK 16
/* Cap on a chunk size line (size, extensions, CRLF), per http1.h. */
#define CHUNK_LINE_MAX 4096
/* A chunk size of more hex digits than this is rejected (no overflow). */
#define CHUNK_SIZE_DIGITS 16

/* ---- character classes (RFC 9110 5.6.2, 5.5; RFC 3986) ----------------- */

/* tchar and field value bytes: http1_is_tchar, http1_is_value_char in
 * http1_internal.h (shared with the response parser). */
#define is_tchar http1_is_tchar
#define is_value_char http1_is_value_char

/* A request-target byte: visible ASCII; no fragment ('#') is ever sent. */
static bool is_target_char(uint8_t c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

/* A byte of uri-host [":" port]: unreserved, sub-delims, ':', '[', ']' and
 * '%' (pct-encoding, IPv6 zone). No '@': userinfo is refused. */
static bool is_host_char(uint8_t c)
{
    return ascii_is_alnum(c) || (c != 0 && strchr("-._~!$&'()*+,;=:[]%", c));
}

/* True if s equals the string literal lit, ignoring case. */
#define STR_IS(s, lit) ascii_ci_equal((s).p, (s).len, (lit), sizeof(lit) - 1)

static struct http_str mkstr(const uint8_t *p, size_t n)
{
    struct http_str s = {(const char *)p, (uint32_t)n};
    return s;
}

/* ---- lists --------------------------------------------------------------- */

bool http_list_next(struct http_str v, uint32_t *pos, struct http_str *el)
{
    uint32_t a = *pos;
    uint32_t b;

    if (a >= v.len)
        return false;
    b = a;
    while (b < v.len && v.p[b] != ',')
        b++;
    *pos = b + 1;
    while (a < b && ascii_is_ows((uint8_t)v.p[a]))
        a++;
    while (b > a && ascii_is_ows((uint8_t)v.p[b - 1]))
        b--;
    el->p = v.p + a;
    el->len = b - a;
    return true;
}

bool http_token_list_has(struct http_str v, const char *tok)
{
    size_t tlen = strlen(tok);
    struct http_str el;
    uint32_t pos = 0;

    while (http_list_next(v, &pos, &el)) {
        if (ascii_ci_equal(el.p, el.len, tok, tlen))
            return true;
    }
    return false;
}

const struct http_str *http1_header_find(const struct http_header *hdrs,
                                         uint32_t n, const char *name)
{
    size_t len = strlen(name);

    for (uint32_t i = 0; i < n; i++) {
        if (ascii_ci_equal(hdrs[i].name.p, hdrs[i].name.len, name, len))
            return &hdrs[i].value;
    }
    return NULL;
}

const struct http_str *http_header_get(const struct http_request *req,
                                       const char *name)
{
    return http1_header_find(req->headers, req->n_headers, name);
}

/* ---- methods ------------------------------------------------------------- */

static const char *const method_names[] = {
    [HTTP_UNKNOWN] = "UNKNOWN", [HTTP_GET] = "GET",
    [HTTP_HEAD] = "HEAD",       [HTTP_POST] = "POST",
    [HTTP_PUT] = "PUT",         [HTTP_DELETE] = "DELETE",
    [HTTP_OPTIONS] = "OPTIONS", [HTTP_PATCH] = "PATCH",
    [HTTP_CONNECT] = "CONNECT", [HTTP_TRACE] = "TRACE",
};

const char *http_method_name(enum http_method m)
{
    if ((unsigned)m >= ARRAY_SIZE(method_names))
        return method_names[HTTP_UNKNOWN];
    return method_names[m];
}

/* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
static enum http_method method_lookup(struct http_str s)
{
    for (unsigned m = HTTP_GET; m < ARRAY_SIZE(method_names); m++) {
        if (strlen(method_names[m]) == s.len &&
            memcmp(method_names[m], s.p, s.len) == 0)
            return (enum http_method)m;
    }
    return HTTP_UNKNOWN;
}

/* ---- request line -------------------------------------------------------- */

/* Splits an origin-form path at the first '?'. */
static void split_query(const uint8_t *t, size_t n, struct http_request *req)
{
    const uint8_t *q = memchr(t, '?', n);

    if (!q) {
        req->path = mkstr(t, n);
        req->query = mkstr(t + n, 0);
        return;
    }
    req->path = mkstr(t, (size_t)(q - t));
    req->query = mkstr(q + 1, n - (size_t)(q - t) - 1);
}

static bool host_valid(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_host_char(p[i]))
            return false;
    }
    return true;
}

/* Skips "http://" or "https://" (any case); returns 0 if neither. */
static size_t scheme_len(const uint8_t *t, size_t n)
{
    static const char http[] = "http://";
    static const char https[] = "https://";

    if (n >= sizeof(http) - 1 &&
        ascii_ci_equal((const char *)t, sizeof(http) - 1, http,
                       sizeof(http) - 1))
        return sizeof(http) - 1;
    if (n >= sizeof(https) - 1 &&
        ascii_ci_equal((const char *)t, sizeof(https) - 1, https,
                       sizeof(https) - 1))
        return sizeof(https) - 1;
    return 0;
}

/*
 * Classifies the request-target t[0..n) (RFC 9112 3.2) and fills path and
 * query; *authority gets the host of an absolute- or authority-form target
 * (it overrides Host, RFC 9112 3.2.2). Return value: 0 or 400.
 */
static int parse_target(const uint8_t *t, size_t n, struct http_request *req,
                        struct http_str *authority)
{
    size_t s, a;

    if (req->method == HTTP_CONNECT) {
        /* authority-form: uri-host ":" port, and nothing else. */
        const uint8_t *colon = t + n;
        while (colon > t && colon[-1] != ':')
            colon--;
        if (colon == t || colon == t + n || colon - 1 == t || !host_valid(t, n))
            return 400;
        for (const uint8_t *d = colon; d < t + n; d++) {
            if (!ascii_is_digit(*d))
                return 400;
        }
        *authority = mkstr(t, n);
        req->path = mkstr(t + n, 0);
        req->query = mkstr(t + n, 0);
        return 0;
    }
    if (t[0] == '/') {
        split_query(t, n, req);
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        /* asterisk-form is for OPTIONS only; its path is "*". */
        if (req->method != HTTP_OPTIONS)
            return 400;
        split_query(t, n, req);
        return 0;
    }
    s = scheme_len(t, n);
    if (s == 0)
        return 400;
    a = s;
    while (a < n && t[a] != '/' && t[a] != '?')
        a++;
    if (a == s || !host_valid(t + s, a - s))
        return 400;
    *authority = mkstr(t + s, a - s);
    if (a < n && t[a] == '/') {
        split_query(t + a, n - a, req);
    } else {
        /* "http://h" or "http://h?q": the path is "/" (RFC 9112 3.2.1),
         * which the buffer does not hold; a static one stands in. */
        req->path.p = "/";
        req->path.len = 1;
        req->query = a < n ? mkstr(t + a + 1, n - a - 1) : mkstr(t + n, 0);
    }
    return 0;
}

/* Parses "HTTP/x.y" exactly. Return value: 0, 505 or 400. */
static int parse_version(const uint8_t *v, size_t n, uint8_t *minor)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !ascii_is_digit(v[5]) ||
        v[6] != '.' || !ascii_is_digit(v[7]))
        return 400;
    if (v[5] != '1' || v[7] > '1')
        return 505;
    *minor = (uint8_t)(v[7] - '0');
    return 0;
}

/*
 * Parses the request line p[0..n) (without its CRLF):
 *   method SP request-target SP HTTP-version
 * with exactly one SP between the parts. Return value: 0 or the status.
 */
static int parse_request_line(const uint8_t *p, size_t n,
                              struct http_request *req,
                              struct http_str *authority)
{
    size_t i = 0, t0, t1;
    int st;

    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return 400;
    req->method_str = mkstr(p, i);
    t0 = ++i;
    while (i < n && p[i] != ' ') {
        if (!is_target_char(p[i]))
            return 400;
        i++;
    }
    if (i == t0 || i == n)
        return 400;
    t1 = i++;
    st = parse_version(p + i, n - i, &req->version_minor);
    if (st)
        return st;
    req->method = method_lookup(req->method_str);
    if (req->method == HTTP_UNKNOWN)
        return 501;
    req->target = mkstr(p + t0, t1 - t0);
    return parse_target(p + t0, t1 - t0, req, authority);
}

/* ---- fields -------------------------------------------------------------- */

/* What the fields say about framing and the connection; checked once all
 * fields are in. */
struct field_facts {
    uint32_t n_host;
    bool cl_seen;
    bool cl_overflow; /* more than 2^64-1: certainly too large */
    struct http1_te te;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool upgrade_hdr;
};

const char *http1_content_length(struct http_str v, uint64_t *out,
                                 bool *overflow)
{
    uint64_t n = 0;

    if (v.len == 0)
        return "empty Content-Length";
    for (uint32_t i = 0; i < v.len; i++) {
        uint8_t d = (uint8_t)v.p[i];
        if (!ascii_is_digit(d))
            return "bad Content-Length";
        if (n > (UINT64_MAX - (d - '0')) / 10)
            *overflow = true;
        else
            n = n * 10 + (d - '0');
    }
    *out = n;
    return NULL;
}

/* Content-Length: 1*DIGIT, one value (a list "5, 5" is refused too). */
static int field_content_length(struct http_str v, struct http_request *req,
                                struct field_facts *f)
{
    if (f->cl_seen)
        return 400;
    f->cl_seen = true;
    if (http1_content_length(v, &req->content_length, &f->cl_overflow))
        return 400;
    return 0;
}

const char *http1_transfer_encoding(struct http_str v, struct http1_te *te)
{
    struct http_str el;
    uint32_t pos = 0;
    bool any = false;

    te->seen = true;
    while (http_list_next(v, &pos, &el)) {
        if (el.len == 0)
            continue; /* empty list elements are ignored (RFC 9110 5.6.1) */
        for (uint32_t i = 0; i < el.len; i++) {
            if (!is_tchar((uint8_t)el.p[i]))
                return "bad transfer coding";
        }
        if (te->chunked)
            return STR_IS(el, "chunked") ? "chunked applied twice"
                                         : "chunked is not the last coding";
        if (STR_IS(el, "chunked"))
            te->chunked = true;
        else
            te->unknown = true;
        any = true;
    }
    return any ? NULL : "empty Transfer-Encoding";
}

/*
 * Transfer-Encoding: a list of codings, possibly over several fields.
 * "chunked" must come last and only once: anything after it (another
 * chunked included) is 400 at once. Unknown codings are remembered for a
 * 501 once the whole block is known to be well-formed.
 */
static int field_transfer_encoding(struct http_str v, struct field_facts *f)
{
    return http1_transfer_encoding(v, &f->te) ? 400 : 0;
}

/* The request and its facts, for field_apply. */
struct request_ctx {
    struct http_request *req;
    struct field_facts *f;
};

/* Notes what a field means for the request; return value 0 or a status. */
static int field_apply(void *ctx, const struct http_header *h, const char **why)
{
    struct http_request *req = ((struct request_ctx *)ctx)->req;
    struct field_facts *f = ((struct request_ctx *)ctx)->f;

    switch (h->name.len) {
    case 4:
        if (STR_IS(h->name, "host")) {
            if (!host_valid((const uint8_t *)h->value.p, h->value.len))
                return 400;
            f->n_host++;
            req->host = h->value;
        }
        break;
    case 6:
        if (STR_IS(h->name, "expect") && STR_IS(h->value, "100-continue"))
            req->expect_continue = true;
        break;
    case 7:
        if (STR_IS(h->name, "upgrade"))
            f->upgrade_hdr = true;
        break;
    case 10:
        if (STR_IS(h->name, "connection")) {
            f->conn_close |= http_token_list_has(h->value, "close");
            f->conn_keep_alive |= http_token_list_has(h->value, "keep-alive");
            f->conn_upgrade |= http_token_list_has(h->value, "upgrade");
        }
        break;
    case 14:
        if (STR_IS(h->name, "content-length"))
            return field_content_length(h->value, req, f);
        break;
    case 17:
        if (STR_IS(h->name, "transfer-encoding"))
            return field_transfer_encoding(h->value, f);
        break;
    default:
        break;
    }
    return 0;
}

/*
 * Parses one field line p[0..n) (without its CRLF):
 *   field-name ":" OWS field-value OWS
 * Return value: NULL, or why the line is refused.
 */
static const char *parse_field(const uint8_t *p, size_t n,
                               struct http_header *h)
{
    size_t i = 0, a, b;

    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 && n > 0 && ascii_is_ows(p[0]))
        return "obs-fold in header"; /* RFC 9112 5.2 */
    if (i == 0)
        return "bad field name";
    if (i < n && ascii_is_ows(p[i]))
        return "whitespace before ':'";
    if (i == n || p[i] != ':')
        return "bad field name";
    h->name = mkstr(p, i);
    a = i + 1;
    b = n;
    while (a < b && ascii_is_ows(p[a]))
        a++;
    while (b > a && ascii_is_ows(p[b - 1]))
        b--;
    for (size_t k = a; k < b; k++) {
        if (!is_value_char(p[k]))
            return "control character in field value";
    }
    h->value = mkstr(p + a, b - a);
    return NULL;
}

int http1_parse_fields(const uint8_t *in, size_t pos, size_t end,
                       struct http_header *hdrs, uint32_t max, uint32_t *n,
                       http1_field_fn *apply, void *ctx, const char **why)
{
    *n = 0;
    while (pos < end - 2) {
        const uint8_t *cr = memchr(in + pos, CR, end - pos);
        struct http_header *h;
        int st;
        if (cr[1] != LF) {
            *why = "bare CR in header";
            return HTTP1_FIELD_BAD;
        }
        if (*n == max)
            return HTTP1_FIELD_TOO_MANY;
        h = &hdrs[*n];
        *why = parse_field(in + pos, (size_t)(cr - in) - pos, h);
        if (*why)
            return HTTP1_FIELD_BAD;
        (*n)++;
        st = apply(ctx, h, why);
        if (st)
            return st;
        pos = (size_t)(cr - in) + 2;
    }
    return 0;
}

/* The checks that need every field: Host, framing, body size. */
static int check_facts(const struct field_facts *f, struct http_request *req,
                       const struct http_limits *lim)
{
    bool v11 = req->version_minor == 1;

    if (f->n_host > 1 || (v11 && f->n_host == 0))
        return 400;
    if (f->te.seen) {
        if (!v11 || f->cl_seen)
            return 400;
        if (f->te.unknown)
            return 501;
        if (!f->te.chunked)
            return 400;
        req->chunked = true;
    }
    if (f->cl_seen && (f->cl_overflow || req->content_length > lim->max_body))
        return 413;
    req->has_body = req->chunked || req->content_length > 0;
    if (v11)
        req->keep_alive = !f->conn_close;
    else
        req->keep_alive = f->conn_keep_alive && !f->conn_close;
    /* An HTTP/1.0 Upgrade or Expect is ignored (RFC 9110 7.8, 10.1.1). */
    req->upgrade = v11 && f->conn_upgrade && f->upgrade_hdr;
    if (!v11)
        req->expect_continue = false;
    return 0;
}

/*
 * Parses the complete header block in[0..end), which ends in CRLFCRLF and
 * holds no earlier CRLFCRLF. Return value: 0 or the status to reject with.
 */
static int parse_block(const uint8_t *in, size_t end,
                       const struct http_limits *lim, struct http_request *req)
{
    struct field_facts f = {0};
    struct request_ctx ctx = {req, &f};
    struct http_str authority = {NULL, 0};
    uint32_t max_fields = MIN(lim->max_headers, HTTP_MAX_HEADERS_CAP);
    const uint8_t *cr = memchr(in, CR, end);
    const char *why = NULL;
    size_t pos;
    int st;

    req->n_headers = 0;
    req->content_length = 0;
    req->chunked = false;
    req->expect_continue = false;
    req->host = mkstr(in, 0);
    /* The block ends in CRLFCRLF, so every memchr below finds a CR. */
    if (cr[1] != LF)
        return 400;
    st = parse_request_line(in, (size_t)(cr - in), req, &authority);
    if (st)
        return st;
    pos = (size_t)(cr - in) + 2;
    st = http1_parse_fields(in, pos, end, req->headers, max_fields,
                            &req->n_headers, field_apply, &ctx, &why);
    if (st == HTTP1_FIELD_TOO_MANY)
        return 431;
    if (st)
        return st == HTTP1_FIELD_BAD ? 400 : st;
    st = check_facts(&f, req, lim);
    if (st)
        return st;
    if (authority.p)
        req->host = authority;
    return 0;
}

/* ---- the header block ---------------------------------------------------- */

/* Described in http1_internal.h; the request and response parsers share
 * it. */
ssize_t http1_find_block_end(const uint8_t *in, size_t from, size_t to,
                             const char **why)
{
    for (size_t i = from; i < to; i++) {
        uint8_t c = in[i];
        if (c == LF) {
            if (i == 0 || in[i - 1] != CR) {
                *why = "bare LF in header";
                return -1;
            }
            if (i >= 3 && in[i - 2] == LF && in[i - 3] == CR)
                return (ssize_t)(i + 1);
        } else if (c == CR && i + 1 < to && in[i + 1] != LF) {
            *why = "bare CR in header";
            return -1;
        }
    }
    return 0;
}

/* True unless the bytes seen so far already cannot start a method token.
 * Only the first METHOD_PEEK bytes are looked at, so it stays O(1). */
static bool method_prefix_ok(const uint8_t *in, size_t len)
{
    size_t n = MIN(len, (size_t)METHOD_PEEK);

    for (size_t i = 0; i < n; i++) {
        if (in[i] == ' ')
            return i > 0;
        if (!is_tchar(in[i]))
            return false;
    }
    return true;
}

static ssize_t reject(int *status, int code)
{
    *status = code;
    return -1;
}

ssize_t http_parse_request(const uint8_t *in, size_t len,
                           const struct http_limits *lim, uint32_t *scan,
                           struct http_request *req, int *status)
{
    size_t max = lim->max_header_bytes;
    size_t to = MIN(len, max);
    size_t from = MIN((size_t)*scan, to);
    const char *why;
    ssize_t end;
    int st;

    if (len == 0)
        return 0;
    if (!method_prefix_ok(in, len))
        return reject(status, 400);
    /* Back up 3 bytes: CRLFCRLF may straddle the previous call's end. */
    from = from >= 3 ? from - 3 : 0;
    end = http1_find_block_end(in, from, to, &why);
    if (end < 0)
        return reject(status, 400);
    if (end == 0) {
        /* Any block still to end would end past max: refuse it now. The
         * request line alone is too long if no LF ends it within max. */
        if (len >= max)
            return reject(status, memchr(in, LF, to) ? 431 : 414);
        *scan = (uint32_t)to;
        return 0;
    }
    st = parse_block(in, (size_t)end, lim, req);
    if (st)
        return reject(status, st);
    return end;
}

/* ---- chunked bodies ------------------------------------------------------ */

enum chunk_state {
    CH_SIZE = 0,  /* the first hex digit of a size line */
    CH_SIZE_MORE, /* more digits, BWS, ';' or CR */
    CH_SIZE_BWS,  /* whitespace after the size: only ';' may follow */
    CH_EXT,       /* chunk-ext, skipped up to CR */
    CH_SIZE_LF,   /* the LF of the size line */
    CH_DATA,      /* chunk data; c->remaining bytes left */
    CH_DATA_CR,   /* the CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER_START, /* a trailer field line, or the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_FINAL_LF,
    CH_DONE,
    CH_ERROR,
};

void http_chunked_init(struct http_chunked *c)
{
    memset(c, 0, sizeof(*c));
}

/* One byte of a size line (size, extensions, CRLF). Returns 0 or 400/413;
 * the line length is bounded by CHUNK_LINE_MAX. */
static int chunk_size_byte(struct http_chunked *c, uint8_t b,
                           const struct http_limits *lim)
{
    int h = ascii_hex_value(b);

    if (++c->line_len > CHUNK_LINE_MAX)
        return 400;
    switch (c->state) {
    case CH_SIZE:
        if (h < 0)
            return 400;
        c->remaining = (uint64_t)h;
        c->state = CH_SIZE_MORE;
        return 0;
    case CH_SIZE_MORE:
        /* While digits come, line_len counts them. */
        if (h >= 0) {
            if (c->line_len > CHUNK_SIZE_DIGITS)
                return 400;
            /* 2^48 and more is over any max_body (at most 1 TiB). */
            if (c->remaining >> 44)
                return 413;
            c->remaining = c->remaining << 4 | (uint64_t)h;
        } else if (b == ';') {
            c->state = CH_EXT;
        } else if (ascii_is_ows(b)) {
            c->state = CH_SIZE_BWS;
        } else if (b == CR) {
            c->state = CH_SIZE_LF;
        } else {
            return 400;
        }
        return 0;
    case CH_SIZE_BWS:
        if (b == ';')
            c->state = CH_EXT;
        else if (!ascii_is_ows(b))
            return 400;
        return 0;
    case CH_EXT:
        if (b == CR)
            c->state = CH_SIZE_LF;
        else if (!is_value_char(b))
            return 400;
        return 0;
    default: /* CH_SIZE_LF */
        if (b != LF)
            return 400;
        c->line_len = 0;
        if (c->remaining == 0) {
            c->state = CH_TRAILER_START;
            return 0;
        }
        /* The limit is checked before any byte of the chunk is read. */
        if (c->remaining > lim->max_body - c->total)
            return 413;
        c->total += c->remaining;
        c->state = CH_DATA;
        return 0;
    }
}

/* One byte of the trailer section. Returns 0, 400 or 431. */
static int chunk_trailer_byte(struct http_chunked *c, uint8_t b,
                              const struct http_limits *lim)
{
    /* In the trailer section, remaining counts its bytes (it was 0). */
    if (++c->remaining > lim->max_header_bytes)
        return 431;
    switch (c->state) {
    case CH_TRAILER_START:
        if (b == CR)
            c->state = CH_FINAL_LF;
        else if (is_tchar(b))
            c->state = CH_TRAILER_NAME; /* SP/HTAB here is obs-fold */
        else
            return 400;
        return 0;
    case CH_TRAILER_NAME:
        if (b == ':')
            c->state = CH_TRAILER_VALUE;
        else if (!is_tchar(b))
            return 400;
        return 0;
    case CH_TRAILER_VALUE:
        if (b == CR)
            c->state = CH_TRAILER_LF;
        else if (!is_value_char(b))
            return 400;
        return 0;
    case CH_TRAILER_LF:
        if (b != LF)
            return 400;
        c->state = CH_TRAILER_START;
        return 0;
    default: /* CH_FINAL_LF */
        if (b != LF)
            return 400;
        c->state = CH_DONE;
        return 0;
    }
}

ssize_t http_chunked_parse(struct http_chunked *c, const uint8_t *in,
                           size_t len, const struct http_limits *lim,
                           http_data_fn *on_data, void *arg, bool *done,
                           int *status)
{
    size_t i = 0;
    int st = 0;

    *done = false;
    while (i < len && c->state != CH_DONE && c->state != CH_ERROR) {
        uint8_t b = in[i];
        switch (c->state) {
        case CH_DATA: {
            size_t n = (size_t)MIN((uint64_t)(len - i), c->remaining);
            if (on_data)
                on_data(arg, in + i, n);
            c->remaining -= n;
            i += n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            st = b == CR ? 0 : 400;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            st = b == LF ? 0 : 400;
            c->state = CH_SIZE;
            break;
        case CH_SIZE:
        case CH_SIZE_MORE:
        case CH_SIZE_BWS:
        case CH_EXT:
        case CH_SIZE_LF:
            st = chunk_size_byte(c, b, lim);
            break;
        default:
            st = chunk_trailer_byte(c, b, lim);
            break;
        }
        if (st) {
            c->state = CH_ERROR;
            return reject(status, st);
        }
        i++;
    }
    if (c->state == CH_ERROR)
        return reject(status, 400); /* called again after a failure */
    *done = c->state == CH_DONE;
    return (ssize_t)i;
}

/* ---- responses ----------------------------------------------------------- */

static const struct {
    int status;
    const char *text;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_reason(int status)
{
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++) {
        if (reasons[i].status == status)
            return reasons[i].text;
    }
    return "Unknown";
}

ssize_t http_format_head(char *out, size_t cap, int status, long long body_len,
                         bool keep_alive, const char *extra)
{
    char cl[48] = "";
    int n;

    if (body_len >= 0)
        snprintf(cl, sizeof(cl), "Content-Length: %lld\r\n", body_len);
    n = snprintf(out, cap, "HTTP/1.1 %d %s\r\n%s%s%s\r\n", status,
                 http_reason(status), cl,
                 keep_alive ? "" : "Connection: close\r\n", extra ? extra : "");
    if (n < 0 || (size_t)n >= cap)
        return -ENOBUFS;
    return n;
}
