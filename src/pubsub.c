/*
 * pubsub.c - channels, subscriptions, fan-out and the slow-consumer
 * policies; see pubsub.h.
 *
 * Keeps: a channel exists exactly while it has a subscription; every
 * subscription is on its channel's list and its subscriber's list; a
 * publish queues references, never payload copies, and never lets a queue
 * pass queue_limit (invariant 5): the policy decides what gives.
 * Must not: block, or allocate per subscriber on the publish path (conn.c's
 * queue ring, allocated when a subscriber's empty queue takes a message
 * and doubled when full, is the only allocation on it).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pubsub.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "util.h"
#include "sse.h"
#include "ws.h"
#include "ws_server.h"

struct sub {
    struct sub *cnext, **cprev; /* on the channel's list */
    struct sub *snext;          /* on the subscriber's list */
    struct channel *ch;
    struct subscriber *s;
};

struct channel {
    struct channel *hnext; /* hash chain */
    struct sub *subs;
    uint32_t n_subs;
    uint32_t hash;
    uint16_t name_len;
    char name[]; /* NUL-terminated */
};

struct subscriber {
    struct conn *c;
    struct sub *subs;
    uint32_t n_subs;
    uint32_t missed;     /* dropped since the last notice */
    uint32_t soft_since; /* tick the queue went over soft_limit, or 0 */
    uint8_t proto;       /* enum pubsub_proto */
    bool kicked;         /* disconnected as slow: deliver nothing more */
};

#define MIN_BUCKETS 64 /* the channel table never shrinks below this */

struct pubsub {
    struct conn_set *set;
    struct pubsub_opts o;
    struct pubsub_stats stats;
    struct channel **buckets;
    uint32_t n_buckets; /* power of two */
};

static uint32_t hash_name(const char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    return h;
}

struct pubsub *pubsub_new(struct conn_set *set, const struct pubsub_opts *o)
{
    struct pubsub *ps = mem_calloc(MEM_CHANNEL, 1, sizeof(*ps));

    if (!ps)
        return NULL;
    ps->set = set;
    ps->o = *o;
    ps->n_buckets = MIN_BUCKETS;
    ps->buckets = mem_calloc(MEM_CHANNEL, ps->n_buckets, sizeof(*ps->buckets));
    if (!ps->buckets) {
        mem_free(MEM_CHANNEL, ps);
        return NULL;
    }
    return ps;
}

void pubsub_free(struct pubsub *ps)
{
    if (!ps)
        return;
    mem_free(MEM_CHANNEL, ps->buckets);
    mem_free(MEM_CHANNEL, ps);
}

const struct pubsub_stats *pubsub_stats(const struct pubsub *ps)
{
    return &ps->stats;
}

/* ---- channels ----------------------------------------------------------- */

static struct channel *find(const struct pubsub *ps, const char *name, size_t n,
                            uint32_t h)
{
    struct channel *ch = ps->buckets[h & (ps->n_buckets - 1)];

    for (; ch; ch = ch->hnext)
        if (ch->hash == h && ch->name_len == n && !memcmp(ch->name, name, n))
            return ch;
    return NULL;
}

/* Doubles the table when channels outnumber buckets, and halves it when
 * they fall under a quarter of them (so churn leaves no grown table
 * behind). Best effort: a failed resize keeps the old table. */
static void maybe_resize(struct pubsub *ps)
{
    uint32_t nb;
    struct channel **t;

    if ((uint64_t)ps->stats.channels > ps->n_buckets)
        nb = ps->n_buckets * 2;
    else if (ps->n_buckets > MIN_BUCKETS &&
             (uint64_t)ps->stats.channels < ps->n_buckets / 4)
        nb = ps->n_buckets / 2;
    else
        return;
    if (nb == 0)
        return;
    t = mem_calloc(MEM_CHANNEL, nb, sizeof(*t));
    if (!t)
        return;
    for (uint32_t i = 0; i < ps->n_buckets; i++) {
        struct channel *ch, *next;
        for (ch = ps->buckets[i]; ch; ch = next) {
            next = ch->hnext;
            ch->hnext = t[ch->hash & (nb - 1)];
            t[ch->hash & (nb - 1)] = ch;
        }
    }
    mem_free(MEM_CHANNEL, ps->buckets);
    ps->buckets = t;
    ps->n_buckets = nb;
}

