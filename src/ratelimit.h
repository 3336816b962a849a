/*
 * ratelimit.h - token bucket, integer arithmetic on loop ticks.
 *
 * Used for the accept rate (listen.c) and later for inbound pacing per
 * connection (messages/s and bytes/s). 24 bytes, no allocation.
 */
#ifndef MOOR_RATELIMIT_H
#define MOOR_RATELIMIT_H

#include <stdint.h>
#include <stdbool.h>

struct ratelimit {
    uint32_t rate;         /* tokens per second; 0 = unlimited */
    uint32_t burst;        /* bucket size (>= 1 when rate > 0) */
    uint64_t tokens_milli; /* tokens * 1000, so slow rates refill smoothly */
    uint32_t last;         /* tick of the last refill */
};

/* rate 0 disables the limit (every take succeeds). burst 0 means burst =
 * rate (at least 1). The bucket starts full. */
void ratelimit_init(struct ratelimit *r, uint32_t rate, uint32_t burst,
                    uint32_t now);
/* Takes n tokens if available (true) or none (false). */
bool ratelimit_take(struct ratelimit *r, uint32_t n, uint32_t now);
/* Milliseconds until n tokens are available (0 if they are now), rounded
 * up. n greater than burst never fits the bucket: take() fails and this
 * returns UINT32_MAX. */
uint32_t ratelimit_wait_ms(struct ratelimit *r, uint32_t n, uint32_t now);

#endif
