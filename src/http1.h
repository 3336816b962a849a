/*
 * http1.h - strict HTTP/1.1 request parsing, response formatting and
 * response parsing (for the HTTP client; its rules are listed below).
 *
 * Pure code: no syscalls, no allocation, no global state. A fuzzer or a
 * unit test drives it with bytes alone. Everything returned points into the
 * caller's input buffer (picohttpparser style), which must stay unchanged
 * while the result is used.
 *
 * Strictness (RFC 9110/9112, and the request smuggling shapes):
 *  - lines end in CRLF; a bare CR or bare LF is 400;
 *  - obs-fold (a header line starting with SP or HTAB) is 400;
 *  - whitespace between a field name and ':' is 400; names are tokens;
 *    values hold no CTL other than HTAB;
 *  - Content-Length: digits only, one value; a second Content-Length
 *    header (even with the same value) or a list is 400;
 *  - Transfer-Encoding together with Content-Length is 400; a
 *    Transfer-Encoding whose last coding is not "chunked" is 400; any coding
 *    other than chunked is 501 (none is implemented);
 *  - HTTP/1.1 without exactly one Host header is 400;
 *  - version other than HTTP/1.0 or HTTP/1.1 is 505 (well-formed) or 400;
 *  - a method that is a token but not one moor knows is 501;
 *  - the header block (request line included) longer than
 *    limits->max_header_bytes is 431 (414 if the request line alone is);
 *  - more than limits->max_headers fields is 431;
 *  - Content-Length above limits->max_body is 413.
 */
#ifndef MOOR_HTTP1_H
#define MOOR_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS_CAP 256 /* hard cap for limits.max_headers */

enum http_method {
    HTTP_UNKNOWN = 0,
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_PATCH,
    HTTP_CONNECT,
    HTTP_TRACE
};

struct http_limits {
    uint32_t max_header_bytes; /* request line + fields + CRLFCRLF */
    uint32_t max_headers;      /* <= HTTP_MAX_HEADERS_CAP */
    uint64_t max_body;         /* Content-Length and chunked total */
};

struct http_str {
    const char *p;
    uint32_t len;
};

struct http_header {
    struct http_str name;
    struct http_str value; /* leading/trailing OWS stripped */
};

struct http_request {
    enum http_method method;
    struct http_str method_str;
    struct http_str target; /* as sent: path + "?" + query */
    struct http_str path;   /* target up to '?'; absolute-form:
                               the part after the authority ("/"
                               if none); CONNECT: empty */
    struct http_str query;  /* after '?', may be empty */
    uint8_t version_minor;  /* 0 or 1 */
    bool keep_alive;        /* per version and Connection */
    bool chunked;
    bool has_body; /* chunked or content_length > 0 */
    bool upgrade;  /* Connection: upgrade + Upgrade: */
    bool expect_continue;
    uint64_t content_length; /* 0 if absent */
    struct http_str host;    /* Host, or the target's authority */
    uint32_t n_headers;
    struct http_header headers[HTTP_MAX_HEADERS_CAP];
};

/*
 * Parses one request header block from in[0..len).
 * *scan is a resume hint owned by the caller: set it to 0 before the first
 * call for a request, keep it between calls while the block is incomplete;
 * the parser records how far it has already looked for the end of the
 * block, so a header trickled one byte at a time costs O(n), not O(n^2).
 * Return value: >0 the length of the header block (the body, if any,
 * starts there); 0 the block is incomplete (more bytes needed, and len is
 * within limits); <0 the request is rejected and *status holds the HTTP
 * status to answer with (400, 413, 414, 431, 501, 505).
 */
ssize_t http_parse_request(const uint8_t *in, size_t len,
                           const struct http_limits *lim, uint32_t *scan,
                           struct http_request *req, int *status);

/* Case-insensitive lookup of the first header named name; NULL if none. */
const struct http_str *http_header_get(const struct http_request *req,
                                       const char *name);
/*
 * Takes the next element of the comma-separated list v from *pos (0 to
 * start), trimmed of OWS; empty elements are returned as such (the caller
 * decides). Return value: false once the list is exhausted.
 */
bool http_list_next(struct http_str v, uint32_t *pos, struct http_str *el);
/* True if the comma-separated token list in v contains tok (any case). */
bool http_token_list_has(struct http_str v, const char *tok);

/* Chunked body decoder state; zero it (or http_chunked_init) per body. */
struct http_chunked {
    uint64_t remaining : 48; /* bytes left in the current chunk; in the
                                trailer section, its bytes so far */
    uint64_t line_len : 16;  /* bytes of the current size/trailer line */
    uint64_t total : 48;     /* body bytes so far (max_body <= 1 TiB) */
    uint64_t state : 8;
    uint64_t ext_ws : 8;
}; /* 16 bytes: every idle keep-alive connection holds one */
void http_chunked_init(struct http_chunked *c);

typedef void http_data_fn(void *arg, const uint8_t *p, size_t n);

