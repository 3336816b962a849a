/*
 * http_client_call.c - calls, the requests in flight of the HTTP client
 * (docs/http_client.md): checking a request and building its head, the
 * end of every call (on_done exactly once, never from inside
 * moor_http_client_request(): failures found there wait for the end of
 * the loop iteration), the call's own deadlines (the queue wait, the
 * whole request), and the caller's controls (write, pause, cancel).
 *
 * A call's life: moor_http_client_request() checks and copies the request
 * into its head message (and body message), then hc_call_start() finds
 * it a connection (http_client_conn.c). on_done ends it; it is freed
 * right after, or when the last of its callbacks still running returns.
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
#include "tls.h"
#include "util.h"

/* ---- the request's defaults ---------------------------------------------- */

static void request_defaults(void *p, size_t size)
{
    const struct moor_http_request d = {
        .size = sizeof(d),
        .method = "GET",
        .body_length = -1,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_http_request_init_(struct moor_http_request *r, size_t size)
{
    request_defaults(r, size);
}

/* ---- calls: user callbacks ---------------------------------------------- */

void hc_call_free(struct moor_http_call *call)
{
    msg_unref(call->body);
    if (call->head != (struct msg *)(void *)call->head_mem) {
        msg_unref(call->head);
    } else if (msg_shared(call->head)) {
        /* A connection still holds the head it embeds: never so (every
         * path closes or purges the connection first). Keep the call's
         * memory rather than free it under a reference. */
        LOG_ERROR("http client: call freed while its head is queued", "host=%s",
                  call->host ? call->host->key : "?");
        return;
    }
    pool_free(&call->cl->call_pool, call);
}

void hc_cb_enter(struct moor_http_call *call)
{
    call->in_cb++;
}

/* After a user callback: false if the call ended meanwhile (then it may
 * be freed already: do not touch it). */
bool hc_cb_leave(struct moor_http_call *call)
{
    call->in_cb--;
    if (!call->dead)
        return true;
    if (!call->in_cb)
        hc_call_free(call);
    return false;
}

static void later_unlink(struct moor_http_call *call)
{
    struct moor_http_client *cl = call->cl;

    if (call->prev)
        call->prev->next = call->next;
    else
        cl->later_head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        cl->later_tail = call->prev;
    call->next = call->prev = NULL;
    call->later = false;
}

void hc_wait_unlink(struct moor_http_call *call)
{
    struct hc_host *h = call->host;

    if (call->prev)
        call->prev->next = call->next;
    else
        h->wait_head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        h->wait_tail = call->prev;
    call->next = call->prev = NULL;
    ST_ADD(h, waiting, -1);
    timer_cancel(loop_timers(call->cl->loop), &call->wait);
}

/* Detaches call from whatever holds it (queue, resolver, connection) and
 * runs on_done. Idempotent. A failure found inside
 * moor_http_client_request() waits on the later list for the end of the
 * loop iteration. */
/* A connection still holds the head that lives in the call (a
 * connection closing under it: its queue goes after its on_close). */
static bool head_queued(const struct moor_http_call *call)
{
    return call->head == (const struct msg *)(const void *)call->head_mem &&
           msg_shared(call->head);
}

void hc_call_finish(struct moor_http_call *call, int err, const char *fmt, ...)
{
    struct moor_http_client *cl = call->cl;
    struct hc_host *h = call->host;
    struct moor_http_result res;
    va_list ap;

    if (call->state == C_DONE || call->dead)
        return;
    if (fmt && !call->message[0]) {
        va_start(ap, fmt);
        vsnprintf(call->message, sizeof(call->message), fmt, ap);
        va_end(ap);
    }
    if (!call->error)
        call->error = err;
    if ((cl->in_request || head_queued(call)) && !call->later) {
        /* Not from inside moor_http_client_request(); and not while a
         * connection closing under the call (its on_close) still holds
         * the head that lives in the call: at the end of the iteration. */
        if (call->conn) {
            ((struct hc_conn *)conn_ext(call->conn))->call = NULL;
            call->conn = NULL;
        }
        if (call->state == C_WAITING)
            hc_wait_unlink(call);
        if (call->state == C_RESOLVING) {
            resolve_cancel(call->rq);
            call->rq = NULL;
            ST_ADD(h, dialing, -1);
        }
        call->state = C_NEW;
        call->later = true;
        call->prev = cl->later_tail;
        call->next = NULL;
        if (cl->later_tail)
            cl->later_tail->next = call;
        else
            cl->later_head = call;
        cl->later_tail = call;
        loop_poke(cl->loop);
        return;
    }
    if (call->later)
        later_unlink(call);
    switch (call->state) {
    case C_WAITING:
        hc_wait_unlink(call);
        break;
    case C_RESOLVING:
        resolve_cancel(call->rq);
        call->rq = NULL;
        ST_ADD(h, dialing, -1);
        hc_host_kick(h);
        break;
    case C_DIALING:
    case C_RUNNING:
        if (call->conn) {
            struct conn *c = call->conn;
            struct hc_conn *hc = conn_ext(c);

            hc->call = NULL;
            call->conn = NULL;
            /* Still dialing: its request is queued but not a byte of it
             * went out. Dropped, so the connection joins the pool clean;
             * were it sent, the server would answer a request nobody
             * waits for and the pooled connection die of the stray
             * bytes. */
            if (call->state == C_DIALING) {
                conn_queue_purge(c);
                if (conn_queued_bytes(c))
                    conn_close(c, CLOSE_DONE);
            }
        }
        break;
    default:
        break;
    }
    call->state = C_DONE;
    timer_cancel(loop_timers(cl->loop), &call->total);
    timer_cancel(loop_timers(cl->loop), &call->wait);
    cl->calls--;
    if (call->all_prev)
        call->all_prev->all_next = call->all_next;
    else
        cl->all = call->all_next;
    if (call->all_next)
        call->all_next->all_prev = call->all_prev;
    memset(&res, 0, sizeof(res));
    res.error = call->error;
    res.status = call->status;
    res.retried = call->retried;
    res.reused = call->reused;
    res.body_bytes = call->body_bytes;
    res.message = call->message;
    call->dead = true;
    hc_cb_enter(call);
    if (call->cb.on_done)
        call->cb.on_done(call, &res, call->user);
    hc_cb_leave(call);
}

/* The end of every loop iteration: failures found inside
 * moor_http_client_request() get their on_done now. */
void hc_on_hook(struct loop_hook *hk)
{
    struct moor_http_client *cl =
        container_of(hk, struct moor_http_client, hook);
    struct moor_http_call *call;

    /* hc_call_finish() takes it off the list (it is still on it, so the
     * unlink there keeps the rest of the list). */
    while ((call = cl->later_head))
        hc_call_finish(call, call->error, NULL);
    if (cl->n_release || cl->hs_release)
        hc_release_held(cl);
    if (cl->n_bufs)
        hc_release_bufs(cl);
}

/* ---- deadlines of a call ------------------------------------------------ */

static void on_total(struct timer *t)
{
    struct moor_http_call *call = container_of(t, struct moor_http_call, total);
    struct conn *c = call->conn;

    call->error = MOOR_ETIMEOUT_TOTAL;
    snprintf(call->message, sizeof(call->message),
             "the request took longer than its %u ms", call->timeout_ms);
    if (c && call->state == C_RUNNING) {
        /* Half written or half answered: the connection cannot be reused.
         * Its on_close settles the call (and may free it). */
        conn_close(c, CLOSE_BODY_TIMEOUT);
        return;
    }
    /* Dialing: the connection goes on and joins the pool if it makes it. */
    hc_call_finish(call, MOOR_ETIMEOUT_TOTAL, NULL);
}

static void on_wait(struct timer *t)
{
    struct moor_http_call *call = container_of(t, struct moor_http_call, wait);

    hc_call_finish(call, MOOR_ETIMEOUT_WAIT,
                   "no connection to %s came free within %u ms (%u open, "
                   "max_conns_per_host)",
                   call->host->key, call->cl->o.wait_timeout_ms,
                   (unsigned)hc_host_conns(call->host));
}

/* ---- the request -------------------------------------------------------- */

static bool is_token_char(unsigned char c)
{
    return ascii_is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s, size_t max)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (n >= max || !is_token_char((unsigned char)s[n]))
            return false;
    return n > 0;
}

/* A field value: visible characters, spaces and tabs, obs-text; no CR, LF
 * or NUL (the response-splitting guard), no leading or trailing space. */
static bool is_field_value(const char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return n == 0 ||
           (s[0] != ' ' && s[0] != '\t' && s[n - 1] != ' ' && s[n - 1] != '\t');
}

/* Headers moor writes itself. */
static bool reserved_header(const char *name)
{
    static const char *const names[] = {
        "host",       "content-length", "transfer-encoding",
        "connection", "upgrade",        "keep-alive",
        "te",         "trailer",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(name, names[i]))
            return true;
    return false;
}

static bool method_idempotent(const char *m)
{
    static const char *const names[] = {"GET",    "HEAD",    "PUT",
                                        "DELETE", "OPTIONS", "TRACE"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(m, names[i]))
            return true;
    return false;
}

/* Methods whose requests carry a body by their definition: an empty one
 * is said with Content-Length: 0 (RFC 9110 8.6). */
static bool method_has_body(const char *m)
{
    return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
}

/* Appends n bytes to the head being built. */
static uint8_t *put(uint8_t *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Builds the request head into a new message, in one allocation: its
 * length first, then its bytes. Returns it, or NULL with err filled. */
static struct msg *build_head(struct moor_http_call *call,
                              const struct moor_http_request *r,
                              const struct url *u, bool produced,
                              struct moor_error *err)
{
    char framing[64] = "";
    size_t len, ml = strlen(r->method), tl = strlen(u->target),
                al = strlen(u->authority), fl;
    struct msg *m;
    uint8_t *p;

    if (produced && r->body_length < 0)
        snprintf(framing, sizeof(framing), "Transfer-Encoding: chunked\r\n");
    else if (produced)
        snprintf(framing, sizeof(framing), "Content-Length: %lld\r\n",
                 r->body_length);
    else if (r->body_len || method_has_body(r->method))
        snprintf(framing, sizeof(framing), "Content-Length: %zu\r\n",
                 r->body_len);
    fl = strlen(framing);
    /* "M T HTTP/1.1\r\nHost: A\r\n" ... framing "\r\n" */
    len = ml + 1 + tl + 11 + 6 + al + 2 + fl + 2;
    for (size_t i = 0; i < r->n_headers; i++) {
        len += strlen(r->headers[i].name) + 2 + strlen(r->headers[i].value) + 2;
        if (len > HC_MAX_HEADLEN)
            break;
    }
    if (len > HC_MAX_HEADLEN) {
        api_fail(err, -EINVAL, "request head over 64 KiB");
        return NULL;
    }
    m = len <= HC_INLINE_HEAD ? msg_embed(call->head_mem, NULL, len)
                              : msg_new(NULL, len);
    if (!m) {
        api_fail(err, -ENOMEM, "out of memory");
        return NULL;
    }
    p = m->data;
    p = put(p, r->method, ml);
    p = put(p, " ", 1);
    p = put(p, u->target, tl);
    p = put(p, " HTTP/1.1\r\nHost: ", 17);
    p = put(p, u->authority, al);
    p = put(p, "\r\n", 2);
    for (size_t i = 0; i < r->n_headers; i++) {
        p = put(p, r->headers[i].name, strlen(r->headers[i].name));
        p = put(p, ": ", 2);
        p = put(p, r->headers[i].value, strlen(r->headers[i].value));
        p = put(p, "\r\n", 2);
    }
    p = put(p, framing, fl);
    p = put(p, "\r\n", 2);
    return m;
}

static int check_request(const struct moor_http_request *r,
                         const struct moor_http_callbacks *cb,
                         struct moor_error *err)
{
    if (!r->method || !is_token(r->method, HC_MAX_METHOD))
        return api_fail(err, -EINVAL,
                        "bad method \"%s\": want a token "
                        "such as GET or POST",
                        r->method ? r->method : "(null)");
    if (r->n_headers && !r->headers)
        return api_fail(err, -EINVAL, "n_headers without headers");
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct moor_http_field *f = &r->headers[i];

        if (!f->name || !is_token(f->name, 256))
            return api_fail(err, -EINVAL, "header %zu: bad name \"%s\"", i,
                            f->name ? f->name : "(null)");
        if (!f->value || !is_field_value(f->value))
            return api_fail(err, -EINVAL,
                            "header %s: the value has a control character "
                            "(CR, LF, NUL) or leading/trailing space",
                            f->name);
        if (reserved_header(f->name))
            return api_fail(err, -EINVAL,
                            "header %s is moor's to write (from the URL, "
                            "the body and the pool)",
                            f->name);
    }
    if (cb && cb->on_writable && (r->body || r->body_len))
        return api_fail(err, -EINVAL,
                        "a body from memory and on_writable both given");
    if (r->body_len && !r->body)
        return api_fail(err, -EINVAL, "body_len without body");
    if (cb && cb->on_writable && r->body_length < -1)
        return api_fail(err, -EINVAL, "body_length must be -1 or more");
    return 0;
}

static bool has_idempotency_key(const struct moor_http_request *r)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->headers[i].name, "Idempotency-Key"))
            return true;
    return false;
}

