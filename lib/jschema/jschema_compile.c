/* jschema_compile.c - JSON Schema validator on jansson for the subset documented in jschema.h:
 * compilation (jschema_compile, jschema_load, jschema_free). The parts share jschema_int.h.
 *
 * jschema_compile() turns the schema document into a graph of struct node: keyword values are
 * checked once, patterns are translated from ECMA-262 to POSIX ERE and compiled with regcomp,
 * and $ref pointers are resolved to nodes. A memo maps each schema object (json_t *) to its
 * node, and a node enters the memo before its children are compiled, so recursive references
 * ("#", "#/$defs/tree") close into cycles instead of looping. jschema_validate() walks that
 * graph; it allocates nothing: the instance path is a chain of stack frames that is turned into
 * a JSON pointer (RFC 6901) only when a failure is reported.
 *
 * Semantics follow draft 2020-12 for the supported keywords (numbers: 1.0 is an integer and
 * equals 1 in enum/const; string lengths count code points). See docs/json-schema.md. */
#include "jschema/jschema_int.h"

#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* ---- compilation ---- */

struct memo_entry {
    const json_t *schema;
    struct node *node;
};

struct spath { /* schema location, for compile errors */
    const struct spath *parent;
    const char *seg;
};

struct compiler {
    struct jschema *js;
    struct memo_entry *memo;
    size_t n_memo, cap_memo;
    char *err;
    size_t err_len;
    bool failed;
};

size_t js_pointer_append(char *out, size_t cap, size_t at, const char *seg)
{
    if (at + 1 < cap) {
        out[at++] = '/';
    }
    for (const char *p = seg; *p != '\0' && at + 1 < cap; p++) {
        if (*p == '~' || *p == '/') {
            if (at + 2 >= cap) {
                break;
            }
            out[at++] = '~';
            out[at++] = *p == '~' ? '0' : '1';
        } else {
            out[at++] = *p;
        }
    }
    out[at] = '\0';
    return at;
}

static size_t spath_format(const struct spath *p, char *out, size_t cap)
{
    if (p == NULL) {
        snprintf(out, cap, "#");
        return strlen(out);
    }
    size_t at = spath_format(p->parent, out, cap);
    return js_pointer_append(out, cap, at, p->seg);
}

__attribute__((format(printf, 3, 4))) static void
compile_fail(struct compiler *c, const struct spath *at, const char *fmt, ...)
{
    if (c->failed) {
        return;
    }
    c->failed = true;
    if (c->err == NULL || c->err_len == 0) {
        return;
    }
    char where[256];
    spath_format(at, where, sizeof where);
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->err_len, "schema %s: %s", where, what);
}

static struct node *node_new(struct compiler *c)
{
    struct node *n = xcalloc(1, sizeof *n);
    n->min_length = n->max_length = n->min_items = n->max_items = -1;
    n->next_all = c->js->all;
    c->js->all = n;
    return n;
}

static void node_release(struct node *n)
{
    free(n->props);
    free(n->required);
    if (n->has_pattern) {
        regfree(&n->pattern);
    }
}

static struct node *memo_find(const struct compiler *c, const json_t *schema)
{
    for (size_t i = 0; i < c->n_memo; i++) {
        if (c->memo[i].schema == schema) {
            return c->memo[i].node;
        }
    }
    return NULL;
}

static void memo_add(struct compiler *c, const json_t *schema, struct node *n)
{
    if (c->n_memo == c->cap_memo) {
        c->cap_memo = c->cap_memo ? c->cap_memo * 2 : 16;
        c->memo = xrealloc(c->memo, c->cap_memo * sizeof *c->memo);
    }
    c->memo[c->n_memo].schema = schema;
    c->memo[c->n_memo].node = n;
    c->n_memo++;
}

/* --- JSON pointer resolution for $ref --- */

