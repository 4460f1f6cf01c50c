/* test_log.c - JSON log lines: schema, levels, escaping, extra fields, one line per call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

/* Redirects stderr into a pipe while a test logs; capture_end returns what was written. */
static int saved_stderr = -1;
static int pipe_rd = -1;

static void capture_begin(void)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(fds[1], 2), 2);
    close(fds[1]);
    pipe_rd = fds[0];
}

/* Returns a heap string (caller frees) with everything logged since capture_begin. */
static char *capture_end(void)
{
    assert_int_equal(dup2(saved_stderr, 2), 2); /* closes the pipe's last write end */
    close(saved_stderr);
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (;;) {
        if (cap - len < 1024) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        ssize_t n = read(pipe_rd, out + len, cap - len - 1);
        assert_true(n >= 0);
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(pipe_rd);
    out[len] = '\0';
    return out;
}

/* Parses the single JSON line in text; fails the test when there is not exactly one. */
static json_t *parse_one_line(const char *text)
{
    size_t len = strlen(text);
    assert_true(len > 1);
    assert_int_equal(text[len - 1], '\n');
    assert_null(memchr(text, '\n', len - 1)); /* exactly one line */
    json_error_t je;
    json_t *line = json_loads(text, 0, &je);
    if (!line) {
        fail_msg("not JSON (%s): %s", je.text, text);
    }
    assert_true(json_is_object(line));
    return line;
}

static void assert_rfc3339_ms_utc(const char *ts)
{
    /* 2026-11-25T04:18:31.123Z */
    assert_int_equal(strlen(ts), 24);
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < 24; i++) {
        if (shape[i] == 'd') {
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        } else {
            assert_int_equal(ts[i], shape[i]);
        }
    }
}

static void test_line_has_schema_fields(void **state)
{
    (void)state;
    log_init("test-svc", LOG_LEVEL_INFO);
    capture_begin();
    log_info("hello %s %d", "world", 42);
    char *out = capture_end();
    json_t *line = parse_one_line(out);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(line, "service")), "test-svc");
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "hello world 42");
    assert_rfc3339_ms_utc(json_string_value(json_object_get(line, "ts")));
    assert_null(json_object_get(line, "trace_id"));
    assert_null(json_object_get(line, "event_id"));
    assert_int_equal(json_object_size(line), 4);
    json_decref(line);
    free(out);
}

static void test_level_filter_skips_argument_evaluation(void **state)
{
    (void)state;
    int evaluated = 0;
    log_init("test-svc", LOG_LEVEL_WARN);
    capture_begin();
    log_debug("debug %d", ++evaluated);
    log_info("info %d", ++evaluated);
    log_warn("warn");
    char *out = capture_end();
    assert_int_equal(evaluated, 0); /* disabled levels never evaluate their arguments */
    json_t *line = parse_one_line(out);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "warn");
    json_decref(line);
    free(out);
    log_init("test-svc", LOG_LEVEL_INFO);
}

static void test_every_level_name(void **state)
{
    (void)state;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    log_init("test-svc", LOG_LEVEL_DEBUG);
    for (int lv = LOG_LEVEL_DEBUG; lv <= LOG_LEVEL_ERROR; lv++) {
        capture_begin();
        log_at((enum log_level)lv, NULL, NULL, NULL, "x");
        char *out = capture_end();
        json_t *line = parse_one_line(out);
        assert_string_equal(json_string_value(json_object_get(line, "level")), names[lv]);
        json_decref(line);
        free(out);
    }
    log_init("test-svc", LOG_LEVEL_INFO);
}

static void test_ids_and_extra_fields(void **state)
{
    (void)state;
    log_init("test-svc", LOG_LEVEL_INFO);
    json_t *extra = json_pack("{s:s, s:i, s:{s:b}, s:s}", "url", "http://x/\"q\"", "attempt", 3,
                              "nested", "ok", 1, "msg", "must not overwrite the message");
    capture_begin();
    log_at(LOG_LEVEL_WARN, "0af7651916cd43dd8448eb211c80319c", "evt-1", extra, "retrying");
    char *out = capture_end();
    json_t *line = parse_one_line(out);
    assert_string_equal(json_string_value(json_object_get(line, "trace_id")),
                        "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(json_string_value(json_object_get(line, "event_id")), "evt-1");
    assert_string_equal(json_string_value(json_object_get(line, "url")), "http://x/\"q\"");
    assert_int_equal(json_integer_value(json_object_get(line, "attempt")), 3);
    assert_true(json_is_true(json_object_get(json_object_get(line, "nested"), "ok")));
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "retrying");
    assert_non_null(strstr(out, "\"msg\":\"retrying\""));
    assert_null(strstr(out, "must not overwrite")); /* reserved fields are never duplicated */
    json_decref(line);
    json_decref(extra);
    free(out);
}

static void test_message_with_quotes_newlines_and_bad_utf8(void **state)
{
    (void)state;
    log_init("svc \"quoted\"", LOG_LEVEL_INFO);
    capture_begin();
    log_error("line1\nline2 \"q\" \\ tab\t bad\xff end");
    char *out = capture_end();
    json_t *line = parse_one_line(out); /* still one valid JSON line */
    assert_string_equal(json_string_value(json_object_get(line, "msg")),
                        "line1\nline2 \"q\" \\ tab\t bad\xef\xbf\xbd end");
    assert_string_equal(json_string_value(json_object_get(line, "service")), "svc \"quoted\"");
    json_decref(line);
    free(out);
    log_init("test-svc", LOG_LEVEL_INFO);
}

static void test_long_message_is_cut_not_overflowed(void **state)
{
    (void)state;
    size_t n = 100000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'a', n);
    big[n] = '\0';
    log_init("test-svc", LOG_LEVEL_INFO);
    capture_begin();
    log_info("%s", big);
    char *out = capture_end();
    json_t *line = parse_one_line(out);
    size_t got = strlen(json_string_value(json_object_get(line, "msg")));
    assert_true(got > 1000 && got < n);
    json_decref(line);
    free(out);
    free(big);
}

static void test_level_parse(void **state)
{
    (void)state;
    enum log_level lv = LOG_LEVEL_INFO;
    assert_int_equal(log_level_parse("debug", &lv), 0);
    assert_int_equal(lv, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("error", &lv), 0);
    assert_int_equal(lv, LOG_LEVEL_ERROR);
    assert_int_equal(log_level_parse("warn", &lv), 0);
    assert_int_equal(lv, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("verbose", &lv), -1);
    assert_int_equal(log_level_parse("", &lv), -1);
    assert_int_equal(log_level_parse(NULL, &lv), -1);
    assert_int_equal(lv, LOG_LEVEL_WARN); /* untouched on failure */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_has_schema_fields),
        cmocka_unit_test(test_level_filter_skips_argument_evaluation),
        cmocka_unit_test(test_every_level_name),
        cmocka_unit_test(test_ids_and_extra_fields),
        cmocka_unit_test(test_message_with_quotes_newlines_and_bad_utf8),
        cmocka_unit_test(test_long_message_is_cut_not_overflowed),
        cmocka_unit_test(test_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
