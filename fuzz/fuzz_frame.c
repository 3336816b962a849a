/*
 * fuzz_frame.c - libFuzzer target for the length-prefixed frame parser,
 * the first-frame command parser and the channel name rule
 * (src/frame.c).
 *
 * What it does: the first input byte picks max_message and max_channels;
 * the rest is the byte stream. The stream is parsed whole, in
 * pseudo-random pieces and, when short, one byte at a time, each through a
 * carry simulation that keeps unconsumed bytes the way conn.c does. Every
 * run writes a log of what it saw (complete frames, the partial frame at
 * the end, the error and the length it claimed, the bytes consumed, the
 * carried tail); all logs must be identical. The first complete frame,
 * and the raw bytes as well, go through frame_parse_command(), checked
 * against a reference written here that splits on every space first and
 * judges the pieces (names, then SUB's options since=ID and ids=1); the
 * names of a command that parses must render back to its input up to the
 * options, and the options found must be the reference's.
 * Frames built with frame_encode_header() around pieces of the input
 * parse back to those pieces.
 *
 * Invariants checked: event data lies inside the consumed bytes of the
 * buffer given; pieces of a frame add up to its header's length, with
 * first and fin where they belong; an empty piece only for an empty
 * frame; no frame passes max_message, and a longer one fails before any
 * of its payload; the carried tail is at most 3 bytes; nothing is
 * reported after an error.
 *
 * Must not: allocate through mem.c (the parser needs none) or keep state
 * between inputs beyond scratch buffers that each run overwrites.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_frame.c
 *        src/frame.c   (or scripts/fuzz.sh 60 frame)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "check.h"

#define MAX_IN 65536
#define MAX_PIECE 600
/* Byte-at-a-time runs cost a call per byte; keep them to short inputs. */
#define TRICKLE_MAX 4096
/* A record costs 5 bytes of log plus its payload; a frame is at least 4
 * bytes of input. */
#define LOG_CAP (3 * MAX_IN + 64)

static const uint64_t max_table[8] = {0, 1, 2, 3, 4, 16, 300, 65536};
static const uint32_t chan_table[8] = {0, 1, 2, 3, 4, 8, 100, 0};

/* ---- one parse run ------------------------------------------------------ */

struct run {
    struct frame_parser p;
    uint64_t max;
    uint8_t carry[FRAME_HEADER];
    size_t carry_len;
    uint8_t tmp[FRAME_HEADER + MAX_PIECE];
    bool failed;
    int err;
    uint32_t claimed;
    size_t consumed;
    bool in_frame;
    uint32_t cur_len;
    size_t frame_len; /* bytes of the current frame so far */
    uint8_t frame[MAX_IN];
    bool have_first; /* the first complete frame, kept for the command */
    size_t first_len;
    uint8_t first[MAX_IN];
    size_t log_len;
    uint8_t log[LOG_CAP];
};

static struct run runs[3];

static void log_put(struct run *r, const void *p, size_t n)
{
    CHECK(r->log_len + n <= sizeof(r->log));
    if (n)
        memcpy(r->log + r->log_len, p, n);
    r->log_len += n;
}

static void log_rec(struct run *r, uint8_t tag, const uint8_t *p, size_t n)
{
    uint32_t n32 = (uint32_t)n;

    log_put(r, &tag, 1);
    log_put(r, &n32, 4);
    log_put(r, p, n);
}

static void on_data(struct run *r, const struct frame_event *ev)
{
    CHECK(ev->type == FRAME_EV_DATA);
    if (ev->first) {
        CHECK(!r->in_frame);
        r->in_frame = true;
        r->cur_len = ev->frame_len;
        r->frame_len = 0;
    } else {
        CHECK(r->in_frame);
        CHECK(ev->frame_len == r->cur_len);
    }
    if (r->max)
        CHECK(ev->frame_len <= r->max);
    if (ev->len == 0)
        CHECK(ev->first && ev->fin && ev->frame_len == 0);
    CHECK(r->frame_len + ev->len <= r->cur_len);
    CHECK(r->frame_len + ev->len <= sizeof(r->frame));
    memcpy(r->frame + r->frame_len, ev->data, ev->len);
    r->frame_len += ev->len;
    CHECK(ev->fin == (r->frame_len == r->cur_len));
    if (!ev->fin)
        return;
    r->in_frame = false;
    if (!r->have_first) {
        r->have_first = true;
        r->first_len = r->frame_len;
        memcpy(r->first, r->frame, r->frame_len);
    }
    log_rec(r, 'F', r->frame, r->frame_len);
}

