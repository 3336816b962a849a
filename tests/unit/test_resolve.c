/*
 * test_resolve.c - unit tests for resolve.c: literals and localhost
 * answered at once; bad names refused; and, against a fake DNS server
 * (a UDP socket on 127.0.0.1 served by the same loop), answers and their
 * order, the cache (a hit within the TTL, a miss after it, on the real
 * clock and on an advanced one; max_ttl_s caps; TTL 0 is not kept; the
 * LRU bound), negative caching, server failure, a lookup c-ares ends
 * inside ares_getaddrinfo(), the request's own deadline (not c-ares'
 * retry timeout), c-ares' own retry after a lost datagram, a late answer
 * still cached, two requests joining one lookup, cancel, a callback that
 * frees the resolver or starts another request, the pending bound, two
 * resolvers sharing c-ares' process-wide allocator, every allocation
 * failing in turn, and the dns tag back to zero after every
 * resolver_free() (teardown checks it after each test).
 *
 * The loop is driven with loop_run_once() in loops bounded by wall time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "loop.h"
#include "mem.h"
#include "resolve.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define RUN_UNTIL(l, cond, max_ms)                                             \
    do {                                                                       \
        uint64_t dl_ = now_ms() + (max_ms);                                    \
        while (!(cond) && now_ms() < dl_)                                      \
            assert_int_equal(loop_run_once((l), 5), 0);                        \
    } while (0)

static void run_for(struct loop *l, uint64_t ms)
{
    uint64_t dl = now_ms() + ms;

    while (now_ms() < dl)
        assert_int_equal(loop_run_once(l, 5), 0);
}

/* ---- the fake DNS server ------------------------------------------------ */

enum fake_mode {
    FAKE_ANSWER,   /* the addresses configured (none: NOERROR, no data) */
    FAKE_NXDOMAIN, /* rcode 3 */
    FAKE_SERVFAIL, /* rcode 2 */
    FAKE_SILENT,   /* never answers */
    FAKE_HOLD,     /* keeps the query; fake_release() answers it later */
    FAKE_DROP1,    /* drops the first query of each type, answers retries */
};

struct fake_name {
    char name[64];
    enum fake_mode mode;
    uint32_t ttl;
    int n4, n6;
    uint8_t v4[12][4];
    uint8_t v6[12][16];
    int qa, qaaaa; /* queries seen */
};

struct held {
    uint8_t pkt[512];
    size_t len;
    struct sockaddr_in from;
};

struct fake_dns {
    struct watcher w;
    int fd;
    uint16_t port;
    char servers[32];
    struct fake_name names[16];
    int nnames;
    int queries;
    struct held held[8];
    int nheld;
};

static struct fake_name *fake_add(struct fake_dns *d, const char *name,
                                  enum fake_mode mode, uint32_t ttl)
{
    struct fake_name *f;

    assert_true(d->nnames < (int)ARRAY_SIZE(d->names));
    f = &d->names[d->nnames++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->mode = mode;
    f->ttl = ttl;
    return f;
}

static void fake_v4(struct fake_name *f, const char *ip)
{
    assert_int_equal(inet_pton(AF_INET, ip, f->v4[f->n4++]), 1);
}

static void fake_v6(struct fake_name *f, const char *ip)
{
    assert_int_equal(inet_pton(AF_INET6, ip, f->v6[f->n6++]), 1);
}

static struct fake_name *fake_find(struct fake_dns *d, const char *name)
{
    int i;

