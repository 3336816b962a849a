/*
 * test_pubsub.c - unit tests for pubsub.c: subscribers and subscriptions,
 * the channel name rule, comma lists (all or none), the gauges, the two
 * channel limits (-ENOSPC, counted), publish counts and the exact frames a
 * subscriber receives (text stays text, binary stays binary, one shared
 * message per publish), a channel freed when its last subscriber leaves,
 * the slow-consumer policies (disconnect, drop-oldest with its notice, the
 * soft limit held for soft_time), every allocation of a publish failing in
 * turn, batches (a run of publishes on one channel is one message per
 * protocol, fanned out once, in publish order across channels, bounded in
 * size, counted message by message), and zero live bytes at the end of
 * every test.
 *
 * Fan-out runs on real conns: each subscriber is one end of an AF_UNIX
 * socketpair owned by a conn of a plain test protocol (no WebSocket), and
 * the test reads the other end. pubsub frames messages as WebSocket frames
 * for PS_WEBSOCKET subscribers whatever the conn's protocol, so the peer
 * parses server frames. What needs a WebSocket conn is not covered here:
 * ws_close_purge() returns early on a conn that is not a WebSocket, so a
 * "kicked" subscriber here is only marked (kicked, counted, delivered
 * nothing more); the close 1008 itself is tested in
 * tests/integration/test_pubsub.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "msg.h"
#include "pubsub.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the loop for about ms of wall time. */
static void run_for(struct loop *l, uint64_t ms)
{
    uint64_t dl = now_ms() + ms;

    do
        assert_int_equal(loop_run_once(l, 2), 0);
    while (now_ms() < dl);
}

static int64_t live_count(enum mem_tag tag)
{
    struct mem_tag_stats st;

    mem_stats(tag, &st);
    return st.live_count;
}

#define MAXC 8

/* The env a test holds open; leftover_setup() frees it after a failure. */
struct env {
    struct loop *l;
    struct conn_set set;
    struct pubsub *ps;
    int n;
    struct conn *c[MAXC];
    struct subscriber *s[MAXC];
    int peer[MAXC];
    int closes;
};

static struct env *live_env;
static struct env E; /* static: outlives a failed test */

/* ---- the test protocol: swallows input, frees its subscriber ------------ */

static size_t sink_on_data(struct conn *c, uint8_t *p, size_t len)
{
    (void)c;
    (void)p;
    return len;
}

/* As push.c does for WebSocket subscribers: the pub/sub side of a conn
 * goes in its on_close. */
static void sink_on_close(struct conn *c, enum close_reason why)
{
    struct env *e = live_env;

    (void)why;
    if (!e)
        return;
    for (int i = 0; i < e->n; i++) {
        if (e->c[i] == c) {
            pubsub_subscriber_free(e->ps, e->s[i]);
            e->s[i] = NULL;
            e->c[i] = NULL;
            e->closes++;
        }
    }
}

static const struct conn_proto sink_proto = {
    .name = "sink",
    .on_data = sink_on_data,
    .on_close = sink_on_close,
};

/* ---- fixture ------------------------------------------------------------ */

static void env_open(struct env *e, uint32_t queue_limit,
                     const struct pubsub_opts *o)
{
    struct conn_limits lim = {.write_timeout_ms = 30000,
                              .queue_limit = queue_limit};

    memset(e, 0, sizeof(*e));
    e->l = loop_new(65536);
    assert_non_null(e->l);
    assert_int_equal(conn_set_init(&e->set, e->l, &lim), 0);
    live_env = e;
    e->ps = pubsub_new(&e->set, o);
    assert_non_null(e->ps);
}

static const struct pubsub_opts default_opts = {
    .max_channels = 1000,
    .max_channels_per_conn = 64,
    .close_timeout_ms = 1000,
    .policy = SLOW_DISCONNECT,
};

/* Adds a conn (on a socketpair) with a subscriber. sndbuf > 0 shrinks the
 * conn's send buffer so a peer that does not read stalls it soon. Returns
 * its index. */
static int add_sub_proto(struct env *e, int sndbuf, enum pubsub_proto proto)
{
    int sv[2], i = e->n;

    assert_true(i < MAXC);
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
    if (sndbuf > 0)
        assert_int_equal(
            setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)),
            0);
    e->c[i] = conn_new(&e->set, sv[0], NULL, &sink_proto, 0, 60000,
                       CLOSE_IDLE_TIMEOUT);
    assert_non_null(e->c[i]);
    e->peer[i] = sv[1];
    e->s[i] = pubsub_subscriber_new(e->ps, e->c[i], proto);
    assert_non_null(e->s[i]);
    e->n++;
    return i;
}

