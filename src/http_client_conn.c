/*
 * http_client_conn.c - the HTTP client's connections (docs/http_client.md):
 * resolving and dialing (every address in turn), putting a call on a
 * connection, the pool and its wait queue, and the conn protocol that
 * writes the request and parses the response (http1_response.c) into the
 * call's callbacks. Retries live here: a call that failed on a reused
 * connection before any response byte goes again, once, if idempotent.
 *
 * Must not: retry a request that is not idempotent, pool a connection
 * with anything unread or unwritten, or leave a dialing connection with a
 * request nobody waits for.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "http_client_int.h"
#include "log.h"
#include "mem.h"
#include "tls.h"
#include "util.h"

static size_t hc_on_data(struct conn *c, uint8_t *p, size_t len);
static void hc_on_drain(struct conn *c);
static bool hc_on_timeout(struct conn *c);
static void hc_on_connect(struct conn *c, int err);
static bool hc_on_tcp_connect(struct conn *c);
static void hc_on_close(struct conn *c, enum close_reason why);
static void leader_done(struct hc_host *h);

static const struct conn_proto hc_proto = {
    .name = "http-client",
    .on_data = hc_on_data,
    .on_drain = hc_on_drain,
    .on_timeout = hc_on_timeout,
    .on_connect = hc_on_connect,
    .on_tcp_connect = hc_on_tcp_connect,
    .on_close = hc_on_close,
};

/* ---- running a call on a connection ------------------------------------- */

void hc_write_deadline(struct conn *c)
{
    struct moor_http_client *cl = conn_ctx(c);

    conn_set_read_deadline(c, cl->o.write_timeout_ms, CLOSE_WRITE_TIMEOUT);
}

/* The whole request is out: the wait for the head starts. */
void hc_request_written(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    hc->flags |= HCF_WRITTEN;
    if (hc->rstate == R_HEAD)
        conn_set_read_deadline(c, cl->o.head_timeout_ms, CLOSE_HEADER_TIMEOUT);
}

bool hc_request_complete(const struct moor_http_call *call)
{
    return !call->produced || call->write_ended;
}

/* Tells a producer it may write. */
void hc_call_writable(struct moor_http_call *call)
{
    if (!call->produced || call->write_ended || !call->cb.on_writable)
        return;
    hc_cb_enter(call);
    call->cb.on_writable(call, call->user);
    hc_cb_leave(call);
}

/* Puts call on connection c (connected, or still connecting): queues the
 * request. Returns 0 or -ENOMEM. */
/* Puts call on c (its state only: nothing is queued yet). */
static void call_bind(struct moor_http_call *call, struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);

    hc->call = call;
    call->conn = c;
    hc->rstate = R_HEAD;
    hc->scan = 0;
    hc->flags &= (uint8_t) ~(HCF_WRITTEN | HCF_KEEP | HCF_PAUSED | HCF_AGED);
}

/* Queues call's request on c, connected: a dialing connection queues
 * nothing, so a burst of dials holds no queue and the call alone holds
 * its request. Returns 0 or -ENOMEM. */
