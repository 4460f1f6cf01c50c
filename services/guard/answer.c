/* answer.c - "was it you?": the link every alert carries and the player's answer (see guard.h).
 *
 * Every account.action event guard decides (notify, kick, block_abroad, lock) gets a one-time
 * link to the player page: <answers.page_url>#answer=<token>, the token 32 bytes from the
 * CSPRNG. guard keeps only the token's SHA-256 (guard.answers, one row per alert, expiring after
 * answers.ttl_s); the link travels sealed for notify (seal.h, context "answer\n<account>"), as
 * unlock codes do, so no topic, dead letter or log line holds it in the clear. The token sits in
 * the URL's fragment: browsers send it to no server and no Referer.
 *
 * GET /v1/answers/{token} says what is asked (the login's time, country, address, server; no
 * secret) and POST /v1/answers/{token} {"answer": "me"|"not_me", ...} answers, once: the row is
 * claimed in the answer's transaction (guard.answer_claim), so the effects happen at most once;
 * a used or expired link is 410. "not_me" secures the account at once, as the player chose:
 * "lock" (the default: locked, a new unlock code sent, every session ended) or "end_sessions"
 * (an account.action kick naming no session: gamesim ends them all). "me" may allow the
 * login's country for allow_days (guard.allowed with an until: the decision and the status API
 * stop honouring it when it passes). Both are audited (support sees them in the audit trail and
 * in GET /v1/support/accounts/{id}/answers) and told to the player. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "guard.h"
#include "log.h"
#include "seal.h"

#define ANSWER_TOKEN_BYTES 32
#define ANSWER_TOKEN_LEN (2 * ANSWER_TOKEN_BYTES)

/* The zone of the player, in SQL: theirs, else their language's (tz.ko / tz.en); a = the
 * guard.accounts row (may be NULL), $L the default language, $K and $E the zones of ko and en. */
#define ZONE_SQL(L, K, E)                                                                          \
    "coalesce(a.tz, CASE coalesce(a.lang, " L ") WHEN 'en' THEN " E " ELSE " K " END)"

static void token_new(char out[ANSWER_TOKEN_LEN + 1])
{
    unsigned char raw[ANSWER_TOKEN_BYTES];
    random_bytes(raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    }
    explicit_bzero(raw, sizeof(raw));
}

static bool is_token(const char *t)
{
    return t && strlen(t) == ANSWER_TOKEN_LEN && strspn(t, "0123456789abcdef") == ANSWER_TOKEN_LEN;
}

