/*
 * test_http_client_life.c - the pooled HTTP/1.1 client (src/http_client.c)
 * against the scripted in-process server of http_client_fixture.h, the
 * lives of calls and of the client:
 *
 * - cancel from everywhere (mid-body, queued, dialing, another call from
 *   a callback, on_writable), a new request from on_done, pause and
 *   resume against the body deadline, the whole deadline in the queue;
 * - produced bodies, Content-Length and chunked, and their backpressure;
 * - every allocation failing in turn; 10,000 requests over churned
 *   connections; freeing the client with calls in every state;
 * - TLS: verification, session resumption, a name mismatch.
 *
 * After every test, moor holds no byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_client_fixture.h"

/* ---- 8. cancel ---------------------------------------------------------- */

static void cancel_self(struct res *x)
{
    if (x->blen >= 1000 && x->call)
        moor_http_call_cancel(x->call);
}

static void cancel_other(struct res *x)
{
    struct res *o = x->arg;

    if (o->call)
        moor_http_call_cancel(o->call);
}

static void start_next(struct res *x)
{
    struct chain *ch = x->arg;

    start(ch->cl, ch->port, "/ok", &ch->next);
}

static void test_cancel(void **state)
{
    struct srv s = {0}, h = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_client_stats st;
    struct res a = {0}, b = {0}, c = {0};
    struct chain ch = {0};

    (void)state;
    srv_start(&s, h_serve);
    srv_start(&h, h_half_body);
    opts_init(&o);
    cl = new_client(l, &o);

    /* Mid-body, from on_body. */
    a.on_body = cancel_self;
    start(cl, h.port, "/", &a);
    wait_res(l, &a, 3000);
    expect_err(&a, -ECANCELED);
    run_for(l, 50);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.after_done, 0);
    st = stats(cl);
    assert_int_equal(st.closed_abandoned, 1);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.idle, 0);
    res_reset(&a);

    /* In the queue. */
    moor_http_client_free(cl);
    o.max_conns_per_host = 1;
    cl = new_client(l, &o);
    s.delay_ms = 100;
    start(cl, s.port, "/ok", &a);
    start(cl, s.port, "/ok", &b);
    assert_int_equal(stats(cl).waiting, 1);
    moor_http_call_cancel(b.call);
    assert_int_equal(b.done, 1);
    expect_err(&b, -ECANCELED);
    assert_int_equal(stats(cl).waiting, 0);
    wait_res(l, &a, 3000);
    expect_ok(&a);
    s.delay_ms = 0;
    res_reset(&a);
    res_reset(&b);
    moor_http_client_free(cl);

    /* While dialing: the request is not sent, and the connection still
     * serves the next one. */
    o.max_conns_per_host = 0;
    cl = new_client(l, &o);
    {
        long before = s.total_reqs;

        start(cl, s.port, "/ok", &a);
        assert_int_equal(stats(cl).dialing, 1);
        moor_http_call_cancel(a.call);
        expect_err(&a, -ECANCELED);
        run_for(l, 100);
        assert_int_equal(a.after_done, 0);
        assert_int_equal(s.total_reqs, before);
        st = stats(cl);
        assert_int_equal(st.dialing, 0);
        assert_int_equal(st.idle, 1);
        assert_int_equal(st.closed_peer, 0);
        get(l, cl, s.port, "/ok", &b);
        expect_ok(&b);
        assert_int_equal(b.reused, 1);
        assert_int_equal(s.total_reqs, before + 1);
        assert_int_equal(SRV(&s, accepted), 2); /* 1 in the queue test */
        res_reset(&a);
        res_reset(&b);
    }
    moor_http_client_free(cl);

    /* A request started from on_done reuses the connection just freed. */
    cl = new_client(l, &o);
    ch.cl = cl;
    ch.port = s.port;
    a.arg = &ch;
    a.on_done = start_next;
    start(cl, s.port, "/ok", &a);
    wait_res(l, &a, 3000);
    wait_res(l, &ch.next, 3000);
    expect_ok(&ch.next);
    assert_int_equal(ch.next.reused, 1);
    assert_int_equal(stats(cl).conns_new, 1);
    res_reset(&a);
    res_reset(&ch.next);

    /* Another call cancelled from a callback: from on_head, then from
     * on_done. */
    s.delay_ms = 0;
    b.on_head = cancel_other;
    b.arg = &c;
    start(cl, h.port, "/", &c); /* a body that never ends */
    start(cl, s.port, "/ok", &b);
    wait_res(l, &b, 3000);
    expect_ok(&b);
    assert_int_equal(c.done, 1);
    expect_err(&c, -ECANCELED);
    res_reset(&b);
    res_reset(&c);
    b.on_done = cancel_other;
    b.arg = &c;
    start(cl, h.port, "/", &c);
    start(cl, s.port, "/ok", &b);
    wait_res(l, &b, 3000);
    assert_int_equal(c.done, 1);
    expect_err(&c, -ECANCELED);
    run_for(l, 20);
    assert_int_equal(c.after_done, 0);
    assert_int_equal(c.done, 1);
    res_reset(&b);
    res_reset(&c);
    moor_http_client_free(cl);
    srv_stop(&h);
    finish(l, NULL, &s);
}

