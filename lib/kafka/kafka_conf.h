/* kafka_conf.h - private to the Kafka module (lib/kafka/kafka.c, kafka_consumer.c, kafka_txn.c):
 * the librdkafka configuration every client of ours starts from. Not for use outside lib/kafka/
 * files: the rest of the tree never sees rdkafka.h (STYLE.md). */
#ifndef KAFKA_CONF_H
#define KAFKA_CONF_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* A new configuration with, in this order: bootstrap.servers, the n_defaults {name, value}
 * pairs of the client kind, the caller's props (the process's "kafka.*" keys, see
 * config_kafka(); strings, numbers and booleans; they override any default; may be NULL), and
 * librdkafka's log lines routed into log.h. The caller owns the result (rd_kafka_new takes it, or
 * rd_kafka_conf_destroy). On failure returns NULL and writes to err
 * "<what> configuration: reason" for bootstrap or a default, "kafka.<key>: reason" for a prop. */
rd_kafka_conf_t *kafka_conf_new(const char *what, const char *bootstrap,
                                const char *const defaults[][2], size_t n_defaults, json_t *props,
                                char *err, size_t err_len);

/* The consumer's librdkafka handle and topic (kafka_txn.c sends its offsets with its group
 * metadata). */
struct kafka_consumer;
rd_kafka_t *kafka_consumer_rk(struct kafka_consumer *c);
const char *kafka_consumer_topic(const struct kafka_consumer *c);

#endif
