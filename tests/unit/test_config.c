/* test_config.c - configuration table: defaults, JSON file (nested keys), env overrides,
 * product-wide env names, validation errors naming the key, kafka.* passthrough, Markdown,
 * and app_init's command line on top of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "app.h"
#include "config.h"
#include "log.h"

static const struct config_def DEFS[] = {
    {"http.listen", CONFIG_STRING, "127.0.0.1:8080", 0, 0, 0, NULL, "listen address"},
    {"workers", CONFIG_INT, "4", 1, 64, 0, NULL, "worker threads"},
    {"ratio", CONFIG_DOUBLE, "0.5", 0, 1, 0, NULL, "a fraction"},
    {"verbose", CONFIG_BOOL, "false", 0, 0, 0, NULL, "more output"},
    {"bootstrap", CONFIG_STRING, "127.0.0.1:9092", 0, 0, 0, "TCFG_TEST_BOOTSTRAP", "brokers"},
    {"token", CONFIG_STRING, "dev-secret-token", 0, 0, CONFIG_SECRET, NULL, "auth | token"},
    {"name", CONFIG_STRING, NULL, 0, 8, 0, NULL, "optional, at most 8 characters"},
    {"max-bytes", CONFIG_INT, "1024", 0, 0, 0, NULL, "unbounded"},
    CONFIG_DEF_END,
};

static const struct config_def REQUIRED_DEFS[] = {
    {"db.url", CONFIG_STRING, NULL, 0, 0, CONFIG_REQUIRED, NULL, "database"},
    CONFIG_DEF_END,
};

static const struct config_def KEY_DEFS[] = {
    {"signing_key", CONFIG_STRING, "dev-only-signing-key", 0, 4096, CONFIG_KEY, NULL, "a key"},
    CONFIG_DEF_END,
};

static const char *const ENV_NAMES[] = {
    "TCFG_SIGNING_KEY",
    "TCFG_SIGNING_KEY_FILE",
    "TCFG_TOKEN_FILE",
    "TCFG_HTTP_LISTEN",
    "TCFG_WORKERS",
    "TCFG_RATIO",
    "TCFG_VERBOSE",
    "TCFG_BOOTSTRAP",
    "TCFG_TOKEN",
    "TCFG_TEST_BOOTSTRAP",
    "TCFG_NAME",
    "TCFG_MAX_BYTES",
    "TCFG_DB_URL",
    "TCFG_CONFIG",
    "TCFG_LOG_LEVEL",
    "TCFG_KAFKA_SASL_PASSWORD",
    "TCFG_KAFKA_SECURITY_PROTOCOL",
    "TCFG_KAFKA_LOG__LEVEL",
    "TCFG_KAFKA_SSL_KEY_PASSWORD",
    "TCFG_KAFKA_sasl_username",
    "TCFG_KAFKA_",
    "TCFG_KAFKA_A___B",
    "TCFG_KAFKA_GROUP",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ENV_NAMES / sizeof ENV_NAMES[0]; i++) {
        unsetenv(ENV_NAMES[i]);
    }
    return 0;
}

/* Writes text to a fresh temporary file; the caller unlinks path. */
static void write_temp(char path[64], const char *text)
{
    snprintf(path, 64, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Loads DEFS from a file with the given text (NULL = no file); returns config_load's result. */
static int load_text(const struct config_def *defs, const char *text, struct config **out,
                     char *err, size_t err_len)
{
    char path[64];
    if (!text) {
        return config_load(out, defs, "TCFG", NULL, err, err_len);
    }
    write_temp(path, text);
    int rc = config_load(out, defs, "TCFG", path, err, err_len);
    unlink(path);
    return rc;
}

static void test_defaults_without_file(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    assert_int_equal(load_text(DEFS, NULL, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "http.listen"), "127.0.0.1:8080");
    assert_int_equal(config_int(c, "workers"), 4);
    assert_true(config_double(c, "ratio") == 0.5);
    assert_false(config_bool(c, "verbose"));
    assert_null(config_str(c, "name")); /* unset optional string */
    assert_int_equal(json_object_size(config_kafka(c)), 0);
    assert_true(json_is_object(config_json(c)));
    config_free(c);
}

static void test_file_nested_and_flat_keys(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    const char *text = "{\"http\": {\"listen\": \"0.0.0.0:1\"}, \"workers\": 8, \"ratio\": 1,"
                       " \"verbose\": true, \"name\": \"abc\", \"max-bytes\": 99999999999}";
    assert_int_equal(load_text(DEFS, text, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "http.listen"), "0.0.0.0:1");
    assert_int_equal(config_int(c, "workers"), 8);
    assert_true(config_double(c, "ratio") == 1.0); /* an integer is a valid number */
    assert_true(config_bool(c, "verbose"));
    assert_string_equal(config_str(c, "name"), "abc");
    assert_int_equal(config_int(c, "max-bytes"), 99999999999LL);
    /* config_json is the whole file, structured as written */
    assert_int_equal(json_integer_value(json_object_get(config_json(c), "workers")), 8);
    config_free(c);

    assert_int_equal(load_text(DEFS, "{\"http.listen\": \"h:2\"}", &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "http.listen"), "h:2");
    config_free(c);
}

static void test_env_overrides_file(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    setenv("TCFG_HTTP_LISTEN", "env:3", 1);
    setenv("TCFG_WORKERS", "16", 1);
    setenv("TCFG_VERBOSE", "TRUE", 1);
    setenv("TCFG_RATIO", "0.25", 1);
    setenv("TCFG_MAX_BYTES", "7", 1); /* '-' becomes '_' */
    assert_int_equal(load_text(DEFS, "{\"http\": {\"listen\": \"file:1\"}, \"workers\": 2}", &c,
                               err, sizeof err),
                     0);
    assert_string_equal(config_str(c, "http.listen"), "env:3");
    assert_int_equal(config_int(c, "workers"), 16);
    assert_true(config_bool(c, "verbose"));
    assert_true(config_double(c, "ratio") == 0.25);
    assert_int_equal(config_int(c, "max-bytes"), 7);
    config_free(c);
    clear_env(NULL);
}

static void test_product_env_wins_over_file_loses_to_prefixed(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    const char *text = "{\"bootstrap\": \"file:9092\"}";
    assert_int_equal(load_text(DEFS, text, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "bootstrap"), "file:9092");
    config_free(c);

    setenv("TCFG_TEST_BOOTSTRAP", "product:9092", 1);
    assert_int_equal(load_text(DEFS, text, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "bootstrap"), "product:9092");
    config_free(c);

    setenv("TCFG_BOOTSTRAP", "prefixed:9092", 1);
    assert_int_equal(load_text(DEFS, text, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "bootstrap"), "prefixed:9092");
    config_free(c);
    clear_env(NULL);
}

/* Expects config_load to fail with an error that contains every one of the needles. */
static void expect_refused(const struct config_def *defs, const char *text, const char *needle1,
                           const char *needle2)
{
    struct config *c = (struct config *)0x1;
    char err[512] = "";
    assert_int_equal(load_text(defs, text, &c, err, sizeof err), -1);
    if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2))) {
        fail_msg("error \"%s\" does not name \"%s\"%s%s", err, needle1, needle2 ? " / " : "",
                 needle2 ? needle2 : "");
    }
}

