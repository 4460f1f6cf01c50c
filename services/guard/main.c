/* guard - per-account security policy applied to logins from abroad.
 *
 * Bus delivery (route `guard`, streaming): POST /v1/deliveries/login.checked. A login from a
 * country that is neither a home country (config) nor allowed by the account (optionally until a
 * date, for travel) triggers the account's policy: notify, kick, block_abroad or lock. The answer
 * is the account.action event (200), or 204 when the login needs nothing; a batched delivery
 * (delivery.h) answers the array of those events (null for a 204). Decisions are stored per
 * (account_id, login_id), so a redelivered login gets the same answer and never a second lock or
 * code. The unlock code of a lock is drawn from the CSPRNG once; guard keeps a salted SHA-256 of
 * it, and the event carries it only sealed for notify (seal.h, "sealed_code"), which is how the
 * decision is stored too: a redelivery re-emits the very code the player was sent. No topic, dead
 * letter, HTTP answer or log line holds a code in the clear.
 *
 * Player API (player token of that account): PUT /v1/accounts/{id}/policy, PUT .../contacts
 * (a new contact waits for POST .../contacts/confirm with the code sent to it), GET .../policy,
 * POST .../unlock {"code"} (attempts limited, codes expire). While the account is locked its
 * contacts cannot change and its policy can only get stricter (423); notify and lock need a
 * verified channel (422). Every change is audited and told to the player, through the outbox:
 * messages written in the change's transaction, published by the relay on the main thread to
 * the notification topic (outbox_flush).
 * Login servers: GET /v1/accounts/{id}/status?ip= with a service token (status_tokens), answering
 * admit/reason from guard's own GeoIP lookup; served from an in-memory cache (write-through:
 * every change is committed to PostgreSQL first, then the cache entry is dropped and reloaded).
 * Staff: POST /v1/support/accounts/{id}/unlock {"reason"}, GET /v1/support/audit?account_id=,
 * and for the support console GET /v1/support/accounts?prefix= (find), .../accounts/{id} (details)
 * and .../accounts/{id}/locks (lock history, guard.lock_events, written in the transaction of each
 * lock and unlock). The console's static files are served at /support/ (web.dir), with CORS for
 * the player page's origin (http.cors_origins). Tables live in the `guard` schema (sql/guard/). */
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "app.h"
#include "auth.h"
#include "crypto.h"
#include "db.h"
#include "delivery.h"
#include "geo.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "seal.h"
#include "http/webpage.h"

#define ID_MAX 128
#define CACHE_BUCKETS 65536u
#define MAX_ALLOWED 64

/* SHA-256 of the development status token "dev-status-token" (docs/services/guard.md). */
#define GUARD_DEV_STATUS_TOKENS                                                                    \
    "dev-login-servers:16c99ebb2810c6df9c889c569c0954f906ef282f9ac5b341b5a1288f7ad7b965"
/* guard's development producer token for the notification topic (config/bus/product.json). */
#define GUARD_DEV_PUBLISHER_TOKEN "dev-only-guard-producer-token"
#define STATUS_CLIENTS_MAX 32
#define STATUS_CLIENT_NAME_MAX 64

static const struct config_def GUARD_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8103", 0, 256, 0, NULL, "HTTP listen address"},
    {"database_url", CONFIG_STRING, "postgresql://bus@127.0.0.1:55432/bus", 0, 4096, CONFIG_SECRET,
     "DATABASE_URL", "PostgreSQL connection URL"},
    {"db_pool", CONFIG_INT, "6", 1, 100, 0, NULL, "Database connections"},
    {"migrations_dir", CONFIG_STRING, "sql/guard", 0, 4096, 0, NULL, "Migrations applied at start"},
    {"auth_secret", CONFIG_STRING, AUTH_DEV_SECRET, 1, 4096, CONFIG_KEY, "AUTH_SECRET",
     "HS256 secret of player and staff tokens (the default is for development only)"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"seal_keys", CONFIG_STRING, SEAL_DEV_KEYS, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     "CODE_SEAL_KEYS",
     "Keys sealing the codes guard sends through notify, kid:secret[,kid:secret] (the first "
     "seals; notify holds the same ring; the default is for development only)"},
    {"status_tokens", CONFIG_STRING, GUARD_DEV_STATUS_TOKENS, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     NULL,
     "Service tokens of the status API, name:sha256hex[,name:sha256hex] (SHA-256 of each "
     "client's bearer token; the default holds the development token dev-status-token)"},
    {"geoip_db", CONFIG_STRING, "var/geoip/geo-whois-asn-country.mmdb", 1, 4096, 0, NULL,
     "MaxMind-format database giving the status API the country of ?ip= (as ipcheck's)"},
    {"geoip_reload_check_ms", CONFIG_INT, "5000", 50, 3600000, 0, NULL,
     "How often the GeoIP database file is checked for replacement"},
    {"home_countries", CONFIG_STRING, "KR", 0, 1024, 0, NULL,
     "Comma-separated ISO alpha-2 countries that never trigger a policy"},
    {"default_policy", CONFIG_STRING, "none", 0, 32, 0, NULL,
     "Policy of accounts that never set one (none|notify|kick|block_abroad|lock)"},
    {"ignore_unknown_country", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "Logins whose country is unknown (ZZ: private or unlisted address) trigger nothing"},
    {"publisher_url", CONFIG_STRING, "http://127.0.0.1:8080", 1, 4096, 0, NULL,
     "The bus's publisher: guard's own messages (contact codes, notices of changes and staff "
     "unlocks) go to its notification topic"},
    {"publisher_token", CONFIG_STRING, GUARD_DEV_PUBLISHER_TOKEN, 1, 4096,
     CONFIG_SECRET | CONFIG_KEY, NULL,
     "guard's producer token for the notification topic (the default is the development token "
     "of config/bus/product.json)"},
    {"outbox_interval_ms", CONFIG_INT, "200", 10, 60000, 0, NULL,
     "How often queued messages are published"},
    {"contact_code_ttl_s", CONFIG_INT, "900", 30, 604800, 0, NULL,
     "How long the code confirming a new email or phone is valid"},
    {"code_ttl_s", CONFIG_INT, "900", 30, 604800, 0, NULL, "How long an unlock code is valid"},
    {"code_attempts", CONFIG_INT, "5", 1, 100, 0, NULL, "Wrong codes before the code is void"},
    {"cache_max", CONFIG_INT, "1000000", 1, 100000000, 0, NULL,
     "Accounts kept in the status cache (the cache is emptied when full)"},
    {"threads", CONFIG_INT, "4", 1, 64, 0, NULL, "HTTP worker threads"},
    {"http.cors_origins", CONFIG_STRING, "http://127.0.0.1:8102,http://localhost:8102", 0, 4096, 0,
     NULL,
     "Comma-separated origins whose pages may call this API from a browser (the player page at "
     "history); also where the support console may connect"},
    WEBPAGE_CONFIG_DEFS("services/guard/web/support", "the support console", "/support/"),
    {"web.history_url", CONFIG_STRING, "http://127.0.0.1:8102", 0, 256, 0, NULL,
     "Base URL of history as the staff's browser reaches it (given to the console in "
     "/support/config.json; list its origin in history's http.cors_origins and in this "
     "http.cors_origins)"},
    CONFIG_DEF_END,
};

static const char *const POLICIES[] = {"none", "notify", "kick", "block_abroad", "lock"};

/* ---- status cache ---- */

struct entry {
    struct entry *next;
    char *status;      /* the status JSON answered to login servers */
    long long expires; /* wall-clock s when an allowed country's "until" passes; 0 = never */
    char id[];
};

/* A client of the status API (a login server fleet): its name and its token's SHA-256 (hex). */
struct status_client {
    char name[STATUS_CLIENT_NAME_MAX + 1];
    char sha256[CRYPTO_SHA256_HEX_LEN + 1];
};

struct guard {
    struct db *db;
    struct geo *geo; /* country of the status API's ?ip= */
    struct status_client clients[STATUS_CLIENTS_MAX];
    int n_clients;
    const struct config *cfg;
    const char *auth_secret, *bus_secret;
    struct seal_keys *seal; /* seals unlock codes for notify */
    char home[32][3];
    int n_home;
    pthread_rwlock_t mu;
    struct entry **buckets;
    long long n_cached;
    struct metric *m_actions, *m_status_hit, *m_status_miss;
    struct http_client *http; /* the outbox relay's, to the publisher (main thread only) */
    struct metric *m_outbox_sent, *m_outbox_dropped;
    /* the relay's state while the publisher fails (main thread only): no attempt before
     * outbox_retry_ms, the wait doubling up to 5 s; one warning per failing streak */
    long long outbox_retry_ms, outbox_wait_ms;
};

static unsigned hash_id(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h % CACHE_BUCKETS;
}

static void cache_clear_locked(struct guard *g)
{
    for (unsigned i = 0; i < CACHE_BUCKETS; i++) {
        struct entry *e = g->buckets[i];
        while (e) {
            struct entry *n = e->next;
            free(e->status);
            free(e);
            e = n;
        }
        g->buckets[i] = NULL;
    }
    g->n_cached = 0;
}

static void cache_drop(struct guard *g, const char *id)
{
    pthread_rwlock_wrlock(&g->mu);
    struct entry **pp = &g->buckets[hash_id(id)];
    while (*pp) {
        if (strcmp((*pp)->id, id) == 0) {
            struct entry *e = *pp;
            *pp = e->next;
            free(e->status);
            free(e);
            g->n_cached--;
            break;
        }
        pp = &(*pp)->next;
    }
    pthread_rwlock_unlock(&g->mu);
}

/* ---- helpers ---- */

