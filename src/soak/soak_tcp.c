/*
 * soak_tcp.c - `moor soak` over length-prefixed TCP frames (moor's
 * --tcp-listen, docs/framing.md: a 4-byte big-endian length, then the
 * payload). --url tcp://HOST:PORT/CHANNEL: --conns subscribers whose
 * first frame is "SUB CHANNEL", on plain non-blocking sockets watched by
 * the round's loop, each of which must receive the --messages a new
 * publisher sends every round; --pub-url tcp://HOST:PORT/CHANNEL: that
 * publisher is a blocking socket whose first frame is "PUB CHANNEL" and
 * then a frame per message (soak_publish() calls it, whatever --url
 * is). The fault connections: slow (a subscriber with a small receive
 * buffer that never reads), vanish (a subscriber gone with an RST),
 * half (a publisher that sends half a frame, then a FIN), handshake
 * (half of the first frame, then an RST).
 *
 * Keeps: the subscribers' state is allocated once, by soak_tcp_setup(),
 * and outlives every loop iteration (loop.h's stale-event rule, as in
 * soak_sse.c); the frames are counted as they come, nothing of them is
 * kept; every blocking socket has SO_SNDTIMEO/SO_RCVTIMEO (at most
 * --connect-timeout a wait), every loop wait is soak_pump()'s.
 * Must not: read the server's /proc, or judge anything.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "mem.h"
#include "soak_int.h"
#include "util.h"

#define SLOW_RCVBUF 4096
/* A subscription must reach the server before the publisher's first
 * message: TCP frames have no answer to SUB to wait for. */
#define SUB_SETTLE_MS 100

struct tcp_sub {
    struct watcher w;
    struct soak *s;
    int fd;
    uint32_t got;  /* message frames received (not empty, no notice) */
    uint32_t left; /* payload bytes of the current frame still due */
    uint8_t hn;    /* header bytes in hdr */
    uint8_t hdr[4];
    bool first; /* the next payload byte is the frame's first */
};

/* soak_int.h. */
int soak_tcp_parse_url(const char *flag, const char *url, struct target *t,
                       char *err, size_t errlen)
{
    char ws[sizeof(t->path) + 300];
    const char *ch;

    if (strncasecmp(url, "tcp://", 6)) {
        snprintf(err, errlen, "invalid --%s \"%.200s\": expected tcp://", flag,
                 url);
        return -1;
    }
    /* The address as a ws:// URL's (bench_parse_url), the scheme swapped. */
    snprintf(ws, sizeof(ws), "ws://%s", url + 6);
    if (bench_parse_url(flag, ws, t, err, errlen) < 0)
        return -1;
    ch = t->path + 1;
    if (!ch[0] || strpbrk(ch, " /?")) {
        snprintf(err, errlen,
                 "invalid --%s \"%.200s\": expected tcp://HOST:PORT/CHANNEL, "
                 "one channel name",
                 flag, url);
        return -1;
    }
    return 0;
}

