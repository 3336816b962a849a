/*
 * http_client_int.h - what the three files of the HTTP client share
 * (docs/http_client.md): its objects and the functions one file offers
 * the others. Not for use outside them: the API is moor.h's
 * moor_http_client_*, and http_client.h has what the rest of the library
 * needs.
 *
 *   http_client.c       the client, its options, hosts, TLS sessions, idle
 *                       lists, statistics, metrics and freeing
 *   http_client_call.c  calls: building and checking a request, the
 *                       end of every call (on_done), their deadlines, and
 *                       the caller's controls (write, pause, cancel)
 *   http_client_conn.c  connections: resolving and dialing, putting a
 *                       call on a connection, the pool and its queue, and
 *                       the conn protocol that parses the response
 */
#ifndef MOOR_HTTP_CLIENT_INT_H
#define MOOR_HTTP_CLIENT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <netinet/in.h>

#include "api.h"
#include "conn.h"
#include "http1.h"
#include "http_client.h"
#include "msg.h"
#include "pool.h"
#include "resolve.h"
#include "timer.h"
#include "url.h"

#define HC_MAX_ADDRS 4        /* addresses tried per dial, in order */
#define HC_BUCKETS 64         /* host hash buckets */
#define HC_MAX_HOSTS 1024     /* empty hosts beyond this are freed */
#define HC_MAX_SESSIONS 64    /* cap of tls_sessions_per_host */
#define HC_METRICS_HOSTS 1024 /* cap of metrics_max_hosts */
#define HC_MAX_METHOD 32      /* a method's length */
#define HC_MAX_HEADLEN 65536  /* the request head moor builds */
#define HC_INLINE_HEAD 360    /* a head this short lives in its call */
/* Idle TLS connections whose buffers go at the end of the iteration. */
#define HC_BUFS_LATER 64
/* The longest a dial holds its ClientHello for the host's leader. */
#define HC_HOLD_MS 1000

/* ---- the objects -------------------------------------------------------- */

struct hc_host {
    struct hc_host *next; /* bucket chain */
    struct moor_http_client *cl;
    struct conn *idle; /* idle connections, most recent first */
    struct moor_http_call *wait_head, *wait_tail;
    struct moor_http_client_stats st;                 /* this host's figures */
    struct ssl_session_st *sessions[HC_MAX_SESSIONS]; /* oldest first */
    uint32_t n_sessions;
    /* Resumption (http_client_conn.c): the one connection making a full
     * handshake while there is no session, and those holding their hello
     * until it brings one (linked through hc_conn prev/next). */
    struct conn *leader;
    struct conn *held;
    struct ssl_session_st *offer; /* the copy of the newest session that
                                     connections resume from (shared) */
    bool no_resume;               /* its server gave no session: nobody waits */
    bool release; /* the held go at the end of the loop iteration */
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
    HCF_HELD = 1u << 6,    /* TCP up, its hello waits for a session */
    HCF_LEADER = 1u << 7,  /* the host's full handshake (h->leader) */
};

/* A connection's state, in its conn's ext area (all an idle one holds). */
struct hc_conn {
    struct hc_host *host;
    struct moor_http_call *call; /* the call on it, or NULL */
    struct conn *prev, *next;    /* the host's idle or held list */
    struct http_chunked chunked; /* chunked body decoder */
    uint64_t left;               /* Content-Length bytes to come */
    int32_t err;                 /* the error found on it, or 0 */
    union {
        uint32_t scan;    /* head parse resume hint (a call's response) */
        uint32_t tls_end; /* tick its TLS deadline ends (HC_TLS) */
    };
    uint32_t requests;      /* calls run on it */
    uint8_t phase;          /* enum hc_phase */
    uint8_t rstate : 1;     /* enum hc_rstate */
    uint8_t bufs_later : 1; /* on cl->bufs: its TLS buffers go at the
                               end of the loop iteration if idle */
    uint8_t hs_slot : 1;    /* its handshake counts in cl->hs_active */
    uint8_t hs_wait : 1;    /* on cl's handshake queue (prev/next) */
    uint8_t kind;           /* enum http_body_kind */
    uint8_t flags;          /* enum hc_flag */
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
    struct msg *head; /* the request head, kept for a retry: in head_mem
                         when it fits (most do), else its own message */
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
    uint8_t in_cb;      /* depth of user callbacks running on it */
    bool dead;          /* on_done ran; freed when in_cb returns to 0 */
    uint32_t paused_at; /* loop_now() when the caller paused the body */
    bool later;         /* on the later list */
    bool retried, reused, got_bytes, fresh;
    bool idempotent, produced, write_ended, head_req;
    char message[200];
    /* A head of at most HC_INLINE_HEAD bytes lives here (msg_embed), so a
     * burst of requests leaves no heap behind: the call's slab goes back
     * whole. */
    _Alignas(struct msg) uint8_t head_mem[sizeof(struct msg) + HC_INLINE_HEAD];
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
    long calls;         /* in flight */
    uint32_t n_release; /* hosts whose held connections go (h->release) */
    /* TLS handshakes running (max_handshakes), and the connections whose
     * TCP connect is done and whose handshake waits for one to end, in
     * order (linked by their hc_conn's prev/next). */
    uint32_t hs_active;
    struct conn *hs_head, *hs_tail;
    bool hs_release; /* a slot came free: the queue moves at the hook */
    /* TLS connections pooled in this loop iteration: their record buffers
     * are freed at its end if they are still idle, so a request chain that
     * reuses its connection from on_done does not free and reallocate
     * 34 KB per request. Full: freed at once. */
    struct conn *bufs[HC_BUFS_LATER];
    uint32_t n_bufs;
    bool in_request; /* inside moor_http_client_request() */
    bool freeing;
    struct conn_set set; /* last: its wheel is big */
};

