/*
 * soak_report.c - what `moor soak` tells: a progress line per round on
 * stderr (round, elapsed, the figures, the verdict so far), the samples
 * as CSV in --out (a row written and flushed as each round ends, so a
 * run that is cut short keeps them), and at the end the verdict: a table
 * on stdout and summary.json in --out, and the exit status.
 *
 * Keeps: the verdict is soak_stats.c's (soak_judge) on the samples after
 * the warm-up, never a judgement of its own; the series and their units
 * are named once, in series[] below.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "mem.h"
#include "soak_int.h"
#include "soak_plot.h"
#include "soak_stats.h"
#include "util.h"

static const struct {
    const char *name; /* CSV column, JSON key */
    enum soak_kind kind;
} series[S_NSERIES] = {
    [S_RSS] = {"rss_bytes", SOAK_BYTES},
    [S_ANON] = {"rss_anon_bytes", SOAK_BYTES},
    [S_PSS] = {"pss_bytes", SOAK_BYTES},
    [S_PRIV] = {"private_bytes", SOAK_BYTES},
    [S_FDS] = {"fds", SOAK_COUNT},
    [S_THREADS] = {"threads", SOAK_COUNT},
    [S_LIVE] = {"live_bytes", SOAK_BYTES},
};

const char *soak_series_name(enum soak_series i)
{
    return series[i].name;
}

static void fmt_bytes(double v, char *buf, size_t len)
{
    double a = fabs(v);

    if (a >= 1024.0 * 1024 * 1024)
        snprintf(buf, len, "%.2fGiB", v / (1024.0 * 1024 * 1024));
    else if (a >= 1024.0 * 1024)
        snprintf(buf, len, "%.2fMiB", v / (1024.0 * 1024));
    else if (a >= 1024.0)
        snprintf(buf, len, "%.1fKiB", v / 1024.0);
    else
        snprintf(buf, len, "%.0fB", v);
}

static void fmt_value(enum soak_kind k, double v, char *buf, size_t len)
{
    if (k == SOAK_BYTES)
        fmt_bytes(v, buf, len);
    else
        snprintf(buf, len, "%.3g", v);
}

