/*
 * ws_client.c - outgoing WebSocket connections: connect, the opening
 * handshake (RFC 6455 4.1), then hand over to the shared WebSocket
 * connection protocol in ws_server.c in the client role.
 *
 * Keeps: every client conn is under a deadline from the first moment
 * (connect_timeout covers the TCP connect and the handshake together);
 * every failure before the handshake completes reaches on_close with 1006
 * and a detail saying why. Must not: block (no DNS here: the caller gives
 * an address).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ws_client.h"
#include "log.h"
#include "mem.h"
#include "tls.h"
#include "util.h"
#include "ws.h"

struct ws_client {
    struct conn_set *set;
    struct ws_server *ws; /* shared WebSocket state: options, mask keys */
    struct ws_client_opts o;
};

/* A client conn's ext area: the shared ws_conn first, then what only the
 * handshake needs. */
struct ws_cconn {
    struct ws_conn w;
    const char *protocols;          /* offered; borrowed until open */
    char accept[WS_ACCEPT_LEN + 1]; /* the answer we expect */
    char detail[96];                /* why it failed before open */
    bool silent;                    /* failed inside ws_client_connect() */
};

static size_t hs_on_data(struct conn *c, uint8_t *p, size_t len);
static void hs_on_connect(struct conn *c, int err);
static void hs_on_close(struct conn *c, enum close_reason why);

static const struct conn_proto hs_proto = {
    .name = "websocket-handshake",
    .on_data = hs_on_data,
    .on_connect = hs_on_connect,
    .on_close = hs_on_close,
};

struct ws_client *ws_client_new(struct conn_set *set,
                                const struct ws_client_opts *o)
{
    struct ws_client *cl = mem_calloc(MEM_CONFIG, 1, sizeof(*cl));
    struct ws_server_opts wo = {
        .max_message = o->max_message,
        .ping_interval_ms = o->ping_interval_ms,
        .pong_timeout_ms = o->pong_timeout_ms,
        .close_timeout_ms = o->close_timeout_ms,
    };

    if (!cl)
        return NULL;
    cl->set = set;
    cl->o = *o;
    cl->ws = ws_server_new(set, &wo);
    if (!cl->ws) {
        mem_free(MEM_CONFIG, cl);
        return NULL;
    }
    return cl;
}

void ws_client_free(struct ws_client *cl)
{
    if (!cl)
        return;
    ws_server_free(cl->ws);
    mem_free(MEM_CONFIG, cl);
}

struct conn *ws_client_connect(struct ws_client *cl, const struct ws_target *t,
                               const struct ws_handlers *h, void *user,
                               int *err)
{
    uint8_t raw[16];
    char key[25];
    char req[1024];
    struct ws_binding *b = ws_server_bind(cl->ws, h);
    struct ws_cconn *cc;
    struct conn *c;
    ssize_t n;

    if (!b) {
        *err = -ENOSPC;
        return NULL;
    }

    /* Sec-WebSocket-Key: 16 random bytes, base64 (4.1). */
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        *err = -EIO;
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    n = ws_format_request(req, sizeof(req), t->host, t->path, key, t->origin,
                          t->protocols);
    if (n < 0) {
        *err = -ENAMETOOLONG;
        return NULL;
    }
    c = conn_connect(cl->set, t->addr, t->addrlen, t->source, t->sourcelen,
                     &hs_proto, b, sizeof(struct ws_cconn),
                     cl->o.connect_timeout_ms, err);
    if (!c)
        return NULL;
    if (t->tls && conn_start_tls(c, t->tls, false, t->tls_name, 0) < 0) {
        /* Out of memory, or a verifying context without a name. */
        cc = conn_ext(c);
        cc->silent = true;
        conn_close(c, CLOSE_NO_MEMORY);
        *err = -ENOMEM;
        return NULL;
    }
    cc = conn_ext(c);
    cc->w.user = user;
    cc->w.client = true;
    cc->protocols = t->protocols;
    if (!ws_accept_key(key, 24, cc->accept) ||
        conn_send_bytes(c, req, (size_t)n) < 0) {
        /* Nothing was reported yet: no callback for this one. */
        cc->silent = true;
        conn_close(c, CLOSE_NO_MEMORY);
        *err = -ENOMEM;
        return NULL;
    }
    return c;
}

