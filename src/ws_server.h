/*
 * ws_server.h - WebSocket connections over conn: the upgrade, message
 * assembly, ping/pong liveness, the close handshake, graceful drain, and
 * sending with backpressure.
 *
 * One struct ws_server per loop. A connection's WebSocket state lives in
 * its conn's ext area (no allocation per connection while idle); a
 * message arriving in pieces is assembled in a buffer that grows as its
 * bytes actually arrive (never by the length the peer claims) and is freed
 * when the message is delivered.
 *
 * Deadlines: every inbound frame re-arms the ping deadline
 * (ping_interval); when it passes a ping goes out and the peer has
 * pong_timeout to send anything at all, or the conn is closed
 * (pong_timeout). TCP_USER_TIMEOUT is set to the same total, so a peer
 * that vanished with bytes queued is noticed as fast. After moor sends a
 * close frame, the peer has close_timeout to answer it.
 */
#ifndef MOOR_WS_SERVER_H
#define MOOR_WS_SERVER_H

#include <stdint.h>
#include <stdbool.h>
#include "conn.h"
#include "http_server.h"
#include "ws.h"

struct ws_server;
struct ws_handlers;

/* Per-connection state in the conn's ext area (server and client): 32
 * bytes. The server and the handlers are the conn's protocol context
 * (conn_ctx(): a struct ws_binding), not pointers here. */
struct ws_conn {
    struct abuf *abuf;   /* message being assembled, or NULL */
    void *user;          /* the application's per-connection data */
    struct ws_pstate ps; /* the frame parser's state */
    uint8_t phase : 2;   /* enum ws_phase (ws_server.c) */
    uint8_t client : 1;  /* we are the client: mask what we send */
    uint8_t text : 1;    /* type of the message being assembled */
    uint8_t opened : 1;  /* on_open ran and on_close is still owed */
    uint8_t unused;
};

/* A (server, handlers) pair: the context of WebSocket conns. */
struct ws_binding {
    struct ws_server *srv;
    const struct ws_handlers *h;
};

struct ws_server_opts {
    uint64_t max_message;
    uint32_t ping_interval_ms;
    uint32_t pong_timeout_ms;
    uint32_t close_timeout_ms;
    uint32_t drain_spread_ms;
    const char *allowed_origins; /* borrowed; NULL or "" = any */
};

/* What the application is told. Every callback is optional. The conn
 * passed is valid for the duration of the call. */
struct ws_handlers {
    void (*on_open)(struct conn *c, void *arg);
    /* A complete message. data is valid only during the call. */
    void (*on_message)(struct conn *c, const uint8_t *data, size_t len,
                       bool text, void *arg);
    /* The conn's outbound queue has drained (after backpressure). */
    void (*on_drain)(struct conn *c, void *arg);
    /* Once per conn that was opened: when the peer's close frame arrives
     * (code is its code, 1005 if none), or when the conn ends without
     * one (1006). */
    void (*on_close)(struct conn *c, uint16_t code, void *arg);
    void *arg;
    /* A 1:1 stream (echo, a request/response protocol): ws_send() never
     * drops; over the queue limit it still queues, reports
     * WS_SEND_BACKPRESSURE, and the conn's reading pauses until the queue
     * drains, so TCP pushes back on the peer. Otherwise (fan-out) a send
     * into a full queue is dropped. */
    bool pause_on_backpressure;
};

enum ws_send_result {
    WS_SEND_OK = 0,           /* queued; the queue is under its limit */
    WS_SEND_BACKPRESSURE = 1, /* queued; the queue is over its limit */
    WS_SEND_DROPPED = 2,      /* not queued: queue full, or closing */
};

/* Returns a new server for conns of set, or NULL. Caller frees with
 * ws_server_free() (after every conn is closed). */
struct ws_server *ws_server_new(struct conn_set *set,
                                const struct ws_server_opts *o);
/* SIGHUP: new ping interval, pong, close and drain timeouts of o, read
 * when each is next armed. */
void ws_server_set_timeouts(struct ws_server *ws,
                            const struct ws_server_opts *o);
void ws_server_free(struct ws_server *ws);

/* Bytes of conn ext area a WebSocket conn needs (http_server reserves the
 * larger of this and its own). */
size_t ws_conn_ext_size(void);

/*
 * Answers an upgrade request (call from an HTTP route handler): checks the
 * handshake and origin, answers 101 and switches the conn to WebSocket,
 * with handlers h (borrowed; must outlive the conn). On a bad handshake
 * answers the precise status (400, 403, 405, 426) instead.
 * Return value: 0 upgraded, or the HTTP status answered.
 */
int ws_server_upgrade(struct ws_server *ws, struct http_exchange *ex,
                      const struct ws_handlers *h);

/* The binding of (ws, h), made on first use (at most CONN_MAX_PROTOS per
 * server). NULL when the table is full. */
struct ws_binding *ws_server_bind(struct ws_server *ws,
                                  const struct ws_handlers *h);
/* Makes c an open WebSocket conn (after the handshake, either side):
 * switches its protocol with context b, arms the ping deadline, runs
 * h->on_open. A client conn keeps the user pointer already in its
 * ws_conn. */
void ws_conn_open(struct ws_binding *b, struct conn *c, bool client);
/* Writes a fresh random mask key (CSPRNG). Returns false if OpenSSL
 * failed. */
bool ws_server_mask_key(struct ws_server *ws, uint8_t key[4]);

/* Sends one message (text or binary). Copies data once into a frame.
 * Returns a ws_send_result. */
enum ws_send_result ws_send(struct conn *c, const void *data, size_t len,
                            bool text);
/* Starts the close handshake with code and reason (reason may be NULL).
 * Returns 0, or -EALREADY if c is closing (or not a WebSocket). */
int ws_close(struct conn *c, uint16_t code, const char *reason);
/* Closes at once, for a peer that fell behind: drops every queued message
 * not yet started, sends a close frame with code and reason, and closes
 * the conn with `why` once it is out (or after close_timeout). */
void ws_close_purge(struct conn *c, uint16_t code, const char *reason,
                    enum close_reason why);
/* Bytes queued and not yet written (the buffered amount). */
static inline uint32_t ws_buffered_amount(const struct conn *c)
{
    return conn_queued_bytes(c);
}
/* Per-connection user data (NULL until set). */
void *ws_user(const struct conn *c);
void ws_set_user(struct conn *c, void *user);
/* True if our close frame is out (we started the close handshake, or
 * answered the peer's). */
bool ws_close_sent(const struct conn *c);
/* True if c is an open WebSocket conn (server or client side). */
bool ws_is_websocket(const struct conn *c);

/* Graceful drain: every open WebSocket gets close 1001 at a random moment
 * within drain_spread, so clients do not all reconnect at once. */
void ws_server_drain(struct ws_server *ws);

#endif
