/*
 * test_http_client.c - the pooled HTTP/1.1 client (moor.h, "the HTTP
 * client"; src/http_client.c) against the scripted in-process server of
 * http_client_fixture.h:
 *
 * - keep-alive reuse over 50 sequential requests;
 * - every body shape delivered byte for byte, and which ones leave the
 *   connection pooled; bytes after a response;
 * - stale idle connections (FIN, RST, a stray byte) noticed at once;
 * - the retry rule (idempotent only, never a produced body, never after
 *   a response byte);
 * - pool limits, waiting, the queue's bound, ages and idle closes;
 * - each deadline by its own error and near its time;
 * - malformed and oversized responses.
 *
 * test_http_client_life.c has the rest. After every test, moor holds no
 * byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_client_fixture.h"

/* ---- 1. keep-alive ------------------------------------------------------ */

#define SEQ 50

struct seq {
    struct moor_http_client *cl;
    int port, n;
    struct res r[SEQ];
};

static void seq_next(struct res *x)
{
    struct seq *q = x->arg;

    if (q->n < SEQ) {
        struct res *y = &q->r[q->n];

        y->arg = q;
        y->on_done = seq_next;
        y->id = q->n++;
        start(q->cl, q->port, "/ok", y);
    }
}

static int seq_done(void *p)
{
    struct seq *q = p;

    return q->n == SEQ && q->r[SEQ - 1].done;
}

static void test_keepalive_reuse(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct seq q = {0};
    struct moor_http_client_stats st;

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    q.cl = new_client(l, &o);
    q.port = s.port;
    q.r[0].arg = &q;
    q.r[0].on_done = seq_next;
    q.n = 1;
    start(q.cl, s.port, "/ok", &q.r[0]);
    assert_true(run_until(l, seq_done, &q, 10000));
    for (int i = 0; i < SEQ; i++) {
        expect_ok(&q.r[i]);
        assert_int_equal(q.r[i].status, 200);
        assert_string_equal(q.r[i].body, "ok");
        assert_int_equal(q.r[i].reused, i > 0);
        assert_int_equal(q.r[i].retried, 0);
    }
    st = stats(q.cl);
    assert_int_equal(st.conns_new, 1);
    assert_int_equal(st.conns_reused, SEQ - 1);
    assert_int_equal(st.requests, SEQ);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.active, 0);
    assert_int_equal(SRV(&s, accepted), 1);
    assert_int_equal(s.total_reqs, SEQ);
    for (int i = 0; i < SEQ; i++)
        res_reset(&q.r[i]);
    finish(l, q.cl, &s);
}

/* ---- 2. body shapes ----------------------------------------------------- */

static void test_body_shapes(void **state)
{
    static const struct {
        const char *method, *path, *body;
        int status;
        bool pooled;
        int mode;
    } t[] = {
        {"GET", "/cl", "hello world", 200, true, 0},
        {"GET", "/chunked", "hello world, and 15 bytes.", 200, true, 0},
        {"GET", "/chunked", "hello world, and 15 bytes.", 200, true, 1},
        {"GET", "/close", "until the close", 200, false, 0},
        {"HEAD", "/head", "", 200, true, 0},
        {"GET", "/204", "", 204, true, 0},
        {"GET", "/304", "", 304, true, 0},
        {"GET", "/100", "hello", 200, true, 0},
        {"GET", "/10", "ok", 200, false, 0},
        {"GET", "/connclose", "ok", 200, false, 0},
    };
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct moor_http_client *cl = new_client(l, &o);
        struct moor_http_client_stats st;
        struct res a = {0}, b = {0};
        int acc = SRV(&s, accepted);

        s.mode = t[i].mode;
        start_full(cl, t[i].method, s.port, t[i].path, NULL, 0, NULL, 0, &a);
        wait_res(l, &a, 5000);
        expect_ok(&a);
        assert_int_equal(a.status, t[i].status);
        assert_int_equal(a.heads, 1);
        assert_int_equal(a.blen, strlen(t[i].body));
        assert_int_equal(a.body_bytes, strlen(t[i].body));
        if (a.blen)
            assert_memory_equal(a.body, t[i].body, a.blen);
        st = stats(cl);
        assert_int_equal(st.idle, t[i].pooled);
        assert_int_equal(st.closed_by_response, !t[i].pooled);
        assert_int_equal(st.closed_error, 0);
        /* The next request reuses it, or not. */
        get(l, cl, s.port, "/ok", &b);
        expect_ok(&b);
        assert_int_equal(b.reused, t[i].pooled);
        assert_int_equal(SRV(&s, accepted) - acc, t[i].pooled ? 1 : 2);
        moor_http_client_free(cl);
        res_reset(&a);
        res_reset(&b);
    }
    s.mode = 0;
    finish(l, NULL, &s);
}

