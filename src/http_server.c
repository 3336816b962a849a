/*
 * http_server.c - the HTTP/1.1 connection protocol (a conn_proto) and
 * routing.
 *
 * Keeps: every phase of a connection has its deadline (header, body,
 * idle, linger); nothing is buffered beyond an incomplete header block
 * (bounded by max_header_bytes, carried by conn.c) and the queued answers
 * (bounded by HTTP_PIPELINE_HIGH before reading pauses); bad input gets
 * its precise status and the connection is closed after a bounded linger.
 * Must not: make syscalls itself (conn.c does the I/O), or keep request
 * bytes after the handler returns.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "http_server.h"
#include "log.h"
#include "mem.h"
#include "util.h"

enum http_phase {
    PHASE_HEADER = 0,
    PHASE_BODY_LENGTH,
    PHASE_BODY_CHUNKED,
    PHASE_DONE, /* closing after this answer */
};

/* Per-connection state, in the conn's ext area. */
/* A request to a body route while its body arrives: what the handler
 * will need of the header block (gone by then), and the body so far. */
struct http_body {
    struct abuf *data; /* grown as bytes arrive (docs/principles.md, rule 8) */
    uint16_t path_len;
    uint8_t route;
    uint8_t method; /* enum http_method */
    bool keep_alive;
    char path[]; /* path_len bytes */
};

/* What waits for the body of the request being read is one of two
 * things, never both, and `collect` says which: the answer already made
 * (held, a message reference: a plain route answered at once) or the body
 * itself (body, for a body route whose handler runs at the end). They
 * share one pointer, so every path that lets go of them goes through
 * take_held(), take_body() or drop_pending(), which read `collect` first
 * and clear both together. */
struct http_conn {
    union {
        struct msg *held;       /* !collect: answer waiting for the body */
        struct http_body *body; /* collect: the body of a body route */
    };
    union { /* by phase: only one body framing at a time */
        uint64_t body_left;
        struct http_chunked chunked;
    };
    uint16_t scan; /* http_parse_request resume hint; header blocks are
                      at most 60 KiB (config.c), so 16 bits hold it */
    uint8_t phase;
    bool collect; /* the body goes to a body route (body, not held) */
    uint16_t held_status;
    bool keep_alive; /* of the request whose body is being read */
    bool in_request; /* bytes of a request have arrived */
};

struct http_route {
    const char *path;
    size_t len;
    bool prefix;
    bool want_body; /* the handler runs once the body is complete */
    unsigned methods;
    http_gate_fn *gate; /* a body route's header check, or NULL */
    http_handler_fn *fn;
    void *arg;
};

struct http_server {
    struct conn_set *set;
    struct http_server_opts o;
    struct http_stats stats;
    bool draining;
    unsigned n_routes;
    struct http_route routes[HTTP_MAX_ROUTES];
    uint64_t date_sec;
    char date[40];           /* "Date: ...\r\n" cached per second */
    struct http_request req; /* scratch for the request being parsed */
};

static const int reject_codes[HTTP_REJECT_COUNT] = HTTP_REJECT_CODES;

int http_reject_code(unsigned idx)
{
    return idx < HTTP_REJECT_COUNT ? reject_codes[idx] : 0;
}

static void count_status(struct http_server *srv, int status)
{
    if (status >= 100 && status < 600)
        srv->stats.responses[status / 100]++;
    if (status < 400)
        return;
    for (unsigned i = 0; i < HTTP_REJECT_COUNT; i++) {
        if (reject_codes[i] == status) {
            srv->stats.rejected[i]++;
            return;
        }
    }
}