static int valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int policy_index(const char *p)
{
    for (int i = 0; p && i < 5; i++) {
        if (strcmp(p, POLICIES[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static int valid_country(const char *c)
{
    return c && strlen(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z';
}

static void db_fail(struct http_exchange *ex, int rc, const char *err)
{
    if (rc == DB_EUNAVAILABLE) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, "unavailable", NULL, "database unavailable; retry later");
    } else {
        log_error("database error: %s", err);
        http_respond_error(ex, 500, "internal", NULL, "database error");
    }
}

static const char *row_str(json_t *rows, size_t i, const char *col)
{
    return json_string_value(json_object_get(json_array_get(rows, i), col));
}

/* The account's settings row and its current allowed countries. acct and allowed are owned by
 * the caller. */
static int load_account(struct guard *g, const char *id, json_t **acct, json_t **allowed, char *err,
                        size_t err_len)
{
    const char *p[] = {id};
    *acct = NULL;
    *allowed = NULL;
    int rc = db_exec(g->db,
                     "SELECT policy, channels, email, phone, locked::text AS locked "
                     "FROM guard.accounts WHERE account_id = $1",
                     p, 1, acct, NULL, err, err_len);
    if (rc == DB_OK) {
        rc =
            db_exec(g->db,
                    "SELECT country, to_char(until AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS until, "
                    "coalesce(extract(epoch FROM until)::bigint, 0)::text AS until_s "
                    "FROM guard.allowed WHERE account_id = $1 AND (until IS NULL OR until > now()) "
                    "ORDER BY country",
                    p, 1, allowed, NULL, err, err_len);
    }
    if (rc != DB_OK) {
        json_decref(*acct);
        json_decref(*allowed);
        *acct = *allowed = NULL;
    }
    return rc;
}

static const char *acct_policy(struct guard *g, json_t *acct)
{
    const char *p = row_str(acct, 0, "policy");
    return p ? p : config_str(g->cfg, "default_policy");
}

static json_t *allowed_json(json_t *allowed, long long *expires)
{
    json_t *a = json_array();
    *expires = 0;
    for (size_t i = 0; i < json_array_size(allowed); i++) {
        const char *until = row_str(allowed, i, "until");
        long long s = atoll(row_str(allowed, i, "until_s") ? row_str(allowed, i, "until_s") : "0");
        if (s > 0 && (*expires == 0 || s < *expires)) {
            *expires = s;
        }
        json_array_append_new(a, json_pack("{s:s, s:o}", "country", row_str(allowed, i, "country"),
                                           "until", until ? json_string(until) : json_null()));
    }
    return a;
}

static json_t *home_json(struct guard *g)
{
    json_t *h = json_array();
    for (int i = 0; i < g->n_home; i++) {
        json_array_append_new(h, json_string(g->home[i]));
    }
    return h;
}

/* ---- codes ---- */

/* A new one-time code (unlock or contact confirmation): 8 decimal digits, uniform, from the
 * system CSPRNG (nothing a caller chose, such as the login's ce-id, goes into it). */
static void new_code(char out[9])
{
    uint32_t v;
    do { /* 42 * 10^8 <= 2^32: rejecting the rest leaves every code equally likely */
        random_bytes(&v, sizeof(v));
    } while (v >= 4200000000u);
    snprintf(out, 9, "%08u", (unsigned)(v % 100000000u));
}

/* The context a code is sealed for: the account, and what the code is for. */
static void seal_context(const char *purpose, const char *account, char *out, size_t len)
{
    snprintf(out, len, "%s\n%s", purpose, account);
}

static void code_hash(const char *salt, const char *code, char out[CRYPTO_SHA256_HEX_LEN + 1])
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s:%s", salt, code);
    crypto_sha256_hex(buf, (size_t)n, out);
}

/* ---- GET /v1/accounts/{id}/status ---- */

/* The account's status JSON (heap, caller frees) from the cache, or loaded and cached. Returns
 * DB_OK, or a db error with err filled. */
static int status_text(struct guard *g, const char *id, char **out, char *err, size_t err_len)
{
    long long now = (long long)time(NULL);
    *out = NULL;
    pthread_rwlock_rdlock(&g->mu);
    for (struct entry *e = g->buckets[hash_id(id)]; e; e = e->next) {
        if (strcmp(e->id, id) == 0 && (e->expires == 0 || e->expires > now)) {
            *out = xstrdup(e->status);
            break;
        }
    }
    pthread_rwlock_unlock(&g->mu);
    if (*out) {
        metric_inc(g->m_status_hit);
        return DB_OK;
    }
    metric_inc(g->m_status_miss);

    json_t *acct, *allowed;
    int rc = load_account(g, id, &acct, &allowed, err, err_len);
    if (rc != DB_OK) {
        return rc;
    }
    long long expires;
    const char *policy = acct_policy(g, acct);
    const char *locked = row_str(acct, 0, "locked");
    json_t *st = json_pack("{s:s, s:b, s:b, s:s, s:o, s:o}", "account_id", id, "locked",
                           locked && strcmp(locked, "true") == 0, "blocked_abroad",
                           strcmp(policy, "block_abroad") == 0, "policy", policy, "home_countries",
                           home_json(g), "allowed_countries", allowed_json(allowed, &expires));
    json_decref(acct);
    json_decref(allowed);
    char *text = json_dumps(st, JSON_COMPACT);
    json_decref(st);

    size_t idlen = strlen(id);
    struct entry *e = xmalloc(sizeof(*e) + idlen + 1);
    memcpy(e->id, id, idlen + 1);
    e->status = xstrdup(text);
    e->expires = expires;
    pthread_rwlock_wrlock(&g->mu);
    if (g->n_cached >= config_int(g->cfg, "cache_max")) {
        cache_clear_locked(g);
    }
    struct entry **pp = &g->buckets[hash_id(id)];
    while (*pp && strcmp((*pp)->id, id) != 0) {
        pp = &(*pp)->next;
    }
    if (*pp) { /* another thread loaded it meanwhile: replace (both read committed state) */
        struct entry *old = *pp;
        e->next = old->next;
        *pp = e;
        free(old->status);
        free(old);
    } else {
        e->next = NULL;
        *pp = e;
        g->n_cached++;
    }
    pthread_rwlock_unlock(&g->mu);
    *out = text;
    return DB_OK;
}

/* Whether a login from country would be admitted now, by the status st (the cached JSON, parsed):
 * sets "admit", "reason" (null, "locked" or "blocked_abroad") and "retry_after" (null: the answer
 * changes only by the player's or support's action, not by waiting). */
static void status_admit(struct guard *g, json_t *st, const char *country)
{
    const char *reason = NULL;
    if (json_is_true(json_object_get(st, "locked"))) {
        reason = "locked";
    } else if (json_is_true(json_object_get(st, "blocked_abroad"))) {
        int ok = strcmp(country, GEO_UNKNOWN) == 0 && config_bool(g->cfg, "ignore_unknown_country");
        for (int i = 0; !ok && i < g->n_home; i++) {
            ok = strcmp(country, g->home[i]) == 0;
        }
        json_t *allowed = json_object_get(st, "allowed_countries");
        for (size_t i = 0; !ok && i < json_array_size(allowed); i++) {
            const char *c =
                json_string_value(json_object_get(json_array_get(allowed, i), "country"));
            ok = c && strcmp(c, country) == 0; /* expired ones are not cached (entry expires) */
        }
        reason = ok ? NULL : "blocked_abroad";
    }
    json_object_set_new(st, "admit", json_boolean(reason == NULL));
    json_object_set_new(st, "reason", reason ? json_string(reason) : json_null());
    json_object_set_new(st, "retry_after", json_null());
}

/* The status API's caller: a status client (service token), or a player of that account or
 * staff (JWT). Answers 401 for a missing, malformed or unknown token, 403 for a valid token
 * without the right to this account; returns 1 for a status client, 0 for a player or staff,
 * -1 when answered. */
static int authorize_status(struct guard *g, struct http_exchange *ex, const char *id)
{
    const char *tok = http_bearer(ex);
    if (!tok || !*tok || strlen(tok) > 4096) {
        http_respond_error(ex, 401, "unauthorized", NULL, "a valid bearer token is required");
        return -1;
    }
    char h[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex(tok, strlen(tok), h);
    int known = 0;
    for (int i = 0; i < g->n_clients; i++) { /* every one compared: the time tells nothing */
        known |=
            crypto_equal(h, CRYPTO_SHA256_HEX_LEN, g->clients[i].sha256, CRYPTO_SHA256_HEX_LEN);
    }
    if (known) {
        return 1;
    }
    struct auth_identity who;
    char err[256];
    if (auth_verify(g->auth_secret, tok, &who, err, sizeof(err)) != 0) {
        http_respond_error(ex, 401, "unauthorized", NULL, "a valid bearer token is required");
        return -1;
    }
    if (who.role == AUTH_STAFF || (who.role == AUTH_PLAYER && strcmp(who.subject, id) == 0)) {
        return 0;
    }
    http_respond_error(ex, 403, "forbidden", NULL, "this token may not read this account");
    return -1;
}

/* GET /v1/accounts/{id}/status[?ip=ADDR]: the account's state; with ip, whether a login from
 * there would be admitted now (for login servers, which need no GeoIP database of their own). */
static void handle_status(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    const char *id = http_param(ex, 0);
    if (!valid_id(id)) {
        http_respond_error(ex, 400, "bad_account", NULL, "invalid account id");
        return;
    }
    int caller = authorize_status(g, ex, id);
    if (caller < 0) {
        return;
    }
    const char *ip = http_query(ex, "ip");
    char country[3];
    if (ip && (strlen(ip) > 64 || geo_country(g->geo, ip, country) != 0)) {
        http_respond_error(ex, 400, "bad_ip", NULL, "ip must be an IPv4 or IPv6 address");
        return;
    }
    char *text = NULL, err[512];
    int rc = status_text(g, id, &text, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    if (!ip && caller == 0) { /* the player's or staff's view, as cached */
        http_respond(ex, 200, NULL, text, strlen(text));
        free(text);
        return;
    }
    json_error_t jerr;
    json_t *st = json_loads(text, 0, &jerr);
    free(text);
    if (!st) {
        http_respond_error(ex, 500, "internal", NULL, "status unreadable");
        return;
    }
    if (ip) {
        json_object_set_new(st, "ip", json_string(ip));
        json_object_set_new(st, "country", json_string(country));
        status_admit(g, st, country);
    }
    if (caller == 1) { /* a login server needs the verdict, not the player's settings or trips */
        json_object_del(st, "policy");
        json_object_del(st, "home_countries");
        json_object_del(st, "allowed_countries");
    }
    http_respond_json(ex, 200, st);
}

/* Parses status_tokens ("name:sha256hex[,...]") into g->clients. */
static int parse_status_clients(struct guard *g, const char *spec)
{
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t name_len = colon ? (size_t)(colon - p) : 0;
        size_t hash_len = colon ? len - name_len - 1 : 0;
        if (!colon || name_len == 0 || name_len > STATUS_CLIENT_NAME_MAX ||
            hash_len != CRYPTO_SHA256_HEX_LEN || strspn(colon + 1, "0123456789abcdef") < hash_len ||
            g->n_clients == STATUS_CLIENTS_MAX) {
            log_error("status_tokens: entry %d is not name:<64 lowercase hex digits> (at most %d)",
                      g->n_clients + 1, STATUS_CLIENTS_MAX);
            return -1;
        }
        struct status_client *c = &g->clients[g->n_clients++];
        memcpy(c->name, p, name_len);
        memcpy(c->sha256, colon + 1, CRYPTO_SHA256_HEX_LEN);
        p = end ? end + 1 : p + len;
    }
    return 0;
}

/* ---- tokens ---- */

/* Player token of that account (or staff when staff_ok). Answers 401/403 itself. */
static int authorize(struct guard *g, struct http_exchange *ex, const char *id, int staff_ok,
                     struct auth_identity *who)
{
    const char *tok = http_bearer(ex);
    char err[256];
    if (!tok || auth_verify(g->auth_secret, tok, who, err, sizeof(err)) != 0) {
        http_respond_error(ex, 401, "unauthorized", NULL, "a valid bearer token is required");
        return -1;
    }
    if (who->role == AUTH_STAFF && (staff_ok || !id)) {
        return 0;
    }
    if (id && who->role == AUTH_PLAYER && strcmp(who->subject, id) == 0) {
        return 0;
    }
    http_respond_error(ex, 403, "forbidden", NULL, "this token may not act on this account");
    return -1;
}

/* Who may call an account route. */
enum caller { CALLER_PLAYER, CALLER_PLAYER_OR_STAFF, CALLER_STAFF };

/* The {id} of an /accounts/{id}/... route, checked before anything else: a valid id (else 400
 * bad_account), then a token of that player or of staff as `caller` says (401/403 by
 * authorize). Returns the id (borrowed from the exchange), or NULL when answered. */
static const char *account_param(struct guard *g, struct http_exchange *ex, enum caller caller,
                                 struct auth_identity *who)
{
    const char *id = http_param(ex, 0);
    if (!valid_id(id)) {
        http_respond_error(ex, 400, "bad_account", NULL, "invalid account id");
        return NULL;
    }
    const char *subject = caller == CALLER_STAFF ? NULL : id;
    if (authorize(g, ex, subject, caller != CALLER_PLAYER, who) != 0) {
        return NULL;
    }
    return id;
}

static json_t *body_object(struct http_exchange *ex)
{
    size_t len = 0;
    const char *body = http_body(ex, &len);
    json_error_t jerr;
    json_t *b = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(b)) {
        json_decref(b);
        http_respond_error(ex, 400, "bad_request", NULL, "the body must be a JSON object");
        return NULL;
    }
    return b;
}

/* ---- messages guard sends on its own: the outbox ----
 *
 * Contact codes, notices of settings changes and of staff unlocks are notification events
 * (config/schema/events/notification.json) that guard writes to guard.outbox in the
 * transaction of the change they tell of, so a change is never committed without its message
 * nor a message sent for a change rolled back. The relay (outbox_flush, on the main thread)
 * POSTs them to the publisher's notification topic with guard's producer token and deletes each
 * row once the publisher acknowledged it (202). A row is published at least once: the event id
 * is also the event's dedupe_key, so notify sends a republished row once. */

struct outbox_msg {
    char id[ID_UUID_LEN + 1];
    char *text; /* the event (heap) */
    const char *params[2];
};

/* Builds a notification event of kind to the given channels (stolen) and contacts, with params
 * (stolen, may be NULL), and the statement that queues it (valid while m lives). */
static void outbox_msg_init(struct outbox_msg *m, struct db_stmt *st, const char *account,
                            const char *kind, json_t *channels, const char *email,
                            const char *phone, json_t *params)
{
    id_uuid7(m->id);
    json_t *contacts = json_object();
    if (email) {
        json_object_set_new(contacts, "email", json_string(email));
    }
    if (phone) {
        json_object_set_new(contacts, "phone", json_string(phone));
    }
    json_t *ev = json_pack("{s:s, s:s, s:o, s:o, s:o, s:s}", "account_id", account, "kind", kind,
                           "channels", channels, "contacts", contacts, "params",
                           params ? params : json_object(), "dedupe_key", m->id);
    m->text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    m->params[0] = m->id;
    m->params[1] = m->text;
    *st = (struct db_stmt){"INSERT INTO guard.outbox (event_id, event) VALUES ($1, $2)", m->params,
                           2};
}

static void outbox_msg_release(struct outbox_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].text);
        m[i].text = NULL;
    }
}

