/*
 * api_server.c - struct moor_server of include/moor.h: a server on a
 * shared loop, its TLS and framed-TCP listeners, its WebSocket and plain
 * HTTP routes, its metrics and /debug pages, and struct moor_tls.
 *
 * Keeps: every string the caller passes is copied (paths, origins,
 * certificate file names); every route, listener and copy is freed by
 * moor_server_free(); a moor_ws is the conn itself and a moor_request the
 * exchange itself (no allocation, no wrapper).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "buf.h"
#include "debug.h"
#include "log.h"
#include "mem.h"
#include "http_client.h"
#include "metrics.h"
#include "util.h"
#include "ws.h"
#include "ws_client.h"

/* One route: a WebSocket route's handlers, or a plain one's, or a page. */
struct api_route {
    struct api_route *next;
    struct moor_server *owner;
    struct moor_ws_handlers user; /* WebSocket: the caller's, copied */
    struct ws_handlers h;         /* ... and the trampolines into them */
    moor_http_handler *fn;        /* plain HTTP */
    void *arg;
    struct moor_server *about; /* metrics and debug pages */
    char path[];
};

/* ---- WebSocket trampolines (shared with api_client.c through
 * api_ws_handlers_init) -------------------------------------------------- */

static struct moor_ws *to_ws(struct conn *c)
{
    return (struct moor_ws *)(void *)c;
}

static struct conn *to_conn(const struct moor_ws *ws)
{
    return (struct conn *)(void *)ws;
}

static void t_open(struct conn *c, void *arg)
{
    const struct moor_ws_handlers *u = arg;

    if (u->on_open)
        u->on_open(to_ws(c), u->arg);
}

static void t_message(struct conn *c, const uint8_t *data, size_t len,
                      bool text, void *arg)
{
    const struct moor_ws_handlers *u = arg;

    if (u->on_message)
        u->on_message(to_ws(c), data, len, text, u->arg);
}

static void t_drain(struct conn *c, void *arg)
{
    const struct moor_ws_handlers *u = arg;

    if (u->on_drain)
        u->on_drain(to_ws(c), u->arg);
}

static void t_close(struct conn *c, uint16_t code, void *arg)
{
    const struct moor_ws_handlers *u = arg;

    if (u->on_close)
        u->on_close(to_ws(c), code, u->arg);
}

void api_ws_handlers_init(struct ws_handlers *h,
                          const struct moor_ws_handlers *user)
{
    memset(h, 0, sizeof(*h));
    h->on_open = t_open;
    h->on_message = t_message;
    h->on_drain = t_drain;
    h->on_close = t_close;
    h->arg = (void *)user;
    h->pause_on_backpressure = user->pause_reading_on_backpressure != 0;
}

MOOR_API enum moor_send_result
moor_ws_send(struct moor_ws *ws, const void *data, size_t len, int is_text)
{
    return (enum moor_send_result)ws_send(to_conn(ws), data, len, is_text != 0);
}

MOOR_API size_t moor_ws_buffered_amount(const struct moor_ws *ws)
{
    return ws_buffered_amount(to_conn(ws));
}

MOOR_API int moor_ws_close(struct moor_ws *ws, int code, const char *reason)
{
    uint32_t st = WS_UTF8_ACCEPT;
    size_t n = reason ? strlen(reason) : 0;

    /* 1000 and the registered codes a peer may send, or 3000-4999. */
    if (code < 1000 || code > 4999 || !ws_close_code_valid((uint16_t)code))
        return -EINVAL;
    if (n > WS_MAX_CONTROL - 2 ||
        (n && (!ws_utf8_feed(&st, (const uint8_t *)reason, n) ||
               st != WS_UTF8_ACCEPT)))
        return -EINVAL;
    return ws_close(to_conn(ws), (uint16_t)code, reason) < 0 ? MOOR_ECLOSED : 0;
}

MOOR_API void moor_ws_set_user(struct moor_ws *ws, void *user)
{
    ws_set_user(to_conn(ws), user);
}

MOOR_API void *moor_ws_user(const struct moor_ws *ws)
{
    return ws_user(to_conn(ws));
}

