/*
 * test_addr.c - unit tests for addr.c, the one host:port parser: every
 * accepted spelling and what it yields (":port" is every IPv4 interface,
 * "[v6]" loses its brackets, port 0 is allowed), the refused ones (a bare
 * IPv6 address, junk around the port, a port over 65535, a host that does
 * not fit), and the explanation a refused address gets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "addr.h"
#include "mem.h"

static void test_good(void **state)
{
    static const struct {
        const char *s, *host;
        uint16_t port;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"localhost:0", "localhost", 0},
        {"example.com:443", "example.com", 443},
        {":9000", "0.0.0.0", 9000},
        {":0", "0.0.0.0", 0},
        {"[::1]:443", "::1", 443},
        {"[::]:80", "::", 80},
        {"[fe80::1%eth0]:8080", "fe80::1%eth0", 8080},
        {"h:00080", "h", 80},
    };
    char host[64];
    uint16_t port;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        port = 1;
        assert_int_equal(addr_parse(good[i].s, host, sizeof(host), &port), 0);
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
    }
}

static void test_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "127.0.0.1",
        "::1:80",
        "::1",
        "[::1]80",
        "[::1]",
        "[]:80",
        "[::1:80",
        "host:",
        "host:80x",
        "host:-1",
        "host:+1",
        "host: 80",
        "a b:80",
        "a\tb:80",
        "[[::1]]:80",
        "x]:80",
        ":",
        ":65536",
        "h:99999",
        "h:99999999999999999999999",
        "h:99999999999999999999999x",
    };
    char host[64];
    uint16_t port;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(addr_parse(bad[i], host, sizeof(host), &port),
                         -EINVAL);
}

/* The host must fit with its NUL: 3 bytes hold "ab", not "abc"; ":1"
 * becomes "0.0.0.0", which needs 8. */
static void test_host_fits(void **state)
{
    char host[8];
    uint16_t port;

    (void)state;
    assert_int_equal(addr_parse("ab:1", host, 3, &port), 0);
    assert_string_equal(host, "ab");
    assert_int_equal(port, 1);
    assert_int_equal(addr_parse("abc:1", host, 3, &port), -EINVAL);
    assert_int_equal(addr_parse(":1", host, 7, &port), -EINVAL);
    assert_int_equal(addr_parse(":1", host, 8, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(addr_parse("[::1]:1", host, 3, &port), -EINVAL);
    assert_int_equal(addr_parse("[::1]:1", host, 4, &port), 0);
    assert_string_equal(host, "::1");
}

static void test_explain(void **state)
{
    char why[160];

    (void)state;
    addr_explain("::1:80", why, sizeof(why));
    assert_string_equal(why,
                        "an IPv6 address goes in brackets: write [::1]:80");
    addr_explain("fe80::1%eth0:8080", why, sizeof(why));
    assert_string_equal(
        why, "an IPv6 address goes in brackets: write [fe80::1%eth0]:8080");
    /* No port: the last colon is the address's own. */
    addr_explain("::1", why, sizeof(why));
    assert_string_equal(why, "an IPv6 address goes in brackets, then its "
                             "port: [::1]:80");
    addr_explain("fe80::", why, sizeof(why));
    assert_string_equal(why, "an IPv6 address goes in brackets, then its "
                             "port: [::1]:80");
    /* Anything else: the shapes accepted. */
    static const char *const other[] = {"nohostport", "[::1]80", "h:x",
                                        ":99999",     "",        "a b::80"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        addr_explain(other[i], why, sizeof(why));
        assert_string_equal(why, "expected host:port, [v6]:port or :port, "
                                 "with a port from 0 to 65535");
    }
    /* A small buffer is cut, never overrun. */
    addr_explain("::1:80", why, 8);
    assert_string_equal(why, "an IPv6");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_host_fits),
        cmocka_unit_test(test_explain),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
