/*
 * test_http_client_tls_fail.c - the pooled HTTP/1.1 client over TLS with
 * every allocation failing in turn, OpenSSL's own included: tls_mem_init()
 * runs before anything else, so every byte OpenSSL allocates goes through
 * mem.c, and mem_fail_at(n) reaches it as it reaches moor's.
 *
 * Three GETs per round: the first dials (a full handshake; the server's
 * tickets are stored as sessions), the second reuses the pooled
 * connection, the third runs on a new connection (the idle one is closed
 * first) that resumes the session. Round n makes the n-th allocation from
 * the first request on fail, for n = 1, 2, ... until a round in which no
 * failure fired: ~3,000 rounds, every one of them in both builds.
 *
 * The server is http_client_fixture.h's, run in a child process forked
 * before OpenSSL allocated anything: its allocations land in the child's
 * counters, not among the client's (and are never made to fail), and it
 * is made once for the whole walk. What a round costs is then the client:
 * its context (~2,100 allocations, made before the failure is armed),
 * the handshakes, and no wait but the loop's own (~5 ms a round in the
 * release build, ~10 ms in the debug one).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/prctl.h>
#include <sys/wait.h>

#include "http_client_fixture.h"
#include "log.h"
#include "tls.h"

static char dir[] = "/tmp/moor-hc-tlsfail.XXXXXX";
static char cert[128], key[128];
static pid_t server_pid;
static int server_port;
static int server_life = -1; /* the child leaves when this pipe closes */

/* Answers /resumed with "yes" if the connection's handshake resumed a
 * session, "no" if not; everything else as h_serve does. */
static void h_tls(struct sc *c)
{
    struct sreq q;

    while (sc_read_request(c, &q) >= 0) {
        if (strcmp(q.target, "/resumed")) {
            if (!answer(c, &q))
                return;
        } else if (SSL_session_reused(c->ssl)) {
            sc_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes");
        } else {
            sc_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno");
        }
    }
    sc_wait_close(c);
}

/* The child: the fixture's server with an EC certificate and OpenSSL's
 * default session settings (TLS 1.3, two tickets per handshake), until
 * the parent closes its end of the life pipe (or dies). */
