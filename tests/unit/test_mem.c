/*
 * test_mem.c - unit tests for mem.c: per-tag accounting, realloc, fail-at-N,
 * budget, trace mode and its dumps, cross-thread sums, /proc facts.
 *
 * Every test ends with live bytes of all tags back at zero.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"

/* Under ASan, let an impossible allocation return NULL as libc does,
 * instead of aborting: mem.c's failure paths are what is under test. */
__attribute__((visibility("default"), used)) const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static int64_t live_count(enum mem_tag tag)
{
    struct mem_tag_stats st;

    mem_stats(tag, &st);
    return st.live_count;
}

static void test_tag_names(void **state)
{
    static const char *const want[MEM_TAG_COUNT] = {
        "misc", "loop",        "readbuf", "conn",    "carry",   "queue",
        "msg",  "http",        "tls",     "channel", "config",  "metrics",
        "dns",  "http_client", "auth",    "influx",  "history",
    };
    unsigned i;

    for (i = 0; i < MEM_TAG_COUNT; i++)
        assert_string_equal(mem_tag_name((enum mem_tag)i), want[i]);
    assert_string_equal(mem_tag_name(MEM_TAG_COUNT), "unknown");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_per_tag_accounting(void **state)
{
    struct mem_tag_stats before, after;
    void *a, *b, *c;

    mem_stats(MEM_CONN, &before);
    a = mem_alloc(MEM_CONN, 100);
    b = mem_alloc(MEM_CONN, 300);
    c = mem_calloc(MEM_MSG, 10, 100);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(((unsigned char *)c)[999] == 0);

    mem_stats(MEM_CONN, &after);
    assert_int_equal(after.live_bytes,
                     malloc_usable_size(a) + malloc_usable_size(b));
    assert_true(after.live_bytes >= 400);
    assert_int_equal(after.live_count, 2);
    assert_int_equal(after.total_allocs - before.total_allocs, 2);
    assert_int_equal(after.total_bytes - before.total_bytes, after.live_bytes);
    assert_int_equal(mem_live_bytes(MEM_MSG), malloc_usable_size(c));
    assert_int_equal(mem_live_bytes(MEM_ALL), malloc_usable_size(a) +
                                                  malloc_usable_size(b) +
                                                  malloc_usable_size(c));
    assert_int_equal(mem_live_bytes(MEM_TLS), 0);
    {
        struct mem_tag_stats all;

        mem_stats(MEM_ALL, &all);
        assert_int_equal(all.live_bytes, mem_live_bytes(MEM_ALL));
        assert_int_equal(all.live_count, 3);
    }

    mem_free(MEM_CONN, a);
    assert_int_equal(mem_live_bytes(MEM_CONN), malloc_usable_size(b));
    mem_free(MEM_CONN, b);
    mem_free(MEM_MSG, c);
    assert_int_equal(mem_live_bytes(MEM_CONN), 0);
    assert_int_equal(live_count(MEM_CONN), 0);
    assert_int_equal(live_count(MEM_MSG), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_zero_size_and_free_null(void **state)
{
    void *p = mem_alloc(MEM_MISC, 0);
    void *q = mem_calloc(MEM_MISC, 0, 8);

    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal(live_count(MEM_MISC), 2);
    assert_true(mem_live_bytes(MEM_MISC) >= 2);
    mem_free(MEM_MISC, p);
    mem_free(MEM_MISC, q);

    mem_free(MEM_MISC, NULL);
    mem_free(MEM_CONN, NULL);
    assert_int_equal(live_count(MEM_MISC), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_calloc_overflow(void **state)
{
    struct mem_tag_stats before, after;

    mem_stats(MEM_HTTP, &before);
    assert_null(mem_calloc(MEM_HTTP, SIZE_MAX / 2, 3));
    mem_stats(MEM_HTTP, &after);
    assert_int_equal(after.failed - before.failed, 1);
    assert_int_equal(after.total_allocs, before.total_allocs);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_strndup(void **state)
{
    char *s = mem_strndup(MEM_CONFIG, "hello world", 5);
    char *t = mem_strndup(MEM_CONFIG, "hi", 100);

    assert_string_equal(s, "hello");
    assert_string_equal(t, "hi");
    assert_int_equal(mem_live_bytes(MEM_CONFIG),
                     malloc_usable_size(s) + malloc_usable_size(t));
    mem_free(MEM_CONFIG, s);
    mem_free(MEM_CONFIG, t);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_realloc_accounting(void **state)
{
    struct mem_tag_stats st;
    unsigned char *p;
    size_t i;

    /* realloc(NULL) is an allocation. */
    p = mem_realloc(MEM_QUEUE, NULL, 16);
    assert_non_null(p);
    for (i = 0; i < 16; i++)
        p[i] = (unsigned char)i;
    assert_int_equal(mem_live_bytes(MEM_QUEUE), malloc_usable_size(p));
    assert_int_equal(live_count(MEM_QUEUE), 1);

    /* Grow: content kept, live bytes follow, still one block. */
    p = mem_realloc(MEM_QUEUE, p, 100000);
    assert_non_null(p);
    for (i = 0; i < 16; i++)
        assert_int_equal(p[i], i);
    assert_int_equal(mem_live_bytes(MEM_QUEUE), malloc_usable_size(p));
    assert_true(mem_live_bytes(MEM_QUEUE) >= 100000);
    assert_int_equal(live_count(MEM_QUEUE), 1);

    /* Shrink. */
    p = mem_realloc(MEM_QUEUE, p, 8);
    assert_non_null(p);
    assert_int_equal(p[7], 7);
    assert_int_equal(mem_live_bytes(MEM_QUEUE), malloc_usable_size(p));
    assert_true(mem_live_bytes(MEM_QUEUE) < 100000);
    mem_stats(MEM_QUEUE, &st);
    assert_int_equal(st.live_count, 1);

    mem_free(MEM_QUEUE, p);
    assert_int_equal(mem_live_bytes(MEM_QUEUE), 0);
    assert_int_equal(live_count(MEM_QUEUE), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_realloc_failure_keeps_block(void **state)
{
    char *p = mem_alloc(MEM_HTTP, 32);
    int64_t live;

    assert_non_null(p);
    memcpy(p, "still here", 11);
    live = mem_live_bytes(MEM_HTTP);

    mem_fail_at(1);
    assert_null(mem_realloc(MEM_HTTP, p, 4096));
    assert_true(mem_fail_fired());
    mem_fail_at(0);

    assert_string_equal(p, "still here");
    assert_int_equal(mem_live_bytes(MEM_HTTP), live);
    assert_int_equal(live_count(MEM_HTTP), 1);
    mem_free(MEM_HTTP, p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* An operation that makes three allocations and undoes all of them if any
 * fails, the way callers are expected to. */
struct triple {
    void *a, *b, *c;
};

static int triple_new(struct triple *t)
{
    t->a = mem_alloc(MEM_CONN, 64);
    if (!t->a)
        return -1;
    t->b = mem_calloc(MEM_QUEUE, 4, 32);
    if (!t->b)
        goto err_free_a;
    t->c = mem_strndup(MEM_CHANNEL, "room", 4);
    if (!t->c)
        goto err_free_b;
    return 0;

err_free_b:
    mem_free(MEM_QUEUE, t->b);
err_free_a:
    mem_free(MEM_CONN, t->a);
    return -1;
}

static void triple_free(struct triple *t)
{
    mem_free(MEM_CHANNEL, t->c);
    mem_free(MEM_QUEUE, t->b);
    mem_free(MEM_CONN, t->a);
}

static void test_fail_at_every_n(void **state)
{
    struct triple t = {0};
    uint64_t n;
    int rc;

    for (n = 1;; n++) {
        struct mem_tag_stats before, after;

        mem_stats(MEM_ALL, &before);
        mem_fail_at(n);
        rc = triple_new(&t);
        if (!mem_fail_fired())
            break;
        assert_int_equal(rc, -1);
        /* A clean error: nothing leaked, and the failure was counted. */
        assert_int_equal(mem_live_bytes(MEM_ALL), 0);
        mem_stats(MEM_ALL, &after);
        assert_int_equal(after.failed - before.failed, 1);
        assert_int_equal(after.live_count, 0);
    }
    /* Three allocations: n = 1, 2, 3 fail, n = 4 succeeds. */
    assert_int_equal(n, 4);
    assert_int_equal(rc, 0);
    assert_int_equal(mem_fail_at(0), 3);
    triple_free(&t);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_fail_at_fires_once(void **state)
{
    void *a, *b, *c;

    assert_false(mem_fail_fired());
    mem_fail_at(2);
    a = mem_alloc(MEM_MISC, 8);
    assert_false(mem_fail_fired());
    b = mem_alloc(MEM_MISC, 8);
    assert_true(mem_fail_fired());
    c = mem_alloc(MEM_MISC, 8);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    assert_int_equal(mem_fail_at(0), 3);
    assert_false(mem_fail_fired());
    mem_free(MEM_MISC, a);
    mem_free(MEM_MISC, c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

struct fail_thread_arg {
    bool fired;
    void *p;
};

static void *fail_thread(void *arg)
{
    struct fail_thread_arg *a = arg;

    a->p = mem_alloc(MEM_MISC, 8);
    a->fired = mem_fail_fired();
    return NULL;
}

/* The countdown is per thread: arming it here does not fail another
 * thread's allocation. */
static void test_fail_at_is_thread_local(void **state)
{
    struct fail_thread_arg a = {0};
    pthread_t th;
    void *p;

    mem_fail_at(1);
    assert_int_equal(pthread_create(&th, NULL, fail_thread, &a), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_non_null(a.p);
    assert_false(a.fired);
    p = mem_alloc(MEM_MISC, 8);
    assert_null(p);
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    mem_free(MEM_MISC, a.p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_budget(void **state)
{
    void *big, *mid;

    mem_set_budget(0, 50);
    assert_int_equal(mem_budget(), 0);
    big = mem_alloc(MEM_MSG, 20000);
    assert_false(mem_over_budget());
    assert_true(mem_under_low_water());
    mem_free(MEM_MSG, big);

    mem_set_budget(10000, 50);
    assert_int_equal(mem_budget(), 10000);
    assert_false(mem_over_budget());
    assert_true(mem_under_low_water());

    big = mem_alloc(MEM_MSG, 12000);
    assert_true(mem_over_budget());
    assert_false(mem_under_low_water());
    mem_free(MEM_MSG, big);

    /* Between low water and budget: neither over nor under (hysteresis). */
    mid = mem_alloc(MEM_MSG, 7000);
    assert_false(mem_over_budget());
    assert_false(mem_under_low_water());
    mem_free(MEM_MSG, mid);

    mid = mem_alloc(MEM_MSG, 4000);
    assert_false(mem_over_budget());
    assert_true(mem_under_low_water());
    mem_free(MEM_MSG, mid);

    mem_set_budget(0, 80);
    assert_false(mem_over_budget());
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- cross-thread ---- */

#define XT_BLOCKS 1000

struct xt {
    void *blocks[XT_BLOCKS];
};

static void *xt_alloc(void *arg)
{
    struct xt *x = arg;
    unsigned i;

    for (i = 0; i < XT_BLOCKS; i++)
        x->blocks[i] = mem_alloc(MEM_QUEUE, 16 + i);
    return NULL;
}

static void *xt_free(void *arg)
{
    struct xt *x = arg;
    unsigned i;

    for (i = 0; i < XT_BLOCKS; i++)
        mem_free(MEM_QUEUE, x->blocks[i]);
    return NULL;
}

static void test_cross_thread(void **state)
{
    static struct xt x;
    pthread_t th;
    int64_t live;

    /* Allocated on a thread that then exits: its counts must survive. */
    assert_int_equal(pthread_create(&th, NULL, xt_alloc, &x), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    live = mem_live_bytes(MEM_QUEUE);
    assert_true(live >= (int64_t)XT_BLOCKS * 16);
    assert_int_equal(live_count(MEM_QUEUE), XT_BLOCKS);

    /* Freed on another thread: that thread goes negative, the sum is 0. */
    assert_int_equal(pthread_create(&th, NULL, xt_free, &x), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(mem_live_bytes(MEM_QUEUE), 0);
    assert_int_equal(live_count(MEM_QUEUE), 0);

    /* And the other way round: allocate here, free there. */
    xt_alloc(&x);
    assert_int_equal(live_count(MEM_QUEUE), XT_BLOCKS);
    assert_int_equal(pthread_create(&th, NULL, xt_free, &x), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

#define CHURN_THREADS 8
#define CHURN_ROUNDS 20

static void *churn(void *arg)
{
    void *keep[64];
    unsigned i, r;

    for (r = 0; r < 50; r++) {
        for (i = 0; i < 64; i++)
            keep[i] = mem_alloc((enum mem_tag)(i % MEM_TAG_COUNT), i * 7);
        for (i = 0; i < 64; i++) {
            void *q = mem_realloc((enum mem_tag)(i % MEM_TAG_COUNT), keep[i],
                                  i * 13 + 1);
            if (q)
                keep[i] = q;
        }
        for (i = 0; i < 64; i++)
            mem_free((enum mem_tag)(i % MEM_TAG_COUNT), keep[i]);
    }
    return arg;
}

/* Many short-lived threads, several at once: blocks of exited threads are
 * recycled, and the sum stays exact. */
static void test_thread_churn(void **state)
{
    pthread_t th[CHURN_THREADS];
    unsigned r, i;

    for (r = 0; r < CHURN_ROUNDS; r++) {
        for (i = 0; i < CHURN_THREADS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, churn, NULL), 0);
        for (i = 0; i < CHURN_THREADS; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(mem_live_bytes(MEM_ALL), 0);
    }
    for (i = 0; i < MEM_TAG_COUNT; i++)
        assert_int_equal(live_count((enum mem_tag)i), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- trace ---- */

/* Runs f(out) on a memory stream and returns the text (caller frees). */
static char *capture(size_t (*f)(FILE *), size_t *ret)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    assert_non_null(out);
    *ret = f(out);
    assert_int_equal(fclose(out), 0);
    return text;
}

static void test_trace_sites(void **state)
{
    void *a[3], *b, *c;
    char want[128];
    char *text, *line2;
    size_t ret;
    int line_a, line_b, line_c;
    unsigned i;

    mem_trace_enable();
    assert_true(mem_trace_enabled());

    line_a = __LINE__ + 2;
    for (i = 0; i < 3; i++)
        a[i] = mem_alloc(MEM_CONN, 1000);
    line_b = __LINE__ + 1;
    b = mem_alloc(MEM_MSG, 10);
    line_c = __LINE__ + 1;
    c = mem_alloc(MEM_CONN, 100);

    text = capture(mem_trace_dump, &ret);
    assert_int_equal(ret, 5);
    /* Largest site first, grouped: 3 blocks of the loop on one line. */
    snprintf(want, sizeof(want), "conn %s:%d %zu 3\n", __FILE__, line_a,
             malloc_usable_size(a[0]) * 3);
    assert_memory_equal(text, want, strlen(want));
    line2 = strchr(text, '\n') + 1;
    snprintf(want, sizeof(want), "conn %s:%d %zu 1\n", __FILE__, line_c,
             malloc_usable_size(c));
    assert_memory_equal(line2, want, strlen(want));
    snprintf(want, sizeof(want), "msg %s:%d %zu 1\n", __FILE__, line_b,
             malloc_usable_size(b));
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), "total %lld 5\n",
             (long long)mem_live_bytes(MEM_ALL));
    assert_non_null(strstr(text, want));
    free(text);

    text = capture(mem_trace_dump_json, &ret);
    assert_int_equal(ret, 3);
    assert_true(text[0] == '[');
    assert_true(text[strlen(text) - 1] == ']');
    snprintf(want, sizeof(want),
             "{\"tag\":\"conn\",\"site\":\"%s:%d\",\"bytes\":%zu,"
             "\"count\":3}",
             __FILE__, line_a, malloc_usable_size(a[0]) * 3);
    assert_non_null(strstr(text, want));
    free(text);

    for (i = 0; i < 3; i++)
        mem_free(MEM_CONN, a[i]);
    mem_free(MEM_MSG, b);
    mem_free(MEM_CONN, c);

    text = capture(mem_trace_dump, &ret);
    assert_int_equal(ret, 0);
    assert_string_equal(text, "total 0 0\n");
    free(text);
    text = capture(mem_trace_dump_json, &ret);
    assert_int_equal(ret, 0);
    assert_string_equal(text, "[]");
    free(text);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_trace_realloc(void **state)
{
    char want[128];
    char *text, *p;
    size_t ret;
    int line;

    mem_trace_enable();
    p = mem_alloc(MEM_HTTP, 10);
    line = __LINE__ + 1;
    p = mem_realloc(MEM_HTTP, p, 5000);
    assert_non_null(p);

    text = capture(mem_trace_dump, &ret);
    assert_int_equal(ret, 1);
    snprintf(want, sizeof(want), "http %s:%d %zu 1\ntotal %zu 1\n", __FILE__,
             line, malloc_usable_size(p), malloc_usable_size(p));
    assert_string_equal(text, want);
    free(text);

    /* A failed realloc leaves the old record in place, whether fail-at-N
     * refuses it or libc does (a size no heap can give). */
    mem_fail_at(1);
    assert_null(mem_realloc(MEM_HTTP, p, 100000));
    mem_fail_at(0);
    text = capture(mem_trace_dump, &ret);
    assert_string_equal(text, want);
    free(text);
    assert_null(mem_realloc(MEM_HTTP, p, SIZE_MAX / 4));
    text = capture(mem_trace_dump, &ret);
    assert_string_equal(text, want);
    free(text);
    assert_int_equal(mem_live_bytes(MEM_HTTP), malloc_usable_size(p));

    mem_free(MEM_HTTP, p);
    text = capture(mem_trace_dump, &ret);
    assert_int_equal(ret, 0);
    free(text);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Enough blocks to grow the side table several times, freed in a
 * scrambled order to exercise deletion in long probe runs. */
static void test_trace_many(void **state)
{
    enum { N = 20000 };
    void **v;
    char *text;
    size_t ret, i;

    mem_trace_enable();
    v = mem_calloc(MEM_MISC, N, sizeof(*v));
    assert_non_null(v);
    for (i = 0; i < N; i++) {
        v[i] = mem_alloc(MEM_CHANNEL, 1 + i % 50);
        assert_non_null(v[i]);
    }
    for (i = 0; i < N; i += 2) {
        size_t j = (i * 7919) % N;

        mem_free(MEM_CHANNEL, v[j]);
        v[j] = NULL;
    }
    /* Live blocks: the N / 2 survivors and the array itself. */
    text = capture(mem_trace_dump, &ret);
    free(text);
    assert_int_equal(ret, N / 2 + 1);
    assert_int_equal(live_count(MEM_CHANNEL), N / 2);
    for (i = 0; i < N; i++)
        mem_free(MEM_CHANNEL, v[i]);
    mem_free(MEM_MISC, v);
    text = capture(mem_trace_dump, &ret);
    assert_int_equal(ret, 0);
    free(text);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void *trace_thread(void *arg)
{
    void *keep[32] = {0};
    unsigned i, r;

    for (r = 0; r < 200; r++) {
        for (i = 0; i < 32; i++)
            keep[i] = mem_realloc(MEM_LOOP, keep[i], (r * 31 + i) % 300);
        if (r % 3 == 0)
            for (i = 0; i < 32; i += 2) {
                mem_free(MEM_LOOP, keep[i]);
                keep[i] = NULL;
            }
    }
    for (i = 0; i < 32; i++)
        mem_free(MEM_LOOP, keep[i]);
    return arg;
}

/* Trace mode stays consistent while threads allocate, reallocate and free
 * concurrently (address reuse between threads included). */
static void test_trace_threads(void **state)
{
    pthread_t th[6];
    char *text;
    size_t ret;
    unsigned i;

    mem_trace_enable();
    for (i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&th[i], NULL, trace_thread, NULL), 0);
    for (i = 0; i < 6; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    text = capture(mem_trace_dump, &ret);
    assert_int_equal(ret, 0);
    assert_string_equal(text, "total 0 0\n");
    free(text);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* MOOR_MEM_TRACE=1 is read once, at the first allocation; checked in a
 * fresh process (this binary re-run with a flag, see main()). */
static int run_child(const char *env)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        if (env)
            setenv("MOOR_MEM_TRACE", env, 1);
        else
            unsetenv("MOOR_MEM_TRACE");
        execl("/proc/self/exe", "test_mem", "--trace-env-child", NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_trace_env(void **state)
{
    assert_int_equal(run_child("1"), 0);
    assert_int_equal(run_child(NULL), 3);
    assert_int_equal(run_child("0"), 3);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static int trace_env_child(void)
{
    void *p = mem_alloc(MEM_MISC, 10);
    int on = mem_trace_enabled();
    char *text = NULL;
    size_t len = 0, n;
    FILE *f = open_memstream(&text, &len);

    n = mem_trace_dump(f);
    fclose(f);
    free(text);
    mem_free(MEM_MISC, p);
    if (on && n == 1)
        return 0;
    return on ? 4 : 3;
}

static void test_process_facts(void **state)
{
    int64_t fds, fds2;
    int fd;

    assert_true(mem_process_rss() > 0);
    fds = mem_process_open_fds();
    assert_true(fds >= 3);
    fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    fds2 = mem_process_open_fds();
    close(fd);
    assert_int_equal(fds2, fds + 1);
    assert_int_equal(mem_process_open_fds(), fds);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- giving memory back: the policy, then a real trim ---------------- */

/* Signed, as the readings are (util.h's MiB() is unsigned). */
#define MiB_S(n) ((int64_t)(n) << 20)

static void test_trim_first_reading_is_the_floor(void **state)
{
    struct mem_trim t;

    mem_trim_init(&t, MiB_S(2));
    /* However big the first gap, it is the baseline, not a reason. */
    assert_false(mem_trim_due(&t, MiB_S(100), MiB_S(1)));
    assert_int_equal(t.floor, MiB_S(99));
    assert_false(mem_trim_due(&t, MiB_S(100), MiB_S(1)));
    /* Up to the threshold above the floor: not yet; past it: due. */
    assert_false(mem_trim_due(&t, MiB_S(101), MiB_S(1)));
    assert_false(mem_trim_due(&t, MiB_S(102), MiB_S(1)));
    assert_true(mem_trim_due(&t, MiB_S(102) + 1, MiB_S(1)));
    /* It is the gap that counts, not RSS alone: live bytes rising with
     * RSS (by less than the growth limit each check) are no reason. */
    mem_trim_init(&t, MiB_S(2));
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1)));
    for (int i = 1; i <= 20; i++)
        assert_false(mem_trim_due(&t, MiB_S(10) + i * MiB_S(1) / 4,
                                  MiB_S(1) + i * MiB_S(1) / 4));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_trim_floor_follows_the_lowest_gap(void **state)
{
    struct mem_trim t;

    mem_trim_init(&t, MiB_S(2));
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1))); /* gap 9 */
    assert_false(mem_trim_due(&t, MiB_S(8), MiB_S(1)));  /* gap 7: new floor */
    assert_int_equal(t.floor, MiB_S(7));
    /* 1.75 MiB over the new floor (but under the first gap): not due. */
    assert_false(mem_trim_due(&t, MiB_S(9) + MiB_S(3) / 4, MiB_S(1)));
    /* 2 MiB + 1 over the lowest gap: due, though under 9 + 2. */
    assert_true(mem_trim_due(&t, MiB_S(10) + 1, MiB_S(1)));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_trim_waits_while_memory_is_taken_on(void **state)
{
    struct mem_trim t;

    mem_trim_init(&t, MiB_S(4));
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1)));
    /* A burst of memory that is not accounted (OpenSSL's, in a program
     * that did not route it through mem.c): RssAnon grew by 30, the live
     * bytes did not. */
    assert_false(mem_trim_due(&t, MiB_S(40), MiB_S(1)));
    /* A burst of accounted memory, in heap already resident. */
    assert_false(mem_trim_due(&t, MiB_S(40), MiB_S(20)));
    /* Growth up to threshold / 4 of either counts as quiet... */
    assert_true(mem_trim_due(&t, MiB_S(41), MiB_S(21)));
    assert_false(mem_trim_done(&t, MiB_S(39), MiB_S(21)));
    /* ...and one byte more does not: of the live bytes, */
    assert_false(mem_trim_due(&t, MiB_S(39), MiB_S(22) + 1));
    assert_true(mem_trim_due(&t, MiB_S(39), MiB_S(22) + 1));
    assert_false(mem_trim_done(&t, MiB_S(37), MiB_S(22) + 1));
    /* or of RssAnon (measured from the reading after the trim). */
    assert_false(mem_trim_due(&t, MiB_S(38) + 1, MiB_S(22) + 1));
    assert_true(mem_trim_due(&t, MiB_S(38) + 1, MiB_S(22) + 1));
    assert_false(mem_trim_done(&t, MiB_S(36), MiB_S(22) + 1));
    /* Falling live bytes (connections closing) are quiet. */
    assert_true(mem_trim_due(&t, MiB_S(36), MiB_S(2)));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Runs checks at (rss, live) until one is due; returns how many it took
 * (the due one included), or 0 if none was within 2 * the longest
 * backoff. */
static int checks_until_due(struct mem_trim *t, int64_t rss, int64_t live)
{
    for (int i = 1; i <= 2 * MEM_TRIM_BACKOFF_MAX; i++)
        if (mem_trim_due(t, rss, live))
            return i;
    return 0;
}

static void test_trim_that_gives_little_backs_off(void **state)
{
    struct mem_trim t;
    uint32_t want = 1;

    mem_trim_init(&t, MiB_S(2));
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1)));
    assert_false(mem_trim_due(&t, MiB_S(40), MiB_S(1))); /* growing */
    assert_true(mem_trim_due(&t, MiB_S(40), MiB_S(1)));
    /* The trim gave back 0.5 MiB (under threshold / 2): what is held is
     * live or not heap. The floor stays where it was... */
    assert_true(mem_trim_done(&t, MiB_S(39) + MiB_S(1) / 2, MiB_S(1)));
    assert_int_equal(t.floor, MiB_S(9));
    /* ...and the next trim waits 2 checks, then 4, 8 ... 64, and stays
     * at 64: each trim that gives little back doubles the wait. */
    for (int k = 0; k < 9; k++) {
        want = want < MEM_TRIM_BACKOFF_MAX ? want * 2 : want;
        assert_int_equal(t.backoff, want);
        assert_int_equal(checks_until_due(&t, MiB_S(39), MiB_S(1)), want);
        assert_true(mem_trim_done(&t, MiB_S(39), MiB_S(1)));
    }
    assert_int_equal(t.backoff, MEM_TRIM_BACKOFF_MAX);
    assert_int_equal(checks_until_due(&t, MiB_S(39), MiB_S(1)),
                     MEM_TRIM_BACKOFF_MAX);
    /* Exactly threshold / 2 back is enough not to back off. */
    assert_false(mem_trim_done(&t, MiB_S(38), MiB_S(1)));
    assert_int_equal(t.backoff, 1);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_trim_backoff_resets(void **state)
{
    struct mem_trim t;

    /* After a trim that gave back a lot. */
    mem_trim_init(&t, MiB_S(2));
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1)));
    assert_false(mem_trim_due(&t, MiB_S(40), MiB_S(1)));
    for (int k = 0; k < 4; k++) {
        assert_true(checks_until_due(&t, MiB_S(40), MiB_S(1)) > 0);
        assert_true(mem_trim_done(&t, MiB_S(40), MiB_S(1)));
    }
    assert_int_equal(t.backoff, 16);
    assert_int_equal(checks_until_due(&t, MiB_S(40), MiB_S(1)), 16);
    /* 20 of the 31 MiB held came back (the rest is still live): the next
     * trim may run at the next quiet check. */
    assert_false(mem_trim_done(&t, MiB_S(20), MiB_S(1)));
    assert_int_equal(t.backoff, 1);
    assert_int_equal(checks_until_due(&t, MiB_S(20), MiB_S(1)), 1);

    /* When the gap falls back to within threshold of the floor: what
     * held it is gone, and the next burst is trimmed when it is over,
     * not after the old wait. */
    for (int k = 0; k < 4; k++) {
        assert_true(mem_trim_done(&t, MiB_S(20), MiB_S(1)));
        assert_true(checks_until_due(&t, MiB_S(20), MiB_S(1)) > 0);
    }
    assert_true(mem_trim_done(&t, MiB_S(20), MiB_S(1)));
    assert_int_equal(t.backoff, 32);
    assert_false(mem_trim_due(&t, MiB_S(11), MiB_S(1))); /* gap 10: held 1 */
    assert_int_equal(t.backoff, 1);
    assert_false(mem_trim_due(&t, MiB_S(30), MiB_S(1))); /* a new burst */
    assert_int_equal(checks_until_due(&t, MiB_S(30), MiB_S(1)), 1);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* The burst that raised the floor for good: 2,000 HTTPS requests from a
 * library program, whose OpenSSL memory is not accounted. The readings
 * are the shape of the real ones (tests/unit/test_mem_tls_burst.c has the
 * real thing): the live bytes grow by a little and stop, RssAnon grows by
 * ~70 MiB, the connections sit idle in the pool a while (their OpenSSL
 * state is live: a trim then gives back little), then they close: the
 * live bytes fall a little, and RssAnon stays where it was, freed heap
 * that glibc keeps. It must be trimmed after the burst. */
static void test_trim_after_burst_of_unaccounted_memory(void **state)
{
    struct mem_trim t;
    int n;

    mem_trim_init(&t, MiB_S(2));
    assert_false(mem_trim_due(&t, MiB_S(8), MiB_S(1)));
    /* The burst: no trim while RssAnon climbs, whatever the live bytes
     * do. */
    assert_false(mem_trim_due(&t, MiB_S(30), MiB_S(2)));
    assert_false(mem_trim_due(&t, MiB_S(60), MiB_S(2) + MiB_S(1) / 4));
    assert_false(mem_trim_due(&t, MiB_S(76), MiB_S(2) + MiB_S(1) / 4));
    /* Idle pool: quiet, 66 MiB over the floor, a trim is due and gives
     * back 1 MiB less a byte (handshake leftovers). */
    assert_true(mem_trim_due(&t, MiB_S(76), MiB_S(2) + MiB_S(1) / 4));
    assert_true(mem_trim_done(&t, MiB_S(75) + 1, MiB_S(2) + MiB_S(1) / 4));
    /* Still idle for a while: the retries give nothing either. */
    for (int k = 0; k < 3; k++) {
        assert_true(checks_until_due(&t, MiB_S(75), MiB_S(2)) > 0);
        assert_true(mem_trim_done(&t, MiB_S(75), MiB_S(2)));
    }
    /* The pool closes. OpenSSL frees ~65 MiB; glibc keeps it resident. */
    n = checks_until_due(&t, MiB_S(75), MiB_S(1));
    assert_true(n > 0);
    assert_true(n <= 16); /* within the backoff reached: 2, 4, 8, 16 */
    assert_false(mem_trim_done(&t, MiB_S(9), MiB_S(1)));
    /* Back at the floor: nothing more to do. */
    assert_int_equal(t.floor, MiB_S(7));
    assert_int_equal(t.backoff, 1);
    assert_int_equal(checks_until_due(&t, MiB_S(9), MiB_S(1)), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_trim_off_and_unreadable(void **state)
{
    struct mem_trim t;

    mem_trim_init(&t, 0);
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1)));
    assert_false(mem_trim_due(&t, MiB_S(1000), MiB_S(1)));
    /* An unreadable VmRSS is never due and leaves the state alone. */
    mem_trim_init(&t, MiB_S(2));
    assert_false(mem_trim_due(&t, -1, MiB_S(1)));
    assert_false(t.primed);
    assert_false(mem_trim_due(&t, MiB_S(10), MiB_S(1)));
    assert_false(mem_trim_due(&t, -1, MiB_S(5)));
    assert_int_equal(t.last_live, MiB_S(1));
    assert_int_equal(t.floor, MiB_S(9));
    /* An unreadable reading after a trim: the readings stay, and the
     * next trim backs off as after one that gave nothing. */
    assert_true(mem_trim_done(&t, -1, MiB_S(1)));
    assert_int_equal(t.floor, MiB_S(9));
    assert_int_equal(t.last_rss, MiB_S(10));
    assert_int_equal(t.backoff, 2);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* The real thing: ~20 MiB of TLS-sized blocks freed with every 64th kept
 * (so free() cannot shrink the heap's top by itself), then one check. */
static void test_trim_check_gives_rss_back(void **state)
{
    static const size_t sizes[] = {7608, 856, 936, 536, 184, 152, 120, 56,
                                   56,   56,  72,  40,  400, 300, 200, 96};
    enum { N = 2000 * 16 };
    struct mem_trim_stats s0, s1;
    struct mem_trim t;
    void **p = calloc(N, sizeof(*p));
    int64_t rss_full, live_full, freed, back;
    int tries;

    assert_non_null(p);
    mem_trim_stats(&s0);
    mem_trim_init(&t, MiB_S(2));
    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = mem_alloc(MEM_TLS, sizes[i % 16]));
    assert_int_equal(mem_trim_check(&t), -1); /* the first reading */
    rss_full = mem_process_rss_anon();
    live_full = mem_live_bytes(MEM_ALL);
    for (int i = 0; i < N; i++) {
        if (i % 64 != 63) {
            mem_free(MEM_TLS, p[i]);
            p[i] = NULL;
        }
    }
    freed = live_full - mem_live_bytes(MEM_ALL);
    assert_true(freed > MiB_S(16));
    back = mem_trim_check(&t);
    mem_trim_stats(&s1);
    assert_int_equal(s1.checks - s0.checks, 2);
    assert_int_equal(s1.trims - s0.trims, 1);
    assert_true(back >= 0);
    assert_int_equal(s1.given_back - s0.given_back, back);
    assert_true(s1.ns > s0.ns);
#ifndef __SANITIZE_ADDRESS__
    /* glibc: most of what was freed comes back (pages that still hold a
     * kept block or a free chunk's header stay). ASan's allocator is not
     * glibc's heap: there malloc_trim has nothing to give. */
    assert_true(back > freed / 2);
    assert_true(mem_process_rss_anon() < rss_full - freed / 2);
    assert_int_equal(s1.backed_off, s0.backed_off);
#else
    (void)rss_full;
#endif
    /* Straight after, what is left is the pages that hold a kept block
     * or a free chunk's header (under ASan, everything). If that is still
     * more than the threshold over the floor, one of the next two checks
     * tries once more, gets next to nothing, and backs off. */
    tries = 0;
    for (int k = 0; k < 2; k++) {
        back = mem_trim_check(&t);
        if (back >= 0) {
            tries++;
            assert_true(back < MiB_S(1));
        }
    }
    mem_trim_stats(&s0);
    assert_true(tries <= 1);
    assert_int_equal(s0.trims - s1.trims, tries);
    assert_int_equal(s0.backed_off - s1.backed_off, tries);
    for (int i = 0; i < N; i++)
        mem_free(MEM_TLS, p[i]);
    free(p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* statm's resident - shared is status's RssAnon. */
static void test_rss_anon_matches_status(void **state)
{
    char line[256];
    long long kb = -1;
    FILE *f = fopen("/proc/self/status", "re");
    int64_t a;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "RssAnon: %lld kB", &kb) == 1)
            break;
    fclose(f);
    a = mem_process_rss_anon();
    assert_true(kb > 0 && a > 0);
    /* Two readings a moment apart: equal but for a few pages. */
    assert_true(a - kb * 1024 < MiB_S(1) && kb * 1024 - a < MiB_S(1));
    assert_true(a < mem_process_rss());
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tag_names),
        cmocka_unit_test(test_per_tag_accounting),
        cmocka_unit_test(test_zero_size_and_free_null),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_strndup),
        cmocka_unit_test(test_realloc_accounting),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_fail_at_every_n),
        cmocka_unit_test(test_fail_at_fires_once),
        cmocka_unit_test(test_fail_at_is_thread_local),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_cross_thread),
        cmocka_unit_test(test_thread_churn),
        cmocka_unit_test(test_process_facts),
        cmocka_unit_test(test_trim_first_reading_is_the_floor),
        cmocka_unit_test(test_trim_floor_follows_the_lowest_gap),
        cmocka_unit_test(test_trim_waits_while_memory_is_taken_on),
        cmocka_unit_test(test_trim_that_gives_little_backs_off),
        cmocka_unit_test(test_trim_backoff_resets),
        cmocka_unit_test(test_trim_after_burst_of_unaccounted_memory),
        cmocka_unit_test(test_trim_off_and_unreadable),
        cmocka_unit_test(test_trim_check_gives_rss_back),
        cmocka_unit_test(test_rss_anon_matches_status),
        cmocka_unit_test(test_trace_env),
        /* Trace mode cannot be turned off again: these come last. */
        cmocka_unit_test(test_trace_sites),
        cmocka_unit_test(test_trace_realloc),
        cmocka_unit_test(test_trace_many),
        cmocka_unit_test(test_trace_threads),
    };

    if (argc > 1 && strcmp(argv[1], "--trace-env-child") == 0)
        return trace_env_child();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
