/* decide.c - the bus delivery (route `guard`, streaming): POST /v1/deliveries/login.checked
 * (see guard.h and main.c's overview). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "guard.h"
#include "log.h"

/* The outcome db_fail answers, for a delivery item. */
void item_db_fail(struct delivery_item *it, int rc, const char *err)
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

/* The fields of a login.checked event guard reads (borrowed from the event). */
struct login {
    const char *account, *login_id, *country, *ip, *ts;
};

/* Step 1: the event's fields; -1 when one is missing or invalid. A login without its own
 * login_id is known by the event's id. */
static int login_read(const struct delivery_item *it, struct login *l)
{
    json_t *ev = it->event;
    l->account = ev_str(ev, "account_id");
    l->country = ev_str(ev, "country");
    l->login_id = ev_str(ev, "login_id");
    l->ip = ev_str(ev, "ip");
    l->ts = ev_str(ev, "ts");
    if (!l->login_id || !*l->login_id) {
        l->login_id = it->id;
    }
    if (!valid_id(l->account) || !valid_id(l->login_id) || !valid_country(l->country) || !l->ip ||
        !l->ts) {
        return -1;
    }
    return 0;
}

/* Step 2: a country that never triggers a policy: a home country, or an unknown one (ZZ) when
 * ignore_unknown_country is set. */
static bool is_country_exempt(struct guard *g, const char *country)
{
    for (int i = 0; i < g->n_home; i++) {
        if (strcmp(country, g->home[i]) == 0) {
            return true;
        }
    }
    return strcmp(country, "ZZ") == 0 && config_bool(g->cfg, "ignore_unknown_country");
}

/* Step 3: in one round trip, a decision already stored for this login (a redelivery gets the
 * same answer), the account's settings and the countries it allows now. *row is owned by the
 * caller: one row, with "decided" the stored event or NULL. */
static int login_account_load(struct guard *g, const struct login *l, json_t **row, char *err,
                              size_t err_len)
{
    const char *pl[] = {l->account, l->login_id};
    return db_exec(g->db,
                   "SELECT d.event AS decided, a.policy, a.channels, a.email, a.phone, "
                   "(SELECT coalesce(json_agg(json_build_object('country', al.country)), '[]') "
                   "FROM guard.allowed al WHERE al.account_id = $1 "
                   "AND (al.until IS NULL OR al.until > now()))::text AS allowed "
                   "FROM (SELECT $1::text AS id) k "
                   "LEFT JOIN guard.accounts a ON a.account_id = k.id "
                   "LEFT JOIN guard.decisions d ON d.account_id = $1 AND d.login_id = $2",
                   pl, 2, row, NULL, err, err_len);
}

/* Step 4: whether the account allows logins from country now (row from login_account_load). */
static bool is_country_allowed(json_t *row, const char *country)
{
    json_error_t aerr;
    json_t *allowed =
        json_loads(row_str(row, 0, "allowed") ? row_str(row, 0, "allowed") : "[]", 0, &aerr);
    bool is_allowed = false;
    for (size_t i = 0; i < json_array_size(allowed); i++) {
        if (strcmp(row_str(allowed, i, "country"), country) == 0) {
            is_allowed = true;
        }
    }
    json_decref(allowed);
    return is_allowed;
}

/* Step 5: the account.action event of the login (caller owns), by the account's settings row,
 * with the reasons the policy acts on. */
static json_t *action_event_new(json_t *row, const struct login *l, json_t *ev, const char *policy,
                                unsigned reasons)
{
    const char *ch = row_str(row, 0, "channels");
    json_error_t jerr;
    json_t *channels = json_loads(ch ? ch : "[\"ingame\"]", 0, &jerr);
    const char *email = row_str(row, 0, "email"), *phone = row_str(row, 0, "phone");
    json_t *out =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:{s:o, s:o}}", "account_id", l->account,
                  "action", policy, "login_id", l->login_id, "country", l->country, "ip", l->ip,
                  "ts", l->ts, "channels", channels ? channels : json_array(), "contacts", "email",
                  email ? json_string(email) : json_null(), "phone",
                  phone ? json_string(phone) : json_null());
    json_object_set_new(out, "reasons", reasons_json(reasons));
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
    return out;
}

