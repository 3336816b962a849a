/*
 * soak_plot.c - the picture and the page of a `moor soak` run, in --out:
 * plot.svg, one panel per series over the rounds (the samples, the
 * Theil-Sen line fitted to the measured rounds, the warm-up shaded), and
 * report.html, one self-contained page with the verdict, the table, the
 * exact command and the same plot inline.
 *
 * Keeps: the figures drawn are the ones judged (soak_report.c hands
 * them over); no external reference in either file (no font, script or
 * style from elsewhere), so the page opens from a disk or a CI artifact.
 * Must not: judge anything itself.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "soak_plot.h"

#define W 880.0   /* panel width */
#define H 170.0   /* panel height */
#define LEFT 84.0 /* room for the y labels */
#define RIGHT 16.0
#define TOP 28.0    /* room for the title */
#define BOTTOM 26.0 /* room for the x labels */

/* Text with the five characters XML treats specially escaped. */
static void xml(FILE *f, const char *s)
{
    for (; *s; s++)
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
}

static void fmt(enum soak_kind k, double v, char *buf, size_t len)
{
    double a = fabs(v);

    if (k != SOAK_BYTES)
        snprintf(buf, len, "%.4g", v);
    else if (a >= 1024.0 * 1024 * 1024)
        snprintf(buf, len, "%.2f GiB", v / (1024.0 * 1024 * 1024));
    else if (a >= 1024.0 * 1024)
        snprintf(buf, len, "%.2f MiB", v / (1024.0 * 1024));
    else if (a >= 1024.0)
        snprintf(buf, len, "%.1f KiB", v / 1024.0);
    else
        snprintf(buf, len, "%.0f B", v);
}

/* One panel at y offset oy: the frame, the warm-up, the samples, the
 * fitted line and the title. */
static void panel(FILE *f, const struct soak_plot_series *p, uint32_t warmup,
                  double oy)
{
    double lo = INFINITY, hi = -INFINITY, x0 = LEFT, x1 = W - RIGHT;
    double y0 = oy + TOP, y1 = oy + H - BOTTOM;
    const struct soak_fit *a = &p->j->all;
    char l1[40], l2[40], l3[40], l4[40];
    size_t n = p->n;

    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, p->y[i]);
        hi = fmax(hi, p->y[i]);
    }
    if (!(hi > lo)) { /* flat or one value: a band around it */
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.01 + 1 : 1;

        lo -= pad;
        hi += pad;
    }
#define PX(i) (x0 + (n > 1 ? (double)(i) / (double)(n - 1) : 0.5) * (x1 - x0))
#define PY(v) (y1 - ((v)-lo) / (hi - lo) * (y1 - y0))
    fprintf(f, "<g class=\"panel\" data-series=\"");
    xml(f, p->name);
    fprintf(f, "\" data-call=\"%s\">\n", soak_call_name(p->j->call));
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "fill=\"#fff\" stroke=\"#ccc\"/>\n",
            x0, y0, x1 - x0, y1 - y0);
    if (warmup && n > 1)
        fprintf(f,
                "<rect class=\"warmup\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                "height=\"%.1f\" fill=\"#e8e8e8\"><title>warm-up: %u rounds, "
                "not judged</title></rect>\n",
                x0, y0, PX(warmup - 1 < n ? warmup - 1 : n - 1) - x0 + 0.5,
                y1 - y0, warmup);
    fprintf(f, "<polyline class=\"samples\" fill=\"none\" stroke=\"#1f5fa8\" "
               "stroke-width=\"1.5\" points=\"");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX(i), PY(p->y[i]));
    fprintf(f, "\"/>\n");
    if (n <= 200)
        for (size_t i = 0; i < n; i++)
            fprintf(f,
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" "
                    "fill=\"#1f5fa8\"/>\n",
                    PX(i), PY(p->y[i]));
    if (a->n >= 2 && warmup < n) {
        /* The fit is over the measured rounds: x = 0 at the first. */
        double fy0 = a->intercept, fy1 = a->intercept + a->slope * (a->n - 1);
        size_t last = warmup + a->n - 1 < n ? warmup + a->n - 1 : n - 1;

        fprintf(f,
                "<line class=\"fit\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\" "
                "stroke-dasharray=\"6 4\"/>\n",
                PX(warmup), PY(fy0), PX(last), PY(fy1),
                p->j->call == SOAK_LEAK ? "#c0392b" : "#888");
    }
    fmt(p->kind, hi, l1, sizeof(l1));
    fmt(p->kind, lo, l2, sizeof(l2));
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n"
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
            x0 - 6, y0 + 10, l1, x0 - 6, y1, l2);
    fprintf(
        f,
        "<text x=\"%.1f\" y=\"%.1f\">round 1</text>\n"
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">round %zu</text>\n",
        x0, y1 + 16, x1, y1 + 16, n);
    fmt(p->kind, a->slope, l1, sizeof(l1));
    fmt(p->kind, a->lo, l2, sizeof(l2));
    fmt(p->kind, a->hi, l3, sizeof(l3));
    fmt(p->kind, a->growth, l4, sizeof(l4));
    fprintf(f, "<text class=\"title\" x=\"%.1f\" y=\"%.1f\">", x0,
            oy + TOP - 9);
    xml(f, p->name);
    fprintf(f,
            ": %s; slope %s per round [%s, %s], %s over the measured "
            "rounds</text>\n</g>\n",
            soak_call_name(p->j->call), l1, l2, l3, l4);