/* Parses buf[0..n) until the parser wants more; returns bytes consumed. */
static size_t process(struct run *r, const uint8_t *buf, size_t n)
{
    size_t off = 0;

    while (off < n) {
        struct frame_event ev;
        int err = 0;
        ssize_t k = frame_parse(&r->p, buf + off, n - off, &ev, &err);

        if (k < 0) {
            CHECK(k == -1);
            CHECK(ev.type == FRAME_EV_NONE);
            CHECK(err == FRAME_ERR_TOO_BIG);
            CHECK(r->p.s.closed);
            CHECK(!r->in_frame);
            CHECK(n - off >= FRAME_HEADER);
            /* The claimed length is the header's, and over the limit. */
            CHECK(ev.frame_len ==
                  ((uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 |
                   (uint32_t)buf[off + 2] << 8 | buf[off + 3]));
            CHECK(r->max && r->max < 0xFFFFFFFF && ev.frame_len > r->max);
            r->failed = true;
            r->err = err;
            r->claimed = ev.frame_len;
            return off;
        }
        if (k == 0) {
            CHECK(ev.type == FRAME_EV_NONE);
            break;
        }
        CHECK((size_t)k <= n - off);
        if (ev.type == FRAME_EV_DATA) {
            CHECK(ev.data >= buf + off);
            CHECK(ev.data + ev.len <= buf + off + k);
            on_data(r, &ev);
        } else {
            CHECK(ev.type == FRAME_EV_NONE);
            CHECK(k == FRAME_HEADER); /* a header alone */
        }
        off += (size_t)k;
        r->consumed += (size_t)k;
    }
    return off;
}

/* Feeds chunk[0..n) behind the carried tail, as conn.c would. */
static void feed(struct run *r, const uint8_t *chunk, size_t n)
{
    const uint8_t *buf = chunk;
    size_t len = n;
    size_t off;

    if (r->failed) {
        struct frame_event ev;
        int err = 0;
        /* Nothing is processed after an error. */
        CHECK(frame_parse(&r->p, chunk, n, &ev, &err) == 0);
        CHECK(ev.type == FRAME_EV_NONE);
        return;
    }
    if (r->carry_len) {
        CHECK(n <= MAX_PIECE);
        len = r->carry_len + n;
        memcpy(r->tmp, r->carry, r->carry_len);
        memcpy(r->tmp + r->carry_len, chunk, n);
        buf = r->tmp;
    }
    off = process(r, buf, len);
    if (r->failed)
        return;
    r->carry_len = len - off;
    CHECK(r->carry_len < FRAME_HEADER);
    /* Payload is never left behind: only a header's first bytes are. */
    if (r->carry_len)
        CHECK(!r->p.s.in_frame);
    memmove(r->carry, buf + off, r->carry_len);
}

static void run_init(struct run *r, uint64_t max)
{
    frame_parser_init(&r->p, max);
    r->max = max;
    r->carry_len = 0;
    r->failed = false;
    r->err = 0;
    r->claimed = 0;
    r->consumed = 0;
    r->in_frame = false;
    r->frame_len = 0;
    r->have_first = false;
    r->first_len = 0;
    r->log_len = 0;
}

/* Ends a run: the partial frame and the totals join the log. Every byte
 * that arrived is delivered, so they do not depend on the split. */
static void run_end(struct run *r)
{
    uint8_t tail[24];
    uint64_t c = r->consumed;

    if (r->in_frame)
        log_rec(r, 'P', r->frame, r->frame_len);
    memset(tail, 0, sizeof(tail));
    tail[0] = r->failed;
    tail[1] = (uint8_t)r->err;
    memcpy(tail + 2, &r->claimed, 4);
    memcpy(tail + 6, &c, 8);
    tail[14] = (uint8_t)(r->failed ? 0 : r->carry_len);
    log_put(r, tail, sizeof(tail));
}

/* A small xorshift generator seeded from the input, for the pieces. */
static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static size_t piece_len(uint32_t *rng)
{
    uint32_t v = rng_next(rng);

    switch (v & 3) {
    case 0:
        return 1;
    case 1:
        return 1 + (v >> 8) % 8;
    case 2:
        return 1 + (v >> 8) % 160;
    default:
        return 1 + (v >> 8) % MAX_PIECE;
    }
}

static void fuzz_parse(const uint8_t *d, size_t n, uint64_t max, uint32_t seed)
{
    uint32_t rng = seed | 1;
    int nruns = n <= TRICKLE_MAX ? 3 : 2;

    for (int i = 0; i < nruns; i++)
        run_init(&runs[i], max);
    feed(&runs[0], d, n);
    run_end(&runs[0]);
    for (size_t off = 0; off < n;) {
        size_t k = piece_len(&rng);
        if (k > n - off)
            k = n - off;
        feed(&runs[1], d + off, k);
        off += k;
    }
    run_end(&runs[1]);
    if (nruns == 3) {
        for (size_t off = 0; off < n; off++)
            feed(&runs[2], d + off, 1);
        run_end(&runs[2]);
    }
    for (int i = 1; i < nruns; i++) {
        CHECK(runs[i].log_len == runs[0].log_len);
        CHECK(memcmp(runs[i].log, runs[0].log, runs[0].log_len) == 0);
    }
}

/* ---- the command, against a reference ----------------------------------- */

/* The channel rule, written as a set and a length. */
static bool ref_name(const uint8_t *p, size_t n)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@";

    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0 || !strchr(ok, p[i]))
            return false;
    }
    return true;
}

