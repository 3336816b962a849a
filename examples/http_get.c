/*
 * http_get.c - a small curl on libmoor's pooled HTTP/1.1 client: the
 * client API in a few pages of C, and the program the integration tests
 * drive it with (tests/integration/test_http_client.py).
 *
 *   cc http_get.c $(pkg-config --cflags --libs libmoor) -o http_get
 *   ./http_get --repeat 3 http://127.0.0.1:8080/healthz
 *
 * usage: http_get [options] URL
 *   -X METHOD            the method (default GET)
 *   -H 'Name: value'     an extra header field (repeatable)
 *   -d DATA              the request body, from memory
 *   --produce N          a body of N bytes of 'x', produced in 4 KiB
 *                        pieces as moor can take them (on_writable)
 *   --chunked            with --produce: chunked, length unknown (-1)
 *   --repeat N           N requests in all (default 1)
 *   --parallel P         at most P in flight (default 1)
 *   --interval MS        a lane starts its next request MS ms after its
 *                        previous one ended (lets pooled conns go idle)
 *   --idempotent         the request may be retried whatever the method
 *   --cancel-after-bytes N   cancel a request once N body bytes arrived
 *   --pause-ms MS        pause reading for MS ms after the head arrives
 *   --hold MS            after the last request, keep the client and its
 *                        pool MS ms more, running the loop
 *   --close-idle         moor_http_client_close_idle() before the stats
 *   and one flag per field of struct moor_http_client_options (the table
 *   in main(): --connect-timeout MS, --max-conns-per-host N, --tls-ca
 *   FILE, --insecure, --dns-servers IP:PORT, ...).
 *
 * Output, one JSON object per line on stdout: one per request, as it
 * ends,
 *   {"i":0,"status":200,"error":"","code":0,"retried":0,"reused":0,
 *    "body_bytes":5,"received":5,"crc32":N,"ms":12,"body":"hello",
 *    "message":""}
 * ("error" is a stable name, "" when it succeeded; "body" is the first
 * 256 bytes, each byte >= 0x80 written as \u00XX, so that
 * body.encode("latin-1") gives the bytes back; "crc32" is zlib's CRC-32 of
 * the whole body; "ms" the time from the request to its end); then
 *   {"stats":{...moor_http_client_stats, in total...},"mem":{...}}
 * and, once everything of moor's is freed,
 *   {"after_free":{"live_bytes":0}}
 * Exit status: 0 if every request succeeded (any HTTP status), 1 if one
 * failed, 2 on bad arguments (with "http_get: <why>" on stderr).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <moor.h>

#define MAX_HEADERS 64
#define SHOWN 256  /* body bytes printed per request */
#define PIECE 4096 /* a produced body goes out in pieces this big */

/* One lane runs one request at a time; --parallel sets how many lanes. */
struct lane {
    struct moor_http_call *call; /* NULL: no request in flight */
    long long free_at;           /* ms: when it may start the next one */
    long long resume_at;         /* ms: when a paused body resumes; 0: not */
    long long t0;                /* ms: when the request started */
    int i;                       /* the request's number */
    long long produced;          /* --produce: bytes written so far */
    unsigned long long received; /* body bytes seen by on_body */
    unsigned long crc;
    unsigned char shown[SHOWN];
    size_t n_shown;
};

static struct {
    struct moor_http_request req;
    long long produce, cancel_after;
    long long pause_ms, interval_ms;
    int failed;
} g = {.produce = -1, .cancel_after = -1};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* zlib's CRC-32, bit by bit: short, and fast enough for a test tool. */
static unsigned long crc32_update(unsigned long crc, const unsigned char *p,
                                  size_t n)
{
    crc = ~crc & 0xffffffffUL;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320UL & (0UL - (crc & 1)));
    }
    return ~crc & 0xffffffffUL;
}

/* Prints p[0..n) as the inside of a JSON string (ASCII only). */
static void json_str(const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)p[k];

        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
}

