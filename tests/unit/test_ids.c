/* test_ids.c - UUIDv7 event ids, client id validation, W3C traceparent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ids.h"

static bool is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static void test_uuid7_layout(void **state)
{
    (void)state;
    char id[ID_UUID_LEN + 1];
    id_uuid7(id);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[8], '-');
    assert_int_equal(id[13], '-');
    assert_int_equal(id[18], '-');
    assert_int_equal(id[23], '-');
    assert_true(is_hex_lower(id, 8) && is_hex_lower(id + 9, 4) && is_hex_lower(id + 14, 4) &&
                is_hex_lower(id + 19, 4) && is_hex_lower(id + 24, 12));
    assert_int_equal(id[14], '7');           /* version 7 */
    assert_non_null(strchr("89ab", id[19])); /* variant 0b10 */
    assert_true(id_is_valid(id));
}

/* Streaming outputs: the same (route, input, index) always gives the same id; any change gives
 * another. The expected value is SHA-256("guard\0login-1\0" "0") laid out as a UUIDv8, computed
 * with Python's hashlib. */
static void test_derived_id_is_stable_and_distinct(void **state)
{
    (void)state;
    char a[ID_UUID_LEN + 1], b[ID_UUID_LEN + 1];
    assert_int_equal(id_derived("guard", "login-1", 0, a), 0);
    assert_string_equal(a, "6580117d-d320-8ff9-a66f-4c86a3e9ecdf");
    assert_int_equal(a[14], '8');
    assert_non_null(strchr("89ab", a[19]));
    assert_true(id_is_valid(a));
    assert_int_equal(id_derived("guard", "login-1", 0, b), 0);
    assert_string_equal(a, b);
    assert_int_equal(id_derived("guard", "login-1", 1, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(id_derived("guard", "login-2", 0, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(id_derived("ipcheck", "login-1", 0, b), 0);
    assert_string_not_equal(a, b);
    /* field boundaries count: ("guar", "dlogin-1") is another name */
    assert_int_equal(id_derived("guar", "dlogin-1", 0, b), 0);
    assert_string_not_equal(a, b);
    char big[1100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(id_derived("guard", big, 0, b), -1);
}

static void test_uuid7_carries_the_time_and_sorts(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    char id[ID_UUID_LEN + 1];
    id_uuid7(id);
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t after = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    uint64_t ms = strtoull(hex, NULL, 16);
    assert_true(ms >= before && ms <= after);

    /* ids made in different milliseconds sort by time; all ids differ */
    char prev[ID_UUID_LEN + 1];
    id_uuid7(prev);
    for (int i = 0; i < 200; i++) {
        char next[ID_UUID_LEN + 1];
        id_uuid7(next);
        assert_string_not_equal(prev, next);
        assert_true(strncmp(prev, next, 13) <= 0); /* the 48-bit time prefix never goes back */
        memcpy(prev, next, sizeof prev);
    }
}

static void test_id_is_valid(void **state)
{
    (void)state;
    assert_true(id_is_valid("a"));
    assert_true(id_is_valid("order-42:retry/1"));
    assert_false(id_is_valid(""));
    assert_false(id_is_valid("has space"));
    assert_false(id_is_valid("quote\"d"));
    assert_false(id_is_valid("tab\there"));
    assert_false(id_is_valid("caf\xc3\xa9"));
    char long_id[130];
    memset(long_id, 'x', 128);
    long_id[128] = '\0';
    assert_true(id_is_valid(long_id));
    long_id[128] = 'x';
    long_id[129] = '\0';
    assert_false(id_is_valid(long_id));
}

static void test_trace_parse_valid(void **state)
{
    (void)state;
    struct trace t;
    /* the example of https://www.w3.org/TR/trace-context/#examples-of-http-traceparent-headers */
    assert_int_equal(trace_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &t), 0);
    assert_string_equal(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(t.span_id, "b7ad6b7169203331");
    assert_string_equal(t.flags, "01");
    char out[TRACEPARENT_LEN + 1];
    trace_format(&t, out);
    assert_string_equal(out, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    /* a future version may append fields */
    assert_int_equal(
        trace_parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-extra", &t), 0);
    assert_string_equal(t.flags, "00");
}

static void test_trace_parse_rejects_malformed(void **state)
{
    (void)state;
    struct trace t;
    static const char *const bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",    /* short */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", /* v00 has no extra */
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",   /* upper case */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",   /* zero trace id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",   /* zero span id */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* forbidden version */
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* separator */
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",   /* not hex */
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",  /* extra without '-' */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (trace_parse(bad[i], &t) != -1) {
            fail_msg("accepted malformed traceparent \"%s\"", bad[i]);
        }
    }
    assert_int_equal(trace_parse(NULL, &t), -1);
}

static void test_trace_new_and_child(void **state)
{
    (void)state;
    struct trace a, b, child;
    trace_new(&a);
    trace_new(&b);
    assert_int_equal(strlen(a.trace_id), 32);
    assert_int_equal(strlen(a.span_id), 16);
    assert_string_equal(a.flags, "01");
    assert_string_not_equal(a.trace_id, b.trace_id);
    char out[TRACEPARENT_LEN + 1];
    trace_format(&a, out);
    assert_int_equal(strlen(out), TRACEPARENT_LEN);
    struct trace back;
    assert_int_equal(trace_parse(out, &back), 0); /* what we send, we accept */
    assert_string_equal(back.trace_id, a.trace_id);

    trace_child(&a, &child);
    assert_string_equal(child.trace_id, a.trace_id);
    assert_string_not_equal(child.span_id, a.span_id);
    assert_string_equal(child.flags, a.flags);
}

static void test_trace_id_of(void **state)
{
    (void)state;
    char out[33] = "untouched";
    assert_string_equal(trace_id_of("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", out),
                        "0af7651916cd43dd8448eb211c80319c");
    assert_ptr_equal(trace_id_of("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", out),
                     out);
    char other[33] = "untouched";
    assert_null(trace_id_of(NULL, other));
    assert_null(trace_id_of("not-a-traceparent", other));
    assert_null(trace_id_of("00-00000000000000000000000000000000-b7ad6b7169203331-01", other));
    assert_string_equal(other, "untouched");
}

static void test_random_bytes_fills(void **state)
{
    (void)state;
    unsigned char a[64] = {0}, b[64] = {0};
    random_bytes(a, sizeof a);
    random_bytes(b, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
    int nonzero = 0;
    for (size_t i = 0; i < sizeof a; i++) {
        nonzero += a[i] != 0;
    }
    assert_true(nonzero > 32); /* all-but-impossible to fail for random bytes */
    random_bytes(a, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid7_layout),
        cmocka_unit_test(test_derived_id_is_stable_and_distinct),
        cmocka_unit_test(test_uuid7_carries_the_time_and_sorts),
        cmocka_unit_test(test_id_is_valid),
        cmocka_unit_test(test_trace_parse_valid),
        cmocka_unit_test(test_trace_parse_rejects_malformed),
        cmocka_unit_test(test_trace_new_and_child),
        cmocka_unit_test(test_trace_id_of),
        cmocka_unit_test(test_random_bytes_fills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
