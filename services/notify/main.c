/* notify - sends the product's messages: email (SMTP), SMS (provider HTTP API), in-game (game
 * server HTTP API).
 *
 * Deliveries (one-way routes): POST /v1/deliveries/account.action (guard's decisions: kinds
 * login_abroad for notify, kicked for kick/block_abroad, lock_code for lock) and
 * POST /v1/deliveries/notification (any kind, e.g. campaign_password). Each event is sent on each
 * of its channels at most once: notify.sent holds (dedupe key, channel) rows written only after
 * the provider accepted the message, so a redelivery skips what was sent and retries the rest.
 * The dedupe key is the event's dedupe_key, else its ce-id. When a provider fails the delivery is
 * answered 503 and the bus retries it later.
 *
 * Templates: templates_dir/<kind>.<lang>.txt, first line "Subject: ...", a blank line, the text;
 * {{name}} is replaced by the event's parameter name. The language is the event's "lang" (guard
 * gives the player's), else default_lang. account.action's kinds also get "country_name" (the
 * login's country named in that language, countries.c), "local_time" (the login's time in the
 * player's zone, from guard) and "answer_url" (the "was it you?" link, sealed by guard like the
 * unlock code); a "not me" answer's event (guard's "answer": "not_me") is told as not_me_locked
 * or not_me_ended. Development defaults: email written as
 * .eml files under outbox_dir (no smtp_url), SMS and in-game to gamesim. The unlock code arrives
 * sealed by guard (seal.h, seal_keys) and is opened only into the message to the player; it is
 * never logged.
 *
 * Contacts: an event's "contacts" (guard's account.action and its own notifications carry the
 * ones to use). A notification without "contacts" (a campaign's) is sent by email and SMS to the
 * account's CONFIRMED contacts, asked of guard at send time (GET <guard_url>/v1/accounts/{id}/
 * contacts with guard_contacts_token; guard's contacts_api.c), with the player's language when
 * the event gives none. guard unreachable or failing: the channels needing a contact are not
 * sent and the delivery is answered 503 (the bus retries it; what went out is not sent again).
 * No confirmed contact for a channel: that channel is skipped, counted in
 * notify_skipped_total{channel} and logged without any address. No contact is ever logged. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "app.h"
#include "buf.h"
#include "countries.h"
#include "db.h"
#include "delivery.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "retention.h"
#include "seal.h"
#include "smtp_client.h"

#define ID_MAX 256
/* notify's development token for guard's contacts API (guard's contacts_tokens holds its hash;
 * docs/security.md). DEVELOPMENT ONLY: production sets NOTIFY_GUARD_CONTACTS_TOKEN. */
#define NOTIFY_DEV_CONTACTS_TOKEN "dev-only-notify-contacts-token"

