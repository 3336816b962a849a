/*
 * bench_flags.c - the flags of `moor bench` and its --help. The table is
 * read by the same engine as `moor serve`'s (flags.h), so both take the
 * same spellings and explain a bad value the same way; what is the
 * bench's own is here: the modes a flag applies to (.modes, M_*), the
 * defaults that depend on the mode (--conns, --inflight: def NULL), no
 * environment variables, and the checks after parsing (--tls, --size for
 * broadcast).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench_int.h"
#include "flags.h"
#include "util.h"

#define OPT(f) FLAG_FIELD(struct bench_opts, f)

static const struct flag bflags[] = {
    {.name = "url",
     .kind = FLAG_TEXT,
     OPT(url),
     .def = "ws://127.0.0.1:8080/echo",
     .modes = M_IDLE | M_ECHO | M_HS | M_HTTP,
     .arg = "URL",
     .help = "the server's WebSocket endpoint, ws://HOST[:PORT][/PATH] or "
             "wss:// (TLS), HOST an IP address or localhost; idle and echo: "
             "it must echo what it receives; handshake: any WebSocket "
             "endpoint (a query is sent with the path: "
             "/sub/CH?token=TOKEN for moor serve --auth jwt); http: the URL "
             "to GET, http:// or https:// (there the default is "
             "http://127.0.0.1:8080/healthz)"},
    {.name = "sub-url",
     .kind = FLAG_TEXT,
     OPT(sub_url),
     .def = "ws://127.0.0.1:8080/sub/bench",
     .modes = M_BCAST,
     .arg = "URL",
     .help = "where the subscribers connect (a WebSocket that receives every "
             "message published on --pub-url; a query is sent with the "
             "path, e.g. ?token=TOKEN)"},
    {.name = "pub-url",
     .kind = FLAG_TEXT,
     OPT(pub_url),
     .def = "ws://127.0.0.1:8080/pub/bench",
     .modes = M_BCAST,
     .arg = "URL",
     .help = "where the publisher connects (a WebSocket whose every message "
             "goes to every subscriber)"},
    {.name = "conns",
     .kind = FLAG_UINT,
     OPT(conns),
     .def = NULL, /* the mode's default_conns */
     .min = 1,
     .max = 10000000,
     .modes = M_ALL,
     .arg = "N",
     .help = "connections to open (handshake: connections in their "
             "handshake at once; http: requests in flight at once, each "
             "chain on a keep-alive connection of its own)"},
    {.name = "sources",
     .kind = FLAG_TEXT,
     OPT(sources),
     .def = "auto",
     .modes = M_WS,
     .arg = "ADDRS",
     .help = "local addresses to bind before connecting, round-robin: a "
             "range 127.0.0.2-127.0.0.50, a comma-separated list, \"none\", "
             "or \"auto\" (for a loopback server 127.0.0.2 onward, at least "
             "16 addresses and at most 20000 connections each; otherwise "
             "none)"},
    {.name = "parallel",
     .kind = FLAG_UINT,
     OPT(parallel),
     .def = "256",
     .min = 1,
     .max = 1000000,
     .modes = M_WS,
     .arg = "N",
     .help = "handshakes in progress at once while connecting"},
    {.name = "connect-timeout",
     .kind = FLAG_DURATION,
     OPT(connect_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = 3600000,
     .modes = M_ALL,
     .help = "a connection not open (TCP connect and handshake) after this "
             "fails (http: the client's connect and TLS deadlines)"},
    {.name = "timeout",
     .kind = FLAG_DURATION,
     OPT(timeout_ms),
     .def = "60s",
     .min = 1,
     .max = 86400000,
     .modes = M_ALL,
     .help = "the whole connecting phase; connections not open by then "
             "fail (http: each request's whole deadline)"},
    {.name = "pid",
     .kind = FLAG_UINT,
     OPT(pid),
     .def = "", /* none: found from the URL's address */
     .min = 1,
     .max = 4194304,
     .modes = M_WS,
     .arg = "PID",
     .help = "the server's process: idle measures its memory, the other "
             "modes report its CPU time (default: the one process that holds "
             "the socket listening on the (sub-)URL's address, from "
             "/proc/net/tcp and /proc/*/fd; the other modes go without when "
             "there is none)"},
    {.name = "hold",
     .kind = FLAG_DURATION,
     OPT(hold_ms),
     .def = "5s",
     .min = 0,
     .max = 86400000,
     .modes = M_IDLE,
     .help = "how long the connections stay idle before the last "
             "measurement"},
    {.name = "inflight",
     .kind = FLAG_UINT,
     OPT(inflight),
     .def = NULL, /* the mode's default_inflight */
     .min = 1,
     .max = 65536,
     .modes = M_ECHO | M_BCAST,
     .arg = "K",
     .help = "echo: messages in flight on each connection; broadcast: "
             "published messages not yet received by every subscriber, at "
             "most"},
    {.name = "size",
     .kind = FLAG_SIZE,
     OPT(size),
     .def = "32B",
     .min = 0,
     .max = MiB(16),
     .modes = M_ECHO | M_BCAST,
     .help = "bytes per message (binary; broadcast: at least 16)"},
    {.name = "rate",
     .kind = FLAG_UINT,
     OPT(rate),
     .def = "0",
     .min = 0,
     .max = 1000000,
     .modes = M_BCAST | M_HTTP,
     .arg = "R",
     .help = "publish R messages per second (latency); 0: as fast as "
             "--inflight lets the publisher (throughput); http: R requests "
             "per second in all, open loop, latency from each one's "
             "scheduled time; 0: each chain sends as soon as its last "
             "answer is in"},
    {.name = "duration",
     .kind = FLAG_DURATION,
     OPT(duration_ms),
     .def = "10s",
     .min = 1,
     .max = 86400000,
     .modes = M_ECHO | M_BCAST | M_HS | M_HTTP,
     .help = "how long to measure, after the warm-up"},
    {.name = "warmup",
     .kind = FLAG_DURATION,
     OPT(warmup_ms),
     .def = "1s",
     .min = 0,
     .max = 3600000,
     .modes = M_ECHO | M_BCAST | M_HS | M_HTTP,
     .help = "traffic before measuring starts; not counted"},
    {.name = "idle-hold",
     .kind = FLAG_DURATION,
     OPT(idle_hold_ms),
     .def = "",
     .min = 1,
     .max = 86400000,
     .modes = M_HTTP,
     .help = "instead of a request loop: --conns requests at once on as many "
             "new connections, then hold them idle in the pool this long "
             "and report the client's own memory per pooled connection"},
    {.name = "max-handshakes",
     .kind = FLAG_UINT,
     OPT(max_handshakes),
     .def = "64",
     .min = 0,
     .max = 10000000,
     .modes = M_HTTP,
     .arg = "N",
     .help = "TLS handshakes in flight at once; the other connections wait "
             "their turn (0: no limit)"},
    {.name = "json",
     .kind = FLAG_BOOL,
     OPT(json),
     .def = "false",
     .modes = M_ALL,
     .help = "print the result as one JSON object instead of a table"},
    {.name = "tls-ca",
     .kind = FLAG_PATH,
     OPT(tls_ca),
     .def = "",
     .modes = M_ALL,
     .help = BENCH_TLS_CA_HELP},
    {.name = "tls",
     .kind = FLAG_BOOL,
     OPT(tls),
     .def = "false",
     .modes = M_ALL,
     .help = "connect with TLS: a ws:// URL is taken as wss://, an http:// "
             "one as https:// (the server's certificate is verified, see "
             "--tls-ca and --insecure)"},
    {.name = "insecure",
     .kind = FLAG_BOOL,
     OPT(insecure),
     .def = "false",
     .modes = M_ALL,
     .help = BENCH_INSECURE_HELP},
};

