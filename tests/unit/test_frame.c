/*
 * test_frame.c - unit tests for the length-prefixed TCP frames, the
 * first-frame command and the channel name rule (src/frame.c).
 *
 * Frames are fed whole, in pieces and one byte at a time through a
 * harness that keeps unconsumed bytes the way conn.c's carry buffer does;
 * all must agree, byte for byte, and the carry never holds more than 3
 * bytes (a partial header). Lengths 0, 1, max, max + 1 and 0xFFFFFFFF are
 * checked at the limit. frame.c allocates nothing through mem.c, and every
 * test ends by proving it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "mem.h"

#define MAX_RECS 256

static void no_leak(void)
{
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- the feeding harness ----------------------------------------------- */

struct sink {
    struct frame_parser p;
    uint8_t carry[FRAME_HEADER];
    size_t carry_len;
    size_t max_carry;
    size_t consumed; /* bytes frame_parse() consumed so far */
    uint8_t *log;    /* every payload byte delivered, in order */
    size_t log_cap;
    size_t log_len;
    size_t frame_start; /* log offset where the current frame began */
    bool in_frame;
    uint32_t cur_len;        /* frame_len of the current frame */
    uint32_t lens[MAX_RECS]; /* lengths of the completed frames */
    size_t starts[MAX_RECS]; /* their offsets in log */
    int n_rec;
    size_t pieces; /* DATA events */
    bool failed;
    int err;
    uint32_t claimed; /* ev.frame_len at the error */
};

static void sink_init(struct sink *s, uint64_t max_message, size_t log_cap)
{
    memset(s, 0, sizeof(*s));
    frame_parser_init(&s->p, max_message);
    s->log_cap = log_cap;
    s->log = mem_alloc(MEM_MISC, log_cap ? log_cap : 1);
    assert_non_null(s->log);
}

static void sink_fini(struct sink *s)
{
    mem_free(MEM_MISC, s->log);
    s->log = NULL;
}

static void record(struct sink *s, const struct frame_event *ev)
{
    if (ev->type == FRAME_EV_NONE)
        return;
    assert_int_equal(ev->type, FRAME_EV_DATA);
    s->pieces++;
    if (ev->first) {
        assert_false(s->in_frame);
        s->in_frame = true;
        s->cur_len = ev->frame_len;
        s->frame_start = s->log_len;
    } else {
        assert_true(s->in_frame);
        assert_int_equal(ev->frame_len, s->cur_len);
    }
    /* Only an empty frame gives an empty piece, as its only piece. */
    if (ev->len == 0)
        assert_true(ev->first && ev->fin && ev->frame_len == 0);
    if (s->p.max_message)
        assert_true(ev->frame_len <= s->p.max_message);
    assert_true(s->log_len + ev->len <= s->log_cap);
    if (ev->len)
        memcpy(s->log + s->log_len, ev->data, ev->len);
    s->log_len += ev->len;
    assert_true(s->log_len - s->frame_start <= s->cur_len);
    if (ev->fin) {
        assert_int_equal(s->log_len - s->frame_start, s->cur_len);
        assert_true(s->n_rec < MAX_RECS);
        s->lens[s->n_rec] = s->cur_len;
        s->starts[s->n_rec] = s->frame_start;
        s->n_rec++;
        s->in_frame = false;
    }
}

/* Parses buf[0..n) until the parser wants more; returns bytes consumed. */
static size_t process(struct sink *s, const uint8_t *buf, size_t n)
{
    size_t off = 0;

    while (off < n) {
        struct frame_event ev;
        int err = 0;
        ssize_t k = frame_parse(&s->p, buf + off, n - off, &ev, &err);

        if (k < 0) {
            assert_int_equal(k, -1);
            assert_int_equal(ev.type, FRAME_EV_NONE);
            assert_int_equal(err, FRAME_ERR_TOO_BIG);
            s->failed = true;
            s->err = err;
            s->claimed = ev.frame_len;
            return off;
        }
        if (k == 0) {
            assert_int_equal(ev.type, FRAME_EV_NONE);
            break;
        }
        assert_true((size_t)k <= n - off);
        if (ev.type == FRAME_EV_DATA) {
            assert_true(ev.data >= buf + off);
            assert_true(ev.data + ev.len <= buf + off + k);
        }
        off += (size_t)k;
        s->consumed += (size_t)k;
        record(s, &ev);
    }
    return off;
}

