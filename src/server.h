/*
 * server.h - a moor server on a loop it borrows: its listener,
 * connections, HTTP routes, WebSocket server and graceful shutdown.
 * Several servers (and clients) may share one loop; nothing here is
 * global, and nothing here touches signals.
 *
 * Shutdown (server_shutdown(): `moor serve` calls it on SIGTERM or
 * SIGINT): stop accepting, let requests in flight finish, close idle
 * keep-alive connections, and finish when none is left or when
 * shutdown_timeout passes (the rest are closed, reason "shutdown"); then
 * on_stopped runs.
 */
#ifndef MOOR_SERVER_H
#define MOOR_SERVER_H

#include <stdint.h>
#include <stdbool.h>
#include "conn.h"
#include "listen.h"
#include "loop.h"
#include "http_server.h"
#include "metrics.h"
#include "ws_server.h"

struct server_opts {
    const char *host; /* NULL: no listener of its own */
    uint16_t port;
    struct listen_opts listen;
    struct conn_limits conn;
    struct http_server_opts http;
    struct ws_server_opts ws;
    uint32_t shutdown_timeout_ms;
};

struct server;

/* Binds the listener on l (borrowed: it must outlive the server).
 * Returns a new server or NULL with *err = -errno and a one-line reason
 * in errmsg. Caller frees with server_free(). */
struct server *server_new(struct loop *l, const struct server_opts *o, int *err,
                          char *errmsg, size_t errlen);
/* Begins graceful shutdown. Loop thread only; a second call is a no-op. */
void server_shutdown(struct server *s);
/* True once a shutdown has finished (on_stopped has run). */
bool server_stopped(const struct server *s);
/* Closes whatever is still open and frees the server; the loop lives on.
 * Not from inside a loop hook. */
void server_free(struct server *s);
/* SIGHUP: the settings of o that may change on a running server: the
 * write and message timeouts, the HTTP and WebSocket timeouts, the
 * shutdown timeout, and the listener's --max-conns and accept rate. Each takes
 * effect where it is next read; the rest of o is ignored. */
void server_set_live(struct server *s, const struct server_opts *o);

uint16_t server_port(const struct server *s);
struct http_server *server_http(struct server *s);
struct ws_server *server_ws(struct server *s);
struct loop *server_loop(struct server *s);
struct conn_set *server_conns(struct server *s);
/* fn(arg) runs when graceful shutdown begins (after the built-in
 * protocols start draining): for protocols added from outside. */
void server_on_shutdown(struct server *s, void (*fn)(void *arg), void *arg);
/* fn(arg) runs once the shutdown is done: nothing of the server is
 * open any more. */
void server_on_stopped(struct server *s, void (*fn)(void *arg), void *arg);
/* Fills v with every loop's counters, for metrics_render(). */
void server_metrics_view(const struct server *s, struct metrics_view *v);

#endif