static struct channel *channel_get(struct pubsub *ps, const char *name,
                                   size_t n, int *err)
{
    uint32_t h = hash_name(name, n);
    struct channel *ch = find(ps, name, n, h);
    struct channel **b;

    if (ch)
        return ch;
    if (ps->o.max_channels &&
        (uint64_t)ps->stats.channels >= ps->o.max_channels) {
        *err = -ENOSPC;
        return NULL;
    }
    ch = mem_calloc(MEM_CHANNEL, 1, sizeof(*ch) + n + 1);
    if (!ch) {
        *err = -ENOMEM;
        return NULL;
    }
    ch->hash = h;
    ch->name_len = (uint16_t)n;
    memcpy(ch->name, name, n);
    b = &ps->buckets[h & (ps->n_buckets - 1)];
    ch->hnext = *b;
    *b = ch;
    ps->stats.channels++;
    maybe_resize(ps);
    return ch;
}

static void channel_release(struct pubsub *ps, struct channel *ch)
{
    struct channel **pp;

    if (ch->subs)
        return;
    for (pp = &ps->buckets[ch->hash & (ps->n_buckets - 1)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == ch) {
            *pp = ch->hnext;
            break;
        }
    }
    ps->stats.channels--;
    mem_free(MEM_CHANNEL, ch);
    maybe_resize(ps);
}

/* ---- subscribers ------------------------------------------------------- */

struct subscriber *pubsub_subscriber_new(struct pubsub *ps, struct conn *c,
                                         enum pubsub_proto proto)
{
    struct subscriber *s = mem_calloc(MEM_CHANNEL, 1, sizeof(*s));

    (void)ps;
    if (!s)
        return NULL;
    s->c = c;
    s->proto = (uint8_t)proto;
    return s;
}

/* Removes s's most recent subscription (the head of its list), freeing
 * the channel if it was its last subscriber. */
static void unsubscribe_newest(struct pubsub *ps, struct subscriber *s)
{
    struct sub *u = s->subs;

    s->subs = u->snext;
    *u->cprev = u->cnext;
    if (u->cnext)
        u->cnext->cprev = u->cprev;
    u->ch->n_subs--;
    ps->stats.subscriptions--;
    channel_release(ps, u->ch);
    mem_free(MEM_CHANNEL, u);
    if (--s->n_subs == 0)
        ps->stats.subscribers--;
}

void pubsub_subscriber_free(struct pubsub *ps, struct subscriber *s)
{
    if (!s)
        return;
    while (s->subs)
        unsubscribe_newest(ps, s);
    mem_free(MEM_CHANNEL, s);
}

