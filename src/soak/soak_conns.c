/*
 * soak_conns.c - one round of `moor soak`'s traffic over WebSocket:
 * --conns connections on moor's own client (ws_client.h, one event
 * loop), each echoing --messages messages of sizes spread around --size
 * (or, with --pub-url, subscribers that must each receive the --messages
 * a new publisher connection sends every round), held idle for --hold
 * beside --fault-conns plain sockets put in the states servers leak in
 * (a reader that never reads, a peer gone silent then with an RST, half
 * a frame, half a handshake), then all closed (--close). wss:// goes
 * through the same client with a TLS context (bench_tls_client(), shared
 * with `moor bench`); its fault sockets speak no TLS: a ClientHello cut
 * short, or a connection that says nothing. The loop, the publisher and
 * soak_pump() serve the other kinds of round too: an http:// --url goes
 * to soak_http.c, with --pub-url to soak_sse.c; tcp:// to soak_tcp.c.
 *
 * Keeps: every wait has a deadline (soak_pump() never waits past its
 * own, and brings the loop's clock up to date first: the blocking work
 * between pumps would otherwise age every deadline armed after it); the
 * fault sockets are blocking with SO_SNDTIMEO/SO_RCVTIMEO set, so a
 * server that stops answering costs at most --connect-timeout each; all
 * memory is allocated by soak_conns_setup() (nothing per round but what
 * ws_send() itself allocates) and freed by soak_conns_teardown().
 * Must not: read the server's /proc (soak_sample.c does), or decide
 * anything about leaks (soak_stats.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "mem.h"
#include "signals.h"
#include "soak_int.h"
#include "tls.h"
#include "util.h"
#include "ws_server.h"

enum { SC_IDLE = 0, SC_CONNECTING, SC_OPEN, SC_CLOSED };

/* Fault connections: what "slow" sends without reading, and the receive
 * buffer it asks for, so the echoes back up in the server. */
#define SLOW_FRAME KiB(64)
#define SLOW_FRAMES 8u
#define SLOW_RCVBUF 4096

static uint32_t rnd(struct soak *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 17;
    s->rng ^= s->rng << 5;
    return s->rng;
}

/* A message size: uniform in --size +- --spread percent, at least 1. */
static size_t msg_size(struct soak *s)
{
    uint64_t d = s->o.size * s->o.spread / 100, lo = s->o.size - d;
    uint64_t n = lo + (d ? rnd(s) % (2 * d + 1) : 0);

    return (size_t)MAX(n, 1u);
}

static void send_next(struct soak *s, struct sconn *sc)
{
    ws_send(sc->c, s->payload, msg_size(s), false);
}

static void on_open(struct conn *c, void *arg)
{
    struct soak *s = arg;
    struct sconn *sc = ws_user(c);

    sc->c = c;
    sc->state = SC_OPEN;
    s->connecting--;
    s->open++;
}

static void on_message(struct conn *c, const uint8_t *data, size_t len,
                       bool text, void *arg)
{
    struct soak *s = arg;
    struct sconn *sc = ws_user(c);

    (void)data;
    (void)len;
    (void)text;
    if (sc == &s->pub)
        return; /* a server may say things to its publisher */
    sc->got++;
    if (!s->pubsub && sc->got < sc->want)
        send_next(s, sc);
}

