/*
 * soak_stats.h - the verdict of `moor soak` on one series of samples
 * (one value per round, the warm-up already dropped): a Theil-Sen slope
 * with its rank-based confidence interval, and the call made from it
 * (flat, leak, allocator retention).
 *
 * Pure: no I/O; the pairwise slopes are allocated through mem.c (tag
 * MEM_MISC) and freed before returning.
 */
#ifndef MOOR_SOAK_STATS_H
#define MOOR_SOAK_STATS_H

#include <stddef.h>

/* Theil-Sen over x = 0, 1, ..., n-1. */
struct soak_fit {
    double slope;     /* the median of the pairwise slopes, per round */
    double lo, hi;    /* its 95% confidence interval (Sen 1968) */
    double intercept; /* median of y - slope * x */
    double growth;    /* slope * (n - 1): the fitted change over the run */
    size_t n;
};

/* Fewest samples (after the warm-up) a verdict is made from. */
#define SOAK_MIN_SAMPLES 4

/* Fits y[0..n). Returns 0, -EINVAL (n < 2), or -ENOMEM. */
int soak_fit(const double *y, size_t n, struct soak_fit *f);

enum soak_kind {
    SOAK_BYTES, /* memory: a leak also needs growth over the threshold */
    SOAK_COUNT, /* fds, threads: any steady rise is a leak */
};

enum soak_call {
    SOAK_FLAT = 0,
    SOAK_LEAK,
    SOAK_RETENTION, /* rose, then stopped: the allocator keeping pages */
};

struct soak_judgement {
    struct soak_fit all;  /* every sample */
    struct soak_fit tail; /* the second half: has it stopped rising? */
    enum soak_call call;
};

/*
 * Judges y[0..n) (n >= SOAK_MIN_SAMPLES):
 *   bytes: a leak when the interval excludes zero, the fitted growth
 *          exceeds threshold and the floor rose with it (the lowest of
 *          the last third of the samples over the lowest of the first,
 *          by at least a third of the growth: a garbage-collected heap
 *          that falls back to its floor at each collection breathes, it
 *          does not leak), unless the second half has levelled off
 *          (its fitted growth under half the threshold, and its slope
 *          under half the whole run's): then retention; retention too
 *          when the run rose by more than threshold (second half's
 *          median over the first quarter's) and then levelled off;
 *   count: a leak when the slope is positive and either its interval
 *          excludes zero or the fitted growth reaches 2 (a single step
 *          of one, a lazily opened file, is not enough on its own).
 * Returns 0, -EINVAL or -ENOMEM.
 */
int soak_judge(const double *y, size_t n, enum soak_kind kind, double threshold,
               struct soak_judgement *j);

const char *soak_call_name(enum soak_call c);

#endif