/* Bytes after a complete response, in the same read: the response is
 * fine, the connection is not pooled, and a request started from its
 * on_done (even a POST) runs on a new connection. */
static void post_next(struct res *x)
{
    struct chain *ch = x->arg;

    start_full(ch->cl, "POST", ch->port, "/ok", "p", 1, NULL, 0, &ch->next);
}

static void test_extra_bytes_after_response(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client_stats st;
    struct chain ch = {0};
    struct res a = {0};

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    ch.cl = new_client(l, &o);
    ch.port = s.port;
    a.arg = &ch;
    a.on_done = post_next;
    start(ch.cl, s.port, "/extra", &a);
    wait_res(l, &a, 5000);
    expect_ok(&a);
    assert_string_equal(a.body, "ok");
    wait_res(l, &ch.next, 5000);
    expect_ok(&ch.next);
    assert_int_equal(ch.next.reused, 0);
    assert_int_equal(ch.next.retried, 0);
    assert_int_equal(srv_count_method(&s, "POST"), 1);
    st = stats(ch.cl);
    assert_int_equal(st.conns_new, 2);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.closed_peer, 1); /* the stray bytes */
    assert_int_equal(st.closed_by_response, 0);
    res_reset(&a);
    res_reset(&ch.next);
    finish(l, ch.cl, &s);
}

/* What goes on the wire: the target from the URL (no fragment, "/" for
 * none), the Host header, the caller's fields, Content-Length only where
 * a body is or must be. */
static void test_request_head(void **state)
{
    static const struct moor_http_field hdr[] = {
        {.name = "X-One", .value = "1"},
        {.name = "Accept", .value = "text/plain"},
    };
    static const struct {
        const char *method, *url, *target;
        bool cl0;
    } t[] = {
        {"GET", "http://127.0.0.1:%d", "/", false},
        {"GET", "http://127.0.0.1:%d?q=1#frag", "/?q=1", false},
        {"GET", "HTTP://127.0.0.1:%d/a/b?c=d#e", "/a/b?c=d", false},
        {"DELETE", "http://127.0.0.1:%d/x", "/x", false},
        {"POST", "http://127.0.0.1:%d/p", "/p", true},
    };
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    cl = new_client(l, &o);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct moor_http_request rq;
        struct moor_error err = {0};
        struct res x = {0};
        char url[128], host[64];
        const char *h;

        snprintf(url, sizeof(url), t[i].url, s.port);
        moor_http_request_init(&rq);
        rq.method = t[i].method;
        rq.url = url;
        rq.headers = hdr;
        rq.n_headers = 2;
        assert_non_null(moor_http_client_request(cl, &rq, &cbs, &x, &err));
        wait_res(l, &x, 3000);
        expect_ok(&x);
        pthread_mutex_lock(&s.mu);
        h = s.reqs[i].head;
        assert_string_equal(s.reqs[i].method, t[i].method);
        assert_string_equal(s.reqs[i].target, t[i].target);
        snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", s.port);
        assert_non_null(strstr(h, host));
        assert_non_null(strstr(h, "\r\nX-One: 1\r\nAccept: text/plain\r\n"));
        assert_int_equal(strstr(h, "Content-Length: 0\r\n") != NULL, t[i].cl0);
        assert_null(strcasestr(h, "Transfer-Encoding"));
        pthread_mutex_unlock(&s.mu);
        res_reset(&x);
    }
    assert_int_equal(SRV(&s, accepted), 1);
    finish(l, cl, &s);
}

