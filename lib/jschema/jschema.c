/* jschema.c - JSON Schema validator on jansson for the subset documented in jschema.h.
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
#include "jschema/jschema.h"

#include <arpa/inet.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

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

static size_t pointer_append(char *out, size_t cap, size_t at, const char *seg)
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
    return pointer_append(out, cap, at, p->seg);
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

/* --- ECMA-262 pattern -> POSIX ERE ---
 * Patterns are matched against UTF-8 bytes in the C locale, so everything that matches "one
 * character" (., negated classes) is widened to "one code point": an ASCII byte from the set
 * or a lead byte followed by its continuation bytes. Bracket expressions are limited to ASCII
 * members; what cannot be translated faithfully is refused. */

struct rx_out {
    char *buf;
    size_t len, cap;
};

static void rx_put(struct rx_out *o, const char *s)
{
    size_t n = strlen(s);
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->buf = xrealloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void rx_putc(struct rx_out *o, char ch)
{
    char s[2] = {ch, '\0'};
    rx_put(o, s);
}

/* "One code point not in the ASCII set body" (body in bracket syntax, may be empty). */
static void rx_put_negated(struct rx_out *o, const char *body)
{
    rx_put(o, "([^");
    rx_put(o, body);
    rx_put(o, "\x80-\xff]|[\xc0-\xff][\x80-\xbf]*)");
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Reads \uXXXX or \xHH after the backslash at s[0]; returns the code point and advances *len. */
static long rx_hex_escape(const char *s, size_t *len)
{
    int digits = s[1] == 'u' ? 4 : 2;
    long v = 0;
    for (int i = 0; i < digits; i++) {
        int h = hexval(s[2 + i]);
        if (h < 0) {
            return -1;
        }
        v = v * 16 + h;
    }
    *len = 2 + (size_t)digits;
    return v;
}

static void rx_put_codepoint(struct rx_out *o, long cp)
{
    char u[5] = {0};
    if (cp < 0x80) {
        if (strchr(".[]()*+?{}|^$\\", (int)cp) != NULL) {
            rx_putc(o, '\\');
        }
        u[0] = (char)cp;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
    } else {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
    }
    rx_put(o, u);
}

static char rx_control_escape(char e)
{
    switch (e) {
    case 't':
        return '\t';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    default:
        return 0;
    }
}

/* Translates a bracket expression starting at s[0] == '['; returns bytes consumed or 0. */
static size_t rx_bracket(const char *s, struct rx_out *o, const char **why)
{
    size_t i = 1;
    bool negate = false;
    if (s[i] == '^') {
        negate = true;
        i++;
    }
    bool has_rbracket = false, has_dash = false, has_caret = false, has_backslash = false;
    struct rx_out body = {0};
    rx_put(&body, "");
    bool after_class = false; /* the previous member was \d, \w or \s */
    for (;;) {
        char ch = s[i];
        bool prev_class = after_class;
        after_class = false;
        if (ch == '\0') {
            *why = "unterminated character class";
            goto fail;
        }
        if (ch == ']') {
            i++;
            break;
        }
        if ((unsigned char)ch >= 0x80) {
            *why = "non-ASCII characters in a character class are not supported";
            goto fail;
        }
        if (ch == '\\') {
            char e = s[i + 1];
            if (e == 'd' || e == 'w' || e == 's') {
                rx_put(&body, e == 'd' ? "0-9" : e == 'w' ? "A-Za-z0-9_" : "[:space:]");
                after_class = true;
            } else if (e == 'D' || e == 'W' || e == 'S') {
                *why = "negated classes (\\D \\W \\S) inside a character class are not supported";
                goto fail;
            } else if (rx_control_escape(e) != 0) {
                rx_putc(&body, rx_control_escape(e));
            } else if (e == 'u' || e == 'x') {
                size_t n = 0;
                long cp = rx_hex_escape(s + i, &n);
                if (cp <= 0 || cp >= 0x80) {
                    *why = "only ASCII \\u/\\x escapes (not NUL) are supported in a character "
                           "class";
                    goto fail;
                }
                if (cp == ']') {
                    has_rbracket = true;
                } else if (cp == '-') {
                    has_dash = true;
                } else if (cp == '^') {
                    has_caret = true;
                } else if (cp == '\\') {
                    has_backslash = true;
                } else if (cp == '[') {
                    rx_put(&body, "[");
                } else {
                    rx_putc(&body, (char)cp);
                }
                i += n;
                continue;
            } else if (e == ']') {
                has_rbracket = true;
            } else if (e == '-') {
                has_dash = true;
            } else if (e == '^') {
                has_caret = true;
            } else if (e == '\\') {
                has_backslash = true;
            } else if (e != '\0' && strchr(".[](){}*+?|$/", e) != NULL) {
                rx_putc(&body, e);
            } else {
                *why = "unsupported escape in a character class";
                goto fail;
            }
            i += 2;
            continue;
        }
        if (ch == '[' && (s[i + 1] == ':' || s[i + 1] == '.' || s[i + 1] == '=')) {
            *why = "POSIX bracket syntax ([: [. [=) is not ECMA-262";
            goto fail;
        }
        bool next_is_class = s[i + 1] == '\\' && s[i + 2] != '\0' && strchr("dws", s[i + 2]);
        if (ch == '-' && (body.len == 0 || s[i + 1] == ']' || prev_class || next_is_class)) {
            has_dash = true; /* literal at either end or next to a class (Annex B) */
            i++;
            continue;
        }
        if (ch == '^') {
            has_caret = true;
            i++;
            continue;
        }
        rx_putc(&body, ch);
        i++;
    }
    /* POSIX: ']' must come first, '^' not first, '-' last; backslash is literal. */
    struct rx_out set = {0};
    rx_put(&set, has_rbracket ? "]" : "");
    rx_put(&set, body.buf);
    if (has_backslash) {
        rx_put(&set, "\\");
    }
    if (has_caret && set.len == 0 && has_dash) {
        rx_put(&set, "-^"); /* a leading '-' is literal and keeps '^' from being first */
    } else {
        if (has_caret) {
            rx_put(&set, "^");
        }
        if (has_dash) {
            rx_put(&set, "-");
        }
    }
    if (set.len == 0) {
        *why = "empty character class";
        free(set.buf);
        goto fail;
    }
    if (negate) {
        rx_put_negated(o, set.buf);
    } else if (strcmp(set.buf, "^") == 0) {
        rx_put(o, "\\^");
    } else {
        rx_put(o, "[");
        rx_put(o, set.buf);
        rx_put(o, "]");
    }
    free(set.buf);
    free(body.buf);
    return i;
fail:
    free(body.buf);
    return 0;
}

static bool rx_is_quantifier_brace(const char *s, size_t *len)
{
    size_t i = 1;
    if (s[i] < '0' || s[i] > '9') {
        return false;
    }
    while (s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (s[i] == ',') {
        i++;
        while (s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    }
    if (s[i] != '}') {
        return false;
    }
    *len = i + 1;
    return true;
}

/* glibc expands counted repetition by copying the repeated expression, so nested counts
 * multiply; beyond this product a pattern is refused rather than allowed to exhaust memory. */
#define RX_MAX_REPEAT 1000
#define RX_MAX_GROUPS 32

static unsigned long rx_brace_bound(const char *s)
{
    unsigned long lo = strtoul(s + 1, NULL, 10);
    const char *comma = strchr(s, ',');
    const char *close = strchr(s, '}');
    if (comma != NULL && comma < close && comma[1] != '}') {
        return strtoul(comma + 1, NULL, 10);
    }
    return lo;
}

/* Returns the ERE (caller frees) or NULL with *why set. ECMA syntax errors that ERE would
 * accept with another meaning ("a++", "*a", unbalanced parentheses) are refused. */
static char *rx_translate(const char *src, const char **why)
{
    struct rx_out o = {0};
    rx_put(&o, "");
    bool after_quantifier = false;
    bool can_quantify = false; /* the previous token is an atom or a group */
    unsigned long group_repeat[RX_MAX_GROUPS + 1] = {1}; /* largest count inside each group */
    unsigned long last_repeat = 1;                       /* repetition inside the previous atom */
    int depth = 0;
    size_t i = 0;
    while (src[i] != '\0') {
        char ch = src[i];
        bool quantifier = false;
        bool atom = true;
        unsigned long atom_repeat = 1;
        if (ch == '\\') {
            char e = src[i + 1];
            size_t n = 2;
            switch (e) {
            case 'd':
                rx_put(&o, "[0-9]");
                break;
            case 'D':
                rx_put_negated(&o, "0-9");
                break;
            case 'w':
                rx_put(&o, "[A-Za-z0-9_]");
                break;
            case 'W':
                rx_put_negated(&o, "A-Za-z0-9_");
                break;
            case 's':
                rx_put(&o, "[[:space:]]");
                break;
            case 'S':
                rx_put_negated(&o, "[:space:]");
                break;
            case 'b':
            case 'B':
                rx_putc(&o, '\\'); /* word boundaries: a glibc extension to ERE */
                rx_putc(&o, e);
                atom = false;
                break;
            case 'u':
            case 'x': {
                long cp = rx_hex_escape(src + i, &n);
                if (cp <= 0) {
                    *why = "malformed \\u or \\x escape, or NUL";
                    goto fail;
                }
                rx_put_codepoint(&o, cp);
                break;
            }
            case '\0':
                *why = "pattern ends with a backslash";
                goto fail;
            default:
                if (rx_control_escape(e) != 0) {
                    rx_putc(&o, rx_control_escape(e));
                } else if (strchr(".[](){}*+?|^$\\", e) != NULL) {
                    rx_putc(&o, '\\');
                    rx_putc(&o, e);
                } else if (strchr("/-,:=!<>'\"#%&~@`;", e) != NULL) {
                    rx_putc(&o, e);
                } else {
                    *why = "unsupported escape (backreferences, \\p, \\k, \\c ... are not "
                           "supported)";
                    goto fail;
                }
            }
            i += n;
        } else if (ch == '[') {
            size_t n = rx_bracket(src + i, &o, why);
            if (n == 0) {
                goto fail;
            }
            i += n;
        } else if (ch == '(') {
            if (src[i + 1] == '?') {
                if (src[i + 2] != ':') {
                    *why = "lookaround and named groups are not supported";
                    goto fail;
                }
                i += 3;
            } else {
                i++;
            }
            if (depth == RX_MAX_GROUPS) {
                *why = "groups nested too deeply";
                goto fail;
            }
            group_repeat[++depth] = 1;
            rx_putc(&o, '(');
            atom = false;
        } else if (ch == ')') {
            if (depth == 0) {
                *why = "unbalanced parenthesis";
                goto fail;
            }
            atom_repeat = group_repeat[depth--];
            rx_putc(&o, ')');
            i++;
        } else if (ch == '|' || ch == '^' || ch == '$') {
            rx_putc(&o, ch);
            atom = false;
            i++;
        } else if (ch == '.') {
            rx_put_negated(&o, "\n\r");
            i++;
        } else if (ch == '?' && after_quantifier) {
            i++; /* lazy quantifier: the same set of matches, and we only ask "any match?" */
            atom = false;
        } else if (ch == '*' || ch == '+' || ch == '?' ||
                   (ch == '{' && rx_is_quantifier_brace(src + i, &(size_t){0}))) {
            if (!can_quantify) {
                *why = "nothing to repeat";
                goto fail;
            }
            size_t n = 1;
            unsigned long count = 1;
            if (ch == '{') {
                rx_is_quantifier_brace(src + i, &n);
                count = rx_brace_bound(src + i);
                count = count == 0 ? 1 : count;
            }
            unsigned long total = count > RX_MAX_REPEAT ? RX_MAX_REPEAT + 1 : last_repeat * count;
            if (total > RX_MAX_REPEAT) {
                *why = "repetition counts (multiplied through nesting) above 1000";
                goto fail;
            }
            if (total > group_repeat[depth]) {
                group_repeat[depth] = total;
            }
            for (size_t k = 0; k < n; k++) {
                rx_putc(&o, src[i + k]);
            }
            quantifier = true;
            atom = false;
            i += n;
        } else if (ch == '{') {
            rx_put(&o, "\\{"); /* Annex B: a literal brace */
            i++;
        } else if (ch == '}') {
            rx_put(&o, "\\}");
            i++;
        } else {
            rx_putc(&o, ch);
            i++;
        }
        after_quantifier = quantifier;
        can_quantify = atom;
        last_repeat = atom ? atom_repeat : 1;
    }
    if (depth != 0) {
        *why = "unbalanced parenthesis";
        goto fail;
    }
    return o.buf;
fail:
    free(o.buf);
    return NULL;
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
                int hi = hexval(p[0]);
                int lo = hi < 0 ? -1 : hexval(p[1]);
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

static bool json_is_integral(const json_t *v)
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
    if (!json_is_integral(v) || json_number_value(v) < 0) {
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
        char *ere = rx_translate(json_string_value(v), &why);
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

/* ---- validation ---- */

struct ipath { /* instance location: a chain of stack frames */
    const struct ipath *parent;
    const char *key; /* object member, or NULL for an array index */
    size_t index;
};

static size_t ipath_format(const struct ipath *p, char *out, size_t cap)
{
    if (p == NULL) {
        out[0] = '\0';
        return 0;
    }
    size_t at = ipath_format(p->parent, out, cap);
    if (p->key != NULL) {
        return pointer_append(out, cap, at, p->key);
    }
    char idx[24];
    snprintf(idx, sizeof idx, "%zu", p->index);
    return pointer_append(out, cap, at, idx);
}

/* Renders v for a message: strings quoted and cut at 64 bytes on a code point boundary. */
static void render_value(const json_t *v, char *out, size_t cap)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        size_t n = 0;
        size_t at = 0;
        out[at++] = '"';
        for (; n < len && at + 6 < cap && n < 64; n++) {
            unsigned char ch = (unsigned char)s[n];
            out[at++] = (ch < 0x20 || ch == '"') ? '?' : (char)ch;
        }
        while (n < len && ((unsigned char)s[n] & 0xc0) == 0x80 && at > 1) {
            n--; /* do not end inside a code point */
            at--;
        }
        if (n < len) {
            out[at++] = '.';
            out[at++] = '.';
            out[at++] = '.';
        }
        out[at++] = '"';
        out[at] = '\0';
    } else if (json_is_integer(v)) {
        snprintf(out, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(out, cap, "%.17g", json_real_value(v));
    } else if (json_is_true(v)) {
        snprintf(out, cap, "true");
    } else if (json_is_false(v)) {
        snprintf(out, cap, "false");
    } else if (json_is_null(v)) {
        snprintf(out, cap, "null");
    } else if (json_is_object(v)) {
        snprintf(out, cap, "object");
    } else {
        snprintf(out, cap, "array");
    }
}

__attribute__((format(printf, 4, 5))) static int
fail(struct jschema_error *e, const struct ipath *at, const json_t *doc, const char *fmt, ...)
{
    if (e == NULL) {
        return 1;
    }
    ipath_format(at, e->pointer, sizeof e->pointer);
    char shown[96];
    render_value(doc, shown, sizeof shown);
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* VAL ("\x01") in fmt stands for the rendered value; expanded here so that the format
     * string stays checked by the compiler. */
    char *mark = strstr(what, "\x01");
    if (mark != NULL) {
        *mark = '\0';
        int w = snprintf(e->message, sizeof e->message, "%s%s%s", what, shown, mark + 1);
        if (w < 0 || (size_t)w >= sizeof e->message) {
            memcpy(e->message + sizeof e->message - 4, "...", 4); /* cut, and say so */
        }
    } else {
        memcpy(e->message, what, sizeof e->message);
    }
    return 1;
}
#define VAL "\x01" /* placeholder for the rendered value in fail() formats */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return json_is_integral(v) ? "integer" : "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

static bool type_matches(unsigned types, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return types & JT_OBJECT;
    case JSON_ARRAY:
        return types & JT_ARRAY;
    case JSON_STRING:
        return types & JT_STRING;
    case JSON_INTEGER:
        return types & (JT_INTEGER | JT_NUMBER);
    case JSON_REAL:
        return (types & JT_NUMBER) || ((types & JT_INTEGER) && json_is_integral(v));
    case JSON_TRUE:
    case JSON_FALSE:
        return types & JT_BOOLEAN;
    default:
        return types & JT_NULL;
    }
}

static void types_describe(unsigned types, char *out, size_t cap)
{
    static const char *names[] = {"null",   "boolean", "object", "array",
                                  "number", "string",  "integer"};
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < 7; i++) {
        if (types & (1u << i)) {
            int w = snprintf(out + at, cap - at, "%s%s", at ? " or " : "", names[i]);
            if (w < 0 || (size_t)w >= cap - at) {
                return;
            }
            at += (size_t)w;
        }
    }
}

/* -1, 0, 1 like strcmp; exact for integers and for integer-vs-real (long double holds 64 bits). */
static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    long double x = json_is_integer(a) ? (long double)json_integer_value(a) : json_real_value(a);
    long double y = json_is_integer(b) ? (long double)json_integer_value(b) : json_real_value(b);
    return x < y ? -1 : x > y;
}

/* JSON Schema equality: like json_equal, but 1 and 1.0 are equal. */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        return num_cmp(a, b) == 0;
    }
    if (json_typeof(a) != json_typeof(b)) {
        return false;
    }
    if (json_is_array(a)) {
        size_t n = json_array_size(a);
        if (n != json_array_size(b)) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!values_equal(json_array_get(a, i), json_array_get(b, i))) {
                return false;
            }
        }
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) {
            return false;
        }
        const char *k;
        json_t *va;
        json_object_foreach((json_t *)a, k, va)
        {
            json_t *vb = json_object_get(b, k);
            if (vb == NULL || !values_equal(va, vb)) {
                return false;
            }
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static size_t utf8_length(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++) {
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    return n;
}

/* Dotted quad, decimal 0-255, no leading zeros, ASCII digits only. */
static bool is_ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.') {
                return false;
            }
            i++;
        }
        size_t start = i;
        int v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
            v = v * 10 + (s[i] - '0');
            i++;
        }
        size_t digits = i - start;
        if (digits == 0 || v > 255 || (digits > 1 && s[start] == '0')) {
            return false;
        }
    }
    return i == len;
}