/* Feeds chunk[0..n) as a read would: straight from the read buffer when no
 * tail is carried, else behind the carried tail in a buffer of exact size.
 * What is left unconsumed is carried, as conn.c does. */
static void feed(struct sink *s, const uint8_t *chunk, size_t n)
{
    const uint8_t *buf = chunk;
    uint8_t *tmp = NULL;
    size_t len = n;
    size_t off;

    if (s->failed)
        return;
    if (s->carry_len) {
        len = s->carry_len + n;
        tmp = mem_alloc(MEM_CARRY, len);
        assert_non_null(tmp);
        memcpy(tmp, s->carry, s->carry_len);
        memcpy(tmp + s->carry_len, chunk, n);
        buf = tmp;
    }
    off = process(s, buf, len);
    if (s->failed) {
        s->carry_len = 0; /* the connection closes: nothing is kept */
    } else {
        s->carry_len = len - off;
        assert_true(s->carry_len < FRAME_HEADER);
        memmove(s->carry, buf + off, s->carry_len);
        if (s->carry_len > s->max_carry)
            s->max_carry = s->carry_len;
    }
    mem_free(MEM_CARRY, tmp);
}

/* Feeds buf[0..n) in pieces of step bytes (0: all at once). */
static void feed_steps(struct sink *s, const uint8_t *buf, size_t n,
                       size_t step)
{
    if (step == 0)
        step = n ? n : 1;
    for (size_t off = 0; off < n && !s->failed; off += step)
        feed(s, buf + off, n - off < step ? n - off : step);
}

static void assert_same(const struct sink *a, const struct sink *b)
{
    assert_int_equal(a->failed, b->failed);
    assert_int_equal(a->err, b->err);
    assert_int_equal(a->claimed, b->claimed);
    assert_int_equal(a->consumed, b->consumed);
    assert_int_equal(a->carry_len, b->carry_len);
    assert_int_equal(a->in_frame, b->in_frame);
    assert_int_equal(a->n_rec, b->n_rec);
    for (int i = 0; i < a->n_rec; i++) {
        assert_int_equal(a->lens[i], b->lens[i]);
        assert_int_equal(a->starts[i], b->starts[i]);
    }
    assert_int_equal(a->log_len, b->log_len);
    assert_memory_equal(a->log, b->log, a->log_len);
}

/*
 * Runs buf[0..n) through fresh parsers whole, in pieces of 2, 3, 5 and
 * 4096 bytes, and one byte at a time; all must end alike. Leaves the
 * byte-at-a-time run's records in *out if given (its log is freed).
 * Return value: the error (0 if none).
 */
static int run_all(const uint8_t *buf, size_t n, uint64_t max, struct sink *out)
{
    static const size_t steps[] = {0, 2, 3, 5, 4096, 1};
    enum { NSTEPS = sizeof(steps) / sizeof(steps[0]) };
    struct sink s[NSTEPS];
    int err;

    for (int i = 0; i < NSTEPS; i++) {
        sink_init(&s[i], max, n);
        feed_steps(&s[i], buf, n, steps[i]);
        assert_true(s[i].max_carry < FRAME_HEADER);
    }
    for (int i = 1; i < NSTEPS; i++)
        assert_same(&s[0], &s[i]);
    /* Whole: one event per frame (a piece for each). */
    if (!s[0].in_frame && !s[0].failed)
        assert_int_equal(s[0].pieces, s[0].n_rec);
    err = s[0].failed ? s[0].err : 0;
    for (int i = 0; i < NSTEPS - 1; i++)
        sink_fini(&s[i]);
    if (out) {
        *out = s[NSTEPS - 1];
        sink_fini(out);
    } else {
        sink_fini(&s[NSTEPS - 1]);
    }
    return err;
}

/* ---- building frames --------------------------------------------------- */

static uint8_t pat(size_t i)
{
    return (uint8_t)(i * 31 + (i >> 9));
}

/* Writes a frame claiming len bytes with a pattern payload of the same
 * length, at out; returns its size. */