#define MAX_TOK (MAX_IN / 2 + 2)
static size_t tok_at[MAX_TOK], tok_len[MAX_TOK];

/*
 * The reference command parser: split p[0..n) at every space into tokens
 * (empty ones included), then judge them left to right.
 * Return value: 0 or the frame_command_error; *verb on success.
 */
/* What ref_command() found: the last name's token, the options. */
static size_t ref_names;
static bool ref_opt_ids;
static const uint8_t *ref_opt_since;

static int ref_command(const uint8_t *p, size_t n, uint32_t max, size_t *ntok,
                       int *verb)
{
    size_t t = 0, a = 0;
    uint32_t count = 0;

    ref_names = 0;
    ref_opt_ids = false;
    ref_opt_since = NULL;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != ' ')
            continue;
        CHECK(t < MAX_TOK);
        tok_at[t] = a;
        tok_len[t] = i - a;
        t++;
        a = i + 1;
    }
    *ntok = t;
    if (tok_len[0] != 3 ||
        (memcmp(p, "SUB", 3) != 0 && memcmp(p, "PUB", 3) != 0))
        return FRAME_CMD_EVERB;
    *verb = p[0] == 'S' ? FRAME_CMD_SUB : FRAME_CMD_PUB;
    if (t == 1 || (t == 2 && tok_len[1] == 0))
        return FRAME_CMD_ENOCHAN;
    for (size_t i = 1; i < t; i++) {
        const uint8_t *w = p + tok_at[i];
        size_t wl = tok_len[i];

        if (wl && memchr(w, '=', wl)) {
            /* An option (SUB only, after the names, each once). */
            if (count == 0)
                return FRAME_CMD_ENOCHAN;
            if (*verb == FRAME_CMD_PUB)
                return FRAME_CMD_EOPTION;
            if (wl == 5 && !memcmp(w, "ids=1", 5) && !ref_opt_ids) {
                ref_opt_ids = true;
                continue;
            }
            if (wl > 6 && wl - 6 <= FRAME_SINCE_MAX &&
                !memcmp(w, "since=", 6) && !ref_opt_since) {
                for (size_t j = 6; j < wl; j++)
                    if (!strchr("0123456789abcdefABCDEF:", w[j]) || !w[j])
                        return FRAME_CMD_EOPTION;
                ref_opt_since = w + 6;
                continue;
            }
            return FRAME_CMD_EOPTION;
        }
        if (wl && (ref_opt_ids || ref_opt_since))
            return FRAME_CMD_EOPTION;
        if (!ref_name(w, wl))
            return FRAME_CMD_EBADNAME;
        count++;
        ref_names = i;
        if (*verb == FRAME_CMD_PUB && count > 1)
            return FRAME_CMD_ETOOMANY;
        if (max && count > max)
            return FRAME_CMD_ETOOMANY;
    }
    return 0;
}

