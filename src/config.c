/*
 * config.c - every flag of `moor serve` in one table: its field, its
 * default, its range, its environment variable, its help sentence and the
 * metric that counts the times it bites.
 * config_defaults(), config_parse(), --help, docs/limits.md and the
 * manual page docs/moor.1 are all read from that table, so they cannot
 * drift apart. The table is read by the flag engine (flags.c), which
 * `moor bench` shares: this file has the table, the checks that need
 * more than one flag, and the text around the flags in --help,
 * docs/limits.md and docs/moor.1.
 *
 * Invariants.
 * - A default is kept as text and goes through the same parser as a flag,
 *   so the default --help shows is the default moor runs with.
 * - Precedence is flag > environment > config file > default. An
 *   environment variable set to the empty string counts as unset.
 * - A row marked .reload takes effect when SIGHUP rereads the config file
 *   (serve.c applies it: apply_live() hands the new value to the object
 *   that holds a copy); mark only a setting that is read again each time
 *   it is used, there or in sv->live, never one sized into something at
 *   start (buffers, tables, listeners).
 * - --help, --limits-md, --metrics-md and --man win over anything else on
 *   the command line and over a bad environment variable: asking for help
 *   never fails.
 * - Every error is one line naming the flag, the bad value, where the
 *   value came from when it was not the command line, and what is
 *   expected, including the range when the value was out of it.
 *
 * What it must not do. Allocate (every field of struct moor_config has a
 * fixed size), touch the process environment other than through envp, or
 * reach into the layers below: it only fills a struct that serve.c reads.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "flags.h"
#include "http1.h"
#include "series.h"
#include "tls.h"
#include "util.h"

/* The read buffer holds a carried partial header block (up to
 * max-header-bytes) and still needs room to read the rest of it. */
#define READ_BUFFER_HEADROOM 4096u

#define CFG(f) FLAG_FIELD(struct moor_config, f)

/*
 * The table. Keep the choices of --log-level in step with
 * log_parse_level() in log.c (not called here so that this file links on
 * its own in unit tests).
 */
