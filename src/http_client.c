/*
 * http_client.c - the pooled HTTP/1.1 client of moor.h: hosts, their pools
 * of keep-alive connections and wait queues, calls (requests in flight)
 * and their deadlines (docs/http_client.md).
 *
 * A call's life: moor_http_client_request() checks and copies the request
 * into its head message (and body message), then takes an idle pooled
 * connection of its host, or dials a new one (resolve, connect, TLS) if
 * the host has room under max_conns_per_host, or waits in the host's
 * bounded queue. On a connection it is written, its response parsed
 * (http1.c) and handed to the callbacks; the connection then goes back to
 * the pool (or to the first waiting call) or is closed. on_done ends every
 * call exactly once, and the call is freed right after it.
 *
 * Keeps (docs/principles.md): every wait under a deadline of its own
 * (rule 2: resolve in resolve.c, connect, TLS, write, head, body gap,
 * idle, queue wait, and the whole call); one close path for connections
 * (conn_close, whose on_close here settles the call); an idle connection
 * holds no buffer (rule 3: conn.c keeps no carry when nothing is
 * partial, and OpenSSL releases its record buffers); every limit counted
 * (rule 6: closes by reason, per host). Must not: call on_done from
 * inside moor_http_client_request() (failures found there wait for the
 * end of the loop iteration), block, or retry a request that is not
 * idempotent.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "api.h"
#include "conn.h"
#include "http1.h"
#include "http_client.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "resolve.h"
#include "tls.h"
#include "url.h"
#include "util.h"

#define HC_MAX_ADDRS 4       /* addresses tried per dial, in order */
#define HC_BUCKETS 64        /* host hash buckets */
#define HC_MAX_HOSTS 1024    /* empty hosts beyond this are freed */
#define HC_MAX_SESSIONS 64   /* cap of tls_sessions_per_host */
#define HC_MAX_METHOD 32     /* a method's length */
#define HC_MAX_HEADLEN 65536 /* the request head moor builds */

/* ---- the objects -------------------------------------------------------- */

struct hc_host {
    struct hc_host *next; /* bucket chain */
    struct moor_http_client *cl;
    struct conn *idle; /* idle connections, most recent first */
    struct moor_http_call *wait_head, *wait_tail;
    struct moor_http_client_stats st;                 /* this host's figures */
    struct ssl_session_st *sessions[HC_MAX_SESSIONS]; /* oldest first */
    uint32_t n_sessions;
    uint32_t hash;
    uint16_t port;
    bool tls;
    char *name;      /* the host alone: resolver, SNI, certificate */
    char *authority; /* the Host header's value */
    char key[];      /* "https://name:port": the stats key */
};

enum hc_phase {
    HC_DIAL = 0, /* TCP connect */
    HC_TLS,      /* TLS handshake */
    HC_BUSY,     /* running a call */
    HC_IDLE,     /* in the pool */
};

enum hc_rstate { R_HEAD = 0, R_BODY };

enum hc_flag {
    HCF_PAUSED = 1u << 0,  /* the call paused the body */
    HCF_WRITTEN = 1u << 1, /* the whole request went out */
    HCF_KEEP = 1u << 2,    /* the response allows reuse */
    HCF_STRAY = 1u << 3,   /* closed for bytes nobody asked for */
    HCF_COUNTED = 1u << 4, /* closed by us with its gauges and its count
                              settled: on_close only wakes the queue */
    HCF_AGED = 1u << 5,    /* idle, its deadline is max_conn_age's */
};

/* A connection's state, in its conn's ext area (all an idle one holds). */
struct hc_conn {
    struct hc_host *host;
    struct moor_http_call *call; /* the call on it, or NULL */
    struct conn *prev, *next;    /* the host's idle list */
    struct http_chunked chunked; /* chunked body decoder */
    uint64_t left;               /* Content-Length bytes to come */
    int32_t err;                 /* the error found on it, or 0 */
    uint32_t scan;               /* head parse resume hint */
    uint32_t requests;           /* calls run on it */
    uint8_t phase;               /* enum hc_phase */
    uint8_t rstate;              /* enum hc_rstate */
    uint8_t kind;                /* enum http_body_kind */
    uint8_t flags;               /* enum hc_flag */
};

enum call_state {
    C_NEW = 0,
    C_RESOLVING, /* the host's name is being looked up */
    C_WAITING,   /* in the host's queue */
    C_DIALING,   /* on a connection that is connecting */
    C_RUNNING,   /* on a connection: being written or answered */
    C_DONE,
};

struct moor_http_call {
    struct moor_http_client *cl;
    struct hc_host *host;
    struct conn *conn;
    struct moor_http_call *next, *prev; /* wait queue, or the later list */
    struct moor_http_call *all_next, *all_prev; /* the client's calls */
    struct timer total;                         /* the whole call */
    struct timer wait;                          /* the queue wait */
    struct resolve_query *rq;
    struct msg *head; /* the request head, kept for a retry */
    struct msg *body; /* a body from memory, kept for a retry */
    struct moor_http_callbacks cb;
    void *user;
    struct sockaddr_in6 addrs[HC_MAX_ADDRS]; /* to dial, in order (an
                                                IPv4 one cast) */
    long long body_length;                   /* produced: -1 chunked */
    uint64_t written;                        /* produced bytes so far */
    uint64_t body_bytes;                     /* response body bytes */
    uint32_t timeout_ms;                     /* the whole call, 0: none */
    int error;
    int status;
    uint8_t state; /* enum call_state */
    uint8_t n_addrs, addr_i;
    uint8_t in_cb; /* depth of user callbacks running on it */
    bool dead;     /* on_done ran; freed when in_cb returns to 0 */
    bool later;    /* on the later list */
    bool retried, reused, got_bytes, fresh;
    bool idempotent, produced, write_ended, head_req;
    char message[200];
};

struct moor_http_client {
    struct moor_loop *ml;
    struct loop *loop;
    struct moor_http_client *next; /* ml's list */
    struct moor_http_client_options o;
    char *tls_ca, *dns_servers; /* copies */
    struct tls_ctx *tls;        /* https, NULL until the first */
    struct resolver *dns;
    struct hc_host *hosts[HC_BUCKETS];
    uint32_t n_hosts;
    uint32_t n_idle; /* idle connections, all hosts */
    struct moor_http_call *later_head, *later_tail;
    struct moor_http_call *all; /* every call not yet done */
    struct pool call_pool;      /* calls: slabs unmapped as they empty, so
                                   a burst leaves no heap behind */
    /* Scratch for parse_head(), allocated with the first response: the
     * parsed head and the fields handed to on_head (never nested: one
     * head is parsed at a time on the loop's thread). */
    struct http_response *resp;
    struct moor_http_field *fields;
    struct loop_hook hook;
    struct moor_http_client_stats st; /* totals */
    struct http_limits lim;
    long calls;      /* in flight */
    bool in_request; /* inside moor_http_client_request() */
    bool freeing;
    struct conn_set set; /* last: its wheel is big */
};

static size_t hc_on_data(struct conn *c, uint8_t *p, size_t len);
static void hc_on_drain(struct conn *c);
static bool hc_on_timeout(struct conn *c);
static void hc_on_connect(struct conn *c, int err);
static void hc_on_tcp_connect(struct conn *c);
static void hc_on_close(struct conn *c, enum close_reason why);

static const struct conn_proto hc_proto = {
    .name = "http-client",
    .on_data = hc_on_data,
    .on_drain = hc_on_drain,
    .on_timeout = hc_on_timeout,
    .on_connect = hc_on_connect,
    .on_tcp_connect = hc_on_tcp_connect,
    .on_close = hc_on_close,
};

static void call_start(struct moor_http_call *call);
static void call_finish(struct moor_http_call *call, int err, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));
static void host_kick(struct hc_host *h);

/* Both the host's figure and the total. */
#define ST_ADD(h, f, n)                                                        \
    do {                                                                       \
        (h)->st.f += (n);                                                      \
        (h)->cl->st.f += (n);                                                  \
    } while (0)

/* ---- options ------------------------------------------------------------ */