/* The channels that reach the player now: in-game, and the contacts in effect. */
static json_t *player_channels(const char *email, const char *phone)
{
    json_t *c = json_pack("[s]", "ingame");
    if (email) {
        json_array_append_new(c, json_string("email"));
    }
    if (phone) {
        json_array_append_new(c, json_string("sms"));
    }
    return c;
}

/* Publishes queued messages, oldest first, until the publisher fails or none is left. While the
 * publisher fails, rounds are spaced out (up to 5 s) and the failure is logged once. */
static void outbox_flush(struct guard *g)
{
    json_t *rows = NULL;
    char err[512];
    if (app_now_ms() < g->outbox_retry_ms) {
        return;
    }
    if (db_exec(g->db,
                "SELECT id::text AS id, event_id, event FROM guard.outbox ORDER BY id "
                "LIMIT 100",
                NULL, 0, &rows, NULL, err, sizeof(err)) != DB_OK) {
        json_decref(rows); /* the database is away: the next round tries again */
        return;
    }
    char url[4200], auth[4200];
    snprintf(url, sizeof(url), "%s/v1/topics/notification/events",
             config_str(g->cfg, "publisher_url"));
    snprintf(auth, sizeof(auth), "Bearer %s", config_str(g->cfg, "publisher_token"));
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const char *event_id = row_str(rows, i, "event_id"), *event = row_str(rows, i, "event");
        struct http_header_kv h[] = {
            {"Content-Type", "application/json"}, {"Authorization", auth}, {"ce-id", event_id}};
        struct http_result r;
        memset(&r, 0, sizeof(r));
        int rc =
            http_client_request(g->http, "POST", url, h, 3, event, strlen(event), 5000, 65536, &r);
        int status = rc == 0 ? r.status : 0;
        /* A 4xx other than a refused token or a throttle would come back every round: such a
         * message can never be published, so it is dropped, loudly. */
        int is_dead = status >= 400 && status < 500 && status != 401 && status != 403 &&
                      status != 408 && status != 429;
        if (status != 202 && !is_dead) {
            if (g->outbox_wait_ms == 0) {
                log_warn("publishing message %s failed (%d %s): messages wait and are retried",
                         event_id, status, status ? "" : r.error);
            }
            http_result_release(&r);
            g->outbox_wait_ms = g->outbox_wait_ms ? g->outbox_wait_ms * 2 : 100;
            if (g->outbox_wait_ms > 5000) {
                g->outbox_wait_ms = 5000;
            }
            g->outbox_retry_ms = app_now_ms() + g->outbox_wait_ms;
            break;
        }
        http_result_release(&r);
        if (status == 202 && g->outbox_wait_ms) {
            log_info("publishing messages again");
            g->outbox_wait_ms = 0;
        }
        if (is_dead) {
            log_error("message %s refused for good by the publisher (%d): dropped", event_id,
                      status);
        }
        const char *p[] = {row_str(rows, i, "id")};
        metric_inc(status == 202 ? g->m_outbox_sent : g->m_outbox_dropped);
        if (db_exec(g->db, "DELETE FROM guard.outbox WHERE id = $1::bigint", p, 1, NULL, NULL, err,
                    sizeof(err)) != DB_OK) {
            break; /* published again next round: notify dedupes it */
        }
    }
    json_decref(rows);
}

/* The statement of a player's own entry in the audit trail support sees. */
static void audit_player(struct db_stmt *st, const char *const p[3])
{
    *st = (struct db_stmt){"INSERT INTO guard.audit (actor, action, account_id, reason) "
                           "VALUES ('player', $2, $1, $3)",
                           p, 3};
}

/* The statement that refuses the transaction when the account is locked (sql/guard/004). */
static void assert_unlocked(struct db_stmt *st, const char *const *p_id)
{
    *st = (struct db_stmt){"SELECT guard.assert_unlocked($1)", p_id, 1};
}

static bool is_account_locked_error(int rc, const char *err)
{
    return rc == DB_EQUERY && strstr(err, "account_locked") != NULL;
}

static void respond_locked(struct http_exchange *ex, const char *what)
{
    http_respond_error(ex, 423, "locked", NULL,
                       "the account is locked: %s until it is unlocked with the code sent to the "
                       "player or by support",
                       what);
}

/* For a policy that must reach the player (notify; lock, whose unlock code must reach someone):
 * NULL when one of channels is verified (in-game always is: it reaches the account itself;
 * email and sms once a contact is in effect), else the chosen channels that are not (a JSON
 * array, caller owns). */
static json_t *unreachable_channels(const char *action, json_t *channels, const char *email,
                                    const char *phone)
{
    if (strcmp(action, "notify") != 0 && strcmp(action, "lock") != 0) {
        return NULL;
    }
    json_t *missing = json_array();
    for (size_t i = 0; i < json_array_size(channels); i++) {
        const char *c = json_string_value(json_array_get(channels, i));
        if (strcmp(c, "ingame") == 0 || (strcmp(c, "email") == 0 && email) ||
            (strcmp(c, "sms") == 0 && phone)) {
            json_decref(missing);
            return NULL;
        }
        json_array_append_new(missing, json_string(c));
    }
    if (json_array_size(missing) == 0) {
        json_array_append_new(missing, json_string("ingame"));
    }
    return missing;
}

