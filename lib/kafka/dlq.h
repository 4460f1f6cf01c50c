/* dlq.h - a route's dead letters: look at the last ones, send them through the route again.
 *
 * Dead-letter records are written by the dispatcher (bus/dispatcher/route.c): the event's key,
 * value and headers plus x-bus-route, x-bus-status, x-bus-attempts, x-bus-error, x-bus-answer,
 * x-bus-topic, x-bus-partition, x-bus-offset (see docs/bus.md). A dead-letter topic may serve
 * several routes; both calls keep only the records whose x-bus-route is the route's. Used by
 * busctl (dlq replay) and the dispatcher's admin API (the dashboard). */
#ifndef DLQ_H
#define DLQ_H

#include <jansson.h>
#include <stddef.h>

/* Hard cap of dlq_peek's limit. */
#define DLQ_PEEK_MAX 200

/* The last dead letters of route in topic dead_letter (among the last `limit` records of each
 * partition), newest first, at most limit (capped by DLQ_PEEK_MAX):
 * {"route", "topic", "records": N (records in the topic now, all routes), "dead_letters":
 * [{"partition", "offset", "time", "key", "id", "status", "attempts", "error", "answer",
 * "from": {"topic", "partition", "offset"}, "headers": {...}, "value"}]} (new reference).
 * NULL with err filled when the topic cannot be read within timeout_ms. Thread-safe. */
json_t *dlq_peek(const char *bootstrap, json_t *props, const char *route, const char *dead_letter,
                 int limit, int timeout_ms, char *err, size_t err_len);

/* Sends route's dead letters through the route again: reads dead_letter in the consumer group
 * bus.dlq-replay.<route> (so a second replay sends only what arrived since), produces each of
 * route's dead letters to topic with its original key, value, ce-* and traceparent headers plus
 * x-bus-replay-route: route (other routes of topic skip it), and commits the dead-letter offsets
 * once every copy was acknowledged. Reads until the topic stays quiet for idle_ms after the
 * group assigned its partitions (at most join_ms to get them). Fills *replayed and *skipped
 * (dead letters of other routes). Returns 0, or -1 with err filled (then nothing was committed;
 * running it again is safe: the route's endpoint deduplicates by ce-id). Blocks for at least
 * idle_ms. Two replays of one route at once share the group: don't. */
int dlq_replay(const char *bootstrap, json_t *props, const char *route, const char *topic,
               const char *dead_letter, long idle_ms, long join_ms, long *replayed, long *skipped,
               char *err, size_t err_len);

#endif
