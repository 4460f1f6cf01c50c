/* crypto.h - hashing, HMAC signatures and constant-time comparison (the only module that
 * includes OpenSSL headers), and the AEAD that seals secrets in transit (seal.h builds on it).
 *
 * Bus signatures: the dispatcher signs every delivery per Standard Webhooks
 * (crypto_webhook_sign); services check it through delivery.h (crypto_webhook_verify). */
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
/* HMAC-SHA256(key, data) as 32 raw bytes. */
void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32]);

/* AEAD: AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag. A nonce must never
 * be used twice with one key: callers draw it at random (random_bytes), which is safe for far
 * more messages than a key seals before rotation (2^32). */
#define CRYPTO_AEAD_KEY_BYTES 32
#define CRYPTO_AEAD_NONCE_BYTES 12
#define CRYPTO_AEAD_TAG_BYTES 16
/* Encrypts len bytes of plain, authenticating aad too; out receives the ciphertext (len bytes)
 * followed by the tag (len + CRYPTO_AEAD_TAG_BYTES in all). Returns 0, or -1 on a library error. */
int crypto_aead_seal(const unsigned char key[CRYPTO_AEAD_KEY_BYTES],
                     const unsigned char nonce[CRYPTO_AEAD_NONCE_BYTES], const void *aad,
                     size_t aad_len, const void *plain, size_t len, unsigned char *out);
/* Decrypts in (ciphertext then tag, len >= CRYPTO_AEAD_TAG_BYTES) into out (len - tag bytes).
 * Returns 0, or -1 when the tag does not verify (wrong key, aad or altered bytes): then out holds
 * nothing to use. */
int crypto_aead_open(const unsigned char key[CRYPTO_AEAD_KEY_BYTES],
                     const unsigned char nonce[CRYPTO_AEAD_NONCE_BYTES], const void *aad,
                     size_t aad_len, const unsigned char *in, size_t len, unsigned char *out);

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
/* The same with the keys set up once: a signer holds each key's HMAC state (the padded key
 * hashed), so that signing a message costs only hashing the message, for a sender that signs
 * every message with one key list (the dispatcher signs every delivery).
 * crypto_webhook_signer_new() returns NULL when keys holds no key, too many or a bad whsec_ key;
 * crypto_webhook_signer_sign() writes what crypto_webhook_sign() writes, or returns -1 when out
 * is too small. A signer is not thread-safe: one per thread (or behind the caller's lock).
 * crypto_webhook_signer_free(NULL) is a no-op. */
struct crypto_webhook_signer;
struct crypto_webhook_signer *crypto_webhook_signer_new(const char *keys);
int crypto_webhook_signer_sign(struct crypto_webhook_signer *s, const char *id, long long timestamp,
                               const void *body, size_t len, char *out, size_t out_len);
void crypto_webhook_signer_free(struct crypto_webhook_signer *s);
/* True when header (may be NULL) holds a "v1," signature of (id, timestamp, body) under one of
 * keys (up to CRYPTO_WEBHOOK_MAX_KEYS good ones; a bad whsec_ key is skipped). Constant-time
 * comparison of each candidate. Each thread keeps the last list it was given set up (a signer,
 * freed when the thread ends): a receiver checking every delivery against one list pays for
 * hashing the message only. Thread-safe. */
bool crypto_webhook_verify(const char *keys, const char *id, long long timestamp, const void *body,
                           size_t len, const char *header);

#endif