static size_t put_frame(uint8_t *out, uint32_t len)
{
    frame_encode_header(out, len);
    for (size_t i = 0; i < len; i++)
        out[FRAME_HEADER + i] = pat(i);
    return FRAME_HEADER + (size_t)len;
}

static size_t put_frame_str(uint8_t *out, const char *s)
{
    size_t n = strlen(s);

    frame_encode_header(out, (uint32_t)n);
    memcpy(out + FRAME_HEADER, s, n);
    return FRAME_HEADER + n;
}

/* ---- frames ------------------------------------------------------------ */

static void test_encode_header(void **state)
{
    static const struct {
        uint32_t len;
        uint8_t want[4];
    } cases[] = {
        {0, {0, 0, 0, 0}},
        {1, {0, 0, 0, 1}},
        {0x01020304, {1, 2, 3, 4}},
        {16u << 20, {0x01, 0x00, 0x00, 0x00}},
        {0xFFFFFFFF, {0xFF, 0xFF, 0xFF, 0xFF}},
    };
    uint8_t out[FRAME_HEADER + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 0xAA, sizeof(out));
        frame_encode_header(out, cases[i].len);
        assert_memory_equal(out, cases[i].want, 4);
        assert_int_equal(out[4], 0xAA); /* exactly 4 bytes */
    }
    no_leak();
}

static void test_parser_init(void **state)
{
    struct frame_parser p;

    (void)state;
    frame_parser_init(&p, 5);
    assert_int_equal(p.max_message, 5);
    assert_int_equal(p.s.remaining, 0);
    assert_false(p.s.in_frame);
    assert_false(p.s.closed);
    frame_parser_init(&p, 0);
    assert_int_equal(p.max_message, 0);
    frame_parser_init(&p, 0xFFFFFFFF);
    assert_int_equal(p.max_message, FRAME_MAX_MESSAGE_LIMIT);
    frame_parser_init(&p, UINT64_C(1) << 40);
    assert_int_equal(p.max_message, FRAME_MAX_MESSAGE_LIMIT);
    assert_true(sizeof(struct frame_pstate) <= 12);
    no_leak();
}

/* One frame of len bytes, every split agrees and every byte arrives. */
static void one_length(uint32_t len, uint64_t max)
{
    size_t cap = (size_t)len + FRAME_HEADER;
    uint8_t *f = mem_alloc(MEM_MISC, cap);
    struct sink s;
    size_t n;

    assert_non_null(f);
    n = put_frame(f, len);
    assert_int_equal(run_all(f, n, max, &s), 0);
    assert_int_equal(s.consumed, n);
    assert_int_equal(s.carry_len, 0);
    assert_int_equal(s.n_rec, 1);
    assert_int_equal(s.lens[0], len);
    /* Byte at a time: one piece per payload byte (one for an empty). */
    assert_int_equal(s.pieces, len ? len : 1);
    /* Check the bytes from a whole run. */
    sink_init(&s, max, len);
    feed_steps(&s, f, n, 0);
    assert_int_equal(s.pieces, 1);
    for (size_t i = 0; i < len; i++) {
        if (s.log[i] != pat(i))
            fail_msg("len %u: byte %zu is %u, want %u", len, i, s.log[i],
                     pat(i));
    }
    sink_fini(&s);
    mem_free(MEM_MISC, f);
}

static void test_lengths(void **state)
{
    static const uint32_t lens[] = {0, 1, 2, 3, 4, 5, 255, 256, 4095, 65536};

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        one_length(lens[i], 0);
        one_length(lens[i], 65536);
    }
    one_length(1u << 20, 0);
    no_leak();
}