static bool is_ipv6(const char *s, size_t len)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf || memchr(s, '\0', len) != NULL) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    unsigned char addr[16];
    return inet_pton(AF_INET6, buf, addr) == 1;
}

static bool digits_at(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339 section 5.6 date-time: full-date "T" full-time, time-offset "Z" or +hh:mm;
 * "T" and "Z" case-insensitive; a leap second only where UTC reads 23:59:60. */
static bool is_date_time(const char *s, size_t len)
{
    int year, month, day, hour, minute, second;
    if (len < 20 || !digits_at(s, 4, &year) || s[4] != '-' || !digits_at(s + 5, 2, &month) ||
        s[7] != '-' || !digits_at(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
        !digits_at(s + 11, 2, &hour) || s[13] != ':' || !digits_at(s + 14, 2, &minute) ||
        s[16] != ':' || !digits_at(s + 17, 2, &second)) {
        return false;
    }
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1) {
        return false;
    }
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > days[month - 1] + (month == 2 && leap)) {
        return false;
    }
    if (hour > 23 || minute > 59 || second > 60) {
        return false;
    }
    size_t i = 19;
    if (i < len && s[i] == '.') {
        i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start) {
            return false;
        }
    }
    int offset_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (len - i < 6 || !digits_at(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits_at(s + i + 4, 2, &om) || oh > 23 || om > 59) {
            return false;
        }
        offset_min = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
        i += 6;
    } else {
        return false;
    }
    if (i != len) {
        return false;
    }
    if (second == 60) {
        int utc = ((hour * 60 + minute - offset_min) % 1440 + 1440) % 1440;
        if (utc != 23 * 60 + 59) {
            return false;
        }
    }
    return true;
}

