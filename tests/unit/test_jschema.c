/* test_jschema.c - the validator against Debian's json-schema-test-suite (draft 7 files for
 * exactly the supported keywords; their semantics match 2020-12 for these), plus error
 * locations and the refusal of unsupported keywords. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jschema.h"

#define SUITE "/usr/share/json-schema-test-suite/tests/draft7/"

/* Groups whose meaning differs between draft 7 and 2020-12 (in 7, $ref overrides its
 * siblings; in 2020-12 they apply), or that need remote references. */
static const char *const SKIP_GROUPS[] = {
    "ref overrides any sibling keywords",
    "$ref prevents a sibling $id from changing the base uri",
    "Location-independent identifier",
    NULL,
};

static int skipped_group(const char *description)
{
    for (int i = 0; SKIP_GROUPS[i]; i++) {
        if (strstr(description, SKIP_GROUPS[i]))
            return 1;
    }
    return 0;
}

/* Runs one suite file; fails on any mismatch and when fewer than min_cases ran (the floors are
 * the counts of Debian's suite 2.0.0, so a case silently skipped fails the test). */
static void run_file(const char *name, int min_cases)
{
    char path[256];
    snprintf(path, sizeof path, SUITE "%s", name);
    json_error_t je;
    json_t *groups = json_load_file(path, 0, &je);
    if (!groups)
        fail_msg("cannot read %s: %s", path, je.text);
    size_t gi;
    json_t *group;
    int ran = 0, skipped = 0, failed = 0;
    json_array_foreach(groups, gi, group)
    {
        const char *desc = json_string_value(json_object_get(group, "description"));
        json_t *tests = json_object_get(group, "tests");
        char err[256];
        struct jschema *s = skipped_group(desc) ? NULL
                            : jschema_compile(json_object_get(group, "schema"), err, sizeof err);
        if (!s) {
            skipped += (int)json_array_size(tests);
            continue;
        }
        size_t ti;
        json_t *t;
        json_array_foreach(tests, ti, t)
        {
            struct jschema_error e;
            int valid = jschema_validate(s, json_object_get(t, "data"), &e) == 0;
            int want = json_is_true(json_object_get(t, "valid"));
            ran++;
            if (valid != want) {
                failed++;
                print_error("%s: %s / %s: got %s, want %s\n", name, desc,
                            json_string_value(json_object_get(t, "description")),
                            valid ? "valid" : "invalid", want ? "valid" : "invalid");
            }
        }
        jschema_free(s);
    }
    json_decref(groups);
    print_message("%s: %d cases run, %d skipped, %d failed\n", name, ran, skipped, failed);
    assert_int_equal(failed, 0);
    assert_true(ran >= min_cases);
}

#define SUITE_TEST(fn, file, min)                                                                  \
    static void fn(void **state)                                                                   \
    {                                                                                              \
        (void)state;                                                                               \
        run_file(file, min);                                                                       \
    }

SUITE_TEST(test_suite_type, "type.json", 59)
SUITE_TEST(test_suite_properties, "properties.json", 10)
SUITE_TEST(test_suite_required, "required.json", 7)
SUITE_TEST(test_suite_additional_properties, "additionalProperties.json", 6)
SUITE_TEST(test_suite_items, "items.json", 8)
SUITE_TEST(test_suite_enum, "enum.json", 9)
SUITE_TEST(test_suite_const, "const.json", 12)
SUITE_TEST(test_suite_pattern, "pattern.json", 4)
SUITE_TEST(test_suite_minimum, "minimum.json", 4)
SUITE_TEST(test_suite_maximum, "maximum.json", 4)
SUITE_TEST(test_suite_exclusive_minimum, "exclusiveMinimum.json", 4)
SUITE_TEST(test_suite_exclusive_maximum, "exclusiveMaximum.json", 4)
SUITE_TEST(test_suite_min_length, "minLength.json", 5)
SUITE_TEST(test_suite_max_length, "maxLength.json", 5)
SUITE_TEST(test_suite_min_items, "minItems.json", 4)
SUITE_TEST(test_suite_max_items, "maxItems.json", 4)
SUITE_TEST(test_suite_ref, "ref.json", 12)
SUITE_TEST(test_suite_format_ipv4, "optional/format/ipv4.json", 5)
SUITE_TEST(test_suite_format_ipv6, "optional/format/ipv6.json", 4)
SUITE_TEST(test_suite_format_date_time, "optional/format/date-time.json", 9)

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    assert_non_null(v);
    return v;
}

static void test_error_names_nested_pointer(void **state)
{
    (void)state;
    char err[256];
    json_t *schema = parse("{\"type\":\"object\",\"properties\":{\"client\":{\"type\":\"object\","
                           "\"properties\":{\"os\":{\"type\":\"string\"}}},"
                           "\"ip\":{\"type\":\"string\",\"format\":\"ipv4\"}},"
                           "\"required\":[\"ip\"]}");
    struct jschema *s = jschema_compile(schema, err, sizeof err);
    assert_non_null(s);
    struct jschema_error e;
    json_t *doc = parse("{\"ip\":\"1.2.3.4\",\"client\":{\"os\":7}}");
    assert_int_equal(jschema_validate(s, doc, &e), 1);
    assert_string_equal(e.pointer, "/client/os");
    json_decref(doc);
    doc = parse("{\"ip\":\"999.1.1.1\"}");
    assert_int_equal(jschema_validate(s, doc, &e), 1);
    assert_string_equal(e.pointer, "/ip");
    assert_non_null(strstr(e.message, "ipv4"));
    json_decref(doc);
    doc = parse("{}");
    assert_int_equal(jschema_validate(s, doc, &e), 1);
    assert_string_equal(e.pointer, "");
    assert_non_null(strstr(e.message, "\"ip\""));
    json_decref(doc);
    jschema_free(s);
    json_decref(schema);
}

static void test_unsupported_keyword_is_refused(void **state)
{
    (void)state;
    char err[256] = "";
    json_t *schema = parse("{\"properties\":{\"a\":{\"oneOf\":[{\"type\":\"string\"}]}}}");
    assert_null(jschema_compile(schema, err, sizeof err));
    assert_non_null(strstr(err, "oneOf"));
    json_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_type),
        cmocka_unit_test(test_suite_properties),
        cmocka_unit_test(test_suite_required),
        cmocka_unit_test(test_suite_additional_properties),
        cmocka_unit_test(test_suite_items),
        cmocka_unit_test(test_suite_enum),
        cmocka_unit_test(test_suite_const),
        cmocka_unit_test(test_suite_pattern),
        cmocka_unit_test(test_suite_minimum),
        cmocka_unit_test(test_suite_maximum),
        cmocka_unit_test(test_suite_exclusive_minimum),
        cmocka_unit_test(test_suite_exclusive_maximum),
        cmocka_unit_test(test_suite_min_length),
        cmocka_unit_test(test_suite_max_length),
        cmocka_unit_test(test_suite_min_items),
        cmocka_unit_test(test_suite_max_items),
        cmocka_unit_test(test_suite_ref),
        cmocka_unit_test(test_suite_format_ipv4),
        cmocka_unit_test(test_suite_format_ipv6),
        cmocka_unit_test(test_suite_format_date_time),
        cmocka_unit_test(test_error_names_nested_pointer),
        cmocka_unit_test(test_unsupported_keyword_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