/* A body of 1 MiB, with Content-Length and in chunks of every size,
 * byte for byte, twice on one connection. */
static void expect_large(const struct res *x)
{
    expect_ok(x);
    assert_int_equal(x->blen, LARGE_LEN);
    for (size_t i = 0; i < LARGE_LEN; i++)
        if (x->body[i] != large_byte(i))
            fail_msg("byte %zu differs", i);
}

static void test_large_bodies(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct res a = {0}, b = {0};

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    cl = new_client(l, &o);
    get(l, cl, s.port, "/large", &a);
    expect_large(&a);
    get(l, cl, s.port, "/largechunked", &b);
    expect_large(&b);
    assert_int_equal(b.reused, 1);
    res_reset(&a);
    res_reset(&b);
    finish(l, cl, &s);
}

/* ---- 3. stale idle connections ------------------------------------------ */

static int closed_peer_1(void *p)
{
    struct moor_http_client_stats st;

    moor_http_client_stats(p, NULL, &st);
    return st.closed_peer == 1;
}

static void test_stale_idle(void **state)
{
    static const char *const how[] = {"FIN", "RST", "a stray byte"};

    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        struct srv s = {.mode = mode};
        struct moor_http_client_options o;
        struct moor_loop *l = new_loop();
        struct moor_http_client *cl;
        struct moor_http_client_stats st;
        struct res a = {0}, b = {0};
        int64_t t;

        srv_start(&s, h_stale);
        opts_init(&o);
        cl = new_client(l, &o);
        get(l, cl, s.port, "/ok", &a);
        expect_ok(&a);
        assert_int_equal(stats(cl).idle, 1);
        if (!run_until(l, closed_peer_1, cl, 2000))
            fail_msg("%s on an idle connection went unnoticed", how[mode]);
        t = now_ms() - a.t_done;
        if (t > 50 + 250)
            fail_msg("%s noticed after %lld ms", how[mode], (long long)t);
        st = stats(cl);
        assert_int_equal(st.idle, 0);
        assert_int_equal(st.active, 0);
        assert_int_equal(st.closed_peer, 1);
        assert_int_equal(st.closed_error, 0);
        get(l, cl, s.port, "/ok", &b);
        expect_ok(&b);
        assert_int_equal(b.retried, 0);
        assert_int_equal(b.reused, 0);
        assert_int_equal(stats(cl).conns_new, 2);
        assert_int_equal(SRV(&s, accepted), 2);
        res_reset(&a);
        res_reset(&b);
        finish(l, cl, &s);
    }
}

/* ---- 4. the retry rule -------------------------------------------------- */

