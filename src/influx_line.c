/*
 * influx_line.c - InfluxDB line protocol; see influx_line.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "influx_line.h"

/* What a character needs in each part of a line. */
enum part { MEASUREMENT, KEY_OR_TAG }; /* field keys are written as tags */

static bool clean(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static int escaped(struct sbuf *b, const char *s, size_t n, enum part p)
{
    size_t from = 0;
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        bool special =
            s[i] == ',' || s[i] == ' ' || (p == KEY_OR_TAG && s[i] == '=');

        if (!special)
            continue;
        rc = sbuf_append(b, s + from, i - from);
        if (rc == 0)
            rc = sbuf_append(b, "\\", 1);
        from = i;
    }
    return rc ? rc : sbuf_append(b, s + from, n - from);
}

static int tag_cmp(const void *x, const void *y)
{
    const struct influx_tag *a = x, *b = y;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);

    if (c)
        return c;
    return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

int influx_point(struct sbuf *b, const char *m, size_t mlen,
                 const struct influx_tag *tags, size_t n_tags, double value,
                 bool integer, int64_t ts)
{
    struct influx_tag t[INFLUX_MAX_TAGS];
    size_t n = 0, at = b->len;
    char num[64];
    int rc;

    if (!mlen || !clean(m, mlen) || n_tags > INFLUX_MAX_TAGS)
        return -EINVAL;
    if (!isfinite(value) ||
        (integer && (value != floor(value) || fabs(value) >= 0x1p63)))
        return -EDOM;
    for (size_t i = 0; i < n_tags; i++) {
        if (!tags[i].key_len || !clean(tags[i].key, tags[i].key_len) ||
            !clean(tags[i].value, tags[i].value_len))
            return -EINVAL;
        if (tags[i].value_len) /* an empty value: the tag is left out */
            t[n++] = tags[i];
    }
    qsort(t, n, sizeof(t[0]), tag_cmp);
    if (integer)
        snprintf(num, sizeof(num), " value=%lldi %lld\n", (long long)value,
                 (long long)ts);
    else
        snprintf(num, sizeof(num), " value=%.17g %lld\n", value, (long long)ts);
    rc = escaped(b, m, mlen, MEASUREMENT);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = sbuf_append(b, ",", 1);
        if (rc == 0)
            rc = escaped(b, t[i].key, t[i].key_len, KEY_OR_TAG);
        if (rc == 0)
            rc = sbuf_append(b, "=", 1);
        if (rc == 0)
            rc = escaped(b, t[i].value, t[i].value_len, KEY_OR_TAG);
    }
    if (rc == 0)
        rc = sbuf_puts(b, num);
    if (rc)
        b->len = at; /* nothing of it stays */
    return rc;
}

/* ---- from the Prometheus exposition --------------------------------------
 */

#define LABEL_BYTES 4096 /* unescaped label values of one sample */

struct sample {
    const char *name;
    size_t name_len;
    struct influx_tag tags[INFLUX_MAX_TAGS];
    size_t n_tags;
    char vals[LABEL_BYTES];
    char renamed[INFLUX_MAX_TAGS][64]; /* "exported_" + a clashing key */
    double value;
};

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == ':';
}

/* Parses `{k="v",...}` at *pp (below end) into s's tags. -EINVAL for a
 * syntax error, -E2BIG for more labels or bytes than s holds. */
static int labels(const char **pp, const char *end, struct sample *s)
{
    const char *p = *pp + 1;
    size_t used = 0;

    while (p < end && *p != '}') {
        struct influx_tag *t;
        const char *k = p;

        while (p < end && name_char(*p))
            p++;
        if (p == k || p + 1 >= end || p[0] != '=' || p[1] != '"')
            return -EINVAL;
        if (s->n_tags == INFLUX_MAX_TAGS)
            return -E2BIG;
        t = &s->tags[s->n_tags++];
        t->key = k;
        t->key_len = (size_t)(p - k);
        t->value = s->vals + used;
        p += 2;
        while (p < end && *p != '"') {
            char ch = *p++;

            if (ch == '\\' && p < end) {
                ch = *p++;
                ch = ch == 'n' ? '\n' : ch;
            }
            if (used == LABEL_BYTES)
                return -E2BIG;
            s->vals[used++] = ch;
        }
        if (p == end)
            return -EINVAL;
        t->value_len = (size_t)(s->vals + used - t->value);
        p++; /* the closing quote */
        if (p < end && *p == ',')
            p++;
    }
    if (p == end)
        return -EINVAL;
    *pp = p + 1;
    return 0;
}

