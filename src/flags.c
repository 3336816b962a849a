/*
 * flags.c - the flag-table engine (flags.h): defaults, environment and
 * command line into the struct a table describes, the one-line message
 * for a bad value, and the --help layout. config.c (`moor serve`) and
 * bench/bench_flags.c (`moor bench`) each own a table and the text around
 * it; everything about a single flag is here.
 *
 * Invariants.
 * - A value is stored whole or not at all: the field is unchanged when
 *   the value is refused.
 * - Every error is one line naming the flag, the bad value (its first 60
 *   bytes when longer: the explanation must fit the caller's buffer),
 *   where it came from when not the command line, and what is expected,
 *   including the range when the value was out of it.
 * - No value of any flag starts with '-', so a word that does is never
 *   taken as the value of the flag before it.
 *
 * What it must not do. Allocate, touch the process environment other than
 * through envp, or know any table's flags.
 */
#include "flags.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "util.h"

#define HELP_WIDTH 80
/* A bad value longer than this is quoted by its first QUOTE_CUT bytes. */
#define QUOTE_MAX 64
#define QUOTE_CUT 60

/* ------------------------------------------------------------------ */
/* Small helpers.                                                     */
/* ------------------------------------------------------------------ */

void flags_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reads the leading digits of s into *v. Returns the number of digits
 * (0 if none) or -ERANGE if the number does not fit in 64 bits. */
static int parse_digits(const char *s, uint64_t *v)
{
    uint64_t n = 0;
    int i = 0;

    while (ascii_is_digit((unsigned char)s[i])) {
        unsigned d = (unsigned)(s[i] - '0');

        if (n > (UINT64_MAX - d) / 10)
            return -ERANGE;
        n = n * 10 + d;
        i++;
    }
    *v = n;
    return i;
}

void flags_env_name(const char *prefix, const struct flag *f, char *buf,
                    size_t len)
{
    size_t i = 0, j;

    for (j = 0; prefix[j] && i + 1 < len; j++)
        buf[i++] = prefix[j];
    for (j = 0; f->name[j] && i + 1 < len; j++) {
        char ch = f->name[j];

        if (ch == '-')
            ch = '_';
        else if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        buf[i++] = ch;
    }
    buf[i] = '\0';
}

const struct flag *flags_find(const struct flag_table *t, const char *name,
                              size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->flags[i].name) == len &&
            !memcmp(t->flags[i].name, name, len))
            return &t->flags[i];
    return NULL;
}

/* A unit of a duration or a size and what one of it is (ms, bytes). */
struct unit {
    const char *unit;
    uint64_t mult;
};

/* Duration units, largest first (flags_fmt_duration() relies on the
 * order). */
static const struct unit duration_units[] = {
    {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

#define N_DURATION_UNITS ARRAY_SIZE(duration_units)

void flags_fmt_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0");
        return;
    }
    for (size_t i = 0; i < N_DURATION_UNITS; i++) {
        if (ms % duration_units[i].mult == 0) {
            snprintf(buf, len, "%llu%s",
                     (unsigned long long)(ms / duration_units[i].mult),
                     duration_units[i].unit);
            return;
        }
    }
}

void flags_fmt_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB"};
    size_t u = 0;

    while (u + 1 < sizeof(units) / sizeof(units[0]) && n && n % 1024 == 0) {
        n /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)n, units[u]);
}

/* ------------------------------------------------------------------ */
/* Unit parsers.                                                      */
/* ------------------------------------------------------------------ */

/* A number followed by one of units[0..n): *out = the number times the
 * unit's mult. Returns 0, -EINVAL (no digit first, or not one of the
 * units) or -ERANGE (over max, or over 64 bits: a well-formed value that
 * is too big is out of range, not malformed). */