static const struct config_def NOTIFY_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8104", 0, 256, 0, NULL, "HTTP listen address"},
    {"database_url", CONFIG_STRING, "postgresql://bus@127.0.0.1:55432/bus", 0, 4096, CONFIG_SECRET,
     "DATABASE_URL", "PostgreSQL connection URL"},
    {"db_pool", CONFIG_INT, "4", 1, 100, 0, NULL, "Database connections"},
    {"migrations_dir", CONFIG_STRING, "sql/notify", 0, 4096, 0, NULL,
     "Migrations applied at start"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"smtp_url", CONFIG_STRING, "", 0, 4096, CONFIG_SECRET, NULL,
     "SMTP server (smtp://host:port); empty = write .eml files to outbox_dir"},
    {"mail_from", CONFIG_STRING, "security@game.example", 1, 320, 0, NULL, "Sender address"},
    {"outbox_dir", CONFIG_STRING, "var/outbox", 1, 4096, 0, NULL,
     "Where emails are written when smtp_url is empty"},
    {"sms_url", CONFIG_STRING, "http://127.0.0.1:8109/v1/sms", 1, 4096, 0, NULL,
     "SMS provider API: POST {\"to\", \"text\"} (default: the gamesim stub)"},
    {"game_url", CONFIG_STRING, "http://127.0.0.1:8109", 1, 4096, 0, NULL,
     "Game server API; in-game messages are POSTed to <game_url>/v1/messages"},
    {"templates_dir", CONFIG_STRING, "notify/templates", 1, 4096, 0, NULL,
     "Message templates <kind>.<lang>.txt"},
    {"default_lang", CONFIG_STRING, "ko", 2, 8, 0, NULL, "Template language when none is given"},
    {"provider_timeout_ms", CONFIG_INT, "5000", 100, 120000, 0, NULL,
     "Time-out of one provider call"},
    {"threads", CONFIG_INT, "8", 1, 64, 0, NULL, "HTTP worker threads"},
    {"seal_keys", CONFIG_STRING, SEAL_DEV_KEYS, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     "CODE_SEAL_KEYS",
     "Keys that open the codes guard seals, kid:secret[,kid:secret] (every key opens: list the "
     "new key here before guard seals with it; the default is for development only)"},
    {"guard_url", CONFIG_STRING, "http://127.0.0.1:8103", 1, 4096, 0, NULL,
     "guard, asked for an account's confirmed contacts (GET /v1/accounts/{id}/contacts) when a "
     "notification carries none (a campaign's)"},
    {"guard_contacts_token", CONFIG_STRING, NOTIFY_DEV_CONTACTS_TOKEN, 1, 4096,
     CONFIG_SECRET | CONFIG_KEY, NULL,
     "notify's bearer token for guard's contacts API; guard's contacts_tokens holds its SHA-256 "
     "(the default is the development token)"},
    RETENTION_CONFIG_DEFS,
    {"retention.sent_days", CONFIG_INT, "30", 8, 36500, 0, NULL,
     "Days the sent log is kept: it makes each message go out once, so it outlives the bus's "
     "7 days of redeliveries"},
    CONFIG_DEF_END,
};

struct notify {
    struct db *db;
    struct http_client *http;
    const struct config *cfg;
    const char *bus_secret;
    struct seal_keys *seal; /* opens guard's sealed codes */
    struct metric *m_sent, *m_failed;
    struct metric *m_skipped_email, *m_skipped_sms; /* no (confirmed) contact for the channel */
    struct http_server *srv;
};

struct message {
    const char *account, *kind, *lang, *email, *phone, *dedupe;
    bool lang_given;      /* the event named its language (else guard's, when asked) */
    bool lookup_contacts; /* no "contacts" in the event: guard's confirmed ones are used */
    json_t *channels;     /* borrowed */
    json_t *params;       /* borrowed: template parameters */
};

/* Renders templates_dir/<kind>.<lang>.txt; *subject and *text heap strings. -1 when missing. */
static int render(struct notify *n, const struct message *m, char **subject, char **text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.%s.txt", config_str(n->cfg, "templates_dir"), m->kind,
             m->lang);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(path, sizeof(path), "%s/%s.en.txt", config_str(n->cfg, "templates_dir"), m->kind);
        f = fopen(path, "r");
    }
    if (!f) {
        return -1;
    }
    char raw[8192];
    size_t len = fread(raw, 1, sizeof(raw) - 1, f);
    fclose(f);
    raw[len] = '\0';
    struct buf out;
    buf_init(&out, 65536);
    for (const char *p = raw; *p;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!open || !close || close - open > 66) {
            buf_appends(&out, p);
            break;
        }
        buf_append(&out, p, (size_t)(open - p));
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(close - open - 2), open + 2);
        json_t *v = json_object_get(m->params, name);
        if (json_is_string(v)) {
            buf_appends(&out, json_string_value(v));
        } else if (json_is_integer(v)) {
            buf_appendf(&out, "%lld", (long long)json_integer_value(v));
        }
        p = close + 2;
    }
    char *all = buf_take(&out, NULL);
    *subject = NULL;
    char *body = all;
    if (strncmp(all, "Subject: ", 9) == 0) {
        char *nl = strchr(all, '\n');
        *subject = nl ? xstrndup(all + 9, (size_t)(nl - all - 9)) : xstrdup(all + 9);
        body = nl ? nl + 1 : all + strlen(all);
        while (*body == '\n') {
            body++;
        }
    }
    if (!*subject) {
        *subject = xstrdup(m->kind);
    }
    *text = xstrdup(body);
    free(all);
    return 0;
}