static const char *date_header(struct http_server *srv)
{
    uint64_t sec = loop_wall_ms(srv->set->loop) / 1000;
    time_t t = (time_t)sec;
    struct tm tm;

    if (sec != srv->date_sec) {
        srv->date_sec = sec;
        gmtime_r(&t, &tm);
        strftime(srv->date, sizeof(srv->date),
                 "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    }
    return srv->date;
}

static size_t http_on_data(struct conn *c, uint8_t *p, size_t len);
_Static_assert(sizeof(struct http_conn) <= 32,
               "http_conn grew: it is paid by every idle connection");
static void http_on_drain(struct conn *c);
static bool http_on_timeout(struct conn *c);
static void http_on_close(struct conn *c, enum close_reason why);
static void http_on_ready(struct conn *c, int err);
static void drop_pending(struct http_conn *hc);

/* The server of an HTTP conn is its protocol context. */
static struct http_server *srv_of(const struct conn *c)
{
    return conn_ctx(c);
}

static const struct conn_proto http_proto = {
    .name = "http",
    .on_data = http_on_data,
    .on_drain = http_on_drain,
    .on_timeout = http_on_timeout,
    .on_close = http_on_close,
    .on_connect = http_on_ready,
    /* nginx's answer to plain HTTP on its HTTPS port. */
    .tls_plaintext_reply =
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 50\r\n"
        "Connection: close\r\n\r\n"
        "400 The plain HTTP request was sent to HTTPS port\n",
};

struct http_server *http_server_new(struct conn_set *set,
                                    const struct http_server_opts *o)
{
    struct http_server *srv = mem_calloc(MEM_HTTP, 1, sizeof(*srv));

    if (!srv)
        return NULL;
    srv->set = set;
    srv->o = *o;
    if (srv->o.lim.max_headers > HTTP_MAX_HEADERS_CAP)
        srv->o.lim.max_headers = HTTP_MAX_HEADERS_CAP;
    return srv;
}

void http_server_free(struct http_server *srv)
{
    mem_free(MEM_HTTP, srv);
}

const struct http_stats *http_server_stats(const struct http_server *srv)
{
    return &srv->stats;
}

int http_server_route(struct http_server *srv, const char *path, bool prefix,
                      unsigned methods, http_handler_fn *fn, void *arg)
{
    struct http_route *r;

    if (srv->n_routes >= HTTP_MAX_ROUTES)
        return -ENOSPC;
    r = &srv->routes[srv->n_routes++];
    r->path = path;
    r->len = strlen(path);
    r->prefix = prefix;
    r->methods = methods;
    r->fn = fn;
    r->arg = arg;
    r->want_body = false;
    r->gate = NULL;
    return 0;
}

void http_server_route_gate(struct http_server *srv, http_gate_fn *gate)
{
    if (srv->n_routes)
        srv->routes[srv->n_routes - 1].gate = gate;
}

int http_server_route_body(struct http_server *srv, const char *path,
                           bool prefix, unsigned methods, http_handler_fn *fn,
                           void *arg)
{
    int rc = http_server_route(srv, path, prefix, methods, fn, arg);

    if (rc == 0)
        srv->routes[srv->n_routes - 1].want_body = true;
    return rc;
}

int http_server_accept(struct http_server *srv, int fd,
                       const struct sockaddr *peer)
{
    struct conn *c;
    struct http_conn *hc;

    (void)peer;
    c = conn_new_ctx(srv->set, fd, &http_proto, srv,
                     MAX(sizeof(struct http_conn), (size_t)srv->o.conn_ext),
                     srv->o.header_timeout_ms, CLOSE_HEADER_TIMEOUT);
    if (!c)
        return -ENOMEM;
    hc = conn_ext(c);
    hc->keep_alive = true;
    return 0;
}

int http_server_accept_tls(struct http_server *srv, int fd, struct tls_ctx *tls,
                           uint32_t handshake_ms)
{
    struct conn *c;
    struct http_conn *hc;

    c = conn_new_ctx(srv->set, fd, &http_proto, srv,
                     MAX(sizeof(struct http_conn), (size_t)srv->o.conn_ext),
                     handshake_ms, CLOSE_HANDSHAKE_TIMEOUT);
    if (!c)
        return -ENOMEM;
    hc = conn_ext(c);
    hc->keep_alive = true;
    if (conn_start_tls(c, tls, true, NULL, handshake_ms) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return -ENOMEM;
    }
    return 0;
}

/* The TLS handshake is done: the first request's header timeout starts. */
static void http_on_ready(struct conn *c, int err)
{
    struct http_server *srv = conn_ctx(c);

    if (err)
        return; /* conn.c closes it */
    conn_set_state(c, CSTATE_HEADER);
    conn_set_read_deadline(c, srv->o.header_timeout_ms, CLOSE_HEADER_TIMEOUT);
}

/* ---- responses ---------------------------------------------------------- */

/* Builds a response message. If hold is set, the message is handed back
 * through it (the caller owns the reference) instead of being queued: an
 * answer to a request whose body has not arrived waits for the body, so a
 * malformed body still gets its precise status instead. */
static int send_response(struct http_server *srv, struct conn *c, int status,
                         bool keep_alive, bool http10, bool head,
                         const char *ctype, const char *extra, const void *body,
                         size_t len, struct msg **hold)
{
    char hdr[1024];
    char more[512];
    ssize_t n;
    struct msg *m;
    size_t blen = head ? 0 : len;
    int rc;

    /* An HTTP/1.0 client keeps the connection only if told so. */
    snprintf(more, sizeof(more), "%s%s%s%s%s%s", date_header(srv),
             keep_alive && http10 ? "Connection: keep-alive\r\n" : "",
             ctype ? "Content-Type: " : "", ctype ? ctype : "",
             ctype ? "\r\n" : "", extra ? extra : "");
    n = http_format_head(hdr, sizeof(hdr), status, (long long)len, keep_alive,
                         more);
    if (n < 0)
        return (int)n;
    m = msg_new(NULL, (size_t)n + blen);
    if (!m) {
        conn_close(c, CLOSE_NO_MEMORY);
        return -ENOMEM;
    }
    memcpy(m->data, hdr, (size_t)n);
    if (blen)
        memcpy(m->data + n, body, blen);
    if (hold) {
        *hold = m;
        return 0;
    }
    rc = conn_send(c, m);
    msg_unref(m);
    if (rc < 0) {
        conn_close(c, rc == -ENOBUFS ? CLOSE_SLOW_CONSUMER : CLOSE_NO_MEMORY);
        return rc;
    }
    count_status(srv, status);
    return 0;
}

int http_respond(struct http_exchange *ex, int status, const char *ctype,
                 const char *extra, const void *body, size_t len)
{
    bool head = ex->req && ex->req->method == HTTP_HEAD;

    if (ex->responded)
        return -EALREADY;
    ex->responded = true;
    if (ex->srv->draining)
        ex->keep_alive = false;
    ex->status = status;
    return send_response(ex->srv, ex->c, status, ex->keep_alive,
                         ex->req && ex->req->version_minor == 0, head, ctype,
                         extra, body, len, ex->hold ? &ex->held : NULL);
}

void http_respond_page(struct http_exchange *ex, int rc, struct sbuf *b,
                       const char *ctype)
{
    if (rc < 0)
        http_respond(ex, 503, "text/plain; charset=utf-8", NULL,
                     "503 Service Unavailable\n", 24);
    else
        http_respond(ex, 200, ctype, "Cache-Control: no-store\r\n", b->data,
                     b->len);
    sbuf_fini(b);
}

/* Answers status and closes after a linger (bad input: the stream can no
 * longer be trusted). */
static void reject(struct http_conn *hc, struct conn *c, int status,
                   const char *extra)
{
    char body[64];
    int n =
        snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));

    hc->phase = PHASE_DONE;
    drop_pending(hc);
    if (send_response(srv_of(c), c, status, false, false, false,
                      "text/plain; charset=utf-8", extra, body, (size_t)n,
                      NULL) < 0)
        return;
    conn_close_after_flush(c, CLOSE_BAD_REQUEST,
                           srv_of(c)->o.linger_timeout_ms);
}

