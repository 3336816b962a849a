/*
 * bench_driver.c - the connection driver every mode of `moor bench`
 * shares, in phases:
 *
 *   warm-up   one connection, one message echoed, closed: the server is
 *             there, and code it runs once (the handshake's SHA-1, a
 *             runtime's lazily built tables) is faulted in before any
 *             baseline is taken; a mode with a publisher (broadcast)
 *             opens the publisher beside it (bench_broadcast.c); a churn
 *             mode (handshake) only opens and closes it, so its URL may
 *             be any WebSocket endpoint (/sub/CH?token=... as well as
 *             /echo);
 *   settle    a short pause, so the warm-up connection is gone;
 *   connect   --conns connections, at most --parallel handshakes at once,
 *             bound round-robin to the --sources addresses, under
 *             --connect-timeout each and --timeout for the whole phase;
 *   run       the mode (its hooks: struct bench_mode);
 *   close     a close handshake on every connection, bounded by the
 *             client's close timeout plus a second, then whatever is left
 *             is closed outright.
 *
 * Keeps: every wait has a deadline (b->timer is the current phase's);
 * all memory is allocated by bench_setup() before the run (nothing per
 * message but what ws_send() itself allocates).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "bench_int.h"
#include "conn.h"
#include "hist.h"
#include "loop.h"
#include "mem.h"
#include "procfs.h"
#include "signals.h"
#include "tls.h"
#include "util.h"
#include "ws_client.h"
#include "ws_server.h"

/* Handshakes that may fail during a handshake run before it stops (a
 * server that went away refuses every connect at once). */
#define HS_MAX_FAILS 100u

static const struct sockaddr *source_of(const struct bench *b, uint32_t i,
                                        socklen_t *len)
{
    if (!b->nsrc) {
        *len = 0;
        return NULL;
    }
    *len = b->src[0].ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6);
    return (const struct sockaddr *)&b->src[i % b->nsrc];
}

/* Starts connection bc (number i). Returns 0 or -errno (nothing started;
 * no callback will run). */
static int launch(struct bench *b, struct bconn *bc, uint32_t i)
{
    struct ws_target t = {
        .addr = (const struct sockaddr *)&b->t.addr,
        .addrlen = b->t.addrlen,
        .host = b->t.host,
        .path = b->t.path,
        .tls = b->t.tls ? b->tls : NULL,
        .tls_name = b->t.name,
    };
    struct conn *c;
    int err = 0;

    t.source = source_of(b, i, &t.sourcelen);
    bc->state = BC_CONNECTING;
    bc->started = mono_ns();
    c = ws_client_connect(b->cl, &t, &b->h, bc, &err);
    if (!c) {
        bc->state = BC_CLOSED;
        return err ? err : -EIO;
    }
    if (bc->state == BC_CONNECTING || bc->state == BC_OPEN)
        bc->c = c;
    return 0;
}

/* Starts one of the bench's own connections (the warm-up one, the
 * publisher) to tg, bound to the first source address if it is of the
 * same family. Returns 0, or -1 with err set (nothing started). */
static int connect_own(struct bench *b, struct bconn *bc,
                       const struct target *tg, const char *url, char *err,
                       size_t errlen)
{
    struct ws_target t = {
        .addr = (const struct sockaddr *)&tg->addr,
        .addrlen = tg->addrlen,
        .host = tg->host,
        .path = tg->path,
        .tls = tg->tls ? b->tls : NULL,
        .tls_name = tg->name,
    };
    struct conn *c;
    int e = 0;

    if (b->nsrc && b->src[0].ss_family == tg->addr.ss_family)
        t.source = source_of(b, 0, &t.sourcelen);
    bc->state = BC_CONNECTING;
    c = ws_client_connect(b->cl, &t, &b->h, bc, &e);
    if (!c) {
        bc->state = BC_CLOSED;
        snprintf(err, errlen, "cannot connect to %s: %s", url,
                 strerror(e ? -e : EIO));
        return -1;
    }
    if (bc->state == BC_CONNECTING || bc->state == BC_OPEN)
        bc->c = c;
    return 0;
}

/* launch() of the connection after the first n returned rc < 0: counts
 * the failure. Returns -1 if the run was stopped (out of file
 * descriptors), else 0. */
static int launch_failed(struct bench *b, int rc, uint64_t n)
{
    char what[96];

    b->connecting--;
    b->failed++;
    snprintf(what, sizeof(what), "%s%s", strerror(-rc),
             rc == -EADDRNOTAVAIL ? " (no free port or source "
                                    "address: see --sources)"
                                  : "");
    bench_count_reason(&b->fail_why, what);
    if (rc == -EMFILE || rc == -ENFILE) {
        bench_stop(b,
                   "out of file descriptors after %" PRIu64 " connections: %s",
                   n, strerror(-rc));
        return -1;
    }
    return 0;
}

