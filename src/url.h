/*
 * url.h - splitting an absolute URL (RFC 3986) into what a client needs:
 * the scheme, the host (for name resolution, SNI and the certificate
 * check), the port, the Host header's text and the request target.
 *
 * Pure code: no lookups, no allocation.
 */
#ifndef MOOR_URL_H
#define MOOR_URL_H

#include <stdbool.h>
#include <stdint.h>

#define URL_HOST_MAX 256    /* a DNS name is at most 253 */
#define URL_TARGET_MAX 8192 /* request target, path and query */

struct url {
    char scheme[8];          /* lower case: "http", "https", "ws" ... */
    char host[URL_HOST_MAX]; /* no brackets, no port; lower case */
    char authority[URL_HOST_MAX + 16]; /* host[:port] as for a Host header: the
                                     port only when not the default */
    char target[URL_TARGET_MAX];       /* "/path?query", "/" if none */
    uint16_t port;
    bool tls;  /* https, wss */
    bool ipv6; /* host is an IPv6 literal */
};

/* Splits url. Schemes: http and ws (port 80), https and wss (443).
 * Refused, with a static message saying why: other schemes, user info
 * ("user@"), an empty or over-long host, a host with characters a DNS
 * name or an IP literal cannot have, a bad port, a target with a space or
 * a control character. A fragment ("#...") is dropped. Returns NULL or
 * the message. */
const char *url_parse(const char *url, struct url *u);

#endif
