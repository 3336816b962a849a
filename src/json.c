/*
 * json.c - the strict JSON reader of json.h: a recursive descent whose
 * depth is the document's nesting (bounded by max_depth), building the
 * flat node array as it goes.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* Recursion is one frame per container level; whatever a caller asks,
 * this many is the most that is ever nested. */
#define JSON_DEPTH_CEILING 64

struct parser {
    const uint8_t *s;
    size_t n;
    size_t pos;
    size_t out; /* next free byte of d->strings */
    unsigned max_depth;
    struct json_doc *d;
};

static enum json_error fail(struct parser *p, enum json_error e,
                            const char *why)
{
    p->d->err_at = p->pos;
    p->d->why = why;
    return e;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

/* Appends a node; its index in *idx. Grows the array by doubling: a node
 * consumes at least one input byte, so there are never more than n. */
static enum json_error add_node(struct parser *p, enum json_type t, size_t *idx)
{
    struct json_doc *d = p->d;

    if (d->n_nodes == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct json_node *nn = mem_realloc(d->tag, d->nodes, cap * sizeof(*nn));

        if (!nn)
            return fail(p, JSON_ERR_NO_MEMORY, "out of memory");
        d->nodes = nn;
        d->cap = cap;
    }
    *idx = d->n_nodes++;
    memset(&d->nodes[*idx], 0, sizeof(d->nodes[*idx]));
    d->nodes[*idx].type = (uint8_t)t;
    d->nodes[*idx].end = (uint32_t)d->n_nodes;
    return JSON_OK;
}

/* ---- strings ------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence of two or more bytes at s[0..n),
 * or 0 (overlong, surrogate, past U+10FFFF, truncated, bad lead). */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t lo = 0x80, hi = 0xBF;
    size_t len, i;

    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    /* The second byte's range rules out overlongs and surrogates. */
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

static int hex4(const uint8_t *s, size_t n, uint32_t *v)
{
    size_t i;

    if (n < 4)
        return -1;
    *v = 0;
    for (i = 0; i < 4; i++) {
        uint8_t c = s[i];
        uint32_t x;

        if (c >= '0' && c <= '9')
            x = c - '0';
        else if (c >= 'a' && c <= 'f')
            x = c - 'a' + 10u;
        else if (c >= 'A' && c <= 'F')
            x = c - 'A' + 10u;
        else
            return -1;
        *v = *v << 4 | x;
    }
    return 0;
}

static size_t put_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* \uXXXX at s[pos] (just past the 'u'), with its low surrogate if it is a
 * high one. The decoded form is never longer than the escape: 6 bytes
 * give at most 3, 12 give 4. */
static enum json_error unicode_escape(struct parser *p, uint8_t *o, size_t *w)
{
    uint32_t cp, lo;

    if (hex4(p->s + p->pos, p->n - p->pos, &cp) < 0)
        return fail(p, JSON_ERR_SYNTAX, "bad \\u escape");
    p->pos += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(p, JSON_ERR_SYNTAX, "lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->n - p->pos < 6 || p->s[p->pos] != '\\' ||
            p->s[p->pos + 1] != 'u' ||
            hex4(p->s + p->pos + 2, p->n - p->pos - 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return fail(p, JSON_ERR_SYNTAX, "lone high surrogate");
        p->pos += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    *w += put_utf8(o + *w, cp);
    return JSON_OK;
}

static int simple_escape(uint8_t c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return c;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

/* The string at s[pos] (its opening quote), decoded into the strings
 * block as a new node. */
static enum json_error parse_string(struct parser *p, size_t *idx)
{
    uint8_t *o = (uint8_t *)p->d->strings + p->out;
    size_t w = 0, len;
    enum json_error e;

    p->pos++;
    for (;;) {
        uint8_t c;

        if (p->pos >= p->n)
            return fail(p, JSON_ERR_SYNTAX, "unterminated string");
        c = p->s[p->pos];
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(p, JSON_ERR_SYNTAX, "control character in string");
        if (c == '\\') {
            int x;

            if (++p->pos >= p->n)
                return fail(p, JSON_ERR_SYNTAX, "unterminated string");
            if (p->s[p->pos] == 'u') {
                p->pos++;
                e = unicode_escape(p, o, &w);
                if (e)
                    return e;
                continue;
            }
            x = simple_escape(p->s[p->pos]);
            if (x < 0)
                return fail(p, JSON_ERR_SYNTAX, "bad escape");
            o[w++] = (uint8_t)x;
            p->pos++;
        } else if (c < 0x80) {
            o[w++] = c;
            p->pos++;
        } else {
            len = utf8_seq(p->s + p->pos, p->n - p->pos);
            if (!len)
                return fail(p, JSON_ERR_SYNTAX, "invalid UTF-8");
            memcpy(o + w, p->s + p->pos, len);
            w += len;
            p->pos += len;
        }
    }
    p->pos++;
    o[w] = 0;
    e = add_node(p, JSON_STRING, idx);
    if (e)
        return e;
    p->d->nodes[*idx].v.off = (uint32_t)p->out;
    p->d->nodes[*idx].len = (uint32_t)w;
    p->out += w + 1;
    return JSON_OK;
}

/* ---- numbers and literals ----------------------------------------------- */

static size_t digits(struct parser *p)
{
    size_t start = p->pos;

    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    return p->pos - start;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? then strtod() on a
 * NUL-terminated copy placed at the free end of the strings block (the
 * number's own input bytes are at least as many as the copy needs, less
 * its NUL, and the block has one byte to spare). */
static enum json_error parse_number(struct parser *p, size_t *idx)
{
    size_t start = p->pos, len;
    char *copy = p->d->strings + p->out;
    enum json_error e;

    if (p->s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->n && p->s[p->pos] == '0')
        p->pos++;
    else if (!digits(p))
        return fail(p, JSON_ERR_SYNTAX, "bad number");
    if (p->pos < p->n && p->s[p->pos] == '.') {
        p->pos++;
        if (!digits(p))
            return fail(p, JSON_ERR_SYNTAX, "bad number fraction");
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (!digits(p))
            return fail(p, JSON_ERR_SYNTAX, "bad number exponent");
    }
    len = p->pos - start;
    memcpy(copy, p->s + start, len);
    copy[len] = 0;
    e = add_node(p, JSON_NUMBER, idx);
    if (e)
        return e;
    p->d->nodes[*idx].v.num = strtod(copy, NULL);
    return JSON_OK;
}

static enum json_error parse_literal(struct parser *p, size_t *idx)
{
    static const struct {
        const char *word;
        enum json_type t;
    } lit[] = {{"null", JSON_NULL}, {"false", JSON_FALSE}, {"true", JSON_TRUE}};
    size_t i, len;

    for (i = 0; i < sizeof(lit) / sizeof(lit[0]); i++) {
        len = strlen(lit[i].word);
        if (p->n - p->pos >= len && !memcmp(p->s + p->pos, lit[i].word, len)) {
            p->pos += len;
            return add_node(p, lit[i].t, idx);
        }
    }
    return fail(p, JSON_ERR_SYNTAX, "unexpected character");
}

/* ---- containers --------------------------------------------------------- */

static enum json_error parse_value(struct parser *p, unsigned depth,
                                   size_t *idx);

/* Is the name at node k already a name of object obj (whose earlier
 * members are complete)? */
static bool duplicate_name(const struct json_doc *d, size_t obj, size_t k)
{
    size_t i = obj + 1;

    while (i < k) {
        if (d->nodes[i].len == d->nodes[k].len &&
            !memcmp(json_str(d, i), json_str(d, k), d->nodes[k].len))
            return true;
        i = d->nodes[i + 1].end;
    }
    return false;
}

static enum json_error parse_member(struct parser *p, size_t obj,
                                    unsigned depth)
{
    size_t k, v;
    enum json_error e;

    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != '"')
        return fail(p, JSON_ERR_SYNTAX, "expected a member name");
    e = parse_string(p, &k);
    if (e)
        return e;
    if (duplicate_name(p->d, obj, k))
        return fail(p, JSON_ERR_DUPLICATE, "duplicate member");
    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':')
        return fail(p, JSON_ERR_SYNTAX, "expected ':'");
    p->pos++;
    return parse_value(p, depth, &v);
}

/* The array or object at s[pos] (its opening bracket). */
static enum json_error parse_container(struct parser *p, unsigned depth,
                                       size_t *idx)
{
    bool obj = p->s[p->pos] == '{';
    uint8_t close = obj ? '}' : ']';
    uint32_t count = 0;
    enum json_error e;
    size_t c;

    if (depth >= p->max_depth)
        return fail(p, JSON_ERR_DEPTH, "nested too deep");
    e = add_node(p, obj ? JSON_OBJECT : JSON_ARRAY, idx);
    if (e)
        return e;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        return JSON_OK;
    }
    for (;;) {
        if (obj && count == JSON_MAX_MEMBERS)
            return fail(p, JSON_ERR_LIMIT, "too many members");
        e = obj ? parse_member(p, *idx, depth + 1)
                : parse_value(p, depth + 1, &c);
        if (e)
            return e;
        count++;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == close)
            break;
        return fail(p, JSON_ERR_SYNTAX,
                    obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->pos++;
    p->d->nodes[*idx].count = count;
    p->d->nodes[*idx].end = (uint32_t)p->d->n_nodes;
    return JSON_OK;
}

static enum json_error parse_value(struct parser *p, unsigned depth,
                                   size_t *idx)
{
    uint8_t c;

    skip_ws(p);
    if (p->pos >= p->n)
        return fail(p, JSON_ERR_SYNTAX, "unexpected end");
    c = p->s[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, depth, idx);
    if (c == '"')
        return parse_string(p, idx);
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p, idx);
    return parse_literal(p, idx);
}

enum json_error json_parse(struct json_doc *d, const char *s, size_t n,
                           unsigned max_depth, enum mem_tag tag)
{
    struct parser p = {.s = (const uint8_t *)s, .n = n, .d = d};
    enum json_error e;
    size_t root;

    memset(d, 0, sizeof(*d));
    d->tag = tag;
    p.max_depth =
        max_depth < JSON_DEPTH_CEILING ? max_depth : JSON_DEPTH_CEILING;
    /* Offsets and indices are 32-bit. */
    if (n > UINT32_MAX / 2)
        return fail(&p, JSON_ERR_LIMIT, "document too long");
    d->strings = mem_alloc(tag, n + 1);
    if (!d->strings)
        return fail(&p, JSON_ERR_NO_MEMORY, "out of memory");
    e = parse_value(&p, 0, &root);
    if (!e) {
        skip_ws(&p);
        if (p.pos != n)
            e = fail(&p, JSON_ERR_SYNTAX, "trailing bytes");
    }
    if (e) {
        size_t at = d->err_at;
        const char *why = d->why;

        json_free(d);
        d->err_at = at;
        d->why = why;
    }
    return e;
}

void json_free(struct json_doc *d)
{
    enum mem_tag tag = d->tag;

    mem_free(tag, d->nodes);
    mem_free(tag, d->strings);
    memset(d, 0, sizeof(*d));
    d->tag = tag;
}

size_t json_first(const struct json_doc *d, size_t i)
{
    return d->nodes[i].count ? i + 1 : JSON_NONE;
}

size_t json_next(const struct json_doc *d, size_t parent, size_t i)
{
    size_t j = d->nodes[i].end;

    return j < d->nodes[parent].end ? j : JSON_NONE;
}

size_t json_get(const struct json_doc *d, size_t obj, const char *name,
                size_t n)
{
    size_t i;

    if (d->nodes[obj].type != JSON_OBJECT)
        return JSON_NONE;
    for (i = json_first(d, obj); i != JSON_NONE; i = json_next(d, obj, i + 1))
        if (d->nodes[i].len == n && !memcmp(json_str(d, i), name, n))
            return i + 1;
    return JSON_NONE;
}
