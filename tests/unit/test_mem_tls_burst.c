/*
 * test_mem_tls_burst.c - RSS comes back after a TLS burst in a library
 * program (docs/principles.md, rule 7; docs/memory.md, "What moor does").
 *
 * A program that links libmoor does not call tls_mem_init() (only `moor
 * serve` and `moor bench` do), so OpenSSL's allocations are not in moor's
 * accounting: the trim check sees them only as RSS above the live bytes.
 * This test is that program: moor.h (mem.h only for the trim counters it
 * prints and the longest backoff), its loop's trim check made short
 * through moor_loop_options, a burst of HTTPS GETs through the HTTP
 * client to a moor server in a child process (so only the client's memory
 * is measured here), the pool held idle a moment (the trims that run
 * then find OpenSSL's memory still live, give back little and back off),
 * then moor_http_client_close_idle(). RssAnon (/proc/self/status) must
 * give back three quarters of the burst's growth within the longest
 * backoff (it usually takes one or two checks). Before the backoff it
 * never did: the trims during the burst had raised the floor.
 *
 * The sanitizer build runs the same burst (ASan's allocator is not glibc's
 * heap: malloc_trim has nothing to give there) and checks everything but
 * the RSS bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "moor.h"
#include "mem.h"

#ifdef __SANITIZE_ADDRESS__
#define ASAN 1
#define REQUESTS 600
#define CONNS 300
#else
#define ASAN 0
#define REQUESTS 2000
#define CONNS 1000
#endif
#define TRIM_MS 100    /* the loop's trim interval here */
#define BURST_MS 60000 /* every deadline of the burst's requests */
/* How long RSS may take to come back after the close: the longest
 * backoff (mem.h), and a margin for a loaded machine. Usually it is back
 * at the first check or two. */