/* Lengths 0, 1, max, max + 1 and 0xFFFFFFFF against max_message. */
static void test_max_message(void **state)
{
    enum { MAX = 1000 };
    uint8_t *f = mem_alloc(MEM_MISC, 4 * (MAX + FRAME_HEADER) + 16);
    struct frame_parser p;
    struct frame_event ev;
    struct sink s;
    size_t n;
    int err = 0;

    (void)state;
    assert_non_null(f);
    /* 0, 1 and max pass, one after another. */
    n = put_frame(f, 0);
    n += put_frame(f + n, 1);
    n += put_frame(f + n, MAX);
    assert_int_equal(run_all(f, n, MAX, &s), 0);
    assert_int_equal(s.n_rec, 3);
    assert_int_equal(s.lens[0], 0);
    assert_int_equal(s.lens[1], 1);
    assert_int_equal(s.lens[2], MAX);
    assert_int_equal(s.consumed, n);

    /* max + 1 after them: the three are delivered, then the error, from
     * the header alone; the length claimed is reported. */
    n += put_frame(f + n, MAX + 1);
    assert_int_equal(run_all(f, n, MAX, &s), FRAME_ERR_TOO_BIG);
    assert_int_equal(s.n_rec, 3);
    assert_int_equal(s.claimed, MAX + 1);
    assert_int_equal(s.consumed, 4 + 5 + 4 + MAX);
    assert_false(s.in_frame);

    /* The header alone decides: no payload byte needs to be present. */
    frame_encode_header(f, MAX + 1);
    frame_parser_init(&p, MAX);
    for (size_t i = 0; i < FRAME_HEADER; i++)
        assert_int_equal(frame_parse(&p, f, i, &ev, &err), 0);
    assert_int_equal(frame_parse(&p, f, FRAME_HEADER, &ev, &err), -1);
    assert_int_equal(err, FRAME_ERR_TOO_BIG);
    assert_int_equal(ev.type, FRAME_EV_NONE);
    assert_int_equal(ev.frame_len, MAX + 1);
    assert_true(p.s.closed);

    /* A claimed 4 GiB - 1 against the usual 16 MiB limit. */
    frame_encode_header(f, 0xFFFFFFFF);
    frame_parser_init(&p, 16u << 20);
    assert_int_equal(frame_parse(&p, f, FRAME_HEADER, &ev, &err), -1);
    assert_int_equal(err, FRAME_ERR_TOO_BIG);
    assert_int_equal(ev.frame_len, 0xFFFFFFFF);
    assert_int_equal(run_all(f, FRAME_HEADER, 16u << 20, &s),
                     FRAME_ERR_TOO_BIG);
    assert_int_equal(s.claimed, 0xFFFFFFFF);
    assert_int_equal(s.consumed, 0);

    /* With no limit (0) or the ceiling, 0xFFFFFFFF is accepted and its
     * payload streams. */
    for (int i = 0; i < 2; i++) {
        frame_parser_init(&p, i ? FRAME_MAX_MESSAGE_LIMIT : 0);
        memset(f + FRAME_HEADER, 'x', 10);
        assert_int_equal(frame_parse(&p, f, FRAME_HEADER + 10, &ev, &err),
                         FRAME_HEADER + 10);
        assert_int_equal(ev.type, FRAME_EV_DATA);
        assert_true(ev.first);
        assert_false(ev.fin);
        assert_int_equal(ev.len, 10);
        assert_int_equal(ev.frame_len, 0xFFFFFFFF);
        assert_int_equal(p.s.remaining, 0xFFFFFFFF - 10);
    }

    /* max_message 1: lengths 0 and 1 pass, 2 fails. */
    n = put_frame(f, 0);
    n += put_frame(f + n, 1);
    assert_int_equal(run_all(f, n, 1, NULL), 0);
    n += put_frame(f + n, 2);
    assert_int_equal(run_all(f, n, 1, &s), FRAME_ERR_TOO_BIG);
    assert_int_equal(s.n_rec, 2);
    assert_int_equal(s.claimed, 2);
    mem_free(MEM_MISC, f);
    no_leak();
}

/* A truncated header consumes nothing and leaves the parser as it was;
 * a truncated payload delivers what is there and waits for the rest. */
