/*
 * soak_int.h - what the files of `moor soak` (src/soak/) share: its
 * options, the state of one run (struct soak), one round's sample, and
 * the functions one file offers the others. Not for use outside
 * src/soak/: the command's entry point is soak.h.
 */
#ifndef MOOR_SOAK_INT_H
#define MOOR_SOAK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "bench/bench_target.h"
#include "conn.h"
#include "loop.h"
#include "ws_client.h"

/* /debug/mem tags a sample keeps (moor has fewer). */
#define SOAK_MAX_TAGS 24
#define SOAK_TAG_LEN 24

/* ---- flags ------------------------------------------------------------- */

struct soak_opts {
    char url[512];
    char pub_url[512]; /* "": echo; else --url subscribes, this publishes */
    uint32_t pid;      /* 0 = the process listening on the URL's address */
    uint32_t conns;
    uint32_t messages; /* echoed per connection (or published) a round */
    uint64_t size;
    uint32_t spread; /* percent: sizes uniform in size +- spread */
    uint32_t rounds; /* 0 = until --duration */
    uint32_t duration_ms;
    uint32_t warmup; /* rounds left out of the verdict */
    uint64_t leak_threshold;
    char out[512];
    uint32_t hold_ms;
    uint32_t settle_ms;
    char faults[128];
    uint32_t fault_conns;
    char close[16]; /* clean|rst|mixed */
    char mem_url[512];
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    char tls_ca[512]; /* wss://: trust these CAs, not the system store */
    bool insecure;    /* wss://: no certificate check at all */
};

/* ---- one round's figures ----------------------------------------------- */

/* The series, in CSV order. Bytes unless said. */
enum soak_series {
    S_RSS = 0,
    S_ANON,
    S_PSS,
    S_PRIV,
    S_FDS,     /* count */
    S_THREADS, /* count */
    S_LIVE,    /* /debug/mem live_bytes (moor only) */
    S_NSERIES,
};

struct soak_sample {
    uint32_t round;
    double elapsed; /* s since the start */
    double v[S_NSERIES];
    bool have[S_NSERIES];
    double tag[SOAK_MAX_TAGS]; /* /debug/mem live_bytes per tag */
    uint32_t opened, failed, received, faults;
};

/* Fault kinds, a bit each in struct soak's fault_mask. */
enum soak_fault {
    F_SLOW = 0,  /* sends, never reads what comes back */
    F_VANISH,    /* open, then gone with an RST (SO_LINGER 0) */
    F_HALF,      /* half a frame sent, then held */
    F_HANDSHAKE, /* half an upgrade request, then RST */
    F_NKINDS,
};

/* ---- state ------------------------------------------------------------- */

struct sconn {
    struct conn *c;
    uint32_t want, got; /* echo: messages sent, echoes received */
    uint8_t state;      /* 0 idle, 1 connecting, 2 open, 3 closed */
    bool failed;
};

struct soak {
    struct soak_opts o;
    struct target t;
    struct target pt; /* --pub-url */
    bool pubsub;
    bool http;           /* --url http://: keep-alive GETs (soak_http.c) */
    bool sse;            /* ... with --pub-url: SSE subscribers (soak_sse.c) */
    void *sse_subs;      /* soak_sse.c's subscribers */
    bool tcp;            /* --url tcp://: TCP frame subscribers (soak_tcp.c) */
    bool pub_tcp;        /* --pub-url tcp://: a TCP frame publisher */
    void *tcp_subs;      /* soak_tcp.c's subscribers */
    int pub_fd;          /* the TCP publisher's socket, or -1 */
    struct tls_ctx *tls; /* wss:// (--url or --pub-url), or NULL */
    int *http_fds;       /* its --conns sockets */
    pid_t pid;
    bool moor_mem; /* /debug/mem answered: moor's accounted bytes */
    char mem_host[300];
    char mem_path[256];
    struct sockaddr_storage mem_addr;
    socklen_t mem_addrlen;
    unsigned fault_mask;
    uint32_t nfault_kinds;

    struct loop *loop;
    struct conn_set set;
    bool set_ready;
    struct ws_client *cl;
    struct ws_handlers h;
    struct sconn *conns;
    struct sconn pub; /* the publisher, a new one every round */
    uint8_t *payload;
    uint32_t open, connecting, closed_early;
    int *fault_fds;
    uint32_t rng;

