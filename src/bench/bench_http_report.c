/*
 * bench_http_report.c - what `moor bench http` says at the end: the
 * request loop's rate, latency, failures and client CPU, or the idle
 * hold's memory per pooled connection; as a table, or one JSON object
 * (--json). The run itself is bench_http.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench_http.h"
#include "bench_int.h"
#include "buf.h"
#include "hist.h"
#include "mem.h"
#include "util.h"

/* The tags an idle pooled connection is expected to hold bytes under;
 * any other tag that grew is shown too. */
static const enum mem_tag main_tags[] = {MEM_CONN, MEM_HTTPC, MEM_TLS, MEM_DNS};

static bool is_main_tag(int t)
{
    for (size_t i = 0; i < ARRAY_SIZE(main_tags); i++)
        if ((int)main_tags[i] == t)
            return true;
    return false;
}

static double window_secs(const struct hb *hb)
{
    return hb->t1 > hb->t0 ? (double)(hb->t1 - hb->t0) / 1e9 : 0.0;
}

static double cpu_secs(const struct hb *hb)
{
    return hb->cpu1 > hb->cpu0 ? (double)(hb->cpu1 - hb->cpu0) / 1e9 : 0.0;
}

/* Seconds the connections were held idle (less than --idle-hold when
 * the run was cut short). */
static double hold_secs(const struct hb *hb)
{
    return hb->hold1 > hb->hold0 ? (double)(hb->hold1 - hb->hold0) / 1e9 : 0.0;
}

/* Connections idle at the end of the hold: what the growth is over. */
static uint32_t held(const struct hb *hb)
{
    return hb->st_end.idle > 0 ? (uint32_t)hb->st_end.idle : 0;
}

/* (a - b) / n, or INT64_MIN when not known. */
static int64_t per(int64_t b, int64_t a, uint32_t n, bool ok)
{
    return ok && n && a >= 0 && b >= 0 ? (a - b) / (int64_t)n : INT64_MIN;
}

static int64_t accounted_all(const struct hb_mem *m)
{
    int64_t n = 0;

    for (int t = 0; t < MEM_TAG_COUNT; t++)
        n += m->tag[t];
    return n;
}

static void json_num(FILE *out, const char *name, int64_t v)
{
    if (v == INT64_MIN)
        fprintf(out, "\"%s\": null", name);
    else
        fprintf(out, "\"%s\": %" PRId64, name, v);
}

static void json_pool(FILE *out, const struct moor_http_client_stats *s)
{
    fprintf(out,
            "{\"active\": %ld, \"idle\": %ld, \"dialing\": %ld, \"waiting\": "
            "%ld, \"requests\": %" PRIu64 ", \"conns_new\": %" PRIu64
            ", \"conns_reused\": %" PRIu64 ", \"retries\": %" PRIu64
            ", \"closed_idle_timeout\": %" PRIu64
            ", \"closed_max_age\": %" PRIu64 ", \"closed_peer\": %" PRIu64
            ", \"closed_abandoned\": %" PRIu64 ", \"closed_error\": %" PRIu64
            ", \"closed_pool_full\": %" PRIu64
            ", \"closed_by_response\": %" PRIu64 ", \"bytes_held\": %" PRId64
            ", \"tls_resumed\": %" PRIu64 ", \"tls_waited\": %" PRIu64 "}",
            s->active, s->idle, s->dialing, s->waiting, s->requests,
            s->conns_new, s->conns_reused, s->retries, s->closed_idle_timeout,
            s->closed_max_age, s->closed_peer, s->closed_abandoned,
            s->closed_error, s->closed_pool_full, s->closed_by_response,
            s->bytes_held, s->tls_resumed, s->tls_waited);
}

static void json_rss(FILE *out, const char *name, const struct hb_mem *m)
{
    if (m->ok)
        fprintf(out, "\"%s\": %" PRId64, name, m->m.vm_rss);
    else
        fprintf(out, "\"%s\": null", name);
}

