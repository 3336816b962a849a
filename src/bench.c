/*
 * bench.c - `moor bench`: a WebSocket load generator and memory meter,
 * built on moor's own client (ws_client.h) and event loop.
 *
 * Modes. Each is a struct bench_mode: what it does once every connection
 * is open (start), at its own deadlines (on_timer), per message received
 * (on_message) and in the report. The driver around them is shared:
 *
 *   warm-up   one connection, one message echoed, closed: the server is
 *             there, and code it runs once (the handshake's SHA-1, a
 *             runtime's lazily built tables) is faulted in before any
 *             baseline is taken;
 *   settle    a short pause, so the warm-up connection is gone;
 *   connect   --conns connections, at most --parallel handshakes at once,
 *             bound round-robin to the --sources addresses, under
 *             --connect-timeout each and --timeout for the whole phase;
 *   run       the mode;
 *   close     a close handshake on every connection, bounded by the
 *             client's close timeout plus a second, then whatever is left
 *             is closed outright.
 *
 *   idle  reads the server's VmRSS (/proc/PID/status) and Pss and Private
 *         (/proc/PID/smaps_rollup) after the warm-up, once all are open,
 *         and after --hold; bytes per connection = growth / open conns.
 *   echo  keeps --inflight messages of --size bytes in flight on every
 *         connection (a new one goes out when one comes back), and after
 *         --warmup counts for --duration: messages/s and the round-trip
 *         latency of every message in a log-bucket histogram (hist.h).
 *   broadcast  --conns subscribers on --sub-url, one publisher on
 *         --pub-url (see "broadcast" below): deliveries/s and the
 *         publish-to-receive latency of every delivery.
 *   handshake  keeps --conns connections in their opening handshake: each
 *         one, as soon as it is open, is closed outright (no close
 *         handshake) and a new one takes its place; after --warmup counts
 *         for --duration: handshakes/s and the time of each (from the
 *         connect call to the validated 101: TCP, TLS for wss://, and the
 *         WebSocket upgrade). The connecting phase before it is only the
 *         ramp-up.
 *
 * A mode is a row of modes[], a bit (M_*) for the flags that apply to it,
 * and its hooks. A mode with a publisher (broadcast) changes the warm-up:
 * the publisher connection is opened beside the warm-up connection (a
 * subscriber) and publishes until the subscriber has received a message;
 * the publisher then stays open for the run.
 *
 * Keeps: every wait has a deadline; the bench exits non-zero with a
 * one-line reason when the server cannot be reached or connections fail;
 * all memory comes from mem.c and is allocated before the run (nothing
 * per message but what ws_send() itself allocates); no global mutable
 * state (everything is in struct bench).
 *
 * Latency is measured with CLOCK_MONOTONIC at send and at receive. Each
 * connection keeps the send times of its messages in flight in a ring of
 * --inflight slots: an echo server answers in order, and the first 8
 * bytes of each payload carry its sequence number, so an answer out of
 * order or of the wrong size is counted as a mismatch, not as a latency.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "bench.h"
#include "flags.h"
#include "conn.h"
#include "hist.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "procfs.h"
#include "tls.h"
#include "util.h"
#include "ws_client.h"
#include "ws_server.h"

/* fds the bench needs besides its connections: stdio, epoll, eventfd,
 * signalfd, the warm-up connection, /proc reads. */
#define FD_RESERVE 32u
/* Connections per source address that "auto" plans for: well under the
 * default ephemeral range (28,232 ports). */
#define AUTO_PER_SOURCE 20000u
#define AUTO_MIN_SOURCES 16u
#define MAX_REASONS 12
#define SETTLE_MS 300u
#define WARM_MSG_MAX 64u

/* ---- flags ------------------------------------------------------------- */

struct bench_opts {
    char url[512];     /* broadcast: --sub-url is copied here */
    char sub_url[512]; /* broadcast */
    char pub_url[512]; /* broadcast */
    char sources[256];
    uint32_t conns; /* 0 = the mode's default */
    uint32_t parallel;
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    uint32_t pid; /* 0 = find the process listening on the URL's port */
    uint32_t hold_ms;
    uint32_t inflight;
    uint64_t size;
    uint32_t duration_ms;
    uint32_t warmup_ms;
    uint32_t rate; /* broadcast: messages/s, 0 = throughput */
    bool json;
    char tls_ca[512]; /* wss://: trust these CAs, not the system store */
    bool insecure;    /* wss://: no certificate check at all */
    bool tls;         /* --tls: ws:// URLs are taken as wss:// */
};

enum bflag_kind { BF_STR, BF_UINT, BF_DURATION, BF_SIZE, BF_BOOL };

/* Which modes a flag applies to: bit i is modes[i]. */
#define M_IDLE (1u << 0)
#define M_ECHO (1u << 1)
#define M_BCAST (1u << 2)
#define M_HS (1u << 3)
#define M_ALL (M_IDLE | M_ECHO | M_BCAST | M_HS)

struct bflag {
    const char *name;
    enum bflag_kind kind;
    size_t off, len;
    const char *def; /* as --help shows it; NULL: the mode's (mode_default) */
    uint64_t min, max;
    unsigned modes;
    const char *arg;
    const char *help;
};

#define BFIELD(f)                                                              \
    .off = offsetof(struct bench_opts, f),                                     \
    .len = sizeof(((struct bench_opts *)0)->f)

static const struct bflag bflags[] = {
    {"url", BF_STR, BFIELD(url), "ws://127.0.0.1:8080/echo", 0, 0,
     M_IDLE | M_ECHO | M_HS, "URL",
     "the server's WebSocket endpoint, ws://HOST[:PORT][/PATH] or wss:// "
     "(TLS), HOST an IP address or localhost; it must echo what it "
     "receives"},
    {"sub-url", BF_STR, BFIELD(sub_url), "ws://127.0.0.1:8080/sub/bench", 0, 0,
     M_BCAST, "URL",
     "where the subscribers connect (a WebSocket that receives every "
     "message published on --pub-url)"},
    {"pub-url", BF_STR, BFIELD(pub_url), "ws://127.0.0.1:8080/pub/bench", 0, 0,
     M_BCAST, "URL",
     "where the publisher connects (a WebSocket whose every message goes "
     "to every subscriber)"},
    {"conns", BF_UINT, BFIELD(conns), NULL, 1, 10000000, M_ALL, "N",
     "connections to open (handshake: connections in their handshake at "
     "once)"},
    {"sources", BF_STR, BFIELD(sources), "auto", 0, 0, M_ALL, "ADDRS",
     "local addresses to bind before connecting, round-robin: a range "
     "127.0.0.2-127.0.0.50, a comma-separated list, \"none\", or \"auto\" "
     "(for a loopback server 127.0.0.2 onward, at least 16 addresses and "
     "at most 20000 connections each; otherwise none)"},
    {"parallel", BF_UINT, BFIELD(parallel), "256", 1, 1000000, M_ALL, "N",
     "handshakes in progress at once while connecting"},
    {"connect-timeout", BF_DURATION, BFIELD(connect_timeout_ms), "10s", 1,
     3600000, M_ALL, NULL,
     "a connection not open (TCP connect and handshake) after this fails"},
    {"timeout", BF_DURATION, BFIELD(timeout_ms), "60s", 1, 86400000, M_ALL,
     NULL, "the whole connecting phase; connections not open by then fail"},
    {"pid", BF_UINT, BFIELD(pid), "", 1, 4194304, M_ALL, "PID",
     "the server's process: idle measures its memory, the other modes "
     "report its CPU time (default: the one process that holds the socket "
     "listening on the (sub-)URL's address, from /proc/net/tcp and "
     "/proc/*/fd; the other modes go without when there is none)"},
    {"hold", BF_DURATION, BFIELD(hold_ms), "5s", 0, 86400000, M_IDLE, NULL,
     "how long the connections stay idle before the last measurement"},
    {"inflight", BF_UINT, BFIELD(inflight), NULL, 1, 65536, M_ECHO | M_BCAST,
     "K",
     "echo: messages in flight on each connection; broadcast: published "
     "messages not yet received by every subscriber, at most"},
    {"size", BF_SIZE, BFIELD(size), "32B", 0, 16u << 20, M_ECHO | M_BCAST, NULL,
     "bytes per message (binary; broadcast: at least 16)"},
    {"rate", BF_UINT, BFIELD(rate), "0", 0, 1000000, M_BCAST, "R",
     "publish R messages per second (latency); 0: as fast as --inflight "
     "lets the publisher (throughput)"},
    {"duration", BF_DURATION, BFIELD(duration_ms), "10s", 1, 86400000,
     M_ECHO | M_BCAST | M_HS, NULL, "how long to measure, after the warm-up"},
    {"warmup", BF_DURATION, BFIELD(warmup_ms), "1s", 0, 3600000,
     M_ECHO | M_BCAST | M_HS, NULL,
     "traffic before measuring starts; not counted"},
    {"json", BF_BOOL, BFIELD(json), "off", 0, 0, M_ALL, NULL,
     "print the result as one JSON object instead of a table"},
    {"tls-ca", BF_STR, BFIELD(tls_ca), "", 0, 0, M_ALL, "FILE",
     "wss:// URLs: trust the CA certificates in this PEM file instead of "
     "the system's"},
    {"tls", BF_BOOL, BFIELD(tls), "off", 0, 0, M_ALL, NULL,
     "connect with TLS: a ws:// URL is taken as wss:// (the same as "
     "writing wss://; the server's certificate is verified, see --tls-ca "
     "and --insecure)"},
    {"insecure", BF_BOOL, BFIELD(insecure), "off", 0, 0, M_ALL, NULL,
     "wss:// URLs: do not verify the server's certificate or name (for "
     "tests with self-signed certificates only)"},
};

/* ---- state ------------------------------------------------------------- */

enum phase {
    PH_WARMUP = 0,
    PH_SETTLE,
    PH_CONNECT,
    PH_RUN,
    PH_CLOSE,
    PH_DONE,
};

enum bconn_state {
    BC_IDLE = 0,   /* not started */
    BC_CONNECTING, /* connect + handshake in progress */
    BC_OPEN,
    BC_ABANDONED, /* still connecting when --timeout passed */
    BC_CLOSED,
    BC_RECYCLED, /* handshake: closed by us once open; the slot is free */
};

struct bconn {
    struct conn *c;
    uint64_t *sent_at; /* echo: send times of the messages in flight */
    uint64_t sent;     /* echo: messages sent; broadcast: published */
    uint64_t rcvd;     /* echo: messages echoed; broadcast: received */
    uint64_t next;     /* broadcast: the sequence number expected next */
    uint64_t missing;  /* broadcast: bit i set = next - 1 - i was skipped */
    uint64_t started;  /* ns: the connect call */
    uint8_t state;     /* enum bconn_state */
};

/* Broadcast, once every subscriber is open. */
enum bstage {
    BS_SYNC = 0, /* probes until every subscriber has received one */
    BS_RUN,      /* the warm-up, then the measured window */
    BS_DRAIN,    /* publishing stopped; waiting for the last deliveries */
    BS_DONE,
};

struct reasons {
    struct {
        char what[80];
        uint32_t n;
    } r[MAX_REASONS];
    uint32_t used;
};

struct mem_sample {
    struct procfs_mem m;
    bool ok;
};

struct bench;

struct bench_mode {
    const char *name;
    unsigned bit;
    uint32_t default_conns;
    uint32_t default_inflight;
    const char *summary;
    bool needs_pid; /* measures the server's memory */
    bool publisher; /* --pub-url: the warm-up goes through a publisher */
    /* Each connection is closed as it opens and another takes its slot
     * (on_open does the closing; the driver starts the next ones). */
    bool churn;
    void (*start)(struct bench *b);
    /* The run ends, by its own deadline or not (optional). */
    void (*finish)(struct bench *b);
    void (*on_timer)(struct bench *b);
    void (*on_message)(struct bench *b, struct bconn *bc, const uint8_t *p,
                       size_t len);
    /* One of the --conns connections opened during the run (optional). */
    void (*on_open)(struct bench *b, struct bconn *bc);
    void (*report)(struct bench *b, FILE *out);
    void (*report_json)(struct bench *b, FILE *out);
    /* The run's figures cannot be trusted (optional): a mismatch, a loss. */
    bool (*invalid)(const struct bench *b);
};

struct target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[300]; /* Host header: host[:port] as in the URL */
    char name[64];  /* the host alone: TLS's SNI and certificate check */
    char path[256];
    bool loopback;
    bool tls; /* wss:// */
};

