/*
 * soak_plot.h - plot.svg and report.html of a `moor soak` run (see
 * soak_plot.c).
 */
#ifndef MOOR_SOAK_PLOT_H
#define MOOR_SOAK_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "soak_stats.h"

/* One series: every sample of the run (the warm-up included), and its
 * judgement over the measured rounds. */
struct soak_plot_series {
    const char *name;
    enum soak_kind kind;
    const double *y;
    size_t n;
    const struct soak_judgement *j;
};

/* The words around the plot. */
struct soak_plot_page {
    const char *status;  /* "no leak", "leak", ... */
    const char *verdict; /* the verdict line */
    const char *command; /* the exact command */
    const char *details; /* target, pid, rounds, connections */
    uint32_t warmup;     /* rounds shaded, not judged */
    double cycles;       /* connection cycles per round */
};

/* Writes dir/plot.svg and dir/report.html. Returns 0, or -1 with err. */
int soak_plot_write(const char *dir, const struct soak_plot_series *ps,
                    size_t n, const struct soak_plot_page *pg, char *err,
                    size_t errlen);

#endif