static int validate_node(const struct node *n, json_t *doc, const struct ipath *at, int depth,
                         struct jschema_error *e);

static int validate_object(const struct node *n, json_t *doc, const struct ipath *at, int depth,
                           struct jschema_error *e)
{
    for (size_t i = 0; i < n->n_required; i++) {
        if (json_object_get(doc, n->required[i]) == NULL) {
            return fail(e, at, doc, "required property \"%s\" is missing", n->required[i]);
        }
    }
    if (n->n_props == 0 && n->addl == ADDL_ANY) {
        return 0;
    }
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        const struct node *sub = NULL;
        bool declared = false;
        for (size_t i = 0; i < n->n_props; i++) {
            if (strcmp(n->props[i].name, key) == 0) {
                sub = n->props[i].schema;
                declared = true;
                break;
            }
        }
        if (!declared) {
            if (n->addl == ADDL_NONE) {
                return fail(e, at, doc, "property \"%s\" is not allowed", key);
            }
            sub = n->addl == ADDL_SCHEMA ? n->addl_schema : NULL;
        }
        if (sub != NULL) {
            struct ipath child = {at, key, 0};
            if (validate_node(sub, value, &child, depth + 1, e) != 0) {
                return 1;
            }
        }
    }
    return 0;
}

static int validate_node(const struct node *n, json_t *doc, const struct ipath *at, int depth,
                         struct jschema_error *e)
{
    if (depth > JSCHEMA_MAX_DEPTH) {
        return fail(e, at, doc, "nesting deeper than %d levels", JSCHEMA_MAX_DEPTH);
    }
    if (n->is_false) {
        return fail(e, at, doc, "no value is allowed here");
    }
    if (n->ref != NULL && validate_node(n->ref, doc, at, depth + 1, e) != 0) {
        return 1;
    }
    if (n->types != 0 && !type_matches(n->types, doc)) {
        char want[96];
        types_describe(n->types, want, sizeof want);
        return fail(e, at, doc, "expected %s, got %s", want, type_name(doc));
    }
    if (n->enum_values != NULL) {
        bool found = false;
        size_t i;
        json_t *candidate;
        json_array_foreach(n->enum_values, i, candidate)
        {
            if (values_equal(candidate, doc)) {
                found = true;
                break;
            }
        }
        if (!found) {
            return fail(e, at, doc, VAL " is not one of the allowed values");
        }
    }
    if (n->has_const && !values_equal(n->const_value, doc)) {
        return fail(e, at, doc, VAL " is not the required constant value");
    }
    if (json_is_string(doc)) {
        const char *s = json_string_value(doc);
        size_t len = json_string_length(doc);
        if (n->min_length >= 0 || n->max_length >= 0) {
            long long cps = (long long)utf8_length(s, len);
            if (n->min_length >= 0 && cps < n->min_length) {
                return fail(e, at, doc, "string is shorter than %lld characters", n->min_length);
            }
            if (n->max_length >= 0 && cps > n->max_length) {
                return fail(e, at, doc, "string is longer than %lld characters", n->max_length);
            }
        }
        if (n->has_pattern) {
            regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)len};
            if (regexec(&n->pattern, s, 1, &m, REG_STARTEND) != 0) {
                return fail(e, at, doc, VAL " does not match pattern \"%s\"", n->pattern_src);
            }
        }
        if (n->format == FMT_IPV4 && !is_ipv4(s, len)) {
            return fail(e, at, doc, VAL " is not a valid ipv4 address");
        }
        if (n->format == FMT_IPV6 && !is_ipv6(s, len)) {
            return fail(e, at, doc, VAL " is not a valid ipv6 address");
        }
        if (n->format == FMT_DATE_TIME && !is_date_time(s, len)) {
            return fail(e, at, doc, VAL " is not a valid RFC 3339 date-time");
        }
    } else if (json_is_number(doc)) {
        if (n->minimum != NULL && num_cmp(doc, n->minimum) < 0) {
            char lim[64];
            render_value(n->minimum, lim, sizeof lim);
            return fail(e, at, doc, VAL " is less than the minimum %s", lim);
        }
        if (n->maximum != NULL && num_cmp(doc, n->maximum) > 0) {
            char lim[64];
            render_value(n->maximum, lim, sizeof lim);
            return fail(e, at, doc, VAL " is greater than the maximum %s", lim);
        }
        if (n->exclusive_minimum != NULL && num_cmp(doc, n->exclusive_minimum) <= 0) {
            char lim[64];
            render_value(n->exclusive_minimum, lim, sizeof lim);
            return fail(e, at, doc, VAL " is not greater than the exclusive minimum %s", lim);
        }
        if (n->exclusive_maximum != NULL && num_cmp(doc, n->exclusive_maximum) >= 0) {
            char lim[64];
            render_value(n->exclusive_maximum, lim, sizeof lim);
            return fail(e, at, doc, VAL " is not less than the exclusive maximum %s", lim);
        }
    } else if (json_is_object(doc)) {
        return validate_object(n, doc, at, depth, e);
    } else if (json_is_array(doc)) {
        size_t count = json_array_size(doc);
        if (n->min_items >= 0 && (long long)count < n->min_items) {
            return fail(e, at, doc, "array has fewer than %lld items", n->min_items);
        }
        if (n->max_items >= 0 && (long long)count > n->max_items) {
            return fail(e, at, doc, "array has more than %lld items", n->max_items);
        }
        if (n->items != NULL) {
            for (size_t i = 0; i < count; i++) {
                struct ipath child = {at, NULL, i};
                if (validate_node(n->items, json_array_get(doc, i), &child, depth + 1, e) != 0) {
                    return 1;
                }
            }
        }
    }
    return 0;
}

