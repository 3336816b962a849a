/*
 * test_history.c - unit tests for history.c, each channel's last
 * messages: ids (EPOCH:OFFSET written and read back, every malformed form
 * refused), offsets that follow one another per channel, eviction by size
 * (per channel), by TTL (the oldest overall first, and the time until the
 * next expiry) and by bytes (over all channels, oldest first whatever the
 * channel), lookups of a since-id (exact, found, too old, too many, other
 * epoch, past the last offset, no history), a held channel outliving its
 * entries with its epoch, a channel freed once it has neither, a new epoch
 * when a channel's history is made again, messages shared (not copied),
 * every allocation of an append failing in turn, and zero history bytes
 * and zero live bytes at the end. Also the SUB options of frame.c that
 * carry a since-id (since=ID, ids=1), SSE events with text ids, and
 * pub/sub's recovery on real conns: the exact reset notice, a replay that
 * meets a pending publish with no duplicate, the id envelope, a reset per
 * channel when one id names several.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "conn.h"
#include "frame.h"
#include "history.h"
#include "mem.h"
#include "loop.h"
#include "msg.h"
#include "pubsub.h"
#include "sse.h"

static struct history *mk(uint32_t size, uint32_t ttl, uint64_t max_bytes)
{
    struct history_opts o = {
        .size = size, .ttl_ms = ttl, .max_bytes = max_bytes, .seed = 42};
    struct history *h = history_new(&o);

    assert_non_null(h);
    return h;
}

/* Appends text s to channel name at tick now; returns the offset. */
static uint64_t put(struct history *h, const char *name, const char *s,
                    uint32_t now)
{
    struct hchan *hc = history_chan(h, name, strlen(name), true);
    struct msg *m = msg_new(s, strlen(s));
    uint64_t off = 0;

    assert_non_null(hc);
    assert_non_null(m);
    assert_int_equal(history_append(h, hc, m, true, now, &off), 0);
    msg_unref(m); /* the history holds its own reference */
    return off;
}

static struct hchan *chan(struct history *h, const char *name)
{
    return history_chan(h, name, strlen(name), false);
}

