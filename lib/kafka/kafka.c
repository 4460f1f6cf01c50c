/* kafka.c - the Kafka producer over librdkafka (see kafka.h).
 *
 * One rd_kafka_t per producer, configured idempotent (enable.idempotence=true implies acks=all
 * and retries without reordering or duplicates), with a short linger so concurrent requests
 * share batches, a bound on the local queue, and a message time-out so that a dead broker
 * turns into a failed delivery report instead of a request that hangs. A dedicated thread
 * polls delivery reports and runs the callers' callbacks. librdkafka's own log lines go to
 * log.h. */
#include "kafka/kafka.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "kafka/kafka_conf.h"
#include "log.h"

/* A delivery failure younger than this makes the producer unhealthy (kafka_producer_health) until
 * a delivery succeeds: long enough to be seen by a probe, short enough that a probe that took
 * the process out of a load balancer lets traffic in again to find out. */
#define KAFKA_FAILURE_MEMORY_MS 10000

struct kafka_producer {
    /* The librdkafka handle. Replaced by a fresh one when it fails fatally (an idempotent
     * producer that lost track of its sequence numbers never produces again): senders take the
     * read side of `swap`, the delivery thread the write side to replace it. */
    rd_kafka_t *rk;
    pthread_rwlock_t swap;
    rd_kafka_conf_t *conf; /* a copy of the configuration, for the fresh handle */
    atomic_bool is_fatal;  /* set by the error callback, handled by the delivery thread */
    atomic_llong last_ok_ms, last_fail_ms; /* monotonic times of the last delivery reports */
    atomic_int last_fail_err;
    atomic_int n_fresh; /* handles replaced so far */
    pthread_t poll_thread;
    atomic_bool stop; /* shared: set by kafka_producer_free, read by the poll thread */
    /* Sweep hooks (kafka_producer_set_sweep); set by the owner, read by the poll thread. */
    _Atomic(void (*)(void)) sweep_begin;
    _Atomic(void (*)(void)) sweep_end;
};

/* What a queued record carries to its delivery report. */
struct kafka_pending {
    kafka_delivery_fn cb;
    void *opaque;
};

static int map_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return KAFKA_OK;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return KAFKA_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return KAFKA_UNKNOWN_TOPIC;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return KAFKA_TOO_LARGE;
    default:
        return KAFKA_ERROR;
    }
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_producer *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
        log_error("kafka fatal error %s: %s (starting a fresh producer)", rd_kafka_err2name(orig),
                  why);
        if (p) {
            atomic_store(&p->is_fatal, true);
        }
        return;
    }
    /* Transport errors repeat while a broker is down; they are warnings, the delivery
     * reports carry the consequences. */
    log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* mono_ms() for the delivery reports' bookkeeping: the coarse clock (a tick, 1-4 ms, is
 * plenty against KAFKA_FAILURE_MEMORY_MS), read without a clock_gettime per report. */
static long long mono_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct kafka_producer *prod = opaque;
    if (prod && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Stored only when it moved: the readers (health probes) share its cache line. */
        long long now = mono_coarse_ms();
        if (atomic_load_explicit(&prod->last_ok_ms, memory_order_relaxed) != now) {
            atomic_store(&prod->last_ok_ms, now);
        }
    } else if (prod && m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
               m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        atomic_store(&prod->last_fail_err, (int)m->err);
        atomic_store(&prod->last_fail_ms, mono_coarse_ms());
    }
    struct kafka_pending *p = m->_private;
    if (p == NULL) {
        return;
    }
    int status = map_err(m->err);
    p->cb(p->opaque, status, m->err ? rd_kafka_err2str(m->err) : NULL, m->partition, m->offset);
    free(p);
}

/* On the delivery thread: replaces a handle that failed fatally with a fresh one (new producer
 * id, sequences from 0). What the old one still held is failed now (its callers answer 503 and
 * their clients retry); sends in between get an error at once. */