/* ---- the request loop --------------------------------------------------- */

static void loop_table(const struct hb *hb, FILE *out)
{
    struct bench *b = hb->b;
    double secs = window_secs(hb), cpu = cpu_secs(hb);
    char why[512];

    fprintf(out, "http GET %s\n", b->o.url);
    fprintf(out,
            "connections  at most %" PRIu32 "; %" PRIu64 " opened (%" PRIu64
            " in the window), %" PRIu64 " requests on a pooled one, %" PRIu64
            " retried\n",
            hb->n, hb->st_end.conns_new, hb->st1.conns_new - hb->st0.conns_new,
            hb->st_end.conns_reused, hb->st_end.retries);
    /* The shared lines read these. */
    b->lat = hb->lat;
    b->rcvd = hb->requests;
    b->cpu0 = hb->cpu0;
    b->cpu1 = hb->cpu1;
    b->srv_cpu = false;
    bench_rate_lines(b, out, secs, "requests answered 2xx/3xx", "requests/s");
    b->lat = NULL;
    fprintf(out,
            "client cpu   %.2f s in the window: %.0f requests per CPU "
            "second\n",
            cpu, cpu > 0 ? hb->requests / cpu : 0.0);
    if (hb->requests)
        fprintf(out,
                "allocations  %.1f per request, %.0f bytes (moor's "
                "allocator, every tag)\n",
                (double)(hb->allocs1 - hb->allocs0) / hb->requests,
                (double)(hb->abytes1 - hb->abytes0) / hb->requests);
    if (b->o.rate)
        fprintf(out,
                "schedule     %" PRIu32 " requests/s; %" PRIu64 " waited "
                "for a free connection (timed from when they were due)\n",
                b->o.rate, hb->held);
    if (hb->errors) {
        bench_format_reasons(&hb->why, why, sizeof(why));
        fprintf(out, "failed       %" PRIu64 ": %s\n", hb->errors, why);
    }
}

static void loop_json(const struct hb *hb, FILE *out)
{
    const struct bench_opts *o = &hb->b->o;
    double secs = window_secs(hb), cpu = cpu_secs(hb);

    fprintf(out, "\"rate\": ");
    if (o->rate)
        fprintf(out, "%" PRIu32, o->rate);
    else
        fputs("null", out);
    fprintf(out,
            ", \"warmup_s\": %.3f, \"duration_s\": %.3f, \"requests\": %" PRIu64
            ", \"requests_per_s\": %.0f, \"errors\": %" PRIu64
            ", \"errors_by_reason\": ",
            o->warmup_ms / 1000.0, secs, hb->requests,
            secs > 0 ? hb->requests / secs : 0.0, hb->errors);
    bench_json_reasons(out, &hb->why);
    fprintf(
        out,
        ", \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, "
        "\"max_ms\": %.3f, \"mean_ms\": %.3f, \"cpu_s\": %.3f, "
        "\"cpu_pct\": %.1f, \"requests_per_cpu_s\": %.0f, \"conns_new\": "
        "%" PRIu64 ", \"conns_reused\": %" PRIu64
        ", \"conns_new_in_window\": %" PRIu64 ", \"retries\": %" PRIu64
        ", \"held\": %" PRIu64 ", \"allocs_per_request\": %.2f"
        ", \"alloc_bytes_per_request\": %.0f, \"pool\": ",
        hist_quantile(hb->lat, 0.50) / 1e6, hist_quantile(hb->lat, 0.99) / 1e6,
        hist_quantile(hb->lat, 0.999) / 1e6, hist_max(hb->lat) / 1e6,
        hist_mean(hb->lat) / 1e6, cpu, bench_cpu_pct(hb->cpu0, hb->cpu1, secs),
        cpu > 0 ? hb->requests / cpu : 0.0, hb->st_end.conns_new,
        hb->st_end.conns_reused, hb->st1.conns_new - hb->st0.conns_new,
        hb->st_end.retries, hb->held,
        hb->requests ? (double)(hb->allocs1 - hb->allocs0) / hb->requests : 0.0,
        hb->requests ? (double)(hb->abytes1 - hb->abytes0) / hb->requests
                     : 0.0);
    json_pool(out, &hb->st_end);
}

