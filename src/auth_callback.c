/*
 * auth_callback.c - --auth url: each subscription and publication is
 * asked of the operator's service (like nchan_authorize_request), with
 * the pooled HTTP client on the server's own loop; see auth.h and
 * docs/auth.md.
 *
 * Keeps: a request waits without holding more than its bytes (http_defer
 * leaves them to conn.c's carry; a TCP connection pauses); every question
 * has a deadline (--auth-timeout) and at most --auth-max-inflight are out;
 * no answer, a malformed one or any status but 2xx, 401 and 403 refuses
 * (fail closed). An answer never touches a connection through a pointer
 * it kept: it finds it again by fd and number (conn_set_find). The
 * decision cache is bounded (--auth-cache-entries, oldest out first) and
 * every byte is under the auth tag (the client's own under http_client).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <moor.h>

#include "api.h"
#include "auth_int.h"
#include "buf.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "util.h"

#define CB_BUCKETS 256              /* questions out, by conn */
#define CB_CACHE_BUCKETS 1024       /* cached decisions, by key */
#define CB_MAX_ANSWER KiB(16)       /* a longer answer body is an error */
#define CB_MAX_QUESTION KiB(32)     /* the JSON we send */
#define CB_NO_EXPIRY 253402300799LL /* 9999-12-31: an answer without exp */

/* A question out, or its answer waiting for its connection to read it. */
struct pend {
    struct pend *next; /* cb->pend chain */
    struct auth_cb *cb;
    struct conn_set *set;
    struct conn *c; /* the key; used only after conn_set_find() */
    int fd;
    unsigned long long id;
    struct moor_http_call *call; /* NULL once answered */
    uint64_t t0_ms;
    char *key; /* the cache key, or NULL (no cache) */
    bool answered;
    uint64_t answered_ms; /* when; an answer nobody takes is swept */
    bool orphan;          /* its connection is gone: freed when answered */
    unsigned reason;      /* 0: allowed */
    int status;           /* the callback's HTTP status, 0 if none */
    char *body;           /* the answer's body so far */
    size_t body_len;
    bool too_big;
    struct jwt_grant g;
};

/* A cached decision. */
struct cached {
    struct cached *next;  /* bucket chain */
    struct cached *older; /* the FIFO of insertion, oldest first */
    struct cached *newer;
    uint64_t expires_ms;
    unsigned reason;
    struct jwt_grant g;
    char key[];
};

struct auth_cb {
    struct auth *a;
    struct moor_loop *ml;
    struct moor_http_client *cl;
    char *url, *forward;
    uint32_t timeout_ms, max_inflight, ttl_ms, max_entries;
    struct pend *pend[CB_BUCKETS];
    struct cached **cache; /* CB_CACHE_BUCKETS, or NULL without a cache */
    struct cached *oldest, *newest;
};

/* ---- the client ----------------------------------------------------------
 */

static char *dup_str(const char *s)
{
    return s ? mem_strndup(MEM_AUTH, s, strlen(s)) : NULL;
}

int auth_cb_new(struct auth *a, const struct auth_opts *o, char *err,
                size_t errlen)
{
    struct moor_http_client_options co;
    struct moor_error e = {0};
    struct auth_cb *cb = mem_calloc(MEM_AUTH, 1, sizeof(*cb));

    if (!cb) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->cb = cb;
    cb->a = a;
    cb->timeout_ms = o->url_timeout_ms ? o->url_timeout_ms : 2000;
    cb->max_inflight = o->url_max_inflight ? o->url_max_inflight : 256;
    cb->ttl_ms = o->cache_ttl_ms;
    cb->max_entries = o->cache_entries ? o->cache_entries : 10000;
    cb->url = dup_str(o->url);
    cb->forward = dup_str(o->forward_headers ? o->forward_headers : "");
    if (cb->ttl_ms)
        cb->cache = mem_calloc(MEM_AUTH, CB_CACHE_BUCKETS, sizeof(*cb->cache));
    cb->ml = api_loop_borrow(a->loop);
    if (!cb->url || !cb->forward || (cb->ttl_ms && !cb->cache) || !cb->ml) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    moor_http_client_options_init(&co);
    co.total_timeout_ms = cb->timeout_ms;
    co.max_conns_per_host = cb->max_inflight;
    co.max_waiting_per_host = cb->max_inflight;
    co.wait_timeout_ms = cb->timeout_ms;
    cb->cl = moor_http_client_new(cb->ml, &co, &e);
    if (!cb->cl) {
        snprintf(err, errlen, "the callback's HTTP client: %s", e.message);
        return -1;
    }
    return 0;
}