static void renew(struct kafka_producer *p)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(p->conf);
    rd_kafka_t *fresh = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (fresh == NULL) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka: cannot start a fresh producer: %s (trying again)", errstr);
        return;
    }
    pthread_rwlock_wrlock(&p->swap);
    rd_kafka_t *old = p->rk;
    p->rk = fresh;
    atomic_store(&p->is_fatal, false);
    pthread_rwlock_unlock(&p->swap);
    rd_kafka_purge(old, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(old, 1000); /* runs the purged records' delivery reports */
    rd_kafka_destroy(old);
    atomic_fetch_add(&p->n_fresh, 1);
    log_warn("kafka: a fresh producer replaces the one that failed fatally");
}

static void *poll_main(void *arg)
{
    struct kafka_producer *p = arg;
    while (!atomic_load(&p->stop)) {
        if (atomic_load(&p->is_fatal)) {
            renew(p);
        }
        /* Both hooks or neither: the owner sets them one after the other while this thread
         * runs, and a begin without its end would leave the sweep open for good. */
        void (*begin)(void) = atomic_load(&p->sweep_begin);
        void (*end)(void) = atomic_load(&p->sweep_end);
        bool is_sweep = begin != NULL && end != NULL;
        if (is_sweep) {
            begin();
        }
        rd_kafka_poll(p->rk, 100);
        if (is_sweep) {
            end();
        }
    }
    return NULL;
}

void kafka_producer_set_sweep(struct kafka_producer *p, void (*begin)(void), void (*end)(void))
{
    atomic_store(&p->sweep_begin, begin);
    atomic_store(&p->sweep_end, end);
}

struct kafka_producer *kafka_producer_new(const char *bootstrap, json_t *props,
                                          unsigned max_queue_messages, char *err, size_t err_len)
{
    char errstr[512];
    char num[32];
    struct kafka_producer *p = NULL;

    snprintf(num, sizeof num, "%u", max_queue_messages ? max_queue_messages : 100000u);
    /* Our defaults first; the caller's props may override any of them. */
    const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"message.timeout.ms", "10000"},
        /* A record's time-out is checked when its broker's thread wakes up, and while the
         * broker is down that thread sleeps its reconnect back-off, up to 10 s by default:
         * records waited up to 10 s past message.timeout.ms (issue 21). */
        {"reconnect.backoff.max.ms", "500"},
        {"queue.buffering.max.messages", num},
        {"socket.keepalive.enable", "true"},
    };
    rd_kafka_conf_t *conf = kafka_conf_new(
        "kafka", bootstrap, defaults, sizeof defaults / sizeof defaults[0], props, err, err_len);
    if (conf == NULL) {
        goto fail;
    }
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);

    p = xcalloc(1, sizeof *p);
    atomic_init(&p->stop, false);
    atomic_init(&p->is_fatal, false);
    atomic_init(&p->last_ok_ms, 0);
    atomic_init(&p->last_fail_ms, 0);
    atomic_init(&p->last_fail_err, 0);
    atomic_init(&p->n_fresh, 0);
    atomic_init(&p->sweep_begin, NULL);
    atomic_init(&p->sweep_end, NULL);
    pthread_rwlock_init(&p->swap, NULL);
    rd_kafka_conf_set_opaque(conf, p);
    p->conf = rd_kafka_conf_dup(conf);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->rk == NULL) {
        snprintf(err, err_len, "kafka producer: %s", errstr);
        goto fail; /* conf is still ours */
    }
    conf = NULL; /* owned by rk now */
    if (pthread_create(&p->poll_thread, NULL, poll_main, p) != 0) {
        snprintf(err, err_len, "kafka producer: cannot start the delivery thread");
        rd_kafka_destroy(p->rk);
        goto fail;
    }
    return p;
fail:
    if (conf != NULL) {
        rd_kafka_conf_destroy(conf);
    }
    if (p != NULL) {
        if (p->conf != NULL) {
            rd_kafka_conf_destroy(p->conf);
        }
        pthread_rwlock_destroy(&p->swap);
    }
    free(p);
    return NULL;
}

