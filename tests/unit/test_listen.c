/*
 * test_listen.c - unit tests for listen.c on real loopback TCP
 * (127.0.0.1, port 0): accepting and handing over the fd, refusing over
 * max-conns and over the memory budget with a complete 503, the accept
 * rate pause, recovery from EMFILE with the reserve fd, bind errors,
 * stopping, and the per-address limits (open conns and rate per address,
 * a raw listener's silent refusal, the table shared by the set's
 * listeners and told of closes through conn_close).
 *
 * Accepted fds become conns (a tiny protocol that ignores input), so the
 * conn set's open gauge is what max-conns counts. The loop is driven with
 * loop_run_once() in loops bounded by wall time; clients use blocking
 * connect() (loopback completes it in the kernel's backlog) and reads with
 * a poll() timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "conn.h"
#include "listen.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define RUN_UNTIL(l, cond, max_ms)                                             \
    do {                                                                       \
        uint64_t dl_ = now_ms() + (max_ms);                                    \
        while (!(cond) && now_ms() < dl_)                                      \
            assert_int_equal(loop_run_once((l), 5), 0);                        \
    } while (0)

static void run_for(struct loop *l, uint64_t ms)
{
    uint64_t dl = now_ms() + ms;

    while (now_ms() < dl)
        assert_int_equal(loop_run_once(l, 5), 0);
}

/* A connected (blocking) client socket, or -1 with errno. */
static int client_socket(void)
{
    return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

static int client_connect(int fd, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(fd, (struct sockaddr *)&a, sizeof(a));
}

static int client(uint16_t port)
{
    int fd = client_socket();

    assert_true(fd >= 0);
    assert_int_equal(client_connect(fd, port), 0);
    return fd;
}

/* Reads until EOF (or error) while running the loop, at most max_ms.
 * Returns bytes read; *eof tells whether EOF (or a reset) was seen. */
static size_t read_to_eof(struct loop *l, int fd, char *out, size_t cap,
                          bool *eof, uint64_t max_ms)
{
    uint64_t dl = now_ms() + max_ms;
    size_t len = 0;

    *eof = false;
    while (now_ms() < dl) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (l)
            assert_int_equal(loop_run_once(l, 2), 0);
        if (poll(&p, 1, l ? 0 : 10) <= 0)
            continue;
        n = read(fd, out + len, cap - len - 1);
        if (n <= 0) {
            *eof = true;
            break;
        }
        len += (size_t)n;
        if (len + 1 >= cap)
            break;
    }
    out[len] = '\0';
    return len;
}

/* True if nothing arrives on fd within ms (no data, no EOF). */
static bool quiet_for(struct loop *l, int fd, uint64_t ms)
{
    uint64_t dl = now_ms() + ms;

    while (now_ms() < dl) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        assert_int_equal(loop_run_once(l, 5), 0);
        if (poll(&p, 1, 0) > 0)
            return false;
    }
    return true;
}

/* ---- the accepting side ------------------------------------------------- */

static size_t sink_on_data(struct conn *c, uint8_t *p, size_t len)
{
    (void)c;
    (void)p;
    return len;
}

static const struct conn_proto sink_proto = {
    .name = "sink",
    .on_data = sink_on_data,
};

struct env {
    struct loop *l;
    struct conn_set set;
    struct listener *ls;
    int accepted;
    struct sockaddr_storage last_peer;
    bool raw;    /* keep raw fds instead of making conns */
    int fds[16]; /* raw fds */
    int n_fds;
};

static void on_accept(struct listener *ls, int fd, const struct sockaddr *peer,
                      void *arg)
{
    struct env *e = arg;
    int fl;

    assert_ptr_equal(ls, e->ls);
    assert_true(fd >= 0);
    /* Handed over non-blocking. */
    fl = fcntl(fd, F_GETFL);
    assert_true(fl & O_NONBLOCK);
    assert_int_equal(peer->sa_family, AF_INET);
    memcpy(&e->last_peer, peer, sizeof(struct sockaddr_in));
    e->accepted++;
    if (e->raw) {
        assert_true(e->n_fds < (int)ARRAY_SIZE(e->fds));
        e->fds[e->n_fds++] = fd;
        return;
    }
    assert_non_null(
        conn_new(&e->set, fd, peer, &sink_proto, 0, 10000, CLOSE_IDLE_TIMEOUT));
}