struct bench {
    const struct bench_mode *mode;
    struct bench_opts o;
    struct target t;              /* --url; broadcast: --sub-url */
    struct target pt;             /* broadcast: --pub-url */
    struct sockaddr_storage *src; /* --sources, or NULL */
    uint32_t nsrc;
    pid_t pid;

    struct loop *loop;
    struct conn_set set;
    bool set_ready;
    struct ws_client *cl;
    struct tls_ctx *tls; /* client context when a URL is wss://, or NULL */
    struct ws_handlers h;
    struct loop_hook hook;
    struct timer timer; /* the current phase's deadline */
    struct watcher sigw;
    int sigfd;

    enum phase phase;
    struct bconn warm;
    struct bconn *conns; /* o.conns of them */
    uint32_t launched, connecting, open, failed, lost;
    uint32_t opened;         /* ever opened (open + lost + closed at the end) */
    struct reasons fail_why; /* never opened, by reason */
    struct reasons lost_why; /* opened, then closed before the end */
    char fatal[400];         /* why the run stopped, if it did */
    bool interrupted;
    uint64_t t_connect, t_open; /* ns: connect phase start, all open */

    /* idle */
    struct mem_sample before, at_open, after;
    uint32_t open_at_end;

    /* echo */
    uint8_t *payload;
    uint64_t *sent_at; /* conns * inflight send times */
    struct hist *lat;
    bool sending, measuring;
    uint64_t t0, t1;             /* ns: measuring window */
    uint64_t cpu0, cpu1;         /* ns: our CPU time at t0 and t1 */
    uint64_t srv_cpu0, srv_cpu1; /* ns: the server's, if pid */
    bool srv_cpu;                /* both server samples taken */
    uint64_t rcvd, mismatched, dropped;

    /* broadcast */
    struct bconn pub;  /* the publisher: open from the warm-up to the end */
    struct timer tick; /* probes, the --rate schedule, the stall check */
    uint32_t *ring;    /* receipts of seq in [done, pub.sent), by seq % K */
    enum bstage stage;
    uint32_t synced;      /* subscribers that have received a message */
    uint32_t nsubs;       /* subscribers open when the run started */
    uint64_t win0;        /* the first sequence number of the run */
    uint64_t done;        /* every seq in [win0, done) reached everyone */
    uint64_t pub0, pub1;  /* pub.sent at t0 and t1 */
    uint64_t sched0;      /* ns: --rate: when the schedule started */
    uint64_t due;         /* --rate: messages the schedule has asked for */
    uint64_t progress_at; /* ns: done last moved (or started) */
    uint64_t lost_msgs, duplicated, reordered, malformed;
    uint64_t held;          /* --rate: due while --inflight outstanding */
    uint64_t drain_missing; /* deliveries not made by the drain's end */
    struct {                /* receive times: see rx_now() */
        const struct bconn *bc;
        uint64_t iter, ns;
        uint32_t n;
    } rx;

    /* handshake (rcvd counts the handshakes in the measuring window) */
    uint64_t relaunched; /* connections started during the run */
    uint64_t hs_total;   /* handshakes completed during the run */
    uint32_t run_failed; /* handshakes that failed during the run */
};

/* ---- small helpers ----------------------------------------------------- */

/* Seconds the connecting phase took (0 if it never ended). */
static double open_secs(const struct bench *b)
{
    return b->t_open > b->t_connect ? (double)(b->t_open - b->t_connect) / 1e9
                                    : 0.0;
}

static void count_reason(struct reasons *r, const char *what)
{
    uint32_t i;

    if (!what || !*what)
        what = "unknown";
    for (i = 0; i < r->used; i++) {
        if (!strcmp(r->r[i].what, what)) {
            r->r[i].n++;
            return;
        }
    }
    if (r->used == MAX_REASONS) {
        /* The last slot collects whatever does not fit. */
        i = MAX_REASONS - 1;
        snprintf(r->r[i].what, sizeof(r->r[i].what), "other");
        r->r[i].n++;
        return;
    }
    snprintf(r->r[r->used].what, sizeof(r->r[r->used].what), "%s", what);
    r->r[r->used++].n = 1;
}

/* "connection refused: 3, handshake: HTTP 503: 2" */
static void format_reasons(const struct reasons *r, char *out, size_t len)
{
    size_t n = 0;

    out[0] = '\0';
    for (uint32_t i = 0; i < r->used && n < len; i++) {
        int w = snprintf(out + n, len - n, "%s%s: %" PRIu32, i ? ", " : "",
                         r->r[i].what, r->r[i].n);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void json_reasons(FILE *out, const struct reasons *r)
{
    fputc('{', out);
    for (uint32_t i = 0; i < r->used; i++) {
        if (i)
            fputs(", ", out);
        json_str(out, r->r[i].what);
        fprintf(out, ": %" PRIu32, r->r[i].n);
    }
    fputc('}', out);
}

/* Progress for a person watching; silent with --json. */
static void note(const struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(const struct bench *b, const char *fmt, ...)
{
    va_list ap;

    if (b->o.json)
        return;
    va_start(ap, fmt);
    fputs("moor bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void stop_with(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void begin_close(struct bench *b);
static void bcast_warm_probe(struct bench *b);
static void bcast_on_tick(struct timer *t);
static void bcast_conn_gone(struct bench *b, struct bconn *bc);

/* ---- flags ------------------------------------------------------------- */

/* The modes (defined at the end, after their hooks): returns the table
 * and sets *n to its length. */
static const struct bench_mode *mode_table(size_t *n);

static const char *metavar(const struct bflag *f)
{
    if (f->arg)
        return f->arg;
    switch (f->kind) {
    case BF_DURATION:
        return "DURATION";
    case BF_SIZE:
        return "SIZE";
    case BF_BOOL:
        return "";
    default:
        return "VALUE";
    }
}

/* Prints text wrapped at 80 columns; the cursor is at column `at`, and
 * continuation lines are indented to `indent`. */
static void wrap(FILE *out, const char *text, int at, int indent)
{
    int col = at;

    while (*text) {
        size_t w = strcspn(text, " ");

        if (col > indent && col + 1 + (int)w > 80) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fwrite(text, 1, w, out);
        col += (int)w;
        text += w;
        while (*text == ' ')
            text++;
    }
    fputc('\n', out);
}

/* The default of a flag whose value depends on the mode (def NULL). */
static uint32_t mode_default(const struct bench_mode *m, const struct bflag *f)
{
    return !strcmp(f->name, "inflight") ? m->default_inflight
                                        : m->default_conns;
}

static void print_help(FILE *out)
{
    char left[64], text[640], which[64];
    size_t n_modes;
    const struct bench_mode *modes = mode_table(&n_modes);
    int col = 0, mw = 0;

    for (size_t i = 0; i < ARRAY_SIZE(bflags); i++) {
        int n = snprintf(left, sizeof(left), "  --%s %s", bflags[i].name,
                         metavar(&bflags[i]));
        col = MAX(col, n + 2);
    }
    fprintf(out, "usage: moor bench MODE [flags]\n\n");
    wrap(out,
         "moor bench drives a WebSocket echo server (moor serve's /echo, "
         "or any other), or a broadcast server (moor serve's /sub and "
         "/pub), with moor's own client and measures it. One event "
         "loop on one thread: pin it to a core of its own (taskset -c 1) "
         "and the server to another. Connections are bound round-robin to "
         "the --sources addresses, so ephemeral ports never run out, and "
         "the open-files limit is raised to its hard limit.",
         0, 0);
    fprintf(out, "\nmodes:\n");
    for (size_t i = 0; i < n_modes; i++)
        mw = MAX(mw, (int)strlen(modes[i].name));
    for (size_t i = 0; i < n_modes; i++) {
        fprintf(out, "  %-*s", mw + 2, modes[i].name);
        wrap(out, modes[i].summary, mw + 4, mw + 4);
    }
    fprintf(out, "\nflags (the modes they apply to, if not all):\n");
    for (size_t i = 0; i < ARRAY_SIZE(bflags); i++) {
        const struct bflag *f = &bflags[i];
        size_t wn = 0;
        int n;

        which[0] = '\0';
        if (f->modes != M_ALL) {
            for (size_t m = 0; m < n_modes; m++)
                if (f->modes & modes[m].bit)
                    wn +=
                        (size_t)snprintf(which + wn, sizeof(which) - wn, "%s%s",
                                         wn ? ", " : "[", modes[m].name);
            snprintf(which + wn, sizeof(which) - wn, "] ");
        }
        n = snprintf(left, sizeof(left), "  --%s %s", f->name, metavar(f));
        if (f->def && !f->def[0]) {
            snprintf(text, sizeof(text), "%s%s", which, f->help);
        } else if (f->def) {
            snprintf(text, sizeof(text), "%s%s (default %s)", which, f->help,
                     f->def);
        } else {
            size_t tn = (size_t)snprintf(text, sizeof(text), "%s%s (default",
                                         which, f->help);
            bool first = true;

            for (size_t m = 0; m < n_modes && tn < sizeof(text); m++) {
                if (!(f->modes & modes[m].bit))
                    continue;
                tn +=
                    (size_t)snprintf(text + tn, sizeof(text) - tn,
                                     "%s %" PRIu32 " for %s", first ? "" : ",",
                                     mode_default(&modes[m], f), modes[m].name);
                first = false;
            }
            if (tn < sizeof(text))
                snprintf(text + tn, sizeof(text) - tn, ")");
        }
        fprintf(out, "%-*s", col, left);
        wrap(out, text, MAX(n, col), col);
    }
    fprintf(out, "%-*s", col, "  -h, --help");
    wrap(out, "print this help", col, col);
    fprintf(out, "\n");
    wrap(out,
         "Durations are written 250ms, 10s, 2m; sizes 32B, 4KiB, 1MiB. "
         "Exit status: 0 the run went as asked; 1 the server could not be "
         "reached, or a connection failed, closed early or echoed the "
         "wrong bytes, or a broadcast message was lost, duplicated or "
         "reordered (the figures are still printed); 2 usage; 130 "
         "interrupted.",
         0, 0);
    fprintf(out, "\nexamples:\n"
                 "  moor bench idle --url ws://127.0.0.1:8080/echo "
                 "--conns 10000\n"
                 "  moor bench echo --url ws://127.0.0.1:8080/echo "
                 "--conns 64 --inflight 16 \\\n"
                 "      --size 32B --duration 10s\n"
                 "  moor bench broadcast --sub-url ws://127.0.0.1:8080/sub/b "
                 "\\\n"
                 "      --pub-url ws://127.0.0.1:8080/pub/b --conns 2000 "
                 "--size 64B [--rate 10]\n"
                 "  moor bench handshake --url ws://127.0.0.1:8080/echo "
                 "--conns 32 --duration 10s\n");
}

static const struct bflag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(bflags); i++)
        if (strlen(bflags[i].name) == len && !memcmp(bflags[i].name, name, len))
            return &bflags[i];
    return NULL;
}

/* Stores text as f's value. Returns 0 or -1 with err set. */
static int set_flag(struct bench_opts *o, const struct bflag *f,
                    const char *text, char *err, size_t errlen)
{
    char *field = (char *)o + f->off;
    uint64_t v = 0;
    uint32_t ms;
    char *end;
    int rc = 0;

    switch (f->kind) {
    case BF_STR:
        if (strlen(text) >= f->len) {
            snprintf(err, errlen,
                     "value for --%s is too long (at most %zu "
                     "characters)",
                     f->name, f->len - 1);
            return -1;
        }
        memcpy(field, text, strlen(text) + 1);
        return 0;
    case BF_BOOL: {
        bool bv;

        if (!strcmp(text, "1") || !strcmp(text, "true")) {
            bv = true;
        } else if (!strcmp(text, "0") || !strcmp(text, "false")) {
            bv = false;
        } else {
            snprintf(err, errlen,
                     "invalid value \"%s\" for --%s: expected "
                     "1, 0, true or false",
                     text, f->name);
            return -1;
        }
        memcpy(field, &bv, sizeof(bv));
        return 0;
    }
    case BF_UINT:
        errno = 0;
        if (text[0] < '0' || text[0] > '9')
            rc = -EINVAL;
        v = strtoull(text, &end, 10);
        if (!rc && (*end || errno))
            rc = *end ? -EINVAL : -ERANGE;
        break;
    case BF_DURATION:
        rc = flags_parse_duration_ms(text, &ms);
        v = ms;
        break;
    case BF_SIZE:
        rc = flags_parse_size(text, &v);
        break;
    }
    if (rc == 0 && (v < f->min || v > f->max))
        rc = -ERANGE;
    if (rc < 0) {
        const char *shape = f->kind == BF_DURATION ? "a duration like 250ms, "
                                                     "10s, 2m"
                            : f->kind == BF_SIZE   ? "a size like 32B, 4KiB"
                                                   : "a whole number";

        snprintf(err, errlen,
                 "invalid value \"%s\" for --%s: expected %s from %" PRIu64
                 " to %" PRIu64 "%s",
                 text, f->name, shape, f->min, f->max,
                 f->kind == BF_DURATION ? " ms"
                 : f->kind == BF_SIZE   ? " bytes"
                                        : "");
        return -1;
    }
    if (f->len == sizeof(uint32_t)) {
        uint32_t v32 = (uint32_t)v;

        memcpy(field, &v32, sizeof(v32));
    } else {
        memcpy(field, &v, sizeof(v));
    }
    return 0;
}

static void set_defaults(struct bench_opts *o)
{
    char err[16];

    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < ARRAY_SIZE(bflags); i++) {
        /* "" (--pid) and NULL (--conns) mean 0: decided later. */
        if (bflags[i].def && bflags[i].def[0] && strcmp(bflags[i].def, "off"))
            set_flag(o, &bflags[i], bflags[i].def, err, sizeof(err));
    }
}

/* Parses "MODE [flags]". Returns 0, 1 (help printed), or -1 with err. */
/* --tls: "ws://..." becomes "wss://..." (in place; a URL too long for
 * the field is left alone, and parse_url then reports it). */
static void with_tls(char *url, size_t cap)
{
    size_t n = strlen(url);

    if (strncasecmp(url, "ws://", 5) != 0 || n + 2 > cap)
        return;
    memmove(url + 3, url + 2, n - 1); /* "//..." and its NUL */
    memcpy(url, "wss", 3);
}

static int parse_args(struct bench *b, int argc, char **argv, char *err,
                      size_t errlen)
{
    size_t n_modes;
    const struct bench_mode *modes = mode_table(&n_modes);
    int i;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_help(stdout);
            return 1;
        }
    }
    if (argc < 1 || argv[0][0] == '-') {
        snprintf(err, errlen,
                 "missing mode: moor bench idle|echo|broadcast|handshake "
                 "[flags] "
                 "(see moor bench --help)");
        return -1;
    }
    for (size_t m = 0; m < n_modes; m++)
        if (!strcmp(argv[0], modes[m].name))
            b->mode = &modes[m];
    if (!b->mode) {
        snprintf(err, errlen,
                 "unknown mode \"%s\": expected idle, echo, broadcast or "
                 "handshake "
                 "(see moor bench --help)",
                 argv[0]);
        return -1;
    }
    set_defaults(&b->o);
    for (i = 1; i < argc; i++) {
        const char *word = argv[i], *value = NULL, *eq;
        const struct bflag *f = NULL;

        if (!strncmp(word, "--", 2)) {
            eq = strchr(word + 2, '=');
            f = find_flag(word + 2,
                          eq ? (size_t)(eq - word - 2) : strlen(word + 2));
            value = eq ? eq + 1 : NULL;
        }
        if (!f) {
            snprintf(err, errlen, "%s \"%.*s\" (see moor bench --help)",
                     word[0] == '-' ? "unknown flag" : "unexpected argument",
                     (int)strcspn(word, "="), word);
            return -1;
        }
        if (!(f->modes & b->mode->bit)) {
            snprintf(err, errlen,
                     "--%s does not apply to moor bench %s "
                     "(see moor bench --help)",
                     f->name, b->mode->name);
            return -1;
        }
        if (f->kind == BF_BOOL && !value)
            value = "true";
        if (!value && i + 1 < argc)
            value = argv[++i];
        if (!value) {
            snprintf(err, errlen, "flag --%s needs a value", f->name);
            return -1;
        }
        if (set_flag(&b->o, f, value, err, errlen) < 0)
            return -1;
    }
    if (b->o.tls) {
        with_tls(b->o.url, sizeof(b->o.url));
        with_tls(b->o.sub_url, sizeof(b->o.sub_url));
        with_tls(b->o.pub_url, sizeof(b->o.pub_url));
    }
    if (!b->o.conns)
        b->o.conns = b->mode->default_conns;
    if (!b->o.inflight)
        b->o.inflight = b->mode->default_inflight;
    if (b->mode->publisher) {
        if (b->o.size < 2 * sizeof(uint64_t)) {
            snprintf(err, errlen,
                     "--size %" PRIu64 " is too small for broadcast: each "
                     "message carries its sequence number and send time "
                     "(16 bytes)",
                     b->o.size);
            return -1;
        }
        /* The subscribers are the driver's connections: every message
         * about "the URL" names theirs. */
        memcpy(b->o.url, b->o.sub_url, sizeof(b->o.url));
    }
    return 0;
}