static void on_close(struct conn *c, uint16_t code, void *arg)
{
    struct soak *s = arg;
    struct sconn *sc = ws_user(c);

    (void)code;
    if (sc->state == SC_CONNECTING) {
        s->connecting--;
        sc->failed = true;
        snprintf(s->why, sizeof(s->why), "%s",
                 ws_close_detail(c) ? ws_close_detail(c) : "failed");
    } else if (sc->state == SC_OPEN) {
        s->open--;
    }
    sc->state = SC_CLOSED;
    sc->c = NULL;
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

static void on_signal(struct watcher *w, uint32_t events)
{
    struct soak *s = container_of(w, struct soak, sigw);
    struct signalfd_siginfo si;

    (void)events;
    while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        s->interrupted = true;
}

int soak_conns_setup(struct soak *s, char *err, size_t errlen)
{
    static const int sigs[] = {SIGTERM, SIGINT};
    struct ws_client_opts co = {
        .max_message = MAX(s->o.size * 2 + 1, MiB(1)),
        .connect_timeout_ms = s->o.connect_timeout_ms,
        .ping_interval_ms = 60000,
        .pong_timeout_ms = 30000,
        .close_timeout_ms = 5000,
    };
    struct conn_limits lim = {
        .write_timeout_ms = 30000,
        .queue_limit = (uint32_t)MIN(MAX(s->o.size * 4, MiB(1)), UINT32_MAX),
    };

    s->rng = 0x9e3779b9u; /* fixed: the same sizes every run */
    s->payload = mem_calloc(MEM_MISC, 1, s->o.size * 2 + 1);
    s->conns = mem_calloc(MEM_MISC, s->o.conns, sizeof(*s->conns));
    s->fault_fds = mem_calloc(MEM_MISC, MAX(s->o.fault_conns, 1u), sizeof(int));
    s->http_fds = mem_calloc(MEM_MISC, s->o.conns, sizeof(int));
    if (!s->payload || !s->conns || !s->fault_fds || !s->http_fds)
        goto nomem;
    memset(s->payload, 's', s->o.size * 2 + 1);
    for (uint32_t i = 0; i < s->o.fault_conns; i++)
        s->fault_fds[i] = -1;
    for (uint32_t i = 0; i < s->o.conns; i++)
        s->http_fds[i] = -1;
    s->loop = loop_new(KiB(256));
    if (!s->loop)
        goto nomem;
    if (conn_set_init(&s->set, s->loop, &lim) < 0)
        goto nomem;
    s->set_ready = true;
    if (s->t.tls || (s->pubsub && s->pt.tls)) {
        s->tls = bench_tls_client(s->o.tls_ca, s->o.insecure, err, errlen);
        if (!s->tls)
            return -1;
    }
    s->cl = ws_client_new(&s->set, &co);
    if (!s->cl)
        goto nomem;
    s->h.on_open = on_open;
    s->h.on_message = on_message;
    s->h.on_close = on_close;
    s->h.arg = s;
    s->h.pause_on_backpressure = true;
    if (s->sse && soak_sse_setup(s) < 0)
        goto nomem;
    if (s->tcp && soak_tcp_setup(s) < 0)
        goto nomem;
    s->sigfd = signals_open(sigs, 2);
    if (s->sigfd < 0) {
        snprintf(err, errlen, "cannot set up signals: %s", strerror(-s->sigfd));
        return -1;
    }
    s->sigw.fn = on_signal;
    if (loop_watch(s->loop, s->sigfd, &s->sigw, EPOLLIN) < 0) {
        snprintf(err, errlen, "cannot watch signals");
        return -1;
    }
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void soak_conns_teardown(struct soak *s)
{
    for (uint32_t i = 0; s->fault_fds && i < s->o.fault_conns; i++)
        if (s->fault_fds[i] >= 0)
            close(s->fault_fds[i]);
    soak_sse_teardown(s);
    soak_tcp_teardown(s);
    if (s->set_ready) {
        conn_set_each(&s->set, close_one, NULL);
        conn_set_fini(&s->set);
    }
    if (s->cl)
        ws_client_free(s->cl);
    tls_ctx_free(s->tls); /* after its last conn */
    if (s->sigfd >= 0) {
        if (s->loop)
            loop_unwatch(s->loop, s->sigfd);
        close(s->sigfd);
    }
    if (s->loop)
        loop_free(s->loop);
    for (uint32_t i = 0; s->http_fds && i < s->o.conns; i++)
        if (s->http_fds[i] >= 0)
            close(s->http_fds[i]);
    mem_free(MEM_MISC, s->http_fds);
    mem_free(MEM_MISC, s->fault_fds);
    mem_free(MEM_MISC, s->conns);
    mem_free(MEM_MISC, s->payload);
}

/* soak_int.h. */
bool soak_pump(struct soak *s, bool (*done)(const struct soak *), uint32_t ms)
{
    uint64_t end = mono_ns() + (uint64_t)ms * 1000000u;

    /* The loop's clock is read once an iteration: after blocking work
     * (a sample, the fault sockets) it must be brought up to date before
     * anything arms a deadline from it. */
    loop_update_time(s->loop);
    for (;;) {
        uint64_t now;

        if (done && done(s))
            return true;
        if (s->interrupted)
            return false;
        now = mono_ns();
        if (now >= end)
            return !done;
        loop_run_once(s->loop,
                      (int)MIN((end - now) / 1000000u + 1, (uint64_t)100));
    }
}

static bool none_connecting(const struct soak *s)
{
    return s->connecting == 0;
}

static bool pub_settled(const struct soak *s)
{
    return s->pub.state != SC_CONNECTING;
}

static bool all_echoed(const struct soak *s)
{
    for (uint32_t i = 0; i < s->o.conns; i++) {
        const struct sconn *sc = &s->conns[i];

        if (sc->state == SC_OPEN && sc->got < sc->want)
            return false;
    }
    return true;
}

static bool all_closed(const struct soak *s)
{
    return s->open == 0 && s->connecting == 0;
}

/* ---- fault connections (plain blocking sockets, with deadlines) -------- */

static int raw_connect(struct soak *s, bool small_rcvbuf)
{
    struct timeval tv = {
        .tv_sec = s->o.connect_timeout_ms / 1000,
        .tv_usec = (s->o.connect_timeout_ms % 1000) * 1000,
    };
    int fd = socket(s->t.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rb = SLOW_RCVBUF;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (small_rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    if (connect(fd, (const struct sockaddr *)&s->t.addr, s->t.addrlen) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int upgrade_request(const struct soak *s, char *buf, size_t len)
{
    return snprintf(buf, len,
                    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: bW9vciBzb2FrIGZhdWx0IQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n",
                    s->t.path, s->t.host);
}

static bool send_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* The upgrade, and its 101. Returns whether the server answered 101. */
static bool raw_handshake(const struct soak *s, int fd)
{
    char req[1024], resp[2048];
    size_t n = 0;
    int len = upgrade_request(s, req, sizeof(req));

    if (len <= 0 || (size_t)len >= sizeof(req) ||
        !send_all(fd, req, (size_t)len))
        return false;
    while (n < sizeof(resp) - 1) {
        ssize_t r = recv(fd, resp + n, sizeof(resp) - 1 - n, 0);

        if (r <= 0)
            return false;
        n += (size_t)r;
        resp[n] = '\0';
        if (strstr(resp, "\r\n\r\n"))
            return !strncmp(resp, "HTTP/1.1 101", 12);
    }
    return false;
}

/* A masked binary frame header (the key is zero: the payload goes as
 * is) for len bytes. Returns its length. */
static size_t frame_head(uint8_t *h, uint64_t len)
{
    size_t n = 2;

    h[0] = 0x82;
    if (len < 126) {
        h[1] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    memset(h + n, 0, 4);
    return n + 4;
}

static void rst_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* soak_int.h. */
enum soak_fault soak_fault_kind(const struct soak *s, uint32_t i)
{
    uint32_t want = i % s->nfault_kinds, seen = 0;

    for (unsigned k = 0; k < F_NKINDS; k++)
        if ((s->fault_mask >> k) & 1 && seen++ == want)
            return (enum soak_fault)k;
    return F_VANISH;
}

/* wss://: the first 48 bytes of a TLS 1.2 ClientHello record whose
 * header claims 200: the server waits for the rest of it. */
static const uint8_t CLIENT_HELLO_HALF[48] = {
    0x16, 0x03, 0x01, 0x00, 0xc8,       /* handshake record, 200 */
    0x01, 0x00, 0x00, 0xc4, 0x03, 0x03, /* ClientHello, 196, TLS 1.2 */
    'm',  'o',  'o',  'r',  ' ',  's',  'o', 'a', 'k', ' ',  'c',  'l', 'i',
    'e',  'n',  't',  ' ',  'h',  'e',  'l', 'l', 'o', ' ',  'c',  'u', 't',
    ' ',  's',  'h',  'o',  'r',  't',  '!', '!', '!', 0x00, 0x00,
};

/* Opens fault connection i and puts it in its state. Returns its fd, or
 * -1 (it could not be opened: counted, not fatal). */
static int fault_open(struct soak *s, uint32_t i)
{
    enum soak_fault k = soak_fault_kind(s, i);
    uint8_t h[14];
    char req[1024];
    int fd = raw_connect(s, k == F_SLOW), len;

    if (fd < 0)
        return -1;
    if (s->t.tls) {
        /* No TLS on these sockets: handshake is a ClientHello cut short;
         * the others connect and say nothing (a vanished peer before its
         * handshake), then end as their kind does (fault_close()). */
        if (k == F_HANDSHAKE &&
            !send_all(fd, CLIENT_HELLO_HALF, sizeof(CLIENT_HELLO_HALF))) {
            close(fd);
            return -1;
        }
        return fd;
    }
    if (k == F_HANDSHAKE) {
        len = upgrade_request(s, req, sizeof(req));
        if (len > 0 && (size_t)len < sizeof(req) &&
            send_all(fd, req, (size_t)len / 2))
            return fd;
        close(fd);
        return -1;
    }
    if (!raw_handshake(s, fd)) {
        close(fd);
        return -1;
    }
    if (k == F_SLOW && s->pubsub) {
        /* A subscriber that never reads: the fan-out backs up. */
    } else if (k == F_SLOW) {
        /* Echoes back up behind a receive buffer nobody reads; a server
         * that paces its reading makes the sends stop early. */
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};

        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        for (uint32_t f = 0; f < SLOW_FRAMES; f++) {
            size_t hn = frame_head(h, SLOW_FRAME);
            size_t n = MIN((size_t)SLOW_FRAME, (size_t)(s->o.size * 2 + 1));

            if (!send_all(fd, h, hn))
                break;
            /* The payload from s->payload, repeated. */
            for (size_t sent = 0; sent < SLOW_FRAME; sent += n)
                if (!send_all(fd, s->payload, MIN(n, SLOW_FRAME - sent)))
                    return fd;
        }
    } else if (k == F_HALF) {
        size_t hn = frame_head(h, 1000);

        send_all(fd, h, hn);
        send_all(fd, s->payload, MIN((size_t)500, (size_t)s->o.size * 2 + 1));
    } else {
        /* vanish: one message, its echo never read; gone at the close */
        size_t hn = frame_head(h, 16);

        send_all(fd, h, hn);
        send_all(fd, s->payload, MIN((size_t)16, (size_t)s->o.size * 2 + 1));
    }
    return fd;
}

static void fault_close(struct soak *s, uint32_t i)
{
    int fd = s->fault_fds[i];

    if (fd < 0)
        return;
    if (soak_fault_kind(s, i) == F_HALF)
        close(fd); /* a FIN in the middle of a frame */
    else
        rst_close(fd);
    s->fault_fds[i] = -1;
}

/* ---- the round --------------------------------------------------------- */

/* --pub-url: a publisher connects and sends --messages messages, after
 * every subscriber is open. A publisher that cannot connect leaves the
 * subscribers without messages: the round counts what they received. */
void soak_publish(struct soak *s)
{
    struct ws_target t = {
        .addr = (const struct sockaddr *)&s->pt.addr,
        .addrlen = s->pt.addrlen,
        .host = s->pt.host,
        .path = s->pt.path,
        .tls = s->pt.tls ? s->tls : NULL,
        .tls_name = s->pt.name,
    };
    int e = 0;

    if (s->pub_tcp) {
        soak_tcp_publish(s);
        return;
    }
    memset(&s->pub, 0, sizeof(s->pub));
    s->pub.state = SC_CONNECTING;
    s->connecting++;
    if (!ws_client_connect(s->cl, &t, &s->h, &s->pub, &e)) {
        s->connecting--;
        s->pub.state = SC_CLOSED;
        return;
    }
    soak_pump(s, pub_settled, s->o.connect_timeout_ms + 1000);
    if (s->pub.state != SC_OPEN)
        return;
    for (uint32_t m = 0; m < s->o.messages; m++)
        send_next(s, &s->pub);
}

void soak_close_publisher(struct soak *s)
{
    soak_tcp_close_publisher(s);
    if (s->pub.state == SC_OPEN && s->pub.c)
        ws_close(s->pub.c, WS_CLOSE_NORMAL, NULL);
}

/* soak_int.h. */
bool soak_use_rst(const struct soak *s, uint32_t i)
{
    if (!strcmp(s->o.close, "rst"))
        return true;
    return !strcmp(s->o.close, "mixed") && i % 2;
}

int soak_round(struct soak *s, struct soak_sample *smp, char *err,
               size_t errlen)
{
    struct ws_target t = {
        .addr = (const struct sockaddr *)&s->t.addr,
        .addrlen = s->t.addrlen,
        .host = s->t.host,
        .path = s->t.path,
        .tls = s->t.tls ? s->tls : NULL,
        .tls_name = s->t.name,
    };

    if (s->sse)
        return soak_sse_round(s, smp, err, errlen);
    if (s->tcp)
        return soak_tcp_round(s, smp, err, errlen);
    if (s->http)
        return soak_http_round(s, smp, err, errlen);
    s->why[0] = '\0';
    s->open = s->connecting = 0;
    loop_update_time(s->loop); /* the sample blocked since the last round */
    for (uint32_t i = 0; i < s->o.conns; i++) {
        struct sconn *sc = &s->conns[i];
        int e = 0;

        memset(sc, 0, sizeof(*sc));
        sc->want = s->o.messages;
        sc->state = SC_CONNECTING;
        s->connecting++;
        if (!ws_client_connect(s->cl, &t, &s->h, sc, &e)) {
            s->connecting--;
            sc->state = SC_CLOSED;
            sc->failed = true;
            snprintf(s->why, sizeof(s->why), "%s", strerror(e ? -e : EIO));
        }
    }
    soak_pump(s, none_connecting, s->o.connect_timeout_ms + 1000);
    for (uint32_t i = 0; i < s->o.conns; i++) {
        struct sconn *sc = &s->conns[i];

        if (sc->state == SC_CONNECTING && sc->c) /* past the deadline */
            conn_close(sc->c, CLOSE_SHUTDOWN);
    }
    soak_pump(s, none_connecting, 100);
    smp->opened = s->open;
    smp->failed = s->o.conns - s->open;
    if (s->open == 0 && !s->interrupted) {
        snprintf(err, errlen, "no connection to %s could be opened (%s)",
                 s->o.url, s->why[0] ? s->why : "failed");
        soak_pump(s, all_closed, 1000);
        return -1;
    }
    for (uint32_t i = 0; i < s->o.fault_conns && !s->interrupted; i++) {
        s->fault_fds[i] = fault_open(s, i);
        smp->faults += s->fault_fds[i] >= 0;
    }
    loop_update_time(s->loop); /* the fault sockets block */
    if (s->pubsub)
        soak_publish(s);
    else
        for (uint32_t i = 0; i < s->o.conns; i++) {
            struct sconn *sc = &s->conns[i];

            if (sc->state == SC_OPEN && sc->want)
                send_next(s, sc);
        }
    soak_pump(s, all_echoed, s->o.timeout_ms);
    for (uint32_t i = 0; i < s->o.conns; i++)
        smp->received += s->conns[i].got;
    soak_pump(s, NULL, s->o.hold_ms);

    for (uint32_t i = 0; i < s->o.fault_conns; i++)
        fault_close(s, i);
    soak_close_publisher(s);
    for (uint32_t i = 0; i < s->o.conns; i++) {
        struct sconn *sc = &s->conns[i];

        if (sc->state != SC_OPEN || !sc->c)
            continue;
        if (soak_use_rst(s, i)) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(conn_fd(sc->c), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            conn_close(sc->c, CLOSE_SHUTDOWN);
        } else {
            ws_close(sc->c, WS_CLOSE_NORMAL, NULL);
        }
    }
    /* The client's close timeout (5 s) bounds each handshake. */
    if (!soak_pump(s, all_closed, 6000))
        conn_set_each(&s->set, close_one, NULL);
    soak_pump(s, all_closed, 100);
    return 0;
}