/* The env a test holds open; a failed assertion leaves it behind. */
static struct env *live_env;
static struct rlimit saved_nofile; /* restored if a test failed */

static void env_open(struct env *e, const struct listen_opts *o)
{
    struct conn_limits lim = {.write_timeout_ms = 1000,
                              .queue_limit = 1u << 20};
    int err = 0;

    memset(e, 0, sizeof(*e));
    e->l = loop_new(16384);
    assert_non_null(e->l);
    assert_int_equal(conn_set_init(&e->set, e->l, &lim), 0);
    live_env = e;
    e->ls = listener_new(e->l, &e->set, "127.0.0.1", 0, o, on_accept, e, &err);
    assert_non_null(e->ls);
    assert_int_equal(err, 0);
    assert_true(listener_port(e->ls) > 0);
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

static void env_close(struct env *e)
{
    live_env = NULL;
    for (int i = 0; i < e->n_fds; i++)
        close(e->fds[i]);
    conn_set_each(&e->set, close_one, NULL);
    assert_int_equal(loop_run_once(e->l, 0), 0);
    listener_free(e->ls);
    conn_set_fini(&e->set);
    loop_free(e->l);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Runs before every test: undoes what a failed test left behind (open
 * env, budget, fd limit), so one failure is reported once. */
static int leftover_setup(void **state)
{
    struct env *e = live_env;

    (void)state;
    mem_fail_at(0);
    mem_set_budget(0, 90);
    setrlimit(RLIMIT_NOFILE, &saved_nofile);
    if (!e)
        return 0;
    live_env = NULL;
    for (int i = 0; i < e->n_fds; i++)
        close(e->fds[i]);
    conn_set_each(&e->set, close_one, NULL);
    loop_run_once(e->l, 0);
    listener_free(e->ls);
    conn_set_fini(&e->set);
    loop_free(e->l);
    return 0;
}

static const struct listen_opts opts_plain = {.max_conns = 100};

/* ---- tests -------------------------------------------------------------- */

static void test_accept_hands_over_fd(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sockaddr_in self;
    socklen_t sl = sizeof(self);
    int c1, c2;
    char buf[8];

    env_open(&e, &opts_plain);
    e.raw = true;
    c1 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    assert_int_equal(e.accepted, 1);
    /* The peer address is the client's own. */
    assert_int_equal(getsockname(c1, (struct sockaddr *)&self, &sl), 0);
    assert_int_equal(((struct sockaddr_in *)&e.last_peer)->sin_port,
                     self.sin_port);
    /* The fd is a working socket to that client. */
    assert_int_equal(write(e.fds[0], "hi", 2), 2);
    assert_int_equal(read(c1, buf, sizeof(buf)), 2);
    assert_memory_equal(buf, "hi", 2);

    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 2, 2000);
    assert_int_equal(e.accepted, 2);
    for (int r = 0; r < REFUSE_REASON_COUNT; r++)
        assert_int_equal(listener_stats(e.ls)->refused[r], 0);
    close(c1);
    close(c2);
    env_close(&e);
}

static void test_names(void **state)
{
    assert_string_equal(refuse_reason_name(REFUSE_MAX_CONNS), "max_conns");
    assert_string_equal(refuse_reason_name(REFUSE_MEMORY), "memory");
    assert_string_equal(refuse_reason_name(REFUSE_FD_LIMIT), "fd_limit");
    assert_string_equal(refuse_reason_name(REFUSE_PER_IP_CONNS),
                        "per_ip_conns");
    assert_string_equal(refuse_reason_name(REFUSE_PER_IP_RATE), "per_ip_rate");
    assert_string_equal(refuse_reason_name(REFUSE_IP_TABLE_FULL),
                        "ip_table_full");
    assert_string_equal(refuse_reason_name(REFUSE_REASON_COUNT), "unknown");
    assert_string_equal(accept_pause_name(ACCEPT_PAUSE_RATE), "rate");
    assert_string_equal(accept_pause_name(ACCEPT_PAUSE_FD_LIMIT), "fd_limit");
    assert_string_equal(accept_pause_name(ACCEPT_PAUSE_COUNT), "unknown");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Rule 6 of docs/principles.md: over max-conns a client is told 503 and
 * closed, never accepted and starved; once a slot frees, the next one is
 * accepted. */
static void test_max_conns_refuses_with_503(void **state)
{
    struct listen_opts o = {.max_conns = 1};
    static struct env e; /* static: outlives a failed test */
    char buf[1024];
    bool eof;
    int c1, c2, c3;
    size_t n;

    env_open(&e, &o);
    c1 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.set.stats.open == 1, 2000);
    assert_int_equal(e.set.stats.open, 1);

    c2 = client(listener_port(e.ls));
    assert_int_equal(write(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 27);
    n = read_to_eof(e.l, c2, buf, sizeof(buf), &eof, 3000);
    assert_true(eof);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 503 Service Unavailable\r\n"));
    assert_non_null(strstr(buf, "Connection: close\r\n"));
    assert_non_null(strstr(buf, "Retry-After: 1\r\n"));
    /* Complete: the whole body announced by Content-Length arrived. */
    assert_non_null(strstr(buf, "\r\n\r\nserver at capacity\r\n"));
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MAX_CONNS], 1);
    assert_int_equal(e.accepted, 1);
    assert_int_equal(e.set.stats.open, 1);
    close(c2);

    /* The first conn goes; the next client is accepted. */
    close(c1);
    RUN_UNTIL(e.l, e.set.stats.open == 0, 2000);
    assert_int_equal(e.set.stats.open, 0);
    assert_int_equal(e.set.stats.closed[CLOSE_PEER], 1);
    c3 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 2, 2000);
    assert_int_equal(e.accepted, 2);
    assert_int_equal(e.set.stats.open, 1);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MAX_CONNS], 1);
    /* It stays open (it is not being refused). */
    assert_true(quiet_for(e.l, c3, 50));
    close(c3);
    env_close(&e);
}

