/*
 * pubsub.c - channels, subscriptions, fan-out and the slow-consumer
 * policies; see pubsub.h.
 *
 * Keeps: a channel exists exactly while it has a subscription; every
 * subscription is on its channel's list and its subscriber's list; a
 * publish queues references, never payload copies, and never lets a queue
 * pass queue_limit (docs/principles.md, rule 5): the policy decides what
 * gives.
 * With history, a publish on a client's channel is kept (history.c) and a
 * subscriber that comes back with an id gets a replay that meets the live
 * messages with no gap and no duplicate: a subscribe first fans out what
 * is pending on its channel.
 * Must not: block, or allocate per subscriber on the publish path (the conn's
 * queue ring, allocated when a subscriber's empty queue takes a message
 * and doubled when full, is the only allocation on it; with history a
 * publish also makes its message and its entry, once, whoever listens).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pubsub.h"
#include "history.h"
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
    uint32_t n_kicked;                /* of them, being disconnected */
    uint32_t n_proto[PS_PROTO_COUNT]; /* of them, by protocol */
    struct hchan *hc;                 /* its history (held), or NULL */
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

/* Publishes that follow one another on one channel are framed back to
 * back into one message per protocol and fanned out together: at the end
 * of the loop iteration (conn_set.before_flush), when a publish on another
 * channel comes, or when the batch would pass batch_max bytes. Each
 * subscriber then takes one reference, one queue entry and one iovec for
 * the run instead of one per message, and the socket copies one buffer
 * instead of dozens of small ones. A batch is still one immutable message
 * shared by every subscriber (rule 4). */
#define BATCH_MAX 16384u /* bytes of one protocol's frames in a batch */

/* Per protocol: m[i] holds m[i]->count frames back to back (born_ns the
 * first one's publish time), or is NULL while nobody on ch speaks it: a
 * subscriber that comes mid-batch gets the messages published after it. */
struct batch {
    struct channel *ch;            /* NULL: nothing pending */
    struct msg *m[PS_PROTO_COUNT]; /* unshared until the fan-out */
    uint32_t cap[PS_PROTO_COUNT];  /* room in m[i] (msg_resize) */
    /* The id of m[i]'s first message (a notice before it takes it). */
    char id[PS_PROTO_COUNT][HISTORY_ID_MAX];
    uint8_t id_len[PS_PROTO_COUNT];
};

struct pubsub {
    struct conn_set *set;
    struct pubsub_opts o;
    struct pubsub_stats stats;
    struct channel **buckets;
    uint32_t n_buckets; /* power of two */
    uint32_t batch_max; /* BATCH_MAX, less for a small queue_limit */
    struct batch batch;
    struct history *hist; /* --history-size and --history-ttl, or NULL */
    struct loop *loop;    /* of set: the history's expiry timer */
    struct timer hist_timer;
};

static void batch_discard(struct pubsub *ps);
static void fan_out_cb(void *arg);
static void hist_tick(struct timer *t);

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
    /* At least 8 batches fit in a queue, so drop-oldest stays fine-grained
     * and a batch never outgrows the queue on its own. */
    ps->batch_max = MIN(BATCH_MAX, set->lim.queue_limit / 8);
    ps->n_buckets = MIN_BUCKETS;
    ps->buckets = mem_calloc(MEM_CHANNEL, ps->n_buckets, sizeof(*ps->buckets));
    if (!ps->buckets) {
        mem_free(MEM_CHANNEL, ps);
        return NULL;
    }
    ps->loop = set->loop;
    timer_init(&ps->hist_timer, hist_tick);
    if (o->history_size && o->history_ttl_ms) {
        struct history_opts ho = {.size = o->history_size,
                                  .ttl_ms = o->history_ttl_ms,
                                  .max_bytes = o->history_max_bytes,
                                  .seed = o->history_seed};
        ps->hist = history_new(&ho);
        if (!ps->hist) {
            mem_free(MEM_CHANNEL, ps->buckets);
            mem_free(MEM_CHANNEL, ps);
            return NULL;
        }
    }
    set->before_flush = fan_out_cb;
    set->before_flush_arg = ps;
    return ps;
}

