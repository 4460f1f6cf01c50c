/* support.c - the support console's API (see guard.h): the audit trail, find an account, its
 * details and lock history (guard.lock_events, written in the transaction of each lock and
 * unlock). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "log.h"

/* GET /v1/support/audit?account_id=: the latest 100 entries of the audit trail. */
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

void support_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "GET", "/v1/support/audit", handle_audit, g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts", handle_support_find, g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts/{}", handle_support_account, g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts/{}/locks", handle_support_locks, g, 0);
}
