/* guard.h - the guard service's parts (see main.c for the overview):
 *
 *   main.c     the configuration table, its checks (home countries, status tokens), start-up,
 *              the routes and the main loop (outbox relay, GeoIP reloads).
 *   request.c  what every handler shares: ids and countries checked, database errors answered,
 *              player and staff tokens, JSON bodies.
 *   account.c  the account store (settings row, allowed countries) and the status cache
 *              (write-through: committed first, then the entry dropped), and the status API
 *              for login servers: GET /v1/accounts/{id}/status.
 *   player.c   the player API: GET/PUT /v1/accounts/{id}/policy, PUT .../contacts and
 *              POST .../contacts/confirm.
 *   decide.c   the bus delivery POST /v1/deliveries/login.checked: one decision per login,
 *              stored, so a redelivery gets the same answer (guard_decide and its steps).
 *   unlock.c   one-time codes (minted, salted and hashed, sealed for notify, verified with
 *              attempts spent first), POST /v1/accounts/{id}/unlock and the staff unlock
 *              POST /v1/support/accounts/{id}/unlock.
 *   support.c  the support console's API: the audit trail, find an account, its details and
 *              lock history (GET /v1/support/...), lock now and reset contacts or policy.
 *   retention  guard's growing tables trimmed in small batches (lib/retention.h, main.c).
 *   outbox.c   messages guard sends on its own (contact codes, notices of changes, staff actions
 *              and brute-force throttling, the account.action of a "not me" or a support lock),
 *              written in the change's transaction and relayed to the publisher.
 *   answer.c   "was it you?": the one-time link every alert carries (sealed for notify) and the
 *              player's answer, GET/POST /v1/answers/{token}; support's view of the answers.
 *   signals.c  what a login says beyond its country: new for the account, impossible travel
 *              (guard.login_countries; country centroids), as reason codes.
 *   throttle.c failed logins (POST /v1/deliveries/login.failed) counted per account and per
 *              address, and the brute-force throttle the status API answers from memory.
 *   contacts_api.c  the players' confirmed contacts for services (notify) holding a contacts
 *              token: GET /v1/accounts/{id}/contacts.
 *
 * Threads: handlers run on the HTTP server's workers; the status cache is shared between them
 * behind g->mu. The outbox relay and GeoIP reloads run on the main thread only. */
#ifndef GUARD_H
#define GUARD_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "actions.h"
#include "auth.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "delivery.h"
#include "geo.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "ids.h"
#include "metrics.h"
#include "seal.h"

#define ID_MAX 128
#define CACHE_BUCKETS 65536u
#define MAX_ALLOWED 64
#define HOME_MAX 32
struct cache_entry; /* account.c */
struct throttle;    /* throttle.c */
struct webpage;

/* The service: set up by main.c before the server starts, read-only afterwards except the
 * status cache (behind mu) and the relay's state (main thread only). */
struct guard {
    struct db *db;
    struct geo *geo;                      /* country of the status API's ?ip= */
    struct auth_clients status_clients;   /* status_tokens: login servers */
    struct auth_clients contacts_clients; /* contacts_tokens: services sending messages */
    const struct config *cfg;
    const char *auth_secret, *bus_secret;
    struct seal_keys *seal; /* seals unlock codes for notify */
    char home[HOME_MAX][3];
    int n_home;
    pthread_rwlock_t mu;
    struct cache_entry **buckets;
    long long n_cached;
    struct metric *m_actions, *m_status_hit, *m_status_miss;
    struct http_client *http; /* the outbox relay's, to the publisher (main thread only) */
    struct metric *m_outbox_sent, *m_outbox_dropped;
    /* the relay's state while the publisher fails (main thread only): no attempt before
     * outbox_retry_ms, the wait doubling up to 5 s; one warning per failing streak */
    long long outbox_retry_ms, outbox_wait_ms;
    struct http_server *srv;   /* main.c's */
    struct webpage *page;      /* the support console's files (main.c) */
    struct throttle *throttle; /* throttle.c's (behind its own mutex) */
    /* failed logins that started or renewed a wait, and waits that started an episode (the
     * count reached its threshold), each labelled kind="account"|"address" */
    struct metric *m_throttled_account, *m_throttled_address;
    struct metric *m_throttle_starts_account, *m_throttle_starts_address;
};