static void cancel_on_head(struct res *x)
{
    moor_http_call_cancel(x->call);
}

/* Its own call cancelled from on_head: no on_body, the connection (a
 * body to come) closed, counted abandoned. */
static void test_cancel_from_on_head(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_client_stats st;
    struct res a = {.on_head = cancel_on_head};

    (void)state;
    srv_start(&s, h_half_body);
    opts_init(&o);
    cl = new_client(l, &o);
    start(cl, s.port, "/", &a);
    wait_res(l, &a, 3000);
    expect_err(&a, -ECANCELED);
    assert_int_equal(a.status, 200);
    run_for(l, 30);
    assert_int_equal(a.blen, 0);
    assert_int_equal(a.after_done, 0);
    st = stats(cl);
    assert_int_equal(st.closed_abandoned, 1);
    assert_int_equal(st.active + st.idle, 0);
    res_reset(&a);
    finish(l, cl, &s);
}

static int got_body_1(void *p)
{
    return ((struct res *)p)->blen > 0;
}

static void pause_self(struct res *x)
{
    if (x->call && !x->id++)
        moor_http_call_pause(x->call);
}

/* A paused body is not the server's gap: no ETIMEOUT_BODY while paused,
 * no on_body either; resumed, the rest comes. */
static void test_pause_resume(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct res a = {0};
    size_t got;

    (void)state;
    srv_start(&s, h_gap_body);
    opts_init(&o);
    o.body_timeout_ms = 100;
    cl = new_client(l, &o);
    a.on_body = pause_self;
    start(cl, s.port, "/", &a);
    assert_true(run_until(l, got_body_1, &a, 3000));
    got = a.blen;
    run_for(l, 500);
    assert_int_equal(a.done, 0);
    assert_int_equal(a.blen, got);
    moor_http_call_resume(a.call);
    wait_res(l, &a, 3000);
    expect_ok(&a);
    assert_int_equal(a.blen, 20000);
    assert_int_equal(a.body[0], 'a');
    assert_int_equal(a.body[19999], 'b');
    assert_int_equal(stats(cl).idle, 1);
    res_reset(&a);
    finish(l, cl, &s);
}

/* The whole request's deadline runs in the queue too. */
static void test_total_while_waiting(void **state)
{
    struct srv s = {.delay_ms = 300};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct res a = {0}, b = {0};
    char url[128];

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    o.max_conns_per_host = 1;
    cl = new_client(l, &o);
    start(cl, s.port, "/ok", &a);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", s.port);
    moor_http_request_init(&rq);
    rq.url = url;
    rq.timeout_ms = 100;
    b.t0 = now_ms();
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &b, &err));
    assert_int_equal(stats(cl).waiting, 1);
    wait_res(l, &b, 3000);
    expect_err(&b, MOOR_ETIMEOUT_TOTAL);
    expect_near(&b, 100);
    assert_int_equal(stats(cl).waiting, 0);
    wait_res(l, &a, 3000);
    expect_ok(&a);
    run_for(l, 20);
    assert_int_equal(b.done, 1);
    assert_int_equal(s.total_reqs, 1);
    res_reset(&a);
    res_reset(&b);
    s.delay_ms = 0;
    finish(l, cl, &s);
}

/* ---- 9. produced bodies ------------------------------------------------- */

