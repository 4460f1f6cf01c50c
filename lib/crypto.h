/* crypto.h - hashing, HMAC signatures and constant-time comparison (the only module that
 * includes OpenSSL headers).
 *
 * Bus signatures: the dispatcher sends X-Bus-Signature: sha256=<hex HMAC-SHA256(secret, body)>
 * for routes with a signing secret; services check it with crypto_verify_signature(). */
#ifndef CRYPTO_H
#define CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* The linked library's version, for --version and bus_build_info (static string). */
const char *crypto_lib_version(void); /* OpenSSL's version text */

#define CRYPTO_SHA256_HEX_LEN 64

/* Lowercase hex SHA-256 of data. */
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN + 1]);
/* Lowercase hex HMAC-SHA256(key, data). */
void crypto_hmac_sha256_hex(const char *key, size_t key_len, const void *data, size_t len,
                            char out[CRYPTO_SHA256_HEX_LEN + 1]);
/* Constant-time equality of two byte strings (the lengths are not secret). */
bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len);

/* The X-Bus-Signature header value "sha256=<hex>" for body, written into out (72 bytes). */
void crypto_sign_body(const char *secret, const void *body, size_t len, char out[72]);
/* True when header (may be NULL) is the right signature of body for secret. */
bool crypto_verify_signature(const char *secret, const void *body, size_t len,
                             const char *header);

#endif
