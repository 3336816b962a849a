/*
 * fuzz_conn.c - libFuzzer target that drives whole connections through
 * the real routes of `moor serve`: conn + http_server + ws_server + push
 * + the framed TCP protocol, built by serve_new() exactly as the command
 * builds them (src/serve.h), so /healthz, /metrics, /debug/mem,
 * /debug/conns, /echo, /sub/..., /pub/... (WebSocket, SSE and POST) and
 * the --tcp-listen protocol are all in reach.
 *
 * Each input opens 1-3 client connections over AF_UNIX socketpairs whose
 * server end is handed to http_server_accept() or push_tcp_accept(), then
 * plays a script of writes (split where the input says), loop iterations,
 * half-closes, closes, reconnects and read stalls. Between operations the
 * loop runs once without waiting, and every client that reads drains what
 * the server sent (so its queues empty). Pub/sub between the connections
 * of one input is real: a publisher and a subscriber meet on a channel.
 *
 * Input format (fuzz/corpus/make_conn_seeds.py writes seeds in it):
 *   byte 0   bits 0-1: connections - 1 (3 means 3); bits 2-4: conn i
 *            speaks the framed TCP protocol if bit 2+i is set, else HTTP;
 *            bit 5: small socket buffers (4 KiB), so writes come back
 *            short and queues fill; bits 6-7: which server, 0 (or 3)
 *            serve_argv, 1 drop_argv (drop-oldest, a soft queue limit,
 *            few channels), 2 rate_argv (paced publishers).
 *   then ops, each a control byte c: conn = (c & 3) % connections,
 *   op = (c >> 2) & 7:
 *     0  write the next L bytes, L = next byte (0 means 256)
 *     1  write the next L bytes, L = next two bytes, little-endian
 *     2  write the rest of the input
 *     3  run the loop 1 + (next byte % 16) more times
 *     4  shutdown(SHUT_WR) the client end (half-close)
 *     5  close the client end
 *     6  stop / resume reading the client end (a stalled reader)
 *     7  reconnect: close the client end if open and open a new
 *        connection, framed TCP if bit 5 of c is set, else HTTP
 *
 * Checked after each input: every client end closed, the loop runs until
 * no conn is left (one still open after FINAL_STEPS iterations aborts:
 * its peer is gone), and live bytes (mem_live_bytes(MEM_ALL)) must equal
 * what they were before the input. A leak aborts, with the live bytes by
 * tag (and by allocation site under FUZZ_CONN_TRACE=1). ASan and UBSan
 * catch the rest (use after free, double free, overflow).
 * FUZZ_CONN_SHOW=1 prints what the server sends (to check a seed).
 *
 * Bounds: inputs over MAX_INPUT bytes are ignored; an input gets at most
 * MAX_STEPS loop iterations. Deadlines use the real clock and an input
 * runs for milliseconds, so they rarely fire: timeouts are out of reach
 * here (the integration tests cover them).
 *
 * Must not: listen anywhere but 127.0.0.1 port 0 (serve_new's listeners,
 * never accepted from), or keep a connection from one input to the next.
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
#include <sys/socket.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "push.h"
#include "serve.h"
#include "server.h"
#include "check.h"

#define MAX_INPUT (64 * 1024)
#define MAX_STEPS 2048
#define MAX_CLIENTS 3
#define FINAL_STEPS 256

struct client {
    int fd;       /* our end, -1 when closed */
    bool reading; /* drain what the server sends */
};

/* Built once each, like the process `moor serve` is: the fuzzer then
 * runs every input against the same three servers (one per flag set). */
struct instance {
    struct moor_config cfg;
    struct serve *sv;
};
static struct instance inst[3];

/* The input's server. */
static struct moor_config *cfg;
static struct serve *sv;
static struct loop *lp;
static struct conn_set *set;

static struct client clients[MAX_CLIENTS];
static unsigned steps;
static bool small_buffers;
static bool show; /* FUZZ_CONN_SHOW=1: what the server sends, to stderr */