int jschema_validate(const struct jschema *s, json_t *doc, struct jschema_error *error)
{
    if (error != NULL) {
        error->pointer[0] = '\0';
        error->message[0] = '\0';
    }
    if (s == NULL || doc == NULL) {
        if (error != NULL) {
            snprintf(error->message, sizeof error->message, "no schema or no document");
        }
        return 1;
    }
    return validate_node(s->entry, doc, NULL, 0, error);
}

/* ---- the raw-text fast path (jschema_check_text) ----
 *
 * Parses JSON text and checks it against the compiled graph in one pass, building nothing.
 * It answers "valid" only when json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) would
 * accept the text and jschema_validate() would accept the result; anything it does not handle
 * exactly (escapes, non-ASCII, exponents, reals under numeric keywords, enum/const of
 * containers, deep nesting, many members, a failing check) makes it answer "not sure", and the
 * caller takes the jansson path, which gives the exact answer and error. */

#define RAW_MAX_DEPTH 64
#define RAW_MAX_KEYS 64

enum raw_kind { RK_STRING, RK_INTEGER, RK_REAL, RK_TRUE, RK_FALSE, RK_NULL, RK_OBJECT, RK_ARRAY };

struct raw {
    const char *p, *end;
    struct jschema_capture *cap;
    enum raw_kind kind; /* of the value last scanned */
    const char *str;    /* RK_STRING: contents */
    size_t len;
    long long integer; /* RK_INTEGER */
};

