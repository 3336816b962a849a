/*
 * conn.c - connection lifecycle, the read path, deadlines, the TLS glue,
 * and THE close path (docs/principles.md 1, 2, 3, 5). The outbound queue
 * and the corked write path are in conn_write.c; conn_internal.h is what
 * the two share.
 *
 * Keeps: every conn that is not closing has a deadline armed; conn_close()
 * is the only place that releases a conn's resources, and the set's
 * end-of-iteration hook is the only place that frees the struct; the
 * shared read buffer is the only buffer a read lands in, and only an
 * unconsumed tail is copied out of it.
 *
 * Must not: call into protocol or service code except through the
 * conn_proto callbacks; allocate on the read path except the carry tail.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/tcp.h>

#include "conn.h"
#include "conn_internal.h"
#include "log.h"
#include "mem.h"
#include "tls.h"
#include "util.h"

_Static_assert(sizeof(struct conn) <= 80,
               "struct conn grew: every idle connection pays for it");

static const char *const reason_names[CLOSE_REASON_COUNT] = {
    [CLOSE_NONE] = "none",
    [CLOSE_PEER] = "peer_closed",
    [CLOSE_ERROR] = "error",
    [CLOSE_HEADER_TIMEOUT] = "header_timeout",
    [CLOSE_BODY_TIMEOUT] = "body_timeout",
    [CLOSE_IDLE_TIMEOUT] = "idle_timeout",
    [CLOSE_WRITE_TIMEOUT] = "write_timeout",
    [CLOSE_LINGER_TIMEOUT] = "linger_timeout",
    [CLOSE_BAD_REQUEST] = "bad_request",
    [CLOSE_DONE] = "done",
    [CLOSE_SHUTDOWN] = "shutdown",
    [CLOSE_SLOW_CONSUMER] = "slow_consumer",
    [CLOSE_NO_MEMORY] = "out_of_memory",
    [CLOSE_PONG_TIMEOUT] = "pong_timeout",
    [CLOSE_PROTOCOL_ERROR] = "protocol_error",
    [CLOSE_TOO_BIG] = "message_too_big",
    [CLOSE_CLOSE_TIMEOUT] = "close_timeout",
    [CLOSE_CONNECT_FAILED] = "connect_failed",
    [CLOSE_CONNECT_TIMEOUT] = "connect_timeout",
    [CLOSE_HANDSHAKE_FAILED] = "handshake_failed",
    [CLOSE_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [CLOSE_TLS_ERROR] = "tls_error",
    [CLOSE_MESSAGE_TIMEOUT] = "message_timeout",
};

const char *close_reason_name(enum close_reason r)
{
    return (unsigned)r < CLOSE_REASON_COUNT ? reason_names[r] : "unknown";
}

static const char *const state_names[CSTATE_COUNT] = {
    [CSTATE_HEADER] = "reading_header",
    [CSTATE_BODY] = "reading_body",
    [CSTATE_IDLE] = "idle",
    [CSTATE_ACTIVE] = "active",
    [CSTATE_LINGER] = "lingering",
    [CSTATE_WEBSOCKET] = "websocket",
    [CSTATE_CONNECTING] = "connecting",
    [CSTATE_SSE] = "sse",
    [CSTATE_TLS] = "tls_handshake",
};

const char *conn_state_name(enum conn_state s)
{
    return (unsigned)s < CSTATE_COUNT ? state_names[s] : "unknown";
}

/* By bit index of enum pause_cause. */
static const char *const pause_names[PAUSE_CAUSE_COUNT] = {
    "backpressure",
    "rate",
    "memory",
    "auth",
};

struct conn *conn_set_find(const struct conn_set *s, int fd,
                           unsigned long long id)
{
    struct conn *c;

    if (fd < 0 || (uint32_t)fd >= s->by_fd_len)
        return NULL;
    c = s->by_fd[fd];
    return c && c->cn_id == id && !conn_is_closing(c) ? c : NULL;
}

const char *pause_cause_name(unsigned bit)
{
    return bit < PAUSE_CAUSE_COUNT ? pause_names[bit] : "unknown";
}

static void conn_on_fd(void *arg, int fd, uint32_t events);
static void conn_on_timer(struct tnode *t);
static void set_on_hook(struct loop_hook *h);
static void set_on_mem_timer(struct timer *t);
static void do_handshake(struct conn *c);
static void do_read(struct conn *c);
static void tls_end(struct conn *c, enum close_reason why);

#define MEM_POLL_MS 100 /* budget check period while readers are paused */

/* ---- the pending list --------------------------------------------------- */

void conn_set_want_flush(struct conn_set *s)
{
    /* Queued by a hook that runs after ours (or between iterations): the
     * loop must come round again without blocking, or it sits unsent. */
    if (s->hook_iter == loop_iteration(s->loop))
        loop_poke(s->loop);
}

/* ---- deadlines ---------------------------------------------------------- */

static uint32_t next_deadline(const struct conn *c)
{
    return tick_first(c->cn_rd_deadline, c->cn_wr_deadline);
}

/* Arms the timer at the nearest deadline, unless it is already armed at
 * or before it (then it fires early and re-arms: lazy re-arm). */
