/*
 * resolve.c - the resolver of resolve.h on c-ares (docs/resolver.md).
 *
 * Shape. A resolver holds one c-ares channel, a cache (hash table of
 * names + LRU list), a table of lookups in flight (one per name; each a
 * c-ares getaddrinfo with AF_UNSPEC) and, per lookup, the list of requests
 * (struct resolve_query) waiting for it, each with its own deadline timer.
 *
 * No user code runs inside c-ares. c-ares' completion callback (gai_done)
 * only records the answer, fills the cache and queues the lookup on the
 * done list; the requests' callbacks run from dispatch(), after
 * ares_process_fd() has returned. So a callback may start, cancel, or free
 * the resolver (deferred to the callback's return: r->depth).
 *
 * The loop drives c-ares: sock_state() watches c-ares' sockets with the
 * resolver's loop fd handler, on_fd() hands their events to
 * ares_process_fd(), and one loop timer (r->ares_t) follows
 * ares_timeout() for c-ares' retries.
 *
 * Must not: block (c-ares' sockets are non-blocking; /etc/hosts is a
 * local file read), call above the transport layer, run a user callback
 * from inside c-ares.
 */
#include "resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/time.h>

#include <ares.h>

#include "log.h"
#include "loop.h"
#include "mem.h"
#include "timer.h"
#include "util.h"

#define LABEL_MAX 63
#define PENDING_BUCKETS 64 /* RESOLVE_MAX_PENDING / 4: short chains */
#define CACHE_BUCKETS_MAX 65536u

/* ------------------------------------------------------------------ */
/* c-ares' memory, under MEM_DNS.                                     */
/* ------------------------------------------------------------------ */

static void *dns_malloc(size_t n)
{
    return mem_alloc(MEM_DNS, n);
}

static void *dns_realloc(void *p, size_t n)
{
    return mem_realloc(MEM_DNS, p, n);
}

static void dns_free(void *p)
{
    mem_free(MEM_DNS, p);
}

/* c-ares' allocator is process-wide (three function pointers in the
 * library), so it is set while any resolver lives and handed back with
 * ares_library_cleanup() when the last one goes: then c-ares holds none
 * of our bytes and the dns tag can reach zero. The count is the only
 * process-wide state here, under lib_lock (docs/principles.md, rule 10:
 * every resolver sets the same functions; the pointers change only while
 * no resolver, hence no c-ares call of ours, exists). A process that uses
 * c-ares elsewhere too would have its c-ares blocks counted here. */
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned lib_users;

static int lib_ref(void)
{
    int rc = ARES_SUCCESS;

    pthread_mutex_lock(&lib_lock);
    if (lib_users == 0)
        rc = ares_library_init_mem(ARES_LIB_INIT_ALL, dns_malloc, dns_free,
                                   dns_realloc);
    if (rc == ARES_SUCCESS)
        lib_users++;
    pthread_mutex_unlock(&lib_lock);
    if (rc == ARES_SUCCESS)
        return 0;
    return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
}

static void lib_unref(void)
{
    pthread_mutex_lock(&lib_lock);
    if (--lib_users == 0)
        ares_library_cleanup();
    pthread_mutex_unlock(&lib_lock);
}

/* ------------------------------------------------------------------ */
/* Structures.                                                        */
/* ------------------------------------------------------------------ */

/* One address, without a port: 17 bytes instead of a sockaddr_storage's
 * 128. */
struct raddr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t a[16];
};

/* A cached name: its addresses, or none (a remembered failure). */
struct centry {
    struct centry *hnext;       /* hash chain */
    struct centry *prev, *next; /* LRU list, most recent first */
    char *name;                 /* after addrs[n], NUL-terminated */
    uint32_t hash;
    uint32_t expire; /* tick (resolver clock) */
    uint8_t len;
    uint8_t n; /* 0: the name does not exist */
    struct raddr addrs[];
};

/* A lookup in flight, or done and waiting for dispatch(). */
struct lookup {
    struct lookup *next; /* pending chain while in flight, then done list */
    struct resolver *r;
    struct resolve_query *waiters;
    uint32_t hash;
    int status; /* ARES_* once done */
    bool done;
    uint8_t len;
    uint8_t n;
    struct raddr addrs[RESOLVE_MAX_ADDRS];
    uint32_t ttl_s;
    char name[];
};

