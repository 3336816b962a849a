/*
 * serve.c - `moor serve`: flags to options, the built-in routes, the
 * start-up banner, and the exit check that every byte came back.
 *
 * Signals are the program's, so they are handled here and not in the
 * library: SIGINT and SIGTERM begin the graceful shutdown, SIGHUP reloads
 * the TLS certificate. They are blocked and read from a signalfd on the
 * loop, so no handler runs at an arbitrary point.
 *
 * Exit status: 0 after a clean shutdown; 1 if the server cannot start
 * (say, the port is taken); 2 for a usage error; 3 (debug builds only)
 * if memory was still live after shutdown.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "serve.h"
#include "addr.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "debug.h"
#include "push.h"
#include "server.h"
#include "signals.h"
#include "tls.h"
#include "util.h"

extern char **environ;

struct serve {
    struct loop *loop;
    struct server *srv;
    struct push *push;
    struct listener *tcp;          /* --tcp-listen, or NULL */
    struct listener *tls_listener; /* --tls-listen, or NULL */
    struct tls_ctx *tls;           /* its certificate and settings */
    char more[512]; /* the banner's lines for --tls-listen, --tcp-listen */
    char host[128]; /* --listen's host, for the banner */
    const struct moor_config *cfg;
    struct loop_hook hook;
    struct watcher sigw; /* the signalfd (serve_main only) */
    int sigfd;
    uint64_t fail_at; /* MOOR_TEST_FAIL_ALLOC, 0 = off */
    bool fail_logged;
};

static void on_healthz(struct http_exchange *ex, void *arg)
{
    (void)arg;
    http_respond(ex, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
}

/* /echo: every message goes back with its type. A 1:1 stream: when the
 * echoes pile up, ws_server stops reading the peer until they drain. */
static void echo_message(struct conn *c, const uint8_t *data, size_t len,
                         bool text, void *arg)
{
    (void)arg;
    ws_send(c, data, len, text);
}

static const struct ws_handlers echo_handlers = {
    .on_message = echo_message,
    .pause_on_backpressure = true,
};

static void on_echo(struct http_exchange *ex, void *arg)
{
    struct serve *sv = arg;

    ws_server_upgrade(server_ws(sv->srv), ex, &echo_handlers);
}

static void on_metrics(struct http_exchange *ex, void *arg)
{
    struct serve *sv = arg;
    struct metrics_view v;
    struct sbuf b;

    sbuf_init(&b, MEM_METRICS, METRICS_PAGE_MAX);
    server_metrics_view(sv->srv, &v);
    v.tls = sv->tls;
    v.loops[0].listeners[1] = sv->tls_listener;
    v.loops[0].listeners[2] = sv->tcp;
    v.loops[0].pubsub = sv->push ? push_pubsub(sv->push) : NULL;
    http_respond_page(ex, metrics_render(&b, &v), &b,
                      "text/plain; version=0.0.4; charset=utf-8");
}

static void on_shutdown(void *arg)
{
    struct serve *sv = arg;

    if (sv->tcp)
        listener_stop(sv->tcp);
    if (sv->tls_listener)
        listener_stop(sv->tls_listener);
    push_drain(sv->push);
}

/* The drain is over: the loop has nothing left to run. */
static void on_stopped(void *arg)
{
    struct serve *sv = arg;

    loop_stop(sv->loop);
}

static void on_tcp_accept(struct listener *ls, int fd,
                          const struct sockaddr *peer, void *arg)
{
    struct serve *sv = arg;

    (void)ls;
    (void)peer;
    push_tcp_accept(sv->push, fd, sv->cfg->tcp_tls ? sv->tls : NULL,
                    sv->cfg->handshake_timeout_ms);
}

static void on_tls_accept(struct listener *ls, int fd,
                          const struct sockaddr *peer, void *arg)
{
    struct serve *sv = arg;

    (void)ls;
    (void)peer;
    http_server_accept_tls(server_http(sv->srv), fd, sv->tls,
                           sv->cfg->handshake_timeout_ms);
}

/* SIGHUP: the certificate and key are read again from the same files;
 * open connections keep the one they started with. */
static void on_reload(void *arg)
{
    struct serve *sv = arg;
    char err[256];

    if (!sv->tls) {
        LOG_INFO("nothing to reload on SIGHUP (no --tls-listen or "
                 "--tcp-tls)",
                 "%s", "");
        return;
    }
    if (tls_reload(sv->tls, sv->cfg->tls_cert, sv->cfg->tls_key, err,
                   sizeof(err)) == 0)
        LOG_INFO("tls certificate reloaded", "cert=\"%s\" key=\"%s\"",
                 sv->cfg->tls_cert, sv->cfg->tls_key);
    else
        LOG_ERROR("tls reload failed, the old certificate stays in service",
                  "err=\"%s\"", err);
}

/* Adds a line to the banner (after the routes, before "Stop with"). */
static void more_line(struct serve *sv, const char *fmt, ...)
{
    size_t n = strlen(sv->more);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sv->more + n, sizeof(sv->more) - n, fmt, ap);
    va_end(ap);
}