/* ---- the URL and the source addresses ---------------------------------- */

/* ws://HOST[:PORT][/PATH], the value of --flag. Returns 0 or -1 with
 * err set. */
static int parse_url(const char *flag, const char *url, struct target *t,
                     char *err, size_t errlen)
{
    struct ws_url u;
    const char *why = ws_url_parse(url, &u);

    memset(t, 0, sizeof(*t));
    if (why) {
        snprintf(err, errlen, "invalid --%s \"%.200s\": %s", flag, url, why);
        return -1;
    }
    memcpy(&t->addr, &u.addr, u.addrlen);
    t->addrlen = u.addrlen;
    t->tls = u.tls;
    snprintf(t->host, sizeof(t->host), "%s", u.host);
    snprintf(t->name, sizeof(t->name), "%s", u.name);
    if (strlen(u.path) >= sizeof(t->path)) {
        snprintf(err, errlen, "--%s %.200s: the path is too long", flag, url);
        return -1;
    }
    memcpy(t->path, u.path, strlen(u.path) + 1);
    if (u.addr.ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&u.addr;
        t->loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&u.addr;
        t->loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    }
    return 0;
}

static int add_source(struct bench *b, uint32_t cap, int family,
                      const char *text)
{
    struct sockaddr_storage *s;

    if (b->nsrc == cap)
        return -1;
    s = &b->src[b->nsrc];
    memset(s, 0, sizeof(*s));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)s;

        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &a->sin_addr) != 1)
            return -1;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)s;

        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1)
            return -1;
    }
    b->nsrc++;
    return 0;
}

/* Fills b->src from --sources. Returns 0 or -1 with err set. */
static int parse_sources(struct bench *b, char *err, size_t errlen)
{
    const char *s = b->o.sources;
    int family = b->t.addr.ss_family;
    uint32_t cap = 0;
    char one[64];

    if (!strcmp(s, "none"))
        return 0;
    if (!strcmp(s, "auto")) {
        uint32_t n;

        if (family != AF_INET || !b->t.loopback)
            return 0;
        n = MAX(AUTO_MIN_SOURCES,
                (b->o.conns + AUTO_PER_SOURCE - 1) / AUTO_PER_SOURCE);
        n = MIN(n, 253u); /* 127.0.0.2 .. 127.0.0.254 */
        snprintf(one, sizeof(one), "127.0.0.2-127.0.0.%u", 1 + n);
        s = one;
        snprintf(b->o.sources, sizeof(b->o.sources), "%s", one);
    }
    if (strchr(s, '-')) {
        struct in_addr lo, hi;
        char a[32];
        size_t alen = strcspn(s, "-");

        if (family != AF_INET || alen >= sizeof(a))
            goto bad;
        memcpy(a, s, alen);
        a[alen] = '\0';
        if (inet_pton(AF_INET, a, &lo) != 1 ||
            inet_pton(AF_INET, s + alen + 1, &hi) != 1 ||
            ntohl(hi.s_addr) < ntohl(lo.s_addr) ||
            ntohl(hi.s_addr) - ntohl(lo.s_addr) >= 65536)
            goto bad;
        cap = ntohl(hi.s_addr) - ntohl(lo.s_addr) + 1;
        b->src = mem_calloc(MEM_MISC, cap, sizeof(*b->src));
        if (!b->src)
            goto nomem;
        for (uint32_t i = 0; i < cap; i++) {
            struct in_addr x = {.s_addr = htonl(ntohl(lo.s_addr) + i)};

            inet_ntop(AF_INET, &x, one, sizeof(one));
            add_source(b, cap, AF_INET, one);
        }
        return 0;
    }
    cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    b->src = mem_calloc(MEM_MISC, cap, sizeof(*b->src));
    if (!b->src)
        goto nomem;
    while (*s) {
        size_t n = strcspn(s, ",");

        if (n == 0 || n >= sizeof(one))
            goto bad;
        memcpy(one, s, n);
        one[n] = '\0';
        if (add_source(b, cap, family, one) < 0)
            goto bad;
        s += n + (s[n] == ',');
    }
    return 0;

bad:
    snprintf(err, errlen,
             "invalid --sources \"%s\": expected a range like "
             "127.0.0.2-127.0.0.50, a comma-separated list of %s addresses, "
             "none or auto",
             b->o.sources, family == AF_INET ? "IPv4" : "IPv6");
    return -1;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- limits that would stop the run before it starts ------------------- */

/* Raises the open-files soft limit to the hard limit (and the hard limit
 * too when allowed, i.e. as root). Returns 0, or -1 with err set when
 * need fds cannot be had. */
static int raise_nofile(uint64_t need, char *err, size_t errlen)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = {.rlim_cur = need, .rlim_max = need};

        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return 0;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        snprintf(err, errlen,
                 "cannot open that many connections: they need %" PRIu64
                 " file descriptors, and the open-files limit "
                 "(RLIMIT_NOFILE) is %llu, its hard limit %llu; raise it "
                 "(ulimit -Hn as root, or limits.conf) or ask for fewer "
                 "than %llu connections",
                 need, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max,
                 (unsigned long long)(rl.rlim_cur > FD_RESERVE
                                          ? rl.rlim_cur - FD_RESERVE
                                          : 0));
        return -1;
    }
    return 0;
}

/* Checks that each source address has enough ephemeral ports for its
 * share of the connections. Returns 0 or -1 with err set. */
static int check_ports(const struct bench *b, char *err, size_t errlen)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    unsigned lo = 0, hi = 0;
    uint32_t per, nsrc = b->nsrc ? b->nsrc : 1;

    if (!f)
        return 0;
    if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo) {
        fclose(f);
        return 0;
    }
    fclose(f);
    per = (b->o.conns + nsrc - 1) / nsrc;
    if (per <= hi - lo + 1)
        return 0;
    snprintf(err, errlen,
             "%" PRIu32 " connections from %s need %" PRIu32 " ports per "
             "source address, but the ephemeral port range %u-%u has %u: "
             "spread them over more addresses with --sources (e.g. "
             "127.0.0.2-127.0.0.%u)",
             b->o.conns, b->nsrc ? "these source addresses" : "one address",
             per, lo, hi, hi - lo + 1,
             MIN(254u, 2u + b->o.conns / (hi - lo + 1)));
    return -1;
}

/* Finds the server's pid for a mode that measures memory. Returns 0 or
 * -1 with err set. */
static int find_pid(struct bench *b, char *err, size_t errlen)
{
    struct procfs_mem m;
    pid_t pids[8];
    size_t found = 0;
    const char *addr = b->t.host;
    int rc;

    if (b->o.pid) {
        b->pid = (pid_t)b->o.pid;
        rc = procfs_mem(b->pid, &m);
        if (rc < 0) {
            snprintf(err, errlen,
                     "cannot read the memory of --pid %d from "
                     "/proc/%d/status: %s",
                     (int)b->pid, (int)b->pid, strerror(-rc));
            return -1;
        }
        return 0;
    }
    rc = procfs_listener_pid((const struct sockaddr *)&b->t.addr, pids,
                             ARRAY_SIZE(pids), &found);
    if (rc > 0) {
        b->pid = rc;
        return 0;
    }
    if (!b->mode->needs_pid)
        return 0; /* optional: the report goes without */
    if (rc == -EEXIST) {
        char list[96] = "";
        size_t n = 0;

        for (size_t i = 0; i < MIN(found, ARRAY_SIZE(pids)); i++)
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d",
                                  i ? ", " : "", (int)pids[i]);
        snprintf(err, errlen,
                 "%zu processes hold the socket listening on "
                 "%s (%s%s): say which to measure with --pid",
                 found, addr, list, found > ARRAY_SIZE(pids) ? ", ..." : "");
        return -1;
    }
    snprintf(err, errlen,
             "no process of ours listens on %s (is the server "
             "running, on this machine, in this network namespace?); "
             "give the server's process with --pid",
             addr);
    return -1;
}