static const char *str_of(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

int answer_link_add(struct guard *g, json_t *out, char *err, size_t err_len)
{
    const char *account = str_of(out, "account_id");
    char token[ANSWER_TOKEN_LEN + 1], hash[CRYPTO_SHA256_HEX_LEN + 1], ttl[24];
    token_new(token);
    crypto_sha256_hex(token, ANSWER_TOKEN_LEN, hash);
    snprintf(ttl, sizeof(ttl), "%lld", config_int(g->cfg, "answers.ttl_s"));
    const char *p[] = {hash,
                       account,
                       str_of(out, "login_id"),
                       str_of(out, "action"),
                       str_of(out, "country"),
                       str_of(out, "ip"),
                       str_of(out, "server"),
                       str_of(out, "ts"),
                       ttl,
                       config_str(g->cfg, "default_lang"),
                       config_str(g->cfg, "tz.ko"),
                       config_str(g->cfg, "tz.en")};
    json_t *rows = NULL;
    int rc =
        db_exec(g->db,
                "WITH ins AS (INSERT INTO guard.answers (token_hash, account_id, login_id, "
                "action, country, ip, server, login_ts, expires_at) VALUES ($1, $2, $3, $4, "
                "$5, $6, $7, $8, now() + make_interval(secs => $9::int))) "
                "SELECT z.lang, z.tz, guard.local_time($8, z.tz) AS local_time FROM "
                "(SELECT coalesce(a.lang, $10) AS lang, " ZONE_SQL(
                    "$10", "$11", "$12") " AS tz FROM (SELECT $2::text AS id) k "
                                         "LEFT JOIN guard.accounts a ON a.account_id = k.id) z",
                p, 12, &rows, NULL, err, err_len);
    if (rc != DB_OK) {
        json_decref(rows);
        explicit_bzero(token, sizeof(token));
        return rc;
    }
    const char *lang = row_str(rows, 0, "lang"), *tz = row_str(rows, 0, "tz");
    const char *local = row_str(rows, 0, "local_time");
    json_object_set_new(out, "lang", json_string(lang ? lang : "ko"));
    json_object_set_new(out, "tz", json_string(tz ? tz : "UTC"));
    json_object_set_new(out, "local_time", json_string(local ? local : str_of(out, "ts")));
    json_decref(rows);

    char link[SEAL_PLAIN_MAX + 1], sctx[ID_MAX + 16], *sealed = NULL;
    int n =
        snprintf(link, sizeof(link), "%s#answer=%s", config_str(g->cfg, "answers.page_url"), token);
    explicit_bzero(token, sizeof(token));
    seal_context("answer", account, sctx, sizeof(sctx));
    if (n < 0 || (size_t)n >= sizeof(link) || seal_seal(g->seal, sctx, link, &sealed) != 0) {
        explicit_bzero(link, sizeof(link));
        snprintf(err, err_len, "cannot seal the answer link");
        return DB_EQUERY;
    }
    explicit_bzero(link, sizeof(link));
    json_object_set_new(out, "sealed_answer", json_string(sealed));
    free(sealed);
    return DB_OK;
}

/* ---- GET and POST /v1/answers/{token} ---- */

/* The alert of the link in the path with its account's settings (*rows, caller owns); -1 after
 * answering (404 unknown link, database errors). hash receives the token's hash. */
static int answer_load(struct guard *g, struct http_exchange *ex, json_t **rows,
                       char hash[CRYPTO_SHA256_HEX_LEN + 1])
{
    const char *token = http_param(ex, 0);
    *rows = NULL;
    if (!is_token(token)) {
        http_respond_error(ex, 404, "unknown_link", NULL,
                           "this link is not known: use the link of the message as sent");
        return -1;
    }
    crypto_sha256_hex(token, ANSWER_TOKEN_LEN, hash);
    const char *p[] = {hash, config_str(g->cfg, "default_lang"), config_str(g->cfg, "tz.ko"),
                       config_str(g->cfg, "tz.en")};
    char err[512];
    int rc = db_exec(
        g->db,
        "SELECT n.token_hash, n.account_id, n.login_id, n.action, n.country, n.ip, n.server, "
        "n.login_ts, to_char(n.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
        "AS expires_at, (n.expires_at <= now())::text AS expired, n.answer, n.secured, "
        "coalesce(a.lang, $2) AS lang, guard.local_time(n.login_ts, " ZONE_SQL(
            "$2", "$3",
            "$4") ") AS local_time, " ZONE_SQL("$2", "$3",
                                               "$4") " AS tz, coalesce(a.locked, false)::text AS "
                                                     "locked, a.email, a.phone "
                                                     "FROM guard.answers n LEFT JOIN "
                                                     "guard.accounts a ON a.account_id = "
                                                     "n.account_id "
                                                     "WHERE n.token_hash = $1",
        p, 4, rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(*rows);
        *rows = NULL;
        db_fail(ex, rc, err);
        return -1;
    }
    const char *stored = row_str(*rows, 0, "token_hash");
    /* the lookup was by the hash; comparing again costs nothing and keeps the check local */
    if (!stored || !crypto_equal(stored, strlen(stored), hash, strlen(hash))) {
        json_decref(*rows);
        *rows = NULL;
        http_respond_error(ex, 404, "unknown_link", NULL,
                           "this link is not known: use the link of the message as sent");
        return -1;
    }
    return 0;
}

/* 410 when the alert was answered or its link expired; 0 when it can be answered. */
static int answer_gone(struct http_exchange *ex, json_t *rows)
{
    const char *answer = row_str(rows, 0, "answer");
    if (answer) {
        http_respond_error(ex, 410, "answered", json_pack("{s:s}", "answer", answer),
                           "this alert was already answered; if something is wrong, contact "
                           "support");
        return -1;
    }
    if (strcmp(row_str(rows, 0, "expired"), "true") == 0) {
        http_respond_error(ex, 410, "link_expired", NULL,
                           "this link has expired; if the login was not you, contact support");
        return -1;
    }
    return 0;
}

static json_t *nullable(const char *s)
{
    return s ? json_string(s) : json_null();
}

static void handle_get_answer(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    json_t *rows;
    char hash[CRYPTO_SHA256_HEX_LEN + 1];
    if (answer_load(g, ex, &rows, hash) != 0) {
        return;
    }
    if (answer_gone(ex, rows) != 0) {
        json_decref(rows);
        return;
    }
    const char *local = row_str(rows, 0, "local_time");
    json_t *out = json_pack(
        "{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:o}, s:s, s:b, s:{s:[ss], s:I}}",
        "account_id", row_str(rows, 0, "account_id"), "action", row_str(rows, 0, "action"), "lang",
        row_str(rows, 0, "lang"), "expires_at", row_str(rows, 0, "expires_at"), "login", "ts",
        row_str(rows, 0, "login_ts"), "local_time", local ? local : row_str(rows, 0, "login_ts"),
        "country", row_str(rows, 0, "country"), "ip", row_str(rows, 0, "ip"), "server",
        nullable(row_str(rows, 0, "server")), "tz", row_str(rows, 0, "tz"), "locked",
        strcmp(row_str(rows, 0, "locked"), "true") == 0, "choices", "secure", "lock",
        "end_sessions", "allow_days_max", (json_int_t)config_int(g->cfg, "answers.allow_days_max"));
    json_decref(rows);
    http_respond_json(ex, 200, out);
}

static bool is_exempt(struct guard *g, const char *country)
{
    for (int i = 0; i < g->n_home; i++) {
        if (strcmp(country, g->home[i]) == 0) {
            return true;
        }
    }
    return strcmp(country, "ZZ") == 0;
}

/* The account.action event that secures the account after a "not me" (caller owns): the
 * login's fields, what is done (lock: with the new code sealed; kick: every session ended, as
 * the event names none), the player's language and the reason. */
static json_t *not_me_event(json_t *rows, const char *action, const char *sealed_code)
{
    const char *email = row_str(rows, 0, "email"), *phone = row_str(rows, 0, "phone");
    const char *local = row_str(rows, 0, "local_time");
    json_t *contacts = json_object();
    if (email) {
        json_object_set_new(contacts, "email", json_string(email));
    }
    if (phone) {
        json_object_set_new(contacts, "phone", json_string(phone));
    }
    json_t *ev = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:[s], s:s}", "account_id",
        row_str(rows, 0, "account_id"), "action", action, "login_id", row_str(rows, 0, "login_id"),
        "country", row_str(rows, 0, "country"), "ip", row_str(rows, 0, "ip"), "ts",
        row_str(rows, 0, "login_ts"), "channels", player_channels(email, phone), "contacts",
        contacts, "lang", row_str(rows, 0, "lang"), "tz", row_str(rows, 0, "tz"), "local_time",
        local ? local : row_str(rows, 0, "login_ts"), "reasons", "not_me", "answer", "not_me");
    if (row_str(rows, 0, "server")) {
        json_object_set_new(ev, "server", json_string(row_str(rows, 0, "server")));
    }
    if (sealed_code) {
        json_object_set_new(ev, "sealed_code", json_string(sealed_code));
    }
    return ev;
}