static void pend_free(struct pend *p)
{
    jwt_grant_free(&p->g);
    mem_free(MEM_AUTH, p->key);
    mem_free(MEM_AUTH, p->body);
    mem_free(MEM_AUTH, p);
}

static void cache_drop(struct auth_cb *cb, struct cached *e);

void auth_cb_free(struct auth *a)
{
    struct auth_cb *cb = a->cb;

    if (!cb)
        return;
    /* Cancelling runs each on_done now: they free their questions. */
    if (cb->cl)
        moor_http_client_free(cb->cl);
    for (size_t i = 0; i < CB_BUCKETS; i++)
        while (cb->pend[i]) {
            struct pend *p = cb->pend[i];

            cb->pend[i] = p->next;
            pend_free(p);
        }
    while (cb->oldest)
        cache_drop(cb, cb->oldest);
    mem_free(MEM_AUTH, cb->cache);
    moor_loop_free(cb->ml);
    mem_free(MEM_AUTH, cb->url);
    mem_free(MEM_AUTH, cb->forward);
    mem_free(MEM_AUTH, cb);
    a->cb = NULL;
}

/* ---- grants --------------------------------------------------------------
 */

/* A copy of g (its patterns block too). False: no memory. */
static bool grant_copy(struct jwt_grant *dst, const struct jwt_grant *src)
{
    size_t bytes = 0;
    const char *e = src->patterns;

    *dst = *src;
    dst->patterns = NULL;
    for (unsigned i = 0; e && i < (unsigned)src->n_sub + src->n_pub; i++) {
        bytes += strlen(e) + 1;
        e += strlen(e) + 1;
    }
    if (!bytes)
        return true;
    dst->patterns = mem_alloc(MEM_AUTH, bytes);
    if (!dst->patterns)
        return false;
    memcpy(dst->patterns, src->patterns, bytes);
    return true;
}

/* The answer's rights: a list it gave narrows, one it left out grants
 * everything asked ("*"); no "exp": no expiry. */
static bool answer_grant(struct pend *p, const char *body, size_t n)
{
    struct jwt_grant got;
    unsigned present = 0;
    size_t sub_bytes = 0, pub_bytes = 0, w = 0;
    const char *e;
    char *blk;

    if (jwt_grant_from_json(body, n, &p->cb->a->jo, &got, &present))
        return false;
    e = got.patterns;
    for (unsigned i = 0; i < got.n_sub; i++, e += strlen(e) + 1)
        sub_bytes += strlen(e) + 1;
    for (unsigned i = 0; i < got.n_pub; i++, e += strlen(e) + 1)
        pub_bytes += strlen(e) + 1;
    if (!(present & JWT_HAS_CHANNELS))
        sub_bytes = 2;
    if (!(present & JWT_HAS_PUBLISH))
        pub_bytes = 2;
    blk = mem_alloc(MEM_AUTH, sub_bytes + pub_bytes);
    if (!blk) {
        jwt_grant_free(&got);
        return false;
    }
    if (present & JWT_HAS_CHANNELS)
        memcpy(blk, got.patterns, sub_bytes);
    else
        memcpy(blk, "*", 2);
    w = sub_bytes;
    if (present & JWT_HAS_PUBLISH)
        memcpy(blk + w, got.patterns ? got.patterns + sub_bytes : "",
               pub_bytes);
    else
        memcpy(blk + w, "*", 2);
    p->g = got;
    p->g.patterns = blk;
    p->g.n_sub = (present & JWT_HAS_CHANNELS) ? got.n_sub : 1;
    p->g.n_pub = (present & JWT_HAS_PUBLISH) ? got.n_pub : 1;
    if (!(present & JWT_HAS_EXP))
        p->g.exp = CB_NO_EXPIRY;
    mem_free(MEM_AUTH, got.patterns);
    return true;
}

