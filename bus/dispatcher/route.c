/* route.c - one route's thread: consume, schedule, deliver, retry, dead-letter, stream, commit.
 *
 * State machine of an event (owned by the route thread):
 *   WAITING  --due and allowed by ordering/concurrency-->  SENDING (HTTP request in the pool)
 *   SENDING  --2xx / 204-->                                 finished
 *   SENDING  --200/201/202 in a streaming route-->          PRODUCING (outputs queued)
 *   SENDING  --408/429/5xx/no answer-->                     WAITING (next_at = now + back-off)
 *   SENDING  --other 4xx or attempts spent-->               PRODUCING (dead-letter copy queued)
 *   PRODUCING --every record acknowledged-->                finished
 *   PRODUCING --a record failed-->                          WAITING (delivered again later)
 * "finished" marks the offset done in the partition's offset tracker; the contiguous prefix of
 * done offsets is committed. Callbacks from the pool and producer threads only queue a
 * completion and wake the route thread.
 *
 * An exactly-once route (streaming, "exactly_once") does not produce outputs at the answer:
 *   SENDING  --200/201/202 with outputs-->                  STAGED (offset done, outputs kept)
 *   STAGED   --its offset in a committed transaction-->     freed
 * and commits no offset itself: every commit tick one transaction carries the staged outputs of
 * each partition's done prefix and that prefix's offsets (txn_commit); an aborted one rewinds
 * every partition to its last committed offset (txn_rewind). A transaction whose outcome is
 * unknown (the producer given up mid-commit: the commit may still land) is settled by reading
 * the committed offsets back once the next producer is ready (txn_settle). */
#include "route.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "app.h"
#include "backoff.h"
#include "buf.h"
#include "crypto.h"
#include "delivery.h"
#include "ids.h"
#include "kafka/kafka_consumer.h"
#include "kafka/kafka_txn.h"
#include "log.h"
#include "metrics.h"
#include "kafka/offset_tracker.h"

#define ROUTE_BREAKER_FAILURES 5     /* consecutive failed attempts that open the breaker */
#define ROUTE_COMMIT_INTERVAL_MS 200 /* asynchronous commits at most this often per route */
#define ROUTE_STATUS_INTERVAL_MS 500
#define ROUTE_PAUSED_WATERMARK_MS 5000 /* broker watermark query of a paused partition */
#define ROUTE_WATERMARK_TIMEOUT_MS 200
#define ROUTE_MAX_ANSWER_BYTES (1024 * 1024)
#define ROUTE_EXCERPT_BYTES 512
/* Event bytes one batched request carries at most: with the attributes of up to
 * DELIVERY_BATCH_MAX events (~400 bytes each) the body stays below what endpoints accept. */
#define ROUTE_BATCH_MAX_BYTES (DELIVERY_MAX_BODY_BYTES / 4)

/* EV_STAGED (exactly-once routes only): answered, its outputs (answer) wait for the route's next
 * transaction; its offset is finished in the tracker. */
enum event_state { EV_WAITING, EV_SENDING, EV_PRODUCING, EV_STAGED };

struct part;

struct event {
    struct part *part; /* NULL once the partition was revoked (orphan) */
    struct kafka_record *rec;
    const char *key;   /* rec->key, or NULL (no ordering constraint) */
    uint64_t key_hash; /* of key, computed once (schedule() looks at it on every pass) */
    enum event_state state;
    int attempt;          /* attempts made so far */
    long long signed_s;   /* webhook-timestamp of its last attempt (0 = none) */
    long long next_at_ms; /* WAITING: not before */
    int outstanding;      /* callbacks still to come (1 HTTP, or n produce acks) */
    bool has_produce_failed;
    bool is_dead_letter; /* PRODUCING a dead-letter copy (not outputs) */
    bool is_batched;     /* SENDING in a batched request (which holds the delivery slot) */
    bool is_solo;        /* its batch was refused: delivered alone from now on */
    double sent_at_s;
    json_t *answer;                 /* EV_STAGED: the outputs (object or array of objects) */
    char span[TRACEPARENT_LEN + 1]; /* the traceparent sent to the endpoint */
    struct event *prev, *next;      /* the partition's unfinished events, in offset order */
};

struct part {
    int32_t id;
    struct offset_tracker tracker;
    struct event *head, *tail;
    size_t n_events;
    int64_t next_commit; /* to commit (-1 = nothing new) */
    int64_t committed;   /* last committed next-offset (-1 unknown) */
    int64_t high_watermark;
    int64_t queried_watermark;         /* asked of the broker while paused (-1 never) */
    int64_t queried_low;               /* the log start then (-1 never asked) */
    long long next_watermark_query_ms; /* when it may be asked again */
    int64_t next_offset;               /* offset after the last record taken in (-1 none yet) */
    int64_t first_offset; /* of the first record taken in since assigned (-1 none): the group's
                           * committed offset then, where an exactly-once route rewinds to while
                           * it has committed nothing itself */
    bool is_paused_full;
    bool is_resume_pending; /* a resume whose seek failed: retried by the route loop */
    bool is_commit_failed;  /* the commit of `committed` failed: commit it again */
    struct part *next;
};

enum completion_kind { DONE_HTTP, DONE_PRODUCE };

struct completion {
    struct event *ev;   /* NULL for a batched request: */
    struct event **evs; /* its events (heap), n_evs of them */
    size_t n_evs;
    enum completion_kind kind;
    int status; /* HTTP status, or kafka status */
    char *body;
    size_t body_len;
    char *retry_after;
    char error[128];
    json_t *answer; /* an event's share of a batch's streaming answer (borrowed), or NULL */
    struct completion *next;
};

struct route {
    /* configuration (copied) */
    char *name, *topic, *endpoint, *output, *output_key, *dead_letter, *secret;
    struct crypto_webhook_signer *signer; /* secret's keys, set up once (route thread only) */
    bool is_streaming;
    bool is_exactly_once;
    enum busconf_ordering ordering;
    int concurrency, batch, timeout_ms, retry_initial_ms, retry_max_ms, retry_max_attempts;
    json_t *raw;
    const struct route_env *env;

    struct kafka_consumer *consumer;
    pthread_t thread;
    atomic_bool stop;
    long long stop_deadline_ms; /* deliveries in flight may finish until then */
    long long stop_by_ms;       /* commits and leaving the group end by then */

    pthread_mutex_t lock;        /* guards: completions, status, wake */
    struct kafka_consumer *wake; /* = consumer while it exists */
    struct completion *done_head, *done_tail;
    json_t *status;

    /* route thread only */
    struct part *parts;
    int in_flight;       /* events SENDING or PRODUCING */
    int n_sending;       /* HTTP requests out (one per event, or per batch): what `concurrency`
                          * bounds. Events PRODUCING wait only for Kafka's acknowledgement, so they
                          * don't hold a delivery slot; they still hold their key (ordering) and their
                          * offset. */
    struct event **pend; /* schedule(): events gathered for the next batched request */
    int n_pend;
    size_t pend_bytes;
    int orphans_outstanding;
    int consecutive_failures;
    bool is_breaker_open;
    /* for the dashboard (route thread only; copied into the status): the last failed delivery's
     * error and when, and since when the route fails (first failure after its last success; 0
     * while it delivers). Wall-clock ms. */
    char last_error[200];
    long long last_error_ms, failing_since_ms;
    bool is_dirty;     /* something changed: scan for work */
    size_t sched_turn; /* which partition schedule() scans first */
    long long next_commit_ms, next_status_ms;

    struct metric *m_failed, *m_retried, *m_dead, *m_no_content, *m_seconds, *m_age, *m_in_flight,
        *m_lag, *m_breaker_open, *m_request_events;
    struct metric *m_delivered[600]; /* by status, created on first use */

    /* exactly-once routes (route thread only) */
    struct kafka_txn *txn;  /* NULL until made (again) */
    char *txn_id;           /* its transactional.id */
    long long txn_retry_ms; /* when making it may be tried again */
    bool is_txn_unsettled;  /* a producer was given up mid-transaction: outcome unknown */
    /* a commit sent and not answered yet (KAFKA_TXN_PENDING): resumed each tick, no other
     * transaction meanwhile; its partitions and offsets, and when it started */
    bool is_txn_pending;
    bool is_assigned_while_pending; /* offsets read at that assignment may predate the commit */
    int32_t *pending_ids;
    int64_t *pending_offs;
    size_t n_pending;
    long long txn_started_ms;
    struct metric *m_txn_committed, *m_txn_aborted, *m_txn_settled;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static struct metric *route_metric(struct route *r, int kind, const char *name, const char *help)
{
    (void)kind;
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\"", r->name);
    return metrics_counter(name, help, labels);
}

static void count_delivered(struct route *r, int status)
{
    if (status < 100 || status > 599) {
        return;
    }
    if (r->m_delivered[status] == NULL) {
        char labels[256];
        snprintf(labels, sizeof labels, "route=\"%s\",status=\"%d\"", r->name, status);
        r->m_delivered[status] = metrics_counter(
            "bus_dispatcher_delivered_total", "Deliveries answered, by route and status.", labels);
    }
    metric_inc(r->m_delivered[status]);
}

static uint32_t random_u32(void)
{
    uint32_t v;
    random_bytes(&v, sizeof v);
    return v;
}

/* Value at a JSON pointer ("/a/b/0"), or NULL. */
static json_t *json_at_pointer(json_t *doc, const char *ptr)
{
    if (ptr == NULL || ptr[0] != '/') {
        return NULL;
    }
    json_t *cur = doc;
    const char *p = ptr + 1;
    char token[256];
    for (;;) {
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof token) {
            if (p[0] == '~' && p[1] == '1') {
                token[n++] = '/';
                p += 2;
            } else if (p[0] == '~' && p[1] == '0') {
                token[n++] = '~';
                p += 2;
            } else {
                token[n++] = *p++;
            }
        }
        token[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, token);
        } else if (json_is_array(cur)) {
            cur = json_array_get(cur, (size_t)strtoul(token, NULL, 10));
        } else {
            return NULL;
        }
        if (cur == NULL) {
            return NULL;
        }
        if (*p != '/') {
            return cur;
        }
        p++;
    }
}

/* ---- completions (any thread) ------------------------------------------------------------- */

static void completion_push(struct route *r, struct completion *c)
{
    pthread_mutex_lock(&r->lock);
    /* Only the first completion of a batch wakes the route thread: it drains the whole list
     * after every poll, so a non-empty list means a wake-up is already on its way. */
    bool is_first = r->done_head == NULL;
    if (r->done_tail) {
        r->done_tail->next = c;
    } else {
        r->done_head = c;
    }
    r->done_tail = c;
    if (is_first && r->wake != NULL) {
        kafka_consumer_wake(r->wake);
    }
    pthread_mutex_unlock(&r->lock);
}

