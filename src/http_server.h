/*
 * http_server.h - HTTP/1.1 over conn: keep-alive, pipelining, request
 * deadlines, error answers, and a small routing table.
 *
 * One struct http_server per loop (no state shared between loops). Each
 * connection's HTTP state lives in the conn's ext area (no allocation per
 * connection beyond the conn itself; none while idle).
 *
 * A request is dispatched to its route as soon as its header block is
 * complete; a request body is then read and discarded (routes that take
 * bodies come with pub/sub). The answer to a request with a body is held
 * (one message reference) until the body is complete, so a malformed or
 * oversized body is answered 400/413 instead. Responses are queued in request
 * order, so pipelined requests are answered in order. When a connection's
 * queued answers pass HTTP_PIPELINE_HIGH bytes, reading pauses until they
 * drain.
 *
 * Deadlines: a fresh connection and every new request get
 * header_timeout for the whole header block (counted from its first byte,
 * so trickling does not extend it), body_timeout for the whole body, and
 * idle_timeout between requests. Error answers close the connection after
 * a bounded linger.
 */
#ifndef MOOR_HTTP_SERVER_H
#define MOOR_HTTP_SERVER_H

#include <stdint.h>
#include <stdbool.h>
#include "conn.h"
#include "http1.h"
#include "util.h"

#define HTTP_PIPELINE_HIGH KiB(64)
#define HTTP_MAX_ROUTES 32

struct http_server;
struct sbuf;

/* What a handler sees and answers through. */
struct http_exchange {
    struct http_server *srv;
    struct conn *c;
    const struct http_request *req; /* NULL in a body route's handler */
    enum http_method method;
    struct http_str path; /* the request's path */
    const uint8_t *body;  /* body route: the whole body */
    size_t body_len;
    bool keep_alive; /* the handler may clear it */
    bool responded;
    bool upgraded; /* the handler switched the conn's protocol */
    bool deferred; /* http_defer(): asked again after http_resume() */
    /* Internal: a request with a body has its answer held until the body
     * is complete (a bad body then gets its own precise status). */
    bool hold;
    int status;
    struct msg *held;
};

typedef void http_handler_fn(struct http_exchange *ex, void *arg);

/* A handler (or a gate) that cannot answer yet (it waits for an auth
 * callback) defers: the request's bytes are left unread (conn.c carries
 * them, exactly: nothing else is held), reading pauses (PAUSE_AUTH), and
 * the connection must be resumed within ms (else it closes as a header
 * timeout). http_resume() lets the same request be parsed and routed
 * again, and the handler is called anew: it must then find its answer
 * (keyed by the conn). */
void http_defer(struct http_exchange *ex, uint32_t ms);
void http_resume(struct conn *c);

/* Bits for route methods. */
#define HTTP_M(m) (1u << (m))

struct http_server_opts {
    struct http_limits lim;
    uint32_t conn_ext; /* ext bytes per conn for protocols it may be
                          upgraded to (ws_conn_ext_size()), or 0 */
    uint32_t header_timeout_ms;
    uint32_t body_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t linger_timeout_ms;
};

/* Status codes counted in moor_http_rejected_total. */
#define HTTP_REJECT_CODES                                                      \
    {                                                                          \
        400, 403, 404, 405, 408, 413, 414, 426, 431, 500, 501, 503, 505        \
    }
#define HTTP_REJECT_COUNT 13

struct http_stats {
    uint64_t requests;                    /* complete header blocks */
    uint64_t responses[6];                /* by class: [1]=1xx .. [5]=5xx */
    uint64_t rejected[HTTP_REJECT_COUNT]; /* by HTTP_REJECT_CODES */
};

/* Returns a new server for conns of set, or NULL. Caller frees with
 * http_server_free(). Tag MEM_HTTP (it holds the per-loop request
 * scratch, about 8 KiB). */
struct http_server *http_server_new(struct conn_set *set,
                                    const struct http_server_opts *o);
void http_server_free(struct http_server *srv);

/* Adds a route. path is borrowed (a string literal or one that outlives
 * the server). prefix: match any path starting with path. methods: a
 * mask of HTTP_M(HTTP_GET) | ... Returns 0 or -ENOSPC. */
int http_server_route(struct http_server *srv, const char *path, bool prefix,
                      unsigned methods, http_handler_fn *fn, void *arg);

/* Adds a route whose handler runs once the request's body is complete
 * (at most max_body bytes, either framing), with ex->body, ex->body_len,
 * ex->path and ex->method; ex->req is NULL then (the header block is
 * gone). A request without a body, or a GET or HEAD (whose body means
 * nothing), runs the handler at once, like any route. */
int http_server_route_body(struct http_server *srv, const char *path,
                           bool prefix, unsigned methods, http_handler_fn *fn,
                           void *arg);

/* A body route's check of the header block, before any body byte is read
 * (a token, the path): true lets the body be read and the handler run;
 * false means the gate answered (ex->req is set; a refusal with a body to
 * come should clear ex->keep_alive so the body is not read). */
typedef bool http_gate_fn(struct http_exchange *ex, void *arg);
/* Sets the gate of the last route added (a body route). */
void http_server_route_gate(struct http_server *srv, http_gate_fn *gate);

/* Starts serving HTTP on an accepted fd (takes it). Returns 0 or -ENOMEM
 * (the fd is closed either way on failure). */
int http_server_accept(struct http_server *srv, int fd,
                       const struct sockaddr *peer);
/* The same for a conn that speaks TLS (a --tls-listen listener): the
 * TLS handshake must finish within handshake_ms (reason
 * handshake_timeout), then the header timeout starts. */
struct tls_ctx;
int http_server_accept_tls(struct http_server *srv, int fd, struct tls_ctx *tls,
                           uint32_t handshake_ms);

/* Drain mode (graceful shutdown): idle connections are closed now;
 * connections in the middle of a request finish it and then close. */
void http_server_drain(struct http_server *srv);
/* SIGHUP: new header, body, idle and linger timeouts of o; each is read
 * when its deadline is next set (a deadline already running keeps its
 * time). */
void http_server_set_timeouts(struct http_server *srv,
                              const struct http_server_opts *o);

/* Queues a complete response: status line, Content-Length, Content-Type
 * (if ctype), Date, Connection: close when !ex->keep_alive, extra header
 * lines (each "Name: value\r\n", may be NULL), then body (omitted for
 * HEAD). Copies body. Returns 0 or -errno (the conn is then closed). */
int http_respond(struct http_exchange *ex, int status, const char *ctype,
                 const char *extra, const void *body, size_t len);
/* Answers a page that a renderer built in b and returned rc for: 200 with
 * ctype and "Cache-Control: no-store", or 503 when rc < 0 (the page
 * outgrew b's cap, or memory ran out). Frees b's bytes either way. */
void http_respond_page(struct http_exchange *ex, int rc, struct sbuf *b,
                       const char *ctype);

const struct http_stats *http_server_stats(const struct http_server *srv);
int http_reject_code(unsigned idx);

#endif