struct resolve_query {
    struct timer t; /* the deadline */
    struct resolve_query *next, **pprev;
    struct lookup *lk; /* NULL once detached (callback running) */
    resolve_fn *fn;
    void *arg;
    uint16_t port;
};

struct rsock {
    int fd;
    uint32_t events;
};

struct resolver {
    struct loop *l;
    ares_channel ch;     /* NULL until initialised */
    int handler;         /* loop fd handler, -1 if none */
    struct timer ares_t; /* c-ares' next timeout */
    struct timer kick;   /* dispatch lookups that finished synchronously */

    struct rsock *socks; /* c-ares' sockets the loop watches */
    uint32_t nsocks, capsocks;

    struct lookup *pending[PENDING_BUCKETS];
    struct lookup *starting; /* inside ares_getaddrinfo(): answered now? */
    struct lookup *done_head, *done_tail;
    uint32_t npending;

    struct centry **buckets;
    uint32_t nbuckets; /* power of two; 0: no cache */
    uint32_t cache_cap;
    uint32_t ncached;
    struct centry *lru_head, *lru_tail;

    uint32_t max_ttl_s, neg_ttl_s;
    uint32_t skew; /* resolver_test_advance() */

    unsigned depth;    /* user callbacks running */
    bool free_pending; /* resolver_free() from inside a callback */
    bool destroying;

    struct resolver_stats st;
};

static uint32_t rnow(const struct resolver *r)
{
    uint32_t t = loop_now(r->l) + r->skew;

    return t == TICK_UNSET ? 1 : t;
}

/* FNV-1a. */
static uint32_t name_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* Names and addresses.                                               */
/* ------------------------------------------------------------------ */

/* Writes host in lower case to key (RESOLVE_NAME_MAX + 2 bytes) after
 * checking it. Returns its length, or -EINVAL. */
static int name_key(const char *host, char *key)
{
    size_t len = strnlen(host, RESOLVE_NAME_MAX + 2), i, label = 0;

    if (len == 0 || len > RESOLVE_NAME_MAX + 1)
        return -EINVAL;
    if (len == RESOLVE_NAME_MAX + 1 && host[len - 1] != '.')
        return -EINVAL;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];

        if (c == '.') {
            if (label == 0)
                return -EINVAL;
            label = 0;
        } else if (ascii_is_alnum(c) || c == '-' || c == '_') {
            if (++label > LABEL_MAX)
                return -EINVAL;
        } else {
            return -EINVAL;
        }
        key[i] = (char)ascii_lower(c);
    }
    key[len] = '\0';
    return (int)len;
}

/* An IPv4 or IPv6 literal ("[v6]" too)? Fills *a. */
static bool parse_literal(const char *host, struct raddr *a)
{
    char buf[INET6_ADDRSTRLEN + 1];
    size_t len;

    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, host, a->a) == 1) {
        a->family = AF_INET;
        return true;
    }
    if (host[0] == '[') {
        len = strnlen(host, sizeof(buf) + 2);
        if (len < 3 || len - 2 >= sizeof(buf) || host[len - 1] != ']')
            return false;
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, a->a) == 1) {
        a->family = AF_INET6;
        return true;
    }
    return false;
}

static void to_sockaddr(struct sockaddr_storage *ss, const struct raddr *a,
                        uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        memcpy(&s4->sin_addr, a->a, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        memcpy(&s6->sin6_addr, a->a, 16);
    }
}

static size_t fill_out(struct sockaddr_storage *out, size_t cap,
                       const struct raddr *a, size_t n, uint16_t port)
{
    size_t i;

    n = MIN(n, cap);
    for (i = 0; i < n; i++)
        to_sockaddr(&out[i], &a[i], port);
    return n;
}

/* Collects an answer's addresses per family, then orders them: IPv4
 * first, then IPv6, each in the order given, duplicates dropped; when
 * both families have more than fit, IPv6 keeps up to half the places. */
struct pick {
    struct raddr v4[RESOLVE_MAX_ADDRS], v6[RESOLVE_MAX_ADDRS];
    uint32_t ttl4[RESOLVE_MAX_ADDRS], ttl6[RESOLVE_MAX_ADDRS];
    size_t n4, n6;
};

