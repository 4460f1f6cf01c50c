/* test_delivery.c - delivery.h over real loopback HTTP: Standard Webhooks signature (401),
 * stale timestamps (401), replays (429), body not an object and missing or oversized event id
 * (the service's refusal), and what a handler gets on success; the one path for single and
 * batched deliveries (delivery_accept_any, delivery_answer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "delivery.h"
#include "http/http_client.h"
#include "http/http_server.h"

#define SECRET "s3cret"

struct fixture {
    struct http_server *srv;
    struct http_client *client;
    char url_strict[128]; /* event id required (≤ 8 bytes), default refusal */
    char url_lax[128];    /* event id optional, 400 bad_request refusal */
    char url_nokey[128];  /* no signing key configured */
    char url_verify[128]; /* delivery_verify, then delivery_accept without a key */
    char url_any[128];    /* as strict, single or batched (handle_any) */
};

static const struct delivery_rules STRICT = {
    .secret = SECRET,
    .needs_event_id = true,
    .event_id_max = 8,
    .refusal = {.message = "account_id and ce-id are required"},
};
static const struct delivery_rules LAX = {
    .secret = "other-key " SECRET, /* a key list, as while keys rotate */
    .refusal = {.status = 400, .code = "bad_request", .message = "the body must be an object"},
};
static const struct delivery_rules NOKEY = {0};

/* Answers 200 {"id": ce-id or null, "keys": number of keys of the event}. */
static void handle(struct http_exchange *ex, void *ctx)
{
    json_t *ev = (json_t *)1; /* must be reset by delivery_accept */
    const char *id = "unset";
    if (delivery_accept(ex, ctx, &ev, &id) != 0) {
        if (ev != NULL || id != NULL) {
            abort(); /* a refusal leaves nothing to the caller (cmocka asserts: main thread only) */
        }
        return;
    }
    http_respond_json(ex, 200,
                      json_pack("{s:s?, s:I}", "id", id, "keys", (json_int_t)json_object_size(ev)));
    json_decref(ev);
}

/* As gamesim does: the signature first (delivery_verify), then delivery_accept without a key. */
static void handle_verify_first(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    if (delivery_verify(ex, SECRET) != 0) {
        return;
    }
    handle(ex, (void *)&NOKEY);
}

/* Decides each item from its event: {"out":1} -> 200 {"echo": id}, {"skip":1} -> 204,
 * {"refuse":1} -> 422, {"retry":1} -> 503 with Retry-After 2. */
static void handle_any(struct http_exchange *ex, void *ctx)
{
    struct delivery_batch b;
    if (delivery_accept_any(ex, ctx, &b) != 0) {
        return;
    }
    for (size_t i = 0; i < b.n; i++) {
        struct delivery_item *it = &b.items[i];
        if (json_object_get(it->event, "out")) {
            it->status = 200;
            it->output = json_pack("{s:s?}", "echo", it->id);
        } else if (json_object_get(it->event, "skip")) {
            it->status = 204;
        } else if (json_object_get(it->event, "refuse")) {
            delivery_item_fail(it, 422, "invalid_event", "refused %zu", i);
        } else if (json_object_get(it->event, "retry")) {
            delivery_item_fail(it, 503, "unavailable", "try later");
            it->retry_after_s = 2;
        }
    }
    delivery_answer(ex, &b);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct http_server_options o = {.listen = "127.0.0.1:0", .threads = 1};
    char err[256];
    f->srv = http_server_new(&o);
    http_server_route(f->srv, "POST", "/strict", handle, (void *)&STRICT, 4096);
    http_server_route(f->srv, "POST", "/lax", handle, (void *)&LAX, 4096);
    http_server_route(f->srv, "POST", "/nokey", handle, (void *)&NOKEY, 4096);
    http_server_route(f->srv, "POST", "/verify", handle_verify_first, NULL, 4096);
    http_server_route(f->srv, "POST", "/any", handle_any, (void *)&STRICT, 4096);
    assert_int_equal(http_server_start(f->srv, err, sizeof err), 0);
    unsigned port = http_server_port(f->srv);
    snprintf(f->url_strict, sizeof f->url_strict, "http://127.0.0.1:%u/strict", port);
    snprintf(f->url_lax, sizeof f->url_lax, "http://127.0.0.1:%u/lax", port);
    snprintf(f->url_nokey, sizeof f->url_nokey, "http://127.0.0.1:%u/nokey", port);
    snprintf(f->url_verify, sizeof f->url_verify, "http://127.0.0.1:%u/verify", port);
    snprintf(f->url_any, sizeof f->url_any, "http://127.0.0.1:%u/any", port);
    f->client = http_client_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_client_free(f->client);
    http_server_free(f->srv, 1000);
    free(f);
    return 0;
}

