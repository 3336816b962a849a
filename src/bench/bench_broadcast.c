/*
 * bench_broadcast.c - `moor bench broadcast`: --conns subscribers on
 * --sub-url, one publisher on --pub-url; deliveries/s and the
 * publish-to-receive latency of every delivery (the stages are below).
 *
 * The publisher changes the driver's warm-up: it is opened beside the
 * warm-up connection (a subscriber) and publishes until the subscriber
 * has received a message (bcast_warm_probe); it then stays open for the
 * run.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench_int.h"
#include "buf.h"
#include "hist.h"
#include "loop.h"
#include "timer.h"
#include "util.h"
#include "ws_client.h"

/*
 * --conns subscribers on --sub-url and one publisher on --pub-url. Every
 * message carries its sequence number (bytes 0-7) and its send time
 * (CLOCK_MONOTONIC ns, bytes 8-15); the rest is filler up to --size.
 *
 *   sync     once every subscriber is open, the publisher sends a probe
 *            every PROBE_MS until each subscriber has received one (a
 *            server may register a subscriber a moment after its 101), so
 *            from the run's first message on, every subscriber must get
 *            every message. --connect-timeout bounds it.
 *   run      throughput (--rate 0): at most --inflight messages are
 *            published and not yet received by every open subscriber; the
 *            next goes out as soon as the slowest subscriber has the
 *            oldest. So no subscriber ever has more than --inflight
 *            messages queued on the server, whatever order it writes in,
 *            and no server's slow-consumer limit can be reached (it
 *            measures fan-out, not queueing). --rate R: R messages per
 *            second on a fixed schedule (a message due while --inflight
 *            are outstanding is held back and counted).
 *            --warmup, then --duration measured: deliveries counted and
 *            the latency of each (its receive time minus its send time).
 *   drain    publishing stops; the run waits (DRAIN_MS at most) until every
 *            subscriber has every message; what never came is lost.
 *
 * Each subscriber checks its sequence numbers: a gap counts the messages
 * skipped as lost; one that comes late (within 64 of the newest) turns a
 * loss into "out of order"; one seen before is a duplicate. Any of them,
 * or a message of the wrong size, makes the run invalid (exit 1).
 *
 * The completion window is a ring of --inflight receipt counts: message s
 * has reached everyone when its count reaches the subscribers open. Each
 * subscriber receives in order, so messages complete in order and `done`
 * only moves forward. Nothing moves for STALL_MS: the run stops.
 */
#define PROBE_MS 100u
#define STALL_MS 5000u
#define DRAIN_MS 5000u

/* Publishes message number pub.sent, stamped with now. */
static void bcast_publish(struct bench *b, uint64_t now)
{
    uint64_t seq = b->pub.sent;

    if (!b->pub.c || b->pub.state != BC_OPEN)
        return;
    b->pub.sent++;
    memcpy(b->payload, &seq, sizeof(seq));
    memcpy(b->payload + sizeof(seq), &now, sizeof(now));
    b->ring[seq % b->o.inflight] = 0;
    if (ws_send(b->pub.c, b->payload, (size_t)b->o.size, false) ==
        WS_SEND_DROPPED)
        b->dropped++;
}

/* Warm-up: once the publisher and the warm-up subscriber are both open,
 * a probe now and every PROBE_MS until the subscriber has one. */
void bcast_warm_probe(struct bench *b)
{
    if (b->phase != PH_WARMUP || b->pub.state != BC_OPEN ||
        b->warm.state != BC_OPEN || b->warm.rcvd)
        return;
    bcast_publish(b, mono_ns());
    loop_timer_in(b->loop, &b->tick, PROBE_MS);
}

static void bcast_drained(struct bench *b);

/* Moves `done` past every message that has reached every open subscriber,
 * then publishes into the room made (throughput) or ends the drain. */
static void bcast_advance(struct bench *b, uint64_t now)
{
    uint32_t k = b->o.inflight;

    while (b->done < b->pub.sent && b->ring[b->done % k] >= b->open)
        b->done++;
    b->progress_at = now;
    if (b->stage == BS_RUN && b->sending && !b->o.rate) {
        while (b->pub.sent - b->done < k && b->pub.state == BC_OPEN)
            bcast_publish(b, now);
    } else if (b->stage == BS_DRAIN && b->done == b->pub.sent) {
        bcast_drained(b);
    }
}

/* --rate: publishes every message the schedule has asked for by now and
 * arms the tick for the next one. */
