/*
 * test_msg.c - unit tests for msg.c: one allocation per message, reference
 * counting (freed exactly on the last unref, also across threads), the
 * uninitialised-payload form, and allocation failure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <string.h>

#include "mem.h"
#include "msg.h"

static int64_t live_count(enum mem_tag tag)
{
    struct mem_tag_stats st;

    mem_stats(tag, &st);
    return st.live_count;
}

static void test_new_copies_payload(void **state)
{
    char src[] = "hello subscribers";
    struct msg *m = msg_new(src, sizeof(src) - 1);

    assert_non_null(m);
    assert_int_equal(m->len, sizeof(src) - 1);
    assert_int_equal(m->refs, 1);
    memset(src, 0, sizeof(src));
    assert_memory_equal(m->data, "hello subscribers", m->len);
    /* Header and payload are one MEM_MSG block. */
    assert_int_equal(live_count(MEM_MSG), 1);
    assert_int_equal(mem_live_bytes(MEM_MSG), malloc_usable_size(m));
    assert_true(mem_live_bytes(MEM_MSG) >= (int64_t)(sizeof(*m) + m->len));
    msg_unref(m);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_refcount_frees_on_last(void **state)
{
    struct msg *m = msg_new("x", 1);
    struct msg *r;

    assert_non_null(m);
    r = msg_ref(m);
    assert_ptr_equal(r, m);
    msg_ref(m);
    assert_int_equal(m->refs, 3);

    msg_unref(m);
    msg_unref(m);
    /* Still held by one reference: not freed. */
    assert_int_equal(m->refs, 1);
    assert_int_equal(live_count(MEM_MSG), 1);
    assert_memory_equal(m->data, "x", 1);

    msg_unref(m);
    assert_int_equal(live_count(MEM_MSG), 0);
    assert_int_equal(mem_live_bytes(MEM_MSG), 0);
    msg_unref(NULL);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_uninitialised_and_empty(void **state)
{
    struct msg *m = msg_new(NULL, 64);
    struct msg *e = msg_new(NULL, 0);
    struct msg *e2 = msg_new("ignored", 0);

    assert_non_null(m);
    assert_int_equal(m->len, 64);
    memset(m->data, 'q', 64); /* the creator fills it before sharing */
    assert_non_null(e);
    assert_int_equal(e->len, 0);
    assert_non_null(e2);
    assert_int_equal(e2->len, 0);
    assert_int_equal(live_count(MEM_MSG), 3);
    msg_unref(m);
    msg_unref(e);
    msg_unref(e2);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_alloc_failure(void **state)
{
    struct mem_tag_stats before, after;

    mem_stats(MEM_MSG, &before);
    mem_fail_at(1);
    assert_null(msg_new("data", 4));
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    mem_stats(MEM_MSG, &after);
    assert_int_equal(after.failed - before.failed, 1);
    assert_null(msg_new(NULL, (size_t)UINT32_MAX + 1));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* msg_resize: a message only its creator holds grows and shrinks with its
 * bytes kept and its accounting right; a failed resize leaves it whole. */
static void test_resize(void **state)
{
    struct msg *m, *g;

    (void)state;
    m = msg_new("abcd", 4);
    assert_non_null(m);
    assert_int_equal(m->count, 1);
    g = msg_resize(m, 4096);
    assert_non_null(g);
    m = g;
    assert_memory_equal(m->data, "abcd", 4);
    assert_int_equal(m->len, 4); /* room, not length */
    assert_true(mem_live_bytes(MEM_MSG) >= (int64_t)(sizeof(*m) + 4096));
    memcpy(m->data + 4, "efgh", 4);
    m->len = 8;
    mem_fail_at(1);
    assert_null(msg_resize(m, 1 << 20));
    mem_fail_at(0);
    assert_memory_equal(m->data, "abcdefgh", 8);
    g = msg_resize(m, 8);
    assert_non_null(g);
    m = g;
    assert_memory_equal(m->data, "abcdefgh", 8);
    /* Shrunk (the allocator may round the size up a little). */
    assert_true(mem_live_bytes(MEM_MSG) >= (int64_t)(sizeof(*m) + 8));
    assert_true(mem_live_bytes(MEM_MSG) < (int64_t)(sizeof(*m) + 64));
    msg_unref(m);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

#define FAN_THREADS 4
#define FAN_REFS 10000

static void *drop_refs(void *arg)
{
    struct msg *m = arg;
    unsigned i;

    for (i = 0; i < FAN_REFS; i++)
        msg_unref(m);
    return NULL;
}

/* Fan-out across loops: references taken on one thread, dropped on several
 * at once. The last drop frees, exactly once (ASan checks the rest). */
/* A message in its owner's memory: others ref and unref it, the owner's
 * reference never goes, and nothing is allocated or freed. */
static void test_embed(void **state)
{
    _Alignas(struct msg) uint8_t mem[sizeof(struct msg) + 8];
    int64_t before = mem_live_bytes(MEM_MSG);
    struct msg *m;

    (void)state;
    m = msg_embed(mem, "request!", 8);
    assert_ptr_equal(m, (struct msg *)(void *)mem);
    assert_int_equal(m->len, 8);
    assert_int_equal(m->count, 1);
    assert_memory_equal(m->data, "request!", 8);
    assert_false(msg_shared(m));
    msg_ref(m); /* a connection's queue */
    msg_ref(m); /* and another's */
    assert_true(msg_shared(m));
    msg_unref(m);
    assert_true(msg_shared(m));
    msg_unref(m);
    assert_false(msg_shared(m)); /* the owner may let the memory go */
    assert_int_equal(mem_live_bytes(MEM_MSG), before);
}

static void test_cross_thread_unref(void **state)
{
    pthread_t th[FAN_THREADS];
    struct msg *m = msg_new("fan-out", 7);
    unsigned i;

    assert_non_null(m);
    for (i = 0; i < FAN_THREADS * FAN_REFS; i++)
        msg_ref(m);
    for (i = 0; i < FAN_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, drop_refs, m), 0);
    for (i = 0; i < FAN_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(m->refs, 1);
    assert_int_equal(live_count(MEM_MSG), 1);
    msg_unref(m);
    assert_int_equal(live_count(MEM_MSG), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_copies_payload),
        cmocka_unit_test(test_refcount_frees_on_last),
        cmocka_unit_test(test_uninitialised_and_empty),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_cross_thread_unref),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
