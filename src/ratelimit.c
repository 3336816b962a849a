/*
 * ratelimit.c - a token bucket on loop ticks, in integer arithmetic.
 *
 * The bucket counts thousandths of a token, so `rate` tokens per second is
 * exactly `rate` milli-tokens per millisecond: a refill over any number of
 * milliseconds loses nothing to rounding, however slow the rate.
 *
 * Invariants: tokens_milli <= burst * 1000; `last` is the tick up to which
 * refill has been credited. A tick that goes back (it never should) is
 * ignored rather than credited.
 *
 * Must not: allocate, read a clock (the caller passes the loop's tick), or
 * overflow on any input (rates and bursts up to UINT32_MAX, gaps up to the
 * 24 days a tick comparison can express).
 */
#include "ratelimit.h"
#include "util.h"

#define MILLI 1000u

void ratelimit_init(struct ratelimit *r, uint32_t rate, uint32_t burst,
                    uint32_t now)
{
    if (burst == 0)
        burst = rate ? rate : 1;
    r->rate = rate;
    r->burst = burst;
    r->tokens_milli = (uint64_t)burst * MILLI;
    r->last = now;
}

/* Credits the tokens earned since r->last, up to the bucket size. */
static void refill(struct ratelimit *r, uint32_t now)
{
    uint64_t cap = (uint64_t)r->burst * MILLI;
    uint64_t add;

    if (!tick_after(now, r->last))
        return;
    /* (now - last) < 2^31 and rate < 2^32, so the product fits. */
    add = (uint64_t)(now - r->last) * r->rate;
    r->last = now;
    if (add >= cap - r->tokens_milli)
        r->tokens_milli = cap;
    else
        r->tokens_milli += add;
}

bool ratelimit_take(struct ratelimit *r, uint32_t n, uint32_t now)
{
    uint64_t need = (uint64_t)n * MILLI;

    if (r->rate == 0)
        return true;
    refill(r, now);
    if (r->tokens_milli < need)
        return false;
    r->tokens_milli -= need;
    return true;
}

uint32_t ratelimit_wait_ms(struct ratelimit *r, uint32_t n, uint32_t now)
{
    uint64_t need = (uint64_t)n * MILLI;
    uint64_t ms;

    if (r->rate == 0)
        return 0;
    if (n > r->burst)
        return UINT32_MAX;
    refill(r, now);
    if (r->tokens_milli >= need)
        return 0;
    /* Round up: after fewer milliseconds the tokens would not be there. */
    ms = (need - r->tokens_milli + r->rate - 1) / r->rate;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}
