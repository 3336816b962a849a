/*
 * test_config.c - unit tests for config.c and the flag engine under it
 * (flags.c): defaults, the unit parsers (durations, sizes; addresses are
 * test_addr.c's), both flag forms, ranges, the environment
 * and its precedence, every error message, --help and --limits-md, and
 * the read-buffer / max-header-bytes cross check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "flags.h"
#include "mem.h"

#define MAX_ARGS 16

/* Help and Markdown are written into this through fmemopen(), so the
 * tests need no allocation of their own. */
static char outbuf[65536];

/*
 * Runs config_parse() on the NULL-terminated words after env (which may
 * be NULL) and returns its result; err receives the message. Output that
 * --help prints is dropped.
 */
static int parse(struct moor_config *c, char **env, char *err, size_t errlen,
                 ...)
{
    char *argv[MAX_ARGS];
    int argc = 0, rc;
    FILE *out = fmemopen(outbuf, sizeof(outbuf), "w");
    va_list ap;

    assert_non_null(out);
    va_start(ap, errlen);
    for (char *w; (w = va_arg(ap, char *)) != NULL;) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = w;
    }
    va_end(ap);
    rc = config_parse(c, argc, argv, env, out, err, errlen);
    fclose(out);
    return rc;
}

#define PARSE(c, env, err, ...)                                                \
    parse(c, env, err, sizeof(err), __VA_ARGS__, NULL)

/* Captures what fn prints. Returns the text (in outbuf). */
static const char *capture(void (*fn)(FILE *))
{
    FILE *out = fmemopen(outbuf, sizeof(outbuf), "w");

    assert_non_null(out);
    fn(out);
    assert_true(ftell(out) < (long)sizeof(outbuf) - 1);
    fclose(out);
    return outbuf;
}

static void test_defaults(void **state)
{
    struct moor_config c, d;
    char err[256];

    (void)state;
    config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.admin_listen, ""); /* off */
    assert_int_equal(c.max_conns, 10000);
    assert_int_equal(c.accept_rate, 2000);
    assert_int_equal(c.accept_burst, 500);
    assert_int_equal(c.max_conns_per_ip, 1000);
    assert_int_equal(c.rate_per_ip, 100);
    assert_int_equal(c.burst_per_ip, 200);
    assert_int_equal(c.ip_table_size, 65536);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.body_timeout_ms, 30000);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.write_timeout_ms, 30000);
    assert_int_equal(c.linger_timeout_ms, 2000);
    assert_int_equal(c.shutdown_timeout_ms, 10000);
    assert_int_equal(c.max_header_bytes, 8192);
    assert_int_equal(c.max_headers, 100);
    assert_int_equal(c.max_body, 1 << 20);
    assert_int_equal(c.queue_limit, 1 << 20);
    assert_int_equal(c.read_buffer, 64 << 10);
    assert_int_equal(c.memory_limit, 0);
    assert_string_equal(c.log_level, "info");
    assert_false(c.mem_trace);

    /* No flags and no environment: the same, and no message. */
    memset(&d, 0xa5, sizeof(d));
    assert_int_equal(parse(&d, NULL, err, sizeof(err), NULL), 0);
    assert_string_equal(err, "");
    assert_memory_equal(&c, &d, sizeof(c));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_duration_units(void **state)
{
    static const struct {
        const char *s;
        uint32_t ms;
    } good[] = {
        {"0", 0},
        {"0ms", 0},
        {"0s", 0},
        {"250ms", 250},
        {"1s", 1000},
        {"10s", 10000},
        {"2m", 120000},
        {"1h", 3600000},
        {"007s", 7000},
        {"576h", 2073600000u},
        {"2073600000ms", 2073600000u},
    };
    static const char *const bad[] = {
        "",    "10",    "10x", "1.5s",
        "-1s", "+1s",   " 1s", "1s ",
        "s",   "10 s",  "1S",  "1sm",
        "1d",  "1m30s", "ms",  "99999999999999999999999x",
    };
    static const char *const range[] = {
        "577h",
        "2073600001ms",
        "34561m",
        "99999999999999999999999s",
    };
    uint32_t ms;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ms = 12345;
        assert_int_equal(flags_parse_duration_ms(good[i].s, &ms), 0);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms = 12345;
        assert_int_equal(flags_parse_duration_ms(bad[i], &ms), -EINVAL);
        assert_int_equal(ms, 12345);
    }
    for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++)
        assert_int_equal(flags_parse_duration_ms(range[i], &ms), -ERANGE);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_size_units(void **state)
{
    static const struct {
        const char *s;
        uint64_t n;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"1KiB", 1024},
        {"64KiB", 65536},
        {"1MiB", 1048576},
        {"3GiB", 3ull << 30},
        {"1KB", 1000},
        {"1kB", 1000},
        {"2MB", 2000000},
        {"5GB", 5000000000ull},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183GiB", 17179869183ull << 30},
    };
    static const char *const bad[] = {
        "",   "1K",  "1kib", "1 KiB", "1.5MiB", "-1",
        "+1", "KiB", "1TiB", "1KiBB", "0x10",   " 1",
    };
    static const char *const range[] = {
        "18446744073709551616",
        "17179869184GiB",
        "18446744073709552KB",
        "99999999999999999999999MiB",
    };
    uint64_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        n = 12345;
        assert_int_equal(flags_parse_size(good[i].s, &n), 0);
        assert_int_equal(n, good[i].n);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 12345;
        assert_int_equal(flags_parse_size(bad[i], &n), -EINVAL);
        assert_int_equal(n, 12345);
    }
    for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++)
        assert_int_equal(flags_parse_size(range[i], &n), -ERANGE);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* The per-address flags: 0 turns a limit off, the environment works,
 * the table cannot be empty and the burst cannot be 0. */
