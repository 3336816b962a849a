/*
 * debug_stream.c - GET /debug/stream, the /dashboard feed; see
 * debug_stream.h.
 *
 * Keeps: one snapshot per interval, built only while a stream is open
 * (the timer is armed by the first stream and not re-armed once the last
 * is gone); the snapshot goes out through pub/sub like any publish, so a
 * stream's queue is bounded by --queue-limit and a stalled page meets
 * --slow-policy (docs/principles.md, rule 5); at most max_streams open.
 * The snapshot's totals leave out the feed's own publishes, deliveries,
 * channel and subscribers, so an open page does not show itself as
 * traffic (the delivery latency cannot tell them apart: it counts them).
 * Must not: allocate per stream beyond its pub/sub subscriber, hold the
 * snapshot past the publish, or close a conn while walking the set.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "debug_stream.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "sse.h"
#include "util.h"

/* What the rates and the latency of the next snapshot are measured
 * against: the counters as the last snapshot saw them. */
struct prev {
    uint32_t at; /* loop tick */
    uint64_t published, delivered, dropped;
    uint64_t lat[CONN_LAT_BUCKETS];
};

struct debug_stream {
    struct loop *loop;
    struct conn_set *set; /* not read after the streams are closed: the
                             server frees it before the feed */
    struct pubsub *ps;
    struct debug_stream_opts o;
    debug_describe_fn *describe;
    void *describe_arg;
    struct timer tick;
    uint32_t open;      /* streams open now */
    uint64_t refused;   /* answered 503 at max_streams */
    uint64_t own_pub;   /* the feed's own publishes */
    uint64_t own_deliv; /* and the deliveries they reached */
    bool draining;
    struct prev prev;
};

/* A stream's conn ext (inside the HTTP conn's area, like push's SSE). */
struct stream_conn {
    struct subscriber *s;
};

static struct debug_stream *ds_of(const struct conn *c)
{
    return conn_ctx(c);
}

/* ---- the protocol of an open stream ------------------------------------- */

static size_t stream_on_data(struct conn *c, uint8_t *p, size_t len)
{
    /* A stream's client has nothing to say: its bytes are dropped. Over
     * TLS, half a record started the message deadline; now it is whole,
     * the heartbeat deadline is back. */
    (void)p;
    if (conn_message_update(c, false))
        conn_set_read_deadline(c, ds_of(c)->o.heartbeat_ms, CLOSE_IDLE_TIMEOUT);
    return len;
}

static bool stream_on_timeout(struct conn *c)
{
    static const char hb[] = ": heartbeat\n\n";

    if (conn_read_reason(c) != CLOSE_IDLE_TIMEOUT)
        return false; /* half a TLS record not finished in time */
    if (conn_queued_bytes(c) == 0)
        conn_send_bytes(c, hb, sizeof(hb) - 1);
    conn_set_read_deadline(c, ds_of(c)->o.heartbeat_ms, CLOSE_IDLE_TIMEOUT);
    return !conn_is_closing(c);
}

static void stream_on_drain(struct conn *c)
{
    struct stream_conn *sc = conn_ext(c);

    if (sc->s)
        pubsub_subscriber_drained(ds_of(c)->ps, sc->s);
}

static void stream_on_close(struct conn *c, enum close_reason why)
{
    struct stream_conn *sc = conn_ext(c);
    struct debug_stream *ds = ds_of(c);

    (void)why;
    pubsub_subscriber_free(ds->ps, sc->s);
    sc->s = NULL;
    ds->open--;
    if (ds->open == 0)
        timer_cancel(loop_timers(ds->loop), &ds->tick);
}

/* Named "sse": on the wire it is one, and /debug/conns and the
 * snapshot's by_protocol count it with the others. */
static const struct conn_proto stream_proto = {
    .name = "sse",
    .on_data = stream_on_data,
    .on_drain = stream_on_drain,
    .on_timeout = stream_on_timeout,
    .on_close = stream_on_close,
    .messages = true, /* only half a TLS record can be one */
};

bool debug_stream_owns(const struct conn *c)
{
    return conn_proto(c) == &stream_proto;
}

/* ---- the snapshot ------------------------------------------------------- */

#define MAX_PROTOS 16 /* distinct protocol names counted */

struct walk {
    const char *proto[MAX_PROTOS];
    uint32_t by_proto[MAX_PROTOS];
    unsigned n_protos;
    struct conn *top[DEBUG_STREAM_TOP];
    unsigned n_top;
};

/* True if a should be listed before b: more bytes queued, then older. */
static bool before(const struct conn *a, const struct conn *b)
{
    if (conn_queued_bytes(a) != conn_queued_bytes(b))
        return conn_queued_bytes(a) > conn_queued_bytes(b);
    return conn_id(a) < conn_id(b);
}