static void test_retry(void **state)
{
    static const struct moor_http_field key = {.name = "Idempotency-Key",
                                               .value = "k1"};
    struct moor_http_client_options o;

    (void)state;
    opts_init(&o);
    /* GET: retried on a new connection; a POST is not; with a key it is;
     * a GET whose reused connection is reset is retried too. */
    for (int k = 0; k < 4; k++) {
        struct srv s = {.mode = k == 3 ? 2 : 0};
        struct moor_loop *l = new_loop();
        struct moor_http_client *cl = new_client(l, &o);
        struct res a = {0}, b = {0};

        srv_start(&s, h_second_fails);
        get(l, cl, s.port, "/ok", &a);
        expect_ok(&a);
        if (k == 0 || k == 3)
            start(cl, s.port, "/ok", &b);
        else
            start_full(cl, "POST", s.port, "/p", "data", 4,
                       k == 2 ? &key : NULL, k == 2, &b);
        wait_res(l, &b, 5000);
        if (k == 1) {
            expect_err(&b, MOOR_EPEERCLOSED);
            assert_true(b.msg[0]);
            assert_int_equal(b.retried, 0);
            assert_int_equal(srv_count_method(&s, "POST"), 1);
            assert_int_equal(stats(cl).retries, 0);
        } else {
            expect_ok(&b);
            assert_string_equal(b.body, "ok");
            assert_int_equal(b.retried, 1);
            assert_int_equal(b.reused, 0);
            assert_int_equal(SRV(&s, accepted), 2);
            assert_int_equal(stats(cl).retries, 1);
            if (k == 2) {
                assert_int_equal(srv_count_method(&s, "POST"), 2);
                assert_memory_equal(s.reqs[2].body, "data", 4);
            }
        }
        res_reset(&a);
        res_reset(&b);
        finish(l, cl, &s);
    }
    /* idempotent = 1 makes a POST retryable; a produced body never is. */
    for (int k = 0; k < 2; k++) {
        struct srv s = {0};
        struct moor_loop *l = new_loop();
        struct moor_http_client *cl = new_client(l, &o);
        struct moor_http_request rq;
        struct moor_error err = {0};
        struct producer p = {.data = "abc", .len = 3, .piece = 3};
        struct res a = {0}, b = {.arg = &p};
        char url[128];

        srv_start(&s, h_second_fails);
        get(l, cl, s.port, "/ok", &a);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/p", s.port);
        moor_http_request_init(&rq);
        rq.method = "POST";
        rq.url = url;
        rq.idempotent = 1;
        if (k == 0) {
            rq.body = "abc";
            rq.body_len = 3;
        } else {
            rq.body_length = 3;
        }
        assert_non_null(moor_http_client_request(
            cl, &rq, k ? &producer_cbs : &cbs, &b, &err));
        wait_res(l, &b, 5000);
        if (k == 0) {
            expect_ok(&b);
            assert_int_equal(b.retried, 1);
            assert_int_equal(srv_count_method(&s, "POST"), 2);
        } else {
            expect_err(&b, MOOR_EPEERCLOSED);
            assert_int_equal(b.retried, 0);
            assert_int_equal(srv_count_method(&s, "POST"), 1);
        }
        res_reset(&a);
        res_reset(&b);
        finish(l, cl, &s);
    }
    /* A failure after response bytes arrived: never retried. */
    {
        struct srv s = {.mode = 1};
        struct moor_loop *l = new_loop();
        struct moor_http_client *cl = new_client(l, &o);
        struct res a = {0}, b = {0};

        srv_start(&s, h_second_fails);
        get(l, cl, s.port, "/ok", &a);
        get(l, cl, s.port, "/ok", &b);
        assert_int_not_equal(b.error, 0);
        assert_int_equal(b.retried, 0);
        assert_int_equal(SRV(&s, accepted), 1);
        assert_int_equal(stats(cl).retries, 0);
        res_reset(&a);
        res_reset(&b);
        finish(l, cl, &s);
    }
}

/* ---- 5. pool limits ----------------------------------------------------- */

struct peak {
    struct moor_http_client *cl;
    long waiting;
};

static void sample_waiting(struct res *x)
{
    struct peak *p = x->arg;
    struct moor_http_client_stats st = stats(p->cl);

    if (st.waiting > p->waiting)
        p->waiting = st.waiting;
}