static json_t *pointer_resolve(json_t *root, const char *ref)
{
    if (ref[0] != '#') {
        return NULL;
    }
    const char *p = ref + 1;
    if (*p == '\0') {
        return root;
    }
    if (*p != '/') {
        return NULL;
    }
    json_t *cur = root;
    char seg[256];
    while (*p == '/' && cur != NULL) {
        p++;
        size_t n = 0;
        while (*p != '\0' && *p != '/') {
            char ch = *p++;
            if (ch == '~') {
                if (*p == '0') {
                    ch = '~';
                } else if (*p == '1') {
                    ch = '/';
                } else {
                    return NULL;
                }
                p++;
            } else if (ch == '%') { /* the fragment is URI-encoded */
                int hi = js_hexval(p[0]);
                int lo = hi < 0 ? -1 : js_hexval(p[1]);
                if (lo < 0) {
                    return NULL;
                }
                ch = (char)(hi * 16 + lo);
                p += 2;
            }
            if (n + 1 >= sizeof seg) {
                return NULL;
            }
            seg[n++] = ch;
        }
        seg[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(seg, &end, 10);
            if (n == 0 || *end != '\0' || (seg[0] == '0' && n > 1)) {
                return NULL;
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

/* --- keyword compilation --- */

static struct node *compile_schema(struct compiler *c, json_t *schema, const struct spath *at,
                                   bool is_root);

bool js_is_integral(const json_t *v)
{
    if (json_is_integer(v)) {
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return isfinite(d) && floor(d) == d;
    }
    return false;
}

static long long count_value(struct compiler *c, json_t *v, const struct spath *at, const char *kw)
{
    if (!js_is_integral(v) || json_number_value(v) < 0) {
        compile_fail(c, at, "\"%s\" must be a non-negative integer", kw);
        return -1;
    }
    if (json_is_integer(v)) {
        return (long long)json_integer_value(v);
    }
    double d = json_real_value(v);
    return d > 9e18 ? (long long)9e18 : (long long)d;
}

static unsigned type_bit(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"null", JT_NULL},      {"boolean", JT_BOOLEAN}, {"object", JT_OBJECT},
                 {"array", JT_ARRAY},    {"number", JT_NUMBER},   {"string", JT_STRING},
                 {"integer", JT_INTEGER}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            return names[i].bit;
        }
    }
    return 0;
}

static void compile_type(struct compiler *c, struct node *n, json_t *v, const struct spath *at)
{
    if (json_is_string(v)) {
        n->types = type_bit(json_string_value(v));
        if (n->types == 0) {
            compile_fail(c, at, "unknown type \"%s\"", json_string_value(v));
        }
        return;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        compile_fail(c, at, "\"type\" must be a string or a non-empty array of strings");
        return;
    }
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t)
    {
        unsigned bit = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
        if (bit == 0) {
            compile_fail(c, at, "\"type\" has an unknown or non-string entry");
            return;
        }
        n->types |= bit;
    }
}

