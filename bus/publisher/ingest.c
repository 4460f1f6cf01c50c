/* ingest.c - the publisher's request path (see ingest.h).
 *
 * A request becomes a struct pub_req holding the suspended exchange. Each event produced
 * holds one reference on it, and the handler holds one more while it is queueing; whoever
 * drops the last reference answers: 202 when every event was acknowledged, otherwise 503 with
 * Retry-After (the caller retries; events carry ids, so consumers drop repeats). Delivery
 * reports arrive on the producer's delivery thread. */
#include "ingest.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "app.h"
#include "buf.h"
#include "crypto.h"
#include "ids.h"
#include "jschema/jschema.h"
#include "log.h"
#include "metrics.h"

#define INGEST_ID_MAX 128
#define INGEST_KEY_MAX 512 /* key bytes + 1 */

enum reject_reason {
    REJ_UNAUTHORIZED,
    REJ_FORBIDDEN,
    REJ_UNKNOWN_TOPIC,
    REJ_TOO_LARGE,
    REJ_MALFORMED,
    REJ_SCHEMA,
    REJ_OVERLOADED,
    REJ_BROKER,
    REJ_SHUTTING_DOWN,
    REJ_COUNT
};

static const char *const reject_names[REJ_COUNT] = {"unauthorized", "forbidden", "unknown_topic",
                                                    "too_large",    "malformed", "schema",
                                                    "overloaded",   "broker",    "shutting_down"};

/* Metric series of one topic, created at start so hot paths only update atomics. */
struct topic_metrics {
    struct metric *accepted;
    struct metric *failed;
    struct metric *rejected[REJ_COUNT];
};

struct ingest {
    const struct busconf *conf;
    struct kafka_producer *producer;
    struct ingest_options opts;
    struct topic_metrics *tm;       /* one per conf->topics[i] */
    struct topic_metrics unknown;   /* requests naming an undeclared topic */
    struct metric *produce_seconds; /* delivery latency histogram */
    struct metric *inflight_gauge;
    atomic_uint inflight; /* shared: request threads add, the delivery thread subtracts */
    atomic_bool is_closing;
    unsigned generation; /* tells this ingest's token memos from an earlier one's */
};

struct pub_req {
    struct ingest *in;
    struct http_exchange *ex;
    const struct busconf_topic *topic;
    const struct busconf_producer *producer; /* whose token it was: the events' ce-source */
    struct topic_metrics *tm;
    double t0;
    bool is_batch;
    size_t n_events;
    char (*ids)[INGEST_ID_MAX + 1]; /* n_events ids; a single event's is id1 */
    char id1[INGEST_ID_MAX + 1];
    atomic_int refs;
    atomic_int status; /* first failure (kafka_status), 0 = none */
    int32_t partition; /* single event only */
    int64_t offset;
};

/* Per-thread memo of the last token that passed a topic's check, so that a keep-alive producer
 * sending the same token does not cost a SHA-256 per request (it was ~3% of the single-event
 * path). Compared in constant time; only accepted tokens are remembered. Thread-local: each HTTP
 * polling thread keeps its own, nothing is shared. */
#define INGEST_TOKEN_MEMO_MAX 256

struct token_memo {
    unsigned generation; /* ingest.generation it belongs to; 0 = empty */
    const struct busconf_topic *topic;
    const struct busconf_producer *producer;
    size_t len;
    char token[INGEST_TOKEN_MEMO_MAX];
};

static _Thread_local struct token_memo token_memo;
static atomic_uint ingest_generations;

static const struct busconf_producer *
token_producer(struct ingest *in, const struct busconf_topic *t, const char *token)
{
    struct token_memo *m = &token_memo;
    size_t len = strlen(token);
    if (m->generation == in->generation && m->topic == t &&
        crypto_equal(token, len, m->token, m->len)) {
        return m->producer;
    }
    const struct busconf_producer *prod = busconf_topic_producer(t, token);
    if (prod != NULL && len < sizeof m->token) {
        m->generation = in->generation;
        m->topic = t;
        m->producer = prod;
        m->len = len;
        memcpy(m->token, token, len);
    }
    return prod;
}

/* RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
 * *"=", at most INGEST_TOKEN_MAX bytes. */
#define INGEST_TOKEN_MAX 1024

static bool token_is_wellformed(const char *token)
{
    size_t len = strlen(token);
    size_t i = 0;
    if (len == 0 || len > INGEST_TOKEN_MAX) {
        return false;
    }
    for (; i < len && token[i] != '='; i++) {
        char c = token[i];
        bool is_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
        if (!is_ok) {
            return false;
        }
    }
    if (i == 0) {
        return false;
    }
    for (; i < len; i++) {
        if (token[i] != '=') {
            return false;
        }
    }
    return true;
}

/* Whether any producer of any topic holds this token (only on the refusal path: one SHA-256,
 * then every producer's hash compared in constant time, without an early exit). */
