/* jschema_int.h - what the parts of the JSON Schema validator share (private to lib/jschema/).
 *
 * jschema_compile.c turns a schema document into a graph of struct node (jschema_regex.c
 * translates its patterns), jschema_validate.c walks the graph over a jansson document and
 * jschema_text.c over raw JSON text. Nothing outside lib/jschema/ includes this file: callers
 * use jschema/jschema.h. */
#ifndef JSCHEMA_INT_H
#define JSCHEMA_INT_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include "jschema/jschema.h"

/* Instance nesting (through properties/items and $ref) deeper than this fails validation
 * instead of exhausting the stack. */
#define JSCHEMA_MAX_DEPTH 512

enum jtype {
    JT_NULL = 1 << 0,
    JT_BOOLEAN = 1 << 1,
    JT_OBJECT = 1 << 2,
    JT_ARRAY = 1 << 3,
    JT_NUMBER = 1 << 4,
    JT_STRING = 1 << 5,
    JT_INTEGER = 1 << 6,
};

enum format { FMT_NONE, FMT_IPV4, FMT_IPV6, FMT_DATE_TIME };

enum addl { ADDL_ANY, ADDL_NONE, ADDL_SCHEMA };

struct prop {
    const char *name; /* borrowed from the schema document */
    size_t name_len;  /* strlen(name), for the raw-text path */
    struct node *schema;
};

struct node {
    bool is_false;  /* the boolean schema false */
    unsigned types; /* enum jtype mask, 0 = any */
    struct prop *props;
    size_t n_props;
    const char **required; /* borrowed strings */
    size_t n_required;
    enum addl addl;
    struct node *addl_schema;
    struct node *items;
    json_t *enum_values; /* borrowed array */
    json_t *const_value; /* borrowed */
    bool has_const;
    bool has_pattern;
    regex_t pattern;
    const char *pattern_src;
    enum format format;
    json_t *minimum, *maximum, *exclusive_minimum, *exclusive_maximum; /* borrowed numbers */
    long long min_length, max_length, min_items, max_items;            /* -1 = absent */
    struct node *ref;
    const char *ref_src;
    struct node *next_all; /* every node, for jschema_free */
};

struct jschema {
    json_t *root;
    struct node *entry;
    struct node *all;
};

/* jschema_regex.c: the ECMA-262 pattern src as a POSIX ERE (caller frees), or NULL with *why
 * set; the value of a hexadecimal digit, or -1. */
char *js_rx_translate(const char *src, const char **why);
int js_hexval(char ch);

/* jschema_compile.c: appends "/" and seg, escaped as a JSON pointer (RFC 6901) segment, to out
 * at offset at; returns the new length. Whether v is a number with an integral value. */
size_t js_pointer_append(char *out, size_t cap, size_t at, const char *seg);
bool js_is_integral(const json_t *v);

/* jschema_validate.c: the formats (ipv4, ipv6, date-time) of s[0..len). */
bool js_is_ipv4(const char *s, size_t len);
bool js_is_ipv6(const char *s, size_t len);
bool js_is_date_time(const char *s, size_t len);

#endif
