/*
 * test_api.c - the public API (include/moor.h), used the way a program
 * would use it:
 *
 * - defaults: moor_*_options_init() agree with `moor serve`'s flag table;
 * - a WebSocket echo server on a loop, over a real TCP socket, user data
 *   and callbacks, moor_server_stop() from another thread;
 * - signals: the test's own SIGTERM, SIGPIPE and SIGHUP dispositions and
 *   its signal mask survive a loop with a server and a client on it, a
 *   peer that resets its connection under writes, stop and free; no
 *   SIGPIPE is raised and no signalfd is opened; the same over TLS
 *   (wss://, OpenSSL's writes), with a certificate reload;
 * - embedding: the test's own epoll_wait() loop drives moor through
 *   moor_loop_fd(), moor_loop_timeout() and moor_loop_run_once(l, 0);
 * - options structs of an older, smaller size: init writes only that
 *   size, the missing fields get their defaults, a bad size is
 *   MOOR_EOPTIONS;
 * - the error convention: moor_strerror(), struct moor_error, negative
 *   codes from every kind of call (moor_ws_close, moor_mem_json, bad
 *   addresses and URLs, a second gateway, ...);
 * - one loop for a server and a client on one thread; several servers on
 *   one loop, one freed while the other serves;
 * - plain HTTP routes and moor_respond(); metrics and /debug mounted;
 *   moor_publish() and moor_pubsub_subscribers() from C, with WebSocket,
 *   HTTP POST and framed TCP subscribers.
 *
 * After every test, moor holds no byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "moor.h"
#include "config.h"
#include "mem.h"

/* ---- helpers ------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs l one iteration at a time until done(arg) or ms have passed.
 * Returns 1 if done. */
static int run_until(struct moor_loop *l, int (*done)(void *), void *arg,
                     int ms)
{
    int64_t end = now_ms() + ms;

    while (!done(arg)) {
        if (now_ms() > end)
            return 0;
        if (moor_loop_run_once(l, 20) < 0)
            return 0;
    }
    return 1;
}

static int flag_set(void *p)
{
    return *(volatile int *)p != 0;
}

static int server_stopped(void *p)
{
    return moor_server_stopped(p);
}

/* Stops s and runs l until its shutdown has finished. */
static void stop_and_drain(struct moor_loop *l, struct moor_server *s)
{
    moor_server_stop(s);
    assert_true(run_until(l, server_stopped, s, 10000));
}

static struct moor_loop *new_loop(void)
{
    struct moor_error err = {0};
    struct moor_loop *l = moor_loop_new(NULL, &err);

    assert_non_null(l);
    assert_int_equal(err.code, 0);
    return l;
}

static struct moor_server *new_server(struct moor_loop *l)
{
    struct moor_server_options o;
    struct moor_error err = {0};
    struct moor_server *s;

    moor_server_options_init(&o);
    o.listen = "127.0.0.1:0";
    o.shutdown_timeout_ms = 3000;
    o.drain_spread_ms = 0;
    o.accept_rate = 0;
    s = moor_server_new(l, &o, &err);
    if (!s)
        fail_msg("moor_server_new: %d %s", err.code, err.message);
    assert_true(moor_server_port(s) > 0);
    return s;
}

static struct moor_client *new_client(struct moor_loop *l)
{
    struct moor_client_options o;
    struct moor_error err = {0};
    struct moor_client *cl;

    moor_client_options_init(&o);
    o.connect_timeout_ms = 5000;
    cl = moor_client_new(l, &o, &err);
    if (!cl)
        fail_msg("moor_client_new: %d %s", err.code, err.message);
    return cl;
}

static int tcp_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    assert_true(fd >= 0);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Closes fd with a reset (SO_LINGER 0): the peer's next write fails. */
static void close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until `until` is in buf, or (until == NULL) once, or (until == "")
 * to EOF; or the timeout. NUL-terminates. Returns the bytes read. */
static size_t recv_until(int fd, char *buf, size_t cap, const char *until)
{
    size_t n = 0;

    while (n < cap - 1) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (!until || (*until && memmem(buf, n, until, strlen(until))))
            break;
    }
    buf[n] = '\0';
    return n;
}

static const char ws_request_fmt[] =
    "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* A raw WebSocket client: connects and completes the handshake for path.
 * Returns the fd, or -1. Needs the loop running elsewhere (a thread). */