static void handle_post_answer(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    json_t *rows = NULL, *b = NULL;
    char *sealed = NULL;
    char hash[CRYPTO_SHA256_HEX_LEN + 1];
    if (answer_load(g, ex, &rows, hash) != 0) {
        return;
    }
    if (answer_gone(ex, rows) != 0) {
        json_decref(rows);
        return;
    }
    b = body_object(ex);
    if (!b) {
        json_decref(rows);
        return;
    }
    const char *answer = str_of(b, "answer");
    const char *secure = str_of(b, "secure");
    json_t *days_v = json_object_get(b, "allow_days");
    long long max_days = config_int(g->cfg, "answers.allow_days_max");
    long long days = json_is_integer(days_v) ? (long long)json_integer_value(days_v) : 0;
    const char *bad = NULL;
    if (!answer || (strcmp(answer, "me") != 0 && strcmp(answer, "not_me") != 0)) {
        bad = "\"answer\" must be \"me\" or \"not_me\"";
    } else if (json_object_get(b, "secure") &&
               (!secure || (strcmp(secure, "lock") != 0 && strcmp(secure, "end_sessions") != 0))) {
        bad = "\"secure\" must be \"lock\" or \"end_sessions\"";
    } else if (days_v && (!json_is_integer(days_v) || days < 0 || days > max_days)) {
        bad = "\"allow_days\" must be a whole number of days from 0 to answers.allow_days_max";
    }
    if (bad) {
        http_respond_error(ex, 400, "bad_request", json_pack("{s:I}", "allow_days_max", max_days),
                           "%s", bad);
        goto out;
    }
    bool is_not_me = strcmp(answer, "not_me") == 0;
    bool is_locked = strcmp(row_str(rows, 0, "locked"), "true") == 0;
    const char *account = row_str(rows, 0, "account_id"), *country = row_str(rows, 0, "country");
    if (is_not_me) {
        days = 0;
        secure = secure ? secure : "lock";
    } else {
        secure = NULL;
        if (is_exempt(g, country)) {
            days = 0; /* a home or unknown country needs no allowance */
        }
        if (days > 0 && is_locked) {
            http_respond_error(ex, 423, "locked", NULL,
                               "the account is locked: unlock it with the code sent to you "
                               "first, or answer without allowing the country");
            goto out;
        }
    }
    char days_s[24], reason[600], sctx[ID_MAX + 16], err[512];
    snprintf(days_s, sizeof(days_s), "%lld", days);
    /* a lock mints a new unlock code (as a lock by the policy): the account is already locked
     * when its policy locked it, and then every session is ended without a second code */
    bool is_new_lock = is_not_me && strcmp(secure, "lock") == 0 && !is_locked;
    char code[CODE_LEN + 1] = "", salt[CODE_SALT_LEN + 1], code_h[CRYPTO_SHA256_HEX_LEN + 1];
    char ttl[24];
    if (is_new_lock) {
        new_code(code);
        code_salt_new(salt);
        code_hash(salt, code, code_h);
        seal_context("unlock", account, sctx, sizeof(sctx));
        int sr = seal_seal(g->seal, sctx, code, &sealed);
        explicit_bzero(code, sizeof(code));
        if (sr != 0) {
            http_respond_error(ex, 500, "internal", NULL, "cannot seal the unlock code");
            goto out;
        }
    }
    snprintf(ttl, sizeof(ttl), "%lld", config_int(g->cfg, "code_ttl_s"));
    snprintf(reason, sizeof(reason), "login %s from %s (%s) at %s: %s%s%s",
             row_str(rows, 0, "login_id"), country, row_str(rows, 0, "ip"),
             row_str(rows, 0, "login_ts"), is_not_me ? "not me; " : "it was me",
             is_not_me ? (strcmp(secure, "lock") == 0 ? "account locked, sessions ended"
                                                      : "sessions ended")
                       : "",
             "");
    if (!is_not_me && days > 0) {
        size_t rl = strlen(reason);
        snprintf(reason + rl, sizeof(reason) - rl, "; %s allowed for %lld days", country, days);
    }
    const char *p_claim[] = {hash, answer, secure, days_s};
    const char *p_acct[] = {account, config_str(g->cfg, "default_policy")};
    const char *p_code[] = {account, row_str(rows, 0, "login_id"), salt, code_h, ttl};
    const char *p_lock[] = {account, row_str(rows, 0, "login_id"), country, row_str(rows, 0, "ip")};
    const char *p_allow[] = {account, country, days_s};
    const char *p_audit[] = {account, is_not_me ? "answer_not_me" : "answer_me", reason};
    struct db_stmt st[8];
    struct outbox_msg msg;
    size_t n = 0;
    st[n++] = (struct db_stmt){"SELECT guard.answer_claim($1, $2, $3, $4::int)", p_claim, 4};
    if (is_new_lock) {
        st[n++] = (struct db_stmt){"INSERT INTO guard.accounts (account_id, policy, locked) "
                                   "VALUES ($1, $2, true) ON CONFLICT (account_id) DO UPDATE "
                                   "SET locked = true, updated_at = now()",
                                   p_acct, 2};
        st[n++] = (struct db_stmt){
            "INSERT INTO guard.codes (account_id, login_id, salt, hash, expires_at, attempts) "
            "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::int), 0) "
            "ON CONFLICT (account_id) DO UPDATE SET login_id = $2, salt = $3, hash = $4, "
            "expires_at = now() + make_interval(secs => $5::int), attempts = 0",
            p_code, 5};
        st[n++] = (struct db_stmt){"INSERT INTO guard.lock_events (account_id, event, actor, "
                                   "login_id, country, ip, reason) VALUES ($1, 'locked', "
                                   "'player', $2, $3, $4, 'not me')",
                                   p_lock, 4};
    }
    if (days > 0) {
        st[n++] = (struct db_stmt){
            "INSERT INTO guard.allowed (account_id, country, until) VALUES ($1, $2, now() + "
            "make_interval(days => $3::int)) ON CONFLICT (account_id, country) DO UPDATE SET "
            "until = CASE WHEN guard.allowed.until IS NULL THEN NULL "
            "ELSE greatest(guard.allowed.until, EXCLUDED.until) END",
            p_allow, 3};
    }
    st[n++] = (struct db_stmt){"INSERT INTO guard.audit (actor, action, account_id, reason) "
                               "VALUES ('player', $2, $1, $3)",
                               p_audit, 3};
    bool has_msg = is_not_me || days > 0;
    if (is_not_me) {
        outbox_event_init(&msg, &st[n++], "account.action",
                          not_me_event(rows, is_new_lock ? "lock" : "kick", sealed));
    } else if (days > 0) {
        const char *email = row_str(rows, 0, "email"), *phone = row_str(rows, 0, "phone");
        outbox_msg_init(&msg, &st[n++], account, "settings_changed", player_channels(email, phone),
                        email, phone, json_pack("{s:s}", "change", reason));
    }
    int rc = db_exec_tx(g->db, st, n, err, sizeof(err));
    if (has_msg) {
        outbox_msg_release(&msg, 1);
    }
    if (rc == DB_EQUERY && strstr(err, "answer_gone")) {
        http_respond_error(ex, 410, "answered", NULL,
                           "this alert was answered meanwhile, or its link expired");
        goto out;
    }
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        goto out;
    }
    cache_drop(g, account);
    log_info("account %s answered %s to an alert%s%s", account, answer, secure ? ": " : "",
             secure ? secure : "");
    json_t *res = json_pack("{s:s, s:s, s:b}", "account_id", account, "answer", answer, "locked",
                            is_locked || is_new_lock);
    if (is_not_me) {
        json_object_set_new(res, "secured", json_string(secure));
        json_object_set_new(res, "sessions_ended", json_true());
    } else {
        json_object_set_new(res, "allowed_days", json_integer(days));
        json_object_set_new(res, "country", json_string(country));
    }
    http_respond_json(ex, 200, res);
