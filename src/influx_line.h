/*
 * influx_line.h - InfluxDB line protocol, written exactly (issue 17: the
 * InfluxDB push of moor's metrics; docs/monitoring.md):
 *
 *   measurement[,tag=value...] value=<float>|<int>i <timestamp>\n
 *
 * Escaping: a measurement's commas and spaces, and a tag key's, tag
 * value's or field key's commas, equals signs and spaces get a backslash;
 * a name or tag value holding a newline or another control character
 * cannot be written (line protocol has no escape for them) and is
 * refused. An empty tag value is left out (InfluxDB refuses them). Tags
 * are sorted by key, bytewise (as InfluxDB stores them). Pure: no I/O,
 * no allocation but the builder's.
 */
#ifndef MOOR_INFLUX_LINE_H
#define MOOR_INFLUX_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define INFLUX_MAX_TAGS 16 /* per point, extra tags included */

struct influx_tag {
    const char *key, *value;
    size_t key_len, value_len;
};

/* Appends one point to b: measurement m[0..mlen), the tags (any order),
 * one field "value" (integer: written as <int>i, value must be integral
 * and fit int64), and ts (in whatever precision the write uses). Returns
 * 0; -EINVAL (a control character in a name or tag value, an empty name,
 * more than INFLUX_MAX_TAGS tags), -EDOM (NaN or infinite value) with b
 * unchanged; or the builder's -ENOMEM / -ENOBUFS. */
int influx_point(struct sbuf *b, const char *m, size_t mlen,
                 const struct influx_tag *tags, size_t n_tags, double value,
                 bool integer, int64_t ts);

/* A Prometheus text exposition (format 0.0.4, what /metrics serves)
 * text[0..n) as line protocol: each sample becomes a point whose
 * measurement is the sample's name, whose tags are its labels (unescaped)
 * plus extra, with the sample's value as an integer for families typed
 * counter and for histograms' _bucket and _count, a float otherwise (one
 * type per series, as InfluxDB wants). Samples that cannot be written
 * (NaN, a control character) are skipped and counted in *skipped.
 * Returns the points written, or -EINVAL (a line that does not parse) /
 * the builder's -ENOMEM / -ENOBUFS. */
long influx_from_prometheus(struct sbuf *out, const char *text, size_t n,
                            const struct influx_tag *extra, size_t n_extra,
                            int64_t ts, size_t *skipped);

/* ---- delivery latency quantiles (docs/monitoring.md) ---------------------
 * The push writes moor_pubsub_delivery_quantile_seconds{quantile=...}
 * from the histogram moor_pubsub_delivery_seconds: the buckets' increase
 * since the previous push, interpolated as Prometheus'
 * histogram_quantile() does. */

#define INFLUX_QUANTILE_MEASUREMENT "moor_pubsub_delivery_quantile_seconds"
#define INFLUX_HIST_MAX_BUCKETS 64

/* The _bucket samples of histogram name (e.g. "moor_pubsub_delivery_
 * seconds") in text[0..n), in the order written (le ascending, +Inf
 * last): their le in le[], cumulative counts in cum[], cap at most.
 * Returns how many, 0 if none, -EINVAL (a bad line or le) or -E2BIG (more
 * than cap). */
int influx_hist_buckets(const char *text, size_t n, const char *name,
                        double *le, double *cum, size_t cap);

/* The q-quantile of a histogram given by its cumulative bucket counts
 * cum[0..n) with upper bounds le[0..n) (le[n-1] = +Inf): linear inside
 * the bucket holding rank q * total, from 0 for the first bucket; the
 * highest finite bound when the rank falls in +Inf. NAN when there is no
 * count at all, n < 2, or the last bound is not +Inf. */
double influx_hist_quantile(const double *le, const double *cum, size_t n,
                            double q);

/* Appends INFLUX_QUANTILE_MEASUREMENT points for quantiles 0.5, 0.9 and
 * 0.99 (tag quantile="0.5"... plus extra, float field value in seconds)
 * of the histogram whose cumulative counts grew by inc[0..n) since the
 * last push. Returns the points written: 0 when nothing was counted (no
 * delivery in the interval), or the builder's -ENOMEM / -ENOBUFS. */
long influx_quantile_points(struct sbuf *out, const double *le,
                            const double *inc, size_t n,
                            const struct influx_tag *extra, size_t n_extra,
                            int64_t ts);

#endif