/* A sample line line[0..n) into *s. 0, -EINVAL or -E2BIG. */
static int parse_sample(const char *line, size_t n, struct sample *s)
{
    const char *p = line, *end = line + n;
    char num[64];
    size_t vl;
    char *stop;
    int rc;

    s->name = p;
    s->n_tags = 0;
    while (p < end && name_char(*p))
        p++;
    s->name_len = (size_t)(p - line);
    if (!s->name_len)
        return -EINVAL;
    if (p < end && *p == '{') {
        rc = labels(&p, end, s);
        if (rc)
            return rc;
    }
    if (p == end || *p != ' ')
        return -EINVAL;
    p++;
    for (vl = 0; p + vl < end && p[vl] != ' '; vl++)
        ;
    if (!vl || vl >= sizeof(num))
        return -EINVAL;
    memcpy(num, p, vl);
    num[vl] = 0;
    s->value = strtod(num, &stop);
    return *stop ? -EINVAL : 0;
}

static bool has_suffix(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);

    return n >= k && !memcmp(s + n - k, suf, k);
}

/* Integer-valued series: a counter's samples, a histogram's buckets and
 * count. fam[0..fl) is the family of the last # TYPE line. */
static bool integral(const struct sample *s, const char *fam, size_t fl,
                     const char *type, size_t tl)
{
    bool same = s->name_len >= fl && !memcmp(s->name, fam, fl);

    if (!same)
        return false;
    if (tl == 7 && !memcmp(type, "counter", 7))
        return true;
    return tl == 9 && !memcmp(type, "histogram", 9) &&
           (has_suffix(s->name, s->name_len, "_bucket") ||
            has_suffix(s->name, s->name_len, "_count"));
}

/* The extra tags, which win: a label of the sample with an extra tag's
 * key is kept as exported_KEY (as Prometheus keeps a scraped label that
 * clashes with a target label). So the pool's host="http://influx:8086"
 * becomes exported_host and every point keeps the machine's host tag. */
static void add_extra(struct sample *s, const struct influx_tag *extra,
                      size_t n_extra)
{
    static const char pre[] = "exported_";
    size_t own = s->n_tags;

    for (size_t i = 0; i < n_extra; i++) {
        for (size_t j = 0; j < own; j++) {
            struct influx_tag *t = &s->tags[j];
            char *r = s->renamed[j];

            if (t->key_len != extra[i].key_len ||
                memcmp(t->key, extra[i].key, t->key_len))
                continue;
            if (sizeof(pre) - 1 + t->key_len >= sizeof(s->renamed[j]))
                t->value_len = 0; /* too long to rename: left out */
            else {
                memcpy(r, pre, sizeof(pre) - 1);
                memcpy(r + sizeof(pre) - 1, t->key, t->key_len);
                t->key = r;
                t->key_len += sizeof(pre) - 1;
            }
        }
        s->tags[s->n_tags++] = extra[i];
    }
}

long influx_from_prometheus(struct sbuf *out, const char *text, size_t n,
                            const struct influx_tag *extra, size_t n_extra,
                            int64_t ts, size_t *skipped)
{
    static __thread struct sample s; /* 4 KiB of labels: not on the stack */
    const char *fam = "", *type = "";
    size_t fl = 0, tl = 0, pos = 0;
    long points = 0;

    *skipped = 0;
    while (pos < n) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;
        int rc;

        pos += len + (nl ? 1 : 0);
        if (!len)
            continue;
        if (line[0] == '#') {
            if (len > 7 && !memcmp(line, "# TYPE ", 7)) {
                const char *sp = memchr(line + 7, ' ', len - 7);

                if (!sp)
                    return -EINVAL;
                fam = line + 7;
                fl = (size_t)(sp - fam);
                type = sp + 1;
                tl = (size_t)(line + len - type);
            }
            continue;
        }
        rc = parse_sample(line, len, &s);
        if (rc == -E2BIG || (rc == 0 && s.n_tags + n_extra > INFLUX_MAX_TAGS)) {
            (*skipped)++;
            continue;
        }
        if (rc)
            return rc;
        add_extra(&s, extra, n_extra);
        rc = influx_point(out, s.name, s.name_len, s.tags, s.n_tags, s.value,
                          integral(&s, fam, fl, type, tl), ts);
        if (rc == -EINVAL || rc == -EDOM) {
            (*skipped)++;
            continue;
        }
        if (rc)
            return rc;
        points++;
    }
    return points;
}