static int add_sub(struct env *e, int sndbuf)
{
    return add_sub_proto(e, sndbuf, PS_WEBSOCKET);
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

/* Frees a subscriber whose conn stays open (the conn is closed later). */
static void drop_sub(struct env *e, int i)
{
    pubsub_subscriber_free(e->ps, e->s[i]);
    e->s[i] = NULL;
}

/* Closes everything, frees everything, and checks nothing leaked. */
static void env_close(struct env *e)
{
    for (int i = 0; i < e->n; i++)
        if (e->s[i])
            drop_sub(e, i);
    conn_set_each(&e->set, close_one, NULL);
    assert_int_equal(loop_run_once(e->l, 0), 0); /* frees closed conns */
    assert_int_equal(pubsub_stats(e->ps)->channels, 0);
    assert_int_equal(pubsub_stats(e->ps)->subscriptions, 0);
    assert_int_equal(pubsub_stats(e->ps)->subscribers, 0);
    pubsub_free(e->ps);
    assert_int_equal(mem_live_bytes(MEM_CHANNEL), 0);
    live_env = NULL;
    conn_set_fini(&e->set);
    loop_free(e->l);
    for (int i = 0; i < e->n; i++)
        close(e->peer[i]);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static int leftover_setup(void **state)
{
    struct env *e = live_env;

    (void)state;
    mem_fail_at(0);
    if (!e)
        return 0;
    for (int i = 0; i < e->n; i++)
        if (e->s[i])
            drop_sub(e, i);
    conn_set_each(&e->set, close_one, NULL);
    loop_run_once(e->l, 0);
    pubsub_free(e->ps);
    live_env = NULL;
    conn_set_fini(&e->set);
    loop_free(e->l);
    for (int i = 0; i < e->n; i++)
        close(e->peer[i]);
    return 0;
}

static const struct pubsub_stats *ST(void)
{
    return pubsub_stats(E.ps);
}

static int sub(int i, const char *name)
{
    return pubsub_subscribe(E.ps, E.s[i], name, strlen(name));
}

static int sub_list(int i, const char *list, const char **bad)
{
    return pubsub_subscribe_list(E.ps, E.s[i], list, strlen(list), bad);
}

/* A publish left in pub/sub's batch, as the loop's publishers leave it
 * (fanned out at the end of the iteration, or by the next publish on
 * another channel). */
static long pub_batched(const char *ch, const void *data, size_t len)
{
    return pubsub_publish(E.ps, ch, strlen(ch), data, len, true);
}

/* A publish fanned out at once: most tests check each publish's effect on
 * its own. */
static long pub(const char *ch, const void *data, size_t len, bool text)
{
    long r = pubsub_publish(E.ps, ch, strlen(ch), data, len, text);

    pubsub_fan_out(E.ps);
    return r;
}

static long pub_str(const char *ch, const char *s)
{
    return pub(ch, s, strlen(s), true);
}

/* Channels of subscriber i as a sorted, comma-separated list. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *channels_of(int i)
{
    static char raw[4096], out[4096];
    char *names[256];
    int n = 0;

    pubsub_subscriber_channels(E.s[i], raw, sizeof(raw));
    out[0] = '\0';
    for (char *t = strtok(raw, ","); t && n < 256; t = strtok(NULL, ","))
        names[n++] = t;
    qsort(names, (size_t)n, sizeof(*names), cmp_str);
    for (int k = 0; k < n; k++) {
        strcat(out, k ? "," : "");
        strcat(out, names[k]);
    }
    return out;
}

/* ---- the peer side: WebSocket server frames ------------------------------ */

struct frame {
    uint8_t op;
    bool fin;
    size_t len;
    const uint8_t *p; /* into the read buffer */
};

#define PEER_CAP (8u << 20)
static uint8_t peer_buf[PEER_CAP];

/* Reads what subscriber i's peer holds now (the loop must have flushed). */
static size_t peer_drain(int i)
{
    size_t len = 0;

    for (;;) {
        ssize_t n = read(E.peer[i], peer_buf + len, PEER_CAP - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        assert_true(len < PEER_CAP);
    }
    return len;
}

/* Parses whole server frames (unmasked, FIN) from buf; asserts that
 * nothing partial is left. Returns the number of frames. */
static int parse_frames(const uint8_t *buf, size_t len, struct frame *out,
                        int max)
{
    size_t off = 0;
    int n = 0;

    while (off < len) {
        size_t pl;
        assert_true(len - off >= 2);
        assert_true(n < max);
        out[n].fin = (buf[off] & 0x80) != 0;
        out[n].op = buf[off] & 0x0F;
        assert_int_equal(buf[off] & 0x70, 0);     /* no RSV bits */
        assert_int_equal(buf[off + 1] & 0x80, 0); /* server: unmasked */
        pl = buf[off + 1] & 0x7F;
        off += 2;
        if (pl == 126) {
            assert_true(len - off >= 2);
            pl = ((size_t)buf[off] << 8) | buf[off + 1];
            assert_true(pl >= 126); /* minimal length form */
            off += 2;
        } else if (pl == 127) {
            assert_true(len - off >= 8);
            pl = 0;
            for (int k = 0; k < 8; k++)
                pl = (pl << 8) | buf[off + (size_t)k];
            assert_true(pl > 0xFFFF);
            off += 8;
        }
        assert_true(len - off >= pl);
        out[n].len = pl;
        out[n].p = buf + off;
        off += pl;
        n++;
    }
    return n;
}

static bool frame_is(const struct frame *f, uint8_t op, const char *s)
{
    return f->op == op && f->fin && f->len == strlen(s) &&
           memcmp(f->p, s, f->len) == 0;
}

/* ---- subscribe, gauges, names ------------------------------------------- */

static void test_new_free(void **state)
{
    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    assert_int_equal(ST()->channels, 0);
    assert_int_equal(ST()->published, 0);
    assert_true(mem_live_bytes(MEM_CHANNEL) > 0);
    env_close(&E);
}

static void test_subscribe_gauges_and_leave(void **state)
{
    int64_t base_count;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    base_count = live_count(MEM_CHANNEL);
    add_sub(&E, 0);
    add_sub(&E, 0);
    /* A subscriber with no subscription is not counted. */
    assert_int_equal(ST()->subscribers, 0);

    assert_int_equal(sub(0, "a"), 0);
    assert_int_equal(ST()->channels, 1);
    assert_int_equal(ST()->subscriptions, 1);
    assert_int_equal(ST()->subscribers, 1);
    /* Already subscribed: 0, nothing changes. */
    assert_int_equal(sub(0, "a"), 0);
    assert_int_equal(ST()->channels, 1);
    assert_int_equal(ST()->subscriptions, 1);
    assert_int_equal(sub(0, "b"), 0);
    assert_int_equal(ST()->channels, 2);
    assert_int_equal(ST()->subscriptions, 2);
    assert_int_equal(ST()->subscribers, 1);
    assert_string_equal(channels_of(0), "a,b");

    assert_int_equal(sub(1, "b"), 0);
    assert_int_equal(sub(1, "c"), 0);
    assert_int_equal(ST()->channels, 3);
    assert_int_equal(ST()->subscriptions, 4);
    assert_int_equal(ST()->subscribers, 2);

    /* Channel a's only subscriber leaves: a is freed, b stays. */
    drop_sub(&E, 0);
    assert_int_equal(ST()->channels, 2);
    assert_int_equal(ST()->subscriptions, 2);
    assert_int_equal(ST()->subscribers, 1);
    assert_int_equal(pub_str("a", "x"), 0);
    assert_int_equal(pub_str("b", "x"), 1);

    drop_sub(&E, 1);
    assert_int_equal(ST()->channels, 0);
    assert_int_equal(ST()->subscriptions, 0);
    assert_int_equal(ST()->subscribers, 0);
    /* Every channel, subscription and subscriber struct is gone: only the
     * pubsub and its table are left. */
    assert_int_equal(live_count(MEM_CHANNEL), base_count);
    env_close(&E);
}

static void test_channel_names(void **state)
{
    char name[CHANNEL_NAME_MAX + 2];
    static const char *bad[] = {"a b",  "a/b", "a,b", "a?b", "a#b",
                                "a%20", "é",   "a\n", "a\0b"};

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    assert_int_equal(pubsub_subscribe(E.ps, E.s[0], "", 0), -EINVAL);
    for (size_t k = 0; k < ARRAY_SIZE(bad); k++)
        assert_int_equal(
            pubsub_subscribe(E.ps, E.s[0], bad[k],
                             k == ARRAY_SIZE(bad) - 1 ? 3 : strlen(bad[k])),
            -EINVAL);
    memset(name, 'n', sizeof(name));
    assert_int_equal(pubsub_subscribe(E.ps, E.s[0], name, CHANNEL_NAME_MAX + 1),
                     -EINVAL);
    assert_int_equal(ST()->channels, 0);
    assert_int_equal(ST()->refused_channels, 0); /* bad is not refused */
    /* Exactly 128 bytes, and every allowed punctuation mark. */
    assert_int_equal(pubsub_subscribe(E.ps, E.s[0], name, CHANNEL_NAME_MAX), 0);
    assert_int_equal(sub(0, "Az09-_.:@"), 0);
    assert_int_equal(ST()->channels, 2);
    /* Names are case-sensitive: A and a are two channels. */
    assert_int_equal(sub(0, "a"), 0);
    assert_int_equal(sub(0, "A"), 0);
    assert_int_equal(ST()->channels, 4);
    assert_int_equal(pub_str("a", "x"), 1);
    assert_int_equal(pub_str("b", "x"), 0);
    env_close(&E);
}

static void test_subscribe_list(void **state)
{
    const char *bad = NULL;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    add_sub(&E, 0);
    assert_int_equal(sub_list(0, "a,b,c", &bad), 0);
    assert_string_equal(channels_of(0), "a,b,c");
    assert_int_equal(ST()->channels, 3);
    assert_int_equal(ST()->subscriptions, 3);
    assert_int_equal(ST()->subscribers, 1);
    /* A name twice in a list is one subscription. */
    assert_int_equal(sub_list(1, "x,x,a", &bad), 0);
    assert_string_equal(channels_of(1), "a,x");
    assert_int_equal(ST()->channels, 4);
    assert_int_equal(ST()->subscriptions, 5);
    assert_int_equal(pub_str("a", "m"), 2);
    env_close(&E);
}

/* A list with a bad element subscribes to none of it: the channels the
 * good names created before the bad one are gone again. */
static void test_subscribe_list_all_or_none(void **state)
{
    static const char *lists[] = {"a,b,bad!", "a,,b", "a,b,", ",a", ""};
    const char *bad;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
        bad = NULL;
        assert_int_equal(sub_list(0, lists[k], &bad), -EINVAL);
        assert_non_null(bad);
        assert_int_equal(ST()->channels, 0);
        assert_int_equal(ST()->subscriptions, 0);
        assert_int_equal(ST()->subscribers, 0);
        assert_string_equal(channels_of(0), "");
    }
    /* The subscriber is still usable. */
    assert_int_equal(sub_list(0, "a,b", NULL), 0);
    assert_int_equal(ST()->channels, 2);
    env_close(&E);
}

/* "All or none" is about the list: a failed list must not take away what
 * the subscriber had before it (pubsub.c's comment: "undo what this list
 * subscribed"). */
static void test_subscribe_list_failure_keeps_earlier(void **state)
{
    const char *bad = NULL;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "keep"), 0);
    assert_int_equal(sub_list(0, "a,keep,bad!", &bad), -EINVAL);
    assert_string_equal(channels_of(0), "keep");
    assert_int_equal(ST()->channels, 1);
    assert_int_equal(ST()->subscriptions, 1);
    assert_int_equal(ST()->subscribers, 1);
    assert_int_equal(pub_str("keep", "still here"), 1);
    env_close(&E);
}

