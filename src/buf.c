/*
 * buf.c - carry buffers, the per-loop read buffer, and the string builder.
 *
 * What it does. A carry is an exact-size heap copy of an incomplete tail
 * (docs/principles.md, rule 3): one allocation of sizeof(struct carry) +
 * n bytes, tag MEM_CARRY, that lives only between two reads. The read
 * buffer is the one large allocation per loop that every connection reads
 * into. The sbuf is an append-only builder that doubles from 256 bytes up
 * to a hard cap.
 *
 * Invariants.
 * - A failed carry_save() or sbuf append leaves its object exactly as it
 *   was: new memory is obtained first, and only then is the old released.
 * - A carry is never larger than the tail it holds (no slack, no rounding
 *   beyond what the allocator itself does).
 * - The read buffer has READBUF_PAD bytes past `size` that are allocated
 *   but never part of the data, so code that unmasks or scans a word at a
 *   time may read (and write) a little past the end without leaving the
 *   block.
 * - An sbuf never holds more than `max` bytes of capacity.
 *
 * What it must not do. Size anything by a length a peer claimed: callers
 * pass the number of bytes they actually hold.
 */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define READBUF_PAD 64
#define SBUF_MIN 256

/* ------------------------------------------------------------------ */
/* Carry.                                                             */
/* ------------------------------------------------------------------ */

int carry_save(struct carry **c, const uint8_t *p, size_t n)
{
    struct carry *nc;

    if (n == 0) {
        carry_release(c);
        return 0;
    }
    /* The length field is 32 bits; a tail that large is a caller bug (the
     * protocol caps are far below it), refused rather than truncated. */
    if (n > UINT32_MAX)
        return -ENOMEM;
    nc = mem_alloc(MEM_CARRY, sizeof(*nc) + n);
    if (!nc)
        return -ENOMEM;
    nc->len = (uint32_t)n;
    /* p may point into the old carry (a caller saving a suffix of what it
     * carried), so copy before releasing it. */
    memcpy(nc->data, p, n);
    carry_release(c);
    *c = nc;
    return 0;
}

void carry_release(struct carry **c)
{
    if (!*c)
        return;
    mem_free(MEM_CARRY, *c);
    *c = NULL;
}

