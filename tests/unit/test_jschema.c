/* test_jschema.c - the JSON Schema validator against Debian's json-schema-test-suite (draft7
 * files for exactly the keywords jschema.h supports; draft7 and 2020-12 agree on them), plus
 * error pointers and messages, refusal of unsupported keywords, the ECMA -> POSIX pattern
 * translation, recursion, the repository's own schemas, robustness on random input, and
 * "validation does not allocate". */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glob.h>
#include <jansson.h>

#include "jschema/jschema.h"

#define SUITE_DIR "/usr/share/json-schema-test-suite/tests/draft7/"
/* Debian's 2.0.0 suite holds 227 cases in the files below; 179 are in the subset. */
#define SUITE_MIN_CASES 170

/* ---- counting allocations (release build only: ASan owns malloc in the other build) ---- */
#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
#define UNDER_ASAN 1
#endif
#endif
#if defined(UNDER_ASAN)
#define COUNT_ALLOCS 0
#else
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t n);
extern void *__libc_realloc(void *p, size_t n);
static volatile long alloc_calls;
void *malloc(size_t n)
{
    alloc_calls++;
    return __libc_malloc(n);
}
void *calloc(size_t count, size_t n)
{
    alloc_calls++;
    return __libc_calloc(count, n);
}
void *realloc(void *p, size_t n)
{
    alloc_calls++;
    return __libc_realloc(p, n);
}
#endif

/* ---- the suite ---- */

struct suite_totals {
    int files, groups, groups_skipped, cases, cases_skipped, failures;
    int fast_valid, fast_unsure; /* jschema_check_text() on the valid cases' text */
};
static struct suite_totals totals;

static const char *const SUBSET[] = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "$ref",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$comment",
    "$id",
};

