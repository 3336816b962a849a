/*
 * test_hist.c - unit tests for hist.c, the log-linear latency histogram:
 * bucket arithmetic (every value lands in a bucket whose range holds it,
 * buckets follow each other without gaps, the width stays within 1/128
 * of the value), quantiles against a sorted reference, min/max/mean,
 * reset, merge, the extremes, and that nothing stays allocated.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "hist.h"
#include "mem.h"

static void check_value(uint64_t v)
{
    size_t i = hist_bucket_of(v);
    uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);

    assert_true(lo <= v);
    assert_true(v <= hi);
    /* Width at most v / 2^(HIST_SUB_BITS - 1): 0.8 % with 8 bits. */
    assert_true(hi - lo <= v >> (HIST_SUB_BITS - 1));
}

static void test_buckets(void **state)
{
    size_t last = hist_bucket_of(UINT64_MAX);

    (void)state;
    /* Small values are exact. */
    for (uint64_t v = 0; v < (1u << HIST_SUB_BITS); v++) {
        assert_int_equal(hist_bucket_of(v), v);
        assert_int_equal(hist_bucket_low(v), v);
        assert_int_equal(hist_bucket_high(v), v);
    }
    /* Consecutive buckets touch: high(i) + 1 == low(i + 1). */
    for (size_t i = 0; i < last; i++)
        assert_int_equal(hist_bucket_high(i) + 1, hist_bucket_low(i + 1));
    assert_int_equal(hist_bucket_high(last), UINT64_MAX);
    /* Each bucket's bounds map back to it. */
    for (size_t i = 0; i <= last; i++) {
        assert_int_equal(hist_bucket_of(hist_bucket_low(i)), i);
        assert_int_equal(hist_bucket_of(hist_bucket_high(i)), i);
    }
    /* Powers of two, their neighbours, and a spread of others. */
    for (unsigned b = 0; b < 64; b++) {
        uint64_t p = (uint64_t)1 << b;

        check_value(p);
        check_value(p - 1);
        check_value(p + 1);
    }
    for (uint64_t v = 1; v < UINT64_MAX / 3; v = v * 3 + 7)
        check_value(v);
    check_value(UINT64_MAX);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void test_quantiles(void **state)
{
    enum { N = 10000 };
    uint64_t *ref = mem_calloc(MEM_MISC, N, sizeof(uint64_t));
    struct hist *h = hist_new();
    uint64_t x = 88172645463325252ull, sum = 0;
    static const double qs[] = {0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0};

    (void)state;
    assert_non_null(ref);
    assert_non_null(h);
    for (int i = 0; i < N; i++) {
        /* Latencies from 1 us to about 16 ms. */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ref[i] = 1000 + x % 16000000;
        sum += ref[i];
        hist_record(h, ref[i]);
    }
    qsort(ref, N, sizeof(uint64_t), cmp_u64);
    assert_int_equal(hist_count(h), N);
    assert_int_equal(hist_min(h), ref[0]);
    assert_int_equal(hist_max(h), ref[N - 1]);
    assert_true(hist_mean(h) == (double)sum / N);
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        size_t rank = (size_t)(qs[k] * N + 0.999999);
        uint64_t want = ref[rank ? rank - 1 : 0];
        uint64_t got = hist_quantile(h, qs[k]);

        /* Never below the true value, at most one bucket above it. */
        assert_true(got >= want);
        assert_true(got - want <= want >> (HIST_SUB_BITS - 1));
    }
    /* Out of range q is clamped; NaN counts as 0. */
    assert_int_equal(hist_quantile(h, -1.0), hist_quantile(h, 0.0));
    assert_int_equal(hist_quantile(h, 2.0), hist_max(h));
    hist_free(h);
    mem_free(MEM_MISC, ref);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_small_and_exact(void **state)
{
    struct hist *h = hist_new();

    (void)state;
    assert_non_null(h);
    /* Empty: everything 0. */
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(hist_quantile(h, 0.5), 0);
    assert_int_equal(hist_max(h), 0);
    assert_true(hist_mean(h) == 0.0);
    /* 1..100: exact below 256, so the median is exactly 50, p99 99. */
    for (uint64_t v = 1; v <= 100; v++)
        hist_record(h, v);
    assert_int_equal(hist_quantile(h, 0.5), 50);
    assert_int_equal(hist_quantile(h, 0.99), 99);
    assert_int_equal(hist_quantile(h, 1.0), 100);
    assert_int_equal(hist_quantile(h, 0.0), 1);
    /* One huge value: the top quantile is capped by the exact max. */
    hist_record(h, UINT64_MAX - 5);
    assert_int_equal(hist_quantile(h, 1.0), UINT64_MAX - 5);
    assert_int_equal(hist_max(h), UINT64_MAX - 5);
    hist_reset(h);
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(hist_quantile(h, 0.99), 0);
    hist_free(h);
    hist_free(NULL);
    /* One allocation: when it fails, NULL and nothing leaked. */
    mem_fail_at(1);
    assert_null(hist_new());
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_merge(void **state)
{
    struct hist *a = hist_new(), *b = hist_new(), *all = hist_new();

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(all);
    for (uint64_t v = 0; v < 5000; v++) {
        hist_record(v % 2 ? a : b, v * 977);
        hist_record(all, v * 977);
    }
    hist_merge(a, b);
    assert_int_equal(hist_count(a), hist_count(all));
    assert_int_equal(hist_min(a), 0);
    assert_int_equal(hist_max(a), hist_max(all));
    assert_true(hist_mean(a) == hist_mean(all));
    for (double q = 0.0; q <= 1.0; q += 0.05)
        assert_int_equal(hist_quantile(a, q), hist_quantile(all, q));
    /* Merging an empty one changes nothing; into an empty one copies. */
    hist_reset(b);
    hist_merge(a, b);
    assert_int_equal(hist_count(a), hist_count(all));
    hist_merge(b, all);
    assert_int_equal(hist_min(b), hist_min(all));
    assert_int_equal(hist_quantile(b, 0.5), hist_quantile(all, 0.5));
    hist_free(a);
    hist_free(b);
    hist_free(all);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_small_and_exact),
        cmocka_unit_test(test_merge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