/* The flags: as `moor serve` defaults, with small limits so that
 * over-the-limit paths (413, 1009, frames over max_message, full queues)
 * are reachable with inputs of a few KiB. */
#define BASE_FLAGS                                                             \
    "--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--log-level",   \
        "off", "--max-body", "4KiB", "--max-message", "4KiB", "--queue-limit", \
        "16KiB"
static char *serve_argv[] = {BASE_FLAGS};

/* The other servers (bits 6-7 of byte 0): the same flags plus, for 1,
 * the other slow-subscriber policy, a soft queue limit and few channels
 * (drop-oldest, "dropped" notices, channel limits); for 2, paced
 * publishers (rate pauses). */
static char *drop_argv[] = {
    BASE_FLAGS, "--slow-policy",  "drop-oldest", "--queue-soft-limit",
    "4KiB",     "--max-channels", "6",           "--max-channels-per-conn",
    "3",
};
static char *rate_argv[] = {
    BASE_FLAGS, "--rate", "20", "--burst", "4", "--byte-rate", "8KiB",
};

static void drain(struct client *cl)
{
    uint8_t buf[16384];

    if (cl->fd < 0 || !cl->reading)
        return;
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(cl->fd, buf, sizeof(buf));

        if (n <= 0)
            return;
        if (show)
            fprintf(stderr, "[%d] %.*s\n", (int)(cl - clients), (int)n,
                    (const char *)buf);
    }
}

static void step(void)
{
    CHECK(loop_run_once(lp, 0) == 0);
    steps++;
    for (int i = 0; i < MAX_CLIENTS; i++)
        drain(&clients[i]);
}

static void client_close(struct client *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
}

