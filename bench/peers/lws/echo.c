/*
 * lws-echo - benchmark peer for moor: a WebSocket server on libwebsockets
 * (Debian's libwebsockets-dev, 4.1), written the way lws's minimal examples
 * are written: one protocol handler, LWS_PRE headroom before every payload,
 * one lws_write() per WRITEABLE callback, a queue per session.
 *
 *   GET /healthz  200 "ok\n" (plain HTTP, for readiness checks)
 *   GET /echo     WebSocket: every message is sent back with its type
 *   GET /sub      WebSocket: receives every message published on /pub
 *   GET /pub      WebSocket: every message received is sent to every /sub
 *
 * usage: lws-echo [--port N] [--host 127.0.0.1]
 *                 [--tls-cert CHAIN.pem --tls-key KEY.pem]
 *   --port 0 (the default) picks a free port.
 *   --tls-cert, --tls-key: serve the same endpoints over TLS (https, wss)
 *   with the OpenSSL lws is built on (Debian: the system's OpenSSL 3) and
 *   lws's defaults: the vhost's SSL_CTX as lws sets it up (its
 *   SSL_MODE_RELEASE_BUFFERS included), OpenSSL's defaults otherwise (TLS
 *   1.2 and 1.3, session tickets and the server session cache on).
 *
 * Once listening it prints one line to stdout:
 *   lws listening on http://127.0.0.1:PORT (pid N)
 *   lws listening on https://127.0.0.1:PORT (pid N)   (with TLS)
 *
 * Messages arrive from lws in pieces (one LWS_CALLBACK_RECEIVE per chunk of
 * at most rx_buffer_size bytes, and per frame of a fragmented message); they
 * are reassembled into one buffer and written back as one message. An echo
 * session that has too much queued stops reading (lws_rx_flow_control)
 * until it has drained. A published message is one refcounted buffer whose
 * references are queued on every subscriber; a subscriber with more than
 * SUB_QUEUE_CAP bytes queued is disconnected.
 *
 * Build: bench/peers/build.sh, i.e.
 *   cc -std=c11 -O2 -o build/peers/lws-echo bench/peers/lws/echo.c \
 *      $(pkg-config --cflags --libs libwebsockets)
 */
#define _POSIX_C_SOURCE 200809L
#include <libwebsockets.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MESSAGE ((size_t)16 << 20)     /* larger: close 1009 */
#define SUB_QUEUE_CAP ((size_t)8 << 20)    /* subscriber queued bytes */
#define ECHO_QUEUE_HIGH ((size_t)1 << 20)  /* echo: stop reading above */
#define ECHO_QUEUE_LOW ((size_t)256 << 10) /* echo: read again below */

enum route { ROUTE_NONE, ROUTE_ECHO, ROUTE_SUB, ROUTE_PUB };

/* One complete message; payload at data + LWS_PRE (lws writes the frame
 * header into the headroom). Shared by reference between subscribers. */
struct msg {
    unsigned refs;
    int binary;
    size_t len, cap;
    unsigned char data[]; /* LWS_PRE + cap */
};

struct qnode {
    struct qnode *next;
    struct msg *m;
};

struct session {
    struct lws *wsi;
    enum route route;
    struct msg *rx;            /* message being reassembled */
    struct qnode *head, *tail; /* outbound queue */
    size_t qbytes;
    int rx_active; /* inside a message (between its chunks) */
    int rx_paused;
    int http_ok;              /* plain HTTP: the path was /healthz */
    struct session *next_sub; /* ROUTE_SUB: the subscriber list */
};

static struct session *subs;
static volatile sig_atomic_t interrupted;

static struct msg *msg_new(size_t cap)
{
    struct msg *m = malloc(sizeof(*m) + LWS_PRE + cap);
    if (m) {
        m->refs = 1;
        m->binary = 0;
        m->len = 0;
        m->cap = cap;
    }
    return m;
}

static void msg_unref(struct msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

/* Appends in[0..len) to *mp, growing it; -1 if over MAX_MESSAGE or OOM. */
static int msg_append(struct msg **mp, const void *in, size_t len)
{
    struct msg *m = *mp;
    if (len > MAX_MESSAGE - m->len)
        return -1;
    if (m->len + len > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->len + len)
            cap *= 2;
        if (cap > MAX_MESSAGE)
            cap = MAX_MESSAGE;
        struct msg *n = realloc(m, sizeof(*m) + LWS_PRE + cap);
        if (!n)
            return -1;
        n->cap = cap;
        *mp = m = n;
    }
    memcpy(m->data + LWS_PRE + m->len, in, len);
    m->len += len;
    return 0;
}

static int enqueue(struct session *s, struct msg *m)
{
    struct qnode *q = malloc(sizeof(*q));
    if (!q)
        return -1;
    m->refs++;
    q->m = m;
    q->next = NULL;
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    s->qbytes += m->len;
    lws_callback_on_writable(s->wsi);
    return 0;
}

static void queue_clear(struct session *s)
{
    while (s->head) {
        struct qnode *q = s->head;
        s->head = q->next;
        msg_unref(q->m);
        free(q);
    }
    s->tail = NULL;
    s->qbytes = 0;
}

static void sub_remove(struct session *s)
{
    for (struct session **pp = &subs; *pp; pp = &(*pp)->next_sub) {
        if (*pp == s) {
            *pp = s->next_sub;
            break;
        }
    }
    s->next_sub = NULL;
}