/* Short names: an inline loop beats a call to memcmp. */
static bool raw_same(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return true;
}

static void raw_ws(struct raw *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) {
        r->p++;
    }
}

/* At the opening quote: printable ASCII without escapes only. */
static int raw_string(struct raw *r, const char **s, size_t *len)
{
    const char *q = r->p + 1;
    const char *start = q;
    for (; q < r->end; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            *s = start;
            *len = (size_t)(q - start);
            r->p = q + 1;
            return 0;
        }
        if (c < 0x20 || c >= 0x80 || c == '\\') {
            return -1;
        }
    }
    return -1;
}

/* Integers of at most 18 digits and reals without an exponent (jansson's strtod cannot
 * overflow on those of at most 300 characters). */
static int raw_number(struct raw *r)
{
    const char *q = r->p;
    bool neg = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    if (q >= r->end || *q < '0' || *q > '9') {
        return -1;
    }
    const char *digits = q;
    long long v = 0;
    if (*q == '0') {
        q++;
    } else {
        while (q < r->end && *q >= '0' && *q <= '9') {
            if (q - digits >= 18) {
                return -1;
            }
            v = v * 10 + (*q - '0');
            q++;
        }
    }
    bool is_real = false;
    if (q < r->end && *q == '.') {
        q++;
        const char *frac = q;
        while (q < r->end && *q >= '0' && *q <= '9') {
            q++;
        }
        if (q == frac) {
            return -1;
        }
        is_real = true;
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        return -1;
    }
    if (is_real && q - r->p > 300) {
        return -1;
    }
    r->kind = is_real ? RK_REAL : RK_INTEGER;
    r->integer = neg ? -v : v;
    r->p = q;
    return 0;
}

