/*
 * push.c - /sub and /pub over WebSocket and HTTP; see push.h.
 *
 * Keeps: a subscriber's pub/sub state lives exactly as long as its
 * WebSocket (freed in on_close); a publisher is never read faster than its
 * token buckets allow, and not at all while the process is over its
 * memory budget. Must not: hold a message beyond the publish call.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "push.h"
#include "auth.h"
#include "log.h"
#include "mem.h"
#include "ratelimit.h"
#include "frame.h"
#include "history.h"
#include "sse.h"
#include "util.h"
#include "ws.h"

struct push {
    struct conn_set *set;
    struct http_server *http;
    struct ws_server *ws;
    struct pubsub *ps;
    struct push_opts o;
    struct ws_handlers sub_h;
    struct ws_handlers pub_h;
};

/* A WebSocket publisher: its channel and token buckets. */
struct publisher {
    struct push *p;
    struct conn *c;
    struct timer resume; /* ends a rate pause */
    struct ratelimit msgs, bytes;
    uint32_t debt_msgs, debt_bytes; /* taken by a message already out */
    uint16_t len;
    char name[CHANNEL_NAME_MAX + 1];
};

static void pub_resume(struct timer *t);
static struct publisher *publisher_new(struct push *p, struct conn *c,
                                       const void *name, size_t n);
static void publisher_free(struct conn *c, struct publisher *pb);
static bool publish_paced(struct conn *c, struct publisher *pb,
                          const uint8_t *data, size_t len, bool text);

const struct pubsub *push_pubsub(const struct push *p)
{
    return p->ps;
}

static void respond_text(struct http_exchange *ex, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, msg);

    http_respond(ex, status, "text/plain; charset=utf-8", NULL, body,
                 (size_t)MIN((size_t)n, sizeof(body) - 1));
}

/* Checks a comma-separated channel list. Returns NULL or why not. */
static const char *check_list(const struct push *p, const char *s, size_t n)
{
    uint32_t count = 0;
    size_t a = 0;

    if (n == 0)
        return "no channel: use /sub/CHANNEL[,CHANNEL...]";
    while (a <= n) {
        size_t b = a;
        while (b < n && s[b] != ',')
            b++;
        if (!channel_name_valid((const uint8_t *)s + a, b - a))
            return "bad channel name: 1-128 of a-z A-Z 0-9 - _ . : @";
        if (++count > p->o.pubsub.max_channels_per_conn)
            return "too many channels for one connection "
                   "(--max-channels-per-conn)";
        a = b + 1;
    }
    return NULL;
}

/* ---- recovery: ids in requests ------------------------------------------ */

/* The value of name in the request's query ("a=1&since=x"), or false. */
static bool query_get(const struct http_request *req, const char *name,
                      struct http_str *val)
{
    struct http_str q = req->query;
    size_t nl = strlen(name), a = 0;

    while (a < q.len) {
        size_t b = a;
        while (b < q.len && q.p[b] != '&')
            b++;
        if (b - a > nl && q.p[a + nl] == '=' && !memcmp(q.p + a, name, nl)) {
            *val = (struct http_str){q.p + a + nl + 1, b - a - nl - 1};
            return true;
        }
        a = b + 1;
    }
    return false;
}

/* Parses an id from a query value, where ':' may come as %3A (a browser's
 * URLSearchParams writes it so). */
static bool query_id(struct http_str v, uint64_t *epoch, uint64_t *off)
{
    char id[HISTORY_ID_MAX + 8];
    size_t n = 0;

    for (size_t i = 0; i < v.len; i++) {
        if (n + 1 >= sizeof(id))
            return false;
        if (v.p[i] == '%' && i + 2 < v.len && v.p[i + 1] == '3' &&
            (v.p[i + 2] == 'A' || v.p[i + 2] == 'a')) {
            id[n++] = ':';
            i += 2;
        } else {
            id[n++] = v.p[i];
        }
    }
    return history_parse_id(id, n, epoch, off);
}

/* What a subscribe request asks of the history. */
struct since {
    bool set;       /* an id was given: recover (or reset) */
    uint64_t epoch; /* 0:0 for an id that means nothing here: a reset */
    uint64_t off;
};

/* Recovery for each channel of list[0..n) (separated by sep), after s
 * subscribed to them all. */
static void recover_list(struct push *p, struct conn *c, struct subscriber *s,
                         const char *list, size_t n, char sep,
                         const struct since *since)
{
    bool several = memchr(list, sep, n) != NULL;
    size_t a = 0;

    if (!since->set)
        return;
    /* A replay may close c as a slow consumer, and free s with it. */
    while (a < n && !conn_is_closing(c)) {
        size_t b = a;
        while (b < n && list[b] != sep)
            b++;
        pubsub_recover(p->ps, s, list + a, b - a, since->epoch, since->off,
                       several);
        a = b + 1;
    }
}

/* The WebSocket subscriber's ?since=ID and ?ids=1. Returns NULL or why the
 * request is bad. */
static const char *ws_since(const struct http_request *req, struct since *since,
                            bool *ids)
{
    struct http_str v;

    memset(since, 0, sizeof(*since));
    *ids = query_get(req, "ids", &v) && v.len == 1 && v.p[0] == '1';
    if (!query_get(req, "since", &v))
        return NULL;
    if (!query_id(v, &since->epoch, &since->off))
        return "bad since: expected EPOCH:OFFSET (an id moor gave)";
    since->set = true;
    return NULL;
}

/* An event stream's Last-Event-ID header (an EventSource sends it when it
 * reconnects), else ?last_event_id= (its first connect cannot set a
 * header), else ?since=. A header that is not an EPOCH:OFFSET (say, a
 * number from a server without history) is an id that means nothing
 * here: a reset, so the client is told, not refused (a 400 would stop an
 * EventSource for good). Without history a decimal id is taken as before
 * (ids go on from the server's count). Returns NULL or why the request
 * is bad. */
