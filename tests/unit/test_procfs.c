/*
 * test_procfs.c - unit tests for procfs.c against this very process: its
 * memory grows when it touches pages, its CPU time grows when it spins, a
 * process that is gone is reported as such, and the listener lookup finds
 * us by address (exact and wildcard), finds nobody for a socket that only
 * bound, and names both processes when two hold the socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "mem.h"
#include "procfs.h"

static void test_mem_grows(void **state)
{
    struct procfs_mem a, b;
    size_t len = 16u << 20;
    char *p;

    (void)state;
    assert_int_equal(procfs_mem(getpid(), &a), 0);
    assert_true(a.vm_rss > 0);
    assert_true(a.rss_anon >= 0);
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
    assert_true(p != MAP_FAILED);
    memset(p, 1, len);
    assert_int_equal(procfs_mem(getpid(), &b), 0);
    /* 16 MiB touched: RSS grew by (nearly) that much. */
    assert_true(b.vm_rss - a.vm_rss >= (int64_t)(len * 3 / 4));
    if (a.pss >= 0) {
        assert_true(b.pss - a.pss >= (int64_t)(len * 3 / 4));
        assert_true(b.priv - a.priv >= (int64_t)(len * 3 / 4));
    }
    munmap(p, len);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static pid_t gone_pid(void)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

static void test_gone(void **state)
{
    struct procfs_mem m;
    uint64_t ns;
    pid_t pid = gone_pid();

    (void)state;
    assert_int_equal(procfs_mem(pid, &m), -ENOENT);
    assert_true(m.vm_rss == -1);
    assert_int_equal(procfs_cpu_ns(pid, &ns), -ENOENT);
}

static void test_cpu(void **state)
{
    uint64_t before, after;
    struct timespec t0, t;
    volatile uint64_t spin = 0;

    (void)state;
    assert_int_equal(procfs_cpu_ns(getpid(), &before), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 100000; i++)
            spin += (uint64_t)i;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) <
             300000000L);
    assert_int_equal(procfs_cpu_ns(getpid(), &after), 0);
    /* 300 ms of spinning shows as at least 100 ms (ticks are 10 ms; the
     * machine may be shared). */
    assert_true(after - before >= 100000000u);
}

/* A TCP socket on addr:0; listening if listen_too. Fills *out with the
 * address it got. Returns the fd. */
static int tcp_socket(const char *addr, bool listen_too,
                      struct sockaddr_in *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(*out);

    assert_true(fd >= 0);
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &out->sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)out, sizeof(*out)), 0);
    if (listen_too)
        assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)out, &len), 0);
    return fd;
}

static void test_listener(void **state)
{
    struct sockaddr_in a, other;
    pid_t pids[4];
    size_t found;
    int fd = tcp_socket("127.0.0.1", true, &a);

    (void)state;
    assert_int_equal(
        procfs_listener_pid((struct sockaddr *)&a, pids, 4, &found), getpid());
    assert_int_equal(found, 1);
    assert_int_equal(pids[0], getpid());

    /* Another address on the same port: nobody listens there. */
    other = a;
    inet_pton(AF_INET, "127.0.0.9", &other.sin_addr);
    assert_int_equal(
        procfs_listener_pid((struct sockaddr *)&other, pids, 4, &found),
        -ENOENT);
    close(fd);
    /* Closed: gone from /proc/net/tcp. */
    assert_int_equal(
        procfs_listener_pid((struct sockaddr *)&a, pids, 4, &found), -ENOENT);

    /* Bound but not listening: not a listener. */
    fd = tcp_socket("127.0.0.1", false, &a);
    assert_int_equal(
        procfs_listener_pid((struct sockaddr *)&a, pids, 4, &found), -ENOENT);
    close(fd);

    /* The wildcard address takes connections to 127.0.0.9 too. */
    fd = tcp_socket("0.0.0.0", true, &a);
    other = a;
    inet_pton(AF_INET, "127.0.0.9", &other.sin_addr);
    assert_int_equal(
        procfs_listener_pid((struct sockaddr *)&other, pids, 4, &found),
        getpid());
    close(fd);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_listener_shared(void **state)
{
    struct sockaddr_in a;
    pid_t pids[4], child;
    size_t found = 0;
    int fd = tcp_socket("127.0.0.1", true, &a), sync[2];
    char c;

    (void)state;
    assert_int_equal(pipe(sync), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* Holds the inherited listener until killed. */
        close(sync[0]);
        if (write(sync[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(sync[1]);
    assert_int_equal(read(sync[0], &c, 1), 1);
    assert_int_equal(
        procfs_listener_pid((struct sockaddr *)&a, pids, 4, &found), -EEXIST);
    assert_int_equal(found, 2);
    assert_true((pids[0] == getpid() && pids[1] == child) ||
                (pids[1] == getpid() && pids[0] == child));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(sync[0]);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_grows),
        cmocka_unit_test(test_gone),
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_listener),
        cmocka_unit_test(test_listener_shared),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
