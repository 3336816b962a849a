/*
 * ws_client.h - WebSocket client connections (RFC 6455 section 4.1) on a
 * conn set: a non-blocking connect under a deadline, the opening
 * handshake (a random Sec-WebSocket-Key; the 101 answer and its
 * Sec-WebSocket-Accept checked), then the same message handling as the
 * server's connections (ws_server.c) with the client's rules: every frame
 * sent is masked with a fresh random key, every frame received must be
 * unmasked.
 *
 * Sending, closing and the buffered amount use ws_send(), ws_close() and
 * ws_buffered_amount() from ws_server.h, which work on both kinds of
 * connection.
 *
 * Failures before the handshake completes (refused, timed out, a bad 101)
 * reach the handler's on_close with code 1006; ws_close_detail() then
 * says why in a few words.
 */
#ifndef MOOR_WS_CLIENT_H
#define MOOR_WS_CLIENT_H

#include <stdint.h>
#include <sys/socket.h>
#include "conn.h"
#include "ws_server.h"

struct ws_client;

struct tls_ctx;

struct ws_client_opts {
    uint64_t max_message;        /* bigger incoming message: close 1009 */
    uint32_t connect_timeout_ms; /* TCP connect + handshake, together */
    uint32_t ping_interval_ms;   /* ping after this much silence */
    uint32_t pong_timeout_ms;    /* then close if nothing arrives */
    uint32_t close_timeout_ms;   /* wait for the server's close reply */
};

/* Where to connect. Every pointer is borrowed for the call only, except
 * protocols, which must stay valid until on_open or on_close. */
struct ws_target {
    const struct sockaddr *addr; /* the server */
    socklen_t addrlen;
    const struct sockaddr *source; /* local address to bind, or NULL */
    socklen_t sourcelen;
    const char *host;      /* Host header, e.g. "127.0.0.1:8080" */
    struct tls_ctx *tls;   /* wss://: a client context (tls_client_new,
                              borrowed; may be freed once the conn is
                              closed), NULL: plain ws:// */
    const char *tls_name;  /* wss://: the server's name, sent as SNI and
                              checked against its certificate */
    const char *path;      /* request target, e.g. "/echo" */
    const char *origin;    /* Origin header, or NULL for none */
    const char *protocols; /* Sec-WebSocket-Protocol offer, or NULL */
};

/* Returns a client for conns of set, or NULL. Caller frees with
 * ws_client_free() after every conn it made is closed. */
struct ws_client *ws_client_new(struct conn_set *set,
                                const struct ws_client_opts *o);
void ws_client_free(struct ws_client *cl);

/* Starts connecting to t. Handlers h are borrowed and must outlive the
 * conn; user becomes ws_user(). h->on_open runs once the handshake
 * succeeded; if anything fails before that, h->on_close runs with 1006.
 * Returns the conn, or NULL with *err = -errno when nothing was started
 * (socket, bind or connect failed at once: -EADDRNOTAVAIL, -EMFILE,
 * -ENOMEM, ...); then no callback runs. */
struct conn *ws_client_connect(struct ws_client *cl, const struct ws_target *t,
                               const struct ws_handlers *h, void *user,
                               int *err);

/* During on_close (of a client or a server conn): why the conn ended, in
 * a few words ("connection refused", "handshake: HTTP 404", "pong
 * timeout", "connection closed by peer"). Static storage or the conn's. */
const char *ws_close_detail(const struct conn *c);

#endif
