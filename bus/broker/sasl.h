/* sasl.h - SASL authentication of Kafka connections (KIP-43, KIP-152, KIP-84): the users file
 * (salted SCRAM credentials as Kafka stores them, never a password), the per-connection
 * session, and the SaslHandshake / SaslAuthenticate handlers.
 *
 * A session's states:
 *
 *   START --SaslHandshake(mechanism)--> MECHANISM --SaslAuthenticate(PLAIN)--> AUTHENTICATED
 *                                           |
 *                                           +--SaslAuthenticate(client-first)--> SCRAM_FIRST
 *                                                --SaslAuthenticate(client-final)--> AUTHENTICATED
 *
 * Any error (unsupported mechanism, bad credentials, a request out of order) answers with
 * Kafka's error code and closes the connection once the answer is sent, as Kafka does. Before
 * AUTHENTICATED a connection's principal is User:ANONYMOUS; sasl_may_serve() says which requests
 * it may make (all, unless sasl.required).
 *
 * Threading: the event-loop thread only, like the rest of broker.h; a reload replaces
 * b->users on that thread (security_reload). */
#ifndef BROKER_SASL_H
#define BROKER_SASL_H

#include <jansson.h>

#include "crypto_scram.h"

#define SASL_PRINCIPAL_MAX 272 /* "User:" + a name of at most 255 bytes */
#define SASL_ANONYMOUS "User:ANONYMOUS"

enum sasl_state { SASL_START, SASL_MECHANISM, SASL_SCRAM_FIRST, SASL_AUTHENTICATED };
enum sasl_mech { SASL_MECH_NONE, SASL_MECH_PLAIN, SASL_MECH_SCRAM_SHA256, SASL_MECH_SCRAM_SHA512 };

struct sasl_session {
    enum sasl_state state;
    enum sasl_mech mech;
    struct scram_server *scram; /* during a SCRAM exchange */
    int is_raw; /* SaslHandshake v0: auth bytes come as bare frames, not SaslAuthenticate */
    char principal[SASL_PRINCIPAL_MAX];
};

void sasl_session_init(struct sasl_session *s);
void sasl_session_release(struct sasl_session *s);

struct sasl_users;

/* Loads a users file:
 *   {"users": {"alice": {"SCRAM-SHA-256": {"salt": b64, "iterations": n, "stored_key": b64,
 *                                          "server_key": b64}, "SCRAM-SHA-512": {...}}}}
 * Returns 0 with *out set, or -1 with a sentence in err naming what is wrong. */
int sasl_users_load(const char *path, struct sasl_users **out, char *err, size_t err_len);
void sasl_users_free(struct sasl_users *u);
size_t sasl_users_count(const struct sasl_users *u);

/* The users-file entry {"NAME": {"SCRAM-SHA-256": {...}, "SCRAM-SHA-512": {...}}} for a password
 * (fresh random salts, `iterations` >= 4096), for `bus-broker --scram-user NAME`. NULL when the
 * name is not acceptable or the random source fails. The caller json_decref()s it. */
json_t *sasl_user_entry_new(const char *name, const char *password, int iterations);

#endif
