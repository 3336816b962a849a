/*
 * influx.c - the InfluxDB push of moor's metrics; see influx.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include <moor.h>

#include "api.h"
#include "http_client.h"
#include "influx.h"
#include "influx_line.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "metrics.h"
#include "timer.h"
#include "util.h"

#define IX_RETRY_MIN_MS 1000
#define IX_RETRY_MAX_MS 60000
#define IX_MAX_EXTRA_TAGS 8
#define IX_SECRET_MAX 1024
#define IX_ERRBODY 256 /* the start of a refusal's body, kept to read */
#define IX_HIST "moor_pubsub_delivery_seconds"

/* One interval's points, as they will be written. */
struct batch {
    struct batch *next;
    size_t len;
    uint32_t points;
    char data[];
};

struct influx {
    struct loop *loop;
    influx_render_fn *render;
    void *arg;
    struct moor_loop *ml;
    struct moor_http_client *cl;
    char *url;
    char auth[2 * IX_SECRET_MAX + 512]; /* the Authorization field, or "" */
    char tagbuf[512];                   /* --influx-tags, split in place */
    struct influx_tag tags[IX_MAX_EXTRA_TAGS];
    size_t n_tags;
    uint64_t ts_div; /* ns per timestamp unit */
    uint32_t interval_ms;
    uint64_t buffer;
    struct timer tick, retry;
    struct batch *head, *tail;   /* the outbox, oldest first */
    struct moor_http_call *call; /* the write in flight, or NULL */
    uint32_t backoff_ms;
    int status;
    bool logged_reject;
    enum influx_gzip gzip;
    bool plain;   /* --influx-gzip auto: this sink refused gzip */
    bool sent_gz; /* the write in flight is gzipped */
    char errbody[IX_ERRBODY];
    size_t errbody_len;
    /* The delivery histogram's cumulative counts at the last push. */
    double hist_le[INFLUX_HIST_MAX_BUCKETS], hist_cum[INFLUX_HIST_MAX_BUCKETS];
    size_t hist_n;
    struct influx_stats st;
};

static void try_send(struct influx *ix);

/* ---- set-up --------------------------------------------------------------
 */

/* The first line of file path into out (trailing newline dropped). */
static int read_secret(const char *path, char *out, size_t cap, char *err,
                       size_t errlen)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    out[strcspn(out, "\r\n")] = 0;
    if (!out[0]) {
        snprintf(err, errlen, "%s is empty", path);
        return -1;
    }
    return 0;
}

static int parse_tags(struct influx *ix, const char *tags, char *err,
                      size_t errlen)
{
    char host[256] = "";
    bool has_host = false;
    char *p;

    if (snprintf(ix->tagbuf, sizeof(ix->tagbuf), "%s", tags ? tags : "") >=
        (int)sizeof(ix->tagbuf)) {
        snprintf(err, errlen, "--influx-tags is too long");
        return -1;
    }
    for (p = ix->tagbuf; *p;) {
        char *comma = strchr(p, ','), *eq;

        if (comma)
            *comma = 0;
        eq = strchr(p, '=');
        if (!eq || eq == p || !eq[1] || ix->n_tags == IX_MAX_EXTRA_TAGS - 1) {
            snprintf(err, errlen,
                     "--influx-tags: want key=value,... (at most %d), got "
                     "\"%s\"",
                     IX_MAX_EXTRA_TAGS - 1, p);
            return -1;
        }
        *eq = 0;
        ix->tags[ix->n_tags++] =
            (struct influx_tag){p, eq + 1, strlen(p), strlen(eq + 1)};
        has_host = has_host || !strcmp(p, "host");
        p = comma ? comma + 1 : p + strlen(p);
    }
    if (!has_host && gethostname(host, sizeof(host)) == 0 && host[0]) {
        size_t used = strlen(tags ? tags : "") + 1, hl = strlen(host);

        if (used + hl + 1 > sizeof(ix->tagbuf))
            return 0;
        memcpy(ix->tagbuf + used, host, hl + 1);
        ix->tags[ix->n_tags++] =
            (struct influx_tag){"host", ix->tagbuf + used, 4, hl};
    }
    return 0;
}