int abuf_append(struct abuf **bp, enum mem_tag tag, const void *p, size_t n,
                size_t max)
{
    struct abuf *b = *bp;
    size_t need = (b ? b->len : 0) + n;

    if (need > max || need > UINT32_MAX)
        return -ENOBUFS;
    if (!b || need > b->cap) {
        size_t cap = b ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        cap = MIN(cap, MAX(MIN(max, (size_t)UINT32_MAX), need));
        b = mem_realloc(tag, b, sizeof(*b) + cap);
        if (!b)
            return -ENOMEM;
        if (!*bp)
            b->len = 0;
        b->cap = (uint32_t)cap;
        *bp = b;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += (uint32_t)n;
    return 0;
}

void abuf_free(struct abuf **b, enum mem_tag tag)
{
    if (!*b)
        return;
    mem_free(tag, *b);
    *b = NULL;
}

/* ------------------------------------------------------------------ */
/* Read buffer.                                                       */
/* ------------------------------------------------------------------ */

int readbuf_init(struct readbuf *rb, size_t size)
{
    rb->size = 0;
    rb->data = NULL;
    if (size > SIZE_MAX - READBUF_PAD)
        return -ENOMEM;
    rb->data = mem_alloc(MEM_READBUF, size + READBUF_PAD);
    if (!rb->data)
        return -ENOMEM;
    /* The padding is zeroed so a word read past the data is deterministic
     * (and quiet under valgrind-style checkers). */
    memset(rb->data + size, 0, READBUF_PAD);
    rb->size = size;
    return 0;
}

void readbuf_fini(struct readbuf *rb)
{
    mem_free(MEM_READBUF, rb->data);
    rb->data = NULL;
    rb->size = 0;
}

/* ------------------------------------------------------------------ */
/* String builder.                                                    */
/* ------------------------------------------------------------------ */

void sbuf_init(struct sbuf *s, enum mem_tag tag, size_t max)
{
    s->data = NULL;
    s->len = 0;
    s->cap = 0;
    s->max = max;
    s->tag = tag;
}

void sbuf_fini(struct sbuf *s)
{
    mem_free(s->tag, s->data);
    s->data = NULL;
    s->len = 0;
    s->cap = 0;
}

/* Makes room for n more bytes. Returns 0, -ENOBUFS past max, or -ENOMEM;
 * the builder is unchanged on failure. */
static int reserve(struct sbuf *s, size_t n)
{
    size_t need, ncap;
    uint8_t *p;

    if (n > s->max || s->len > s->max - n)
        return -ENOBUFS;
    need = s->len + n;
    if (need <= s->cap)
        return 0;
    ncap = s->cap ? s->cap : SBUF_MIN;
    while (ncap < need && ncap <= SIZE_MAX / 2)
        ncap *= 2;
    ncap = MIN(MAX(ncap, need), s->max);
    p = mem_realloc(s->tag, s->data, ncap);
    if (!p)
        return -ENOMEM;
    s->data = p;
    s->cap = ncap;
    return 0;
}

int sbuf_append(struct sbuf *s, const void *p, size_t n)
{
    int rc;

    if (n == 0)
        return 0;
    rc = reserve(s, n);
    if (rc < 0)
        return rc;
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return 0;
}

int sbuf_puts(struct sbuf *s, const char *str)
{
    return sbuf_append(s, str, strlen(str));
}

/* Formats exactly n bytes when only n bytes (no room for vsnprintf's NUL)
 * are left under the cap: through a scratch copy. */
static int vprintf_tight(struct sbuf *s, size_t n, const char *fmt, va_list ap)
{
    char *tmp;
    int rc;

    rc = reserve(s, n);
    if (rc < 0)
        return rc;
    tmp = mem_alloc(s->tag, n + 1);
    if (!tmp)
        return -ENOMEM;
    vsnprintf(tmp, n + 1, fmt, ap);
    memcpy(s->data + s->len, tmp, n);
    s->len += n;
    mem_free(s->tag, tmp);
    return 0;
}

int sbuf_vprintf(struct sbuf *s, const char *fmt, va_list ap)
{
    va_list ap2;
    size_t room;
    int n, rc;

    /* First try into whatever room is left; vsnprintf needs one byte more
     * for its terminating NUL, which is not part of the data. A text that
     * does not fit leaves bytes past len, which are not the content. */
    room = s->cap - s->len;
    va_copy(ap2, ap);
    n = vsnprintf(room ? (char *)s->data + s->len : NULL, room, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < room) {
        s->len += (size_t)n;
        return 0;
    }
    rc = reserve(s, (size_t)n + 1);
    if (rc == -ENOBUFS)
        return vprintf_tight(s, (size_t)n, fmt, ap);
    if (rc < 0)
        return rc;
    vsnprintf((char *)s->data + s->len, (size_t)n + 1, fmt, ap);
    s->len += (size_t)n;
    return 0;
}

int sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = sbuf_vprintf(s, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------------------------ */
/* JSON strings.                                                      */
/* ------------------------------------------------------------------ */

/* Writes the escape of ch inside a JSON string to o (room for 6 bytes):
 * \" \\ \n \r \t \b \f, \u00XX for the other control characters, else
 * ch itself. Returns its length. */
static size_t json_escape_byte(unsigned char ch, char *o)
{
    static const char hex[] = "0123456789abcdef";
    char esc = 0;

    switch (ch) {
    case '"':
        esc = '"';
        break;
    case '\\':
        esc = '\\';
        break;
    case '\n':
        esc = 'n';
        break;
    case '\r':
        esc = 'r';
        break;
    case '\t':
        esc = 't';
        break;
    case '\b':
        esc = 'b';
        break;
    case '\f':
        esc = 'f';
        break;
    }
    if (esc) {
        o[0] = '\\';
        o[1] = esc;
        return 2;
    }
    if (ch < 0x20) {
        memcpy(o, "\\u00", 4);
        o[4] = hex[ch >> 4];
        o[5] = hex[ch & 15];
        return 6;
    }
    /* Bytes >= 0x80 pass through: the caller is responsible for handing
     * over UTF-8. */
    o[0] = (char)ch;
    return 1;
}

size_t json_escape(char *dst, size_t cap, const char *str, size_t n)
{
    char e[6];
    size_t out = 0;
    bool full = false;

    for (size_t i = 0; i < n; i++) {
        size_t k = json_escape_byte((unsigned char)str[i], e);

        /* Stop writing at the first escape that does not fit whole. */
        if (!full && k <= cap - out)
            memcpy(dst + out, e, k);
        else
            full = true;
        out += k;
    }
    return out;
}

void json_fput_escaped(FILE *out, const char *str, size_t n)
{
    char tmp[256];

    while (n) {
        /* At most 6 bytes an input byte: a chunk always fits in tmp. */
        size_t k = MIN(n, sizeof(tmp) / 6);

        fwrite(tmp, 1, json_escape(tmp, sizeof(tmp), str, k), out);
        str += k;
        n -= k;
    }
}

void json_fput_str(FILE *out, const char *str, size_t n)
{
    fputc('"', out);
    json_fput_escaped(out, str, n);
    fputc('"', out);
}

int sbuf_json_str(struct sbuf *s, const char *str, size_t n)
{
    size_t need = json_escape(NULL, 0, str, n);
    char *o;
    int rc;

    /* Measure first so the append is all or nothing. */
    rc = reserve(s, need + 2);
    if (rc < 0)
        return rc;
    o = (char *)s->data + s->len;
    o[0] = '"';
    json_escape(o + 1, need, str, n);
    o[need + 1] = '"';
    s->len += need + 2;
    return 0;
}

uint8_t *sbuf_take(struct sbuf *s, size_t *len)
{
    uint8_t *p = s->data;

    if (len)
        *len = s->len;
    s->data = NULL;
    s->len = 0;
    s->cap = 0;
    return p;
}
