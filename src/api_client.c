/*
 * api_client.c - struct moor_client of include/moor.h: WebSocket client
 * connections (ws://, wss://) with their own conn set on a shared loop.
 *
 * Handlers are copied, as moor.h promises: each connect keeps a copy
 * for as long as its connection lives. Copies with the same contents are
 * shared (counted), so a program that connects a thousand times with one
 * handler struct holds one copy, and one that passes a different arg
 * each time holds one per open connection, never more.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "mem.h"
#include "util.h"
#include "ws_client.h"
#include "ws_server.h"

/* A shared copy of a moor_ws_handlers, and the trampolines into it. */
struct api_handlers {
    struct moor_ws_handlers user; /* first: the trampolines' arg */
    struct ws_handlers h;
    struct moor_client *owner;
    struct api_handlers *next;
    unsigned refs; /* connections using it */
};

struct moor_client {
    struct moor_loop *ml;
    struct moor_client *next; /* ml's list */
    struct conn_set set;
    struct ws_client *ws;
    struct api_handlers *handlers;
    struct tls_ctx *tls; /* made at the first wss:// connect */
    char *tls_ca;        /* moor_client_options.tls_ca, copied */
    bool insecure;
};

struct moor_client **api_client_next(struct moor_client *cl)
{
    return &cl->next;
}

bool api_client_busy(const struct moor_client *cl)
{
    return cl->set.stats.open > 0;
}

