/*
 * api.h - what the files behind include/moor.h share: the structs of
 * struct moor_loop and struct moor_server, the error filler, and the
 * sized-options copy that lets a program built against an older moor.h
 * run on this library.
 *
 * The public functions live by topic: api.c (versions, errors, memory),
 * api_loop.c, api_server.c (listeners, WebSocket and HTTP routes, TLS,
 * metrics), api_pubsub.c and api_client.c. Nothing else in the library
 * is visible outside it (built with -fvisibility=hidden).
 */
#ifndef MOOR_API_H
#define MOOR_API_H

#include <stdatomic.h>
#include <stdbool.h>

#include "moor.h"
#include "listen.h"
#include "loop.h"
#include "mem.h"
#include "push.h"
#include "server.h"
#include "tls.h"

struct moor_loop {
    struct loop *loop;
    struct loop_hook hook;
    struct moor_server *servers;           /* every server on the loop */
    struct moor_client *clients;           /* every client on the loop */
    struct moor_http_client *http_clients; /* every HTTP client */
    atomic_bool stop_asked;                /* moor_loop_stop(), any thread */
    bool running;                          /* inside moor_loop_run() */
    bool borrowed; /* api_loop_borrow(): moor_loop_free() leaves the loop */
};

/* A moor_loop around a loop that is not its own (`moor serve`'s, for the
 * HTTP client of the auth callback): no hook, no wake-up; its
 * moor_loop_free() frees the wrapper only. NULL: no memory. */
struct moor_loop *api_loop_borrow(struct loop *l);

struct moor_tls {
    struct tls_ctx *ctx;
    char *cert_file, *key_file; /* copies, for moor_tls_reload() */
    uint32_t handshake_timeout_ms;
};

/* A listener beside the server's plain one: TLS (HTTP) or framed TCP. */
#define API_MAX_LISTENERS 3 /* with the plain one: METRICS_MAX_LISTENERS */

struct api_listener {
    struct listener *ls;
    struct moor_server *owner;
    struct moor_tls *tls; /* NULL: plain framed TCP */
    bool tcp;             /* framed TCP (pub/sub), else HTTP over TLS */
};

struct api_route; /* api_server.c */

#define API_MAX_METRICS_CLIENTS 8

struct moor_server {
    struct moor_loop *ml;
    struct moor_server *next; /* ml's list */
    struct server *srv;
    struct listen_opts listen; /* for the extra listeners */
    struct api_listener extra[API_MAX_LISTENERS];
    unsigned n_extra;
    struct api_route *routes; /* owned: paths and handlers are copies */
    struct moor_pubsub *ps;   /* or NULL */
    char *allowed_origins;    /* copy */
    uint64_t max_message;
    uint32_t header_timeout_ms;
    uint32_t close_timeout_ms;
    atomic_bool stop_asked; /* moor_server_stop(), any thread */
    /* HTTP clients whose figures this server's /metrics pages show
     * (moor_server_metrics_http_client; borrowed). */
    struct moor_http_client *metrics_clients[API_MAX_METRICS_CLIENTS];
    unsigned n_metrics_clients;
};

/* Fills err (may be NULL) and returns code. */
int api_fail(struct moor_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A zeroed object of size bytes under tag (mem_calloc, counted at the
 * caller's line for --mem-trace), or NULL with err set to -ENOMEM. */
#define api_calloc(tag, size, err)                                             \
    api_calloc_at((tag), (size), (err), __FILE__, __LINE__)
void *api_calloc_at(enum mem_tag tag, size_t size, struct moor_error *err,
                    const char *file, int line);

/* Copies the caller's options over the library's defaults: *dst is
 * filled by init(dst, dst_size), then the first src->size bytes of src
 * (the fields the caller's moor.h had) are copied over it. Returns 0 or
 * MOOR_EOPTIONS (src is NULL or not filled by its _init(), or comes
 * from a newer moor.h than this library). */
int api_options(void *dst, size_t dst_size, const void *src,
                void (*init)(void *o, size_t size), const char *what,
                struct moor_error *err);
/* For the _init_() functions: writes the defaults in full (d, of the
 * library's size) into the caller's o, at most size bytes, and sets
 * o->size to size. */
void api_options_init(void *o, size_t size, const void *d, size_t d_size);

/* Splits an address for a listener. Returns 0 or MOOR_EADDR (err says
 * why, naming `what`). */
int api_addr(const char *addr, char *host, size_t hostlen, uint16_t *port,
             const char *what, struct moor_error *err);

/* A copy of s under MEM_CONFIG (NULL for NULL), freed with api_strfree. */
char *api_strdup(const char *s);
void api_strfree(char *s);

/* api_loop.c: link and unlink on the loop's lists. */
void api_loop_add_server(struct moor_loop *ml, struct moor_server *s);
void api_loop_remove_server(struct moor_loop *ml, struct moor_server *s);
void api_loop_add_client(struct moor_loop *ml, struct moor_client *cl);
void api_loop_remove_client(struct moor_loop *ml, struct moor_client *cl);
void api_loop_add_http_client(struct moor_loop *ml,
                              struct moor_http_client *cl);
void api_loop_remove_http_client(struct moor_loop *ml,
                                 struct moor_http_client *cl);
/* api_client.c: the list link of a client, and whether it has a
 * connection open. */
struct moor_client **api_client_next(struct moor_client *cl);
bool api_client_busy(const struct moor_client *cl);

/* api_server.c: adds an extra listener on addr to s (TLS HTTP, or framed
 * TCP when tcp). Returns 0 or a negative code (err says why). */
int api_server_listen(struct moor_server *s, const char *addr,
                      struct moor_tls *t, bool tcp, const char *what,
                      struct moor_error *err);
/* The port of the nth extra listener of one kind (TCP or TLS HTTP), or
 * -ENOENT. */
int api_server_listener_port(const struct moor_server *s, bool tcp, unsigned n);
/* Points h's trampolines at user (borrowed: it must outlive every conn
 * using h). */
struct ws_handlers;
void api_ws_handlers_init(struct ws_handlers *h,
                          const struct moor_ws_handlers *user);

/* api_pubsub.c: the gateway's part of a shutdown and of freeing. */
void api_pubsub_drain(struct moor_pubsub *ps);
void api_pubsub_free(struct moor_pubsub *ps);
struct push *api_pubsub_push(struct moor_pubsub *ps);

#endif
