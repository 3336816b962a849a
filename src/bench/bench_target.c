/*
 * bench_target.c - what `moor bench` checks before it opens anything: the
 * URLs (ws_url_parse; url_parse for http), the --sources addresses, the
 * open-files limit, the ephemeral ports each source address needs, and
 * the server's process (--pid, or the one listening on the URL's
 * address), and the client TLS context of wss:// URLs. bench_parse_url(),
 * bench_target_pid() and bench_tls_client() are shared with `moor soak`
 * (bench_target.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "bench_int.h"
#include "mem.h"
#include "procfs.h"
#include "tls.h"
#include "url.h"
#include "util.h"
#include "ws.h"

/* Connections per source address that "auto" plans for: well under the
 * default ephemeral range (28,232 ports). */
#define AUTO_PER_SOURCE 20000u
#define AUTO_MIN_SOURCES 16u

/* ws://HOST[:PORT][/PATH], the value of --flag. Returns 0 or -1 with
 * err set. */
int bench_parse_url(const char *flag, const char *url, struct target *t,
                    char *err, size_t errlen)
{
    struct ws_url u;
    const char *why = ws_url_parse(url, &u);

    memset(t, 0, sizeof(*t));
    if (why) {
        snprintf(err, errlen, "invalid --%s \"%.200s\": %s", flag, url, why);
        return -1;
    }
    memcpy(&t->addr, &u.addr, u.addrlen);
    t->addrlen = u.addrlen;
    t->tls = u.tls;
    snprintf(t->host, sizeof(t->host), "%s", u.host);
    snprintf(t->name, sizeof(t->name), "%s", u.name);
    if (strlen(u.path) >= sizeof(t->path)) {
        snprintf(err, errlen, "--%s %.200s: the path is too long", flag, url);
        return -1;
    }
    memcpy(t->path, u.path, strlen(u.path) + 1);
    if (u.addr.ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&u.addr;
        t->loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&u.addr;
        t->loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    }
    return 0;
}

/* http://HOST[:PORT][/PATH] or https://, the value of --url. Returns 0
 * or -1 with err set. */
int bench_check_http_url(const char *url, char *err, size_t errlen)
{
    struct url *u = mem_alloc(MEM_MISC, sizeof(*u));
    const char *why;

    if (!u) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    why = url_parse(url, u);
    if (!why && strcmp(u->scheme, "http") && strcmp(u->scheme, "https"))
        why = "http mode takes http:// or https:// URLs";
    mem_free(MEM_MISC, u);
    if (why) {
        snprintf(err, errlen, "invalid --url \"%.200s\": %s", url, why);
        return -1;
    }
    return 0;
}

static int add_source(struct bench *b, uint32_t cap, int family,
                      const char *text)
{
    struct sockaddr_storage *s;

    if (b->nsrc == cap)
        return -1;
    s = &b->src[b->nsrc];
    memset(s, 0, sizeof(*s));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)s;

        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &a->sin_addr) != 1)
            return -1;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)s;

        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1)
            return -1;
    }
    b->nsrc++;
    return 0;
}

/* Fills b->src from --sources. Returns 0 or -1 with err set. */
int bench_parse_sources(struct bench *b, char *err, size_t errlen)
{
    const char *s = b->o.sources;
    int family = b->t.addr.ss_family;
    uint32_t cap = 0;
    char one[64];

    if (!strcmp(s, "none"))
        return 0;
    if (!strcmp(s, "auto")) {
        uint32_t n;

        if (family != AF_INET || !b->t.loopback)
            return 0;
        n = MAX(AUTO_MIN_SOURCES,
                (b->o.conns + AUTO_PER_SOURCE - 1) / AUTO_PER_SOURCE);
        n = MIN(n, 253u); /* 127.0.0.2 .. 127.0.0.254 */
        snprintf(one, sizeof(one), "127.0.0.2-127.0.0.%u", 1 + n);
        s = one;
        snprintf(b->o.sources, sizeof(b->o.sources), "%s", one);
    }
    if (strchr(s, '-')) {
        struct in_addr lo, hi;
        char a[32];
        size_t alen = strcspn(s, "-");

        if (family != AF_INET || alen >= sizeof(a))
            goto bad;
        memcpy(a, s, alen);
        a[alen] = '\0';
        if (inet_pton(AF_INET, a, &lo) != 1 ||
            inet_pton(AF_INET, s + alen + 1, &hi) != 1 ||
            ntohl(hi.s_addr) < ntohl(lo.s_addr) ||
            ntohl(hi.s_addr) - ntohl(lo.s_addr) >= 65536)
            goto bad;
        cap = ntohl(hi.s_addr) - ntohl(lo.s_addr) + 1;
        b->src = mem_calloc(MEM_MISC, cap, sizeof(*b->src));
        if (!b->src)
            goto nomem;
        for (uint32_t i = 0; i < cap; i++) {
            struct in_addr x = {.s_addr = htonl(ntohl(lo.s_addr) + i)};

            inet_ntop(AF_INET, &x, one, sizeof(one));
            add_source(b, cap, AF_INET, one);
        }
        return 0;
    }
    cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    b->src = mem_calloc(MEM_MISC, cap, sizeof(*b->src));
    if (!b->src)
        goto nomem;
    while (*s) {
        size_t n = strcspn(s, ",");

        if (n == 0 || n >= sizeof(one))
            goto bad;
        memcpy(one, s, n);
        one[n] = '\0';
        if (add_source(b, cap, family, one) < 0)
            goto bad;
        s += n + (s[n] == ',');
    }
    return 0;

bad:
    snprintf(err, errlen,
             "invalid --sources \"%s\": expected a range like "
             "127.0.0.2-127.0.0.50, a comma-separated list of %s addresses, "
             "none or auto",
             b->o.sources, family == AF_INET ? "IPv4" : "IPv6");
    return -1;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- limits that would stop the run before it starts ------------------- */

/* Raises the open-files soft limit to the hard limit (and the hard limit
 * too when allowed, i.e. as root). Returns 0, or -1 with err set when
 * need fds cannot be had. */
int bench_raise_nofile(uint64_t need, char *err, size_t errlen)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = {.rlim_cur = need, .rlim_max = need};

        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return 0;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        snprintf(err, errlen,
                 "cannot open that many connections: they need %" PRIu64
                 " file descriptors, and the open-files limit "
                 "(RLIMIT_NOFILE) is %llu, its hard limit %llu; raise it "
                 "(ulimit -Hn as root, or limits.conf) or ask for fewer "
                 "than %llu connections",
                 need, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max,
                 (unsigned long long)(rl.rlim_cur > FD_RESERVE
                                          ? rl.rlim_cur - FD_RESERVE
                                          : 0));
        return -1;
    }
    return 0;
}

