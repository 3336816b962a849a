/*
 * server.c - wires a loop, a conn set, a listener and an HTTP server
 * together, and runs signals and graceful shutdown.
 *
 * Keeps: shutdown is bounded by shutdown_timeout (invariant 2: a deadline
 * for the drain too); after server_free() every allocation made here is
 * returned. Must not: keep process-global state (signals are read from a
 * signalfd on the loop, not by a handler writing globals).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "server.h"
#include "log.h"
#include "mem.h"
#include "util.h"

struct server {
    struct loop *loop;
    struct conn_set conns;
    struct listener *listener;
    struct http_server *http;
    struct ws_server *ws;
    struct watcher sigw;
    struct timer shutdown_timer;
    struct timer trim_timer; /* armed while trim_interval_ms != 0 */
    struct mem_trim trim;
    struct loop_hook hook;
    int sigfd;
    bool stopping;
    void (*on_shutdown)(void *arg);
    void *on_shutdown_arg;
    void (*on_reload)(void *arg);
    void *on_reload_arg;
    uint32_t shutdown_timeout_ms;
    uint32_t trim_interval_ms;
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

static void on_shutdown_timeout(struct timer *t)
{
    struct server *s = container_of(t, struct server, shutdown_timer);

    LOG_WARN("shutdown timeout, closing the rest", "open=%lld",
             (long long)s->conns.stats.open);
    conn_set_each(&s->conns, close_one, NULL);
    loop_stop(s->loop);
}

/* Every trim_interval_ms: give freed heap back if the policy says so
 * (mem.h). A timer rather than the end-of-iteration hook, so a busy loop
 * pays for one /proc read a second, not one per iteration. */
static void on_trim_timer(struct timer *t)
{
    struct server *s = container_of(t, struct server, trim_timer);
    int64_t back = mem_trim_check(&s->trim);

    if (back >= 0)
        LOG_DEBUG("memory trimmed", "rss_given_back=%lld", (long long)back);
    loop_timer_in(s->loop, &s->trim_timer, s->trim_interval_ms);
}

/* After every iteration while stopping: done once nothing is open. */
static void on_hook(struct loop_hook *h)
{
    struct server *s = container_of(h, struct server, hook);

    if (s->stopping && s->conns.stats.open == 0)
        loop_stop(s->loop);
}

void server_shutdown(struct server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    LOG_INFO("shutting down", "open=%lld timeout_ms=%u",
             (long long)s->conns.stats.open, s->shutdown_timeout_ms);
    listener_stop(s->listener);
    http_server_drain(s->http);
    ws_server_drain(s->ws);
    if (s->on_shutdown)
        s->on_shutdown(s->on_shutdown_arg);
    loop_timer_in(s->loop, &s->shutdown_timer,
                  s->shutdown_timeout_ms ? s->shutdown_timeout_ms : 1);
}

static void on_signal(struct watcher *w, uint32_t events)
{
    struct server *s = container_of(w, struct server, sigw);
    struct signalfd_siginfo si;

    (void)events;
    while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            LOG_INFO("signal", "sig=%s",
                     si.ssi_signo == SIGTERM ? "TERM" : "INT");
            server_shutdown(s);
        } else if (si.ssi_signo == SIGHUP) {
            LOG_INFO("signal", "sig=HUP");
            if (s->on_reload)
                s->on_reload(s->on_reload_arg);
            else
                LOG_INFO("nothing to reload on SIGHUP", "%s", "");
        }
    }
}

static int setup_signals(struct server *s)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -EINVAL;
    s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sigfd < 0)
        return -errno;
    s->sigw.fn = on_signal;
    return loop_watch(s->loop, s->sigfd, &s->sigw, EPOLLIN);
}

struct server *server_new(const struct server_opts *o, int *err, char *errmsg,
                          size_t errlen)
{
    struct server *s = mem_calloc(MEM_CONFIG, 1, sizeof(*s));
    int rc;

    if (!s) {
        *err = -ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
        return NULL;
    }
    s->sigfd = -1;
    s->shutdown_timeout_ms = o->shutdown_timeout_ms;
    s->trim_interval_ms = o->trim_interval_ms;
    timer_init(&s->shutdown_timer, on_shutdown_timeout);
    timer_init(&s->trim_timer, on_trim_timer);
    mem_trim_init(&s->trim, o->trim_threshold);
    s->loop = loop_new(o->read_buffer);
    if (!s->loop) {
        rc = -ENOMEM;
        snprintf(errmsg, errlen, "cannot create the event loop");
        goto err_free;
    }
    s->start_wall_ms = loop_wall_ms(s->loop);
    rc = conn_set_init(&s->conns, s->loop, &o->conn);
    if (rc < 0) {
        snprintf(errmsg, errlen, "out of memory");
        goto err_loop;
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
    s->listener = listener_new(s->loop, &s->conns, o->host, o->port, &o->listen,
                               on_accept, s, &rc);
    if (!s->listener) {
        snprintf(errmsg, errlen, "cannot listen on %s:%u: %s", o->host, o->port,
                 rc == -EINVAL ? "bad address" : strerror(-rc));
        goto err_http;
    }
    rc = setup_signals(s);
    if (rc < 0) {
        snprintf(errmsg, errlen, "cannot set up signals: %s", strerror(-rc));
        goto err_listener;
    }
    s->hook.fn = on_hook;
    loop_add_hook(s->loop, &s->hook);
    if (s->trim_interval_ms) {
        /* The first reading now: the floor starts at the start-up gap,
         * and the check's code is faulted in before any connection
         * (else its first run shows up in a measured burst's VmRSS). */
        mem_trim_check(&s->trim);
        loop_timer_in(s->loop, &s->trim_timer, s->trim_interval_ms);
    }
    return s;

err_listener:
    if (s->sigfd >= 0)
        close(s->sigfd);
    listener_free(s->listener);
err_http:
    ws_server_free(s->ws);
    http_server_free(s->http);
err_conns:
    conn_set_fini(&s->conns);
err_loop:
    loop_free(s->loop);
err_free:
    mem_free(MEM_CONFIG, s);
    *err = rc;
    return NULL;
}

int server_run(struct server *s)
{
    int rc = loop_run(s->loop);

    timer_cancel(loop_timers(s->loop), &s->shutdown_timer);
    timer_cancel(loop_timers(s->loop), &s->trim_timer);
    return rc;
}

void server_free(struct server *s)
{
    if (!s)
        return;
    if (s->sigfd >= 0) {
        loop_unwatch(s->loop, s->sigfd);
        close(s->sigfd);
    }
    /* Anything still open (loop stopped early) goes now, then one more
     * iteration's worth of hooks frees it. */
    conn_set_each(&s->conns, close_one, NULL);
    s->hook.fn = NULL;
    timer_cancel(loop_timers(s->loop), &s->trim_timer);
    listener_free(s->listener);
    conn_set_fini(&s->conns);
    http_server_free(s->http);
    ws_server_free(s->ws);
    loop_free(s->loop);
    mem_free(MEM_CONFIG, s);
}

uint16_t server_port(const struct server *s)
{
    return listener_port(s->listener);
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

void server_on_reload(struct server *s, void (*fn)(void *arg), void *arg)
{
    s->on_reload = fn;
    s->on_reload_arg = arg;
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
    v->now_wall_ms = loop_wall_ms(s->loop);
}
