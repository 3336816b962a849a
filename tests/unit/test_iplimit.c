/*
 * test_iplimit.c - unit tests for iplimit.c, the per-address table:
 * counting open connections, IPv6 /64 grouping, IPv4-mapped IPv6 as
 * IPv4, the token bucket per address, forgetting idle addresses, eviction
 * and refusal when the table is full, fds reused or never counted, many
 * addresses (the hash heads grow), memory under MEM_AUTH back to zero,
 * and every allocation failing in turn.
 *
 * No sockets: fds are plain numbers here (the table only indexes by them)
 * and time is the tick passed in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "iplimit.h"
#include "mem.h"

/* ---- helpers ------------------------------------------------------------ */

struct addr {
    struct sockaddr_storage ss;
};

static const struct sockaddr *v4(struct addr *a, const char *ip)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;

    memset(a, 0, sizeof(*a));
    in->sin_family = AF_INET;
    in->sin_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return (const struct sockaddr *)in;
}

static const struct sockaddr *v6(struct addr *a, const char *ip)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;

    memset(a, 0, sizeof(*a));
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(40001);
    assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    return (const struct sockaddr *)in6;
}

static struct iplimit *table(uint32_t max_conns, uint32_t rate, uint32_t burst,
                             uint32_t size)
{
    struct iplimit_opts o = {.max_conns = max_conns,
                             .rate = rate,
                             .burst = burst,
                             .table_size = size};
    struct iplimit *t = iplimit_new(&o, 1000);

    assert_non_null(t);
    return t;
}

static void done(struct iplimit *t)
{
    iplimit_free(t);
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- tests -------------------------------------------------------------- */

static void test_counts_open_conns(void **state)
{
    struct iplimit *t = table(3, 0, 0, 16);
    struct addr a, b;

    (void)state;
    for (int fd = 10; fd < 13; fd++)
        assert_int_equal(iplimit_admit(t, fd, v4(&a, "10.0.0.1"), 1000),
                         IPLIMIT_OK);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 3);
    assert_int_equal(iplimit_admit(t, 13, v4(&a, "10.0.0.1"), 1000),
                     IPLIMIT_CONNS);
    assert_false(iplimit_counted(t, 13));
    /* Another address has its own count. */
    assert_int_equal(iplimit_admit(t, 14, v4(&b, "10.0.0.2"), 1000),
                     IPLIMIT_OK);
    assert_int_equal(iplimit_entries(t), 2);

    /* A close makes room again. */
    iplimit_release(t, 11, 1000);
    assert_false(iplimit_counted(t, 11));
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 2);
    assert_int_equal(iplimit_admit(t, 13, v4(&a, "10.0.0.1"), 1000),
                     IPLIMIT_OK);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 3);

    /* Releasing twice, or an fd never counted, changes nothing. */
    iplimit_release(t, 13, 1000);
    iplimit_release(t, 13, 1000);
    iplimit_release(t, 99999, 1000);
    iplimit_release(t, -1, 1000);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 2);

    /* With no rate limit an address is forgotten at its last close. */
    iplimit_release(t, 10, 1000);
    iplimit_release(t, 12, 1000);
    iplimit_release(t, 14, 1000);
    assert_int_equal(iplimit_entries(t), 0);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 0);
    done(t);
}

static void test_ipv6_by_64(void **state)
{
    struct iplimit *t = table(2, 0, 0, 16);
    struct addr a;

    (void)state;
    assert_int_equal(iplimit_admit(t, 3, v6(&a, "2001:db8:1:2::1"), 1000),
                     IPLIMIT_OK);
    assert_int_equal(
        iplimit_admit(t, 4, v6(&a, "2001:db8:1:2:ffff:ffff:ffff:5"), 1000),
        IPLIMIT_OK);
    /* Same /64, whatever the interface id: the third is over. */
    assert_int_equal(iplimit_admit(t, 5, v6(&a, "2001:db8:1:2:abcd::9"), 1000),
                     IPLIMIT_CONNS);
    assert_int_equal(iplimit_conns_of(t, v6(&a, "2001:db8:1:2::77")), 2);
    /* The next /64 is another address. */
    assert_int_equal(iplimit_admit(t, 5, v6(&a, "2001:db8:1:3::1"), 1000),
                     IPLIMIT_OK);
    /* ::1 and the /64 ::/64 are one; not to be mistaken for IPv4. */
    assert_int_equal(iplimit_admit(t, 6, v6(&a, "::1"), 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "0.0.0.1")), 0);
    assert_int_equal(iplimit_entries(t), 3);
    done(t);
}

static void test_ipv4_mapped_is_ipv4(void **state)
{
    struct iplimit *t = table(2, 0, 0, 16);
    struct addr a;

    (void)state;
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "192.0.2.7"), 1000),
                     IPLIMIT_OK);
    assert_int_equal(iplimit_admit(t, 4, v6(&a, "::ffff:192.0.2.7"), 1000),
                     IPLIMIT_OK);
    assert_int_equal(iplimit_admit(t, 5, v4(&a, "192.0.2.7"), 1000),
                     IPLIMIT_CONNS);
    assert_int_equal(iplimit_conns_of(t, v6(&a, "::ffff:192.0.2.7")), 2);
    /* Mapped addresses are not grouped by /64: each IPv4 is itself. */
    assert_int_equal(iplimit_admit(t, 5, v6(&a, "::ffff:192.0.2.8"), 1000),
                     IPLIMIT_OK);
    assert_int_equal(iplimit_entries(t), 2);
    done(t);
}

