/* support.c - the support console's API (see guard.h): the audit trail (with ticket
 * references), find an account, its details and lock history (guard.lock_events, written in the
 * transaction of each lock and unlock), and support's actions: lock now, reset contacts or
 * policy, each with a reason and a ticket reference, audited and told to the player. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
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
                "reason, ticket FROM guard.audit WHERE ($1::text IS NULL OR account_id = $1) "
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
    if (account_load_or_answer(g, ex, id, NULL, &acct, &allowed) != 0) {
        return;
    }
    char err[512];
    const char *p[] = {id};
    int rc = db_exec(g->db, SQL_SUPPORT_ACCOUNT, p, 1, &extra, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(acct);
        json_decref(allowed);
        json_decref(extra);
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

/* ---- support actions: lock now, reset contacts or policy ---- */

int staff_note(struct http_exchange *ex, json_t *b, const char **reason, const char **ticket)
{
    *reason = json_string_value(json_object_get(b, "reason"));
    json_t *t = json_object_get(b, "ticket");
    *ticket = json_string_value(t);
    if (!*reason || strspn(*reason, " \t\r\n") == strlen(*reason) || strlen(*reason) > 1000) {
        http_respond_error(ex, 400, "reason_required", NULL,
                           "\"reason\" (1-1000 characters) is required");
        return -1;
    }
    if ((t && !json_is_null(t) && !*ticket) ||
        (*ticket && (!**ticket || strlen(*ticket) > 64 ||
                     strspn(*ticket, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-_.#/:") != strlen(*ticket)))) {
        http_respond_error(ex, 400, "bad_ticket", NULL,
                           "\"ticket\" is a ticket reference: 1-64 letters, digits or -_.#/:");
        return -1;
    }
    return 0;
}

json_t *staff_body(struct http_exchange *ex, const char **reason, const char **ticket)
{
    json_t *b = body_object(ex);
    if (b && staff_note(ex, b, reason, ticket) != 0) {
        json_decref(b);
        b = NULL;
    }
    return b;
}

/* The account.action that ends every live session of an account support locks (caller owns): a
 * kick naming no session (gamesim ends them all), reason support_lock. It tells no one
 * ("channels" empty): the player hears of the lock once, by the staff_lock notice. There is no
 * login: the login id names this lock, the country is unknown (ZZ), the address empty, the time
 * now. */
static json_t *support_lock_kick(const char *id)
{
    char login_id[32 + ID_UUID_LEN], ts[32], uuid[ID_UUID_LEN + 1];
    id_uuid7(uuid);
    snprintf(login_id, sizeof(login_id), "support-lock-%s", uuid);
    app_time_rfc3339(ts);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:[s]}", "account_id", id, "action",
                     ACTION_NAMES[ACTION_KICK], "login_id", login_id, "country", "ZZ", "ip", "",
                     "ts", ts, "channels", "reasons", "support_lock");
}

/* POST /v1/support/accounts/{id}/lock {"reason", "ticket"}: locks the account now (the player
 * can no longer log in; only support unlocks it: no code is sent) and ends its live game
 * sessions (an account.action kick queued with the lock). Recorded in the lock history and the
 * audit trail, told to the player once (staff_lock). Locking a locked account changes nothing
 * (no second kick: a locked account has no session to end) but is audited and told. */
static void handle_support_lock(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_STAFF, &who);
    if (!id) {
        return;
    }
    const char *reason, *ticket;
    json_t *b = staff_body(ex, &reason, &ticket);
    json_t *acct, *allowed;
    if (!b || account_load_or_answer(g, ex, id, b, &acct, &allowed) != 0) {
        return;
    }
    char err[512];
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    const char *p[] = {id, who.subject, reason, ticket};
    const char *p_acct[] = {id, config_str(g->cfg, "default_policy")};
    struct db_stmt st[5] = {
        /* in the lock history only when it was not locked already */
        {"INSERT INTO guard.lock_events (account_id, event, actor, staff, reason) "
         "SELECT $1, 'locked', 'staff', $2, $3 WHERE NOT EXISTS "
         "(SELECT 1 FROM guard.accounts WHERE account_id = $1 AND locked)",
         p, 3},
        {NULL, NULL, 0}, /* the kick (below), before the lock it tests for */
        {"INSERT INTO guard.accounts (account_id, policy, locked) VALUES ($1, $2, true) "
         "ON CONFLICT (account_id) DO UPDATE SET locked = true, updated_at = now()",
         p_acct, 2},
        {"INSERT INTO guard.audit (staff, action, account_id, reason, ticket) "
         "VALUES ($2, 'lock', $1, $3, $4)",
         p, 4},
    };
    struct outbox_msg msg[2];
    outbox_event_init_unless_locked(&msg[0], &st[1], "account.action", support_lock_kick(id), id);
    outbox_msg_init(&msg[1], &st[4], id, "staff_lock", player_channels(email, phone), email, phone,
                    json_pack("{s:s}", "staff", who.subject));
    int rc = db_exec_tx(g->db, st, 5, err, sizeof(err));
    outbox_msg_release(msg, 2);
    json_decref(acct);
    json_decref(allowed);
    json_decref(b);
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    cache_drop(g, id);
    log_info("account %s locked by staff %s", id, who.subject);
    http_respond_json(
        ex, 200,
        json_pack("{s:s, s:b, s:s}", "account_id", id, "locked", 1, "locked_by", who.subject));
}