/* ---- connections ------------------------------------------------------- */

static const struct sockaddr *source_of(const struct bench *b, uint32_t i,
                                        socklen_t *len)
{
    if (!b->nsrc) {
        *len = 0;
        return NULL;
    }
    *len = b->src[0].ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6);
    return (const struct sockaddr *)&b->src[i % b->nsrc];
}

/* Starts connection bc (number i). Returns 0 or -errno (nothing started;
 * no callback will run). */
static int launch(struct bench *b, struct bconn *bc, uint32_t i)
{
    struct ws_target t = {
        .addr = (const struct sockaddr *)&b->t.addr,
        .addrlen = b->t.addrlen,
        .host = b->t.host,
        .path = b->t.path,
        .tls = b->t.tls ? b->tls : NULL,
        .tls_name = b->t.name,
    };
    struct conn *c;
    int err = 0;

    t.source = source_of(b, i, &t.sourcelen);
    bc->state = BC_CONNECTING;
    bc->started = mono_ns();
    c = ws_client_connect(b->cl, &t, &b->h, bc, &err);
    if (!c) {
        bc->state = BC_CLOSED;
        return err ? err : -EIO;
    }
    if (bc->state == BC_CONNECTING || bc->state == BC_OPEN)
        bc->c = c;
    return 0;
}

/* Starts one of the bench's own connections (the warm-up one, the
 * publisher) to tg, bound to the first source address if it is of the
 * same family. Returns 0, or -1 with err set (nothing started). */
static int connect_own(struct bench *b, struct bconn *bc,
                       const struct target *tg, const char *url, char *err,
                       size_t errlen)
{
    struct ws_target t = {
        .addr = (const struct sockaddr *)&tg->addr,
        .addrlen = tg->addrlen,
        .host = tg->host,
        .path = tg->path,
        .tls = tg->tls ? b->tls : NULL,
        .tls_name = tg->name,
    };
    struct conn *c;
    int e = 0;

    if (b->nsrc && b->src[0].ss_family == tg->addr.ss_family)
        t.source = source_of(b, 0, &t.sourcelen);
    bc->state = BC_CONNECTING;
    c = ws_client_connect(b->cl, &t, &b->h, bc, &e);
    if (!c) {
        bc->state = BC_CLOSED;
        snprintf(err, errlen, "cannot connect to %s: %s", url,
                 strerror(e ? -e : EIO));
        return -1;
    }
    if (bc->state == BC_CONNECTING || bc->state == BC_OPEN)
        bc->c = c;
    return 0;
}

/* launch() of the connection after the first n returned rc < 0: counts
 * the failure. Returns -1 if the run was stopped (out of file
 * descriptors), else 0. */
static int launch_failed(struct bench *b, int rc, uint64_t n)
{
    char what[96];

    b->connecting--;
    b->failed++;
    snprintf(what, sizeof(what), "%s%s", strerror(-rc),
             rc == -EADDRNOTAVAIL ? " (no free port or source "
                                    "address: see --sources)"
                                  : "");
    count_reason(&b->fail_why, what);
    if (rc == -EMFILE || rc == -ENFILE) {
        stop_with(b,
                  "out of file descriptors after %" PRIu64 " connections: %s",
                  n, strerror(-rc));
        return -1;
    }
    return 0;
}

static void launch_more(struct bench *b)
{
    while (b->phase == PH_CONNECT && b->launched < b->o.conns &&
           b->connecting < b->o.parallel) {
        struct bconn *bc = &b->conns[b->launched];
        uint32_t i = b->launched++;
        int rc;

        b->connecting++;
        rc = launch(b, bc, i);
        if (rc < 0 && launch_failed(b, rc, i) < 0)
            return;
    }
}

/* Handshakes that may fail during a handshake run before it stops (a
 * server that went away refuses every connect at once). */
#define HS_MAX_FAILS 100u

/* handshake: a new connection in every free slot, one closed by us once
 * open or one whose handshake failed. The source addresses keep rotating
 * from where the connecting phase left them. */
static void churn_launch(struct bench *b)
{
    for (uint32_t i = 0; i < b->o.conns && b->phase == PH_RUN; i++) {
        struct bconn *bc = &b->conns[i];
        uint64_t n;
        int rc;

        if (bc->state != BC_RECYCLED && bc->state != BC_CLOSED)
            continue;
        n = b->o.conns + b->relaunched++;
        b->connecting++;
        rc = launch(b, bc, (uint32_t)n);
        if (rc < 0) {
            b->run_failed++;
            if (launch_failed(b, rc, n) < 0)
                return;
        }
    }
    if (b->phase == PH_RUN && b->run_failed >= HS_MAX_FAILS) {
        char why[512];

        format_reasons(&b->fail_why, why, sizeof(why));
        stop_with(b, "%" PRIu32 " handshakes failed during the run (%s)",
                  b->run_failed, why);
    }
}

static void on_open(struct conn *c, void *arg)
{
    struct bench *b = arg;
    struct bconn *bc = ws_user(c);

    bc->c = c;
    bc->state = BC_OPEN;
    if (bc == &b->pub) {
        bcast_warm_probe(b);
        return;
    }
    if (bc == &b->warm) {
        /* One message, echoed (or published to it), then closed: see
         * on_message. */
        if (b->mode->publisher)
            bcast_warm_probe(b);
        else
            ws_send(c, b->payload, (size_t)MIN(b->o.size, WARM_MSG_MAX), false);
        return;
    }
    b->connecting--;
    b->open++;
    b->opened++;
    if (b->phase == PH_RUN && b->mode->on_open)
        b->mode->on_open(b, bc);
}

static void on_message(struct conn *c, const uint8_t *data, size_t len,
                       bool text, void *arg)
{
    struct bench *b = arg;
    struct bconn *bc = ws_user(c);

    (void)text;
    if (bc == &b->pub)
        return; /* a server may say things to its publisher: not counted */
    if (bc == &b->warm) {
        bc->rcvd++;
        ws_close(c, WS_CLOSE_NORMAL, NULL);
        return;
    }
    if (b->phase == PH_RUN && b->mode->on_message)
        b->mode->on_message(b, bc, data, len);
}

static void on_close(struct conn *c, uint16_t code, void *arg)
{
    struct bench *b = arg;
    struct bconn *bc = ws_user(c);
    const char *detail = ws_close_detail(c);
    char what[128];

    if (bc == &b->pub) {
        uint8_t was = bc->state;

        bc->state = BC_CLOSED;
        bc->c = NULL;
        if (b->phase >= PH_CLOSE)
            return;
        if (was != BC_OPEN)
            stop_with(b, "cannot connect to %s: %s", b->o.pub_url,
                      detail ? detail : "failed");
        else
            stop_with(b,
                      "%s closed the publisher's connection: %s (close "
                      "code %u)",
                      b->o.pub_url, detail ? detail : "closed", code);
        return;
    }
    if (bc == &b->warm) {
        uint8_t was = bc->state;

        bc->state = BC_CLOSED;
        bc->c = NULL;
        if (b->phase != PH_WARMUP)
            return;
        if (was != BC_OPEN) {
            stop_with(b, "cannot connect to %s: %s", b->o.url,
                      detail ? detail : "failed");
            return;
        }
        if (!bc->rcvd && b->mode->publisher) {
            stop_with(b,
                      "%s closed the warm-up subscriber before a message "
                      "published on %s reached it: %s (close code %u)",
                      b->o.url, b->o.pub_url, detail ? detail : "closed", code);
            return;
        }
        if (!bc->rcvd) {
            stop_with(b,
                      "%s closed the warm-up connection before echoing its "
                      "message: %s (close code %u)",
                      b->o.url, detail ? detail : "closed", code);
            return;
        }
        /* The warm-up message came back (or was delivered) and the close
         * handshake is done. */
        timer_cancel(loop_timers(b->loop), &b->tick);
        b->phase = PH_SETTLE;
        loop_timer_in(b->loop, &b->timer, SETTLE_MS);
        return;
    }
    switch (bc->state) {
    case BC_CONNECTING:
        b->connecting--;
        /* Still in its handshake when the run ended (handshake mode, or
         * a stop during the connecting phase): cut short by us, not a
         * failure of the server. */
        if (b->phase >= PH_CLOSE)
            break;
        b->failed++;
        if (b->phase == PH_RUN)
            b->run_failed++;
        count_reason(&b->fail_why, detail);
        break;
    case BC_RECYCLED:
        b->open--;
        bc->c = NULL; /* stays BC_RECYCLED: the hook starts the next */
        return;
    case BC_ABANDONED:
        b->failed++;
        snprintf(what, sizeof(what), "not open within --timeout %" PRIu32 " ms",
                 b->o.timeout_ms);
        count_reason(&b->fail_why, what);
        break;
    case BC_OPEN:
        b->open--;
        if (b->phase < PH_CLOSE) {
            b->lost++;
            snprintf(what, sizeof(what), "%s (close code %u)",
                     detail ? detail : "closed", code);
            count_reason(&b->lost_why, what);
        }
        if (b->mode->publisher)
            bcast_conn_gone(b, bc);
        break;
    default:
        break;
    }
    bc->state = BC_CLOSED;
    bc->c = NULL;
}

/* ---- phases ------------------------------------------------------------ */

static void stop_with(struct bench *b, const char *fmt, ...)
{
    va_list ap;

    if (!b->fatal[0]) {
        va_start(ap, fmt);
        vsnprintf(b->fatal, sizeof(b->fatal), fmt, ap);
        va_end(ap);
    }
    begin_close(b);
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

/* Close handshakes on every connection; whatever is left at the deadline
 * is closed outright (timer, PH_CLOSE). */
static void begin_close(struct bench *b)
{
    if (b->phase >= PH_CLOSE)
        return;
    if (b->phase == PH_RUN && b->mode->finish)
        b->mode->finish(b);
    b->phase = PH_CLOSE;
    b->sending = false;
    b->measuring = false;
    timer_cancel(loop_timers(b->loop), &b->tick);
    if (b->warm.c)
        conn_close(b->warm.c, CLOSE_SHUTDOWN);
    if (b->pub.c && b->pub.state == BC_OPEN)
        ws_close(b->pub.c, WS_CLOSE_NORMAL, NULL);
    else if (b->pub.c)
        conn_close(b->pub.c, CLOSE_SHUTDOWN);
    for (uint32_t i = 0; i < b->launched; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state == BC_OPEN && bc->c)
            ws_close(bc->c, WS_CLOSE_NORMAL, NULL);
        else if (bc->state == BC_CONNECTING && bc->c)
            conn_close(bc->c, CLOSE_SHUTDOWN);
    }
    /* The client's own close timeout (5 s) bounds each handshake; one
     * more second, then the rest goes. */
    loop_timer_in(b->loop, &b->timer, 6000);
}

static void connect_done(struct bench *b)
{
    char why[512] = "";

    timer_cancel(loop_timers(b->loop), &b->timer);
    b->t_open = mono_ns();
    if (b->failed) {
        format_reasons(&b->fail_why, why, sizeof(why));
        note(b, "%" PRIu32 " of %" PRIu32 " connections failed (%s)", b->failed,
             b->o.conns, why);
    }
    if (!b->open) {
        stop_with(b, "no connection to %s could be opened (%s)", b->o.url, why);
        return;
    }
    note(b, "%" PRIu32 " connections open in %.2f s", b->open, open_secs(b));
    b->phase = PH_RUN;
    b->mode->start(b);
}

