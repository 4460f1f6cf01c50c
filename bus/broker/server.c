/* server.c - the broker's event loop and the data-path requests.
 *
 * One thread, one epoll set: the listening socket, every client connection, and an eventfd
 * for shutdown. Each connection reads length-prefixed requests (protocol guide, "Common Request
 * and Response Structure"), decodes and handles them at once, and queues one reply per request
 * in request order (Kafka clients pipeline requests and match answers by order as well as by
 * correlation id). A reply may wait: acks=all produce answers wait for the fsync policy, fetches
 * long-poll for data, group joins wait for the rebalance. The queue is sent from its head as
 * soon as the head is ready.
 *
 * Limits: max_request_bytes per frame (and so per connection's input buffer, which is freed
 * again once a request larger than IN_KEEP_BYTES was handled), max_connections in all and
 * max_connections_per_address (refused at accept), at most REPLIES_MAX queued replies and
 * max_buffered_bytes unsent bytes per connection (reading pauses beyond), request_timeout_ms for
 * a partial request, idle_timeout_ms for a silent connection, sasl_handshake_timeout_ms for one
 * that does not authenticate when SASL is required. Topic and partition counts: limits.c. A
 * malformed frame, an unknown API key or an unsupported version closes that connection with a
 * log line, except Produce < v3 and Fetch < v4, answered UNSUPPORTED_VERSION. */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"
#include "wake.h"

#define REPLIES_MAX 64
/* An empty input buffer larger than this is freed (it grew for one large request). */
#define IN_KEEP_BYTES (1u << 20)
#define FETCH_MAX_BYTES (64 << 20)
/* At most this much per partition in one fetch answer (still at least one whole batch, and
 * never less than the request's min_bytes), whatever the client's partition_max_bytes: a
 * consumer of many partitions gets its first messages after a few hundred KiB instead of
 * partitions x 1 MiB, and its parsing overlaps the next fetch (docs/performance.md). */
#define FETCH_PART_MAX_BYTES (256 << 10)

enum api {
    API_PRODUCE = 0,
    API_FETCH = 1,
    API_LIST_OFFSETS = 2,
    API_METADATA = 3,
    API_OFFSET_COMMIT = 8,
    API_OFFSET_FETCH = 9,
    API_FIND_COORDINATOR = 10,
    API_JOIN_GROUP = 11,
    API_HEARTBEAT = 12,
    API_LEAVE_GROUP = 13,
    API_SYNC_GROUP = 14,
    API_DESCRIBE_GROUPS = 15,
    API_LIST_GROUPS = 16,
    API_SASL_HANDSHAKE = 17,
    API_API_VERSIONS = 18,
    API_CREATE_TOPICS = 19,
    API_DELETE_TOPICS = 20,
    API_DELETE_RECORDS = 21,
    API_INIT_PRODUCER_ID = 22,
    API_ADD_PARTITIONS_TO_TXN = 24, /* transactions: txn.c */
    API_ADD_OFFSETS_TO_TXN = 25,
    API_END_TXN = 26,
    API_TXN_OFFSET_COMMIT = 28,
    API_SASL_AUTHENTICATE = 36,
    API_DESCRIBE_CONFIGS = 32,
    API_ALTER_CONFIGS = 33,
    API_CREATE_PARTITIONS = 37,
    API_DELETE_GROUPS = 42,
    API_INCREMENTAL_ALTER_CONFIGS = 44,
    API_CONSUMER_GROUP_HEARTBEAT = 68,
};

typedef int (*handler_fn)(struct broker *b, struct reply *r, struct kr *q);

static int handle_produce(struct broker *b, struct reply *r, struct kr *q);
static int handle_fetch(struct broker *b, struct reply *r, struct kr *q);
static int handle_list_offsets(struct broker *b, struct reply *r, struct kr *q);
static int handle_metadata(struct broker *b, struct reply *r, struct kr *q);
static int handle_api_versions(struct broker *b, struct reply *r, struct kr *q);
static int handle_create_topics(struct broker *b, struct reply *r, struct kr *q);
static int handle_delete_topics(struct broker *b, struct reply *r, struct kr *q);
static int handle_init_producer_id(struct broker *b, struct reply *r, struct kr *q);
static int handle_create_partitions(struct broker *b, struct reply *r, struct kr *q);
static void kw_kstr(struct kw *w, struct kstr s);

/* The versions we implement: all non-flexible except ApiVersions v3 (whose response header stays
 * v0), SaslAuthenticate v2, TxnOffsetCommit v3 (KIP-447: librdkafka sends the consumer's
 * generation with the offsets only in v3) and OffsetFetch v6-v7 (KIP-447: v7's require_stable
 * makes a read_committed consumer wait for a transaction's pending offsets). librdkafka
 * negotiates the highest version both sides support. */
static const struct api_def {
    int16_t key, min, max;
    const char *name;
    handler_fn fn;
} APIS[] = {
    {API_PRODUCE, 3, 7, "Produce", handle_produce},
    {API_FETCH, 4, 11, "Fetch", handle_fetch},
    {API_LIST_OFFSETS, 1, 5, "ListOffsets", handle_list_offsets},
    {API_METADATA, 0, 8, "Metadata", handle_metadata},
    {API_OFFSET_COMMIT, 2, 7, "OffsetCommit", handle_offset_commit},
    {API_OFFSET_FETCH, 1, 7, "OffsetFetch", handle_offset_fetch},
    {API_FIND_COORDINATOR, 0, 2, "FindCoordinator", handle_find_coordinator},
    {API_JOIN_GROUP, 0, 5, "JoinGroup", handle_join_group},
    {API_HEARTBEAT, 0, 3, "Heartbeat", handle_heartbeat},
    {API_LEAVE_GROUP, 0, 2, "LeaveGroup", handle_leave_group},
    {API_SYNC_GROUP, 0, 3, "SyncGroup", handle_sync_group},
    {API_DESCRIBE_GROUPS, 0, 4, "DescribeGroups", handle_describe_groups},
    {API_LIST_GROUPS, 0, 2, "ListGroups", handle_list_groups},
    {API_SASL_HANDSHAKE, 0, 1, "SaslHandshake", handle_sasl_handshake},
    {API_API_VERSIONS, 0, 3, "ApiVersions", handle_api_versions},
    {API_CREATE_TOPICS, 0, 4, "CreateTopics", handle_create_topics},
    {API_DELETE_TOPICS, 0, 3, "DeleteTopics", handle_delete_topics},
    {API_INIT_PRODUCER_ID, 0, 1, "InitProducerId", handle_init_producer_id},
    {API_SASL_AUTHENTICATE, 0, 2, "SaslAuthenticate", handle_sasl_authenticate},
    {API_DESCRIBE_CONFIGS, 0, 2, "DescribeConfigs", handle_describe_configs},
    {API_CREATE_PARTITIONS, 0, 1, "CreatePartitions", handle_create_partitions},
    {API_DELETE_RECORDS, 0, 1, "DeleteRecords", handle_delete_records},
    {API_ALTER_CONFIGS, 0, 1, "AlterConfigs", handle_alter_configs},
    {API_DELETE_GROUPS, 0, 1, "DeleteGroups", handle_delete_groups},
    {API_INCREMENTAL_ALTER_CONFIGS, 0, 0, "IncrementalAlterConfigs",
     handle_incremental_alter_configs},
    {API_CONSUMER_GROUP_HEARTBEAT, 0, 1, "ConsumerGroupHeartbeat", handle_consumer_group_heartbeat},
    /* Transactions (txn.c) */
    {API_ADD_PARTITIONS_TO_TXN, 0, 1, "AddPartitionsToTxn", handle_add_partitions_to_txn},
    {API_ADD_OFFSETS_TO_TXN, 0, 1, "AddOffsetsToTxn", handle_add_offsets_to_txn},
    {API_END_TXN, 0, 1, "EndTxn", handle_end_txn},
    {API_TXN_OFFSET_COMMIT, 0, 3, "TxnOffsetCommit", handle_txn_offset_commit},
};
#define N_APIS (sizeof APIS / sizeof APIS[0])

struct conn {
    int fd;
    char peer[64];
    char ip[INET_ADDRSTRLEN]; /* for max_connections_per_address */
    long long created_ms;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    struct reply *rhead, *rtail;
    int n_replies;
    struct reply *sending; /* an answer with file parts being sent after the out buffer */
    size_t chunk, chunk_off;
    long long partial_since_ms, last_active_ms;
    int is_closing, wants_out;
    int is_closing_after_send; /* reply_close_after: no more requests, close once sent */
    struct sasl_session sasl;
};

static struct metric *m_bytes_in, *m_bytes_out, *m_conns, *m_fsync, *m_requests[N_APIS];
static struct metric *m_bad_requests;
/* bus_broker_connections_refused_total{reason} */
enum refused { REFUSED_MAX_CONNECTIONS, REFUSED_PER_ADDRESS, REFUSED_UNAUTHENTICATED, N_REFUSED };
static const char *const REFUSED_REASONS[N_REFUSED] = {"max_connections", "per_address",
                                                       "unauthenticated"};
static struct metric *m_refused[N_REFUSED];

long long broker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- replies ---- */

