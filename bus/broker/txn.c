/* txn.c - the transaction coordinator (KIP-98) of the one-node broker.
 *
 * A transactional id maps to a producer id and epoch. InitProducerId bumps the epoch (fencing
 * the previous holder) and aborts what that one left open; AddPartitionsToTxn and
 * AddOffsetsToTxn open a transaction (EMPTY/COMPLETE -> ONGOING); TxnOffsetCommit keeps the
 * consumer offsets aside until the commit; EndTxn moves it to PREPARE_COMMIT/PREPARE_ABORT
 * (persisted), writes a control batch (the marker) into every partition of the transaction,
 * applies the offsets on a commit, and ends in COMPLETE_COMMIT/COMPLETE_ABORT. A transaction
 * open longer than its time-out is aborted with the epoch bumped, so its producer is fenced.
 *
 * Partitions: a transaction's first offset in a partition is taken as the partition's log end
 * when the partition joined it (every batch of the transaction comes after it, and no other
 * transaction of the same producer does). The last stable offset (LSO) is the smallest first
 * offset of the open transactions; read_committed fetches read up to it and are told the aborted
 * transactions (producer id, first offset) that overlap what they read, so the client drops
 * their batches up to the abort marker. Control batch layout (protocol guide, "Control
 * Batches"): attributes transactional (0x10) | control (0x20), one record whose key is
 * i16 version (0) | i16 type (0 abort, 1 commit) and value i16 version (0) | i32 coordinator
 * epoch.
 *
 * State: data_dir/txn.state (JSON, written to a temporary file, fsynced unless fsync=never, and
 * renamed) holds every transactional id (producer id, epoch, time-out, state, partitions with
 * first offsets, groups, pending offsets) and every partition's aborted transactions (producer id,
 * first offset, marker offset) still above the log start. It is written before any answer
 * that depends on it: a partition joining a transaction, pending offsets, PREPARE before the
 * markers, COMPLETE after them. On start a transaction found in PREPARE gets its markers written
 * (again: a repeated marker is harmless); an open one stays open until its producer ends it, a
 * new producer with its id aborts it, or its time-out (counted from its start by the wall
 * clock) passes. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "broker.h"
#include "log.h"
#include "metrics.h"

/* Kafka error codes of transactions (protocol guide, "Error Codes"). */
#define TXN_INVALID_PRODUCER_EPOCH 47
#define TXN_INVALID_TXN_STATE 48
#define TXN_INVALID_PRODUCER_ID_MAPPING 49
#define TXN_INVALID_TRANSACTION_TIMEOUT 50
#define TXN_CONCURRENT_TRANSACTIONS 51
#define TXN_ID_AUTHORIZATION_FAILED 53
#define TXN_OPERATION_NOT_ATTEMPTED 55

#define TXN_MAX_TIMEOUT_MS 900000 /* Kafka's transaction.max.timeout.ms default */
#define TXN_MAX_IDS 10000         /* ids kept; past it the least recently used ended one goes */
#define TXN_MAX_GROUPS 16         /* consumer groups per transaction */
#define TXN_MAX_ID_LEN 255
#define TXN_MARKER_BYTES 78 /* a control batch: 61-byte header and one 17-byte record */

enum tstate {
    T_EMPTY,
    T_ONGOING,
    T_PREPARE_COMMIT,
    T_PREPARE_ABORT,
    T_COMPLETE_COMMIT,
    T_COMPLETE_ABORT
};

static const char *const STATE_NAMES[] = {"empty",         "ongoing",         "prepare_commit",
                                          "prepare_abort", "complete_commit", "complete_abort"};

struct tpart {
    char *topic;
    int32_t part;
    int64_t first_offset;
};

struct toffset {
    char *group, *topic, *meta;
    int32_t part;
    int64_t offset;
};

struct txn {
    char *id;
    int64_t pid;
    int16_t epoch;
    int32_t timeout_ms;
    enum tstate state;
    long long started_wall_ms; /* ONGOING since (wall clock: survives a restart) */
    long long last_used_ms;
    long long retry_ms; /* PREPARE left by a failed marker write: next try */
    struct tpart *parts;
    size_t n_parts;
    char **groups;
    size_t n_groups;
    struct toffset *offs;
    size_t n_offs;
};

struct aborted {
    char *topic;
    int32_t part;
    int64_t pid, first, last;
};

struct txns {
    struct txn **list;
    size_t n;
    struct aborted *ab;
    size_t n_ab, cap_ab;
    char *path;
};

/* bus_broker_transactions_total{outcome}: commit, abort (every abort), timeout (aborts by the
 * coordinator after the time-out); bus_broker_transactions_open. */
static struct metric *m_commit, *m_abort, *m_timeout, *m_open, *m_unstable;

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_open(const struct txn *t)
{
    return t->state == T_ONGOING || t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT;
}

/* ---- memory ---- */

static void txn_clear(struct txn *t)
{
    for (size_t i = 0; i < t->n_parts; i++) {
        free(t->parts[i].topic);
    }
    free(t->parts);
    t->parts = NULL;
    t->n_parts = 0;
    for (size_t i = 0; i < t->n_groups; i++) {
        free(t->groups[i]);
    }
    free(t->groups);
    t->groups = NULL;
    t->n_groups = 0;
    for (size_t i = 0; i < t->n_offs; i++) {
        free(t->offs[i].group);
        free(t->offs[i].topic);
        free(t->offs[i].meta);
    }
    free(t->offs);
    t->offs = NULL;
    t->n_offs = 0;
}

static void txn_free(struct txn *t)
{
    if (t) {
        txn_clear(t);
        free(t->id);
        free(t);
    }
}

