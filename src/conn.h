/*
 * conn.h - a connection's life: reads, the outbound queue, deadlines, and
 * the one close path (docs/principles.md, rules 1, 2, 3, 5).
 *
 * Ownership. A conn is allocated by conn_new() and freed only by the
 * connection set's end-of-iteration hook after conn_close(). conn_close()
 * is idempotent and records the first reason; it releases everything the
 * conn holds (timer, epoll, queue references, carry, fd) at once, and
 * leaves only the struct itself, which stays readable until the end of the
 * loop iteration so a callback still running on it is safe. After calling
 * anything that can close, check conn_is_closing(c) and return.
 *
 * Reading. Bytes are read into the loop's shared read buffer. If the
 * previous read left an unconsumed tail (the carry), it is copied in front
 * first. The protocol's on_data consumes what it can; what is left is saved
 * in an exact-size carry buffer. An idle conn holds no buffer.
 *
 * Writing (corking). conn_send() only queues a message reference and puts
 * the conn on its set's pending list; at the end of the loop iteration all
 * queued frames of a conn go out in one writev. What the socket does not
 * take waits for EPOLLOUT, under the write deadline.
 *
 * Deadlines. Each conn has one timer node armed at the nearest of its read
 * deadline (set by the protocol with a reason: header, body, idle, ...)
 * and its write deadline (armed while bytes wait and the peer takes none).
 * Pushing a deadline later never touches the wheel (lazy re-arm).
 * A conn that is not closing always has a deadline.
 *
 * Protocols hang their per-connection state in the conn's "ext" area, a
 * fixed number of bytes allocated with the conn (uSockets' ext): no second
 * allocation per connection.
 */
#ifndef MOOR_CONN_H
#define MOOR_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <netinet/in.h>
#include "loop.h"
#include "timer.h"
#include "buf.h"
#include "msg.h"
#include "pool.h"

/* Keep close_reason_name() in conn.c in step. */
enum close_reason {
    CLOSE_NONE = 0,
    CLOSE_PEER,              /* peer_closed: EOF or reset from the peer */
    CLOSE_ERROR,             /* error: socket error on read or write */
    CLOSE_HEADER_TIMEOUT,    /* header_timeout */
    CLOSE_BODY_TIMEOUT,      /* body_timeout */
    CLOSE_IDLE_TIMEOUT,      /* idle_timeout */
    CLOSE_WRITE_TIMEOUT,     /* write_timeout: peer took no bytes */
    CLOSE_LINGER_TIMEOUT,    /* linger_timeout: peer kept sending after
                                an error response */
    CLOSE_BAD_REQUEST,       /* bad_request: answered with a 4xx/5xx */
    CLOSE_DONE,              /* done: response complete, no keep-alive */
    CLOSE_SHUTDOWN,          /* shutdown: server stopping */
    CLOSE_SLOW_CONSUMER,     /* slow_consumer: outbound queue over limit */
    CLOSE_NO_MEMORY,         /* out_of_memory: an allocation failed */
    CLOSE_PONG_TIMEOUT,      /* pong_timeout: no frame after our ping */
    CLOSE_PROTOCOL_ERROR,    /* protocol_error: WebSocket 1002/1007 */
    CLOSE_TOO_BIG,           /* message_too_big: WebSocket 1009 */
    CLOSE_CLOSE_TIMEOUT,     /* close_timeout: no reply to our close */
    CLOSE_CONNECT_FAILED,    /* connect_failed: our outgoing connect failed */
    CLOSE_CONNECT_TIMEOUT,   /* connect_timeout: no connect/handshake in time */
    CLOSE_HANDSHAKE_FAILED,  /* handshake_failed: the server's answer was bad */
    CLOSE_HANDSHAKE_TIMEOUT, /* handshake_timeout: no TLS handshake in time */
    CLOSE_TLS_ERROR,         /* tls_error: a TLS failure (alert, bad record,
                                certificate, no common version) */
    CLOSE_MESSAGE_TIMEOUT,   /* message_timeout: a message (frame, fragments,
                                TLS record) begun and not finished in time */
    CLOSE_REASON_COUNT
};
const char *close_reason_name(enum close_reason r);

