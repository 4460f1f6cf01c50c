/* offset_tracker.c - contiguous-prefix commit tracking (see offset_tracker.h). */
#include "kafka/offset_tracker.h"

#include <stdlib.h>

#include "alloc.h"

void offset_tracker_init(struct offset_tracker *t, size_t capacity)
{
    if (capacity == 0) {
        capacity = 1;
    }
    t->offsets = xcalloc(capacity, sizeof *t->offsets);
    t->done = xcalloc(capacity, sizeof *t->done);
    t->cap = capacity;
    t->head = 0;
    t->count = 0;
}

void offset_tracker_release(struct offset_tracker *t)
{
    free(t->offsets);
    free(t->done);
    t->offsets = NULL;
    t->done = NULL;
    t->cap = t->head = t->count = 0;
}

static size_t slot(const struct offset_tracker *t, size_t i)
{
    return (t->head + i) % t->cap;
}

int offset_tracker_add(struct offset_tracker *t, int64_t offset)
{
    if (t->count == t->cap) {
        return -1;
    }
    if (t->count > 0 && t->offsets[slot(t, t->count - 1)] >= offset) {
        return -1;
    }
    size_t s = slot(t, t->count);
    t->offsets[s] = offset;
    t->done[s] = false;
    t->count++;
    return 0;
}

int offset_tracker_finish(struct offset_tracker *t, int64_t offset)
{
    size_t lo = 0, hi = t->count; /* binary search over the ascending ring */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = t->offsets[slot(t, mid)];
        if (v == offset) {
            t->done[slot(t, mid)] = true;
            return 0;
        }
        if (v < offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

int64_t offset_tracker_take_committable(struct offset_tracker *t)
{
    int64_t next = -1;
    while (t->count > 0 && t->done[t->head]) {
        next = t->offsets[t->head] + 1;
        t->head = (t->head + 1) % t->cap;
        t->count--;
    }
    return next;
}
