/*
 * fuzz_sse.c - libFuzzer target for the Server-Sent Events encoder
 * (src/sse.c), checked by decoding what it writes.
 *
 * What it does: the input supplies an event id, a retry time, a flag
 * byte, an event name candidate (valid or not) and a payload. The target
 * encodes a retry line, a heartbeat comment and two events into one
 * stream, then decodes the stream with a reference event-stream parser
 * written here from the WHATWG rules ("Parsing an event stream",
 * "Interpreting an event stream"), and checks that the client would see
 * exactly two events, with the payload (every "\r\n" and lone "\r" turned
 * into "\n", the only change SSE can make), the event type, the last
 * event id, and the retry time that went in. The bytes also drive the
 * event name check, the Last-Event-ID parser and the response head's
 * extra header check, each against a reference written here.
 *
 * The reference works on bytes, before UTF-8 decoding: a decoder replaces
 * a bad sequence with U+FFFD but never swallows an ASCII byte, so the
 * lines and fields it finds are the same ones.
 *
 * Invariants checked: sse_event_size() is the exact length written; a cap
 * one byte short writes nothing and returns 0; nothing is written past
 * cap; an event is at most 7 * len + SSE_PREFIX_MAX + 8 bytes; a one-line
 * payload's event is the prefix, the payload and "\n\n"; an invalid name
 * makes every encoder refuse.
 *
 * Must not: allocate through mem.c, or keep state between inputs beyond
 * scratch buffers that each run overwrites.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_sse.c
 *        src/sse.c   (or scripts/fuzz.sh 60 sse)
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "check.h"

#define MAX_IN 65536
/* Two events of at most 7 * MAX_IN + SSE_PREFIX_MAX + 8 bytes each, a
 * retry line and a comment. */
#define STREAM_CAP (2 * (7 * MAX_IN + SSE_PREFIX_MAX + 8) + MAX_IN + 64)
#define GUARD 16

/* ---- the reference event-stream parser ----------------------------------- */

#define REF_EVENTS 4

struct ref_event {
    char type[SSE_EVENT_NAME_MAX + 1];
    size_t data_off; /* where its data sits in ref.store */
    size_t len;
    char last_id[32];
};

static struct {
    struct ref_event ev[REF_EVENTS];
    int n;
    long long retry;
    uint8_t data[7 * MAX_IN + 64]; /* the data buffer */
    size_t data_len;
    char type[SSE_EVENT_NAME_MAX + 1];
    char id_buf[32];
    uint8_t store[2 * MAX_IN + 8]; /* dispatched data, back to back */
    size_t store_len;
} ref;

static void ref_field(const uint8_t *line, size_t n)
{
    const uint8_t *colon = memchr(line, ':', n);
    size_t fl = colon ? (size_t)(colon - line) : n;
    const uint8_t *v = colon ? colon + 1 : line + n;
    size_t vl = colon ? n - fl - 1 : 0;

    /* One space after the colon is not part of the value. */
    if (vl && v[0] == ' ') {
        v++;
        vl--;
    }
    if (fl == 5 && !memcmp(line, "event", 5)) {
        CHECK(vl < sizeof(ref.type));
        memcpy(ref.type, v, vl);
        ref.type[vl] = '\0';
    } else if (fl == 4 && !memcmp(line, "data", 4)) {
        CHECK(ref.data_len + vl + 1 <= sizeof(ref.data));
        memcpy(ref.data + ref.data_len, v, vl);
        ref.data_len += vl;
        ref.data[ref.data_len++] = '\n';
    } else if (fl == 2 && !memcmp(line, "id", 2)) {
        if (!memchr(v, '\0', vl)) {
            CHECK(vl < sizeof(ref.id_buf));
            memcpy(ref.id_buf, v, vl);
            ref.id_buf[vl] = '\0';
        }
    } else if (fl == 5 && !memcmp(line, "retry", 5)) {
        long long t = 0;
        if (vl == 0)
            return;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9' || t > (1LL << 40))
                return;
            t = t * 10 + (v[i] - '0');
        }
        ref.retry = t;
    }
    /* Any other field is ignored. */
}

/* A blank line: dispatch the event, if it has data. */
static void ref_dispatch(void)
{
    struct ref_event *e;

    if (ref.data_len == 0) {
        ref.type[0] = '\0';
        return;
    }
    CHECK(ref.n < REF_EVENTS);
    e = &ref.ev[ref.n++];
    e->len = ref.data_len - 1; /* the last "\n" goes */
    CHECK(ref.store_len + e->len <= sizeof(ref.store));
    e->data_off = ref.store_len;
    memcpy(ref.store + ref.store_len, ref.data, e->len);
    ref.store_len += e->len;
    strcpy(e->type, ref.type[0] ? ref.type : "message");
    strcpy(e->last_id, ref.id_buf);
    ref.data_len = 0;
    ref.type[0] = '\0';
}

/* Lines end at "\r\n", "\n" or "\r"; a line with no end when the stream
 * ends is discarded, and so is an event with no blank line after it. */