static const char *sse_since(const struct push *p,
                             const struct http_request *req,
                             struct since *since)
{
    const struct http_str *last = http_header_get(req, "last-event-id");
    struct http_str v;
    uint64_t dec;

    memset(since, 0, sizeof(*since));
    if (last) {
        if (history_parse_id(last->p, last->len, &since->epoch, &since->off)) {
            since->set = true;
        } else if (!sse_parse_last_event_id(last->p, last->len, &dec)) {
            if (!pubsub_history_on(p->ps))
                return "bad Last-Event-ID: expected an id moor gave";
            since->set = true;
        } else {
            since->set = pubsub_history_on(p->ps); /* 0:0: a reset */
        }
        return NULL;
    }
    if (!query_get(req, "last_event_id", &v) && !query_get(req, "since", &v))
        return NULL;
    if (!query_id(v, &since->epoch, &since->off))
        return "bad last_event_id: expected EPOCH:OFFSET (an id moor gave)";
    since->set = true;
    return NULL;
}

/* ---- who may ------------------------------------------------------------ */

/* Refuses ex for reason (auth.h): 401 with the challenge of RFC 6750 3
 * for a missing or bad token, 403 for a channel the token does not grant,
 * 503 when memory ran out. The body says why; the token is never shown. */
static void deny(struct http_exchange *ex, struct push *p, unsigned reason,
                 const char *what)
{
    char extra[160], body[160];
    int status = 401, n;

    auth_count_denied(p->o.auth, ex->c, reason, what);
    if (reason == AUTH_NOT_ALLOWED || reason == AUTH_CB_DENIED)
        status = 403;
    else if (reason == JWT_NO_MEMORY || reason == AUTH_NO_SESSION ||
             reason == AUTH_CB_ERROR || reason == AUTH_CB_TIMEOUT ||
             reason == AUTH_CB_BUSY)
        status = 503;
    if (status == 401 && reason == AUTH_NO_TOKEN)
        snprintf(extra, sizeof(extra),
                 "WWW-Authenticate: Bearer realm=\"moor\"\r\n");
    else if (status == 401)
        snprintf(extra, sizeof(extra),
                 "WWW-Authenticate: Bearer realm=\"moor\", "
                 "error=\"invalid_token\", error_description=\"%s\"\r\n",
                 auth_reason_name(reason));
    else if (status == 403)
        snprintf(extra, sizeof(extra),
                 "WWW-Authenticate: Bearer realm=\"moor\", "
                 "error=\"insufficient_scope\"\r\n");
    else
        snprintf(extra, sizeof(extra), "Retry-After: 1\r\n");
    n = snprintf(body, sizeof(body), "%d %s: %s (%s)\n", status,
                 http_reason(status),
                 reason == AUTH_NO_TOKEN
                     ? "a token is needed (Authorization: Bearer, ?token=)"
                 : reason == AUTH_NOT_ALLOWED ? "the token does not grant this"
                 : reason == AUTH_CB_DENIED   ? "refused by the auth service"
                 : status == 503              ? "cannot decide now, retry later"
                                              : "the token was refused",
                 auth_reason_name(reason));
    ex->keep_alive = false; /* a body to come is not read */
    ex->hold = false;
    http_respond(ex, status, "text/plain; charset=utf-8", extra, body,
                 (size_t)MIN((size_t)n, sizeof(body) - 1));
}

static bool wants_sse(const struct http_request *req);

/* --auth url: the callback's answer for ex (the request waits, unread,
 * while it is asked: http_defer); then the same rule on its grant. */
static bool ask(struct http_exchange *ex, struct push *p, bool publish,
                const char *list, size_t n, struct jwt_grant *g)
{
    struct auth_question q = {
        .publish = publish,
        .list = list,
        .n = n,
        .sep = ',',
        .protocol = ex->method != HTTP_GET           ? "http"
                    : !publish && wants_sse(ex->req) ? "sse"
                                                     : "websocket",
        .req = ex->req,
    };
    const char *what = publish ? "publish" : "subscribe";
    unsigned reason = 0;

    switch (auth_ask(p->o.auth, ex->c, &q, g, &reason)) {
    case AUTH_WAIT:
        http_defer(ex, auth_wait_ms(p->o.auth) + 1000);
        return false;
    case AUTH_DENY:
        deny(ex, p, reason, what);
        return false;
    case AUTH_ALLOW:
        break;
    }
    if (!auth_grant_list(g, publish, list, n, ',')) {
        jwt_grant_free(g);
        deny(ex, p, AUTH_NOT_ALLOWED, what);
        return false;
    }
    auth_count_allowed(p->o.auth);
    return true;
}

/* With --auth: the request's token must verify and grant every channel of
 * list[0..n) (comma-separated) for subscribing, or the one for
 * publishing. True: allowed, *g filled (free it with jwt_grant_free(),
 * empty without auth); false: refused and answered. */
static bool authorize(struct http_exchange *ex, struct push *p, bool publish,
                      const char *list, size_t n, struct jwt_grant *g)
{
    struct http_str tok;
    enum jwt_reason r;

    memset(g, 0, sizeof(*g));
    if (!auth_on(p->o.auth))
        return true;
    if (auth_is_callback(p->o.auth))
        return ask(ex, p, publish, list, n, g);
    if (!auth_find_token(p->o.auth, ex->req, &tok)) {
        deny(ex, p, AUTH_NO_TOKEN, publish ? "publish" : "subscribe");
        return false;
    }
    r = auth_check(p->o.auth, tok.p, tok.len, g);
    if (r != JWT_OK) {
        deny(ex, p, r, publish ? "publish" : "subscribe");
        return false;
    }
    if (!auth_grant_list(g, publish, list, n, ',')) {
        jwt_grant_free(g);
        deny(ex, p, AUTH_NOT_ALLOWED, publish ? "publish" : "subscribe");
        return false;
    }
    auth_count_allowed(p->o.auth);
    return true;
}