static void client_defaults(void *p, size_t size)
{
    struct moor_client_options d = {
        .size = sizeof(d),
        .max_message = MiB(16),
        .queue_limit = MiB(1),
        .connect_timeout_ms = 10000,
        .ping_interval_ms = 30000,
        .pong_timeout_ms = 15000,
        .write_timeout_ms = 30000,
        .close_timeout_ms = 5000,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_client_options_init_(struct moor_client_options *o,
                                        size_t size)
{
    client_defaults(o, size);
}

MOOR_API struct moor_client *
moor_client_new(struct moor_loop *l, const struct moor_client_options *o,
                struct moor_error *err)
{
    struct moor_client_options co;
    struct moor_client *cl;
    struct conn_limits lim;
    struct ws_client_opts wo;

    if (api_options(&co, sizeof(co), o, client_defaults, "moor_client_options",
                    err) < 0)
        return NULL;
    cl = api_calloc(MEM_CONFIG, sizeof(*cl), err);
    if (!cl)
        return NULL;
    memset(&lim, 0, sizeof(lim));
    lim.write_timeout_ms = co.write_timeout_ms;
    lim.queue_limit = (uint32_t)MIN(co.queue_limit, (uint64_t)UINT32_MAX);
    memset(&wo, 0, sizeof(wo));
    wo.max_message = co.max_message;
    wo.connect_timeout_ms = co.connect_timeout_ms;
    wo.ping_interval_ms = co.ping_interval_ms;
    wo.pong_timeout_ms = co.pong_timeout_ms;
    wo.close_timeout_ms = co.close_timeout_ms;
    cl->ml = l;
    cl->insecure = co.insecure != 0;
    if (co.tls_ca && !(cl->tls_ca = api_strdup(co.tls_ca))) {
        mem_free(MEM_CONFIG, cl);
        api_fail(err, -ENOMEM, "out of memory");
        return NULL;
    }
    if (conn_set_init(&cl->set, l->loop, &lim) < 0) {
        api_strfree(cl->tls_ca);
        mem_free(MEM_CONFIG, cl);
        api_fail(err, -ENOMEM, "out of memory");
        return NULL;
    }
    cl->ws = ws_client_new(&cl->set, &wo);
    if (!cl->ws) {
        conn_set_fini(&cl->set);
        api_strfree(cl->tls_ca);
        mem_free(MEM_CONFIG, cl);
        api_fail(err, -ENOMEM, "out of memory");
        return NULL;
    }
    api_loop_add_client(l, cl);
    return cl;
}

static void c_close(struct conn *c, uint16_t code, void *arg);

/* The shared copy with h's contents, counted once more; NULL if out of
 * memory. */
static struct api_handlers *handlers_get(struct moor_client *cl,
                                         const struct moor_ws_handlers *h)
{
    struct api_handlers *a;

    for (a = cl->handlers; a; a = a->next)
        if (!memcmp(&a->user, h, sizeof(*h))) {
            a->refs++;
            return a;
        }
    a = mem_calloc(MEM_CONFIG, 1, sizeof(*a));
    if (!a)
        return NULL;
    a->user = *h;
    api_ws_handlers_init(&a->h, &a->user);
    a->h.on_close = c_close; /* its arg is a, whose first member is user */
    a->h.arg = a;
    a->owner = cl;
    a->refs = 1;
    a->next = cl->handlers;
    cl->handlers = a;
    return a;
}

static void handlers_put(struct api_handlers *a)
{
    struct api_handlers **pp;

    if (--a->refs)
        return;
    for (pp = &a->owner->handlers; *pp != a; pp = &(*pp)->next)
        ;
    *pp = a->next;
    mem_free(MEM_CONFIG, a);
}

/* The connection ended: the user hears of it, then its copy of the
 * handlers is released (ws_client reads nothing of it afterwards). */
static void c_close(struct conn *c, uint16_t code, void *arg)
{
    struct api_handlers *a = arg;

    if (a->user.on_close)
        a->user.on_close((struct moor_ws *)(void *)c, code, a->user.arg);
    handlers_put(a);
}

MOOR_API int moor_client_connect(struct moor_client *cl, const char *url,
                                 const struct moor_ws_handlers *h, void *user,
                                 struct moor_error *err)
{
    struct ws_url u;
    struct ws_target t;
    struct api_handlers *a;
    const char *why = ws_url_parse(url ? url : "", &u);
    int e = 0;

    if (why)
        return api_fail(err, MOOR_EURL, "bad URL \"%s\": %s", url ? url : "",
                        why);
    if (!h)
        return api_fail(err, -EINVAL, "no handlers");
    if (u.tls && !cl->tls) {
        struct tls_client_opts to = {
            .ca_file = cl->tls_ca,
            .insecure = cl->insecure,
        };
        char terr[256];

        cl->tls = tls_client_new(&to, terr, sizeof(terr));
        if (!cl->tls)
            return api_fail(err, MOOR_ETLS, "TLS: %s", terr);
    }
    a = handlers_get(cl, h);
    if (!a)
        return api_fail(err, -ENOMEM, "out of memory");
    memset(&t, 0, sizeof(t));
    t.addr = (const struct sockaddr *)&u.addr;
    t.addrlen = u.addrlen;
    t.host = u.host;
    t.path = u.path;
    t.tls = u.tls ? cl->tls : NULL;
    t.tls_name = u.name;
    if (!ws_client_connect(cl->ws, &t, &a->h, user, &e)) {
        handlers_put(a);
        return api_fail(err, e, "cannot connect to %s: %s", url,
                        moor_strerror(e));
    }
    return 0;
}

MOOR_API long moor_client_open(const struct moor_client *cl)
{
    return (long)cl->set.stats.open;
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

MOOR_API void moor_client_free(struct moor_client *cl)
{
    if (!cl)
        return;
    api_loop_remove_client(cl->ml, cl);
    conn_set_each(&cl->set, close_one, NULL);
    ws_client_free(cl->ws);
    conn_set_fini(&cl->set);
    tls_ctx_free(cl->tls);
    while (cl->handlers) {
        struct api_handlers *a = cl->handlers;
        cl->handlers = a->next;
        mem_free(MEM_CONFIG, a);
    }
    api_strfree(cl->tls_ca);
    mem_free(MEM_CONFIG, cl);
}