static struct txn *txn_find(struct txns *ts, const char *id)
{
    for (size_t i = 0; i < ts->n; i++) {
        if (!strcmp(ts->list[i]->id, id)) {
            return ts->list[i];
        }
    }
    return NULL;
}

static struct txn *txn_add(struct txns *ts, const char *id)
{
    struct txn *t = xcalloc(1, sizeof *t);
    t->id = xstrdup(id);
    t->pid = -1;
    ts->list = xrealloc(ts->list, (ts->n + 1) * sizeof *ts->list);
    ts->list[ts->n++] = t;
    return t;
}

static struct tpart *part_find(struct txn *t, const char *topic, int32_t part)
{
    for (size_t i = 0; i < t->n_parts; i++) {
        if (t->parts[i].part == part && !strcmp(t->parts[i].topic, topic)) {
            return &t->parts[i];
        }
    }
    return NULL;
}

static void part_add(struct txn *t, const char *topic, int32_t part, int64_t first)
{
    t->parts = xrealloc(t->parts, (t->n_parts + 1) * sizeof *t->parts);
    t->parts[t->n_parts++] = (struct tpart){xstrdup(topic), part, first};
}

static int group_index(const struct txn *t, const char *group)
{
    for (size_t i = 0; i < t->n_groups; i++) {
        if (!strcmp(t->groups[i], group)) {
            return (int)i;
        }
    }
    return -1;
}

static void offset_put(struct txn *t, const char *group, const char *topic, int32_t part,
                       int64_t offset, const char *meta)
{
    struct toffset *o = NULL;
    for (size_t i = 0; i < t->n_offs; i++) {
        if (t->offs[i].part == part && !strcmp(t->offs[i].topic, topic) &&
            !strcmp(t->offs[i].group, group)) {
            o = &t->offs[i];
            free(o->meta);
            break;
        }
    }
    if (!o) {
        t->offs = xrealloc(t->offs, (t->n_offs + 1) * sizeof *t->offs);
        o = &t->offs[t->n_offs++];
        o->group = xstrdup(group);
        o->topic = xstrdup(topic);
        o->part = part;
    }
    o->offset = offset;
    o->meta = meta ? xstrdup(meta) : NULL;
}

static void aborted_add(struct txns *ts, const char *topic, int32_t part, int64_t pid,
                        int64_t first, int64_t last)
{
    if (ts->n_ab == ts->cap_ab) {
        ts->cap_ab = ts->cap_ab ? ts->cap_ab * 2 : 64;
        ts->ab = xrealloc(ts->ab, ts->cap_ab * sizeof *ts->ab);
    }
    ts->ab[ts->n_ab++] = (struct aborted){xstrdup(topic), part, pid, first, last};
}

static struct partition *partition_of(struct broker *b, const char *topic, int32_t part)
{
    struct topic *t = store_topic_find(&b->store, topic);
    return t && part >= 0 && part < t->n_parts ? t->parts[part] : NULL;
}

/* Drops aborted entries wholly below their partition's log start (or of a partition gone):
 * no fetch can reach them any more. Producer ids never repeat, so an entry of a deleted and
 * recreated topic could not match a new batch anyway. */
static void aborted_prune(struct broker *b)
{
    struct txns *ts = b->txns;
    size_t k = 0;
    for (size_t i = 0; i < ts->n_ab; i++) {
        struct aborted *a = &ts->ab[i];
        struct partition *p = partition_of(b, a->topic, a->part);
        if (!p || a->last < p->log_start) {
            free(a->topic);
            continue;
        }
        ts->ab[k++] = *a;
    }
    ts->n_ab = k;
}

/* ---- state file ---- */