/* c was allowed with g: its token's expiry now closes it. False (and c
 * closed the protocol's way) when memory ran out. */
static bool track(struct push *p, struct conn *c, const struct jwt_grant *g)
{
    if (auth_attach(p->o.auth, c, g) == 0)
        return true;
    auth_count_denied(p->o.auth, c, AUTH_NO_SESSION, "track expiry");
    if (ws_is_websocket(c))
        ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
    else
        conn_close(c, CLOSE_NO_MEMORY);
    return false;
}

/* ---- Server-Sent Events ------------------------------------------------ */

/* An SSE subscriber's conn ext (inside the HTTP conn's area). */
struct sse_conn {
    struct subscriber *s;
};

static struct push *push_of(const struct conn *c)
{
    return conn_ctx(c);
}

static size_t sse_on_data(struct conn *c, uint8_t *p, size_t len)
{
    /* The client has nothing more to say on an event stream: its bytes
     * are dropped. Over TLS, half a record started the message deadline;
     * now it is whole, the heartbeat deadline is back. */
    (void)p;
    if (conn_message_update(c, false))
        conn_set_read_deadline(c, push_of(c)->o.sse_heartbeat_ms,
                               CLOSE_IDLE_TIMEOUT);
    return len;
}

/* The heartbeat: a comment line every sse_heartbeat, so proxies keep the
 * stream and a dead peer shows (write timeout, TCP_USER_TIMEOUT). */
static bool sse_on_timeout(struct conn *c)
{
    static const char hb[] = ": heartbeat\n\n";

    if (conn_read_reason(c) != CLOSE_IDLE_TIMEOUT)
        return false; /* half a TLS record not finished in time */
    if (conn_queued_bytes(c) == 0)
        conn_send_bytes(c, hb, sizeof(hb) - 1);
    conn_set_read_deadline(c, push_of(c)->o.sse_heartbeat_ms,
                           CLOSE_IDLE_TIMEOUT);
    return !conn_is_closing(c);
}

static void sse_on_drain(struct conn *c)
{
    struct sse_conn *sc = conn_ext(c);

    if (sc->s)
        pubsub_subscriber_drained(push_of(c)->ps, sc->s);
}

static void sse_on_close(struct conn *c, enum close_reason why)
{
    struct sse_conn *sc = conn_ext(c);

    (void)why;
    pubsub_subscriber_free(push_of(c)->ps, sc->s);
    sc->s = NULL;
    auth_detach(push_of(c)->o.auth, c);
}

static const struct conn_proto sse_proto = {
    .name = "sse",
    .on_data = sse_on_data,
    .on_drain = sse_on_drain,
    .on_timeout = sse_on_timeout,
    .on_close = sse_on_close,
    .messages = true, /* only half a TLS record can be one */
};

static bool wants_sse(const struct http_request *req)
{
    const struct http_str *acc = http_header_get(req, "accept");

    if (!acc)
        return false;
    for (size_t i = 0; i + 17 <= acc->len; i++)
        if (!strncasecmp(acc->p + i, "text/event-stream", 17))
            return true;
    return false;
}