/* A timestamp near now that no other post of this run used: the receiver refuses a repeated
 * (id, timestamp) pair, whichever test sent it first. */
static long long fresh_ts(void)
{
    static long long seq;
    return (long long)time(NULL) - 250 + seq++ % 500;
}

/* POSTs body with the headers given (NULL = absent): ce-id, webhook-id, webhook-timestamp ts
 * and webhook-signature ("sign" = the right one for SECRET). Returns the status and, in out, the
 * "error" code of a refusal or the answer's "id". */
static int post_raw(struct fixture *f, const char *url, const char *body, const char *ce_id,
                    const char *webhook_id, long long ts, const char *signature, char out[64])
{
    char sig[256], ts_text[24];
    struct http_header_kv h[5] = {{"Content-Type", "application/json"}};
    size_t n = 1;
    snprintf(ts_text, sizeof ts_text, "%lld", ts);
    if (ce_id) {
        h[n++] = (struct http_header_kv){"ce-id", ce_id};
    }
    if (webhook_id) {
        h[n++] = (struct http_header_kv){"webhook-id", webhook_id};
    }
    h[n++] = (struct http_header_kv){"webhook-timestamp", ts_text};
    if (signature && strcmp(signature, "sign") == 0) {
        assert_int_equal(crypto_webhook_sign(SECRET, webhook_id ? webhook_id : "", ts, body,
                                             strlen(body), sig, sizeof sig),
                         0);
        signature = sig;
    }
    if (signature) {
        h[n++] = (struct http_header_kv){"webhook-signature", signature};
    }
    struct http_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(
        http_client_request(f->client, "POST", url, h, n, body, strlen(body), 5000, 65536, &r), 0);
    json_error_t je;
    json_t *j = json_loads(r.body ? r.body : "", 0, &je);
    const char *s = json_string_value(json_object_get(j, r.status == 200 ? "id" : "error"));
    snprintf(out, 64, "%s", s ? s : "(none)");
    json_decref(j);
    int status = r.status;
    http_result_release(&r);
    return status;
}

/* A delivery as the dispatcher sends it: id in ce-id and webhook-id, a fresh timestamp. */
static int post(struct fixture *f, const char *url, const char *body, const char *id,
                const char *signature, char out[64])
{
    return post_raw(f, url, body, id, id, fresh_ts(), signature, out);
}

static void test_signed_delivery_is_accepted_with_its_event_id(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_strict, "{\"a\":1,\"b\":2}", "ev-1", "sign", out), 200);
    assert_string_equal(out, "ev-1");
}

static void test_missing_or_wrong_signature_is_401(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_strict, "{\"a\":1}", "ev-1", NULL, out), 401);
    assert_string_equal(out, "bad_signature");
    assert_int_equal(post(f, f->url_strict, "{\"a\":1}", "ev-1", "v1,AAAA", out), 401);
    assert_string_equal(out, "bad_signature");
    /* checked before the body: garbage with a wrong signature is still a 401 */
    assert_int_equal(post(f, f->url_strict, "not json", "ev-1", "v1,AAAA", out), 401);
    /* no webhook-id, or one that is not the ce-id it was signed as */
    assert_int_equal(post_raw(f, f->url_strict, "{}", "ev-1", NULL, fresh_ts(), "sign", out), 401);
    assert_int_equal(post_raw(f, f->url_strict, "{}", "ev-2", "ev-1", fresh_ts(), "sign", out),
                     401);
    assert_string_equal(out, "bad_signature");
    /* a receiver without a key refuses everything (checks are never off) */
    assert_int_equal(post(f, f->url_nokey, "{}", "ev-1", "sign", out), 401);
    /* ... unless it verified this very exchange itself first (once: no replay of itself) */
    assert_int_equal(post(f, f->url_verify, "{}", "ev-v", "sign", out), 200);
    assert_string_equal(out, "ev-v");
    assert_int_equal(post(f, f->url_verify, "{}", "ev-v", NULL, out), 401);
    assert_int_equal(post(f, f->url_nokey, "{}", "ev-w", "sign", out), 401);
}