static uint8_t render[MAX_IN + 8];

static void fuzz_command(const uint8_t *p, size_t n, uint32_t max)
{
    struct frame_command cmd;
    size_t ntok = 0, pos = 0, len, k = 0, i = 1;
    int verb = 0;
    int want = ref_command(p, n, max, &ntok, &verb);
    int got = frame_parse_command(p, n, max, &cmd);
    const uint8_t *name;

    CHECK(got == want);
    if (got != 0) {
        CHECK(cmd.why && cmd.why[0]);
        CHECK(!frame_command_next(&cmd, &pos, &name, &len));
        return;
    }
    CHECK(cmd.why == NULL);
    CHECK((int)cmd.verb == verb);
    CHECK(cmd.n_channels == ref_names);
    CHECK(n <= frame_command_max_opts(max));
    CHECK(cmd.ids == ref_opt_ids);
    CHECK(cmd.since == ref_opt_since);
    /* Walk the names; they are the tokens, and render back to p. */
    memcpy(render, cmd.verb == FRAME_CMD_SUB ? "SUB" : "PUB", 3);
    k = 3;
    while (frame_command_next(&cmd, &pos, &name, &len)) {
        CHECK(i < ntok);
        CHECK(name == p + tok_at[i] && len == tok_len[i]);
        CHECK(channel_name_valid(name, len));
        render[k++] = ' ';
        memcpy(render + k, name, len);
        k += len;
        i++;
    }
    CHECK(i == ref_names + 1);
    /* The names render back to p up to the options. */
    CHECK(k <= n && memcmp(render, p, k) == 0);
    CHECK(k == n || (ntok > ref_names + 1 && p[k] == ' '));
}

static void fuzz_names(const uint8_t *d, size_t n)
{
    for (size_t a = 0; a < n && a < 512; a += 37) {
        size_t len = n - a < 140 ? n - a : 140;
        for (size_t l = 0; l <= len; l += 1 + l / 8)
            CHECK(channel_name_valid(d + a, l) == ref_name(d + a, l));
    }
}

/* ---- encoding ------------------------------------------------------------ */

static uint8_t enc[MAX_IN * 5 + 16];

/* Frames built with frame_encode_header() around pieces of d parse back
 * to those pieces, whatever the split. */
static void fuzz_encode(const uint8_t *d, size_t n, uint32_t seed)
{
    uint32_t rng = seed | 1;
    size_t off = 0, k = 0, nframes = 0;
    struct run *r = &runs[0];
    size_t rd = 0, zeros = 0;

    while (off < n) {
        size_t len = rng_next(&rng) % 300;
        if (len == 0 && ++zeros > 8)
            len = 1; /* a few empty frames, not a log full of them */
        if (len > n - off)
            len = n - off;
        frame_encode_header(enc + k, (uint32_t)len);
        memcpy(enc + k + FRAME_HEADER, d + off, len);
        k += FRAME_HEADER + len;
        off += len;
        nframes++;
    }
    run_init(r, 300);
    feed(r, enc, k);
    run_end(r);
    CHECK(!r->failed);
    CHECK(r->consumed == k);
    CHECK(!r->in_frame);
    /* The log holds each frame as 'F', its length, its bytes. */
    off = 0;
    for (size_t f = 0; f < nframes; f++) {
        uint32_t len;
        CHECK(r->log[rd] == 'F');
        memcpy(&len, r->log + rd + 1, 4);
        CHECK(memcmp(r->log + rd + 5, d + off, len) == 0);
        rd += 5 + len;
        off += len;
    }
    CHECK(off == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    uint32_t seed = 2166136261u;
    uint64_t max;
    uint32_t maxch;

    if (n < 1 || n > MAX_IN)
        return 0;
    max = max_table[d[0] & 7];
    maxch = chan_table[(d[0] >> 3) & 7];
    for (size_t i = 0; i < n; i++)
        seed = (seed ^ d[i]) * 16777619u;

    fuzz_parse(d + 1, n - 1, max, seed);
    if (runs[0].have_first)
        fuzz_command(runs[0].first, runs[0].first_len, maxch);
    fuzz_command(d + 1, n - 1, maxch);
    fuzz_names(d + 1, n - 1);
    fuzz_encode(d + 1, n - 1, seed);
    return 0;
}
