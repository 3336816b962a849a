/*
 * test_buf.c - unit tests for buf.c: exact-size carries (save, replace,
 * aliasing, release, failure), the padded read buffer, and the sbuf
 * builder (growth, cap, printf, JSON escaping, take, fail-at-N), and the
 * JSON escape itself (into a buffer, a stream).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"

static int64_t live_count(enum mem_tag tag)
{
    struct mem_tag_stats st;

    mem_stats(tag, &st);
    return st.live_count;
}

/* A carry holds sizeof(struct carry) + n bytes, and no more than the
 * allocator's own rounding on top. */
static void assert_carry_exact(const struct carry *c, size_t n)
{
    int64_t live = mem_live_bytes(MEM_CARRY);

    assert_non_null(c);
    assert_int_equal(c->len, n);
    assert_int_equal(live, malloc_usable_size((void *)c));
    assert_true(live >= (int64_t)(sizeof(*c) + n));
    assert_true(live < (int64_t)(sizeof(*c) + n + 32));
    assert_int_equal(live_count(MEM_CARRY), 1);
}

static void test_carry_save_replace_release(void **state)
{
    uint8_t bytes[300];
    struct carry *c = NULL;
    size_t i;

    for (i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)(i * 7);

    assert_int_equal(carry_save(&c, bytes, 10), 0);
    assert_carry_exact(c, 10);
    assert_memory_equal(c->data, bytes, 10);

    /* Replacing frees the old one: still one block, of the new size. */
    assert_int_equal(carry_save(&c, bytes, 300), 0);
    assert_carry_exact(c, 300);
    assert_memory_equal(c->data, bytes, 300);

    assert_int_equal(carry_save(&c, bytes + 5, 3), 0);
    assert_carry_exact(c, 3);
    assert_memory_equal(c->data, bytes + 5, 3);

    carry_release(&c);
    assert_null(c);
    carry_release(&c);
    assert_null(c);
    assert_int_equal(mem_live_bytes(MEM_CARRY), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* The read path saves the unconsumed suffix of what it carried: the source
 * lies inside the old carry. */
static void test_carry_save_from_itself(void **state)
{
    struct carry *c = NULL;

    assert_int_equal(carry_save(&c, (const uint8_t *)"0123456789", 10), 0);
    assert_int_equal(carry_save(&c, c->data + 6, 4), 0);
    assert_carry_exact(c, 4);
    assert_memory_equal(c->data, "6789", 4);
    carry_release(&c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_carry_zero_frees(void **state)
{
    struct carry *c = NULL;

    assert_int_equal(carry_save(&c, (const uint8_t *)"abc", 0), 0);
    assert_null(c);
    assert_int_equal(carry_save(&c, (const uint8_t *)"abc", 3), 0);
    assert_int_equal(carry_save(&c, NULL, 0), 0);
    assert_null(c);
    assert_int_equal(live_count(MEM_CARRY), 0);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_carry_failure_keeps_old(void **state)
{
    struct carry *c = NULL, *old;

    assert_int_equal(carry_save(&c, (const uint8_t *)"keep", 4), 0);
    old = c;
    mem_fail_at(1);
    assert_int_equal(carry_save(&c, (const uint8_t *)"new bytes", 9), -ENOMEM);
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    assert_ptr_equal(c, old);
    assert_carry_exact(c, 4);
    assert_memory_equal(c->data, "keep", 4);
    carry_release(&c);

    /* From empty, a failure leaves it empty. */
    mem_fail_at(1);
    assert_int_equal(carry_save(&c, (const uint8_t *)"x", 1), -ENOMEM);
    mem_fail_at(0);
    assert_null(c);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* An abuf grows as bytes arrive: doubling from 256, never past max,
 * and a failed append leaves it as it was. */
static void test_abuf(void **state)
{
    struct abuf *b = NULL;
    uint8_t chunk[300];

    (void)state;
    memset(chunk, 'a', sizeof(chunk));
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 10, 1000), 0);
    assert_int_equal(b->len, 10);
    assert_int_equal(b->cap, 256);
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 300, 1000), 0);
    assert_int_equal(b->len, 310);
    assert_int_equal(b->cap, 512);
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 300, 1000), 0);
    assert_int_equal(b->cap, 1000); /* capped at max, not 1024 */
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 300, 1000), 0);
    assert_int_equal(b->len, 910);
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 300, 1000), -ENOBUFS);
    assert_int_equal(b->len, 910);
    assert_memory_equal(b->data + 600, chunk, 300);
    /* A higher max: 910 + 300 must grow, and a failed growth changes
     * nothing. */
    mem_fail_at(1);
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 300, 100000), -ENOMEM);
    assert_true(mem_fail_fired());
    mem_fail_at(0);
    assert_int_equal(b->len, 910);
    assert_int_equal(b->cap, 1000);
    assert_int_equal(abuf_append(&b, MEM_MSG, chunk, 300, 100000), 0);
    assert_int_equal(b->cap, 2000);
    abuf_free(&b, MEM_MSG);
    assert_null(b);
    abuf_free(&b, MEM_MSG);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_readbuf(void **state)
{
    struct readbuf rb;

    assert_int_equal(readbuf_init(&rb, 4096), 0);
    assert_int_equal(rb.size, 4096);
    assert_non_null(rb.data);
    assert_true(mem_live_bytes(MEM_READBUF) >= 4096 + 64);
    /* The padding is part of the block (ASan would object otherwise) and
     * zeroed. */
    assert_int_equal(rb.data[4096 + 63], 0);
    memset(rb.data, 0xff, 4096 + 64);
    readbuf_fini(&rb);
    assert_null(rb.data);
    assert_int_equal(rb.size, 0);
    readbuf_fini(&rb);
    assert_int_equal(mem_live_bytes(MEM_READBUF), 0);

    mem_fail_at(1);
    assert_int_equal(readbuf_init(&rb, 4096), -ENOMEM);
    mem_fail_at(0);
    assert_null(rb.data);
    assert_int_equal(rb.size, 0);
    assert_int_equal(readbuf_init(&rb, SIZE_MAX - 10), -ENOMEM);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sbuf_growth(void **state)
{
    char chunk[300];
    struct sbuf s;
    size_t i;

    memset(chunk, 'a', sizeof(chunk));
    sbuf_init(&s, MEM_HTTP, 1 << 20);
    assert_int_equal(s.cap, 0);
    assert_int_equal(mem_live_bytes(MEM_HTTP), 0);

    assert_int_equal(sbuf_append(&s, "x", 1), 0);
    assert_int_equal(s.cap, 256);
    assert_int_equal(sbuf_append(&s, chunk, 255), 0);
    assert_int_equal(s.cap, 256);
    assert_int_equal(sbuf_append(&s, "y", 1), 0);
    assert_int_equal(s.cap, 512);
    assert_int_equal(sbuf_append(&s, chunk, 300), 0);
    assert_int_equal(s.cap, 1024);
    assert_int_equal(s.len, 557);
    /* One jump past several doublings. */
    for (i = 0; i < 20; i++)
        assert_int_equal(sbuf_append(&s, chunk, 300), 0);
    assert_int_equal(s.len, 6557);
    assert_int_equal(s.cap, 8192);
    assert_int_equal(s.data[0], 'x');
    assert_int_equal(s.data[256], 'y');
    assert_int_equal(mem_live_bytes(MEM_HTTP), malloc_usable_size(s.data));
    assert_int_equal(live_count(MEM_HTTP), 1);

    /* Empty appends allocate nothing and always succeed. */
    assert_int_equal(sbuf_append(&s, NULL, 0), 0);
    sbuf_fini(&s);
    assert_null(s.data);
    assert_int_equal(s.len, 0);
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sbuf_cap(void **state)
{
    char chunk[600];
    struct sbuf s;

    memset(chunk, 'b', sizeof(chunk));
    sbuf_init(&s, MEM_METRICS, 1000);
    assert_int_equal(sbuf_append(&s, chunk, 600), 0);
    assert_int_equal(s.cap, 1000);
    assert_int_equal(sbuf_append(&s, chunk, 400), 0);
    assert_int_equal(s.len, 1000);
    /* Past the cap: refused, builder unchanged. */
    assert_int_equal(sbuf_append(&s, "z", 1), -ENOBUFS);
    assert_int_equal(sbuf_puts(&s, "z"), -ENOBUFS);
    assert_int_equal(sbuf_printf(&s, "%d", 1), -ENOBUFS);
    assert_int_equal(sbuf_json_str(&s, "", 0), -ENOBUFS);
    assert_int_equal(s.len, 1000);
    assert_int_equal(s.cap, 1000);
    assert_int_equal(s.data[999], 'b');
    sbuf_fini(&s);

    /* A single append larger than the cap, from empty. */
    sbuf_init(&s, MEM_METRICS, 100);
    assert_int_equal(sbuf_append(&s, chunk, 101), -ENOBUFS);
    assert_null(s.data);
    assert_int_equal(sbuf_append(&s, chunk, 100), 0);
    assert_int_equal(s.cap, 100);
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sbuf_nomem_unchanged(void **state)
{
    struct sbuf s;
    char chunk[300];

    memset(chunk, 'c', sizeof(chunk));
    sbuf_init(&s, MEM_HTTP, 1 << 20);
    assert_int_equal(sbuf_puts(&s, "hello"), 0);

    mem_fail_at(1);
    assert_int_equal(sbuf_append(&s, chunk, 300), -ENOMEM);
    assert_true(mem_fail_fired());
    mem_fail_at(1);
    assert_int_equal(sbuf_printf(&s, "%0300d", 7), -ENOMEM);
    mem_fail_at(1);
    assert_int_equal(sbuf_json_str(&s, chunk, 300), -ENOMEM);
    mem_fail_at(0);

    assert_int_equal(s.len, 5);
    assert_int_equal(s.cap, 256);
    assert_memory_equal(s.data, "hello", 5);
    assert_int_equal(live_count(MEM_HTTP), 1);
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sbuf_printf(void **state)
{
    struct sbuf s;
    size_t i;

    sbuf_init(&s, MEM_HTTP, 1 << 20);
    assert_int_equal(sbuf_printf(&s, "%s=%d;", "a", 1), 0);
    assert_int_equal(sbuf_printf(&s, "%s", ""), 0);
    assert_int_equal(sbuf_printf(&s, "%05u", 42u), 0);
    assert_int_equal(s.len, 9);
    assert_memory_equal(s.data, "a=1;00042", 9);

    /* Forces growth from inside printf. */
    assert_int_equal(sbuf_printf(&s, "[%01000d]", 5), 0);
    assert_int_equal(s.len, 9 + 1002);
    assert_int_equal(s.data[9], '[');
    assert_int_equal(s.data[9 + 1000], '5');
    assert_int_equal(s.data[9 + 1001], ']');
    for (i = 10; i < 9 + 1000; i++)
        assert_int_equal(s.data[i], '0');
    sbuf_fini(&s);

    /* Exactly up to the cap: the NUL vsnprintf wants is not counted. */
    sbuf_init(&s, MEM_HTTP, 10);
    assert_int_equal(sbuf_printf(&s, "%s", "0123"), 0);
    assert_int_equal(sbuf_printf(&s, "%s", "456789"), 0);
    assert_int_equal(s.len, 10);
    assert_memory_equal(s.data, "0123456789", 10);
    assert_int_equal(sbuf_printf(&s, "%s", "x"), -ENOBUFS);
    assert_int_equal(s.len, 10);
    sbuf_fini(&s);

    /* The exact-fit path allocates scratch; its failure changes nothing. */
    sbuf_init(&s, MEM_HTTP, 4);
    mem_fail_at(2);
    assert_int_equal(sbuf_printf(&s, "%s", "abcd"), -ENOMEM);
    mem_fail_at(0);
    assert_int_equal(s.len, 0);
    assert_int_equal(sbuf_printf(&s, "%s", "abcd"), 0);
    assert_memory_equal(s.data, "abcd", 4);
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sbuf_json_str(void **state)
{
    static const char in[] = "a\"b\\c\nd\re\tf\bg\fh\x01i\x1fj\xc3\xa9k/";
    static const char want[] = "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i"
                               "\\u001fj\xc3\xa9k/\"";
    struct sbuf s;

    sbuf_init(&s, MEM_HTTP, 1 << 16);
    assert_int_equal(sbuf_json_str(&s, in, sizeof(in) - 1), 0);
    assert_int_equal(s.len, sizeof(want) - 1);
    assert_memory_equal(s.data, want, sizeof(want) - 1);
    sbuf_fini(&s);

    /* n counts bytes: an embedded NUL is escaped, not an end. */
    sbuf_init(&s, MEM_HTTP, 1 << 16);
    assert_int_equal(sbuf_json_str(&s, "x\0y", 3), 0);
    assert_int_equal(sbuf_json_str(&s, "", 0), 0);
    assert_int_equal(s.len, 12);
    assert_memory_equal(s.data, "\"x\\u0000y\"\"\"", 12);
    sbuf_fini(&s);

    /* All or nothing at the cap. */
    sbuf_init(&s, MEM_HTTP, 8);
    assert_int_equal(sbuf_json_str(&s, "abc\n", 4), 0); /* 7 bytes */
    assert_int_equal(sbuf_json_str(&s, "", 0), -ENOBUFS);
    assert_int_equal(s.len, 7);
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* json_escape(): snprintf's contract, and an escape is never cut. */
static void test_json_escape(void **state)
{
    char out[32];

    /* Measuring writes nothing. */
    assert_int_equal(json_escape(NULL, 0, "a\"\x01", 3), 1 + 2 + 6);
    assert_int_equal(json_escape(NULL, 0, "", 0), 0);

    memset(out, '#', sizeof(out));
    assert_int_equal(json_escape(out, sizeof(out), "a\"\x01", 3), 9);
    assert_memory_equal(out, "a\\\"\\u0001#", 10);

    /* Cut inside the \" escape: only "a" is written, the rest measured. */
    memset(out, '#', sizeof(out));
    assert_int_equal(json_escape(out, 2, "a\"b", 3), 4);
    assert_memory_equal(out, "a##", 3);

    /* Cut inside \u0001: nothing after it either, even if it would fit. */
    memset(out, '#', sizeof(out));
    assert_int_equal(json_escape(out, 5,
                                 "\x01"
                                 "b",
                                 2),
                     7);
    assert_memory_equal(out, "######", 6);

    /* Exactly full. */
    assert_int_equal(json_escape(out, 4, "ab\n", 3), 4);
    assert_memory_equal(out, "ab\\n", 4);
}

/* The stream writers give the bytes sbuf_json_str() gives, also past the
 * writer's internal chunk. */
static void test_json_fput(void **state)
{
    char in[300], *text = NULL;
    size_t text_len = 0;
    struct sbuf s;
    FILE *f;

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)(i % 3 == 0 ? '\n' : i % 3 == 1 ? '\x02' : 'z');
    sbuf_init(&s, MEM_HTTP, 1 << 16);
    assert_int_equal(sbuf_json_str(&s, in, sizeof(in)), 0);

    f = open_memstream(&text, &text_len);
    assert_non_null(f);
    json_fput_str(f, in, sizeof(in));
    fputc('|', f);
    json_fput_escaped(f, "q\"", 2);
    assert_int_equal(fclose(f), 0);

    assert_int_equal(text_len, s.len + 1 + 3);
    assert_memory_equal(text, s.data, s.len);
    assert_memory_equal(text + s.len, "|q\\\"", 4);
    free(text); /* from open_memstream(), not ours */
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void test_sbuf_take(void **state)
{
    struct sbuf s;
    uint8_t *p;
    size_t len = 99;

    sbuf_init(&s, MEM_HTTP, 1 << 16);
    assert_null(sbuf_take(&s, &len));
    assert_int_equal(len, 0);

    assert_int_equal(sbuf_puts(&s, "GET / HTTP/1.1\r\n"), 0);
    p = sbuf_take(&s, &len);
    assert_non_null(p);
    assert_int_equal(len, 16);
    assert_memory_equal(p, "GET / HTTP/1.1\r\n", 16);
    assert_null(s.data);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.cap, 0);
    /* The builder is reusable, the detached bytes still accounted. */
    assert_true(mem_live_bytes(MEM_HTTP) > 0);
    assert_int_equal(sbuf_puts(&s, "again"), 0);
    assert_int_equal(live_count(MEM_HTTP), 2);
    sbuf_fini(&s);
    mem_free(MEM_HTTP, p);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Builds a small document the way callers do; on any error frees it. */
static int build_doc(struct sbuf *s)
{
    int rc;

    sbuf_init(s, MEM_METRICS, 1 << 20);
    rc = sbuf_puts(s, "{\"k\":");
    if (!rc)
        rc = sbuf_json_str(s, "v\n", 2);
    if (!rc)
        rc = sbuf_printf(s, ",\"pad\":\"%0600d\"", 0);
    if (!rc)
        rc = sbuf_printf(s, ",\"n\":%d}", 12);
    if (rc)
        sbuf_fini(s);
    return rc;
}

static void test_sbuf_fail_at_every_n(void **state)
{
    struct sbuf s;
    uint64_t n;
    int rc;

    for (n = 1;; n++) {
        mem_fail_at(n);
        rc = build_doc(&s);
        if (!mem_fail_fired())
            break;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(mem_live_bytes(MEM_ALL), 0);
    }
    mem_fail_at(0);
    assert_int_equal(rc, 0);
    assert_true(n > 1);
    assert_int_equal(s.len, strlen("{\"k\":\"v\\n\",\"pad\":\"\"") + 600 +
                                strlen(",\"n\":12}"));
    assert_memory_equal(s.data + s.len - 8, ",\"n\":12}", 8);
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_carry_save_replace_release),
        cmocka_unit_test(test_carry_save_from_itself),
        cmocka_unit_test(test_carry_zero_frees),
        cmocka_unit_test(test_carry_failure_keeps_old),
        cmocka_unit_test(test_abuf),
        cmocka_unit_test(test_readbuf),
        cmocka_unit_test(test_sbuf_growth),
        cmocka_unit_test(test_sbuf_cap),
        cmocka_unit_test(test_sbuf_nomem_unchanged),
        cmocka_unit_test(test_sbuf_printf),
        cmocka_unit_test(test_sbuf_json_str),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_fput),
        cmocka_unit_test(test_sbuf_take),
        cmocka_unit_test(test_sbuf_fail_at_every_n),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