static void respond_unreachable(struct http_exchange *ex, const char *action, json_t *missing)
{
    char *names = json_dumps(missing, JSON_COMPACT);
    http_respond_error(ex, 422, "channel_unverified", json_pack("{s:o}", "missing", missing),
                       "policy %s must reach the player, and none of its channels does: %s %s "
                       "(confirm a contact first, or add ingame)",
                       action, names,
                       json_array_size(missing) > 1 ? "are not verified" : "is not verified");
    free(names);
}

/* A contact shown to someone else (the old contact told of a change): enough to recognise it,
 * not enough to harvest it. */
static void contact_masked(const char *v, char *out, size_t len)
{
    const char *at = strchr(v, '@');
    size_t n = strlen(v);
    if (at) {
        snprintf(out, len, "%c***%s", v[0], at);
    } else {
        snprintf(out, len, "***%s", n > 2 ? v + n - 2 : v);
    }
}

/* ---- policy & contacts ---- */

static void handle_get_policy(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_PLAYER_OR_STAFF, &who);
    if (!id) {
        return;
    }
    json_t *acct, *allowed;
    char err[512];
    int rc = load_account(g, id, &acct, &allowed, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    long long exp;
    const char *ch = row_str(acct, 0, "channels");
    json_error_t jerr;
    json_t *channels = json_loads(ch ? ch : "[\"ingame\"]", 0, &jerr);
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:{s:o, s:o}}", "account_id", id, "action",
                            acct_policy(g, acct), "channels", channels ? channels : json_array(),
                            "allowed_countries", allowed_json(allowed, &exp), "contacts", "email",
                            email ? json_string(email) : json_null(), "phone",
                            phone ? json_string(phone) : json_null());
    json_decref(acct);
    json_decref(allowed);
    http_respond_json(ex, 200, out);
}

/* True when the new settings protect less than the current ones: a milder action, a channel
 * dropped, a country allowed that was not, or allowed longer. */
static bool policy_weakens(struct guard *g, json_t *acct, json_t *cur_allowed, const char *action,
                           json_t *channels, const char *const *countries,
                           const char *const *untils, size_t n_allowed)
{
    if (policy_index(action) < policy_index(acct_policy(g, acct))) {
        return true;
    }
    const char *ch = row_str(acct, 0, "channels");
    json_error_t jerr;
    json_t *cur = json_loads(ch ? ch : "[\"ingame\"]", 0, &jerr);
    bool weak = false;
    for (size_t i = 0; !weak && i < json_array_size(cur); i++) {
        const char *c = json_string_value(json_array_get(cur, i));
        bool kept = false;
        for (size_t j = 0; c && j < json_array_size(channels); j++) {
            kept = kept || strcmp(c, json_string_value(json_array_get(channels, j))) == 0;
        }
        weak = !kept;
    }
    json_decref(cur);
    for (size_t i = 0; !weak && i < n_allowed; i++) {
        size_t j = 0;
        while (j < json_array_size(cur_allowed) &&
               strcmp(row_str(cur_allowed, j, "country"), countries[i]) != 0) {
            j++;
        }
        if (j == json_array_size(cur_allowed)) {
            weak = true; /* newly allowed */
            continue;
        }
        const char *was = row_str(cur_allowed, j, "until"); /* YYYY-MM-DDTHH:MM:SSZ or NULL */
        if (was && (!untils[i] || strcmp(untils[i], was) != 0)) {
            /* later, for good, or in another notation: only an earlier end in the same notation
             * counts as stricter */
            weak = !untils[i] || strlen(untils[i]) != strlen(was) || strcmp(untils[i], was) > 0;
        }
    }
    return weak;
}

static void handle_put_policy(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_PLAYER, &who);
    if (!id) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    const char *action = json_string_value(json_object_get(b, "action"));
    json_t *channels = json_object_get(b, "channels");
    json_t *allowed = json_object_get(b, "allowed_countries");
    const char *bad = NULL;
    if (policy_index(action) < 0) {
        bad = "\"action\" must be one of none, notify, kick, block_abroad, lock";
    } else if (channels && !json_is_array(channels)) {
        bad = "\"channels\" must be an array";
    } else if (allowed && !json_is_array(allowed)) {
        bad = "\"allowed_countries\" must be an array";
    } else if (json_array_size(allowed) > MAX_ALLOWED) {
        bad = "too many allowed countries";
    }
    for (size_t i = 0; !bad && i < json_array_size(channels); i++) {
        const char *c = json_string_value(json_array_get(channels, i));
        if (!c || (strcmp(c, "email") && strcmp(c, "sms") && strcmp(c, "ingame"))) {
            bad = "channels are email, sms or ingame";
        }
    }
    /* allowed: "US" or {"country": "US", "until": "2026-12-31T00:00:00Z"} */
    const char *countries[MAX_ALLOWED], *untils[MAX_ALLOWED];
    size_t n_allowed = json_array_size(allowed);
    for (size_t i = 0; !bad && i < n_allowed; i++) {
        json_t *a = json_array_get(allowed, i);
        countries[i] = json_is_string(a) ? json_string_value(a)
                                         : json_string_value(json_object_get(a, "country"));
        untils[i] = json_is_object(a) ? json_string_value(json_object_get(a, "until")) : NULL;
        if (!valid_country(countries[i])) {
            bad = "allowed countries are ISO alpha-2 codes like \"US\"";
        } else if (json_is_object(a) && json_object_get(a, "until") &&
                   !json_is_null(json_object_get(a, "until")) && !untils[i]) {
            bad = "\"until\" must be an RFC 3339 time";
        }
    }
    if (bad) {
        http_respond_error(ex, 400, "bad_request", NULL, "%s", bad);
        json_decref(b);
        return;
    }
    json_t *acct, *cur_allowed;
    char err[512];
    int rc = load_account(g, id, &acct, &cur_allowed, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    json_t *new_channels = channels ? json_incref(channels) : json_pack("[s]", "ingame");
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    const char *locked = row_str(acct, 0, "locked");
    json_t *missing = unreachable_channels(action, new_channels, email, phone);
    bool weakens =
        policy_weakens(g, acct, cur_allowed, action, new_channels, countries, untils, n_allowed);
    if (missing || (weakens && locked && strcmp(locked, "true") == 0)) {
        if (missing) {
            respond_unreachable(ex, action, missing);
        } else {
            respond_locked(ex, "the policy can only be made stricter");
        }
        json_decref(new_channels);
        json_decref(acct);
        json_decref(cur_allowed);
        json_decref(b);
        return;
    }
    char *ch = json_dumps(new_channels, JSON_COMPACT);
    /* the audit entry and the notice say what the settings are now */
    char reason[600];
    size_t rl =
        (size_t)snprintf(reason, sizeof(reason), "policy %s, channels %s, allowed", action, ch);
    for (size_t i = 0; i < n_allowed && rl < sizeof(reason); i++) {
        rl += (size_t)snprintf(reason + rl, sizeof(reason) - rl, " %s%s%s", countries[i],
                               untils[i] ? " until " : "", untils[i] ? untils[i] : "");
    }
    if (n_allowed == 0 && rl < sizeof(reason)) {
        snprintf(reason + rl, sizeof(reason) - rl, " none");
    }
    struct db_stmt st[5 + MAX_ALLOWED];
    struct outbox_msg msg;
    const char *p0[] = {id, action, ch};
    const char *p1[] = {id};
    const char *pa[MAX_ALLOWED][3];
    const char *p_audit[] = {id, "policy_changed", reason};
    size_t n = 0;
    if (weakens) { /* locked meanwhile: refused in the transaction */
        assert_unlocked(&st[n++], p1);
    }
    st[n++] = (struct db_stmt){"INSERT INTO guard.accounts (account_id, policy, channels) "
                               "VALUES ($1, $2, $3) ON CONFLICT (account_id) DO UPDATE SET "
                               "policy = $2, channels = $3, updated_at = now()",
                               p0, 3};
    st[n++] = (struct db_stmt){"DELETE FROM guard.allowed WHERE account_id = $1", p1, 1};
    for (size_t i = 0; i < n_allowed; i++) {
        pa[i][0] = id;
        pa[i][1] = countries[i];
        pa[i][2] = untils[i];
        st[n++] = (struct db_stmt){"INSERT INTO guard.allowed (account_id, country, until) "
                                   "VALUES ($1, $2, $3::timestamptz) ON CONFLICT "
                                   "(account_id, country) DO UPDATE SET until = $3::timestamptz",
                                   pa[i], 3};
    }
    audit_player(&st[n++], p_audit);
    outbox_msg_init(&msg, &st[n++], id, "settings_changed", player_channels(email, phone), email,
                    phone, json_pack("{s:s}", "change", reason));
    rc = db_exec_tx(g->db, st, n, err, sizeof(err));
    outbox_msg_release(&msg, 1);
    free(ch);
    json_decref(new_channels);
    json_decref(acct);
    json_decref(cur_allowed);
    json_decref(b);
    cache_drop(g, id);
    if (is_account_locked_error(rc, err)) {
        respond_locked(ex, "the policy can only be made stricter");
        return;
    }
    if (rc == DB_EQUERY && strstr(err, "timestamp")) {
        http_respond_error(ex, 400, "bad_request", NULL, "\"until\" must be an RFC 3339 time");
        return;
    }
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    handle_get_policy(ex, arg);
}

/* PUT /v1/accounts/{id}/contacts {"email", "phone"}: a string asks for that contact (it takes
 * effect only once confirmed with the code sent to it), null removes it (at once), an absent key
 * or the contact in effect changes nothing. The old contact is told of every change; each is in
 * the audit trail. 202 {"pending": [...]} when a code went out, else 200 with the settings;
 * 423 while the account is locked; 422 when a removal would leave a notify or lock policy with no
 * channel that reaches the player. */
