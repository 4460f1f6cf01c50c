/* auth.h - player and staff tokens: JWTs signed HS256 (development) via libjwt; and the lists of
 * service clients known by their tokens' SHA-256 (below).
 *
 * Claims: {"sub": "<account id or staff name>", "role": "player" | "staff", "iat", "exp"}.
 * auth_verify() checks the signature, the algorithm (only HS256 is accepted, never "none"),
 * and expiry. */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>

/* The development default of every service's auth_secret and of bin/mktoken. DEVELOPMENT ONLY:
 * production sets AUTH_SECRET. */
#define AUTH_DEV_SECRET "dev-only-auth-secret-change-me"

enum auth_role { AUTH_NONE = 0, AUTH_PLAYER, AUTH_STAFF };

struct auth_identity {
    enum auth_role role;
    char subject[128];
};

/* Returns 0 and fills id when token is valid for secret; -1 otherwise (err says why, never the
 * token). */
int auth_verify(const char *secret, const char *token, struct auth_identity *id, char *err,
                size_t err_len);
/* Mints a token valid ttl_s seconds; heap string, caller frees; NULL on failure. */
char *auth_mint(const char *secret, enum auth_role role, const char *subject, long ttl_s);

/* ---- service tokens: a list of clients, each known by its token's SHA-256 ----
 *
 * A service API (guard's status and contacts APIs) lists its clients in one setting as
 * "name:sha256hex[,...]": the name (what logs and metrics say) and the SHA-256 (64 lowercase hex
 * digits) of the client's token, so the configuration holds no token. */
#define AUTH_CLIENT_NAME_MAX 64
#define AUTH_CLIENTS_MAX 32

struct auth_client {
    char name[AUTH_CLIENT_NAME_MAX + 1];
    char sha256[65];
};

struct auth_clients {
    struct auth_client c[AUTH_CLIENTS_MAX];
    int n;
};

/* Parses spec into out. 0, or -1 with err naming the malformed entry (key names the setting in
 * the message). */
int auth_clients_parse(struct auth_clients *out, const char *key, const char *spec, char *err,
                       size_t err_len);
/* The client whose token this is, or NULL: the token's SHA-256 is compared with every entry in
 * constant time, whichever matches, so the time tells nothing. */
const struct auth_client *auth_clients_find(const struct auth_clients *cl, const char *token);

#endif
