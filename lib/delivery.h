/* delivery.h - the receiving end of a bus delivery (INTERFACES.md "Delivery to endpoints"), shared
 * by every service the dispatcher posts events to.
 *
 * A delivery is a POST whose body is the event JSON object, with the event's id in the `ce-id`
 * header and, when the bus signs, an `X-Bus-Signature` over the body. delivery_accept() does the
 * three checks every endpoint does first, in this order, and answers the refusal itself:
 *
 *   1. signature (only when rules->secret is set): 401 "bad_signature";
 *   2. the body is a JSON object: rules->refusal (status, code, message);
 *   3. the `ce-id` header (only when rules->needs_event_id): present, non-empty and at most
 *      rules->event_id_max bytes, else rules->refusal.
 *
 * Services differ in how they refuse a malformed event (most answer 422 "invalid_event", which
 * the dispatcher dead-letters; gamesim answers 400 "bad_request"), so the refusal is a
 * parameter, not a policy of this module. What the event must contain beyond that is the
 * service's business. Thread-safe (no state). */
#ifndef DELIVERY_H
#define DELIVERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "http_server.h"

/* How a malformed delivery is answered. */
struct delivery_refusal {
    unsigned status;     /* 0 = 422 */
    const char *code;    /* NULL = "invalid_event" */
    const char *message; /* NULL = "the body is not a JSON object" */
};

struct delivery_rules {
    const char *secret;  /* bus signing secret; NULL or "" = signatures not checked */
    bool needs_event_id; /* refuse a delivery without a usable ce-id */
    size_t event_id_max; /* longest ce-id accepted when needs_event_id (0 = no limit) */
    struct delivery_refusal refusal;
};

/* Checks only the signature: returns 0 when secret is unset or the X-Bus-Signature header is
 * valid for the body; otherwise answers 401 "bad_signature" and returns 401. */
int delivery_verify(struct http_exchange *ex, const char *secret);

/* Checks a delivery as described above. On success returns 0, *event receives the parsed body
 * (a JSON object the caller owns: json_decref it) and, when event_id is not NULL, *event_id the
 * ce-id header (NULL when absent; borrowed, valid until the exchange is answered). On refusal the
 * exchange has been answered, *event is NULL and the return value is the HTTP status sent (401,
 * or rules->refusal's status), so a caller can count refusals by kind. */
int delivery_accept(struct http_exchange *ex, const struct delivery_rules *rules, json_t **event,
                    const char **event_id);

#endif
