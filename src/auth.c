/*
 * auth.c - tokens found in requests, checked with jwt.c, and a timer per
 * authenticated connection that ends it when its token expires; see
 * auth.h.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "auth_int.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "timer.h"
#include "util.h"

/* A tracked connection: its expiry timer and its token's subject. */
struct auth_sess {
    struct timer t;
    struct auth_sess *next; /* hash chain */
    struct auth *a;
    struct conn *c;
    int64_t end_s; /* exp + leeway: the connection ends then */
    char sub[];
};

#define AUTH_MIN_BUCKETS 64
/* The longest a timer is armed at once (the wheel takes uint32_t ms); a
 * later expiry re-arms when it fires. */
#define AUTH_MAX_ARM_MS (24u * 3600 * 1000)

const char *auth_reason_name(unsigned reason)
{
    switch (reason) {
    case AUTH_NO_TOKEN:
        return "no_token";
    case AUTH_NOT_ALLOWED:
        return "not_allowed";
    case AUTH_NO_SESSION:
        return "no_memory";
    case AUTH_CB_DENIED:
        return "callback_denied";
    case AUTH_CB_ERROR:
        return "callback_error";
    case AUTH_CB_TIMEOUT:
        return "callback_timeout";
    case AUTH_CB_BUSY:
        return "callback_busy";
    default:
        return reason < JWT_REASON_COUNT
                   ? jwt_reason_name((enum jwt_reason)reason)
                   : "unknown";
    }
}

static char *dup_or_null(const char *s, bool *fail)
{
    char *d;

    if (!s || !s[0])
        return NULL;
    d = mem_strndup(MEM_AUTH, s, strlen(s));
    if (!d)
        *fail = true;
    return d;
}

static void free_strings(struct auth *a)
{
    char **all[] = {&a->secret_file, &a->key_files, &a->cookie,   &a->audience,
                    &a->issuer,      &a->ch_claim,  &a->pub_claim};

    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        mem_free(MEM_AUTH, *all[i]);
        *all[i] = NULL;
    }
}

struct auth *auth_new(struct loop *l, const struct auth_opts *o,
                      auth_expire_fn *on_expire, void *arg, char *err,
                      size_t errlen)
{
    struct auth *a = mem_calloc(MEM_AUTH, 1, sizeof(*a));
    bool fail = false;

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = l;
    a->on_expire = on_expire;
    a->arg = arg;
    a->jwt = o->jwt;
    a->url = o->url && o->url[0];
    if (!a->jwt && !a->url)
        return a;
    a->secret_file = dup_or_null(o->secret_file, &fail);
    a->key_files = dup_or_null(o->key_files, &fail);
    a->cookie = dup_or_null(o->cookie, &fail);
    a->audience = dup_or_null(o->jwt_o.audience, &fail);
    a->issuer = dup_or_null(o->jwt_o.issuer, &fail);
    a->ch_claim = dup_or_null(o->jwt_o.channels_claim, &fail);
    a->pub_claim = dup_or_null(o->jwt_o.publish_claim, &fail);
    a->n_buckets = AUTH_MIN_BUCKETS;
    a->buckets = mem_calloc(MEM_AUTH, a->n_buckets, sizeof(*a->buckets));
    if (fail || !a->buckets) {
        snprintf(err, errlen, "out of memory");
        auth_free(a);
        return NULL;
    }
    a->jo = o->jwt_o;
    a->jo.audience = a->audience;
    a->jo.issuer = a->issuer;
    a->jo.channels_claim = a->ch_claim;
    a->jo.publish_claim = a->pub_claim;
    if (a->url) {
        if (auth_cb_new(a, o, err, errlen) < 0) {
            auth_free(a);
            return NULL;
        }
        return a;
    }
    a->keys = jwt_keys_load(a->secret_file, a->key_files, err, errlen);
    if (!a->keys) {
        auth_free(a);
        return NULL;
    }
    return a;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->buckets && i < a->n_buckets; i++)
        while (a->buckets[i])
            auth_detach(a, a->buckets[i]->c);
    mem_free(MEM_AUTH, a->buckets);
    auth_cb_free(a);
    jwt_keys_free(a->keys);
    free_strings(a);
    mem_free(MEM_AUTH, a);
}