static void on_timer(struct timer *t)
{
    struct bench *b = container_of(t, struct bench, timer);

    switch (b->phase) {
    case PH_WARMUP:
        if (b->mode->publisher && b->pub.state == BC_OPEN &&
            b->warm.state == BC_OPEN)
            stop_with(b,
                      "no message published on %s reached the subscriber "
                      "on %s within %" PRIu32 " ms (is that where its "
                      "messages go?)",
                      b->o.pub_url, b->o.url, b->o.connect_timeout_ms + 5000);
        else if (b->mode->publisher)
            stop_with(b, "the %s on %s was not open within %" PRIu32 " ms",
                      b->pub.state != BC_OPEN ? "publisher" : "subscriber",
                      b->pub.state != BC_OPEN ? b->o.pub_url : b->o.url,
                      b->o.connect_timeout_ms + 5000);
        else
            stop_with(b,
                      "the warm-up message sent to %s was not echoed within "
                      "%" PRIu32 " ms (is it an echo endpoint?)",
                      b->o.url, b->o.connect_timeout_ms + 5000);
        break;
    case PH_SETTLE:
        if (b->mode->needs_pid) {
            b->before.ok = procfs_mem(b->pid, &b->before.m) == 0;
            if (!b->before.ok) {
                stop_with(b, "cannot read the memory of pid %d", (int)b->pid);
                break;
            }
        }
        note(b, "opening %" PRIu32 " connections to %s", b->o.conns, b->o.url);
        b->phase = PH_CONNECT;
        b->t_connect = mono_ns();
        loop_timer_in(b->loop, &b->timer, b->o.timeout_ms);
        break;
    case PH_CONNECT:
        for (uint32_t i = 0; i < b->launched; i++) {
            struct bconn *bc = &b->conns[i];

            if (bc->state == BC_CONNECTING) {
                bc->state = BC_ABANDONED;
                b->connecting--;
                if (bc->c)
                    conn_close(bc->c, CLOSE_SHUTDOWN);
            }
        }
        /* Never launched: they count as failed too. */
        if (b->launched < b->o.conns) {
            char what[96];

            snprintf(what, sizeof(what),
                     "not started within --timeout "
                     "%" PRIu32 " ms",
                     b->o.timeout_ms);
            for (; b->launched < b->o.conns; b->launched++) {
                b->failed++;
                count_reason(&b->fail_why, what);
            }
        }
        connect_done(b);
        break;
    case PH_RUN:
        b->mode->on_timer(b);
        break;
    case PH_CLOSE:
        conn_set_each(&b->set, close_one, NULL);
        b->phase = PH_DONE;
        loop_stop(b->loop);
        break;
    case PH_DONE:
        break;
    }
}

/* End of every loop iteration, before conn.c flushes what was queued.
 * One phase may lead to the next within the same call (the last
 * connection gone ends the run, which may end the close at once): the
 * checks run in phase order, not as alternatives, so nothing waits for a
 * deadline that has nothing left to wait for. */
static void on_hook(struct loop_hook *h)
{
    struct bench *b = container_of(h, struct bench, hook);

    if (b->phase == PH_CONNECT) {
        launch_more(b);
        if (b->phase == PH_CONNECT && b->launched == b->o.conns &&
            b->connecting == 0)
            connect_done(b);
    }
    if (b->phase == PH_RUN && b->mode->churn)
        churn_launch(b);
    if (b->phase == PH_RUN && b->open == 0 && !b->mode->churn)
        stop_with(b, "every connection was closed by the server");
    if (b->phase == PH_CLOSE && b->open == 0 && b->connecting == 0 &&
        !b->warm.c && !b->pub.c) {
        timer_cancel(loop_timers(b->loop), &b->timer);
        b->phase = PH_DONE;
        loop_stop(b->loop);
    }
}

static void on_signal(struct watcher *w, uint32_t events)
{
    struct bench *b = container_of(w, struct bench, sigw);
    struct signalfd_siginfo si;

    (void)events;
    while (read(b->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (b->phase >= PH_CLOSE) {
            /* A second signal: do not wait for the close handshakes. */
            conn_set_each(&b->set, close_one, NULL);
            b->phase = PH_DONE;
            loop_stop(b->loop);
            return;
        }
        b->interrupted = true;
        stop_with(b, "interrupted");
    }
}

/* ---- idle -------------------------------------------------------------- */

static void idle_start(struct bench *b)
{
    b->at_open.ok = procfs_mem(b->pid, &b->at_open.m) == 0;
    if (b->o.hold_ms)
        note(b, "holding them idle for %.1f s", b->o.hold_ms / 1000.0);
    loop_timer_in(b->loop, &b->timer, MAX(b->o.hold_ms, 1u));
}

static void idle_on_timer(struct bench *b)
{
    b->after.ok = procfs_mem(b->pid, &b->after.m) == 0;
    b->open_at_end = b->open;
    if (!b->after.ok)
        stop_with(b, "cannot read the memory of pid %d (has it exited?)",
                  (int)b->pid);
    else
        begin_close(b);
}

/* (after - before) / n, or INT64_MIN when not known. */
static int64_t per_conn(int64_t before, int64_t after, uint32_t n)
{
    if (before < 0 || after < 0 || n == 0)
        return INT64_MIN;
    return (after - before) / (int64_t)n;
}

static void idle_row(FILE *out, const char *label, const struct mem_sample *s)
{
    const struct procfs_mem *m = &s->m;

    if (!s->ok) {
        fprintf(out, "  %-22s %12s %12s %12s\n", label, "-", "-", "-");
        return;
    }
    fprintf(out, "  %-22s %12" PRId64 " %12" PRId64 " %12" PRId64 "\n", label,
            m->vm_rss / 1024, m->pss >= 0 ? m->pss / 1024 : -1,
            m->priv >= 0 ? m->priv / 1024 : -1);
}

static uint32_t idle_n(const struct bench *b)
{
    return b->open_at_end ? b->open_at_end : b->open;
}

static void idle_report(struct bench *b, FILE *out)
{
    uint32_t n = idle_n(b);
    char hold[48];

    fprintf(out, "idle %s (server pid %d)\n", b->o.url, (int)b->pid);
    fprintf(out,
            "connections  %" PRIu32 " of %" PRIu32 " open in %.2f s, "
            "%" PRIu32 " failed, %" PRIu32 " closed early; %" PRIu32
            " source address%s\n",
            n, b->o.conns, open_secs(b), b->failed, b->lost, b->nsrc,
            b->nsrc == 1 ? "" : "es");
    fprintf(out, "server memory (KiB)    %12s %12s %12s\n", "VmRSS", "Pss",
            "Private");
    idle_row(out, "before", &b->before);
    idle_row(out, "all open", &b->at_open);
    snprintf(hold, sizeof(hold), "after %.1f s idle", b->o.hold_ms / 1000.0);
    idle_row(out, hold, &b->after);
    if (b->before.ok && b->after.ok && n) {
        int64_t rss = per_conn(b->before.m.vm_rss, b->after.m.vm_rss, n);
        int64_t pss = per_conn(b->before.m.pss, b->after.m.pss, n);
        int64_t prv = per_conn(b->before.m.priv, b->after.m.priv, n);

        fprintf(out, "bytes per connection   %12" PRId64, rss);
        if (pss != INT64_MIN)
            fprintf(out, " %12" PRId64 " %12" PRId64, pss, prv);
        fprintf(out, "\n");
    }
}

static void json_mem(FILE *out, const char *name, const struct mem_sample *s)
{
    fprintf(out, "\"%s\": ", name);
    if (!s->ok) {
        fputs("null", out);
        return;
    }
    fprintf(out,
            "{\"vm_rss\": %" PRId64 ", \"rss_anon\": %" PRId64
            ", \"pss\": %" PRId64 ", \"private\": %" PRId64 "}",
            s->m.vm_rss, s->m.rss_anon, s->m.pss, s->m.priv);
}

static void json_per_conn(FILE *out, const char *name, int64_t v)
{
    if (v == INT64_MIN)
        fprintf(out, "\"%s\": null", name);
    else
        fprintf(out, "\"%s\": %" PRId64, name, v);
}

static void idle_report_json(struct bench *b, FILE *out)
{
    uint32_t n = idle_n(b);
    bool ok = b->before.ok && b->after.ok && n;

    fprintf(out, "\"pid\": %d, \"hold_s\": %.3f, \"open_s\": %.3f, ",
            (int)b->pid, b->o.hold_ms / 1000.0, open_secs(b));
    json_mem(out, "before", &b->before);
    fputs(", ", out);
    json_mem(out, "all_open", &b->at_open);
    fputs(", ", out);
    json_mem(out, "after_hold", &b->after);
    fputs(", ", out);
    json_per_conn(out, "bytes_per_conn",
                  ok ? per_conn(b->before.m.vm_rss, b->after.m.vm_rss, n)
                     : INT64_MIN);
    fputs(", ", out);
    json_per_conn(out, "pss_per_conn",
                  ok ? per_conn(b->before.m.pss, b->after.m.pss, n)
                     : INT64_MIN);
    fputs(", ", out);
    json_per_conn(out, "private_per_conn",
                  ok ? per_conn(b->before.m.priv, b->after.m.priv, n)
                     : INT64_MIN);
}

/* ---- echo -------------------------------------------------------------- */

/* Sends the next message of bc at time now (ns), its sequence number in
 * its first 8 bytes when it has that many. */
static void echo_send(struct bench *b, struct bconn *bc, uint64_t now)
{
    uint64_t seq = bc->sent;

    if (b->o.size >= sizeof(seq))
        memcpy(b->payload, &seq, sizeof(seq));
    bc->sent_at[seq % b->o.inflight] = now;
    bc->sent++;
    if (ws_send(bc->c, b->payload, (size_t)b->o.size, false) == WS_SEND_DROPPED)
        b->dropped++;
}

static void cpu_sample(const struct bench *b, uint64_t *self, uint64_t *srv,
                       bool *ok)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    *self = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    *ok = b->pid > 0 && procfs_cpu_ns(b->pid, srv) == 0;
}

static void measure_from_now(struct bench *b)
{
    bool ok;

    hist_reset(b->lat);
    b->rcvd = 0;
    b->measuring = true;
    cpu_sample(b, &b->cpu0, &b->srv_cpu0, &ok);
    b->srv_cpu = ok;
    b->t0 = mono_ns();
    loop_timer_in(b->loop, &b->timer, b->o.duration_ms);
}

static void echo_start(struct bench *b)
{
    note(b,
         "echo: %" PRIu32 " in flight x %" PRIu64 " B on each; %.1f s "
         "warm-up, then %.1f s measured",
         b->o.inflight, b->o.size, b->o.warmup_ms / 1000.0,
         b->o.duration_ms / 1000.0);
    b->sending = true;
    for (uint32_t i = 0; i < b->o.conns; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state != BC_OPEN)
            continue;
        for (uint32_t k = 0; k < b->o.inflight && bc->state == BC_OPEN; k++)
            echo_send(b, bc, mono_ns());
    }
    if (b->o.warmup_ms)
        loop_timer_in(b->loop, &b->timer, b->o.warmup_ms);
    else
        measure_from_now(b);
}

static void echo_on_timer(struct bench *b)
{
    if (!b->measuring) {
        measure_from_now(b); /* the warm-up is over */
        return;
    }
    begin_close(b); /* echo_finish() closes the window */
}

/* The run ends (its deadline, the server, a signal): the measuring
 * window, if open, closes now. */
static void echo_finish(struct bench *b)
{
    bool ok;

    if (!b->measuring)
        return;
    b->t1 = mono_ns();
    b->measuring = false;
    cpu_sample(b, &b->cpu1, &b->srv_cpu1, &ok);
    b->srv_cpu = b->srv_cpu && ok;
}

static void echo_on_message(struct bench *b, struct bconn *bc, const uint8_t *p,
                            size_t len)
{
    uint64_t now = mono_ns(), seq = bc->rcvd, got;

    if (bc->rcvd >= bc->sent || len != b->o.size) {
        b->mismatched++;
        return;
    }
    if (len >= sizeof(got)) {
        memcpy(&got, p, sizeof(got));
        if (got != seq) {
            b->mismatched++;
            return;
        }
    }
    bc->rcvd++;
    if (b->measuring) {
        hist_record(b->lat, now - bc->sent_at[seq % b->o.inflight]);
        b->rcvd++;
    }
    /* The next message goes out at once: its send time is now. */
    if (b->sending && bc->c)
        echo_send(b, bc, now);
}

static double echo_secs(const struct bench *b)
{
    uint64_t end = b->t1 ? b->t1 : mono_ns();

    return b->t0 && end > b->t0 ? (double)(end - b->t0) / 1e9 : 0.0;
}

static double cpu_pct(uint64_t from, uint64_t to, double secs)
{
    return to > from && secs > 0 ? (double)(to - from) / 1e7 / secs : 0.0;
}

static void fmt_ns(uint64_t ns, char *out, size_t len)
{
    if (ns < 10000)
        snprintf(out, len, "%.2f us", ns / 1e3);
    else if (ns < 1000000)
        snprintf(out, len, "%.0f us", ns / 1e3);
    else
        snprintf(out, len, "%.2f ms", ns / 1e6);
}

