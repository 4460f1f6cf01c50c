/* contacts_api.c - the players' confirmed contacts for services that send them messages:
 * GET /v1/accounts/{id}/contacts (see guard.h).
 *
 * notify asks here at send time when a notification carries no contacts (a campaign's): it gets
 * the contacts in effect, i.e. confirmed with the code guard sent to them (guard.accounts
 * email/phone; a pending change in guard.pending_contacts is never answered), and the player's
 * language. Callers hold a service token of their own kind: contacts_tokens lists the SHA-256 of
 * each client's token (name:sha256hex[,...]), compared in constant time against every entry, as
 * the status API compares status_tokens. A status token, a player's or staff's token is refused
 * (401): contacts are for the services that deliver messages, not for login servers or pages.
 * Nothing here logs a contact. */
#include <jansson.h>
#include <string.h>

#include "guard.h"
#include "log.h"

/* GET /v1/accounts/{id}/contacts: {"account_id", "email", "phone", "lang"}, each null when the
 * account has none in effect (an account guard never saw answers nulls: it has none). */
static void handle_contacts(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    const char *id = http_param(ex, 0);
    if (!valid_id(id)) {
        http_respond_error(ex, 400, "bad_account", NULL, "invalid account id");
        return;
    }
    if (!auth_clients_find(&g->contacts_clients, http_bearer(ex))) {
        http_respond_error(ex, 401, "unauthorized", NULL, "a contacts service token is required");
        return;
    }
    const char *p[] = {id};
    json_t *rows = NULL;
    char err[512];
    int rc = db_exec(g->db, "SELECT email, phone, lang FROM guard.accounts WHERE account_id = $1",
                     p, 1, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        db_fail(ex, rc, err);
        return;
    }
    const char *email = row_str(rows, 0, "email"), *phone = row_str(rows, 0, "phone");
    const char *lang = row_str(rows, 0, "lang");
    json_t *out = json_pack("{s:s, s:o, s:o, s:o}", "account_id", id, "email",
                            email ? json_string(email) : json_null(), "phone",
                            phone ? json_string(phone) : json_null(), "lang",
                            lang ? json_string(lang) : json_null());
    json_decref(rows);
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, out);
}

void contacts_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "GET", "/v1/accounts/{}/contacts", handle_contacts, g, 0);
}
