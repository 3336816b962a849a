/*
 * timer.h - hashed timing wheel with intrusive nodes: the deadlines of
 * docs/principles.md, rule 2 (docs/deadlines.md lists them).
 *
 * The wheel has TIMER_SLOTS slots of TIMER_RES_MS each (one revolution is
 * about 65 s). A timer further away than one revolution sits in its slot and
 * is skipped, untouched, until the revolution it is due in (Varghese and
 * Lauck, scheme 6). Arm and cancel are O(1): a node is a doubly linked list
 * entry with a back pointer, so cancel needs no wheel. A bitmap of non-empty
 * slots lets timer_next_ms() find the next slot that holds any timer in a
 * few word scans; cancel clears bits lazily (a stale bit costs one early
 * wake-up, which clears it).
 *
 * Resolution: a timer fires no earlier than its expiry tick, and at most
 * TIMER_RES_MS (+ the loop's own latency) after it.
 *
 * Lazy re-arm (nginx, HAProxy): users who push a deadline later do not touch
 * the wheel; the node fires at the old time, the callback sees the deadline
 * is not due and re-arms. See conn.c.
 */
#ifndef MOOR_TIMER_H
#define MOOR_TIMER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define TIMER_RES_SHIFT 4 /* 16 ms per slot */
#define TIMER_RES_MS (1u << TIMER_RES_SHIFT)
#define TIMER_SLOT_BITS 12
#define TIMER_SLOTS (1u << TIMER_SLOT_BITS) /* 4096 slots, ~65.5 s */

/* The wheel's node: 24 bytes, no callback. A wheel either holds bare
 * nodes and calls its own `fire` for each (a conn set's wheel: every node
 * is a conn), or holds struct timer and calls each timer's fn. */
struct tnode {
    struct tnode *next;
    struct tnode **pprev; /* NULL when not armed */
    uint32_t expire;      /* tick; meaningful only while armed */
    uint32_t data;        /* never touched by the wheel: the owner's */
};
typedef void tnode_fn(struct tnode *n);

struct timer;
typedef void timer_fn(struct timer *t);

/* A node with its own callback, for wheels without a `fire`. */
struct timer {
    struct tnode node;
    timer_fn *fn;
};

struct timer_wheel {
    uint32_t now;   /* last tick processed */
    size_t count;   /* armed nodes */
    tnode_fn *fire; /* NULL: nodes are struct timer, call their fn */
    struct tnode *slots[TIMER_SLOTS];
    uint64_t bitmap[TIMER_SLOTS / 64];
};

/* Prepares a node; no allocation. */
void timer_init(struct timer *t, timer_fn *fn);
void tnode_init(struct tnode *n);
/* Sets up an empty wheel whose clock starts at now. fire: see struct
 * timer_wheel (NULL for a wheel of struct timer). */
void timer_wheel_init(struct timer_wheel *w, uint32_t now);
void timer_wheel_init_fire(struct timer_wheel *w, uint32_t now, tnode_fn *fire);

/* The same operations on bare nodes. */
void tnode_arm(struct timer_wheel *w, struct tnode *n, uint32_t expire);
void tnode_cancel(struct timer_wheel *w, struct tnode *n);
static inline bool tnode_armed(const struct tnode *n)
{
    return n->pprev != NULL;
}

/* (Re)arms t to fire at tick expire (re-arming an armed timer moves it).
 * An expire not after the wheel's now fires on the next timer_run(). */
void timer_arm(struct timer_wheel *w, struct timer *t, uint32_t expire);
/* Disarms t if armed; O(1); safe on an unarmed node. */
void timer_cancel(struct timer_wheel *w, struct timer *t);
static inline bool timer_armed(const struct timer *t)
{
    return t->node.pprev != NULL;
}

/* Advances the wheel to now and calls fn for every timer whose expire is
 * not after now, earliest slot first (timers within one slot in no set
 * order). A callback may arm or cancel any timer, itself included; one it
 * arms not after now fires on this run if its slot is still ahead, else on
 * the next run, so a timer that re-arms itself as due fires at most twice
 * per run, never in a loop. Not reentrant: a callback must not call
 * timer_run() on the same wheel. Returns the number of callbacks run. */
size_t timer_run(struct timer_wheel *w, uint32_t now);

/* Milliseconds from now until the wheel should next be run, or -1 when it
 * is empty. That is the end of the nearest slot holding a timer (the first
 * tick after it, when all its timers of this revolution are due), or 0 if
 * that is already past. So it never asks for a busy loop, and a timer run
 * by it fires at most TIMER_RES_MS after its expiry; a slot holding only
 * timers of later revolutions (or cancelled ones) costs one early wake-up.
 * Good as an epoll_wait timeout. */
int timer_next_ms(const struct timer_wheel *w, uint32_t now);

#endif