static json_t *txn_to_json(const struct txn *t)
{
    json_t *parts = json_array(), *groups = json_array(), *offs = json_array();
    for (size_t i = 0; i < t->n_parts; i++) {
        json_array_append_new(parts, json_pack("[s, i, I]", t->parts[i].topic, t->parts[i].part,
                                               (json_int_t)t->parts[i].first_offset));
    }
    for (size_t i = 0; i < t->n_groups; i++) {
        json_array_append_new(groups, json_string(t->groups[i]));
    }
    for (size_t i = 0; i < t->n_offs; i++) {
        const struct toffset *o = &t->offs[i];
        json_array_append_new(offs, json_pack("[s, s, i, I, s?]", o->group, o->topic, o->part,
                                              (json_int_t)o->offset, o->meta));
    }
    return json_pack("{s:s, s:I, s:i, s:i, s:s, s:I, s:o, s:o, s:o}", "id", t->id, "pid",
                     (json_int_t)t->pid, "epoch", (int)t->epoch, "timeout_ms", (int)t->timeout_ms,
                     "state", STATE_NAMES[t->state], "started_wall_ms",
                     (json_int_t)t->started_wall_ms, "partitions", parts, "groups", groups,
                     "offsets", offs);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes txn.state (temporary file, fsync, rename, fsync of the directory unless fsync=never).
 * Returns 0, or -1 when it could not be written (the old file stays). */
static int txns_save(struct broker *b)
{
    struct txns *ts = b->txns;
    aborted_prune(b);
    json_t *list = json_array(), *ab = json_array();
    int n_open = 0;
    for (size_t i = 0; i < ts->n; i++) {
        json_array_append_new(list, txn_to_json(ts->list[i]));
        n_open += is_open(ts->list[i]);
    }
    metric_set(m_open, n_open);
    for (size_t i = 0; i < ts->n_ab; i++) {
        const struct aborted *a = &ts->ab[i];
        json_array_append_new(ab,
                              json_pack("[s, i, I, I, I]", a->topic, a->part, (json_int_t)a->pid,
                                        (json_int_t)a->first, (json_int_t)a->last));
    }
    json_t *root = json_pack("{s:i, s:o, s:o}", "version", 1, "transactions", list, "aborted", ab);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *tmp = xasprintf("%s.tmp", ts->path);
    int is_synced = b->opt.fsync != FSYNC_NEVER;
    int rc = -1;
    int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) {
        if (write_all(fd, text, strlen(text)) == 0 && (!is_synced || fsync(fd) == 0)) {
            rc = 0;
        }
        if (close(fd) != 0) {
            rc = -1;
        }
    }
    if (rc == 0 && rename(tmp, ts->path) != 0) {
        rc = -1;
    }
    if (rc == 0 && is_synced) {
        int dfd = open(b->opt.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    if (rc != 0) {
        log_error("%s: cannot write the transaction state: %s", ts->path, strerror(errno));
        (void)unlink(tmp);
    }
    free(tmp);
    free(text);
    return rc;
}

static int state_from_name(const char *s)
{
    for (int i = 0; s && i < (int)(sizeof STATE_NAMES / sizeof STATE_NAMES[0]); i++) {
        if (!strcmp(s, STATE_NAMES[i])) {
            return i;
        }
    }
    return -1;
}

static int txns_load(struct txns *ts, char *err, size_t err_len)
{
    if (access(ts->path, F_OK) != 0) {
        return 0;
    }
    json_error_t jerr;
    json_t *root = json_load_file(ts->path, 0, &jerr);
    json_t *list = json_object_get(root, "transactions"), *ab = json_object_get(root, "aborted");
    if (!root || !json_is_array(list) || !json_is_array(ab)) {
        snprintf(err, err_len, "%s: not a transaction state file: %s", ts->path,
                 root ? "missing arrays" : jerr.text);
        json_decref(root);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        int st = state_from_name(json_string_value(json_object_get(v, "state")));
        if (!id || st < 0) {
            snprintf(err, err_len, "%s: transaction %zu has no id or a bad state", ts->path, i);
            json_decref(root);
            return -1;
        }
        struct txn *t = txn_add(ts, id);
        t->pid = json_integer_value(json_object_get(v, "pid"));
        t->epoch = (int16_t)json_integer_value(json_object_get(v, "epoch"));
        t->timeout_ms = (int32_t)json_integer_value(json_object_get(v, "timeout_ms"));
        t->state = (enum tstate)st;
        t->started_wall_ms = json_integer_value(json_object_get(v, "started_wall_ms"));
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(v, "partitions"), k, x)
        {
            const char *topic = json_string_value(json_array_get(x, 0));
            if (topic) {
                part_add(t, topic, (int32_t)json_integer_value(json_array_get(x, 1)),
                         json_integer_value(json_array_get(x, 2)));
            }
        }
        json_array_foreach(json_object_get(v, "groups"), k, x)
        {
            if (json_string_value(x)) {
                t->groups = xrealloc(t->groups, (t->n_groups + 1) * sizeof *t->groups);
                t->groups[t->n_groups++] = xstrdup(json_string_value(x));
            }
        }
        json_array_foreach(json_object_get(v, "offsets"), k, x)
        {
            const char *g = json_string_value(json_array_get(x, 0));
            const char *topic = json_string_value(json_array_get(x, 1));
            if (g && topic) {
                offset_put(t, g, topic, (int32_t)json_integer_value(json_array_get(x, 2)),
                           json_integer_value(json_array_get(x, 3)),
                           json_string_value(json_array_get(x, 4)));
            }
        }
    }
    json_array_foreach(ab, i, v)
    {
        const char *topic = json_string_value(json_array_get(v, 0));
        if (topic) {
            aborted_add(ts, topic, (int32_t)json_integer_value(json_array_get(v, 1)),
                        json_integer_value(json_array_get(v, 2)),
                        json_integer_value(json_array_get(v, 3)),
                        json_integer_value(json_array_get(v, 4)));
        }
    }
    json_decref(root);
    return 0;
}

/* ---- ending a transaction ---- */

static void marker_build(uint8_t *m, int64_t pid, int16_t epoch, int is_commit, int64_t ts)
{
    memset(m, 0, TXN_MARKER_BYTES);
    put_be32(m + 8, TXN_MARKER_BYTES - 12); /* batch length */
    m[16] = 2;                              /* magic */
    m[22] = 0x30;                           /* attributes: transactional | control */
    put_be64(m + 27, (uint64_t)ts);         /* first timestamp */
    put_be64(m + 35, (uint64_t)ts);         /* max timestamp */
    put_be64(m + 43, (uint64_t)pid);
    m[51] = (uint8_t)((uint16_t)epoch >> 8);
    m[52] = (uint8_t)epoch;
    put_be32(m + 53, UINT32_MAX); /* base sequence -1 */
    put_be32(m + 57, 1);          /* one record */
    /* The record (varints zigzag-encoded): length 16, attributes 0, timestamp delta 0, offset
     * delta 0, key length 4, key, value length 6, value, no headers. */
    static const uint8_t rec[17] = {0x20, 0, 0, 0, 0x08, 0, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0};
    memcpy(m + 61, rec, sizeof rec);
    m[61 + 8] = is_commit ? 1 : 0; /* key: version 0, type */
    put_be32(m + 17, crc32c(0, m + 21, TXN_MARKER_BYTES - 21));
}

/* Carries a PREPARE_COMMIT/PREPARE_ABORT transaction through: a marker into each partition,
 * the offsets on a commit, then COMPLETE (persisted). Returns 0 when complete; -1 when a write
 * failed (what was done is dropped from the transaction, the rest is retried). */
static int txn_finish(struct broker *b, struct txn *t)
{
    int is_commit = t->state == T_PREPARE_COMMIT;
    long long now = broker_now_ms();
    size_t kept = 0;
    for (size_t i = 0; i < t->n_parts; i++) {
        struct tpart *tp = &t->parts[i];
        struct partition *p = partition_of(b, tp->topic, tp->part);
        uint8_t m[TXN_MARKER_BYTES];
        marker_build(m, t->pid, t->epoch, is_commit, wall_ms());
        int64_t off = -1;
        if (p && store_append_control(&b->store, p, m, sizeof m, &off, now) != 0) {
            t->parts[kept++] = *tp;
            continue;
        }
        if (p && !is_commit) {
            /* The abort marker is on disk before txn.state lists the aborted transaction: a
             * listed abort whose marker a power loss took would hide the producer's later
             * transactions from read_committed consumers. (A lost commit marker costs nothing:
             * its batches are not in the aborted list.) */
            if (b->opt.fsync != FSYNC_NEVER && fdatasync(p->segs[p->n_segs - 1].fd) != 0) {
                log_error("%s: fdatasync of an abort marker failed: %s", p->dir, strerror(errno));
            }
            aborted_add(b->txns, tp->topic, tp->part, t->pid, tp->first_offset, off);
        }
        free(tp->topic);
    }
    t->n_parts = kept;
    if (is_commit && kept == 0) {
        size_t left = 0;
        for (size_t i = 0; i < t->n_offs; i++) {
            struct toffset *o = &t->offs[i];
            if (groups_offset_commit_one(b, o->group, o->topic, o->part, o->offset, o->meta) != 0) {
                t->offs[left++] = *o;
                continue;
            }
            free(o->group);
            free(o->topic);
            free(o->meta);
        }
        t->n_offs = left;
    }
    if (t->n_parts == 0 && (!is_commit || t->n_offs == 0)) {
        txn_clear(t);
        t->state = is_commit ? T_COMPLETE_COMMIT : T_COMPLETE_ABORT;
        metric_inc(is_commit ? m_commit : m_abort);
        log_debug("transaction %s (producer %lld epoch %d) %s", t->id, (long long)t->pid,
                  (int)t->epoch, is_commit ? "committed" : "aborted");
    }
    (void)txns_save(b);
    if (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT) {
        t->retry_ms = now + 1000;
        log_warn("transaction %s: markers not all written, retrying", t->id);
        return -1;
    }
    return 0;
}

/* Starts ending t: persists PREPARE, then finishes. Returns 0 when complete, -1 when the state
 * could not be persisted (t unchanged) or a write failed (t in PREPARE, retried). */
static int txn_end(struct broker *b, struct txn *t, int is_commit)
{
    enum tstate before = t->state;
    t->state = is_commit ? T_PREPARE_COMMIT : T_PREPARE_ABORT;
    if (txns_save(b) != 0) {
        t->state = before;
        return -1;
    }
    return txn_finish(b, t);
}

/* Aborts an open transaction whose producer is gone or too slow, with the epoch bumped so that
 * producer is fenced (its next request gets INVALID_PRODUCER_EPOCH). */
static int txn_abort_fenced(struct broker *b, struct txn *t)
{
    if (t->state == T_ONGOING) {
        if (t->epoch < INT16_MAX) {
            t->epoch++;
        }
        return txn_end(b, t, 0);
    }
    return t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT ? txn_finish(b, t) : 0;
}

/* ---- lifecycle ---- */

struct txns *txns_new(struct broker *b, char *err, size_t err_len)
{
    static const char *const help = "Transactions ended, by outcome (timeout: aborted by the "
                                    "coordinator after the time-out, also counted as abort)";
    m_commit = metrics_counter("bus_broker_transactions_total", help, "outcome=\"commit\"");
    m_abort = metrics_counter("bus_broker_transactions_total", help, "outcome=\"abort\"");
    m_timeout = metrics_counter("bus_broker_transactions_total", help, "outcome=\"timeout\"");
    m_open = metrics_gauge("bus_broker_transactions_open", "Transactions open (ongoing or ending)",
                           NULL);
    m_unstable = metrics_counter("bus_broker_unstable_offsets_total",
                                 "Partitions an OffsetFetch with require_stable was answered "
                                 "UNSTABLE_OFFSET_COMMIT (a transaction holds offsets not "
                                 "committed yet; the consumer asks again)",
                                 NULL);
    struct txns *ts = xcalloc(1, sizeof *ts);
    ts->path = xasprintf("%s/txn.state", b->opt.data_dir);
    if (txns_load(ts, err, err_len) != 0) {
        b->txns = ts;
        txns_free(ts);
        b->txns = NULL;
        return NULL;
    }
    b->txns = ts;
    long long now = broker_now_ms();
    for (size_t i = 0; i < ts->n; i++) {
        struct txn *t = ts->list[i];
        t->last_used_ms = now;
        if (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT) {
            log_info("transaction %s: finishing its %s after a restart", t->id,
                     t->state == T_PREPARE_COMMIT ? "commit" : "abort");
            (void)txn_finish(b, t);
        }
    }
    return ts;
}

void txns_free(struct txns *ts)
{
    if (!ts) {
        return;
    }
    for (size_t i = 0; i < ts->n; i++) {
        txn_free(ts->list[i]);
    }
    free(ts->list);
    for (size_t i = 0; i < ts->n_ab; i++) {
        free(ts->ab[i].topic);
    }
    free(ts->ab);
    free(ts->path);
    free(ts);
}

void txns_tick(struct broker *b, long long now)
{
    struct txns *ts = b->txns;
    long long wall = wall_ms();
    for (size_t i = 0; i < ts->n; i++) {
        struct txn *t = ts->list[i];
        if (t->state == T_ONGOING && wall - t->started_wall_ms > t->timeout_ms) {
            log_info("transaction %s (producer %lld): aborted after its time-out of %d ms", t->id,
                     (long long)t->pid, (int)t->timeout_ms);
            metric_inc(m_timeout);
            (void)txn_abort_fenced(b, t);
        } else if ((t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT) &&
                   now >= t->retry_ms) {
            (void)txn_finish(b, t);
        }
    }
}

/* ---- partitions: LSO and aborted transactions ---- */

int64_t txn_lso(struct broker *b, const struct partition *p)
{
    int64_t lso = p->next_offset;
    struct txns *ts = b->txns;
    for (size_t i = 0; i < ts->n; i++) {
        struct txn *t = ts->list[i];
        if (!is_open(t)) {
            continue;
        }
        for (size_t k = 0; k < t->n_parts; k++) {
            struct tpart *tp = &t->parts[k];
            if (tp->part == p->id && tp->first_offset < lso && !strcmp(tp->topic, p->topic->name)) {
                lso = tp->first_offset;
            }
        }
    }
    return lso < p->log_start ? p->log_start : lso;
}

void txn_write_aborted(struct broker *b, struct kw *w, const struct partition *p, int64_t from,
                       int64_t to)
{
    struct txns *ts = b->txns;
    size_t mark = kw_mark_i32(w);
    int32_t n = 0;
    for (size_t i = 0; i < ts->n_ab; i++) {
        const struct aborted *a = &ts->ab[i];
        if (a->part == p->id && a->last >= from && a->first < to &&
            !strcmp(a->topic, p->topic->name)) {
            kw_i64(w, a->pid);
            kw_i64(w, a->first);
            n++;
        }
    }
    kw_patch_i32(w, mark, n);
}

/* ---- pending consumer offsets (KIP-447) ---- */

struct txn_pending {
    const struct toffset **offs;
    size_t n;
};

struct txn_pending *txn_pending_of_group(struct broker *b, const char *group)
{
    struct txn_pending *tp = NULL;
    struct txns *ts = b->txns;
    for (size_t i = 0; i < ts->n; i++) {
        const struct txn *t = ts->list[i];
        if (t->state != T_ONGOING && t->state != T_PREPARE_COMMIT) {
            continue;
        }
        for (size_t k = 0; k < t->n_offs; k++) {
            if (strcmp(t->offs[k].group, group) != 0) {
                continue;
            }
            if (!tp) {
                tp = xcalloc(1, sizeof *tp);
            }
            tp->offs = xrealloc(tp->offs, (tp->n + 1) * sizeof *tp->offs);
            tp->offs[tp->n++] = &t->offs[k];
        }
    }
    return tp;
}

int txn_pending_has(const struct txn_pending *tp, const char *topic, int32_t part)
{
    for (size_t i = 0; tp && i < tp->n; i++) {
        if (tp->offs[i]->part == part && !strcmp(tp->offs[i]->topic, topic)) {
            metric_inc(m_unstable);
            return 1;
        }
    }
    return 0;
}

void txn_pending_free(struct txn_pending *tp)
{
    if (tp) {
        free(tp->offs);
        free(tp);
    }
}

/* ---- requests ---- */

static void kw_kstr_or_null(struct kw *w, struct kstr s)
{
    if (!s.ptr) {
        kw_i16(w, -1);
    } else {
        kw_strn(w, s.ptr, (size_t)s.len);
    }
}

/* The checks every request of a transaction makes: the id is well formed, the principal may
 * write it, and pid/epoch are the id's current ones. Returns 0 with *out set, or an error. */
static int txn_authorize(struct broker *b, struct reply *r, struct kstr id_s, int64_t pid,
                         int16_t epoch, struct txn **out)
{
    char id[TXN_MAX_ID_LEN + 1];
    *out = NULL;
    if (kstr_copy(id_s, id, sizeof id) != 0 || !id[0]) {
        return KERR_INVALID_REQUEST;
    }
    if (!reply_allowed(b, r, ACL_TRANSACTIONAL_ID, id, ACL_WRITE)) {
        return TXN_ID_AUTHORIZATION_FAILED;
    }
    struct txn *t = txn_find(b->txns, id);
    if (!t || t->pid != pid) {
        return TXN_INVALID_PRODUCER_ID_MAPPING;
    }
    if (t->epoch != epoch) {
        return TXN_INVALID_PRODUCER_EPOCH;
    }
    t->last_used_ms = broker_now_ms();
    *out = t;
    return 0;
}

/* Makes room for one more id: drops the least recently used ended transaction. */
static int txns_make_room(struct txns *ts)
{
    if (ts->n < TXN_MAX_IDS) {
        return 0;
    }
    size_t lru = ts->n;
    for (size_t i = 0; i < ts->n; i++) {
        if (!is_open(ts->list[i]) &&
            (lru == ts->n || ts->list[i]->last_used_ms < ts->list[lru]->last_used_ms)) {
            lru = i;
        }
    }
    if (lru == ts->n) {
        return -1;
    }
    txn_free(ts->list[lru]);
    ts->list[lru] = ts->list[--ts->n];
    return 0;
}

int txn_init_producer_id(struct broker *b, struct reply *r, struct kstr id_s, int32_t timeout_ms)
{
    struct kw *w = &r->w;
    char id[TXN_MAX_ID_LEN + 1];
    int16_t err = 0;
    struct txn *t = NULL;
    if (kstr_copy(id_s, id, sizeof id) != 0 || !id[0]) {
        err = KERR_INVALID_REQUEST;
    } else if (!reply_allowed(b, r, ACL_TRANSACTIONAL_ID, id, ACL_WRITE)) {
        err = TXN_ID_AUTHORIZATION_FAILED;
    } else if (timeout_ms <= 0 || timeout_ms > TXN_MAX_TIMEOUT_MS) {
        err = TXN_INVALID_TRANSACTION_TIMEOUT;
    } else if (!(t = txn_find(b->txns, id))) {
        int64_t pid = -1;
        if (txns_make_room(b->txns) != 0) {
            err = KERR_POLICY_VIOLATION; /* TXN_MAX_IDS transactions open at once */
        } else if ((pid = broker_pid_alloc(b)) < 0) {
            err = KERR_COORDINATOR_NOT_AVAILABLE;
        } else {
            t = txn_add(b->txns, id);
            t->pid = pid;
            t->epoch = -1; /* bumped to 0 below */
        }
    } else if (txn_abort_fenced(b, t) != 0) {
        /* The previous producer's transaction could not be ended yet: retriable. */
        err = TXN_CONCURRENT_TRANSACTIONS;
    }
    if (!err) {
        if (t->epoch >= INT16_MAX - 1) {
            int64_t pid = broker_pid_alloc(b);
            if (pid < 0) {
                err = KERR_COORDINATOR_NOT_AVAILABLE;
            } else {
                t->pid = pid;
                t->epoch = 0;
            }
        } else {
            t->epoch++;
        }
    }
    if (!err) {
        t->state = T_EMPTY;
        t->timeout_ms = timeout_ms;
        t->last_used_ms = broker_now_ms();
        if (txns_save(b) != 0) {
            err = KERR_COORDINATOR_NOT_AVAILABLE;
        }
    }
    kw_i32(w, 0);
    kw_i16(w, err);
    kw_i64(w, err ? -1 : t->pid);
    kw_i16(w, err ? -1 : t->epoch);
    return 0;
}

int txn_check_produce(struct broker *b, struct reply *r, struct kstr id_s, const uint8_t *rec,
                      int32_t len, const char *topic, int32_t part)
{
    int has_txn = 0, has_plain = 0;
    int64_t pid = -1;
    int16_t epoch = -1;
    size_t pos = 0;
    while (rec && len > 0 && pos + STORE_BATCH_HEADER <= (size_t)len) {
        const uint8_t *h = rec + pos;
        int attrs = (h[21] << 8) | h[22];
        if (attrs & 0x20) {
            return KERR_INVALID_RECORD; /* control batches are the coordinator's */
        }
        if (attrs & 0x10) {
            int64_t bpid = be64(h + 43);
            int16_t bepoch = (int16_t)((h[51] << 8) | h[52]);
            if (has_txn && (bpid != pid || bepoch != epoch)) {
                return KERR_INVALID_RECORD;
            }
            has_txn = 1;
            pid = bpid;
            epoch = bepoch;
        } else {
            has_plain = 1;
        }
        uint64_t total = 12 + (uint64_t)be32(h + 8);
        if (total < STORE_BATCH_HEADER) {
            break; /* store_append answers CORRUPT_MESSAGE */
        }
        pos += total;
    }
    if (!id_s.ptr) {
        /* A transactional batch outside a transaction would never get a marker. */
        return has_txn ? KERR_INVALID_RECORD : 0;
    }
    if (has_plain || !has_txn) {
        return has_plain ? KERR_INVALID_RECORD : 0;
    }
    struct txn *t;
    int err = txn_authorize(b, r, id_s, pid, epoch, &t);
    if (err) {
        return err;
    }
    if (t->state != T_ONGOING || !part_find(t, topic, part)) {
        return TXN_INVALID_TXN_STATE;
    }
    return 0;
}

/* AddPartitionsToTxn v0-v1: transactional_id, producer_id, producer_epoch,
 * topics [name, partitions [i32]] -> throttle, results [name, results [partition, error]]. */
int handle_add_partitions_to_txn(struct broker *b, struct reply *r, struct kr *q)
{
    struct kstr id_s = kr_str(q);
    int64_t pid = kr_i64(q);
    int16_t epoch = kr_i16(q);
    int32_t nt = kr_array(q, 6);
    if (q->err) {
        return -1;
    }
    struct txn *t;
    int16_t terr = (int16_t)txn_authorize(b, r, id_s, pid, epoch, &t);
    if (!terr && (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT)) {
        terr = TXN_CONCURRENT_TRANSACTIONS;
    }
    struct kw *w = &r->w;
    kw_i32(w, 0);
    kw_i32(w, nt < 0 ? 0 : nt);
    /* Where each partition's error sits in the answer, and what to add when all are fine. */
    struct want {
        size_t at;
        char topic[STORE_MAX_NAME + 1];
        int32_t part;
        int64_t first;
        int16_t err;
    } *wants = NULL;
    size_t n_wants = 0;
    int has_error = terr != 0;
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = kr_str(q);
        int32_t np = kr_array(q, 4);
        kw_kstr_or_null(w, tname);
        kw_i32(w, np < 0 ? 0 : np);
        char topic[STORE_MAX_NAME + 1];
        int has_name = kstr_copy(tname, topic, sizeof topic) == 0;
        int may_write =
            has_name && np > 0 && (terr || reply_allowed(b, r, ACL_TOPIC, topic, ACL_WRITE));
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t part = kr_i32(q);
            wants = xrealloc(wants, (n_wants + 1) * sizeof *wants);
            struct want *x = &wants[n_wants++];
            x->part = part;
            x->err = terr;
            snprintf(x->topic, sizeof x->topic, "%s", has_name ? topic : "");
            struct partition *p = has_name ? partition_of(b, topic, part) : NULL;
            if (!x->err && !may_write) {
                x->err = KERR_TOPIC_AUTHORIZATION_FAILED;
            } else if (!x->err && !p) {
                x->err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            }
            x->first = p ? p->next_offset : -1;
            has_error |= x->err != 0;
            kw_i32(w, part);
            x->at = w->len;
            kw_i16(w, 0);
        }
    }
    if (q->err) {
        free(wants);
        return -1;
    }
    if (!has_error) {
        enum tstate state_before = t->state;
        long long started_before = t->started_wall_ms;
        int was_ongoing = t->state == T_ONGOING;
        if (!was_ongoing) {
            txn_clear(t); /* what an ended transaction left */
            t->state = T_ONGOING;
            t->started_wall_ms = wall_ms();
        }
        size_t n_before = t->n_parts;
        for (size_t i = 0; i < n_wants; i++) {
            if (!part_find(t, wants[i].topic, wants[i].part)) {
                part_add(t, wants[i].topic, wants[i].part, wants[i].first);
            }
        }
        if ((t->n_parts != n_before || !was_ongoing) && txns_save(b) != 0) {
            /* Not durable: the partitions are not in the transaction. */
            for (size_t i = n_before; i < t->n_parts; i++) {
                free(t->parts[i].topic);
            }
            t->n_parts = n_before;
            t->state = state_before;
            t->started_wall_ms = started_before;
            for (size_t i = 0; i < n_wants; i++) {
                wants[i].err = KERR_COORDINATOR_NOT_AVAILABLE;
            }
        }
    }
    for (size_t i = 0; i < n_wants; i++) {
        int16_t e = wants[i].err ? wants[i].err : has_error ? TXN_OPERATION_NOT_ATTEMPTED : 0;
        w->p[wants[i].at] = (uint8_t)((uint16_t)e >> 8);
        w->p[wants[i].at + 1] = (uint8_t)e;
    }
    free(wants);
    return 0;
}

