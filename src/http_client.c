/*
 * http_client.c - the pooled HTTP/1.1 client of moor.h (docs/http_client.md):
 * the client and its options, its hosts (one per scheme, host and port)
 * with their TLS sessions and idle lists, statistics, metrics and
 * freeing. Calls are in http_client_call.c, connections in
 * http_client_conn.c (http_client_int.h says who does what).
 *
 * Keeps (docs/principles.md): every wait under a deadline of its own
 * (rule 2: resolve in resolve.c, connect, TLS, write, head, body gap,
 * idle, queue wait, and the whole call); one close path for connections
 * (conn_close, whose on_close settles the call); an idle connection holds
 * no buffer (rule 3: conn.c keeps no carry when nothing is partial, and
 * OpenSSL's record buffers are released when it is pooled); every limit
 * counted (rule 6: closes by reason, per host); bounded: hosts (1024
 * kept empty), sessions per host, the wait queue.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "http_client_int.h"
#include "log.h"
#include "mem.h"
#include "series.h"
#include "tls.h"
#include "util.h"

/* ---- options ------------------------------------------------------------ */

static void client_defaults(void *p, size_t size)
{
    const struct moor_http_client_options d = {
        .size = sizeof(d),
        .max_idle_total = 1024,
        .max_idle_per_host = 256,
        .max_conns_per_host = 256,
        .max_waiting_per_host = 1024,
        .wait_timeout_ms = 10000,
        .idle_timeout_ms = 90000,
        .resolve_timeout_ms = 5000,
        .connect_timeout_ms = 5000,
        .tls_timeout_ms = 10000,
        .write_timeout_ms = 30000,
        .head_timeout_ms = 30000,
        .body_timeout_ms = 30000,
        .max_header_bytes = KiB(16),
        .max_headers = 100,
        .max_body = MiB(64),
        .queue_limit = KiB(256),
        .dns_cache_entries = 512,
        .dns_max_ttl_s = 300,
        .tls_sessions_per_host = 4,
        .metrics_max_hosts = 100,
        .pause_timeout_ms = 60000,
        .max_handshakes = 64,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_http_client_options_init_(struct moor_http_client_options *o,
                                             size_t size)
{
    client_defaults(o, size);
}

/* ---- the client --------------------------------------------------------- */

static void on_session(void *arg, struct ssl_session_st *s);

int hc_client_tls(struct moor_http_client *cl, struct moor_error *err)
{
    struct tls_client_opts to = {
        .ca_file = cl->tls_ca,
        .alpn = "http/1.1",
        .insecure = cl->o.insecure != 0,
        .on_session = cl->o.tls_sessions_per_host ? on_session : NULL,
        /* Busy: OpenSSL's record buffers stay between records (no free and
         * malloc of 2 x 17 KB around every read and write); pooled: given
         * back (conn_release). */
        .keep_buffers = true,
    };
    char why[256];

    cl->tls = tls_client_new(&to, why, sizeof(why));
    if (!cl->tls)
        return api_fail(err, MOOR_ETLS, "TLS: %s", why);
    return 0;
}

MOOR_API struct moor_http_client *
moor_http_client_new(struct moor_loop *l,
                     const struct moor_http_client_options *o,
                     struct moor_error *err)
{
    struct moor_http_client_options co;
    struct moor_http_client *cl;
    struct conn_limits lim = {0};
    struct resolver_opts ro = {0};
    int e = 0;

    if (!l)
        return api_fail(err, -EINVAL, "moor_http_client_new: no loop"), NULL;
    if (api_options(&co, sizeof(co), o, client_defaults,
                    "moor_http_client_options", err) < 0)
        return NULL;
    if (co.tls_sessions_per_host > HC_MAX_SESSIONS)
        co.tls_sessions_per_host = HC_MAX_SESSIONS;
    if (co.metrics_max_hosts > HC_METRICS_HOSTS)
        co.metrics_max_hosts = HC_METRICS_HOSTS;
    if (co.max_headers > HTTP_MAX_HEADERS_CAP)
        co.max_headers = HTTP_MAX_HEADERS_CAP;
    cl = api_calloc(MEM_HTTPC, sizeof(*cl), err);
    if (!cl)
        return NULL;
    cl->ml = l;
    cl->loop = l->loop;
    cl->o = co;
    pool_init(&cl->call_pool, MEM_HTTPC, sizeof(struct moor_http_call));
    if ((co.tls_ca && !(cl->tls_ca = api_strdup(co.tls_ca))) ||
        (co.dns_servers && !(cl->dns_servers = api_strdup(co.dns_servers)))) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    cl->o.tls_ca = cl->tls_ca;
    cl->o.dns_servers = cl->dns_servers;
    cl->lim.max_header_bytes = co.max_header_bytes;
    cl->lim.max_headers = co.max_headers;
    cl->lim.max_body = co.max_body;
    ro.cache_entries = co.dns_cache_entries;
    ro.max_ttl_s = co.dns_max_ttl_s;
    ro.neg_ttl_s = co.dns_max_ttl_s < 5 ? co.dns_max_ttl_s : 5;
    ro.servers = cl->dns_servers;
    cl->dns = resolver_new(cl->loop, &ro, &e);
    if (!cl->dns) {
        api_fail(err, e ? e : -ENOMEM, "resolver: %s",
                 e == -EINVAL ? "bad dns_servers (want IP[:PORT],...)"
                              : moor_strerror(e ? e : -ENOMEM));
        goto fail;
    }
    if (cl->tls_ca && hc_client_tls(cl, err) < 0)
        goto fail; /* a bad CA file is said now, not per request */
    lim.write_timeout_ms = co.write_timeout_ms;
    lim.queue_limit = co.queue_limit;
    if (conn_set_init(&cl->set, cl->loop, &lim) < 0) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    cl->hook.fn = hc_on_hook;
    loop_add_hook(cl->loop, &cl->hook);
    api_loop_add_http_client(l, cl);
    return cl;

fail:
    tls_ctx_free(cl->tls);
    resolver_free(cl->dns);
    api_strfree(cl->tls_ca);
    api_strfree(cl->dns_servers);
    mem_free(MEM_HTTPC, cl);
    return NULL;
}

struct moor_http_client **http_client_next(struct moor_http_client *cl)
{
    return &cl->next;
}

bool http_client_busy(const struct moor_http_client *cl)
{
    return cl->calls > 0;
}

/* ---- hosts -------------------------------------------------------------- */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

long hc_host_conns(const struct hc_host *h)
{
    return h->st.active + h->st.idle + h->st.dialing;
}

static bool host_empty(const struct hc_host *h)
{
    return hc_host_conns(h) == 0 && !h->wait_head;
}

static void host_free(struct hc_host *h)
{
    if (h->release)
        h->cl->n_release--;
    tls_session_free(h->offer);
    for (uint32_t i = 0; i < h->n_sessions; i++)
        tls_session_free(h->sessions[i]);
    mem_free(MEM_HTTPC, h);
}

/* Frees empty hosts past HC_MAX_HOSTS (their figures go with them; the
 * totals keep theirs), never keep: the one just made for a request. */
static void hosts_trim(struct moor_http_client *cl, const struct hc_host *keep)
{
    for (unsigned b = 0; b < HC_BUCKETS && cl->n_hosts > HC_MAX_HOSTS; b++) {
        struct hc_host **pp = &cl->hosts[b];

        while (*pp && cl->n_hosts > HC_MAX_HOSTS) {
            struct hc_host *h = *pp;

            if (h != keep && host_empty(h)) {
                *pp = h->next;
                cl->n_hosts--;
                host_free(h);
            } else {
                pp = &h->next;
            }
        }
    }
}

struct hc_host *hc_host_get(struct moor_http_client *cl, const struct url *u)
{
    char key[URL_HOST_MAX + 32];
    uint32_t hash;
    struct hc_host *h;
    size_t kl, nl, al;

    snprintf(key, sizeof(key), "%s://%s%s%s:%u", u->tls ? "https" : "http",
             u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "",
             (unsigned)u->port);
    hash = hash_str(key);
    for (h = cl->hosts[hash % HC_BUCKETS]; h; h = h->next)
        if (h->hash == hash && !strcmp(h->key, key))
            return h;
    kl = strlen(key) + 1;
    nl = strlen(u->host) + 1;
    al = strlen(u->authority) + 1;
    h = mem_calloc(MEM_HTTPC, 1, sizeof(*h) + kl + nl + al);
    if (!h)
        return NULL;
    memcpy(h->key, key, kl);
    h->name = h->key + kl;
    memcpy(h->name, u->host, nl);
    h->authority = h->name + nl;
    memcpy(h->authority, u->authority, al);
    h->cl = cl;
    h->hash = hash;
    h->port = u->port;
    h->tls = u->tls;
    h->next = cl->hosts[hash % HC_BUCKETS];
    cl->hosts[hash % HC_BUCKETS] = h;
    cl->n_hosts++;
    if (cl->n_hosts > HC_MAX_HOSTS)
        hosts_trim(cl, h);
    return h;
}

static struct hc_host *host_find(const struct moor_http_client *cl,
                                 const char *key)
{
    uint32_t hash = hash_str(key);

    for (struct hc_host *h = cl->hosts[hash % HC_BUCKETS]; h; h = h->next)
        if (h->hash == hash && !strcmp(h->key, key))
            return h;
    return NULL;
}

/* ---- TLS sessions ------------------------------------------------------- */

/* A new session from a server of h's: kept, the oldest going first. */
static void on_session(void *arg, struct ssl_session_st *s)
{
    struct hc_host *h = arg;
    uint32_t max = h->cl->o.tls_sessions_per_host;

    if (h->n_sessions >= max) {
        tls_session_free(h->sessions[0]);
        memmove(&h->sessions[0], &h->sessions[1],
                (h->n_sessions - 1) * sizeof(h->sessions[0]));
        h->n_sessions--;
    }
    h->sessions[h->n_sessions++] = s;
    if (h->offer) { /* the next connection resumes from the newest */
        tls_session_free(h->offer);
        h->offer = NULL;
    }
    hc_host_sessions_arrived(h);
}

/* The newest usable session, kept for the next connection too: moor's
 * client talks to services, where a ticket's linkability (RFC 8446
 * C.4's reason for single use) is no concern, and reusing it lets a
 * thousand connections opened at once resume from one full handshake.
 * Unusable ones (expired) go. NULL if none. */
struct ssl_session_st *hc_session_get(struct hc_host *h)
{
    uint64_t now_s = loop_wall_ms(h->cl->loop) / 1000;

    while (h->n_sessions) {
        struct ssl_session_st *s = h->sessions[h->n_sessions - 1];

        if (tls_session_usable(s, now_s))
            return s;
        tls_session_free(s);
        h->n_sessions--;
    }
    return NULL;
}

/* ---- the idle list ------------------------------------------------------ */

void hc_idle_unlink(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;

    if (hc->prev)
        ((struct hc_conn *)conn_ext(hc->prev))->next = hc->next;
    else
        h->idle = hc->next;
    if (hc->next)
        ((struct hc_conn *)conn_ext(hc->next))->prev = hc->prev;
    hc->prev = hc->next = NULL;
    ST_ADD(h, idle, -1);
    h->cl->n_idle--;
}

void hc_idle_push(struct conn *c)
{
    struct hc_conn *hc = conn_ext(c);
    struct hc_host *h = hc->host;

    hc->prev = NULL;
    hc->next = h->idle;
    if (h->idle)
        ((struct hc_conn *)conn_ext(h->idle))->prev = c;
    h->idle = c;
    ST_ADD(h, idle, 1);
    h->cl->n_idle++;
}

/* Age of c in ms. */
uint32_t hc_conn_age(const struct conn *c)
{
    return loop_now(conn_loop(c)) - conn_created(c);
}

bool hc_too_old(const struct moor_http_client *cl, const struct conn *c)
{
    const struct hc_conn *hc = conn_ext_const(c);

    return (cl->o.max_conn_age_ms && hc_conn_age(c) >= cl->o.max_conn_age_ms) ||
           (cl->o.max_requests_per_conn &&
            hc->requests >= cl->o.max_requests_per_conn);
}

static void close_idle_of(struct hc_host *h)
{
    while (h->idle) {
        struct conn *c = h->idle;
        struct hc_conn *hc = conn_ext(c);

        hc_idle_unlink(c);
        hc->flags |= HCF_COUNTED;
        conn_close(c, CLOSE_SHUTDOWN);
    }
}

MOOR_API void moor_http_client_close_idle(struct moor_http_client *cl)
{
    if (!cl)
        return;
    for (unsigned b = 0; b < HC_BUCKETS; b++)
        for (struct hc_host *h = cl->hosts[b]; h; h = h->next)
            close_idle_of(h);
}

/* ---- statistics ---------------------------------------------------------- */

MOOR_API int moor_http_client_stats(const struct moor_http_client *cl,
                                    const char *host,
                                    struct moor_http_client_stats *st)
{
    const struct hc_host *h;

    if (!cl || !st)
        return -EINVAL;
    if (!host) {
        *st = cl->st;
        st->bytes_held = mem_live_bytes(MEM_HTTPC);
        return 0;
    }
    h = host_find(cl, host);
    if (!h)
        return -ENOENT;
    *st = h->st;
    st->bytes_held = (int64_t)(sizeof(*h) + strlen(h->key) * 3) +
                     hc_host_conns(h) * (int64_t)sizeof(struct hc_conn);
    return 0;
}

/* ---- freeing ------------------------------------------------------------- */

static void close_all(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

MOOR_API void moor_http_client_free(struct moor_http_client *cl)
{
    struct moor_http_call *call;

    if (!cl)
        return;
    cl->freeing = true;
    /* Calls first (on_done with -ECANCELED), then every connection. */
    hc_on_hook(&cl->hook);
    while ((call = cl->all))
        moor_http_call_cancel(call);
    conn_set_each(&cl->set, close_all, NULL);
    api_loop_remove_http_client(cl->ml, cl);
    loop_remove_hook(cl->loop, &cl->hook);
    conn_set_fini(&cl->set);
    resolver_free(cl->dns);
    for (unsigned b = 0; b < HC_BUCKETS; b++) {
        struct hc_host *h = cl->hosts[b];

        while (h) {
            struct hc_host *next = h->next;

            host_free(h);
            h = next;
        }
    }
    tls_ctx_free(cl->tls);
    api_strfree(cl->tls_ca);
    api_strfree(cl->dns_servers);
    mem_free(MEM_HTTPC, cl->resp);
    mem_free(MEM_HTTPC, cl->fields);
    pool_fini(&cl->call_pool);
    mem_free(MEM_HTTPC, cl);
}

/* ---- metrics --------------------------------------------------------------
 */

/* Appends to b unless an earlier append failed: *err keeps the first
 * error (the page is refused whole, never cut; as metrics.c does). */
static void put(int *err, struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put(int *err, struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (*err)
        return;
    va_start(ap, fmt);
    rc = sbuf_vprintf(b, fmt, ap);
    va_end(ap);
    if (rc < 0)
        *err = rc;
}

/* Adds b's figures to a's (the "other" row of /metrics). */
static void stats_add(struct moor_http_client_stats *a,
                      const struct moor_http_client_stats *b)
{
    a->active += b->active;
    a->idle += b->idle;
    a->dialing += b->dialing;
    a->waiting += b->waiting;
    a->requests += b->requests;
    a->conns_new += b->conns_new;
    a->conns_reused += b->conns_reused;
    a->retries += b->retries;
    a->closed_idle_timeout += b->closed_idle_timeout;
    a->closed_max_age += b->closed_max_age;
    a->closed_peer += b->closed_peer;
    a->closed_abandoned += b->closed_abandoned;
    a->closed_error += b->closed_error;
    a->closed_pool_full += b->closed_pool_full;
    a->closed_by_response += b->closed_by_response;
    a->bytes_held += b->bytes_held;
    a->tls_resumed += b->tls_resumed;
    a->tls_waiting += b->tls_waiting;
    a->tls_waited += b->tls_waited;
}

/* One family's HELP and TYPE lines, from its row in series.c (-EINVAL
 * when it has none: see metrics.c). */
static void family(int *err, struct sbuf *b, const char *name)
{
    const struct series *s = series_find(name);

    if (!s) {
        if (!*err)
            *err = -EINVAL;
        return;
    }
    put(err, b, "# HELP %s %s\n# TYPE %s %s\n", name, s->help, name, s->type);
}

int http_client_metrics(const struct moor_http_client *const *cls, size_t n,
                        struct sbuf *b)
{
    int err = 0;

    static const struct {
        const char *name;
        size_t off;
    } closed[] = {
        {"idle_timeout",
         offsetof(struct moor_http_client_stats, closed_idle_timeout)},
        {"max_age", offsetof(struct moor_http_client_stats, closed_max_age)},
        {"peer_closed", offsetof(struct moor_http_client_stats, closed_peer)},
        {"body_abandoned",
         offsetof(struct moor_http_client_stats, closed_abandoned)},
        {"error", offsetof(struct moor_http_client_stats, closed_error)},
        {"pool_full",
         offsetof(struct moor_http_client_stats, closed_pool_full)},
        {"response",
         offsetof(struct moor_http_client_stats, closed_by_response)},
    };
    struct row {
        const char *key;
        struct moor_http_client_stats st;
    } * rows;
    struct moor_http_client_stats other = {0};
    const struct moor_http_client_stats *st;
    const char *key;
    size_t n_shown = 0, n_rows, max_rows = 0;
    bool has_other = false;

    /* One row per host, the same host of two clients summed in one; the
     * first metrics_max_hosts hosts (the largest of the clients'), then
     * the rest summed as "other". */
    for (size_t c = 0; c < n; c++)
        if (cls[c]->o.metrics_max_hosts > max_rows)
            max_rows = cls[c]->o.metrics_max_hosts;
    rows = max_rows ? mem_calloc(MEM_METRICS, max_rows, sizeof(*rows)) : NULL;
    if (max_rows && !rows)
        return -ENOMEM;
    for (size_t c = 0; c < n; c++)
        for (unsigned bk = 0; bk < HC_BUCKETS; bk++)
            for (const struct hc_host *h = cls[c]->hosts[bk]; h; h = h->next) {
                size_t r = 0;

                while (r < n_shown && strcmp(rows[r].key, h->key))
                    r++;
                if (r < n_shown) {
                    stats_add(&rows[r].st, &h->st);
                } else if (n_shown < max_rows) {
                    rows[n_shown].key = h->key;
                    rows[n_shown++].st = h->st;
                } else {
                    stats_add(&other, &h->st);
                    has_other = true;
                }
            }
    n_rows = n_shown + (has_other ? 1 : 0);

#define EACH_HOST                                                              \
    for (size_t r_ = 0;                                                        \
         r_ < n_rows && ((key = r_ < n_shown ? rows[r_].key : "other"),        \
                         (st = r_ < n_shown ? &rows[r_].st : &other), 1);      \
         r_++)

    family(&err, b, "moor_http_client_connections");
    EACH_HOST
    {
        put(&err, b,
            "moor_http_client_connections{host=\"%s\",state=\"active\"}"
            " %ld\n",
            key, st->active);
        put(&err, b,
            "moor_http_client_connections{host=\"%s\",state=\"idle\"}"
            " %ld\n",
            key, st->idle);
        put(&err, b,
            "moor_http_client_connections{host=\"%s\",state="
            "\"dialing\"} %ld\n",
            key, st->dialing);
    }
    family(&err, b, "moor_http_client_requests_waiting");
    EACH_HOST
    put(&err, b, "moor_http_client_requests_waiting{host=\"%s\"} %ld\n", key,
        st->waiting);
    family(&err, b, "moor_http_client_requests_total");
    EACH_HOST
    put(&err, b, "moor_http_client_requests_total{host=\"%s\"} %llu\n", key,
        (unsigned long long)st->requests);
    family(&err, b, "moor_http_client_requests_reused_total");
    EACH_HOST
    put(&err, b, "moor_http_client_requests_reused_total{host=\"%s\"} %llu\n",
        key, (unsigned long long)st->conns_reused);
    family(&err, b, "moor_http_client_retries_total");
    EACH_HOST
    put(&err, b, "moor_http_client_retries_total{host=\"%s\"} %llu\n", key,
        (unsigned long long)st->retries);
    family(&err, b, "moor_http_client_tls_resumed_total");
    EACH_HOST
    put(&err, b, "moor_http_client_tls_resumed_total{host=\"%s\"} %llu\n", key,
        (unsigned long long)st->tls_resumed);
    family(&err, b, "moor_http_client_tls_handshakes_waiting");
    EACH_HOST
    put(&err, b, "moor_http_client_tls_handshakes_waiting{host=\"%s\"} %ld\n",
        key, st->tls_waiting);
    family(&err, b, "moor_http_client_tls_handshakes_waited_total");
    EACH_HOST
    put(&err, b,
        "moor_http_client_tls_handshakes_waited_total{host=\"%s\"} %llu\n", key,
        (unsigned long long)st->tls_waited);
    family(&err, b, "moor_http_client_connections_opened_total");
    EACH_HOST
    put(&err, b,
        "moor_http_client_connections_opened_total{host=\"%s\"} %llu\n", key,
        (unsigned long long)st->conns_new);
    family(&err, b, "moor_http_client_connections_closed_total");
    EACH_HOST
    for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++)
        put(&err, b,
            "moor_http_client_connections_closed_total{host=\"%s\","
            "reason=\"%s\"} %llu\n",
            key, closed[i].name,
            (unsigned long long)*(
                const uint64_t *)(const void *)((const char *)st +
                                                closed[i].off));
    family(&err, b, "moor_http_client_bytes_held");
    put(&err, b, "moor_http_client_bytes_held %lld\n",
        (long long)mem_live_bytes(MEM_HTTPC));
#undef EACH_HOST
    mem_free(MEM_METRICS, rows);
    return err;
}

MOOR_API const char *
moor_http_response_header(const struct moor_http_response *r, const char *name,
                          size_t *len)
{
    size_t nl = name ? strlen(name) : 0;

    for (size_t i = 0; r && i < r->n_headers; i++)
        if (ascii_ci_equal(r->headers[i].name, r->headers[i].name_len, name,
                           nl)) {
            if (len)
                *len = r->headers[i].value_len;
            return r->headers[i].value;
        }
    if (len)
        *len = 0;
    return NULL;
}
