/*
 * soak_main.c - `moor soak [flags]`: drives a WebSocket echo server round
 * after round and says whether its memory, fds or threads leak. This
 * file is the command: the flags, the checks, the rounds, the verdict,
 * each from the file that owns it:
 *
 *   soak_flags.c   the flag table (flags.h's engine) and --help
 *   soak_conns.c   a round's connections: echo, faults, hold, close
 *                  (ws:// and wss://; http:// in soak_http.c, SSE in
 *                  soak_sse.c, tcp:// frames in soak_tcp.c)
 *   soak_sample.c  the server's figures at the quiet point of a round
 *   soak_stats.c   Theil-Sen slopes, their intervals, the verdict
 *   soak_report.c  progress, samples.csv, summary.json, the exit status
 *   soak_plot.c    plot.svg and report.html
 *
 * The URL, the server's process and the TLS context come from
 * bench_target.c (shared with `moor bench`, bench/bench_target.h).
 *
 * Keeps: a server that goes away mid-run is said, with the round, and
 * the samples taken are kept (exit 2); all memory comes from mem.c and
 * is zero at exit (docs/principles.md, rule 7); no global mutable state
 * (everything is in struct soak; rule 10).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mem.h"
#include "soak.h"
#include "soak_int.h"
#include "tls.h"
#include "util.h"

static int check_memory(void)
{
    int64_t live = mem_live_bytes(MEM_ALL);

    if (live == 0)
        return 0;
    fprintf(stderr, "moor soak: %lld bytes still allocated at exit\n",
            (long long)live);
    if (mem_trace_enabled())
        mem_trace_dump(stderr);
#ifdef MOOR_DEBUG
    return 3;
#else
    return 0;
#endif
}

static bool more_rounds(const struct soak *s)
{
    uint64_t ms = (mono_ns() - s->t0) / 1000000u;

    if (s->interrupted || s->lost[0])
        return false;
    if (s->o.rounds && s->nsamples >= s->o.rounds)
        return false;
    if (s->o.duration_ms && ms >= s->o.duration_ms)
        return false;
    return true;
}

static int grow_samples(struct soak *s)
{
    struct soak_sample *n;
    uint32_t cap = s->cap ? s->cap * 2 : 64;

    if (s->nsamples < s->cap)
        return 0;
    n = mem_realloc(MEM_MISC, s->samples, (size_t)cap * sizeof(*n));
    if (!n)
        return -1;
    s->samples = n;
    s->cap = cap;
    return 0;
}

static int run(struct soak *s, int argc, char **argv)
{
    char err[512];

    if (!strncasecmp(s->o.url, "https://", 8)) {
        fprintf(stderr,
                "moor soak: %s: https:// is not supported (the HTTP and SSE "
                "rounds use plain sockets); wss:// is\n",
                s->o.url);
        return 2;
    }
    s->http = !strncasecmp(s->o.url, "http://", 7);
    s->tcp = !strncasecmp(s->o.url, "tcp://", 6);
    s->pubsub = s->o.pub_url[0] != '\0';
    s->pub_tcp = s->pubsub && !strncasecmp(s->o.pub_url, "tcp://", 6);
    if (s->http) {
        /* The same address, Host and path as a ws:// URL: parsed as one
         * (bench_parse_url), the scheme swapped. */
        char ws[sizeof(s->o.url) + 2];

        snprintf(ws, sizeof(ws), "ws%s", s->o.url + 4);
        if (bench_parse_url("url", ws, &s->t, err, sizeof(err)) < 0) {
            fprintf(stderr, "moor soak: invalid --url \"%.200s\"\n", s->o.url);
            return 2;
        }
        /* With --pub-url: SSE subscribers (soak_sse.c). */
        s->sse = s->pubsub;
    } else if ((s->tcp ? soak_tcp_parse_url("url", s->o.url, &s->t, err,
                                            sizeof(err))
                       : bench_parse_url("url", s->o.url, &s->t, err,
                                         sizeof(err))) < 0) {
        fprintf(stderr, "moor soak: %s\n", err);
        return 2;
    }
    if (s->tcp && !s->pubsub) {
        fprintf(stderr,
                "moor soak: --url %s: TCP frames have no echo; "
                "subscribers there need a --pub-url\n",
                s->o.url);
        return 2;
    }
    if (s->pubsub &&
        (s->pub_tcp ? soak_tcp_parse_url("pub-url", s->o.pub_url, &s->pt, err,
                                         sizeof(err))
                    : bench_parse_url("pub-url", s->o.pub_url, &s->pt, err,
                                      sizeof(err))) < 0) {
        fprintf(stderr, "moor soak: %s\n", err);
        return 2;
    }
    if (bench_target_pid(&s->t, s->o.pid, true, &s->pid, err, sizeof(err)) <
            0 ||
        soak_conns_setup(s, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor soak: %s\n", err);
        return 2;
    }
    soak_probe_mem(s);
    if (soak_out_open(s, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor soak: %s\n", err);
        return 2;
    }
    fprintf(stderr,
            "moor soak: %s, pid %d%s; %" PRIu32 " connections and %" PRIu32
            " faults a round, %" PRIu32 " warm-up rounds\n",
            s->o.url, (int)s->pid,
            s->moor_mem ? ", moor's /debug/mem read every round" : "",
            s->o.conns, s->o.fault_conns, s->o.warmup);
    s->t0 = mono_ns();
    while (more_rounds(s)) {
        struct soak_sample *smp;
        uint32_t round = s->nsamples + 1;

        if (grow_samples(s) < 0) {
            snprintf(s->lost, sizeof(s->lost), "out of memory");
            break;
        }
        smp = &s->samples[s->nsamples];
        memset(smp, 0, sizeof(*smp));
        smp->round = round;
        if (soak_round(s, smp, err, sizeof(err)) < 0 ||
            (!s->interrupted && soak_sample(s, smp, err, sizeof(err)) < 0)) {
            snprintf(s->lost, sizeof(s->lost),
                     "lost the target in round %" PRIu32 ": %.300s", round,
                     err);
            break;
        }
        if (s->interrupted)
            break;
        smp->elapsed = (double)(mono_ns() - s->t0) / 1e9;
        s->nsamples++;
        soak_out_sample(s, smp);
        soak_progress(s, smp);
    }
    return soak_verdict(s, argc, argv);
}

int soak_main(int argc, char **argv)
{
    struct soak *s;
    char err[512];
    int rc, status;

#ifdef MOOR_DEBUG
    mem_trace_enable();
#endif
    log_set_level(LOG_WARN);
    s = mem_calloc(MEM_MISC, 1, sizeof(*s));
    if (!s) {
        fprintf(stderr, "moor soak: out of memory\n");
        return 2;
    }
    s->sigfd = -1;
    s->pub_fd = -1;
    rc = soak_parse_args(s, argc, argv, err, sizeof(err));
    if (rc != 0) {
        mem_free(MEM_MISC, s);
        if (rc > 0)
            return 0;
        fprintf(stderr, "moor soak: %s\n", err);
        return 2;
    }
    status = run(s, argc, argv);
    soak_out_close(s);
    soak_conns_teardown(s);
    mem_free(MEM_MISC, s->samples);
    mem_free(MEM_MISC, s);
    tls_mem_fini();
    rc = check_memory();
    return rc ? rc : status;
}
