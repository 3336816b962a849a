/*
 * metrics.h - Prometheus text exposition (format 0.0.4) and /debug/mem.
 *
 * Counters live where they are counted (conn_set, listener, http_server,
 * mem), per loop; rendering sums them. Rendering allocates only the output
 * builder (tag MEM_METRICS), bounded by its cap.
 */
#ifndef MOOR_METRICS_H
#define MOOR_METRICS_H

#include <stdint.h>
#include "buf.h"
#include "conn.h"
#include "listen.h"
#include "http_server.h"
#include "pubsub.h"
#include "tls.h"
#include "auth.h"
#include "influx.h"
#include "util.h"

#define METRICS_MAX_LOOPS 64
#define METRICS_PAGE_MAX MiB(1)
#define METRICS_MAX_LISTENERS 4

/* What one loop contributes. */
struct metrics_loop {
    const struct conn_set *conns;
    /* Every listener of the loop (HTTP, --tls-listen, --tcp-listen):
     * refusals and accept pauses are summed over them. */
    const struct listener *listeners[METRICS_MAX_LISTENERS];
    const struct http_server *http;
    /* A second HTTP server on the same conns, or NULL: `moor serve`'s
     * --admin-listen routes. Its requests count with http's. */
    const struct http_server *http_admin;
    const struct pubsub *pubsub; /* or NULL */
};

struct metrics_view {
    unsigned n_loops;
    struct metrics_loop loops[METRICS_MAX_LOOPS];
    const struct tls_ctx *tls;   /* --tls-listen's context, or NULL */
    const struct auth *auth;     /* --auth, or NULL */
    const struct influx *influx; /* --influx-url, or NULL */
    /* Rereads of `moor serve --config` by SIGHUP (zeros elsewhere). */
    uint64_t config_reloads_ok, config_reloads_failed;
    /* GET /debug/stream feeds open, and refused at --max-debug-streams
     * (moor serve; zeros elsewhere). */
    uint64_t debug_streams, debug_streams_refused;
    uint64_t start_wall_ms; /* process start: moor_start_time_seconds */
};

/* Appends the whole exposition to out. Returns 0 or -ENOMEM/-ENOBUFS. */
int metrics_render(struct sbuf *out, const struct metrics_view *v);
/* Appends the /debug/mem JSON document to out (trace sites included when
 * trace mode is on). Returns 0 or -errno. */
int metrics_debug_mem(struct sbuf *out);

#endif