/* ---- request flow ------------------------------------------------------- */

static const struct http_route *
find_route(struct http_server *srv, struct http_str path, bool *path_known)
{
    *path_known = false;
    for (unsigned i = 0; i < srv->n_routes; i++) {
        const struct http_route *r = &srv->routes[i];
        if (r->prefix
                ? (path.len >= r->len && memcmp(path.p, r->path, r->len) == 0)
                : (path.len == r->len &&
                   memcmp(path.p, r->path, r->len) == 0)) {
            *path_known = true;
            return r;
        }
    }
    return NULL;
}

static void allow_header(unsigned methods, char *out, size_t len)
{
    size_t off = (size_t)snprintf(out, len, "Allow: ");
    bool first = true;

    for (int m = HTTP_GET; m <= HTTP_TRACE && off < len; m++) {
        if (!(methods & HTTP_M(m)))
            continue;
        off += (size_t)snprintf(out + off, len - off, "%s%s", first ? "" : ", ",
                                http_method_name((enum http_method)m));
        first = false;
    }
    if (off < len)
        snprintf(out + off, len - off, "\r\n");
}

/* Starts collecting the body of a request to a body route: the path is
 * kept with it, the answer waits for the last byte. */
static int start_collect(struct http_conn *hc, struct conn *c,
                         const struct http_request *req, uint8_t route)
{
    struct http_server *srv = srv_of(c);
    size_t plen = MIN(req->path.len, (size_t)UINT16_MAX);
    struct http_body *b;

    b = mem_alloc(MEM_HTTP, sizeof(*b) + plen);
    if (!b) {
        conn_close(c, CLOSE_NO_MEMORY);
        return -ENOMEM;
    }
    b->data = NULL;
    b->route = route;
    b->method = (uint8_t)req->method;
    b->keep_alive = req->keep_alive && !srv->draining;
    b->path_len = (uint16_t)plen;
    memcpy(b->path, req->path.p, plen);
    hc->body = b;
    hc->collect = true;
    hc->keep_alive = b->keep_alive;
    return 0;
}

