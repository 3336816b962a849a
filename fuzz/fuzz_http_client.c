/*
 * fuzz_http_client.c - libFuzzer target that drives whole connections
 * through moor's pooled HTTP client (moor_http_client_*: src/http_client.c,
 * src/http_client_call.c, src/http_client_conn.c, src/http1_response.c),
 * against a fake server the input scripts.
 *
 * Each input gets a new moor_loop and one moor_http_client with short
 * deadlines. The server is this file: a listener on 127.0.0.1 port 0
 * (made once per process, two of them: one with a small SO_RCVBUF, so the
 * client's writes come back short) that the input accepts from itself,
 * non-blocking, into up to four server slots. The input is a script of
 * client operations (start a request, cancel, pause, resume, produce body
 * bytes, close the idle connections) and server operations (write bytes
 * in the splits it says, run the loop, half-close, close, reset, accept,
 * stop reading). Between operations the loop runs once without waiting
 * (moor_loop_run_once(l, 0)) and every reading slot drains what the client
 * sent. Requests are GET, HEAD, DELETE, POST and PUT with a body from
 * memory, PUT with a produced Content-Length body and POST with a produced
 * chunked one; a request may pause its body, cancel itself from on_head,
 * on_body or on_writable, cancel the others from on_head, start another
 * request from on_done or at its first body bytes, or close the idle
 * connections from on_head or on_done. With
 * two or three requests in flight or in sequence, pooled reuse, the retry
 * of an idempotent request on a stale connection, the wait queue, stray
 * bytes on an idle connection and pipelining-shaped garbage are in reach.
 * Plain HTTP only: TLS is out of scope here (tests/unit/test_http_client*
 * and the integration tests cover it).
 *
 * Input format (fuzz/corpus/make_http_client_seeds.py writes seeds in it):
 *   byte 0   the client's options: bits 0-1 max_conns_per_host (1, 2, 3,
 *            or 4); bit 2: the listener with a small receive buffer;
 *            bit 3: tight deadlines (1 ms each; the timer wheel ticks
 *            16 ms, so they fire on slow inputs and after op 15);
 *            bit 4: max_requests_per_conn 2; bit 5: small limits
 *            (max_header_bytes 256, max_headers 8, max_body 1000,
 *            queue_limit 1024); bit 6: max_idle_per_host 1; bit 7:
 *            max_waiting_per_host 1
 *   byte 1   bits 0-1: the loop's read buffer (64 KiB, 4 KiB, 512, 97
 *            bytes), so a response arrives in pieces; bits 2-3:
 *            max_conn_age_ms 0 (none), 1, 5 or 30
 *   then ops, each a control byte c: op = c & 15, x = c >> 4 (a server
 *   slot x & 3, or a call x % calls started):
 *     0  start a request: the next two bytes a, b say what it is
 *          a bits 0-2: GET, HEAD, POST (memory body), PUT (produced,
 *            Content-Length), POST (produced, chunked), DELETE, POST with
 *            an Idempotency-Key (memory body), PUT (memory body)
 *          a bits 3-4: body size 0, 3, 700 or 6000 bytes
 *          a bits 5-7: what its callbacks do: 0 nothing, 1 pause at the
 *            first body bytes, 2 cancel in on_head, 3 cancel at the first
 *            body bytes, 4 cancel in on_writable after a write, 5 start
 *            another request (the same, doing nothing) from on_done,
 *            6 close_idle from on_done, 7 cancel every other call from
 *            on_head
 *          b bits 0-3: the producer's piece size; bit 4: lazy producer
 *            (writes only at op 13), or with no producer: start another
 *            request (a GET doing nothing) at the first body bytes;
 *            bit 5: tries to write past body_length (must get
 *            -EINVAL), or with no producer: close_idle in on_head;
 *            bits 6-7: 1: the URL's
 *            host is "localhost" (resolved, another pool), 2: timeout_ms
 *            1, 3: a port nothing listens on (connection refused)
 *     1  server slot x writes the next L bytes, L = next byte (0: 256)
 *     2  the same, L = next two bytes, little-endian
 *     3  server slot x writes the rest of the input
 *     4  run the loop 1 + (next byte % 16) more times
 *     5  shutdown(SHUT_WR) slot x       6  close slot x
 *     7  reset slot x (SO_LINGER 0, close)
 *     8  accept the next connection into slot x (closing what is there)
 *     9  slot x stops / resumes reading
 *     10 cancel call x                  11 pause call x
 *     12 resume call x                  13 call x produces one piece
 *     14 moor_http_client_close_idle    15 the loop waits for its next
 *                                          deadline, 17 ms at most (tight
 *                                          deadlines only, once an input)
 *   A write to an empty slot first accepts the next connection into it.
 *
 * Checked: no callback runs inside moor_http_client_request() or after
 * the call's on_done; on_done runs exactly once per accepted request
 * (and inside moor_http_call_cancel() for a cancel); on_head at most
 * once, with a status of 200..599 (1xx are skipped, 101 refused), no
 * body announced for HEAD, 204 and 304, and else the content_length of
 * the Content-Length field (found with moor_http_response_header()); no
 * body bytes for those; body bytes delivered add up to the result's
 * body_bytes and to the Content-Length of a call that succeeded; a call
 * that succeeded had a head with its status; a retried call was
 * idempotent and had no produced body; moor_http_call_write() and
 * _write_end() answer what moor.h says; with no call in flight the pool
 * has no active connection and no waiting request. What the client
 * sends is checked as the slots read it: each request's line, Host,
 * Idempotency-Key and framing (none, Content-Length of its body's size,
 * or chunked with no trailers and the size produced), body bytes that
 * are the caller's and nothing else, and each request sent whole at
 * most once (twice if retried). At the end of the input, if nothing is
 * in flight and a connection is pooled, a probe GET goes on the most
 * recent one: its slot must read it as a request of its own (nothing of
 * an earlier one left unwritten), and answered there it must succeed
 * with that answer (nothing of an earlier response left). After
 * moor_http_client_free() every call has had its on_done, and after
 * moor_loop_free() live bytes (moor_mem_live_bytes()) equal what they
 * were before the input: a leak aborts with the live bytes by tag
 * (FUZZ_HC_TRACE=1 adds the allocation sites). ASan and UBSan catch the
 * rest. FUZZ_HC_SHOW=1 prints what the client sends and the results.
 *
 * Bounds: inputs over MAX_INPUT bytes are ignored; an input gets at
 * most MAX_STEPS loop iterations and MAX_CALLS requests, and never
 * waits on the clock but for op 15 (and the probe, if its answer is
 * slow to come). Deadlines are 1 s (1 ms with bit 3), so they do not
 * fire otherwise, even on a loaded machine: the client is freed at the
 * end of the input whatever is left in flight.
 *
 * Must not: listen anywhere but 127.0.0.1 port 0, or keep a connection
 * from one input to the next (the accept queues are emptied after each).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "moor.h"
#include "log.h"
#include "mem.h"
#include "check.h"

#define MAX_INPUT (16 * 1024)
#define MAX_STEPS 1024
#define MAX_CALLS 8
#define MAX_SLOTS 4
#define BODY_MAX 6000

/* ---- the server side ---------------------------------------------------- */