static void fetch_unlink(struct broker *b, struct reply *r)
{
    if (r->fprev) {
        r->fprev->fnext = r->fnext;
    } else if (b->fetch_head == r) {
        b->fetch_head = r->fnext;
    }
    if (r->fnext) {
        r->fnext->fprev = r->fprev;
    }
    r->fprev = r->fnext = NULL;
}

static void parts_free(struct fpart *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (parts[i].fd >= 0) {
            close(parts[i].fd);
        }
    }
    free(parts);
}

static void reply_free(struct broker *b, struct reply *r)
{
    if (r->backref) {
        *r->backref = NULL;
    }
    fetch_unlink(b, r);
    parts_free(r->parts, r->n_parts);
    free(r->req);
    kw_release(&r->w);
    free(r);
}

void reply_park(struct reply *r, struct reply **slot)
{
    r->is_ready = 0;
    r->backref = slot;
    *slot = r;
}

static void conn_flush(struct broker *b, struct conn *c);

void reply_done(struct broker *b, struct reply *r)
{
    if (r->backref) {
        *r->backref = NULL;
        r->backref = NULL;
    }
    r->is_ready = 1;
    conn_flush(b, r->conn);
}

/* ---- connections ---- */

const char *reply_peer(const struct reply *r)
{
    return r->conn->peer;
}

struct sasl_session *reply_session(struct reply *r)
{
    return &r->conn->sasl;
}

void reply_close_after(struct reply *r)
{
    r->conn->is_closing_after_send = 1;
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->is_closing) {
        return;
    }
    if (why) {
        log_warn("closing connection from %s: %s", c->peer, why);
    }
    c->is_closing = 1;
}

static void conn_destroy(struct broker *b, struct conn *c)
{
    if (c->sending) {
        reply_free(b, c->sending);
    }
    while (c->rhead) {
        struct reply *r = c->rhead;
        c->rhead = r->next;
        reply_free(b, r);
    }
    if (c->fd >= 0) {
        epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    sasl_session_release(&c->sasl);
    free(c->in);
    free(c->out);
    free(c);
    metric_add(m_conns, -1);
}

static void conn_set_out(struct broker *b, struct conn *c, int want)
{
    if (c->fd < 0 || c->wants_out == want) {
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->wants_out = want;
}

/* Sends the chunks of c->sending after the out buffer: chunk 2k is file part k (sendfile),
 * chunk 2k+1 the memory between part k and the next part (or the end of the body). Returns 1
 * when the answer is complete, 0 when the socket is full, -1 on error. */
static int conn_send_parts(struct conn *c)
{
    struct reply *r = c->sending;
    size_t n_chunks = 2 * r->n_parts;
    while (c->chunk < n_chunks) {
        size_t k = c->chunk / 2;
        ssize_t n;
        size_t len;
        if (c->chunk % 2 == 0) {
            len = r->parts[k].len;
            off_t pos = (off_t)(r->parts[k].pos + c->chunk_off);
            n = len > c->chunk_off ? sendfile(c->fd, r->parts[k].fd, &pos, len - c->chunk_off) : 0;
        } else {
            size_t from = r->parts[k].at;
            size_t to = k + 1 < r->n_parts ? r->parts[k + 1].at : r->w.len;
            len = to - from;
            n = len > c->chunk_off ? write(c->fd, r->w.p + from + c->chunk_off, len - c->chunk_off)
                                   : 0;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        if (n == 0 && len > c->chunk_off) {
            return -1; /* the file shrank under us (truncated): give up on this client */
        }
        metric_add(m_bytes_out, (double)n);
        c->chunk_off += (size_t)n;
        if (c->chunk_off >= len) {
            c->chunk++;
            c->chunk_off = 0;
        }
    }
    return 1;
}

static void conn_write(struct broker *b, struct conn *c)
{
    if (c->fd < 0) {
        /* A detached (fuzzing) connection discards output. */
        c->out_off = c->out_len = 0;
        if (c->sending) {
            reply_free(b, c->sending);
            c->sending = NULL;
        }
        return;
    }
    while (c->out_off < c->out_len && !c->is_closing) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            conn_close(c, NULL);
            return;
        }
        metric_add(m_bytes_out, (double)n);
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    if (c->out_len == 0 && c->sending && !c->is_closing) {
        int rc = conn_send_parts(c);
        if (rc < 0) {
            conn_close(c, NULL);
            return;
        }
        if (rc == 1) {
            reply_free(b, c->sending);
            c->sending = NULL;
        }
    }
    if (c->is_closing_after_send && c->out_len == 0 && !c->sending && !c->rhead) {
        conn_close(c, NULL);
        return;
    }
    conn_set_out(b, c, c->out_off < c->out_len || c->sending != NULL);
}

static void out_append(struct conn *c, const void *p, size_t n)
{
    size_t need = c->out_len + n;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    if (n) {
        memcpy(c->out + c->out_len, p, n);
    }
    c->out_len += n;
}

/* Moves ready answers from the head of the queue to the socket, in order. */
static void conn_flush(struct broker *b, struct conn *c)
{
    for (int round = 0; round < 64; round++) {
        while (!c->sending && c->rhead && c->rhead->is_ready &&
               c->rhead->wait_seq <= b->synced_seq) {
            struct reply *r = c->rhead;
            c->rhead = r->next;
            if (!c->rhead) {
                c->rtail = NULL;
            }
            c->n_replies--;
            if (r->is_silent) {
                reply_free(b, r);
                continue;
            }
            size_t body = r->w.len;
            for (size_t i = 0; i < r->n_parts; i++) {
                body += r->parts[i].len;
            }
            uint8_t hdr[8];
            put_be32(hdr, (uint32_t)(r->is_raw ? body : 4 + body));
            put_be32(hdr + 4, (uint32_t)r->corr);
            out_append(c, hdr, r->is_raw ? 4 : 8);
            if (r->n_parts) {
                out_append(c, r->w.p, r->parts[0].at);
                r->next = NULL;
                c->sending = r;
                c->chunk = c->chunk_off = 0;
            } else {
                out_append(c, r->w.p, r->w.len);
                reply_free(b, r);
            }
        }
        struct reply *was = c->sending;
        conn_write(b, c);
        if (!was || c->sending || c->is_closing) {
            break; /* nothing finished that could let more answers go */
        }
    }
}

static const struct api_def *api_find(int16_t key)
{
    for (size_t i = 0; i < N_APIS; i++) {
        if (APIS[i].key == key) {
            return &APIS[i];
        }
    }
    return NULL;
}

/* Produce v0-v2 and Fetch v0-v3 (what clients send when told the broker is older than 0.11,
 * e.g. librdkafka's api.version.request=false): answered in their own layout with
 * UNSUPPORTED_VERSION for every partition, so the client reports the real cause instead of a
 * closed connection. Returns -1 for other APIs and versions (the connection is then closed). */
static int answer_unsupported(struct conn *c, int16_t key, int16_t ver, int32_t corr,
                              const struct kr *req)
{
    int is_produce = key == API_PRODUCE && ver >= 0 && ver < 3;
    int is_fetch = key == API_FETCH && ver >= 0 && ver < 4;
    if (!is_produce && !is_fetch) {
        return -1;
    }
    struct kr qq = *req, *q = &qq;
    struct kw w;
    kw_init(&w);
    if (is_produce) {
        if (kr_i16(q) == 0) {
            return -1; /* acks=0 expects no answer: closing is how Kafka reports its errors */
        }
        (void)kr_i32(q); /* timeout */
    } else {
        (void)kr_i32(q); /* replica_id */
        (void)kr_i32(q); /* max_wait_ms */
        (void)kr_i32(q); /* min_bytes */
        if (ver >= 3) {
            (void)kr_i32(q); /* max_bytes */
        }
        if (ver >= 1) {
            kw_i32(&w, 0); /* throttle_time_ms */
        }
    }
    int32_t nt = kr_array(q, 4);
    kw_i32(&w, nt < 0 ? 0 : nt);
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = kr_str(q);
        int32_t np = kr_array(q, is_produce ? 8 : 16);
        kw_kstr(&w, tname);
        kw_i32(&w, np < 0 ? 0 : np);
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t idx = kr_i32(q);
            if (is_produce) {
                int32_t n;
                (void)kr_bytes(q, &n);
            } else {
                (void)kr_i64(q);
                (void)kr_i32(q);
            }
            kw_i32(&w, idx);
            kw_i16(&w, KERR_UNSUPPORTED_VERSION);
            kw_i64(&w, -1); /* base_offset / high_watermark */
            if (is_produce && ver >= 2) {
                kw_i64(&w, -1); /* log_append_time */
            }
            if (!is_produce) {
                kw_i32(&w, 0); /* empty record set */
            }
        }
    }
    if (is_produce && ver >= 1) {
        kw_i32(&w, 0); /* throttle_time_ms */
    }
    if (q->err) {
        kw_release(&w);
        return -1;
    }
    struct reply *r = xcalloc(1, sizeof *r);
    r->conn = c;
    r->corr = corr;
    r->api_key = key;
    r->api_version = ver;
    r->is_ready = 1;
    r->w = w;
    if (c->rtail) {
        c->rtail->next = r;
    } else {
        c->rhead = r;
    }
    c->rtail = r;
    c->n_replies++;
    return 0;
}

