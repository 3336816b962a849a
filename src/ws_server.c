/*
 * ws_server.c - the WebSocket connection protocol (a conn_proto): the
 * upgrade from HTTP, message assembly, liveness, the close handshake and
 * the graceful drain.
 *
 * Keeps: an open WebSocket always has a deadline (ping, pong, drain or
 * close); nothing is buffered for a message except the bytes that have
 * arrived, bounded by max_message, and freed on delivery or close; after
 * a close frame in either direction no input is processed.
 * Must not: make syscalls (conn.c does the I/O, and sets TCP_USER_TIMEOUT
 * at upgrade: conn_set_user_timeout()); allocate while a connection is
 * idle.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ws_server.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "util.h"

#include <openssl/rand.h>

enum ws_phase {
    WSP_OPEN = 0, /* messages flow; the ping deadline is armed */
    WSP_PINGED,   /* a ping is out; the pong deadline is armed */
    WSP_DRAIN,    /* shutting down: our close goes out at the deadline */
    WSP_CLOSING,  /* our close is out; waiting for the peer's */
};

struct ws_server {
    struct conn_set *set;
    struct ws_server_opts o;
    uint32_t max_message; /* o.max_message, capped for the parser */
    unsigned n_bindings;
    struct ws_binding bindings[CONN_MAX_PROTOS];
    uint64_t rng;       /* xorshift state for the drain spread */
    uint32_t key_pos;   /* next unused byte of keys */
    uint8_t keys[1024]; /* random mask keys, refilled by RAND_bytes */
};

static size_t ws_on_data(struct conn *c, uint8_t *p, size_t len);
static void ws_on_drain(struct conn *c);
static bool ws_on_timeout(struct conn *c);
static void ws_on_close(struct conn *c, enum close_reason why);

static const struct conn_proto ws_proto = {
    .name = "websocket",
    .on_data = ws_on_data,
    .on_drain = ws_on_drain,
    .on_timeout = ws_on_timeout,
    .on_close = ws_on_close,
    .messages = true,
};

size_t ws_conn_ext_size(void)
{
    return sizeof(struct ws_conn);
}

bool ws_close_sent(const struct conn *c)
{
    const struct ws_conn *w = conn_ext((struct conn *)c);

    return conn_proto(c) == &ws_proto && w->phase == WSP_CLOSING;
}

bool ws_is_websocket(const struct conn *c)
{
    return conn_proto(c) == &ws_proto;
}

struct ws_server *ws_server_new(struct conn_set *set,
                                const struct ws_server_opts *o)
{
    struct ws_server *ws = mem_calloc(MEM_CONFIG, 1, sizeof(*ws));
    struct timespec ts;

    if (!ws)
        return NULL;
    ws->set = set;
    ws->o = *o;
    ws->max_message = o->max_message < WS_MAX_MESSAGE_LIMIT
                          ? (uint32_t)o->max_message
                          : WS_MAX_MESSAGE_LIMIT;
    clock_gettime(CLOCK_REALTIME, &ts);
    ws->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
              (uint64_t)(uintptr_t)ws;
    if (!ws->rng)
        ws->rng = 0x9e3779b97f4a7c15ull;
    ws->key_pos = sizeof(ws->keys); /* filled on first use */
    return ws;
}

void ws_server_free(struct ws_server *ws)
{
    mem_free(MEM_CONFIG, ws);
}

static uint64_t next_random(struct ws_server *ws)
{
    uint64_t x = ws->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ws->rng = x;
    return x;
}

/* A fresh mask key from the CSPRNG for every client frame (RFC 6455
 * 5.3), taken from a block refilled 256 keys at a time so a frame costs
 * no RAND_bytes call of its own. Returns false if OpenSSL fails. */
bool ws_server_mask_key(struct ws_server *ws, uint8_t key[4])
{
    if (ws->key_pos + 4 > sizeof(ws->keys)) {
        if (RAND_bytes(ws->keys, (int)sizeof(ws->keys)) != 1)
            return false;
        ws->key_pos = 0;
    }
    memcpy(key, ws->keys + ws->key_pos, 4);
    ws->key_pos += 4;
    return true;
}