    for (i = 0; i < d->nnames; i++)
        if (!strcasecmp(d->names[i].name, name))
            return &d->names[i];
    return NULL;
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Parses the question; returns the offset after it, or 0. */
static size_t parse_question(const uint8_t *q, size_t len, char *name,
                             unsigned *qtype)
{
    size_t off = 12, nl = 0;

    if (len < 12)
        return 0;
    while (off < len && q[off]) {
        unsigned l = q[off++];

        if (l > 63 || off + l > len || nl + l + 2 > 255)
            return 0;
        if (nl)
            name[nl++] = '.';
        memcpy(name + nl, q + off, l);
        nl += l;
        off += l;
    }
    name[nl] = '\0';
    if (off + 5 > len)
        return 0;
    off++;
    *qtype = (unsigned)q[off] << 8 | q[off + 1];
    return off + 4;
}

static void fake_answer(struct fake_dns *d, const uint8_t *q, size_t len,
                        const struct sockaddr_in *from, bool release)
{
    uint8_t out[1024];
    char name[256];
    unsigned qtype, rcode = 0, an = 0;
    size_t qend = parse_question(q, len, name, &qtype), o;
    struct fake_name *f;
    int i;

    if (!qend)
        return;
    f = fake_find(d, name);
    if (f && !release) {
        if (qtype == 1)
            f->qa++;
        else if (qtype == 28)
            f->qaaaa++;
    }
    if (!f || f->mode == FAKE_NXDOMAIN)
        rcode = 3;
    else if (f->mode == FAKE_SERVFAIL)
        rcode = 2;
    else if (f->mode == FAKE_SILENT)
        return;
    else if (f->mode == FAKE_DROP1 && (qtype == 1 ? f->qa : f->qaaaa) == 1)
        return;
    else if (f->mode == FAKE_HOLD && !release) {
        assert_true(d->nheld < (int)ARRAY_SIZE(d->held));
        memcpy(d->held[d->nheld].pkt, q, len);
        d->held[d->nheld].len = len;
        d->held[d->nheld].from = *from;
        d->nheld++;
        return;
    }
    memcpy(out, q, qend);
    out[2] = (uint8_t)(0x80 | (q[2] & 0x01)); /* QR, RD copied */
    out[3] = (uint8_t)(0x80 | rcode);         /* RA */
    put16(out + 4, 1);
    put16(out + 8, 0);
    put16(out + 10, 0);
    o = qend;
    if (rcode == 0) {
        int n = qtype == 1 ? f->n4 : qtype == 28 ? f->n6 : 0;
        unsigned alen = qtype == 1 ? 4 : 16;

        for (i = 0; i < n; i++) {
            put16(out + o, 0xc00c);
            put16(out + o + 2, qtype);
            put16(out + o + 4, 1);
            out[o + 6] = (uint8_t)(f->ttl >> 24);
            out[o + 7] = (uint8_t)(f->ttl >> 16);
            out[o + 8] = (uint8_t)(f->ttl >> 8);
            out[o + 9] = (uint8_t)f->ttl;
            put16(out + o + 10, alen);
            memcpy(out + o + 12, qtype == 1 ? f->v4[i] : f->v6[i], alen);
            o += 12 + alen;
            an++;
        }
    }
    put16(out + 6, an);
    assert_int_equal(
        sendto(d->fd, out, o, 0, (const struct sockaddr *)from, sizeof(*from)),
        (ssize_t)o);
}

static void on_fake(struct watcher *w, uint32_t events)
{
    struct fake_dns *d = container_of(w, struct fake_dns, w);
    uint8_t q[512];
    struct sockaddr_in from;
    socklen_t fl;
    ssize_t n;

    (void)events;
    for (;;) {
        fl = sizeof(from);
        n = recvfrom(d->fd, q, sizeof(q), MSG_DONTWAIT,
                     (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        d->queries++;
        fake_answer(d, q, (size_t)n, &from, false);
    }
}

static void fake_release(struct fake_dns *d)
{
    int i;

    for (i = 0; i < d->nheld; i++)
        fake_answer(d, d->held[i].pkt, d->held[i].len, &d->held[i].from, true);
    d->nheld = 0;
}

static void fake_start(struct fake_dns *d, struct loop *l)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);

    memset(d, 0, sizeof(*d));
    d->w.fn = on_fake;
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(d->fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(d->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(d->fd, (struct sockaddr *)&a, &al), 0);
    d->port = ntohs(a.sin_port);
    snprintf(d->servers, sizeof(d->servers), "127.0.0.1:%u", d->port);
    assert_int_equal(loop_watch(l, d->fd, &d->w, EPOLLIN), 0);
}

/* ---- the environment ---------------------------------------------------- */

struct result {
    int calls;
    int err;
    size_t n;
    struct sockaddr_storage a[RESOLVE_MAX_ADDRS];
    uint64_t at; /* now_ms() of the last call */
    /* optional actions inside the callback */
    struct resolver **free_me; /* frees *free_me, sets it NULL */
    struct resolver *start_on;
    const char *start_name;
    int start_rc;
    size_t start_n;
};

static void on_result(void *arg, int err, const struct sockaddr_storage *addrs,
                      size_t n)
{
    struct result *res = arg;

    res->calls++;
    res->err = err;
    res->n = n;
    res->at = now_ms();
    if (err)
        assert_int_equal(n, 0);
    else
        assert_true(n >= 1 && addrs != NULL);
    if (n)
        memcpy(res->a, addrs, n * sizeof(*addrs));
    if (res->start_on) {
        struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
        struct resolve_query *q;

        res->start_n = RESOLVE_MAX_ADDRS;
        res->start_rc = resolve_start(res->start_on, res->start_name, 1, 1000,
                                      on_result, res, out, &res->start_n, &q);
    }
    if (res->free_me && *res->free_me) {
        resolver_free(*res->free_me);
        *res->free_me = NULL;
    }
}

struct env {
    struct loop *l;
    struct fake_dns dns;
    struct resolver *r;        /* setup's; NULL once a test freed it */
    struct resolver *extra[4]; /* env_resolver()'s, freed by teardown */
};

static struct env env_storage;

static struct resolver *new_resolver(struct env *e, uint32_t entries,
                                     uint32_t max_ttl, uint32_t neg_ttl)
{
    struct resolver_opts o = {entries, max_ttl, neg_ttl, e->dns.servers};
    int err = 1;
    struct resolver *r = resolver_new(e->l, &o, &err);

    assert_non_null(r);
    return r;
}

/* Another resolver, which teardown frees if the test does not (a failed
 * assertion must not leave it to poison the next test's dns tag). */
static struct resolver *env_resolver(struct env *e, uint32_t entries,
                                     uint32_t max_ttl, uint32_t neg_ttl)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(e->extra); i++) {
        if (!e->extra[i]) {
            e->extra[i] = new_resolver(e, entries, max_ttl, neg_ttl);
            return e->extra[i];
        }
    }
    fail_msg("too many resolvers");
    return NULL;
}

static void env_free(struct env *e, struct resolver *r)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(e->extra); i++)
        if (e->extra[i] == r)
            e->extra[i] = NULL;
    if (e->r == r)
        e->r = NULL;
    resolver_free(r);
}