/* Why reading is paused; reading resumes when no cause is left. */
enum pause_cause {
    PAUSE_BACKPRESSURE = 1u << 0, /* our outbound queue is too full */
    PAUSE_RATE = 1u << 1,         /* inbound token bucket empty */
    PAUSE_MEMORY = 1u << 2,       /* process over its memory budget */
    PAUSE_AUTH = 1u << 3,         /* a request waits for the auth callback
                                     (http_defer) */
};
/* The causes are the bits 0 .. PAUSE_CAUSE_COUNT - 1. */
#define PAUSE_CAUSE_COUNT 4
/* The name of the cause at bit index bit: "backpressure", "rate",
 * "memory", "auth" (metrics labels, /debug/conns). */
const char *pause_cause_name(unsigned bit);

/* Connection states as shown in metrics and /debug/conns. The protocol
 * sets them; conn only counts them. */
enum conn_state {
    CSTATE_HEADER = 0, /* reading_header */
    CSTATE_BODY,       /* reading_body */
    CSTATE_IDLE,       /* idle (keep-alive between requests) */
    CSTATE_ACTIVE,     /* active (handling / writing a response) */
    CSTATE_LINGER,     /* lingering (draining after an error) */
    CSTATE_WEBSOCKET,  /* websocket (open) */
    CSTATE_CONNECTING, /* connecting (outgoing, before it is open) */
    CSTATE_SSE,        /* sse (an open event stream) */
    CSTATE_TLS,        /* tls_handshake (server side, before any request) */
    CSTATE_COUNT
};
const char *conn_state_name(enum conn_state s);

struct conn;
struct conn_set;

struct conn_proto {
    const char *name;
    /* Consumes bytes from p[0..len) and returns how many it consumed;
     * the rest is carried to the next read. May queue output, change
     * deadlines, pause reading, or close. p is writable scratch (the shared
     * read buffer) valid only during the call. */
    size_t (*on_data)(struct conn *c, uint8_t *p, size_t len);
    /* The outbound queue became empty (optional). */
    void (*on_drain)(struct conn *c);
    /* The read deadline passed. Return true if the protocol handled it
     * (and set a new read deadline), false to close with the reason given
     * when the deadline was set (optional; NULL = close). */
    bool (*on_timeout)(struct conn *c);
    /* The conn is ready for the protocol's first bytes: an outgoing conn
     * (conn_connect) finished connecting, and its TLS handshake if it has
     * one; or a server conn finished its TLS handshake (conn_start_tls).
     * err is 0, or -errno if it failed: the conn is then closed right
     * after this call (connect_failed, or tls_error with -EPROTO:
     * conn_tls_error() says why). Required for protocols used with
     * conn_connect or with TLS. */
    void (*on_connect)(struct conn *c, int err);
    /* An outgoing conn with TLS finished its TCP connect and starts its
     * handshake now: the moment to give the handshake its own deadline
     * (optional; without it the connect deadline covers both). Returning
     * false holds the handshake until conn_tls_begin(c) (a client waiting
     * for a session to resume): meanwhile any event from the peer (bytes
     * before our hello, FIN, RST) closes the conn as CLOSE_PEER, and the
     * deadline set here keeps running (on_timeout is asked while held). */
    bool (*on_tcp_connect)(struct conn *c);
    /* Called once from conn_close(), before resources go (optional). */
    void (*on_close)(struct conn *c, enum close_reason why);
    /* The protocol reads messages (WebSocket, framed TCP, SSE): a message
     * begun must end within the set's message_timeout_ms, and conn.c
     * starts that deadline itself when half a TLS record arrives (see
     * conn_message_update()). */
    bool messages;
    /* A server TLS conn whose first bytes are a plain HTTP request: what
     * to answer in plaintext before closing (NULL: close without a
     * word). Counted as a plaintext handshake either way. */
    const char *tls_plaintext_reply;
};