static void ref_parse(const uint8_t *s, size_t n)
{
    size_t i = 0;

    memset(&ref.ev, 0, sizeof(ref.ev));
    ref.n = 0;
    ref.retry = -1;
    ref.data_len = 0;
    ref.type[0] = '\0';
    ref.id_buf[0] = '\0';
    ref.store_len = 0;
    if (n >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        i = 3; /* a BOM at the start is skipped */
    while (i < n) {
        size_t a = i;
        while (i < n && s[i] != '\r' && s[i] != '\n')
            i++;
        if (i == n)
            break;
        if (i == a)
            ref_dispatch();
        else if (s[a] != ':') /* a comment otherwise */
            ref_field(s + a, i - a);
        i += (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
    }
}

/* ---- other references -----------------------------------------------------
 */

/* What EventSource reports for payload p: "\r\n" and "\r" become "\n". */
static size_t normalize(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            continue; /* the "\n" that follows is written instead */
        out[k++] = p[i] == '\r' ? '\n' : p[i];
    }
    return k;
}

static bool ref_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > SSE_EVENT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!(s[i] > ' ' && s[i] < 0x7F))
            return false;
    }
    return true;
}

/* Last-Event-ID: trims spaces and tabs, then all digits, at least one,
 * and the value without leading zeros no longer than UINT64_MAX's 20
 * digits (compared as text). */
static bool ref_last_id(const uint8_t *p, size_t n, uint64_t *v)
{
    static const char maxs[] = "18446744073709551615";
    size_t a = 0, z = n;

    while (a < z && (p[a] == ' ' || p[a] == '\t'))
        a++;
    while (z > a && (p[z - 1] == ' ' || p[z - 1] == '\t'))
        z--;
    if (a == z)
        return false;
    for (size_t i = a; i < z; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
    }
    while (z - a > 1 && p[a] == '0')
        a++;
    if (z - a > 20 || (z - a == 20 && memcmp(p + a, maxs, 20) > 0))
        return false;
    *v = 0;
    for (size_t i = a; i < z; i++)
        *v = *v * 10 + (uint64_t)(p[i] - '0');
    return true;
}

/* Extra header lines: split at "\r\n"; every piece but the last (which
 * must be empty) is a non-empty line with no CR or LF. */
static bool ref_headers_ok(const char *s)
{
    size_t n = strlen(s);
    size_t a = 0;

    while (a < n) {
        const char *crlf = strstr(s + a, "\r\n");
        size_t end;
        if (!crlf)
            return false;
        end = (size_t)(crlf - s);
        if (end == a)
            return false;
        for (size_t i = a; i < end; i++) {
            if (s[i] == '\r' || s[i] == '\n')
                return false;
        }
        a = end + 2;
    }
    return true;
}

/* ---- the checks -----------------------------------------------------------
 */

static uint8_t stream[STREAM_CAP];
static uint8_t ev_buf[7 * MAX_IN + SSE_PREFIX_MAX + 8 + GUARD];
static uint8_t norm[MAX_IN];
static char text[MAX_IN + 1];

/* Encodes one event at cap exactly, one short, and into a roomy buffer;
 * returns its size (0 if refused). */
static size_t check_event(uint64_t id, const char *name, const uint8_t *p,
                          size_t n)
{
    size_t sz = sse_event_size(id, name, p, n);
    size_t k;

    if (name && !ref_name_ok(name)) {
        CHECK(sz == 0);
        CHECK(sse_encode_event(ev_buf, sizeof(ev_buf), id, name, p, n) == 0);
        CHECK(sse_event_prefix(ev_buf, sizeof(ev_buf), id, name) == 0);
        return 0;
    }
    CHECK(sz > 0);
    CHECK(sz <= 7 * n + SSE_PREFIX_MAX + 8);
    /* One short: refused, nothing written. */
    memset(ev_buf, 0xAA, sz + GUARD);
    CHECK(sse_encode_event(ev_buf, sz - 1, id, name, p, n) == 0);
    for (size_t i = 0; i < sz + GUARD; i++)
        CHECK(ev_buf[i] == 0xAA);
    /* Exact. */
    CHECK(sse_encode_event(ev_buf, sz, id, name, p, n) == sz);
    for (size_t i = sz; i < sz + GUARD; i++)
        CHECK(ev_buf[i] == 0xAA);
    /* One line: prefix + payload + "\n\n". */
    {
        bool one = !memchr(p, '\n', n) && !memchr(p, '\r', n);
        uint8_t pre[SSE_PREFIX_MAX];
        CHECK(sse_data_one_line(p, n) == one);
        k = sse_event_prefix(pre, sizeof(pre), id, name);
        CHECK(k > 0 && k <= SSE_PREFIX_MAX);
        CHECK(memcmp(ev_buf, pre, k) == 0);
        if (one) {
            CHECK(sz == k + n + 2);
            CHECK(memcmp(ev_buf + k, p, n) == 0);
            CHECK(memcmp(ev_buf + k + n, "\n\n", 2) == 0);
        }
    }
    return sz;
}