/* ---- request.c ---- */

int valid_id(const char *s);
int valid_country(const char *c);
/* Answers 503 with Retry-After 1 while the database is unavailable, 500 (logged) otherwise. */
void db_fail(struct http_exchange *ex, int rc, const char *err);
/* Column col of row i of a db_exec result (borrowed), NULL when absent or SQL NULL. */
const char *row_str(json_t *rows, size_t i, const char *col);
/* Player token of that account (or staff when staff_ok). Answers 401/403 itself. */
int authorize(struct guard *g, struct http_exchange *ex, const char *id, int staff_ok,
              struct auth_identity *who);
/* Who may call an account route. */
enum caller { CALLER_PLAYER, CALLER_PLAYER_OR_STAFF, CALLER_STAFF };
/* The {id} of an /accounts/{id}/... route, checked before anything else: a valid id (else 400
 * bad_account), then a token of that player or of staff as `caller` says (401/403 by
 * authorize). Returns the id (borrowed from the exchange), or NULL when answered. */
const char *account_param(struct guard *g, struct http_exchange *ex, enum caller caller,
                          struct auth_identity *who);
/* The body as a JSON object (caller owns), or NULL after answering 400. */
json_t *body_object(struct http_exchange *ex);

/* ---- account.c ---- */

void cache_init(struct guard *g);
/* Frees every entry and the table; safe when cache_init was not called (g zeroed). */
void cache_release(struct guard *g);
/* Drops the account's entry: call after committing any change to the account. */
void cache_drop(struct guard *g, const char *id);
/* The account's settings row and its current allowed countries. acct and allowed are owned by
 * the caller. */
int load_account(struct guard *g, const char *id, json_t **acct, json_t **allowed, char *err,
                 size_t err_len);
/* A handler's load_account: 0 with *acct and *allowed (caller owns both), or -1 after answering
 * the database error (db_fail), nothing loaded and body (the handler's request body, may be
 * NULL) released. */
int account_load_or_answer(struct guard *g, struct http_exchange *ex, const char *id, json_t *body,
                           json_t **acct, json_t **allowed);
/* The account's policy, or default_policy for an account that never set one (borrowed). */
const char *acct_policy(struct guard *g, json_t *acct);
/* The allowed countries as the API shows them; *expires is the earliest "until" (epoch s), 0
 * for none. */
json_t *allowed_json(json_t *allowed, long long *expires);
json_t *home_json(struct guard *g);
/* GET /v1/accounts/{}/status. */
void account_routes(struct http_server *srv, struct guard *g);

/* ---- player.c ---- */

/* GET and PUT /v1/accounts/{}/policy, PUT .../contacts, POST .../contacts/confirm. */
void player_routes(struct http_server *srv, struct guard *g);

/* ---- decide.c ---- */

/* POST /v1/deliveries/login.checked. */
void decide_routes(struct http_server *srv, struct guard *g);
/* A delivery item's outcome for a database error: 503 with Retry-After 1 while the database is
 * unavailable, 500 (logged) otherwise. */
void item_db_fail(struct delivery_item *it, int rc, const char *err);

/* ---- unlock.c ---- */

#define CODE_LEN 8
#define CODE_SALT_LEN 32

/* A new one-time code (unlock or contact confirmation): 8 decimal digits, uniform, from the
 * system CSPRNG (nothing a caller chose, such as the login's ce-id, goes into it). */
void new_code(char out[CODE_LEN + 1]);
/* A new random salt for a code's hash: 32 lowercase hex digits. */
void code_salt_new(char out[CODE_SALT_LEN + 1]);
/* The context a code is sealed for: the account, and what the code is for. */
void seal_context(const char *purpose, const char *account, char *out, size_t len);
void code_hash(const char *salt, const char *code, char out[CRYPTO_SHA256_HEX_LEN + 1]);