static void test_pool_max_conns(void **state)
{
    struct srv s = {.delay_ms = 100};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct res r[6] = {{0}};
    struct many m = {r, 6};
    struct peak pk = {0};

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    o.max_conns_per_host = 2;
    cl = pk.cl = new_client(l, &o);
    for (int i = 0; i < 6; i++) {
        r[i].arg = &pk;
        r[i].on_head = sample_waiting;
        start(cl, s.port, "/ok", &r[i]);
    }
    assert_true(run_until(l, all_done, &m, 5000));
    for (int i = 0; i < 6; i++) {
        expect_ok(&r[i]);
        res_reset(&r[i]);
    }
    assert_int_equal(pk.waiting, 4);
    assert_int_equal(SRV(&s, accepted), 2);
    assert_int_equal(stats(cl).conns_new, 2);
    assert_int_equal(stats(cl).waiting, 0);
    moor_http_client_free(cl);

    /* One may wait: three more fail at once, through on_done. */
    o.max_waiting_per_host = 1;
    cl = new_client(l, &o);
    for (int i = 0; i < 6; i++)
        start(cl, s.port, "/ok", &r[i]);
    run_for(l, 30);
    for (int i = 3; i < 6; i++) {
        expect_err(&r[i], MOOR_EQUEUEFULL);
        assert_true(strstr(r[i].msg, "max_waiting_per_host") != NULL);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].done, 0);
    assert_true(run_until(l, all_done, &m, 5000));
    for (int i = 0; i < 6; i++) {
        if (i < 3)
            expect_ok(&r[i]);
        res_reset(&r[i]);
    }
    moor_http_client_free(cl);

    /* The wait has a deadline. */
    s.delay_ms = 400;
    opts_init(&o);
    o.max_conns_per_host = 1;
    o.wait_timeout_ms = 50;
    cl = new_client(l, &o);
    start(cl, s.port, "/ok", &r[0]);
    start(cl, s.port, "/ok", &r[1]);
    wait_res(l, &r[1], 2000);
    expect_err(&r[1], MOOR_ETIMEOUT_WAIT);
    expect_near(&r[1], 50);
    wait_res(l, &r[0], 2000);
    expect_ok(&r[0]);
    res_reset(&r[0]);
    res_reset(&r[1]);
    finish(l, cl, &s);
}

static void test_pool_ages_and_idle(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_client_stats st;
    struct res r[9] = {{0}};
    struct many m = {r, 3};

    (void)state;
    srv_start(&s, h_serve);

    /* max_requests_per_conn 3 over 9 requests: 3 connections. */
    opts_init(&o);
    o.max_requests_per_conn = 3;
    cl = new_client(l, &o);
    for (int i = 0; i < 9; i++) {
        get(l, cl, s.port, "/ok", &r[i]);
        expect_ok(&r[i]);
        assert_int_equal(r[i].reused, i % 3 != 0);
        res_reset(&r[i]);
    }
    st = stats(cl);
    assert_int_equal(st.conns_new, 3);
    assert_int_equal(st.closed_max_age, 3);
    assert_int_equal(st.idle, 0);
    assert_int_equal(SRV(&s, accepted), 3);
    moor_http_client_free(cl);

    /* max_conn_age: a connection older than it is not reused, whether it
     * comes back busy or ages in the pool. */
    opts_init(&o);
    o.max_conn_age_ms = 100;
    cl = new_client(l, &o);
    s.delay_ms = 150;
    get(l, cl, s.port, "/ok", &r[0]);
    expect_ok(&r[0]);
    s.delay_ms = 0;
    st = stats(cl);
    assert_int_equal(st.closed_max_age, 1);
    assert_int_equal(st.idle, 0);
    get(l, cl, s.port, "/ok", &r[1]);
    expect_ok(&r[1]);
    assert_int_equal(r[1].reused, 0);
    assert_int_equal(stats(cl).idle, 1);
    run_for(l, 200);
    st = stats(cl);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.closed_max_age, 2);
    assert_int_equal(st.closed_idle_timeout, 0);
    res_reset(&r[0]);
    res_reset(&r[1]);
    moor_http_client_free(cl);

    /* idle_timeout. */
    opts_init(&o);
    o.idle_timeout_ms = 50;
    cl = new_client(l, &o);
    get(l, cl, s.port, "/ok", &r[0]);
    expect_ok(&r[0]);
    assert_int_equal(stats(cl).idle, 1);
    run_for(l, 30);
    assert_int_equal(stats(cl).idle, 1);
    run_for(l, 200);
    st = stats(cl);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.closed_idle_timeout, 1);
    res_reset(&r[0]);
    moor_http_client_free(cl);

    /* max_idle_per_host 1 with 3 at once: two are closed, pool full. */
    opts_init(&o);
    o.max_idle_per_host = 1;
    cl = new_client(l, &o);
    s.delay_ms = 50;
    for (int i = 0; i < 3; i++)
        start(cl, s.port, "/ok", &r[i]);
    assert_true(run_until(l, all_done, &m, 5000));
    st = stats(cl);
    assert_int_equal(st.conns_new, 3);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.closed_pool_full, 2);
    for (int i = 0; i < 3; i++)
        res_reset(&r[i]);
    moor_http_client_free(cl);

    /* close_idle. */
    opts_init(&o);
    cl = new_client(l, &o);
    for (int i = 0; i < 3; i++)
        start(cl, s.port, "/ok", &r[i]);
    assert_true(run_until(l, all_done, &m, 5000));
    assert_int_equal(stats(cl).idle, 3);
    {
        int eofs = SRV(&s, eofs);

        moor_http_client_close_idle(cl);
        assert_int_equal(stats(cl).idle, 0);
        for (int i = 0; i < 200 && SRV(&s, eofs) < eofs + 3; i++)
            run_for(l, 5);
        assert_int_equal(SRV(&s, eofs), eofs + 3);
    }
    get(l, cl, s.port, "/ok", &r[3]);
    expect_ok(&r[3]);
    assert_int_equal(r[3].reused, 0);
    for (int i = 0; i < 4; i++)
        res_reset(&r[i]);
    s.delay_ms = 0;
    finish(l, cl, &s);
}

