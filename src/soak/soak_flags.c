/*
 * soak_flags.c - the flags of `moor soak` and its --help: one table read
 * by the flag engine of `moor serve` and `moor bench` (flags.h), so the
 * spellings, units and errors are the same; no environment variables.
 * The checks after parsing (the fault list, --rounds or --duration) are
 * here too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "flags.h"
#include "soak_int.h"
#include "util.h"

#define OPT(f) FLAG_FIELD(struct soak_opts, f)

static const struct flag sflags[] = {
    {.name = "url",
     .kind = FLAG_TEXT,
     OPT(url),
     .def = "ws://127.0.0.1:8080/echo",
     .arg = "URL",
     .help = "the server's WebSocket echo endpoint, ws://HOST[:PORT][/PATH] "
             "or wss:// (TLS: see --tls-ca, --insecure), HOST an IP address "
             "or localhost (it must send back every message it receives); "
             "or an http:// URL to GET over keep-alive connections (answers "
             "with a Content-Length); or, with --pub-url, where subscribers "
             "connect: ws://, wss://, http:// (Server-Sent Events) or "
             "tcp://HOST:PORT/CHANNEL (length-prefixed TCP frames, moor's "
             "--tcp-listen: a first frame \"SUB CHANNEL\")"},
    {.name = "pub-url",
     .kind = FLAG_TEXT,
     OPT(pub_url),
     .def = "",
     .arg = "URL",
     .help = "publish instead of echoing: --url is then where the "
             "subscribers connect, over WebSocket (moor serve: "
             "ws://HOST:PORT/sub/CH) or Server-Sent Events (an http:// --url: "
             "GET with Accept: text/event-stream), and every round a new "
             "WebSocket publisher connects here (ws://HOST:PORT/pub/CH), "
             "sends --messages messages, and each subscriber must receive "
             "them all; a wss:// publisher, or tcp://HOST:PORT/CHANNEL (a "
             "first frame \"PUB CHANNEL\", then a frame per message); empty: "
             "--url echoes"},
    {.name = "pid",
     .kind = FLAG_UINT,
     OPT(pid),
     .def = "",
     .min = 1,
     .max = 4194304,
     .arg = "PID",
     .help = "the server's process, whose memory, fds and threads are "
             "sampled (default: the one process holding the socket "
             "listening on the URL's address)"},
    {.name = "conns",
     .kind = FLAG_UINT,
     OPT(conns),
     .def = "50",
     .min = 1,
     .max = 100000,
     .arg = "N",
     .help = "connections opened, used and closed every round"},
    {.name = "messages",
     .kind = FLAG_UINT,
     OPT(messages),
     .def = "10",
     .min = 0,
     .max = 100000,
     .arg = "N",
     .help = "messages each connection sends every round, each waited for "
             "echoed (with --pub-url: messages published every round, each "
             "waited for at every subscriber; http://: GET requests, one "
             "after the other)"},
    {.name = "size",
     .kind = FLAG_SIZE,
     OPT(size),
     .def = "1KiB",
     .min = 1,
     .max = MiB(4),
     .help = "the mean size of a message"},
    {.name = "spread",
     .kind = FLAG_UINT,
     OPT(spread),
     .def = "50",
     .min = 0,
     .max = 100,
     .arg = "PCT",
     .help = "message sizes are uniform in --size plus or minus this "
             "percentage of it (0: all the same)"},
    {.name = "rounds",
     .kind = FLAG_UINT,
     OPT(rounds),
     .def = "20",
     .min = 0,
     .max = 10000000,
     .arg = "N",
     .help = "rounds to run, the warm-up included (0: until --duration)"},
    {.name = "duration",
     .kind = FLAG_DURATION,
     OPT(duration_ms),
     .def = "0",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "stop after the round running when this much time has passed "
             "(0: --rounds alone decides)"},
    {.name = "warmup",
     .kind = FLAG_UINT,
     OPT(warmup),
     .def = "3",
     .min = 0,
     .max = 1000000,
     .arg = "N",
     .help = "first rounds left out of the verdict (caches, pools and "
             "lazily built tables fill then)"},
    {.name = "leak-threshold",
     .kind = FLAG_SIZE,
     OPT(leak_threshold),
     .def = "1MiB",
     .min = 0,
     .max = GiB(64),
     .help = "the noise floor: a memory series leaks only if its fitted "
             "growth over the measured rounds exceeds this (fds and threads "
             "have none)"},
    {.name = "out",
     .kind = FLAG_PATH,
     OPT(out),
     .def = "",
     .arg = "DIR",
     .help = "write samples.csv (a row per round, as it is taken), "
             "summary.json (the verdict), plot.svg (every series over the "
             "rounds with its fitted slope) and report.html (the verdict, "
             "the table, the command and the plot on one page) into this "
             "directory, made if missing; empty: the terminal only"},
    {.name = "hold",
     .kind = FLAG_DURATION,
     OPT(hold_ms),
     .def = "1s",
     .min = 0,
     .max = 3600000,
     .help = "how long every round's connections stay open and idle after "
             "their messages, the fault connections beside them"},
    {.name = "settle",
     .kind = FLAG_DURATION,
     OPT(settle_ms),
     .def = "500ms",
     .min = 0,
     .max = 600000,
     .help = "after every connection is closed, wait this long (and until "
             "the server's fd count holds still, 2 s more at most) before "
             "sampling"},
    {.name = "faults",
     .kind = FLAG_TEXT,
     OPT(faults),
     .def = "slow,vanish,half,handshake",
     .arg = "LIST",
     .help = "the leak-prone states the fault connections are put in, "
             "round-robin: slow (sends messages and never reads the "
             "echoes, a small receive buffer), vanish (one message, then "
             "silent: its echo never read, pings never answered; then gone "
             "without a FIN: an RST from SO_LINGER 0), half (half a frame "
             "sent, then nothing), handshake (half an upgrade request, "
             "then an RST); over http://: slow pipelines requests and never "
             "reads the answers, vanish sends one and resets, half sends "
             "half a request head, handshake connects and resets; \"none\" "
             "for no faults"},
    {.name = "fault-conns",
     .kind = FLAG_UINT,
     OPT(fault_conns),
     .def = "4",
     .min = 0,
     .max = 10000,
     .arg = "N",
     .help = "fault connections every round, beside --conns"},
    {.name = "close",
     .kind = FLAG_ENUM,
     OPT(close),
     .def = "mixed",
     .choices = "clean|rst|mixed",
     .help = "how the --conns connections end: clean (a close handshake), "
             "rst (an RST, from SO_LINGER 0), or mixed (every other one each "
             "way)"},
    {.name = "mem-url",
     .kind = FLAG_TEXT,
     OPT(mem_url),
     .def = "auto",
     .arg = "URL",
     .help = "moor's /debug/mem, read every round for its accounted live "
             "bytes per tag: http://HOST:PORT/debug/mem, \"auto\" (that "
             "path on the --url's address, used if it answers like moor's; "
             "none for wss:// and tcp:// URLs, which speak no plain HTTP), "
             "or \"none\""},
    {.name = "connect-timeout",
     .kind = FLAG_DURATION,
     OPT(connect_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = 3600000,
     .help = "a connection not open (TCP and handshake) by then fails"},
    {.name = "timeout",
     .kind = FLAG_DURATION,
     OPT(timeout_ms),
     .def = "30s",
     .min = 1,
     .max = 3600000,
     .help = "each phase of a round (opening, the echoes, closing) ends by "
             "then; a round where no connection opened loses the target"},
    {.name = "tls-ca",
     .kind = FLAG_PATH,
     OPT(tls_ca),
     .def = "",
     .help = BENCH_TLS_CA_HELP "; empty: the system's store"},
    {.name = "insecure",
     .kind = FLAG_BOOL,
     OPT(insecure),
     .def = "false",
     .help = BENCH_INSECURE_HELP},
};

static const struct flag_table table = {
    .flags = sflags,
    .n = ARRAY_SIZE(sflags),
    .cmd = "moor soak",
    .env_prefix = NULL,
};

static const char *const fault_names[F_NKINDS] = {"slow", "vanish", "half",
                                                  "handshake"};

static void print_help(FILE *out)
{
    char text[1024];
    int col = flags_help_column(&table);

    fprintf(out, "usage: moor soak [flags]\n\n");
    flags_wrap(out,
               "moor soak drives a WebSocket echo server, over ws:// or wss:// "
               "(or a publish/subscribe one, --pub-url, with subscribers on "
               "WebSocket, Server-Sent Events or TCP frames; or an HTTP/1.1 "
               "one over keep-alive) round after round "
               "and says whether it leaks. Every round opens --conns "
               "connections, echoes --messages messages on each (or "
               "publishes them to every one), holds them "
               "idle beside --fault-conns connections put in leak-prone "
               "states (--faults), closes them all (--close), waits for "
               "quiet (--settle), then samples the server's process from "
               "/proc: RSS, anonymous RSS, Pss and private bytes, open fds, "
               "threads, and, when it is moor, its accounted live bytes per "
               "tag from /debug/mem. The verdict drops the --warmup rounds "
               "and fits a Theil-Sen slope to each series with its 95% "
               "confidence interval: a memory series leaks when the interval "
               "excludes zero, the fitted growth exceeds "
               "--leak-threshold and its floor rose too (a garbage-collected "
               "heap that falls back at each collection breathes); one that "
               "rose and then levelled off is "
               "allocator retention, not a leak; fds or threads rising "
               "steadily are a leak.",
               0, 0);
    fprintf(out, "\nflags:\n");
    for (size_t i = 0; i < table.n; i++) {
        const struct flag *f = &sflags[i];

        if (f->def && f->def[0])
            snprintf(text, sizeof(text), "%s (default %s)", f->help, f->def);
        else
            snprintf(text, sizeof(text), "%s", f->help);
        flags_print_flag(out, col, f, text);
    }
    flags_print_row(out, col, "  -h, --help", "print this help");
    fprintf(out, "\n");
    flags_wrap(out,
               "Durations are written 250ms, 10s, 2m, 1h; sizes 32B, 4KiB, "
               "1MiB. A progress line per round goes to stderr; the verdict "
               "to stdout. Exit status: 0 no leak; 1 a leak (the series are "
               "named); 2 it could not run: usage, the server unreachable, "
               "or lost during the run (the round is said and the samples "
               "taken are kept), or fewer than 4 rounds after the warm-up; "
               "130 interrupted.",
               0, 0);
    fprintf(out, "\nexamples:\n"
                 "  moor soak --url ws://127.0.0.1:8080/echo --rounds 100 "
                 "--out soak/\n"
                 "  moor soak --url ws://127.0.0.1:8080/sub/s --pub-url "
                 "ws://127.0.0.1:8080/pub/s --rounds 100\n"
                 "  moor soak --url http://127.0.0.1:8080/healthz --rounds "
                 "100\n"
                 "  moor soak --url wss://127.0.0.1:8443/echo --tls-ca ca.pem "
                 "--mem-url http://127.0.0.1:8080/debug/mem\n"
                 "  moor soak --url tcp://127.0.0.1:9000/s --pub-url "
                 "tcp://127.0.0.1:9000/s --rounds 100\n"
                 "  moor soak --url ws://127.0.0.1:9000/ --pid 4242 "
                 "--duration 2h --conns 500 \\\n"
                 "      --size 4KiB --spread 90 --close rst --out soak/\n");
}

static int parse_faults(struct soak *s, char *err, size_t errlen)
{
    const char *p = s->o.faults;

    s->fault_mask = 0;
    if (!strcmp(p, "none") || !p[0]) {
        s->o.fault_conns = 0; /* nothing to put them in */
        return 0;
    }
    while (*p) {
        size_t n = strcspn(p, ","), k;

        for (k = 0; k < F_NKINDS; k++)
            if (strlen(fault_names[k]) == n && !strncmp(p, fault_names[k], n))
                break;
        if (k == F_NKINDS) {
            snprintf(err, errlen,
                     "invalid --faults \"%.100s\": expected a comma-separated "
                     "list of slow, vanish, half, handshake, or none",
                     s->o.faults);
            return -1;
        }
        s->fault_mask |= 1u << k;
        p += n + (p[n] == ',');
    }
    for (unsigned k = 0; k < F_NKINDS; k++)
        s->nfault_kinds += (s->fault_mask >> k) & 1;
    return 0;
}

int soak_parse_args(struct soak *s, int argc, char **argv, char *err,
                    size_t errlen)
{
    static const char *const asks[] = {"--help", "-h", NULL};

    if (flags_find_word(&table, argc, argv, asks)) {
        print_help(stdout);
        return 1;
    }
    memset(&s->o, 0, sizeof(s->o));
    flags_defaults(&table, &s->o);
    if (flags_parse(&table, &s->o, argc, argv, NULL, 0, NULL, err, errlen) < 0)
        return -1;
    if (!s->o.rounds && !s->o.duration_ms) {
        snprintf(err, errlen,
                 "--rounds 0 needs a --duration: the run would never end");
        return -1;
    }
    if (s->o.rounds && s->o.rounds < s->o.warmup + 4) {
        snprintf(err, errlen,
                 "--rounds %" PRIu32 " leaves fewer than 4 rounds after "
                 "--warmup %" PRIu32 ": no verdict could be made",
                 s->o.rounds, s->o.warmup);
        return -1;
    }
    return parse_faults(s, err, errlen);
}