static void handle_put_contacts(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_PLAYER, &who);
    if (!id) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    static const char *const KEYS[2] = {"email", "phone"}, *const CHANNELS[2] = {"email", "sms"};
    const char *want[2];
    bool given[2];
    const char *bad = NULL;
    for (int c = 0; c < 2; c++) {
        json_t *v = json_object_get(b, KEYS[c]);
        given[c] = v != NULL;
        want[c] = json_string_value(v);
        if (v && !json_is_string(v) && !json_is_null(v)) {
            bad = "email and phone are strings, or null to remove one";
        }
    }
    if ((want[0] &&
         (strlen(want[0]) > 320 || !strchr(want[0], '@') || strpbrk(want[0], " \r\n<>"))) ||
        (want[1] && (strlen(want[1]) > 32 || strspn(want[1], "+0123456789 -") != strlen(want[1]) ||
                     strspn(want[1], "+ -") == strlen(want[1])))) {
        bad = "invalid email or phone";
    }
    if (bad) {
        http_respond_error(ex, 400, "bad_request", NULL, "%s", bad);
        json_decref(b);
        return;
    }
    json_t *acct, *allowed;
    char err[512];
    int rc = load_account(g, id, &acct, &allowed, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    const char *cur[2] = {row_str(acct, 0, "email"), row_str(acct, 0, "phone")};
    const char *locked = row_str(acct, 0, "locked");
    const char *after[2] = {cur[0], cur[1]}; /* in effect once this request is done */
    bool is_removal[2] = {false, false}, is_request[2] = {false, false};
    for (int c = 0; c < 2; c++) {
        bool same = want[c] && cur[c] ? strcmp(want[c], cur[c]) == 0 : want[c] == cur[c];
        if (!given[c] || same) {
            continue;
        }
        is_removal[c] = want[c] == NULL;
        is_request[c] = want[c] != NULL;
        if (is_removal[c]) {
            after[c] = NULL;
        }
    }
    if (!is_removal[0] && !is_removal[1] && !is_request[0] && !is_request[1]) {
        json_decref(b);
        json_decref(acct);
        json_decref(allowed);
        handle_get_policy(ex, arg);
        return;
    }
    if (locked && strcmp(locked, "true") == 0) {
        json_decref(b);
        json_decref(acct);
        json_decref(allowed);
        respond_locked(ex, "contacts cannot change");
        return;
    }
    const char *ch_text = row_str(acct, 0, "channels");
    json_error_t jerr;
    json_t *channels = json_loads(ch_text ? ch_text : "[\"ingame\"]", 0, &jerr);
    json_t *missing = unreachable_channels(acct_policy(g, acct), channels, after[0], after[1]);
    json_decref(channels);
    if (missing) {
        respond_unreachable(ex, acct_policy(g, acct), missing);
        json_decref(b);
        json_decref(acct);
        json_decref(allowed);
        return;
    }

    /* at most: the lock check, the account row, and per contact its change, its audit entry, the
     * code to the new contact and the notice to the old one */
    struct db_stmt st[2 + 2 * 4];
    struct outbox_msg msgs[4];
    size_t n = 0, n_msgs = 0;
    const char *p_id[] = {id};
    const char *p_row[] = {id, config_str(g->cfg, "default_policy")};
    char salt[2][33], hash[2][CRYPTO_SHA256_HEX_LEN + 1], ttl[24], reason[2][400];
    const char *p_pending[2][6], *p_audit[2][3], *p_remove[1] = {id};
    snprintf(ttl, sizeof(ttl), "%lld", config_int(g->cfg, "contact_code_ttl_s"));
    assert_unlocked(&st[n++], p_id);
    st[n++] = (struct db_stmt){"INSERT INTO guard.accounts (account_id, policy) VALUES ($1, $2) "
                               "ON CONFLICT (account_id) DO NOTHING",
                               p_row, 2};
    json_t *pending = json_array();
    rc = DB_OK;
    for (int c = 0; c < 2 && rc == DB_OK; c++) {
        if (!is_removal[c] && !is_request[c]) {
            continue;
        }
        char masked[340];
        if (is_removal[c]) {
            st[n++] = (struct db_stmt){c == 0 ? "UPDATE guard.accounts SET email = NULL, "
                                                "updated_at = now() WHERE account_id = $1"
                                              : "UPDATE guard.accounts SET phone = NULL, "
                                                "updated_at = now() WHERE account_id = $1",
                                       p_remove, 1};
            snprintf(reason[c], sizeof(reason[c]), "%s removed", KEYS[c]);
        } else {
            char code[9], sctx[ID_MAX + 16], *sealed = NULL;
            unsigned char raw[16];
            new_code(code);
            random_bytes(raw, sizeof(raw));
            for (int i = 0; i < 16; i++) {
                snprintf(salt[c] + 2 * i, 3, "%02x", raw[i]);
            }
            code_hash(salt[c], code, hash[c]);
            seal_context("contact", id, sctx, sizeof(sctx));
            if (seal_seal(g->seal, sctx, code, &sealed) != 0) {
                rc = DB_EQUERY;
                snprintf(err, sizeof(err), "cannot seal a contact code");
                break;
            }
            explicit_bzero(code, sizeof(code));
            const char **pp = p_pending[c];
            pp[0] = id;
            pp[1] = CHANNELS[c];
            pp[2] = want[c];
            pp[3] = salt[c];
            pp[4] = hash[c];
            pp[5] = ttl;
            st[n++] = (struct db_stmt){
                "INSERT INTO guard.pending_contacts (account_id, channel, value, salt, hash, "
                "expires_at, attempts) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => "
                "$6::int), 0) ON CONFLICT (account_id, channel) DO UPDATE SET value = $3, "
                "salt = $4, hash = $5, expires_at = now() + make_interval(secs => $6::int), "
                "attempts = 0",
                pp, 6};
            outbox_msg_init(&msgs[n_msgs], &st[n++], id, "contact_code",
                            json_pack("[s]", CHANNELS[c]), c == 0 ? want[c] : NULL,
                            c == 1 ? want[c] : NULL,
                            json_pack("{s:s, s:s}", "channel", CHANNELS[c], "sealed_code", sealed));
            n_msgs++;
            free(sealed);
            json_array_append_new(pending, json_string(CHANNELS[c]));
            contact_masked(want[c], masked, sizeof(masked));
            snprintf(reason[c], sizeof(reason[c]), "%s change to %s requested (code sent to it)",
                     KEYS[c], masked);
        }
        p_audit[c][0] = id;
        p_audit[c][1] = is_removal[c] ? "contact_removed" : "contact_change_requested";
        p_audit[c][2] = reason[c];
        audit_player(&st[n++], p_audit[c]);
        if (cur[c]) { /* the contact in effect hears of it first: its owner can still react */
            json_t *params = json_pack("{s:s, s:s}", "channel", CHANNELS[c], "change",
                                       is_removal[c] ? "removed" : "requested");
            if (is_request[c]) {
                contact_masked(want[c], masked, sizeof(masked));
                json_object_set_new(params, "new_contact", json_string(masked));
            }
            outbox_msg_init(&msgs[n_msgs], &st[n++], id, "contact_changed",
                            json_pack("[s, s]", CHANNELS[c], "ingame"), c == 0 ? cur[c] : NULL,
                            c == 1 ? cur[c] : NULL, params);
            n_msgs++;
        }
    }
    if (rc == DB_OK) {
        rc = db_exec_tx(g->db, st, n, err, sizeof(err));
    }
    outbox_msg_release(msgs, n_msgs);
    if (is_account_locked_error(rc, err)) {
        respond_locked(ex, "contacts cannot change");
    } else if (rc != DB_OK) {
        db_fail(ex, rc, err);
    } else if (json_array_size(pending) == 0) {
        log_info("account %s: a contact removed by the player", id);
        handle_get_policy(ex, arg);
    } else {
        log_info("account %s: contact change requested by the player", id);
        /* after[] borrows from acct and b, freed below */
        http_respond_json(
            ex, 202,
            json_pack("{s:s, s:O, s:I, s:{s:o, s:o}}", "account_id", id, "pending", pending,
                      "expires_in_s", (json_int_t)config_int(g->cfg, "contact_code_ttl_s"),
                      "contacts", "email", after[0] ? json_string(after[0]) : json_null(), "phone",
                      after[1] ? json_string(after[1]) : json_null()));
    }
    json_decref(pending);
    json_decref(b);
    json_decref(acct);
    json_decref(allowed);
}

/* POST /v1/accounts/{id}/contacts/confirm {"channel": "email"|"sms", "code"}: the contact asked
 * for takes effect. Attempts are spent before comparing, as for unlock codes. */
