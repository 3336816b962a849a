/*
 * test_auth.c - auth.c: where a request's token is found, channel lists
 * checked against a grant, and the sessions that close a connection when
 * its token expires (the timer, the table, memory, allocation failures).
 * Tokens themselves are test_jwt.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth.h"
#include "http1.h"
#include "loop.h"
#include "mem.h"

static const char secret[] = "0123456789abcdef0123456789abcdef-secret";

struct fixture {
    char dir[64], file[96];
    struct loop *l;
    struct auth *a;
    struct conn *expired[8];
    int n_expired;
};

static void on_expire(struct conn *c, void *arg)
{
    struct fixture *f = arg;

    if (f->n_expired < 8)
        f->expired[f->n_expired] = c;
    f->n_expired++;
}

static struct auth *new_auth(struct fixture *f, const char *cookie)
{
    struct auth_opts o = {
        .jwt = true,
        .secret_file = f->file,
        .cookie = cookie,
        .jwt_o = {.max_token_bytes = 4096,
                  .channels_claim = "channels",
                  .publish_claim = "publish"},
    };
    char err[256];
    struct auth *a = auth_new(f->l, &o, on_expire, f, err, sizeof(err));

    if (!a)
        fail_msg("auth_new: %s", err);
    return a;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    FILE *fp;

    snprintf(f->dir, sizeof(f->dir), "/tmp/moor-auth.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->file, sizeof(f->file), "%s/secret", f->dir);
    fp = fopen(f->file, "w");
    assert_non_null(fp);
    fputs(secret, fp);
    fclose(fp);
    f->l = loop_new(65536);
    assert_non_null(f->l);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    auth_free(f->a);
    loop_free(f->l);
    unlink(f->file);
    rmdir(f->dir);
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
    free(f);
    return 0;
}

/* Parses raw as a request into *req (its strings point into raw). */
static void parse(const char *raw, struct http_request *req)
{
    struct http_limits lim = {.max_header_bytes = 8192, .max_headers = 32};
    uint32_t scan = 0;
    int status = 0;

    assert_true(http_parse_request((const uint8_t *)raw, strlen(raw), &lim,
                                   &scan, req, &status) > 0);
}

static void expect_token(struct auth *a, const char *raw, const char *want)
{
    static struct http_request req;
    struct http_str tok;

    parse(raw, &req);
    if (!want) {
        assert_false(auth_find_token(a, &req, &tok));
        return;
    }
    assert_true(auth_find_token(a, &req, &tok));
    if (tok.len != strlen(want) || memcmp(tok.p, want, tok.len))
        fail_msg("token \"%.*s\", wanted \"%s\" in:\n%s", (int)tok.len, tok.p,
                 want, raw);
}

static void test_find_token(void **state)
{
    struct fixture *f = *state;

    f->a = new_auth(f, "sess");
    expect_token(f->a,
                 "GET /sub/a HTTP/1.1\r\nHost: x\r\n"
                 "Authorization: Bearer abc.def.ghi\r\n\r\n",
                 "abc.def.ghi");
    expect_token(f->a,
                 "GET /sub/a HTTP/1.1\r\nHost: x\r\n"
                 "authorization: bEaReR    t1  \r\n\r\n",
                 "t1");
    /* Another scheme: not a bearer token; the query is next. */
    expect_token(f->a,
                 "GET /sub/a?x=1&token=q.q.q HTTP/1.1\r\nHost: x\r\n"
                 "Authorization: Basic dXNlcjpwYXNz\r\n\r\n",
                 "q.q.q");
    expect_token(f->a,
                 "GET /sub/a?mytoken=1&token=&b=2 HTTP/1.1\r\n"
                 "Host: x\r\n\r\n",
                 NULL);
    expect_token(f->a,
                 "GET /sub/a HTTP/1.1\r\nHost: x\r\n"
                 "Cookie: theme=dark; sess=c.c.c; x=y\r\n\r\n",
                 "c.c.c");
    expect_token(f->a,
                 "GET /sub/a HTTP/1.1\r\nHost: x\r\n"
                 "Cookie: nosess=c.c.c\r\n\r\n",
                 NULL);
    expect_token(f->a,
                 "GET /sub/a HTTP/1.1\r\nHost: x\r\n"
                 "Authorization: Bearer\r\n\r\n",
                 NULL);
}

static void test_cookie_only_when_asked(void **state)
{
    struct fixture *f = *state;

    f->a = new_auth(f, NULL);
    expect_token(f->a,
                 "GET /sub/a HTTP/1.1\r\nHost: x\r\n"
                 "Cookie: sess=c.c.c\r\n\r\n",
                 NULL);
}

static void test_grant_lists(void **state)
{
    char block[] = "news\0chat.*\0room1";
    struct jwt_grant g = {.patterns = block, .n_sub = 2, .n_pub = 1};

    (void)state;
    assert_true(auth_grant_list(&g, false, "news", 4, ','));
    assert_true(auth_grant_list(&g, false, "news,chat.a,chat.b", 18, ','));
    assert_false(auth_grant_list(&g, false, "news,sports", 11, ','));
    assert_false(auth_grant_list(&g, false, "chat", 4, ','));
    assert_false(auth_grant_list(&g, false, "room1", 5, ','));
    assert_true(auth_grant_list(&g, true, "room1", 5, ','));
    assert_false(auth_grant_list(&g, true, "news", 4, ','));
}

/* Sessions: a timer per connection that fires at exp (+ leeway); the
 * table grows past its first 64 buckets and gives everything back. */