/* The latency and cpu lines of a report over a measuring window of secs
 * (echo, handshake). */
static void latency_cpu_lines(struct bench *b, FILE *out, double secs)
{
    char p50[32], p99[32], p999[32], mx[32];

    fmt_ns(hist_quantile(b->lat, 0.50), p50, sizeof(p50));
    fmt_ns(hist_quantile(b->lat, 0.99), p99, sizeof(p99));
    fmt_ns(hist_quantile(b->lat, 0.999), p999, sizeof(p999));
    fmt_ns(hist_max(b->lat), mx, sizeof(mx));
    fprintf(out, "latency      p50 %s   p99 %s   p999 %s   max %s\n", p50, p99,
            p999, mx);
    if (secs > 0) {
        double self = cpu_pct(b->cpu0, b->cpu1, secs);

        fprintf(out, "cpu          bench %.0f%% of a core", self);
        if (b->srv_cpu)
            fprintf(out, ", server %.0f%% (pid %d)",
                    cpu_pct(b->srv_cpu0, b->srv_cpu1, secs), (int)b->pid);
        fprintf(out, "\n");
        if (self >= 90.0)
            fprintf(out, "warning      the bench kept its core busy: it may "
                         "have been the bottleneck\n");
    }
}

/* The same as JSON: "latency_us": {...}, "bench_cpu_pct": ...,
 * "server_cpu_pct": ... */
static void json_latency_cpu(struct bench *b, FILE *out, double secs)
{
    fprintf(out,
            "\"latency_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, "
            "\"max\": %.2f, \"mean\": %.2f}, \"bench_cpu_pct\": %.1f, "
            "\"server_cpu_pct\": ",
            hist_quantile(b->lat, 0.50) / 1e3,
            hist_quantile(b->lat, 0.99) / 1e3,
            hist_quantile(b->lat, 0.999) / 1e3, hist_max(b->lat) / 1e3,
            hist_mean(b->lat) / 1e3, cpu_pct(b->cpu0, b->cpu1, secs));
    if (b->srv_cpu)
        fprintf(out, "%.1f", cpu_pct(b->srv_cpu0, b->srv_cpu1, secs));
    else
        fputs("null", out);
}

static void echo_report(struct bench *b, FILE *out)
{
    double secs = echo_secs(b);

    fprintf(out, "echo %s\n", b->o.url);
    fprintf(out,
            "connections  %" PRIu32 " of %" PRIu32 " open, %" PRIu32
            " failed, %" PRIu32 " closed early; %" PRIu32 " in flight each, "
            "%" PRIu64 " B messages\n",
            b->opened, b->o.conns, b->failed, b->lost, b->o.inflight,
            b->o.size);
    fprintf(out,
            "measured     %.2f s after a %.1f s warm-up: %" PRIu64
            " messages echoed\n",
            secs, b->o.warmup_ms / 1000.0, b->rcvd);
    fprintf(out, "messages/s   %.0f\n", secs > 0 ? b->rcvd / secs : 0.0);
    latency_cpu_lines(b, out, secs);
    if (b->mismatched || b->dropped)
        fprintf(out,
                "errors       %" PRIu64 " echoes that did not match, "
                "%" PRIu64 " sends dropped\n",
                b->mismatched, b->dropped);
}

static bool echo_invalid(const struct bench *b)
{
    return b->rcvd == 0 || b->mismatched || b->dropped;
}

static void echo_report_json(struct bench *b, FILE *out)
{
    double secs = echo_secs(b);

    fprintf(out,
            "\"inflight\": %" PRIu32 ", \"size\": %" PRIu64
            ", \"warmup_s\": %.3f, \"duration_s\": %.3f, \"messages\": %" PRIu64
            ", \"msgs_per_s\": %.0f, \"mismatched\": %" PRIu64
            ", \"dropped\": %" PRIu64 ", ",
            b->o.inflight, b->o.size, b->o.warmup_ms / 1000.0, secs, b->rcvd,
            secs > 0 ? b->rcvd / secs : 0.0, b->mismatched, b->dropped);
    json_latency_cpu(b, out, secs);
}

/* ---- broadcast --------------------------------------------------------- */

/*
 * --conns subscribers on --sub-url and one publisher on --pub-url. Every
 * message carries its sequence number (bytes 0-7) and its send time
 * (CLOCK_MONOTONIC ns, bytes 8-15); the rest is filler up to --size.
 *
 *   sync     once every subscriber is open, the publisher sends a probe
 *            every PROBE_MS until each subscriber has received one (a
 *            server may register a subscriber a moment after its 101), so
 *            from the run's first message on, every subscriber must get
 *            every message. --connect-timeout bounds it.
 *   run      throughput (--rate 0): at most --inflight messages are
 *            published and not yet received by every open subscriber; the
 *            next goes out as soon as the slowest subscriber has the
 *            oldest. So no subscriber ever has more than --inflight
 *            messages queued on the server, whatever order it writes in,
 *            and no server's slow-consumer limit can be reached (it
 *            measures fan-out, not queueing). --rate R: R messages per
 *            second on a fixed schedule (a message due while --inflight
 *            are outstanding is held back and counted).
 *            --warmup, then --duration measured: deliveries counted and
 *            the latency of each (its receive time minus its send time).
 *   drain    publishing stops; the run waits (DRAIN_MS at most) until every
 *            subscriber has every message; what never came is lost.
 *
 * Each subscriber checks its sequence numbers: a gap counts the messages
 * skipped as lost; one that comes late (within 64 of the newest) turns a
 * loss into "out of order"; one seen before is a duplicate. Any of them,
 * or a message of the wrong size, makes the run invalid (exit 1).
 *
 * The completion window is a ring of --inflight receipt counts: message s
 * has reached everyone when its count reaches the subscribers open. Each
 * subscriber receives in order, so messages complete in order and `done`
 * only moves forward. Nothing moves for STALL_MS: the run stops.
 */
#define PROBE_MS 100u
#define STALL_MS 5000u
#define DRAIN_MS 5000u

/* Publishes message number pub.sent, stamped with now. */
static void bcast_publish(struct bench *b, uint64_t now)
{
    uint64_t seq = b->pub.sent;

    if (!b->pub.c || b->pub.state != BC_OPEN)
        return;
    b->pub.sent++;
    memcpy(b->payload, &seq, sizeof(seq));
    memcpy(b->payload + sizeof(seq), &now, sizeof(now));
    b->ring[seq % b->o.inflight] = 0;
    if (ws_send(b->pub.c, b->payload, (size_t)b->o.size, false) ==
        WS_SEND_DROPPED)
        b->dropped++;
}

/* Warm-up: once the publisher and the warm-up subscriber are both open,
 * a probe now and every PROBE_MS until the subscriber has one. */
static void bcast_warm_probe(struct bench *b)
{
    if (b->phase != PH_WARMUP || b->pub.state != BC_OPEN ||
        b->warm.state != BC_OPEN || b->warm.rcvd)
        return;
    bcast_publish(b, mono_ns());
    loop_timer_in(b->loop, &b->tick, PROBE_MS);
}

static void bcast_drained(struct bench *b);

/* Moves `done` past every message that has reached every open subscriber,
 * then publishes into the room made (throughput) or ends the drain. */
static void bcast_advance(struct bench *b, uint64_t now)
{
    uint32_t k = b->o.inflight;

    while (b->done < b->pub.sent && b->ring[b->done % k] >= b->open)
        b->done++;
    b->progress_at = now;
    if (b->stage == BS_RUN && b->sending && !b->o.rate) {
        while (b->pub.sent - b->done < k && b->pub.state == BC_OPEN)
            bcast_publish(b, now);
    } else if (b->stage == BS_DRAIN && b->done == b->pub.sent) {
        bcast_drained(b);
    }
}

/* --rate: publishes every message the schedule has asked for by now and
 * arms the tick for the next one. */
static void bcast_schedule(struct bench *b, uint64_t now)
{
    double r = b->o.rate;
    uint64_t want = (uint64_t)((double)(now - b->sched0) * r / 1e9) + 1;
    uint64_t next_ns;

    while (b->due < want) {
        b->due++;
        if (b->pub.sent - b->done < b->o.inflight)
            bcast_publish(b, now);
        else
            b->held++;
    }
    next_ns = b->sched0 + (uint64_t)((double)b->due * 1e9 / r);
    loop_timer_in(b->loop, &b->tick,
                  next_ns > now ? (uint32_t)MAX((next_ns - now) / 1000000u, 1u)
                                : 1u);
}

static void bcast_check_stall(struct bench *b, uint64_t now)
{
    if (b->pub.sent == b->done) {
        b->progress_at = now;
        return;
    }
    if (now - b->progress_at < (uint64_t)STALL_MS * 1000000u)
        return;
    stop_with(b,
              "no progress for %u ms: message %" PRIu64 " reached %" PRIu32
              " of %" PRIu32 " subscribers (lost on the way?)",
              STALL_MS, b->done, b->ring[b->done % b->o.inflight], b->open);
}

/* Every subscriber has received a probe: the run proper starts. */
static void bcast_go(struct bench *b)
{
    uint64_t now = mono_ns();

    timer_cancel(loop_timers(b->loop), &b->tick);
    b->stage = BS_RUN;
    b->nsubs = b->open;
    b->win0 = b->done = b->pub.sent;
    b->progress_at = now;
    b->sending = true;
    if (b->o.rate) {
        note(b,
             "broadcast: %" PRIu32 " messages/s of %" PRIu64 " B to %" PRIu32
             " subscribers; %.1f s warm-up, then %.1f s measured",
             b->o.rate, b->o.size, b->open, b->o.warmup_ms / 1000.0,
             b->o.duration_ms / 1000.0);
        b->sched0 = now;
        b->due = 0;
        bcast_schedule(b, now);
    } else {
        note(b,
             "broadcast: %" PRIu64 " B messages to %" PRIu32 " subscribers, "
             "at most %" PRIu32 " in flight; %.1f s warm-up, then %.1f s "
             "measured",
             b->o.size, b->open, b->o.inflight, b->o.warmup_ms / 1000.0,
             b->o.duration_ms / 1000.0);
        bcast_advance(b, now);
        loop_timer_in(b->loop, &b->tick, 1000);
    }
    if (b->o.warmup_ms) {
        loop_timer_in(b->loop, &b->timer, b->o.warmup_ms);
    } else {
        measure_from_now(b);
        b->pub0 = b->win0; /* the first messages are in the window */
    }
}

static void bcast_start(struct bench *b)
{
    b->stage = BS_SYNC;
    loop_timer_in(b->loop, &b->timer, b->o.connect_timeout_ms);
    bcast_publish(b, mono_ns());
    loop_timer_in(b->loop, &b->tick, PROBE_MS);
}

static void bcast_on_tick(struct timer *t)
{
    struct bench *b = container_of(t, struct bench, tick);
    uint64_t now = mono_ns();

    if (b->phase == PH_WARMUP) {
        bcast_warm_probe(b);
        return;
    }
    if (b->phase != PH_RUN)
        return;
    if (b->stage == BS_SYNC) {
        if (b->open && b->synced >= b->open) {
            bcast_go(b);
            return;
        }
        bcast_publish(b, now);
        loop_timer_in(b->loop, &b->tick, PROBE_MS);
    } else if (b->stage == BS_RUN) {
        if (b->o.rate)
            bcast_schedule(b, now);
        else
            loop_timer_in(b->loop, &b->tick, 1000);
        bcast_check_stall(b, now);
    }
}

/* The end of the measured window (its deadline, or the run stopping). */
static void bcast_finish(struct bench *b)
{
    if (!b->measuring)
        return;
    echo_finish(b);
    b->pub1 = b->pub.sent;
}

/* The drain is over (everything arrived, or DRAIN_MS passed): whatever a
 * subscriber still lacks is lost. */
static void bcast_drained(struct bench *b)
{
    uint64_t missing = 0;

    timer_cancel(loop_timers(b->loop), &b->timer);
    b->stage = BS_DONE;
    for (uint32_t i = 0; i < b->launched; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state == BC_OPEN && bc->rcvd && bc->next < b->pub.sent)
            missing += b->pub.sent - bc->next;
    }
    b->lost_msgs += missing;
    b->drain_missing = missing;
    if (missing)
        stop_with(b,
                  "%" PRIu64 " deliveries of the last messages had not "
                  "arrived %u ms after the last publish",
                  missing, DRAIN_MS);
    else
        begin_close(b);
}