static void launch_more(struct bench *b)
{
    while (b->phase == PH_CONNECT && b->launched < b->o.conns &&
           b->connecting < b->o.parallel) {
        struct bconn *bc = &b->conns[b->launched];
        uint32_t i = b->launched++;
        int rc;

        b->connecting++;
        rc = launch(b, bc, i);
        if (rc < 0 && launch_failed(b, rc, i) < 0)
            return;
    }
}

/* handshake: a new connection in every free slot, one closed by us once
 * open or one whose handshake failed. The source addresses keep rotating
 * from where the connecting phase left them. */
static void churn_launch(struct bench *b)
{
    for (uint32_t i = 0; i < b->o.conns && b->phase == PH_RUN; i++) {
        struct bconn *bc = &b->conns[i];
        uint64_t n;
        int rc;

        if (bc->state != BC_RECYCLED && bc->state != BC_CLOSED)
            continue;
        n = b->o.conns + b->relaunched++;
        b->connecting++;
        rc = launch(b, bc, (uint32_t)n);
        if (rc < 0) {
            b->run_failed++;
            if (launch_failed(b, rc, n) < 0)
                return;
        }
    }
    if (b->phase == PH_RUN && b->run_failed >= HS_MAX_FAILS) {
        char why[512];

        bench_format_reasons(&b->fail_why, why, sizeof(why));
        bench_stop(b, "%" PRIu32 " handshakes failed during the run (%s)",
                   b->run_failed, why);
    }
}

static void on_open(struct conn *c, void *arg)
{
    struct bench *b = arg;
    struct bconn *bc = ws_user(c);

    bc->c = c;
    bc->state = BC_OPEN;
    if (bc == &b->pub) {
        bcast_warm_probe(b);
        return;
    }
    if (bc == &b->warm) {
        /* One message, echoed (or published to it), then closed: see
         * on_message. */
        if (b->mode->publisher) {
            bcast_warm_probe(b);
        } else if (b->mode->churn) {
            /* handshake: the open is what is measured; no echo asked. */
            bc->rcvd++;
            ws_close(c, WS_CLOSE_NORMAL, NULL);
        } else {
            ws_send(c, b->payload, (size_t)MIN(b->o.size, WARM_MSG_MAX), false);
        }
        return;
    }
    b->connecting--;
    b->open++;
    b->opened++;
    if (b->phase == PH_RUN && b->mode->on_open)
        b->mode->on_open(b, bc);
}

static void on_message(struct conn *c, const uint8_t *data, size_t len,
                       bool text, void *arg)
{
    struct bench *b = arg;
    struct bconn *bc = ws_user(c);

    (void)text;
    if (bc == &b->pub)
        return; /* a server may say things to its publisher: not counted */
    if (bc == &b->warm) {
        bc->rcvd++;
        ws_close(c, WS_CLOSE_NORMAL, NULL);
        return;
    }
    if (b->phase == PH_RUN && b->mode->on_message)
        b->mode->on_message(b, bc, data, len);
}

