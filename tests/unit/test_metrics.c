/* test_metrics.c - counters, gauges, histograms and their Prometheus text exposition 0.0.4.
 * The registry is process-wide, so every test uses its own metric names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

/* Renders the registry into a fresh heap string (caller frees). */
static char *render(void)
{
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(metrics_render(&b), 0);
    return buf_take(&b, NULL);
}

/* True when text has line as a whole line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line)) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') {
            return true;
        }
    }
    return false;
}

static void assert_line(const char *text, const char *line)
{
    if (!has_line(text, line)) {
        fail_msg("line \"%s\" missing from:\n%s", line, text);
    }
}

static int count_occurrences(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

static void test_counter_and_labels(void **state)
{
    (void)state;
    struct metric *a = metrics_counter("t1_events_total", "Events seen.", "topic=\"login\"");
    struct metric *b = metrics_counter("t1_events_total", "Events seen.", "topic=\"kick\"");
    assert_ptr_not_equal(a, b);
    /* get-or-create: the same name and labels give the same series */
    assert_ptr_equal(metrics_counter("t1_events_total", "Events seen.", "topic=\"login\""), a);
    metric_inc(a);
    metric_inc(a);
    metric_add(a, 3);
    metric_add(a, -10); /* a counter never goes down */
    metric_inc(b);
    assert_true(metric_value(a) == 5.0);
    char *text = render();
    assert_line(text, "# HELP t1_events_total Events seen.");
    assert_line(text, "# TYPE t1_events_total counter");
    assert_line(text, "t1_events_total{topic=\"login\"} 5");
    assert_line(text, "t1_events_total{topic=\"kick\"} 1");
    assert_int_equal(count_occurrences(text, "# TYPE t1_events_total "), 1); /* once per name */
    free(text);
}

static void test_gauge_set_add_and_no_labels(void **state)
{
    (void)state;
    struct metric *g = metrics_gauge("t2_in_flight", "Requests in flight.", NULL);
    metric_set(g, 10);
    metric_add(g, -2.5);
    metric_inc(g);
    assert_true(metric_value(g) == 8.5);
    char *text = render();
    assert_line(text, "# TYPE t2_in_flight gauge");
    assert_line(text, "t2_in_flight 8.5");
    free(text);
    metric_set(g, INFINITY);
    text = render();
    assert_line(text, "t2_in_flight +Inf");
    free(text);
    metric_set(g, NAN);
    text = render();
    assert_line(text, "t2_in_flight NaN");
    free(text);
    metric_set(g, 0.1);
    text = render();
    assert_line(text, "t2_in_flight 0.1"); /* shortest form that reads back */
    free(text);
}

static void test_histogram_buckets_sum_count(void **state)
{
    (void)state;
    static const double bounds[] = {0.1, 1, 10};
    struct metric *h =
        metrics_histogram("t3_latency_seconds", "Latency.", "route=\"r\"", bounds, 3);
    metric_observe(h, 0.05);
    metric_observe(h, 0.1); /* le is inclusive */
    metric_observe(h, 0.5);
    metric_observe(h, 5);
    metric_observe(h, 50);
    assert_true(metric_value(h) == 5.0);
    char *text = render();
    assert_line(text, "# TYPE t3_latency_seconds histogram");
    assert_line(text, "t3_latency_seconds_bucket{route=\"r\",le=\"0.1\"} 2");
    assert_line(text, "t3_latency_seconds_bucket{route=\"r\",le=\"1\"} 3");
    assert_line(text, "t3_latency_seconds_bucket{route=\"r\",le=\"10\"} 4");
    assert_line(text, "t3_latency_seconds_bucket{route=\"r\",le=\"+Inf\"} 5");
    const char *sum = strstr(text, "\nt3_latency_seconds_sum{route=\"r\"} ");
    assert_non_null(sum);
    assert_true(strtod(strchr(sum, '}') + 2, NULL) == 0.05 + 0.1 + 0.5 + 5 + 50); /* exact */
    assert_line(text, "t3_latency_seconds_count{route=\"r\"} 5");
    free(text);
}

