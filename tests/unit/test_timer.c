/*
 * test_timer.c - unit tests for timer.c, the hashed timing wheel: firing
 * order and precision, cancel, re-arm (later, earlier, from inside a
 * callback, as due), timers beyond one revolution, the uint32 tick
 * wrap-around, a million random timers with a tenth cancelled, and
 * timer_next_ms() as a loop would use it (never early, at most
 * TIMER_RES_MS late, never a busy loop).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "timer.h"
#include "util.h"

/* What a test timer's callback does besides recording the firing. */
enum action {
    ACT_NONE,
    ACT_REARM_LATER,  /* re-arm itself at now + arg */
    ACT_REARM_NOW,    /* re-arm itself at the wheel's now (as due) */
    ACT_CANCEL_OTHER, /* cancel `other` */
    ACT_ARM_OTHER,    /* arm `other` at now + arg (arg may be 0) */
};

#define SLOT_BASE_OF(tick) ((tick) & ~(uint32_t)(TIMER_RES_MS - 1))

/* Shared by the timers of one test: the wheel and the time of the run in
 * progress and of the one before it. */
struct clock {
    struct timer_wheel *w;
    uint32_t now;
    uint32_t prev;
    uint32_t seq; /* firings so far, in order */
};

struct node {
    struct timer t;
    struct clock *clk;
    uint32_t fired;    /* how many times */
    uint32_t fired_at; /* now of the last firing */
    uint32_t seq;      /* order of the last firing */
    enum action act;
    uint32_t arg;
    uint32_t repeat; /* ACT_REARM_*: how many more times */
    struct node *other;
};

static void on_fire(struct timer *t)
{
    struct node *n = container_of(t, struct node, t);
    struct clock *c = n->clk;

    /* Never before its expiry; fired means unarmed. */
    assert_false(tick_after(t->node.expire, c->now));
    assert_false(timer_armed(t));
    n->fired++;
    n->fired_at = c->now;
    n->seq = c->seq++;

    switch (n->act) {
    case ACT_NONE:
        break;
    case ACT_REARM_LATER:
        if (n->repeat && n->repeat--)
            timer_arm(c->w, t, c->now + n->arg);
        break;
    case ACT_REARM_NOW:
        if (n->repeat && n->repeat--)
            timer_arm(c->w, t, c->w->now);
        break;
    case ACT_CANCEL_OTHER:
        timer_cancel(c->w, &n->other->t);
        break;
    case ACT_ARM_OTHER:
        timer_arm(c->w, &n->other->t, c->now + n->arg);
        break;
    }
}

static void node_init(struct node *n, struct clock *c)
{
    memset(n, 0, sizeof(*n));
    timer_init(&n->t, on_fire);
    n->clk = c;
}

static struct timer_wheel *wheel_new(uint32_t now)
{
    struct timer_wheel *w = mem_alloc(MEM_MISC, sizeof(*w));

    assert_non_null(w);
    timer_wheel_init(w, now);
    return w;
}

/* Runs the wheel at `now`, keeping the clock in step. */
static size_t run_at(struct clock *c, uint32_t now)
{
    size_t n;

    c->prev = c->now;
    c->now = now;
    n = timer_run(c->w, now);
    return n;
}

/* Runs the wheel once per millisecond from the clock's now + 1 to `end`. */
static size_t run_every_ms(struct clock *c, uint32_t end)
{
    size_t n = 0;

    while (c->now != end)
        n += run_at(c, c->now + 1);
    return n;
}

/* A small deterministic generator, so a failure can be replayed. */
static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* ---- ordering and precision -------------------------------------------- */