static void cancel_writable(struct moor_http_call *c, void *user)
{
    (void)user;
    moor_http_call_cancel(c);
}

static const struct moor_http_callbacks cancel_cbs = {
    .on_writable = cancel_writable,
    .on_done = cb_done,
};

static void produce(struct moor_loop *l, struct moor_http_client *cl,
                    struct srv *s, struct producer *p, long long length)
{
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct res x = {.arg = p};
    char url[128];
    int at = s->nreqs;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/up", s->port);
    moor_http_request_init(&rq);
    rq.method = "POST";
    rq.url = url;
    rq.body_length = length;
    assert_non_null(moor_http_client_request(cl, &rq, &producer_cbs, &x, &err));
    wait_res(l, &x, 5000);
    expect_ok(&x);
    assert_int_equal(p->off, p->len);
    assert_int_equal(p->ends, 1);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->nreqs, at + 1);
    assert_int_equal(s->reqs[at].body_len, p->len);
    assert_memory_equal(s->reqs[at].body, p->data, p->len);
    if (length < 0)
        assert_non_null(strcasestr(s->reqs[at].head, "chunked"));
    pthread_mutex_unlock(&s->mu);
    res_reset(&x);
}

static void test_produced_body(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    size_t n = 1u << 20;
    char *data = malloc(n);

    (void)state;
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7 + i / 251);
    srv_start(&s, h_serve);
    opts_init(&o);
    cl = new_client(l, &o);
    {
        struct producer p = {.data = data, .len = 5000, .piece = 1000};
        produce(l, cl, &s, &p, 5000);
    }
    {
        struct producer p = {.data = data, .len = 5000, .piece = 999};
        produce(l, cl, &s, &p, -1);
    }
    moor_http_client_free(cl);

    /* Backpressure: a small queue_limit says 1, then on_writable again. */
    o.queue_limit = 4096;
    cl = new_client(l, &o);
    {
        struct producer p = {.data = data, .len = n, .piece = 65536};
        produce(l, cl, &s, &p, (long long)n);
        assert_true(p.full > 1);
        assert_true(p.writables > 1);
    }
    {
        struct producer p = {.data = data, .len = n, .piece = 30000};
        produce(l, cl, &s, &p, -1);
        assert_true(p.full > 1);
        assert_true(p.writables > 1);
    }
    moor_http_client_free(cl);

    /* Cancelled from on_writable: on_done once, the connection closed. */
    cl = new_client(l, &o);
    {
        struct moor_http_request rq;
        struct moor_error err = {0};
        struct res x = {0};
        char url[128];

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/up", s.port);
        moor_http_request_init(&rq);
        rq.method = "POST";
        rq.url = url;
        rq.body_length = 100;
        assert_non_null(
            moor_http_client_request(cl, &rq, &cancel_cbs, &x, &err));
        wait_res(l, &x, 3000);
        expect_err(&x, -ECANCELED);
        run_for(l, 20);
        assert_int_equal(x.done, 1);
        assert_int_equal(stats(cl).closed_abandoned, 1);
        assert_int_equal(stats(cl).active, 0);
        res_reset(&x);
    }
    free(data);
    finish(l, cl, &s);
}

/* ---- the API's refusals ------------------------------------------------ */

/* moor_http_call_write() past body_length, write_end() short, and both
 * after the end; then what moor_http_client_request() refuses itself. */
static void contract_writable(struct moor_http_call *c, void *user)
{
    struct res *x = user;

    if (x->id++)
        return;
    assert_int_equal(moor_http_call_write(c, "12345", 5), -EINVAL);
    assert_int_equal(moor_http_call_write(c, "12", 2), 0);
    assert_int_equal(moor_http_call_write_end(c), -EINVAL);
    assert_int_equal(moor_http_call_write(c, "34", 2), 0);
    assert_int_equal(moor_http_call_write_end(c), 0);
    assert_int_equal(moor_http_call_write(c, "5", 1), MOOR_ESTATE);
    assert_int_equal(moor_http_call_write_end(c), MOOR_ESTATE);
}

/* Rule 5: with queue_limit 1024, a second 600-byte write passes it and
 * says so (1); a third, before on_writable, is refused (-EAGAIN) and
 * queues nothing. */
