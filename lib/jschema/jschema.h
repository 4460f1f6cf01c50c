/* jschema.h - a JSON Schema validator on jansson, for a documented subset of draft 2020-12.
 *
 * Supported keywords: type, properties, required, additionalProperties (boolean or schema),
 * items (schema), enum, const, pattern (POSIX ERE via regcomp; the common ECMA subset),
 * format (ipv4, ipv6, date-time; other formats are annotations), minimum, maximum,
 * exclusiveMinimum, exclusiveMaximum, minLength, maxLength (in code points), minItems, maxItems,
 * $ref to "#" and "#/$defs/..." or "#/definitions/..." within the same document, $defs,
 * and the annotations title, description, default, examples, $schema, $id, $comment.
 * Any other keyword makes jschema_compile() fail, so a schema never silently means less than
 * it says. Proven with the cases of Debian's json-schema-test-suite for exactly those keywords.
 *
 * A compiled schema is immutable and may be shared by threads. */
#ifndef JSCHEMA_H
#define JSCHEMA_H

#include <jansson.h>
#include <stddef.h>

struct jschema;

/* Compiles schema (borrowed; the compiled form keeps its own reference). Returns NULL and fills
 * err when the schema is invalid or uses an unsupported keyword. */
struct jschema *jschema_compile(json_t *schema, char *err, size_t err_len);
/* Loads and compiles a schema file. */
struct jschema *jschema_load(const char *path, char *err, size_t err_len);
void jschema_free(struct jschema *s);

struct jschema_error {
    char pointer[256]; /* JSON pointer (RFC 6901) of the failing value in the instance, "" = root */
    char message[256]; /* e.g. "required property \"ip\" is missing" */
};

/* Returns 0 when doc is valid; otherwise 1 with the first failure described in *error. */
int jschema_validate(const struct jschema *s, json_t *doc, struct jschema_error *error);

/* The fast path: checks JSON text against s without building a jansson tree. */
enum jschema_capture_kind {
    JSCHEMA_CAP_ABSENT,  /* the member is not there (or the value is not an object) */
    JSCHEMA_CAP_STRING,  /* str/len: the string's contents (the fast path takes no escapes) */
    JSCHEMA_CAP_INTEGER, /* integer */
    JSCHEMA_CAP_OTHER,   /* any other value */
};

struct jschema_capture {
    const char *name; /* in: a member of the top-level object (not NUL-terminated) */
    size_t name_len;
    enum jschema_capture_kind kind; /* out */
    const char *str;
    size_t len;
    long long integer;
};

/* Returns 0 only when text is certainly valid: json_loadb(text, len, JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY) would succeed and jschema_validate() would accept the result (s == NULL: any
 * JSON value). Returns 1 when not sure (invalid, or outside what the fast path handles: string
 * escapes, non-ASCII text, exponents, reals under numeric keywords, enum/const of numbers or
 * containers, deep nesting, more than 64 members); the caller then takes the jansson path for
 * the exact answer and error. With used == NULL the text must hold one value (whitespace
 * around it); otherwise the value starts at text (no leading whitespace skipped for the count)
 * and *used receives the bytes up to its end, anything after it is not looked at. cap, when
 * not NULL, receives the value of one top-level member. Allocates nothing; thread-safe. */
int jschema_check_text(const struct jschema *s, const char *text, size_t len, size_t *used,
                       struct jschema_capture *cap);

#endif