struct send_ctx {
    struct route *route;
    struct event *ev;
    struct event **evs; /* a batched request: its events (ev NULL) */
    size_t n_evs;
};

static void on_http_done(void *ctx, struct http_result *res)
{
    struct send_ctx *sc = ctx;
    struct completion *c = xcalloc(1, sizeof *c);
    c->ev = sc->ev;
    c->evs = sc->evs;
    c->n_evs = sc->n_evs;
    c->kind = DONE_HTTP;
    c->status = res->status;
    c->body = res->body;
    c->body_len = res->body_len;
    c->retry_after = res->retry_after;
    snprintf(c->error, sizeof c->error, "%s", res->error);
    res->body = NULL;
    res->retry_after = NULL;
    struct route *r = sc->route;
    free(sc);
    completion_push(r, c);
}

static void on_produced(void *opaque, int status, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)partition;
    (void)offset;
    struct send_ctx *sc = opaque;
    struct completion *c = xcalloc(1, sizeof *c);
    c->ev = sc->ev;
    c->kind = DONE_PRODUCE;
    c->status = status;
    if (errstr) {
        snprintf(c->error, sizeof c->error, "%s", errstr);
    }
    struct route *r = sc->route;
    free(sc);
    completion_push(r, c);
}

static void completion_free(struct completion *c)
{
    free(c->evs);
    free(c->body);
    free(c->retry_after);
    free(c);
}

/* ---- partitions and events (route thread) ------------------------------------------------- */

static struct part *part_find(struct route *r, int32_t id)
{
    for (struct part *p = r->parts; p; p = p->next) {
        if (p->id == id) {
            return p;
        }
    }
    return NULL;
}

static void event_unlink(struct event *ev)
{
    struct part *p = ev->part;
    if (ev->prev) {
        ev->prev->next = ev->next;
    } else {
        p->head = ev->next;
    }
    if (ev->next) {
        ev->next->prev = ev->prev;
    } else {
        p->tail = ev->prev;
    }
    ev->prev = ev->next = NULL;
    p->n_events--;
}

static void event_free(struct event *ev)
{
    json_decref(ev->answer);
    kafka_record_free(ev->rec);
    free(ev);
}

/* The finished prefix leaves the tracker as soon as it is finished (its offset is committed on
 * the next commit tick): the tracker holds only offsets from the oldest unfinished event on. */
static void part_pop_finished(struct part *p)
{
    int64_t next = offset_tracker_take_committable(&p->tracker);
    if (next >= 0) {
        p->next_commit = next;
    }
}

/* Commits the partition's finished prefix when it moved, or again when its last commit failed
 * (an asynchronous commit that fails is reported by on_commit_failed: a commit is done only
 * once it landed, or a broker restart would deliver again everything since the last one). */
static void commit_part(struct route *r, struct part *p, bool is_sync)
{
    part_pop_finished(p);
    if (r->is_exactly_once) {
        return; /* committed in the route's transactions (txn_commit) */
    }
    if (p->next_commit >= 0 && (p->next_commit != p->committed || p->is_commit_failed)) {
        if (kafka_consumer_commit(r->consumer, p->id, p->next_commit, is_sync) == 0) {
            p->committed = p->next_commit;
            p->is_commit_failed = false;
        }
    }
}

static void on_commit_failed(void *opaque, int32_t partition, int64_t next_offset)
{
    struct route *r = opaque;
    struct part *p = part_find(r, partition);
    /* A failure of an older commit than the last one is covered by the last one. */
    if (p && p->committed == next_offset) {
        p->is_commit_failed = true;
    }
}

/* Forgets every event of the partition: those in flight become orphans (their callbacks still
 * come; freed then, never committed), the others are freed. */
static void part_clear(struct route *r, struct part *p)
{
    struct event *ev = p->head;
    while (ev) {
        struct event *next = ev->next;
        if (ev->outstanding > 0) {
            /* in flight: its callbacks will still come; freed then, never committed. A
             * batched request frees its slot when it completes. */
            if (ev->state == EV_SENDING && !ev->is_batched) {
                r->n_sending--;
            }
            ev->part = NULL;
            ev->prev = ev->next = NULL;
            r->in_flight--;
            r->orphans_outstanding++;
        } else {
            event_free(ev);
        }
        ev = next;
    }
    p->head = p->tail = NULL;
    p->n_events = 0;
    offset_tracker_release(&p->tracker);
}

static void txn_commit(struct route *r);

static void part_drop(struct route *r, struct part *p, bool is_commit)
{
    if (is_commit && r->is_exactly_once) {
        txn_commit(r); /* what is finished, in a transaction, before the partition goes */
    } else if (is_commit) {
        commit_part(r, p, true);
    }
    part_clear(r, p);
    free(p);
}

static void on_rebalance(void *opaque, bool is_assigned, const int32_t *ids, size_t n)
{
    struct route *r = opaque;
    for (size_t i = 0; i < n; i++) {
        if (is_assigned) {
            if (part_find(r, ids[i])) {
                continue;
            }
            struct part *p = xcalloc(1, sizeof *p);
            p->id = ids[i];
            offset_tracker_init(&p->tracker, r->env->max_pending_per_partition + 2048);
            p->next_commit = p->committed = p->high_watermark = p->next_offset = -1;
            p->first_offset = -1;
            p->queried_watermark = p->queried_low = -1;
            p->next_watermark_query_ms = 0;
            p->next = r->parts;
            r->parts = p;
            if (r->is_breaker_open) {
                kafka_consumer_pause(r->consumer, p->id);
            }
            if (r->is_txn_pending) {
                r->is_assigned_while_pending = true;
            }
            log_info("route %s: partition %d assigned", r->name, (int)ids[i]);
        } else {
            struct part **pp = &r->parts;
            while (*pp && (*pp)->id != ids[i]) {
                pp = &(*pp)->next;
            }
            if (*pp == NULL) {
                continue;
            }
            struct part *p = *pp;
            log_info("route %s: partition %d revoked", r->name, (int)ids[i]);
            if (r->is_exactly_once) {
                txn_commit(r); /* may rewind every partition: p is still in the list */
            }
            *pp = p->next;
            part_drop(r, p, !r->is_exactly_once);
        }
    }
    r->is_dirty = true;
}

/* Resumes fetching from a paused partition. librdkafka drops what it prefetched when a partition
 * is paused and may resume at its fetch position rather than after the last record we took in,
 * so the fetch position is set back explicitly: nothing skipped. The seek happens while the
 * partition is still paused, and fetching resumes only once it succeeded: resuming first let
 * records from librdkafka's own (later) position arrive before a slow seek took effect (seeks
 * do time out under load), which could skip events. When the seek fails the partition stays
 * paused and is_resume_pending makes the route loop try again. */
static void part_resume(struct route *r, struct part *p)
{
    int64_t at = p->next_offset >= 0 ? p->next_offset : p->committed;
    if (at >= 0 && kafka_consumer_seek(r->consumer, p->id, at) != 0) {
        p->is_resume_pending = true;
        return;
    }
    p->is_resume_pending = false;
    kafka_consumer_resume(r->consumer, p->id);
}

/* A partition paused for want of room (too many unfinished events, or a tracker full of
 * finished offsets waiting behind an unfinished one) fetches again once the unfinished events
 * are down to half and the tracker has room for max_pending_per_partition more offsets:
 * called whenever either shrinks. */
static void part_resume_if_room(struct route *r, struct part *p)
{
    unsigned max = r->env->max_pending_per_partition;
    if (p->is_paused_full && p->n_events < max / 2 &&
        offset_tracker_count(&p->tracker) + max <= p->tracker.cap) {
        p->is_paused_full = false;
        if (!r->is_breaker_open) {
            part_resume(r, p);
        }
    }
}

static void event_finish(struct route *r, struct event *ev)
{
    struct part *p = ev->part;
    offset_tracker_finish(&p->tracker, ev->rec->offset);
    part_pop_finished(p);
    event_unlink(ev);
    event_free(ev);
    part_resume_if_room(r, p);
    r->is_dirty = true;
}

static void event_retry_later(struct route *r, struct event *ev, const char *retry_after)
{
    ev->state = EV_WAITING;
    ev->next_at_ms = app_now_ms() + backoff_delay_ms(r->retry_initial_ms, r->retry_max_ms,
                                                     ev->attempt, retry_after, random_u32());
    r->is_dirty = true;
}

static long long wall_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A delivery's outcome for the dashboard: the last error and since when the route fails. */
static void outcome_note(struct route *r, const struct completion *c, bool is_delivered)
{
    if (is_delivered) {
        r->failing_since_ms = 0;
        return;
    }
    r->last_error_ms = wall_ms();
    if (r->failing_since_ms == 0) {
        r->failing_since_ms = r->last_error_ms;
    }
    if (c->status > 0) {
        snprintf(r->last_error, sizeof(r->last_error), "HTTP %d%s%s", c->status,
                 c->error[0] ? ": " : "", c->error);
    } else {
        snprintf(r->last_error, sizeof(r->last_error), "%s", c->error[0] ? c->error : "no answer");
    }
}