/* 0 sent, 1 skipped (no address), -1 transient failure. */
static int send_email(struct notify *n, const struct message *m, const char *subject,
                      const char *text, char *err, size_t err_len)
{
    if (!m->email || !*m->email) {
        return 1;
    }
    char date[32], id[ID_UUID_LEN + 1];
    app_time_rfc3339(date);
    id_uuid7(id);
    struct buf msg;
    buf_init(&msg, 1 << 20);
    buf_appendf(&msg, "From: %s\r\nTo: %s\r\nSubject: =?UTF-8?B?", config_str(n->cfg, "mail_from"),
                m->email);
    /* RFC 2047 encoded subject (Korean text) */
    static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = (const unsigned char *)subject;
    size_t sl = strlen(subject);
    for (size_t i = 0; i < sl; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < sl ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < sl ? s[i + 2] : 0);
        char q[5] = {B64[(v >> 18) & 63], B64[(v >> 12) & 63],
                     i + 1 < sl ? B64[(v >> 6) & 63] : '=', i + 2 < sl ? B64[v & 63] : '=', 0};
        buf_appends(&msg, q);
    }
    buf_appendf(&msg,
                "?=\r\nMessage-ID: <%s@notify>\r\nX-Notify-Date: %s\r\nX-Notify-Kind: %s\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n",
                id, date, m->kind);
    for (const char *p = text; *p; p++) { /* LF -> CRLF */
        if (*p == '\n') {
            buf_appends(&msg, "\r\n");
        } else {
            buf_append(&msg, p, 1);
        }
    }
    buf_appends(&msg, "\r\n");
    int rc = 0;
    const char *url = config_str(n->cfg, "smtp_url");
    if (url && *url) {
        rc = smtp_client_send(url, config_str(n->cfg, "mail_from"), m->email, msg.data,
                              (long)config_int(n->cfg, "provider_timeout_ms"), err, err_len);
    } else {
        const char *dir = config_str(n->cfg, "outbox_dir");
        char path[4400], tmp[4410];
        mkdir(dir, 0755);
        snprintf(path, sizeof(path), "%s/%s.eml", dir, id);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f || fwrite(msg.data, 1, msg.len, f) != msg.len || fclose(f) != 0 ||
            rename(tmp, path) != 0) {
            snprintf(err, err_len, "outbox %s: %s", dir, strerror(errno));
            rc = -1;
        }
    }
    buf_release(&msg);
    return rc;
}

static int post_json(struct notify *n, const char *url, json_t *body, char *err, size_t err_len)
{
    char *text = json_dumps(body, JSON_COMPACT);
    struct http_header_kv h[] = {{"Content-Type", "application/json"}};
    struct http_result r;
    memset(&r, 0, sizeof(r));
    int rc = http_client_request(n->http, "POST", url, h, 1, text, strlen(text),
                                 (long)config_int(n->cfg, "provider_timeout_ms"), 65536, &r);
    free(text);
    int out = 0;
    if (rc != 0) {
        snprintf(err, err_len, "%s: %s", url, r.error);
        out = -1;
    } else if (r.status < 200 || r.status > 299) {
        snprintf(err, err_len, "%s answered %d", url, r.status);
        out = -1;
    }
    http_result_release(&r);
    return out;
}

/* An account's confirmed contacts and language as guard answers them (heap strings or NULL). */
struct contacts {
    char *email, *phone, *lang;
};

static void contacts_clear(struct contacts *c)
{
    char *all[] = {c->email, c->phone, c->lang};
    for (size_t i = 0; i < 3; i++) {
        if (all[i]) {
            explicit_bzero(all[i], strlen(all[i]));
            free(all[i]);
        }
    }
    memset(c, 0, sizeof(*c));
}