int pubsub_subscribe(struct pubsub *ps, struct subscriber *s, const char *name,
                     size_t n)
{
    struct channel *ch;
    struct sub *u;
    int err = 0;

    if (!channel_name_valid((const uint8_t *)name, n))
        return -EINVAL;
    for (u = s->subs; u; u = u->snext)
        if (u->ch->name_len == n && !memcmp(u->ch->name, name, n))
            return 0;
    if (ps->o.max_channels_per_conn &&
        s->n_subs >= ps->o.max_channels_per_conn) {
        ps->stats.refused_channels++;
        return -ENOSPC;
    }
    u = mem_calloc(MEM_CHANNEL, 1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    ch = channel_get(ps, name, n, &err);
    if (!ch) {
        mem_free(MEM_CHANNEL, u);
        if (err == -ENOSPC)
            ps->stats.refused_channels++;
        return err;
    }
    u->ch = ch;
    u->s = s;
    u->cnext = ch->subs;
    if (ch->subs)
        ch->subs->cprev = &u->cnext;
    u->cprev = &ch->subs;
    ch->subs = u;
    ch->n_subs++;
    u->snext = s->subs;
    s->subs = u;
    if (s->n_subs++ == 0)
        ps->stats.subscribers++;
    ps->stats.subscriptions++;
    return 0;
}

int pubsub_subscribe_list(struct pubsub *ps, struct subscriber *s,
                          const char *list, size_t n, const char **bad)
{
    uint32_t before = s->n_subs;
    size_t a = 0;
    int rc = 0;

    if (n == 0) {
        if (bad)
            *bad = "no channel named";
        return -EINVAL;
    }
    while (a <= n) {
        size_t b = a;
        while (b < n && list[b] != ',')
            b++;
        rc = pubsub_subscribe(ps, s, list + a, b - a);
        if (rc < 0)
            break;
        a = b + 1;
    }
    if (rc < 0) {
        if (bad)
            *bad = rc == -EINVAL   ? "bad channel name (1-128 of a-z A-Z 0-9 "
                                     "- _ . : @)"
                   : rc == -ENOSPC ? "too many channels"
                                   : "out of memory";
        /* All or none: undo what this list subscribed (new ones are at
         * the head of s->subs). */
        while (s->subs && s->n_subs > before)
            unsubscribe_newest(ps, s);
    }
    return rc;
}

size_t pubsub_subscriber_channels(const struct subscriber *s, char *out,
                                  size_t cap)
{
    size_t off = 0;

    if (cap)
        out[0] = '\0';
    for (const struct sub *u = s->subs; u && off + 1 < cap; u = u->snext) {
        int k =
            snprintf(out + off, cap - off, "%s%s", off ? "," : "", u->ch->name);
        if (k < 0)
            break;
        off += (size_t)k;
    }
    return MIN(off, cap ? cap - 1 : 0);
}

/* ---- publishing --------------------------------------------------------- */

/* The message as one protocol's frame: built once per publish. id is the
 * publish's number (SSE's event id); event an SSE event name or NULL. */
static struct msg *frame_for(enum pubsub_proto proto, uint64_t id,
                             const char *event, const void *data, size_t len,
                             bool text)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hl;
    struct msg *m;

    switch (proto) {
    case PS_TCP:
        if (event)
            return NULL; /* no notices on raw frames */
        m = msg_new(NULL, FRAME_HEADER + len);
        if (!m)
            return NULL;
        frame_encode_header(m->data, (uint32_t)len);
        if (len)
            memcpy(m->data + FRAME_HEADER, data, len);
        return m;
    case PS_SSE:
        hl = sse_event_size(id, event, data, len);
        m = msg_new(NULL, hl);
        if (!m)
            return NULL;
        sse_encode_event(m->data, hl, id, event, data, len);
        return m;
    case PS_WEBSOCKET:
    default:
        hl = ws_encode_header(hdr, text ? WS_OP_TEXT : WS_OP_BINARY, true, len,
                              NULL);
        m = msg_new(NULL, hl + len);
        if (!m)
            return NULL;
        memcpy(m->data, hdr, hl);
        if (len)
            memcpy(m->data + hl, data, len);
        return m;
    }
}

static void kick(struct pubsub *ps, struct subscriber *s, bool soft)
{
    struct conn *c = s->c;
    char peer[64];

    s->kicked = true;
    if (soft)
        ps->stats.soft_disconnects++;
    else
        ps->stats.slow_disconnects++;
    LOG_WARN("slow consumer disconnected",
             "conn=%llu peer=%s queued=%u limit=%s", (unsigned long long)c->id,
             conn_peer_str(c, peer, sizeof(peer)), conn_queued_bytes(c),
             soft ? "soft" : "hard");
    switch ((enum pubsub_proto)s->proto) {
    case PS_SSE:
    case PS_TCP:
        conn_close(c, CLOSE_SLOW_CONSUMER);
        break;
    case PS_WEBSOCKET:
    default:
        ws_close_purge(c, WS_CLOSE_POLICY, "slow consumer",
                       CLOSE_SLOW_CONSUMER);
        break;
    }
}

#define NOTICE_MAX 64 /* bytes a notice frame takes at most */

/* Tells a drop-oldest subscriber how many messages it missed, if the
 * notice fits in its queue (else the count waits for the next one).
 * Raw TCP frames carry no notice: the count is in the metrics and log. */