static void walk_one(struct conn *c, void *arg)
{
    struct walk *w = arg;
    const char *name = conn_proto(c)->name;
    unsigned i;

    for (i = 0; i < w->n_protos; i++)
        if (w->proto[i] == name || !strcmp(w->proto[i], name))
            break;
    if (i == w->n_protos && i < MAX_PROTOS)
        w->proto[w->n_protos++] = name;
    if (i < MAX_PROTOS)
        w->by_proto[i]++;
    /* Insertion into the short sorted list of the top rows. */
    if (w->n_top == DEBUG_STREAM_TOP && !before(c, w->top[w->n_top - 1]))
        return;
    i = w->n_top < DEBUG_STREAM_TOP ? w->n_top++ : w->n_top - 1;
    while (i > 0 && before(c, w->top[i - 1])) {
        w->top[i] = w->top[i - 1];
        i--;
    }
    w->top[i] = c;
}

/* The document being written and its first error (metrics.c's habit). */
struct out {
    struct sbuf *b;
    int err;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (o->err)
        return;
    va_start(ap, fmt);
    rc = sbuf_vprintf(o->b, fmt, ap);
    va_end(ap);
    if (rc < 0)
        o->err = rc;
}

static void put_str(struct out *o, const char *s)
{
    int rc;

    if (o->err)
        return;
    rc = sbuf_json_str(o->b, s, strlen(s));
    if (rc < 0)
        o->err = rc;
}

static void put_mem(struct out *o)
{
    struct mem_tag_stats st;

    put(o,
        "\"mem\":{\"live\":%" PRId64 ",\"rss\":%" PRId64
        ",\"budget\":%zu,\"tags\":{",
        mem_live_bytes(MEM_ALL), mem_process_rss(), mem_budget());
    for (int t = 0; t < MEM_TAG_COUNT; t++) {
        mem_stats((enum mem_tag)t, &st);
        put(o, "%s\"%s\":%" PRId64, t ? "," : "", mem_tag_name(t),
            st.live_bytes);
    }
    put(o, "}}");
}

static void put_conns(struct out *o, const struct conn_stats *cs,
                      const struct walk *w)
{
    put(o,
        ",\"conns\":{\"open\":%" PRId64 ",\"paused\":%" PRId64
        ",\"queued_bytes\":%" PRId64 ",\"by_state\":{",
        cs->open, cs->paused, cs->queued_bytes);
    for (int s = 0; s < CSTATE_COUNT; s++)
        put(o, "%s\"%s\":%" PRId64, s ? "," : "",
            conn_state_name((enum conn_state)s), cs->by_state[s]);
    put(o, "},\"by_protocol\":{");
    for (unsigned i = 0; i < w->n_protos; i++) {
        put(o, "%s", i ? "," : "");
        put_str(o, w->proto[i]);
        put(o, ":%u", w->by_proto[i]);
    }
    put(o, "}}");
}

/* The value below which a share q of the interval's deliveries fell, as
 * the histogram knows it: the upper bound of the bucket holding it, in
 * ms (the last bucket has none: its lower bound). -1 with no deliveries. */
static double quantile_ms(const uint64_t d[CONN_LAT_BUCKETS], uint64_t n,
                          double q)
{
    static const uint64_t bounds[CONN_LAT_BUCKETS] = CONN_LAT_BOUNDS_US;
    uint64_t want = (uint64_t)(q * (double)n + 0.999999), cum = 0;

    if (n == 0)
        return -1;
    for (int b = 0; b < CONN_LAT_BUCKETS; b++) {
        cum += d[b];
        if (cum >= want)
            return (double)(bounds[b] == UINT64_MAX ? bounds[b - 1]
                                                    : bounds[b]) /
                   1000.0;
    }
    return (double)bounds[CONN_LAT_BUCKETS - 2] / 1000.0;
}

static void put_latency(struct out *o, const struct conn_stats *cs,
                        const struct prev *pv)
{
    uint64_t d[CONN_LAT_BUCKETS], n = 0;
    double p50, p99;

    for (int b = 0; b < CONN_LAT_BUCKETS; b++) {
        d[b] = cs->lat_buckets[b] - pv->lat[b];
        n += d[b];
    }
    p50 = quantile_ms(d, n, 0.5);
    p99 = quantile_ms(d, n, 0.99);
    put(o,
        ",\"latency\":{\"source\":\"interval\",\"count\":%" PRIu64
        ",\"p50_ms\":",
        n);
    if (p50 < 0)
        put(o, "null,\"p99_ms\":null}");
    else
        put(o, "%g,\"p99_ms\":%g}", p50, p99);
}

