/* account.c - the account store and the status cache (see guard.h).
 *
 * An account's settings live in guard.accounts and guard.allowed. Login servers ask
 * GET /v1/accounts/{id}/status?ip= with a service token (status_tokens) and get admit/reason
 * from guard's own GeoIP lookup and the brute-force throttle (throttle.c); the answer comes from an
 * in-memory cache, write-through: every change is committed to PostgreSQL first, then the cache
 * entry is dropped (cache_drop) and reloaded on the next read. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "auth.h"
#include "crypto.h"
#include "geo.h"
#include "guard.h"

/* ---- status cache ---- */

/* One account's status; the table is g->buckets, behind g->mu. */
struct cache_entry {
    struct cache_entry *next;
    char *status;      /* the status JSON answered to login servers */
    long long expires; /* wall-clock s when an allowed country's "until" passes; 0 = never */
    char id[];
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
        struct cache_entry *e = g->buckets[i];
        while (e) {
            struct cache_entry *n = e->next;
            free(e->status);
            free(e);
            e = n;
        }
        g->buckets[i] = NULL;
    }
    g->n_cached = 0;
}

void cache_drop(struct guard *g, const char *id)
{
    pthread_rwlock_wrlock(&g->mu);
    struct cache_entry **pp = &g->buckets[hash_id(id)];
    while (*pp) {
        if (strcmp((*pp)->id, id) == 0) {
            struct cache_entry *e = *pp;
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

void cache_init(struct guard *g)
{
    pthread_rwlock_init(&g->mu, NULL);
    g->buckets = xcalloc(CACHE_BUCKETS, sizeof(*g->buckets));
}

void cache_release(struct guard *g)
{
    if (g->buckets) {
        cache_clear_locked(g);
        free(g->buckets);
        g->buckets = NULL;
    }
    pthread_rwlock_destroy(&g->mu);
}

/* ---- the account store ---- */

/* The account's settings row and its current allowed countries. acct and allowed are owned by
 * the caller. */
int load_account(struct guard *g, const char *id, json_t **acct, json_t **allowed, char *err,
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

int account_load_or_answer(struct guard *g, struct http_exchange *ex, const char *id, json_t *body,
                           json_t **acct, json_t **allowed)
{
    char err[512];
    int rc = load_account(g, id, acct, allowed, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(body);
        db_fail(ex, rc, err);
        return -1;
    }
    return 0;
}

const char *acct_policy(struct guard *g, json_t *acct)
{
    const char *p = row_str(acct, 0, "policy");
    return p ? p : config_str(g->cfg, "default_policy");
}

json_t *allowed_json(json_t *allowed, long long *expires)
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

json_t *home_json(struct guard *g)
{
    json_t *h = json_array();
    for (int i = 0; i < g->n_home; i++) {
        json_array_append_new(h, json_string(g->home[i]));
    }
    return h;
}

/* ---- GET /v1/accounts/{id}/status ---- */

/* The account's status JSON (heap, caller frees) from the cache, or loaded and cached. Returns
 * DB_OK, or a db error with err filled. */
static int status_text(struct guard *g, const char *id, char **out, char *err, size_t err_len)
{
    long long now = (long long)time(NULL);
    *out = NULL;
    pthread_rwlock_rdlock(&g->mu);
    for (struct cache_entry *e = g->buckets[hash_id(id)]; e; e = e->next) {
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
    struct cache_entry *e = xmalloc(sizeof(*e) + idlen + 1);
    memcpy(e->id, id, idlen + 1);
    e->status = xstrdup(text);
    e->expires = expires;
    pthread_rwlock_wrlock(&g->mu);
    if (g->n_cached >= config_int(g->cfg, "cache_max")) {
        cache_clear_locked(g);
    }
    struct cache_entry **pp = &g->buckets[hash_id(id)];
    while (*pp && strcmp((*pp)->id, id) != 0) {
        pp = &(*pp)->next;
    }
    if (*pp) { /* another thread loaded it meanwhile: replace (both read committed state) */
        struct cache_entry *old = *pp;
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

/* Whether a login from ip (in country) would be admitted now, by the status st (the cached
 * JSON, parsed) and the brute-force throttle: sets "admit", "reason" and "retry_after". Reasons,
 * first that applies: "locked" and "blocked_abroad" (retry_after null: the answer changes only
 * by the player's or support's action, not by waiting), then "brute_force" (retry_after: the
 * seconds until logins of the account, or from the address, are admitted again). */
static void status_admit(struct guard *g, json_t *st, const char *id, const char *ip,
                         const char *country)
{
    const char *reason = NULL;
    long long wait = 0;
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
    if (!reason) {
        wait = throttle_wait(g, id, ip);
        reason = wait > 0 ? "brute_force" : NULL;
    }
    json_object_set_new(st, "admit", json_boolean(reason == NULL));
    json_object_set_new(st, "reason", reason ? json_string(reason) : json_null());
    json_object_set_new(st, "retry_after", wait > 0 ? json_integer(wait) : json_null());
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
    if (auth_clients_find(&g->status_clients, tok)) {
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
        status_admit(g, st, id, ip, country);
    }
    if (caller == 1) { /* a login server needs the verdict, not the player's settings or trips */
        json_object_del(st, "policy");
        json_object_del(st, "home_countries");
        json_object_del(st, "allowed_countries");
    }
    http_respond_json(ex, 200, st);
}

void account_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "GET", "/v1/accounts/{}/status", handle_status, g, 0);
}
