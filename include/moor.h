/*
 * moor.h - the public API of libmoor. The only installed header.
 *
 * Contract, for every function here:
 *  - Errors are returned as negative errno values; the global errno is
 *    never part of the contract.
 *  - Ownership words: "borrows" (the caller keeps it), "takes" (ownership
 *    moves in), "returns a new reference", "caller frees with ...".
 *  - Every type is opaque; its layout is not part of the contract.
 *
 * What is here: a WebSocket server in a page of C (see
 * examples/echo_server.c), a WebSocket client (examples/ws_client.c), and
 * moor's memory accounting. Threads: a
 * moor_server runs on the thread that calls moor_server_run(); every
 * callback runs on that thread; no function here may be called from
 * another thread except moor_server_stop(). The same holds for a
 * moor_client, moor_client_run() and moor_client_stop().
 */
#ifndef MOOR_H
#define MOOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOOR_API __attribute__((visibility("default")))

#include <stddef.h>

struct moor_server; /* an HTTP + WebSocket server on one event loop */
struct moor_ws;     /* one WebSocket connection */

/* Server settings. Fill with moor_server_options_init() (the defaults of
 * `moor serve`), then change what you need. Strings are borrowed and must
 * outlive the server. */
struct moor_server_options {
    const char *listen;           /* "127.0.0.1:8080"; port 0 = any */
    unsigned max_conns;           /* more are answered 503 */
    uint64_t max_message;         /* bigger WebSocket message: close 1009 */
    uint64_t queue_limit;         /* outbound bytes per connection */
    uint32_t ping_interval_ms;    /* ping after this much silence */
    uint32_t pong_timeout_ms;     /* then close if nothing arrives */
    uint32_t write_timeout_ms;    /* close a peer that takes no bytes */
    uint32_t idle_timeout_ms;     /* HTTP keep-alive */
    uint32_t shutdown_timeout_ms; /* graceful drain at most this long */
    const char *allowed_origins;  /* NULL/"" = any; else "https://a,..." */
    /* A WebSocket message begun (a frame header, a first fragment) must
     * be whole within this long, or the connection closes; pings and
     * trickled bytes do not extend it. 0 = no limit. */
    uint32_t message_timeout_ms;
};

/* Callbacks of a WebSocket route. Each is optional; arg is passed back. */
struct moor_ws_handlers {
    void (*on_open)(struct moor_ws *ws, void *arg);
    /* A complete message; data is valid only during the call. */
    void (*on_message)(struct moor_ws *ws, const void *data, size_t len,
                       int is_text, void *arg);
    /* The outbound queue drained after moor_ws_send() reported
     * backpressure: a good moment to send more. */
    void (*on_drain)(struct moor_ws *ws, void *arg);
    /* Once per opened connection: the peer's close frame arrived (code
     * is its code, 1005 if it sent none; moor answers it and closes), or
     * the connection ended without one (1006). moor_ws_error() says why.
     * Sends after this are dropped; ws is valid during the call and never
     * after. */
    void (*on_close)(struct moor_ws *ws, int code, void *arg);
    void *arg;
    /* Nonzero for a 1:1 stream (echo, request/response): moor_ws_send()
     * never drops; over the queue limit it queues, reports backpressure,
     * and moor stops reading that connection until its queue drains (a
     * client connection never stops reading: the server pushes back).
     * Zero (fan-out): a send into a full queue is dropped. */
    int pause_reading_on_backpressure;
};

enum moor_send_result {
    MOOR_SEND_OK = 0,           /* queued; will go out this loop turn */
    MOOR_SEND_BACKPRESSURE = 1, /* queued, but the queue is over its limit:
                                   wait for on_drain before sending more */
    MOOR_SEND_DROPPED = 2,      /* not queued (queue full, or closing) */
};

MOOR_API void moor_server_options_init(struct moor_server_options *o);
/* Binds the listener. Returns a new server (caller frees with
 * moor_server_free()), or NULL with a one-line reason in err. */
MOOR_API struct moor_server *
moor_server_new(const struct moor_server_options *o, char *err, size_t errlen);
/* Serves WebSocket upgrades on path (borrowed). Returns 0 or -ENOSPC. */
MOOR_API int moor_server_ws(struct moor_server *s, const char *path,
                            const struct moor_ws_handlers *h);