    struct soak_sample *samples; /* one per round done */
    uint32_t nsamples, cap;
    char tags[SOAK_MAX_TAGS][SOAK_TAG_LEN];
    uint32_t ntags;
    FILE *csv;
    uint64_t t0; /* ns */
    int sigfd;
    struct watcher sigw;
    bool interrupted;
    char lost[400]; /* why the target was lost, if it was */
    char why[128];  /* why the last connection failed (this round's) */
};

/* soak_flags.c: parses the flags into s->o. Returns 0, 1 (--help
 * printed), or -1 with err set. */
int soak_parse_args(struct soak *s, int argc, char **argv, char *err,
                    size_t errlen);

/* soak_conns.c: the connections of a round. */
int soak_conns_setup(struct soak *s, char *err, size_t errlen);
void soak_conns_teardown(struct soak *s);
/* Opens --conns connections and the fault connections, echoes
 * --messages on each (or publishes --messages that each subscriber must
 * receive), holds everything --hold, closes it all (--close). Fills
 * the round's counts in smp. Returns 0, or -1 with err set when the
 * server could not be reached at all (the target is lost). */
int soak_round(struct soak *s, struct soak_sample *smp, char *err,
               size_t errlen);

/* The kind of fault connection i (round-robin over --faults), and
 * whether --conns connection i ends with an RST (--close). */
enum soak_fault soak_fault_kind(const struct soak *s, uint32_t i);
bool soak_use_rst(const struct soak *s, uint32_t i);

/* The loop until done(s) or ms have passed (done NULL: all of ms);
 * whether done(s) became true. */
bool soak_pump(struct soak *s, bool (*done)(const struct soak *), uint32_t ms);
/* --pub-url: a new publisher connects and sends --messages messages; and
 * its close handshake at the end of the round. */
void soak_publish(struct soak *s);
void soak_close_publisher(struct soak *s);

/* soak_http.c: soak_round() for an http:// --url; a blocking socket to
 * it (--connect-timeout on every wait), or -1 with errno; the HTTP fault
 * connections of a round (SSE: subscriptions), opened and closed. */
int soak_http_round(struct soak *s, struct soak_sample *smp, char *err,
                    size_t errlen);
int soak_http_connect(const struct soak *s, bool small_rcvbuf);
void soak_http_open_faults(struct soak *s, struct soak_sample *smp);
void soak_http_close_faults(struct soak *s);

/* soak_sse.c: soak_round() for SSE subscribers, and their state. */
int soak_sse_setup(struct soak *s);
void soak_sse_teardown(struct soak *s);
int soak_sse_round(struct soak *s, struct soak_sample *smp, char *err,
                   size_t errlen);

/* soak_tcp.c: tcp://HOST:PORT/CHANNEL (--flag) into t, the channel in
 * t->path after its '/'; soak_round() for TCP frame subscribers, their
 * state; the TCP publisher of soak_publish() and its close. */
int soak_tcp_parse_url(const char *flag, const char *url, struct target *t,
                       char *err, size_t errlen);
int soak_tcp_setup(struct soak *s);
void soak_tcp_teardown(struct soak *s);
int soak_tcp_round(struct soak *s, struct soak_sample *smp, char *err,
                   size_t errlen);
void soak_tcp_publish(struct soak *s);
void soak_tcp_close_publisher(struct soak *s);

/* soak_sample.c: the server's figures at the quiet point. Returns 0, or
 * -1 with err set when the process is gone. */
int soak_sample(struct soak *s, struct soak_sample *smp, char *err,
                size_t errlen);
/* Asks the --mem-url once: sets s->moor_mem and the tag names. */
void soak_probe_mem(struct soak *s);

/* soak_report.c. */
int soak_out_open(struct soak *s, int argc, char **argv, char *err,
                  size_t errlen);
void soak_out_sample(struct soak *s, const struct soak_sample *smp);
void soak_progress(struct soak *s, const struct soak_sample *smp);
/* The verdict over the samples (stderr/stdout and summary.json); returns
 * the exit status. */
int soak_verdict(struct soak *s, int argc, char **argv);
void soak_out_close(struct soak *s);
const char *soak_series_name(enum soak_series i);

#endif