static void handle_confirm_contact(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_PLAYER, &who);
    if (!id) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    const char *channel = json_string_value(json_object_get(b, "channel"));
    const char *code = json_string_value(json_object_get(b, "code"));
    if (!channel || (strcmp(channel, "email") != 0 && strcmp(channel, "sms") != 0) || !code ||
        strlen(code) > 16) {
        json_decref(b);
        http_respond_error(ex, 400, "bad_request", NULL,
                           "\"channel\" (email or sms) and \"code\" are required");
        return;
    }
    bool is_email = strcmp(channel, "email") == 0;
    char max[24], err[512];
    snprintf(max, sizeof(max), "%lld", config_int(g->cfg, "code_attempts"));
    const char *p[] = {id, channel, max};
    json_t *rows = NULL;
    int rc = db_exec(g->db,
                     "UPDATE guard.pending_contacts SET attempts = attempts + 1 "
                     "WHERE account_id = $1 AND channel = $2 AND attempts < $3::int "
                     "RETURNING value, salt, hash, attempts::text AS attempts, "
                     "(expires_at < now())::text AS expired",
                     p, 3, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        json_t *r2 = NULL;
        rc = db_exec(g->db,
                     "SELECT 1 FROM guard.pending_contacts WHERE account_id = $1 AND channel = $2",
                     p, 2, &r2, NULL, err, sizeof(err));
        bool exists = rc == DB_OK && json_array_size(r2) > 0;
        json_decref(r2);
        if (exists) {
            http_respond_error(ex, 409, "attempts_exhausted", NULL,
                               "too many wrong codes: ask for the change again to get a new code");
        } else {
            http_respond_error(ex, 409, "no_pending_change", NULL,
                               "no %s change is waiting for a code", channel);
        }
        json_decref(b); /* channel was borrowed from it */
        return;
    }
    char want[CRYPTO_SHA256_HEX_LEN + 1];
    code_hash(row_str(rows, 0, "salt"), code, want);
    const char *hash = row_str(rows, 0, "hash");
    bool ok = crypto_equal(want, strlen(want), hash, strlen(hash));
    if (strcmp(row_str(rows, 0, "expired"), "true") == 0) {
        json_decref(b);
        json_decref(rows);
        http_respond_error(ex, 410, "code_expired", NULL,
                           "the code has expired: ask for the change again");
        return;
    }
    if (!ok) {
        json_decref(b);
        long left = config_int(g->cfg, "code_attempts") - atol(row_str(rows, 0, "attempts"));
        json_decref(rows);
        http_respond_error(ex, 403, "wrong_code",
                           json_pack("{s:I}", "attempts_left", (json_int_t)(left < 0 ? 0 : left)),
                           "wrong code");
        return;
    }
    json_t *acct, *allowed;
    rc = load_account(g, id, &acct, &allowed, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(b);
        json_decref(rows);
        db_fail(ex, rc, err);
        return;
    }
    const char *value = row_str(rows, 0, "value");
    const char *email = is_email ? value : row_str(acct, 0, "email");
    const char *phone = is_email ? row_str(acct, 0, "phone") : value;
    char reason[400], masked[340];
    contact_masked(value, masked, sizeof(masked));
    snprintf(reason, sizeof(reason), "%s changed to %s (confirmed with its code)",
             is_email ? "email" : "phone", masked);
    const char *p_set[] = {id, value}, *p_id[] = {id};
    const char *p_audit[] = {id, "contact_confirmed", reason};
    struct db_stmt st[5];
    struct outbox_msg msg;
    size_t n = 0;
    assert_unlocked(&st[n++], p_id);
    st[n++] =
        (struct db_stmt){is_email ? "UPDATE guard.accounts SET email = $2, updated_at = now() "
                                    "WHERE account_id = $1"
                                  : "UPDATE guard.accounts SET phone = $2, updated_at = now() "
                                    "WHERE account_id = $1",
                         p_set, 2};
    st[n++] = (struct db_stmt){"DELETE FROM guard.pending_contacts WHERE account_id = $1 AND "
                               "channel = $2",
                               p, 2};
    audit_player(&st[n++], p_audit);
    outbox_msg_init(&msg, &st[n++], id, "settings_changed", player_channels(email, phone), email,
                    phone, json_pack("{s:s}", "change", reason));
    rc = db_exec_tx(g->db, st, n, err, sizeof(err));
    outbox_msg_release(&msg, 1);
    json_decref(rows);
    json_decref(acct);
    json_decref(allowed);
    if (is_account_locked_error(rc, err)) {
        json_decref(b);
        respond_locked(ex, "contacts cannot change");
        return;
    }
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    log_info("account %s: %s confirmed", id, channel);
    json_decref(b); /* channel and code were borrowed from it */
    handle_get_policy(ex, arg);
}

/* ---- deliveries ---- */

/* The outcome db_fail answers, for a delivery item. */
static void item_db_fail(struct delivery_item *it, int rc, const char *err)
{
    if (rc == DB_EUNAVAILABLE) {
        delivery_item_fail(it, 503, "unavailable", "database unavailable; retry later");
        it->retry_after_s = 1;
    } else {
        log_error("database error: %s", err);
        delivery_item_fail(it, 500, "internal", "database error");
    }
}

/* Decides an item by a stored decision: the event exactly as first answered (a lock's code in it
 * sealed), so a redelivery re-emits the code the player was sent, never a second one. */
static void stored_decision(struct delivery_item *it, const char *event_text)
{
    json_error_t jerr;
    json_t *ev = json_loads(event_text, 0, &jerr);
    if (!ev) {
        delivery_item_fail(it, 500, "internal", "stored decision unreadable");
        return;
    }
    it->status = 200;
    it->output = ev;
}

static const char *ev_str(json_t *ev, const char *k)
{
    const char *s = json_string_value(json_object_get(ev, k));
    return s && strlen(s) <= 256 ? s : NULL;
}

/* Decides one login.checked event: 204 when it needs nothing, else 200 with the account.action
 * event as its output (the stored one for a login already decided); 422 for an incomplete event;
 * 503 with Retry-After 1 while the database is unavailable, 500 on its errors (a
 * delivery_decide_fn; ctx is the guard). */
static void guard_decide(void *ctx, struct delivery_item *it)
{
    struct guard *g = ctx;
    json_t *ev = it->event;
    const char *account = ev_str(ev, "account_id"), *country = ev_str(ev, "country");
    const char *login_id = ev_str(ev, "login_id");
    if (!login_id || !*login_id) {
        login_id = it->id;
    }
    if (!valid_id(account) || !valid_id(login_id) || !valid_country(country) || !ev_str(ev, "ip") ||
        !ev_str(ev, "ts")) {
        delivery_item_fail(it, 422, "invalid_event",
                           "account_id, login_id, country, ip and ts are required");
        return;
    }
    it->status = 204;
    for (int i = 0; i < g->n_home; i++) {
        if (strcmp(country, g->home[i]) == 0) {
            return;
        }
    }
    if (strcmp(country, "ZZ") == 0 && config_bool(g->cfg, "ignore_unknown_country")) {
        return;
    }
    char err[512];
    /* One round trip: a decision already stored for this login (a redelivery gets the same
     * answer), the account's settings and the countries it allows now. */
    json_t *acct = NULL, *allowed = NULL;
    const char *pl[] = {account, login_id};
    int rc = db_exec(g->db,
                     "SELECT d.event AS decided, a.policy, a.channels, a.email, a.phone, "
                     "(SELECT coalesce(json_agg(json_build_object('country', al.country)), '[]') "
                     "FROM guard.allowed al WHERE al.account_id = $1 "
                     "AND (al.until IS NULL OR al.until > now()))::text AS allowed "
                     "FROM (SELECT $1::text AS id) k "
                     "LEFT JOIN guard.accounts a ON a.account_id = k.id "
                     "LEFT JOIN guard.decisions d ON d.account_id = $1 AND d.login_id = $2",
                     pl, 2, &acct, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        item_db_fail(it, rc, err);
        return;
    }
    if (row_str(acct, 0, "decided")) { /* a redelivery: the same answer again */
        stored_decision(it, row_str(acct, 0, "decided"));
        json_decref(acct);
        return;
    }
    json_error_t aerr;
    allowed =
        json_loads(row_str(acct, 0, "allowed") ? row_str(acct, 0, "allowed") : "[]", 0, &aerr);
    char policy_buf[16];
    snprintf(policy_buf, sizeof(policy_buf), "%s", acct_policy(g, acct));
    const char *policy = policy_buf;
    int allowed_here = 0;
    for (size_t i = 0; i < json_array_size(allowed); i++) {
        if (strcmp(row_str(allowed, i, "country"), country) == 0) {
            allowed_here = 1;
        }
    }
    if (allowed_here || strcmp(policy, "none") == 0) {
        json_decref(acct);
        json_decref(allowed);
        return;
    }
    const char *ch = row_str(acct, 0, "channels");
    json_error_t jerr;
    json_t *channels = json_loads(ch ? ch : "[\"ingame\"]", 0, &jerr);
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:{s:o, s:o}}", "account_id",
                            account, "action", policy, "login_id", login_id, "country", country,
                            "ip", ev_str(ev, "ip"), "ts", ev_str(ev, "ts"), "channels",
                            channels ? channels : json_array(), "contacts", "email",
                            email ? json_string(email) : json_null(), "phone",
                            phone ? json_string(phone) : json_null());
    if (ev_str(ev, "server")) {
        json_object_set_new(out, "server", json_string(ev_str(ev, "server")));
    }
    if (ev_str(ev, "session_id")) {
        json_object_set_new(out, "session_id", json_string(ev_str(ev, "session_id")));
    }
    /* contacts: only the ones that are set (the schema wants strings) */
    json_t *contacts = json_object_get(out, "contacts");
    if (!email) {
        json_object_del(contacts, "email");
    }
    if (!phone) {
        json_object_del(contacts, "phone");
    }
    json_decref(acct);
    json_decref(allowed);
    /* A lock's code: minted once here, kept only as a salted hash and, sealed for notify, in the
     * decision itself (answered again as stored on a redelivery). */
    char code[9] = "";
    if (strcmp(policy, "lock") == 0) {
        char sctx[ID_MAX + 16], *sealed = NULL;
        new_code(code);
        seal_context("unlock", account, sctx, sizeof(sctx));
        if (seal_seal(g->seal, sctx, code, &sealed) != 0) {
            json_decref(out);
            delivery_item_fail(it, 500, "internal", "cannot seal the unlock code");
            return;
        }
        json_object_set_new(out, "sealed_code", json_string(sealed));
        free(sealed);
    }
    char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);

    const char *pd[] = {login_id, account, policy, text};
    struct db_stmt st[4];
    size_t n = 0;
    st[n++] = (struct db_stmt){"INSERT INTO guard.decisions (login_id, account_id, action, event) "
                               "VALUES ($1, $2, $3, $4)",
                               pd, 4};
    char salt[33], hash[CRYPTO_SHA256_HEX_LEN + 1], ttl[24];
    const char *pc[5] = {account, login_id, salt, hash, ttl};
    const char *pe[4] = {account, login_id, country, json_string_value(json_object_get(out, "ip"))};
    if (strcmp(policy, "lock") == 0) {
        unsigned char raw[16];
        random_bytes(raw, sizeof(raw));
        for (int i = 0; i < 16; i++) {
            snprintf(salt + 2 * i, 3, "%02x", raw[i]);
        }
        code_hash(salt, code, hash);
        snprintf(ttl, sizeof(ttl), "%lld", config_int(g->cfg, "code_ttl_s"));
        st[n++] = (struct db_stmt){
            "INSERT INTO guard.codes (account_id, login_id, salt, hash, expires_at, attempts) "
            "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::int), 0) "
            "ON CONFLICT (account_id) DO UPDATE SET login_id = $2, salt = $3, hash = $4, "
            "expires_at = now() + make_interval(secs => $5::int), attempts = 0",
            pc, 5};
        st[n++] = (struct db_stmt){"INSERT INTO guard.accounts (account_id, policy, locked) "
                                   "VALUES ($1, 'lock', true) ON CONFLICT (account_id) DO UPDATE "
                                   "SET locked = true, updated_at = now()",
                                   pc, 1};
        st[n++] = (struct db_stmt){"INSERT INTO guard.lock_events (account_id, event, actor, "
                                   "login_id, country, ip) VALUES ($1, 'locked', 'policy', $2, "
                                   "$3, $4)",
                                   pe, 4};
    }
    rc = db_exec_tx(g->db, st, n, err, sizeof(err));
    free(text);
    if (rc == DB_ECONFLICT) { /* a concurrent copy of this delivery won: answer what it stored */
        json_decref(out);
        json_t *rows = NULL;
        rc = db_exec(g->db,
                     "SELECT event FROM guard.decisions WHERE account_id = $1 AND login_id = $2",
                     pl, 2, &rows, NULL, err, sizeof(err));
        if (rc != DB_OK || json_array_size(rows) == 0) {
            json_decref(rows);
            item_db_fail(it, rc == DB_OK ? DB_EUNAVAILABLE : rc, err);
            return;
        }
        stored_decision(it, row_str(rows, 0, "event"));
        json_decref(rows);
        return;
    }
    if (rc != DB_OK) {
        json_decref(out);
        item_db_fail(it, rc, err);
        return;
    }
    explicit_bzero(code, sizeof(code));
    cache_drop(g, account);
    metric_inc(g->m_actions);
    char trace_id[33];
    log_ev(LOG_LEVEL_INFO, trace_id_of(it->traceparent, trace_id), it->id,
           "login %s of %s from %s: %s", login_id, account, country, policy);
    it->status = 200;
    it->output = out;
}

