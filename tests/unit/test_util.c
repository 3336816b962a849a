/*
 * test_util.c - unit tests for util.h's ASCII helpers (byte classes, hex
 * digits, case folding, case-insensitive compare), checked against every
 * byte value, and the KiB()/MiB()/GiB() size macros.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util.h"

/* Every byte, against the classes spelled out longhand. */
static void test_ascii_classes(void **state)
{
    for (int i = 0; i < 256; i++) {
        unsigned char c = (unsigned char)i;
        bool digit = i >= '0' && i <= '9';
        bool alpha = (i >= 'a' && i <= 'z') || (i >= 'A' && i <= 'Z');

        assert_int_equal(ascii_is_digit(c), digit);
        assert_int_equal(ascii_is_alpha(c), alpha);
        assert_int_equal(ascii_is_alnum(c), digit || alpha);
        assert_int_equal(ascii_is_ows(c), i == ' ' || i == '\t');
    }
    /* A plain (signed) char above 0x7f is no letter or digit. */
    assert_false(ascii_is_alnum((unsigned char)(char)0xc3));
}

static void test_ascii_hex_value(void **state)
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 0; i < 16; i++) {
        assert_int_equal(ascii_hex_value((unsigned char)digits[i]), i);
        if (i >= 10)
            assert_int_equal(ascii_hex_value((unsigned char)(digits[i] - 32)),
                             i);
    }
    for (int i = 0; i < 256; i++) {
        if (!strchr("0123456789abcdefABCDEF", i) || i == 0)
            assert_int_equal(ascii_hex_value((unsigned char)i), -1);
    }
}

static void test_ascii_lower(void **state)
{
    for (int i = 0; i < 256; i++) {
        int want = i >= 'A' && i <= 'Z' ? i + 32 : i;

        assert_int_equal(ascii_lower((unsigned char)i), want);
    }
}

static void test_ascii_ci_equal(void **state)
{
    assert_true(ascii_ci_equal("Content-Length", 14, "content-length", 14));
    assert_true(ascii_ci_equal("", 0, "", 0));
    assert_true(ascii_ci_equal("a\0B", 3, "A\0b", 3)); /* NUL is a byte */
    assert_false(ascii_ci_equal("upgrade", 7, "upgrades", 8));
    assert_false(ascii_ci_equal("upgrade", 7, "upgradE", 6));
    assert_false(ascii_ci_equal("a", 1, "b", 1));
    /* Only ASCII letters fold: '@' (0x40) is not '`' (0x60), and bytes
     * above 0x7f are compared as they are. */
    assert_false(ascii_ci_equal("@", 1, "`", 1));
    assert_false(ascii_ci_equal("\xc3", 1, "\xe3", 1));
    assert_true(ascii_ci_equal("\xc3X", 2, "\xc3x", 2));
}

static void test_sizes(void **state)
{
    assert_int_equal(KiB(1), 1024);
    assert_int_equal(KiB(64), 65536);
    assert_int_equal(MiB(1), 1048576);
    assert_int_equal(MiB(16), 16u << 20);
    /* 64-bit: no overflow past 4 GiB. */
    assert_true(MiB(4096) == (uint64_t)1 << 32);
    assert_true(GiB(4) == MiB(4096));
    assert_int_equal(sizeof(KiB(1)), sizeof(uint64_t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_classes),
        cmocka_unit_test(test_ascii_hex_value),
        cmocka_unit_test(test_ascii_lower),
        cmocka_unit_test(test_ascii_ci_equal),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