/* AddOffsetsToTxn v0-v1: transactional_id, producer_id, producer_epoch, group_id ->
 * throttle, error. */
int handle_add_offsets_to_txn(struct broker *b, struct reply *r, struct kr *q)
{
    struct kstr id_s = kr_str(q);
    int64_t pid = kr_i64(q);
    int16_t epoch = kr_i16(q);
    struct kstr g_s = kr_str(q);
    if (q->err) {
        return -1;
    }
    char group[256];
    struct txn *t;
    int16_t err = (int16_t)txn_authorize(b, r, id_s, pid, epoch, &t);
    if (!err && (t->state == T_PREPARE_COMMIT || t->state == T_PREPARE_ABORT)) {
        err = TXN_CONCURRENT_TRANSACTIONS;
    } else if (!err && (kstr_copy(g_s, group, sizeof group) != 0 || !group[0])) {
        err = KERR_INVALID_GROUP_ID;
    } else if (!err && !reply_allowed(b, r, ACL_GROUP, group, ACL_READ)) {
        err = KERR_GROUP_AUTHORIZATION_FAILED;
    }
    if (!err && (t->state != T_ONGOING || group_index(t, group) < 0)) {
        enum tstate state_before = t->state;
        long long started_before = t->started_wall_ms;
        if (t->state != T_ONGOING) {
            txn_clear(t); /* what an ended transaction left */
            t->state = T_ONGOING;
            t->started_wall_ms = wall_ms();
        }
        if (t->n_groups >= TXN_MAX_GROUPS) {
            err = KERR_POLICY_VIOLATION;
        } else {
            t->groups = xrealloc(t->groups, (t->n_groups + 1) * sizeof *t->groups);
            t->groups[t->n_groups++] = xstrdup(group);
            if (txns_save(b) != 0) {
                free(t->groups[--t->n_groups]);
                t->state = state_before;
                t->started_wall_ms = started_before;
                err = KERR_COORDINATOR_NOT_AVAILABLE;
            }
        }
    }
    kw_i32(&r->w, 0);
    kw_i16(&r->w, err);
    return 0;
}

