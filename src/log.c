/*
 * log.c - leveled key=value log lines, rate-limited per call site.
 *
 * What it does. log_at() formats one line
 *   ts=<RFC 3339 UTC, ms> level=<lvl> msg="<msg>" <caller's pairs>
 * into a stack buffer and writes it with a single fwrite(), so lines from
 * several threads never interleave. Each call site (a static struct
 * log_site in the LOG_* macro) may log LOG_BURST lines per wall-clock
 * second; further lines in that second are counted, not written, and the
 * count is appended as " suppressed=N" to the site's next line that gets
 * through.
 *
 * Invariants.
 * - A log line is always exactly one line: the msg field is quoted and
 *   escaped, and control characters in the caller's pairs (which may hold
 *   peer-supplied bytes) are written as \xNN.
 * - Site records are only touched with __atomic builtins. Under a race
 *   between threads the counts may be off by a line or two (two threads
 *   may both reset a new second's window); that is accepted. The memory
 *   is never touched unsafely.
 * - The level and the stream are process-wide settings, meant to be set
 *   once at start-up (and by tests); they are read with relaxed atomics.
 *   docs/principles.md rule 10 forbids global mutables that would stop a
 *   second loop: these two are configuration, not per-loop state.
 *
 * What it must not do. Allocate (logging must work when memory is out),
 * block on anything but the stream, or call into any other moor module.
 */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

#define LOG_LINE_MAX 2048
#define LOG_TAIL 32 /* " suppressed=4294967295\n" fits */

static int cur_level = LOG_INFO;
static FILE *cur_stream; /* NULL means stderr */
static uint64_t suppressed_total;

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info", [LOG_WARN] = "warn",
    [LOG_ERROR] = "error", [LOG_OFF] = "off",
};

void log_set_level(enum log_level lvl)
{
    if ((unsigned)lvl > LOG_OFF)
        lvl = LOG_OFF;
    __atomic_store_n(&cur_level, (int)lvl, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
    return (enum log_level)__atomic_load_n(&cur_level, __ATOMIC_RELAXED);
}

int log_parse_level(const char *s, enum log_level *out)
{
    unsigned i;

    if (!s)
        return -EINVAL;
    for (i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_set_stream(FILE *f)
{
    __atomic_store_n(&cur_stream, f, __ATOMIC_RELEASE);
}

uint64_t log_suppressed_total(void)
{
    return __atomic_load_n(&suppressed_total, __ATOMIC_RELAXED);
}

/* Decides whether a line from site may be written in wall second sec.
 * Returns true and sets *sup to the lines suppressed since the site's last
 * line, or counts the line as suppressed and returns false. */
static bool site_admit(struct log_site *site, uint64_t sec, uint32_t *sup)
{
    uint64_t w = __atomic_load_n(&site->window, __ATOMIC_RELAXED);

    /* The first thread to see a new second resets the count; a thread that
     * loses the exchange just counts into the new window. */
    if (w != sec &&
        __atomic_compare_exchange_n(&site->window, &w, sec, false,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        __atomic_store_n(&site->count, 0, __ATOMIC_RELAXED);

    if (__atomic_add_fetch(&site->count, 1, __ATOMIC_RELAXED) > LOG_BURST) {
        __atomic_add_fetch(&site->suppressed, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&suppressed_total, 1, __ATOMIC_RELAXED);
        return false;
    }
    *sup = __atomic_exchange_n(&site->suppressed, 0, __ATOMIC_RELAXED);
    return true;
}

bool log_site_full(const struct log_site *site)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts); /* the clock log_at() uses */
    return __atomic_load_n(&site->window, __ATOMIC_RELAXED) ==
               (uint64_t)ts.tv_sec &&
           __atomic_load_n(&site->count, __ATOMIC_RELAXED) >= LOG_BURST;
}

void log_site_suppress(struct log_site *site)
{
    __atomic_add_fetch(&site->suppressed, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&suppressed_total, 1, __ATOMIC_RELAXED);
}

static bool is_ctl(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

/* Appends ch to buf at *len, as \xNN if it is a control character, or
 * backslash-escaped if quote is set and ch is '"' or '\\' (the msg field).
 * Drops ch when it would not fit with 2 bytes to spare (the closing quote
 * and the space that follow the msg field), so *len never passes cap. */
static void put_char(char *buf, size_t *len, size_t cap, unsigned char ch,
                     bool quote)
{
    static const char hex[] = "0123456789abcdef";

    if (*len + 4 + 2 > cap)
        return;
    if (quote && (ch == '"' || ch == '\\')) {
        buf[(*len)++] = '\\';
        buf[(*len)++] = (char)ch;
    } else if (is_ctl(ch)) {
        buf[(*len)++] = '\\';
        buf[(*len)++] = 'x';
        buf[(*len)++] = hex[ch >> 4];
        buf[(*len)++] = hex[ch & 15];
    } else {
        buf[(*len)++] = (char)ch;
    }
}

/* Rewrites control characters in buf[from..*len) as \xNN, within cap;
 * what no longer fits is cut off. The caller's pairs may carry bytes a
 * peer sent, and a newline among them must not forge a log line. Quotes
 * and backslashes are the caller's own and stay as written. */
static void defang(char *buf, size_t from, size_t *len, size_t cap)
{
    char tmp[LOG_LINE_MAX];
    size_t n = *len - from, i;

    for (i = from; i < *len && !is_ctl((unsigned char)buf[i]); i++)
        ;
    if (i == *len)
        return;
    memcpy(tmp, buf + from, n);
    *len = from;
    for (i = 0; i < n; i++)
        put_char(buf, len, cap, (unsigned char)tmp[i], false);
}

void log_at(struct log_site *site, enum log_level lvl, const char *msg,
            const char *fmt, ...)
{
    char buf[LOG_LINE_MAX];
    /* The message and the caller's pairs get `body` bytes; the rest is
     * kept for " suppressed=N" and the newline, so those are never cut. */
    const size_t body = sizeof(buf) - LOG_TAIL;
    struct timespec ts;
    struct tm tm;
    uint32_t sup = 0;
    size_t len, from;
    const char *p;
    va_list ap;
    FILE *out;
    int n;

    if (lvl < log_get_level() || (unsigned)lvl >= LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (site && !site_admit(site, (uint64_t)ts.tv_sec, &sup))
        return;

    gmtime_r(&ts.tv_sec, &tm);
    len = strftime(buf, body, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(buf + len, body - len, ".%03ldZ level=%s msg=\"",
                 ts.tv_nsec / 1000000L, level_names[lvl]);
    len += (size_t)n;
    for (p = msg ? msg : ""; *p; p++)
        put_char(buf, &len, body, (unsigned char)*p, true);
    buf[len++] = '"';

    if (fmt && *fmt && len + 2 < body) {
        buf[len++] = ' ';
        from = len;
        va_start(ap, fmt);
        n = vsnprintf(buf + len, body - len, fmt, ap);
        va_end(ap);
        if (n > 0) {
            len += MIN((size_t)n, body - len - 1);
            defang(buf, from, &len, body);
        } else {
            len--; /* nothing to separate: drop the space */
        }
    }
    if (sup)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                                " suppressed=%" PRIu32, sup);
    buf[len++] = '\n';

    out = __atomic_load_n(&cur_stream, __ATOMIC_ACQUIRE);
    if (!out)
        out = stderr;
    fwrite(buf, 1, len, out);
    fflush(out);
}
