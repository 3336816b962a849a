/*
 * check.h - CHECK(x) for the fuzz targets: an assertion that holds in
 * every build (libFuzzer builds with NDEBUG off or on alike) and names
 * the failed condition before it aborts, so the crash input is saved.
 */
#ifndef MOOR_FUZZ_CHECK_H
#define MOOR_FUZZ_CHECK_H

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

#endif