static char *nonempty_dup(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? xstrdup(s) : NULL;
}

/* Asks guard for the account's confirmed contacts (GET <guard_url>/v1/accounts/{id}/contacts).
 * 0 when guard answered (out filled; nothing for an account it refuses as invalid), -1 when it
 * cannot be asked now (err says why, never a contact). */
static int guard_contacts(struct notify *n, const char *account, struct contacts *out, char *err,
                          size_t err_len)
{
    memset(out, 0, sizeof(*out));
    struct buf url;
    buf_init(&url, 8192);
    buf_appendf(&url, "%s/v1/accounts/", config_str(n->cfg, "guard_url"));
    for (const unsigned char *p = (const unsigned char *)account; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            buf_append(&url, (const char *)p, 1);
        } else {
            buf_appendf(&url, "%%%02X", *p);
        }
    }
    buf_appends(&url, "/contacts");
    char *u = buf_take(&url, NULL);
    char bearer[4200];
    snprintf(bearer, sizeof(bearer), "Bearer %s", config_str(n->cfg, "guard_contacts_token"));
    struct http_header_kv h[] = {{"Authorization", bearer}, {"Accept", "application/json"}};
    struct http_result r;
    memset(&r, 0, sizeof(r));
    int rc = http_client_request(n->http, "GET", u, h, 2, NULL, 0,
                                 (long)config_int(n->cfg, "provider_timeout_ms"), 16384, &r);
    explicit_bzero(bearer, sizeof(bearer));
    free(u);
    int out_rc = 0;
    if (rc != 0) {
        snprintf(err, err_len, "guard: %s", r.error);
        out_rc = -1;
    } else if (r.status == 400) { /* an id guard cannot hold: it has no contact for it */
        out_rc = 0;
    } else if (r.status == 401 || r.status == 403) {
        snprintf(err, err_len,
                 "guard refused guard_contacts_token (%d): its contacts_tokens must "
                 "hold the token's SHA-256",
                 r.status);
        out_rc = -1;
    } else if (r.status != 200) {
        snprintf(err, err_len, "guard answered %d", r.status);
        out_rc = -1;
    } else {
        json_error_t jerr;
        json_t *o = r.body ? json_loadb(r.body, r.body_len, 0, &jerr) : NULL;
        if (!json_is_object(o)) {
            snprintf(err, err_len, "guard's contacts answer is not a JSON object");
            out_rc = -1;
        } else {
            out->email = nonempty_dup(o, "email");
            out->phone = nonempty_dup(o, "phone");
            out->lang = nonempty_dup(o, "lang");
        }
        json_decref(o);
    }
    if (r.body) {
        explicit_bzero(r.body, r.body_len);
    }
    http_result_release(&r);
    return out_rc;
}

static bool needs_contact(const struct message *m, const char *ch)
{
    return (strcmp(ch, "email") == 0 && (!m->email || !*m->email)) ||
           (strcmp(ch, "sms") == 0 && (!m->phone || !*m->phone));
}

/* Sends m on its channels not yet sent; answers the exchange. A message without contacts gets
 * the account's confirmed ones from guard first (only when a channel still to send needs one). */