/* A client that sends nothing still gets the whole 503. */
static void test_refusal_without_request(void **state)
{
    struct listen_opts o = {.max_conns = 0};
    static struct env e; /* static: outlives a failed test */
    char buf[1024];
    bool eof;
    int c;

    env_open(&e, &o);
    c = client(listener_port(e.ls));
    read_to_eof(e.l, c, buf, sizeof(buf), &eof, 3000);
    assert_true(eof);
    assert_true(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
    assert_non_null(strstr(buf, "server at capacity\r\n"));
    assert_int_equal(e.accepted, 0);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MAX_CONNS], 1);
    close(c);
    env_close(&e);
}

/* Over the memory budget: refused (reason memory), and accepted again
 * once the budget is lifted. */
static void test_memory_budget_refuses(void **state)
{
    static struct env e; /* static: outlives a failed test */
    char buf[1024];
    bool eof;
    int c1, c2;

    env_open(&e, &opts_plain);
    mem_set_budget(1, 90); /* the loop alone is over one byte */
    assert_true(mem_over_budget());
    c1 = client(listener_port(e.ls));
    read_to_eof(e.l, c1, buf, sizeof(buf), &eof, 3000);
    mem_set_budget(0, 90);
    assert_true(eof);
    assert_non_null(strstr(buf, "HTTP/1.1 503 "));
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MEMORY], 1);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MAX_CONNS], 0);
    assert_int_equal(e.accepted, 0);
    close(c1);

    assert_false(mem_over_budget());
    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    assert_int_equal(e.accepted, 1);
    close(c2);
    env_close(&e);
}

/* accept_rate=1, burst=1: the second connection waits in the backlog
 * (the listener stops watching) and is accepted about a second later. */
