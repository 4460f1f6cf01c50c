/* delivery.h - the receiving end of a bus delivery (INTERFACES.md "Delivery to endpoints"), shared
 * by every service the dispatcher posts events to.
 *
 * A delivery is a POST whose body is the event JSON object, signed per Standard Webhooks
 * (https://www.standardwebhooks.com/; docs/bus.md "Signatures"): `webhook-id` (the event id),
 * `webhook-timestamp` (Unix seconds) and `webhook-signature` ("v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>", several space-separated while keys rotate). delivery_accept() does the
 * checks every endpoint does first, in this order, and answers the refusal itself:
 *
 *   1. signature: the three headers present, the timestamp within DELIVERY_TOLERANCE_S of now
 *      (else 401 "stale_signature"), one signature made with one of rules->secret's keys (else
 *      401 "bad_signature"; no key configured is 401 too: checks are never off), and the pair
 *      (webhook-id, webhook-timestamp) not seen before (else 429 "replayed", Retry-After 1: the
 *      dispatcher signs every attempt with a new timestamp, so only a recorded copy repeats one);
 *   2. the body is a JSON object: rules->refusal (status, code, message);
 *   3. the event id (webhook-id; a `ce-id` header, when present, must equal it, else 401):
 *      when rules->needs_event_id, non-empty and at most rules->event_id_max bytes, else
 *      rules->refusal.
 *
 * Services differ in how they refuse a malformed event (most answer 422 "invalid_event", which
 * the dispatcher dead-letters; gamesim answers 400 "bad_request"), so the refusal is a
 * parameter, not a policy of this module. What the event must contain beyond that is the
 * service's business. Thread-safe: the only state is the process's replay cache (one mutex; at
 * most DELIVERY_REPLAY_MAX pairs, each forgotten once its timestamp is out of the window). */
#ifndef DELIVERY_H
#define DELIVERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http/http_server.h"

/* The documented development value of the bus signing key (docs/security.md): used only in
 * development, when BUS_SIGNING_SECRET is not set; production refuses to start with it. */
#define DELIVERY_DEV_SECRET "dev-only-bus-signing-secret-change-me"
/* The configuration entry every receiving process declares (key bus_secret, env
 * BUS_SIGNING_SECRET): one key, or several separated by spaces while keys rotate. */
#define DELIVERY_SECRET_CONFIG_DEF                                                                 \
    {                                                                                              \
        "bus_secret", CONFIG_STRING, DELIVERY_DEV_SECRET, 0, 4096, CONFIG_KEY,                     \
            "BUS_SIGNING_SECRET",                                                                  \
            "Bus signing key(s) every delivery's signature is checked with (docs/security.md)"     \
    }

/* How a malformed delivery is answered. */
struct delivery_refusal {
    unsigned status;     /* 0 = 422 */
    const char *code;    /* NULL = "invalid_event" */
    const char *message; /* NULL = "the body is not a JSON object" */
};

struct delivery_rules {
    /* bus signing key list (bus_secret). NULL or "": every delivery is 401, unless this thread
     * has just verified this very exchange with delivery_verify (checked once, not twice). */
    const char *secret;
    bool needs_event_id; /* refuse a delivery without a usable ce-id */
    size_t event_id_max; /* longest ce-id accepted when needs_event_id (0 = no limit) */
    struct delivery_refusal refusal;
};

#define DELIVERY_TOLERANCE_S 300     /* how far webhook-timestamp may be from now (±5 min) */
#define DELIVERY_ID_MAX 256          /* longest webhook-id accepted */
#define DELIVERY_REPLAY_MAX 1000000u /* (id, timestamp) pairs remembered at most */

/* Checks only the signature and replay (step 1 above): returns 0, or answers the refusal and
 * returns its status (401, 429 replayed, 503 when the replay cache is full). secret: the
 * receiver's key list (space-separated). */
int delivery_verify(struct http_exchange *ex, const char *secret);
/* Forgets every (id, timestamp) seen (tests). */
void delivery_replay_reset(void);