/* Checks that each source address has enough ephemeral ports for its
 * share of the connections. Returns 0 or -1 with err set. */
int bench_check_ports(const struct bench *b, char *err, size_t errlen)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    unsigned lo = 0, hi = 0;
    uint32_t per, nsrc = b->nsrc ? b->nsrc : 1;

    if (!f)
        return 0;
    if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo) {
        fclose(f);
        return 0;
    }
    fclose(f);
    per = (b->o.conns + nsrc - 1) / nsrc;
    if (per <= hi - lo + 1)
        return 0;
    snprintf(err, errlen,
             "%" PRIu32 " connections from %s need %" PRIu32 " ports per "
             "source address, but the ephemeral port range %u-%u has %u: "
             "spread them over more addresses with --sources (e.g. "
             "127.0.0.2-127.0.0.%u)",
             b->o.conns, b->nsrc ? "these source addresses" : "one address",
             per, lo, hi, hi - lo + 1,
             MIN(254u, 2u + b->o.conns / (hi - lo + 1)));
    return -1;
}

/* The server's process (bench_target.h). */
int bench_target_pid(const struct target *t, uint32_t want, bool required,
                     pid_t *pid, char *err, size_t errlen)
{
    struct procfs_mem m;
    pid_t pids[8];
    size_t found = 0;
    const char *addr = t->host;
    int rc;

    *pid = 0;
    if (want) {
        rc = procfs_mem((pid_t)want, &m);
        if (rc < 0) {
            snprintf(err, errlen,
                     "cannot read the memory of --pid %d from "
                     "/proc/%d/status: %s",
                     (int)want, (int)want, strerror(-rc));
            return -1;
        }
        *pid = (pid_t)want;
        return 0;
    }
    rc = procfs_listener_pid((const struct sockaddr *)&t->addr, pids,
                             ARRAY_SIZE(pids), &found);
    if (rc > 0) {
        *pid = rc;
        return 0;
    }
    if (!required)
        return 0; /* optional: the report goes without */
    if (rc == -EEXIST) {
        char list[96] = "";
        size_t n = 0;

        for (size_t i = 0; i < MIN(found, ARRAY_SIZE(pids)); i++)
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d",
                                  i ? ", " : "", (int)pids[i]);
        snprintf(err, errlen,
                 "%zu processes hold the socket listening on "
                 "%s (%s%s): say which to measure with --pid",
                 found, addr, list, found > ARRAY_SIZE(pids) ? ", ..." : "");
        return -1;
    }
    snprintf(err, errlen,
             "no process of ours listens on %s (is the server "
             "running, on this machine, in this network namespace?); "
             "give the server's process with --pid",
             addr);
    return -1;
}

/* Finds the server's pid for a mode that measures memory. Returns 0 or
 * -1 with err set. */
int bench_find_pid(struct bench *b, char *err, size_t errlen)
{
    return bench_target_pid(&b->t, b->o.pid, b->mode->needs_pid, &b->pid, err,
                            errlen);
}

/* bench_target.h. */
struct tls_ctx *bench_tls_client(const char *ca_file, bool insecure, char *err,
                                 size_t errlen)
{
    struct tls_client_opts to = {
        .ca_file = ca_file && ca_file[0] ? ca_file : NULL,
        .insecure = insecure,
    };
    char terr[256];
    struct tls_ctx *ctx = tls_client_new(&to, terr, sizeof(terr));

    if (!ctx)
        snprintf(err, errlen, "TLS: %s", terr);
    return ctx;
}