static void client_defaults(void *p, size_t size)
{
    const struct moor_http_client_options d = {
        .size = sizeof(d),
        .max_idle_total = 1024,
        .max_idle_per_host = 256,
        .max_conns_per_host = 256,
        .max_waiting_per_host = 1024,
        .wait_timeout_ms = 10000,
        .idle_timeout_ms = 90000,
        .resolve_timeout_ms = 5000,
        .connect_timeout_ms = 5000,
        .tls_timeout_ms = 10000,
        .write_timeout_ms = 30000,
        .head_timeout_ms = 30000,
        .body_timeout_ms = 30000,
        .max_header_bytes = KiB(16),
        .max_headers = 100,
        .max_body = MiB(64),
        .queue_limit = KiB(256),
        .dns_cache_entries = 512,
        .dns_max_ttl_s = 300,
        .tls_sessions_per_host = 4,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_http_client_options_init_(struct moor_http_client_options *o,
                                             size_t size)
{
    client_defaults(o, size);
}

static void request_defaults(void *p, size_t size)
{
    const struct moor_http_request d = {
        .size = sizeof(d),
        .method = "GET",
        .body_length = -1,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_http_request_init_(struct moor_http_request *r, size_t size)
{
    request_defaults(r, size);
}

/* ---- the client --------------------------------------------------------- */

static void on_hook(struct loop_hook *hk);

static void on_session(void *arg, struct ssl_session_st *s);

static int client_tls(struct moor_http_client *cl, struct moor_error *err)
{
    struct tls_client_opts to = {
        .ca_file = cl->tls_ca,
        .alpn = "http/1.1",
        .insecure = cl->o.insecure != 0,
        .on_session = cl->o.tls_sessions_per_host ? on_session : NULL,
        /* Busy: OpenSSL's record buffers stay between records (no free and
         * malloc of 2 x 17 KB around every read and write); pooled: given
         * back (conn_release). */
        .keep_buffers = true,
    };
    char why[256];

    cl->tls = tls_client_new(&to, why, sizeof(why));
    if (!cl->tls)
        return api_fail(err, MOOR_ETLS, "TLS: %s", why);
    return 0;
}

MOOR_API struct moor_http_client *
moor_http_client_new(struct moor_loop *l,
                     const struct moor_http_client_options *o,
                     struct moor_error *err)
{
    struct moor_http_client_options co;
    struct moor_http_client *cl;
    struct conn_limits lim = {0};
    struct resolver_opts ro = {0};
    int e = 0;

    if (!l)
        return api_fail(err, -EINVAL, "moor_http_client_new: no loop"), NULL;
    if (api_options(&co, sizeof(co), o, client_defaults,
                    "moor_http_client_options", err) < 0)
        return NULL;
    if (co.tls_sessions_per_host > HC_MAX_SESSIONS)
        co.tls_sessions_per_host = HC_MAX_SESSIONS;
    if (co.max_headers > HTTP_MAX_HEADERS_CAP)
        co.max_headers = HTTP_MAX_HEADERS_CAP;
    cl = api_calloc(MEM_HTTPC, sizeof(*cl), err);
    if (!cl)
        return NULL;
    cl->ml = l;
    cl->loop = l->loop;
    cl->o = co;
    pool_init(&cl->call_pool, MEM_HTTPC, sizeof(struct moor_http_call));
    if ((co.tls_ca && !(cl->tls_ca = api_strdup(co.tls_ca))) ||
        (co.dns_servers && !(cl->dns_servers = api_strdup(co.dns_servers)))) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    cl->o.tls_ca = cl->tls_ca;
    cl->o.dns_servers = cl->dns_servers;
    cl->lim.max_header_bytes = co.max_header_bytes;
    cl->lim.max_headers = co.max_headers;
    cl->lim.max_body = co.max_body;
    ro.cache_entries = co.dns_cache_entries;
    ro.max_ttl_s = co.dns_max_ttl_s;
    ro.neg_ttl_s = co.dns_max_ttl_s < 5 ? co.dns_max_ttl_s : 5;
    ro.servers = cl->dns_servers;
    cl->dns = resolver_new(cl->loop, &ro, &e);
    if (!cl->dns) {
        api_fail(err, e ? e : -ENOMEM, "resolver: %s",
                 e == -EINVAL ? "bad dns_servers (want IP[:PORT],...)"
                              : moor_strerror(e ? e : -ENOMEM));
        goto fail;
    }
    if (cl->tls_ca && client_tls(cl, err) < 0)
        goto fail; /* a bad CA file is said now, not per request */
    lim.write_timeout_ms = co.write_timeout_ms;
    lim.queue_limit = co.queue_limit;
    if (conn_set_init(&cl->set, cl->loop, &lim) < 0) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    cl->hook.fn = on_hook;
    loop_add_hook(cl->loop, &cl->hook);
    api_loop_add_http_client(l, cl);
    return cl;

fail:
    tls_ctx_free(cl->tls);
    resolver_free(cl->dns);
    api_strfree(cl->tls_ca);
    api_strfree(cl->dns_servers);
    mem_free(MEM_HTTPC, cl);
    return NULL;
}

struct moor_http_client **http_client_next(struct moor_http_client *cl)
{
    return &cl->next;
}

bool http_client_busy(const struct moor_http_client *cl)
{
    return cl->calls > 0;
}

/* ---- hosts -------------------------------------------------------------- */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static long host_conns(const struct hc_host *h)
{
    return h->st.active + h->st.idle + h->st.dialing;
}

static bool host_empty(const struct hc_host *h)
{
    return host_conns(h) == 0 && !h->wait_head;
}

static void host_free(struct hc_host *h)
{
    for (uint32_t i = 0; i < h->n_sessions; i++)
        tls_session_free(h->sessions[i]);
    mem_free(MEM_HTTPC, h);
}

/* Frees empty hosts past HC_MAX_HOSTS (their figures go with them; the
 * totals keep theirs), never keep: the one just made for a request. */
static void hosts_trim(struct moor_http_client *cl, const struct hc_host *keep)
{
    for (unsigned b = 0; b < HC_BUCKETS && cl->n_hosts > HC_MAX_HOSTS; b++) {
        struct hc_host **pp = &cl->hosts[b];

        while (*pp && cl->n_hosts > HC_MAX_HOSTS) {
            struct hc_host *h = *pp;

            if (h != keep && host_empty(h)) {
                *pp = h->next;
                cl->n_hosts--;
                host_free(h);
            } else {
                pp = &h->next;
            }
        }
    }
}

static struct hc_host *host_get(struct moor_http_client *cl,
                                const struct url *u)
{
    char key[URL_HOST_MAX + 32];
    uint32_t hash;
    struct hc_host *h;
    size_t kl, nl, al;

    snprintf(key, sizeof(key), "%s://%s%s%s:%u", u->tls ? "https" : "http",
             u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "",
             (unsigned)u->port);
    hash = hash_str(key);
    for (h = cl->hosts[hash % HC_BUCKETS]; h; h = h->next)
        if (h->hash == hash && !strcmp(h->key, key))
            return h;
    kl = strlen(key) + 1;
    nl = strlen(u->host) + 1;
    al = strlen(u->authority) + 1;
    h = mem_calloc(MEM_HTTPC, 1, sizeof(*h) + kl + nl + al);
    if (!h)
        return NULL;
    memcpy(h->key, key, kl);
    h->name = h->key + kl;
    memcpy(h->name, u->host, nl);
    h->authority = h->name + nl;
    memcpy(h->authority, u->authority, al);
    h->cl = cl;
    h->hash = hash;
    h->port = u->port;
    h->tls = u->tls;
    h->next = cl->hosts[hash % HC_BUCKETS];
    cl->hosts[hash % HC_BUCKETS] = h;
    cl->n_hosts++;
    if (cl->n_hosts > HC_MAX_HOSTS)
        hosts_trim(cl, h);
    return h;
}

static struct hc_host *host_find(const struct moor_http_client *cl,
                                 const char *key)
{
    uint32_t hash = hash_str(key);

    for (struct hc_host *h = cl->hosts[hash % HC_BUCKETS]; h; h = h->next)
        if (h->hash == hash && !strcmp(h->key, key))
            return h;
    return NULL;
}

/* ---- TLS sessions ------------------------------------------------------- */

/* A new session from a server of h's: kept, the oldest going first. */
static void on_session(void *arg, struct ssl_session_st *s)
{
    struct hc_host *h = arg;
    uint32_t max = h->cl->o.tls_sessions_per_host;

    if (h->n_sessions >= max) {
        tls_session_free(h->sessions[0]);
        memmove(&h->sessions[0], &h->sessions[1],
                (h->n_sessions - 1) * sizeof(h->sessions[0]));
        h->n_sessions--;
    }
    h->sessions[h->n_sessions++] = s;
}

/* The newest usable session, taken out (a TLS 1.3 ticket is for one
 * use); NULL if none. */
static struct ssl_session_st *session_take(struct hc_host *h)
{
    uint64_t now_s = loop_wall_ms(h->cl->loop) / 1000;

    while (h->n_sessions) {
        struct ssl_session_st *s = h->sessions[--h->n_sessions];

        if (tls_session_usable(s, now_s))
            return s;
        tls_session_free(s);
    }
    return NULL;
}

/* ---- the idle list ------------------------------------------------------ */

static void idle_unlink(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;

    if (hc->prev)
        ((struct hc_conn *)conn_ext(hc->prev))->next = hc->next;
    else
        h->idle = hc->next;
    if (hc->next)
        ((struct hc_conn *)conn_ext(hc->next))->prev = hc->prev;
    hc->prev = hc->next = NULL;
    ST_ADD(h, idle, -1);
    h->cl->n_idle--;
}

static void idle_push(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;

    hc->prev = NULL;
    hc->next = h->idle;
    if (h->idle)
        ((struct hc_conn *)conn_ext(h->idle))->prev = c;
    h->idle = c;
    ST_ADD(h, idle, 1);
    h->cl->n_idle++;
}

/* Age of c in ms. */
static uint32_t conn_age(const struct conn *c)
{
    return loop_now(conn_loop(c)) - conn_created(c);
}

static bool too_old(const struct moor_http_client *cl, const struct conn *c)
{
    const struct hc_conn *hc = conn_ext_const(c);

    return (cl->o.max_conn_age_ms && conn_age(c) >= cl->o.max_conn_age_ms) ||
           (cl->o.max_requests_per_conn &&
            hc->requests >= cl->o.max_requests_per_conn);
}

/* ---- calls: user callbacks ---------------------------------------------- */

static void call_free(struct moor_http_call *call)
{
    msg_unref(call->head);
    msg_unref(call->body);
    pool_free(&call->cl->call_pool, call);
}

static void cb_enter(struct moor_http_call *call)
{
    call->in_cb++;
}

/* After a user callback: false if the call ended meanwhile (then it may
 * be freed already: do not touch it). */
static bool cb_leave(struct moor_http_call *call)
{
    call->in_cb--;
    if (!call->dead)
        return true;
    if (!call->in_cb)
        call_free(call);
    return false;
}

static void later_unlink(struct moor_http_call *call)
{
    struct moor_http_client *cl = call->cl;

    if (call->prev)
        call->prev->next = call->next;
    else
        cl->later_head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        cl->later_tail = call->prev;
    call->next = call->prev = NULL;
    call->later = false;
}

static void wait_unlink(struct moor_http_call *call)
{
    struct hc_host *h = call->host;

    if (call->prev)
        call->prev->next = call->next;
    else
        h->wait_head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        h->wait_tail = call->prev;
    call->next = call->prev = NULL;
    ST_ADD(h, waiting, -1);
    timer_cancel(loop_timers(call->cl->loop), &call->wait);
}

/* Detaches call from whatever holds it (queue, resolver, connection) and
 * runs on_done. Idempotent. A failure found inside
 * moor_http_client_request() waits on the later list for the end of the
 * loop iteration. */
static void call_finish(struct moor_http_call *call, int err, const char *fmt,
                        ...)
{
    struct moor_http_client *cl = call->cl;
    struct hc_host *h = call->host;
    struct moor_http_result res;
    va_list ap;

    if (call->state == C_DONE || call->dead)
        return;
    if (fmt && !call->message[0]) {
        va_start(ap, fmt);
        vsnprintf(call->message, sizeof(call->message), fmt, ap);
        va_end(ap);
    }
    if (!call->error)
        call->error = err;
    if (cl->in_request && !call->later) {
        /* Not from inside moor_http_client_request(). */
        if (call->state == C_WAITING)
            wait_unlink(call);
        if (call->state == C_RESOLVING) {
            resolve_cancel(call->rq);
            call->rq = NULL;
            ST_ADD(h, dialing, -1);
        }
        call->state = C_NEW;
        call->later = true;
        call->prev = cl->later_tail;
        call->next = NULL;
        if (cl->later_tail)
            cl->later_tail->next = call;
        else
            cl->later_head = call;
        cl->later_tail = call;
        loop_poke(cl->loop);
        return;
    }
    if (call->later)
        later_unlink(call);
    switch (call->state) {
    case C_WAITING:
        wait_unlink(call);
        break;
    case C_RESOLVING:
        resolve_cancel(call->rq);
        call->rq = NULL;
        ST_ADD(h, dialing, -1);
        host_kick(h);
        break;
    case C_DIALING:
    case C_RUNNING:
        if (call->conn) {
            struct conn *c = call->conn;
            struct hc_conn *hc = conn_ext(c);

            hc->call = NULL;
            call->conn = NULL;
            /* Still dialing: its request is queued but not a byte of it
             * went out. Dropped, so the connection joins the pool clean;
             * were it sent, the server would answer a request nobody
             * waits for and the pooled connection die of the stray
             * bytes. */
            if (call->state == C_DIALING) {
                conn_queue_purge(c);
                if (conn_queued_bytes(c))
                    conn_close(c, CLOSE_DONE);
            }
        }
        break;
    default:
        break;
    }
    call->state = C_DONE;
    timer_cancel(loop_timers(cl->loop), &call->total);
    timer_cancel(loop_timers(cl->loop), &call->wait);
    cl->calls--;
    if (call->all_prev)
        call->all_prev->all_next = call->all_next;
    else
        cl->all = call->all_next;
    if (call->all_next)
        call->all_next->all_prev = call->all_prev;
    memset(&res, 0, sizeof(res));
    res.error = call->error;
    res.status = call->status;
    res.retried = call->retried;
    res.reused = call->reused;
    res.body_bytes = call->body_bytes;
    res.message = call->message;
    call->dead = true;
    cb_enter(call);
    if (call->cb.on_done)
        call->cb.on_done(call, &res, call->user);
    cb_leave(call);
}

/* The end of every loop iteration: failures found inside
 * moor_http_client_request() get their on_done now. */
static void on_hook(struct loop_hook *hk)
{
    struct moor_http_client *cl =
        container_of(hk, struct moor_http_client, hook);
    struct moor_http_call *call;

    /* call_finish() takes it off the list (it is still on it, so the
     * unlink there keeps the rest of the list). */
    while ((call = cl->later_head))
        call_finish(call, call->error, NULL);
}

/* ---- deadlines of a call ------------------------------------------------ */

static void on_total(struct timer *t)
{
    struct moor_http_call *call = container_of(t, struct moor_http_call, total);
    struct conn *c = call->conn;

    call->error = MOOR_ETIMEOUT_TOTAL;
    snprintf(call->message, sizeof(call->message),
             "the request took longer than its %u ms", call->timeout_ms);
    if (c && call->state == C_RUNNING) {
        /* Half written or half answered: the connection cannot be reused.
         * Its on_close settles the call (and may free it). */
        conn_close(c, CLOSE_BODY_TIMEOUT);
        return;
    }
    /* Dialing: the connection goes on and joins the pool if it makes it. */
    call_finish(call, MOOR_ETIMEOUT_TOTAL, NULL);
}

static void on_wait(struct timer *t)
{
    struct moor_http_call *call = container_of(t, struct moor_http_call, wait);

    call_finish(call, MOOR_ETIMEOUT_WAIT,
                "no connection to %s came free within %u ms (%u open, "
                "max_conns_per_host)",
                call->host->key, call->cl->o.wait_timeout_ms,
                (unsigned)host_conns(call->host));
}

/* ---- the request -------------------------------------------------------- */

static bool is_token_char(unsigned char c)
{
    return ascii_is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s, size_t max)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (n >= max || !is_token_char((unsigned char)s[n]))
            return false;
    return n > 0;
}

/* A field value: visible characters, spaces and tabs, obs-text; no CR, LF
 * or NUL (the response-splitting guard), no leading or trailing space. */
static bool is_field_value(const char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return n == 0 ||
           (s[0] != ' ' && s[0] != '\t' && s[n - 1] != ' ' && s[n - 1] != '\t');
}

/* Headers moor writes itself. */
static bool reserved_header(const char *name)
{
    static const char *const names[] = {
        "host",       "content-length", "transfer-encoding",
        "connection", "upgrade",        "keep-alive",
        "te",         "trailer",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(name, names[i]))
            return true;
    return false;
}

static bool method_idempotent(const char *m)
{
    static const char *const names[] = {"GET",    "HEAD",    "PUT",
                                        "DELETE", "OPTIONS", "TRACE"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(m, names[i]))
            return true;
    return false;
}

/* Methods whose requests carry a body by their definition: an empty one
 * is said with Content-Length: 0 (RFC 9110 8.6). */
static bool method_has_body(const char *m)
{
    return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
}

/* Appends n bytes to the head being built. */
static uint8_t *put(uint8_t *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Builds the request head into a new message, in one allocation: its
 * length first, then its bytes. Returns it, or NULL with err filled. */
static struct msg *build_head(const struct moor_http_request *r,
                              const struct url *u, bool produced,
                              struct moor_error *err)
{
    char framing[64] = "";
    size_t len, ml = strlen(r->method), tl = strlen(u->target),
                al = strlen(u->authority), fl;
    struct msg *m;
    uint8_t *p;

    if (produced && r->body_length < 0)
        snprintf(framing, sizeof(framing), "Transfer-Encoding: chunked\r\n");
    else if (produced)
        snprintf(framing, sizeof(framing), "Content-Length: %lld\r\n",
                 r->body_length);
    else if (r->body_len || method_has_body(r->method))
        snprintf(framing, sizeof(framing), "Content-Length: %zu\r\n",
                 r->body_len);
    fl = strlen(framing);
    /* "M T HTTP/1.1\r\nHost: A\r\n" ... framing "\r\n" */
    len = ml + 1 + tl + 11 + 6 + al + 2 + fl + 2;
    for (size_t i = 0; i < r->n_headers; i++) {
        len += strlen(r->headers[i].name) + 2 + strlen(r->headers[i].value) + 2;
        if (len > HC_MAX_HEADLEN)
            break;
    }
    if (len > HC_MAX_HEADLEN) {
        api_fail(err, -EINVAL, "request head over 64 KiB");
        return NULL;
    }
    m = msg_new(NULL, len);
    if (!m) {
        api_fail(err, -ENOMEM, "out of memory");
        return NULL;
    }
    p = m->data;
    p = put(p, r->method, ml);
    p = put(p, " ", 1);
    p = put(p, u->target, tl);
    p = put(p, " HTTP/1.1\r\nHost: ", 17);
    p = put(p, u->authority, al);
    p = put(p, "\r\n", 2);
    for (size_t i = 0; i < r->n_headers; i++) {
        p = put(p, r->headers[i].name, strlen(r->headers[i].name));
        p = put(p, ": ", 2);
        p = put(p, r->headers[i].value, strlen(r->headers[i].value));
        p = put(p, "\r\n", 2);
    }
    p = put(p, framing, fl);
    p = put(p, "\r\n", 2);
    return m;
}

static int check_request(const struct moor_http_request *r,
                         const struct moor_http_callbacks *cb,
                         struct moor_error *err)
{
    if (!r->method || !is_token(r->method, HC_MAX_METHOD))
        return api_fail(err, -EINVAL,
                        "bad method \"%s\": want a token "
                        "such as GET or POST",
                        r->method ? r->method : "(null)");
    if (r->n_headers && !r->headers)
        return api_fail(err, -EINVAL, "n_headers without headers");
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct moor_http_field *f = &r->headers[i];

        if (!f->name || !is_token(f->name, 256))
            return api_fail(err, -EINVAL, "header %zu: bad name \"%s\"", i,
                            f->name ? f->name : "(null)");
        if (!f->value || !is_field_value(f->value))
            return api_fail(err, -EINVAL,
                            "header %s: the value has a control character "
                            "(CR, LF, NUL) or leading/trailing space",
                            f->name);
        if (reserved_header(f->name))
            return api_fail(err, -EINVAL,
                            "header %s is moor's to write (from the URL, "
                            "the body and the pool)",
                            f->name);
    }
    if (cb && cb->on_writable && (r->body || r->body_len))
        return api_fail(err, -EINVAL,
                        "a body from memory and on_writable both given");
    if (r->body_len && !r->body)
        return api_fail(err, -EINVAL, "body_len without body");
    if (cb && cb->on_writable && r->body_length < -1)
        return api_fail(err, -EINVAL, "body_length must be -1 or more");
    return 0;
}

static bool has_idempotency_key(const struct moor_http_request *r)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->headers[i].name, "Idempotency-Key"))
            return true;
    return false;
}