static void test_per_ip_flags(void **state)
{
    char *env[] = {"MOOR_HANDSHAKE_RATE_PER_IP=0", "MOOR_IP_TABLE_SIZE=16",
                   NULL};
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, env, err, "--max-conns-per-ip", "0",
                           "--handshake-burst-per-ip=7"),
                     0);
    assert_int_equal(c.max_conns_per_ip, 0);
    assert_int_equal(c.rate_per_ip, 0);
    assert_int_equal(c.burst_per_ip, 7);
    assert_int_equal(c.ip_table_size, 16);
    assert_true(PARSE(&c, NULL, err, "--ip-table-size", "0") < 0);
    assert_non_null(strstr(err, "--ip-table-size"));
    assert_true(PARSE(&c, NULL, err, "--handshake-burst-per-ip", "0") < 0);
    assert_non_null(strstr(err, "--handshake-burst-per-ip"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_flag_forms(void **state)
{
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, NULL, err, "--max-conns", "5", "--idle-timeout",
                           "90s", "--listen", "[::1]:0", "--log-level",
                           "debug"),
                     0);
    assert_int_equal(c.max_conns, 5);
    assert_int_equal(c.idle_timeout_ms, 90000);
    assert_string_equal(c.listen, "[::1]:0");
    assert_string_equal(c.log_level, "debug");

    assert_int_equal(PARSE(&c, NULL, err, "--max-conns=6",
                           "--idle-timeout=250ms", "--max-body=2MB",
                           "--listen=:7000"),
                     0);
    assert_int_equal(c.max_conns, 6);
    assert_int_equal(c.idle_timeout_ms, 250);
    assert_int_equal(c.max_body, 2000000);
    assert_string_equal(c.listen, ":7000");

    /* Boolean: bare means true, =value is accepted, the last one wins. */
    assert_int_equal(PARSE(&c, NULL, err, "--mem-trace"), 0);
    assert_true(c.mem_trace);
    assert_int_equal(PARSE(&c, NULL, err, "--mem-trace", "--mem-trace=false"),
                     0);
    assert_false(c.mem_trace);
    assert_int_equal(PARSE(&c, NULL, err, "--max-conns", "1", "--max-conns=2"),
                     0);
    assert_int_equal(c.max_conns, 2);

    /* A boolean never takes the next word as its value. */
    assert_int_equal(PARSE(&c, NULL, err, "--mem-trace", "1"), -1);
    assert_string_equal(err,
                        "unexpected argument \"1\" (see moor serve --help)");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_ranges(void **state)
{
    static const struct {
        const char *flag, *value, *msg;
    } cases[] = {
        {"--max-header-bytes", "255",
         "invalid value \"255\" for --max-header-bytes: expected a size "
         "from 256B to 60KiB"},
        {"--max-header-bytes", "61KiB",
         "invalid value \"61KiB\" for --max-header-bytes: expected a size "
         "from 256B to 60KiB"},
        {"--max-headers", "257",
         "invalid value \"257\" for --max-headers: expected a whole number "
         "from 1 to 256"},
        {"--max-headers", "0",
         "invalid value \"0\" for --max-headers: expected a whole number "
         "from 1 to 256"},
        {"--max-conns", "99999999999999999999999",
         "invalid value \"99999999999999999999999\" for --max-conns: "
         "expected a whole number from 1 to 10000000"},
        {"--read-buffer", "17MiB",
         "invalid value \"17MiB\" for --read-buffer: expected a size from "
         "16KiB to 16MiB"},
        {"--read-buffer", "16383",
         "invalid value \"16383\" for --read-buffer: expected a size from "
         "16KiB to 16MiB"},
        {"--header-timeout", "0",
         "invalid value \"0\" for --header-timeout: expected a duration "
         "from 1ms to 576h"},
        {"--idle-timeout", "577h",
         "invalid value \"577h\" for --idle-timeout: expected a duration "
         "from 1ms to 576h"},
        {"--max-body", "99999999999999999999GiB",
         "invalid value \"99999999999999999999GiB\" for --max-body: expected "
         "a size from 0B to 1024GiB"},
    };
    struct moor_config c;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(PARSE(&c, NULL, err, cases[i].flag, cases[i].value),
                         -1);
        assert_string_equal(err, cases[i].msg);
    }
    /* The edges themselves are in range. */
    assert_int_equal(PARSE(&c, NULL, err, "--max-header-bytes", "256",
                           "--max-headers", "256", "--read-buffer", "16MiB",
                           "--header-timeout", "1ms", "--idle-timeout", "576h",
                           "--linger-timeout", "0", "--shutdown-timeout", "0",
                           "--accept-rate", "0"),
                     0);
    assert_int_equal(c.max_header_bytes, 256);
    assert_int_equal(c.max_headers, 256);
    assert_int_equal(c.read_buffer, 16 << 20);
    assert_int_equal(c.header_timeout_ms, 1);
    assert_int_equal(c.idle_timeout_ms, 2073600000u);
    assert_int_equal(c.linger_timeout_ms, 0);
    assert_int_equal(c.shutdown_timeout_ms, 0);
    assert_int_equal(c.accept_rate, 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bad_values(void **state)
{
    static const struct {
        const char *flag, *value, *msg;
    } cases[] = {
        {"--idle-timeout", "10x",
         "invalid value \"10x\" for --idle-timeout: expected a duration like "
         "250ms, 10s, 2m"},
        {"--idle-timeout", "10",
         "invalid value \"10\" for --idle-timeout: expected a duration like "
         "250ms, 10s, 2m"},
        {"--linger-timeout", "soon",
         "invalid value \"soon\" for --linger-timeout: expected a duration "
         "like 250ms, 10s, 2m (or 0)"},
        {"--queue-limit", "1MiBs",
         "invalid value \"1MiBs\" for --queue-limit: expected a size like "
         "512B, 64KiB, 1MiB"},
        {"--max-conns", "ten",
         "invalid value \"ten\" for --max-conns: expected a whole number "
         "from 1 to 10000000"},
        {"--max-conns", "-1", "flag --max-conns needs a value"},
        {"--log-level", "loud",
         "invalid value \"loud\" for --log-level: expected one of debug, "
         "info, warn, error, off"},
        {"--listen", "8080",
         "invalid value \"8080\" for --listen: expected host:port, "
         "[v6]:port or :port, with a port from 0 to 65535"},
        {"--listen", ":65536",
         "invalid value \":65536\" for --listen: expected host:port, "
         "[v6]:port or :port, with a port from 0 to 65535"},
        {"--admin-listen", "9090",
         "invalid value \"9090\" for --admin-listen: expected host:port, "
         "[v6]:port or :port, with a port from 0 to 65535"},
        {"--admin-listen", "::1:9090",
         "invalid value \"::1:9090\" for --admin-listen: an IPv6 address "
         "goes in brackets: write [::1]:9090"},
        {"--mem-trace=maybe", NULL,
         "invalid value \"maybe\" for --mem-trace: expected true or false "
         "(or 1, 0, yes, no, on, off)"},
        {"--max-body=", NULL,
         "invalid value \"\" for --max-body: expected a size like 512B, "
         "64KiB, 1MiB"},
    };
    struct moor_config c;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = cases[i].value
                     ? PARSE(&c, NULL, err, cases[i].flag, cases[i].value)
                     : PARSE(&c, NULL, err, cases[i].flag);

        assert_int_equal(rc, -1);
        assert_string_equal(err, cases[i].msg);
    }

    /* A listen address longer than the field is refused, not cut. */
    {
        char big[200];

        memset(big, 'h', sizeof(big));
        memcpy(big + sizeof(big) - 4, ":80", 4);
        assert_int_equal(PARSE(&c, NULL, err, "--listen", big), -1);
        assert_non_null(strstr(err, "for --listen: expected host:port"));
    }

    /* A short err buffer gets a cut but terminated message. */
    {
        char small[16];

        assert_int_equal(PARSE(&c, NULL, small, "--idle-timeout", "10x"), -1);
        assert_string_equal(small, "invalid value \"");
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_env(void **state)
{
    char *env[] = {
        "PATH=/usr/bin",
        "MOOR_IDLE_TIMEOUTX=1s",
        "MOOR_IDLE_TIMEOUT=5s",
        "MOOR_MAX_HEADER_BYTES=4KiB",
        "MOOR_LISTEN=[::]:9000",
        "MOOR_MEM_TRACE=1",
        "MOOR_MAX_CONNS=",
        "MOOR_LOG_LEVEL=warn",
        NULL,
    };
    char *bools[][2] = {
        {"MOOR_MEM_TRACE=true", NULL},
        {"MOOR_MEM_TRACE=TRUE", NULL},
        {"MOOR_MEM_TRACE=0", NULL},
        {"MOOR_MEM_TRACE=false", NULL},
    };
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, env, err, "--max-body", "2KiB"), 0);
    assert_int_equal(c.idle_timeout_ms, 5000);
    assert_int_equal(c.max_header_bytes, 4096);
    assert_string_equal(c.listen, "[::]:9000");
    assert_true(c.mem_trace);
    assert_int_equal(c.max_conns, 10000); /* empty counts as unset */
    assert_string_equal(c.log_level, "warn");
    assert_int_equal(c.max_body, 2048);

    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        assert_int_equal(PARSE(&c, bools[i], err, "--max-conns", "1"), 0);
        assert_int_equal(c.mem_trace, i < 2);
    }

    /* The flag beats the environment. */
    assert_int_equal(PARSE(&c, env, err, "--idle-timeout", "7s", "--listen",
                           ":1", "--mem-trace=0"),
                     0);
    assert_int_equal(c.idle_timeout_ms, 7000);
    assert_string_equal(c.listen, ":1");
    assert_false(c.mem_trace);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_bad_env(void **state)
{
    char *env1[] = {"MOOR_IDLE_TIMEOUT=10x", NULL};
    char *env2[] = {"MOOR_MEM_TRACE=maybe", NULL};
    char *env3[] = {"MOOR_MAX_HEADERS=1000", NULL};
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, env1, err, "--max-conns", "3"), -1);
    assert_string_equal(err, "invalid value \"10x\" for --idle-timeout (from "
                             "MOOR_IDLE_TIMEOUT): expected a duration like "
                             "250ms, 10s, 2m");
    assert_int_equal(PARSE(&c, env2, err, "--max-conns", "3"), -1);
    assert_string_equal(err, "invalid value \"maybe\" for --mem-trace (from "
                             "MOOR_MEM_TRACE): expected true or false (or 1, "
                             "0, yes, no, on, off)");
    assert_int_equal(PARSE(&c, env3, err, "--max-conns", "3"), -1);
    assert_string_equal(err, "invalid value \"1000\" for --max-headers (from "
                             "MOOR_MAX_HEADERS): expected a whole number "
                             "from 1 to 256");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_unknown_flag(void **state)
{
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, NULL, err, "--foo"), -1);
    assert_string_equal(err, "unknown flag \"--foo\" (see moor serve --help)");
    assert_int_equal(PARSE(&c, NULL, err, "--max-conns", "3", "--foo=1"), -1);
    assert_string_equal(err, "unknown flag \"--foo\" (see moor serve --help)");
    assert_int_equal(PARSE(&c, NULL, err, "-x"), -1);
    assert_string_equal(err, "unknown flag \"-x\" (see moor serve --help)");
    /* A prefix of a flag is not the flag. */
    assert_int_equal(PARSE(&c, NULL, err, "--max", "3"), -1);
    assert_string_equal(err, "unknown flag \"--max\" (see moor serve --help)");
    assert_int_equal(PARSE(&c, NULL, err, "serve"), -1);
    assert_string_equal(
        err, "unexpected argument \"serve\" (see moor serve --help)");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_missing_value(void **state)
{
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, NULL, err, "--max-conns"), -1);
    assert_string_equal(err, "flag --max-conns needs a value");
    /* The next word is a flag, not this one's value. */
    assert_int_equal(PARSE(&c, NULL, err, "--listen", "--idle-timeout", "5s"),
                     -1);
    assert_string_equal(err, "flag --listen needs a value");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_help(void **state)
{
    char *bad_env[] = {"MOOR_IDLE_TIMEOUT=10x", NULL};
    struct moor_config c;
    char err[256], want[96];
    size_t n = 0;
    const char *line;

    (void)state;
    assert_int_equal(PARSE(&c, NULL, err, "--help"), 1);
    assert_string_equal(err, "");
    assert_true(!strncmp(outbuf, "usage: moor serve [flags]\n", 26));
    assert_non_null(strstr(outbuf, "GET /healthz"));
    assert_non_null(strstr(outbuf, "GET /metrics"));
    assert_non_null(strstr(outbuf, "GET /debug/mem"));
    assert_non_null(strstr(outbuf, "--idle-timeout DURATION"));
    assert_non_null(strstr(outbuf, "--message-timeout DURATION"));
    assert_non_null(
        strstr(outbuf, "(default 60s, env MOOR_IDLE_TIMEOUT; SIGHUP)"));
    assert_non_null(strstr(outbuf, "127.0.0.1:8080, env MOOR_LISTEN)"));
    assert_non_null(strstr(outbuf, "Durations:"));
    for (const char *name; (name = config_flag_name(n)) != NULL; n++) {
        snprintf(want, sizeof(want), "  --%s ", name);
        assert_non_null(strstr(outbuf, want));
    }
    assert_int_equal(n, 83);
    /* Every line fits in 80 columns. */
    for (line = outbuf; *line;) {
        size_t len = strcspn(line, "\n");

        assert_true(len <= 80);
        line += len + (line[len] == '\n');
    }

    /* -h too, and help wins over a bad environment and a bad flag. */
    assert_int_equal(PARSE(&c, bad_env, err, "--bogus", "-h"), 1);
    assert_true(!strncmp(outbuf, "usage: moor serve", 17));
    assert_int_equal(PARSE(&c, NULL, err, "--max-conns=x", "--help"), 1);
    /* But not when it is the value of a flag that wants one... */
    assert_int_equal(PARSE(&c, NULL, err, "--listen=--help"), -1);
    /* ...and a flag never eats "--help" as its value. */
    assert_int_equal(PARSE(&c, NULL, err, "--listen", "--help"), 1);

    /* --limits-md prints the table with a row per flag. */
    assert_int_equal(PARSE(&c, NULL, err, "--limits-md"), 1);
    assert_true(!strncmp(outbuf, "# Limits\n", 9));
    assert_non_null(strstr(outbuf, "src/config.c"));
    assert_non_null(strstr(outbuf, "| flag | default | env | what it limits "
                                   "| metric when it bites |"));
    assert_non_null(
        strstr(outbuf, "| `--idle-timeout` | `60s` | `MOOR_IDLE_TIMEOUT` |"));
    assert_non_null(
        strstr(outbuf, "`moor_closed_total{reason=\"slow_consumer\"}`"));
    for (n = 0; config_flag_name(n); n++) {
        snprintf(want, sizeof(want), "| `--%s` |", config_flag_name(n));
        assert_non_null(strstr(outbuf, want));
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_print_functions(void **state)
{
    const char *md;

    (void)state;
    assert_non_null(strstr(capture(config_print_help), "--mem-trace"));
    md = capture(config_print_limits_md);
    assert_non_null(strstr(md, "`MOOR_MEM_TRACE`"));
    /* No cell breaks the table: every row has six bars. */
    for (const char *line = strstr(md, "| `--"); line && *line == '|';) {
        size_t len = strcspn(line, "\n"), bars = 0;

        for (size_t i = 0; i < len; i++)
            bars += line[i] == '|' && (i == 0 || line[i - 1] != '\\');
        assert_int_equal(bars, 6);
        line += len + 1;
    }
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_read_buffer_cross_check(void **state)
{
    char *env[] = {"MOOR_READ_BUFFER=16KiB", NULL};
    struct moor_config c;
    char err[256];

    (void)state;
    /* The largest header limit fits the default buffer exactly. */
    assert_int_equal(PARSE(&c, NULL, err, "--max-header-bytes", "60KiB"), 0);
    assert_int_equal(PARSE(&c, NULL, err, "--read-buffer", "16KiB",
                           "--max-header-bytes", "12KiB"),
                     0);
    assert_int_equal(PARSE(&c, NULL, err, "--read-buffer", "16KiB",
                           "--max-header-bytes", "12289"),
                     -1);
    assert_string_equal(err, "--read-buffer 16KiB is too small for "
                             "--max-header-bytes 12289B: it must be at least "
                             "16385B (max-header-bytes + 4KiB); raise "
                             "--read-buffer or lower --max-header-bytes");
    /* Checked after the environment and the flags are both applied. */
    assert_int_equal(PARSE(&c, env, err, "--max-header-bytes", "13KiB"), -1);
    assert_non_null(strstr(err, "it must be at least 17KiB"));
    assert_int_equal(PARSE(&c, env, err, "--read-buffer", "17KiB",
                           "--max-header-bytes", "13KiB"),
                     0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_tls_cross_checks(void **state)
{
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE(&c, NULL, err, "--tls-listen", ":8443"), -1);
    assert_non_null(strstr(err, "--tls-listen :8443 needs a certificate"));
    assert_int_equal(
        PARSE(&c, NULL, err, "--tls-listen", ":8443", "--tls-cert", "c.pem"),
        -1);
    assert_int_equal(
        PARSE(&c, NULL, err, "--tls-cert", "c.pem", "--tls-key", "k.pem"), -1);
    assert_non_null(strstr(err, "used only with --tls-listen"));
    assert_int_equal(PARSE(&c, NULL, err, "--tcp-tls"), -1);
    assert_non_null(strstr(err, "--tcp-tls needs --tcp-listen"));
    assert_int_equal(PARSE(&c, NULL, err, "--tcp-tls", "--tcp-listen", ":9000"),
                     -1);
    assert_non_null(strstr(err, "--tcp-tls needs a certificate"));
    /* Files are opened later (serve): only the combination is checked. */
    assert_int_equal(PARSE(&c, NULL, err, "--tcp-tls", "--tcp-listen", ":9000",
                           "--tls-cert", "c.pem", "--tls-key", "k.pem"),
                     0);
    assert_true(c.tcp_tls);
    assert_int_equal(PARSE(&c, NULL, err, "--tls-listen", ":8443", "--tls-cert",
                           "c.pem", "--tls-key", "k.pem", "--tls-ciphersuites",
                           "TLS_AES_128_GCM_SHA256"),
                     0);
    assert_string_equal(c.tls_ciphersuites, "TLS_AES_128_GCM_SHA256");
    assert_string_equal(c.tls_min_version, "1.2");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_per_ip_flags),
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_size_units),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_bad_env),
        cmocka_unit_test(test_unknown_flag),
        cmocka_unit_test(test_missing_value),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_print_functions),
        cmocka_unit_test(test_read_buffer_cross_check),
        cmocka_unit_test(test_tls_cross_checks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
