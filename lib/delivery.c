/* delivery.c - signature (Standard Webhooks), replay, body and event id checks of a bus delivery
 * (see delivery.h). */
#include "delivery.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "alloc.h"
#include "crypto.h"

/* ---- the replay cache ----------------------------------------------------------------------
 *
 * Every (webhook-id, webhook-timestamp) whose signature verified is remembered until its
 * timestamp leaves the tolerance window; a second delivery of the same pair is a replay. The
 * dispatcher never signs two attempts of one event with the same timestamp, so a legitimate
 * retry is never one (and a duplicate is answered with a retryable 429, so even a sender that
 * did would only be delayed). Open addressing on a 64-bit hash of the pair (only signed pairs
 * get in, so nobody can choose colliding keys; a collision costs one retried delivery).
 * Expired slots are reused in place and dropped when the table is rebuilt on growth; the table
 * never exceeds DELIVERY_REPLAY_MAX live entries (then deliveries get 503 until some expire).
 * One per process (a process has one signing key list), guarded by one mutex. */
struct replay_slot {
    uint64_t hash; /* 0 = empty */
    long long expires_s;
};

static struct {
    pthread_mutex_t lock;
    struct replay_slot *slots;
    size_t cap;  /* a power of two, or 0 */
    size_t used; /* slots holding a hash (live or expired) */
} replay = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

#define REPLAY_MIN_SLOTS 4096u

static uint64_t replay_hash(const char *id, long long ts)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    h = (h ^ '.') * 1099511628211ull;
    for (int i = 0; i < 8; i++) {
        h = (h ^ (uint64_t)((unsigned long long)ts >> (8 * i) & 0xff)) * 1099511628211ull;
    }
    return h ? h : 1;
}

/* Puts h into slots (cap a power of two); returns its slot. Caller holds the lock. */
static struct replay_slot *replay_probe(struct replay_slot *slots, size_t cap, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (slots[i].hash != 0 && slots[i].hash != h) {
        i = (i + 1) & (cap - 1);
    }
    return &slots[i];
}

/* Rebuilds the table with only the live entries, at a load of at most a quarter. Returns -1
 * when the live entries alone exceed DELIVERY_REPLAY_MAX. Caller holds the lock. */
static int replay_rebuild(long long now_s)
{
    size_t live = 0;
    for (size_t i = 0; i < replay.cap; i++) {
        live += replay.slots[i].hash != 0 && replay.slots[i].expires_s > now_s;
    }
    if (live >= DELIVERY_REPLAY_MAX) {
        return -1;
    }
    size_t cap = REPLAY_MIN_SLOTS;
    while (cap < (live + 1) * 4) {
        cap *= 2;
    }
    struct replay_slot *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < replay.cap; i++) {
        const struct replay_slot *old = &replay.slots[i];
        if (old->hash != 0 && old->expires_s > now_s) {
            *replay_probe(slots, cap, old->hash) = *old;
        }
    }
    free(replay.slots);
    replay.slots = slots;
    replay.cap = cap;
    replay.used = live;
    return 0;
}

/* Remembers (id, ts) until expires_s. Returns 0 when it is new, 1 when it is a replay, -1 when
 * the cache is full. */
static int replay_check(const char *id, long long ts, long long now_s, long long expires_s)
{
    uint64_t h = replay_hash(id, ts);
    int rc = 0;
    pthread_mutex_lock(&replay.lock);
    if ((replay.used + 1) * 2 > replay.cap && replay_rebuild(now_s) != 0) {
        rc = -1;
        goto out;
    }
    struct replay_slot *slot = replay_probe(replay.slots, replay.cap, h);
    if (slot->hash == h && slot->expires_s > now_s) {
        rc = 1;
        goto out;
    }
    if (slot->hash == 0) {
        replay.used++;
    }
    slot->hash = h;
    slot->expires_s = expires_s;
out:
    pthread_mutex_unlock(&replay.lock);
    return rc;
}

void delivery_replay_reset(void)
{
    pthread_mutex_lock(&replay.lock);
    free(replay.slots);
    replay.slots = NULL;
    replay.cap = 0;
    replay.used = 0;
    pthread_mutex_unlock(&replay.lock);
}