static void test_rate_per_address(void **state)
{
    struct iplimit *t = table(0, 10, 3, 16);
    struct addr a, b;
    int fd = 3;

    (void)state;
    /* The burst at once, then refused; closing does not give it back. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iplimit_admit(t, fd, v4(&a, "10.0.0.1"), 1000),
                         IPLIMIT_OK);
        iplimit_release(t, fd, 1000);
    }
    assert_int_equal(iplimit_admit(t, fd, v4(&a, "10.0.0.1"), 1000),
                     IPLIMIT_RATE);
    assert_false(iplimit_counted(t, fd));
    /* Another address has a bucket of its own. */
    assert_int_equal(iplimit_admit(t, 4, v4(&b, "10.0.0.2"), 1000), IPLIMIT_OK);
    /* 10/s: one more after 100 ms, not before. */
    assert_int_equal(iplimit_admit(t, fd, v4(&a, "10.0.0.1"), 1099),
                     IPLIMIT_RATE);
    assert_int_equal(iplimit_admit(t, fd, v4(&a, "10.0.0.1"), 1100),
                     IPLIMIT_OK);
    assert_int_equal(iplimit_admit(t, 5, v4(&a, "10.0.0.1"), 1100),
                     IPLIMIT_RATE);
    /* A second later the burst is back. */
    iplimit_release(t, fd, 1100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(iplimit_admit(t, 10 + i, v4(&a, "10.0.0.1"), 2100),
                         IPLIMIT_OK);
    done(t);
}

/* An address is kept while its bucket refills, then forgotten by the
 * sweep that admits and closes run. */
static void test_idle_address_forgotten(void **state)
{
    struct iplimit *t = table(0, 10, 2, 16);
    struct addr a, b;

    (void)state;
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "10.0.0.1"), 1000), IPLIMIT_OK);
    iplimit_release(t, 3, 1000);
    /* One token short: kept, or a reconnect loop would reset its rate. */
    assert_int_equal(iplimit_entries(t), 1);
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "10.0.0.1"), 1050), IPLIMIT_OK);
    iplimit_release(t, 3, 1050);
    assert_int_equal(iplimit_entries(t), 1);
    /* 200 ms later the bucket is full: another address's admit sweeps. */
    assert_int_equal(iplimit_admit(t, 4, v4(&b, "10.0.0.2"), 1250), IPLIMIT_OK);
    assert_int_equal(iplimit_entries(t), 1);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 0);
    /* Its last close, with its bucket full by then, forgets it at once. */
    iplimit_release(t, 4, 1500);
    assert_int_equal(iplimit_entries(t), 0);
    done(t);
}

static void test_table_full(void **state)
{
    struct iplimit *t = table(0, 10, 5, 2);
    struct addr a;

    (void)state;
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "10.0.0.1"), 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_admit(t, 4, v4(&a, "10.0.0.2"), 1000), IPLIMIT_OK);
    /* Both have open connections: no room for a third address. */
    assert_int_equal(iplimit_admit(t, 5, v4(&a, "10.0.0.3"), 1000),
                     IPLIMIT_TABLE_FULL);
    assert_false(iplimit_counted(t, 5));
    assert_int_equal(iplimit_entries(t), 2);
    /* Known addresses still get in. */
    assert_int_equal(iplimit_admit(t, 5, v4(&a, "10.0.0.2"), 1000), IPLIMIT_OK);
    iplimit_release(t, 5, 1000);

    /* 10.0.0.1 goes idle (bucket not full): it is evicted for the new
     * address, and 10.0.0.2 (open) is kept. */
    iplimit_release(t, 3, 1000);
    assert_int_equal(iplimit_entries(t), 2);
    assert_int_equal(iplimit_admit(t, 6, v4(&a, "10.0.0.3"), 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_entries(t), 2);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 0);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.2")), 1);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.3")), 1);
    assert_int_equal(iplimit_admit(t, 7, v4(&a, "10.0.0.1"), 1000),
                     IPLIMIT_TABLE_FULL);
    done(t);
}

/* The idle address evicted first is the one seen longest ago. */
static void test_evicts_least_recent(void **state)
{
    struct iplimit *t = table(0, 1, 1, 3);
    struct addr a;

    (void)state;
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "10.0.0.1"), 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_admit(t, 4, v4(&a, "10.0.0.2"), 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_admit(t, 5, v4(&a, "10.0.0.3"), 1000), IPLIMIT_OK);
    iplimit_release(t, 3, 1000);
    iplimit_release(t, 4, 1000);
    /* 10.0.0.1 tries again (refused by its rate): seen after .2. */
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "10.0.0.1"), 1001),
                     IPLIMIT_RATE);
    assert_int_equal(iplimit_admit(t, 4, v4(&a, "10.0.0.4"), 1002), IPLIMIT_OK);
    /* .2 went; .1 is still refused by its (remembered) bucket. */
    assert_int_equal(iplimit_admit(t, 6, v4(&a, "10.0.0.1"), 1003),
                     IPLIMIT_RATE);
    assert_int_equal(iplimit_entries(t), 3);
    done(t);
}

