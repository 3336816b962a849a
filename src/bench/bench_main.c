/*
 * bench_main.c - `moor bench MODE [flags]`: a WebSocket load generator
 * and memory meter, built on moor's own client (ws_client.h) and event
 * loop. This file is the command: its modes, then flags, checks, set-up,
 * the run, the report and the exit status, each from the file that owns
 * it:
 *
 *   bench_flags.c      the flag table (flags.h's engine) and --help
 *   bench_target.c     URLs, source addresses, fd and port limits, pid
 *   bench_driver.c     the connections and the phases every mode shares
 *   bench_idle.c       idle: the server's memory per connection
 *   bench_echo.c       echo: messages/s and round-trip latency
 *   bench_broadcast.c  broadcast: fan-out deliveries/s and latency
 *   bench_handshake.c  handshake: handshakes/s and their time
 *   bench_http.c       http: moor's HTTP client, requests/s, latency, its
 *                      CPU, and its memory per idle pooled connection
 *   bench_report.c     progress, the table or JSON, the exit status
 *
 * Keeps: the bench exits non-zero with a one-line reason when the server
 * cannot be reached or connections fail; all memory comes from mem.c and
 * is zero after teardown (docs/principles.md, rule 7); no global mutable
 * state (everything is in struct bench; rule 10).
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "bench_int.h"
#include "log.h"
#include "mem.h"
#include "tls.h"
#include "util.h"

/* The modes, in the order --help lists them; bit i of a flag's .modes
 * is bench_modes[i] (M_IDLE ...). */
const struct bench_mode *const bench_modes[] = {
    &bench_idle, &bench_echo, &bench_broadcast, &bench_handshake, &bench_http,
};
const size_t bench_n_modes = ARRAY_SIZE(bench_modes);

/* After teardown: live bytes must be zero (rule 7). */
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
    rc = bench_parse_args(b, argc, argv, err, sizeof(err));
    if (rc == 0 && b->mode->run) {
        /* A run of its own (http): URL checks, limits, the report. */
        status = b->mode->run(b);
        mem_free(MEM_MISC, b);
        tls_mem_fini();
        rc = check_memory();
        return rc ? rc : status;
    }
    if (rc == 0 && bench_parse_url(b->mode->publisher ? "sub-url" : "url",
                                   b->o.url, &b->t, err, sizeof(err)) < 0)
        rc = -1;
    if (rc == 0 && b->mode->publisher &&
        bench_parse_url("pub-url", b->o.pub_url, &b->pt, err, sizeof(err)) < 0)
        rc = -1;
    if (rc == 0 && bench_parse_sources(b, err, sizeof(err)) < 0)
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
    if (bench_raise_nofile((uint64_t)b->o.conns + FD_RESERVE, err,
                           sizeof(err)) < 0 ||
        bench_check_ports(b, err, sizeof(err)) < 0 ||
        bench_find_pid(b, err, sizeof(err)) < 0 ||
        bench_setup(b, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor bench: %s\n", err);
        goto out;
    }

    if (bench_run(b, err, sizeof(err)) < 0) {
        fprintf(stderr, "moor bench: %s\n", err);
        goto out;
    }
    /* A run that stopped before connecting has nothing to report. */
    if (b->t_connect || b->o.json)
        bench_report(b);
    if (b->fatal[0] && !b->interrupted)
        fprintf(stderr, "moor bench: %s\n", b->fatal);
    else if (b->interrupted)
        fprintf(stderr, "moor bench: interrupted\n");
    status = bench_verdict(b);
out:
    bench_teardown(b);
    mem_free(MEM_MISC, b);
    tls_mem_fini(); /* OpenSSL's process state, before the exit check */
    rc = check_memory();
    return rc ? rc : status;
}
