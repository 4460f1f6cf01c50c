/* dlq.c - a route's dead letters: peek and replay (see dlq.h). */
#include "kafka/dlq.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "kafka/kafka.h"
#include "kafka/kafka_consumer.h"
#include "log.h"

#define DLQ_MAX_PARTITIONS 256
#define DLQ_PRODUCE_TIMEOUT_MS 10000

/* ---- peek ----------------------------------------------------------------------------------- */

struct peek {
    const char *route;
    json_t *list; /* of {"ts_ms": ..., "item": {...}} */
};

static void time_text(int64_t ms, char out[40])
{
    out[0] = '\0';
    if (ms < 0) {
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL) {
        return;
    }
    char base[32];
    if (strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        return;
    }
    snprintf(out, 40, "%s.%03dZ", base, (int)(ms % 1000));
}

static json_t *header_int(const struct kafka_record *rec, const char *name)
{
    const char *v = kafka_record_header(rec, name);
    if (v == NULL || *v == '\0') {
        return json_null();
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    return end && *end == '\0' ? json_integer(n) : json_string(v);
}

static json_t *header_str(const struct kafka_record *rec, const char *name)
{
    const char *v = kafka_record_header(rec, name);
    return v ? json_string(v) : json_null();
}

static void on_peek_record(void *opaque, struct kafka_record *rec)
{
    struct peek *pk = opaque;
    const char *for_route = kafka_record_header(rec, "x-bus-route");
    if (for_route == NULL || strcmp(for_route, pk->route) != 0) {
        kafka_record_free(rec);
        return;
    }
    json_t *headers = json_object();
    for (size_t i = 0; i < rec->n_headers; i++) {
        json_object_set_new(headers, rec->headers[i].name, json_string(rec->headers[i].value));
    }
    json_t *value = json_loadb(rec->value, rec->value_len, JSON_DECODE_ANY, NULL);
    if (value == NULL) {
        value = json_stringn(rec->value, rec->value_len);
    }
    char when[40];
    time_text(rec->timestamp_ms, when);
    json_t *from =
        json_pack("{s:o, s:o, s:o}", "topic", header_str(rec, "x-bus-topic"), "partition",
                  header_int(rec, "x-bus-partition"), "offset", header_int(rec, "x-bus-offset"));
    json_t *item = json_pack(
        "{s:i, s:I, s:s*, s:s?, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "partition",
        (int)rec->partition, "offset", (json_int_t)rec->offset, "time", when[0] ? when : NULL,
        "key", rec->key, "id", header_str(rec, "ce-id"), "status", header_int(rec, "x-bus-status"),
        "attempts", header_int(rec, "x-bus-attempts"), "error", header_str(rec, "x-bus-error"),
        "answer", header_str(rec, "x-bus-answer"), "from", from, "headers", headers, "value",
        value ? value : json_null());
    json_array_append_new(
        pk->list, json_pack("{s:I, s:o}", "ts_ms", (json_int_t)rec->timestamp_ms, "item", item));
    kafka_record_free(rec);
}

static int by_newest(const void *a, const void *b)
{
    json_t *const *x = a;
    json_t *const *y = b;
    json_int_t tx = json_integer_value(json_object_get(*x, "ts_ms"));
    json_int_t ty = json_integer_value(json_object_get(*y, "ts_ms"));
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

json_t *dlq_peek(const char *bootstrap, json_t *props, const char *route, const char *dead_letter,
                 int limit, int timeout_ms, char *err, size_t err_len)
{
    if (limit < 1) {
        limit = 1;
    }
    if (limit > DLQ_PEEK_MAX) {
        limit = DLQ_PEEK_MAX;
    }
    struct peek pk = {route, json_array()};
    json_t *ends = NULL;
    if (kafka_read_tail(bootstrap, props, dead_letter, limit, timeout_ms, on_peek_record, &pk,
                        &ends, err, err_len) != 0) {
        json_decref(pk.list);
        return NULL;
    }
    size_t n = json_array_size(pk.list);
    json_t **sorted = xcalloc(n + 1, sizeof *sorted);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = json_array_get(pk.list, i);
    }
    qsort(sorted, n, sizeof *sorted, by_newest);
    json_t *out = json_array();
    for (size_t i = 0; i < n && i < (size_t)limit; i++) {
        json_array_append(out, json_object_get(sorted[i], "item"));
    }
    free(sorted);
    json_int_t records = 0;
    size_t i;
    json_t *p;
    json_array_foreach(ends, i, p)
    {
        records += json_integer_value(json_object_get(p, "end")) -
                   json_integer_value(json_object_get(p, "start"));
    }
    json_decref(ends);
    json_decref(pk.list);
    return json_pack("{s:s, s:s, s:I, s:o}", "route", route, "topic", dead_letter, "records",
                     records, "dead_letters", out);
}

/* ---- replay --------------------------------------------------------------------------------- */

struct replay {
    atomic_int outstanding;
    atomic_int failed;
    atomic_bool is_assigned;
};

static void on_replay_assigned(void *opaque, bool is_assigned, const int32_t *partitions, size_t n)
{
    (void)partitions;
    (void)n;
    struct replay *rp = opaque;
    if (is_assigned) {
        atomic_store(&rp->is_assigned, true);
    }
}

static void on_replayed(void *opaque, int status, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)partition;
    (void)offset;
    struct replay *rp = opaque;
    if (status != KAFKA_OK) {
        log_warn("dlq replay: produce failed: %s", errstr ? errstr : "?");
        atomic_fetch_add(&rp->failed, 1);
    }
    atomic_fetch_sub(&rp->outstanding, 1);
}