/* Handles one complete request frame (without its length prefix). Returns -1 when the
 * connection must be closed. */
static int handle_frame(struct broker *b, struct conn *c, uint8_t *frame, size_t len)
{
    struct kr q;
    kr_init(&q, frame, len);
    int16_t key = kr_i16(&q), ver = kr_i16(&q);
    int32_t corr = kr_i32(&q);
    struct kstr client = kr_str(&q);
    if (q.err) {
        conn_close(c, "malformed request header");
        return -1;
    }
    const struct api_def *api = api_find(key);
    if (!api) {
        log_warn("unknown API key %d from %s", (int)key, c->peer);
        metric_inc(m_bad_requests);
        conn_close(c, "unknown API key");
        return -1;
    }
    if (ver < api->min || ver > api->max) {
        if (answer_unsupported(c, key, ver, corr, &q) == 0) {
            log_warn("unsupported %s version %d from %s: answered UNSUPPORTED_VERSION", api->name,
                     (int)ver, c->peer);
            metric_inc(m_bad_requests);
            return 0;
        }
        if (key != API_API_VERSIONS) {
            log_warn("unsupported %s version %d from %s", api->name, (int)ver, c->peer);
            metric_inc(m_bad_requests);
            conn_close(c, "unsupported API version");
            return -1;
        }
        /* KIP-511: answer ApiVersions of an unknown version in v0 form with the list, so the
         * client retries with a version we speak. */
        ver = 0;
        kr_init(&q, NULL, 0);
        q.err = 2;
    }
    if ((key == API_API_VERSIONS && ver >= 3) || (key == API_SASL_AUTHENTICATE && ver >= 2) ||
        (key == API_TXN_OFFSET_COMMIT && ver >= 3) || (key == API_OFFSET_FETCH && ver >= 6)) {
        kr_skip_tagged(&q); /* request header v2 */
    }
    if (!sasl_may_serve(b, &c->sasl, key)) {
        log_warn("%s request from %s before SASL authentication: closing", api->name, c->peer);
        metric_inc(m_refused[REFUSED_UNAUTHENTICATED]);
        conn_close(c, NULL);
        return -1;
    }
    metric_inc(m_requests[api - APIS]);
    struct reply *r = xcalloc(1, sizeof *r);
    r->conn = c;
    r->corr = corr;
    r->api_key = key;
    r->api_version = ver;
    r->is_ready = 1;
    if (client.ptr) {
        size_t n = (size_t)client.len < sizeof r->client_id - 1 ? (size_t)client.len
                                                                : sizeof r->client_id - 1;
        memcpy(r->client_id, client.ptr, n);
        r->client_id[n] = 0;
        for (size_t i = 0; i < n; i++) {
            if (r->client_id[i] == 0) {
                r->client_id[i] = '?';
            }
        }
    }
    kw_init(&r->w);
    if (c->rtail) {
        c->rtail->next = r;
    } else {
        c->rhead = r;
    }
    c->rtail = r;
    c->n_replies++;
    int rc = api->fn(b, r, &q);
    if (rc != 0 || (q.err && q.err != 2)) {
        log_warn("malformed %s v%d request from %s", api->name, (int)ver, c->peer);
        metric_inc(m_bad_requests);
        conn_close(c, "malformed request");
        return -1;
    }
    return 0;
}

/* A bare SASL frame after SaslHandshake v0: answered with a bare frame, in order. */
static int handle_raw_sasl(struct broker *b, struct conn *c, uint8_t *frame, size_t len)
{
    struct reply *r = xcalloc(1, sizeof *r);
    r->conn = c;
    r->is_ready = 1;
    r->is_raw = 1;
    kw_init(&r->w);
    if (c->rtail) {
        c->rtail->next = r;
    } else {
        c->rhead = r;
    }
    c->rtail = r;
    c->n_replies++;
    if (sasl_raw_authenticate(b, r, frame, len) != 0) {
        conn_close(c, NULL);
        return -1;
    }
    return 0;
}

static void conn_process(struct broker *b, struct conn *c)
{
    size_t off = 0;
    while (!c->is_closing && !c->is_closing_after_send && c->n_replies < REPLIES_MAX &&
           c->out_len - c->out_off < (size_t)b->opt.max_buffered_bytes) {
        if (c->in_len - off < 4) {
            break;
        }
        uint32_t size = be32(c->in + off);
        int is_raw = c->sasl.is_raw;
        if ((is_raw ? size > 65536 : size < 10) || size > (uint32_t)b->opt.max_request_bytes) {
            log_warn("request size %u from %s out of bounds (10..%ld)", size, c->peer,
                     b->opt.max_request_bytes);
            conn_close(c, "bad request size");
            break;
        }
        if (c->in_len - off - 4 < size) {
            break;
        }
        if ((is_raw ? handle_raw_sasl(b, c, c->in + off + 4, size)
                    : handle_frame(b, c, c->in + off + 4, size)) != 0) {
            break;
        }
        off += 4 + (size_t)size;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > IN_KEEP_BYTES) {
        /* A large request was handled: give its buffer back rather than keep it for the
         * connection's life (max_connections of them would hold max_request_bytes each). */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    c->partial_since_ms =
        c->in_len ? (c->partial_since_ms ? c->partial_since_ms : broker_now_ms()) : 0;
    conn_flush(b, c);
}

static void conn_read(struct broker *b, struct conn *c)
{
    /* A bounded number of reads per readiness event, so one fast client cannot starve the
     * others (epoll is level-triggered: the rest is read on the next turn). */
    for (int reads = 0; reads < 16; reads++) {
        if (c->n_replies >= REPLIES_MAX ||
            c->out_len - c->out_off >= (size_t)b->opt.max_buffered_bytes ||
            c->is_closing_after_send) {
            break; /* back-pressure (or closing): leave the rest in the socket */
        }
        if (c->in_cap - c->in_len < 65536) {
            size_t want = c->in_len + 65536;
            if (c->in_len >= 4) {
                size_t frame = 4 + (size_t)be32(c->in);
                if (frame <= (size_t)b->opt.max_request_bytes + 4 && frame > want) {
                    want = frame;
                }
            }
            size_t cap = c->in_cap ? c->in_cap : 65536;
            while (cap < want) {
                cap *= 2;
            }
            if (cap != c->in_cap) {
                c->in = xrealloc(c->in, cap);
                c->in_cap = cap;
            }
        }
        /* A large request is read up to its own end, not into the next one: the bytes of a
         * partial next request would otherwise be moved to the front of the buffer after
         * this one is handled (up to a whole produce request copied once more). */
        size_t room = c->in_cap - c->in_len;
        if (c->in_len >= 4) {
            size_t frame = 4 + (size_t)be32(c->in);
            if (frame >= 65536 && frame > c->in_len && frame - c->in_len < room) {
                room = frame - c->in_len;
            }
        }
        ssize_t n = read(c->fd, c->in + c->in_len, room);
        if (n == 0) {
            conn_close(c, NULL);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_close(c, NULL);
            }
            break;
        }
        metric_add(m_bytes_in, (double)n);
        c->in_len += (size_t)n;
        c->last_active_ms = broker_now_ms();
        conn_process(b, c);
        if (c->is_closing) {
            return;
        }
    }
    conn_process(b, c);
}

static struct conn *conn_add(struct broker *b, int fd, const char *peer)
{
    struct conn *c = xcalloc(1, sizeof *c);
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->last_active_ms = c->created_ms = broker_now_ms();
    sasl_session_init(&c->sasl);
    b->conns = xrealloc(b->conns, (b->n_conns + 1) * sizeof *b->conns);
    b->conns[b->n_conns++] = c;
    metric_add(m_conns, 1);
    return c;
}

static void accept_all(struct broker *b)
{
    for (;;) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(b->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        char peer[64], ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
        snprintf(peer, sizeof peer, "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
        if ((long)b->n_conns >= b->opt.max_connections) {
            log_warn("refusing connection from %s: max_connections (%ld) reached", peer,
                     b->opt.max_connections);
            metric_inc(m_refused[REFUSED_MAX_CONNECTIONS]);
            close(fd);
            continue;
        }
        long same = 0;
        for (size_t i = 0; i < b->n_conns; i++) {
            same += !b->conns[i]->is_closing && !strcmp(b->conns[i]->ip, ip);
        }
        if (same >= b->opt.max_connections_per_address) {
            /* Debug: a client hammering the port would flood the log; the metric counts. */
            log_debug("refusing connection from %s: max_connections_per_address (%ld) reached",
                      peer, b->opt.max_connections_per_address);
            metric_inc(m_refused[REFUSED_PER_ADDRESS]);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = conn_add(b, fd, peer);
        snprintf(c->ip, sizeof c->ip, "%s", ip);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(c, "epoll_ctl failed");
        }
    }
}

static void reap_closed(struct broker *b)
{
    for (size_t i = 0; i < b->n_conns;) {
        struct conn *c = b->conns[i];
        if (c->is_closing) {
            b->conns[i] = b->conns[--b->n_conns];
            conn_destroy(b, c);
        } else {
            i++;
        }
    }
}

/* ---- fsync policy ----
 *
 * fdatasync runs on a helper thread so the loop keeps reading and appending while the disk
 * syncs: the loop hands over the dirty partitions (dup()ed descriptors) with the write sequence
 * they cover, the thread syncs them and reports through a struct wake (wake.h), and the loop then
 * releases the acks=all answers up to that sequence. Writes that arrive meanwhile form the next
 * round (group commit). State shared with the thread: the fields under mu. */

struct syncer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wake wake; /* the thread -> the loop: a round is done */
    /* under mu: */
    int *fds;
    size_t n_fds;
    uint64_t job_seq, done_seq;
    int has_job, is_busy, stop;
};