/* How one kind of code is checked and what the caller is told when it cannot be used. */
struct code_check {
    /* UPDATE ... SET attempts = attempts + 1 WHERE <keys> AND attempts < $<n_keys + 1>::int
     * RETURNING salt, hash, attempts::text AS attempts, (expires_at < now())::text AS expired
     * (and whatever else the caller needs) */
    const char *spend_sql;
    const char *exists_sql; /* SELECT 1 ... WHERE <keys> */
    const char *keys[2];    /* $1.. of both statements */
    size_t n_keys;
    int exhausted_status; /* answered (attempts_exhausted) when no attempt is left */
    const char *exhausted_message;
    const char *none_error, *none_message; /* 409 when there is no code */
    const char *expired_message;           /* 410 code_expired */
    bool is_last_wrong_exhausted;          /* a wrong code that spent the last attempt answers as
                                              exhausted (else 403 wrong_code, attempts_left 0) */
};
/* Spends one attempt (atomically, so concurrent guesses cannot exceed code_attempts), then
 * compares code with the stored hash. Returns 0 with *rows (caller owns) the spent row when the
 * code is right and still valid; -1 after answering (409, 410, 403, the exhausted status or a
 * database error). */
int code_spend(struct guard *g, struct http_exchange *ex, const struct code_check *c,
               const char *code, json_t **rows);
/* POST /v1/accounts/{}/unlock and POST /v1/support/accounts/{}/unlock. */
void unlock_routes(struct http_server *srv, struct guard *g);

/* ---- answer.c ---- */

/* Adds to an account.action event (decide.c, before it is stored) what every alert carries: the
 * player's language ("lang"), zone ("tz") and the login's time in it ("local_time"), and the
 * "was it you?" link sealed for notify ("sealed_answer"), whose token's hash it stores. DB_OK, or
 * a db error code with err filled. */
int answer_link_add(struct guard *g, json_t *out, char *err, size_t err_len);
/* GET and POST /v1/answers/{token}, GET /v1/support/accounts/{}/answers. */
void answer_routes(struct http_server *srv, struct guard *g);

/* ---- support.c ---- */

/* The reason (required, 1-1000 characters) and ticket reference (optional, NULL when absent) of
 * a staff action's body b (both borrowed from b). Answers 400 itself and returns -1 when bad. */
int staff_note(struct http_exchange *ex, json_t *b, const char **reason, const char **ticket);
/* A staff action's body (caller owns) with its reason and ticket reference (borrowed from it,
 * as staff_note), or NULL after answering 400. */
json_t *staff_body(struct http_exchange *ex, const char **reason, const char **ticket);
/* GET /v1/support/audit, /v1/support/accounts, .../accounts/{} and .../accounts/{}/locks;
 * POST .../accounts/{}/lock and .../accounts/{}/reset. */
void support_routes(struct http_server *srv, struct guard *g);

/* ---- outbox.c ---- */

struct outbox_msg {
    char id[ID_UUID_LEN + 1];
    char *text; /* the event (heap) */
    const char *params[4];
};

/* Builds a notification event of kind to the given channels (stolen) and contacts, with params
 * (stolen, may be NULL), and the statement that queues it (valid while m lives). */
void outbox_msg_init(struct outbox_msg *m, struct db_stmt *st, const char *account,
                     const char *kind, json_t *channels, const char *email, const char *phone,
                     json_t *params);
/* Builds an event (stolen) of another topic guard publishes (account.action) and the statement
 * that queues it (valid while m lives). */
void outbox_event_init(struct outbox_msg *m, struct db_stmt *st, const char *topic, json_t *ev);
/* As outbox_event_init, but the statement queues the event only while account is not locked
 * (run it before the statement that locks: a lock's own event, so locking a locked account
 * queues nothing). */
void outbox_event_init_unless_locked(struct outbox_msg *m, struct db_stmt *st, const char *topic,
                                     json_t *ev, const char *account);
