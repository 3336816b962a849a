/*
 * config.c - every flag of `moor serve` in one table: its field, its
 * default, its range, its environment variable, its help sentence and the
 * metric that counts the times it bites (STYLE 4.8, limits come in threes).
 * config_defaults(), config_parse(), --help and docs/limits.md are all
 * read from that table, so they cannot drift apart.
 *
 * Invariants.
 * - A default is kept as text and goes through the same parser as a flag,
 *   so the default --help shows is the default moor runs with.
 * - Precedence is flag > environment > default. An environment variable
 *   set to the empty string counts as unset.
 * - --help and --limits-md win over anything else on the command line and
 *   over a bad environment variable: asking for help never fails.
 * - Every error is one line naming the flag, the bad value, where the
 *   value came from when it was not the command line, and what is
 *   expected, including the range when the value was out of it.
 *
 * What it must not do. Allocate (every field of struct moor_config has a
 * fixed size), touch the process environment other than through envp, or
 * reach into the layers below: it only fills a struct that serve.c reads.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "tls.h"

/* Ticks are 32-bit milliseconds compared with wrap-safe arithmetic, so a
 * deadline must stay under 2^31 ms (24.8 days). 24 days is the round
 * number under it. */
#define DURATION_MAX_MS (24u * 24 * 3600 * 1000)

/* The read buffer holds a carried partial header block (up to
 * max-header-bytes) and still needs room to read the rest of it. */
#define READ_BUFFER_HEADROOM 4096u

#define KiB(n) ((uint64_t)(n) << 10)
#define MiB(n) ((uint64_t)(n) << 20)
#define GiB(n) ((uint64_t)(n) << 30)

#define HELP_WIDTH 80

enum opt_kind {
    OPT_ADDR,     /* char[]: host:port, [v6]:port or :port */
    OPT_UINT,     /* uint32_t */
    OPT_DURATION, /* uint32_t, milliseconds */
    OPT_SIZE,     /* uint64_t, bytes */
    OPT_ENUM,     /* char[]: one of opt.choices */
    OPT_BOOL,     /* bool: no value on the command line */
    OPT_ORIGINS,  /* char[]: comma-separated origins, "*", or empty */
    OPT_PATH,     /* char[]: a file name, or empty */
    OPT_TEXT,     /* char[]: free text checked by its user (a list) */
};

struct opt {
    const char *name; /* long flag without the leading "--" */
    enum opt_kind kind;
    size_t off;          /* offsetof(struct moor_config, field) */
    size_t len;          /* sizeof the field, checked against the kind */
    const char *def;     /* default as text, exactly as --help shows it */
    uint64_t min, max;   /* uint: value; duration: ms; size: bytes */
    const char *choices; /* OPT_ENUM: "a|b|c" */
    const char *arg;     /* metavariable in --help; NULL = per kind */
    const char *help;    /* one sentence, no final period */
    const char *metric;  /* series that counts it biting, or "-" */
};

#define FIELD(f)                                                               \
    .off = offsetof(struct moor_config, f),                                    \
    .len = sizeof(((struct moor_config *)0)->f)

/*
 * The table. Keep the choices of --log-level in step with
 * log_parse_level() in log.c (not called here so that this file links on
 * its own in unit tests).
 */