/* RFC 3339 UTC of wall-clock ms, or JSON null for 0. */
static json_t *time_json(long long ms)
{
    if (ms <= 0) {
        return json_null();
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40];
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

static void breaker_note(struct route *r, bool is_success)
{
    if (is_success) {
        r->consecutive_failures = 0;
        if (r->is_breaker_open) {
            r->is_breaker_open = false;
            metric_set(r->m_breaker_open, 0);
            log_info("route %s: endpoint answers again, breaker closed", r->name);
            for (struct part *p = r->parts; p; p = p->next) {
                if (!p->is_paused_full) {
                    part_resume(r, p);
                }
            }
        }
        return;
    }
    if (++r->consecutive_failures >= ROUTE_BREAKER_FAILURES && !r->is_breaker_open) {
        r->is_breaker_open = true;
        metric_set(r->m_breaker_open, 1);
        log_warn("route %s: %d failures in a row, breaker open: partitions paused, probing",
                 r->name, r->consecutive_failures);
        kafka_consumer_pause(r->consumer, -1);
    }
}

/* ---- producing: streaming outputs and dead letters --------------------------------------- */

static int produce_one(struct route *r, struct event *ev, const char *topic, const char *key,
                       const char *value, size_t value_len, const struct kafka_header *h,
                       size_t n_h)
{
    struct send_ctx *sc = xmalloc(sizeof *sc);
    sc->route = r;
    sc->ev = ev;
    int rc = kafka_producer_send(r->env->producer, topic, -1, key, key ? strlen(key) : 0, value,
                                 value_len, h, n_h, on_produced, sc);
    if (rc != KAFKA_OK) {
        free(sc);
        return -1;
    }
    ev->outstanding++;
    return 0;
}

#define HDR(n, v) ((struct kafka_header){(n), (v), strlen(v)})

/* The event's trace id for log lines (out, or NULL when it has no valid traceparent). */
static const char *event_trace_id(const struct event *ev, char out[33])
{
    struct trace t;
    const char *tp = ev->span[0] ? ev->span : kafka_record_header(ev->rec, "traceparent");
    if (tp == NULL || trace_parse(tp, &t) != 0) {
        return NULL;
    }
    memcpy(out, t.trace_id, sizeof t.trace_id);
    return out;
}

/* Queues the dead-letter copy: returns 1 (PRODUCING; counts as in flight again) or 0 (ev
 * finished or waiting: don't touch it). Without a dead-letter topic the event is dropped
 * (logged; the caller counted it as failed). The caller took ev out of in_flight. */
static int dead_letter(struct route *r, struct event *ev, int status, const char *answer,
                       size_t answer_len, const char *why)
{
    const char *ce_id = kafka_record_header(ev->rec, "ce-id");
    char trace_id[33];
    if (r->dead_letter == NULL) {
        log_ev(LOG_LEVEL_ERROR, event_trace_id(ev, trace_id), ce_id,
               "route %s: event %s[%d]@%lld dropped (%s, status %d) and no dead_letter topic",
               r->name, r->topic, (int)ev->rec->partition, (long long)ev->rec->offset, why, status);
        event_finish(r, ev);
        return 0;
    }
    char st[16], att[16], part[16], off[32], excerpt[ROUTE_EXCERPT_BYTES + 1];
    snprintf(st, sizeof st, "%d", status);
    snprintf(att, sizeof att, "%d", ev->attempt);
    snprintf(part, sizeof part, "%d", (int)ev->rec->partition);
    snprintf(off, sizeof off, "%lld", (long long)ev->rec->offset);
    size_t n = answer ? answer_len : 0;
    if (n > ROUTE_EXCERPT_BYTES) {
        n = ROUTE_EXCERPT_BYTES;
    }
    if (n) {
        memcpy(excerpt, answer, n);
    }
    excerpt[n] = '\0';
    struct kafka_header h[32];
    size_t nh = 0;
    for (size_t i = 0; i < ev->rec->n_headers && nh < 22; i++) {
        if (strncmp(ev->rec->headers[i].name, "x-bus-", 6) != 0) {
            h[nh++] = ev->rec->headers[i];
        }
    }
    h[nh++] = HDR("x-bus-status", st);
    h[nh++] = HDR("x-bus-attempts", att);
    h[nh++] = HDR("x-bus-answer", excerpt);
    h[nh++] = HDR("x-bus-error", why);
    h[nh++] = HDR("x-bus-route", r->name);
    h[nh++] = HDR("x-bus-topic", r->topic);
    h[nh++] = HDR("x-bus-partition", part);
    h[nh++] = HDR("x-bus-offset", off);
    ev->state = EV_PRODUCING;
    ev->is_dead_letter = true;
    ev->has_produce_failed = false;
    if (produce_one(r, ev, r->dead_letter, ev->rec->key, ev->rec->value, ev->rec->value_len, h,
                    nh) != 0) {
        log_warn("route %s: dead letter to %s not queued; trying again later", r->name,
                 r->dead_letter);
        event_retry_later(r, ev, NULL);
        return 0;
    }
    log_ev(LOG_LEVEL_WARN, event_trace_id(ev, trace_id), ce_id,
           "route %s: event %s[%d]@%lld dead-lettered to %s (%s)", r->name, r->topic,
           (int)ev->rec->partition, (long long)ev->rec->offset, r->dead_letter, why);
    return 1;
}

/* Whether a streaming answer is a JSON object or an array of objects. */
static bool is_output(json_t *doc)
{
    if (json_is_object(doc)) {
        return true;
    }
    if (!json_is_array(doc)) {
        return false;
    }
    for (size_t i = 0; i < json_array_size(doc); i++) {
        if (!json_is_object(json_array_get(doc, i))) {
            return false;
        }
    }
    return true;
}

/* The id of the index-th output of ev: derived from the route and the input's id, so an input
 * delivered again (a crash, a rebalance, a broker restart before its commit landed) produces
 * outputs with the same ids, and the consumers that act on the world (notify, gamesim's kicks)
 * deduplicating by ce-id act once. An input without ce-id is named by where it sits in the log
 * (topic, partition, offset), which is as stable. */
static void output_id(const struct route *r, const struct event *ev, size_t index,
                      char out[ID_UUID_LEN + 1])
{
    const char *in_id = kafka_record_header(ev->rec, "ce-id");
    if (in_id && *in_id && id_derived(r->name, in_id, index, out) == 0) {
        return;
    }
    /* no ce-id, or one of more than 1 KiB (not from our publisher, which takes 128 at most) */
    char where[320];
    snprintf(where, sizeof where, "%.255s/%d/%lld", r->topic, (int)ev->rec->partition,
             (long long)ev->rec->offset);
    if (id_derived(r->name, where, index, out) != 0) {
        id_uuid7(out); /* route names are short: never happens */
    }
}

/* Sends the outputs of ev's answer doc (an object or array of objects; borrowed): through the
 * shared producer (counting ev->outstanding), or, with txn, in its open transaction. 0, or -1 at
 * the first record not queued (has_produce_failed set). */
static int send_outputs(struct route *r, struct event *ev, json_t *doc, struct kafka_txn *txn)
{
    size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
    const char *in_id = kafka_record_header(ev->rec, "ce-id");
    struct trace span;
    char tp[TRACEPARENT_LEN + 1];
    if (trace_parse(ev->span, &span) != 0) {
        trace_new(&span);
    }
    struct trace child;
    trace_child(&span, &child);
    trace_format(&child, tp);
    char now[32];
    app_time_rfc3339(now);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_is_array(doc) ? json_array_get(doc, i) : doc;
        char *value = json_dumps(o, JSON_COMPACT);
        char id[ID_UUID_LEN + 1];
        output_id(r, ev, i, id);
        char keybuf[64];
        const char *key = NULL;
        json_t *k = json_at_pointer(o, r->output_key);
        if (json_is_string(k)) {
            key = json_string_value(k);
        } else if (json_is_integer(k)) {
            snprintf(keybuf, sizeof keybuf, "%lld", (long long)json_integer_value(k));
            key = keybuf;
        }
        struct kafka_header h[7];
        size_t nh = 0;
        h[nh++] = HDR("ce-id", id);
        h[nh++] = HDR("ce-type", r->output);
        h[nh++] = HDR("ce-source", r->name);
        h[nh++] = HDR("ce-time", now);
        h[nh++] = HDR("traceparent", tp);
        if (in_id) {
            h[nh++] = HDR("causation-id", in_id);
        }
        int rc;
        if (txn) {
            char err[256];
            rc = kafka_txn_send(txn, r->output, key, key ? strlen(key) : 0, value, strlen(value), h,
                                nh, err, sizeof err);
            if (rc != 0) {
                log_warn("route %s: %s", r->name, err);
            }
        } else {
            rc = produce_one(r, ev, r->output, key, value, strlen(value), h, nh);
        }
        free(value);
        if (rc == 0 && log_min_level <= LOG_LEVEL_DEBUG) {
            json_t *extra = json_pack("{s:s, s:s, s:s?}", "route", r->name, "topic", r->output,
                                      "causation_id", in_id);
            log_at(LOG_LEVEL_DEBUG, child.trace_id, id, extra, "route %s: produced %s to %s",
                   r->name, id, r->output);
            json_decref(extra);
        }
        if (rc != 0) {
            ev->has_produce_failed = true;
            return -1;
        }
    }
    return 0;
}

/* Streams a 200/201/202 answer (doc, stolen) to the output topic. Returns 0 when queued (or
 * nothing to queue), -1 when the answer is not a JSON object or array of objects. An
 * exactly-once route stages it instead: its outputs go out in the route's next transaction,
 * with the input's offset (txn_commit). */
static int stream_outputs(struct route *r, struct event *ev, json_t *doc)
{
    if (!is_output(doc)) {
        json_decref(doc);
        return -1;
    }
    ev->is_dead_letter = false;
    ev->has_produce_failed = false;
    if (r->is_exactly_once) {
        ev->state = EV_STAGED;
        ev->answer = doc;
        offset_tracker_finish(&ev->part->tracker, ev->rec->offset);
        part_pop_finished(ev->part);
        r->in_flight--;
        r->is_dirty = true;
        return 0;
    }
    ev->state = EV_PRODUCING;
    (void)send_outputs(r, ev, doc, NULL);
    json_decref(doc);
    if (ev->outstanding == 0) {
        if (ev->has_produce_failed) {
            event_retry_later(r, ev, NULL);
        } else {
            event_finish(r, ev); /* empty array: nothing to produce */
        }
        r->in_flight--;
    }
    return 0;
}

/* ---- exactly once: the route's transactions ------------------------------------------------ */

#define ROUTE_TXN_TIMEOUT_MS 5000
#define ROUTE_TXN_RETRY_MS 1000 /* between attempts to make the transactional producer */
/* A commit unanswered this long from its start is given up with its producer (the outcome is
 * settled by the next one, txn_settle): a broker that answers late is waited for, one that
 * does not answer on this connection is left behind. Below the transaction time-out (10 s by
 * default), past which a broker that never got the commit aborts the transaction anyway. */
#define ROUTE_TXN_RESUME_FOR_MS 8000

/* A transaction call's time-out: ROUTE_TXN_TIMEOUT_MS, or while stopping what is left until
 * stop_by_ms (at least 500 ms: an abort needs a moment). */
static int txn_timeout(const struct route *r)
{
    if (!atomic_load(&r->stop)) {
        return ROUTE_TXN_TIMEOUT_MS;
    }
    long long left = r->stop_by_ms - app_now_ms();
    return left < 500 ? 500 : left > ROUTE_TXN_TIMEOUT_MS ? ROUTE_TXN_TIMEOUT_MS : (int)left;
}

/* After an aborted transaction: every partition forgets what it took in (in flight: orphaned)
 * and reads again from its last committed offset, so every input whose outputs were aborted is
 * delivered again (the endpoint deduplicates by event id, as for any redelivery). */