static int raw_literal(struct raw *r, const char *word, size_t n, enum raw_kind kind)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
        return -1;
    }
    r->p += n;
    r->kind = kind;
    return 0;
}

static int raw_value(struct raw *r, const struct node *n, int depth);

static int raw_object(struct raw *r, const struct node *n, int depth)
{
    const char *keys[RAW_MAX_KEYS];
    size_t key_lens[RAW_MAX_KEYS];
    size_t n_keys = 0;
    r->p++;
    raw_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
    } else {
        for (;;) {
            const char *k;
            size_t kl;
            if (r->p >= r->end || *r->p != '"' || raw_string(r, &k, &kl) != 0 ||
                n_keys == RAW_MAX_KEYS) {
                return -1;
            }
            for (size_t i = 0; i < n_keys; i++) {
                if (key_lens[i] == kl && raw_same(keys[i], k, kl)) {
                    return -1; /* a duplicate: jansson's error */
                }
            }
            keys[n_keys] = k;
            key_lens[n_keys++] = kl;
            raw_ws(r);
            if (r->p >= r->end || *r->p != ':') {
                return -1;
            }
            r->p++;
            raw_ws(r);
            const struct node *sub = NULL;
            if (n != NULL) {
                bool declared = false;
                for (size_t i = 0; i < n->n_props; i++) {
                    if (n->props[i].name_len == kl && raw_same(n->props[i].name, k, kl)) {
                        sub = n->props[i].schema;
                        declared = true;
                        break;
                    }
                }
                if (!declared) {
                    if (n->addl == ADDL_NONE) {
                        return -1;
                    }
                    sub = n->addl == ADDL_SCHEMA ? n->addl_schema : NULL;
                }
            }
            if (raw_value(r, sub, depth + 1) != 0) {
                return -1;
            }
            struct jschema_capture *cap = r->cap;
            if (depth == 0 && cap != NULL && cap->name_len == kl && memcmp(cap->name, k, kl) == 0) {
                cap->kind = r->kind == RK_STRING    ? JSCHEMA_CAP_STRING
                            : r->kind == RK_INTEGER ? JSCHEMA_CAP_INTEGER
                                                    : JSCHEMA_CAP_OTHER;
                cap->str = r->str;
                cap->len = r->len;
                cap->integer = r->integer;
            }
            raw_ws(r);
            if (r->p < r->end && *r->p == ',') {
                r->p++;
                raw_ws(r);
                continue;
            }
            if (r->p < r->end && *r->p == '}') {
                r->p++;
                break;
            }
            return -1;
        }
    }
    if (n != NULL) {
        for (size_t i = 0; i < n->n_required; i++) {
            size_t rl = strlen(n->required[i]);
            bool found = false;
            for (size_t j = 0; j < n_keys && !found; j++) {
                found = key_lens[j] == rl && raw_same(keys[j], n->required[i], rl);
            }
            if (!found) {
                return -1;
            }
        }
    }
    r->kind = RK_OBJECT;
    return 0;
}

