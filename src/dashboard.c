/*
 * dashboard.c - GET /dashboard; see dashboard.h.
 *
 * Keeps: the page is src/dashboard.html, embedded at build time by the
 * assembler's .incbin (no generator, no extra tool: the Makefile only
 * names the file as a prerequisite of this object), in read-only data;
 * the symbols are hidden, so libmoor exports nothing new.
 * Must not: build or hold anything per request beyond the answer
 * http_respond() copies.
 */
#include "dashboard.h"

/* The path is the compiler's working directory's: the repository root,
 * where the Makefile and scripts/fuzz.sh run. */
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl moor_dashboard_html_start\n"
        ".hidden moor_dashboard_html_start\n"
        "moor_dashboard_html_start:\n"
        ".incbin \"src/dashboard.html\"\n"
        ".globl moor_dashboard_html_end\n"
        ".hidden moor_dashboard_html_end\n"
        "moor_dashboard_html_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char moor_dashboard_html_start[]
    __attribute__((visibility("hidden")));
extern const char moor_dashboard_html_end[]
    __attribute__((visibility("hidden")));

const char *dashboard_html(size_t *len)
{
    *len = (size_t)(moor_dashboard_html_end - moor_dashboard_html_start);
    return moor_dashboard_html_start;
}

void dashboard_page(struct http_exchange *ex, void *arg)
{
    size_t len;
    const char *page = dashboard_html(&len);

    (void)arg;
    http_respond(ex, 200, "text/html; charset=utf-8",
                 "Content-Security-Policy: " DASHBOARD_CSP "\r\n"
                 "Cache-Control: no-cache\r\n"
                 "X-Content-Type-Options: nosniff\r\n"
                 "Referrer-Policy: no-referrer\r\n",
                 page, len);
}
