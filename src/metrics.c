/*
 * metrics.c - renders every counter moor keeps as Prometheus text
 * (exposition format 0.0.4, checked by `promtool check metrics` in the
 * tests) and the /debug/mem JSON document.
 *
 * Keeps: each family has HELP and TYPE; counters end in _total; every
 * label value comes from a fixed table (no label sized by a peer).
 * Must not: hold any state of its own between calls.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "history.h"
#include "series.h"
#include "mem.h"
#include "log.h"
#include "util.h"

/*
 * The document being written, and its first error. Once a write fails
 * (-ENOMEM, or -ENOBUFS at the builder's cap) every later one is skipped
 * and the error is what the public function returns at its end: the
 * renderers read straight down, with no early return after each line.
 */
struct page {
    struct sbuf *o;
    int err;
};

static void put(struct page *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct page *p, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (p->err)
        return;
    va_start(ap, fmt);
    rc = sbuf_vprintf(p->o, fmt, ap);
    va_end(ap);
    if (rc < 0)
        p->err = rc;
}

/* A family's HELP and TYPE lines, from its row in series.c. A family with
 * no row fails the page with -EINVAL, so a test that reads /metrics finds
 * it before a user reads --help without it. */
static void family(struct page *p, const char *name)
{
    const struct series *s = series_find(name);

    if (!s) {
        if (!p->err)
            p->err = -EINVAL;
        return;
    }
    put(p, "# HELP %s %s\n# TYPE %s %s\n", name, s->help, name, s->type);
}

static void value(struct page *p, const char *name, const char *lname,
                  const char *lval, double v)
{
    if (lname)
        put(p, "%s{%s=\"%s\"} %.17g\n", name, lname, lval, v);
    else
        put(p, "%s %.17g\n", name, v);
}

/* A family with a single, unlabelled value. */
static void scalar(struct page *p, const char *name, double v)
{
    family(p, name);
    value(p, name, NULL, NULL, v);
}

/* Sums field of stats_of(loop.member) over every loop that has the
 * member (a conn set, an HTTP server, pub/sub). */
#define SUM_LOOPS(v, member, stats_of, field)                                  \
    ({                                                                         \
        double s_ = 0;                                                         \
        for (unsigned i_ = 0; i_ < (v)->n_loops; i_++)                         \
            if ((v)->loops[i_].member)                                         \
                s_ += (double)stats_of((v)->loops[i_].member)->field;          \
        s_;                                                                    \
    })

static const struct conn_stats *set_stats(const struct conn_set *s)
{
    return &s->stats;
}

#define SUM_CONN(v, field) SUM_LOOPS(v, conns, set_stats, field)
#define SUM_HTTP(v, field)                                                     \
    (SUM_LOOPS(v, http, http_server_stats, field) +                            \
     SUM_LOOPS(v, http_admin, http_server_stats, field))
#define SUM_PS(v, field) SUM_LOOPS(v, pubsub, pubsub_stats, field)

/* A loop's history counters (zeros without history). */
static const struct history_stats *hist_of(const struct pubsub *ps)
{
    static const struct history_stats none;
    const struct history_stats *st = pubsub_history_stats(ps);

    return st ? st : &none;
}

#define SUM_HIST(v, field) SUM_LOOPS(v, pubsub, hist_of, field)
/* The same over every listener of every loop. */
#define SUM_LISTEN(v, field)                                                   \
    ({                                                                         \
        double s_ = 0;                                                         \
        for (unsigned i_ = 0; i_ < (v)->n_loops; i_++)                         \
            for (unsigned j_ = 0; j_ < METRICS_MAX_LISTENERS; j_++)            \
                if ((v)->loops[i_].listeners[j_])                              \
                    s_ += (double)listener_stats((v)->loops[i_].listeners[j_]) \
                              ->field;                                         \
        s_;                                                                    \
    })

/* Addresses in the per-address tables. A loop's listeners share one
 * table, so each table is counted once. */
static double ip_table_entries(const struct metrics_view *v)
{
    double n = 0;

    for (unsigned i = 0; i < v->n_loops; i++) {
        const struct iplimit *seen[METRICS_MAX_LISTENERS];
        unsigned nseen = 0;

        for (unsigned j = 0; j < METRICS_MAX_LISTENERS; j++) {
            const struct listener *ls = v->loops[i].listeners[j];
            const struct iplimit *t = ls ? listener_iplimit(ls) : NULL;
            bool dup = false;

            for (unsigned k = 0; k < nseen && t; k++)
                dup |= seen[k] == t;
            if (!t || dup)
                continue;
            seen[nseen++] = t;
            n += iplimit_entries(t);
        }
    }
    return n;
}

