/* store.h - the broker's durable log: topics, partitions, segment files, producer state.
 *
 * Layout under data_dir:
 *   topics.json                          topic names, partition counts and per-topic settings
 *   <topic>-<partition>/log_start        the log start offset moved by DeleteRecords (absent
 *                                        when it is the first segment's base)
 *   <topic>-<partition>/<base>.log       record batches (v2) exactly as received, base offset
 *                                        rewritten; <base> is the first offset, 20 digits
 *   <topic>-<partition>/<base>.index     sparse index: (uint32 offset - base, uint32 position)
 *                                        big-endian, one entry per ~4 KiB of log; appended in
 *                                        batches (every 512 entries, on roll and on close), not
 *                                        synced: the active segment's is rebuilt on open, an
 *                                        older one's is checked and rebuilt when damaged
 *
 * On open the active (last) segment of every partition is scanned: a torn or CRC-bad tail is
 * truncated, its index rebuilt, and the idempotent producers' last sequences recovered. Older
 * segments trust their index (rebuilt by a scan when missing or damaged).
 *
 * Single-threaded: only the broker's event loop calls into the store. */
#ifndef BROKER_STORE_H
#define BROKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define STORE_BATCH_HEADER 61 /* bytes of a v2 record batch header */
#define STORE_MAX_NAME 249

struct metric;

struct topic_conf {
    int64_t retention_ms;    /* -1 = keep forever */
    int64_t retention_bytes; /* per partition; -1 = no limit */
    int64_t segment_bytes;
    int32_t min_insync_replicas; /* 0 = 1; acks=all produce needs this many in-sync replicas */
    unsigned set_mask;           /* TOPIC_CONF_*: the settings made on the topic itself */
};

/* Bits of topic_conf.set_mask: a setting given on the topic (CreateTopics, AlterConfigs),
 * against one inherited from the broker's defaults (DescribeConfigs tells them apart, an
 * incremental DELETE returns the setting to the default). cleanup.policy is always "delete"
 * (no compaction); it is recorded as set when a client set it to "delete" explicitly. */
enum {
    TOPIC_CONF_RETENTION_MS = 1u << 0,
    TOPIC_CONF_RETENTION_BYTES = 1u << 1,
    TOPIC_CONF_SEGMENT_BYTES = 1u << 2,
    TOPIC_CONF_CLEANUP_POLICY = 1u << 3,
    TOPIC_CONF_MIN_INSYNC_REPLICAS = 1u << 4,
};

struct idx_entry {
    uint32_t rel;
    uint32_t pos;
};

struct segment {
    int64_t base;
    int fd;     /* .log, O_APPEND */
    int idx_fd; /* .index */
    uint64_t size;
    uint64_t last_idx_pos;
    struct idx_entry *idx;
    size_t n_idx, cap_idx;
    size_t n_idx_written; /* entries of idx already in the .index file (the rest pending) */
    int64_t mtime_ms;     /* last append (or file mtime when loaded) */
};

#define STORE_PRODUCER_BATCHES 5

struct producer_state {
    int64_t pid;
    int16_t epoch;
    int32_t last_seq;
    struct {
        int32_t first_seq, last_seq;
        int64_t base_offset;
    } recent[STORE_PRODUCER_BATCHES]; /* ring of the last batches, for duplicate detection */
    unsigned n_recent, next_recent;
    long long last_used_ms;
};

struct topic;

struct partition {
    struct topic *topic;
    int32_t id;
    char *dir;
    struct segment *segs;
    size_t n_segs;
    int64_t log_start;
    int64_t next_offset; /* log end offset (= high watermark on a single node) */
    uint64_t bytes;      /* sum of segment sizes */
    int is_dirty;        /* written since the last fsync */
    struct producer_state *producers;
    size_t n_producers;
    struct metric *m_leo;
};

struct topic {
    char name[STORE_MAX_NAME + 1];
    int32_t n_parts;
    struct partition **parts;
    struct topic_conf conf;
};

struct store {
    char *dir;
    struct topic **topics;
    size_t n_topics;
    struct topic_conf defaults;
    struct partition **dirty; /* partitions with unsynced writes */
    size_t n_dirty, cap_dirty;
    uint64_t write_seq; /* incremented by every append */
};