void conn_rearm(struct conn *c)
{
    uint32_t next = next_deadline(c);
    struct timer_wheel *w = &conn_set_of(c)->wheel;

    if (next == TICK_UNSET) {
        /* Rule 2: a live conn always waits under some deadline. A
         * protocol that clears its last one is a bug; cover it anyway. */
        LOG_ERROR("conn without deadline", "conn=%llu",
                  (unsigned long long)c->cn_id);
        c->cn_rd_deadline = tick_add(loop_now(conn_loop(c)), 1000);
        c->cn_rd_reason = CLOSE_ERROR;
        next = c->cn_rd_deadline;
    }
    if (tnode_armed(&c->cn_timer) && !tick_after(c->cn_timer.expire, next))
        return;
    tnode_arm(w, &c->cn_timer, next);
}

void conn_set_read_deadline(struct conn *c, uint32_t ms,
                            enum close_reason reason)
{
    if (conn_is_closing(c))
        return;
    c->cn_flags &= (uint16_t)~CONN_MESSAGE;
    c->cn_rd_deadline = ms ? tick_add(loop_now(conn_loop(c)), ms) : TICK_UNSET;
    c->cn_rd_reason = (uint8_t)reason;
    conn_rearm(c);
}

static bool tls_partial(const struct conn *c);

/* Pauses that are moor's doing, not the peer's: a message deadline does
 * not count them. (Backpressure is the peer not reading our answers.) */
#define OUR_PAUSES (PAUSE_RATE | PAUSE_MEMORY | PAUSE_AUTH)

/* Starts (or, after a pause, starts over) the message deadline. */
static void arm_message(struct conn *c)
{
    c->cn_flags |= CONN_MESSAGE;
    c->cn_rd_deadline = tick_add(loop_now(conn_loop(c)),
                                 conn_set_of(c)->lim.message_timeout_ms);
    c->cn_rd_reason = CLOSE_MESSAGE_TIMEOUT;
    conn_rearm(c);
}

/* A message deadline takes the place of a liveness deadline only (a ping,
 * a heartbeat: bytes from the peer would renew those anyway). A deadline
 * that ends a phase - header, close, drain, linger - is never pushed back
 * by a message begun. */
static bool may_arm_message(const struct conn *c)
{
    return !(c->cn_flags & (CONN_MESSAGE | CONN_LINGER)) &&
           conn_set_of(c)->lim.message_timeout_ms &&
           (c->cn_rd_reason == CLOSE_IDLE_TIMEOUT ||
            c->cn_rd_reason == CLOSE_PONG_TIMEOUT);
}

bool conn_message_update(struct conn *c, bool partial)
{
    if (conn_is_closing(c) || (c->cn_flags & CONN_LINGER) ||
        !conn_set_of(c)->lim.message_timeout_ms)
        return false;
    if (partial || tls_partial(c)) {
        if (may_arm_message(c))
            arm_message(c);
        return false;
    }
    if (!(c->cn_flags & CONN_MESSAGE))
        return false;
    c->cn_flags &= (uint16_t)~CONN_MESSAGE;
    return true;
}

static void conn_on_timer(struct tnode *t)
{
    struct conn *c = container_of(t, struct conn, cn_timer);
    uint32_t now = loop_now(conn_loop(c));

    if (conn_is_closing(c))
        return;
    if (tick_expired(c->cn_wr_deadline, now)) {
        conn_close(c, CLOSE_WRITE_TIMEOUT);
        return;
    }
    if (tick_expired(c->cn_rd_deadline, now)) {
        if (c->cn_flags & CONN_HARD_LINGER) {
            conn_close(c, (enum close_reason)c->cn_after_flush);
            return;
        }
        if ((c->cn_flags & CONN_LINGER) && c->cn_q && c->cn_wr_deadline) {
            /* Still writing the last answers: the write deadline guards
             * that wait; the linger starts once they are out. */
            c->cn_rd_deadline = TICK_UNSET;
            conn_rearm(c);
            return;
        }
        if (c->cn_flags & CONN_MESSAGE) {
            if ((c->cn_pause & OUR_PAUSES) ||
                (c->cn_flags & CONN_INPUT_PENDING)) {
                /* We are not reading, or have input yet to look at: the
                 * wait is ours, not the peer's. */
                arm_message(c);
                return;
            }
            /* The protocol may say goodbye (a WebSocket close 1008);
             * rd_reason is CLOSE_MESSAGE_TIMEOUT either way. */
            c->cn_flags &= (uint16_t)~CONN_MESSAGE;
        }
        /* Not in a handshake, but for one the protocol holds: the wait
         * is the protocol's own. */
        if (conn_proto(c)->on_timeout && !(c->cn_flags & CONN_LINGER) &&
            (!(c->cn_flags & CONN_HANDSHAKE) || (c->cn_flags & CONN_HS_HELD)) &&
            conn_proto(c)->on_timeout(c)) {
            if (!conn_is_closing(c))
                conn_rearm(c);
            return;
        }
        conn_close(c, (enum close_reason)c->cn_rd_reason);
        return;
    }
    conn_rearm(c);
}

