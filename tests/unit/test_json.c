/*
 * test_json.c - the strict JSON reader (src/json.c) alone: documents it
 * takes and what it makes of them (types, the node layout, lookups,
 * escapes and surrogate pairs, numbers), documents it refuses and why
 * (syntax, UTF-8, depth, member count, duplicates), and every allocation
 * failing in turn. After every test, the auth tag holds no byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "mem.h"

static enum json_error parse(struct json_doc *d, const char *s)
{
    return json_parse(d, s, strlen(s), 16, MEM_AUTH);
}

/* Parses s, which must be refused with e; nothing is left allocated. */
static void refuse(const char *s, enum json_error e)
{
    struct json_doc d;
    enum json_error got = parse(&d, s);

    if (got != e)
        fail_msg("%s: got %d, want %d (%s)", s, got, e, d.why ? d.why : "");
    assert_non_null(d.why);
    assert_null(d.nodes);
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

static void accept_doc(const char *s)
{
    struct json_doc d;

    if (parse(&d, s) != JSON_OK)
        fail_msg("%s: refused at %zu: %s", s, d.err_at, d.why);
    json_free(&d);
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

static void test_valid(void **state)
{
    static const char *const ok[] = {
        "{}",
        "[]",
        " \t\r\n{ } ",
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1.5e+3",
        "-12.25E-2",
        "\"\"",
        "[1,\"a\",[],{},null]",
        "{\"a\":{\"b\":[true,false]}}",
        "\"\\u00e9\\u20AC\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]",
        "{\"a\":1,\"A\":2,\"a \":3}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        accept_doc(ok[i]);
}

static void test_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "[1 2]",
        "{} {}",
        "{}x",
        "nul",
        "True",
        "NaN",
        "Infinity",
        "-",
        "01",
        "+1",
        ".5",
        "1.",
        "1e",
        "1e+",
        "0x10",
        "--1",
        "\"abc",
        "\"a\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "\"\xc0\xaf\"",
        "\"\xe0\x80\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xff\"",
        "\"\xc3\"",
        "\"\x80\"",
        "\xef\xbb\xbf{}",
        "{\"a\":1 \"b\":2}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refuse(bad[i], JSON_ERR_SYNTAX);
    /* A NUL inside counts as a byte, not an end. */
    {
        struct json_doc d;

        assert_int_equal(json_parse(&d, "[1]\0", 4, 16, MEM_AUTH),
                         JSON_ERR_SYNTAX);
        assert_string_equal(d.why, "trailing bytes");
        assert_int_equal(d.err_at, 3);
    }
}

static void test_layout(void **state)
{
    struct json_doc d;
    size_t v, a, e;

    (void)state;
    assert_int_equal(parse(&d, "{\"x\":[1,{\"y\":null},\"s\"],\"z\":true}"),
                     JSON_OK);
    assert_int_equal(json_at(&d, 0)->type, JSON_OBJECT);
    assert_int_equal(json_at(&d, 0)->count, 2);
    assert_int_equal(json_at(&d, 0)->end, d.n_nodes);
    a = json_get(&d, 0, "x", 1);
    assert_int_equal(json_at(&d, a)->type, JSON_ARRAY);
    assert_int_equal(json_at(&d, a)->count, 3);
    e = json_first(&d, a);
    assert_true(json_at(&d, e)->v.num == 1.0);
    e = json_next(&d, a, e);
    assert_int_equal(json_at(&d, e)->type, JSON_OBJECT);
    assert_int_equal(json_at(&d, json_get(&d, e, "y", 1))->type, JSON_NULL);
    v = e;
    e = json_next(&d, a, e);
    assert_int_equal(json_at(&d, e)->type, JSON_STRING);
    assert_string_equal(json_str(&d, e), "s");
    assert_int_equal(json_next(&d, a, e), JSON_NONE);
    assert_int_equal(json_first(&d, json_get(&d, v, "y", 1)), JSON_NONE);
    v = json_get(&d, 0, "z", 1);
    assert_int_equal(json_at(&d, v)->type, JSON_TRUE);
    assert_int_equal(json_get(&d, 0, "q", 1), JSON_NONE);
    assert_int_equal(json_get(&d, a, "x", 1), JSON_NONE); /* not an object */
    json_free(&d);
    json_free(&d); /* harmless twice */
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

static void test_strings(void **state)
{
    struct json_doc d;

    (void)state;
    assert_int_equal(parse(&d, "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\","
                               "\"\\u0041\\u00e9\\u20ac\\ud83d\\ude00\","
                               "\"a\\u0000b\"]"),
                     JSON_OK);
    assert_int_equal(json_at(&d, 1)->len, 8);
    assert_memory_equal(json_str(&d, 1), "\"\\/\b\f\n\r\t", 9);
    assert_string_equal(json_str(&d, 2),
                        "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_int_equal(json_at(&d, 3)->len, 3);
    assert_memory_equal(json_str(&d, 3), "a\0b", 4);
    json_free(&d);
    /* Names are compared decoded: "\u0061" and "a" are one name. */
    refuse("{\"a\":1,\"\\u0061\":2}", JSON_ERR_DUPLICATE);
    refuse("{\"a\\u0000\":1,\"a\\u0000\":2}", JSON_ERR_DUPLICATE);
    accept_doc("{\"a\\u0000\":1,\"a\":2}");
}

static void test_numbers(void **state)
{
    struct json_doc d;

    (void)state;
    assert_int_equal(parse(&d, "[0,-0,1700000000,1.9,-1.5e2,1e400,12e-1]"),
                     JSON_OK);
    assert_true(json_at(&d, 1)->v.num == 0.0);
    assert_true(json_at(&d, 3)->v.num == 1700000000.0);
    assert_true(json_at(&d, 4)->v.num == 1.9);
    assert_true(json_at(&d, 5)->v.num == -150.0);
    assert_true(json_at(&d, 6)->v.num > 1e308); /* inf */
    assert_true(json_at(&d, 7)->v.num == 1.2);
    json_free(&d);
    /* A number at the very end, the copy's NUL in the spare byte. */
    assert_int_equal(parse(&d, "123456789"), JSON_OK);
    assert_true(json_at(&d, 0)->v.num == 123456789.0);
    json_free(&d);
}

static void test_limits(void **state)
{
    char buf[32 * (JSON_MAX_MEMBERS + 2)];
    struct json_doc d;
    size_t i, w = 0;

    (void)state;
    /* 16 levels pass, 17 do not. */
    refuse("[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]", JSON_ERR_DEPTH);
    refuse("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
           "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}"
           "}}}}}}}}}",
           JSON_ERR_DEPTH);
    assert_int_equal(json_parse(&d, "[[1]]", 5, 1, MEM_AUTH), JSON_ERR_DEPTH);
    assert_int_equal(json_parse(&d, "[1]", 3, 1, MEM_AUTH), JSON_OK);
    json_free(&d);
    assert_int_equal(json_parse(&d, "1", 1, 0, MEM_AUTH), JSON_OK);
    json_free(&d);
    /* JSON_MAX_MEMBERS members pass, one more does not. */
    buf[w++] = '{';
    for (i = 0; i < JSON_MAX_MEMBERS; i++)
        w += (size_t)sprintf(buf + w, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    buf[w] = '}';
    assert_int_equal(json_parse(&d, buf, w + 1, 16, MEM_AUTH), JSON_OK);
    assert_int_equal(json_at(&d, 0)->count, JSON_MAX_MEMBERS);
    assert_int_equal(json_at(&d, json_get(&d, 0, "k255", 4))->v.num, 255);
    json_free(&d);
    w += (size_t)sprintf(buf + w, ",\"k%d\":0}", JSON_MAX_MEMBERS);
    assert_int_equal(json_parse(&d, buf, w, 16, MEM_AUTH), JSON_ERR_LIMIT);
    /* Arrays have no such limit. */
    w = 0;
    buf[w++] = '[';
    for (i = 0; i < 1000; i++) {
        buf[w++] = '0';
        buf[w++] = ',';
    }
    buf[w - 1] = ']';
    assert_int_equal(json_parse(&d, buf, w, 16, MEM_AUTH), JSON_OK);
    assert_int_equal(json_at(&d, 0)->count, 1000);
    json_free(&d);
    /* Duplicates in nested objects too; not across objects. */
    refuse("{\"a\":{\"b\":1,\"b\":1}}", JSON_ERR_DUPLICATE);
    refuse("{\"a\":1,\"b\":{},\"a\":2}", JSON_ERR_DUPLICATE);
    accept_doc("{\"a\":{\"a\":1},\"b\":{\"a\":1}}");
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

static void test_fail_every_allocation(void **state)
{
    const char *s = "{\"a\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18],"
                    "\"b\":{\"c\":\"d\"}}";
    struct json_doc d;
    enum json_error e;
    uint64_t n;

    (void)state;
    for (n = 1;; n++) {
        mem_fail_at(n);
        e = json_parse(&d, s, strlen(s), 16, MEM_AUTH);
        if (!mem_fail_fired()) {
            assert_int_equal(e, JSON_OK);
            json_free(&d);
            break;
        }
        assert_int_equal(e, JSON_ERR_NO_MEMORY);
        assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
    }
    mem_fail_at(0);
    assert_true(n > 2); /* the strings, then the nodes, then their growth */
    assert_int_equal(mem_live_bytes(MEM_AUTH), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_fail_every_allocation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
