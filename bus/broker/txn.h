/* txn.h - the transaction coordinator (KIP-98) and what partitions need of it: the last stable
 * offset and the aborted transactions that read_committed fetches are told about.
 *
 * Threading: the event-loop thread only, like the rest of the broker. */
#ifndef BROKER_TXN_H
#define BROKER_TXN_H

#include <stdint.h>

struct broker;
struct reply;
struct kr;
struct kw;
struct kstr;
struct partition;

/* Loads data_dir/txn.state and finishes the transactions a crash left half-ended (markers
 * written again). Returns NULL with err filled when the file cannot be read or made. */
struct txns *txns_new(struct broker *b, char *err, size_t err_len);
void txns_free(struct txns *t);
/* Aborts transactions past their time-out; retries markers a failed write left. Called on
 * every loop pass (at least every 100 ms). */
void txns_tick(struct broker *b, long long now_ms);

/* InitProducerId with a transactional id: answers into r->w (throttle, error, pid, epoch). */
int txn_init_producer_id(struct broker *b, struct reply *r, struct kstr id, int32_t timeout_ms);
/* Whether a Produce of one partition's records may go in: transactional batches only with the
 * transactional id of an ongoing transaction that holds the partition (with its producer id
 * and epoch), never a control batch, never a transactional batch without an id. Returns 0 or a
 * Kafka error code. */
int txn_check_produce(struct broker *b, struct reply *r, struct kstr id, const uint8_t *rec,
                      int32_t len, const char *topic, int32_t part);
/* The partition's last stable offset: the first offset of its oldest open transaction, else
 * its log end. */
int64_t txn_lso(struct broker *b, const struct partition *p);
/* Writes Fetch's aborted_transactions array for read_committed: the aborted transactions of p
 * that overlap [from, to). */
void txn_write_aborted(struct broker *b, struct kw *w, const struct partition *p, int64_t from,
                       int64_t to);

/* The offsets of group that transactions hold and have not applied yet, and will: those of one
 * ongoing (TxnOffsetCommit done, EndTxn not yet), or committing with its offsets not yet
 * written. OffsetFetch v7 with require_stable answers such a partition UNSTABLE_OFFSET_COMMIT
 * (KIP-447). An aborting transaction's offsets never apply: not pending. Gathered once per
 * request (NULL: none), so that a request listing many partitions costs one pass over the
 * transactions, not one per partition; valid until the transactions change (free it before
 * the request's handler returns). */
struct txn_pending;
struct txn_pending *txn_pending_of_group(struct broker *b, const char *group);
/* Whether tp (may be NULL) holds an offset of (topic, part); each hit is counted in
 * bus_broker_unstable_offsets_total (the caller answers it UNSTABLE_OFFSET_COMMIT). */
int txn_pending_has(const struct txn_pending *tp, const char *topic, int32_t part);
void txn_pending_free(struct txn_pending *tp);

int handle_add_partitions_to_txn(struct broker *b, struct reply *r, struct kr *q);
int handle_add_offsets_to_txn(struct broker *b, struct reply *r, struct kr *q);
int handle_end_txn(struct broker *b, struct reply *r, struct kr *q);
int handle_txn_offset_commit(struct broker *b, struct reply *r, struct kr *q);

#endif