static int raw_ws_open(int port, const char *path)
{
    char req[512], buf[1024];
    int fd = tcp_connect(port);

    if (fd < 0)
        return -1;
    snprintf(req, sizeof(req), ws_request_fmt, path);
    if (send_all(fd, req, strlen(req)) < 0 ||
        !recv_until(fd, buf, sizeof(buf), "\r\n\r\n") ||
        !strstr(buf, " 101 ") || !strstr(buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A masked client frame (payload up to 125 bytes). */
static size_t ws_frame(uint8_t *out, int op, const void *data, size_t len)
{
    const uint8_t key[4] = {1, 2, 3, 4};

    out[0] = (uint8_t)(0x80 | op);
    out[1] = (uint8_t)(0x80 | len);
    memcpy(out + 2, key, 4);
    for (size_t i = 0; i < len; i++)
        out[6 + i] = ((const uint8_t *)data)[i] ^ key[i & 3];
    return 6 + len;
}

/* One HTTP request on a fresh connection (send "Connection: close");
 * reads the whole answer into out. Returns its status, or -1. */
static int http_request(int port, const char *req, size_t req_len, char *out,
                        size_t cap)
{
    int fd = tcp_connect(port), status = -1;

    out[0] = '\0';
    if (fd < 0)
        return -1;
    if (send_all(fd, req, req_len) == 0) {
        recv_until(fd, out, cap, ""); /* to EOF: Connection: close */
        if (strncmp(out, "HTTP/1.1 ", 9) == 0)
            status = atoi(out + 9);
    }
    close(fd);
    return status;
}

static int http_get(int port, const char *path, char *out, size_t cap)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     path);

    return http_request(port, req, (size_t)n, out, cap);
}

static const char *http_body(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");

    return p ? p + 4 : "";
}

/* ---- a WebSocket echo route ---------------------------------------------- */

struct echo {
    int opened, messages, closed, last_code;
    void *user_seen;
    struct moor_ws *last; /* the last connection opened, until it closes */
};

static void echo_open(struct moor_ws *ws, void *arg)
{
    struct echo *e = arg;

    e->opened++;
    e->last = ws;
    moor_ws_set_user(ws, e);
}

static void echo_message(struct moor_ws *ws, const void *data, size_t len,
                         int is_text, void *arg)
{
    struct echo *e = arg;

    e->messages++;
    e->user_seen = moor_ws_user(ws);
    moor_ws_send(ws, data, len, is_text);
}

static void echo_close(struct moor_ws *ws, int code, void *arg)
{
    struct echo *e = arg;

    e->closed++;
    e->last_code = code;
    if (e->last == ws)
        e->last = NULL;
}

static void add_echo(struct moor_server *s, const char *path, struct echo *e)
{
    struct moor_ws_handlers h = {
        .on_open = echo_open,
        .on_message = echo_message,
        .on_close = echo_close,
        .arg = e,
        .pause_reading_on_backpressure = 1,
    };

    assert_int_equal(moor_server_ws(s, path, &h), 0);
}

/* ---- a client connection that sends messages and collects replies ---------
 */

#define MAX_REPLIES 8

struct peer {
    const char *msgs[MAX_REPLIES];
    int n;         /* messages to send on open */
    int keep_open; /* 0: close with 1000 once n replies are in */
    int opened, got, closed, code;
    char replies[MAX_REPLIES][128];
    size_t lens[MAX_REPLIES];
    int text[MAX_REPLIES];
    char why[128];
    struct moor_ws *ws;              /* while open */
    struct moor_server *stop_on_end; /* moor_server_stop() in on_close */
};

static void peer_open(struct moor_ws *ws, void *arg)
{
    struct peer *p = moor_ws_user(ws);

    (void)arg;
    p->opened = 1;
    p->ws = ws;
    for (int i = 0; i < p->n; i++)
        moor_ws_send(ws, p->msgs[i], strlen(p->msgs[i]), i % 2 == 0);
    if (p->n == 0 && !p->keep_open)
        moor_ws_close(ws, 1000, NULL);
}

static void peer_message(struct moor_ws *ws, const void *data, size_t len,
                         int is_text, void *arg)
{
    struct peer *p = moor_ws_user(ws);

    (void)arg;
    if (p->got < MAX_REPLIES) {
        size_t k =
            len < sizeof(p->replies[0]) - 1 ? len : sizeof(p->replies[0]) - 1;
        memcpy(p->replies[p->got], data, k);
        p->replies[p->got][k] = '\0';
        p->lens[p->got] = len;
        p->text[p->got] = is_text;
    }
    if (++p->got == p->n && !p->keep_open)
        moor_ws_close(ws, 1000, "done");
}

static void peer_close(struct moor_ws *ws, int code, void *arg)
{
    struct peer *p = moor_ws_user(ws);
    const char *why = moor_ws_error(ws);

    (void)arg;
    p->closed = 1;
    p->code = code;
    p->ws = NULL;
    snprintf(p->why, sizeof(p->why), "%s", why ? why : "");
    if (p->stop_on_end)
        moor_server_stop(p->stop_on_end);
}

static const struct moor_ws_handlers peer_handlers = {
    .on_open = peer_open,
    .on_message = peer_message,
    .on_close = peer_close,
    .pause_reading_on_backpressure = 1,
};

static void peer_connect(struct moor_client *cl, int port, const char *path,
                         struct peer *p)
{
    struct moor_error err = {0};
    char url[128];
    int rc;

    snprintf(url, sizeof(url), "ws://127.0.0.1:%d%s", port, path);
    rc = moor_client_connect(cl, url, &peer_handlers, p, &err);
    if (rc != 0)
        fail_msg("moor_client_connect(%s): %d %s", url, rc, err.message);
}

static int peer_closed(void *p)
{
    return ((struct peer *)p)->closed;
}

static int peer_opened(void *p)
{
    return ((struct peer *)p)->opened;
}

static void expect_echoed(const struct peer *p)
{
    assert_true(p->opened);
    assert_int_equal(p->got, p->n);
    for (int i = 0; i < p->n; i++) {
        assert_string_equal(p->replies[i], p->msgs[i]);
        assert_int_equal(p->text[i], i % 2 == 0);
    }
}

/* ---- defaults ------------------------------------------------------------ */

static void test_defaults_match_moor_serve(void **state)
{
    struct moor_server_options o;
    struct moor_pubsub_options po;
    struct moor_loop_options lo;
    struct moor_config c;

    (void)state;
    moor_server_options_init(&o);
    moor_pubsub_options_init(&po);
    moor_loop_options_init(&lo);
    config_defaults(&c);
    assert_int_equal(o.size, sizeof(o));
    assert_int_equal(po.size, sizeof(po));
    assert_int_equal(lo.size, sizeof(lo));

    assert_string_equal(o.listen, c.listen);
    assert_int_equal(o.max_conns, c.max_conns);
    assert_int_equal(o.accept_rate, c.accept_rate);
    assert_int_equal(o.accept_burst, c.accept_burst);
    assert_int_equal(o.max_message, c.max_message);
    assert_int_equal(o.queue_limit, c.queue_limit);
    assert_int_equal(o.max_header_bytes, c.max_header_bytes);
    assert_int_equal(o.max_headers, c.max_headers);
    assert_int_equal(o.max_body, c.max_body);
    assert_int_equal(o.header_timeout_ms, c.header_timeout_ms);
    assert_int_equal(o.body_timeout_ms, c.body_timeout_ms);
    assert_int_equal(o.idle_timeout_ms, c.idle_timeout_ms);
    assert_int_equal(o.linger_timeout_ms, c.linger_timeout_ms);
    assert_int_equal(o.ping_interval_ms, c.ping_interval_ms);
    assert_int_equal(o.pong_timeout_ms, c.pong_timeout_ms);
    assert_int_equal(o.close_timeout_ms, c.close_timeout_ms);
    assert_int_equal(o.write_timeout_ms, c.write_timeout_ms);
    assert_int_equal(o.shutdown_timeout_ms, c.shutdown_timeout_ms);
    assert_int_equal(o.drain_spread_ms, c.drain_spread_ms);
    assert_int_equal(o.message_timeout_ms, c.message_timeout_ms);
    assert_true(o.allowed_origins == NULL ||
                strcmp(o.allowed_origins, c.allowed_origins) == 0);

    assert_int_equal(po.max_channels, c.max_channels);
    assert_int_equal(po.max_channels_per_conn, c.max_channels_per_conn);
    assert_int_equal(po.queue_soft_limit, c.queue_soft_limit);
    assert_int_equal(po.queue_soft_time_ms, c.queue_soft_time_ms);
    assert_int_equal(po.slow_policy, strcmp(c.slow_policy, "drop-oldest") == 0
                                         ? MOOR_SLOW_DROP_OLDEST
                                         : MOOR_SLOW_DISCONNECT);
    assert_int_equal(po.rate, c.rate);
    assert_int_equal(po.burst, c.burst);
    assert_int_equal(po.byte_rate, c.byte_rate);
    assert_int_equal(po.heartbeat_ms, c.sse_heartbeat_ms);
    assert_int_equal(po.sse_retry_ms, c.sse_retry_ms);

    assert_int_equal(lo.read_buffer, c.read_buffer);
    assert_int_equal(lo.mem_trim_interval_ms, c.mem_trim_interval_ms);
    assert_int_equal(lo.mem_trim_threshold, c.mem_trim_threshold);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_version(void **state)
{
    char want[32];

    (void)state;
    snprintf(want, sizeof(want), "%d.%d.%d", MOOR_VERSION_MAJOR,
             MOOR_VERSION_MINOR, MOOR_VERSION_PATCH);
    assert_string_equal(moor_version(), want);
    assert_int_equal(MOOR_VERSION_HEX, (MOOR_VERSION_MAJOR << 16) |
                                           (MOOR_VERSION_MINOR << 8) |
                                           MOOR_VERSION_PATCH);
    assert_true(MOOR_VERSION_HEX >= 0x000200);
}

/* ---- echo over a real socket, stop from another thread --------------------
 */

struct raw_arg {
    int port;
    struct moor_server *s;
    char reply[256];
    size_t reply_len;
    int ok;
};

/* A raw client on its own thread: handshake, one masked text frame, read
 * the echo, then stop the server from this thread. */
static void *raw_client(void *p)
{
    struct raw_arg *a = p;
    uint8_t frame[64];
    char buf[1024];
    int fd = raw_ws_open(a->port, "/ws");

    if (fd >= 0) {
        send_all(fd, frame, ws_frame(frame, 1, "hello", 5));
        a->reply_len = recv_until(fd, a->reply, 8, NULL);
        a->ok = 1;
    }
    moor_server_stop(a->s); /* the one call allowed off the loop thread */
    /* Answer the server's close 1001 so the drain completes. */
    if (fd >= 0 && recv_until(fd, buf, sizeof(buf), NULL) > 0) {
        send_all(fd, frame, ws_frame(frame, 8, "\x03\xe9", 2));
        recv_until(fd, buf, sizeof(buf), NULL);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void test_echo_server_stop_from_thread(void **state)
{
    struct echo e = {0};
    struct moor_loop *l;
    struct moor_server *s;
    struct raw_arg a = {0};
    pthread_t t;

    (void)state;
    l = new_loop();
    s = new_server(l);
    add_echo(s, "/ws", &e);
    a.port = moor_server_port(s);
    a.s = s;
    assert_int_equal(pthread_create(&t, NULL, raw_client, &a), 0);
    /* Returns once the server has drained: nothing is left on l. */
    assert_int_equal(moor_loop_run(l), 0);
    pthread_join(t, NULL);
    assert_true(moor_server_stopped(s));
    moor_server_free(s);
    moor_loop_free(l);

    assert_true(a.ok);
    assert_int_equal(a.reply_len, 7);
    assert_memory_equal(a.reply, "\x81\x05hello", 7);
    assert_int_equal(e.opened, 1);
    assert_int_equal(e.messages, 1);
    assert_ptr_equal(e.user_seen, &e);
    assert_int_equal(e.closed, 1);
    assert_int_equal(e.last_code, 1001);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bad_listen_address(void **state)
{
    static const char *bad[] = {"nonsense", "127.0.0.1:99999",
                                "127.0.0.1:", "[::1:80", "1.2.3.4.5:80"};
    struct moor_server_options o;
    struct moor_loop *l;

    (void)state;
    l = new_loop();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moor_error err = {0};

        moor_server_options_init(&o);
        o.listen = bad[i];
        assert_null(moor_server_new(l, &o, &err));
        if (err.code != MOOR_EADDR)
            fail_msg("listen %s: code %d (%s), want MOOR_EADDR", bad[i],
                     err.code, err.message);
        assert_non_null(strstr(err.message, bad[i]));
        assert_null(strchr(err.message, '\n'));
    }
    /* An IPv6 address without brackets: the message shows the form. */
    {
        struct moor_error err = {0};

        moor_server_options_init(&o);
        o.listen = "::1:80";
        assert_null(moor_server_new(l, &o, &err));
        assert_int_equal(err.code, MOOR_EADDR);
        assert_non_null(strstr(err.message, "[::1]:80"));
    }
    moor_loop_free(l);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- signals ---------------------------------------------------------------
 */

static volatile sig_atomic_t sigpipes, sigterms;

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static void on_sigterm(int sig)
{
    (void)sig;
    sigterms++;
}

static void assert_same_action(int sig, const struct sigaction *want)
{
    struct sigaction cur;

    assert_int_equal(sigaction(sig, NULL, &cur), 0);
    if (cur.sa_handler != want->sa_handler || cur.sa_flags != want->sa_flags)
        fail_msg("signal %d: disposition changed (handler %p flags %#x, "
                 "was %p %#x)",
                 sig, (void *)cur.sa_handler, (unsigned)cur.sa_flags,
                 (void *)want->sa_handler, (unsigned)want->sa_flags);
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&cur.sa_mask, s) != sigismember(&want->sa_mask, s))
            fail_msg("signal %d: sa_mask changed at %d", sig, s);
}

static void assert_same_mask(const sigset_t *want)
{
    sigset_t cur;

    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&cur, s) != sigismember(want, s))
            fail_msg("signal mask changed at signal %d (%s now)", s,
                     sigismember(&cur, s) ? "blocked" : "unblocked");
}

/* No signalfd among this process's descriptors. */
static int signalfds_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        char path[300], target[256];
        ssize_t k;

        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        k = readlink(path, target, sizeof(target) - 1);
        if (k > 0) {
            target[k] = '\0';
            n += strstr(target, "signalfd") != NULL;
        }
    }
    closedir(d);
    return n;
}

