/* test_busconf.c - the bus configuration loader: schema and semantic checks, defaults, ${ENV}
 * secrets, token checks. Uses the real config/schema/bus.schema.json (tests run from the root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "busconf.h"

#define SCHEMA "config/schema/bus.schema.json"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    setenv("BUS_ENV", "development", 1); /* a test of production unsets it */
    snprintf(dir, sizeof dir, "/tmp/busconf-test-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct busconf *load_ok(void)
{
    struct busconf *c = NULL;
    char err[4096];
    int rc = busconf_load(dir, SCHEMA, &c, err, sizeof err);
    if (rc != 0) {
        fail_msg("load failed: %s", err);
    }
    return c;
}

static void load_fails_with(const char *needle)
{
    struct busconf *c = NULL;
    char err[4096];
    assert_int_equal(busconf_load(dir, SCHEMA, &c, err, sizeof err), -1);
    assert_null(c);
    if (strstr(err, needle) == NULL) {
        fail_msg("error %s does not mention %s", err, needle);
    }
}

static void test_real_login_config_loads_with_schema_and_token(void **state)
{
    (void)state;
    struct busconf *c = NULL;
    char err[4096];
    assert_int_equal(busconf_load("config/bus", SCHEMA, &c, err, sizeof err), 0);
    const struct busconf_topic *t = busconf_topic_find(c, "login");
    assert_non_null(t);
    assert_string_equal(t->key, "/account_id");
    assert_non_null(t->schema);
    assert_int_equal(t->max_event_bytes, 16384);
    assert_true(busconf_topic_allows(t, "dev-login-token"));
    assert_false(busconf_topic_allows(t, "dev-login-token "));
    assert_false(busconf_topic_allows(t, NULL));
    assert_string_equal(busconf_topic_producer(t, "dev-login-token")->name, "login-servers");
    busconf_free(c);
}

static void test_defaults_are_applied(void **state)
{
    (void)state;
    write_file("a.json", "{\"topics\": [{\"name\": \"t\"}, {\"name\": \"out\"}],"
                         " \"routes\": [{\"name\": \"r\", \"topic\": \"t\","
                         " \"endpoint\": \"http://127.0.0.1:1/x\"}]}");
    struct busconf *c = load_ok();
    const struct busconf_topic *t = busconf_topic_find(c, "t");
    assert_int_equal(t->partitions, 3);
    assert_int_equal(t->retention_hours, 168);
    assert_int_equal(t->max_event_bytes, 65536);
    assert_null(t->key);
    const struct busconf_route *r = busconf_route_find(c, "r");
    assert_int_equal(r->mode, BUSCONF_ONE_WAY);
    assert_int_equal(r->concurrency, 4);
    assert_int_equal(r->ordering, BUSCONF_ORDER_KEY);
    assert_int_equal(r->timeout_ms, 5000);
    assert_int_equal(r->retry_initial_ms, 200);
    assert_int_equal(r->retry_max_ms, 30000);
    assert_int_equal(r->retry_max_attempts, 0);
    assert_null(r->secret);
    assert_non_null(r->raw);
    assert_null(busconf_route_find(c, "nope"));
    busconf_free(c);
}

static void test_schema_violation_names_file_and_pointer(void **state)
{
    (void)state;
    write_file("bad.json", "{\"topics\": [{\"name\": \"t\", \"partitions\": 0}]}");
    load_fails_with("bad.json: /topics/0/partitions");
}

static void test_unknown_key_is_refused(void **state)
{
    (void)state;
    write_file("bad.json", "{\"topics\": [{\"name\": \"t\", \"colour\": \"red\"}]}");
    load_fails_with("bad.json");
}

static void test_duplicate_topic_across_files_is_refused(void **state)
{
    (void)state;
    write_file("a.json", "{\"topics\": [{\"name\": \"t\"}]}");
    write_file("b.json", "{\"topics\": [{\"name\": \"t\"}]}");
    load_fails_with("b.json: /topics/0/name: topic t is also declared in a.json");
}

static void test_route_to_undeclared_topics_is_refused(void **state)
{
    (void)state;
    write_file("a.json", "{\"topics\": [{\"name\": \"t\"}], \"routes\": ["
                         "{\"name\": \"r\", \"topic\": \"missing\", \"endpoint\": \"http://h/\"},"
                         "{\"name\": \"s\", \"topic\": \"t\", \"endpoint\": \"http://h/\","
                         " \"mode\": \"streaming\", \"output\": \"gone\","
                         " \"dead_letter\": \"dlq\"}]}");
    load_fails_with("/routes/0/topic: topic missing is not declared");
    load_fails_with("/routes/1/output: output topic gone is not declared");
    load_fails_with("/routes/1/dead_letter: dead-letter topic dlq is not declared");
}

static void test_streaming_without_output_and_cycle_are_refused(void **state)
{
    (void)state;
    write_file("a.json", "{\"topics\": [{\"name\": \"t\"}], \"routes\": ["
                         "{\"name\": \"r\", \"topic\": \"t\", \"endpoint\": \"http://h/\","
                         " \"mode\": \"streaming\"}]}");
    load_fails_with("needs an output topic");
    write_file("a.json", "{\"topics\": [{\"name\": \"a\"}, {\"name\": \"b\"}], \"routes\": ["
                         "{\"name\": \"r1\", \"topic\": \"a\", \"endpoint\": \"http://h/\","
                         " \"mode\": \"streaming\", \"output\": \"b\"},"
                         "{\"name\": \"r2\", \"topic\": \"b\", \"endpoint\": \"http://h/\","
                         " \"mode\": \"streaming\", \"output\": \"a\"}]}");
    load_fails_with("cycle");
}

static void test_secret_expands_env_and_unset_env_fails(void **state)
{
    (void)state;
    setenv("BUSCONF_TEST_SECRET", "s3cret", 1);
    write_file("a.json", "{\"topics\": [{\"name\": \"t\"}], \"routes\": ["
                         "{\"name\": \"r\", \"topic\": \"t\", \"endpoint\": \"https://h/\","
                         " \"secret\": \"pre-${BUSCONF_TEST_SECRET}\"}]}");
    struct busconf *c = load_ok();
    assert_string_equal(busconf_route_find(c, "r")->secret, "pre-s3cret");
    busconf_free(c);
    unsetenv("BUSCONF_TEST_SECRET");
    load_fails_with("/routes/0/secret: environment variable BUSCONF_TEST_SECRET is not set");
}

static void test_malformed_json_and_missing_dir_fail(void **state)
{
    (void)state;
    write_file("a.json", "{\"topics\": [");
    load_fails_with("a.json");
    struct busconf *c = NULL;
    char err[512];
    assert_int_equal(busconf_load("/nonexistent-dir", SCHEMA, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir"));
    busconf_free(NULL);
}

/* Production (BUS_ENV unset): the repository's development producer is not loaded, its
 * production producer takes the hash from LOGIN_TOKEN_SHA256, and without it the load fails. */
static void test_production_skips_development_producers(void **state)
{
    (void)state;
    unsetenv("BUS_ENV");
    unsetenv("LOGIN_TOKEN_SHA256");
    struct busconf *c = NULL;
    char err[4096];
    assert_int_equal(busconf_load("config/bus", SCHEMA, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "login.json: /topics/0/producers/0/token_sha256: production"));
    /* sha256("a-production-token") */
    setenv("LOGIN_TOKEN_SHA256", "5b4a0a8b47b9d0a3bf1e4d5fb3fb3d8c47a2e4c4d4f1c8e3f8b0b8a1c2d3e4f5",
           1);
    setenv("BUS_SIGNING_SECRET", "0123456789abcdef0123456789abcdef-test", 1);
    /* guard's producer token for the notification and account.event topics, as
     * LOGIN_TOKEN_SHA256 */
    setenv("GUARD_PUBLISHER_TOKEN_SHA256",
           "6c3f1b0e7a9d4c2b8e5f1a3d7c9b2e4f6a8d0c2e4b6f8a1c3e5d7b9f0a2c4e6d", 1);
    if (busconf_load("config/bus", SCHEMA, &c, err, sizeof err) != 0) {
        fail_msg("load failed: %s", err);
    }
    const struct busconf_topic *t = busconf_topic_find(c, "login");
    assert_false(busconf_topic_allows(t, "dev-login-token"));
    assert_false(busconf_topic_allows(busconf_topic_find(c, "login.failed"), "dev-login-token"));
    assert_false(busconf_topic_allows(busconf_topic_find(c, "notification"),
                                      "dev-only-guard-producer-token"));
    assert_false(busconf_topic_allows(busconf_topic_find(c, "account.event"),
                                      "dev-only-guard-producer-token"));
    assert_false(busconf_topic_allows(busconf_topic_find(c, "account.action"),
                                      "dev-only-guard-producer-token"));
    /* login's and login.failed's, and guard's on notification, account.event and account.action */
    assert_int_equal(c->n_development_skipped, 5);
    busconf_free(c);
    unsetenv("LOGIN_TOKEN_SHA256");
    unsetenv("GUARD_PUBLISHER_TOKEN_SHA256");
    setenv("BUS_ENV", "development", 1);
}

/* Production refuses a development token's hash that is not flagged, and a weak route key. */
static void test_production_refuses_development_token_and_weak_route_key(void **state)
{
    (void)state;
    write_file("a.json",
               "{\"topics\": [{\"name\": \"t\", \"producers\": [{\"name\": \"p\","
               " \"token_sha256\": \"7012ab1530d77559be76d12f5320d28c0a44a5672315178b1c5e611"
               "b426809d1\"}]}], \"routes\": [{\"name\": \"r\", \"topic\": \"t\","
               " \"endpoint\": \"https://h/\", \"secret\": \"short\"}]}");
    struct busconf *c = load_ok(); /* development: both accepted */
    busconf_free(c);
    unsetenv("BUS_ENV");
    load_fails_with("/topics/0/producers/0/token_sha256: production: this is the hash of the "
                    "development token dev-login-token");
    load_fails_with("/routes/0/secret: production: the route's signing key is shorter than 32");
    setenv("BUS_ENV", "development", 1);
}

int main(void)
{
    setenv("BUS_ENV", "development", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_login_config_loads_with_schema_and_token),
        cmocka_unit_test_setup_teardown(test_defaults_are_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_violation_names_file_and_pointer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_topic_across_files_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_route_to_undeclared_topics_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_streaming_without_output_and_cycle_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_secret_expands_env_and_unset_env_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_json_and_missing_dir_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_production_skips_development_producers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_production_refuses_development_token_and_weak_route_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