static int raw_array(struct raw *r, const struct node *n, int depth)
{
    long long count = 0;
    r->p++;
    raw_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
    } else {
        for (;;) {
            if (raw_value(r, n != NULL ? n->items : NULL, depth + 1) != 0) {
                return -1;
            }
            count++;
            raw_ws(r);
            if (r->p < r->end && *r->p == ',') {
                r->p++;
                raw_ws(r);
                continue;
            }
            if (r->p < r->end && *r->p == ']') {
                r->p++;
                break;
            }
            return -1;
        }
    }
    if (n != NULL && ((n->min_items >= 0 && count < n->min_items) ||
                      (n->max_items >= 0 && count > n->max_items))) {
        return -1;
    }
    r->kind = RK_ARRAY;
    return 0;
}

/* Like num_cmp for an integer instance. */
static int raw_int_cmp(long long x, const json_t *lim)
{
    if (json_is_integer(lim)) {
        json_int_t y = json_integer_value(lim);
        return x < y ? -1 : x > y;
    }
    long double a = (long double)x, b = json_real_value(lim);
    return a < b ? -1 : a > b;
}

/* enum/const for scalars other than numbers; -1 = not handled here. */
static int raw_equal(const struct raw *r, const json_t *v)
{
    switch (r->kind) {
    case RK_STRING:
        return json_is_string(v) && json_string_length(v) == r->len &&
               memcmp(json_string_value(v), r->str, r->len) == 0;
    case RK_TRUE:
        return json_is_true(v);
    case RK_FALSE:
        return json_is_false(v);
    case RK_NULL:
        return json_is_null(v);
    default:
        return -1;
    }
}

