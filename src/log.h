/*
 * log.h - leveled key=value logging to stderr, rate-limited per call site.
 *
 * A line looks like:
 *   ts=2026-11-24T07:36:01.123Z level=warn msg="slow consumer" conn=17
 * peer=127.0.0.1:5000 Each LOG_* macro owns a static site record; a site logs
 * at most LOG_BURST lines per second and then counts what it suppressed,
 * reporting "suppressed=N" on its next line, so a flood of bad clients cannot
 * flood the log. The site records are per call site and touched with atomics,
 * so several loops may log from the same site.
 */
#ifndef MOOR_LOG_H
#define MOOR_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

#define LOG_BURST 10 /* lines per second per call site */

struct log_site {
    uint64_t window;     /* second the count below belongs to */
    uint32_t count;      /* lines logged in that second */
    uint32_t suppressed; /* lines dropped since the last one logged */
};

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off". Returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);
/* Redirects output (tests). NULL restores stderr. */
void log_set_stream(FILE *f);
/* Total lines suppressed by rate limiting, all sites (a metric). */
uint64_t log_suppressed_total(void);

/* fmt is the rest of the line after msg: key=value pairs, e.g.
 * LOG_WARN("slow consumer", "conn=%u peer=%s", id, peer). */
void log_at(struct log_site *site, enum log_level lvl, const char *msg,
            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* True if the site has used its LOG_BURST lines this second: the line
 * would be suppressed, so the caller need not compute its arguments
 * (log_site_suppress() counts it instead). */
bool log_site_full(const struct log_site *site);
void log_site_suppress(struct log_site *site);

/* The arguments are evaluated only for a line that will be written, so a
 * costly one (a peer address from getpeername) costs nothing when the
 * site is rate limited. */
#define LOG_AT_(lvl, msg, ...)                                                 \
    do {                                                                       \
        static struct log_site log_site_;                                      \
        if ((lvl) >= log_get_level()) {                                        \
            if (log_site_full(&log_site_))                                     \
                log_site_suppress(&log_site_);                                 \
            else                                                               \
                log_at(&log_site_, (lvl), (msg), __VA_ARGS__);                 \
        }                                                                      \
    } while (0)

#define LOG_DEBUG(msg, ...) LOG_AT_(LOG_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...) LOG_AT_(LOG_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...) LOG_AT_(LOG_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) LOG_AT_(LOG_ERROR, msg, __VA_ARGS__)

#endif
