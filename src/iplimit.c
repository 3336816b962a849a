/*
 * iplimit.c - the per-address table: a seeded hash of entries, a list of
 * the idle ones (no open connection) oldest first, and a side array from
 * fd to entry for the close path.
 *
 * Invariants.
 * - An entry is on the idle list exactly when its count is 0.
 * - The fd slots: pages[fd / FD_PAGE]->e[fd % FD_PAGE] is the entry fd
 *   is counted under, or NULL; an entry's count is the number of slots
 *   pointing at it; a page exists only while one of its slots is used.
 * - entries <= table_size; the hash heads are a power of two, at most
 *   the power of two at or above table_size (load factor <= 1 while they
 *   can still grow).
 *
 * Giving memory back (docs/principles.md, rule 7). After a burst the
 * table returns to what the remaining connections need: entries are
 * freed one by one, a page of fd slots when its last fd closes, and the
 * hash heads halve when under an eighth of them are in use (each halving
 * walks the heads once, paid for by the eighth of the entries freed
 * before it). Only the page directory keeps its size: 8 bytes per
 * FD_PAGE fds, at most the process's fd limit / FD_PAGE of them.
 *
 * Forgetting. An idle entry whose bucket is full again holds nothing a
 * fresh entry would not: it is freed when its last connection closes if
 * the bucket is full then, and otherwise later by a sweep of at most
 * SWEEP_MAX entries from the old end of the idle list at every admit and
 * release. The list is ordered by when entries went idle, which is near
 * enough the order their buckets fill for the sweep to find the ripe
 * ones; the table stays bounded either way, since a new address evicts
 * the oldest idle entry when the table is full.
 *
 * Must not: walk the whole table on an accept or a close, or allocate
 * more than one entry per address.
 */
#include <string.h>
#include <netinet/in.h>
#include <sys/random.h>

#include "iplimit.h"
#include "mem.h"
#include "ratelimit.h"
#include "util.h"

#define SWEEP_MAX 2   /* idle entries looked at per admit or release */
#define HEADS_MIN 16u /* hash heads allocated with the first entry */
#define FD_PAGE 256u  /* fd slots per page (2 KiB) */
#define DIR_MIN 8u    /* page pointers allocated with the first page */

/* An address as the table counts it: IPv4 as ::ffff:a.b.c.d, IPv6 as its
 * /64 (low half zero). The two never meet: a /64 key's low half is 0, an
 * IPv4 key's is 0000:ffff:a.b:c.d. */
struct ipl_key {
    uint64_t hi, lo;
};

struct ipl_entry {
    struct ipl_key key;
    struct ratelimit bucket;
    struct ipl_entry *hnext;         /* hash chain */
    struct ipl_entry *iprev, *inext; /* idle list, while conns == 0 */
    uint32_t conns;
};

struct fd_page {
    uint32_t used; /* slots not NULL */
    struct ipl_entry *e[FD_PAGE];
};

struct iplimit {
    struct iplimit_opts o;
    uint64_t seed[2];
    struct ipl_entry **heads;
    struct fd_page **pages;                /* by fd / FD_PAGE */
    struct ipl_entry *idle_old, *idle_new; /* the idle list's two ends */
    uint32_t nheads;                       /* 0 until the first entry */
    uint32_t npages;
    uint32_t entries;
};

static bool key_of(const struct sockaddr *sa, struct ipl_key *k)
{
    uint8_t b[16] = {0};

    if (sa->sa_family == AF_INET) {
        b[10] = b[11] = 0xff;
        memcpy(b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)sa)->sin6_addr;

        /* Mapped IPv4 keeps all 16 bytes: it already is the IPv4 key. */
        memcpy(b, a, IN6_IS_ADDR_V4MAPPED(a) ? 16 : 8);
    } else {
        return false;
    }
    memcpy(&k->hi, b, 8);
    memcpy(&k->lo, b + 8, 8);
    return true;
}

/* MurmurHash3's 64-bit finalizer (public domain): every input bit
 * moves every output bit. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Seeded, so which addresses share a chain cannot be known from outside
 * (a peer with a /48 has 65,536 /64s to choose from). */
static uint32_t hash_of(const struct iplimit *t, const struct ipl_key *k)
{
    return (uint32_t)(mix(mix(k->hi ^ t->seed[0]) + (k->lo ^ t->seed[1])) >>
                      32);
}

static uint32_t slot_of(const struct iplimit *t, const struct ipl_key *k)
{
    return hash_of(t, k) & (t->nheads - 1);
}

static struct ipl_entry *find(const struct iplimit *t, const struct ipl_key *k)
{
    struct ipl_entry *e;

    if (t->nheads == 0)
        return NULL;
    for (e = t->heads[slot_of(t, k)]; e; e = e->hnext)
        if (e->key.hi == k->hi && e->key.lo == k->lo)
            return e;
    return NULL;
}

