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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <moor.h>

/* SIGINT or SIGTERM: drain (moor_server_stop is safe from any thread). */
static void *wait_signal(void *arg)
{
    sigset_t sigs;
    int sig;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigwait(&sigs, &sig);
    moor_server_stop(arg);
    return NULL;
}

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
    struct moor_loop *l;
    struct moor_error err;
    sigset_t sigs;
    int rc;

    moor_server_options_init(&o);
    o.listen = argc > 1 ? argv[1] : "127.0.0.1:9001";
    l = moor_loop_new(NULL, &err);
    s = l ? moor_server_new(l, &o, &err) : NULL;
    if (!s) {
        fprintf(stderr, "echo_server: %s\n", err.message);
        moor_loop_free(l);
        return 1;
    }
    moor_server_ws(s, "/", &h);
    printf("echo_server: ws://127.0.0.1:%d/\n", moor_server_port(s));
    fflush(stdout);
    /* Ctrl-C and SIGTERM are the program's to handle, not the library's:
     * a thread waits for them and asks the server to drain. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_create(&(pthread_t){0}, NULL, wait_signal, s);
    rc = moor_loop_run(l); /* until the server has drained */
    moor_server_free(s);
    moor_loop_free(l);
    return rc < 0 || moor_mem_live_bytes() != 0;
}
