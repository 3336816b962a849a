/*
 * test_log.c - unit tests for log.c: line format, quoting, level filter,
 * per-site rate limiting with the suppressed count, concurrent sites.
 *
 * Output goes to an open_memstream() buffer through log_set_stream().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mem.h"

struct cap {
    FILE *f;
    char *text;
    size_t len;
};

static void cap_open(struct cap *c)
{
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
    assert_non_null(c->f);
    log_set_stream(c->f);
}

/* Stops capturing; returns the text (freed by cap_close). */
static const char *cap_text(struct cap *c)
{
    fflush(c->f);
    return c->text;
}

static void cap_close(struct cap *c)
{
    log_set_stream(NULL);
    fclose(c->f);
    free(c->text);
}

static unsigned count_lines(const char *s)
{
    unsigned n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static unsigned count_str(const char *s, const char *needle)
{
    unsigned n = 0;

    while ((s = strstr(s, needle)) != NULL) {
        n++;
        s += strlen(needle);
    }
    return n;
}

/* Sleeps until early in the next wall second, so that a burst of lines
 * fits inside one rate-limit window. */
static void wait_fresh_second(void)
{
    struct timespec now, d;

    clock_gettime(CLOCK_REALTIME, &now);
    d.tv_sec = 0;
    d.tv_nsec = 1000000000L - now.tv_nsec + 5000000L;
    if (d.tv_nsec >= 1000000000L) {
        d.tv_sec = 1;
        d.tv_nsec -= 1000000000L;
    }
    nanosleep(&d, NULL);
}

static void test_parse_level(void **state)
{
    enum log_level l = LOG_OFF;

    assert_int_equal(log_parse_level("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_parse_level("info", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_parse_level("WARN", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_parse_level("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_parse_level("off", &l), 0);
    assert_int_equal(l, LOG_OFF);
    l = LOG_INFO;
    assert_int_equal(log_parse_level("verbose", &l), -EINVAL);
    assert_int_equal(log_parse_level("", &l), -EINVAL);
    assert_int_equal(log_parse_level(NULL, &l), -EINVAL);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_line_format(void **state)
{
    struct cap c;
    const char *t;
    int y, mo, d, h, mi, s, ms, n = 0;
    const char *tail = " level=warn msg=\"slow consumer\" conn=17 "
                       "peer=127.0.0.1:5000\n";

    log_set_level(LOG_INFO);
    cap_open(&c);
    LOG_WARN("slow consumer", "conn=%u peer=%s", 17u, "127.0.0.1:5000");
    t = cap_text(&c);

    assert_int_equal(count_lines(t), 1);
    assert_int_equal(sscanf(t, "ts=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d,
                            &h, &mi, &s, &ms, &n),
                     7);
    assert_int_equal(n, (int)strlen("ts=2026-11-24T07:36:01.123Z"));
    assert_true(y >= 2024 && mo >= 1 && mo <= 12 && ms >= 0 && ms <= 999);
    assert_string_equal(t + n, tail);
    cap_close(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_quoting(void **state)
{
    struct cap c;
    const char *t;

    log_set_level(LOG_DEBUG);
    cap_open(&c);
    /* The msg field is quoted and escaped; the pairs keep the caller's
     * quotes, but a newline from a peer cannot start a forged line. */
    LOG_INFO("say \"hi\"\\", "peer=\"%s\"", "evil\nts=0 level=error");
    LOG_INFO("no pairs", "%s", "");
    t = cap_text(&c);
    assert_int_equal(count_lines(t), 2);
    assert_non_null(strstr(t, " msg=\"say \\\"hi\\\"\\\\\" "
                              "peer=\"evil\\x0ats=0 level=error\"\n"));
    assert_non_null(strstr(t, " msg=\"no pairs\"\n"));
    cap_close(&c);
    log_set_level(LOG_INFO);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_long_line(void **state)
{
    static char big[5000];
    struct log_site site = {0};
    struct cap c;
    const char *t;

    memset(big, 'x', sizeof(big) - 1);
    cap_open(&c);
    log_at(&site, LOG_ERROR, "long", "v=%s", big);
    t = cap_text(&c);
    assert_int_equal(count_lines(t), 1);
    assert_true(strlen(t) <= 2048);
    assert_true(t[strlen(t) - 1] == '\n');
    cap_close(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_levels_filter(void **state)
{
    struct log_site site = {0};
    struct cap c;
    const char *t;

    cap_open(&c);
    log_set_level(LOG_WARN);
    assert_int_equal(log_get_level(), LOG_WARN);
    LOG_DEBUG("d", "k=%d", 1);
    LOG_INFO("i", "k=%d", 2);
    LOG_WARN("w", "k=%d", 3);
    LOG_ERROR("e", "k=%d", 4);
    /* log_at() itself filters too. */
    log_at(&site, LOG_INFO, "direct", "k=%d", 5);
    t = cap_text(&c);
    assert_int_equal(count_lines(t), 2);
    assert_null(strstr(t, "level=debug"));
    assert_null(strstr(t, "level=info"));
    assert_non_null(strstr(t, "level=warn msg=\"w\" k=3\n"));
    assert_non_null(strstr(t, "level=error msg=\"e\" k=4\n"));

    log_set_level(LOG_OFF);
    LOG_ERROR("e", "k=%d", 6);
    assert_int_equal(count_lines(cap_text(&c)), 2);

    log_set_level(LOG_DEBUG);
    LOG_DEBUG("d", "k=%d", 7);
    assert_non_null(strstr(cap_text(&c), "level=debug msg=\"d\" k=7\n"));

    log_set_level(LOG_INFO);
    cap_close(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* One call site, called n times. */
static void flood(unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++)
        LOG_WARN("bad client", "i=%u", i);
}

static void other_site(void)
{
    LOG_WARN("other site", "k=%d", 1);
}

static void test_rate_limit(void **state)
{
    uint64_t before = log_suppressed_total();
    struct cap c;
    const char *t;

    log_set_level(LOG_INFO);
    cap_open(&c);
    wait_fresh_second();
    flood(100);
    /* Another site is not affected by the first one's flood. */
    other_site();
    t = cap_text(&c);
    assert_int_equal(count_str(t, "msg=\"bad client\""), LOG_BURST);
    assert_true(count_lines(t) <= LOG_BURST + 1);
    assert_int_equal(count_str(t, "msg=\"other site\""), 1);
    assert_null(strstr(t, "suppressed="));
    assert_int_equal(log_suppressed_total() - before, 100 - LOG_BURST);

    /* The next second, the site's next line reports what it dropped. */
    wait_fresh_second();
    flood(1);
    t = cap_text(&c);
    assert_non_null(strstr(t, "msg=\"bad client\" i=0 suppressed=90\n"));
    assert_int_equal(count_str(t, "suppressed="), 1);

    /* And the count was reset: a later line says nothing. */
    flood(1);
    assert_int_equal(count_str(cap_text(&c), "suppressed="), 1);
    cap_close(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static unsigned evaluated;

static unsigned costly(unsigned i)
{
    evaluated++;
    return i;
}

/* A line that will be suppressed does not evaluate its arguments (a peer
 * address costs a syscall), and is still counted. */
static void test_suppressed_args_not_evaluated(void **state)
{
    uint64_t before = log_suppressed_total();
    struct cap c;

    (void)state;
    log_set_level(LOG_INFO);
    cap_open(&c);
    wait_fresh_second();
    evaluated = 0;
    for (unsigned i = 0; i < 50; i++)
        LOG_WARN("costly", "i=%u", costly(i));
    assert_int_equal(count_str(cap_text(&c), "msg=\"costly\""), LOG_BURST);
    assert_int_equal(evaluated, LOG_BURST);
    assert_int_equal(log_suppressed_total() - before, 50 - LOG_BURST);
    cap_close(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

#define LT_THREADS 4
#define LT_LINES 2000

static void *log_thread(void *arg)
{
    unsigned i;

    for (i = 0; i < LT_LINES; i++)
        LOG_WARN("from threads", "i=%u", i);
    return arg;
}

/* Several threads hammer one site: every call is either written or counted
 * as suppressed, and nothing is torn. */
static void test_threads_one_site(void **state)
{
    uint64_t before = log_suppressed_total();
    pthread_t th[LT_THREADS];
    struct cap c;
    const char *t;
    unsigned i, lines;

    log_set_level(LOG_INFO);
    cap_open(&c);
    for (i = 0; i < LT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_thread, NULL), 0);
    for (i = 0; i < LT_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    t = cap_text(&c);
    lines = count_lines(t);
    assert_int_equal(count_str(t, "ts="), lines);
    assert_int_equal(count_str(t, "msg=\"from threads\""), lines);
    assert_int_equal(lines + (log_suppressed_total() - before),
                     LT_THREADS * LT_LINES);
    assert_true(lines < LT_THREADS * LT_LINES / 2);
    cap_close(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_levels_filter),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_suppressed_args_not_evaluated),
        cmocka_unit_test(test_threads_one_site),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