/* The outbound queue: a ring of message references, allocated (tag
 * MEM_QUEUE) when the first message is queued, doubled when full, and
 * freed as soon as it is empty, so an idle conn holds none of it. One
 * 8-byte slot per message, in order, so a flush builds its iovecs by
 * walking one array instead of chasing a pointer per message. */
struct oq {
    uint32_t head;   /* slot of the oldest message */
    uint32_t count;  /* messages queued */
    uint32_t cap;    /* slots, a power of two */
    uint32_t off;    /* bytes of the head message already written */
    struct msg *m[]; /* one reference held in each */
};
/* The ring's own memory is bounded by the byte limit too: a queue holds at
 * most one message per CONN_QUEUE_ENTRY_BYTES of queue_limit (and never
 * fewer than CONN_QUEUE_MIN_ENTRIES), so its slots, doubled, take at most
 * queue_limit bytes. Messages that small are rare (a WebSocket frame of
 * 14 bytes of payload); below that the count is the limit that bites. */
#define CONN_QUEUE_ENTRY_BYTES 16u
#define CONN_QUEUE_MIN_ENTRIES 64u

#define CONN_LAT_BUCKETS 15
#define CONN_LAT_BOUNDS_US                                                     \
    {                                                                          \
        100, 250, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000, 250000,  \
            500000, 1000000, 5000000, UINT64_MAX                               \
    }

/* The bucket of a latency of us microseconds (CONN_LAT_BOUNDS_US): the
 * delivery histogram's and the auth callback's. */
static inline int conn_lat_bucket(uint64_t us)
{
    static const uint64_t bounds[CONN_LAT_BUCKETS] = CONN_LAT_BOUNDS_US;
    int i = 0;

    while (us > bounds[i])
        i++;
    return i;
}

/* TLS handshake outcomes (conn_stats.tls_handshakes). */
enum tls_hs_result {
    TLS_HS_OK = 0,
    TLS_HS_FAILED,    /* an alert, a bad record, no common version, ... */
    TLS_HS_TIMEOUT,   /* not done within its deadline */
    TLS_HS_PLAINTEXT, /* a plain HTTP request on the TLS port */
    TLS_HS_COUNT
};

struct conn_stats {
    uint64_t accepted;
    uint64_t connects; /* outgoing connects started */
    uint64_t closed[CLOSE_REASON_COUNT];
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t carry_saves;           /* partial tails carried */
    uint64_t queue_overflows;       /* conn_send refused at the cap */
    int64_t by_state[CSTATE_COUNT]; /* gauge */
    int64_t open;                   /* gauge */
    int64_t paused;                 /* gauge: conns with reading paused */
    int64_t queued_bytes;           /* gauge: sum of outbound queues */
    /* By bit index of enum pause_cause: pause events, and the gauge of
     * connections paused for it. */
    uint64_t paused_total[PAUSE_CAUSE_COUNT];
    int64_t paused_by[PAUSE_CAUSE_COUNT];
    /* Publish-to-write latency of messages with born_ns, a Prometheus
     * histogram: counts per bucket (upper bounds CONN_LAT_BOUNDS_US, the
     * last is +Inf), their total and sum. */
    uint64_t lat_buckets[CONN_LAT_BUCKETS];
    uint64_t lat_count;
    uint64_t lat_sum_us;
    uint64_t tls_handshakes[TLS_HS_COUNT];
    int64_t tls_open; /* gauge: conns with TLS */
};

struct conn_limits {
    uint32_t write_timeout_ms;
    uint32_t queue_limit;        /* outbound bytes per conn */
    uint32_t message_timeout_ms; /* a begun message must end; 0 = never */
};