static void test_truncated(void **state)
{
    uint8_t f[64];
    size_t n = put_frame(f, 10);
    struct frame_parser p, before;
    struct frame_event ev;
    int err = 0;

    (void)state;
    frame_parser_init(&p, 0);
    before = p;
    for (size_t i = 0; i < FRAME_HEADER; i++) {
        assert_int_equal(frame_parse(&p, f, i, &ev, &err), 0);
        assert_int_equal(ev.type, FRAME_EV_NONE);
        assert_memory_equal(&p, &before, sizeof(p));
    }
    /* The header alone: consumed, no event yet. */
    assert_int_equal(frame_parse(&p, f, FRAME_HEADER, &ev, &err), FRAME_HEADER);
    assert_int_equal(ev.type, FRAME_EV_NONE);
    assert_true(p.s.in_frame);
    assert_int_equal(p.s.remaining, 10);
    /* Nothing more given: nothing happens. */
    assert_int_equal(frame_parse(&p, f + 4, 0, &ev, &err), 0);
    assert_int_equal(ev.type, FRAME_EV_NONE);
    /* 3 payload bytes: the first piece. */
    assert_int_equal(frame_parse(&p, f + 4, 3, &ev, &err), 3);
    assert_int_equal(ev.type, FRAME_EV_DATA);
    assert_true(ev.first);
    assert_false(ev.fin);
    assert_true(ev.data == f + 4);
    assert_int_equal(ev.len, 3);
    assert_int_equal(ev.frame_len, 10);
    /* The rest and a partial next header: only the payload is taken. */
    frame_encode_header(f + n, 7);
    assert_int_equal(frame_parse(&p, f + 7, n - 7 + 2, &ev, &err), 7);
    assert_false(ev.first);
    assert_true(ev.fin);
    assert_true(ev.data == f + 7);
    assert_int_equal(ev.len, 7);
    assert_int_equal(frame_parse(&p, f + n, 2, &ev, &err), 0);
    assert_false(p.s.in_frame);
    no_leak();
}

/* An empty frame is one event of len 0, first and fin, at the end of its
 * header, and does not swallow the next frame. */
static void test_empty_frame(void **state)
{
    uint8_t f[32];
    size_t n = put_frame(f, 0);
    struct frame_parser p;
    struct frame_event ev;
    int err = 0;

    (void)state;
    n += put_frame_str(f + n, "ab");
    frame_parser_init(&p, 0);
    assert_int_equal(frame_parse(&p, f, n, &ev, &err), FRAME_HEADER);
    assert_int_equal(ev.type, FRAME_EV_DATA);
    assert_true(ev.first && ev.fin);
    assert_int_equal(ev.len, 0);
    assert_int_equal(ev.frame_len, 0);
    assert_true(ev.data == f + FRAME_HEADER);
    assert_false(p.s.in_frame);
    assert_int_equal(frame_parse(&p, f + 4, n - 4, &ev, &err), 6);
    assert_true(ev.first && ev.fin);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.data, "ab", 2);
    no_leak();
}

/* Many frames of mixed sizes back to back; every split agrees, and the
 * frames come out as they went in. */
static void test_many_frames(void **state)
{
    static const uint32_t lens[] = {3, 0, 0, 1, 700, 2, 0, 5000, 4, 3, 9};
    size_t cap = 0, n = 0, off = 0;
    uint8_t *f;
    struct sink s;

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        cap += FRAME_HEADER + lens[i];
    f = mem_alloc(MEM_MISC, cap);
    assert_non_null(f);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        n += put_frame(f + n, lens[i]);
    assert_int_equal(n, cap);
    assert_int_equal(run_all(f, n, 5000, &s), 0);
    assert_int_equal(s.n_rec, sizeof(lens) / sizeof(lens[0]));
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        assert_int_equal(s.lens[i], lens[i]);
        assert_int_equal(s.starts[i], off);
        off += lens[i];
    }
    /* Cut off in the middle of the 5000-byte frame's payload: the same
     * bytes arrive whatever the split, and the frame stays open. */
    assert_int_equal(run_all(f, n - 3000, 5000, &s), 0);
    assert_true(s.in_frame);
    assert_int_equal(s.carry_len, 0);
    /* ... and in the middle of a header: at most 3 bytes carried. */
    for (size_t cut = 1; cut < FRAME_HEADER; cut++) {
        assert_int_equal(run_all(f, 4 + 3 + cut, 5000, &s), 0);
        assert_int_equal(s.carry_len, cut);
        assert_int_equal(s.consumed, 7);
    }
    mem_free(MEM_MISC, f);
    no_leak();
}