MOOR_API struct moor_http_call *moor_http_client_request(
    struct moor_http_client *cl, const struct moor_http_request *r,
    const struct moor_http_callbacks *cb, void *user, struct moor_error *err)
{
    struct moor_http_request rq;
    struct moor_http_call *call;
    struct hc_host *h;
    struct url url, *u = &url; /* 8.5 KiB, on the stack: no allocation */
    const char *why;

    if (!cl || !r)
        return api_fail(err, -EINVAL, "no client or no request"), NULL;
    if (cl->freeing)
        return api_fail(err, MOOR_ESTATE, "the client is being freed"), NULL;
    if (api_options(&rq, sizeof(rq), r, request_defaults, "moor_http_request",
                    err) < 0)
        return NULL;
    if (!rq.method)
        rq.method = "GET";
    /* The deadlines armed below count from now: the loop's cached clock
     * is stale when the caller starts a request from outside the loop
     * after a while (loop.c refreshes it mid-iteration too). */
    loop_update_time(cl->loop);
    if (check_request(&rq, cb, err) < 0)
        return NULL;
    why = url_parse(rq.url ? rq.url : "", u);
    if (!why && strcmp(u->scheme, "http") && strcmp(u->scheme, "https"))
        why = "URL scheme must be http or https";
    if (why) {
        api_fail(err, MOOR_EURL, "bad URL \"%s\": %s", rq.url ? rq.url : "",
                 why);
        return NULL;
    }
    call = pool_alloc(&cl->call_pool);
    if (!call)
        return api_fail(err, -ENOMEM, "out of memory"), NULL;
    call->cl = cl;
    call->produced = cb && cb->on_writable;
    call->head = build_head(call, &rq, u, call->produced, err);
    if (!call->head)
        goto fail;
    if (rq.body_len && !(call->body = msg_new(rq.body, rq.body_len))) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    h = hc_host_get(cl, u);
    if (!h) {
        api_fail(err, -ENOMEM, "out of memory");
        goto fail;
    }
    if (h->tls && !cl->tls && hc_client_tls(cl, err) < 0)
        goto fail;

    call->host = h;
    if (cb)
        call->cb = *cb;
    call->user = user;
    call->body_length =
        call->produced ? rq.body_length : (long long)rq.body_len;
    call->head_req = !strcmp(rq.method, "HEAD");
    call->idempotent =
        !call->produced && (rq.idempotent || method_idempotent(rq.method) ||
                            has_idempotency_key(&rq));
    timer_init(&call->total, on_total);
    timer_init(&call->wait, on_wait);
    cl->calls++;
    ST_ADD(h, requests, 1);
    call->timeout_ms = rq.timeout_ms ? rq.timeout_ms : cl->o.total_timeout_ms;
    if (call->timeout_ms)
        loop_timer_in(cl->loop, &call->total, call->timeout_ms);
    call->all_next = cl->all;
    if (cl->all)
        cl->all->all_prev = call;
    cl->all = call;
    cl->in_request = true;
    hc_call_start(call);
    cl->in_request = false;
    return call;

fail:
    hc_call_free(call);
    return NULL;
}