static void test_stale_or_future_timestamp_is_401(void **state)
{
    struct fixture *f = *state;
    char out[64];
    long long now = (long long)time(NULL);
    assert_int_equal(post_raw(f, f->url_strict, "{}", "ev-1", "ev-1",
                              now - DELIVERY_TOLERANCE_S - 5, "sign", out),
                     401);
    assert_string_equal(out, "stale_signature");
    assert_int_equal(post_raw(f, f->url_strict, "{}", "ev-1", "ev-1",
                              now + DELIVERY_TOLERANCE_S + 5, "sign", out),
                     401);
    assert_string_equal(out, "stale_signature");
    assert_int_equal(post_raw(f, f->url_strict, "{}", "ev-1", "ev-1", now - 200, "sign", out), 200);
}

static void test_replayed_delivery_is_429_and_not_handled(void **state)
{
    struct fixture *f = *state;
    char out[64];
    long long ts = fresh_ts();
    assert_int_equal(post_raw(f, f->url_strict, "{\"a\":1}", "ev-r", "ev-r", ts, "sign", out), 200);
    assert_string_equal(out, "ev-r");
    /* the same request again: refused before the handler (which would answer 200 with the id) */
    assert_int_equal(post_raw(f, f->url_strict, "{\"a\":1}", "ev-r", "ev-r", ts, "sign", out), 429);
    assert_string_equal(out, "replayed");
    /* a retry of the same event signed with another timestamp is a new delivery */
    assert_int_equal(post_raw(f, f->url_strict, "{\"a\":1}", "ev-r", "ev-r", ts + 1, "sign", out),
                     200);
}

static void test_the_replay_cache_grows_and_keeps_every_pair(void **state)
{
    struct fixture *f = *state;
    char out[64], id[16];
    enum { N = 2100 }; /* more pairs than the first table holds at half load */
    static long long ts[N];
    delivery_replay_reset();
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "g%d", i);
        ts[i] = (long long)time(NULL);
        assert_int_equal(post_raw(f, f->url_strict, "{}", id, id, ts[i], "sign", out), 200);
    }
    for (int i = 0; i < N; i += 100) {
        snprintf(id, sizeof id, "g%d", i);
        assert_int_equal(post_raw(f, f->url_strict, "{}", id, id, ts[i], "sign", out), 429);
    }
}

static void test_body_not_an_object_gets_the_services_refusal(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_strict, "[1,2]", "ev-1", "sign", out), 422);
    assert_string_equal(out, "invalid_event");
    assert_int_equal(post(f, f->url_strict, "{\"a\":", "ev-1", "sign", out), 422);
    assert_int_equal(post(f, f->url_lax, "\"text\"", "ev-1", "sign", out), 400);
    assert_string_equal(out, "bad_request");
}

static void test_event_id_required_present_and_bounded(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_strict, "{}", NULL, "sign", out), 401); /* no webhook-id */
    assert_int_equal(post(f, f->url_strict, "{}", "", "sign", out), 401);
    assert_int_equal(post(f, f->url_strict, "{}", "123456789", "sign", out), 422); /* > 8 */
    assert_int_equal(post(f, f->url_strict, "{}", "12345678", "sign", out), 200);
    assert_string_equal(out, "12345678");
}

static void test_key_list_and_optional_ce_id(void **state)
{
    struct fixture *f = *state;
    char out[64];
    /* LAX holds two keys: a delivery signed with either is accepted; no ce-id is fine */
    assert_int_equal(post_raw(f, f->url_lax, "{\"a\":1}", NULL, "x", fresh_ts(), "sign", out), 200);
    assert_string_equal(out, "x"); /* the event id is the webhook-id */
}

/* POSTs a signed batch (or, when ce_id is set, a signed single delivery) to /any; returns the
 * status, the body in out (compact JSON, "" for none) and the Retry-After header in ra. */
static int post_any(struct fixture *f, const char *body, const char *ce_id, char out[256],
                    char ra[16])
{
    char sig[256], ts_text[24];
    const char *id = ce_id ? ce_id : "batch";
    long long ts = fresh_ts();
    snprintf(ts_text, sizeof ts_text, "%lld", ts);
    assert_int_equal(crypto_webhook_sign(SECRET, id, ts, body, strlen(body), sig, sizeof sig), 0);
    struct http_header_kv h[5] = {
        {"Content-Type", ce_id ? "application/json" : DELIVERY_BATCH_TYPE},
        {"webhook-id", id},
        {"webhook-timestamp", ts_text},
        {"webhook-signature", sig},
        {"ce-id", ce_id},
    };
    struct http_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(http_client_request(f->client, "POST", f->url_any, h, ce_id ? 5 : 4, body,
                                         strlen(body), 5000, 65536, &r),
                     0);
    snprintf(out, 256, "%s", r.body ? r.body : "");
    snprintf(ra, 16, "%s", r.retry_after ? r.retry_after : "");
    int status = r.status;
    http_result_release(&r);
    return status;
}