/* Builds the TLS context (for --tls-listen and --tcp-tls) and the
 * listener of --tls-listen if set. Returns 0, or 1 with the reason
 * printed. */
static int start_tls(struct serve *sv, const struct moor_config *c,
                     const struct listen_opts *lo)
{
    struct tls_server_opts to = {
        .cert_file = c->tls_cert,
        .key_file = c->tls_key,
        .min_version = tls_parse_version(c->tls_min_version),
        .tickets = c->tls_tickets,
        .ciphers = c->tls_ciphers,
        .ciphersuites = c->tls_ciphersuites,
    };
    char err[512], host[128];
    uint16_t port = 0;
    int e = 0;

    sv->tls = tls_server_new(&to, err, sizeof(err));
    if (!sv->tls) {
        fprintf(stderr, "moor: TLS setup failed: %s\n", err);
        return 1;
    }
    if (!c->tls_listen[0])
        return 0;
    addr_parse(c->tls_listen, host, sizeof(host), &port);
    sv->tls_listener = listener_new(sv->loop, server_conns(sv->srv), host, port,
                                    lo, on_tls_accept, sv, &e);
    if (!sv->tls_listener) {
        fprintf(stderr, "moor: cannot listen on %s (--tls-listen): %s\n",
                c->tls_listen, strerror(-e));
        return 1;
    }
    more_line(sv,
              "  https://%s:%u      TLS listener (--tls-listen): HTTPS, "
              "wss://, SSE\n",
              host[0] && strcmp(host, "0.0.0.0") ? host : "127.0.0.1",
              listener_port(sv->tls_listener));
    return 0;
}

static void on_debug_conns(struct http_exchange *ex, void *arg)
{
    struct serve *sv = arg;

    debug_conns_page(ex, server_conns(sv->srv), push_describe, sv->push);
}

/* Test hook: reports once when the armed allocation failure fired. */
static void on_hook(struct loop_hook *h)
{
    struct serve *sv = container_of(h, struct serve, hook);

    if (sv->fail_at && !sv->fail_logged && mem_fail_fired()) {
        sv->fail_logged = true;
        LOG_WARN("test hook: allocation failed", "n=%llu",
                 (unsigned long long)sv->fail_at);
    }
}

static void push_options(const struct moor_config *c,
                         const struct server_opts *so, struct push_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->pubsub.max_channels = c->max_channels;
    o->pubsub.max_channels_per_conn = c->max_channels_per_conn;
    o->pubsub.soft_limit = (uint32_t)MIN(c->queue_soft_limit, UINT32_MAX);
    o->pubsub.soft_time_ms = c->queue_soft_time_ms;
    o->pubsub.close_timeout_ms = c->close_timeout_ms;
    o->pubsub.policy = strcmp(c->slow_policy, "drop-oldest") == 0
                           ? SLOW_DROP_OLDEST
                           : SLOW_DISCONNECT;
    o->max_message = so->ws.max_message;
    o->rate = c->rate;
    o->burst = c->burst;
    o->byte_rate = c->byte_rate;
    o->sse_heartbeat_ms = c->sse_heartbeat_ms;
    o->pubsub.heartbeat_ms = c->sse_heartbeat_ms;
    o->sse_retry_ms = c->sse_retry_ms;
    o->header_timeout_ms = c->header_timeout_ms;
    o->allowed_origins = c->allowed_origins;
}

static void options_from_config(const struct moor_config *c,
                                struct server_opts *o, char *host,
                                size_t hostlen, uint16_t *port)
{
    memset(o, 0, sizeof(*o));
    addr_parse(c->listen, host, hostlen, port);
    o->host = host;
    o->port = *port;
    o->listen.max_conns = c->max_conns;
    o->listen.accept_rate = c->accept_rate;
    o->listen.accept_burst = c->accept_burst;
    o->listen.max_conns_per_ip = c->max_conns_per_ip;
    o->listen.rate_per_ip = c->rate_per_ip;
    o->listen.burst_per_ip = c->burst_per_ip;
    o->listen.ip_table_size = c->ip_table_size;
    o->conn.write_timeout_ms = c->write_timeout_ms;
    o->conn.queue_limit = (uint32_t)MIN(c->queue_limit, (uint64_t)UINT32_MAX);
    o->http.lim.max_header_bytes = (uint32_t)c->max_header_bytes;
    o->http.lim.max_headers = c->max_headers;
    o->http.lim.max_body = c->max_body;
    o->http.header_timeout_ms = c->header_timeout_ms;
    o->http.body_timeout_ms = c->body_timeout_ms;
    o->conn.message_timeout_ms = c->message_timeout_ms;
    o->http.idle_timeout_ms = c->idle_timeout_ms;
    o->http.linger_timeout_ms = c->linger_timeout_ms;
    o->ws.max_message = c->max_message;
    o->ws.ping_interval_ms = c->ping_interval_ms;
    o->ws.pong_timeout_ms = c->pong_timeout_ms;
    o->ws.close_timeout_ms = c->close_timeout_ms;
    o->ws.drain_spread_ms = c->drain_spread_ms;
    o->ws.allowed_origins = c->allowed_origins;
    o->shutdown_timeout_ms = c->shutdown_timeout_ms;
}

