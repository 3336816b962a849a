/*
 * bench_handshake.c - `moor bench handshake`: keeps --conns connections
 * in their opening handshake. Each one, as soon as it is open, is closed
 * outright (no close handshake) and a new one takes its place; after
 * --warmup it counts for --duration: handshakes/s and the time of each
 * (from the connect call to the validated 101: TCP, TLS for wss://, and
 * the WebSocket upgrade). The connecting phase before it is only the
 * ramp-up.
 */
#include <inttypes.h>
#include <stdio.h>

#include "bench_int.h"
#include "conn.h"
#include "hist.h"
#include "util.h"

/*
 * The driver opens --conns connections (the ramp-up, not measured); then
 * every connection is closed as soon as it is open (conn_close: no
 * WebSocket close handshake; a TLS conn sends its close_notify) and the
 * end-of-iteration hook starts a new one in its slot (churn_launch in
 * bench_driver.c), so --conns handshakes are always in progress. The
 * measuring window is echo's (bench_measure_from_now, echo_on_timer,
 * echo_finish): b->rcvd counts the handshakes completed in it and b->lat
 * holds their times.
 */

static void hs_recycle(struct bench *b, struct bconn *bc)
{
    (void)b;
    bc->state = BC_RECYCLED;
    conn_close(bc->c, CLOSE_DONE); /* on_close runs now: the slot is free */
}

static void hs_start(struct bench *b)
{
    bench_note(b,
               "handshake: %" PRIu32 " at a time, each connection closed once "
               "open; %.1f s warm-up, then %.1f s measured",
               b->o.conns, b->o.warmup_ms / 1000.0, b->o.duration_ms / 1000.0);
    for (uint32_t i = 0; i < b->o.conns; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state == BC_OPEN && bc->c)
            hs_recycle(b, bc);
    }
    if (b->o.warmup_ms)
        loop_timer_in(b->loop, &b->timer, b->o.warmup_ms);
    else
        bench_measure_from_now(b);
}

static void hs_on_open(struct bench *b, struct bconn *bc)
{
    b->hs_total++;
    if (b->measuring) {
        hist_record(b->lat, mono_ns() - bc->started);
        b->rcvd++;
    }
    hs_recycle(b, bc);
}

static void hs_report(struct bench *b, FILE *out)
{
    double secs = bench_window_secs(b);

    fprintf(out, "handshake %s\n", b->o.url);
    fprintf(out,
            "connections  %" PRIu32 " at a time, each closed once open; "
            "%" PRIu64 " handshakes in the run, %" PRIu32 " failed\n",
            b->o.conns, b->hs_total, b->failed);
    bench_rate_lines(b, out, secs, "handshakes", "handshakes/s");
}

static void hs_report_json(struct bench *b, FILE *out)
{
    double secs = bench_window_secs(b);

    fprintf(out,
            "\"warmup_s\": %.3f, \"duration_s\": %.3f, \"handshakes\": %" PRIu64
            ", \"handshakes_per_s\": %.0f, \"handshakes_in_run\": %" PRIu64
            ", \"failed_in_run\": %" PRIu32 ", ",
            b->o.warmup_ms / 1000.0, secs, b->rcvd,
            secs > 0 ? b->rcvd / secs : 0.0, b->hs_total, b->run_failed);
    bench_json_latency(b, out, secs);
}

static bool hs_invalid(const struct bench *b)
{
    return b->rcvd == 0;
}

const struct bench_mode bench_handshake = {
    .name = "handshake",
    .bit = M_HS,
    .default_conns = 32,
    .summary = "keep --conns connections in their opening handshake: "
               "each is closed outright as soon as it is open and a "
               "new one takes its place; after --warmup, count for "
               "--duration and report handshakes/s and the time of "
               "each (connect to the 101: TCP, TLS for wss://, the "
               "upgrade) p50/p99/p999",
    .churn = true,
    .start = hs_start,
    .finish = echo_finish,
    .on_timer = echo_on_timer,
    .on_open = hs_on_open,
    .report = hs_report,
    .report_json = hs_report_json,
    .invalid = hs_invalid,
};