static void bcast_on_timer(struct bench *b)
{
    switch (b->stage) {
    case BS_SYNC:
        stop_with(b,
                  "%" PRIu32 " of %" PRIu32 " subscribers received nothing "
                  "published on %s within %" PRIu32 " ms (--connect-timeout)",
                  b->open - MIN(b->synced, b->open), b->open, b->o.pub_url,
                  b->o.connect_timeout_ms);
        break;
    case BS_RUN:
        if (!b->measuring) {
            measure_from_now(b); /* the warm-up is over */
            b->pub0 = b->pub.sent;
            break;
        }
        bcast_finish(b);
        b->sending = false;
        b->stage = BS_DRAIN;
        timer_cancel(loop_timers(b->loop), &b->tick);
        loop_timer_in(b->loop, &b->timer, DRAIN_MS);
        if (b->done == b->pub.sent)
            bcast_drained(b);
        break;
    case BS_DRAIN:
        bcast_drained(b);
        break;
    case BS_DONE:
        break;
    }
}

/* A subscriber that had been open is gone (the run is invalid already:
 * it counts as closed early); the rest must not wait for it. */
static void bcast_conn_gone(struct bench *b, struct bconn *bc)
{
    if (bc->rcvd && b->synced)
        b->synced--;
    if (b->phase != PH_RUN || !b->open)
        return;
    if (b->stage == BS_SYNC && b->synced >= b->open)
        bcast_go(b);
    else if (b->stage == BS_RUN || b->stage == BS_DRAIN)
        bcast_advance(b, mono_ns());
}

/* The time subscriber bc's message came in. Messages that arrive
 * together (one subscriber's, in one loop iteration) were read together,
 * so one clock read serves a run of them, and a new one is taken every
 * RX_CLOCK_EVERY messages. A clock read per message was a sixth of the
 * bench's CPU at 2,000 subscribers, enough to make it the bottleneck. */
#define RX_CLOCK_EVERY 32u
static uint64_t rx_now(struct bench *b, const struct bconn *bc)
{
    uint64_t it = loop_iteration(b->loop);

    if (bc != b->rx.bc || it != b->rx.iter || ++b->rx.n >= RX_CLOCK_EVERY) {
        b->rx.bc = bc;
        b->rx.iter = it;
        b->rx.n = 0;
        b->rx.ns = mono_ns();
    }
    return b->rx.ns;
}

static void bcast_on_message(struct bench *b, struct bconn *bc,
                             const uint8_t *p, size_t len)
{
    uint64_t seq, sent_at, now;

    if (len != b->o.size) {
        b->malformed++;
        return;
    }
    memcpy(&seq, p, sizeof(seq));
    memcpy(&sent_at, p + sizeof(seq), sizeof(sent_at));
    if (seq >= b->pub.sent) {
        b->malformed++; /* never published */
        return;
    }
    if (!bc->rcvd) {
        /* The first: where this subscriber's sequence starts (sync). */
        bc->rcvd = 1;
        bc->next = seq + 1;
        bc->missing = 0;
        b->synced++;
        if (b->stage == BS_SYNC && b->synced >= b->open)
            bcast_go(b);
        return;
    }
    if (seq == bc->next) {
        bc->next++;
        bc->missing <<= 1;
    } else if (seq > bc->next) {
        uint64_t gap = seq - bc->next;

        b->lost_msgs += gap;
        bc->missing = gap + 1 >= 64 ? ~(uint64_t)1
                                    : (bc->missing << (gap + 1)) |
                                          ((((uint64_t)1 << gap) - 1) << 1);
        bc->next = seq + 1;
    } else {
        uint64_t i = bc->next - 1 - seq;

        if (i >= 64 || !(bc->missing >> i & 1)) {
            b->duplicated++;
            return;
        }
        bc->missing &= ~((uint64_t)1 << i);
        b->lost_msgs--;
        b->reordered++;
    }
    bc->rcvd++;
    if (b->stage < BS_RUN || seq < b->win0)
        return; /* a probe */
    now = rx_now(b, bc);
    if (b->measuring) {
        b->rcvd++;
        hist_record(b->lat, now - sent_at);
    }
    if (seq >= b->done) {
        b->ring[seq % b->o.inflight]++;
        if (seq == b->done)
            bcast_advance(b, now);
    }
}

static void bcast_report(struct bench *b, FILE *out)
{
    double secs = echo_secs(b);
    uint64_t published = b->pub1 > b->pub0 ? b->pub1 - b->pub0 : 0;
    char p50[32], p99[32], p999[32], mx[32];

    fmt_ns(hist_quantile(b->lat, 0.50), p50, sizeof(p50));
    fmt_ns(hist_quantile(b->lat, 0.99), p99, sizeof(p99));
    fmt_ns(hist_quantile(b->lat, 0.999), p999, sizeof(p999));
    fmt_ns(hist_max(b->lat), mx, sizeof(mx));
    fprintf(out, "broadcast %s -> %s\n", b->o.pub_url, b->o.url);
    fprintf(out,
            "subscribers  %" PRIu32 " of %" PRIu32 " open, %" PRIu32
            " failed, %" PRIu32 " closed early; %" PRIu64 " B messages, ",
            b->opened, b->o.conns, b->failed, b->lost, b->o.size);
    if (b->o.rate)
        fprintf(out, "%" PRIu32 " per second\n", b->o.rate);
    else
        fprintf(out, "at most %" PRIu32 " in flight\n", b->o.inflight);
    fprintf(out,
            "measured     %.2f s after a %.1f s warm-up: %" PRIu64
            " messages published, %" PRIu64 " delivered\n",
            secs, b->o.warmup_ms / 1000.0, published, b->rcvd);
    fprintf(out, "deliveries/s %.0f (%.0f messages/s published)\n",
            secs > 0 ? b->rcvd / secs : 0.0, secs > 0 ? published / secs : 0.0);
    fprintf(out, "latency      p50 %s   p99 %s   p999 %s   max %s\n", p50, p99,
            p999, mx);
    if (secs > 0) {
        double self = cpu_pct(b->cpu0, b->cpu1, secs);

        fprintf(out, "cpu          bench %.0f%% of a core", self);
        if (b->srv_cpu)
            fprintf(out, ", server %.0f%% (pid %d)",
                    cpu_pct(b->srv_cpu0, b->srv_cpu1, secs), (int)b->pid);
        fprintf(out, "\n");
        if (self >= 90.0)
            fprintf(out, "warning      the bench kept its core busy: it may "
                         "have been the bottleneck\n");
    }
    fprintf(out,
            "check        %" PRIu64 " lost, %" PRIu64 " duplicated, %" PRIu64
            " out of order, %" PRIu64 " malformed, %" PRIu64
            " sends dropped%s\n",
            b->lost_msgs, b->duplicated, b->reordered, b->malformed, b->dropped,
            b->lost_msgs || b->duplicated || b->reordered || b->malformed ||
                    b->dropped
                ? ": NOT VALID"
                : "");
    if (b->held)
        fprintf(out,
                "held back    %" PRIu64 " scheduled messages (--inflight "
                "already outstanding)\n",
                b->held);
}

static void bcast_report_json(struct bench *b, FILE *out)
{
    double secs = echo_secs(b);
    uint64_t published = b->pub1 > b->pub0 ? b->pub1 - b->pub0 : 0;

    fprintf(out, "\"pub_url\": ");
    json_str(out, b->o.pub_url);
    fprintf(out,
            ", \"size\": %" PRIu64 ", \"inflight\": %" PRIu32 ", \"rate\": ",
            b->o.size, b->o.inflight);
    if (b->o.rate)
        fprintf(out, "%" PRIu32, b->o.rate);
    else
        fputs("null", out);
    fprintf(out,
            ", \"subscribers\": %" PRIu32 ", \"warmup_s\": %.3f, "
            "\"duration_s\": %.3f, \"published\": %" PRIu64
            ", \"published_per_s\": %.1f, \"deliveries\": %" PRIu64
            ", \"deliveries_per_s\": %.0f, \"latency_us\": {\"p50\": %.2f, "
            "\"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f, \"mean\": %.2f}, "
            "\"lost\": %" PRIu64 ", \"duplicated\": %" PRIu64
            ", \"out_of_order\": %" PRIu64 ", \"malformed\": %" PRIu64
            ", \"dropped\": %" PRIu64 ", \"held\": %" PRIu64
            ", \"bench_cpu_pct\": %.1f, \"server_cpu_pct\": ",
            b->nsubs, b->o.warmup_ms / 1000.0, secs, published,
            secs > 0 ? published / secs : 0.0, b->rcvd,
            secs > 0 ? b->rcvd / secs : 0.0, hist_quantile(b->lat, 0.50) / 1e3,
            hist_quantile(b->lat, 0.99) / 1e3,
            hist_quantile(b->lat, 0.999) / 1e3, hist_max(b->lat) / 1e3,
            hist_mean(b->lat) / 1e3, b->lost_msgs, b->duplicated, b->reordered,
            b->malformed, b->dropped, b->held, cpu_pct(b->cpu0, b->cpu1, secs));
    if (b->srv_cpu)
        fprintf(out, "%.1f", cpu_pct(b->srv_cpu0, b->srv_cpu1, secs));
    else
        fputs("null", out);
}

static bool bcast_invalid(const struct bench *b)
{
    return b->rcvd == 0 || b->lost_msgs || b->duplicated || b->reordered ||
           b->malformed || b->dropped;
}

/* ---- handshake --------------------------------------------------------- */

/*
 * The driver opens --conns connections (the ramp-up, not measured); then
 * every connection is closed as soon as it is open (conn_close: no
 * WebSocket close handshake; a TLS conn sends its close_notify) and the
 * end-of-iteration hook starts a new one in its slot (churn_launch), so
 * --conns handshakes are always in progress. The measuring window is
 * echo's (measure_from_now, echo_on_timer, echo_finish): b->rcvd counts
 * the handshakes completed in it and b->lat holds their times.
 */

static void hs_recycle(struct bench *b, struct bconn *bc)
{
    (void)b;
    bc->state = BC_RECYCLED;
    conn_close(bc->c, CLOSE_DONE); /* on_close runs now: the slot is free */
}

static void hs_start(struct bench *b)
{
    note(b,
         "handshake: %" PRIu32 " at a time, each connection closed once "
         "open; %.1f s warm-up, then %.1f s measured",
         b->o.conns, b->o.warmup_ms / 1000.0, b->o.duration_ms / 1000.0);
    for (uint32_t i = 0; i < b->o.conns; i++) {
        struct bconn *bc = &b->conns[i];

        if (bc->state == BC_OPEN && bc->c)
            hs_recycle(b, bc);
    }
    if (b->o.warmup_ms)
        loop_timer_in(b->loop, &b->timer, b->o.warmup_ms);
    else
        measure_from_now(b);
}

static void hs_on_open(struct bench *b, struct bconn *bc)
{
    b->hs_total++;
    if (b->measuring) {
        hist_record(b->lat, mono_ns() - bc->started);
        b->rcvd++;
    }
    hs_recycle(b, bc);
}

static void hs_report(struct bench *b, FILE *out)
{
    double secs = echo_secs(b);

    fprintf(out, "handshake %s\n", b->o.url);
    fprintf(out,
            "connections  %" PRIu32 " at a time, each closed once open; "
            "%" PRIu64 " handshakes in the run, %" PRIu32 " failed\n",
            b->o.conns, b->hs_total, b->failed);
    fprintf(out,
            "measured     %.2f s after a %.1f s warm-up: %" PRIu64
            " handshakes\n",
            secs, b->o.warmup_ms / 1000.0, b->rcvd);
    fprintf(out, "handshakes/s %.0f\n", secs > 0 ? b->rcvd / secs : 0.0);
    latency_cpu_lines(b, out, secs);
}

static void hs_report_json(struct bench *b, FILE *out)
{
    double secs = echo_secs(b);

    fprintf(out,
            "\"warmup_s\": %.3f, \"duration_s\": %.3f, \"handshakes\": %" PRIu64
            ", \"handshakes_per_s\": %.0f, \"handshakes_in_run\": %" PRIu64
            ", \"failed_in_run\": %" PRIu32 ", ",
            b->o.warmup_ms / 1000.0, secs, b->rcvd,
            secs > 0 ? b->rcvd / secs : 0.0, b->hs_total, b->run_failed);
    json_latency_cpu(b, out, secs);
}

