/*
 * soak_http.c - a round of `moor soak` over plain HTTP/1.1 keep-alive
 * (--url http://...): --conns connections opened at once, --messages GET
 * requests on each in turn (each answer read in full: a Content-Length
 * body), held idle beside --fault-conns connections in the HTTP states
 * servers leak in, then all closed (--close).
 *
 *   slow       requests pipelined, the answers never read (small
 *              receive buffer): the answers back up in the server
 *   vanish     one request, its answer never read, then an RST
 *   half       half a request head, then nothing
 *   handshake  connected, nothing sent, then an RST
 *
 * Plain blocking sockets, one at a time: every connect, send and receive
 * has SO_SNDTIMEO/SO_RCVTIMEO set (--connect-timeout), so a server that
 * stops answering costs a bounded time; no allocation (a fixed buffer).
 * Must not: read the server's /proc, or judge anything.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "soak_int.h"
#include "util.h"

#define SLOW_REQUESTS 2000u
#define SLOW_RCVBUF 4096
#define BODY_MAX MiB(1)

int soak_http_connect(const struct soak *s, bool small_rcvbuf)
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
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* A GET of --url (SSE: a subscription). */
static int request(const struct soak *s, char *buf, size_t len)
{
    return snprintf(buf, len, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n",
                    s->t.path, s->t.host,
                    s->sse ? "Accept: text/event-stream\r\n" : "");
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

/* One GET and its whole answer. Returns whether an answer came with a
 * Content-Length body (any status: the server's memory is what is
 * measured, not its answers). */
static bool get_one(const struct soak *s, int fd, char *buf, size_t cap)
{
    char req[1024];
    int rl = request(s, req, sizeof(req));
    size_t have = 0, head, body;
    const char *cl;
    char *end;

    if (rl <= 0 || (size_t)rl >= sizeof(req) || !send_all(fd, req, (size_t)rl))
        return false;
    for (;;) {
        ssize_t r;

        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end)
            break;
        if (have == cap - 1)
            return false;
        r = recv(fd, buf + have, cap - 1 - have, 0);
        if (r <= 0)
            return false;
        have += (size_t)r;
    }
    head = (size_t)(end - buf) + 4;
    *end = '\0';
    cl = strcasestr(buf, "\r\ncontent-length:");
    if (!cl)
        return false; /* chunked or to-close answers: not handled yet */
    body = strtoull(cl + 17, NULL, 10);
    if (body > BODY_MAX)
        return false;
    /* What came after the head, then the rest of the body. */
    for (size_t got = have - head; got < body;) {
        ssize_t r = recv(fd, buf, MIN(cap - 1, body - got), 0);

        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void rst_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int fault_open(struct soak *s, enum soak_fault k)
{
    char req[1024];
    int fd = soak_http_connect(s, k == F_SLOW),
        rl = request(s, req, sizeof(req));

    if (fd < 0 || rl <= 0 || (size_t)rl >= sizeof(req))
        return fd;
    if (k == F_SLOW) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};

        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        /* SSE: one subscription, whose events back up. */
        for (uint32_t i = 0; i < (s->sse ? 1 : SLOW_REQUESTS); i++)
            if (!send_all(fd, req, (size_t)rl))
                break;
    } else if (k == F_VANISH) {
        send_all(fd, req, (size_t)rl);
    } else if (k == F_HALF) {
        send_all(fd, req, (size_t)rl / 2);
    }
    return fd;
}

void soak_http_open_faults(struct soak *s, struct soak_sample *smp)
{
    for (uint32_t i = 0; i < s->o.fault_conns && !s->interrupted; i++) {
        s->fault_fds[i] = fault_open(s, soak_fault_kind(s, i));
        smp->faults += s->fault_fds[i] >= 0;
    }
}

void soak_http_close_faults(struct soak *s)
{
    for (uint32_t i = 0; i < s->o.fault_conns; i++) {
        if (s->fault_fds[i] < 0)
            continue;
        if (soak_fault_kind(s, i) == F_HALF)
            close(s->fault_fds[i]);
        else
            rst_close(s->fault_fds[i]);
        s->fault_fds[i] = -1;
    }
}

int soak_http_round(struct soak *s, struct soak_sample *smp, char *err,
                    size_t errlen)
{
    char buf[16384];
    int *fds = s->http_fds;

    s->why[0] = '\0';
    for (uint32_t i = 0; i < s->o.conns; i++) {
        fds[i] = soak_http_connect(s, false);
        if (fds[i] < 0)
            snprintf(s->why, sizeof(s->why), "%s", strerror(errno));
        else
            smp->opened++;
    }
    smp->failed = s->o.conns - smp->opened;
    if (!smp->opened) {
        snprintf(err, errlen, "no connection to %s could be opened (%s)",
                 s->o.url, s->why[0] ? s->why : "failed");
        return -1;
    }
    soak_http_open_faults(s, smp);
    for (uint32_t i = 0; i < s->o.conns && !s->interrupted; i++)
        for (uint32_t m = 0; fds[i] >= 0 && m < s->o.messages; m++) {
            if (!get_one(s, fds[i], buf, sizeof(buf))) {
                close(fds[i]);
                fds[i] = -1;
                break;
            }
            smp->received++;
        }
    sleep_ms(s->o.hold_ms);
    soak_http_close_faults(s);
    for (uint32_t i = 0; i < s->o.conns; i++) {
        if (fds[i] < 0)
            continue;
        if (soak_use_rst(s, i))
            rst_close(fds[i]);
        else
            close(fds[i]);
        fds[i] = -1;
    }
    return 0;
}
