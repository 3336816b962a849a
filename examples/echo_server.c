/*
 * echo_server.c - a WebSocket echo server on libmoor, in a page of C.
 *
 *   cc echo_server.c $(pkg-config --cflags --libs libmoor) -o echo_server
 *   ./echo_server 127.0.0.1:9001
 *
 * Every message comes back with its type. An echo is a 1:1 stream: when a
 * client reads slower than it sends, moor stops reading it until its
 * echoes drain, so memory stays bounded and nothing is dropped. Ctrl-C
 * drains: every client gets close 1001.
 */
#include <stdio.h>
#include <moor.h>

static void on_open(struct moor_ws *ws, void *arg)
{
    unsigned long *clients = arg;

    (*clients)++;
    moor_ws_set_user(ws, (void *)*clients); /* a per-connection id */
}

static void on_message(struct moor_ws *ws, const void *data, size_t len,
                       int is_text, void *arg)
{
    (void)arg;
    moor_ws_send(ws, data, len, is_text); /* never dropped: see below */
}

static void on_close(struct moor_ws *ws, int code, void *arg)
{
    (void)arg;
    printf("client %lu left with code %d\n", (unsigned long)moor_ws_user(ws),
           code);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static unsigned long clients;
    struct moor_ws_handlers h = {
        .on_open = on_open,
        .on_message = on_message,
        .on_close = on_close,
        .arg = &clients,
        .pause_reading_on_backpressure = 1,
    };
    struct moor_server_options o;
    struct moor_server *s;
    char err[256];
    int rc;

    moor_server_options_init(&o);
    o.listen = argc > 1 ? argv[1] : "127.0.0.1:9001";
    s = moor_server_new(&o, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "echo_server: %s\n", err);
        return 1;
    }
    moor_server_ws(s, "/", &h);
    printf("echo_server: ws://127.0.0.1:%d/\n", moor_server_port(s));
    fflush(stdout);
    rc = moor_server_run(s);
    moor_server_free(s);
    return rc < 0 || moor_mem_live_bytes() != 0;
}