/* ---- limits -------------------------------------------------------------- */

static void test_max_channels(void **state)
{
    struct pubsub_opts o = default_opts;
    const char *bad = NULL;

    (void)state;
    o.max_channels = 2;
    env_open(&E, 1u << 20, &o);
    add_sub(&E, 0);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "a"), 0);
    assert_int_equal(sub(0, "b"), 0);
    assert_int_equal(sub(0, "c"), -ENOSPC);
    assert_int_equal(ST()->refused_channels, 1);
    assert_int_equal(ST()->channels, 2);
    /* An existing channel is no new channel: allowed at the limit. */
    assert_int_equal(sub(1, "a"), 0);
    assert_int_equal(ST()->refused_channels, 1);
    /* A list that would create one: refused, counted, nothing taken (a
     * fresh subscriber: see test_subscribe_list_failure_keeps_earlier). */
    add_sub(&E, 0);
    assert_int_equal(sub_list(2, "b,z", &bad), -ENOSPC);
    assert_non_null(bad);
    assert_int_equal(ST()->refused_channels, 2);
    assert_int_equal(ST()->channels, 2);
    assert_int_equal(ST()->subscriptions, 3);
    assert_string_equal(channels_of(2), "");
    /* Room comes back when a channel is freed. */
    drop_sub(&E, 0);
    assert_int_equal(ST()->channels, 1); /* a (subscriber 1) is left */
    assert_int_equal(sub(1, "c"), 0);
    assert_int_equal(ST()->channels, 2);
    env_close(&E);
}

static void test_max_channels_per_conn(void **state)
{
    struct pubsub_opts o = default_opts;
    const char *bad = NULL;

    (void)state;
    o.max_channels_per_conn = 3;
    env_open(&E, 1u << 20, &o);
    add_sub(&E, 0);
    add_sub(&E, 0);
    assert_int_equal(sub_list(0, "a,b,c", NULL), 0);
    assert_int_equal(sub(0, "d"), -ENOSPC);
    assert_int_equal(ST()->refused_channels, 1);
    /* Re-subscribing to one it has is not one more. */
    assert_int_equal(sub(0, "a"), 0);
    assert_int_equal(ST()->refused_channels, 1);
    assert_int_equal(ST()->channels, 3);
    /* Four in one list: -ENOSPC, counted, none taken. */
    assert_int_equal(sub_list(1, "w,x,y,z", &bad), -ENOSPC);
    assert_non_null(bad);
    assert_int_equal(ST()->refused_channels, 2);
    assert_int_equal(ST()->channels, 3);
    assert_int_equal(ST()->subscriptions, 3);
    assert_string_equal(channels_of(1), "");
    env_close(&E);
}