static bool in_subset(const char *kw)
{
    for (size_t i = 0; i < sizeof SUBSET / sizeof SUBSET[0]; i++) {
        if (strcmp(kw, SUBSET[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool is_annotation_or_defs(const char *kw)
{
    return strcmp(kw, "$defs") == 0 || strcmp(kw, "definitions") == 0 || strcmp(kw, "title") == 0 ||
           strcmp(kw, "description") == 0 || strcmp(kw, "$comment") == 0 || strcmp(kw, "$ref") == 0;
}

/* Decides, from the schema alone (not from the validator), whether a suite group is in the
 * subset. Returns NULL when it is, else why not. */
static const char *out_of_subset(json_t *schema, bool is_root)
{
    if (json_is_boolean(schema)) {
        return NULL;
    }
    if (!json_is_object(schema)) {
        return "not a schema";
    }
    const char *kw;
    json_t *v;
    json_t *ref = json_object_get(schema, "$ref");
    json_object_foreach(schema, kw, v)
    {
        if (!in_subset(kw)) {
            static char why_kw[128];
            snprintf(why_kw, sizeof why_kw, "keyword \"%s\" outside the subset", kw);
            return why_kw;
        }
        if (strcmp(kw, "$id") == 0 && !is_root) {
            return "nested $id (base URI change)";
        }
        if (strcmp(kw, "$id") == 0 && ref != NULL) {
            return "$ref relative to a $id";
        }
        if (ref != NULL && !is_annotation_or_defs(kw)) {
            return "draft7 ignores $ref siblings, 2020-12 applies them";
        }
    }
    if (ref != NULL && (!json_is_string(ref) || json_string_value(ref)[0] != '#')) {
        return "remote $ref";
    }
    json_t *items = json_object_get(schema, "items");
    if (json_is_array(items)) {
        return "array-form items";
    }
    const char *why = NULL;
    if (items != NULL && (why = out_of_subset(items, false)) != NULL) {
        return why;
    }
    json_t *addl = json_object_get(schema, "additionalProperties");
    if (addl != NULL && (why = out_of_subset(addl, false)) != NULL) {
        return why;
    }
    static const char *const maps[] = {"properties", "$defs", "definitions"};
    for (size_t m = 0; m < 3; m++) {
        json_t *sub;
        json_object_foreach(json_object_get(schema, maps[m]), kw, sub)
        {
            if ((why = out_of_subset(sub, false)) != NULL) {
                return why;
            }
        }
    }
    return NULL;
}

static void run_suite_file(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", SUITE_DIR, rel);
    json_error_t jerr;
    json_t *groups = json_load_file(path, 0, &jerr);
    if (groups == NULL) {
        fail_msg("cannot read %s (package json-schema-test-suite): %s", path, jerr.text);
    }
    int ran = 0, failures = 0;
    size_t gi;
    json_t *group;
    json_array_foreach(groups, gi, group)
    {
        json_t *schema = json_object_get(group, "schema");
        json_t *tests = json_object_get(group, "tests");
        const char *gdesc = json_string_value(json_object_get(group, "description"));
        totals.groups++;
        const char *why = out_of_subset(schema, true);
        if (why != NULL) {
            totals.groups_skipped++;
            totals.cases_skipped += (int)json_array_size(tests);
            printf("  skip %s: \"%s\" (%s, %zu cases)\n", rel, gdesc, why, json_array_size(tests));
            continue;
        }
        char err[512];
        struct jschema *js = jschema_compile(schema, err, sizeof err);
        if (js == NULL) {
            printf("  FAIL %s: \"%s\": does not compile: %s\n", rel, gdesc, err);
            failures++;
            continue;
        }
        size_t ti;
        json_t *t;
        json_array_foreach(tests, ti, t)
        {
            bool want = json_is_true(json_object_get(t, "valid"));
            struct jschema_error verr;
            bool got = jschema_validate(js, json_object_get(t, "data"), &verr) == 0;
            ran++;
            /* The fast path over the case's text may say "not sure", never "valid" wrongly. */
            char *text = json_dumps(json_object_get(t, "data"), JSON_ENCODE_ANY | JSON_COMPACT);
            bool fast = jschema_check_text(js, text, strlen(text), NULL, NULL) == 0;
            free(text);
            if (fast && !want) {
                failures++;
                printf("  FAIL %s: \"%s\" / \"%s\": the fast path accepted an invalid instance\n",
                       rel, gdesc, json_string_value(json_object_get(t, "description")));
            }
            if (want) {
                fast ? totals.fast_valid++ : totals.fast_unsure++;
            }
            if (got != want) {
                failures++;
                printf("  FAIL %s: \"%s\" / \"%s\": expected %s, got %s (%s: %s)\n", rel, gdesc,
                       json_string_value(json_object_get(t, "description")),
                       want ? "valid" : "invalid", got ? "valid" : "invalid", verr.pointer,
                       verr.message);
            } else if (!got && verr.message[0] == '\0') {
                failures++;
                printf("  FAIL %s: \"%s\": invalid without a message\n", rel, gdesc);
            }
        }
        jschema_free(js);
    }
    json_decref(groups);
    totals.files++;
    totals.cases += ran;
    totals.failures += failures;
    printf("  %s: %d cases checked, %d failures\n", rel, ran, failures);
    assert_int_equal(failures, 0);
    assert_true(ran > 0); /* every listed file has cases in the subset */
}

#define SUITE_TEST(fn, file)                                                                       \
    static void fn(void **state)                                                                   \
    {                                                                                              \
        (void)state;                                                                               \
        run_suite_file(file);                                                                      \
    }
SUITE_TEST(test_suite_type, "type.json")
SUITE_TEST(test_suite_properties, "properties.json")
SUITE_TEST(test_suite_required, "required.json")
SUITE_TEST(test_suite_additional_properties, "additionalProperties.json")
SUITE_TEST(test_suite_items, "items.json")
SUITE_TEST(test_suite_enum, "enum.json")
SUITE_TEST(test_suite_const, "const.json")
SUITE_TEST(test_suite_pattern, "pattern.json")
SUITE_TEST(test_suite_format_ipv4, "optional/format/ipv4.json")
SUITE_TEST(test_suite_format_ipv6, "optional/format/ipv6.json")
SUITE_TEST(test_suite_format_date_time, "optional/format/date-time.json")
SUITE_TEST(test_suite_minimum, "minimum.json")
SUITE_TEST(test_suite_maximum, "maximum.json")
SUITE_TEST(test_suite_exclusive_minimum, "exclusiveMinimum.json")
SUITE_TEST(test_suite_exclusive_maximum, "exclusiveMaximum.json")
SUITE_TEST(test_suite_min_length, "minLength.json")
SUITE_TEST(test_suite_max_length, "maxLength.json")
SUITE_TEST(test_suite_min_items, "minItems.json")
SUITE_TEST(test_suite_max_items, "maxItems.json")
SUITE_TEST(test_suite_ref, "ref.json")

/* Runs last: the suite cannot pass by running nothing. */
static void test_suite_ran_enough_cases(void **state)
{
    (void)state;
    printf("  suite totals: %d files, %d groups (%d skipped), %d cases checked, %d cases "
           "skipped, %d failures\n",
           totals.files, totals.groups, totals.groups_skipped, totals.cases, totals.cases_skipped,
           totals.failures);
    assert_int_equal(totals.files, 20);
    assert_true(totals.cases >= SUITE_MIN_CASES);
    printf("  fast path on the valid cases: %d valid, %d not sure\n", totals.fast_valid,
           totals.fast_unsure);
    assert_true(totals.fast_valid > totals.fast_unsure); /* it does take the common cases */
}

/* ---- hand-written ---- */

static struct jschema *compile_text(const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (doc == NULL) {
        fail_msg("bad test schema: %s", jerr.text);
    }
    char err[512];
    struct jschema *js = jschema_compile(doc, err, sizeof err);
    json_decref(doc);
    if (js == NULL) {
        fail_msg("schema does not compile: %s", err);
    }
    return js;
}

/* Validates text; returns 0 or 1 and fills *e. */
static int check(const struct jschema *js, const char *text, struct jschema_error *e)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        fail_msg("bad test document: %s", jerr.text);
    }
    int rc = jschema_validate(js, doc, e);
    json_decref(doc);
    return rc;
}

static void expect_error(const struct jschema *js, const char *doc, const char *pointer,
                         const char *message)
{
    struct jschema_error e;
    assert_int_equal(check(js, doc, &e), 1);
    assert_string_equal(e.pointer, pointer);
    assert_string_equal(e.message, message);
}

static const char LOGIN_SCHEMA[] =
    "{\"type\":\"object\",\"required\":[\"account_id\",\"ip\",\"ts\"],"
    "\"additionalProperties\":false,\"properties\":{"
    "\"account_id\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128},"
    "\"ip\":{\"type\":\"string\",\"format\":\"ipv4\"},"
    "\"ts\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"success\":{\"type\":\"boolean\"},"
    "\"tags\":{\"type\":\"array\",\"maxItems\":3,\"items\":{\"type\":\"string\","
    "\"pattern\":\"^[a-z]+$\"}},"
    "\"score\":{\"type\":\"number\",\"minimum\":0,\"exclusiveMaximum\":1}}}";

static void test_error_pointer_and_message(void **state)
{
    (void)state;
    struct jschema *js = compile_text(LOGIN_SCHEMA);
    struct jschema_error e;
    assert_int_equal(
        check(js, "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-02T03:04:05Z\"}", &e),
        0);
    expect_error(js, "{\"account_id\":\"a\",\"ip\":\"999.1.1.1\",\"ts\":\"2026-01-02T03:04:05Z\"}",
                 "/ip", "\"999.1.1.1\" is not a valid ipv4 address");
    expect_error(js, "{\"account_id\":\"a\",\"ts\":\"2026-01-02T03:04:05Z\"}", "",
                 "required property \"ip\" is missing");
    expect_error(js, "{\"account_id\":\"a\",\"ip\":\"1.2.3.4\",\"ts\":\"2026-01-02 03:04:05Z\"}",
                 "/ts", "\"2026-01-02 03:04:05Z\" is not a valid RFC 3339 date-time");
    expect_error(js,
                 "{\"account_id\":\"a\",\"ip\":\"1.2.3.4\",\"ts\":\"2026-01-02T03:04:05Z\","
                 "\"tags\":[\"ok\",\"Bad\"]}",
                 "/tags/1", "\"Bad\" does not match pattern \"^[a-z]+$\"");
    expect_error(js, "{\"account_id\":\"\",\"ip\":\"1.2.3.4\",\"ts\":\"2026-01-02T03:04:05Z\"}",
                 "/account_id", "string is shorter than 1 characters");
    expect_error(js, "{\"account_id\":7,\"ip\":\"1.2.3.4\",\"ts\":\"2026-01-02T03:04:05Z\"}",
                 "/account_id", "expected string, got integer");
    expect_error(js,
                 "{\"account_id\":\"a\",\"ip\":\"1.2.3.4\",\"ts\":\"2026-01-02T03:04:05Z\","
                 "\"x\":1}",
                 "", "property \"x\" is not allowed");
    expect_error(js,
                 "{\"account_id\":\"a\",\"ip\":\"1.2.3.4\",\"ts\":\"2026-01-02T03:04:05Z\","
                 "\"score\":1.0}",
                 "/score", "1 is not less than the exclusive maximum 1");
    expect_error(js, "[]", "", "expected object, got array");
    jschema_free(js);

    /* RFC 6901 escaping of ~ and / in the instance location */
    js = compile_text("{\"properties\":{\"a/b~c\":{\"items\":{\"type\":[\"integer\",\"null\"]}}}}");
    expect_error(js, "{\"a/b~c\":[1,null,2.5]}", "/a~1b~0c/2",
                 "expected null or integer, got number");
    assert_int_equal(check(js, "{\"a/b~c\":[1,null,2.0]}", &e), 0); /* 2.0 is an integer */
    jschema_free(js);

    js = compile_text("{\"enum\":[1,\"x\",{\"a\":[true]}]}");
    assert_int_equal(check(js, "1.0", &e), 0);
    assert_int_equal(check(js, "{\"a\":[true]}", &e), 0);
    expect_error(js, "\"y\"", "", "\"y\" is not one of the allowed values");
    jschema_free(js);

    js = compile_text("{\"maxLength\":2}"); /* code points, not bytes */
    assert_int_equal(check(js, "\"\xc3\xa9\xe2\x82\xac\"", &e), 0);
    expect_error(js, "\"abc\"", "", "string is longer than 2 characters");
    jschema_free(js);
}

static void expect_rejected(const char *schema_text, const char *fragment)
{
    json_t *doc = json_loads(schema_text, JSON_DECODE_ANY, NULL);
    assert_non_null(doc);
    char err[512] = "";
    struct jschema *js = jschema_compile(doc, err, sizeof err);
    json_decref(doc);
    if (js != NULL) {
        jschema_free(js);
        fail_msg("schema %s compiled but should be rejected", schema_text);
    }
    if (strstr(err, fragment) == NULL) {
        fail_msg("error \"%s\" does not mention \"%s\"", err, fragment);
    }
}

static void test_unsupported_keywords_are_rejected(void **state)
{
    (void)state;
    expect_rejected("{\"allOf\":[{\"type\":\"string\"}]}", "unsupported keyword \"allOf\"");
    expect_rejected("{\"properties\":{\"x\":{\"oneOf\":[]}}}",
                    "schema #/properties/x: unsupported keyword \"oneOf\"");
    expect_rejected("{\"$defs\":{\"unused\":{\"patternProperties\":{}}}}",
                    "unsupported keyword \"patternProperties\"");
    expect_rejected("{\"items\":[{\"type\":\"string\"}]}", "array form is not supported");
    expect_rejected("{\"$ref\":\"http://example.com/s.json\"}", "is not supported");
    expect_rejected("{\"$ref\":\"#/$defs/missing\"}", "does not resolve");
    expect_rejected("{\"properties\":{\"a\":{\"$id\":\"x\"}}}", "only at the root");
    expect_rejected("{\"pattern\":\"a(?=b)\"}", "lookaround");
    expect_rejected("{\"pattern\":\"(a)\\\\1\"}", "unsupported escape");
    expect_rejected("{\"pattern\":\"[\\\\D]\"}", "inside a character class");
    expect_rejected("{\"pattern\":\"a[\"}", "unterminated character class");
    expect_rejected("{\"pattern\":\"(a\"}", "pattern \"(a\"");
    expect_rejected("{\"pattern\":\"a)\"}", "unbalanced parenthesis");
    expect_rejected("{\"pattern\":\"a\\\\u0000\"}", "NUL");
    expect_rejected("{\"pattern\":\"a++\"}", "nothing to repeat");
    expect_rejected("{\"pattern\":\"*a\"}", "nothing to repeat");
    expect_rejected("{\"pattern\":\"(x(a{40}b){40})\"}", "above 1000");
    expect_rejected("{\"minLength\":-1}", "non-negative integer");
    expect_rejected("{\"type\":\"str\"}", "unknown type");
    expect_rejected("{\"required\":[1]}", "array of strings");
    expect_rejected("{\"minimum\":\"1\"}", "must be a number");
    expect_rejected("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},"
                    "\"$ref\":\"#/$defs/a\"}",
                    "$ref cycle");
    expect_rejected("3", "object or a boolean");

    char err[256];
    assert_null(jschema_load("/nonexistent/schema.json", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/schema.json"));
}

static bool matches(const char *pattern, const char *text)
{
    json_t *schema = json_pack("{s:s}", "pattern", pattern);
    char err[512];
    struct jschema *js = jschema_compile(schema, err, sizeof err);
    json_decref(schema);
    if (js == NULL) {
        fail_msg("pattern %s: %s", pattern, err);
    }
    json_t *doc = json_string(text);
    struct jschema_error e;
    int rc = jschema_validate(js, doc, &e);
    json_decref(doc);
    jschema_free(js);
    return rc == 0;
}

static void test_ecma_patterns_translate_to_posix(void **state)
{
    (void)state;
    assert_true(matches("^\\d{3}-\\w+$", "123-ab_C9"));
    assert_false(matches("^\\d{3}-\\w+$", "12-ab"));
    assert_true(matches("^\\D\\W\\S$", "a-b"));
    assert_false(matches("^\\D$", "5"));
    assert_true(matches("^a\\sb$", "a\tb"));
    assert_true(matches("^[\\w.+-]+@[\\w-]+\\.[a-z]{2,}$", "first.last+tag@ex-ample.org"));
    assert_false(matches("^[\\w.+-]+@[\\w-]+\\.[a-z]{2,}$", "no at sign"));
    assert_true(matches("^(?:ab)+?$", "abab"));
    assert_true(matches("b", "abc")); /* unanchored search */
    assert_false(matches("^b", "abc"));
    assert_true(matches("^.$", "\xc3\xa9")); /* one code point, two bytes */
    assert_true(matches("^[^a]$", "\xe2\x82\xac"));
    assert_false(matches("^[^a]$", "a"));
    assert_true(matches("^[\\^]$", "^"));
    assert_true(matches("^[\\]\\-x]+$", "]-x"));
    assert_true(matches("^[\\w-.]+$", "a-b.c")); /* '-' next to a class is literal */
    assert_true(matches("^[.-\\d]+$", "-.5"));
    assert_false(matches("^[\\w-.]+$", "a b"));
    assert_true(matches("^[\\x20-\\x7e]+$", "ok ~"));
    assert_true(matches("^a{$", "a{")); /* Annex B literal brace */
    assert_true(matches("^\\u00e9\\x41$", "\xc3\xa9"
                                          "A"));
    assert_true(matches("^\\/\\.$", "/."));
    assert_false(matches("^.$", "\n"));
    assert_true(matches("\\bword\\b", "a word here"));
    char thousand[1002];
    memset(thousand, 'a', 1000);
    thousand[1000] = '\0';
    assert_true(matches("^(a{10}){100}$", thousand)); /* 1000: the repetition limit */
    thousand[999] = '\0';
    assert_false(matches("^(a{10}){100}$", thousand));
    assert_true(matches("^a??b+?$", "bb"));
}

static bool valid_as(const char *format, const char *text)
{
    json_t *schema = json_pack("{s:s}", "format", format);
    struct jschema *js = jschema_compile(schema, NULL, 0);
    json_decref(schema);
    assert_non_null(js);
    json_t *doc = json_string(text);
    int rc = jschema_validate(js, doc, NULL);
    json_decref(doc);
    jschema_free(js);
    return rc == 0;
}

static void test_formats(void **state)
{
    (void)state;
    assert_true(valid_as("ipv4", "0.0.0.0"));
    assert_true(valid_as("ipv4", "255.255.255.255"));
    assert_false(valid_as("ipv4", "01.2.3.4")); /* leading zero */
    assert_false(valid_as("ipv4", "1.2.3"));
    assert_false(valid_as("ipv4", "1.2.3.4."));
    assert_false(valid_as("ipv4", "1.2.3.4 "));
    assert_false(valid_as("ipv4", "1.2.3.1000"));
    assert_true(valid_as("ipv6", "::1"));
    assert_true(valid_as("ipv6", "2001:db8::8a2e:370:7334"));
    assert_true(valid_as("ipv6", "::ffff:192.168.0.1"));
    assert_false(valid_as("ipv6", "fe80::1%eth0"));
    assert_false(valid_as("ipv6", "1:2:3:4:5:6:7:8:9"));
    assert_false(valid_as("ipv6", ""));
    assert_true(valid_as("date-time", "2020-02-29T00:00:00Z"));
    assert_false(valid_as("date-time", "2019-02-29T00:00:00Z"));
    assert_false(valid_as("date-time", "1900-02-29T00:00:00Z"));
    assert_true(valid_as("date-time", "2000-02-29t12:00:00.5z"));
    assert_true(valid_as("date-time", "1998-12-31T23:59:60Z"));        /* leap second */
    assert_true(valid_as("date-time", "1998-12-31T15:59:60.1-08:00")); /* 23:59:60 UTC */
    assert_false(valid_as("date-time", "1998-12-31T22:59:60Z"));
    assert_false(valid_as("date-time", "2020-01-01T00:00:00")); /* no offset */
    assert_false(valid_as("date-time", "2020-01-01T00:00:00+24:00"));
    assert_false(valid_as("date-time", "2020-01-01T24:00:00Z"));
    assert_false(valid_as("date-time", "2020-01-01T00:00:00.Z"));
    assert_false(valid_as("date-time", "2020-1-01T00:00:00Z"));
    assert_false(valid_as("date-time", "2020-13-01T00:00:00Z"));
    assert_true(valid_as("date-time", "2020-04-30T00:00:00+05:30"));
    assert_false(valid_as("date-time", "2020-04-31T00:00:00+05:30"));
    /* other formats are annotations; format never applies to non-strings */
    assert_true(valid_as("email", "not an email"));
    json_t *schema = json_pack("{s:s}", "format", "ipv4");
    struct jschema *js = jschema_compile(schema, NULL, 0);
    json_t *num = json_integer(12);
    assert_int_equal(jschema_validate(js, num, NULL), 0);
    json_decref(num);
    json_decref(schema);
    jschema_free(js);
}

static void test_ref_pointer_unescaping(void **state)
{
    (void)state;
    struct jschema *js =
        compile_text("{\"$defs\":{\"a/b\":{\"type\":\"integer\"},\"c~d\":{\"type\":\"string\"},"
                     "\"e%f\":{\"type\":\"null\"}},\"properties\":{"
                     "\"slash\":{\"$ref\":\"#/$defs/a~1b\"},\"tilde\":{\"$ref\":\"#/$defs/c~0d\"},"
                     "\"percent\":{\"$ref\":\"#/$defs/e%25f\"},"
                     "\"legacy\":{\"$ref\":\"#/definitions/x\"}},"
                     "\"definitions\":{\"x\":{\"const\":true}}}");
    struct jschema_error e;
    assert_int_equal(
        check(js, "{\"slash\":1,\"tilde\":\"s\",\"percent\":null,\"legacy\":true}", &e), 0);
    expect_error(js, "{\"slash\":\"1\"}", "/slash", "expected integer, got string");
    expect_error(js, "{\"tilde\":1}", "/tilde", "expected string, got integer");
    expect_error(js, "{\"percent\":1}", "/percent", "expected null, got integer");
    expect_error(js, "{\"legacy\":false}", "/legacy", "false is not the required constant value");
    jschema_free(js);
}

static void test_recursive_ref(void **state)
{
    (void)state;
    struct jschema *js = compile_text(
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"required\":[\"name\"],\"properties\":{"
        "\"name\":{\"type\":\"string\"},"
        "\"children\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}}}},"
        "\"$ref\":\"#/$defs/node\"}");
    struct jschema_error e;
    assert_int_equal(
        check(js,
              "{\"name\":\"r\",\"children\":[{\"name\":\"a\",\"children\":[{\"name\":\"b\"}]}]}",
              &e),
        0);
    expect_error(js, "{\"name\":\"r\",\"children\":[{\"name\":\"a\",\"children\":[{\"name\":1}]}]}",
                 "/children/0/children/0/name", "expected string, got integer");
    jschema_free(js);

    js = compile_text("{\"properties\":{\"next\":{\"$ref\":\"#\"},\"v\":{\"maximum\":3}}}");
    expect_error(js, "{\"next\":{\"next\":{\"v\":4}}}", "/next/next/v",
                 "4 is greater than the maximum 3");
    /* an instance nested deeper than the limit fails cleanly instead of overflowing */
    json_t *deep = json_object();
    for (int i = 0; i < 2000; i++) {
        json_t *outer = json_object();
        json_object_set_new(outer, "next", deep);
        deep = outer;
    }
    assert_int_equal(jschema_validate(js, deep, &e), 1);
    assert_non_null(strstr(e.message, "nesting deeper"));
    json_decref(deep);
    jschema_free(js);
}

/* Every schema in the repository compiles (cwd is the repository root under tests/run.py). */
static void test_repository_schemas_compile(void **state)
{
    (void)state;
    glob_t g;
    int n = 0;
    const char *pats[] = {"config/schema/*.json", "config/schema/events/*.json"};
    for (size_t p = 0; p < 2; p++) {
        if (glob(pats[p], 0, NULL, &g) != 0) {
            continue;
        }
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char err[512];
            struct jschema *js = jschema_load(g.gl_pathv[i], err, sizeof err);
            if (js == NULL) {
                globfree(&g);
                fail_msg("%s", err);
            }
            jschema_free(js);
            n++;
        }
        globfree(&g);
    }
    printf("  %d repository schemas compile\n", n);
    assert_true(n >= 1);
}

/* ---- robustness: random instances and random patterns ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static json_t *random_value(int depth)
{
    static const char *const keys[] = {"account_id", "ip", "ts",   "tags", "score",
                                       "a/b",        "~",  "next", "v",    "success"};
    static const char *const strs[] = {"",          "1.2.3.4",  "::1", "2026-01-01T00:00:00Z",
                                       "999.1.1.1", "\xc3\xa9", "abc", "x~/y"};
    switch (rnd() % (depth > 4 ? 5 : 7)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd() & 1);
    case 2:
        return json_integer((json_int_t)rnd() - (1 << 30));
    case 3:
        return json_real((double)rnd() / 7.0);
    case 4:
        return json_string(strs[rnd() % 8]);
    case 5: {
        json_t *a = json_array();
        for (uint32_t i = rnd() % 5; i > 0; i--) {
            json_array_append_new(a, random_value(depth + 1));
        }
        return a;
    }
    default: {
        json_t *o = json_object();
        for (uint32_t i = rnd() % 6; i > 0; i--) {
            json_object_set_new(o, keys[rnd() % 10], random_value(depth + 1));
        }
        return o;
    }
    }
}

/* Resolves an instance pointer the way a client of jschema_error would. */
static json_t *resolve_pointer(json_t *doc, const char *ptr)
{
    char seg[256];
    while (*ptr == '/') {
        ptr++;
        size_t n = 0;
        while (*ptr != '\0' && *ptr != '/') {
            char ch = *ptr++;
            if (ch == '~') {
                ch = *ptr++ == '0' ? '~' : '/';
            }
            seg[n++] = ch;
        }
        seg[n] = '\0';
        doc = json_is_array(doc) ? json_array_get(doc, strtoul(seg, NULL, 10))
                                 : json_object_get(doc, seg);
        if (doc == NULL) {
            return NULL;
        }
    }
    return doc;
}

static void test_random_instances_report_resolvable_pointers(void **state)
{
    (void)state;
    const char *schemas[] = {
        LOGIN_SCHEMA,
        "{\"properties\":{\"next\":{\"$ref\":\"#\"},\"a/b\":{\"items\":{\"$ref\":\"#\"}},"
        "\"~\":{\"enum\":[null,1,\"abc\"]}},\"additionalProperties\":{\"type\":[\"object\","
        "\"array\",\"string\"],\"minLength\":2,\"maxItems\":2}}",
    };
    int invalid = 0;
    for (size_t s = 0; s < 2; s++) {
        struct jschema *js = compile_text(schemas[s]);
        for (int i = 0; i < 3000; i++) {
            json_t *doc = random_value(0);
            struct jschema_error e;
            int rc = jschema_validate(js, doc, &e);
            if (rc != 0) {
                invalid++;
                assert_true(e.message[0] != '\0');
                if (resolve_pointer(doc, e.pointer) == NULL) {
                    fail_msg("pointer \"%s\" (%s) does not resolve", e.pointer, e.message);
                }
            }
            assert_int_equal(jschema_validate(js, doc, NULL), rc); /* deterministic */
            json_decref(doc);
        }
        jschema_free(js);
    }
    assert_true(invalid > 100);
}

static void test_random_patterns_compile_or_fail_cleanly(void **state)
{
    (void)state;
    static const char alphabet[] = "ab.*+?(){}[]^$|\\-dDwWsSux0123,:/=!";
    int ok = 0, rejected = 0;
    for (int i = 0; i < 4000; i++) {
        char pat[24];
        size_t n = rnd() % (sizeof pat - 1);
        for (size_t k = 0; k < n; k++) {
            pat[k] = alphabet[rnd() % (sizeof alphabet - 1)];
        }
        pat[n] = '\0';
        json_t *schema = json_pack("{s:s}", "pattern", pat);
        char err[512] = "";
        struct jschema *js = jschema_compile(schema, err, sizeof err);
        json_decref(schema);
        if (js == NULL) {
            assert_non_null(strstr(err, "pattern"));
            rejected++;
            continue;
        }
        ok++;
        json_t *doc = json_string("ab-0 x");
        jschema_validate(js, doc, NULL);
        json_decref(doc);
        jschema_free(js);
    }
    printf("  random patterns: %d compiled, %d rejected\n", ok, rejected);
    assert_true(ok > 100 && rejected > 100);
}

/* ---- the hot path does not allocate ---- */

/* ---- the raw-text fast path ---- */

static int fast(const struct jschema *js, const char *text)
{
    return jschema_check_text(js, text, strlen(text), NULL, NULL);
}

/* What the jansson path says of text: 0 valid, 1 schema violation, 2 not loadable. */
static int slow(const struct jschema *js, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        return 2;
    }
    int rc = js != NULL ? jschema_validate(js, doc, NULL) : 0;
    json_decref(doc);
    return rc;
}

static void test_fast_path_cases(void **state)
{
    (void)state;
    struct jschema *js = compile_text(LOGIN_SCHEMA);
    const char *ok = "{\"account_id\":\"acc-42\",\"ip\":\"192.168.1.20\","
                     "\"ts\":\"2026-11-25T06:00:00.123+01:00\",\"success\":true,"
                     "\"tags\":[\"web\",\"eu\"],\"score\":0}";
    assert_int_equal(fast(js, ok), 0);
    assert_int_equal(slow(js, ok, strlen(ok)), 0);
    assert_int_equal(
        fast(js, " \n{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\"}\t"),
        0);
    /* every one of these must go to jansson: invalid, or beyond the fast path */
    const char *unsure[] = {
        "{\"account_id\":\"a\",\"account_id\":\"b\",\"ip\":\"10.0.0.1\",\"ts\":"
        "\"2026-01-01T00:00:"
        "00Z\"}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\"}", /* required */
        "{\"account_id\":\"a\",\"ip\":\"1.2.3.4.5\",\"ts\":\"2026-01-01T00:00:"
        "00Z\"}", /* format */
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-13-01T00:00:"
        "00Z\"}", /* format */
        "{\"account_id\":\"a\\u0041\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:"
        "00:00Z\"}", /* escape
                      */
        "{\"account_id\":\"\xc3\xa9\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:"
        "00:00Z\"}", /* UTF-8
                      */
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\"}"
        " x",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"n\":01}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"n\":1e3}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"n\":[1,]}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"n\":tru}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"n\":"
        "1234567890123456789}",
        "[1]",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"tags\":[\"A\"]"
        "}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"score\":1}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"score\":0.5}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\","
        "\"other\":1}",
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\"",
        "",
    };
    for (size_t i = 0; i < sizeof unsure / sizeof unsure[0]; i++) {
        if (fast(js, unsure[i]) != 1) {
            fail_msg("the fast path accepted case %zu: %s", i, unsure[i]);
        }
    }
    /* a nested duplicate, and a NUL byte inside the text */
    assert_int_equal(fast(NULL, "{\"a\":{\"b\":1,\"b\":1}}"), 1);
    assert_int_equal(jschema_check_text(NULL, "{\"a\":\"x\0\"}", 9, NULL, NULL), 1);
    assert_int_equal(fast(NULL, "[1,-0,2.5,\"x\",null,false,{}]"), 0);

    /* used: the extent of one value, the rest not looked at */
    size_t used = 0;
    const char *two =
        "{\"account_id\":\"a\",\"ip\":\"10.0.0.1\",\"ts\":\"2026-01-01T00:00:00Z\"} , junk";
    assert_int_equal(jschema_check_text(js, two, strlen(two), &used, NULL), 0);
    assert_int_equal(used, strlen(two) - strlen(" , junk"));

    /* the captured member */
    struct jschema_capture cap = {.name = "account_id", .name_len = 10};
    assert_int_equal(jschema_check_text(js, ok, strlen(ok), NULL, &cap), 0);
    assert_int_equal(cap.kind, JSCHEMA_CAP_STRING);
    assert_int_equal(cap.len, 6);
    assert_memory_equal(cap.str, "acc-42", 6);
    cap = (struct jschema_capture){.name = "k", .name_len = 1};
    assert_int_equal(fast(NULL, "{\"k\":-0}"), 0);
    assert_int_equal(jschema_check_text(NULL, "{\"k\":-17,\"x\":{\"k\":\"no\"}}", 24, NULL, &cap),
                     0);
    assert_int_equal(cap.kind, JSCHEMA_CAP_INTEGER);
    assert_int_equal(cap.integer, -17);
    cap = (struct jschema_capture){.name = "k", .name_len = 1};
    assert_int_equal(jschema_check_text(NULL, "{\"x\":{\"k\":\"no\"}}", 16, NULL, &cap), 0);
    assert_int_equal(cap.kind, JSCHEMA_CAP_ABSENT); /* only the top level counts */
    cap = (struct jschema_capture){.name = "k", .name_len = 1};
    assert_int_equal(jschema_check_text(NULL, "{\"k\":1.5}", 9, NULL, &cap), 0);
    assert_int_equal(cap.kind, JSCHEMA_CAP_OTHER);
    jschema_free(js);
}

/* Random documents, dumped and then mutated byte by byte: whenever the fast path says "valid",
 * jansson and jschema_validate() must agree. */
static void test_fast_path_never_accepts_what_jansson_rejects(void **state)
{
    (void)state;
    const char *schemas[] = {
        LOGIN_SCHEMA,
        "{\"properties\":{\"next\":{\"$ref\":\"#\"},\"a/b\":{\"items\":{\"$ref\":\"#\"}},"
        "\"~\":{\"enum\":[null,1,\"abc\"]}},\"additionalProperties\":{\"type\":[\"object\","
        "\"array\",\"string\"],\"minLength\":2,\"maxItems\":2}}",
        "{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\",\"minimum\":0,"
        "\"exclusiveMaximum\":1000000},\"v\":{\"const\":\"abc\"},\"success\":{\"enum\":[true,"
        "null]},\"tags\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"string\","
        "\"maxLength\":3}}},\"additionalProperties\":false}",
    };
    static const char mutations[] = "{}[],:\"\\ 0-.e1tnx\x01\xc3";
    int fast_valid = 0, checked = 0;
    for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++) {
        struct jschema *js = compile_text(schemas[s]);
        for (int i = 0; i < 3000; i++) {
            json_t *doc = random_value(0);
            char *text = json_dumps(doc, JSON_ENCODE_ANY | (i % 2 ? JSON_COMPACT : JSON_INDENT(1)));
            json_decref(doc);
            size_t len = strlen(text);
            for (int m = 0; m < 4; m++) {
                if (m > 0 && len > 0) { /* overwrite, or cut short */
                    size_t at = rnd() % len;
                    if (m == 3) {
                        len = at;
                    } else {
                        text[at] = mutations[rnd() % (sizeof mutations - 1)];
                    }
                }
                checked++;
                if (jschema_check_text(js, text, len, NULL, NULL) == 0) {
                    fast_valid++;
                    if (slow(js, text, len) != 0) {
                        fail_msg("fast path valid, jansson path not: %.*s", (int)len, text);
                    }
                }
                size_t used = 0;
                if (jschema_check_text(js, text, len, &used, NULL) == 0) {
                    assert_true(used <= len);
                    if (slow(js, text, used) != 0) {
                        fail_msg("fast path valid for %zu bytes, jansson path not: %.*s", used,
                                 (int)len, text);
                    }
                }
            }
            free(text);
        }
        jschema_free(js);
    }
    printf("  fast path: %d of %d texts valid\n", fast_valid, checked);
    assert_true(fast_valid > checked / 20);
}

static void test_validation_does_not_allocate(void **state)
{
    (void)state;
#if COUNT_ALLOCS
    long at_start = alloc_calls;
    struct jschema *js = compile_text(LOGIN_SCHEMA);
    assert_true(alloc_calls > at_start); /* the counter sees allocations at all */
    json_t *ok = json_loads("{\"account_id\":\"acc-42\",\"ip\":\"192.168.1.20\","
                            "\"ts\":\"2026-11-25T06:00:00.123+01:00\",\"success\":true,"
                            "\"tags\":[\"web\",\"eu\"],\"score\":0.25}",
                            0, NULL);
    json_t *bad = json_loads("{\"account_id\":\"acc-42\",\"ip\":\"192.168.1.256\","
                             "\"ts\":\"2026-11-25T06:00:00Z\"}",
                             0, NULL);
    assert_non_null(ok);
    assert_non_null(bad);
    struct jschema_error e;
    assert_int_equal(jschema_validate(js, ok, &e), 0); /* warm-up */
    long before = alloc_calls;
    const char *ok_text = "{\"account_id\":\"acc-42\",\"ip\":\"192.168.1.20\","
                          "\"ts\":\"2026-11-25T06:00:00Z\",\"tags\":[\"web\",\"eu\"]}";
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(jschema_validate(js, ok, &e), 0);
        assert_int_equal(jschema_validate(js, bad, &e), 1);
        assert_int_equal(jschema_check_text(js, ok_text, strlen(ok_text), NULL, NULL), 0);
    }
    long used = alloc_calls - before;
    printf("  allocations in 2000 validations and 1000 fast-path checks: %ld\n", used);
    assert_int_equal(used, 0);
    json_decref(ok);
    json_decref(bad);
    jschema_free(js);
#else
    skip(); /* ASan replaces malloc; the release build runs this check */
#endif
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
        cmocka_unit_test(test_suite_format_ipv4),
        cmocka_unit_test(test_suite_format_ipv6),
        cmocka_unit_test(test_suite_format_date_time),
        cmocka_unit_test(test_suite_minimum),
        cmocka_unit_test(test_suite_maximum),
        cmocka_unit_test(test_suite_exclusive_minimum),
        cmocka_unit_test(test_suite_exclusive_maximum),
        cmocka_unit_test(test_suite_min_length),
        cmocka_unit_test(test_suite_max_length),
        cmocka_unit_test(test_suite_min_items),
        cmocka_unit_test(test_suite_max_items),
        cmocka_unit_test(test_suite_ref),
        cmocka_unit_test(test_suite_ran_enough_cases),
        cmocka_unit_test(test_error_pointer_and_message),
        cmocka_unit_test(test_unsupported_keywords_are_rejected),
        cmocka_unit_test(test_ecma_patterns_translate_to_posix),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_ref_pointer_unescaping),
        cmocka_unit_test(test_recursive_ref),
        cmocka_unit_test(test_repository_schemas_compile),
        cmocka_unit_test(test_random_instances_report_resolvable_pointers),
        cmocka_unit_test(test_random_patterns_compile_or_fail_cleanly),
        cmocka_unit_test(test_validation_does_not_allocate),
        cmocka_unit_test(test_fast_path_cases),
        cmocka_unit_test(test_fast_path_never_accepts_what_jansson_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