static int parse_with_unit(const char *s, const struct unit *units, size_t n,
                           uint64_t max, uint64_t *out)
{
    uint64_t v;
    int d = parse_digits(s, &v);
    bool overflow = d < 0;

    if (d == 0)
        return -EINVAL;
    if (overflow) {
        while (ascii_is_digit((unsigned char)*s))
            s++;
        d = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s + d, units[i].unit))
            continue;
        if (overflow || v > max / units[i].mult)
            return -ERANGE;
        *out = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

int flags_parse_duration_ms(const char *s, uint32_t *ms)
{
    uint64_t v;
    int rc;

    /* A bare number is ambiguous (seconds? milliseconds?) unless it is 0
     * ("0", "00", ...); any other one has no unit, so it is refused. */
    if (*s && s[strspn(s, "0")] == '\0') {
        *ms = 0;
        return 0;
    }
    rc = parse_with_unit(s, duration_units, N_DURATION_UNITS,
                         FLAGS_DURATION_MAX_MS, &v);
    if (rc == 0)
        *ms = (uint32_t)v;
    return rc;
}

int flags_parse_size(const char *s, uint64_t *bytes)
{
    static const struct unit units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", KiB(1)},
        {"MiB", MiB(1)},
        {"GiB", GiB(1)},
        {"KB", 1000},
        {"kB", 1000},
        {"MB", 1000 * 1000},
        {"GB", 1000 * 1000 * 1000},
    };

    return parse_with_unit(s, units, ARRAY_SIZE(units), UINT64_MAX, bytes);
}

static int parse_bool(const char *s, bool *v)
{
    if (!strcmp(s, "1") || !strcasecmp(s, "true")) {
        *v = true;
        return 0;
    }
    if (!strcmp(s, "0") || !strcasecmp(s, "false")) {
        *v = false;
        return 0;
    }
    return -EINVAL;
}

/* Returns 0 if s is one of the '|'-separated choices. */
static int parse_choice(const char *choices, const char *s)
{
    size_t len = strlen(s);

    while (*choices) {
        size_t n = strcspn(choices, "|");

        if (n == len && !memcmp(choices, s, n))
            return 0;
        choices += n + (choices[n] == '|');
    }
    return -EINVAL;
}

/* Checks a comma-separated list of origins: each "*" or
 * scheme://host[:port] with scheme http or https, no path. */
