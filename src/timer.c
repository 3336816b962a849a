/*
 * timer.c - a hashed timing wheel with intrusive nodes: the deadlines of
 * docs/principles.md, rule 2 (docs/deadlines.md lists them).
 *
 * A timer with expiry tick e hangs in slot (e >> TIMER_RES_SHIFT) mod
 * TIMER_SLOTS, on a doubly linked list whose back pointer (pprev) lets
 * cancel unlink it without knowing the slot. A timer further away than one
 * revolution sits in the same slot and is skipped until the pass it is due
 * in. A bitmap marks the slots that may hold a timer; a bit is set on arm
 * and cleared only when a scan finds its slot empty.
 *
 * Invariants kept between calls (w->now is the last tick run):
 *   - every armed timer with expire after w->now is in its own slot;
 *   - every armed timer with expire not after w->now (armed "in the past",
 *     or re-armed as due by a callback) is in the slot of w->now, which is
 *     the first slot the next timer_run() scans;
 *   - a slot that holds a timer has its bitmap bit set;
 *   - w->count is the number of armed timers, including those a running
 *     timer_run() has detached into its local list.
 *
 * Must not: allocate, call anything but the timers' own callbacks, or fire
 * a timer before its expiry tick.
 */
#include <assert.h>
#include <string.h>

#include "timer.h"
#include "util.h"

#define SLOT_MASK (TIMER_SLOTS - 1)
#define SLOT_BASE(tick) ((tick) & ~(uint32_t)(TIMER_RES_MS - 1))

static inline uint32_t slot_of(uint32_t tick)
{
    return (tick >> TIMER_RES_SHIFT) & SLOT_MASK;
}

static inline void bit_set(struct timer_wheel *w, uint32_t slot)
{
    w->bitmap[slot / 64] |= (uint64_t)1 << (slot % 64);
}

static inline void bit_clear(struct timer_wheel *w, uint32_t slot)
{
    w->bitmap[slot / 64] &= ~((uint64_t)1 << (slot % 64));
}

static inline bool bit_test(const struct timer_wheel *w, uint32_t slot)
{
    return (w->bitmap[slot / 64] >> (slot % 64)) & 1;
}

/* Pushes t at the head of the list *head. t must be unlinked. */
static void link_head(struct tnode **head, struct tnode *t)
{
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
}

/* Unlinks t from whatever list it is on (a slot or timer_run()'s local
 * list) and marks it unarmed. */