static const struct flag opts[] = {
    {.name = "listen",
     .kind = FLAG_ADDR,
     CFG(listen),
     .def = "127.0.0.1:8080",
     .help = "address to serve HTTP on, host:port or [v6]:port; \":port\" "
             "listens on every IPv4 interface; port 0 picks a free port",
     .metric = "-"},
    {.name = "tcp-listen",
     .kind = FLAG_ADDR,
     CFG(tcp_listen),
     .def = "",
     .help = "also serve pub/sub as length-prefixed TCP frames here "
             "(4-byte big-endian length, then payload; first frame \"SUB "
             "a b\" or \"PUB ch\"); empty: off",
     .metric = "moor_closed_total{reason=\"protocol_error\"}"},
    {.name = "tcp-tls",
     .kind = FLAG_BOOL,
     CFG(tcp_tls),
     .def = "false",
     .help = "--tcp-listen speaks TLS (the frames inside it), with "
             "--tls-cert and --tls-key and the same TLS settings as "
             "--tls-listen",
     .metric = "moor_tls_handshakes_total"},
    {.name = "tls-listen",
     .kind = FLAG_ADDR,
     CFG(tls_listen),
     .def = "",
     .help = "also serve everything --listen serves over TLS here (HTTPS, "
             "wss://, SSE); needs --tls-cert and --tls-key; empty: off",
     .metric = "moor_tls_handshakes_total"},
    {.name = "tls-cert",
     .kind = FLAG_PATH,
     CFG(tls_cert),
     .def = "",
     .help = "PEM certificate chain for --tls-listen: the server's "
             "certificate first, then intermediates; SIGHUP reloads it",
     .metric = "moor_tls_reloads_total"},
    {.name = "tls-key",
     .kind = FLAG_PATH,
     CFG(tls_key),
     .def = "",
     .help = "PEM private key (not encrypted) of --tls-cert; SIGHUP "
             "reloads it",
     .metric = "moor_tls_reloads_total"},
    {.name = "tls-min-version",
     .kind = FLAG_ENUM,
     CFG(tls_min_version),
     .def = "1.2",
     .choices = "1.2|1.3",
     .arg = "VERSION",
     .help = "oldest TLS version accepted; older clients fail the "
             "handshake",
     .metric = "moor_tls_handshakes_total{result=\"failed\"}"},
    {.name = "tls-ciphersuites",
     .kind = FLAG_TEXT,
     CFG(tls_ciphersuites),
     .def = TLS_SUITES_DEFAULT,
     .arg = "LIST",
     .help = "TLS 1.3 cipher suites, most preferred first, colon-separated "
             "(OpenSSL names); ChaCha20 first because its state is the "
             "smallest per connection",
     .metric = "-"},
    {.name = "tls-ciphers",
     .kind = FLAG_TEXT,
     CFG(tls_ciphers),
     .def = TLS_CIPHERS_DEFAULT,
     .arg = "LIST",
     .help = "TLS 1.2 cipher list, most preferred first (OpenSSL cipher "
             "string)",
     .metric = "-"},
    {.name = "tls-tickets",
     .kind = FLAG_BOOL,
     CFG(tls_tickets),
     .def = "false",
     .help = "issue TLS session tickets so returning clients skip the full "
             "handshake (the server keeps no per-session state; off: "
             "every handshake is full)",
     .metric = "-"},
    {.name = "admin-listen",
     .kind = FLAG_ADDR,
     CFG(admin_listen),
     .def = "",
     .help = "serve /metrics, /debug/mem, /debug/conns, /debug/stream and "
             "/dashboard here and not on --listen or --tls-listen (404 "
             "there); it serves /healthz too and nothing else; empty: off",
     .metric = "moor_http_rejected_total{status=\"404\"}"},
    {.name = "max-debug-streams",
     .kind = FLAG_UINT,
     CFG(max_debug_streams),
     .def = "16",
     .min = 0,
     .max = 1024,
     .help = "GET /debug/stream (the /dashboard feed) open at once at "
             "most; more are answered 503; 0 turns the feed off",
     .metric = "moor_debug_streams_refused_total"},
    {.name = "debug-stream-interval",
     .kind = FLAG_DURATION,
     CFG(debug_interval_ms),
     .def = "1s",
     .min = 10,
     .max = 60000,
     .help = "time between two events of GET /debug/stream; the snapshot "
             "is built only while a stream is open",
     .metric = "moor_debug_streams"},
    {.name = "handshake-timeout",
     .kind = FLAG_DURATION,
     CFG(handshake_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "close a TLS connection whose handshake takes longer (a client "
             "that sends nothing or half a ClientHello)",
     .reload = true,
     .metric = "moor_closed_total{reason=\"handshake_timeout\"}"},
    {.name = "max-conns",
     .kind = FLAG_UINT,
     CFG(max_conns),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .help = "open connections at most; more are answered 503 and closed",
     .reload = true,
     .metric = "moor_refused_total{reason=\"max_conns\"}"},
    {.name = "accept-rate",
     .kind = FLAG_UINT,
     CFG(accept_rate),
     .def = "2000",
     .min = 0,
     .max = 10000000,
     .help = "new connections accepted per second, 0 = no limit; above it "
             "accepting pauses and the kernel backlog waits",
     .reload = true,
     .metric = "moor_accept_paused_total{reason=\"rate\"}"},
    {.name = "accept-burst",
     .kind = FLAG_UINT,
     CFG(accept_burst),
     .def = "500",
     .min = 1,
     .max = 10000000,
     .help = "connections accepted at once before --accept-rate applies",
     .reload = true,
     .metric = "moor_accept_paused_total{reason=\"rate\"}"},
    /* Per client address (issue 16); listen.h and iplimit.h. Loopback
     * is not exempt: a test or a local proxy meets these too. */
    {.name = "max-conns-per-ip",
     .kind = FLAG_UINT,
     CFG(max_conns_per_ip),
     .def = "1000",
     .min = 0,
     .max = 10000000,
     .help = "open connections from one client address at most (IPv6: one "
             "/64; IPv4-mapped IPv6 counts as IPv4), 0 = no limit; more "
             "are answered 503 and closed (on --tcp-listen only closed). "
             "1000 is a tenth of --max-conns: room for a large NAT, while "
             "no single address can take the server",
     .metric = "moor_refused_total{reason=\"per_ip_conns\"}"},
    {.name = "handshake-rate-per-ip",
     .kind = FLAG_UINT,
     CFG(rate_per_ip),
     .def = "100",
     .min = 0,
     .max = 10000000,
     .help = "new connections per second from one client address, 0 = no "
             "limit; more are answered 503 (Retry-After: 1) and closed (on "
             "--tcp-listen only closed). "
             "100/s is a twentieth of --accept-rate, so one address cannot "
             "spend the accept budget of everyone else",
     .metric = "moor_refused_total{reason=\"per_ip_rate\"}"},
    {.name = "handshake-burst-per-ip",
     .kind = FLAG_UINT,
     CFG(burst_per_ip),
     .def = "200",
     .min = 1,
     .max = 10000000,
     .help = "new connections one client address may open at once before "
             "--handshake-rate-per-ip applies (below --accept-burst, so "
             "one address cannot empty it)",
     .metric = "moor_refused_total{reason=\"per_ip_rate\"}"},
    {.name = "ip-table-size",
     .kind = FLAG_UINT,
     CFG(ip_table_size),
     .def = "65536",
     .min = 1,
     .max = 16777216,
     .help = "client addresses tracked at most for the per-address limits "
             "(about 80 bytes each, allocated as addresses come, tag "
             "\"auth\"); an address is forgotten once it has no open "
             "connection and its rate budget is full again. When full, a "
             "new address replaces the one idle longest; if every address "
             "has connections open, the new one is refused",
     .metric = "moor_refused_total{reason=\"ip_table_full\"}"},
    {.name = "header-timeout",
     .kind = FLAG_DURATION,
     CFG(header_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "close a connection whose request headers take longer",
     .reload = true,
     .metric = "moor_closed_total{reason=\"header_timeout\"}"},
    {.name = "body-timeout",
     .kind = FLAG_DURATION,
     CFG(body_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "close a connection whose request body is not complete "
             "this long after its headers",
     .reload = true,
     .metric = "moor_closed_total{reason=\"body_timeout\"}"},
    {.name = "message-timeout",
     .kind = FLAG_DURATION,
     CFG(message_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "once part of a message has arrived (a WebSocket frame or "
             "fragment, a framed TCP frame, half a TLS record), close the "
             "connection if the rest takes longer; counted from that first "
             "part, not extended by pings or trickled bytes",
     .reload = true,
     .metric = "moor_closed_total{reason=\"message_timeout\"}"},
    {.name = "idle-timeout",
     .kind = FLAG_DURATION,
     CFG(idle_timeout_ms),
     .def = "60s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "close a keep-alive connection idle this long",
     .reload = true,
     .metric = "moor_closed_total{reason=\"idle_timeout\"}"},
    {.name = "write-timeout",
     .kind = FLAG_DURATION,
     CFG(write_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "close a connection whose peer takes none of the bytes "
             "waiting for it this long",
     .reload = true,
     .metric = "moor_closed_total{reason=\"write_timeout\"}"},
    {.name = "linger-timeout",
     .kind = FLAG_DURATION,
     CFG(linger_timeout_ms),
     .def = "2s",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "after an error response, how long unread request bytes are "
             "drained before the socket is closed",
     .reload = true,
     .metric = "moor_closed_total{reason=\"linger_timeout\"}"},
    {.name = "shutdown-timeout",
     .kind = FLAG_DURATION,
     CFG(shutdown_timeout_ms),
     .def = "10s",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "on SIGTERM or SIGINT, how long requests in flight may "
             "finish before the rest are closed",
     .reload = true,
     .metric = "moor_closed_total{reason=\"shutdown\"}"},
    {.name = "max-header-bytes",
     .kind = FLAG_SIZE,
     CFG(max_header_bytes),
     .def = "8KiB",
     .min = 256,
     .max = KiB(60),
     .help = "request line and headers at most, in bytes; more is "
             "answered 431; it must fit in --read-buffer",
     .metric = "moor_http_rejected_total{status=\"431\"}"},
    {.name = "max-headers",
     .kind = FLAG_UINT,
     CFG(max_headers),
     .def = "100",
     .min = 1,
     .max = HTTP_MAX_HEADERS_CAP,
     .help = "header fields per request at most; more is answered 431",
     .metric = "moor_http_rejected_total{status=\"431\"}"},
    {.name = "max-body",
     .kind = FLAG_SIZE,
     CFG(max_body),
     .def = "1MiB",
     .min = 0,
     .max = GiB(1024),
     .help = "request body at most; more is answered 413",
     .metric = "moor_http_rejected_total{status=\"413\"}"},
    {.name = "queue-limit",
     .kind = FLAG_SIZE,
     CFG(queue_limit),
     .def = "1MiB",
     .min = KiB(1),
     .max = GiB(1),
     .help = "bytes queued for one connection at most, and one message "
             "per 16 bytes of it (so the queue's own slots fit under it "
             "too); a peer that falls further behind is disconnected",
     .metric = "moor_closed_total{reason=\"slow_consumer\"}"},
    {.name = "read-buffer",
     .kind = FLAG_SIZE,
     CFG(read_buffer),
     .def = "64KiB",
     .min = KiB(16),
     .max = MiB(16),
     .help = "the read buffer every connection of an event loop shares; "
             "at least --max-header-bytes + 4KiB",
     .metric = "-"},
    {.name = "memory-limit",
     .kind = FLAG_SIZE,
     CFG(memory_limit),
     .def = "0",
     .min = 0,
     .max = GiB(1024),
     .help = "live bytes at most (moor's own accounting), 0 = no limit; "
             "over it new connections are answered 503",
     .reload = true,
     .metric = "moor_refused_total{reason=\"memory\"}"},
    {.name = "mem-trim-interval",
     .kind = FLAG_DURATION,
     CFG(mem_trim_interval_ms),
     .def = "1s",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "how often each event loop compares its anonymous RSS with "
             "the live bytes and hands freed heap back to the system "
             "(malloc_trim) if --mem-trim-threshold more than usual is "
             "held and neither is growing; after a trim that gave back "
             "little, the next waits 2, 4 ... 64 intervals; 0 turns it "
             "off (docs/memory.md)",
     .reload = true,
     .metric = "moor_mem_trims_total, moor_mem_trims_backed_off_total, "
               "moor_mem_trimmed_bytes_total"},
    {.name = "mem-trim-threshold",
     .kind = FLAG_SIZE,
     CFG(mem_trim_threshold),
     .def = "2MiB",
     .min = KiB(256),
     .max = GiB(1024),
     .help = "trim once anonymous RSS minus live bytes is this much above "
             "its lowest; a trim that gives back less than half of it "
             "backs off",
     .reload = true,
     .metric = "moor_mem_trimmed_bytes_total"},
    {.name = "max-message",
     .kind = FLAG_SIZE,
     CFG(max_message),
     .def = "16MiB",
     .min = 1,
     .max = GiB(1),
     .help = "WebSocket message at most, in bytes, fragments included; a "
             "longer one is closed with 1009 as soon as its frame header "
             "says so, before any of it is buffered",
     .metric = "moor_closed_total{reason=\"message_too_big\"}"},
    {.name = "ping-interval",
     .kind = FLAG_DURATION,
     CFG(ping_interval_ms),
     .def = "30s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "send a WebSocket ping after this long without a frame from "
             "the peer",
     .reload = true,
     .metric = "-"},
    {.name = "pong-timeout",
     .kind = FLAG_DURATION,
     CFG(pong_timeout_ms),
     .def = "15s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "close a WebSocket that sends nothing this long after a ping "
             "(half-open connections die); also sets TCP_USER_TIMEOUT to "
             "ping-interval + pong-timeout",
     .reload = true,
     .metric = "moor_closed_total{reason=\"pong_timeout\"}"},
    {.name = "close-timeout",
     .kind = FLAG_DURATION,
     CFG(close_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "after moor sends a WebSocket close, how long the peer has to "
             "answer it",
     .reload = true,
     .metric = "moor_closed_total{reason=\"close_timeout\"}"},
    {.name = "drain-spread",
     .kind = FLAG_DURATION,
     CFG(drain_spread_ms),
     .def = "2s",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "on shutdown, WebSockets get close 1001 at random moments "
             "over this long, so clients do not all reconnect at once",
     .reload = true,
     .metric = "moor_closed_total{reason=\"shutdown\"}"},
    {.name = "allowed-origins",
     .kind = FLAG_ORIGINS,
     CFG(allowed_origins),
     .def = "",
     .help = "origins allowed to open a WebSocket or an event stream "
             "(SSE, answered with CORS headers), comma-separated "
             "(https://example.com); others get 403; empty allows any",
     .reload = true,
     .metric = "moor_http_rejected_total{status=\"403\"}"},
    {.name = "slow-policy",
     .kind = FLAG_ENUM,
     CFG(slow_policy),
     .def = "disconnect",
     .choices = "disconnect|drop-oldest",
     .arg = "POLICY",
     .help = "when a subscriber's queue is full: disconnect it (WebSocket "
             "close 1008 \"slow consumer\") or drop its oldest queued "
             "messages and tell it how many ({\"moor_dropped\":N})",
     .metric = "moor_pubsub_dropped_total, moor_pubsub_slow_disconnects_total"},
    {.name = "queue-soft-limit",
     .kind = FLAG_SIZE,
     CFG(queue_soft_limit),
     .def = "256KiB",
     .min = 0,
     .max = GiB(1),
     .help = "a subscriber whose queue stays over this for --queue-soft-time "
             "is disconnected as slow; 0 turns it off",
     .metric = "moor_pubsub_slow_disconnects_total{limit=\"soft\"}"},
    {.name = "queue-soft-time",
     .kind = FLAG_DURATION,
     CFG(queue_soft_time_ms),
     .def = "10s",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "how long a queue may stay over --queue-soft-limit",
     .metric = "moor_pubsub_slow_disconnects_total{limit=\"soft\"}"},
    {.name = "max-channels",
     .kind = FLAG_UINT,
     CFG(max_channels),
     .def = "100000",
     .min = 1,
     .max = 100000000,
     .help = "channels in existence at most; a subscription that would "
             "create one more is refused",
     .metric = "moor_pubsub_refused_total"},
    {.name = "max-channels-per-conn",
     .kind = FLAG_UINT,
     CFG(max_channels_per_conn),
     .def = "64",
     .min = 1,
     .max = 65535,
     .help = "channels one connection may subscribe to; more is 400",
     .metric = "moor_pubsub_refused_total"},
    {.name = "history-size",
     .kind = FLAG_UINT,
     CFG(history_size),
     .def = "0",
     .min = 0,
     .max = 1000000,
     .help = "messages each channel keeps for reconnecting subscribers "
             "(with --history-ttl; ids EPOCH:OFFSET, docs/pubsub.md); the "
             "oldest go first; 0 keeps none",
     .metric = "moor_history_evicted_total{reason=\"size\"}"},
    {.name = "history-ttl",
     .kind = FLAG_DURATION,
     CFG(history_ttl_ms),
     .def = "0",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "how long a channel's history keeps a message (with "
             "--history-size); a channel nobody listens to is freed once "
             "its last message expires; 0 keeps none",
     .metric = "moor_history_evicted_total{reason=\"ttl\"}"},
    {.name = "history-max-bytes",
     .kind = FLAG_SIZE,
     CFG(history_max_bytes),
     .def = "64MiB",
     .min = KiB(1),
     .max = GiB(64),
     .help = "bytes the history of all channels may hold (messages and "
             "records); over it the oldest messages of any channel go first",
     .metric = "moor_history_evicted_total{reason=\"bytes\"}"},
    {.name = "recovery-max",
     .kind = FLAG_UINT,
     CFG(recovery_max),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .help = "messages one recovering subscriber (since=, Last-Event-ID) is "
             "replayed at most; missing more, it gets a reset notice",
     .metric = "moor_history_resets_total{reason=\"too_many\"}"},
    {.name = "rate",
     .kind = FLAG_UINT,
     CFG(rate),
     .def = "10000",
     .min = 0,
     .max = 100000000,
     .help = "messages per second one publishing connection (WebSocket "
             "/pub or TCP PUB) may send; above it moor stops reading that "
             "connection until tokens refill; 0 turns it off (POST /pub "
             "is not paced: see docs/pubsub.md)",
     .reload = true,
     .metric = "moor_read_pauses_total{cause=\"rate\"}"},
    {.name = "burst",
     .kind = FLAG_UINT,
     CFG(burst),
     .def = "0",
     .min = 0,
     .max = 100000000,
     .help = "messages a publisher may send at once above --rate (0: as "
             "many as --rate)",
     .reload = true,
     .metric = "moor_read_pauses_total{cause=\"rate\"}"},
    {.name = "byte-rate",
     .kind = FLAG_SIZE,
     CFG(byte_rate),
     .def = "0",
     .min = 0,
     .max = GiB(4) - 1,
     .help = "bytes per second one publishing connection may send "
             "(burst: one second's worth); 0 turns it off",
     .reload = true,
     .metric = "moor_read_pauses_total{cause=\"rate\"}"},
    {.name = "sse-heartbeat",
     .kind = FLAG_DURATION,
     CFG(sse_heartbeat_ms),
     .def = "15s",
     .min = 100,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "an event stream quiet this long gets a comment line, so "
             "proxies keep it open and a dead peer is found",
     .metric = "moor_closed_total{reason=\"write_timeout\"}"},
    {.name = "sse-retry",
     .kind = FLAG_DURATION,
     CFG(sse_retry_ms),
     .def = "3s",
     .min = 0,
     .max = FLAGS_DURATION_MAX_MS,
     .help = "reconnect delay sent to EventSource clients (retry:)",
     .metric = "-"},
    {.name = "log-level",
     .kind = FLAG_ENUM,
     CFG(log_level),
     .def = "info",
     .choices = "debug|info|warn|error|off",
     .arg = "LEVEL",
     .help = "least severe log line written: debug, info, warn, error, "
             "or off",
     .reload = true,
     .metric = "-"},
    {.name = "mem-trace",
     .kind = FLAG_BOOL,
     CFG(mem_trace),
     .def = "false",
     .help = "record the call site of every live allocation; GET /debug/mem "
             "shows them",
     .metric = "-"},
    {.name = "auth",
     .kind = FLAG_ENUM,
     CFG(auth),
     .def = "none",
     .choices = "none|jwt|url",
     .arg = "MODE",
     .help = "who may subscribe and publish: none (anyone who reaches the "
             "port), jwt (a JSON Web Token whose claims list the channels; "
             "see --jwt-*), url (ask --auth-url); docs/auth.md",
     .metric = "moor_auth_total{result=\"denied\"}"},
    {.name = "jwt-secret-file",
     .kind = FLAG_PATH,
     CFG(jwt_secret_file),
     .def = "",
     .help = "--auth jwt: the HMAC secret (HS256/384/512) is this file's "
             "bytes, at least 32; SIGHUP reloads it",
     .metric = "moor_auth_reloads_total"},
    {.name = "jwt-key-file",
     .kind = FLAG_TEXT,
     CFG(jwt_key_file),
     .def = "",
     .arg = "FILE,...",
     .help = "--auth jwt: PEM public keys (RSA for RS/PS256-512, P-256 "
             "ES256, P-384 ES384, Ed25519 EdDSA), comma-separated FILE or "
             "KID=FILE (the kid defaults to the file name without .pem); "
             "SIGHUP reloads them",
     .metric = "moor_auth_reloads_total"},
    {.name = "jwt-leeway",
     .kind = FLAG_DURATION,
     CFG(jwt_leeway_ms),
     .def = "5s",
     .min = 0,
     .max = 3600000,
     .help = "clock skew allowed on a token's exp, nbf and iat (whole "
             "seconds); an open connection closes at exp + leeway",
     .metric = "moor_auth_total{result=\"denied\",reason=\"expired\"}"},
    {.name = "jwt-audience",
     .kind = FLAG_TEXT,
     CFG(jwt_audience),
     .def = "",
     .arg = "AUD",
     .help = "tokens must name this audience in aud (a string or an array "
             "holding it); empty: aud is not checked",
     .metric = "moor_auth_total{result=\"denied\",reason=\"wrong_audience\"}"},
    {.name = "jwt-issuer",
     .kind = FLAG_TEXT,
     CFG(jwt_issuer),
     .def = "",
     .arg = "ISS",
     .help = "tokens must have this iss; empty: iss is not checked",
     .metric = "moor_auth_total{result=\"denied\",reason=\"wrong_issuer\"}"},
    {.name = "jwt-channels-claim",
     .kind = FLAG_TEXT,
     CFG(jwt_channels_claim),
     .def = "channels",
     .arg = "NAME",
     .help = "the claim listing the channels a token may subscribe to (names, "
             "or prefixes ending in *)",
     .metric = "moor_auth_total{result=\"denied\",reason=\"not_allowed\"}"},
    {.name = "jwt-publish-claim",
     .kind = FLAG_TEXT,
     CFG(jwt_publish_claim),
     .def = "publish",
     .arg = "NAME",
     .help = "the claim listing the channels a token may publish to",
     .metric = "moor_auth_total{result=\"denied\",reason=\"not_allowed\"}"},
    {.name = "auth-cookie",
     .kind = FLAG_TEXT,
     CFG(auth_cookie),
     .def = "",
     .arg = "NAME",
     .help = "also take the token from this cookie (after an "
             "Authorization: Bearer header and a token query parameter)",
     .metric = "moor_auth_total{result=\"denied\",reason=\"no_token\"}"},
    {.name = "max-token-bytes",
     .kind = FLAG_SIZE,
     CFG(max_token_bytes),
     .def = "4KiB",
     .min = 64,
     .max = KiB(60),
     .help = "a longer token is refused before it is decoded",
     .metric = "moor_auth_total{result=\"denied\",reason=\"malformed\"}"},
    {.name = "auth-url",
     .kind = FLAG_TEXT,
     CFG(auth_url),
     .def = "",
     .arg = "URL",
     .help = "--auth url: POST each subscription and publication here as "
             "JSON (http:// or https://); 2xx allows, 401/403 refuses, "
             "anything else refuses with 503",
     .metric = "moor_auth_callback_seconds"},
    {.name = "auth-timeout",
     .kind = FLAG_DURATION,
     CFG(auth_timeout_ms),
     .def = "2s",
     .min = 1,
     .max = 60000,
     .help = "--auth url: no answer within this refuses (503); the request "
             "waits holding only its own bytes",
     .metric =
         "moor_auth_total{result=\"denied\",reason=\"callback_timeout\"}"},
    {.name = "auth-max-inflight",
     .kind = FLAG_UINT,
     CFG(auth_max_inflight),
     .def = "256",
     .min = 1,
     .max = 100000,
     .help = "--auth url: questions out at once; more are refused at once "
             "(503)",
     .metric = "moor_auth_total{result=\"denied\",reason=\"callback_busy\"}"},
    {.name = "auth-cache-ttl",
     .kind = FLAG_DURATION,
     CFG(auth_cache_ttl_ms),
     .def = "0",
     .min = 0,
     .max = 3600000,
     .help = "--auth url: keep each answer (allowed or 401/403, not "
             "errors) this long for the same question and credentials; "
             "0: ask every time",
     .metric = "moor_auth_callback_cache_hits_total"},
    {.name = "auth-cache-entries",
     .kind = FLAG_UINT,
     CFG(auth_cache_entries),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .help = "--auth url: answers cached at most; the oldest go first",
     .metric = "moor_auth_callback_cached"},
    {.name = "auth-forward-headers",
     .kind = FLAG_TEXT,
     CFG(auth_forward_headers),
     .def = "authorization,cookie",
     .arg = "NAME,...",
     .help = "--auth url: the request's header fields sent to the callback "
             "(with the action, channels, path and client address)",
     .metric = "-"},
    {.name = "influx-url",
     .kind = FLAG_TEXT,
     CFG(influx_url),
     .def = "",
     .arg = "URL",
     .help = "push every series of /metrics to InfluxDB here, v1 "
             "(http://host:8086/write?db=moor) or v2 "
             "(.../api/v2/write?org=O&bucket=B); empty: off",
     .metric = "moor_influx_points_total"},
    {.name = "influx-token-file",
     .kind = FLAG_PATH,
     CFG(influx_token_file),
     .def = "",
     .help = "InfluxDB v2: the API token (Authorization: Token) is this "
             "file's first line",
     .metric = "moor_influx_writes_total{result=\"rejected\"}"},
    {.name = "influx-user",
     .kind = FLAG_TEXT,
     CFG(influx_user),
     .def = "",
     .arg = "USER",
     .help = "InfluxDB v1: basic auth as this user, with "
             "--influx-password-file",
     .metric = "moor_influx_writes_total{result=\"rejected\"}"},
    {.name = "influx-password-file",
     .kind = FLAG_PATH,
     CFG(influx_password_file),
     .def = "",
     .help = "InfluxDB v1: --influx-user's password is this file's first "
             "line",
     .metric = "-"},
    {.name = "influx-interval",
     .kind = FLAG_DURATION,
     CFG(influx_interval_ms),
     .def = "10s",
     .min = 1000,
     .max = 3600000,
     .help = "how often the metrics are sampled and pushed",
     .metric = "moor_influx_points_total"},
    {.name = "influx-tags",
     .kind = FLAG_TEXT,
     CFG(influx_tags),
     .def = "",
     .arg = "K=V,...",
     .help = "tags added to every point (host=<this host's name> unless "
             "given)",
     .metric = "-"},
    {.name = "influx-precision",
     .kind = FLAG_ENUM,
     CFG(influx_precision),
     .def = "s",
     .choices = "s|ms|us|ns",
     .arg = "UNIT",
     .help = "the points' timestamps (and the write's precision=)",
     .metric = "-"},
    {.name = "influx-buffer",
     .kind = FLAG_SIZE,
     CFG(influx_buffer),
     .def = "1MiB",
     .min = KiB(64),
     .max = GiB(1),
     .help = "points waiting for the sink at most; past it the oldest "
             "batches are dropped (the sink down or slow)",
     .metric = "moor_influx_points_total{result=\"dropped\"}"},
    {.name = "influx-gzip",
     .kind = FLAG_ENUM,
     CFG(influx_gzip),
     .def = "auto",
     .choices = "auto|on|off",
     .arg = "MODE",
     .help = "gzip the writes (Content-Encoding: gzip); auto: until the "
             "sink answers 415, then plain bodies to it",
     .metric = "moor_influx_sent_bytes_total"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Not rows: the file the rows are read from, and the dump of them. */
static const char *const extras[] = {"--config=", "--print-config", NULL};

static const struct flag_table table = {
    .flags = opts,
    .n = N_OPTS,
    .cmd = "moor serve",
    .env_prefix = "MOOR_",
    .extra = extras,
};

void config_defaults(struct moor_config *c)
{
    memset(c, 0, sizeof(*c));
    flags_defaults(&table, c);
}

/* Checks that need more than one option. Returns 0 or -1 with err set. */
static int check_cross(const struct moor_config *c, char *err, size_t errlen)
{
    char rb[32], mh[32], need[32];
    uint64_t min_rb = c->max_header_bytes + READ_BUFFER_HEADROOM;

    if (c->tls_listen[0] && (!c->tls_cert[0] || !c->tls_key[0])) {
        flags_set_err(err, errlen,
                      "--tls-listen %s needs a certificate and its key: add "
                      "--tls-cert FILE and --tls-key FILE (PEM)",
                      c->tls_listen);
        return -1;
    }
    if (c->tcp_tls && !c->tcp_listen[0]) {
        flags_set_err(err, errlen,
                      "--tcp-tls needs --tcp-listen ADDR: add it, or drop "
                      "--tcp-tls");
        return -1;
    }
    if (c->tcp_tls && (!c->tls_cert[0] || !c->tls_key[0])) {
        flags_set_err(err, errlen,
                      "--tcp-tls needs a certificate and its key: add "
                      "--tls-cert FILE and --tls-key FILE (PEM)");
        return -1;
    }
    if (!c->tls_listen[0] && !c->tcp_tls && (c->tls_cert[0] || c->tls_key[0])) {
        flags_set_err(
            err, errlen,
            "--tls-cert and --tls-key are used only with --tls-listen "
            "ADDR or --tcp-tls: add one, or drop them");
        return -1;
    }

    if (!c->history_size != !c->history_ttl_ms) {
        flags_set_err(err, errlen,
                      "--history-size and --history-ttl go together: give "
                      "both (say --history-size 100 --history-ttl 5m), or "
                      "neither");
        return -1;
    }
    if (!strcmp(c->auth, "jwt") && !c->jwt_secret_file[0] &&
        !c->jwt_key_file[0]) {
        flags_set_err(err, errlen,
                      "--auth jwt needs a key: add --jwt-secret-file FILE "
                      "(HMAC) or --jwt-key-file FILE,... (PEM public keys)");
        return -1;
    }
    if (!strcmp(c->auth, "url") && strncmp(c->auth_url, "http://", 7) &&
        strncmp(c->auth_url, "https://", 8)) {
        flags_set_err(err, errlen,
                      "--auth url needs --auth-url http://... or https://...");
        return -1;
    }
    if (strcmp(c->auth, "url") && c->auth_url[0]) {
        flags_set_err(err, errlen,
                      "--auth-url is used only with --auth url: add it, or "
                      "drop --auth-url");
        return -1;
    }
    if (strcmp(c->auth, "jwt") &&
        (c->jwt_secret_file[0] || c->jwt_key_file[0] || c->jwt_audience[0] ||
         c->jwt_issuer[0] || c->auth_cookie[0])) {
        flags_set_err(err, errlen,
                      "--jwt-secret-file, --jwt-key-file, --jwt-audience, "
                      "--jwt-issuer and --auth-cookie are used only with "
                      "--auth jwt: add it, or drop them");
        return -1;
    }
    if (c->read_buffer >= min_rb)
        return 0;
    flags_fmt_size(c->read_buffer, rb, sizeof(rb));
    flags_fmt_size(c->max_header_bytes, mh, sizeof(mh));
    flags_fmt_size(min_rb, need, sizeof(need));
    flags_set_err(err, errlen,
                  "--read-buffer %s is too small for --max-header-bytes %s: it "
                  "must be at least %s (max-header-bytes + 4KiB); raise "
                  "--read-buffer or lower --max-header-bytes",
                  rb, mh, need);
    return -1;
}

const char *config_file_path(int argc, char **argv, char **envp)
{
    const char *path = flags_extra_value(&table, argc, argv, "--config=");
    static const char env[] = "MOOR_CONFIG=";

    if (path)
        return path;
    for (; envp && *envp; envp++)
        if (!strncmp(*envp, env, sizeof(env) - 1) && (*envp)[sizeof(env) - 1])
            return *envp + sizeof(env) - 1;
    return NULL;
}

int config_parse(struct moor_config *c, int argc, char **argv, char **envp,
                 FILE *out, char *err, size_t errlen)
{
    static const char *const asks[] = {"--help",       "-h",    "--limits-md",
                                       "--metrics-md", "--man", NULL};
    static const char *const dump[] = {"--print-config", NULL};
    const char *ask, *path = config_file_path(argc, argv, envp);

    config_defaults(c);
    flags_set_err(err, errlen, "%s", "");
    ask = flags_find_word(&table, argc, argv, asks);
    if (ask && !strcmp(ask, "--limits-md")) {
        config_print_limits_md(out ? out : stdout);
        return 1;
    }
    if (ask && !strcmp(ask, "--metrics-md")) {
        series_print_md(out ? out : stdout);
        return 1;
    }
    if (ask && !strcmp(ask, "--man")) {
        config_print_man(out ? out : stdout);
        return 1;
    }
    if (ask) {
        config_print_help(out ? out : stdout);
        return 1;
    }
    if (path && !*path) {
        flags_set_err(err, errlen, "--config needs a file name");
        return -1;
    }
    /* Precedence: the file first, so the environment and the command
     * line are applied over it. */
    if (path && flags_parse_file(&table, c, path, err, errlen) < 0)
        return -1;
    if (flags_parse(&table, c, argc, argv, envp, 0, NULL, err, errlen) < 0)
        return -1;
    if (check_cross(c, err, errlen) < 0)
        return -1;
    if (flags_find_word(&table, argc, argv, dump)) {
        config_print(out ? out : stdout, c);
        return 1;
    }
    return 0;
}

/* "# " and text wrapped at 78 columns. */
static void print_comment(FILE *out, const char *text)
{
    int col = 0;

    while (*text) {
        int n = (int)strcspn(text, " ");

        if (col && col + 1 + n > 78) {
            fputc('\n', out);
            col = 0;
        }
        col += col ? fprintf(out, " %.*s", n, text)
                   : fprintf(out, "# %.*s", n, text);
        text += n;
        while (*text == ' ')
            text++;
    }
    fputc('\n', out);
}

/* True if v must be quoted to read back the same: empty, blanks at an
 * end, a quote first, or a '#' that would start a comment. */
static bool needs_quotes(const char *v)
{
    size_t n = strlen(v);

    return !n || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' ||
           v[n - 1] == '\t' || v[0] == '"' || v[0] == '\'' || strchr(v, '#');
}

void config_print(FILE *out, const struct moor_config *c)
{
    char value[2200], text[640];

    fprintf(out, "# moor serve configuration (moor serve --print-config).\n"
                 "# One setting a line: \"name value\" or \"name = value\", "
                 "names as the\n"
                 "# flags without \"--\". Read with moor serve --config FILE "
                 "(or MOOR_CONFIG);\n"
                 "# a flag or a MOOR_* variable beats the file. SIGHUP "
                 "rereads it; settings\n"
                 "# marked \"SIGHUP applies it\" change at once, the others "
                 "need a restart.\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct flag *o = &opts[i];

        snprintf(text, sizeof(text), "%s%s", o->help,
                 o->reload ? " (SIGHUP applies it)" : "");
        fputc('\n', out);
        print_comment(out, text);
        flags_fmt_value(o, c, value, sizeof(value));
        if (needs_quotes(value))
            fprintf(out, "%s \"%s\"\n", o->name, value);
        else
            fprintf(out, "%s %s\n", o->name, value);
    }
}

int config_reload(struct moor_config *live, const struct moor_config *next,
                  void (*report)(const char *name, bool applied,
                                 const char *was, const char *now, void *arg),
                  void *arg)
{
    char was[2200], now[2200];
    int applied = 0;

    for (size_t i = 0; i < N_OPTS; i++) {
        const struct flag *o = &opts[i];

        if (flags_same(o, live, next))
            continue;
        flags_fmt_value(o, live, was, sizeof(was));
        flags_fmt_value(o, next, now, sizeof(now));
        if (o->reload) {
            flags_copy(o, live, next);
            applied++;
        }
        if (report)
            report(o->name, o->reload, was, now, arg);
    }
    return applied;
}

const char *config_flag_name(size_t i)
{
    return i < N_OPTS ? opts[i].name : NULL;
}

/* ------------------------------------------------------------------ */
/* --help and docs/limits.md.                                         */
/* ------------------------------------------------------------------ */

void config_print_help(FILE *out)
{
    static const struct {
        const char *flag, *help;
    } extra[] = {
        {"--config FILE", "read settings from FILE first, one \"name "
                          "value\" a line (names as the flags without "
                          "\"--\"); SIGHUP rereads it (env MOOR_CONFIG); "
                          "docs/config.md"},
        {"--print-config", "print the effective settings in that format and "
                           "exit"},
        {"-h, --help", "print this help"},
        {"--limits-md", "print docs/limits.md (every limit, its default and "
                        "its metric, as a Markdown table)"},
        {"--metrics-md", "print the table of every series on /metrics that "
                         "docs/monitoring.md holds (Markdown)"},
        {"--man", "print the manual page moor(1) (roff; docs/moor.1)"},
    };
    char left[64], text[512], env[64], sighup[16];
    int col = flags_help_column(&table);

    fprintf(out, "usage: moor serve [flags]\n\n");
    flags_wrap(
        out,
        "moor serve runs moor's HTTP/1.1 server, the base of its push "
        "gateway, with bounded, accounted memory: every limit is a flag "
        "below, and each time one bites a counter on GET /metrics goes "
        "up. Endpoints: GET /healthz (liveness), GET /metrics "
        "(Prometheus text), GET /debug/mem (live memory by tag, JSON), "
        "GET /dashboard (a live page of them, fed by GET /debug/stream), "
        "GET /echo (WebSocket echo), GET /sub/CHANNEL[,CHANNEL...] "
        "(WebSocket subscriber), GET /pub/CHANNEL (WebSocket publisher), "
        "POST /pub/CHANNEL (publish the body; 202 with the number of "
        "subscribers reached); GET /sub/CHANNEL with Accept: "
        "text/event-stream is Server-Sent Events. --tcp-listen adds "
        "length-prefixed TCP pub/sub; --tls-listen serves all of it over "
        "TLS (HTTPS, wss://), --tcp-tls the TCP listener; --admin-listen "
        "moves /metrics and /debug to an address of their own.",
        0, 0);
    fprintf(out, "\nflags:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct flag *o = &opts[i];

        flags_env_name(table.env_prefix, o, env, sizeof(env));
        snprintf(sighup, sizeof(sighup), "%s", o->reload ? "; SIGHUP" : "");
        if (o->kind == FLAG_BOOL)
            snprintf(text, sizeof(text), "%s (env %s=1%s)", o->help, env,
                     sighup);
        else if (!o->def[0])
            snprintf(text, sizeof(text), "%s (default none, env %s%s)", o->help,
                     env, sighup);
        else
            snprintf(text, sizeof(text), "%s (default %s, env %s%s)", o->help,
                     o->def, env, sighup);
        flags_print_flag(out, col, o, text);
    }
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        snprintf(left, sizeof(left), "  %s", extra[i].flag);
        flags_print_row(out, col, left, extra[i].help);
    }
    fputc('\n', out);
    flags_wrap(
        out,
        "Durations: 250ms, 10s, 2m, 1h; \"0\" alone is zero. Sizes: 512B, "
        "64KiB, 1MiB, 1GiB (powers of 1024), 1KB, 1MB, 1GB (powers of "
        "1000), or a plain number of bytes. Flags are given as --flag "
        "value or --flag=value. A flag beats its environment variable, "
        "which beats the config file (--config), which beats the default. "
        "SIGHUP rereads the config file: the settings marked SIGHUP take "
        "the new value at once, any other change is logged as needing a "
        "restart; it also reloads the TLS certificate and the JWT keys.",
        0, 0);
    fputc('\n', out);
    flags_wrap(out,
               "Metrics on GET /metrics: name, type, unit and labels "
               "(docs/monitoring.md says what each counts):",
               0, 0);
    series_print_text(out);
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
                 "Every flag can also be a line of the config file "
                 "(`--config FILE`, docs/config.md) without its `--`; "
                 "those marked \"SIGHUP applies it\" change when SIGHUP "
                 "rereads the file.\n\n"
                 "| flag | default | env | what it limits | metric when it "
                 "bites |\n"
                 "|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct flag *o = &opts[i];

        flags_env_name(table.env_prefix, o, env, sizeof(env));
        if (o->def[0])
            fprintf(out, "| `--%s` | `%s` | `%s` | ", o->name, o->def, env);
        else
            fprintf(out, "| `--%s` | (none) | `%s` | ", o->name, env);
        md_cell(out, o->help);
        if (o->reload)
            fprintf(out, " (SIGHUP applies it)");
        if (o->kind == FLAG_DURATION) {
            flags_fmt_duration(o->min, lo, sizeof(lo));
            flags_fmt_duration(o->max, hi, sizeof(hi));
            fprintf(out, " (%s to %s)", lo, hi);
        } else if (o->kind == FLAG_SIZE) {
            flags_fmt_size(o->min, lo, sizeof(lo));
            flags_fmt_size(o->max, hi, sizeof(hi));
            fprintf(out, " (%s to %s)", lo, hi);
        } else if (o->kind == FLAG_UINT) {
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
            "environment variable, which beats the config file, which "
            "beats the default.\n");
}

/* ------------------------------------------------------------------ */
/* The manual page, moor(1): docs/moor.1, from the same table.        */
/* ------------------------------------------------------------------ */

/* Writes s as roff text. bol: s starts a line. A backslash becomes \e,
 * every '-' \- (flags and names are typed as they read), a '.' or '\''
 * that would begin a line (a request) gets \& before it, a ':' or ','
 * glued to the next word is followed by a break point \: so a long list
 * (a cipher string) can wrap, and a UTF-8 sequence is written as
 * \[uXXXX]. */
static void roff_text(FILE *out, const char *s, bool bol)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned cp = *p, extra = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : 1;

        if (bol && (cp == '.' || cp == '\''))
            fputs("\\&", out);
        bol = cp == '\n';
        if (cp == '\\')
            fputs("\\e", out);
        else if (cp == '-')
            fputs("\\-", out);
        else if (cp < 0x80)
            fputc((int)cp, out);
        else if (cp >= 0xc0) {
            cp &= 0x3f >> extra;
            for (; extra && (p[1] & 0xc0) == 0x80; extra--)
                cp = cp << 6 | (*++p & 0x3f);
            fprintf(out, "\\[u%04X]", cp);
        } /* else a stray continuation byte: left out */
        if ((cp == ':' || cp == ',') && isalnum(p[1]))
            fputs("\\:", out);
    }
}

/* One flag of the table as a .TP entry. */
static void man_flag(FILE *out, const struct flag *o)
{
    char env[64], lo[32], hi[32];

    flags_env_name(table.env_prefix, o, env, sizeof(env));
    fprintf(out, ".TP\n\\fB\\-\\-");
    roff_text(out, o->name, false);
    fprintf(out, "\\fR");
    if (o->kind != FLAG_BOOL) {
        fprintf(out, " \\fI");
        roff_text(out, flags_metavar(o), false);
        fprintf(out, "\\fR");
    }
    fputc('\n', out);
    roff_text(out, o->help, true);
    if (o->kind == FLAG_DURATION || o->kind == FLAG_SIZE) {
        (o->kind == FLAG_SIZE ? flags_fmt_size
                              : flags_fmt_duration)(o->min, lo, sizeof(lo));
        (o->kind == FLAG_SIZE ? flags_fmt_size
                              : flags_fmt_duration)(o->max, hi, sizeof(hi));
        fprintf(out, " (%s to %s)", lo, hi);
    } else if (o->kind == FLAG_UINT) {
        fprintf(out, " (%llu to %llu)", (unsigned long long)o->min,
                (unsigned long long)o->max);
    } else if (o->kind == FLAG_ENUM) {
        fprintf(out, " (one of ");
        roff_text(out, o->choices, false);
        fputc(')', out);
    }
    fprintf(out, ".\n.br\nDefault: ");
    if (o->kind == FLAG_BOOL) {
        fprintf(out, "off; environment \\fB");
        roff_text(out, env, false);
        fprintf(out, "=1\\fR.\n");
    } else {
        if (o->def[0]) {
            fprintf(out, "\\fB");
            roff_text(out, o->def, false);
            fprintf(out, "\\fR");
        } else {
            fprintf(out, "none");
        }
        fprintf(out, "; environment \\fB");
        roff_text(out, env, false);
        fprintf(out, "\\fR.\n");
    }
    if (strcmp(o->metric, "-")) {
        fprintf(out, ".br\nMetric when it bites: \\fB");
        roff_text(out, o->metric, false);
        fprintf(out, "\\fR.\n");
    }
}

/* A .TP entry of bold term and plain text (both roff-escaped). */
static void man_item(FILE *out, const char *term, const char *text)
{
    fprintf(out, ".TP\n\\fB");
    roff_text(out, term, false);
    fprintf(out, "\\fR\n");
    roff_text(out, text, true);
    fputc('\n', out);
}

void config_print_man(FILE *out)
{
    static const char *const endpoints[][2] = {
        {"GET /healthz", "liveness: 200 ok"},
        {"GET /metrics", "Prometheus text: every series under METRICS"},
        {"GET /debug/mem, GET /debug/conns",
         "live memory by tag (JSON); one JSON line per connection. Served on "
         "the public listeners only without --auth and --admin-listen"},
        {"GET /dashboard, GET /debug/stream",
         "a live page of moor's memory, connections, messages and latency, "
         "and its feed (Server-Sent Events, one JSON event a second); "
         "served where /debug is"},
        {"GET /echo", "WebSocket echo"},
        {"GET /sub/CHANNEL[,CHANNEL...]",
         "WebSocket subscriber; with Accept: text/event-stream, Server-Sent "
         "Events"},
        {"GET /pub/CHANNEL", "WebSocket publisher"},
        {"POST /pub/CHANNEL",
         "publishes the body; 202 with the number of subscribers reached"},
    };
    static const char *const commands[][2] = {
        {"serve", "run the server; its flags are under OPTIONS"},
        {"bench", "measure a WebSocket server (idle memory per connection, "
                  "echo messages/s and latency, broadcast, handshakes) or an "
                  "HTTP server with moor's HTTP client; see moor bench --help"},
        {"version", "print the version (also --version, -V)"},
        {"help", "print the list of commands (also --help, -h)"},
    };
    static const char *const others[][2] = {
        {"-h, --help", "print the flags of moor serve and exit."},
        {"--limits-md", "print docs/limits.md (every limit, its default and "
                        "its metric, as a Markdown table) and exit."},
        {"--man", "print this manual page (roff) and exit."},
        {"--metrics-md", "print the table of METRICS as Markdown "
                         "(docs/monitoring.md) and exit."},
        {"--config FILE",
         "read settings from FILE first: one \"name value\" or \"name = "
         "value\" a line, names as the flags without --, # comments; the "
         "environment and the command line beat it. A bad line is an error "
         "naming FILE and the line."},
        {"--print-config",
         "print the effective configuration in the --config format and "
         "exit."},
    };
    static const char *const envs[][2] = {
        {"MOOR_FLAG_NAME",
         "every flag --flag-name of moor serve is also read from the "
         "environment variable MOOR_ and its name in capitals with '_' for "
         "'-' (each is named under OPTIONS); the empty string counts as "
         "unset. A flag on the command line beats its variable, which beats "
         "the config file, which beats the default."},
        {"MOOR_CONFIG", "the config file, when --config is not given."},
        {"NOTIFY_SOCKET",
         "set by systemd for a Type=notify service: moor serve sends READY=1 "
         "once every listener is bound, RELOADING=1 and READY=1 around a "
         "SIGHUP reload, and STOPPING=1 when the graceful shutdown begins "
         "(sd_notify(3)). Unset, nothing is sent."},
        {"WATCHDOG_USEC, WATCHDOG_PID",
         "set by systemd for WatchdogSec=: the event loop sends WATCHDOG=1 "
         "every half of WATCHDOG_USEC, so a loop that is stuck is restarted."},
    };
    static const char *const sigs[][2] = {
        {"SIGTERM, SIGINT",
         "graceful shutdown: the listeners close, connections are drained "
         "(WebSocket close, SSE and HTTP ends) and what is still open after "
         "--shutdown-timeout is closed; then the process exits 0."},
        {"SIGHUP",
         "reload: the --config file is read again (the settings marked "
         "SIGHUP under OPTIONS take the new value, any other change is "
         "logged as needing a restart, a bad file changes nothing); the "
         "--tls-cert certificate and --tls-key key, and the "
         "--jwt-secret-file and --jwt-key-file keys, are read again; open "
         "connections keep what they started with, and a file that fails "
         "leaves the old one in service."},
        {"SIGPIPE", "ignored (a closed stdout or stderr costs a lost line)."},
    };
    static const char *const exits[][2] = {
        {"0", "clean shutdown (or --help, --limits-md, --metrics-md, --man, "
              "--print-config)"},
        {"1", "the server cannot start (say, the port is taken)"},
        {"2", "usage error: a bad flag or value, named in one line"},
        {"3", "debug builds only: memory still live after shutdown"},
    };
    static const char *const files[][2] = {
        {"/etc/default/moor",
         "the environment file of the systemd unit moor.service: MOOR_* "
         "variables, and MOOR_ARGS, extra words for moor serve."},
        {"PREFIX/lib/systemd/system/moor.service",
         "the systemd unit that make install installs (Type=notify, "
         "WatchdogSec=, LimitNOFILE= above the default of --max-conns, "
         "sandboxed)."},
    };
#define MAN_ITEMS(list)                                                        \
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)                \
    man_item(out, list[i][0], list[i][1])

    fprintf(out,
            ".\\\" moor(1). Generated by `make docs` (moor serve --man) from "
            "the flag table\n"
            ".\\\" in src/config.c; edit that table, not this file.\n"
            ".TH MOOR 1 \"\" \"moor %s\" \"User Commands\"\n"
            ".ad l\n" /* ragged right: long defaults (cipher lists) */
            ".nh\n"   /* no hyphens inside flag and metric names */
            ".SH NAME\n"
            "moor \\- long\\-lived connections (WebSocket, Server\\-Sent "
            "Events, TCP frames, HTTP/1.1, TLS) with bounded, accounted "
            "memory\n"
            ".SH SYNOPSIS\n"
            ".B moor serve\n[\\fIflags\\fR]\n.br\n"
            ".B moor bench\n\\fIMODE\\fR [\\fIflags\\fR]\n.br\n"
            ".B moor version\n.br\n"
            ".B moor help\n"
            ".SH DESCRIPTION\n",
            MOOR_VERSION);
    roff_text(out,
              "moor serve runs moor's HTTP/1.1 server and its push gateway "
              "with bounded, accounted memory: every limit is a flag below, "
              "and each time one bites a counter on GET /metrics goes up. "
              "Every wait has a deadline, every queue a bound, and after a "
              "shutdown no byte is left allocated. It serves:\n",
              true);
    MAN_ITEMS(endpoints);
    fprintf(out, ".PP\n");
    roff_text(out,
              "--tcp-listen adds pub/sub over length-prefixed TCP frames; "
              "--tls-listen serves all of it over TLS (HTTPS, wss://), "
              "--tcp-tls the TCP listener; --admin-listen moves /metrics and "
              "/debug to an address of their own; --auth jwt or --auth url "
              "decides who may subscribe and publish.\n",
              true);
    fprintf(out, ".SH COMMANDS\n");
    MAN_ITEMS(commands);
    fprintf(out, ".SH OPTIONS\n");
    roff_text(out,
              "The flags of moor serve, given as --flag value or "
              "--flag=value; a boolean flag takes no value. Durations take "
              "ms, s, m, h (250ms, 10s, 2m; \"0\" alone is zero). Sizes take "
              "B, KiB, MiB, GiB (powers of 1024), KB, MB, GB (powers of "
              "1000), or a plain number of bytes.\n",
              true);
    for (size_t i = 0; i < N_OPTS; i++)
        man_flag(out, &opts[i]);
    MAN_ITEMS(others);
    fprintf(out, ".SH METRICS\n");
    roff_text(out,
              "GET /metrics serves these families (Prometheus text format); "
              "each is given with its labels in braces, its type and what "
              "one unit of its value counts.\n",
              true);
    {
        size_t n;
        const struct series *t = series_table(&n);
        char term[160], text[1024];

        for (size_t i = 0; i < n; i++) {
            snprintf(term, sizeof(term), t[i].labels[0] ? "%s{%s}" : "%s",
                     t[i].name, t[i].labels);
            snprintf(text, sizeof(text), "%s, %s: %s", t[i].type, t[i].unit,
                     t[i].help);
            man_item(out, term, text);
        }
    }
    fprintf(out, ".SH ENVIRONMENT\n");
    MAN_ITEMS(envs);
    fprintf(out, ".SH SIGNALS\n");
    MAN_ITEMS(sigs);
    fprintf(out, ".SH EXIT STATUS\n");
    MAN_ITEMS(exits);
    fprintf(out, ".SH FILES\n");
    MAN_ITEMS(files);
    fprintf(out, ".SH SEE ALSO\n"
                 ".BR systemd.service (5),\n"
                 ".BR systemd.exec (5),\n"
                 ".BR sd_notify (3);\n"
                 "in the source tree, docs/limits.md (every limit and its "
                 "metric) and docs/operations.md (running under systemd).\n");
#undef MAN_ITEMS
}