/* ---- the idle hold ------------------------------------------------------ */

static uint64_t burst_new(const struct hb *hb)
{
    return hb->st_idle.conns_new - hb->st_burst0.conns_new;
}

static uint64_t hold_closed_peer(const struct hb *hb)
{
    return hb->st_end.closed_peer - hb->st_idle.closed_peer;
}

static void mem_row(FILE *out, const char *label, const struct hb_mem *m)
{
    if (!m->ok) {
        fprintf(out, "  %-24s %10s %10s %10s\n", label, "-", "-", "-");
        return;
    }
    fprintf(out, "  %-24s %10" PRId64 " %10" PRId64 " %10" PRId64 "\n", label,
            m->m.vm_rss / 1024, m->m.rss_anon / 1024, accounted_all(m) / 1024);
}

static void hold_table(const struct hb *hb, FILE *out)
{
    const struct bench_opts *o = &hb->b->o;
    uint32_t n = held(hb);
    bool ok = hb->before.ok && hb->after.ok;
    int64_t rss = per(hb->before.m.vm_rss, hb->after.m.vm_rss, n, ok);
    int64_t trim =
        per(hb->before.m.vm_rss, hb->trimmed.m.vm_rss, n, ok && hb->trimmed.ok);
    char hold[48], why[512];

    fprintf(out, "http idle-hold %s\n", o->url);
    fprintf(out,
            "connections  %" PRIu64 " new of %" PRIu32
            " asked at once; %" PRIu32
            " idle in the pool after %.1f s, %" PRIu64 " closed by the "
            "server meanwhile\n",
            burst_new(hb), hb->n, n, hold_secs(hb), hold_closed_peer(hb));
    fprintf(out, "client memory (KiB)          %10s %10s %10s\n", "VmRSS",
            "RssAnon", "accounted");
    mem_row(out, "before", &hb->before);
    mem_row(out, "requests done", &hb->at_idle);
    snprintf(hold, sizeof(hold), "after %.1f s idle", hold_secs(hb));
    mem_row(out, hold, &hb->after);
    mem_row(out, "after malloc_trim(0)", &hb->trimmed);
    if (rss != INT64_MIN) {
        fprintf(out, "bytes per idle conn   VmRSS growth %" PRId64, rss);
        if (trim != INT64_MIN)
            fprintf(out, " (%" PRId64 " once glibc gives back freed heap)",
                    trim);
        fprintf(out, "\n");
        fprintf(out, "accounted per conn    %" PRId64 ":",
                per(accounted_all(&hb->before), accounted_all(&hb->after), n,
                    true));
        for (int t = 0; t < MEM_TAG_COUNT; t++) {
            int64_t d = hb->after.tag[t] - hb->before.tag[t];

            if (is_main_tag(t) || d)
                fprintf(out, " %s %" PRId64, mem_tag_name((enum mem_tag)t),
                        d / (int64_t)n);
        }
        fprintf(out, "\n");
    }
    fprintf(out,
            "pool         %ld idle, %ld active; %" PRIu64 " opened (%" PRIu64
            " resumed TLS, %" PRIu64 " waited for a handshake slot), "
            "closed: %" PRIu64 " by the server, %" PRIu64
            " idle timeout, %" PRIu64 " error\n",
            hb->st_end.idle, hb->st_end.active, hb->st_end.conns_new,
            hb->st_end.tls_resumed, hb->st_end.tls_waited,
            hb->st_end.closed_peer, hb->st_end.closed_idle_timeout,
            hb->st_end.closed_error);
    if (hb->errors) {
        bench_format_reasons(&hb->why, why, sizeof(why));
        fprintf(out, "failed       %" PRIu64 ": %s\n", hb->errors, why);
    }
}