/* A blocking socket to t, every wait bounded by --connect-timeout. */
static int tcp_connect(const struct soak *s, const struct target *t,
                       bool small_rcvbuf)
{
    struct timeval tv = {
        .tv_sec = s->o.connect_timeout_ms / 1000,
        .tv_usec = (s->o.connect_timeout_ms % 1000) * 1000,
    };
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rb = SLOW_RCVBUF;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (small_rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) < 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
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

static void put_len(uint8_t h[4], uint32_t n)
{
    h[0] = (uint8_t)(n >> 24);
    h[1] = (uint8_t)(n >> 16);
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
}

/* A frame: header and payload. */
static bool send_frame(int fd, const void *p, uint32_t n)
{
    uint8_t h[4];

    put_len(h, n);
    return send_all(fd, h, 4) && send_all(fd, p, n);
}

/* "VERB CHANNEL" for t into buf; its length, or 0 when it does not fit. */
static uint32_t command(const struct target *t, const char *verb, char *buf,
                        size_t cap)
{
    int n = snprintf(buf, cap, "%s %s", verb, t->path + 1);

    return n > 0 && (size_t)n < cap ? (uint32_t)n : 0;
}

static void rst_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void sub_close(struct soak *s, struct tcp_sub *u, bool rst)
{
    if (u->fd < 0)
        return;
    loop_unwatch(s->loop, u->fd);
    if (rst)
        rst_close(u->fd);
    else
        close(u->fd);
    u->fd = -1;
    s->open--;
}

/* Counts the message frames in p[0..n): an empty frame (a heartbeat)
 * and a notice (a payload starting with NUL) are not messages. */
static void scan(struct tcp_sub *u, const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (u->left) {
            size_t take = MIN((size_t)u->left, n - i);

            if (u->first && p[i] != 0)
                u->got++;
            u->first = false;
            u->left -= (uint32_t)take;
            i += take;
            continue;
        }
        u->hdr[u->hn++] = p[i++];
        if (u->hn == 4) {
            u->left = (uint32_t)u->hdr[0] << 24 | (uint32_t)u->hdr[1] << 16 |
                      (uint32_t)u->hdr[2] << 8 | u->hdr[3];
            u->hn = 0;
            u->first = true;
        }
    }
}