struct provoke {
    int port;
    volatile int done;
    int resets;
};

/* Runs on a thread while the loop serves: peers that vanish with a reset
 * under the server's writes, so a write without MSG_NOSIGNAL would raise
 * SIGPIPE. */
static void *provoke_epipe(void *p)
{
    struct provoke *a = p;
    uint8_t frame[256];
    static char big[65536];

    for (int round = 0; round < 6; round++) {
        int fd = raw_ws_open(a->port, "/echo");
        int zero = 0;

        if (fd < 0)
            continue;
        /* A small receive buffer and nothing read: the server's echoes
         * pile up in its queue, then the peer resets. */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &zero, sizeof(zero));
        for (int i = 0; i < 40; i++) {
            size_t n = 125;
            memset(big, 'a' + i % 26, n);
            send_all(fd, frame, ws_frame(frame, 2, big, n));
        }
        if (round % 3 == 1) /* a ping and a close: the server must answer */
            send_all(fd, frame, ws_frame(frame, 9, "p", 1));
        if (round % 3 == 2)
            send_all(fd, frame, ws_frame(frame, 8, "\x03\xe8", 2));
        usleep(20 * 1000);
        close_with_reset(fd);
        a->resets++;
        usleep(20 * 1000);
    }
    a->done = 1;
    return NULL;
}

static void test_signals_untouched(void **state)
{
    struct sigaction pipe_sa = {.sa_handler = on_sigpipe,
                                .sa_flags = SA_RESTART};
    struct sigaction term_sa = {.sa_handler = on_sigterm, .sa_flags = 0};
    struct sigaction hup_sa = {.sa_handler = SIG_IGN};
    struct sigaction old_pipe, old_term, old_hup, want_pipe, want_term,
        want_hup, want_int;
    sigset_t block, old_mask, want_mask;
    struct echo e = {0};
    struct peer p = {.msgs = {"one", "two", "three"}, .n = 3};
    struct provoke pr = {0};
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl;
    pthread_t t;

    (void)state;
    sigemptyset(&pipe_sa.sa_mask);
    sigaddset(&pipe_sa.sa_mask, SIGUSR2);
    sigemptyset(&term_sa.sa_mask);
    sigemptyset(&hup_sa.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &pipe_sa, &old_pipe), 0);
    assert_int_equal(sigaction(SIGTERM, &term_sa, &old_term), 0);
    assert_int_equal(sigaction(SIGHUP, &hup_sa, &old_hup), 0);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);
    /* What the kernel reports back (glibc adds SA_RESTORER). */
    sigaction(SIGPIPE, NULL, &want_pipe);
    sigaction(SIGTERM, NULL, &want_term);
    sigaction(SIGHUP, NULL, &want_hup);
    sigaction(SIGINT, NULL, &want_int);
    pthread_sigmask(SIG_BLOCK, NULL, &want_mask);
    sigpipes = sigterms = 0;

    l = new_loop();
    s = new_server(l);
    add_echo(s, "/echo", &e);
    cl = new_client(l);
    peer_connect(cl, moor_server_port(s), "/echo", &p);
    assert_true(run_until(l, peer_closed, &p, 10000));
    expect_echoed(&p);
    assert_int_equal(p.code, 1000);
    assert_int_equal(signalfds_open(), 0);

    /* Peers that reset under writes, while the loop runs here. */
    pr.port = moor_server_port(s);
    assert_int_equal(pthread_create(&t, NULL, provoke_epipe, &pr), 0);
    run_until(l, flag_set, (void *)&pr.done, 20000);
    pthread_join(t, NULL);
    assert_true(pr.done);
    /* Writes to what is left of those connections. */
    for (int i = 0; i < 3 && e.last; i++) {
        static const char chunk[4096];
        moor_ws_send(e.last, chunk, sizeof(chunk), 0);
        moor_loop_run_once(l, 10);
    }
    /* And a client whose server resets: the client writes into it. */
    {
        struct peer q = {.msgs = {"x", "y"}, .n = 2, .keep_open = 1};

        peer_connect(cl, moor_server_port(s), "/echo", &q);
        assert_true(run_until(l, peer_opened, &q, 5000));
        moor_server_free(s); /* q's server side goes: on_close runs */
        s = NULL;
        for (int i = 0; i < 5 && q.ws; i++) {
            moor_ws_send(q.ws, "after", 5, 1);
            moor_loop_run_once(l, 20);
        }
        assert_true(run_until(l, peer_closed, &q, 5000));
    }
    assert_int_equal(signalfds_open(), 0);
    moor_client_free(cl);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);

    assert_int_equal(sigpipes, 0); /* MSG_NOSIGNAL on every write */
    assert_int_equal(sigterms, 0);
    assert_same_action(SIGPIPE, &want_pipe);
    assert_same_action(SIGTERM, &want_term);
    assert_same_action(SIGHUP, &want_hup);
    assert_same_action(SIGINT, &want_int);
    assert_same_mask(&want_mask);

    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- TLS: no SIGPIPE from OpenSSL's writes either
 * ----------------------------- */

struct tls_provoke {
    int port;
    volatile int done;
    int handshakes;
};

/* TLS peers (OpenSSL's own client, on this thread) that open a wss://
 * connection, send frames the server echoes, and reset. */