/* The listener of --tcp-listen (over TLS with --tcp-tls: start_tls ran
 * first). Returns 0, or 1 with the reason printed. */
static int start_tcp(struct serve *sv, const struct moor_config *c,
                     const struct listen_opts *lo)
{
    struct listen_opts raw = *lo;
    char host[128];
    uint16_t port = 0;
    int e = 0;

    raw.raw = true; /* frames: a refusal is a close, not an HTTP 503 */
    addr_parse(c->tcp_listen, host, sizeof(host), &port);
    sv->tcp = listener_new(sv->loop, server_conns(sv->srv), host, port, &raw,
                           on_tcp_accept, sv, &e);
    if (!sv->tcp) {
        fprintf(stderr, "moor: cannot listen on %s (--tcp-listen): %s\n",
                c->tcp_listen, strerror(-e));
        return 1;
    }
    more_line(sv,
              "  tcp://%s:%u       length-prefixed pub/sub (--tcp-listen)%s\n",
              host, listener_port(sv->tcp),
              c->tcp_tls ? ", over TLS (--tcp-tls)" : "");
    return 0;
}

void serve_free(struct serve *sv)
{
    if (!sv)
        return;
    listener_free(sv->tcp);
    listener_free(sv->tls_listener);
    server_free(sv->srv);
    push_free(sv->push);
    tls_ctx_free(sv->tls);
    if (sv->sigfd >= 0) {
        loop_unwatch(sv->loop, sv->sigfd);
        close(sv->sigfd);
    }
    loop_free(sv->loop);
    mem_free(MEM_CONFIG, sv);
    tls_mem_fini();
}

static void banner(const char *host, uint16_t port, const char *more)
{
    const char *shown = host[0] && strcmp(host, "0.0.0.0") ? host : "127.0.0.1";
    bool v6 = strchr(shown, ':') != NULL;
    char base[160];

    snprintf(base, sizeof(base), "http://%s%s%s:%u", v6 ? "[" : "", shown,
             v6 ? "]" : "", port);
    printf("moor %s serving %s (pid %d)\n"
           "  %s/healthz     liveness\n"
           "  %s/metrics     Prometheus metrics\n"
           "  %s/debug/mem   memory by tag (JSON)\n"
           "  %s/debug/conns one JSON line per connection\n"
           "  ws%s/echo          WebSocket echo\n"
           "  ws%s/sub/CHANNEL   WebSocket subscriber (CHANNEL: a,b,c)\n"
           "  ws%s/pub/CHANNEL   WebSocket publisher; or POST %s/pub/CHANNEL\n"
           "%s"
           "Stop with Ctrl-C or SIGTERM (graceful).\n",
           MOOR_VERSION, base, (int)getpid(), base, base, base, base, base + 4,
           base + 4, base + 4, base, more);
    fflush(stdout);
}

static void on_signal(struct watcher *w, uint32_t events)
{
    struct serve *sv = container_of(w, struct serve, sigw);
    struct signalfd_siginfo si;

    (void)events;
    while (read(sv->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            LOG_INFO("signal", "sig=%s",
                     si.ssi_signo == SIGTERM ? "TERM" : "INT");
            server_shutdown(sv->srv);
        } else if (si.ssi_signo == SIGHUP) {
            LOG_INFO("signal", "sig=HUP");
            on_reload(sv);
        }
    }
}

/* SIGINT, SIGTERM and SIGHUP are blocked and read from a signalfd on the
 * loop. Sockets need nothing for SIGPIPE (every write passes
 * MSG_NOSIGNAL), but the log and the banner go to stderr and stdout,
 * which may be a pipe whose reader left: the program ignores SIGPIPE so
 * that costs a lost line, not the process. Returns 0 or -errno. */
static int watch_signals(struct serve *sv)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};

    sv->sigfd = signals_open(sigs, 3);
    if (sv->sigfd < 0)
        return sv->sigfd;
    sv->sigw.fn = on_signal;
    return loop_watch(sv->loop, sv->sigfd, &sv->sigw, EPOLLIN);
}

