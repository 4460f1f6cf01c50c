/* kafka_admin.h - topic administration for busctl (part of the Kafka module: only lib/kafka/ files
 * include rdkafka.h): list topics with their partition counts, create topics, add partitions.
 * Synchronous calls with a time-out; not thread-safe. */
#ifndef KAFKA_ADMIN_H
#define KAFKA_ADMIN_H

#include <jansson.h>
#include <stddef.h>

struct kafka_admin;

struct kafka_admin *kafka_admin_new(const char *bootstrap, json_t *props, char *err,
                                    size_t err_len);
void kafka_admin_free(struct kafka_admin *a);

/* The broker's topics as {"name": partitions, ...} (new reference), internal ones ("__...")
 * left out; NULL with err filled when the broker does not answer. */
json_t *kafka_admin_topics(struct kafka_admin *a, int timeout_ms, char *err, size_t err_len);
/* The cluster id (e.g. "mockCluster..." for librdkafka's mock cluster) into out; -1 when the
 * broker does not tell. */
int kafka_admin_cluster_id(struct kafka_admin *a, char *out, size_t out_len);
/* Creates topic with partitions (replication: the broker default) and retention.ms from
 * retention_hours (0 = broker default). Returns 0, or -1 with err filled (err starts with
 * "unsupported:" when the broker does not implement CreateTopics). */
int kafka_admin_create_topic(struct kafka_admin *a, const char *topic, int partitions,
                             int retention_hours, int timeout_ms, char *err, size_t err_len);
/* Raises topic's partition count to total. Same return convention. */
int kafka_admin_create_partitions(struct kafka_admin *a, const char *topic, int total,
                                  int timeout_ms, char *err, size_t err_len);

#endif