static void txn_rewind(struct route *r)
{
    for (struct part *p = r->parts; p; p = p->next) {
        int64_t at = p->committed >= 0 ? p->committed : p->first_offset;
        part_clear(r, p);
        offset_tracker_init(&p->tracker, r->env->max_pending_per_partition + 2048);
        p->next_commit = -1;
        p->is_commit_failed = false;
        if (at < 0) {
            continue; /* nothing taken in since assigned: nothing to read again */
        }
        /* next_offset = at: records fetched before the seek took effect are not taken */
        p->next_offset = at;
        kafka_consumer_pause(r->consumer, p->id);
        p->is_paused_full = false;
        p->is_resume_pending = true; /* part_resume seeks to next_offset, then resumes */
        if (!r->is_breaker_open) {
            part_resume(r, p);
        } else if (kafka_consumer_seek(r->consumer, p->id, at) == 0) {
            p->is_resume_pending = false; /* resumed when the breaker closes */
        }
        log_info("route %s: partition %d rewound to %lld", r->name, (int)p->id, (long long)at);
    }
    r->is_dirty = true;
}

/* After a producer was given up with its transaction's outcome unknown: a commit that timed out
 * may still have landed, since librdkafka finishes a commit it sent. The new producer's
 * InitTransactions has ended that transaction one way or the other (it fences the old producer
 * and waits until what it left is committed or aborted), so the group's committed offsets now
 * say which. Where they differ from what the route remembers, the commit landed: the route
 * takes them and rewinds there, and no output goes out twice. 0 when settled, -1 when the
 * offsets could not be read (tried again after ROUTE_TXN_RETRY_MS). */
static int txn_settle(struct route *r)
{
    size_t n = 0;
    for (struct part *p = r->parts; p; p = p->next) {
        n++;
    }
    int32_t *ids = xcalloc(n ? n : 1, sizeof *ids);
    int64_t *offs = xcalloc(n ? n : 1, sizeof *offs);
    size_t i = 0;
    for (struct part *p = r->parts; p; p = p->next) {
        ids[i++] = p->id;
    }
    int rc = n ? kafka_consumer_committed(r->consumer, ids, n, txn_timeout(r), offs) : 0;
    if (rc != 0) {
        log_warn("route %s: the committed offsets could not be read back after a transaction "
                 "was given up: trying again",
                 r->name);
        r->txn_retry_ms = app_now_ms() + ROUTE_TXN_RETRY_MS;
    } else {
        bool is_moved = false, is_late = false;
        i = 0;
        for (struct part *p = r->parts; p; p = p->next, i++) {
            int64_t at = p->committed >= 0 ? p->committed : p->first_offset;
            if (offs[i] < 0 || offs[i] == at) {
                continue;
            }
            /* at -1: nothing taken in since assigned, maybe from an offset read before the
             * commit landed: read from the committed one all the same */
            if (at >= 0) {
                log_warn("route %s: partition %d: the transaction given up had committed up to "
                         "%lld (remembered %lld)",
                         r->name, (int)p->id, (long long)offs[i], (long long)at);
                is_late = true;
            }
            p->committed = offs[i];
            is_moved = true;
        }
        r->is_txn_unsettled = false;
        if (is_late) {
            metric_inc(r->m_txn_settled);
        }
        if (is_moved) {
            txn_rewind(r);
        }
    }
    free(ids);
    free(offs);
    return rc;
}

/* What a transaction's outcome does to the route (takes ids and offs, the n partitions and
 * offsets it committed): committed, its staged outputs are freed; pending, it is kept to be
 * resumed; aborted or given up, the route rewinds. */
static void txn_end(struct route *r, enum kafka_txn_outcome out, int32_t *ids, int64_t *offs,
                    size_t n, const char *err)
{
    if (out == KAFKA_TXN_PENDING) {
        if (!r->is_txn_pending) {
            log_warn("route %s: transaction commit not answered yet (%s): resuming it", r->name,
                     err);
            r->is_txn_pending = true;
            r->pending_ids = ids;
            r->pending_offs = offs;
            r->n_pending = n;
        }
        return;
    }
    bool is_rewind = r->is_assigned_while_pending;
    r->is_txn_pending = r->is_assigned_while_pending = false;
    r->pending_ids = NULL;
    r->pending_offs = NULL;
    r->n_pending = 0;
    if (out == KAFKA_TXN_COMMITTED) {
        metric_inc(r->m_txn_committed);
        for (size_t i = 0; i < n; i++) {
            struct part *p = part_find(r, ids[i]);
            if (p == NULL) {
                continue; /* revoked while the commit was pending */
            }
            p->committed = offs[i];
            struct event *ev = p->head;
            while (ev && ev->rec->offset < offs[i]) {
                struct event *next = ev->next;
                if (ev->state == EV_STAGED) {
                    event_unlink(ev);
                    event_free(ev);
                }
                ev = next;
            }
            part_resume_if_room(r, p);
        }
        r->is_dirty = true;
        if (is_rewind) {
            /* a partition assigned meanwhile may have started below what this committed */
            txn_rewind(r);
        }
    } else {
        metric_inc(r->m_txn_aborted);
        log_warn("route %s: transaction aborted (%s); reading again from the last committed "
                 "offsets",
                 r->name, err);
        if (out == KAFKA_TXN_FATAL) {
            kafka_txn_free(r->txn); /* made again (fencing its predecessor) by the next commit */
            r->txn = NULL;
            r->is_txn_unsettled = true; /* settled once the next producer is ready */
        }
        txn_rewind(r);
    }
    free(ids);
    free(offs);
}

/* Whether the route has its transactional producer, made now when it has none (at most every
 * ROUTE_TXN_RETRY_MS). Making it fences the predecessor with the same transactional.id and ends
 * the transaction that one left open. */
static bool txn_ready(struct route *r)
{
    if (r->txn != NULL) {
        return true;
    }
    if (app_now_ms() < r->txn_retry_ms) {
        return false;
    }
    char err[512];
    r->txn = kafka_txn_new(r->env->bootstrap, r->env->kafka_props, r->txn_id, txn_timeout(r), err,
                           sizeof err);
    if (r->txn == NULL) {
        log_warn("route %s: transactional producer %s not ready (%s): trying again", r->name,
                 r->txn_id, err);
        r->txn_retry_ms = app_now_ms() + ROUTE_TXN_RETRY_MS;
        return false;
    }
    return true;
}

/* Carries on with the pending commit (txn_end), or gives its producer up once it has been
 * unanswered for ROUTE_TXN_RESUME_FOR_MS. */
static void txn_resume(struct route *r)
{
    char err[512];
    enum kafka_txn_outcome out;
    long long left = r->txn_started_ms + ROUTE_TXN_RESUME_FOR_MS - app_now_ms();
    if (left <= 0) {
        snprintf(err, sizeof err, "commit unanswered for %d ms: producer given up",
                 ROUTE_TXN_RESUME_FOR_MS);
        out = KAFKA_TXN_FATAL;
    } else {
        int timeout = txn_timeout(r);
        out = kafka_txn_resume(r->txn, left < timeout ? (int)left : timeout, err, sizeof err);
    }
    txn_end(r, out, r->pending_ids, r->pending_offs, r->n_pending, err);
}

/* One transaction: the outputs of the staged events whose offsets are committable (the finished
 * prefix of each partition, in offset order) and those offsets. Staged events past a partition's
 * prefix wait for the next one: a transaction never carries outputs of an input it does not
 * commit. On failure it is aborted and the route rewinds (txn_rewind). */
static void txn_commit(struct route *r)
{
    if (r->consumer == NULL) {
        return;
    }
    if (r->is_txn_pending) {
        txn_resume(r);
        return;
    }
    int32_t *ids = NULL;
    int64_t *offs = NULL;
    size_t n = 0;
    for (struct part *p = r->parts; p; p = p->next) {
        part_pop_finished(p);
        if (p->next_commit < 0) {
            continue;
        }
        size_t n_out = 0;
        for (struct event *ev = p->head; ev && ev->rec->offset < p->next_commit; ev = ev->next) {
            n_out += ev->state == EV_STAGED;
        }
        if (p->next_commit != p->committed || n_out > 0) {
            ids = xrealloc(ids, (n + 1) * sizeof *ids);
            offs = xrealloc(offs, (n + 1) * sizeof *offs);
            ids[n] = p->id;
            offs[n] = p->next_commit;
            n++;
        }
    }
    if (n == 0) {
        free(ids);
        free(offs);
        return;
    }
    long long now = app_now_ms();
    char err[512];
    if (!txn_ready(r)) {
        free(ids);
        free(offs);
        return;
    }
    if (r->is_txn_unsettled) {
        /* what was chosen above may already be committed: chosen again next tick */
        if (now >= r->txn_retry_ms) {
            (void)txn_settle(r);
        }
        free(ids);
        free(offs);
        return;
    }
    enum kafka_txn_outcome out = KAFKA_TXN_FATAL;
    r->txn_started_ms = app_now_ms();
    if (kafka_txn_begin(r->txn, err, sizeof err) == 0) {
        bool is_sent = true;
        for (struct part *p = r->parts; p && is_sent; p = p->next) {
            for (struct event *ev = p->head;
                 ev && p->next_commit >= 0 && ev->rec->offset < p->next_commit && is_sent;
                 ev = ev->next) {
                if (ev->state == EV_STAGED && send_outputs(r, ev, ev->answer, r->txn) != 0) {
                    is_sent = false;
                }
            }
        }
        if (is_sent) {
            out = kafka_txn_commit(r->txn, r->consumer, ids, offs, n, txn_timeout(r), err,
                                   sizeof err);
        } else {
            snprintf(err, sizeof err, "an output was not queued");
            char aerr[256];
            out = kafka_txn_abort(r->txn, txn_timeout(r), aerr, sizeof aerr);
        }
    }
    txn_end(r, out, ids, offs, n, err);
}

/* ---- delivery ------------------------------------------------------------------------------ */

/* An attempt starts: its bookkeeping and its span (a child of the event's traceparent). */
static void attempt_begin(struct route *r, struct event *ev)
{
    ev->attempt++;
    ev->state = EV_SENDING;
    ev->outstanding = 1;
    r->in_flight++;
    struct trace parent, child;
    if (trace_parse(kafka_record_header(ev->rec, "traceparent"), &parent) == 0) {
        trace_child(&parent, &child);
    } else {
        trace_new(&child);
    }
    trace_format(&child, ev->span);
    ev->sent_at_s = app_now_s();
}

/* The request could not even be queued: the attempt did not happen. */
static void attempt_undo(struct route *r, struct event *ev)
{
    ev->outstanding = 0;
    ev->is_batched = false;
    r->in_flight--;
    ev->attempt--;
    event_retry_later(r, ev, NULL);
}

/* ---- signatures (Standard Webhooks; docs/bus.md "Signatures") ---------------------------- */