/* What a slot reads: the client's requests, checked as they come. */
enum rstate { RS_HEAD, RS_CL, RS_SIZE, RS_DATA, RS_CRLF, RS_LAST };

struct slot {
    int fd; /* the accepted connection, -1 when none */
    bool reading;
    uint8_t st;     /* enum rstate */
    int call;       /* the request being read: its call's index */
    uint64_t left;  /* body bytes to come (Content-Length or chunk) */
    uint64_t got;   /* body bytes of this request */
    size_t hlen;    /* bytes in line[] */
    char line[512]; /* the head, or a chunk-size line, so far */
};

static int lfd[2], lport[2]; /* the listeners: normal, small SO_RCVBUF */
static int refused_port;     /* bound, never listening: connect refused */
static int cur;              /* the input's listener */
static struct slot slots[MAX_SLOTS];
static bool show;

static int listener(int rcvbuf, int *port, bool listening)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    CHECK(fd >= 0);
    if (rcvbuf)
        CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) ==
              0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    if (listening)
        CHECK(listen(fd, 64) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void slot_close(struct slot *s, bool reset)
{
    if (s->fd < 0)
        return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(s->fd);
    s->fd = -1;
}

/* Takes the next connection of the input's listener into s, if one is
 * waiting. */
static bool slot_accept(struct slot *s)
{
    int fd = accept4(lfd[cur], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int one = 1;

    if (fd < 0)
        return false;
    /* Else Nagle holds a write behind the client's delayed ACK (40 ms):
     * stray bytes would reach the client after its next request. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    slot_close(s, false);
    s->fd = fd;
    s->reading = true;
    s->st = RS_HEAD;
    s->hlen = 0;
    return true;
}

/* Closes every connection still waiting in both accept queues. */
static void empty_accept_queues(void)
{
    for (int i = 0; i < 2; i++) {
        int fd;

        while ((fd = accept4(lfd[i], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(fd);
        }
    }
}

/* ---- the client side ---------------------------------------------------- */

enum kind {
    K_GET,
    K_HEAD,
    K_POST_MEM,
    K_PUT_PRODUCED,
    K_POST_CHUNKED,
    K_DELETE,
    K_POST_KEY,
    K_PUT_MEM,
};

enum behave {
    B_NONE,
    B_PAUSE_BODY,
    B_CANCEL_HEAD,
    B_CANCEL_BODY,
    B_CANCEL_WRITABLE,
    B_CHAIN,
    B_CLOSE_IDLE,
    B_CANCEL_OTHERS,
};

struct call {
    struct moor_http_call *c; /* while in flight */
    uint8_t a, b;             /* the spec */
    bool started, head_req, produced, retry_ok;
    int done, heads, cancelling;
    int status;     /* on_head's */
    long long clen; /* on_head's content_length */
    uint64_t seen;  /* body bytes delivered */
    size_t total, off, piece;
    bool ended;
    struct moor_http_result res;
};

static struct moor_loop *loop;
static struct moor_http_client *client;
static struct call calls[MAX_CALLS + 1]; /* the last: the probe */
static int ncalls;
static int in_request; /* depth of moor_http_client_request() */
static unsigned steps;
static bool slept, tight;
static uint8_t body_bytes[BODY_MAX + 1];

static const size_t body_sizes[4] = {0, 3, 700, BODY_MAX};
static const size_t pieces[16] = {1,   2,   7,    16,   64,   100,  255,  512,
                                  700, 999, 1024, 1500, 2048, 3000, 4096, 6000};

static const char *const methods[8] = {"GET",  "HEAD",   "POST", "PUT",
                                       "POST", "DELETE", "POST", "PUT"};
static int sent[MAX_CALLS + 1];    /* complete requests seen, per call */
static int probe_call, probe_slot; /* the probe's index, where it went */

static void slot_drain(struct slot *s);

static void step(void)
{
    CHECK(moor_loop_run_once(loop, 0) >= 0);
    steps++;
    for (int i = 0; i < MAX_SLOTS; i++)
        slot_drain(&slots[i]);
}

static void start_call(uint8_t a, uint8_t b);

static struct call *of(struct moor_http_call *c, void *user)
{
    struct call *x = user;

    CHECK(in_request == 0); /* never from inside moor_http_client_request */
    CHECK(x->started && !x->done); /* no callback after on_done */
    CHECK(x->c == c);
    return x;
}

static void cancel(struct call *x)
{
    if (!x->c || x->done)
        return;
    x->cancelling++;
    moor_http_call_cancel(x->c);
    x->cancelling--;
    /* moor.h: on_done runs before moor_http_call_cancel() returns. */
    CHECK(x->done == 1);
}

/* Writes pieces of the produced body until moor says wait (1), the body
 * is done, or once if from an op (one). In a callback, 0 and 1 are the
 * only answers; from outside, -EAGAIN and MOOR_ESTATE may come too. */
static void produce(struct call *x, bool in_cb, bool one)
{
    while (x->c && !x->ended) {
        size_t n = x->total - x->off < x->piece ? x->total - x->off : x->piece;
        int rc;

        if (n == 0) {
            if (x->b & 0x20 && x->a % 8 == K_PUT_PRODUCED) {
                /* One byte past body_length. */
                rc = moor_http_call_write(x->c, "x", 1);
                CHECK(rc == -EINVAL || (!in_cb && rc == MOOR_ESTATE));
            }
            rc = moor_http_call_write_end(x->c);
            CHECK(rc == 0 || (!in_cb && rc == MOOR_ESTATE));
            if (rc == 0)
                x->ended = true;
            return;
        }
        if (x->b & 0x20 && x->a % 8 == K_PUT_PRODUCED && x->off == 0) {
            /* An early end: body_length is not met. */
            rc = moor_http_call_write_end(x->c);
            CHECK(rc == -EINVAL || (!in_cb && rc == MOOR_ESTATE));
        }
        rc = moor_http_call_write(x->c, body_bytes + x->off, n);
        if (in_cb)
            CHECK(rc == 0 || rc == 1);
        else
            CHECK(rc == 0 || rc == 1 || rc == -EAGAIN || rc == MOOR_ESTATE);
        if (rc < 0)
            return;
        x->off += n;
        if ((x->a >> 5) == B_CANCEL_WRITABLE && in_cb) {
            cancel(x);
            return;
        }
        if (rc == 1 || one)
            return;
    }
}

static void on_head(struct moor_http_call *c,
                    const struct moor_http_response *r, void *user)
{
    struct call *x = of(c, user);

    x->heads++;
    CHECK(x->heads == 1);
    CHECK(r->status >= 200 && r->status <= 599);
    x->status = r->status;
    x->clen = r->content_length;
    CHECK(r->content_length >= -1);
    if (x->head_req || r->status == 204 || r->status == 304)
        CHECK(r->content_length == 0);
    CHECK(r->n_headers == 0 || r->headers != NULL);
    for (size_t i = 0; i < r->n_headers; i++)
        CHECK(r->headers[i].name_len > 0);
    {
        /* The Content-Length field, found by any case, says what
         * content_length says (a body is framed by it). */
        size_t vl = 0, j = 0;
        const char *v = moor_http_response_header(r, "content-LENGTH", &vl);
        unsigned long long cl = 0;

        if (v && !x->head_req && r->status != 204 && r->status != 304) {
            while (j < vl && (v[j] == ' ' || v[j] == '\t'))
                j++;
            for (; j < vl && v[j] >= '0' && v[j] <= '9'; j++)
                cl = cl * 10 + (unsigned long long)(v[j] - '0');
            CHECK(r->content_length == (long long)cl);
        }
    }
    if (!x->produced && (x->b & 0x20))
        moor_http_client_close_idle(client);
    switch (x->a >> 5) {
    case B_CANCEL_HEAD:
        cancel(x);
        break;
    case B_CANCEL_OTHERS:
        for (int i = 0; i < ncalls; i++)
            if (&calls[i] != x)
                cancel(&calls[i]);
        break;
    default:
        break;
    }
}

static void on_body(struct moor_http_call *c, const void *p, size_t n,
                    void *user)
{
    struct call *x = of(c, user);
    bool first = x->seen == 0;

    CHECK(x->heads == 1);
    CHECK(!x->head_req && x->status != 204 && x->status != 304);
    CHECK(p != NULL && n > 0);
    x->seen += n;
    if (x->clen >= 0)
        CHECK(x->seen <= (uint64_t)x->clen);
    if (first && (x->a >> 5) == B_PAUSE_BODY)
        moor_http_call_pause(c);
    if (first && !x->produced && (x->b & 0x10))
        start_call(0, x->b & 0xc0); /* reentrant, mid-read */
    if (first && (x->a >> 5) == B_CANCEL_BODY && !x->done)
        cancel(x);
}

static void on_writable(struct moor_http_call *c, void *user)
{
    struct call *x = of(c, user);

    CHECK(x->produced && !x->ended);
    if (!(x->b & 0x10))
        produce(x, true, false);
}

static void on_done(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user)
{
    struct call *x = of(c, user);

    x->done++;
    x->c = NULL;
    x->res = *r;
    x->res.message = NULL;
    if (show)
        fprintf(stderr,
                "[call %d done] error %d (%s) status %d body %llu%s: %s\n",
                (int)(x - calls), r->error, moor_strerror(r->error), r->status,
                (unsigned long long)r->body_bytes, r->retried ? " retried" : "",
                r->message ? r->message : "(null)");
    CHECK(r->message != NULL);
    CHECK(r->body_bytes == x->seen);
    CHECK(r->status == (x->heads ? x->status : 0));
    if (x->cancelling)
        CHECK(r->error == -ECANCELED);
    if (r->error == 0) {
        CHECK(x->heads == 1);
        CHECK(x->clen < 0 || x->seen == (uint64_t)x->clen);
        /* A produced body may be cut short: a server may answer before
         * reading it all (the connection is then not reused). */
    }
    if (r->retried)
        CHECK(x->retry_ok);
    switch (x->a >> 5) {
    case B_CHAIN:
        start_call(x->a & 0x1f, x->b);
        break;
    case B_CLOSE_IDLE:
        moor_http_client_close_idle(client);
        break;
    default:
        break;
    }
}

static const struct moor_http_callbacks cbs = {
    .on_head = on_head,
    .on_body = on_body,
    .on_done = on_done,
};

static const struct moor_http_callbacks producer_cbs = {
    .on_head = on_head,
    .on_body = on_body,
    .on_writable = on_writable,
    .on_done = on_done,
};

static void start_call(uint8_t a, uint8_t b)
{
    static const struct moor_http_field key = {.name = "Idempotency-Key",
                                               .value = "k1"};
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct call *x;
    enum kind k = (enum kind)(a & 7);
    char url[64];
    int port = (b >> 6) == 3 ? refused_port : lport[cur];

    if (ncalls >= MAX_CALLS + (probe_call >= 0))
        return;
    x = &calls[ncalls];
    memset(x, 0, sizeof(*x));
    x->a = a;
    x->b = b;
    x->clen = -1;
    snprintf(url, sizeof(url), "http://%s:%d/r%d",
             (b >> 6) == 1 ? "localhost" : "127.0.0.1", port, ncalls);
    moor_http_request_init(&rq);
    rq.method = methods[k];
    rq.url = url;
    x->total = body_sizes[(a >> 3) & 3];
    x->piece = pieces[b & 15];
    x->head_req = k == K_HEAD;
    x->produced = k == K_PUT_PRODUCED || k == K_POST_CHUNKED;
    if (k == K_POST_MEM || k == K_POST_KEY || k == K_PUT_MEM) {
        rq.body = body_bytes;
        rq.body_len = x->total;
    }
    if (k == K_PUT_PRODUCED)
        rq.body_length = (long long)x->total;
    if (k == K_POST_CHUNKED)
        rq.body_length = -1;
    if (k == K_POST_KEY) {
        rq.headers = &key;
        rq.n_headers = 1;
    }
    if ((b >> 6) == 2)
        rq.timeout_ms = 1;
    /* docs/http_client.md, Retries: idempotent methods or a key, never a
     * produced body. */
    x->retry_ok = !x->produced && k != K_POST_MEM;
    x->started = true;
    ncalls++;
    in_request++;
    x->c = moor_http_client_request(
        client, &rq, x->produced ? &producer_cbs : &cbs, x, &err);
    in_request--;
    if (!x->c) {
        /* Only while the client is being freed (a chain from on_done). */
        CHECK(err.code == MOOR_ESTATE);
        x->started = false;
        ncalls--;
    }
}

static struct call *call_at(uint8_t x)
{
    return ncalls ? &calls[x % ncalls] : NULL;
}

/* ---- what the server reads ---------------------------------------------- */

/* A request head, whole: "M /rN HTTP/1.1", Host, the Idempotency-Key of
 * K_POST_KEY, and the framing its kind asks for, nothing else. */
static void check_head(struct slot *s)
{
    char m[16], want[64];
    const char *p = s->line, *e;
    struct call *x;
    enum kind k;
    int n;

    /* sscanf's whitespace would take any run of CR and LF: by hand. */
    e = strchr(p, ' ');
    CHECK(e && e - p < (ptrdiff_t)sizeof(m));
    memcpy(m, p, (size_t)(e - p));
    m[e - p] = '\0';
    p = e;
    CHECK(!strncmp(p, " /r", 3));
    n = (int)strtol(p + 3, (char **)&e, 10);
    CHECK(e > p + 3 && n >= 0 && n < ncalls);
    p = e;
    CHECK(!strncmp(p, " HTTP/1.1\r\n", 11));
    p += 11;
    x = &calls[n];
    k = (enum kind)(x->a & 7);
    CHECK(!strcmp(m, methods[k]));
    snprintf(want, sizeof(want), "Host: %s:%d\r\n",
             (x->b >> 6) == 1 ? "localhost" : "127.0.0.1", lport[cur]);
    CHECK(!strncmp(p, want, strlen(want)));
    p += strlen(want);
    if (k == K_POST_KEY) {
        static const char key[] = "Idempotency-Key: k1\r\n";

        CHECK(!strncmp(p, key, sizeof(key) - 1));
        p += sizeof(key) - 1;
    }
    s->call = n;
    if (n == probe_call)
        probe_slot = (int)(s - slots);
    s->got = 0;
    s->left = 0;
    if (k == K_POST_CHUNKED) {
        static const char te[] = "Transfer-Encoding: chunked\r\n";

        CHECK(!strncmp(p, te, sizeof(te) - 1));
        p += sizeof(te) - 1;
        s->st = RS_SIZE;
    } else if (k != K_GET && k != K_HEAD && k != K_DELETE) {
        unsigned long long cl;

        CHECK(!strncmp(p, "Content-Length: ", 16));
        cl = strtoull(p + 16, (char **)&e, 10);
        CHECK(e > p + 16 && !strncmp(e, "\r\n", 2));
        CHECK(cl == x->total);
        p = e + 2;
        s->left = cl;
        s->st = cl ? RS_CL : RS_HEAD;
    } else {
        s->st = RS_HEAD;
    }
    e = s->line + s->hlen;
    CHECK(e - p == 2 && !memcmp(p, "\r\n", 2));
    if (s->st == RS_HEAD)
        sent[n]++;
}

/* One byte from the client on slot s. */
static void slot_byte(struct slot *s, uint8_t c)
{
    switch (s->st) {
    case RS_HEAD:
        CHECK(s->hlen < sizeof(s->line) - 1); /* moor's heads are short */
        s->line[s->hlen++] = (char)c;
        s->line[s->hlen] = '\0';
        if (s->hlen >= 4 && !memcmp(s->line + s->hlen - 4, "\r\n\r\n", 4)) {
            check_head(s);
            s->hlen = 0;
        }
        return;
    case RS_CL:
    case RS_DATA:
        CHECK(c == 'b'); /* our body bytes, and only those */
        s->got++;
        if (--s->left)
            return;
        if (s->st == RS_DATA) {
            s->st = RS_CRLF;
            return;
        }
        sent[s->call]++;
        s->st = RS_HEAD;
        return;
    default: /* a chunk-size line, the CRLF after data, the last CRLF */
        CHECK(s->hlen < 32);
        s->line[s->hlen++] = (char)c;
        s->line[s->hlen] = '\0';
        if (c != '\n')
            return;
        CHECK(s->hlen >= 2 && s->line[s->hlen - 2] == '\r');
        if (s->st == RS_CRLF) {
            CHECK(s->hlen == 2);
            s->st = RS_SIZE;
        } else if (s->st == RS_LAST) {
            CHECK(s->hlen == 2); /* moor sends no trailers */
            /* A chunked body ends once the producer wrote it all. */
            CHECK(s->got == calls[s->call].total);
            sent[s->call]++;
            s->st = RS_HEAD;
        } else {
            char *end;
            unsigned long long n = strtoull(s->line, &end, 16);

            CHECK(end == s->line + s->hlen - 2 && end != s->line);
            CHECK(s->got + n <= calls[s->call].total);
            s->left = n;
            s->st = n ? RS_DATA : RS_LAST;
        }
        s->hlen = 0;
        return;
    }
}

static void slot_drain(struct slot *s)
{
    uint8_t buf[16384];

    if (s->fd < 0 || !s->reading)
        return;
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(s->fd, buf, sizeof(buf), 0);

        if (n <= 0)
            return;
        if (show)
            fprintf(stderr, "[slot %d got] %.*s\n", (int)(s - slots), (int)n,
                    (const char *)buf);
        for (ssize_t j = 0; j < n; j++)
            slot_byte(s, buf[j]);
    }
}

/* ---- the script --------------------------------------------------------- */

/* Slot s writes p[0..n); what the socket will not take after a few loop
 * iterations is dropped (the client stopped reading). */
static void slot_write(struct slot *s, const uint8_t *p, size_t n)
{
    int stalls = 0;

    if (s->fd < 0 && !slot_accept(s)) {
        step();
        if (!slot_accept(s))
            return;
    }
    while (n > 0 && s->fd >= 0 && steps < MAX_STEPS) {
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);

        if (show)
            fprintf(stderr, "[slot %d sent %zd] %.*s\n", (int)(s - slots), w,
                    (int)(w > 0 ? w : 0), (const char *)p);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return; /* EPIPE, ECONNRESET: the client closed its end */
        if (++stalls > 8)
            return;
        step();
    }
}

static void run_ops(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n && steps < MAX_STEPS) {
        uint8_t c = p[i++], x = c >> 4;

        if (show)
            fprintf(stderr, "[op %d x %d at %zu]\n", c & 15, x, i - 1);
        struct slot *s = &slots[x & 3];
        struct call *cl;
        size_t len;

        switch (c & 15) {
        case 0: {
            uint8_t a = i < n ? p[i] : 0, b = i + 1 < n ? p[i + 1] : 0;

            i = i + 2 < n ? i + 2 : n;
            start_call(a, b);
            step();
            continue;
        }
        case 1:
        case 2:
        case 3:
            len = script_len(p, n, &i, (c & 15) - 1);
            break;
        case 4: {
            int k = 1 + (i < n ? p[i++] % 16 : 0);

            while (k-- > 0 && steps < MAX_STEPS)
                step();
            continue;
        }
        case 5:
            if (s->fd >= 0)
                shutdown(s->fd, SHUT_WR);
            step();
            continue;
        case 6:
        case 7:
            slot_close(s, (c & 15) == 7);
            step();
            continue;
        case 8:
            slot_accept(s);
            step();
            continue;
        case 9:
            s->reading = !s->reading;
            step();
            continue;
        case 10:
            if ((cl = call_at(x)))
                cancel(cl);
            step();
            continue;
        case 11:
            if ((cl = call_at(x)) && cl->c)
                moor_http_call_pause(cl->c);
            step();
            continue;
        case 12:
            if ((cl = call_at(x)) && cl->c)
                moor_http_call_resume(cl->c);
            step();
            continue;
        case 13:
            if ((cl = call_at(x)) && cl->c && cl->produced)
                produce(cl, false, true);
            step();
            continue;
        case 14:
            moor_http_client_close_idle(client);
            step();
            continue;
        default:
            if (tight && !slept) {
                /* The loop waits for its next deadline (the wheel ticks
                 * every 16 ms), so one fires: 17 ms at most, once. */
                int ms = moor_loop_timeout(loop);

                slept = true;
                if (ms > 0)
                    CHECK(moor_loop_run_once(loop, ms < 17 ? ms : 17) >= 0);
            }
            step();
            continue;
        }
        if (len > n - i)
            len = n - i;
        slot_write(s, p + i, len);
        i += len;
        step();
    }
}

static void report_leak(int64_t base, int64_t live)
{
    fprintf(stderr,
            "fuzz_http_client: live bytes %lld after the input, %lld before\n",
            (long long)live, (long long)base);
    for (int t = 0; t < MEM_TAG_COUNT; t++)
        fprintf(stderr, "  %-8s %lld\n", mem_tag_name((enum mem_tag)t),
                (long long)mem_live_bytes((enum mem_tag)t));
    if (mem_trace_enabled())
        mem_trace_dump(stderr);
    else
        fprintf(stderr, "fuzz_http_client: run with FUZZ_HC_TRACE=1 for the "
                        "allocation sites\n");
}

static bool in_flight(void)
{
    for (int i = 0; i < ncalls; i++)
        if (!calls[i].done)
            return true;
    return false;
}

static void new_client(uint8_t f0, uint8_t f1)
{
    static const size_t rbuf[4] = {64 * 1024, 4096, 512, 97};
    static const uint32_t conns[4] = {1, 2, 3, 4};
    struct moor_loop_options lo;
    struct moor_http_client_options o;
    struct moor_error err = {0};
    uint32_t dl;

    moor_loop_options_init(&lo);
    lo.read_buffer = rbuf[f1 & 3];
    lo.mem_trim_interval_ms = 0;
    loop = moor_loop_new(&lo, &err);
    CHECK(loop != NULL);

    moor_http_client_options_init(&o);
    tight = f0 & 0x08;
    dl = tight ? 1 : 1000;
    o.max_conns_per_host = conns[f0 & 3];
    o.resolve_timeout_ms = dl;
    o.connect_timeout_ms = dl;
    o.write_timeout_ms = dl;
    o.head_timeout_ms = dl;
    o.body_timeout_ms = dl;
    o.wait_timeout_ms = dl;
    o.idle_timeout_ms = dl;
    o.max_conn_age_ms = (uint32_t[]){0, 1, 5, 30}[(f1 >> 2) & 3];
    if (f0 & 0x10)
        o.max_requests_per_conn = 2;
    if (f0 & 0x20) {
        o.max_header_bytes = 256;
        o.max_headers = 8;
        o.max_body = 1000;
        o.queue_limit = 1024;
    }
    if (f0 & 0x40)
        o.max_idle_per_host = 1;
    if (f0 & 0x80)
        o.max_waiting_per_host = 1;
    client = moor_http_client_new(loop, &o, &err);
    if (!client) {
        fprintf(stderr, "moor_http_client_new: %d %s\n", err.code, err.message);
        abort();
    }
}

/* The pool's idle connections must be clean: nothing of an earlier
 * request still to be written, nothing of an earlier response still to be
 * read. A GET goes on the most recent one (its slot checks what comes
 * first) and is answered there; then it must succeed with that answer. */
static void probe(void)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct call *x = &calls[ncalls];

    probe_call = ncalls;
    start_call(0, 0);
    CHECK(ncalls == probe_call + 1);
    for (int i = 0; i < 2 && probe_slot < 0; i++)
        step();
    if (probe_slot < 0 || tight)
        return; /* 1 ms deadlines: it may time out */
    slot_write(&slots[probe_slot], (const uint8_t *)ok, sizeof(ok) - 1);
    for (int i = 0; i < 4 && !x->done; i++)
        step();
    /* A loaded machine may be slow to carry it: wait, 200 ms at most. */
    for (int i = 0; i < 200 && !x->done; i++) {
        CHECK(moor_loop_run_once(loop, 1) >= 0);
        slot_drain(&slots[probe_slot]);
    }
    CHECK(x->done && x->res.error == 0 && x->res.status == 200 &&
          x->res.body_bytes == 2);
}

static void one_input(const uint8_t *data, size_t size)
{
    struct moor_http_client_stats st;

    cur = (data[0] >> 2) & 1;
    probe_call = probe_slot = -1;
    steps = 0;
    ncalls = 0;
    slept = false;
    memset(sent, 0, sizeof(sent));
    new_client(data[0], size > 1 ? data[1] : 0);
    if (size > 2)
        run_ops(data + 2, size - 2);
    /* With nothing in flight the pool has nothing busy and nobody
     * waiting (a step first: closes settle at the end of an iteration). */
    step();
    if (!in_flight()) {
        CHECK(moor_http_client_stats(client, NULL, &st) == 0);
        CHECK(st.active == 0);
        CHECK(st.waiting == 0);
        CHECK(st.idle >= 0 && st.dialing >= 0);
        if (st.idle > 0)
            probe();
    }
    for (int i = 0; i < MAX_SLOTS; i++)
        slot_close(&slots[i], false);
    step();
    step();
    moor_http_client_free(client);
    client = NULL;
    for (int i = 0; i < ncalls; i++) {
        CHECK(calls[i].done == 1);
        /* Sent whole once, twice if it was retried. */
        CHECK(sent[i] <= 1 + calls[i].res.retried);
    }
    moor_loop_free(loop);
    loop = NULL;
    empty_accept_queues();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* A GET answered with a Content-Length body. */
    static const char warm[] = "\0\0\0\0\0\3HTTP/1.1 200 OK\r\n"
                               "Content-Length: 2\r\n\r\nok";

    (void)argc;
    (void)argv;
    show = getenv("FUZZ_HC_SHOW") != NULL;
    if (getenv("FUZZ_HC_TRACE"))
        mem_trace_enable();
    log_set_level(LOG_OFF);
    /* The client's conn set has a slot per possible fd (RLIMIT_NOFILE),
     * calloc'd and scanned at every free: a small limit keeps an input
     * fast. An input holds a dozen fds at most. */
    {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 256) {
            rl.rlim_cur = 256;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    for (int i = 0; i < MAX_SLOTS; i++)
        slots[i].fd = -1;
    memset(body_bytes, 'b', sizeof(body_bytes));
    lfd[0] = listener(0, &lport[0], true);
    lfd[1] = listener(4096, &lport[1], true);
    listener(0, &refused_port, false); /* kept bound: nobody takes it */
    /* One input first, so whatever lives for the process (c-ares's
     * library state) exists before the first baseline. */
    one_input((const uint8_t *)warm, sizeof(warm) - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t base, live;

    if (size < 1 || size > MAX_INPUT)
        return 0;
    base = moor_mem_live_bytes();
    one_input(data, size);
    live = moor_mem_live_bytes();
    if (live != base) {
        report_leak(base, live);
        abort();
    }
    return 0;
}
