/*
 * listen.h - listening sockets: accept, admission, and refusing cleanly.
 *
 * Admission (docs/principles.md, rule 6): a new connection over
 * --max-conns or while the process is over its memory budget is accepted
 * only to be told "503" and closed at once: never accepted and then
 * starved. The accept rate is a token bucket (--accept-rate,
 * --accept-burst): when it is empty the listener stops watching for
 * connections and a timer resumes it, so a reconnect storm waits in the
 * kernel's backlog instead of costing us.
 *
 * EMFILE/ENFILE (out of file descriptors): the listener keeps one reserve
 * fd open (libuv's trick). When accept fails for lack of fds, it closes
 * the reserve, accepts and closes the waiting connections (counted as
 * refused{reason="fd_limit"}), reopens the reserve and stops accepting for
 * a short while. No busy loop; serving continues; accepting resumes by
 * itself when fds free up.
 *
 * Per address (iplimit.h): with max_conns_per_ip or rate_per_ip set, a
 * connection from an address that has max_conns_per_ip open, or that
 * opened rate_per_ip a second (burst_per_ip at once), is refused like one
 * over max_conns: 503 and close, or only close on a raw listener. The
 * table of addresses belongs to the conn set: every listener on one set
 * shares it (the first one's per-address options make it), so an address
 * is counted over --listen, --tls-listen and --tcp-listen together. It
 * learns of closes through the set's on_fd_close hook and is freed with
 * the last listener that uses it. A connection is counted only while the
 * accept callback has made it a conn of the set.
 */
#ifndef MOOR_LISTEN_H
#define MOOR_LISTEN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "conn.h"
#include "iplimit.h"
#include "loop.h"
#include "ratelimit.h"
#include "timer.h"

enum refuse_reason {
    REFUSE_MAX_CONNS = 0, /* max_conns */
    REFUSE_MEMORY,        /* memory */
    REFUSE_FD_LIMIT,      /* fd_limit */
    REFUSE_PER_IP_CONNS,  /* per_ip_conns: the address has its max open */
    REFUSE_PER_IP_RATE,   /* per_ip_rate: the address connects too fast */
    REFUSE_IP_TABLE_FULL, /* ip_table_full: no room for a new address */
    REFUSE_REASON_COUNT
};
const char *refuse_reason_name(enum refuse_reason r);

enum accept_pause {
    ACCEPT_PAUSE_RATE = 0, /* rate */
    ACCEPT_PAUSE_FD_LIMIT, /* fd_limit */
    ACCEPT_PAUSE_COUNT
};
const char *accept_pause_name(enum accept_pause p);

struct listen_stats {
    uint64_t refused[REFUSE_REASON_COUNT];
    uint64_t paused[ACCEPT_PAUSE_COUNT];
};

struct listen_opts {
    uint32_t max_conns;
    uint32_t accept_rate; /* per second, 0 = unlimited */
    uint32_t accept_burst;
    /* Per client address (IPv6: per /64); 0 = no limit. With both 0 no
     * table is kept. */
    uint32_t max_conns_per_ip;
    uint32_t rate_per_ip; /* new connections per second */
    uint32_t burst_per_ip;
    uint32_t ip_table_size; /* addresses tracked at most (0 = 1) */
    int backlog;            /* 0 = SOMAXCONN */
    /* Not HTTP (length-prefixed frames): a refusal closes without a 503,
     * which such a client would only misread as a frame. */
    bool raw;
    /* SO_REUSEPORT: several listeners (one per loop) share the port and
     * the kernel spreads connections over them. Off, a port another
     * socket holds is -EADDRINUSE, as a second `moor serve` on one port
     * or a library server on a taken one must be told. */
    bool reuse_port;
};

struct listener;
/* Hands over an accepted, non-blocking fd (ownership moves to fn). */
typedef void listen_accept_fn(struct listener *ls, int fd,
                              const struct sockaddr *peer, void *arg);

/* Binds host:port (IPv4 or IPv6 literal, or a name resolved once at
 * start-up) on loop l, counting open conns in set for max-conns. Returns
 * a new listener (caller frees with listener_free()) or NULL with *err =
 * -errno (-EADDRINUSE, -EACCES, -EADDRNOTAVAIL, -EINVAL for a bad host). */
struct listener *listener_new(struct loop *l, struct conn_set *set,
                              const char *host, uint16_t port,
                              const struct listen_opts *opts,
                              listen_accept_fn *fn, void *arg, int *err);
/* Stops accepting and closes the socket (idempotent). */
void listener_stop(struct listener *ls);
/* SIGHUP (moor serve --config): new --max-conns, --accept-rate and
 * --accept-burst; the next accept is held to them (the rate's tokens
 * start full again). */
void listener_set_admission(struct listener *ls, uint32_t max_conns,
                            uint32_t accept_rate, uint32_t accept_burst);

void listener_free(struct listener *ls);
/* The bound port (useful with port 0). */
uint16_t listener_port(const struct listener *ls);
const struct listen_stats *listener_stats(const struct listener *ls);
/* The per-address table (shared by the set's listeners), or NULL. */
const struct iplimit *listener_iplimit(const struct listener *ls);

#endif
