/* kafka_txn.c - the transactional producer (see kafka_txn.h). */
#include "kafka/kafka_txn.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "kafka/kafka_conf.h"
#include "log.h"

/* librdkafka issue 5456: rd_kafka_send_offsets_to_transaction() ignores its time-out while the
 * group coordinator cannot be reached (its request is only tried again when a broker changes
 * state) and waits until the coordinator is back. So the call runs on the producer's helper
 * thread, and the caller waits at most its time-out plus OFFSETS_GRACE_MS. A call still running
 * then gives the producer up: kafka_txn_commit answers FATAL, and kafka_txn_free hands the
 * producer to its helper, which destroys it once librdkafka returns. */
#define OFFSETS_GRACE_MS 1000

enum helper_state { H_IDLE, H_CALL, H_DONE, H_EXIT };

struct kafka_txn {
    rd_kafka_t *rk;
    pthread_t helper;
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;  /* state changed (CLOCK_MONOTONIC) */
    enum helper_state state;
    bool is_stuck;  /* a call outlived its wait: the producer is given up */
    bool is_orphan; /* freed while stuck: the helper frees it when the call returns */
    /* the call: set with H_CALL by the caller, the result with H_DONE by the helper */
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_consumer_group_metadata_t *meta;
    int timeout_ms;
    rd_kafka_error_t *result;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Frees t, its producer (what is queued dropped) and what a given-up call left. */
static void txn_destroy(struct kafka_txn *t)
{
    rd_kafka_purge(t->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(t->rk);
    if (t->offsets) {
        rd_kafka_topic_partition_list_destroy(t->offsets);
    }
    if (t->meta) {
        rd_kafka_consumer_group_metadata_destroy(t->meta);
    }
    if (t->result) {
        rd_kafka_error_destroy(t->result);
    }
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static void *helper_main(void *arg)
{
    struct kafka_txn *t = arg;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (t->state != H_CALL && t->state != H_EXIT) {
            pthread_cond_wait(&t->cond, &t->lock);
        }
        if (t->state == H_EXIT) {
            break;
        }
        pthread_mutex_unlock(&t->lock);
        rd_kafka_error_t *e =
            rd_kafka_send_offsets_to_transaction(t->rk, t->offsets, t->meta, t->timeout_ms);
        pthread_mutex_lock(&t->lock);
        t->result = e;
        if (t->is_orphan) {
            pthread_mutex_unlock(&t->lock);
            log_info("kafka transactional producer: a given-up call returned; producer freed");
            txn_destroy(t);
            return NULL;
        }
        t->state = H_DONE;
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* rd_kafka_send_offsets_to_transaction() on the helper, waited for up to timeout_ms +
 * OFFSETS_GRACE_MS. Takes l and meta. NULL when done, its error, or with *is_stuck set (the
 * producer is given up) when the call still runs. */
static rd_kafka_error_t *send_offsets(struct kafka_txn *t, rd_kafka_topic_partition_list_t *l,
                                      rd_kafka_consumer_group_metadata_t *meta, int timeout_ms,
                                      bool *is_stuck)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + (long long)(timeout_ms + OFFSETS_GRACE_MS) * 1000000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&t->lock);
    t->offsets = l;
    t->meta = meta;
    t->timeout_ms = timeout_ms;
    t->state = H_CALL;
    pthread_cond_broadcast(&t->cond);
    while (t->state == H_CALL) {
        if (pthread_cond_timedwait(&t->cond, &t->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    rd_kafka_error_t *e = NULL;
    if (t->state == H_CALL) {
        t->is_stuck = *is_stuck = true; /* l and meta stay with t */
    } else {
        e = t->result;
        t->result = NULL;
        t->offsets = NULL;
        t->meta = NULL;
        t->state = H_IDLE;
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_consumer_group_metadata_destroy(meta);
    }
    pthread_mutex_unlock(&t->lock);
    return e;
}

/* Takes e: 0 when NULL, else -1 with its text in err. */
static int take_error(rd_kafka_error_t *e, const char *what, char *err, size_t err_len)
{
    if (e == NULL) {
        return 0;
    }
    snprintf(err, err_len, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -1;
}

struct kafka_txn *kafka_txn_new(const char *bootstrap, json_t *props, const char *transactional_id,
                                int timeout_ms, char *err, size_t err_len)
{
    const char *const defaults[][2] = {
        {"transactional.id", transactional_id},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        /* A transaction left open by a crash holds read_committed consumers back until the same
         * transactional.id starts again or this time-out aborts it. */
        {"transaction.timeout.ms", "10000"},
        {"message.timeout.ms", "10000"},
        {"reconnect.backoff.max.ms", "500"},
        {"socket.keepalive.enable", "true"},
    };
    rd_kafka_conf_t *conf =
        kafka_conf_new("kafka transactional producer", bootstrap, defaults,
                       sizeof defaults / sizeof defaults[0], props, err, err_len);
    if (conf == NULL) {
        return NULL;
    }
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        snprintf(err, err_len, "kafka transactional producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (take_error(rd_kafka_init_transactions(rk, timeout_ms), "init transactions", err, err_len) !=
        0) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    struct kafka_txn *t = xcalloc(1, sizeof *t);
    t->rk = rk;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->lock, NULL);
    if (pthread_create(&t->helper, NULL, helper_main, t) != 0) {
        snprintf(err, err_len, "kafka transactional producer: cannot start its helper thread");
        txn_destroy(t);
        return NULL;
    }
    return t;
}

int kafka_txn_begin(struct kafka_txn *t, char *err, size_t err_len)
{
    if (t->is_stuck) {
        snprintf(err, err_len, "begin transaction: the producer was given up");
        return -1;
    }
    rd_kafka_poll(t->rk, 0); /* serves the handle's own events (errors, logs) */
    return take_error(rd_kafka_begin_transaction(t->rk), "begin transaction", err, err_len);
}

int kafka_txn_send(struct kafka_txn *t, const char *topic, const void *key, size_t key_len,
                   const void *value, size_t value_len, const struct kafka_header *headers,
                   size_t n_headers, char *err, size_t err_len)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(n_headers);
    for (size_t i = 0; i < n_headers; i++) {
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value, (ssize_t)headers[i].len);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        t->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs); /* still ours on failure */
        snprintf(err, err_len, "produce to %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

enum kafka_txn_outcome kafka_txn_abort(struct kafka_txn *t, int timeout_ms, char *err,
                                       size_t err_len)
{
    if (t->is_stuck) {
        snprintf(err, err_len, "abort: the producer was given up");
        return KAFKA_TXN_FATAL;
    }
    long long until = mono_ms() + timeout_ms;
    for (;;) {
        long left = (long)(until - mono_ms());
        rd_kafka_error_t *e = rd_kafka_abort_transaction(t->rk, left > 0 ? (int)left : 0);
        if (e == NULL) {
            return KAFKA_TXN_ABORTED;
        }
        bool is_again = rd_kafka_error_is_retriable(e) && mono_ms() < until;
        snprintf(err, err_len, "abort: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!is_again) {
            return KAFKA_TXN_FATAL;
        }
    }
}

/* After the failed call `what` (e, taken): FATAL when e is fatal; otherwise the transaction is
 * aborted: ABORTED, or FATAL when the abort fails too. err says why. */
static enum kafka_txn_outcome fail(struct kafka_txn *t, rd_kafka_error_t *e, const char *what,
                                   long long until, char *err, size_t err_len)
{
    bool is_fatal = rd_kafka_error_is_fatal(e);
    snprintf(err, err_len, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    if (is_fatal) {
        return KAFKA_TXN_FATAL;
    }
    char aerr[256];
    long left = (long)(until - mono_ms());
    /* the abort gets at least a second even when the commit used the whole time-out */
    if (kafka_txn_abort(t, left > 1000 ? (int)left : 1000, aerr, sizeof aerr) !=
        KAFKA_TXN_ABORTED) {
        size_t len = strlen(err);
        snprintf(err + len, err_len - len, "; %s", aerr);
        return KAFKA_TXN_FATAL;
    }
    return KAFKA_TXN_ABORTED;
}

/* Commits (or resumes the commit of) the open transaction, trying again until `until` while
 * librdkafka says the failure is retriable; still unanswered then: PENDING. */
static enum kafka_txn_outcome commit_by(struct kafka_txn *t, long long until, char *err,
                                        size_t err_len)
{
    rd_kafka_error_t *e;
    for (;;) {
        long left = (long)(until - mono_ms());
        e = rd_kafka_commit_transaction(t->rk, left > 0 ? (int)left : 0);
        if (e == NULL || !rd_kafka_error_is_retriable(e) || mono_ms() >= until) {
            break;
        }
        rd_kafka_error_destroy(e);
    }
    if (e == NULL) {
        return KAFKA_TXN_COMMITTED;
    }
    if (rd_kafka_error_is_retriable(e)) {
        /* sent and not answered yet: an abort now would be refused ("Conflicting
         * commit_transaction API call is already in progress") */
        snprintf(err, err_len, "commit: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return KAFKA_TXN_PENDING;
    }
    return fail(t, e, "commit", until, err, err_len);
}

enum kafka_txn_outcome kafka_txn_commit(struct kafka_txn *t, struct kafka_consumer *c,
                                        const int32_t *partitions, const int64_t *offsets, size_t n,
                                        int timeout_ms, char *err, size_t err_len)
{
    long long until = mono_ms() + timeout_ms;
    if (n > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_topic_partition_list_add(l, kafka_consumer_topic(c), partitions[i])->offset =
                offsets[i];
        }
        rd_kafka_error_t *e;
        for (;;) {
            long left = (long)(until - mono_ms());
            bool is_stuck = false;
            e = send_offsets(t, rd_kafka_topic_partition_list_copy(l),
                             rd_kafka_consumer_group_metadata(kafka_consumer_rk(c)),
                             left > 0 ? (int)left : 0, &is_stuck);
            if (is_stuck) {
                rd_kafka_topic_partition_list_destroy(l);
                snprintf(err, err_len,
                         "send offsets: no answer within %d ms (the group coordinator is away)",
                         timeout_ms);
                return KAFKA_TXN_FATAL; /* librdkafka still runs it: free the producer */
            }
            if (e == NULL || !rd_kafka_error_is_retriable(e) || mono_ms() >= until) {
                break;
            }
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
        if (e != NULL) {
            return fail(t, e, "send offsets", until, err, err_len);
        }
    }
    return commit_by(t, until, err, err_len);
}

enum kafka_txn_outcome kafka_txn_resume(struct kafka_txn *t, int timeout_ms, char *err,
                                        size_t err_len)
{
    if (t->is_stuck) {
        snprintf(err, err_len, "commit: the producer was given up");
        return KAFKA_TXN_FATAL;
    }
    return commit_by(t, mono_ms() + timeout_ms, err, err_len);
}

void kafka_txn_free(struct kafka_txn *t)
{
    if (t == NULL) {
        return;
    }
    pthread_t helper = t->helper;
    pthread_mutex_lock(&t->lock);
    if (t->state == H_CALL) {
        t->is_orphan = true; /* the helper frees it when librdkafka returns */
        pthread_mutex_unlock(&t->lock);
        pthread_detach(helper);
        return;
    }
    t->state = H_EXIT;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(helper, NULL);
    txn_destroy(t);
}
