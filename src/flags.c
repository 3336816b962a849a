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
 * - A config file is read through one fixed line buffer on the stack and
 *   is at most FLAGS_FILE_MAX bytes; every error names PATH:LINE.
 *
 * What it must not do. Allocate, touch the process environment other than
 * through envp, or know any table's flags.
 */
#include "flags.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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

/* The spellings a config file uses too (yes/no, on/off), so a line can
 * say "tls-tickets on" the way nginx and Redis files do. */
static int parse_bool(const char *s, bool *v)
{
    if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
        !strcasecmp(s, "on")) {
        *v = true;
        return 0;
    }
    if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
        !strcasecmp(s, "off")) {
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
        snprintf(buf, len,
                 "expected true or false (or 1, 0, yes, no, on, "
                 "off)");
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

/* If word is one of t's extra words, returns 1 and sets *value (its
 * "=value", else NULL) and *takes (it takes a value); else 0. */
static int split_extra(const struct flag_table *t, const char *word,
                       const char **value, bool *takes)
{
    if (!t->extra)
        return 0;
    for (const char *const *w = t->extra; *w; w++) {
        size_t n = strcspn(*w, "=");

        if (strncmp(word, *w, n) || (word[n] && word[n] != '='))
            continue;
        *takes = (*w)[n] == '=';
        *value = word[n] == '=' ? word + n + 1 : NULL;
        return 1;
    }
    return 0;
}

const char *flags_extra_value(const struct flag_table *t, int argc, char **argv,
                              const char *w)
{
    size_t n = strcspn(w, "=");

    for (int i = 0; i < argc; i++) {
        const char *value;
        bool takes = false;

        if (!split_extra(t, argv[i], &value, &takes)) {
            const struct flag *f = split_flag(t, argv[i], &value);

            if (f && f->kind != FLAG_BOOL && !value && i + 1 < argc &&
                argv[i + 1][0] != '-')
                i++;
            continue;
        }
        if (strncmp(argv[i], w, n) || (argv[i][n] && argv[i][n] != '='))
            continue;
        if (!value && takes && i + 1 < argc && argv[i + 1][0] != '-')
            value = argv[i + 1];
        return value ? value : "";
    }
    return NULL;
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
        const char *value, *next = i + 1 < argc ? argv[i + 1] : NULL;
        const struct flag *f = split_flag(t, argv[i], &value);
        bool takes = false;

        for (const char *const *w = words; *w; w++)
            if (!strcmp(argv[i], *w))
                return *w;
        if (takes_next(f, value, next) ||
            (split_extra(t, argv[i], &value, &takes) && takes && !value &&
             next && next[0] != '-'))
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
        bool takes = false;

        if (!f && split_extra(t, argv[i], &value, &takes)) {
            /* Not a row: the command reads it (--config FILE). */
            if (takes && !value && (!next || next[0] == '-')) {
                flags_set_err(err, errlen, "flag %s needs a value", argv[i]);
                return -1;
            }
            if (!takes && value) {
                flags_set_err(err, errlen, "flag %.*s takes no value",
                              (int)strcspn(argv[i], "="), argv[i]);
                return -1;
            }
            if (takes && !value)
                i++;
            continue;
        }
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
/* A config file.                                                     */
/* ------------------------------------------------------------------ */

/* Edit distance of a and b (each under 64 bytes; longer: far). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];

    if (la >= 64 || lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

const struct flag *flags_suggest(const struct flag_table *t, const char *name)
{
    size_t len = strlen(name), limit = len / 3 > 2 ? len / 3 : 2;
    size_t best = SIZE_MAX;
    const struct flag *hit = NULL;

    if (!strncmp(name, "--", 2) && flags_find(t, name + 2, len - 2))
        return flags_find(t, name + 2, len - 2);
    for (size_t i = 0; i < t->n; i++) {
        size_t d = distance(name, t->flags[i].name);

        if (d < best) {
            best = d;
            hit = &t->flags[i];
        }
    }
    return best <= limit ? hit : NULL;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* One line (NUL-terminated, no newline) of the file into dst. seen[i]:
 * the line row i was set on, 0 = not yet. Returns 0 or -1 with err
 * (without the "PATH:LINE: " prefix). */
static int file_line(const struct flag_table *t, void *dst, char *line,
                     unsigned lineno, unsigned *seen, char *err, size_t errlen)
{
    char *p = line, *name, *value, *end;
    const struct flag *f;
    size_t n;

    while (is_space(*p))
        p++;
    if (!*p || *p == '#')
        return 0;
    name = p;
    while (*p && !is_space(*p) && *p != '=')
        p++;
    n = (size_t)(p - name);
    while (is_space(*p))
        p++;
    if (*p == '=')
        p++;
    while (is_space(*p))
        p++;
    if (*p == '"' || *p == '\'') {
        /* Literal up to the last quote of its kind; after it only
         * blanks or a comment. */
        char q = *p;

        value = p + 1;
        end = strrchr(value, q);
        if (!end) {
            flags_set_err(err, errlen,
                          "unterminated %s quote in the value "
                          "of \"%.*s\"",
                          q == '"' ? "double" : "single", (int)MIN(n, 64),
                          name);
            return -1;
        }
        for (p = end + 1; is_space(*p); p++)
            ;
        if (*p && *p != '#') {
            flags_set_err(err, errlen,
                          "text after the closing quote of "
                          "\"%.*s\"'s value",
                          (int)MIN(n, 64), name);
            return -1;
        }
    } else {
        /* Up to a '#' after a blank, or the end; blanks trimmed. */
        value = p;
        for (end = p; *end && !(*end == '#' && end > line && is_space(end[-1]));
             end++)
            ;
        while (end > value && is_space(end[-1]))
            end--;
    }
    *end = '\0';
    name[n] = '\0';
    f = flags_find(t, name, n);
    if (!f) {
        const struct flag *near = flags_suggest(t, name);

        if (near)
            flags_set_err(err, errlen,
                          "unknown setting \"%.64s\" (did you mean \"%s\"?)",
                          name, near->name);
        else
            flags_set_err(err, errlen,
                          "unknown setting \"%.64s\" (see %s --help)", name,
                          t->cmd);
        return -1;
    }
    if (seen[f - t->flags]) {
        flags_set_err(err, errlen, "\"%s\" is set twice (first on line %u)",
                      f->name, seen[f - t->flags]);
        return -1;
    }
    seen[f - t->flags] = lineno;
    if (!*value && value == p) {
        /* "name" alone: unclear whether empty was meant; "" says it. */
        bool text = f->kind == FLAG_ADDR || f->kind == FLAG_PATH ||
                    f->kind == FLAG_TEXT || f->kind == FLAG_ORIGINS;

        flags_set_err(err, errlen, "\"%s\" needs a value%s%s%s", f->name,
                      text ? " (write " : "", text ? f->name : "",
                      text ? " \"\" for empty)" : "");
        return -1;
    }
    return set_flag(dst, f, value, NULL, err, errlen);
}

int flags_parse_file(const struct flag_table *t, void *dst, const char *path,
                     char *err, size_t errlen)
{
    char line[FLAGS_LINE_MAX + 1], chunk[4096], why[FLAGS_LINE_MAX / 2];
    unsigned seen[FLAGS_ROWS_MAX] = {0}, lineno = 1;
    size_t used = 0, total = 0;
    bool last = false;
    int fd, rc = 0;

    assert(t->n <= FLAGS_ROWS_MAX);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        flags_set_err(err, errlen, "cannot read config file %s: %s", path,
                      strerror(errno));
        return -1;
    }
    while (!last && rc == 0) {
        ssize_t got = read(fd, chunk, sizeof(chunk));

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            flags_set_err(err, errlen, "cannot read config file %s: %s", path,
                          strerror(errno));
            rc = -1;
            break;
        }
        total += (size_t)got;
        if (total > FLAGS_FILE_MAX) {
            flags_set_err(err, errlen,
                          "%s: longer than %u bytes: not a config file?", path,
                          FLAGS_FILE_MAX);
            rc = -1;
            break;
        }
        if (got == 0) {
            last = true;
            if (used == 0)
                break;
            chunk[0] = '\n'; /* a last line without its newline */
            got = 1;
        }
        for (ssize_t i = 0; i < got && rc == 0; i++) {
            char ch = chunk[i];

            if (ch != '\n') {
                if (used == FLAGS_LINE_MAX || ch == '\0') {
                    flags_set_err(err, errlen, "%s:%u: %s", path, lineno,
                                  ch ? "line too long (over 4096 bytes)"
                                     : "a NUL byte: not a text file?");
                    rc = -1;
                    break;
                }
                line[used++] = ch;
                continue;
            }
            if (used && line[used - 1] == '\r')
                used--;
            line[used] = '\0';
            if (file_line(t, dst, line, lineno, seen, why, sizeof(why)) < 0) {
                flags_set_err(err, errlen, "%s:%u: %s", path, lineno, why);
                rc = -1;
            }
            used = 0;
            lineno++;
        }
    }
    close(fd);
    return rc;
}