static void test_unknown_key_is_refused_by_name(void **state)
{
    (void)state;
    expect_refused(DEFS, "{\"wokers\": 3}", "unknown", "\"wokers\"");
    expect_refused(DEFS, "{\"http\": {\"listne\": \"x\"}}", "unknown", "\"http.listne\"");
}

static void test_wrong_type_is_refused_by_name(void **state)
{
    (void)state;
    expect_refused(DEFS, "{\"workers\": \"8\"}", "\"workers\"", "integer");
    expect_refused(DEFS, "{\"workers\": 2.5}", "\"workers\"", "integer");
    expect_refused(DEFS, "{\"verbose\": 1}", "\"verbose\"", "boolean");
    expect_refused(DEFS, "{\"http\": {\"listen\": 8080}}", "\"http.listen\"", "string");
    expect_refused(DEFS, "{\"ratio\": \"x\"}", "\"ratio\"", "number");
    setenv("TCFG_WORKERS", "eight", 1);
    expect_refused(DEFS, NULL, "TCFG_WORKERS", "\"workers\"");
    setenv("TCFG_WORKERS", "8x", 1);
    expect_refused(DEFS, NULL, "TCFG_WORKERS", "integer");
    clear_env(NULL);
    setenv("TCFG_VERBOSE", "maybe", 1);
    expect_refused(DEFS, NULL, "TCFG_VERBOSE", "boolean");
    clear_env(NULL);
}