static void test_accept_rate_pauses(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .accept_rate = 1, .accept_burst = 1};
    static struct env e; /* static: outlives a failed test */
    uint64_t t0, dt;
    int c1, c2;

    env_open(&e, &o);
    c1 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    assert_int_equal(e.accepted, 1);
    t0 = now_ms();
    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, listener_stats(e.ls)->paused[ACCEPT_PAUSE_RATE] >= 1, 1000);
    assert_int_equal(listener_stats(e.ls)->paused[ACCEPT_PAUSE_RATE], 1);
    run_for(e.l, 100);
    assert_int_equal(e.accepted, 1); /* still waiting */
    RUN_UNTIL(e.l, e.accepted == 2, 3000);
    dt = now_ms() - t0;
    assert_int_equal(e.accepted, 2);
    assert_true(dt >= 500);
    assert_true(dt < 2500);
    /* Nobody was refused: pacing is not refusal. */
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MAX_CONNS], 0);
    /* The pause was a single one, not a busy retry. */
    assert_true(listener_stats(e.ls)->paused[ACCEPT_PAUSE_RATE] <= 2);
    close(c1);
    close(c2);
    env_close(&e);
}

/* A token is spent per accepted connection, not per accept attempt: with
 * burst 2, two clients that arrive one after the other are both let in at
 * once (the accept that finds the backlog empty after the first one costs
 * nothing, and pauses nothing). */
static void test_accept_rate_counts_connections_only(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .accept_rate = 1, .accept_burst = 2};
    static struct env e; /* static: outlives a failed test */
    int c1, c2;

    env_open(&e, &o);
    c1 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    assert_int_equal(e.accepted, 1);
    run_for(e.l, 20);
    assert_int_equal(listener_stats(e.ls)->paused[ACCEPT_PAUSE_RATE], 0);
    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 2, 300);
    assert_int_equal(e.accepted, 2); /* at once, not a second later */
    close(c1);
    close(c2);
    env_close(&e);
}

/* Out of fds: the reserve fd is given up to accept and close the waiting
 * client (refused{fd_limit}), accepting pauses, and serving resumes by
 * itself once fds are free again. */
static void test_emfile_recovery(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct rlimit old, low;
    int dummies[64], nd = 0, c1, c2, fd;
    char buf[64];
    bool eof;

    env_open(&e, &opts_plain);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    c1 = client_socket();
    c2 = client_socket();
    assert_true(c1 >= 0 && c2 >= 0);
    /* Lower the limit just above what is open, then use up the rest. */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    close(fd);
    low = old;
    low.rlim_cur = (rlim_t)fd + 8;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (nd < (int)ARRAY_SIZE(dummies)) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        dummies[nd++] = fd;
    }
    assert_int_equal(errno, EMFILE);

    assert_int_equal(client_connect(c1, listener_port(e.ls)), 0);
    RUN_UNTIL(e.l, listener_stats(e.ls)->refused[REFUSE_FD_LIMIT] >= 1, 2000);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_FD_LIMIT], 1);
    assert_true(listener_stats(e.ls)->paused[ACCEPT_PAUSE_FD_LIMIT] >= 1);
    assert_int_equal(e.accepted, 0);
    /* The client is closed, not left hanging in the backlog. */
    read_to_eof(e.l, c1, buf, sizeof(buf), &eof, 2000);
    assert_true(eof);
    /* No busy loop while still out of fds: one pause per ~100 ms. */
    run_for(e.l, 150);
    assert_true(listener_stats(e.ls)->paused[ACCEPT_PAUSE_FD_LIMIT] <= 3);

    /* The reserve was reopened: a second client while still out of fds
     * is shed the same way, not left in the backlog. */
    assert_int_equal(client_connect(c2, listener_port(e.ls)), 0);
    RUN_UNTIL(e.l, listener_stats(e.ls)->refused[REFUSE_FD_LIMIT] >= 2, 2000);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_FD_LIMIT], 2);
    read_to_eof(e.l, c2, buf, sizeof(buf), &eof, 2000);
    assert_true(eof);
    close(c2);
    c2 = client_socket();
    assert_true(c2 >= 0 || errno == EMFILE);

    /* Fds come back: accepting resumes by itself. */
    for (int i = 0; i < nd; i++)
        close(dummies[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    if (c2 < 0)
        c2 = client_socket();
    assert_true(c2 >= 0);
    assert_int_equal(client_connect(c2, listener_port(e.ls)), 0);
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    assert_int_equal(e.accepted, 1);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_FD_LIMIT], 2);
    close(c1);
    close(c2);
    env_close(&e);
}

