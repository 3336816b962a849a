/*
 * flags.h - the flag-table engine of the `moor` command: `moor serve`
 * (config.c) and `moor bench` (bench/bench_flags.c) each describe their
 * flags in one table of struct flag, and this file parses them (defaults,
 * environment, command line), explains a bad value in one line, and lays
 * out --help. So both commands take the same spellings ("--flag value",
 * "--flag=value", durations, sizes, booleans) and say the same things
 * about them.
 *
 * Units: durations take ms, s, m, h ("250ms", "10s", "2m"); "0" alone
 * means zero/off. Sizes take B, KiB, MiB, GiB (powers of 1024), KB, MB,
 * GB (powers of 1000), or a plain number of bytes.
 *
 * Precedence: command-line flag > environment variable (when the table
 * has an environment prefix: --foo-bar is MOOR_FOO_BAR) > config file
 * (flags_parse_file(), when the command reads one) > default. An
 * environment variable set to the empty string counts as unset.
 *
 * A config file is one setting a line, "name value" or "name = value"
 * (the flag's name without "--"), '#' comments, blank lines, the value
 * optionally in double or single quotes (taken literally between the
 * first and the last quote, so "" is the empty value). It is read
 * through a fixed line buffer: at most FLAGS_FILE_MAX bytes, lines of at
 * most FLAGS_LINE_MAX bytes.
 *
 * It never allocates: every field a table fills has a fixed size.
 */
#ifndef MOOR_FLAGS_H
#define MOOR_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Ticks are 32-bit milliseconds compared with wrap-safe arithmetic, so a
 * deadline must stay under 2^31 ms (24.8 days). 24 days is the round
 * number under it, and the longest duration any flag takes. */
#define FLAGS_DURATION_MAX_MS (24u * 24 * 3600 * 1000)

/* A config file: bytes at most, bytes a line at most (the longest value
 * of any table, 2 KiB, quoted, with its name, fits), rows of a table
 * (the duplicate check keeps one byte per row). */
#define FLAGS_FILE_MAX (1024u * 1024)
#define FLAGS_LINE_MAX 4096u
#define FLAGS_ROWS_MAX 256u

enum flag_kind {
    FLAG_ADDR,     /* char[]: host:port, [v6]:port or :port (addr.h) */
    FLAG_UINT,     /* uint32_t */
    FLAG_DURATION, /* uint32_t, milliseconds */
    FLAG_SIZE,     /* uint64_t, bytes */
    FLAG_ENUM,     /* char[]: one of flag.choices */
    FLAG_BOOL,     /* bool: no value on the command line */
    FLAG_ORIGINS,  /* char[]: comma-separated origins, "*", or empty */
    FLAG_PATH,     /* char[]: a file name, or empty */
    FLAG_TEXT,     /* char[]: free text checked by its user (a list, a URL) */
};

struct flag {
    const char *name; /* long flag without the leading "--" */
    enum flag_kind kind;
    size_t off; /* offsetof(struct that the table fills, field) */
    size_t len; /* sizeof the field, checked against the kind */
    /* Default as text, parsed like a value, so the default --help shows
     * is the default the command runs with. NULL or "": none, the field
     * stays zero (an empty address or file name; a number the command
     * decides later). */
    const char *def;
    uint64_t min, max;   /* uint: value; duration: ms; size: bytes */
    const char *choices; /* FLAG_ENUM: "a|b|c" */
    const char *arg;     /* metavariable in --help; NULL = per kind */
    const char *help;    /* one sentence, no final period */
    const char *metric;  /* serve: series that counts it biting, or "-" */
    unsigned modes;      /* bench: bit i set = applies to mode i */
    bool reload;         /* serve: SIGHUP applies a new value from --config */
};

/* Fills .off and .len of a row for field f of struct type. */
#define FLAG_FIELD(type, f)                                                    \
    .off = offsetof(type, f), .len = sizeof(((type *)0)->f)

struct flag_table {
    const struct flag *flags;
    size_t n;
    const char *cmd;        /* "moor serve": errors say "see CMD --help" */
    const char *env_prefix; /* "MOOR_", or NULL: no environment */
    /* Words of the command that are not rows, NULL-terminated (or NULL):
     * flags_parse() lets them by. "--word" alone, or "--word=" for one
     * that takes a value ("--config FILE", "--config=FILE"). */
    const char *const *extra;
};