static int call_queue(struct moor_http_call *call, struct conn *c)
{
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
    if (conn_tls(c)) /* a connection in use again: keep its buffers */
        tls_conn_keep_buffers(conn_tls(c));
    conn_set_state(c, CSTATE_ACTIVE);
    call->reused = true;
    call->state = C_RUNNING;
    call_bind(call, c);
    if (call_queue(call, c) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    /* A producer hears on_writable once the head is out (on_drain). */
    hc_write_deadline(c);
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
            hc_call_finish(call, MOOR_ETIMEOUT_RESOLVE,
                           "resolving %s took longer than %u ms", h->name,
                           h->cl->o.resolve_timeout_ms);
        else
            hc_call_finish(call, err == -ENOMEM ? -ENOMEM : MOOR_ERESOLVE,
                           "cannot resolve %s: %s", h->name,
                           err == -ENOENT   ? "no such host"
                           : err == -EINVAL ? "not a host name"
                           : err == -EAGAIN ? "too many lookups in flight"
                           : err == -EIO    ? "the DNS server failed or refused"
                                            : moor_strerror(err));
        hc_host_kick(h);
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
        if (h->tls && (conn_start_tls(c, cl->tls, false, h->name, 0) < 0 ||
                       tls_conn_set_session(conn_tls(c), NULL, h) < 0)) {
            call->message[0] = '\0';
            call->error = -ENOMEM;
            hc->call = call;
            call->conn = c;
            conn_close(c, CLOSE_NO_MEMORY);
            return;
        }
        call_bind(call, c); /* queued once connected: hc_on_connect */
        call->message[0] = '\0';
        return;
    }
    ST_ADD(h, dialing, -1);
    call->state = C_NEW;
    hc_call_finish(call, e, NULL);
    hc_host_kick(h);
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
void hc_call_start(struct moor_http_call *call)
{
    struct moor_http_client *cl = call->cl;
    struct hc_host *h = call->host;

    while (!call->fresh && h->idle) {
        struct conn *c = h->idle;

        hc_idle_unlink(c);
        if (hc_too_old(cl, c)) {
            ST_ADD(h, closed_max_age, 1);
            ((struct hc_conn *)conn_ext(c))->flags |= HCF_COUNTED;
            conn_close(c, CLOSE_DONE);
            continue;
        }
        run_on_idle(call, c);
        return;
    }
    if (!cl->o.max_conns_per_host ||
        hc_host_conns(h) < (long)cl->o.max_conns_per_host) {
        dial(call);
        return;
    }
    if ((uint32_t)h->st.waiting >= cl->o.max_waiting_per_host) {
        hc_call_finish(call, MOOR_EQUEUEFULL,
                       "%s: %u connections open and %u requests waiting "
                       "(max_conns_per_host, max_waiting_per_host)",
                       h->key, (unsigned)hc_host_conns(h),
                       (unsigned)h->st.waiting);
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
void hc_host_kick(struct hc_host *h)
{
    struct moor_http_client *cl = h->cl;

    while (h->wait_head &&
           (h->idle || !cl->o.max_conns_per_host ||
            hc_host_conns(h) < (long)cl->o.max_conns_per_host)) {
        struct moor_http_call *call = h->wait_head;

        hc_wait_unlink(call);
        call->state = C_NEW;
        hc_call_start(call);
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
    if (hc_too_old(cl, c)) {
        ST_ADD(h, closed_max_age, 1);
        hc->flags |= HCF_COUNTED;
        conn_close(c, CLOSE_DONE);
        return;
    }
    if (h->wait_head) {
        struct moor_http_call *call = h->wait_head;

        hc_wait_unlink(call);
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
    if (hc->flags & HCF_LEADER)
        leader_done(h); /* pooled before any ticket came */
    hc_idle_push(c);
    conn_set_state(c, CSTATE_IDLE);
    if (conn_tls(c) && !hc->bufs_later) {
        /* Rule 3: an idle connection holds no buffer; freed at the end of
         * this iteration unless a request takes it first. */
        if (cl->n_bufs < HC_BUFS_LATER) {
            hc->bufs_later = 1;
            cl->bufs[cl->n_bufs++] = c;
        } else {
            tls_conn_release_buffers(conn_tls(c));
        }
    }
    {
        uint32_t ms = cl->o.idle_timeout_ms;

        if (cl->o.max_conn_age_ms) {
            uint32_t left = cl->o.max_conn_age_ms - hc_conn_age(c);
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
        hc_host_kick(h);
    }
    hc_call_finish(call, 0, NULL);
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

/* ---- handshakes: max_handshakes at once, one full one per host ---------- */

/* At most max_handshakes TLS handshakes run at once in a client: the
 * connections whose TCP connect finishes beyond that hold their hello
 * (conn.c's CONN_HS_HELD) on the client's queue, in order, under their
 * own handshake deadline, and start as handshakes end. A handshake holds
 * ~55 KB of OpenSSL's buffers (the message buffer and both record
 * buffers): 1,000 at once took 41 MB of heap, and once they ended the
 * pooled connections' small objects sat between the freed buffers and
 * pinned their pages: 15.0 KB of RSS per idle pooled connection against
 * 12.1 KB allocated. 64 at a time: 16 MB of heap, 12.7 KB of RSS (bench
 * http --idle-hold, 1,000 connections to nginx).
 *
 * A TLS host with no session to resume lets one connection, the leader,
 * make a full handshake; the others that finish their TCP connect
 * meanwhile hold their hello (conn.c's CONN_HS_HELD, under their own
 * handshake deadline) until the leader brings a session, fails, or shows
 * that its server gives none (its response came and no session did: the
 * host is marked no_resume and nobody waits there again until a session
 * arrives). A resumed connection shares the leader's parsed certificate
 * instead of parsing and verifying its own: ~6 KB less per idle
 * connection, and a cheaper handshake on both sides. */

static void held_push(struct hc_host *h, struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);

    hc->prev = NULL;
    hc->next = h->held;
    if (h->held)
        ((struct hc_conn *)conn_ext(h->held))->prev = c;
    h->held = c;
    hc->flags |= HCF_HELD;
}

static void held_unlink(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;

    if (hc->prev)
        ((struct hc_conn *)conn_ext(hc->prev))->next = hc->next;
    else
        h->held = hc->next;
    if (hc->next)
        ((struct hc_conn *)conn_ext(hc->next))->prev = hc->prev;
    hc->prev = hc->next = NULL;
    hc->flags &= (uint8_t)~HCF_HELD;
}

/* What is left of c's TLS deadline (hc->tls_end), in ms; 0 when past. */
static uint32_t tls_left(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    int32_t d = (int32_t)(hc->tls_end - loop_now(conn_loop(c)));

    return d > 0 ? (uint32_t)d : 0;
}

/* c waits for a handshake to end (the client's queue, at its tail). */
static void hs_push(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    hc->prev = cl->hs_tail;
    hc->next = NULL;
    if (cl->hs_tail)
        ((struct hc_conn *)conn_ext(cl->hs_tail))->next = c;
    else
        cl->hs_head = c;
    cl->hs_tail = c;
    hc->hs_wait = 1;
    ST_ADD(hc->host, tls_waiting, 1);
    ST_ADD(hc->host, tls_waited, 1);
}

static void hs_unlink(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    if (hc->prev)
        ((struct hc_conn *)conn_ext(hc->prev))->next = hc->next;
    else
        cl->hs_head = hc->next;
    if (hc->next)
        ((struct hc_conn *)conn_ext(hc->next))->prev = hc->prev;
    else
        cl->hs_tail = hc->prev;
    hc->prev = hc->next = NULL;
    hc->hs_wait = 0;
    ST_ADD(hc->host, tls_waiting, -1);
}

/* c's handshake ended (or c closed): the queue's head goes at the end of
 * this loop iteration (not inside OpenSSL or another connection's read). */
static void hs_done(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    if (!hc->hs_slot)
        return;
    hc->hs_slot = 0;
    cl->hs_active--;
    if (cl->hs_head)
        cl->hs_release = true;
}

/* Marks h's held connections to go at the end of this loop iteration
 * (not inside OpenSSL's callback or another connection's read). */
static void release_later(struct hc_host *h)
{
    if (h->release || (!h->held && !h->leader))
        return;
    h->release = true;
    h->cl->n_release++;
}

/* The leader's part is over: a session came, or its server gives none. */
static void leader_done(struct hc_host *h)
{
    if (h->leader)
        ((struct hc_conn *)conn_ext(h->leader))->flags &= (uint8_t)~HCF_LEADER;
    h->leader = NULL;
    if (!h->n_sessions)
        h->no_resume = true;
    release_later(h);
}

void hc_host_sessions_arrived(struct hc_host *h)
{
    h->no_resume = false;
    leader_done(h);
}

/* Offers h's newest session (if any) to c's handshake. Not the stored
 * session itself: the first TLS 1.3 connection to finish resuming from a
 * session makes it unresumable (OpenSSL's single use of tickets), so
 * connections resume from h->offer, a copy they share until that
 * happens; then the next one gets a fresh copy. A thousand connections
 * released at once share one copy (no per-connection session). */
static void offer_session(struct hc_host *h, struct conn *c)
{
    struct ssl_session_st *s = hc_session_get(h);
    uint64_t now_s = loop_wall_ms(h->cl->loop) / 1000;

    if (!s)
        return;
    if (h->offer && !tls_session_usable(h->offer, now_s)) {
        tls_session_free(h->offer);
        h->offer = NULL;
    }
    if (!h->offer)
        h->offer = tls_session_dup(s);
    if (h->offer) /* else (no memory) a full handshake */
        (void)tls_conn_set_session(conn_tls(c), h->offer, h);
}

/* c may start its handshake: true if it does now (offered a session, as
 * the host's leader, or with no session to wait for), false if it waits
 * for a slot (the client's queue) or for the host's leader (held). */
static bool hs_admit(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);
    struct hc_host *h = hc->host;

    if (cl->o.max_handshakes && cl->hs_active >= cl->o.max_handshakes) {
        hs_push(c);
        return false;
    }
    if (cl->o.tls_sessions_per_host) {
        if (hc_session_get(h)) {
            offer_session(h, c);
        } else if (!h->no_resume && h->leader) {
            uint32_t left = tls_left(c);

            held_push(h, c);
            conn_set_read_deadline(c, left > HC_HOLD_MS ? HC_HOLD_MS : left,
                                   CLOSE_HANDSHAKE_TIMEOUT);
            return false;
        } else if (!h->no_resume) {
            h->leader = c;
            hc->flags |= HCF_LEADER;
        }
    }
    hc->hs_slot = 1;
    cl->hs_active++;
    return true;
}

/* c's TCP connect is done: its handshake starts, or waits (hs_admit). */
static bool hc_on_tcp_connect(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    hc->phase = HC_TLS;
    hc->tls_end = tick_add(loop_now(conn_loop(c)), cl->o.tls_timeout_ms);
    conn_set_read_deadline(c, cl->o.tls_timeout_ms, CLOSE_HANDSHAKE_TIMEOUT);
    return hs_admit(c);
}

/* Starts the handshakes h holds: with a session if one came; without,
 * the first becomes the new leader and the rest hold on, unless the
 * host gives none (then all go). */
static void release_host(struct hc_host *h)
{
    while (h->held) {
        struct conn *c = h->held;

        if (!hc_session_get(h) && !h->no_resume && h->leader)
            return; /* the new leader goes first */
        held_unlink(c);
        /* Its hold is over: what is left of its TLS deadline applies. */
        conn_set_read_deadline(c, tls_left(c) ? tls_left(c) : 1,
                               CLOSE_HANDSHAKE_TIMEOUT);
        if (hs_admit(c))
            conn_tls_begin(c); /* may close c: it is off the list already */
    }
}

void hc_release_held(struct moor_http_client *cl)
{
    for (unsigned b = 0; b < HC_BUCKETS && cl->n_release; b++)
        for (struct hc_host *h = cl->hosts[b]; h; h = h->next) {
            if (!h->release)
                continue;
            h->release = false;
            cl->n_release--;
            release_host(h);
        }
    cl->hs_release = false;
    while (cl->hs_head &&
           (!cl->o.max_handshakes || cl->hs_active < cl->o.max_handshakes)) {
        struct conn *c = cl->hs_head;

        hs_unlink(c);
        if (hs_admit(c))
            conn_tls_begin(c); /* may close c: it is off the queue */
    }
}

void hc_release_bufs(struct moor_http_client *cl)
{
    for (uint32_t i = 0; i < cl->n_bufs; i++) {
        struct conn *c = cl->bufs[i];
        struct hc_conn *hc = conn_ext(c);

        hc->bufs_later = 0;
        if (hc->phase == HC_IDLE)
            tls_conn_release_buffers(conn_tls(c));
    }
    cl->n_bufs = 0;
}

/* c leaves the resumption bookkeeping and cl->bufs (closed). */
static void gate_leave(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;
    struct moor_http_client *cl = conn_ctx(c);

    if (hc->bufs_later) {
        for (uint32_t i = 0; i < cl->n_bufs; i++)
            if (cl->bufs[i] == c) {
                cl->bufs[i] = cl->bufs[--cl->n_bufs];
                break;
            }
        hc->bufs_later = 0;
    }

    if (hc->flags & HCF_HELD)
        held_unlink(c);
    if (hc->hs_wait)
        hs_unlink(c);
    hs_done(c);
    if (hc->flags & HCF_LEADER) {
        hc->flags &= (uint8_t)~HCF_LEADER;
        h->leader = NULL;
        release_later(h); /* the next one leads */
    }
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
    hs_done(c);
    hc->scan = 0; /* was tls_end */
    if (conn_tls(c) && tls_conn_resumed(conn_tls(c)))
        ST_ADD(h, tls_resumed, 1);
    if ((hc->flags & HCF_LEADER) &&
        (h->n_sessions || !tls_conn_sessions_later(conn_tls(c))))
        leader_done(h); /* TLS 1.2: a session came with it, or none will */
    if (!call) {
        /* Its call ended while it dialed: it joins the pool. */
        conn_release(c);
        hc_host_kick(h);
        return;
    }
    ST_ADD(h, dialing, -1);
    ST_ADD(h, active, 1);
    hc->phase = HC_BUSY;
    conn_set_state(c, CSTATE_ACTIVE);
    call->state = C_RUNNING;
    if (call_queue(call, c) < 0) {
        call->error = -ENOMEM;
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    hc_write_deadline(c);
    if (hc_request_complete(call) && !conn_queued_bytes(c))
        hc_request_written(c);
    /* A producer hears on_writable once the head is out (on_drain). */
}

static void hc_on_drain(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_call *call = hc->call;

    if (!call || hc->phase != HC_BUSY || (hc->flags & HCF_WRITTEN))
        return;
    if (hc_request_complete(call)) {
        hc_request_written(c);
        return;
    }
    hc_write_deadline(c);
    hc_call_writable(call);
}

void hc_body_deadline(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);
    uint32_t ms = cl->o.body_timeout_ms;

    if ((hc->flags & HCF_PAUSED) && hc->call && cl->o.pause_timeout_ms) {
        uint32_t held = loop_now(conn_loop(c)) - hc->call->paused_at;
        uint32_t left =
            held < cl->o.pause_timeout_ms ? cl->o.pause_timeout_ms - held : 1;

        if (!ms || left < ms)
            ms = left;
    }
    conn_set_read_deadline(c, ms, CLOSE_BODY_TIMEOUT);
}

static bool hc_on_timeout(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct moor_http_client *cl = conn_ctx(c);

    if ((hc->flags & HCF_HELD) && tls_left(c)) {
        /* The leader has taken HC_HOLD_MS: a stuck server connection
         * must not take every other dial down with it. Nobody waits for
         * this host any more (until a session comes); the held go now,
         * each under what is left of its TLS deadline. */
        hc->host->no_resume = true;
        release_later(hc->host);
        conn_set_read_deadline(c, tls_left(c), CLOSE_HANDSHAKE_TIMEOUT);
        return true;
    }
    switch (conn_read_reason(c)) {
    case CLOSE_WRITE_TIMEOUT:
        /* Our stand-in while the request goes out: bytes still queued and
         * the socket taking them (else conn.c's own write deadline ends
         * it) is progress; an empty queue is a producer that gave
         * nothing. */
        if (conn_queued_bytes(c)) {
            hc_write_deadline(c);
            return true;
        }
        return false;
    case CLOSE_BODY_TIMEOUT:
        if ((hc->flags & HCF_PAUSED) && hc->call) {
            /* The caller paused it: not the server's gap, but a pause has
             * its own deadline. */
            struct moor_http_call *call = hc->call;
            uint32_t held = loop_now(conn_loop(c)) - call->paused_at;

            if (cl->o.pause_timeout_ms && held >= cl->o.pause_timeout_ms) {
                call->error = MOOR_ETIMEOUT_PAUSE;
                snprintf(call->message, sizeof(call->message),
                         "the response body from %s stayed paused for %u ms "
                         "(pause_timeout_ms)",
                         hc->host->key, held);
                return false;
            }
            hc_body_deadline(c);
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
    hc_cb_enter(call);
    call->cb.on_body(call, p, n, call->user);
    return hc_cb_leave(call) && !conn_is_closing(c);
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

        hc_cb_enter(call);
        call->cb.on_head(call, &mr, call->user);
        alive = hc_cb_leave(call);
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

    if (hc->flags & HCF_LEADER)
        leader_done(hc->host); /* a response, and no ticket before it */
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
        hc_body_deadline(c);
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

            hc_cb_enter(call);
            n = http_chunked_parse(&hc->chunked, p + off, len - off, &cl->lim,
                                   on_chunk, &x, &done, &status);
            if (!hc_cb_leave(call) || x.gone || conn_is_closing(c))
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
    gate_leave(c);
    if (hc->flags & HCF_COUNTED) {
        hc_host_kick(h); /* counted by whoever closed it */
        return;
    }
    switch (hc->phase) {
    case HC_IDLE:
        hc_idle_unlink(c);
        if (why == CLOSE_IDLE_TIMEOUT && (hc->flags & HCF_AGED))
            ST_ADD(h, closed_max_age, 1);
        else if (why == CLOSE_IDLE_TIMEOUT)
            ST_ADD(h, closed_idle_timeout, 1);
        else if (why == CLOSE_SHUTDOWN)
            ;
        else
            ST_ADD(h, closed_peer, 1);
        hc_host_kick(h);
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
        hc_host_kick(h);
        return;
    }
    hc->call = NULL;
    call->conn = NULL;
    if (hc->rstate == R_BODY && hc->kind == HTTP_BODY_CLOSE &&
        why == CLOSE_PEER) {
        /* The close ends the body. */
        ST_ADD(h, closed_by_response, 1);
        call->state = C_NEW;
        hc_host_kick(h);
        hc_call_finish(call, 0, NULL);
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
        hc_host_kick(h);
        hc_call_start(call);
        return;
    }
    call->state = C_NEW;
    if (msg[0] && !call->message[0])
        snprintf(call->message, sizeof(call->message), "%s", msg);
    hc_host_kick(h);
    hc_call_finish(call, err, NULL);
}
