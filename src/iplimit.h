/*
 * iplimit.h - per-address admission: open connections and new
 * connections per second from one client address (issue 16).
 *
 * An address is an IPv4 address, or an IPv6 address's /64 prefix (one
 * host of IPv6 usually holds a whole /64, so counting single addresses
 * would limit nothing); an IPv4-mapped IPv6 address (::ffff:a.b.c.d, what
 * a dual-stack socket reports) counts as the IPv4 address.
 *
 * Each address has an entry: its open connections and a token bucket of
 * new connections (ratelimit.h). An entry lives while the address has open
 * connections or its bucket is not full again; after that it is forgotten
 * (freed), so an address seen once costs nothing a few seconds later.
 *
 * The table is bounded by table_size entries. When it is full, a new
 * address takes the place of the address idle the longest (no open
 * connection; it loses what is left of its bucket, which only helps it).
 * If every entry has open connections, the new address is refused
 * (IPLIMIT_TABLE_FULL): a flood of addresses cannot grow memory, and the
 * addresses already connected keep working.
 *
 * Finding an address is a hash lookup (seeded per table, so a peer cannot
 * pick addresses that collide); nothing walks the whole table. A closed
 * connection is found by its fd (slots by fd, in pages of 256 fds), not
 * by asking the kernel for the peer again: after a reset getpeername()
 * fails.
 *
 * Memory: everything under MEM_AUTH, and it comes back after a burst:
 * entries are allocated one by one and freed when forgotten, a page of
 * fd slots goes with its last fd, the hash heads shrink with the table.
 * What stays is the struct and the page directory (8 bytes per 256 fds
 * up to the highest fd seen).
 */
#ifndef MOOR_IPLIMIT_H
#define MOOR_IPLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct iplimit_opts {
    uint32_t max_conns;  /* open connections per address; 0 = no limit */
    uint32_t rate;       /* new connections per second; 0 = no limit */
    uint32_t burst;      /* bucket size; 0 = rate */
    uint32_t table_size; /* addresses tracked at most (>= 1) */
};

enum iplimit_verdict {
    IPLIMIT_OK = 0,
    IPLIMIT_CONNS,      /* the address has max_conns open */
    IPLIMIT_RATE,       /* the address's bucket is empty */
    IPLIMIT_TABLE_FULL, /* a new address and no entry to spare */
    IPLIMIT_NO_MEMORY,  /* an allocation failed */
};

struct iplimit;

/* A new table (nothing allocated but the struct), or NULL. now is the
 * loop's tick. */
struct iplimit *iplimit_new(const struct iplimit_opts *o, uint32_t now);
/* Frees the table and every entry (open connections are forgotten). */
void iplimit_free(struct iplimit *t);

/* A connection on fd from peer asks to be admitted. IPLIMIT_OK: it is
 * counted under fd until iplimit_release(fd). Any other verdict: nothing
 * is counted. A peer that is neither IPv4 nor IPv6 (a Unix socket) is
 * admitted and not counted. */
enum iplimit_verdict iplimit_admit(struct iplimit *t, int fd,
                                   const struct sockaddr *peer, uint32_t now);
/* The connection on fd closed: its address has one fewer open. A no-op
 * for an fd not counted (so it can be called for every close). */
void iplimit_release(struct iplimit *t, int fd, uint32_t now);

/* Addresses in the table (the gauge moor_ip_table_entries). */
uint32_t iplimit_entries(const struct iplimit *t);
/* Open connections counted for peer's address (0 if it has no entry). */
uint32_t iplimit_conns_of(const struct iplimit *t, const struct sockaddr *peer);
/* True if fd is counted. */
bool iplimit_counted(const struct iplimit *t, int fd);

#endif