static void *syncer_main(void *arg)
{
    struct syncer *y = arg;
    pthread_mutex_lock(&y->mu);
    for (;;) {
        while (!y->has_job && !y->stop) {
            pthread_cond_wait(&y->cv, &y->mu);
        }
        if (y->stop) {
            break;
        }
        int *fds = y->fds;
        size_t n = y->n_fds;
        uint64_t seq = y->job_seq;
        y->has_job = 0;
        pthread_mutex_unlock(&y->mu);
        struct timespec a, z;
        clock_gettime(CLOCK_MONOTONIC, &a);
        /* Start the write-back of every dirty file first, then wait for each: the disk gets
         * the whole round at once instead of one partition after another. fdatasync still
         * runs on every file (sync_file_range alone syncs no metadata and flushes no cache). */
        if (n > 1) {
            for (size_t i = 0; i < n; i++) {
                (void)sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE);
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (fdatasync(fds[i]) != 0) {
                log_error("fdatasync failed: %s", strerror(errno));
            }
            close(fds[i]);
        }
        free(fds);
        clock_gettime(CLOCK_MONOTONIC, &z);
        metric_observe(m_fsync,
                       (double)(z.tv_sec - a.tv_sec) + (double)(z.tv_nsec - a.tv_nsec) / 1e9);
        pthread_mutex_lock(&y->mu);
        y->done_seq = seq;
        y->is_busy = 0;
        wake_signal(&y->wake);
    }
    pthread_mutex_unlock(&y->mu);
    return NULL;
}

static void flush_waiting(struct broker *b)
{
    for (size_t i = 0; i < b->n_conns; i++) {
        if (b->conns[i]->rhead) {
            conn_flush(b, b->conns[i]);
        }
    }
}

/* Starts a sync round when none is running and something was written since the last one. */
static void sync_start(struct broker *b)
{
    struct syncer *y = b->syncer;
    pthread_mutex_lock(&y->mu);
    if (!y->is_busy && b->store.write_seq > y->done_seq) {
        size_t n;
        int *fds = store_take_dirty(&b->store, &n);
        int gfd = groups_take_dirty_fd(b);
        if (gfd >= 0) {
            fds = xrealloc(fds, (n + 1) * sizeof *fds);
            fds[n++] = gfd;
        }
        if (n == 0) {
            free(fds);
            y->done_seq = b->store.write_seq; /* nothing dirty left (e.g. topic deleted) */
            b->synced_seq = y->done_seq;
        } else {
            y->fds = fds;
            y->n_fds = n;
            y->job_seq = b->store.write_seq;
            y->has_job = y->is_busy = 1;
            pthread_cond_signal(&y->cv);
        }
    }
    pthread_mutex_unlock(&y->mu);
}

static void sync_collect(struct broker *b)
{
    struct syncer *y = b->syncer;
    wake_drain(&y->wake);
    pthread_mutex_lock(&y->mu);
    uint64_t done = y->done_seq;
    pthread_mutex_unlock(&y->mu);
    if (done > b->synced_seq) {
        b->synced_seq = done;
        flush_waiting(b);
    }
}

static int syncer_start(struct broker *b)
{
    struct syncer *y = xcalloc(1, sizeof *y);
    pthread_mutex_init(&y->mu, NULL);
    pthread_cond_init(&y->cv, NULL);
    int wake_rc = wake_init(&y->wake);
    y->done_seq = b->store.write_seq;
    if (wake_rc != 0 || pthread_create(&y->th, NULL, syncer_main, y) != 0) {
        wake_close(&y->wake);
        free(y);
        return -1;
    }
    b->syncer = y;
    return 0;
}

static void syncer_stop(struct broker *b)
{
    struct syncer *y = b->syncer;
    if (!y) {
        return;
    }
    pthread_mutex_lock(&y->mu);
    y->stop = 1;
    pthread_cond_signal(&y->cv);
    pthread_mutex_unlock(&y->mu);
    pthread_join(y->th, NULL);
    if (y->has_job) {
        for (size_t i = 0; i < y->n_fds; i++) {
            (void)fdatasync(y->fds[i]);
            close(y->fds[i]);
        }
        free(y->fds);
    }
    wake_close(&y->wake);
    pthread_mutex_destroy(&y->mu);
    pthread_cond_destroy(&y->cv);
    free(y);
    b->syncer = NULL;
}

/* Synchronous sync on the loop thread (shutdown, and the detached fuzzing broker). */
static void sync_now(struct broker *b)
{
    if (b->store.write_seq == b->synced_seq) {
        return;
    }
    store_sync(&b->store);
    int gfd = groups_take_dirty_fd(b);
    if (gfd >= 0) {
        if (fdatasync(gfd) != 0) {
            log_error("offsets file: fdatasync failed: %s", strerror(errno));
        }
        close(gfd);
    }
    b->synced_seq = b->store.write_seq;
    flush_waiting(b);
}

/* ---- helpers for handlers ---- */

static struct partition *find_partition(struct broker *b, struct kstr topic, int32_t part,
                                        struct topic **t_out)
{
    char name[STORE_MAX_NAME + 1];
    if (kstr_copy(topic, name, sizeof name) != 0) {
        return NULL;
    }
    struct topic *t = store_topic_find(&b->store, name);
    if (t_out) {
        *t_out = t;
    }
    if (!t || part < 0 || part >= t->n_parts) {
        return NULL;
    }
    return t->parts[part];
}

/* ACLs on a topic named in a request (acl.h): allowed when no ACL file is loaded. A name that
 * cannot be a topic is let through to the handler's own error. */
static int topic_allowed(struct broker *b, struct reply *r, struct kstr t, enum acl_op op)
{
    char name[STORE_MAX_NAME + 1];
    if (!b->acls || kstr_copy(t, name, sizeof name) != 0) {
        return 1;
    }
    return reply_allowed(b, r, ACL_TOPIC, name, op);
}

static void kw_kstr(struct kw *w, struct kstr s)
{
    if (!s.ptr) {
        kw_i16(w, -1);
    } else {
        kw_strn(w, s.ptr, (size_t)s.len);
    }
}

/* ---- ApiVersions (protocol guide: ApiVersions v0-v3) ---- */

/* The lowest version advertised: Produce and Fetch from v0, though v0-v2 and v0-v3 are answered
 * UNSUPPORTED_VERSION (answer_unsupported). librdkafka before 2.8 (issue 4956) enables gzip,
 * snappy and lz4 only when the broker's ranges include Produce v2 and Fetch v2 and otherwise
 * sends every batch uncompressed, saying so only in a debug log; Kafka 4.0 advertises Produce
 * v0-v2 for the same reason (KAFKA-18659). Clients pick the highest common version, so none
 * that speaks v3/v4 sends the old ones. */
static int16_t advertised_min(const struct api_def *api)
{
    return api->key == API_PRODUCE || api->key == API_FETCH ? 0 : api->min;
}

static int handle_api_versions(struct broker *b, struct reply *r, struct kr *q)
{
    (void)b;
    int16_t v = r->api_version;
    int unsupported = q->err == 2;
    if (v >= 3 && !unsupported) {
        (void)kr_compact_str(q); /* client_software_name */
        (void)kr_compact_str(q); /* client_software_version */
        kr_skip_tagged(q);
    }
    struct kw *w = &r->w;
    kw_i16(w, unsupported ? KERR_UNSUPPORTED_VERSION : 0);
    if (v >= 3) {
        kw_uvarint(w, N_APIS + 1);
    } else {
        kw_i32(w, (int32_t)N_APIS);
    }
    for (size_t i = 0; i < N_APIS; i++) {
        kw_i16(w, APIS[i].key);
        kw_i16(w, advertised_min(&APIS[i]));
        kw_i16(w, APIS[i].max);
        if (v >= 3) {
            kw_uvarint(w, 0);
        }
    }
    if (v >= 1) {
        kw_i32(w, 0);
    }
    if (v >= 3) {
        kw_uvarint(w, 0);
    }
    return 0;
}

/* ---- Metadata v0-v8 ---- */

static void metadata_topic(struct broker *b, struct kw *w, int16_t v, int16_t err, const char *name,
                           struct topic *t)
{
    kw_i16(w, err);
    kw_str(w, name);
    if (v >= 1) {
        kw_i8(w, 0); /* is_internal */
    }
    int32_t n = t ? t->n_parts : 0;
    kw_i32(w, n);
    for (int32_t i = 0; i < n; i++) {
        kw_i16(w, 0);
        kw_i32(w, i);
        kw_i32(w, 0); /* leader */
        if (v >= 7) {
            kw_i32(w, 0); /* leader_epoch */
        }
        kw_i32(w, 1);
        kw_i32(w, 0); /* replicas */
        kw_i32(w, 1);
        kw_i32(w, 0); /* isr */
        if (v >= 5) {
            kw_i32(w, 0); /* offline replicas */
        }
    }
    if (v >= 8) {
        kw_i32(w, INT32_MIN); /* topic_authorized_operations: not requested */
    }
    (void)b;
}

