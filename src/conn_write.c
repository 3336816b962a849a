/*
 * conn_write.c - a connection's outbound side: the queue of message
 * references (a ring; docs/principles.md, rules 4 and 5), its limits and
 * drop policies, and the corked write path that empties it (one writev
 * per conn per loop iteration, through TLS if the conn has it), with the
 * write deadline and the end of a close-after-flush. conn.c owns the rest
 * of the conn's life.
 *
 * Keeps: a queue holds references, never copies (conn_send_bytes() makes
 * its one message); the ring exists only while something is queued; a
 * queue passes its byte or entry limit only with CONN_SEND_OVERCAP or by
 * one message alone on an empty queue; bytes a TLS record holds are
 * offered again unchanged; queued_bytes and bytes_out stay exact.
 *
 * Must not: allocate per byte or per write (the ring grows by doubling);
 * close a conn except through conn_close().
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "conn.h"
#include "conn_internal.h"
#include "mem.h"
#include "tls.h"
#include "util.h"

#define CONN_IOV_MAX 64

/* ---- the outbound queue ------------------------------------------------- */

#define OQ_MIN_CAP 8 /* slots of a new ring: 80 bytes with its header */

/* Bytes at the head of the queue a TLS record already holds
 * (tls_write_pending): they must be offered again unchanged, so no message
 * that overlaps them may be dropped. */
static size_t conn_locked_bytes(const struct conn *c)
{
    struct tls_conn *tc = conn_tls(c);

    return tc ? tls_write_pending(tc) : 0;
}

/* The i-th message from the head. */
static inline struct msg *oq_at(const struct oq *q, uint32_t i)
{
    return q->m[(q->head + i) & (q->cap - 1)];
}

/* Frees the ring once it holds nothing: an idle conn holds no queue. */
static void oq_release_if_empty(struct conn *c)
{
    if (c->cn_q && c->cn_q->count == 0) {
        mem_free(MEM_QUEUE, c->cn_q);
        c->cn_q = NULL;
    }
}

/* Makes room for one more message: allocates the ring for the first one,
 * doubles it when full. Returns 0, or -ENOMEM with the queue untouched. */
static int oq_reserve(struct conn *c)
{
    struct oq *q = c->cn_q;
    uint32_t cap;

    if (!q) {
        q = mem_alloc(MEM_QUEUE, sizeof(*q) + OQ_MIN_CAP * sizeof(q->m[0]));
        if (!q)
            return -ENOMEM;
        *q = (struct oq){.cap = OQ_MIN_CAP};
        c->cn_q = q;
        return 0;
    }
    if (q->count < q->cap)
        return 0;
    if (q->cap > UINT32_MAX / 2)
        return -ENOMEM;
    cap = q->cap * 2;
    q = mem_realloc(MEM_QUEUE, q, sizeof(*q) + (size_t)cap * sizeof(q->m[0]));
    if (!q)
        return -ENOMEM;
    /* It was full: slots [head, cap) then [0, head). The wrapped part
     * moves behind the first, so the messages sit in order from head. */
    memcpy(&q->m[q->cap], &q->m[0], q->head * sizeof(q->m[0]));
    q->cap = cap;
    c->cn_q = q;
    return 0;
}

/* Drops every message and the ring. */
void conn_queue_clear(struct conn *c)
{
    struct oq *q = c->cn_q;

    if (q) {
        for (uint32_t i = 0; i < q->count; i++)
            msg_unref(oq_at(q, i));
        q->count = 0;
        oq_release_if_empty(c);
    }
    conn_set_of(c)->stats.queued_bytes -= c->cn_qbytes;
    c->cn_qbytes = 0;
}

/* ---- writing ------------------------------------------------------------ */

int conn_send(struct conn *c, struct msg *m)
{
    return conn_send_flags(c, m, 0);
}

int conn_send_flags(struct conn *c, struct msg *m, unsigned flags)
{
    struct conn_set *s = conn_set_of(c);
    struct oq *q;

    if (conn_is_closing(c))
        return -EPIPE;
    /* A lone message larger than the cap may go on an empty queue, or it
     * could never be sent; it is bounded by its producer's own limit. */
    if (!(flags & CONN_SEND_OVERCAP) && c->cn_q &&
        ((uint64_t)c->cn_qbytes + m->len > s->lim.queue_limit ||
         c->cn_q->count >= conn_queue_max_entries(&s->lim))) {
        s->stats.queue_overflows++;
        return -ENOBUFS;
    }
    if (oq_reserve(c) < 0)
        return -ENOMEM;
    q = c->cn_q;
    q->m[(q->head + q->count) & (q->cap - 1)] = msg_ref(m);
    q->count++;
    c->cn_qbytes += m->len;
    s->stats.queued_bytes += m->len;
    conn_pending_add(c);
    return 0;
}

