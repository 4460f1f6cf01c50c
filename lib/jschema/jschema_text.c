/* jschema_text.c - jschema_check_text(): a compiled schema against raw JSON text in one pass
 * (see jschema_int.h). */
#include "jschema/jschema_int.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
        if ((n->format == FMT_IPV4 && !js_is_ipv4(r->str, r->len)) ||
            (n->format == FMT_IPV6 && !js_is_ipv6(r->str, r->len)) ||
            (n->format == FMT_DATE_TIME && !js_is_date_time(r->str, r->len))) {
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
