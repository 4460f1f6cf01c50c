/* test_delivery.c - delivery.h over real loopback HTTP: signature (401), body not an object and
 * missing or oversized ce-id (the service's refusal), and what a handler gets on success. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "delivery.h"
#include "http_client.h"
#include "http_server.h"

#define SECRET "s3cret"

struct fixture {
    struct http_server *srv;
    struct http_client *client;
    char url_strict[128]; /* signed, ce-id required (≤ 8 bytes), default refusal */
    char url_lax[128];    /* unsigned, ce-id optional, 400 bad_request refusal */
};

static const struct delivery_rules STRICT = {
    .secret = SECRET,
    .needs_event_id = true,
    .event_id_max = 8,
    .refusal = {.message = "account_id and ce-id are required"},
};
static const struct delivery_rules LAX = {
    .refusal = {.status = 400, .code = "bad_request", .message = "the body must be an object"},
};

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

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct http_server_options o = {.listen = "127.0.0.1:0", .threads = 1};
    char err[256];
    f->srv = http_server_new(&o);
    http_server_route(f->srv, "POST", "/strict", handle, (void *)&STRICT, 4096);
    http_server_route(f->srv, "POST", "/lax", handle, (void *)&LAX, 4096);
    assert_int_equal(http_server_start(f->srv, err, sizeof err), 0);
    unsigned port = http_server_port(f->srv);
    snprintf(f->url_strict, sizeof f->url_strict, "http://127.0.0.1:%u/strict", port);
    snprintf(f->url_lax, sizeof f->url_lax, "http://127.0.0.1:%u/lax", port);
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

/* POSTs body with an optional ce-id and signature ("sign" = the right one); returns the status,
 * the "error" code of a refusal or the answer's "id" in out. */
static int post(struct fixture *f, const char *url, const char *body, const char *ce_id,
                const char *signature, char out[64])
{
    char sig[72];
    struct http_header_kv h[3] = {{"Content-Type", "application/json"}};
    size_t n = 1;
    if (ce_id) {
        h[n++] = (struct http_header_kv){"ce-id", ce_id};
    }
    if (signature && strcmp(signature, "sign") == 0) {
        crypto_sign_body(SECRET, body, strlen(body), sig);
        signature = sig;
    }
    if (signature) {
        h[n++] = (struct http_header_kv){"X-Bus-Signature", signature};
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
    assert_int_equal(post(f, f->url_strict, "{\"a\":1}", "ev-1", "sha256=00", out), 401);
    assert_string_equal(out, "bad_signature");
    /* checked before the body: garbage with a wrong signature is still a 401 */
    assert_int_equal(post(f, f->url_strict, "not json", NULL, "sha256=00", out), 401);
}

static void test_body_not_an_object_gets_the_services_refusal(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_strict, "[1,2]", "ev-1", "sign", out), 422);
    assert_string_equal(out, "invalid_event");
    assert_int_equal(post(f, f->url_strict, "{\"a\":", "ev-1", "sign", out), 422);
    assert_int_equal(post(f, f->url_lax, "\"text\"", NULL, NULL, out), 400);
    assert_string_equal(out, "bad_request");
}

static void test_event_id_required_present_and_bounded(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_strict, "{}", NULL, "sign", out), 422);
    assert_string_equal(out, "invalid_event");
    assert_int_equal(post(f, f->url_strict, "{}", "", "sign", out), 422);
    assert_int_equal(post(f, f->url_strict, "{}", "123456789", "sign", out), 422); /* > 8 */
    assert_int_equal(post(f, f->url_strict, "{}", "12345678", "sign", out), 200);
    assert_string_equal(out, "12345678");
}

static void test_unsigned_route_takes_any_object_and_optional_id(void **state)
{
    struct fixture *f = *state;
    char out[64];
    assert_int_equal(post(f, f->url_lax, "{\"a\":1}", NULL, NULL, out), 200);
    assert_string_equal(out, "(none)"); /* no ce-id: NULL for the handler */
    assert_int_equal(post(f, f->url_lax, "{}", "x", "sha256=ignored", out), 200);
    assert_string_equal(out, "x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_delivery_is_accepted_with_its_event_id),
        cmocka_unit_test(test_missing_or_wrong_signature_is_401),
        cmocka_unit_test(test_body_not_an_object_gets_the_services_refusal),
        cmocka_unit_test(test_event_id_required_present_and_bounded),
        cmocka_unit_test(test_unsigned_route_takes_any_object_and_optional_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
