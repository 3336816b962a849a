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

/* Sizes in powers of 1024: KiB(64) is 65536. 64-bit, so GiB(4) does not
 * overflow. */
#define KiB(n) ((uint64_t)(n) << 10)
#define MiB(n) ((uint64_t)(n) << 20)
#define GiB(n) ((uint64_t)(n) << 30)

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

/* ---- ASCII ---------------------------------------------------------------
 * Byte classes and case folding for protocol text (HTTP field names,
 * tokens, hex). ASCII only: the C library's <ctype.h> functions depend on
 * the locale and take an int that must not be a negative char. */

static inline bool ascii_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline bool ascii_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool ascii_is_alnum(unsigned char c)
{
    return ascii_is_digit(c) || ascii_is_alpha(c);
}

/* OWS, optional white space (RFC 9110 5.6.3): SP or HTAB. */
static inline bool ascii_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* The value of hex digit c (either case), or -1 if c is not one. */
static inline int ascii_hex_value(unsigned char c)
{
    if (ascii_is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* True if a[0..alen) and b[0..blen) are equal ignoring ASCII case. */
static inline bool ascii_ci_equal(const char *a, size_t alen, const char *b,
                                  size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (ascii_lower((unsigned char)a[i]) !=
            ascii_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

/* CLOCK_MONOTONIC in nanoseconds: publish times, latencies. */
static inline uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