static void bound_writable(struct moor_http_call *c, void *user)
{
    static const char six[600];
    struct res *x = user;

    if (x->id++)
        return;
    assert_int_equal(moor_http_call_write(c, six, sizeof(six)), 0);
    assert_int_equal(moor_http_call_write(c, six, sizeof(six)), 1);
    assert_int_equal(moor_http_call_write(c, "x", 1), -EAGAIN);
    assert_int_equal(moor_http_call_write_end(c), 0);
}

static const struct moor_http_callbacks bound_cbs = {
    .on_writable = bound_writable,
    .on_body = cb_body,
    .on_done = cb_done,
};

static const struct moor_http_callbacks contract_cbs = {
    .on_writable = contract_writable,
    .on_body = cb_body,
    .on_done = cb_done,
};

static void test_api_refusals(void **state)
{
    static const struct {
        const char *method, *url, *hname, *hvalue;
        int code;
    } bad[] = {
        {"GET", "ftp://127.0.0.1/", NULL, NULL, MOOR_EURL},
        {"GET", "http://", NULL, NULL, MOOR_EURL},
        {"G ET", "http://127.0.0.1:1/", NULL, NULL, -EINVAL},
        {"GET", "http://127.0.0.1:1/", "Host", "x", -EINVAL},
        {"GET", "http://127.0.0.1:1/", "Content-Length", "1", -EINVAL},
        {"GET", "http://127.0.0.1:1/", "X-A", "a\r\nX-B: b", -EINVAL},
        {"GET", "http://127.0.0.1:1/", "X A", "a", -EINVAL},
    };
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_client_stats st;
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct res x = {0};
    char url[128], key[64];

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    cl = new_client(l, &o);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/up", s.port);
    moor_http_request_init(&rq);
    rq.method = "PUT";
    rq.url = url;
    rq.body_length = 4;
    assert_non_null(moor_http_client_request(cl, &rq, &contract_cbs, &x, &err));
    wait_res(l, &x, 3000);
    expect_ok(&x);
    assert_int_equal(s.reqs[0].body_len, 4);
    assert_memory_equal(s.reqs[0].body, "1234", 4);
    res_reset(&x);

    {
        struct moor_http_client_options bo;
        struct moor_http_client *bcl;

        opts_init(&bo);
        bo.queue_limit = 1024;
        bcl = new_client(l, &bo);
        rq.body_length = -1; /* chunked */
        assert_non_null(
            moor_http_client_request(bcl, &rq, &bound_cbs, &x, &err));
        wait_res(l, &x, 3000);
        expect_ok(&x);
        assert_int_equal(s.reqs[1].body_len, 1200);
        res_reset(&x);
        moor_http_client_free(bcl);
    }

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moor_http_field f = {.name = bad[i].hname,
                                    .value = bad[i].hvalue};

        moor_http_request_init(&rq);
        rq.method = bad[i].method;
        rq.url = bad[i].url;
        rq.headers = &f;
        rq.n_headers = bad[i].hname != NULL;
        memset(&err, 0, sizeof(err));
        assert_null(moor_http_client_request(cl, &rq, &cbs, &x, &err));
        if (err.code != bad[i].code || !err.message[0])
            fail_msg("case %zu: %d %s", i, err.code, err.message);
    }
    run_for(l, 20);
    assert_int_equal(x.done, 0);

    /* Stats by host: scheme, host and port exactly. */
    snprintf(key, sizeof(key), "http://127.0.0.1:%d", s.port);
    assert_int_equal(moor_http_client_stats(cl, key, &st), 0);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(moor_http_client_stats(cl, "http://127.0.0.1:1", &st),
                     -ENOENT);
    finish(l, cl, &s);
}

/* ---- 10. every allocation failing in turn ------------------------------- */