MOOR_API struct moor_http_call *moor_http_client_request(
    struct moor_http_client *cl, const struct moor_http_request *r,
    const struct moor_http_callbacks *cb, void *user, struct moor_error *err)
{
    struct moor_http_request rq;
    struct moor_http_call *call;
    struct hc_host *h;
    struct url url, *u = &url; /* 8.5 KiB, on the stack: no allocation */
    const char *why;

    if (!cl || !r)
        return api_fail(err, -EINVAL, "no client or no request"), NULL;
    if (cl->freeing)
        return api_fail(err, MOOR_ESTATE, "the client is being freed"), NULL;
    if (api_options(&rq, sizeof(rq), r, request_defaults, "moor_http_request",
                    err) < 0)
        return NULL;
    if (!rq.method)
        rq.method = "GET";
    /* The deadlines armed below count from now: the loop's cached clock
     * is stale when the caller starts a request from outside the loop
     * after a while (loop.c refreshes it mid-iteration too). */
    loop_update_time(cl->loop);
    if (check_request(&rq, cb, err) < 0)
        return NULL;
    why = url_parse(rq.url ? rq.url : "", u);
    if (!why && strcmp(u->scheme, "http") && strcmp(u->scheme, "https"))
        why = "URL scheme must be http or https";
    if (why) {
        api_fail(err, MOOR_EURL, "bad URL \"%s\": %s", rq.url ? rq.url : "",
                 why);
        return NULL;
    }
    call = pool_alloc(&cl->call_pool);
    if (!call)
        return api_fail(err, -ENOMEM, "out of memory"), NULL;
    call->cl = cl;
    call->produced = cb && cb->on_writable;
    call->head = build_head(&rq, u, call->produced, err);
    if (!call->head)
        goto fail;
    if (rq.body_len && !(call->body = msg_new(rq.body, rq.body_len))) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    h = host_get(cl, u);
    if (!h) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    if (h->tls && !cl->tls && client_tls(cl, err) < 0)
        goto fail;

    call->host = h;
    if (cb)
        call->cb = *cb;
    call->user = user;
    call->body_length =
        call->produced ? rq.body_length : (long long)rq.body_len;
    call->head_req = !strcmp(rq.method, "HEAD");
    call->idempotent =
        !call->produced && (rq.idempotent || method_idempotent(rq.method) ||
                            has_idempotency_key(&rq));
    timer_init(&call->total, on_total);
    timer_init(&call->wait, on_wait);
    cl->calls++;
    ST_ADD(h, requests, 1);
    call->timeout_ms = rq.timeout_ms ? rq.timeout_ms : cl->o.total_timeout_ms;
    if (call->timeout_ms)
        loop_timer_in(cl->loop, &call->total, call->timeout_ms);
    call->all_next = cl->all;
    if (cl->all)
        cl->all->all_prev = call;
    cl->all = call;
    cl->in_request = true;
    call_start(call);
    cl->in_request = false;
    return call;

fail:
    call_free(call);
    return NULL;
}

