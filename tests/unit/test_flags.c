/*
 * test_flags.c - unit tests for flags.c, the flag engine under `moor
 * serve` and `moor bench`, on a small table of its own: defaults (none,
 * text, parsed), both flag forms, booleans, the environment only when
 * the table has a prefix, modes (a flag that does not apply), the error
 * lines (a missing value, a word starting with '-', a long value quoted
 * short, an unexpected word, a bare IPv6 address), flags_find_word(), and
 * the --help layout. test_config.c covers serve's table through config.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "flags.h"
#include "mem.h"

#define MAX_ARGS 16

struct opts {
    uint32_t n;
    uint32_t later; /* def NULL: decided by the command */
    uint32_t wait_ms;
    uint64_t size;
    bool on;
    char word[8];
    char addr[32];
};

#define F(f) FLAG_FIELD(struct opts, f)
#define MODE_A 1u
#define MODE_B 2u

static const struct flag rows[] = {
    {.name = "n",
     .kind = FLAG_UINT,
     F(n),
     .def = "3",
     .min = 1,
     .max = 100,
     .modes = MODE_A | MODE_B,
     .help = "a number"},
    {.name = "later",
     .kind = FLAG_UINT,
     F(later),
     .def = NULL,
     .min = 1,
     .max = 10,
     .modes = MODE_A,
     .help = "decided later"},
    {.name = "wait",
     .kind = FLAG_DURATION,
     F(wait_ms),
     .def = "2s",
     .min = 0,
     .max = 60000,
     .modes = MODE_A | MODE_B,
     .help = "a duration"},
    {.name = "size",
     .kind = FLAG_SIZE,
     F(size),
     .def = "1KiB",
     .min = 16,
     .max = 1 << 20,
     .modes = MODE_B,
     .help = "a size"},
    {.name = "on",
     .kind = FLAG_BOOL,
     F(on),
     .def = "false",
     .modes = MODE_A | MODE_B,
     .help = "a switch"},
    {.name = "word",
     .kind = FLAG_TEXT,
     F(word),
     .def = "",
     .modes = MODE_A | MODE_B,
     .arg = "W",
     .help = "at most seven bytes of text, and a long help sentence that "
             "has to be wrapped over more than one line of --help"},
    {.name = "addr",
     .kind = FLAG_ADDR,
     F(addr),
     .def = "",
     .modes = MODE_A | MODE_B,
     .help = "an address"},
};

static const struct flag_table plain = {
    .flags = rows,
    .n = sizeof(rows) / sizeof(rows[0]),
    .cmd = "tool",
    .env_prefix = NULL,
};

static const struct flag_table with_env = {
    .flags = rows,
    .n = sizeof(rows) / sizeof(rows[0]),
    .cmd = "tool",
    .env_prefix = "T_",
};

static char outbuf[4096];

/* Zeroes o, sets the defaults of t, parses the NULL-terminated words
 * with envp and mode_bit ("m1" or "m2" by bit); returns flags_parse(). */
static int parse(const struct flag_table *t, struct opts *o, char **envp,
                 unsigned mode_bit, char *err, size_t errlen, ...)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    va_list ap;

    va_start(ap, errlen);
    for (char *w; (w = va_arg(ap, char *)) != NULL;) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = w;
    }
    va_end(ap);
    memset(o, 0, sizeof(*o));
    flags_defaults(t, o);
    return flags_parse(t, o, argc, argv, envp, mode_bit,
                       mode_bit == MODE_B ? "m2" : "m1", err, errlen);
}

#define PARSE(t, o, envp, mode, err, ...)                                      \
    parse(t, o, envp, mode, err, sizeof(err), __VA_ARGS__, NULL)

static void test_defaults(void **state)
{
    struct opts o;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, NULL), 0);
    assert_string_equal(err, "");
    assert_int_equal(o.n, 3);
    assert_int_equal(o.later, 0); /* no default: the command decides */
    assert_int_equal(o.wait_ms, 2000);
    assert_int_equal(o.size, 1024);
    assert_false(o.on);
    assert_string_equal(o.word, "");
    assert_string_equal(o.addr, "");
}

