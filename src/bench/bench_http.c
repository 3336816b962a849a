/*
 * bench_http.c - `moor bench http`: moor's own HTTP client (the public
 * API of include/moor.h: its first real user) against an HTTP server,
 * on a moor_loop this file drives itself (moor_loop_run_once). Two runs:
 *
 *   request loop  --conns chains of keep-alive GETs, like wrk: each chain
 *                 sends its next request as soon as its last answer is
 *                 in (the pool allows --conns connections, so each chain
 *                 ends up with one of its own). With --rate R the
 *                 requests go out on a schedule instead, R per second in
 *                 all (open loop, like wrk2): each is timed from when it
 *                 was due, so a server that stalls cannot hide it, and a
 *                 request due while all --conns are busy waits, its wait
 *                 counted. After --warmup, for --duration: requests/s,
 *                 latency p50/p99/p999, failures by reason, and the
 *                 client's own CPU time (this process's, user + system).
 *   --idle-hold   --conns requests at once, each on a new connection;
 *                 then all of them held idle in the pool: the client's
 *                 own memory per idle pooled connection (VmRSS growth,
 *                 and moor's accounted bytes by tag), and the pool's
 *                 figures.
 *
 * Both begin with one warm-up request (the server is there; code, TLS
 * state and the resolver are faulted in before any baseline). Ctrl-C
 * ends a run and the report still comes. No global state (rule 10);
 * everything is freed before the exit check (rule 7).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "moor.h"
#include "bench_http.h"
#include "bench_int.h"
#include "buf.h"
#include "hist.h"
#include "mem.h"
#include "procfs.h"
#include "signals.h"
#include "util.h"

#define HB_MAX_STREAK 200u  /* failures in a row that end a run */
#define HB_DRAIN_MS 2000u   /* answers in flight at the end: wait this long */
#define HB_WAKE_MS 50       /* the longest wait: signals are read between */
#define HB_SIG_NS 20000000u /* read the signalfd at most this often */