static void compile_keyword(struct compiler *c, struct node *n, const char *kw, json_t *v,
                            const struct spath *at, bool is_root)
{
    struct spath here = {at, kw};
    if (strcmp(kw, "type") == 0) {
        compile_type(c, n, v, &here);
    } else if (strcmp(kw, "properties") == 0) {
        if (!json_is_object(v)) {
            compile_fail(c, &here, "\"properties\" must be an object");
            return;
        }
        n->props = xcalloc(json_object_size(v) + 1, sizeof *n->props);
        const char *name;
        json_t *sub;
        json_object_foreach(v, name, sub)
        {
            struct spath prop_at = {&here, name};
            n->props[n->n_props].name = name;
            n->props[n->n_props].name_len = strlen(name);
            n->props[n->n_props].schema = compile_schema(c, sub, &prop_at, false);
            n->n_props++;
        }
    } else if (strcmp(kw, "required") == 0) {
        if (!json_is_array(v)) {
            compile_fail(c, &here, "\"required\" must be an array of strings");
            return;
        }
        n->required = xcalloc(json_array_size(v) + 1, sizeof *n->required);
        size_t i;
        json_t *name;
        json_array_foreach(v, i, name)
        {
            if (!json_is_string(name)) {
                compile_fail(c, &here, "\"required\" must be an array of strings");
                return;
            }
            n->required[n->n_required++] = json_string_value(name);
        }
    } else if (strcmp(kw, "additionalProperties") == 0) {
        if (json_is_true(v)) {
            n->addl = ADDL_ANY;
        } else if (json_is_false(v)) {
            n->addl = ADDL_NONE;
        } else {
            n->addl = ADDL_SCHEMA;
            n->addl_schema = compile_schema(c, v, &here, false);
        }
    } else if (strcmp(kw, "items") == 0) {
        if (json_is_array(v)) {
            compile_fail(c, &here,
                         "\"items\" must be a single schema (the array form is not supported)");
            return;
        }
        n->items = compile_schema(c, v, &here, false);
    } else if (strcmp(kw, "enum") == 0) {
        if (!json_is_array(v)) {
            compile_fail(c, &here, "\"enum\" must be an array");
            return;
        }
        n->enum_values = v;
    } else if (strcmp(kw, "const") == 0) {
        n->const_value = v;
        n->has_const = true;
    } else if (strcmp(kw, "pattern") == 0) {
        if (!json_is_string(v)) {
            compile_fail(c, &here, "\"pattern\" must be a string");
            return;
        }
        const char *why = NULL;
        char *ere = js_rx_translate(json_string_value(v), &why);
        if (ere == NULL) {
            compile_fail(c, &here, "pattern \"%s\": %s", json_string_value(v), why);
            return;
        }
        int rc = regcomp(&n->pattern, ere, REG_EXTENDED | REG_NOSUB);
        free(ere);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &n->pattern, msg, sizeof msg);
            compile_fail(c, &here, "pattern \"%s\": %s", json_string_value(v), msg);
            return;
        }
        n->has_pattern = true;
        n->pattern_src = json_string_value(v);
    } else if (strcmp(kw, "format") == 0) {
        if (!json_is_string(v)) {
            compile_fail(c, &here, "\"format\" must be a string");
            return;
        }
        const char *f = json_string_value(v);
        n->format = strcmp(f, "ipv4") == 0        ? FMT_IPV4
                    : strcmp(f, "ipv6") == 0      ? FMT_IPV6
                    : strcmp(f, "date-time") == 0 ? FMT_DATE_TIME
                                                  : FMT_NONE; /* other formats: annotations */
    } else if (strcmp(kw, "minimum") == 0 || strcmp(kw, "maximum") == 0 ||
               strcmp(kw, "exclusiveMinimum") == 0 || strcmp(kw, "exclusiveMaximum") == 0) {
        if (!json_is_number(v)) {
            compile_fail(c, &here, "\"%s\" must be a number", kw);
            return;
        }
        json_t **slot = strcmp(kw, "minimum") == 0            ? &n->minimum
                        : strcmp(kw, "maximum") == 0          ? &n->maximum
                        : strcmp(kw, "exclusiveMinimum") == 0 ? &n->exclusive_minimum
                                                              : &n->exclusive_maximum;
        *slot = v;
    } else if (strcmp(kw, "minLength") == 0) {
        n->min_length = count_value(c, v, &here, kw);
    } else if (strcmp(kw, "maxLength") == 0) {
        n->max_length = count_value(c, v, &here, kw);
    } else if (strcmp(kw, "minItems") == 0) {
        n->min_items = count_value(c, v, &here, kw);
    } else if (strcmp(kw, "maxItems") == 0) {
        n->max_items = count_value(c, v, &here, kw);
    } else if (strcmp(kw, "$ref") == 0) {
        if (!json_is_string(v)) {
            compile_fail(c, &here, "\"$ref\" must be a string");
            return;
        }
        n->ref_src = json_string_value(v);
        json_t *target = pointer_resolve(c->js->root, n->ref_src);
        if (target == NULL) {
            compile_fail(c, &here,
                         "$ref \"%s\" is not supported or does not resolve (only \"#\" and "
                         "JSON pointers \"#/...\" within this document)",
                         n->ref_src);
            return;
        }
        struct spath ref_at = {&here, n->ref_src};
        n->ref = compile_schema(c, target, &ref_at, false);
    } else if (strcmp(kw, "$defs") == 0 || strcmp(kw, "definitions") == 0) {
        if (!json_is_object(v)) {
            compile_fail(c, &here, "\"%s\" must be an object", kw);
            return;
        }
        const char *name;
        json_t *sub;
        json_object_foreach(v, name, sub)
        {
            struct spath def_at = {&here, name};
            compile_schema(c, sub, &def_at, false); /* unsupported keywords fail here too */
        }
    } else if (strcmp(kw, "$id") == 0) {
        if (!is_root) {
            compile_fail(c, &here, "\"$id\" is supported only at the root");
        }
    } else if (strcmp(kw, "title") == 0 || strcmp(kw, "description") == 0 ||
               strcmp(kw, "default") == 0 || strcmp(kw, "examples") == 0 ||
               strcmp(kw, "$schema") == 0 || strcmp(kw, "$comment") == 0) {
        /* annotations */
    } else {
        compile_fail(c, at, "unsupported keyword \"%s\"", kw);
    }
}