/* A stable name for each way a request can end (the tests match these). */
static const char *error_name(int code, char *buf, size_t cap)
{
    switch (code) {
    case 0:
        return "";
    case MOOR_ERESOLVE:
        return "resolve";
    case MOOR_ETLS:
        return "tls";
    case MOOR_ETLS_VERIFY:
        return "tls_verify";
    case MOOR_EBADRESPONSE:
        return "bad_response";
    case MOOR_ETOOBIG:
        return "too_big";
    case MOOR_EPEERCLOSED:
        return "peer_closed";
    case MOOR_EQUEUEFULL:
        return "queue_full";
    case MOOR_ETIMEOUT_RESOLVE:
        return "timeout_resolve";
    case MOOR_ETIMEOUT_CONNECT:
        return "timeout_connect";
    case MOOR_ETIMEOUT_TLS:
        return "timeout_tls";
    case MOOR_ETIMEOUT_WRITE:
        return "timeout_write";
    case MOOR_ETIMEOUT_HEAD:
        return "timeout_head";
    case MOOR_ETIMEOUT_BODY:
        return "timeout_body";
    case MOOR_ETIMEOUT_TOTAL:
        return "timeout_total";
    case MOOR_ETIMEOUT_WAIT:
        return "timeout_wait";
    case MOOR_ETIMEOUT_PAUSE:
        return "timeout_pause";
    case -ECANCELED:
        return "canceled";
    case -ECONNREFUSED:
        return "connection_refused";
    case -ECONNRESET:
        return "connection_reset";
    }
    snprintf(buf, cap, "%s_%d", code <= -10000 ? "moor" : "errno", -code);
    return buf;
}

/* ---- the callbacks of a request ------------------------------------------ */

static void on_head(struct moor_http_call *c,
                    const struct moor_http_response *r, void *user)
{
    struct lane *ln = user;

    (void)r; /* status, headers: on_done gets the status too */
    if (g.pause_ms > 0) {
        /* Stop reading: TCP pushes the server back. The main loop resumes
         * the call when resume_at has come (or on_done ends it first). */
        moor_http_call_pause(c);
        ln->resume_at = now_ms() + g.pause_ms;
    }
}

static void on_body(struct moor_http_call *c, const void *p, size_t n,
                    void *user)
{
    struct lane *ln = user;
    size_t room = SHOWN - ln->n_shown;

    memcpy(ln->shown + ln->n_shown, p, n < room ? n : room);
    ln->n_shown += n < room ? n : room;
    ln->crc = crc32_update(ln->crc, p, n);
    ln->received += n;
    if (g.cancel_after >= 0 &&
        ln->received >= (unsigned long long)g.cancel_after)
        moor_http_call_cancel(c); /* on_done runs inside; c is gone after */
}

/* A produced body: write pieces until moor says "enough for now" (1), then
 * wait for the next on_writable; end the body once it is all out. */
static void on_writable(struct moor_http_call *c, void *user)
{
    static char xs[PIECE];
    struct lane *ln = user;
    int rc = 0;

    if (xs[0] != 'x')
        memset(xs, 'x', sizeof(xs));
    while (rc == 0 && ln->produced < g.produce) {
        long long left = g.produce - ln->produced;
        size_t n = left < PIECE ? (size_t)left : PIECE;

        rc = moor_http_call_write(c, xs, n);
        if (rc < 0) {
            fprintf(stderr, "http_get: write: %s\n", moor_strerror(rc));
            moor_http_call_cancel(c);
            return;
        }
        ln->produced += (long long)n;
    }
    if (ln->produced == g.produce && rc == 0) {
        ln->produced++; /* past the end: write_end only once */
        if ((rc = moor_http_call_write_end(c)) < 0) {
            fprintf(stderr, "http_get: write_end: %s\n", moor_strerror(rc));
            moor_http_call_cancel(c);
        }
    }
}

static void on_done(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user)
{
    struct lane *ln = user;
    char buf[32];

    (void)c; /* freed right after this returns */
    printf("{\"i\":%d,\"status\":%d,\"error\":\"%s\",\"code\":%d,"
           "\"retried\":%d,\"reused\":%d,\"body_bytes\":%llu,"
           "\"received\":%llu,\"crc32\":%lu,\"ms\":%lld,\"body\":\"",
           ln->i, r->status, error_name(r->error, buf, sizeof(buf)), r->error,
           r->retried, r->reused, (unsigned long long)r->body_bytes,
           ln->received, ln->crc, now_ms() - ln->t0);
    json_str((const char *)ln->shown, ln->n_shown);
    printf("\",\"message\":\"");
    json_str(r->message, strlen(r->message));
    printf("\"}\n");
    if (r->error)
        g.failed = 1;
    ln->call = NULL;
    ln->resume_at = 0;
    ln->free_at = now_ms() + g.interval_ms;
}

