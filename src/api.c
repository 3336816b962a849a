/*
 * api.c - the public functions of include/moor.h, as thin wrappers over
 * the internal modules (server, ws_server, mem). Nothing else in the library is
 * visible outside it (built with -fvisibility=hidden).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moor.h"
#include "buf.h"
#include "mem.h"
#include "metrics.h"
#include "server.h"
#include "tls.h"
#include "util.h"
#include "ws_client.h"
#include "ws_server.h"

MOOR_API const char *moor_version(void)
{
    return MOOR_VERSION;
}

MOOR_API int64_t moor_mem_live_bytes(void)
{
    return mem_live_bytes(MEM_ALL);
}

MOOR_API long moor_mem_json(char *out, unsigned long cap)
{
    struct sbuf b;
    long need;

    sbuf_init(&b, MEM_METRICS, 16u << 20);
    if (metrics_debug_mem(&b) < 0) {
        sbuf_fini(&b);
        return -ENOMEM;
    }
    need = (long)b.len;
    if (cap) {
        size_t n = b.len < cap - 1 ? b.len : cap - 1;
        memcpy(out, b.data, n);
        out[n] = '\0';
    }
    sbuf_fini(&b);
    return need;
}

/* ---- the server -------------------------------------------------------- */

#define API_MAX_ROUTES 16

/* The application's callbacks and the internal trampolines into them. */
struct api_handlers {
    struct moor_ws_handlers user;
    struct ws_handlers h;
    const struct moor_ws_handlers *key; /* the caller's pointer (client) */
    struct api_handlers *next;          /* the client's list */
};

struct api_route {
    struct moor_server *owner;
    struct api_handlers ah;
};

struct moor_server {
    struct server *srv;
    unsigned n_routes;
    struct api_route routes[API_MAX_ROUTES];
};

/* A moor_ws is the conn itself: no allocation, no wrapper. */
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
    struct api_handlers *r = arg;

    if (r->user.on_open)
        r->user.on_open(to_ws(c), r->user.arg);
}

static void t_message(struct conn *c, const uint8_t *data, size_t len,
                      bool text, void *arg)
{
    struct api_handlers *r = arg;

    if (r->user.on_message)
        r->user.on_message(to_ws(c), data, len, text, r->user.arg);
}

static void t_drain(struct conn *c, void *arg)
{
    struct api_handlers *r = arg;

    if (r->user.on_drain)
        r->user.on_drain(to_ws(c), r->user.arg);
}

static void t_close(struct conn *c, uint16_t code, void *arg)
{
    struct api_handlers *r = arg;

    if (r->user.on_close)
        r->user.on_close(to_ws(c), code, r->user.arg);
}

static void handlers_init(struct api_handlers *a,
                          const struct moor_ws_handlers *h)
{
    a->user = *h;
    a->key = h;
    a->h.on_open = t_open;
    a->h.on_message = t_message;
    a->h.on_drain = t_drain;
    a->h.on_close = t_close;
    a->h.arg = a;
    a->h.pause_on_backpressure = h->pause_reading_on_backpressure != 0;
}

static void on_upgrade(struct http_exchange *ex, void *arg)
{
    struct api_route *r = arg;

    ws_server_upgrade(server_ws(r->owner->srv), ex, &r->ah.h);
}

static void on_wake(struct loop *l, void *arg)
{
    (void)l;
    server_shutdown(arg);
}

/* The defaults of `moor serve` (src/config.c's table; test_api checks
 * that they agree). */
MOOR_API void moor_server_options_init(struct moor_server_options *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = "127.0.0.1:8080";
    o->max_conns = 10000;
    o->max_message = 16u << 20;
    o->queue_limit = 1u << 20;
    o->ping_interval_ms = 30000;
    o->pong_timeout_ms = 15000;
    o->write_timeout_ms = 30000;
    o->idle_timeout_ms = 60000;
    o->shutdown_timeout_ms = 10000;
    o->message_timeout_ms = 30000;
}