static int raw_scalar_checks(const struct raw *r, const struct node *n)
{
    if (n->enum_values != NULL) {
        bool found = false;
        size_t i;
        json_t *candidate;
        json_array_foreach(n->enum_values, i, candidate)
        {
            int eq = raw_equal(r, candidate);
            if (eq < 0) {
                return -1;
            }
            if (eq) {
                found = true;
                break;
            }
        }
        if (!found) {
            return -1;
        }
    }
    if (n->has_const && raw_equal(r, n->const_value) != 1) {
        return -1;
    }
    if (r->kind == RK_STRING) {
        /* ASCII only here: bytes are code points. */
        if ((n->min_length >= 0 && (long long)r->len < n->min_length) ||
            (n->max_length >= 0 && (long long)r->len > n->max_length)) {
            return -1;
        }
        if (n->has_pattern) {
            regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)r->len};
            if (regexec(&n->pattern, r->str, 1, &m, REG_STARTEND) != 0) {
                return -1;
            }
        }
        if ((n->format == FMT_IPV4 && !is_ipv4(r->str, r->len)) ||
            (n->format == FMT_IPV6 && !is_ipv6(r->str, r->len)) ||
            (n->format == FMT_DATE_TIME && !is_date_time(r->str, r->len))) {
            return -1;
        }
    } else if (r->kind == RK_INTEGER) {
        long long x = r->integer;
        if ((n->minimum != NULL && raw_int_cmp(x, n->minimum) < 0) ||
            (n->maximum != NULL && raw_int_cmp(x, n->maximum) > 0) ||
            (n->exclusive_minimum != NULL && raw_int_cmp(x, n->exclusive_minimum) <= 0) ||
            (n->exclusive_maximum != NULL && raw_int_cmp(x, n->exclusive_maximum) >= 0)) {
            return -1;
        }
    } else if (r->kind == RK_REAL) {
        if (n->minimum != NULL || n->maximum != NULL || n->exclusive_minimum != NULL ||
            n->exclusive_maximum != NULL) {
            return -1;
        }
    }
    return 0;
}

static bool raw_type_matches(unsigned types, char c)
{
    switch (c) {
    case '{':
        return types & JT_OBJECT;
    case '[':
        return types & JT_ARRAY;
    case '"':
        return types & JT_STRING;
    case 't':
    case 'f':
        return types & JT_BOOLEAN;
    case 'n':
        return types & JT_NULL;
    default: /* a number; reals are checked once scanned */
        return types & (JT_INTEGER | JT_NUMBER);
    }
}

static int raw_value(struct raw *r, const struct node *n, int depth)
{
    if (depth > RAW_MAX_DEPTH || r->p >= r->end) {
        return -1;
    }
    if (n != NULL) {
        if (n->is_false) {
            return -1;
        }
        if (n->ref != NULL) {
            const char *at = r->p;
            if (raw_value(r, n->ref, depth + 1) != 0) {
                return -1;
            }
            r->p = at; /* and once more for this node's own keywords */
        }
        if (n->types != 0 && !raw_type_matches(n->types, *r->p)) {
            return -1;
        }
    }
    int rc;
    switch (*r->p) {
    case '{':
        if (n != NULL && (n->enum_values != NULL || n->has_const)) {
            return -1;
        }
        return raw_object(r, n, depth);
    case '[':
        if (n != NULL && (n->enum_values != NULL || n->has_const)) {
            return -1;
        }
        return raw_array(r, n, depth);
    case '"':
        rc = raw_string(r, &r->str, &r->len);
        r->kind = RK_STRING;
        break;
    case 't':
        rc = raw_literal(r, "true", 4, RK_TRUE);
        break;
    case 'f':
        rc = raw_literal(r, "false", 5, RK_FALSE);
        break;
    case 'n':
        rc = raw_literal(r, "null", 4, RK_NULL);
        break;
    default:
        rc = raw_number(r);
        if (rc == 0 && r->kind == RK_REAL && n != NULL &&
            ((n->types != 0 && !(n->types & JT_NUMBER)) || n->enum_values != NULL ||
             n->has_const)) {
            return -1; /* 1.0 as an integer, and real equality: jansson's path */
        }
        if (rc == 0 && r->kind == RK_INTEGER && n != NULL &&
            (n->enum_values != NULL || n->has_const)) {
            return -1;
        }
        break;
    }
    if (rc != 0 || n == NULL) {
        return rc;
    }
    return raw_scalar_checks(r, n);
}

int jschema_check_text(const struct jschema *s, const char *text, size_t len, size_t *used,
                       struct jschema_capture *cap)
{
    struct raw r = {.p = text, .end = text + len, .cap = cap};
    if (cap != NULL) {
        cap->kind = JSCHEMA_CAP_ABSENT;
    }
    raw_ws(&r);
    if (raw_value(&r, s != NULL ? s->entry : NULL, 0) != 0) {
        return 1;
    }
    if (used != NULL) {
        *used = (size_t)(r.p - text);
        return 0;
    }
    raw_ws(&r);
    return r.p == r.end ? 0 : 1;
}
