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

#define CONTACTS_CLIENTS_MAX 16

/* The clients of this API, parsed once at start (read-only afterwards). */
static struct status_client contacts_clients[CONTACTS_CLIENTS_MAX];
static int n_contacts_clients;

/* Parses contacts_tokens ("name:sha256hex[,...]"); logs and returns -1 when malformed. */
static int parse_clients(const char *spec)
{
    n_contacts_clients = 0;
    for (const char *p = spec; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t name_len = colon ? (size_t)(colon - p) : 0;
        size_t hash_len = colon ? len - name_len - 1 : 0;
        if (!colon || name_len == 0 || name_len > STATUS_CLIENT_NAME_MAX ||
            hash_len != CRYPTO_SHA256_HEX_LEN || strspn(colon + 1, "0123456789abcdef") < hash_len ||
            n_contacts_clients == CONTACTS_CLIENTS_MAX) {
            log_error(
                "contacts_tokens: entry %d is not name:<64 lowercase hex digits> (at most %d)",
                n_contacts_clients + 1, CONTACTS_CLIENTS_MAX);
            return -1;
        }
        struct status_client *c = &contacts_clients[n_contacts_clients++];
        memset(c, 0, sizeof(*c));
        memcpy(c->name, p, name_len);
        memcpy(c->sha256, colon + 1, CRYPTO_SHA256_HEX_LEN);
        p = end ? end + 1 : p + len;
    }
    return 0;
}

/* The calling client's index, or -1 after answering 401. Every entry is compared whatever
 * matched, so the time tells nothing. */
static int contacts_client(struct http_exchange *ex)
{
    const char *tok = http_bearer(ex);
    if (!tok || !*tok || strlen(tok) > 4096) {
        http_respond_error(ex, 401, "unauthorized", NULL, "a contacts service token is required");
        return -1;
    }
    char h[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex(tok, strlen(tok), h);
    int found = -1;
    for (int i = 0; i < n_contacts_clients; i++) {
        bool eq = crypto_equal(h, CRYPTO_SHA256_HEX_LEN, contacts_clients[i].sha256,
                               CRYPTO_SHA256_HEX_LEN);
        found = eq && found < 0 ? i : found;
    }
    if (found < 0) {
        http_respond_error(ex, 401, "unauthorized", NULL, "a contacts service token is required");
    }
    return found;
}

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
    if (contacts_client(ex) < 0) {
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

int contacts_routes(struct http_server *srv, struct guard *g)
{
    if (parse_clients(config_str(g->cfg, "contacts_tokens")) != 0) {
        return -1;
    }
    http_server_route(srv, "GET", "/v1/accounts/{}/contacts", handle_contacts, g, 0);
    return 0;
}
