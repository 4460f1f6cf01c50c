/* crypto.h - hashing, HMAC signatures and constant-time comparison (the only module that
 * includes OpenSSL headers).
 *
 * Bus signatures: the dispatcher signs every delivery per Standard Webhooks
 * (crypto_webhook_sign); services check it through delivery.h (crypto_webhook_verify). */
#ifndef CRYPTO_H
#define CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#define CRYPTO_SHA256_HEX_LEN 64

/* Lowercase hex SHA-256 of data. */
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN + 1]);
/* Lowercase hex HMAC-SHA256(key, data). */
void crypto_hmac_sha256_hex(const char *key, size_t key_len, const void *data, size_t len,
                            char out[CRYPTO_SHA256_HEX_LEN + 1]);
/* Constant-time equality of two byte strings (the lengths are not secret). */
bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len);

/* ---- Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme") ----
 *
 * A message (id, timestamp, body) is signed with key K as base64(HMAC-SHA256(K, "<id>.<timestamp>
 * .<body>")) and sent as "v1,<signature>" in webhook-signature; several space-separated
 * signatures, one per key, let keys rotate. keys is a space-separated list; each key written
 * "whsec_<base64>" is its decoded bytes (the spec's form), any other key its own bytes. */
#define CRYPTO_WEBHOOK_SIG_LEN 44 /* base64 of 32 bytes */
#define CRYPTO_WEBHOOK_MAX_KEYS 8 /* keys per list, signatures per header looked at */

/* Writes the webhook-signature header value for (id, timestamp, body) under every key of keys
 * into out. Returns 0, or -1 when keys holds no key, too many, a bad whsec_ key, or out is too
 * small (a list of k keys needs k * 48 bytes). */
int crypto_webhook_sign(const char *keys, const char *id, long long timestamp, const void *body,
                        size_t len, char *out, size_t out_len);
/* True when header (may be NULL) holds a "v1," signature of (id, timestamp, body) under one of
 * keys. Constant-time comparison of each candidate. */
bool crypto_webhook_verify(const char *keys, const char *id, long long timestamp, const void *body,
                           size_t len, const char *header);

#endif