static void on_readable(struct watcher *w, uint32_t events)
{
    struct tcp_sub *u = container_of(w, struct tcp_sub, w);
    uint8_t buf[16384];

    (void)events;
    while (u->fd >= 0) {
        ssize_t r = recv(u->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (r > 0) {
            scan(u, buf, (size_t)r);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        sub_close(u->s, u, false); /* the server ended it */
    }
}

/* soak_int.h. */
int soak_tcp_setup(struct soak *s)
{
    struct tcp_sub *subs = mem_calloc(MEM_MISC, s->o.conns, sizeof(*subs));

    if (!subs)
        return -1;
    for (uint32_t i = 0; i < s->o.conns; i++) {
        subs[i].fd = -1;
        subs[i].s = s;
        subs[i].w.fn = on_readable;
    }
    s->tcp_subs = subs;
    return 0;
}

void soak_tcp_teardown(struct soak *s)
{
    struct tcp_sub *subs = s->tcp_subs;

    for (uint32_t i = 0; subs && i < s->o.conns; i++)
        if (subs[i].fd >= 0) {
            if (s->loop)
                loop_unwatch(s->loop, subs[i].fd);
            close(subs[i].fd);
        }
    mem_free(MEM_MISC, subs);
    s->tcp_subs = NULL;
    if (s->pub_fd >= 0)
        close(s->pub_fd);
    s->pub_fd = -1;
}

/* ---- the publisher ----------------------------------------------------- */

static uint32_t rnd(struct soak *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 17;
    s->rng ^= s->rng << 5;
    return s->rng;
}

/* A message size as soak_conns.c's: --size +- --spread percent, >= 1. */
static uint32_t msg_size(struct soak *s)
{
    uint64_t d = s->o.size * s->o.spread / 100, lo = s->o.size - d;
    uint64_t n = lo + (d ? rnd(s) % (2 * d + 1) : 0);

    return (uint32_t)MAX(n, 1u);
}

void soak_tcp_publish(struct soak *s)
{
    char cmd[600];
    uint32_t n = command(&s->pt, "PUB", cmd, sizeof(cmd));
    int fd = tcp_connect(s, &s->pt, false);

    if (fd < 0)
        return; /* the subscribers receive nothing: the round says so */
    if (!n || !send_frame(fd, cmd, n)) {
        close(fd);
        return;
    }
    for (uint32_t m = 0; m < s->o.messages; m++)
        if (!send_frame(fd, s->payload, msg_size(s)))
            break;
    s->pub_fd = fd;
    loop_update_time(s->loop); /* the sends blocked */
}

void soak_tcp_close_publisher(struct soak *s)
{
    if (s->pub_fd < 0)
        return;
    close(s->pub_fd);
    s->pub_fd = -1;
}

/* ---- fault connections ------------------------------------------------- */

static int fault_open(struct soak *s, uint32_t i)
{
    enum soak_fault k = soak_fault_kind(s, i);
    char cmd[600];
    uint32_t n = command(&s->t, k == F_HALF ? "PUB" : "SUB", cmd, sizeof(cmd));
    uint8_t h[4];
    int fd = tcp_connect(s, &s->t, k == F_SLOW);

    if (fd < 0 || !n)
        return fd;
    if (k == F_HANDSHAKE) {
        /* The first frame's header and half its command. */
        put_len(h, n);
        send_all(fd, h, 4);
        send_all(fd, cmd, n / 2);
    } else if (k == F_HALF) {
        /* A publisher with half a frame: a header for 1000 bytes, 500. */
        send_frame(fd, cmd, n);
        put_len(h, 1000);
        send_all(fd, h, 4);
        send_all(fd, s->payload, MIN((size_t)500, (size_t)s->o.size * 2 + 1));
    } else {
        /* slow: a subscriber that never reads (the fan-out backs up);
         * vanish: one that says nothing more, then an RST. */
        send_frame(fd, cmd, n);
    }
    return fd;
}

static void faults_close(struct soak *s)
{
    for (uint32_t i = 0; i < s->o.fault_conns; i++) {
        int fd = s->fault_fds[i];

        if (fd < 0)
            continue;
        if (soak_fault_kind(s, i) == F_HALF)
            close(fd); /* a FIN in the middle of a frame */
        else
            rst_close(fd);
        s->fault_fds[i] = -1;
    }
}

/* ---- the round --------------------------------------------------------- */

static bool subs_received(const struct soak *s)
{
    const struct tcp_sub *subs = s->tcp_subs;

    for (uint32_t i = 0; i < s->o.conns; i++)
        if (subs[i].fd >= 0 && subs[i].got < s->o.messages)
            return false;
    return true;
}

static bool subs_closed(const struct soak *s)
{
    return s->open == 0;
}

int soak_tcp_round(struct soak *s, struct soak_sample *smp, char *err,
                   size_t errlen)
{
    struct tcp_sub *subs = s->tcp_subs;
    char cmd[600];
    uint32_t n = command(&s->t, "SUB", cmd, sizeof(cmd));

    s->why[0] = '\0';
    s->open = s->connecting = 0;
    for (uint32_t i = 0; i < s->o.conns; i++) {
        struct tcp_sub *u = &subs[i];

        memset(&u->got, 0, sizeof(*u) - offsetof(struct tcp_sub, got));
        u->fd = tcp_connect(s, &s->t, false);
        if (u->fd < 0) {
            snprintf(s->why, sizeof(s->why), "%s", strerror(errno));
            continue;
        }
        if (!n || !send_frame(u->fd, cmd, n) ||
            loop_watch(s->loop, u->fd, &u->w, EPOLLIN) < 0) {
            snprintf(s->why, sizeof(s->why), "cannot send SUB");
            close(u->fd);
            u->fd = -1;
            continue;
        }
        s->open++;
        smp->opened++;
    }
    smp->failed = s->o.conns - smp->opened;
    if (!smp->opened) {
        snprintf(err, errlen, "no connection to %s could be opened (%s)",
                 s->o.url, s->why[0] ? s->why : "failed");
        return -1;
    }
    for (uint32_t i = 0; i < s->o.fault_conns && !s->interrupted; i++) {
        s->fault_fds[i] = fault_open(s, i);
        smp->faults += s->fault_fds[i] >= 0;
    }
    soak_pump(s, NULL, SUB_SETTLE_MS);
    soak_publish(s);
    soak_pump(s, subs_received, s->o.timeout_ms);
    for (uint32_t i = 0; i < s->o.conns; i++)
        smp->received += subs[i].got;
    soak_pump(s, NULL, s->o.hold_ms);
    faults_close(s);
    for (uint32_t i = 0; i < s->o.conns; i++)
        sub_close(s, &subs[i], soak_use_rst(s, i));
    soak_close_publisher(s);
    soak_pump(s, subs_closed, 100);
    return 0;
}