static int setup(void **state)
{
    struct env *e = &env_storage;

    memset(e, 0, sizeof(*e));
    mem_fail_at(0);
    e->l = loop_new(4096);
    assert_non_null(e->l);
    fake_start(&e->dns, e->l);
    e->r = new_resolver(e, 16, 3600, 5);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    size_t i;

    mem_fail_at(0);
    resolver_free(e->r);
    for (i = 0; i < ARRAY_SIZE(e->extra); i++)
        resolver_free(e->extra[i]);
    loop_unwatch(e->l, e->dns.fd);
    close(e->dns.fd);
    loop_free(e->l);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);
    return 0;
}

/* Starts a request; returns resolve_start's result, *n the count. */
static int start(struct resolver *r, const char *name, uint16_t port,
                 uint32_t timeout_ms, struct result *res,
                 struct sockaddr_storage *out, size_t *n,
                 struct resolve_query **q)
{
    struct resolve_query *dummy;

    return resolve_start(r, name, port, timeout_ms, on_result, res, out, n,
                         q ? q : &dummy);
}

static void assert_v4(const struct sockaddr_storage *ss, const char *ip,
                      uint16_t port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char b[INET_ADDRSTRLEN];

    assert_int_equal(s->sin_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &s->sin_addr, b, sizeof(b)));
    assert_string_equal(b, ip);
    assert_int_equal(ntohs(s->sin_port), port);
}

static void assert_v6(const struct sockaddr_storage *ss, const char *ip,
                      uint16_t port)
{
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    char b[INET6_ADDRSTRLEN];

    assert_int_equal(s->sin6_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, b, sizeof(b)));
    assert_string_equal(b, ip);
    assert_int_equal(ntohs(s->sin6_port), port);
}

static struct resolver_stats stats(struct resolver *r)
{
    struct resolver_stats st;

    resolver_stats(r, &st);
    return st;
}

/* Resolves name through the fake server and waits for the callback. */
static void resolve_wait(struct env *e, struct resolver *r, const char *name,
                         uint16_t port, struct result *res)
{
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    size_t n = RESOLVE_MAX_ADDRS;

    memset(res, 0, sizeof(*res));
    assert_int_equal(start(r, name, port, 2000, res, out, &n, NULL), 0);
    assert_int_equal(res->calls, 0);
    RUN_UNTIL(e->l, res->calls > 0, 3000);
    assert_int_equal(res->calls, 1);
}

/* ---- answered at once --------------------------------------------------- */

static void test_literals(void **state)
{
    struct env *e = *state;
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    struct resolve_query *q = (void *)1;
    size_t n;

    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "192.0.2.7", 80, 100, &res, out, &n, &q), 1);
    assert_int_equal(n, 1);
    assert_null(q);
    assert_v4(&out[0], "192.0.2.7", 80);
    n = 1;
    assert_int_equal(start(e->r, "2001:db8::5", 443, 100, &res, out, &n, NULL),
                     1);
    assert_int_equal(n, 1);
    assert_v6(&out[0], "2001:db8::5", 443);
    n = 1;
    assert_int_equal(start(e->r, "[::1]", 8080, 100, &res, out, &n, NULL), 1);
    assert_v6(&out[0], "::1", 8080);
    run_for(e->l, 20);
    assert_int_equal(res.calls, 0);
    assert_int_equal(e->dns.queries, 0);
    assert_int_equal(stats(e->r).lookups, 0);
}

static void test_bad_names(void **state)
{
    struct env *e = *state;
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    char longname[300], label[70];
    const char *bad[] = {"",    ".",    "a..b",  ".a",   "a b",      "a/b",
                         "a:b", "[::1", "é.com", "a\nb", "[1.2.3.4]"};
    size_t i, n;

    for (i = 0; i < ARRAY_SIZE(bad); i++) {
        n = RESOLVE_MAX_ADDRS;
        assert_int_equal(start(e->r, bad[i], 1, 100, &res, out, &n, NULL),
                         -EINVAL);
    }
    /* 253 bytes is the longest name, 254 with a final dot. */
    memset(longname, 'a', sizeof(longname));
    for (i = 63; i < sizeof(longname); i += 64)
        longname[i] = '.';
    longname[253] = '\0';
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, longname, 1, 100, &res, out, &n, NULL), 0);
    longname[253] = '.';
    longname[254] = '\0';
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, longname, 1, 100, &res, out, &n, NULL), 0);
    longname[253] = 'a';
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, longname, 1, 100, &res, out, &n, NULL),
                     -EINVAL);
    /* A label of 63 bytes is fine, 64 is not. */
    memset(label, 'b', 64);
    label[64] = '\0';
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, label, 1, 100, &res, out, &n, NULL), -EINVAL);
    label[63] = '\0';
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, label, 1, 100, &res, out, &n, NULL), 0);
    /* No room: *n == 0. */
    n = 0;
    assert_int_equal(start(e->r, "1.2.3.4", 1, 100, &res, out, &n, NULL),
                     -EINVAL);
    assert_int_equal(stats(e->r).lookups, 3);
    RUN_UNTIL(e->l, res.calls == 3, 1000);
    assert_int_equal(res.calls, 3);
    assert_int_equal(res.err, -ENOENT); /* the fake says NXDOMAIN */
}