MOOR_API const char *moor_ws_error(const struct moor_ws *ws)
{
    return ws_close_detail(to_conn(ws));
}

/* ---- TLS --------------------------------------------------------------- */

static void tls_defaults(void *p, size_t size)
{
    struct moor_tls_options d = {
        .size = sizeof(d),
        .min_version = "1.2",
        .handshake_timeout_ms = 10000,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_tls_options_init_(struct moor_tls_options *o, size_t size)
{
    tls_defaults(o, size);
}

MOOR_API struct moor_tls *moor_tls_new(const struct moor_tls_options *o,
                                       struct moor_error *err)
{
    struct moor_tls_options to;
    struct tls_server_opts so;
    struct moor_tls *t;
    char why[256];

    if (api_options(&to, sizeof(to), o, tls_defaults, "moor_tls_options", err) <
        0)
        return NULL;
    memset(&so, 0, sizeof(so));
    so.cert_file = to.cert_file;
    so.key_file = to.key_file;
    so.min_version = tls_parse_version(to.min_version ? to.min_version : "");
    so.ciphers = to.ciphers;
    so.ciphersuites = to.ciphersuites;
    so.tickets = to.tickets != 0;
    if (!to.cert_file || !to.key_file) {
        api_fail(err, MOOR_ETLS, "TLS: cert_file and key_file are both needed");
        return NULL;
    }
    if (so.min_version < 0) {
        api_fail(err, MOOR_ETLS, "TLS: min_version \"%s\": use 1.2 or 1.3",
                 to.min_version);
        return NULL;
    }
    t = api_calloc(MEM_CONFIG, sizeof(*t), err);
    if (!t)
        return NULL;
    t->cert_file = api_strdup(to.cert_file);
    t->key_file = api_strdup(to.key_file);
    t->handshake_timeout_ms = to.handshake_timeout_ms;
    if (!t->cert_file || !t->key_file) {
        api_fail(err, -ENOMEM, "out of memory");
        moor_tls_free(t);
        return NULL;
    }
    t->ctx = tls_server_new(&so, why, sizeof(why));
    if (!t->ctx) {
        api_fail(err, MOOR_ETLS, "TLS: %s", why);
        moor_tls_free(t);
        return NULL;
    }
    return t;
}

MOOR_API int moor_tls_reload(struct moor_tls *t, struct moor_error *err)
{
    char why[256];

    if (tls_reload(t->ctx, t->cert_file, t->key_file, why, sizeof(why)) < 0)
        return api_fail(err, MOOR_ETLS, "TLS reload: %s", why);
    return 0;
}

MOOR_API void moor_tls_free(struct moor_tls *t)
{
    if (!t)
        return;
    tls_ctx_free(t->ctx);
    api_strfree(t->cert_file);
    api_strfree(t->key_file);
    mem_free(MEM_CONFIG, t);
}

/* ---- the server -------------------------------------------------------- */

static void server_defaults(void *p, size_t size)
{
    /* The defaults of `moor serve` (src/config.c's table; test_api checks
     * that they agree). */
    struct moor_server_options d = {
        .size = sizeof(d),
        .listen = "127.0.0.1:8080",
        .max_conns = 10000,
        .accept_rate = 2000,
        .accept_burst = 500,
        .max_message = MiB(16),
        .queue_limit = MiB(1),
        .max_header_bytes = 8192,
        .max_headers = 100,
        .max_body = MiB(1),
        .header_timeout_ms = 10000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
        .linger_timeout_ms = 2000,
        .ping_interval_ms = 30000,
        .pong_timeout_ms = 15000,
        .close_timeout_ms = 5000,
        .write_timeout_ms = 30000,
        .shutdown_timeout_ms = 10000,
        .drain_spread_ms = 2000,
        .message_timeout_ms = 30000,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_server_options_init_(struct moor_server_options *o,
                                        size_t size)
{
    server_defaults(o, size);
}

static void on_shutdown(void *arg)
{
    struct moor_server *s = arg;

    for (unsigned i = 0; i < s->n_extra; i++)
        listener_stop(s->extra[i].ls);
    if (s->ps)
        api_pubsub_drain(s->ps);
}

/* The shutdown is over: moor_loop_run() may have nothing left. */
static void on_stopped(void *arg)
{
    struct moor_server *s = arg;

    loop_poke(s->ml->loop);
}

MOOR_API struct moor_server *
moor_server_new(struct moor_loop *l, const struct moor_server_options *o,
                struct moor_error *err)
{
    struct moor_server_options so;
    struct server_opts io;
    struct moor_server *s;
    char host[128], why[256];
    uint16_t port = 0;
    int e = 0;

    if (api_options(&so, sizeof(so), o, server_defaults, "moor_server_options",
                    err) < 0)
        return NULL;
    if (so.listen && *so.listen &&
        api_addr(so.listen, host, sizeof(host), &port, "listen", err) < 0)
        return NULL;
    if (so.max_headers > HTTP_MAX_HEADERS_CAP || so.max_header_bytes < 64) {
        api_fail(err, -EINVAL,
                 "max_headers at most %u, max_header_bytes at least 64",
                 HTTP_MAX_HEADERS_CAP);
        return NULL;
    }
    s = api_calloc(MEM_CONFIG, sizeof(*s), err);
    if (!s)
        return NULL;
    s->ml = l;
    atomic_init(&s->stop_asked, false);
    s->max_message = so.max_message;
    s->header_timeout_ms = so.header_timeout_ms;
    s->close_timeout_ms = so.close_timeout_ms;
    s->allowed_origins = api_strdup(so.allowed_origins);
    if (so.allowed_origins && !s->allowed_origins) {
        api_fail(err, -ENOMEM, "out of memory");
        mem_free(MEM_CONFIG, s);
        return NULL;
    }
    memset(&io, 0, sizeof(io));
    io.host = so.listen && *so.listen ? host : NULL;
    io.port = port;
    io.listen.max_conns = so.max_conns;
    io.listen.accept_rate = so.accept_rate;
    io.listen.accept_burst = so.accept_burst;
    io.conn.write_timeout_ms = so.write_timeout_ms;
    io.conn.message_timeout_ms = so.message_timeout_ms;
    io.conn.queue_limit = (uint32_t)MIN(so.queue_limit, (uint64_t)UINT32_MAX);
    io.http.lim.max_header_bytes = so.max_header_bytes;
    io.http.lim.max_headers = so.max_headers;
    io.http.lim.max_body = so.max_body;
    io.http.header_timeout_ms = so.header_timeout_ms;
    io.http.body_timeout_ms = so.body_timeout_ms;
    io.http.idle_timeout_ms = so.idle_timeout_ms;
    io.http.linger_timeout_ms = so.linger_timeout_ms;
    io.ws.max_message = so.max_message;
    io.ws.ping_interval_ms = so.ping_interval_ms;
    io.ws.pong_timeout_ms = so.pong_timeout_ms;
    io.ws.close_timeout_ms = so.close_timeout_ms;
    io.ws.drain_spread_ms = so.drain_spread_ms;
    io.ws.allowed_origins = s->allowed_origins;
    io.shutdown_timeout_ms = so.shutdown_timeout_ms;
    s->listen = io.listen;
    s->srv = server_new(l->loop, &io, &e, why, sizeof(why));
    if (!s->srv) {
        api_fail(err, e == -EINVAL && io.host ? MOOR_EADDR : e, "%s", why);
        api_strfree(s->allowed_origins);
        mem_free(MEM_CONFIG, s);
        return NULL;
    }
    server_on_shutdown(s->srv, on_shutdown, s);
    server_on_stopped(s->srv, on_stopped, s);
    api_loop_add_server(l, s);
    return s;
}

static void on_tls_accept(struct listener *ls, int fd,
                          const struct sockaddr *peer, void *arg)
{
    struct api_listener *x = arg;

    (void)ls;
    (void)peer;
    if (x->tcp)
        push_tcp_accept(api_pubsub_push(x->owner->ps), fd,
                        x->tls ? x->tls->ctx : NULL,
                        x->tls ? x->tls->handshake_timeout_ms : 0);
    else
        http_server_accept_tls(server_http(x->owner->srv), fd, x->tls->ctx,
                               x->tls->handshake_timeout_ms);
}

int api_server_listen(struct moor_server *s, const char *addr,
                      struct moor_tls *t, bool tcp, const char *what,
                      struct moor_error *err)
{
    struct api_listener *x;
    char host[128];
    uint16_t port = 0;
    int e = 0;

    if (s->n_extra >= API_MAX_LISTENERS)
        return api_fail(err, -ENOSPC, "%s: at most %d extra listeners", what,
                        API_MAX_LISTENERS);
    if (server_stopped(s->srv) || atomic_load(&s->stop_asked))
        return api_fail(err, MOOR_ESTATE, "%s: the server is stopping", what);
    if (api_addr(addr, host, sizeof(host), &port, what, err) < 0)
        return MOOR_EADDR;
    x = &s->extra[s->n_extra];
    x->owner = s;
    x->tls = t;
    x->tcp = tcp;
    x->ls = listener_new(s->ml->loop, server_conns(s->srv), host, port,
                         &s->listen, on_tls_accept, x, &e);
    if (!x->ls)
        return api_fail(err, e, "%s: cannot listen on %s: %s", what, addr,
                        moor_strerror(e));
    s->n_extra++;
    return 0;
}

MOOR_API int moor_server_listen_tls(struct moor_server *s, const char *addr,
                                    struct moor_tls *t, struct moor_error *err)
{
    if (!t)
        return api_fail(err, -EINVAL, "TLS listener %s: no moor_tls",
                        addr ? addr : "");
    return api_server_listen(s, addr, t, false, "TLS listener", err);
}

MOOR_API int moor_server_port(const struct moor_server *s)
{
    int p = server_port(s->srv);

    for (unsigned i = 0; !p && i < s->n_extra; i++)
        if (!s->extra[i].tcp)
            p = listener_port(s->extra[i].ls);
    return p;
}

MOOR_API int moor_server_tls_port(const struct moor_server *s, unsigned n)
{
    for (unsigned i = 0; i < s->n_extra; i++)
        if (!s->extra[i].tcp && n-- == 0)
            return listener_port(s->extra[i].ls);
    return -ENOENT;
}

/* Also for api_pubsub.c's TCP listeners. */
int api_server_listener_port(const struct moor_server *s, bool tcp, unsigned n)
{
    for (unsigned i = 0; i < s->n_extra; i++)
        if (s->extra[i].tcp == tcp && n-- == 0)
            return listener_port(s->extra[i].ls);
    return -ENOENT;
}

MOOR_API void moor_server_stop(struct moor_server *s)
{
    atomic_store(&s->stop_asked, true);
    loop_wake(s->ml->loop);
}

MOOR_API int moor_server_stopped(const struct moor_server *s)
{
    return server_stopped(s->srv);
}

MOOR_API void moor_server_free(struct moor_server *s)
{
    if (!s)
        return;
    api_loop_remove_server(s->ml, s);
    for (unsigned i = 0; i < s->n_extra; i++)
        listener_free(s->extra[i].ls);
    server_free(s->srv);
    if (s->ps)
        api_pubsub_free(s->ps);
    while (s->routes) {
        struct api_route *r = s->routes;
        s->routes = r->next;
        mem_free(MEM_CONFIG, r);
    }
    api_strfree(s->allowed_origins);
    mem_free(MEM_CONFIG, s);
}

/* ---- routes ------------------------------------------------------------ */

static struct api_route *route_new(struct moor_server *s, const char *path)
{
    size_t n = path ? strlen(path) : 0;
    struct api_route *r;

    if (!n || path[0] != '/')
        return NULL;
    r = mem_calloc(MEM_CONFIG, 1, sizeof(*r) + n + 1);
    if (!r)
        return NULL;
    memcpy(r->path, path, n + 1);
    r->owner = s;
    r->next = s->routes;
    s->routes = r;
    return r;
}

/* Undoes route_new() when the route table refused the route. */
static void route_drop(struct moor_server *s, struct api_route *r)
{
    s->routes = r->next;
    mem_free(MEM_CONFIG, r);
}

static void on_upgrade(struct http_exchange *ex, void *arg)
{
    struct api_route *r = arg;

    ws_server_upgrade(server_ws(r->owner->srv), ex, &r->h);
}

MOOR_API int moor_server_ws(struct moor_server *s, const char *path,
                            const struct moor_ws_handlers *h)
{
    struct api_route *r;

    if (!h)
        return -EINVAL;
    r = route_new(s, path);
    if (!r)
        return path && path[0] == '/' ? -ENOMEM : -EINVAL;
    r->user = *h;
    api_ws_handlers_init(&r->h, &r->user);
    if (http_server_route(server_http(s->srv), r->path, false, HTTP_M(HTTP_GET),
                          on_upgrade, r) < 0) {
        route_drop(s, r);
        return -ENOSPC;
    }
    return 0;
}

/* A moor_request is the exchange itself. */
static struct http_exchange *to_ex(const struct moor_request *req)
{
    return (struct http_exchange *)(void *)req;
}

static void on_http(struct http_exchange *ex, void *arg)
{
    struct api_route *r = arg;

    r->fn((struct moor_request *)(void *)ex, r->arg);
    if (!ex->responded && !ex->upgraded) {
        LOG_WARN("route handler did not answer", "path=%s", r->path);
        http_respond(ex, 500, "text/plain; charset=utf-8", NULL,
                     "500 Internal Server Error\n", 26);
    }
}

/* "GET,HEAD" -> a mask of HTTP_M() bits, or 0 for a bad list. */
static unsigned parse_methods(const char *s)
{
    unsigned mask = 0;

    while (s && *s) {
        size_t n = strcspn(s, ",");
        enum http_method m;

        for (m = HTTP_GET; m <= HTTP_TRACE; m++) {
            const char *name = http_method_name(m);
            if (strlen(name) == n && !memcmp(name, s, n))
                break;
        }
        if (m > HTTP_TRACE)
            return 0;
        mask |= HTTP_M(m);
        s += n;
        if (*s == ',')
            s++;
    }
    return mask;
}

MOOR_API int moor_server_route(struct moor_server *s, const char *methods,
                               const char *path, moor_http_handler *fn,
                               void *arg)
{
    unsigned mask = parse_methods(methods);
    unsigned bodies = HTTP_M(HTTP_POST) | HTTP_M(HTTP_PUT) |
                      HTTP_M(HTTP_PATCH) | HTTP_M(HTTP_DELETE);
    struct api_route *r;
    size_t n;
    int rc;

    if (!mask || !fn)
        return -EINVAL;
    r = route_new(s, path);
    if (!r)
        return path && path[0] == '/' ? -ENOMEM : -EINVAL;
    r->fn = fn;
    r->arg = arg;
    n = strlen(r->path);
    if (mask & bodies)
        rc = http_server_route_body(server_http(s->srv), r->path,
                                    r->path[n - 1] == '/', mask, on_http, r);
    else
        rc = http_server_route(server_http(s->srv), r->path,
                               r->path[n - 1] == '/', mask, on_http, r);
    if (rc < 0) {
        route_drop(s, r);
        return -ENOSPC;
    }
    return 0;
}

MOOR_API const char *moor_request_method(const struct moor_request *req)
{
    return http_method_name(to_ex(req)->method);
}

MOOR_API const char *moor_request_path(const struct moor_request *req,
                                       size_t *len)
{
    const struct http_exchange *ex = to_ex(req);

    if (len)
        *len = ex->path.len;
    return ex->path.p;
}

MOOR_API const char *moor_request_header(const struct moor_request *req,
                                         const char *name, size_t *len)
{
    const struct http_exchange *ex = to_ex(req);
    const struct http_str *v = ex->req ? http_header_get(ex->req, name) : NULL;

    if (len)
        *len = v ? v->len : 0;
    return v ? v->p : NULL;
}

MOOR_API const void *moor_request_body(const struct moor_request *req,
                                       size_t *len)
{
    const struct http_exchange *ex = to_ex(req);

    if (len)
        *len = ex->body ? ex->body_len : 0;
    return ex->body_len ? ex->body : NULL;
}

/* Header text a handler may add: "Name: value\r\n" lines, no other CR or
 * LF (a response-splitting guard), nothing outside visible ASCII, space
 * and tab. */
static bool extra_ok(const char *s)
{
    while (s && *s) {
        const char *eol = strstr(s, "\r\n");
        const char *colon;

        if (!eol || eol == s)
            return false;
        colon = memchr(s, ':', (size_t)(eol - s));
        if (!colon || colon == s)
            return false;
        for (const char *p = s; p < eol; p++)
            if (((unsigned char)*p < ' ' && *p != '\t') || *p == 0x7f)
                return false;
        s = eol + 2;
    }
    return true;
}

MOOR_API int moor_respond(struct moor_request *req, int status,
                          const char *content_type, const char *extra_headers,
                          const void *body, size_t len)
{
    struct http_exchange *ex = to_ex(req);

    if (ex->responded || ex->upgraded)
        return MOOR_ESTATE;
    if (status < 200 || status > 599 || !extra_ok(extra_headers) ||
        (content_type && strpbrk(content_type, "\r\n")) || (len && !body))
        return -EINVAL;
    return http_respond(ex, status, content_type, extra_headers, body, len);
}

/* ---- metrics and /debug ------------------------------------------------ */

static void on_metrics(struct http_exchange *ex, void *arg)
{
    struct api_route *r = arg;
    struct moor_server *s = r->about;
    struct metrics_view v;
    struct sbuf b;
    int rc;

    sbuf_init(&b, MEM_METRICS, METRICS_PAGE_MAX);
    server_metrics_view(s->srv, &v);
    for (unsigned i = 0; i < s->n_extra; i++) {
        v.loops[0].listeners[1 + i] = s->extra[i].ls;
        if (!v.tls && s->extra[i].tls)
            v.tls = s->extra[i].tls->ctx;
    }
    v.loops[0].pubsub = s->ps ? push_pubsub(api_pubsub_push(s->ps)) : NULL;
    rc = metrics_render(&b, &v);
    if (rc >= 0 && r->owner->n_metrics_clients)
        rc = http_client_metrics(
            (const struct moor_http_client *const *)r->owner->metrics_clients,
            r->owner->n_metrics_clients, &b);
    http_respond_page(ex, rc, &b, "text/plain; version=0.0.4; charset=utf-8");
}

MOOR_API int moor_server_metrics_http_client(struct moor_server *on,
                                             struct moor_http_client *cl)
{
    if (!on || !cl)
        return -EINVAL;
    if (on->n_metrics_clients >= API_MAX_METRICS_CLIENTS)
        return -ENOSPC;
    on->metrics_clients[on->n_metrics_clients++] = cl;
    return 0;
}

static void on_debug_conns(struct http_exchange *ex, void *arg)
{
    struct api_route *r = arg;
    struct moor_server *s = r->about;
    struct push *p = s->ps ? api_pubsub_push(s->ps) : NULL;

    debug_conns_page(ex, server_conns(s->srv), p ? push_describe : NULL, p);
}

static int page(struct moor_server *on, const char *path,
                struct moor_server *about, http_handler_fn *fn)
{
    struct api_route *r = route_new(on, path);

    if (!r)
        return path && path[0] == '/' ? -ENOMEM : -EINVAL;
    r->about = about ? about : on;
    if (http_server_route(server_http(on->srv), r->path, false,
                          HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD), fn, r) < 0) {
        route_drop(on, r);
        return -ENOSPC;
    }
    return 0;
}

MOOR_API int moor_server_metrics(struct moor_server *on, const char *path,
                                 struct moor_server *about)
{
    return page(on, path, about, on_metrics);
}

MOOR_API int moor_server_debug(struct moor_server *on, const char *prefix,
                               struct moor_server *about)
{
    char path[256];
    int rc;

    if (!prefix || prefix[0] != '/' || strlen(prefix) > 200)
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/mem", prefix);
    rc = page(on, path, about, debug_mem_page);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/conns", prefix);
    return page(on, path, about, on_debug_conns);
}
