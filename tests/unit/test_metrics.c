/*
 * test_metrics.c - unit tests for metrics.c: the Prometheus exposition
 * (every family has HELP then TYPE, once; every sample belongs to a
 * declared family; counters end in _total; values parse; label values come
 * from the fixed tables), sums over several loops, specific counter lines
 * after real HTTP traffic, a page cap too small (-ENOBUFS) and every
 * allocation failing in turn (-ENOMEM) without leaks, and the /debug/mem
 * JSON (checked by a small strict JSON parser), with and without trace
 * mode.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "buf.h"
#include "conn.h"
#include "http_server.h"
#include "listen.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "metrics.h"
#include "util.h"

/* ---- fixture: two loops' worth of counters ------------------------------ */

struct env {
    struct loop *l;
    struct conn_set set[2];
    struct http_server *srv;
    struct listener *ls;
    struct metrics_view v;
};

static void h_ok(struct http_exchange *ex, void *arg)
{
    (void)arg;
    http_respond(ex, 200, "text/plain", NULL, "ok\n", 3);
}

static void on_accept(struct listener *ls, int fd, const struct sockaddr *peer,
                      void *arg)
{
    (void)ls;
    (void)peer;
    (void)arg;
    close(fd);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sends a few requests through a real HTTP conn so the http counters move:
 * two 200s and a 404 on one conn. */
static void drive_http(struct env *e)
{
    static const char reqs[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    const struct http_stats *st = http_server_stats(e->srv);
    uint64_t dl = now_ms() + 2000;
    char sink[4096];
    int sv[2];

    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
    assert_int_equal(http_server_accept(e->srv, sv[0], NULL), 0);
    assert_int_equal(write(sv[1], reqs, sizeof(reqs) - 1),
                     (ssize_t)sizeof(reqs) - 1);
    while (st->requests < 3 && now_ms() < dl)
        assert_int_equal(loop_run_once(e->l, 5), 0);
    assert_int_equal(st->requests, 3);
    while (read(sv[1], sink, sizeof(sink)) > 0)
        ;
    close(sv[1]); /* the conn sees EOF: closed{peer_closed} */
    dl = now_ms() + 2000;
    while (e->set[0].stats.open && now_ms() < dl)
        assert_int_equal(loop_run_once(e->l, 5), 0);
    assert_int_equal(e->set[0].stats.open, 0);
}

/* The env a test holds open; a failed assertion leaves it behind. */
static struct env *live_env;

static void env_open(struct env *e)
{
    struct conn_limits lim = {.write_timeout_ms = 1000,
                              .queue_limit = 1u << 20};
    struct http_server_opts o = {
        .lim = {.max_header_bytes = 8192, .max_headers = 64, .max_body = 1024},
        .header_timeout_ms = 1000,
        .body_timeout_ms = 1000,
        .idle_timeout_ms = 1000,
        .linger_timeout_ms = 100,
    };
    struct listen_opts lo = {.max_conns = 10};
    int err = 0;

    memset(e, 0, sizeof(*e));
    e->l = loop_new(16384);
    assert_non_null(e->l);
    assert_int_equal(conn_set_init(&e->set[0], e->l, &lim), 0);
    assert_int_equal(conn_set_init(&e->set[1], e->l, &lim), 0);
    live_env = e;
    e->srv = http_server_new(&e->set[0], &o);
    assert_non_null(e->srv);
    assert_int_equal(http_server_route(e->srv, "/healthz", false,
                                       HTTP_M(HTTP_GET), h_ok, NULL),
                     0);
    e->ls = listener_new(e->l, &e->set[0], "127.0.0.1", 0, &lo, on_accept, NULL,
                         &err);
    assert_non_null(e->ls);
    drive_http(e);

    /* Counters set by hand, split over the two "loops" to check sums. */
    e->set[0].stats.closed[CLOSE_IDLE_TIMEOUT] = 3;
    e->set[1].stats.closed[CLOSE_IDLE_TIMEOUT] = 4;
    e->set[1].stats.closed[CLOSE_SLOW_CONSUMER] = 5;
    e->set[1].stats.accepted = 10; /* + 1 real one in set[0] */
    e->set[1].stats.by_state[CSTATE_IDLE] = 6;
    e->set[1].stats.paused_total[0] = 8;
    e->set[1].stats.queued_bytes = 4096;
    e->set[1].stats.bytes_in = 1ull << 40; /* large values print exactly */

    e->v.n_loops = 2;
    e->v.loops[0].conns = &e->set[0];
    e->v.loops[0].listeners[0] = e->ls;
    e->v.loops[0].http = e->srv;
    e->v.loops[1].conns = &e->set[1]; /* no listener, no http here */
    e->v.start_wall_ms = 1700000000123ull;
}

static void env_close(struct env *e)
{
    live_env = NULL;
    /* Hand-set gauges go back to what the sets really hold. */
    e->set[1].stats.by_state[CSTATE_IDLE] = 0;
    e->set[1].stats.queued_bytes = 0;
    assert_int_equal(loop_run_once(e->l, 0), 0);
    listener_free(e->ls);
    http_server_free(e->srv);
    conn_set_fini(&e->set[0]);
    conn_set_fini(&e->set[1]);
    loop_free(e->l);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

static void close_one(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, CLOSE_SHUTDOWN);
}

/* Runs before every test: frees what a failed test left open, so one
 * failure is reported once instead of as a leak in every later test. */
static int leftover_setup(void **state)
{
    struct env *e = live_env;

    (void)state;
    mem_fail_at(0);
    if (!e)
        return 0;
    live_env = NULL;
    for (int i = 0; i < 2; i++)
        conn_set_each(&e->set[i], close_one, NULL);
    loop_run_once(e->l, 0);
    listener_free(e->ls);
    http_server_free(e->srv);
    conn_set_fini(&e->set[0]);
    conn_set_fini(&e->set[1]);
    loop_free(e->l);
    return 0;
}

/* ---- exposition checks -------------------------------------------------- */

/* Copies s.data into a NUL-terminated static page. */
static const char *page_of(const struct sbuf *s)
{
    static char page[METRICS_PAGE_MAX + 1];

    assert_true(s->len < sizeof(page));
    memcpy(page, s->data, s->len);
    page[s->len] = '\0';
    return page;
}

static bool has_line(const char *page, const char *line)
{
    size_t n = strlen(line);
    const char *p = page;

    while ((p = strstr(p, line))) {
        if ((p == page || p[-1] == '\n') && p[n] == '\n')
            return true;
        p += n;
    }
    return false;
}

static bool name_char(char c, bool first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

#define MAX_FAMILIES 128

/* Checks the whole page line by line (format 0.0.4):
 *  - "# HELP name text" is followed at once by "# TYPE name counter|gauge";
 *  - a family is declared once; its samples follow its TYPE line;
 *  - a counter's name ends in _total;
 *  - a sample is name[{label="value"}] value, where the name is the
 *    current family's, the label value holds no quote, backslash or
 *    newline, and the value parses fully as a number;
 *  - the page ends with a newline.
 * Returns the number of families. */
static int check_exposition(const char *page)
{
    static char families[MAX_FAMILIES][96];
    int n_fam = 0;
    char cur[96] = "";
    bool hist = false;
    const char *p = page;

    assert_true(strlen(page) > 0);
    assert_int_equal(page[strlen(page) - 1], '\n');
    while (*p) {
        const char *eol = strchr(p, '\n');
        char line[512];
        size_t len;

        assert_non_null(eol);
        len = (size_t)(eol - p);
        assert_true(len > 0 && len < sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p = eol + 1;

        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[96], tline[160], type[16];
            const char *teol = strchr(p, '\n');
            size_t tl;

            assert_int_equal(sscanf(line + 7, "%95s", name), 1);
            assert_true(strlen(line) > 7 + strlen(name) + 1); /* has text */
            for (int i = 0; i < n_fam; i++)
                if (strcmp(families[i], name) == 0)
                    fail_msg("family %s declared twice", name);
            assert_true(n_fam < MAX_FAMILIES);
            strcpy(families[n_fam++], name);
            strcpy(cur, name);
            /* TYPE follows at once. */
            assert_non_null(teol);
            tl = (size_t)(teol - p);
            assert_true(tl < sizeof(tline));
            memcpy(tline, p, tl);
            tline[tl] = '\0';
            p = teol + 1;
            snprintf(line, sizeof(line), "# TYPE %s ", name);
            assert_true(strncmp(tline, line, strlen(line)) == 0);
            strcpy(type, tline + strlen(line));
            if (strcmp(type, "counter") == 0) {
                size_t nl = strlen(name);
                if (nl < 6 || strcmp(name + nl - 6, "_total") != 0)
                    fail_msg("counter %s does not end in _total", name);
            } else if (strcmp(type, "histogram") == 0) {
                hist = true;
            } else if (strcmp(type, "gauge") != 0) {
                fail_msg("family %s has type %s", name, type);
            }
            if (strcmp(type, "histogram") != 0)
                hist = false;
            continue;
        }
        assert_true(line[0] != '#');
        /* A sample of the current family. */
        {
            size_t i = 0;
            const char *val;
            char *end;

            assert_true(cur[0] != '\0');
            while (name_char(line[i], i == 0))
                i++;
            assert_true(i > 0);
            /* A histogram's samples are NAME_bucket{le=...}, NAME_sum
             * and NAME_count. */
            if (hist && i > strlen(cur) &&
                strncmp(line, cur, strlen(cur)) == 0 &&
                (strncmp(line + strlen(cur), "_bucket", i - strlen(cur)) == 0 ||
                 strncmp(line + strlen(cur), "_sum", i - strlen(cur)) == 0 ||
                 strncmp(line + strlen(cur), "_count", i - strlen(cur)) == 0)) {
                /* a histogram sample */
            } else if (i != strlen(cur) || strncmp(line, cur, i) != 0) {
                fail_msg("sample '%s' outside its family %s", line, cur);
            }
            if (line[i] == '{') {
                const char *close = strchr(line + i, '}');
                const char *q1, *q2;

                assert_non_null(close);
                /* name="value" pairs, comma-separated. */
                q2 = line + i;
                do {
                    q1 = strchr(q2 + 1, '"');
                    assert_non_null(q1);
                    assert_true(q1 < close);
                    assert_int_equal(q1[-1], '=');
                    q2 = strchr(q1 + 1, '"');
                    assert_non_null(q2);
                    for (const char *c = q1 + 1; c < q2; c++)
                        assert_true(*c != '\\' && *c != '\n' && *c != '"');
                } while (q2[1] == ',');
                assert_ptr_equal(q2 + 1, close);
                i = (size_t)(close - line) + 1;
            }
            assert_int_equal(line[i], ' ');
            val = line + i + 1;
            assert_true(*val != '\0');
            errno = 0;
            strtod(val, &end);
            assert_int_equal(errno, 0);
            assert_int_equal(*end, '\0');
        }
    }
    return n_fam;
}

static int render(struct env *e, struct sbuf *s)
{
    sbuf_init(s, MEM_METRICS, METRICS_PAGE_MAX);
    return metrics_render(s, &e->v);
}

/* ---- tests -------------------------------------------------------------- */

static void test_render_well_formed(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sbuf s;
    const char *page;
    int n;

    env_open(&e);
    assert_int_equal(render(&e, &s), 0);
    page = page_of(&s);
    n = check_exposition(page);
    assert_true(n >= 20);
    /* Every mem tag is listed in every mem family. */
    for (int t = 0; t < MEM_TAG_COUNT; t++) {
        static const char *const fams[] = {
            "moor_mem_live_bytes", "moor_mem_live_allocations",
            "moor_mem_allocations_total", "moor_mem_allocated_bytes_total",
            "moor_mem_failed_allocations_total"};
        for (size_t f = 0; f < ARRAY_SIZE(fams); f++) {
            char want[128];
            snprintf(want, sizeof(want), "\n%s{tag=\"%s\"} ", fams[f],
                     mem_tag_name((enum mem_tag)t));
            if (!strstr(page, want))
                fail_msg("missing %s", want + 1);
        }
    }
    /* Every close reason (but none), refusal, pause and state. */
    for (int r = 1; r < CLOSE_REASON_COUNT; r++) {
        char want[128];
        snprintf(want, sizeof(want), "\nmoor_closed_total{reason=\"%s\"} ",
                 close_reason_name((enum close_reason)r));
        assert_non_null(strstr(page, want));
    }
    assert_null(strstr(page, "reason=\"none\""));
    for (int r = 0; r < REFUSE_REASON_COUNT; r++) {
        char want[128];
        snprintf(want, sizeof(want), "moor_refused_total{reason=\"%s\"} 0",
                 refuse_reason_name((enum refuse_reason)r));
        assert_true(has_line(page, want));
    }
    for (int p = 0; p < ACCEPT_PAUSE_COUNT; p++) {
        char want[128];
        snprintf(want, sizeof(want),
                 "moor_accept_paused_total{reason=\"%s\"} 0",
                 accept_pause_name((enum accept_pause)p));
        assert_true(has_line(page, want));
    }
    for (int st = 0; st < CSTATE_COUNT; st++) {
        char want[128];
        snprintf(want, sizeof(want), "\nmoor_connections{state=\"%s\"} ",
                 conn_state_name((enum conn_state)st));
        assert_non_null(strstr(page, want));
    }
    for (unsigned i = 0; i < HTTP_REJECT_COUNT; i++) {
        char want[128];
        snprintf(want, sizeof(want),
                 "\nmoor_http_rejected_total{status=\"%d\"} ",
                 http_reject_code(i));
        assert_non_null(strstr(page, want));
    }
    sbuf_fini(&s);
    env_close(&e);
}

static void test_render_values(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sbuf s;
    const char *page;
    char want[128];

    env_open(&e);
    assert_int_equal(render(&e, &s), 0);
    page = page_of(&s);
    /* Summed over both loops. */
    assert_true(has_line(page, "moor_closed_total{reason=\"idle_timeout\"} 7"));
    assert_true(
        has_line(page, "moor_closed_total{reason=\"slow_consumer\"} 5"));
    assert_true(has_line(page, "moor_closed_total{reason=\"peer_closed\"} 1"));
    assert_true(
        has_line(page, "moor_closed_total{reason=\"write_timeout\"} 0"));
    assert_true(has_line(page, "moor_accepted_total 11"));
    assert_true(has_line(page, "moor_connections{state=\"idle\"} 6"));
    assert_true(has_line(page, "moor_connections{state=\"reading_header\"} 0"));
    assert_true(
        has_line(page, "moor_read_pauses_total{cause=\"backpressure\"} 8"));
    assert_true(has_line(page, "moor_queued_bytes 4096"));
    snprintf(want, sizeof(want), "moor_bytes_received_total %llu",
             (unsigned long long)(e.set[0].stats.bytes_in + (1ull << 40)));
    assert_true(e.set[0].stats.bytes_in > 0);
    assert_true(has_line(page, want));
    assert_true(has_line(page, "moor_loops 2"));
    assert_true(has_line(page, "moor_start_time_seconds 1700000000"));
    snprintf(want, sizeof(want), "moor_build_info{version=\"%s\"} 1",
             MOOR_VERSION);
    assert_true(has_line(page, want));
    /* From the real traffic. */
    assert_true(has_line(page, "moor_http_requests_total 3"));
    assert_true(has_line(page, "moor_http_responses_total{code=\"2xx\"} 2"));
    assert_true(has_line(page, "moor_http_responses_total{code=\"4xx\"} 1"));
    assert_true(has_line(page, "moor_http_rejected_total{status=\"404\"} 1"));
    assert_true(has_line(page, "moor_http_rejected_total{status=\"400\"} 0"));
    assert_true(has_line(page, "moor_mem_budget_bytes 0"));
    assert_true(has_line(page, "moor_mem_over_budget 0"));
    /* Live memory of a tag that is in use now is not zero. */
    assert_null(strstr(page, "\nmoor_mem_live_bytes{tag=\"metrics\"} 0\n"));
    assert_null(strstr(page, "\nmoor_mem_live_bytes{tag=\"loop\"} 0\n"));
    sbuf_fini(&s);
    env_close(&e);
}

/* An empty view (no loops) still renders a valid page. */
static void test_render_empty_view(void **state)
{
    struct metrics_view v;
    struct sbuf s;

    memset(&v, 0, sizeof(v));
    sbuf_init(&s, MEM_METRICS, METRICS_PAGE_MAX);
    assert_int_equal(metrics_render(&s, &v), 0);
    check_exposition(page_of(&s));
    assert_true(has_line(page_of(&s), "moor_loops 0"));
    assert_true(has_line(page_of(&s), "moor_accepted_total 0"));
    sbuf_fini(&s);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Any cap below the page size fails with -ENOBUFS; none leaks. */
static void test_render_cap_too_small(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sbuf s;
    size_t full;

    env_open(&e);
    assert_int_equal(render(&e, &s), 0);
    full = s.len;
    sbuf_fini(&s);
    for (size_t cap = 0; cap < full; cap += cap < 256 ? 37 : 997) {
        sbuf_init(&s, MEM_METRICS, cap);
        assert_int_equal(metrics_render(&s, &e.v), -ENOBUFS);
        assert_true(s.len <= cap);
        sbuf_fini(&s);
        assert_int_equal(mem_live_bytes(MEM_METRICS), 0);
    }
    env_close(&e);
}

static void test_render_alloc_failures(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sbuf s;
    uint64_t n;
    int rc;

    env_open(&e);
    for (n = 1; n < 100; n++) {
        sbuf_init(&s, MEM_METRICS, METRICS_PAGE_MAX);
        mem_fail_at(n);
        rc = metrics_render(&s, &e.v);
        if (!mem_fail_fired()) {
            mem_fail_at(0);
            assert_int_equal(rc, 0);
            check_exposition(page_of(&s));
            sbuf_fini(&s);
            break;
        }
        mem_fail_at(0);
        assert_int_equal(rc, -ENOMEM);
        sbuf_fini(&s);
        assert_int_equal(mem_live_bytes(MEM_METRICS), 0);
    }
    assert_true(n > 1 && n < 100);
    env_close(&e);
}

/* ---- a strict little JSON parser ---------------------------------------- */

struct json {
    const char *p;
    int depth;
};

static void j_ws(struct json *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r')
        j->p++;
}

static bool j_value(struct json *j);

/* Parses a string; copies up to cap-1 bytes of it (unescaped loosely). */
static bool j_string(struct json *j, char *out, size_t cap)
{
    size_t n = 0;

    if (*j->p != '"')
        return false;
    j->p++;
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p;

        if (c < 0x20 || c == '\0')
            return false;
        if (c == '\\') {
            j->p++;
            if (*j->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)j->p[i]))
                        return false;
                j->p += 4;
            } else if (!strchr("\"\\/bfnrt", *j->p) || !*j->p) {
                return false;
            }
        }
        if (out && n + 1 < cap)
            out[n++] = (char)*j->p;
        j->p++;
    }
    j->p++;
    if (out)
        out[n] = '\0';
    return true;
}