int soak_out_open(struct soak *s, int argc, char **argv, char *err,
                  size_t errlen)
{
    char path[600];

    (void)argc;
    (void)argv;
    if (!s->o.out[0])
        return 0;
    if (mkdir(s->o.out, 0777) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot make --out %s: %s", s->o.out,
                 strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/samples.csv", s->o.out);
    s->csv = fopen(path, "we");
    if (!s->csv) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(s->csv, "round,elapsed_s");
    for (int i = 0; i < S_NSERIES; i++)
        fprintf(s->csv, ",%s", series[i].name);
    fprintf(s->csv, ",opened,failed,received,faults");
    for (uint32_t i = 0; i < s->ntags; i++)
        fprintf(s->csv, ",live_bytes_%s", s->tags[i]);
    fprintf(s->csv, "\n");
    fflush(s->csv);
    return 0;
}

void soak_out_sample(struct soak *s, const struct soak_sample *smp)
{
    if (!s->csv)
        return;
    fprintf(s->csv, "%" PRIu32 ",%.3f", smp->round, smp->elapsed);
    for (int i = 0; i < S_NSERIES; i++) {
        if (smp->have[i])
            fprintf(s->csv, ",%.0f", smp->v[i]);
        else
            fprintf(s->csv, ",");
    }
    fprintf(s->csv, ",%" PRIu32 ",%" PRIu32 ",%" PRIu32 ",%" PRIu32,
            smp->opened, smp->failed, smp->received, smp->faults);
    for (uint32_t i = 0; i < s->ntags; i++)
        fprintf(s->csv, ",%.0f", smp->have[S_LIVE] ? smp->tag[i] : 0.0);
    fprintf(s->csv, "\n");
    fflush(s->csv);
}

void soak_out_close(struct soak *s)
{
    if (s->csv)
        fclose(s->csv);
    s->csv = NULL;
}

/* The measured samples of series i into y (the warm-up left out). Returns
 * how many, or 0 when a sample lacks it. tag >= 0: that /debug/mem tag. */
static size_t measured(const struct soak *s, int i, int tag, double *y)
{
    size_t n = 0;

    for (uint32_t r = s->o.warmup; r < s->nsamples; r++) {
        const struct soak_sample *smp = &s->samples[r];

        if (!smp->have[i])
            return 0;
        y[n++] = tag >= 0 ? smp->tag[tag] : smp->v[i];
    }
    return n;
}

/* Connection cycles per round: the --conns ones, the faults and the
 * publisher. */
static double cycles(const struct soak *s)
{
    return (double)s->o.conns + (double)s->o.fault_conns + (s->pubsub ? 1 : 0);
}

struct judged {
    char name[48];
    enum soak_kind kind;
    int series, tag; /* which samples: v[series], or tag[tag] if >= 0 */
    struct soak_judgement j;
    bool ok;
};

/* Judges every series (and, with tags, every /debug/mem tag) that has a
 * value in every measured round. Returns how many went into out. */
static size_t judge_all(const struct soak *s, struct judged *out, size_t cap,
                        double *y, bool tags)
{
    size_t k = 0;

    for (int i = 0; i < S_NSERIES && k < cap; i++) {
        size_t n = measured(s, i, -1, y);

        if (n < SOAK_MIN_SAMPLES)
            continue;
        snprintf(out[k].name, sizeof(out[k].name), "%s", series[i].name);
        out[k].kind = series[i].kind;
        out[k].series = i;
        out[k].tag = -1;
        out[k].ok = soak_judge(y, n, series[i].kind,
                               (double)s->o.leak_threshold, &out[k].j) == 0;
        k += out[k].ok;
    }
    for (uint32_t t = 0; tags && t < s->ntags && k < cap; t++) {
        size_t n = measured(s, S_LIVE, (int)t, y);

        if (n < SOAK_MIN_SAMPLES)
            continue;
        snprintf(out[k].name, sizeof(out[k].name), "live_bytes{tag=%s}",
                 s->tags[t]);
        out[k].kind = SOAK_BYTES;
        out[k].series = S_LIVE;
        out[k].tag = (int)t;
        out[k].ok = soak_judge(y, n, SOAK_BYTES, (double)s->o.leak_threshold,
                               &out[k].j) == 0;
        k += out[k].ok;
    }
    return k;
}

#define MAX_JUDGED (S_NSERIES + SOAK_MAX_TAGS)

void soak_progress(struct soak *s, const struct soak_sample *smp)
{
    char rss[32], pss[32], live[32] = "-", verdict[200] = "warming up";
    struct judged *jd = NULL;
    double *y = NULL;

    fmt_bytes(smp->v[S_RSS], rss, sizeof(rss));
    fmt_bytes(smp->v[S_PSS], pss, sizeof(pss));
    if (smp->have[S_LIVE])
        fmt_bytes(smp->v[S_LIVE], live, sizeof(live));
    if (s->nsamples >= s->o.warmup + SOAK_MIN_SAMPLES) {
        jd = mem_calloc(MEM_MISC, MAX_JUDGED, sizeof(*jd));
        y = mem_calloc(MEM_MISC, s->nsamples, sizeof(*y));
    }
    if (jd && y) {
        /* The tags only at the end: a round of an hours-long run should
         * not spend seconds on fits. */
        size_t n = judge_all(s, jd, MAX_JUDGED, y, false), w = 0;

        for (size_t i = 0; i < n && w < sizeof(verdict); i++)
            if (jd[i].j.call == SOAK_LEAK)
                w += (size_t)snprintf(verdict + w, sizeof(verdict) - w, "%s%s",
                                      w ? ", " : "leaking: ", jd[i].name);
        if (!w)
            snprintf(verdict, sizeof(verdict), "flat so far");
    } else if (s->nsamples > s->o.warmup) {
        snprintf(verdict, sizeof(verdict), "measuring (%" PRIu32 " of %d)",
                 s->nsamples - s->o.warmup, SOAK_MIN_SAMPLES);
    }
    fprintf(stderr,
            "round %" PRIu32 "%s  %.1fs  rss %s  pss %s  fds %.0f  threads "
            "%.0f  live %s  open %" PRIu32 "/%" PRIu32 " received %" PRIu32
            " faults %" PRIu32 "  %s\n",
            smp->round, smp->round <= s->o.warmup ? " (warm-up)" : "",
            smp->elapsed, rss, pss, smp->v[S_FDS], smp->v[S_THREADS], live,
            smp->opened, s->o.conns, smp->received, smp->faults, verdict);
    mem_free(MEM_MISC, y);
    mem_free(MEM_MISC, jd);
}

static void json_str(FILE *f, const char *p)
{
    fputc('"', f);
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_summary(const struct soak *s, int argc, char **argv,
                          const struct judged *jd, size_t n, const char *status,
                          int code)
{
    char path[600];
    FILE *f;

    if (!s->o.out[0])
        return;
    snprintf(path, sizeof(path), "%s/summary.json", s->o.out);
    f = fopen(path, "we");
    if (!f) {
        fprintf(stderr, "moor soak: cannot write %s: %s\n", path,
                strerror(errno));
        return;
    }
    fprintf(f, "{\"command\":");
    {
        char cmd[2048] = "moor soak";
        size_t w = strlen(cmd);

        for (int i = 0; i < argc && w < sizeof(cmd); i++)
            w += (size_t)snprintf(cmd + w, sizeof(cmd) - w, " %s", argv[i]);
        json_str(f, cmd);
    }
    fprintf(f, ",\"url\":");
    json_str(f, s->o.url);
    fprintf(f,
            ",\"pid\":%d,\"rounds\":%" PRIu32 ",\"warmup\":%" PRIu32
            ",\"conns\":%" PRIu32 ",\"fault_conns\":%" PRIu32
            ",\"leak_threshold_bytes\":%" PRIu64 ",\"status\":",
            (int)s->pid, s->nsamples, s->o.warmup, s->o.conns, s->o.fault_conns,
            s->o.leak_threshold);
    json_str(f, status);
    fprintf(f, ",\"exit\":%d,\"lost\":", code);
    if (s->lost[0])
        json_str(f, s->lost);
    else
        fprintf(f, "null");
    fprintf(f, ",\"moor\":%s,\"series\":{", s->moor_mem ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        const struct soak_fit *a = &jd[i].j.all;

        fprintf(f, "%s", i ? "," : "");
        json_str(f, jd[i].name);
        fprintf(f,
                ":{\"call\":\"%s\",\"slope_per_round\":%.6g,\"ci_low\":%.6g,"
                "\"ci_high\":%.6g,\"per_conn_cycle\":%.6g,\"growth\":%.6g,"
                "\"intercept\":%.6g,\"tail_slope\":%.6g,\"samples\":%zu}",
                soak_call_name(jd[i].j.call), a->slope, a->lo, a->hi,
                a->slope / cycles(s), a->growth, a->intercept,
                jd[i].j.tail.slope, a->n);
    }
    fprintf(f, "}}\n");
    fclose(f);
}

/* plot.svg and report.html in --out: the series of the table (a flat
 * /debug/mem tag left out, as there), every round of each. */
static void write_plot(const struct soak *s, int argc, char **argv,
                       const struct judged *jd, size_t n, const char *status,
                       const char *verdict)
{
    struct soak_plot_series *ps = NULL;
    struct soak_plot_page pg;
    char cmd[2048] = "moor soak", details[512], err[700];
    double *y = NULL;
    size_t k = 0, w = strlen(cmd);

    if (!s->o.out[0] || !n || !s->nsamples)
        return;
    ps = mem_calloc(MEM_MISC, n, sizeof(*ps));
    y = mem_calloc(MEM_MISC, n * s->nsamples, sizeof(*y));
    if (!ps || !y)
        goto out;
    for (size_t i = 0; i < n; i++) {
        double *row = y + k * s->nsamples;

        if (jd[i].tag >= 0 && jd[i].j.call == SOAK_FLAT)
            continue;
        for (uint32_t r = 0; r < s->nsamples; r++)
            row[r] = jd[i].tag >= 0 ? s->samples[r].tag[jd[i].tag]
                                    : s->samples[r].v[jd[i].series];
        ps[k++] = (struct soak_plot_series){.name = jd[i].name,
                                            .kind = jd[i].kind,
                                            .y = row,
                                            .n = s->nsamples,
                                            .j = &jd[i].j};
    }
    for (int i = 0; i < argc && w < sizeof(cmd); i++)
        w += (size_t)snprintf(cmd + w, sizeof(cmd) - w, " %s", argv[i]);
    snprintf(details, sizeof(details),
             "Target %.200s, pid %d%s; %" PRIu32 " rounds (%" PRIu32
             " of them warm-up) of %" PRIu32 " connections and %" PRIu32
             " fault connections; leak threshold %" PRIu64 " bytes.",
             s->o.url, (int)s->pid,
             s->moor_mem ? " (moor: /debug/mem read)" : "", s->nsamples,
             s->o.warmup, s->o.conns, s->o.fault_conns, s->o.leak_threshold);
    pg = (struct soak_plot_page){.status = status,
                                 .verdict = verdict,
                                 .command = cmd,
                                 .details = details,
                                 .warmup = s->o.warmup,
                                 .cycles = cycles(s)};
    if (soak_plot_write(s->o.out, ps, k, &pg, err, sizeof(err)) < 0)
        fprintf(stderr, "moor soak: %s\n", err);
out:
    mem_free(MEM_MISC, y);
    mem_free(MEM_MISC, ps);
}

/* Whether the process's memory leaks while moor's own accounting
 * (/debug/mem's live_bytes) is flat. */
static bool outside_accounting(const struct judged *jd, size_t n)
{
    bool live_flat = false, rss_leak = false;

    for (size_t i = 0; i < n; i++) {
        if (!strcmp(jd[i].name, "live_bytes"))
            live_flat = jd[i].j.call != SOAK_LEAK;
        if (!strcmp(jd[i].name, "rss_bytes") ||
            !strcmp(jd[i].name, "private_bytes"))
            rss_leak |= jd[i].j.call == SOAK_LEAK;
    }
    return live_flat && rss_leak;
}

int soak_verdict(struct soak *s, int argc, char **argv)
{
    struct judged *jd = mem_calloc(MEM_MISC, MAX_JUDGED, sizeof(*jd));
    double *y = mem_calloc(MEM_MISC, MAX(s->nsamples, 1u), sizeof(*y));
    size_t n = 0, leaks = 0;
    const char *status;
    char verdict[300];
    int code;

    if (!jd || !y) {
        mem_free(MEM_MISC, y);
        mem_free(MEM_MISC, jd);
        fprintf(stderr, "moor soak: out of memory\n");
        return 2;
    }
    if (s->nsamples >= s->o.warmup + SOAK_MIN_SAMPLES)
        n = judge_all(s, jd, MAX_JUDGED, y, true);
    if (n) {
        printf("%-28s %14s %25s %12s %12s  %s\n", "series", "slope/round",
               "95% interval", "per conn", "growth", "verdict");
        for (size_t i = 0; i < n; i++) {
            const struct soak_fit *a = &jd[i].j.all;
            char sl[32], lo[32], hi[32], pc[32], gr[32], iv[70];

            leaks += jd[i].j.call == SOAK_LEAK;
            /* A /debug/mem tag gets a row only when it is not flat (the
             * JSON summary has them all). */
            if (!strncmp(jd[i].name, "live_bytes{", 11) &&
                jd[i].j.call == SOAK_FLAT)
                continue;

            fmt_value(jd[i].kind, a->slope, sl, sizeof(sl));
            fmt_value(jd[i].kind, a->lo, lo, sizeof(lo));
            fmt_value(jd[i].kind, a->hi, hi, sizeof(hi));
            fmt_value(jd[i].kind, a->slope / cycles(s), pc, sizeof(pc));
            fmt_value(jd[i].kind, a->growth, gr, sizeof(gr));
            snprintf(iv, sizeof(iv), "[%s, %s]", lo, hi);
            printf("%-28s %14s %25s %12s %12s  %s\n", jd[i].name, sl, iv, pc,
                   gr, soak_call_name(jd[i].j.call));
        }
    }
    if (s->lost[0]) {
        status = "target lost";
        code = 2;
        snprintf(verdict, sizeof(verdict), "target lost: %.250s", s->lost);
        fprintf(stderr, "moor soak: %s; %" PRIu32 " rounds sampled%s%s\n",
                s->lost, s->nsamples, s->o.out[0] ? ", kept in " : "",
                s->o.out[0] ? s->o.out : "");
    } else if (!n) {
        status = "too few rounds";
        code = s->interrupted ? 130 : 2;
        snprintf(verdict, sizeof(verdict), "too few rounds for a verdict");
        fprintf(stderr,
                "moor soak: %" PRIu32 " rounds after the warm-up of %" PRIu32
                ": at least %d are needed for a verdict\n",
                s->nsamples > s->o.warmup ? s->nsamples - s->o.warmup : 0,
                s->o.warmup, SOAK_MIN_SAMPLES);
    } else if (leaks) {
        size_t vw = (size_t)snprintf(verdict, sizeof(verdict), "LEAK in");

        status = "leak";
        code = s->interrupted ? 130 : 1;
        for (size_t i = 0; i < n; i++)
            if (jd[i].j.call == SOAK_LEAK && vw < sizeof(verdict))
                vw += (size_t)snprintf(verdict + vw, sizeof(verdict) - vw,
                                       " %s", jd[i].name);
        printf("verdict: %s", verdict);
        printf(" (%" PRIu32 " rounds, %" PRIu32 " of them warm-up)\n",
               s->nsamples, s->o.warmup);
        if (outside_accounting(jd, n))
            printf("note: moor's accounted live bytes stayed flat: the growth "
                   "is memory held outside its allocations (the allocator, "
                   "a sanitizer's quarantine, a library)\n");
    } else {
        bool ret = false;

        for (size_t i = 0; i < n; i++)
            ret |= jd[i].j.call == SOAK_RETENTION;
        status = ret ? "retention" : "no leak";
        code = s->interrupted ? 130 : 0;
        snprintf(verdict, sizeof(verdict), "no leak%s",
                 ret ? "; memory rose and levelled off: allocator retention"
                     : "");
        printf("verdict: no leak%s (%" PRIu32 " rounds, %" PRIu32
               " of them warm-up)\n",
               ret ? "; memory rose and levelled off: allocator retention" : "",
               s->nsamples, s->o.warmup);
    }
    if (s->interrupted)
        fprintf(stderr, "moor soak: interrupted after round %" PRIu32 "\n",
                s->nsamples);
    write_summary(s, argc, argv, jd, n, status, code);
    write_plot(s, argc, argv, jd, n, status, verdict);
    mem_free(MEM_MISC, y);
    mem_free(MEM_MISC, jd);
    return code;
}
