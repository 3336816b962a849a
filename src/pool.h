/*
 * pool.h - fixed-size object pools on 64 KiB slabs (nginx's preallocated
 * connections, lwan's conn array, HAProxy's typed pools).
 *
 * Why: a connection lives for days, while responses and messages live for
 * microseconds. From one heap, every short-lived block freed next to a
 * long-lived conn leaves a hole the next conn does not fit, and idle
 * memory per connection doubles (measured: 485 B of RSS per idle
 * WebSocket for 248 B allocated). Pooled objects sit side by side on
 * their own slabs with no per-object allocator header.
 *
 * One pool per loop, single-threaded. A slab that empties is returned at
 * once unless it is the pool's only free slab (hysteresis against churn).
 * Accounted under the pool's tag as whole slabs.
 */
#ifndef MOOR_POOL_H
#define MOOR_POOL_H

#include <stddef.h>
#include <stdint.h>
#include "mem.h"

/* A slab starts with this header; objects follow. Slabs are aligned to
 * MEM_SLAB_SIZE, so an object finds its slab, and its pool's owner, from
 * its own address: what lets a conn carry no pointer to its set. */
struct pool;
struct pool_slab {
    void *owner;                   /* the pool's owner (pool_set_owner) */
    struct pool *pool;             /* the pool it belongs to */
    struct pool_slab *next, *prev; /* on the partial list */
    struct pool_free *free;        /* free objects of this slab */
    uint32_t used;
    uint32_t fresh; /* objects never handed out yet */
    uint8_t *bump;  /* next never-used object */
};

struct pool {
    void *owner; /* copied into each slab */
    enum mem_tag tag;
    uint32_t size;             /* object size, rounded to 16 bytes */
    uint32_t per_slab;         /* objects per slab */
    struct pool_slab *partial; /* slabs with free objects */
    struct pool_slab *empty;   /* at most one entirely free slab */
    uint64_t live;             /* objects handed out */
    uint64_t slabs;            /* slabs held */
};

/* Sets up an empty pool of objects of size bytes (at most 16 KiB). No
 * allocation until the first pool_alloc(). */
void pool_init(struct pool *p, enum mem_tag tag, size_t size);
/* Sets what pool_owner() returns for this pool's objects (before the
 * first pool_alloc()). */
static inline void pool_set_owner(struct pool *p, void *owner)
{
    p->owner = owner;
}
static inline void *pool_owner(const void *obj)
{
    return ((const struct pool_slab *)((uintptr_t)obj &
                                       ~(uintptr_t)(MEM_SLAB_SIZE - 1)))
        ->owner;
}
static inline struct pool *pool_of(const void *obj)
{
    return ((const struct pool_slab *)((uintptr_t)obj &
                                       ~(uintptr_t)(MEM_SLAB_SIZE - 1)))
        ->pool;
}
/* Frees every slab. All objects must have been returned. */
void pool_fini(struct pool *p);
/* Returns a zeroed object, or NULL (allocation failure). */
void *pool_alloc(struct pool *p);
/* Returns obj (NULL is a no-op) to p, the pool it came from. */
void pool_free(struct pool *p, void *obj);

#endif