/* ---- delivery latency quantiles ------------------------------------------
 */

int influx_hist_buckets(const char *text, size_t n, const char *name,
                        double *le, double *cum, size_t cap)
{
    static __thread struct sample s;
    size_t nl_ = strlen(name), pos = 0;
    int found = 0;

    while (pos < n) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;
        const struct influx_tag *t = NULL;
        char num[64];
        char *stop;
        int rc;

        pos += len + (nl ? 1 : 0);
        if (len < nl_ + 8 || memcmp(line, name, nl_) ||
            memcmp(line + nl_, "_bucket{", 8))
            continue;
        rc = parse_sample(line, len, &s);
        if (rc)
            return rc;
        for (size_t i = 0; i < s.n_tags && !t; i++)
            if (s.tags[i].key_len == 2 && !memcmp(s.tags[i].key, "le", 2))
                t = &s.tags[i];
        if (!t || !t->value_len || t->value_len >= sizeof(num))
            return -EINVAL;
        if ((size_t)found == cap)
            return -E2BIG;
        memcpy(num, t->value, t->value_len);
        num[t->value_len] = 0;
        le[found] = strtod(num, &stop);
        if (*stop || isnan(le[found]))
            return -EINVAL;
        cum[found++] = s.value;
    }
    return found;
}

double influx_hist_quantile(const double *le, const double *cum, size_t n,
                            double q)
{
    double rank, below, start, count;
    size_t b;

    if (n < 2 || !isinf(le[n - 1]) || !(cum[n - 1] > 0))
        return NAN;
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    rank = q * cum[n - 1];
    for (b = 0; b < n - 1 && cum[b] < rank; b++)
        ;
    if (b == n - 1)
        return le[n - 2]; /* in +Inf: the highest bound known */
    if (b == 0 && le[0] <= 0)
        return le[0];
    start = b ? le[b - 1] : 0;
    below = b ? cum[b - 1] : 0;
    count = cum[b] - below;
    if (!(count > 0))
        return start;
    return start + (le[b] - start) * ((rank - below) / count);
}

long influx_quantile_points(struct sbuf *out, const double *le,
                            const double *inc, size_t n,
                            const struct influx_tag *extra, size_t n_extra,
                            int64_t ts)
{
    static const char *const qs[] = {"0.5", "0.9", "0.99"};
    struct influx_tag tags[INFLUX_MAX_TAGS];
    size_t nt = 0;
    long points = 0;

    if (n < 2 || !(inc[n - 1] > 0))
        return 0;
    tags[nt++] = (struct influx_tag){"quantile", NULL, 8, 0};
    for (size_t i = 0; i < n_extra && nt < INFLUX_MAX_TAGS; i++)
        if (extra[i].key_len != 8 || memcmp(extra[i].key, "quantile", 8))
            tags[nt++] = extra[i];
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        double v = influx_hist_quantile(le, inc, n, strtod(qs[i], NULL));
        int rc;

        tags[0].value = qs[i];
        tags[0].value_len = strlen(qs[i]);
        rc = influx_point(out, INFLUX_QUANTILE_MEASUREMENT,
                          sizeof(INFLUX_QUANTILE_MEASUREMENT) - 1, tags, nt, v,
                          false, ts);
        if (rc == -EDOM || rc == -EINVAL)
            continue;
        if (rc)
            return rc;
        points++;
    }
    return points;
}
