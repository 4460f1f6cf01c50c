/* crypto.c - SHA-256, HMAC-SHA256 bus signatures, constant-time comparison (see crypto.h). */
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