#undef PX
#undef PY
}

static void svg(FILE *f, const struct soak_plot_series *ps, size_t n,
                uint32_t warmup)
{
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"sans-serif\" font-size=\"11\" fill=\"#222\">\n",
            W, H * (double)n, W, H * (double)n);
    for (size_t i = 0; i < n; i++)
        panel(f, &ps[i], warmup, H * (double)i);
    fprintf(f, "</svg>\n");
}

int soak_plot_write(const char *dir, const struct soak_plot_series *ps,
                    size_t n, const struct soak_plot_page *pg, char *err,
                    size_t errlen)
{
    char path[600];
    FILE *f;

    snprintf(path, sizeof(path), "%s/plot.svg", dir);
    f = fopen(path, "we");
    if (!f)
        goto fail;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    svg(f, ps, n, pg->warmup);
    if (fclose(f) != 0)
        goto fail;

    snprintf(path, sizeof(path), "%s/report.html", dir);
    f = fopen(path, "we");
    if (!f)
        goto fail;
    fprintf(f, "<!doctype html>\n<html lang=\"en\">\n<head>\n"
               "<meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width\">\n"
               "<title>moor soak: ");
    xml(f, pg->status);
    fprintf(f, "</title>\n<style>\n"
               "body{font:14px/1.4 sans-serif;margin:24px;color:#222}\n"
               "code{background:#f4f4f4;padding:2px 4px;word-break:break-all}\n"
               "table{border-collapse:collapse;margin:12px 0}\n"
               "td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}\n"
               "td:first-child,th:first-child{text-align:left}\n"
               ".leak{color:#c0392b;font-weight:bold}\n"
               "svg{max-width:100%%;height:auto}\n"
               "</style>\n</head>\n<body>\n<h1 id=\"verdict\">moor soak: ");
    xml(f, pg->verdict);
    fprintf(f, "</h1>\n<p>Command: <code id=\"command\">");
    xml(f, pg->command);
    fprintf(f, "</code></p>\n<p>");
    xml(f, pg->details);
    fprintf(f, "</p>\n<table id=\"series\">\n<tr><th>series</th>"
               "<th>slope per round</th><th>95%% interval</th>"
               "<th>per connection cycle</th><th>growth</th>"
               "<th>verdict</th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        const struct soak_fit *a = &ps[i].j->all;
        char sl[40], lo[40], hi[40], pc[40], gr[40];

        fmt(ps[i].kind, a->slope, sl, sizeof(sl));
        fmt(ps[i].kind, a->lo, lo, sizeof(lo));
        fmt(ps[i].kind, a->hi, hi, sizeof(hi));
        fmt(ps[i].kind, pg->cycles > 0 ? a->slope / pg->cycles : 0, pc,
            sizeof(pc));
        fmt(ps[i].kind, a->growth, gr, sizeof(gr));
        fprintf(f, "<tr><td>");
        xml(f, ps[i].name);
        fprintf(f,
                "</td><td>%s</td><td>[%s, %s]</td><td>%s</td><td>%s</td>"
                "<td%s>%s</td></tr>\n",
                sl, lo, hi, pc, gr,
                ps[i].j->call == SOAK_LEAK ? " class=\"leak\"" : "",
                soak_call_name(ps[i].j->call));
    }
    fprintf(f, "</table>\n<p>Each panel: the samples taken at the quiet "
               "point of every round (blue), the warm-up rounds (grey, "
               "not judged) and the Theil-Sen line fitted to the measured "
               "rounds (dashed; red when it is a leak). The samples are in "
               "samples.csv, the fits in summary.json.</p>\n");
    svg(f, ps, n, pg->warmup);
    fprintf(f, "</body>\n</html>\n");
    if (fclose(f) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
}
