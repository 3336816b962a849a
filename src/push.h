/*
 * push.h - the push gateway's endpoints on an HTTP server: subscribe and
 * publish over WebSocket and HTTP, on one loop's pub/sub.
 *
 *   GET  /sub/a,b,c   WebSocket: every message published on a, b or c
 *   GET  /pub/ch      WebSocket: every message received is published on ch
 *   POST /pub/ch      the body is published on ch; 202 {"subscribers":N}
 *
 * A /sub request with "Accept: text/event-stream" gets Server-Sent Events
 * instead: "retry:" first, then one event per message (id: the publish's
 * number on this server), a ": heartbeat" comment after sse_heartbeat of
 * quiet, and for drop-oldest an "event: dropped" whose data is the count.
 * With --history-size and --history-ttl the ids are EPOCH:OFFSET per
 * channel and a subscriber that says what it saw last (SSE Last-Event-ID
 * or ?last_event_id=, WebSocket ?since=, TCP "SUB a since=ID") gets what
 * it missed first, or a reset notice (pubsub_recover()); WebSocket ?ids=1
 * and TCP "ids=1" put each message in the id envelope. Without history a
 * decimal Last-Event-ID is accepted and ids go on from the server's
 * count (docs/pubsub.md, "History and recovery").
 *
 * Channel names: 1-128 of a-z A-Z 0-9 - _ . : @; several in one /sub path
 * separated by commas (a bad name or too many is 400 before the upgrade).
 * Publishers are held to --rate/--burst/--byte-rate (reading pauses while
 * the bucket refills) and stop being read while the process is over
 * --memory-limit; an HTTP publish over it is answered 503.
 */
#ifndef MOOR_PUSH_H
#define MOOR_PUSH_H

#include <stdint.h>
#include "http_server.h"
#include "pubsub.h"
#include "ws_server.h"

struct auth;

struct push_opts {
    struct pubsub_opts pubsub;
    uint64_t max_message;        /* bigger HTTP publish: 413 */
    uint32_t rate;               /* messages/s per publishing conn; 0 = off */
    uint32_t burst;              /* 0 = rate */
    uint64_t byte_rate;          /* bytes/s per publishing conn; 0 = off */
    uint32_t sse_heartbeat_ms;   /* comment line after this much quiet */
    uint32_t sse_retry_ms;       /* the reconnect delay sent to EventSource */
    uint32_t header_timeout_ms;  /* TCP: the command frame within this */
    const char *allowed_origins; /* SSE from a page: CORS (ws.h rules) */
    struct auth *auth; /* who may subscribe and publish (auth.h); NULL or
                          off: everyone. Borrowed: freed after the push */
};

struct push;

/* Creates the loop's pub/sub and adds the routes to http. Returns NULL on
 * allocation failure or a full route table. */
struct tls_ctx;

struct push *push_new(struct http_server *http, struct ws_server *ws,
                      struct conn_set *set, const struct push_opts *o);
/* SIGHUP: new --rate, --burst and --byte-rate, for publishers that
 * start after it (one publishing now keeps its bucket). */
void push_set_rates(struct push *p, uint32_t rate, uint32_t burst,
                    uint64_t byte_rate);
/* Serves the length-prefixed TCP protocol on an accepted fd (takes it):
 * the first frame is "SUB ch1 ch2 ... [since=ID] [ids=1]" or "PUB ch";
 * after SUB every
 * message of those channels arrives as a frame (an empty frame is a
 * heartbeat after sse_heartbeat of quiet); after PUB every frame is
 * published (a publisher also gets an empty frame after sse_heartbeat, so
 * a silent one is kept and a vanished one found). A frame over
 * max_message, a bad command, or a command not sent within header_timeout
 * closes the connection. With tls (not NULL) the frames travel inside
 * TLS: the handshake comes first, within handshake_ms, and the command's
 * header_timeout starts once it is done. */
void push_tcp_accept(struct push *p, int fd, struct tls_ctx *tls,
                     uint32_t handshake_ms);

/* Shutdown: closes every event stream (the conn set's other protocols
 * drain themselves). */
void push_drain(struct push *p);
/* After every conn is closed. */
void push_free(struct push *p);
/* auth.h's auth_expire_fn for the push's connections (arg: the push):
 * WebSocket close 4001 "token expired", SSE "event: expired" then close,
 * TCP a last frame "\0token expired" then close. */
void push_token_expired(struct conn *c, void *arg);
const struct pubsub *push_pubsub(const struct push *p);
/* For /debug/conns (a debug_describe_fn; arg is the push): a conn's role
 * ("subscriber", "publisher" or ""), its channels and its token's
 * subject. */
const char *push_describe(void *arg, struct conn *c, char *channels, size_t cap,
                          const char **sub);

#endif