/* Step 6 (lock): a lock's code, minted once here into code and added to out sealed for notify;
 * it is otherwise kept only as a salted hash (decision_store) and, sealed, in the decision
 * itself (answered again as stored on a redelivery). -1 when it cannot be sealed. */
static int lock_code_add(struct guard *g, const char *account, json_t *out, char code[CODE_LEN + 1])
{
    char sctx[ID_MAX + 16], *sealed = NULL;
    new_code(code);
    seal_context("unlock", account, sctx, sizeof(sctx));
    if (seal_seal(g->seal, sctx, code, &sealed) != 0) {
        return -1;
    }
    json_object_set_new(out, "sealed_code", json_string(sealed));
    free(sealed);
    return 0;
}

/* Step 7: the decision stored in one transaction, and for a lock the code's salted hash, the
 * account locked and the lock history's entry. DB_ECONFLICT when a concurrent copy of this
 * delivery stored its decision first. */
static int decision_store(struct guard *g, const struct login *l, const char *policy, json_t *out,
                          const char *code, char *err, size_t err_len)
{
    char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    const char *pd[] = {l->login_id, l->account, policy, text};
    struct db_stmt st[4];
    size_t n = 0;
    st[n++] = (struct db_stmt){"INSERT INTO guard.decisions (login_id, account_id, action, event) "
                               "VALUES ($1, $2, $3, $4)",
                               pd, 4};
    char salt[CODE_SALT_LEN + 1], hash[CRYPTO_SHA256_HEX_LEN + 1], ttl[24];
    const char *pc[5] = {l->account, l->login_id, salt, hash, ttl};
    const char *pe[4] = {l->account, l->login_id, l->country,
                         json_string_value(json_object_get(out, "ip"))};
    if (strcmp(policy, "lock") == 0) {
        code_salt_new(salt);
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
    int rc = db_exec_tx(g->db, st, n, err, err_len);
    free(text);
    return rc;
}

/* Step 8 (a concurrent copy of this delivery won): answer what it stored. */
static void decide_as_stored(struct guard *g, struct delivery_item *it, const struct login *l)
{
    const char *pl[] = {l->account, l->login_id};
    json_t *rows = NULL;
    char err[512];
    int rc =
        db_exec(g->db, "SELECT event FROM guard.decisions WHERE account_id = $1 AND login_id = $2",
                pl, 2, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK || json_array_size(rows) == 0) {
        json_decref(rows);
        item_db_fail(it, rc == DB_OK ? DB_EUNAVAILABLE : rc, err);
        return;
    }
    stored_decision(it, row_str(rows, 0, "event"));
    json_decref(rows);
}

/* Decides one login.checked event: 204 when it needs nothing, else 200 with the account.action
 * event as its output (the stored one for a login already decided); 422 for an incomplete event;
 * 503 with Retry-After 1 while the database is unavailable, 500 on its errors (a
 * delivery_decide_fn; ctx is the guard). */
/* What deciding a delivery's logins shares: the guard and the delivery's signals. */
struct decide_ctx {
    struct guard *g;
    struct signals_batch *signals;
};

static void guard_decide(void *ctx, struct delivery_item *it)
{
    struct decide_ctx *dc = ctx;
    struct guard *g = dc->g;
    struct login l;
    if (login_read(it, &l) != 0) {
        delivery_item_fail(it, 422, "invalid_event",
                           "account_id, login_id, country, ip and ts are required");
        return;
    }
    it->status = 204;
    char err[512];
    int rc = throttle_login_ok(g, l.account, err, sizeof(err));
    if (rc != DB_OK) {
        item_db_fail(it, rc, err);
        return;
    }
    bool is_exempt = is_country_exempt(g, l.country);
    unsigned reasons = signals_of(g, dc->signals, l.account, l.country, l.ts);
    if (is_exempt) { /* recorded (the next login's previous one), never acted on */
        return;
    }
    json_t *row = NULL;
    rc = login_account_load(g, &l, &row, err, sizeof(err));
    if (rc != DB_OK) {
        item_db_fail(it, rc, err);
        return;
    }
    if (row_str(row, 0, "decided")) { /* a redelivery: the same answer again */
        stored_decision(it, row_str(row, 0, "decided"));
        json_decref(row);
        return;
    }
    char policy[16];
    snprintf(policy, sizeof(policy), "%s", acct_policy(g, row));
    if (is_country_allowed(row, l.country)) {
        reasons &= ~REASON_NEW_COUNTRY; /* the player said they would be there */
    } else if (config_bool(g->cfg, "signals.abroad")) {
        reasons |= REASON_ABROAD;
    }
    if (reasons == 0 || strcmp(policy, "none") == 0) {
        json_decref(row);
        return;
    }
    json_t *out = action_event_new(row, &l, it->event, policy, reasons);
    json_decref(row);
    char code[CODE_LEN + 1] = "";
    if (strcmp(policy, "lock") == 0 && lock_code_add(g, l.account, out, code) != 0) {
        json_decref(out);
        delivery_item_fail(it, 500, "internal", "cannot seal the unlock code");
        return;
    }
    /* the player's language and the "was it you?" link (answer.c), stored with the decision so
     * a redelivery re-emits the same link */
    rc = answer_link_add(g, out, err, sizeof(err));
    if (rc != DB_OK) {
        explicit_bzero(code, sizeof(code));
        json_decref(out);
        item_db_fail(it, rc, err);
        return;
    }
    rc = decision_store(g, &l, policy, out, code, err, sizeof(err));
    explicit_bzero(code, sizeof(code));
    if (rc == DB_ECONFLICT) {
        json_decref(out);
        decide_as_stored(g, it, &l);
        return;
    }
    if (rc != DB_OK) {
        json_decref(out);
        item_db_fail(it, rc, err);
        return;
    }
    cache_drop(g, l.account);
    metric_inc(g->m_actions);
    char trace_id[33];
    log_ev(LOG_LEVEL_INFO, trace_id_of(it->traceparent, trace_id), it->id,
           "login %s of %s from %s: %s", l.login_id, l.account, l.country, policy);
    it->status = 200;
    it->output = out;
}

/* Leaves an item as it is (decided already, or to be set to 503 by delivery_decide_all). */
static void decide_nothing(void *ctx, struct delivery_item *it)
{
    (void)ctx;
    (void)it;
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
    /* the signals' rows of the delivery's accounts, in one statement */
    const char **accounts = xcalloc(b.n, sizeof(*accounts));
    size_t n = 0;
    for (size_t i = 0; i < b.n; i++) {
        struct login l;
        if (login_read(&b.items[i], &l) == 0) {
            accounts[n++] = l.account;
        }
    }
    struct signals_batch signals;
    char err[512];
    int rc = signals_begin(g, accounts, n, &signals, err, sizeof(err));
    free(accounts);
    if (rc != DB_OK) {
        item_db_fail(&b.items[0], rc, err); /* the rest is not decided: retried with it */
        delivery_decide_all(&b, decide_nothing, NULL);
        delivery_answer(ex, &b);
        return;
    }
    struct decide_ctx dc = {.g = g, .signals = &signals};
    delivery_decide_all(&b, guard_decide, &dc);
    /* recorded only when every login is decided (none to retry, none refused): a delivery sent
     * again must see the countries as this one did */
    bool is_done = true;
    for (size_t i = 0; i < b.n; i++) {
        is_done = is_done && b.items[i].status >= 200 && b.items[i].status < 300;
    }
    if (is_done && (rc = signals_commit(g, &signals, err, sizeof(err))) != DB_OK) {
        for (size_t i = 0; i < b.n; i++) { /* decisions are stored: a redelivery answers them */
            json_decref(b.items[i].output);
            b.items[i].output = NULL;
            item_db_fail(&b.items[i], rc, err);
        }
    }
    signals_batch_release(&signals);
    delivery_answer(ex, &b);
}

void decide_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "POST", "/v1/deliveries/login.checked", handle_login, g,
                      DELIVERY_MAX_BODY_BYTES);
}