/* Drops queued messages that are not started and that no TLS record holds
 * (purge: all of them; else only published ones, oldest first, until need
 * more bytes and two more messages fit under the limits). What stays keeps
 * its order. Drop-oldest stops as soon as there is room, so its cost is
 * the prefix it walks, not the queue: the kept messages of that prefix
 * (a started head, a TLS record's, control frames) move up against the
 * rest and the head moves past the gap. Returns how many messages were
 * dropped (a batch counts for the messages it carries). */
static uint32_t queue_drop(struct conn *c, uint32_t need, bool purge)
{
    struct conn_set *s = conn_set_of(c);
    uint32_t max = conn_queue_max_entries(&s->lim);
    size_t locked = conn_locked_bytes(c);
    struct oq *q = c->cn_q;
    uint32_t n, i, mask, dst, dropped = 0, msgs = 0;
    size_t pos = 0; /* queue bytes in front of message i */

    if (!q)
        return 0;
    n = q->count;
    mask = q->cap - 1;
    for (i = 0; i < n; i++) {
        struct msg **slot = &q->m[(q->head + i) & mask];
        struct msg *m = *slot;
        uint32_t len = i == 0 ? m->len - q->off : m->len;
        bool started = i == 0 && q->off;

        if (!purge && (uint64_t)c->cn_qbytes + need <= s->lim.queue_limit &&
            n - dropped + 2 <= max)
            break; /* room enough */
        if (!started && pos >= locked && (purge || m->born_ns)) {
            c->cn_qbytes -= len;
            s->stats.queued_bytes -= len;
            msgs += m->count;
            msg_unref(m);
            *slot = NULL;
            dropped++;
        }
        pos += len;
    }
    /* Close the gaps in [0, i) from the back: what stays ends up right in
     * front of message i, the head dropped places further on. A started
     * head stays the head, so q->off still belongs to it. */
    dst = i;
    for (uint32_t j = i; j-- > 0 && dst > dropped;) {
        struct msg *m = q->m[(q->head + j) & mask];

        if (m)
            q->m[(q->head + --dst) & mask] = m;
    }
    q->head = (q->head + dropped) & mask;
    q->count -= dropped;
    oq_release_if_empty(c);
    return msgs;
}

uint32_t conn_queue_drop_oldest(struct conn *c, uint32_t need)
{
    return queue_drop(c, need, false);
}

uint32_t conn_queue_purge(struct conn *c)
{
    return queue_drop(c, 0, true);
}

int conn_send_bytes(struct conn *c, const void *p, size_t n)
{
    struct msg *m;
    int rc;

    if (conn_is_closing(c))
        return -EPIPE;
    if (n > UINT32_MAX)
        return -ENOBUFS;
    m = msg_new(p, n);
    if (!m)
        return -ENOMEM;
    rc = conn_send(c, m);
    msg_unref(m);
    return rc;
}

/* Counts the publish-to-write latency of n published messages born at
 * born (a batch's messages count with its first one's time). now_ns is
 * read once per flush. */
static void record_latency(struct conn_set *s, uint64_t born, uint32_t n,
                           uint64_t *now_ns)
{
    uint64_t us;

    if (!*now_ns)
        *now_ns = mono_ns();
    us = *now_ns > born ? (*now_ns - born) / 1000 : 0;
    s->stats.lat_buckets[conn_lat_bucket(us)] += n;
    s->stats.lat_count += n;
    s->stats.lat_sum_us += us * n;
}

/* Writes iov[0..n): the one place queued bytes leave a conn. Through the
 * TLS engine if c has one (which takes the bytes as one stream, and wants
 * the same bytes offered again after a short count: see
 * tls_write_pending()). Returns the bytes taken, or -errno: -EAGAIN if
 * none can be taken now, -EPROTO for a TLS failure, -EPIPE for a TLS peer
 * that is gone. */