static void pick_add(struct pick *p, int family, const void *addr, int ttl)
{
    struct raddr *list = family == AF_INET ? p->v4 : p->v6;
    uint32_t *ttls = family == AF_INET ? p->ttl4 : p->ttl6;
    size_t *n = family == AF_INET ? &p->n4 : &p->n6;
    size_t alen = family == AF_INET ? 4 : 16, i;

    if (family != AF_INET && family != AF_INET6)
        return;
    for (i = 0; i < *n; i++)
        if (!memcmp(list[i].a, addr, alen))
            return;
    if (*n == RESOLVE_MAX_ADDRS)
        return;
    memset(&list[*n], 0, sizeof(list[*n]));
    list[*n].family = (uint8_t)family;
    memcpy(list[*n].a, addr, alen);
    ttls[*n] = ttl > 0 ? (uint32_t)ttl : 0;
    (*n)++;
}

/* Writes the ordered addresses to out; returns their count and the
 * smallest TTL among them in *ttl. */
static size_t pick_done(const struct pick *p, struct raddr *out, uint32_t *ttl)
{
    size_t keep6 = MIN(p->n6, (size_t)RESOLVE_MAX_ADDRS / 2);
    size_t n4 = MIN(p->n4, RESOLVE_MAX_ADDRS - keep6);
    size_t n6 = MIN(p->n6, RESOLVE_MAX_ADDRS - n4), i, n = 0;
    uint32_t t = UINT32_MAX;

    for (i = 0; i < n4; i++) {
        out[n++] = p->v4[i];
        t = MIN(t, p->ttl4[i]);
    }
    for (i = 0; i < n6; i++) {
        out[n++] = p->v6[i];
        t = MIN(t, p->ttl6[i]);
    }
    *ttl = n ? t : 0;
    return n;
}

static int status_err(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return -ENOENT;
    case ARES_ETIMEOUT:
        return -ETIMEDOUT;
    case ARES_ENOMEM:
        return -ENOMEM;
    default: /* ESERVFAIL, EREFUSED, EBADRESP, ECONNREFUSED, EFORMERR... */
        return -EIO;
    }
}

/* ------------------------------------------------------------------ */
/* The cache.                                                         */
/* ------------------------------------------------------------------ */

static struct centry *cache_find(struct resolver *r, const char *key,
                                 size_t len, uint32_t h)
{
    struct centry *e;

    if (!r->nbuckets)
        return NULL;
    for (e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->len == len && !memcmp(e->name, key, len))
            return e;
    return NULL;
}

static void lru_unlink(struct resolver *r, struct centry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        r->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        r->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct resolver *r, struct centry *e)
{
    e->prev = NULL;
    e->next = r->lru_head;
    if (r->lru_head)
        r->lru_head->prev = e;
    else
        r->lru_tail = e;
    r->lru_head = e;
}

static void cache_remove(struct resolver *r, struct centry *e)
{
    struct centry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(r, e);
    r->ncached--;
    mem_free(MEM_DNS, e);
}

/* Stores what lookup lk learnt: addresses for min(TTL, max_ttl_s), or a
 * name that does not exist for neg_ttl_s. Other failures are not kept.
 * An allocation failure only means no cache entry. */
static void cache_store(struct resolver *r, const struct lookup *lk)
{
    struct centry *e;
    uint32_t ttl;
    uint8_t n;

    if (!r->nbuckets)
        return;
    if (lk->status == ARES_SUCCESS) {
        ttl = MIN(lk->ttl_s, r->max_ttl_s);
        n = lk->n;
    } else if (status_err(lk->status) == -ENOENT) {
        ttl = r->neg_ttl_s;
        n = 0;
    } else {
        return;
    }
    e = cache_find(r, lk->name, lk->len, lk->hash);
    if (e)
        cache_remove(r, e);
    if (ttl == 0)
        return;
    if (r->ncached >= r->cache_cap)
        cache_remove(r, r->lru_tail);
    e = mem_alloc(MEM_DNS,
                  sizeof(*e) + n * sizeof(struct raddr) + lk->len + 1u);
    if (!e)
        return;
    memset(e, 0, sizeof(*e));
    e->hash = lk->hash;
    e->len = lk->len;
    e->n = n;
    e->expire = tick_add(rnow(r), ttl * 1000u);
    memcpy(e->addrs, lk->addrs, n * sizeof(struct raddr));
    e->name = (char *)(e->addrs + n);
    memcpy(e->name, lk->name, lk->len + 1u);
    e->hnext = r->buckets[e->hash & (r->nbuckets - 1)];
    r->buckets[e->hash & (r->nbuckets - 1)] = e;
    lru_push(r, e);
    r->ncached++;
}