/* ---- running a call on a connection ------------------------------------- */

static void write_phase_deadline(struct conn *c)
{
    struct moor_http_client *cl = conn_ctx(c);

    conn_set_read_deadline(c, cl->o.write_timeout_ms, CLOSE_WRITE_TIMEOUT);
}

/* The whole request is out: the wait for the head starts. */
static void request_written(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    hc->flags |= HCF_WRITTEN;
    if (hc->rstate == R_HEAD)
        conn_set_read_deadline(c, cl->o.head_timeout_ms, CLOSE_HEADER_TIMEOUT);
}

static bool request_complete(const struct moor_http_call *call)
{
    return !call->produced || call->write_ended;
}

/* Tells a producer it may write. */
static void call_writable(struct moor_http_call *call)
{
    if (!call->produced || call->write_ended || !call->cb.on_writable)
        return;
    cb_enter(call);
    call->cb.on_writable(call, call->user);
    cb_leave(call);
}

/* Puts call on connection c (connected, or still connecting): queues the
 * request. Returns 0 or -ENOMEM. */
static int call_attach(struct moor_http_call *call, struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);

    hc->call = call;
    call->conn = c;
    hc->rstate = R_HEAD;
    hc->scan = 0;
    hc->flags &= (uint8_t) ~(HCF_WRITTEN | HCF_KEEP | HCF_PAUSED | HCF_AGED);
    if (conn_send_flags(c, call->head, CONN_SEND_OVERCAP) < 0 ||
        (call->body && conn_send_flags(c, call->body, CONN_SEND_OVERCAP) < 0))
        return -ENOMEM;
    conn_set_want_flush(&call->cl->set);
    return 0;
}