/* The struct a connection costs while idle (with its protocol's ext area
 * behind it): 80 bytes on x86-64. What is not here, on purpose: the set
 * (found from the conn's pool slab, pool_owner()), the protocol's
 * pointers (an index into the set's table), the epoll watcher (events are
 * routed by fd), the peer address and the byte and activity counters
 * (the kernel keeps them: getpeername() and TCP_INFO, read only when
 * logging or listing conns).
 *
 * The members are conn.c's own, named cn_* so that `make lint` (check 4)
 * finds any use outside src/conn*.c: other modules go through the
 * accessors below (conn_id(), conn_state_of(), conn_paused(), ...). */
struct conn {
    struct tnode cn_timer;        /* nearest deadline; .data: created */
    struct conn *cn_pending_next; /* set's end-of-iteration list */
    struct carry *cn_carry;       /* incomplete input tail, or NULL */
    struct oq *cn_q;              /* outbound queue; NULL when empty */
    uint64_t cn_id : 48;          /* unique in the set, for logs */
    uint64_t cn_linger_ms : 16;   /* close_after_flush: wait for the peer */
    uint32_t cn_qbytes;           /* bytes queued, not yet written */
    uint32_t cn_rd_deadline;      /* tick, or TICK_UNSET */
    uint32_t cn_wr_deadline;      /* tick, or TICK_UNSET */
    int cn_fd;
    uint16_t cn_flags;
    uint8_t cn_state;        /* enum conn_state */
    uint8_t cn_rd_reason;    /* enum close_reason for rd_deadline */
    uint8_t cn_close_reason; /* set once closing */
    uint8_t cn_pause;        /* enum pause_cause bits */
    uint8_t cn_after_flush;  /* close reason to apply once drained */
    uint8_t cn_proto;        /* index into the set's protocol table */
    uint64_t cn_ext[];       /* protocol state, ext_size bytes */
};

enum conn_flag {
    CONN_CLOSING = 1u << 0,
    CONN_PENDING = 1u << 1,       /* on the set's pending list */
    CONN_WANT_WRITE = 1u << 2,    /* EPOLLOUT registered */
    CONN_INPUT_PENDING = 1u << 3, /* carry to process after resume */
    CONN_LINGER = 1u << 4,        /* draining input before close */
    CONN_EOF = 1u << 5,           /* peer sent FIN */
    CONN_SHUT_WR = 1u << 6,       /* our write side is shut down */
    CONN_SWITCHED = 1u << 7,      /* protocol changed during on_data */
    CONN_CONNECTING = 1u << 8,    /* outgoing connect in progress */
    CONN_HARD_LINGER = 1u << 9,   /* the linger deadline also cuts the flush */
    CONN_TLS = 1u << 10,          /* has a tls_conn (set->tls_by_fd) */
    CONN_HANDSHAKE = 1u << 11,    /* TLS handshake in progress */
    CONN_TLS_RW = 1u << 12,       /* a TLS read waits for writability */
    CONN_MESSAGE = 1u << 13,      /* cn_rd_deadline is a message's deadline */
    CONN_HS_HELD = 1u << 14,      /* TCP is up, the TLS handshake waits for
                                     conn_tls_begin() (on_tcp_connect) */
};

/* The per-loop set of connections: stats, the pending list, the fd
 * table used to walk every conn (shutdown, /debug/conns). */
#define CONN_MAX_PROTOS 64 /* (protocol, context) pairs per set */
#define CONN_MAX_SIZES 4   /* distinct conn sizes (pools) per set */