static int handle_metadata(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int32_t n = kr_array(q, 2);
    struct kstr names[1024];
    if (n > (int32_t)(sizeof names / sizeof names[0])) {
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        names[i] = kr_str(q);
    }
    int allow_create = 1;
    if (v >= 4) {
        allow_create = kr_i8(q) != 0;
    }
    if (v >= 8) {
        (void)kr_i8(q);
        (void)kr_i8(q);
    }
    if (q->err) {
        return -1;
    }
    struct kw *w = &r->w;
    if (v >= 3) {
        kw_i32(w, 0);
    }
    kw_i32(w, 1);
    kw_i32(w, 0);
    kw_str(w, b->opt.advertised_host);
    kw_i32(w, b->port);
    if (v >= 1) {
        kw_str(w, NULL); /* rack */
    }
    if (v >= 2) {
        kw_str(w, "bus-broker-single-node");
    }
    if (v >= 1) {
        kw_i32(w, 0); /* controller */
    }
    int all = n < 0 || (v == 0 && n == 0);
    if (all) {
        /* Only the topics the principal may describe (Kafka filters them silently). */
        size_t mark = kw_mark_i32(w);
        int32_t count = 0;
        for (size_t i = 0; i < b->store.n_topics; i++) {
            struct topic *t = b->store.topics[i];
            if (!reply_may(b, r, ACL_TOPIC, t->name, ACL_DESCRIBE)) {
                continue;
            }
            metadata_topic(b, w, v, 0, t->name, t);
            count++;
        }
        kw_patch_i32(w, mark, count);
    } else {
        kw_i32(w, n);
        for (int32_t i = 0; i < n; i++) {
            char name[STORE_MAX_NAME + 1];
            if (kstr_copy(names[i], name, sizeof name) != 0 || !store_topic_name_valid(name)) {
                kw_i16(w, KERR_INVALID_TOPIC_EXCEPTION);
                kw_kstr(w, names[i]);
                if (v >= 1) {
                    kw_i8(w, 0);
                }
                kw_i32(w, 0);
                if (v >= 8) {
                    kw_i32(w, INT32_MIN);
                }
                continue;
            }
            if (!reply_allowed(b, r, ACL_TOPIC, name, ACL_DESCRIBE)) {
                metadata_topic(b, w, v, KERR_TOPIC_AUTHORIZATION_FAILED, name, NULL);
                continue;
            }
            struct topic *t = store_topic_find(&b->store, name);
            int terr = 0;
            if (!t && b->opt.auto_create_topics && allow_create &&
                (reply_may(b, r, ACL_CLUSTER, NULL, ACL_CREATE) ||
                 reply_allowed(b, r, ACL_TOPIC, name, ACL_CREATE))) {
                char err[160];
                terr = limits_check_partitions(b, 1, b->opt.default_partitions,
                                               b->opt.default_partitions, err, sizeof err);
                if (terr) {
                    log_debug("auto-create of %s refused: %s", name, err);
                } else if (store_topic_create(&b->store, name, b->opt.default_partitions, NULL, err,
                                              sizeof err) == 0) {
                    t = store_topic_find(&b->store, name);
                }
            }
            metadata_topic(b, w, v, t ? 0 : terr ? terr : KERR_UNKNOWN_TOPIC_OR_PARTITION, name, t);
        }
    }
    if (v >= 8) {
        kw_i32(w, INT32_MIN);
    }
    return 0;
}

/* ---- Produce v3-v7 ---- */

static int handle_produce(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    struct kstr txn = kr_str(q);
    int16_t acks = kr_i16(q);
    (void)kr_i32(q); /* timeout_ms */
    int32_t nt = kr_array(q, 4);
    struct kw *w = &r->w;
    kw_i32(w, nt < 0 ? 0 : nt);
    long long now = broker_now_ms();
    int appended = 0;
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = kr_str(q);
        int32_t np = kr_array(q, 8);
        kw_kstr(w, tname);
        kw_i32(w, np < 0 ? 0 : np);
        int may_write = np > 0 ? topic_allowed(b, r, tname, ACL_WRITE) : 1;
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t idx = kr_i32(q);
            int32_t rlen;
            const uint8_t *rec = kr_bytes(q, &rlen);
            if (q->err) {
                break;
            }
            int64_t base = -1;
            int err;
            struct partition *p = find_partition(b, tname, idx, NULL);
            if (!may_write) {
                err = KERR_TOPIC_AUTHORIZATION_FAILED;
            } else if (acks != 0 && acks != 1 && acks != -1) {
                err = KERR_INVALID_REQUIRED_ACKS;
            } else if (!p) {
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (!rec || rlen <= 0) {
                err = KERR_CORRUPT_MESSAGE;
            } else if (acks == -1 && p->topic->conf.min_insync_replicas > 1) {
                err = KERR_NOT_ENOUGH_REPLICAS; /* one replica in sync: min.insync.replicas */
            } else if ((err = txn_check_produce(b, r, txn, rec, rlen, p->topic->name, idx)) != 0) {
                /* transactional batches only within their transaction (txn.c) */
            } else {
                err = store_append(&b->store, p, (uint8_t *)rec, (size_t)rlen, &base, now);
            }
            if (err == 0 && base >= 0) {
                appended = 1;
            }
            if (err == KERR_KAFKA_STORAGE_ERROR) {
                atomic_store(&b->is_storage_failing, 1);
            } else if (appended) {
                atomic_store(&b->is_storage_failing, 0);
            }
            if (err != 0 && err != KERR_UNKNOWN_TOPIC_OR_PARTITION &&
                err != KERR_TOPIC_AUTHORIZATION_FAILED) {
                log_debug("produce to %.*s/%d rejected: error %d", (int)tname.len,
                          tname.ptr ? tname.ptr : "", (int)idx, err);
            }
            kw_i32(w, idx);
            kw_i16(w, (int16_t)err);
            kw_i64(w, err ? -1 : base);
            kw_i64(w, -1); /* log_append_time */
            if (v >= 5) {
                kw_i64(w, p ? p->log_start : -1);
            }
        }
    }
    kw_i32(w, 0); /* throttle_time_ms */
    if (q->err) {
        return -1;
    }
    if (acks == 0) {
        r->is_silent = 1;
    } else if (acks == -1 && appended && b->opt.fsync != FSYNC_NEVER) {
        r->wait_seq = b->store.write_seq;
    }
    return 0;
}

/* ---- Fetch v4-v11 ---- */

/* Runs a fetch request body. Writes the answer into r->w and returns 1 when it is complete
 * (enough bytes, an error, or is_final); returns 0 to keep waiting; -1 when malformed. */
