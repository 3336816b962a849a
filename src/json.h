/*
 * json.h - a strict, small JSON reader (RFC 8259) for the documents moor
 * reads from its peers: a JWT's header and claims (src/jwt.c).
 *
 * Strict: one value, with only space, tab, CR and LF around it; strings
 * are valid UTF-8 (no overlong forms, no surrogates, nothing past
 * U+10FFFF) with no raw control characters, and their \u escapes pair
 * their surrogates; numbers follow the grammar exactly (no leading zero,
 * '+', bare '.', NaN or Infinity); a member name twice in one object is
 * refused. Bounded: nesting deeper than max_depth and objects of more
 * than JSON_MAX_MEMBERS members are refused, so a hostile document
 * costs at most a node per input byte and no deep recursion.
 *
 * The document is a flat array of nodes in document order: a container's
 * children follow it, an object's as name, value, name, value... Each
 * node knows where its subtree ends, so siblings are one step apart.
 * Strings are decoded into one block of n + 1 bytes (decoding never
 * lengthens a string), each NUL-terminated (a \u0000 inside is kept: use
 * the length). Every byte is under the caller's tag.
 */
#ifndef MOOR_JSON_H
#define MOOR_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

#define JSON_MAX_MEMBERS                                                       \
    256                    /* per object (duplicates are checked by            \
                              comparing each name with the earlier ones) */
#define JSON_NONE SIZE_MAX /* "no such node" from the lookups */

enum json_type {
    JSON_NULL = 0,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

enum json_error {
    JSON_OK = 0,
    JSON_ERR_SYNTAX,    /* not JSON (why says what) */
    JSON_ERR_DEPTH,     /* nested deeper than max_depth */
    JSON_ERR_LIMIT,     /* an object of more than JSON_MAX_MEMBERS */
    JSON_ERR_DUPLICATE, /* a member name twice in one object */
    JSON_ERR_NO_MEMORY,
};

struct json_node {
    uint8_t type;   /* enum json_type */
    uint32_t end;   /* index of the node after this one's subtree */
    uint32_t count; /* containers: elements, or members (name+value pairs) */
    uint32_t len;   /* strings: decoded length in bytes */
    union {
        double num;   /* numbers (strtod's value: 1e999 is inf) */
        uint32_t off; /* strings: offset in json_doc.strings */
    } v;
};

struct json_doc {
    struct json_node *nodes;
    size_t n_nodes;
    size_t cap;
    char *strings;
    enum mem_tag tag;
    /* On failure: the byte offset where it was found and a static reason
     * ("bad escape", "duplicate member", ...). */
    size_t err_at;
    const char *why;
};

/* Parses s[0..n). JSON_OK fills *d (free it with json_free()); any other
 * result leaves *d holding nothing (json_free() is harmless). max_depth
 * counts containers: 1 allows [1] but not [[1]]. */
enum json_error json_parse(struct json_doc *d, const char *s, size_t n,
                           unsigned max_depth, enum mem_tag tag);
void json_free(struct json_doc *d);

/* The node at index i (0 is the root). */
static inline const struct json_node *json_at(const struct json_doc *d,
                                              size_t i)
{
    return &d->nodes[i];
}

/* A string node's bytes (NUL-terminated; len in the node). */
static inline const char *json_str(const struct json_doc *d, size_t i)
{
    return d->strings + d->nodes[i].v.off;
}

/* The first child of container i (an object's: its first name), or
 * JSON_NONE if it is empty. */
size_t json_first(const struct json_doc *d, size_t i);
/* The sibling after node i inside container parent, or JSON_NONE. An
 * object's names are walked with i = json_next(d, obj, i + 1): from a
 * name's value to the next name. */
size_t json_next(const struct json_doc *d, size_t parent, size_t i);
/* The value of member name[0..n) of object obj, or JSON_NONE. */
size_t json_get(const struct json_doc *d, size_t obj, const char *name,
                size_t n);

#endif