static void test_forms(void **state)
{
    struct opts o;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--n", "7", "--wait=5s",
                           "--size", "2KiB", "--on", "--word=abc", "--addr",
                           "[::1]:80"),
                     0);
    assert_int_equal(o.n, 7);
    assert_int_equal(o.wait_ms, 5000);
    assert_int_equal(o.size, 2048);
    assert_true(o.on);
    assert_string_equal(o.word, "abc");
    assert_string_equal(o.addr, "[::1]:80");
    /* A boolean takes "=value" only, in any case. */
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--on=TRUE"), 0);
    assert_true(o.on);
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--on=0"), 0);
    assert_false(o.on);
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--on", "1"), -1);
    assert_string_equal(err, "unexpected argument \"1\" (see tool --help)");
    /* An address without a default may be emptied: off. */
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--addr="), 0);
    assert_string_equal(o.addr, "");
}

static void test_env(void **state)
{
    char *envp[] = {"T_N=9", "T_WAIT=", "T_ON=1", NULL};
    char *bad[] = {"T_SIZE=1", NULL};
    struct opts o;
    char err[256];

    (void)state;
    /* No prefix: the environment is not read. */
    assert_int_equal(PARSE(&plain, &o, envp, 0, err, NULL), 0);
    assert_int_equal(o.n, 3);
    assert_false(o.on);
    /* With one: it is, empty counts as unset, and a flag beats it. */
    assert_int_equal(PARSE(&with_env, &o, envp, 0, err, NULL), 0);
    assert_int_equal(o.n, 9);
    assert_int_equal(o.wait_ms, 2000);
    assert_true(o.on);
    assert_int_equal(PARSE(&with_env, &o, envp, 0, err, "--n", "4"), 0);
    assert_int_equal(o.n, 4);
    assert_int_equal(PARSE(&with_env, &o, bad, 0, err, NULL), -1);
    assert_string_equal(err, "invalid value \"1\" for --size (from T_SIZE): "
                             "expected a size from 16B to 1MiB");
}

static void test_modes(void **state)
{
    struct opts o;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&plain, &o, NULL, MODE_A, err, "--later", "5"), 0);
    assert_int_equal(o.later, 5);
    /* Refused before its value is looked at. */
    assert_int_equal(PARSE(&plain, &o, NULL, MODE_B, err, "--later"), -1);
    assert_string_equal(err,
                        "--later does not apply to tool m2 (see tool --help)");
    assert_int_equal(PARSE(&plain, &o, NULL, MODE_A, err, "--size=1KiB"), -1);
    assert_string_equal(err,
                        "--size does not apply to tool m1 (see tool --help)");
    /* Mode 0: every flag applies. */
    assert_int_equal(
        PARSE(&plain, &o, NULL, 0, err, "--later", "5", "--size", "16"), 0);
}

