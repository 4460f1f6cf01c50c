/* gamesim - the game server stub: records what the product sends to a game server and serves it.
 *
 * POST /v1/kick      an account.action event (route gamesim-kick): kick, block_abroad and lock
 *                    are recorded as kicks (200); notify needs no kick (204).
 * POST /v1/messages  an in-game message {"account_id", "text", ...} from notify (200).
 * POST /v1/sms       an SMS {"to", "text", ...} from notify (the development SMS provider, 200).
 * GET  /v1/received  {"kicks": [...], "messages": [...], "sms": [...]}, oldest first; each list
 *                    keeps the newest `keep` entries.
 * DELETE /v1/received empties the lists.
 * fail_next (config, or POST /v1/fail {"count": N}) answers the next N posts 503, so tests can
 * play a provider outage. Kicks are deduplicated by ce-id (a redelivery is not a second kick).
 * The recordings hold what players were sent (unlock codes among them), so reading, emptying
 * and the failure switch take the admin token (Authorization: Bearer, admin_token). */
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "crypto.h"
#include "delivery.h"
#include "http/http_server.h"
#include "log.h"

#define GAMESIM_DEV_ADMIN_TOKEN "dev-only-gamesim-admin-token"

static const struct config_def GAMESIM_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8109", 0, 256, 0, NULL, "HTTP listen address"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"admin_token", CONFIG_STRING, GAMESIM_DEV_ADMIN_TOKEN, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     NULL,
     "Bearer token of GET/DELETE /v1/received and POST /v1/fail (the default is for development "
     "only)"},
    {"keep", CONFIG_INT, "10000", 1, 1000000, 0, NULL, "Entries kept per list"},
    {"threads", CONFIG_INT, "2", 1, 64, 0, NULL, "HTTP worker threads"},
    CONFIG_DEF_END,
};

struct sim {
    pthread_mutex_t mu;
    json_t *kicks, *messages, *sms;
    json_t *seen; /* ce-id -> true for kicks */
    size_t keep;
    long fail_next;
    const char *bus_secret;
    char admin_sha256[CRYPTO_SHA256_HEX_LEN + 1]; /* of admin_token */
    struct http_server *srv;
};

/* True when the request carries the admin token; else answers 401 and returns false. The token's
 * hash is compared in constant time (the lengths of two hashes give nothing away). */
static bool is_admin(struct sim *s, struct http_exchange *ex)
{
    const char *tok = http_bearer(ex);
    char h[CRYPTO_SHA256_HEX_LEN + 1];
    if (tok) {
        crypto_sha256_hex(tok, strlen(tok), h);
        if (crypto_equal(h, strlen(h), s->admin_sha256, strlen(s->admin_sha256))) {
            return true;
        }
    }
    http_respond_error(ex, 401, "unauthorized", NULL, "the admin bearer token is required");
    return false;
}

static void push(struct sim *s, json_t *list, json_t *item)
{
    json_array_append_new(list, item);
    while (json_array_size(list) > s->keep) {
        json_array_remove(list, 0);
    }
}

/* Takes one simulated failure if any is pending (then answers 503 and returns 1). */
static int fail_one(struct sim *s, struct http_exchange *ex)
{
    pthread_mutex_lock(&s->mu);
    int fail = s->fail_next > 0;
    if (fail) {
        s->fail_next--;
    }
    pthread_mutex_unlock(&s->mu);
    if (fail) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, "unavailable", NULL, "simulated outage");
    }
    return fail;
}

#define BODY_NOT_OBJECT "the body must be a JSON object"

/* The body as a JSON object (owned by the caller), or NULL after answering 400. */
static json_t *body_object(struct http_exchange *ex)
{
    size_t len = 0;
    const char *body = http_body(ex, &len);
    json_error_t jerr;
    json_t *b = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(b)) {
        json_decref(b);
        http_respond_error(ex, 400, "bad_request", NULL, BODY_NOT_OBJECT);
        return NULL;
    }
    return b;
}

static void handle_kick(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    /* The signature first, then a simulated outage, then the body (a provider that is down does
     * not read what it is sent). */
    if (delivery_verify(ex, s->bus_secret) != 0 || fail_one(s, ex)) {
        return;
    }
    const struct delivery_rules rules = {
        .refusal = {.status = 400, .code = "bad_request", .message = BODY_NOT_OBJECT},
    };
    json_t *b = NULL;
    const char *ce_id = NULL;
    if (delivery_accept(ex, &rules, &b, &ce_id) != 0) {
        return;
    }
    const char *action = json_string_value(json_object_get(b, "action"));
    if (!json_is_string(json_object_get(b, "account_id")) || !action) {
        json_decref(b);
        http_respond_error(ex, 422, "invalid_event", NULL, "account_id and action are required");
        return;
    }
    if (strcmp(action, "kick") && strcmp(action, "block_abroad") && strcmp(action, "lock")) {
        json_decref(b);
        http_respond(ex, 204, NULL, "", 0);
        return;
    }
    json_object_del(b, "sealed_code"); /* a game server has no business with unlock codes */
    pthread_mutex_lock(&s->mu);
    if (ce_id && json_object_get(s->seen, ce_id)) {
        pthread_mutex_unlock(&s->mu);
        json_decref(b);
        http_respond_json(ex, 200, json_pack("{s:b}", "duplicate", 1));
        return;
    }
    if (ce_id) {
        if (json_object_size(s->seen) >= s->keep) {
            json_object_clear(s->seen);
        }
        json_object_set_new(s->seen, ce_id, json_true());
    }
    push(s, s->kicks, b);
    pthread_mutex_unlock(&s->mu);
    http_respond_json(ex, 200, json_pack("{s:b}", "kicked", 1));
}

