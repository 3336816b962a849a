/* TEMPORARY STUB (not committed): the contract of resolve.h */
#ifndef MOOR_RESOLVE_H
#define MOOR_RESOLVE_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "loop.h"
struct resolver;
struct resolve_query;
struct resolver_opts {
    uint32_t cache_entries;
    uint32_t max_ttl_s;
    uint32_t neg_ttl_s;
    const char *servers;
};
struct resolver *resolver_new(struct loop *l, const struct resolver_opts *o, int *err);
void resolver_free(struct resolver *r);
typedef void resolve_fn(void *arg, int err, const struct sockaddr_storage *addrs, size_t n);
int resolve_start(struct resolver *r, const char *host, uint16_t port, uint32_t timeout_ms,
                  resolve_fn *fn, void *arg, struct sockaddr_storage *out, size_t *n,
                  struct resolve_query **q);
void resolve_cancel(struct resolve_query *q);
struct resolver_stats { uint64_t lookups, cache_hits, joined, failures, timeouts; int64_t cached, pending; };
void resolver_stats(const struct resolver *r, struct resolver_stats *st);
#endif