static void test_errors(void **state)
{
    static const struct {
        const char *a, *b, *msg;
    } cases[] = {
        {"--n", NULL, "flag --n needs a value"},
        /* No value starts with '-'. */
        {"--n", "-5", "flag --n needs a value"},
        {"--n", "0",
         "invalid value \"0\" for --n: expected a whole number "
         "from 1 to 100"},
        {"--wait", "10",
         "invalid value \"10\" for --wait: expected a "
         "duration like 250ms, 10s, 2m (or 0)"},
        {"--wait", "2m",
         "invalid value \"2m\" for --wait: expected a "
         "duration from 0 to 1m"},
        {"--size", "8B",
         "invalid value \"8B\" for --size: expected a size "
         "from 16B to 1MiB"},
        {"--size", "lots",
         "invalid value \"lots\" for --size: expected a "
         "size like 512B, 64KiB, 1MiB"},
        {"--on=maybe", NULL,
         "invalid value \"maybe\" for --on: expected true "
         "or false (or 1, 0, yes, no, on, off)"},
        {"--word", "eightchr",
         "invalid value \"eightchr\" for --word: "
         "expected at most 7 bytes"},
        {"--addr", "::1:80",
         "invalid value \"::1:80\" for --addr: an IPv6 "
         "address goes in brackets: write [::1]:80"},
        {"--addr", "nope",
         "invalid value \"nope\" for --addr: expected "
         "host:port, [v6]:port or :port, with a port from "
         "0 to 65535"},
        {"--nope=1", NULL, "unknown flag \"--nope\" (see tool --help)"},
        {"-x", NULL, "unknown flag \"-x\" (see tool --help)"},
        {"stray=1", NULL, "unexpected argument \"stray=1\" (see tool --help)"},
    };
    struct opts o;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = cases[i].b
                     ? PARSE(&plain, &o, NULL, 0, err, cases[i].a, cases[i].b)
                     : PARSE(&plain, &o, NULL, 0, err, cases[i].a);

        assert_int_equal(rc, -1);
        assert_string_equal(err, cases[i].msg);
        /* A refused value leaves the field as it was. */
        assert_int_equal(o.n, 3);
        assert_string_equal(o.word, "");
    }
}

/* A value over 64 bytes is quoted by its first 60, so the message keeps
 * what is expected. */
static void test_long_value(void **state)
{
    char big[100], want[200];
    struct opts o;
    char err[160];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--word", big), -1);
    snprintf(want, sizeof(want),
             "invalid value \"%.60s...\" for --word: expected at most 7 "
             "bytes",
             big);
    assert_string_equal(err, want);
    /* 64 bytes are still quoted whole. */
    big[64] = '\0';
    assert_int_equal(PARSE(&plain, &o, NULL, 0, err, "--word", big), -1);
    assert_non_null(strstr(err, big));
}

static void test_find_word(void **state)
{
    static const char *const help[] = {"--help", "-h", NULL};
    char *a[] = {"m1", "--n", "5", "--help"};
    char *b[] = {"--word", "-h"};
    char *c[] = {"--word=--help", "--n", "--help"};
    char *d[] = {"--n", "5", "--on"};

    (void)state;
    assert_string_equal(flags_find_word(&plain, 4, a, help), "--help");
    /* A word starting with '-' is never a value. */
    assert_string_equal(flags_find_word(&plain, 2, b, help), "-h");
    assert_string_equal(flags_find_word(&plain, 3, c, help), "--help");
    assert_null(flags_find_word(&plain, 1, c, help));
    assert_null(flags_find_word(&plain, 3, d, help));
}

static void test_help_layout(void **state)
{
    FILE *out = fmemopen(outbuf, sizeof(outbuf), "w");
    int col = flags_help_column(&plain);

    (void)state;
    assert_non_null(out);
    /* The widest left side is "  --later N" / "  --addr ADDR" ... */
    assert_int_equal(col, (int)strlen("  --wait DURATION") + 2);
    flags_print_flag(out, col, &rows[5], rows[5].help);
    flags_print_flag(out, col, &rows[4], "a switch");
    flags_print_row(out, col, "  -h, --help", "print this help");
    fclose(out);
    assert_string_equal(
        outbuf, "  --word W         at most seven bytes of text, and a "
                "long help sentence that\n"
                "                   has to be wrapped over more than one "
                "line of --help\n"
                "  --on             a switch\n"
                "  -h, --help       print this help\n");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_env_name(void **state)
{
    char name[64];

    (void)state;
    flags_env_name("MOOR_", &rows[2], name, sizeof(name));
    assert_string_equal(name, "MOOR_WAIT");
    flags_env_name("T_", &rows[1], name, 5);
    assert_string_equal(name, "T_LA");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_forms),
        cmocka_unit_test(test_env),       cmocka_unit_test(test_modes),
        cmocka_unit_test(test_errors),    cmocka_unit_test(test_long_value),
        cmocka_unit_test(test_find_word), cmocka_unit_test(test_help_layout),
        cmocka_unit_test(test_env_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