static void on_close(struct conn *c, uint16_t code, void *arg)
{
    struct bench *b = arg;
    struct bconn *bc = ws_user(c);
    const char *detail = ws_close_detail(c);
    char what[128];

    if (bc == &b->pub) {
        uint8_t was = bc->state;

        bc->state = BC_CLOSED;
        bc->c = NULL;
        if (b->phase >= PH_CLOSE)
            return;
        if (was != BC_OPEN)
            bench_stop(b, "cannot connect to %s: %s", b->o.pub_url,
                       detail ? detail : "failed");
        else
            bench_stop(b,
                       "%s closed the publisher's connection: %s (close "
                       "code %u)",
                       b->o.pub_url, detail ? detail : "closed", code);
        return;
    }
    if (bc == &b->warm) {
        uint8_t was = bc->state;

        bc->state = BC_CLOSED;
        bc->c = NULL;
        if (b->phase != PH_WARMUP)
            return;
        if (was != BC_OPEN) {
            bench_stop(b, "cannot connect to %s: %s", b->o.url,
                       detail ? detail : "failed");
            return;
        }
        if (!bc->rcvd && b->mode->publisher) {
            bench_stop(b,
                       "%s closed the warm-up subscriber before a message "
                       "published on %s reached it: %s (close code %u)",
                       b->o.url, b->o.pub_url, detail ? detail : "closed",
                       code);
            return;
        }
        if (!bc->rcvd) {
            bench_stop(b,
                       "%s closed the warm-up connection before echoing its "
                       "message: %s (close code %u)",
                       b->o.url, detail ? detail : "closed", code);
            return;
        }
        /* The warm-up message came back (or was delivered) and the close
         * handshake is done. */
        timer_cancel(loop_timers(b->loop), &b->tick);
        b->phase = PH_SETTLE;
        loop_timer_in(b->loop, &b->timer, SETTLE_MS);
        return;
    }
    switch (bc->state) {
    case BC_CONNECTING:
        b->connecting--;
        /* Still in its handshake when the run ended (handshake mode, or
         * a stop during the connecting phase): cut short by us, not a
         * failure of the server. */
        if (b->phase >= PH_CLOSE)
            break;
        b->failed++;
        if (b->phase == PH_RUN)
            b->run_failed++;
        bench_count_reason(&b->fail_why, detail);
        break;
    case BC_RECYCLED:
        b->open--;
        bc->c = NULL; /* stays BC_RECYCLED: the hook starts the next */
        return;
    case BC_ABANDONED:
        b->failed++;
        snprintf(what, sizeof(what), "not open within --timeout %" PRIu32 " ms",
                 b->o.timeout_ms);
        bench_count_reason(&b->fail_why, what);
        break;
    case BC_OPEN:
        b->open--;
        if (b->phase < PH_CLOSE) {
            b->lost++;
            snprintf(what, sizeof(what), "%s (close code %u)",
                     detail ? detail : "closed", code);
            bench_count_reason(&b->lost_why, what);
        }
        if (b->mode->publisher)
            bcast_conn_gone(b, bc);
        break;
    default:
        break;
    }
    bc->state = BC_CLOSED;
    bc->c = NULL;
}

void bench_stop(struct bench *b, const char *fmt, ...)
{
    va_list ap;

    if (!b->fatal[0]) {
        va_start(ap, fmt);
        vsnprintf(b->fatal, sizeof(b->fatal), fmt, ap);
        va_end(ap);
    }
    bench_begin_close(b);
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

/* Close handshakes on every connection; whatever is left at the deadline
 * is closed outright (timer, PH_CLOSE). */
void bench_begin_close(struct bench *b)
{
    if (b->phase >= PH_CLOSE)
        return;
    if (b->phase == PH_RUN && b->mode->finish)
        b->mode->finish(b);
    b->phase = PH_CLOSE;
    b->sending = false;
    b->measuring = false;
    timer_cancel(loop_timers(b->loop), &b->tick);
    if (b->warm.c)
        conn_close(b->warm.c, CLOSE_SHUTDOWN);
    if (b->pub.c && b->pub.state == BC_OPEN)
        ws_close(b->pub.c, WS_CLOSE_NORMAL, NULL);
    else if (b->pub.c)
        conn_close(b->pub.c, CLOSE_SHUTDOWN);
    for (uint32_t i = 0; i < b->launched; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state == BC_OPEN && bc->c)
            ws_close(bc->c, WS_CLOSE_NORMAL, NULL);
        else if (bc->state == BC_CONNECTING && bc->c)
            conn_close(bc->c, CLOSE_SHUTDOWN);
    }
    /* The client's own close timeout (5 s) bounds each handshake; one
     * more second, then the rest goes. */
    loop_timer_in(b->loop, &b->timer, 6000);
}

static void connect_done(struct bench *b)
{
    char why[512] = "";

    timer_cancel(loop_timers(b->loop), &b->timer);
    b->t_open = mono_ns();
    if (b->failed) {
        bench_format_reasons(&b->fail_why, why, sizeof(why));
        bench_note(b, "%" PRIu32 " of %" PRIu32 " connections failed (%s)",
                   b->failed, b->o.conns, why);
    }
    if (!b->open) {
        bench_stop(b, "no connection to %s could be opened (%s)", b->o.url,
                   why);
        return;
    }
    bench_note(b, "%" PRIu32 " connections open in %.2f s", b->open,
               bench_open_secs(b));
    b->phase = PH_RUN;
    b->mode->start(b);
}