static void *provoke_tls(void *p)
{
    struct tls_provoke *a = p;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    sigset_t pipe_only;

    /* Our own SSL_write() must not count as the library's SIGPIPE. */
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    for (int round = 0; ctx && round < 4; round++) {
        int fd = tcp_connect(a->port);
        SSL *ssl = fd >= 0 ? SSL_new(ctx) : NULL;
        char req[512], buf[1024];
        uint8_t frame[256];
        int n = 0, r;

        if (!ssl || !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1)
            goto next;
        a->handshakes++;
        snprintf(req, sizeof(req), ws_request_fmt, "/echo");
        if (SSL_write(ssl, req, (int)strlen(req)) <= 0)
            goto next;
        while (n < (int)sizeof(buf) - 1 &&
               (r = SSL_read(ssl, buf + n, (int)sizeof(buf) - 1 - n)) > 0) {
            n += r;
            buf[n] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        for (int i = 0; i < 40; i++)
            SSL_write(ssl, frame, (int)ws_frame(frame, 1, "tls echo", 8));
        if (round % 2 == 1)
            SSL_write(ssl, frame, (int)ws_frame(frame, 8, "\x03\xe8", 2));
        usleep(20 * 1000);
    next:
        if (fd >= 0)
            close_with_reset(fd); /* no close_notify: gone */
        SSL_free(ssl);
        usleep(20 * 1000);
    }
    SSL_CTX_free(ctx);
    a->done = 1;
    return NULL;
}

static void test_tls_no_sigpipe(void **state)
{
    struct sigaction pipe_sa = {.sa_handler = on_sigpipe}, old_pipe, want_pipe;
    struct moor_tls_options to;
    struct moor_client_options co;
    struct moor_error err = {0};
    struct echo e = {0};
    struct peer p = {.msgs = {"over", "tls"}, .n = 2},
                pv = {.msgs = {"verified"}, .n = 1};
    struct tls_provoke pr = {0};
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl, *cv;
    struct moor_tls *t;
    char dir[] = "/tmp/moor-api-tls.XXXXXX", cmd[512], cert[128], key[128],
         url[128];
    pthread_t th;
    int tport;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -days 2 -subj /CN=localhost -addext "
             "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    sigemptyset(&pipe_sa.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &pipe_sa, &old_pipe), 0);
    sigaction(SIGPIPE, NULL, &want_pipe);
    sigpipes = 0;

    l = new_loop();
    s = new_server(l);
    add_echo(s, "/echo", &e);
    moor_tls_options_init(&to);
    to.cert_file = cert;
    to.key_file = key;
    t = moor_tls_new(&to, &err);
    if (!t)
        fail_msg("moor_tls_new: %d %s", err.code, err.message);
    assert_int_equal(moor_server_listen_tls(s, "127.0.0.1:0", t, &err), 0);
    tport = moor_server_tls_port(s, 0);
    assert_true(tport > 0);
    assert_int_not_equal(tport, moor_server_port(s));
    assert_int_equal(moor_server_tls_port(s, 1), -ENOENT);

    /* wss:// from moor's client: insecure, then verified with the CA. */
    moor_client_options_init(&co);
    co.insecure = 1;
    cl = moor_client_new(l, &co, &err);
    assert_non_null(cl);
    moor_client_options_init(&co);
    co.tls_ca = cert;
    cv = moor_client_new(l, &co, &err);
    assert_non_null(cv);
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d/echo", tport);
    assert_int_equal(moor_client_connect(cl, url, &peer_handlers, &p, &err), 0);
    assert_int_equal(moor_client_connect(cv, url, &peer_handlers, &pv, &err),
                     0);
    assert_true(run_until(l, peer_closed, &p, 10000));
    assert_true(run_until(l, peer_closed, &pv, 10000));
    expect_echoed(&p);
    assert_int_equal(p.code, 1000);
    if (pv.code != 1000)
        fail_msg("verified wss://: code %d (%s)", pv.code, pv.why);
    expect_echoed(&pv);

    /* Peers that reset under the server's TLS writes. */
    pr.port = tport;
    assert_int_equal(pthread_create(&th, NULL, provoke_tls, &pr), 0);
    run_until(l, flag_set, (void *)&pr.done, 30000);
    pthread_join(th, NULL);
    assert_true(pr.done);
    assert_true(pr.handshakes > 0);

    /* The same files again: a reload that works. */
    assert_int_equal(moor_tls_reload(t, &err), 0);

    stop_and_drain(l, s);
    moor_client_free(cl);
    moor_client_free(cv);
    moor_server_free(s);
    moor_tls_free(t);
    moor_loop_free(l);
    assert_int_equal(sigpipes, 0);
    assert_same_action(SIGPIPE, &want_pipe);
    sigaction(SIGPIPE, &old_pipe, NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* ---- a host's own epoll loop ------------------------------------------------
 */

static void test_embedded_epoll_loop(void **state)
{
    struct echo e = {0};
    struct peer p = {.msgs = {"embedded", "in", "epoll"}, .n = 3};
    struct epoll_event ev = {.events = EPOLLIN};
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl;
    int ep, fd, woken = 0, iterations = 0, stuck = 0, rc = 1, stopping = 0;
    int64_t end = now_ms() + 15000;

    (void)state;
    l = new_loop();
    s = new_server(l);
    add_echo(s, "/echo", &e);
    cl = new_client(l);
    fd = moor_loop_fd(l);
    assert_true(fd >= 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    ev.data.fd = fd;
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);

    /* The client's connect is started here, outside any moor call that
     * waits: only the host loop below moves it on. */
    peer_connect(cl, moor_server_port(s), "/echo", &p);
    while (now_ms() < end) {
        int timeout = moor_loop_timeout(l), n, capped = 0;

        if (timeout < 0 || timeout > 2000) {
            timeout = 2000; /* moor said "nothing timed": must wake by I/O */
            capped = 1;
        }
        n = epoll_wait(ep, &ev, 1, timeout);
        assert_true(n >= 0 || errno == EINTR);
        woken += n > 0;
        if (n == 0 && capped)
            stuck++;
        rc = moor_loop_run_once(l, 0);
        assert_true(rc >= 0);
        iterations++;
        if (p.closed && e.closed && !stopping) {
            moor_server_stop(s); /* from the host loop, between calls */
            stopping = 1;
        }
        if (moor_server_stopped(s))
            break;
    }
    assert_true(moor_server_stopped(s));
    assert_true(p.closed);
    expect_echoed(&p);
    assert_int_equal(p.code, 1000);
    assert_int_equal(e.messages, 3);
    assert_int_equal(moor_client_open(cl), 0);
    assert_true(woken > 0);
    assert_int_equal(stuck, 0); /* never idle while work was pending */
    /* Nothing left: run_once says so. */
    assert_int_equal(moor_loop_run_once(l, 0), 0);
    close(ep);
    moor_client_free(cl);
    moor_server_free(s);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
    print_message("embedded: %d iterations, %d woken by moor_loop_fd\n",
                  iterations, woken);
}

/* ---- options structs of an older size
 * ----------------------------------------- */

/* moor_server_options as a program built against an older moor.h saw it:
 * its first fields only. */
struct old_server_options {
    size_t size;
    const char *listen;
    unsigned max_conns;
};

struct old_client_options {
    size_t size;
    uint64_t max_message;
    uint64_t queue_limit;
};

#define GUARD 0xA5

static void assert_guard(const unsigned char *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != GUARD)
            fail_msg("byte %zu past an options struct of %zu bytes was "
                     "written",
                     i, from);
}

static void test_old_struct_size(void **state)
{
    union {
        struct moor_server_options full;
        unsigned char raw[sizeof(struct moor_server_options) + 64];
    } sbuf;
    union {
        struct moor_client_options full;
        unsigned char raw[sizeof(struct moor_client_options) + 64];
    } cbuf;
    struct old_server_options *so = (void *)&sbuf, *heap_so;
    struct old_client_options *co = (void *)&cbuf, *heap_co;
    struct moor_server_options cur;
    struct moor_client_options ccur;
    struct moor_config c;
    struct echo e = {0};
    struct peer p = {.msgs = {"old", "struct"}, .n = 2};
    struct moor_error err = {0};
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl;

    (void)state;
    config_defaults(&c);
    assert_true(sizeof(*so) < sizeof(struct moor_server_options));
    assert_true(sizeof(*co) < sizeof(struct moor_client_options));

    /* init writes exactly the size it is given. */
    memset(&sbuf, GUARD, sizeof(sbuf));
    moor_server_options_init_((struct moor_server_options *)so, sizeof(*so));
    assert_int_equal(so->size, sizeof(*so));
    assert_string_equal(so->listen, c.listen);
    assert_int_equal(so->max_conns, c.max_conns);
    assert_guard(sbuf.raw, sizeof(*so), sizeof(sbuf.raw));

    memset(&cbuf, GUARD, sizeof(cbuf));
    moor_client_options_init_((struct moor_client_options *)co, sizeof(*co));
    moor_client_options_init(&ccur);
    assert_int_equal(co->size, sizeof(*co));
    assert_int_equal(co->max_message, ccur.max_message);
    assert_int_equal(co->queue_limit, ccur.queue_limit);
    assert_guard(cbuf.raw, sizeof(*co), sizeof(cbuf.raw));

    /* The library reads only that size (on the heap, exactly that big, so
     * ASan sees a read past it) and gives the rest its defaults: a
     * server with zeroed or garbage limits would not echo. */
    heap_so = malloc(sizeof(*heap_so));
    heap_co = malloc(sizeof(*heap_co));
    assert_non_null(heap_so);
    assert_non_null(heap_co);
    memcpy(heap_so, so, sizeof(*so));
    memcpy(heap_co, co, sizeof(*co));
    heap_so->listen = "127.0.0.1:0";
    heap_so->max_conns = 16;
    l = new_loop();
    s = moor_server_new(l, (const struct moor_server_options *)heap_so, &err);
    if (!s)
        fail_msg("old-size options: %d %s", err.code, err.message);
    add_echo(s, "/echo", &e);
    cl = moor_client_new(l, (const struct moor_client_options *)heap_co, &err);
    if (!cl)
        fail_msg("old-size client options: %d %s", err.code, err.message);
    free(heap_so);
    free(heap_co); /* copied: the server and client keep no pointer */
    p.stop_on_end = s;
    peer_connect(cl, moor_server_port(s), "/echo", &p);
    assert_int_equal(moor_loop_run(l), 0);
    expect_echoed(&p);
    assert_int_equal(p.code, 1000);
    moor_client_free(cl);
    moor_server_free(s);

    /* A size no init() wrote: MOOR_EOPTIONS, nothing made. */
    {
        static const size_t bad[] = {0, 1, sizeof(size_t) - 1, 0xdeadbeef,
                                     (size_t)-1};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            struct moor_loop_options lo;
            struct moor_pubsub_options po;
            struct moor_error e2 = {0};
            struct moor_server *s2;

            moor_server_options_init(&cur);
            cur.listen = "127.0.0.1:0";
            cur.size = bad[i];
            memset(&e2, 0, sizeof(e2));
            assert_null(moor_server_new(l, &cur, &e2));
            assert_int_equal(e2.code, MOOR_EOPTIONS);
            assert_true(e2.message[0] != '\0');

            moor_client_options_init(&ccur);
            ccur.size = bad[i];
            memset(&e2, 0, sizeof(e2));
            assert_null(moor_client_new(l, &ccur, &e2));
            assert_int_equal(e2.code, MOOR_EOPTIONS);

            moor_loop_options_init(&lo);
            lo.size = bad[i];
            memset(&e2, 0, sizeof(e2));
            assert_null(moor_loop_new(&lo, &e2));
            assert_int_equal(e2.code, MOOR_EOPTIONS);

            s2 = new_server(l);
            moor_pubsub_options_init(&po);
            po.size = bad[i];
            memset(&e2, 0, sizeof(e2));
            assert_null(moor_pubsub_new(s2, &po, &e2));
            assert_int_equal(e2.code, MOOR_EOPTIONS);
            moor_server_free(s2);
        }
    }
    moor_loop_free(l);
    assert_int_equal(e.opened, 1);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- the error convention
 * ------------------------------------------------------ */

struct close_checks {
    int done;
    int rc_1005, rc_1004, rc_1006, rc_999, rc_2000, rc_5000, rc_long, rc_utf8,
        rc_ok, rc_again;
    enum moor_send_result after_close;
};

static void close_checks_message(struct moor_ws *ws, const void *data,
                                 size_t len, int is_text, void *arg)
{
    struct close_checks *k = arg;
    char reason[200];

    (void)data;
    (void)len;
    (void)is_text;
    if (k->done++)
        return;
    memset(reason, 'r', sizeof(reason) - 1);
    reason[124] = '\0'; /* 124 bytes: one over */
    k->rc_1005 = moor_ws_close(ws, 1005, NULL);
    k->rc_1004 = moor_ws_close(ws, 1004, NULL);
    k->rc_1006 = moor_ws_close(ws, 1006, NULL);
    k->rc_999 = moor_ws_close(ws, 999, NULL);
    k->rc_2000 = moor_ws_close(ws, 2000, NULL);
    k->rc_5000 = moor_ws_close(ws, 5000, NULL);
    k->rc_long = moor_ws_close(ws, 1000, reason);
    k->rc_utf8 = moor_ws_close(ws, 1000, "\xff\xfe");
    reason[123] = '\0'; /* 123 bytes: allowed */
    k->rc_ok = moor_ws_close(ws, 4000, reason);
    k->rc_again = moor_ws_close(ws, 1000, NULL);
    k->after_close = moor_ws_send(ws, "late", 4, 1);
}

static void test_error_convention(void **state)
{
    static const int codes[] = {
        MOOR_EADDR,    MOOR_EURL,   MOOR_ETLS,          MOOR_ECLOSED,
        MOOR_EOPTIONS, MOOR_ESTATE, MOOR_ETIMEOUT_WAIT, MOOR_ETIMEOUT_PAUSE};
    struct close_checks k = {0};
    struct moor_ws_handlers h = {.on_message = close_checks_message, .arg = &k};
    struct peer p = {.msgs = {"close yourself"}, .n = 1, .keep_open = 1};
    struct moor_error err;
    struct moor_server_options o;
    struct moor_tls_options to;
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl;
    char small[16], *buf;
    long need;

    (void)state;
    /* moor_strerror: every code has its own words. */
    assert_non_null(strcasestr(moor_strerror(0), "success"));
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *m = moor_strerror(codes[i]);

        assert_non_null(m);
        assert_true(m[0] != '\0');
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(m, moor_strerror(codes[j]));
        assert_string_not_equal(m, moor_strerror(-EINVAL));
    }
    assert_non_null(strcasestr(moor_strerror(-ENOMEM), "memory"));
    assert_non_null(strcasestr(moor_strerror(-EADDRINUSE), "address"));
    assert_non_null(moor_strerror(-99999));
    assert_non_null(moor_strerror(12345)); /* not a code: still a string */

    /* moor_mem_json: the length it needs, whatever the buffer. */
    /* (The document carries RSS, so its length may move by a digit or
     * two between calls.) */
    need = moor_mem_json(NULL, 0);
    assert_true(need > 0);
    buf = malloc((size_t)need + 64);
    assert_non_null(buf);
    need = moor_mem_json(buf, (size_t)need + 64);
    assert_int_equal(strlen(buf), need);
    assert_non_null(strstr(buf, "\"live_bytes\""));
    assert_int_equal(buf[0], '{');
    assert_int_equal(buf[need - 1] == '\n' ? buf[need - 2] : buf[need - 1],
                     '}');
    free(buf);
    memset(small, 'x', sizeof(small));
    assert_true(moor_mem_json(small, sizeof(small)) > (long)sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_true(moor_mem_json(NULL, 10) < 0); /* NULL with room: -EINVAL */

    l = new_loop();
    /* Bad address: MOOR_EADDR and a message that names it. */
    moor_server_options_init(&o);
    o.listen = "localhost:http";
    memset(&err, 0, sizeof(err));
    assert_null(moor_server_new(l, &o, &err));
    assert_int_equal(err.code, MOOR_EADDR);
    assert_non_null(strstr(err.message, "localhost:http"));

    s = new_server(l);
    /* The port taken (by a socket of our own, without SO_REUSEPORT):
     * -EADDRINUSE, said in words. */
    {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        char addr[32];

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 1), 0);
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
        o.listen = addr;
        memset(&err, 0, sizeof(err));
        assert_null(moor_server_new(l, &o, &err));
        assert_int_equal(err.code, -EADDRINUSE);
        assert_non_null(strstr(err.message, addr));
        close(fd);
    }
    /* Routes: bad arguments, not crashes. */
    assert_int_equal(moor_server_ws(s, NULL, &h), -EINVAL);
    assert_int_equal(moor_server_ws(s, "no-slash", &h), -EINVAL);
    assert_int_equal(moor_server_ws(s, "/close", &h), 0);
    assert_int_equal(moor_server_tls_port(s, 0), -ENOENT);
    /* TLS: files that are not there. */
    moor_tls_options_init(&to);
    to.cert_file = "/nonexistent/cert.pem";
    to.key_file = "/nonexistent/key.pem";
    memset(&err, 0, sizeof(err));
    assert_null(moor_tls_new(&to, &err));
    assert_int_equal(err.code, MOOR_ETLS);
    assert_true(err.message[0] != '\0');

    cl = new_client(l);
    /* Bad URLs: MOOR_EURL, no callback. */
    {
        static const char *urls[] = {"http://127.0.0.1:1/", "ws://",
                                     "ws://127.0.0.1:99999/", "not a url",
                                     "ws://example.invalid:80/"};
        for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
            struct peer q = {0};

            memset(&err, 0, sizeof(err));
            assert_int_equal(
                moor_client_connect(cl, urls[i], &peer_handlers, &q, &err),
                MOOR_EURL);
            assert_int_equal(err.code, MOOR_EURL);
            assert_true(err.message[0] != '\0');
            assert_false(q.opened || q.closed);
        }
    }
    assert_int_equal(moor_client_open(cl), 0);

    /* moor_ws_close(): codes not allowed on the wire are -EINVAL; a
     * second close is MOOR_ECLOSED, a send after it is dropped. */
    peer_connect(cl, moor_server_port(s), "/close", &p);
    assert_true(run_until(l, peer_closed, &p, 10000));
    assert_int_equal(k.rc_1005, -EINVAL);
    assert_int_equal(k.rc_1004, -EINVAL);
    assert_int_equal(k.rc_1006, -EINVAL);
    assert_int_equal(k.rc_999, -EINVAL);
    assert_int_equal(k.rc_2000, -EINVAL);
    assert_int_equal(k.rc_5000, -EINVAL);
    assert_int_equal(k.rc_long, -EINVAL);
    assert_int_equal(k.rc_utf8, -EINVAL);
    assert_int_equal(k.rc_ok, 0);
    assert_int_equal(k.rc_again, MOOR_ECLOSED);
    assert_int_equal(k.after_close, MOOR_SEND_DROPPED);
    assert_int_equal(p.code, 4000);

    /* A refused connect: on_close 1006 with the reason in words. */
    {
        struct peer q = {0};
        int port = moor_server_port(s);

        stop_and_drain(l, s);
        moor_server_free(s);
        peer_connect(cl, port, "/", &q);
        assert_true(run_until(l, peer_closed, &q, 10000));
        assert_false(q.opened);
        assert_int_equal(q.code, 1006);
        assert_non_null(strcasestr(q.why, "refused"));
    }
    moor_client_free(cl);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- one loop: a server and a client; several servers
 * ------------------------ */

