/*
 * echo_server.c - a WebSocket echo server on libmoor, in a page of C.
 *
 *   cc echo_server.c $(pkg-config --cflags --libs libmoor) -o echo_server
 *   ./echo_server 127.0.0.1:9001
 *
 * Every message comes back with its type. An echo is a 1:1 stream: when a
 * client reads slower than it sends, moor stops reading it until its
 * echoes drain, so memory stays bounded and nothing is dropped. Ctrl-C
 * or SIGTERM drains: every client gets close 1001.
 *
 * moor installs no signal handler: this program blocks SIGINT and SIGTERM
 * and waits for them on a thread of its own, which calls
 * moor_server_stop() (safe from any thread).
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask */
#include <pthread.h>
#include <signal.h>
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

static sigset_t stop_signals;

static void *wait_for_signal(void *server)
{
    int sig;

    sigwait(&stop_signals, &sig);
    moor_server_stop(server); /* moor_loop_run() returns once drained */
    return NULL;
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
    struct moor_error err;
    struct moor_loop *l;
    struct moor_server *s;
    pthread_t waiter;
    int rc;

    /* Blocked before any thread starts, so only the waiter receives them. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    moor_server_options_init(&o);
    o.listen = argc > 1 ? argv[1] : "127.0.0.1:9001";
    l = moor_loop_new(NULL, &err);
    if (!l) {
        fprintf(stderr, "echo_server: %s\n", err.message);
        return 1;
    }
    s = moor_server_new(l, &o, &err);
    if (!s || (err.code = moor_server_ws(s, "/", &h)) < 0) {
        fprintf(stderr, "echo_server: %s\n",
                s ? moor_strerror(err.code) : err.message);
        if (s)
            moor_server_free(s);
        moor_loop_free(l);
        return 1;
    }
    printf("echo_server: ws://127.0.0.1:%d/\n", moor_server_port(s));
    fflush(stdout);
    if (pthread_create(&waiter, NULL, wait_for_signal, s) != 0) {
        fprintf(stderr, "echo_server: cannot start the signal thread\n");
        moor_server_stop(s);
        rc = moor_loop_run(l);
    } else {
        rc = moor_loop_run(l); /* until the server has drained */
        /* If the loop ended on its own, wake the waiter (it then calls
         * moor_server_stop() on a server that is still there). */
        pthread_kill(waiter, SIGTERM);
        pthread_join(waiter, NULL);
    }
    moor_server_free(s);
    moor_loop_free(l);
    return rc < 0 || moor_mem_live_bytes() != 0;
}