static void test_localhost(void **state)
{
    struct env *e = *state;
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    const char *names[] = {"localhost", "LOCALHOST", "localhost."};
    size_t i, n, k;

    for (i = 0; i < ARRAY_SIZE(names); i++) {
        n = RESOLVE_MAX_ADDRS;
        assert_int_equal(start(e->r, names[i], 8080, 100, &res, out, &n, NULL),
                         1);
        assert_true(n >= 1);
        /* /etc/hosts decides; whatever it says, IPv4 comes first. */
        assert_v4(&out[0], "127.0.0.1", 8080);
        for (k = 1; k < n; k++)
            if (out[k].ss_family == AF_INET6)
                break;
        for (; k < n; k++)
            assert_int_equal(out[k].ss_family, AF_INET6);
    }
    /* A name under .localhost is not in /etc/hosts: the loopbacks. */
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "app.Localhost", 9, 100, &res, out, &n, NULL),
                     1);
    assert_int_equal(n, 2);
    assert_v4(&out[0], "127.0.0.1", 9);
    assert_v6(&out[1], "::1", 9);
    /* Room for one. */
    n = 1;
    assert_int_equal(start(e->r, "x.localhost", 9, 100, &res, out, &n, NULL),
                     1);
    assert_int_equal(n, 1);
    run_for(e->l, 20);
    assert_int_equal(res.calls, 0);
    assert_int_equal(e->dns.queries, 0);
    assert_int_equal(stats(e->r).lookups, 0);
    /* "notlocalhost" is a name like any other. */
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "notlocalhost", 9, 1000, &res, out, &n, NULL),
                     0);
    RUN_UNTIL(e->l, res.calls == 1, 2000);
    assert_int_equal(res.err, -ENOENT);
}

/* ---- through the fake server -------------------------------------------- */

static void test_answer_order_and_port(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "a.test", FAKE_ANSWER, 60);
    struct result res;

    fake_v6(f, "2001:db8::1");
    fake_v4(f, "192.0.2.1");
    fake_v4(f, "192.0.2.2");
    resolve_wait(e, e->r, "A.Test", 4242, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.n, 3);
    assert_v4(&res.a[0], "192.0.2.1", 4242);
    assert_v4(&res.a[1], "192.0.2.2", 4242);
    assert_v6(&res.a[2], "2001:db8::1", 4242);
    assert_int_equal(f->qa, 1);
    assert_int_equal(f->qaaaa, 1);
    assert_int_equal(stats(e->r).lookups, 1);
    assert_int_equal(stats(e->r).pending, 0);
}

static void test_answer_capped(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "many.test", FAKE_ANSWER, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res;
    char ip[32];
    size_t n;
    int i;

    for (i = 1; i <= 10; i++) {
        snprintf(ip, sizeof(ip), "192.0.2.%d", i);
        fake_v4(f, ip);
    }
    fake_v6(f, "2001:db8::1");
    fake_v6(f, "2001:db8::2");
    fake_v6(f, "2001:db8::1"); /* a duplicate */
    resolve_wait(e, e->r, "many.test", 1, &res);
    assert_int_equal(res.err, 0);
    /* IPv6 keeps its two places; IPv4 fills the other six. */
    assert_int_equal(res.n, RESOLVE_MAX_ADDRS);
    for (i = 0; i < 6; i++) {
        snprintf(ip, sizeof(ip), "192.0.2.%d", i + 1);
        assert_v4(&res.a[i], ip, 1);
    }
    assert_v6(&res.a[6], "2001:db8::1", 1);
    assert_v6(&res.a[7], "2001:db8::2", 1);
    /* A cache hit gives as many as the caller has room for. */
    n = 3;
    assert_int_equal(start(e->r, "many.test", 2, 100, &res, out, &n, NULL), 1);
    assert_int_equal(n, 3);
    assert_v4(&out[2], "192.0.2.3", 2);
}

static void test_ttl_honoured(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "ttl.test", FAKE_ANSWER, 30);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res;
    size_t n;

    fake_v4(f, "192.0.2.9");
    resolve_wait(e, e->r, "ttl.test", 80, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(stats(e->r).cached, 1);

    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "ttl.test", 81, 100, &res, out, &n, NULL), 1);
    assert_int_equal(n, 1);
    assert_v4(&out[0], "192.0.2.9", 81);
    assert_int_equal(stats(e->r).cache_hits, 1);

    resolver_test_advance(e->r, 29000); /* 29 s: still fresh */
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "ttl.test", 81, 100, &res, out, &n, NULL), 1);
    assert_int_equal(f->qa, 1);

    resolver_test_advance(e->r, 1100); /* 30.1 s: expired */
    resolve_wait(e, e->r, "ttl.test", 82, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(f->qa, 2);
    assert_int_equal(stats(e->r).cache_hits, 2);
    assert_int_equal(stats(e->r).lookups, 2);
}