static void test_sessions_expire(void **state)
{
    struct fixture *f = *state;
    struct jwt_grant g = {.sub = "alice"};
    int64_t now = (int64_t)(loop_wall_ms(f->l) / 1000);
    struct conn *soon = (struct conn *)(uintptr_t)0x1000;

    f->a = new_auth(f, NULL);
    g.exp = now + 3600;
    for (uintptr_t i = 1; i <= 1000; i++)
        assert_int_equal(
            auth_attach(f->a, (struct conn *)(0x100000 + i * 64), &g), 0);
    g.exp = now + 1;
    strcpy(g.sub, "bob");
    assert_int_equal(auth_attach(f->a, soon, &g), 0);
    assert_int_equal(auth_stats(f->a)->sessions, 1001);
    assert_string_equal(auth_subject(f->a, soon), "bob");
    assert_string_equal(auth_subject(f->a, (struct conn *)(0x100000 + 64)),
                        "alice");
    assert_null(auth_subject(f->a, (struct conn *)0x2000));
    for (int i = 0; i < 300 && !f->n_expired; i++)
        loop_run_once(f->l, 10);
    assert_int_equal(f->n_expired, 1);
    assert_ptr_equal(f->expired[0], soon);
    assert_int_equal(auth_stats(f->a)->expired, 1);
    assert_int_equal(auth_stats(f->a)->sessions, 1000);
    assert_null(auth_subject(f->a, soon));
    for (uintptr_t i = 1; i <= 500; i++)
        auth_detach(f->a, (struct conn *)(0x100000 + i * 64));
    auth_detach(f->a, soon); /* gone already: a no-op */
    assert_int_equal(auth_stats(f->a)->sessions, 500);
    auth_free(f->a); /* drops the other 500 */
    f->a = NULL;
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

static void test_attach_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct jwt_grant g = {.sub = "x"};
    struct conn *c = (struct conn *)(uintptr_t)0x4000;

    f->a = new_auth(f, NULL);
    g.exp = (int64_t)(loop_wall_ms(f->l) / 1000) + 60;
    mem_fail_at(1);
    assert_int_equal(auth_attach(f->a, c, &g), -ENOMEM);
    mem_fail_at(0);
    assert_int_equal(auth_stats(f->a)->sessions, 0);
    assert_null(auth_subject(f->a, c));
}

static void test_off_allows_and_tracks_nothing(void **state)
{
    struct fixture *f = *state;
    struct auth_opts o = {.jwt = false};
    char err[64];
    struct jwt_grant g = {.exp = 1};

    f->a = auth_new(f->l, &o, on_expire, f, err, sizeof(err));
    assert_non_null(f->a);
    assert_false(auth_on(f->a));
    assert_int_equal(auth_attach(f->a, (struct conn *)0x10, &g), 0);
    assert_null(auth_subject(f->a, (struct conn *)0x10));
    assert_int_equal(auth_max_token_bytes(f->a), 0);
}

static void test_bad_key_file(void **state)
{
    struct fixture *f = *state;
    struct auth_opts o = {.jwt = true, .secret_file = "/nonexistent/secret"};
    char err[256] = "";

    assert_null(auth_new(f->l, &o, on_expire, f, err, sizeof(err)));
    if (!strstr(err, "/nonexistent/secret"))
        fail_msg("err: %s", err);
}

/* An auth callback's answer: every member optional, lists and exp
 * reported present or not, the same strictness as a token's claims. */
static void test_answer_json(void **state)
{
    struct jwt_opts o = {0};
    struct jwt_grant g;
    unsigned present;

    (void)state;
    assert_int_equal(jwt_grant_from_json("", 0, &o, &g, &present), JWT_OK);
    assert_int_equal(present, 0);
    assert_int_equal(jwt_grant_from_json("{}", 2, &o, &g, &present), JWT_OK);
    assert_int_equal(present, 0);
    jwt_grant_free(&g);
    {
        const char *s = "{\"channels\":[\"news\",\"chat.*\"],\"exp\":"
                        "4102444800,\"sub\":\"svc\"}";

        assert_int_equal(jwt_grant_from_json(s, strlen(s), &o, &g, &present),
                         JWT_OK);
        assert_int_equal(present, JWT_HAS_CHANNELS | JWT_HAS_EXP);
        assert_int_equal(g.n_sub, 2);
        assert_int_equal(g.n_pub, 0);
        assert_int_equal(g.exp, 4102444800LL);
        assert_string_equal(g.sub, "svc");
        assert_true(jwt_grant_allows(&g, false, "chat.x", 6));
        assert_false(jwt_grant_allows(&g, true, "news", 4));
        jwt_grant_free(&g);
    }
    {
        static const char *bad[] = {
            "[]",
            "{\"channels\":\"news\"}",
            "{\"exp\":\"soon\"}",
            "{\"sub\":1}",
            "{\"publish\":[\"a b\"]}",
            "{",
            "{\"a\":1,\"a\":2}",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            assert_int_equal(
                jwt_grant_from_json(bad[i], strlen(bad[i]), &o, &g, &present),
                JWT_MALFORMED);
            assert_int_equal(present, 0);
            assert_null(g.patterns);
        }
    }
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(auth_reason_name(AUTH_NO_TOKEN), "no_token");
    assert_string_equal(auth_reason_name(AUTH_NOT_ALLOWED), "not_allowed");
    assert_string_equal(auth_reason_name(JWT_EXPIRED), "expired");
    assert_string_equal(auth_reason_name(JWT_BAD_SIGNATURE), "bad_signature");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_find_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cookie_only_when_asked, setup,
                                        teardown),
        cmocka_unit_test(test_grant_lists),
        cmocka_unit_test_setup_teardown(test_sessions_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_out_of_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_off_allows_and_tracks_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_key_file, setup, teardown),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_answer_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
