/* wire.h - Kafka protocol primitives: a bounds-checked reader over a request, a growable writer
 * for responses, and CRC-32C (record batches v2).
 *
 * Encoding follows https://kafka.apache.org/protocol#protocol_types: big-endian integers,
 * INT16-length strings (-1 = null), INT32-length bytes and arrays, and for flexible versions
 * unsigned varints (compact strings/arrays store length + 1) and tagged fields.
 *
 * The reader never reads past its end: an underflow sets r->err and every later read returns 0
 * or an empty value, so a handler decodes a whole request and checks r->err once. Not
 * thread-safe; both are plain values owned by the caller. */
#ifndef BROKER_WIRE_H
#define BROKER_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Kafka error codes used by the broker (protocol guide, "Error Codes"). */
enum kerr {
    KERR_NONE = 0,
    KERR_OFFSET_OUT_OF_RANGE = 1,
    KERR_CORRUPT_MESSAGE = 2,
    KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    KERR_INVALID_FETCH_SIZE = 4,
    KERR_LEADER_NOT_AVAILABLE = 5,
    KERR_MESSAGE_TOO_LARGE = 10,
    KERR_COORDINATOR_NOT_AVAILABLE = 15,
    KERR_NOT_COORDINATOR = 16,
    KERR_INVALID_TOPIC_EXCEPTION = 17,
    KERR_RECORD_LIST_TOO_LARGE = 18,
    KERR_INVALID_REQUIRED_ACKS = 21,
    KERR_ILLEGAL_GENERATION = 22,
    KERR_INCONSISTENT_GROUP_PROTOCOL = 23,
    KERR_INVALID_GROUP_ID = 24,
    KERR_UNKNOWN_MEMBER_ID = 25,
    KERR_INVALID_SESSION_TIMEOUT = 26,
    KERR_REBALANCE_IN_PROGRESS = 27,
    KERR_TOPIC_AUTHORIZATION_FAILED = 29,
    KERR_GROUP_AUTHORIZATION_FAILED = 30,
    KERR_CLUSTER_AUTHORIZATION_FAILED = 31,
    KERR_UNSUPPORTED_SASL_MECHANISM = 33,
    KERR_ILLEGAL_SASL_STATE = 34,
    KERR_UNSUPPORTED_VERSION = 35,
    KERR_TOPIC_ALREADY_EXISTS = 36,
    KERR_INVALID_PARTITIONS = 37,
    KERR_INVALID_REPLICATION_FACTOR = 38,
    KERR_INVALID_REQUEST = 42,
    KERR_INVALID_CONFIG = 40,
    KERR_POLICY_VIOLATION = 44,
    KERR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    KERR_DUPLICATE_SEQUENCE_NUMBER = 46,
    KERR_INVALID_PRODUCER_EPOCH = 47,
    KERR_KAFKA_STORAGE_ERROR = 56, /* a failed write: retriable, no epoch bump (librdkafka) */
    KERR_SASL_AUTHENTICATION_FAILED = 58,
    KERR_NOT_ENOUGH_REPLICAS = 19,
    KERR_NON_EMPTY_GROUP = 68,
    KERR_GROUP_ID_NOT_FOUND = 69,
    KERR_INVALID_RECORD = 87,
    KERR_UNSTABLE_OFFSET_COMMIT = 88, /* retriable: an open transaction holds offsets (KIP-447) */
    KERR_UNKNOWN_SERVER_ERROR = -1,
};

struct kr {
    const uint8_t *p;
    size_t len;
    size_t pos;
    int err;
};

/* A string slice inside the request (not NUL-terminated); ptr NULL and len -1 when null. */
struct kstr {
    const char *ptr;
    int32_t len;
};

void kr_init(struct kr *r, const void *p, size_t len);
int8_t kr_i8(struct kr *r);
int16_t kr_i16(struct kr *r);
int32_t kr_i32(struct kr *r);
int64_t kr_i64(struct kr *r);
uint64_t kr_uvarint(struct kr *r);
struct kstr kr_str(struct kr *r);         /* INT16 length, -1 = null */
struct kstr kr_compact_str(struct kr *r); /* UVARINT length + 1, 0 = null */
/* INT32-length bytes; returns a pointer into the request and the length (-1 = null). */
const uint8_t *kr_bytes(struct kr *r, int32_t *len);
/* INT32 array length; -1 = null. Sets err when the count cannot fit in the bytes left (each
 * element takes at least min_elem_bytes), so callers may size allocations from it. */
int32_t kr_array(struct kr *r, size_t min_elem_bytes);
/* The same for a compact array (flexible versions): UVARINT count + 1, 0 = null (-1). */
int32_t kr_compact_array(struct kr *r, size_t min_elem_bytes);
void kr_skip_tagged(struct kr *r);
/* Copies s into out (size n) as a C string; returns -1 when null, too long or containing NUL. */
int kstr_copy(struct kstr s, char *out, size_t n);

struct kw {
    uint8_t *p;
    size_t len;
    size_t cap;
};

void kw_init(struct kw *w);
void kw_release(struct kw *w);
void kw_reserve(struct kw *w, size_t n);
void kw_i8(struct kw *w, int8_t v);
void kw_i16(struct kw *w, int16_t v);
void kw_i32(struct kw *w, int32_t v);
void kw_i64(struct kw *w, int64_t v);
void kw_uvarint(struct kw *w, uint64_t v);
void kw_raw(struct kw *w, const void *p, size_t n);
void kw_str(struct kw *w, const char *s); /* NULL = null string */
void kw_strn(struct kw *w, const char *s, size_t n);
void kw_compact_str(struct kw *w, const char *s);
void kw_bytes(struct kw *w, const void *p, int32_t n); /* n -1 = null */
/* Reserves an INT32 to be filled later with kw_patch_i32 (e.g. an array count). */
size_t kw_mark_i32(struct kw *w);
void kw_patch_i32(struct kw *w, size_t at, int32_t v);

uint32_t be32(const uint8_t *p);
int64_t be64(const uint8_t *p);
void put_be32(uint8_t *p, uint32_t v);
void put_be64(uint8_t *p, uint64_t v);

/* CRC-32C (Castagnoli), as record batches v2 use; hardware-accelerated when the CPU has SSE4.2. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
