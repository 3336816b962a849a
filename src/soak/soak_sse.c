/*
 * soak_sse.c - a round of `moor soak` over Server-Sent Events (--url
 * http://.../sub/CH with --pub-url): --conns subscribers (GET with
 * Accept: text/event-stream) on plain non-blocking sockets watched by
 * the round's event loop, and a new WebSocket publisher every round
 * (soak_publish(), soak_conns.c) whose --messages each subscriber must
 * receive as a "data:" line; held idle beside the HTTP fault
 * connections (soak_http.c: a slow one here is a subscriber that never
 * reads), then closed (--close).
 *
 * Keeps: the subscribers' state is allocated once, by soak_sse_setup(),
 * and outlives every loop iteration (loop.h's stale-event rule: the
 * watcher of a closed subscriber is still valid, and does nothing with
 * fd -1); every wait is soak_pump()'s, with a deadline; the stream is
 * scanned as it comes, nothing of it is kept.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "mem.h"
#include "soak_int.h"
#include "util.h"

struct sse_sub {
    struct watcher w;
    struct soak *s;
    int fd;
    uint32_t got; /* data: lines received */
    uint8_t head; /* bytes of "\r\n\r\n" matched: 4 once the head is in */
    int8_t line;  /* bytes of "data:" matched at a line start, -1 none */
    bool sent;    /* the request went out */
};

static const char DATA[] = "data:";

static void sub_close(struct soak *s, struct sse_sub *u, bool rst)
{
    if (u->fd < 0)
        return;
    loop_unwatch(s->loop, u->fd);
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(u->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(u->fd);
    u->fd = -1;
    s->open--;
}

/* Counts the data: lines in p[0..n), after the response head. */
static void scan(struct sse_sub *u, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];

        if (u->head < 4) {
            u->head = c == "\r\n\r\n"[u->head] ? u->head + 1 : (c == '\r');
            if (u->head == 4)
                u->line = 0;
            continue;
        }
        if (c == '\n') {
            u->line = 0;
        } else if (u->line >= 0) {
            u->line = c == DATA[u->line] ? u->line + 1 : -1;
            if (u->line == (int8_t)(sizeof(DATA) - 1)) {
                u->got++;
                u->line = -1;
            }
        }
    }
}

static void on_readable(struct watcher *w, uint32_t events)
{
    struct sse_sub *u = container_of(w, struct sse_sub, w);
    char buf[16384];

    (void)events;
    while (u->fd >= 0) {
        ssize_t r = recv(u->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (r > 0) {
            scan(u, buf, (size_t)r);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        sub_close(u->s, u, false); /* the server ended the stream */
    }
}

int soak_sse_setup(struct soak *s)
{
    struct sse_sub *subs = mem_calloc(MEM_MISC, s->o.conns, sizeof(*subs));

    if (!subs)
        return -1;
    for (uint32_t i = 0; i < s->o.conns; i++) {
        subs[i].fd = -1;
        subs[i].s = s;
        subs[i].w.fn = on_readable;
    }
    s->sse_subs = subs;
    return 0;
}

void soak_sse_teardown(struct soak *s)
{
    struct sse_sub *subs = s->sse_subs;

    for (uint32_t i = 0; subs && i < s->o.conns; i++)
        if (subs[i].fd >= 0) {
            if (s->loop)
                loop_unwatch(s->loop, subs[i].fd);
            close(subs[i].fd);
        }
    mem_free(MEM_MISC, subs);
    s->sse_subs = NULL;
}

static bool subs_ready(const struct soak *s)
{
    const struct sse_sub *subs = s->sse_subs;

    for (uint32_t i = 0; i < s->o.conns; i++)
        if (subs[i].fd >= 0 && subs[i].head < 4)
            return false;
    return true;
}

static bool subs_received(const struct soak *s)
{
    const struct sse_sub *subs = s->sse_subs;

    for (uint32_t i = 0; i < s->o.conns; i++)
        if (subs[i].fd >= 0 && subs[i].got < s->o.messages)
            return false;
    return true;
}

static bool subs_closed(const struct soak *s)
{
    return s->open == 0 && s->connecting == 0;
}

int soak_sse_round(struct soak *s, struct soak_sample *smp, char *err,
                   size_t errlen)
{
    struct sse_sub *subs = s->sse_subs;
    char req[1024];
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s\r\n"
                      "Accept: text/event-stream\r\n\r\n",
                      s->t.path, s->t.host);

    s->why[0] = '\0';
    s->open = s->connecting = 0;
    for (uint32_t i = 0; i < s->o.conns; i++) {
        struct sse_sub *u = &subs[i];

        u->got = 0;
        u->head = 0;
        u->line = -1;
        u->fd = soak_http_connect(s, false);
        if (u->fd < 0) {
            snprintf(s->why, sizeof(s->why), "%s", strerror(errno));
            continue;
        }
        if (rl <= 0 || (size_t)rl >= sizeof(req) ||
            send(u->fd, req, (size_t)rl, MSG_NOSIGNAL) != rl ||
            loop_watch(s->loop, u->fd, &u->w, EPOLLIN) < 0) {
            snprintf(s->why, sizeof(s->why), "cannot send the request");
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
    soak_http_open_faults(s, smp);
    soak_pump(s, subs_ready, s->o.connect_timeout_ms);
    soak_publish(s);
    soak_pump(s, subs_received, s->o.timeout_ms);
    for (uint32_t i = 0; i < s->o.conns; i++)
        smp->received += subs[i].got;
    soak_pump(s, NULL, s->o.hold_ms);
    soak_http_close_faults(s);
    for (uint32_t i = 0; i < s->o.conns; i++)
        sub_close(s, &subs[i], soak_use_rst(s, i));
    soak_close_publisher(s);
    soak_pump(s, subs_closed, 6000);
    return 0;
}