static ssize_t conn_writev(struct conn *c, struct iovec *iov, int n)
{
    ssize_t w;

    if (c->cn_flags & CONN_TLS) {
        w = tls_writev(conn_tls(c), iov, n);
        if (w >= 0)
            return w;
        if (w == TLS_WANT_WRITE || w == TLS_WANT_READ)
            return -EAGAIN;
        return w == TLS_ERR ? -EPROTO : -EPIPE;
    }
    /* sendmsg rather than writev: MSG_NOSIGNAL, so a library user who
     * does not ignore SIGPIPE survives a peer that left. */
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    do
        w = sendmsg(c->cn_fd, &mh, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return w;
}

/* Takes w written bytes off the head of the queue: every message written
 * to its end is completed (latency counted, reference dropped); the ring
 * goes once it is empty. */
static void queue_consume(struct conn *c, size_t w, uint64_t *now_ns)
{
    struct conn_set *s = conn_set_of(c);
    struct oq *q = c->cn_q;
    uint32_t mask = q->cap - 1;

    c->cn_qbytes -= (uint32_t)w;
    s->stats.queued_bytes -= (int64_t)w;
    /* Zero-length messages at the head complete with the bytes before
     * them (or with none), so a queue of them drains too. */
    while (q->count) {
        struct msg *m = q->m[q->head];
        size_t rest = m->len - q->off;
        if (w < rest) {
            q->off += (uint32_t)w;
            return;
        }
        w -= rest;
        q->off = 0;
        q->head = (q->head + 1) & mask;
        q->count--;
        if (m->born_ns)
            record_latency(s, m->born_ns, m->count, now_ns);
        msg_unref(m);
    }
    oq_release_if_empty(c);
}

/* Writes as much of the queue as the socket takes, in one write per
 * CONN_IOV_MAX messages, the iovecs read straight off the ring. Returns 0,
 * or -errno on a fatal socket error. */
static int flush(struct conn *c)
{
    struct conn_set *s = conn_set_of(c);
    struct iovec iov[CONN_IOV_MAX];
    uint64_t now_ns = 0;

    while (c->cn_q) {
        const struct oq *q = c->cn_q;
        uint32_t n = MIN(q->count, (uint32_t)CONN_IOV_MAX);
        size_t want = 0;
        ssize_t w;

        for (uint32_t i = 0; i < n; i++) {
            struct msg *m = oq_at(q, i);
            iov[i].iov_base = m->data;
            iov[i].iov_len = m->len;
            want += m->len;
        }
        iov[0].iov_base = (uint8_t *)iov[0].iov_base + q->off;
        iov[0].iov_len -= q->off;
        want -= q->off;
        w = conn_writev(c, iov, (int)n);
        if (w == -EAGAIN)
            return 0;
        if (w < 0)
            return (int)w;
        s->stats.bytes_out += (uint64_t)w;
        /* Progress resets the write deadline. */
        if (c->cn_wr_deadline && w > 0)
            c->cn_wr_deadline =
                tick_add(loop_now(s->loop), s->lim.write_timeout_ms);
        queue_consume(c, (size_t)w, &now_ns);
        if ((size_t)w < want)
            return 0; /* the socket is full; EPOLLOUT resumes */
    }
    return 0;
}

/* After a flush: arm or disarm EPOLLOUT and the write deadline; when the
 * queue is empty, finish a pending close-after-flush or tell the
 * protocol. */
static void after_write(struct conn *c)
{
    if (c->cn_q) {
        if (!(c->cn_flags & CONN_WANT_WRITE)) {
            c->cn_flags |= CONN_WANT_WRITE;
            conn_update_events(c);
        }
        if (!c->cn_wr_deadline) {
            c->cn_wr_deadline = tick_add(loop_now(conn_loop(c)),
                                         conn_set_of(c)->lim.write_timeout_ms);
            conn_rearm(c);
        }
        return;
    }
    c->cn_wr_deadline = TICK_UNSET;
    if (c->cn_flags & CONN_WANT_WRITE) {
        c->cn_flags &= ~CONN_WANT_WRITE;
        conn_update_events(c);
    }
    if (c->cn_flags & CONN_LINGER) {
        if (c->cn_after_flush == CLOSE_DONE || (c->cn_flags & CONN_EOF)) {
            conn_close(c, (enum close_reason)c->cn_after_flush);
            return;
        }
        /* Half-close: the peer reads our answer, then its EOF ends us. */
        if (!(c->cn_flags & CONN_SHUT_WR)) {
            c->cn_flags |= CONN_SHUT_WR;
            if (c->cn_flags & CONN_TLS)
                tls_shutdown(conn_tls(c)); /* close_notify first */
            shutdown(c->cn_fd, SHUT_WR);
            /* The linger (waiting for the peer's EOF) starts now, unless
             * one deadline covers it all (conn_close_within). */
            if (!(c->cn_flags & CONN_HARD_LINGER)) {
                c->cn_rd_deadline =
                    tick_add(loop_now(conn_loop(c)), c->cn_linger_ms);
                c->cn_rd_reason = CLOSE_LINGER_TIMEOUT;
                conn_rearm(c);
            }
        }
        return;
    }
    if (conn_proto(c)->on_drain)
        conn_proto(c)->on_drain(c);
}

void conn_flush(struct conn *c)
{
    int rc = flush(c);

    if (rc < 0) {
        conn_close(c, rc == -EPIPE || rc == -ECONNRESET ? CLOSE_PEER
                      : rc == -EPROTO                   ? CLOSE_TLS_ERROR
                                                        : CLOSE_ERROR);
        return;
    }
    after_write(c);
}
