/* kafka.h - the Kafka producer (the Kafka module is the only code that includes rdkafka.h; see
 * also kafka_consumer.h and kafka_admin.h).
 *
 * The producer is idempotent with acks=all: the delivery callback reports success only once the
 * broker acknowledged the record. librdkafka's log lines are routed into log.h. One background
 * thread serves delivery reports; callbacks run on it and must not block. */
#ifndef KAFKA_H
#define KAFKA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The linked library's version, for --version and bus_build_info (static string). */
const char *kafka_lib_version(void); /* librdkafka's version, e.g. "2.0.2" */

/* Checks the "kafka.*" properties (config_kafka: names without the prefix) against librdkafka's
 * own table, as a client built from them would: 0, or -1 with err naming the property and
 * librdkafka's reason. For --check-config, so an unknown property fails there, not at start. */
int kafka_conf_validate(json_t *props, char *err, size_t err_len);

struct kafka_header {
    const char *name;
    const void *value;
    size_t len;
};

enum kafka_status {
    KAFKA_OK = 0,
    KAFKA_QUEUE_FULL = -1, /* local queue at its bound: answer 503 + Retry-After */
    KAFKA_UNKNOWN_TOPIC = -2,
    KAFKA_TOO_LARGE = -3,
    KAFKA_ERROR = -4, /* other (errstr says what) */
};

/* Delivery report: status KAFKA_OK with partition/offset, or an error with errstr (static or
 * valid during the call). Runs on the producer's delivery thread. */
typedef void (*kafka_delivery_fn)(void *opaque, int status, const char *errstr, int32_t partition,
                                  int64_t offset);

struct kafka_producer;

/* bootstrap: "host:port,..."; props: extra librdkafka properties (borrowed, may be NULL), e.g.
 * config_kafka(cfg). max_queue_messages bounds the local queue (0 = 100000). */
struct kafka_producer *kafka_producer_new(const char *bootstrap, json_t *props,
                                          unsigned max_queue_messages, char *err, size_t err_len);
/* Queues one record. partition -1 = by key (librdkafka's consistent partitioner; no key =
 * random). Headers and payload are copied. Returns KAFKA_OK (cb will be called exactly once) or
 * a kafka_status (cb will not be called). */
int kafka_producer_send(struct kafka_producer *p, const char *topic, int32_t partition,
                        const void *key, size_t key_len, const void *value, size_t value_len,
                        const struct kafka_header *headers, size_t n_headers, kafka_delivery_fn cb,
                        void *opaque);
/* kafka_producer_send without the payload's copy: value is borrowed and must stay valid and
 * unchanged until cb has returned (on KAFKA_OK; on failure it is not kept). For callers that hold
 * the payload until the delivery report anyway (the publisher answers a request, and frees its
 * body, only after it). Key and headers are still copied. */
int kafka_producer_send_borrowed(struct kafka_producer *p, const char *topic, int32_t partition,
                                 const void *key, size_t key_len, const void *value,
                                 size_t value_len, const struct kafka_header *headers,
                                 size_t n_headers, kafka_delivery_fn cb, void *opaque);
/* Hooks run on the delivery thread around each wait for delivery reports: begin before it,
 * end after the last callback it ran (either may be NULL). Lets a caller treat the reports of
 * one wake-up as a batch (the publisher answers them in one sweep: http_defer_begin/end). Both
 * or neither: with one of them NULL, no hook runs. */
void kafka_producer_set_sweep(struct kafka_producer *p, void (*begin)(void), void (*end)(void));
/* Waits up to timeout_ms for every queued record's delivery report; returns the number still
 * outstanding. */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms);
/* Records queued or in flight. */
int kafka_producer_outstanding(struct kafka_producer *p);
/* True when at least one broker connection is up (for /readyz). */
int kafka_producer_is_connected(struct kafka_producer *p);
/* 0 when the producer can do its job; -1 with *reason (static) when it failed fatally (a fresh
 * librdkafka handle is being started: the producer replaces one that failed fatally by itself,
 * and records sent meanwhile fail at once) or when the last delivery report, less than 10 s
 * old, was a failure (e.g. the broker cannot write). Thread-safe; for /readyz. */
int kafka_producer_health(struct kafka_producer *p, const char **reason);
/* How many times a fatally failed handle was replaced (for tests and metrics). */
int kafka_producer_renewals(struct kafka_producer *p);
/* Flushes up to timeout_ms, then frees. NULL is a no-op. */
void kafka_producer_free(struct kafka_producer *p, int timeout_ms);

#endif
