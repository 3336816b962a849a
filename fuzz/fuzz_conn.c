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
 * Input format (fuzz/corpus/make_conn_seeds.py and, for server 3,
 * make_auth_seeds.py write seeds in it):
 *   byte 0   bits 0-1: connections - 1 (3 means 3); bits 2-4: conn i
 *            speaks the framed TCP protocol if bit 2+i is set, else HTTP;
 *            bit 5: small socket buffers (4 KiB), so writes come back
 *            short and queues fill; bits 6-7: which server, 0 serve_argv,
 *            1 drop_argv (drop-oldest, a soft queue limit, few channels),
 *            2 rate_argv (paced publishers), 3 auth_argv (--auth jwt with
 *            the fixed secret FUZZ_SECRET and --auth-cookie moor_token).
 *   then ops, each a control byte c: conn = (c & 3) % connections,
 *   op = (c >> 2) & 7:
 *     0  write the next L bytes, L = next byte (0 means 256)
 *     1  write the next L bytes, L = next two bytes, little-endian
 *     2  write the rest of the input
 *     3  run the loop 1 + (next byte % 16) more times; if that byte's
 *        high nibble j is not 0, the clock first moves ADVANCE_MS[j]
 *        forward (at most MAX_ADVANCE_MS an input)
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
 * With --auth jwt (server 3), also checked after every iteration: a conn
 * that is a subscriber or a publisher, or has a token session, must have
 * been sent a token that this file finds signed with FUZZ_SECRET
 * (HS256/384/512, checked with OpenSSL's HMAC, not with jwt.c) among the
 * bytes written to it; an input that sent no such token on any conn
 * publishes nothing (pubsub's published count stays). At exit every
 * server is freed, and the auth tag's live bytes, and all live bytes,
 * must be 0.
 *
 * The clock: moor's sources are built with clock_gettime renamed
 * fuzz_clock_gettime (scripts/fuzz.sh), defined here. CLOCK_MONOTONIC is
 * the real clock plus every advance so far (it never goes back); the
 * wall clock starts every input at FAKE_EPOCH_S and moves only when the
 * script advances it, so a seed's token with a near exp expires at the
 * same point of every run (and tokens that say exp 2100 stay valid).
 * Advances make the deadlines (header, idle, heartbeats, pings, token
 * expiry) reachable.
 *
 * Bounds: inputs over MAX_INPUT bytes are ignored; an input gets at most
 * MAX_STEPS loop iterations and MAX_ADVANCE_MS of clock advances.
 *
 * Must not: listen anywhere but 127.0.0.1 port 0 (serve_new's listeners,
 * never accepted from), keep a connection from one input to the next, or
 * leave a file behind (the secret's, in /tmp, goes once it is read).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "pubsub.h"
#include "push.h"
#include "serve.h"
#include "server.h"
#include "check.h"

#undef MAX_INPUT /* <limits.h>'s (POSIX), by way of OpenSSL's headers */
#define MAX_INPUT (64 * 1024)
#define MAX_STEPS 2048
#define MAX_CLIENTS 3
#define FINAL_STEPS 256
/* 2030-01-01T00:00:00Z: the wall clock at the start of every input. */
#define FAKE_EPOCH_S 1893456000
#define MAX_ADVANCE_MS (10 * 60 * 1000)

/* The HS256/384/512 secret of the --auth jwt server (at least 32 bytes);
 * fuzz/corpus/make_auth_seeds.py signs its tokens with it. */
#define FUZZ_SECRET "moor fuzz_conn secret, not a secret at all 0123"

/* What the clock moves by (op 3's high nibble): a wheel tick up to two
 * minutes, past every default deadline and a seed token's expiry. */
static const uint32_t ADVANCE_MS[16] = {
    0,    16,    50,    100,   500,   1000,  2000,  5000,
    9000, 10000, 15000, 16000, 30000, 35000, 60000, 120000,
};

/* The bytes written to one server conn in this input (the conn set's id
 * of the conn that took them), for the token check. */
struct sent {
    uint64_t id; /* 0: the accept failed */
    int fd;      /* the server's end (its number may be reused later) */
    uint8_t *p;
    size_t len, cap;
    size_t scanned; /* token found in p[0..scanned)? */
    bool token;     /* a token signed with FUZZ_SECRET is in it */
};

struct client {
    int fd;       /* our end, -1 when closed */
    bool reading; /* drain what the server sends */
    int sent;     /* index into sents, -1 none */
};

/* Built once each, like the process `moor serve` is: the fuzzer then
 * runs every input against the same three servers (one per flag set). */
struct instance {
    struct moor_config cfg;
    struct serve *sv;
};
static struct instance inst[4];

/* The input's server. */
static struct moor_config *cfg;
static struct serve *sv;
static struct loop *lp;
static struct conn_set *set;

static struct client clients[MAX_CLIENTS];
static unsigned steps;
static bool small_buffers;
static bool show; /* FUZZ_CONN_SHOW=1: what the server sends, to stderr */

/* The clock (see the top): real monotonic + mono_shift_ms; the wall clock
 * FAKE_EPOCH_S + wall_ms. */
static uint64_t mono_shift_ms, wall_ms, advanced_ms;

/* The conns of this input and what was written to each (auth checks). */
static struct sent *sents;
static size_t n_sents, cap_sents;
static bool auth_input; /* the input runs on the --auth jwt server */

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
 * (drop-oldest, "dropped" notices, channel limits) and channel history
 * (ids, since= / Last-Event-ID replays, reset notices); for 2, paced
 * publishers (rate pauses). */
#define HISTORY_TTL "30s"
#define HISTORY_TTL_MS 30000
static char *drop_argv[] = {
    BASE_FLAGS,  "--slow-policy",  "drop-oldest", "--queue-soft-limit",
    "4KiB",      "--max-channels", "6",           "--max-channels-per-conn",
    "3",         "--history-size", "8",           "--history-ttl",
    HISTORY_TTL, "--recovery-max", "4",
};
static char *rate_argv[] = {
    BASE_FLAGS, "--rate", "20", "--burst", "4", "--byte-rate", "8KiB",
};
/* 3: --auth jwt, keyed by FUZZ_SECRET (written to a file at start), the
 * cookie too, a token limit small enough to pass (1 KiB). The default
 * leeway (5 s) stays, so an expiry is exp + 5 s. */
static char secret_path[64];
static char *auth_argv[] = {
    BASE_FLAGS,  "--auth",        "jwt",        "--jwt-secret-file",
    secret_path, "--auth-cookie", "moor_token", "--max-token-bytes",
    "1KiB",
};

/* moor's clock (its sources call this for clock_gettime, see the top);
 * this file is built with the same -D, so the real one is named again. */
#undef clock_gettime
int clock_gettime(clockid_t id, struct timespec *ts);
int fuzz_clock_gettime(clockid_t id, struct timespec *ts);
int fuzz_clock_gettime(clockid_t id, struct timespec *ts)
{
    uint64_t ms;

    if (id == CLOCK_REALTIME) {
        ms = (uint64_t)FAKE_EPOCH_S * 1000u + wall_ms;
        ts->tv_sec = (time_t)(ms / 1000u);
        ts->tv_nsec = (long)(ms % 1000u) * 1000000L;
        return 0;
    }
    if (clock_gettime(id, ts) != 0)
        return -1;
    ms = mono_shift_ms;
    ts->tv_sec += (time_t)(ms / 1000u);
    ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
    return 0;
}

static void advance(uint32_t ms)
{
    if (advanced_ms + ms > MAX_ADVANCE_MS)
        return;
    advanced_ms += ms;
    mono_shift_ms += ms;
    wall_ms += ms;
}

/* ---- the token check (--auth jwt) ----------------------------------------
 * Independent of jwt.c: a token is a run of base64url characters with
 * two dots (the bytes around it are none of those wherever moor takes one
 * from: "Bearer ", "token=", "moor_token=", "AUTH " before; CR, space,
 * '&', ';' or a frame's end after), whose third part decodes to the HMAC
 * of the first two with FUZZ_SECRET. Claims are not looked at: a token
 * signed with the secret is necessary, not sufficient. */

static int b64url(uint8_t ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

/* Whether p[0..n) (base64url, no padding) decodes to mac[0..m). */
static bool b64url_equals(const uint8_t *p, size_t n, const uint8_t *mac,
                          size_t m)
{
    uint8_t out[96];
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4 == 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        int v = b64url(p[i]);

        if (v < 0)
            return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    return k == m && memcmp(out, mac, m) == 0;
}

static bool signed_token(const uint8_t *p, size_t n)
{
    static const char *mds[] = {"SHA256", "SHA384", "SHA512"};
    const uint8_t *dot1 = memchr(p, '.', n), *dot2;
    size_t signed_len;

    if (!dot1)
        return false;
    dot2 = memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - p));
    if (!dot2 || memchr(dot2 + 1, '.', n - (size_t)(dot2 + 1 - p)))
        return false;
    signed_len = (size_t)(dot2 - p);
    for (size_t i = 0; i < 3; i++) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned m = 0;
        const EVP_MD *md = EVP_get_digestbyname(mds[i]);

        if (md &&
            HMAC(md, FUZZ_SECRET, (int)(sizeof(FUZZ_SECRET) - 1), p, signed_len,
                 mac, &m) &&
            b64url_equals(dot2 + 1, n - signed_len - 1, mac, m))
            return true;
    }
    return false;
}

static bool token_char(uint8_t ch)
{
    return ch == '.' || b64url(ch) >= 0;
}

/* Whether a signed token is among the bytes sent to s (a run cut by the
 * end of what was scanned is scanned again when more comes). */
static bool sent_token(struct sent *s)
{
    size_t i = s->scanned;

    while (!s->token && i < s->len) {
        size_t j = i;

        while (j < s->len && token_char(s->p[j]))
            j++;
        if (j == s->len) { /* the run may go on */
            s->token = signed_token(s->p + i, j - i);
            break;
        }
        if (j > i && signed_token(s->p + i, j - i))
            s->token = true;
        i = j + 1;
    }
    if (!s->token)
        s->scanned = i < s->len ? i : s->len;
    return s->token;
}

static struct sent *sent_of(uint64_t id)
{
    for (size_t i = 0; id && i < n_sents; i++)
        if (sents[i].id == id)
            return &sents[i];
    return NULL;
}

static int sent_new(uint64_t id, int fd)
{
    if (n_sents == cap_sents) {
        size_t n = cap_sents ? cap_sents * 2 : 16;
        struct sent *ns = realloc(sents, n * sizeof(*ns));

        CHECK(ns != NULL);
        sents = ns;
        cap_sents = n;
    }
    sents[n_sents] = (struct sent){.id = id, .fd = fd};
    return (int)n_sents++;
}

static void sent_add(struct client *cl, const uint8_t *p, size_t n)
{
    struct sent *s;

    if (cl->sent < 0)
        return;
    s = &sents[cl->sent];
    if (s->len + n > s->cap) {
        size_t c = s->cap ? s->cap : 256;
        uint8_t *np;

        while (c < s->len + n)
            c *= 2;
        np = realloc(s->p, c);
        CHECK(np != NULL);
        s->p = np;
        s->cap = c;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

static void sents_reset(void)
{
    for (size_t i = 0; i < n_sents; i++)
        free(sents[i].p);
    n_sents = 0;
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].sent = -1;
}

static bool any_token_sent(void)
{
    for (size_t i = 0; i < n_sents; i++)
        if (sent_token(&sents[i]))
            return true;
    return false;
}

/* A conn of the auth server that subscribes, publishes or has a token
 * session was sent a signed token. */
static void check_conn(struct conn *c, void *arg)
{
    char channels[256];
    const char *sub = NULL;
    const char *role = push_describe(arg, c, channels, sizeof(channels), &sub);
    struct sent *s;

    if (!sub && !(role[0] && channels[0]))
        return;
    s = sent_of(conn_id(c));
    if (!s || !sent_token(s)) {
        fprintf(stderr,
                "fuzz_conn: conn %llu is a %s of \"%s\" (token subject %s) "
                "without a token signed with the secret\n",
                conn_id(c), role[0] ? role : "conn", channels,
                sub ? sub : "none");
        abort();
    }
}

/* check_conn() on every conn of the input: each sits at the number of the
 * fd it was accepted on (or another conn does, which is checked against
 * its own bytes). Not conn_set_each(): it walks the whole fd table, and
 * this runs after every iteration. */
static void check_conns(void)
{
    for (size_t i = 0; i < n_sents; i++) {
        int fd = sents[i].fd;
        struct conn *c;

        if (fd < 0 || (uint32_t)fd >= set->by_fd_len)
            continue;
        c = set->by_fd[fd];
        if (c && !conn_is_closing(c))
            check_conn(c, serve_push(sv));
    }
}

static void drain(struct client *cl)
{
    uint8_t buf[16384];

    if (cl->fd < 0 || !cl->reading)
        return;
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(cl->fd, buf, sizeof(buf));

        if (n <= 0)
            return;
        if (show) { /* all of it: TCP frames hold NULs */
            fprintf(stderr, "[%d] ", (int)(cl - clients));
            fwrite(buf, 1, (size_t)n, stderr);
            fputc('\n', stderr);
        }
    }
}

static void step(void)
{
    CHECK(loop_run_once(lp, 0) == 0);
    steps++;
    for (int i = 0; i < MAX_CLIENTS; i++)
        drain(&clients[i]);
    if (auth_input)
        check_conns();
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
    uint64_t id;

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
    id = set->next_id;
    /* Both take the fd, and close it themselves on failure. */
    if (tcp)
        push_tcp_accept(serve_push(sv), sp[1], NULL, cfg->handshake_timeout_ms);
    else
        http_server_accept(server_http(serve_server(sv)), sp[1], NULL);
    /* The conn set numbers its conns in order: the new one is id. */
    cl->sent = sent_new(set->next_id > id ? id : 0, sp[1]);
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
            sent_add(cl, p, (size_t)w);
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
    /* Server 1 keeps what was published for --history-ttl: the clock
     * passes it, the history's timer frees every entry, and the live
     * bytes can be held to the baseline like everything else. */
    mono_shift_ms += HISTORY_TTL_MS + 1000;
    step();
    step();
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
    /* Process-wide, as serve_main sets it; the flag sets agree. */
    mem_set_budget(in->cfg.memory_limit, 90);
    use(in);
    warm_up();
}

/* At exit: every server freed, the --auth jwt one first (serve_free()
 * ends OpenSSL's process-wide state, which its keys still use), and the
 * auth tag's live bytes must be 0 (keys, session table, every server's
 * struct auth), and so must all live bytes. Their conns were all closed after
 * the last input. */
static void free_servers(void)
{
    serve_free(inst[3].sv);
    for (int i = 0; i < 3; i++)
        serve_free(inst[i].sv);
    memset(inst, 0, sizeof(inst));
    if (mem_live_bytes(MEM_AUTH) != 0 || mem_live_bytes(MEM_ALL) != 0) {
        fprintf(stderr, "fuzz_conn: the servers freed, ");
        report_leak(0, mem_live_bytes(MEM_ALL));
        abort();
    }
}

/* FUZZ_SECRET in a file for --jwt-secret-file; it is read at start (and
 * on SIGHUP, which nothing sends here), so it goes once the server is up. */
static void write_secret(void)
{
    int fd;

    snprintf(secret_path, sizeof(secret_path), "/tmp/fuzz_conn_secret.XXXXXX");
    fd = mkstemp(secret_path);
    CHECK(fd >= 0);
    CHECK(write(fd, FUZZ_SECRET, sizeof(FUZZ_SECRET) - 1) ==
          (ssize_t)(sizeof(FUZZ_SECRET) - 1));
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    show = getenv("FUZZ_CONN_SHOW") != NULL;
    if (getenv("FUZZ_CONN_TRACE"))
        mem_trace_enable();
    log_set_level(LOG_OFF);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        clients[i].fd = -1;
        clients[i].sent = -1;
    }
    start(&inst[0], (int)(sizeof(serve_argv) / sizeof(serve_argv[0])),
          serve_argv);
    start(&inst[1], (int)(sizeof(drop_argv) / sizeof(drop_argv[0])), drop_argv);
    start(&inst[2], (int)(sizeof(rate_argv) / sizeof(rate_argv[0])), rate_argv);
    write_secret();
    start(&inst[3], (int)(sizeof(auth_argv) / sizeof(auth_argv[0])), auth_argv);
    unlink(secret_path);
    sents_reset();
    atexit(free_servers);
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
            uint8_t b = i < n ? p[i++] : 0;
            int k = 1 + b % 16;

            advance(ADVANCE_MS[b >> 4]);
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
    uint64_t published;
    int nclients;

    if (size < 1 || size > MAX_INPUT)
        return 0;
    base = mem_live_bytes(MEM_ALL);
    use(&inst[data[0] >> 6]);
    auth_input = data[0] >> 6 == 3;
    published = pubsub_stats(push_pubsub(serve_push(sv)))->published;
    wall_ms = 0;
    advanced_ms = 0;
    steps = 0;
    small_buffers = data[0] & 0x20;
    nclients = (data[0] & 3) == 3 ? 3 : (data[0] & 3) + 1;
    for (int i = 0; i < nclients; i++)
        client_open(&clients[i], (data[0] >> (2 + i)) & 1);
    step();
    run_ops(data + 1, size - 1, nclients);
    finish();
    /* Without a signed token, nothing was published (POST /pub is
     * answered on its head, so it holds no conn to check). */
    if (auth_input && !any_token_sent())
        CHECK(pubsub_stats(push_pubsub(serve_push(sv)))->published ==
              published);
    sents_reset();
    auth_input = false;
    live = mem_live_bytes(MEM_ALL);
    if (live != base) {
        report_leak(base, live);
        abort();
    }
    return 0;
}