static void render_tls(struct page *p, const struct metrics_view *v)
{
    static const char *const result[TLS_HS_COUNT] = {
        [TLS_HS_OK] = "ok",
        [TLS_HS_FAILED] = "failed",
        [TLS_HS_TIMEOUT] = "timeout",
        [TLS_HS_PLAINTEXT] = "plaintext",
    };
    uint64_t ok = 0, failed = 0;

    family(p, "moor_tls_handshakes_total");
    for (int r = 0; r < TLS_HS_COUNT; r++)
        value(p, "moor_tls_handshakes_total", "result", result[r],
              SUM_CONN(v, tls_handshakes[r]));
    scalar(p, "moor_tls_connections", SUM_CONN(v, tls_open));
    if (v->tls)
        tls_reload_counts(v->tls, &ok, &failed);
    family(p, "moor_tls_reloads_total");
    value(p, "moor_tls_reloads_total", "result", "ok", (double)ok);
    value(p, "moor_tls_reloads_total", "result", "failed", (double)failed);
}

/* The protocols moor_connections_by_protocol names (conn_proto()'s
 * names), then "other" for any other (a client's connection). */
static const char *const protocols[] = {"http", "websocket", "sse", "tcp",
                                        "other"};

static void count_protocol(struct conn *c, void *arg)
{
    double *n = arg;
    size_t i = 0;

    while (i < ARRAY_SIZE(protocols) - 1 &&
           strcmp(conn_proto(c)->name, protocols[i]))
        i++;
    n[i]++;
}

/* Open connections by protocol: a walk over every conn (O(n) per page;
 * the walk only reads). */
static void render_protocols(struct page *p, const struct metrics_view *v)
{
    double n[ARRAY_SIZE(protocols)] = {0};

    for (unsigned i = 0; i < v->n_loops; i++)
        if (v->loops[i].conns)
            conn_set_each((struct conn_set *)v->loops[i].conns, count_protocol,
                          n);
    family(p, "moor_connections_by_protocol");
    for (size_t i = 0; i < ARRAY_SIZE(protocols); i++)
        value(p, "moor_connections_by_protocol", "protocol", protocols[i],
              n[i]);
}

static void render_conns(struct page *p, const struct metrics_view *v)
{
    scalar(p, "moor_accepted_total", SUM_CONN(v, accepted));
    family(p, "moor_closed_total");
    for (int r = 1; r < CLOSE_REASON_COUNT; r++)
        value(p, "moor_closed_total", "reason", close_reason_name(r),
              SUM_CONN(v, closed[r]));
    family(p, "moor_refused_total");
    for (int r = 0; r < REFUSE_REASON_COUNT; r++)
        value(p, "moor_refused_total", "reason", refuse_reason_name(r),
              SUM_LISTEN(v, refused[r]));
    scalar(p, "moor_ip_table_entries", ip_table_entries(v));
    family(p, "moor_accept_paused_total");
    for (int r = 0; r < ACCEPT_PAUSE_COUNT; r++)
        value(p, "moor_accept_paused_total", "reason", accept_pause_name(r),
              SUM_LISTEN(v, paused[r]));
    family(p, "moor_connections");
    for (int s = 0; s < CSTATE_COUNT; s++)
        value(p, "moor_connections", "state", conn_state_name(s),
              SUM_CONN(v, by_state[s]));
    render_protocols(p, v);
    scalar(p, "moor_connections_paused", SUM_CONN(v, paused));
    family(p, "moor_connections_paused_by_cause");
    for (unsigned c = 0; c < PAUSE_CAUSE_COUNT; c++)
        value(p, "moor_connections_paused_by_cause", "cause",
              pause_cause_name(c), SUM_CONN(v, paused_by[c]));
    family(p, "moor_read_pauses_total");
    for (unsigned c = 0; c < PAUSE_CAUSE_COUNT; c++)
        value(p, "moor_read_pauses_total", "cause", pause_cause_name(c),
              SUM_CONN(v, paused_total[c]));
    scalar(p, "moor_queued_bytes", SUM_CONN(v, queued_bytes));
    scalar(p, "moor_queue_overflows_total", SUM_CONN(v, queue_overflows));
    scalar(p, "moor_carry_saves_total", SUM_CONN(v, carry_saves));
    scalar(p, "moor_bytes_received_total", SUM_CONN(v, bytes_in));
    scalar(p, "moor_bytes_sent_total", SUM_CONN(v, bytes_out));
}