/* msgflags: RD_KAFKA_MSG_F_COPY, or 0 (the payload is borrowed until the delivery report). */
static int producer_send(struct kafka_producer *p, const char *topic, int32_t partition,
                         const void *key, size_t key_len, const void *value, size_t value_len,
                         const struct kafka_header *headers, size_t n_headers, kafka_delivery_fn cb,
                         void *opaque, int msgflags)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(n_headers);
    for (size_t i = 0; i < n_headers; i++) {
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value, (ssize_t)headers[i].len);
    }
    struct kafka_pending *pend = xmalloc(sizeof *pend);
    pend->cb = cb;
    pend->opaque = opaque;
    pthread_rwlock_rdlock(&p->swap);
    rd_kafka_resp_err_t err =
        rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_MSGFLAGS(msgflags), RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(pend), RD_KAFKA_V_END);
    pthread_rwlock_unlock(&p->swap);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* On failure the headers stay ours. */
        rd_kafka_headers_destroy(hdrs);
        free(pend);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            log_warn("kafka produce to %s: %s", topic, rd_kafka_err2str(err));
        }
        return map_err(err) == KAFKA_OK ? KAFKA_ERROR : map_err(err);
    }
    return KAFKA_OK;
}

int kafka_producer_send(struct kafka_producer *p, const char *topic, int32_t partition,
                        const void *key, size_t key_len, const void *value, size_t value_len,
                        const struct kafka_header *headers, size_t n_headers, kafka_delivery_fn cb,
                        void *opaque)
{
    return producer_send(p, topic, partition, key, key_len, value, value_len, headers, n_headers,
                         cb, opaque, RD_KAFKA_MSG_F_COPY);
}

int kafka_producer_send_borrowed(struct kafka_producer *p, const char *topic, int32_t partition,
                                 const void *key, size_t key_len, const void *value,
                                 size_t value_len, const struct kafka_header *headers,
                                 size_t n_headers, kafka_delivery_fn cb, void *opaque)
{
    return producer_send(p, topic, partition, key, key_len, value, value_len, headers, n_headers,
                         cb, opaque, 0);
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms)
{
    /* rd_kafka_flush polls too; delivery callbacks may then also run on this thread, which
     * the callers' callbacks tolerate (they only must not block). */
    pthread_rwlock_rdlock(&p->swap);
    rd_kafka_flush(p->rk, timeout_ms);
    int n = rd_kafka_outq_len(p->rk);
    pthread_rwlock_unlock(&p->swap);
    return n;
}

int kafka_producer_outstanding(struct kafka_producer *p)
{
    pthread_rwlock_rdlock(&p->swap);
    int n = rd_kafka_outq_len(p->rk);
    pthread_rwlock_unlock(&p->swap);
    return n;
}

int kafka_producer_is_connected(struct kafka_producer *p)
{
    /* A metadata request for no topic answers only when a broker is reachable. */
    const struct rd_kafka_metadata *md = NULL;
    pthread_rwlock_rdlock(&p->swap);
    rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, NULL, &md, 1000);
    pthread_rwlock_unlock(&p->swap);
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

int kafka_producer_health(struct kafka_producer *p, const char **reason)
{
    if (atomic_load(&p->is_fatal)) {
        *reason = "Kafka producer failed fatally; a fresh one is starting";
        return -1;
    }
    long long ok = atomic_load(&p->last_ok_ms);
    long long fail = atomic_load(&p->last_fail_ms);
    if (fail > ok && mono_ms() - fail < KAFKA_FAILURE_MEMORY_MS) {
        int e = atomic_load(&p->last_fail_err);
        *reason = e == RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR
                      ? "Kafka deliveries failing: the broker cannot write (disk full?)"
                      : "Kafka deliveries failing";
        return -1;
    }
    return 0;
}

int kafka_producer_renewals(struct kafka_producer *p)
{
    return atomic_load(&p->n_fresh);
}

void kafka_producer_free(struct kafka_producer *p, int timeout_ms)
{
    if (p == NULL) {
        return;
    }
    int left = kafka_producer_flush(p, timeout_ms);
    if (left > 0) {
        log_warn("kafka producer: %d records undelivered at shutdown", left);
        /* Fail them now so every callback still runs exactly once. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000);
    }
    atomic_store(&p->stop, true);
    pthread_join(p->poll_thread, NULL);
    rd_kafka_poll(p->rk, 0);
    rd_kafka_destroy(p->rk);
    rd_kafka_conf_destroy(p->conf);
    pthread_rwlock_destroy(&p->swap);
    free(p);
}