/* After an error nothing is consumed or reported, whatever comes. */
static void test_after_error(void **state)
{
    uint8_t f[64];
    struct frame_parser p;
    struct frame_event ev;
    int err = 0;

    (void)state;
    frame_encode_header(f, 11);
    frame_parser_init(&p, 10);
    assert_int_equal(frame_parse(&p, f, FRAME_HEADER, &ev, &err), -1);
    put_frame(f, 1);
    err = 0;
    assert_int_equal(frame_parse(&p, f, 5, &ev, &err), 0);
    assert_int_equal(ev.type, FRAME_EV_NONE);
    assert_int_equal(err, 0);
    assert_int_equal(frame_parse(&p, f, 0, &ev, &err), 0);
    no_leak();
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(frame_strerror(FRAME_ERR_TOO_BIG),
                        "frame length over max-message");
    assert_non_null(frame_strerror(0));
    assert_non_null(frame_strerror(12345));
    no_leak();
}

/* ---- channel names ----------------------------------------------------- */

static void test_channel_name(void **state)
{
    uint8_t name[CHANNEL_NAME_MAX + 2];

    (void)state;
    /* Every byte value, alone and inside a name. */
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                    c == '.' || c == ':' || c == '@';
        uint8_t b = (uint8_t)c;
        uint8_t mid[3] = {'a', (uint8_t)c, 'b'};
        if (channel_name_valid(&b, 1) != want)
            fail_msg("byte 0x%02x: want %d", c, want);
        assert_int_equal(channel_name_valid(mid, 3), want);
    }
    assert_true(channel_name_valid((const uint8_t *)"news", 4));
    assert_true(channel_name_valid((const uint8_t *)"user:42@eu-1.a_b", 16));
    /* Length 0, 1, 128, 129. */
    memset(name, 'x', sizeof(name));
    assert_false(channel_name_valid(name, 0));
    assert_true(channel_name_valid(name, 1));
    assert_true(channel_name_valid(name, CHANNEL_NAME_MAX));
    assert_false(channel_name_valid(name, CHANNEL_NAME_MAX + 1));
    /* Only n bytes are read. */
    assert_true(channel_name_valid((const uint8_t *)"ab cd", 2));
    no_leak();
}

/* ---- commands ---------------------------------------------------------- */

static int cmd(const char *s, uint32_t max, struct frame_command *c)
{
    return frame_parse_command((const uint8_t *)s, strlen(s), max, c);
}

/* Checks c's channels are exactly the space-separated names in want. */
static void assert_channels(const struct frame_command *c, const char *want)
{
    size_t pos = 0, wpos = 0, wn = strlen(want);
    const uint8_t *name;
    size_t len;
    uint32_t count = 0;

    while (frame_command_next(c, &pos, &name, &len)) {
        size_t wl = strcspn(want + wpos, " ");
        assert_true(wpos < wn);
        assert_int_equal(len, wl);
        assert_memory_equal(name, want + wpos, len);
        wpos += wl + 1;
        count++;
    }
    assert_true(wpos >= wn);
    assert_int_equal(count, c->n_channels);
}

static void test_command_ok(void **state)
{
    struct frame_command c;
    char big[3 + 3 * (1 + CHANNEL_NAME_MAX) + 1];

    (void)state;
    assert_int_equal(cmd("SUB news", 0, &c), 0);
    assert_int_equal(c.verb, FRAME_CMD_SUB);
    assert_int_equal(c.n_channels, 1);
    assert_channels(&c, "news");
    assert_null(c.why);

    assert_int_equal(cmd("SUB a b:c d@e", 3, &c), 0);
    assert_int_equal(c.verb, FRAME_CMD_SUB);
    assert_int_equal(c.n_channels, 3);
    assert_channels(&c, "a b:c d@e");

    assert_int_equal(cmd("PUB ch-1", 1, &c), 0);
    assert_int_equal(c.verb, FRAME_CMD_PUB);
    assert_int_equal(c.n_channels, 1);
    assert_channels(&c, "ch-1");

    /* A name twice is accepted. */
    assert_int_equal(cmd("SUB a a", 0, &c), 0);
    assert_int_equal(c.n_channels, 2);

    /* max_channels 0: no limit. */
    assert_int_equal(cmd("SUB a b c d e f g h i j k l m n o p", 0, &c), 0);
    assert_int_equal(c.n_channels, 16);

    /* The channels point into the input. */
    {
        const char *s = "SUB xy";
        assert_int_equal(frame_parse_command((const uint8_t *)s, 6, 1, &c), 0);
        assert_true(c.channels == (const uint8_t *)s + 4);
        assert_int_equal(c.channels_len, 2);
    }

    /* The longest command for 3 channels parses, and is exactly
     * frame_command_max(3) bytes. */
    memcpy(big, "SUB", 3);
    for (int i = 0; i < 3; i++) {
        big[3 + i * (1 + CHANNEL_NAME_MAX)] = ' ';
        memset(big + 4 + i * (1 + CHANNEL_NAME_MAX), 'a' + i, CHANNEL_NAME_MAX);
    }
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(strlen(big), frame_command_max(3));
    assert_int_equal(cmd(big, 3, &c), 0);
    assert_int_equal(c.n_channels, 3);
    no_leak();
}