static const struct flag_table table = {
    .flags = bflags,
    .n = ARRAY_SIZE(bflags),
    .cmd = "moor bench",
    .env_prefix = NULL, /* moor bench reads no environment */
};

/* The default of a flag whose value depends on the mode (def NULL). */
static uint32_t mode_default(const struct bench_mode *m, const struct flag *f)
{
    return !strcmp(f->name, "inflight") ? m->default_inflight
                                        : m->default_conns;
}

/* A flag's text in --help: "[modes] " when not all, the help sentence,
 * and its default: none, one, or one per mode. */
static void flag_text(const struct flag *f, char *text, size_t len)
{
    char which[64];
    size_t wn = 0;

    which[0] = '\0';
    if (f->modes != M_ALL) {
        for (size_t m = 0; m < bench_n_modes; m++)
            if (f->modes & bench_modes[m]->bit)
                wn += (size_t)snprintf(which + wn, sizeof(which) - wn, "%s%s",
                                       wn ? ", " : "[", bench_modes[m]->name);
        snprintf(which + wn, sizeof(which) - wn, "] ");
    }
    if (f->def && !f->def[0]) {
        snprintf(text, len, "%s%s", which, f->help);
    } else if (f->def) {
        /* Every boolean is off unless given. */
        snprintf(text, len, "%s%s (default %s)", which, f->help,
                 f->kind == FLAG_BOOL ? "off" : f->def);
    } else {
        size_t tn =
            (size_t)snprintf(text, len, "%s%s (default", which, f->help);
        bool first = true;

        for (size_t m = 0; m < bench_n_modes && tn < len; m++) {
            if (!(f->modes & bench_modes[m]->bit))
                continue;
            tn += (size_t)snprintf(
                text + tn, len - tn, "%s %" PRIu32 " for %s", first ? "" : ",",
                mode_default(bench_modes[m], f), bench_modes[m]->name);
            first = false;
        }
        if (tn < len)
            snprintf(text + tn, len - tn, ")");
    }
}