static int parse_precision(struct influx *ix, const char *p, char *err,
                           size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t div;
    } units[] = {{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000}};

    for (size_t i = 0; i < ARRAY_SIZE(units); i++)
        if (!strcmp(p && *p ? p : "s", units[i].name)) {
            ix->ts_div = units[i].div;
            return 0;
        }
    snprintf(err, errlen,
             "--influx-precision: want s, ms, us or ns, got \"%s\"", p);
    return -1;
}

/* The write URL with &precision= added (the sink must know the unit). */
static char *write_url(const char *url, uint64_t div)
{
    const char *unit = div == 1         ? "ns"
                       : div == 1000    ? "us"
                       : div == 1000000 ? "ms"
                                        : "s";
    size_t n = strlen(url) + 32;
    char *u = mem_alloc(MEM_INFLUX, n);

    if (u)
        snprintf(u, n, "%s%cprecision=%s", url, strchr(url, '?') ? '&' : '?',
                 unit);
    return u;
}

static void on_tick(struct timer *t);
static void on_retry(struct timer *t);

struct influx *influx_new(struct loop *l, const struct influx_opts *o,
                          influx_render_fn *render, void *arg, char *err,
                          size_t errlen)
{
    struct moor_http_client_options co;
    struct moor_error e = {0};
    struct influx *ix;
    char secret[IX_SECRET_MAX];

    if (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8)) {
        snprintf(err, errlen, "--influx-url: want http://... or https://...");
        return NULL;
    }
    ix = mem_calloc(MEM_INFLUX, 1, sizeof(*ix));
    if (!ix) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ix->loop = l;
    ix->render = render;
    ix->arg = arg;
    ix->interval_ms = o->interval_ms ? o->interval_ms : 10000;
    ix->buffer = o->buffer ? o->buffer : MiB(1);
    ix->backoff_ms = IX_RETRY_MIN_MS;
    ix->gzip = o->gzip;
    timer_init(&ix->tick, on_tick);
    timer_init(&ix->retry, on_retry);
    if (parse_tags(ix, o->tags, err, errlen) < 0 ||
        parse_precision(ix, o->precision, err, errlen) < 0)
        goto fail;
    if (o->token_file && o->token_file[0]) {
        if (read_secret(o->token_file, secret, sizeof(secret), err, errlen))
            goto fail;
        snprintf(ix->auth, sizeof(ix->auth), "Token %s", secret);
    } else if (o->user && o->user[0]) {
        char up[IX_SECRET_MAX + 257];
        unsigned char b64[sizeof(up) * 4 / 3 + 8];

        if (!o->password_file || !o->password_file[0] ||
            read_secret(o->password_file, secret, sizeof(secret), err,
                        errlen)) {
            if (!o->password_file || !o->password_file[0])
                snprintf(err, errlen,
                         "--influx-user needs --influx-password-file");
            goto fail;
        }
        snprintf(up, sizeof(up), "%s:%s", o->user, secret);
        EVP_EncodeBlock(b64, (const unsigned char *)up, (int)strlen(up));
        snprintf(ix->auth, sizeof(ix->auth), "Basic %s", (char *)b64);
        OPENSSL_cleanse(up, sizeof(up));
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    ix->url = write_url(o->url, ix->ts_div);
    ix->ml = api_loop_borrow(l);
    if (!ix->url || !ix->ml) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    moor_http_client_options_init(&co);
    co.total_timeout_ms = ix->interval_ms > 30000 ? 30000 : ix->interval_ms;
    co.max_conns_per_host = 1;
    co.max_idle_per_host = 1;
    ix->cl = moor_http_client_new(ix->ml, &co, &e);
    if (!ix->cl) {
        snprintf(err, errlen, "the push's HTTP client: %s", e.message);
        goto fail;
    }
    loop_timer_in(l, &ix->tick, ix->interval_ms);
    return ix;
fail:
    influx_free(ix);
    return NULL;
}