/* ---- publish ------------------------------------------------------------- */

static void test_publish_counts_and_frames(void **state)
{
    struct frame f[16];
    uint8_t bin[5] = {0, 0xff, 0x80, 'x', 0};
    char big[70000];
    size_t len;
    int n;

    (void)state;
    memset(big, 'B', sizeof(big));
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    add_sub(&E, 0);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "a"), 0);
    assert_int_equal(sub_list(1, "a,b", NULL), 0);
    assert_int_equal(sub(2, "b"), 0);

    assert_int_equal(pub_str("a", "to a"), 2);
    assert_int_equal(pub("b", bin, sizeof(bin), false), 2);
    assert_int_equal(pub_str("a", ""), 2);
    assert_int_equal(pub("b", big, 126, true), 2);
    assert_int_equal(pub("b", big, sizeof(big), false), 2);
    /* Nobody listens: reaches 0, counted as published, no channel made. */
    assert_int_equal(pub_str("nobody", "x"), 0);
    assert_int_equal(ST()->channels, 2);
    assert_int_equal(ST()->published, 6);
    assert_int_equal(ST()->delivered, 10);
    assert_int_equal(ST()->dropped_oldest + ST()->dropped_closing, 0);
    run_for(E.l, 20);

    len = peer_drain(0);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 2);
    assert_true(frame_is(&f[0], 0x1, "to a"));
    assert_true(frame_is(&f[1], 0x1, ""));

    len = peer_drain(1);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 5); /* both channels, in publish order */
    assert_true(frame_is(&f[0], 0x1, "to a"));
    assert_int_equal(f[1].op, 0x2);
    assert_int_equal(f[1].len, sizeof(bin));
    assert_memory_equal(f[1].p, bin, sizeof(bin));
    assert_true(frame_is(&f[2], 0x1, ""));
    assert_int_equal(f[3].op, 0x1);
    assert_int_equal(f[3].len, 126);
    assert_int_equal(f[4].op, 0x2);
    assert_int_equal(f[4].len, sizeof(big));
    assert_memory_equal(f[4].p, big, sizeof(big));

    len = peer_drain(2);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 3);
    assert_int_equal(f[0].op, 0x2);
    assert_int_equal(f[2].len, sizeof(big));
    env_close(&E);
}

/* Rule 4 of docs/principles.md: one publish is one message whatever the
 * fan-out; each queue holds a reference, not a copy. */
static void test_publish_shares_one_message(void **state)
{
    char payload[1000];

    (void)state;
    memset(payload, 'p', sizeof(payload));
    env_open(&E, 1u << 20, &default_opts);
    for (int i = 0; i < 5; i++) {
        add_sub(&E, 0);
        assert_int_equal(sub(i, "fan"), 0);
    }
    assert_int_equal(live_count(MEM_MSG), 0);
    assert_int_equal(pub("fan", payload, sizeof(payload), false), 5);
    /* Not flushed yet (the loop has not run): 1 message, 5 entries. */
    assert_int_equal(live_count(MEM_MSG), 1);
    assert_true(mem_live_bytes(MEM_MSG) < 2 * (int64_t)sizeof(payload));
    assert_int_equal(live_count(MEM_QUEUE), 5);
    run_for(E.l, 20);
    assert_int_equal(live_count(MEM_MSG), 0);
    assert_int_equal(live_count(MEM_QUEUE), 0);
    env_close(&E);
}

/* The conn's close path (on_close) frees the subscriber: its channels go
 * with it, and a publish right after reaches nobody. */
static void test_channel_freed_when_conn_closes(void **state)
{
    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    add_sub(&E, 0);
    assert_int_equal(sub_list(0, "solo,shared", NULL), 0);
    assert_int_equal(sub(1, "shared"), 0);
    assert_int_equal(ST()->channels, 2);
    conn_close(E.c[0], CLOSE_PEER);
    assert_int_equal(E.closes, 1);
    assert_int_equal(ST()->channels, 1);
    assert_int_equal(ST()->subscribers, 1);
    assert_int_equal(pub_str("solo", "x"), 0);
    assert_int_equal(pub_str("shared", "x"), 1);
    run_for(E.l, 5);
    env_close(&E);
}

/* ---- slow consumers ----------------------------------------------------- */

static void seq_msg(char *buf, size_t len, int seq)
{
    memset(buf, '.', len);
    snprintf(buf, len, "%06d", seq);
    buf[6] = '.';
}

/* Disconnect: the publish that would pass queue_limit kicks the
 * subscriber (counted as hard), the queue never passes the limit, and a
 * kicked subscriber gets nothing more (counted as dropped, closing). */
static void test_slow_disconnect(void **state)
{
    char m[1000];
    long r;

    (void)state;
    env_open(&E, 4096, &default_opts);
    add_sub(&E, 0); /* slow: the loop does not run, nothing is flushed */
    add_sub(&E, 0); /* fast: subscribed to another channel */
    assert_int_equal(sub(0, "s"), 0);
    assert_int_equal(sub(1, "f"), 0);
    for (int i = 0; i < 4; i++) { /* 4 x 1004 bytes fit in 4096 */
        seq_msg(m, sizeof(m), i);
        assert_int_equal(pub("s", m, sizeof(m), true), 1);
    }
    assert_int_equal(ST()->slow_disconnects, 0);
    seq_msg(m, sizeof(m), 4);
    r = pub("s", m, sizeof(m), true);
    assert_int_equal(r, 1); /* counted before its fan-out kicked */
    assert_int_equal(ST()->slow_disconnects, 1);
    assert_int_equal(ST()->soft_disconnects, 0);
    assert_true(conn_queued_bytes(E.c[0]) <= 4096);
    for (int i = 5; i < 8; i++) {
        seq_msg(m, sizeof(m), i);
        assert_int_equal(pub("s", m, sizeof(m), true), 0);
    }
    /* Kicked once, whatever follows. */
    assert_int_equal(ST()->slow_disconnects, 1);
    assert_int_equal(ST()->dropped_closing, 3);
    assert_int_equal(ST()->delivered, 4);
    assert_int_equal(ST()->dropped_oldest, 0);
    assert_true(ST()->max_queued <= 4096);
    /* Another channel's subscriber is unaffected. */
    assert_int_equal(pub_str("f", "fast"), 1);
    env_close(&E);
}