/* A string / array of a TxnOffsetCommit: compact (flexible) from v3 on. */
static struct kstr toc_str(struct kr *q, int16_t v)
{
    return v >= 3 ? kr_compact_str(q) : kr_str(q);
}

static int32_t toc_array(struct kr *q, int16_t v, size_t min_elem_bytes)
{
    return v >= 3 ? kr_compact_array(q, min_elem_bytes) : kr_array(q, min_elem_bytes);
}

/* TxnOffsetCommit v0-v3: transactional_id, group_id, producer_id, producer_epoch,
 * [v3: generation_id, member_id, group_instance_id], topics [name, partitions [partition,
 * offset, leader_epoch (v2+), metadata]] -> throttle, topics [name, partitions [partition,
 * error]]. v3 is flexible (compact strings and arrays, tagged fields; response header v1) and
 * carries the consumer's group generation (KIP-447): a member that is not in the group's
 * current generation gets ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID. The offsets take effect at
 * the commit. */
int handle_txn_offset_commit(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    struct kstr id_s = toc_str(q, v);
    struct kstr g_s = toc_str(q, v);
    int64_t pid = kr_i64(q);
    int16_t epoch = kr_i16(q);
    int32_t gen = -1;
    struct kstr m_s = {0};
    if (v >= 3) {
        gen = kr_i32(q);
        m_s = kr_compact_str(q);
        (void)kr_compact_str(q); /* group_instance_id (static membership: not served) */
    }
    int32_t nt = toc_array(q, v, 6);
    if (q->err) {
        return -1;
    }
    char group[256], member[256] = "";
    struct txn *t;
    int16_t gerr = (int16_t)txn_authorize(b, r, id_s, pid, epoch, &t);
    if (!gerr && (kstr_copy(g_s, group, sizeof group) != 0 || !group[0])) {
        gerr = KERR_INVALID_GROUP_ID;
    } else if (!gerr && !reply_allowed(b, r, ACL_GROUP, group, ACL_READ)) {
        gerr = KERR_GROUP_AUTHORIZATION_FAILED;
    } else if (!gerr && (t->state != T_ONGOING || group_index(t, group) < 0)) {
        gerr = TXN_INVALID_TXN_STATE; /* AddOffsetsToTxn comes first */
    } else if (!gerr && m_s.ptr && kstr_copy(m_s, member, sizeof member) != 0) {
        gerr = KERR_UNKNOWN_MEMBER_ID;
    } else if (!gerr) {
        gerr = (int16_t)groups_check_generation(b, group, member, gen);
    }
    struct kw *w = &r->w;
    if (v >= 3) {
        kw_uvarint(w, 0); /* response header v1: tagged fields */
    }
    kw_i32(w, 0);
    if (v >= 3) {
        kw_uvarint(w, (uint64_t)(nt < 0 ? 0 : nt) + 1);
    } else {
        kw_i32(w, nt < 0 ? 0 : nt);
    }
    size_t *accepted = NULL, n_accepted = 0;
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = toc_str(q, v);
        int32_t np = toc_array(q, v, 14);
        char topic[STORE_MAX_NAME + 1];
        int has_name = kstr_copy(tname, topic, sizeof topic) == 0;
        if (v >= 3) {
            kw_compact_str(w, has_name ? topic : "");
            kw_uvarint(w, (uint64_t)(np < 0 ? 0 : np) + 1);
        } else {
            kw_kstr_or_null(w, tname);
            kw_i32(w, np < 0 ? 0 : np);
        }
        int may_read =
            gerr || np <= 0 || (has_name && reply_allowed(b, r, ACL_TOPIC, topic, ACL_READ));
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t part = kr_i32(q);
            int64_t off = kr_i64(q);
            if (v >= 2) {
                (void)kr_i32(q); /* committed_leader_epoch */
            }
            struct kstr meta_s = toc_str(q, v);
            if (v >= 3) {
                kr_skip_tagged(q);
            }
            char meta[4096];
            int has_meta = kstr_copy(meta_s, meta, sizeof meta) == 0;
            int16_t err = gerr ? gerr : may_read ? 0 : KERR_TOPIC_AUTHORIZATION_FAILED;
            if (!err && (!has_name || !partition_of(b, topic, part))) {
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (!err && off < 0) {
                err = KERR_OFFSET_OUT_OF_RANGE;
            }
            if (!err && !q->err) {
                offset_put(t, group, topic, part, off, has_meta ? meta : NULL);
                accepted = xrealloc(accepted, (n_accepted + 1) * sizeof *accepted);
                accepted[n_accepted++] = w->len + 4;
            }
            kw_i32(w, part);
            kw_i16(w, err);
            if (v >= 3) {
                kw_uvarint(w, 0); /* partition's tagged fields */
            }
        }
        if (v >= 3) {
            kr_skip_tagged(q);
            kw_uvarint(w, 0); /* topic's tagged fields */
        }
    }
    if (v >= 3) {
        kr_skip_tagged(q);
        kw_uvarint(w, 0);
    }
    if (n_accepted && txns_save(b) != 0) {
        /* Kept in memory (they are for this transaction) but not durable: the producer is told
         * to retry. */
        for (size_t i = 0; i < n_accepted; i++) {
            w->p[accepted[i]] = 0;
            w->p[accepted[i] + 1] = KERR_COORDINATOR_NOT_AVAILABLE;
        }
    }
    free(accepted);
    if (gerr == KERR_ILLEGAL_GENERATION || gerr == KERR_UNKNOWN_MEMBER_ID) {
        log_warn("transaction %.*s: offsets of group %s refused (member %s, generation %d): %s",
                 (int)(id_s.len > 0 ? id_s.len : 0), id_s.ptr ? id_s.ptr : "", group, member,
                 (int)gen,
                 gerr == KERR_ILLEGAL_GENERATION ? "not the group's generation" : "unknown member");
    }
    return q->err ? -1 : 0;
}