void outbox_msg_release(struct outbox_msg *m, size_t n);
/* The channels that reach the player now: in-game, and the contacts in effect. */
json_t *player_channels(const char *email, const char *phone);
/* Publishes queued messages, oldest first, until the publisher fails or none is left. While the
 * publisher fails, rounds are spaced out (up to 5 s) and the failure is logged once. Main
 * thread only. */
void outbox_flush(struct guard *g);

/* ---- signals.c ---- */

/* Why a login triggers the account's policy (account.action's "reasons"). */
#define REASON_ABROAD 1u            /* "abroad": neither a home country nor allowed now */
#define REASON_NEW_COUNTRY 2u       /* "new_country": not seen for this account in N days */
#define REASON_IMPOSSIBLE_TRAVEL 4u /* "impossible_travel": too fast since the last login */

/* A delivery's logins as signals see them: the accounts' recorded countries, read in one
 * statement before the first login is decided, and each login applied on top in order, so a
 * batch costs two statements, not one per login. Nothing is written until signals_commit, which
 * the caller runs only once every login of the delivery is decided: a delivery that is retried
 * (or refused, then sent one event at a time) sees the same countries again, never its own. */
struct signals_seen;
struct signals_batch {
    bool is_on;                /* either signal enabled */
    json_t *rows;              /* the rows read (their strings are borrowed) */
    struct signals_seen *seen; /* one per (account, country): read, or added by a login */
    size_t n, cap;
    unsigned *heads, n_heads; /* hash of account -> first of its entries (index + 1) */
};
/* Reads the recorded countries of the accounts (n of them; duplicates allowed; borrowed until
 * signals_batch_release). DB_OK or a db error (sb is then empty and released). */
int signals_begin(struct guard *g, const char *const *accounts, size_t n, struct signals_batch *sb,
                  char *err, size_t err_len);
/* The signals one login raises (REASON_NEW_COUNTRY, REASON_IMPOSSIBLE_TRAVEL) as configured,
 * given the logins applied before it; the login is applied (strings borrowed). */
unsigned signals_of(struct guard *g, struct signals_batch *sb, const char *account,
                    const char *country, const char *ts);
/* Records the applied logins in one statement. DB_OK or a db error. */
int signals_commit(struct guard *g, struct signals_batch *sb, char *err, size_t err_len);
void signals_batch_release(struct signals_batch *sb);
/* The login's time in Unix seconds when ts is an RFC 3339 date-time, else -1. */
double signals_time_of(const char *ts);
/* Great-circle distance between two countries' centroids in km; -1 when one has none. */
double country_distance_km(const char *a, const char *b);
/* The reason codes as a JSON array of strings (caller owns). */
json_t *reasons_json(unsigned reasons);
/* Forgets login countries older than the new-country window (main thread). */
void signals_trim(struct guard *g);

/* ---- throttle.c ---- (an account's throttling episode also tells the player, once: the
 * brute_force notice, queued by the statement that counts the failure) */

/* The throttle's memory, filled from guard.failures (needs the database). DB_OK or a db error. */
int throttle_init(struct guard *g, char *err, size_t err_len);
void throttle_release(struct guard *g);
/* Seconds a login of account (and from ip, when not NULL) is still refused for brute force; 0
 * when admitted. */
long long throttle_wait(struct guard *g, const char *account, const char *ip);
/* A successful login of account: its failure count cleared unless a wait still runs. */
int throttle_login_ok(struct guard *g, const char *account, char *err, size_t err_len);
/* Forgets counted event ids older than a day, counts past their window and ended waits (main
 * thread). */
void throttle_trim(struct guard *g);
/* POST /v1/deliveries/login.failed. */
void throttle_routes(struct http_server *srv, struct guard *g);

/* ---- contacts_api.c ---- */

/* GET /v1/accounts/{}/contacts for the clients in contacts_tokens (g->contacts_clients). */
void contacts_routes(struct http_server *srv, struct guard *g);

#endif
