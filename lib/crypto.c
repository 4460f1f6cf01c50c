/* crypto.c - SHA-256, HMAC-SHA256 bus signatures, constant-time comparison (see crypto.h). */
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *crypto_lib_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1)
        abort();
    to_hex(md, 32, out);
}

void crypto_hmac_sha256_hex(const char *key, size_t key_len, const void *data, size_t len,
                            char out[CRYPTO_SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, md, &md_len))
        abort();
    to_hex(md, 32, out);
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32])
{
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &md_len) || md_len != 32)
        abort();
}

/* One AES-256-GCM operation; enc 1 seals (tag written after the output), 0 opens (tag read). */
static int aead(int enc, const unsigned char *key, const unsigned char *nonce, const void *aad,
                size_t aad_len, const unsigned char *in, size_t len, unsigned char *out,
                unsigned char *tag)
{
    int rc = -1, n = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        abort();
    if (len > INT32_MAX || aad_len > INT32_MAX)
        goto out;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_AEAD_NONCE_BYTES, NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (aad_len && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        goto out;
    if (len && EVP_CipherUpdate(c, out, &n, in, (int)len) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPTO_AEAD_TAG_BYTES, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + n, &n) != 1) /* opening: the tag did not verify */
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPTO_AEAD_TAG_BYTES, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int crypto_aead_seal(const unsigned char key[CRYPTO_AEAD_KEY_BYTES],
                     const unsigned char nonce[CRYPTO_AEAD_NONCE_BYTES], const void *aad,
                     size_t aad_len, const void *plain, size_t len, unsigned char *out)
{
    return aead(1, key, nonce, aad, aad_len, plain, len, out, out + len);
}

int crypto_aead_open(const unsigned char key[CRYPTO_AEAD_KEY_BYTES],
                     const unsigned char nonce[CRYPTO_AEAD_NONCE_BYTES], const void *aad,
                     size_t aad_len, const unsigned char *in, size_t len, unsigned char *out)
{
    if (len < CRYPTO_AEAD_TAG_BYTES)
        return -1;
    size_t n = len - CRYPTO_AEAD_TAG_BYTES;
    unsigned char tag[CRYPTO_AEAD_TAG_BYTES];
    memcpy(tag, in + n, sizeof tag);
    int rc = aead(0, key, nonce, aad, aad_len, in, n, out, tag);
    if (rc != 0)
        OPENSSL_cleanse(out, n);
    return rc;
}

bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    return CRYPTO_memcmp(a, b, a_len) == 0;
}

void crypto_sign_body(const char *secret, const void *body, size_t len, char out[72])
{
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_hmac_sha256_hex(secret, strlen(secret), body, len, hex);
    snprintf(out, 72, "sha256=%s", hex);
}

bool crypto_verify_signature(const char *secret, const void *body, size_t len, const char *header)
{
    char want[72];
    if (!header)
        return false;
    crypto_sign_body(secret, body, len, want);
    return crypto_equal(want, strlen(want), header, strlen(header));
}