static bool token_is_known(const struct ingest *in, const char *token)
{
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex(token, strlen(token), hex);
    bool is_known = false;
    for (size_t i = 0; i < in->conf->n_topics; i++) {
        const struct busconf_topic *t = &in->conf->topics[i];
        for (size_t k = 0; k < t->n_producers; k++) {
            const char *h = t->producers[k].token_sha256;
            if (h != NULL && crypto_equal(hex, CRYPTO_SHA256_HEX_LEN, h, strlen(h))) {
                is_known = true;
            }
        }
    }
    return is_known;
}

static struct topic_metrics *metrics_of(struct ingest *in, const struct busconf_topic *t)
{
    if (t == NULL) {
        return &in->unknown;
    }
    return &in->tm[t - in->conf->topics];
}

static void topic_metrics_init(struct topic_metrics *m, const char *topic)
{
    char labels[300];
    snprintf(labels, sizeof labels, "topic=\"%s\",result=\"accepted\"", topic);
    m->accepted = metrics_counter("bus_publisher_events_total",
                                  "Events by topic and result (accepted = acknowledged).", labels);
    snprintf(labels, sizeof labels, "topic=\"%s\",result=\"failed\"", topic);
    m->failed = metrics_counter("bus_publisher_events_total",
                                "Events by topic and result (accepted = acknowledged).", labels);
    for (int r = 0; r < REJ_COUNT; r++) {
        snprintf(labels, sizeof labels, "topic=\"%s\",reason=\"%s\"", topic, reject_names[r]);
        m->rejected[r] = metrics_counter("bus_publisher_rejected_total",
                                         "Requests rejected, by topic and reason.", labels);
    }
}

static void on_render(void *ctx)
{
    struct ingest *in = ctx;
    metric_set(in->inflight_gauge, (double)atomic_load(&in->inflight));
}

struct ingest *ingest_new(const struct busconf *conf, struct kafka_producer *producer,
                          const struct ingest_options *opts)
{
    struct ingest *in = xcalloc(1, sizeof *in);
    in->conf = conf;
    in->producer = producer;
    in->opts = *opts;
    if (in->opts.batch_max_events == 0) {
        in->opts.batch_max_events = 1000;
    }
    if (in->opts.retry_after_s == 0) {
        in->opts.retry_after_s = 1;
    }
    in->tm = xcalloc(conf->n_topics ? conf->n_topics : 1, sizeof *in->tm);
    for (size_t i = 0; i < conf->n_topics; i++) {
        topic_metrics_init(&in->tm[i], conf->topics[i].name);
    }
    topic_metrics_init(&in->unknown, "_unknown");
    in->produce_seconds = metrics_histogram(
        "bus_publisher_produce_seconds",
        "Time from produce to the broker's acknowledgement, per event.", NULL, NULL, 0);
    in->inflight_gauge =
        metrics_gauge("bus_publisher_in_flight", "Events produced and not yet acknowledged.", NULL);
    atomic_init(&in->inflight, 0);
    atomic_init(&in->is_closing, false);
    in->generation = atomic_fetch_add(&ingest_generations, 1) + 1;
    metrics_on_render(on_render, in);
    return in;
}

void ingest_close(struct ingest *in)
{
    atomic_store(&in->is_closing, true);
}

unsigned ingest_inflight(const struct ingest *in)
{
    return atomic_load(&((struct ingest *)in)->inflight);
}

void ingest_free(struct ingest *in)
{
    if (in == NULL) {
        return;
    }
    free(in->tm);
    free(in);
}

static void reject(struct http_exchange *ex, struct topic_metrics *tm, enum reject_reason r,
                   unsigned status, const char *code, json_t *extra, const char *msg)
{
    metric_inc(tm->rejected[r]);
    http_respond_error(ex, status, code, extra, "%s", msg);
}

static void reject_retry(struct ingest *in, struct http_exchange *ex, struct topic_metrics *tm,
                         enum reject_reason r, const char *code, const char *msg)
{
    char ra[16];
    snprintf(ra, sizeof ra, "%u", in->opts.retry_after_s);
    http_add_header(ex, "Retry-After", ra);
    reject(ex, tm, r, 503, code, NULL, msg);
}

/* RFC 6901: resolves pointer in doc (borrowed result), or NULL. */
static json_t *json_pointer_get(json_t *doc, const char *pointer)
{
    json_t *cur = doc;
    const char *p = pointer;
    char token[256];
    while (cur != NULL && *p == '/') {
        p++;
        size_t n = 0;
        while (*p != '\0' && *p != '/') {
            char c = *p++;
            if (c == '~' && (*p == '0' || *p == '1')) {
                c = *p++ == '0' ? '~' : '/';
            }
            if (n + 1 >= sizeof token) {
                return NULL;
            }
            token[n++] = c;
        }
        token[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, token);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(token, &end, 10);
            cur = (n == 0 || *end != '\0') ? NULL : json_array_get(cur, i);
        } else {
            cur = NULL;
        }
    }
    return *p == '\0' ? cur : NULL;
}