/* ---- the set ------------------------------------------------------------ */

int conn_set_init(struct conn_set *s, struct loop *l,
                  const struct conn_limits *lim)
{
    struct rlimit rl;
    uint32_t n = 65536;

    memset(s, 0, sizeof(*s));
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = (uint32_t)MIN(rl.rlim_cur, (rlim_t)(1u << 24));
    s->by_fd = mem_calloc(MEM_LOOP, n, sizeof(*s->by_fd));
    if (!s->by_fd)
        return -ENOMEM;
    s->by_fd_len = n;
    s->loop = l;
    s->lim = *lim;
    s->next_id = 1;
    s->fd_handler = loop_add_fd_handler(l, conn_on_fd, s);
    timer_wheel_init_fire(&s->wheel, loop_now(l), conn_on_timer);
    if (s->fd_handler < 0 || loop_add_wheel(l, &s->wheel) < 0) {
        loop_remove_fd_handler(l, s->fd_handler);
        mem_free(MEM_LOOP, s->by_fd);
        s->by_fd = NULL;
        return -ENOSPC;
    }
    s->hook.fn = set_on_hook;
    loop_add_hook(l, &s->hook);
    timer_init(&s->mem_timer, set_on_mem_timer);
    return 0;
}

/* Every conn comes from one of the set's pools, one per conn size (one
 * listener's protocols share one ext size), so that a conn finds its set
 * from its slab (pool_owner) instead of carrying a pointer. */
static struct conn *conn_alloc(struct conn_set *s, size_t size)
{
    size_t rounded = (size + 15) / 16 * 16;

    for (int i = 0; i < CONN_MAX_SIZES; i++) {
        struct pool *p = &s->pools[i];
        if (!p->size) {
            pool_init(p, MEM_CONN, size);
            pool_set_owner(p, s);
        }
        if (p->size == rounded)
            return pool_alloc(p);
    }
    return NULL; /* a fifth conn size: a bug in the caller */
}

static void conn_free(struct conn *c)
{
    pool_free(pool_of(c), c);
}

void conn_set_fini(struct conn_set *s)
{
    struct conn *c, *next;

    for (c = s->pending; c; c = next) {
        next = c->cn_pending_next;
        if (conn_is_closing(c))
            conn_free(c);
    }
    s->pending = NULL;
    timer_cancel(loop_timers(s->loop), &s->mem_timer);
    loop_remove_wheel(s->loop, &s->wheel);
    /* The loop may live on (a library loop runs other servers). */
    loop_remove_hook(s->loop, &s->hook);
    loop_remove_fd_handler(s->loop, s->fd_handler);
    mem_free(MEM_LOOP, s->by_fd);
    s->by_fd = NULL;
    mem_free(MEM_LOOP, s->tls_by_fd);
    s->tls_by_fd = NULL;
    for (int i = 0; i < CONN_MAX_SIZES; i++)
        pool_fini(&s->pools[i]);
}

void conn_set_each(struct conn_set *s, void (*fn)(struct conn *c, void *arg),
                   void *arg)
{
    for (uint32_t fd = 0; fd < s->by_fd_len; fd++) {
        struct conn *c = s->by_fd[fd];
        if (c && !conn_is_closing(c))
            fn(c, arg);
    }
}

/* ---- creation ----------------------------------------------------------- */

/* The index of (proto, ctx) in the set's table, added if new; -1 when
 * the table is full. */
static int proto_index(struct conn_set *s, const struct conn_proto *proto,
                       void *ctx)
{
    for (unsigned i = 0; i < s->n_protos; i++)
        if (s->protos[i].proto == proto && s->protos[i].ctx == ctx)
            return (int)i;
    if (s->n_protos >= CONN_MAX_PROTOS)
        return -1;
    s->protos[s->n_protos].proto = proto;
    s->protos[s->n_protos].ctx = ctx;
    return (int)s->n_protos++;
}

/* Allocates and registers a conn for fd, watching `events`. On failure
 * closes fd and returns NULL with the reason counted. */
static struct conn *conn_setup(struct conn_set *s, int fd,
                               const struct conn_proto *proto, void *ctx,
                               size_t ext_size, uint32_t events,
                               enum conn_state st)
{
    int pi = proto_index(s, proto, ctx);
    struct conn *c;

    if (fd < 0 || (uint32_t)fd >= s->by_fd_len || pi < 0) {
        if (pi < 0)
            s->stats.closed[CLOSE_ERROR]++;
        close(fd);
        return NULL;
    }
    c = conn_alloc(s, sizeof(*c) + ext_size);
    if (!c) {
        s->stats.closed[CLOSE_NO_MEMORY]++;
        close(fd);
        return NULL;
    }
    tnode_init(&c->cn_timer);
    c->cn_proto = (uint8_t)pi;
    c->cn_fd = fd;
    c->cn_id = s->next_id++;
    c->cn_timer.data = loop_now(s->loop);
    c->cn_state = (uint8_t)st;
    if (loop_watch_fd(s->loop, fd, s->fd_handler, events) < 0) {
        conn_free(c);
        s->stats.closed[CLOSE_ERROR]++;
        close(fd);
        return NULL;
    }
    s->by_fd[fd] = c;
    s->stats.open++;
    s->stats.by_state[st]++;
    return c;
}

