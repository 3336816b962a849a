/*
 * test_influx_line.c - line protocol written exactly: escaping of each
 * part, sorted tags, integer and float fields, what cannot be written,
 * and /metrics' exposition turned into points.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "influx_line.h"
#include "mem.h"

#define TAG(k, v)                                                              \
    {                                                                          \
        (k), (v), sizeof(k) - 1, sizeof(v) - 1                                 \
    }

static void expect(struct sbuf *b, const char *want)
{
    if (b->len != strlen(want) || memcmp(b->data, want, b->len))
        fail_msg("got  \"%.*s\"\nwant \"%s\"", (int)b->len,
                 b->data ? (const char *)b->data : "", want);
}

static void test_point_escaping_and_order(void **state)
{
    struct sbuf b;
    const struct influx_tag tags[] = {
        TAG("z", "last"), TAG("host", "a b,c=d"), TAG("a key", "x"),
        TAG("empty", ""), TAG("ab", "y"),
    };

    (void)state;
    sbuf_init(&b, MEM_METRICS, 4096);
    assert_int_equal(influx_point(&b, "mem bytes,x=1", 13, tags, 5, 1234, true,
                                  1700000000000000000LL),
                     0);
    /* Measurement: comma and space escaped, '=' not; tags sorted by key
     * bytewise ("a key" < "ab" < "host" < "z"), the empty one left out;
     * keys and values escape comma, equals and space. */
    expect(&b, "mem\\ bytes\\,x=1,a\\ key=x,ab=y,host=a\\ b\\,c\\=d,z=last "
               "value=1234i 1700000000000000000\n");
    sbuf_fini(&b);
}

static void test_point_values(void **state)
{
    struct sbuf b;

    (void)state;
    sbuf_init(&b, MEM_METRICS, 4096);
    assert_int_equal(influx_point(&b, "g", 1, NULL, 0, 0.5, false, 7), 0);
    assert_int_equal(influx_point(&b, "g", 1, NULL, 0, 3, false, 7), 0);
    assert_int_equal(influx_point(&b, "c", 1, NULL, 0, -42, true, 7), 0);
    assert_int_equal(influx_point(&b, "g", 1, NULL, 0, 1e300, false, 7), 0);
    expect(&b, "g value=0.5 7\ng value=3 7\nc value=-42i 7\n"
               "g value=1.0000000000000001e+300 7\n");
    sbuf_fini(&b);
}

static void test_point_refusals_leave_nothing(void **state)
{
    struct sbuf b;
    const struct influx_tag nl[] = {TAG("k", "a\nb")};
    const struct influx_tag nokey[] = {TAG("", "v")};

    (void)state;
    sbuf_init(&b, MEM_METRICS, 4096);
    assert_int_equal(influx_point(&b, "ok", 2, NULL, 0, 1, true, 1), 0);
    assert_int_equal(influx_point(&b, "g", 1, NULL, 0, NAN, false, 1), -EDOM);
    assert_int_equal(influx_point(&b, "g", 1, NULL, 0, INFINITY, false, 1),
                     -EDOM);
    assert_int_equal(influx_point(&b, "c", 1, NULL, 0, 1.5, true, 1), -EDOM);
    assert_int_equal(influx_point(&b, "c", 1, NULL, 0, 1e19, true, 1), -EDOM);
    assert_int_equal(influx_point(&b, "m", 1, nl, 1, 1, true, 1), -EINVAL);
    assert_int_equal(influx_point(&b, "m", 1, nokey, 1, 1, true, 1), -EINVAL);
    assert_int_equal(influx_point(&b, "a\tb", 3, NULL, 0, 1, true, 1), -EINVAL);
    assert_int_equal(influx_point(&b, "", 0, NULL, 0, 1, true, 1), -EINVAL);
    expect(&b, "ok value=1i 1\n");
    sbuf_fini(&b);
    /* A builder too small: nothing half written. */
    sbuf_init(&b, MEM_METRICS, 10);
    assert_int_equal(influx_point(&b, "measurement", 11, NULL, 0, 1, true, 1),
                     -ENOBUFS);
    assert_int_equal(b.len, 0);
    sbuf_fini(&b);
}