/* ------------------------------------------------------------------ */
/* Lookups and requests.                                              */
/* ------------------------------------------------------------------ */

static struct lookup *pending_find(struct resolver *r, const char *key,
                                   size_t len, uint32_t h)
{
    struct lookup *lk;

    for (lk = r->pending[h % PENDING_BUCKETS]; lk; lk = lk->next)
        if (lk->hash == h && lk->len == len && !memcmp(lk->name, key, len))
            return lk;
    return NULL;
}

static void pending_remove(struct resolver *r, struct lookup *lk)
{
    struct lookup **pp = &r->pending[lk->hash % PENDING_BUCKETS];

    while (*pp && *pp != lk)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = lk->next;
        r->npending--;
    }
    lk->next = NULL;
}

static void attach(struct lookup *lk, struct resolve_query *q)
{
    q->lk = lk;
    q->next = lk->waiters;
    q->pprev = &lk->waiters;
    if (lk->waiters)
        lk->waiters->pprev = &q->next;
    lk->waiters = q;
}

static void detach(struct resolver *r, struct resolve_query *q)
{
    *q->pprev = q->next;
    if (q->next)
        q->next->pprev = q->pprev;
    q->next = NULL;
    q->pprev = NULL;
    q->lk = NULL;
    timer_cancel(loop_timers(r->l), &q->t);
}

/* Frees every request waiting on lk, without callbacks. */
static void drop_waiters(struct resolver *r, struct lookup *lk)
{
    struct resolve_query *q;

    while ((q = lk->waiters)) {
        detach(r, q);
        mem_free(MEM_DNS, q);
    }
}

/* Runs q's callback and frees q (already detached). */
static void deliver(struct resolver *r, struct resolve_query *q, int err,
                    const struct raddr *a, size_t n)
{
    struct sockaddr_storage ss[RESOLVE_MAX_ADDRS];

    n = fill_out(ss, RESOLVE_MAX_ADDRS, a, err ? 0 : n, q->port);
    r->depth++;
    q->fn(q->arg, err, n ? ss : NULL, n);
    r->depth--;
    mem_free(MEM_DNS, q);
}

static void destroy(struct resolver *r);

/* Runs the callbacks of the lookups that are done, oldest first. Returns
 * false if a callback freed the resolver (it is gone now). */
static bool dispatch(struct resolver *r)
{
    struct lookup *lk;
    struct resolve_query *q;

    while ((lk = r->done_head)) {
        int err = status_err(lk->status);

        while ((q = lk->waiters)) {
            detach(r, q);
            deliver(r, q, err, lk->addrs, lk->n);
            if (r->free_pending) {
                destroy(r);
                return false;
            }
        }
        r->done_head = lk->next;
        if (!r->done_head)
            r->done_tail = NULL;
        mem_free(MEM_DNS, lk);
    }
    timer_cancel(loop_timers(r->l), &r->kick);
    return true;
}

/* Follows c-ares' next timeout with r->ares_t. */
static void rearm(struct resolver *r)
{
    struct timeval tv, *tvp;
    uint64_t ms;

    tvp = ares_timeout(r->ch, NULL, &tv);
    if (!tvp) {
        timer_cancel(loop_timers(r->l), &r->ares_t);
        return;
    }
    ms = (uint64_t)tv.tv_sec * 1000u + ((uint64_t)tv.tv_usec + 999u) / 1000u;
    /* At least 1: a timeout c-ares sees as a fraction of a millisecond
     * away must not spin the loop. */
    loop_timer_in(r->l, &r->ares_t, (uint32_t)MAX(MIN(ms, 86400000u), 1u));
}

