/* auth.c - player and staff tokens (see auth.h): HS256 JWTs through libjwt; service clients
 * by their tokens' SHA-256.
 *
 * The only module that includes jwt.h. Verification pins the algorithm: the token's header must
 * say HS256 (a token with "alg": "none" or an asymmetric algorithm is refused before the
 * signature is even looked at), and an empty secret verifies nothing. */
#include "auth.h"

#include <errno.h>
#include <stdbool.h>
#include <jwt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "banned.h"
#include "crypto.h"

static void set_err(char *err, size_t err_len, const char *msg)
{
    if (err && err_len > 0) {
        snprintf(err, err_len, "%s", msg);
    }
}

int auth_verify(const char *secret, const char *token, struct auth_identity *id, char *err,
                size_t err_len)
{
    jwt_t *jwt = NULL;
    int rc = -1;

    memset(id, 0, sizeof(*id));
    if (!secret || !*secret) {
        set_err(err, err_len, "no signing secret configured");
        return -1;
    }
    if (!token || !*token || strlen(token) > 8192) {
        set_err(err, err_len, "missing or oversized token");
        return -1;
    }
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !jwt) {
        set_err(err, err_len, "invalid token or signature");
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        set_err(err, err_len, "token algorithm is not HS256");
        goto out;
    }
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0 || exp <= 0) {
        set_err(err, err_len, "token has no expiry");
        goto out;
    }
    if ((long long)exp <= (long long)time(NULL)) {
        set_err(err, err_len, "token expired");
        goto out;
    }
    const char *sub = jwt_get_grant(jwt, "sub");
    const char *role = jwt_get_grant(jwt, "role");
    if (!sub || !*sub || strlen(sub) >= sizeof(id->subject)) {
        set_err(err, err_len, "token has no valid subject");
        goto out;
    }
    if (role && strcmp(role, "player") == 0) {
        id->role = AUTH_PLAYER;
    } else if (role && strcmp(role, "staff") == 0) {
        id->role = AUTH_STAFF;
    } else {
        set_err(err, err_len, "token has no valid role");
        goto out;
    }
    snprintf(id->subject, sizeof(id->subject), "%s", sub);
    rc = 0;
out:
    if (rc != 0) {
        memset(id, 0, sizeof(*id));
    }
    jwt_free(jwt);
    return rc;
}

char *auth_mint(const char *secret, enum auth_role role, const char *subject, long ttl_s)
{
    jwt_t *jwt = NULL;
    char *out = NULL;
    const char *role_name = role == AUTH_PLAYER ? "player" : role == AUTH_STAFF ? "staff" : NULL;

    if (!secret || !*secret || !role_name || !subject || !*subject || ttl_s <= 0) {
        return NULL;
    }
    if (jwt_new(&jwt) != 0) {
        return NULL;
    }
    long now = (long)time(NULL);
    if (jwt_add_grant(jwt, "sub", subject) != 0 || jwt_add_grant(jwt, "role", role_name) != 0 ||
        jwt_add_grant_int(jwt, "iat", now) != 0 ||
        jwt_add_grant_int(jwt, "exp", now + ttl_s) != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) != 0) {
        goto out;
    }
    out = jwt_encode_str(jwt); /* malloc'd by libjwt's default allocator: caller free()s */
out:
    jwt_free(jwt);
    return out;
}

int auth_clients_parse(struct auth_clients *out, const char *key, const char *spec, char *err,
                       size_t err_len)
{
    memset(out, 0, sizeof(*out));
    for (const char *p = spec ? spec : ""; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t name_len = colon ? (size_t)(colon - p) : 0;
        size_t hash_len = colon ? len - name_len - 1 : 0;
        if (!colon || name_len == 0 || name_len > AUTH_CLIENT_NAME_MAX ||
            hash_len != CRYPTO_SHA256_HEX_LEN || strspn(colon + 1, "0123456789abcdef") < hash_len ||
            out->n == AUTH_CLIENTS_MAX) {
            snprintf(err, err_len,
                     "%s: entry %d is not name:<64 lowercase hex digits> (at most %d)", key,
                     out->n + 1, AUTH_CLIENTS_MAX);
            return -1;
        }
        struct auth_client *c = &out->c[out->n++];
        memcpy(c->name, p, name_len);
        memcpy(c->sha256, colon + 1, CRYPTO_SHA256_HEX_LEN);
        p = end ? end + 1 : p + len;
    }
    return 0;
}

const struct auth_client *auth_clients_find(const struct auth_clients *cl, const char *token)
{
    if (!token || !*token || strlen(token) > 4096) {
        return NULL;
    }
    char h[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex(token, strlen(token), h);
    const struct auth_client *found = NULL;
    for (int i = 0; i < cl->n; i++) { /* every one compared: the time tells nothing */
        bool eq = crypto_equal(h, CRYPTO_SHA256_HEX_LEN, cl->c[i].sha256, CRYPTO_SHA256_HEX_LEN);
        found = eq && !found ? &cl->c[i] : found;
    }
    return found;
}
