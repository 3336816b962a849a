/*
 * conn_internal.h - what the connection's own files (conn.c: lifecycle,
 * reading, deadlines, TLS glue, the close path; conn_write.c: the
 * outbound queue and the write path) share with each other. No other
 * file includes it (`make lint`, check 4): the rest of moor uses conn.h.
 */
#ifndef MOOR_CONN_INTERNAL_H
#define MOOR_CONN_INTERNAL_H

#include "conn.h"

/* Puts c on the set's end-of-iteration list once. Closing conns go there
 * to be freed; open ones to have their queue flushed or input processed. */
static inline void conn_pending_add(struct conn *c)
{
    if (c->cn_flags & CONN_PENDING)
        return;
    c->cn_flags |= CONN_PENDING;
    struct conn_set *s = conn_set_of(c);

    c->cn_pending_next = s->pending;
    s->pending = c;
    conn_set_want_flush(s);
}

/* conn.c: arms c's timer at its nearest deadline (lazy re-arm). */
void conn_rearm(struct conn *c);
/* conn.c: tells epoll what c waits for now (its phase, its pauses, a
 * TLS read that waits for writability, queued output). */
void conn_update_events(struct conn *c);

/* conn_write.c: drops every queued message and the ring (close path). */
void conn_queue_clear(struct conn *c);
/* conn_write.c: writes what the socket takes, then arms or disarms
 * EPOLLOUT and the write deadline; with the queue empty, finishes a
 * close-after-flush or calls the protocol's on_drain. May close c. */
void conn_flush(struct conn *c);

#endif
