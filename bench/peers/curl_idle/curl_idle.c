/* curl_idle - a benchmark peer for moor's HTTP client: the idle-pool
 * memory of libcurl's multi interface (issue 15).
 *
 * It makes one warm-up request (curl_easy_perform on a handle of its own,
 * cleaned up after, so the HTTP and TLS code is paged in and its
 * connection is closed), reads its own VmRSS from /proc/self/status, then
 * adds --conns easy handles, all at once, to one multi handle whose
 * connection limits (CURLMOPT_MAX_HOST_CONNECTIONS,
 * CURLMOPT_MAX_TOTAL_CONNECTIONS, CURLMOPT_MAXCONNECTS, and each handle's
 * CURLOPT_MAXCONNECTS) are --conns, and drives them with
 * curl_multi_perform/curl_multi_poll until every one has answered. Each
 * finished handle is removed and cleaned up, as a pool's user would; its
 * connection stays in the multi's connection cache. After --settle it
 * reads VmRSS again and holds the multi (and so the idle connections) for
 * --hold. The server must hold each request long enough for all --conns
 * to be connecting at once (bench/nginx_http.py's /hold). distinct_conns
 * is the sum of CURLINFO_NUM_CONNECTS over the transfers.
 *
 * bytes_per_conn is (rss_after - rss_before) / conns: the measure.
 * It includes what the burst used and freed but malloc kept (the easy
 * handles and their buffers, interleaved with the connections'
 * allocations, so the heap cannot shrink). live_per_conn is the growth of
 * malloc's in-use bytes (read after the hold) / conns: what the idle pool
 * itself holds.
 *
 * usage: curl-idle --url URL [--conns 1000] [--hold 2s] [--settle 500ms]
 *                  [--ca FILE | --insecure] [--warmup-url URL]
 *
 * The warm-up request goes to --warmup-url (default --url): a runner that
 * counts the server's connections to --url sends it elsewhere on the same
 * server.
 *
 * Prints one JSON line to stdout:
 *
 *   {"client":"curl-multi","conns":N,"distinct_conns":N,"rss_before":B,
 *    "rss_after":A,"bytes_per_conn":(A-B)/N, ...}
 *
 * and, on stderr, "holding N idle connections for D" when the hold starts.
 * Exits 1 if any transfer failed. HTTP/1.1 only. libcurl's defaults
 * otherwise (its TLS session cache on). Build: bench/peers/build.sh
 * (libcurl4-openssl-dev).
 */
#define _GNU_SOURCE /* mallinfo2 */
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail(const char *fmt, ...)
{
    va_list ap;
    fputs("curl-idle: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* This process's VmRSS in bytes. */
static long long vm_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    if (!f)
        fail("/proc/self/status: %s", strerror(errno));
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            break;
    fclose(f);
    if (kb < 0)
        fail("no VmRSS in /proc/self/status");
    return kb * 1024;
}

/* Bytes malloc has handed out and not had back (mallinfo2: the main
 * arena's in-use bytes and the mmap'd chunks). Unlike VmRSS it leaves out
 * what was freed and kept by malloc. This program has one thread, so the
 * main arena is the only one. */
static long long live_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long long)(mi.uordblks + mi.hblkhd);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* "2s", "500ms", "1.5" (seconds) -> seconds; exits on anything else. */
static double parse_duration(const char *flag, const char *v)
{
    char *end;
    double d;
    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || d < 0)
        fail("%s: bad duration %s", flag, v);
    if (strcmp(end, "ms") == 0)
        d /= 1000;
    else if (strcmp(end, "m") == 0)
        d *= 60;
    else if (*end && strcmp(end, "s") != 0)
        fail("%s: bad duration %s", flag, v);
    return d;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

struct opts {
    const char *url, *ca, *warm_url;
    long conns;
    double hold, settle;
    int insecure;
};

static CURL *new_easy(const struct opts *o)
{
    CURL *e = curl_easy_init();
    if (!e)
        fail("curl_easy_init failed");
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_MAXCONNECTS, o->conns);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
    if (o->ca)
        curl_easy_setopt(e, CURLOPT_CAINFO, o->ca);
    if (o->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return e;
}

/* Checks one finished transfer: 0 if it got a 200. */
static int check(CURL *e, CURLcode rc, char *err, size_t errlen)
{
    long status = 0;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        snprintf(err, errlen, "status %ld", status);
        return -1;
    }
    return 0;
}