struct conn *conn_new_ctx(struct conn_set *s, int fd,
                          const struct conn_proto *proto, void *ctx,
                          size_t ext_size, uint32_t ms,
                          enum close_reason reason)
{
    struct conn *c =
        conn_setup(s, fd, proto, ctx, ext_size, EPOLLIN, CSTATE_HEADER);

    if (!c)
        return NULL;
    s->stats.accepted++;
    conn_set_read_deadline(c, ms, reason);
    return c;
}

struct conn *conn_new(struct conn_set *s, int fd, const struct sockaddr *peer,
                      const struct conn_proto *proto, size_t ext_size,
                      uint32_t ms, enum close_reason reason)
{
    (void)peer; /* the kernel keeps it: conn_peer_str() */
    return conn_new_ctx(s, fd, proto, NULL, ext_size, ms, reason);
}

struct conn *conn_connect(struct conn_set *s, const struct sockaddr *addr,
                          socklen_t addrlen, const struct sockaddr *source,
                          socklen_t sourcelen, const struct conn_proto *proto,
                          void *ctx, size_t ext_size, uint32_t ms, int *err)
{
    int fd =
        socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct conn *c;

    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (source) {
        /* The port is chosen at connect(), per destination, so one source
         * address is not limited to one 64k range across servers. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, source, sourcelen) < 0) {
            *err = -errno;
            close(fd);
            return NULL;
        }
    }
    if (connect(fd, addr, addrlen) < 0 && errno != EINPROGRESS) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    c = conn_setup(s, fd, proto, ctx, ext_size, EPOLLOUT, CSTATE_CONNECTING);
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    s->stats.connects++;
    c->cn_flags |= CONN_CONNECTING;
    conn_set_read_deadline(c, ms, CLOSE_CONNECT_TIMEOUT);
    return c;
}

/* ---- TLS ---------------------------------------------------------------- */

struct tls_conn *conn_tls(const struct conn *c)
{
    return (c->cn_flags & CONN_TLS) ? conn_set_of(c)->tls_by_fd[c->cn_fd]
                                    : NULL;
}

const char *conn_tls_error(const struct conn *c)
{
    struct tls_conn *tc = conn_tls(c);

    return tc ? tls_conn_error(tc) : "";
}

int conn_start_tls(struct conn *c, struct tls_ctx *ctx, bool server,
                   const char *host, uint32_t ms)
{
    struct conn_set *s = conn_set_of(c);
    struct tls_conn *tc;

    if (conn_is_closing(c) || (c->cn_flags & CONN_TLS))
        return -EINVAL;
    if (!s->tls_by_fd) {
        s->tls_by_fd =
            mem_calloc(MEM_LOOP, s->by_fd_len, sizeof(*s->tls_by_fd));
        if (!s->tls_by_fd)
            return -ENOMEM;
    }
    tc = tls_conn_new(ctx, c->cn_fd, server, host);
    if (!tc)
        return -ENOMEM;
    s->tls_by_fd[c->cn_fd] = tc;
    c->cn_flags |= CONN_TLS;
    s->stats.tls_open++;
    if (server) {
        /* A client's handshake starts when its connect is done. */
        c->cn_flags |= CONN_HANDSHAKE;
        conn_set_state(c, CSTATE_TLS);
    }
    if (ms)
        conn_set_read_deadline(c, ms, CLOSE_HANDSHAKE_TIMEOUT);
    return 0;
}

/* Frees c's TLS engine, after a close_notify if the conn ends well and
 * the handshake was done (never waiting for the peer's). From the close
 * path, or when a plaintext client is answered in plaintext. */
static void tls_drop(struct conn *c, bool notify)
{
    struct conn_set *s = conn_set_of(c);
    struct tls_conn *tc = s->tls_by_fd[c->cn_fd];

    if (notify && !(c->cn_flags & CONN_HANDSHAKE))
        tls_shutdown(tc);
    tls_conn_free(tc);
    s->tls_by_fd[c->cn_fd] = NULL;
    c->cn_flags &= (uint16_t) ~(CONN_TLS | CONN_HANDSHAKE | CONN_TLS_RW);
    s->stats.tls_open--;
}

static void tls_end(struct conn *c, enum close_reason why)
{
    struct conn_set *s = conn_set_of(c);

    if ((c->cn_flags & CONN_HANDSHAKE) &&
        (why == CLOSE_HANDSHAKE_TIMEOUT || why == CLOSE_CONNECT_TIMEOUT))
        s->stats.tls_handshakes[TLS_HS_TIMEOUT]++;
    tls_drop(c,
             why != CLOSE_PEER && why != CLOSE_ERROR && why != CLOSE_TLS_ERROR);
}

/* Decrypted bytes wait inside OpenSSL, where epoll cannot see them. */
static bool tls_input_waiting(const struct conn *c)
{
    return (c->cn_flags & CONN_TLS) && tls_pending(conn_tls(c));
}

/* Part of a TLS record is held inside OpenSSL, waiting for the rest. */
static bool tls_partial(const struct conn *c)
{
    return (c->cn_flags & CONN_TLS) && !(c->cn_flags & CONN_HANDSHAKE) &&
           tls_partial_record(conn_tls(c));
}

/* Input to handle without a new epoll event: at the end of this
 * iteration (reprocess). */
static void input_again(struct conn *c)
{
    c->cn_flags |= CONN_INPUT_PENDING;
    conn_pending_add(c);
}

/* Plain HTTP on the TLS port: the request is still in the socket, so the
 * conn goes on without TLS, answers what its protocol says in plaintext
 * (HTTP: nginx's 400) and closes within what is left of its handshake
 * deadline; a protocol with no answer is closed at once. */
static void tls_plaintext(struct conn *c)
{
    const char *reply = conn_proto(c)->tls_plaintext_reply;
    uint32_t now = loop_now(conn_loop(c));
    uint32_t left = 1;

    conn_set_of(c)->stats.tls_handshakes[TLS_HS_PLAINTEXT]++;
    tls_drop(c, false);
    if (!reply) {
        conn_close(c, CLOSE_BAD_REQUEST);
        return;
    }
    conn_update_events(c);
    if (c->cn_rd_deadline != TICK_UNSET && tick_after(c->cn_rd_deadline, now))
        left = c->cn_rd_deadline - now;
    if (conn_send_bytes(c, reply, strlen(reply)) < 0) {
        conn_close(c, CLOSE_NO_MEMORY);
        return;
    }
    conn_close_within(c, CLOSE_BAD_REQUEST, left);
}

/* Drives the TLS handshake; once done, the protocol is told the conn is
 * ready (on_connect) and queued output goes out. */
static void do_handshake(struct conn *c)
{
    struct conn_set *s = conn_set_of(c);
    struct tls_conn *tc = conn_tls(c);
    int rc = tls_handshake(tc);
    char peer[64];

    switch (rc) {
    case TLS_OK:
        c->cn_flags &= (uint16_t) ~(CONN_HANDSHAKE | CONN_TLS_RW);
        s->stats.tls_handshakes[TLS_HS_OK]++;
        conn_update_events(c);
        conn_proto(c)->on_connect(c, 0);
        if (conn_is_closing(c))
            return;
        if (c->cn_q)
            conn_pending_add(c);
        /* Bytes that came with the handshake's last flight may sit
         * decrypted inside OpenSSL, where epoll cannot see them. */
        if (tls_input_waiting(c))
            input_again(c);
        return;
    case TLS_WANT_READ:
    case TLS_WANT_WRITE:
        if (rc == TLS_WANT_WRITE)
            c->cn_flags |= CONN_TLS_RW;
        else
            c->cn_flags &= ~CONN_TLS_RW;
        conn_update_events(c);
        return;
    case TLS_ERR_PLAINTEXT:
        tls_plaintext(c);
        return;
    default:
        s->stats.tls_handshakes[TLS_HS_FAILED]++;
        LOG_INFO("tls handshake failed", "conn=%llu peer=%s err=\"%s\"",
                 (unsigned long long)c->cn_id,
                 conn_peer_str(c, peer, sizeof(peer)), tls_conn_error(tc));
        conn_proto(c)->on_connect(c, -EPROTO);
        conn_close(c, rc == TLS_EOF ? CLOSE_PEER : CLOSE_TLS_ERROR);
        return;
    }
}

void conn_tls_begin(struct conn *c)
{
    if (!(c->cn_flags & CONN_HS_HELD) || conn_is_closing(c))
        return;
    c->cn_flags &= (uint16_t)~CONN_HS_HELD;
    do_handshake(c);
}

/* The connect finished (EPOLLOUT, or an error): tell the protocol. */
static void connect_done(struct conn *c)
{
    int e = 0;
    socklen_t len = sizeof(e);

    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);

    if (getsockopt(c->cn_fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        e = errno;
    if (e) {
        conn_proto(c)->on_connect(c, -e);
        conn_close(c, CLOSE_CONNECT_FAILED);
        return;
    }
    /* A stale event (routed by fd) must not pass for the connect's end. */
    if (getpeername(c->cn_fd, (struct sockaddr *)&peer, &plen) < 0 &&
        errno == ENOTCONN)
        return;
    c->cn_flags &= ~CONN_CONNECTING;
    if (c->cn_flags & CONN_TLS) {
        c->cn_flags |= CONN_HANDSHAKE;
        if (conn_proto(c)->on_tcp_connect &&
            !conn_proto(c)->on_tcp_connect(c)) {
            if (conn_is_closing(c))
                return;
            c->cn_flags |= CONN_HS_HELD; /* until conn_tls_begin() */
            conn_update_events(c);
            return;
        }
        if (conn_is_closing(c))
            return;
        do_handshake(c);
        return;
    }
    conn_update_events(c);
    conn_proto(c)->on_connect(c, 0);
    if (!conn_is_closing(c) && c->cn_q)
        conn_pending_add(c);
}

int conn_set_proto_ctx(struct conn *c, const struct conn_proto *proto,
                       void *ctx)
{
    int pi = proto_index(conn_set_of(c), proto, ctx);

    if (pi < 0)
        return -ENOSPC;
    c->cn_proto = (uint8_t)pi;
    c->cn_flags |= CONN_SWITCHED;
    return 0;
}

void conn_set_proto(struct conn *c, const struct conn_proto *proto)
{
    if (conn_set_proto_ctx(c, proto, NULL) < 0)
        conn_close(c, CLOSE_ERROR);
}

void conn_set_state(struct conn *c, enum conn_state st)
{
    if (c->cn_state == st || conn_is_closing(c))
        return;
    conn_set_of(c)->stats.by_state[c->cn_state]--;
    conn_set_of(c)->stats.by_state[st]++;
    c->cn_state = (uint8_t)st;
}

void conn_set_user_timeout(struct conn *c, uint32_t ms)
{
    unsigned int v = ms;

    setsockopt(c->cn_fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof(v));
}

int conn_tcp_info(const struct conn *c, void *ti, size_t len)
{
    socklen_t tl = (socklen_t)len;

    memset(ti, 0, len);
    if (getsockopt(c->cn_fd, IPPROTO_TCP, TCP_INFO, ti, &tl) < 0)
        return -errno;
    return 0;
}

const char *conn_peer_str(const struct conn *c, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (c->cn_fd < 0 ||
        getpeername(c->cn_fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(out, len, "unknown");
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, len, "unknown");
    }
    return out;
}

/* ---- the close path ----------------------------------------------------- */

/* Clears every pause cause of c, keeping the per-cause gauges right. */
static void unpause_all(struct conn_set *s, struct conn *c)
{
    for (unsigned b = 0; b < PAUSE_CAUSE_COUNT; b++)
        if (c->cn_pause & (1u << b))
            s->stats.paused_by[b]--;
    c->cn_pause = 0;
}

void conn_close(struct conn *c, enum close_reason why)
{
    struct conn_set *s = conn_set_of(c);

    if (conn_is_closing(c))
        return;
    c->cn_flags |= CONN_CLOSING;
    c->cn_close_reason = (uint8_t)why;
    s->stats.closed[why < CLOSE_REASON_COUNT ? why : CLOSE_ERROR]++;
    s->stats.open--;
    s->stats.by_state[c->cn_state]--;
    if (c->cn_pause)
        s->stats.paused--;
    unpause_all(s, c);
    tnode_cancel(&s->wheel, &c->cn_timer);
    loop_unwatch(s->loop, c->cn_fd);
    if (s->on_fd_close)
        s->on_fd_close(s->on_fd_close_arg, c->cn_fd);
    if (conn_proto(c)->on_close)
        conn_proto(c)->on_close(c, why);
    if (c->cn_flags & CONN_TLS)
        tls_end(c, why);
    conn_queue_clear(c);
    carry_release(&c->cn_carry);
    s->by_fd[c->cn_fd] = NULL;
    close(c->cn_fd);
    c->cn_fd = -1;
    conn_pending_add(c); /* freed at the end of this loop iteration */
}

void conn_close_after_flush(struct conn *c, enum close_reason why,
                            uint32_t linger_ms)
{
    if (conn_is_closing(c))
        return;
    c->cn_after_flush = (uint8_t)why;
    c->cn_linger_ms = linger_ms ? linger_ms : 1;
    c->cn_flags |= CONN_LINGER;
    conn_set_state(c, CSTATE_LINGER);
    /* Lingering reads are discarded, so carried input is of no use. */
    carry_release(&c->cn_carry);
    conn_set_read_deadline(c, linger_ms ? linger_ms : 1, CLOSE_LINGER_TIMEOUT);
    /* Keep reading (to discard) even if paused for backpressure. */
    if (c->cn_pause) {
        conn_set_of(c)->stats.paused--;
        unpause_all(conn_set_of(c), c);
        conn_update_events(c);
    }
    conn_pending_add(c);
}

void conn_close_within(struct conn *c, enum close_reason why, uint32_t ms)
{
    conn_close_after_flush(c, why, ms);
    if (!conn_is_closing(c))
        c->cn_flags |= CONN_HARD_LINGER;
}

/* ---- epoll interest ---------------------------------------------------- */

/* What c waits for from epoll: its phase (connecting, handshake), its
 * pauses, a TLS read that waits for writability, and queued output. */
void conn_update_events(struct conn *c)
{
    uint32_t ev = 0;

    if (c->cn_flags & CONN_CONNECTING) {
        ev = EPOLLOUT;
        goto out;
    }
    if (c->cn_flags & CONN_HANDSHAKE) {
        ev = (c->cn_flags & CONN_TLS_RW) ? EPOLLOUT : EPOLLIN;
        goto out;
    }
    if (c->cn_flags & CONN_TLS_RW)
        ev |= EPOLLOUT;
    if (!c->cn_pause && !(c->cn_flags & CONN_EOF))
        ev |= EPOLLIN;
    /* Paused for memory, a peer that leaves must still be noticed, or its
     * conn would hold memory until a deadline. */
    if ((c->cn_pause & PAUSE_MEMORY) && !(c->cn_flags & CONN_EOF))
        ev |= EPOLLRDHUP;
    if (c->cn_flags & CONN_WANT_WRITE)
        ev |= EPOLLOUT;
out:
    loop_modify_fd(conn_loop(c), c->cn_fd, conn_set_of(c)->fd_handler, ev);
}

/* ---- reading ------------------------------------------------------------ */

/* Hands rb[0..len) to the protocol and carries what it leaves. */
static void deliver(struct conn *c, uint8_t *p, size_t len)
{
    size_t used = conn_proto(c)->on_data(c, p, len);

    /* A protocol switch (HTTP upgrade) hands the rest of this buffer to
     * the new protocol at once: it may be waiting for no more bytes. */
    while ((c->cn_flags & CONN_SWITCHED) && used < len && !conn_is_closing(c) &&
           !(c->cn_flags & CONN_LINGER)) {
        c->cn_flags &= ~CONN_SWITCHED;
        used += conn_proto(c)->on_data(c, p + used, len - used);
    }
    c->cn_flags &= ~CONN_SWITCHED;
    if (conn_is_closing(c) || (c->cn_flags & CONN_LINGER))
        return;
    if (used < len) {
        if (carry_save(&c->cn_carry, p + used, len - used) < 0) {
            conn_close(c, CLOSE_NO_MEMORY);
            return;
        }
        conn_set_of(c)->stats.carry_saves++;
    }
}

/* Reads once into the shared buffer, behind any carried tail. */
static void do_read(struct conn *c)
{
    struct readbuf *rb = loop_readbuf(conn_loop(c));
    size_t have = 0;
    ssize_t n;

    if (c->cn_carry) {
        have = c->cn_carry->len;
        memcpy(rb->data, c->cn_carry->data, have);
    }
    if (have >= rb->size) {
        /* A protocol must consume input or pause: a carry that fills the
         * whole read buffer while reading is on is a protocol bug. */
        conn_close(c, CLOSE_ERROR);
        return;
    }
    if (c->cn_flags & CONN_TLS) {
        n = tls_read(conn_tls(c), rb->data + have, rb->size - have);
        switch (n) {
        case TLS_WANT_READ:
            /* Half a record and nothing to decrypt yet: for a protocol
             * of messages, that is a message begun (rule 2). */
            if (conn_proto(c)->messages && may_arm_message(c) && tls_partial(c))
                arm_message(c);
            return;
        case TLS_WANT_WRITE: /* OpenSSL must send first (a KeyUpdate) */
            c->cn_flags |= CONN_TLS_RW;
            conn_update_events(c);
            return;
        case TLS_CLOSED:
        case TLS_EOF:
            n = 0;
            break;
        default:
            if (n < 0) {
                conn_close(c, CLOSE_TLS_ERROR);
                return;
            }
        }
    } else {
        n = read(c->cn_fd, rb->data + have, rb->size - have);
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(c, errno == ECONNRESET ? CLOSE_PEER : CLOSE_ERROR);
        return;
    }
    if (n == 0) {
        if (c->cn_flags & CONN_LINGER) {
            conn_close(c, (enum close_reason)c->cn_after_flush);
            return;
        }
        /* The peer is done sending; answers already queued may still go
         * out (a pipelined client that half-closes), so stop reading
         * and close once the queue is empty. */
        c->cn_flags |= CONN_EOF;
        if (!c->cn_q) {
            conn_close(c, CLOSE_PEER);
            return;
        }
        carry_release(&c->cn_carry);
        c->cn_after_flush = CLOSE_PEER;
        c->cn_flags |= CONN_LINGER;
        conn_update_events(c);
        return;
    }
    conn_set_of(c)->stats.bytes_in += (uint64_t)n;
    if (c->cn_flags & CONN_LINGER)
        return; /* discarded */
    carry_release(&c->cn_carry);
    deliver(c, rb->data, have + (size_t)n);
    /* A full buffer may leave decrypted bytes inside OpenSSL, where
     * epoll cannot see them: come back for them this iteration. */
    if (!conn_is_closing(c) && tls_input_waiting(c))
        input_again(c);
}

/* Feeds a carried tail to the protocol again without reading (after a
 * resume: the peer may be waiting for our answers, not sending). */
static void reprocess(struct conn *c)
{
    struct readbuf *rb = loop_readbuf(conn_loop(c));
    size_t have;

    c->cn_flags &= ~CONN_INPUT_PENDING;
    if (c->cn_pause)
        return;
    if (tls_input_waiting(c)) {
        do_read(c); /* puts the carry in front itself */
        return;
    }
    if (!c->cn_carry)
        return;
    have = c->cn_carry->len;
    memcpy(rb->data, c->cn_carry->data, have);
    carry_release(&c->cn_carry);
    deliver(c, rb->data, have);
}

static void conn_on_fd(void *arg, int fd, uint32_t events)
{
    struct conn_set *s = arg;
    struct conn *c = (uint32_t)fd < s->by_fd_len ? s->by_fd[fd] : NULL;

    /* Routed by fd: a conn closed earlier in this iteration is gone from
     * by_fd; a new conn on a reused fd treats the event as a hint. */
    if (!c || conn_is_closing(c))
        return;
    if (c->cn_flags & CONN_CONNECTING) {
        connect_done(c);
        return;
    }
    if (c->cn_flags & CONN_HS_HELD) {
        /* The peer spoke first, left or reset while we held our hello. */
        conn_close(c, CLOSE_PEER);
        return;
    }
    if (c->cn_flags & CONN_HANDSHAKE) {
        do_handshake(c);
        return;
    }
    if ((events & EPOLLOUT) && (c->cn_flags & CONN_TLS_RW)) {
        /* The read that waited for writability goes first. */
        c->cn_flags &= ~CONN_TLS_RW;
        conn_update_events(c);
        if (!c->cn_pause)
            do_read(c);
        if (conn_is_closing(c))
            return;
    }
    if (events & EPOLLOUT) {
        conn_flush(c);
        if (conn_is_closing(c))
            return;
    }
    if ((events & EPOLLRDHUP) && (c->cn_pause & PAUSE_MEMORY)) {
        /* Unread input is dropped: under memory pressure a departed
         * peer's conn is worth more freed than answered. */
        conn_close(c, CLOSE_PEER);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!c->cn_pause || (events & (EPOLLHUP | EPOLLERR)))
            do_read(c);
    }
}

bool conn_pause_if_over_budget(struct conn *c)
{
    if (likely(!mem_over_budget()) || (c->cn_flags & CONN_LINGER))
        return false;
    conn_pause_read(c, PAUSE_MEMORY);
    if (!timer_armed(&conn_set_of(c)->mem_timer))
        loop_timer_in(conn_loop(c), &conn_set_of(c)->mem_timer, MEM_POLL_MS);
    return true;
}

void conn_pause_read(struct conn *c, enum pause_cause cause)
{
    if (conn_is_closing(c) || (c->cn_flags & CONN_LINGER) ||
        (c->cn_pause & cause))
        return;
    if (!c->cn_pause)
        conn_set_of(c)->stats.paused++;
    c->cn_pause |= (uint8_t)cause;
    conn_set_of(c)->stats.paused_total[__builtin_ctz(cause)]++;
    conn_set_of(c)->stats.paused_by[__builtin_ctz(cause)]++;
    conn_update_events(c);
}

void conn_resume_read(struct conn *c, enum pause_cause cause)
{
    if (conn_is_closing(c) || !(c->cn_pause & cause))
        return;
    c->cn_pause &= (uint8_t)~cause;
    conn_set_of(c)->stats.paused_by[__builtin_ctz(cause)]--;
    /* A message we stopped reading gets its full time again. */
    if ((cause & OUR_PAUSES) && (c->cn_flags & CONN_MESSAGE))
        arm_message(c);
    if (c->cn_pause)
        return;
    conn_set_of(c)->stats.paused--;
    conn_update_events(c);
    if (c->cn_carry || tls_input_waiting(c))
        input_again(c);
}

static void resume_memory(struct conn *c, void *arg)
{
    (void)arg;
    conn_resume_read(c, PAUSE_MEMORY);
}

/* While readers are paused for memory: resume them all once live bytes
 * fall under the budget's low-water mark, else look again later. */
static void set_on_mem_timer(struct timer *t)
{
    struct conn_set *s = container_of(t, struct conn_set, mem_timer);

    if (mem_under_low_water())
        conn_set_each(s, resume_memory, NULL);
    else
        loop_timer_in(s->loop, t, MEM_POLL_MS);
}

/* ---- end of iteration --------------------------------------------------- */

static void before_flush(struct conn_set *s)
{
    if (s->before_flush)
        s->before_flush(s->before_flush_arg);
}

/* Runs after every loop iteration: frees closed conns, processes input
 * left by a resume, and flushes corked output. Conns added while it runs
 * are handled in the same pass. */
static void set_on_hook(struct loop_hook *h)
{
    struct conn_set *s = container_of(h, struct conn_set, hook);
    struct conn *c;

    /* What this iteration published fans out before anything is flushed
     * (pub/sub). A reprocess or a flush's callback here may publish more:
     * the pass goes round again until nothing is left. */
    for (;;) {
        before_flush(s);
        if (!s->pending)
            break;
        while ((c = s->pending)) {
            s->pending = c->cn_pending_next;
            c->cn_pending_next = NULL;
            c->cn_flags &= ~CONN_PENDING;
            if (conn_is_closing(c)) {
                conn_free(c);
                continue;
            }
            if (c->cn_flags & CONN_INPUT_PENDING) {
                reprocess(c);
                if (conn_is_closing(c)) {
                    /* conn_close() put it back on the list. */
                    continue;
                }
            }
            if ((c->cn_q || (c->cn_flags & CONN_LINGER)) &&
                !(c->cn_flags & (CONN_CONNECTING | CONN_HANDSHAKE)))
                conn_flush(c);
        }
    }
    s->hook_iter = loop_iteration(s->loop);
}