static void test_fd_reuse_and_other_families(void **state)
{
    struct iplimit *t = table(5, 0, 0, 16);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct addr a, b;

    (void)state;
    assert_int_equal(iplimit_admit(t, 3, v4(&a, "10.0.0.1"), 1000), IPLIMIT_OK);
    /* fd 3 again without its close reported: counted once, under the
     * new address. */
    assert_int_equal(iplimit_admit(t, 3, v4(&b, "10.0.0.2"), 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_conns_of(t, v4(&a, "10.0.0.1")), 0);
    assert_int_equal(iplimit_conns_of(t, v4(&b, "10.0.0.2")), 1);
    /* A Unix socket peer has no address to count. */
    assert_int_equal(iplimit_admit(t, 4, (struct sockaddr *)&un, 1000),
                     IPLIMIT_OK);
    assert_false(iplimit_counted(t, 4));
    assert_int_equal(iplimit_entries(t), 1);
    done(t);
}

/* Thousands of addresses: the heads grow, every count stays right, and
 * the memory comes back when they close. */
static void test_many_addresses(void **state)
{
    enum { N = 5000 };
    int64_t base = mem_live_bytes(MEM_AUTH);
    struct iplimit *t = table(2, 0, 0, N);
    int64_t empty = mem_live_bytes(MEM_AUTH) - base;
    char ip[32];
    struct addr a;

    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
        assert_int_equal(iplimit_admit(t, 2 * i, v4(&a, ip), 1000), IPLIMIT_OK);
        assert_int_equal(iplimit_admit(t, 2 * i + 1, v4(&a, ip), 1000),
                         IPLIMIT_OK);
    }
    assert_int_equal(iplimit_entries(t), N);
    assert_int_equal(iplimit_admit(t, 2 * N, v4(&a, "11.0.0.1"), 1000),
                     IPLIMIT_TABLE_FULL);
    for (int i = 0; i < N; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
        assert_int_equal(iplimit_conns_of(t, v4(&a, ip)), 2);
        assert_int_equal(iplimit_admit(t, 2 * N, v4(&a, ip), 1000),
                         IPLIMIT_CONNS);
    }
    /* Entries, heads and fd pages are several hundred KiB now. */
    assert_true(mem_live_bytes(MEM_AUTH) - base > 200 * 1024);
    for (int fd = 0; fd < 2 * N; fd++)
        iplimit_release(t, fd, 1000);
    assert_int_equal(iplimit_entries(t), 0);
    /* All of it came back but the page directory (64 pointers). */
    assert_true(mem_live_bytes(MEM_AUTH) - base <= empty + 1024);
    done(t);
}

/* Every allocation fails in turn: the verdict is IPLIMIT_NO_MEMORY and
 * nothing is counted, or the admit went through; the counts stay
 * consistent and everything comes back. */
static void test_alloc_failures(void **state)
{
    enum { N = 40 };
    bool fired = true;

    (void)state;
    for (uint64_t n = 1; fired; n++) {
        struct iplimit_opts o = {.max_conns = 3, .table_size = 64};
        struct iplimit *t;
        uint32_t ok = 0;
        char ip[32];
        struct addr a;

        mem_fail_at(n);
        t = iplimit_new(&o, 1000);
        if (t) {
            for (int i = 0; i < N; i++) {
                enum iplimit_verdict v;

                snprintf(ip, sizeof(ip), "10.0.0.%d", i);
                /* fds spread out so the fd array grows several times */
                v = iplimit_admit(t, 7 * i, v4(&a, ip), 1000);
                assert_true(v == IPLIMIT_OK || v == IPLIMIT_NO_MEMORY);
                assert_int_equal(iplimit_counted(t, 7 * i), v == IPLIMIT_OK);
                assert_int_equal(iplimit_conns_of(t, v4(&a, ip)),
                                 v == IPLIMIT_OK);
                ok += v == IPLIMIT_OK;
            }
            assert_int_equal(iplimit_entries(t), ok);
            for (int i = 0; i < N; i++)
                iplimit_release(t, 7 * i, 1000);
            assert_int_equal(iplimit_entries(t), 0);
        }
        fired = mem_fail_fired();
        mem_fail_at(0);
        iplimit_free(t);
        assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
        if (!fired)
            assert_int_equal(ok, N);
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_open_conns),
        cmocka_unit_test(test_ipv6_by_64),
        cmocka_unit_test(test_ipv4_mapped_is_ipv4),
        cmocka_unit_test(test_rate_per_address),
        cmocka_unit_test(test_idle_address_forgotten),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_evicts_least_recent),
        cmocka_unit_test(test_fd_reuse_and_other_families),
        cmocka_unit_test(test_many_addresses),
        cmocka_unit_test(test_alloc_failures),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