static void usage(void)
{
    fail("usage: curl-idle --url URL [--conns N] [--hold D] [--settle D] "
         "[--ca FILE | --insecure] [--warmup-url URL]");
}

int main(int argc, char **argv)
{
    struct opts o = {NULL, NULL, NULL, 1000, 2.0, 0.5, 0};
    char err[256] = "";
    long errors = 0, fresh = 0, done = 0;
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] == '-')
            a++; /* --flag and -flag alike, as Go's flag package */
        if (strcmp(a, "-insecure") == 0) {
            o.insecure = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        if (strcmp(a, "-url") == 0)
            o.url = argv[++i];
        else if (strcmp(a, "-ca") == 0)
            o.ca = argv[++i];
        else if (strcmp(a, "-warmup-url") == 0)
            o.warm_url = argv[++i];
        else if (strcmp(a, "-conns") == 0)
            o.conns = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "-hold") == 0)
            o.hold = parse_duration("--hold", argv[++i]);
        else if (strcmp(a, "-settle") == 0)
            o.settle = parse_duration("--settle", argv[++i]);
        else
            usage();
    }
    if (!o.url || o.conns < 1)
        usage();
    if (!o.warm_url)
        o.warm_url = o.url;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        fail("curl_global_init failed");

    /* Warm-up: one request on its own handle (and its own connection
     * cache), which closes its connection when cleaned up. */
    {
        CURL *w = new_easy(&o);
        curl_easy_setopt(w, CURLOPT_URL, o.warm_url);
        if (check(w, curl_easy_perform(w), err, sizeof err) != 0)
            fail("warm-up GET %s: %s", o.warm_url, err);
        curl_easy_cleanup(w);
    }
    sleep_s(o.settle);
    long long before = vm_rss();
    long long live_before = live_bytes();

    CURLM *m = curl_multi_init();
    if (!m)
        fail("curl_multi_init failed");
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, o.conns);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, o.conns);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, o.conns);
    for (i = 0; i < o.conns; i++)
        if (curl_multi_add_handle(m, new_easy(&o)) != CURLM_OK)
            fail("curl_multi_add_handle failed");

    double t0 = now_s();
    while (done < o.conns) {
        int running = 0, left = 0;
        CURLMsg *msg;
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK)
            fail("curl_multi_perform: %s", curl_multi_strerror(mc));
        while ((msg = curl_multi_info_read(m, &left))) {
            CURL *e;
            long n = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            e = msg->easy_handle;
            if (check(e, msg->data.result, err, sizeof err) != 0)
                errors++;
            curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &n);
            fresh += n;
            done++;
            curl_multi_remove_handle(m, e);
            curl_easy_cleanup(e);
        }
        if (done < o.conns) {
            mc = curl_multi_poll(m, NULL, 0, 1000, NULL);
            if (mc != CURLM_OK)
                fail("curl_multi_poll: %s", curl_multi_strerror(mc));
        }
    }
    double open_s = now_s() - t0;
    sleep_s(o.settle);
    long long after = vm_rss();

    fprintf(stderr, "holding %ld idle connections for %gs\n", fresh, o.hold);
    sleep_s(o.hold);
    long long held = vm_rss();
    long long live_after = live_bytes();

    printf("{\"client\":\"curl-multi\",\"version\":\"%s\",\"url\":\"%s\","
           "\"conns\":%ld,\"distinct_conns\":%ld,\"errors\":%ld,"
           "\"rss_before\":%lld,\"rss_after\":%lld,\"rss_held\":%lld,"
           "\"bytes_per_conn\":%lld,\"live_before\":%lld,"
           "\"live_after\":%lld,\"live_per_conn\":%lld,"
           "\"open_s\":%.3f,\"hold_s\":%g",
           curl_version_info(CURLVERSION_NOW)->version, o.url, o.conns, fresh,
           errors, before, after, held,
           (after - before + o.conns / 2) / o.conns, live_before, live_after,
           (live_after - live_before + o.conns / 2) / o.conns, open_s, o.hold);
    if (errors)
        printf(",\"error\":\"%s\"", err);
    printf("}\n");
    fflush(stdout);

    curl_multi_cleanup(m);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
