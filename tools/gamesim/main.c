/* gamesim - the game server stub: keeps the players' live sessions, records what the product sends
 * to a game server and serves it.
 *
 * POST /v1/sessions  (admin token) a login server opens the session of a login guard admitted:
 *                    {"session_id", "account_id", "server"} or an array of them (sessions.h).
 * GET  /v1/sessions?account_id=  (admin token) {"sessions": [...]}, oldest first.
 * POST /v1/kick      an account.action event (route gamesim-kick): kick, block_abroad and lock
 *                    are recorded as kicks and end the player's live session (kick,
 *                    block_abroad: the session the event names, or all of the account's when it
 *                    names none; lock: all of them) with a sentence saying why (200; "reasons"
 *                    support_lock: support locked the account); notify needs no kick (204).
 * POST /v1/messages  an in-game message {"account_id", "text", ...} from notify (200): shown in
 *                    the account's live sessions (the answer and the record name them).
 * POST /v1/sms       an SMS {"to", "text", ...} from notify (the development SMS provider, 200).
 * GET  /v1/received  {"kicks": [...], "messages": [...], "sms": [...]}, oldest first, each entry
 *                    with its "received_at"; each list keeps the newest `keep` entries.
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
#include "sessions.h"

#define GAMESIM_DEV_ADMIN_TOKEN "dev-only-gamesim-admin-token"

static const struct config_def GAMESIM_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8109", 0, 256, 0, NULL, "HTTP listen address"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"admin_token", CONFIG_STRING, GAMESIM_DEV_ADMIN_TOKEN, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     NULL,
     "Bearer token of /v1/sessions, GET/DELETE /v1/received and POST /v1/fail (the default is for "
     "development only)"},
    {"keep", CONFIG_INT, "10000", 1, 1000000, 0, NULL, "Entries kept per list"},
    {"threads", CONFIG_INT, "2", 1, 64, 0, NULL, "HTTP worker threads"},
    CONFIG_DEF_END,
};

struct sim {
    pthread_mutex_t mu;
    json_t *kicks, *messages, *sms;
    json_t *seen; /* ce-id -> true for kicks */
    struct sessions *sessions;
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

/* Records when an entry was received ("received_at", RFC 3339 UTC with milliseconds): what the
 * benches measure a kick's and an alert's delivery by. */