static void test_server_and_client_one_thread(void **state)
{
    struct echo e = {0};
    struct peer p = {.msgs = {"same", "thread", "loop"}, .n = 3};
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl;

    (void)state;
    l = new_loop();
    s = new_server(l);
    add_echo(s, "/echo", &e);
    cl = new_client(l);
    p.stop_on_end = s; /* the client's end stops the server */
    peer_connect(cl, moor_server_port(s), "/echo", &p);
    assert_int_equal(moor_client_open(cl), 1);
    /* Returns when the client has no connection and the server is done. */
    assert_int_equal(moor_loop_run(l), 0);
    expect_echoed(&p);
    assert_int_equal(p.code, 1000);
    assert_true(moor_server_stopped(s));
    assert_int_equal(moor_client_open(cl), 0);
    assert_int_equal(e.opened, 1);
    assert_int_equal(e.closed, 1);
    assert_int_equal(e.last_code, 1000);
    moor_client_free(cl);
    moor_server_free(s);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_several_servers_one_loop(void **state)
{
    struct echo ea = {0}, eb = {0};
    struct peer pa = {.msgs = {"to a"}, .n = 1},
                pb = {.msgs = {"to b", "again"}, .n = 2},
                stay = {.keep_open = 1},
                pb2 = {.msgs = {"b still", "serves"}, .n = 2}, gone = {0};
    struct moor_loop *l;
    struct moor_server *a, *b;
    struct moor_client *cl;
    int port_a;

    (void)state;
    l = new_loop();
    a = new_server(l);
    b = new_server(l);
    assert_int_not_equal(moor_server_port(a), moor_server_port(b));
    add_echo(a, "/echo", &ea);
    add_echo(b, "/echo", &eb);
    cl = new_client(l);
    port_a = moor_server_port(a);
    peer_connect(cl, port_a, "/echo", &pa);
    peer_connect(cl, moor_server_port(b), "/echo", &pb);
    peer_connect(cl, port_a, "/echo", &stay);
    assert_true(run_until(l, peer_closed, &pa, 10000));
    assert_true(run_until(l, peer_closed, &pb, 10000));
    assert_true(run_until(l, peer_opened, &stay, 10000));
    expect_echoed(&pa);
    expect_echoed(&pb);
    assert_int_equal(ea.messages, 1);
    assert_int_equal(eb.messages, 2);

    /* Free a with a connection still open: its on_close runs, b stays. */
    assert_int_equal(ea.opened - ea.closed, 1);
    moor_server_free(a);
    assert_int_equal(ea.opened, ea.closed);
    assert_true(run_until(l, peer_closed, &stay, 10000));
    if (stay.code != 1006 && stay.code != 1001)
        fail_msg("the server went: code %d (%s)", stay.code, stay.why);

    peer_connect(cl, moor_server_port(b), "/echo", &pb2);
    peer_connect(cl, port_a, "/echo", &gone);
    assert_true(run_until(l, peer_closed, &pb2, 10000));
    assert_true(run_until(l, peer_closed, &gone, 10000));
    expect_echoed(&pb2);
    assert_int_equal(pb2.code, 1000);
    assert_false(gone.opened);
    assert_int_equal(gone.code, 1006);
    assert_int_equal(eb.messages, 4);

    stop_and_drain(l, b);
    assert_int_equal(moor_loop_run_once(l, 0), 0);
    moor_client_free(cl);
    moor_server_free(b);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- HTTP routes, metrics, /debug
 * ------------------------------------------------ */

struct http_state {
    int hello_calls, twice_rc, bad_status_rc, bad_status2_rc, bad_hdr_rc,
        bad_hdr2_rc, silent_calls, post_header_null;
    char method[16], path[64], name[64];
};

static void on_hello(struct moor_request *req, void *arg)
{
    struct http_state *h = arg;
    size_t n = 0, pl = 0;
    const char *name = moor_request_header(req, "x-NAME", &n);
    const char *path = moor_request_path(req, &pl);
    char body[128];
    int len;

    h->hello_calls++;
    snprintf(h->method, sizeof(h->method), "%s", moor_request_method(req));
    snprintf(h->path, sizeof(h->path), "%.*s", (int)pl, path);
    if (name)
        snprintf(h->name, sizeof(h->name), "%.*s", (int)n, name);
    len = snprintf(body, sizeof(body), "hello %.*s", name ? (int)n : 5,
                   name ? name : "world");
    moor_respond(req, 200, "text/plain", "X-Test: yes\r\n", body, (size_t)len);
    h->twice_rc = moor_respond(req, 200, "text/plain", NULL, "x", 1);
}

static void on_echo_body(struct moor_request *req, void *arg)
{
    struct http_state *h = arg;
    size_t len = 0, hl = 0;
    const void *body = moor_request_body(req, &len);

    h->post_header_null = moor_request_header(req, "host", &hl) == NULL;
    moor_respond(req, 201, "application/octet-stream", NULL, body, len);
}

static void on_silent(struct moor_request *req, void *arg)
{
    struct http_state *h = arg;

    (void)req;
    h->silent_calls++; /* no answer: moor answers 500 */
}

static void on_prefix(struct moor_request *req, void *arg)
{
    size_t pl = 0;
    const char *path = moor_request_path(req, &pl);

    (void)arg;
    moor_respond(req, 200, "text/plain", NULL, path, pl);
}

static void on_bad(struct moor_request *req, void *arg)
{
    struct http_state *h = arg;

    h->bad_status_rc = moor_respond(req, 42, "text/plain", NULL, "x", 1);
    h->bad_status2_rc = moor_respond(req, 1000, "text/plain", NULL, "x", 1);
    h->bad_hdr_rc = moor_respond(req, 200, NULL, "no-colon\r\n", "x", 1);
    h->bad_hdr2_rc =
        moor_respond(req, 200, NULL, "X-A: 1\r\n\r\nSmuggled: 1\r\n", "x", 1);
    moor_respond(req, 200, "text/plain", NULL, "fine", 4);
}

struct http_client_arg {
    int port;
    struct moor_server *s;
    int st_hello, st_head, st_post, st_405, st_silent, st_prefix, st_bad,
        st_404, st_metrics, st_mem, st_conns, st_pub;
    char hello[1024], head[1024], post[1024], r405[1024], prefix[1024],
        metrics[65536], mem[65536], pub[1024];
};

static void *http_client(void *p)
{
    struct http_client_arg *a = p;
    char tmp[4096];
    static const char post[] =
        "POST /echo-body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Length: 11\r\n\r\nbody\0"
        "bytes!";
    static const char post_pub[] =
        "POST /pub/news HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Length: 5\r\n\r\nhello";
    static const char hello[] =
        "GET /hello?q=1 HTTP/1.1\r\nHost: x\r\nX-Name: moor\r\n"
        "Connection: close\r\n\r\n";
    static const char head[] = "HEAD /hello HTTP/1.1\r\nHost: x\r\n"
                               "Connection: close\r\n\r\n";
    static const char wrong[] = "DELETE /hello HTTP/1.1\r\nHost: x\r\n"
                                "Connection: close\r\n\r\n";

    a->st_hello = http_request(a->port, hello, sizeof(hello) - 1, a->hello,
                               sizeof(a->hello));
    a->st_head =
        http_request(a->port, head, sizeof(head) - 1, a->head, sizeof(a->head));
    a->st_post =
        http_request(a->port, post, sizeof(post) - 1, a->post, sizeof(a->post));
    a->st_405 = http_request(a->port, wrong, sizeof(wrong) - 1, a->r405,
                             sizeof(a->r405));
    a->st_silent = http_get(a->port, "/silent", tmp, sizeof(tmp));
    a->st_prefix =
        http_get(a->port, "/files/a/b.txt", a->prefix, sizeof(a->prefix));
    a->st_bad = http_get(a->port, "/bad", tmp, sizeof(tmp));
    a->st_404 = http_get(a->port, "/nowhere", tmp, sizeof(tmp));
    a->st_metrics =
        http_get(a->port, "/metrics", a->metrics, sizeof(a->metrics));
    a->st_mem = http_get(a->port, "/debug/mem", a->mem, sizeof(a->mem));
    a->st_conns = http_get(a->port, "/debug/conns", tmp, sizeof(tmp));
    a->st_pub = http_request(a->port, post_pub, sizeof(post_pub) - 1, a->pub,
                             sizeof(a->pub));
    moor_server_stop(a->s);
    return NULL;
}

static void test_http_routes(void **state)
{
    struct http_state h = {0};
    struct http_client_arg a = {0};
    struct moor_pubsub_options po;
    struct moor_error err = {0};
    struct moor_loop *l;
    struct moor_server *s;
    pthread_t t;

    (void)state;
    l = new_loop();
    s = new_server(l);
    assert_int_equal(moor_server_route(s, "GET,HEAD", "/hello", on_hello, &h),
                     0);
    assert_int_equal(
        moor_server_route(s, "POST", "/echo-body", on_echo_body, &h), 0);
    assert_int_equal(moor_server_route(s, "GET", "/silent", on_silent, &h), 0);
    assert_int_equal(moor_server_route(s, "GET", "/files/", on_prefix, &h), 0);
    assert_int_equal(moor_server_route(s, "GET", "/bad", on_bad, &h), 0);
    assert_int_equal(moor_server_route(s, "GET", "/x", NULL, &h), -EINVAL);
    assert_int_equal(moor_server_route(s, "", "/x", on_silent, &h), -EINVAL);
    assert_int_equal(moor_server_route(s, "GET", NULL, on_silent, &h), -EINVAL);
    assert_int_equal(moor_server_route(s, "GET", "x", on_silent, &h), -EINVAL);
    assert_int_equal(moor_server_metrics(s, "/metrics", s), 0);
    assert_int_equal(moor_server_debug(s, "/debug", s), 0);
    moor_pubsub_options_init(&po);
    assert_non_null(moor_pubsub_new(s, &po, &err));

    a.port = moor_server_port(s);
    a.s = s;
    assert_int_equal(pthread_create(&t, NULL, http_client, &a), 0);
    assert_int_equal(moor_loop_run(l), 0);
    pthread_join(t, NULL);
    moor_server_free(s);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);

    assert_int_equal(a.st_hello, 200);
    assert_non_null(strstr(a.hello, "\r\nX-Test: yes\r\n"));
    assert_non_null(strcasestr(a.hello, "\r\nContent-Type: text/plain\r\n"));
    assert_non_null(strcasestr(a.hello, "\r\nContent-Length: 10\r\n"));
    assert_string_equal(http_body(a.hello), "hello moor");
    assert_string_equal(h.name, "moor");
    assert_string_equal(h.path, "/hello");
    assert_int_equal(h.twice_rc, MOOR_ESTATE);
    assert_int_equal(a.st_head, 200);
    assert_string_equal(h.method, "HEAD");
    assert_string_equal(http_body(a.head), ""); /* no body for HEAD */
    assert_int_equal(h.hello_calls, 2);

    assert_int_equal(a.st_post, 201);
    assert_memory_equal(http_body(a.post),
                        "body\0"
                        "bytes!",
                        11);
    assert_true(h.post_header_null);

    assert_int_equal(a.st_405, 405);
    assert_non_null(strcasestr(a.r405, "\r\nAllow: "));
    assert_int_equal(a.st_silent, 500);
    assert_int_equal(h.silent_calls, 1);
    assert_int_equal(a.st_prefix, 200);
    assert_string_equal(http_body(a.prefix), "/files/a/b.txt");
    assert_int_equal(a.st_bad, 200);
    assert_int_equal(h.bad_status_rc, -EINVAL);
    assert_int_equal(h.bad_status2_rc, -EINVAL);
    assert_int_equal(h.bad_hdr_rc, -EINVAL);
    assert_int_equal(h.bad_hdr2_rc, -EINVAL);
    assert_int_equal(a.st_404, 404);

    assert_int_equal(a.st_metrics, 200);
    assert_non_null(strstr(a.metrics, "moor_pubsub_subscribers"));
    assert_non_null(strstr(a.metrics, "moor_mem_live_bytes"));
    assert_int_equal(a.st_mem, 200);
    assert_non_null(strstr(a.mem, "\"live_bytes\""));
    assert_int_equal(a.st_conns, 200);
    assert_int_equal(a.st_pub, 202);
    assert_non_null(strstr(a.pub, "{\"subscribers\":0}"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- the HTTP client on the server's loop, and its /metrics -------------- */

struct mclient {
    struct moor_http_client *cl;
    struct moor_server *s;
    char url[64], murl[64];
    int left;   /* /hello requests still to make */
    int status; /* of the last one */
    int errors;
    char metrics[65536];
    size_t mlen;
    int done;
};

static void mc_start(struct mclient *m, const char *url);

static void mc_body(struct moor_http_call *c, const void *p, size_t n,
                    void *user)
{
    struct mclient *m = user;

    (void)c;
    if (m->left == 0 && m->mlen + n < sizeof(m->metrics)) {
        memcpy(m->metrics + m->mlen, p, n);
        m->mlen += n;
        m->metrics[m->mlen] = '\0';
    }
}

static void mc_done(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user)
{
    struct mclient *m = user;

    (void)c;
    m->status = r->status;
    m->errors += r->error != 0;
    if (m->left > 0 && --m->left >= 0)
        mc_start(m, m->left ? m->url : m->murl);
    else {
        m->done = 1;
        moor_server_stop(m->s);
    }
}

static void mc_start(struct mclient *m, const char *url)
{
    struct moor_http_callbacks cb = {.on_body = mc_body, .on_done = mc_done};
    struct moor_http_request r;
    struct moor_error err;

    moor_http_request_init(&r);
    r.url = url;
    assert_non_null(moor_http_client_request(m->cl, &r, &cb, m, &err));
}

/* The client on the loop of the server it calls: three GETs on one
 * pooled connection, then the server's /metrics, which carries the
 * client's figures (moor_server_metrics_http_client). */
static void test_http_client_metrics(void **state)
{
    static struct mclient m;
    struct http_state h = {0};
    struct moor_error err = {0};
    struct moor_loop *l;
    char want[256];

    (void)state;
    memset(&m, 0, sizeof(m));
    l = new_loop();
    m.s = new_server(l);
    assert_int_equal(moor_server_route(m.s, "GET", "/hello", on_hello, &h), 0);
    assert_int_equal(moor_server_metrics(m.s, "/metrics", m.s), 0);
    m.cl = moor_http_client_new(l, NULL, &err);
    assert_non_null(m.cl);
    assert_int_equal(moor_server_metrics_http_client(m.s, m.cl), 0);
    assert_int_equal(moor_server_metrics_http_client(NULL, m.cl), -EINVAL);
    snprintf(m.url, sizeof(m.url), "http://127.0.0.1:%d/hello",
             moor_server_port(m.s));
    snprintf(m.murl, sizeof(m.murl), "http://127.0.0.1:%d/metrics",
             moor_server_port(m.s));
    m.left = 3;
    mc_start(&m, m.url);
    assert_int_equal(moor_loop_run(l), 0);
    assert_true(m.done);
    assert_int_equal(m.errors, 0);
    assert_int_equal(m.status, 200);
    assert_int_equal(h.hello_calls, 3);
    /* While /metrics was answered, its own request ran on the one
     * connection: active 1, idle 0; four requests, three of them reused. */
    snprintf(want, sizeof(want),
             "moor_http_client_connections{host=\"http://127.0.0.1:%d\","
             "state=\"active\"} 1\n",
             moor_server_port(m.s));
    assert_non_null(strstr(m.metrics, want));
    snprintf(
        want, sizeof(want),
        "moor_http_client_requests_total{host=\"http://127.0.0.1:%d\"} 4\n",
        moor_server_port(m.s));
    assert_non_null(strstr(m.metrics, want));
    snprintf(want, sizeof(want),
             "moor_http_client_requests_reused_total{host=\"http://127.0.0.1:"
             "%d\"} 3\n",
             moor_server_port(m.s));
    assert_non_null(strstr(m.metrics, want));
    assert_non_null(
        strstr(m.metrics, "# TYPE moor_http_client_bytes_held gauge"));
    assert_non_null(strstr(m.metrics, "moor_mem_live_bytes")); /* the rest */
    moor_http_client_free(m.cl);
    moor_server_free(m.s);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* Two clients on one page (here the same one twice, so both talk to the
 * same host): each family once, the host's rows summed in one. */
static void test_http_client_metrics_two_clients(void **state)
{
    static struct mclient m;
    struct http_state h = {0};
    struct moor_error err = {0};
    struct moor_loop *l;
    const char *p, *type = "# TYPE moor_http_client_requests_total counter";
    char want[256];
    int types = 0;

    (void)state;
    memset(&m, 0, sizeof(m));
    l = new_loop();
    m.s = new_server(l);
    assert_int_equal(moor_server_route(m.s, "GET", "/hello", on_hello, &h), 0);
    assert_int_equal(moor_server_metrics(m.s, "/metrics", m.s), 0);
    m.cl = moor_http_client_new(l, NULL, &err);
    assert_non_null(m.cl);
    assert_int_equal(moor_server_metrics_http_client(m.s, m.cl), 0);
    assert_int_equal(moor_server_metrics_http_client(m.s, m.cl), 0);
    snprintf(m.url, sizeof(m.url), "http://127.0.0.1:%d/hello",
             moor_server_port(m.s));
    snprintf(m.murl, sizeof(m.murl), "http://127.0.0.1:%d/metrics",
             moor_server_port(m.s));
    m.left = 3;
    mc_start(&m, m.url);
    assert_int_equal(moor_loop_run(l), 0);
    assert_true(m.done);
    assert_int_equal(m.status, 200);
    for (p = m.metrics; (p = strstr(p, type)); p++)
        types++;
    assert_int_equal(types, 1);
    snprintf(
        want, sizeof(want),
        "moor_http_client_requests_total{host=\"http://127.0.0.1:%d\"} 8\n",
        moor_server_port(m.s));
    assert_non_null(strstr(m.metrics, want));
    moor_http_client_free(m.cl);
    moor_server_free(m.s);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* metrics_max_hosts: hosts past it are summed under host="other" (here
 * 0, so the one host is), and the page names no host itself. */
static void test_http_client_metrics_other(void **state)
{
    static struct mclient m;
    struct http_state h = {0};
    struct moor_error err = {0};
    struct moor_http_client_options o;
    struct moor_loop *l;
    char want[256];

    (void)state;
    memset(&m, 0, sizeof(m));
    l = new_loop();
    m.s = new_server(l);
    assert_int_equal(moor_server_route(m.s, "GET", "/hello", on_hello, &h), 0);
    assert_int_equal(moor_server_metrics(m.s, "/metrics", m.s), 0);
    moor_http_client_options_init(&o);
    assert_int_equal(o.metrics_max_hosts, 100);
    o.metrics_max_hosts = 0;
    m.cl = moor_http_client_new(l, &o, &err);
    assert_non_null(m.cl);
    assert_int_equal(moor_server_metrics_http_client(m.s, m.cl), 0);
    snprintf(m.url, sizeof(m.url), "http://127.0.0.1:%d/hello",
             moor_server_port(m.s));
    snprintf(m.murl, sizeof(m.murl), "http://127.0.0.1:%d/metrics",
             moor_server_port(m.s));
    m.left = 2;
    mc_start(&m, m.url);
    assert_int_equal(moor_loop_run(l), 0);
    assert_true(m.done);
    assert_int_equal(m.errors, 0);
    assert_non_null(strstr(
        m.metrics, "moor_http_client_requests_total{host=\"other\"} 3\n"));
    assert_non_null(strstr(m.metrics, "moor_http_client_connections{host="
                                      "\"other\",state=\"active\"} 1\n"));
    snprintf(want, sizeof(want), "host=\"http://127.0.0.1:%d\"",
             moor_server_port(m.s));
    assert_null(strstr(m.metrics, want));
    moor_http_client_free(m.cl);
    moor_server_free(m.s);
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

/* ---- pub/sub from C
 * ---------------------------------------------------------------- */

/* A framed TCP peer: 4-byte big-endian length, then the payload. */
static void tcp_frame_send(int fd, const char *s)
{
    uint32_t n = htonl((uint32_t)strlen(s));

    assert_int_equal(send_all(fd, &n, 4), 0);
    assert_int_equal(send_all(fd, s, strlen(s)), 0);
}

struct subs_arg {
    struct moor_pubsub *ps;
    const char *ch;
    long want;
};

static int subs_are(void *p)
{
    struct subs_arg *a = p;

    return moor_pubsub_subscribers(a->ps, a->ch) == a->want;
}

struct got_bytes {
    int fd;
    char buf[256];
    size_t n, want;
};

static int tcp_got(void *p)
{
    struct got_bytes *g = p;
    ssize_t r = recv(g->fd, g->buf + g->n, sizeof(g->buf) - g->n, MSG_DONTWAIT);

    if (r > 0)
        g->n += (size_t)r;
    return g->n >= g->want;
}

static int two_replies(void *p)
{
    return ((struct peer *)p)->got >= 2;
}

static void test_publish_from_c(void **state)
{
    struct peer p = {.n = 0, .keep_open = 1};
    struct moor_pubsub_options po;
    struct moor_error err = {0};
    struct moor_loop *l;
    struct moor_server *s;
    struct moor_client *cl;
    struct moor_pubsub *ps;
    struct subs_arg sa;
    struct got_bytes g = {0};
    int tcp_port;

    (void)state;
    l = new_loop();
    s = new_server(l);
    moor_pubsub_options_init(&po);
    ps = moor_pubsub_new(s, &po, &err);
    assert_non_null(ps);
    /* One gateway per server. */
    memset(&err, 0, sizeof(err));
    assert_null(moor_pubsub_new(s, &po, &err));
    assert_int_equal(err.code, -EEXIST);

    assert_int_equal(moor_pubsub_tcp_port(ps, 0), -ENOENT);
    memset(&err, 0, sizeof(err));
    assert_int_equal(moor_pubsub_listen_tcp(ps, "bad", NULL, &err), MOOR_EADDR);
    assert_int_equal(err.code, MOOR_EADDR);
    assert_int_equal(moor_pubsub_listen_tcp(ps, "127.0.0.1:0", NULL, &err), 0);
    tcp_port = moor_pubsub_tcp_port(ps, 0);
    assert_true(tcp_port > 0);
    assert_int_equal(moor_pubsub_tcp_port(ps, 1), -ENOENT);

    assert_int_equal(moor_pubsub_subscribers(ps, "news"), 0);
    cl = new_client(l);
    peer_connect(cl, moor_server_port(s), "/sub/news,sport", &p);
    assert_true(run_until(l, peer_opened, &p, 10000));
    assert_int_equal(moor_pubsub_subscribers(ps, "news"), 1);
    assert_int_equal(moor_pubsub_subscribers(ps, "sport"), 1);
    assert_int_equal(moor_pubsub_subscribers(ps, "other"), 0);

    /* A framed TCP subscriber of news too. */
    g.fd = tcp_connect(tcp_port);
    assert_true(g.fd >= 0);
    tcp_frame_send(g.fd, "SUB news");
    sa = (struct subs_arg){ps, "news", 2};
    assert_true(run_until(l, subs_are, &sa, 10000));

    assert_int_equal(moor_publish(ps, "news", "hello", 5, 1), 2);
    assert_int_equal(moor_publish(ps, "sport", "\x00\x01\x02", 3, 0), 1);
    assert_int_equal(moor_publish(ps, "nobody", "x", 1, 1), 0);
    assert_int_equal(moor_publish(ps, "a,b", "x", 1, 1), -EINVAL);
    assert_int_equal(moor_publish(ps, "", "x", 1, 1), -EINVAL);
    assert_int_equal(moor_publish(ps, "bad name", "x", 1, 1), -EINVAL);
    assert_true(run_until(l, two_replies, &p, 10000));
    assert_string_equal(p.replies[0], "hello");
    assert_int_equal(p.text[0], 1);
    assert_int_equal(p.lens[1], 3);
    assert_memory_equal(p.replies[1], "\x00\x01\x02", 3);
    assert_int_equal(p.text[1], 0);
    g.want = 4 + 5;
    assert_true(run_until(l, tcp_got, &g, 10000));
    assert_memory_equal(g.buf, "\x00\x00\x00\x05hello", 9);

    /* Subscribers leave: the counts follow. */
    moor_ws_close(p.ws, 1000, NULL);
    assert_true(run_until(l, peer_closed, &p, 10000));
    sa = (struct subs_arg){ps, "sport", 0};
    assert_true(run_until(l, subs_are, &sa, 10000));
    close(g.fd);
    sa = (struct subs_arg){ps, "news", 0};
    assert_true(run_until(l, subs_are, &sa, 10000));
    assert_int_equal(moor_publish(ps, "news", "x", 1, 1), 0);

    stop_and_drain(l, s);
    moor_client_free(cl);
    moor_server_free(s); /* and its gateway */
    moor_loop_free(l);
    assert_int_equal(moor_mem_live_bytes(), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_moor_serve),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_echo_server_stop_from_thread),
        cmocka_unit_test(test_bad_listen_address),
        cmocka_unit_test(test_signals_untouched),
        cmocka_unit_test(test_tls_no_sigpipe),
        cmocka_unit_test(test_embedded_epoll_loop),
        cmocka_unit_test(test_old_struct_size),
        cmocka_unit_test(test_error_convention),
        cmocka_unit_test(test_server_and_client_one_thread),
        cmocka_unit_test(test_several_servers_one_loop),
        cmocka_unit_test(test_http_routes),
        cmocka_unit_test(test_http_client_metrics),
        cmocka_unit_test(test_http_client_metrics_other),
        cmocka_unit_test(test_http_client_metrics_two_clients),
        cmocka_unit_test(test_publish_from_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
