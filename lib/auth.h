/* auth.h - player and staff tokens: JWTs signed HS256 (development) via libjwt.
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

#endif
