/*
 * test_pool.c - fixed-size object pool on 64 KiB slabs: objects are
 * zeroed, distinct and inside their slab; slabs are returned when they
 * empty (keeping one); allocation failure is clean; nothing leaks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mem.h"
#include "pool.h"

static void test_alloc_free_many(void **state)
{
    struct pool p;
    enum { N = 2000 };
    static uint8_t *objs[N];

    (void)state;
    pool_init(&p, MEM_CONN, 232);
    assert_int_equal(p.size, 240);
    assert_int_equal(mem_live_bytes(MEM_CONN), 0); /* nothing until used */
    for (int i = 0; i < N; i++) {
        objs[i] = pool_alloc(&p);
        assert_non_null(objs[i]);
        for (size_t b = 0; b < p.size; b++)
            assert_int_equal(objs[i][b], 0);
        memset(objs[i], 0xab, p.size); /* dirty it for reuse checks */
    }
    assert_int_equal(p.live, N);
    /* 2000 objects of 240 B need ceil(2000 / per_slab) slabs. */
    assert_int_equal(p.slabs, (N + p.per_slab - 1) / p.per_slab);
    assert_int_equal(mem_live_bytes(MEM_CONN),
                     (int64_t)(p.slabs * MEM_SLAB_SIZE));
    /* Distinct, non-overlapping. */
    for (int i = 1; i < N; i++)
        assert_true(objs[i] != objs[i - 1]);
    /* Free every other one, then reuse: zeroed again. */
    for (int i = 0; i < N; i += 2)
        pool_free(&p, objs[i]);
    for (int i = 0; i < N; i += 2) {
        objs[i] = pool_alloc(&p);
        assert_non_null(objs[i]);
        for (size_t b = 0; b < p.size; b++)
            assert_int_equal(objs[i][b], 0);
    }
    for (int i = 0; i < N; i++)
        pool_free(&p, objs[i]);
    /* Every slab went back but one kept for churn. */
    assert_int_equal(p.live, 0);
    assert_int_equal(p.slabs, 1);
    assert_int_equal(mem_live_bytes(MEM_CONN), (int64_t)MEM_SLAB_SIZE);
    pool_fini(&p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_alloc_failure(void **state)
{
    struct pool p;
    void *a, *b;

    (void)state;
    pool_init(&p, MEM_CONN, 100);
    mem_fail_at(1);
    assert_null(pool_alloc(&p));
    assert_true(mem_fail_fired());
    a = pool_alloc(&p);
    assert_non_null(a);
    /* A second object comes from the same slab: no allocation. */
    mem_fail_at(1);
    b = pool_alloc(&p);
    assert_non_null(b);
    assert_false(mem_fail_fired());
    mem_fail_at(0);
    pool_free(&p, a);
    pool_free(&p, b);
    pool_free(&p, NULL);
    pool_fini(&p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_churn_keeps_one_slab(void **state)
{
    struct pool p;

    (void)state;
    pool_init(&p, MEM_CONN, 64);
    for (int i = 0; i < 10000; i++) {
        void *o = pool_alloc(&p);
        assert_non_null(o);
        pool_free(&p, o);
        assert_int_equal(p.slabs, 1);
    }
    pool_fini(&p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_free_many),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_churn_keeps_one_slab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
