/*
 * check.h - CHECK(x) for the fuzz targets: an assertion that holds in
 * every build (libFuzzer builds with NDEBUG off or on alike) and names
 * the failed condition before it aborts, so the crash input is saved.
 */
#ifndef MOOR_FUZZ_CHECK_H
#define MOOR_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "CHECK failed: %s at %s:%d\n", #x, __FILE__,       \
                    __LINE__);                                                 \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* The whole-connection targets' scripts (fuzz_conn, fuzz_http_client):
 * the length of the next write, by its kind: 0 the next byte (0 means
 * 256), 1 the next two bytes (little-endian), 2 the rest of the input.
 * Moves *i past the bytes read. */
static inline size_t script_len(const uint8_t *p, size_t n, size_t *i, int kind)
{
    size_t len;

    switch (kind) {
    case 0:
        len = *i < n ? (p[*i] ? p[*i] : 256) : 0;
        *i += *i < n;
        return len;
    case 1:
        len = *i + 1 < n ? (size_t)p[*i] | (size_t)p[*i + 1] << 8 : 0;
        *i = *i + 1 < n ? *i + 2 : n;
        return len;
    default:
        return n - *i;
    }
}

#endif