static void deliver(struct notify *n, struct http_exchange *ex, struct message *m)
{
    char err[512];
    const char *todo[3];
    size_t n_todo = 0;
    bool ask_guard = false;
    for (size_t i = 0; i < json_array_size(m->channels); i++) {
        const char *ch = json_string_value(json_array_get(m->channels, i));
        if (!ch || (strcmp(ch, "email") && strcmp(ch, "sms") && strcmp(ch, "ingame"))) {
            continue;
        }
        bool listed = false;
        for (size_t k = 0; k < n_todo; k++) {
            listed = listed || strcmp(todo[k], ch) == 0;
        }
        if (listed) {
            continue;
        }
        const char *p[] = {m->dedupe, ch, m->account};
        json_t *rows = NULL;
        int rc = db_exec(n->db,
                         "SELECT 1 FROM notify.sent WHERE dedupe_key = $1 AND channel = $2 "
                         "AND account_id = $3",
                         p, 3, &rows, NULL, err, sizeof(err));
        if (rc != DB_OK) {
            log_warn("dedupe lookup failed: %s", err);
            http_add_header(ex, "Retry-After", "1");
            http_respond_error(ex, 503, "provider_unavailable", NULL,
                               "a provider or the database failed; retry later");
            return;
        }
        size_t seen = json_array_size(rows);
        json_decref(rows);
        if (seen) {
            continue;
        }
        todo[n_todo++] = ch;
        ask_guard = ask_guard || (m->lookup_contacts && needs_contact(m, ch));
    }
    struct contacts found = {0};
    bool contacts_failed = false;
    if (ask_guard) {
        if (guard_contacts(n, m->account, &found, err, sizeof(err)) != 0) {
            log_warn("%s for %s: confirmed contacts not read (retried): %s", m->kind, m->account,
                     err);
            metric_inc(n->m_failed);
            contacts_failed = true;
        } else {
            m->email = m->email && *m->email ? m->email : found.email;
            m->phone = m->phone && *m->phone ? m->phone : found.phone;
            if (!m->lang_given && found.lang &&
                (strcmp(found.lang, "ko") == 0 || strcmp(found.lang, "en") == 0)) {
                m->lang = found.lang;
            }
        }
    }
    char *subject = NULL, *text = NULL;
    if (render(n, m, &subject, &text) != 0) {
        contacts_clear(&found);
        http_respond_error(ex, 422, "unknown_kind", NULL, "no template for kind \"%s\"", m->kind);
        return;
    }
    int failed = 0, sent = 0;
    for (size_t i = 0; i < n_todo; i++) {
        const char *ch = todo[i];
        const char *p[] = {m->dedupe, ch, m->account, m->kind};
        if (contacts_failed && needs_contact(m, ch)) {
            failed = 1; /* guard could not be asked: this channel waits for the retry */
            continue;
        }
        int r, rc;
        err[0] = '\0';
        if (strcmp(ch, "email") == 0) {
            r = send_email(n, m, subject, text, err, sizeof(err));
        } else if (strcmp(ch, "sms") == 0) {
            if (!m->phone || !*m->phone) {
                r = 1;
            } else {
                json_t *b =
                    json_pack("{s:s, s:s, s:s}", "to", m->phone, "text", text, "kind", m->kind);
                r = post_json(n, config_str(n->cfg, "sms_url"), b, err, sizeof(err));
                json_decref(b);
            }
        } else {
            char url[4200];
            snprintf(url, sizeof(url), "%s/v1/messages", config_str(n->cfg, "game_url"));
            json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "account_id", m->account, "kind", m->kind,
                                  "subject", subject, "text", text);
            r = post_json(n, url, b, err, sizeof(err));
            json_decref(b);
        }
        if (r == 1) {
            log_info("%s for %s: no %s%s contact, channel skipped", m->kind, m->account,
                     m->lookup_contacts ? "confirmed " : "", strcmp(ch, "sms") == 0 ? "phone" : ch);
            metric_inc(strcmp(ch, "sms") == 0 ? n->m_skipped_sms : n->m_skipped_email);
            continue;
        }
        if (r != 0) {
            log_warn("%s for %s over %s failed (retried): %s", m->kind, m->account, ch, err);
            metric_inc(n->m_failed);
            failed = 1;
            continue; /* other channels still go out now */
        }
        rc = db_exec(n->db,
                     "INSERT INTO notify.sent (dedupe_key, channel, account_id, kind) "
                     "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                     p, 4, NULL, NULL, err, sizeof(err));
        if (rc != DB_OK) {
            log_warn("recording a sent message failed: %s", err);
            failed = 1;
        }
        metric_inc(n->m_sent);
        sent++;
        char trace_id[33];
        log_ev(LOG_LEVEL_INFO, trace_id_of(http_header(ex, "traceparent"), trace_id),
               http_header(ex, "ce-id"), "%s sent to %s over %s", m->kind, m->account, ch);
    }
    free(subject);
    free(text);
    contacts_clear(&found);
    if (failed) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, "provider_unavailable", NULL,
                           contacts_failed ? "guard (contacts) or a provider failed; retry later"
                                           : "a provider or the database failed; retry later");
        return;
    }
    http_respond_json(ex, 200, json_pack("{s:i}", "sent", sent));
}