/* ---- the cache -----------------------------------------------------------
 */

static size_t key_slot(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (const unsigned char *k = (const unsigned char *)key; *k; k++)
        h = (h ^ *k) * 1099511628211ull;
    return (size_t)(h % CB_CACHE_BUCKETS);
}

static void cache_drop(struct auth_cb *cb, struct cached *e)
{
    struct cached **pp = &cb->cache[key_slot(e->key)];

    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    if (e->older)
        e->older->newer = e->newer;
    else
        cb->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        cb->newest = e->older;
    jwt_grant_free(&e->g);
    mem_free(MEM_AUTH, e);
    cb->a->st.cb_cached--;
}

static struct cached *cache_get(struct auth_cb *cb, const char *key,
                                uint64_t now)
{
    struct cached *e;

    if (!cb->cache || !key)
        return NULL;
    for (e = cb->cache[key_slot(key)]; e; e = e->next)
        if (!strcmp(e->key, key))
            break;
    if (e && e->expires_ms <= now) {
        cache_drop(cb, e);
        return NULL;
    }
    return e;
}

/* Keeps p's decision for --auth-cache-ttl (a failed allocation keeps
 * nothing: the next asks again). Errors are not cached. */
static void cache_put(struct auth_cb *cb, const struct pend *p, uint64_t now)
{
    size_t kl;
    struct cached *e;
    size_t slot;

    if (!cb->cache || !p->key || (p->reason && p->reason != AUTH_CB_DENIED) ||
        cache_get(cb, p->key, now))
        return;
    while (cb->oldest && (uint32_t)cb->a->st.cb_cached >= cb->max_entries)
        cache_drop(cb, cb->oldest);
    kl = strlen(p->key);
    e = mem_calloc(MEM_AUTH, 1, sizeof(*e) + kl + 1);
    if (!e)
        return;
    if (!grant_copy(&e->g, &p->g)) {
        mem_free(MEM_AUTH, e);
        return;
    }
    memcpy(e->key, p->key, kl + 1);
    e->reason = p->reason;
    e->expires_ms = now + cb->ttl_ms;
    slot = key_slot(e->key);
    e->next = cb->cache[slot];
    cb->cache[slot] = e;
    e->older = cb->newest;
    if (cb->newest)
        cb->newest->newer = e;
    else
        cb->oldest = e;
    cb->newest = e;
    cb->a->st.cb_cached++;
}

/* ---- questions -----------------------------------------------------------
 */

static struct pend **pend_slot(struct auth_cb *cb, const struct conn *c)
{
    uint64_t h = (uint64_t)(uintptr_t)c * 0x9E3779B97F4A7C15ull;

    return &cb->pend[(h >> 32) % CB_BUCKETS];
}

static void pend_unlink(struct pend *p)
{
    struct pend **pp = pend_slot(p->cb, p->c);

    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    p->next = NULL;
}

static void record_latency(struct auth_stats *st, uint64_t ms)
{
    st->cb_lat[conn_lat_bucket(ms * 1000)]++;
    st->cb_lat_sum_s += (double)ms / 1000.0;
}

static void on_head(struct moor_http_call *call,
                    const struct moor_http_response *r, void *user)
{
    struct pend *p = user;

    (void)call;
    p->status = r->status;
}

