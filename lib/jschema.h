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

#endif