static void hs_on_connect(struct conn *c, int err)
{
    struct ws_cconn *cc = conn_ext(c);
    char buf[64];

    if (!err)
        return; /* the request is queued; conn.c sends it now */
    switch (-err) {
    case ECONNREFUSED:
        snprintf(cc->detail, sizeof(cc->detail), "connection refused");
        break;
    case ETIMEDOUT:
        snprintf(cc->detail, sizeof(cc->detail), "connect timeout");
        break;
    case EPROTO: {
        struct tls_conn *tc = conn_tls(c);

        snprintf(cc->detail, sizeof(cc->detail), "tls: %s%s",
                 tc && tls_conn_verify_failed(tc)
                     ? "certificate verification failed: "
                     : "",
                 conn_tls_error(c)[0] ? conn_tls_error(c)
                                      : "connection closed by the server");
        break;
    }
    default:
        snprintf(cc->detail, sizeof(cc->detail), "connect: %s",
                 strerror_r(-err, buf, sizeof(buf)));
        break;
    }
}

static size_t hs_on_data(struct conn *c, uint8_t *p, size_t len)
{
    struct ws_cconn *cc = conn_ext(c);
    struct ws_response r;
    ssize_t n = ws_check_response(p, len, cc->accept, cc->protocols, &r);

    if (n == 0)
        return 0; /* carried until the head is complete */
    if (n < 0) {
        if (r.status && r.status != 101)
            snprintf(cc->detail, sizeof(cc->detail), "handshake: HTTP %u",
                     r.status);
        else
            snprintf(cc->detail, sizeof(cc->detail), "handshake: %s", r.why);
        conn_close(c, CLOSE_HANDSHAKE_FAILED);
        return len;
    }
    cc->detail[0] = '\0';
    cc->protocols = NULL;
    /* Frames after the head go to the WebSocket protocol in this call. */
    ws_conn_open(conn_ctx(c), c, true);
    return (size_t)n;
}

static void hs_on_close(struct conn *c, enum close_reason why)
{
    struct ws_cconn *cc = conn_ext(c);

    if (!cc->detail[0]) {
        if (why == CLOSE_CONNECT_TIMEOUT)
            snprintf(cc->detail, sizeof(cc->detail), "%s",
                     conn_is_connecting(c) ? "connect timeout"
                     : conn_in_handshake(c)
                         ? "tls handshake timeout: no answer from the server"
                         : "handshake timeout: no answer from the server");
        else if (why == CLOSE_PEER)
            snprintf(cc->detail, sizeof(cc->detail),
                     "handshake: connection closed by the server");
        else
            snprintf(cc->detail, sizeof(cc->detail), "%s",
                     close_reason_name(why));
    }
    const struct ws_handlers *h = ((struct ws_binding *)conn_ctx(c))->h;

    if (!cc->silent && h->on_close)
        h->on_close(c, WS_CLOSE_ABNORMAL, h->arg);
}

const char *ws_close_detail(const struct conn *c)
{
    const struct ws_cconn *cc = conn_ext_const(c);

    if (conn_proto(c) == &hs_proto && cc->detail[0])
        return cc->detail;
    switch (conn_close_reason(c)) {
    case CLOSE_NONE:
        /* on_close at a close frame, before the conn closes. */
        return ws_close_sent(c) ? "closed" : "closed by peer";
    case CLOSE_DONE:
        return "closed";
    case CLOSE_PEER:
        return "connection closed by peer";
    case CLOSE_PONG_TIMEOUT:
        return "pong timeout";
    case CLOSE_CLOSE_TIMEOUT:
        return "close timeout: no reply to our close";
    case CLOSE_WRITE_TIMEOUT:
        return "write timeout: peer took no bytes";
    case CLOSE_PROTOCOL_ERROR:
        return "protocol error";
    case CLOSE_TOO_BIG:
        return "message too big";
    case CLOSE_SHUTDOWN:
        return "shutting down";
    case CLOSE_NO_MEMORY:
        return "out of memory";
    default:
        return close_reason_name(conn_close_reason(c));
    }
}