static int parse_origins(const char *s)
{
    while (*s) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *host;
        size_t hn;

        while (n && *s == ' ') {
            s++;
            n--;
        }
        while (n && s[n - 1] == ' ')
            n--;
        if (n == 1 && *s == '*')
            goto next;
        if (n > 7 && !strncmp(s, "http://", 7))
            host = s + 7;
        else if (n > 8 && !strncmp(s, "https://", 8))
            host = s + 8;
        else
            return -EINVAL;
        hn = n - (size_t)(host - s);
        if (hn == 0)
            return -EINVAL;
        for (size_t i = 0; i < hn; i++)
            if ((unsigned char)host[i] <= ' ' || host[i] == '/' ||
                host[i] == 0x7f)
                return -EINVAL;
    next:
        if (!end)
            break;
        s = end + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Setting one flag.                                                  */
/* ------------------------------------------------------------------ */

/* Writes "expected ..." for f to buf: the range when out of range (rc ==
 * -ERANGE), else the shape of a good value; for an address, what is
 * wrong with text. */
static void expected(const struct flag *f, const char *text, int rc, char *buf,
                     size_t len)
{
    char lo[32], hi[32];

    switch (f->kind) {
    case FLAG_ADDR:
        addr_explain(text, buf, len);
        break;
    case FLAG_UINT:
        snprintf(buf, len, "expected a whole number from %llu to %llu",
                 (unsigned long long)f->min, (unsigned long long)f->max);
        break;
    case FLAG_DURATION:
        if (rc != -ERANGE) {
            snprintf(buf, len, "expected a duration like 250ms, 10s, 2m%s",
                     f->min == 0 ? " (or 0)" : "");
            break;
        }
        flags_fmt_duration(f->min, lo, sizeof(lo));
        flags_fmt_duration(f->max, hi, sizeof(hi));
        snprintf(buf, len, "expected a duration from %s to %s", lo, hi);
        break;
    case FLAG_SIZE:
        if (rc != -ERANGE) {
            snprintf(buf, len, "expected a size like 512B, 64KiB, 1MiB");
            break;
        }
        flags_fmt_size(f->min, lo, sizeof(lo));
        flags_fmt_size(f->max, hi, sizeof(hi));
        snprintf(buf, len, "expected a size from %s to %s", lo, hi);
        break;
    case FLAG_ENUM: {
        /* "a|b|c" -> "a, b, c". */
        char list[64];
        size_t n = 0;

        for (const char *p = f->choices; *p && n + 3 < sizeof(list); p++) {
            if (*p == '|') {
                list[n++] = ',';
                list[n++] = ' ';
            } else {
                list[n++] = *p;
            }
        }
        list[n] = '\0';
        snprintf(buf, len, "expected one of %s", list);
        break;
    }
    case FLAG_BOOL:
        snprintf(buf, len, "expected 1, 0, true or false");
        break;
    case FLAG_ORIGINS:
        snprintf(buf, len,
                 "expected origins like https://example.com,"
                 "http://localhost:8080 (comma-separated), or *");
        break;
    case FLAG_PATH:
        snprintf(buf, len, "expected a file name shorter than %zu bytes",
                 f->len);
        break;
    case FLAG_TEXT:
        snprintf(buf, len, "expected at most %zu bytes", f->len - 1);
        break;
    }
}

/* Copies text into the char[] field of f if it fits. Returns 0 or
 * -ERANGE. */
static int store_text(char *field, const struct flag *f, const char *text)
{
    size_t n = strlen(text);

    if (n >= f->len)
        return -ERANGE;
    memcpy(field, text, n + 1);
    return 0;
}

/* Parses text as f's kind, checks the range and stores it in dst.
 * Returns 0 or -EINVAL / -ERANGE (out of range included); dst is
 * unchanged on error. */
static int store(void *dst, const struct flag *f, const char *text)
{
    char *field = (char *)dst + f->off;
    uint64_t v = 0;
    uint32_t ms;
    int rc = 0;

    switch (f->kind) {
    case FLAG_ADDR: {
        char host[256];
        uint16_t port;

        /* An address without a default may be left empty: off. */
        rc = !*text && !(f->def && *f->def)
                 ? 0
                 : addr_parse(text, host, sizeof(host), &port);
        return rc ? rc : store_text(field, f, text);
    }
    case FLAG_ORIGINS:
        rc = parse_origins(text);
        return rc ? rc : store_text(field, f, text);
    case FLAG_PATH:
    case FLAG_TEXT:
        return store_text(field, f, text);
    case FLAG_ENUM:
        rc = parse_choice(f->choices, text);
        return rc ? rc : store_text(field, f, text);
    case FLAG_BOOL: {
        bool b;

        rc = parse_bool(text, &b);
        if (rc == 0)
            memcpy(field, &b, sizeof(b));
        return rc;
    }
    case FLAG_UINT: {
        int d = parse_digits(text, &v);

        if (d == 0 || (d > 0 && text[d] != '\0'))
            return -EINVAL;
        if (d < 0)
            return -ERANGE;
        break;
    }
    case FLAG_DURATION:
        rc = flags_parse_duration_ms(text, &ms);
        v = ms;
        break;
    case FLAG_SIZE:
        rc = flags_parse_size(text, &v);
        break;
    }
    if (rc < 0)
        return rc;
    if (v < f->min || v > f->max)
        return -ERANGE;
    if (f->len == sizeof(uint32_t)) {
        uint32_t v32 = (uint32_t)v;

        memcpy(field, &v32, sizeof(v32));
    } else {
        memcpy(field, &v, sizeof(v));
    }
    return 0;
}

/* store() with the message: src is the environment variable the value
 * came from, or NULL for the command line. Returns 0 or -1. */
static int set_flag(void *dst, const struct flag *f, const char *text,
                    const char *src, char *err, size_t errlen)
{
    char want[160], from[64] = "";
    int rc = store(dst, f, text);
    size_t n = strlen(text);

    if (rc == 0)
        return 0;
    expected(f, text, rc, want, sizeof(want));
    if (src)
        snprintf(from, sizeof(from), " (from %s)", src);
    flags_set_err(err, errlen, "invalid value \"%.*s%s\" for --%s%s: %s",
                  n > QUOTE_MAX ? QUOTE_CUT : (int)n, text,
                  n > QUOTE_MAX ? "..." : "", f->name, from, want);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Defaults, environment, command line.                               */
/* ------------------------------------------------------------------ */

/* True if the row's field has the size its kind stores. */
static bool row_ok(const struct flag *f)
{
    switch (f->kind) {
    case FLAG_UINT:
    case FLAG_DURATION:
        return f->len == sizeof(uint32_t);
    case FLAG_SIZE:
        return f->len == sizeof(uint64_t);
    case FLAG_BOOL:
        return f->len == sizeof(bool);
    case FLAG_ENUM:
        return f->len > 1 && f->choices;
    case FLAG_ADDR:
    case FLAG_ORIGINS:
    case FLAG_PATH:
    case FLAG_TEXT:
        return f->len > 1;
    }
    return false;
}

void flags_defaults(const struct flag_table *t, void *dst)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct flag *f = &t->flags[i];
        int rc = f->def && *f->def ? store(dst, f, f->def) : 0;

        /* A bad row or a default that does not parse is a bug in the
         * table, not a user error. */
        assert(row_ok(f) && rc == 0);
        (void)rc;
        (void)row_ok;
    }
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t len = strlen(name);

    if (!envp)
        return NULL;
    for (; *envp; envp++)
        if (!strncmp(*envp, name, len) && (*envp)[len] == '=')
            return *envp + len + 1;
    return NULL;
}

