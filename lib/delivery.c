/* delivery.c - signature, body and ce-id checks of a bus delivery (see delivery.h). */
#include "delivery.h"

#include <string.h>

#include "crypto.h"

int delivery_verify(struct http_exchange *ex, const char *secret)
{
    if (!secret || !*secret) {
        return 0;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    if (crypto_verify_signature(secret, body, len, http_header(ex, "X-Bus-Signature"))) {
        return 0;
    }
    http_respond_error(ex, 401, "bad_signature", NULL, "X-Bus-Signature is missing or wrong");
    return 401;
}

static int refuse(struct http_exchange *ex, const struct delivery_refusal *r)
{
    unsigned status = r->status ? r->status : 422;
    http_respond_error(ex, status, r->code ? r->code : "invalid_event", NULL, "%s",
                       r->message ? r->message : "the body is not a JSON object");
    return (int)status;
}

int delivery_accept(struct http_exchange *ex, const struct delivery_rules *rules, json_t **event,
                    const char **event_id)
{
    *event = NULL;
    if (event_id) {
        *event_id = NULL;
    }
    int rc = delivery_verify(ex, rules->secret);
    if (rc != 0) {
        return rc;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    json_error_t jerr;
    json_t *ev = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(ev)) {
        json_decref(ev);
        return refuse(ex, &rules->refusal);
    }
    const char *id = http_header(ex, "ce-id");
    if (rules->needs_event_id &&
        (!id || !*id || (rules->event_id_max && strlen(id) > rules->event_id_max))) {
        json_decref(ev);
        return refuse(ex, &rules->refusal);
    }
    *event = ev;
    if (event_id) {
        *event_id = id;
    }
    return 0;
}
