/* test_strmap.c - the string map behind the services' in-memory caches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "strmap.h"

static void test_put_get_replace(void **state)
{
    (void)state;
    struct strmap *m = strmap_new();
    const char *v = "unset";
    assert_int_equal(strmap_get(m, "a", &v), 0);
    assert_string_equal(v, "unset");
    strmap_put(m, "a", "1");
    strmap_put(m, "b", NULL);
    assert_int_equal(strmap_get(m, "a", &v), 1);
    assert_string_equal(v, "1");
    assert_int_equal(strmap_get(m, "b", &v), 1);
    assert_null(v);
    assert_int_equal(strmap_get(m, "b", NULL), 1);
    strmap_put(m, "a", "2");
    assert_int_equal(strmap_get(m, "a", &v), 1);
    assert_string_equal(v, "2");
    assert_int_equal(strmap_len(m), 2);
    assert_int_equal(strmap_get(m, "", NULL), 0);
    strmap_put(m, "", "empty key");
    assert_int_equal(strmap_get(m, "", &v), 1);
    assert_string_equal(v, "empty key");
    strmap_free(m);
    strmap_free(NULL);
}

static void test_grows_and_keeps_everything(void **state)
{
    (void)state;
    struct strmap *m = strmap_new();
    char k[32], want[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof k, "acc-%d", i);
        snprintf(want, sizeof want, "v%d", i * 7);
        strmap_put(m, k, want);
    }
    assert_int_equal(strmap_len(m), 100000);
    for (int i = 0; i < 100000; i++) {
        const char *v = NULL;
        snprintf(k, sizeof k, "acc-%d", i);
        snprintf(want, sizeof want, "v%d", i * 7);
        assert_int_equal(strmap_get(m, k, &v), 1);
        assert_string_equal(v, want);
    }
    assert_int_equal(strmap_get(m, "acc-100000", NULL), 0);
    strmap_clear(m);
    assert_int_equal(strmap_len(m), 0);
    assert_int_equal(strmap_get(m, "acc-1", NULL), 0);
    strmap_put(m, "acc-1", "again");
    assert_int_equal(strmap_get(m, "acc-1", NULL), 1);
    strmap_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace),
        cmocka_unit_test(test_grows_and_keeps_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
