/*
 * buf.h - the buffers of docs/principles.md rule 3, and a small growable
 * string builder.
 *
 * struct carry: an exact-size copy of an incomplete tail (half a header
 * block, half a frame header). It exists only between two reads; the read
 * path copies it to the front of the loop's shared read buffer, appends the
 * new bytes behind it, frees it, and saves a new one only if bytes are left
 * unconsumed. An idle connection therefore holds no buffer at all.
 *
 * struct sbuf: an append-only byte builder (for responses, metrics pages,
 * JSON). It grows by doubling up to a cap given at init; appends past the
 * cap fail with -ENOBUFS and leave the builder as it was.
 */
#ifndef MOOR_BUF_H
#define MOOR_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include "mem.h"

struct carry {
    uint32_t len;
    uint8_t data[];
};

/* Replaces *c with a new exact-size carry holding p[0..n). n == 0 frees *c
 * and sets it to NULL. Takes nothing; copies n bytes. Returns 0 or -ENOMEM
 * (then *c is unchanged). Tag MEM_CARRY. */
int carry_save(struct carry **c, const uint8_t *p, size_t n);
/* Frees *c and sets it to NULL (NULL is a no-op). */
void carry_release(struct carry **c);

/* struct abuf: a message arriving in pieces (a fragmented WebSocket
 * message, a TCP frame split over reads, an HTTP body). It grows as its
 * bytes actually arrive, doubling from 256 bytes and never past max, so
 * its size follows what was received, never a length the peer claims
 * (rule 8). */
struct abuf {
    uint32_t len, cap;
    uint8_t data[];
};
/* Appends p[0..n) to *b (allocated on the first append). Returns 0,
 * -ENOBUFS if the total would pass max (nothing appended), or -ENOMEM. */
int abuf_append(struct abuf **b, enum mem_tag tag, const void *p, size_t n,
                size_t max);
/* Frees *b and sets it to NULL (NULL is a no-op). */
void abuf_free(struct abuf **b, enum mem_tag tag);

/* The per-loop shared read buffer: one allocation of `size` usable bytes
 * plus padding, tag MEM_READBUF. */
struct readbuf {
    size_t size;
    uint8_t *data;
};
int readbuf_init(struct readbuf *rb, size_t size);
void readbuf_fini(struct readbuf *rb);

struct sbuf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* hard cap on cap */
    enum mem_tag tag;
};

/* No allocation until the first append. */
void sbuf_init(struct sbuf *s, enum mem_tag tag, size_t max);
void sbuf_fini(struct sbuf *s);
/* Each returns 0, or -ENOMEM / -ENOBUFS with the builder unchanged. */
int sbuf_append(struct sbuf *s, const void *p, size_t n);
int sbuf_puts(struct sbuf *s, const char *str);
int sbuf_printf(struct sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int sbuf_vprintf(struct sbuf *s, const char *fmt, va_list ap);
/* Appends str[0..n) as a JSON string literal, quotes and escapes included
 * (the escapes of json_escape()). */
int sbuf_json_str(struct sbuf *s, const char *str, size_t n);
/*
 * JSON string escaping, the one copy (sbuf_json_str() is built on it).
 *
 * json_escape() writes str[0..n) escaped for the inside of a JSON string,
 * without the quotes, to dst (at most cap bytes, no NUL) and returns the
 * length of the whole escape, like snprintf(): the output is complete iff
 * the return value is <= cap, and an escape is never cut in half.
 * json_escape(NULL, 0, str, n) measures. Escapes: \" \\ \n \r \t \b \f,
 * \u00xx for the other bytes below 0x20; every other byte is copied as it
 * is (the caller hands over UTF-8).
 */
size_t json_escape(char *dst, size_t cap, const char *str, size_t n);
/* The same escape written to a stream, without the quotes ... */
void json_fput_escaped(FILE *out, const char *str, size_t n);
/* ... and as a whole string literal, quotes included. */
void json_fput_str(FILE *out, const char *str, size_t n);

/* Detaches the bytes: returns data (caller frees with mem_free(tag, p)),
 * resets the builder to empty. */
uint8_t *sbuf_take(struct sbuf *s, size_t *len);

#endif