/* Unlinks the batch at *pp, counting its points in *counter. */
static void drop_at(struct influx *ix, struct batch **pp, uint64_t *counter)
{
    struct batch *b = *pp;

    *pp = b->next;
    if (ix->tail == b) {
        ix->tail = NULL;
        for (struct batch *t = ix->head; t; t = t->next)
            ix->tail = t;
    }
    *counter += b->points;
    ix->st.queued_bytes -= b->len;
    ix->st.queued_batches--;
    mem_free(MEM_INFLUX, b);
}

static void drop_oldest(struct influx *ix, uint64_t *counter)
{
    drop_at(ix, &ix->head, counter);
}

void influx_free(struct influx *ix)
{
    if (!ix)
        return;
    timer_cancel(loop_timers(ix->loop), &ix->tick);
    timer_cancel(loop_timers(ix->loop), &ix->retry);
    if (ix->cl)
        moor_http_client_free(ix->cl); /* on_done: -ECANCELED */
    while (ix->head) {
        uint64_t ignored = 0;

        drop_oldest(ix, &ignored);
    }
    moor_loop_free(ix->ml);
    mem_free(MEM_INFLUX, ix->url);
    mem_free(MEM_INFLUX, ix);
}

const struct influx_stats *influx_stats(const struct influx *ix)
{
    return &ix->st;
}

struct moor_http_client *influx_client(const struct influx *ix)
{
    return ix->cl;
}

/* ---- each interval -------------------------------------------------------
 */

/* Appends the delivery latency quantiles of the histogram's increase
 * since the last push (none when nothing was delivered in between).
 * Returns the points added, or the builder's error. */
static long quantiles(struct influx *ix, struct sbuf *out,
                      const struct sbuf *page, int64_t ts)
{
    double le[INFLUX_HIST_MAX_BUCKETS], cum[INFLUX_HIST_MAX_BUCKETS];
    double inc[INFLUX_HIST_MAX_BUCKETS];
    int n = influx_hist_buckets((const char *)page->data, page->len, IX_HIST,
                                le, cum, INFLUX_HIST_MAX_BUCKETS);
    bool same;

    if (n <= 0)
        return 0;
    same = (size_t)n == ix->hist_n &&
           !memcmp(le, ix->hist_le, (size_t)n * sizeof(le[0]));
    for (int i = 0; i < n; i++) {
        inc[i] = cum[i] - (same ? ix->hist_cum[i] : 0);
        same = same && inc[i] >= 0; /* a reset: count from zero */
    }
    if (!same)
        memcpy(inc, cum, (size_t)n * sizeof(cum[0]));
    memcpy(ix->hist_le, le, (size_t)n * sizeof(le[0]));
    memcpy(ix->hist_cum, cum, (size_t)n * sizeof(cum[0]));
    ix->hist_n = (size_t)n;
    return influx_quantile_points(out, le, inc, (size_t)n, ix->tags, ix->n_tags,
                                  ts);
}