static void on_timer(struct timer *t)
{
    struct bench *b = container_of(t, struct bench, timer);

    switch (b->phase) {
    case PH_WARMUP:
        if (b->mode->publisher && b->pub.state == BC_OPEN &&
            b->warm.state == BC_OPEN)
            bench_stop(b,
                       "no message published on %s reached the subscriber "
                       "on %s within %" PRIu32 " ms (is that where its "
                       "messages go?)",
                       b->o.pub_url, b->o.url, b->o.connect_timeout_ms + 5000);
        else if (b->mode->publisher)
            bench_stop(b, "the %s on %s was not open within %" PRIu32 " ms",
                       b->pub.state != BC_OPEN ? "publisher" : "subscriber",
                       b->pub.state != BC_OPEN ? b->o.pub_url : b->o.url,
                       b->o.connect_timeout_ms + 5000);
        else if (b->mode->churn)
            bench_stop(b,
                       "the warm-up connection to %s was not open and closed "
                       "within %" PRIu32 " ms",
                       b->o.url, b->o.connect_timeout_ms + 5000);
        else
            bench_stop(b,
                       "the warm-up message sent to %s was not echoed within "
                       "%" PRIu32 " ms (is it an echo endpoint?)",
                       b->o.url, b->o.connect_timeout_ms + 5000);
        break;
    case PH_SETTLE:
        if (b->mode->needs_pid) {
            b->before.ok = procfs_mem(b->pid, &b->before.m) == 0;
            if (!b->before.ok) {
                bench_stop(b, "cannot read the memory of pid %d", (int)b->pid);
                break;
            }
        }
        bench_note(b, "opening %" PRIu32 " connections to %s", b->o.conns,
                   b->o.url);
        b->phase = PH_CONNECT;
        b->t_connect = mono_ns();
        loop_timer_in(b->loop, &b->timer, b->o.timeout_ms);
        break;
    case PH_CONNECT:
        for (uint32_t i = 0; i < b->launched; i++) {
            struct bconn *bc = &b->conns[i];

            if (bc->state == BC_CONNECTING) {
                bc->state = BC_ABANDONED;
                b->connecting--;
                if (bc->c)
                    conn_close(bc->c, CLOSE_SHUTDOWN);
            }
        }
        /* Never launched: they count as failed too. */
        if (b->launched < b->o.conns) {
            char what[96];

            snprintf(what, sizeof(what),
                     "not started within --timeout "
                     "%" PRIu32 " ms",
                     b->o.timeout_ms);
            for (; b->launched < b->o.conns; b->launched++) {
                b->failed++;
                bench_count_reason(&b->fail_why, what);
            }
        }
        connect_done(b);
        break;
    case PH_RUN:
        b->mode->on_timer(b);
        break;
    case PH_CLOSE:
        conn_set_each(&b->set, close_one, NULL);
        b->phase = PH_DONE;
        loop_stop(b->loop);
        break;
    case PH_DONE:
        break;
    }
}

/* End of every loop iteration, before conn.c flushes what was queued.
 * One phase may lead to the next within the same call (the last
 * connection gone ends the run, which may end the close at once): the
 * checks run in phase order, not as alternatives, so nothing waits for a
 * deadline that has nothing left to wait for. */
static void on_hook(struct loop_hook *h)
{
    struct bench *b = container_of(h, struct bench, hook);

    if (b->phase == PH_CONNECT) {
        launch_more(b);
        if (b->phase == PH_CONNECT && b->launched == b->o.conns &&
            b->connecting == 0)
            connect_done(b);
    }
    if (b->phase == PH_RUN && b->mode->churn)
        churn_launch(b);
    if (b->phase == PH_RUN && b->open == 0 && !b->mode->churn)
        bench_stop(b, "every connection was closed by the server");
    if (b->phase == PH_CLOSE && b->open == 0 && b->connecting == 0 &&
        !b->warm.c && !b->pub.c) {
        timer_cancel(loop_timers(b->loop), &b->timer);
        b->phase = PH_DONE;
        loop_stop(b->loop);
    }
}

