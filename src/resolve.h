/*
 * resolve.h - a non-blocking name resolver on an event loop, built on
 * c-ares (docs/resolver.md): the HTTP client's way from a host name to
 * addresses.
 *
 * A resolver belongs to one loop and is used from that loop's thread
 * only. Its sockets are watched by the loop (a loop fd handler), c-ares'
 * retry timeouts and every request's deadline are loop timers, so nothing
 * here blocks or needs a thread (docs/principles.md, rule 2). Everything
 * it allocates, c-ares' own memory included, is counted under MEM_DNS
 * (rule 7): after the last resolver_free() the dns tag is back to zero.
 *
 * Answers.
 *  - An IPv4 or IPv6 literal ("10.0.0.1", "::1", "[::1]") is answered at
 *    once, without a query.
 *  - "localhost", "*.localhost" (RFC 6761, 6.3) are answered at once from
 *    /etc/hosts, or as 127.0.0.1 and ::1 when /etc/hosts does not name
 *    them; they never go to a DNS server.
 *  - Other names: /etc/hosts first (c-ares reads it on every lookup that
 *    misses the cache, and answers from it at once), then DNS, asking for
 *    A and AAAA together (AF_UNSPEC).
 *  - Order: IPv4 addresses first, then IPv6, each family in c-ares'
 *    order (the server's), duplicates dropped, at most RESOLVE_MAX_ADDRS.
 *    When a name has both, up to RESOLVE_MAX_ADDRS / 2 IPv6 addresses
 *    keep their places, so a long A list cannot push every AAAA out.
 *  - Cache: a bounded LRU of cache_entries names (lower-cased); an answer
 *    lives min(its smallest TTL, max_ttl_s) seconds (TTL 0: not cached;
 *    /etc/hosts answers have TTL 0); a name that does not exist
 *    (NXDOMAIN, or no A/AAAA) is remembered neg_ttl_s seconds. Time is
 *    the loop's clock (loop_now()).
 *  - Joining: requests for a name whose lookup is in flight wait for that
 *    lookup (one pair of A/AAAA queries); each keeps its own port,
 *    deadline and callback.
 *
 * Deadlines. Each request has its own (timeout_ms): when it passes, its
 * callback runs with -ETIMEDOUT. The lookup itself goes on (c-ares 1.18
 * cannot cancel one query) until c-ares answers or gives up (per try
 * RESOLVE_TRY_MS, doubling, RESOLVE_TRIES rounds over the servers); a
 * late answer still fills the cache, and a new request for the name joins
 * it. At most RESOLVE_MAX_PENDING lookups are in flight per resolver.
 *
 * Callbacks run from the loop (an I/O event, a timer), never from inside
 * c-ares or from inside resolve_start(). A callback may start and cancel
 * requests, and may free the resolver: that takes effect when the
 * callback returns, and no further callback runs. The resolver must be
 * freed before its loop.
 */
#ifndef MOOR_RESOLVE_H
#define MOOR_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct resolver;
struct resolve_query;

#define RESOLVE_MAX_ADDRS 8     /* addresses in one answer */
#define RESOLVE_NAME_MAX 253    /* bytes of a name, without a final dot */
#define RESOLVE_MAX_PENDING 256 /* lookups in flight per resolver */
#define RESOLVE_TRY_MS 1000     /* c-ares' first per-try timeout */
#define RESOLVE_TRIES 3         /* c-ares' rounds over the servers */
#define RESOLVE_MAX_TTL_S (7u * 86400) /* max_ttl_s is clamped to this */

struct resolver_opts {
    uint32_t cache_entries; /* names cached (LRU past it); 0: no cache */
    uint32_t max_ttl_s;     /* a cached answer lives min(TTL, this) */
    uint32_t neg_ttl_s;     /* a failed name (NXDOMAIN/no data) is remembered
                             * this long (e.g. 5); 0: not */
    const char *servers;    /* "IP[:PORT],..." (ares_set_servers_ports_csv);
                             * NULL: the system's (/etc/resolv.conf) */
};

/* Returns a resolver on loop l (its sockets watched by the loop through a
 * loop fd handler, its timeouts on loop timers), or NULL with *err:
 * -ENOMEM, -EINVAL (bad servers: not a list of addresses, or empty),
 * -EIO (c-ares' initialisation failed), -ENOSPC (the loop has no free fd
 * handler slot, LOOP_MAX_FD_HANDLERS). o NULL: 256 names, max_ttl_s 300,
 * neg_ttl_s 5, the system's servers. */
struct resolver *resolver_new(struct loop *l, const struct resolver_opts *o,
                              int *err);

/* Cancels pending requests (their callbacks do NOT run), frees
 * everything. Before the loop is freed. From inside a resolve_fn it
 * takes effect when that callback returns. NULL is a no-op. */
void resolver_free(struct resolver *r);

/* err 0 with n >= 1 addresses (port set to the requested port; order:
 * see above), or err < 0 with n == 0 (addrs NULL):
 *   -ENOENT     no such name, or it has no address
 *   -ETIMEDOUT  the request's deadline passed (or c-ares gave up)
 *   -EIO        server failure, refused, bad answer, no server reachable
 *   -ENOMEM     out of memory
 * The addresses are valid only during the call. The request's handle is
 * gone when the callback returns. */
typedef void resolve_fn(void *arg, int err,
                        const struct sockaddr_storage *addrs, size_t n);

/* Resolves host (a name, or an IPv4/IPv6 literal) for port.
 *
 * Returns 1, without any callback, when the answer is known now (a
 * literal, localhost, a fresh cache entry, an /etc/hosts entry, a
 * remembered failure): out[0..*n) holds the addresses, at most the
 * capacity the caller gave in *n (the first ones, in the order above).
 * *n == 0 means a remembered failure: the name does not exist (-ENOENT).
 *
 * Returns 0 when a lookup was started, or joined (a request for the same
 * name already waits); *q is its handle, and fn(arg, ...) runs later,
 * exactly once, unless resolve_cancel(*q) is called first. The request's
 * deadline is timeout_ms from now (0 is taken as 1).
 *
 * Returns < 0, without callback: -EINVAL (host empty, longer than
 * RESOLVE_NAME_MAX, an empty label or one over 63 bytes, a byte other
 * than letters, digits, '-', '_' and '.'; or *n == 0), -ENOMEM, -EAGAIN
 * (RESOLVE_MAX_PENDING lookups are in flight). */
int resolve_start(struct resolver *r, const char *host, uint16_t port,
                  uint32_t timeout_ms, resolve_fn *fn, void *arg,
                  struct sockaddr_storage *out, size_t *n,
                  struct resolve_query **q);

/* The callback will not run. Safe until the callback has run (inside its
 * own callback it is a no-op). */
void resolve_cancel(struct resolve_query *q);

struct resolver_stats {
    uint64_t lookups;    /* lookups handed to c-ares */
    uint64_t cache_hits; /* answers from the cache, remembered failures too */
    uint64_t joined;     /* requests that joined a lookup in flight */
    uint64_t failures;   /* lookups that ended in an error */
    uint64_t timeouts;   /* requests whose deadline passed */
    int64_t cached;      /* names in the cache (some may have expired) */
    int64_t pending;     /* lookups in flight */
};
void resolver_stats(const struct resolver *r, struct resolver_stats *st);

/* Tests only: moves the resolver's cache clock ms ahead of the loop's,
 * so a test can expire a TTL without waiting for it. */
void resolver_test_advance(struct resolver *r, uint32_t ms);

#endif
