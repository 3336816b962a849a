/*
 * util.h - small header-only helpers shared by every layer.
 *
 * Ticks: moor keeps time as 32-bit milliseconds since the loop started
 * (HAProxy's ticks). 0 means "not set"; comparisons are wrap-safe, so a
 * process may run for longer than the 49.7 days a tick takes to wrap, as
 * long as no single deadline is more than 24 days away.
 */
#ifndef MOOR_UTIL_H
#define MOOR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member)                                        \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define KIB(n) ((size_t)(n) << 10)
#define MIB(n) ((size_t)(n) << 20)

#define TICK_UNSET 0u

/* True if tick a is strictly later than tick b (wrap-safe). */
static inline bool tick_after(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

/* True if deadline t is set and not later than now. */
static inline bool tick_expired(uint32_t t, uint32_t now)
{
    return t != TICK_UNSET && !tick_after(t, now);
}

/* The nearest of two deadlines, where TICK_UNSET means "none". */
static inline uint32_t tick_first(uint32_t a, uint32_t b)
{
    if (a == TICK_UNSET)
        return b;
    if (b == TICK_UNSET)
        return a;
    return tick_after(a, b) ? b : a;
}

/* now + ms, never TICK_UNSET. */
static inline uint32_t tick_add(uint32_t now, uint32_t ms)
{
    uint32_t t = now + ms;
    return t == TICK_UNSET ? 1 : t;
}

/* CLOCK_MONOTONIC in nanoseconds: publish times, latencies. */
static inline uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