/* Drop-oldest: the queue stays under the limit (plus a notice), the
 * newest message is always queued, and the subscriber learns how many it
 * missed: the {"moor_dropped":N} notices add up to exactly the messages
 * missing from the sequence it receives (a notice is not a message: when
 * a queued notice is dropped, its count must not be lost). */
static void test_drop_oldest(void **state)
{
    struct pubsub_opts o = default_opts;
    struct frame f[64];
    char m[1000];
    int n, last = -1, got = 0, notices = 0;
    unsigned long sum = 0;
    size_t len;

    (void)state;
    o.policy = SLOW_DROP_OLDEST;
    env_open(&E, 4096, &o);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "d"), 0);
    for (int i = 0; i < 12; i++) {
        seq_msg(m, sizeof(m), i);
        /* The newest message is always taken. */
        assert_int_equal(pub("d", m, sizeof(m), true), 1);
        assert_true(conn_queued_bytes(E.c[0]) <= 4096 + 32);
    }
    assert_int_equal(ST()->slow_disconnects, 0);
    assert_true(ST()->dropped_oldest >= 8);
    assert_int_equal(ST()->delivered, 12);

    run_for(E.l, 20);
    len = peer_drain(0);
    n = parse_frames(peer_buf, len, f, 64);
    for (int k = 0; k < n; k++) {
        assert_int_equal(f[k].op, 0x1);
        if (f[k].len < 64) {
            unsigned long v;
            char txt[64];
            memcpy(txt, f[k].p, f[k].len);
            txt[f[k].len] = '\0';
            assert_int_equal(sscanf(txt, "{\"moor_dropped\":%lu}", &v), 1);
            assert_true(v > 0);
            sum += v;
            notices++;
            continue;
        }
        assert_int_equal(f[k].len, sizeof(m));
        int seq = atoi((const char *)f[k].p);
        assert_true(seq > last); /* strictly increasing */
        last = seq;
        got++;
    }
    assert_int_equal(last, 11); /* the newest is there */
    assert_true(notices > 0);
    /* Every missing message is announced, and only those. */
    if (sum != (unsigned long)(12 - got))
        fail_msg("notices say %lu dropped; %d of 12 messages are missing "
                 "(notices received: %d)",
                 sum, 12 - got, notices);
    env_close(&E);
}

/* The notice is queued before the message that follows the drop: the
 * subscriber reads "you missed N", then the new message. */
static void test_drop_oldest_notice_precedes_next_message(void **state)
{
    struct pubsub_opts o = default_opts;
    struct frame f[16];
    char m[1000];
    int n;
    size_t len;

    (void)state;
    o.policy = SLOW_DROP_OLDEST;
    env_open(&E, 4096, &o);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "d"), 0);
    for (int i = 0; i < 5; i++) { /* the 5th drops message 0 */
        seq_msg(m, sizeof(m), i);
        assert_int_equal(pub("d", m, sizeof(m), true), 1);
    }
    assert_int_equal(ST()->dropped_oldest, 1);
    run_for(E.l, 20);
    len = peer_drain(0);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 5); /* 1, 2, 3, the notice, 4 */
    assert_int_equal(atoi((const char *)f[0].p), 1);
    assert_int_equal(atoi((const char *)f[2].p), 3);
    if (!frame_is(&f[3], 0x1, "{\"moor_dropped\":1}"))
        fail_msg("frame 4 of 5 is not the notice {\"moor_dropped\":1} "
                 "(the notice is not before message 4; got %.*s)",
                 (int)MIN(f[3].len, 20), (const char *)f[3].p);
    assert_int_equal(atoi((const char *)f[4].p), 4);
    env_close(&E);
}

/* Reads subscriber i's peer and checks the drop-oldest contract for
 * messages numbered 0..n-1 (seq_msg): strictly increasing, and the
 * notices add up to exactly the messages missing. */
static void check_notices_add_up(int i, int n_published)
{
    static struct frame f[512];
    unsigned long sum = 0;
    int n, got = 0, last = -1;
    size_t len;

    len = peer_drain(i);
    n = parse_frames(peer_buf, len, f, 512);
    for (int k = 0; k < n; k++) {
        unsigned long v;
        char txt[64];
        assert_int_equal(f[k].op, 0x1);
        if (f[k].len < 32) {
            memcpy(txt, f[k].p, f[k].len);
            txt[f[k].len] = '\0';
            assert_int_equal(sscanf(txt, "{\"moor_dropped\":%lu}", &v), 1);
            sum += v;
            continue;
        }
        int seq = atoi((const char *)f[k].p);
        assert_true(seq > last);
        last = seq;
        got++;
    }
    assert_int_equal(last, n_published - 1);
    if (sum != (unsigned long)(n_published - got))
        fail_msg("notices say %lu dropped; %d of %d messages are missing", sum,
                 n_published - got, n_published);
}

/* A notice queued earlier can itself be the oldest entry when the next
 * drop comes: its count must not be lost (nor the notice counted as a
 * dropped message). Sizes are chosen so that happens: four 1000-byte
 * messages fill 4 KiB, a 3000-byte one drops three (notice "3"), the
 * next drops one (notice "1"), and the one after drops notice "3" and
 * the big message. */
static void test_drop_oldest_dropped_notice_keeps_count(void **state)
{
    struct pubsub_opts o = default_opts;
    static char m[3000];

    (void)state;
    o.policy = SLOW_DROP_OLDEST;
    env_open(&E, 4096, &o);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "d"), 0);
    for (int i = 0; i < 7; i++) {
        size_t len = i == 4 ? 3000 : 1000;
        seq_msg(m, len, i);
        assert_int_equal(pub("d", m, len, true), 1);
        assert_true(conn_queued_bytes(E.c[0]) <= 4096);
    }
    assert_true(ST()->dropped_oldest >= 5);
    run_for(E.l, 20);
    check_notices_add_up(0, 7);
    /* The metric counts messages, not notices. */
    assert_int_equal(ST()->dropped_oldest, 5);
    env_close(&E);
}

