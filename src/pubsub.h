/*
 * pubsub.h - channels, subscriptions and fan-out with bounded queues
 * (docs/principles.md, rules 4, 5 and 6). One struct pubsub per loop.
 *
 * A publish frames its payload once per protocol that has subscribers on
 * the channel (WebSocket, SSE, length-prefixed TCP), appended to that
 * protocol's batch: one immutable refcounted message holding a run of
 * publishes on one channel; every subscriber's queue takes a reference to
 * it. Payload bytes are never copied per subscriber.
 *
 * Every subscriber's queue is bounded by the conn set's queue_limit. When
 * a message does not fit, the slow policy applies: disconnect (WebSocket
 * close 1008 "slow consumer"; other protocols just close) or drop-oldest
 * (the oldest messages not yet started are dropped, counted, and the
 * subscriber gets a notice saying how many before the next message). A
 * queue over soft_limit for longer than soft_time is disconnected too
 * (Redis's client-output-buffer-limit pubsub hard soft seconds).
 *
 * A channel exists while it has subscribers: created by the first
 * subscribe, freed by the last unsubscribe (tag MEM_CHANNEL).
 *
 * With history (history_size and history_ttl_ms, history.h) every publish
 * on a client's channel is also kept in that channel's history, whether
 * or not anyone listens, and its id is "EPOCH:OFFSET" (else the publish's
 * number). A subscriber that names the last id it saw (pubsub_recover)
 * gets the messages after it first, then the live ones, or a reset notice
 * saying why it cannot (docs/pubsub.md, "History and recovery").
 */
#ifndef MOOR_PUBSUB_H
#define MOOR_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "conn.h"
#include "frame.h" /* channel_name_valid(), CHANNEL_NAME_MAX */

enum pubsub_proto {
    PS_WEBSOCKET = 0,
    PS_SSE,
    PS_TCP,     /* 4-byte big-endian length + payload */
    PS_WS_IDS,  /* WebSocket, each message in the id envelope (?ids=1) */
    PS_TCP_IDS, /* TCP frames, each message in the id envelope (ids=1) */
    PS_PROTO_COUNT
};

enum slow_policy {
    SLOW_DISCONNECT = 0,
    SLOW_DROP_OLDEST,
};

struct pubsub_opts {
    uint32_t max_channels;          /* channels in total (0 = no limit) */
    uint32_t max_channels_per_conn; /* subscriptions per conn */
    uint32_t soft_limit;            /* queued bytes; 0 = no soft limit */
    uint32_t soft_time_ms;          /* held over soft_limit this long */
    uint32_t close_timeout_ms;      /* for the goodbye frame */
    uint32_t heartbeat_ms;          /* SSE/TCP: a delivery moves the
                                       heartbeat deadline this far */
    enum slow_policy policy;
    uint32_t history_size;      /* messages kept per channel; 0: off */
    uint32_t history_ttl_ms;    /* how long; 0: off */
    uint64_t history_max_bytes; /* over all channels; 0: no limit */
    uint32_t recovery_max;      /* messages one recovery replays at most */
    uint64_t history_seed;      /* epochs' seed; 0: from the kernel */
};

struct pubsub_stats {
    uint64_t published;        /* messages published (any reach) */
    uint64_t delivered;        /* queued to a subscriber */
    uint64_t dropped_oldest;   /* dropped by drop-oldest */
    uint64_t dropped_closing;  /* subscriber already closing */
    uint64_t slow_disconnects; /* hard limit (disconnect policy) */
    uint64_t soft_disconnects; /* over the soft limit too long */
    uint64_t refused_channels; /* subscribe over a channel limit */
    int64_t channels;          /* gauge */
    int64_t subscriptions;     /* gauge: (conn, channel) pairs */
    int64_t subscribers;       /* gauge: conns with a subscription */
    uint32_t max_queued;       /* largest queue seen at a publish */
    uint64_t seq;              /* the last publish's number: SSE ids */
};

struct pubsub;
struct subscriber;

/* Returns pub/sub for the conns of set, which it takes as set's
 * before_flush (its fan-out), or NULL. */
struct pubsub *pubsub_new(struct conn_set *set, const struct pubsub_opts *o);
/* Every subscriber must be gone (pubsub_subscriber_free), and set must run
 * no more iterations (its before_flush still points here). */