static void test_bind_errors(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct listener *ls;
    int err = 0;

    env_open(&e, &opts_plain);
    /* A bad host, and a foreign address. */
    ls = listener_new(e.l, &e.set, "not an address!", 0, &opts_plain, on_accept,
                      &e, &err);
    assert_null(ls);
    assert_int_equal(err, -EINVAL);
    ls = listener_new(e.l, &e.set, "192.0.2.1", 0, &opts_plain, on_accept, &e,
                      &err);
    assert_null(ls);
    assert_int_equal(err, -EADDRNOTAVAIL);
    /* A port held by a plain socket (no SO_REUSEPORT) is in use. */
    {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t sl = sizeof(a);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(s, 4), 0);
        assert_int_equal(getsockname(s, (struct sockaddr *)&a, &sl), 0);
        ls = listener_new(e.l, &e.set, "127.0.0.1", ntohs(a.sin_port),
                          &opts_plain, on_accept, &e, &err);
        assert_null(ls);
        assert_int_equal(err, -EADDRINUSE);
        close(s);
    }
    /* A port another listener holds is in use too, unless both ask for
     * SO_REUSEPORT (the kernel then spreads connections over them). */
    {
        struct listen_opts shared = opts_plain;
        struct listener *a, *b;

        a = listener_new(e.l, &e.set, "127.0.0.1", 0, &opts_plain, on_accept,
                         &e, &err);
        assert_non_null(a);
        ls = listener_new(e.l, &e.set, "127.0.0.1", listener_port(a),
                          &opts_plain, on_accept, &e, &err);
        assert_null(ls);
        assert_int_equal(err, -EADDRINUSE);
        listener_free(a);
        shared.reuse_port = true;
        a = listener_new(e.l, &e.set, "127.0.0.1", 0, &shared, on_accept, &e,
                         &err);
        assert_non_null(a);
        b = listener_new(e.l, &e.set, "127.0.0.1", listener_port(a), &shared,
                         on_accept, &e, &err);
        assert_non_null(b);
        listener_free(b);
        listener_free(a);
    }
    env_close(&e);
}

static void test_alloc_failure(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct listener *ls;
    int err = 0;

    env_open(&e, &opts_plain);
    mem_fail_at(1);
    ls = listener_new(e.l, &e.set, "127.0.0.1", 0, &opts_plain, on_accept, &e,
                      &err);
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    assert_null(ls);
    assert_int_equal(err, -ENOMEM);
    env_close(&e);
}

/* A client from 127.0.0.2 (loopback answers every 127/8 source). */
static int client_from(uint16_t port, const char *src)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = client_socket();

    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(client_connect(fd, port), 0);
    return fd;
}

/* Per address: the third connection from 127.0.0.1 gets the 503 (reason
 * per_ip_conns), 127.0.0.2 is not affected, and a close (through
 * conn_close and the set's hook) makes room again. */
static void test_per_ip_conns(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .max_conns_per_ip = 2, .ip_table_size = 8};
    static struct env e; /* static: outlives a failed test */
    struct sockaddr_in a = {.sin_family = AF_INET};
    char buf[1024];
    bool eof;
    int c[4];

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    env_open(&e, &o);
    c[0] = client(listener_port(e.ls));
    c[1] = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 2, 2000);
    assert_int_equal(
        iplimit_conns_of(listener_iplimit(e.ls), (struct sockaddr *)&a), 2);
    c[2] = client(listener_port(e.ls));
    read_to_eof(e.l, c[2], buf, sizeof(buf), &eof, 3000);
    assert_true(eof);
    assert_true(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_PER_IP_CONNS], 1);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MAX_CONNS], 0);
    close(c[2]);

    c[3] = client_from(listener_port(e.ls), "127.0.0.2");
    RUN_UNTIL(e.l, e.accepted == 3, 2000);
    assert_int_equal(e.accepted, 3);
    assert_int_equal(iplimit_entries(listener_iplimit(e.ls)), 2);

    close(c[0]);
    RUN_UNTIL(e.l, e.set.stats.open == 2, 2000);
    assert_int_equal(
        iplimit_conns_of(listener_iplimit(e.ls), (struct sockaddr *)&a), 1);
    c[0] = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 4, 2000);
    assert_int_equal(e.accepted, 4);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_PER_IP_CONNS], 1);
    for (int i = 0; i < 4; i++)
        if (i != 2)
            close(c[i]);
    RUN_UNTIL(e.l, e.set.stats.open == 0, 2000);
    /* No rate limit: an address with nothing open is forgotten. */
    assert_int_equal(iplimit_entries(listener_iplimit(e.ls)), 0);
    env_close(&e);
}