static void test_from_prometheus(void **state)
{
    static const char page[] = "# HELP moor_conns Open connections.\n"
                               "# TYPE moor_conns gauge\n"
                               "moor_conns{state=\"idle\",proto=\"ws\"} 12\n"
                               "# TYPE moor_closed_total counter\n"
                               "moor_closed_total{reason=\"peer_closed\"} 3\n"
                               "# TYPE moor_lat histogram\n"
                               "moor_lat_bucket{le=\"0.001\"} 5\n"
                               "moor_lat_bucket{le=\"+Inf\"} 9\n"
                               "moor_lat_sum 0.25\n"
                               "moor_lat_count 9\n"
                               "# TYPE moor_x gauge\n"
                               "moor_x{host=\"a \\\"q\\\" \\\\ b\"} 1.5\n"
                               "moor_x{host=\"line\\nbreak\"} 2\n"
                               "moor_x NaN\n"
                               "moor_up 1\n";
    const struct influx_tag host[] = {TAG("host", "h1")};
    struct sbuf b;
    size_t skipped;

    (void)state;
    sbuf_init(&b, MEM_METRICS, 1 << 16);
    assert_int_equal(influx_from_prometheus(&b, page, sizeof(page) - 1, host, 1,
                                            99, &skipped),
                     8);
    assert_int_equal(skipped, 2); /* the newline label, the NaN */
    expect(&b, "moor_conns,host=h1,proto=ws,state=idle value=12 99\n"
               "moor_closed_total,host=h1,reason=peer_closed value=3i 99\n"
               "moor_lat_bucket,host=h1,le=0.001 value=5i 99\n"
               "moor_lat_bucket,host=h1,le=+Inf value=9i 99\n"
               "moor_lat_sum,host=h1 value=0.25 99\n"
               "moor_lat_count,host=h1 value=9i 99\n"
               /* its own host label kept as exported_host */
               "moor_x,exported_host=a\\ \"q\"\\ \\\\ b,host=h1 value=1.5 "
               "99\n"
               "moor_up,host=h1 value=1 99\n");
    sbuf_fini(&b);
}

static void test_from_prometheus_bad_lines(void **state)
{
    static const char *bad[] = {
        "moor_x{a=\"1\" 2\n", "moor_x{a=1} 2\n", "moor_x\n",
        "{a=\"b\"} 1\n",      "moor_x 12abc\n",  "# TYPE broken\n",
    };
    struct sbuf b;
    size_t skipped;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sbuf_init(&b, MEM_METRICS, 4096);
        assert_int_equal(influx_from_prometheus(&b, bad[i], strlen(bad[i]),
                                                NULL, 0, 1, &skipped),
                         -EINVAL);
        sbuf_fini(&b);
    }
    assert_int_equal(mem_live_bytes(MEM_METRICS), 0);
}

/* histogram_quantile()'s interpolation, as Prometheus does it. */
static void test_hist_quantile(void **state)
{
    const double le[] = {0.001, 0.01, 0.1, INFINITY};
    const double mid[] = {0, 10, 10, 10}; /* all in (0.001, 0.01] */
    const double first[] = {4, 4, 4, 4};  /* all in [0, 0.001] */
    const double inf[] = {0, 0, 0, 5};    /* all above 0.1 */
    const double spread[] = {10, 20, 90, 100};
    const double none[] = {0, 0, 0, 0};
    const double finite_le[] = {0.001, 0.01};

    (void)state;
    assert_float_equal(influx_hist_quantile(le, mid, 4, 0.5), 0.0055, 1e-12);
    assert_float_equal(influx_hist_quantile(le, mid, 4, 0.9), 0.0091, 1e-12);
    assert_float_equal(influx_hist_quantile(le, mid, 4, 0.99), 0.00991, 1e-12);
    assert_float_equal(influx_hist_quantile(le, first, 4, 0.5), 0.0005, 1e-12);
    assert_float_equal(influx_hist_quantile(le, inf, 4, 0.99), 0.1, 1e-12);
    /* rank 50 of 100: the 30th of the 70 in (0.01, 0.1] */
    assert_float_equal(influx_hist_quantile(le, spread, 4, 0.5),
                       0.01 + 0.09 * 30.0 / 70.0, 1e-12);
    /* rank 99: past 90, in +Inf: the highest finite bound */
    assert_float_equal(influx_hist_quantile(le, spread, 4, 0.99), 0.1, 1e-12);
    /* rank 10 ends the first bucket exactly */
    assert_float_equal(influx_hist_quantile(le, spread, 4, 0.1), 0.001, 1e-12);
    assert_true(isnan(influx_hist_quantile(le, none, 4, 0.5)));
    assert_true(isnan(influx_hist_quantile(le, mid, 1, 0.5)));
    assert_true(isnan(influx_hist_quantile(finite_le, mid, 2, 0.5)));
}

