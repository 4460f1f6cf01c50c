/* sessions.h - gamesim's live game sessions: what a kick ends and what in-game messages reach.
 *
 * A session is opened by the login server that admitted the login (loginsim, POST /v1/sessions),
 * lives until a kick ends it, and is kept (ended or not) among the newest `keep` sessions. Each
 * session is a JSON object:
 *   {"session_id", "account_id", "server", "lang", "started_at", "ended_at", "end_reason",
 *    "end_message", "messages": [{"at", "text"}]}
 * ended_at, end_reason and end_message are null while it is live; end_reason is the action that
 * ended it (kick, block_abroad, lock), end_message the sentence the player was shown, in the
 * session's language (lang: the game client's, "ko" or "en"; Korean when not given). Times are
 * RFC 3339 UTC with milliseconds.
 *
 * A kick may overtake the session it names (the login event can reach guard before the login
 * server's open reaches the game server): such a kick is remembered, and the session ends at once
 * when it opens.
 *
 * Thread-safety: every function may be called from any thread (one lock inside). */
#ifndef GAMESIM_SESSIONS_H
#define GAMESIM_SESSIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct sessions;

/* keep: sessions (and early kicks) kept, the oldest dropped first. */
struct sessions *sessions_new(size_t keep);
void sessions_free(struct sessions *s); /* NULL is a no-op */

/* Opens session_id for account_id (server and lang may be NULL). Opening an open or ended session
 * again changes nothing (a retried open). Returns a copy of the session (the caller's). */
json_t *sessions_open(struct sessions *s, const char *session_id, const char *account_id,
                      const char *server, const char *lang);

/* Ends, with reason and the message in the session's language (message_en for "en" sessions,
 * message_ko for the others; both copied), the live session session_id of account_id, or every
 * live session of account_id when session_id is NULL or all is true. A named session that is not
 * open yet ends as soon as it opens. Returns the ids of the sessions it ended (a new array). */
json_t *sessions_end(struct sessions *s, const char *account_id, const char *session_id, bool all,
                     const char *reason, const char *message_ko, const char *message_en);

/* Shows text in every live session of account_id. Returns the ids reached (a new array, empty
 * when the player is not in the game). */
json_t *sessions_deliver(struct sessions *s, const char *account_id, const char *text);

/* {"sessions": [...]} oldest first, those of account_id only unless it is NULL (a new ref). */
json_t *sessions_list(struct sessions *s, const char *account_id);

/* Live sessions now (for /metrics and tests). */
size_t sessions_live(struct sessions *s);

/* Forgets every session and early kick. */
void sessions_clear(struct sessions *s);

#endif