static void on_tick(struct timer *t)
{
    struct influx *ix = container_of(t, struct influx, tick);
    struct sbuf page, lines;
    size_t skipped = 0;
    int64_t ts = (int64_t)(loop_wall_ms(ix->loop) * 1000000ull / ix->ts_div);
    long points;
    struct batch *b;

    loop_timer_in(ix->loop, &ix->tick, ix->interval_ms);
    sbuf_init(&page, MEM_METRICS, METRICS_PAGE_MAX);
    sbuf_init(&lines, MEM_INFLUX, ix->buffer);
    points =
        ix->render(&page, ix->arg) < 0
            ? -ENOMEM
            : influx_from_prometheus(&lines, (const char *)page.data, page.len,
                                     ix->tags, ix->n_tags, ts, &skipped);
    if (points > 0) {
        long q = quantiles(ix, &lines, &page, ts);

        points = q < 0 ? q : points + q;
    }
    sbuf_fini(&page);
    if (points <= 0) {
        if (points < 0)
            LOG_WARN("influx: no batch this interval", "err=\"%s\"",
                     strerror((int)-points));
        sbuf_fini(&lines);
        return;
    }
    /* Room for the new batch: the oldest go, but not the one out. */
    while (ix->st.queued_bytes + lines.len > ix->buffer) {
        struct batch **pp = ix->call ? &ix->head->next : &ix->head;

        if (!*pp)
            break;
        drop_at(ix, pp, &ix->st.points_dropped);
    }
    b = mem_alloc(MEM_INFLUX, sizeof(*b) + lines.len);
    if (!b || ix->st.queued_bytes + lines.len > ix->buffer) {
        mem_free(MEM_INFLUX, b);
        ix->st.points_dropped += (uint64_t)points;
        sbuf_fini(&lines);
        return;
    }
    b->next = NULL;
    b->len = lines.len;
    b->points = (uint32_t)points;
    memcpy(b->data, lines.data, lines.len);
    sbuf_fini(&lines);
    if (ix->tail)
        ix->tail->next = b;
    else
        ix->head = b;
    ix->tail = b;
    ix->st.queued_bytes += b->len;
    ix->st.queued_batches++;
    if (!tnode_armed(&ix->retry.node))
        try_send(ix);
}

/* ---- writing -------------------------------------------------------------
 */

static void on_head(struct moor_http_call *c,
                    const struct moor_http_response *r, void *user)
{
    struct influx *ix = user;

    (void)c;
    ix->status = r->status;
}

/* The start of the answer's body: a 400 may say why (the encoding). */
static void on_body(struct moor_http_call *c, const void *p, size_t n,
                    void *user)
{
    struct influx *ix = user;
    size_t room = sizeof(ix->errbody) - 1 - ix->errbody_len;

    (void)c;
    if (n > room)
        n = room;
    memcpy(ix->errbody + ix->errbody_len, p, n);
    ix->errbody_len += n;
    ix->errbody[ix->errbody_len] = 0;
}

/* --influx-gzip auto: did the sink say it cannot read a gzipped body? */
static bool gzip_refused(const struct influx *ix, int status)
{
    if (!ix->sent_gz || ix->gzip != INFLUX_GZIP_AUTO)
        return false;
    return status == 415 ||
           (status == 400 && (strcasestr(ix->errbody, "encoding") ||
                              strcasestr(ix->errbody, "gzip")));
}

static void on_done(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user)
{
    struct influx *ix = user;
    uint32_t jitter;

    (void)c;
    ix->call = NULL;
    if (r->error == -ECANCELED)
        return; /* influx_free() */
    if (!r->error && r->status >= 200 && r->status <= 299) {
        ix->st.writes_ok++;
        drop_oldest(ix, &ix->st.points_written);
        ix->backoff_ms = IX_RETRY_MIN_MS;
        try_send(ix);
        return;
    }
    if (!r->error && gzip_refused(ix, r->status)) {
        /* Sent again at once, plain, and so is every later batch. */
        LOG_WARN("influx: the sink cannot read gzip, sending it plain bodies",
                 "status=%d url=\"%s\"", r->status, ix->url);
        ix->plain = true;
        try_send(ix);
        return;
    }
    if (!r->error && r->status >= 400 && r->status <= 499 && r->status != 408 &&
        r->status != 429) {
        /* The sink will never take it: a bad line, a bad token, no such
         * database, too large. */
        ix->st.writes_rejected++;
        if (!ix->logged_reject)
            LOG_ERROR("influx: the sink refused a batch, dropped",
                      "status=%d url=\"%s\"", r->status, ix->url);
        ix->logged_reject = true;
        drop_oldest(ix, &ix->st.points_rejected);
        try_send(ix);
        return;
    }
    ix->st.writes_failed++;
    LOG_WARN("influx: write failed, retrying", "status=%d err=\"%s\" in_ms=%u",
             r->status, r->message ? r->message : "", ix->backoff_ms);
    jitter = (uint32_t)(random() % (ix->backoff_ms / 2 + 1));
    loop_timer_in(ix->loop, &ix->retry, ix->backoff_ms / 2 + jitter);
    ix->backoff_ms = ix->backoff_ms * 2 > IX_RETRY_MAX_MS ? IX_RETRY_MAX_MS
                                                          : ix->backoff_ms * 2;
}