/* Runs call on c, a pooled connection. */
static void run_on_idle(struct moor_http_call *call, struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;

    hc->phase = HC_BUSY;
    ST_ADD(h, active, 1);
    ST_ADD(h, conns_reused, 1);
    conn_set_state(c, CSTATE_ACTIVE);
    call->reused = true;
    call->state = C_RUNNING;
    if (call_attach(call, c) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    /* A producer hears on_writable once the head is out (on_drain). */
    write_phase_deadline(c);
}

static void connect_next(struct moor_http_call *call);

static void on_resolved(void *arg, int err, const struct sockaddr_storage *a,
                        size_t n)
{
    struct moor_http_call *call = arg;
    struct hc_host *h = call->host;

    call->rq = NULL;
    if (err < 0) {
        ST_ADD(h, dialing, -1);
        call->state = C_NEW;
        if (err == -ETIMEDOUT)
            call_finish(call, MOOR_ETIMEOUT_RESOLVE,
                        "resolving %s took longer than %u ms", h->name,
                        h->cl->o.resolve_timeout_ms);
        else
            call_finish(call, err == -ENOMEM ? -ENOMEM : MOOR_ERESOLVE,
                        "cannot resolve %s: %s", h->name,
                        err == -ENOENT   ? "no such host"
                        : err == -EINVAL ? "not a host name"
                        : err == -EAGAIN ? "too many lookups in flight"
                        : err == -EIO    ? "the DNS server failed or refused"
                                         : moor_strerror(err));
        host_kick(h);
        return;
    }
    n = MIN(n, (size_t)HC_MAX_ADDRS);
    for (size_t i = 0; i < n; i++)
        memcpy(&call->addrs[i], &a[i],
               a[i].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                          : sizeof(struct sockaddr_in));
    call->n_addrs = (uint8_t)n;
    call->addr_i = 0;
    connect_next(call);
}

static const char *addr_str(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    struct sockaddr_in in;
    struct sockaddr_in6 in6;

    if (sa->sa_family == AF_INET) {
        memcpy(&in, sa, sizeof(in));
        inet_ntop(AF_INET, &in.sin_addr, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(in.sin_port));
    } else {
        memcpy(&in6, sa, sizeof(in6));
        inet_ntop(AF_INET6, &in6.sin6_addr, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, (unsigned)ntohs(in6.sin6_port));
    }
    return out;
}

/* Dials the next address of call's (the host's dialing gauge already
 * counts it). */
static void connect_next(struct moor_http_call *call)
{
    struct moor_http_client *cl = call->cl;
    struct hc_host *h = call->host;
    int e = -ENOENT;

    while (call->addr_i < call->n_addrs) {
        const struct sockaddr *a =
            (const struct sockaddr *)&call->addrs[call->addr_i++];
        socklen_t al = a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
        struct conn *c;
        struct hc_conn *hc;
        char as[64];

        c = conn_connect(&cl->set, a, al, NULL, 0, &hc_proto, cl,
                         sizeof(struct hc_conn), cl->o.connect_timeout_ms, &e);
        if (!c) {
            snprintf(call->message, sizeof(call->message), "connect to %s: %s",
                     addr_str(a, as, sizeof(as)), moor_strerror(e));
            continue;
        }
        hc = conn_ext(c);
        hc->host = h;
        hc->phase = HC_DIAL;
        ST_ADD(h, conns_new, 1);
        call->state = C_DIALING;
        if (h->tls) {
            struct ssl_session_st *s = session_take(h);

            if (conn_start_tls(c, cl->tls, false, h->name, 0) < 0 ||
                tls_conn_set_session(conn_tls(c), s, h) < 0) {
                tls_session_free(s);
                call->message[0] = '\0';
                call->error = -ENOMEM;
                hc->call = call;
                call->conn = c;
                conn_close(c, CLOSE_NO_MEMORY);
                return;
            }
            tls_session_free(s); /* OpenSSL took its own reference */
        }
        if (call_attach(call, c) < 0) {
            call->error = -ENOMEM;
            conn_close(c, CLOSE_NO_MEMORY);
            return;
        }
        call->message[0] = '\0';
        return;
    }
    ST_ADD(h, dialing, -1);
    call->state = C_NEW;
    call_finish(call, e, NULL);
    host_kick(h);
}

/* Resolves and dials for call. */
static void dial(struct moor_http_call *call)
{
    struct moor_http_client *cl = call->cl;
    struct hc_host *h = call->host;
    struct sockaddr_storage a[HC_MAX_ADDRS];
    size_t n = HC_MAX_ADDRS;
    int rc;

    ST_ADD(h, dialing, 1);
    call->state = C_RESOLVING;
    rc = resolve_start(cl->dns, h->name, h->port, cl->o.resolve_timeout_ms,
                       on_resolved, call, a, &n, &call->rq);
    if (rc < 0) {
        call->rq = NULL;
        on_resolved(call, rc, NULL, 0);
        return;
    }
    if (rc == 1) {
        /* Known now: addresses, or a name remembered not to exist. */
        call->rq = NULL;
        on_resolved(call, n ? 0 : -ENOENT, a, n);
    }
}

/* Finds call a connection: a pooled one, a new one, or a place in the
 * queue. */
static void call_start(struct moor_http_call *call)
{
    struct moor_http_client *cl = call->cl;
    struct hc_host *h = call->host;

    while (!call->fresh && h->idle) {
        struct conn *c = h->idle;

        idle_unlink(c);
        if (too_old(cl, c)) {
            ST_ADD(h, closed_max_age, 1);
            ((struct hc_conn *)conn_ext(c))->flags |= HCF_COUNTED;
            conn_close(c, CLOSE_DONE);
            continue;
        }
        run_on_idle(call, c);
        return;
    }
    if (!cl->o.max_conns_per_host ||
        host_conns(h) < (long)cl->o.max_conns_per_host) {
        dial(call);
        return;
    }
    if ((uint32_t)h->st.waiting >= cl->o.max_waiting_per_host) {
        call_finish(call, MOOR_EQUEUEFULL,
                    "%s: %u connections open and %u requests waiting "
                    "(max_conns_per_host, max_waiting_per_host)",
                    h->key, (unsigned)host_conns(h), (unsigned)h->st.waiting);
        return;
    }
    call->state = C_WAITING;
    call->prev = h->wait_tail;
    call->next = NULL;
    if (h->wait_tail)
        h->wait_tail->next = call;
    else
        h->wait_head = call;
    h->wait_tail = call;
    ST_ADD(h, waiting, 1);
    if (cl->o.wait_timeout_ms)
        loop_timer_in(cl->loop, &call->wait, cl->o.wait_timeout_ms);
}

/* A connection or a dial of h's ended or came free: waiting calls may go.
 */
static void host_kick(struct hc_host *h)
{
    struct moor_http_client *cl = h->cl;

    while (h->wait_head && (h->idle || !cl->o.max_conns_per_host ||
                            host_conns(h) < (long)cl->o.max_conns_per_host)) {
        struct moor_http_call *call = h->wait_head;

        wait_unlink(call);
        call->state = C_NEW;
        call_start(call);
    }
}

/* c finished a call: to the first waiting call, to the pool, or closed. */
static void conn_release(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;
    struct moor_http_client *cl = h->cl;

    if (hc->phase == HC_BUSY)
        ST_ADD(h, active, -1);
    else if (hc->phase != HC_IDLE)
        ST_ADD(h, dialing, -1);
    hc->phase = HC_IDLE;
    hc->call = NULL;
    hc->rstate = R_HEAD;
    hc->scan = 0;
    hc->flags = 0;
    if (conn_paused(c))
        conn_resume_read(c, PAUSE_BACKPRESSURE);
    if (cl->freeing) {
        hc->flags |= HCF_COUNTED;
        conn_close(c, CLOSE_SHUTDOWN);
        return;
    }
    if (too_old(cl, c)) {
        ST_ADD(h, closed_max_age, 1);
        hc->flags |= HCF_COUNTED;
        conn_close(c, CLOSE_DONE);
        return;
    }
    if (h->wait_head) {
        struct moor_http_call *call = h->wait_head;

        wait_unlink(call);
        run_on_idle(call, c);
        return;
    }
    if (h->st.idle >= (long)cl->o.max_idle_per_host ||
        cl->n_idle >= cl->o.max_idle_total) {
        ST_ADD(h, closed_pool_full, 1);
        hc->flags |= HCF_COUNTED;
        conn_close(c, CLOSE_DONE);
        return;
    }
    idle_push(c);
    conn_set_state(c, CSTATE_IDLE);
    if (conn_tls(c))
        tls_conn_release_buffers(conn_tls(c)); /* rule 3: idle holds none */
    {
        uint32_t ms = cl->o.idle_timeout_ms;

        if (cl->o.max_conn_age_ms) {
            uint32_t left = cl->o.max_conn_age_ms - conn_age(c);
            if (left < ms || !ms) {
                ms = left ? left : 1;
                hc->flags |= HCF_AGED;
            }
        }
        conn_set_read_deadline(c, ms ? ms : 1, CLOSE_IDLE_TIMEOUT);
    }
}

/* The response is complete. */
static void response_done(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_call *call = hc->call;
    struct hc_host *h = hc->host;
    bool keep = (hc->flags & HCF_KEEP) && (hc->flags & HCF_WRITTEN) &&
                conn_queued_bytes(c) == 0;

    hc->requests++;
    hc->call = NULL;
    call->conn = NULL;
    call->state = C_NEW; /* off the connection */
    if (keep) {
        conn_release(c);
    } else {
        bool stray = hc->flags & HCF_STRAY;

        if (stray)
            ST_ADD(h, closed_peer, 1);
        else
            ST_ADD(h, closed_by_response, 1);
        ST_ADD(h, active, -1);
        hc->phase = HC_IDLE; /* counted: on_close leaves the gauges */
        hc->flags |= HCF_COUNTED;
        conn_close(c, stray ? CLOSE_PROTOCOL_ERROR : CLOSE_DONE);
        host_kick(h);
    }
    call_finish(call, 0, NULL);
}

/* The response ended at p[off] of the len bytes read: any after it were
 * not asked for, so the connection is closed, not pooled, before on_done
 * can put a new call on it. */
static void response_end(struct conn *c, size_t off, size_t len)
{
    struct hc_conn *hc = conn_ext(c);

    if (off < len) {
        hc->flags |= HCF_STRAY;
        hc->flags &= (uint8_t)~HCF_KEEP;
    }
    response_done(c);
}

/* ---- the conn protocol -------------------------------------------------- */

static void hc_on_tcp_connect(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    hc->phase = HC_TLS;
    conn_set_read_deadline(c, cl->o.tls_timeout_ms, CLOSE_HANDSHAKE_TIMEOUT);
}

static void hc_on_connect(struct conn *c, int err)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_call *call = hc->call;
    struct hc_host *h = hc->host;

    if (err) {
        hc->err = err;
        return; /* conn.c closes it now; hc_on_close settles the call */
    }
    if (!call) {
        /* Its call ended while it dialed: it joins the pool. */
        conn_release(c);
        host_kick(h);
        return;
    }
    ST_ADD(h, dialing, -1);
    ST_ADD(h, active, 1);
    hc->phase = HC_BUSY;
    conn_set_state(c, CSTATE_ACTIVE);
    call->state = C_RUNNING;
    write_phase_deadline(c);
    if (request_complete(call) && !conn_queued_bytes(c))
        request_written(c);
    /* A producer hears on_writable once the head is out (on_drain). */
}