static void on_body(struct moor_http_call *call, const void *d, size_t n,
                    void *user)
{
    struct pend *p = user;
    char *nb;

    if (p->too_big)
        return;
    if (p->body_len + n > CB_MAX_ANSWER) {
        p->too_big = true;
        moor_http_call_cancel(call);
        return;
    }
    nb = mem_realloc(MEM_AUTH, p->body, p->body_len + n);
    if (!nb) {
        p->too_big = true;
        moor_http_call_cancel(call);
        return;
    }
    memcpy(nb + p->body_len, d, n);
    p->body = nb;
    p->body_len += n;
}

/* The verdict of a finished call. */
static unsigned verdict(struct pend *p, const struct moor_http_result *r)
{
    if (r->error == MOOR_ETIMEOUT_TOTAL || r->error == MOOR_ETIMEOUT_HEAD ||
        r->error == MOOR_ETIMEOUT_BODY || r->error == MOOR_ETIMEOUT_CONNECT ||
        r->error == MOOR_ETIMEOUT_WAIT || r->error == MOOR_ETIMEOUT_RESOLVE)
        return AUTH_CB_TIMEOUT;
    if (r->error || p->too_big)
        return AUTH_CB_ERROR;
    if (r->status == 401 || r->status == 403)
        return AUTH_CB_DENIED;
    if (r->status < 200 || r->status > 299)
        return AUTH_CB_ERROR;
    return answer_grant(p, p->body ? p->body : "", p->body_len) ? 0
                                                                : AUTH_CB_ERROR;
}

static void on_done(struct moor_http_call *call,
                    const struct moor_http_result *r, void *user)
{
    struct pend *p = user;
    struct auth_cb *cb = p->cb;
    struct auth *a = cb->a;
    uint64_t now = loop_wall_ms(a->loop);
    struct conn *c;

    (void)call;
    p->call = NULL;
    p->answered = true;
    p->answered_ms = loop_wall_ms(a->loop);
    a->st.cb_inflight--;
    p->reason = verdict(p, r);
    record_latency(&a->st, now > p->t0_ms ? now - p->t0_ms : 0);
    mem_free(MEM_AUTH, p->body);
    p->body = NULL;
    if (p->reason == AUTH_CB_ERROR || p->reason == AUTH_CB_TIMEOUT)
        LOG_WARN("auth callback failed", "url=\"%s\" status=%d err=\"%s\"",
                 cb->url, r->status, r->message ? r->message : "");
    /* Cancelled by us (too big an answer) is an answer; by the client's
     * end (auth_cb_free) is not. */
    if (r->error == -ECANCELED && !p->too_big) {
        pend_unlink(p);
        pend_free(p);
        return;
    }
    cache_put(cb, p, now);
    if (p->orphan) {
        pend_unlink(p);
        pend_free(p);
        return;
    }
    c = conn_set_find(p->set, p->fd, p->id);
    if (!c) {
        pend_unlink(p);
        pend_free(p);
        return;
    }
    conn_resume_read(c, PAUSE_AUTH); /* it asks again: auth_ask */
}