/* ---- the caller's controls ---------------------------------------------- */

MOOR_API int moor_http_call_write(struct moor_http_call *call, const void *p,
                                  size_t n)
{
    struct conn *c = call ? call->conn : NULL;
    struct msg *m;

    if (!call || call->dead || !call->produced || call->write_ended || !c ||
        call->state != C_RUNNING || conn_is_closing(c))
        return MOOR_ESTATE;
    if (call->body_length >= 0 &&
        call->written + n > (uint64_t)call->body_length)
        return -EINVAL;
    /* Rule 5: the queue passes queue_limit by one write at most; the
     * producer was told (1) and waits for on_writable. */
    if (conn_queue_over_limit(c))
        return -EAGAIN;
    if (!n)
        return 0;
    if (call->body_length < 0) {
        char hdr[24];
        int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);

        m = msg_new(NULL, (size_t)hl + n + 2);
        if (!m)
            return -ENOMEM;
        memcpy(m->data, hdr, (size_t)hl);
        memcpy(m->data + hl, p, n);
        memcpy(m->data + hl + n, "\r\n", 2);
    } else {
        m = msg_new(p, n);
        if (!m)
            return -ENOMEM;
    }
    if (conn_send_flags(c, m, CONN_SEND_OVERCAP) < 0) {
        msg_unref(m);
        return -ENOMEM;
    }
    msg_unref(m);
    call->written += n;
    conn_set_want_flush(&call->cl->set);
    hc_write_deadline(c);
    return conn_queue_over_limit(c) ? 1 : 0;
}