static void on_retry(struct timer *t)
{
    try_send(container_of(t, struct influx, retry));
}

static voidpf gz_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return mem_calloc(MEM_INFLUX, items, size);
}

static void gz_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    mem_free(MEM_INFLUX, p);
}

/* b gzipped into a new buffer (tag influx) of *out_len bytes; NULL when
 * out of memory or when it would not even halve the body (then it goes
 * plain). zlib's state (about 256 KiB) is freed before this returns. */
static unsigned char *gzip_batch(const struct batch *b, size_t *out_len)
{
    z_stream z = {.zalloc = gz_alloc, .zfree = gz_free};
    size_t cap = b->len / 2 + 1024;
    unsigned char *out = mem_alloc(MEM_INFLUX, cap);
    int rc;

    if (!out)
        return NULL;
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        mem_free(MEM_INFLUX, out);
        return NULL;
    }
    z.next_in = (Bytef *)b->data;
    z.avail_in = (uInt)b->len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    rc = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        mem_free(MEM_INFLUX, out);
        return NULL;
    }
    return out;
}

static void try_send(struct influx *ix)
{
    struct moor_http_field h[3] = {
        {"Content-Type", 12, "text/plain; charset=utf-8", 25},
        {"Content-Encoding", 16, "gzip", 4},
        {"Authorization", 13, ix->auth, strlen(ix->auth)},
    };
    struct moor_http_callbacks cbs = {
        .on_head = on_head, .on_body = on_body, .on_done = on_done};
    struct moor_http_request rq;
    struct moor_error e = {0};
    unsigned char *gz = NULL;
    size_t gz_len = 0;

    if (ix->call || !ix->head)
        return;
    if (ix->gzip == INFLUX_GZIP_ON ||
        (ix->gzip == INFLUX_GZIP_AUTO && !ix->plain))
        gz = gzip_batch(ix->head, &gz_len);
    if (!gz)
        h[1] = h[2]; /* no Content-Encoding */
    moor_http_request_init(&rq);
    rq.method = "POST";
    rq.url = ix->url;
    rq.headers = h;
    rq.n_headers = (gz ? 2 : 1) + (ix->auth[0] ? 1 : 0);
    rq.body = gz ? (const void *)gz : ix->head->data;
    rq.body_len = gz ? gz_len : ix->head->len;
    ix->status = 0;
    ix->errbody_len = 0;
    ix->errbody[0] = 0;
    ix->sent_gz = gz != NULL;
    ix->call = moor_http_client_request(ix->cl, &rq, &cbs, ix, &e);
    mem_free(MEM_INFLUX, gz); /* the client copied the body */
    if (ix->call) {
        if (ix->sent_gz)
            ix->st.sent_gzip_bytes += rq.body_len;
        else
            ix->st.sent_identity_bytes += rq.body_len;
    }
    if (!ix->call) {
        ix->st.writes_failed++;
        LOG_WARN("influx: write not sent", "err=\"%s\"", e.message);
        loop_timer_in(ix->loop, &ix->retry, ix->backoff_ms);
    }
}
