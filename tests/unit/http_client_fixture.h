/*
 * http_client_fixture.h - what test_http_client.c and
 * test_http_client_life.c share: the scripted in-process server (a thread
 * with a listening socket on 127.0.0.1:0 that runs one thread per
 * accepted connection, each following the test's script: answer, delay,
 * close, reset, hang, send a stray byte, never read, speak TLS through
 * OpenSSL; it records the connections it accepted and the requests, with
 * their bodies, it saw), its canned answers, and the client side's
 * callbacks, result records and waits. Included once per test program;
 * everything is static.
 */
#ifndef MOOR_TEST_HTTP_CLIENT_FIXTURE_H
#define MOOR_TEST_HTTP_CLIENT_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "moor.h"
#include "mem.h"

#define HC_UNUSED __attribute__((unused))

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

/* ---- time and the loop -------------------------------------------------- */

static HC_UNUSED int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static HC_UNUSED void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Runs l until done(arg) or ms have passed. Returns 1 if done. */
static HC_UNUSED int run_until(struct moor_loop *l, int (*done)(void *),
                               void *arg, int ms)
{
    int64_t end = now_ms() + ms;

    while (!done(arg)) {
        if (now_ms() > end)
            return 0;
        if (moor_loop_run_once(l, 5) < 0)
            return 0;
    }
    return 1;
}

/* Runs l for ms. */
static HC_UNUSED void run_for(struct moor_loop *l, int ms)
{
    int64_t end = now_ms() + ms;

    while (now_ms() < end)
        moor_loop_run_once(l, 5);
}

static HC_UNUSED struct moor_loop *new_loop(void)
{
    struct moor_error err = {0};
    struct moor_loop *l = moor_loop_new(NULL, &err);

    assert_non_null(l);
    return l;
}

/* ---- the scripted server ------------------------------------------------ */

#define MAX_REQS 512

struct sreq {
    int conn; /* the connection's index, in accept order */
    char method[16];
    char target[256];
    char head[2048]; /* the head as received (truncated) */
    char *body;      /* decoded (malloc'd) */
    size_t body_len;
};

struct srv;

/* One accepted connection. */
struct sc {
    struct srv *s;
    int fd;
    SSL *ssl;
    int idx;  /* accept order */
    int nreq; /* requests read on it */
    size_t len;
    char buf[1 << 16];
};

typedef void srv_fn(struct sc *c);

struct srv {
    int lfd, port;
    pthread_t th;
    volatile int stop;
    srv_fn *fn;
    SSL_CTX *ctx; /* TLS, or NULL */
    int rcvbuf;   /* SO_RCVBUF of the listener, 0: the default */
    int delay_ms; /* before each answer */
    int mode;     /* the handler's variant */
    pthread_mutex_t mu;
    int accepted, closed, live, resumed, eofs;
    long total_reqs;
    struct sreq reqs[MAX_REQS];
    int nreqs;
};