struct conn_set {
    struct loop *loop;
    struct loop_hook hook;
    struct conn *pending; /* singly linked via pending_next */
    struct conn **by_fd;
    /* TLS engines by fd, allocated with the first TLS conn: a side table
     * rather than a pointer in every conn, since most conns have none. */
    struct tls_conn **tls_by_fd;
    uint32_t by_fd_len;
    int fd_handler; /* this set's index in the loop's fd handlers */
    uint64_t next_id;
    struct conn_limits lim;
    struct conn_stats stats;
    struct pool pools[CONN_MAX_SIZES]; /* conns, by size */
    struct timer mem_timer;            /* polls the budget while paused */
    uint64_t hook_iter; /* iteration whose pending list was last done */
    /* Runs at the end of every iteration before output is flushed, and
     * again until the pass leaves nothing pending (pub/sub's fan-out). */
    void (*before_flush)(void *arg);
    void *before_flush_arg;
    /* Told of every close, before the fd is closed (the listeners'
     * per-address table, listen.c, which counts fds). NULL: nobody. */
    void (*on_fd_close)(void *arg, int fd);
    void *on_fd_close_arg;
    unsigned n_protos;
    struct {
        const struct conn_proto *proto;
        void *ctx;
    } protos[CONN_MAX_PROTOS];
    struct timer_wheel wheel; /* conns' deadlines; last: 33 KiB */
};

/* Sets up s on loop l (allocates the fd table, tag MEM_LOOP, sized to the
 * process's open-file limit) and registers its end-of-iteration hook.
 * Returns 0 or -ENOMEM. */
int conn_set_init(struct conn_set *s, struct loop *l,
                  const struct conn_limits *lim);
/* Frees the fd table and any conn still waiting to be freed. All conns
 * must be closed first (shutdown does that). */
void conn_set_fini(struct conn_set *s);
/* Work for before_flush was queued: if this iteration's end-of-iteration
 * pass has already run, the loop comes round again without blocking. */
void conn_set_want_flush(struct conn_set *s);
/* Calls fn for every open conn (not closing). fn may close c. */
void conn_set_each(struct conn_set *s, void (*fn)(struct conn *c, void *arg),
                   void *arg);

/* Takes ownership of fd (already non-blocking): allocates a conn with
 * ext_size bytes of zeroed protocol state, registers it with epoll for
 * reading, and arms a first read deadline (ms, reason). Returns the conn or
 * NULL (fd closed, nothing leaked; errors counted as out_of_memory). */
struct conn *conn_new(struct conn_set *s, int fd, const struct sockaddr *peer,
                      const struct conn_proto *proto, size_t ext_size,
                      uint32_t ms, enum close_reason reason);
/* conn_new() with a context for the protocol (conn_ctx()). */
struct conn *conn_new_ctx(struct conn_set *s, int fd,
                          const struct conn_proto *proto, void *ctx,
                          size_t ext_size, uint32_t ms,
                          enum close_reason reason);

/* Opens an outgoing TCP connection to addr (from source, if non-NULL,
 * bound with IP_BIND_ADDRESS_NO_PORT so the kernel picks the port per
 * destination): allocates a conn like conn_new() in state connecting,
 * and arms a deadline of ms with reason connect_timeout (the protocol
 * moves it on). proto->on_connect() reports the outcome; output queued
 * meanwhile goes out once connected. Returns the conn, or NULL with
 * *err = -errno when nothing was started (socket, bind or connect failed
 * at once). */
struct conn *conn_connect(struct conn_set *s, const struct sockaddr *addr,
                          socklen_t addrlen, const struct sockaddr *source,
                          socklen_t sourcelen, const struct conn_proto *proto,
                          void *ctx, size_t ext_size, uint32_t ms, int *err);