/* The event of a delivery (owned by the caller), or NULL when it was refused (and answered). */
static json_t *verified_body(struct notify *n, struct http_exchange *ex)
{
    const struct delivery_rules rules = {
        .secret = n->bus_secret,
        .needs_event_id = true,
        .event_id_max = ID_MAX,
        .refusal = {.message = "account_id and ce-id are required"},
    };
    json_t *ev = NULL;
    if (delivery_accept(ex, &rules, &ev, NULL) != 0) {
        return NULL;
    }
    if (!json_is_string(json_object_get(ev, "account_id"))) {
        json_decref(ev);
        http_respond_error(ex, 422, "invalid_event", NULL, "account_id and ce-id are required");
        return NULL;
    }
    return ev;
}

static const char *str_or(json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : dflt;
}

/* The event's language when it is one notify has templates for, else default_lang. */
static const char *lang_of(struct notify *n, json_t *ev)
{
    const char *lang = str_or(ev, "lang", "");
    if (strcmp(lang, "ko") == 0 || strcmp(lang, "en") == 0) {
        return lang;
    }
    return config_str(n->cfg, "default_lang");
}

/* A login as the player reads it (template parameters of account.action's kinds): the country's
 * name in their language ("country_name"), and the login's time in their zone ("local_time",
 * given by guard; the login's own time when absent). */
static void present_login(json_t *ev, const char *lang)
{
    const char *name = country_name(str_or(ev, "country", NULL), lang);
    if (name) {
        json_object_set_new(ev, "country_name", json_string(name));
    }
    if (!json_is_string(json_object_get(ev, "local_time")) && str_or(ev, "ts", NULL)) {
        json_object_set_new(ev, "local_time", json_string(str_or(ev, "ts", NULL)));
    }
}

