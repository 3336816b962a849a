/*
 * hist.c - the log-linear latency histogram (see hist.h).
 *
 * Layout. With S = HIST_SUB_BITS, a value v < 2^S has bucket v. A larger
 * v with its highest set bit at position p is shifted right by
 * p - (S - 1), which leaves its top S bits m in [2^(S-1), 2^S); its
 * bucket is (shift << (S - 1)) + m. Consecutive octaves therefore follow
 * each other without a gap, and the index grows with the value.
 *
 * Keeps: recording is O(1) and never allocates. Must not: depend on
 * anything but mem (it is used by the bench's hot path and by tests).
 */
#include <string.h>

#include "hist.h"
#include "mem.h"

#define HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_BUCKETS ((size_t)(64 - HIST_SUB_BITS + 2) * HALF)

struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
};

size_t hist_bucket_of(uint64_t v)
{
    unsigned msb, shift;

    if (v < (1u << HIST_SUB_BITS))
        return (size_t)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - (HIST_SUB_BITS - 1);
    return ((size_t)shift << (HIST_SUB_BITS - 1)) + (size_t)(v >> shift);
}

uint64_t hist_bucket_low(size_t i)
{
    size_t shift;

    if (i < (1u << HIST_SUB_BITS))
        return i;
    shift = (i >> (HIST_SUB_BITS - 1)) - 1;
    return (uint64_t)(i - (shift << (HIST_SUB_BITS - 1))) << shift;
}

uint64_t hist_bucket_high(size_t i)
{
    if (i + 1 >= HIST_BUCKETS)
        return UINT64_MAX;
    return hist_bucket_low(i + 1) - 1;
}

struct hist *hist_new(void)
{
    return mem_calloc(MEM_MISC, 1, sizeof(struct hist));
}

void hist_free(struct hist *h)
{
    mem_free(MEM_MISC, h);
}

void hist_record(struct hist *h, uint64_t v)
{
    h->buckets[hist_bucket_of(v)]++;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
}

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
}

uint64_t hist_count(const struct hist *h)
{
    return h->count;
}

uint64_t hist_min(const struct hist *h)
{
    return h->min;
}

uint64_t hist_max(const struct hist *h)
{
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    if (!(q > 0.0)) /* also NaN */
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    /* The rank of the value asked for, 1-based: ceil(q * count), at
     * least 1. */
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t hi = hist_bucket_high(i);

            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}