/* The question as JSON: what is asked, by whom, with which credentials. */
static int question(struct auth_cb *cb, struct conn *c,
                    const struct auth_question *q, struct sbuf *b)
{
    char peer[64];
    size_t a = 0, n = strlen(cb->forward);
    bool first = true;
    int rc;

    rc = sbuf_printf(b, "{\"action\":\"%s\",\"protocol\":\"%s\",\"channels\":[",
                     q->publish ? "publish" : "subscribe", q->protocol);
    for (size_t from = 0, i = 0; rc == 0 && i <= q->n; i++) {
        if (i < q->n && q->list[i] != q->sep)
            continue;
        if (from)
            rc = sbuf_puts(b, ",");
        if (rc == 0)
            rc = sbuf_json_str(b, q->list + from, i - from);
        from = i + 1;
    }
    if (rc == 0)
        rc = sbuf_puts(b, "],\"client\":");
    if (rc == 0) {
        conn_peer_str(c, peer, sizeof(peer));
        rc = sbuf_json_str(b, peer, strlen(peer));
    }
    if (rc == 0 && q->req) {
        rc = sbuf_printf(b, ",\"method\":\"%.*s\",\"path\":",
                         (int)q->req->method_str.len, q->req->method_str.p);
        if (rc == 0)
            rc = sbuf_json_str(b, q->req->target.p, q->req->target.len);
        if (rc == 0)
            rc = sbuf_puts(b, ",\"headers\":{");
        while (rc == 0 && a < n) {
            size_t e = a;
            char name[64];
            const struct http_str *v;

            while (e < n && cb->forward[e] != ',')
                e++;
            snprintf(name, sizeof(name), "%.*s", (int)(e - a), cb->forward + a);
            v = e > a ? http_header_get(q->req, name) : NULL;
            if (v) {
                rc = sbuf_printf(b, "%s", first ? "" : ",");
                if (rc == 0)
                    rc = sbuf_json_str(b, name, strlen(name));
                if (rc == 0)
                    rc = sbuf_puts(b, ":");
                if (rc == 0)
                    rc = sbuf_json_str(b, v->p, v->len);
                first = false;
            }
            a = e + 1;
        }
        if (rc == 0)
            rc = sbuf_puts(b, "}");
    }
    if (rc == 0 && q->token) {
        rc = sbuf_puts(b, ",\"token\":");
        if (rc == 0)
            rc = sbuf_json_str(b, q->token, q->token_len);
    }
    if (rc == 0)
        rc = sbuf_puts(b, "}");
    return rc;
}

/* The cache key: the question without who asks (the client's address
 * would make every key unique). */
static char *make_key(struct auth_cb *cb, const struct sbuf *b)
{
    const char *s = (const char *)b->data, *cl = strstr(s, ",\"client\":");
    const char *end;
    size_t n;
    char *k;

    if (!cb->cache || !cl)
        return NULL;
    end = strchr(cl + 11, '"'); /* the address's closing quote */
    if (!end)
        return NULL;
    n = b->len - (size_t)(end + 1 - cl);
    k = mem_alloc(MEM_AUTH, n + 1);
    if (!k)
        return NULL;
    memcpy(k, s, (size_t)(cl - s));
    memcpy(k + (cl - s), end + 1, b->len - (size_t)(end + 1 - s));
    k[n] = 0;
    return k;
}

/* Answers in the chain at pp that nobody took: their conn closed between
 * the answer and asking again (or never sent its command). Freed once
 * they are twice --auth-timeout old, so the table stays bounded by the
 * rate of questions; c's own is kept. */
static void sweep(struct auth_cb *cb, struct pend **pp, const struct conn *c,
                  uint64_t now)
{
    while (*pp) {
        struct pend *p = *pp;

        if (p->answered && p->c != c &&
            now - p->answered_ms > 2 * (uint64_t)cb->timeout_ms + 1000) {
            *pp = p->next;
            pend_free(p);
            continue;
        }
        pp = &p->next;
    }
}

/* c closed: its answer, if one waits, is dropped; a question still out
 * is freed by its on_done (which will not find c). */
void auth_forget(struct auth *a, struct conn *c)
{
    struct pend **pp;

    if (!a || !a->cb)
        return;
    for (pp = pend_slot(a->cb, c); *pp; pp = &(*pp)->next) {
        struct pend *p = *pp;

        if (p->c != c || p->orphan || p->id != conn_id(c))
            continue;
        if (p->answered) {
            *pp = p->next;
            pend_free(p);
        } else {
            p->orphan = true;
        }
        return;
    }
}

/* Takes p's answer into *g / *reason and frees p. */
static enum auth_verdict take(struct pend *p, struct jwt_grant *g,
                              unsigned *reason)
{
    enum auth_verdict v = p->reason ? AUTH_DENY : AUTH_ALLOW;

    *reason = p->reason;
    if (v == AUTH_ALLOW) {
        *g = p->g;
        memset(&p->g, 0, sizeof(p->g));
    }
    pend_unlink(p);
    pend_free(p);
    return v;
}

