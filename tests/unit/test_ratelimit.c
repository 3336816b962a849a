/*
 * test_ratelimit.c - unit tests for ratelimit.c, the token bucket: the
 * burst, refill (fast, slow, capped), rate 0, wait_ms (rounding, n over
 * the burst), ticks that wrap or go back, and extreme values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mem.h"
#include "ratelimit.h"

/* Takes single tokens until refused; returns how many were taken. */
static uint32_t drain(struct ratelimit *r, uint32_t now)
{
    uint32_t n = 0;

    while (n < 1000000 && ratelimit_take(r, 1, now))
        n++;
    return n;
}

static void test_burst(void **state)
{
    struct ratelimit r;

    /* The bucket starts full: exactly `burst` tokens at once. */
    ratelimit_init(&r, 10, 5, 100);
    assert_int_equal(drain(&r, 100), 5);
    assert_false(ratelimit_take(&r, 1, 100));

    /* burst 0 means burst = rate. */
    ratelimit_init(&r, 50, 0, 100);
    assert_int_equal(r.burst, 50);
    assert_int_equal(drain(&r, 100), 50);

    /* Taking several at once: all or nothing. */
    ratelimit_init(&r, 10, 5, 100);
    assert_true(ratelimit_take(&r, 3, 100));
    assert_false(ratelimit_take(&r, 3, 100));
    assert_true(ratelimit_take(&r, 2, 100));
    assert_false(ratelimit_take(&r, 1, 100));
    /* Zero tokens always fit. */
    assert_true(ratelimit_take(&r, 0, 100));

    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_refill(void **state)
{
    struct ratelimit r;
    uint32_t now = 1000;

    /* 10/s: one token per 100 ms, not a millisecond earlier. */
    ratelimit_init(&r, 10, 5, now);
    assert_int_equal(drain(&r, now), 5);
    assert_false(ratelimit_take(&r, 1, now + 99));
    assert_true(ratelimit_take(&r, 1, now + 100));
    assert_false(ratelimit_take(&r, 1, now + 100));
    /* Fractions carry over: 150 ms + 50 ms is two tokens, not one. */
    assert_false(ratelimit_take(&r, 2, now + 250));
    assert_true(ratelimit_take(&r, 2, now + 300));

    /* Refill stops at the burst, however long the pause. */
    assert_int_equal(drain(&r, now + 3600000), 5);

    /* Slow: 1 per second (the milli-token units lose nothing). */
    ratelimit_init(&r, 1, 1, now);
    assert_true(ratelimit_take(&r, 1, now));
    assert_false(ratelimit_take(&r, 1, now + 999));
    assert_true(ratelimit_take(&r, 1, now + 1000));

    /* Fast: 1,000,000/s is 1000 tokens per ms. */
    ratelimit_init(&r, 1000000, 0, now);
    assert_int_equal(drain(&r, now), 1000000);
    assert_int_equal(drain(&r, now + 1), 1000);
    assert_int_equal(drain(&r, now + 3), 2000);

    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_rate_zero_is_unlimited(void **state)
{
    struct ratelimit r;
    uint32_t i;

    ratelimit_init(&r, 0, 0, 1);
    for (i = 0; i < 100000; i++)
        assert_true(ratelimit_take(&r, 1000, 1));
    assert_true(ratelimit_take(&r, UINT32_MAX, 1));
    assert_int_equal(ratelimit_wait_ms(&r, UINT32_MAX, 1), 0);

    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_wait_ms(void **state)
{
    struct ratelimit r;
    uint32_t now = 50, w;

    ratelimit_init(&r, 3, 1, now);
    assert_int_equal(ratelimit_wait_ms(&r, 1, now), 0);
    assert_true(ratelimit_take(&r, 1, now));
    /* 1000/3 ms rounds up to 334: after 333 ms the token is not there. */
    w = ratelimit_wait_ms(&r, 1, now);
    assert_int_equal(w, 334);
    assert_false(ratelimit_take(&r, 1, now + w - 1));
    assert_int_equal(ratelimit_wait_ms(&r, 1, now + w - 1), 1);
    assert_true(ratelimit_take(&r, 1, now + w));

    /* Waiting as told always suffices, for several rates and sizes. */
    {
        static const uint32_t rates[] = {1, 7, 10, 999, 1000, 1001, 65537};
        size_t i;

        for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
            uint32_t t = 10;
            uint32_t n = rates[i] > 3 ? 3 : 1;

            ratelimit_init(&r, rates[i], 0, t);
            drain(&r, t);
            w = ratelimit_wait_ms(&r, n, t);
            assert_true(w > 0);
            if (w > 1)
                assert_false(ratelimit_take(&r, n, t + w - 1));
            assert_true(ratelimit_take(&r, n, t + w));
        }
    }

    /* More than the bucket holds never fits. */
    ratelimit_init(&r, 10, 5, now);
    assert_int_equal(ratelimit_wait_ms(&r, 6, now), UINT32_MAX);
    assert_false(ratelimit_take(&r, 6, now + 1000000));

    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_ticks_wrap_and_go_back(void **state)
{
    struct ratelimit r;
    uint32_t now = UINT32_MAX - 50;

    ratelimit_init(&r, 10, 2, now);
    assert_int_equal(drain(&r, now), 2);
    /* 100 ms later, across the wrap. */
    assert_false(ratelimit_take(&r, 1, now + 99));
    assert_true(ratelimit_take(&r, 1, now + 100));

    /* A tick in the past credits nothing and does not disturb `last`. */
    assert_false(ratelimit_take(&r, 1, now - 5000));
    assert_true(ratelimit_take(&r, 1, now + 200));
    assert_false(ratelimit_take(&r, 1, now + 200));

    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_extremes(void **state)
{
    struct ratelimit r;

    /* The largest values neither overflow nor stall. */
    ratelimit_init(&r, UINT32_MAX, UINT32_MAX, 1);
    assert_true(ratelimit_take(&r, UINT32_MAX, 1));
    assert_false(ratelimit_take(&r, 1, 1));
    assert_int_equal(ratelimit_wait_ms(&r, UINT32_MAX, 1), 1000);
    /* A gap of 2^31 - 1 ms at the highest rate: capped, not wrapped. */
    assert_true(ratelimit_take(&r, UINT32_MAX, (uint32_t)INT32_MAX + 1));
    assert_false(ratelimit_take(&r, 1, (uint32_t)INT32_MAX + 1));

    /* Rate 1, burst UINT32_MAX: the wait is longer than a tick can say. */
    ratelimit_init(&r, 1, UINT32_MAX, 1);
    assert_true(ratelimit_take(&r, UINT32_MAX, 1));
    assert_int_equal(ratelimit_wait_ms(&r, UINT32_MAX, 1), UINT32_MAX);

    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_rate_zero_is_unlimited),
        cmocka_unit_test(test_wait_ms),
        cmocka_unit_test(test_ticks_wrap_and_go_back),
        cmocka_unit_test(test_extremes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