void pubsub_free(struct pubsub *ps)
{
    if (!ps)
        return;
    /* Not ps->set: it may be gone already (serve frees the server, and
     * with it the set, before pub/sub, whose subscribers the closing
     * conns free). */
    batch_discard(ps);
    if (ps->loop)
        timer_cancel(loop_timers(ps->loop), &ps->hist_timer);
    history_free(ps->hist);
    mem_free(MEM_CHANNEL, ps->buckets);
    mem_free(MEM_CHANNEL, ps);
}

const struct history_stats *pubsub_history_stats(const struct pubsub *ps)
{
    return ps->hist ? history_stats(ps->hist) : NULL;
}

/* ---- history ------------------------------------------------------------ */

/* The expiry timer: at the oldest entry's expiry (one timer for all
 * channels: history.h). */
static void hist_arm(struct pubsub *ps)
{
    uint32_t in;

    if (ps->loop && !timer_armed(&ps->hist_timer) &&
        history_next_expiry(ps->hist, loop_now(ps->loop), &in))
        loop_timer_in(ps->loop, &ps->hist_timer, MAX(in, 1u));
}

static void hist_tick(struct timer *t)
{
    struct pubsub *ps = container_of(t, struct pubsub, hist_timer);

    history_expire(ps->hist, loop_now(ps->loop));
    hist_arm(ps);
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
    /* A client's channel keeps its history (and epoch) while subscribed;
     * the server's own ("$dashboard") keep none. */
    if (ps->hist && channel_name_valid((const uint8_t *)name, n)) {
        ch->hc = history_chan(ps->hist, name, n, true);
        if (!ch->hc) {
            mem_free(MEM_CHANNEL, ch);
            *err = -ENOMEM;
            return NULL;
        }
        history_hold(ch->hc);
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
    if (ps->batch.ch == ch)
        batch_discard(ps); /* nobody left to take it */
    for (pp = &ps->buckets[ch->hash & (ps->n_buckets - 1)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == ch) {
            *pp = ch->hnext;
            break;
        }
    }
    ps->stats.channels--;
    if (ch->hc)
        history_release(ps->hist, ch->hc);
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
    u->ch->n_proto[s->proto]--;
    if (s->kicked)
        u->ch->n_kicked--;
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
    if (!channel_name_valid((const uint8_t *)name, n))
        return -EINVAL;
    return pubsub_subscribe_internal(ps, s, name, n);
}

int pubsub_subscribe_internal(struct pubsub *ps, struct subscriber *s,
                              const char *name, size_t n)
{
    struct channel *ch;
    struct sub *u;
    int err = 0;

    if (n == 0 || n > CHANNEL_NAME_MAX)
        return -EINVAL;
    for (u = s->subs; u; u = u->snext)
        if (u->ch->name_len == n && !memcmp(u->ch->name, name, n))
            return 0;
    if (ps->o.max_channels_per_conn &&
        s->n_subs >= ps->o.max_channels_per_conn) {
        ps->stats.refused_channels++;
        return -ENOSPC;
    }
    /* Messages published before the subscribe and not fanned out yet are
     * not for s: they go now, so s gets exactly those after it (and a
     * recovery's replay, which ends at the last publish, meets the live
     * ones with no gap and no duplicate). */
    if (ps->batch.ch && ps->batch.ch->name_len == n &&
        !memcmp(ps->batch.ch->name, name, n))
        pubsub_fan_out(ps);
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
    ch->n_proto[s->proto]++;
    if (s->kicked)
        ch->n_kicked++;
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

/* ---- wire protocols ------------------------------------------------------ */

/* One message (or notice) to frame: its id ("EPOCH:OFFSET" with history,
 * else the publish's number), its channel, an event name for a notice
 * (else NULL), the payload. */
struct wmsg {
    const char *id;
    size_t id_len;
    const char *chan; /* "" for a notice of no channel */
    size_t chan_len;
    const char *event;
    const void *data;
    size_t len;
    bool text;
};

/* What pub/sub needs to know about one wire protocol: how a message is
 * framed, how a drop-oldest notice and a reset notice read, how a slow
 * consumer is let go, whether a delivery pushes back the heartbeat. One
 * entry per enum pubsub_proto in wires[] below: a new protocol is its
 * enum value and its entry, and nothing else in this file branches on
 * the protocol. */
struct wire {
    /* Bytes of one message as a frame; 0 if it has no such frame. */
    size_t (*frame_size)(const struct wmsg *w);
    /* Writes the frame of frame_size() bytes to out (text: WebSocket's
     * opcode). */
    void (*frame_write)(uint8_t *out, size_t size, const struct wmsg *w);
    /* Writes the payload of the notice that `missed` messages were
     * dropped into out[0..cap) and returns its length (snprintf's); NULL
     * if the protocol carries no notice (the count is in the metrics and
     * log). The notice goes as a text frame with event notice_event. */
    int (*notice)(char *out, size_t cap, uint32_t missed);
    const char *notice_event;
    /* The reset notice's payload around body (a JSON object: channel,
     * reason, id), as a text frame with event reset_event. */
    int (*reset)(char *out, size_t cap, const char *body);
    const char *reset_event;
    /* Disconnects a slow consumer, reason CLOSE_SLOW_CONSUMER. */
    void (*kick)(struct conn *c);
    /* True once the conn said goodbye and takes no more messages, beyond
     * conn_is_closing() and conn_is_lingering() (optional). */
    bool (*said_goodbye)(const struct conn *c);
    /* A delivery pushes the heartbeat deadline back (--heartbeat: the
     * protocol's liveness is pub/sub's to keep; WebSocket pings itself). */
    bool heartbeat;
};

static size_t ws_frame_size(const struct wmsg *w)
{
    return ws_header_size(w->len) + w->len;
}

static void ws_frame_write(uint8_t *out, size_t size, const struct wmsg *w)
{
    size_t hl = ws_encode_header(out, w->text ? WS_OP_TEXT : WS_OP_BINARY, true,
                                 w->len, NULL);

    if (w->len)
        memcpy(out + hl, w->data, w->len);
}

static int ws_notice(char *out, size_t cap, uint32_t missed)
{
    return snprintf(out, cap, "{\"moor_dropped\":%u}", missed);
}

static int ws_reset(char *out, size_t cap, const char *body)
{
    return snprintf(out, cap, "{\"moor_reset\":%s}", body);
}

static void ws_kick(struct conn *c)
{
    ws_close_purge(c, WS_CLOSE_POLICY, "slow consumer", CLOSE_SLOW_CONSUMER);
}

static size_t sse_frame_size(const struct wmsg *w)
{
    return sse_event_size_sid(w->id, w->id_len, w->event, w->data, w->len);
}

static void sse_frame_write(uint8_t *out, size_t size, const struct wmsg *w)
{
    sse_encode_event_sid(out, size, w->id, w->id_len, w->event, w->data,
                         w->len);
}

static int sse_notice(char *out, size_t cap, uint32_t missed)
{
    return snprintf(out, cap, "%u", missed);
}

static int plain_reset(char *out, size_t cap, const char *body)
{
    return snprintf(out, cap, "%s", body);
}

static void close_slow(struct conn *c)
{
    conn_close(c, CLOSE_SLOW_CONSUMER);
}

static size_t tcp_frame_size(const struct wmsg *w)
{
    return w->event ? 0 : FRAME_HEADER + w->len;
}

static void tcp_frame_write(uint8_t *out, size_t size, const struct wmsg *w)
{
    frame_encode_header(out, (uint32_t)w->len);
    if (w->len)
        memcpy(out + FRAME_HEADER, w->data, w->len);
}

/* A TCP notice is a frame whose payload starts with a NUL (as the
 * auth notices: docs/auth.md). */
static int tcp_reset(char *out, size_t cap, const char *body)
{
    return snprintf(out, cap, "%c{\"moor_reset\":%s}", '\0', body);
}

/* The id envelope (?ids=1, "SUB ... ids=1"): the payload is preceded by
 * one line, "ID CHANNEL\n" for a message, "EVENT CHANNEL\n" for a notice
 * ("reset room\n", "dropped *\n"); ids never start with a letter past f. */
static size_t env_head_size(const struct wmsg *w)
{
    size_t hl = w->event ? strlen(w->event) : w->id_len;

    return hl + 1 + (w->chan_len ? w->chan_len : 1) + 1;
}

static void env_head_write(uint8_t *o, const struct wmsg *w)
{
    size_t hl = w->event ? strlen(w->event) : w->id_len;

    memcpy(o, w->event ? w->event : w->id, hl);
    o += hl;
    *o++ = ' ';
    if (w->chan_len) {
        memcpy(o, w->chan, w->chan_len);
        o += w->chan_len;
    } else {
        *o++ = '*';
    }
    *o = '\n';
}

static size_t wsid_frame_size(const struct wmsg *w)
{
    size_t n = env_head_size(w) + w->len;

    return ws_header_size(n) + n;
}

static void wsid_frame_write(uint8_t *out, size_t size, const struct wmsg *w)
{
    size_t eh = env_head_size(w);
    size_t hl = ws_encode_header(out, w->text ? WS_OP_TEXT : WS_OP_BINARY, true,
                                 eh + w->len, NULL);

    env_head_write(out + hl, w);
    if (w->len)
        memcpy(out + hl + eh, w->data, w->len);
}

static size_t tcpid_frame_size(const struct wmsg *w)
{
    return FRAME_HEADER + env_head_size(w) + w->len;
}

static void tcpid_frame_write(uint8_t *out, size_t size, const struct wmsg *w)
{
    size_t eh = env_head_size(w);

    frame_encode_header(out, (uint32_t)(eh + w->len));
    env_head_write(out + FRAME_HEADER, w);
    if (w->len)
        memcpy(out + FRAME_HEADER + eh, w->data, w->len);
}

static const struct wire wires[] = {
    [PS_WEBSOCKET] = {.frame_size = ws_frame_size,
                      .frame_write = ws_frame_write,
                      .notice = ws_notice,
                      .reset = ws_reset,
                      .kick = ws_kick,
                      .said_goodbye = ws_close_sent},
    [PS_SSE] = {.frame_size = sse_frame_size,
                .frame_write = sse_frame_write,
                .notice = sse_notice,
                .notice_event = "dropped",
                .reset = plain_reset,
                .reset_event = "reset",
                .kick = close_slow,
                .heartbeat = true},
    /* 4-byte big-endian length + payload; no drop notices. */
    [PS_TCP] = {.frame_size = tcp_frame_size,
                .frame_write = tcp_frame_write,
                .reset = tcp_reset,
                .kick = close_slow,
                .heartbeat = true},
    [PS_WS_IDS] = {.frame_size = wsid_frame_size,
                   .frame_write = wsid_frame_write,
                   .notice = ws_notice,
                   .notice_event = "dropped",
                   .reset = plain_reset,
                   .reset_event = "reset",
                   .kick = ws_kick,
                   .said_goodbye = ws_close_sent},
    [PS_TCP_IDS] = {.frame_size = tcpid_frame_size,
                    .frame_write = tcpid_frame_write,
                    .notice = ws_notice,
                    .notice_event = "dropped",
                    .reset = plain_reset,
                    .reset_event = "reset",
                    .kick = close_slow,
                    .heartbeat = true},
};
_Static_assert(ARRAY_SIZE(wires) == PS_PROTO_COUNT,
               "one wires[] entry per enum pubsub_proto");

/* ---- publishing --------------------------------------------------------- */

/* The message as one protocol's frame, in a message of its own (a
 * notice). NULL if it has no such frame or on allocation failure. */
static struct msg *frame_for(const struct wire *w, const struct wmsg *wm)
{
    size_t size = w->frame_size(wm);
    struct msg *m;

    if (!size)
        return NULL;
    m = msg_new(NULL, size);
    if (m)
        w->frame_write(m->data, size, wm);
    return m;
}

static void kick(struct pubsub *ps, struct subscriber *s, bool soft)
{
    struct conn *c = s->c;
    char peer[64];

    s->kicked = true;
    for (struct sub *u = s->subs; u; u = u->snext)
        u->ch->n_kicked++;
    if (soft)
        ps->stats.soft_disconnects++;
    else
        ps->stats.slow_disconnects++;
    LOG_WARN("slow consumer disconnected",
             "conn=%llu peer=%s queued=%u limit=%s", conn_id(c),
             conn_peer_str(c, peer, sizeof(peer)), conn_queued_bytes(c),
             soft ? "soft" : "hard");
    wires[s->proto].kick(c);
}

#define NOTICE_MAX 64 /* bytes a notice frame takes at most */

/* Tells a drop-oldest subscriber how many messages it missed, if the
 * notice fits in its queue (else the count waits for the next one). id
 * is the next message's number (the notice's SSE id). A protocol with no
 * notice (raw TCP frames) forgets the count: it is in the metrics and
 * log. */
static void send_notice(struct subscriber *s, const char *id, size_t id_len)
{
    const struct wire *w = &wires[s->proto];
    char text[64];
    struct msg *m;
    int n;

    if (!w->notice) {
        s->missed = 0;
        return;
    }
    n = w->notice(text, sizeof(text), s->missed);
    m = frame_for(w, &(struct wmsg){.id = id,
                                    .id_len = id_len,
                                    .chan = "",
                                    .event = w->notice_event,
                                    .data = text,
                                    .len = (size_t)n,
                                    .text = true});
    if (!m)
        return;
    if (conn_send(s->c, m) == 0)
        s->missed = 0;
    msg_unref(m);
}

/* Queues m (m->count published messages, the first numbered id) for s
 * under the slow policy. Returns true if it was queued. */
static bool deliver(struct pubsub *ps, struct subscriber *s, struct msg *m,
                    const char *id, size_t id_len)
{
    struct conn *c = s->c;
    const struct wire *w = &wires[s->proto];
    int rc;

    if (s->kicked || conn_is_closing(c) || conn_is_lingering(c) ||
        (w->said_goodbye && w->said_goodbye(c))) {
        ps->stats.dropped_closing += m->count;
        return false;
    }
    /* Missed messages are told before the next one (if the notice fits).
     * With history the notice carries no id: an SSE client's last id
     * stays that of the last message it got, so a reconnect recovers
     * what was dropped rather than skipping past it. */
    if (ps->hist)
        id_len = 0;
    if (s->missed)
        send_notice(s, id, id_len);
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
                 "conn=%llu peer=%s dropped=%u queued=%u", conn_id(c),
                 conn_peer_str(c, peer, sizeof(peer)), n, conn_queued_bytes(c));
        if (s->missed)
            send_notice(s, id, id_len);
        rc = conn_send(c, m);
        if (rc == -ENOBUFS) {
            /* Still no room (a partly written message holds it): these
             * are the messages dropped. */
            s->missed += m->count;
            ps->stats.dropped_oldest += m->count;
            return false;
        }
    }
    if (rc < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return false;
    }
    ps->stats.delivered += m->count;
    /* A heartbeat is for quiet streams: a delivery pushes it back (lazy
     * re-arm: no timer work). */
    if (w->heartbeat && ps->o.heartbeat_ms)
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

/* ---- batches ------------------------------------------------------------ */

static void batch_discard(struct pubsub *ps)
{
    for (int i = 0; i < PS_PROTO_COUNT; i++)
        msg_unref(ps->batch.m[i]);
    memset(&ps->batch, 0, sizeof(ps->batch));
}

/* Appends the message to the batch of ch, framed for each protocol ch's
 * subscribers speak. Returns 0; -EAGAIN if the batch belongs to another
 * channel or has no room for it (fan it out first); or -ENOMEM with the
 * batch as it was. */
static int batch_add(struct pubsub *ps, struct channel *ch,
                     const struct wmsg *wm)
{
    struct batch *b = &ps->batch;
    size_t size[PS_PROTO_COUNT] = {0};
    uint32_t was[PS_PROTO_COUNT] = {0};
    uint64_t born = 0;
    int i;

    if (b->ch && b->ch != ch)
        return -EAGAIN;
    for (i = 0; i < PS_PROTO_COUNT; i++) {
        if (!ch->n_proto[i])
            continue;
        size[i] = wires[i].frame_size(wm);
        /* A message over batch_max goes alone, in a batch of its own. */
        if (b->m[i] && b->m[i]->len + size[i] > ps->batch_max)
            return -EAGAIN;
    }
    for (i = 0; i < PS_PROTO_COUNT; i++) {
        struct msg *m = b->m[i];
        if (!size[i])
            continue;
        if (!m) {
            m = msg_new(NULL, size[i]);
            if (!m)
                goto fail;
            if (!born)
                born = mono_ns();
            m->len = 0;
            m->count = 0;
            m->born_ns = born;
            b->cap[i] = (uint32_t)size[i];
            memcpy(b->id[i], wm->id, wm->id_len);
            b->id_len[i] = (uint8_t)wm->id_len;
        } else if (m->len + size[i] > b->cap[i]) {
            /* Doubling: a run of n messages costs O(log n) resizes. */
            size_t cap = MIN(MAX((size_t)b->cap[i] * 2, m->len + size[i]),
                             (size_t)ps->batch_max);
            m = msg_resize(m, cap);
            if (!m)
                goto fail;
            b->cap[i] = (uint32_t)cap;
        }
        b->m[i] = m;
        was[i] = m->len;
        wires[i].frame_write(m->data + m->len, size[i], wm);
        m->len += (uint32_t)size[i];
        m->count++;
    }
    if (!b->ch) {
        b->ch = ch;
        conn_set_want_flush(ps->set);
    }
    return 0;
fail:
    /* Take back what this message appended. A frame is never empty, so
     * was 0 means the message was made for it here: it goes. */
    while (i-- > 0) {
        if (!size[i])
            continue;
        if (was[i]) {
            b->m[i]->len = was[i];
            b->m[i]->count--;
        } else {
            msg_unref(b->m[i]);
            b->m[i] = NULL;
        }
    }
    return -ENOMEM;
}

void pubsub_fan_out(struct pubsub *ps)
{
    struct batch b = ps->batch;
    struct channel *ch = b.ch;

    if (!ch)
        return;
    /* The batch is ours now: a delivery may close conns, unsubscribe
     * and free ch (only after its last subscriber), or even publish. */
    memset(&ps->batch, 0, sizeof(ps->batch));
    for (int i = 0; i < PS_PROTO_COUNT; i++) {
        if (b.m[i] && b.cap[i] > b.m[i]->len) {
            struct msg *t = msg_resize(b.m[i], b.m[i]->len); /* trim */
            if (t)
                b.m[i] = t;
        }
    }
    for (struct sub *u = ch->subs, *next; u; u = next) {
        struct subscriber *s = u->s;
        /* A delivery can close the conn and free u (its subscriber's
         * on_close unsubscribes): only u, so next stays valid. */
        next = u->cnext;
        if (b.m[s->proto])
            deliver(ps, s, b.m[s->proto], b.id[s->proto], b.id_len[s->proto]);
    }
    for (int i = 0; i < PS_PROTO_COUNT; i++)
        msg_unref(b.m[i]);
}

static void fan_out_cb(void *arg)
{
    pubsub_fan_out(arg);
}

/* With history: keeps the message in the channel's history (making the
 * history if it has none) and writes its id "EPOCH:OFFSET" to id.
 * Returns the id's length, or 0 when out of memory (nothing kept). */
static size_t keep(struct pubsub *ps, struct channel *ch, const char *name,
                   size_t n, const void *data, size_t len, bool text, char *id)
{
    struct hchan *hc = ch ? ch->hc : history_chan(ps->hist, name, n, true);
    struct msg *m;
    uint64_t off;
    size_t il = 0;

    if (!hc)
        return 0;
    history_hold(hc); /* a new one, or one whose last entry goes now */
    m = msg_new(data, len);
    if (m &&
        history_append(ps->hist, hc, m, text, loop_now(ps->loop), &off) == 0)
        il = history_format_id(id, history_chan_epoch(hc), off);
    msg_unref(m);
    history_release(ps->hist, hc);
    hist_arm(ps);
    return il;
}

long pubsub_publish(struct pubsub *ps, const char *name, size_t n,
                    const void *data, size_t len, bool text)
{
    struct channel *ch = find(ps, name, n, hash_name(name, n));
    char id[HISTORY_ID_MAX];
    struct wmsg wm = {.id = id,
                      .chan = name,
                      .chan_len = n,
                      .data = data,
                      .len = len,
                      .text = text};
    int rc;

    ps->stats.published++;
    ps->stats.seq++;
    if (ps->hist &&
        (ch ? ch->hc != NULL : channel_name_valid((const uint8_t *)name, n))) {
        wm.id_len = keep(ps, ch, name, n, data, len, text, id);
        if (!wm.id_len)
            return -ENOMEM;
    } else {
        wm.id_len = (size_t)snprintf(id, sizeof(id), "%llu",
                                     (unsigned long long)ps->stats.seq);
    }
    if (!ch)
        return 0;
    rc = batch_add(ps, ch, &wm);
    if (rc == -EAGAIN) {
        pubsub_fan_out(ps);
        /* The fan-out may have closed the last subscribers of ch. */
        ch = find(ps, name, n, hash_name(name, n));
        if (!ch)
            return 0;
        rc = batch_add(ps, ch, &wm);
    }
    if (rc < 0)
        return rc;
    return (long)(ch->n_subs - ch->n_kicked);
}

/* ---- recovery ----------------------------------------------------------- */

/* Tells s that what it missed on ch cannot be given (why), with the id to
 * go on from (the channel's last; none without history). */
static void send_reset(struct pubsub *ps, struct subscriber *s,
                       struct channel *ch, enum history_find why)
{
    const struct wire *w = &wires[s->proto];
    char id[HISTORY_ID_MAX] = "", body[CHANNEL_NAME_MAX + 96], text[256];
    size_t il = 0;
    struct msg *m;
    int n;

    if (ch->hc)
        il = history_format_id(id, history_chan_epoch(ch->hc),
                               history_chan_last(ch->hc));
    snprintf(body, sizeof(body),
             "{\"channel\":\"%s\",\"reason\":\"%s\",\"id\":\"%s\"}", ch->name,
             history_find_name(why), id);
    n = w->reset(text, sizeof(text), body);
    if (ps->hist)
        history_stats_mut(ps->hist)->resets[why]++;
    m = frame_for(w, &(struct wmsg){.id = id,
                                    .id_len = il,
                                    .chan = ch->name,
                                    .chan_len = ch->name_len,
                                    .event = w->reset_event,
                                    .data = text,
                                    .len = (size_t)MIN(n, (int)sizeof(text)),
                                    .text = true});
    if (!m) {
        conn_close(s->c, CLOSE_NO_MEMORY);
        return;
    }
    m->count = 0; /* a notice, not a published message */
    deliver(ps, s, m, id, il);
    msg_unref(m);
}

/* Queues count entries from first for s, framed for its protocol in
 * batches (as a live fan-out), through deliver(): the queue limit and the
 * slow policy hold for a replay as for anything else. */
static void replay(struct pubsub *ps, struct subscriber *s, struct channel *ch,
                   const struct hentry *first, uint32_t count)
{
    const struct wire *w = &wires[s->proto];
    struct conn *c = s->c;
    struct msg *m = NULL;
    char id[HISTORY_ID_MAX], id0[HISTORY_ID_MAX];
    size_t id0_len = 0, cap = 0;
    uint64_t epoch = history_chan_epoch(ch->hc);

    for (const struct hentry *e = first; e && count; e = e->cnext, count--) {
        struct wmsg wm = {.id = id,
                          .chan = ch->name,
                          .chan_len = ch->name_len,
                          .data = e->m->data,
                          .len = e->m->len,
                          .text = e->text};
        size_t size;

        wm.id_len = history_format_id(id, epoch, e->off);
        size = w->frame_size(&wm);
        if (m && m->len + size > cap) {
            bool ok = deliver(ps, s, m, id0, id0_len);
            msg_unref(m);
            m = NULL;
            /* A slow consumer let go may be closed already, s and even ch
             * freed with it (the conn itself lives to the end of the
             * iteration): look at c first. */
            if (!ok && (conn_is_closing(c) || s->kicked))
                return;
        }
        if (!m) {
            cap = MAX(size, (size_t)ps->batch_max);
            m = msg_new(NULL, cap);
            if (!m) {
                conn_close(c, CLOSE_NO_MEMORY);
                return;
            }
            m->len = 0;
            m->count = 0;
            /* Set, like a publish's: drop-oldest drops only published
             * messages (never a response head), and a replay is one. Its
             * latency counts from the replay. */
            m->born_ns = mono_ns();
            memcpy(id0, id, wm.id_len);
            id0_len = wm.id_len;
        }
        w->frame_write(m->data + m->len, size, &wm);
        m->len += (uint32_t)size;
        m->count++;
        history_stats_mut(ps->hist)->replayed++;
    }
    if (m) {
        struct msg *t = msg_resize(m, m->len); /* trim */
        if (t)
            m = t;
        deliver(ps, s, m, id0, id0_len);
        msg_unref(m);
    }
}

/* Under the disconnect policy a replay that cannot fit in s's queue at
 * once would only get s let go, again at every reconnect: it gets a reset
 * instead. */
static bool replay_fits(const struct pubsub *ps, const struct subscriber *s,
                        const struct channel *ch, const struct hentry *e,
                        uint32_t count)
{
    const struct wire *w = &wires[s->proto];
    uint64_t room = ps->set->lim.queue_limit, need = 0;
    char id[HISTORY_ID_MAX];

    if (ps->o.policy != SLOW_DISCONNECT)
        return true;
    room = room > conn_queued_bytes(s->c) ? room - conn_queued_bytes(s->c) : 0;
    for (; e && count && need <= room; e = e->cnext, count--) {
        struct wmsg wm = {.id = id,
                          .chan = ch->name,
                          .chan_len = ch->name_len,
                          .data = e->m->data,
                          .len = e->m->len,
                          .text = e->text};

        wm.id_len = history_format_id(id, history_chan_epoch(ch->hc), e->off);
        need += w->frame_size(&wm);
    }
    return need <= room;
}

void pubsub_recover(struct pubsub *ps, struct subscriber *s, const char *name,
                    size_t n, uint64_t epoch, uint64_t off, bool several)
{
    struct channel *ch = find(ps, name, n, hash_name(name, n));
    const struct hentry *first = NULL;
    uint32_t count = 0;
    enum history_find r;
    struct sub *u;

    for (u = s->subs; u && u->ch != ch; u = u->snext)
        ;
    if (!ch || !u || s->kicked)
        return; /* not subscribed to it */
    if (!ps->hist || !ch->hc)
        r = HIST_RESET_OFF;
    else if (several)
        r = HIST_RESET_SEVERAL;
    else
        r = history_since(ch->hc, epoch, off, ps->o.recovery_max, &first,
                          &count);
    if (r == HIST_FOUND && count && !replay_fits(ps, s, ch, first, count))
        r = HIST_RESET_TOO_BIG;
    if (r != HIST_FOUND)
        send_reset(ps, s, ch, r);
    else if (count)
        replay(ps, s, ch, first, count);
}

bool pubsub_history_on(const struct pubsub *ps)
{
    return ps->hist != NULL;
}

long pubsub_channel_subscribers(const struct pubsub *ps, const char *name,
                                size_t n)
{
    const struct channel *ch = find(ps, name, n, hash_name(name, n));

    return ch ? (long)(ch->n_subs - ch->n_kicked) : 0;
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