static void stamp(json_t *entry)
{
    char now[32];
    app_time_rfc3339(now);
    json_object_set_new(entry, "received_at", json_string(now));
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

/* The sentence a kicked player sees, in English (en) or Korean. */
static void kick_message(json_t *ev, const char *action, bool en, char *out, size_t len)
{
    const char *country = json_string_value(json_object_get(ev, "country"));
    country = country ? country : "?";
    /* support locked the account (guard's support lock-now: a kick naming no login country) */
    bool is_support_lock = false;
    json_t *reasons = json_object_get(ev, "reasons");
    for (size_t i = 0; i < json_array_size(reasons); i++) {
        const char *r = json_string_value(json_array_get(reasons, i));
        is_support_lock = is_support_lock || (r && strcmp(r, "support_lock") == 0);
    }
    int n;
    if (is_support_lock) {
        n = en ? snprintf(out, len,
                          "You were disconnected: support locked your account. Contact support "
                          "to unlock it.")
               : snprintf(out, len,
                          "고객센터에서 계정을 잠가 연결이 끊어졌습니다. 잠금 해제는 "
                          "고객센터에 문의하세요.");
    } else if (strcmp(action, "lock") == 0) {
        n = en ? snprintf(out, len,
                          "Your account was locked after a login from %s that your security "
                          "settings do not allow. Use the unlock code we sent you.",
                          country)
               : snprintf(out, len,
                          "보안 설정에서 허용하지 않은 국가(%s)에서 로그인하여 계정이 "
                          "잠겼습니다. 보내 드린 잠금 해제 코드를 사용하세요.",
                          country);
    } else if (strcmp(action, "block_abroad") == 0) {
        n = en ? snprintf(out, len,
                          "You were disconnected: logins from abroad (%s) are blocked for this "
                          "account.",
                          country)
               : snprintf(out, len, "해외(%s) 로그인이 차단된 계정이라 연결이 끊어졌습니다.",
                          country);
    } else {
        n = en ? snprintf(out, len,
                          "You were disconnected: a login from %s is not allowed by your security "
                          "settings.",
                          country)
               : snprintf(out, len,
                          "보안 설정에서 허용하지 않은 국가(%s)의 로그인이라 연결이 끊어졌습니다.",
                          country);
    }
    if (n < 0 || (size_t)n >= len) {
        snprintf(out, len, "%s", action); /* only a country far too long gets here */
    }
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
    pthread_mutex_unlock(&s->mu);
    /* A redelivery was answered above; ending an ended session again would change nothing. */
    /* The player's language: the event's when it names one (guard's per-player language), else
     * the session's (the game client's, given when it opened): why_ko is for the sessions not in
     * English, why_en for those in English. */
    char why_ko[512], why_en[512];
    const char *lang = json_string_value(json_object_get(b, "lang"));
    bool all_en = lang && strcmp(lang, "en") == 0;
    kick_message(b, action, all_en, why_ko, sizeof(why_ko));
    kick_message(b, action, !lang || all_en, why_en, sizeof(why_en));
    json_t *ended = sessions_end(s->sessions, json_string_value(json_object_get(b, "account_id")),
                                 json_string_value(json_object_get(b, "session_id")),
                                 strcmp(action, "lock") == 0, action, why_ko, why_en);
    json_object_set(b, "ended_sessions", ended);
    stamp(b);
    pthread_mutex_lock(&s->mu);
    push(s, s->kicks, b);
    pthread_mutex_unlock(&s->mu);
    http_respond_json(ex, 200, json_pack("{s:b, s:o}", "kicked", 1, "ended_sessions", ended));
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
    stamp(b);
    json_t *reached = NULL;
    if (list == s->messages) { /* an in-game message: shown in the player's live sessions */
        reached = sessions_deliver(s->sessions, json_string_value(json_object_get(b, need)),
                                   json_string_value(json_object_get(b, "text")));
        json_object_set(b, "sessions", reached);
    }
    pthread_mutex_lock(&s->mu);
    push(s, list, b);
    pthread_mutex_unlock(&s->mu);
    http_respond_json(ex, 200, json_pack("{s:b, s:o*}", "accepted", 1, "sessions", reached));
}

static void handle_message(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    record(ex, s, s->messages, "account_id");
}

/* NULL when o is a valid {"session_id", "account_id", "server"}, else why not. */
static const char *session_invalid(json_t *o)
{
    const char *sid = json_string_value(json_object_get(o, "session_id"));
    const char *account = json_string_value(json_object_get(o, "account_id"));
    json_t *server = json_object_get(o, "server");
    json_t *lang = json_object_get(o, "lang");
    lang = json_is_null(lang) ? NULL : lang;
    server = json_is_null(server) ? NULL : server;
    if (!json_is_object(o) || !sid || !*sid || strlen(sid) > 256 || !account || !*account ||
        strlen(account) > 128 || (server && !json_is_string(server)) ||
        (lang && (!json_is_string(lang) || (strcmp(json_string_value(lang), "ko") != 0 &&
                                            strcmp(json_string_value(lang), "en") != 0)))) {
        return "each session needs \"session_id\" (1-256 chars) and \"account_id\" (1-128 "
               "chars); \"server\" is a string, \"lang\" ko or en";
    }
    return NULL;
}

/* Opens the sessions of the body (one object or an array: all valid, or none opened): 201
 * {"sessions": [...]}. Opening an open session again is answered the same (a retried open). */
static void handle_open_sessions(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    if (!is_admin(s, ex)) {
        return;
    }
    size_t len = 0;
    const char *body = http_body(ex, &len);
    json_error_t jerr;
    json_t *b = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(b) && !json_is_array(b)) {
        json_decref(b);
        http_respond_error(ex, 400, "bad_request", NULL,
                           "the body must be a JSON object or an array of them");
        return;
    }
    if (json_is_object(b)) {
        json_t *one = json_pack("[O]", b);
        json_decref(b);
        b = one;
    }
    const char *bad = json_array_size(b) == 0 ? "no session given" : NULL;
    for (size_t i = 0; !bad && i < json_array_size(b); i++) {
        bad = session_invalid(json_array_get(b, i));
    }
    if (bad) {
        json_decref(b);
        http_respond_error(ex, 422, "invalid_session", NULL, "%s", bad);
        return;
    }
    json_t *out = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(b, i, o)
    {
        json_array_append_new(
            out, sessions_open(s->sessions, json_string_value(json_object_get(o, "session_id")),
                               json_string_value(json_object_get(o, "account_id")),
                               json_string_value(json_object_get(o, "server")),
                               json_string_value(json_object_get(o, "lang"))));
    }
    json_decref(b);
    http_respond_json(ex, 201, json_pack("{s:o}", "sessions", out));
}

static void handle_sessions(struct http_exchange *ex, void *arg)
{
    struct sim *s = arg;
    if (!is_admin(s, ex)) {
        return;
    }
    http_respond_json(ex, 200, sessions_list(s->sessions, http_query(ex, "account_id")));
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
    sessions_clear(s->sessions);
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
    s->sessions = sessions_new(s->keep);
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
    http_server_route(srv, "POST", "/v1/sessions", handle_open_sessions, s, 1 << 20);
    http_server_route(srv, "GET", "/v1/sessions", handle_sessions, s, 0);
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
    sessions_free(s->sessions);
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
