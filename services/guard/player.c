/* player.c - the player API (see guard.h): the account's policy, allowed countries and
 * contacts.
 *
 * While the account is locked its contacts cannot change and its policy can only get stricter
 * (423); notify and lock need a verified channel (422). Every change is audited and told to the
 * player through the outbox, in the change's transaction. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "guard.h"
#include "log.h"
#include "seal.h"

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
    if (account_load_or_answer(g, ex, id, NULL, &acct, &allowed) != 0) {
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
    /* the player's language and zone (sql/guard/005): what every message to them uses */
    const char *p[] = {id, config_str(g->cfg, "default_lang")};
    json_t *lt = NULL;
    char err[512];
    int rc = db_exec(g->db,
                     "SELECT coalesce(a.lang, $2) AS lang, a.tz FROM (SELECT $1::text AS id) k "
                     "LEFT JOIN guard.accounts a ON a.account_id = k.id",
                     p, 2, &lt, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(lt);
        json_decref(out);
        db_fail(ex, rc, err);
        return;
    }
    const char *tz = row_str(lt, 0, "tz");
    json_object_set_new(out, "lang", json_string(row_str(lt, 0, "lang")));
    json_object_set_new(out, "tz", tz ? json_string(tz) : json_null());
    json_decref(lt);
    http_respond_json(ex, 200, out);
}

/* True when the new settings protect less than the current ones: a milder action, a channel
 * dropped, a country allowed that was not, or allowed longer. */
static bool policy_weakens(struct guard *g, json_t *acct, json_t *cur_allowed, const char *action,
                           json_t *channels, const char *const *countries,
                           const char *const *untils, size_t n_allowed)
{
    if (action_index(action) < action_index(acct_policy(g, acct))) {
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
    if (action_index(action) < 0) {
        bad = "\"action\" must be one of none, notify, kick, block_abroad, lock";
    } else if (channels && !json_is_array(channels)) {
        bad = "\"channels\" must be an array";
    } else if (allowed && !json_is_array(allowed)) {
        bad = "\"allowed_countries\" must be an array";
    } else if (json_array_size(allowed) > MAX_ALLOWED) {
        bad = "too many allowed countries";
    }
    /* "lang" ko|en and "tz" an IANA zone name (null: the language's), each kept when absent */
    json_t *lang_v = json_object_get(b, "lang"), *tz_v = json_object_get(b, "tz");
    const char *lang = json_string_value(lang_v), *tz = json_string_value(tz_v);
    if (!bad && lang_v && !json_is_null(lang_v) &&
        (!lang || (strcmp(lang, "ko") != 0 && strcmp(lang, "en") != 0))) {
        bad = "\"lang\" must be \"ko\" or \"en\"";
    } else if (!bad && tz_v && !json_is_null(tz_v) &&
               (!tz || !*tz || strlen(tz) > 64 ||
                strspn(tz, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") !=
                    strlen(tz))) {
        bad = "\"tz\" must be a time zone name like \"Asia/Seoul\"";
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
    if (account_load_or_answer(g, ex, id, b, &acct, &cur_allowed) != 0) {
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
    struct db_stmt st[7 + MAX_ALLOWED];
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
    /* lang and tz: set when given (tz null: back to the language's zone), else kept; a zone
     * PostgreSQL does not know fails the transaction (400) */
    const char *p_lt[] = {id, lang, tz, tz_v && json_is_null(tz_v) ? "1" : NULL};
    const char *p_tz[] = {tz};
    if (tz) {
        st[n++] = (struct db_stmt){"SELECT now() AT TIME ZONE $1::text", p_tz, 1};
    }
    st[n++] = (struct db_stmt){"UPDATE guard.accounts SET lang = coalesce($2::text, lang), "
                               "tz = CASE WHEN $4::text IS NOT NULL THEN NULL "
                               "ELSE coalesce($3::text, tz) END WHERE account_id = $1",
                               p_lt, 4};
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
    char err[512];
    int rc = db_exec_tx(g->db, st, n, err, sizeof(err));
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
    if (rc == DB_EQUERY && strstr(err, "time zone")) {
        http_respond_error(ex, 400, "bad_request", NULL, "\"tz\" is not a known time zone");
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
    if (account_load_or_answer(g, ex, id, b, &acct, &allowed) != 0) {
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
    char salt[2][CODE_SALT_LEN + 1], hash[2][CRYPTO_SHA256_HEX_LEN + 1], ttl[24], reason[2][400];
    const char *p_pending[2][6], *p_audit[2][3], *p_remove[1] = {id};
    snprintf(ttl, sizeof(ttl), "%lld", config_int(g->cfg, "contact_code_ttl_s"));
    assert_unlocked(&st[n++], p_id);
    st[n++] = (struct db_stmt){"INSERT INTO guard.accounts (account_id, policy) VALUES ($1, $2) "
                               "ON CONFLICT (account_id) DO NOTHING",
                               p_row, 2};
    json_t *pending = json_array();
    char err[512];
    int rc = DB_OK;
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
            char code[CODE_LEN + 1], sctx[ID_MAX + 16], *sealed = NULL;
            new_code(code);
            code_salt_new(salt[c]);
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
    char none[64], err[512];
    snprintf(none, sizeof(none), "no %s change is waiting for a code", channel);
    const char *p[] = {id, channel};
    const struct code_check check = {
        .spend_sql = "UPDATE guard.pending_contacts SET attempts = attempts + 1 "
                     "WHERE account_id = $1 AND channel = $2 AND attempts < $3::int "
                     "RETURNING value, salt, hash, attempts::text AS attempts, "
                     "(expires_at < now())::text AS expired",
        .exists_sql = "SELECT 1 FROM guard.pending_contacts WHERE account_id = $1 AND channel = $2",
        .keys = {id, channel},
        .n_keys = 2,
        .exhausted_status = 409,
        .exhausted_message = "too many wrong codes: ask for the change again to get a new code",
        .none_error = "no_pending_change",
        .none_message = none,
        .expired_message = "the code has expired: ask for the change again",
    };
    json_t *rows = NULL;
    if (code_spend(g, ex, &check, code, &rows) != 0) {
        json_decref(b); /* channel and code were borrowed from it */
        return;
    }
    json_t *acct, *allowed;
    if (account_load_or_answer(g, ex, id, b, &acct, &allowed) != 0) {
        json_decref(rows);
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
    int rc = db_exec_tx(g->db, st, n, err, sizeof(err));
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

void player_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "GET", "/v1/accounts/{}/policy", handle_get_policy, g, 0);
    http_server_route(srv, "PUT", "/v1/accounts/{}/policy", handle_put_policy, g, 65536);
    http_server_route(srv, "PUT", "/v1/accounts/{}/contacts", handle_put_contacts, g, 4096);
    http_server_route(srv, "POST", "/v1/accounts/{}/contacts/confirm", handle_confirm_contact, g,
                      4096);
}