/* Appends a piece of a collected body (max_body was checked by the
 * framing: Content-Length up front, chunked as it goes). */
static void collect(void *arg, const uint8_t *p, size_t n)
{
    struct conn *c = arg;
    struct http_conn *hc = conn_ext(c);
    if (conn_is_closing(c) || !n)
        return;
    if (abuf_append(&hc->body->data, MEM_HTTP, p, n, SIZE_MAX) < 0)
        conn_close(c, CLOSE_NO_MEMORY);
}

static void body_free(struct http_body *b)
{
    if (!b)
        return;
    abuf_free(&b->data, MEM_HTTP);
    mem_free(MEM_HTTP, b);
}

/* Takes the held answer (the caller owns the reference), or NULL if what
 * is pending is a body, or nothing. */
static struct msg *take_held(struct http_conn *hc)
{
    struct msg *m = hc->collect ? NULL : hc->held;

    if (!hc->collect)
        hc->held = NULL;
    return m;
}

/* Takes the collected body (the caller frees it), or NULL if what is
 * pending is an answer, or nothing. */
static struct http_body *take_body(struct http_conn *hc)
{
    struct http_body *b = hc->collect ? hc->body : NULL;

    if (hc->collect) {
        hc->body = NULL;
        hc->collect = false;
    }
    return b;
}

/* Lets go of whatever waits for the body: a bad body, a close. */
static void drop_pending(struct http_conn *hc)
{
    body_free(take_body(hc));
    msg_unref(take_held(hc));
}

/* The body of a body route is complete: run its handler. */
static void run_body_route(struct http_conn *hc, struct conn *c)
{
    struct http_server *srv = srv_of(c);
    struct http_body *b = take_body(hc);
    const struct http_route *r = &srv->routes[b->route];
    struct http_exchange ex = {
        .srv = srv,
        .c = c,
        .method = (enum http_method)b->method,
        .keep_alive = b->keep_alive && !srv->draining,
        .body = b->data ? b->data->data : NULL,
        .body_len = b->data ? b->data->len : 0,
        .path = {b->path, b->path_len},
    };

    r->fn(&ex, r->arg);
    if (!ex.responded && !conn_is_closing(c))
        http_respond(&ex, 500, "text/plain; charset=utf-8", NULL,
                     "500 Internal Server Error\n", 26);
    body_free(b);
    hc->keep_alive = ex.keep_alive;
}