static int apply_env(const struct flag_table *t, void *dst, char **envp,
                     char *err, size_t errlen)
{
    if (!t->env_prefix)
        return 0;
    for (size_t i = 0; i < t->n; i++) {
        char name[64];
        const char *v;

        flags_env_name(t->env_prefix, &t->flags[i], name, sizeof(name));
        v = env_lookup(envp, name);
        if (v && *v && set_flag(dst, &t->flags[i], v, name, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Splits "--name" or "--name=value". Returns the flag, or NULL. */
static const struct flag *split_flag(const struct flag_table *t,
                                     const char *word, const char **value)
{
    const char *name = word + 2, *eq;

    *value = NULL;
    if (strncmp(word, "--", 2))
        return NULL;
    eq = strchr(name, '=');
    if (eq)
        *value = eq + 1;
    return flags_find(t, name, eq ? (size_t)(eq - name) : strlen(name));
}

/* A word that follows a flag is its value unless it looks like a flag:
 * no value of any flag starts with '-'. */
static bool takes_next(const struct flag *f, const char *value,
                       const char *next)
{
    return f && f->kind != FLAG_BOOL && !value && next && next[0] != '-';
}

const char *flags_find_word(const struct flag_table *t, int argc, char **argv,
                            const char *const *words)
{
    for (int i = 0; i < argc; i++) {
        const char *value;
        const struct flag *f = split_flag(t, argv[i], &value);

        for (const char *const *w = words; *w; w++)
            if (!strcmp(argv[i], *w))
                return *w;
        if (takes_next(f, value, i + 1 < argc ? argv[i + 1] : NULL))
            i++;
    }
    return NULL;
}

static int apply_args(const struct flag_table *t, void *dst, int argc,
                      char **argv, unsigned mode_bit, const char *mode_name,
                      char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *value, *next = i + 1 < argc ? argv[i + 1] : NULL;
        const struct flag *f = split_flag(t, argv[i], &value);

        if (!f && argv[i][0] != '-') {
            flags_set_err(err, errlen,
                          "unexpected argument \"%s\" (see %s --help)", argv[i],
                          t->cmd);
            return -1;
        }
        if (!f) {
            flags_set_err(err, errlen, "unknown flag \"%.*s\" (see %s --help)",
                          (int)strcspn(argv[i], "="), argv[i], t->cmd);
            return -1;
        }
        if (mode_bit && !(f->modes & mode_bit)) {
            flags_set_err(err, errlen,
                          "--%s does not apply to %s %s (see %s --help)",
                          f->name, t->cmd, mode_name, t->cmd);
            return -1;
        }
        if (f->kind == FLAG_BOOL && !value)
            value = "true";
        if (takes_next(f, value, next))
            value = argv[++i];
        if (!value) {
            flags_set_err(err, errlen, "flag --%s needs a value", f->name);
            return -1;
        }
        if (set_flag(dst, f, value, NULL, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int flags_parse(const struct flag_table *t, void *dst, int argc, char **argv,
                char **envp, unsigned mode_bit, const char *mode_name,
                char *err, size_t errlen)
{
    flags_set_err(err, errlen, "%s", "");
    if (apply_env(t, dst, envp, err, errlen) < 0)
        return -1;
    return apply_args(t, dst, argc, argv, mode_bit, mode_name, err, errlen);
}

/* ------------------------------------------------------------------ */
/* --help.                                                            */
/* ------------------------------------------------------------------ */

const char *flags_metavar(const struct flag *f)
{
    static const char *const names[] = {
        [FLAG_ADDR] = "ADDR",         [FLAG_UINT] = "N",
        [FLAG_DURATION] = "DURATION", [FLAG_SIZE] = "SIZE",
        [FLAG_ENUM] = "WORD",         [FLAG_BOOL] = "",
        [FLAG_ORIGINS] = "LIST",      [FLAG_PATH] = "FILE",
        [FLAG_TEXT] = "TEXT",
    };

    return f->arg ? f->arg : names[f->kind];
}

void flags_wrap(FILE *out, const char *text, int used, int indent)
{
    int col = used;
    bool first = true, glued = false;

    while (*text) {
        int n = (int)strcspn(text, " ");

        /* A word longer than a line (a cipher list) breaks after its
         * ':' and ',' instead of running past the edge. */
        if (n > HELP_WIDTH - indent) {
            int k = (int)strcspn(text, ":,");

            if (k + 1 < n)
                n = k + 1;
        }
        if (n > 0) {
            if (!first && col + !glued + n > HELP_WIDTH) {
                fprintf(out, "\n%*s", indent, "");
                col = indent;
            } else if (!first && !glued) {
                fputc(' ', out);
                col++;
            }
            fprintf(out, "%.*s", n, text);
            col += n;
            first = false;
        }
        text += n;
        glued = *text && *text != ' ';
        while (*text == ' ')
            text++;
    }
    fputc('\n', out);
}

int flags_help_column(const struct flag_table *t)
{
    char left[64];
    int width = 0;

    for (size_t i = 0; i < t->n; i++) {
        int n = snprintf(left, sizeof(left), "  --%s %s", t->flags[i].name,
                         flags_metavar(&t->flags[i]));
        width = n > width ? n : width;
    }
    return width + 2;
}

void flags_print_row(FILE *out, int col, const char *left, const char *text)
{
    int n = (int)strlen(left);

    fprintf(out, "%-*s", col, left);
    flags_wrap(out, text, n > col ? n : col, col);
}

void flags_print_flag(FILE *out, int col, const struct flag *f,
                      const char *text)
{
    char left[64];

    snprintf(left, sizeof(left), "  --%s %s", f->name, flags_metavar(f));
    flags_print_row(out, col, left, text);
}