static bool hs_invalid(const struct bench *b)
{
    return b->rcvd == 0;
}

/* ---- the modes --------------------------------------------------------- */

static const struct bench_mode modes[] = {
    {
        .name = "idle",
        .bit = M_IDLE,
        .default_conns = 10000,
        .summary = "open --conns connections, hold them idle for --hold, "
                   "and report the server's memory per connection: the "
                   "growth of its VmRSS (/proc/PID/status) and of its Pss "
                   "and Private (/proc/PID/smaps_rollup) from before the "
                   "first connection to the end of the hold, divided by "
                   "the connections open",
        .needs_pid = true,
        .start = idle_start,
        .on_timer = idle_on_timer,
        .report = idle_report,
        .report_json = idle_report_json,
    },
    {
        .name = "echo",
        .bit = M_ECHO,
        .default_conns = 64,
        .default_inflight = 16,
        .summary = "keep --inflight messages of --size bytes in flight on "
                   "each of --conns connections (a new one goes out when "
                   "one comes back); after --warmup, count for --duration "
                   "and report messages/s received and the round-trip "
                   "latency p50/p99/p999",
        .start = echo_start,
        .finish = echo_finish,
        .on_timer = echo_on_timer,
        .on_message = echo_on_message,
        .report = echo_report,
        .report_json = echo_report_json,
        .invalid = echo_invalid,
    },
    {
        .name = "broadcast",
        .bit = M_BCAST,
        .default_conns = 2000,
        .default_inflight = 64,
        .summary = "open --conns subscribers on --sub-url and one "
                   "publisher on --pub-url, and publish --size byte "
                   "messages: with --rate 0 as fast as every subscriber "
                   "takes them (at most --inflight published and not yet "
                   "received by all), else --rate per second; after "
                   "--warmup, count for --duration and report deliveries/s "
                   "(messages received by all subscribers together) and "
                   "the publish-to-receive latency p50/p99/p999; a message "
                   "lost, duplicated or out of order fails the run",
        .publisher = true,
        .start = bcast_start,
        .finish = bcast_finish,
        .on_timer = bcast_on_timer,
        .on_message = bcast_on_message,
        .report = bcast_report,
        .report_json = bcast_report_json,
        .invalid = bcast_invalid,
    },
    {
        .name = "handshake",
        .bit = M_HS,
        .default_conns = 32,
        .summary = "keep --conns connections in their opening handshake: "
                   "each is closed outright as soon as it is open and a "
                   "new one takes its place; after --warmup, count for "
                   "--duration and report handshakes/s and the time of "
                   "each (connect to the 101: TCP, TLS for wss://, the "
                   "upgrade) p50/p99/p999",
        .churn = true,
        .start = hs_start,
        .finish = echo_finish,
        .on_timer = echo_on_timer,
        .on_open = hs_on_open,
        .report = hs_report,
        .report_json = hs_report_json,
        .invalid = hs_invalid,
    },
};
static const struct bench_mode *mode_table(size_t *n)
{
    *n = ARRAY_SIZE(modes);
    return modes;
}

/* ---- set-up and the run ------------------------------------------------ */

static int setup_signals(struct bench *b)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    b->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (b->sigfd < 0)
        return -errno;
    b->sigw.fn = on_signal;
    return loop_watch(b->loop, b->sigfd, &b->sigw, EPOLLIN);
}

/* Allocates everything the run needs. Returns 0 or -1 with err set. */
static int setup(struct bench *b, char *err, size_t errlen)
{
    struct ws_client_opts co = {
        .max_message = MAX(b->o.size, (uint64_t)1 << 20),
        .connect_timeout_ms = b->o.connect_timeout_ms,
        .ping_interval_ms = 60000,
        .pong_timeout_ms = 30000,
        .close_timeout_ms = 5000,
    };
    /* Queue room for every message in flight twice over: sends never
     * meet the cap in a well-behaved run. */
    uint64_t q = (uint64_t)b->o.inflight * (b->o.size + 14) * 2;
    struct conn_limits lim = {
        .write_timeout_ms = 30000,
        .queue_limit = (uint32_t)MIN(MAX(q, (uint64_t)1 << 20), UINT32_MAX),
    };
    int rc;

    b->sigfd = -1;
    timer_init(&b->timer, on_timer);
    timer_init(&b->tick, bcast_on_tick);
    b->payload = mem_calloc(MEM_MISC, 1, MAX(b->o.size, WARM_MSG_MAX));
    b->conns = mem_calloc(MEM_MISC, b->o.conns, sizeof(*b->conns));
    if (!b->payload || !b->conns)
        goto nomem;
    memset(b->payload, 'm', MAX(b->o.size, WARM_MSG_MAX));
    if (b->mode->on_message || b->mode->churn) {
        b->lat = hist_new();
        if (!b->lat)
            goto nomem;
    }
    if (b->mode->bit == M_ECHO) {
        b->sent_at = mem_calloc(MEM_MISC, (size_t)b->o.conns * b->o.inflight,
                                sizeof(uint64_t));
        if (!b->sent_at)
            goto nomem;
        for (uint32_t i = 0; i < b->o.conns; i++)
            b->conns[i].sent_at = b->sent_at + (size_t)i * b->o.inflight;
    }
    if (b->mode->publisher) {
        b->ring = mem_calloc(MEM_MISC, b->o.inflight, sizeof(*b->ring));
        if (!b->ring)
            goto nomem;
    }
    b->loop = loop_new(256u << 10);
    if (!b->loop)
        goto nomem;
    /* Registered before the conn set's hook, so what it queues goes out
     * in the same iteration. */
    b->hook.fn = on_hook;
    loop_add_hook(b->loop, &b->hook);
    if (conn_set_init(&b->set, b->loop, &lim) < 0)
        goto nomem;
    b->set_ready = true;
    if (b->t.tls || b->pt.tls) {
        struct tls_client_opts to = {
            .ca_file = b->o.tls_ca[0] ? b->o.tls_ca : NULL,
            .insecure = b->o.insecure,
        };
        char terr[256];

        b->tls = tls_client_new(&to, terr, sizeof(terr));
        if (!b->tls) {
            snprintf(err, errlen, "TLS: %s", terr);
            return -1;
        }
    }
    b->cl = ws_client_new(&b->set, &co);
    if (!b->cl)
        goto nomem;
    b->h.on_open = on_open;
    b->h.on_message = on_message;
    b->h.on_close = on_close;
    b->h.arg = b;
    b->h.pause_on_backpressure = true;
    rc = setup_signals(b);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set up signals: %s", strerror(-rc));
        return -1;
    }
    return 0;

nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void teardown(struct bench *b)
{
    if (b->set_ready) {
        conn_set_each(&b->set, close_one, NULL);
        conn_set_fini(&b->set);
    }
    if (b->cl)
        ws_client_free(b->cl);
    tls_ctx_free(b->tls);
    if (b->sigfd >= 0) {
        if (b->loop)
            loop_unwatch(b->loop, b->sigfd);
        close(b->sigfd);
    }
    if (b->loop) {
        timer_cancel(loop_timers(b->loop), &b->timer);
        timer_cancel(loop_timers(b->loop), &b->tick);
        b->hook.fn = NULL;
        loop_free(b->loop);
    }
    hist_free(b->lat);
    mem_free(MEM_MISC, b->ring);
    mem_free(MEM_MISC, b->sent_at);
    mem_free(MEM_MISC, b->conns);
    mem_free(MEM_MISC, b->payload);
    mem_free(MEM_MISC, b->src);
}

/* The exit status the run earned (before the memory check). */
static int verdict(const struct bench *b)
{
    if (b->interrupted)
        return 130;
    if (b->fatal[0] || b->failed || b->lost)
        return 1;
    if (b->mode->invalid && b->mode->invalid(b))
        return 1;
    return 0;
}

static void report(struct bench *b)
{
    char why[512];

    if (b->o.json) {
        FILE *out = stdout;

        fprintf(out, "{\"mode\": ");
        json_str(out, b->mode->name);
        fprintf(out, ", \"url\": ");
        json_str(out, b->o.url);
        fprintf(out,
                ", \"conns\": %" PRIu32 ", \"open\": %" PRIu32
                ", \"failed\": %" PRIu32 ", \"closed_early\": %" PRIu32
                ", \"sources\": %" PRIu32 ", \"failures\": ",
                b->o.conns, b->opened, b->failed, b->lost, b->nsrc);
        json_reasons(out, &b->fail_why);
        fprintf(out, ", \"closed_early_reasons\": ");
        json_reasons(out, &b->lost_why);
        fprintf(out, ", \"error\": ");
        if (b->fatal[0])
            json_str(out, b->fatal);
        else
            fputs("null", out);
        fputs(", ", out);
        b->mode->report_json(b, out);
        fprintf(out, ", \"exit\": %d}\n", verdict(b));
        return;
    }
    b->mode->report(b, stdout);
    if (b->failed) {
        format_reasons(&b->fail_why, why, sizeof(why));
        printf("failed       %" PRIu32 ": %s\n", b->failed, why);
    }
    if (b->lost) {
        format_reasons(&b->lost_why, why, sizeof(why));
        printf("closed early %" PRIu32 ": %s\n", b->lost, why);
    }
}

/* After teardown: live bytes must be zero (invariant 7). */
static int check_memory(void)
{
    int64_t live = mem_live_bytes(MEM_ALL);

    if (live == 0)
        return 0;
    fprintf(stderr, "moor bench: %lld bytes still allocated at exit\n",
            (long long)live);
    if (mem_trace_enabled())
        mem_trace_dump(stderr);
#ifdef MOOR_DEBUG
    return 3;
#else
    return 0;
#endif
}

int bench_main(int argc, char **argv)
{
    struct bench *b;
    char err[512];
    int rc, status;

#ifdef MOOR_DEBUG
    mem_trace_enable();
#endif
    log_set_level(LOG_WARN);
    b = mem_calloc(MEM_MISC, 1, sizeof(*b));
    if (!b) {
        fprintf(stderr, "moor bench: out of memory\n");
        return 1;
    }
    b->sigfd = -1;
    rc = parse_args(b, argc, argv, err, sizeof(err));
    if (rc == 0 && parse_url(b->mode->publisher ? "sub-url" : "url", b->o.url,
                             &b->t, err, sizeof(err)) < 0)
        rc = -1;
    if (rc == 0 && b->mode->publisher &&
        parse_url("pub-url", b->o.pub_url, &b->pt, err, sizeof(err)) < 0)
        rc = -1;
    if (rc == 0 && parse_sources(b, err, sizeof(err)) < 0)
        rc = -1;
    if (rc != 0) {
        mem_free(MEM_MISC, b->src);
        mem_free(MEM_MISC, b);
        if (rc > 0)
            return 0;
        fprintf(stderr, "moor bench: %s\n", err);
        return 2;
    }
    status = 1;
    if (raise_nofile((uint64_t)b->o.conns + FD_RESERVE, err, sizeof(err)) < 0 ||
        check_ports(b, err, sizeof(err)) < 0 ||
        find_pid(b, err, sizeof(err)) < 0 || setup(b, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor bench: %s\n", err);
        goto out;
    }

    /* The warm-up connection (and the publisher), under the connect
     * timeout plus 5 s for its message and close. */
    b->phase = PH_WARMUP;
    loop_timer_in(b->loop, &b->timer, b->o.connect_timeout_ms + 5000);
    if (connect_own(b, &b->warm, &b->t, b->o.url, err, sizeof(err)) < 0 ||
        (b->mode->publisher &&
         connect_own(b, &b->pub, &b->pt, b->o.pub_url, err, sizeof(err)) < 0)) {
        fprintf(stderr, "moor bench: %s\n", err);
        goto out;
    }
    rc = loop_run(b->loop);
    if (rc < 0)
        stop_with(b, "event loop failed: %s", strerror(-rc));
    /* A run that stopped before connecting has nothing to report. */
    if (b->t_connect || b->o.json)
        report(b);
    if (b->fatal[0] && !b->interrupted)
        fprintf(stderr, "moor bench: %s\n", b->fatal);
    else if (b->interrupted)
        fprintf(stderr, "moor bench: interrupted\n");
    status = verdict(b);
out:
    teardown(b);
    mem_free(MEM_MISC, b);
    tls_mem_fini(); /* OpenSSL's process state, before the exit check */
    rc = check_memory();
    return rc ? rc : status;
}