enum auth_verdict auth_ask(struct auth *a, struct conn *c,
                           const struct auth_question *q, struct jwt_grant *g,
                           unsigned *reason)
{
    struct auth_cb *cb = a->cb;
    struct moor_http_callbacks cbs = {
        .on_head = on_head, .on_body = on_body, .on_done = on_done};
    struct moor_http_field ctype = {"Content-Type", 12, "application/json", 16};
    struct moor_http_request rq;
    struct moor_error e = {0};
    uint64_t now = loop_wall_ms(a->loop);
    struct pend *p, **pp = pend_slot(cb, c);
    struct cached *hit;
    struct sbuf b;

    memset(g, 0, sizeof(*g));
    *reason = 0;
    sweep(cb, pp, c, now);
    for (p = *pp; p; p = p->next)
        if (p->c == c && !p->orphan)
            break;
    if (p && (p->id != conn_id(c) || p->fd != conn_fd(c))) {
        /* An older conn's, at the same place: an answer is dropped, a
         * question out is freed by its on_done. */
        if (p->answered)
            pend_unlink(p), pend_free(p);
        else
            p->orphan = true;
        p = NULL;
    }
    if (p)
        return p->answered ? take(p, g, reason) : AUTH_WAIT;
    sbuf_init(&b, MEM_AUTH, CB_MAX_QUESTION);
    if (question(cb, c, q, &b) < 0 || sbuf_append(&b, "", 1) < 0) {
        sbuf_fini(&b);
        *reason = AUTH_NO_SESSION; /* memory (or an absurd question) */
        return AUTH_DENY;
    }
    b.len--; /* the NUL is not sent */
    p = mem_calloc(MEM_AUTH, 1, sizeof(*p));
    if (!p) {
        sbuf_fini(&b);
        *reason = AUTH_NO_SESSION;
        return AUTH_DENY;
    }
    p->cb = cb;
    p->key = make_key(cb, &b);
    hit = cache_get(cb, p->key, now);
    if (hit) {
        a->st.cb_cache_hits++;
        sbuf_fini(&b);
        p->reason = hit->reason;
        if (!hit->reason && !grant_copy(&p->g, &hit->g))
            p->reason = AUTH_NO_SESSION;
        return take(p, g, reason); /* unlinked: a no-op */
    }
    if ((uint32_t)a->st.cb_inflight >= cb->max_inflight) {
        sbuf_fini(&b);
        pend_free(p);
        *reason = AUTH_CB_BUSY;
        return AUTH_DENY;
    }
    p->set = conn_set_of(c);
    p->c = c;
    p->fd = conn_fd(c);
    p->id = conn_id(c);
    p->t0_ms = now;
    moor_http_request_init(&rq);
    rq.method = "POST";
    rq.url = cb->url;
    rq.headers = &ctype;
    rq.n_headers = 1;
    rq.body = b.data;
    rq.body_len = b.len;
    rq.timeout_ms = cb->timeout_ms;
    p->next = *pp; /* linked first: on_done may run before we return */
    *pp = p;
    a->st.cb_inflight++;
    a->st.cb_calls++;
    p->call = moor_http_client_request(cb->cl, &rq, &cbs, p, &e);
    sbuf_fini(&b);
    if (!p->call) {
        a->st.cb_inflight--;
        pend_unlink(p);
        pend_free(p);
        LOG_WARN("auth callback failed", "url=\"%s\" err=\"%s\"", cb->url,
                 e.message);
        *reason = AUTH_CB_ERROR;
        return AUTH_DENY;
    }
    return AUTH_WAIT;
}

uint32_t auth_wait_ms(const struct auth *a)
{
    return a->cb ? a->cb->timeout_ms : 0;
}

const struct moor_http_client *auth_client(const struct auth *a)
{
    return a && a->url && a->cb ? a->cb->cl : NULL;
}
