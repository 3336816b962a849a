/*
 * moor.h - the public API of libmoor. The only installed header.
 *
 * What is here: one event loop (moor_loop) that any number of servers and
 * clients run on, together, on one thread; a server with WebSocket routes,
 * plain HTTP routes, TLS listeners, the pub/sub gateway of `moor serve`
 * (WebSocket, Server-Sent Events, HTTP POST and framed TCP), and its
 * metrics and /debug pages; a WebSocket client; moor's memory accounting.
 * examples/echo_server.c, examples/ws_client.c and examples/push_gateway.c
 * show each in a page of C.
 *
 * Contract, for every function here:
 *  - Errors. A function that can fail returns a negative errno value
 *    (-EINVAL, -ENOMEM, ...) or one of moor's own codes (MOOR_E*, below),
 *    and 0 or a count on success. A function that returns a pointer
 *    returns NULL on failure and, if its err argument is not NULL, fills
 *    it: err->code (the same negative value) and err->message (one line
 *    for a person: "cannot listen on 127.0.0.1:80: Permission denied").
 *    moor_strerror() names any code. The global errno is never part of
 *    the contract.
 *  - Ownership words: "borrows" (the caller keeps it, and it must stay
 *    valid as long as stated), "copies" (moor keeps its own copy), "takes"
 *    (ownership moves in), "caller frees with ...".
 *  - Every type is opaque except the options structs, which can grow:
 *    fill one with its _init() macro (it records the struct's size as
 *    compiled into your program), then change what you need. A program
 *    built against an older moor.h keeps working with a newer libmoor: the
 *    fields it did not know get their defaults. A size the library does
 *    not know (a struct not filled by _init(), or from a newer moor.h)
 *    is MOOR_EOPTIONS. Wherever a function takes options, NULL means the
 *    defaults. Every _free() accepts NULL.
 *  - Threads: a loop and everything on it belong to the thread that runs
 *    the loop; every callback runs on that thread. From another thread,
 *    only moor_loop_stop() and moor_server_stop() may be called; both are
 *    an atomic store and an eventfd write, so a signal handler may call
 *    them too.
 *  - Process-wide state: libmoor installs no signal handler and changes
 *    no signal mask (every socket write passes MSG_NOSIGNAL, TLS
 *    included), so a host's SIGPIPE, SIGTERM and SIGHUP stay its own:
 *    wire them to moor_server_stop() and moor_tls_reload(). The one
 *    process-wide setting is moor_mem_set_limit().
 */
#ifndef MOOR_H
#define MOOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MOOR_API __attribute__((visibility("default")))
#else
#define MOOR_API
#endif

/* ---- versions ---------------------------------------------------------- */

#define MOOR_VERSION_MAJOR 0
#define MOOR_VERSION_MINOR 2
#define MOOR_VERSION_PATCH 0
/* 0xMMmmpp: compare with >= (MOOR_VERSION_HEX >= 0x000200). */
#define MOOR_VERSION_HEX                                                       \
    ((MOOR_VERSION_MAJOR << 16) | (MOOR_VERSION_MINOR << 8) |                  \
     MOOR_VERSION_PATCH)

/* The version of the library actually linked, e.g. "0.2.0". Static
 * storage. */
MOOR_API const char *moor_version(void);

/* ---- errors ------------------------------------------------------------ */

/* moor's own codes, beside the negative errno values. */
enum moor_error_code {
    MOOR_EADDR = -10001,    /* bad address: expected host:port or [v6]:port */
    MOOR_EURL = -10002,     /* bad URL */
    MOOR_ETLS = -10003,     /* TLS: certificate, key or settings not usable */
    MOOR_ECLOSED = -10004,  /* the connection is closing or closed */
    MOOR_EOPTIONS = -10005, /* options struct not filled by its _init() */
    MOOR_ESTATE = -10006,   /* not allowed now (e.g. after stop) */
};

struct moor_error {
    int code;          /* negative errno or MOOR_E*; 0: no error */
    char message[256]; /* one line, no trailing newline */
};

/* A short description of err (a negative errno or a MOOR_E* code; 0 is
 * "success"). Static storage. */
MOOR_API const char *moor_strerror(int err);

/* ---- the loop ---------------------------------------------------------- */

struct moor_loop;