/* A webhook-signature of up to CRYPTO_WEBHOOK_MAX_KEYS "v1,<44 characters>" signatures. */
#define ROUTE_SIGNATURE_MAX (CRYPTO_WEBHOOK_MAX_KEYS * (CRYPTO_WEBHOOK_SIG_LEN + 4))
/* How far ahead of the clock a timestamp may be pushed to keep one event's timestamps apart. */
#define ROUTE_SIGN_AHEAD_MAX_S 60

/* The event's id: its ce-id (the publisher gives every event one), else topic-partition-offset. */
static const char *event_id(const struct event *ev, char *buf, size_t len)
{
    const char *id = kafka_record_header(ev->rec, "ce-id");
    if (id && *id && strlen(id) <= DELIVERY_ID_MAX) {
        return id;
    }
    snprintf(buf, len, "p%d-o%lld", (int)ev->rec->partition, (long long)ev->rec->offset);
    return buf;
}

/* The webhook-timestamp of an attempt carrying evs: now, but later than any earlier attempt of
 * one of them, so no two attempts of an event share (id, timestamp) and a receiver's replay
 * cache never takes a fast retry for a replay. Pushed at most ROUTE_SIGN_AHEAD_MAX_S ahead (a
 * receiver would answer the rare repeat with a retryable 429). */
static long long sign_time(struct event **evs, size_t n)
{
    long long now = (long long)time(NULL), ts = now;
    for (size_t i = 0; i < n; i++) {
        if (evs[i]->signed_s >= ts) {
            ts = evs[i]->signed_s + 1;
        }
    }
    if (ts > now + ROUTE_SIGN_AHEAD_MAX_S) {
        ts = now + ROUTE_SIGN_AHEAD_MAX_S;
    }
    for (size_t i = 0; i < n; i++) {
        evs[i]->signed_s = ts;
    }
    return ts;
}

/* The webhook-signature of a request (every key of the route's list). */
static void sign(const struct route *r, const char *id, long long ts, const void *body, size_t len,
                 char out[ROUTE_SIGNATURE_MAX])
{
    /* The keys were checked when the route started (route_start), so this cannot fail. */
    if (crypto_webhook_signer_sign(r->signer, id, ts, body, len, out, ROUTE_SIGNATURE_MAX) != 0) {
        abort();
    }
}

static void deliver(struct route *r, struct event *ev)
{
    struct kafka_record *rec = ev->rec;
    attempt_begin(r, ev);
    r->n_sending++;
    metric_observe(r->m_request_events, 1);

    char part[BUF_INT_LEN], off[BUF_INT_LEN], att[BUF_INT_LEN], ts[BUF_INT_LEN];
    char sig[ROUTE_SIGNATURE_MAX], id_buf[64];
    buf_format_int(part, rec->partition);
    buf_format_int(off, rec->offset);
    buf_format_int(att, ev->attempt);
    struct http_header_kv h[40];
    size_t n = 0;
    h[n++] = (struct http_header_kv){"Content-Type", "application/json"};
    h[n++] = (struct http_header_kv){"ce-specversion", "1.0"};
    bool has_type = false;
    for (size_t i = 0; i < rec->n_headers && n < 28; i++) {
        const char *name = rec->headers[i].name;
        if (strncmp(name, "ce-", 3) == 0 && strcmp(name, "ce-specversion") != 0) {
            h[n++] = (struct http_header_kv){name, rec->headers[i].value};
            has_type |= strcmp(name, "ce-type") == 0;
        } else if (strcmp(name, "causation-id") == 0) {
            h[n++] = (struct http_header_kv){"causation-id", rec->headers[i].value};
        }
    }
    if (!has_type) {
        h[n++] = (struct http_header_kv){"ce-type", r->topic};
    }
    h[n++] = (struct http_header_kv){"traceparent", ev->span};
    h[n++] = (struct http_header_kv){"X-Bus-Route", r->name};
    h[n++] = (struct http_header_kv){"X-Bus-Topic", r->topic};
    h[n++] = (struct http_header_kv){"X-Bus-Partition", part};
    h[n++] = (struct http_header_kv){"X-Bus-Offset", off};
    h[n++] = (struct http_header_kv){"X-Bus-Attempt", att};
    const char *id = event_id(ev, id_buf, sizeof id_buf);
    long long signed_s = sign_time(&ev, 1);
    buf_format_int(ts, signed_s);
    sign(r, id, signed_s, rec->value, rec->value_len, sig);
    h[n++] = (struct http_header_kv){"webhook-id", id};
    h[n++] = (struct http_header_kv){"webhook-timestamp", ts};
    h[n++] = (struct http_header_kv){"webhook-signature", sig};
    struct send_ctx *sc = xcalloc(1, sizeof *sc);
    sc->route = r;
    sc->ev = ev;
    if (http_pool_submit(r->env->pool, "POST", r->endpoint, h, n, rec->value, rec->value_len,
                         r->timeout_ms, ROUTE_MAX_ANSWER_BYTES, on_http_done, sc) != 0) {
        free(sc);
        r->n_sending--;
        attempt_undo(r, ev);
    }
}

/* A CloudEvents attribute name: lower-case letters and digits only. */
static bool is_attr_name(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))) {
            return false;
        }
    }
    return true;
}

/* One request for n events, in CloudEvents' batched content mode (docs/bus.md "Batched
 * delivery"). Each element carries as attributes what a single delivery sends as headers: the
 * record's ce-* headers without "ce-", causationid, traceparent, buspartition, busoffset and
 * busattempt, and the event itself in "data". */
static void deliver_batch(struct route *r, struct event **evs, size_t n)
{
    r->n_sending++;
    metric_observe(r->m_request_events, (double)n);
    struct buf body;
    buf_init(&body, 0);
    buf_reserve(&body, r->pend_bytes + n * 400 + 2);
    buf_appends(&body, "[");
    for (size_t i = 0; i < n; i++) {
        struct event *ev = evs[i];
        struct kafka_record *rec = ev->rec;
        attempt_begin(r, ev);
        ev->is_batched = true;
        buf_appends(&body, i ? ",{\"specversion\":\"1.0\"" : "{\"specversion\":\"1.0\"");
        bool has_type = false;
        for (size_t k = 0; k < rec->n_headers; k++) {
            const char *name = rec->headers[k].name, *attr = NULL;
            if (strncmp(name, "ce-", 3) == 0 && strcmp(name, "ce-specversion") != 0) {
                attr = name + 3;
            } else if (strcmp(name, "causation-id") == 0) {
                attr = "causationid";
            }
            if (attr == NULL || !is_attr_name(attr)) {
                continue;
            }
            has_type |= strcmp(attr, "type") == 0;
            buf_appendf(&body, ",\"%s\":", attr);
            buf_append_json_string(&body, rec->headers[k].value);
        }
        if (!has_type) {
            buf_appends(&body, ",\"type\":");
            buf_append_json_string(&body, r->topic);
        }
        buf_appendf(&body,
                    ",\"traceparent\":\"%s\",\"buspartition\":%d,\"busoffset\":%lld,"
                    "\"busattempt\":%d,\"datacontenttype\":\"application/json\",\"data\":",
                    ev->span, (int)rec->partition, (long long)rec->offset, ev->attempt);
        buf_append(&body, rec->value, rec->value_len);
        buf_appends(&body, "}");
    }
    buf_appends(&body, "]");

    char count[24], ts[24], sig[ROUTE_SIGNATURE_MAX], id_buf[64];
    snprintf(count, sizeof count, "%zu", n);
    const char *id = event_id(evs[0], id_buf, sizeof id_buf);
    long long signed_s = sign_time(evs, n);
    snprintf(ts, sizeof ts, "%lld", signed_s);
    sign(r, id, signed_s, body.data, body.len, sig);
    struct http_header_kv h[8];
    size_t nh = 0;
    h[nh++] = (struct http_header_kv){"Content-Type", DELIVERY_BATCH_TYPE};
    h[nh++] = (struct http_header_kv){"X-Bus-Route", r->name};
    h[nh++] = (struct http_header_kv){"X-Bus-Topic", r->topic};
    h[nh++] = (struct http_header_kv){"X-Bus-Batch", count};
    h[nh++] = (struct http_header_kv){"webhook-id", id};
    h[nh++] = (struct http_header_kv){"webhook-timestamp", ts};
    h[nh++] = (struct http_header_kv){"webhook-signature", sig};
    struct send_ctx *sc = xcalloc(1, sizeof *sc);
    sc->route = r;
    sc->evs = xmalloc(n * sizeof *sc->evs);
    memcpy(sc->evs, evs, n * sizeof *sc->evs);
    sc->n_evs = n;
    if (http_pool_submit(r->env->pool, "POST", r->endpoint, h, nh, body.data, body.len,
                         r->timeout_ms, ROUTE_MAX_ANSWER_BYTES, on_http_done, sc) != 0) {
        free(sc->evs);
        free(sc);
        r->n_sending--;
        for (size_t i = 0; i < n; i++) {
            attempt_undo(r, evs[i]);
        }
    }
    buf_release(&body);
}

static bool is_retryable(int status)
{
    return status == 0 || status == 408 || status == 429 || status >= 500;
}

/* The answer to one event's attempt. For an event of a batch, c is that event's share of the
 * batch's answer, and the batch (not each event) counts for the breaker and the retry log. */
