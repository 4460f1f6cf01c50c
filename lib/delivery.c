/* delivery.c - signature, body and ce-id checks of a bus delivery (see delivery.h). */
#include "delivery.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
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
    int rc = delivery_verify(ex, secret);
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
    const char *id = http_header(ex, "ce-id");
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
    const char *why = !json_is_array(doc) ? "the batch is not a JSON array"
                      : n == 0            ? "the batch is empty"
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
                       it->code ? it->code : status >= 500 ? "internal" : "invalid_event", NULL,
                       "%s", it->message[0] ? it->message : "the event was not processed");
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
