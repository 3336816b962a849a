/*
 * debug.h - GET /debug/conns: one JSON object per line (NDJSON) per open
 * connection, like Redis's CLIENT LIST.
 *
 * Fields: id, protocol, role, peer, age_s, idle_ms, channels, queued,
 * bytes_in, bytes_out, state, paused. The peer address and the byte and
 * idle counters come from the kernel (getpeername, TCP_INFO), which keeps
 * them anyway: a connection does not pay for them while nobody looks.
 */
#ifndef MOOR_DEBUG_H
#define MOOR_DEBUG_H

#include <stddef.h>
#include "buf.h"
#include "conn.h"
#include "http_server.h"
#include "util.h"

/* The cap of a /debug page (/debug/conns, /debug/mem, and the document
 * moor_mem_json() copies out). */
#define DEBUG_PAGE_MAX MiB(16)

/* Tells what the application knows of c: writes its channels
 * ("a,b", or "") to channels, sets *sub to the subject of its token (or
 * leaves it NULL: no auth) and returns its role ("subscriber",
 * "publisher", or "" when none). */
typedef const char *debug_describe_fn(void *arg, struct conn *c, char *channels,
                                      size_t cap, const char **sub);

/* Appends a row for every open conn of set. Returns 0 or -ENOBUFS /
 * -ENOMEM (the builder's cap). */
int debug_conns(struct sbuf *out, struct conn_set *set, debug_describe_fn *fn,
                void *arg);

/* Answers ex with set's rows (503 if they outgrow DEBUG_PAGE_MAX). */
void debug_conns_page(struct http_exchange *ex, struct conn_set *set,
                      debug_describe_fn *fn, void *arg);

/* A route handler for GET /debug/mem: metrics_debug_mem()'s JSON (arg is
 * not used). */
void debug_mem_page(struct http_exchange *ex, void *arg);

#endif