static void bcast_schedule(struct bench *b, uint64_t now)
{
    double r = b->o.rate;
    uint64_t want = (uint64_t)((double)(now - b->sched0) * r / 1e9) + 1;
    uint64_t next_ns;

    while (b->due < want) {
        b->due++;
        if (b->pub.sent - b->done < b->o.inflight)
            bcast_publish(b, now);
        else
            b->held++;
    }
    next_ns = b->sched0 + (uint64_t)((double)b->due * 1e9 / r);
    loop_timer_in(b->loop, &b->tick,
                  next_ns > now ? (uint32_t)MAX((next_ns - now) / 1000000u, 1u)
                                : 1u);
}

static void bcast_check_stall(struct bench *b, uint64_t now)
{
    if (b->pub.sent == b->done) {
        b->progress_at = now;
        return;
    }
    if (now - b->progress_at < (uint64_t)STALL_MS * 1000000u)
        return;
    bench_stop(b,
               "no progress for %u ms: message %" PRIu64 " reached %" PRIu32
               " of %" PRIu32 " subscribers (lost on the way?)",
               STALL_MS, b->done, b->ring[b->done % b->o.inflight], b->open);
}

/* Every subscriber has received a probe: the run proper starts. */
static void bcast_go(struct bench *b)
{
    uint64_t now = mono_ns();

    timer_cancel(loop_timers(b->loop), &b->tick);
    b->stage = BS_RUN;
    b->nsubs = b->open;
    b->win0 = b->done = b->pub.sent;
    b->progress_at = now;
    b->sending = true;
    if (b->o.rate) {
        bench_note(b,
                   "broadcast: %" PRIu32 " messages/s of %" PRIu64
                   " B to %" PRIu32
                   " subscribers; %.1f s warm-up, then %.1f s measured",
                   b->o.rate, b->o.size, b->open, b->o.warmup_ms / 1000.0,
                   b->o.duration_ms / 1000.0);
        b->sched0 = now;
        b->due = 0;
        bcast_schedule(b, now);
    } else {
        bench_note(b,
                   "broadcast: %" PRIu64 " B messages to %" PRIu32
                   " subscribers, "
                   "at most %" PRIu32 " in flight; %.1f s warm-up, then %.1f s "
                   "measured",
                   b->o.size, b->open, b->o.inflight, b->o.warmup_ms / 1000.0,
                   b->o.duration_ms / 1000.0);
        bcast_advance(b, now);
        loop_timer_in(b->loop, &b->tick, 1000);
    }
    if (b->o.warmup_ms) {
        loop_timer_in(b->loop, &b->timer, b->o.warmup_ms);
    } else {
        bench_measure_from_now(b);
        b->pub0 = b->win0; /* the first messages are in the window */
    }
}

static void bcast_start(struct bench *b)
{
    b->stage = BS_SYNC;
    loop_timer_in(b->loop, &b->timer, b->o.connect_timeout_ms);
    bcast_publish(b, mono_ns());
    loop_timer_in(b->loop, &b->tick, PROBE_MS);
}

void bcast_on_tick(struct timer *t)
{
    struct bench *b = container_of(t, struct bench, tick);
    uint64_t now = mono_ns();

    if (b->phase == PH_WARMUP) {
        bcast_warm_probe(b);
        return;
    }
    if (b->phase != PH_RUN)
        return;
    if (b->stage == BS_SYNC) {
        if (b->open && b->synced >= b->open) {
            bcast_go(b);
            return;
        }
        bcast_publish(b, now);
        loop_timer_in(b->loop, &b->tick, PROBE_MS);
    } else if (b->stage == BS_RUN) {
        if (b->o.rate)
            bcast_schedule(b, now);
        else
            loop_timer_in(b->loop, &b->tick, 1000);
        bcast_check_stall(b, now);
    }
}

/* The end of the measured window (its deadline, or the run stopping). */
static void bcast_finish(struct bench *b)
{
    if (!b->measuring)
        return;
    echo_finish(b);
    b->pub1 = b->pub.sent;
}

/* The drain is over (everything arrived, or DRAIN_MS passed): whatever a
 * subscriber still lacks is lost. */
static void bcast_drained(struct bench *b)
{
    uint64_t missing = 0;

    timer_cancel(loop_timers(b->loop), &b->timer);
    b->stage = BS_DONE;
    for (uint32_t i = 0; i < b->launched; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state == BC_OPEN && bc->rcvd && bc->next < b->pub.sent)
            missing += b->pub.sent - bc->next;
    }
    b->lost_msgs += missing;
    b->drain_missing = missing;
    if (missing)
        bench_stop(b,
                   "%" PRIu64 " deliveries of the last messages had not "
                   "arrived %u ms after the last publish",
                   missing, DRAIN_MS);
    else
        bench_begin_close(b);
}

