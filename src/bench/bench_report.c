/*
 * bench_report.c - what `moor bench` says: progress lines (bench_note),
 * failure reasons counted by kind, the figures every mode shares (the
 * measuring window, latency quantiles, CPU), the exit status, and the
 * final report, as a table or one JSON object (--json). Each mode prints
 * its own figures through its report hooks.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bench_int.h"
#include "buf.h"
#include "hist.h"
#include "util.h"

/* Seconds the connecting phase took (0 if it never ended). */
double bench_open_secs(const struct bench *b)
{
    return b->t_open > b->t_connect ? (double)(b->t_open - b->t_connect) / 1e9
                                    : 0.0;
}

void bench_count_reason(struct reasons *r, const char *what)
{
    uint32_t i;

    if (!what || !*what)
        what = "unknown";
    for (i = 0; i < r->used; i++) {
        if (!strcmp(r->r[i].what, what)) {
            r->r[i].n++;
            return;
        }
    }
    if (r->used == MAX_REASONS) {
        /* The last slot collects whatever does not fit. */
        i = MAX_REASONS - 1;
        snprintf(r->r[i].what, sizeof(r->r[i].what), "other");
        r->r[i].n++;
        return;
    }
    snprintf(r->r[r->used].what, sizeof(r->r[r->used].what), "%s", what);
    r->r[r->used++].n = 1;
}

/* "connection refused: 3, handshake: HTTP 503: 2" */
void bench_format_reasons(const struct reasons *r, char *out, size_t len)
{
    size_t n = 0;

    out[0] = '\0';
    for (uint32_t i = 0; i < r->used && n < len; i++) {
        int w = snprintf(out + n, len - n, "%s%s: %" PRIu32, i ? ", " : "",
                         r->r[i].what, r->r[i].n);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

void bench_json_reasons(FILE *out, const struct reasons *r)
{
    fputc('{', out);
    for (uint32_t i = 0; i < r->used; i++) {
        if (i)
            fputs(", ", out);
        json_fput_str(out, r->r[i].what, strlen(r->r[i].what));
        fprintf(out, ": %" PRIu32, r->r[i].n);
    }
    fputc('}', out);
}

void bench_note(const struct bench *b, const char *fmt, ...)
{
    va_list ap;

    if (b->o.json)
        return;
    va_start(ap, fmt);
    fputs("moor bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double bench_window_secs(const struct bench *b)
{
    uint64_t end = b->t1 ? b->t1 : mono_ns();

    return b->t0 && end > b->t0 ? (double)(end - b->t0) / 1e9 : 0.0;
}

double bench_cpu_pct(uint64_t from, uint64_t to, double secs)
{
    return to > from && secs > 0 ? (double)(to - from) / 1e7 / secs : 0.0;
}

static void fmt_ns(uint64_t ns, char *out, size_t len)
{
    if (ns < 10000)
        snprintf(out, len, "%.2f us", ns / 1e3);
    else if (ns < 1000000)
        snprintf(out, len, "%.0f us", ns / 1e3);
    else
        snprintf(out, len, "%.2f ms", ns / 1e6);
}

/* The latency and cpu lines of a report over a measuring window of secs
 * (echo, broadcast, handshake). */
void bench_latency_lines(struct bench *b, FILE *out, double secs)
{
    char p50[32], p99[32], p999[32], mx[32];

    fmt_ns(hist_quantile(b->lat, 0.50), p50, sizeof(p50));
    fmt_ns(hist_quantile(b->lat, 0.99), p99, sizeof(p99));
    fmt_ns(hist_quantile(b->lat, 0.999), p999, sizeof(p999));
    fmt_ns(hist_max(b->lat), mx, sizeof(mx));
    fprintf(out, "latency      p50 %s   p99 %s   p999 %s   max %s\n", p50, p99,
            p999, mx);
    if (secs > 0) {
        double self = bench_cpu_pct(b->cpu0, b->cpu1, secs);

        fprintf(out, "cpu          bench %.0f%% of a core", self);
        if (b->srv_cpu)
            fprintf(out, ", server %.0f%% (pid %d)",
                    bench_cpu_pct(b->srv_cpu0, b->srv_cpu1, secs), (int)b->pid);
        fprintf(out, "\n");
        if (self >= 90.0)
            fprintf(out, "warning      the bench kept its core busy: it may "
                         "have been the bottleneck\n");
    }
}

void bench_rate_lines(struct bench *b, FILE *out, double secs, const char *what,
                      const char *per_s)
{
    fprintf(out, "measured     %.2f s after a %.1f s warm-up: %" PRIu64 " %s\n",
            secs, b->o.warmup_ms / 1000.0, b->rcvd, what);
    fprintf(out, "%-12s %.0f\n", per_s, secs > 0 ? b->rcvd / secs : 0.0);
    bench_latency_lines(b, out, secs);
}

/* The same as JSON: "latency_us": {...}, "bench_cpu_pct": ...,
 * "server_cpu_pct": ... */
void bench_json_latency(struct bench *b, FILE *out, double secs)
{
    fprintf(out,
            "\"latency_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, "
            "\"max\": %.2f, \"mean\": %.2f}, \"bench_cpu_pct\": %.1f, "
            "\"server_cpu_pct\": ",
            hist_quantile(b->lat, 0.50) / 1e3,
            hist_quantile(b->lat, 0.99) / 1e3,
            hist_quantile(b->lat, 0.999) / 1e3, hist_max(b->lat) / 1e3,
            hist_mean(b->lat) / 1e3, bench_cpu_pct(b->cpu0, b->cpu1, secs));
    if (b->srv_cpu)
        fprintf(out, "%.1f", bench_cpu_pct(b->srv_cpu0, b->srv_cpu1, secs));
    else
        fputs("null", out);
}

/* The exit status the run earned (before the memory check). */
int bench_verdict(const struct bench *b)
{
    if (b->interrupted)
        return 130;
    if (b->fatal[0] || b->failed || b->lost)
        return 1;
    if (b->mode->invalid && b->mode->invalid(b))
        return 1;
    return 0;
}

void bench_report(struct bench *b)
{
    char why[512];

    if (b->o.json) {
        FILE *out = stdout;

        fprintf(out, "{\"mode\": ");
        json_fput_str(out, b->mode->name, strlen(b->mode->name));
        fprintf(out, ", \"url\": ");
        json_fput_str(out, b->o.url, strlen(b->o.url));
        fprintf(out,
                ", \"conns\": %" PRIu32 ", \"open\": %" PRIu32
                ", \"failed\": %" PRIu32 ", \"closed_early\": %" PRIu32
                ", \"sources\": %" PRIu32 ", \"failures\": ",
                b->o.conns, b->opened, b->failed, b->lost, b->nsrc);
        bench_json_reasons(out, &b->fail_why);
        fprintf(out, ", \"closed_early_reasons\": ");
        bench_json_reasons(out, &b->lost_why);
        fprintf(out, ", \"error\": ");
        if (b->fatal[0])
            json_fput_str(out, b->fatal, strlen(b->fatal));
        else
            fputs("null", out);
        fputs(", ", out);
        b->mode->report_json(b, out);
        fprintf(out, ", \"exit\": %d}\n", bench_verdict(b));
        return;
    }
    b->mode->report(b, stdout);
    if (b->failed) {
        bench_format_reasons(&b->fail_why, why, sizeof(why));
        printf("failed       %" PRIu32 ": %s\n", b->failed, why);
    }
    if (b->lost) {
        bench_format_reasons(&b->lost_why, why, sizeof(why));
        printf("closed early %" PRIu32 ": %s\n", b->lost, why);
    }
}