/* The Kafka key of event: the string (or stringified number) at the topic's key pointer.
 * Returns 0 (key may be "" when the topic has no key pointer) or -1 when missing. */
static int event_key(const struct busconf_topic *t, json_t *event, char *key, size_t key_len)
{
    key[0] = '\0';
    if (t->key == NULL) {
        return 0;
    }
    json_t *v = json_pointer_get(event, t->key);
    int n;
    if (json_is_string(v)) {
        size_t len = json_string_length(v);
        if (len >= key_len) {
            return -1;
        }
        memcpy(key, json_string_value(v), len + 1);
        return 0;
    }
    if (json_is_integer(v)) {
        n = snprintf(key, key_len, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        n = snprintf(key, key_len, "%.17g", json_real_value(v));
    } else {
        return -1;
    }
    return (n < 0 || (size_t)n >= key_len) ? -1 : 0;
}

/* The error body's extra members and the message prefix of event index (-1 = a single event).
 * Built only on failure: on the per-event path they were ~10% of a batch's time. */
static json_t *event_extra(long index, char at[48])
{
    at[0] = '\0';
    if (index < 0) {
        return json_object();
    }
    snprintf(at, 48, "event %ld: ", index);
    return json_pack("{s:i}", "index", (json_int_t)index);
}

/* Validates one event: object, size, schema, key. On failure answers and returns -1. index
 * names the batch index (-1 for a single event). */
static int check_event(struct http_exchange *ex, struct pub_req *r, json_t *ev, long index,
                       size_t size, char *key, size_t key_len)
{
    const struct busconf_topic *t = r->topic;
    char msg[600];
    char at[48];
    json_t *extra;
    if (!json_is_object(ev)) {
        extra = event_extra(index, at);
        snprintf(msg, sizeof msg, "%san event must be a JSON object.", at);
        reject(ex, r->tm, REJ_MALFORMED, 400, "not_object", extra, msg);
        return -1;
    }
    if (size > t->max_event_bytes) {
        extra = event_extra(index, at);
        json_object_set_new(extra, "max_event_bytes", json_integer((json_int_t)t->max_event_bytes));
        snprintf(msg, sizeof msg, "%sthe event has %zu bytes; topic %s takes at most %zu.", at,
                 size, t->name, t->max_event_bytes);
        reject(ex, r->tm, REJ_TOO_LARGE, 413, "too_large", extra, msg);
        return -1;
    }
    struct jschema_error verr;
    if (t->schema != NULL && jschema_validate(t->schema, ev, &verr) != 0) {
        extra = event_extra(index, at);
        json_object_set_new(extra, "pointer", json_string(verr.pointer));
        snprintf(msg, sizeof msg, "%s%s: %s", at, verr.pointer[0] ? verr.pointer : "/",
                 verr.message);
        reject(ex, r->tm, REJ_SCHEMA, 422, "schema_violation", extra, msg);
        return -1;
    }
    if (event_key(t, ev, key, key_len) != 0) {
        extra = event_extra(index, at);
        json_object_set_new(extra, "pointer", json_string(t->key));
        snprintf(msg, sizeof msg, "%s%s: the key must be a string or a number (at most %zu bytes).",
                 at, t->key, key_len - 1);
        reject(ex, r->tm, REJ_SCHEMA, 422, "schema_violation", extra, msg);
        return -1;
    }
    return 0;
}

static void req_free(struct pub_req *r)
{
    if (r->ids != &r->id1) {
        free(r->ids);
    }
    free(r);
}

/* An event id into a JSON string: ids never need escaping (id_uuid7, or a ce-id that passed
 * id_is_valid: printable ASCII without quotes or backslashes), so no per-byte escaping. */
static int append_id(struct buf *b, const char *id)
{
    int rc = buf_append(b, "\"", 1);
    rc |= buf_append(b, id, strlen(id));
    return rc | buf_append(b, "\"", 1);
}

/* Drops one reference; the last one answers the request and frees it. */
static void req_release(struct pub_req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1) {
        return;
    }
    struct ingest *in = r->in;
    int st = atomic_load(&r->status);
    if (st == KAFKA_OK) {
        if (r->is_batch) {
            /* Formatted directly too: building and dumping 1 + n jansson values was ~4% of the
             * batch path. */
            struct buf b;
            buf_init(&b, 64 + r->n_events * (INGEST_ID_MAX + 4) + 6 * strlen(r->topic->name));
            int rc = buf_appends(&b, "{\"topic\":");
            rc |= buf_append_json_string(&b, r->topic->name);
            rc |= buf_appendf(&b, ",\"accepted\":%zu,\"ids\":[", r->n_events);
            for (size_t i = 0; i < r->n_events; i++) {
                if (i > 0) {
                    rc |= buf_appends(&b, ",");
                }
                rc |= append_id(&b, r->ids[i]);
            }
            rc |= buf_appends(&b, "]}");
            if (rc == 0) {
                http_respond(r->ex, 202, NULL, b.data, b.len);
            } else {
                http_respond_error(r->ex, 500, "internal", NULL, "The answer did not fit.");
            }
            buf_release(&b);
        } else {
            /* The hot path: formatted directly rather than built and dumped by jansson. */
            struct buf b;
            buf_init(&b, 1024);
            /* One allocation (growing from buf's 64 bytes took three). */
            (void)buf_reserve(&b, 80 + strlen(r->ids[0]) + 2 * strlen(r->topic->name));
            int rc = buf_appends(&b, "{\"id\":");
            rc |= append_id(&b, r->ids[0]);
            rc |= buf_appends(&b, ",\"topic\":");
            rc |= buf_append_json_string(&b, r->topic->name);
            rc |= buf_appends(&b, ",\"partition\":");
            rc |= buf_append_int(&b, r->partition);
            rc |= buf_appends(&b, ",\"offset\":");
            rc |= buf_append_int(&b, r->offset);
            rc |= buf_appends(&b, "}");
            if (rc == 0) {
                http_respond(r->ex, 202, NULL, b.data, b.len);
            } else {
                http_respond_error(r->ex, 500, "internal", NULL, "The answer did not fit.");
            }
            buf_release(&b);
        }
    } else if (st == KAFKA_TOO_LARGE) {
        reject(r->ex, r->tm, REJ_TOO_LARGE, 413, "too_large", NULL,
               "The broker refused the event as too large.");
    } else if (st == KAFKA_QUEUE_FULL) {
        reject_retry(in, r->ex, r->tm, REJ_OVERLOADED, "overloaded",
                     "The publisher's queue is full; retry later.");
    } else {
        reject_retry(in, r->ex, r->tm, REJ_BROKER, "broker_unavailable",
                     r->is_batch ? "Not every event of the batch was acknowledged by the broker; "
                                   "retry the batch."
                                 : "The broker did not acknowledge the event; retry later.");
    }
    req_free(r);
}

