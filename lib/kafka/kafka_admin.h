/* kafka_admin.h - topic administration for busctl (part of the Kafka module: only lib/kafka/ files
 * include rdkafka.h): list topics with their partition counts, create topics, add partitions,
 * read and change topic settings.
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
/* Creates topic with partitions, replication_factor (<= 0: the broker's default) and configs
 * (a JSON object of Kafka topic settings, string values, e.g. {"retention.ms": "3600000"};
 * NULL = none). Returns 0, or -1 with err filled (err starts with "unsupported:" when the broker
 * does not implement CreateTopics). */
int kafka_admin_create_topic(struct kafka_admin *a, const char *topic, int partitions,
                             int replication_factor, json_t *configs, int timeout_ms, char *err,
                             size_t err_len);
/* Raises topic's partition count to total. Same return convention. */
int kafka_admin_create_partitions(struct kafka_admin *a, const char *topic, int total,
                                  int timeout_ms, char *err, size_t err_len);

/* The replication factor of topic (replicas of its partition 0), or -1 when unknown. */
int kafka_admin_replication_factor(struct kafka_admin *a, const char *topic, int timeout_ms);
/* The topic's settings as the broker describes them (new reference):
 * {"retention.ms": {"value": "604800000", "is_topic": false}, ...}; is_topic is true for a
 * setting made on the topic itself (not inherited from the broker). NULL with err filled (err
 * starts with "unsupported:" when the broker has no DescribeConfigs). */
json_t *kafka_admin_topic_configs(struct kafka_admin *a, const char *topic, int timeout_ms,
                                  char *err, size_t err_len);
/* Sets the settings in set ({"retention.ms": "3600000", ...}, string values) on topic and leaves
 * its other settings as they are (IncrementalAlterConfigs; with librdkafka < 2.2, AlterConfigs
 * of the topic's own settings plus these). Returns 0, or -1 with the broker's reason in err. */
int kafka_admin_alter_topic_configs(struct kafka_admin *a, const char *topic, json_t *set,
                                    int timeout_ms, char *err, size_t err_len);

#endif