/* A body route's gate: true lets the request through; false if the gate
 * answered (a 500 if it forgot to). */
static bool pass_gate(const struct http_route *r, struct http_exchange *ex)
{
    ex->path = ex->req->path;
    if (r->gate(ex, r->arg))
        return true;
    if (!ex->responded && !ex->deferred && !conn_is_closing(ex->c))
        http_respond(ex, 500, "text/plain; charset=utf-8", NULL,
                     "500 Internal Server Error\n", 26);
    return false;
}

enum dispatched { D_DONE = 0, D_UPGRADED, D_DEFERRED };

void http_defer(struct http_exchange *ex, uint32_t ms)
{
    ex->deferred = true;
    conn_pause_read(ex->c, PAUSE_AUTH);
    conn_set_read_deadline(ex->c, ms ? ms : 1, CLOSE_HEADER_TIMEOUT);
}

void http_resume(struct conn *c)
{
    conn_resume_read(c, PAUSE_AUTH);
}

/* Runs the route for a complete header block. D_UPGRADED: the route
 * upgraded the conn to another protocol (hc is then no longer ours);
 * D_DEFERRED: it will be run again (http_defer). */
static enum dispatched dispatch(struct http_conn *hc, struct conn *c,
                                const struct http_request *req)
{
    struct http_server *srv = srv_of(c);
    struct http_exchange ex = {
        .srv = srv,
        .c = c,
        .req = req,
        .keep_alive = req->keep_alive && !srv->draining,
        .hold = req->has_body && req->keep_alive && !srv->draining,
        .method = req->method,
    };
    const struct http_route *r;
    bool known;

    r = find_route(srv, req->path, &known);
    if (!r) {
        http_respond(&ex, 404, "text/plain; charset=utf-8", NULL,
                     "404 Not Found\n", 14);
    } else if (!(r->methods & HTTP_M(req->method))) {
        char allow[128];
        allow_header(r->methods, allow, sizeof(allow));
        http_respond(&ex, 405, "text/plain; charset=utf-8", allow,
                     "405 Method Not Allowed\n", 23);
    } else if (r->gate && req->method != HTTP_GET && req->method != HTTP_HEAD &&
               !pass_gate(r, &ex)) {
        /* Answered by the gate: no body is collected. */
    } else if (r->want_body && req->has_body && req->method != HTTP_GET &&
               req->method != HTTP_HEAD) {
        /* The handler runs with the whole body (finish_request). */
        if (start_collect(hc, c, req, (uint8_t)(r - srv->routes)) < 0)
            return D_DONE;
        return D_DONE;
    } else {
        ex.path = req->path;
        r->fn(&ex, r->arg);
        if (!ex.responded && !ex.deferred && !conn_is_closing(c))
            http_respond(&ex, 500, "text/plain; charset=utf-8", NULL,
                         "500 Internal Server Error\n", 26);
    }
    if (ex.upgraded)
        return D_UPGRADED; /* hc is the new protocol's state: hands off */
    if (conn_is_closing(c)) {
        /* The close path has run: nothing may be left for it to free. */
        msg_unref(ex.held);
        return D_DONE;
    }
    if (ex.deferred && !ex.responded)
        return D_DEFERRED;
    hc->keep_alive = ex.keep_alive;
    hc->held = ex.held;
    hc->held_status = (uint16_t)ex.status;
    return D_DONE;
}

/* Queues the answer held back while the body was read. */
static void send_held(struct http_conn *hc, struct conn *c)
{
    struct msg *m = take_held(hc);
    int rc;

    if (!m)
        return;
    rc = conn_send(c, m);
    msg_unref(m);
    if (rc < 0) {
        conn_close(c, rc == -ENOBUFS ? CLOSE_SLOW_CONSUMER : CLOSE_NO_MEMORY);
        return;
    }
    count_status(srv_of(c), hc->held_status);
}