/* The same on the loop's own clock: a TTL of 1 s, waited out. */
static void test_ttl_real_clock(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "one.test", FAKE_ANSWER, 1);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res;
    size_t n;

    fake_v4(f, "192.0.2.10");
    resolve_wait(e, e->r, "one.test", 80, &res);
    assert_int_equal(res.err, 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "one.test", 80, 100, &res, out, &n, NULL), 1);
    run_for(e->l, 1050);
    resolve_wait(e, e->r, "one.test", 80, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(f->qa, 2);
}

static void test_max_ttl_caps(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "long.test", FAKE_ANSWER, 86400);
    struct fake_name *z = fake_add(&e->dns, "zero.test", FAKE_ANSWER, 0);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct resolver *r = env_resolver(e, 16, 2, 5);
    struct result res;
    size_t n;

    fake_v4(f, "192.0.2.11");
    fake_v4(z, "192.0.2.12");
    resolve_wait(e, r, "long.test", 80, &res);
    assert_int_equal(res.err, 0);
    resolver_test_advance(r, 1900);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(r, "long.test", 80, 100, &res, out, &n, NULL), 1);
    resolver_test_advance(r, 200); /* 2.1 s: max_ttl_s is 2 */
    resolve_wait(e, r, "long.test", 80, &res);
    assert_int_equal(f->qa, 2);

    /* TTL 0: used once, never kept. */
    resolve_wait(e, r, "zero.test", 80, &res);
    assert_int_equal(res.err, 0);
    resolve_wait(e, r, "zero.test", 80, &res);
    assert_int_equal(z->qa, 2);
    assert_int_equal(stats(r).cached, 1);
    env_free(e, r);
}

static void test_lru_bound(void **state)
{
    struct env *e = *state;
    struct resolver *r = env_resolver(e, 2, 3600, 5);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct fake_name *f[3];
    const char *names[3] = {"n0.test", "n1.test", "n2.test"};
    struct result res;
    size_t n;
    int i;

    for (i = 0; i < 3; i++) {
        f[i] = fake_add(&e->dns, names[i], FAKE_ANSWER, 600);
        fake_v4(f[i], "192.0.2.20");
    }
    resolve_wait(e, r, "n0.test", 1, &res);
    resolve_wait(e, r, "n1.test", 1, &res);
    assert_int_equal(stats(r).cached, 2);
    n = RESOLVE_MAX_ADDRS; /* n0 becomes the most recent */
    assert_int_equal(start(r, "n0.test", 1, 100, &res, out, &n, NULL), 1);
    resolve_wait(e, r, "n2.test", 1, &res); /* evicts n1 */
    assert_int_equal(stats(r).cached, 2);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(r, "n0.test", 1, 100, &res, out, &n, NULL), 1);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(r, "n2.test", 1, 100, &res, out, &n, NULL), 1);
    resolve_wait(e, r, "n1.test", 1, &res);
    assert_int_equal(f[0]->qa, 1);
    assert_int_equal(f[1]->qa, 2);
    assert_int_equal(f[2]->qa, 1);
    assert_int_equal(stats(r).cached, 2);
    env_free(e, r);

    /* cache_entries 0: nothing is kept. */
    r = env_resolver(e, 0, 3600, 5);
    resolve_wait(e, r, "n0.test", 1, &res);
    resolve_wait(e, r, "n0.test", 1, &res);
    assert_int_equal(f[0]->qa, 3);
    assert_int_equal(stats(r).cached, 0);
    env_free(e, r);
}

static void test_negative_cache(void **state)
{
    struct env *e = *state;
    struct fake_name *nx = fake_add(&e->dns, "nx.test", FAKE_NXDOMAIN, 0);
    struct fake_name *nd = fake_add(&e->dns, "nodata.test", FAKE_ANSWER, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res;
    struct resolver *r;
    size_t n;

    resolve_wait(e, e->r, "nx.test", 1, &res);
    assert_int_equal(res.err, -ENOENT);
    assert_int_equal(res.n, 0);
    assert_int_equal(nx->qa, 1);
    assert_int_equal(stats(e->r).failures, 1);
    /* Remembered: 1 with no address, no query. */
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "nx.test", 1, 100, &res, out, &n, NULL), 1);
    assert_int_equal(n, 0);
    assert_int_equal(nx->qa, 1);
    assert_int_equal(stats(e->r).cache_hits, 1);
    /* For neg_ttl_s (5) only. */
    resolver_test_advance(e->r, 5100);
    resolve_wait(e, e->r, "nx.test", 1, &res);
    assert_int_equal(res.err, -ENOENT);
    assert_int_equal(nx->qa, 2);

    /* A name with neither A nor AAAA is a failed name too. */
    resolve_wait(e, e->r, "nodata.test", 1, &res);
    assert_int_equal(res.err, -ENOENT);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "nodata.test", 1, 100, &res, out, &n, NULL),
                     1);
    assert_int_equal(n, 0);
    assert_int_equal(nd->qa, 1);

    /* neg_ttl_s 0: not remembered. */
    r = env_resolver(e, 16, 3600, 0);
    resolve_wait(e, r, "nx.test", 1, &res);
    resolve_wait(e, r, "nx.test", 1, &res);
    assert_int_equal(res.err, -ENOENT);
    assert_int_equal(nx->qa, 4);
    env_free(e, r);
}