static void server_main(int port_fd, int life_fd)
{
    static struct srv s;
    char c;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    s.ctx = SSL_CTX_new(TLS_server_method());
    if (!s.ctx ||
        SSL_CTX_use_certificate_file(s.ctx, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(s.ctx, key, SSL_FILETYPE_PEM) != 1)
        _exit(1);
    srv_start(&s, h_tls);
    if (write(port_fd, &s.port, sizeof(s.port)) != sizeof(s.port))
        _exit(1);
    for (;;) {
        ssize_t r = read(life_fd, &c, 1);

        if (r == 0 || (r < 0 && errno != EINTR))
            break;
    }
    _exit(0);
}

static int group_setup(void **state)
{
    char cmd[768];
    int port_pipe[2], life_pipe[2];

    (void)state;
    /* First OpenSSL use in the process: everything below is accounted. */
    if (tls_mem_init() != 0)
        return -1;
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -days 2 -subj /CN=moor-test "
             "-addext subjectAltName=IP:127.0.0.1 "
             "-keyout %s -out %s >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        return -1;
    if (pipe2(port_pipe, O_CLOEXEC) < 0 || pipe2(life_pipe, O_CLOEXEC) < 0)
        return -1;
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        close(port_pipe[0]);
        close(life_pipe[1]);
        server_main(port_pipe[1], life_pipe[0]);
    }
    close(port_pipe[1]);
    close(life_pipe[0]);
    server_life = life_pipe[1];
    if (read(port_pipe[0], &server_port, sizeof(server_port)) !=
        sizeof(server_port))
        return -1;
    close(port_pipe[0]);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    int st;

    (void)state;
    if (server_life >= 0)
        close(server_life);
    if (server_pid > 0)
        waitpid(server_pid, &st, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* OpenSSL's state of the main thread (its error queue, whose text
 * buffers an error leaves allocated, and its random generators) freed,
 * so that the live bytes say what the client and OpenSSL's process-wide
 * state hold. Every round starts from here, so each makes the same
 * allocations in the same order up to its failure. */
static int64_t settled(enum mem_tag tag)
{
    ERR_clear_error();
    OPENSSL_thread_stop();
    return mem_live_bytes(tag);
}

/* The live bytes of every tag but tls. */
static int64_t moor_own(void)
{
    return mem_live_bytes(MEM_ALL) - mem_live_bytes(MEM_TLS);
}

#define TLS_DRIFT 512

static int64_t tls_start = -1; /* -1: still warming up */

static void tls_check(uint64_t n, const char *after)
{
    int64_t d;

    if (tls_start < 0)
        return;
    d = settled(MEM_TLS) - tls_start;
    if (d > TLS_DRIFT || d < -TLS_DRIFT)
        fail_msg("n=%llu: OpenSSL's bytes %+lld against the start after %s",
                 (unsigned long long)n, (long long)d, after);
}

static const char *const paths[3] = {"/cl", "/cl", "/resumed"};

/* An allocation that fails comes back as -ENOMEM, or as a TLS error:
 * "out of memory" for the most part, else OpenSSL's word for it ("malloc
 * failure", "internal error", ...) when the failure was outside the
 * handshake call. Never as a verification failure, which would blame the
 * server's certificate; a timeout, a peer that closed or a bad response
 * would mean the failure was lost. */
static bool failure_error(int e)
{
    return e == -ENOMEM || e == MOOR_ETLS;
}

/* One round: a new loop and client, the three GETs with the n-th
 * allocation from the first request on failing (n = 0: none), then the
 * client and the loop freed. Returns whether the failure fired.
 *
 * Once a request saw the failure, one more runs, and must succeed: the
 * failure left nothing broken in the client. The rest are skipped, as
 * they would only repeat a handshake the walk made to fail in turn
 * already (and the debug build pays ~10 ms for each).
 *
 * The bytes of moor's own tags are back exactly after
 * moor_http_client_free() and after moor_loop_free(). OpenSSL's are
 * measured against tls_start, the level after the warm-up rounds (below),
 * within TLS_DRIFT: what may move there is OpenSSL's process-wide
 * property cache (crypto/property), which evicts entries at random as it
 * grows: one comes back under a query of another length (+16 B, at a
 * different n, in some runs of the walk). Anything moor leaked, an
 * SSL object, a session, a certificate, is past the bound at once, and a
 * small leak that repeats adds up past it within a few dozen rounds;
 * test_cleanup_to_zero then sees whatever is left after OpenSSL's own
 * state is freed, however small. */
static bool round_n(uint64_t n, const struct moor_http_client_options *o)
{
    struct moor_loop *l;
    struct moor_http_client *cl;
    struct res r[3] = {{0}};
    int64_t before_own, base_own;
    int fail_in = -1; /* the request during which the failure fired */
    bool fired;

    before_own = moor_own();
    l = new_loop();
    base_own = moor_own();
    cl = new_client(l, o);
    mem_fail_at(n);
    for (int i = 0; i < 3; i++) {
        struct moor_http_request rq;
        struct moor_error err = {0};
        char url[128];

        if (fail_in < 0 && mem_fail_fired())
            fail_in = i - 1;
        if (fail_in >= 0 && i > fail_in + 1)
            break;
        if (i == 2) /* a new connection, which resumes the session */
            moor_http_client_close_idle(cl);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", server_port,
                 paths[i]);
        moor_http_request_init(&rq);
        rq.url = url;
        r[i].call = moor_http_client_request(cl, &rq, &cbs, &r[i], &err);
        assert_int_equal(r[i].done, 0);
        if (!r[i].call) {
            if (err.code != -ENOMEM || fail_in >= 0)
                fail_msg("n=%llu: request %d refused: %d %s",
                         (unsigned long long)n, i, err.code, err.message);
            continue;
        }
        if (!run_until(l, res_done, &r[i], 5000))
            fail_msg("n=%llu: request %d never ended", (unsigned long long)n,
                     i);
        if (!r[i].error) {
            assert_int_equal(r[i].status, 200);
            continue;
        }
        if (fail_in >= 0 || !mem_fail_fired() || !failure_error(r[i].error) ||
            !r[i].msg[0])
            fail_msg("n=%llu: request %d: %s (%s)", (unsigned long long)n, i,
                     moor_strerror(r[i].error), r[i].msg);
    }
    fired = mem_fail_fired();
    mem_fail_at(0);
    /* Whatever is still due runs now: nothing may reach a call that
     * ended. */
    for (int k = 0; k < 4; k++)
        moor_loop_run_once(l, 0);
    for (int i = 0; i < 3; i++) {
        assert_true(r[i].done <= 1);
        assert_int_equal(r[i].after_done, 0);
        if (!fired) {
            expect_ok(&r[i]);
            assert_int_equal(r[i].reused, i == 1);
            assert_string_equal(r[i].body, i == 2 ? "yes" : "hello world");
        }
        res_reset(&r[i]);
    }
    moor_http_client_free(cl);
    if (moor_own() != base_own)
        fail_msg("n=%llu: %lld bytes left after moor_http_client_free()",
                 (unsigned long long)n, (long long)(moor_own() - base_own));
    tls_check(n, "moor_http_client_free()");
    moor_loop_free(l);
    if (moor_own() != before_own)
        fail_msg("n=%llu: %lld bytes left after moor_loop_free()",
                 (unsigned long long)n, (long long)(moor_own() - before_own));
    tls_check(n, "moor_loop_free()");
    return fired;
}

static void test_alloc_failures(void **state)
{
    struct moor_http_client_options o;
    uint64_t n;
    bool fired = true;
    int64_t t0 = now_ms();

    (void)state;
    opts_init(&o);
    o.tls_ca = cert;
    /* The baseline: OpenSSL makes its process-wide state (providers,
     * algorithm and decoder caches, error strings) on first use and keeps
     * it until tls_mem_fini(), so two rounds without a failure come first
     * (the second one is checked against the first). */
    assert_false(round_n(0, &o));
    tls_start = settled(MEM_TLS);
    assert_false(round_n(0, &o));
    for (n = 1; fired && n < 20000; n++)
        fired = round_n(n, &o);
    assert_false(fired);
    /* The first handshake alone makes ~2,300 allocations. */
    if (n < 2000)
        fail_msg("only %llu allocations in three GETs over TLS",
                 (unsigned long long)(n - 2));
    print_message("every one of %llu allocations of three GETs over TLS "
                  "(a full handshake, a reused connection, a resumed "
                  "session) failed in turn: %lld ms\n",
                  (unsigned long long)(n - 2), (long long)(now_ms() - t0));
}

/* Last: OpenSSL's process-wide state freed, moor holds no byte. */
static void test_cleanup_to_zero(void **state)
{
    (void)state;
    tls_mem_fini();
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cleanup_to_zero),
    };

    log_set_level(LOG_OFF);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