static void test_hist_buckets(void **state)
{
    static const char page[] =
        "# TYPE moor_pubsub_delivery_seconds histogram\n"
        "moor_pubsub_delivery_seconds_bucket{le=\"0.001\"} 3\n"
        "moor_pubsub_delivery_seconds_bucket{le=\"0.5\"} 7\n"
        "moor_pubsub_delivery_seconds_bucket{le=\"+Inf\"} 8\n"
        "moor_pubsub_delivery_seconds_sum 1.25\n"
        "moor_pubsub_delivery_seconds_count 8\n"
        "moor_auth_callback_seconds_bucket{le=\"0.001\"} 99\n";
    static const char bad[] =
        "moor_pubsub_delivery_seconds_bucket{le=\"x\"} 3\n";
    double le[4], cum[4];

    (void)state;
    assert_int_equal(influx_hist_buckets(page, strlen(page),
                                         "moor_pubsub_delivery_seconds", le,
                                         cum, 4),
                     3);
    assert_float_equal(le[0], 0.001, 0);
    assert_float_equal(le[1], 0.5, 0);
    assert_true(isinf(le[2]) && le[2] > 0);
    assert_float_equal(cum[0], 3, 0);
    assert_float_equal(cum[2], 8, 0);
    assert_int_equal(influx_hist_buckets(page, strlen(page),
                                         "moor_pubsub_delivery_seconds", le,
                                         cum, 2),
                     -E2BIG);
    assert_int_equal(
        influx_hist_buckets(page, strlen(page), "moor_nothing", le, cum, 4), 0);
    assert_int_equal(influx_hist_buckets(bad, strlen(bad),
                                         "moor_pubsub_delivery_seconds", le,
                                         cum, 4),
                     -EINVAL);
}

static void test_quantile_points(void **state)
{
    const double le[] = {1, 2, 4, INFINITY};
    const double inc[] = {0, 0, 0, 5}, zero[] = {0, 0, 0, 0};
    const struct influx_tag extra[] = {TAG("host", "h1"),
                                       TAG("quantile", "mine")};
    struct sbuf b;

    (void)state;
    sbuf_init(&b, MEM_METRICS, 4096);
    assert_int_equal(influx_quantile_points(&b, le, inc, 4, extra, 2, 7), 3);
    expect(&b, "moor_pubsub_delivery_quantile_seconds,host=h1,quantile=0.5 "
               "value=4 7\n"
               "moor_pubsub_delivery_quantile_seconds,host=h1,quantile=0.9 "
               "value=4 7\n"
               "moor_pubsub_delivery_quantile_seconds,host=h1,quantile=0.99 "
               "value=4 7\n");
    b.len = 0;
    /* nothing delivered in the interval: no point */
    assert_int_equal(influx_quantile_points(&b, le, zero, 4, extra, 2, 7), 0);
    assert_int_equal(b.len, 0);
    sbuf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_point_escaping_and_order),
        cmocka_unit_test(test_point_values),
        cmocka_unit_test(test_point_refusals_leave_nothing),
        cmocka_unit_test(test_from_prometheus),
        cmocka_unit_test(test_from_prometheus_bad_lines),
        cmocka_unit_test(test_hist_quantile),
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_quantile_points),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
