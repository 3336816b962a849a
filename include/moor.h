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
    /* The HTTP client (moor_http_result.error): each cause its own code. */
    MOOR_ERESOLVE = -10007,         /* the host name did not resolve */
    MOOR_ETLS_VERIFY = -10008,      /* the server's certificate or name failed
                                       verification */
    MOOR_EBADRESPONSE = -10009,     /* the response broke HTTP/1.1 */
    MOOR_ETOOBIG = -10010,          /* response head or body over its limit */
    MOOR_EPEERCLOSED = -10011,      /* the server closed before the response
                                       was complete */
    MOOR_EQUEUEFULL = -10012,       /* the host's wait queue is full */
    MOOR_ETIMEOUT_RESOLVE = -10013, /* name resolution took too long */
    MOOR_ETIMEOUT_CONNECT = -10014, /* TCP connect took too long */
    MOOR_ETIMEOUT_TLS = -10015,     /* the TLS handshake took too long */
    MOOR_ETIMEOUT_WRITE = -10016,   /* the server took no request bytes */
    MOOR_ETIMEOUT_HEAD = -10017,    /* no response head in time */
    MOOR_ETIMEOUT_BODY = -10018,    /* too long between body bytes */
    MOOR_ETIMEOUT_TOTAL = -10019,   /* the whole request took too long */
    MOOR_ETIMEOUT_WAIT = -10020,    /* waited too long for a connection */
    MOOR_ETIMEOUT_PAUSE = -10021,   /* the caller kept the body paused too
                                       long (pause_timeout_ms) */
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
     * bytes more than it uses (docs/memory.md). What it holds includes
     * memory moor does not count (OpenSSL's, your own): while a trim
     * gives back little, the next waits 2, 4 ... 64 intervals. 0 turns
     * it off. */
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

/* ---- the HTTP client --------------------------------------------------- */

/*
 * A pooled HTTP/1.1 client, plain and TLS, on the loop (docs/http_client.md).
 * Keep-alive connections are kept per (scheme, host, port); an idle one
 * stays watched by the loop, so a server that closes it, resets it or
 * sends a stray byte has it closed at once, and it holds no buffer (TLS
 * included): nothing but its socket, its SSL object and a small struct.
 * Every phase of a request has its own deadline and its own error.
 */
struct moor_http_client;
struct moor_http_call; /* one request in flight */

struct moor_http_client_options {
    size_t size; /* set by moor_http_client_options_init() */
    /* The pool. */
    uint32_t max_idle_total;        /* idle connections kept in all (1024) */
    uint32_t max_idle_per_host;     /* idle connections per host (256) */
    uint32_t max_conns_per_host;    /* open per host, busy or idle (256) */
    uint32_t max_waiting_per_host;  /* requests queued for a connection
                                       beyond that; more fail at once with
                                       MOOR_EQUEUEFULL (1024) */
    uint32_t wait_timeout_ms;       /* a queued request's wait (10 s) */
    uint32_t idle_timeout_ms;       /* an idle connection closes (90 s) */
    uint32_t max_conn_age_ms;       /* no reuse after this (0: no limit) */
    uint32_t max_requests_per_conn; /* then it closes (0: no limit) */
    /* Deadlines, each its own MOOR_ETIMEOUT_* error. */
    uint32_t resolve_timeout_ms; /* name resolution (5 s) */
    uint32_t connect_timeout_ms; /* TCP connect (5 s) */
    uint32_t tls_timeout_ms;     /* TLS handshake (10 s) */
    uint32_t write_timeout_ms;   /* the server takes no request bytes (30 s) */
    uint32_t head_timeout_ms;    /* end of request to response head (30 s) */
    uint32_t body_timeout_ms;    /* gap between response body bytes (30 s) */
    uint32_t total_timeout_ms;   /* the whole request, waiting included
                                    (0: none; the phases bound it) */
    /* Limits on what a server may send. */
    uint32_t max_header_bytes; /* status line and fields (16 KiB) */
    uint32_t max_headers;      /* fields (100) */
    uint64_t max_body;         /* response body bytes (64 MiB) */
    uint32_t queue_limit;      /* request bytes queued on a connection
                                  before a producer is told to wait
                                  (256 KiB) */
    /* Name resolution (c-ares): answers cached for their TTL, at most
     * max_ttl_s, in a cache of dns_cache_entries names. */
    uint32_t dns_cache_entries; /* 512 */
    uint32_t dns_max_ttl_s;     /* 300 */
    const char *dns_servers;    /* "IP[:PORT],..." (copied); NULL: the
                                   system's (/etc/resolv.conf, /etc/hosts) */
    /* https:// URLs: the certificate is verified and its name checked
     * unless insecure; SNI and ALPN "http/1.1" are sent; up to
     * tls_sessions_per_host sessions are kept per host so a reconnect
     * resumes (0: no resumption). */
    const char *tls_ca;             /* PEM CAs (copied); NULL: the system's */
    int insecure;                   /* 1: no certificate or name check */
    uint32_t tls_sessions_per_host; /* 4 */
    /* /metrics (moor_server_metrics_http_client) shows the first
     * metrics_max_hosts hosts each with its own series (at most 1024);
     * the others are summed under host="other", so many hosts cannot
     * make the page grow past its cap. */
    uint32_t metrics_max_hosts; /* 100 */
    /* A response body the caller keeps paused (moor_http_call_pause) this
     * long ends its request with MOOR_ETIMEOUT_PAUSE and closes the
     * connection: a forgotten pause must not hold a connection and its
     * server for ever (60 s; 0: no limit, total_timeout_ms still
     * applies). */
    uint32_t pause_timeout_ms;
    /* TLS handshakes in flight at once, all hosts together; connections
     * whose TCP connect is done wait their turn beyond it, under their own
     * tls_timeout_ms. A handshake holds ~55 KB of buffers while it runs:
     * a burst of 1,000 new connections costs 64 x 55 KB at its peak, not
     * 55 MB, and leaves no holes of freed buffers between the pooled
     * connections (64; 0: no limit). */
    uint32_t max_handshakes;
};

MOOR_API void moor_http_client_options_init_(struct moor_http_client_options *o,
                                             size_t size);
#define moor_http_client_options_init(o)                                       \
    moor_http_client_options_init_((o), sizeof(*(o)))

/* A header, for requests (NUL-terminated strings) and responses (not
 * NUL-terminated: use the lengths). */
struct moor_http_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* One request. Fill with moor_http_request_init(), then set what you
 * need; everything is copied by moor_http_client_request(). */
struct moor_http_request {
    size_t size;        /* set by moor_http_request_init() */
    const char *method; /* "GET" (the default), "POST", ... */
    const char *url;    /* "http://host[:port]/path?query" or "https://" */
    /* Extra header fields (name and value NUL-terminated; the lengths
     * are ignored). Host, Content-Length, Transfer-Encoding and
     * Connection are moor's: giving one is -EINVAL. */
    const struct moor_http_field *headers;
    size_t n_headers;
    /* The body: body[0..body_len) (copied), or, if the callbacks have
     * on_writable, produced: body_length bytes, or -1 for chunked
     * transfer coding of unknown length. */
    const void *body;
    size_t body_len;
    long long body_length;
    /* 1: may be retried once on a new connection if it fails on a reused
     * one before any response byte arrived, whatever the method. By
     * default only GET, HEAD, PUT, DELETE, OPTIONS, TRACE and requests
     * with an Idempotency-Key header are. A produced body is never
     * retried. */
    int idempotent;
    uint32_t timeout_ms; /* the whole request; 0: the client's total */
};

MOOR_API void moor_http_request_init_(struct moor_http_request *r, size_t size);
#define moor_http_request_init(r) moor_http_request_init_((r), sizeof(*(r)))

/* The response head, valid during on_head only. */
struct moor_http_response {
    int status;               /* 200, 404, ... (1xx are skipped) */
    int version_minor;        /* HTTP/1.0 or 1.1 */
    long long content_length; /* -1: chunked or until close */
    const char *reason;       /* not NUL-terminated */
    size_t reason_len;
    const struct moor_http_field *headers;
    size_t n_headers;
};
/* The value of header name (any case) in r, or NULL; *len its length. */
MOOR_API const char *
moor_http_response_header(const struct moor_http_response *r, const char *name,
                          size_t *len);

/* How a request ended, for on_done. */
struct moor_http_result {
    int error;   /* 0, or -errno / MOOR_E* (moor_strerror) */
    int status;  /* the response's status; 0 if none arrived */
    int retried; /* 1: failed on a reused connection and was sent
                    again on a new one */
    int reused;  /* 1: it ran on a pooled connection */
    uint64_t body_bytes;
    const char *message; /* one line about error ("connect to
                            10.0.0.1:443: Connection refused"), "" if none;
                            valid during on_done */
};

/* The callbacks of a request; each is optional. The struct is copied. */
struct moor_http_callbacks {
    /* The response head arrived (after any 1xx). */
    void (*on_head)(struct moor_http_call *c,
                    const struct moor_http_response *r, void *user);
    /* Body bytes, in order, decoded from chunked coding; p is valid
     * during the call. moor_http_call_pause() stops reading the
     * connection (the server is pushed back by TCP) until
     * moor_http_call_resume(). */
    void (*on_body)(struct moor_http_call *c, const void *p, size_t n,
                    void *user);
    /* A produced body: moor can take more. Call moor_http_call_write()
     * until it returns 1 (wait for the next on_writable) or the body is
     * done, then moor_http_call_write_end(). */
    void (*on_writable)(struct moor_http_call *c, void *user);
    /* Exactly once per request that moor_http_client_request() accepted,
     * cancelled ones included: the call is freed right after. */
    void (*on_done)(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user);
};

/* Returns a new client on loop l (caller frees with
 * moor_http_client_free()), or NULL (-ENOMEM, MOOR_ETLS, MOOR_EOPTIONS,
 * -EINVAL for a bad dns_servers). */
MOOR_API struct moor_http_client *
moor_http_client_new(struct moor_loop *l,
                     const struct moor_http_client_options *o,
                     struct moor_error *err);
/* Starts a request. Returns the call (valid until its on_done returns),
 * or NULL with err: MOOR_EURL, -EINVAL (a bad method or header), -ENOMEM;
 * then no callback runs. Every other failure comes through on_done,
 * never from inside this call. */
MOOR_API struct moor_http_call *moor_http_client_request(
    struct moor_http_client *cl, const struct moor_http_request *r,
    const struct moor_http_callbacks *cb, void *user, struct moor_error *err);
/* Produced bodies: queues p[0..n) (copied). Returns 0, 1 (queued, but
 * the connection's queue is now over queue_limit: wait for on_writable),
 * -EAGAIN (nothing queued: it was already over, after a 1), -EINVAL (more
 * than body_length), MOOR_ESTATE (not writable now). So a queue passes
 * queue_limit by one write at most. */
MOOR_API int moor_http_call_write(struct moor_http_call *c, const void *p,
                                  size_t n);
/* The produced body is complete (-EINVAL if body_length is not met). */
MOOR_API int moor_http_call_write_end(struct moor_http_call *c);
/* Stops and resumes reading the response body. */
MOOR_API void moor_http_call_pause(struct moor_http_call *c);
MOOR_API void moor_http_call_resume(struct moor_http_call *c);
/* Ends the request now: on_done runs (before this returns) with
 * -ECANCELED. A connection with a response half read is closed, not
 * pooled (counted as body_abandoned). */
MOOR_API void moor_http_call_cancel(struct moor_http_call *c);
/* Closes every idle pooled connection now. */
MOOR_API void moor_http_client_close_idle(struct moor_http_client *cl);

/* Pool statistics, in total (host NULL) or of one host ("http://h:80",
 * "https://h:443": scheme, host and port exactly). */
struct moor_http_client_stats {
    long active;  /* connections running a request */
    long idle;    /* pooled, waiting for one */
    long dialing; /* resolving, connecting or in the TLS handshake */
    long waiting; /* requests queued for a connection */
    uint64_t requests;
    uint64_t conns_new;    /* connections opened */
    uint64_t conns_reused; /* requests that ran on a pooled one */
    uint64_t retries;
    /* Connections closed, by why. */
    uint64_t closed_idle_timeout;
    uint64_t closed_max_age;     /* max_conn_age or max_requests_per_conn */
    uint64_t closed_peer;        /* the server closed, reset or sent a stray
                                    byte while it was idle */
    uint64_t closed_abandoned;   /* a body left half read */
    uint64_t closed_error;       /* any failure of a request */
    uint64_t closed_pool_full;   /* not pooled: max_idle_* reached */
    uint64_t closed_by_response; /* Connection: close, HTTP/1.0,
                                    close-delimited body */
    int64_t bytes_held;   /* the client's accounted bytes (tag http_client)
                             for the total; of this host's objects else */
    uint64_t tls_resumed; /* TLS connections that resumed a session (no
                             certificate sent, parsed or verified) */
    long tls_waiting;     /* TCP up, the handshake waits its turn
                             (max_handshakes reached) */
    uint64_t tls_waited;  /* handshakes that had to wait their turn */
};
/* Returns 0, or -ENOENT (no such host in the pool). */
MOOR_API int moor_http_client_stats(const struct moor_http_client *cl,
                                    const char *host,
                                    struct moor_http_client_stats *st);
/* Adds the client's statistics (moor_http_client_* families, per host)
 * to the /metrics page `on` serves (moor_server_metrics()). The client
 * must be freed after the server. Returns 0, -ENOSPC or -EINVAL. */
MOOR_API int moor_server_metrics_http_client(struct moor_server *on,
                                             struct moor_http_client *cl);
/* Cancels every request (on_done runs with -ECANCELED), closes every
 * connection and frees the client. Not from inside one of its callbacks. */
MOOR_API void moor_http_client_free(struct moor_http_client *cl);

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
