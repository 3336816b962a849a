/*
 * test_config_file.c - unit tests for the config file of `moor serve`
 * (flags_parse_file() in flags.c, config_parse() with --config, the
 * --print-config dump and the SIGHUP comparison, config_reload()): both
 * line forms, comments, quotes, every error with its PATH:LINE, the
 * precedence flag > environment > file > default, and the print /
 * reparse / print round trip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "flags.h"
#include "mem.h"

/* The file under test and what --print-config prints go through these
 * fixed buffers, so the tests need no allocation of their own. */
static char path[64];
static char outbuf[65536], outbuf2[65536];

/* Writes text to a new temporary file; its name is in path. */
static void write_file(const char *text, size_t len)
{
    int fd;

    snprintf(path, sizeof(path), "/tmp/moor-test-conf-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* config_parse() of "--config PATH" and the NULL-terminated words after
 * env, over the file holding text. The file is removed after. */
static int parse_text(struct moor_config *c, const char *text, char **env,
                      char *err, size_t errlen, ...)
{
    char *argv[16];
    int argc = 0, rc;
    FILE *out = fmemopen(outbuf, sizeof(outbuf), "w");
    va_list ap;

    assert_non_null(out);
    write_file(text, strlen(text));
    argv[argc++] = "--config";
    argv[argc++] = path;
    va_start(ap, errlen);
    for (char *w; (w = va_arg(ap, char *)) != NULL;) {
        assert_true(argc < 16);
        argv[argc++] = w;
    }
    va_end(ap);
    rc = config_parse(c, argc, argv, env, out, err, errlen);
    fclose(out);
    unlink(path);
    return rc;
}

#define PARSE_TEXT(c, text, env, err, ...)                                     \
    parse_text(c, text, env, err, sizeof(err), ##__VA_ARGS__, NULL)

/* The message with the temporary file's name replaced by "F". */
static const char *msg(const char *err)
{
    static char buf[512];
    size_t n = strlen(path);

    if (!strncmp(err, path, n))
        snprintf(buf, sizeof(buf), "F%s", err + n);
    else
        snprintf(buf, sizeof(buf), "%s", err);
    return buf;
}

static void test_line_forms(void **state)
{
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(PARSE_TEXT(&c,
                                "# a comment\n"
                                "\n"
                                "   \t\n"
                                "listen 127.0.0.1:9001\n"
                                "max-conns = 77\n"
                                "max-conns-per-ip=5\n"
                                "  idle-timeout\t2m   # after a blank\n"
                                "max-body \"2KiB\"\n"
                                "log-level 'warn'\n"
                                "tls-tickets on\n"
                                "mem-trace yes\r\n"
                                "allowed-origins = \"\"\n"
                                "influx-user \"a # b\"  # comment\n"
                                "auth-forward-headers x-a#b\n"
                                "influx-tags   ' k=v '",
                                NULL, err),
                     0);
    assert_string_equal(err, "");
    assert_string_equal(c.listen, "127.0.0.1:9001");
    assert_int_equal(c.max_conns, 77);
    assert_int_equal(c.max_conns_per_ip, 5);
    assert_int_equal(c.idle_timeout_ms, 120000);
    assert_int_equal(c.max_body, 2048);
    assert_string_equal(c.log_level, "warn");
    assert_true(c.tls_tickets);
    assert_true(c.mem_trace);
    assert_string_equal(c.allowed_origins, "");
    /* A '#' inside quotes, or not after a blank, is part of the value. */
    assert_string_equal(c.influx_user, "a # b");
    assert_string_equal(c.auth_forward_headers, "x-a#b");
    /* The last line has no newline; quotes keep the blanks. */
    assert_string_equal(c.influx_tags, " k=v ");
    /* Everything else keeps its default. */
    assert_int_equal(c.header_timeout_ms, 10000);

    assert_int_equal(
        PARSE_TEXT(&c, "tls-tickets off\nmem-trace NO\n", NULL, err), 0);
    assert_false(c.tls_tickets);
    assert_false(c.mem_trace);
    /* An empty file is all defaults. */
    assert_int_equal(PARSE_TEXT(&c, "", NULL, err), 0);
    assert_int_equal(c.max_conns, 10000);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_errors(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"listen :0\n\n# x\nlistn 1\n",
         "F:4: unknown setting \"listn\" (did you mean \"listen\"?)"},
        {"max-con 3\n", "F:1: unknown setting \"max-con\" (did you mean "
                        "\"max-conns\"?)"},
        {"--listen :0\n", "F:1: unknown setting \"--listen\" (did you mean "
                          "\"listen\"?)"},
        {"frobnicate 1\n",
         "F:1: unknown setting \"frobnicate\" (see moor serve --help)"},
        {"# ok\nidle-timeout 10x\n",
         "F:2: invalid value \"10x\" for --idle-timeout: expected a duration "
         "like 250ms, 10s, 2m"},
        {"max-conns 0\n", "F:1: invalid value \"0\" for --max-conns: expected "
                          "a whole number from 1 to 10000000"},
        {"tls-tickets maybe\n",
         "F:1: invalid value \"maybe\" for --tls-tickets: expected true or "
         "false (or 1, 0, yes, no, on, off)"},
        {"max-conns 5\nlisten :0\nmax-conns = 6\n",
         "F:3: \"max-conns\" is set twice (first on line 1)"},
        {"jwt-issuer \"abc\n",
         "F:1: unterminated double quote in the value of \"jwt-issuer\""},
        {"jwt-issuer \"abc\" x\n",
         "F:1: text after the closing quote of \"jwt-issuer\"'s value"},
        {"max-conns\n", "F:1: \"max-conns\" needs a value"},
        {"jwt-issuer =\n",
         "F:1: \"jwt-issuer\" needs a value (write jwt-issuer \"\" for "
         "empty)"},
        {"listen :0\nx\0y 1\n", "F:2: a NUL byte: not a text file?"},
    };
    struct moor_config c;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].text);
        char *argv[] = {"--config", path};

        if (strstr(cases[i].want, "NUL"))
            len = 16; /* past the NUL byte */
        write_file(cases[i].text, len);
        assert_int_equal(
            config_parse(&c, 2, argv, NULL, NULL, err, sizeof(err)), -1);
        unlink(path);
        assert_string_equal(msg(err), cases[i].want);
    }
    /* A setting the cross checks refuse is refused from a file too. */
    assert_int_equal(PARSE_TEXT(&c, "tcp-tls true\n", NULL, err), -1);
    assert_string_equal(err, "--tcp-tls needs --tcp-listen ADDR: add it, or "
                             "drop --tcp-tls");
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_file_errors(void **state)
{
    static char big[FLAGS_FILE_MAX + 2];
    char *argv[] = {"--config", "/nonexistent/moor.conf"};
    char *argv2[] = {"--config="};
    char *argv3[] = {"--config", "/tmp"};
    char line[FLAGS_LINE_MAX + 16];
    struct moor_config c;
    char err[256];

    (void)state;
    assert_int_equal(config_parse(&c, 2, argv, NULL, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "cannot read config file "
                             "/nonexistent/moor.conf: No such file or "
                             "directory");
    assert_int_equal(config_parse(&c, 1, argv2, NULL, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "--config needs a file name");
    {
        char *argv4[] = {"--print-config=yes"};

        assert_int_equal(
            config_parse(&c, 1, argv4, NULL, NULL, err, sizeof(err)), -1);
        assert_string_equal(err, "flag --print-config takes no value");
    }
    assert_int_equal(config_parse(&c, 2, argv3, NULL, NULL, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "cannot read config file /tmp: Is a directory");

    /* A line over FLAGS_LINE_MAX bytes. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "jwt-issuer ", 11);
    line[sizeof(line) - 1] = '\0';
    assert_int_equal(PARSE_TEXT(&c, line, NULL, err), -1);
    assert_string_equal(msg(err), "F:1: line too long (over 4096 bytes)");

    /* A file over FLAGS_FILE_MAX bytes, even if every line is fine. */
    memset(big, '\n', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(PARSE_TEXT(&c, big, NULL, err), -1);
    assert_non_null(strstr(err, ": longer than 1048576 bytes"));
    big[sizeof(big) - 2] = '\0'; /* exactly the limit: fine */
    assert_int_equal(PARSE_TEXT(&c, big, NULL, err), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_precedence(void **state)
{
    const char *text = "max-conns 5\nmax-headers 20\nmax-body 4KiB\n";
    char *env[] = {"MOOR_MAX_CONNS=6", "MOOR_MAX_HEADERS=21", NULL};
    char *env_cfg[8];
    char env_path[96];
    struct moor_config c;
    char err[256];

    (void)state;
    /* flag > env > file > default. */
    assert_int_equal(PARSE_TEXT(&c, text, env, err, "--max-conns", "7"), 0);
    assert_int_equal(c.max_conns, 7);           /* flag */
    assert_int_equal(c.max_headers, 21);        /* env over file */
    assert_int_equal(c.max_body, 4096);         /* file over default */
    assert_int_equal(c.idle_timeout_ms, 60000); /* default */
    /* The file alone. */
    assert_int_equal(PARSE_TEXT(&c, text, NULL, err), 0);
    assert_int_equal(c.max_conns, 5);
    assert_int_equal(c.max_headers, 20);

    /* MOOR_CONFIG names the file when --config does not. */
    write_file(text, strlen(text));
    snprintf(env_path, sizeof(env_path), "MOOR_CONFIG=%s", path);
    env_cfg[0] = env_path;
    env_cfg[1] = "MOOR_MAX_HEADERS=22";
    env_cfg[2] = NULL;
    assert_int_equal(config_parse(&c, 0, NULL, env_cfg, NULL, err, sizeof(err)),
                     0);
    unlink(path);
    assert_int_equal(c.max_conns, 5);
    assert_int_equal(c.max_headers, 22);
    assert_null(config_file_path(0, NULL, NULL));
    {
        char *argv[] = {"--max-conns", "3", "--config=/a", "--listen", ":0"};
        char *argv2[] = {"--listen", ":0", "--config", "/b"};

        assert_string_equal(config_file_path(5, argv, env_cfg), "/a");
        assert_string_equal(config_file_path(4, argv2, env_cfg), "/b");
        assert_string_equal(config_file_path(2, argv2, env_cfg), path);
    }
}

static const char *print_to(char *buf, size_t len, const struct moor_config *c)
{
    FILE *out = fmemopen(buf, len, "w");

    assert_non_null(out);
    config_print(out, c);
    assert_true(ftell(out) < (long)len - 1);
    fclose(out);
    return buf;
}

static void test_print_round_trip(void **state)
{
    struct moor_config a, b;
    char err[256];
    char *argv[] = {"--print-config",
                    "--max-conns=123",
                    "--idle-timeout=90s",
                    "--linger-timeout=0",
                    "--max-body=1000",
                    "--queue-limit=3MiB",
                    "--tls-tickets",
                    "--log-level=debug",
                    "--allowed-origins=https://a.example, http://b:8080",
                    "--influx-tags= a=b ",
                    "--jwt-channels-claim=#chan",
                    "--auth-forward-headers=\"x\"",
                    "--listen=[::1]:0"};
    FILE *out = fmemopen(outbuf, sizeof(outbuf), "w");

    (void)state;
    assert_int_equal(config_parse(&a, 13, argv, NULL, out, err, sizeof(err)),
                     1);
    fclose(out);
    /* Every setting, each under a comment; a header first. */
    assert_true(!strncmp(outbuf, "# moor serve configuration", 26));
    assert_non_null(strstr(outbuf, "\nmax-conns 123\n"));
    assert_non_null(strstr(outbuf, "\nidle-timeout 90s\n"));
    assert_non_null(strstr(outbuf, "\nlinger-timeout 0\n"));
    assert_non_null(strstr(outbuf, "\nmax-body 1000B\n"));
    assert_non_null(strstr(outbuf, "\nqueue-limit 3MiB\n"));
    assert_non_null(strstr(outbuf, "\ntls-tickets true\n"));
    assert_non_null(strstr(outbuf, "\ntcp-listen \"\"\n"));
    assert_non_null(strstr(outbuf, "\ninflux-tags \" a=b \"\n"));
    assert_non_null(strstr(outbuf, "\njwt-channels-claim \"#chan\"\n"));
    assert_non_null(strstr(outbuf, "\n# least severe log line written: debug, "
                                   "info, warn, error, or off (SIGHUP\n# "
                                   "applies it)\nlog-level debug\n"));
    for (size_t i = 0; config_flag_name(i); i++) {
        char want[80];

        snprintf(want, sizeof(want), "\n%s ", config_flag_name(i));
        assert_non_null(strstr(outbuf, want));
    }

    /* Read back: the same configuration, printed the same. */
    assert_int_equal(PARSE_TEXT(&b, outbuf, NULL, err), 0);
    assert_string_equal(err, "");
    assert_int_equal(b.max_conns, 123);
    assert_string_equal(b.influx_tags, " a=b ");
    assert_string_equal(b.auth_forward_headers, "\"x\"");
    assert_string_equal(b.allowed_origins, "https://a.example, http://b:8080");
    print_to(outbuf2, sizeof(outbuf2), &a);
    print_to(outbuf, sizeof(outbuf), &b);
    assert_string_equal(outbuf, outbuf2);

    /* The defaults too. */
    config_defaults(&a);
    print_to(outbuf2, sizeof(outbuf2), &a);
    assert_int_equal(PARSE_TEXT(&b, outbuf2, NULL, err), 0);
    print_to(outbuf, sizeof(outbuf), &b);
    assert_string_equal(outbuf, outbuf2);
}

/* config_reload()'s reports, recorded. */
static char reports[1024];

static void record(const char *name, bool applied, const char *was,
                   const char *now, void *arg)
{
    size_t n = strlen(reports);

    (void)arg;
    snprintf(reports + n, sizeof(reports) - n, "%s %s %s->%s;", name,
             applied ? "applied" : "restart", was, now);
}

static void test_reload(void **state)
{
    struct moor_config live, next;
    char err[256];

    (void)state;
    assert_int_equal(
        PARSE_TEXT(&live, "listen 127.0.0.1:1\nlog-level info\n", NULL, err),
        0);
    /* Nothing changed: nothing reported. */
    next = live;
    reports[0] = '\0';
    assert_int_equal(config_reload(&live, &next, record, NULL), 0);
    assert_string_equal(reports, "");

    assert_int_equal(PARSE_TEXT(&next,
                                "listen 127.0.0.1:2\nlog-level warn\n"
                                "allowed-origins https://x.example\n"
                                "handshake-timeout 3s\nmax-conns 9\n"
                                "queue-limit 9KiB\n",
                                NULL, err),
                     0);
    assert_int_equal(config_reload(&live, &next, record, NULL), 4);
    assert_string_equal(reports, "listen restart 127.0.0.1:1->127.0.0.1:2;"
                                 "handshake-timeout applied 10s->3s;"
                                 "max-conns applied 10000->9;"
                                 "queue-limit restart 1MiB->9KiB;"
                                 "allowed-origins applied ->https://x.example;"
                                 "log-level applied info->warn;");
    /* Applied: in live. Not applied: live keeps its running value. */
    assert_string_equal(live.log_level, "warn");
    assert_string_equal(live.allowed_origins, "https://x.example");
    assert_int_equal(live.handshake_timeout_ms, 3000);
    assert_string_equal(live.listen, "127.0.0.1:1");
    assert_int_equal(live.max_conns, 9);
    assert_int_equal(live.queue_limit, 1024 * 1024);

    /* A shorter string over a longer one compares by its text. */
    assert_int_equal(PARSE_TEXT(&next,
                                "listen 127.0.0.1:1\nlog-level warn\n"
                                "allowed-origins https://x.exampl\n"
                                "handshake-timeout 3s\nmax-conns 9\n",
                                NULL, err),
                     0);
    reports[0] = '\0';
    assert_int_equal(config_reload(&live, &next, record, NULL), 1);
    assert_string_equal(reports, "allowed-origins applied "
                                 "https://x.example->https://x.exampl;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_reload),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