static void handle_http(struct route *r, struct event *ev, struct completion *c, bool is_batched)
{
    const char *ce_id = kafka_record_header(ev->rec, "ce-id");
    double seconds = app_now_s() - ev->sent_at_s;
    char trace_id[33];
    metric_observe(r->m_seconds, seconds);
    if (log_min_level <= LOG_LEVEL_DEBUG) {
        /* One line per delivery attempt: the hop of the event's journey (busctl trace). */
        json_t *extra = json_pack("{s:s, s:s, s:s, s:i, s:I, s:i, s:i, s:f}", "route", r->name,
                                  "endpoint", r->endpoint, "topic", r->topic, "partition",
                                  (int)ev->rec->partition, "offset", (json_int_t)ev->rec->offset,
                                  "attempt", ev->attempt, "status", c->status, "seconds", seconds);
        log_at(LOG_LEVEL_DEBUG, event_trace_id(ev, trace_id), ce_id, extra,
               "route %s: delivered %s[%d]@%lld, attempt %d: %d%s%s", r->name, r->topic,
               (int)ev->rec->partition, (long long)ev->rec->offset, ev->attempt, c->status,
               c->error[0] ? " " : "", c->error);
        json_decref(extra);
    }
    if (c->status >= 200 && c->status < 300) {
        count_delivered(r, c->status);
        if (ev->rec->timestamp_ms > 0) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            double age_s = (double)now.tv_sec + now.tv_nsec / 1e9 - ev->rec->timestamp_ms / 1e3;
            metric_observe(r->m_age, age_s > 0 ? age_s : 0);
        }
        if (!is_batched) {
            breaker_note(r, true);
        }
        outcome_note(r, c, true);
        if (c->status == 204) {
            metric_inc(r->m_no_content);
        } else if (r->is_streaming && c->status <= 202 && (c->answer || c->body_len > 0)) {
            json_error_t jerr;
            json_t *doc =
                c->answer ? json_incref(c->answer) : json_loadb(c->body, c->body_len, 0, &jerr);
            if (stream_outputs(r, ev, doc) == 0) {
                return; /* in_flight stays until the outputs are acknowledged */
            }
            metric_inc(r->m_failed);
            r->in_flight--;
            if (dead_letter(r, ev, c->status, c->body, c->body_len,
                            "streaming answer is not a JSON object or array of objects")) {
                r->in_flight++;
            }
            return;
        }
        r->in_flight--;
        event_finish(r, ev);
        return;
    }
    if (c->status > 0) {
        count_delivered(r, c->status);
    }
    bool is_spent = r->retry_max_attempts > 0 && ev->attempt >= r->retry_max_attempts;
    outcome_note(r, c, false);
    if (is_retryable(c->status) && !is_spent) {
        metric_inc(r->m_retried);
        if (!is_batched) {
            breaker_note(r, false);
            log_ev(LOG_LEVEL_WARN, event_trace_id(ev, trace_id), ce_id,
                   "route %s: attempt %d failed (%d%s%s), retrying", r->name, ev->attempt,
                   c->status, c->error[0] ? " " : "", c->error);
        }
        r->in_flight--;
        event_retry_later(r, ev, c->retry_after);
        return;
    }
    if (!is_batched) {
        breaker_note(r, !is_retryable(c->status)); /* a refusal: the endpoint does answer */
    }
    metric_inc(r->m_failed);
    char why[160];
    if (is_spent) {
        snprintf(why, sizeof why, "max_attempts spent (last: %d %s)", c->status, c->error);
    } else {
        snprintf(why, sizeof why, "rejected with %d", c->status);
    }
    r->in_flight--;
    if (dead_letter(r, ev, c->status, c->body, c->body_len, why)) {
        r->in_flight++;
    }
}

/* Element i of a streaming batch's answer as that event's own answer: null is a 204, an
 * object or array of objects its outputs (*answer, borrowed from doc). -1 when the answer is
 * not an array of one such element per event. */
static int batch_item(json_t *doc, size_t i, size_t n, int *status, json_t **answer)
{
    if (!json_is_array(doc) || json_array_size(doc) != n) {
        return -1;
    }
    json_t *el = json_array_get(doc, i);
    if (json_is_null(el)) {
        *status = 204;
        return 0;
    }
    if (!is_output(el)) {
        return -1;
    }
    *answer = el;
    return 0;
}

/* The answer to a batched request, event by event: 2xx finishes every event (a streaming
 * route's 200/201/202 body is an array with each event's answer); a retryable answer retries
 * every event; anything else (a refusal, an answer that does not fit) sends the events again one
 * by one, so that each gets its own answer and only a refused one is dead-lettered. */
static void handle_batch(struct route *r, struct completion *c)
{
    json_t *doc = NULL;
    bool is_ok = c->status >= 200 && c->status < 300;
    bool has_items = is_ok && r->is_streaming && c->status <= 202 && c->body_len > 0;
    if (has_items) {
        json_error_t jerr;
        doc = json_loadb(c->body, c->body_len, 0, &jerr);
        if (!json_is_array(doc) || json_array_size(doc) != c->n_evs) {
            is_ok = false;
        }
    }
    bool is_retry = !is_ok && is_retryable(c->status);
    bool is_split = !is_ok && !is_retry;
    breaker_note(r, !is_retry);
    if (is_retry) {
        outcome_note(r, c, false);
    }
    if (is_retry) {
        log_warn("route %s: batch of %zu failed (%d%s%s), retrying", r->name, c->n_evs, c->status,
                 c->error[0] ? " " : "", c->error);
    } else if (is_split) {
        log_warn("route %s: batch of %zu answered %d, not as a batch: delivering its events one "
                 "by one",
                 r->name, c->n_evs, c->status);
    }
    for (size_t i = 0; i < c->n_evs; i++) {
        struct event *ev = c->evs[i];
        ev->outstanding--;
        ev->is_batched = false;
        if (ev->part == NULL) { /* partition revoked meanwhile */
            if (ev->outstanding == 0) {
                r->orphans_outstanding--;
                event_free(ev);
            }
            continue;
        }
        struct completion one = *c;
        one.body = NULL;
        one.body_len = 0;
        if (is_split || (has_items && batch_item(doc, i, c->n_evs, &one.status, &one.answer))) {
            ev->is_solo = true;
            ev->attempt--; /* not an answer about this event */
            ev->state = EV_WAITING;
            ev->next_at_ms = 0;
            r->in_flight--;
            r->is_dirty = true;
            continue;
        }
        handle_http(r, ev, &one, true);
    }
    json_decref(doc);
}

static void handle_produce(struct route *r, struct event *ev, struct completion *c)
{
    if (c->status != KAFKA_OK) {
        ev->has_produce_failed = true;
        log_warn("route %s: producing to %s failed: %s", r->name,
                 ev->is_dead_letter ? r->dead_letter : r->output, c->error);
    }
    if (ev->outstanding > 0) {
        return;
    }
    r->in_flight--;
    if (ev->has_produce_failed) {
        event_retry_later(r, ev, NULL); /* delivered again: at least once */
        return;
    }
    if (ev->is_dead_letter) {
        metric_inc(r->m_dead);
    }
    event_finish(r, ev);
}

static void drain_completions(struct route *r)
{
    pthread_mutex_lock(&r->lock);
    struct completion *c = r->done_head;
    r->done_head = r->done_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    while (c) {
        struct completion *next = c->next;
        struct event *ev = c->ev;
        if (ev == NULL) { /* a batched request */
            r->n_sending--;
            r->is_dirty = true;
            handle_batch(r, c);
            completion_free(c);
            c = next;
            continue;
        }
        ev->outstanding--;
        if (ev->part == NULL) { /* partition revoked meanwhile */
            if (ev->outstanding == 0) {
                r->orphans_outstanding--;
                event_free(ev);
            }
        } else if (c->kind == DONE_HTTP) {
            r->n_sending--;
            r->is_dirty = true; /* a delivery slot is free, whatever becomes of ev */
            handle_http(r, ev, c, false);
        } else {
            handle_produce(r, ev, c);
        }
        completion_free(c);
        c = next;
    }
}

/* ---- scheduling ---------------------------------------------------------------------------- */

/* Keys seen during one partition scan: an event may start only when no earlier unfinished
 * event of its partition has the same key. Open addressing over a fixed table sized above
 * the partition's bound. */
struct keyset {
    const char **slots;
    uint64_t *hashes;
    uint32_t *gens; /* a slot is in the set only when its gen equals gen: clearing is gen++ */
    uint32_t gen;
    size_t cap;
};

static void keyset_clear(struct keyset *ks)
{
    if (++ks->gen == 0) { /* wrapped: old stamps could match again */
        memset(ks->gens, 0, ks->cap * sizeof *ks->gens);
        ks->gen = 1;
    }
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) {
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    }
    return h;
}

/* Returns true when key (whose hash_str() is h) was already present; adds it otherwise. */
static bool keyset_test_add(struct keyset *ks, const char *key, uint64_t h)
{
    size_t i = h & (ks->cap - 1);
    while (ks->gens[i] == ks->gen) {
        if (ks->hashes[i] == h && strcmp(ks->slots[i], key) == 0) {
            return true;
        }
        i = (i + 1) & (ks->cap - 1);
    }
    ks->slots[i] = key;
    ks->hashes[i] = h;
    ks->gens[i] = ks->gen;
    return false;
}

/* Sends the events gathered for a batched request (one alone goes as a single delivery). */
static void flush_pending(struct route *r)
{
    if (r->n_pend == 0) {
        return;
    }
    r->n_sending--; /* the gathered request's slot: deliver() and deliver_batch() take it */
    if (r->n_pend == 1) {
        deliver(r, r->pend[0]);
    } else {
        deliver_batch(r, r->pend, (size_t)r->n_pend);
    }
    r->n_pend = 0;
    r->pend_bytes = 0;
}

/* Starts an event: alone, or gathered into the next batched request. The first event gathered
 * takes the request's delivery slot. A probe (breaker open), an event whose batch was refused
 * and an event that is not a JSON object go alone. */
static void start_event(struct route *r, struct event *ev)
{
    const struct kafka_record *rec = ev->rec;
    if (r->batch <= 1 || r->is_breaker_open || ev->is_solo || rec->value_len == 0 ||
        rec->value[0] != '{') {
        deliver(r, ev);
        return;
    }
    if (r->n_pend > 0 &&
        (r->n_pend >= r->batch || r->pend_bytes + rec->value_len > ROUTE_BATCH_MAX_BYTES)) {
        flush_pending(r);
    }
    if (r->n_pend == 0) {
        r->n_sending++;
    }
    r->pend[r->n_pend++] = ev;
    r->pend_bytes += rec->value_len;
}

/* Room for one more event: a free delivery slot, or room in the batch being gathered. */
static bool has_room(const struct route *r, int limit)
{
    return r->n_sending < limit || (r->n_pend > 0 && r->n_pend < r->batch);
}

/* Starts what may start; returns the earliest time a waiting event becomes due (or -1). */
static long long schedule(struct route *r, struct keyset *ks)
{
    long long now = app_now_ms(), next_due = -1;
    int limit = r->is_breaker_open ? 1 : r->concurrency;
    /* The first partition scanned takes the free slots: each call starts one partition
     * further, so that one partition with a deep backlog does not starve the others. */
    size_t n_parts = 0;
    for (struct part *p = r->parts; p; p = p->next) {
        n_parts++;
    }
    struct part *start = r->parts;
    for (size_t i = n_parts ? r->sched_turn++ % n_parts : 0; i > 0; i--) {
        start = start->next;
    }
    for (size_t i = 0; i < n_parts && has_room(r, limit); i++) {
        struct part *p = start;
        start = start->next ? start->next : r->parts;
        if (r->ordering == BUSCONF_ORDER_KEY) {
            keyset_clear(ks);
        }
        for (struct event *ev = p->head; ev && has_room(r, limit); ev = ev->next) {
            if (ev->state == EV_STAGED) {
                continue; /* answered: its outputs wait for the transaction, in offset order */
            }
            bool is_blocked = false;
            if (r->ordering == BUSCONF_ORDER_KEY && ev->key) {
                is_blocked = keyset_test_add(ks, ev->key, ev->key_hash);
            }
            if (ev->state == EV_WAITING && !is_blocked) {
                if (ev->next_at_ms <= now) {
                    start_event(r, ev);
                } else if (next_due < 0 || ev->next_at_ms < next_due) {
                    next_due = ev->next_at_ms;
                }
            }
            if (r->ordering == BUSCONF_ORDER_PARTITION) {
                break; /* only the oldest unfinished event of the partition */
            }
        }
    }
    flush_pending(r);
    return next_due;
}

