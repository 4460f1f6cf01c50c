/* kafka_consumer.h - a Kafka consumer of one topic in one consumer group, with manual commits
 * (part of the Kafka module: only lib/kafka/ files include rdkafka.h).
 *
 * Auto-commit is off: the owner commits exactly the offsets it finished. Starts from the
 * earliest offset when the group has none. Partition assignment changes are reported through
 * a callback that runs inside kafka_consumer_poll() (so on the polling thread): for a
 * revocation it runs before the partitions are given up, so the owner may still commit them.
 * Not thread-safe: one thread polls, commits, pauses. */
#ifndef KAFKA_CONSUMER_H
#define KAFKA_CONSUMER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kafka/kafka.h"

/* One consumed record, owned by the caller (kafka_record_free). One heap block with its strings
 * and header array: free or replace none of its fields on its own. */
struct kafka_record {
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* the record's timestamp (producer create time), or -1 */
    char *key;            /* NUL-terminated copy, or NULL */
    size_t key_len;
    char *value; /* NUL-terminated copy */
    size_t value_len;
    struct kafka_header *headers; /* names and values are NUL-terminated copies */
    size_t n_headers;
};
void kafka_record_free(struct kafka_record *r);
/* The value of header name (first match, NUL-terminated), or NULL. */
const char *kafka_record_header(const struct kafka_record *r, const char *name);

/* is_assigned: partitions were assigned (true) or are being revoked (false). */
typedef void (*kafka_rebalance_fn)(void *opaque, bool is_assigned, const int32_t *partitions,
                                   size_t n);

struct kafka_consumer;

/* props (borrowed, may be NULL): extra librdkafka properties, e.g. config_kafka(cfg). */
struct kafka_consumer *kafka_consumer_new(const char *bootstrap, const char *group_id,
                                          const char *topic, json_t *props,
                                          kafka_rebalance_fn on_rebalance, void *opaque, char *err,
                                          size_t err_len);
/* Waits up to timeout_ms. Returns 1 with *out set, 0 when nothing arrived, -1 on a consume
 * error (logged; keep polling). */
int kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms, struct kafka_record **out);
/* Commits next_offset (the next offset to read) for partition. is_sync: waits for the broker's
 * answer, at most 5 s (and not past the deadline, see below); returns -1 when it failed
 * or timed out. Asynchronous: returns at once; a failure is reported later through the
 * commit-failed callback. */
int kafka_consumer_commit(struct kafka_consumer *c, int32_t partition, int64_t next_offset,
                          bool is_sync);
/* Called (on the polling thread, inside kafka_consumer_poll()) when an asynchronous commit of
 * next_offset for partition failed: the owner commits it again (or a later offset). */
typedef void (*kafka_commit_failed_fn)(void *opaque, int32_t partition, int64_t next_offset);
/* Sets the commit-failed callback (opaque: the one given to kafka_consumer_new). */
void kafka_consumer_on_commit_failed(struct kafka_consumer *c, kafka_commit_failed_fn fn);
/* Makes a kafka_consumer_poll() blocked in another thread return early (any thread). */
void kafka_consumer_wake(struct kafka_consumer *c);
/* Moves the fetch position of partition back to offset (e.g. a record that could not be taken
 * in is fetched again later). */
int kafka_consumer_seek(struct kafka_consumer *c, int32_t partition, int64_t offset);
/* Stops/restarts fetching from partition (-1 = every assigned partition). */
int kafka_consumer_pause(struct kafka_consumer *c, int32_t partition);
int kafka_consumer_resume(struct kafka_consumer *c, int32_t partition);
/* The cached high watermark of partition (from the last fetch), or -1 when unknown. */
int64_t kafka_consumer_high_watermark(struct kafka_consumer *c, int32_t partition);
/* The low and high watermarks of partition asked of its leader now (blocks up to timeout_ms),
 * for a paused partition whose cached value no longer moves. Returns 0, or -1 on error or
 * time-out (*low and *high untouched). */
int kafka_consumer_query_watermarks(struct kafka_consumer *c, int32_t partition, int timeout_ms,
                                    int64_t *low, int64_t *high);
/* The group's committed offsets (next offsets to read) of the n partitions of the topic, asked
 * of the group coordinator now (blocks up to timeout_ms): offsets[i] = -1 where the group has
 * none. Returns 0, or -1 on error or time-out (offsets untouched). */
int kafka_consumer_committed(struct kafka_consumer *c, const int32_t *partitions, size_t n,
                             int timeout_ms, int64_t *offsets);
/* From now on every synchronous wait (commits, close) ends by by_ms (app_now_ms() time; 0 =
 * none): the owner's shutdown deadline. */
void kafka_consumer_set_deadline(struct kafka_consumer *c, long long by_ms);
/* Leaves the group (the revocation callback runs first, on the calling thread; its synchronous
 * commits end by the deadline too) and frees, within timeout_ms (and the deadline set with
 * kafka_consumer_set_deadline) whatever the broker does: a
 * close that cannot finish in time is abandoned (the broker drops the member after its session
 * time-out). NULL is a no-op. */
void kafka_consumer_close(struct kafka_consumer *c, long timeout_ms);
/* kafka_consumer_close() with 10 s. */
void kafka_consumer_free(struct kafka_consumer *c);

/* Receives one record of kafka_read_tail(); takes ownership (kafka_record_free). */
typedef void (*kafka_record_fn)(void *opaque, struct kafka_record *rec);
/* Reads the last per_partition records of every partition of topic, as they were when called,
 * without joining a consumer group and without committing (for inspecting a topic, e.g. a
 * dead-letter topic on the dashboard). fn gets each record, in offset order per partition, on the
 * calling thread. With ends non-NULL, *ends receives [{"partition", "start", "end"}] (the low and
 * high watermarks; new reference). per_partition 0 reads nothing and only fills *ends. Returns
 * 0, or -1 with err filled (unknown topic, broker unreachable, timeout_ms spent). Thread-safe
 * (each call has its own client). */
int kafka_read_tail(const char *bootstrap, json_t *props, const char *topic, int64_t per_partition,
                    int timeout_ms, kafka_record_fn fn, void *opaque, json_t **ends, char *err,
                    size_t err_len);

#endif