/* Opens (creating) data_dir and loads every topic. Returns 0, or -1 with err filled. */
int store_open(struct store *s, const char *dir, const struct topic_conf *defaults, char *err,
               size_t err_len);
void store_close(struct store *s);

int store_topic_name_valid(const char *name);
struct topic *store_topic_find(struct store *s, const char *name);
/* Creates a topic with n partitions (conf NULL = defaults) and persists topics.json.
 * Returns 0 or a Kafka error code (TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION, ...). */
int store_topic_create(struct store *s, const char *name, int32_t n, const struct topic_conf *conf,
                       char *err, size_t err_len);
int store_topic_delete(struct store *s, const char *name);
int store_topic_add_partitions(struct store *s, struct topic *t, int32_t new_total);

/* Validates one produce "records" field (one or more v2 batches: CRC, magic, lengths), checks
 * idempotent sequences and appends it with offsets assigned. On success returns 0 and sets
 * *base_offset (for a duplicate of a recent batch: the original offset, nothing written).
 * Otherwise returns a Kafka error code. The data buffer is modified (base offsets). */
int store_append(struct store *s, struct partition *p, uint8_t *data, size_t len,
                 int64_t *base_offset, long long now_ms);

/* store_append for a control batch (a transaction marker, txn.c): the batches must carry the
 * control attribute, which store_append refuses from clients. */
int store_append_control(struct store *s, struct partition *p, uint8_t *data, size_t len,
                         int64_t *base_offset, long long now_ms);
/* Bytes of the whole batches from the one holding offset up to (not including) the batch that
 * holds end, within offset's segment (the rest of that segment when end lies past it); 0 when
 * offset >= end. What a fetch bounded by end (the last stable offset) may read. */
int64_t store_bytes_before(struct partition *p, int64_t offset, int64_t end);

/* Appends to out the batches starting at the one that holds offset, whole batches, up to
 * max_bytes (at least one batch even when larger). Returns 0 or OFFSET_OUT_OF_RANGE (1). */
int store_read(struct store *s, struct partition *p, int64_t offset, int32_t max_bytes,
               struct kw *out);
/* Like store_read, but returns where the bytes are instead of copying them: a dup()ed
 * descriptor of the segment (owned by the caller, -1 when the range is empty), the position and
 * the length, for sendfile(2). */
int store_read_ref(struct partition *p, int64_t offset, int32_t max_bytes, int *fd, uint64_t *pos,
                   uint32_t *len);
/* Size in bytes of what store_read would return (cheap estimate for min_bytes). */
int64_t store_bytes_after(struct partition *p, int64_t offset);
/* ListOffsets by time (Kafka's rule): the first record at or after the log start whose
 * timestamp is >= ts, with that timestamp in *ts_out; -1 (and *ts_out -1) when no record is that
 * late. Records of uncompressed batches are looked at one by one; a compressed batch counts as
 * one record at its first offset with its max timestamp (the broker does not decompress). */
int64_t store_offset_for_time(struct partition *p, int64_t ts, int64_t *ts_out);
/* Changes a topic's settings to conf and persists topics.json (the old settings stay in
 * memory when it cannot be written). Returns 0 or -1. */
int store_topic_set_conf(struct store *s, struct topic *t, const struct topic_conf *conf);
/* DeleteRecords: moves the partition's log start to offset (-1 = the log end), deletes the
 * segments wholly below it, and persists it (synced) before returning. Returns 0,
 * OFFSET_OUT_OF_RANGE when offset is past the log end, or KAFKA_STORAGE_ERROR. A log start
 * already past offset stays where it is. */
int store_delete_records(struct store *s, struct partition *p, int64_t offset);

/* fdatasync every dirty partition's active segment. Returns the number synced. */
int store_sync(struct store *s);
/* Hands the dirty set over for syncing elsewhere: returns dup()ed descriptors of every dirty
 * partition's active segment (the caller fdatasyncs and closes them, e.g. on another thread)
 * and clears the dirty set. *n gets the count; NULL when nothing is dirty. */
int *store_take_dirty(struct store *s, size_t *n);
/* Deletes segments past retention; returns the number of segments deleted. */
int store_enforce_retention(struct store *s, long long now_wall_ms);

#endif
