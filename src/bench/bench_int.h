/*
 * bench_int.h - what the files of `moor bench` (src/bench/) share: its
 * options, the state of one run (struct bench), a mode's hooks (struct
 * bench_mode), and the functions one file offers the others. Not for use
 * outside src/bench/: the command's entry point is bench.h.
 *
 * Modes. Each is a struct bench_mode: what it does once every connection
 * is open (start), at its own deadlines (on_timer), per message received
 * (on_message) and in the report. The driver around them is shared
 * (bench_driver.c). A mode is a row of bench_modes[] (bench_main.c), a
 * bit (M_*) for the flags that apply to it, and its hooks.
 */
#ifndef MOOR_BENCH_INT_H
#define MOOR_BENCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "bench_target.h"
#include "conn.h"
#include "loop.h"
#include "procfs.h"
#include "timer.h"
#include "ws_client.h"

/* fds the bench needs besides its connections: stdio, epoll, eventfd,
 * signalfd, the warm-up connection, /proc reads. */
#define FD_RESERVE 32u
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
    char tls_ca[512];        /* wss://: trust these CAs, not the system store */
    bool insecure;           /* wss://: no certificate check at all */
    bool tls;                /* --tls: ws:// URLs are taken as wss:// */
    uint32_t idle_hold_ms;   /* http: hold the pooled connections idle */
    uint32_t max_handshakes; /* http: the client's max_handshakes */
};

/* Which modes a flag applies to: bit i is bench_modes[i]. */
#define M_IDLE (1u << 0)
#define M_ECHO (1u << 1)
#define M_BCAST (1u << 2)
#define M_HS (1u << 3)
#define M_HTTP (1u << 4)
#define M_WS (M_IDLE | M_ECHO | M_BCAST | M_HS) /* the WebSocket modes */
#define M_ALL (M_WS | M_HTTP)

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
    /* A mode with a run of its own (http: moor's HTTP client, not the
     * WebSocket driver): everything after the flags is its, and it
     * returns the exit status. The hooks above are then unused. */
    int (*run)(struct bench *b);
    const char *default_url; /* its --url default, if not the table's */
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

/* ---- what the files offer each other ----------------------------------- */

/* bench_main.c: the modes, in --help's order. */
extern const struct bench_mode bench_idle, bench_echo, bench_broadcast,
    bench_handshake, bench_http;
extern const struct bench_mode *const bench_modes[];
extern const size_t bench_n_modes;

/* bench_flags.c: parses "MODE [flags]" into b->mode and b->o. Returns 0,
 * 1 (--help printed), or -1 with err set. */
int bench_parse_args(struct bench *b, int argc, char **argv, char *err,
                     size_t errlen);

/* bench_target.c. Each returns 0 or -1 with err set. */
/* bench_parse_url() and bench_target_pid(): bench_target.h. */
/* http://HOST[:PORT][/PATH] or https://, the value of --url (http). */
int bench_check_http_url(const char *url, char *err, size_t errlen);
/* Fills b->src from --sources. */
int bench_parse_sources(struct bench *b, char *err, size_t errlen);
/* Raises the open-files soft limit to the hard limit (and the hard limit
 * too when allowed, i.e. as root); fails when need fds cannot be had. */
int bench_raise_nofile(uint64_t need, char *err, size_t errlen);
/* Checks that each source address has enough ephemeral ports for its
 * share of the connections. */
int bench_check_ports(const struct bench *b, char *err, size_t errlen);
/* Finds the server's pid (required only for a mode that measures
 * memory). */
int bench_find_pid(struct bench *b, char *err, size_t errlen);

/* bench_driver.c. */
/* Allocates everything the run needs. Returns 0 or -1 with err set. */
int bench_setup(struct bench *b, char *err, size_t errlen);
/* The warm-up, then every phase until the loop stops. Returns 0, or -1
 * with err set when the warm-up connection could not even start. */
int bench_run(struct bench *b, char *err, size_t errlen);
void bench_teardown(struct bench *b);
/* Ends the run with a reason (the first one given is kept): the close
 * phase starts. */
void bench_stop(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Close handshakes on every connection; whatever is left at the deadline
 * is closed outright. */
void bench_begin_close(struct bench *b);

/* bench_echo.c: the measuring window, echo's and the other modes'. */
void bench_measure_from_now(struct bench *b);
void echo_on_timer(struct bench *b);
void echo_finish(struct bench *b);

/* bench_broadcast.c: the hooks the driver calls for the publisher. */
void bcast_warm_probe(struct bench *b);
void bcast_on_tick(struct timer *t);
void bcast_conn_gone(struct bench *b, struct bconn *bc);

/* bench_report.c. */
/* Progress for a person watching; silent with --json. */
void bench_note(const struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Seconds the connecting phase took (0 if it never ended). */
double bench_open_secs(const struct bench *b);
/* Seconds of the measuring window (up to now while it is open). */
double bench_window_secs(const struct bench *b);
void bench_count_reason(struct reasons *r, const char *what);
/* "connection refused: 3, handshake: HTTP 503: 2" */
void bench_format_reasons(const struct reasons *r, char *out, size_t len);
/* The same as a JSON object: {"connection refused": 3, ...} */
void bench_json_reasons(FILE *out, const struct reasons *r);
double bench_cpu_pct(uint64_t from, uint64_t to, double secs);
/* The latency and cpu lines of a report over a measuring window of secs,
 * and the same as JSON members. */
void bench_latency_lines(struct bench *b, FILE *out, double secs);
/* "measured" (the window, the warm-up, b->rcvd events called what), the
 * rate (labelled per_s) and bench_latency_lines(): the body of a report
 * that counts one kind of event. */
void bench_rate_lines(struct bench *b, FILE *out, double secs, const char *what,
                      const char *per_s);
void bench_json_latency(struct bench *b, FILE *out, double secs);
/* The exit status the run earned (before the memory check). */
int bench_verdict(const struct bench *b);
void bench_report(struct bench *b);

#endif