/* ---- the route thread ---------------------------------------------------------------------- */

static void take_record(struct route *r, struct kafka_record *rec)
{
    struct part *p = part_find(r, rec->partition);
    if (p == NULL) { /* not (or no longer) ours: its owner reads it */
        kafka_record_free(rec);
        return;
    }
    if (p->next_offset >= 0 && rec->offset < p->next_offset) {
        kafka_record_free(rec); /* fetched again after a seek: already taken in */
        return;
    }
    if (p->first_offset < 0) {
        p->first_offset = rec->offset;
    }
    if (offset_tracker_add(&p->tracker, rec->offset) != 0) {
        /* no room: read it again (from next_offset) once there is */
        kafka_consumer_pause(r->consumer, p->id);
        p->is_paused_full = true;
        kafka_record_free(rec);
        return;
    }
    /* A dead letter replayed for another route (busctl dlq replay): not ours to deliver. */
    const char *replay_for = kafka_record_header(rec, "x-bus-replay-route");
    if (replay_for != NULL && strcmp(replay_for, r->name) != 0) {
        p->next_offset = rec->offset + 1;
        offset_tracker_finish(&p->tracker, rec->offset);
        part_pop_finished(p);
        kafka_record_free(rec);
        r->is_dirty = true;
        return;
    }
    p->next_offset = rec->offset + 1;
    struct event *ev = xcalloc(1, sizeof *ev);
    ev->part = p;
    ev->rec = rec;
    ev->key = rec->key;
    ev->key_hash = rec->key ? hash_str(rec->key) : 0;
    ev->state = EV_WAITING;
    ev->prev = p->tail;
    if (p->tail) {
        p->tail->next = ev;
    } else {
        p->head = ev;
    }
    p->tail = ev;
    p->n_events++;
    if (p->n_events >= r->env->max_pending_per_partition && !p->is_paused_full) {
        p->is_paused_full = true;
        kafka_consumer_pause(r->consumer, p->id);
    }
    r->is_dirty = true;
}

/* The dashboard's figures (docs/bus.md, GET /v1/routes): this process's counters since it
 * started, read from the route's metrics. Route thread only (m_delivered grows there). */
static void status_add_counters(struct route *r, json_t *st, double lag_total)
{
    json_t *answers = json_object();
    double ok = 0;
    for (int status = 100; status < 600; status++) {
        if (r->m_delivered[status] == NULL) {
            continue;
        }
        double v = metric_value(r->m_delivered[status]);
        char code[16];
        snprintf(code, sizeof code, "%d", status);
        json_object_set_new(answers, code, json_integer((json_int_t)v));
        if (status >= 200 && status < 300) {
            ok += v;
        }
    }
    json_object_set_new(st, "dead_letter",
                        r->dead_letter ? json_string(r->dead_letter) : json_null());
    json_object_set_new(st, "lag", json_integer((json_int_t)lag_total));
    json_object_set_new(st, "counters",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "delivered", (json_int_t)ok,
                                  "retried", (json_int_t)metric_value(r->m_retried), "failed",
                                  (json_int_t)metric_value(r->m_failed), "dead_lettered",
                                  (json_int_t)metric_value(r->m_dead), "no_content",
                                  (json_int_t)metric_value(r->m_no_content), "answers", answers));
}

static void update_status(struct route *r)
{
    bool is_retrying = false;
    json_t *parts = json_array();
    double lag_total = 0;
    long long now = app_now_ms();
    for (struct part *p = r->parts; p; p = p->next) {
        int64_t hw = kafka_consumer_high_watermark(r->consumer, p->id);
        /* A paused partition is not fetched, so the cached watermark stops moving and the lag
         * (and the lag alert) would freeze exactly when the endpoint is down: ask the broker,
         * at most every ROUTE_PAUSED_WATERMARK_MS and briefly. */
        if ((p->is_paused_full || r->is_breaker_open) && now >= p->next_watermark_query_ms) {
            p->next_watermark_query_ms = now + ROUTE_PAUSED_WATERMARK_MS;
            int64_t low = -1, high = -1;
            if (kafka_consumer_query_watermarks(r->consumer, p->id, ROUTE_WATERMARK_TIMEOUT_MS,
                                                &low, &high) == 0) {
                if (high > p->queried_watermark) {
                    p->queried_watermark = high;
                }
                p->queried_low = low;
            }
        }
        if (p->queried_watermark > hw) {
            hw = p->queried_watermark;
        }
        p->high_watermark = hw;
        long long lag = -1;
        int64_t base = p->committed;
        if (p->high_watermark >= 0 && base >= 0) {
            lag = p->high_watermark - base;
        } else if (p->high_watermark >= 0 && p->head) {
            lag = p->high_watermark - p->head->rec->offset;
        } else if (p->high_watermark >= 0 && p->next_offset >= 0) {
            lag = p->high_watermark - p->next_offset;
        } else if (p->high_watermark >= 0 && p->queried_low >= 0) {
            lag = p->high_watermark - p->queried_low; /* never committed nor fetched: the group
                                                       * starts at the earliest offset */
        }
        if (lag > 0) {
            lag_total += (double)lag;
        }
        int in_flight = 0;
        for (struct event *ev = p->head; ev; ev = ev->next) {
            in_flight += ev->state != EV_WAITING && ev->state != EV_STAGED;
            is_retrying |= ev->attempt > 0 && ev->state == EV_WAITING;
        }
        json_array_append_new(parts, json_pack("{s:i, s:I, s:I, s:I, s:i, s:i, s:b}", "partition",
                                               (int)p->id, "committed", (json_int_t)p->committed,
                                               "high_watermark", (json_int_t)p->high_watermark,
                                               "lag", (json_int_t)lag, "pending", (int)p->n_events,
                                               "in_flight", in_flight, "paused",
                                               p->is_paused_full || r->is_breaker_open));
    }
    const char *state = r->is_breaker_open ? "breaker-open" : is_retrying ? "retrying" : "running";
    json_t *st = json_pack("{s:s, s:s, s:s, s:s, s:s*, s:s, s:i, s:i, s:i, s:i, s:o}", "name",
                           r->name, "topic", r->topic, "endpoint", r->endpoint, "mode",
                           r->is_streaming ? "streaming" : "one-way", "output", r->output, "state",
                           state, "in_flight", r->in_flight, "sending", r->n_sending, "concurrency",
                           r->concurrency, "batch", r->batch, "partitions", parts);
    json_object_set_new(st, "exactly_once", json_boolean(r->is_exactly_once));
    if (r->is_exactly_once) {
        json_object_set_new(st, "transactions",
                            json_pack("{s:I, s:I}", "committed",
                                      (json_int_t)metric_value(r->m_txn_committed), "aborted",
                                      (json_int_t)metric_value(r->m_txn_aborted)));
    }
    json_object_set_new(st, "last_error",
                        r->last_error_ms ? json_string(r->last_error) : json_null());
    json_object_set_new(st, "last_error_at", time_json(r->last_error_ms));
    json_object_set_new(st, "failing_since", time_json(r->failing_since_ms));
    metric_set(r->m_in_flight, r->in_flight);
    metric_set(r->m_lag, lag_total);
    status_add_counters(r, st, lag_total);
    pthread_mutex_lock(&r->lock);
    json_decref(r->status);
    r->status = st;
    pthread_mutex_unlock(&r->lock);
}

