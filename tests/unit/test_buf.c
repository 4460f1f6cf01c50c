/* test_buf.c - growable buffer with a hard cap, JSON string escaping, allocation wrappers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "alloc.h"
#include "buf.h"

static void test_append_grows_and_stays_nul_terminated(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_null(b.data);
    assert_int_equal(buf_appends(&b, "abc"), 0);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    /* many appends force several reallocations */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    }
    assert_int_equal(b.len, 3 + 10000);
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.cap > b.len);
    assert_memory_equal(b.data + 3 + 9990, "0123456789", 10);
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_append_binary_with_nul_bytes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 3);
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 3);
    buf_release(&b);
}

static void test_append_cap_refuses_and_keeps_content(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_appends(&b, "12345678"), 0); /* exactly the cap */
    assert_int_equal(buf_appends(&b, "9"), BUF_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(buf_append(&b, "123456789", 9), BUF_ETOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_appendf(&b, "%s", "far too long for eight"), BUF_ETOOBIG);
    assert_int_equal(b.len, 0);
    /* a huge length must not wrap around the cap check */
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), BUF_ETOOBIG);
    buf_release(&b);
    assert_int_equal(b.max_len, 8); /* the cap survives release for reuse */
}

static void test_appendf_short_and_long(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(buf_appendf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "42-x");
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    /* longer than the internal 256-byte scratch: goes through the second formatting pass */
    assert_int_equal(buf_appendf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 4 + 2 + 999);
    assert_int_equal(b.data[4], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    buf_release(&b);
}

static void test_take_transfers_ownership(void **state)
{
    (void)state;
    struct buf b;
    size_t len = 99;
    buf_init(&b, 100);
    char *empty = buf_take(&b, &len);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    assert_int_equal(len, 0);
    free(empty);

    buf_appends(&b, "hello");
    char *s = buf_take(&b, &len);
    assert_string_equal(s, "hello");
    assert_int_equal(len, 5);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max_len, 100);
    free(s);
    buf_release(&b);
}

/* Escapes s, checks the literal, and checks jansson decodes it back to expect. */
static void check_json_string(const char *s, const char *literal, const char *expect)
{
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(buf_append_json_string(&b, s), 0);
    if (literal) {
        assert_string_equal(b.data, literal);
    }
    json_error_t je;
    json_t *v = json_loads(b.data, JSON_DECODE_ANY, &je);
    assert_non_null(v);
    assert_true(json_is_string(v));
    assert_string_equal(json_string_value(v), expect);
    json_decref(v);
    buf_release(&b);
}

static void test_json_string_escapes(void **state)
{
    (void)state;
    check_json_string("plain", "\"plain\"", "plain");
    check_json_string("", "\"\"", "");
    check_json_string("q\"b\\n\nr\rt\t", "\"q\\\"b\\\\n\\nr\\rt\\t\"", "q\"b\\n\nr\rt\t");
    check_json_string("\x01\x1f", "\"\\u0001\\u001f\"", "\x01\x1f");
    /* valid UTF-8 passes through unchanged */
    check_json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
                      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

static void test_json_string_replaces_invalid_utf8(void **state)
{
    (void)state;
    /* a lone continuation byte, a truncated sequence at the end, an overlong '/', a surrogate */
    check_json_string("a\x80z", "\"a\\ufffdz\"", "a\xef\xbf\xbdz");
    check_json_string("end\xe2\x82", NULL, "end\xef\xbf\xbd\xef\xbf\xbd");
    check_json_string("\xc0\xaf", NULL, "\xef\xbf\xbd\xef\xbf\xbd");
    check_json_string("\xed\xa0\x80", NULL, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

static void test_json_string_respects_cap(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 6);
    assert_int_equal(buf_append_json_string(&b, "abcd"), 0); /* "abcd" = 6 bytes */
    buf_reset(&b);
    assert_int_equal(buf_append_json_string(&b, "abcde"), BUF_ETOOBIG);
    buf_release(&b);
}

static void test_reserve_allocates_once_and_respects_cap(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_reserve(&b, 90), 0);
    assert_true(b.cap > 90);
    char *before = b.data;
    for (int i = 0; i < 9; i++) {
        assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    }
    assert_ptr_equal(b.data, before); /* no growth while filling the reserved room */
    assert_int_equal(b.len, 90);
    assert_int_equal(buf_reserve(&b, 11), BUF_ETOOBIG);
    assert_int_equal(b.len, 90);
    buf_release(&b);
}

static void test_alloc_wrappers(void **state)
{
    (void)state;
    char *s = xstrdup("hello");
    assert_string_equal(s, "hello");
    free(s);
    s = xstrndup("hello", 3);
    assert_string_equal(s, "hel");
    free(s);
    s = xstrndup("hi", 10);
    assert_string_equal(s, "hi");
    free(s);
    s = xasprintf("%s=%d", "n", 7);
    assert_string_equal(s, "n=7");
    free(s);
    int *z = xcalloc(4, sizeof *z);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(z[i], 0);
    }
    z = xrealloc(z, 100 * sizeof *z);
    z[99] = 1;
    assert_int_equal(z[0], 0);
    free(z);
    void *p = xmalloc(0); /* never NULL, even for zero bytes */
    assert_non_null(p);
    free(p);
}

/* buf_format_int and buf_append_int against printf's %lld, extremes included. */
static void test_format_int_matches_printf(void **state)
{
    (void)state;
    const long long vs[] = {
        0, 1, -1, 9, 10, -10, 2147483647LL, -2147483648LL, 1733600000LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        char want[BUF_INT_LEN], got[BUF_INT_LEN];
        int n = snprintf(want, sizeof want, "%lld", vs[i]);
        assert_int_equal(buf_format_int(got, vs[i]), (size_t)n);
        assert_string_equal(got, want);
        struct buf b;
        buf_init(&b, 0);
        assert_int_equal(buf_append(&b, "x=", 2), 0);
        assert_int_equal(buf_append_int(&b, vs[i]), 0);
        assert_int_equal(b.len, 2 + (size_t)n);
        assert_string_equal(b.data + 2, want);
        buf_release(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows_and_stays_nul_terminated),
        cmocka_unit_test(test_format_int_matches_printf),
        cmocka_unit_test(test_append_binary_with_nul_bytes),
        cmocka_unit_test(test_append_cap_refuses_and_keeps_content),
        cmocka_unit_test(test_appendf_short_and_long),
        cmocka_unit_test(test_take_transfers_ownership),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_json_string_replaces_invalid_utf8),
        cmocka_unit_test(test_json_string_respects_cap),
        cmocka_unit_test(test_reserve_allocates_once_and_respects_cap),
        cmocka_unit_test(test_alloc_wrappers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
