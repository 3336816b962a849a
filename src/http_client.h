/*
 * http_client.h - the pooled HTTP/1.1 client behind moor.h's
 * moor_http_client_* (docs/http_client.md): what the rest of the library
 * needs of it (the loop's liveness, the metrics page).
 *
 * Ownership. A client owns its hosts (one per scheme, host and port),
 * each host its idle connections and its queue of waiting calls, and
 * each call (a request in flight) the messages of its request until its
 * on_done has returned. Connections are conns of the client's own set,
 * their state in the conn's ext area (struct hc_conn): an idle pooled
 * connection is that and nothing else (plus OpenSSL's SSL object for
 * https, its record buffers released).
 */
#ifndef MOOR_HTTP_CLIENT_H
#define MOOR_HTTP_CLIENT_H

#include <stdbool.h>

#include "moor.h"
#include "buf.h"

/* The next client in its loop's list (api_loop.c). */
struct moor_http_client **http_client_next(struct moor_http_client *cl);
/* True while a call is in flight (moor_loop_run() goes on). Idle pooled
 * connections do not keep a loop running. */
bool http_client_busy(const struct moor_http_client *cl);
/* Appends the Prometheus families (moor_http_client_*) of the n clients
 * cls, per host and in total, to b: each family once, a host two clients
 * talk to as one row. Returns 0, or the first append's error (-ENOBUFS
 * past b's cap, -ENOMEM): then the page must not be served. */
int http_client_metrics(const struct moor_http_client *const *cls, size_t n,
                        struct sbuf *b);

#endif