static void test_alloc_failures(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    bool fired = true;
    int n;

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    o.head_timeout_ms = o.body_timeout_ms = o.write_timeout_ms = 1000;
    for (n = 1; fired && n < 2000; n++) {
        struct moor_loop *l = new_loop();
        int64_t base = moor_mem_live_bytes();
        struct moor_http_client *cl = new_client(l, &o);
        struct res r[2] = {{0}};

        mem_fail_at((uint64_t)n);
        for (int i = 0; i < 2; i++) {
            struct moor_http_request rq;
            struct moor_error err = {0};
            char url[128];

            snprintf(url, sizeof(url), "http://127.0.0.1:%d/cl", s.port);
            moor_http_request_init(&rq);
            rq.url = url;
            r[i].call = moor_http_client_request(cl, &rq, &cbs, &r[i], &err);
            assert_int_equal(r[i].done, 0);
            if (!r[i].call) {
                assert_int_equal(err.code, -ENOMEM);
                continue;
            }
            if (!run_until(l, res_done, &r[i], 5000))
                fail_msg("n=%d: request %d never ended", n, i);
            if (r[i].error && !r[i].msg[0])
                fail_msg("n=%d: error %d with no message", n, r[i].error);
            if (!r[i].error) {
                assert_int_equal(r[i].status, 200);
                assert_string_equal(r[i].body, "hello world");
            }
        }
        fired = mem_fail_fired();
        mem_fail_at(0);
        run_for(l, 2);
        for (int i = 0; i < 2; i++) {
            assert_true(r[i].done <= 1);
            assert_int_equal(r[i].after_done, 0);
            if (!fired) {
                expect_ok(&r[i]);
                assert_int_equal(r[i].reused, i == 1);
            }
            res_reset(&r[i]);
        }
        moor_http_client_free(cl);
        if (moor_mem_live_bytes() != base)
            fail_msg("n=%d: %lld bytes left after moor_http_client_free()", n,
                     (long long)(moor_mem_live_bytes() - base));
        moor_loop_free(l);
        if (moor_mem_live_bytes() != 0)
            fail_msg("n=%d: %lld bytes left", n,
                     (long long)moor_mem_live_bytes());
    }
    assert_false(fired);
    /* The client, its conn set, its resolver, the two calls, the first
     * response's scratch, the connection, its queue...: every one of them
     * was made to fail once. */
    if (n <= 8)
        fail_msg("only %d allocations in two GETs", n - 1);
    srv_stop(&s);
}

/* ---- 11. many requests over churned connections ------------------------- */

#define CHURN 10000

struct churn {
    struct moor_http_client *cl;
    int port, started, ok, failed;
    struct res r[8];
};

static void churn_next(struct res *x)
{
    struct churn *ch = x->arg;

    if (x->error)
        ch->failed++;
    else if (x->blen == 2)
        ch->ok++;
    if (ch->started < CHURN) {
        int id = x->id;

        free(x->body);
        memset(x, 0, sizeof(*x));
        x->arg = ch;
        x->on_done = churn_next;
        x->id = id;
        ch->started++;
        start(ch->cl, ch->port, "/ok", x);
    }
}

static int churn_done(void *p)
{
    struct churn *ch = p;

    return ch->ok + ch->failed == CHURN;
}

static void test_churn(void **state)
{
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client_stats st;
    struct churn ch = {0};

    (void)state;
    srv_start(&s, h_serve);
    opts_init(&o);
    o.max_requests_per_conn = 10;
    ch.cl = new_client(l, &o);
    ch.port = s.port;
    for (int i = 0; i < 8; i++) {
        ch.r[i].arg = &ch;
        ch.r[i].on_done = churn_next;
        ch.r[i].id = i;
        ch.started++;
        start(ch.cl, s.port, "/ok", &ch.r[i]);
    }
    assert_true(run_until(l, churn_done, &ch, 60000));
    assert_int_equal(ch.failed, 0);
    assert_int_equal(ch.ok, CHURN);
    st = stats(ch.cl);
    assert_int_equal(st.requests, CHURN);
    assert_int_equal(st.closed_error, 0);
    assert_int_equal(st.retries, 0);
    assert_true(st.conns_new >= CHURN / 10);
    assert_true(st.conns_new <= CHURN / 10 + 8);
    for (int i = 0; i < 8; i++)
        res_reset(&ch.r[i]);
    moor_http_client_free(ch.cl);
    moor_loop_free(l);
    assert_int_equal(mem_live_bytes(MEM_HTTPC), 0);
    assert_int_equal(mem_live_bytes(MEM_CONN), 0);
    assert_int_equal(mem_live_bytes(MEM_MSG), 0);
    assert_int_equal(mem_live_bytes(MEM_TLS), 0);
    assert_int_equal(mem_live_bytes(MEM_DNS), 0);
    srv_stop(&s);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* ---- many hosts -------------------------------------------------------- */

/* More hosts than the client keeps (1024): the empty ones are freed as
 * new ones come, never the one a request is being started on. Every
 * request is refused (nothing listens on the port on any 127.0.x.y). */
static void test_many_hosts(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    (void)state;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd); /* the port is free now: connects to it are refused */
    opts_init(&o);
    cl = new_client(l, &o);
    for (int i = 0; i < 1300; i++) {
        struct moor_http_request rq;
        struct moor_error err = {0};
        struct res x = {0};
        char url[128];

        snprintf(url, sizeof(url), "http://127.0.%d.%d:%d/", i / 250,
                 i % 250 + 1, port);
        moor_http_request_init(&rq);
        rq.url = url;
        assert_non_null(moor_http_client_request(cl, &rq, &cbs, &x, &err));
        wait_res(l, &x, 3000);
        if (x.error != -ECONNREFUSED)
            fail_msg("%s: %s (%s)", url, moor_strerror(x.error), x.msg);
        res_reset(&x);
    }
    assert_int_equal(stats(cl).requests, 1300);
    {
        struct moor_http_client_stats st;
        char key[64];
        int kept = 0;

        for (int i = 0; i < 1300; i++) {
            snprintf(key, sizeof(key), "http://127.0.%d.%d:%d", i / 250,
                     i % 250 + 1, port);
            kept += moor_http_client_stats(cl, key, &st) == 0;
        }
        assert_int_equal(kept, 1024);
        /* the newest is kept */
        assert_int_equal(moor_http_client_stats(cl, key, &st), 0);
    }
    finish(l, cl, NULL);
}