bool auth_on(const struct auth *a)
{
    return a && (a->jwt || a->url);
}

bool auth_is_callback(const struct auth *a)
{
    return a && a->url;
}

int auth_reload(struct auth *a, char *err, size_t errlen)
{
    struct jwt_keys *k;

    if (!a || !a->jwt) {
        snprintf(err, errlen, "no --auth jwt: no key to reload");
        return -1;
    }
    k = jwt_keys_load(a->secret_file, a->key_files, err, errlen);
    if (!k) {
        a->st.reloads_failed++;
        return -1;
    }
    jwt_keys_free(a->keys);
    a->keys = k;
    a->st.reloads_ok++;
    return 0;
}

const struct auth_stats *auth_stats(const struct auth *a)
{
    return &a->st;
}

uint32_t auth_max_token_bytes(const struct auth *a)
{
    return auth_on(a) ? a->jo.max_token_bytes : 0;
}

/* ---- finding the token ---------------------------------------------------
 */

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static struct http_str trim(const char *p, size_t n)
{
    while (n && is_ows(*p)) {
        p++;
        n--;
    }
    while (n && is_ows(p[n - 1]))
        n--;
    return (struct http_str){p, n};
}

/* "Authorization: Bearer TOKEN" (RFC 6750 2.1; the scheme in any case). */
static bool from_header(const struct http_request *req, struct http_str *tok)
{
    const struct http_str *v = http_header_get(req, "authorization");

    if (!v || v->len < 7 || strncasecmp(v->p, "bearer", 6) != 0 ||
        !is_ows(v->p[6]))
        return false;
    *tok = trim(v->p + 7, v->len - 7);
    return tok->len > 0;
}

/* The value of name in an "a=1&b=2" or "a=1; b=2" list (sep '&' or ';'),
 * trimmed, taken as it is: a JWT's characters (A-Z a-z 0-9 - _ .) need no
 * percent-encoding, and one that has any is refused as malformed. */
static bool from_list(struct http_str list, const char *name, char sep,
                      struct http_str *val)
{
    size_t nl = strlen(name), a = 0;

    while (a < list.len) {
        size_t b = a;
        struct http_str item;

        while (b < list.len && list.p[b] != sep)
            b++;
        item = trim(list.p + a, b - a);
        if (item.len > nl && item.p[nl] == '=' &&
            memcmp(item.p, name, nl) == 0) {
            *val = trim(item.p + nl + 1, item.len - nl - 1);
            return val->len > 0;
        }
        a = b + 1;
    }
    return false;
}

bool auth_find_token(const struct auth *a, const struct http_request *req,
                     struct http_str *tok)
{
    const struct http_str *cookies;

    if (from_header(req, tok) || from_list(req->query, "token", '&', tok))
        return true;
    if (!a->cookie)
        return false;
    cookies = http_header_get(req, "cookie");
    return cookies && from_list(*cookies, a->cookie, ';', tok);
}

/* ---- checking ------------------------------------------------------------
 */

enum jwt_reason auth_check(struct auth *a, const char *tok, size_t len,
                           struct jwt_grant *g)
{
    return jwt_verify(a->keys, &a->jo, tok, len,
                      (int64_t)(loop_wall_ms(a->loop) / 1000), g);
}

bool auth_grant_list(const struct jwt_grant *g, bool publish, const char *list,
                     size_t n, char sep)
{
    size_t a = 0;

    while (a <= n) {
        size_t b = a;

        while (b < n && list[b] != sep)
            b++;
        if (!jwt_grant_allows(g, publish, list + a, b - a))
            return false;
        a = b + 1;
    }
    return true;
}

void auth_count_allowed(struct auth *a)
{
    a->st.allowed++;
}

void auth_count_denied(struct auth *a, struct conn *c, unsigned reason,
                       const char *what)
{
    char peer[64];

    if (reason == AUTH_NO_SESSION) /* one label for memory */
        reason = JWT_NO_MEMORY;
    if (reason > 0 && reason < AUTH_REASON_COUNT)
        a->st.denied[reason]++;
    LOG_INFO("auth denied", "conn=%llu peer=%s reason=%s what=\"%s\"",
             (unsigned long long)conn_id(c),
             conn_peer_str(c, peer, sizeof(peer)), auth_reason_name(reason),
             what);
}

