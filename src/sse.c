/*
 * sse.c - Server-Sent Events encoding (WHATWG HTML, "Server-sent events",
 * section "Parsing an event stream" / "Interpreting an event stream").
 *
 * What it does: writes events, retry lines and heartbeat comments in the
 * text/event-stream format, the response head that starts a stream, and
 * reads the Last-Event-ID header a reconnecting client sends.
 *
 * Invariants:
 *  - sse_event_size() and sse_encode_event() agree byte for byte: both
 *    walk the payload's line ends with the same helper, so a caller can
 *    allocate the exact size once and encode into it.
 *  - No field is ever ended early: a payload's "\n", "\r\n" and lone "\r"
 *    each start a new "data: " line, and names, comments and extra header
 *    lines holding a line end are refused rather than written.
 *  - Nothing is written past out + cap; a result that does not fit is
 *    reported as 0 (or -ENOBUFS) before any byte is written.
 *
 * Must not: make syscalls, allocate through mem.c, keep mutable global
 * state, or call upward into conn or server code.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sse.h"
#include "util.h"

/* ---- small helpers ----------------------------------------------------- */

/* Writes v in decimal to out (at least 20 bytes); returns the length. */
static size_t put_u64(uint8_t *out, uint64_t v)
{
    uint8_t tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (uint8_t)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t digits_u64(uint64_t v)
{
    size_t n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static uint8_t *put(uint8_t *o, const void *s, size_t n)
{
    if (n)
        memcpy(o, s, n);
    return o + n;
}

/*
 * Finds the end of the line that starts at data[off] in data[0..len).
 * Return value: the length of the line; *brk is set to the length of the
 * line end after it: 1 ("\n" or a lone "\r"), 2 ("\r\n") or 0 when the
 * line runs to the end of the payload (the last line).
 */
static size_t line_at(const uint8_t *data, size_t len, size_t off, size_t *brk)
{
    size_t i = off;

    while (i < len && data[i] != '\n' && data[i] != '\r')
        i++;
    if (i == len)
        *brk = 0;
    else if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
        *brk = 2;
    else
        *brk = 1;
    return i - off;
}

/* ---- events ------------------------------------------------------------ */

bool sse_event_name_ok(const char *name)
{
    size_t n = 0;

    if (!name)
        return false;
    for (; name[n]; n++) {
        if (n >= SSE_EVENT_NAME_MAX)
            return false;
        if ((unsigned char)name[n] < 0x21 || (unsigned char)name[n] > 0x7E)
            return false;
    }
    return n > 0;
}

/* The size of the prefix "id: ID\n[event: E\n]data: "; event is valid. */
static size_t prefix_size(size_t id_len, const char *event)
{
    size_t n = (id_len ? 4 + id_len + 1 : 0) + 6;

    if (event)
        n += 7 + strlen(event) + 1;
    return n;
}

/* An id holds no line end and no NUL (a client would cut it there). */
static bool id_ok(const char *id, size_t n)
{
    return n <= SSE_ID_MAX && !memchr(id, '\n', n) && !memchr(id, '\r', n) &&
           !memchr(id, '\0', n);
}

bool sse_data_one_line(const uint8_t *data, size_t len)
{
    return len == 0 || (!memchr(data, '\n', len) && !memchr(data, '\r', len));
}

size_t sse_event_size_sid(const char *id, size_t id_len, const char *event,
                          const uint8_t *data, size_t len)
{
    size_t n, off = 0, brk = 0;

    if ((event && !sse_event_name_ok(event)) || !id_ok(id, id_len))
        return 0;
    /* Every line end turns into at most 7 bytes ("\ndata: "), so this
     * bound keeps the sum below from wrapping. Only a 32-bit size_t could
     * ever reach it. */
    if (len > (SIZE_MAX - SSE_SID_PREFIX_MAX - 8) / 7)
        return 0;
    n = prefix_size(id_len, event);
    for (;;) {
        size_t line = line_at(data, len, off, &brk);
        n += line + 1; /* the line and its "\n" */
        off += line + brk;
        if (brk == 0)
            break;
        n += 6; /* the next line's "data: " */
    }
    return n + 1; /* the blank line that dispatches the event */
}

size_t sse_event_size(uint64_t id, const char *event, const uint8_t *data,
                      size_t len)
{
    uint8_t s[20];

    return sse_event_size_sid((const char *)s, put_u64(s, id), event, data,
                              len);
}

static size_t prefix_sid(uint8_t *out, size_t cap, const char *id,
                         size_t id_len, const char *event)
{
    uint8_t *o = out;

    if ((event && !sse_event_name_ok(event)) || !id_ok(id, id_len))
        return 0;
    if (cap < prefix_size(id_len, event))
        return 0;
    if (id_len) {
        o = put(o, "id: ", 4);
        o = put(o, id, id_len);
        *o++ = '\n';
    }
    if (event) {
        o = put(o, "event: ", 7);
        o = put(o, event, strlen(event));
        *o++ = '\n';
    }
    o = put(o, "data: ", 6);
    return (size_t)(o - out);
}

size_t sse_event_prefix(uint8_t *out, size_t cap, uint64_t id,
                        const char *event)
{
    uint8_t s[20];

    return prefix_sid(out, cap, (const char *)s, put_u64(s, id), event);
}

size_t sse_encode_event_sid(uint8_t *out, size_t cap, const char *id,
                            size_t id_len, const char *event,
                            const uint8_t *data, size_t len)
{
    size_t need = sse_event_size_sid(id, id_len, event, data, len);
    size_t off = 0, brk = 0;
    uint8_t *o;

    if (need == 0 || cap < need)
        return 0;
    o = out + prefix_sid(out, cap, id, id_len, event);
    for (;;) {
        size_t line = line_at(data, len, off, &brk);
        if (line) /* data may be NULL when len is 0 */
            o = put(o, data + off, line);
        *o++ = '\n';
        off += line + brk;
        if (brk == 0)
            break;
        o = put(o, "data: ", 6);
    }
    *o++ = '\n';
    return (size_t)(o - out);
}

size_t sse_encode_event(uint8_t *out, size_t cap, uint64_t id,
                        const char *event, const uint8_t *data, size_t len)
{
    uint8_t s[20];

    return sse_encode_event_sid(out, cap, (const char *)s, put_u64(s, id),
                                event, data, len);
}

/* ---- retry, comments --------------------------------------------------- */

size_t sse_encode_retry(uint8_t *out, size_t cap, uint32_t ms)
{
    size_t need = 7 + digits_u64(ms) + 2;
    uint8_t *o = out;

    if (cap < need)
        return 0;
    o = put(o, "retry: ", 7);
    o += put_u64(o, ms);
    o = put(o, "\n\n", 2);
    return (size_t)(o - out);
}

size_t sse_encode_comment(uint8_t *out, size_t cap, const char *text)
{
    size_t n = text ? strlen(text) : 0;
    size_t need = n ? 1 + 1 + n + 2 : 1 + 2;
    uint8_t *o = out;

    if (n && strpbrk(text, "\r\n"))
        return 0;
    if (cap < need)
        return 0;
    *o++ = ':';
    if (n) {
        *o++ = ' ';
        o = put(o, text, n);
    }
    o = put(o, "\n\n", 2);
    return (size_t)(o - out);
}

/* ---- the response head ------------------------------------------------- */

/* True if s is empty or a run of header lines, each ending in "\r\n",
 * none empty, with no other CR or LF. */
static bool header_lines_ok(const char *s)
{
    size_t line = 0; /* bytes of the current line before its CR */

    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\r') {
            if (s[i + 1] != '\n' || line == 0)
                return false;
            i++;
            line = 0;
        } else if (s[i] == '\n') {
            return false;
        } else {
            line++;
        }
    }
    return line == 0;
}

ssize_t sse_format_head(char *out, size_t cap, const char *extra_headers)
{
    const char *extra = extra_headers ? extra_headers : "";
    int n;

    if (!header_lines_ok(extra))
        return -EINVAL;
    n = snprintf(out, cap,
                 "HTTP/1.1 200 OK\r\n"
                 "Content-Type: text/event-stream\r\n"
                 "Cache-Control: no-cache\r\n"
                 "X-Accel-Buffering: no\r\n"
                 "Connection: keep-alive\r\n"
                 "%s"
                 "\r\n",
                 extra);
    if (n < 0 || (size_t)n >= cap)
        return -ENOBUFS;
    return n;
}

/* ---- Last-Event-ID ----------------------------------------------------- */

bool sse_parse_last_event_id(const char *p, size_t n, uint64_t *id)
{
    uint64_t v = 0;

    while (n && ascii_is_ows((unsigned char)p[0])) {
        p++;
        n--;
    }
    while (n && ascii_is_ows((unsigned char)p[n - 1]))
        n--;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9)
            return false;
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *id = v;
    return true;
}