static void test_command_errors(void **state)
{
    static const struct {
        const char *in;
        uint32_t max;
        int want;
    } cases[] = {
        {"", 0, FRAME_CMD_EVERB},
        {"S", 0, FRAME_CMD_EVERB},
        {"SU", 0, FRAME_CMD_EVERB},
        {"sub a", 0, FRAME_CMD_EVERB},
        {"Sub a", 0, FRAME_CMD_EVERB},
        {"SUBa", 0, FRAME_CMD_EVERB},
        {"SUB\ta", 0, FRAME_CMD_EVERB},
        {" SUB a", 0, FRAME_CMD_EVERB},
        {"UNSUB a", 0, FRAME_CMD_EVERB},
        {"GET /sub/a HTTP/1.1", 0, FRAME_CMD_EVERB},
        {"SUB", 0, FRAME_CMD_ENOCHAN},
        {"SUB ", 0, FRAME_CMD_ENOCHAN},
        {"PUB", 0, FRAME_CMD_ENOCHAN},
        {"PUB ", 1, FRAME_CMD_ENOCHAN},
        {"SUB  a", 0, FRAME_CMD_EBADNAME},
        {"SUB a ", 0, FRAME_CMD_EBADNAME},
        {"SUB a  b", 0, FRAME_CMD_EBADNAME},
        {"SUB a\n", 0, FRAME_CMD_EBADNAME},
        {"SUB a\r\n", 0, FRAME_CMD_EBADNAME},
        {"SUB a,b", 0, FRAME_CMD_EBADNAME},
        {"SUB a/b", 0, FRAME_CMD_EBADNAME},
        {"SUB a\tb", 0, FRAME_CMD_EBADNAME},
        {"PUB a b", 0, FRAME_CMD_ETOOMANY},
        {"PUB a b", 5, FRAME_CMD_ETOOMANY},
        {"SUB a b c", 2, FRAME_CMD_ETOOMANY},
        {"SUB a b", 1, FRAME_CMD_ETOOMANY},
        /* The first problem from the left wins. */
        {"SUB a b !", 1, FRAME_CMD_ETOOMANY},
        {"SUB a ! b", 1, FRAME_CMD_EBADNAME},
        {"PUB ! b", 0, FRAME_CMD_EBADNAME},
        {"PUB a !", 0, FRAME_CMD_EBADNAME}, /* a name, then the count */
        {"PUB a b!", 0, FRAME_CMD_EBADNAME},
        {"SUB a b ! c", 2, FRAME_CMD_EBADNAME},
        {"SUB a b c !", 2, FRAME_CMD_ETOOMANY},
    };
    struct frame_command c;
    char name[CHANNEL_NAME_MAX + 8];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = cmd(cases[i].in, cases[i].max, &c);
        if (r != cases[i].want)
            fail_msg("\"%s\" (max %u): %d, want %d", cases[i].in, cases[i].max,
                     r, cases[i].want);
        assert_non_null(c.why);
        assert_true(strlen(c.why) > 0);
    }
    /* A NUL inside is just a bad byte (the input is not a C string). */
    assert_int_equal(frame_parse_command((const uint8_t *)"SUB a\0b", 7, 0, &c),
                     FRAME_CMD_EBADNAME);
    assert_int_equal(frame_parse_command((const uint8_t *)"SUB\0a", 5, 0, &c),
                     FRAME_CMD_EVERB);
    /* Names of 128 and 129 bytes. */
    memcpy(name, "PUB ", 4);
    memset(name + 4, 'n', CHANNEL_NAME_MAX + 1);
    assert_int_equal(
        frame_parse_command((const uint8_t *)name, 4 + CHANNEL_NAME_MAX, 1, &c),
        0);
    assert_int_equal(frame_parse_command((const uint8_t *)name,
                                         4 + CHANNEL_NAME_MAX + 1, 1, &c),
                     FRAME_CMD_EBADNAME);
    /* The messages. */
    assert_string_equal((cmd("HELLO", 0, &c), c.why),
                        "unknown command (want SUB or PUB)");
    assert_string_equal((cmd("SUB", 0, &c), c.why), "no channel");
    assert_string_equal((cmd("PUB a b", 0, &c), c.why),
                        "PUB takes one channel");
    assert_string_equal((cmd("SUB a b", 1, &c), c.why), "too many channels");
    assert_string_equal((cmd("SUB a  b", 0, &c), c.why),
                        "channels must be separated by single spaces");
    assert_string_equal((cmd("SUB a/b", 0, &c), c.why),
                        "bad channel name (1-128 of A-Z a-z 0-9 - _ . : @)");
    /* A failed parse leaves no channels to walk. */
    {
        size_t pos = 0;
        const uint8_t *nm;
        size_t len;
        cmd("SUB a !", 0, &c);
        assert_false(frame_command_next(&c, &pos, &nm, &len));
    }
    no_leak();
}