static void record(struct http_exchange *ex, struct sim *s, json_t *list, const char *need)
{
    if (fail_one(s, ex)) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    if (!json_is_string(json_object_get(b, need)) || !json_is_string(json_object_get(b, "text"))) {
        json_decref(b);
        http_respond_error(ex, 422, "invalid", NULL, "\"%s\" and \"text\" are required", need);
        return;
    }
    pthread_mutex_lock(&s->mu);
    push(s, list, b);
    pthread_mutex_unlock(&s->mu);
    http_respond_json(ex, 200, json_pack("{s:b}", "accepted", 1));
}

static void handle_message(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    record(ex, s, s->messages, "account_id");
}

static void handle_sms(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    record(ex, s, s->sms, "to");
}

static void handle_received(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    if (!is_admin(s, ex)) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    json_t *out =
        json_pack("{s:O, s:O, s:O}", "kicks", s->kicks, "messages", s->messages, "sms", s->sms);
    char *text = json_dumps(out, JSON_COMPACT);
    pthread_mutex_unlock(&s->mu);
    json_decref(out);
    http_respond(ex, 200, NULL, text, strlen(text));
    free(text);
}

static void handle_clear(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    if (!is_admin(s, ex)) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    json_array_clear(s->kicks);
    json_array_clear(s->messages);
    json_array_clear(s->sms);
    json_object_clear(s->seen);
    pthread_mutex_unlock(&s->mu);
    http_respond(ex, 204, NULL, "", 0);
}

static void handle_fail(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    if (!is_admin(s, ex)) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    json_int_t n = json_integer_value(json_object_get(b, "count"));
    json_decref(b);
    pthread_mutex_lock(&s->mu);
    s->fail_next = n < 0 ? 0 : (long)n;
    pthread_mutex_unlock(&s->mu);
    http_respond(ex, 204, NULL, "", 0);
}

/* The received lists, the admin token's hash, the server started. */
static int sim_start(struct app *app, void *ctx)
{
    struct sim *s = ctx;
    char err[512];
    pthread_mutex_init(&s->mu, NULL);
    s->kicks = json_array();
    s->messages = json_array();
    s->sms = json_array();
    s->seen = json_object();
    s->keep = (size_t)config_int(app->cfg, "keep");
    s->bus_secret = config_str(app->cfg, "bus_secret");
    const char *admin = config_str(app->cfg, "admin_token");
    crypto_sha256_hex(admin, strlen(admin), s->admin_sha256);
    struct http_server_options opts = {
        .listen = config_str(app->cfg, "listen"),
        .threads = (unsigned)config_int(app->cfg, "threads"),
    };
    struct http_server *srv = http_server_new(&opts);
    s->srv = srv;
    http_server_route(srv, "POST", "/v1/kick", handle_kick, s, 65536);
    http_server_route(srv, "POST", "/v1/messages", handle_message, s, 65536);
    http_server_route(srv, "POST", "/v1/sms", handle_sms, s, 65536);
    http_server_route(srv, "GET", "/v1/received", handle_received, s, 0);
    http_server_route(srv, "DELETE", "/v1/received", handle_clear, s, 0);
    http_server_route(srv, "POST", "/v1/fail", handle_fail, s, 1024);
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        return 1;
    }
    log_info("gamesim listening on %s", opts.listen);
    return 0;
}

static void sim_release(struct app *app, void *ctx)
{
    (void)app;
    struct sim *s = ctx;
    http_server_free(s->srv, 2000);
    json_decref(s->kicks);
    json_decref(s->messages);
    json_decref(s->sms);
    json_decref(s->seen);
    pthread_mutex_destroy(&s->mu);
}

int main(int argc, char **argv)
{
    struct sim s;
    memset(&s, 0, sizeof(s));
    const struct app_service svc = {
        .name = "gamesim",
        .env_prefix = "GAMESIM",
        .defs = GAMESIM_CONFIG,
        .ctx = &s,
        .start = sim_start,
        .release = sim_release,
    };
    return app_serve(argc, argv, &svc);
}
