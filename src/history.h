/*
 * history.h - the last messages of each channel, kept so that a
 * subscriber that comes back can get what it missed (--history-size,
 * --history-ttl, --history-max-bytes; docs/pubsub.md, "History and
 * recovery"). One struct history per pub/sub (per loop).
 *
 * A channel's history (struct hchan) is a run of entries with offsets
 * that follow one another (no hole): each entry holds a reference to the
 * published message (struct msg, refcounted: the payload is never copied
 * for the history) and the tick it was published. Every message of a
 * channel gets the id EPOCH:OFFSET: OFFSET counts the channel's publishes
 * from 1; EPOCH is drawn when the channel's history is created (from the
 * process's seed), so a history lost (a restart, or expired and made
 * again) never reuses an id with another meaning. Ids are text: EPOCH is
 * 1 to 16 lower-case hex digits, OFFSET 1 to 20 decimal digits. The same
 * pair (an epoch per channel and an offset that grows) is what a shared
 * store (a Redis stream per channel) keeps, so ids keep their meaning when
 * history moves off the node.
 *
 * Entries leave oldest first, for three reasons, each counted: size (a
 * channel over --history-size), ttl (older than --history-ttl) and bytes
 * (all channels over --history-max-bytes). Every entry of every channel
 * is also on one list in publish order: since one TTL holds for all,
 * the oldest entry overall is the first to expire and the first to go for
 * bytes, and it is always its channel's oldest too. So expiry is a look
 * at the head of that list (the caller keeps one timer at
 * history_next_expiry()), never a walk over channels.
 *
 * A channel's history lives while it has entries or users (a channel
 * with subscribers holds it: history_hold), so an idle channel nobody
 * listens to keeps its messages for the TTL and is then freed.
 *
 * Memory: entries, channel records and their table under the history tag
 * (MEM_HISTORY), so it is 0 when nothing is kept (the struct history
 * itself is pub/sub's, MEM_CHANNEL); the messages stay under the msg tag, and
 * moor_history_bytes counts both (what --history-max-bytes bounds). No global
 * state: the caller passes the time (loop ticks, ms).
 */
#ifndef MOOR_HISTORY_H
#define MOOR_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg;

/* "EPOCH:OFFSET" at most: 16 + 1 + 20 bytes, and a NUL. */
#define HISTORY_ID_MAX 38

enum history_evict {
    HIST_EVICT_SIZE = 0, /* over --history-size in its channel */
    HIST_EVICT_TTL,      /* older than --history-ttl */
    HIST_EVICT_BYTES,    /* over --history-max-bytes in total */
    HIST_EVICT_COUNT
};

/* What history_since() finds for an id (and why a recovery fails: the
 * reason of the subscriber's reset notice). */
enum history_find {
    HIST_FOUND = 0,      /* the messages after the id are all here */
    HIST_RESET_EPOCH,    /* another epoch (history lost), or an offset
                            past the last one: the id means nothing here */
    HIST_RESET_TOO_OLD,  /* messages after the id are gone already */
    HIST_RESET_TOO_MANY, /* more missed than --recovery-max */
    HIST_RESET_SEVERAL,  /* one id for several channels (pub/sub's) */
    HIST_RESET_TOO_BIG,  /* more bytes than the subscriber's queue takes
                            (pub/sub's, under --slow-policy disconnect) */
    HIST_RESET_OFF,      /* no history kept (pub/sub's) */
    HIST_FIND_COUNT
};

struct history_opts {
    uint32_t size;      /* messages per channel (> 0) */
    uint32_t ttl_ms;    /* how long each is kept (> 0) */
    uint64_t max_bytes; /* over all channels; 0 = no limit */
    uint64_t seed;      /* epochs are drawn from it; 0: from the kernel */
};

struct history_stats {
    int64_t messages; /* gauge: entries held */
    int64_t bytes;    /* gauge: entries, channel records and messages */
    int64_t channels; /* gauge: channel histories */
    uint64_t evicted[HIST_EVICT_COUNT];
    uint64_t replayed;                /* messages replayed to subscribers */
    uint64_t resets[HIST_FIND_COUNT]; /* [0] unused */
};

struct hentry {
    struct hentry *gprev, *gnext; /* every entry, in publish order */
    struct hentry *cnext;         /* its channel's next (newer) */
    struct hchan *hc;
    uint64_t off;
    struct msg *m; /* a reference */
    uint32_t at;   /* tick of the publish */
    bool text;     /* a text payload (WebSocket's opcode) */
};

struct history;
struct hchan;

/* Returns a history, or NULL (out of memory). */
struct history *history_new(const struct history_opts *o);
/* Frees every channel and entry (drops every message reference). */
void history_free(struct history *h);
const struct history_stats *history_stats(const struct history *h);
struct history_stats *history_stats_mut(struct history *h);

/* The history of the channel name[0..n): the one there is, else (create)
 * a new one with a new epoch and no entries, or NULL (none, or out of
 * memory). A new one with no user is freed by the next expiry or release:
 * hold it, or append to it, at once. */
struct hchan *history_chan(struct history *h, const char *name, size_t n,
                           bool create);
/* A user (a channel with subscribers, or a publish under way) keeps hc
 * alive, entries or not; the release of the last user of a channel with
 * no entries frees it. */
void history_hold(struct hchan *hc);
void history_release(struct history *h, struct hchan *hc);

/* Appends message m (a new reference is taken) to hc, published at tick
 * now: *off gets its offset. Then evicts by size and bytes (possibly m
 * itself, if it alone is over max_bytes). Returns 0 or -ENOMEM (nothing
 * changed, no offset used). */
int history_append(struct history *h, struct hchan *hc, struct msg *m,
                   bool text, uint32_t now, uint64_t *off);
/* Drops the entries older than the TTL at tick now (and the channels
 * left with no entry and no user). Returns how many went. */
uint32_t history_expire(struct history *h, uint32_t now);
/* True, and *in_ms the ms from now until the oldest entry expires (0 if
 * it has), when there is an entry at all. */
bool history_next_expiry(const struct history *h, uint32_t now,
                         uint32_t *in_ms);

uint64_t history_chan_epoch(const struct hchan *hc);
/* The last offset given (0: none yet). */
uint64_t history_chan_last(const struct hchan *hc);
/* Entries held in hc. */
uint32_t history_chan_count(const struct hchan *hc);

/* What a subscriber that last saw epoch:off (on this channel) missed:
 * HIST_FOUND with *first the first entry after it (NULL: nothing
 * missed) and *count entries from it (follow cnext), or why not (hc may
 * be NULL: no history, HIST_RESET_EPOCH). At most max (0: no limit). */
enum history_find history_since(const struct hchan *hc, uint64_t epoch,
                                uint64_t off, uint32_t max,
                                const struct hentry **first, uint32_t *count);

/* Writes "EPOCH:OFFSET" and a NUL to out[HISTORY_ID_MAX]; returns its
 * length. */
size_t history_format_id(char *out, uint64_t epoch, uint64_t off);
/* Parses p[0..n) as EPOCH:OFFSET (hex digits in either case). Returns
 * false for anything else (an empty part, another byte, overflow). */
bool history_parse_id(const char *p, size_t n, uint64_t *epoch, uint64_t *off);
/* "size", "ttl", "bytes". */
const char *history_evict_name(enum history_evict r);
/* "epoch", "too_old", "too_many", "several", "too_big", "off". */
const char *history_find_name(enum history_find r);

#endif