#define EL(id, data) "{\"specversion\":\"1.0\",\"id\":\"" id "\",\"data\":" data "}"

static void test_batch_answer_holds_each_events_output_in_order(void **state)
{
    struct fixture *f = *state;
    char out[256], ra[16];
    assert_int_equal(post_any(f,
                              "[" EL("a", "{\"out\":1}") "," EL("b", "{\"skip\":1}") "," EL(
                                  "c", "{\"out\":1}") "]",
                              NULL, out, ra),
                     200);
    assert_string_equal(out, "[{\"echo\":\"a\"},null,{\"echo\":\"c\"}]");
    /* nothing to publish for any event: 204 */
    assert_int_equal(
        post_any(f, "[" EL("a", "{\"skip\":1}") "," EL("b", "{\"skip\":1}") "]", NULL, out, ra),
        204);
}

static void test_batch_refused_whole_and_retry_wins_over_refusal(void **state)
{
    struct fixture *f = *state;
    char out[256], ra[16];
    assert_int_equal(
        post_any(f, "[" EL("a", "{\"out\":1}") "," EL("b", "{\"refuse\":1}") "]", NULL, out, ra),
        422);
    assert_non_null(strstr(out, "\"batch_refused\""));
    assert_non_null(strstr(out, "event 1 (b)"));
    assert_int_equal(
        post_any(f, "[" EL("a", "{\"refuse\":1}") "," EL("b", "{\"retry\":1}") "]", NULL, out, ra),
        503);
    assert_string_equal(ra, "2");
}

static void test_batch_that_does_not_parse_is_refused(void **state)
{
    struct fixture *f = *state;
    char out[256], ra[16];
    assert_int_equal(post_any(f, "{\"not\":\"an array\"}", NULL, out, ra), 422);
    assert_non_null(strstr(out, "batch_refused"));
    assert_int_equal(post_any(f, "[]", NULL, out, ra), 422);
    assert_int_equal(post_any(f, "[{\"id\":\"a\",\"data\":[1]}]", NULL, out, ra), 422);
    assert_int_equal(post_any(f, "[{\"data\":{\"out\":1}}]", NULL, out, ra), 422);    /* no id */
    assert_int_equal(post_any(f, "[" EL("123456789", "{}") "]", NULL, out, ra), 422); /* > 8 */
}

static void test_single_delivery_through_the_same_path_answers_as_before(void **state)
{
    struct fixture *f = *state;
    char out[256], ra[16];
    assert_int_equal(post_any(f, "{\"out\":1}", "ev-1", out, ra), 200);
    assert_string_equal(out, "{\"echo\":\"ev-1\"}");
    assert_int_equal(post_any(f, "{\"skip\":1}", "ev-1", out, ra), 204);
    assert_int_equal(post_any(f, "{\"refuse\":1}", "ev-1", out, ra), 422);
    assert_non_null(strstr(out, "\"invalid_event\""));
    assert_int_equal(post_any(f, "{\"retry\":1}", "ev-1", out, ra), 503);
    assert_string_equal(ra, "2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_delivery_is_accepted_with_its_event_id),
        cmocka_unit_test(test_missing_or_wrong_signature_is_401),
        cmocka_unit_test(test_body_not_an_object_gets_the_services_refusal),
        cmocka_unit_test(test_event_id_required_present_and_bounded),
        cmocka_unit_test(test_key_list_and_optional_ce_id),
        cmocka_unit_test(test_stale_or_future_timestamp_is_401),
        cmocka_unit_test(test_replayed_delivery_is_429_and_not_handled),
        cmocka_unit_test(test_the_replay_cache_grows_and_keeps_every_pair),
        cmocka_unit_test(test_batch_answer_holds_each_events_output_in_order),
        cmocka_unit_test(test_batch_refused_whole_and_retry_wins_over_refusal),
        cmocka_unit_test(test_batch_that_does_not_parse_is_refused),
        cmocka_unit_test(test_single_delivery_through_the_same_path_answers_as_before),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