/*
 * Decodes chunked framing from in[0..len), calling on_data(arg, p, n) for
 * every span of body bytes (p points into in). Chunk extensions are
 * skipped; trailer fields are skipped but count against
 * lim->max_header_bytes, chunk size lines against a fixed 4 KiB.
 * Return value: >=0 bytes consumed; *done is set once the terminating
 * chunk and trailer section are consumed (the next request starts at the
 * returned offset). A return < len with !*done never happens: everything
 * given is consumed while the body is incomplete. <0 on a framing error or
 * when the total passes lim->max_body, with *status = 400 or 413 (431 when
 * the trailer section passes lim->max_header_bytes).
 */
ssize_t http_chunked_parse(struct http_chunked *c, const uint8_t *in,
                           size_t len, const struct http_limits *lim,
                           http_data_fn *on_data, void *arg, bool *done,
                           int *status);

/*
 * ---- responses (the HTTP client's side; src/http1_response.c) ----------
 *
 * Strictness (RFC 9112 4, 5, 6; a client facing a hostile server):
 *  - status line "HTTP/1.0" or "HTTP/1.1", SP, 3DIGIT (100..999), SP,
 *    reason (HTAB, SP, VCHAR, obs-text; may be empty), CRLF; the second
 *    SP is required; other versions and anything else are refused;
 *  - fields as for requests: CRLF only, no obs-fold, no whitespace before
 *    ':', token names, no CTL but HTAB in values;
 *  - Content-Length: digits only, one value; a second Content-Length
 *    (even with the same value) or a list is refused; a value over 2^64-1
 *    is -EFBIG whatever the status;
 *  - Transfer-Encoding together with Content-Length, in an HTTP/1.0
 *    response, or in a 1xx or 204 response (RFC 9112 6.1: MUST NOT; a
 *    server that says chunked there may send chunks the client would read
 *    as the next response) is refused; "chunked" must be the last coding
 *    and appear once; any other coding is "unsupported transfer coding";
 *  - a 1xx or 204 with a Content-Length other than 0 is refused (RFC 9110
 *    8.6: MUST NOT); "Content-Length: 0" there is tolerated;
 *  - Content-Length over lim->max_body is -EFBIG, except in a 1xx, 204 or
 *    304 response (which has no body; a 304's length is the selected
 *    representation's). The parser does not know the request: a client
 *    that sends HEAD and accepts any advertised length passes limits with
 *    max_body UINT64_MAX.
 */
struct http_response {
    int status;             /* 100..999 as sent (3 digits) */
    uint8_t version_minor;  /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    struct http_str reason; /* may be empty */
    bool keep_alive;        /* 1.1 without "Connection: close"; 1.0 only with
                               "Connection: keep-alive". Says what the header
                               allows: a body of kind HTTP_BODY_CLOSE ends the
                               connection whatever this says. */
    bool chunked;           /* Transfer-Encoding: chunked (last coding) */
    bool has_length;        /* a Content-Length was given */
    uint64_t content_length;
    uint32_t n_headers;
    struct http_header headers[HTTP_MAX_HEADERS_CAP];
};

enum http_body_kind {
    HTTP_BODY_NONE = 0, /* HEAD request, 1xx, 204, 304 (and a 2xx to
                           CONNECT: a tunnel follows, not a body) */
    HTTP_BODY_LENGTH,   /* Content-Length bytes */
    HTTP_BODY_CHUNKED,  /* chunked coding: decode with http_chunked_parse() */
    HTTP_BODY_CLOSE,    /* until the server closes (no length, not chunked) */
};

/*
 * Parses one response head from in[0..len). scan: resume hint as in
 * http_parse_request. Returns >0 the head's length (body starts there),
 * 0 incomplete (and within limits), or <0: -EPROTO (malformed: *why says
 * what, e.g. "both Content-Length and Transfer-Encoding", "bare LF in
 * header", "bad status line"), -E2BIG (head over lim->max_header_bytes or
 * more than lim->max_headers fields), -EFBIG (Content-Length over
 * lim->max_body). *why is a static string. A 101 Switching Protocols is
 * returned as is (the caller decides).
 */
ssize_t http_parse_response(const uint8_t *in, size_t len,
                            const struct http_limits *lim, uint32_t *scan,
                            struct http_response *resp, const char **why);

/* What body follows the head, given the request's method (HEAD has none). */
enum http_body_kind http_response_body_kind(const struct http_response *r,
                                            enum http_method req);

/* Case-insensitive lookup in a response, like http_header_get. */
const struct http_str *http_response_header(const struct http_response *r,
                                            const char *name);

/* Standard reason phrase for a status ("OK", "Not Found", ...); "Unknown"
 * for codes it does not know. */
const char *http_reason(int status);
const char *http_method_name(enum http_method m);

/*
 * Formats a response head into out[0..cap):
 *   HTTP/1.1 <status> <reason>\r\n
 *   Content-Length: <body_len>\r\n   (unless body_len < 0: no length)
 *   Connection: close\r\n            (if !keep_alive)
 *   <extra, verbatim: zero or more "Name: value\r\n" lines, may be NULL>
 *   \r\n
 * Return value: bytes written, or -ENOBUFS if cap is too small.
 */
ssize_t http_format_head(char *out, size_t cap, int status, long long body_len,
                         bool keep_alive, const char *extra);

#endif