static void hb_stop(struct hb *hb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- small things ------------------------------------------------------- */

static uint64_t cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void mem_sample(struct hb_mem *s)
{
    s->ok = procfs_mem(getpid(), &s->m) == 0;
    for (int t = 0; t < MEM_TAG_COUNT; t++)
        s->tag[t] = mem_live_bytes((enum mem_tag)t);
}

static void stats(const struct hb *hb, struct moor_http_client_stats *st)
{
    memset(st, 0, sizeof(*st));
    moor_http_client_stats(hb->cl, NULL, st);
}

/* --rate: when the k-th request of the schedule is due (ns). */
static uint64_t sched_at(const struct hb *hb, uint64_t k)
{
    return hb->sched0 +
           (uint64_t)((unsigned __int128)k * 1000000000u / hb->b->o.rate);
}

/* --rate: how many requests are due by now. */
static uint64_t sched_due(const struct hb *hb, uint64_t now)
{
    if (now < hb->sched0)
        return 0;
    return 1 + (uint64_t)((unsigned __int128)(now - hb->sched0) *
                          hb->b->o.rate / 1000000000u);
}

/* ---- requests ----------------------------------------------------------- */

/* Starts ch's next request, due at due. Returns 0, or -1 (the run is
 * stopped: the client refused the request itself). */
static int issue(struct hb *hb, struct hb_chain *ch, uint64_t due)
{
    struct moor_error e;

    ch->due = due;
    ch->call = moor_http_client_request(hb->cl, &hb->rq, &hb->cbs, ch, &e);
    if (!ch->call) {
        hb_stop(hb, "cannot start a request: %s", e.message);
        return -1;
    }
    hb->busy++;
    return 0;
}

/* --rate: every request due by now goes out on a free chain. */
static void pump(struct hb *hb, uint64_t now)
{
    uint64_t due = sched_due(hb, now);

    while (hb->sending && hb->sent < due && hb->nfree) {
        struct hb_chain *ch = hb->free[--hb->nfree];

        if (issue(hb, ch, sched_at(hb, hb->sent)) < 0)
            return;
        hb->sent++;
    }
}

/* ch's request is done: its next one, if any is to go. */
static void chain_next(struct hb *hb, struct hb_chain *ch, uint64_t now)
{
    if (!hb->sending)
        return;
    if (!hb->b->o.rate) {
        issue(hb, ch, now);
        return;
    }
    if (hb->sent < sched_due(hb, now)) {
        /* Due already: with no other chain free it waited for this one,
         * and its latency says so (it is timed from when it was due). */
        if (!hb->nfree)
            hb->held++;
        if (issue(hb, ch, sched_at(hb, hb->sent)) == 0)
            hb->sent++;
        return;
    }
    hb->free[hb->nfree++] = ch;
}

/* Allocations made through mem.c so far (every tag; OpenSSL's too). */
static void allocs(uint64_t *n, uint64_t *bytes)
{
    struct mem_tag_stats st;

    mem_stats(MEM_ALL, &st);
    *n = st.total_allocs;
    *bytes = st.total_bytes;
}

static void measure_from(struct hb *hb, uint64_t now)
{
    hist_reset(hb->lat);
    hb->requests = 0;
    hb->measuring = true;
    hb->cpu0 = cpu_ns();
    allocs(&hb->allocs0, &hb->abytes0);
    hb->t0 = now;
    stats(hb, &hb->st0);
    hb->phase_end = now + (uint64_t)hb->b->o.duration_ms * 1000000u;
}

static void window_end(struct hb *hb, uint64_t now)
{
    if (!hb->measuring)
        return;
    hb->measuring = false;
    hb->t1 = now;
    hb->cpu1 = cpu_ns();
    allocs(&hb->allocs1, &hb->abytes1);
    stats(hb, &hb->st1);
}

static void run_start(struct hb *hb, uint64_t now)
{
    const struct bench_opts *o = &hb->b->o;

    if (o->rate)
        bench_note(hb->b,
                   "%" PRIu32 " requests/s over at most %" PRIu32
                   " connections; %.1f s warm-up, then %.1f s measured",
                   o->rate, hb->n, o->warmup_ms / 1000.0,
                   o->duration_ms / 1000.0);
    else
        bench_note(hb->b,
                   "%" PRIu32 " request chains; %.1f s warm-up, then %.1f s "
                   "measured",
                   hb->n, o->warmup_ms / 1000.0, o->duration_ms / 1000.0);
    hb->phase = HB_RUN;
    hb->sending = true;
    hb->phase_end = now + (uint64_t)o->warmup_ms * 1000000u;
    if (o->rate) {
        hb->sched0 = now;
        for (uint32_t i = 0; i < hb->n; i++)
            hb->free[hb->nfree++] = &hb->chains[hb->n - 1 - i];
        pump(hb, now);
    } else {
        for (uint32_t i = 0; i < hb->n && hb->sending; i++)
            issue(hb, &hb->chains[i], now);
    }
    if (!o->warmup_ms && hb->phase == HB_RUN)
        measure_from(hb, now);
}

static void burst_start(struct hb *hb, uint64_t now)
{
    mem_sample(&hb->before);
    stats(hb, &hb->st_burst0);
    bench_note(hb->b, "%" PRIu32 " requests at once, then held idle %.1f s",
               hb->n, hb->b->o.idle_hold_ms / 1000.0);
    hb->phase = HB_BURST;
    /* Each request has its own deadline (--timeout); this one only
     * backs them up. */
    hb->phase_end = now + ((uint64_t)hb->b->o.timeout_ms + 1000) * 1000000u;
    for (uint32_t i = 0; i < hb->n && hb->phase == HB_BURST; i++)
        issue(hb, &hb->chains[i], now);
}

static bool failed(const struct moor_http_result *r)
{
    return r->error || r->status < 200 || r->status >= 400;
}

static void count_failure(struct hb *hb, const struct moor_http_result *r)
{
    char what[64];

    hb->errors++;
    if (r->error)
        bench_count_reason(&hb->why, moor_strerror(r->error));
    else {
        snprintf(what, sizeof(what), "HTTP %d", r->status);
        bench_count_reason(&hb->why, what);
    }
}

static void warm_done(struct hb *hb, const struct moor_http_result *r,
                      uint64_t now)
{
    const char *url = hb->b->o.url;

    if (hb->phase != HB_WARM)
        return;
    if (r->error) {
        hb_stop(hb, "cannot get %s: %s (%s)", url,
                r->message[0] ? r->message : "failed", moor_strerror(r->error));
        return;
    }
    if (failed(r)) {
        hb_stop(hb, "cannot get %s: HTTP %d", url, r->status);
        return;
    }
    if (hb->b->o.idle_hold_ms) {
        /* Its connection goes, so the burst's are all new. */
        moor_http_client_close_idle(hb->cl);
        hb->phase = HB_SETTLE;
        hb->phase_end = now + (uint64_t)SETTLE_MS * 1000000u;
        return;
    }
    run_start(hb, now);
}

static void on_done(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user)
{
    struct hb_chain *ch = user;
    struct hb *hb = ch->hb;
    uint64_t now = mono_ns();

    (void)c;
    ch->call = NULL;
    hb->busy--;
    if (ch == &hb->warm) {
        warm_done(hb, r, now);
        return;
    }
    if (hb->phase >= HB_DRAIN && r->error == -ECANCELED)
        return; /* ours: the run is over */
    if (failed(r)) {
        count_failure(hb, r);
        if (++hb->streak >= HB_MAX_STREAK && hb->phase == HB_RUN) {
            char why[512];

            bench_format_reasons(&hb->why, why, sizeof(why));
            hb_stop(hb, "the last %u requests to %s all failed (%s)",
                    HB_MAX_STREAK, hb->b->o.url, why);
            return;
        }
    } else {
        hb->streak = 0;
        if (hb->measuring) {
            hist_record(hb->lat, now - ch->due);
            hb->requests++;
        }
    }
    if (hb->phase == HB_BURST)
        hb->burst_done++;
    else
        chain_next(hb, ch, now);
}

/* ---- the phases --------------------------------------------------------- */

/* Ends the run now with a reason (the first one given is kept). */
static void hb_stop(struct hb *hb, const char *fmt, ...)
{
    va_list ap;

    if (!hb->fatal[0]) {
        va_start(ap, fmt);
        vsnprintf(hb->fatal, sizeof(hb->fatal), fmt, ap);
        va_end(ap);
    }
    window_end(hb, mono_ns());
    if (hb->phase == HB_HOLD) {
        hb->hold1 = mono_ns();
        mem_sample(&hb->after); /* the hold, cut short */
        stats(hb, &hb->st_end);
    }
    hb->sending = false;
    hb->phase = HB_DONE;
}

/* The phase's deadline has passed. */
static void phase_timer(struct hb *hb, uint64_t now)
{
    hb->phase_end = 0;
    switch (hb->phase) {
    case HB_WARM:
        hb_stop(hb, "no answer from %s within %" PRIu32 " ms", hb->b->o.url,
                hb->b->o.timeout_ms);
        break;
    case HB_SETTLE:
        burst_start(hb, now);
        break;
    case HB_BURST:
        hb_stop(hb,
                "%" PRIu32 " of %" PRIu32 " requests unanswered after %" PRIu32
                " ms",
                hb->n - hb->burst_done, hb->n, hb->b->o.timeout_ms + 1000);
        break;
    case HB_HOLD:
        hb->hold1 = now;
        mem_sample(&hb->after);
        stats(hb, &hb->st_end);
        if (mem_trace_enabled()) /* MOOR_MEM_TRACE=1: the bytes by site */
            mem_trace_dump(stderr);
        /* What glibc keeps of the burst's freed heap, given back. */
        mem_trim_now();
        mem_sample(&hb->trimmed);
        hb->phase = HB_DONE;
        break;
    case HB_RUN:
        if (!hb->measuring) {
            measure_from(hb, now); /* the warm-up is over */
            break;
        }
        window_end(hb, now);
        hb->sending = false;
        hb->phase = HB_DRAIN;
        hb->phase_end = now + (uint64_t)HB_DRAIN_MS * 1000000u;
        break;
    case HB_DRAIN:
    case HB_DONE:
        hb->phase = HB_DONE;
        break;
    }
}

/* After each loop iteration: what it finished. */
static void progress(struct hb *hb, uint64_t now)
{
    if (hb->phase == HB_BURST && hb->burst_done == hb->n) {
        /* Every call has had its on_done and been freed. */
        mem_sample(&hb->at_idle);
        stats(hb, &hb->st_idle);
        if (!hb->st_idle.idle) {
            char why[512];

            bench_format_reasons(&hb->why, why, sizeof(why));
            hb_stop(hb,
                    "none of the %" PRIu32 " requests left a pooled "
                    "connection (%s)",
                    hb->n, why[0] ? why : "closed by the server");
            return;
        }
        hb->phase = HB_HOLD;
        hb->hold0 = now;
        hb->phase_end = now + (uint64_t)hb->b->o.idle_hold_ms * 1000000u;
    }
    if (hb->phase == HB_DRAIN && !hb->busy)
        hb->phase = HB_DONE;
    if (hb->phase == HB_RUN && hb->b->o.rate)
        pump(hb, now);
    if (hb->phase_end && now >= hb->phase_end)
        phase_timer(hb, now);
}

static void read_signals(struct hb *hb)
{
    struct signalfd_siginfo si;

    while (read(hb->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        hb->interrupted = true;
        hb_stop(hb, "interrupted");
    }
}

/* ms to wait in the next iteration. */
static int next_wait(const struct hb *hb, uint64_t now)
{
    uint64_t until = now + (uint64_t)HB_WAKE_MS * 1000000u;

    if (hb->phase_end && hb->phase_end < until)
        until = hb->phase_end;
    if (hb->phase == HB_RUN && hb->b->o.rate && hb->nfree && hb->sending) {
        uint64_t at = sched_at(hb, hb->sent);

        if (at < until)
            until = at;
    }
    return until > now ? (int)((until - now + 999999) / 1000000) : 0;
}

static void hb_loop(struct hb *hb)
{
    uint64_t now = mono_ns();

    while (hb->phase != HB_DONE) {
        int rc = moor_loop_run_once(hb->ml, next_wait(hb, now));

        now = mono_ns();
        if (rc < 0) {
            hb_stop(hb, "event loop failed: %s", moor_strerror(rc));
            break;
        }
        if (now - hb->sig_at >= HB_SIG_NS) {
            hb->sig_at = now;
            read_signals(hb);
        }
        progress(hb, now);
    }
    if (hb->st_end.requests == 0)
        stats(hb, &hb->st_end);
}

/* ---- set-up ------------------------------------------------------------- */

static int hb_setup(struct hb *hb, char *err, size_t errlen)
{
    static const int sigs[] = {SIGTERM, SIGINT};
    const struct bench_opts *o = &hb->b->o;
    struct moor_http_client_options co;
    struct moor_error e;

    hb->ml = moor_loop_new(NULL, &e);
    if (!hb->ml) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    moor_http_client_options_init(&co);
    co.max_conns_per_host = hb->n;
    co.max_idle_per_host = MAX(hb->n, co.max_idle_per_host);
    co.max_idle_total = MAX(hb->n, co.max_idle_total);
    co.max_waiting_per_host = MAX(hb->n, co.max_waiting_per_host);
    co.connect_timeout_ms = o->connect_timeout_ms;
    co.tls_timeout_ms = o->connect_timeout_ms;
    co.total_timeout_ms = o->timeout_ms;
    if (o->idle_hold_ms) /* nothing closes for age while held */
        co.idle_timeout_ms = o->idle_hold_ms + 60000;
    co.max_handshakes = o->max_handshakes;
    co.tls_ca = o->tls_ca[0] ? o->tls_ca : NULL;
    co.insecure = o->insecure;
    hb->cl = moor_http_client_new(hb->ml, &co, &e);
    if (!hb->cl) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    moor_http_request_init(&hb->rq);
    hb->rq.url = o->url;
    hb->cbs.on_done = on_done;
    hb->warm.hb = hb;
    hb->chains = mem_calloc(MEM_MISC, hb->n, sizeof(*hb->chains));
    hb->free = mem_calloc(MEM_MISC, hb->n, sizeof(*hb->free));
    hb->lat = hist_new();
    if (!hb->chains || !hb->free || !hb->lat) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < hb->n; i++)
        hb->chains[i].hb = hb;
    hb->sigfd = signals_open(sigs, 2);
    if (hb->sigfd < 0) {
        snprintf(err, errlen, "cannot set up signals: %s",
                 strerror(-hb->sigfd));
        return -1;
    }
    return 0;
}

static void hb_teardown(struct hb *hb)
{
    /* Cancels what is in flight (on_done: -ECANCELED, ignored), closes
     * the pool. */
    hb->phase = HB_DONE;
    hb->sending = false;
    moor_http_client_free(hb->cl);
    moor_loop_free(hb->ml);
    if (hb->sigfd >= 0)
        close(hb->sigfd);
    hist_free(hb->lat);
    mem_free(MEM_MISC, hb->free);
    mem_free(MEM_MISC, hb->chains);
}

static int http_run(struct bench *b)
{
    struct hb *hb;
    char err[512];
    int status = 1;

    if (bench_check_http_url(b->o.url, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor bench: %s\n", err);
        return 2;
    }
    if (b->o.idle_hold_ms && b->o.rate) {
        fprintf(stderr, "moor bench: --rate does not go with --idle-hold "
                        "(the hold sends no requests)\n");
        return 2;
    }
    hb = mem_calloc(MEM_MISC, 1, sizeof(*hb));
    if (!hb) {
        fprintf(stderr, "moor bench: out of memory\n");
        return 1;
    }
    hb->b = b;
    hb->n = b->o.conns;
    hb->sigfd = -1;
    if (bench_raise_nofile((uint64_t)b->o.conns + FD_RESERVE, err,
                           sizeof(err)) < 0 ||
        bench_check_ports(b, err, sizeof(err)) < 0 ||
        hb_setup(hb, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor bench: %s\n", err);
        goto out;
    }
    hb->phase = HB_WARM;
    hb->phase_end = mono_ns() + ((uint64_t)b->o.timeout_ms + 1000) * 1000000u;
    if (issue(hb, &hb->warm, mono_ns()) == 0)
        hb_loop(hb);
    status = bench_http_verdict(hb);
    /* A run that never got past its warm-up has nothing to report. */
    if (b->o.json || hb->st_end.requests > 1)
        bench_http_report(hb, status);
    bench_http_notes(hb);
out:
    hb_teardown(hb);
    mem_free(MEM_MISC, hb);
    return status;
}

const struct bench_mode bench_http = {
    .name = "http",
    .bit = M_HTTP,
    .default_conns = 50,
    .summary = "moor's HTTP client: --conns chains of keep-alive GETs of "
               "--url (or --rate requests/s in all); after --warmup, for "
               "--duration, requests/s, latency p50/p99/p999, failures by "
               "reason and the client's own CPU; with --idle-hold, "
               "--conns requests at once, then their connections held "
               "idle in the pool: the client's memory per idle connection",
    .run = http_run,
    .default_url = "http://127.0.0.1:8080/healthz",
};