static void bcast_on_timer(struct bench *b)
{
    switch (b->stage) {
    case BS_SYNC:
        bench_stop(b,
                   "%" PRIu32 " of %" PRIu32 " subscribers received nothing "
                   "published on %s within %" PRIu32 " ms (--connect-timeout)",
                   b->open - MIN(b->synced, b->open), b->open, b->o.pub_url,
                   b->o.connect_timeout_ms);
        break;
    case BS_RUN:
        if (!b->measuring) {
            bench_measure_from_now(b); /* the warm-up is over */
            b->pub0 = b->pub.sent;
            break;
        }
        bcast_finish(b);
        b->sending = false;
        b->stage = BS_DRAIN;
        timer_cancel(loop_timers(b->loop), &b->tick);
        loop_timer_in(b->loop, &b->timer, DRAIN_MS);
        if (b->done == b->pub.sent)
            bcast_drained(b);
        break;
    case BS_DRAIN:
        bcast_drained(b);
        break;
    case BS_DONE:
        break;
    }
}

/* A subscriber that had been open is gone (the run is invalid already:
 * it counts as closed early); the rest must not wait for it. */
void bcast_conn_gone(struct bench *b, struct bconn *bc)
{
    if (bc->rcvd && b->synced)
        b->synced--;
    if (b->phase != PH_RUN || !b->open)
        return;
    if (b->stage == BS_SYNC && b->synced >= b->open)
        bcast_go(b);
    else if (b->stage == BS_RUN || b->stage == BS_DRAIN)
        bcast_advance(b, mono_ns());
}

/* The time subscriber bc's message came in. Messages that arrive
 * together (one subscriber's, in one loop iteration) were read together,
 * so one clock read serves a run of them, and a new one is taken every
 * RX_CLOCK_EVERY messages. A clock read per message was a sixth of the
 * bench's CPU at 2,000 subscribers, enough to make it the bottleneck. */
#define RX_CLOCK_EVERY 32u
static uint64_t rx_now(struct bench *b, const struct bconn *bc)
{
    uint64_t it = loop_iteration(b->loop);

    if (bc != b->rx.bc || it != b->rx.iter || ++b->rx.n >= RX_CLOCK_EVERY) {
        b->rx.bc = bc;
        b->rx.iter = it;
        b->rx.n = 0;
        b->rx.ns = mono_ns();
    }
    return b->rx.ns;
}

static void bcast_on_message(struct bench *b, struct bconn *bc,
                             const uint8_t *p, size_t len)
{
    uint64_t seq, sent_at, now;

    if (len != b->o.size) {
        b->malformed++;
        return;
    }
    memcpy(&seq, p, sizeof(seq));
    memcpy(&sent_at, p + sizeof(seq), sizeof(sent_at));
    if (seq >= b->pub.sent) {
        b->malformed++; /* never published */
        return;
    }
    if (!bc->rcvd) {
        /* The first: where this subscriber's sequence starts (sync). */
        bc->rcvd = 1;
        bc->next = seq + 1;
        bc->missing = 0;
        b->synced++;
        if (b->stage == BS_SYNC && b->synced >= b->open)
            bcast_go(b);
        return;
    }
    if (seq == bc->next) {
        bc->next++;
        bc->missing <<= 1;
    } else if (seq > bc->next) {
        uint64_t gap = seq - bc->next;

        b->lost_msgs += gap;
        bc->missing = gap + 1 >= 64 ? ~(uint64_t)1
                                    : (bc->missing << (gap + 1)) |
                                          ((((uint64_t)1 << gap) - 1) << 1);
        bc->next = seq + 1;
    } else {
        uint64_t i = bc->next - 1 - seq;

        if (i >= 64 || !(bc->missing >> i & 1)) {
            b->duplicated++;
            return;
        }
        bc->missing &= ~((uint64_t)1 << i);
        b->lost_msgs--;
        b->reordered++;
    }
    bc->rcvd++;
    if (b->stage < BS_RUN || seq < b->win0)
        return; /* a probe */
    now = rx_now(b, bc);
    if (b->measuring) {
        b->rcvd++;
        hist_record(b->lat, now - sent_at);
    }
    if (seq >= b->done) {
        b->ring[seq % b->o.inflight]++;
        if (seq == b->done)
            bcast_advance(b, now);
    }
}