/* EndTxn v0-v1: transactional_id, producer_id, producer_epoch, committed -> throttle, error.
 * Answered once the markers (and committed offsets) are synced like an acks=all produce. */
int handle_end_txn(struct broker *b, struct reply *r, struct kr *q)
{
    struct kstr id_s = kr_str(q);
    int64_t pid = kr_i64(q);
    int16_t epoch = kr_i16(q);
    int is_commit = kr_i8(q) != 0;
    if (q->err) {
        return -1;
    }
    struct txn *t;
    int16_t err = (int16_t)txn_authorize(b, r, id_s, pid, epoch, &t);
    uint64_t seq_before = b->store.write_seq;
    if (!err) {
        switch (t->state) {
        case T_EMPTY:
            break; /* nothing was added: nothing to end */
        case T_ONGOING:
            err = txn_end(b, t, is_commit) == 0 ? 0 : KERR_COORDINATOR_NOT_AVAILABLE;
            break;
        case T_PREPARE_COMMIT:
        case T_PREPARE_ABORT:
            if (is_commit != (t->state == T_PREPARE_COMMIT)) {
                err = TXN_INVALID_TXN_STATE;
            } else if (txn_finish(b, t) != 0) {
                err = KERR_COORDINATOR_NOT_AVAILABLE;
            }
            break;
        case T_COMPLETE_COMMIT:
        case T_COMPLETE_ABORT:
            /* A retry of the EndTxn that ended it is fine; the other outcome is not. */
            err = is_commit == (t->state == T_COMPLETE_COMMIT) ? 0 : TXN_INVALID_TXN_STATE;
            break;
        }
    }
    kw_i32(&r->w, 0);
    kw_i16(&r->w, err);
    if (b->store.write_seq != seq_before && b->opt.fsync != FSYNC_NEVER) {
        r->wait_seq = b->store.write_seq;
    }
    return 0;
}