struct moor_loop_options {
    size_t size;        /* set by moor_loop_options_init() */
    size_t read_buffer; /* the loop's shared read buffer, bytes (64 KiB) */
    /* Giving freed heap back to the system after a burst: every
     * mem_trim_interval_ms, trim when the process holds mem_trim_threshold
     * bytes more than it uses (docs/memory.md). 0 turns it off. */
    uint32_t mem_trim_interval_ms; /* 1000 */
    uint64_t mem_trim_threshold;   /* 2 MiB */
};

MOOR_API void moor_loop_options_init_(struct moor_loop_options *o, size_t size);
#define moor_loop_options_init(o) moor_loop_options_init_((o), sizeof(*(o)))

/* o may be NULL (the defaults). Returns a new loop (caller frees with
 * moor_loop_free() after freeing everything created on it), or NULL. */
MOOR_API struct moor_loop *moor_loop_new(const struct moor_loop_options *o,
                                         struct moor_error *err);
/* Runs until moor_loop_stop(), or until nothing is left: every server
 * has finished its shutdown and no client has a connection open.
 * Returns 0 or -errno. */
MOOR_API int moor_loop_run(struct moor_loop *l);
/* One iteration: waits at most timeout_ms (0: not at all; -1: until
 * something happens) for I/O, then runs what is due. For a host that
 * owns the loop. Returns 1 while servers or client connections are left,
 * 0 when nothing is, or -errno. */
MOOR_API int moor_loop_run_once(struct moor_loop *l, int timeout_ms);
/* A file descriptor that is readable whenever moor has I/O to handle:
 * put it in your poll/epoll/libuv loop, and call moor_loop_run_once(l, 0)
 * when it is readable or when moor_loop_timeout() ms have passed. */
MOOR_API int moor_loop_fd(const struct moor_loop *l);
/* How long the host may wait before the next moor_loop_run_once(): ms
 * until moor's next deadline, 0 if work is queued, -1 if nothing is
 * timed. */
MOOR_API int moor_loop_timeout(const struct moor_loop *l);
/* Makes moor_loop_run() return after the current iteration. Safe from any
 * thread. */
MOOR_API void moor_loop_stop(struct moor_loop *l);
/* Frees the loop. Every server and client on it must be freed first. */
MOOR_API void moor_loop_free(struct moor_loop *l);

/* ---- TLS --------------------------------------------------------------- */

struct moor_tls; /* a server certificate and its settings */

struct moor_tls_options {
    size_t size;              /* set by moor_tls_options_init() */
    const char *cert_file;    /* PEM: the leaf first, then intermediates */
    const char *key_file;     /* PEM, not encrypted */
    const char *min_version;  /* "1.2" (default) or "1.3" */
    const char *ciphers;      /* TLS 1.2 list; NULL: moor's default */
    const char *ciphersuites; /* TLS 1.3 list; NULL: moor's default */
    int tickets;              /* 1: resumption tickets (default 0) */
    /* The handshake must finish within this long (10000). */
    uint32_t handshake_timeout_ms;
};

MOOR_API void moor_tls_options_init_(struct moor_tls_options *o, size_t size);
#define moor_tls_options_init(o) moor_tls_options_init_((o), sizeof(*(o)))
/* Loads the certificate and key (file names copied, for reloads).
 * Returns a new TLS context (caller frees with moor_tls_free() after
 * every server using it), or NULL (MOOR_ETLS with OpenSSL's reason). */
MOOR_API struct moor_tls *moor_tls_new(const struct moor_tls_options *o,
                                       struct moor_error *err);
/* Reads the certificate and key again from the same files: new
 * connections get them, open ones keep theirs. If anything fails the old
 * certificate stays in service. Returns 0 or MOOR_ETLS (err says why).
 * Loop thread, or any thread. Wire it to your SIGHUP. */
MOOR_API int moor_tls_reload(struct moor_tls *t, struct moor_error *err);
MOOR_API void moor_tls_free(struct moor_tls *t);

/* ---- the server -------------------------------------------------------- */

struct moor_server;  /* an HTTP + WebSocket server on a loop */
struct moor_ws;      /* one WebSocket connection */
struct moor_request; /* one HTTP request, during its handler */

/* Server settings; defaults are those of `moor serve` (docs/limits.md
 * says what each limit protects against). Strings are copied. */