static void test_out_of_range_is_refused_by_name(void **state)
{
    (void)state;
    expect_refused(DEFS, "{\"workers\": 0}", "\"workers\"", "range");
    expect_refused(DEFS, "{\"workers\": 65}", "\"workers\"", "range");
    expect_refused(DEFS, "{\"ratio\": 1.5}", "\"ratio\"", "range");
    expect_refused(DEFS, "{\"name\": \"ninechars\"}", "\"name\"", "8");
    setenv("TCFG_WORKERS", "100", 1);
    expect_refused(DEFS, NULL, "\"workers\"", "range");
    clear_env(NULL);
    /* the bounds themselves are accepted */
    struct config *c = NULL;
    char err[256];
    assert_int_equal(
        load_text(DEFS, "{\"workers\": 64, \"name\": \"eight888\"}", &c, err, sizeof err), 0);
    assert_int_equal(config_int(c, "workers"), 64);
    config_free(c);
}

static void test_bad_file_is_refused(void **state)
{
    (void)state;
    expect_refused(DEFS, "{\"workers\": ", "test_config_", NULL); /* names the file */
    expect_refused(DEFS, "[1, 2]", "JSON object", NULL);
    expect_refused(DEFS, "{\"workers\": 1, \"workers\": 2}", "workers", NULL); /* duplicate */
    struct config *c = NULL;
    char err[256] = "";
    assert_int_equal(config_load(&c, DEFS, "TCFG", "/nonexistent/dir/x.json", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/dir/x.json"));
}

static void test_required_key(void **state)
{
    (void)state;
    expect_refused(REQUIRED_DEFS, NULL, "\"db.url\"", "required");
    struct config *c = NULL;
    char err[256];
    setenv("TCFG_DB_URL", "postgresql://x", 1);
    assert_int_equal(load_text(REQUIRED_DEFS, NULL, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "db.url"), "postgresql://x");
    config_free(c);
    clear_env(NULL);
}

static void test_kafka_keys_pass_through(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    const char *text = "{\"kafka\": {\"bootstrap.servers\": \"k:9092\", \"linger.ms\": 5,"
                       " \"enable.idempotence\": true, \"socket\": {\"timeout.ms\": \"100\"}},"
                       " \"kafka.acks\": \"all\"}";
    assert_int_equal(load_text(DEFS, text, &c, err, sizeof err), 0);
    json_t *k = config_kafka(c);
    assert_int_equal(json_object_size(k), 5);
    assert_string_equal(json_string_value(json_object_get(k, "bootstrap.servers")), "k:9092");
    assert_string_equal(json_string_value(json_object_get(k, "linger.ms")), "5");
    assert_string_equal(json_string_value(json_object_get(k, "enable.idempotence")), "true");
    assert_string_equal(json_string_value(json_object_get(k, "socket.timeout.ms")), "100");
    assert_string_equal(json_string_value(json_object_get(k, "acks")), "all");
    config_free(c);
    expect_refused(DEFS, "{\"kafka\": {\"x\": [1]}}", "\"kafka.x\"", NULL);
}

/* config_log's line for c, parsed (caller frees). */
static json_t *logged_config(const struct config *c)
{
    log_init("test", LOG_LEVEL_INFO);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(2);
    dup2(fds[1], 2);
    close(fds[1]);
    config_log(c);
    dup2(saved, 2);
    close(saved);
    char out[8192];
    ssize_t n = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    assert_true(n > 0);
    out[n] = '\0';
    assert_null(strstr(out, "pw-from-env")); /* never in the log, whatever the key */
    json_error_t je;
    json_t *line = json_loads(out, 0, &je);
    assert_non_null(line);
    return line;
}

static void test_kafka_env_sets_kafka_keys_and_secrets_are_redacted(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    setenv("TCFG_KAFKA_SASL_PASSWORD", "pw-from-env", 1);
    setenv("TCFG_KAFKA_SSL_KEY_PASSWORD", "pw-from-env-2", 1);
    setenv("TCFG_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", 1);
    setenv("TCFG_KAFKA_LOG__LEVEL", "7", 1);
    const char *text = "{\"kafka\": {\"security.protocol\": \"PLAINTEXT\", \"acks\": \"all\"}}";
    assert_int_equal(load_text(DEFS, text, &c, err, sizeof err), 0);
    json_t *k = config_kafka(c);
    assert_int_equal(json_object_size(k), 5);
    assert_string_equal(json_string_value(json_object_get(k, "sasl.password")), "pw-from-env");
    assert_string_equal(json_string_value(json_object_get(k, "ssl.key.password")), "pw-from-env-2");
    assert_string_equal(json_string_value(json_object_get(k, "security.protocol")), "SASL_SSL");
    assert_string_equal(json_string_value(json_object_get(k, "log_level")), "7"); /* "__" is '_' */
    assert_string_equal(json_string_value(json_object_get(k, "acks")), "all");

    json_t *line = logged_config(c);
    assert_string_equal(json_string_value(json_object_get(line, "kafka.sasl.password")),
                        "[redacted]");
    assert_string_equal(json_string_value(json_object_get(line, "kafka.ssl.key.password")),
                        "[redacted]");
    assert_string_equal(json_string_value(json_object_get(line, "kafka.security.protocol")),
                        "SASL_SSL");
    json_decref(line);
    config_free(c);

    assert_true(config_kafka_is_secret("sasl.password"));
    assert_true(config_kafka_is_secret("ssl.keystore.password"));
    assert_true(config_kafka_is_secret("sasl.oauthbearer.client.secret"));
    assert_false(config_kafka_is_secret("sasl.username"));
}

static void test_kafka_env_of_another_form_is_refused_by_name(void **state)
{
    (void)state;
    static const char *const BAD[] = {"TCFG_KAFKA_sasl_username", "TCFG_KAFKA_",
                                      "TCFG_KAFKA_A___B"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        struct config *c = NULL;
        char err[256] = "";
        setenv(BAD[i], "x", 1);
        assert_int_equal(load_text(DEFS, NULL, &c, err, sizeof err), -1);
        if (!strstr(err, BAD[i])) {
            fail_msg("%s: error does not name it: %s", BAD[i], err);
        }
        unsetenv(BAD[i]);
    }
}

static void test_kafka_env_leaves_declared_keys_alone(void **state)
{
    (void)state;
    static const struct config_def defs[] = {
        {"kafka_group", CONFIG_STRING, "g", 0, 0, 0, NULL, "a declared key named kafka_*"},
        CONFIG_DEF_END,
    };
    struct config *c = NULL;
    char err[256] = "";
    setenv("TCFG_KAFKA_GROUP", "from-env", 1);
    assert_int_equal(load_text(defs, NULL, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "kafka_group"), "from-env");
    assert_int_equal(json_object_size(config_kafka(c)), 0);
    config_free(c);
}

static void test_config_log_redacts_secrets(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[256] = "";
    assert_int_equal(load_text(DEFS, "{\"token\": \"super-secret-value\"}", &c, err, sizeof err),
                     0);
    assert_string_equal(config_str(c, "token"), "super-secret-value");

    json_t *line = logged_config(c);
    char *text = json_dumps(line, JSON_COMPACT);
    assert_null(strstr(text, "super-secret-value"));
    free(text);
    assert_string_equal(json_string_value(json_object_get(line, "token")), "[redacted]");
    assert_string_equal(json_string_value(json_object_get(line, "http.listen")), "127.0.0.1:8080");
    assert_int_equal(json_integer_value(json_object_get(line, "workers")), 4);
    json_decref(line);
    config_free(c);
}

static void test_markdown_lists_every_key(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_write_markdown(DEFS, "TCFG", f);
    fclose(f);
    for (const struct config_def *d = DEFS; d->key; d++) {
        char cell[96];
        snprintf(cell, sizeof cell, "| `%s` |", d->key);
        if (!strstr(text, cell)) {
            fail_msg("key %s missing from:\n%s", d->key, text);
        }
    }
    assert_non_null(strstr(text, "`TCFG_HTTP_LISTEN`"));
    assert_non_null(strstr(text, "`TCFG_MAX_BYTES`"));
    assert_non_null(strstr(text, "`TCFG_TEST_BOOTSTRAP`"));
    assert_non_null(strstr(text, "1 – 64"));
    assert_non_null(strstr(text, "auth \\| token")); /* a '|' cannot break the table */
    assert_null(strstr(text, "dev-secret-token"));   /* secret defaults are not printed */
    free(text);
}

static void test_app_init_loads_file_and_log_level(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, "{\"workers\": 5, \"log\": {\"level\": \"debug\"}}");
    char *argv[] = {"prog", "--config", path, NULL};
    struct app app;
    assert_int_equal(app_init(&app, 3, argv, "test-app", "TCFG", DEFS), 0);
    assert_false(app.exit_now);
    assert_int_equal(config_int(app.cfg, "workers"), 5);
    assert_string_equal(config_str(app.cfg, "log.level"), "debug");
    assert_int_equal(log_min_level, LOG_LEVEL_DEBUG);
    /* SIGTERM is blocked and delivered through app_wait_signal_for */
    assert_int_equal(app_wait_signal_for(&app, 10), 0);
    kill(getpid(), SIGHUP);
    assert_int_equal(app_wait_signal_for(&app, 5000), SIGHUP);
    app_release(&app);
    app_release(&app); /* idempotent */
    log_init("test", LOG_LEVEL_INFO);

    /* the same file through <PREFIX>_CONFIG, with an env override of log.level */
    setenv("TCFG_CONFIG", path, 1);
    setenv("TCFG_LOG_LEVEL", "warn", 1);
    char *argv2[] = {"prog", NULL};
    assert_int_equal(app_init(&app, 1, argv2, "test-app", "TCFG", DEFS), 0);
    assert_int_equal(config_int(app.cfg, "workers"), 5);
    assert_int_equal(log_min_level, LOG_LEVEL_WARN);
    app_release(&app);
    clear_env(NULL);
    unlink(path);
    log_init("test", LOG_LEVEL_INFO);
}

static void test_app_init_refuses_bad_config_and_arguments(void **state)
{
    (void)state;
    struct app app;
    setenv("TCFG_LOG_LEVEL", "loud", 1);
    char *argv[] = {"prog", NULL};
    assert_int_equal(app_init(&app, 1, argv, "test-app", "TCFG", DEFS), -1);
    assert_null(app.cfg); /* nothing left to free */
    clear_env(NULL);
    char *argv2[] = {"prog", "--bogus", NULL};
    assert_int_equal(app_init(&app, 2, argv2, "test-app", "TCFG", DEFS), -1);
    char *argv3[] = {"prog", "--config", NULL};
    assert_int_equal(app_init(&app, 2, argv3, "test-app", "TCFG", DEFS), -1);
    char *argv4[] = {"prog", "-c", "/nonexistent.json", NULL};
    assert_int_equal(app_init(&app, 3, argv4, "test-app", "TCFG", DEFS), -1);
    app_release(&app);
}

static void test_app_check_config_exits(void **state)
{
    (void)state;
    struct app app;
    char *argv[] = {"prog", "--check-config", NULL};
    assert_int_equal(app_init(&app, 2, argv, "test-app", "TCFG", DEFS), 0);
    assert_true(app.exit_now);
    app_release(&app);
}

static void test_now_and_rfc3339(void **state)
{
    (void)state;
    long long a = app_now_ms();
    double s = app_now_s();
    long long b = app_now_ms();
    assert_true(a > 0 && b >= a);
    assert_true(s * 1000.0 >= (double)a - 1.0 && s * 1000.0 <= (double)b + 1.0);
    /* The wall clock's second, formatted by strftime before and after, brackets the answer
     * (twice: the second call reuses the thread's cached date). */
    for (int i = 0; i < 2; i++) {
        char ts[32], lo[32], hi[32];
        struct timespec t0, t1; /* the clock app_time_rfc3339 reads (time() may lag it) */
        clock_gettime(CLOCK_REALTIME, &t0);
        app_time_rfc3339(ts);
        clock_gettime(CLOCK_REALTIME, &t1);
        struct tm tm;
        strftime(lo, sizeof lo, "%Y-%m-%dT%H:%M:%S.", gmtime_r(&t0.tv_sec, &tm));
        strftime(hi, sizeof hi, "%Y-%m-%dT%H:%M:%S.", gmtime_r(&t1.tv_sec, &tm));
        assert_int_equal(strlen(ts), 24);
        assert_true(strncmp(ts, lo, 20) == 0 || strncmp(ts, hi, 20) == 0);
        assert_true(ts[20] >= '0' && ts[20] <= '9' && ts[21] >= '0' && ts[21] <= '9' &&
                    ts[22] >= '0' && ts[22] <= '9');
        assert_int_equal(ts[23], 'Z');
    }
}

static void test_key_rules_depend_on_the_mode(void **state)
{
    (void)state;
    const char *strong = "0123456789abcdef0123456789abcdef";
    char err[256];
    bool is_dev = false;
    /* production: missing, empty, short, the development value (alone or in a list) refused */
    assert_int_equal(config_check_key_value("k", NULL, "dev", true, &is_dev, err, sizeof err), -1);
    assert_non_null(strstr(err, "k is missing"));
    assert_int_equal(config_check_key_value("k", "", "dev", true, &is_dev, err, sizeof err), -1);
    assert_int_equal(config_check_key_value("k", "short", "dev", true, &is_dev, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "shorter than 32 bytes"));
    char list[128];
    snprintf(list, sizeof list, "%s dev", strong);
    assert_int_equal(config_check_key_value("k", list, "dev", true, &is_dev, err, sizeof err), -1);
    assert_non_null(strstr(err, "development value"));
    snprintf(list, sizeof list, "%s %s", strong, "x");
    assert_int_equal(config_check_key_value("k", list, "dev", true, &is_dev, err, sizeof err), -1);
    /* production: one or several strong keys pass */
    assert_int_equal(config_check_key_value("k", strong, "dev", true, &is_dev, err, sizeof err), 0);
    assert_false(is_dev);
    snprintf(list, sizeof list, "%s %s", strong, strong);
    assert_int_equal(config_check_key_value("k", list, "dev", true, &is_dev, err, sizeof err), 0);
    /* lists with commas ("kid:key,kid:key"): an item of a development list is refused */
    snprintf(list, sizeof list, "k2:%s,dev:x", strong);
    assert_int_equal(config_check_key_value("k", list, "dev:x", true, &is_dev, err, sizeof err),
                     -1);
    assert_true(is_dev);
    snprintf(list, sizeof list, "k2:%s,k1:%s", strong, strong);
    assert_int_equal(
        config_check_key_value("k", list, "dev:x,dev2:y", true, &is_dev, err, sizeof err), 0);
    /* development: the development value passes and is reported */
    assert_int_equal(config_check_key_value("k", "dev", "dev", false, &is_dev, err, sizeof err), 0);
    assert_true(is_dev);
    assert_int_equal(config_check_key_value("k", "short", "dev", false, &is_dev, err, sizeof err),
                     0);
    assert_false(is_dev);
}

static void test_key_empty_is_its_development_value_refused_in_production(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[512] = "";
    setenv("TCFG_SIGNING_KEY", "", 1);
    assert_int_equal(load_text(KEY_DEFS, NULL, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "signing_key"), "dev-only-signing-key");
    assert_int_equal(config_check_keys(c, "TCFG", false, err, sizeof err), 0);
    assert_int_equal(config_check_keys(c, "TCFG", true, err, sizeof err), -1);
    assert_non_null(strstr(err, "\"signing_key\" (TCFG_SIGNING_KEY or TCFG_SIGNING_KEY_FILE)"));
    assert_non_null(strstr(err, "development value"));
    config_free(c);
}

static void test_secret_from_a_file(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, "0123456789abcdef0123456789abcdef-from-file\n");
    setenv("TCFG_SIGNING_KEY_FILE", path, 1);
    struct config *c = NULL;
    char err[512] = "";
    assert_int_equal(load_text(KEY_DEFS, NULL, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "signing_key"), "0123456789abcdef0123456789abcdef-from-file");
    assert_int_equal(config_check_keys(c, "TCFG", true, err, sizeof err), 0);
    config_free(c);
    /* both the variable and its _FILE: refused, naming both */
    setenv("TCFG_SIGNING_KEY", "x", 1);
    assert_int_equal(load_text(KEY_DEFS, NULL, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "TCFG_SIGNING_KEY_FILE"));
    unsetenv("TCFG_SIGNING_KEY");
    unlink(path);
    /* an unreadable file: refused, naming the variable */
    assert_int_equal(load_text(KEY_DEFS, NULL, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "TCFG_SIGNING_KEY_FILE"));
    /* any secret may come from a file, not only keys */
    unsetenv("TCFG_SIGNING_KEY_FILE");
    write_temp(path, "tok");
    setenv("TCFG_TOKEN_FILE", path, 1);
    assert_int_equal(load_text(DEFS, NULL, &c, err, sizeof err), 0);
    assert_string_equal(config_str(c, "token"), "tok");
    config_free(c);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_without_file, clear_env),
        cmocka_unit_test_setup(test_file_nested_and_flat_keys, clear_env),
        cmocka_unit_test_setup(test_env_overrides_file, clear_env),
        cmocka_unit_test_setup(test_product_env_wins_over_file_loses_to_prefixed, clear_env),
        cmocka_unit_test_setup(test_unknown_key_is_refused_by_name, clear_env),
        cmocka_unit_test_setup(test_wrong_type_is_refused_by_name, clear_env),
        cmocka_unit_test_setup(test_out_of_range_is_refused_by_name, clear_env),
        cmocka_unit_test_setup(test_bad_file_is_refused, clear_env),
        cmocka_unit_test_setup(test_required_key, clear_env),
        cmocka_unit_test_setup(test_kafka_keys_pass_through, clear_env),
        cmocka_unit_test_setup(test_kafka_env_sets_kafka_keys_and_secrets_are_redacted, clear_env),
        cmocka_unit_test_setup(test_kafka_env_of_another_form_is_refused_by_name, clear_env),
        cmocka_unit_test_setup(test_kafka_env_leaves_declared_keys_alone, clear_env),
        cmocka_unit_test_setup(test_config_log_redacts_secrets, clear_env),
        cmocka_unit_test_setup(test_markdown_lists_every_key, clear_env),
        cmocka_unit_test_setup(test_app_init_loads_file_and_log_level, clear_env),
        cmocka_unit_test_setup(test_app_init_refuses_bad_config_and_arguments, clear_env),
        cmocka_unit_test_setup(test_app_check_config_exits, clear_env),
        cmocka_unit_test_setup(test_now_and_rfc3339, clear_env),
        cmocka_unit_test_setup(test_key_rules_depend_on_the_mode, clear_env),
        cmocka_unit_test_setup(test_key_empty_is_its_development_value_refused_in_production,
                               clear_env),
        cmocka_unit_test_setup(test_secret_from_a_file, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