static void test_servfail(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "sf.test", FAKE_SERVFAIL, 0);
    struct result res;

    resolve_wait(e, e->r, "sf.test", 1, &res);
    assert_int_equal(res.err, -EIO);
    /* Not remembered: the next request asks again. */
    resolve_wait(e, e->r, "sf.test", 1, &res);
    assert_int_equal(res.err, -EIO);
    assert_true(f->qa >= 2);
    assert_int_equal(stats(e->r).cached, 0);
}

/* c-ares may end a lookup inside ares_getaddrinfo(): here connect() to
 * the broadcast address fails (EACCES) and no server is left. The
 * callback still runs later, from the loop, never from resolve_start. */
static void test_failed_at_once(void **state)
{
    struct env *e = *state;
    struct resolver_opts o = {16, 60, 5, "255.255.255.255:53"};
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    size_t n = RESOLVE_MAX_ADDRS;
    int err = 0;

    env_free(e, e->r);
    e->r = resolver_new(e->l, &o, &err);
    assert_non_null(e->r);
    assert_int_equal(start(e->r, "x.test", 1, 1000, &res, out, &n, NULL), 0);
    assert_int_equal(res.calls, 0);
    RUN_UNTIL(e->l, res.calls > 0, 100);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.err, -EIO);
    assert_int_equal(stats(e->r).failures, 1);
    assert_int_equal(stats(e->r).pending, 0);
}

static void test_deadline(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "silent.test", FAKE_SILENT, 0);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    uint64_t t0;
    size_t n = RESOLVE_MAX_ADDRS;

    /* The loop sits unrun for a while first: the deadline still counts
     * from the call, not from the loop's stale clock. */
    usleep(300 * 1000);
    t0 = now_ms();
    assert_int_equal(start(e->r, "silent.test", 1, 200, &res, out, &n, NULL),
                     0);
    RUN_UNTIL(e->l, res.calls > 0, 3000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.err, -ETIMEDOUT);
    /* At the deadline (the wheel's 16 ms slots, and slack for a loaded
     * machine), well before c-ares' first retry (RESOLVE_TRY_MS), let
     * alone its own give-up (1 + 2 + 4 s). */
    assert_true(res.at - t0 >= 195);
    assert_true(res.at - t0 < 200 + 400);
    assert_true(f->qa >= 1);
    assert_int_equal(stats(e->r).timeouts, 1);
    /* The lookup itself is still in flight (c-ares retries). */
    assert_int_equal(stats(e->r).pending, 1);
    run_for(e->l, 50);
    assert_int_equal(res.calls, 1);
}

/* A lost datagram: c-ares' own retry (its timeout on r->ares_t, the
 * loop timer that follows ares_timeout()) brings the answer. */
static void test_retry(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "retry.test", FAKE_DROP1, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    uint64_t t0;
    size_t n = RESOLVE_MAX_ADDRS;

    fake_v4(f, "192.0.2.35");
    t0 = now_ms();
    assert_int_equal(start(e->r, "retry.test", 1, 3000, &res, out, &n, NULL),
                     0);
    RUN_UNTIL(e->l, res.calls > 0, 3000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.err, 0);
    assert_v4(&res.a[0], "192.0.2.35", 1);
    assert_int_equal(f->qa, 2);
    /* After c-ares' first per-try timeout, not at the deadline. */
    assert_true(res.at - t0 >= RESOLVE_TRY_MS - 20);
    assert_true(res.at - t0 < RESOLVE_TRY_MS + 500);
    assert_int_equal(stats(e->r).lookups, 1);
}

/* A lookup whose requests all timed out still fills the cache when the
 * answer comes. */
static void test_late_answer_cached(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "late.test", FAKE_HOLD, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    size_t n = RESOLVE_MAX_ADDRS;

    fake_v4(f, "192.0.2.30");
    assert_int_equal(start(e->r, "late.test", 1, 50, &res, out, &n, NULL), 0);
    RUN_UNTIL(e->l, res.calls > 0, 2000);
    assert_int_equal(res.err, -ETIMEDOUT);
    assert_int_equal(e->dns.nheld, 2); /* A and AAAA */
    fake_release(&e->dns);
    RUN_UNTIL(e->l, stats(e->r).pending == 0, 2000);
    assert_int_equal(stats(e->r).pending, 0);
    assert_int_equal(res.calls, 1);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "late.test", 7, 50, &res, out, &n, NULL), 1);
    assert_int_equal(n, 1);
    assert_v4(&out[0], "192.0.2.30", 7);
}

static void test_join(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "join.test", FAKE_ANSWER, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result a = {0}, b = {0};
    size_t n;

    fake_v4(f, "192.0.2.40");
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "join.test", 1, 1000, &a, out, &n, NULL), 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "JOIN.test", 2, 1000, &b, out, &n, NULL), 0);
    assert_int_equal(stats(e->r).joined, 1);
    assert_int_equal(stats(e->r).pending, 1);
    RUN_UNTIL(e->l, a.calls && b.calls, 2000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_v4(&a.a[0], "192.0.2.40", 1);
    assert_v4(&b.a[0], "192.0.2.40", 2);
    /* One lookup: one A and one AAAA query. */
    assert_int_equal(f->qa, 1);
    assert_int_equal(f->qaaaa, 1);
    assert_int_equal(stats(e->r).lookups, 1);
}

