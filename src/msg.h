/*
 * msg.h - immutable, reference-counted messages (docs/principles.md, rule 4).
 *
 * A message is allocated once with its payload in the same block (tag
 * MEM_MSG). Queues hold references; nobody copies the payload. The count
 * is atomic because later a message is handed to several loops.
 */
#ifndef MOOR_MSG_H
#define MOOR_MSG_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

struct msg {
    uint32_t refs; /* atomic */
    uint32_t len;
    uint64_t born_ns; /* CLOCK_MONOTONIC of a publish, or 0: when set,
                         conn.c records publish-to-write latency */
    uint32_t count;   /* published messages it carries: 1, or a batch's
                         (pub/sub frames a run of publishes back to back) */
    uint8_t data[];
};

/* Returns a new message (one reference, owned by the caller) holding a copy
 * of p[0..n), or NULL on allocation failure. p may be NULL to get an
 * uninitialised payload the caller fills before sharing it. */
struct msg *msg_new(const void *p, size_t n);
/* Gives a message only its creator holds (one reference, never shared)
 * room for cap payload bytes (cap >= m->len; the bytes are kept). Returns
 * the message, perhaps moved, or NULL with m untouched. */
struct msg *msg_resize(struct msg *m, size_t cap);
/* A message in memory its caller owns (mem: sizeof(struct msg) + n bytes,
 * aligned as struct msg), holding a copy of p[0..n) (p NULL: filled by the
 * caller), with one reference: the owner's, for the life of mem. Others
 * take and drop references as with any message; the owner never calls
 * msg_unref() on it, and lets the memory go only once msg_shared() is
 * false. For a small message that lives exactly as long as its owner (the
 * HTTP client's request head, inside its call). */
struct msg *msg_embed(void *mem, const void *p, size_t n);
/* True while someone besides the holder of one reference holds one. */
static inline bool msg_shared(const struct msg *m)
{
    return __atomic_load_n(&m->refs, __ATOMIC_ACQUIRE) > 1;
}
/* Returns m with one more reference. */
struct msg *msg_ref(struct msg *m);
/* Drops one reference; frees on the last. NULL is a no-op. */
void msg_unref(struct msg *m);

#endif
