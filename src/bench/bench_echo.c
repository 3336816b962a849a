/*
 * bench_echo.c - `moor bench echo`: keeps --inflight messages of --size
 * bytes in flight on every connection (a new one goes out when one comes
 * back), and after --warmup counts for --duration: messages/s and the
 * round-trip latency of every message in a log-bucket histogram (hist.h).
 *
 * Latency is measured with CLOCK_MONOTONIC at send and at receive. Each
 * connection keeps the send times of its messages in flight in a ring of
 * --inflight slots: an echo server answers in order, and the first 8
 * bytes of each payload carry its sequence number, so an answer out of
 * order or of the wrong size is counted as a mismatch, not as a latency.
 *
 * Its measuring window (bench_measure_from_now, echo_on_timer,
 * echo_finish) serves broadcast and handshake too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench_int.h"
#include "hist.h"
#include "procfs.h"
#include "util.h"
#include "ws_client.h"

/* Sends the next message of bc at time now (ns), its sequence number in
 * its first 8 bytes when it has that many. */
static void echo_send(struct bench *b, struct bconn *bc, uint64_t now)
{
    uint64_t seq = bc->sent;

    if (b->o.size >= sizeof(seq))
        memcpy(b->payload, &seq, sizeof(seq));
    bc->sent_at[seq % b->o.inflight] = now;
    bc->sent++;
    if (ws_send(bc->c, b->payload, (size_t)b->o.size, false) == WS_SEND_DROPPED)
        b->dropped++;
}

static void cpu_sample(const struct bench *b, uint64_t *self, uint64_t *srv,
                       bool *ok)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    *self = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    *ok = b->pid > 0 && procfs_cpu_ns(b->pid, srv) == 0;
}

void bench_measure_from_now(struct bench *b)
{
    bool ok;

    hist_reset(b->lat);
    b->rcvd = 0;
    b->measuring = true;
    cpu_sample(b, &b->cpu0, &b->srv_cpu0, &ok);
    b->srv_cpu = ok;
    b->t0 = mono_ns();
    loop_timer_in(b->loop, &b->timer, b->o.duration_ms);
}

static void echo_start(struct bench *b)
{
    bench_note(b,
               "echo: %" PRIu32 " in flight x %" PRIu64 " B on each; %.1f s "
               "warm-up, then %.1f s measured",
               b->o.inflight, b->o.size, b->o.warmup_ms / 1000.0,
               b->o.duration_ms / 1000.0);
    b->sending = true;
    for (uint32_t i = 0; i < b->o.conns; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state != BC_OPEN)
            continue;
        for (uint32_t k = 0; k < b->o.inflight && bc->state == BC_OPEN; k++)
            echo_send(b, bc, mono_ns());
    }
    if (b->o.warmup_ms)
        loop_timer_in(b->loop, &b->timer, b->o.warmup_ms);
    else
        bench_measure_from_now(b);
}

void echo_on_timer(struct bench *b)
{
    if (!b->measuring) {
        bench_measure_from_now(b); /* the warm-up is over */
        return;
    }
    bench_begin_close(b); /* echo_finish() closes the window */
}

/* The run ends (its deadline, the server, a signal): the measuring
 * window, if open, closes now. */
void echo_finish(struct bench *b)
{
    bool ok;

    if (!b->measuring)
        return;
    b->t1 = mono_ns();
    b->measuring = false;
    cpu_sample(b, &b->cpu1, &b->srv_cpu1, &ok);
    b->srv_cpu = b->srv_cpu && ok;
}

static void echo_on_message(struct bench *b, struct bconn *bc, const uint8_t *p,
                            size_t len)
{
    uint64_t now = mono_ns(), seq = bc->rcvd, got;

    if (bc->rcvd >= bc->sent || len != b->o.size) {
        b->mismatched++;
        return;
    }
    if (len >= sizeof(got)) {
        memcpy(&got, p, sizeof(got));
        if (got != seq) {
            b->mismatched++;
            return;
        }
    }
    bc->rcvd++;
    if (b->measuring) {
        hist_record(b->lat, now - bc->sent_at[seq % b->o.inflight]);
        b->rcvd++;
    }
    /* The next message goes out at once: its send time is now. */
    if (b->sending && bc->c)
        echo_send(b, bc, now);
}

static void echo_report(struct bench *b, FILE *out)
{
    double secs = bench_window_secs(b);

    fprintf(out, "echo %s\n", b->o.url);
    fprintf(out,
            "connections  %" PRIu32 " of %" PRIu32 " open, %" PRIu32
            " failed, %" PRIu32 " closed early; %" PRIu32 " in flight each, "
            "%" PRIu64 " B messages\n",
            b->opened, b->o.conns, b->failed, b->lost, b->o.inflight,
            b->o.size);
    bench_rate_lines(b, out, secs, "messages echoed", "messages/s");
    if (b->mismatched || b->dropped)
        fprintf(out,
                "errors       %" PRIu64 " echoes that did not match, "
                "%" PRIu64 " sends dropped\n",
                b->mismatched, b->dropped);
}

static bool echo_invalid(const struct bench *b)
{
    return b->rcvd == 0 || b->mismatched || b->dropped;
}

static void echo_report_json(struct bench *b, FILE *out)
{
    double secs = bench_window_secs(b);

    fprintf(out,
            "\"inflight\": %" PRIu32 ", \"size\": %" PRIu64
            ", \"warmup_s\": %.3f, \"duration_s\": %.3f, \"messages\": %" PRIu64
            ", \"msgs_per_s\": %.0f, \"mismatched\": %" PRIu64
            ", \"dropped\": %" PRIu64 ", ",
            b->o.inflight, b->o.size, b->o.warmup_ms / 1000.0, secs, b->rcvd,
            secs > 0 ? b->rcvd / secs : 0.0, b->mismatched, b->dropped);
    bench_json_latency(b, out, secs);
}

const struct bench_mode bench_echo = {
    .name = "echo",
    .bit = M_ECHO,
    .default_conns = 64,
    .default_inflight = 16,
    .summary = "keep --inflight messages of --size bytes in flight on "
               "each of --conns connections (a new one goes out when "
               "one comes back); after --warmup, count for --duration "
               "and report messages/s received and the round-trip "
               "latency p50/p99/p999",
    .start = echo_start,
    .finish = echo_finish,
    .on_timer = echo_on_timer,
    .on_message = echo_on_message,
    .report = echo_report,
    .report_json = echo_report_json,
    .invalid = echo_invalid,
};
