/* kafka_txn.h - a transactional producer (KIP-98) for consume-transform-produce: records sent
 * between kafka_txn_begin() and kafka_txn_commit() become visible to read_committed consumers
 * together with the consumer's input offsets, or not at all.
 *
 * Zombie fencing: kafka_txn_new() runs InitTransactions, which fences any earlier producer with
 * the same transactional.id and aborts the transaction it left open; the input offsets are sent
 * with the consumer's group metadata (KIP-447), so a consumer that lost its partitions in a
 * rebalance cannot commit them. One transactional.id per process (not per partition) is enough.
 * Every call blocks the calling thread up to its time-out; the producer is used from one thread. */
#ifndef KAFKA_TXN_H
#define KAFKA_TXN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kafka/kafka.h"
#include "kafka/kafka_consumer.h"

struct kafka_txn;

/* A producer with transactional.id = transactional_id (props: the "kafka.*" pass-through, which
 * may set transaction.timeout.ms; ours is 10 s), initialised within timeout_ms. NULL with err
 * filled when the broker cannot be reached or refuses. */
struct kafka_txn *kafka_txn_new(const char *bootstrap, json_t *props, const char *transactional_id,
                                int timeout_ms, char *err, size_t err_len);
/* 0, or -1 with err (then free the producer and make a new one). */
int kafka_txn_begin(struct kafka_txn *t, char *err, size_t err_len);
/* Queues one record of the open transaction (partition by key, as kafka_producer_send). 0, or -1
 * with err (the transaction must then be aborted: kafka_txn_abort). */
int kafka_txn_send(struct kafka_txn *t, const char *topic, const void *key, size_t key_len,
                   const void *value, size_t value_len, const struct kafka_header *headers,
                   size_t n_headers, char *err, size_t err_len);

enum kafka_txn_outcome {
    KAFKA_TXN_COMMITTED = 0,
    KAFKA_TXN_ABORTED = 1, /* aborted: the producer may begin again */
    KAFKA_TXN_FATAL = 2,   /* fenced, or the abort itself failed: free it, make a new one */
    KAFKA_TXN_PENDING = 3, /* the commit was sent and is not answered yet: kafka_txn_resume() */
};
/* Adds the n input offsets (partitions of c's topic, next offsets to read) with c's group
 * metadata and commits, within timeout_ms (retriable failures are tried again until then). On
 * failure aborts the transaction; err says why. PENDING: the commit went out and is not
 * answered yet; kafka_txn_resume() carries on with it (no other call until it ends). FATAL
 * after the commit went out leaves the outcome unknown: the commit may still land (librdkafka
 * or the broker finishes what was sent), so the owner reads the committed offsets back once a
 * new producer with the same transactional.id is ready (its InitTransactions ends the old
 * transaction one way or the other). The call returns within about timeout_ms + 1 s even while
 * the group coordinator is away (librdkafka issue 5456: the producer is then given up, FATAL). */
enum kafka_txn_outcome kafka_txn_commit(struct kafka_txn *t, struct kafka_consumer *c,
                                        const int32_t *partitions, const int64_t *offsets, size_t n,
                                        int timeout_ms, char *err, size_t err_len);
/* Carries on with a PENDING commit for up to timeout_ms: any outcome of kafka_txn_commit. */
enum kafka_txn_outcome kafka_txn_resume(struct kafka_txn *t, int timeout_ms, char *err,
                                        size_t err_len);
/* Aborts the open transaction: KAFKA_TXN_ABORTED or KAFKA_TXN_FATAL. */
enum kafka_txn_outcome kafka_txn_abort(struct kafka_txn *t, int timeout_ms, char *err,
                                       size_t err_len);
/* Drops whatever is queued and frees (a producer given up in a call librdkafka has not returned
 * from is freed by its helper thread when it does). NULL is a no-op. */
void kafka_txn_free(struct kafka_txn *t);

#endif