static const struct opt opts[] = {
    {.name = "listen",
     .kind = OPT_ADDR,
     FIELD(listen),
     .def = "127.0.0.1:8080",
     .help = "address to serve HTTP on, host:port or [v6]:port; \":port\" "
             "listens on every IPv4 interface; port 0 picks a free port",
     .metric = "-"},
    {.name = "tcp-listen",
     .kind = OPT_ADDR,
     FIELD(tcp_listen),
     .def = "",
     .help = "also serve pub/sub as length-prefixed TCP frames here "
             "(4-byte big-endian length, then payload; first frame \"SUB "
             "a b\" or \"PUB ch\"); empty: off",
     .metric = "moor_closed_total{reason=\"protocol_error\"}"},
    {.name = "tcp-tls",
     .kind = OPT_BOOL,
     FIELD(tcp_tls),
     .def = "false",
     .help = "--tcp-listen speaks TLS (the frames inside it), with "
             "--tls-cert and --tls-key and the same TLS settings as "
             "--tls-listen",
     .metric = "moor_tls_handshakes_total"},
    {.name = "tls-listen",
     .kind = OPT_ADDR,
     FIELD(tls_listen),
     .def = "",
     .help = "also serve everything --listen serves over TLS here (HTTPS, "
             "wss://, SSE); needs --tls-cert and --tls-key; empty: off",
     .metric = "moor_tls_handshakes_total"},
    {.name = "tls-cert",
     .kind = OPT_PATH,
     FIELD(tls_cert),
     .def = "",
     .help = "PEM certificate chain for --tls-listen: the server's "
             "certificate first, then intermediates; SIGHUP reloads it",
     .metric = "moor_tls_reloads_total"},
    {.name = "tls-key",
     .kind = OPT_PATH,
     FIELD(tls_key),
     .def = "",
     .help = "PEM private key (not encrypted) of --tls-cert; SIGHUP "
             "reloads it",
     .metric = "moor_tls_reloads_total"},
    {.name = "tls-min-version",
     .kind = OPT_ENUM,
     FIELD(tls_min_version),
     .def = "1.2",
     .choices = "1.2|1.3",
     .arg = "VERSION",
     .help = "oldest TLS version accepted; older clients fail the "
             "handshake",
     .metric = "moor_tls_handshakes_total{result=\"failed\"}"},
    {.name = "tls-ciphersuites",
     .kind = OPT_TEXT,
     FIELD(tls_ciphersuites),
     .def = TLS_SUITES_DEFAULT,
     .arg = "LIST",
     .help = "TLS 1.3 cipher suites, most preferred first, colon-separated "
             "(OpenSSL names); ChaCha20 first because its state is the "
             "smallest per connection",
     .metric = "-"},
    {.name = "tls-ciphers",
     .kind = OPT_TEXT,
     FIELD(tls_ciphers),
     .def = TLS_CIPHERS_DEFAULT,
     .arg = "LIST",
     .help = "TLS 1.2 cipher list, most preferred first (OpenSSL cipher "
             "string)",
     .metric = "-"},
    {.name = "tls-tickets",
     .kind = OPT_BOOL,
     FIELD(tls_tickets),
     .def = "false",
     .help = "issue TLS session tickets so returning clients skip the full "
             "handshake (the server keeps no per-session state; off: "
             "every handshake is full)",
     .metric = "-"},
    {.name = "handshake-timeout",
     .kind = OPT_DURATION,
     FIELD(handshake_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "close a TLS connection whose handshake takes longer (a client "
             "that sends nothing or half a ClientHello)",
     .metric = "moor_closed_total{reason=\"handshake_timeout\"}"},
    {.name = "max-conns",
     .kind = OPT_UINT,
     FIELD(max_conns),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .help = "open connections at most; more are answered 503 and closed",
     .metric = "moor_refused_total{reason=\"max_conns\"}"},
    {.name = "accept-rate",
     .kind = OPT_UINT,
     FIELD(accept_rate),
     .def = "2000",
     .min = 0,
     .max = 10000000,
     .help = "new connections accepted per second, 0 = no limit; above it "
             "accepting pauses and the kernel backlog waits",
     .metric = "moor_accept_paused_total{reason=\"rate\"}"},
    {.name = "accept-burst",
     .kind = OPT_UINT,
     FIELD(accept_burst),
     .def = "500",
     .min = 1,
     .max = 10000000,
     .help = "connections accepted at once before --accept-rate applies",
     .metric = "moor_accept_paused_total{reason=\"rate\"}"},
    {.name = "header-timeout",
     .kind = OPT_DURATION,
     FIELD(header_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "close a connection whose request headers take longer",
     .metric = "moor_closed_total{reason=\"header_timeout\"}"},
    {.name = "body-timeout",
     .kind = OPT_DURATION,
     FIELD(body_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "close a connection whose request body is not complete "
             "this long after its headers",
     .metric = "moor_closed_total{reason=\"body_timeout\"}"},
    {.name = "message-timeout",
     .kind = OPT_DURATION,
     FIELD(message_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "once part of a message has arrived (a WebSocket frame or "
             "fragment, a framed TCP frame, half a TLS record), close the "
             "connection if the rest takes longer; counted from that first "
             "part, not extended by pings or trickled bytes",
     .metric = "moor_closed_total{reason=\"message_timeout\"}"},
    {.name = "idle-timeout",
     .kind = OPT_DURATION,
     FIELD(idle_timeout_ms),
     .def = "60s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "close a keep-alive connection idle this long",
     .metric = "moor_closed_total{reason=\"idle_timeout\"}"},
    {.name = "write-timeout",
     .kind = OPT_DURATION,
     FIELD(write_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "close a connection whose peer takes none of the bytes "
             "waiting for it this long",
     .metric = "moor_closed_total{reason=\"write_timeout\"}"},
    {.name = "linger-timeout",
     .kind = OPT_DURATION,
     FIELD(linger_timeout_ms),
     .def = "2s",
     .min = 0,
     .max = DURATION_MAX_MS,
     .help = "after an error response, how long unread request bytes are "
             "drained before the socket is closed",
     .metric = "moor_closed_total{reason=\"linger_timeout\"}"},
    {.name = "shutdown-timeout",
     .kind = OPT_DURATION,
     FIELD(shutdown_timeout_ms),
     .def = "10s",
     .min = 0,
     .max = DURATION_MAX_MS,
     .help = "on SIGTERM or SIGINT, how long requests in flight may "
             "finish before the rest are closed",
     .metric = "moor_closed_total{reason=\"shutdown\"}"},
    {.name = "max-header-bytes",
     .kind = OPT_SIZE,
     FIELD(max_header_bytes),
     .def = "8KiB",
     .min = 256,
     .max = KiB(60),
     .help = "request line and headers at most, in bytes; more is "
             "answered 431; it must fit in --read-buffer",
     .metric = "moor_http_rejected_total{status=\"431\"}"},
    {.name = "max-headers",
     .kind = OPT_UINT,
     FIELD(max_headers),
     .def = "100",
     .min = 1,
     .max = HTTP_MAX_HEADERS_CAP,
     .help = "header fields per request at most; more is answered 431",
     .metric = "moor_http_rejected_total{status=\"431\"}"},
    {.name = "max-body",
     .kind = OPT_SIZE,
     FIELD(max_body),
     .def = "1MiB",
     .min = 0,
     .max = GiB(1024),
     .help = "request body at most; more is answered 413",
     .metric = "moor_http_rejected_total{status=\"413\"}"},
    {.name = "queue-limit",
     .kind = OPT_SIZE,
     FIELD(queue_limit),
     .def = "1MiB",
     .min = KiB(1),
     .max = GiB(1),
     .help = "bytes queued for one connection at most, and one message "
             "per 16 bytes of it (so the queue's own slots fit under it "
             "too); a peer that falls further behind is disconnected",
     .metric = "moor_closed_total{reason=\"slow_consumer\"}"},
    {.name = "read-buffer",
     .kind = OPT_SIZE,
     FIELD(read_buffer),
     .def = "64KiB",
     .min = KiB(16),
     .max = MiB(16),
     .help = "the read buffer every connection of an event loop shares; "
             "at least --max-header-bytes + 4KiB",
     .metric = "-"},
    {.name = "memory-limit",
     .kind = OPT_SIZE,
     FIELD(memory_limit),
     .def = "0",
     .min = 0,
     .max = GiB(1024),
     .help = "live bytes at most (moor's own accounting), 0 = no limit; "
             "over it new connections are answered 503",
     .metric = "moor_refused_total{reason=\"memory\"}"},
    {.name = "mem-trim-interval",
     .kind = OPT_DURATION,
     FIELD(mem_trim_interval_ms),
     .def = "1s",
     .min = 0,
     .max = DURATION_MAX_MS,
     .help = "how often each event loop compares its anonymous RSS with "
             "the live bytes and hands freed heap back to the system "
             "(malloc_trim) if --mem-trim-threshold more than usual is "
             "held and live bytes are not growing; 0 turns it off "
             "(docs/memory.md)",
     .metric = "moor_mem_trims_total, moor_mem_trimmed_bytes_total"},
    {.name = "mem-trim-threshold",
     .kind = OPT_SIZE,
     FIELD(mem_trim_threshold),
     .def = "2MiB",
     .min = KiB(256),
     .max = GiB(1024),
     .help = "trim once anonymous RSS minus live bytes is this much above "
             "its lowest since the last trim",
     .metric = "moor_mem_trimmed_bytes_total"},
    {.name = "max-message",
     .kind = OPT_SIZE,
     FIELD(max_message),
     .def = "16MiB",
     .min = 1,
     .max = GiB(1),
     .help = "WebSocket message at most, in bytes, fragments included; a "
             "longer one is closed with 1009 as soon as its frame header "
             "says so, before any of it is buffered",
     .metric = "moor_closed_total{reason=\"message_too_big\"}"},
    {.name = "ping-interval",
     .kind = OPT_DURATION,
     FIELD(ping_interval_ms),
     .def = "30s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "send a WebSocket ping after this long without a frame from "
             "the peer",
     .metric = "-"},
    {.name = "pong-timeout",
     .kind = OPT_DURATION,
     FIELD(pong_timeout_ms),
     .def = "15s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "close a WebSocket that sends nothing this long after a ping "
             "(half-open connections die); also sets TCP_USER_TIMEOUT to "
             "ping-interval + pong-timeout",
     .metric = "moor_closed_total{reason=\"pong_timeout\"}"},
    {.name = "close-timeout",
     .kind = OPT_DURATION,
     FIELD(close_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = DURATION_MAX_MS,
     .help = "after moor sends a WebSocket close, how long the peer has to "
             "answer it",
     .metric = "moor_closed_total{reason=\"close_timeout\"}"},
    {.name = "drain-spread",
     .kind = OPT_DURATION,
     FIELD(drain_spread_ms),
     .def = "2s",
     .min = 0,
     .max = DURATION_MAX_MS,
     .help = "on shutdown, WebSockets get close 1001 at random moments "
             "over this long, so clients do not all reconnect at once",
     .metric = "moor_closed_total{reason=\"shutdown\"}"},
    {.name = "allowed-origins",
     .kind = OPT_ORIGINS,
     FIELD(allowed_origins),
     .def = "",
     .help = "origins allowed to open a WebSocket or an event stream "
             "(SSE, answered with CORS headers), comma-separated "
             "(https://example.com); others get 403; empty allows any",
     .metric = "moor_http_rejected_total{status=\"403\"}"},
    {.name = "slow-policy",
     .kind = OPT_ENUM,
     FIELD(slow_policy),
     .def = "disconnect",
     .choices = "disconnect|drop-oldest",
     .arg = "POLICY",
     .help = "when a subscriber's queue is full: disconnect it (WebSocket "
             "close 1008 \"slow consumer\") or drop its oldest queued "
             "messages and tell it how many ({\"moor_dropped\":N})",
     .metric = "moor_pubsub_dropped_total, moor_pubsub_slow_disconnects_total"},
    {.name = "queue-soft-limit",
     .kind = OPT_SIZE,
     FIELD(queue_soft_limit),
     .def = "256KiB",
     .min = 0,
     .max = GiB(1),
     .help = "a subscriber whose queue stays over this for --queue-soft-time "
             "is disconnected as slow; 0 turns it off",
     .metric = "moor_pubsub_slow_disconnects_total{limit=\"soft\"}"},
    {.name = "queue-soft-time",
     .kind = OPT_DURATION,
     FIELD(queue_soft_time_ms),
     .def = "10s",
     .min = 0,
     .max = DURATION_MAX_MS,
     .help = "how long a queue may stay over --queue-soft-limit",
     .metric = "moor_pubsub_slow_disconnects_total{limit=\"soft\"}"},
    {.name = "max-channels",
     .kind = OPT_UINT,
     FIELD(max_channels),
     .def = "100000",
     .min = 1,
     .max = 100000000,
     .help = "channels in existence at most; a subscription that would "
             "create one more is refused",
     .metric = "moor_pubsub_refused_total"},
    {.name = "max-channels-per-conn",
     .kind = OPT_UINT,
     FIELD(max_channels_per_conn),
     .def = "64",
     .min = 1,
     .max = 65535,
     .help = "channels one connection may subscribe to; more is 400",
     .metric = "moor_pubsub_refused_total"},
    {.name = "rate",
     .kind = OPT_UINT,
     FIELD(rate),
     .def = "10000",
     .min = 0,
     .max = 100000000,
     .help = "messages per second one publishing connection (WebSocket "
             "/pub or TCP PUB) may send; above it moor stops reading that "
             "connection until tokens refill; 0 turns it off (POST /pub "
             "is not paced: see docs/pubsub.md)",
     .metric = "moor_read_pauses_total{cause=\"rate\"}"},
    {.name = "burst",
     .kind = OPT_UINT,
     FIELD(burst),
     .def = "0",
     .min = 0,
     .max = 100000000,
     .help = "messages a publisher may send at once above --rate (0: as "
             "many as --rate)",
     .metric = "moor_read_pauses_total{cause=\"rate\"}"},
    {.name = "byte-rate",
     .kind = OPT_SIZE,
     FIELD(byte_rate),
     .def = "0",
     .min = 0,
     .max = GiB(4) - 1,
     .help = "bytes per second one publishing connection may send "
             "(burst: one second's worth); 0 turns it off",
     .metric = "moor_read_pauses_total{cause=\"rate\"}"},
    {.name = "sse-heartbeat",
     .kind = OPT_DURATION,
     FIELD(sse_heartbeat_ms),
     .def = "15s",
     .min = 100,
     .max = DURATION_MAX_MS,
     .help = "an event stream quiet this long gets a comment line, so "
             "proxies keep it open and a dead peer is found",
     .metric = "moor_closed_total{reason=\"write_timeout\"}"},
    {.name = "sse-retry",
     .kind = OPT_DURATION,
     FIELD(sse_retry_ms),
     .def = "3s",
     .min = 0,
     .max = DURATION_MAX_MS,
     .help = "reconnect delay sent to EventSource clients (retry:)",
     .metric = "-"},
    {.name = "log-level",
     .kind = OPT_ENUM,
     FIELD(log_level),
     .def = "info",
     .choices = "debug|info|warn|error|off",
     .arg = "LEVEL",
     .help = "least severe log line written: debug, info, warn, error, "
             "or off",
     .metric = "-"},
    {.name = "mem-trace",
     .kind = OPT_BOOL,
     FIELD(mem_trace),
     .def = "false",
     .help = "record the call site of every live allocation; GET /debug/mem "
             "shows them",
     .metric = "-"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* ------------------------------------------------------------------ */
/* Small helpers.                                                     */
/* ------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Reads the leading digits of s into *v. Returns the number of digits
 * (0 if none) or -ERANGE if the number does not fit in 64 bits. */
static int parse_digits(const char *s, uint64_t *v)
{
    uint64_t n = 0;
    int i = 0;

    while (is_digit(s[i])) {
        unsigned d = (unsigned)(s[i] - '0');

        if (n > (UINT64_MAX - d) / 10)
            return -ERANGE;
        n = n * 10 + d;
        i++;
    }
    *v = n;
    return i;
}

/* "MOOR_" + the flag name upper-cased with '-' turned into '_'. */
static void env_name(const struct opt *o, char *buf, size_t len)
{
    size_t i = 0, j;

    for (j = 0; "MOOR_"[j] && i + 1 < len; j++)
        buf[i++] = "MOOR_"[j];
    for (j = 0; o->name[j] && i + 1 < len; j++) {
        char ch = o->name[j];

        if (ch == '-')
            ch = '_';
        else if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        buf[i++] = ch;
    }
    buf[i] = '\0';
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len && !memcmp(opts[i].name, name, len))
            return &opts[i];
    return NULL;
}

/* Duration units, largest first (fmt_duration() relies on the order). */
static const struct {
    const char *unit;
    uint64_t ms;
} duration_units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

#define N_DURATION_UNITS (sizeof(duration_units) / sizeof(duration_units[0]))

/* Formats ms in the largest unit that holds it exactly ("90s", "2m"). */
static void fmt_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0");
        return;
    }
    for (size_t i = 0; i < N_DURATION_UNITS; i++) {
        if (ms % duration_units[i].ms == 0) {
            snprintf(buf, len, "%llu%s",
                     (unsigned long long)(ms / duration_units[i].ms),
                     duration_units[i].unit);
            return;
        }
    }
}

/* Formats bytes in the largest power-of-1024 unit that holds it exactly. */
static void fmt_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB"};
    size_t u = 0;

    while (u + 1 < sizeof(units) / sizeof(units[0]) && n && n % 1024 == 0) {
        n /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)n, units[u]);
}

/* ------------------------------------------------------------------ */
/* Unit parsers.                                                      */
/* ------------------------------------------------------------------ */

int config_parse_duration_ms(const char *s, uint32_t *ms)
{
    uint64_t n;
    int d = parse_digits(s, &n);
    bool overflow = d < 0;

    if (d == 0)
        return -EINVAL;
    if (overflow) {
        while (is_digit(*s))
            s++;
        d = 0;
    }
    /* A bare number is ambiguous (seconds? milliseconds?) unless it is 0. */
    if (s[d] == '\0') {
        if (overflow || n != 0)
            return -EINVAL;
        *ms = 0;
        return 0;
    }
    for (size_t i = 0; i < N_DURATION_UNITS; i++) {
        if (strcmp(s + d, duration_units[i].unit))
            continue;
        if (overflow || n > DURATION_MAX_MS / duration_units[i].ms)
            return -ERANGE;
        *ms = (uint32_t)(n * duration_units[i].ms);
        return 0;
    }
    return -EINVAL;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", KiB(1)},
        {"MiB", MiB(1)},
        {"GiB", GiB(1)},
        {"KB", 1000},
        {"kB", 1000},
        {"MB", 1000 * 1000},
        {"GB", 1000 * 1000 * 1000},
    };
    uint64_t n;
    int d = parse_digits(s, &n);
    bool overflow = d < 0;

    if (d == 0)
        return -EINVAL;
    if (overflow) {
        while (is_digit(*s))
            s++;
        d = 0;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + d, units[i].unit))
            continue;
        if (overflow || n > UINT64_MAX / units[i].mult)
            return -ERANGE;
        *bytes = n * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

int config_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *h, *colon, *p;
    size_t hlen;
    uint64_t n = 0;
    int d;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        if (hlen == 0 || memchr(h, '[', hlen))
            return -EINVAL;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
        /* A bare IPv6 address would be ambiguous: "::1:80". */
        if (memchr(h, ':', hlen) || memchr(h, ']', hlen))
            return -EINVAL;
    }
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f)
            return -EINVAL;
    p = colon + 1;
    d = parse_digits(p, &n);
    if (d == 0 || p[strspn(p, "0123456789")] != '\0')
        return -EINVAL;
    if (d < 0 || n > 65535)
        return -ERANGE;
    if (hlen == 0) {
        /* ":port" means every IPv4 interface, as in Go's net.Listen;
         * "[::]:port" is the way to ask for IPv6 too. */
        h = "0.0.0.0";
        hlen = strlen(h);
    }
    if (hlen >= hostlen)
        return -ERANGE;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)n;
    return 0;
}