/* Queues a finished lookup for dispatch(). The kick timer makes sure it
 * runs even when no c-ares event follows: c-ares may end a lookup from
 * inside ares_getaddrinfo() (the one being started, or another whose
 * server it just gave up on). */
static void push_done(struct resolver *r, struct lookup *lk)
{
    lk->next = NULL;
    if (r->done_tail)
        r->done_tail->next = lk;
    else
        r->done_head = lk;
    r->done_tail = lk;
    loop_timer_in(r->l, &r->kick, 0);
}

static void after_ares(struct resolver *r)
{
    if (dispatch(r))
        rearm(r);
}

/* c-ares' completion of a lookup (inside c-ares: no user code here). */
static void gai_done(void *arg, int status, int timeouts,
                     struct ares_addrinfo *res)
{
    struct lookup *lk = arg;
    struct resolver *r = lk->r;
    struct ares_addrinfo_node *nd;
    struct pick p;

    (void)timeouts;
    if (r->destroying || status == ARES_EDESTRUCTION ||
        status == ARES_ECANCELLED) {
        /* resolver_free(): its requests are gone already. */
        if (res)
            ares_freeaddrinfo(res);
        pending_remove(r, lk);
        drop_waiters(r, lk);
        mem_free(MEM_DNS, lk);
        return;
    }
    pending_remove(r, lk);
    lk->status = status;
    if (status == ARES_SUCCESS) {
        memset(&p, 0, sizeof(p));
        for (nd = res ? res->nodes : NULL; nd; nd = nd->ai_next) {
            if (nd->ai_family == AF_INET)
                pick_add(&p, AF_INET,
                         &((struct sockaddr_in *)(void *)nd->ai_addr)->sin_addr,
                         nd->ai_ttl);
            else if (nd->ai_family == AF_INET6)
                pick_add(
                    &p, AF_INET6,
                    &((struct sockaddr_in6 *)(void *)nd->ai_addr)->sin6_addr,
                    nd->ai_ttl);
        }
        lk->n = (uint8_t)pick_done(&p, lk->addrs, &lk->ttl_s);
        if (lk->n == 0)
            lk->status = ARES_ENODATA;
    }
    if (res)
        ares_freeaddrinfo(res);
    if (lk->status != ARES_SUCCESS)
        r->st.failures++;
    cache_store(r, lk);
    lk->done = true;
    if (lk == r->starting)
        return; /* resolve_start() takes it from here */
    push_done(r, lk);
}

static void on_deadline(struct timer *t)
{
    struct resolve_query *q = container_of(t, struct resolve_query, t);
    struct resolver *r = q->lk->r;

    detach(r, q);
    r->st.timeouts++;
    deliver(r, q, -ETIMEDOUT, NULL, 0);
    if (r->free_pending)
        destroy(r);
}

static void on_kick(struct timer *t)
{
    struct resolver *r = container_of(t, struct resolver, kick);

    dispatch(r);
}

static void on_ares_timer(struct timer *t)
{
    struct resolver *r = container_of(t, struct resolver, ares_t);

    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    after_ares(r);
}

/* ------------------------------------------------------------------ */
/* c-ares' sockets on the loop.                                       */
/* ------------------------------------------------------------------ */

static int sock_find(const struct resolver *r, int fd)
{
    uint32_t i;

    for (i = 0; i < r->nsocks; i++)
        if (r->socks[i].fd == fd)
            return (int)i;
    return -1;
}