/* POST /v1/support/accounts/{id}/reset {"what": "contacts"|"policy", "reason", "ticket"}:
 * contacts: the email and phone removed (and pending changes dropped), messages in-game only;
 * the old contacts hear of it. policy: back to default_policy, no allowed countries. 404 for an
 * account without settings. */
static void handle_support_reset(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_STAFF, &who);
    if (!id) {
        return;
    }
    json_t *b = body_object(ex);
    const char *reason, *ticket;
    if (!b) {
        return;
    }
    const char *what = json_string_value(json_object_get(b, "what"));
    bool is_contacts = what && strcmp(what, "contacts") == 0;
    if (!what || (!is_contacts && strcmp(what, "policy") != 0)) {
        json_decref(b);
        http_respond_error(ex, 400, "bad_request", NULL, "\"what\" must be contacts or policy");
        return;
    }
    if (staff_note(ex, b, &reason, &ticket) != 0) {
        json_decref(b);
        return;
    }
    json_t *acct, *allowed;
    if (account_load_or_answer(g, ex, id, b, &acct, &allowed) != 0) {
        return;
    }
    if (json_array_size(acct) == 0) {
        json_decref(acct);
        json_decref(allowed);
        json_decref(b);
        http_respond_error(ex, 404, "unknown_account", NULL,
                           "the account has no settings to reset");
        return;
    }
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    const char *p[] = {id};
    const char *p_policy[] = {id, config_str(g->cfg, "default_policy")};
    const char *p_audit[] = {id, who.subject, reason, ticket,
                             is_contacts ? "contacts_reset" : "policy_reset"};
    struct db_stmt st[4];
    if (is_contacts) {
        st[0] = (struct db_stmt){"UPDATE guard.accounts SET email = NULL, phone = NULL, "
                                 "channels = '[\"ingame\"]', updated_at = now() "
                                 "WHERE account_id = $1",
                                 p, 1};
        st[1] = (struct db_stmt){"DELETE FROM guard.pending_contacts WHERE account_id = $1", p, 1};
    } else {
        st[0] = (struct db_stmt){"UPDATE guard.accounts SET policy = $2, updated_at = now() "
                                 "WHERE account_id = $1",
                                 p_policy, 2};
        st[1] = (struct db_stmt){"DELETE FROM guard.allowed WHERE account_id = $1", p, 1};
    }
    st[2] = (struct db_stmt){"INSERT INTO guard.audit (staff, action, account_id, reason, ticket) "
                             "VALUES ($2, $5, $1, $3, $4)",
                             p_audit, 5};
    /* told on the channels in effect before the reset: the owner of the old contacts hears */
    struct outbox_msg msg;
    outbox_msg_init(&msg, &st[3], id, "staff_reset", player_channels(email, phone), email, phone,
                    json_pack("{s:s, s:s}", "staff", who.subject, "what", what));
    char err[512];
    int rc = db_exec_tx(g->db, st, 4, err, sizeof(err));
    outbox_msg_release(&msg, 1);
    json_decref(acct);
    json_decref(allowed);
    if (rc != DB_OK) {
        json_decref(b);
        db_fail(ex, rc, err);
        return;
    }
    cache_drop(g, id);
    log_info("account %s: %s reset by staff %s", id, what, who.subject);
    http_respond_json(
        ex, 200, json_pack("{s:s, s:s, s:s}", "account_id", id, "reset", what, "by", who.subject));
    json_decref(b); /* what is b's */
}

void support_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "POST", "/v1/support/accounts/{}/lock", handle_support_lock, g, 8192);
    http_server_route(srv, "POST", "/v1/support/accounts/{}/reset", handle_support_reset, g, 8192);
    http_server_route(srv, "GET", "/v1/support/audit", handle_audit, g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts", handle_support_find, g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts/{}", handle_support_account, g, 0);
    http_server_route(srv, "GET", "/v1/support/accounts/{}/locks", handle_support_locks, g, 0);
}
