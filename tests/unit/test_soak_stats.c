/*
 * test_soak_stats.c - unit tests for src/soak/soak_stats.c, the verdict
 * of `moor soak`, on synthetic series: flat with noise is no leak; a
 * linear rise is a leak with the right slope inside its interval; a step
 * then a plateau is retention, not a leak; an fd count that gains one
 * every five rounds is a leak, one that steps once is not; the interval
 * is the exact Sen interval on a small hand-checked case; a garbage
 * collected heap that breathes (a sawtooth: it climbs for a few rounds,
 * then a collection gives it back) is not a leak, whatever its phase,
 * but the same sawtooth on a rising floor is; nothing stays allocated.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mem.h"
#include "soak/soak_stats.h"

#define N 40

/* Deterministic noise in [-amp, amp]. */
static double noise(uint32_t *s, double amp)
{
    *s = *s * 1103515245u + 12345u;
    return ((double)((*s >> 8) % 20001) / 10000.0 - 1.0) * amp;
}

static void test_flat_noise(void **state)
{
    double y[N];
    uint32_t seed = 7;
    struct soak_judgement j;

    (void)state;
    /* 50 MB breathing by +-400 KiB around a flat level. */
    for (int i = 0; i < N; i++)
        y[i] = 50e6 + noise(&seed, 400e3);
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
    assert_int_equal(j.call, SOAK_FLAT);
    assert_true(j.all.lo <= 0 && j.all.hi >= 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_linear_leak(void **state)
{
    double y[N];
    uint32_t seed = 3;
    struct soak_judgement j;

    (void)state;
    /* 100 KiB a round under the same noise. */
    for (int i = 0; i < N; i++)
        y[i] = 50e6 + 102400.0 * i + noise(&seed, 400e3);
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
    assert_int_equal(j.call, SOAK_LEAK);
    assert_true(j.all.lo > 0);
    assert_true(j.all.lo <= 102400.0 && 102400.0 <= j.all.hi);
    assert_true(j.all.slope > 90e3 && j.all.slope < 115e3);
    /* The same rise under a threshold larger than its total is noise. */
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 10e6, &j), 0);
    assert_int_equal(j.call, SOAK_FLAT);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_step_plateau_is_retention(void **state)
{
    double y[N];
    uint32_t seed = 11;
    struct soak_judgement j;

    (void)state;
    /* RSS climbs 8 MB over the first ten rounds, then stays. */
    for (int i = 0; i < N; i++)
        y[i] = 50e6 + (i < 10 ? 800e3 * i : 8e6) + noise(&seed, 100e3);
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
    assert_int_equal(j.call, SOAK_RETENTION); /* it rose, then stopped */
    assert_true(j.tail.growth < (1 << 19));
    /* Still rising through round 35 of 40: the second half rose too. */
    for (int i = 0; i < N; i++)
        y[i] = 50e6 + (i < 35 ? 300e3 * i : 10.5e6) + noise(&seed, 100e3);
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
    assert_int_equal(j.call, SOAK_LEAK); /* the rise is still in the tail */
    for (int i = 0; i < N; i++)
        y[i] = 50e6 + (i < 15 ? 500e3 * i : 7.5e6) + noise(&seed, 100e3);
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
    assert_int_equal(j.call, SOAK_RETENTION);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_fd_every_five_rounds(void **state)
{
    double y[N];
    struct soak_judgement j;

    (void)state;
    for (int i = 0; i < N; i++)
        y[i] = 12 + i / 5;
    assert_int_equal(soak_judge(y, N, SOAK_COUNT, 0, &j), 0);
    assert_int_equal(j.call, SOAK_LEAK);
    assert_true(j.all.slope > 0.15 && j.all.slope < 0.25);
    assert_true(j.all.lo > 0);
    /* Only twelve rounds: still caught. */
    assert_int_equal(soak_judge(y, 12, SOAK_COUNT, 0, &j), 0);
    assert_int_equal(j.call, SOAK_LEAK);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_counts_flat_or_one_step(void **state)
{
    double y[N];
    struct soak_judgement j;

    (void)state;
    for (int i = 0; i < N; i++)
        y[i] = 12;
    y[17] = 13; /* a blip: one round caught a closing socket */
    assert_int_equal(soak_judge(y, N, SOAK_COUNT, 0, &j), 0);
    assert_int_equal(j.call, SOAK_FLAT);
    assert_true(j.all.slope == 0 && j.all.lo == 0 && j.all.hi == 0);
    /* One step of one in the middle (a file opened once, lazily). */
    for (int i = 0; i < N; i++)
        y[i] = i < N / 2 ? 12 : 13;
    assert_int_equal(soak_judge(y, N, SOAK_COUNT, 0, &j), 0);
    assert_int_equal(j.call, SOAK_FLAT);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sen_interval_small(void **state)
{
    /* n = 5: 10 slopes; C = 1.96 * sqrt(5*4*15/18) = 8.0; ranks
     * floor((10-8)/2) = 1 and ceil((10+8)/2)+1 = 10: the extremes. */
    double y[5] = {0, 2, 1, 5, 4};
    struct soak_fit f;

    (void)state;
    assert_int_equal(soak_fit(y, 5, &f), 0);
    /* slopes: 2 .5 1.667 1 | -1 1.5 .667 | 4 1.5 | -1 -> sorted
     * -1 -1 .5 .667 1 1.5 1.5 1.667 2 4; median (1 + 1.5) / 2 */
    assert_true(f.slope > 1.249 && f.slope < 1.251);
    assert_true(f.lo == -1);
    assert_true(f.hi == 4);
    assert_true(f.growth > 4.99 && f.growth < 5.01);
    assert_int_equal(soak_fit(y, 1, &f), -EINVAL);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_long_run_thinned(void **state)
{
    size_t n = 5000; /* thinned to every 5th sample */
    double *y = mem_alloc(MEM_MISC, n * sizeof(*y));
    struct soak_fit f;

    (void)state;
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        y[i] = 3.0 * (double)i;
    assert_int_equal(soak_fit(y, n, &f), 0);
    assert_true(f.slope > 2.999 && f.slope < 3.001);
    assert_true(f.growth > 3.0 * 4998 && f.growth < 3.0 * 5000);
    mem_free(MEM_MISC, y);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* A GC heap: 60 MB plus 700 KiB a round for `period` rounds, then back
 * to the floor (a collection), shifted by phase, on a floor rising by
 * floor_slope a round, under +-200 KiB of noise. */
static void sawtooth(double *y, int n, int period, int phase,
                     double floor_slope, uint32_t seed)
{
    for (int i = 0; i < n; i++)
        y[i] = 60e6 + floor_slope * i + 700e3 * ((i + phase) % period) +
               noise(&seed, 200e3);
}

static void test_gc_sawtooth_is_not_a_leak(void **state)
{
    double y[N];
    struct soak_judgement j;

    (void)state;
    /* Periods of 3 to 10 rounds (peaks of 1.4 to 6.3 MB over the floor,
     * well over the 1 MiB threshold), every phase. */
    for (int period = 3; period <= 10; period++)
        for (int phase = 0; phase < period; phase++) {
            sawtooth(y, N, period, phase, 0, (uint32_t)(period * 31 + phase));
            assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
            if (j.call == SOAK_LEAK)
                fail_msg("period %d phase %d called a leak: slope %.0f "
                         "[%.0f, %.0f] growth %.0f",
                         period, phase, j.all.slope, j.all.lo, j.all.hi,
                         j.all.growth);
        }
    /* The same breathing on a floor that keeps 100 KiB a round is. */
    sawtooth(y, N, 5, 0, 102400.0, 5);
    assert_int_equal(soak_judge(y, N, SOAK_BYTES, 1 << 20, &j), 0);
    assert_int_equal(j.call, SOAK_LEAK);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_noise),
        cmocka_unit_test(test_linear_leak),
        cmocka_unit_test(test_step_plateau_is_retention),
        cmocka_unit_test(test_fd_every_five_rounds),
        cmocka_unit_test(test_counts_flat_or_one_step),
        cmocka_unit_test(test_sen_interval_small),
        cmocka_unit_test(test_long_run_thinned),
        cmocka_unit_test(test_gc_sawtooth_is_not_a_leak),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