/* c-ares opens, changes or closes (readable == writable == 0) a socket.
 * It cannot be told of a failure: a socket the loop could not watch
 * costs its queries their answers, and the deadline ends them. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    uint32_t ev = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u);
    int i = sock_find(r, fd), rc;

    if (!ev) {
        if (i >= 0) {
            loop_unwatch(r->l, fd);
            r->socks[i] = r->socks[--r->nsocks];
        }
        return;
    }
    if (i >= 0) {
        if (r->socks[i].events != ev) {
            rc = loop_modify_fd(r->l, fd, r->handler, ev);
            if (rc < 0)
                LOG_WARN("resolver socket not watched", "fd=%d err=%d", fd, rc);
            r->socks[i].events = ev;
        }
        return;
    }
    if (r->nsocks == r->capsocks) {
        uint32_t cap = r->capsocks ? r->capsocks * 2 : 4;
        struct rsock *s =
            mem_realloc(MEM_DNS, r->socks, cap * sizeof(*r->socks));

        if (!s) {
            LOG_WARN("resolver socket not watched", "fd=%d err=%d", fd,
                     -ENOMEM);
            return;
        }
        r->socks = s;
        r->capsocks = cap;
    }
    rc = loop_watch_fd(r->l, fd, r->handler, ev);
    if (rc < 0) {
        LOG_WARN("resolver socket not watched", "fd=%d err=%d", fd, rc);
        return;
    }
    r->socks[r->nsocks].fd = fd;
    r->socks[r->nsocks].events = ev;
    r->nsocks++;
}

static int sock_config(ares_socket_t fd, int type, void *data)
{
    (void)type;
    (void)data;
    /* c-ares 1.18 opens its sockets without SOCK_CLOEXEC. */
    return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
}

/* The loop's events on c-ares' sockets. Events are routed by fd, and a
 * stale one may come for an fd c-ares closed (and someone reused) in
 * this iteration: an fd not in the table is not ours; for one that is,
 * c-ares reads and writes until EAGAIN, so an event is only a hint. */
static void on_fd(void *arg, int fd, uint32_t events)
{
    struct resolver *r = arg;
    int i = sock_find(r, fd);
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

    if (i < 0)
        return;
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
        (r->socks[i].events & EPOLLIN))
        rfd = fd;
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) &&
        (r->socks[i].events & EPOLLOUT))
        wfd = fd;
    ares_process_fd(r->ch, rfd, wfd);
    after_ares(r);
}

/* ------------------------------------------------------------------ */
/* The API.                                                           */
/* ------------------------------------------------------------------ */

static void destroy(struct resolver *r)
{
    struct lookup *lk;
    struct centry *e;
    unsigned i;

    r->destroying = true;
    timer_cancel(loop_timers(r->l), &r->ares_t);
    timer_cancel(loop_timers(r->l), &r->kick);
    for (i = 0; i < PENDING_BUCKETS; i++)
        for (lk = r->pending[i]; lk; lk = lk->next)
            drop_waiters(r, lk);
    while ((lk = r->done_head)) {
        r->done_head = lk->next;
        drop_waiters(r, lk);
        mem_free(MEM_DNS, lk);
    }
    r->done_tail = NULL;
    /* Ends the lookups in flight (gai_done frees each, with
     * ARES_EDESTRUCTION) and closes the sockets (sock_state unwatches). */
    if (r->ch)
        ares_destroy(r->ch);
    for (i = 0; i < PENDING_BUCKETS; i++) {
        while ((lk = r->pending[i])) { /* none expected: c-ares ended all */
            r->pending[i] = lk->next;
            mem_free(MEM_DNS, lk);
        }
    }
    for (i = 0; i < r->nsocks; i++) /* none expected either */
        loop_unwatch(r->l, r->socks[i].fd);
    if (r->handler >= 0)
        loop_remove_fd_handler(r->l, r->handler);
    while ((e = r->lru_head))
        cache_remove(r, e);
    mem_free(MEM_DNS, r->buckets);
    mem_free(MEM_DNS, r->socks);
    mem_free(MEM_DNS, r);
    lib_unref();
}

static int ares_err(int rc)
{
    switch (rc) {
    case ARES_ENOMEM:
        return -ENOMEM;
    case ARES_EBADSTR:
    case ARES_ENODATA:
    case ARES_EBADFAMILY:
        return -EINVAL;
    default:
        return -EIO;
    }
}

