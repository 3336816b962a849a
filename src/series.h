/*
 * series.h - every series moor exports on /metrics, in one table: its
 * name, its Prometheus type, its unit, its labels and its help sentence.
 *
 * /metrics takes each family's HELP and TYPE lines from here
 * (metrics.c, http_client.c), and `moor serve --help`, docs/monitoring.md
 * and the man page list the table, so what is documented is what is
 * served. A family rendered without a row here is an error the tests see
 * (series_find() returns NULL and the renderers fail in debug builds).
 */
#ifndef MOOR_SERIES_H
#define MOOR_SERIES_H

#include <stddef.h>
#include <stdio.h>

struct series {
    const char *name;   /* moor_... (a histogram's base name) */
    const char *type;   /* "counter", "gauge" or "histogram" */
    const char *unit;   /* what one unit of the value is: "bytes", ... */
    const char *labels; /* comma-separated label names, "" = none */
    const char *help;   /* the HELP sentence */
};

/* The row of name, or NULL. */
const struct series *series_find(const char *name);

/* The table: *n rows. */
const struct series *series_table(size_t *n);

/* The list for `moor serve --help`: one line per series, its name with
 * its labels in braces, its type and its unit. */
void series_print_text(FILE *out);

/* The same as a Markdown table with the help sentences. */
void series_print_md(FILE *out);

#endif