/* ---- the end: statistics and memory ---------------------------------------
 */

/* The live bytes of one tag in moor_mem_json()'s document, or -1. */
static long long tag_live(const char *json, const char *tag)
{
    char key[64];
    const char *p;

    snprintf(key, sizeof(key), "\"%s\":{\"live_bytes\":", tag);
    p = strstr(json, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static void print_stats(struct moor_http_client *cl)
{
    struct moor_http_client_stats st;
    long need = moor_mem_json(NULL, 0);
    char *json = need > 0 ? malloc((size_t)need + 1) : NULL;

    if (moor_http_client_stats(cl, NULL, &st) < 0)
        memset(&st, 0, sizeof(st));
    printf("{\"stats\":{\"active\":%ld,\"idle\":%ld,\"dialing\":%ld,"
           "\"waiting\":%ld,\"requests\":%llu,\"conns_new\":%llu,"
           "\"conns_reused\":%llu,\"retries\":%llu,"
           "\"closed_idle_timeout\":%llu,\"closed_max_age\":%llu,"
           "\"closed_peer\":%llu,\"closed_abandoned\":%llu,"
           "\"closed_error\":%llu,\"closed_pool_full\":%llu,"
           "\"closed_by_response\":%llu,\"bytes_held\":%lld,"
           "\"tls_resumed\":%llu,\"tls_waiting\":%ld,\"tls_waited\":%llu}",
           st.active, st.idle, st.dialing, st.waiting,
           (unsigned long long)st.requests, (unsigned long long)st.conns_new,
           (unsigned long long)st.conns_reused, (unsigned long long)st.retries,
           (unsigned long long)st.closed_idle_timeout,
           (unsigned long long)st.closed_max_age,
           (unsigned long long)st.closed_peer,
           (unsigned long long)st.closed_abandoned,
           (unsigned long long)st.closed_error,
           (unsigned long long)st.closed_pool_full,
           (unsigned long long)st.closed_by_response, (long long)st.bytes_held,
           (unsigned long long)st.tls_resumed, st.tls_waiting,
           (unsigned long long)st.tls_waited);
    if (json && moor_mem_json(json, (size_t)need + 1) >= 0)
        printf(",\"mem\":{\"http_client\":%lld,\"dns\":%lld,\"tls\":%lld}",
               tag_live(json, "http_client"), tag_live(json, "dns"),
               tag_live(json, "tls"));
    printf("}\n");
    free(json);
}

/* ---- arguments -------------------------------------------------------------
 */

static int usage(const char *why, const char *arg)
{
    if (why)
        fprintf(stderr, "http_get: %s%s%s\n", why, arg ? ": " : "",
                arg ? arg : "");
    fprintf(stderr, "usage: http_get [-X METHOD] [-H 'Name: value']... "
                    "[-d DATA] [--OPTION VALUE]... URL\n"
                    "(the options are listed at the top of "
                    "examples/http_get.c)\n");
    return 2;
}

/* A whole decimal number in [0, max], or -1. */
static long long number(const char *s, unsigned long long max)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    return errno || *end || v > max ? -1 : (long long)v;
}

int main(int argc, char **argv)
{
    struct moor_http_client_options o;
    struct u32_flag {
        const char *name;
        uint32_t *u32;
    };
    long long repeat = 1, parallel = 1, hold = 0, max_body = -1, sessions = -1;
    int chunked = 0, close_idle = 0, started = 0, rc = 0, in_flight;
    struct moor_http_field headers[MAX_HEADERS];
    size_t n_headers = 0;
    struct moor_loop *loop;
    struct moor_http_client *cl;
    struct lane *lanes;
    struct moor_error err;
    long long live;

    moor_http_client_options_init(&o);
    moor_http_request_init(&g.req);
    /* Every uint32_t option of the client, by flag. */
    const struct u32_flag u32s[] = {
        {"--resolve-timeout", &o.resolve_timeout_ms},
        {"--connect-timeout", &o.connect_timeout_ms},
        {"--tls-timeout", &o.tls_timeout_ms},
        {"--write-timeout", &o.write_timeout_ms},
        {"--head-timeout", &o.head_timeout_ms},
        {"--body-timeout", &o.body_timeout_ms},
        {"--pause-timeout", &o.pause_timeout_ms},
        {"--total-timeout", &o.total_timeout_ms},
        {"--wait-timeout", &o.wait_timeout_ms},
        {"--max-conns-per-host", &o.max_conns_per_host},
        {"--max-waiting", &o.max_waiting_per_host},
        {"--max-idle-per-host", &o.max_idle_per_host},
        {"--max-idle", &o.max_idle_total},
        {"--idle-timeout", &o.idle_timeout_ms},
        {"--max-conn-age", &o.max_conn_age_ms},
        {"--max-requests-per-conn", &o.max_requests_per_conn},
        {"--max-header-bytes", &o.max_header_bytes},
        {"--max-handshakes", &o.max_handshakes},
    };
    /* The program's own numbers. */
    const struct {
        const char *name;
        long long *v;
    } nums[] = {
        {"--repeat", &repeat},
        {"--parallel", &parallel},
        {"--interval", &g.interval_ms},
        {"--hold", &hold},
        {"--produce", &g.produce},
        {"--cancel-after-bytes", &g.cancel_after},
        {"--pause-ms", &g.pause_ms},
        {"--max-body", &max_body},
        {"--tls-sessions", &sessions},
    };

    for (int a = 1; a < argc; a++) {
        const char *f = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        int done = 0;

        if (f[0] != '-') {
            if (g.req.url)
                return usage("one URL only", f);
            g.req.url = f;
            continue;
        }
        /* Flags without a value. */
        if (!strcmp(f, "--chunked") || !strcmp(f, "--insecure") ||
            !strcmp(f, "--idempotent") || !strcmp(f, "--close-idle")) {
            *(f[2] == 'c'   ? (f[3] == 'h' ? &chunked : &close_idle)
              : f[3] == 'n' ? &o.insecure
                            : &g.req.idempotent) = 1;
            continue;
        }
        if (!v)
            return usage("a value is missing after", f);
        a++;
        if (!strcmp(f, "-X")) {
            g.req.method = v;
        } else if (!strcmp(f, "-H")) {
            const char *colon = strchr(v, ':');
            char *name;

            if (!colon || colon == v || n_headers == MAX_HEADERS)
                return usage("-H wants 'Name: value'", v);
            name = strndup(v, (size_t)(colon - v)); /* freed at exit */
            for (colon++; *colon == ' ' || *colon == '\t'; colon++)
                ;
            headers[n_headers++] =
                (struct moor_http_field){.name = name, .value = colon};
        } else if (!strcmp(f, "-d")) {
            g.req.body = v;
            g.req.body_len = strlen(v);
        } else if (!strcmp(f, "--tls-ca")) {
            o.tls_ca = v;
        } else if (!strcmp(f, "--dns-servers")) {
            o.dns_servers = v;
        } else {
            for (size_t k = 0; !done && k < sizeof(u32s) / sizeof(*u32s); k++)
                if (!strcmp(f, u32s[k].name)) {
                    long long n = number(v, UINT32_MAX);
                    if (n < 0)
                        return usage("not a number for", f);
                    *u32s[k].u32 = (uint32_t)n;
                    done = 1;
                }
            for (size_t k = 0; !done && k < sizeof(nums) / sizeof(*nums); k++)
                if (!strcmp(f, nums[k].name)) {
                    if ((*nums[k].v = number(v, 1ULL << 40)) < 0)
                        return usage("not a number for", f);
                    done = 1;
                }
            if (!done)
                return usage("unknown option", f);
        }
    }
    if (!g.req.url)
        return usage("no URL", NULL);
    if (repeat < 1 || parallel < 1 || parallel > 100000)
        return usage("--repeat and --parallel want at least 1", NULL);
    if (chunked && g.produce < 0)
        return usage("--chunked goes with --produce", NULL);
    if (g.produce >= 0 && g.req.body)
        return usage("-d or --produce, not both", NULL);
    if (max_body >= 0)
        o.max_body = (uint64_t)max_body;
    if (sessions >= 0)
        o.tls_sessions_per_host = (uint32_t)sessions;
    g.req.headers = headers;
    g.req.n_headers = n_headers;
    if (g.produce >= 0)
        g.req.body_length = chunked ? -1 : g.produce;
    if (parallel > repeat)
        parallel = repeat;

    setvbuf(stdout, NULL, _IOLBF, 0); /* a line per request, as it ends */
    lanes = calloc((size_t)parallel, sizeof(*lanes));
    loop = lanes ? moor_loop_new(NULL, &err) : NULL;
    if (!loop) {
        fprintf(stderr, "http_get: %s\n",
                lanes ? err.message : "out of memory");
        free(lanes);
        return 1;
    }
    cl = moor_http_client_new(loop, &o, &err);
    if (!cl) {
        /* A CA file that does not load or bad --dns-servers: arguments. */
        fprintf(stderr, "http_get: %s\n", err.message);
        moor_loop_free(loop);
        free(lanes);
        return err.code == -EINVAL || err.code == MOOR_ETLS ? 2 : 1;
    }

    /* The program owns the loop: each turn starts what is due, resumes
     * paused bodies, then lets moor wait for I/O - no longer than until
     * our next deadline or moor's own. */
    struct moor_http_callbacks cb = {
        .on_head = on_head, .on_body = on_body, .on_done = on_done};
    if (g.produce >= 0)
        cb.on_writable = on_writable;
    long long hold_until = -1;

    for (;;) {
        long long now = now_ms(), next = now + 1000;
        int wait;

        in_flight = 0;
        for (long long k = 0; k < parallel; k++) {
            struct lane *ln = &lanes[k];

            if (!ln->call && started < repeat && ln->free_at <= now) {
                memset(ln, 0, sizeof(*ln));
                ln->i = started++;
                ln->t0 = now;
                ln->call = moor_http_client_request(cl, &g.req, &cb, ln, &err);
                if (!ln->call) {
                    /* A bad URL, method or header: nothing was sent. */
                    fprintf(stderr, "http_get: %s\n", err.message);
                    rc = err.code == MOOR_EURL || err.code == -EINVAL ? 2 : 1;
                    goto out;
                }
            }
            if (ln->call && ln->resume_at && ln->resume_at <= now) {
                ln->resume_at = 0;
                moor_http_call_resume(ln->call);
            }
            if (ln->call)
                in_flight++;
            if (ln->call && ln->resume_at && ln->resume_at < next)
                next = ln->resume_at;
            if (!ln->call && started < repeat && ln->free_at < next)
                next = ln->free_at;
        }
        if (!in_flight && started == repeat) {
            if (hold_until < 0)
                hold_until = now + hold;
            if (now >= hold_until)
                break;
            if (hold_until < next)
                next = hold_until;
        }
        wait = next > now ? (int)(next - now) : 0;
        if (moor_loop_timeout(loop) >= 0 && moor_loop_timeout(loop) < wait)
            wait = moor_loop_timeout(loop);
        if ((rc = moor_loop_run_once(loop, wait)) < 0) {
            fprintf(stderr, "http_get: moor_loop_run_once: %s\n",
                    moor_strerror(rc));
            rc = 1;
            goto out;
        }
        rc = 0;
    }
    if (close_idle) {
        moor_http_client_close_idle(cl);
        moor_loop_run_once(loop, 0);
    }
    print_stats(cl);
out:
    moor_http_client_free(cl); /* cancels what is left: on_done runs */
    moor_loop_free(loop);
    live = moor_mem_live_bytes();
    printf("{\"after_free\":{\"live_bytes\":%lld}}\n", live);
    for (size_t k = 0; k < n_headers; k++)
        free((char *)headers[k].name);
    free(lanes);
    if (live != 0)
        fprintf(stderr, "http_get: BUG: moor still holds %lld bytes\n", live);
    if (rc)
        return rc;
    return g.failed || live != 0;
}