static void render_http(struct page *p, const struct metrics_view *v)
{
    static const char *const cls[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
    char code[8];

    scalar(p, "moor_http_requests_total", SUM_HTTP(v, requests));
    family(p, "moor_http_responses_total");
    for (int c = 1; c <= 5; c++)
        value(p, "moor_http_responses_total", "code", cls[c],
              SUM_HTTP(v, responses[c]));
    family(p, "moor_http_rejected_total");
    for (unsigned i = 0; i < HTTP_REJECT_COUNT; i++) {
        snprintf(code, sizeof(code), "%d", http_reject_code(i));
        value(p, "moor_http_rejected_total", "status", code,
              SUM_HTTP(v, rejected[i]));
    }
}

/* Beside the accounted bytes: what the process holds (VmRSS) and what
 * the trims gave back (mem.h, "Giving memory back"). */
static void render_trim(struct page *p)
{
    struct mem_trim_stats ts;

    mem_trim_stats(&ts);
    scalar(p, "moor_process_resident_memory_bytes", (double)mem_process_rss());
    scalar(p, "moor_mem_trims_total", (double)ts.trims);
    scalar(p, "moor_mem_trims_backed_off_total", (double)ts.backed_off);
    scalar(p, "moor_mem_trimmed_bytes_total", (double)ts.given_back);
    scalar(p, "moor_mem_trim_seconds_total", (double)ts.ns / 1e9);
}

/* A family with one value per memory tag: field f of each tag's stats. */
#define BY_TAG(p, st, name, f)                                                 \
    do {                                                                       \
        family(p, name);                                                       \
        for (int t_ = 0; t_ < MEM_TAG_COUNT; t_++)                             \
            value(p, name, "tag", mem_tag_name(t_), (double)(st)[t_].f);       \
    } while (0)

static void render_mem(struct page *p)
{
    struct mem_tag_stats st[MEM_TAG_COUNT];

    for (int t = 0; t < MEM_TAG_COUNT; t++)
        mem_stats((enum mem_tag)t, &st[t]);
    BY_TAG(p, st, "moor_mem_live_bytes", live_bytes);
    BY_TAG(p, st, "moor_mem_live_allocations", live_count);
    BY_TAG(p, st, "moor_mem_allocations_total", total_allocs);
    BY_TAG(p, st, "moor_mem_allocated_bytes_total", total_bytes);
    BY_TAG(p, st, "moor_mem_failed_allocations_total", failed);
    scalar(p, "moor_mem_budget_bytes", (double)mem_budget());
    scalar(p, "moor_mem_over_budget", mem_over_budget());
    render_trim(p);
}

/* A histogram family over CONN_LAT_BOUNDS_US (in seconds): counts per
 * bucket, their sum in seconds. */
static void latency_hist(struct page *p, const char *name,
                         const double counts[CONN_LAT_BUCKETS], double sum_s)
{
    static const uint64_t bounds[CONN_LAT_BUCKETS] = CONN_LAT_BOUNDS_US;
    char le[32], series[96];
    double cum = 0;

    family(p, name);
    snprintf(series, sizeof(series), "%s_bucket", name);
    for (int b = 0; b < CONN_LAT_BUCKETS; b++) {
        cum += counts[b];
        if (bounds[b] == UINT64_MAX)
            snprintf(le, sizeof(le), "+Inf");
        else
            snprintf(le, sizeof(le), "%g", (double)bounds[b] / 1e6);
        value(p, series, "le", le, cum);
    }
    snprintf(series, sizeof(series), "%s_sum", name);
    value(p, series, NULL, NULL, sum_s);
    snprintf(series, sizeof(series), "%s_count", name);
    value(p, series, NULL, NULL, cum);
}

/* --auth: requests allowed and refused, by reason; expiries; reloads.
 * Shown (as zeros) without --auth too, so dashboards need no guard. */
static void render_auth(struct page *p, const struct metrics_view *v)
{
    static const struct auth_stats none;
    const struct auth_stats *st = v->auth ? auth_stats(v->auth) : &none;

    family(p, "moor_auth_total");
    put(p, "moor_auth_total{result=\"allowed\",reason=\"%s\"} %llu\n",
        v->auth && auth_is_callback(v->auth) ? "callback" : "token",
        (unsigned long long)st->allowed);
    for (unsigned r = 1; r < AUTH_REASON_COUNT; r++)
        if (r != AUTH_NO_SESSION) /* counted as no_memory */
            put(p, "moor_auth_total{result=\"denied\",reason=\"%s\"} %llu\n",
                auth_reason_name(r), (unsigned long long)st->denied[r]);
    scalar(p, "moor_auth_expired_total", (double)st->expired);
    scalar(p, "moor_auth_connections", (double)st->sessions);
    scalar(p, "moor_auth_callback_calls_total", (double)st->cb_calls);
    scalar(p, "moor_auth_callback_inflight", (double)st->cb_inflight);
    scalar(p, "moor_auth_callback_cache_hits_total", (double)st->cb_cache_hits);
    scalar(p, "moor_auth_callback_cached", (double)st->cb_cached);
    {
        double counts[CONN_LAT_BUCKETS];

        for (int b = 0; b < CONN_LAT_BUCKETS; b++)
            counts[b] = (double)st->cb_lat[b];
        latency_hist(p, "moor_auth_callback_seconds", counts, st->cb_lat_sum_s);
    }
    family(p, "moor_auth_reloads_total");
    value(p, "moor_auth_reloads_total", "result", "ok", (double)st->reloads_ok);
    value(p, "moor_auth_reloads_total", "result", "failed",
          (double)st->reloads_failed);
}

/* SIGHUP rereads of --config (moor serve; zeros elsewhere). */
static void render_config(struct page *p, const struct metrics_view *v)
{
    family(p, "moor_config_reloads_total");
    value(p, "moor_config_reloads_total", "result", "ok",
          (double)v->config_reloads_ok);
    value(p, "moor_config_reloads_total", "result", "failed",
          (double)v->config_reloads_failed);
}

/* The feeds of the live page (moor serve; zeros elsewhere). */
static void render_debug_streams(struct page *p, const struct metrics_view *v)
{
    scalar(p, "moor_debug_streams", (double)v->debug_streams);
    scalar(p, "moor_debug_streams_refused_total",
           (double)v->debug_streams_refused);
}

/* --influx-url: the push's points and writes (zeros without it). */
static void render_influx(struct page *p, const struct metrics_view *v)
{
    static const struct influx_stats none;
    const struct influx_stats *st = v->influx ? influx_stats(v->influx) : &none;

    family(p, "moor_influx_points_total");
    value(p, "moor_influx_points_total", "result", "written",
          (double)st->points_written);
    value(p, "moor_influx_points_total", "result", "dropped",
          (double)st->points_dropped);
    value(p, "moor_influx_points_total", "result", "rejected",
          (double)st->points_rejected);
    family(p, "moor_influx_writes_total");
    value(p, "moor_influx_writes_total", "result", "ok", (double)st->writes_ok);
    value(p, "moor_influx_writes_total", "result", "failed",
          (double)st->writes_failed);
    value(p, "moor_influx_writes_total", "result", "rejected",
          (double)st->writes_rejected);
    scalar(p, "moor_influx_queued_bytes", (double)st->queued_bytes);
    family(p, "moor_influx_sent_bytes_total");
    value(p, "moor_influx_sent_bytes_total", "encoding", "gzip",
          (double)st->sent_gzip_bytes);
    value(p, "moor_influx_sent_bytes_total", "encoding", "identity",
          (double)st->sent_identity_bytes);
}

static void render_pubsub(struct page *p, const struct metrics_view *v)
{
    double maxq = 0;

    scalar(p, "moor_pubsub_published_total", SUM_PS(v, published));
    scalar(p, "moor_pubsub_delivered_total", SUM_PS(v, delivered));
    family(p, "moor_pubsub_dropped_total");
    value(p, "moor_pubsub_dropped_total", "reason", "drop_oldest",
          SUM_PS(v, dropped_oldest));
    value(p, "moor_pubsub_dropped_total", "reason", "closing",
          SUM_PS(v, dropped_closing));
    family(p, "moor_pubsub_slow_disconnects_total");
    value(p, "moor_pubsub_slow_disconnects_total", "limit", "hard",
          SUM_PS(v, slow_disconnects));
    value(p, "moor_pubsub_slow_disconnects_total", "limit", "soft",
          SUM_PS(v, soft_disconnects));
    scalar(p, "moor_pubsub_refused_total", SUM_PS(v, refused_channels));
    scalar(p, "moor_pubsub_channels", SUM_PS(v, channels));
    scalar(p, "moor_pubsub_subscriptions", SUM_PS(v, subscriptions));
    scalar(p, "moor_pubsub_subscribers", SUM_PS(v, subscribers));
    for (unsigned i = 0; i < v->n_loops; i++)
        if (v->loops[i].pubsub &&
            pubsub_stats(v->loops[i].pubsub)->max_queued > maxq)
            maxq = pubsub_stats(v->loops[i].pubsub)->max_queued;
    {
        double counts[CONN_LAT_BUCKETS];

        for (int b = 0; b < CONN_LAT_BUCKETS; b++)
            counts[b] = SUM_CONN(v, lat_buckets[b]);
        latency_hist(p, "moor_pubsub_delivery_seconds", counts,
                     SUM_CONN(v, lat_sum_us) / 1e6);
    }
    scalar(p, "moor_pubsub_queue_max_bytes", maxq);
    scalar(p, "moor_history_messages", SUM_HIST(v, messages));
    scalar(p, "moor_history_bytes", SUM_HIST(v, bytes));
    scalar(p, "moor_history_channels", SUM_HIST(v, channels));
    family(p, "moor_history_evicted_total");
    for (int r = 0; r < HIST_EVICT_COUNT; r++)
        value(p, "moor_history_evicted_total", "reason",
              history_evict_name((enum history_evict)r),
              SUM_HIST(v, evicted[r]));
    scalar(p, "moor_history_replayed_total", SUM_HIST(v, replayed));
    family(p, "moor_history_resets_total");
    for (int r = HIST_RESET_EPOCH; r < HIST_FIND_COUNT; r++)
        value(p, "moor_history_resets_total", "reason",
              history_find_name((enum history_find)r), SUM_HIST(v, resets[r]));
}

int metrics_render(struct sbuf *o, const struct metrics_view *v)
{
    struct page pg = {.o = o}, *p = &pg;
    int64_t fds = mem_process_open_fds();

    family(p, "moor_build_info");
    value(p, "moor_build_info", "version", MOOR_VERSION, 1);
    scalar(p, "moor_start_time_seconds", (double)(v->start_wall_ms / 1000));
    scalar(p, "moor_loops", v->n_loops);
    render_conns(p, v);
    render_tls(p, v);
    render_http(p, v);
    render_pubsub(p, v);
    render_auth(p, v);
    render_config(p, v);
    render_debug_streams(p, v);
    render_influx(p, v);
    render_mem(p);
    scalar(p, "moor_log_suppressed_total", (double)log_suppressed_total());
    scalar(p, "moor_process_open_fds", (double)fds);
    return pg.err;
}

/* A stdio stream that appends to an sbuf, so mem's FILE-based dumps land
 * in accounted memory without a libc-owned buffer. */
static ssize_t sbuf_cookie_write(void *cookie, const char *p, size_t n)
{
    return sbuf_append(cookie, p, n) == 0 ? (ssize_t)n : -1;
}

int metrics_debug_mem(struct sbuf *o)
{
    struct page pg = {.o = o}, *p = &pg;
    struct mem_tag_stats st;
    struct mem_trim_stats ts;

    mem_trim_stats(&ts);
    put(p,
        "{\"live_bytes\":%" PRId64 ",\"rss_bytes\":%" PRId64
        ",\"budget_bytes\":%zu,\"trim\":{\"checks\":%" PRIu64
        ",\"trims\":%" PRIu64 ",\"backed_off\":%" PRIu64
        ",\"given_back_bytes\":%" PRIu64
        ",\"seconds\":%.6f},\"trace_enabled\":%s,\"tags\":{",
        mem_live_bytes(MEM_ALL), mem_process_rss(), mem_budget(), ts.checks,
        ts.trims, ts.backed_off, ts.given_back, (double)ts.ns / 1e9,
        mem_trace_enabled() ? "true" : "false");
    for (int t = 0; t < MEM_TAG_COUNT; t++) {
        mem_stats((enum mem_tag)t, &st);
        put(p,
            "%s\"%s\":{\"live_bytes\":%" PRId64 ",\"live_count\":%" PRId64
            ",\"total_allocs\":%" PRIu64 ",\"total_bytes\":%" PRIu64
            ",\"failed\":%" PRIu64 "}",
            t ? "," : "", mem_tag_name(t), st.live_bytes, st.live_count,
            st.total_allocs, st.total_bytes, st.failed);
    }
    put(p, "}");
    if (mem_trace_enabled()) {
        cookie_io_functions_t io = {.write = sbuf_cookie_write};
        FILE *f;

        put(p, ",\"trace\":");
        if (pg.err)
            return pg.err;
        f = fopencookie(o, "w", io);
        if (!f)
            return -ENOMEM;
        mem_trace_dump_json(f);
        if (fclose(f) != 0)
            return -ENOMEM;
    }
    put(p, "}\n");
    return pg.err;
}