static void unlink_node(struct tnode *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void tnode_init(struct tnode *n)
{
    n->next = NULL;
    n->pprev = NULL;
    n->expire = TICK_UNSET;
}

void timer_init(struct timer *t, timer_fn *fn)
{
    tnode_init(&t->node);
    t->fn = fn;
}

void timer_wheel_init_fire(struct timer_wheel *w, uint32_t now, tnode_fn *fire)
{
    memset(w, 0, sizeof(*w));
    w->now = now;
    w->fire = fire;
}

void timer_wheel_init(struct timer_wheel *w, uint32_t now)
{
    timer_wheel_init_fire(w, now, NULL);
}

void timer_arm(struct timer_wheel *w, struct timer *t, uint32_t expire)
{
    tnode_arm(w, &t->node, expire);
}

void timer_cancel(struct timer_wheel *w, struct timer *t)
{
    tnode_cancel(w, &t->node);
}

void tnode_arm(struct timer_wheel *w, struct tnode *t, uint32_t expire)
{
    uint32_t slot;

    if (tnode_armed(t))
        unlink_node(t);
    else
        w->count++;
    t->expire = expire;
    /* A timer that is already due goes where the next run starts. */
    slot = slot_of(tick_after(expire, w->now) ? expire : w->now);
    link_head(&w->slots[slot], t);
    bit_set(w, slot);
}

void tnode_cancel(struct timer_wheel *w, struct tnode *t)
{
    if (!tnode_armed(t))
        return;
    unlink_node(t);
    assert(w->count > 0);
    w->count--;
}

/* True if the list holds a timer that is due at now. Read-only, so that a
 * slot scanned again within its 16 ms (the loop runs the wheel on every
 * iteration) costs no writes when nothing in it is due yet. */
static bool slot_has_due(const struct tnode *t, uint32_t now)
{
    for (; t; t = t->next) {
        if (!tick_after(t->expire, now))
            return true;
    }
    return false;
}

/*
 * Fires the due timers of one slot. The slot's list is first detached into
 * a local list, so that:
 *   - a callback that arms a timer into this slot (itself included) puts it
 *     on the slot's fresh list, which this pass does not look at again; it
 *     fires on a later run, never twice in this one;
 *   - a callback that cancels or moves a timer still on the local list
 *     unlinks it through its pprev, which may point at `local` itself; the
 *     list stays consistent and the timer is simply not seen here.
 * Timers that are not due (later revolutions, or later in this slot) go
 * back on the slot's list.
 */
static size_t run_slot(struct timer_wheel *w, uint32_t slot, uint32_t now)
{
    struct tnode *local = w->slots[slot];
    struct tnode *t;
    size_t fired = 0;

    if (!local) {
        bit_clear(w, slot);
        return 0;
    }
    if (!slot_has_due(local, now))
        return 0;
    w->slots[slot] = NULL;
    local->pprev = &local;

    while ((t = local)) {
        unlink_node(t);
        if (tick_after(t->expire, now)) {
            link_head(&w->slots[slot], t);
            continue;
        }
        w->count--;
        if (w->fire)
            w->fire(t);
        else
            ((struct timer *)(void *)t)->fn((struct timer *)(void *)t);
        fired++;
    }
    if (!w->slots[slot])
        bit_clear(w, slot);
    return fired;
}

size_t timer_run(struct timer_wheel *w, uint32_t now)
{
    uint32_t first, nslots, i;
    size_t fired = 0;

    /* Time does not go back; a caller's stale now only rescans. */
    if (tick_after(w->now, now))
        now = w->now;

    nslots = ((now - SLOT_BASE(w->now)) >> TIMER_RES_SHIFT) + 1;
    if (nslots >= TIMER_SLOTS) {
        /* A revolution or more has passed: every slot once, ending with
         * the slot of now so the scan order is still oldest first. */
        nslots = TIMER_SLOTS;
        first = slot_of(now) + 1;
    } else {
        first = slot_of(w->now);
    }

    /* Set before any callback runs: a timer (re-)armed from a callback
     * with an expiry not after now lands in the slot of now and fires on
     * this run if that slot is still ahead, otherwise on the next run. */
    w->now = now;

    for (i = 0; i < nslots; i++) {
        uint32_t slot = (first + i) & SLOT_MASK;

        if (bit_test(w, slot))
            fired += run_slot(w, slot, now);
    }
    return fired;
}

/* Distance in slots from slot `from` to the nearest slot at or after it
 * (circularly) whose bit is set, or TIMER_SLOTS if there is none. */
static uint32_t next_set_slot(const struct timer_wheel *w, uint32_t from)
{
    uint32_t nwords = TIMER_SLOTS / 64;
    uint32_t word = from / 64;
    uint64_t bits = w->bitmap[word] & (~(uint64_t)0 << (from % 64));
    uint32_t i;

    /* nwords + 1 words: the first word's low bits (before `from`) are
     * looked at again last, after wrapping around. */
    for (i = 0; i <= nwords; i++) {
        if (bits) {
            uint32_t slot = word * 64 + (uint32_t)__builtin_ctzll(bits);
            return (slot - from) & SLOT_MASK;
        }
        word = (word + 1) % nwords;
        bits = w->bitmap[word];
    }
    return TIMER_SLOTS;
}

/*
 * The wheel is run when the nearest non-empty slot has ended, i.e. at the
 * first tick after it: by then every timer of this revolution in it is
 * due, so one wake-up empties it. Waking at the slot's start instead would
 * fire only the timers of its first millisecond and then, with the slot
 * still non-empty and its start in the past, ask for a timeout of 0 over
 * and over until the slot ended: a busy loop. The price is the resolution
 * the header promises: a timer fires at most TIMER_RES_MS after its expiry.
 */
int timer_next_ms(const struct timer_wheel *w, uint32_t now)
{
    uint32_t d, wake;

    if (w->count == 0)
        return -1;
    d = next_set_slot(w, slot_of(w->now));
    if (d == TIMER_SLOTS) {
        /* Unreachable: an armed timer always has its slot's bit set, and
         * only timer_run() detaches timers, never across this call. */
        assert(!"armed timers but an empty bitmap");
        return (int)(TIMER_SLOTS * TIMER_RES_MS);
    }
    wake = SLOT_BASE(w->now) + (d + 1) * TIMER_RES_MS;
    return tick_after(wake, now) ? (int)(wake - now) : 0;
}