static void test_order_every_ms(void **state)
{
    enum { N = 2000 };
    struct clock c = {.now = 1000};
    struct node *nodes = mem_calloc(MEM_MISC, N, sizeof(*nodes));
    struct node **by_seq = mem_calloc(MEM_MISC, N, sizeof(*by_seq));
    uint64_t seed = 42;
    size_t i, fired;

    assert_non_null(nodes);
    assert_non_null(by_seq);
    c.w = wheel_new(c.now);
    for (i = 0; i < N; i++) {
        node_init(&nodes[i], &c);
        timer_arm(c.w, &nodes[i].t, c.now + 1 + rnd(&seed) % 3000);
    }
    assert_int_equal(c.w->count, N);

    fired = run_every_ms(&c, 1000 + 3100);
    assert_int_equal(fired, N);
    assert_int_equal(c.w->count, 0);

    for (i = 0; i < N; i++) {
        struct node *n = &nodes[i];

        assert_int_equal(n->fired, 1);
        /* Run every ms, each timer fires exactly at its expiry... */
        assert_int_equal(n->fired_at, n->t.node.expire);
        by_seq[n->seq] = n;
    }
    /* ...so the firing order is the expiry order. */
    for (i = 1; i < N; i++)
        assert_false(
            tick_after(by_seq[i - 1]->t.node.expire, by_seq[i]->t.node.expire));

    mem_free(MEM_MISC, by_seq);
    mem_free(MEM_MISC, nodes);
    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Coarse runs (steps of 1..40 ms): every timer fires on the first run whose
 * now is not before its expiry, and the slots are taken earliest first. */
static void test_order_coarse_runs(void **state)
{
    enum { N = 2000 };
    struct clock c = {.now = 77};
    struct node *nodes = mem_calloc(MEM_MISC, N, sizeof(*nodes));
    struct node **by_seq = mem_calloc(MEM_MISC, N, sizeof(*by_seq));
    uint64_t seed = 7;
    size_t i, fired = 0;

    assert_non_null(nodes);
    assert_non_null(by_seq);
    c.w = wheel_new(c.now);
    for (i = 0; i < N; i++) {
        node_init(&nodes[i], &c);
        timer_arm(c.w, &nodes[i].t, c.now + 1 + rnd(&seed) % 5000);
    }
    while (fired < N) {
        uint32_t before = c.seq;

        fired += run_at(&c, c.now + 1 + rnd(&seed) % 40);
        for (i = 0; i < N; i++) {
            struct node *n = &nodes[i];

            if (n->fired && n->seq >= before) {
                /* Due now, and was not due at the previous run. */
                assert_false(tick_after(n->t.node.expire, c.now));
                assert_true(tick_after(n->t.node.expire, c.prev));
            }
        }
    }
    for (i = 0; i < N; i++) {
        assert_int_equal(nodes[i].fired, 1);
        by_seq[nodes[i].seq] = &nodes[i];
    }
    for (i = 1; i < N; i++) {
        uint32_t a = by_seq[i - 1]->t.node.expire >> TIMER_RES_SHIFT;
        uint32_t b = by_seq[i]->t.node.expire >> TIMER_RES_SHIFT;

        assert_true(a <= b);
    }
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, by_seq);
    mem_free(MEM_MISC, nodes);
    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* An expiry at or before the wheel's now fires on the next run. */
static void test_past_expiry_fires_next_run(void **state)
{
    struct clock c = {.now = 5000};
    struct node a, b;

    c.w = wheel_new(c.now);
    node_init(&a, &c);
    node_init(&b, &c);
    timer_arm(c.w, &a.t, 5000);
    timer_arm(c.w, &b.t, 5000 - 3000);
    assert_int_equal(c.w->count, 2);
    /* Same tick: still fires (not after now). */
    assert_int_equal(run_at(&c, 5000), 2);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 1);
    assert_int_equal(run_at(&c, 5100), 0);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- cancel ------------------------------------------------------------ */

static void test_cancel(void **state)
{
    enum { N = 64 };
    struct clock c = {.now = 1};
    struct node nodes[N], never;
    size_t i;

    c.w = wheel_new(c.now);
    for (i = 0; i < N; i++) {
        node_init(&nodes[i], &c);
        /* Several per slot, so cancel unlinks heads, middles and tails. */
        timer_arm(c.w, &nodes[i].t, c.now + 10 + (uint32_t)(i % 8) * 5);
    }
    for (i = 0; i < N; i += 3)
        timer_cancel(c.w, &nodes[i].t);
    for (i = 0; i < N; i += 3) {
        assert_false(timer_armed(&nodes[i].t));
        timer_cancel(c.w, &nodes[i].t); /* twice: harmless */
    }
    /* A node that was never armed. */
    node_init(&never, &c);
    timer_cancel(c.w, &never.t);
    assert_int_equal(c.w->count, N - (N + 2) / 3);

    run_every_ms(&c, 200);
    for (i = 0; i < N; i++)
        assert_int_equal(nodes[i].fired, i % 3 == 0 ? 0 : 1);
    assert_int_equal(never.fired, 0);
    assert_int_equal(c.w->count, 0);
    /* Cancelling a timer that has fired is harmless too. */
    timer_cancel(c.w, &nodes[1].t);
    assert_int_equal(c.w->count, 0);
    assert_int_equal(timer_next_ms(c.w, c.now), -1);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- re-arm ------------------------------------------------------------ */

static void test_rearm_later_and_earlier(void **state)
{
    struct clock c = {.now = 100};
    struct node a, b;

    c.w = wheel_new(c.now);
    node_init(&a, &c);
    node_init(&b, &c);

    /* Later: from +100 to +500 (another slot). */
    timer_arm(c.w, &a.t, 200);
    timer_arm(c.w, &a.t, 600);
    /* Earlier: from +60 s to +50 ms. */
    timer_arm(c.w, &b.t, 100 + 60000);
    timer_arm(c.w, &b.t, 150);
    assert_int_equal(c.w->count, 2);

    run_every_ms(&c, 599);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 1);
    assert_int_equal(b.fired_at, 150);
    run_every_ms(&c, 600);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.fired_at, 600);

    /* Neither fires again, in particular not b at its old expiry. */
    assert_int_equal(run_every_ms(&c, 100 + 70000), 0);
    assert_int_equal(b.fired, 1);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* A periodic timer: the callback re-arms itself 10 ms later, 20 times. */
static void test_rearm_from_callback(void **state)
{
    struct clock c = {.now = 1};
    struct node a;

    c.w = wheel_new(c.now);
    node_init(&a, &c);
    a.act = ACT_REARM_LATER;
    a.arg = 10;
    a.repeat = 20;
    timer_arm(c.w, &a.t, 11);

    run_every_ms(&c, 1000);
    assert_int_equal(a.fired, 21);
    assert_int_equal(a.fired_at, 11 + 20 * 10);
    assert_int_equal(c.w->count, 0);

    /* The same with coarse runs: one firing per run at most, since each
     * re-arm lands after the run's now. */
    node_init(&a, &c);
    a.act = ACT_REARM_LATER;
    a.arg = 10;
    a.repeat = 5;
    timer_arm(c.w, &a.t, c.now + 10);
    assert_int_equal(run_at(&c, c.now + 1000), 1);
    assert_int_equal(c.w->count, 1);
    assert_int_equal(run_at(&c, c.now + 1000), 1);
    run_at(&c, c.now + 100000);
    run_at(&c, c.now + 100000);
    run_at(&c, c.now + 100000);
    assert_int_equal(run_at(&c, c.now + 100000), 1);
    assert_int_equal(a.fired, 6);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* A callback that re-arms itself as due (at the wheel's now) must not make
 * timer_run() loop: it fires again on the next run. */
static void test_rearm_due_from_callback(void **state)
{
    struct clock c = {.now = 1};
    struct node a;

    c.w = wheel_new(c.now);
    node_init(&a, &c);
    a.act = ACT_REARM_NOW;
    a.repeat = 1000000;
    timer_arm(c.w, &a.t, 2);

    /* The run that takes the timer's slot last fires it once. */
    assert_int_equal(run_at(&c, 2), 1);
    assert_int_equal(run_at(&c, 2), 1);
    assert_int_equal(run_at(&c, 3), 1);
    /* From an earlier slot, the re-armed timer lands in the slot of now,
     * still ahead in this run: twice, and no more. */
    assert_int_equal(run_at(&c, 3 + 5 * TIMER_RES_MS), 2);
    assert_int_equal(run_at(&c, c.now + 100000), 2);
    assert_int_equal(a.fired, 7);
    assert_int_equal(c.w->count, 1);
    timer_cancel(c.w, &a.t);
    assert_int_equal(run_at(&c, c.now + 1), 0);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Callbacks that cancel or arm other timers of the slot being run. Slot
 * 62 holds ticks 992..1007. */
static void test_callback_touches_others(void **state)
{
    uint32_t rev = TIMER_SLOTS * TIMER_RES_MS;
    struct clock c = {.now = 1000};
    struct node a, b, x, y, z;
    uint32_t t0;

    c.w = wheel_new(c.now);
    node_init(&a, &c);
    node_init(&b, &c);
    node_init(&x, &c);
    node_init(&y, &c);
    node_init(&z, &c);

    /* a and b share a slot and are both due; whichever fires first
     * cancels the other (still on the run's detached list), so exactly
     * one fires. */
    a.act = ACT_CANCEL_OTHER;
    a.other = &b;
    b.act = ACT_CANCEL_OTHER;
    b.other = &a;
    timer_arm(c.w, &a.t, 1005);
    timer_arm(c.w, &b.t, 1006);
    /* x arms y as due into the slot being run: y fires on the next run. */
    x.act = ACT_ARM_OTHER;
    x.other = &y;
    x.arg = 0;
    timer_arm(c.w, &x.t, 1007);
    /* z shares the slot, one revolution later: it must survive the run. */
    timer_arm(c.w, &z.t, 1005 + rev);

    assert_int_equal(run_at(&c, 1007), 2);
    assert_int_equal(a.fired + b.fired, 1);
    assert_false(timer_armed(&a.t) || timer_armed(&b.t));
    assert_int_equal(x.fired, 1);
    assert_int_equal(y.fired, 0);
    assert_true(timer_armed(&y.t));
    assert_true(timer_armed(&z.t));
    assert_int_equal(c.w->count, 2);

    assert_int_equal(run_at(&c, 1008), 1);
    assert_int_equal(y.fired, 1);
    assert_int_equal(run_at(&c, 1005 + rev - 1), 0);
    assert_int_equal(run_at(&c, 1005 + rev), 1);
    assert_int_equal(z.fired, 1);

    /* x arms y as due from a slot before the slot of now: y lands in the
     * slot of now, still ahead in this run, and fires in this very run. */
    t0 = SLOT_BASE_OF(c.now) + 4 * TIMER_RES_MS;
    node_init(&x, &c);
    x.act = ACT_ARM_OTHER;
    x.other = &y;
    x.arg = 0;
    timer_arm(c.w, &x.t, t0);
    assert_int_equal(run_at(&c, t0 + 100), 2);
    assert_int_equal(y.fired, 2);
    assert_int_equal(y.fired_at, t0 + 100);
    assert_true(x.seq < y.seq);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- long timers and the tick wrap ------------------------------------- */

/* 200 s is three revolutions and then some: the timer is passed over three
 * times, untouched, and fires on time. */
static void test_beyond_one_revolution(void **state)
{
    struct clock c = {.now = 12345};
    struct node far, near;

    c.w = wheel_new(c.now);
    node_init(&far, &c);
    node_init(&near, &c);
    timer_arm(c.w, &far.t, 12345 + 200000);
    /* Same slot as `far`, one revolution earlier. */
    timer_arm(c.w, &near.t, 12345 + 200000 - TIMER_SLOTS * TIMER_RES_MS);

    assert_int_equal(run_every_ms(&c, 12345 + 199999), 1);
    assert_int_equal(near.fired, 1);
    assert_int_equal(near.fired_at, near.t.node.expire);
    assert_int_equal(far.fired, 0);
    assert_true(timer_armed(&far.t));
    assert_int_equal(run_at(&c, 12345 + 200000), 1);
    assert_int_equal(far.fired, 1);

    /* A jump of several revolutions at once fires it too, and only once. */
    node_init(&far, &c);
    timer_arm(c.w, &far.t, c.now + 200000);
    assert_int_equal(run_at(&c, c.now + 199999), 0);
    assert_int_equal(run_at(&c, c.now + 300000), 1);
    assert_int_equal(far.fired, 1);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_tick_wraparound(void **state)
{
    enum { N = 500 };
    uint32_t start = UINT32_MAX - 3000;
    struct clock c = {.now = start};
    struct node nodes[N], far;
    uint64_t seed = 99;
    size_t i;

    c.w = wheel_new(start);
    for (i = 0; i < N; i++) {
        node_init(&nodes[i], &c);
        timer_arm(c.w, &nodes[i].t, tick_add(start, 1 + rnd(&seed) % 6000));
    }
    node_init(&far, &c);
    timer_arm(c.w, &far.t, start + 100000);

    assert_int_equal(run_every_ms(&c, start + 6001), N);
    for (i = 0; i < N; i++) {
        assert_int_equal(nodes[i].fired, 1);
        assert_int_equal(nodes[i].fired_at, nodes[i].t.node.expire);
    }
    assert_int_equal(far.fired, 0);
    assert_int_equal(run_at(&c, start + 99999), 0);
    assert_int_equal(run_at(&c, start + 100000), 1);
    assert_int_equal(c.w->count, 0);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- a million timers -------------------------------------------------- */

static void test_million_timers(void **state)
{
    enum { N = 1000000, SPAN = 300000 };
    uint32_t start = UINT32_MAX - 100000; /* wraps half way, too */
    struct clock c = {.now = start};
    struct node *nodes = mem_calloc(MEM_MISC, N, sizeof(*nodes));
    uint64_t seed = 2024;
    size_t i, cancelled = 0, fired = 0;

    assert_non_null(nodes);
    c.w = wheel_new(start);
    for (i = 0; i < N; i++) {
        timer_init(&nodes[i].t, on_fire);
        nodes[i].clk = &c;
        timer_arm(c.w, &nodes[i].t, tick_add(start, 1 + rnd(&seed) % SPAN));
    }
    for (i = 0; i < N; i++) {
        if (rnd(&seed) % 10 == 0) {
            timer_cancel(c.w, &nodes[i].t);
            nodes[i].arg = 1; /* mark: cancelled */
            cancelled++;
        }
    }
    assert_int_equal(c.w->count, N - cancelled);

    while (c.w->count) {
        uint32_t before = c.seq;
        size_t n = run_at(&c, c.now + 1 + rnd(&seed) % 50);

        fired += n;
        assert_int_equal(c.seq - before, n);
    }
    assert_int_equal(fired, N - cancelled);
    for (i = 0; i < N; i++) {
        struct node *n = &nodes[i];

        assert_int_equal(n->fired, n->arg ? 0 : 1);
        /* At the first run not before its expiry (checked against the run
         * before it here; on_fire checked it was not early). */
        if (n->fired)
            assert_true(n->fired_at - n->t.node.expire < 51);
    }

    mem_free(MEM_MISC, nodes);
    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- timer_next_ms ----------------------------------------------------- */

static void test_next_ms_basic(void **state)
{
    struct clock c = {.now = 1000};
    struct node a, b;
    int ms;

    c.w = wheel_new(c.now);
    node_init(&a, &c);
    node_init(&b, &c);
    assert_int_equal(timer_next_ms(c.w, c.now), -1);

    /* 100 ms away: wake no earlier than the expiry, at most a slot late. */
    timer_arm(c.w, &a.t, 1100);
    ms = timer_next_ms(c.w, c.now);
    assert_in_range(ms, 100, 100 + TIMER_RES_MS);
    /* Asked later without a run, the answer shrinks, then is 0. */
    assert_int_equal(timer_next_ms(c.w, c.now + 10), ms - 10);
    assert_int_equal(timer_next_ms(c.w, c.now + 5000), 0);
    assert_int_equal(run_at(&c, c.now + (uint32_t)ms), 1);
    assert_int_equal(timer_next_ms(c.w, c.now), -1);

    /* Due already (armed in the past): at most one slot. */
    timer_arm(c.w, &a.t, c.now - 50);
    ms = timer_next_ms(c.w, c.now);
    assert_in_range(ms, 1, TIMER_RES_MS);
    assert_int_equal(run_at(&c, c.now + (uint32_t)ms), 1);

    /* A cancelled nearer timer leaves a stale bit: one early wake-up that
     * fires nothing and clears it; then the real one. */
    timer_arm(c.w, &a.t, c.now + 200);
    timer_arm(c.w, &b.t, c.now + 3000);
    timer_cancel(c.w, &a.t);
    ms = timer_next_ms(c.w, c.now);
    assert_in_range(ms, a.t.node.expire - c.now,
                    a.t.node.expire - c.now + TIMER_RES_MS);
    assert_int_equal(run_at(&c, c.now + (uint32_t)ms), 0);
    ms = timer_next_ms(c.w, c.now);
    assert_in_range(ms, b.t.node.expire - c.now,
                    b.t.node.expire - c.now + TIMER_RES_MS);
    assert_int_equal(run_at(&c, c.now + (uint32_t)ms), 1);
    assert_int_equal(b.fired, 1);

    /* 200 s away: the answer never exceeds one revolution. */
    timer_arm(c.w, &b.t, c.now + 200000);
    ms = timer_next_ms(c.w, c.now);
    assert_in_range(ms, 1, TIMER_SLOTS * TIMER_RES_MS);
    timer_cancel(c.w, &b.t);

    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Drives the wheel as the loop does, sleeping exactly timer_next_ms():
 * every timer fires at most TIMER_RES_MS after its expiry, never before,
 * a run never leaves a 0 timeout behind (no busy loop), and long timers
 * cost a bounded number of wake-ups. */
static void test_next_ms_drives_loop(void **state)
{
    enum { N = 3000 };
    uint32_t start = UINT32_MAX - 20000;
    struct clock c = {.now = start};
    struct node *nodes = mem_calloc(MEM_MISC, N, sizeof(*nodes));
    uint64_t seed = 5;
    size_t i, wakes = 0;

    assert_non_null(nodes);
    c.w = wheel_new(start);
    for (i = 0; i < N; i++) {
        uint32_t d =
            i % 10 == 0 ? 150000 + rnd(&seed) % 100000 : 1 + rnd(&seed) % 30000;

        node_init(&nodes[i], &c);
        timer_arm(c.w, &nodes[i].t, tick_add(start, d));
    }
    while (c.w->count) {
        int ms = timer_next_ms(c.w, c.now);

        /* Right after a run the wheel never asks for 0. */
        assert_true(ms > 0);
        assert_true(ms <= (int)(TIMER_SLOTS * TIMER_RES_MS));
        run_at(&c, c.now + (uint32_t)ms);
        wakes++;
    }
    for (i = 0; i < N; i++) {
        assert_int_equal(nodes[i].fired, 1);
        assert_true(nodes[i].fired_at - nodes[i].t.node.expire <= TIMER_RES_MS);
    }
    /* At most one wake-up per slot passed over (~250 s / 16 ms). */
    assert_true(wakes <= 250000 / TIMER_RES_MS + 2);
    assert_int_equal(timer_next_ms(c.w, c.now), -1);

    mem_free(MEM_MISC, nodes);
    mem_free(MEM_MISC, c.w);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_every_ms),
        cmocka_unit_test(test_order_coarse_runs),
        cmocka_unit_test(test_past_expiry_fires_next_run),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_rearm_later_and_earlier),
        cmocka_unit_test(test_rearm_from_callback),
        cmocka_unit_test(test_rearm_due_from_callback),
        cmocka_unit_test(test_callback_touches_others),
        cmocka_unit_test(test_beyond_one_revolution),
        cmocka_unit_test(test_tick_wraparound),
        cmocka_unit_test(test_million_timers),
        cmocka_unit_test(test_next_ms_basic),
        cmocka_unit_test(test_next_ms_drives_loop),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