static void done(struct history *h)
{
    history_free(h);
    assert_int_equal(mem_live_bytes(MEM_HISTORY), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_ids(void **state)
{
    static const char *const bad[] = {
        "",
        ":",
        "1:",
        ":1",
        "1",
        "g:1",
        "1:1a",
        "1:-1",
        " 1:1",
        "1:1 ",
        "1::1",
        "12345678901234567:1",    /* 17 hex digits */
        "1:18446744073709551616", /* 2^64 */
    };
    char id[HISTORY_ID_MAX];
    uint64_t e, o;
    size_t n;

    (void)state;
    n = history_format_id(id, 0xabc, 7);
    assert_string_equal(id, "abc:7");
    assert_int_equal(n, 5);
    n = history_format_id(id, UINT64_MAX, UINT64_MAX);
    assert_string_equal(id, "ffffffffffffffff:18446744073709551615");
    assert_int_equal(n, HISTORY_ID_MAX - 1);
    assert_true(history_parse_id(id, n, &e, &o));
    assert_true(e == UINT64_MAX && o == UINT64_MAX);
    assert_true(history_parse_id("ABC:0", 5, &e, &o));
    assert_true(e == 0xabc && o == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(history_parse_id(bad[i], strlen(bad[i]), &e, &o));
    assert_string_equal(history_find_name(HIST_RESET_TOO_OLD), "too_old");
    assert_string_equal(history_evict_name(HIST_EVICT_BYTES), "bytes");
}

static void test_size_and_since(void **state)
{
    struct history *h = mk(3, 60000, 0);
    const struct history_stats *st = history_stats(h);
    const struct hentry *first;
    struct hchan *hc;
    uint32_t count;
    uint64_t ep;

    (void)state;
    for (int i = 1; i <= 5; i++)
        assert_int_equal(put(h, "a", i == 5 ? "five" : "x", 0), i);
    hc = chan(h, "a");
    ep = history_chan_epoch(hc);
    assert_true(ep != 0);
    assert_int_equal(history_chan_count(hc), 3);
    assert_int_equal(history_chan_last(hc), 5);
    assert_int_equal(st->messages, 3);
    assert_int_equal(st->evicted[HIST_EVICT_SIZE], 2);
    /* Offsets go on per channel: another channel starts at 1, its own
     * epoch. */
    assert_int_equal(put(h, "b", "y", 0), 1);
    assert_true(history_chan_epoch(chan(h, "b")) != ep);

    /* Exact: the last id, nothing missed. */
    assert_int_equal(history_since(hc, ep, 5, 0, &first, &count), HIST_FOUND);
    assert_null(first);
    assert_int_equal(count, 0);
    /* Found: 2 and 3 are gone, 3..5 are here: after 2, three. */
    assert_int_equal(history_since(hc, ep, 2, 0, &first, &count), HIST_FOUND);
    assert_int_equal(count, 3);
    assert_int_equal(first->off, 3);
    assert_int_equal(first->cnext->off, 4);
    assert_int_equal(first->cnext->cnext->off, 5);
    assert_memory_equal(first->cnext->cnext->m->data, "five", 4);
    assert_true(first->text);
    /* After 4: just 5. */
    assert_int_equal(history_since(hc, ep, 4, 0, &first, &count), HIST_FOUND);
    assert_int_equal(count, 1);
    assert_int_equal(first->off, 5);
    /* Too old: 2 is gone, a client that saw 1 missed it. */
    assert_int_equal(history_since(hc, ep, 1, 0, &first, &count),
                     HIST_RESET_TOO_OLD);
    assert_null(first);
    /* Too many: 3 missed, at most 2. */
    assert_int_equal(history_since(hc, ep, 2, 2, &first, &count),
                     HIST_RESET_TOO_MANY);
    assert_int_equal(history_since(hc, ep, 3, 2, &first, &count), HIST_FOUND);
    assert_int_equal(count, 2);
    /* Another epoch, an offset past the last, no history at all. */
    assert_int_equal(history_since(hc, ep + 1, 4, 0, &first, &count),
                     HIST_RESET_EPOCH);
    assert_int_equal(history_since(hc, ep, 6, 0, &first, &count),
                     HIST_RESET_EPOCH);
    assert_int_equal(history_since(NULL, ep, 4, 0, &first, &count),
                     HIST_RESET_EPOCH);
    done(h);
}

static void test_ttl(void **state)
{
    struct history *h = mk(10, 100, 0);
    const struct history_stats *st = history_stats(h);
    uint32_t in = 0;

    (void)state;
    assert_false(history_next_expiry(h, 0, &in));
    put(h, "a", "1", 1000);
    put(h, "b", "2", 1050);
    put(h, "a", "3", 1060);
    assert_int_equal(st->channels, 2);
    assert_true(history_next_expiry(h, 1020, &in));
    assert_int_equal(in, 80);
    /* Not yet: nothing goes. */
    assert_int_equal(history_expire(h, 1099), 0);
    /* The oldest overall goes; a's second stays. */
    assert_int_equal(history_expire(h, 1100), 1);
    assert_int_equal(history_chan_count(chan(h, "a")), 1);
    assert_true(history_next_expiry(h, 1100, &in));
    assert_int_equal(in, 50);
    /* Past due: 0. */
    assert_true(history_next_expiry(h, 1500, &in));
    assert_int_equal(in, 0);
    /* All go, and with no subscriber the channels are freed. */
    assert_int_equal(history_expire(h, 1160), 2);
    assert_int_equal(st->evicted[HIST_EVICT_TTL], 3);
    assert_int_equal(st->messages, 0);
    assert_int_equal(st->channels, 0);
    assert_null(chan(h, "a"));
    assert_int_equal(st->bytes, 0);
    assert_false(history_next_expiry(h, 1160, &in));
    /* Nothing kept: the history tag is back to 0 (the struct is
     * pub/sub's). */
    assert_int_equal(mem_live_bytes(MEM_HISTORY), 0);
    assert_int_equal(mem_live_bytes(MEM_MSG), 0);
    done(h);
}

static void test_bytes(void **state)
{
    struct history *h;
    const struct history_stats *st;
    char big[1000];
    int64_t one;

    (void)state;
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* Learn what a channel with one such message costs. */
    h = mk(100, 60000, 0);
    put(h, "a", big, 0);
    one = history_stats(h)->bytes;
    done(h);

    /* Room for about four: a, b, a, b, c ... the oldest go first,
     * whatever their channel. */
    h = mk(100, 60000, (uint64_t)one * 4);
    st = history_stats(h);
    put(h, "a", big, 0);
    put(h, "b", big, 1);
    put(h, "a", big, 2);
    put(h, "b", big, 3);
    put(h, "c", big, 4);
    put(h, "c", big, 5);
    assert_true((uint64_t)st->bytes <= (uint64_t)one * 4);
    assert_true(st->evicted[HIST_EVICT_BYTES] >= 2);
    /* a's first went first; the newest are all here. */
    assert_true(history_chan_count(chan(h, "a")) <= 1);
    assert_int_equal(history_chan_count(chan(h, "c")), 2);
    assert_int_equal(history_chan_last(chan(h, "c")), 2);
    /* A burst over many channels stays under the bound. */
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof(name), "ch%d", i % 37);
        put(h, name, big, (uint32_t)(10 + i));
        assert_true((uint64_t)st->bytes <= (uint64_t)one * 4);
    }
    /* A message alone over the bound goes at once; its channel too. */
    history_free(h);
    h = mk(100, 60000, 64);
    st = history_stats(h);
    put(h, "solo", big, 0);
    assert_int_equal(st->messages, 0);
    assert_int_equal(st->channels, 0);
    done(h);
}

static void test_hold_and_epochs(void **state)
{
    struct history *h = mk(5, 100, 0);
    const struct history_stats *st = history_stats(h);
    struct hchan *hc;
    const struct hentry *first;
    uint32_t count;
    uint64_t ep, ep2;

    (void)state;
    /* A subscribed channel (held) keeps its record, epoch and offsets
     * after its entries expire. */
    hc = history_chan(h, "a", 1, true);
    history_hold(hc);
    ep = history_chan_epoch(hc);
    put(h, "a", "1", 0);
    put(h, "a", "2", 0);
    history_expire(h, 500);
    assert_int_equal(history_chan_count(hc), 0);
    assert_true(chan(h, "a") == hc);
    assert_int_equal(history_chan_epoch(hc), ep);
    /* Its subscriber saw 2: nothing missed. One that saw 1 missed 2,
     * which expired: too old. */
    assert_int_equal(history_since(hc, ep, 2, 0, &first, &count), HIST_FOUND);
    assert_int_equal(history_since(hc, ep, 1, 0, &first, &count),
                     HIST_RESET_TOO_OLD);
    assert_int_equal(put(h, "a", "3", 600), 3);
    history_release(h, hc); /* an entry left: it stays */
    assert_non_null(chan(h, "a"));
    history_expire(h, 1000);
    assert_null(chan(h, "a"));
    assert_int_equal(st->channels, 0);
    /* Made again: a new epoch, offsets from 1; the old id is a reset. */
    assert_int_equal(put(h, "a", "again", 1000), 1);
    hc = chan(h, "a");
    ep2 = history_chan_epoch(hc);
    assert_true(ep2 != ep);
    assert_int_equal(history_since(hc, ep, 3, 0, &first, &count),
                     HIST_RESET_EPOCH);
    /* Released with no entry: freed at once. */
    hc = history_chan(h, "b", 1, true);
    history_hold(hc);
    history_release(h, hc);
    assert_null(chan(h, "b"));
    done(h);

    /* Another seed (another boot): other epochs for the same names. */
    {
        struct history_opts o = {.size = 1, .ttl_ms = 1, .seed = 43};
        struct history *h2 = history_new(&o);
        struct history *h1 = mk(1, 1, 0);
        struct hchan *c1 = history_chan(h1, "a", 1, true);
        struct hchan *c2 = history_chan(h2, "a", 1, true);

        assert_true(history_chan_epoch(c1) != history_chan_epoch(c2));
        history_hold(c1);
        history_release(h1, c1);
        history_hold(c2);
        history_release(h2, c2);
        history_free(h2);
        done(h1);
    }
}

static void test_shared_not_copied(void **state)
{
    struct history *h = mk(5, 100, 0);
    struct hchan *hc;
    struct msg *m = msg_new("payload", 7);
    uint64_t off;

    (void)state;
    hc = history_chan(h, "a", 1, true);
    assert_int_equal(history_append(h, hc, m, false, 0, &off), 0);
    /* The entry holds the same message: one more reference, no copy. */
    assert_int_equal(m->refs, 2);
    assert_true(msg_shared(m));
    assert_false(chan(h, "a") == NULL);
    history_expire(h, 100);
    assert_int_equal(m->refs, 1);
    msg_unref(m);
    done(h);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    for (uint64_t n = 1;; n++) {
        struct history *h = mk(5, 100, 0);
        struct hchan *hc = history_chan(h, "a", 1, true);
        struct msg *m = msg_new("x", 1);
        uint64_t off = 0;
        int rc;

        assert_non_null(hc);
        history_hold(hc);
        mem_fail_at(n);
        rc = history_append(h, hc, m, true, 0, &off);
        if (mem_fail_fired()) {
            assert_int_equal(rc, -ENOMEM);
            /* Nothing changed: no entry, no offset used. */
            assert_int_equal(history_chan_count(hc), 0);
            assert_int_equal(history_chan_last(hc), 0);
            assert_int_equal(m->refs, 1);
        } else {
            assert_int_equal(rc, 0);
        }
        mem_fail_at(0);
        history_release(h, hc);
        msg_unref(m);
        done(h);
        if (rc == 0)
            break;
    }
}

static void test_sub_options(void **state)
{
    struct frame_command c;
    const char *s;

    (void)state;
    s = "SUB a b since=abc:12 ids=1";
    assert_int_equal(frame_parse_command((const uint8_t *)s, strlen(s), 0, &c),
                     0);
    assert_int_equal(c.n_channels, 2);
    assert_int_equal(c.channels_len, 3); /* "a b" */
    assert_int_equal(c.since_len, 6);
    assert_memory_equal(c.since, "abc:12", 6);
    assert_true(c.ids);
    s = "SUB a ids=1";
    assert_int_equal(frame_parse_command((const uint8_t *)s, strlen(s), 0, &c),
                     0);
    assert_null(c.since);
    assert_true(c.ids);
    assert_int_equal(c.channels_len, 1);
    {
        static const char *const bad[] = {
            "SUB since=1:1",   "SUB a since=1:1 b",
            "SUB a ids=2",     "SUB a since=1:1 since=1:2",
            "SUB a since=",    "SUB a since=x:1",
            "PUB a since=1:1", "SUB a foo=1",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            assert_true(frame_parse_command((const uint8_t *)bad[i],
                                            strlen(bad[i]), 0, &c) < 0);
            assert_non_null(c.why);
        }
    }
    /* The longest with options fits frame_command_max_opts(). */
    {
        char big[3 + 129 + FRAME_CMD_OPTS_MAX + 1];
        int n =
            snprintf(big, sizeof(big), "SUB %0128d since=%040d ids=1", 0, 0);
        big[4] = 'a';
        memset(big + 4 + 128 + 7, 'f', 16);
        big[4 + 128 + 7 + 16] = ':';
        assert_int_equal((size_t)n, frame_command_max_opts(1));
        assert_int_equal(
            frame_parse_command((const uint8_t *)big, (size_t)n, 1, &c), 0);
    }
}

/* SSE events with a text id (sse.c): EPOCH:OFFSET, and none at all for a
 * notice that must leave the client's last id as it is. */
static void test_sse_text_ids(void **state)
{
    uint8_t out[128];
    size_t n;

    (void)state;
    n = sse_event_size_sid("ab:7", 4, NULL, (const uint8_t *)"x", 1);
    assert_int_equal(n, strlen("id: ab:7\ndata: x\n\n"));
    assert_int_equal(sse_encode_event_sid(out, sizeof(out), "ab:7", 4, NULL,
                                          (const uint8_t *)"x", 1),
                     n);
    assert_memory_equal(out, "id: ab:7\ndata: x\n\n", n);
    n = sse_encode_event_sid(out, sizeof(out), "", 0, "dropped",
                             (const uint8_t *)"3", 1);
    assert_int_equal(n, strlen("event: dropped\ndata: 3\n\n"));
    assert_memory_equal(out, "event: dropped\ndata: 3\n\n", n);
    /* No line end, NUL, or over SSE_ID_MAX in an id. */
    assert_int_equal(sse_event_size_sid("a\nb", 3, NULL, NULL, 0), 0);
    assert_int_equal(sse_event_size_sid("a\0b", 3, NULL, NULL, 0), 0);
    assert_int_equal(
        sse_event_size_sid("0123456789012345678901234567890123456789x", 41,
                           NULL, NULL, 0),
        0);
    /* The numeric form is unchanged. */
    assert_int_equal(sse_encode_event(out, sizeof(out), 12, NULL, NULL, 0),
                     strlen("id: 12\ndata: \n\n"));
}

/* ---- pub/sub with history, on real conns -------------------------------- */

/* Subscribers are one end of an AF_UNIX socketpair owned by a conn of a
 * plain protocol; the test reads the other end (as tests/unit/test_pubsub.c
 * does). */
struct penv {
    struct loop *l;
    struct conn_set set;
    struct pubsub *ps;
    struct conn *c[4];
    struct subscriber *s[4];
    int peer[4];
    int n;
};

static struct penv *live;

static size_t sink_data(struct conn *c, uint8_t *p, size_t len)
{
    (void)c;
    (void)p;
    return len;
}

static void sink_close(struct conn *c, enum close_reason why)
{
    (void)why;
    for (int i = 0; live && i < live->n; i++) {
        if (live->c[i] == c) {
            pubsub_subscriber_free(live->ps, live->s[i]);
            live->s[i] = NULL;
        }
    }
}

static const struct conn_proto sink = {
    .name = "sink", .on_data = sink_data, .on_close = sink_close};

static void penv_open(struct penv *e)
{
    struct conn_limits lim = {.write_timeout_ms = 30000,
                              .queue_limit = 1 << 20};
    struct pubsub_opts o = {.max_channels = 100,
                            .max_channels_per_conn = 8,
                            .close_timeout_ms = 1000,
                            .history_size = 10,
                            .history_ttl_ms = 60000,
                            .recovery_max = 100,
                            .history_seed = 7};

    memset(e, 0, sizeof(*e));
    e->l = loop_new(65536);
    assert_non_null(e->l);
    assert_int_equal(conn_set_init(&e->set, e->l, &lim), 0);
    live = e;
    e->ps = pubsub_new(&e->set, &o);
    assert_non_null(e->ps);
}

static int psub(struct penv *e, enum pubsub_proto proto, const char *ch)
{
    int sv[2], i = e->n++;

    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
    e->c[i] =
        conn_new(&e->set, sv[0], NULL, &sink, 0, 60000, CLOSE_IDLE_TIMEOUT);
    assert_non_null(e->c[i]);
    e->peer[i] = sv[1];
    e->s[i] = pubsub_subscriber_new(e->ps, e->c[i], proto);
    assert_non_null(e->s[i]);
    assert_int_equal(pubsub_subscribe(e->ps, e->s[i], ch, strlen(ch)), 0);
    return i;
}

static void close_it(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

static void penv_close(struct penv *e)
{
    conn_set_each(&e->set, close_it, NULL);
    assert_int_equal(loop_run_once(e->l, 0), 0);
    pubsub_free(e->ps);
    live = NULL;
    conn_set_fini(&e->set);
    loop_free(e->l);
    for (int i = 0; i < e->n; i++)
        close(e->peer[i]);
    assert_int_equal(mem_live_bytes(MEM_HISTORY), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* What peer i has received so far (the loop runs to write it). */
static size_t drain(struct penv *e, int i, uint8_t *out, size_t cap)
{
    size_t n = 0;

    for (int k = 0; k < 5; k++) {
        ssize_t r;
        assert_int_equal(loop_run_once(e->l, 0), 0);
        while ((r = read(e->peer[i], out + n, cap - n)) > 0)
            n += (size_t)r;
    }
    return n;
}

static void pub(struct penv *e, const char *ch, const char *m)
{
    assert_true(pubsub_publish(e->ps, ch, strlen(ch), m, strlen(m), true) >= 0);
}

static void test_pubsub_recovery(void **state)
{
    struct penv e;
    uint8_t buf[4096];
    char want[512], epoch[20];
    const char *q;
    size_t n;
    int a, b, c;
    uint64_t ep, off;

    (void)state;
    penv_open(&e);
    a = psub(&e, PS_TCP, "ch");
    pub(&e, "ch", "m1");
    pub(&e, "ch", "m2");
    /* Learn the epoch from a reset (a WebSocket text notice). */
    c = psub(&e, PS_WEBSOCKET, "ch");
    pubsub_recover(e.ps, e.s[c], "ch", 2, 0, 0, false);
    n = drain(&e, c, buf, sizeof(buf));
    assert_true(n > 2 && buf[0] == 0x81 && buf[1] == n - 2);
    q = strstr((const char *)buf + 2, "\"id\":\"");
    assert_non_null(q);
    assert_true(history_parse_id(q + 6, strcspn(q + 6, "\""), &ep, &off));
    assert_int_equal(off, 2);
    snprintf(epoch, sizeof(epoch), "%llx", (unsigned long long)ep);
    snprintf(want, sizeof(want),
             "{\"moor_reset\":{\"channel\":\"ch\",\"reason\":\"epoch\","
             "\"id\":\"%s:2\"}}",
             epoch);
    assert_int_equal(n - 2, strlen(want));
    assert_memory_equal(buf + 2, want, n - 2);

    /* m3 is published and pending (not fanned out) when b subscribes with
     * since EPOCH:1: b gets m2 and m3 once each (the replay), then m4
     * live; a gets all four. */
    pub(&e, "ch", "m3");
    b = psub(&e, PS_TCP_IDS, "ch");
    pubsub_recover(e.ps, e.s[b], "ch", 2, ep, 1, false);
    pub(&e, "ch", "m4");
    pubsub_fan_out(e.ps);
    n = drain(&e, b, buf, sizeof(buf));
    {
        size_t k = 0;
        for (int i = 2; i <= 4; i++) {
            int w = snprintf(want + k, sizeof(want) - k, "....%s:%d ch\nm%d",
                             epoch, i, i);
            frame_encode_header((uint8_t *)want + k, (uint32_t)(w - 4));
            k += (size_t)w;
        }
        assert_int_equal(n, k);
        assert_memory_equal(buf, want, k);
    }
    n = drain(&e, a, buf, sizeof(buf));
    assert_int_equal(n, 4 * (4 + 2));
    assert_memory_equal(buf + 3 * 6 + 4, "m4", 2);
    /* Several channels with one id: a reset each, in the envelope. */
    assert_int_equal(pubsub_subscribe(e.ps, e.s[b], "other", 5), 0);
    pubsub_recover(e.ps, e.s[b], "other", 5, ep, 4, true);
    n = drain(&e, b, buf, sizeof(buf));
    assert_true(n > 4);
    assert_memory_equal(buf + 4,
                        "reset other\n{\"channel\":\"other\","
                        "\"reason\":\"several\"",
                        strlen("reset other\n{\"channel\":\"other\","
                               "\"reason\":\"several\""));
    assert_int_equal(pubsub_history_stats(e.ps)->replayed, 2);
    assert_int_equal(pubsub_history_stats(e.ps)->resets[HIST_RESET_SEVERAL], 1);
    penv_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_size_and_since),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_hold_and_epochs),
        cmocka_unit_test(test_shared_not_copied),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_sub_options),
        cmocka_unit_test(test_sse_text_ids),
        cmocka_unit_test(test_pubsub_recovery),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
