/*
 * http1.h - strict HTTP/1.1 request parsing and response formatting.
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