static int parse_bool(const char *s, bool *v)
{
    if (!strcmp(s, "1") || !strcasecmp(s, "true")) {
        *v = true;
        return 0;
    }
    if (!strcmp(s, "0") || !strcasecmp(s, "false")) {
        *v = false;
        return 0;
    }
    return -EINVAL;
}

/* Returns 0 if s is one of the '|'-separated choices. */
static int parse_choice(const char *choices, const char *s)
{
    size_t len = strlen(s);

    while (*choices) {
        size_t n = strcspn(choices, "|");

        if (n == len && !memcmp(choices, s, n))
            return 0;
        choices += n + (choices[n] == '|');
    }
    return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Setting one option.                                                */
/* ------------------------------------------------------------------ */

/* Writes "expected ..." for o to buf: the range when out of range (rc ==
 * -ERANGE), else the shape of a good value. */
static void expected(const struct opt *o, int rc, char *buf, size_t len)
{
    char lo[32], hi[32];

    switch (o->kind) {
    case OPT_ADDR:
        snprintf(buf, len,
                 "expected host:port, [v6]:port or :port, "
                 "with a port from 0 to 65535");
        break;
    case OPT_UINT:
        snprintf(buf, len, "expected a whole number from %llu to %llu",
                 (unsigned long long)o->min, (unsigned long long)o->max);
        break;
    case OPT_DURATION:
        if (rc != -ERANGE) {
            snprintf(buf, len, "expected a duration like 250ms, 10s, 2m%s",
                     o->min == 0 ? " (or 0)" : "");
            break;
        }
        fmt_duration(o->min, lo, sizeof(lo));
        fmt_duration(o->max, hi, sizeof(hi));
        snprintf(buf, len, "expected a duration from %s to %s", lo, hi);
        break;
    case OPT_SIZE:
        if (rc != -ERANGE) {
            snprintf(buf, len, "expected a size like 512B, 64KiB, 1MiB");
            break;
        }
        fmt_size(o->min, lo, sizeof(lo));
        fmt_size(o->max, hi, sizeof(hi));
        snprintf(buf, len, "expected a size from %s to %s", lo, hi);
        break;
    case OPT_ENUM: {
        /* "a|b|c" -> "a, b, c". */
        char list[64];
        size_t n = 0;

        for (const char *p = o->choices; *p && n + 3 < sizeof(list); p++) {
            if (*p == '|') {
                list[n++] = ',';
                list[n++] = ' ';
            } else {
                list[n++] = *p;
            }
        }
        list[n] = '\0';
        snprintf(buf, len, "expected one of %s", list);
        break;
    }
    case OPT_BOOL:
        snprintf(buf, len, "expected 1, 0, true or false");
        break;
    case OPT_ORIGINS:
        snprintf(buf, len,
                 "expected origins like https://example.com,"
                 "http://localhost:8080 (comma-separated), or *");
        break;
    case OPT_PATH:
        snprintf(buf, len, "expected a file name shorter than %zu bytes",
                 o->len);
        break;
    case OPT_TEXT:
        snprintf(buf, len, "expected at most %zu bytes", o->len - 1);
        break;
    }
}

/* Checks a comma-separated list of origins: each "*" or
 * scheme://host[:port] with scheme http or https, no path. */
static int parse_origins(const char *s)
{
    while (*s) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *host;
        size_t hn;

        while (n && *s == ' ') {
            s++;
            n--;
        }
        while (n && s[n - 1] == ' ')
            n--;
        if (n == 1 && *s == '*')
            goto next;
        if (n > 7 && !strncmp(s, "http://", 7))
            host = s + 7;
        else if (n > 8 && !strncmp(s, "https://", 8))
            host = s + 8;
        else
            return -EINVAL;
        hn = n - (size_t)(host - s);
        if (hn == 0)
            return -EINVAL;
        for (size_t i = 0; i < hn; i++)
            if ((unsigned char)host[i] <= ' ' || host[i] == '/' ||
                host[i] == 0x7f)
                return -EINVAL;
    next:
        if (!end)
            break;
        s = end + 1;
    }
    return 0;
}