static inline void *conn_ext(struct conn *c)
{
    return c->cn_ext;
}
static inline const void *conn_ext_const(const struct conn *c)
{
    return c->cn_ext;
}
static inline struct conn_set *conn_set_of(const struct conn *c)
{
    return (struct conn_set *)pool_owner(c);
}
static inline const struct conn_proto *conn_proto(const struct conn *c)
{
    return conn_set_of(c)->protos[c->cn_proto].proto;
}
/* The context given with the protocol (conn_set_proto_ctx). */
static inline void *conn_ctx(const struct conn *c)
{
    return conn_set_of(c)->protos[c->cn_proto].ctx;
}
/* Tick at which the conn was created. */
static inline uint32_t conn_created(const struct conn *c)
{
    return c->cn_timer.data;
}
static inline bool conn_is_closing(const struct conn *c)
{
    return (c->cn_flags & CONN_CLOSING) != 0;
}
static inline struct loop *conn_loop(const struct conn *c)
{
    return conn_set_of(c)->loop;
}
/* The conn's number, unique in its set (for logs and listings). */
static inline unsigned long long conn_id(const struct conn *c)
{
    return c->cn_id;
}
/* The conn of set s on fd, if it is still the one numbered id and not
 * closing: how a reply that comes later (an auth callback) finds its
 * conn again without keeping a pointer that may have been freed. */
struct conn *conn_set_find(const struct conn_set *s, int fd,
                           unsigned long long id);
/* The conn's socket. */
static inline int conn_fd(const struct conn *c)
{
    return c->cn_fd;
}
/* The state last given to conn_set_state(). */
static inline enum conn_state conn_state_of(const struct conn *c)
{
    return (enum conn_state)c->cn_state;
}
/* The reason given with the read deadline (conn_set_read_deadline(), or
 * CLOSE_MESSAGE_TIMEOUT while a message deadline runs): what an
 * on_timeout callback looks at to tell its deadlines apart. */
static inline enum close_reason conn_read_reason(const struct conn *c)
{
    return (enum close_reason)c->cn_rd_reason;
}
/* Why the conn is closing (the first reason given), CLOSE_NONE while it
 * is open. */
static inline enum close_reason conn_close_reason(const struct conn *c)
{
    return (enum close_reason)c->cn_close_reason;
}
/* True while input is read and discarded before a close (the linger of
 * conn_close_after_flush()/conn_close_within()): the protocol sees no
 * more bytes and should queue nothing new. */
static inline bool conn_is_lingering(const struct conn *c)
{
    return (c->cn_flags & CONN_LINGER) != 0;
}
/* True while an outgoing conn (conn_connect) is still connecting. */
static inline bool conn_is_connecting(const struct conn *c)
{
    return (c->cn_flags & CONN_CONNECTING) != 0;
}
/* True while the conn's TLS handshake runs. */
static inline bool conn_in_handshake(const struct conn *c)
{
    return (c->cn_flags & CONN_HANDSHAKE) != 0;
}
/* Why reading is paused: enum pause_cause bits, 0 while reading. */
static inline unsigned conn_paused(const struct conn *c)
{
    return c->cn_pause;
}

/* THE close path (rule 1). Idempotent; the first reason counts. */
void conn_close(struct conn *c, enum close_reason why);
/* Closes with `why` once the outbound queue has been written. With
 * linger, input is read and discarded meanwhile and after the flush the
 * write side is shut down; the conn then closes when the peer closes or
 * after linger_ms (reason linger_timeout), whichever is first. */
void conn_close_after_flush(struct conn *c, enum close_reason why,
                            uint32_t linger_ms);
/* The same, but all of it (the flush and the wait for the peer) ends
 * within ms: then the conn is closed with `why` (for a slow consumer,
 * whose goodbye may never be read). */
void conn_close_within(struct conn *c, enum close_reason why, uint32_t ms);

/* Queues a reference to m (takes a new reference; the caller keeps its
 * own). Never copies the payload. Returns 0; -ENOBUFS if the queue would
 * pass its byte limit or hold more than conn_queue_max_entries() messages
 * (nothing queued; the caller applies its policy; a message alone on an
 * empty queue is always taken); -ENOMEM (the ring could not grow: nothing
 * queued, the queue as it was); or -EPIPE if the conn is closing. */
int conn_send(struct conn *c, struct msg *m);
/* conn_send() with flags. CONN_SEND_OVERCAP queues even past the byte
 * limit: for small control frames, and for 1:1 streams whose producer is
 * this conn's own input, which the caller then stops reading (rule 5:
 * the queue exceeds its limit by at most one message). */