static void fuzz_stream(uint64_t id, const char *name, uint32_t retry,
                        const uint8_t *p, size_t n, bool comment)
{
    size_t k = 0, sz, nn;
    char want_id[32];
    const char *cmt = NULL;

    sz = check_event(id, name, p, n);
    if (sz == 0)
        return;
    k += sse_encode_retry(stream + k, STREAM_CAP - k, retry);
    CHECK(k > 0 && k <= SSE_RETRY_MAX);
    if (comment) {
        /* The payload as comment text, if it is one line of text. */
        size_t tl = strnlen((const char *)p, n);
        memcpy(text, p, tl);
        text[tl] = '\0';
        cmt = text;
        sz = sse_encode_comment(stream + k, STREAM_CAP - k, cmt);
        if (strpbrk(cmt, "\r\n")) {
            CHECK(sz == 0);
        } else {
            CHECK(sz == (tl ? tl + 4 : 3));
            k += sz;
        }
    }
    sz = sse_encode_event(stream + k, STREAM_CAP - k, id, name, p, n);
    CHECK(sz > 0);
    k += sz;
    /* A second event with no name and the next id. */
    sz = sse_encode_event(stream + k, STREAM_CAP - k, id + 1, NULL, p, n);
    CHECK(sz > 0);
    k += sz;

    ref_parse(stream, k);
    CHECK(ref.retry == retry);
    CHECK(ref.n == 2);
    nn = normalize(p, n, norm);
    for (int i = 0; i < 2; i++) {
        const struct ref_event *e = &ref.ev[i];
        CHECK(e->len == nn);
        CHECK(memcmp(ref.store + e->data_off, norm, nn) == 0);
        CHECK(strcmp(e->type, i == 0 && name ? name : "message") == 0);
        snprintf(want_id, sizeof(want_id), "%llu",
                 (unsigned long long)(id + (uint64_t)i));
        CHECK(strcmp(e->last_id, want_id) == 0);
    }
}

static void fuzz_last_id(const uint8_t *p, size_t n, uint64_t id)
{
    uint64_t got = 0x5A5A, want = 0;
    bool ok = sse_parse_last_event_id((const char *)p, n, &got);
    char s[32];
    int len;

    CHECK(ok == ref_last_id(p, n, &want));
    if (ok)
        CHECK(got == want);
    else
        CHECK(got == 0x5A5A);
    /* Every id the encoder writes comes back. */
    len = snprintf(s, sizeof(s), "%llu", (unsigned long long)id);
    CHECK(sse_parse_last_event_id(s, (size_t)len, &got) && got == id);
}

static void fuzz_head(const uint8_t *p, size_t n)
{
    static const char base[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\n"
                               "X-Accel-Buffering: no\r\n"
                               "Connection: keep-alive\r\n";
    static char head[MAX_IN + sizeof(base) + 8];
    size_t tl = strnlen((const char *)p, n);
    ssize_t r;

    memcpy(text, p, tl);
    text[tl] = '\0';
    r = sse_format_head(head, sizeof(head), text);
    if (!ref_headers_ok(text)) {
        CHECK(r == -EINVAL);
        return;
    }
    CHECK(r == (ssize_t)(sizeof(base) - 1 + tl + 2));
    CHECK(memcmp(head, base, sizeof(base) - 1) == 0);
    CHECK(memcmp(head + sizeof(base) - 1, text, tl) == 0);
    CHECK(memcmp(head + r - 2, "\r\n", 3) == 0); /* with the NUL */
    CHECK(sse_format_head(head, (size_t)r, text) == -ENOBUFS);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    uint64_t id = 0;
    uint32_t retry = 0;
    uint8_t flags;
    size_t name_len;
    char name[31 * 5 + 1]; /* flags >> 3 is at most 31 */
    const char *ev_name = NULL;
    const uint8_t *p;
    size_t pn;

    if (n < 13 || n > MAX_IN)
        return 0;
    memcpy(&id, d, 8);
    memcpy(&retry, d + 8, 4);
    flags = d[12];
    p = d + 13;
    pn = n - 13;
    /* Bits 0-1: no name, a fixed good name, or a name taken from the
     * payload's first bytes (any bytes, so often invalid). */
    switch (flags & 3) {
    case 1:
        ev_name = "update";
        break;
    case 2:
    case 3:
        name_len = (size_t)(flags >> 3) * 5; /* 0..155: past the limit */
        if (name_len > pn)
            name_len = pn;
        memcpy(name, p, name_len);
        name[name_len] = '\0';
        ev_name = name;
        p += name_len;
        pn -= name_len;
        break;
    default:
        break;
    }
    CHECK(sse_event_name_ok(ev_name ? ev_name : "") ==
          (ev_name && ref_name_ok(ev_name)));
    /* With id UINT64_MAX the second event's id wraps to 0, in the
     * encoder and in the check alike. */
    fuzz_stream(id, ev_name, retry, p, pn, flags & 4);
    fuzz_last_id(p, pn, id);
    fuzz_head(p, pn);
    return 0;
}
