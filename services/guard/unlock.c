/* unlock.c - one-time codes and the unlock routes (see guard.h). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "guard.h"
#include "log.h"

/* ---- codes ---- */

/* A new one-time code (unlock or contact confirmation): 8 decimal digits, uniform, from the
 * system CSPRNG (nothing a caller chose, such as the login's ce-id, goes into it). */
void new_code(char out[CODE_LEN + 1])
{
    uint32_t v;
    do { /* 42 * 10^8 <= 2^32: rejecting the rest leaves every code equally likely */
        random_bytes(&v, sizeof(v));
    } while (v >= 4200000000u);
    snprintf(out, CODE_LEN + 1, "%08u", (unsigned)(v % 100000000u));
}

void code_salt_new(char out[CODE_SALT_LEN + 1])
{
    unsigned char raw[CODE_SALT_LEN / 2];
    random_bytes(raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    }
}

/* The context a code is sealed for: the account, and what the code is for. */
void seal_context(const char *purpose, const char *account, char *out, size_t len)
{
    snprintf(out, len, "%s\n%s", purpose, account);
}

void code_hash(const char *salt, const char *code, char out[CRYPTO_SHA256_HEX_LEN + 1])
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s:%s", salt, code);
    crypto_sha256_hex(buf, (size_t)n, out);
}

int code_spend(struct guard *g, struct http_exchange *ex, const struct code_check *c,
               const char *code, json_t **rows)
{
    char max[24], err[512];
    snprintf(max, sizeof(max), "%lld", config_int(g->cfg, "code_attempts"));
    const char *p[3] = {c->keys[0], c->keys[1]};
    p[c->n_keys] = max;
    *rows = NULL;
    /* Spend one attempt first (atomically), then compare: concurrent guesses can't exceed max. */
    int rc = db_exec(g->db, c->spend_sql, p, (int)c->n_keys + 1, rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(*rows);
        *rows = NULL;
        db_fail(ex, rc, err);
        return -1;
    }
    if (json_array_size(*rows) == 0) {
        json_decref(*rows);
        *rows = NULL;
        json_t *r2 = NULL;
        rc = db_exec(g->db, c->exists_sql, p, (int)c->n_keys, &r2, NULL, err, sizeof(err));
        bool exists = rc == DB_OK && json_array_size(r2) > 0;
        json_decref(r2);
        if (exists) {
            http_respond_error(ex, c->exhausted_status, "attempts_exhausted", NULL, "%s",
                               c->exhausted_message);
        } else {
            http_respond_error(ex, 409, c->none_error, NULL, "%s", c->none_message);
        }
        return -1;
    }
    const char *salt = row_str(*rows, 0, "salt"), *hash = row_str(*rows, 0, "hash");
    const char *expired = row_str(*rows, 0, "expired");
    long attempts = atol(row_str(*rows, 0, "attempts"));
    char want[CRYPTO_SHA256_HEX_LEN + 1];
    code_hash(salt, code, want);
    bool ok = crypto_equal(want, strlen(want), hash, strlen(hash));
    if (strcmp(expired, "true") == 0) {
        json_decref(*rows);
        *rows = NULL;
        http_respond_error(ex, 410, "code_expired", NULL, "%s", c->expired_message);
        return -1;
    }
    if (!ok) {
        long left = config_int(g->cfg, "code_attempts") - attempts;
        json_decref(*rows);
        *rows = NULL;
        if (left <= 0 && c->is_last_wrong_exhausted) {
            http_respond_error(ex, c->exhausted_status, "attempts_exhausted", NULL, "%s",
                               c->exhausted_message);
        } else {
            http_respond_error(
                ex, 403, "wrong_code",
                json_pack("{s:I}", "attempts_left", (json_int_t)(left < 0 ? 0 : left)),
                "wrong code");
        }
        return -1;
    }
    return 0;
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
    const struct code_check check = {
        .spend_sql = "UPDATE guard.codes SET attempts = attempts + 1 WHERE account_id = $1 AND "
                     "attempts < $2::int RETURNING salt, hash, attempts::text AS attempts, "
                     "(expires_at < now())::text AS expired",
        .exists_sql = "SELECT 1 FROM guard.codes WHERE account_id = $1",
        .keys = {id},
        .n_keys = 1,
        .exhausted_status = 423,
        .exhausted_message = "too many wrong codes: ask support to unlock the account",
        .none_error = "no_code",
        .none_message = "the account has no pending unlock code",
        .expired_message = "the code has expired: ask support",
        .is_last_wrong_exhausted = true,
    };
    json_t *rows = NULL;
    int spent = code_spend(g, ex, &check, code, &rows);
    json_decref(b);
    if (spent != 0) {
        return;
    }
    json_decref(rows);
    const char *p[] = {id};
    char err[512];
    struct db_stmt st[3] = {
        {"DELETE FROM guard.codes WHERE account_id = $1", p, 1},
        {"UPDATE guard.accounts SET locked = false, updated_at = now() WHERE account_id = $1", p,
         1},
        {"INSERT INTO guard.lock_events (account_id, event, actor) VALUES ($1, 'unlocked', 'code')",
         p, 1},
    };
    int rc = db_exec_tx(g->db, st, 3, err, sizeof(err));
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
    const char *reason, *ticket;
    json_t *b = staff_body(ex, &reason, &ticket);
    json_t *acct, *allowed;
    if (!b || account_load_or_answer(g, ex, id, b, &acct, &allowed) != 0) {
        return;
    }
    char err[512];
    const char *email = row_str(acct, 0, "email"), *phone = row_str(acct, 0, "phone");
    const char *p[] = {id, who.subject, reason, ticket};
    struct db_stmt st[5] = {
        /* recorded in the lock history only when there was a lock to lift */
        {"INSERT INTO guard.lock_events (account_id, event, actor, staff, reason) "
         "SELECT $1, 'unlocked', 'staff', $2, $3 WHERE EXISTS "
         "(SELECT 1 FROM guard.accounts WHERE account_id = $1 AND locked)",
         p, 3},
        {"DELETE FROM guard.codes WHERE account_id = $1", p, 1},
        {"UPDATE guard.accounts SET locked = false, updated_at = now() WHERE account_id = $1", p,
         1},
        {"INSERT INTO guard.audit (staff, action, account_id, reason, ticket) "
         "VALUES ($2, 'unlock', $1, $3, $4)",
         p, 4},
    };
    /* the player hears of every staff unlock: a social-engineered one does not go unnoticed */
    struct outbox_msg msg;
    outbox_msg_init(&msg, &st[4], id, "staff_unlock", player_channels(email, phone), email, phone,
                    json_pack("{s:s}", "staff", who.subject));
    int rc = db_exec_tx(g->db, st, 5, err, sizeof(err));
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

void unlock_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "POST", "/v1/accounts/{}/unlock", handle_unlock, g, 4096);
    http_server_route(srv, "POST", "/v1/support/accounts/{}/unlock", handle_support_unlock, g,
                      8192);
}