/* Checks a delivery as described above. On success returns 0, *event receives the parsed body
 * (a JSON object the caller owns: json_decref it) and, when event_id is not NULL, *event_id the
 * event id (webhook-id; borrowed, valid until the exchange is answered). On refusal the
 * exchange has been answered, *event is NULL and the return value is the HTTP status sent (401,
 * or rules->refusal's status), so a caller can count refusals by kind. */
int delivery_accept(struct http_exchange *ex, const struct delivery_rules *rules, json_t **event,
                    const char **event_id);

/* ---- one code path for single and batched deliveries ---------------------------------------
 *
 * A route with "batch" > 1 may send several events in one request, in CloudEvents' batched
 * content mode (docs/bus.md "Batched delivery"): Content-Type application/cloudevents-batch+json,
 * the body a JSON array whose elements carry the event in "data" and its id in "id". A service
 * that takes both forms accepts with delivery_accept_any(), decides every item (status, and for
 * a streaming route its output) and answers with delivery_answer(), which keeps the single
 * delivery's answers exactly as they were and answers a batch as the dispatcher expects:
 *
 *   - an item with a retryable outcome (0, 408, 429 or 5xx): that status for the whole batch
 *     (with the largest Retry-After); the bus retries the batch, so deduplicate by event id;
 *   - else an item refused (another 4xx): 422 "batch_refused" naming it; the bus then delivers
 *     the batch's events one at a time, and each single answer decides as usual;
 *   - else 204 when no item has an output, or 200 with an array of n elements, element i the
 *     output of item i (an object or array of objects to publish) or null (nothing).
 */
#define DELIVERY_BATCH_TYPE "application/cloudevents-batch+json"
#define DELIVERY_BATCH_MAX 1000 /* most events one batch may carry */
/* The body an endpoint that takes batches accepts (its route's max_body_bytes); the dispatcher
 * keeps every batch well below it (a quarter of it in events, plus their attributes). */
#define DELIVERY_MAX_BODY_BYTES (1024 * 1024)

struct delivery_item {
    json_t *event;  /* the event (a JSON object; owned by the batch) */
    const char *id; /* its id (ce-id header, or the batch element's "id"); NULL when absent */
    const char *traceparent; /* its trace context (header, or the element's attribute), or NULL */
    /* the outcome, set by the service */
    int status;        /* 0 = undecided (answered as 500); 2xx; 4xx refused; 5xx retry */
    json_t *output;    /* what a streaming route publishes (owned; NULL = nothing) */
    const char *code;  /* error code of a non-2xx outcome (NULL = "invalid_event") */
    char message[160]; /* its message */
    unsigned retry_after_s;
};

struct delivery_batch {
    bool is_batch; /* the request was a batch (else n == 1) */
    size_t n;
    struct delivery_item *items;
    json_t *doc; /* the parsed body the items borrow from */
};

/* True when the request carries a batch (by its Content-Type). */
bool delivery_is_batch(struct http_exchange *ex);
/* Checks the signature and parses a single delivery (as delivery_accept) or a batch (a non-empty
 * array of at most DELIVERY_BATCH_MAX objects, each with an object "data" and, when
 * rules->needs_event_id, a usable "id"; the batch request is signed as a whole, its webhook-id
 * being the id of its first event). Returns 0 with b filled, or the status already answered
 * (a batch that does not parse is refused whole; the bus then delivers its events one by one). */
int delivery_accept_any(struct http_exchange *ex, const struct delivery_rules *rules,
                        struct delivery_batch *b);
/* Decides every item in order with decide(ctx, item). Once an item must be retried (0, 408,
 * 429, 5xx) the whole batch will be, so the items after it are not decided: they are set to
 * 503 and nothing of theirs is done. */
typedef void (*delivery_decide_fn)(void *ctx, struct delivery_item *it);
void delivery_decide_all(struct delivery_batch *b, delivery_decide_fn decide, void *ctx);
/* Sets an item's outcome to a refusal or failure: status, code and a printf-style message. */
void delivery_item_fail(struct delivery_item *it, int status, const char *code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
/* Answers the exchange from the items' outcomes (rules above) and frees b's contents. */
void delivery_answer(struct http_exchange *ex, struct delivery_batch *b);
/* Frees b's contents without answering. */
void delivery_batch_free(struct delivery_batch *b);

#endif