out:
    free(sealed);
    json_decref(b);
    json_decref(rows);
}

/* GET /v1/support/accounts/{id}/answers (staff): the account's alerts, newest first, and what
 * the player answered. */
static void handle_support_answers(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    struct auth_identity who;
    const char *id = account_param(g, ex, CALLER_STAFF, &who);
    if (!id) {
        return;
    }
    const char *p[] = {id};
    json_t *rows = NULL;
    char err[512];
    int rc = db_exec(g->db,
                     "SELECT login_id, action, country, ip, server, login_ts AS ts, "
                     "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                     "AS alerted_at, answer, secured, "
                     "to_char(answered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                     "AS answered_at, "
                     "to_char(allow_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                     "AS allowed_until, (answer IS NULL AND expires_at <= now())::text AS expired "
                     "FROM guard.answers WHERE account_id = $1 ORDER BY created_at DESC LIMIT 100",
                     p, 1, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(rows);
        db_fail(ex, rc, err);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *r = json_array_get(rows, i);
        json_t *e = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(r, k, v)
        {
            if (strcmp(k, "expired") == 0) {
                json_object_set_new(e, k, json_boolean(strcmp(json_string_value(v), "true") == 0));
            } else {
                json_object_set(e, k, v);
            }
        }
        json_array_append_new(list, e);
    }
    json_decref(rows);
    http_respond_json(ex, 200, json_pack("{s:s, s:o}", "account_id", id, "answers", list));
}

void answer_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "GET", "/v1/answers/{}", handle_get_answer, g, 0);
    http_server_route(srv, "POST", "/v1/answers/{}", handle_post_answer, g, 4096);
    http_server_route(srv, "GET", "/v1/support/accounts/{}/answers", handle_support_answers, g, 0);
}