/* Soft limit: a queue over soft_limit at a publish starts a clock; a
 * publish soft_time_ms later while still over it kicks (counted soft). A
 * drained queue (pubsub_subscriber_drained) stops the clock. */
static void test_soft_limit(void **state)
{
    struct pubsub_opts o = default_opts;
    static char m[32768];

    (void)state;
    memset(m, 'm', sizeof(m));
    o.soft_limit = 65536;
    o.soft_time_ms = 60;
    env_open(&E, 1u << 20, &o);
    add_sub(&E, 4096); /* 0: small send buffer, never read */
    add_sub(&E, 4096); /* 1: the same, but its queue "drains" */
    assert_int_equal(sub(0, "s"), 0);
    assert_int_equal(sub(1, "t"), 0);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(pub("s", m, sizeof(m), false), 1);
        assert_int_equal(pub("t", m, sizeof(m), false), 1);
    }
    run_for(E.l, 20);
    /* The socket took some; the queues are still over the soft limit. */
    assert_true(conn_queued_bytes(E.c[0]) > o.soft_limit);
    assert_true(conn_queued_bytes(E.c[1]) > o.soft_limit);
    assert_int_equal(ST()->soft_disconnects, 0);
    assert_int_equal(pub("s", m, sizeof(m), false), 1);
    assert_int_equal(pub("t", m, sizeof(m), false), 1);
    run_for(E.l, 90);
    pubsub_subscriber_drained(E.ps, E.s[1]);
    assert_int_equal(pub("t", m, sizeof(m), false), 1);
    assert_int_equal(ST()->soft_disconnects, 0);
    /* Subscriber 0 has been over the soft limit for 90 ms > 60 ms. */
    pub("s", m, sizeof(m), false);
    assert_int_equal(ST()->soft_disconnects, 1);
    assert_int_equal(ST()->slow_disconnects, 0);
    assert_int_equal(pub("s", m, sizeof(m), false), 0);
    env_close(&E);
}

/* ---- allocation failures ------------------------------------------------ */

/* Every allocation of a publish to three subscribers fails in turn: the
 * publish returns -ENOMEM or its count, a subscriber whose queue ring
 * could not be allocated is closed (its on_close frees its subscription
 * while the publish walks the channel's list), and nothing leaks. */
static void test_publish_alloc_failures(void **state)
{
    bool fired = true;
    int n;

    (void)state;
    for (n = 1; fired && n < 50; n++) {
        long r;
        env_open(&E, 1u << 20, &default_opts);
        for (int i = 0; i < 3; i++) {
            add_sub(&E, 0);
            assert_int_equal(sub(i, "a"), 0);
        }
        mem_fail_at((uint64_t)n);
        r = pub_str("a", "hello");
        fired = mem_fail_fired();
        mem_fail_at(0);
        if (fired) {
            /* The frame failed (-ENOMEM), or a queue ring did and its
             * subscriber was closed during the fan-out. */
            assert_true(r == -ENOMEM || r == 3);
            assert_int_equal(ST()->subscribers + E.closes, 3);
            if (r == 3)
                assert_int_equal(ST()->delivered + (uint64_t)E.closes, 3);
        } else {
            assert_int_equal(r, 3);
        }
        run_for(E.l, 5);
        env_close(&E);
    }
    assert_false(fired);
    assert_true(n > 2);
}

/* Subscribing fails in turn at every allocation: -ENOMEM, nothing half
 * made. */
static void test_subscribe_alloc_failures(void **state)
{
    bool fired = true;
    int n;

    (void)state;
    for (n = 1; fired && n < 50; n++) {
        int rc;
        env_open(&E, 1u << 20, &default_opts);
        add_sub(&E, 0);
        mem_fail_at((uint64_t)n);
        rc = sub_list(0, "a,b,c", NULL);
        fired = mem_fail_fired();
        mem_fail_at(0);
        if (fired) {
            assert_int_equal(rc, -ENOMEM);
            assert_int_equal(ST()->channels, 0);
            assert_int_equal(ST()->subscriptions, 0);
            assert_int_equal(ST()->subscribers, 0);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(ST()->channels, 3);
        }
        env_close(&E);
    }
    assert_false(fired);
    assert_true(n > 3);
}

/* ---- batches ------------------------------------------------------------ */

/* A run of publishes on one channel is one message, fanned out once: each
 * subscriber's queue holds one entry for the run, the frames inside are
 * the publishes in order, and every message is counted as delivered and
 * in the latency histogram. */
static void test_batch_is_one_message(void **state)
{
    struct frame f[64];
    char m[100];
    size_t len;
    int n;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    for (int i = 0; i < 5; i++) {
        add_sub(&E, 0);
        assert_int_equal(sub(i, "fan"), 0);
    }
    for (int i = 0; i < 40; i++) {
        seq_msg(m, sizeof(m), i);
        assert_int_equal(pub_batched("fan", m, sizeof(m)), 5);
    }
    /* Framed, not yet fanned out: one message, nothing queued. */
    assert_int_equal(live_count(MEM_MSG), 1);
    assert_int_equal(live_count(MEM_QUEUE), 0);
    assert_int_equal(ST()->published, 40);
    assert_int_equal(ST()->delivered, 0);
    pubsub_fan_out(E.ps);
    assert_int_equal(live_count(MEM_MSG), 1);
    /* Trimmed to its 40 frames of 102 bytes. */
    assert_true(mem_live_bytes(MEM_MSG) < 40 * 102 + 64);
    for (int i = 0; i < 5; i++)
        assert_int_equal(conn_queued_count(E.c[i]), 1);
    assert_int_equal(ST()->delivered, 200);
    run_for(E.l, 20);
    assert_int_equal(E.set.stats.lat_count, 200);
    assert_int_equal(live_count(MEM_MSG), 0);
    for (int i = 0; i < 5; i++) {
        len = peer_drain(i);
        n = parse_frames(peer_buf, len, f, 64);
        assert_int_equal(n, 40);
        for (int k = 0; k < n; k++) {
            assert_int_equal(f[k].len, sizeof(m));
            assert_int_equal(atoi((const char *)f[k].p), k);
        }
    }
    env_close(&E);
}

