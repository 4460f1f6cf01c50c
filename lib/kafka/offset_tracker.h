/* offset_tracker.h - which offsets of one partition may be committed (pure; no Kafka).
 *
 * The dispatcher finishes events out of order (concurrency, retries, key ordering), but Kafka
 * keeps one committed offset per partition: everything below it is considered done. The tracker
 * keeps the offsets taken but not yet committed, in ascending order, each with a done flag;
 * offset_tracker_take_committable() pops the contiguous prefix of done offsets and returns the
 * offset to commit (last done + 1). Its capacity bounds the events in flight per partition: when
 * full, the caller pauses fetching from the partition. Not thread-safe. */
#ifndef OFFSET_TRACKER_H
#define OFFSET_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct offset_tracker {
    int64_t *offsets; /* ring of tracked offsets, ascending */
    bool *done;
    size_t cap, head, count;
};

void offset_tracker_init(struct offset_tracker *t, size_t capacity);
void offset_tracker_release(struct offset_tracker *t);
/* Tracks offset (must be greater than every tracked one). Returns -1 when full or out of
 * order. */
int offset_tracker_add(struct offset_tracker *t, int64_t offset);
/* Marks offset finished. Returns -1 when it is not tracked. */
int offset_tracker_finish(struct offset_tracker *t, int64_t offset);
/* Pops the finished prefix. Returns the offset to commit (last popped + 1), or -1 when the
 * oldest tracked offset is not finished yet (nothing new to commit). */
int64_t offset_tracker_take_committable(struct offset_tracker *t);
static inline size_t offset_tracker_count(const struct offset_tracker *t)
{
    return t->count;
}
static inline bool offset_tracker_is_full(const struct offset_tracker *t)
{
    return t->count == t->cap;
}

#endif