/* ---- sessions ------------------------------------------------------------
 */

static size_t slot_of(const struct auth *a, const struct conn *c)
{
    uint64_t h = (uint64_t)(uintptr_t)c * 0x9E3779B97F4A7C15ull;

    return (size_t)(h >> 32) & (a->n_buckets - 1);
}

static struct auth_sess **find(const struct auth *a, const struct conn *c)
{
    struct auth_sess **pp = &a->buckets[slot_of(a, c)];

    while (*pp && (*pp)->c != c)
        pp = &(*pp)->next;
    return pp;
}

/* Doubles the table when it holds a session per bucket (a failed growth
 * keeps the table: chains get longer, nothing is lost). */
static void maybe_grow(struct auth *a)
{
    size_t n = a->n_buckets * 2, old = a->n_buckets;
    struct auth_sess **nb, **ob = a->buckets;

    if ((size_t)a->st.sessions < a->n_buckets)
        return;
    nb = mem_calloc(MEM_AUTH, n, sizeof(*nb));
    if (!nb)
        return;
    a->buckets = nb;
    a->n_buckets = n;
    for (size_t i = 0; i < old; i++)
        while (ob[i]) {
            struct auth_sess *s = ob[i];
            size_t k = slot_of(a, s->c);

            ob[i] = s->next;
            s->next = nb[k];
            nb[k] = s;
        }
    mem_free(MEM_AUTH, ob);
}

static void arm(struct auth_sess *s)
{
    int64_t now_ms = (int64_t)loop_wall_ms(s->a->loop);
    int64_t left = s->end_s < INT64_MAX / 1000 - 1
                       ? s->end_s * 1000 - now_ms
                       : (int64_t)AUTH_MAX_ARM_MS; /* no overflow */

    if (left < 1)
        left = 1;
    if (left > AUTH_MAX_ARM_MS)
        left = AUTH_MAX_ARM_MS;
    loop_timer_in(s->a->loop, &s->t, (uint32_t)left);
}

static void on_expiry(struct timer *t)
{
    struct auth_sess *s = container_of(t, struct auth_sess, t);
    struct auth *a = s->a;
    struct conn *c = s->c;

    if (s->end_s >= INT64_MAX / 1000 - 1 ||
        (int64_t)loop_wall_ms(a->loop) < s->end_s * 1000) {
        arm(s); /* further than one arming could reach */
        return;
    }
    auth_detach(a, c);
    a->st.expired++;
    if (a->on_expire)
        a->on_expire(c, a->arg);
}

int auth_attach(struct auth *a, struct conn *c, const struct jwt_grant *g)
{
    size_t sl = strlen(g->sub);
    struct auth_sess *s, **pp;

    if (!auth_on(a))
        return 0;
    s = mem_alloc(MEM_AUTH, sizeof(*s) + sl + 1);
    if (!s)
        return -ENOMEM;
    timer_init(&s->t, on_expiry);
    s->a = a;
    s->c = c;
    /* --jwt-leeway is for a token's clock; a callback's exp is taken as
     * it is. */
    s->end_s = g->exp + (a->jwt ? (int64_t)a->jo.leeway_s : 0);
    memcpy(s->sub, g->sub, sl + 1);
    pp = find(a, c);
    if (*pp) /* attached twice: the newer token's expiry wins */
        auth_detach(a, c), pp = find(a, c);
    s->next = NULL;
    *pp = s;
    a->st.sessions++;
    arm(s);
    maybe_grow(a);
    return 0;
}

void auth_detach(struct auth *a, struct conn *c)
{
    struct auth_sess **pp, *s;

    if (!auth_on(a))
        return;
    pp = find(a, c);
    s = *pp;
    if (!s)
        return;
    *pp = s->next;
    timer_cancel(loop_timers(a->loop), &s->t);
    a->st.sessions--;
    mem_free(MEM_AUTH, s);
}

const char *auth_subject(const struct auth *a, const struct conn *c)
{
    const struct auth_sess *s;

    if (!auth_on(a))
        return NULL;
    s = *find(a, c);
    return s ? s->sub : NULL;
}
