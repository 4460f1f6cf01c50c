/* request.c - what every guard handler shares: ids and countries checked, database errors
 * answered, player and staff tokens, JSON bodies (see guard.h). */
#include <jansson.h>
#include <string.h>

#include "auth.h"
#include "guard.h"
#include "log.h"

int valid_id(const char *s)
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

int valid_country(const char *c)
{
    return c && strlen(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z';
}

void db_fail(struct http_exchange *ex, int rc, const char *err)
{
    if (rc == DB_EUNAVAILABLE) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, "unavailable", NULL, "database unavailable; retry later");
    } else {
        log_error("database error: %s", err);
        http_respond_error(ex, 500, "internal", NULL, "database error");
    }
}

const char *row_str(json_t *rows, size_t i, const char *col)
{
    return json_string_value(json_object_get(json_array_get(rows, i), col));
}

/* ---- tokens ---- */

int authorize(struct guard *g, struct http_exchange *ex, const char *id, int staff_ok,
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

const char *account_param(struct guard *g, struct http_exchange *ex, enum caller caller,
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

json_t *body_object(struct http_exchange *ex)
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
