/* kafka_consumer.c - one topic, one group, manual commits (see kafka_consumer.h). */
#include "kafka/kafka_consumer.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "app.h"
#include "kafka/kafka_conf.h"
#include "log.h"

/* A synchronous commit waits at most this long (or until the close deadline): librdkafka's own
 * waits for a coordinator that is gone (issue 21: a dispatcher still blocked after 90 s). */
#define KAFKA_SYNC_COMMIT_TIMEOUT_MS 5000

struct kafka_consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue, for kafka_consumer_wake */
    char *topic;
    kafka_rebalance_fn on_rebalance;
    kafka_commit_failed_fn on_commit_failed;
    void *opaque;
    long long wait_by_ms;          /* every synchronous wait ends by then (0 = no deadline) */
    rd_kafka_queue_t *close_queue; /* kafka_consumer_close's, kept with a handle left behind */
};

rd_kafka_t *kafka_consumer_rk(struct kafka_consumer *c)
{
    return c->rk;
}

const char *kafka_consumer_topic(const struct kafka_consumer *c)
{
    return c->topic;
}

void kafka_record_free(struct kafka_record *r)
{
    free(r); /* one block: record_copy() */
}

const char *kafka_record_header(const struct kafka_record *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    log_warn("kafka consumer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void report(struct kafka_consumer *c, bool is_assigned,
                   const rd_kafka_topic_partition_list_t *parts)
{
    if (c->on_rebalance == NULL || parts == NULL || parts->cnt == 0) {
        return;
    }
    int32_t *ids = xcalloc((size_t)parts->cnt, sizeof *ids);
    for (int i = 0; i < parts->cnt; i++) {
        ids[i] = parts->elems[i].partition;
    }
    c->on_rebalance(c->opaque, is_assigned, ids, (size_t)parts->cnt);
    free(ids);
}

/* The result of every asynchronous commit, served by kafka_consumer_poll() on the polling
 * thread: a failed one (a broker restarting, a coordinator moving, a rebalance) is reported to
 * the owner, which commits it again, instead of counting it as done. */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    struct kafka_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == NULL) {
        return;
    }
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        rd_kafka_resp_err_t e = err ? err : tp->err;
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || strcmp(tp->topic, c->topic) != 0) {
            continue;
        }
        log_debug("kafka commit %s[%d]@%lld failed: %s (committed again)", tp->topic,
                  (int)tp->partition, (long long)tp->offset, rd_kafka_err2str(e));
        if (c->on_commit_failed) {
            c->on_commit_failed(c->opaque, tp->partition, tp->offset);
        }
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kafka_consumer *c = opaque;
    bool is_cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (is_cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e != NULL) {
                log_error("kafka incremental assign: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        report(c, true, parts);
        return;
    }
    /* Revocation (or lost): the owner commits what finished before we let go. */
    report(c, false, parts);
    if (is_cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e != NULL) {
            log_error("kafka incremental unassign: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

struct kafka_consumer *kafka_consumer_new(const char *bootstrap, const char *group_id,
                                          const char *topic, json_t *props,
                                          kafka_rebalance_fn on_rebalance_fn, void *opaque,
                                          char *err, size_t err_len)
{
    char errstr[512];
    struct kafka_consumer *c = xcalloc(1, sizeof *c);
    c->on_rebalance = on_rebalance_fn;
    c->opaque = opaque;
    c->topic = xstrdup(topic);

    const char *const defaults[][2] = {
        {"group.id", group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
        {"session.timeout.ms", "10000"},
        {"heartbeat.interval.ms", "1000"},
        {"topic.metadata.refresh.interval.ms", "5000"},
        {"queued.min.messages", "20000"},
        {"fetch.wait.max.ms", "100"}, /* brokers that don't answer a fetch early (the mock) */
        {"socket.keepalive.enable", "true"},
    };
    rd_kafka_conf_t *conf =
        kafka_conf_new("kafka consumer", bootstrap, defaults, sizeof defaults / sizeof defaults[0],
                       props, err, err_len);
    if (conf == NULL) {
        goto fail;
    }
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_opaque(conf, c);

    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (c->rk == NULL) {
        snprintf(err, err_len, "kafka consumer: %s", errstr);
        goto fail;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, err_len, "kafka subscribe %s: %s", topic, rd_kafka_err2str(e));
        rd_kafka_queue_destroy(c->queue);
        rd_kafka_destroy(c->rk);
        c->rk = NULL;
        goto fail;
    }
    return c;
fail:
    if (conf != NULL) {
        rd_kafka_conf_destroy(conf);
    }
    free(c->topic);
    free(c);
    return NULL;
}

/* Copies what we keep of m into one heap block: the record, its header array, then topic,
 * key, value and every header's name and value, each NUL-terminated (one allocation and one
 * free per record, which the dispatcher takes in and frees for every event). */
static struct kafka_record *record_copy(const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    size_t topic_len = strlen(topic);
    size_t key_len = m->key != NULL ? m->key_len : 0;
    size_t value_len = m->payload ? m->len : 0;
    rd_kafka_headers_t *hdrs = NULL;
    size_t n = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != NULL) {
        n = rd_kafka_header_cnt(hdrs);
    }
    size_t size = sizeof(struct kafka_record) + n * sizeof(struct kafka_header) + topic_len + 1 +
                  key_len + 1 + value_len + 1;
    const char *name;
    const void *val;
    size_t len;
    size_t n_ok = 0;
    for (; n_ok < n; n_ok++) {
        if (rd_kafka_header_get_all(hdrs, n_ok, &name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            break;
        }
        size += strlen(name) + 1 + (val ? len : 0) + 1;
    }
    struct kafka_record *r = xmalloc(size);
    memset(r, 0, sizeof *r);
    struct kafka_header *headers = (struct kafka_header *)(r + 1);
    char *at = (char *)(headers + n);
    r->topic = at;
    memcpy(at, topic, topic_len + 1);
    at += topic_len + 1;
    r->partition = m->partition;
    r->offset = m->offset;
    r->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    if (m->key != NULL) {
        r->key = at;
        memcpy(at, m->key, key_len);
        at[key_len] = '\0';
        at += key_len + 1;
        r->key_len = key_len;
    }
    r->value = at;
    if (value_len > 0) {
        memcpy(at, m->payload, value_len);
    }
    at[value_len] = '\0';
    at += value_len + 1;
    r->value_len = value_len;
    r->headers = headers;
    for (size_t i = 0; i < n_ok; i++) {
        if (rd_kafka_header_get_all(hdrs, i, &name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            break; /* not after it answered the same index above */
        }
        size_t name_len = strlen(name), val_len = val ? len : 0;
        headers[i].name = at;
        memcpy(at, name, name_len + 1);
        at += name_len + 1;
        headers[i].value = at;
        if (val_len > 0) {
            memcpy(at, val, val_len);
        }
        at[val_len] = '\0';
        at += val_len + 1;
        headers[i].len = val_len;
        r->n_headers++;
    }
    return r;
}

int kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms, struct kafka_record **out)
{
    *out = NULL;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (m == NULL) {
        return 0;
    }
    if (m->err) {
        bool is_eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        if (!is_eof) {
            log_warn("kafka consume %s: %s", c->topic, rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
        return is_eof ? 0 : -1;
    }
    *out = record_copy(m);
    rd_kafka_message_destroy(m);
    return 1;
}

void kafka_consumer_set_deadline(struct kafka_consumer *c, long long by_ms)
{
    c->wait_by_ms = by_ms;
}

void kafka_consumer_on_commit_failed(struct kafka_consumer *c, kafka_commit_failed_fn fn)
{
    c->on_commit_failed = fn;
}

/* A synchronous commit with a bound: the request goes out asynchronously with its result sent
 * to a queue of our own, which is waited on until the time-out (librdkafka's synchronous commit
 * has none). A commit abandoned at the time-out may still land later; it is only a commit. */
static rd_kafka_resp_err_t commit_sync_bounded(struct kafka_consumer *c,
                                               rd_kafka_topic_partition_list_t *l)
{
    long long now = app_now_ms();
    long long until = now + KAFKA_SYNC_COMMIT_TIMEOUT_MS;
    if (c->wait_by_ms > 0 && c->wait_by_ms < until) {
        until = c->wait_by_ms;
    }
    if (until <= now) {
        return RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_resp_err_t e = rd_kafka_commit_queue(c->rk, l, q, NULL, NULL);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        e = RD_KAFKA_RESP_ERR__TIMED_OUT;
        while ((now = app_now_ms()) < until) {
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)(until - now));
            if (ev == NULL) {
                continue;
            }
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
                e = rd_kafka_event_error(ev);
                const rd_kafka_topic_partition_list_t *res =
                    rd_kafka_event_topic_partition_list(ev);
                for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && res && i < res->cnt; i++) {
                    e = res->elems[i].err;
                }
                rd_kafka_event_destroy(ev);
                break;
            }
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    return e;
}

int kafka_consumer_commit(struct kafka_consumer *c, int32_t partition, int64_t next_offset,
                          bool is_sync)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t e = is_sync ? commit_sync_bounded(c, l) : rd_kafka_commit(c->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("kafka commit %s[%d]@%lld: %s", c->topic, (int)partition, (long long)next_offset,
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static int pause_resume(struct kafka_consumer *c, int32_t partition, bool is_pause)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (partition < 0) {
        if (rd_kafka_assignment(c->rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            return -1;
        }
    } else {
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, c->topic, partition);
    }
    rd_kafka_resp_err_t e =
        is_pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

void kafka_consumer_wake(struct kafka_consumer *c)
{
    rd_kafka_queue_yield(c->queue);
}

int kafka_consumer_seek(struct kafka_consumer *c, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 2000);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != NULL) {
        log_warn("kafka seek %s[%d]@%lld: %s", c->topic, (int)partition, (long long)offset,
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    return 0;
}

int kafka_consumer_pause(struct kafka_consumer *c, int32_t partition)
{
    return pause_resume(c, partition, true);
}

int kafka_consumer_resume(struct kafka_consumer *c, int32_t partition)
{
    return pause_resume(c, partition, false);
}

int64_t kafka_consumer_high_watermark(struct kafka_consumer *c, int32_t partition)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(c->rk, c->topic, partition, &lo, &hi) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        return -1;
    }
    return hi;
}

int kafka_consumer_query_watermarks(struct kafka_consumer *c, int32_t partition, int timeout_ms,
                                    int64_t *low, int64_t *high)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_query_watermark_offsets(c->rk, c->topic, partition, &lo, &hi, timeout_ms) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        return -1;
    }
    *low = lo;
    *high = hi;
    return 0;
}

int kafka_consumer_committed(struct kafka_consumer *c, const int32_t *partitions, size_t n,
                             int timeout_ms, int64_t *offsets)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_partition_list_add(l, c->topic, partitions[i]);
    }
    rd_kafka_resp_err_t e = rd_kafka_committed(c->rk, l, timeout_ms);
    for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++) {
        e = l->elems[i].err;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("kafka committed offsets of %s: %s", c->topic, rd_kafka_err2str(e));
    } else {
        for (size_t i = 0; i < n; i++) {
            const rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_find(l, c->topic, partitions[i]);
            offsets[i] = tp && tp->offset >= 0 ? tp->offset : -1;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

void kafka_consumer_close(struct kafka_consumer *c, long timeout_ms)
{
    if (c == NULL) {
        return;
    }
    long long now = app_now_ms();
    long long by = now + (timeout_ms > 0 ? timeout_ms : 1);
    if (c->wait_by_ms == 0 || by < c->wait_by_ms) {
        c->wait_by_ms = by;
    }
    /* Closing in the background while we serve its queue (the revocation callback runs here)
     * until it is done or the time is up; librdkafka's own close waits up to the session
     * time-out for a coordinator that may be gone. */
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, q);
    bool is_closed = false;
    if (e != NULL) {
        log_warn("kafka consumer %s: close: %s", c->topic, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        /* Served as events (a callback-serving poll of this queue trips an assertion in
         * librdkafka 2.0 on ops it passes on): the revocation is handled as on_rebalance would
         * (the owner commits, then the assignment is given up); anything else is dropped. */
        while (!(is_closed = rd_kafka_consumer_closed(c->rk)) &&
               (now = app_now_ms()) < c->wait_by_ms) {
            long long left = c->wait_by_ms - now;
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, left < 100 ? (int)left : 100);
            if (ev == NULL) {
                continue;
            }
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
                on_rebalance(c->rk, rd_kafka_event_error(ev),
                             rd_kafka_event_topic_partition_list(ev), c);
            }
            rd_kafka_event_destroy(ev);
        }
    }
    if (!is_closed) {
        /* Destroying a consumer whose close is under way waits for it (and for a revocation
         * nobody serves any more): no bound. The handle is left behind instead, idle (nobody
         * polls it, so no callback runs); its threads end with the process, and the broker
         * drops the member after its session time-out. Only when the broker is unreachable at
         * a stop, which then is almost always the end of the process. */
        log_warn("kafka consumer %s: not closed in time, left behind (the broker drops the "
                 "member after its session time-out)",
                 c->topic);
        c->close_queue = q; /* still referenced: left behind with the handle, not leaked */
        return;
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_queue_destroy(c->queue);
    rd_kafka_destroy(c->rk);
    free(c->topic);
    free(c);
}

void kafka_consumer_free(struct kafka_consumer *c)
{
    kafka_consumer_close(c, KAFKA_SYNC_COMMIT_TIMEOUT_MS + 5000);
}

/* ---- one-off tail reader (no group) ------------------------------------------------------- */

int kafka_read_tail(const char *bootstrap, json_t *props, const char *topic, int64_t per_partition,
                    int timeout_ms, kafka_record_fn fn, void *opaque, json_t **ends, char *err,
                    size_t err_len)
{
    char errstr[512];
    int rc = -1;
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    int64_t *his = NULL, *pos = NULL;
    json_t *parts = json_array();
    /* Never joins the group (assign, no subscribe) and never commits: group.id only satisfies
     * librdkafka's consumer set-up. */
    static const char *const defaults[][2] = {
        {"group.id", "bus.tail-reader"},
        {"enable.auto.commit", "false"},
        {"enable.partition.eof", "false"},
        {"fetch.wait.max.ms", "100"},
    };
    rd_kafka_conf_t *conf =
        kafka_conf_new("kafka reader", bootstrap, defaults, sizeof defaults / sizeof defaults[0],
                       props, err, err_len);
    if (conf == NULL) {
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        snprintf(err, err_len, "kafka reader: %s", errstr);
        goto out;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, err_len, "topic %s: %s", topic,
                 rd_kafka_err2str(e               ? e
                                  : md->topic_cnt ? md->topics[0].err
                                                  : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        goto out;
    }
    int n = md->topics[0].partition_cnt;
    his = xcalloc((size_t)n + 1, sizeof *his);
    pos = xcalloc((size_t)n + 1, sizeof *pos);
    assign = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int i = 0; i < n; i++) {
        int32_t id = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, err_len, "topic %s[%d] offsets: %s", topic, (int)id, rd_kafka_err2str(e));
            goto out;
        }
        json_array_append_new(parts, json_pack("{s:i, s:I, s:I}", "partition", (int)id, "start",
                                               (json_int_t)lo, "end", (json_int_t)hi));
        int64_t from = hi - per_partition > lo ? hi - per_partition : lo;
        his[i] = hi;
        pos[i] = from;
        if (per_partition > 0 && from < hi) {
            rd_kafka_topic_partition_list_add(assign, topic, id)->offset = from;
        }
    }
    if (assign->cnt > 0) {
        e = rd_kafka_assign(rk, assign);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, err_len, "topic %s: assign: %s", topic, rd_kafka_err2str(e));
            goto out;
        }
    }
    long long deadline = app_now_ms() + timeout_ms;
    for (;;) {
        bool is_done = true;
        for (int i = 0; i < n; i++) {
            if (pos[i] < his[i] && per_partition > 0) {
                is_done = false;
            }
        }
        if (is_done) {
            break;
        }
        long long left = deadline - app_now_ms();
        if (left <= 0) {
            snprintf(err, err_len, "topic %s: reading timed out", topic);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left > 200 ? 200 : (int)left);
        if (m == NULL) {
            continue;
        }
        int i = 0;
        while (i < n && md->topics[0].partitions[i].id != m->partition) {
            i++;
        }
        /* Records that arrived after the watermarks were read are left for the next call: the
         * reader stays bounded by per_partition. */
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && i < n && m->offset < his[i]) {
            if (m->offset + 1 > pos[i]) {
                pos[i] = m->offset + 1;
            }
            fn(opaque, record_copy(m));
        }
        rd_kafka_message_destroy(m);
    }
    rc = 0;
out:
    if (rc == 0 && ends != NULL) {
        *ends = json_incref(parts);
    }
    json_decref(parts);
    if (assign != NULL) {
        rd_kafka_topic_partition_list_destroy(assign);
    }
    free(his);
    free(pos);
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf != NULL) {
        rd_kafka_conf_destroy(conf);
    }
    return rc;
}