/* A publish on another channel ends the batch, so a subscriber of both
 * channels gets the messages in publish order. */
static void test_batch_keeps_order_across_channels(void **state)
{
    struct frame f[16];
    static const char *order[] = {"a1", "a2", "b1", "a3", "b2", "b3"};
    size_t len;
    int n;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    add_sub(&E, 0);
    assert_int_equal(sub_list(0, "a,b", NULL), 0);
    assert_int_equal(sub(1, "a"), 0);
    for (int i = 0; i < 6; i++)
        pub_batched(order[i][0] == 'a' ? "a" : "b", order[i], 2);
    /* a1+a2, b1, a3 went out; b2+b3 wait for the end of the iteration. */
    assert_int_equal(conn_queued_count(E.c[0]), 3);
    assert_int_equal(conn_queued_count(E.c[1]), 2);
    run_for(E.l, 20); /* the loop's end-of-iteration fan-out */
    len = peer_drain(0);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 6);
    for (int k = 0; k < 6; k++)
        assert_true(frame_is(&f[k], 0x1, order[k]));
    len = peer_drain(1);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 3);
    assert_true(frame_is(&f[0], 0x1, "a1"));
    assert_true(frame_is(&f[2], 0x1, "a3"));
    assert_int_equal(ST()->delivered, 9);
    env_close(&E);
}

/* A batch never passes BATCH_MAX (16 KiB) nor an eighth of the queue
 * limit: 1000 frames of 102 bytes make 7 batches of at most 160. */
static void test_batch_size_is_bounded(void **state)
{
    char m[100];

    (void)state;
    memset(m, 'x', sizeof(m));
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "big"), 0);
    for (int i = 0; i < 1000; i++)
        pub_batched("big", m, sizeof(m));
    pubsub_fan_out(E.ps);
    assert_int_equal(conn_queued_count(E.c[0]), 7);
    assert_int_equal(conn_queued_bytes(E.c[0]), 1000 * 102);
    run_for(E.l, 20);
    env_close(&E);

    /* queue_limit 8 KiB: batches of 1 KiB (10 frames). */
    env_open(&E, 8192, &default_opts);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "small"), 0);
    for (int i = 0; i < 40; i++)
        pub_batched("small", m, sizeof(m));
    pubsub_fan_out(E.ps);
    assert_int_equal(conn_queued_count(E.c[0]), 4);
    assert_int_equal(ST()->slow_disconnects, 0);
    run_for(E.l, 20);
    env_close(&E);
}

/* Each protocol gets its own framing of the run: WebSocket frames and
 * length-prefixed TCP frames carry the same payloads in the same order. */
static void test_batch_per_protocol(void **state)
{
    struct frame f[16];
    uint8_t tcp[256];
    size_t len, off = 0;
    int n;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    add_sub_proto(&E, 0, PS_TCP);
    assert_int_equal(sub(0, "p"), 0);
    assert_int_equal(sub(1, "p"), 0);
    pub_batched("p", "one", 3);
    pub_batched("p", "", 0);
    pub_batched("p", "three", 5);
    assert_int_equal(live_count(MEM_MSG), 2); /* one batch per protocol */
    run_for(E.l, 20);
    len = peer_drain(0);
    n = parse_frames(peer_buf, len, f, 16);
    assert_int_equal(n, 3);
    assert_true(frame_is(&f[0], 0x1, "one"));
    assert_true(frame_is(&f[1], 0x1, ""));
    assert_true(frame_is(&f[2], 0x1, "three"));
    len = peer_drain(1);
    assert_int_equal(len, 3 * 4 + 8);
    memcpy(tcp, peer_buf, len);
    for (int k = 0; k < 3; k++) {
        static const char *want[] = {"one", "", "three"};
        uint32_t l = (uint32_t)tcp[off] << 24 | (uint32_t)tcp[off + 1] << 16 |
                     (uint32_t)tcp[off + 2] << 8 | tcp[off + 3];
        assert_int_equal(l, strlen(want[k]));
        assert_memory_equal(tcp + off + 4, want[k], l);
        off += 4 + l;
    }
    env_close(&E);
}

/* A subscriber of another protocol that comes mid-batch gets what was
 * published after it, and only that is counted for it. */
static void test_batch_joined_midway(void **state)
{
    struct frame f[16];
    size_t len;

    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    add_sub_proto(&E, 0, PS_TCP);
    assert_int_equal(sub(0, "j"), 0);
    assert_int_equal(pub_batched("j", "m0", 2), 1);
    assert_int_equal(pub_batched("j", "m1", 2), 1);
    assert_int_equal(sub(1, "j"), 0);
    assert_int_equal(pub_batched("j", "m2", 2), 2);
    pubsub_fan_out(E.ps);
    assert_int_equal(ST()->delivered, 3 + 1);
    run_for(E.l, 20);
    len = peer_drain(0);
    assert_int_equal(parse_frames(peer_buf, len, f, 16), 3);
    assert_true(frame_is(&f[2], 0x1, "m2"));
    len = peer_drain(1);
    assert_int_equal(len, 4 + 2);
    assert_memory_equal(peer_buf, "\0\0\0\2m2", 6);
    assert_int_equal(E.set.stats.lat_count, 4);
    env_close(&E);
}

/* The last subscriber leaves before the batch goes out: the channel and
 * its batch are freed at once, and the fan-out has nothing to do. */
static void test_batch_channel_gone(void **state)
{
    (void)state;
    env_open(&E, 1u << 20, &default_opts);
    add_sub(&E, 0);
    assert_int_equal(sub(0, "gone"), 0);
    assert_int_equal(pub_batched("gone", "x", 1), 1);
    assert_int_equal(live_count(MEM_MSG), 1);
    conn_close(E.c[0], CLOSE_PEER);
    assert_int_equal(ST()->channels, 0);
    assert_int_equal(live_count(MEM_MSG), 0);
    pubsub_fan_out(E.ps);
    run_for(E.l, 5);
    assert_int_equal(ST()->delivered, 0);
    env_close(&E);
}

/* Drop-oldest with batches: a dropped batch counts for every message in
 * it, so the notices still add up to exactly the messages missing, and
 * the metric counts messages. */
