/*
 * test_api.c - the public API (include/moor.h): defaults agree with
 * `moor serve`, a WebSocket server built on it echoes over a real TCP
 * socket, user data and callbacks work, moor_server_stop() from another
 * thread drains, and every byte comes back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "moor.h"
#include "config.h"
#include "mem.h"

static void test_defaults_match_moor_serve(void **state)
{
    struct moor_server_options o;
    struct moor_config c;

    (void)state;
    moor_server_options_init(&o);
    config_defaults(&c);
    assert_string_equal(o.listen, c.listen);
    assert_int_equal(o.max_conns, c.max_conns);
    assert_int_equal(o.max_message, c.max_message);
    assert_int_equal(o.queue_limit, c.queue_limit);
    assert_int_equal(o.ping_interval_ms, c.ping_interval_ms);
    assert_int_equal(o.pong_timeout_ms, c.pong_timeout_ms);
    assert_int_equal(o.write_timeout_ms, c.write_timeout_ms);
    assert_int_equal(o.idle_timeout_ms, c.idle_timeout_ms);
    assert_int_equal(o.shutdown_timeout_ms, c.shutdown_timeout_ms);
    assert_int_equal(o.message_timeout_ms, c.message_timeout_ms);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

struct events {
    int opened, messages, closed, last_code;
    void *user_seen;
};

static void on_open(struct moor_ws *ws, void *arg)
{
    struct events *e = arg;

    e->opened++;
    moor_ws_set_user(ws, e);
}

static void on_message(struct moor_ws *ws, const void *data, size_t len,
                       int is_text, void *arg)
{
    struct events *e = arg;

    e->messages++;
    e->user_seen = moor_ws_user(ws);
    assert_int_equal(moor_ws_send(ws, data, len, is_text), MOOR_SEND_OK);
    assert_true(moor_ws_buffered_amount(ws) >= len);
}

static void on_close(struct moor_ws *ws, int code, void *arg)
{
    struct events *e = arg;

    (void)ws;
    e->closed++;
    e->last_code = code;
}

struct client_arg {
    int port;
    struct moor_server *s;
    char reply[256];
    size_t reply_len;
    int ok;
};

static int read_some(int fd, char *buf, size_t cap, const char *until)
{
    size_t n = 0;

    while (n < cap - 1) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (until && strstr(buf, until))
            break;
        if (!until)
            break;
    }
    return (int)n;
}

/* A raw client: handshake, one masked text frame, read the echo, then
 * stop the server from this thread. */
static void *client(void *p)
{
    struct client_arg *a = p;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {.tv_sec = 5};
    char buf[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    static const char req[] =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    uint8_t frame[2 + 4 + 5] = {0x81, 0x80 | 5, 1, 2, 3, 4};

    sa.sin_port = htons((uint16_t)a->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, req, sizeof(req) - 1, 0) > 0 &&
        read_some(fd, buf, sizeof(buf), "\r\n\r\n") > 0 && strstr(buf, "101") &&
        strstr(buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) {
        for (int i = 0; i < 5; i++)
            frame[6 + i] = (uint8_t)("hello"[i] ^ frame[2 + (i & 3)]);
        send(fd, frame, sizeof(frame), 0);
        a->reply_len = (size_t)read_some(fd, a->reply, sizeof(a->reply), NULL);
        a->ok = 1;
    }
    moor_server_stop(a->s);
    /* Answer the server's close 1001 so the drain completes. */
    if (read_some(fd, buf, sizeof(buf), NULL) > 0) {
        uint8_t close[2 + 4 + 2] = {0x88, 0x80 | 2, 0, 0, 0, 0, 0x03, 0xe9};
        send(fd, close, sizeof(close), 0);
        read_some(fd, buf, sizeof(buf), NULL);
    }
    close(fd);
    return NULL;
}

static void test_echo_server(void **state)
{
    struct events e = {0};
    struct moor_ws_handlers h = {
        .on_open = on_open,
        .on_message = on_message,
        .on_close = on_close,
        .arg = &e,
    };
    struct moor_server_options o;
    struct moor_server *s;
    struct client_arg a = {0};
    struct moor_loop *l = moor_loop_new(NULL, NULL);
    pthread_t t;

    (void)state;
    assert_non_null(l);
    moor_server_options_init(&o);
    o.listen = "127.0.0.1:0";
    o.shutdown_timeout_ms = 3000;
    o.drain_spread_ms = 0;
    s = moor_server_new(l, &o, NULL);
    assert_non_null(s);
    assert_int_equal(moor_server_ws(s, "/ws", &h), 0);
    a.port = moor_server_port(s);
    a.s = s;
    assert_true(a.port > 0);
    assert_int_equal(pthread_create(&t, NULL, client, &a), 0);
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
    struct moor_server_options o;
    struct moor_error err = {0};
    struct moor_loop *l = moor_loop_new(NULL, NULL);

    (void)state;
    moor_server_options_init(&o);
    o.listen = "nonsense";
    assert_null(moor_server_new(l, &o, &err));
    assert_int_equal(err.code, MOOR_EADDR);
    assert_non_null(strstr(err.message, "nonsense"));
    o.listen = "::1:80";
    assert_null(moor_server_new(l, &o, &err));
    assert_non_null(strstr(err.message, "[::1]:80"));
    moor_loop_free(l);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_moor_serve),
        cmocka_unit_test(test_echo_server),
        cmocka_unit_test(test_bad_listen_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