/* The request (and its body) is complete: go idle or close. */
static void finish_request(struct http_conn *hc, struct conn *c)
{
    struct http_server *srv = srv_of(c);

    hc->in_request = false;
    hc->scan = 0;
    if (hc->collect)
        run_body_route(hc, c);
    else
        send_held(hc, c);
    if (conn_is_closing(c))
        return;
    if (!hc->keep_alive || srv->draining) {
        hc->phase = PHASE_DONE;
        conn_close_after_flush(c, CLOSE_DONE, srv->o.linger_timeout_ms);
        return;
    }
    hc->phase = PHASE_HEADER;
    conn_set_state(c, CSTATE_IDLE);
    conn_set_read_deadline(c, srv->o.idle_timeout_ms, CLOSE_IDLE_TIMEOUT);
}

static void start_body(struct http_conn *hc, struct conn *c,
                       const struct http_request *req)
{
    struct http_server *srv = srv_of(c);

    if (req->expect_continue && req->version_minor == 1)
        conn_send_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (req->chunked) {
        hc->phase = PHASE_BODY_CHUNKED;
        http_chunked_init(&hc->chunked);
    } else {
        hc->phase = PHASE_BODY_LENGTH;
        hc->body_left = req->content_length;
    }
    conn_set_state(c, CSTATE_BODY);
    conn_set_read_deadline(c, srv->o.body_timeout_ms, CLOSE_BODY_TIMEOUT);
}

static void discard(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    (void)p;
    (void)n;
}

/* Parses one header block at p. Returns bytes consumed, 0 if incomplete. */
static size_t on_header(struct http_conn *hc, struct conn *c, uint8_t *p,
                        size_t len)
{
    struct http_server *srv = srv_of(c);
    struct http_request *req = &srv->req;
    uint32_t scan;
    int status = 0;
    ssize_t n;

    if (!hc->in_request) {
        /* The first byte of a request starts its header deadline. */
        hc->in_request = true;
        hc->scan = 0;
        if (conn_state_of(c) != CSTATE_HEADER) {
            conn_set_state(c, CSTATE_HEADER);
            conn_set_read_deadline(c, srv->o.header_timeout_ms,
                                   CLOSE_HEADER_TIMEOUT);
        }
    }
    scan = hc->scan;
    n = http_parse_request(p, len, &srv->o.lim, &scan, req, &status);
    hc->scan = (uint16_t)MIN(scan, (uint32_t)UINT16_MAX);
    if (n == 0)
        return 0;
    if (n < 0) {
        reject(hc, c, status, NULL);
        return len;
    }
    srv->stats.requests++;
    conn_set_state(c, CSTATE_ACTIVE);
    switch (dispatch(hc, c, req)) {
    case D_UPGRADED:
        return (size_t)n; /* the rest belongs to the new protocol */
    case D_DEFERRED:
        /* Read again from its first byte once resumed (conn.c carries
         * the block), and counted then. */
        srv->stats.requests--;
        hc->scan = 0;
        return 0;
    case D_DONE:
        break;
    }
    if (conn_is_closing(c))
        return len;
    if (req->has_body && (hc->keep_alive || hc->collect)) {
        start_body(hc, c, req);
    } else if (req->has_body) {
        /* Answered and closing: the body is not worth reading. */
        send_held(hc, c);
        if (conn_is_closing(c))
            return len;
        hc->phase = PHASE_DONE;
        conn_close_after_flush(c, CLOSE_DONE, srv->o.linger_timeout_ms);
        return len;
    } else {
        finish_request(hc, c);
    }
    return (size_t)n;
}