static void test_batch_drop_oldest_counts_messages(void **state)
{
    struct pubsub_opts o = default_opts;
    char m[100];

    (void)state;
    o.policy = SLOW_DROP_OLDEST;
    env_open(&E, 8192, &o); /* batches of 1 KiB: 10 messages */
    add_sub(&E, 0);
    assert_int_equal(sub(0, "d"), 0);
    for (int i = 0; i < 300; i++) {
        seq_msg(m, sizeof(m), i);
        pub_batched("d", m, sizeof(m));
        assert_true(conn_queued_bytes(E.c[0]) <= 8192);
    }
    pubsub_fan_out(E.ps);
    assert_true(ST()->dropped_oldest >= 200);
    assert_int_equal(ST()->delivered, 300);
    run_for(E.l, 20);
    check_notices_add_up(0, 300);
    env_close(&E);
}

/* Every allocation of a run of publishes (the batch's first frame, its
 * growth, the trim, the queue rings) fails in turn: each publish returns
 * -ENOMEM or its count, what was published is delivered whole, and
 * nothing leaks. */
static void test_batch_alloc_failures(void **state)
{
    struct frame f[16];
    bool fired = true;
    char m[300];
    int n;

    (void)state;
    memset(m, 'b', sizeof(m));
    for (n = 1; fired && n < 60; n++) {
        long r[4];
        int ok = 0, got;
        env_open(&E, 1u << 20, &default_opts);
        add_sub(&E, 0);
        assert_int_equal(sub(0, "a"), 0);
        mem_fail_at((uint64_t)n);
        for (int k = 0; k < 4; k++) {
            r[k] = pub_batched("a", m, sizeof(m));
            assert_true(r[k] == 1 || r[k] == -ENOMEM);
            ok += r[k] == 1;
        }
        pubsub_fan_out(E.ps);
        fired = mem_fail_fired();
        mem_fail_at(0);
        run_for(E.l, 5);
        got = E.closes ? 0 : parse_frames(peer_buf, peer_drain(0), f, 16);
        for (int k = 0; k < got; k++)
            assert_int_equal(f[k].len, sizeof(m));
        /* Delivered whole, or the subscriber closed for memory. */
        assert_true(got == ok || E.closes == 1);
        env_close(&E);
    }
    assert_false(fired);
    assert_true(n > 4);
}

/* ---- many channels ------------------------------------------------------ */

/* 5000 channels (the table grows past its first size), a publish to each
 * reaching exactly its subscribers, then every subscriber leaves: no
 * channel, subscription or subscriber struct is left. */
static void test_many_channels(void **state)
{
    struct pubsub_opts o = default_opts;
    int64_t base_count;
    char name[32];

    (void)state;
    o.max_channels = 100000;
    o.max_channels_per_conn = 5000;
    env_open(&E, 64u << 20, &o);
    base_count = live_count(MEM_CHANNEL);
    add_sub(&E, 0);
    add_sub(&E, 0);
    for (int i = 0; i < 5000; i++) {
        int k = snprintf(name, sizeof(name), "ch.%d", i);
        assert_int_equal(pubsub_subscribe(E.ps, E.s[0], name, (size_t)k), 0);
        if (i % 2 == 0)
            assert_int_equal(pubsub_subscribe(E.ps, E.s[1], name, (size_t)k),
                             0);
    }
    assert_int_equal(ST()->channels, 5000);
    assert_int_equal(ST()->subscriptions, 7500);
    for (int i = 0; i < 5000; i += 7) {
        snprintf(name, sizeof(name), "ch.%d", i);
        assert_int_equal(pub_str(name, "x"), i % 2 == 0 ? 2 : 1);
    }
    snprintf(name, sizeof(name), "ch.%d", 5000);
    assert_int_equal(pub_str(name, "x"), 0);
    drop_sub(&E, 0);
    assert_int_equal(ST()->channels, 2500);
    drop_sub(&E, 1);
    assert_int_equal(ST()->channels, 0);
    assert_int_equal(live_count(MEM_CHANNEL), base_count);
    run_for(E.l, 20);
    env_close(&E);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_new_free, leftover_setup),
        cmocka_unit_test_setup(test_subscribe_gauges_and_leave, leftover_setup),
        cmocka_unit_test_setup(test_channel_names, leftover_setup),
        cmocka_unit_test_setup(test_subscribe_list, leftover_setup),
        cmocka_unit_test_setup(test_subscribe_list_all_or_none, leftover_setup),
        cmocka_unit_test_setup(test_subscribe_list_failure_keeps_earlier,
                               leftover_setup),
        cmocka_unit_test_setup(test_max_channels, leftover_setup),
        cmocka_unit_test_setup(test_max_channels_per_conn, leftover_setup),
        cmocka_unit_test_setup(test_publish_counts_and_frames, leftover_setup),
        cmocka_unit_test_setup(test_publish_shares_one_message, leftover_setup),
        cmocka_unit_test_setup(test_channel_freed_when_conn_closes,
                               leftover_setup),
        cmocka_unit_test_setup(test_slow_disconnect, leftover_setup),
        cmocka_unit_test_setup(test_drop_oldest, leftover_setup),
        cmocka_unit_test_setup(test_drop_oldest_notice_precedes_next_message,
                               leftover_setup),
        cmocka_unit_test_setup(test_drop_oldest_dropped_notice_keeps_count,
                               leftover_setup),
        cmocka_unit_test_setup(test_soft_limit, leftover_setup),
        cmocka_unit_test_setup(test_publish_alloc_failures, leftover_setup),
        cmocka_unit_test_setup(test_subscribe_alloc_failures, leftover_setup),
        cmocka_unit_test_setup(test_batch_is_one_message, leftover_setup),
        cmocka_unit_test_setup(test_batch_keeps_order_across_channels,
                               leftover_setup),
        cmocka_unit_test_setup(test_batch_size_is_bounded, leftover_setup),
        cmocka_unit_test_setup(test_batch_per_protocol, leftover_setup),
        cmocka_unit_test_setup(test_batch_joined_midway, leftover_setup),
        cmocka_unit_test_setup(test_batch_channel_gone, leftover_setup),
        cmocka_unit_test_setup(test_batch_drop_oldest_counts_messages,
                               leftover_setup),
        cmocka_unit_test_setup(test_batch_alloc_failures, leftover_setup),
        cmocka_unit_test_setup(test_many_channels, leftover_setup),
    };

    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_OFF);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