#define CONN_SEND_OVERCAP 1u
int conn_send_flags(struct conn *c, struct msg *m, unsigned flags);
/* Copies p[0..n) into a new message and queues it. Same returns. */
int conn_send_bytes(struct conn *c, const void *p, size_t n);
/* For fan-out under a drop-oldest policy: drops the oldest queued
 * published messages (born_ns set) not yet started until need more bytes
 * (and two more messages: the one to send and a notice) fit under the
 * queue limits, or none is left to drop. A message partly written always
 * stays (the byte stream stays whole), and so does one a TLS record
 * already holds, and every other message (control frames, notices); the
 * rest keep their order. Returns how many published messages it dropped
 * (a batch counts for the messages it carries: msg.count). */
uint32_t conn_queue_drop_oldest(struct conn *c, uint32_t need);
/* Drops every queued message not yet started (before a goodbye frame to
 * a slow consumer), except those a TLS record already holds. Returns how
 * many. */
uint32_t conn_queue_purge(struct conn *c);
static inline uint32_t conn_queued_bytes(const struct conn *c)
{
    return c->cn_qbytes;
}
/* Messages queued. */
static inline uint32_t conn_queued_count(const struct conn *c)
{
    return c->cn_q ? c->cn_q->count : 0;
}
/* The most messages a queue under these limits takes without
 * CONN_SEND_OVERCAP. */
static inline uint32_t conn_queue_max_entries(const struct conn_limits *l)
{
    uint32_t n = l->queue_limit / CONN_QUEUE_ENTRY_BYTES;

    return n > CONN_QUEUE_MIN_ENTRIES ? n : CONN_QUEUE_MIN_ENTRIES;
}
/* True while the queue is past its limit, in bytes or in messages (only
 * CONN_SEND_OVERCAP takes it there): a 1:1 stream stops reading its
 * producer until this is false again. */
static inline bool conn_queue_over_limit(const struct conn *c)
{
    const struct conn_limits *l = &conn_set_of(c)->lim;

    return c->cn_qbytes > l->queue_limit ||
           conn_queued_count(c) > conn_queue_max_entries(l);
}

/* Sets the read deadline to ms from now, with the reason used if it
 * passes. ms == 0 clears it (only while a write deadline or another
 * deadline keeps the conn covered). O(1); no wheel work when later. */
void conn_set_read_deadline(struct conn *c, uint32_t ms,
                            enum close_reason reason);

/*
 * The message deadline (rule 2, for protocols with .messages set).
 * Once part of a message has arrived - a frame header, a fragment, half a
 * TLS record - the rest must arrive within the set's message_timeout_ms,
 * counted from that first part: trickling bytes, control frames and pongs
 * do not extend it. When it passes, on_timeout runs with rd_reason
 * CLOSE_MESSAGE_TIMEOUT: the protocol may send a last word (WebSocket
 * close 1008) and must not treat it as its own deadline; the conn closes
 * with that reason. It is armed only in place of a liveness deadline
 * (rd_reason CLOSE_IDLE_TIMEOUT or CLOSE_PONG_TIMEOUT: a heartbeat, a
 * ping); a deadline that ends a phase (header, close, drain) stands. While
 * armed it takes the read deadline's place; conn_set_read_deadline()
 * disarms it (an explicit deadline: a close, a drain). Time spent with
 * reading paused by us (PAUSE_RATE, PAUSE_MEMORY) is not the peer's: the
 * deadline starts over when such a pause ends, or if it passes during
 * one. A backpressure pause is the peer's doing (it does not read our
 * answers) and counts.
 *
 * The protocol calls conn_message_update() at the end of on_data with
 * partial = it holds part of a message (its parser is inside a frame or
 * a fragmented message, or it leaves bytes for the carry). A half TLS
 * record counts as partial too. Arms the deadline if partial and not
 * armed. Return value: true if a message deadline was armed and no part
 * of a message is held any more - the protocol then sets its own read
 * deadline again (its liveness or heartbeat deadline); false otherwise.
 */