/* Sets every flag of t that has a default in dst (which the caller has
 * zeroed). A default that does not parse is a bug in the table: it
 * asserts. */
void flags_defaults(const struct flag_table *t, void *dst);

/*
 * Applies the environment (envp: NULL-terminated "NAME=value" strings,
 * NULL = none; only if t has an env_prefix), then argv[0..argc), to dst.
 * Accepts "--flag value" and "--flag=value"; a boolean flag takes no
 * value but accepts "=1", "=0", "=true", "=false". A word that follows a
 * flag is its value unless it starts with '-'. With mode_bit non-zero, a
 * flag whose .modes lacks it is refused as not applying to mode_name.
 * Returns 0, or -1 with one line in err naming the flag, the bad value,
 * where it came from when not the command line, and what is expected,
 * e.g.
 *   invalid value "10x" for --idle-timeout: expected a duration like
 *   250ms, 10s, 2m
 */
int flags_parse(const struct flag_table *t, void *dst, int argc, char **argv,
                char **envp, unsigned mode_bit, const char *mode_name,
                char *err, size_t errlen);

/*
 * Applies the config file at path to dst: every "name value" line as the
 * flag of that name would be. Returns 0, or -1 with one line in err that
 * starts "PATH:LINE: " for a line that cannot be parsed, an unknown name
 * (with the closest name when one is near: did you mean), a name given
 * twice, or a bad value; or "cannot read config file PATH: why". dst may
 * be partly changed on error: parse into a copy to keep the old one.
 */
int flags_parse_file(const struct flag_table *t, void *dst, const char *path,
                     char *err, size_t errlen);

/* The value of the extra word w ("--config=") on the command line, or
 * NULL if it is not there ("" if it has no value). */
const char *flags_extra_value(const struct flag_table *t, int argc, char **argv,
                              const char *w);

/* The row whose name is closest to name (a misspelling: at most a third
 * of its letters off, and 2 at least), or NULL. */
const struct flag *flags_suggest(const struct flag_table *t, const char *name);

/* Writes f's value in src (the struct the table fills) as text that
 * parses back to the same value: durations and sizes in the largest
 * exact unit, booleans as true/false. */
void flags_fmt_value(const struct flag *f, const void *src, char *buf,
                     size_t len);
/* True if f's field holds the same value in a and b. */
bool flags_same(const struct flag *f, const void *a, const void *b);
/* Copies f's field from src to dst. */
void flags_copy(const struct flag *f, void *dst, const void *src);

/* The first word of argv that is one of words (a NULL-terminated list),
 * not counting a flag's value; or NULL. For --help, which wins over
 * anything else on the command line. */
const char *flags_find_word(const struct flag_table *t, int argc, char **argv,
                            const char *const *words);

/* The row named name[0..len), or NULL. */
const struct flag *flags_find(const struct flag_table *t, const char *name,
                              size_t len);

/* --help layout. Every flag is one row: "  --name METAVAR" padded to
 * flags_help_column(), then its text wrapped at 80 columns and indented
 * to that column. */
int flags_help_column(const struct flag_table *t);
const char *flags_metavar(const struct flag *f);
void flags_print_row(FILE *out, int col, const char *left, const char *text);
void flags_print_flag(FILE *out, int col, const struct flag *f,
                      const char *text);
/* Prints text word-wrapped at 80 columns. The caller has already printed
 * `used` columns of the first line; later lines are indented to
 * `indent`. A word longer than a line breaks after its ':' and ','. */
void flags_wrap(FILE *out, const char *text, int used, int indent);

/* snprintf() into err[0..errlen) (nothing when err is NULL or errlen 0):
 * the one-line errors of flags_parse() and of a table's own checks. */
void flags_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* prefix + the flag's name upper-cased with '-' turned into '_'. */
void flags_env_name(const char *prefix, const struct flag *f, char *buf,
                    size_t len);

/* Unit parsers. Return 0 or -EINVAL (or -ERANGE: over 24 days, over
 * 64 bits). */
int flags_parse_duration_ms(const char *s, uint32_t *ms);
int flags_parse_size(const char *s, uint64_t *bytes);

/* Formats ms in the largest unit that holds it exactly ("90s", "2m"),
 * bytes in the largest power-of-1024 unit ("64KiB"). */
void flags_fmt_duration(uint64_t ms, char *buf, size_t len);
void flags_fmt_size(uint64_t n, char *buf, size_t len);

#endif