static bool j_number(struct json *j)
{
    const char *s = j->p;

    if (*j->p == '-')
        j->p++;
    if (!isdigit((unsigned char)*j->p))
        return false;
    if (*j->p == '0' && isdigit((unsigned char)j->p[1]))
        return false;
    while (isdigit((unsigned char)*j->p))
        j->p++;
    if (*j->p == '.') {
        j->p++;
        if (!isdigit((unsigned char)*j->p))
            return false;
        while (isdigit((unsigned char)*j->p))
            j->p++;
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-')
            j->p++;
        if (!isdigit((unsigned char)*j->p))
            return false;
        while (isdigit((unsigned char)*j->p))
            j->p++;
    }
    return j->p > s;
}

static bool j_object(struct json *j)
{
    j->p++;
    j_ws(j);
    if (*j->p == '}') {
        j->p++;
        return true;
    }
    for (;;) {
        j_ws(j);
        if (!j_string(j, NULL, 0))
            return false;
        j_ws(j);
        if (*j->p++ != ':')
            return false;
        if (!j_value(j))
            return false;
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p++ != '}')
            return false;
        return true;
    }
}

static bool j_array(struct json *j)
{
    j->p++;
    j_ws(j);
    if (*j->p == ']') {
        j->p++;
        return true;
    }
    for (;;) {
        if (!j_value(j))
            return false;
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p++ != ']')
            return false;
        return true;
    }
}