static int fetch_run(struct broker *b, struct reply *r, const uint8_t *req, size_t len,
                     int is_final, int32_t *max_wait_out)
{
    int16_t v = r->api_version;
    struct kr qq, *q = &qq;
    kr_init(q, req, len);
    (void)kr_i32(q); /* replica_id */
    int32_t max_wait = kr_i32(q);
    int32_t min_bytes = kr_i32(q);
    int32_t max_bytes = kr_i32(q);
    int is_read_committed = kr_i8(q) == 1; /* isolation_level: up to the LSO (txn.c) */
    if (v >= 7) {
        (void)kr_i32(q); /* session_id: sessions not supported, always full fetches */
        (void)kr_i32(q);
    }
    if (max_wait_out) {
        *max_wait_out = max_wait;
    }
    if (max_bytes <= 0 || max_bytes > FETCH_MAX_BYTES) {
        max_bytes = FETCH_MAX_BYTES;
    }
    int32_t part_cap = min_bytes > FETCH_PART_MAX_BYTES ? min_bytes : FETCH_PART_MAX_BYTES;
    struct kw w;
    kw_init(&w);
    int use_files = r->conn->fd >= 0;
    struct fpart *parts = NULL;
    size_t n_parts = 0, cap_parts = 0;
    kw_i32(&w, 0); /* throttle */
    if (v >= 7) {
        kw_i16(&w, 0);
        kw_i32(&w, 0);
    }
    int32_t nt = kr_array(q, 4);
    kw_i32(&w, nt < 0 ? 0 : nt);
    int64_t total = 0;
    int has_error = 0;
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = kr_str(q);
        int32_t np = kr_array(q, 12);
        kw_kstr(&w, tname);
        kw_i32(&w, np < 0 ? 0 : np);
        int may_read = np > 0 ? topic_allowed(b, r, tname, ACL_READ) : 1;
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t idx = kr_i32(q);
            if (v >= 9) {
                (void)kr_i32(q); /* current_leader_epoch */
            }
            int64_t off = kr_i64(q);
            if (v >= 5) {
                (void)kr_i64(q); /* log_start_offset (followers only) */
            }
            int32_t pmax = kr_i32(q);
            if (q->err) {
                break;
            }
            if (pmax > part_cap) {
                pmax = part_cap;
            }
            struct partition *p = may_read ? find_partition(b, tname, idx, NULL) : NULL;
            kw_i32(&w, idx);
            size_t err_at = w.len;
            kw_i16(&w, 0);
            int64_t lso = p ? txn_lso(b, p) : -1;
            kw_i64(&w, p ? p->next_offset : -1);
            kw_i64(&w, lso); /* last_stable_offset */
            if (v >= 5) {
                kw_i64(&w, p ? p->log_start : -1);
            }
            if (p && is_read_committed) {
                txn_write_aborted(b, &w, p, off, lso);
            } else {
                kw_i32(&w, -1); /* aborted_transactions: null */
            }
            if (v >= 11) {
                kw_i32(&w, -1); /* preferred_read_replica */
            }
            size_t mark = kw_mark_i32(&w);
            int err = 0;
            uint32_t file_len = 0;
            if (!may_read) {
                err = KERR_TOPIC_AUTHORIZATION_FAILED;
            } else if (!p) {
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (total < max_bytes && pmax > 0 &&
                       (!is_read_committed || off < lso || off > p->next_offset)) {
                int32_t lim = pmax < max_bytes - (int32_t)total ? pmax : max_bytes - (int32_t)total;
                if (is_read_committed && lso < p->next_offset && off >= p->log_start) {
                    int64_t span = store_bytes_before(p, off, lso); /* nothing past the LSO */
                    lim = span < lim ? (int32_t)span : lim;
                }
                if (lim <= 0) {
                    /* nothing below the LSO (store_read would still give one whole batch) */
                } else if (use_files) {
                    /* Records go out with sendfile(2) straight from the segment. */
                    int fd;
                    uint64_t pos;
                    err = store_read_ref(p, off, lim, &fd, &pos, &file_len);
                    if (fd >= 0) {
                        if (n_parts == cap_parts) {
                            cap_parts = cap_parts ? cap_parts * 2 : 8;
                            parts = xrealloc(parts, cap_parts * sizeof *parts);
                        }
                        parts[n_parts++] = (struct fpart){w.len, fd, pos, file_len};
                        total += file_len;
                    }
                } else {
                    size_t before = w.len;
                    err = store_read(&b->store, p, off, lim, &w);
                    total += (int64_t)(w.len - before);
                }
            } else if (p && (off < p->log_start || off > p->next_offset)) {
                err = KERR_OFFSET_OUT_OF_RANGE;
            }
            if (err) {
                has_error = 1;
                w.p[err_at] = (uint8_t)((uint16_t)err >> 8);
                w.p[err_at + 1] = (uint8_t)err;
            }
            kw_patch_i32(&w, mark, (int32_t)(w.len - mark - 4 + file_len));
        }
    }
    if (v >= 7) {
        int32_t nf = kr_array(q, 6); /* forgotten_topics_data */
        for (int32_t i = 0; i < nf && !q->err; i++) {
            (void)kr_str(q);
            int32_t np = kr_array(q, 4);
            for (int32_t k = 0; k < np && !q->err; k++) {
                (void)kr_i32(q);
            }
        }
    }
    if (v >= 11) {
        (void)kr_str(q); /* rack_id */
    }
    if (q->err) {
        kw_release(&w);
        parts_free(parts, n_parts);
        return -1;
    }
    if (!is_final && !has_error && total < min_bytes && max_wait > 0) {
        kw_release(&w);
        parts_free(parts, n_parts);
        return 0;
    }
    kw_release(&r->w);
    r->w = w;
    parts_free(r->parts, r->n_parts);
    r->parts = parts;
    r->n_parts = n_parts;
    return 1;
}

static int handle_fetch(struct broker *b, struct reply *r, struct kr *q)
{
    const uint8_t *req = q->p + q->pos;
    size_t len = q->len - q->pos;
    int32_t max_wait = 0;
    int rc = fetch_run(b, r, req, len, 0, &max_wait);
    q->pos = q->len;
    if (rc < 0) {
        return -1;
    }
    if (rc == 1) {
        return 0;
    }
    /* Park: keep a copy of the request and run it again when data arrives or time is up. */
    r->req = xmalloc(len ? len : 1);
    memcpy(r->req, req, len);
    r->req_len = len;
    if (max_wait > 60000) {
        max_wait = 60000;
    }
    r->deadline_ms = broker_now_ms() + max_wait;
    r->is_ready = 0;
    r->fnext = b->fetch_head;
    if (b->fetch_head) {
        b->fetch_head->fprev = r;
    }
    b->fetch_head = r;
    return 0;
}

static void fetch_wake(struct broker *b, long long now)
{
    int has_data = b->store.write_seq != b->fetch_seen_seq;
    b->fetch_seen_seq = b->store.write_seq;
    struct reply *r = b->fetch_head;
    while (r) {
        struct reply *next = r->fnext;
        int is_final = now >= r->deadline_ms;
        if (has_data || is_final) {
            if (fetch_run(b, r, r->req, r->req_len, is_final, NULL) == 1) {
                fetch_unlink(b, r);
                reply_done(b, r);
            }
        }
        r = next;
    }
}

static long long fetch_next_deadline(struct broker *b)
{
    long long d = -1;
    for (struct reply *r = b->fetch_head; r; r = r->fnext) {
        if (d < 0 || r->deadline_ms < d) {
            d = r->deadline_ms;
        }
    }
    return d;
}

/* ---- ListOffsets v1-v5 ---- */

static int handle_list_offsets(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    (void)kr_i32(q);
    int is_read_committed = 0;
    if (v >= 2) {
        is_read_committed = kr_i8(q) == 1; /* latest = the last stable offset (txn.c) */
    }
    int32_t nt = kr_array(q, 4);
    struct kw *w = &r->w;
    if (v >= 2) {
        kw_i32(w, 0);
    }
    kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = kr_str(q);
        int32_t np = kr_array(q, 12);
        kw_kstr(w, tname);
        kw_i32(w, np < 0 ? 0 : np);
        int may_describe = np > 0 ? topic_allowed(b, r, tname, ACL_DESCRIBE) : 1;
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t idx = kr_i32(q);
            if (v >= 4) {
                (void)kr_i32(q);
            }
            int64_t ts = kr_i64(q);
            struct partition *p = may_describe ? find_partition(b, tname, idx, NULL) : NULL;
            int64_t off = -1, found_ts = -1;
            if (p) {
                /* By time: the first record with a timestamp >= ts, or -1 past the last one
                 * (record precision, as Kafka answers); latest is the LSO for read_committed. */
                off = ts == -1   ? (is_read_committed ? txn_lso(b, p) : p->next_offset)
                      : ts == -2 ? p->log_start
                                 : store_offset_for_time(p, ts, &found_ts);
            }
            kw_i32(w, idx);
            kw_i16(w, !may_describe ? KERR_TOPIC_AUTHORIZATION_FAILED
                      : p           ? 0
                                    : KERR_UNKNOWN_TOPIC_OR_PARTITION);
            kw_i64(w, found_ts);
            kw_i64(w, off);
            if (v >= 4) {
                kw_i32(w, 0);
            }
        }
    }
    return q->err ? -1 : 0;
}

/* ---- InitProducerId v0-v1 ---- */

/* Producer ids must never repeat across restarts (a new producer reusing an id would collide
 * with the recovered sequence state): ids are handed out from blocks whose upper bound is
 * persisted in data_dir/producer_ids before any id of the block is used. */
#define PID_BLOCK 4096

static int pid_reserve(struct broker *b, int64_t limit)
{
    char *path = xasprintf("%s/producer_ids", b->opt.data_dir);
    char *tmp = xasprintf("%s.tmp", path);
    char text[32];
    int n = snprintf(text, sizeof text, "%lld\n", (long long)limit);
    int rc = -1;
    FILE *f = fopen(tmp, "w");
    if (f) {
        int ok =
            fwrite(text, 1, (size_t)n, f) == (size_t)n && fflush(f) == 0 && fsync(fileno(f)) == 0;
        if (fclose(f) == 0 && ok && rename(tmp, path) == 0) {
            rc = 0;
        }
    }
    if (rc == 0) {
        b->pid_limit = limit;
    } else {
        log_error("cannot write %s: %s", path, strerror(errno));
    }
    free(tmp);
    free(path);
    return rc;
}

static int pid_load(struct broker *b)
{
    char *path = xasprintf("%s/producer_ids", b->opt.data_dir);
    FILE *f = fopen(path, "r");
    long long v = 0;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1 || v < 0) {
            v = 0;
        }
        fclose(f);
    }
    free(path);
    b->next_pid = v;
    /* Without room to persist a new block (a full disk) the broker still starts: it serves
     * reads and everything but new producer ids, which it hands out again once the block is
     * written (pid_alloc tries on each InitProducerId). */
    if (pid_reserve(b, v + PID_BLOCK) != 0) {
        b->pid_limit = v;
    }
    return 0;
}

int64_t broker_pid_alloc(struct broker *b)
{
    if (b->next_pid >= b->pid_limit && pid_reserve(b, b->next_pid + PID_BLOCK) != 0) {
        return -1;
    }
    return b->next_pid++;
}

