/*
 * api_loop.c - struct moor_loop: one event loop that servers and clients
 * share, run by moor_loop_run() or driven from a host's own loop through
 * moor_loop_fd(), moor_loop_timeout() and moor_loop_run_once().
 *
 * Keeps: the only cross-thread calls (moor_loop_stop, moor_server_stop)
 * set an atomic flag and wake the loop (eventfd); the flags are read on
 * the loop's thread, in its wake callback. "Nothing is left" means every
 * server has finished its shutdown and no client has a connection open.
 */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "http_client.h"
#include "mem.h"
#include "util.h"

static void loop_defaults(void *p, size_t size)
{
    struct moor_loop_options d = {
        .size = sizeof(d),
        .read_buffer = KiB(64),
        .mem_trim_interval_ms = 1000,
        .mem_trim_threshold = MiB(2),
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_loop_options_init_(struct moor_loop_options *o, size_t size)
{
    loop_defaults(o, size);
}

/* Servers not yet done plus clients with a connection open. */
static int alive(const struct moor_loop *ml)
{
    int n = 0;

    for (struct moor_server *s = ml->servers; s; s = s->next)
        n += !server_stopped(s->srv);
    for (struct moor_client *cl = ml->clients; cl; cl = *api_client_next(cl))
        n += api_client_busy(cl);
    for (struct moor_http_client *hc = ml->http_clients; hc;
         hc = *http_client_next(hc))
        n += http_client_busy(hc);
    return n;
}

/* On the loop's thread after moor_loop_stop() or moor_server_stop(). */
static void on_wake(struct loop *l, void *arg)
{
    struct moor_loop *ml = arg;

    for (struct moor_server *s = ml->servers; s; s = s->next)
        if (atomic_exchange(&s->stop_asked, false))
            server_shutdown(s->srv);
    if (atomic_exchange(&ml->stop_asked, false))
        loop_stop(l);
}

/* After every iteration of moor_loop_run(): stop once nothing is left. */
static void on_hook(struct loop_hook *h)
{
    struct moor_loop *ml = container_of(h, struct moor_loop, hook);

    if (ml->running && !alive(ml))
        loop_stop(ml->loop);
}

MOOR_API struct moor_loop *moor_loop_new(const struct moor_loop_options *o,
                                         struct moor_error *err)
{
    struct moor_loop_options lo;
    struct moor_loop *ml;

    if (api_options(&lo, sizeof(lo), o, loop_defaults, "moor_loop_options",
                    err) < 0)
        return NULL;
    ml = api_calloc(MEM_LOOP, sizeof(*ml), err);
    if (!ml)
        return NULL;
    ml->loop = loop_new(lo.read_buffer ? lo.read_buffer : KiB(64));
    if (!ml->loop) {
        api_fail(err, -ENOMEM, "cannot create the event loop");
        mem_free(MEM_LOOP, ml);
        return NULL;
    }
    atomic_init(&ml->stop_asked, false);
    loop_on_wake(ml->loop, on_wake, ml);
    ml->hook.fn = on_hook;
    loop_add_hook(ml->loop, &ml->hook);
    loop_set_trim(ml->loop, lo.mem_trim_interval_ms, lo.mem_trim_threshold);
    return ml;
}

MOOR_API int moor_loop_run(struct moor_loop *ml)
{
    int rc;

    if (!alive(ml))
        return 0;
    ml->running = true;
    rc = loop_run(ml->loop);
    ml->running = false;
    return rc;
}

MOOR_API int moor_loop_run_once(struct moor_loop *ml, int timeout_ms)
{
    int rc = loop_run_once(ml->loop, timeout_ms);

    return rc < 0 ? rc : alive(ml) > 0;
}

MOOR_API int moor_loop_fd(const struct moor_loop *ml)
{
    return loop_fd(ml->loop);
}

MOOR_API int moor_loop_timeout(const struct moor_loop *ml)
{
    return loop_timeout(ml->loop);
}

MOOR_API void moor_loop_stop(struct moor_loop *ml)
{
    atomic_store(&ml->stop_asked, true);
    loop_wake(ml->loop);
}

MOOR_API void moor_loop_free(struct moor_loop *ml)
{
    if (!ml)
        return;
    if (!ml->borrowed)
        loop_free(ml->loop);
    mem_free(MEM_LOOP, ml);
}

struct moor_loop *api_loop_borrow(struct loop *l)
{
    struct moor_loop *ml = mem_calloc(MEM_LOOP, 1, sizeof(*ml));

    if (!ml)
        return NULL;
    ml->loop = l;
    ml->borrowed = true;
    atomic_init(&ml->stop_asked, false);
    return ml;
}

/* The check of on_hook must come after the hooks of everything on the
 * loop (a server learns it is done in its own hook, a conn set frees its
 * closed conns in its), so it moves to the end whenever something new
 * has added its hooks. */
static void hook_last(struct moor_loop *ml)
{
    if (ml->borrowed) /* no hook: the owner runs the loop */
        return;
    loop_remove_hook(ml->loop, &ml->hook);
    loop_add_hook(ml->loop, &ml->hook);
}

void api_loop_add_server(struct moor_loop *ml, struct moor_server *s)
{
    s->next = ml->servers;
    ml->servers = s;
    hook_last(ml);
}

void api_loop_remove_server(struct moor_loop *ml, struct moor_server *s)
{
    for (struct moor_server **pp = &ml->servers; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

void api_loop_add_client(struct moor_loop *ml, struct moor_client *cl)
{
    *api_client_next(cl) = ml->clients;
    ml->clients = cl;
    hook_last(ml);
}

void api_loop_remove_client(struct moor_loop *ml, struct moor_client *cl)
{
    for (struct moor_client **pp = &ml->clients; *pp; pp = api_client_next(*pp))
        if (*pp == cl) {
            *pp = *api_client_next(cl);
            return;
        }
}

void api_loop_add_http_client(struct moor_loop *ml, struct moor_http_client *cl)
{
    *http_client_next(cl) = ml->http_clients;
    ml->http_clients = cl;
    hook_last(ml);
}

void api_loop_remove_http_client(struct moor_loop *ml,
                                 struct moor_http_client *cl)
{
    for (struct moor_http_client **pp = &ml->http_clients; *pp;
         pp = http_client_next(*pp))
        if (*pp == cl) {
            *pp = *http_client_next(cl);
            return;
        }
}
