/*
 * bench_http.h - what the two files of `moor bench http` share: the
 * state of one run (bench_http.c runs it, bench_http_report.c says what
 * it measured). Not for use outside src/bench/.
 */
#ifndef MOOR_BENCH_HTTP_H
#define MOOR_BENCH_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "moor.h"
#include "bench_int.h"
#include "mem.h"
#include "procfs.h"

enum hb_phase {
    HB_WARM = 0, /* the warm-up request */
    HB_SETTLE,   /* idle-hold: its connection closed, the heap settles */
    HB_BURST,    /* idle-hold: --conns requests at once */
    HB_HOLD,     /* idle-hold: all pooled, idle */
    HB_RUN,      /* the request loop: warm-up, then the window */
    HB_DRAIN,    /* no more sends; the last answers come in */
    HB_DONE,
};

struct hb;

struct hb_chain {
    struct hb *hb;
    struct moor_http_call *call; /* in flight, or NULL */
    uint64_t due;                /* ns: when it was meant to go out */
};

/* Our own memory at one moment. */
struct hb_mem {
    struct procfs_mem m;
    bool ok;
    int64_t tag[MEM_TAG_COUNT]; /* accounted live bytes */
};

struct hb {
    struct bench *b;
    struct moor_loop *ml;
    struct moor_http_client *cl;
    struct moor_http_request rq;
    struct moor_http_callbacks cbs;
    struct hb_chain warm;
    struct hb_chain *chains; /* o.conns */
    struct hb_chain **free;  /* --rate: chains with nothing in flight */
    uint32_t n, nfree, busy; /* chains, free ones, calls in flight */
    struct hist *lat;        /* ns */
    int sigfd;
    enum hb_phase phase;
    uint64_t phase_end, sig_at; /* ns: the phase's deadline, last read */
    bool sending, measuring, interrupted;
    char fatal[400];
    /* the request loop */
    uint64_t t0, t1, cpu0, cpu1;
    uint64_t allocs0, allocs1, abytes0, abytes1; /* moor's, all tags */
    uint64_t requests; /* answered 2xx/3xx within the window */
    uint64_t errors, streak, held;
    uint64_t sched0, sent; /* --rate: the schedule's start, sends made */
    struct reasons why;
    struct moor_http_client_stats st0, st1, st_end;
    /* idle-hold */
    uint32_t burst_done;
    uint64_t hold0, hold1; /* ns: the hold began, ended */
    struct hb_mem before, at_idle, after, trimmed;
    struct moor_http_client_stats st_burst0, st_idle;
};

/* The table, or one JSON object with --json; status is the exit
 * status the run earned. */
void bench_http_report(const struct hb *hb, int status);
/* The exit status the run earned. */
int bench_http_verdict(const struct hb *hb);
/* What stderr says at the end: why the run stopped, and what went wrong
 * that the figures alone do not say. */
void bench_http_notes(const struct hb *hb);

#endif