/* The port the server listens on (useful with port 0). */
MOOR_API int moor_server_port(const struct moor_server *s);
/* Runs until SIGINT, SIGTERM or moor_server_stop(), then drains (close
 * 1001 to every WebSocket) within shutdown_timeout. Returns 0 or
 * -errno. */
MOOR_API int moor_server_run(struct moor_server *s);
/* Asks a running server to drain and stop. */
MOOR_API void moor_server_stop(struct moor_server *s);
MOOR_API void moor_server_free(struct moor_server *s);

/* Sends one message; copies data once into a frame. */
MOOR_API enum moor_send_result
moor_ws_send(struct moor_ws *ws, const void *data, size_t len, int is_text);
/* Bytes queued for ws and not yet written. */
MOOR_API size_t moor_ws_buffered_amount(const struct moor_ws *ws);
/* Starts the close handshake (reason may be NULL). */
MOOR_API void moor_ws_close(struct moor_ws *ws, int code, const char *reason);
/* Per-connection user data (NULL until set). */
MOOR_API void moor_ws_set_user(struct moor_ws *ws, void *user);
MOOR_API void *moor_ws_user(const struct moor_ws *ws);

/* ---- the client ----------------------------------------------------- */

struct moor_client; /* WebSocket client connections on one event loop */

/* Client settings. Fill with moor_client_options_init(), then change what
 * you need. */
struct moor_client_options {
    uint64_t max_message;        /* bigger incoming message: close 1009 */
    uint64_t queue_limit;        /* outbound bytes per connection */
    uint32_t connect_timeout_ms; /* TCP connect + handshake, together */
    uint32_t ping_interval_ms;   /* ping after this much silence */
    uint32_t pong_timeout_ms;    /* then close if nothing arrives */
    uint32_t write_timeout_ms;   /* close a server that takes no bytes */
    uint32_t close_timeout_ms;   /* wait for the server's close reply */
    /* wss:// URLs. The server's certificate is verified, and its name
     * checked against the URL's host, unless insecure is set (tests with
     * self-signed certificates only). */
    const char *tls_ca; /* PEM file of CAs to trust (copied); NULL: the
                           system's store */
    int insecure;       /* 1: no certificate or name check at all */
};

MOOR_API void moor_client_options_init(struct moor_client_options *o);
/* Returns a new client (caller frees with moor_client_free()), or NULL
 * with a one-line reason in err. */
MOOR_API struct moor_client *
moor_client_new(const struct moor_client_options *o, char *err, size_t errlen);
/* Opens a WebSocket to url, "ws://HOST[:PORT][/PATH]" or "wss://..." (TLS;
 * HOST an IP address or "localhost"; PORT defaults to 80, 443 for wss).
 * Progress is reported through h (borrowed; must outlive the connection):
 * on_open once the handshake succeeded, or on_close with code 1006 if the
 * connect or the handshake failed (moor_ws_error() says why). user becomes
 * moor_ws_user(). Returns 0, or -errno with a one-line reason in err: -EINVAL
 * (bad URL), -EMFILE, -ENOMEM, ... (then no callback runs). */
MOOR_API int moor_client_connect(struct moor_client *cl, const char *url,
                                 const struct moor_ws_handlers *h, void *user,
                                 char *err, size_t errlen);
/* Runs the client's loop until moor_client_stop() or until no connection
 * is left. Returns 0 or -errno. */
MOOR_API int moor_client_run(struct moor_client *cl);
/* Makes moor_client_run() return (from a callback on the loop thread, or
 * from any other thread). Open connections stay open. */
MOOR_API void moor_client_stop(struct moor_client *cl);
/* Closes every connection still open (on_close runs with 1006) and frees
 * the client. */
MOOR_API void moor_client_free(struct moor_client *cl);

/* During on_close: why the connection ended, in a few words ("connection
 * refused", "handshake: HTTP 404", "pong timeout", "closed by peer"). */
MOOR_API const char *moor_ws_error(const struct moor_ws *ws);

/* Returns the library version, e.g. "0.1.0". Static storage. */
MOOR_API const char *moor_version(void);

/* Live bytes allocated by moor (all tags, all threads). After every moor
 * object is freed, this is 0. */
MOOR_API int64_t moor_mem_live_bytes(void);

/* Writes the memory accounting as JSON (live/total per tag) into out,
 * NUL-terminated, truncated to cap. Returns the length the full document
 * needs (excluding the NUL), or -ENOMEM. */
MOOR_API long moor_mem_json(char *out, unsigned long cap);

#ifdef __cplusplus
}
#endif

#endif