static void test_cancel(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "c.test", FAKE_ANSWER, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result a = {0}, b = {0};
    struct resolve_query *qa, *qb;
    size_t n;

    fake_v4(f, "192.0.2.50");
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "c.test", 1, 1000, &a, out, &n, &qa), 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "c.test", 1, 1000, &b, out, &n, &qb), 0);
    assert_non_null(qa);
    resolve_cancel(qa);
    RUN_UNTIL(e->l, b.calls, 2000);
    assert_int_equal(b.calls, 1);
    run_for(e->l, 30);
    assert_int_equal(a.calls, 0);

    /* Cancelling the only request: no callback, no deadline firing; the
     * answer is still cached. */
    n = RESOLVE_MAX_ADDRS;
    memset(&a, 0, sizeof(a));
    f = fake_add(&e->dns, "c2.test", FAKE_ANSWER, 60);
    fake_v4(f, "192.0.2.51");
    assert_int_equal(start(e->r, "c2.test", 1, 30, &a, out, &n, &qa), 0);
    resolve_cancel(qa);
    run_for(e->l, 100);
    assert_int_equal(a.calls, 0);
    assert_int_equal(stats(e->r).timeouts, 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "c2.test", 1, 30, &a, out, &n, &qa), 1);
}

static void test_callback_reenters(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "re.test", FAKE_ANSWER, 60);
    struct result res = {0};
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    size_t n = RESOLVE_MAX_ADDRS;

    fake_v4(f, "192.0.2.60");
    /* The callback asks again for the same name: the cache has it. */
    res.start_on = e->r;
    res.start_name = "re.test";
    assert_int_equal(start(e->r, "re.test", 1, 1000, &res, out, &n, NULL), 0);
    RUN_UNTIL(e->l, res.calls, 2000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.start_rc, 1);
    assert_int_equal(res.start_n, 1);
}

static void test_free_in_callback(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "fc.test", FAKE_ANSWER, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result a = {0}, b = {0};
    size_t n;

    fake_v4(f, "192.0.2.70");
    a.free_me = b.free_me = &e->r;
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "fc.test", 1, 1000, &a, out, &n, NULL), 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "fc.test", 1, 1000, &b, out, &n, NULL), 0);
    RUN_UNTIL(e->l, a.calls + b.calls, 2000);
    run_for(e->l, 30);
    /* The first callback freed it: the other never ran. */
    assert_int_equal(a.calls + b.calls, 1);
    assert_null(e->r);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);

    /* The same from a deadline's callback. */
    fake_add(&e->dns, "fc2.test", FAKE_SILENT, 0);
    e->r = new_resolver(e, 16, 60, 5);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.free_me = &e->r;
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "fc2.test", 1, 50, &a, out, &n, NULL), 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "fc2.test", 1, 50, &b, out, &n, NULL), 0);
    RUN_UNTIL(e->l, a.calls + b.calls, 2000);
    run_for(e->l, 50);
    assert_null(e->r);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);
    /* b's deadline fell in the same slot: it may have run first; a's
     * never runs after the free. */
    assert_true(a.calls == 1 && b.calls <= 1);
}

static void test_free_with_pending(void **state)
{
    struct env *e = *state;
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    char name[32];
    size_t n;
    int i;

    fake_add(&e->dns, "s0.test", FAKE_SILENT, 0);
    fake_add(&e->dns, "s1.test", FAKE_SILENT, 0);
    fake_add(&e->dns, "s2.test", FAKE_SILENT, 0);
    for (i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "s%d.test", i);
        n = RESOLVE_MAX_ADDRS;
        assert_int_equal(start(e->r, name, 1, 5000, &res, out, &n, NULL), 0);
        n = RESOLVE_MAX_ADDRS; /* and a joined one */
        assert_int_equal(start(e->r, name, 1, 5000, &res, out, &n, NULL), 0);
    }
    run_for(e->l, 30); /* the queries are out */
    assert_true(e->dns.queries >= 3);
    assert_int_equal(stats(e->r).pending, 3);
    assert_true(mem_live_bytes(MEM_DNS) > 0);
    env_free(e, e->r);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);
    run_for(e->l, 30);
    assert_int_equal(res.calls, 0);
}

static void test_pending_bound(void **state)
{
    struct env *e = *state;
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res = {0};
    char name[32];
    size_t n;
    int i;

    /* The loop does not run: every lookup stays in flight. */
    for (i = 0; i < RESOLVE_MAX_PENDING; i++) {
        snprintf(name, sizeof(name), "p%d.test", i);
        n = RESOLVE_MAX_ADDRS;
        assert_int_equal(start(e->r, name, 1, 5000, &res, out, &n, NULL), 0);
    }
    assert_int_equal(stats(e->r).pending, RESOLVE_MAX_PENDING);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "one-more.test", 1, 5000, &res, out, &n, NULL),
                     -EAGAIN);
    /* Joining one in flight is still fine; so is a cached answer. */
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "p7.test", 1, 5000, &res, out, &n, NULL), 0);
    n = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(e->r, "10.0.0.1", 1, 5000, &res, out, &n, NULL), 1);
    env_free(e, e->r);
    assert_int_equal(res.calls, 0);
}