/* Splits "host:port" or "[v6]:port" into host and port. */
static int split_addr(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hl;
    char *end;
    unsigned long p;

    if (!colon)
        return -EINVAL;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && colon[-1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    if (hl >= hostlen)
        return -EINVAL;
    p = strtoul(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

MOOR_API struct moor_server *
moor_server_new(const struct moor_server_options *o, char *err, size_t errlen)
{
    struct moor_server *ms;
    struct server_opts so;
    char host[128];
    uint16_t port;
    int e = 0;

    if (split_addr(o->listen ? o->listen : "", host, sizeof(host), &port)) {
        snprintf(err, errlen,
                 "bad listen address \"%s\": expected "
                 "host:port",
                 o->listen ? o->listen : "");
        return NULL;
    }
    ms = mem_calloc(MEM_CONFIG, 1, sizeof(*ms));
    if (!ms) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memset(&so, 0, sizeof(so));
    so.host = host;
    so.port = port;
    so.listen.max_conns = o->max_conns;
    so.conn.write_timeout_ms = o->write_timeout_ms;
    so.conn.message_timeout_ms = o->message_timeout_ms;
    so.conn.queue_limit = (uint32_t)MIN(o->queue_limit, (uint64_t)UINT32_MAX);
    so.http.lim.max_header_bytes = 8192;
    so.http.lim.max_headers = 100;
    so.http.lim.max_body = 1u << 20;
    so.http.header_timeout_ms = 10000;
    so.http.body_timeout_ms = 30000;
    so.http.idle_timeout_ms = o->idle_timeout_ms;
    so.http.linger_timeout_ms = 2000;
    so.ws.max_message = o->max_message;
    so.ws.ping_interval_ms = o->ping_interval_ms;
    so.ws.pong_timeout_ms = o->pong_timeout_ms;
    so.ws.close_timeout_ms = 5000;
    so.ws.drain_spread_ms = 0;
    so.ws.allowed_origins = o->allowed_origins;
    so.read_buffer = 64u << 10;
    so.shutdown_timeout_ms = o->shutdown_timeout_ms;
    /* moor serve's --mem-trim-interval and --mem-trim-threshold defaults
     * (config.c): an embedding program gets its RSS back after a burst
     * too. */
    so.trim_interval_ms = 1000;
    so.trim_threshold = 2u << 20;
    ms->srv = server_new(&so, &e, err, errlen);
    if (!ms->srv) {
        mem_free(MEM_CONFIG, ms);
        return NULL;
    }
    loop_on_wake(server_loop(ms->srv), on_wake, ms->srv);
    return ms;
}

MOOR_API int moor_server_ws(struct moor_server *s, const char *path,
                            const struct moor_ws_handlers *h)
{
    struct api_route *r;

    if (s->n_routes >= API_MAX_ROUTES)
        return -ENOSPC;
    r = &s->routes[s->n_routes];
    r->owner = s;
    handlers_init(&r->ah, h);
    if (http_server_route(server_http(s->srv), path, false, HTTP_M(HTTP_GET),
                          on_upgrade, r) < 0)
        return -ENOSPC;
    s->n_routes++;
    return 0;
}

MOOR_API int moor_server_port(const struct moor_server *s)
{
    return server_port(s->srv);
}

MOOR_API int moor_server_run(struct moor_server *s)
{
    return server_run(s->srv);
}

MOOR_API void moor_server_stop(struct moor_server *s)
{
    loop_wake(server_loop(s->srv));
}

MOOR_API void moor_server_free(struct moor_server *s)
{
    if (!s)
        return;
    server_free(s->srv);
    mem_free(MEM_CONFIG, s);
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

MOOR_API void moor_ws_close(struct moor_ws *ws, int code, const char *reason)
{
    ws_close(to_conn(ws), (uint16_t)code, reason);
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

/* ---- the client -------------------------------------------------------- */

struct moor_client {
    struct loop *loop;
    struct conn_set set;
    struct ws_client *ws;
    struct loop_hook hook;
    struct api_handlers *handlers; /* one per distinct handlers pointer */
    struct tls_ctx *tls;           /* made at the first wss:// connect */
    char tls_ca[512];              /* moor_client_options.tls_ca */
    bool insecure;
    bool running;
};

MOOR_API void moor_client_options_init(struct moor_client_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_message = 16u << 20;
    o->queue_limit = 1u << 20;
    o->connect_timeout_ms = 10000;
    o->ping_interval_ms = 30000;
    o->pong_timeout_ms = 15000;
    o->write_timeout_ms = 30000;
    o->close_timeout_ms = 5000;
}

/* After every iteration: stop once no connection is left. */
static void client_hook(struct loop_hook *h)
{
    struct moor_client *cl = container_of(h, struct moor_client, hook);

    if (cl->running && cl->set.stats.open == 0)
        loop_stop(cl->loop);
}

static void client_wake(struct loop *l, void *arg)
{
    (void)arg;
    loop_stop(l);
}

MOOR_API struct moor_client *
moor_client_new(const struct moor_client_options *o, char *err, size_t errlen)
{
    struct moor_client *cl = mem_calloc(MEM_CONFIG, 1, sizeof(*cl));
    struct conn_limits lim = {
        .write_timeout_ms = o->write_timeout_ms,
        .queue_limit = (uint32_t)MIN(o->queue_limit, (uint64_t)UINT32_MAX),
    };
    struct ws_client_opts wo = {
        .max_message = o->max_message,
        .connect_timeout_ms = o->connect_timeout_ms,
        .ping_interval_ms = o->ping_interval_ms,
        .pong_timeout_ms = o->pong_timeout_ms,
        .close_timeout_ms = o->close_timeout_ms,
    };

    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cl->loop = loop_new(64u << 10);
    if (!cl->loop) {
        snprintf(err, errlen, "cannot create the event loop");
        mem_free(MEM_CONFIG, cl);
        return NULL;
    }
    if (conn_set_init(&cl->set, cl->loop, &lim) < 0) {
        snprintf(err, errlen, "out of memory");
        loop_free(cl->loop);
        mem_free(MEM_CONFIG, cl);
        return NULL;
    }
    cl->ws = ws_client_new(&cl->set, &wo);
    if (!cl->ws) {
        snprintf(err, errlen, "out of memory");
        conn_set_fini(&cl->set);
        loop_free(cl->loop);
        mem_free(MEM_CONFIG, cl);
        return NULL;
    }
    if (o->tls_ca && strlen(o->tls_ca) >= sizeof(cl->tls_ca)) {
        snprintf(err, errlen, "tls_ca: file name too long");
        moor_client_free(cl);
        return NULL;
    }
    snprintf(cl->tls_ca, sizeof(cl->tls_ca), "%s", o->tls_ca ? o->tls_ca : "");
    cl->insecure = o->insecure != 0;
    cl->hook.fn = client_hook;
    loop_add_hook(cl->loop, &cl->hook);
    loop_on_wake(cl->loop, client_wake, cl);
    return cl;
}

static struct api_handlers *client_handlers(struct moor_client *cl,
                                            const struct moor_ws_handlers *h)
{
    struct api_handlers *a;

    for (a = cl->handlers; a; a = a->next)
        if (a->key == h)
            return a;
    a = mem_calloc(MEM_CONFIG, 1, sizeof(*a));
    if (!a)
        return NULL;
    handlers_init(a, h);
    a->next = cl->handlers;
    cl->handlers = a;
    return a;
}

MOOR_API int moor_client_connect(struct moor_client *cl, const char *url,
                                 const struct moor_ws_handlers *h, void *user,
                                 char *err, size_t errlen)
{
    struct ws_url u;
    struct ws_target t;
    struct api_handlers *a;
    const char *why = ws_url_parse(url ? url : "", &u);
    int e = 0;

    if (why) {
        snprintf(err, errlen, "bad URL \"%s\": %s", url ? url : "", why);
        return -EINVAL;
    }
    if (u.tls && !cl->tls) {
        struct tls_client_opts to = {
            .ca_file = cl->tls_ca[0] ? cl->tls_ca : NULL,
            .insecure = cl->insecure,
        };
        char terr[256];

        cl->tls = tls_client_new(&to, terr, sizeof(terr));
        if (!cl->tls) {
            snprintf(err, errlen, "TLS: %s", terr);
            return -EINVAL;
        }
    }
    a = client_handlers(cl, h);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memset(&t, 0, sizeof(t));
    t.addr = (const struct sockaddr *)&u.addr;
    t.addrlen = u.addrlen;
    t.host = u.host;
    t.path = u.path;
    t.tls = u.tls ? cl->tls : NULL;
    t.tls_name = u.name;
    if (!ws_client_connect(cl->ws, &t, &a->h, user, &e)) {
        char buf[64];
        snprintf(err, errlen, "cannot connect to %s: %s", url,
                 strerror_r(-e, buf, sizeof(buf)));
        return e;
    }
    return 0;
}

MOOR_API int moor_client_run(struct moor_client *cl)
{
    int rc;

    if (cl->set.stats.open == 0)
        return 0;
    cl->running = true;
    rc = loop_run(cl->loop);
    cl->running = false;
    return rc;
}

MOOR_API void moor_client_stop(struct moor_client *cl)
{
    loop_wake(cl->loop);
}

static void client_close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

MOOR_API void moor_client_free(struct moor_client *cl)
{
    if (!cl)
        return;
    conn_set_each(&cl->set, client_close_one, NULL);
    /* One iteration frees the closed conns (end-of-iteration hook). */
    loop_run_once(cl->loop, 0);
    ws_client_free(cl->ws);
    conn_set_fini(&cl->set);
    tls_ctx_free(cl->tls);
    loop_free(cl->loop);
    while (cl->handlers) {
        struct api_handlers *a = cl->handlers;
        cl->handlers = a->next;
        mem_free(MEM_CONFIG, a);
    }
    mem_free(MEM_CONFIG, cl);
}
