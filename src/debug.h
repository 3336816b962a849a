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

/* Tells what the application knows of c: writes its channels
 * ("a,b", or "") to channels and returns its role ("subscriber",
 * "publisher", or "" when none). */
typedef const char *debug_describe_fn(void *arg, struct conn *c, char *channels,
                                      size_t cap);

/* Appends a row for every open conn of set. Returns 0 or -ENOBUFS /
 * -ENOMEM (the builder's cap). */
int debug_conns(struct sbuf *out, struct conn_set *set, debug_describe_fn *fn,
                void *arg);

#endif