static void print_help(FILE *out)
{
    char text[640];
    int col = flags_help_column(&table), mw = 0;

    fprintf(out, "usage: moor bench MODE [flags]\n\n");
    flags_wrap(out,
               "moor bench drives a WebSocket echo server (moor serve's "
               "/echo, or any other), or a broadcast server (moor serve's "
               "/sub and /pub), with moor's own client and measures it; "
               "its http mode drives an HTTP server with moor's HTTP "
               "client and measures the client too. One "
               "event loop on one thread: pin it to a core of its own "
               "(taskset -c 1) and the server to another. Connections are "
               "bound round-robin to the --sources addresses, so ephemeral "
               "ports never run out, and the open-files limit is raised to "
               "its hard limit.",
               0, 0);
    fprintf(out, "\nmodes:\n");
    for (size_t i = 0; i < bench_n_modes; i++)
        mw = MAX(mw, (int)strlen(bench_modes[i]->name));
    for (size_t i = 0; i < bench_n_modes; i++) {
        fprintf(out, "  %-*s", mw + 2, bench_modes[i]->name);
        flags_wrap(out, bench_modes[i]->summary, mw + 4, mw + 4);
    }
    fprintf(out, "\nflags (the modes they apply to, if not all):\n");
    for (size_t i = 0; i < table.n; i++) {
        flag_text(&bflags[i], text, sizeof(text));
        flags_print_flag(out, col, &bflags[i], text);
    }
    flags_print_row(out, col, "  -h, --help", "print this help");
    fprintf(out, "\n");
    flags_wrap(out,
               "Durations are written 250ms, 10s, 2m; sizes 32B, 4KiB, 1MiB. "
               "Exit status: 0 the run went as asked; 1 the server could not "
               "be reached, or a connection failed, closed early or echoed "
               "the wrong bytes, or a broadcast message was lost, duplicated "
               "or reordered, or an HTTP request failed (the figures are "
               "still printed); 2 usage; 130 "
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
                 "--conns 32 --duration 10s\n"
                 "  moor bench http --url http://127.0.0.1:8080/healthz "
                 "--conns 50 \\\n"
                 "      --duration 10s [--rate 1000]\n"
                 "  moor bench http --url https://127.0.0.1:8443/ --conns 1000 "
                 "\\\n"
                 "      --idle-hold 5s --tls-ca ca.pem\n");
}

/* --tls: "ws://..." becomes "wss://...", "http://..." "https://..." (in
 * place; a URL too long for the field is left alone, and the URL's check
 * then reports it). */
static void with_tls(char *url, size_t cap)
{
    size_t n = strlen(url), s;

    if (!strncasecmp(url, "ws://", 5))
        s = 2;
    else if (!strncasecmp(url, "http://", 7))
        s = 4;
    else
        return;
    if (n + 2 > cap)
        return;
    memmove(url + s + 1, url + s, n - s + 1); /* "://..." and its NUL */
    url[s] = 's';
}

int bench_parse_args(struct bench *b, int argc, char **argv, char *err,
                     size_t errlen)
{
    static const char *const asks[] = {"--help", "-h", NULL};

    if (flags_find_word(&table, argc, argv, asks)) {
        print_help(stdout);
        return 1;
    }
    if (argc < 1 || argv[0][0] == '-') {
        snprintf(err, errlen,
                 "missing mode: moor bench "
                 "idle|echo|broadcast|handshake|http [flags] (see moor "
                 "bench --help)");
        return -1;
    }
    for (size_t m = 0; m < bench_n_modes; m++)
        if (!strcmp(argv[0], bench_modes[m]->name))
            b->mode = bench_modes[m];
    if (!b->mode) {
        snprintf(err, errlen,
                 "unknown mode \"%s\": expected idle, echo, broadcast, "
                 "handshake or http (see moor bench --help)",
                 argv[0]);
        return -1;
    }
    memset(&b->o, 0, sizeof(b->o));
    flags_defaults(&table, &b->o);
    if (b->mode->default_url)
        snprintf(b->o.url, sizeof(b->o.url), "%s", b->mode->default_url);
    if (flags_parse(&table, &b->o, argc - 1, argv + 1, NULL, b->mode->bit,
                    b->mode->name, err, errlen) < 0)
        return -1;
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