/* After shutdown: live bytes must be zero (docs/principles.md, rule 7). */
static int check_memory(void)
{
    int64_t live = mem_live_bytes(MEM_ALL);

    if (live == 0) {
        LOG_INFO("shutdown complete", "live_bytes=0");
        return 0;
    }
    LOG_ERROR("shutdown complete", "live_bytes=%lld", (long long)live);
    if (mem_trace_enabled())
        mem_trace_dump(stderr);
    else
        fprintf(stderr, "moor: run with MOOR_MEM_TRACE=1 to see the "
                        "allocation sites of the live bytes\n");
#ifdef MOOR_DEBUG
    return 3;
#else
    return 0;
#endif
}

struct serve *serve_new(const struct moor_config *cfg)
{
    struct server_opts o;
    struct push_opts po;
    struct serve *sv = mem_calloc(MEM_CONFIG, 1, sizeof(*sv));
    char err[256];
    uint16_t port = 0;
    int e = 0;

    if (!sv) {
        fprintf(stderr, "moor: out of memory\n");
        return NULL;
    }
    sv->cfg = cfg;
    sv->sigfd = -1;
    sv->loop = loop_new(cfg->read_buffer);
    if (!sv->loop) {
        fprintf(stderr, "moor: cannot create the event loop\n");
        goto err_free;
    }
    loop_set_trim(sv->loop, cfg->mem_trim_interval_ms, cfg->mem_trim_threshold);
    options_from_config(cfg, &o, sv->host, sizeof(sv->host), &port);
    sv->srv = server_new(sv->loop, &o, &e, err, sizeof(err));
    if (!sv->srv) {
        fprintf(stderr, "moor: %s\n", err);
        goto err_free;
    }
    http_server_route(server_http(sv->srv), "/healthz", false,
                      HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), on_healthz, sv);
    http_server_route(server_http(sv->srv), "/metrics", false,
                      HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), on_metrics, sv);
    http_server_route(server_http(sv->srv), "/debug/mem", false,
                      HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), debug_mem_page, sv);
    http_server_route(server_http(sv->srv), "/echo", false, HTTP_M(HTTP_GET),
                      on_echo, sv);
    http_server_route(server_http(sv->srv), "/debug/conns", false,
                      HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), on_debug_conns, sv);
    push_options(cfg, &o, &po);
    sv->push = push_new(server_http(sv->srv), server_ws(sv->srv),
                        server_conns(sv->srv), &po);
    if (!sv->push) {
        fprintf(stderr, "moor: out of memory\n");
        goto err_free;
    }
    server_on_shutdown(sv->srv, on_shutdown, sv);
    server_on_stopped(sv->srv, on_stopped, sv);
    if (((cfg->tls_listen[0] || cfg->tcp_tls) &&
         start_tls(sv, cfg, &o.listen)) ||
        (cfg->tcp_listen[0] && start_tcp(sv, cfg, &o.listen)))
        goto err_free;
    sv->hook.fn = on_hook;
    loop_add_hook(sv->loop, &sv->hook);
    return sv;

err_free:
    serve_free(sv);
    return NULL;
}

struct server *serve_server(struct serve *sv)
{
    return sv->srv;
}

struct push *serve_push(struct serve *sv)
{
    return sv->push;
}

int serve_main(int argc, char **argv)
{
    struct moor_config cfg;
    struct serve *sv;
    char err[256];
    enum log_level lvl = LOG_INFO;
    const char *hook;
    int rc;

#ifdef MOOR_DEBUG
    /* A debug build always records allocation sites, so a leak found at
     * exit is printed by site (check_memory). */
    mem_trace_enable();
#endif
    rc = config_parse(&cfg, argc, argv, environ, stdout, err, sizeof(err));
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "moor: %s\n", err);
        return 2;
    }
    if (cfg.mem_trace)
        mem_trace_enable();
    log_parse_level(cfg.log_level, &lvl);
    log_set_level(lvl);
    mem_set_budget(cfg.memory_limit, 90);
    sv = serve_new(&cfg);
    if (!sv)
        return 1;
    rc = watch_signals(sv);
    if (rc < 0) {
        fprintf(stderr, "moor: cannot set up signals: %s\n", strerror(-rc));
        serve_free(sv);
        return 1;
    }
    banner(sv->host, server_port(sv->srv), sv->more);
    LOG_INFO("listening", "addr=%s:%u max_conns=%u", sv->host,
             server_port(sv->srv), cfg.max_conns);

    hook = getenv("MOOR_TEST_FAIL_ALLOC");
    if (hook && *hook) {
        sv->fail_at = strtoull(hook, NULL, 10);
        mem_fail_at(sv->fail_at);
    }
    rc = loop_run(sv->loop);
    mem_fail_at(0);
    serve_free(sv);
    if (rc < 0) {
        LOG_ERROR("event loop failed", "err=\"%s\"", strerror(-rc));
        return 1;
    }
    return check_memory();
}