static HC_UNUSED int sc_recv(struct sc *c, void *p, size_t n)
{
    for (;;) {
        int r;

        if (c->s->stop)
            return -1;
        if (c->ssl) {
            r = SSL_read(c->ssl, p, (int)n);
            if (r > 0)
                return r;
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                continue;
            }
            return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
        r = (int)recv(c->fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
    }
}

static HC_UNUSED int sc_send(struct sc *c, const void *p, size_t n)
{
    const char *b = p;

    while (n > 0) {
        ssize_t w;

        if (c->s->stop)
            return -1;
        if (c->ssl) {
            w = SSL_write(c->ssl, b, (int)n);
            if (w <= 0) {
                int e = SSL_get_error(c->ssl, (int)w);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    continue;
                return -1;
            }
        } else {
            w = send(c->fd, b, n, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (w <= 0)
                return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static HC_UNUSED int sc_sends(struct sc *c, const char *s)
{
    return sc_send(c, s, strlen(s));
}

/* Sleeps ms, or less if the server stops. */
static HC_UNUSED void sc_sleep(struct sc *c, int ms)
{
    for (int i = 0; i < ms && !c->s->stop; i++)
        sleep_ms(1);
}

/* Makes n more bytes available in c->buf. Returns 0, or -1 at EOF. */
static HC_UNUSED int sc_fill(struct sc *c)
{
    int r;

    if (c->len == sizeof(c->buf))
        return -1;
    r = sc_recv(c, c->buf + c->len, sizeof(c->buf) - c->len);
    if (r <= 0)
        return -1;
    c->len += (size_t)r;
    return 0;
}

static HC_UNUSED void sc_consume(struct sc *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads until EOF (or the server stops), counting the EOF. */
static HC_UNUSED void sc_wait_close(struct sc *c)
{
    char tmp[4096];

    while (sc_recv(c, tmp, sizeof(tmp)) > 0)
        ;
    pthread_mutex_lock(&c->s->mu);
    c->s->eofs++;
    pthread_mutex_unlock(&c->s->mu);
}

/* Reads one whole request (head, and body by Content-Length or chunked)
 * and records it. Returns its index in s->reqs (or MAX_REQS past the
 * log), or -1 at EOF. *q gets the request's copy (static past the log).
 */
static HC_UNUSED int sc_read_request(struct sc *c, struct sreq *q)
{
    struct srv *s = c->s;
    char *end, *v;
    size_t hl, cl = 0;
    bool chunked = false;
    int at;

    memset(q, 0, sizeof(*q));
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (sc_fill(c) < 0)
            return -1;
    hl = (size_t)(end - c->buf) + 4;
    memcpy(q->head, c->buf, MIN(hl, sizeof(q->head) - 1));
    sscanf(q->head, "%15s %255s", q->method, q->target);
    if ((v = strcasestr(q->head, "\r\nContent-Length:")))
        cl = strtoul(v + 17, NULL, 10);
    if (strcasestr(q->head, "\r\nTransfer-Encoding: chunked"))
        chunked = true;
    sc_consume(c, hl);
    if (!chunked) {
        q->body = malloc(cl + 1);
        while (q->body_len < cl) {
            size_t n;

            if (!c->len && sc_fill(c) < 0)
                goto eof;
            n = MIN(c->len, cl - q->body_len);
            memcpy(q->body + q->body_len, c->buf, n);
            q->body_len += n;
            sc_consume(c, n);
        }
    } else {
        size_t cap = 4096;

        q->body = malloc(cap);
        for (;;) {
            char *nl;
            size_t sz;

            while (!(nl = memmem(c->buf, c->len, "\r\n", 2)))
                if (sc_fill(c) < 0)
                    goto eof;
            sz = strtoul(c->buf, NULL, 16);
            sc_consume(c, (size_t)(nl - c->buf) + 2);
            if (!sz) {
                while (!memmem(c->buf, c->len, "\r\n", 2))
                    if (sc_fill(c) < 0)
                        goto eof;
                sc_consume(c, 2); /* no trailers from moor */
                break;
            }
            while (c->len < sz + 2)
                if (sc_fill(c) < 0)
                    goto eof;
            if (q->body_len + sz > cap) {
                while (q->body_len + sz > cap)
                    cap *= 2;
                q->body = realloc(q->body, cap);
            }
            memcpy(q->body + q->body_len, c->buf, sz);
            q->body_len += sz;
            sc_consume(c, sz + 2);
        }
    }
    q->conn = c->idx;
    c->nreq++;
    pthread_mutex_lock(&s->mu);
    s->total_reqs++;
    at = s->nreqs < MAX_REQS ? s->nreqs++ : MAX_REQS;
    if (at < MAX_REQS) {
        s->reqs[at] = *q;
    } else {
        free(q->body);
        q->body = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return at;

eof:
    free(q->body);
    q->body = NULL;
    return -1;
}

static HC_UNUSED void *conn_thread(void *arg)
{
    struct sc *c = arg;
    struct srv *s = c->s;

    if (s->ctx) {
        c->ssl = SSL_new(s->ctx);
        SSL_set_fd(c->ssl, c->fd);
        for (;;) {
            int r = SSL_accept(c->ssl), e;

            if (r == 1)
                break;
            e = SSL_get_error(c->ssl, r);
            ERR_clear_error();
            if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
                s->stop)
                goto out;
        }
        if (SSL_session_reused(c->ssl)) {
            pthread_mutex_lock(&s->mu);
            s->resumed++;
            pthread_mutex_unlock(&s->mu);
        }
    }
    s->fn(c);
out:
    if (c->ssl)
        SSL_free(c->ssl);
    ERR_clear_error();
    close(c->fd);
    pthread_mutex_lock(&s->mu);
    s->closed++;
    s->live--;
    pthread_mutex_unlock(&s->mu);
    free(c);
    return NULL;
}

static HC_UNUSED void *accept_thread(void *arg)
{
    struct srv *s = arg;

    while (!s->stop) {
        struct pollfd pf = {.fd = s->lfd, .events = POLLIN};
        struct timeval tv = {.tv_usec = 10000};
        struct sc *c;
        pthread_t th;
        int fd, one = 1;

        if (poll(&pf, 1, 10) <= 0)
            continue;
        fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        c->idx = s->accepted++;
        s->live++;
        pthread_mutex_unlock(&s->mu);
        if (pthread_create(&th, NULL, conn_thread, c) != 0) {
            close(fd);
            free(c);
            pthread_mutex_lock(&s->mu);
            s->live--;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        pthread_detach(th);
    }
    return NULL;
}

static HC_UNUSED void srv_start(struct srv *s, srv_fn *fn)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int one = 1;

    /* The server's OpenSSL writes with write(), not send(MSG_NOSIGNAL):
     * a client that left must not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    s->fn = fn;
    s->stop = 0;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s->rcvbuf)
        setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &s->rcvbuf,
                   sizeof(s->rcvbuf));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->lfd, 512), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, accept_thread, s), 0);
}

static HC_UNUSED void srv_stop(struct srv *s)
{
    int64_t end = now_ms() + 5000;

    s->stop = 1;
    pthread_join(s->th, NULL);
    for (;;) {
        int live;

        pthread_mutex_lock(&s->mu);
        live = s->live;
        pthread_mutex_unlock(&s->mu);
        if (!live)
            break;
        if (now_ms() > end)
            fail_msg("server threads did not end");
        sleep_ms(1);
    }
    close(s->lfd);
    for (int i = 0; i < s->nreqs; i++)
        free(s->reqs[i].body);
    if (s->ctx)
        SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
}

/* Figures under the server's lock. */
static HC_UNUSED int srv_get(struct srv *s, const int *field)
{
    int v;

    pthread_mutex_lock(&s->mu);
    v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}
#define SRV(s, f) srv_get((s), &(s)->f)

/* How many requests with this method the server saw. */
static HC_UNUSED int srv_count_method(struct srv *s, const char *m)
{
    int n = 0;

    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nreqs; i++)
        n += !strcmp(s->reqs[i].method, m);
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- what the server answers -------------------------------------------- */

#define OK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* Canned answers by path; close: the server closes right after. */
static HC_UNUSED const struct shape {
    const char *path;
    const char *resp;
    bool close;
} shapes[] = {
    {"/cl", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", 0},
    {"/chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5;name=value\r\nhello\r\n6;a=b;c=\"d\"\r\n world\r\n"
     "f\r\n, and 15 bytes.\r\n0\r\nX-Trailer: t\r\nX-Two: 2\r\n\r\n",
     0},
    {"/close", "HTTP/1.1 200 OK\r\n\r\nuntil the close", 1},
    {"/head", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0},
    {"/204", "HTTP/1.1 204 No Content\r\n\r\n", 0},
    {"/304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", 0},
    {"/100",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
     "5\r\n\r\nhello",
     0},
    {"/10", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/connclose",
     "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/extra", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 0},
    /* malformed */
    {"/clte",
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: "
     "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     0},
    {"/twocl",
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
     0},
    {"/lf", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", 0},
    {"/badchunk",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
     "0\r\n\r\n",
     0},
};

#define LARGE_LEN (1 << 20)

static HC_UNUSED char large_byte(size_t i)
{
    return (char)(i * 131 + (i >> 9));
}

/* Sends the answer for q's target. Returns false if the server should
 * close now. */
static HC_UNUSED bool answer(struct sc *c, const struct sreq *q)
{
    const char *p = strchr(q->target, '?') ? NULL : q->target;
    char big[4096];

    if (c->s->delay_ms)
        sc_sleep(c, c->s->delay_ms);
    for (size_t i = 0; p && i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        if (strcmp(p, shapes[i].path))
            continue;
        if (!strcmp(p, "/chunked") && c->s->mode == 1) {
            /* byte by byte */
            for (const char *b = shapes[i].resp; *b; b++) {
                sc_send(c, b, 1);
                usleep(100);
            }
        } else {
            sc_sends(c, shapes[i].resp);
        }
        return !shapes[i].close;
    }
    if (p && !strncmp(p, "/large", 6)) {
        /* LARGE_LEN bytes of large_byte(i): with Content-Length, or in
         * chunks of 1 to 9000 bytes. */
        char *body = malloc(LARGE_LEN);

        for (size_t i = 0; i < LARGE_LEN; i++)
            body[i] = large_byte(i);
        if (!strcmp(p, "/large")) {
            char h[128];

            snprintf(h, sizeof(h),
                     "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     LARGE_LEN);
            sc_sends(c, h);
            sc_send(c, body, LARGE_LEN);
        } else {
            size_t off = 0, n = 1;

            sc_sends(c,
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            while (off < LARGE_LEN) {
                char h[32];

                n = MIN(n * 7 % 9000 + 1, LARGE_LEN - off);
                snprintf(h, sizeof(h), "%zx\r\n", n);
                sc_sends(c, h);
                sc_send(c, body + off, n);
                sc_sends(c, "\r\n");
                off += n;
            }
            sc_sends(c, "0\r\n\r\n");
        }
        free(body);
        return true;
    }
    if (p && !strcmp(p, "/bighead")) {
        int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Pad: ");
        memset(big + n, 'p', 2000);
        strcpy(big + n + 2000, "\r\nContent-Length: 2\r\n\r\nok");
        sc_sends(c, big);
        return true;
    }
    if (p && !strncmp(p, "/big", 4)) { /* 2000 body bytes */
        char body[2001];

        memset(body, 'b', 2000);
        body[2000] = '\0';
        if (!strcmp(p, "/bigcl"))
            sc_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n");
        else if (!strcmp(p, "/bigchunked"))
            sc_sends(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "7d0\r\n");
        else
            sc_sends(c, "HTTP/1.1 200 OK\r\n\r\n");
        sc_sends(c, body);
        if (!strcmp(p, "/bigchunked"))
            sc_sends(c, "\r\n0\r\n\r\n");
        return strcmp(p, "/bigclose") != 0;
    }
    sc_sends(c, OK);
    return true;
}

/* Answers every request. */
static HC_UNUSED void h_serve(struct sc *c)
{
    struct sreq q;

    while (sc_read_request(c, &q) >= 0)
        if (!answer(c, &q))
            return;
    sc_wait_close(c);
}

/* Reads requests, never answers. */
static HC_UNUSED void h_hang(struct sc *c)
{
    struct sreq q;

    while (sc_read_request(c, &q) >= 0)
        ;
    sc_wait_close(c);
}

/* Never reads. */
static HC_UNUSED void h_noread(struct sc *c)
{
    while (!c->s->stop)
        sleep_ms(2);
}

/* A head and 1000 of 100000 body bytes, then silence. */
static HC_UNUSED void h_half_body(struct sc *c)
{
    struct sreq q;
    char body[1000];

    if (sc_read_request(c, &q) < 0)
        return;
    memset(body, 'h', sizeof(body));
    sc_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    sc_send(c, body, sizeof(body));
    sc_wait_close(c);
}

/* 10000 of 20000 body bytes, 300 ms of silence, the other 10000. */
static HC_UNUSED void h_gap_body(struct sc *c)
{
    struct sreq q;
    char body[10000];

    if (sc_read_request(c, &q) < 0)
        return;
    memset(body, 'a', sizeof(body));
    sc_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n");
    sc_send(c, body, sizeof(body));
    sc_sleep(c, 300);
    memset(body, 'b', sizeof(body));
    sc_send(c, body, sizeof(body));
    sc_wait_close(c);
}

/* Answers, then 50 ms later: mode 0 closes (FIN), 1 resets, 2 sends a
 * stray byte. */
static HC_UNUSED void h_stale(struct sc *c)
{
    struct sreq q;

    if (sc_read_request(c, &q) < 0)
        return;
    sc_sends(c, OK);
    sc_sleep(c, 50);
    if (c->s->mode == 1) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        return;
    }
    if (c->s->mode == 2) {
        sc_sends(c, "X");
        sc_wait_close(c);
        return;
    }
}

/* The first request on a connection is answered; the second is read and
 * then: mode 0 closes without a byte, mode 1 sends part of a head first,
 * mode 2 resets.
 */
static HC_UNUSED void h_second_fails(struct sc *c)
{
    struct sreq q;

    if (sc_read_request(c, &q) < 0)
        return;
    answer(c, &q);
    if (sc_read_request(c, &q) < 0)
        return;
    if (c->s->mode == 1) {
        sc_sends(c, "HTTP/1.1 200 OK\r\nContent-Le");
        sc_sleep(c, 20);
    }
    if (c->s->mode == 2) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
}

/* ---- the client side ---------------------------------------------------- */

struct res;
typedef void res_fn(struct res *r);

struct res {
    struct moor_http_call *call;
    int done, error, status, retried, reused, heads;
    int after_done; /* callbacks after on_done: must stay 0 */
    uint64_t body_bytes;
    char msg[256];
    char *body;
    size_t blen, bcap;
    int64_t t0, t_done;
    /* hooks */
    res_fn *on_head, *on_body, *on_done;
    void *arg;
    int id;
};

static HC_UNUSED void cb_head(struct moor_http_call *c,
                              const struct moor_http_response *r, void *user)
{
    struct res *x = user;

    (void)c;
    if (x->done)
        x->after_done++;
    x->heads++;
    x->status = r->status;
    if (x->on_head)
        x->on_head(x);
}

static HC_UNUSED void cb_body(struct moor_http_call *c, const void *p, size_t n,
                              void *user)
{
    struct res *x = user;

    (void)c;
    if (x->done)
        x->after_done++;
    if (x->blen + n + 1 > x->bcap) {
        x->bcap = (x->blen + n + 1) * 2;
        x->body = realloc(x->body, x->bcap);
    }
    memcpy(x->body + x->blen, p, n);
    x->blen += n;
    x->body[x->blen] = '\0';
    if (x->on_body)
        x->on_body(x);
}

static HC_UNUSED void cb_done(struct moor_http_call *c,
                              const struct moor_http_result *r, void *user)
{
    struct res *x = user;

    (void)c;
    x->done++;
    x->error = r->error;
    if (r->status)
        x->status = r->status;
    x->retried = r->retried;
    x->reused = r->reused;
    x->body_bytes = r->body_bytes;
    x->t_done = now_ms();
    snprintf(x->msg, sizeof(x->msg), "%s", r->message ? r->message : "");
    x->call = NULL;
    if (x->on_done)
        x->on_done(x);
}

static HC_UNUSED const struct moor_http_callbacks cbs = {
    .on_head = cb_head,
    .on_body = cb_body,
    .on_done = cb_done,
};

static HC_UNUSED void res_reset(struct res *x)
{
    free(x->body);
    memset(x, 0, sizeof(*x));
}

static HC_UNUSED int res_done(void *p)
{
    return ((struct res *)p)->done != 0;
}

struct many {
    struct res *r;
    int n;
};

static HC_UNUSED int all_done(void *p)
{
    struct many *m = p;

    for (int i = 0; i < m->n; i++)
        if (!m->r[i].done)
            return 0;
    return 1;
}

/* Short deadlines so a failure shows fast. */
static HC_UNUSED void opts_init(struct moor_http_client_options *o)
{
    moor_http_client_options_init(o);
    o->connect_timeout_ms = 3000;
    o->tls_timeout_ms = 3000;
    o->write_timeout_ms = 3000;
    o->head_timeout_ms = 3000;
    o->body_timeout_ms = 3000;
    o->wait_timeout_ms = 3000;
}

static HC_UNUSED struct moor_http_client *
new_client(struct moor_loop *l, const struct moor_http_client_options *o)
{
    struct moor_error err = {0};
    struct moor_http_client *cl = moor_http_client_new(l, o, &err);

    if (!cl)
        fail_msg("moor_http_client_new: %d %s", err.code, err.message);
    return cl;
}

/* Starts a request; on_done must not have run when this returns. */
static HC_UNUSED struct moor_http_call *
start_full(struct moor_http_client *cl, const char *method, int port,
           const char *path, const void *body, size_t body_len,
           const struct moor_http_field *h, size_t nh, struct res *x)
{
    struct moor_http_request rq;
    struct moor_error err = {0};
    char url[256];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    moor_http_request_init(&rq);
    rq.method = method;
    rq.url = url;
    rq.body = body;
    rq.body_len = body_len;
    rq.headers = h;
    rq.n_headers = nh;
    x->t0 = now_ms();
    x->call = moor_http_client_request(cl, &rq, &cbs, x, &err);
    if (!x->call)
        fail_msg("request: %d %s", err.code, err.message);
    assert_int_equal(x->done, 0); /* never from inside request() */
    return x->call;
}

static HC_UNUSED struct moor_http_call *
start(struct moor_http_client *cl, int port, const char *path, struct res *x)
{
    return start_full(cl, "GET", port, path, NULL, 0, NULL, 0, x);
}

static HC_UNUSED void wait_res(struct moor_loop *l, struct res *x, int ms)
{
    if (!run_until(l, res_done, x, ms))
        fail_msg("request %d: no on_done within %d ms", x->id, ms);
    assert_int_equal(x->done, 1);
}

/* A GET to completion; returns its result. */
static HC_UNUSED void get(struct moor_loop *l, struct moor_http_client *cl,
                          int port, const char *path, struct res *x)
{
    start(cl, port, path, x);
    wait_res(l, x, 5000);
}

static HC_UNUSED struct moor_http_client_stats
stats(struct moor_http_client *cl)
{
    struct moor_http_client_stats st;

    assert_int_equal(moor_http_client_stats(cl, NULL, &st), 0);
    return st;
}

#define expect_ok(x)                                                           \
    do {                                                                       \
        if ((x)->error)                                                        \
            fail_msg("request failed: %s (%s)", moor_strerror((x)->error),     \
                     (x)->msg);                                                \
        assert_int_equal((x)->done, 1);                                        \
    } while (0)

#define expect_err(x, e)                                                       \
    do {                                                                       \
        if ((x)->error != (e))                                                 \
            fail_msg("want %s, got %d %s (%s)", moor_strerror(e), (x)->error,  \
                     moor_strerror((x)->error), (x)->msg);                     \
        assert_int_equal((x)->done, 1);                                        \
    } while (0)

/* The elapsed time of x, between 0.8 x ms and 3 x ms + 100. */
static HC_UNUSED void expect_near(const struct res *x, int ms)
{
    int64_t t = x->t_done - x->t0;

    if (t < ms * 8 / 10 || t >= ms * 3 + 100)
        fail_msg("took %lld ms, want about %d", (long long)t, ms);
}

/* Frees client, loop and server; then moor holds no byte. */
static HC_UNUSED void finish(struct moor_loop *l, struct moor_http_client *cl,
                             struct srv *s)
{
    moor_http_client_free(cl);
    moor_loop_free(l);
    if (s)
        srv_stop(s);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* A listener whose accept queue is full, so new SYNs are dropped: a
 * connect to it hangs. fds[] get the connections that fill it. */
static HC_UNUSED int hang_listener(int *port, int *fds, int *nfds)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    *nfds = 0;
    for (int i = 0; i < 16; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct pollfd pf = {.fd = fd, .events = POLLOUT};

        fds[(*nfds)++] = fd;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            continue;
        assert_int_equal(errno, EINPROGRESS);
        if (poll(&pf, 1, 300) == 0)
            return lfd; /* this one hangs: the queue is full */
    }
    fail_msg("could not fill a listen(fd, 0) accept queue");
    return -1;
}

static HC_UNUSED void hang_close(int lfd, int *fds, int nfds)
{
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    close(lfd);
}

struct chain {
    struct moor_http_client *cl;
    int port;
    struct res next;
};

/* A produced body: data[0..len) in pieces, on_writable after on_writable
 * until moor_http_call_write() says 1. */
struct producer {
    const char *data;
    size_t len, off, piece;
    int writables, full, ends;
};

static HC_UNUSED void on_writable(struct moor_http_call *c, void *user)
{
    struct res *x = user;
    struct producer *p = x->arg;

    p->writables++;
    while (p->off < p->len) {
        size_t n = MIN(p->piece, p->len - p->off);
        int rc = moor_http_call_write(c, p->data + p->off, n);

        assert_true(rc == 0 || rc == 1);
        p->off += n;
        if (rc == 1) {
            p->full++;
            return;
        }
    }
    if (!p->ends++)
        assert_int_equal(moor_http_call_write_end(c), 0);
}

static HC_UNUSED const struct moor_http_callbacks producer_cbs = {
    .on_head = cb_head,
    .on_body = cb_body,
    .on_writable = on_writable,
    .on_done = cb_done,
};

/* `test_http_client test_retry` runs one test. */
static HC_UNUSED void test_filter(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
}

#endif