#define BACK_WITHIN_MS ((MEM_TRIM_BACKOFF_MAX + 16) * TRIM_MS)
#define MiB_S(n) ((int64_t)(n) << 20)

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RssAnon from /proc/self/status, in bytes, or -1. */
static int64_t rss_anon(void)
{
    char line[256];
    long long kb = -1;
    FILE *f = fopen("/proc/self/status", "re");

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "RssAnon: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* ---- the server: a child process ---------------------------------------- */

static void on_get(struct moor_request *req, void *arg)
{
    (void)arg;
    moor_respond(req, 200, "text/plain", NULL, "hello", 5);
}

/* Runs a TLS-only moor server until killed; writes its port to fd. */
static void serve_child(const char *cert, const char *key, int fd)
{
    struct moor_server_options so;
    struct moor_tls_options to;
    struct moor_error err = {0};
    struct moor_loop *l = moor_loop_new(NULL, &err);
    struct moor_server *s;
    struct moor_tls *t;
    int port = -1;

    moor_server_options_init(&so);
    so.listen = NULL;
    so.max_conns = 4 * CONNS;
    so.accept_rate = 0;
    moor_tls_options_init(&to);
    to.cert_file = cert;
    to.key_file = key;
    to.handshake_timeout_ms = BURST_MS;
    if (l && (s = moor_server_new(l, &so, &err)) &&
        (t = moor_tls_new(&to, &err)) &&
        moor_server_route(s, "GET", "/hello", on_get, NULL) == 0 &&
        moor_server_listen_tls(s, "127.0.0.1:0", t, &err) == 0)
        port = moor_server_tls_port(s, 0);
    if (write(fd, &port, sizeof(port)) != sizeof(port) || port < 0)
        _exit(1);
    close(fd);
    for (;;)
        moor_loop_run_once(l, 1000);
}

/* ---- the client: this process -------------------------------------------- */

struct burst {
    int done, failed, first_error;
};

static void on_done(struct moor_http_call *c, const struct moor_http_result *r,
                    void *user)
{
    struct burst *b = user;

    (void)c;
    b->done++;
    if (r->error || r->status != 200) {
        if (!b->failed++)
            b->first_error = r->error ? r->error : r->status;
    }
}

static const struct moor_http_callbacks cbs = {.on_done = on_done};

/* n GETs at once; runs the loop until every one is done, sampling RssAnon
 * into *peak. */
static void get_many(struct moor_loop *l, struct moor_http_client *cl,
                     const char *url, int n, int64_t *peak)
{
    struct moor_http_request rq;
    struct moor_error err = {0};
    struct burst b = {0};
    int64_t end = now_ms() + BURST_MS + 5000, next = 0;

    moor_http_request_init(&rq);
    rq.url = url;
    for (int i = 0; i < n; i++)
        if (!moor_http_client_request(cl, &rq, &cbs, &b, &err))
            fail_msg("request %d: %d %s", i, err.code, err.message);
    while (b.done < n) {
        if (now_ms() > end)
            fail_msg("burst: %d of %d done after %d ms", b.done, n,
                     BURST_MS + 5000);
        moor_loop_run_once(l, 5);
        if (peak && now_ms() >= next) {
            int64_t r = rss_anon();

            if (r > *peak)
                *peak = r;
            next = now_ms() + 10;
        }
    }
    if (b.failed)
        fail_msg("%d of %d requests failed, the first with %d (%s)", b.failed,
                 n, b.first_error, moor_strerror(b.first_error));
}

static void run_for(struct moor_loop *l, int ms)
{
    int64_t end = now_ms() + ms;

    while (now_ms() < end)
        moor_loop_run_once(l, 5);
}

static void test_tls_burst_gives_rss_back(void **state)
{
    char dir[] = "/tmp/moor-tls-burst.XXXXXX", cmd[768], cert[128], key[128],
         url[128];
    struct moor_loop_options lo;
    struct moor_http_client_options o;
    struct moor_http_client_stats st;
    struct moor_error err = {0};
    struct mem_trim_stats t0, t1;
    struct rlimit nofile;
    struct moor_loop *l;
    struct moor_http_client *cl;
    int64_t before, peak = 0, after = -1, growth, t_close, t_back = -1;
    int fds[2], port = -1, status;
    pid_t pid;

    (void)state;
    /* CONNS sockets here, as many in the server. */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &nofile), 0);
    if (nofile.rlim_cur < 2 * CONNS + 64 && nofile.rlim_max > nofile.rlim_cur) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
        getrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur < 2 * CONNS + 64) {
        printf("skipped: RLIMIT_NOFILE %llu is under %d\n",
               (unsigned long long)nofile.rlim_cur, 2 * CONNS + 64);
        skip();
    }
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -days 2 -subj /CN=moor-test -addext "
             "subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);

    /* The server, before this process touches OpenSSL. */
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Gone with this process, whatever way the test ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(1);
        close(fds[0]);
        serve_child(cert, key, fds[1]);
        _exit(1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &port, sizeof(port)), sizeof(port));
    close(fds[0]);
    assert_true(port > 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", port);

    moor_loop_options_init(&lo);
    lo.mem_trim_interval_ms = TRIM_MS;
    l = moor_loop_new(&lo, &err);
    assert_non_null(l);
    moor_http_client_options_init(&o);
    o.insecure = 1;
    o.max_conns_per_host = CONNS;
    o.max_idle_per_host = CONNS;
    o.max_idle_total = CONNS;
    o.max_waiting_per_host = REQUESTS;
    /* A loaded machine may take its time over 1,000 handshakes. */
    o.wait_timeout_ms = BURST_MS;
    o.connect_timeout_ms = BURST_MS;
    o.tls_timeout_ms = BURST_MS;
    o.head_timeout_ms = BURST_MS;
    cl = moor_http_client_new(l, &o, &err);
    if (!cl)
        fail_msg("moor_http_client_new: %d %s", err.code, err.message);

    /* Warm up (OpenSSL's tables, the client's first host), then let a
     * few checks see the settled heap. */
    get_many(l, cl, url, 8, NULL);
    moor_http_client_close_idle(cl);
    run_for(l, 5 * TRIM_MS);
    before = rss_anon();
    assert_true(before > 0);
    mem_trim_stats(&t0);

    /* The burst: REQUESTS GETs at once on up to CONNS connections. */
    get_many(l, cl, url, REQUESTS, &peak);
    assert_int_equal(moor_http_client_stats(cl, NULL, &st), 0);
    assert_true(st.idle > CONNS / 2);
    /* The pool held idle a moment: what the checks see now is OpenSSL's
     * live memory, which no trim can give back. */
    run_for(l, 5 * TRIM_MS);
    if (rss_anon() > peak)
        peak = rss_anon();

    /* Then closed: OpenSSL frees it, glibc keeps it until a trim. */
    moor_http_client_close_idle(cl);
    t_close = now_ms();
    growth = peak - before;
    if (ASAN) {
        /* Nothing to wait for: ASan's heap is not glibc's (above). */
        run_for(l, 5 * TRIM_MS);
        after = rss_anon();
    }
    while (!ASAN && now_ms() - t_close < BACK_WITHIN_MS) {
        run_for(l, TRIM_MS / 2);
        after = rss_anon();
        if (after - before <= growth / 4) {
            t_back = now_ms() - t_close;
            break;
        }
    }
    mem_trim_stats(&t1);
    printf("TLS burst, %d GETs on %d connections: RssAnon %.1f MiB before, "
           "%.1f peak, %.1f after %lld ms; %llu trims gave back %.1f MiB "
           "in %.2f ms\n",
           REQUESTS, CONNS, before / 1048576.0, peak / 1048576.0,
           after / 1048576.0, (long long)(now_ms() - t_close),
           (unsigned long long)(t1.trims - t0.trims),
           (t1.given_back - t0.given_back) / 1048576.0, (t1.ns - t0.ns) / 1e6);
#ifndef __SANITIZE_ADDRESS__
    /* The burst grew RSS by tens of MiB (else this measures nothing)... */
    if (growth < MiB_S(16))
        fail_msg("the burst grew RssAnon by %.1f MiB only", growth / 1048576.0);
    /* ...and at least three quarters of it came back after the close,
     * within the longest backoff. */
    if (t_back < 0)
        fail_msg("RssAnon still %.1f MiB over its %.1f MiB before the burst "
                 "(peak %.1f MiB) %d ms after the pool closed",
                 (after - before) / 1048576.0, before / 1048576.0,
                 peak / 1048576.0, BACK_WITHIN_MS);
#else
    (void)t_back;
#endif
    assert_true(t1.trims > t0.trims);

    moor_http_client_free(cl);
    moor_loop_free(l);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(moor_mem_live_bytes(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_burst_gives_rss_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
