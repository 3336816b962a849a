/*
 * dashboard.h - GET /dashboard: one self-contained page (HTML, CSS and
 * plain JavaScript in src/dashboard.html, no external load of any kind)
 * that draws GET /debug/stream live. The page is compiled into the
 * binary (dashboard.c); docs/dashboard.md says what it shows.
 */
#ifndef MOOR_DASHBOARD_H
#define MOOR_DASHBOARD_H

#include <stddef.h>
#include "http_server.h"

/* The Content-Security-Policy the page is served with: its own inline
 * script and style, EventSource to its own origin, nothing else (no
 * script, style, image, font or frame from anywhere). */
#define DASHBOARD_CSP                                                          \
    "default-src 'none'; script-src 'unsafe-inline'; style-src "               \
    "'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "    \
    "form-action 'none'; frame-ancestors 'none'"

/* The page's bytes (src/dashboard.html as it was at build time). */
const char *dashboard_html(size_t *len);

/* A route handler for GET and HEAD /dashboard (arg is not used): 200,
 * text/html, DASHBOARD_CSP, Cache-Control: no-cache. */
void dashboard_page(struct http_exchange *ex, void *arg);

#endif