/* Moves every entry to n new heads. -1 (and nothing changed) if they
 * cannot be allocated. */
static int rehash(struct iplimit *t, uint32_t n)
{
    struct ipl_entry **h = mem_calloc(MEM_AUTH, n, sizeof(*h));

    if (!h)
        return -1;
    for (uint32_t i = 0; i < t->nheads; i++) {
        struct ipl_entry *e = t->heads[i], *next;

        for (; e; e = next) {
            uint32_t s = hash_of(t, &e->key) & (n - 1);

            next = e->hnext;
            e->hnext = h[s];
            h[s] = e;
        }
    }
    mem_free(MEM_AUTH, t->heads);
    t->heads = h;
    t->nheads = n;
    return 0;
}

/* Doubles the heads while the table outgrows them. A failure keeps the
 * old heads (longer chains, still correct) unless there are none. */
static int grow_heads(struct iplimit *t)
{
    uint32_t cap = HEADS_MIN;

    while (cap < t->o.table_size && cap < (1u << 31))
        cap <<= 1;
    if (t->nheads == 0)
        return rehash(t, HEADS_MIN);
    if (t->entries >= t->nheads && t->nheads < cap)
        (void)rehash(t, t->nheads * 2);
    return 0;
}

/* Halves the heads once under an eighth of them are used; with no entry
 * left they go. A failure keeps the bigger heads. */
static void shrink_heads(struct iplimit *t)
{
    if (t->entries == 0) {
        mem_free(MEM_AUTH, t->heads);
        t->heads = NULL;
        t->nheads = 0;
    } else if (t->nheads > HEADS_MIN && t->entries < t->nheads / 8) {
        (void)rehash(t, t->nheads / 2);
    }
}

/* fd's slot, or NULL if its page does not exist. */
static struct ipl_entry **fd_slot(const struct iplimit *t, int fd)
{
    uint32_t pg = (uint32_t)fd / FD_PAGE;

    if (fd < 0 || pg >= t->npages || !t->pages[pg])
        return NULL;
    return &t->pages[pg]->e[(uint32_t)fd % FD_PAGE];
}

/* Makes fd's page (and room for it in the directory). 0 or -1. */
static int fd_page_need(struct iplimit *t, int fd)
{
    uint32_t pg = (uint32_t)fd / FD_PAGE, n;
    struct fd_page **d;

    if (pg >= t->npages) {
        for (n = t->npages ? t->npages : DIR_MIN; n <= pg; n *= 2)
            ;
        d = mem_realloc(MEM_AUTH, t->pages, (size_t)n * sizeof(*d));
        if (!d)
            return -1;
        memset(d + t->npages, 0, (size_t)(n - t->npages) * sizeof(*d));
        t->pages = d;
        t->npages = n;
    }
    if (!t->pages[pg])
        t->pages[pg] = mem_calloc(MEM_AUTH, 1, sizeof(struct fd_page));
    return t->pages[pg] ? 0 : -1;
}

/* Frees fd's page if no slot of it is used. */
static void fd_page_drop(struct iplimit *t, int fd)
{
    uint32_t pg = (uint32_t)fd / FD_PAGE;

    if (pg < t->npages && t->pages[pg] && t->pages[pg]->used == 0) {
        mem_free(MEM_AUTH, t->pages[pg]);
        t->pages[pg] = NULL;
    }
}

static void idle_append(struct iplimit *t, struct ipl_entry *e)
{
    e->inext = NULL;
    e->iprev = t->idle_new;
    if (t->idle_new)
        t->idle_new->inext = e;
    else
        t->idle_old = e;
    t->idle_new = e;
}

static void idle_remove(struct iplimit *t, struct ipl_entry *e)
{
    if (e->iprev)
        e->iprev->inext = e->inext;
    else
        t->idle_old = e->inext;
    if (e->inext)
        e->inext->iprev = e->iprev;
    else
        t->idle_new = e->iprev;
    e->iprev = e->inext = NULL;
}

/* Frees an idle entry. */
static void forget(struct iplimit *t, struct ipl_entry *e)
{
    struct ipl_entry **p = &t->heads[slot_of(t, &e->key)];

    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    idle_remove(t, e);
    t->entries--;
    mem_free(MEM_AUTH, e);
    shrink_heads(t);
}

static bool bucket_full(struct ipl_entry *e, uint32_t now)
{
    return ratelimit_wait_ms(&e->bucket, e->bucket.burst, now) == 0;
}

static void sweep(struct iplimit *t, uint32_t now)
{
    for (int i = 0; i < SWEEP_MAX && t->idle_old; i++) {
        if (!bucket_full(t->idle_old, now))
            return;
        forget(t, t->idle_old);
    }
}

