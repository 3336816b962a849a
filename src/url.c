/*
 * url.c - absolute URLs split for a client (url.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url.h"
#include "util.h"

static const struct {
    const char *name;
    uint16_t port;
    bool tls;
} schemes[] = {
    {"http", 80, false},
    {"https", 443, true},
    {"ws", 80, false},
    {"wss", 443, true},
};

/* A DNS name's characters (letters, digits, '-', '.', and '_' seen in
 * service names), or an IPv4 literal's. */
static bool host_char(char c)
{
    return ascii_is_alnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

static bool v6_char(char c)
{
    return ascii_hex_value((unsigned char)c) >= 0 || c == ':' || c == '.';
}

const char *url_parse(const char *url, struct url *u)
{
    const char *p = url, *auth, *auth_end, *host, *host_end, *port_s = NULL;
    size_t i, hl, sl;

    memset(u, 0, sizeof(*u));
    sl = strcspn(p, ":/?#");
    if (p[sl] != ':' || strncmp(p + sl, "://", 3) != 0)
        return "URL must start with a scheme such as http://";
    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strlen(schemes[i].name) == sl &&
            !strncasecmp(p, schemes[i].name, sl))
            break;
    if (i == sizeof(schemes) / sizeof(schemes[0]))
        return "URL scheme must be http, https, ws or wss";
    memcpy(u->scheme, schemes[i].name, strlen(schemes[i].name) + 1);
    u->port = schemes[i].port;
    u->tls = schemes[i].tls;

    auth = p + sl + 3;
    auth_end = auth + strcspn(auth, "/?#");
    if (auth_end == auth)
        return "URL has no host";
    if (memchr(auth, '@', (size_t)(auth_end - auth)))
        return "URL user info (user@host) is not supported";
    host = auth;
    if (*auth == '[') {
        host_end = memchr(auth, ']', (size_t)(auth_end - auth));
        if (!host_end)
            return "URL has an unclosed [ in its host";
        host++;
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':')
                return "URL has junk after ]";
            port_s = host_end + 2;
        }
        u->ipv6 = true;
    } else {
        host_end = memchr(auth, ':', (size_t)(auth_end - auth));
        if (host_end)
            port_s = host_end + 1;
        else
            host_end = auth_end;
    }
    if (port_s) {
        char *end;
        unsigned long port;

        if (port_s == auth_end || *port_s < '0' || *port_s > '9')
            return "URL port is not a number";
        port = strtoul(port_s, &end, 10);
        if (end != auth_end || port == 0 || port > 65535)
            return "URL port must be 1-65535";
        u->port = (uint16_t)port;
    }
    hl = (size_t)(host_end - host);
    if (hl == 0 || hl > 253)
        return "URL host is empty or longer than 253 characters";
    for (i = 0; i < hl; i++) {
        if (u->ipv6 ? !v6_char(host[i]) : !host_char(host[i]))
            return "URL host has a character no host name or address has";
        u->host[i] = (char)ascii_lower((unsigned char)host[i]);
    }
    u->host[hl] = '\0';
    {
        bool dflt = u->port == (u->tls ? 443 : 80);
        char port[8] = "";

        if (!dflt)
            snprintf(port, sizeof(port), ":%u", (unsigned)u->port);
        snprintf(u->authority, sizeof(u->authority), "%s%s%s%s",
                 u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "", port);
    }

    /* The target: the path (or "/") and the query, without the fragment. */
    {
        const char *t = auth_end;
        size_t tl = strcspn(t, "#"), o = 0;

        if (*t != '/')
            u->target[o++] = '/';
        if (tl + o >= sizeof(u->target))
            return "URL path is too long";
        memcpy(u->target + o, t, tl);
        u->target[o + tl] = '\0';
        for (const char *q = u->target; *q; q++)
            if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
                return "URL path has a space, a control character or a "
                       "non-ASCII byte (percent-encode it)";
    }
    return NULL;
}
