/*
 * server.c - wires a conn set, a listener, an HTTP server and a WebSocket
 * server together on a loop it borrows, and runs graceful shutdown.
 *
 * Keeps: shutdown is bounded by shutdown_timeout (docs/principles.md rule
 * 2: a deadline for the drain too); after server_free() every allocation
 * made here is returned and the loop carries nothing of the server. Must
 * not: touch process-wide state (signals belong to the program: `moor
 * serve` reads them in serve.c; a library host wires its own), or stop
 * the loop (other servers and clients may share it: the owner hears of
 * the end through on_stopped).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server.h"
#include "log.h"
#include "mem.h"
#include "util.h"

struct server {
    struct loop *loop; /* borrowed */
    struct conn_set conns;
    struct listener *listener;
    struct http_server *http;
    struct ws_server *ws;
    struct timer shutdown_timer;
    struct loop_hook hook;
    bool stopping;
    bool stopped; /* on_stopped has run */
    void (*on_shutdown)(void *arg);
    void *on_shutdown_arg;
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
    uint32_t shutdown_timeout_ms;
    uint64_t start_wall_ms;
};

static void on_accept(struct listener *ls, int fd, const struct sockaddr *peer,
                      void *arg)
{
    struct server *s = arg;

    (void)ls;
    http_server_accept(s->http, fd, peer);
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

/* The drain took too long: what is left closes now, and the hook sees
 * the set empty at the end of this iteration. */
static void on_shutdown_timeout(struct timer *t)
{
    struct server *s = container_of(t, struct server, shutdown_timer);

    LOG_WARN("shutdown timeout, closing the rest", "open=%lld",
             (long long)s->conns.stats.open);
    conn_set_each(&s->conns, close_one, NULL);
}

/* After every iteration while stopping: done once nothing is open. */
static void on_hook(struct loop_hook *h)
{
    struct server *s = container_of(h, struct server, hook);

    if (!s->stopping || s->stopped || s->conns.stats.open != 0)
        return;
    s->stopped = true;
    timer_cancel(loop_timers(s->loop), &s->shutdown_timer);
    if (s->on_stopped)
        s->on_stopped(s->on_stopped_arg);
}

void server_shutdown(struct server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    LOG_INFO("shutting down", "open=%lld timeout_ms=%u",
             (long long)s->conns.stats.open, s->shutdown_timeout_ms);
    if (s->listener)
        listener_stop(s->listener);
    http_server_drain(s->http);
    ws_server_drain(s->ws);
    if (s->on_shutdown)
        s->on_shutdown(s->on_shutdown_arg);
    loop_timer_in(s->loop, &s->shutdown_timer,
                  s->shutdown_timeout_ms ? s->shutdown_timeout_ms : 1);
}

struct server *server_new(struct loop *l, const struct server_opts *o, int *err,
                          char *errmsg, size_t errlen)
{
    struct server *s = mem_calloc(MEM_CONFIG, 1, sizeof(*s));
    int rc;

    if (!s) {
        *err = -ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
        return NULL;
    }
    s->shutdown_timeout_ms = o->shutdown_timeout_ms;
    timer_init(&s->shutdown_timer, on_shutdown_timeout);
    s->loop = l;
    s->start_wall_ms = loop_wall_ms(s->loop);
    rc = conn_set_init(&s->conns, s->loop, &o->conn);
    if (rc < 0) {
        snprintf(errmsg, errlen, "out of memory");
        goto err_free;
    }
    struct http_server_opts ho = o->http;
    ho.conn_ext = (uint32_t)MAX((size_t)ho.conn_ext, ws_conn_ext_size());
    s->http = http_server_new(&s->conns, &ho);
    if (!s->http) {
        rc = -ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
        goto err_conns;
    }
    s->ws = ws_server_new(&s->conns, &o->ws);
    if (!s->ws) {
        rc = -ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
        goto err_http;
    }
    if (o->host)
        s->listener = listener_new(s->loop, &s->conns, o->host, o->port,
                                   &o->listen, on_accept, s, &rc);
    if (o->host && !s->listener) {
        snprintf(errmsg, errlen, "cannot listen on %s:%u: %s", o->host, o->port,
                 rc == -EINVAL ? "bad address" : strerror(-rc));
        goto err_http;
    }
    s->hook.fn = on_hook;
    loop_add_hook(s->loop, &s->hook);
    return s;

err_http:
    ws_server_free(s->ws);
    http_server_free(s->http);
err_conns:
    conn_set_fini(&s->conns);
err_free:
    mem_free(MEM_CONFIG, s);
    *err = rc;
    return NULL;
}

bool server_stopped(const struct server *s)
{
    return s->stopped;
}

void server_free(struct server *s)
{
    if (!s)
        return;
    /* Anything still open (the loop stopped early) closes now; the conn
     * set frees the structs as it ends. */
    conn_set_each(&s->conns, close_one, NULL);
    loop_remove_hook(s->loop, &s->hook);
    timer_cancel(loop_timers(s->loop), &s->shutdown_timer);
    listener_free(s->listener);
    conn_set_fini(&s->conns);
    http_server_free(s->http);
    ws_server_free(s->ws);
    mem_free(MEM_CONFIG, s);
}

uint16_t server_port(const struct server *s)
{
    return s->listener ? listener_port(s->listener) : 0;
}

struct http_server *server_http(struct server *s)
{
    return s->http;
}

struct ws_server *server_ws(struct server *s)
{
    return s->ws;
}

void server_on_shutdown(struct server *s, void (*fn)(void *arg), void *arg)
{
    s->on_shutdown = fn;
    s->on_shutdown_arg = arg;
}

void server_on_stopped(struct server *s, void (*fn)(void *arg), void *arg)
{
    s->on_stopped = fn;
    s->on_stopped_arg = arg;
}

struct conn_set *server_conns(struct server *s)
{
    return &s->conns;
}

struct loop *server_loop(struct server *s)
{
    return s->loop;
}

void server_metrics_view(const struct server *s, struct metrics_view *v)
{
    memset(v, 0, sizeof(*v));
    v->n_loops = 1;
    v->loops[0].conns = &s->conns;
    v->loops[0].listeners[0] = s->listener;
    v->loops[0].http = s->http;
    v->start_wall_ms = s->start_wall_ms;
}

void server_set_live(struct server *s, const struct server_opts *o)
{
    s->conns.lim.write_timeout_ms = o->conn.write_timeout_ms;
    s->conns.lim.message_timeout_ms = o->conn.message_timeout_ms;
    s->shutdown_timeout_ms = o->shutdown_timeout_ms;
    http_server_set_timeouts(s->http, &o->http);
    ws_server_set_timeouts(s->ws, &o->ws);
    if (s->listener)
        listener_set_admission(s->listener, o->listen.max_conns,
                               o->listen.accept_rate, o->listen.accept_burst);
}
