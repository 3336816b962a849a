/*
 * debug_stream.h - GET /debug/stream: the live feed of /dashboard, one
 * Server-Sent Event of JSON every --debug-stream-interval (1 s): memory
 * by tag and RSS, connections by state and by protocol, pub/sub totals
 * and rates, the delivery latency of the last interval, paused
 * connections, slow-consumer kicks, and the connections with the most
 * bytes queued (the rows of /debug/conns). docs/dashboard.md has the
 * document's fields.
 *
 * A stream is a normal subscriber: the snapshot is built once per
 * interval, only while a stream is open, and published on a channel of
 * the server's own ("$dashboard", a name no client can subscribe or
 * publish to), so every stream gets it through pub/sub's fan-out under
 * --queue-limit and --slow-policy like any SSE subscriber: a page that
 * stops reading is dropped or disconnected, it cannot make the server
 * hold more. At most max_streams are open; more are answered 503
 * (moor_debug_streams_refused_total).
 */
#ifndef MOOR_DEBUG_STREAM_H
#define MOOR_DEBUG_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include "buf.h"
#include "conn.h"
#include "debug.h"
#include "http_server.h"
#include "pubsub.h"

/* The channel the snapshots are published on: outside
 * channel_name_valid(), so only the server reaches it. */
#define DEBUG_STREAM_CHANNEL "$dashboard"
/* Connections listed in a snapshot's "top" (most bytes queued first). */
#define DEBUG_STREAM_TOP 10
/* The cap of one snapshot's JSON. */
#define DEBUG_STREAM_EVENT_MAX KiB(64)

struct debug_stream_opts {
    uint32_t max_streams;  /* open at once; 0: every request is 503 */
    uint32_t interval_ms;  /* between two snapshots */
    uint32_t heartbeat_ms; /* a quiet stream gets a comment line */
    uint32_t retry_ms;     /* EventSource's reconnect delay (retry:) */
};

struct debug_stream;

/* The feed for the conns of set, publishing on ps (which must outlive
 * it). fn/arg describe a conn for the "top" rows, as for /debug/conns.
 * NULL if memory ran out. */
struct debug_stream *debug_stream_new(struct conn_set *set, struct pubsub *ps,
                                      const struct debug_stream_opts *o,
                                      debug_describe_fn *fn, void *arg);
/* After every stream's conn is closed (the subscribers go with them). */
void debug_stream_free(struct debug_stream *ds);

/* The route handler's work for GET /debug/stream: answers 503 over
 * max_streams, else turns ex's conn into a stream. */
void debug_stream_open(struct debug_stream *ds, struct http_exchange *ex);

/* Shutdown: closes every stream once its queue is written, and stops
 * the snapshots. */
void debug_stream_drain(struct debug_stream *ds);

/* True if c is one of the feed's streams (its role in listings). */
bool debug_stream_owns(const struct conn *c);

/* Streams open now, and requests refused at max_streams since start
 * (for /metrics: moor_debug_streams, moor_debug_streams_refused_total). */
void debug_stream_counts(const struct debug_stream *ds, uint64_t *open,
                         uint64_t *refused);

#endif
