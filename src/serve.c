/*
 * serve.c - `moor serve`: flags to options, the built-in routes (and
 * which listener serves them), the start-up banner and warnings, and the
 * exit check that every byte came back.
 *
 * Signals are the program's, so they are handled here and not in the
 * library: SIGINT and SIGTERM begin the graceful shutdown, SIGHUP rereads
 * the config file (--config: the settings marked reloadable in config.c
 * take effect, every other change is logged as needing a restart; a bad
 * file keeps the running settings whole) and reloads the TLS certificate
 * and the JWT keys. They are blocked and read from a signalfd on the
 * loop, so no handler runs at an arbitrary point. A service manager
 * hears of readiness, reloads and the shutdown through sdnotify.h.
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
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/signalfd.h>

#include "serve.h"
#include "addr.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "debug.h"
#include "debug_stream.h"
#include "dashboard.h"
#include "push.h"
#include "auth.h"
#include "influx.h"
#include "http_client.h"
#include "sdnotify.h"
#include "server.h"
#include "signals.h"
#include "tls.h"
#include "util.h"

extern char **environ;

struct serve {
    struct loop *loop;
    struct server *srv;
    struct push *push;
    struct auth *auth;             /* --auth (off: allows all) */
    struct influx *influx;         /* --influx-url, or NULL */
    struct listener *tcp;          /* --tcp-listen, or NULL */
    struct listener *tls_listener; /* --tls-listen, or NULL */
    struct tls_ctx *tls;           /* its certificate and settings */
    struct listener *admin;        /* --admin-listen, or NULL */
    struct debug_stream *dstream;  /* GET /debug/stream, /dashboard's feed */
    /* The admin listener's routes: an HTTP server of its own on the same
     * conns, so its connections count against --max-conns and keep every
     * deadline of the others, but a path it has no route for (/sub,
     * /pub, /echo) is 404 there whatever the public side serves. */
    struct http_server *admin_http;
    /* Whether /debug/mem and /debug/conns are routed on the public
     * listeners (--listen, --tls-listen). They list every peer's
     * address and channels, so this is the one place that decides it,
     * in serve_new(): they are public unless --admin-listen takes them
     * or --auth is on (then, with no admin listener, /debug is served
     * nowhere: a token does not entitle anyone to every peer's address). */
    bool debug_public;
    char more[512];       /* the banner's lines for --tls-listen, --tcp-listen,
                             --admin-listen */
    char host[128];       /* --listen's host, for the banner */
    char admin_host[128]; /* --admin-listen's host, for the banner */
    const struct moor_config *cfg;
    /* serve_main only: cfg, writable, for SIGHUP to change the reloadable
     * settings in place (what reads them reads them there at each use);
     * the words after "serve" to parse again, so a flag still beats the
     * file; the file, or NULL; and the rereads, by outcome. */
    struct moor_config *live;
    int argc;
    char **argv;
    const char *cfg_path;
    uint64_t reloads_ok, reloads_failed;
    struct loop_hook hook;
    struct watcher sigw; /* the signalfd (serve_main only) */
    int sigfd;
    uint64_t fail_at; /* MOOR_TEST_FAIL_ALLOC, 0 = off */
    bool fail_logged;
    struct sdnotify notify; /* the service manager (serve_main only) */
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

/* The /metrics page into b (also what the InfluxDB push sends). */
static int render_metrics(struct sbuf *b, void *arg)
{
    struct serve *sv = arg;
    const struct moor_http_client *cls[2];
    struct metrics_view v;
    size_t n = 0;
    int rc;

    server_metrics_view(sv->srv, &v);
    v.tls = sv->tls;
    v.loops[0].listeners[1] = sv->tls_listener;
    v.loops[0].listeners[2] = sv->tcp;
    v.loops[0].listeners[3] = sv->admin;
    v.loops[0].http_admin = sv->admin_http;
    v.loops[0].pubsub = sv->push ? push_pubsub(sv->push) : NULL;
    v.auth = sv->auth;
    v.influx = sv->influx;
    v.config_reloads_ok = sv->reloads_ok;
    v.config_reloads_failed = sv->reloads_failed;
    if (sv->dstream)
        debug_stream_counts(sv->dstream, &v.debug_streams,
                            &v.debug_streams_refused);
    rc = metrics_render(b, &v);
    /* The pooled HTTP clients of the push and of --auth url:
     * moor_http_client_* (docs/http_client.md), each family once. */
    if (sv->influx)
        cls[n++] = influx_client(sv->influx);
    if (sv->auth && auth_client(sv->auth))
        cls[n++] = auth_client(sv->auth);
    if (rc >= 0 && n)
        rc = http_client_metrics(cls, n, b);
    return rc;
}

