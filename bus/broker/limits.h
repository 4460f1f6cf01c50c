/* limits.h - how many topics and partitions the broker takes on (docs/broker.md, "Limits").
 *
 * A CreateTopics, CreatePartitions or auto-create past a limit is refused with Kafka's error
 * code and a message, before anything is written: the broker must always be able to restart
 * with what it holds, and each partition's segments keep two descriptors open (log and index).
 * Besides the configured counts, a creation is refused when the segments would need more
 * descriptors than RLIMIT_NOFILE leaves after max_connections and a reserve.
 *
 * Threading: the event-loop thread (reads the store). */
#ifndef BROKER_LIMITS_H
#define BROKER_LIMITS_H

#include <stddef.h>
#include <stdint.h>

struct broker;

/* Descriptors kept for everything but segments and client sockets (epoll, listener, HTTP
 * server, files dup()ed for fetch answers in flight). */
#define LIMITS_FD_RESERVE 256

/* May `add` partitions be created, in a new topic (is_new_topic) or added to one that then has
 * `topic_total` partitions? Returns 0, or KERR_INVALID_PARTITIONS / KERR_POLICY_VIOLATION with
 * a sentence for the client in msg. */
int limits_check_partitions(const struct broker *b, int is_new_topic, int32_t topic_total,
                            int32_t add, char *msg, size_t msg_len);

/* Partitions and segments held now (for the check and the log line at start). */
void limits_usage(const struct broker *b, long *partitions, long *segments);

#endif
