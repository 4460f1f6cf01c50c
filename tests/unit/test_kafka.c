/* test_kafka.c - the Kafka producer module against librdkafka's in-process mock cluster
 * (property test.mock.num.brokers), so no broker process is needed: delivery reports with
 * partition and offset, the queue bound, configuration errors, flush and free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "kafka/kafka.h"

struct reports {
    pthread_mutex_t lock;
    int n_ok;
    int n_err;
    int32_t last_partition;
    int64_t last_offset;
};

static void on_report(void *opaque, int status, const char *errstr, int32_t partition,
                      int64_t offset)
{
    struct reports *r = opaque;
    pthread_mutex_lock(&r->lock);
    if (status == KAFKA_OK) {
        r->n_ok++;
        r->last_partition = partition;
        r->last_offset = offset;
    } else {
        r->n_err++;
        assert_non_null(errstr);
    }
    pthread_mutex_unlock(&r->lock);
}

static struct kafka_producer *mock_producer(unsigned max_queue, const char *extra_key,
                                            const char *extra_val)
{
    json_t *props = json_pack("{s:s}", "test.mock.num.brokers", "1");
    if (extra_key != NULL) {
        json_object_set_new(props, extra_key, json_string(extra_val));
    }
    char err[512];
    struct kafka_producer *p = kafka_producer_new("", props, max_queue, err, sizeof err);
    json_decref(props);
    if (p == NULL) {
        fail_msg("kafka_producer_new: %s", err);
    }
    return p;
}

static void test_send_is_acknowledged_with_partition_and_offset(void **state)
{
    (void)state;
    struct reports r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kafka_producer *p = mock_producer(0, NULL, NULL);
    struct kafka_header h[] = {{"ce-id", "id-1", 4}, {"traceparent", "00-x", 4}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            kafka_producer_send(p, "t", -1, "k", 1, "{\"a\":1}", 7, h, 2, on_report, &r), KAFKA_OK);
    }
    assert_int_equal(kafka_producer_flush(p, 10000), 0);
    assert_int_equal(kafka_producer_outstanding(p), 0);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n_ok, 3);
    assert_int_equal(r.n_err, 0);
    assert_true(r.last_partition >= 0);
    assert_int_equal(r.last_offset, 2); /* same key: same partition, offsets 0, 1, 2 */
    pthread_mutex_unlock(&r.lock);
    assert_true(kafka_producer_is_connected(p));
    kafka_producer_free(p, 1000);
}

/* A borrowed payload: the caller's buffer until its report. Each report frees its own record's
 * payload, and is checked against it, so a report that came twice, never, or for the wrong
 * record fails here (and under ASan a read of a payload after its report would be caught). */
struct borrowed {
    struct reports *r;
    char *payload;
    int index;
};

static int borrowed_seen[8];

static void on_borrowed_report(void *opaque, int status, const char *errstr, int32_t partition,
                               int64_t offset)
{
    struct borrowed *b = opaque;
    char want[32];
    snprintf(want, sizeof want, "{\"n\":%d}", b->index);
    assert_string_equal(b->payload, want); /* untouched until now */
    borrowed_seen[b->index]++;
    free(b->payload);
    b->payload = NULL;
    on_report(b->r, status, errstr, partition, offset);
}

static void test_borrowed_payload_is_kept_until_its_report(void **state)
{
    (void)state;
    struct reports r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kafka_producer *p = mock_producer(0, NULL, NULL);
    struct borrowed b[8];
    memset(borrowed_seen, 0, sizeof borrowed_seen);
    for (int i = 0; i < 8; i++) {
        b[i].r = &r;
        b[i].index = i;
        b[i].payload = malloc(32);
        assert_non_null(b[i].payload);
        snprintf(b[i].payload, 32, "{\"n\":%d}", i);
        assert_int_equal(kafka_producer_send_borrowed(p, "t", -1, "k", 1, b[i].payload,
                                                      strlen(b[i].payload), NULL, 0,
                                                      on_borrowed_report, &b[i]),
                         KAFKA_OK);
    }
    assert_int_equal(kafka_producer_flush(p, 10000), 0);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n_ok, 8);
    assert_int_equal(r.n_err, 0);
    assert_int_equal(r.last_offset, 7); /* one key: offsets 0..7 in order */
    pthread_mutex_unlock(&r.lock);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(borrowed_seen[i], 1);
        assert_null(b[i].payload);
    }
    kafka_producer_free(p, 1000);
}

static void test_queue_bound_refuses_with_queue_full(void **state)
{
    (void)state;
    struct reports r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    /* A long linger keeps the first records queued while we fill the bound. */
    struct kafka_producer *p = mock_producer(2, "linger.ms", "2000");
    int st[3];
    for (int i = 0; i < 3; i++) {
        st[i] = kafka_producer_send(p, "t", -1, NULL, 0, "{}", 2, NULL, 0, on_report, &r);
    }
    assert_int_equal(st[0], KAFKA_OK);
    assert_int_equal(st[1], KAFKA_OK);
    assert_int_equal(st[2], KAFKA_QUEUE_FULL);
    assert_int_equal(kafka_producer_flush(p, 10000), 0);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n_ok, 2); /* the refused one never reports */
    pthread_mutex_unlock(&r.lock);
    kafka_producer_free(p, 1000);
}

static void test_bad_property_is_refused_naming_it(void **state)
{
    (void)state;
    json_t *props = json_pack("{s:s}", "no.such.property", "1");
    char err[512] = "";
    assert_null(kafka_producer_new("127.0.0.1:1", props, 0, err, sizeof err));
    assert_non_null(strstr(err, "no.such.property"));
    json_decref(props);
    props = json_pack("{s:[]}", "linger.ms");
    assert_null(kafka_producer_new("127.0.0.1:1", props, 0, err, sizeof err));
    assert_non_null(strstr(err, "linger.ms"));
    json_decref(props);
    kafka_producer_free(NULL, 0);
}

static void test_unreachable_broker_fails_delivery_within_timeout(void **state)
{
    (void)state;
    struct reports r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    json_t *props = json_pack("{s:i}", "message.timeout.ms", 300);
    char err[512];
    /* Port 1 on loopback: nothing listens. */
    struct kafka_producer *p = kafka_producer_new("127.0.0.1:1", props, 0, err, sizeof err);
    json_decref(props);
    assert_non_null(p);
    assert_int_equal(kafka_producer_send(p, "t", -1, NULL, 0, "{}", 2, NULL, 0, on_report, &r),
                     KAFKA_OK);
    assert_int_equal(kafka_producer_flush(p, 10000), 0);
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n_ok, 0);
    assert_int_equal(r.n_err, 1);
    pthread_mutex_unlock(&r.lock);
    assert_false(kafka_producer_is_connected(p));
    kafka_producer_free(p, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_is_acknowledged_with_partition_and_offset),
        cmocka_unit_test(test_borrowed_payload_is_kept_until_its_report),
        cmocka_unit_test(test_queue_bound_refuses_with_queue_full),
        cmocka_unit_test(test_bad_property_is_refused_naming_it),
        cmocka_unit_test(test_unreachable_broker_fails_delivery_within_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