/* One login.checked event, or a batch of them (delivery.h: after an item to retry, the rest is
 * not decided). */
static void handle_login(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    const struct delivery_rules rules = {
        .secret = g->bus_secret,
        .refusal = {.message = "account_id, login_id, country, ip and ts are required"},
    };
    struct delivery_batch b;
    if (delivery_accept_any(ex, &rules, &b) != 0) {
        return;
    }
    delivery_decide_all(&b, guard_decide, g);
    delivery_answer(ex, &b);
}

/* ---- unlock ---- */

static void handle_unlock(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_PLAYER, &who);
    if (!id) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    const char *code = json_string_value(json_object_get(b, "code"));
    if (!code || strlen(code) > 16) {
        json_decref(b);
        http_respond_error(ex, 400, "bad_request", NULL, "\"code\" is required");
        return;
    }
    char max[24], err[512];
    snprintf(max, sizeof(max), "%lld", config_int(g->cfg, "code_attempts"));
    const char *p[] = {id, max};
    json_t *rows = NULL;
    /* Spend one attempt first (atomically), then compare: concurrent guesses can't exceed max. */
    int rc = db_exec(g->db,
                     "UPDATE guard.codes SET attempts = attempts + 1 WHERE account_id = $1 AND "
                     "attempts < $2::int RETURNING salt, hash, attempts::text AS attempts, "
                     "(expires_at < now())::text AS expired",
                     p, 2, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        json_t *r2 = NULL;
        rc = db_exec(g->db, "SELECT 1 FROM guard.codes WHERE account_id = $1", p, 1, &r2, NULL, err,
                     sizeof(err));
        int exists = rc == DB_OK && json_array_size(r2) > 0;
        json_decref(r2);
        json_decref(b);
        if (exists) {
            http_respond_error(ex, 423, "attempts_exhausted", NULL,
                               "too many wrong codes: ask support to unlock the account");
        } else {
            http_respond_error(ex, 409, "no_code", NULL, "the account has no pending unlock code");
        }
        return;
    }
    const char *salt = row_str(rows, 0, "salt"), *hash = row_str(rows, 0, "hash");
    const char *expired = row_str(rows, 0, "expired");
    int attempts = atoi(row_str(rows, 0, "attempts"));
    char want[CRYPTO_SHA256_HEX_LEN + 1];
    code_hash(salt, code, want);
    int ok = crypto_equal(want, strlen(want), hash, strlen(hash));
    json_decref(b);
    if (strcmp(expired, "true") == 0) {
        json_decref(rows);
        http_respond_error(ex, 410, "code_expired", NULL, "the code has expired: ask support");
        return;
    }
    if (!ok) {
        long left = config_int(g->cfg, "code_attempts") - attempts;
        json_decref(rows);
        if (left <= 0) {
            http_respond_error(ex, 423, "attempts_exhausted", NULL,
                               "too many wrong codes: ask support to unlock the account");
        } else {
            http_respond_error(ex, 403, "wrong_code",
                               json_pack("{s:I}", "attempts_left", (json_int_t)left), "wrong code");
        }
        return;
    }
    json_decref(rows);
    struct db_stmt st[3] = {
        {"DELETE FROM guard.codes WHERE account_id = $1", p, 1},
        {"UPDATE guard.accounts SET locked = false, updated_at = now() WHERE account_id = $1", p,
         1},
        {"INSERT INTO guard.lock_events (account_id, event, actor) VALUES ($1, 'unlocked', 'code')",
         p, 1},
    };
    rc = db_exec_tx(g->db, st, 3, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    cache_drop(g, id);
    log_info("account %s unlocked with its code", id);
    http_respond_json(ex, 200, json_pack("{s:s, s:b}", "account_id", id, "locked", 0));
}

static void handle_support_unlock(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_STAFF, &who);
    if (!id) {
        return;
    }
    json_t *b = body_object(ex);
    if (!b) {
        return;
    }
    const char *reason = json_string_value(json_object_get(b, "reason"));
    if (!reason || strspn(reason, " \t\r\n") == strlen(reason) || strlen(reason) > 1000) {
        json_decref(b);
        http_respond_error(ex, 400, "reason_required", NULL,
                           "\"reason\" (1-1000 characters) is required");
        return;
    }
    json_t *acct, *allowed;
    char err[512];
    int rc = load_account(g, id, &acct, &allowed, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    const char *p[] = {id, who.subject, reason};
    struct db_stmt st[5] = {
        /* recorded in the lock history only when there was a lock to lift */
        {"INSERT INTO guard.lock_events (account_id, event, actor, staff, reason) "
         "SELECT $1, 'unlocked', 'staff', $2, $3 WHERE EXISTS "
         "(SELECT 1 FROM guard.accounts WHERE account_id = $1 AND locked)",
         p, 3},
        {"DELETE FROM guard.codes WHERE account_id = $1", p, 1},
        {"UPDATE guard.accounts SET locked = false, updated_at = now() WHERE account_id = $1", p,
         1},
        {"INSERT INTO guard.audit (staff, action, account_id, reason) VALUES ($2, 'unlock', $1, "
         "$3)",
         p, 3},
    };
    /* the player hears of every staff unlock: a social-engineered one does not go unnoticed */
    struct outbox_msg msg;
    outbox_msg_init(&msg, &st[4], id, "staff_unlock", player_channels(email, phone), email, phone,
                    json_pack("{s:s}", "staff", who.subject));
    rc = db_exec_tx(g->db, st, 5, err, sizeof(err));
    outbox_msg_release(&msg, 1);
    json_decref(acct);
    json_decref(allowed);
    json_decref(b);
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    cache_drop(g, id);
    log_info("account %s unlocked by staff %s", id, who.subject);
    http_respond_json(
        ex, 200,
        json_pack("{s:s, s:b, s:s}", "account_id", id, "locked", 0, "unlocked_by", who.subject));
}