/* Parses text as o's kind, checks the range and stores it in c. Returns 0
 * or -EINVAL / -ERANGE (out of range included); c is unchanged on error. */
static int store(struct moor_config *c, const struct opt *o, const char *text)
{
    char *field = (char *)c + o->off;
    uint64_t v = 0;
    uint32_t ms;
    int rc = 0;

    switch (o->kind) {
    case OPT_ADDR: {
        char host[sizeof(c->listen)];
        uint16_t port;

        /* An address whose default is empty may be left empty: off. */
        rc = !*text && !*o->def
                 ? 0
                 : config_parse_addr(text, host, sizeof(host), &port);
        if (rc == 0 && strlen(text) >= o->len)
            rc = -ERANGE;
        if (rc == 0)
            memcpy(field, text, strlen(text) + 1);
        return rc;
    }
    case OPT_ORIGINS:
        rc = parse_origins(text);
        if (rc == 0 && strlen(text) >= o->len)
            rc = -ERANGE;
        if (rc == 0)
            memcpy(field, text, strlen(text) + 1);
        return rc;
    case OPT_PATH:
    case OPT_TEXT:
        if (strlen(text) >= o->len)
            return -ERANGE;
        memcpy(field, text, strlen(text) + 1);
        return 0;
    case OPT_ENUM:
        rc = parse_choice(o->choices, text);
        if (rc == 0 && strlen(text) >= o->len)
            rc = -ERANGE;
        if (rc == 0)
            memcpy(field, text, strlen(text) + 1);
        return rc;
    case OPT_BOOL: {
        bool b;

        rc = parse_bool(text, &b);
        if (rc == 0)
            memcpy(field, &b, sizeof(b));
        return rc;
    }
    case OPT_UINT: {
        int d = parse_digits(text, &v);

        if (d == 0 || (d > 0 && text[d] != '\0'))
            return -EINVAL;
        if (d < 0)
            return -ERANGE;
        break;
    }
    case OPT_DURATION:
        rc = config_parse_duration_ms(text, &ms);
        v = ms;
        break;
    case OPT_SIZE:
        rc = config_parse_size(text, &v);
        break;
    }
    if (rc < 0)
        return rc;
    if (v < o->min || v > o->max)
        return -ERANGE;
    if (o->len == sizeof(uint32_t)) {
        uint32_t v32 = (uint32_t)v;

        memcpy(field, &v32, sizeof(v32));
    } else {
        memcpy(field, &v, sizeof(v));
    }
    return 0;
}

