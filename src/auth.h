/*
 * auth.h - who may subscribe and publish (issue 16, docs/auth.md).
 *
 * With --auth jwt, every subscription and publication carries a JSON Web
 * Token (jwt.h): in "Authorization: Bearer", a "token" query parameter
 * (browsers cannot set headers on WebSocket or EventSource), a cookie
 * (--auth-cookie), or the TCP protocol's "AUTH <token>" first frame. The
 * token's claims say which channels it may subscribe to and publish to;
 * a connection that outlives its token is closed when it expires: one
 * timer per authenticated connection (auth_attach), not a scan.
 *
 * Keeps: the keys are loaded at start and on SIGHUP (a failed reload keeps
 * the old ones); no token is ever logged; every byte under the auth tag.
 * A connection's session (its expiry timer and its token's subject, for
 * /debug/conns) lives from auth_attach() to auth_detach() (its close).
 */
#ifndef MOOR_AUTH_H
#define MOOR_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "http1.h"
#include "jwt.h"

struct moor_http_client;

struct conn;
struct loop;

struct auth_opts {
    bool jwt; /* --auth jwt; false: everyone may do all */
    /* --auth url: each subscription and publication is asked of url
     * (auth_callback.c); the --jwt-* fields are not used then. */
    const char *url;
    uint32_t url_timeout_ms;     /* --auth-timeout */
    uint32_t url_max_inflight;   /* --auth-max-inflight */
    uint32_t cache_ttl_ms;       /* --auth-cache-ttl, 0: no cache */
    uint32_t cache_entries;      /* --auth-cache-entries */
    const char *forward_headers; /* --auth-forward-headers: a,b,c */
    const char *secret_file;     /* --jwt-secret-file, "" none */
    const char *key_files;       /* --jwt-key-file: FILE or KID=FILE, ... */
    const char *cookie;    /* --auth-cookie: the token's cookie, "" none */
    struct jwt_opts jwt_o; /* leeway, size, audience, issuer, claims */
};

/* Why a request was refused, beyond the token's own reasons (jwt.h's
 * enum jwt_reason, 1..JWT_REASON_COUNT-1, share the numbering). */
enum auth_reason {
    AUTH_NO_TOKEN = JWT_REASON_COUNT, /* none in the request */
    AUTH_NOT_ALLOWED,                 /* valid, but not for that channel */
    AUTH_NO_SESSION,                  /* no memory to track its expiry */
    AUTH_CB_DENIED,                   /* the callback answered 401/403 */
    AUTH_CB_ERROR,   /* it answered something else, or could not be asked */
    AUTH_CB_TIMEOUT, /* no answer within --auth-timeout */
    AUTH_CB_BUSY,    /* --auth-max-inflight calls already out */
    AUTH_REASON_COUNT
};

/* The label of a reason in moor_auth_total{result="denied",reason=...}:
 * jwt_reason_name()'s, "no_token", "not_allowed", "no_memory". */
const char *auth_reason_name(unsigned reason);

struct auth_stats {
    uint64_t allowed;                   /* requests let through */
    uint64_t denied[AUTH_REASON_COUNT]; /* by reason (0 unused) */
    uint64_t expired;                   /* connections closed at expiry */
    uint64_t reloads_ok, reloads_failed;
    long sessions; /* authenticated connections open */
    /* --auth url. */
    uint64_t cb_calls;                 /* requests sent to the callback */
    uint64_t cb_cache_hits;            /* decisions taken from the cache */
    long cb_inflight;                  /* calls out now */
    long cb_cached;                    /* decisions in the cache */
    uint64_t cb_lat[CONN_LAT_BUCKETS]; /* answer times (CONN_LAT_BOUNDS_US) */
    double cb_lat_sum_s;
};

struct auth;

/* Called when c's token expires: close it the protocol's way (the session
 * is already gone). */
typedef void auth_expire_fn(struct conn *c, void *arg);

/* Loads the keys. NULL with a one-line reason in err (bad or missing key
 * file, no key at all, out of memory). With o->jwt false: an auth that
 * allows everything (auth_on() false), never NULL but for memory. */
struct auth *auth_new(struct loop *l, const struct auth_opts *o,
                      auth_expire_fn *on_expire, void *arg, char *err,
                      size_t errlen);
/* After every connection it tracks is closed. NULL is a no-op. */
void auth_free(struct auth *a);
bool auth_on(const struct auth *a);
/* SIGHUP: loads the key files again; 0, or -1 with err (the old keys stay
 * in service). Open connections keep their expiry. */
int auth_reload(struct auth *a, char *err, size_t errlen);
const struct auth_stats *auth_stats(const struct auth *a);
/* --max-token-bytes (0 when off). */
uint32_t auth_max_token_bytes(const struct auth *a);

/* The token of an HTTP request (header, then query, then cookie). False
 * if none. */
bool auth_find_token(const struct auth *a, const struct http_request *req,
                     struct http_str *tok);

/* Checks a token (JWT_OK fills *g: free it with jwt_grant_free()); counts
 * nothing (the caller decides with auth_allowed/auth_denied). */
enum jwt_reason auth_check(struct auth *a, const char *tok, size_t len,
                           struct jwt_grant *g);
/* Whether g lets its holder subscribe to every channel of the comma- (or
 * space-, sep) separated list[0..n), or publish to it. */
bool auth_grant_list(const struct jwt_grant *g, bool publish, const char *list,
                     size_t n, char sep);
void auth_count_allowed(struct auth *a);
/* Counts and logs (rate limited, never the token) a refusal of c. */
void auth_count_denied(struct auth *a, struct conn *c, unsigned reason,
                       const char *what);

/* --auth url: what a request asks for. */
struct auth_question {
    bool publish;
    const char *list; /* its channels, sep-separated */
    size_t n;
    char sep;
    const char *protocol;           /* "websocket", "sse", "http", "tcp" */
    const struct http_request *req; /* its header block, or NULL (TCP) */
    const char *token;              /* TCP: the AUTH frame's token */
    size_t token_len;
};
enum auth_verdict { AUTH_ALLOW = 0, AUTH_DENY, AUTH_WAIT };
/* The callback's verdict on c's request. AUTH_ALLOW fills *g (what the
 * answer granted, its "exp"; jwt_grant_free()); AUTH_DENY sets *reason;
 * AUTH_WAIT: the question is out, and c's reading is to stay paused
 * (PAUSE_AUTH) until the answer resumes it; then ask again (the answer is
 * kept for c, or the question asked anew if c changed). */
enum auth_verdict auth_ask(struct auth *a, struct conn *c,
                           const struct auth_question *q, struct jwt_grant *g,
                           unsigned *reason);
/* --auth url: c closed while its question was out or its answer waited
 * (a no-op otherwise). */
void auth_forget(struct auth *a, struct conn *c);
/* True with --auth url. */
bool auth_is_callback(const struct auth *a);
/* --auth url's pooled HTTP client (for /metrics), or NULL. */
const struct moor_http_client *auth_client(const struct auth *a);
/* How long a request may wait for the callback (--auth-timeout). */
uint32_t auth_wait_ms(const struct auth *a);

/* Tracks c until its token expires (then on_expire) or auth_detach().
 * Returns 0 or -ENOMEM. */
int auth_attach(struct auth *a, struct conn *c, const struct jwt_grant *g);
/* c closed: its session goes (a no-op if it has none). */
void auth_detach(struct auth *a, struct conn *c);
/* The subject ("sub") of c's token for /debug/conns, or NULL. */
const char *auth_subject(const struct auth *a, const struct conn *c);

#endif