void pubsub_free(struct pubsub *ps);
const struct pubsub_stats *pubsub_stats(const struct pubsub *ps);

/* The pub/sub side of one conn (allocated when it first subscribes). */
struct subscriber *pubsub_subscriber_new(struct pubsub *ps, struct conn *c,
                                         enum pubsub_proto proto);
/* Unsubscribes from everything and frees s. */
void pubsub_subscriber_free(struct pubsub *ps, struct subscriber *s);

/* Subscribes s to the channel name[0..n). Returns 0 (also if already
 * subscribed), -EINVAL (bad name), -ENOSPC (a channel limit; counted), or
 * -ENOMEM. */
int pubsub_subscribe(struct pubsub *ps, struct subscriber *s, const char *name,
                     size_t n);
/* pubsub_subscribe() without the check of the name's characters, for a
 * channel of the server's own: a name outside channel_name_valid() (say
 * "$dashboard") that no client can subscribe or publish to, since /sub,
 * /pub and the TCP commands all check names. 1 to CHANNEL_NAME_MAX bytes. */
int pubsub_subscribe_internal(struct pubsub *ps, struct subscriber *s,
                              const char *name, size_t n);
/* Subscribes to each name of a comma-separated list ("a,b,c"); all or
 * none. Same returns; *bad (may be NULL) gets the reason for an error. */
int pubsub_subscribe_list(struct pubsub *ps, struct subscriber *s,
                          const char *list, size_t n, const char **bad);

/* Publishes data[0..len) on the channel (text: a WebSocket text frame).
 * The message is framed now and fanned out with the ones published on
 * the same channel just before and after it: at the end of the loop
 * iteration (the conn set's before_flush, before any of it is written),
 * or sooner when a publish on another channel comes (so every
 * subscriber gets messages in publish order) or the batch is full.
 * Returns the number of local subscribers it goes to (the channel's,
 * less those being disconnected as slow), or -ENOMEM. A channel nobody
 * listens to is not created. */
long pubsub_publish(struct pubsub *ps, const char *name, size_t n,
                    const void *data, size_t len, bool text);
/* Recovery, right after s subscribed to the channel name[0..n): s last
 * saw epoch:off there (0:0 for an id that is not one: a reset). The
 * messages after it are queued for s now, in order, before any later
 * publish (subscribing fanned out what was pending on the channel), or,
 * if the history cannot give them all (another epoch, too old, more than
 * recovery_max, several: the id was given for several channels, or no
 * history), a reset notice: SSE "event: reset", a WebSocket text
 * {"moor_reset":{...}}, a TCP frame "\0{"moor_reset":{...}}", or in the
 * id envelope "reset CHANNEL\n{...}". Queued under the slow policy, which
 * may close the conn: then s is freed, and the caller must not use it
 * again (check conn_is_closing() on the conn first). */
void pubsub_recover(struct pubsub *ps, struct subscriber *s, const char *name,
                    size_t n, uint64_t epoch, uint64_t off, bool several);
/* True when history is kept. */
bool pubsub_history_on(const struct pubsub *ps);
/* The history's counters and gauges, or NULL without history. */
struct history_stats;
const struct history_stats *pubsub_history_stats(const struct pubsub *ps);

/* Fans out the pending batch now (the loop does it at the end of each
 * iteration; tests and callers that need delivery at once call it). */
void pubsub_fan_out(struct pubsub *ps);

/* Subscribers of the channel name[0..n) right now (those being
 * disconnected as slow excluded); 0 if nobody listens. */
long pubsub_channel_subscribers(const struct pubsub *ps, const char *name,
                                size_t n);

/* Counts a subscription refused before it reached pub/sub (a request
 * naming more channels than max_channels_per_conn, or a bad name). */
void pubsub_note_refused(struct pubsub *ps);

/* The subscriber's queue drained (resets the soft-limit clock). */
void pubsub_subscriber_drained(struct pubsub *ps, struct subscriber *s);

/* Channels s is subscribed to, written as "a,b" into out (for listings). */
size_t pubsub_subscriber_channels(const struct subscriber *s, char *out,
                                  size_t cap);

#endif
