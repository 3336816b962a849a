/*
 * iplimit.c - the per-address table: a seeded hash of entries, a list of
 * the idle ones (no open connection) oldest first, and a side array from
 * fd to entry for the close path.
 *
 * Invariants.
 * - An entry is on the idle list exactly when its count is 0.
 * - by_fd[fd] is the entry fd is counted under, or NULL; an entry's count
 *   is the number of fds pointing at it.
 * - entries <= table_size; the hash heads are a power of two, at most
 *   the power of two at or above table_size (load factor <= 1 while they
 *   can still grow).
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
#define BY_FD_MIN 64u /* fd slots allocated with the first fd */

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

struct iplimit {
    struct iplimit_opts o;
    uint64_t seed[2];
    struct ipl_entry **heads;
    struct ipl_entry **by_fd;
    struct ipl_entry *idle_old, *idle_new; /* the idle list's two ends */
    uint32_t nheads;                       /* 0 until the first entry */
    uint32_t by_fd_len;
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

/* A 64-bit finalizer: every input bit moves every output bit. */
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

/* Doubles the hash heads while the table outgrows them. A failure keeps
 * the old heads (longer chains, still correct) unless there are none. */
static int grow_heads(struct iplimit *t)
{
    uint32_t cap = HEADS_MIN, n;
    struct ipl_entry **h;

    while (cap < t->o.table_size && cap < (1u << 31))
        cap <<= 1;
    if (t->nheads && (t->entries < t->nheads || t->nheads >= cap))
        return 0;
    n = t->nheads ? t->nheads * 2 : HEADS_MIN;
    h = mem_calloc(MEM_AUTH, n, sizeof(*h));
    if (!h)
        return t->nheads ? 0 : -1;
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

static int grow_by_fd(struct iplimit *t, int fd)
{
    uint32_t n = t->by_fd_len ? t->by_fd_len : BY_FD_MIN;
    struct ipl_entry **p;

    if ((uint32_t)fd < t->by_fd_len)
        return 0;
    while (n <= (uint32_t)fd)
        n *= 2;
    p = mem_realloc(MEM_AUTH, t->by_fd, (size_t)n * sizeof(*p));
    if (!p)
        return -1;
    memset(p + t->by_fd_len, 0, (size_t)(n - t->by_fd_len) * sizeof(*p));
    t->by_fd = p;
    t->by_fd_len = n;
    return 0;
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
    mem_free(MEM_AUTH, t->by_fd);
    mem_free(MEM_AUTH, t);
}

enum iplimit_verdict iplimit_admit(struct iplimit *t, int fd,
                                   const struct sockaddr *peer, uint32_t now)
{
    struct ipl_entry *e;
    struct ipl_key k;

    if (fd < 0 || !key_of(peer, &k))
        return IPLIMIT_OK;
    if (grow_by_fd(t, fd) < 0)
        return IPLIMIT_NO_MEMORY;
    /* An fd reused without its close reported must not count twice. */
    iplimit_release(t, fd, now);
    sweep(t, now);
    e = find(t, &k);
    if (!e) {
        if (t->entries >= t->o.table_size) {
            if (!t->idle_old)
                return IPLIMIT_TABLE_FULL;
            forget(t, t->idle_old);
        }
        e = entry_new(t, &k, now);
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
    if (e->conns++ == 0)
        idle_remove(t, e);
    t->by_fd[fd] = e;
    return IPLIMIT_OK;
}

void iplimit_release(struct iplimit *t, int fd, uint32_t now)
{
    struct ipl_entry *e;

    if (fd < 0 || (uint32_t)fd >= t->by_fd_len || !t->by_fd[fd])
        return;
    e = t->by_fd[fd];
    t->by_fd[fd] = NULL;
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
    return fd >= 0 && (uint32_t)fd < t->by_fd_len && t->by_fd[fd];
}