struct ws_binding *ws_server_bind(struct ws_server *ws,
                                  const struct ws_handlers *h)
{
    for (unsigned i = 0; i < ws->n_bindings; i++)
        if (ws->bindings[i].h == h)
            return &ws->bindings[i];
    if (ws->n_bindings >= CONN_MAX_PROTOS)
        return NULL;
    ws->bindings[ws->n_bindings].srv = ws;
    ws->bindings[ws->n_bindings].h = h;
    return &ws->bindings[ws->n_bindings++];
}

static struct ws_server *srv_of(const struct conn *c)
{
    return ((struct ws_binding *)conn_ctx(c))->srv;
}

static const struct ws_handlers *h_of(const struct conn *c)
{
    return ((struct ws_binding *)conn_ctx(c))->h;
}

void *ws_user(const struct conn *c)
{
    return ((const struct ws_conn *)conn_ext((struct conn *)c))->user;
}

void ws_set_user(struct conn *c, void *user)
{
    ((struct ws_conn *)conn_ext(c))->user = user;
}

/* ---- sending ----------------------------------------------------------- */

/* Queues one frame (header + copy of payload). Control frames (at most
 * 127 bytes, produced at most once per frame read, and reading stops
 * while the queue is over its limit) always fit; data frames respect the
 * limit unless overcap. Returns 0 or -errno (-ENOBUFS: queue full). */
static int send_frame_flags(struct conn *c, uint8_t opcode, const void *p,
                            size_t len, bool overcap)
{
    struct ws_conn *w = conn_ext(c);
    uint8_t hdr[WS_MAX_HEADER];
    uint8_t key[4];
    size_t hl;
    struct msg *m;
    int rc;

    if (w->client && !ws_server_mask_key(srv_of(c), key))
        return -ENOMEM;
    hl = ws_encode_header(hdr, opcode, true, len, w->client ? key : NULL);
    m = msg_new(NULL, hl + len);
    if (!m)
        return -ENOMEM;
    memcpy(m->data, hdr, hl);
    if (len) {
        memcpy(m->data + hl, p, len);
        if (w->client)
            ws_mask(m->data + hl, len, key, 0);
    }
    rc = conn_send_flags(c, m,
                         overcap || (opcode & 0x8) ? CONN_SEND_OVERCAP : 0);
    msg_unref(m);
    return rc;
}

static int send_frame(struct conn *c, uint8_t opcode, const void *p, size_t len)
{
    return send_frame_flags(c, opcode, p, len, false);
}

enum ws_send_result ws_send(struct conn *c, const void *data, size_t len,
                            bool text)
{
    struct ws_conn *w = conn_ext(c);
    int rc;

    if (conn_proto(c) != &ws_proto || conn_is_closing(c) ||
        w->phase >= WSP_CLOSING)
        return WS_SEND_DROPPED;
    /* A 1:1 stream never drops: it queues past the limit and reading
     * pauses (ws_on_data) until the queue drains. */
    rc = send_frame_flags(c, text ? WS_OP_TEXT : WS_OP_BINARY, data, len,
                          h_of(c)->pause_on_backpressure);
    if (rc == -ENOMEM) {
        conn_close(c, CLOSE_NO_MEMORY);
        return WS_SEND_DROPPED;
    }
    if (rc < 0)
        return WS_SEND_DROPPED;
    return conn_queue_over_limit(c) ? WS_SEND_BACKPRESSURE : WS_SEND_OK;
}