MOOR_API int moor_http_call_write_end(struct moor_http_call *call)
{
    struct conn *c = call ? call->conn : NULL;

    if (!call || call->dead || !call->produced || call->write_ended || !c ||
        call->state != C_RUNNING || conn_is_closing(c))
        return MOOR_ESTATE;
    if (call->body_length >= 0 && call->written != (uint64_t)call->body_length)
        return -EINVAL;
    if (call->body_length < 0) {
        /* The last chunk: 5 bytes, past queue_limit if need be (a write
         * that passed it may come right before). */
        struct msg *m = msg_new("0\r\n\r\n", 5);
        int rc = m ? conn_send_flags(c, m, CONN_SEND_OVERCAP) : -ENOMEM;

        msg_unref(m);
        if (rc < 0)
            return -ENOMEM;
    }
    call->write_ended = true;
    conn_set_want_flush(&call->cl->set);
    if (!conn_queued_bytes(c))
        hc_request_written(c);
    return 0;
}

MOOR_API void moor_http_call_pause(struct moor_http_call *call)
{
    struct hc_conn *hc;

    if (!call || call->dead || !call->conn)
        return;
    hc = conn_ext(call->conn);
    if (!(hc->flags & HCF_PAUSED)) {
        call->paused_at = loop_now(call->cl->loop);
        hc->flags |= HCF_PAUSED;
        if (hc->rstate == R_BODY)
            hc_body_deadline(call->conn); /* the pause's, if sooner */
    }
    conn_pause_read(call->conn, PAUSE_BACKPRESSURE);
}

MOOR_API void moor_http_call_resume(struct moor_http_call *call)
{
    struct hc_conn *hc;

    if (!call || call->dead || !call->conn)
        return;
    hc = conn_ext(call->conn);
    if (!(hc->flags & HCF_PAUSED))
        return;
    hc->flags &= (uint8_t)~HCF_PAUSED;
    if (hc->rstate == R_BODY)
        conn_set_read_deadline(call->conn, call->cl->o.body_timeout_ms,
                               CLOSE_BODY_TIMEOUT);
    conn_resume_read(call->conn, PAUSE_BACKPRESSURE);
}

MOOR_API void moor_http_call_cancel(struct moor_http_call *call)
{
    struct conn *c;

    if (!call || call->dead || call->state == C_DONE)
        return;
    c = call->conn;
    if (c && call->state == C_RUNNING) {
        struct hc_conn *hc = conn_ext(c);

        /* Half written or half read: the connection cannot be reused. */
        hc->call = NULL;
        call->conn = NULL;
        conn_close(c, CLOSE_DONE); /* counted there: closed_abandoned */
    }
    hc_call_finish(call, -ECANCELED, "canceled");
}