/* ---- 6. deadlines ------------------------------------------------------- */

static void test_deadline_head_body_total(void **state)
{
    struct srv s = {0}, s2 = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct res a = {0}, b = {0}, c = {0};
    struct moor_http_request rq;
    struct moor_error err = {0};
    char url[128];

    (void)state;
    srv_start(&s, h_hang);
    srv_start(&s2, h_half_body);
    opts_init(&o);
    o.head_timeout_ms = 200;
    o.body_timeout_ms = 200;
    cl = new_client(l, &o);
    start(cl, s.port, "/", &a);
    start(cl, s2.port, "/", &b);
    wait_res(l, &a, 3000);
    wait_res(l, &b, 3000);
    expect_err(&a, MOOR_ETIMEOUT_HEAD);
    expect_near(&a, 200);
    assert_true(strstr(a.msg, "200 ms") != NULL);
    expect_err(&b, MOOR_ETIMEOUT_BODY);
    expect_near(&b, 200);
    assert_int_equal(b.blen, 1000);
    assert_int_equal(stats(cl).closed_error, 2);
    assert_int_equal(stats(cl).idle, 0);

    /* The whole request's own deadline. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    moor_http_request_init(&rq);
    rq.url = url;
    rq.timeout_ms = 150;
    c.t0 = now_ms();
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &c, &err));
    wait_res(l, &c, 3000);
    expect_err(&c, MOOR_ETIMEOUT_TOTAL);
    expect_near(&c, 150);
    res_reset(&a);
    res_reset(&b);
    res_reset(&c);
    moor_http_client_free(cl);
    srv_stop(&s2);
    finish(l, NULL, &s);
}

static void test_deadline_connect(void **state)
{
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct res a = {0};
    int fds[16], nfds, port, lfd;

    (void)state;
    lfd = hang_listener(&port, fds, &nfds);
    opts_init(&o);
    o.connect_timeout_ms = 200;
    cl = new_client(l, &o);
    start(cl, port, "/", &a);
    assert_int_equal(stats(cl).dialing, 1);
    wait_res(l, &a, 3000);
    expect_err(&a, MOOR_ETIMEOUT_CONNECT);
    expect_near(&a, 200);
    assert_int_equal(stats(cl).dialing, 0);
    res_reset(&a);
    hang_close(lfd, fds, nfds);
    finish(l, cl, NULL);
}

static void test_deadline_tls_and_write(void **state)
{
    struct srv s = {0}, w = {.rcvbuf = 65536};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct res a = {0}, b = {0};
    char url[128], *big;
    const size_t big_len = 8u << 20;

    (void)state;
    /* TLS: TCP accepted, the ClientHello never answered. */
    srv_start(&s, h_hang);
    opts_init(&o);
    o.tls_timeout_ms = 200;
    o.insecure = 1;
    o.write_timeout_ms = 200;
    cl = new_client(l, &o);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", s.port);
    moor_http_request_init(&rq);
    rq.url = url;
    a.t0 = now_ms();
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &a, &err));
    wait_res(l, &a, 3000);
    expect_err(&a, MOOR_ETIMEOUT_TLS);
    expect_near(&a, 200);

    /* Write: the server never reads an 8 MiB body. */
    srv_start(&w, h_noread);
    big = calloc(1, big_len);
    start_full(cl, "POST", w.port, "/", big, big_len, NULL, 0, &b);
    wait_res(l, &b, 5000);
    expect_err(&b, MOOR_ETIMEOUT_WRITE);
    expect_near(&b, 200); /* the socket buffers fill in a moment */
    free(big);
    res_reset(&a);
    res_reset(&b);
    moor_http_client_free(cl);
    srv_stop(&w);
    finish(l, NULL, &s);
}