/* A raw listener (length-prefixed frames) refuses by closing: no 503.
 * The rate per address refuses the second connection of a burst of 1. */
static void test_per_ip_rate_raw(void **state)
{
    struct listen_opts o = {.max_conns = 100,
                            .rate_per_ip = 1,
                            .burst_per_ip = 1,
                            .ip_table_size = 8,
                            .raw = true};
    static struct env e; /* static: outlives a failed test */
    char buf[64];
    bool eof;
    int c1, c2;

    env_open(&e, &o);
    c1 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    c2 = client(listener_port(e.ls));
    assert_int_equal(read_to_eof(e.l, c2, buf, sizeof(buf), &eof, 3000), 0);
    assert_true(eof);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_PER_IP_RATE], 1);
    assert_int_equal(e.accepted, 1);
    close(c1);
    close(c2);
    env_close(&e);
}

/* An fd the callback does not make a conn of the set is not counted (no
 * close would ever be reported for it). */
static void test_per_ip_counts_conns_only(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .max_conns_per_ip = 1, .ip_table_size = 8};
    static struct env e; /* static: outlives a failed test */
    int c1, c2;

    env_open(&e, &o);
    e.raw = true;
    c1 = client(listener_port(e.ls));
    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 2, 2000);
    assert_int_equal(e.accepted, 2);
    assert_int_equal(iplimit_entries(listener_iplimit(e.ls)), 0);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_PER_IP_CONNS], 0);
    close(c1);
    close(c2);
    env_close(&e);
}

/* Two listeners on one set share one table (an address is counted over
 * both); it lives until the last of them is freed. */
static void test_per_ip_shared(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .max_conns_per_ip = 1, .ip_table_size = 8};
    static struct env e; /* static: outlives a failed test */
    struct listener *ls2;
    char buf[256];
    bool eof;
    int err = 0, c1, c2;

    env_open(&e, &o);
    ls2 = listener_new(e.l, &e.set, "127.0.0.1", 0, &o, on_accept, &e, &err);
    assert_non_null(ls2);
    assert_ptr_equal(listener_iplimit(ls2), listener_iplimit(e.ls));
    c1 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    c2 = client(listener_port(ls2));
    read_to_eof(e.l, c2, buf, sizeof(buf), &eof, 3000);
    assert_true(eof);
    assert_int_equal(listener_stats(ls2)->refused[REFUSE_PER_IP_CONNS], 1);
    close(c2);
    listener_free(ls2);
    /* The first listener's table still sees the close. */
    close(c1);
    RUN_UNTIL(e.l, e.set.stats.open == 0, 2000);
    assert_int_equal(iplimit_entries(listener_iplimit(e.ls)), 0);
    env_close(&e);
}

/* The table cannot grow for a new address: the peer is refused like one
 * over the memory budget, and the next one gets in. */
static void test_per_ip_out_of_memory_refuses(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .max_conns_per_ip = 5, .ip_table_size = 8};
    static struct env e; /* static: outlives a failed test */
    char buf[1024];
    bool eof;
    int c1, c2;

    env_open(&e, &o);
    mem_fail_at(1); /* the table's first page of fd slots */
    c1 = client(listener_port(e.ls));
    read_to_eof(e.l, c1, buf, sizeof(buf), &eof, 3000);
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    assert_true(eof);
    assert_true(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
    assert_int_equal(listener_stats(e.ls)->refused[REFUSE_MEMORY], 1);
    assert_int_equal(e.accepted, 0);
    assert_int_equal(iplimit_entries(listener_iplimit(e.ls)), 0);
    close(c1);
    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    assert_int_equal(e.accepted, 1);
    assert_int_equal(iplimit_entries(listener_iplimit(e.ls)), 1);
    close(c2);
    env_close(&e);
}