static size_t http_on_data(struct conn *c, uint8_t *p, size_t len)
{
    struct http_conn *hc = conn_ext(c);
    struct http_server *srv = srv_of(c);
    size_t off = 0;

    while (off < len && !conn_is_closing(c)) {
        size_t used;
        int status = 0;
        bool done = false;
        ssize_t n;

        switch (hc->phase) {
        case PHASE_HEADER:
            if (conn_queued_bytes(c) >= HTTP_PIPELINE_HIGH) {
                /* Pipelined answers are piling up: let TCP push back. */
                conn_pause_read(c, PAUSE_BACKPRESSURE);
                return off;
            }
            used = on_header(hc, c, p + off, len - off);
            if (used == 0)
                return off; /* incomplete: conn.c carries the tail */
            off += used;
            if (conn_proto(c) != &http_proto)
                return off; /* upgraded: conn.c hands on the rest */
            break;
        case PHASE_BODY_LENGTH:
            used = (size_t)MIN((uint64_t)(len - off), hc->body_left);
            if (hc->collect)
                collect(c, p + off, used);
            hc->body_left -= used;
            off += used;
            if (hc->body_left == 0)
                finish_request(hc, c);
            break;
        case PHASE_BODY_CHUNKED:
            n = http_chunked_parse(&hc->chunked, p + off, len - off,
                                   &srv->o.lim, hc->collect ? collect : discard,
                                   c, &done, &status);
            if (n < 0) {
                /* The held answer is dropped: the request was bad. */
                reject(hc, c, status, NULL);
                return len;
            }
            off += (size_t)n;
            if (done)
                finish_request(hc, c);
            break;
        default:
            return len; /* closing: input is discarded */
        }
    }
    return off;
}

static void http_on_drain(struct conn *c)
{
    struct http_conn *hc = conn_ext(c);
    bool idle = !hc->in_request && hc->phase == PHASE_HEADER;

    /* Shutting down: an idle conn whose last answer just went out is
     * done. */
    if (srv_of(c)->draining && idle) {
        conn_close(c, CLOSE_SHUTDOWN);
        return;
    }
    /* Idle time starts once the last answer has gone out, not when its
     * request was complete: a big answer to a slow reader takes a while,
     * and the write deadline guards that wait. */
    if (idle)
        conn_set_read_deadline(c, srv_of(c)->o.idle_timeout_ms,
                               CLOSE_IDLE_TIMEOUT);
    conn_resume_read(c, PAUSE_BACKPRESSURE);
}

/* An idle deadline that passes while answers are still queued is not
 * idleness: the peer is still taking them (or paused us by not taking
 * them; the write deadline closes it if it stops). Start idle time over;
 * any other deadline closes as usual. */
static bool http_on_timeout(struct conn *c)
{
    if (conn_read_reason(c) != CLOSE_IDLE_TIMEOUT || conn_queued_bytes(c) == 0)
        return false;
    conn_set_read_deadline(c, srv_of(c)->o.idle_timeout_ms, CLOSE_IDLE_TIMEOUT);
    return true;
}

/* The close path: drop a held answer or a body being collected. */
static void http_on_close(struct conn *c, enum close_reason why)
{
    struct http_conn *hc = conn_ext(c);

    (void)why;
    drop_pending(hc);
}

static void drain_one(struct conn *c, void *arg)
{
    struct http_conn *hc = conn_ext(c);

    if (conn_proto(c) != &http_proto)
        return;
    (void)arg;
    if (!hc->in_request && hc->phase == PHASE_HEADER && !conn_queued_bytes(c))
        conn_close(c, CLOSE_SHUTDOWN);
}

void http_server_drain(struct http_server *srv)
{
    srv->draining = true;
    conn_set_each(srv->set, drain_one, srv);
}

void http_server_set_timeouts(struct http_server *srv,
                              const struct http_server_opts *o)
{
    srv->o.header_timeout_ms = o->header_timeout_ms;
    srv->o.body_timeout_ms = o->body_timeout_ms;
    srv->o.idle_timeout_ms = o->idle_timeout_ms;
    srv->o.linger_timeout_ms = o->linger_timeout_ms;
}
