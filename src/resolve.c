/* TEMPORARY STUB (not committed) */
#include <errno.h>
#include <string.h>
#include <netdb.h>
#include <arpa/inet.h>
#include "resolve.h"
#include "mem.h"
struct resolver { int x; };
struct resolver *resolver_new(struct loop *l, const struct resolver_opts *o, int *err)
{ (void)l; (void)o; struct resolver *r = mem_calloc(MEM_DNS, 1, sizeof(*r)); if (!r) *err = -ENOMEM; return r; }
void resolver_free(struct resolver *r) { if (r) mem_free(MEM_DNS, r); }
int resolve_start(struct resolver *r, const char *host, uint16_t port, uint32_t timeout_ms,
                  resolve_fn *fn, void *arg, struct sockaddr_storage *out, size_t *n,
                  struct resolve_query **q)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *a;
    size_t k = 0;
    (void)r; (void)timeout_ms; (void)fn; (void)arg; *q = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return -ENOENT;
    for (a = res; a && k < *n; a = a->ai_next) {
        memcpy(&out[k], a->ai_addr, a->ai_addrlen);
        if (a->ai_family == AF_INET) ((struct sockaddr_in *)&out[k])->sin_port = htons(port);
        else ((struct sockaddr_in6 *)&out[k])->sin6_port = htons(port);
        k++;
    }
    freeaddrinfo(res);
    *n = k;
    return k ? 1 : -ENOENT;
}
void resolve_cancel(struct resolve_query *q) { (void)q; }
void resolver_stats(const struct resolver *r, struct resolver_stats *st) { (void)r; memset(st, 0, sizeof(*st)); }