/* webhook-timestamp: Unix seconds, digits only. */
static int parse_timestamp(const char *text, long long *out)
{
    if (!text || !*text || strlen(text) > 12) {
        return -1;
    }
    long long v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

/* The exchange this thread last verified with delivery_verify, for a caller that checks the
 * signature first and then accepts with rules without a key (gamesim answers a simulated
 * outage in between). Consumed by the next delivery_accept on this thread: handlers run on one
 * thread from start to answer. */
static _Thread_local const struct http_exchange *verified_ex;

int delivery_verify(struct http_exchange *ex, const char *secret)
{
    verified_ex = NULL;
    const char *id = http_header(ex, "webhook-id");
    const char *sig = http_header(ex, "webhook-signature");
    long long ts = 0;
    if (!secret || !*secret) {
        /* Fail closed: app_init gives every receiver a key (the development one at worst). */
        http_respond_error(ex, 401, "bad_signature", NULL, "no signing key is configured");
        return 401;
    }
    if (!id || !*id || strlen(id) > DELIVERY_ID_MAX || !sig ||
        parse_timestamp(http_header(ex, "webhook-timestamp"), &ts) != 0) {
        http_respond_error(ex, 401, "bad_signature", NULL,
                           "webhook-id, webhook-timestamp and webhook-signature are required");
        return 401;
    }
    long long now = (long long)time(NULL);
    if (ts < now - DELIVERY_TOLERANCE_S || ts > now + DELIVERY_TOLERANCE_S) {
        http_respond_error(ex, 401, "stale_signature", NULL,
                           "webhook-timestamp is more than %d s away from now",
                           DELIVERY_TOLERANCE_S);
        return 401;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    if (!crypto_webhook_verify(secret, id, ts, body, len, sig)) {
        http_respond_error(ex, 401, "bad_signature", NULL, "webhook-signature is wrong");
        return 401;
    }
    int seen = replay_check(id, ts, now, ts + DELIVERY_TOLERANCE_S + 1);
    if (seen != 0) {
        http_add_header(ex, "Retry-After", "1");
        if (seen > 0) {
            http_respond_error(ex, 429, "replayed", NULL,
                               "this webhook-id and webhook-timestamp were already delivered");
            return 429;
        }
        http_respond_error(ex, 503, "busy", NULL, "too many deliveries to remember; retry");
        return 503;
    }
    verified_ex = ex;
    return 0;
}

static int refuse(struct http_exchange *ex, const struct delivery_refusal *r)
{
    unsigned status = r->status ? r->status : 422;
    http_respond_error(ex, status, r->code ? r->code : "invalid_event", NULL, "%s",
                       r->message ? r->message : "the body is not a JSON object");
    return (int)status;
}

static bool is_retryable(int status)
{
    return status == 0 || status == 408 || status == 429 || status >= 500;
}

static bool usable_id(const struct delivery_rules *rules, const char *id)
{
    return !rules->needs_event_id ||
           (id && *id && (!rules->event_id_max || strlen(id) <= rules->event_id_max));
}

/* Checks the signature, then parses the body (*doc: NULL when it is not JSON). Returns 0, or
 * the status of the refusal already answered. */
static int verified_body(struct http_exchange *ex, const char *secret, json_t **doc)
{
    *doc = NULL;
    bool is_verified = verified_ex == ex && (!secret || !*secret);
    verified_ex = NULL;
    int rc = is_verified ? 0 : delivery_verify(ex, secret);
    if (rc != 0) {
        return rc;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    json_error_t jerr;
    *doc = json_loadb(body, len, 0, &jerr);
    return 0;
}

int delivery_accept(struct http_exchange *ex, const struct delivery_rules *rules, json_t **event,
                    const char **event_id)
{
    *event = NULL;
    if (event_id) {
        *event_id = NULL;
    }
    json_t *ev;
    int rc = verified_body(ex, rules->secret, &ev);
    if (rc != 0) {
        return rc;
    }
    if (!json_is_object(ev)) {
        json_decref(ev);
        return refuse(ex, &rules->refusal);
    }
    /* The event id is the signed webhook-id; a ce-id beside it must be the same, or a recorded
     * delivery could be replayed as another event. */
    const char *id = http_header(ex, "webhook-id");
    const char *ce_id = http_header(ex, "ce-id");
    if (ce_id && strcmp(ce_id, id) != 0) {
        json_decref(ev);
        http_respond_error(ex, 401, "bad_signature", NULL, "ce-id is not the signed webhook-id");
        return 401;
    }
    if (!usable_id(rules, id)) {
        json_decref(ev);
        return refuse(ex, &rules->refusal);
    }
    *event = ev;
    if (event_id) {
        *event_id = id;
    }
    return 0;
}

/* ---- single and batched deliveries through one path ---------------------------------------- */

bool delivery_is_batch(struct http_exchange *ex)
{
    const char *ct = http_header(ex, "Content-Type");
    size_t n = strlen(DELIVERY_BATCH_TYPE);
    return ct && strncasecmp(ct, DELIVERY_BATCH_TYPE, n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

int delivery_accept_any(struct http_exchange *ex, const struct delivery_rules *rules,
                        struct delivery_batch *b)
{
    memset(b, 0, sizeof *b);
    if (!delivery_is_batch(ex)) {
        json_t *ev = NULL;
        const char *id = NULL;
        int rc = delivery_accept(ex, rules, &ev, &id);
        if (rc != 0) {
            return rc;
        }
        b->doc = ev;
        b->n = 1;
        b->items = xcalloc(1, sizeof *b->items);
        b->items[0].event = ev;
        b->items[0].id = id;
        b->items[0].traceparent = http_header(ex, "traceparent");
        return 0;
    }
    json_t *doc;
    int rc = verified_body(ex, rules->secret, &doc);
    if (rc != 0) {
        return rc;
    }
    size_t n = json_array_size(doc);
    const char *why = !json_is_array(doc)      ? "the batch is not a JSON array"
                      : n == 0                 ? "the batch is empty"
                      : n > DELIVERY_BATCH_MAX ? "the batch has too many events"
                                               : NULL;
    for (size_t i = 0; i < n && !why; i++) {
        json_t *el = json_array_get(doc, i);
        if (!json_is_object(json_object_get(el, "data"))) {
            why = "a batch element has no JSON object in \"data\"";
        } else if (!usable_id(rules, json_string_value(json_object_get(el, "id")))) {
            why = "a batch element has no usable \"id\"";
        }
    }
    if (why) {
        json_decref(doc);
        http_respond_error(ex, 422, "batch_refused", NULL, "%s", why);
        return 422;
    }
    b->is_batch = true;
    b->doc = doc;
    b->n = n;
    b->items = xcalloc(n, sizeof *b->items);
    for (size_t i = 0; i < n; i++) {
        json_t *el = json_array_get(doc, i);
        b->items[i].event = json_object_get(el, "data");
        b->items[i].id = json_string_value(json_object_get(el, "id"));
        b->items[i].traceparent = json_string_value(json_object_get(el, "traceparent"));
    }
    return 0;
}

void delivery_decide_all(struct delivery_batch *b, delivery_decide_fn decide, void *ctx)
{
    bool is_retried = false;
    for (size_t i = 0; i < b->n; i++) {
        struct delivery_item *it = &b->items[i];
        if (is_retried) {
            delivery_item_fail(it, 503, "unavailable", "not decided: the batch is retried");
            continue;
        }
        decide(ctx, it);
        is_retried = is_retryable(it->status);
    }
}

void delivery_item_fail(struct delivery_item *it, int status, const char *code, const char *fmt,
                        ...)
{
    it->status = status;
    it->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->message, sizeof it->message, fmt, ap);
    va_end(ap);
}

static void answer_failure(struct http_exchange *ex, const struct delivery_item *it,
                           unsigned retry_after_s)
{
    if (retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", retry_after_s);
        http_add_header(ex, "Retry-After", ra);
    }
    int status = it->status > 0 ? it->status : 500;
    http_respond_error(ex, (unsigned)status,
                       it->code        ? it->code
                       : status >= 500 ? "internal"
                                       : "invalid_event",
                       NULL, "%s", it->message[0] ? it->message : "the event was not processed");
}

void delivery_answer(struct http_exchange *ex, struct delivery_batch *b)
{
    if (!b->is_batch) {
        struct delivery_item *it = &b->items[0];
        if (it->status >= 200 && it->status < 300) {
            if (it->status == 204) {
                http_respond(ex, 204, NULL, "", 0);
            } else if (it->output) {
                http_respond_json(ex, (unsigned)it->status, it->output);
                it->output = NULL;
            } else {
                http_respond(ex, (unsigned)it->status, "application/json", "{}", 2);
            }
        } else {
            answer_failure(ex, it, it->retry_after_s);
        }
        delivery_batch_free(b);
        return;
    }
    const struct delivery_item *retry = NULL, *refused = NULL;
    size_t refused_at = 0;
    unsigned retry_after_s = 0;
    bool has_output = false;
    for (size_t i = 0; i < b->n; i++) {
        const struct delivery_item *it = &b->items[i];
        if (is_retryable(it->status)) {
            retry = retry ? retry : it;
            retry_after_s = it->retry_after_s > retry_after_s ? it->retry_after_s : retry_after_s;
        } else if (it->status < 200 || it->status >= 300) {
            if (!refused) {
                refused = it;
                refused_at = i;
            }
        } else if (it->output && it->status != 204) {
            has_output = true;
        }
    }
    if (retry) {
        answer_failure(ex, retry, retry_after_s);
    } else if (refused) {
        http_respond_error(ex, 422, "batch_refused", NULL, "event %zu (%s) refused with %d: %s",
                           refused_at, refused->id ? refused->id : "no id", refused->status,
                           refused->message);
    } else if (!has_output) {
        http_respond(ex, 204, NULL, "", 0);
    } else {
        json_t *out = json_array();
        for (size_t i = 0; i < b->n; i++) {
            struct delivery_item *it = &b->items[i];
            json_array_append_new(out, it->output && it->status != 204 ? it->output : json_null());
            if (it->status == 204) {
                json_decref(it->output);
            }
            it->output = NULL;
        }
        http_respond_json(ex, 200, out);
    }
    delivery_batch_free(b);
}

void delivery_batch_free(struct delivery_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        json_decref(b->items[i].output);
    }
    free(b->items);
    json_decref(b->doc);
    memset(b, 0, sizeof *b);
}