static void hc_on_drain(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_call *call = hc->call;

    if (!call || hc->phase != HC_BUSY || (hc->flags & HCF_WRITTEN))
        return;
    if (request_complete(call)) {
        request_written(c);
        return;
    }
    write_phase_deadline(c);
    call_writable(call);
}

static bool hc_on_timeout(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    switch (conn_read_reason(c)) {
    case CLOSE_WRITE_TIMEOUT:
        /* Our stand-in while the request goes out: bytes still queued and
         * the socket taking them (else conn.c's own write deadline ends
         * it) is progress; an empty queue is a producer that gave
         * nothing. */
        if (conn_queued_bytes(c)) {
            write_phase_deadline(c);
            return true;
        }
        return false;
    case CLOSE_BODY_TIMEOUT:
        if (hc->flags & HCF_PAUSED) {
            /* The caller paused it: not the server's gap. */
            conn_set_read_deadline(c, cl->o.body_timeout_ms,
                                   CLOSE_BODY_TIMEOUT);
            return true;
        }
        return false;
    default:
        return false;
    }
}

/* Body bytes to the caller. False if the call ended meanwhile. */
static bool deliver(struct conn *c, struct moor_http_call *call,
                    const uint8_t *p, size_t n)
{
    call->body_bytes += n;
    if (!n || !call->cb.on_body)
        return true;
    cb_enter(call);
    call->cb.on_body(call, p, n, call->user);
    return cb_leave(call) && !conn_is_closing(c);
}

struct chunk_ctx {
    struct conn *c;
    struct moor_http_call *call;
    bool gone;
};

static void on_chunk(void *arg, const uint8_t *p, size_t n)
{
    struct chunk_ctx *x = arg;

    if (!x->gone && !deliver(x->c, x->call, p, n))
        x->gone = true;
}

static void fail_conn(struct conn *c, int err, const char *why)
{
    struct hc_conn *hc = conn_ext(c);

    hc->err = err;
    if (hc->call)
        snprintf(hc->call->message, sizeof(hc->call->message),
                 "bad response from %s: %s", hc->host->key, why);
    conn_close(c, CLOSE_PROTOCOL_ERROR);
}

/* Parses the head at p[0..len). Returns bytes consumed (0: incomplete),
 * or -1 once the conn is closing or the call gone. */
static ssize_t parse_head(struct conn *c, const uint8_t *p, size_t len)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_call *call = hc->call;
    struct moor_http_client *cl = conn_ctx(c);
    struct http_response *r;
    struct moor_http_field *f;
    struct moor_http_response mr;
    const char *why = "";
    ssize_t n;

    if (!cl->resp)
        cl->resp = mem_alloc(MEM_HTTPC, sizeof(*cl->resp));
    if (!cl->fields)
        cl->fields =
            mem_alloc(MEM_HTTPC, HTTP_MAX_HEADERS_CAP * sizeof(*cl->fields));
    if (!cl->resp || !cl->fields) {
        call->error = -ENOMEM;
        conn_close(c, CLOSE_NO_MEMORY);
        return -1;
    }
    r = cl->resp;
    {
        /* A HEAD's Content-Length is the resource's, not a body to come. */
        struct http_limits head_lim = cl->lim;

        if (call->head_req)
            head_lim.max_body = UINT64_MAX;
        n = http_parse_response(p, len, &head_lim, &hc->scan, r, &why);
    }
    if (n <= 0) {
        if (n == 0)
            return 0;
        fail_conn(c, n == -EPROTO ? MOOR_EBADRESPONSE : MOOR_ETOOBIG, why);
        return -1;
    }
    hc->scan = 0;
    if (r->status < 200) {
        if (r->status == 101) {
            fail_conn(c, MOOR_EBADRESPONSE,
                      "101 Switching Protocols to a request with no Upgrade");
            return -1;
        }
        return n; /* 1xx: the real head follows */
    }
    call->status = r->status;
    hc->kind = (uint8_t)http_response_body_kind(r, call->head_req ? HTTP_HEAD
                                                                  : HTTP_GET);
    if (r->keep_alive && hc->kind != HTTP_BODY_CLOSE)
        hc->flags |= HCF_KEEP;
    hc->left = r->content_length;
    if (hc->kind == HTTP_BODY_LENGTH && !hc->left)
        hc->kind = HTTP_BODY_NONE;
    if (hc->kind == HTTP_BODY_CHUNKED)
        http_chunked_init(&hc->chunked);
    hc->rstate = R_BODY;
    conn_set_read_deadline(c, cl->o.body_timeout_ms, CLOSE_BODY_TIMEOUT);

    memset(&mr, 0, sizeof(mr));
    mr.status = r->status;
    mr.version_minor = r->version_minor;
    mr.content_length = hc->kind == HTTP_BODY_LENGTH ? (long long)hc->left
                        : hc->kind == HTTP_BODY_NONE ? 0
                                                     : -1;
    mr.reason = r->reason.p;
    mr.reason_len = r->reason.len;
    f = cl->fields;
    for (uint32_t i = 0; i < r->n_headers; i++) {
        f[i].name = r->headers[i].name.p;
        f[i].name_len = r->headers[i].name.len;
        f[i].value = r->headers[i].value.p;
        f[i].value_len = r->headers[i].value.len;
    }
    mr.headers = f;
    mr.n_headers = r->n_headers;
    if (call->cb.on_head) {
        bool alive;

        cb_enter(call);
        call->cb.on_head(call, &mr, call->user);
        alive = cb_leave(call);
        if (!alive || conn_is_closing(c) || hc->call != call)
            return -1;
    }
    return n;
}

static size_t hc_on_data(struct conn *c, uint8_t *p, size_t len)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);
    struct moor_http_call *call = hc->call;
    size_t off = 0;

    if (!call || hc->phase != HC_BUSY) {
        /* Idle: the server has nothing to say to us. */
        hc->flags |= HCF_STRAY;
        conn_close(c, CLOSE_PROTOCOL_ERROR);
        return len;
    }
    call->got_bytes = true;
    while (off < len) {
        if (hc->rstate == R_HEAD) {
            ssize_t n = parse_head(c, p + off, len - off);

            if (n < 0)
                return len;
            if (n == 0)
                return off; /* carried: parse_head bounds it */
            off += (size_t)n;
            if (hc->rstate == R_HEAD)
                continue; /* a 1xx */
            if (hc->kind == HTTP_BODY_NONE) {
                response_end(c, off, len);
                break;
            }
            continue;
        }
        /* The body. */
        conn_set_read_deadline(c, cl->o.body_timeout_ms, CLOSE_BODY_TIMEOUT);
        if (hc->kind == HTTP_BODY_LENGTH) {
            size_t n = (size_t)MIN((uint64_t)(len - off), hc->left);

            hc->left -= n;
            if (!deliver(c, call, p + off, n))
                return len;
            off += n;
            if (!hc->left) {
                response_end(c, off, len);
                break;
            }
        } else if (hc->kind == HTTP_BODY_CHUNKED) {
            struct chunk_ctx x = {.c = c, .call = call};
            bool done = false;
            int status = 0;
            ssize_t n;

            cb_enter(call);
            n = http_chunked_parse(&hc->chunked, p + off, len - off, &cl->lim,
                                   on_chunk, &x, &done, &status);
            if (!cb_leave(call) || x.gone || conn_is_closing(c))
                return len;
            if (n < 0) {
                fail_conn(c, status == 413 ? MOOR_ETOOBIG : MOOR_EBADRESPONSE,
                          status == 413 ? "body over max_body"
                                        : "bad chunked coding");
                return len;
            }
            off += (size_t)n;
            if (done) {
                response_end(c, off, len);
                break;
            }
        } else { /* until the server closes */
            size_t n = len - off;

            if (call->body_bytes + n > cl->o.max_body) {
                fail_conn(c, MOOR_ETOOBIG, "body over max_body");
                return len;
            }
            if (!deliver(c, call, p + off, n))
                return len;
            off = len;
        }
    }
    if (off < len) {
        /* Bytes after a complete response: nobody asked for them
         * (response_end() closed the connection already). */
        if (!conn_is_closing(c)) {
            hc->flags |= HCF_STRAY;
            conn_close(c, CLOSE_PROTOCOL_ERROR);
        }
        return len;
    }
    return off;
}

