/*
 * msg.c - immutable, reference-counted messages (docs/principles.md, rule 4).
 *
 * What it does. A message is one MEM_MSG allocation: the header and the
 * payload together, so a message costs one allocation and one free however
 * many queues hold it. Queues take references; nothing copies the payload.
 *
 * Invariants.
 * - refs is only changed with atomic read-modify-writes. A reference is
 *   taken with relaxed ordering (the caller already holds one, so the
 *   message cannot go away meanwhile); it is dropped with release ordering
 *   and the last dropper acquires before freeing, so every write another
 *   thread made while it held a reference happens before the free.
 * - The payload is not changed once the message is shared. Only the
 *   creator, holding the sole reference, may fill a payload it asked for
 *   uninitialised (msg_new(NULL, n)), or resize it (msg_resize: pub/sub
 *   grows a batch while it appends frames, then trims it to its length).
 *
 * What it must not do. Free a message that still has references, or let
 * the count wrap (asserted in debug builds).
 */
#include "msg.h"

#include <assert.h>
#include <string.h>

#include "mem.h"

struct msg *msg_embed(void *mem, const void *p, size_t n)
{
    struct msg *m = mem;

    m->refs = 1;
    m->len = (uint32_t)n;
    m->born_ns = 0;
    m->count = 1;
    if (p && n)
        memcpy(m->data, p, n);
    return m;
}

struct msg *msg_new(const void *p, size_t n)
{
    struct msg *m;

    /* The length field is 32 bits; callers cap messages far below that. */
    if (n > UINT32_MAX)
        return NULL;
    m = mem_alloc(MEM_MSG, sizeof(*m) + n);
    return m ? msg_embed(m, p, n) : NULL;
}

struct msg *msg_resize(struct msg *m, size_t cap)
{
    assert(m->refs == 1 && cap >= m->len);
    if (cap > UINT32_MAX)
        return NULL;
    return mem_realloc(MEM_MSG, m, sizeof(*m) + cap);
}

struct msg *msg_ref(struct msg *m)
{
    uint32_t old = __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);

    assert(old > 0 && old < UINT32_MAX);
    (void)old;
    return m;
}

void msg_unref(struct msg *m)
{
    uint32_t old;

    if (!m)
        return;
    old = __atomic_fetch_sub(&m->refs, 1, __ATOMIC_RELEASE);
    assert(old > 0);
    if (old != 1)
        return;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    mem_free(MEM_MSG, m);
}