struct moor_server_options {
    size_t size;                /* set by moor_server_options_init() */
    const char *listen;         /* "127.0.0.1:8080", "[::1]:8080"; port 0 = any;
                                   NULL or "": no plain listener (TLS only) */
    unsigned max_conns;         /* more are answered 503 */
    uint32_t accept_rate;       /* new connections/s; 0 = unlimited */
    uint32_t accept_burst;      /* 0 = accept_rate */
    uint64_t max_message;       /* bigger WebSocket message: close 1009 */
    uint64_t queue_limit;       /* outbound bytes per connection */
    uint32_t max_header_bytes;  /* request header block: else 431 */
    uint32_t max_headers;       /* header lines: else 431 */
    uint64_t max_body;          /* request body: else 413 */
    uint32_t header_timeout_ms; /* whole header block: else close */
    uint32_t body_timeout_ms;   /* whole body */
    uint32_t idle_timeout_ms;   /* HTTP keep-alive between requests */
    uint32_t linger_timeout_ms; /* after an error answer */
    uint32_t ping_interval_ms;  /* ping after this much silence */
    uint32_t pong_timeout_ms;   /* then close if nothing arrives */
    uint32_t close_timeout_ms;  /* wait for the peer's close reply */
    uint32_t write_timeout_ms;  /* close a peer that takes no bytes */
    uint32_t shutdown_timeout_ms; /* graceful drain at most this long */
    uint32_t drain_spread_ms;     /* spread the shutdown's 1001 closes */
    /* A WebSocket message begun must be whole within this long. 0 = no
     * limit. */
    uint32_t message_timeout_ms;
    const char *allowed_origins; /* NULL/"" = any; else "https://a,..." */
};

MOOR_API void moor_server_options_init_(struct moor_server_options *o,
                                        size_t size);
#define moor_server_options_init(o) moor_server_options_init_((o), sizeof(*(o)))

/* Binds the listener on loop l (borrowed until moor_server_free()).
 * Returns a new server (caller frees with moor_server_free()), or NULL:
 * MOOR_EADDR (bad listen), -EADDRINUSE (any other socket holds the port,
 * another moor server included), -ENOMEM, MOOR_EOPTIONS. */
MOOR_API struct moor_server *
moor_server_new(struct moor_loop *l, const struct moor_server_options *o,
                struct moor_error *err);
/* Also serves HTTPS, wss:// and SSE over TLS on addr, with t (borrowed
 * until moor_server_free()). Returns 0, MOOR_EADDR or -errno. */
MOOR_API int moor_server_listen_tls(struct moor_server *s, const char *addr,
                                    struct moor_tls *t, struct moor_error *err);
/* The port of the plain listener (or of the first TLS one). */
MOOR_API int moor_server_port(const struct moor_server *s);
/* The port of the nth TLS listener (0 first), or -ENOENT. */
MOOR_API int moor_server_tls_port(const struct moor_server *s, unsigned n);
/* Begins the graceful shutdown: stop accepting, close every WebSocket
 * with 1001, finish requests in flight, within shutdown_timeout. Safe
 * from any thread. */
MOOR_API void moor_server_stop(struct moor_server *s);
/* True once the shutdown has finished. */
MOOR_API int moor_server_stopped(const struct moor_server *s);
/* Closes what is still open (on_close runs) and frees the server; the
 * loop and whatever else runs on it go on. Not from inside a callback on
 * this loop: after moor_loop_run() returns, or between two
 * moor_loop_run_once() calls. */
MOOR_API void moor_server_free(struct moor_server *s);

/* ---- WebSocket routes -------------------------------------------------- */

/* Callbacks of a WebSocket route or client connection. Each is optional;
 * arg is passed back. The struct is copied: it need not outlive the call
 * that takes it. */
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

/* Serves WebSocket upgrades on path (copied). Returns 0, -ENOSPC (route
 * table full) or -EINVAL. */
MOOR_API int moor_server_ws(struct moor_server *s, const char *path,
                            const struct moor_ws_handlers *h);

enum moor_send_result {
    MOOR_SEND_OK = 0,           /* queued; will go out this loop turn */
    MOOR_SEND_BACKPRESSURE = 1, /* queued, but the queue is over its limit:
                                   wait for on_drain before sending more */
    MOOR_SEND_DROPPED = 2,      /* not queued (queue full, or closing) */
};

/* Sends one message; copies data once into a frame. */
MOOR_API enum moor_send_result
moor_ws_send(struct moor_ws *ws, const void *data, size_t len, int is_text);
/* Bytes queued for ws and not yet written. */
MOOR_API size_t moor_ws_buffered_amount(const struct moor_ws *ws);
/* Starts the close handshake. code: 1000, or 1001-1014 except 1004-1006,
 * or 3000-4999; reason: NULL or at most 123 bytes of UTF-8. Returns 0,
 * -EINVAL (a code or reason not allowed on the wire) or MOOR_ECLOSED
 * (already closing). */