void flags_fmt_value(const struct flag *f, const void *src, char *buf,
                     size_t len)
{
    const char *field = (const char *)src + f->off;
    uint32_t v32;
    uint64_t v64;
    bool b;

    switch (f->kind) {
    case FLAG_UINT:
        memcpy(&v32, field, sizeof(v32));
        snprintf(buf, len, "%u", v32);
        break;
    case FLAG_DURATION:
        memcpy(&v32, field, sizeof(v32));
        flags_fmt_duration(v32, buf, len);
        break;
    case FLAG_SIZE:
        memcpy(&v64, field, sizeof(v64));
        flags_fmt_size(v64, buf, len);
        break;
    case FLAG_BOOL:
        memcpy(&b, field, sizeof(b));
        snprintf(buf, len, "%s", b ? "true" : "false");
        break;
    default:
        snprintf(buf, len, "%.*s", (int)f->len, field);
        break;
    }
}

bool flags_same(const struct flag *f, const void *a, const void *b)
{
    const char *fa = (const char *)a + f->off, *fb = (const char *)b + f->off;

    switch (f->kind) {
    case FLAG_UINT:
    case FLAG_DURATION:
    case FLAG_SIZE:
    case FLAG_BOOL:
        return !memcmp(fa, fb, f->len);
    default:
        return !strncmp(fa, fb, f->len);
    }
}

void flags_copy(const struct flag *f, void *dst, const void *src)
{
    memcpy((char *)dst + f->off, (const char *)src + f->off, f->len);
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