/* Sends our close frame and waits close_timeout for the peer's. */
static void start_close(struct conn *c, uint16_t code, const char *reason)
{
    struct ws_conn *w = conn_ext(c);
    uint8_t payload[WS_MAX_CONTROL];
    size_t n = ws_encode_close_payload(payload, code, reason);

    w->phase = WSP_CLOSING;
    if (send_frame(c, WS_OP_CLOSE, payload, n) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    conn_set_read_deadline(c, srv_of(c)->o.close_timeout_ms,
                           CLOSE_CLOSE_TIMEOUT);
}

void ws_close_purge(struct conn *c, uint16_t code, const char *reason,
                    enum close_reason why)
{
    struct ws_conn *w = conn_ext(c);
    uint8_t payload[WS_MAX_CONTROL];
    size_t n = ws_encode_close_payload(payload, code, reason);

    if (conn_proto(c) != &ws_proto || conn_is_closing(c) ||
        conn_is_lingering(c))
        return;
    conn_queue_purge(c);
    w->phase = WSP_CLOSING;
    if (send_frame(c, WS_OP_CLOSE, payload, n) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    conn_close_within(c, why, srv_of(c)->o.close_timeout_ms);
}

int ws_close(struct conn *c, uint16_t code, const char *reason)
{
    struct ws_conn *w = conn_ext(c);

    if (conn_proto(c) != &ws_proto || conn_is_closing(c) ||
        w->phase >= WSP_CLOSING)
        return -EALREADY;
    start_close(c, code, reason);
    return 0;
}

/* The peer broke the protocol: close frame with code, then TCP close. */
static void fail(struct conn *c, uint16_t code)
{
    struct ws_conn *w = conn_ext(c);
    uint8_t payload[2];
    size_t n = ws_encode_close_payload(payload, code, NULL);
    char peer[64];

    LOG_INFO("websocket protocol error", "conn=%llu peer=%s code=%u",
             conn_id(c), conn_peer_str(c, peer, sizeof(peer)), code);
    w->phase = WSP_CLOSING;
    w->ps.closed = true;
    if (send_frame(c, WS_OP_CLOSE, payload, n) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    conn_close_after_flush(
        c, code == WS_CLOSE_TOO_BIG ? CLOSE_TOO_BIG : CLOSE_PROTOCOL_ERROR,
        srv_of(c)->o.close_timeout_ms);
}

/* ---- the upgrade ------------------------------------------------------- */

int ws_server_upgrade(struct ws_server *ws, struct http_exchange *ex,
                      const struct ws_handlers *h)
{
    struct ws_handshake hs;
    char accept[WS_ACCEPT_LEN + 1];
    char head[512];
    struct conn *c = ex->c;
    struct ws_binding *b;
    ssize_t n;
    int status;

    status = ws_handshake_check(ex->req, &hs);
    if (!status && ex->req->has_body)
        status = 400; /* an upgrade request carries no body */
    if (status == 426) {
        http_respond(ex, 426, "text/plain; charset=utf-8",
                     "Sec-WebSocket-Version: 13\r\n",
                     "426 Upgrade Required: WebSocket version 13\n", 43);
        return status;
    }
    if (status == 405) {
        http_respond(ex, 405, "text/plain; charset=utf-8", "Allow: GET\r\n",
                     "405 Method Not Allowed\n", 23);
        return status;
    }
    if (status) {
        ex->keep_alive = false;
        http_respond(ex, status, "text/plain; charset=utf-8", NULL,
                     "400 Bad Request: not a WebSocket handshake\n", 43);
        return status;
    }
    if (!ws_origin_allowed(hs.origin, ws->o.allowed_origins, false)) {
        http_respond(ex, 403, "text/plain; charset=utf-8", NULL,
                     "403 Forbidden: origin not allowed\n", 34);
        return 403;
    }
    if (!ws_accept_key(hs.key.p, hs.key.len, accept)) {
        /* OpenSSL could not allocate its digest context. */
        ex->keep_alive = false;
        http_respond(ex, 503, "text/plain; charset=utf-8", NULL,
                     "503 Service Unavailable\n", 24);
        return 503;
    }
    b = ws_server_bind(ws, h);
    if (!b) {
        ex->keep_alive = false;
        http_respond(ex, 500, "text/plain; charset=utf-8", NULL,
                     "500 Internal Server Error\n", 26);
        return 500;
    }
    n = ws_format_upgrade(head, sizeof(head), accept, NULL);
    if (n < 0 || conn_send_bytes(c, head, (size_t)n) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return 500;
    }
    ex->responded = true;
    ex->upgraded = true;
    ws_conn_open(b, c, false);
    return 0;
}

void ws_conn_open(struct ws_binding *b, struct conn *c, bool client)
{
    struct ws_conn *w = conn_ext(c);
    struct ws_server *ws = b->srv;
    void *user = client ? w->user : NULL;

    memset(w, 0, sizeof(*w));
    w->user = user;
    w->client = client;
    ws_pstate_init(&w->ps);
    if (conn_set_proto_ctx(c, &ws_proto, b) < 0) {
        conn_close(c, CLOSE_ERROR);
        return;
    }
    conn_set_state(c, CSTATE_WEBSOCKET);
    conn_set_read_deadline(c, ws->o.ping_interval_ms, CLOSE_PONG_TIMEOUT);
    /* A peer that vanished with bytes queued is found in seconds, not
     * the kernel's default of about 15 minutes. */
    conn_set_user_timeout(c, ws->o.ping_interval_ms + ws->o.pong_timeout_ms);
    w->opened = true;
    if (b->h->on_open)
        b->h->on_open(c, b->h->arg);
}

/* ---- receiving --------------------------------------------------------- */

static void deliver(struct conn *c, struct ws_conn *w, const uint8_t *p,
                    size_t len, bool text)
{
    const struct ws_handlers *h = h_of(c);

    (void)w;
    if (h->on_message)
        h->on_message(c, p, len, text, h->arg);
}

static void on_data_piece(struct conn *c, struct ws_conn *w,
                          const struct ws_event *ev)
{
    if (ev->first && ev->fin && !w->abuf) {
        /* The whole message is in the read buffer: no copy. */
        deliver(c, w, ev->data, ev->len, ev->opcode == WS_OP_TEXT);
        return;
    }
    if (ev->first)
        w->text = ev->opcode == WS_OP_TEXT;
    /* The parser already holds the total under max_message. */
    if (abuf_append(&w->abuf, MEM_MSG, ev->data, ev->len, SIZE_MAX) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    if (ev->fin) {
        struct abuf *b = w->abuf;
        w->abuf = NULL;
        deliver(c, w, b->data, b->len, w->text);
        abuf_free(&b, MEM_MSG);
    }
}

/* Tells the application the conn is closing, once: with the peer's code
 * as soon as its close frame arrives, or 1006 if the conn ends without
 * one. */
static void notify_close(struct conn *c, struct ws_conn *w, uint16_t code)
{
    const struct ws_handlers *h = h_of(c);

    if (!w->opened)
        return;
    w->opened = false;
    if (h->on_close)
        h->on_close(c, code, h->arg);
}

static void on_close_frame(struct conn *c, struct ws_conn *w,
                           const struct ws_event *ev)
{
    uint8_t payload[WS_MAX_CONTROL];
    size_t n = 0;
    bool answer = w->phase == WSP_CLOSING;

    notify_close(c, w, ev->close_code);
    if (conn_is_closing(c))
        return;
    if (answer) {
        /* The answer to our close: the handshake is complete. Our close
         * may still be queued (sent in this same turn): write it first. */
        if (conn_queued_bytes(c))
            conn_close_after_flush(c, CLOSE_DONE,
                                   srv_of(c)->o.close_timeout_ms);
        else
            conn_close(c, CLOSE_DONE);
        return;
    }
    /* Echo the peer's code (none if it sent none), then close TCP. */
    if (ev->close_code != WS_CLOSE_NO_STATUS)
        n = ws_encode_close_payload(payload, ev->close_code, NULL);
    w->phase = WSP_CLOSING;
    if (send_frame(c, WS_OP_CLOSE, payload, n) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    conn_close_after_flush(c, CLOSE_DONE, srv_of(c)->o.close_timeout_ms);
}

static size_t ws_on_data(struct conn *c, uint8_t *p, size_t len)
{
    struct ws_conn *w = conn_ext(c);
    struct ws_server *srv = srv_of(c);
    struct ws_parser parser;
    size_t off = 0;

    /* Any inbound byte is proof of life; while a message is under way,
     * its own deadline stands instead (not extended by trickling). */
    if (w->phase == WSP_OPEN || w->phase == WSP_PINGED) {
        w->phase = WSP_OPEN;
        if (!conn_in_message(c))
            conn_set_read_deadline(c, srv->o.ping_interval_ms,
                                   CLOSE_PONG_TIMEOUT);
    }
    /* The conn keeps 14 bytes of parser state; the settings come from the
     * server. */
    parser.s = w->ps;
    parser.server = !w->client;
    parser.max_message = srv->max_message;
    while (off < len && !conn_is_closing(c) && !conn_is_lingering(c)) {
        struct ws_event ev;
        uint16_t code = 0;
        ssize_t n;

        if (conn_queue_over_limit(c) && h_of(c)->pause_on_backpressure &&
            !w->client) {
            /* A 1:1 stream's answers pile up: stop reading until they
             * drain, so TCP pushes back on the peer. A fan-out conn
             * keeps reading, and so does a client: the server is the one
             * that pushes back, and if both sides stopped reading while
             * their writes wait, each would wait for the other. */
            conn_pause_read(c, PAUSE_BACKPRESSURE);
            break;
        }
        n = ws_parse(&parser, p + off, len - off, &ev, &code);
        if (n < 0) {
            w->ps = parser.s;
            fail(c, code);
            return len;
        }
        if (n == 0)
            break;
        off += (size_t)n;
        /* Saved before the event runs: callbacks may look at it (fail()
         * sets closed), and the conn may be gone from under us after. */
        w->ps = parser.s;
        switch (ev.type) {
        case WS_EV_DATA:
            on_data_piece(c, w, &ev);
            break;
        case WS_EV_PING:
            /* Over the queue limit, only the most recent ping needs its
             * pong (RFC 6455 5.5.3): skip this one, bounding the queue. */
            if (w->phase < WSP_CLOSING && !conn_queue_over_limit(c) &&
                send_frame(c, WS_OP_PONG, ev.data, ev.len) < 0)
                conn_close(c, CLOSE_NO_MEMORY);
            break;
        case WS_EV_PONG:
            break; /* proof of life, counted above */
        case WS_EV_CLOSE:
            on_close_frame(c, w, &ev);
            return len;
        case WS_EV_NONE:
            break;
        }
        if (w->ps.closed)
            return len;
        if (conn_paused(c) && !conn_is_closing(c) && !conn_is_lingering(c))
            break; /* a rate or memory pause: the rest is carried */
    }
    w->ps = parser.s;
    if (w->ps.closed)
        return len; /* nothing after a close frame */
    /* A frame or a fragmented message begun and not ended, or a partial
     * header left for the carry: the message deadline runs (invariant
     * 2). Once it is whole, the ping deadline is back. */
    if (w->phase == WSP_OPEN &&
        conn_message_update(c, off < len || w->ps.in_frame || w->ps.msg_op))
        conn_set_read_deadline(c, srv->o.ping_interval_ms, CLOSE_PONG_TIMEOUT);
    return off;
}

static void ws_on_drain(struct conn *c)
{
    const struct ws_handlers *h = h_of(c);

    conn_resume_read(c, PAUSE_BACKPRESSURE);
    if (h->on_drain && !conn_is_closing(c))
        h->on_drain(c, h->arg);
}

/* The read deadline passed: ping, give up, or start the drain's close. */
static bool ws_on_timeout(struct conn *c)
{
    struct ws_conn *w = conn_ext(c);

    if (conn_read_reason(c) == CLOSE_MESSAGE_TIMEOUT) {
        /* A message begun and not finished in time: tell the peer why
         * (it may be alive, sending pings), then close. */
        ws_close_purge(c, WS_CLOSE_POLICY, "message timeout",
                       CLOSE_MESSAGE_TIMEOUT);
        return !conn_is_closing(c);
    }

    switch (w->phase) {
    case WSP_OPEN:
        if (send_frame(c, WS_OP_PING, NULL, 0) < 0)
            return false;
        w->phase = WSP_PINGED;
        conn_set_read_deadline(c, srv_of(c)->o.pong_timeout_ms,
                               CLOSE_PONG_TIMEOUT);
        return true;
    case WSP_DRAIN:
        start_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        return !conn_is_closing(c);
    default:
        return false; /* pong or close reply never came */
    }
}

static void ws_on_close(struct conn *c, enum close_reason why)
{
    struct ws_conn *w = conn_ext(c);

    (void)why;
    abuf_free(&w->abuf, MEM_MSG);
    notify_close(c, w, WS_CLOSE_ABNORMAL);
}

static void drain_one(struct conn *c, void *arg)
{
    struct ws_server *ws = arg;
    struct ws_conn *w = conn_ext(c);
    uint32_t delay;

    if (conn_proto(c) != &ws_proto || srv_of(c) != ws || w->phase >= WSP_DRAIN)
        return;
    delay = ws->o.drain_spread_ms
                ? (uint32_t)(next_random(ws) % ws->o.drain_spread_ms) + 1
                : 1;
    w->phase = WSP_DRAIN;
    conn_set_read_deadline(c, delay, CLOSE_SHUTDOWN);
}

void ws_server_drain(struct ws_server *ws)
{
    conn_set_each(ws->set, drain_one, ws);
}

void ws_server_set_timeouts(struct ws_server *ws,
                            const struct ws_server_opts *o)
{
    ws->o.ping_interval_ms = o->ping_interval_ms;
    ws->o.pong_timeout_ms = o->pong_timeout_ms;
    ws->o.close_timeout_ms = o->close_timeout_ms;
    ws->o.drain_spread_ms = o->drain_spread_ms;
}