/* store() with the message: src is the environment variable the value
 * came from, or NULL for the command line. Returns 0 or -1. */
static int set_opt(struct moor_config *c, const struct opt *o, const char *text,
                   const char *src, char *err, size_t errlen)
{
    char want[96], from[64] = "";
    int rc = store(c, o, text);

    if (rc == 0)
        return 0;
    expected(o, rc, want, sizeof(want));
    if (src)
        snprintf(from, sizeof(from), " (from %s)", src);
    set_err(err, errlen, "invalid value \"%s\" for --%s%s: %s", text, o->name,
            from, want);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Defaults, environment, command line.                               */
/* ------------------------------------------------------------------ */

/* True if the row's field has the size its kind stores. */
static bool row_ok(const struct opt *o)
{
    switch (o->kind) {
    case OPT_UINT:
    case OPT_DURATION:
        return o->len == sizeof(uint32_t);
    case OPT_SIZE:
        return o->len == sizeof(uint64_t);
    case OPT_BOOL:
        return o->len == sizeof(bool);
    case OPT_ADDR:
        return o->len > 1;
    case OPT_ENUM:
        return o->len > 1 && o->choices;
    case OPT_ORIGINS:
    case OPT_PATH:
    case OPT_TEXT:
        return o->len > 1;
    }
    return false;
}

void config_defaults(struct moor_config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_OPTS; i++) {
        int rc = store(c, &opts[i], opts[i].def);

        /* A bad row or a default that does not parse is a bug in the
         * table above, not a user error. */
        assert(row_ok(&opts[i]) && rc == 0);
        (void)rc;
        (void)row_ok;
    }
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t len = strlen(name);

    if (!envp)
        return NULL;
    for (; *envp; envp++)
        if (!strncmp(*envp, name, len) && (*envp)[len] == '=')
            return *envp + len + 1;
    return NULL;
}