static void handle_audit(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    if (authorize(g, ex, NULL, 1, &who) != 0) {
        return;
    }
    const char *account = http_query(ex, "account_id");
    if (account && !valid_id(account)) {
        http_respond_error(ex, 400, "bad_account", NULL, "invalid account id");
        return;
    }
    const char *p[] = {account};
    json_t *rows = NULL;
    char err[512];
    int rc =
        db_exec(g->db,
                "SELECT id::text AS id, to_char(ts AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts, actor, staff, action, account_id, "
                "reason FROM guard.audit WHERE ($1::text IS NULL OR account_id = $1) "
                "ORDER BY id DESC LIMIT 100",
                p, 1, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    http_respond_json(ex, 200, json_pack("{s:o}", "entries", rows));
}

/* ---- support console: find an account, its details and lock history ---- */

static const char SQL_SUPPORT_FIND[] =
    "SELECT account_id, policy, locked::text AS locked, "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at "
    "FROM guard.accounts WHERE starts_with(account_id, $1) "
    "AND ($3::bool IS NULL OR locked = $3::bool) ORDER BY account_id LIMIT $2::int";

/* One row whether or not the account has settings or a pending code. */
static const char SQL_SUPPORT_ACCOUNT[] =
    "SELECT to_char(a.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
    "AS updated_at, "
    "to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
    "AS code_expires_at, c.attempts::text AS code_attempts, "
    "(c.expires_at < now())::text AS code_expired "
    "FROM (SELECT $1::text AS id) k LEFT JOIN guard.accounts a ON a.account_id = k.id "
    "LEFT JOIN guard.codes c ON c.account_id = k.id";

static const char SQL_SUPPORT_LOCKS[] =
    "SELECT id::text AS id, "
    "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS ts, "
    "event, actor, staff, reason, login_id, country, ip FROM guard.lock_events "
    "WHERE account_id = $1 ORDER BY ts DESC, id DESC LIMIT $2::int";

/* Parses ?limit= (1..max, default def); answers 400 itself and returns -1 when bad. */
static int query_limit(struct http_exchange *ex, long def, long max, char out[16])
{
    const char *s = http_query(ex, "limit");
    long v = def;
    if (s) {
        char *end = NULL;
        v = strtol(s, &end, 10);
        if (!*s || *end || v < 1 || v > max) {
            http_respond_error(ex, 400, "bad_request", NULL, "limit must be an integer 1..%ld",
                               max);
            return -1;
        }
    }
    snprintf(out, 16, "%ld", v);
    return 0;
}

/* GET /v1/support/accounts?prefix=P&locked=true&limit=N: accounts with settings, by id. */
static void handle_support_find(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    if (authorize(g, ex, NULL, 1, &who) != 0) {
        return;
    }
    const char *prefix = http_query(ex, "prefix");
    const char *locked = http_query(ex, "locked");
    char limit[16];
    if (prefix && strlen(prefix) > ID_MAX) {
        http_respond_error(ex, 400, "bad_request", NULL, "prefix is longer than %d", ID_MAX);
        return;
    }
    if (locked && strcmp(locked, "true") != 0 && strcmp(locked, "false") != 0) {
        http_respond_error(ex, 400, "bad_request", NULL, "locked must be true or false");
        return;
    }
    if (query_limit(ex, 20, 100, limit) != 0) {
        return;
    }
    const char *p[] = {prefix ? prefix : "", limit, locked};
    json_t *rows = NULL;
    char err[512];
    int rc = db_exec(g->db, SQL_SUPPORT_FIND, p, 3, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const char *l = row_str(rows, i, "locked");
        json_array_append_new(out, json_pack("{s:s, s:s, s:b, s:s}", "account_id",
                                             row_str(rows, i, "account_id"), "policy",
                                             row_str(rows, i, "policy"), "locked",
                                             l && strcmp(l, "true") == 0, "updated_at",
                                             row_str(rows, i, "updated_at")));
    }
    json_decref(rows);
    http_respond_json(ex, 200, json_pack("{s:o}", "accounts", out));
}

/* GET /v1/support/accounts/{id}: settings, state and the pending code's state (never the code). */
static void handle_support_account(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_STAFF, &who);
    if (!id) {
        return;
    }
    json_t *acct, *allowed, *extra = NULL;
    char err[512];
    int rc = load_account(g, id, &acct, &allowed, err, sizeof(err));
    if (rc == DB_OK) {
        const char *p[] = {id};
        rc = db_exec(g->db, SQL_SUPPORT_ACCOUNT, p, 1, &extra, NULL, err, sizeof(err));
        if (rc != DB_OK) {
            json_decref(acct);
            json_decref(allowed);
        }
    }
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    long long exp;
    const char *policy = acct_policy(g, acct);
    const char *locked = row_str(acct, 0, "locked");
    const char *ch = row_str(acct, 0, "channels");
    json_error_t jerr;
    json_t *channels = json_loads(ch ? ch : "[\"ingame\"]", 0, &jerr);
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    const char *updated = row_str(extra, 0, "updated_at");
    const char *code_exp = row_str(extra, 0, "code_expires_at");
    json_t *code = json_null();
    if (code_exp) {
        const char *expired = row_str(extra, 0, "code_expired");
        code = json_pack("{s:s, s:I, s:I, s:b}", "expires_at", code_exp, "attempts",
                         (json_int_t)atoll(row_str(extra, 0, "code_attempts")), "attempts_max",
                         (json_int_t)config_int(g->cfg, "code_attempts"), "expired",
                         expired && strcmp(expired, "true") == 0);
    }
    json_t *out = json_pack("{s:s, s:b, s:s, s:o, s:{s:o, s:o}, s:b, s:b, s:o, s:o, s:o, s:o}",
                            "account_id", id, "known", json_array_size(acct) > 0, "policy", policy,
                            "channels", channels ? channels : json_array(), "contacts", "email",
                            email ? json_string(email) : json_null(), "phone",
                            phone ? json_string(phone) : json_null(), "locked",
                            locked && strcmp(locked, "true") == 0, "blocked_abroad",
                            strcmp(policy, "block_abroad") == 0, "home_countries", home_json(g),
                            "allowed_countries", allowed_json(allowed, &exp), "updated_at",
                            updated ? json_string(updated) : json_null(), "pending_code", code);
    json_decref(acct);
    json_decref(allowed);
    json_decref(extra);
    http_respond_json(ex, 200, out);
}

/* GET /v1/support/accounts/{id}/locks?limit=N: lock history, newest first. */
static void handle_support_locks(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    char limit[16];
    const char *id = account_param(g, ex, CALLER_STAFF, &who);
    if (!id || query_limit(ex, 50, 200, limit) != 0) {
        return;
    }
    const char *p[] = {id, limit};
    json_t *rows = NULL;
    char err[512];
    int rc = db_exec(g->db, SQL_SUPPORT_LOCKS, p, 2, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    http_respond_json(ex, 200, json_pack("{s:s, s:o}", "account_id", id, "events", rows));
}

static int parse_home(struct guard *g, const char *list)
{
    char tmp[1025];
    snprintf(tmp, sizeof(tmp), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (!valid_country(t) || g->n_home >= 32) {
            log_error("home_countries: \"%s\" is not an ISO alpha-2 code", t);
            return -1;
        }
        memcpy(g->home[g->n_home++], t, 3);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct app app;
    char err[512];
    int rc = 1;
    struct http_server *srv = NULL;
    struct webpage *page = NULL;
    struct guard g;
    memset(&g, 0, sizeof(g));

    if (app_init(&app, argc, argv, "guard", "GUARD", GUARD_CONFIG) != 0) {
        return 2;
    }
    if (app.exit_now) {
        app_release(&app);
        return 0;
    }
    pthread_rwlock_init(&g.mu, NULL);
    g.buckets = xcalloc(CACHE_BUCKETS, sizeof(*g.buckets));
    g.cfg = app.cfg;
    g.auth_secret = config_str(app.cfg, "auth_secret");
    g.bus_secret = config_str(app.cfg, "bus_secret");
    if (seal_keys_parse(config_str(app.cfg, "seal_keys"), &g.seal, err, sizeof(err)) != 0) {
        log_error("seal_keys: %s", err);
        goto out;
    }
    if (policy_index(config_str(app.cfg, "default_policy")) < 0) {
        log_error("default_policy must be none, notify, kick, block_abroad or lock");
        goto out;
    }
    if (parse_home(&g, config_str(app.cfg, "home_countries")) != 0 ||
        parse_status_clients(&g, config_str(app.cfg, "status_tokens")) != 0) {
        goto out;
    }
    g.geo = geo_new(config_str(app.cfg, "geoip_db"), err, sizeof(err));
    if (!g.geo) {
        log_error("geoip_db: %s", err);
        goto out;
    }
    g.m_actions = metrics_counter("guard_actions_total", "Logins that triggered a policy", NULL);
    g.m_status_hit =
        metrics_counter("guard_status_cache_hits_total", "Status answers from the cache", NULL);
    g.m_status_miss = metrics_counter("guard_status_cache_misses_total",
                                      "Status answers loaded from the database", NULL);
    g.m_outbox_sent =
        metrics_counter("guard_messages_published_total",
                        "Messages guard sent on its own, acknowledged by the bus", NULL);
    g.m_outbox_dropped = metrics_counter("guard_messages_dropped_total",
                                         "Messages the publisher refused for good (logged)", NULL);
    g.http = http_client_new();
    int m = app_db_open(&app, "guard", &g.db);
    if (m != 0) {
        rc = m == APP_STOPPED ? 0 : 1;
        goto out;
    }
    const char *cors = config_str(app.cfg, "http.cors_origins");
    page = webpage_new("guard", "history", cors, config_str(app.cfg, "web.history_url"), err,
                       sizeof(err));
    if (!page) {
        log_error("%s", err);
        goto out;
    }
    struct http_server_options opts = {
        .listen = config_str(app.cfg, "listen"),
        .threads = (unsigned)config_int(app.cfg, "threads"),
        .ready = db_ready,
        .ready_ctx = g.db,
        .cors_origins = cors,
    };
    srv = http_server_new(&opts);
    http_server_route(srv, "POST", "/v1/deliveries/login.checked", handle_login, &g,
                      DELIVERY_MAX_BODY_BYTES);
    http_server_route(srv, "GET", "/v1/accounts/{}/status", handle_status, &g, 0);
    http_server_route(srv, "GET", "/v1/accounts/{}/policy", handle_get_policy, &g, 0);
    http_server_route(srv, "PUT", "/v1/accounts/{}/policy", handle_put_policy, &g, 65536);
    http_server_route(srv, "PUT", "/v1/accounts/{}/contacts", handle_put_contacts, &g, 4096);
    http_server_route(srv, "POST", "/v1/accounts/{}/contacts/confirm", handle_confirm_contact, &g,
                      4096);
    http_server_route(srv, "POST", "/v1/accounts/{}/unlock", handle_unlock, &g, 4096);
    http_server_route(srv, "POST", "/v1/support/accounts/{}/unlock", handle_support_unlock, &g,
                      8192);
    http_server_route(srv, "GET", "/v1/support/audit", handle_audit, &g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts", handle_support_find, &g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts/{}", handle_support_account, &g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts/{}/locks", handle_support_locks, &g, 0);
    webpage_serve(page, srv, "/support/", config_str(app.cfg, "web.dir"),
                  config_str(app.cfg, "web.common_dir"));
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        goto out;
    }
    log_info("guard listening on %s%s", opts.listen,
             g.bus_secret && *g.bus_secret ? ", signatures required" : "");
    long check_ms = (long)config_int(app.cfg, "geoip_reload_check_ms");
    long long geo_checked_ms = app_now_ms();
    while (!app_wait_stop_for(&app, (long)config_int(app.cfg, "outbox_interval_ms"))) {
        outbox_flush(&g);
        if (app_now_ms() - geo_checked_ms < check_ms) {
            continue;
        }
        geo_checked_ms = app_now_ms();
        int r = geo_reload_if_changed(g.geo, err, sizeof(err));
        if (r == 1) {
            log_info("GeoIP database reloaded");
        } else if (r < 0) {
            log_warn("GeoIP reload skipped: %s", err);
        }
    }
    rc = 0;
out:
    http_server_free(srv, 2000);
    geo_free(g.geo);
    http_client_free(g.http);
    if (g.buckets) {
        cache_clear_locked(&g);
        free(g.buckets);
    }
    pthread_rwlock_destroy(&g.mu);
    db_free(g.db);
    seal_keys_free(g.seal);
    webpage_free(page);
    app_release(&app);
    return rc;
}