/* Counters less the feed's own share (never below zero). */
static uint64_t less(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static void put_pubsub(struct out *o, struct debug_stream *ds,
                       const struct pubsub_stats *ps, struct prev *now,
                       uint32_t dt_ms)
{
    double secs = dt_ms ? (double)dt_ms / 1000.0 : 1.0;

    now->published = less(ps->published, ds->own_pub);
    now->delivered = less(ps->delivered, ds->own_deliv);
    now->dropped = ps->dropped_oldest + ps->dropped_closing;
    put(o,
        ",\"pubsub\":{\"published\":%" PRIu64 ",\"delivered\":%" PRIu64
        ",\"dropped\":%" PRIu64 ",\"kicks\":%" PRIu64 ",\"kicks_soft\":%" PRIu64
        ",\"channels\":%" PRId64 ",\"subscribers\":%" PRId64 "}",
        now->published, now->delivered, now->dropped,
        ps->slow_disconnects + ps->soft_disconnects, ps->soft_disconnects,
        ps->channels - (ds->open ? 1 : 0), ps->subscribers - ds->open);
    put(o,
        ",\"rates\":{\"published\":%.1f,\"delivered\":%.1f,"
        "\"dropped\":%.1f}",
        (double)less(now->published, ds->prev.published) / secs,
        (double)less(now->delivered, ds->prev.delivered) / secs,
        (double)less(now->dropped, ds->prev.dropped) / secs);
}

static void put_top(struct out *o, struct debug_stream *ds,
                    const struct walk *w)
{
    put(o, ",\"top\":[");
    for (unsigned i = 0; i < w->n_top; i++) {
        struct conn *c = w->top[i];
        char peer[64], channels[1024] = "";
        const char *role = "", *sub = NULL;

        conn_peer_str(c, peer, sizeof(peer));
        if (debug_stream_owns(c))
            role = "dashboard";
        else if (ds->describe)
            role = ds->describe(ds->describe_arg, c, channels, sizeof(channels),
                                &sub);
        put(o, "%s{\"id\":%llu,\"peer\":", i ? "," : "", conn_id(c));
        put_str(o, peer);
        put(o, ",\"protocol\":");
        put_str(o, conn_proto(c)->name);
        put(o, ",\"role\":");
        put_str(o, role);
        put(o, ",\"state\":\"%s\",\"queued\":%u,\"channels\":",
            conn_state_name(conn_state_of(c)), conn_queued_bytes(c));
        put_str(o, channels);
        put(o, "}");
    }
    put(o, "]");
}

/* Writes the snapshot to b and moves the counters it measured against
 * on to now. */
static int snapshot(struct debug_stream *ds, struct sbuf *b)
{
    const struct conn_stats *cs = &ds->set->stats;
    struct out o = {.b = b};
    struct prev now = {.at = loop_now(ds->loop)};
    struct walk w;

    memset(&w, 0, sizeof(w));
    conn_set_each(ds->set, walk_one, &w);
    put(&o, "{\"t_ms\":%" PRIu64 ",\"interval_ms\":%u,", loop_wall_ms(ds->loop),
        now.at - ds->prev.at);
    put_mem(&o);
    put_conns(&o, cs, &w);
    put_pubsub(&o, ds, pubsub_stats(ds->ps), &now, now.at - ds->prev.at);
    put_latency(&o, cs, &ds->prev);
    put(&o, ",\"streams\":{\"open\":%u,\"max\":%u,\"refused\":%" PRIu64 "}",
        ds->open, ds->o.max_streams, ds->refused);
    put_top(&o, ds, &w);
    put(&o, "}");
    memcpy(now.lat, cs->lat_buckets, sizeof(now.lat));
    ds->prev = now;
    return o.err;
}

/* The counters a first snapshot is measured against (a stream opened). */
static void baseline(struct debug_stream *ds)
{
    const struct pubsub_stats *ps = pubsub_stats(ds->ps);

    ds->prev.at = loop_now(ds->loop);
    ds->prev.published = less(ps->published, ds->own_pub);
    ds->prev.delivered = less(ps->delivered, ds->own_deliv);
    ds->prev.dropped = ps->dropped_oldest + ps->dropped_closing;
    memcpy(ds->prev.lat, ds->set->stats.lat_buckets, sizeof(ds->prev.lat));
}

static void on_tick(struct timer *t)
{
    struct debug_stream *ds = container_of(t, struct debug_stream, tick);
    struct sbuf b;
    long reached;
    int rc;

    if (ds->open == 0 || ds->draining)
        return; /* nobody listens: no snapshot, no timer */
    sbuf_init(&b, MEM_METRICS, DEBUG_STREAM_EVENT_MAX);
    rc = snapshot(ds, &b);
    if (rc == 0) {
        /* Counted first: the publish itself is one of the feed's own. */
        ds->own_pub++;
        reached = pubsub_publish(ds->ps, DEBUG_STREAM_CHANNEL,
                                 sizeof(DEBUG_STREAM_CHANNEL) - 1, b.data,
                                 b.len, true);
        if (reached > 0)
            ds->own_deliv += (uint64_t)reached;
    } else {
        LOG_WARN("debug stream snapshot not sent", "err=%d streams=%u", rc,
                 ds->open);
    }
    sbuf_fini(&b);
    loop_timer_in(ds->loop, &ds->tick, ds->o.interval_ms);
}

/* ---- opening, draining -------------------------------------------------- */

static void refuse(struct http_exchange *ex, int status, const char *msg)
{
    char body[160];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, msg);

    http_respond(ex, status, "text/plain; charset=utf-8",
                 status == 503 ? "Retry-After: 5\r\n" : NULL, body,
                 (size_t)MIN((size_t)n, sizeof(body) - 1));
}