MOOR_API int moor_ws_close(struct moor_ws *ws, int code, const char *reason);
/* Per-connection user data (NULL until set). */
MOOR_API void moor_ws_set_user(struct moor_ws *ws, void *user);
MOOR_API void *moor_ws_user(const struct moor_ws *ws);
/* During on_close: why the connection ended, in a few words ("connection
 * refused", "handshake: HTTP 404", "pong timeout", "closed by peer"). */
MOOR_API const char *moor_ws_error(const struct moor_ws *ws);

/* ---- plain HTTP routes ------------------------------------------------- */

/* A handler answers during its call, with moor_respond(); one that does
 * not is answered 500. The request and everything read from it are valid
 * only during the call. */
typedef void moor_http_handler(struct moor_request *req, void *arg);

/* Routes requests for path (copied; a path ending in '/' matches every
 * path under it) and methods ("GET", "GET,HEAD,POST": a comma-separated
 * list; other methods get 405). A route with POST or PUT reads the body
 * (up to max_body) before the handler runs. Returns 0, -ENOSPC or
 * -EINVAL. */
MOOR_API int moor_server_route(struct moor_server *s, const char *methods,
                               const char *path, moor_http_handler *fn,
                               void *arg);
/* "GET", "POST", ... */
MOOR_API const char *moor_request_method(const struct moor_request *req);
/* The path, without the query; *len gets its length (not NUL-terminated). */
MOOR_API const char *moor_request_path(const struct moor_request *req,
                                       size_t *len);
/* The value of header name (any case), or NULL; *len gets its length.
 * Headers are gone in a route that reads the body (POST, PUT): NULL. */
MOOR_API const char *moor_request_header(const struct moor_request *req,
                                         const char *name, size_t *len);
/* The request body (POST, PUT routes), or NULL with *len = 0. */
MOOR_API const void *moor_request_body(const struct moor_request *req,
                                       size_t *len);
/* Answers: the status line, Content-Type (if not NULL), Content-Length,
 * Date, the extra header lines ("Name: value\r\n"..., or NULL), then body
 * (copied; omitted for HEAD). Returns 0, -EINVAL (a bad status or header
 * text), MOOR_ESTATE (already answered) or -ENOMEM. */
MOOR_API int moor_respond(struct moor_request *req, int status,
                          const char *content_type, const char *extra_headers,
                          const void *body, size_t len);

/* ---- metrics and /debug ------------------------------------------------ */

/* Serves the Prometheus metrics of `about` (its connections, listeners,
 * HTTP, TLS and pub/sub; plus the process's memory) at path on server
 * `on` (the same server, or an admin one on another port). Returns 0,
 * -ENOSPC or -EINVAL. */
MOOR_API int moor_server_metrics(struct moor_server *on, const char *path,
                                 struct moor_server *about);
/* Serves prefix + "/mem" (memory by tag, JSON) and prefix + "/conns" (one
 * JSON line per connection of `about`) on `on`. prefix: e.g. "/debug". */
MOOR_API int moor_server_debug(struct moor_server *on, const char *prefix,
                               struct moor_server *about);

/* ---- pub/sub ----------------------------------------------------------- */

struct moor_pubsub; /* the push gateway of one server */

enum moor_slow_policy {
    MOOR_SLOW_DISCONNECT = 0, /* a subscriber over its queue limit goes */
    MOOR_SLOW_DROP_OLDEST = 1 /* its oldest queued messages go instead */
};

struct moor_pubsub_options {
    size_t size;           /* set by moor_pubsub_options_init() */
    uint32_t max_channels; /* channels in all */
    uint32_t max_channels_per_conn;
    uint64_t queue_soft_limit;   /* a subscriber's queue may stay over */
    uint32_t queue_soft_time_ms; /* this long before the policy applies */
    enum moor_slow_policy slow_policy;
    uint32_t rate;         /* messages/s per publisher; 0 = unlimited */
    uint32_t burst;        /* 0 = rate */
    uint64_t byte_rate;    /* bytes/s per publisher; 0 = unlimited */
    uint32_t heartbeat_ms; /* SSE comment / TCP empty frame after quiet */
    uint32_t sse_retry_ms; /* the reconnect delay sent to EventSource */
};