static int handle_init_producer_id(struct broker *b, struct reply *r, struct kr *q)
{
    struct kstr txn = kr_str(q);
    int32_t timeout_ms = kr_i32(q);
    if (q->err) {
        return -1;
    }
    if (txn.ptr) {
        return txn_init_producer_id(b, r, txn, timeout_ms);
    }
    struct kw *w = &r->w;
    kw_i32(w, 0);
    /* Kafka (KIP-679): IdempotentWrite on the cluster, or Write on any topic. */
    if (b->acls &&
        !acl_set_allows_any(b->acls, reply_session(r)->principal, ACL_TOPIC, ACL_WRITE) &&
        !reply_allowed(b, r, ACL_CLUSTER, NULL, ACL_IDEMPOTENT_WRITE)) {
        kw_i16(w, KERR_CLUSTER_AUTHORIZATION_FAILED);
        kw_i64(w, -1);
        kw_i16(w, -1);
        return 0;
    }
    int64_t pid = broker_pid_alloc(b);
    /* Could not persist the next block of ids (a full disk): a retriable error, the producer
     * asks again. */
    kw_i16(w, pid < 0 ? KERR_COORDINATOR_NOT_AVAILABLE : 0);
    kw_i64(w, pid);
    kw_i16(w, 0);
    return 0;
}

/* ---- Admin: CreateTopics v0-v4, DeleteTopics v0-v3, CreatePartitions v0-v1 ---- */

static int handle_create_topics(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int32_t nt = kr_array(q, 12);
    struct pending {
        char name[STORE_MAX_NAME + 1];
        int32_t n;
        struct topic_conf conf;
        int err;
        char msg[192];
    } *ps = xcalloc(nt > 0 ? (size_t)nt : 1, sizeof *ps);
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct pending *p = &ps[i];
        p->conf = b->store.defaults;
        struct kstr name = kr_str(q);
        p->n = kr_i32(q);
        int16_t rf = kr_i16(q);
        int32_t na = kr_array(q, 8);
        for (int32_t k = 0; k < na && !q->err; k++) {
            (void)kr_i32(q);
            int32_t nb = kr_array(q, 4);
            for (int32_t j = 0; j < nb && !q->err; j++) {
                if (kr_i32(q) != 0) {
                    p->err = KERR_INVALID_REQUEST;
                }
            }
        }
        if (na > 0 && p->n == -1) {
            p->n = na;
        }
        int32_t nc = kr_array(q, 4);
        for (int32_t k = 0; k < nc && !q->err; k++) {
            struct kstr cn = kr_str(q), cv = kr_str(q);
            char key[64];
            if (kstr_copy(cn, key, sizeof key) != 0) {
                continue;
            }
            char value[128];
            int has_value = kstr_copy(cv, value, sizeof value) == 0;
            char msg[192];
            /* The settings this broker stores are checked and kept (admin.c); other topic
             * configs are accepted and ignored, as before: they mean nothing on one node. */
            if (topic_conf_set(&p->conf, key, has_value ? value : NULL, msg, sizeof msg) > 0 &&
                !p->err) {
                p->err = KERR_INVALID_CONFIG;
                snprintf(p->msg, sizeof p->msg, "%s", msg);
            }
        }
        if (p->n == -1) {
            p->n = b->opt.default_partitions;
        }
        if (!p->err && rf != -1 && rf != 1) {
            p->err = KERR_INVALID_REPLICATION_FACTOR;
            snprintf(p->msg, sizeof p->msg, "single-node broker: replication factor must be 1");
        }
        if (kstr_copy(name, p->name, sizeof p->name) != 0 && !p->err) {
            p->err = KERR_INVALID_TOPIC_EXCEPTION;
            snprintf(p->msg, sizeof p->msg, "invalid topic name");
        }
    }
    (void)kr_i32(q); /* timeout_ms */
    int validate_only = v >= 1 ? kr_i8(q) != 0 : 0;
    if (q->err) {
        free(ps);
        return -1;
    }
    struct kw *w = &r->w;
    if (v >= 2) {
        kw_i32(w, 0);
    }
    kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t i = 0; i < nt; i++) {
        struct pending *p = &ps[i];
        if (!p->err && !reply_may(b, r, ACL_CLUSTER, NULL, ACL_CREATE) &&
            !reply_allowed(b, r, ACL_TOPIC, p->name, ACL_CREATE)) {
            p->err = KERR_TOPIC_AUTHORIZATION_FAILED;
            snprintf(p->msg, sizeof p->msg, "not authorized to create this topic");
        }
        if (!p->err) {
            if (!store_topic_name_valid(p->name)) {
                p->err = KERR_INVALID_TOPIC_EXCEPTION;
                snprintf(p->msg, sizeof p->msg, "invalid topic name");
            } else if (store_topic_find(&b->store, p->name)) {
                p->err = KERR_TOPIC_ALREADY_EXISTS;
                snprintf(p->msg, sizeof p->msg, "topic already exists");
            } else if ((p->err = limits_check_partitions(b, 1, p->n, p->n, p->msg,
                                                         sizeof p->msg)) != 0) {
                /* past a limit: nothing written */
            } else if (!validate_only) {
                p->err =
                    store_topic_create(&b->store, p->name, p->n, &p->conf, p->msg, sizeof p->msg);
            }
        }
        kw_str(w, p->name);
        kw_i16(w, (int16_t)p->err);
        if (v >= 1) {
            kw_str(w, p->err ? p->msg : NULL);
        }
    }
    free(ps);
    return 0;
}

static int handle_delete_topics(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int32_t nt = kr_array(q, 2);
    struct kw *w = &r->w;
    if (v >= 1) {
        kw_i32(w, 0);
    }
    kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr s = kr_str(q);
        char name[STORE_MAX_NAME + 1];
        int err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
        if (!topic_allowed(b, r, s, ACL_DELETE)) {
            err = KERR_TOPIC_AUTHORIZATION_FAILED;
        } else if (kstr_copy(s, name, sizeof name) == 0) {
            err = store_topic_delete(&b->store, name);
            if (err == 0) {
                groups_topic_deleted(b, name);
            }
        }
        kw_kstr(w, s);
        kw_i16(w, (int16_t)err);
    }
    (void)kr_i32(q);
    return q->err ? -1 : 0;
}

static int handle_create_partitions(struct broker *b, struct reply *r, struct kr *q)
{
    int32_t nt = kr_array(q, 8);
    struct kw *w = &r->w;
    kw_i32(w, 0);
    kw_i32(w, nt < 0 ? 0 : nt);
    /* Decoding and applying interleave; validate_only comes last, so decode twice. */
    size_t start = q->pos;
    for (int pass = 0; pass < 2; pass++) {
        int validate_only = 0;
        if (pass == 1) {
            (void)kr_i32(q); /* timeout */
            validate_only = kr_i8(q) != 0;
            if (q->err) {
                return -1;
            }
            q->pos = start;
        }
        for (int32_t i = 0; i < nt && !q->err; i++) {
            struct kstr s = kr_str(q);
            int32_t count = kr_i32(q);
            int32_t na = kr_array(q, 4);
            for (int32_t k = 0; k < na && !q->err; k++) {
                int32_t nb = kr_array(q, 4);
                for (int32_t j = 0; j < nb && !q->err; j++) {
                    (void)kr_i32(q);
                }
            }
            if (pass == 0) {
                continue;
            }
            char name[STORE_MAX_NAME + 1];
            struct topic *t = NULL;
            int err = 0;
            const char *msg = NULL;
            char lmsg[160];
            if (kstr_copy(s, name, sizeof name) == 0) {
                t = store_topic_find(&b->store, name);
            }
            if (!topic_allowed(b, r, s, ACL_ALTER)) {
                err = KERR_TOPIC_AUTHORIZATION_FAILED;
                msg = "not authorized to alter this topic";
            } else if (!t) {
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                msg = "unknown topic";
            } else if (count <= t->n_parts) {
                err = KERR_INVALID_PARTITIONS;
                msg = "the partition count can only grow";
            } else if ((err = limits_check_partitions(b, 0, count, count - t->n_parts, lmsg,
                                                      sizeof lmsg)) != 0) {
                msg = lmsg;
            } else if (!validate_only) {
                err = store_topic_add_partitions(&b->store, t, count);
                msg = err ? "cannot create partitions" : NULL;
            }
            kw_kstr(w, s);
            kw_i16(w, (int16_t)err);
            kw_str(w, msg);
        }
        if (pass == 1) {
            (void)kr_i32(q);
            (void)kr_i8(q);
        }
    }
    return q->err ? -1 : 0;
}

/* ---- loop ---- */

static int listen_on(const char *addr, int *port_out, char *err, size_t err_len)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        snprintf(err, err_len, "listen: expected host:port, got \"%s\"", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    int port = atoi(colon + 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa.sin_addr) != 1) {
        snprintf(err, err_len, "listen: bad IPv4 address \"%s\"", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 512) != 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port_out = ntohs(sa.sin_port);
    return fd;
}