static void on_metrics(struct http_exchange *ex, void *arg)
{
    struct sbuf b;

    sbuf_init(&b, MEM_METRICS, METRICS_PAGE_MAX);
    http_respond_page(ex, render_metrics(&b, arg), &b,
                      "text/plain; version=0.0.4; charset=utf-8");
}

static void on_shutdown(void *arg)
{
    struct serve *sv = arg;

    if (sv->tcp)
        listener_stop(sv->tcp);
    if (sv->tls_listener)
        listener_stop(sv->tls_listener);
    if (sv->admin) {
        listener_stop(sv->admin);
        http_server_drain(sv->admin_http);
    }
    push_drain(sv->push);
    debug_stream_drain(sv->dstream);
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

static void on_admin_accept(struct listener *ls, int fd,
                            const struct sockaddr *peer, void *arg)
{
    struct serve *sv = arg;

    (void)ls;
    http_server_accept(sv->admin_http, fd, peer);
}

/* SIGHUP, --auth jwt: the key files are read again; open connections
 * keep their tokens' expiry. */
static void reload_auth(struct serve *sv)
{
    char err[256];

    if (auth_reload(sv->auth, err, sizeof(err)) == 0)
        LOG_INFO("jwt keys reloaded", "secret=\"%s\" keys=\"%s\"",
                 sv->cfg->jwt_secret_file, sv->cfg->jwt_key_file);
    else
        LOG_ERROR("jwt key reload failed, the old keys stay in service",
                  "err=\"%s\"", err);
}

/* config_reload()'s report: one line per setting that changed. */
static void report_change(const char *name, bool applied, const char *was,
                          const char *now, void *arg)
{
    (void)arg;
    if (applied)
        LOG_INFO("config: setting changed, applied",
                 "setting=%s was=\"%s\" "
                 "now=\"%s\"",
                 name, was, now);
    else
        LOG_WARN("config: setting changed; it needs a restart, the running "
                 "value stays",
                 "setting=%s running=\"%s\" file=\"%s\"", name, was, now);
}

/* SIGHUP with --config: the file, the environment and the command line
 * parsed again as at start (a flag still beats the file), into a copy;
 * on any error the running settings stay whole. */
/* The settings config.c marks .reload, from sv->live into the running
 * objects (the others read sv->live each time already: --log-level is
 * set by the caller, --allowed-origins and --handshake-timeout are read
 * at each use). trim: the trim settings changed (setting them again
 * restarts the check's backoff, so only then). */
static void options_from_config(const struct moor_config *c,
                                struct server_opts *o, char *host,
                                size_t hostlen, uint16_t *port);

static void apply_live(struct serve *sv, bool trim)
{
    const struct moor_config *c = sv->live;
    struct listener *more[] = {sv->tls_listener, sv->tcp, sv->admin};
    struct server_opts o;
    char host[128];
    uint16_t port = 0;

    options_from_config(c, &o, host, sizeof(host), &port);
    server_set_live(sv->srv, &o);
    for (size_t i = 0; i < ARRAY_SIZE(more); i++)
        if (more[i])
            listener_set_admission(more[i], c->max_conns, c->accept_rate,
                                   c->accept_burst);
    push_set_rates(sv->push, c->rate, c->burst, c->byte_rate);
    mem_set_budget(c->memory_limit, 90);
    if (trim)
        loop_set_trim(sv->loop, c->mem_trim_interval_ms, c->mem_trim_threshold);
}

static void reload_config(struct serve *sv)
{
    struct moor_config next; /* 14 KiB of stack, for one call */
    char err[512];
    enum log_level lvl = LOG_INFO;
    uint64_t trim_bytes;
    uint32_t trim_ms;
    int rc, n;

    rc = config_parse(&next, sv->argc, sv->argv, environ, NULL, err,
                      sizeof(err));
    if (rc != 0) {
        sv->reloads_failed++;
        LOG_ERROR("config reload failed, the running settings stay",
                  "file=\"%s\" err=\"%s\"", sv->cfg_path,
                  rc < 0 ? err : "unexpected --help");
        return;
    }
    trim_ms = sv->live->mem_trim_interval_ms;
    trim_bytes = sv->live->mem_trim_threshold;
    n = config_reload(sv->live, &next, report_change, sv);
    apply_live(sv, trim_ms != sv->live->mem_trim_interval_ms ||
                       trim_bytes != sv->live->mem_trim_threshold);
    /* docs/principles.md, rule 10: the log level is process-wide; the one
     * loop of `moor serve` sets it at start and here, between events. */
    if (log_parse_level(sv->live->log_level, &lvl) == 0)
        log_set_level(lvl);
    sv->reloads_ok++;
    LOG_INFO("config reloaded", "file=\"%s\" applied=%d", sv->cfg_path, n);
}

/* SIGHUP: the config file is read again (--config); the certificate and
 * key are read again from the same files; open connections keep the one
 * they started with. The JWT keys too. */
static void on_reload(void *arg)
{
    struct serve *sv = arg;
    char err[256];

    if (sv->cfg_path && sv->live)
        reload_config(sv);
    if (auth_on(sv->auth) && !auth_is_callback(sv->auth))
        reload_auth(sv);
    if (!sv->tls) {
        if (!auth_on(sv->auth) && !sv->cfg_path)
            LOG_INFO("nothing to reload on SIGHUP (no --config, "
                     "--tls-listen, --tcp-tls or --auth jwt)",
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

/* /debug/conns' role of c: "admin" on the admin listener (the operator's
 * own scrapes, told apart from the clients'), else what push knows. */
static const char *describe_conn(void *arg, struct conn *c, char *channels,
                                 size_t cap, const char **sub)
{
    struct serve *sv = arg;

    if (sv->admin_http && conn_ctx(c) == sv->admin_http) {
        if (cap)
            channels[0] = '\0';
        return "admin";
    }
    if (debug_stream_owns(c)) {
        if (cap)
            channels[0] = '\0';
        return "dashboard";
    }
    return push_describe(sv->push, c, channels, cap, sub);
}

static void on_debug_conns(struct http_exchange *ex, void *arg)
{
    struct serve *sv = arg;

    debug_conns_page(ex, server_conns(sv->srv), describe_conn, sv);
}

static void on_debug_stream(struct http_exchange *ex, void *arg)
{
    struct serve *sv = arg;

    debug_stream_open(sv->dstream, ex);
}

/* The operator's routes on h: /metrics, and the /debug pages if debug. */
static void operator_routes(struct serve *sv, struct http_server *h, bool debug)
{
    const unsigned get = HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD);

    http_server_route(h, "/metrics", false, get, on_metrics, sv);
    if (!debug)
        return;
    http_server_route(h, "/debug/mem", false, get, debug_mem_page, sv);
    http_server_route(h, "/debug/conns", false, get, on_debug_conns, sv);
    http_server_route(h, "/debug/stream", false, HTTP_M(HTTP_GET),
                      on_debug_stream, sv);
    http_server_route(h, "/dashboard", false, get, dashboard_page, sv);
}

/* "http://host:port" as the banner shows it: a wildcard host as
 * 127.0.0.1 (where a local client finds it), an IPv6 one in brackets. */
static void shown_url(char *out, size_t len, const char *host, uint16_t port)
{
    const char *shown = host[0] && strcmp(host, "0.0.0.0") ? host : "127.0.0.1";
    bool v6 = strchr(shown, ':') != NULL;

    snprintf(out, len, "http://%s%s%s:%u", v6 ? "[" : "", shown, v6 ? "]" : "",
             port);
}

/* The listener of --admin-listen: an HTTP server of its own with only the
 * operator's routes, on the server's conns and with its limits (so = the
 * public server's options). Returns 0, or 1 with the reason printed. */
static int start_admin(struct serve *sv, const struct moor_config *c,
                       const struct server_opts *so)
{
    struct http_server_opts ho = so->http;
    char url[160];
    uint16_t port = 0;
    int e = 0;

    ho.conn_ext = 0; /* nothing upgrades here: no WebSocket state */
    addr_parse(c->admin_listen, sv->admin_host, sizeof(sv->admin_host), &port);
    sv->admin_http = http_server_new(server_conns(sv->srv), &ho);
    if (!sv->admin_http) {
        fprintf(stderr, "moor: out of memory\n");
        return 1;
    }
    http_server_route(sv->admin_http, "/healthz", false,
                      HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), on_healthz, sv);
    operator_routes(sv, sv->admin_http, true);
    sv->admin = listener_new(sv->loop, server_conns(sv->srv), sv->admin_host,
                             port, &so->listen, on_admin_accept, sv, &e);
    if (!sv->admin) {
        fprintf(stderr, "moor: cannot listen on %s (--admin-listen): %s\n",
                c->admin_listen, e == -EINVAL ? "bad address" : strerror(-e));
        return 1;
    }
    shown_url(url, sizeof(url), sv->admin_host, listener_port(sv->admin));
    more_line(sv,
              "  %s       admin listener (--admin-listen): /healthz, "
              "/metrics, /debug, /dashboard only\n",
              url);
    return 0;
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
    o->pubsub.history_size = c->history_size;
    o->pubsub.history_ttl_ms = c->history_ttl_ms;
    o->pubsub.history_max_bytes = c->history_max_bytes;
    o->pubsub.recovery_max = c->recovery_max;
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

/* --influx-url: the push of /metrics. Returns 0, or 1 with the reason
 * printed. */
static int start_influx(struct serve *sv, const struct moor_config *c)
{
    struct influx_opts io = {
        .url = c->influx_url,
        .token_file = c->influx_token_file,
        .user = c->influx_user,
        .password_file = c->influx_password_file,
        .interval_ms = c->influx_interval_ms,
        .tags = c->influx_tags,
        .precision = c->influx_precision,
        .buffer = c->influx_buffer,
        .gzip = !strcmp(c->influx_gzip, "on")    ? INFLUX_GZIP_ON
                : !strcmp(c->influx_gzip, "off") ? INFLUX_GZIP_OFF
                                                 : INFLUX_GZIP_AUTO,
    };
    char err[256];

    sv->influx =
        influx_new(sv->loop, &io, render_metrics, sv, err, sizeof(err));
    if (!sv->influx) {
        fprintf(stderr, "moor: %s\n", err);
        return 1;
    }
    more_line(sv, "  pushing metrics to %s every %u ms (--influx-url)\n",
              c->influx_url, c->influx_interval_ms);
    return 0;
}

/* --auth and its --jwt-* flags. NULL with err: a key file that cannot be
 * used, or no memory. */
static struct auth *auth_from_config(const struct moor_config *c,
                                     struct loop *l, char *err, size_t errlen)
{
    struct auth_opts ao = {
        .jwt = !strcmp(c->auth, "jwt"),
        .url = !strcmp(c->auth, "url") ? c->auth_url : NULL,
        .url_timeout_ms = c->auth_timeout_ms,
        .url_max_inflight = c->auth_max_inflight,
        .cache_ttl_ms = c->auth_cache_ttl_ms,
        .cache_entries = c->auth_cache_entries,
        .forward_headers = c->auth_forward_headers,
        .secret_file = c->jwt_secret_file,
        .key_files = c->jwt_key_file,
        .cookie = c->auth_cookie,
        .jwt_o =
            {
                .leeway_s = c->jwt_leeway_ms / 1000,
                .max_token_bytes = (uint32_t)c->max_token_bytes,
                .audience = c->jwt_audience,
                .issuer = c->jwt_issuer,
                .channels_claim = c->jwt_channels_claim,
                .publish_claim = c->jwt_publish_claim,
            },
    };

    return auth_new(l, &ao, push_token_expired, NULL, err, errlen);
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
    listener_free(sv->admin);
    server_free(sv->srv); /* closes the admin conns too: then admin_http */
    http_server_free(sv->admin_http);
    influx_free(sv->influx);
    debug_stream_free(sv->dstream); /* its streams closed with the server */
    push_free(sv->push);
    auth_free(sv->auth);
    tls_ctx_free(sv->tls);
    if (sv->sigfd >= 0) {
        loop_unwatch(sv->loop, sv->sigfd);
        close(sv->sigfd);
    }
    sdnotify_fini(&sv->notify);
    loop_free(sv->loop);
    mem_free(MEM_CONFIG, sv);
    tls_mem_fini();
}

/* The routes and where they are; the operator's at the admin listener
 * when there is one. Tests read the ports from it
 * (tests/integration/conftest.py). */
static void banner(const struct serve *sv)
{
    char base[160], ops[160];

    shown_url(base, sizeof(base), sv->host, server_port(sv->srv));
    if (sv->admin)
        shown_url(ops, sizeof(ops), sv->admin_host, listener_port(sv->admin));
    else
        snprintf(ops, sizeof(ops), "%s", base);
    printf("moor %s serving %s (pid %d)\n"
           "  %s/healthz     liveness\n"
           "  %s/metrics     Prometheus metrics\n",
           MOOR_VERSION, base, (int)getpid(), base, ops);
    if (sv->admin || sv->debug_public)
        printf("  %s/debug/mem   memory by tag (JSON)\n"
               "  %s/debug/conns one JSON line per connection\n"
               "  %s/dashboard   live dashboard (feed: /debug/stream)\n",
               ops, ops, ops);
    printf("  ws%s/echo          WebSocket echo\n"
           "  ws%s/sub/CHANNEL   WebSocket subscriber (CHANNEL: a,b,c)\n"
           "  ws%s/pub/CHANNEL   WebSocket publisher; or POST %s/pub/CHANNEL\n"
           "%s"
           "Stop with Ctrl-C or SIGTERM (graceful).\n",
           base + 4, base + 4, base + 4, base, sv->more);
    fflush(stdout);
}

/* True if host (a listen address's host as addr_parse() left it) is on
 * this machine only: 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z), or
 * "localhost". A wildcard (0.0.0.0, ::) and every other address may be
 * reached from the network. Other names are not resolved: one that maps
 * to loopback still gets the warning, which errs on the side of telling. */
static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return ntohl(a4.s_addr) >> 24 == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

/* Appends " key=host:port" to out (len bytes). */
static void add_addr(char *out, size_t len, const char *key, const char *host,
                     uint16_t port)
{
    size_t n = strlen(out);
    bool v6 = strchr(host, ':') != NULL;

    snprintf(out + n, len - n, " %s=%s%s%s:%u", key, v6 ? "[" : "", host,
             v6 ? "]" : "", port);
}

/* Appends " key=host:port" to out (len bytes) if host is not loopback. */
static void add_open(char *out, size_t len, const char *key, const char *host,
                     uint16_t port)
{
    if (!host_is_loopback(host))
        add_addr(out, len, key, host, port);
}

/* Warns once, at start, of what the network can reach: without auth,
 * anyone who reaches a listener outside loopback may publish and
 * subscribe; an admin listener outside loopback shows /metrics and the
 * /debug pages (every peer's address) to whoever reaches it. auth_on:
 * whether clients must prove who they are (--auth other than none). */
static void warn_open(const struct serve *sv, bool auth_on)
{
    const struct moor_config *c = sv->cfg;
    char open[512] = "", host[128];
    uint16_t port;

    if (!auth_on) {
        add_open(open, sizeof(open), "listen", sv->host, server_port(sv->srv));
        if (sv->tls_listener &&
            addr_parse(c->tls_listen, host, sizeof(host), &port) == 0)
            add_open(open, sizeof(open), "tls_listen", host,
                     listener_port(sv->tls_listener));
        if (sv->tcp &&
            addr_parse(c->tcp_listen, host, sizeof(host), &port) == 0)
            add_open(open, sizeof(open), "tcp_listen", host,
                     listener_port(sv->tcp));
    }
    if (open[0])
        LOG_WARN("listening on the network with --auth none: anyone who can "
                 "reach these addresses can publish to and subscribe to "
                 "every channel; see --auth",
                 "%s", open + 1);
    open[0] = '\0';
    if (sv->admin)
        add_open(open, sizeof(open), "admin_listen", sv->admin_host,
                 listener_port(sv->admin));
    if (open[0])
        LOG_WARN("admin listener on the network: anyone who can reach it "
                 "can read /metrics and /debug, which list every peer's "
                 "address and channels",
                 "%s", open + 1);
}

/* READY=1's STATUS=: every listener with the port it bound. */
static void ready_status(const struct serve *sv, char *out, size_t len)
{
    const struct moor_config *c = sv->cfg;
    char host[128];
    uint16_t port;

    snprintf(out, len, "listening:");
    add_addr(out, len, "listen", sv->host, server_port(sv->srv));
    if (sv->tls_listener &&
        addr_parse(c->tls_listen, host, sizeof(host), &port) == 0)
        add_addr(out, len, "tls_listen", host, listener_port(sv->tls_listener));
    if (sv->tcp && addr_parse(c->tcp_listen, host, sizeof(host), &port) == 0)
        add_addr(out, len, "tcp_listen", host, listener_port(sv->tcp));
    if (sv->admin)
        add_addr(out, len, "admin_listen", sv->admin_host,
                 listener_port(sv->admin));
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
            sdnotify_stopping(&sv->notify);
            server_shutdown(sv->srv);
        } else if (si.ssi_signo == SIGHUP) {
            LOG_INFO("signal", "sig=HUP");
            sdnotify_reloading(&sv->notify);
            on_reload(sv);
            sdnotify_reloaded(&sv->notify);
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
    /* The one place that decides it (see the field). */
    sv->debug_public = !cfg->admin_listen[0] && !strcmp(cfg->auth, "none");
    http_server_route(server_http(sv->srv), "/healthz", false,
                      HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), on_healthz, sv);
    if (!cfg->admin_listen[0])
        operator_routes(sv, server_http(sv->srv), sv->debug_public);
    http_server_route(server_http(sv->srv), "/echo", false, HTTP_M(HTTP_GET),
                      on_echo, sv);
    sv->auth = auth_from_config(cfg, sv->loop, err, sizeof(err));
    if (!sv->auth) {
        fprintf(stderr, "moor: --auth %s: %s\n", cfg->auth, err);
        goto err_free;
    }
    if (auth_is_callback(sv->auth))
        more_line(
            sv, "  --auth url: /sub and /pub are asked of %s (docs/auth.md)\n",
            cfg->auth_url);
    else if (auth_on(sv->auth))
        more_line(sv,
                  "  --auth jwt: /sub and /pub need a token (Authorization: "
                  "Bearer, ?token=; docs/auth.md)\n");
    push_options(cfg, &o, &po);
    po.auth = sv->auth;
    sv->push = push_new(server_http(sv->srv), server_ws(sv->srv),
                        server_conns(sv->srv), &po);
    if (!sv->push) {
        fprintf(stderr, "moor: out of memory\n");
        goto err_free;
    }
    sv->dstream = debug_stream_new(server_conns(sv->srv),
                                   (struct pubsub *)push_pubsub(sv->push),
                                   &(struct debug_stream_opts){
                                       .max_streams = cfg->max_debug_streams,
                                       .interval_ms = cfg->debug_interval_ms,
                                       .heartbeat_ms = cfg->sse_heartbeat_ms,
                                       .retry_ms = cfg->sse_retry_ms,
                                   },
                                   describe_conn, sv);
    if (!sv->dstream) {
        fprintf(stderr, "moor: out of memory\n");
        goto err_free;
    }
    if (cfg->influx_url[0] && start_influx(sv, cfg))
        goto err_free;
    server_on_shutdown(sv->srv, on_shutdown, sv);
    server_on_stopped(sv->srv, on_stopped, sv);
    if (((cfg->tls_listen[0] || cfg->tcp_tls) &&
         start_tls(sv, cfg, &o.listen)) ||
        (cfg->tcp_listen[0] && start_tcp(sv, cfg, &o.listen)) ||
        (cfg->admin_listen[0] && start_admin(sv, cfg, &o)))
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
    char err[256], status[256];
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
    sv->live = &cfg;
    sv->argc = argc;
    sv->argv = argv;
    sv->cfg_path = config_file_path(argc, argv, environ);
    rc = watch_signals(sv);
    if (rc < 0) {
        fprintf(stderr, "moor: cannot set up signals: %s\n", strerror(-rc));
        serve_free(sv);
        return 1;
    }
    banner(sv);
    LOG_INFO("listening", "addr=%s:%u max_conns=%u", sv->host,
             server_port(sv->srv), cfg.max_conns);
    if (sv->admin)
        LOG_INFO("admin listening", "addr=%s:%u", sv->admin_host,
                 listener_port(sv->admin));
    warn_open(sv, auth_on(sv->auth));

    hook = getenv("MOOR_TEST_FAIL_ALLOC");
    if (hook && *hook) {
        sv->fail_at = strtoull(hook, NULL, 10);
        mem_fail_at(sv->fail_at);
    }
    /* Every listener is bound (serve_new) and the loop runs next. */
    sdnotify_init(&sv->notify, sv->loop);
    ready_status(sv, status, sizeof(status));
    sdnotify_ready(&sv->notify, status);
    rc = loop_run(sv->loop);
    mem_fail_at(0);
    serve_free(sv);
    if (rc < 0) {
        LOG_ERROR("event loop failed", "err=\"%s\"", strerror(-rc));
        return 1;
    }
    return check_memory();
}