void debug_stream_open(struct debug_stream *ds, struct http_exchange *ex)
{
    struct conn *c = ex->c;
    struct stream_conn *sc;
    char head[512];
    uint8_t retry[SSE_RETRY_MAX];
    ssize_t hl;
    size_t rl;

    if (ex->req->has_body) {
        ex->keep_alive = false; /* the body is not read */
        refuse(ex, 400, "an event-stream request carries no body");
        return;
    }
    if (ds->draining || ds->open >= ds->o.max_streams) {
        ds->refused++;
        refuse(ex, 503,
               ds->o.max_streams ? "too many debug streams open "
                                   "(--max-debug-streams)"
                                 : "the debug stream is off "
                                   "(--max-debug-streams 0)");
        return;
    }
    hl = sse_format_head(head, sizeof(head), NULL);
    rl = sse_encode_retry(retry, sizeof(retry), ds->o.retry_ms);
    if (hl < 0 || conn_send_bytes(c, head, (size_t)hl) < 0 ||
        conn_send_bytes(c, retry, rl) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    ex->responded = true;
    ex->upgraded = true;
    if (conn_set_proto_ctx(c, &stream_proto, ds) < 0) {
        conn_close(c, CLOSE_ERROR);
        return;
    }
    conn_set_state(c, CSTATE_SSE);
    conn_set_read_deadline(c, ds->o.heartbeat_ms, CLOSE_IDLE_TIMEOUT);
    sc = conn_ext(c);
    memset(sc, 0, sizeof(*sc));
    ds->open++; /* from here on_close counts it out */
    sc->s = pubsub_subscriber_new(ds->ps, c, PS_SSE);
    if (!sc->s ||
        pubsub_subscribe_internal(ds->ps, sc->s, DEBUG_STREAM_CHANNEL,
                                  sizeof(DEBUG_STREAM_CHANNEL) - 1) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    if (!timer_armed(&ds->tick)) {
        baseline(ds);
        loop_timer_in(ds->loop, &ds->tick, ds->o.interval_ms);
    }
}

static void close_stream(struct conn *c, void *arg)
{
    (void)arg;
    if (debug_stream_owns(c))
        conn_close_after_flush(c, CLOSE_SHUTDOWN, 1000);
}

void debug_stream_drain(struct debug_stream *ds)
{
    ds->draining = true;
    timer_cancel(loop_timers(ds->loop), &ds->tick);
    conn_set_each(ds->set, close_stream, ds);
}

void debug_stream_counts(const struct debug_stream *ds, uint64_t *open,
                         uint64_t *refused)
{
    *open = ds->open;
    *refused = ds->refused;
}

struct debug_stream *debug_stream_new(struct conn_set *set, struct pubsub *ps,
                                      const struct debug_stream_opts *o,
                                      debug_describe_fn *fn, void *arg)
{
    struct debug_stream *ds = mem_calloc(MEM_METRICS, 1, sizeof(*ds));

    if (!ds)
        return NULL;
    ds->loop = set->loop;
    ds->set = set;
    ds->ps = ps;
    ds->o = *o;
    ds->describe = fn;
    ds->describe_arg = arg;
    timer_init(&ds->tick, on_tick);
    return ds;
}

void debug_stream_free(struct debug_stream *ds)
{
    if (!ds)
        return;
    timer_cancel(loop_timers(ds->loop), &ds->tick);
    mem_free(MEM_METRICS, ds);
}