static void metrics_init(void)
{
    if (m_bytes_in) {
        return;
    }
    m_bytes_in = metrics_counter("bus_broker_bytes_in_total", "Bytes received from clients", NULL);
    m_bytes_out = metrics_counter("bus_broker_bytes_out_total", "Bytes sent to clients", NULL);
    m_conns = metrics_gauge("bus_broker_connections", "Open client connections", NULL);
    m_fsync = metrics_histogram("bus_broker_fsync_seconds", "Latency of one log fsync round", NULL,
                                NULL, 0);
    m_bad_requests = metrics_counter("bus_broker_bad_requests_total",
                                     "Requests refused as malformed or unsupported", NULL);
    for (int i = 0; i < N_REFUSED; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", REFUSED_REASONS[i]);
        m_refused[i] = metrics_counter("bus_broker_connections_refused_total",
                                       "Connections refused or closed by a limit or for want of "
                                       "authentication, by reason",
                                       labels);
    }
    for (size_t i = 0; i < N_APIS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "api=\"%s\"", APIS[i].name);
        m_requests[i] = metrics_counter("bus_broker_requests_total", "Requests by API", labels);
    }
}

int broker_init(struct broker *b, const struct broker_options *opt, char *err, size_t err_len)
{
    memset(b, 0, sizeof *b);
    b->opt = *opt;
    b->ep = b->lfd = b->wake.fd = -1;
    metrics_init();
    if (store_open(&b->store, opt->data_dir, &opt->topic_defaults, err, err_len) != 0) {
        return -1;
    }
    if (security_load(b, 1, err, err_len) != 0) {
        return -1;
    }
    b->groups = groups_new(b, err, err_len);
    if (!b->groups) {
        return -1;
    }
    if (pid_load(b) != 0) {
        snprintf(err, err_len, "cannot persist producer ids in %s", opt->data_dir);
        return -1;
    }
    if (!txns_new(b, err, err_len)) {
        return -1;
    }
    if (!opt->listen) {
        return 0; /* detached (fuzzing) */
    }
    b->lfd = listen_on(opt->listen, &b->port, err, err_len);
    if (b->lfd < 0) {
        return -1;
    }
    if (opt->advertised_port > 0) {
        b->port = opt->advertised_port;
    }
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    (void)wake_init(&b->wake);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &b->lfd};
    epoll_ctl(b->ep, EPOLL_CTL_ADD, b->lfd, &ev);
    struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &b->wake};
    epoll_ctl(b->ep, EPOLL_CTL_ADD, wake_fd(&b->wake), &ev2);
    if (opt->fsync != FSYNC_NEVER) {
        if (syncer_start(b) != 0) {
            snprintf(err, err_len, "cannot start the fsync thread");
            return -1;
        }
        struct epoll_event ev3 = {.events = EPOLLIN, .data.ptr = b->syncer};
        epoll_ctl(b->ep, EPOLL_CTL_ADD, wake_fd(&b->syncer->wake), &ev3);
    }
    log_info("listening on %s (advertised %s:%d), data in %s, fsync %s", opt->listen,
             opt->advertised_host, b->port, opt->data_dir,
             opt->fsync == FSYNC_ALWAYS     ? "always"
             : opt->fsync == FSYNC_INTERVAL ? "interval"
                                            : "never");
    return 0;
}

static void refresh_gauges(struct broker *b)
{
    for (size_t i = 0; i < b->store.n_topics; i++) {
        struct topic *t = b->store.topics[i];
        for (int32_t k = 0; k < t->n_parts; k++) {
            struct partition *p = t->parts[k];
            if (!p->m_leo) {
                char labels[STORE_MAX_NAME + 48];
                snprintf(labels, sizeof labels, "topic=\"%s\",partition=\"%d\"", t->name, (int)k);
                p->m_leo = metrics_gauge("bus_broker_log_end_offset",
                                         "Next offset of each partition", labels);
            }
            metric_set(p->m_leo, (double)p->next_offset);
        }
    }
}

static void check_timeouts(struct broker *b, long long now)
{
    for (size_t i = 0; i < b->n_conns; i++) {
        struct conn *c = b->conns[i];
        if (c->partial_since_ms && now - c->partial_since_ms > b->opt.request_timeout_ms) {
            conn_close(c, "partial request stalled past request_timeout_ms");
        } else if (!c->rhead && now - c->last_active_ms > b->opt.idle_timeout_ms) {
            conn_close(c, "idle past idle_timeout_ms");
        } else if (b->opt.is_sasl_required && c->sasl.state != SASL_AUTHENTICATED &&
                   now - c->created_ms > b->opt.sasl_handshake_timeout_ms) {
            metric_inc(m_refused[REFUSED_UNAUTHENTICATED]);
            conn_close(c, "not authenticated within sasl.handshake_timeout_ms");
        }
    }
}

void broker_run(struct broker *b)
{
    struct epoll_event evs[64];
    long long now = broker_now_ms();
    b->next_sync_ms = now + b->opt.fsync_interval_ms;
    b->next_retention_ms = now;
    long long next_timeouts = now + 1000;
    while (!b->stop) {
        now = broker_now_ms();
        long long wake = now + 100;
        long long d = fetch_next_deadline(b);
        if (d >= 0 && d < wake) {
            wake = d;
        }
        d = groups_next_deadline(b);
        if (d >= 0 && d < wake) {
            wake = d;
        }
        if (b->opt.fsync == FSYNC_INTERVAL && b->next_sync_ms < wake) {
            wake = b->next_sync_ms;
        }
        int timeout = wake > now ? (int)(wake - now) : 0;
        int n = epoll_wait(b->ep, evs, 64, timeout);
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &b->lfd) {
                accept_all(b);
            } else if (ptr == &b->wake) {
                wake_drain(&b->wake);
            } else if (b->syncer && ptr == b->syncer) {
                sync_collect(b);
            } else {
                struct conn *c = ptr;
                if (c->is_closing) {
                    continue;
                }
                if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                    conn_read(b, c); /* read what is left, then see EOF */
                } else {
                    if (evs[i].events & EPOLLOUT) {
                        conn_write(b, c);
                        conn_process(b, c);
                    }
                    if (evs[i].events & EPOLLIN) {
                        conn_read(b, c);
                    }
                }
            }
        }
        if (__atomic_exchange_n(&b->reload, 0, __ATOMIC_SEQ_CST)) {
            char err[512];
            if (security_load(b, 0, err, sizeof err) == 0) {
                log_info("SIGHUP: users and ACLs reloaded");
            }
        }
        now = broker_now_ms();
        if (b->opt.fsync == FSYNC_ALWAYS) {
            sync_start(b);
        } else if (b->opt.fsync == FSYNC_INTERVAL && now >= b->next_sync_ms) {
            sync_start(b);
            b->next_sync_ms = now + b->opt.fsync_interval_ms;
        } else if (b->opt.fsync == FSYNC_NEVER) {
            b->synced_seq = b->store.write_seq;
        }
        fetch_wake(b, now);
        groups_tick(b, now);
        txns_tick(b, now);
        if (now >= b->next_retention_ms) {
            store_enforce_retention(&b->store, wall_now_ms());
            b->next_retention_ms = now + b->opt.retention_check_ms;
        }
        if (now >= next_timeouts) {
            check_timeouts(b, now);
            refresh_gauges(b);
            next_timeouts = now + 1000;
        }
        /* Connections paused by back-pressure resume when their queue drained. */
        for (size_t i = 0; i < b->n_conns; i++) {
            struct conn *c = b->conns[i];
            if (!c->is_closing && c->in_len && c->n_replies < REPLIES_MAX) {
                conn_process(b, c);
            }
        }
        reap_closed(b);
    }
    syncer_stop(b);
    sync_now(b);
    for (size_t i = 0; i < b->n_conns; i++) {
        conn_flush(b, b->conns[i]);
    }
    for (size_t i = 0; i < b->n_conns; i++) {
        conn_close(b->conns[i], NULL);
    }
    reap_closed(b);
}

void broker_reload(struct broker *b)
{
    __atomic_store_n(&b->reload, 1, __ATOMIC_SEQ_CST);
    if (wake_fd(&b->wake) >= 0) {
        wake_signal(&b->wake);
    }
}

void broker_stop(struct broker *b)
{
    b->stop = 1;
    if (wake_fd(&b->wake) >= 0) {
        wake_signal(&b->wake);
    }
}

void broker_release(struct broker *b)
{
    syncer_stop(b);
    for (size_t i = 0; i < b->n_conns; i++) {
        conn_close(b->conns[i], NULL);
    }
    reap_closed(b);
    free(b->conns);
    security_release(b);
    txns_free(b->txns);
    groups_free(b->groups);
    store_close(&b->store);
    if (b->lfd >= 0) {
        close(b->lfd);
    }
    if (b->ep >= 0) {
        close(b->ep);
    }
    wake_close(&b->wake);
}

/* ---- detached connections (fuzzing and tests) ---- */

struct conn *broker_conn_detached(struct broker *b)
{
    return conn_add(b, -1, "fuzz");
}

int broker_conn_feed(struct broker *b, struct conn *c, const uint8_t *data, size_t len)
{
    if (len > (size_t)b->opt.max_request_bytes + 4) {
        len = (size_t)b->opt.max_request_bytes + 4;
    }
    c->in = xrealloc(c->in, len ? len : 1);
    memcpy(c->in, data, len);
    c->in_len = len;
    c->in_cap = len ? len : 1;
    conn_process(b, c);
    fetch_wake(b, broker_now_ms() + 120000);
    groups_tick(b, broker_now_ms() + 3600000);
    int closed = c->is_closing;
    c->is_closing = 1;
    reap_closed(b);
    return closed ? -1 : 0;
}