/* Answers the subscription as an event stream and hands the conn over. */
static void start_sse(struct http_exchange *ex, struct push *p,
                      const char *list, size_t n, const struct jwt_grant *g)
{
    const struct http_str *origin;
    struct since since;
    char extra[320] = "";
    struct conn *c = ex->c;
    struct sse_conn *sc;
    char head[1024];
    uint8_t retry[SSE_RETRY_MAX];
    const char *why = NULL;
    ssize_t hl;
    size_t rl;

    if (ex->req->has_body) {
        /* A subscription carries no body (nor does a WebSocket upgrade):
         * 400 at once, and the body is not read (the conn closes). */
        ex->keep_alive = false;
        respond_text(ex, 400, "an event-stream request carries no body");
        return;
    }
    why = sse_since(p, ex->req, &since);
    if (why) {
        respond_text(ex, 400, why);
        return;
    }
    origin = http_header_get(ex->req, "origin");
    if (origin) {
        /* EventSource from a page of another origin needs CORS; the same
         * --allowed-origins rule as WebSocket decides. */
        if (!ws_origin_allowed(*origin, p->o.allowed_origins, false)) {
            respond_text(ex, 403, "origin not allowed (--allowed-origins)");
            return;
        }
        if (origin->len < 256)
            snprintf(extra, sizeof(extra),
                     "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
                     (int)origin->len, origin->p);
    }
    hl = sse_format_head(head, sizeof(head), extra[0] ? extra : NULL);
    rl = sse_encode_retry(retry, sizeof(retry), p->o.sse_retry_ms);
    if (hl < 0 || conn_send_bytes(c, head, (size_t)hl) < 0 ||
        conn_send_bytes(c, retry, rl) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    ex->responded = true;
    ex->upgraded = true;
    if (conn_set_proto_ctx(c, &sse_proto, p) < 0) {
        conn_close(c, CLOSE_ERROR);
        return;
    }
    conn_set_state(c, CSTATE_SSE);
    conn_set_read_deadline(c, p->o.sse_heartbeat_ms, CLOSE_IDLE_TIMEOUT);
    sc = conn_ext(c);
    memset(sc, 0, sizeof(*sc));
    sc->s = pubsub_subscriber_new(p->ps, c, PS_SSE);
    if (!sc->s) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    if (pubsub_subscribe_list(p->ps, sc->s, list, n, &why) < 0) {
        LOG_INFO("sse subscription refused", "conn=%llu why=\"%s\"", conn_id(c),
                 why);
        conn_close_after_flush(c, CLOSE_DONE, 1000);
        return;
    }
    if (!track(p, c, g))
        return;
    recover_list(p, c, sc->s, list, n, ',', &since);
}

/* ---- length-prefixed TCP ------------------------------------------------ */

/* A TCP conn's ext: 32 bytes. */
struct tcp_conn {
    struct frame_pstate ps;
    uint8_t role; /* 0: waiting for the command; TCP_AUTHED; TCP_SUB;
                     TCP_PUB */
    union {
        struct subscriber *s;
        struct publisher *pb;
        struct jwt_grant *g; /* TCP_AUTHED: what AUTH granted */
    };
    struct abuf *abuf; /* a frame arriving in pieces */
};

enum { TCP_SUB = 1, TCP_PUB = 2, TCP_AUTHED = 3, TCP_AUTH_WAIT = 4 };

static size_t tcp_on_data(struct conn *c, uint8_t *p, size_t len);
static bool tcp_on_timeout(struct conn *c);
static void tcp_on_close(struct conn *c, enum close_reason why);
static void tcp_on_drain(struct conn *c);
static void tcp_on_ready(struct conn *c, int err);

static const struct conn_proto tcp_proto = {
    .name = "tcp",
    .on_connect = tcp_on_ready,
    .on_data = tcp_on_data,
    .on_drain = tcp_on_drain,
    .on_timeout = tcp_on_timeout,
    .on_close = tcp_on_close,
    .messages = true,
};

void push_tcp_accept(struct push *p, int fd, struct tls_ctx *tls,
                     uint32_t handshake_ms)
{
    struct conn *c =
        tls ? conn_new_ctx(p->set, fd, &tcp_proto, p, 32, handshake_ms,
                           CLOSE_HANDSHAKE_TIMEOUT)
            : conn_new_ctx(p->set, fd, &tcp_proto, p, 32,
                           p->o.header_timeout_ms, CLOSE_HEADER_TIMEOUT);
    struct tcp_conn *t;

    if (!c)
        return;
    t = conn_ext(c);
    frame_pstate_init(&t->ps);
    if (tls && conn_start_tls(c, tls, true, NULL, handshake_ms) < 0)
        conn_close(c, CLOSE_NO_MEMORY);
}

/* The TLS handshake is done: the command frame is due within
 * header_timeout, as on a plain connection. */
static void tcp_on_ready(struct conn *c, int err)
{
    if (err)
        return; /* conn.c closes it */
    conn_set_state(c, CSTATE_HEADER);
    conn_set_read_deadline(c, push_of(c)->o.header_timeout_ms,
                           CLOSE_HEADER_TIMEOUT);
}

/* Ends c with one last frame, payload[0..n) (a NUL, then why: docs/auth.md),
 * after the queue is written. */
static void tcp_notice_n(struct conn *c, const char *payload, size_t n)
{
    uint8_t hdr[FRAME_HEADER];

    frame_encode_header(hdr, (uint32_t)n);
    if (conn_send_bytes(c, hdr, sizeof(hdr)) < 0 ||
        conn_send_bytes(c, payload, n) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    conn_close_after_flush(c, CLOSE_DONE, 1000);
}

/* The same for a literal "\0text". */
#define tcp_notice(c, lit) tcp_notice_n((c), (lit), sizeof(lit) - 1)

static void tcp_fail(struct conn *c, const char *why)
{
    char peer[64];

    LOG_INFO("tcp protocol error", "conn=%llu peer=%s why=\"%s\"", conn_id(c),
             conn_peer_str(c, peer, sizeof(peer)), why);
    conn_close(c, CLOSE_PROTOCOL_ERROR);
}

#define AUTH_WAITING UINT32_MAX

/* --auth url over TCP: the AUTH frame's token is asked of the callback;
 * reading pauses until the answer comes (t->role TCP_AUTH_WAIT), and the
 * next frame (the command) takes it. Returns JWT_OK (*g filled), a
 * reason, or AUTH_WAITING. */
static unsigned tcp_ask(struct conn *c, struct tcp_conn *t, const uint8_t *p,
                        size_t n, struct jwt_grant *g)
{
    struct push *pp = push_of(c);
    struct auth_question q = {.list = "", .sep = ' ', .protocol = "tcp"};
    unsigned reason = 0;

    if (t->role == 0) {
        q.token = (const char *)p + 5;
        q.token_len = n - 5;
    }
    switch (auth_ask(pp->o.auth, c, &q, g, &reason)) {
    case AUTH_WAIT:
        t->role = TCP_AUTH_WAIT;
        conn_pause_read(c, PAUSE_AUTH);
        conn_set_read_deadline(c, auth_wait_ms(pp->o.auth) + 1000,
                               CLOSE_HEADER_TIMEOUT);
        return AUTH_WAITING;
    case AUTH_DENY:
        return reason;
    case AUTH_ALLOW:
        break;
    }
    return JWT_OK;
}

/* With --auth, the first frame is "AUTH <token>": what it grants is kept
 * (t->g) for the SUB or PUB frame that must follow. */
static void tcp_auth(struct conn *c, struct tcp_conn *t, const uint8_t *p,
                     size_t n)
{
    struct push *pp = push_of(c);
    struct jwt_grant *g;
    unsigned r;

    if (t->role == 0 && (n < 5 || memcmp(p, "AUTH ", 5) != 0)) {
        auth_count_denied(pp->o.auth, c, AUTH_NO_TOKEN, "tcp");
        tcp_notice(c, "\0no token: send AUTH <token> first");
        return;
    }
    g = mem_alloc(MEM_AUTH, sizeof(*g));
    if (!g) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    if (auth_is_callback(pp->o.auth)) {
        r = tcp_ask(c, t, p, n, g);
        if (r == AUTH_WAITING) {
            mem_free(MEM_AUTH, g);
            return;
        }
    } else {
        r = auth_check(pp->o.auth, (const char *)p + 5, n - 5, g);
    }
    if (r != JWT_OK) {
        char why[64];

        mem_free(MEM_AUTH, g);
        auth_count_denied(pp->o.auth, c, r, "tcp");
        snprintf(why, sizeof(why), "%ctoken refused: %s", '\0',
                 auth_reason_name(r));
        tcp_notice_n(c, why, 1 + strlen(why + 1));
        return;
    }
    t->g = g;
    t->role = TCP_AUTHED;
}

/* The channels of cmd are granted by t->g (the AUTH frame's token). */
static bool tcp_granted(const struct tcp_conn *t,
                        const struct frame_command *cmd)
{
    const uint8_t *name;
    size_t pos = 0, nl;

    while (frame_command_next(cmd, &pos, &name, &nl))
        if (!jwt_grant_allows(t->g, cmd->verb == FRAME_CMD_PUB,
                              (const char *)name, nl))
            return false;
    return true;
}

/* The grant's part is done: the expiry is tracked, the grant freed.
 * False if c is closing (out of memory). */
static bool tcp_take_grant(struct conn *c, struct tcp_conn *t)
{
    struct jwt_grant *g = t->g;
    bool ok;

    t->g = NULL;
    t->role = 0;
    if (!g)
        return true;
    ok = track(push_of(c), c, g);
    jwt_grant_free(g);
    mem_free(MEM_AUTH, g);
    return ok;
}

static void tcp_command(struct conn *c, struct tcp_conn *t, const uint8_t *p,
                        size_t n)
{
    struct push *pp = push_of(c);
    struct frame_command cmd;
    const uint8_t *name;
    size_t pos = 0, nl;

    if (auth_on(pp->o.auth) && (t->role == 0 || t->role == TCP_AUTH_WAIT)) {
        bool waited = t->role == TCP_AUTH_WAIT;

        tcp_auth(c, t, p, n);
        if (!waited || t->role != TCP_AUTHED || conn_is_closing(c))
            return;
        /* The callback's answer came: this frame is the command. */
    }
    if (frame_parse_command(p, n, pp->o.pubsub.max_channels_per_conn, &cmd) <
        0) {
        tcp_fail(c, cmd.why);
        return;
    }
    if (t->role == TCP_AUTHED) {
        if (!tcp_granted(t, &cmd)) {
            auth_count_denied(pp->o.auth, c, AUTH_NOT_ALLOWED, "tcp");
            tcp_notice(c, "\0not allowed: the token does not grant this");
            return;
        }
        auth_count_allowed(pp->o.auth);
        if (!tcp_take_grant(c, t))
            return;
    }
    if (cmd.verb == FRAME_CMD_SUB) {
        struct since since = {.set = cmd.since != NULL};

        if (cmd.since &&
            !history_parse_id((const char *)cmd.since, cmd.since_len,
                              &since.epoch, &since.off)) {
            tcp_fail(c, "bad since= (want EPOCH:OFFSET, an id moor gave)");
            return;
        }
        t->s = pubsub_subscriber_new(pp->ps, c, cmd.ids ? PS_TCP_IDS : PS_TCP);
        if (!t->s) {
            conn_close(c, CLOSE_NO_MEMORY);
            return;
        }
        t->role = TCP_SUB;
        while (frame_command_next(&cmd, &pos, &name, &nl)) {
            int rc = pubsub_subscribe(pp->ps, t->s, (const char *)name, nl);
            if (rc < 0) {
                tcp_fail(c, rc == -ENOSPC ? "too many channels"
                                          : "cannot subscribe");
                return;
            }
        }
        conn_set_state(c, CSTATE_ACTIVE);
        conn_set_read_deadline(c, pp->o.sse_heartbeat_ms, CLOSE_IDLE_TIMEOUT);
        recover_list(pp, c, t->s, (const char *)cmd.channels, cmd.channels_len,
                     ' ', &since);
        return;
    }
    frame_command_next(&cmd, &pos, &name, &nl);
    t->pb = publisher_new(pp, c, name, nl);
    if (!t->pb) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    t->role = TCP_PUB;
    conn_set_state(c, CSTATE_ACTIVE);
    conn_set_read_deadline(c, pp->o.sse_heartbeat_ms, CLOSE_IDLE_TIMEOUT);
}

/* A whole frame: the command, a message to publish, or (from a
 * subscriber) nothing we use. */
static void tcp_frame(struct conn *c, struct tcp_conn *t, const uint8_t *p,
                      size_t n)
{
    uint32_t st = WS_UTF8_ACCEPT;

    switch (t->role) {
    case 0:
    case TCP_AUTHED:
    case TCP_AUTH_WAIT:
        tcp_command(c, t, p, n);
        break;
    case TCP_PUB:
        publish_paced(c, t->pb, p, n,
                      ws_utf8_feed(&st, p ? p : (const uint8_t *)"", n) &&
                          st == WS_UTF8_ACCEPT);
        break;
    default:
        break; /* a subscriber's frames are ignored */
    }
}

/* The longest frame t may send next: a command (with --auth, the first
 * is "AUTH <token>"), or a message. */
static uint32_t tcp_limit(const struct push *pp, const struct tcp_conn *t)
{
    size_t cmd = frame_command_max_opts(pp->o.pubsub.max_channels_per_conn);

    if (t->role == 0 && auth_on(pp->o.auth))
        cmd = MAX(cmd, 5 + (size_t)auth_max_token_bytes(pp->o.auth));
    if (t->role == 0 || t->role == TCP_AUTHED || t->role == TCP_AUTH_WAIT)
        return (uint32_t)MIN(cmd, (size_t)UINT32_MAX);
    return (uint32_t)MIN(pp->o.max_message, (uint64_t)UINT32_MAX);
}

static size_t tcp_on_data(struct conn *c, uint8_t *p, size_t len)
{
    struct tcp_conn *t = conn_ext(c);
    struct push *pp = push_of(c);
    struct frame_parser parser;
    size_t off = 0;

    parser.s = t->ps;
    parser.max_message = tcp_limit(pp, t);
    /* Not past a last frame (tcp_notice): what follows it in this read is
     * not a command to act on, nor a second refusal to send. */
    while (off < len && !conn_is_closing(c) && !conn_is_lingering(c) &&
           !conn_paused(c)) {
        struct frame_event ev;
        int err = 0;
        ssize_t n = frame_parse(&parser, p + off, len - off, &ev, &err);

        if (n < 0) {
            t->ps = parser.s;
            tcp_fail(c, t->role == TCP_SUB || t->role == TCP_PUB
                            ? "frame over --max-message"
                            : "command frame too long");
            return len;
        }
        if (n == 0)
            break;
        off += (size_t)n;
        t->ps = parser.s;
        if (ev.type != FRAME_EV_DATA || t->role == TCP_SUB)
            continue; /* a subscriber's frames are read and dropped */
        if (ev.first && ev.fin) {
            tcp_frame(c, t, ev.data, ev.len); /* whole: no copy */
        } else {
            struct abuf *b;
            /* Grown as bytes arrive, never past the frame's length. */
            if (abuf_append(&t->abuf, MEM_MSG, ev.data, ev.len, ev.frame_len) <
                0) {
                conn_close(c, CLOSE_NO_MEMORY);
                return len;
            }
            if (ev.fin) {
                b = t->abuf;
                t->abuf = NULL;
                tcp_frame(c, t, b->data, b->len);
                abuf_free(&b, MEM_MSG);
            }
        }
        if (!conn_is_closing(c))
            parser.max_message = tcp_limit(pp, t);
    }
    t->ps = parser.s;
    /* A frame begun (its header, part of its payload, or part of the
     * header left for the carry) must end within --message-timeout: a
     * publisher that stalls mid-frame holds its partial message, and
     * heartbeats would otherwise keep it for ever (docs/principles.md,
     * rule 2). The command frame is under the header deadline instead. */
    if ((t->role == TCP_SUB || t->role == TCP_PUB) &&
        conn_message_update(c, off < len || t->ps.in_frame))
        conn_set_read_deadline(c, pp->o.sse_heartbeat_ms, CLOSE_IDLE_TIMEOUT);
    return off;
}

static bool tcp_on_timeout(struct conn *c)
{
    struct tcp_conn *t = conn_ext(c);
    static const uint8_t heartbeat[FRAME_HEADER] = {0, 0, 0, 0};

    if (t->role == 0 || t->role == TCP_AUTHED || t->role == TCP_AUTH_WAIT ||
        conn_read_reason(c) != CLOSE_IDLE_TIMEOUT)
        return false; /* no command in time, or a frame not finished */
    /* Subscribers and publishers alike get an empty frame after quiet:
     * proxies keep the connection, and a vanished peer is found by the
     * write timeout; a silent publisher is not closed. */
    if (conn_queued_bytes(c) == 0)
        conn_send_bytes(c, heartbeat, sizeof(heartbeat));
    conn_set_read_deadline(c, push_of(c)->o.sse_heartbeat_ms,
                           CLOSE_IDLE_TIMEOUT);
    return !conn_is_closing(c);
}

static void tcp_on_drain(struct conn *c)
{
    struct tcp_conn *t = conn_ext(c);

    if (t->role == TCP_SUB && t->s)
        pubsub_subscriber_drained(push_of(c)->ps, t->s);
}

static void tcp_on_close(struct conn *c, enum close_reason why)
{
    struct tcp_conn *t = conn_ext(c);

    (void)why;
    abuf_free(&t->abuf, MEM_MSG);
    if (t->role == TCP_SUB) {
        pubsub_subscriber_free(push_of(c)->ps, t->s);
    } else if (t->role == TCP_PUB) {
        publisher_free(c, t->pb);
    } else if (t->role == TCP_AUTHED) {
        jwt_grant_free(t->g);
        mem_free(MEM_AUTH, t->g);
    } else if (t->role == TCP_AUTH_WAIT) {
        auth_forget(push_of(c)->o.auth, c);
    }
    auth_detach(push_of(c)->o.auth, c);
    t->role = 0;
    t->s = NULL;
}

static void close_stream(struct conn *c, void *arg)
{
    (void)arg;
    if (conn_proto(c) == &sse_proto || conn_proto(c) == &tcp_proto)
        conn_close_after_flush(c, CLOSE_SHUTDOWN, 1000);
}

void push_drain(struct push *p)
{
    conn_set_each(p->set, close_stream, p);
}

/* ---- WebSocket subscribers ---------------------------------------------- */

static void sub_close(struct conn *c, uint16_t code, void *arg)
{
    struct push *p = arg;

    (void)code;
    pubsub_subscriber_free(p->ps, ws_user(c));
    ws_set_user(c, NULL);
    auth_detach(p->o.auth, c);
}

static void sub_drain(struct conn *c, void *arg)
{
    struct push *p = arg;
    struct subscriber *s = ws_user(c);

    if (s)
        pubsub_subscriber_drained(p->ps, s);
}

/* The upgraded c subscribes to list[0..n). Returns 0 or -1 (c closing). */
static int subscribe_ws(struct push *p, struct conn *c, const char *list,
                        size_t n, const struct jwt_grant *g,
                        const struct since *since, bool ids)
{
    struct subscriber *s =
        pubsub_subscriber_new(p->ps, c, ids ? PS_WS_IDS : PS_WEBSOCKET);
    const char *why = NULL;
    int rc;

    if (!s) {
        ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    ws_set_user(c, s);
    rc = pubsub_subscribe_list(p->ps, s, list, n, &why);
    if (rc < 0) {
        ws_close(c, rc == -ENOSPC ? WS_CLOSE_POLICY : WS_CLOSE_INTERNAL, why);
        return -1;
    }
    if (!track(p, c, g))
        return -1;
    recover_list(p, c, s, list, n, ',', since);
    return 0;
}

static void on_sub(struct http_exchange *ex, void *arg)
{
    struct push *p = arg;
    const char *list = ex->path.p + 5; /* after "/sub/" */
    size_t n = ex->path.len - 5;
    const char *why = check_list(p, list, n);
    struct conn *c = ex->c;
    struct jwt_grant g;
    struct since since;
    bool ids = false;
    int rc;

    if (why) {
        pubsub_note_refused(p->ps);
        respond_text(ex, 400, why);
        return;
    }
    if (!wants_sse(ex->req) && (why = ws_since(ex->req, &since, &ids))) {
        respond_text(ex, 400, why);
        return;
    }
    if (!authorize(ex, p, false, list, n, &g))
        return;
    if (wants_sse(ex->req)) {
        start_sse(ex, p, list, n, &g);
        jwt_grant_free(&g);
        return;
    }
    rc = ws_server_upgrade(p->ws, ex, &p->sub_h);
    if (rc == 0)
        rc = subscribe_ws(p, c, list, n, &g, &since, ids);
    jwt_grant_free(&g);
}

/* ---- publishers -------------------------------------------------------- */

/* Milliseconds until the publisher's debts can be paid (0: now). */
static uint32_t debt_wait(struct publisher *pb, uint32_t now)
{
    return MAX(
        pb->debt_msgs ? ratelimit_wait_ms(&pb->msgs, pb->debt_msgs, now) : 0u,
        pb->debt_bytes ? ratelimit_wait_ms(&pb->bytes, pb->debt_bytes, now)
                       : 0u);
}

/* The pause ends once the tokens for the message already published have
 * come in: they are paid, and reading resumes. */
static void pub_resume(struct timer *t)
{
    struct publisher *pb = container_of(t, struct publisher, resume);
    uint32_t now = loop_now(conn_loop(pb->c));
    uint32_t w = debt_wait(pb, now);

    if (w) {
        loop_timer_in(conn_loop(pb->c), &pb->resume, w);
        return;
    }
    if (pb->debt_msgs && ratelimit_take(&pb->msgs, pb->debt_msgs, now))
        pb->debt_msgs = 0;
    if (pb->debt_bytes && ratelimit_take(&pb->bytes, pb->debt_bytes, now))
        pb->debt_bytes = 0;
    conn_resume_read(pb->c, PAUSE_RATE);
}

/* Publishes one message of a publisher conn, then holds the conn to its
 * rate and to the memory budget. Returns false if it failed for memory. */
static bool publish_paced(struct conn *c, struct publisher *pb,
                          const uint8_t *data, size_t len, bool text)
{
    struct push *p = pb->p;
    uint32_t now = loop_now(conn_loop(c));
    uint32_t nb = (uint32_t)MIN(len, (size_t)pb->bytes.burst);
    bool ok;

    if (pubsub_publish(p->ps, pb->name, pb->len, data, len, text) < 0)
        return false;
    /* The message is here: it is published, and reading stops until the
     * buckets hold what it took (a publisher is held to its rate). */
    /* What the buckets cannot give now is owed: reading stays paused
     * until it has come in and is paid (pub_resume), so over time the
     * publisher gets exactly its rate. */
    ok = true;
    if (!ratelimit_take(&pb->msgs, 1, now)) {
        pb->debt_msgs = 1;
        ok = false;
    }
    if (nb && !ratelimit_take(&pb->bytes, nb, now)) {
        pb->debt_bytes = nb;
        ok = false;
    }
    if (!ok) {
        conn_pause_read(c, PAUSE_RATE);
        loop_timer_in(conn_loop(c), &pb->resume, MAX(debt_wait(pb, now), 1u));
    }
    conn_pause_if_over_budget(c);
    return true;
}

static void pub_message(struct conn *c, const uint8_t *data, size_t len,
                        bool text, void *arg)
{
    (void)arg;
    if (!publish_paced(c, ws_user(c), data, len, text))
        ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
}

static void pub_close(struct conn *c, uint16_t code, void *arg)
{
    struct publisher *pb = ws_user(c);

    (void)code;
    publisher_free(c, pb);
    ws_set_user(c, NULL);
    auth_detach(((struct push *)arg)->o.auth, c);
}

/* A publisher on channel name[0..n) for conn c, its buckets full. */
static struct publisher *publisher_new(struct push *p, struct conn *c,
                                       const void *name, size_t n)
{
    struct publisher *pb = mem_calloc(MEM_CHANNEL, 1, sizeof(*pb));
    uint32_t now = loop_now(conn_loop(c));

    if (!pb)
        return NULL;
    pb->p = p;
    pb->c = c;
    pb->len = (uint16_t)n;
    memcpy(pb->name, name, n);
    timer_init(&pb->resume, pub_resume);
    ratelimit_init(&pb->msgs, p->o.rate, p->o.burst, now);
    ratelimit_init(&pb->bytes, (uint32_t)MIN(p->o.byte_rate, UINT32_MAX), 0,
                   now);
    return pb;
}

static void publisher_free(struct conn *c, struct publisher *pb)
{
    if (!pb)
        return;
    timer_cancel(loop_timers(conn_loop(c)), &pb->resume);
    mem_free(MEM_CHANNEL, pb);
}

static void on_pub_ws(struct http_exchange *ex, struct push *p,
                      const char *name, size_t n)
{
    struct conn *c = ex->c;
    struct publisher *pb;
    struct jwt_grant g;

    if (!authorize(ex, p, true, name, n, &g))
        return;
    pb = publisher_new(p, c, name, n);
    if (!pb) {
        jwt_grant_free(&g);
        respond_text(ex, 503, "out of memory");
        return;
    }
    if (ws_server_upgrade(p->ws, ex, &p->pub_h) != 0) {
        jwt_grant_free(&g);
        publisher_free(c, pb);
        return;
    }
    ws_set_user(c, pb);
    track(p, c, &g);
    jwt_grant_free(&g);
}

/* POST /pub/CH: the token is checked on the header block, before the body
 * is read (http_server_route_gate). */
static bool pub_gate(struct http_exchange *ex, void *arg)
{
    struct push *p = arg;
    const char *name = ex->path.p + 5; /* after "/pub/" */
    size_t n = ex->path.len - 5;
    struct jwt_grant g;

    if (!channel_name_valid((const uint8_t *)name, n))
        return true; /* the handler answers 400 */
    if (!authorize(ex, p, true, name, n, &g))
        return false;
    jwt_grant_free(&g);
    return true;
}

static void on_pub(struct http_exchange *ex, void *arg)
{
    struct push *p = arg;
    const char *name = ex->path.p + 5; /* after "/pub/" */
    size_t n = ex->path.len - 5;
    char body[64];
    uint32_t st = WS_UTF8_ACCEPT;
    long reached;
    int k;

    if (!channel_name_valid((const uint8_t *)name, n)) {
        respond_text(ex, 400,
                     "bad channel name: 1-128 of a-z A-Z 0-9 - _ . : @");
        return;
    }
    if (ex->method == HTTP_GET) { /* a WebSocket publisher */
        on_pub_ws(ex, p, name, n);
        return;
    }
    if (ex->body_len > p->o.max_message) {
        respond_text(ex, 413, "message over --max-message");
        return;
    }
    if (mem_over_budget()) {
        http_respond(ex, 503, "text/plain; charset=utf-8", "Retry-After: 1\r\n",
                     "503 over --memory-limit; retry later\n", 37);
        return;
    }
    reached = pubsub_publish(
        p->ps, name, n, ex->body, ex->body_len,
        ws_utf8_feed(&st, ex->body ? ex->body : (const uint8_t *)"",
                     ex->body_len) &&
            st == WS_UTF8_ACCEPT);
    if (reached < 0) {
        respond_text(ex, 503, "out of memory");
        return;
    }
    k = snprintf(body, sizeof(body), "{\"subscribers\":%ld}\n", reached);
    http_respond(ex, 202, "application/json", NULL, body, (size_t)k);
}

const char *push_describe(void *arg, struct conn *c, char *channels, size_t cap,
                          const char **sub)
{
    struct push *p = arg;
    const struct ws_binding *b;

    *sub = auth_subject(p->o.auth, c);
    if (cap)
        channels[0] = '\0';
    if (conn_proto(c) == &sse_proto) {
        const struct sse_conn *sc = conn_ext(c);
        if (sc->s)
            pubsub_subscriber_channels(sc->s, channels, cap);
        return "subscriber";
    }
    if (conn_proto(c) == &tcp_proto) {
        const struct tcp_conn *t = conn_ext(c);
        if (t->role == TCP_SUB && t->s) {
            pubsub_subscriber_channels(t->s, channels, cap);
            return "subscriber";
        }
        if (t->role == TCP_PUB && t->pb) {
            snprintf(channels, cap, "%s", t->pb->name);
            return "publisher";
        }
        return "";
    }
    if (!ws_is_websocket(c))
        return "";
    b = conn_ctx(c);
    if (b->h == &p->sub_h) {
        if (ws_user(c))
            pubsub_subscriber_channels(ws_user(c), channels, cap);
        return "subscriber";
    }
    if (b->h == &p->pub_h) {
        const struct publisher *pb = ws_user(c);
        if (pb)
            snprintf(channels, cap, "%s", pb->name);
        return "publisher";
    }
    return "";
}

void push_token_expired(struct conn *c, void *arg)
{
    static const char sse_expired[] = "event: expired\ndata: token expired\n\n";

    (void)arg;
    if (conn_is_closing(c))
        return;
    if (ws_is_websocket(c)) {
        ws_close(c, WS_CLOSE_TOKEN_EXPIRED, "token expired");
    } else if (conn_proto(c) == &sse_proto) {
        struct sse_conn *sc = conn_ext(c);

        /* Nothing more is delivered after the notice. */
        pubsub_subscriber_free(push_of(c)->ps, sc->s);
        sc->s = NULL;
        if (conn_send_bytes(c, sse_expired, sizeof(sse_expired) - 1) < 0)
            conn_close(c, CLOSE_NO_MEMORY);
        else
            conn_close_after_flush(c, CLOSE_DONE, 1000);
    } else if (conn_proto(c) == &tcp_proto) {
        struct tcp_conn *t = conn_ext(c);

        if (t->role == TCP_SUB) { /* nothing more after the notice */
            pubsub_subscriber_free(push_of(c)->ps, t->s);
            t->s = NULL;
        }
        tcp_notice(c, "\0token expired");
    } else {
        conn_close(c, CLOSE_DONE);
    }
}

struct push *push_new(struct http_server *http, struct ws_server *ws,
                      struct conn_set *set, const struct push_opts *o)
{
    struct push *p = mem_calloc(MEM_CHANNEL, 1, sizeof(*p));

    if (!p)
        return NULL;
    p->set = set;
    p->http = http;
    p->ws = ws;
    p->o = *o;
    p->ps = pubsub_new(set, &o->pubsub);
    if (!p->ps) {
        mem_free(MEM_CHANNEL, p);
        return NULL;
    }
    p->sub_h.on_close = sub_close;
    p->sub_h.on_drain = sub_drain;
    p->sub_h.arg = p;
    p->pub_h.on_message = pub_message;
    p->pub_h.on_close = pub_close;
    p->pub_h.arg = p;
    /* A publisher is a 1:1 stream for its own pongs; its messages go to
     * others' queues, bounded there. */
    p->pub_h.pause_on_backpressure = true;
    if (http_server_route(http, "/sub/", true, HTTP_M(HTTP_GET), on_sub, p) <
            0 ||
        http_server_route_body(http, "/pub/", true,
                               HTTP_M(HTTP_GET) | HTTP_M(HTTP_POST), on_pub,
                               p) < 0) {
        push_free(p);
        return NULL;
    }
    http_server_route_gate(http, pub_gate);
    return p;
}

void push_free(struct push *p)
{
    if (!p)
        return;
    pubsub_free(p->ps);
    mem_free(MEM_CHANNEL, p);
}

void push_set_rates(struct push *p, uint32_t rate, uint32_t burst,
                    uint64_t byte_rate)
{
    p->o.rate = rate;
    p->o.burst = burst;
    p->o.byte_rate = byte_rate;
}