static void handle_action(struct http_exchange *ex, void *arg)
{
    struct notify *n = arg;
    json_t *ev = verified_body(n, ex);
    if (!ev) {
        return;
    }
    const char *action = str_or(ev, "action", "");
    /* guard's answer to a player's "not me" (answer.c): the account secured, as they chose */
    bool is_not_me = strcmp(str_or(ev, "answer", ""), "not_me") == 0;
    const char *kind = is_not_me && strcmp(action, "lock") == 0   ? "not_me_locked"
                       : is_not_me && strcmp(action, "kick") == 0 ? "not_me_ended"
                       : is_not_me                                ? NULL
                       : strcmp(action, "lock") == 0              ? "lock_code"
                       : strcmp(action, "notify") == 0            ? "login_abroad"
                       : strcmp(action, "kick") == 0 || strcmp(action, "block_abroad") == 0
                           ? "kicked"
                           : NULL;
    if (!kind) {
        json_decref(ev);
        http_respond_error(ex, 422, "invalid_event", NULL, "unknown action");
        return;
    }
    json_t *contacts = json_object_get(ev, "contacts");
    json_t *channels = json_object_get(ev, "channels");
    /* One message per decision: guard answers a redelivered login with the same decision, which
     * the bus publishes again under a new ce-id; the login id names the decision. */
    char dedupe[ID_MAX + 16];
    const char *login_id = str_or(ev, "login_id", NULL);
    if (login_id && strlen(login_id) <= ID_MAX) {
        snprintf(dedupe, sizeof(dedupe), "%s:%s", is_not_me ? "not_me" : action, login_id);
    } else {
        snprintf(dedupe, sizeof(dedupe), "%s", http_header(ex, "ce-id"));
    }
    struct message m = {
        .account = json_string_value(json_object_get(ev, "account_id")),
        .kind = kind,
        .lang = lang_of(n, ev),
        .email = str_or(contacts, "email", NULL),
        .phone = str_or(contacts, "phone", NULL),
        .lang_given = *str_or(ev, "lang", "") != '\0',
        .lookup_contacts = contacts == NULL,
        .dedupe = dedupe,
        .channels = json_is_array(channels) ? channels : NULL,
        .params = ev, /* country, ip, ts, code, server */
    };
    /* A lock's code comes sealed for us (seal.h); it is opened only into the template's
     * parameters, never into a log line or an answer. */
    char *code = NULL;
    if (strcmp(action, "lock") == 0) {
        char ctx[ID_MAX + 16];
        snprintf(ctx, sizeof(ctx), "unlock\n%s", m.account);
        int rc = seal_open(n->seal, ctx, str_or(ev, "sealed_code", NULL), &code);
        if (rc != 0) {
            json_decref(ev);
            http_respond_error(ex, 422, rc == SEAL_EKEY ? "unknown_seal_key" : "bad_seal", NULL,
                               "a lock needs a \"sealed_code\" sealed for this account with a "
                               "key notify holds");
            return;
        }
        json_object_set_new(ev, "code", json_string(code));
    }
    /* the "was it you?" link comes sealed too (guard's answer.c): opened only into the message */
    char *link = NULL;
    json_t *sealed_link = json_object_get(ev, "sealed_answer");
    if (sealed_link) {
        char ctx[ID_MAX + 16];
        snprintf(ctx, sizeof(ctx), "answer\n%s", m.account);
        int rc = strlen(m.account) < ID_MAX
                     ? seal_open(n->seal, ctx, json_string_value(sealed_link), &link)
                     : SEAL_EBAD;
        if (rc != 0) {
            json_decref(ev);
            if (code) {
                explicit_bzero(code, strlen(code));
                free(code);
            }
            http_respond_error(ex, 422, rc == SEAL_EKEY ? "unknown_seal_key" : "bad_seal", NULL,
                               "\"sealed_answer\" must be sealed for this account with a key "
                               "notify holds");
            return;
        }
        json_object_set_new(ev, "answer_url", json_string(link));
    }
    present_login(ev, m.lang);
    json_t *dflt = NULL;
    if (!m.channels) {
        dflt = json_pack("[s]", "ingame");
        m.channels = dflt;
    }
    deliver(n, ex, &m);
    json_decref(dflt);
    json_decref(ev);
    if (code) {
        explicit_bzero(code, strlen(code));
        free(code);
    }
    if (link) {
        explicit_bzero(link, strlen(link));
        free(link);
    }
}

static void handle_notification(struct http_exchange *ex, void *arg)
{
    struct notify *n = arg;
    json_t *ev = verified_body(n, ex);
    if (!ev) {
        return;
    }
    const char *kind = str_or(ev, "kind", NULL);
    json_t *channels = json_object_get(ev, "channels");
    if (!kind || strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(kind) ||
        strlen(kind) > 64 || !json_is_array(channels)) {
        json_decref(ev);
        http_respond_error(ex, 422, "invalid_event", NULL, "kind and channels are required");
        return;
    }
    json_t *contacts = json_object_get(ev, "contacts");
    json_t *params = json_object_get(ev, "params");
    /* A code guard sends itself (a new contact's confirmation code) comes sealed for us, as a
     * lock's does; it is opened only into the message. No other kind carries one. */
    char *code = NULL;
    json_t *sealed = json_object_get(params, "sealed_code");
    if (sealed || strcmp(kind, "contact_code") == 0) {
        char ctx[ID_MAX + 16];
        const char *account = json_string_value(json_object_get(ev, "account_id"));
        snprintf(ctx, sizeof(ctx), "contact\n%s", account);
        int rc = strcmp(kind, "contact_code") == 0 && strlen(account) < ID_MAX
                     ? seal_open(n->seal, ctx, json_string_value(sealed), &code)
                     : SEAL_EBAD;
        if (rc != 0) {
            json_decref(ev);
            http_respond_error(ex, 422, rc == SEAL_EKEY ? "unknown_seal_key" : "bad_seal", NULL,
                               "a contact_code needs params.sealed_code sealed for this account "
                               "with a key notify holds (and no other kind carries one)");
            return;
        }
        json_object_set_new(params, "code", json_string(code));
    }
    struct message m = {
        .account = json_string_value(json_object_get(ev, "account_id")),
        .kind = kind,
        .lang = lang_of(n, ev),
        .email = str_or(contacts, "email", NULL),
        .phone = str_or(contacts, "phone", NULL),
        .lang_given = *str_or(ev, "lang", "") != '\0',
        .lookup_contacts = contacts == NULL,
        .dedupe = str_or(ev, "dedupe_key", http_header(ex, "ce-id")),
        .channels = channels,
        .params = json_is_object(params) ? params : ev,
    };
    deliver(n, ex, &m);
    json_decref(ev);
    if (code) {
        explicit_bzero(code, strlen(code));
        free(code);
    }
}

