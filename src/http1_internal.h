/*
 * http1_internal.h - the field-line code that src/http1.c (requests)
 * shares with src/http1_response.c (responses). Only those two include it.
 *
 * Every function here is pure like the rest of http1: no syscalls, no
 * allocation, results point into the caller's buffer. A rejection comes
 * with a static string saying what was wrong (the request parser maps it
 * to 400, the response parser returns it as *why).
 */
#ifndef MOOR_HTTP1_INTERNAL_H
#define MOOR_HTTP1_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "http1.h"
#include "util.h"

/* tchar: the characters of a token (method, field name, coding). */
static inline bool http1_is_tchar(uint8_t c)
{
    return ascii_is_alnum(c) ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A field value byte: HTAB, SP, VCHAR or obs-text; no other CTL, no DEL. */
static inline bool http1_is_value_char(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * Looks for the CRLFCRLF that ends a header block in in[from..to),
 * checking on the way that every LF follows a CR and every CR is followed
 * by an LF (a CR at to - 1 is judged on a later call).
 * Return value: the offset just past CRLFCRLF, 0 if not there yet, -1 on a
 * bare CR or LF (*why says which).
 */
ssize_t http1_find_block_end(const uint8_t *in, size_t from, size_t to,
                             const char **why);

/* Called for every field line parsed by http1_parse_fields; a non-zero
 * return value stops the parse and is returned (*why may be set). */
typedef int http1_field_fn(void *ctx, const struct http_header *h,
                           const char **why);

/* What http1_parse_fields returns when a line itself is refused. */
#define HTTP1_FIELD_BAD (-1)      /* malformed line; *why says how */
#define HTTP1_FIELD_TOO_MANY (-2) /* more than max fields */

/*
 * Parses the field lines in[pos..end - 2) of a complete header block (one
 * that ends in CRLFCRLF at end and was checked by http1_find_block_end)
 * into hdrs[0..max), calling apply(ctx, h, why) for each; *n counts them.
 * Field lines are "field-name ':' OWS field-value OWS": no obs-fold, no
 * whitespace before ':', names are tokens, values hold no CTL but HTAB.
 * Return value: 0, HTTP1_FIELD_BAD, HTTP1_FIELD_TOO_MANY, or what apply
 * returned.
 */
int http1_parse_fields(const uint8_t *in, size_t pos, size_t end,
                       struct http_header *hdrs, uint32_t max, uint32_t *n,
                       http1_field_fn *apply, void *ctx, const char **why);

/*
 * Content-Length: 1*DIGIT (a list "5, 5" is refused too). *overflow is set
 * for a value over 2^64 - 1 (*out then holds no meaningful value).
 * Return value: NULL, or why it is malformed.
 */
const char *http1_content_length(struct http_str v, uint64_t *out,
                                 bool *overflow);

/* What the Transfer-Encoding fields of one message said so far. */
struct http1_te {
    bool seen;
    bool chunked; /* "chunked" seen (it must be the last coding) */
    bool unknown; /* a coding other than chunked */
};

/*
 * Adds one Transfer-Encoding field value (a list of codings; a message may
 * carry several fields) to *te. "chunked" must come last and only once:
 * anything after it is refused at once; unknown codings are only noted.
 * Return value: NULL, or why the value is refused.
 */
const char *http1_transfer_encoding(struct http_str v, struct http1_te *te);

/* Case-insensitive lookup of name in hdrs[0..n); NULL if none. */
const struct http_str *http1_header_find(const struct http_header *hdrs,
                                         uint32_t n, const char *name);

#endif
