/* jschema_validate.c - jschema_validate(): a compiled schema against a jansson document (see
 * jschema_int.h). It allocates nothing. */
#include "jschema/jschema_int.h"

#include <arpa/inet.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        return js_pointer_append(out, cap, at, p->key);
    }
    char idx[24];
    snprintf(idx, sizeof idx, "%zu", p->index);
    return js_pointer_append(out, cap, at, idx);
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
        return js_is_integral(v) ? "integer" : "number";
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
        return (types & JT_NUMBER) || ((types & JT_INTEGER) && js_is_integral(v));
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
bool js_is_ipv4(const char *s, size_t len)
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

bool js_is_ipv6(const char *s, size_t len)
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
bool js_is_date_time(const char *s, size_t len)
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
        if (n->format == FMT_IPV4 && !js_is_ipv4(s, len)) {
            return fail(e, at, doc, VAL " is not a valid ipv4 address");
        }
        if (n->format == FMT_IPV6 && !js_is_ipv6(s, len)) {
            return fail(e, at, doc, VAL " is not a valid ipv6 address");
        }
        if (n->format == FMT_DATE_TIME && !js_is_date_time(s, len)) {
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