static void on_signal(struct watcher *w, uint32_t events)
{
    struct bench *b = container_of(w, struct bench, sigw);
    struct signalfd_siginfo si;

    (void)events;
    while (read(b->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (b->phase >= PH_CLOSE) {
            /* A second signal: do not wait for the close handshakes. */
            conn_set_each(&b->set, close_one, NULL);
            b->phase = PH_DONE;
            loop_stop(b->loop);
            return;
        }
        b->interrupted = true;
        bench_stop(b, "interrupted");
    }
}

/* SIGINT and SIGTERM end the run early, read on the loop (signals.h). */
static int setup_signals(struct bench *b)
{
    static const int sigs[] = {SIGTERM, SIGINT};

    b->sigfd = signals_open(sigs, 2);
    if (b->sigfd < 0)
        return b->sigfd;
    b->sigw.fn = on_signal;
    return loop_watch(b->loop, b->sigfd, &b->sigw, EPOLLIN);
}

/* Allocates everything the run needs. Returns 0 or -1 with err set. */
int bench_setup(struct bench *b, char *err, size_t errlen)
{
    struct ws_client_opts co = {
        .max_message = MAX(b->o.size, MiB(1)),
        .connect_timeout_ms = b->o.connect_timeout_ms,
        .ping_interval_ms = 60000,
        .pong_timeout_ms = 30000,
        .close_timeout_ms = 5000,
    };
    /* Queue room for every message in flight twice over: sends never
     * meet the cap in a well-behaved run. */
    uint64_t q = (uint64_t)b->o.inflight * (b->o.size + 14) * 2;
    struct conn_limits lim = {
        .write_timeout_ms = 30000,
        .queue_limit = (uint32_t)MIN(MAX(q, MiB(1)), UINT32_MAX),
    };
    int rc;

    b->sigfd = -1;
    timer_init(&b->timer, on_timer);
    timer_init(&b->tick, bcast_on_tick);
    b->payload = mem_calloc(MEM_MISC, 1, MAX(b->o.size, WARM_MSG_MAX));
    b->conns = mem_calloc(MEM_MISC, b->o.conns, sizeof(*b->conns));
    if (!b->payload || !b->conns)
        goto nomem;
    memset(b->payload, 'm', MAX(b->o.size, WARM_MSG_MAX));
    if (b->mode->on_message || b->mode->churn) {
        b->lat = hist_new();
        if (!b->lat)
            goto nomem;
    }
    if (b->mode->bit == M_ECHO) {
        b->sent_at = mem_calloc(MEM_MISC, (size_t)b->o.conns * b->o.inflight,
                                sizeof(uint64_t));
        if (!b->sent_at)
            goto nomem;
        for (uint32_t i = 0; i < b->o.conns; i++)
            b->conns[i].sent_at = b->sent_at + (size_t)i * b->o.inflight;
    }
    if (b->mode->publisher) {
        b->ring = mem_calloc(MEM_MISC, b->o.inflight, sizeof(*b->ring));
        if (!b->ring)
            goto nomem;
    }
    b->loop = loop_new(KiB(256));
    if (!b->loop)
        goto nomem;
    /* Registered before the conn set's hook, so what it queues goes out
     * in the same iteration. */
    b->hook.fn = on_hook;
    loop_add_hook(b->loop, &b->hook);
    if (conn_set_init(&b->set, b->loop, &lim) < 0)
        goto nomem;
    b->set_ready = true;
    if (b->t.tls || b->pt.tls) {
        b->tls = bench_tls_client(b->o.tls_ca, b->o.insecure, err, errlen);
        if (!b->tls)
            return -1;
    }
    b->cl = ws_client_new(&b->set, &co);
    if (!b->cl)
        goto nomem;
    b->h.on_open = on_open;
    b->h.on_message = on_message;
    b->h.on_close = on_close;
    b->h.arg = b;
    b->h.pause_on_backpressure = true;
    rc = setup_signals(b);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set up signals: %s", strerror(-rc));
        return -1;
    }
    return 0;

nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void bench_teardown(struct bench *b)
{
    if (b->set_ready) {
        conn_set_each(&b->set, close_one, NULL);
        conn_set_fini(&b->set);
    }
    if (b->cl)
        ws_client_free(b->cl);
    tls_ctx_free(b->tls);
    if (b->sigfd >= 0) {
        if (b->loop)
            loop_unwatch(b->loop, b->sigfd);
        close(b->sigfd);
    }
    if (b->loop) {
        timer_cancel(loop_timers(b->loop), &b->timer);
        timer_cancel(loop_timers(b->loop), &b->tick);
        b->hook.fn = NULL;
        loop_free(b->loop);
    }
    hist_free(b->lat);
    mem_free(MEM_MISC, b->ring);
    mem_free(MEM_MISC, b->sent_at);
    mem_free(MEM_MISC, b->conns);
    mem_free(MEM_MISC, b->payload);
    mem_free(MEM_MISC, b->src);
}

int bench_run(struct bench *b, char *err, size_t errlen)
{
    int rc;

    /* The warm-up connection (and the publisher), under the connect
     * timeout plus 5 s for its message and close. */
    b->phase = PH_WARMUP;
    loop_timer_in(b->loop, &b->timer, b->o.connect_timeout_ms + 5000);
    if (connect_own(b, &b->warm, &b->t, b->o.url, err, errlen) < 0 ||
        (b->mode->publisher &&
         connect_own(b, &b->pub, &b->pt, b->o.pub_url, err, errlen) < 0))
        return -1;
    rc = loop_run(b->loop);
    if (rc < 0)
        bench_stop(b, "event loop failed: %s", strerror(-rc));
    return 0;
}