static void publish(struct msg *m)
{
    for (struct session *s = subs; s; s = s->next_sub) {
        if (s->qbytes + m->len > SUB_QUEUE_CAP || enqueue(s, m) != 0) {
            /* Too far behind: drop its queue, close it soon (not from
             * inside another connection's callback). */
            queue_clear(s);
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND,
                            LWS_TO_KILL_ASYNC);
        }
    }
}

static enum route route_of(struct lws *wsi)
{
    char uri[64];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0)
        return ROUTE_NONE;
    char *q = strchr(uri, '?');
    if (q)
        *q = '\0';
    if (!strcmp(uri, "/echo"))
        return ROUTE_ECHO;
    if (!strcmp(uri, "/sub"))
        return ROUTE_SUB;
    if (!strcmp(uri, "/pub"))
        return ROUTE_PUB;
    return ROUTE_NONE;
}

static const char *http_body(int ok)
{
    return ok ? "ok\n" : "not found\n";
}

static int http_reply(struct lws *wsi, struct session *s, const char *path)
{
    unsigned char buf[LWS_PRE + 256];
    unsigned char *start = buf + LWS_PRE, *p = start,
                  *end = buf + sizeof(buf) - 1;
    int ok = !strcmp(path, "/healthz");
    size_t blen = strlen(http_body(ok));

    s->http_ok = ok;

    if (lws_add_http_common_headers(wsi,
                                    ok ? HTTP_STATUS_OK : HTTP_STATUS_NOT_FOUND,
                                    "text/plain", (lws_filepos_t)blen, &p, end))
        return 1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    struct session *s = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_reply(wsi, s, (const char *)in);

    case LWS_CALLBACK_HTTP_WRITEABLE: {
        unsigned char buf[LWS_PRE + 16];
        const char *body = http_body(s->http_ok);
        size_t blen = strlen(body);
        memcpy(buf + LWS_PRE, body, blen);
        if (lws_write(wsi, buf + LWS_PRE, blen, LWS_WRITE_HTTP_FINAL) !=
            (int)blen)
            return 1;
        if (lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* Before the handshake: refuse an upgrade on any other path. */
        return route_of(wsi) == ROUTE_NONE;

    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        s->wsi = wsi;
        s->route = route_of(wsi);
        if (s->route == ROUTE_NONE)
            return -1;
        if (s->route == ROUTE_SUB) {
            s->next_sub = subs;
            subs = s;
        }
        break;

    case LWS_CALLBACK_CLOSED:
        if (s->route == ROUTE_SUB)
            sub_remove(s);
        queue_clear(s);
        msg_unref(s->rx);
        s->rx = NULL;
        break;

    case LWS_CALLBACK_RECEIVE:
        if (!s->rx_active) { /* the first chunk of a message */
            if (!s->rx) {
                s->rx = msg_new(len ? len : 16);
                if (!s->rx)
                    return -1;
            }
            s->rx->len = 0;
            s->rx->binary = lws_frame_is_binary(wsi);
            s->rx_active = 1;
        }
        if (msg_append(&s->rx, in, len) != 0) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        if (!lws_is_final_fragment(wsi))
            break;
        /* A complete message. */
        s->rx_active = 0;
        if (s->route == ROUTE_SUB) {
            s->rx->len = 0; /* data from subscribers is ignored */
            break;
        }
        struct msg *m = s->rx;
        s->rx = NULL;
        if (s->route == ROUTE_ECHO) {
            int rc = enqueue(s, m);
            msg_unref(m);
            if (rc != 0)
                return -1;
            if (s->qbytes > ECHO_QUEUE_HIGH && !s->rx_paused) {
                s->rx_paused = 1;
                lws_rx_flow_control(wsi, 0);
            }
        } else { /* ROUTE_PUB */
            publish(m);
            msg_unref(m);
        }
        break;

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct qnode *q = s->head;
        if (!q)
            break;
        struct msg *m = q->m;
        int n = lws_write(wsi, m->data + LWS_PRE, m->len,
                          m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        s->head = q->next;
        if (!s->head)
            s->tail = NULL;
        s->qbytes -= m->len;
        msg_unref(m);
        free(q);
        if (n < 0)
            return -1;
        if (s->rx_paused && s->qbytes < ECHO_QUEUE_LOW) {
            s->rx_paused = 0;
            lws_rx_flow_control(wsi, 1);
        }
        if (s->head)
            lws_callback_on_writable(wsi);
        break;
    }

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"moor-bench", callback, sizeof(struct session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lws-echo [--port N] [--host 127.0.0.1] "
               "[--tls-cert CHAIN.pem --tls-key KEY.pem]\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *cert = NULL, *key = NULL;
    long port = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--port") || !strcmp(a, "-p")) && i + 1 < argc) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) {
                fprintf(stderr, "lws-echo: --port must be 0..65535\n");
                return 2;
            }
        } else if (!strcmp(a, "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(a, "--tls-cert") && i + 1 < argc) {
            cert = argv[++i];
        } else if (!strcmp(a, "--tls-key") && i + 1 < argc) {
            key = argv[++i];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lws-echo: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }

    if (!cert != !key) {
        fprintf(stderr, "lws-echo: --tls-cert and --tls-key go together\n");
        return 2;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)port;
    info.iface = host;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cert) {
        /* Only the files: everything else is lws's default. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }

    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "lws-echo: cannot listen on %s:%ld\n", host, port);
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    int bound = vh ? lws_get_vhost_listen_port(vh) : (int)port;
    printf("lws listening on %s://%s:%d (pid %ld)\n", cert ? "https" : "http",
           host, bound, (long)getpid());
    fflush(stdout);

    while (!interrupted) {
        if (lws_service(ctx, 0) < 0)
            break;
    }
    lws_context_destroy(ctx);
    return 0;
}