int dlq_replay(const char *bootstrap, json_t *props, const char *route, const char *topic,
               const char *dead_letter, long idle_ms, long join_ms, long *replayed, long *skipped,
               char *err, size_t err_len)
{
    int rc = -1;
    char group[300];
    struct kafka_consumer *cons = NULL;
    struct kafka_producer *prod = NULL;
    struct replay rp;
    atomic_init(&rp.outstanding, 0);
    atomic_init(&rp.failed, 0);
    atomic_init(&rp.is_assigned, false);
    *replayed = 0;
    *skipped = 0;
    if (snprintf(group, sizeof group, "bus.dlq-replay.%s", route) >= (int)sizeof group) {
        snprintf(err, err_len, "route name too long");
        return -1;
    }
    cons = kafka_consumer_new(bootstrap, group, dead_letter, props, on_replay_assigned, &rp, err,
                              err_len);
    prod = cons ? kafka_producer_new(bootstrap, props, 0, err, err_len) : NULL;
    if (cons == NULL || prod == NULL) {
        goto out;
    }
    /* partition -> next offset to commit */
    int64_t next[DLQ_MAX_PARTITIONS];
    for (size_t i = 0; i < DLQ_MAX_PARTITIONS; i++) {
        next[i] = -1;
    }
    long waited = 0, joining = 0;
    /* Read until the dead-letter topic stays quiet for idle_ms after joining the group. */
    while (waited < idle_ms) {
        struct kafka_record *rec = NULL;
        if (kafka_consumer_poll(cons, 200, &rec) != 1) {
            if (atomic_load(&rp.is_assigned)) {
                waited += 200;
            } else if ((joining += 200) > join_ms) {
                snprintf(err, err_len, "no partition of %s assigned within %ld ms", dead_letter,
                         join_ms);
                goto out;
            }
            continue;
        }
        waited = 0;
        if (rec->partition >= 0 && rec->partition < DLQ_MAX_PARTITIONS) {
            next[rec->partition] = rec->offset + 1;
        }
        const char *for_route = kafka_record_header(rec, "x-bus-route");
        if (for_route == NULL || strcmp(for_route, route) != 0) {
            (*skipped)++;
            kafka_record_free(rec);
            continue;
        }
        /* The original headers (ce-*, traceparent, causation-id) without the dead-letter ones,
         * plus the replay marker. */
        struct kafka_header h[32];
        size_t nh = 0;
        for (size_t i = 0; i < rec->n_headers && nh < 30; i++) {
            if (strncmp(rec->headers[i].name, "x-bus-", 6) != 0) {
                h[nh++] = rec->headers[i];
            }
        }
        h[nh++] = (struct kafka_header){"x-bus-replay-route", route, strlen(route)};
        atomic_fetch_add(&rp.outstanding, 1);
        if (kafka_producer_send(prod, topic, -1, rec->key, rec->key_len, rec->value, rec->value_len,
                                h, nh, on_replayed, &rp) != KAFKA_OK) {
            atomic_fetch_sub(&rp.outstanding, 1);
            atomic_fetch_add(&rp.failed, 1);
        }
        (*replayed)++;
        kafka_record_free(rec);
    }
    kafka_producer_flush(prod, DLQ_PRODUCE_TIMEOUT_MS);
    if (atomic_load(&rp.failed) > 0 || atomic_load(&rp.outstanding) > 0) {
        snprintf(err, err_len, "%d copies not acknowledged; nothing committed, run it again",
                 atomic_load(&rp.failed) + atomic_load(&rp.outstanding));
        goto out;
    }
    for (int32_t p = 0; p < DLQ_MAX_PARTITIONS; p++) {
        if (next[p] >= 0 && kafka_consumer_commit(cons, p, next[p], true) != 0) {
            snprintf(err, err_len, "committing %s[%d] failed (the copies were sent)", dead_letter,
                     (int)p);
            goto out;
        }
    }
    rc = 0;
out:
    kafka_consumer_free(cons);
    kafka_producer_free(prod, 1000);
    return rc;
}
