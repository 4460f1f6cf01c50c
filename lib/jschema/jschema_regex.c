/* jschema_regex.c - patterns for the JSON Schema validator: ECMA-262 -> POSIX ERE (see
 * jschema_int.h). */
#include "jschema/jschema_int.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

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

int js_hexval(char ch)
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
        int h = js_hexval(s[2 + i]);
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
char *js_rx_translate(const char *src, const char **why)
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