/* Two resolvers share c-ares' allocator: freeing one must not hand it
 * back while the other lives. */
static void test_two_resolvers(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "two.test", FAKE_ANSWER, 60);
    struct resolver *r2 = env_resolver(e, 16, 60, 5);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res;
    size_t k;

    fake_v4(f, "192.0.2.80");
    resolve_wait(e, r2, "two.test", 1, &res);
    env_free(e, e->r);
    assert_true(mem_live_bytes(MEM_DNS) > 0);
    k = RESOLVE_MAX_ADDRS;
    assert_int_equal(start(r2, "two.test", 1, 100, &res, out, &k, NULL), 1);
    assert_int_equal(k, 1);
    resolver_test_advance(r2, 61000);
    resolve_wait(e, r2, "two.test", 1, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(f->qa, 2);
    env_free(e, r2);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);
    /* And a new one after the last is gone. */
    e->r = new_resolver(e, 16, 60, 5);
    resolve_wait(e, e->r, "two.test", 1, &res);
    assert_int_equal(res.err, 0);
}

static void test_new_errors(void **state)
{
    struct env *e = *state;
    struct resolver_opts o = {16, 60, 5, NULL};
    int64_t base = mem_live_bytes(MEM_DNS);
    struct resolver *r;
    int err;

    o.servers = "not an address";
    err = 0;
    assert_null(resolver_new(e->l, &o, &err));
    assert_int_equal(err, -EINVAL);
    o.servers = "";
    err = 0;
    assert_null(resolver_new(e->l, &o, &err));
    assert_int_equal(err, -EINVAL);
    err = 0;
    assert_null(resolver_new(NULL, &o, &err));
    assert_int_equal(err, -EINVAL);
    assert_int_equal(mem_live_bytes(MEM_DNS), base);
    /* The system's servers, and the defaults. */
    r = resolver_new(e->l, NULL, &err);
    assert_non_null(r);
    env_free(e, r);
    o.servers = "127.0.0.1:53,[::1]:53";
    r = resolver_new(e->l, &o, &err);
    assert_non_null(r);
    env_free(e, r);
}

static void test_new_alloc_failures(void **state)
{
    struct env *e = *state;
    struct resolver_opts o = {16, 60, 5, e->dns.servers};
    struct resolver *r;
    uint64_t n;
    int err;

    /* None alive: the first resolver sets c-ares' allocator up. */
    env_free(e, e->r);
    for (n = 1; n < 1000; n++) {
        mem_fail_at(n);
        err = 0;
        r = resolver_new(e->l, &o, &err);
        if (!mem_fail_fired()) {
            assert_non_null(r);
            resolver_free(r);
            break;
        }
        if (r) {
            resolver_free(r);
        } else {
            assert_true(err == -ENOMEM || err == -EIO);
        }
        assert_int_equal(mem_live_bytes(MEM_DNS), 0);
    }
    mem_fail_at(0);
    assert_true(n > 3);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);
}

static void test_start_alloc_failures(void **state)
{
    struct env *e = *state;
    struct fake_name *f = fake_add(&e->dns, "af.test", FAKE_ANSWER, 60);
    struct sockaddr_storage out[RESOLVE_MAX_ADDRS];
    struct result res;
    struct resolver *r;
    uint64_t n;
    size_t k;
    int rc, ok = 0;

    fake_v4(f, "192.0.2.90");
    fake_v6(f, "2001:db8::90");
    env_free(e, e->r);
    for (n = 1; n < 1000; n++) {
        r = env_resolver(e, 16, 60, 5);
        memset(&res, 0, sizeof(res));
        k = RESOLVE_MAX_ADDRS;
        mem_fail_at(n);
        rc = start(r, "af.test", 1, 300, &res, out, &k, NULL);
        if (rc == 0)
            RUN_UNTIL(e->l, res.calls, 2000);
        if (!mem_fail_fired()) {
            mem_fail_at(0);
            assert_int_equal(rc, 0);
            assert_int_equal(res.calls, 1);
            assert_int_equal(res.err, 0);
            assert_int_equal(res.n, 2);
            ok = 1;
        }
        mem_fail_at(0);
        if (rc < 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_int_equal(res.calls, 0);
        } else {
            /* Exactly one callback, whatever failed. */
            assert_int_equal(rc, 0);
            assert_int_equal(res.calls, 1);
        }
        env_free(e, r);
        assert_int_equal(mem_live_bytes(MEM_DNS), 0);
        if (ok)
            break;
    }
    assert_true(ok);
    assert_true(n > 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_literals),
        T(test_bad_names),
        T(test_localhost),
        T(test_answer_order_and_port),
        T(test_answer_capped),
        T(test_ttl_honoured),
        T(test_ttl_real_clock),
        T(test_max_ttl_caps),
        T(test_lru_bound),
        T(test_negative_cache),
        T(test_servfail),
        T(test_failed_at_once),
        T(test_deadline),
        T(test_retry),
        T(test_late_answer_cached),
        T(test_join),
        T(test_cancel),
        T(test_callback_reenters),
        T(test_free_in_callback),
        T(test_free_with_pending),
        T(test_pending_bound),
        T(test_two_resolvers),
        T(test_new_errors),
        T(test_new_alloc_failures),
        T(test_start_alloc_failures),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