static void client_open(struct client *cl, bool tcp)
{
    int sp[2];

    client_close(cl);
    cl->reading = true;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                     sp) == 0);
    if (small_buffers) {
        int sz = 4096;

        setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(sp[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    cl->fd = sp[0];
    /* Both take the fd, and close it themselves on failure. */
    if (tcp)
        push_tcp_accept(serve_push(sv), sp[1], NULL, cfg->handshake_timeout_ms);
    else
        http_server_accept(server_http(serve_server(sv)), sp[1], NULL);
}

/* Writes p[0..n) to the client's end; what the socket will not take
 * after a few loop iterations is dropped (the server stopped reading). */
static void client_write(struct client *cl, const uint8_t *p, size_t n)
{
    int stalls = 0;

    while (n > 0 && cl->fd >= 0 && steps < MAX_STEPS) {
        /* MSG_NOSIGNAL: the library no longer ignores SIGPIPE for the
         * process, and a server that closed its end must not kill us. */
        ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);

        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return; /* EPIPE: the server closed its end */
        if (++stalls > 8)
            return;
        step();
    }
}

static void close_rest(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

static void report_leak(int64_t base, int64_t live)
{
    fprintf(stderr, "fuzz_conn: live bytes %lld after the input, %lld before\n",
            (long long)live, (long long)base);
    for (int t = 0; t < MEM_TAG_COUNT; t++)
        fprintf(stderr, "  %-8s %lld\n", mem_tag_name((enum mem_tag)t),
                (long long)mem_live_bytes((enum mem_tag)t));
    if (mem_trace_enabled())
        mem_trace_dump(stderr);
    else
        fprintf(stderr, "fuzz_conn: run with FUZZ_CONN_TRACE=1 for the "
                        "allocation sites\n");
}

/* Closes every client end and runs the loop until the server has let go
 * of every conn. A conn still open after FINAL_STEPS iterations with its
 * peer gone would hold its memory until a deadline: that aborts, unless
 * FUZZ_CONN_LENIENT=1, which closes it as shutdown would (and the memory
 * check still holds). */
static void finish(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        client_close(&clients[i]);
    for (int i = 0; i < FINAL_STEPS && set->stats.open > 0; i++)
        step();
    if (set->stats.open > 0) {
        if (!getenv("FUZZ_CONN_LENIENT")) {
            fprintf(stderr,
                    "fuzz_conn: %lld conns left after their peers "
                    "closed\n",
                    (long long)set->stats.open);
            abort();
        }
        conn_set_each(set, close_rest, NULL);
    }
    /* Two more: closed conns are freed at the end of an iteration, and a
     * fan-out queued by the last one runs in the next. */
    step();
    step();
    CHECK(set->stats.open == 0);
}

/* One input's worth of traffic, so that what stays allocated for the
 * life of the server (pool slabs, the channel table) exists before the
 * first baseline. */
static void warm_up(void)
{
    static const uint8_t sub[] = "\0\0\0\5SUB a";
    static const uint8_t pub[] = "\0\0\0\6PUB a\0\0\0\2hi";
    static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    client_open(&clients[0], true);
    client_open(&clients[1], true);
    client_open(&clients[2], false);
    client_write(&clients[0], sub, sizeof(sub) - 1);
    step();
    client_write(&clients[1], pub, sizeof(pub) - 1);
    client_write(&clients[2], (const uint8_t *)get, sizeof(get) - 1);
    for (int i = 0; i < 4; i++)
        step();
    finish();
}

static void use(struct instance *in)
{
    cfg = &in->cfg;
    sv = in->sv;
    lp = server_loop(serve_server(sv));
    set = server_conns(serve_server(sv));
}

static void start(struct instance *in, int argc, char **argv)
{
    char err[256];

    CHECK(config_parse(&in->cfg, argc, argv, NULL, stdout, err, sizeof(err)) ==
          0);
    in->sv = serve_new(&in->cfg);
    CHECK(in->sv != NULL);
    /* Process-wide, as serve_main sets it; both flag sets agree. */
    mem_set_budget(in->cfg.memory_limit, 90);
    use(in);
    warm_up();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    show = getenv("FUZZ_CONN_SHOW") != NULL;
    if (getenv("FUZZ_CONN_TRACE"))
        mem_trace_enable();
    log_set_level(LOG_OFF);
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    start(&inst[0], (int)(sizeof(serve_argv) / sizeof(serve_argv[0])),
          serve_argv);
    start(&inst[1], (int)(sizeof(drop_argv) / sizeof(drop_argv[0])), drop_argv);
    start(&inst[2], (int)(sizeof(rate_argv) / sizeof(rate_argv[0])), rate_argv);
    return 0;
}

static void run_ops(const uint8_t *p, size_t n, int nclients)
{
    size_t i = 0;

    while (i < n && steps < MAX_STEPS) {
        uint8_t c = p[i++];
        struct client *cl = &clients[(c & 3) % nclients];
        size_t len;

        switch ((c >> 2) & 7) {
        case 0:
        case 1:
        case 2:
            len = script_len(p, n, &i, (c >> 2) & 7);
            break;
        case 3: {
            int k = 1 + (i < n ? p[i++] % 16 : 0);

            while (k-- > 0 && steps < MAX_STEPS)
                step();
            continue;
        }
        case 4:
            if (cl->fd >= 0)
                shutdown(cl->fd, SHUT_WR);
            step();
            continue;
        case 5:
            client_close(cl);
            step();
            continue;
        case 6:
            cl->reading = !cl->reading;
            step();
            continue;
        default:
            client_open(cl, (c >> 5) & 1);
            step();
            continue;
        }
        if (len > n - i)
            len = n - i;
        client_write(cl, p + i, len);
        i += len;
        step();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t base, live;
    int nclients;

    if (size < 1 || size > MAX_INPUT)
        return 0;
    base = mem_live_bytes(MEM_ALL);
    use(&inst[(data[0] >> 6) % 3]);
    steps = 0;
    small_buffers = data[0] & 0x20;
    nclients = (data[0] & 3) == 3 ? 3 : (data[0] & 3) + 1;
    for (int i = 0; i < nclients; i++)
        client_open(&clients[i], (data[0] >> (2 + i)) & 1);
    step();
    run_ops(data + 1, size - 1, nclients);
    finish();
    live = mem_live_bytes(MEM_ALL);
    if (live != base) {
        report_leak(base, live);
        abort();
    }
    return 0;
}