/* ---- 12. freeing with calls in every state ------------------------------ */

static int got_body(void *p)
{
    return ((struct res *)p)->blen >= 1000;
}

/* From an on_done that moor_http_client_free() runs: no new request. */
static void request_while_freeing(struct res *x)
{
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct moor_http_client *cl = x->arg;

    moor_http_request_init(&rq);
    rq.url = "http://127.0.0.1:1/";
    assert_null(moor_http_client_request(cl, &rq, &cbs, x, &err));
    assert_int_equal(err.code, MOOR_ESTATE);
}

static void test_free_busy(void **state)
{
    struct srv s = {0}, h = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct res r[5] = {{0}};
    int fds[16], nfds, port, lfd;

    (void)state;
    srv_start(&s, h_hang);
    srv_start(&h, h_half_body);
    lfd = hang_listener(&port, fds, &nfds);
    opts_init(&o);
    o.max_conns_per_host = 1;
    o.max_waiting_per_host = 1;
    cl = new_client(l, &o);
    r[0].arg = cl;
    r[0].on_done = request_while_freeing;
    start(cl, s.port, "/", &r[0]); /* running: no answer */
    start(cl, s.port, "/", &r[1]); /* waiting */
    start(cl, h.port, "/", &r[2]); /* a body half read */
    start(cl, port, "/", &r[3]);   /* dialing, forever */
    assert_true(run_until(l, got_body, &r[2], 3000));
    for (int i = 0; i < 20 && s.total_reqs < 1; i++)
        run_for(l, 5);
    assert_int_equal(s.total_reqs, 1);
    assert_int_equal(stats(cl).waiting, 1);
    assert_int_equal(stats(cl).dialing, 1);
    assert_int_equal(stats(cl).active, 2);
    start(cl, s.port, "/", &r[4]); /* failed inside request(), not told */
    moor_http_client_free(cl);
    for (int i = 0; i < 4; i++) {
        expect_err(&r[i], -ECANCELED);
        assert_int_equal(r[i].after_done, 0);
        res_reset(&r[i]);
    }
    expect_err(&r[4], MOOR_EQUEUEFULL);
    res_reset(&r[4]);
    moor_loop_free(l);
    hang_close(lfd, fds, nfds);
    srv_stop(&h);
    srv_stop(&s);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* ---- 13. TLS ------------------------------------------------------------ */

static void make_cert(char *dir, char *cert, char *key, const char *san)
{
    char cmd[768];

    assert_non_null(mkdtemp(dir));
    sprintf(cert, "%s/cert.pem", dir);
    sprintf(key, "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -days 2 -subj /CN=moor-test -addext subjectAltName=%s "
             "-keyout %s -out %s >/dev/null 2>&1",
             san, key, cert);
    assert_int_equal(system(cmd), 0);
}

/* max_handshakes 1 and a server that takes the TCP connection (the
 * kernel's accept queue) and never answers a ClientHello: one handshake
 * runs, the other dials wait their turn; freeing the client with them
 * waiting cancels their requests and leaves nothing behind. */
static void tls_queue(struct moor_loop *l, const char *ca)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct moor_http_client_options o;
    struct moor_http_client *cl;
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct res r[3] = {{0}};
    char url[128];

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    opts_init(&o);
    o.tls_ca = ca;
    o.max_handshakes = 1;
    o.tls_sessions_per_host = 0; /* nobody waits for a leader */
    cl = new_client(l, &o);
    moor_http_request_init(&rq);
    rq.url = url;
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", ntohs(sa.sin_port));
    for (int i = 0; i < 3; i++)
        assert_non_null(moor_http_client_request(cl, &rq, &cbs, &r[i], &err));
    for (int i = 0; i < 200 && stats(cl).tls_waiting < 2; i++)
        run_for(l, 5);
    assert_int_equal(stats(cl).tls_waiting, 2);
    assert_int_equal(stats(cl).tls_waited, 2);
    assert_int_equal(stats(cl).dialing, 3);
    moor_http_client_free(cl);
    for (int i = 0; i < 3; i++) {
        expect_err(&r[i], -ECANCELED);
        res_reset(&r[i]);
    }
    close(lfd);
}