static void test_command_max(void **state)
{
    (void)state;
    assert_int_equal(frame_command_max(1), 3 + 1 + CHANNEL_NAME_MAX);
    assert_int_equal(frame_command_max(2), 3 + 2 * (1 + CHANNEL_NAME_MAX));
    assert_int_equal(frame_command_max(0), SIZE_MAX);
    assert_true(frame_command_max(UINT32_MAX) >= (size_t)UINT32_MAX);
    no_leak();
}

/* A connection's life: the first frame, split anywhere, is the command;
 * later frames are messages. The command is assembled from its pieces
 * into a buffer sized from the header, refused if the header claims more
 * than frame_command_max() allows. */
static void test_first_frame_flow(void **state)
{
    uint8_t f[128];
    size_t n = put_frame_str(f, "PUB room:1");

    (void)state;
    n += put_frame_str(f + n, "hello");
    n += put_frame_str(f + n, "");
    for (size_t step = 1; step <= n; step++) {
        struct frame_parser p;
        uint8_t cmdbuf[64];
        size_t cmd_len = 0, off = 0, msgs = 0, carry = 0;
        bool have_cmd = false;
        struct frame_command c;
        uint8_t buf[256];

        frame_parser_init(&p, 64);
        while (off < n) {
            size_t k = n - off < step ? n - off : step;
            size_t len = carry + k, used = 0;
            memcpy(buf + carry, f + off, k);
            off += k;
            for (;;) {
                struct frame_event ev;
                int err = 0;
                ssize_t r = frame_parse(&p, buf + used, len - used, &ev, &err);
                assert_true(r >= 0);
                if (r == 0)
                    break;
                used += (size_t)r;
                if (ev.type != FRAME_EV_DATA)
                    continue;
                if (!have_cmd) {
                    assert_true(ev.frame_len <= frame_command_max(1));
                    memcpy(cmdbuf + cmd_len, ev.data, ev.len);
                    cmd_len += ev.len;
                    if (ev.fin) {
                        have_cmd = true;
                        assert_int_equal(
                            frame_parse_command(cmdbuf, cmd_len, 1, &c), 0);
                        assert_int_equal(c.verb, FRAME_CMD_PUB);
                        assert_channels(&c, "room:1");
                    }
                } else if (ev.fin) {
                    msgs++;
                    assert_int_equal(ev.frame_len, msgs == 1 ? 5 : 0);
                }
            }
            carry = len - used;
            assert_true(carry < FRAME_HEADER);
            memmove(buf, buf + used, carry);
        }
        assert_true(have_cmd);
        assert_int_equal(msgs, 2);
        assert_int_equal(carry, 0);
    }
    no_leak();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_parser_init),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_empty_frame),
        cmocka_unit_test(test_many_frames),
        cmocka_unit_test(test_after_error),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_channel_name),
        cmocka_unit_test(test_command_ok),
        cmocka_unit_test(test_command_errors),
        cmocka_unit_test(test_command_max),
        cmocka_unit_test(test_first_frame_flow),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
