/* sessions.c - gamesim's live game sessions (see sessions.h).
 *
 * A session's states:
 *
 *     POST /v1/sessions        kick naming it, or a kick/lock of its account
 *   ---------------------> live ----------------------------------------------> ended
 *                           |  ^ in-game messages are appended while live
 *   kick naming a session that is not open yet: kept in `early`; the open that follows
 *   goes straight to ended with that kick's reason and message.
 *
 * Sessions sit in one array, oldest first, indexed by id and by account (an account's own
 * sessions, oldest first), so a kick or a message costs the account's few sessions, not a walk
 * over all `keep` of them (a bench keeps a million). */
#include "sessions.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "app.h"

#define SESSION_MESSAGES_MAX 20 /* newest in-game messages kept per session */

struct sessions {
    pthread_mutex_t mu; /* guards everything below */
    size_t keep;
    json_t *list;       /* session objects, oldest first */
    json_t *by_id;      /* session_id -> the same object */
    json_t *by_account; /* account_id -> array of its session objects, oldest first */
    json_t *early; /* session_id -> {"reason", "ko", "en"}: kicks that came before their open */
};

struct sessions *sessions_new(size_t keep)
{
    struct sessions *s = xmalloc(sizeof(*s));
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->keep = keep;
    s->list = json_array();
    s->by_id = json_object();
    s->by_account = json_object();
    s->early = json_object();
    return s;
}

void sessions_free(struct sessions *s)
{
    if (!s) {
        return;
    }
    json_decref(s->list);
    json_decref(s->by_id);
    json_decref(s->by_account);
    json_decref(s->early);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static bool is_live(json_t *session)
{
    return json_is_null(json_object_get(session, "ended_at"));
}

static void end_one(json_t *session, const char *reason, const char *message_ko,
                    const char *message_en)
{
    const char *lang = json_string_value(json_object_get(session, "lang"));
    const char *message = lang && strcmp(lang, "en") == 0 ? message_en : message_ko;
    char now[32];
    app_time_rfc3339(now);
    json_object_set_new(session, "ended_at", json_string(now));
    json_object_set_new(session, "end_reason", json_string(reason));
    json_object_set_new(session, "end_message", message ? json_string(message) : json_null());
}

/* Drops the oldest session from the list and both indexes. */
static void forget_oldest(struct sessions *s)
{
    json_t *old = json_array_get(s->list, 0);
    json_object_del(s->by_id, json_string_value(json_object_get(old, "session_id")));
    const char *account = json_string_value(json_object_get(old, "account_id"));
    json_t *own = json_object_get(s->by_account, account);
    size_t i;
    json_t *session;
    json_array_foreach(own, i, session)
    {
        if (session == old) {
            json_array_remove(own, i);
            break;
        }
    }
    if (own && json_array_size(own) == 0) {
        json_object_del(s->by_account, account);
    }
    json_array_remove(s->list, 0);
}

json_t *sessions_open(struct sessions *s, const char *session_id, const char *account_id,
                      const char *server, const char *lang)
{
    pthread_mutex_lock(&s->mu);
    json_t *session = json_object_get(s->by_id, session_id);
    if (session) {
        json_t *copy = json_deep_copy(session);
        pthread_mutex_unlock(&s->mu);
        return copy;
    }
    char now[32];
    app_time_rfc3339(now);
    session = json_pack("{s:s, s:s, s:s?, s:s*, s:s, s:n, s:n, s:n, s:[]}", "session_id",
                        session_id, "account_id", account_id, "server", server, "lang", lang,
                        "started_at", now, "ended_at", "end_reason", "end_message", "messages");
    json_t *early = json_object_get(s->early, session_id);
    if (early) {
        end_one(session, json_string_value(json_object_get(early, "reason")),
                json_string_value(json_object_get(early, "ko")),
                json_string_value(json_object_get(early, "en")));
        json_object_del(s->early, session_id);
    }
    json_array_append(s->list, session);
    json_object_set(s->by_id, session_id, session);
    json_t *own = json_object_get(s->by_account, account_id);
    if (!own) {
        own = json_array();
        json_object_set_new(s->by_account, account_id, own);
    }
    json_array_append(own, session);
    while (json_array_size(s->list) > s->keep) {
        forget_oldest(s);
    }
    json_t *copy = json_deep_copy(session);
    json_decref(session);
    pthread_mutex_unlock(&s->mu);
    return copy;
}

json_t *sessions_end(struct sessions *s, const char *account_id, const char *session_id, bool all,
                     const char *reason, const char *message_ko, const char *message_en)
{
    json_t *ended = json_array();
    pthread_mutex_lock(&s->mu);
    if (session_id && !all) {
        json_t *session = json_object_get(s->by_id, session_id);
        const char *owner = json_string_value(json_object_get(session, "account_id"));
        if (!session) {
            if (json_object_size(s->early) >= s->keep) {
                json_object_clear(s->early);
            }
            json_object_set_new(s->early, session_id,
                                json_pack("{s:s, s:s?, s:s?}", "reason", reason, "ko", message_ko,
                                          "en", message_en));
        } else if (owner && strcmp(owner, account_id) == 0 && is_live(session)) {
            end_one(session, reason, message_ko, message_en);
            json_array_append_new(ended, json_string(session_id));
        }
    } else {
        size_t i;
        json_t *session;
        json_array_foreach(json_object_get(s->by_account, account_id), i, session)
        {
            if (is_live(session)) {
                end_one(session, reason, message_ko, message_en);
                json_array_append(ended, json_object_get(session, "session_id"));
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return ended;
}

json_t *sessions_deliver(struct sessions *s, const char *account_id, const char *text)
{
    json_t *reached = json_array();
    char now[32];
    app_time_rfc3339(now);
    pthread_mutex_lock(&s->mu);
    size_t i;
    json_t *session;
    json_array_foreach(json_object_get(s->by_account, account_id), i, session)
    {
        if (is_live(session)) {
            json_t *msgs = json_object_get(session, "messages");
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "at", now, "text", text));
            while (json_array_size(msgs) > SESSION_MESSAGES_MAX) {
                json_array_remove(msgs, 0);
            }
            json_array_append(reached, json_object_get(session, "session_id"));
        }
    }
    pthread_mutex_unlock(&s->mu);
    return reached;
}

json_t *sessions_list(struct sessions *s, const char *account_id)
{
    json_t *out = json_array();
    pthread_mutex_lock(&s->mu);
    size_t i;
    json_t *session;
    json_array_foreach(account_id ? json_object_get(s->by_account, account_id) : s->list, i,
                       session)
    {
        json_array_append_new(out, json_deep_copy(session));
    }
    pthread_mutex_unlock(&s->mu);
    return json_pack("{s:o}", "sessions", out);
}

size_t sessions_live(struct sessions *s)
{
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    size_t i;
    json_t *session;
    json_array_foreach(s->list, i, session)
    {
        n += is_live(session);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sessions_clear(struct sessions *s)
{
    pthread_mutex_lock(&s->mu);
    json_array_clear(s->list);
    json_object_clear(s->by_id);
    json_object_clear(s->by_account);
    json_object_clear(s->early);
    pthread_mutex_unlock(&s->mu);
}
