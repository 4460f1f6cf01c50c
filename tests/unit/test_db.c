/* test_db.c - lib/db.c against a real PostgreSQL server (TEST_DATABASE_URL; skipped without it).
 *
 * tests/integration/test_db.py runs this binary with a fresh database of the test cluster whose
 * default is synchronous_commit = off: every connection of the pool must still commit
 * synchronously (a 2xx answered after a commit must survive a crash of the server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "db.h"

/* The value of `SHOW synchronous_commit` on one of d's connections. */
static char *show_sync_commit(struct db *d)
{
    json_t *rows = NULL;
    char err[256] = "";
    int rc = db_exec(d, "SHOW synchronous_commit", NULL, 0, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        fail_msg("SHOW synchronous_commit: %s", err);
    }
    assert_int_equal(json_array_size(rows), 1);
    const char *v =
        json_string_value(json_object_get(json_array_get(rows, 0), "synchronous_commit"));
    assert_non_null(v);
    char *out = strdup(v);
    json_decref(rows);
    return out;
}

static void test_every_connection_commits_synchronously(void **state)
{
    (void)state;
    const char *url = getenv("TEST_DATABASE_URL");
    if (!url || !*url) {
        skip();
    }
    char err[256] = "";
    struct db *d = db_new(url, 3, err, sizeof(err));
    assert_non_null(d);
    char *v = show_sync_commit(d);
    assert_string_equal(v, "on");
    free(v);
    db_free(d);
}

/* A stronger setting than "on" is kept: the connect-time change only raises "off". */
static void test_stronger_setting_is_kept(void **state)
{
    (void)state;
    const char *url = getenv("TEST_DATABASE_URL_LOCAL");
    if (!url || !*url) {
        skip();
    }
    char err[256] = "";
    struct db *d = db_new(url, 1, err, sizeof(err));
    assert_non_null(d);
    char *v = show_sync_commit(d);
    assert_string_equal(v, "local");
    free(v);
    db_free(d);
}

/* An array literal carries any string, NULL included: checked as text, and read back through
 * PostgreSQL when one is given. */
static void test_array_literal_round_trips(void **state)
{
    (void)state;
    const char *items[] = {"plain", "with \"quotes\"", "back\\slash", "{braces},comma", "", NULL,
                           "NULL",  " spaced "};
    size_t n = sizeof items / sizeof items[0];
    struct buf lit;
    buf_init(&lit, 0);
    db_array_literal(&lit, items, n);
    assert_string_equal(lit.data, "{\"plain\",\"with \\\"quotes\\\"\",\"back\\\\slash\","
                                  "\"{braces},comma\",\"\",NULL,\"NULL\",\" spaced \"}");
    const char *url = getenv("TEST_DATABASE_URL");
    if (url && *url) {
        char err[256] = "";
        struct db *d = db_new(url, 1, err, sizeof(err));
        assert_non_null(d);
        const char *p[] = {lit.data};
        json_t *rows = NULL;
        assert_int_equal(db_exec(d,
                                 "SELECT v FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) "
                                 "ORDER BY i",
                                 p, 1, &rows, NULL, err, sizeof(err)),
                         DB_OK);
        assert_int_equal(json_array_size(rows), n);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_object_get(json_array_get(rows, i), "v");
            if (items[i]) {
                assert_string_equal(json_string_value(v), items[i]);
            } else {
                assert_true(json_is_null(v));
            }
        }
        json_decref(rows);
        db_free(d);
    }
    buf_release(&lit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_connection_commits_synchronously),
        cmocka_unit_test(test_stronger_setting_is_kept),
        cmocka_unit_test(test_array_literal_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
