/*
 * ws_client.c - a WebSocket client on libmoor, in a few pages of C.
 *
 *   cc ws_client.c $(pkg-config --cflags --libs libmoor) -o ws_client
 *   ./ws_client ws://127.0.0.1:9001/ hello 'second message'
 *
 * usage: ws_client [-b] [-f] [-x] [-t SECONDS] [-c SECONDS] [-a CAFILE] [-k]
 *                  URL [MESSAGE...]
 *   -b  send the messages as binary (default: text)
 *   -f  each MESSAGE names a file whose bytes are sent as one message
 *   -x  print each reply as "text HEX" or "binary HEX" (byte-exact)
 *   -t  give up after this long, whatever is happening (default 10)
 *   -c  give up if connecting + the handshake take this long (default 5)
 *   -a  wss:// URLs: trust the CA certificates in this PEM file instead of
 *       the system's
 *   -k  wss:// URLs: do not verify the server's certificate (tests only)
 *
 * Sends every MESSAGE in order, prints each reply on a line of its own,
 * and once as many replies as messages are in, closes with 1000 (with no
 * MESSAGE: connects and closes). Exit status: 0 after a clean close with
 * every reply in; 1 on any failure, with "ws_client: <why>" on stderr;
 * 2 on bad arguments, a bad URL included.
 */
#define _POSIX_C_SOURCE 200809L /* getopt, clock_gettime */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <moor.h>

struct msg {
    char *data;
    size_t len;
};

struct run {
    struct moor_loop *loop;
    struct moor_client *cl;
    struct msg *msgs;
    int n, sent, got, binary, hex, opened, code;
    char why[128];
    /* The watchdog thread: stops the loop at the deadline (-t). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, fired;
    struct timespec deadline;
};

/* Sends until all are out or moor reports backpressure; on_drain calls
 * again. The connection is a 1:1 stream, so nothing is dropped. */
static void send_more(struct moor_ws *ws, struct run *r)
{
    while (r->sent < r->n) {
        struct msg *m = &r->msgs[r->sent++];
        enum moor_send_result s = moor_ws_send(ws, m->data, m->len, !r->binary);

        if (s == MOOR_SEND_DROPPED) {
            snprintf(r->why, sizeof(r->why), "message %d dropped", r->sent);
            moor_ws_close(ws, 1011, NULL);
            return;
        }
        if (s == MOOR_SEND_BACKPRESSURE)
            return;
    }
}

static void on_open(struct moor_ws *ws, void *arg)
{
    struct run *r = moor_ws_user(ws);

    (void)arg;
    r->opened = 1;
    if (r->n == 0)
        moor_ws_close(ws, 1000, NULL);
    else
        send_more(ws, r);
}

static void on_drain(struct moor_ws *ws, void *arg)
{
    (void)arg;
    send_more(ws, moor_ws_user(ws));
}

static void on_message(struct moor_ws *ws, const void *data, size_t len,
                       int is_text, void *arg)
{
    struct run *r = moor_ws_user(ws);
    const unsigned char *p = data;

    (void)arg;
    if (r->hex) {
        printf("%s ", is_text ? "text" : "binary");
        for (size_t i = 0; i < len; i++)
            printf("%02x", p[i]);
    } else {
        fwrite(data, 1, len, stdout);
    }
    putchar('\n');
    if (++r->got == r->n)
        moor_ws_close(ws, 1000, NULL);
}

static void on_close(struct moor_ws *ws, int code, void *arg)
{
    struct run *r = moor_ws_user(ws);
    const char *e = moor_ws_error(ws); /* valid only during this call */

    (void)arg;
    r->code = code;
    if (!r->why[0])
        snprintf(r->why, sizeof(r->why), "%s", e ? e : "?");
}

static void *watchdog(void *arg)
{
    struct run *r = arg;

    pthread_mutex_lock(&r->mu);
    while (!r->done && !r->fired)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &r->deadline) == ETIMEDOUT)
            r->fired = 1;
    if (!r->done)
        moor_loop_stop(r->loop); /* allowed from any thread */
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (p = malloc(n + 1)) &&
        fread(p, 1, n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    *len = p ? (size_t)n : 0;
    fclose(f);
    return p;
}