static void send_notice(struct pubsub *ps, struct subscriber *s)
{
    char text[64];
    struct msg *m;
    int n;

    if (s->proto == PS_TCP) {
        s->missed = 0;
        return;
    }
    n = s->proto == PS_SSE
            ? snprintf(text, sizeof(text), "%u", s->missed)
            : snprintf(text, sizeof(text), "{\"moor_dropped\":%u}", s->missed);
    m = frame_for((enum pubsub_proto)s->proto, ps->stats.seq,
                  s->proto == PS_SSE ? "dropped" : NULL, text, (size_t)n, true);
    if (!m)
        return;
    if (conn_send(s->c, m) == 0)
        s->missed = 0;
    msg_unref(m);
}

static bool deliver(struct pubsub *ps, struct subscriber *s, struct msg *m)
{
    struct conn *c = s->c;
    int rc;

    if (s->kicked || conn_is_closing(c) || (c->flags & CONN_LINGER) ||
        (s->proto == PS_WEBSOCKET && ws_close_sent(c))) {
        ps->stats.dropped_closing++;
        return false;
    }
    /* Missed messages are told before the next one (if the notice fits). */
    if (s->missed)
        send_notice(ps, s);
    rc = conn_send(c, m);
    if (rc == -ENOBUFS) {
        uint32_t n;
        char peer[64];
        if (ps->o.policy == SLOW_DISCONNECT) {
            kick(ps, s, false);
            return false;
        }
        n = conn_queue_drop_oldest(c, m->len + NOTICE_MAX);
        s->missed += n;
        ps->stats.dropped_oldest += n;
        LOG_WARN("messages dropped (drop-oldest)",
                 "conn=%llu peer=%s dropped=%u queued=%u",
                 (unsigned long long)c->id,
                 conn_peer_str(c, peer, sizeof(peer)), n, conn_queued_bytes(c));
        if (s->missed)
            send_notice(ps, s);
        rc = conn_send(c, m);
        if (rc == -ENOBUFS) {
            /* Still no room (a partly written message holds it): this
             * one is the message dropped. */
            s->missed++;
            ps->stats.dropped_oldest++;
            return false;
        }
    }
    if (rc < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return false;
    }
    ps->stats.delivered++;
    /* A heartbeat is for quiet streams: a delivery pushes it back (lazy
     * re-arm: no timer work). */
    if (s->proto != PS_WEBSOCKET && ps->o.heartbeat_ms)
        conn_set_read_deadline(c, ps->o.heartbeat_ms, CLOSE_IDLE_TIMEOUT);
    if (conn_queued_bytes(c) > ps->stats.max_queued)
        ps->stats.max_queued = conn_queued_bytes(c);
    if (ps->o.soft_limit && conn_queued_bytes(c) > ps->o.soft_limit) {
        uint32_t now = loop_now(conn_loop(c));
        if (!s->soft_since)
            s->soft_since = now;
        else if (now - s->soft_since >= ps->o.soft_time_ms)
            kick(ps, s, true);
    } else {
        s->soft_since = 0;
    }
    return true;
}

long pubsub_publish(struct pubsub *ps, const char *name, size_t n,
                    const void *data, size_t len, bool text)
{
    struct channel *ch = find(ps, name, n, hash_name(name, n));
    struct msg *framed[PS_PROTO_COUNT] = {0};
    long reached = 0;
    struct timespec ts;
    uint64_t born;

    ps->stats.published++;
    ps->stats.seq++;
    if (!ch)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    born = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (struct sub *u = ch->subs, *next; u; u = next) {
        struct subscriber *s = u->s;
        /* A delivery can close the conn and free u (its subscriber's
         * on_close unsubscribes): only u, so next stays valid. */
        next = u->cnext;
        struct msg **m = &framed[s->proto];
        if (!*m) {
            *m = frame_for((enum pubsub_proto)s->proto, ps->stats.seq, NULL,
                           data, len, text);
            if (!*m) {
                reached = -ENOMEM;
                break;
            }
            (*m)->born_ns = born;
        }
        if (deliver(ps, s, *m))
            reached++;
    }
    for (int i = 0; i < PS_PROTO_COUNT; i++)
        msg_unref(framed[i]);
    return reached;
}

void pubsub_note_refused(struct pubsub *ps)
{
    ps->stats.refused_channels++;
}

void pubsub_subscriber_drained(struct pubsub *ps, struct subscriber *s)
{
    (void)ps;
    s->soft_since = 0;
}