/* What failed, from why c closed while a call was on it. */
static int close_error(struct conn *c, enum close_reason why, char *msg,
                       size_t len)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;
    struct moor_http_client *cl = h->cl;
    struct tls_conn *tc = conn_tls(c);

    switch (why) {
    case CLOSE_CONNECT_TIMEOUT:
        snprintf(msg, len, "connect to %s took longer than %u ms", h->key,
                 cl->o.connect_timeout_ms);
        return MOOR_ETIMEOUT_CONNECT;
    case CLOSE_HANDSHAKE_TIMEOUT:
        snprintf(msg, len, "TLS handshake with %s took longer than %u ms",
                 h->key, cl->o.tls_timeout_ms);
        return MOOR_ETIMEOUT_TLS;
    case CLOSE_CONNECT_FAILED:
        snprintf(msg, len, "connect to %s: %s", h->key,
                 moor_strerror(hc->err ? hc->err : -ECONNREFUSED));
        return hc->err ? hc->err : -ECONNREFUSED;
    case CLOSE_TLS_ERROR:
        if (tc && tls_conn_verify_failed(tc)) {
            snprintf(msg, len, "TLS: %s: certificate verification failed: %s",
                     h->key, conn_tls_error(c));
            return MOOR_ETLS_VERIFY;
        }
        snprintf(msg, len, "TLS: %s: %s", h->key,
                 conn_tls_error(c)[0] ? conn_tls_error(c) : "handshake failed");
        return MOOR_ETLS;
    case CLOSE_WRITE_TIMEOUT:
        snprintf(msg, len, "%s took no request bytes for %u ms", h->key,
                 cl->o.write_timeout_ms);
        return MOOR_ETIMEOUT_WRITE;
    case CLOSE_HEADER_TIMEOUT:
        snprintf(msg, len, "no response head from %s within %u ms", h->key,
                 cl->o.head_timeout_ms);
        return MOOR_ETIMEOUT_HEAD;
    case CLOSE_BODY_TIMEOUT:
        snprintf(msg, len, "%s sent no body bytes for %u ms", h->key,
                 cl->o.body_timeout_ms);
        return MOOR_ETIMEOUT_BODY;
    case CLOSE_PROTOCOL_ERROR:
        if (hc->err)
            return hc->err;
        snprintf(msg, len, "%s sent bytes nobody asked for", h->key);
        return MOOR_EBADRESPONSE;
    case CLOSE_NO_MEMORY:
        snprintf(msg, len, "out of memory");
        return -ENOMEM;
    case CLOSE_SHUTDOWN:
        snprintf(msg, len, "the client is being freed");
        return -ECANCELED;
    default:
        if (hc->phase == HC_TLS || hc->err == -EPROTO) {
            snprintf(msg, len,
                     "TLS: %s closed the connection during the "
                     "handshake",
                     h->key);
            return MOOR_ETLS;
        }
        snprintf(msg, len,
                 "%s closed the connection before the response "
                 "was complete (%s)",
                 h->key, close_reason_name(why));
        return MOOR_EPEERCLOSED;
    }
}

static void hc_on_close(struct conn *c, enum close_reason why)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;
    struct moor_http_call *call = hc->call;
    char msg[sizeof(call->message)];
    int err;

    if (!h)
        return; /* failed inside connect_next before it was ours */
    if (hc->flags & HCF_COUNTED) {
        host_kick(h); /* counted by whoever closed it */
        return;
    }
    switch (hc->phase) {
    case HC_IDLE:
        idle_unlink(c);
        if (why == CLOSE_IDLE_TIMEOUT && (hc->flags & HCF_AGED))
            ST_ADD(h, closed_max_age, 1);
        else if (why == CLOSE_IDLE_TIMEOUT)
            ST_ADD(h, closed_idle_timeout, 1);
        else if (why == CLOSE_SHUTDOWN)
            ;
        else
            ST_ADD(h, closed_peer, 1);
        host_kick(h);
        return;
    case HC_BUSY:
        ST_ADD(h, active, -1);
        break;
    default:
        ST_ADD(h, dialing, -1);
        break;
    }
    if (!call) {
        /* Busy with no call: one cancelled half way. */
        if (hc->phase == HC_BUSY)
            ST_ADD(h, closed_abandoned, 1);
        host_kick(h);
        return;
    }
    hc->call = NULL;
    call->conn = NULL;
    if (hc->rstate == R_BODY && hc->kind == HTTP_BODY_CLOSE &&
        why == CLOSE_PEER) {
        /* The close ends the body. */
        ST_ADD(h, closed_by_response, 1);
        call->state = C_NEW;
        host_kick(h);
        call_finish(call, 0, NULL);
        return;
    }
    msg[0] = '\0';
    err = close_error(c, why, msg, sizeof(msg)); /* msg: if none was set */
    if (call->error)
        err = call->error;
    if (why == CLOSE_CONNECT_FAILED && call->addr_i < call->n_addrs) {
        /* The next address: the dial goes on (and stays counted). */
        ST_ADD(h, dialing, 1);
        ST_ADD(h, closed_error, 1);
        connect_next(call);
        return;
    }
    ST_ADD(h, closed_error, 1);
    if (call->reused && !call->got_bytes && !call->retried &&
        call->idempotent && !call->error &&
        (err == MOOR_EPEERCLOSED || err == MOOR_EBADRESPONSE ||
         err == -ECONNRESET)) {
        /* Stale: the server closed it as we sent. Once, on a new one. */
        call->retried = true;
        call->fresh = true;
        call->reused = false;
        call->state = C_NEW;
        ST_ADD(h, retries, 1);
        host_kick(h);
        call_start(call);
        return;
    }
    call->state = C_NEW;
    if (msg[0] && !call->message[0])
        snprintf(call->message, sizeof(call->message), "%s", msg);
    host_kick(h);
    call_finish(call, err, NULL);
}

/* ---- the caller's controls ---------------------------------------------- */

MOOR_API int moor_http_call_write(struct moor_http_call *call, const void *p,
                                  size_t n)
{
    struct conn *c = call ? call->conn : NULL;
    struct msg *m;

    if (!call || call->dead || !call->produced || call->write_ended || !c ||
        call->state != C_RUNNING || conn_is_closing(c))
        return MOOR_ESTATE;
    if (call->body_length >= 0 &&
        call->written + n > (uint64_t)call->body_length)
        return -EINVAL;
    if (!n)
        return conn_queue_over_limit(c) ? 1 : 0;
    if (call->body_length < 0) {
        char hdr[24];
        int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);

        m = msg_new(NULL, (size_t)hl + n + 2);
        if (!m)
            return -ENOMEM;
        memcpy(m->data, hdr, (size_t)hl);
        memcpy(m->data + hl, p, n);
        memcpy(m->data + hl + n, "\r\n", 2);
    } else {
        m = msg_new(p, n);
        if (!m)
            return -ENOMEM;
    }
    if (conn_send_flags(c, m, CONN_SEND_OVERCAP) < 0) {
        msg_unref(m);
        return -ENOMEM;
    }
    msg_unref(m);
    call->written += n;
    conn_set_want_flush(&call->cl->set);
    write_phase_deadline(c);
    return conn_queue_over_limit(c) ? 1 : 0;
}

MOOR_API int moor_http_call_write_end(struct moor_http_call *call)
{
    struct conn *c = call ? call->conn : NULL;

    if (!call || call->dead || !call->produced || call->write_ended || !c ||
        call->state != C_RUNNING || conn_is_closing(c))
        return MOOR_ESTATE;
    if (call->body_length >= 0 && call->written != (uint64_t)call->body_length)
        return -EINVAL;
    if (call->body_length < 0 && conn_send_bytes(c, "0\r\n\r\n", 5) < 0)
        return -ENOMEM;
    call->write_ended = true;
    conn_set_want_flush(&call->cl->set);
    if (!conn_queued_bytes(c))
        request_written(c);
    return 0;
}