static struct node *compile_schema(struct compiler *c, json_t *schema, const struct spath *at,
                                   bool is_root)
{
    struct node *n = memo_find(c, schema);
    if (n != NULL) {
        return n;
    }
    n = node_new(c);
    memo_add(c, schema, n);
    if (json_is_boolean(schema)) {
        n->is_false = json_is_false(schema);
        return n;
    }
    if (!json_is_object(schema)) {
        compile_fail(c, at, "a schema must be an object or a boolean");
        return n;
    }
    const char *kw;
    json_t *v;
    json_object_foreach(schema, kw, v)
    {
        if (c->failed) {
            break;
        }
        compile_keyword(c, n, kw, v, at, is_root);
    }
    return n;
}

/* A chain of nodes linked only by $ref never reaches the instance's children, so a cycle in it
 * would recurse forever; refuse it at compile time. */
static bool ref_cycle(const struct jschema *js)
{
    for (const struct node *n = js->all; n != NULL; n = n->next_all) {
        const struct node *p = n->ref;
        for (size_t steps = 0; p != NULL; steps++, p = p->ref) {
            if (p == n) {
                return true;
            }
            if (steps > 10000) {
                return true;
            }
        }
    }
    return false;
}

struct jschema *jschema_compile(json_t *schema, char *err, size_t err_len)
{
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
    if (schema == NULL) {
        if (err != NULL && err_len > 0) {
            snprintf(err, err_len, "schema is NULL");
        }
        return NULL;
    }
    struct jschema *js = xcalloc(1, sizeof *js);
    js->root = json_incref(schema);
    struct compiler c = {.js = js, .err = err, .err_len = err_len};
    js->entry = compile_schema(&c, schema, NULL, true);
    free(c.memo);
    if (!c.failed && ref_cycle(js)) {
        if (err != NULL && err_len > 0) {
            snprintf(err, err_len, "schema: $ref cycle that never descends into the instance");
        }
        c.failed = true;
    }
    if (c.failed) {
        jschema_free(js);
        return NULL;
    }
    return js;
}

struct jschema *jschema_load(const char *path, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        if (err != NULL && err_len > 0) {
            snprintf(err, err_len, "%s:%d: %s", path, jerr.line, jerr.text);
        }
        return NULL;
    }
    char inner[512];
    struct jschema *js = jschema_compile(doc, inner, sizeof inner);
    json_decref(doc);
    if (js == NULL && err != NULL && err_len > 0) {
        snprintf(err, err_len, "%s: %s", path, inner);
    }
    return js;
}

void jschema_free(struct jschema *s)
{
    if (s == NULL) {
        return;
    }
    struct node *n = s->all;
    while (n != NULL) {
        struct node *next = n->next_all;
        node_release(n);
        free(n);
        n = next;
    }
    json_decref(s->root);
    free(s);
}
