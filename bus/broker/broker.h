/* broker.h - the broker's shared state: the event loop, connections, ordered replies, and the
 * request handlers' entry points (server.c: network and data APIs, group.c: the group
 * coordinator and committed offsets).
 *
 * Threading: everything here belongs to the one event-loop thread (broker_run). The admin HTTP
 * server runs on its own threads and only touches metrics (atomic). */
#ifndef BROKER_BROKER_H
#define BROKER_BROKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "acl.h"
#include "limits.h"
#include "sasl.h"
#include "store.h"
#include "wake.h"
#include "txn.h"
#include "wire.h"

enum fsync_policy { FSYNC_ALWAYS, FSYNC_INTERVAL, FSYNC_NEVER };

struct broker_options {
    const char *listen;
    const char *advertised_host;
    int advertised_port; /* 0 = the listening port */
    const char *data_dir;
    enum fsync_policy fsync;
    long fsync_interval_ms;
    struct topic_conf topic_defaults;
    int default_partitions;
    int auto_create_topics;
    long max_request_bytes;
    long max_connections;
    long request_timeout_ms; /* a partial request older than this closes the connection */
    long idle_timeout_ms;
    long retention_check_ms;
    long group_initial_rebalance_delay_ms;
    /* Security (sasl.c, docs/broker.md "Security"). */
    const char *sasl_users_file;    /* NULL or "" = no users */
    int is_sasl_required;           /* unauthenticated clients may only authenticate */
    int is_sasl_plain;              /* PLAIN offered (checked against the SCRAM credentials) */
    const char *acl_file;           /* NULL or "" = every request allowed */
    long sasl_handshake_timeout_ms; /* sasl.required: unauthenticated connections closed after */
    /* Limits (limits.c, server.c). */
    long max_connections_per_address;
    long max_buffered_bytes; /* unsent answer bytes per connection before reading pauses */
    long max_topics;
    long max_partitions_per_topic;
    long max_partitions;
};

struct conn;
struct group;

/* A piece of an answer sent from a segment file with sendfile(2), inserted at byte `at` of the
 * reply's in-memory body. */
struct fpart {
    size_t at;
    int fd; /* dup()ed; closed with the reply */
    uint64_t pos;
    uint32_t len;
};

/* One request's answer, queued on its connection in request order. A handler fills w (the body)
 * and leaves is_ready set, or parks the reply (long-poll fetch, join/sync) and completes it
 * later with reply_done(). wait_seq > 0 holds an acks=all answer until the store is synced. */
struct reply {
    struct reply *next;
    struct conn *conn;
    int32_t corr;
    int16_t api_key, api_version;
    int is_ready;
    int is_silent;       /* acks=0 produce: no answer at all */
    int is_raw;          /* a bare SASL frame (SaslHandshake v0): no correlation id */
    char client_id[128]; /* from the request header (truncated), for DescribeGroups */
    uint64_t wait_seq;
    struct kw w;
    struct fpart *parts; /* file pieces of the body (fetch), in order of `at` */
    size_t n_parts;
    /* Parked state. */
    struct reply **backref;      /* cleared when the reply is freed */
    struct reply *fprev, *fnext; /* parked fetch list */
    uint8_t *req;                /* copy of a parked fetch request body */
    size_t req_len;
    long long deadline_ms;
};

struct broker {
    struct broker_options opt;
    struct store store;
    int ep, lfd;
    struct wake wake; /* broker_stop / broker_reload wake the loop */
    int port;         /* advertised port */
    struct conn **conns;
    size_t n_conns;
    uint64_t synced_seq;
    uint64_t fetch_seen_seq;
    struct reply *fetch_head; /* parked fetches */
    long long next_sync_ms, next_retention_ms, next_gauges_ms;
    int64_t next_pid, pid_limit;
    struct groups *groups;
    struct txns *txns;        /* the transaction coordinator (txn.c) */
    struct syncer *syncer;    /* the fsync thread (fsync always/interval) */
    struct sasl_users *users; /* NULL = nobody can authenticate */
    struct acl_set *acls;     /* NULL = everything allowed */
    volatile int stop;
    volatile int reload; /* set by broker_reload (another thread), handled by the loop */
    /* Shared with the admin HTTP thread (/readyz): the last produce could not be written (a
     * full disk) and none has been since. */
    atomic_int is_storage_failing;
};

int broker_init(struct broker *b, const struct broker_options *opt, char *err, size_t err_len);
/* Runs the event loop until broker_stop(); then closes every connection. */
void broker_run(struct broker *b);
/* Thread-safe: asks broker_run to return. */
void broker_stop(struct broker *b);
void broker_release(struct broker *b);
/* Thread-safe: asks the loop to reload the users (and ACL) files; a file that does not load
 * keeps the rules in force and is logged. */
void broker_reload(struct broker *b);

/* Security (sasl.c). security_load reads the users and ACL files named in b->opt; at start
 * (is_initial) a bad file fails, later a bad file keeps its old contents (each file on its own).
 * Returns 0 or -1 (err filled). */
int security_load(struct broker *b, int is_initial, char *err, size_t err_len);
void security_release(struct broker *b);
/* Whether a connection in session s may make a request of api_key now (Kafka's rule: before
 * authentication only ApiVersions, SaslHandshake and SaslAuthenticate when SASL is required). */
/* Whether the principal of the reply's connection may do op on the resource (acl.h); a denial
 * is counted in bus_broker_acl_denied_total. */