MOOR_API void moor_http_call_pause(struct moor_http_call *call)
{
    struct hc_conn *hc;

    if (!call || call->dead || !call->conn)
        return;
    hc = conn_ext(call->conn);
    hc->flags |= HCF_PAUSED;
    conn_pause_read(call->conn, PAUSE_BACKPRESSURE);
}

MOOR_API void moor_http_call_resume(struct moor_http_call *call)
{
    struct hc_conn *hc;

    if (!call || call->dead || !call->conn)
        return;
    hc = conn_ext(call->conn);
    if (!(hc->flags & HCF_PAUSED))
        return;
    hc->flags &= (uint8_t)~HCF_PAUSED;
    if (hc->rstate == R_BODY)
        conn_set_read_deadline(call->conn, call->cl->o.body_timeout_ms,
                               CLOSE_BODY_TIMEOUT);
    conn_resume_read(call->conn, PAUSE_BACKPRESSURE);
}

MOOR_API void moor_http_call_cancel(struct moor_http_call *call)
{
    struct conn *c;

    if (!call || call->dead || call->state == C_DONE)
        return;
    c = call->conn;
    if (c && call->state == C_RUNNING) {
        struct hc_conn *hc = conn_ext(c);

        /* Half written or half read: the connection cannot be reused. */
        hc->call = NULL;
        call->conn = NULL;
        conn_close(c, CLOSE_DONE); /* counted there: closed_abandoned */
    }
    call_finish(call, -ECANCELED, "canceled");
}

static void close_idle_of(struct hc_host *h)
{
    while (h->idle) {
        struct conn *c = h->idle;
        struct hc_conn *hc = conn_ext(c);

        idle_unlink(c);
        hc->flags |= HCF_COUNTED;
        conn_close(c, CLOSE_SHUTDOWN);
    }
}

MOOR_API void moor_http_client_close_idle(struct moor_http_client *cl)
{
    if (!cl)
        return;
    for (unsigned b = 0; b < HC_BUCKETS; b++)
        for (struct hc_host *h = cl->hosts[b]; h; h = h->next)
            close_idle_of(h);
}

/* ---- statistics ---------------------------------------------------------- */

MOOR_API int moor_http_client_stats(const struct moor_http_client *cl,
                                    const char *host,
                                    struct moor_http_client_stats *st)
{
    const struct hc_host *h;

    if (!cl || !st)
        return -EINVAL;
    if (!host) {
        *st = cl->st;
        st->bytes_held = mem_live_bytes(MEM_HTTPC);
        return 0;
    }
    h = host_find(cl, host);
    if (!h)
        return -ENOENT;
    *st = h->st;
    st->bytes_held = (int64_t)(sizeof(*h) + strlen(h->key) * 3) +
                     host_conns(h) * (int64_t)sizeof(struct hc_conn);
    return 0;
}

/* ---- freeing ------------------------------------------------------------- */

static void close_all(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

MOOR_API void moor_http_client_free(struct moor_http_client *cl)
{
    struct moor_http_call *call;

    if (!cl)
        return;
    cl->freeing = true;
    /* Calls first (on_done with -ECANCELED), then every connection. */
    on_hook(&cl->hook);
    while ((call = cl->all))
        moor_http_call_cancel(call);
    conn_set_each(&cl->set, close_all, NULL);
    api_loop_remove_http_client(cl->ml, cl);
    loop_remove_hook(cl->loop, &cl->hook);
    conn_set_fini(&cl->set);
    resolver_free(cl->dns);
    for (unsigned b = 0; b < HC_BUCKETS; b++) {
        struct hc_host *h = cl->hosts[b];

        while (h) {
            struct hc_host *next = h->next;

            host_free(h);
            h = next;
        }
    }
    tls_ctx_free(cl->tls);
    api_strfree(cl->tls_ca);
    api_strfree(cl->dns_servers);
    mem_free(MEM_HTTPC, cl->resp);
    mem_free(MEM_HTTPC, cl->fields);
    pool_fini(&cl->call_pool);
    mem_free(MEM_HTTPC, cl);
}

/* ---- metrics --------------------------------------------------------------
 */

/* One family's HELP and TYPE lines. */
static void family(struct sbuf *b, const char *name, const char *type,
                   const char *help)
{
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void http_client_metrics(const struct moor_http_client *cl, struct sbuf *b)
{
    static const struct {
        const char *name;
        size_t off;
    } closed[] = {
        {"idle_timeout",
         offsetof(struct moor_http_client_stats, closed_idle_timeout)},
        {"max_age", offsetof(struct moor_http_client_stats, closed_max_age)},
        {"peer_closed", offsetof(struct moor_http_client_stats, closed_peer)},
        {"body_abandoned",
         offsetof(struct moor_http_client_stats, closed_abandoned)},
        {"error", offsetof(struct moor_http_client_stats, closed_error)},
        {"pool_full",
         offsetof(struct moor_http_client_stats, closed_pool_full)},
        {"response",
         offsetof(struct moor_http_client_stats, closed_by_response)},
    };
    const struct hc_host *h;
    unsigned bk;

#define EACH_HOST                                                              \
    for (bk = 0; bk < HC_BUCKETS; bk++)                                        \
        for (h = cl->hosts[bk]; h; h = h->next)

    family(b, "moor_http_client_connections", "gauge",
           "Pooled HTTP client connections by host and state.");
    EACH_HOST
    {
        sbuf_printf(b,
                    "moor_http_client_connections{host=\"%s\",state=\"active\"}"
                    " %ld\n",
                    h->key, h->st.active);
        sbuf_printf(b,
                    "moor_http_client_connections{host=\"%s\",state=\"idle\"}"
                    " %ld\n",
                    h->key, h->st.idle);
        sbuf_printf(b,
                    "moor_http_client_connections{host=\"%s\",state="
                    "\"dialing\"} %ld\n",
                    h->key, h->st.dialing);
    }
    family(b, "moor_http_client_requests_waiting", "gauge",
           "Requests queued for a connection (max_conns_per_host reached).");
    EACH_HOST
    sbuf_printf(b, "moor_http_client_requests_waiting{host=\"%s\"} %ld\n",
                h->key, h->st.waiting);
    family(b, "moor_http_client_requests_total", "counter",
           "Requests started.");
    EACH_HOST
    sbuf_printf(b, "moor_http_client_requests_total{host=\"%s\"} %llu\n",
                h->key, (unsigned long long)h->st.requests);
    family(b, "moor_http_client_requests_reused_total", "counter",
           "Requests that ran on a pooled connection.");
    EACH_HOST
    sbuf_printf(b, "moor_http_client_requests_reused_total{host=\"%s\"} %llu\n",
                h->key, (unsigned long long)h->st.conns_reused);
    family(b, "moor_http_client_retries_total", "counter",
           "Idempotent requests sent again after a reused connection failed "
           "before any response byte.");
    EACH_HOST
    sbuf_printf(b, "moor_http_client_retries_total{host=\"%s\"} %llu\n", h->key,
                (unsigned long long)h->st.retries);
    family(b, "moor_http_client_connections_opened_total", "counter",
           "Connections dialed.");
    EACH_HOST
    sbuf_printf(b,
                "moor_http_client_connections_opened_total{host=\"%s\"} %llu\n",
                h->key, (unsigned long long)h->st.conns_new);
    family(b, "moor_http_client_connections_closed_total", "counter",
           "Connections closed, by reason.");
    EACH_HOST
    for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++)
        sbuf_printf(b,
                    "moor_http_client_connections_closed_total{host=\"%s\","
                    "reason=\"%s\"} %llu\n",
                    h->key, closed[i].name,
                    (unsigned long long)*(
                        const uint64_t *)(const void *)((const char *)&h->st +
                                                        closed[i].off));
    family(b, "moor_http_client_bytes_held", "gauge",
           "Bytes the HTTP client holds (tag http_client).");
    sbuf_printf(b, "moor_http_client_bytes_held %lld\n",
                (long long)mem_live_bytes(MEM_HTTPC));
#undef EACH_HOST
}

MOOR_API const char *
moor_http_response_header(const struct moor_http_response *r, const char *name,
                          size_t *len)
{
    size_t nl = name ? strlen(name) : 0;

    for (size_t i = 0; r && i < r->n_headers; i++)
        if (ascii_ci_equal(r->headers[i].name, r->headers[i].name_len, name,
                           nl)) {
            if (len)
                *len = r->headers[i].value_len;
            return r->headers[i].value;
        }
    if (len)
        *len = 0;
    return NULL;
}
