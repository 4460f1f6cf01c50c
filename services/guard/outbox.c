/* outbox.c - messages guard sends on its own: the outbox (see guard.h).
 *
 * Contact codes, notices of settings changes, of staff actions and of brute-force throttling
 * (throttle.c queues that one in its counting statement) are notification events
 * (config/schema/events/notification.json), and the account.action that ends a player's sessions
 * after a "not me" answer (answer.c) or a support lock (support.c) goes to that topic; guard
 * writes them to guard.outbox in the transaction of the change they tell of, so a change is
 * never committed without its message nor a message sent for a change rolled back. The relay
 * (outbox_flush, on the main thread) POSTs them to the publisher's notification topic with guard's
 * producer token and deletes each row once the publisher acknowledged it (202). A row is published
 * at least once: the event id is also the event's dedupe_key, so notify sends a republished row
 * once.
 *
 * Rows with topic account.event are the account's locks, unlocks and settings changes for the
 * player's timeline in history, queued by triggers on guard.lock_events and guard.audit
 * (sql/guard/006_account_events_retention.sql); history stores each event id once. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "guard.h"
#include "log.h"

/* Builds a notification event of kind to the given channels (stolen) and contacts, with params
 * (stolen, may be NULL), and the statement that queues it (valid while m lives). */
void outbox_msg_init(struct outbox_msg *m, struct db_stmt *st, const char *account,
                     const char *kind, json_t *channels, const char *email, const char *phone,
                     json_t *params)
{
    id_uuid7(m->id);
    json_t *contacts = json_object();
    if (email) {
        json_object_set_new(contacts, "email", json_string(email));
    }
    if (phone) {
        json_object_set_new(contacts, "phone", json_string(phone));
    }
    json_t *ev = json_pack("{s:s, s:s, s:o, s:o, s:o, s:s}", "account_id", account, "kind", kind,
                           "channels", channels, "contacts", contacts, "params",
                           params ? params : json_object(), "dedupe_key", m->id);
    m->text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    m->params[0] = m->id;
    m->params[1] = m->text;
    m->params[2] = account;
    /* the player's language, as it is when the change commits (the account may have none: notify
     * then uses its default_lang) */
    *st = (struct db_stmt){"INSERT INTO guard.outbox (event_id, event) SELECT $1, "
                           "CASE WHEN a.lang IS NULL THEN $2::text ELSE ($2::jsonb || "
                           "jsonb_build_object('lang', a.lang))::text END "
                           "FROM (SELECT $3::text AS id) k "
                           "LEFT JOIN guard.accounts a ON a.account_id = k.id",
                           m->params, 3};
}

void outbox_event_init(struct outbox_msg *m, struct db_stmt *st, const char *topic, json_t *ev)
{
    id_uuid7(m->id);
    m->text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    m->params[0] = m->id;
    m->params[1] = m->text;
    m->params[2] = topic;
    *st = (struct db_stmt){"INSERT INTO guard.outbox (event_id, event, topic) VALUES ($1, $2, $3)",
                           m->params, 3};
}

void outbox_event_init_unless_locked(struct outbox_msg *m, struct db_stmt *st, const char *topic,
                                     json_t *ev, const char *account)
{
    outbox_event_init(m, st, topic, ev);
    m->params[3] = account;
    *st = (struct db_stmt){"INSERT INTO guard.outbox (event_id, event, topic) SELECT $1, $2, $3 "
                           "WHERE NOT EXISTS (SELECT 1 FROM guard.accounts "
                           "WHERE account_id = $4 AND locked)",
                           m->params, 4};
}

void outbox_msg_release(struct outbox_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].text);
        m[i].text = NULL;
    }
}

/* The channels that reach the player now: in-game, and the contacts in effect. */
json_t *player_channels(const char *email, const char *phone)
{
    json_t *c = json_pack("[s]", "ingame");
    if (email) {
        json_array_append_new(c, json_string("email"));
    }
    if (phone) {
        json_array_append_new(c, json_string("sms"));
    }
    return c;
}

/* Publishes queued messages, oldest first, until the publisher fails or none is left. While the
 * publisher fails, rounds are spaced out (up to 5 s) and the failure is logged once. */
void outbox_flush(struct guard *g)
{
    json_t *rows = NULL;
    char err[512];
    if (app_now_ms() < g->outbox_retry_ms) {
        return;
    }
    if (db_exec(g->db,
                "SELECT id::text AS id, event_id, event, topic FROM guard.outbox ORDER BY id "
                "LIMIT 100",
                NULL, 0, &rows, NULL, err, sizeof(err)) != DB_OK) {
        json_decref(rows); /* the database is away: the next round tries again */
        return;
    }
    char url[4400], auth[4200];
    snprintf(auth, sizeof(auth), "Bearer %s", config_str(g->cfg, "publisher_token"));
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const char *event_id = row_str(rows, i, "event_id"), *event = row_str(rows, i, "event");
        /* topic: notification, or account.event (sql/guard/006: locks, unlocks, changes) */
        snprintf(url, sizeof(url), "%s/v1/topics/%s/events", config_str(g->cfg, "publisher_url"),
                 row_str(rows, i, "topic"));
        struct http_header_kv h[] = {
            {"Content-Type", "application/json"}, {"Authorization", auth}, {"ce-id", event_id}};
        struct http_result r;
        memset(&r, 0, sizeof(r));
        int rc =
            http_client_request(g->http, "POST", url, h, 3, event, strlen(event), 5000, 65536, &r);
        int status = rc == 0 ? r.status : 0;
        /* A 4xx other than a refused token or a throttle would come back every round: such a
         * message can never be published, so it is dropped, loudly. */
        int is_dead = status >= 400 && status < 500 && status != 401 && status != 403 &&
                      status != 408 && status != 429;
        if (status != 202 && !is_dead) {
            if (g->outbox_wait_ms == 0) {
                log_warn("publishing message %s failed (%d %s): messages wait and are retried",
                         event_id, status, status ? "" : r.error);
            }
            http_result_release(&r);
            g->outbox_wait_ms = g->outbox_wait_ms ? g->outbox_wait_ms * 2 : 100;
            if (g->outbox_wait_ms > 5000) {
                g->outbox_wait_ms = 5000;
            }
            g->outbox_retry_ms = app_now_ms() + g->outbox_wait_ms;
            break;
        }
        http_result_release(&r);
        if (status == 202 && g->outbox_wait_ms) {
            log_info("publishing messages again");
            g->outbox_wait_ms = 0;
        }
        if (is_dead) {
            log_error("message %s refused for good by the publisher (%d): dropped", event_id,
                      status);
        }
        const char *p[] = {row_str(rows, i, "id")};
        metric_inc(status == 202 ? g->m_outbox_sent : g->m_outbox_dropped);
        if (db_exec(g->db, "DELETE FROM guard.outbox WHERE id = $1::bigint", p, 1, NULL, NULL, err,
                    sizeof(err)) != DB_OK) {
            break; /* published again next round: notify dedupes it */
        }
    }
    json_decref(rows);
}