bool conn_message_update(struct conn *c, bool partial);
static inline bool conn_in_message(const struct conn *c)
{
    return (c->cn_flags & CONN_MESSAGE) != 0;
}

/* Reading pause and resume by cause (EPOLLIN off while any cause). */
void conn_pause_read(struct conn *c, enum pause_cause cause);
void conn_resume_read(struct conn *c, enum pause_cause cause);

/* For protocols whose input turns into retained memory (publishers):
 * if the process is over its --memory-limit budget, pauses reading with
 * PAUSE_MEMORY and returns true; reading resumes by itself once live
 * bytes fall under the low-water mark. A peer that closes meanwhile is
 * closed (its unread input dropped). Plain request/response protocols do
 * not call it: admission control refuses new conns instead, and a conn
 * already accepted is always answered (rule 6). */
bool conn_pause_if_over_budget(struct conn *c);

/* Switches the conn to another protocol (an HTTP upgrade). Bytes left in
 * the current read after the upgrade request go to the new protocol in
 * the same call. The ext area must be big enough for the new state. */
void conn_set_proto(struct conn *c, const struct conn_proto *proto);
/* The same with a context pointer for the protocol (conn_ctx()): e.g. the
 * server and handlers of a WebSocket route. Each distinct pair takes a
 * slot of the set's table (CONN_MAX_PROTOS): returns 0 or -ENOSPC. */
int conn_set_proto_ctx(struct conn *c, const struct conn_proto *proto,
                       void *ctx);

/* Sets the state shown in metrics (keeps the per-state gauges right). */
void conn_set_state(struct conn *c, enum conn_state st);

/* ---- TLS ---- */
struct tls_ctx;
struct tls_conn;

/* Puts TLS under c: a server conn right after conn_new*() (server true,
 * host NULL), or an outgoing conn right after conn_connect() (server
 * false, host: the name to send as SNI and to check the certificate
 * against). The handshake runs before the protocol sees a byte; then
 * proto->on_connect(c, 0) tells it the conn is ready. A server conn's
 * read deadline becomes ms with reason handshake_timeout (ms == 0 keeps
 * the deadline it has: a client's connect_timeout covers connect and
 * handshake together). Reads and writes then go through the engine, and
 * close sends close_notify without waiting for the peer's. Returns 0, or
 * -ENOMEM / -EINVAL (the conn is left as it was; the caller closes it). */
int conn_start_tls(struct conn *c, struct tls_ctx *ctx, bool server,
                   const char *host, uint32_t ms);
/* Starts the handshake that on_tcp_connect held (returned false); does
 * nothing if c is not held. The conn may be closed when this returns. */
void conn_tls_begin(struct conn *c);
/* c's TLS engine, or NULL. */
struct tls_conn *conn_tls(const struct conn *c);
/* Why c's TLS failed ("certificate verify failed: ..."), "" if it did
 * not; valid until c is closed. */
const char *conn_tls_error(const struct conn *c);

/* Socket options, for a service that tunes or lists its conns without
 * touching the fd. TCP_USER_TIMEOUT: how long written bytes may stay
 * unacknowledged before the kernel gives up (0: the kernel's default). */
void conn_set_user_timeout(struct conn *c, uint32_t ms);
/* Reads the socket's TCP_INFO into ti[0..len) (a struct tcp_info; the
 * caller picks the header, <linux/tcp.h> having more fields than glibc's)
 * after zeroing it. Returns 0, or -errno. */
int conn_tcp_info(const struct conn *c, void *ti, size_t len);

/* Formats the peer address as "ip:port" into out (getpeername(): a
 * syscall, for logs and listings only; "unknown" once the peer is gone). */
const char *conn_peer_str(const struct conn *c, char *out, size_t len);

#endif