MOOR_API void moor_pubsub_options_init_(struct moor_pubsub_options *o,
                                        size_t size);
#define moor_pubsub_options_init(o) moor_pubsub_options_init_((o), sizeof(*(o)))

/* Adds the routes of `moor serve`'s gateway to s:
 *   GET  /sub/a,b   WebSocket subscriber, or SSE with
 *                   "Accept: text/event-stream"
 *   GET  /pub/ch    WebSocket publisher
 *   POST /pub/ch    publish the body; 202 {"subscribers":N}
 * Limits of messages and timeouts come from s's options. One per server.
 * Returns the gateway (freed with its server), or NULL: -EEXIST, -ENOMEM,
 * -ENOSPC. */
MOOR_API struct moor_pubsub *
moor_pubsub_new(struct moor_server *s, const struct moor_pubsub_options *o,
                struct moor_error *err);
/* Serves the length-prefixed TCP protocol on addr ("SUB a b" or "PUB ch",
 * then frames; docs/framing.md), over TLS when t is not NULL (borrowed
 * until the server is freed). Returns 0, MOOR_EADDR or -errno. */
MOOR_API int moor_pubsub_listen_tcp(struct moor_pubsub *ps, const char *addr,
                                    struct moor_tls *t, struct moor_error *err);
/* The port of the nth TCP listener (0 first), or -ENOENT. */
MOOR_API int moor_pubsub_tcp_port(const struct moor_pubsub *ps, unsigned n);
/* Publishes data (copied once, shared by every subscriber) on channel.
 * Returns the number of subscribers it goes to, -EINVAL (a bad channel
 * name) or -ENOMEM. */
MOOR_API long moor_publish(struct moor_pubsub *ps, const char *channel,
                           const void *data, size_t len, int is_text);
/* Subscribers of channel right now (0 for a channel nobody wants). */
MOOR_API long moor_pubsub_subscribers(const struct moor_pubsub *ps,
                                      const char *channel);

/* ---- the client -------------------------------------------------------- */

struct moor_client; /* WebSocket client connections on a loop */

struct moor_client_options {
    size_t size;                 /* set by moor_client_options_init() */
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

MOOR_API void moor_client_options_init_(struct moor_client_options *o,
                                        size_t size);
#define moor_client_options_init(o) moor_client_options_init_((o), sizeof(*(o)))
/* Returns a new client on loop l (borrowed until moor_client_free();
 * caller frees with moor_client_free()), or NULL. */
MOOR_API struct moor_client *
moor_client_new(struct moor_loop *l, const struct moor_client_options *o,
                struct moor_error *err);
/* Opens a WebSocket to url, "ws://HOST[:PORT][/PATH]" or "wss://..." (TLS;
 * HOST an IP address or "localhost"; PORT defaults to 80, 443 for wss).
 * Progress is reported through h (copied): on_open once the handshake
 * succeeded, or on_close with code 1006 if the connect or the handshake
 * failed (moor_ws_error() says why). user becomes moor_ws_user(). Returns
 * 0, or MOOR_EURL, MOOR_ETLS, -EMFILE, -ENOMEM, ... (then no callback
 * runs). */
MOOR_API int moor_client_connect(struct moor_client *cl, const char *url,
                                 const struct moor_ws_handlers *h, void *user,
                                 struct moor_error *err);
/* Connections of this client still open. */
MOOR_API long moor_client_open(const struct moor_client *cl);
/* Closes every connection still open (on_close runs with 1006) and frees
 * the client. Not from inside a callback on its loop (see
 * moor_server_free()). */
MOOR_API void moor_client_free(struct moor_client *cl);

/* ---- memory ------------------------------------------------------------ */

/* Live bytes allocated by moor (all tags, all threads). After every moor
 * object is freed, this is 0. */
MOOR_API int64_t moor_mem_live_bytes(void);
/* Writes the memory accounting as JSON (live/total per tag) into out,
 * NUL-terminated, truncated to cap (out may be NULL when cap is 0).
 * Returns the length the whole document needs (excluding the NUL), or
 * -ENOMEM / -EINVAL. */
MOOR_API long moor_mem_json(char *out, size_t cap);
/* Process-wide: past this many live bytes, new connections are refused
 * (503) and publishers stop being read (`moor serve --memory-limit`). 0 =
 * no limit (the default). Set it once, before any loop runs. */
MOOR_API void moor_mem_set_limit(uint64_t bytes);

#ifdef __cplusplus
}
#endif

#endif