static void test_histogram_default_buckets_without_labels(void **state)
{
    (void)state;
    struct metric *h = metrics_histogram("t4_seconds", "Default buckets.", NULL, NULL, 0);
    metric_observe(h, 0.0001);
    metric_observe(h, 100);
    char *text = render();
    assert_line(text, "t4_seconds_bucket{le=\"0.0005\"} 1");
    assert_line(text, "t4_seconds_bucket{le=\"10\"} 1");
    assert_line(text, "t4_seconds_bucket{le=\"+Inf\"} 2");
    assert_line(text, "t4_seconds_count 2");
    free(text);
}

static void test_series_of_one_name_are_grouped(void **state)
{
    (void)state;
    /* created interleaved with another name, rendered as one group under one HELP/TYPE */
    metric_inc(metrics_counter("t5_a_total", "A.", "k=\"1\""));
    metric_inc(metrics_counter("t5_b_total", "B.", NULL));
    metric_inc(metrics_counter("t5_a_total", "A.", "k=\"2\""));
    char *text = render();
    const char *type_a = strstr(text, "# TYPE t5_a_total counter\n");
    assert_non_null(type_a);
    const char *after = type_a + strlen("# TYPE t5_a_total counter\n");
    assert_true(strncmp(after, "t5_a_total{k=\"1\"} 1\nt5_a_total{k=\"2\"} 1\n", 40) == 0);
    assert_int_equal(count_occurrences(text, "# HELP t5_a_total "), 1);
    free(text);
}

static void test_help_is_escaped(void **state)
{
    (void)state;
    metrics_gauge("t6_g", "line one\nback\\slash", NULL);
    char *text = render();
    assert_line(text, "# HELP t6_g line one\\nback\\\\slash");
    free(text);
}

static int hook_calls;
static void refresh_hook(void *ctx)
{
    hook_calls++;
    metric_set(ctx, 42);
}

static void test_render_hook_runs_before_render(void **state)
{
    (void)state;
    struct metric *g = metrics_gauge("t7_on_demand", "Computed at render.", NULL);
    metrics_on_render(refresh_hook, g);
    char *text = render();
    assert_true(hook_calls >= 1);
    assert_line(text, "t7_on_demand 42");
    free(text);
}

static void test_render_into_capped_buffer_fails(void **state)
{
    (void)state;
    metrics_counter("t8_total", "Cap.", NULL);
    struct buf b;
    buf_init(&b, 16);
    assert_int_equal(metrics_render(&b), BUF_ETOOBIG);
    buf_release(&b);
}

static void *hammer(void *arg)
{
    struct metric **m = arg;
    for (int i = 0; i < 10000; i++) {
        metric_inc(m[0]);
        metric_observe(m[1], 0.5);
        metric_add(m[2], 1);
    }
    return NULL;
}

static void test_concurrent_updates_are_not_lost(void **state)
{
    (void)state;
    struct metric *m[3] = {
        metrics_counter("t9_total", "Concurrent.", NULL),
        metrics_histogram("t9_seconds", "Concurrent.", NULL, NULL, 0),
        metrics_gauge("t9_gauge", "Concurrent.", NULL),
    };
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, hammer, m), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    assert_true(metric_value(m[0]) == 40000.0);
    assert_true(metric_value(m[1]) == 40000.0);
    assert_true(metric_value(m[2]) == 40000.0);
    char *text = render();
    assert_line(text, "t9_seconds_sum 20000");
    assert_line(text, "t9_seconds_bucket{le=\"+Inf\"} 40000");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_labels),
        cmocka_unit_test(test_gauge_set_add_and_no_labels),
        cmocka_unit_test(test_histogram_buckets_sum_count),
        cmocka_unit_test(test_histogram_default_buckets_without_labels),
        cmocka_unit_test(test_series_of_one_name_are_grouped),
        cmocka_unit_test(test_help_is_escaped),
        cmocka_unit_test(test_render_hook_runs_before_render),
        cmocka_unit_test(test_render_into_capped_buffer_fails),
        cmocka_unit_test(test_concurrent_updates_are_not_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