static void bcast_report(struct bench *b, FILE *out)
{
    double secs = bench_window_secs(b);
    uint64_t published = b->pub1 > b->pub0 ? b->pub1 - b->pub0 : 0;

    fprintf(out, "broadcast %s -> %s\n", b->o.pub_url, b->o.url);
    fprintf(out,
            "subscribers  %" PRIu32 " of %" PRIu32 " open, %" PRIu32
            " failed, %" PRIu32 " closed early; %" PRIu64 " B messages, ",
            b->opened, b->o.conns, b->failed, b->lost, b->o.size);
    if (b->o.rate)
        fprintf(out, "%" PRIu32 " per second\n", b->o.rate);
    else
        fprintf(out, "at most %" PRIu32 " in flight\n", b->o.inflight);
    fprintf(out,
            "measured     %.2f s after a %.1f s warm-up: %" PRIu64
            " messages published, %" PRIu64 " delivered\n",
            secs, b->o.warmup_ms / 1000.0, published, b->rcvd);
    fprintf(out, "deliveries/s %.0f (%.0f messages/s published)\n",
            secs > 0 ? b->rcvd / secs : 0.0, secs > 0 ? published / secs : 0.0);
    bench_latency_lines(b, out, secs);
    fprintf(out,
            "check        %" PRIu64 " lost, %" PRIu64 " duplicated, %" PRIu64
            " out of order, %" PRIu64 " malformed, %" PRIu64
            " sends dropped%s\n",
            b->lost_msgs, b->duplicated, b->reordered, b->malformed, b->dropped,
            b->lost_msgs || b->duplicated || b->reordered || b->malformed ||
                    b->dropped
                ? ": NOT VALID"
                : "");
    if (b->held)
        fprintf(out,
                "held back    %" PRIu64 " scheduled messages (--inflight "
                "already outstanding)\n",
                b->held);
}

static void bcast_report_json(struct bench *b, FILE *out)
{
    double secs = bench_window_secs(b);
    uint64_t published = b->pub1 > b->pub0 ? b->pub1 - b->pub0 : 0;

    fprintf(out, "\"pub_url\": ");
    json_fput_str(out, b->o.pub_url, strlen(b->o.pub_url));
    fprintf(out,
            ", \"size\": %" PRIu64 ", \"inflight\": %" PRIu32 ", \"rate\": ",
            b->o.size, b->o.inflight);
    if (b->o.rate)
        fprintf(out, "%" PRIu32, b->o.rate);
    else
        fputs("null", out);
    fprintf(out,
            ", \"subscribers\": %" PRIu32 ", \"warmup_s\": %.3f, "
            "\"duration_s\": %.3f, \"published\": %" PRIu64
            ", \"published_per_s\": %.1f, \"deliveries\": %" PRIu64
            ", \"deliveries_per_s\": %.0f, \"latency_us\": {\"p50\": %.2f, "
            "\"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f, \"mean\": %.2f}, "
            "\"lost\": %" PRIu64 ", \"duplicated\": %" PRIu64
            ", \"out_of_order\": %" PRIu64 ", \"malformed\": %" PRIu64
            ", \"dropped\": %" PRIu64 ", \"held\": %" PRIu64
            ", \"bench_cpu_pct\": %.1f, \"server_cpu_pct\": ",
            b->nsubs, b->o.warmup_ms / 1000.0, secs, published,
            secs > 0 ? published / secs : 0.0, b->rcvd,
            secs > 0 ? b->rcvd / secs : 0.0, hist_quantile(b->lat, 0.50) / 1e3,
            hist_quantile(b->lat, 0.99) / 1e3,
            hist_quantile(b->lat, 0.999) / 1e3, hist_max(b->lat) / 1e3,
            hist_mean(b->lat) / 1e3, b->lost_msgs, b->duplicated, b->reordered,
            b->malformed, b->dropped, b->held,
            bench_cpu_pct(b->cpu0, b->cpu1, secs));
    if (b->srv_cpu)
        fprintf(out, "%.1f", bench_cpu_pct(b->srv_cpu0, b->srv_cpu1, secs));
    else
        fputs("null", out);
}

static bool bcast_invalid(const struct bench *b)
{
    return b->rcvd == 0 || b->lost_msgs || b->duplicated || b->reordered ||
           b->malformed || b->dropped;
}

const struct bench_mode bench_broadcast = {
    .name = "broadcast",
    .bit = M_BCAST,
    .default_conns = 2000,
    .default_inflight = 64,
    .summary = "open --conns subscribers on --sub-url and one "
               "publisher on --pub-url, and publish --size byte "
               "messages: with --rate 0 as fast as every subscriber "
               "takes them (at most --inflight published and not yet "
               "received by all), else --rate per second; after "
               "--warmup, count for --duration and report deliveries/s "
               "(messages received by all subscribers together) and "
               "the publish-to-receive latency p50/p99/p999; a message "
               "lost, duplicated or out of order fails the run",
    .publisher = true,
    .start = bcast_start,
    .finish = bcast_finish,
    .on_timer = bcast_on_timer,
    .on_message = bcast_on_message,
    .report = bcast_report,
    .report_json = bcast_report_json,
    .invalid = bcast_invalid,
};