/* ---- 7. malformed responses --------------------------------------------- */

static void test_malformed(void **state)
{
    static const struct {
        const char *path;
        int err;
        const char *why; /* in the message */
    } t[] = {
        {"/clte", MOOR_EBADRESPONSE, "bad response"},
        {"/twocl", MOOR_EBADRESPONSE, "bad response"},
        {"/lf", MOOR_EBADRESPONSE, "bad response"},
        {"/badchunk", MOOR_EBADRESPONSE, "chunk"},
        {"/bighead", MOOR_ETOOBIG, ""},
        {"/bigcl", MOOR_ETOOBIG, ""},
        {"/bigchunked", MOOR_ETOOBIG, "max_body"},
        {"/bigclose", MOOR_ETOOBIG, "max_body"},
    };
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    o.max_header_bytes = 1024;
    o.max_body = 1000;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct moor_http_client *cl = new_client(l, &o);
        struct moor_http_client_stats st;
        struct res a = {0};

        get(l, cl, s.port, t[i].path, &a);
        if (a.error != t[i].err)
            fail_msg("%s: want %s, got %s (%s)", t[i].path,
                     moor_strerror(t[i].err), moor_strerror(a.error), a.msg);
        if (!a.msg[0] || !strstr(a.msg, t[i].why))
            fail_msg("%s: message \"%s\"", t[i].path, a.msg);
        assert_true(a.blen <= 1000);
        st = stats(cl);
        assert_int_equal(st.idle, 0);
        assert_int_equal(st.active, 0);
        assert_int_equal(st.closed_error, 1);
        res_reset(&a);
        moor_http_client_free(cl);
    }
    finish(l, NULL, &s);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_body_shapes),
        cmocka_unit_test(test_extra_bytes_after_response),
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_large_bodies),
        cmocka_unit_test(test_stale_idle),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_pool_max_conns),
        cmocka_unit_test(test_pool_ages_and_idle),
        cmocka_unit_test(test_deadline_head_body_total),
        cmocka_unit_test(test_deadline_connect),
        cmocka_unit_test(test_deadline_tls_and_write),
        cmocka_unit_test(test_malformed),
    };

    test_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
