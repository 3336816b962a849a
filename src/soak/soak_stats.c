/*
 * soak_stats.c - Theil-Sen slopes, their confidence intervals and the
 * leak verdict of `moor soak` (soak_stats.h).
 *
 * The interval is the rank-based one that goes with Theil-Sen (Sen 1968;
 * the same as Kendall's tau test): with N pairwise slopes sorted and
 * C = z * sqrt(Var S), Var S = n(n-1)(2n+5)/18, the bounds are the
 * slopes of rank (N - C)/2 and (N + C)/2 + 1. It needs no assumption on
 * the noise (a GC's breathing, page-granular RSS), and with ties (a
 * count that does not move) it collapses onto zero as it should.
 *
 * Keeps: pure arithmetic on the caller's arrays; one temporary array of
 * pairwise slopes, from mem.c, freed before returning. Long runs are
 * thinned to at most SOAK_FIT_MAX points (every k-th sample) so the
 * O(n^2) pairs stay under half a million (4 MB, a few tens of ms).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "soak_stats.h"
#include "util.h"

#define SOAK_FIT_MAX 1000u
#define Z95 1.959963984540054

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median_sorted(const double *v, size_t n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int soak_fit(const double *y, size_t n, struct soak_fit *f)
{
    size_t step = 1, m, np = 0, k;
    double *s, c, r1, r2;

    memset(f, 0, sizeof(*f));
    if (n < 2)
        return -EINVAL;
    while ((n + step - 1) / step > SOAK_FIT_MAX)
        step++;
    m = (n + step - 1) / step;
    if (m < 2)
        return -EINVAL;
    s = mem_alloc(MEM_MISC, sizeof(double) * MAX(m * (m - 1) / 2, m));
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < m; i++)
        for (size_t j = i + 1; j < m; j++)
            s[np++] = (y[j * step] - y[i * step]) / (double)((j - i) * step);
    qsort(s, np, sizeof(*s), cmp_double);
    f->slope = median_sorted(s, np);
    /* Ranks are 1-based in the formula; clamp to the array. */
    c = Z95 * sqrt((double)m * (double)(m - 1) * (2.0 * (double)m + 5) / 18);
    r1 = floor(((double)np - c) / 2);
    r2 = ceil(((double)np + c) / 2) + 1;
    k = r1 < 1 ? 0 : (size_t)r1 - 1;
    f->lo = s[MIN(k, np - 1)];
    k = r2 < 1 ? 0 : (size_t)r2 - 1;
    f->hi = s[MIN(k, np - 1)];
    for (size_t i = 0; i < m; i++)
        s[i] = y[i * step] - f->slope * (double)(i * step);
    qsort(s, m, sizeof(*s), cmp_double);
    f->intercept = median_sorted(s, m);
    f->growth = f->slope * (double)(n - 1);
    f->n = n;
    mem_free(MEM_MISC, s);
    return 0;
}

/* How far the second half's median sits above the first quarter's: a
 * rise that a fit over the whole run may miss when it came early and
 * stopped (most slopes are then between plateau points, around zero). */
static double risen(const double *y, size_t n)
{
    size_t q = MAX(n / 4, (size_t)1), h = n / 2;
    double *v = mem_alloc(MEM_MISC, sizeof(*v) * (n - h));
    double a, b;

    if (!v)
        return 0;
    memcpy(v, y, sizeof(*v) * q);
    qsort(v, q, sizeof(*v), cmp_double);
    a = median_sorted(v, q);
    memcpy(v, y + h, sizeof(*v) * (n - h));
    qsort(v, n - h, sizeof(*v), cmp_double);
    b = median_sorted(v, n - h);
    mem_free(MEM_MISC, v);
    return b - a;
}

/* How far the floor rose: the lowest of the last third of the samples
 * over the lowest of the first third. A leak lifts the floor with the
 * rest; a garbage-collected heap that climbs between collections and
 * falls back at each comes back to it, however its phase tilts the fit
 * (a run that starts at a trough and ends at a peak). */
static double floor_rise(const double *y, size_t n)
{
    size_t k = MAX(n / 3, (size_t)1);
    double a = y[0], b = y[n - k];

    for (size_t i = 1; i < k; i++) {
        a = MIN(a, y[i]);
        b = MIN(b, y[n - k + i]);
    }
    return b - a;
}

int soak_judge(const double *y, size_t n, enum soak_kind kind, double threshold,
               struct soak_judgement *j)
{
    size_t h = n / 2;
    bool leaky, settled;
    int rc;

    memset(j, 0, sizeof(*j));
    if (n < SOAK_MIN_SAMPLES)
        return -EINVAL;
    rc = soak_fit(y, n, &j->all);
    if (rc == 0)
        rc = soak_fit(y + h, n - h, &j->tail);
    if (rc < 0)
        return rc;
    j->call = SOAK_FLAT;
    if (kind == SOAK_COUNT) {
        if (j->all.slope > 0 && (j->all.lo > 0 || j->all.growth >= 2))
            j->call = SOAK_LEAK;
        return 0;
    }
    /* A linear leak lifts the floor by about two thirds of its fitted
     * growth between the first and the last third; under a third, the
     * rise is the heap breathing, not a leak. */
    leaky = j->all.lo > 0 && j->all.growth > threshold &&
            floor_rise(y, n) >= j->all.growth / 3;
    settled = j->tail.growth < threshold / 2 &&
              (!leaky || j->tail.slope < j->all.slope / 2);
    if (leaky && !settled)
        j->call = SOAK_LEAK;
    else if (settled && (leaky || risen(y, n) > threshold))
        j->call = SOAK_RETENTION;
    return 0;
}

const char *soak_call_name(enum soak_call c)
{
    switch (c) {
    case SOAK_LEAK:
        return "leak";
    case SOAK_RETENTION:
        return "retention";
    default:
        return "flat";
    }
}