/* Before the database: the seal keys, the provider client, the metrics. */
static int notify_prepare(struct app *app, void *ctx)
{
    struct notify *n = ctx;
    char err[512];
    n->cfg = app->cfg;
    n->bus_secret = config_str(app->cfg, "bus_secret");
    if (seal_keys_parse(config_str(app->cfg, "seal_keys"), &n->seal, err, sizeof(err)) != 0) {
        log_error("seal_keys: %s", err);
        return 1;
    }
    n->http = http_client_new();
    n->m_sent = metrics_counter("notify_sent_total", "Messages sent (per channel)", NULL);
    n->m_failed = metrics_counter("notify_failed_total", "Provider failures (retried)", NULL);
    static const char SKIPPED_HELP[] =
        "Messages not sent on a channel for want of a (confirmed) contact on it";
    n->m_skipped_email = metrics_counter("notify_skipped_total", SKIPPED_HELP, "channel=\"email\"");
    n->m_skipped_sms = metrics_counter("notify_skipped_total", SKIPPED_HELP, "channel=\"sms\"");
    return 0;
}

/* With the database: the server started. */
static int notify_start(struct app *app, void *ctx)
{
    struct notify *n = ctx;
    char err[512];
    struct http_server_options opts = {
        .listen = config_str(app->cfg, "listen"),
        .threads = (unsigned)config_int(app->cfg, "threads"),
        .ready = db_ready,
        .ready_ctx = n->db,
    };
    struct http_server *srv = http_server_new(&opts);
    n->srv = srv;
    http_server_route(srv, "POST", "/v1/deliveries/account.action", handle_action, n, 65536);
    http_server_route(srv, "POST", "/v1/deliveries/notification", handle_notification, n, 65536);
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        return 1;
    }
    log_info("notify listening on %s", opts.listen);
    return 0;
}

static const struct retention_table NOTIFY_RETENTION[] = {
    {"notify.sent", "sent_at", "retention.sent_days"},
};

/* Until stopped: the sent log trimmed every retention.interval_s (and once at start). */
static void notify_run(struct app *app, void *ctx)
{
    struct notify *n = ctx;
    long interval_ms = 1000L * (long)config_int(app->cfg, "retention.interval_s");
    do {
        retention_run(n->db, app->cfg, NOTIFY_RETENTION, 1);
    } while (!app_wait_stop_for(app, interval_ms));
}

static void notify_release(struct app *app, void *ctx)
{
    (void)app;
    struct notify *n = ctx;
    http_server_free(n->srv, 2000);
    http_client_free(n->http);
    seal_keys_free(n->seal);
}

int main(int argc, char **argv)
{
    struct notify n;
    memset(&n, 0, sizeof(n));
    const struct app_service svc = {
        .name = "notify",
        .env_prefix = "NOTIFY",
        .defs = NOTIFY_CONFIG,
        .ctx = &n,
        .db_schema = "notify",
        .db = &n.db,
        .prepare = notify_prepare,
        .start = notify_start,
        .run = notify_run,
        .release = notify_release,
    };
    return app_serve(argc, argv, &svc);
}
