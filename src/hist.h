/*
 * hist.h - a latency histogram with log-linear buckets (HdrHistogram's
 * layout): values below 2^HIST_SUB_BITS each have a bucket of their own;
 * above that every power of two is split into 2^(HIST_SUB_BITS - 1)
 * equal buckets, so a recorded value is known to within 1/128 (0.8 %) of
 * itself, from nanoseconds to hours, in a fixed 59 KiB table.
 *
 * One histogram is allocated once (tag MEM_MISC) and recording never
 * allocates: the bench records one value per message. Several loops each
 * keep their own and hist_merge() them when reporting.
 */
#ifndef MOOR_HIST_H
#define MOOR_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 8

struct hist;

/* Returns a new, empty histogram, or NULL. Caller frees with hist_free(). */
struct hist *hist_new(void);
void hist_free(struct hist *h);

/* Counts one value (any uint64_t). O(1), no allocation. */
void hist_record(struct hist *h, uint64_t v);
/* Forgets every value recorded. */
void hist_reset(struct hist *h);
/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

uint64_t hist_count(const struct hist *h);
/* Smallest and largest value recorded, exactly (0 when empty). */
uint64_t hist_min(const struct hist *h);
uint64_t hist_max(const struct hist *h);
/* Mean of the values recorded, exactly up to 2^64 in total (0 if empty). */
double hist_mean(const struct hist *h);

/* The value at quantile q (0.5 = median, 0.99 = p99): the highest value
 * that shares a bucket with the ceil(q * count)-th smallest value, capped
 * by hist_max(). So it is never below the true quantile and at most 0.8 %
 * above it. 0 when empty; q outside [0, 1] is clamped. */
uint64_t hist_quantile(const struct hist *h, double q);

/* Bucket arithmetic, exposed for tests: the bucket index of v, and the
 * lowest and highest value of bucket i. */
size_t hist_bucket_of(uint64_t v);
uint64_t hist_bucket_low(size_t i);
uint64_t hist_bucket_high(size_t i);

#endif