static bool j_value(struct json *j)
{
    bool ok;

    j_ws(j);
    if (++j->depth > 32)
        return false;
    if (*j->p == '{')
        ok = j_object(j);
    else if (*j->p == '[')
        ok = j_array(j);
    else if (*j->p == '"')
        ok = j_string(j, NULL, 0);
    else if (strncmp(j->p, "true", 4) == 0)
        ok = (j->p += 4, true);
    else if (strncmp(j->p, "false", 5) == 0)
        ok = (j->p += 5, true);
    else if (strncmp(j->p, "null", 4) == 0)
        ok = (j->p += 4, true);
    else
        ok = j_number(j);
    j->depth--;
    return ok;
}

/* True if s is exactly one JSON value (surrounding whitespace allowed). */
static bool json_valid(const char *s)
{
    struct json j = {.p = s};

    if (!j_value(&j))
        return false;
    j_ws(&j);
    return *j.p == '\0';
}

static void test_json_parser_itself(void **state)
{
    assert_true(json_valid("{\"a\":[1,-2.5e3,true,null,\"x\\n\"]}\n"));
    assert_false(json_valid("{\"a\":1,}"));
    assert_false(json_valid("{\"a\":01}"));
    assert_false(json_valid("{\"a\":1}}"));
    assert_false(json_valid("[1,2"));
    assert_false(json_valid("{\"a\":\"\n\"}"));
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* ---- /debug/mem --------------------------------------------------------- */

static const char *debug_mem_page(struct sbuf *s)
{
    static char page[1u << 20];

    sbuf_init(s, MEM_METRICS, sizeof(page) - 1);
    assert_int_equal(metrics_debug_mem(s), 0);
    assert_true(s->len < sizeof(page));
    memcpy(page, s->data, s->len);
    page[s->len] = '\0';
    return page;
}

static void check_debug_mem(const char *page, bool trace)
{
    assert_true(json_valid(page));
    assert_int_equal(page[0], '{');
    assert_int_equal(page[strlen(page) - 1], '\n');
    assert_non_null(strstr(page, "\"live_bytes\":"));
    assert_non_null(strstr(page, "\"rss_bytes\":"));
    assert_non_null(strstr(page, "\"budget_bytes\":0"));
    assert_non_null(strstr(page, "\"tags\":{"));
    assert_non_null(strstr(page, trace ? "\"trace_enabled\":true"
                                       : "\"trace_enabled\":false"));
    for (int t = 0; t < MEM_TAG_COUNT; t++) {
        char want[64];
        snprintf(want, sizeof(want),
                 "\"%s\":{\"live_bytes\":", mem_tag_name((enum mem_tag)t));
        if (!strstr(page, want))
            fail_msg("tag %s missing in %s", mem_tag_name(t), page);
    }
    if (trace)
        assert_non_null(strstr(page, "\"trace\":["));
    else
        assert_null(strstr(page, "\"trace\""));
}

static void test_debug_mem_json(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sbuf s;

    env_open(&e);
    check_debug_mem(debug_mem_page(&s), false);
    sbuf_fini(&s);
    /* A cap too small fails cleanly. */
    sbuf_init(&s, MEM_METRICS, 64);
    assert_true(metrics_debug_mem(&s) < 0);
    sbuf_fini(&s);
    env_close(&e);
}

static void test_debug_mem_alloc_failures(void **state)
{
    struct sbuf s;
    uint64_t n;
    int rc;

    for (n = 1; n < 100; n++) {
        sbuf_init(&s, MEM_METRICS, 1u << 20);
        mem_fail_at(n);
        rc = metrics_debug_mem(&s);
        if (!mem_fail_fired()) {
            mem_fail_at(0);
            assert_int_equal(rc, 0);
            sbuf_fini(&s);
            break;
        }
        mem_fail_at(0);
        assert_int_equal(rc, -ENOMEM);
        sbuf_fini(&s);
        assert_int_equal(mem_live_bytes(MEM_ALL), 0);
    }
    assert_true(n > 1 && n < 100);
    assert_int_equal(mem_live_bytes(MEM_ALL), 0);
}

/* Last: trace mode cannot be switched off again in this process. The
 * trace list goes through a stdio stream that appends to the sbuf. */
static void test_debug_mem_with_trace(void **state)
{
    static struct env e; /* static: outlives a failed test */
    struct sbuf s;
    const char *page;

    mem_trace_enable();
    env_open(&e);
    page = debug_mem_page(&s);
    check_debug_mem(page, true);
    /* Live blocks made after the switch show up with their site. */
    assert_non_null(strstr(page, "{\"tag\":\"loop\",\"site\":\"src/"));
    sbuf_fini(&s);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_render_well_formed, leftover_setup),
        cmocka_unit_test_setup(test_render_values, leftover_setup),
        cmocka_unit_test_setup(test_render_empty_view, leftover_setup),
        cmocka_unit_test_setup(test_render_cap_too_small, leftover_setup),
        cmocka_unit_test_setup(test_render_alloc_failures, leftover_setup),
        cmocka_unit_test_setup(test_json_parser_itself, leftover_setup),
        cmocka_unit_test_setup(test_debug_mem_json, leftover_setup),
        cmocka_unit_test_setup(test_debug_mem_alloc_failures, leftover_setup),
        cmocka_unit_test_setup(test_debug_mem_with_trace, leftover_setup),
    };

    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_OFF);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