static void fail_status(struct pub_req *r, int status)
{
    int none = KAFKA_OK;
    atomic_compare_exchange_strong(&r->status, &none, status);
}

/* Delivery report, on the producer's delivery thread. */
static void on_delivered(void *opaque, int status, const char *errstr, int32_t partition,
                         int64_t offset)
{
    struct pub_req *r = opaque;
    struct ingest *in = r->in;
    metric_observe(in->produce_seconds, app_now_s() - r->t0);
    atomic_fetch_sub(&in->inflight, 1);
    if (status == KAFKA_OK) {
        metric_inc(r->tm->accepted);
        r->partition = partition;
        r->offset = offset;
    } else {
        metric_inc(r->tm->failed);
        log_warn("topic %s: delivery failed: %s", r->topic->name, errstr ? errstr : "?");
        fail_status(r, status);
    }
    req_release(r);
}

/* Common front of both handlers: closing, token, topic. Returns the request or NULL (answered). */
static struct pub_req *req_begin(struct ingest *in, struct http_exchange *ex, bool is_batch)
{
    const char *name = http_param(ex, 0);
    const struct busconf_topic *t = busconf_topic_find(in->conf, name);
    struct topic_metrics *tm = metrics_of(in, t);
    if (atomic_load(&in->is_closing)) {
        reject_retry(in, ex, tm, REJ_SHUTTING_DOWN, "shutting_down",
                     "The publisher is shutting down; retry on another instance or later.");
        return NULL;
    }
    const char *token = http_bearer(ex);
    if (token == NULL) {
        http_add_header(ex, "WWW-Authenticate", "Bearer");
        reject(ex, tm, REJ_UNAUTHORIZED, 401, "unauthorized", NULL,
               "An Authorization: Bearer <token> header is required.");
        return NULL;
    }
    const struct busconf_producer *prod = t != NULL ? token_producer(in, t, token) : NULL;
    /* RFC 6750 section 3.1: a token that is malformed or that no producer holds is 401
     * (invalid_token), before anything about the topic is told; a known token without the
     * right for this topic is 403. */
    if (prod == NULL && (!token_is_wellformed(token) || !token_is_known(in, token))) {
        http_add_header(ex, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        reject(ex, tm, REJ_UNAUTHORIZED, 401, "unauthorized", NULL,
               "The bearer token is malformed or unknown.");
        return NULL;
    }
    if (t == NULL) {
        char msg[300];
        snprintf(msg, sizeof msg, "Topic %.200s is not declared in the bus configuration.",
                 name ? name : "");
        reject(ex, tm, REJ_UNKNOWN_TOPIC, 404, "unknown_topic", NULL, msg);
        return NULL;
    }
    if (prod == NULL) {
        char msg[300];
        snprintf(msg, sizeof msg, "This token may not publish to topic %s.", t->name);
        http_add_header(ex, "WWW-Authenticate", "Bearer error=\"insufficient_scope\"");
        reject(ex, tm, REJ_FORBIDDEN, 403, "forbidden", NULL, msg);
        return NULL;
    }
    struct pub_req *r = xcalloc(1, sizeof *r);
    r->in = in;
    r->ex = ex;
    r->topic = t;
    r->producer = prod;
    r->tm = tm;
    r->is_batch = is_batch;
    atomic_init(&r->refs, 1);
    atomic_init(&r->status, KAFKA_OK);
    return r;
}

/* Reserves n in-flight slots; false (nothing reserved) when that would pass the bound. */
static bool reserve_inflight(struct ingest *in, unsigned n)
{
    unsigned cur = atomic_load(&in->inflight);
    do {
        if (cur + n > in->opts.max_inflight) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(&in->inflight, &cur, cur + n));
    return true;
}

/* Produces event i of r. Returns a kafka_status; on failure the slot is given back. */
static int produce_one(struct pub_req *r, size_t i, const char *key, size_t key_len,
                       const void *value, size_t value_len, const char *source,
                       const char *traceparent, const char *time)
{
    struct kafka_header h[5] = {
        {"ce-id", r->ids[i], strlen(r->ids[i])},
        {"ce-type", r->topic->name, strlen(r->topic->name)},
        {"ce-source", source, strlen(source)},
        {"ce-time", time, strlen(time)},
        {"traceparent", traceparent, strlen(traceparent)},
    };
    atomic_fetch_add(&r->refs, 1);
    /* The value (the request's body, or a slice of it) is not copied: the exchange keeps the
     * body until it is answered, and it is answered only once every event's delivery report has
     * run (the last reference), so the body outlives the record in librdkafka. */
    int st = kafka_producer_send_borrowed(r->in->producer, r->topic->name, -1, key_len ? key : NULL,
                                          key_len, value, value_len, h, 5, on_delivered, r);
    if (st != KAFKA_OK) {
        atomic_fetch_sub(&r->refs, 1);
        atomic_fetch_sub(&r->in->inflight, 1);
    }
    return st;
}

/* Trace context for the request: the caller's trace (a new span of it) or a new trace. */
static void request_trace(struct http_exchange *ex, char out[TRACEPARENT_LEN + 1],
                          char trace_id[33])
{
    struct trace parent, child;
    const char *tp = http_header(ex, "traceparent");
    if (tp != NULL && trace_parse(tp, &parent) == 0) {
        trace_child(&parent, &child);
    } else {
        trace_new(&child); /* a new trace's span is already ours */
    }
    trace_format(&child, out);
    memcpy(trace_id, child.trace_id, 33);
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The fast path's view of the topic's key pointer: the top-level member it names, when it is
 * a plain "/name" (no escapes, no nesting); otherwise NULL and the jansson path extracts it. */
static const char *key_member(const struct busconf_topic *t, size_t *len)
{
    if (t->key == NULL || t->key[0] != '/' || strpbrk(t->key + 1, "/~") != NULL) {
        return NULL;
    }
    *len = strlen(t->key + 1);
    return t->key + 1;
}

/* The fast path for one event's text (a value starting at text, at most avail bytes): a JSON
 * object that jschema_check_text() finds valid, within the topic's size, with a string or
 * integer key. Sets *used to the event's length and key/key_len (the key points into text, or
 * into num for an integer key). Returns 0, or -1 when the jansson path must decide (it gives
 * the exact answer and error). */
static int fast_event(const struct busconf_topic *t, const char *text, size_t avail, size_t *used,
                      const char **key, size_t *key_len, char num[24])
{
    struct jschema_capture cap = {0};
    *key = NULL;
    *key_len = 0;
    if (avail == 0 || text[0] != '{') {
        return -1;
    }
    if (t->key != NULL && (cap.name = key_member(t, &cap.name_len)) == NULL) {
        return -1;
    }
    if (jschema_check_text(t->schema, text, avail, used, t->key ? &cap : NULL) != 0 ||
        *used > t->max_event_bytes) {
        return -1;
    }
    if (t->key == NULL) {
        return 0;
    }
    if (cap.kind == JSCHEMA_CAP_STRING && cap.len < INGEST_KEY_MAX) {
        *key = cap.str;
        *key_len = cap.len;
        return 0;
    }
    if (cap.kind == JSCHEMA_CAP_INTEGER) {
        int w = snprintf(num, 24, "%lld", cap.integer);
        *key = num;
        *key_len = (size_t)w;
        return 0;
    }
    return -1;
}

static size_t skip_json_space(const char *s, size_t i, size_t len);
static void handle_event(struct http_exchange *ex, void *ctx)
{
    struct ingest *in = ctx;
    struct pub_req *r = req_begin(in, ex, false);
    if (r == NULL) {
        return;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    json_t *ev = NULL;
    char key[INGEST_KEY_MAX];
    r->n_events = 1;
    r->ids = &r->id1;

    if (len > r->topic->max_event_bytes) {
        char msg[300];
        snprintf(msg, sizeof msg, "The event has %zu bytes; topic %s takes at most %zu.", len,
                 r->topic->name, r->topic->max_event_bytes);
        reject(ex, r->tm, REJ_TOO_LARGE, 413, "too_large",
               json_pack("{s:I}", "max_event_bytes", (json_int_t)r->topic->max_event_bytes), msg);
        goto done;
    }
    /* The fast path checks the text in place; when it is not sure, jansson decides. */
    const char *key_ptr = NULL;
    size_t key_len = 0;
    char num[24];
    size_t at = body ? skip_json_space(body, 0, len) : 0;
    size_t end = len;
    while (body && end > at && is_json_space(body[end - 1])) {
        end--;
    }
    size_t used = 0;
    if (body == NULL ||
        fast_event(r->topic, body + at, end - at, &used, &key_ptr, &key_len, num) != 0 ||
        used != end - at) {
        json_error_t jerr;
        ev = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (ev == NULL) {
            char msg[300];
            snprintf(msg, sizeof msg, "Malformed JSON at line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
            reject(ex, r->tm, REJ_MALFORMED, 400, "malformed_json", NULL, msg);
            goto done;
        }
        if (check_event(ex, r, ev, -1, len, key, sizeof key) != 0) {
            goto done;
        }
        key_ptr = key;
        key_len = strlen(key);
    }
    const char *ce_id = http_header(ex, "ce-id");
    if (ce_id != NULL && !id_is_valid(ce_id)) {
        reject(ex, r->tm, REJ_MALFORMED, 400, "bad_event_id", NULL,
               "ce-id must be 1 to 128 printable ASCII characters without spaces or quotes.");
        goto done;
    }
    if (ce_id != NULL) {
        snprintf(r->ids[0], sizeof r->ids[0], "%s", ce_id);
    } else {
        id_uuid7(r->ids[0]);
    }
    if (!reserve_inflight(in, 1)) {
        reject_retry(in, ex, r->tm, REJ_OVERLOADED, "overloaded",
                     "Too many events in flight; retry later.");
        goto done;
    }
    char tp[TRACEPARENT_LEN + 1], trace_id[33], now[32];
    request_trace(ex, tp, trace_id);
    app_time_rfc3339(now);
    r->t0 = app_now_s();
    int st = produce_one(r, 0, key_ptr, key_len, body, len, r->producer->name, tp, now);
    json_decref(ev);
    if (st != KAFKA_OK) {
        fail_status(r, st);
    } else {
        log_ev(LOG_LEVEL_DEBUG, trace_id, r->ids[0], "produced to %s", r->topic->name);
    }
    req_release(r); /* answers now on failure, or from the delivery report */
    return;
done:
    json_decref(ev);
    req_free(r);
}

static size_t skip_json_space(const char *s, size_t i, size_t len)
{
    while (i < len && is_json_space(s[i])) {
        i++;
    }
    return i;
}

/* One event of a batch: its text (a slice of the body, produced as is) and its key. */
struct batch_event {
    const char *value;
    size_t value_len;
    const char *key; /* NULL with key_len > 0: the key is num */
    size_t key_len;
    char num[24];
};

static const char *batch_key(const struct batch_event *e)
{
    return e->key != NULL ? e->key : e->num;
}

/* The fast path for a batch: one pass over the body, every event checked in place by
 * fast_event(). Returns the number of events (evs allocated), or 0 when the jansson path must
 * decide: anything unusual, any invalid event, an empty or oversized batch. */
static size_t fast_batch(struct ingest *in, const struct busconf_topic *t, const char *body,
                         size_t len, struct batch_event *stack, size_t stack_n,
                         struct batch_event **evs_out)
{
    size_t i = skip_json_space(body, 0, len);
    if (i >= len || body[i] != '[') {
        return 0;
    }
    size_t cap = stack_n, n = 0;
    struct batch_event *evs = stack;
    i = skip_json_space(body, i + 1, len);
    for (;;) {
        if (n == in->opts.batch_max_events || i >= len || body[i] != '{') {
            goto unsure;
        }
        if (n == cap) {
            cap *= 2;
            if (evs == stack) {
                evs = xmalloc(cap * sizeof *evs);
                memcpy(evs, stack, n * sizeof *evs);
            } else {
                evs = xrealloc(evs, cap * sizeof *evs);
            }
        }
        struct batch_event *e = &evs[n++];
        size_t used;
        e->value = body + i;
        if (fast_event(t, e->value, len - i, &used, &e->key, &e->key_len, e->num) != 0) {
            goto unsure;
        }
        e->value_len = used;
        if (e->key == e->num) {
            e->key = NULL; /* evs may move */
        }
        i = skip_json_space(body, i + used, len);
        if (i < len && body[i] == ',') {
            i = skip_json_space(body, i + 1, len);
            continue;
        }
        if (i < len && body[i] == ']' && skip_json_space(body, i + 1, len) == len) {
            break;
        }
        goto unsure;
    }
    *evs_out = evs;
    return n;
unsure:
    if (evs != stack) {
        free(evs);
    }
    return 0;
}

/* The byte length of the JSON value starting at s[0] in a batch: up to the first ',' or the
 * closing ']' outside any string, object or array (the array's own ']' when depth 0), with
 * trailing spaces dropped. Returns (size_t)-1 when the text ends first. Valid JSON is cut
 * exactly; anything else is cut somewhere and jansson then refuses the slice. */
static size_t element_extent(const char *s, size_t len)
{
    int depth = 0;
    bool in_string = false;
    size_t i = 0;
    for (; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) {
                break;
            }
            depth--;
        } else if (c == ',' && depth == 0) {
            break;
        }
    }
    if (i >= len) {
        return (size_t)-1;
    }
    while (i > 0 && is_json_space(s[i - 1])) {
        i--;
    }
    return i;
}

/* The jansson path for a batch: checks and answers every error exactly, one event at a time,
 * so that what it costs is bounded by one event and the batch limits, not by the body: the
 * element past batch_max_events is refused before it is parsed, and an element over the
 * topic's max_event_bytes is refused by its size alone (an 8 MiB hostile batch used to be
 * parsed whole first: ~200 MB of jansson nodes). Returns the number of events (evs and *keys
 * allocated) or 0 when it answered. */
static size_t slow_batch(struct ingest *in, struct http_exchange *ex, struct pub_req *r,
                         const char *body, size_t len, const char *ce_id,
                         struct batch_event **evs_out, char (**keys_out)[INGEST_KEY_MAX])
{
    struct batch_event *evs = NULL;
    char(*keys)[INGEST_KEY_MAX] = NULL;
    size_t n = 0, cap = 0;
    char msg[400];
    if (ce_id != NULL && (!id_is_valid(ce_id) || strlen(ce_id) > INGEST_ID_MAX - 8)) {
        reject(ex, r->tm, REJ_MALFORMED, 400, "bad_event_id", NULL,
               "ce-id must be 1 to 120 printable ASCII characters without spaces or quotes.");
        return 0;
    }
    size_t i = skip_json_space(body, 0, len);
    if (i >= len || body[i] != '[') {
        json_error_t jerr;
        json_t *whole = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
        if (whole == NULL) {
            snprintf(msg, sizeof msg, "Malformed JSON at line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
            reject(ex, r->tm, REJ_MALFORMED, 400, "malformed_json", NULL, msg);
        } else {
            reject(ex, r->tm, REJ_MALFORMED, 400, "not_array", NULL,
                   "A batch must be a non-empty JSON array of event objects.");
        }
        json_decref(whole);
        return 0;
    }
    i = skip_json_space(body, i + 1, len);
    if (i < len && body[i] == ']') {
        reject(ex, r->tm, REJ_MALFORMED, 400, "not_array", NULL,
               "A batch must be a non-empty JSON array of event objects.");
        return 0;
    }
    for (;;) {
        if (n == in->opts.batch_max_events) {
            snprintf(msg, sizeof msg, "A batch takes at most %u events; this one has more.",
                     in->opts.batch_max_events);
            reject(ex, r->tm, REJ_TOO_LARGE, 413, "too_many_events",
                   json_pack("{s:i}", "max_events", (json_int_t)in->opts.batch_max_events), msg);
            goto fail;
        }
        size_t elen = i < len ? element_extent(body + i, len - i) : (size_t)-1;
        if (elen == (size_t)-1 || elen == 0) {
            snprintf(msg, sizeof msg,
                     "Malformed JSON: event %zu (byte %zu) is cut short or "
                     "missing.",
                     n, i);
            reject(ex, r->tm, REJ_MALFORMED, 400, "malformed_json",
                   json_pack("{s:i}", "index", (json_int_t)n), msg);
            goto fail;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            evs = xrealloc(evs, cap * sizeof *evs);
            keys = xrealloc(keys, cap * sizeof *keys);
        }
        struct batch_event *e = &evs[n];
        e->value = body + i;
        e->value_len = elen;
        if (elen > r->topic->max_event_bytes) {
            /* Refused by its size before it is parsed; check_event words the answer. */
            json_t *placeholder = json_object();
            (void)check_event(ex, r, placeholder, (long)n, elen, keys[n], sizeof keys[n]);
            json_decref(placeholder);
            goto fail;
        }
        json_error_t jerr;
        json_t *ev = json_loadb(e->value, elen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (ev == NULL) {
            snprintf(msg, sizeof msg, "Malformed JSON in event %zu (byte %zu of the body): %s", n,
                     i + (size_t)(jerr.position > 0 ? jerr.position : 0), jerr.text);
            reject(ex, r->tm, REJ_MALFORMED, 400, "malformed_json",
                   json_pack("{s:i}", "index", (json_int_t)n), msg);
            goto fail;
        }
        int rc = check_event(ex, r, ev, (long)n, elen, keys[n], sizeof keys[n]);
        json_decref(ev);
        if (rc != 0) {
            goto fail;
        }
        e->key_len = strlen(keys[n]);
        n++;
        i = skip_json_space(body, i + elen, len);
        if (i < len && body[i] == ',') {
            i = skip_json_space(body, i + 1, len);
            continue;
        }
        if (i < len && body[i] == ']' && skip_json_space(body, i + 1, len) == len) {
            break;
        }
        snprintf(msg, sizeof msg,
                 "Malformed JSON after event %zu (byte %zu): expected ',' or "
                 "the closing ']' and nothing after it.",
                 n - 1, i);
        reject(ex, r->tm, REJ_MALFORMED, 400, "malformed_json", NULL, msg);
        goto fail;
    }
    for (size_t k = 0; k < n; k++) {
        evs[k].key = keys[k]; /* keys has stopped moving */
    }
    *evs_out = evs;
    *keys_out = keys;
    return n;
fail:
    free(evs);
    free(keys);
    return 0;
}

static void handle_batch(struct http_exchange *ex, void *ctx)
{
    struct ingest *in = ctx;
    struct pub_req *r = req_begin(in, ex, true);
    if (r == NULL) {
        return;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    const char *ce_id = http_header(ex, "ce-id");
    struct batch_event stack[128]; /* the fast path's events, while they fit */
    struct batch_event *evs = NULL;
    char(*keys)[INGEST_KEY_MAX] = NULL; /* the jansson path's keys */
    size_t n = body != NULL ? fast_batch(in, r->topic, body, len, stack, 128, &evs) : 0;
    if (n > 0) {
        if (ce_id != NULL && (!id_is_valid(ce_id) || strlen(ce_id) > INGEST_ID_MAX - 8)) {
            reject(ex, r->tm, REJ_MALFORMED, 400, "bad_event_id", NULL,
                   "ce-id must be 1 to 120 printable ASCII characters without spaces or "
                   "quotes.");
            goto done;
        }
    } else {
        n = slow_batch(in, ex, r, body, len, ce_id, &evs, &keys);
        if (n == 0) {
            goto done;
        }
    }
    r->ids = xmalloc(n * sizeof *r->ids);
    r->n_events = n;
    /* A ce-id on the batch makes the ids deterministic ("<ce-id>-<index>"), so a retried
     * batch carries the same ids and consumers can drop the repeats. */
    for (size_t i = 0; i < n; i++) {
        if (ce_id != NULL) {
            snprintf(r->ids[i], sizeof r->ids[i], "%s-%zu", ce_id, i);
        } else {
            id_uuid7(r->ids[i]);
        }
    }
    if (!reserve_inflight(in, (unsigned)n)) {
        reject_retry(in, ex, r->tm, REJ_OVERLOADED, "overloaded",
                     "Too many events in flight; retry later.");
        goto done;
    }
    char tp[TRACEPARENT_LEN + 1], trace_id[33], now[32];
    request_trace(ex, tp, trace_id);
    app_time_rfc3339(now);
    r->t0 = app_now_s();
    const char *source = r->producer->name;
    for (size_t i = 0; i < n; i++) {
        const struct batch_event *e = &evs[i];
        int st =
            produce_one(r, i, batch_key(e), e->key_len, e->value, e->value_len, source, tp, now);
        if (st != KAFKA_OK) {
            /* The events already queued will be delivered; the batch as a whole fails and is
             * retried by the caller. Give back the slots of the events never queued. */
            atomic_fetch_sub(&in->inflight, (unsigned)(n - i - 1));
            fail_status(r, st);
            break;
        }
    }
    if (evs != stack) {
        free(evs);
    }
    free(keys);
    req_release(r);
    return;
done:
    if (evs != stack) {
        free(evs);
    }
    free(keys);
    req_free(r);
}

void ingest_routes(struct ingest *in, struct http_server *s, size_t batch_max_bytes)
{
    size_t max_event = 1024;
    for (size_t i = 0; i < in->conf->n_topics; i++) {
        if (in->conf->topics[i].max_event_bytes > max_event) {
            max_event = in->conf->topics[i].max_event_bytes;
        }
    }
    http_server_route(s, "POST", "/v1/topics/{}/events", handle_event, in, max_event);
    http_server_route(s, "POST", "/v1/topics/{}/batch", handle_batch, in, batch_max_bytes);
}
