/*
 * addr.c - "host:port", "[v6]:port" and ":port" (see addr.h).
 *
 * Invariants. A string is accepted whole or not at all: the port is
 * digits only (no sign, no space, no trailing junk); the host has no
 * space or control character and, outside brackets, no ':' or ']'.
 */
#include "addr.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ":port" listens on every IPv4 interface. */
#define ADDR_ANY "0.0.0.0"

/* Parses the digits-only port p. Returns 0 or -EINVAL. */
static int parse_port(const char *p, uint16_t *port)
{
    uint32_t n = 0;
    size_t i;

    for (i = 0; p[i] >= '0' && p[i] <= '9'; i++) {
        n = n * 10 + (uint32_t)(p[i] - '0');
        if (n > 65535)
            return -EINVAL;
    }
    if (i == 0 || p[i] != '\0')
        return -EINVAL;
    *port = (uint16_t)n;
    return 0;
}

int addr_parse(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *h, *colon;
    size_t hlen;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        if (hlen == 0 || memchr(h, '[', hlen))
            return -EINVAL;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
        /* A bare IPv6 address would be ambiguous: "::1:80". */
        if (memchr(h, ':', hlen) || memchr(h, ']', hlen))
            return -EINVAL;
    }
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f)
            return -EINVAL;
    if (parse_port(colon + 1, port) < 0)
        return -EINVAL;
    if (hlen == 0) {
        h = ADDR_ANY;
        hlen = strlen(h);
    }
    if (hlen >= hostlen)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

/* True if s looks like an IPv6 address with a port and no brackets:
 * two colons or more, no '[', hex digits, '.', '%' and letters only. */
static bool bare_v6(const char *s)
{
    const char *first = strchr(s, ':');

    if (s[0] == '[' || !first || !strchr(first + 1, ':'))
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '[' || *s == ']')
            return false;
    return true;
}

void addr_explain(const char *s, char *why, size_t why_len)
{
    const char *colon = strrchr(s, ':');

    if (!bare_v6(s)) {
        snprintf(why, why_len,
                 "expected host:port, [v6]:port or :port, with a port from 0 "
                 "to 65535");
    } else if (colon[1] && colon[-1] != ':') {
        /* "::1:80": the same address back, bracketed. */
        snprintf(why, why_len,
                 "an IPv6 address goes in brackets: write [%.*s]:%.8s",
                 (int)(colon - s > 64 ? 64 : colon - s), s, colon + 1);
    } else {
        /* "::1", "fe80::1": an address without a port. */
        snprintf(why, why_len,
                 "an IPv6 address goes in brackets, then its port: "
                 "[::1]:80");
    }
}