/* Both the host's figure and the total. */
#define ST_ADD(h, f, n)                                                        \
    do {                                                                       \
        (h)->st.f += (n);                                                      \
        (h)->cl->st.f += (n);                                                  \
    } while (0)

/* ---- http_client.c ------------------------------------------------------- */

/* Makes the client's TLS context (at the first https:// request, or at
 * moor_http_client_new() when tls_ca is given). 0 or MOOR_ETLS. */
int hc_client_tls(struct moor_http_client *cl, struct moor_error *err);
/* The host of u, made if new; NULL when out of memory. */
struct hc_host *hc_host_get(struct moor_http_client *cl, const struct url *u);
/* Connections of h: busy, idle and dialing. */
long hc_host_conns(const struct hc_host *h);
/* The newest usable TLS session of h (kept: a ticket serves every
 * connection that resumes from it), NULL if none. */
struct ssl_session_st *hc_session_get(struct hc_host *h);
/* A session arrived for h: its held connections go. */
void hc_host_sessions_arrived(struct hc_host *h);
/* Arms c's body deadline: body_timeout_ms, or what is left of the
 * caller's pause_timeout_ms if the body is paused and that comes first. */
void hc_body_deadline(struct conn *c);
/* Lets the held connections of every host marked go, and as many of the
 * handshake queue as max_handshakes allows (the client's hook). */
void hc_release_held(struct moor_http_client *cl);
/* Frees the TLS buffers of the connections on cl->bufs that are still
 * idle (the client's hook). */
void hc_release_bufs(struct moor_http_client *cl);
void hc_idle_unlink(struct conn *c);
void hc_idle_push(struct conn *c);
/* Age of c in ms. */
uint32_t hc_conn_age(const struct conn *c);
/* c is past max_conn_age_ms or max_requests_per_conn. */
bool hc_too_old(const struct moor_http_client *cl, const struct conn *c);

/* ---- http_client_call.c -------------------------------------------------- */

void hc_call_free(struct moor_http_call *call);
/* Around a user callback: hc_cb_leave() is false if the call ended
 * meanwhile (it may be freed already: do not touch it). */
void hc_cb_enter(struct moor_http_call *call);
bool hc_cb_leave(struct moor_http_call *call);
void hc_wait_unlink(struct moor_http_call *call);
/* Detaches call from whatever holds it and runs on_done (at the end of
 * the iteration if inside moor_http_client_request()). Idempotent. */
void hc_call_finish(struct moor_http_call *call, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The loop hook: failures found inside moor_http_client_request(). */
void hc_on_hook(struct loop_hook *hk);

/* ---- http_client_conn.c -------------------------------------------------- */

/* Finds call a connection: a pooled one, a new one, or the queue. */
void hc_call_start(struct moor_http_call *call);
/* A connection or a dial of h's ended or came free: waiting calls go. */
void hc_host_kick(struct hc_host *h);
/* The write phase's deadline on c (re-armed while the request goes out). */
void hc_write_deadline(struct conn *c);
/* The whole request is out: the wait for the head starts. */
void hc_request_written(struct conn *c);
bool hc_request_complete(const struct moor_http_call *call);
/* Tells a producer it may write. */
void hc_call_writable(struct moor_http_call *call);

#endif