static int apply_env(struct moor_config *c, char **envp, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        char name[64];
        const char *v;

        env_name(&opts[i], name, sizeof(name));
        v = env_lookup(envp, name);
        if (v && *v && set_opt(c, &opts[i], v, name, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Splits "--name" or "--name=value". Returns the option, or NULL. */
static const struct opt *split_flag(const char *word, const char **value)
{
    const char *name = word + 2, *eq;

    *value = NULL;
    if (strncmp(word, "--", 2))
        return NULL;
    eq = strchr(name, '=');
    if (eq)
        *value = eq + 1;
    return find_opt(name, eq ? (size_t)(eq - name) : strlen(name));
}

/* A word that follows a flag is its value unless it looks like a flag:
 * no value of any option starts with '-'. */
static bool takes_next(const struct opt *o, const char *value, const char *next)
{
    return o && o->kind != OPT_BOOL && !value && next && next[0] != '-';
}

/* Returns 1 and prints what was asked if argv asks for --help or
 * --limits-md anywhere (not as another flag's value), else 0. */
static int want_help(int argc, char **argv, FILE *out)
{
    for (int i = 0; i < argc; i++) {
        const char *value;
        const struct opt *o = split_flag(argv[i], &value);

        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            config_print_help(out);
            return 1;
        }
        if (!strcmp(argv[i], "--limits-md")) {
            config_print_limits_md(out);
            return 1;
        }
        if (takes_next(o, value, i + 1 < argc ? argv[i + 1] : NULL))
            i++;
    }
    return 0;
}

static int apply_args(struct moor_config *c, int argc, char **argv, char *err,
                      size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *value, *next = i + 1 < argc ? argv[i + 1] : NULL;
        const struct opt *o = split_flag(argv[i], &value);

        if (!o && argv[i][0] != '-') {
            set_err(err, errlen,
                    "unexpected argument \"%s\" (see moor serve --help)",
                    argv[i]);
            return -1;
        }
        if (!o) {
            set_err(err, errlen,
                    "unknown flag \"%.*s\" (see moor serve --help)",
                    (int)strcspn(argv[i], "="), argv[i]);
            return -1;
        }
        if (o->kind == OPT_BOOL && !value)
            value = "true";
        if (takes_next(o, value, next))
            value = argv[++i];
        if (!value) {
            set_err(err, errlen, "flag --%s needs a value", o->name);
            return -1;
        }
        if (set_opt(c, o, value, NULL, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Checks that need more than one option. Returns 0 or -1 with err set. */
static int check_cross(const struct moor_config *c, char *err, size_t errlen)
{
    char rb[32], mh[32], need[32];
    uint64_t min_rb = c->max_header_bytes + READ_BUFFER_HEADROOM;

    if (c->tls_listen[0] && (!c->tls_cert[0] || !c->tls_key[0])) {
        set_err(err, errlen,
                "--tls-listen %s needs a certificate and its key: add "
                "--tls-cert FILE and --tls-key FILE (PEM)",
                c->tls_listen);
        return -1;
    }
    if (c->tcp_tls && !c->tcp_listen[0]) {
        set_err(err, errlen,
                "--tcp-tls needs --tcp-listen ADDR: add it, or drop "
                "--tcp-tls");
        return -1;
    }
    if (c->tcp_tls && (!c->tls_cert[0] || !c->tls_key[0])) {
        set_err(err, errlen,
                "--tcp-tls needs a certificate and its key: add "
                "--tls-cert FILE and --tls-key FILE (PEM)");
        return -1;
    }
    if (!c->tls_listen[0] && !c->tcp_tls && (c->tls_cert[0] || c->tls_key[0])) {
        set_err(err, errlen,
                "--tls-cert and --tls-key are used only with --tls-listen "
                "ADDR or --tcp-tls: add one, or drop them");
        return -1;
    }

    if (c->read_buffer >= min_rb)
        return 0;
    fmt_size(c->read_buffer, rb, sizeof(rb));
    fmt_size(c->max_header_bytes, mh, sizeof(mh));
    fmt_size(min_rb, need, sizeof(need));
    set_err(err, errlen,
            "--read-buffer %s is too small for --max-header-bytes %s: it "
            "must be at least %s (max-header-bytes + 4KiB); raise "
            "--read-buffer or lower --max-header-bytes",
            rb, mh, need);
    return -1;
}

int config_parse(struct moor_config *c, int argc, char **argv, char **envp,
                 FILE *out, char *err, size_t errlen)
{
    config_defaults(c);
    set_err(err, errlen, "%s", "");
    if (want_help(argc, argv, out ? out : stdout))
        return 1;
    if (apply_env(c, envp, err, errlen) < 0)
        return -1;
    if (apply_args(c, argc, argv, err, errlen) < 0)
        return -1;
    return check_cross(c, err, errlen);
}

const char *config_flag_name(size_t i)
{
    return i < N_OPTS ? opts[i].name : NULL;
}

/* ------------------------------------------------------------------ */
/* --help and docs/limits.md.                                         */
/* ------------------------------------------------------------------ */

static const char *metavar(const struct opt *o)
{
    static const char *const names[] = {
        [OPT_ADDR] = "ADDR",         [OPT_UINT] = "N",
        [OPT_DURATION] = "DURATION", [OPT_SIZE] = "SIZE",
        [OPT_ENUM] = "WORD",         [OPT_BOOL] = "",
        [OPT_ORIGINS] = "LIST",      [OPT_PATH] = "FILE",
        [OPT_TEXT] = "TEXT",
    };

    return o->arg ? o->arg : names[o->kind];
}

/*
 * Prints text word-wrapped to HELP_WIDTH. The caller has already printed
 * `used` columns of the first line; later lines are indented to `indent`.
 * A word longer than a line gets a line of its own.
 */
static void wrap(FILE *out, const char *text, int used, int indent)
{
    int col = used;
    bool first = true, glued = false;

    while (*text) {
        int n = (int)strcspn(text, " ");

        /* A word longer than a line (a cipher list) breaks after its
         * ':' and ',' instead of running past the edge. */
        if (n > HELP_WIDTH - indent) {
            int k = (int)strcspn(text, ":,");

            if (k + 1 < n)
                n = k + 1;
        }
        if (n > 0) {
            if (!first && col + !glued + n > HELP_WIDTH) {
                fprintf(out, "\n%*s", indent, "");
                col = indent;
            } else if (!first && !glued) {
                fputc(' ', out);
                col++;
            }
            fprintf(out, "%.*s", n, text);
            col += n;
            first = false;
        }
        text += n;
        glued = *text && *text != ' ';
        while (*text == ' ')
            text++;
    }
    fputc('\n', out);
}

void config_print_help(FILE *out)
{
    static const struct {
        const char *flag, *help;
    } extra[] = {
        {"-h, --help", "print this help"},
        {"--limits-md", "print docs/limits.md (every limit, its default and "
                        "its metric, as a Markdown table)"},
    };
    char left[64], text[512], env[64];
    int width = 0, col;

    for (size_t i = 0; i < N_OPTS; i++) {
        int n = snprintf(left, sizeof(left), "  --%s %s", opts[i].name,
                         metavar(&opts[i]));
        width = n > width ? n : width;
    }
    col = width + 2;

    fprintf(out, "usage: moor serve [flags]\n\n");
    wrap(out,
         "moor serve runs moor's HTTP/1.1 server, the base of its push "
         "gateway, with bounded, accounted memory: every limit is a flag "
         "below, and each time one bites a counter on GET /metrics goes "
         "up. Endpoints: GET /healthz (liveness), GET /metrics "
         "(Prometheus text), GET /debug/mem (live memory by tag, JSON), "
         "GET /echo (WebSocket echo), GET /sub/CHANNEL[,CHANNEL...] "
         "(WebSocket subscriber), GET /pub/CHANNEL (WebSocket publisher), "
         "POST /pub/CHANNEL (publish the body; 202 with the number of "
         "subscribers reached); GET /sub/CHANNEL with Accept: "
         "text/event-stream is Server-Sent Events. --tcp-listen adds "
         "length-prefixed TCP pub/sub; --tls-listen serves all of it over "
         "TLS (HTTPS, wss://), --tcp-tls the TCP listener.",
         0, 0);
    fprintf(out, "\nflags:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        int n;

        env_name(o, env, sizeof(env));
        n = snprintf(left, sizeof(left), "  --%s %s", o->name, metavar(o));
        if (o->kind == OPT_BOOL)
            snprintf(text, sizeof(text), "%s (env %s=1)", o->help, env);
        else if (!o->def[0])
            snprintf(text, sizeof(text), "%s (default none, env %s)", o->help,
                     env);
        else
            snprintf(text, sizeof(text), "%s (default %s, env %s)", o->help,
                     o->def, env);
        fprintf(out, "%-*s", col, left);
        wrap(out, text, n > col ? n : col, col);
    }
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        int n = snprintf(left, sizeof(left), "  %s", extra[i].flag);

        fprintf(out, "%-*s", col, left);
        wrap(out, extra[i].help, n > col ? n : col, col);
    }
    fputc('\n', out);
    wrap(out,
         "Durations: 250ms, 10s, 2m, 1h; \"0\" alone is zero. Sizes: 512B, "
         "64KiB, 1MiB, 1GiB (powers of 1024), 1KB, 1MB, 1GB (powers of "
         "1000), or a plain number of bytes. Flags are given as --flag "
         "value or --flag=value. A flag beats its environment variable, "
         "which beats the default.",
         0, 0);
}

/* Prints s with the characters Markdown tables treat specially escaped. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

void config_print_limits_md(FILE *out)
{
    char env[64], lo[32], hi[32];

    fprintf(out, "# Limits\n\n"
                 "This file is generated by `make docs` from the option table "
                 "in src/config.c; edit that table, not this file.\n\n"
                 "| flag | default | env | what it limits | metric when it "
                 "bites |\n"
                 "|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];

        env_name(o, env, sizeof(env));
        if (o->def[0])
            fprintf(out, "| `--%s` | `%s` | `%s` | ", o->name, o->def, env);
        else
            fprintf(out, "| `--%s` | (none) | `%s` | ", o->name, env);
        md_cell(out, o->help);
        if (o->kind == OPT_DURATION) {
            fmt_duration(o->min, lo, sizeof(lo));
            fmt_duration(o->max, hi, sizeof(hi));
            fprintf(out, " (%s to %s)", lo, hi);
        } else if (o->kind == OPT_SIZE) {
            fmt_size(o->min, lo, sizeof(lo));
            fmt_size(o->max, hi, sizeof(hi));
            fprintf(out, " (%s to %s)", lo, hi);
        } else if (o->kind == OPT_UINT) {
            fprintf(out, " (%llu to %llu)", (unsigned long long)o->min,
                    (unsigned long long)o->max);
        }
        if (!strcmp(o->metric, "-"))
            fprintf(out, " | - |\n");
        else
            fprintf(out, " | `%s` |\n", o->metric);
    }
    fprintf(out,
            "\nDurations take ms, s, m, h (\"0\" alone is zero); sizes take "
            "B, KiB, MiB, GiB (powers of 1024), KB, MB, GB (powers of "
            "1000), or a plain number of bytes. A flag beats its "
            "environment variable, which beats the default.\n");
}