static void test_tls(void **state)
{
    char dir[] = "/tmp/moor-hc-tls.XXXXXX", cert[128], key[128], url[128],
         cmd[160];
    struct srv s = {0};
    struct moor_http_client_options o;
    struct moor_loop *l = new_loop();
    struct moor_http_client *cl;
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct res a = {0}, b = {0}, c = {0};

    (void)state;
    make_cert(dir, cert, key, "IP:127.0.0.1");
    s.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s.ctx);
    assert_int_equal(
        SSL_CTX_use_certificate_file(s.ctx, cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(s.ctx, key, SSL_FILETYPE_PEM),
                     1);
    srv_start(&s, h_serve);
    opts_init(&o);
    o.tls_ca = cert;
    cl = new_client(l, &o);

    moor_http_request_init(&rq);
    rq.url = url;
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/cl", s.port);
    a.t0 = now_ms();
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &a, &err));
    wait_res(l, &a, 5000);
    expect_ok(&a);
    assert_string_equal(a.body, "hello world");
    assert_int_equal(SRV(&s, resumed), 0);

    /* A large body, chunked, over TLS. */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/largechunked", s.port);
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &c, &err));
    wait_res(l, &c, 5000);
    expect_ok(&c);
    assert_int_equal(c.reused, 1);
    assert_int_equal(c.blen, LARGE_LEN);
    for (size_t i = 0; i < LARGE_LEN; i++)
        if (c.body[i] != large_byte(i))
            fail_msg("byte %zu differs", i);
    res_reset(&c);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/cl", s.port);

    /* A new connection resumes the session. */
    moor_http_client_close_idle(cl);
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &b, &err));
    wait_res(l, &b, 5000);
    expect_ok(&b);
    assert_int_equal(b.reused, 0);
    assert_int_equal(SRV(&s, accepted), 2);
    assert_int_equal(SRV(&s, resumed), 1);

    /* The wrong name: the certificate is for 127.0.0.1 only. */
    snprintf(url, sizeof(url), "https://localhost:%d/cl", s.port);
    assert_non_null(moor_http_client_request(cl, &rq, &cbs, &c, &err));
    wait_res(l, &c, 5000);
    expect_err(&c, MOOR_ETLS_VERIFY);
    if (!strstr(c.msg, "mismatch"))
        fail_msg("message: %s", c.msg);
    res_reset(&a);
    res_reset(&b);
    res_reset(&c);
    moor_http_client_free(cl);
    tls_queue(l, cert);
    finish(l, NULL, &s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_from_on_head),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_total_while_waiting),
        cmocka_unit_test(test_produced_body),
        cmocka_unit_test(test_api_refusals),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_many_hosts),
        cmocka_unit_test(test_free_busy),
        cmocka_unit_test(test_tls),
    };

    test_filter(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