/* Making the table fails: no listener, nothing left behind. */
static void test_per_ip_alloc_failure(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .max_conns_per_ip = 1, .ip_table_size = 8};
    static struct env e; /* static: outlives a failed test */
    bool fired = true;

    env_open(&e, &opts_plain);
    for (uint64_t n = 1; fired; n++) {
        struct listener *ls;
        int err = 0;

        mem_fail_at(n);
        ls = listener_new(e.l, &e.set, "127.0.0.1", 0, &o, on_accept, &e, &err);
        fired = mem_fail_fired();
        mem_fail_at(0);
        if (fired) {
            assert_null(ls);
            assert_int_equal(err, -ENOMEM);
            assert_null(e.set.on_fd_close);
        } else {
            assert_non_null(ls);
        }
        listener_free(ls);
        assert_null(e.set.on_fd_close);
    }
    env_close(&e);
}

/* listener_stop closes the socket (new clients are refused by the
 * kernel), is idempotent, and leaves open conns alone. */
static void test_stop(void **state)
{
    static struct env e; /* static: outlives a failed test */
    uint16_t port;
    int c1, c2;

    env_open(&e, &opts_plain);
    port = listener_port(e.ls);
    c1 = client(port);
    RUN_UNTIL(e.l, e.accepted == 1, 2000);
    listener_stop(e.ls);
    listener_stop(e.ls);
    assert_int_equal(listener_port(e.ls), port);
    c2 = client_socket();
    assert_int_equal(client_connect(c2, port), -1);
    assert_int_equal(errno, ECONNREFUSED);
    run_for(e.l, 20);
    assert_int_equal(e.set.stats.open, 1);
    assert_int_equal(e.accepted, 1);
    close(c1);
    close(c2);
    env_close(&e);
}

/* Stopping while paused (rate) cancels the resume timer: nothing fires
 * on a stopped listener. */
static void test_stop_while_paused(void **state)
{
    struct listen_opts o = {
        .max_conns = 100, .accept_rate = 1, .accept_burst = 1};
    static struct env e; /* static: outlives a failed test */
    int c1, c2;

    env_open(&e, &o);
    c1 = client(listener_port(e.ls));
    c2 = client(listener_port(e.ls));
    RUN_UNTIL(e.l, listener_stats(e.ls)->paused[ACCEPT_PAUSE_RATE] >= 1, 2000);
    assert_int_equal(e.accepted, 1);
    listener_stop(e.ls);
    run_for(e.l, 30);
    assert_int_equal(e.accepted, 1);
    close(c1);
    close(c2);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_accept_hands_over_fd, leftover_setup),
        cmocka_unit_test_setup(test_names, leftover_setup),
        cmocka_unit_test_setup(test_max_conns_refuses_with_503, leftover_setup),
        cmocka_unit_test_setup(test_refusal_without_request, leftover_setup),
        cmocka_unit_test_setup(test_memory_budget_refuses, leftover_setup),
        cmocka_unit_test_setup(test_accept_rate_pauses, leftover_setup),
        cmocka_unit_test_setup(test_accept_rate_counts_connections_only,
                               leftover_setup),
        cmocka_unit_test_setup(test_emfile_recovery, leftover_setup),
        cmocka_unit_test_setup(test_bind_errors, leftover_setup),
        cmocka_unit_test_setup(test_alloc_failure, leftover_setup),
        cmocka_unit_test_setup(test_per_ip_conns, leftover_setup),
        cmocka_unit_test_setup(test_per_ip_rate_raw, leftover_setup),
        cmocka_unit_test_setup(test_per_ip_counts_conns_only, leftover_setup),
        cmocka_unit_test_setup(test_per_ip_shared, leftover_setup),
        cmocka_unit_test_setup(test_per_ip_out_of_memory_refuses,
                               leftover_setup),
        cmocka_unit_test_setup(test_per_ip_alloc_failure, leftover_setup),
        cmocka_unit_test_setup(test_stop, leftover_setup),
        cmocka_unit_test_setup(test_stop_while_paused, leftover_setup),
    };

    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_OFF);
    getrlimit(RLIMIT_NOFILE, &saved_nofile);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
