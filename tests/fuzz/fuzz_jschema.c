/* fuzz_jschema - libFuzzer target for the JSON Schema compiler and validator
 * (lib/jschema/).
 *
 * The input is read as JSON and compiled as a schema; when it compiles, it validates a few
 * fixed instances and the input itself. The raw bytes are also compiled as a "pattern", which
 * drives the ECMA-262 -> POSIX translation with arbitrary text. A crash, a sanitizer report, a
 * leak, or a failure without a message is a finding; a refused schema is the expected answer.
 *
 * Build: make build/fuzz/fuzz_jschema; run:
 *   build/fuzz/fuzz_jschema -max_total_time=60 [corpus_dir] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jschema/jschema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const INSTANCES[] = {
    "{\"a\":[1,2.5,\"x\",null,true,{\"b\":\"1.2.3.4\"}],\"c\":\"2026-01-01T00:00:00Z\"}",
    "[[[[\"::1\"]]]]",
    "\"\\u00e9t\\u00e9\"",
    "-12",
    "3.0",
};

static void check_one(struct jschema *js, json_t *doc)
{
    struct jschema_error e;
    if (jschema_validate(js, doc, &e) != 0 && e.message[0] == '\0') {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    json_t *schema = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (schema != NULL) {
        struct jschema *js = jschema_compile(schema, err, sizeof err);
        if (js == NULL && err[0] == '\0') {
            abort(); /* refused without saying why */
        }
        if (js != NULL) {
            for (size_t i = 0; i < sizeof INSTANCES / sizeof INSTANCES[0]; i++) {
                json_t *doc = json_loads(INSTANCES[i], JSON_DECODE_ANY, NULL);
                check_one(js, doc);
                json_decref(doc);
            }
            check_one(js, schema);
            jschema_free(js);
        }
        json_decref(schema);
    }
    json_t *pattern = json_stringn_nocheck((const char *)data, size);
    if (pattern != NULL && memchr(data, '\0', size) == NULL) {
        json_t *ps = json_pack("{s:O}", "pattern", pattern);
        struct jschema *js = jschema_compile(ps, err, sizeof err);
        if (js != NULL) {
            check_one(js, pattern);
            jschema_free(js);
        }
        json_decref(ps);
    }
    json_decref(pattern);
    return 0;
}