int reply_allowed(struct broker *b, struct reply *r, enum acl_resource res, const char *name,
                  enum acl_op op);
/* The same without counting a denial (to filter lists, e.g. Metadata of every topic). */
int reply_may(struct broker *b, struct reply *r, enum acl_resource res, const char *name,
              enum acl_op op);
int sasl_may_serve(const struct broker *b, const struct sasl_session *s, int16_t api_key);
int handle_sasl_handshake(struct broker *b, struct reply *r, struct kr *q);
int handle_sasl_authenticate(struct broker *b, struct reply *r, struct kr *q);
/* After SaslHandshake v0: one bare auth frame; the answer goes into r->w (sent as a bare frame).
 * -1 = failed, close the connection without an answer. */
int sasl_raw_authenticate(struct broker *b, struct reply *r, const uint8_t *p, size_t n);
/* The SASL session of the reply's connection. */
struct sasl_session *reply_session(struct reply *r);
/* Closes the reply's connection once this answer (and those before it) are sent, and reads no
 * more requests from it (Kafka's way after an authentication error). */
void reply_close_after(struct reply *r);

/* Marks a parked reply complete (body written) and sends what can be sent. */
void reply_done(struct broker *b, struct reply *r);
/* Detaches a parked reply from its owner without completing it. */
void reply_park(struct reply *r, struct reply **slot);

/* Group coordinator and offsets (group.c). Handlers return 0, or -1 for a malformed request
 * (the connection is then closed). */
struct groups *groups_new(struct broker *b, char *err, size_t err_len);
void groups_free(struct groups *g);
void groups_tick(struct broker *b, long long now_ms);
/* A dup() of the offsets file's descriptor when commits were written since the last call (for
 * the fsync thread's next round), else -1. */
int groups_take_dirty_fd(struct broker *b);
long long groups_next_deadline(struct broker *b);
int handle_find_coordinator(struct broker *b, struct reply *r, struct kr *q);
int handle_join_group(struct broker *b, struct reply *r, struct kr *q);
int handle_sync_group(struct broker *b, struct reply *r, struct kr *q);
int handle_heartbeat(struct broker *b, struct reply *r, struct kr *q);
int handle_leave_group(struct broker *b, struct reply *r, struct kr *q);
int handle_offset_commit(struct broker *b, struct reply *r, struct kr *q);
/* KIP-447's check of a TxnOffsetCommit v3: 0 when member mid (empty = not given) of group gid is
 * in generation gen (-1 = not given), else UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION: a consumer
 * that lost its partitions in a rebalance cannot commit them in a transaction. */
int groups_check_generation(struct broker *b, const char *gid, const char *mid, int32_t gen);
int handle_offset_fetch(struct broker *b, struct reply *r, struct kr *q);
int handle_list_groups(struct broker *b, struct reply *r, struct kr *q);
int handle_describe_groups(struct broker *b, struct reply *r, struct kr *q);
/* Configuration and clean-up requests (admin.c); same convention as the group handlers. */
int handle_describe_configs(struct broker *b, struct reply *r, struct kr *q);
int handle_alter_configs(struct broker *b, struct reply *r, struct kr *q);
int handle_incremental_alter_configs(struct broker *b, struct reply *r, struct kr *q);
int handle_delete_groups(struct broker *b, struct reply *r, struct kr *q);
int handle_delete_records(struct broker *b, struct reply *r, struct kr *q);
/* KIP-848 groups are not implemented: every ConsumerGroupHeartbeat is answered
 * UNSUPPORTED_VERSION with a sentence saying so. */
int handle_consumer_group_heartbeat(struct broker *b, struct reply *r, struct kr *q);
/* Sets one topic setting by its Kafka name (retention.ms, retention.bytes, segment.bytes,
 * cleanup.policy, min.insync.replicas) from its text value. Returns 0, INVALID_CONFIG for a bad
 * value (cleanup.policy other than "delete" too) or -1 for a name it does not know, with a
 * sentence in msg. */
int topic_conf_set(struct topic_conf *c, const char *key, const char *value, char *msg,
                   size_t msg_len);
/* The peer address of the reply's connection ("ip:port"). */
const char *reply_peer(const struct reply *r);
/* DeleteGroups: forgets an empty group and its committed offsets (written to the offsets file
 * before returning). Returns 0, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND or KAFKA_STORAGE_ERROR. */
int groups_delete(struct broker *b, const char *gid);
/* Commits one offset now (a transaction's TxnOffsetCommit at its commit, txn.c): written to
 * the offsets file and in effect; synced with the next fsync round (store.write_seq is bumped:
 * an answer with wait_seq = write_seq waits for it). Returns 0, or -1 when the write failed. */
int groups_offset_commit_one(struct broker *b, const char *group, const char *topic, int32_t part,
                             int64_t offset, const char *meta);
/* Forgets offsets of a deleted topic. */
void groups_topic_deleted(struct broker *b, const char *topic);

long long broker_now_ms(void);
/* A new producer id, never handed out before (persisted in blocks); -1 when the next block
 * cannot be persisted (a full disk). */
int64_t broker_pid_alloc(struct broker *b);

/* For the fuzz target: a connection without a socket, and feeding it bytes as if received
 * (whole buffer processed, output discarded; the connection is freed before returning).
 * Returns -1 when the broker would have closed the connection. */
struct conn *broker_conn_detached(struct broker *b);
int broker_conn_feed(struct broker *b, struct conn *c, const uint8_t *data, size_t len);

#endif