static int usage(void)
{
    fprintf(stderr, "usage: ws_client [-b] [-f] [-x] [-t SECONDS] "
                    "[-c SECONDS] [-a CAFILE] [-k] URL [MESSAGE...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static struct run r = {.mu = PTHREAD_MUTEX_INITIALIZER,
                           .cv = PTHREAD_COND_INITIALIZER};
    struct moor_ws_handlers h = {
        .on_open = on_open,
        .on_message = on_message,
        .on_drain = on_drain,
        .on_close = on_close,
        .pause_reading_on_backpressure = 1, /* request/response */
    };
    struct moor_client_options o;
    double total = 10, conn = 5;
    int c, files = 0, rc = 1;
    long long ns;
    pthread_t dog;
    struct moor_error err;
    char *end;
    const char *ca = NULL;
    int insecure = 0;

    while ((c = getopt(argc, argv, "bfxt:c:a:k")) != -1) {
        if (c == 'a') {
            ca = optarg;
        } else if (c == 'k') {
            insecure = 1;
        } else if (c == 'b' || c == 'f' || c == 'x') {
            *(c == 'b' ? &r.binary : c == 'f' ? &files : &r.hex) = 1;
        } else if (c == 't' || c == 'c') {
            double v = strtod(optarg, &end);
            if (*end || end == optarg || !(v > 0 && v < 86400))
                return usage();
            *(c == 't' ? &total : &conn) = v;
        } else {
            return usage();
        }
    }
    if (optind >= argc)
        return usage();
    r.n = argc - optind - 1;
    r.msgs = calloc(r.n + 1, sizeof(*r.msgs));
    if (!r.msgs)
        return 1;
    for (int i = 0; i < r.n; i++) {
        char *arg = argv[optind + 1 + i];

        if (!files) {
            r.msgs[i] = (struct msg){arg, strlen(arg)};
        } else if (!(r.msgs[i].data = read_file(arg, &r.msgs[i].len))) {
            fprintf(stderr, "ws_client: cannot read %s\n", arg);
            goto out_free;
        }
    }

    moor_client_options_init(&o);
    o.connect_timeout_ms = (uint32_t)((conn < total ? conn : total) * 1000);
    o.tls_ca = ca;
    o.insecure = insecure;
    r.loop = moor_loop_new(NULL, &err);
    if (!r.loop) {
        fprintf(stderr, "ws_client: %s\n", err.message);
        goto out_free;
    }
    r.cl = moor_client_new(r.loop, &o, &err);
    if (!r.cl) {
        fprintf(stderr, "ws_client: %s\n", err.message);
        goto out_loop;
    }
    rc = moor_client_connect(r.cl, argv[optind], &h, &r, &err);
    if (rc < 0) {
        fprintf(stderr, "ws_client: %s\n",
                err.message[0] ? err.message : moor_strerror(rc));
        /* A bad URL is a bad argument. */
        rc = rc == MOOR_EURL || rc == -EINVAL ? 2 : 1;
        goto out_client;
    }
    clock_gettime(CLOCK_REALTIME, &r.deadline); /* timedwait's clock */
    ns = r.deadline.tv_nsec + (long long)(total * 1e9);
    r.deadline.tv_sec += ns / 1000000000;
    r.deadline.tv_nsec = ns % 1000000000;
    if (pthread_create(&dog, NULL, watchdog, &r) != 0) {
        fprintf(stderr, "ws_client: cannot start the watchdog thread\n");
        rc = 1;
        goto out_client;
    }
    rc = moor_loop_run(r.loop); /* until no connection is left, or stop */
    pthread_mutex_lock(&r.mu);
    r.done = 1;
    pthread_cond_signal(&r.cv);
    pthread_mutex_unlock(&r.mu);
    pthread_join(dog, NULL);
    if (rc < 0)
        snprintf(r.why, sizeof(r.why), "moor_loop_run: %s", moor_strerror(rc));
    else if (r.fired)
        snprintf(r.why, sizeof(r.why), "timed out after %g s", total);
    moor_client_free(r.cl); /* on_close (1006) for a conn still open */
    moor_loop_free(r.loop);
    rc = !(r.opened && r.got == r.n && r.code == 1000);
    if (rc && r.opened)
        fprintf(stderr, "ws_client: %s (code %d, %d of %d replies)\n", r.why,
                r.code, r.got, r.n);
    else if (rc)
        fprintf(stderr, "ws_client: %s\n", r.why);
    goto out_free;

out_client:
    moor_client_free(r.cl);
out_loop:
    moor_loop_free(r.loop);
out_free:
    for (int i = 0; files && i < r.n; i++)
        free(r.msgs[i].data);
    free(r.msgs);
    if (moor_mem_live_bytes() != 0) {
        fprintf(stderr, "ws_client: BUG: moor still holds %lld bytes\n",
                (long long)moor_mem_live_bytes());
        return 1;
    }
    return rc;
}
