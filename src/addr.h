/*
 * addr.h - the one parser of "host:port" addresses: the flags of `moor
 * serve` (--listen, --tcp-listen, --tls-listen) and the public API's
 * listen addresses go through it, so they accept the same spellings.
 *
 *   host:port     a name or an IPv4 address ("127.0.0.1:8080")
 *   [v6]:port     an IPv6 address in brackets ("[::1]:8080"), which lose
 *                 their brackets in host
 *   :port         every IPv4 interface: host is "0.0.0.0" (as in Go's
 *                 net.Listen); "[::]:port" asks for IPv6 too
 *
 * The port is 0 to 65535 (0: any free port). A bare IPv6 address
 * ("::1:80") is refused: its last colon could be part of the address.
 * Pure: no allocation, no syscall, no global state.
 */
#ifndef MOOR_ADDR_H
#define MOOR_ADDR_H

#include <stddef.h>
#include <stdint.h>

/* Splits s into host (NUL-terminated, at most hostlen bytes with the
 * NUL) and *port. Returns 0, or -EINVAL when s is not an address of the
 * forms above, its port is over 65535, or its host does not fit hostlen
 * (host and *port are then unspecified). */
int addr_parse(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Writes to why (why_len bytes) what a person should be told about an
 * s that addr_parse() refused, starting "expected" or naming the fix:
 * for a bare IPv6 address "::1:80" it says to write "[::1]:80". */
void addr_explain(const char *s, char *why, size_t why_len);

#endif