static void hold_json(const struct hb *hb, FILE *out)
{
    uint32_t n = held(hb);
    bool ok = hb->before.ok && hb->after.ok;
    bool first = true;

    fprintf(out,
            "\"hold_s\": %.3f, \"conns_new\": %" PRIu64 ", \"idle\": %" PRIu32
            ", \"closed_peer\": %" PRIu64 ", \"errors\": %" PRIu64
            ", \"errors_by_reason\": ",
            hold_secs(hb), burst_new(hb), n, hold_closed_peer(hb), hb->errors);
    bench_json_reasons(out, &hb->why);
    fputs(", ", out);
    json_num(out, "bytes_per_conn",
             per(hb->before.m.vm_rss, hb->after.m.vm_rss, n, ok));
    fputs(", ", out);
    json_num(out, "bytes_per_conn_after_trim",
             per(hb->before.m.vm_rss, hb->trimmed.m.vm_rss, n,
                 ok && hb->trimmed.ok));
    fputs(", ", out);
    json_num(out, "accounted_per_conn",
             per(accounted_all(&hb->before), accounted_all(&hb->after), n,
                 hb->after.ok));
    fputs(", \"accounted_per_conn_by_tag\": {", out);
    for (int t = 0; t < MEM_TAG_COUNT; t++) {
        int64_t d = hb->after.tag[t] - hb->before.tag[t];

        if (!is_main_tag(t) && !d)
            continue;
        fprintf(out, "%s", first ? "" : ", ");
        first = false;
        json_num(out, mem_tag_name((enum mem_tag)t),
                 per(hb->before.tag[t], hb->after.tag[t], n, hb->after.ok));
    }
    fputs("}, \"rss\": {", out);
    json_rss(out, "before", &hb->before);
    fputs(", ", out);
    json_rss(out, "requests_done", &hb->at_idle);
    fputs(", ", out);
    json_rss(out, "after_hold", &hb->after);
    fputs(", ", out);
    json_rss(out, "after_trim", &hb->trimmed);
    fputs("}, \"pool\": ", out);
    json_pool(out, &hb->st_end);
}

void bench_http_report(const struct hb *hb, int status)
{
    const struct bench_opts *o = &hb->b->o;
    FILE *out = stdout;

    if (!o->json) {
        if (o->idle_hold_ms)
            hold_table(hb, out);
        else
            loop_table(hb, out);
        return;
    }
    fprintf(out, "{\"mode\": \"http\", \"url\": ");
    json_fput_str(out, o->url, strlen(o->url));
    fprintf(out, ", \"conns\": %" PRIu32 ", ", hb->n);
    if (o->idle_hold_ms)
        hold_json(hb, out);
    else
        loop_json(hb, out);
    fprintf(out, ", \"error\": ");
    if (hb->fatal[0])
        json_fput_str(out, hb->fatal, strlen(hb->fatal));
    else
        fputs("null", out);
    fprintf(out, ", \"exit\": %d}\n", status);
}

int bench_http_verdict(const struct hb *hb)
{
    if (hb->interrupted)
        return 130;
    if (hb->fatal[0] || hb->errors)
        return 1;
    if (hb->b->o.idle_hold_ms) /* n new connections, some still pooled */
        return burst_new(hb) == hb->n && held(hb) > 0 ? 0 : 1;
    return hb->requests ? 0 : 1;
}

void bench_http_notes(const struct hb *hb)
{
    if (hb->b->o.idle_hold_ms && hold_closed_peer(hb))
        fprintf(stderr,
                "moor bench: the server closed %" PRIu64 " of the idle "
                "connections during the hold (its keep-alive timeout?)\n",
                hold_closed_peer(hb));
    if (hb->fatal[0] && !hb->interrupted)
        fprintf(stderr, "moor bench: %s\n", hb->fatal);
    else if (hb->interrupted)
        fprintf(stderr, "moor bench: interrupted\n");
}