struct resolver *resolver_new(struct loop *l, const struct resolver_opts *o,
                              int *err)
{
    struct resolver_opts def = {256, 300, 5, NULL};
    struct ares_options ao;
    struct resolver *r;
    int rc, dummy;

    if (!err)
        err = &dummy;
    if (!o)
        o = &def;
    if (!l || (o->servers && !o->servers[0])) {
        *err = -EINVAL;
        return NULL;
    }
    r = mem_calloc(MEM_DNS, 1, sizeof(*r));
    if (!r) {
        *err = -ENOMEM;
        return NULL;
    }
    rc = lib_ref();
    if (rc < 0) {
        mem_free(MEM_DNS, r);
        *err = rc;
        return NULL;
    }
    r->l = l;
    r->handler = -1;
    timer_init(&r->ares_t, on_ares_timer);
    timer_init(&r->kick, on_kick);
    r->max_ttl_s = MIN(o->max_ttl_s, RESOLVE_MAX_TTL_S);
    r->neg_ttl_s = MIN(o->neg_ttl_s, RESOLVE_MAX_TTL_S);
    r->cache_cap = o->cache_entries;
    if (r->cache_cap) {
        uint32_t nb = 16;

        while (nb < r->cache_cap && nb < CACHE_BUCKETS_MAX)
            nb *= 2;
        r->buckets = mem_calloc(MEM_DNS, nb, sizeof(*r->buckets));
        if (!r->buckets) {
            rc = -ENOMEM;
            goto fail;
        }
        r->nbuckets = nb;
    }
    r->handler = loop_add_fd_handler(l, on_fd, r);
    if (r->handler < 0) {
        rc = r->handler;
        goto fail;
    }

    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state;
    ao.sock_state_cb_data = r;
    ao.timeout = RESOLVE_TRY_MS;
    ao.tries = RESOLVE_TRIES;
    rc = ares_init_options(&r->ch, &ao,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                               ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        r->ch = NULL;
        rc = rc == ARES_ENOMEM ? -ENOMEM : -EIO;
        goto fail;
    }
    ares_set_socket_configure_callback(r->ch, sock_config, r);
    if (o->servers) {
        rc = ares_set_servers_ports_csv(r->ch, o->servers);
        if (rc != ARES_SUCCESS) {
            rc = ares_err(rc);
            goto fail;
        }
    }
    return r;

fail:
    destroy(r);
    *err = rc;
    return NULL;
}

void resolver_free(struct resolver *r)
{
    if (!r)
        return;
    if (r->depth) {
        r->free_pending = true;
        return;
    }
    destroy(r);
}

static bool is_localhost(const char *key, size_t len)
{
    static const char lh[] = "localhost";
    const size_t lhlen = sizeof(lh) - 1;

    if (len && key[len - 1] == '.')
        len--;
    if (len < lhlen || memcmp(key + len - lhlen, lh, lhlen))
        return false;
    return len == lhlen || key[len - lhlen - 1] == '.';
}

/* RFC 6761, 6.3: localhost names never go to DNS. /etc/hosts may say
 * where they are; if it does not, they are the loopback addresses.
 * (Debian's c-ares 1.18.1 sends "x.localhost" and "localhost." to the
 * server, and "localhost" too when /etc/hosts lacks it.) */
static int answer_localhost(struct resolver *r, const char *key, size_t len,
                            uint16_t port, struct sockaddr_storage *out,
                            size_t *n)
{
    static const int fams[2] = {AF_INET, AF_INET6};
    char name[RESOLVE_NAME_MAX + 2];
    struct raddr a[RESOLVE_MAX_ADDRS];
    struct hostent *he;
    struct pick p;
    uint32_t ttl;
    size_t k, i;
    int rc;

    memcpy(name, key, len + 1);
    if (name[len - 1] == '.')
        name[len - 1] = '\0';
    memset(&p, 0, sizeof(p));
    for (k = 0; k < 2; k++) {
        he = NULL;
        rc = ares_gethostbyname_file(r->ch, name, fams[k], &he);
        if (rc == ARES_ENOMEM)
            return -ENOMEM;
        if (rc != ARES_SUCCESS || !he)
            continue;
        for (i = 0; he->h_addr_list[i]; i++)
            if (he->h_addrtype == fams[k])
                pick_add(&p, fams[k], he->h_addr_list[i], 0);
        ares_free_hostent(he);
    }
    if (p.n4 + p.n6 == 0) {
        static const uint8_t v4[4] = {127, 0, 0, 1};
        static const uint8_t v6[16] = {[15] = 1};

        pick_add(&p, AF_INET, v4, 0);
        pick_add(&p, AF_INET6, v6, 0);
    }
    k = pick_done(&p, a, &ttl);
    *n = fill_out(out, *n, a, k, port);
    return 1;
}