/* A fresh entry for k (idle, bucket full), or NULL. */
static struct ipl_entry *entry_new(struct iplimit *t, const struct ipl_key *k,
                                   uint32_t now)
{
    struct ipl_entry *e;
    uint32_t s;

    if (grow_heads(t) < 0)
        return NULL;
    e = mem_calloc(MEM_AUTH, 1, sizeof(*e));
    if (!e)
        return NULL;
    e->key = *k;
    ratelimit_init(&e->bucket, t->o.rate, t->o.burst, now);
    s = slot_of(t, k);
    e->hnext = t->heads[s];
    t->heads[s] = e;
    idle_append(t, e);
    t->entries++;
    return e;
}

struct iplimit *iplimit_new(const struct iplimit_opts *o, uint32_t now)
{
    struct iplimit *t = mem_calloc(MEM_AUTH, 1, sizeof(*t));

    (void)now;
    if (!t)
        return NULL;
    t->o = *o;
    if (t->o.table_size == 0)
        t->o.table_size = 1;
    /* Without the kernel's randomness the seed is still per table and
     * per process, only easier to guess. */
    if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) !=
        (ssize_t)sizeof(t->seed)) {
        t->seed[0] = mix((uintptr_t)t ^ now);
        t->seed[1] = mix(t->seed[0] + (uintptr_t)&now);
    }
    return t;
}

void iplimit_free(struct iplimit *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->nheads; i++) {
        struct ipl_entry *e = t->heads[i], *next;

        for (; e; e = next) {
            next = e->hnext;
            mem_free(MEM_AUTH, e);
        }
    }
    mem_free(MEM_AUTH, t->heads);
    for (uint32_t i = 0; i < t->npages; i++)
        mem_free(MEM_AUTH, t->pages[i]);
    mem_free(MEM_AUTH, t->pages);
    mem_free(MEM_AUTH, t);
}

/* The verdict for one more connection from k; on IPLIMIT_OK *out is
 * its entry, with the token taken (the caller counts it). */
static enum iplimit_verdict admit_key(struct iplimit *t,
                                      const struct ipl_key *k, uint32_t now,
                                      struct ipl_entry **out)
{
    struct ipl_entry *e = find(t, k);

    if (!e) {
        if (t->entries >= t->o.table_size) {
            if (!t->idle_old)
                return IPLIMIT_TABLE_FULL;
            forget(t, t->idle_old);
        }
        e = entry_new(t, k, now);
        if (!e)
            return IPLIMIT_NO_MEMORY;
    }
    if (t->o.max_conns && e->conns >= t->o.max_conns)
        return IPLIMIT_CONNS;
    if (!ratelimit_take(&e->bucket, 1, now)) {
        if (e->conns == 0) { /* seen now: the last to be evicted */
            idle_remove(t, e);
            idle_append(t, e);
        }
        return IPLIMIT_RATE;
    }
    *out = e;
    return IPLIMIT_OK;
}

enum iplimit_verdict iplimit_admit(struct iplimit *t, int fd,
                                   const struct sockaddr *peer, uint32_t now)
{
    enum iplimit_verdict v;
    struct ipl_entry *e = NULL;
    struct ipl_key k;

    if (fd < 0 || !key_of(peer, &k))
        return IPLIMIT_OK;
    /* An fd reused without its close reported must not count twice. */
    iplimit_release(t, fd, now);
    sweep(t, now);
    if (fd_page_need(t, fd) < 0)
        return IPLIMIT_NO_MEMORY;
    v = admit_key(t, &k, now, &e);
    if (v != IPLIMIT_OK) {
        fd_page_drop(t, fd);
        return v;
    }
    if (e->conns++ == 0)
        idle_remove(t, e);
    *fd_slot(t, fd) = e;
    t->pages[(uint32_t)fd / FD_PAGE]->used++;
    return IPLIMIT_OK;
}

void iplimit_release(struct iplimit *t, int fd, uint32_t now)
{
    struct ipl_entry **slot = fd_slot(t, fd), *e;

    if (!slot || !*slot)
        return;
    e = *slot;
    *slot = NULL;
    t->pages[(uint32_t)fd / FD_PAGE]->used--;
    fd_page_drop(t, fd);
    if (--e->conns == 0) {
        idle_append(t, e);
        if (bucket_full(e, now))
            forget(t, e);
    }
    sweep(t, now);
}

uint32_t iplimit_entries(const struct iplimit *t)
{
    return t->entries;
}

uint32_t iplimit_conns_of(const struct iplimit *t, const struct sockaddr *peer)
{
    struct ipl_key k;
    struct ipl_entry *e;

    if (!key_of(peer, &k))
        return 0;
    e = find(t, &k);
    return e ? e->conns : 0;
}

bool iplimit_counted(const struct iplimit *t, int fd)
{
    struct ipl_entry *const *slot = fd_slot(t, fd);

    return slot && *slot;
}
