/*
 * push_gateway.c - the pub/sub gateway of `moor serve`, built from moor.h.
 *
 *   cc push_gateway.c $(pkg-config --cflags --libs libmoor) -o push_gateway
 *   ./push_gateway --listen 127.0.0.1:8080 --tcp-listen 127.0.0.1:9090
 *
 * GET /sub/a,b (WebSocket, or SSE with Accept: text/event-stream), GET
 * /pub/ch (WebSocket publisher), POST /pub/ch, framed TCP on --tcp-listen,
 * /healthz, /metrics, /debug/mem and /debug/conns. Other flags are a few of
 * `moor serve`'s, same names and units (--queue-limit 256KiB, --sse-heartbeat
 * 500ms, --slow-policy drop-oldest, ...). It prints "push_gateway:
 * http://HOST:PORT [tcp://HOST:PORT]" when ready. SIGINT or SIGTERM drains
 * (WebSockets get 1001); it exits 0 once every byte moor held is back.
 *
 * The program owns the loop: it polls moor_loop_fd() beside a signalfd of
 * its own and calls moor_loop_run_once(); moor itself touches no signal.
 */
#define _GNU_SOURCE /* signalfd */
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <moor.h>

static struct moor_server_options so;
static struct moor_pubsub_options po;

#define S(f) &so.f, sizeof(so.f)
#define P(f) &po.f, sizeof(po.f)
static const struct flag {
    const char *name;
    void *field;
    size_t size;
    char unit; /* 'n' number, 'b' bytes (64KiB), 't' duration (250ms) */
} flags[] = {
    {"max-conns", S(max_conns), 'n'},
    {"accept-rate", S(accept_rate), 'n'},
    {"max-message", S(max_message), 'b'},
    {"max-body", S(max_body), 'b'},
    {"queue-limit", S(queue_limit), 'b'},
    {"header-timeout", S(header_timeout_ms), 't'},
    {"close-timeout", S(close_timeout_ms), 't'},
    {"shutdown-timeout", S(shutdown_timeout_ms), 't'},
    {"max-channels", P(max_channels), 'n'},
    {"max-channels-per-conn", P(max_channels_per_conn), 'n'},
    {"queue-soft-limit", P(queue_soft_limit), 'b'},
    {"queue-soft-time", P(queue_soft_time_ms), 't'},
    {"rate", P(rate), 'n'},
    {"burst", P(burst), 'n'},
    {"sse-heartbeat", P(heartbeat_ms), 't'},
    {"sse-retry", P(sse_retry_ms), 't'},
};

/* "42" ('n'), "512B", "64KiB", "1MiB" ('b'), "300ms", "2s", "1m" ('t'). */
static int set_flag(const struct flag *f, const char *v)
{
    char *e;
    unsigned long long n = strtoull(v, &e, 10), mul = 0;

    if (!*e || (f->unit == 'b' && !strcmp(e, "B")) ||
        (f->unit == 't' && !strcmp(e, "ms")))
        mul = 1;
    else if (f->unit == 'b')
        mul = !strcmp(e, "KiB") ? 1 << 10 : !strcmp(e, "MiB") ? 1 << 20 : 0;
    else if (f->unit == 't')
        mul = !strcmp(e, "s") ? 1000 : !strcmp(e, "m") ? 60000 : 0;
    if (e == v || !mul || (f->size == 4 && n * mul > UINT32_MAX))
        return -1;
    if (f->size == 4)
        *(uint32_t *)f->field = (uint32_t)(n * mul);
    else
        *(uint64_t *)f->field = n * mul;
    return 0;
}

/* "host" of "host:port" or "[v6]:port", for the banner. */
static int host_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');

    return colon ? (int)(colon - addr) : 0;
}

static void healthz(struct moor_request *req, void *arg)
{
    (void)arg;
    moor_respond(req, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
}

static int parse_args(int argc, char **argv, const char **tcp)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *name = argv[i] + 2, *v = argv[i + 1];
        size_t k = 0;

        if (strncmp(argv[i], "--", 2) != 0)
            return -1;
        if (!strcmp(name, "listen"))
            so.listen = v;
        else if (!strcmp(name, "tcp-listen"))
            *tcp = v;
        else if (!strcmp(name, "allowed-origins"))
            so.allowed_origins = v;
        else if (!strcmp(name, "slow-policy") && !strcmp(v, "drop-oldest"))
            po.slow_policy = MOOR_SLOW_DROP_OLDEST;
        else if (!strcmp(name, "slow-policy") && !strcmp(v, "disconnect"))
            po.slow_policy = MOOR_SLOW_DISCONNECT;
        else {
            while (k < sizeof(flags) / sizeof(flags[0]) &&
                   strcmp(flags[k].name, name) != 0)
                k++;
            if (k == sizeof(flags) / sizeof(flags[0]) ||
                set_flag(&flags[k], v) < 0)
                return -1;
        }
    }
    return argc % 2 == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *tcp = NULL;
    struct moor_error err = {0};
    struct moor_loop *l = NULL;
    struct moor_server *s = NULL;
    struct moor_pubsub *ps = NULL;
    struct pollfd p[2];
    sigset_t sigs;
    int sfd, rc = 1;

    moor_server_options_init(&so);
    moor_pubsub_options_init(&po);
    so.listen = "127.0.0.1:8080";
    if (parse_args(argc, argv, &tcp) < 0) {
        fprintf(stderr,
                "usage: push_gateway [--listen ADDR] [--tcp-listen "
                "ADDR] [--FLAG VALUE]... (see the top of the source)\n");
        return 2;
    }
    /* SIGINT and SIGTERM arrive on a signalfd, read in our own poll. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("push_gateway: signalfd");
        return 1;
    }
    if (!(l = moor_loop_new(NULL, &err)) ||
        !(s = moor_server_new(l, &so, &err)) ||
        !(ps = moor_pubsub_new(s, &po, &err)) ||
        (tcp && moor_pubsub_listen_tcp(ps, tcp, NULL, &err) < 0) ||
        (err.code =
             moor_server_route(s, "GET,HEAD", "/healthz", healthz, NULL)) < 0 ||
        (err.code = moor_server_metrics(s, "/metrics", s)) < 0 ||
        (err.code = moor_server_debug(s, "/debug", s)) < 0) {
        fprintf(stderr, "push_gateway: %s\n",
                err.message[0] ? err.message : moor_strerror(err.code));
        goto out;
    }
    printf("push_gateway: http://%.*s:%d", host_len(so.listen), so.listen,
           moor_server_port(s));
    if (tcp)
        printf(" tcp://%.*s:%d", host_len(tcp), tcp,
               moor_pubsub_tcp_port(ps, 0));
    printf("\n");
    fflush(stdout);

    p[0] = (struct pollfd){.fd = moor_loop_fd(l), .events = POLLIN};
    p[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
    do {
        struct signalfd_siginfo si;

        poll(p, 2, moor_loop_timeout(l));
        if ((p[1].revents & POLLIN) && read(sfd, &si, sizeof(si)) > 0)
            moor_server_stop(s); /* drains: run_once returns 0 when done */
    } while ((rc = moor_loop_run_once(l, 0)) > 0);
out:
    if (s)
        moor_server_free(s); /* the gateway goes with its server */
    if (l)
        moor_loop_free(l);
    close(sfd);
    fprintf(stderr, "push_gateway: msg=\"shutdown complete\" live_bytes=%lld\n",
            (long long)moor_mem_live_bytes());
    return rc != 0 || moor_mem_live_bytes() != 0;
}