int resolve_start(struct resolver *r, const char *host, uint16_t port,
                  uint32_t timeout_ms, resolve_fn *fn, void *arg,
                  struct sockaddr_storage *out, size_t *n,
                  struct resolve_query **q)
{
    char key[RESOLVE_NAME_MAX + 2];
    struct ares_addrinfo_hints hints;
    struct resolve_query *rq;
    struct lookup *lk;
    struct centry *e;
    struct raddr lit;
    size_t cap;
    uint32_t h;
    int len;

    if (q)
        *q = NULL;
    if (!r || !host || !fn || !out || !n || !*n || !q)
        return -EINVAL;
    cap = *n;
    *n = 0;
    if (parse_literal(host, &lit)) {
        *n = fill_out(out, cap, &lit, 1, port);
        return 1;
    }
    len = name_key(host, key);
    if (len < 0)
        return len;
    if (is_localhost(key, (size_t)len)) {
        *n = cap;
        return answer_localhost(r, key, (size_t)len, port, out, n);
    }

    h = name_hash(key, (size_t)len);
    e = cache_find(r, key, (size_t)len, h);
    if (e && tick_expired(e->expire, rnow(r))) {
        cache_remove(r, e);
        e = NULL;
    }
    if (e) {
        lru_unlink(r, e);
        lru_push(r, e);
        r->st.cache_hits++;
        *n = fill_out(out, cap, e->addrs, e->n, port);
        return 1;
    }

    lk = pending_find(r, key, (size_t)len, h);
    if (!lk && r->npending >= RESOLVE_MAX_PENDING)
        return -EAGAIN;
    /* The deadline counts from now: the cached clock is stale when the
     * loop sat unrun before this call (a request from outside it). */
    loop_update_time(r->l);
    rq = mem_calloc(MEM_DNS, 1, sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    timer_init(&rq->t, on_deadline);
    rq->fn = fn;
    rq->arg = arg;
    rq->port = port;
    if (lk) {
        attach(lk, rq);
        r->st.joined++;
        loop_timer_in(r->l, &rq->t, MAX(timeout_ms, 1u));
        *q = rq;
        return 0;
    }

    lk = mem_alloc(MEM_DNS, sizeof(*lk) + (size_t)len + 1u);
    if (!lk) {
        mem_free(MEM_DNS, rq);
        return -ENOMEM;
    }
    memset(lk, 0, sizeof(*lk));
    lk->r = r;
    lk->hash = h;
    lk->len = (uint8_t)len;
    memcpy(lk->name, key, (size_t)len + 1u);
    lk->next = r->pending[h % PENDING_BUCKETS];
    r->pending[h % PENDING_BUCKETS] = lk;
    r->npending++;
    attach(lk, rq);
    r->st.lookups++;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    /* No RFC 6724 sort: c-ares would connect() a probe socket per
     * address to find it; the order is ours (pick_done). */
    hints.ai_flags = ARES_AI_NOSORT;
    r->starting = lk;
    ares_getaddrinfo(r->ch, lk->name, NULL, &hints, gai_done, lk);
    r->starting = NULL;

    if (lk->done && (lk->status == ARES_SUCCESS || lk->status == ARES_ENOMEM)) {
        /* Answered now (/etc/hosts), or refused for want of memory. */
        int rc = lk->status == ARES_SUCCESS ? 1 : -ENOMEM;

        detach(r, rq);
        mem_free(MEM_DNS, rq);
        if (rc == 1)
            *n = fill_out(out, cap, lk->addrs, lk->n, port);
        mem_free(MEM_DNS, lk);
        rearm(r);
        return rc;
    }
    if (lk->done) /* failed at once: the callback runs later, as promised */
        push_done(r, lk);
    loop_timer_in(r->l, &rq->t, MAX(timeout_ms, 1u));
    rearm(r);
    *q = rq;
    return 0;
}

void resolve_cancel(struct resolve_query *q)
{
    if (!q || !q->lk)
        return; /* inside its own callback: freed when it returns */
    detach(q->lk->r, q);
    mem_free(MEM_DNS, q);
}

void resolver_stats(const struct resolver *r, struct resolver_stats *st)
{
    *st = r->st;
    st->cached = r->ncached;
    st->pending = r->npending;
}

void resolver_test_advance(struct resolver *r, uint32_t ms)
{
    r->skew += ms;
}