static void *route_main(void *arg)
{
    struct route *r = arg;
    struct keyset ks;
    ks.cap = 1;
    while (ks.cap < 2 * (r->env->max_pending_per_partition + 2048)) {
        ks.cap <<= 1;
    }
    ks.slots = xcalloc(ks.cap, sizeof *ks.slots);
    ks.hashes = xcalloc(ks.cap, sizeof *ks.hashes);
    ks.gens = xcalloc(ks.cap, sizeof *ks.gens);
    ks.gen = 1;
    bool is_stopping = false;
    long long next_due = -1;
    if (r->is_exactly_once) {
        /* Before the first poll: a restarted instance fences its predecessor (same
         * transactional.id) and aborts what it left open now, so the offsets its partitions
         * start from are stable at once (a read_committed offset fetch waits while a
         * transaction holds pending offsets, up to the transaction time-out). */
        (void)txn_ready(r);
    }
    for (;;) {
        long long now = app_now_ms();
        if (!is_stopping && atomic_load(&r->stop)) {
            is_stopping = true;
            kafka_consumer_pause(r->consumer, -1); /* stop fetching */
            log_info("route %s: stopping, %d deliveries in flight", r->name, r->in_flight);
        }
        if (is_stopping && (r->in_flight == 0 || now >= r->stop_deadline_ms)) {
            break;
        }
        int timeout = 100;
        if (next_due >= 0) {
            timeout = next_due <= now ? 0 : (int)(next_due - now < 100 ? next_due - now : 100);
        }
        struct kafka_record *rec = NULL;
        int got = kafka_consumer_poll(r->consumer, r->is_dirty ? 0 : timeout, &rec);
        if (got == 1) {
            if (is_stopping) {
                kafka_record_free(rec); /* not taken: read again after the restart */
            } else {
                take_record(r, rec);
            }
            /* take what is already there before scheduling */
            for (int i = 0; i < 256 && got == 1; i++) {
                got = kafka_consumer_poll(r->consumer, 0, &rec);
                if (got == 1) {
                    if (is_stopping) {
                        kafka_record_free(rec);
                    } else {
                        take_record(r, rec);
                    }
                }
            }
        }
        drain_completions(r);
        now = app_now_ms();
        if (r->is_dirty || (next_due >= 0 && next_due <= now)) {
            r->is_dirty = false;
            next_due = is_stopping ? -1 : schedule(r, &ks);
        }
        if (now >= r->next_commit_ms) {
            for (struct part *p = r->parts; p; p = p->next) {
                commit_part(r, p, false);
                if (p->is_resume_pending && !p->is_paused_full && !r->is_breaker_open &&
                    !is_stopping) {
                    part_resume(r, p);
                }
            }
            if (r->is_exactly_once) {
                txn_commit(r);
            }
            r->next_commit_ms = now + ROUTE_COMMIT_INTERVAL_MS;
        }
        if (now >= r->next_status_ms) {
            update_status(r);
            r->next_status_ms = now + ROUTE_STATUS_INTERVAL_MS;
        }
    }
    /* Every commit from here on (and leaving the group) ends by stop_by_ms, whatever the
     * broker does. */
    kafka_consumer_set_deadline(r->consumer, r->stop_by_ms);
    for (struct part *p = r->parts; p; p = p->next) {
        commit_part(r, p, true);
    }
    if (r->is_exactly_once) {
        txn_commit(r);
    }
    /* Leaving the group here, on the route's thread, so that every route leaves at once: the
     * revocation (on_rebalance, on this thread) commits the finished prefix and orphans what
     * is still in flight (never committed: delivered again by the next owner). */
    pthread_mutex_lock(&r->lock);
    r->wake = NULL;
    pthread_mutex_unlock(&r->lock);
    long long left = r->stop_by_ms - app_now_ms();
    kafka_consumer_close(r->consumer, left > 0 ? (long)left : 0);
    r->consumer = NULL;
    kafka_txn_free(r->txn); /* a commit still pending may land: the group's offsets say */
    r->txn = NULL;
    free(r->pending_ids);
    free(r->pending_offs);
    r->is_txn_pending = false;
    free(ks.slots);
    free(ks.hashes);
    free(ks.gens);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void route_free_fields(struct route *r)
{
    free(r->name);
    free(r->topic);
    free(r->endpoint);
    free(r->output);
    free(r->output_key);
    free(r->dead_letter);
    free(r->secret);
    crypto_webhook_signer_free(r->signer);
    free(r->txn_id);
    free(r->pend);
    json_decref(r->raw);
    json_decref(r->status);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

struct route *route_start(const struct route_env *env, const struct busconf_route *conf,
                          const struct busconf_topic *output_topic, char *err, size_t err_len)
{
    struct crypto_webhook_signer *signer =
        crypto_webhook_signer_new(conf->secret ? conf->secret : env->signing_secret);
    if (signer == NULL) {
        snprintf(err, err_len,
                 "its signing key list is empty, has more than %d keys or a bad whsec_ key",
                 CRYPTO_WEBHOOK_MAX_KEYS);
        return NULL;
    }
    struct route *r = xcalloc(1, sizeof *r);
    r->signer = signer;
    r->env = env;
    r->name = xstrdup(conf->name);
    r->topic = xstrdup(conf->topic);
    r->endpoint = xstrdup(conf->endpoint);
    r->is_streaming = conf->mode == BUSCONF_STREAMING;
    r->is_exactly_once = r->is_streaming && conf->is_exactly_once;
    r->output = dup_or_null(conf->output);
    r->output_key = output_topic ? dup_or_null(output_topic->key) : NULL;
    r->dead_letter = dup_or_null(conf->dead_letter);
    r->secret = xstrdup(conf->secret ? conf->secret : env->signing_secret);
    r->ordering = conf->ordering;
    r->concurrency = conf->concurrency > 0 ? conf->concurrency : 1;
    r->batch =
        conf->batch > 1 ? (conf->batch < DELIVERY_BATCH_MAX ? conf->batch : DELIVERY_BATCH_MAX) : 1;
    r->pend = xcalloc((size_t)r->batch, sizeof *r->pend);
    r->timeout_ms = conf->timeout_ms;
    r->retry_initial_ms = conf->retry_initial_ms;
    r->retry_max_ms = conf->retry_max_ms;
    r->retry_max_attempts = conf->retry_max_attempts;
    r->raw = conf->raw ? json_deep_copy(conf->raw) : json_object();
    atomic_init(&r->stop, false);
    pthread_mutex_init(&r->lock, NULL);

    r->m_failed = route_metric(r, 0, "bus_dispatcher_failed_total",
                               "Events that could not be delivered (dead-lettered or dropped).");
    r->m_retried = route_metric(r, 0, "bus_dispatcher_retried_total",
                                "Attempts that failed and will be retried.");
    r->m_dead = route_metric(r, 0, "bus_dispatcher_dead_lettered_total",
                             "Events whose dead-letter copy was acknowledged.");
    r->m_no_content = route_metric(r, 0, "bus_dispatcher_no_content_total",
                                   "Deliveries answered 204 (nothing to stream).");
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\"", r->name);
    r->m_seconds =
        metrics_histogram("bus_dispatcher_delivery_seconds",
                          "Time from sending a delivery to its answer.", labels, NULL, 0);
    r->m_age = metrics_histogram("bus_dispatcher_event_age_seconds",
                                 "Time from the record's Kafka timestamp to its successful "
                                 "delivery (end-to-end latency through the bus).",
                                 labels, NULL, 0);
    static const double sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    r->m_request_events = metrics_histogram("bus_dispatcher_request_events",
                                            "Events per delivery request (1 unless the route "
                                            "batches).",
                                            labels, sizes, sizeof sizes / sizeof sizes[0]);
    r->m_in_flight =
        metrics_gauge("bus_dispatcher_in_flight", "Deliveries in flight per route.", labels);
    r->m_breaker_open = metrics_gauge("bus_dispatcher_breaker_open",
                                      "1 while the route's circuit breaker is open (endpoint "
                                      "failing: partitions paused, one probe at a time), else 0.",
                                      labels);
    metric_set(r->m_breaker_open, 0); /* a reloaded route starts closed */
    r->m_lag = metrics_gauge("bus_dispatcher_lag",
                             "Events not yet committed (high watermark - committed), summed "
                             "over the route's partitions.",
                             labels);

    if (r->is_exactly_once) {
        /* One transactional.id per route and dispatcher instance, the same after a restart: the
         * restarted instance fences its predecessor and aborts what it left open. Two instances
         * running the route have different ids; the group generation sent with the offsets
         * (KIP-447) fences an instance that lost its partitions. */
        char id[600];
        snprintf(id, sizeof id, "bus.route.%s.%s", r->name, env->instance_id);
        r->txn_id = xstrdup(id);
        static const char txn_help[] =
            "Transactions of exactly-once routes, by outcome (committed: outputs and input "
            "offsets visible together; aborted: their inputs are delivered again; late_commit: "
            "given up (also counted as aborted) but committed after all, found when the "
            "committed offsets were read back).";
        snprintf(labels, sizeof labels, "route=\"%s\",outcome=\"committed\"", r->name);
        r->m_txn_committed = metrics_counter("bus_dispatcher_transactions_total", txn_help, labels);
        snprintf(labels, sizeof labels, "route=\"%s\",outcome=\"aborted\"", r->name);
        r->m_txn_aborted = metrics_counter("bus_dispatcher_transactions_total", txn_help, labels);
        snprintf(labels, sizeof labels, "route=\"%s\",outcome=\"late_commit\"", r->name);
        r->m_txn_settled = metrics_counter("bus_dispatcher_transactions_total", txn_help, labels);
        snprintf(labels, sizeof labels, "route=\"%s\"", r->name);
    }
    char group[300];
    snprintf(group, sizeof group, "bus.route.%s", r->name);
    r->consumer = kafka_consumer_new(env->bootstrap, group, r->topic, env->kafka_props,
                                     on_rebalance, r, err, err_len);
    if (r->consumer == NULL) {
        route_free_fields(r);
        return NULL;
    }
    r->wake = r->consumer;
    kafka_consumer_on_commit_failed(r->consumer, on_commit_failed);
    update_status(r);
    if (pthread_create(&r->thread, NULL, route_main, r) != 0) {
        snprintf(err, err_len, "route %s: cannot start its thread", r->name);
        kafka_consumer_free(r->consumer);
        route_free_fields(r);
        return NULL;
    }
    log_info("route %s: started (%s -> %s, group %s%s%s)", r->name, r->topic, r->endpoint, group,
             r->txn_id ? ", exactly once, transactional.id " : "", r->txn_id ? r->txn_id : "");
    return r;
}

void route_stop_begin(struct route *r, long long stop_by_ms)
{
    if (r == NULL) {
        return;
    }
    long long now = app_now_ms();
    long long budget = stop_by_ms > now ? stop_by_ms - now : 0;
    /* Deliveries in flight may finish until a third of the time (at most 1 s) is left for the
     * commits and leaving the group. */
    long long reserve = budget / 3 < 1000 ? budget / 3 : 1000;
    r->stop_by_ms = stop_by_ms;
    r->stop_deadline_ms = stop_by_ms - reserve;
    atomic_store(&r->stop, true);
    kafka_consumer_wake(r->consumer);
}

struct route *route_stop_end(struct route *r, bool may_abandon)
{
    if (r == NULL) {
        return NULL;
    }
    pthread_join(r->thread, NULL); /* it left the group */
    struct part *p = r->parts;
    while (p) {
        struct part *next = p->next;
        part_drop(r, p, false);
        p = next;
    }
    r->parts = NULL;
    /* Late callbacks reference r: wait for them (bounded by the HTTP time-out and the
     * producer's message time-out), or, when the caller may abandon them, until stop_by_ms:
     * the caller then frees r with route_free_late() once the pool and the producer are gone
     * (their callbacks have all run then). */
    while (r->orphans_outstanding > 0) {
        drain_completions(r);
        if (r->orphans_outstanding > 0) {
            if (may_abandon && app_now_ms() >= r->stop_by_ms) {
                log_warn("route %s: stopped with %d callbacks still due", r->name,
                         r->orphans_outstanding);
                return r;
            }
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    log_info("route %s: stopped", r->name);
    route_free_fields(r);
    return NULL;
}

void route_free_late(struct route *r)
{
    if (r == NULL) {
        return;
    }
    drain_completions(r);
    if (r->orphans_outstanding > 0) {
        log_warn("route %s: %d callbacks never came", r->name, r->orphans_outstanding);
        return; /* they may still come: r must stay valid (the process is ending) */
    }
    log_info("route %s: stopped", r->name);
    route_free_fields(r);
}

void route_stop(struct route *r, long deadline_ms)
{
    if (r == NULL) {
        return;
    }
    route_stop_begin(r, app_now_ms() + deadline_ms);
    (void)route_stop_end(r, false);
}

const char *route_name(const struct route *r)
{
    return r->name;
}

bool route_is_same(const struct route *r, const struct busconf_route *conf,
                   const struct busconf_topic *output_topic)
{
    const char *k = output_topic ? output_topic->key : NULL;
    bool is_same_key = (k == NULL && r->output_key == NULL) ||
                       (k && r->output_key && strcmp(k, r->output_key) == 0);
    const char *secret = conf->secret ? conf->secret : r->env->signing_secret;
    bool is_same_secret = strcmp(secret, r->secret) == 0;
    return conf->raw && json_equal(conf->raw, r->raw) && is_same_key && is_same_secret;
}

json_t *route_status(struct route *r)
{
    pthread_mutex_lock(&r->lock);
    json_t *st = json_deep_copy(r->status);
    pthread_mutex_unlock(&r->lock);
    return st;
}
