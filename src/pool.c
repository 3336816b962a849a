/*
 * pool.c - fixed-size objects on MEM_SLAB_SIZE slabs; see pool.h.
 *
 * Keeps: an object's slab is found from its address (slabs are aligned to
 * their size); every slab is on exactly one of: the partial list (some
 * objects free), the empty slot (all free, at most one), or no list (full).
 * Must not: be shared between loops (no locking).
 */
#include <string.h>

#include "pool.h"
#include "util.h"

struct pool_free {
    struct pool_free *next;
};

#define SLAB_HDR ((sizeof(struct pool_slab) + 15) & ~(size_t)15)

void pool_init(struct pool *p, enum mem_tag tag, size_t size)
{
    memset(p, 0, sizeof(*p));
    p->tag = tag;
    p->size = (uint32_t)((MAX(size, sizeof(struct pool_free)) + 15) & ~15u);
    p->per_slab = (uint32_t)((MEM_SLAB_SIZE - SLAB_HDR) / p->size);
}

static void unlink_partial(struct pool *p, struct pool_slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->partial = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void push_partial(struct pool *p, struct pool_slab *s)
{
    s->prev = NULL;
    s->next = p->partial;
    if (p->partial)
        p->partial->prev = s;
    p->partial = s;
}

static struct pool_slab *new_slab(struct pool *p)
{
    struct pool_slab *s = mem_slab_alloc(p->tag);

    if (!s)
        return NULL;
    /* mmap memory is zeroed: only the header needs setting. */
    s->owner = p->owner;
    s->pool = p;
    s->fresh = p->per_slab;
    s->bump = (uint8_t *)s + SLAB_HDR;
    p->slabs++;
    return s;
}

void *pool_alloc(struct pool *p)
{
    struct pool_slab *s = p->partial;
    void *obj;

    if (!s) {
        s = p->empty;
        p->empty = NULL;
        if (!s)
            s = new_slab(p);
        if (!s)
            return NULL;
        push_partial(p, s);
    }
    if (s->free) {
        obj = s->free;
        s->free = s->free->next;
        memset(obj, 0, p->size);
    } else {
        /* Never-used objects are still zero from mmap. */
        obj = s->bump;
        s->bump += p->size;
        s->fresh--;
    }
    s->used++;
    if (!s->free && !s->fresh)
        unlink_partial(p, s); /* full */
    p->live++;
    return obj;
}

void pool_free(struct pool *p, void *obj)
{
    struct pool_slab *s;
    struct pool_free *f = obj;

    if (!obj)
        return;
    s = (struct pool_slab *)((uintptr_t)obj & ~(uintptr_t)(MEM_SLAB_SIZE - 1));
    if (!s->free && !s->fresh)
        push_partial(p, s); /* was full */
    f->next = s->free;
    s->free = f;
    s->used--;
    p->live--;
    if (s->used)
        return;
    /* Entirely free: keep one such slab, return the rest. */
    unlink_partial(p, s);
    if (!p->empty) {
        p->empty = s;
        return;
    }
    mem_slab_free(p->tag, s);
    p->slabs--;
}

void pool_fini(struct pool *p)
{
    struct pool_slab *s, *next;

    for (s = p->partial; s; s = next) {
        next = s->next;
        mem_slab_free(p->tag, s);
    }
    if (p->empty)
        mem_slab_free(p->tag, p->empty);
    p->partial = p->empty = NULL;
    p->slabs = 0;
}
