/*
 * server.h - a running moor server: its loop, listener, connections,
 * HTTP routes, signals and graceful shutdown.
 *
 * Today one loop; DESIGN's one-loop-per-core comes as an array of these
 * per-loop parts (struct server_loop) with SO_REUSEPORT listeners, which
 * is why nothing here is global.
 *
 * Shutdown (SIGTERM or SIGINT): stop accepting, let requests in flight
 * finish, close idle keep-alive connections, and stop when none is left or
 * when shutdown_timeout passes (the rest are closed, reason "shutdown").
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
    const char *host;
    uint16_t port;
    struct listen_opts listen;
    struct conn_limits conn;
    struct http_server_opts http;
    struct ws_server_opts ws;
    size_t read_buffer;
    uint32_t shutdown_timeout_ms;
    /* Giving freed heap back (mem.h, struct mem_trim): every
     * trim_interval_ms the loop compares VmRSS with the live bytes and
     * trims when trim_threshold bytes more than usual are held. An interval
     * of 0 turns it off. */
    uint32_t trim_interval_ms;
    uint64_t trim_threshold;
};

struct server;

/* Creates the loop, binds the listener, sets up signal handling (SIGTERM,
 * SIGINT: graceful shutdown; SIGPIPE ignored). Returns a new server or
 * NULL with *err = -errno and a one-line reason in errmsg. Caller frees
 * with server_free(). */
struct server *server_new(const struct server_opts *o, int *err, char *errmsg,
                          size_t errlen);
/* Runs until shutdown completes. Returns 0, or -errno from the loop. */
int server_run(struct server *s);
/* Begins graceful shutdown (what SIGTERM does). Loop thread only. */
void server_shutdown(struct server *s);
void server_free(struct server *s);

uint16_t server_port(const struct server *s);
struct http_server *server_http(struct server *s);
struct ws_server *server_ws(struct server *s);
struct loop *server_loop(struct server *s);
struct conn_set *server_conns(struct server *s);
/* fn(arg) runs when graceful shutdown begins (after the built-in
 * protocols start draining): for protocols added from outside. */
void server_on_shutdown(struct server *s, void (*fn)(void *arg), void *arg);
/* fn(arg) runs on the loop when the process gets SIGHUP (certificate
 * reload); without one, SIGHUP is logged and ignored. */
void server_on_reload(struct server *s, void (*fn)(void *arg), void *arg);
/* Fills v with every loop's counters, for metrics_render(). */
void server_metrics_view(const struct server *s, struct metrics_view *v);

#endif
