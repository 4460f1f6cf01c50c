/* seal.c - sealed secrets for one recipient (see seal.h): key ring parsing, the sealed string's
 * format; the cipher itself is crypto.h's AEAD. */
#include "seal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "crypto.h"
#include "ids.h"

#define SEAL_KEYS_MAX 8

struct seal_key {
    char kid[SEAL_KID_MAX + 1];
    unsigned char key[CRYPTO_AEAD_KEY_BYTES];
};

struct seal_keys {
    size_t n;
    struct seal_key keys[SEAL_KEYS_MAX];
};

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int kid_ok(const char *s, size_t n)
{
    if (n == 0 || n > SEAL_KID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!strchr(B64URL, s[i])) {
            return 0;
        }
    }
    return 1;
}

int seal_keys_parse(const char *spec, struct seal_keys **out, char *err, size_t err_len)
{
    struct seal_keys *k = xcalloc(1, sizeof(*k));
    const char *p = spec ? spec : "";
    *out = NULL;
    if (*p && p[strlen(p) - 1] == ',') {
        snprintf(err, err_len, "an empty key after the last comma");
        goto fail;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (!colon || !kid_ok(p, (size_t)(colon - p)) || colon + 1 == p + len) {
            snprintf(err, err_len, "key %zu is not kid:secret (kid 1-%d of A-Z a-z 0-9 - _)",
                     k->n + 1, SEAL_KID_MAX);
            goto fail;
        }
        if (k->n == SEAL_KEYS_MAX) {
            snprintf(err, err_len, "more than %d keys", SEAL_KEYS_MAX);
            goto fail;
        }
        struct seal_key *sk = &k->keys[k->n++];
        memcpy(sk->kid, p, (size_t)(colon - p));
        char label[64];
        int n = snprintf(label, sizeof(label), "seal v1 %s", sk->kid);
        crypto_hmac_sha256(colon + 1, (size_t)(p + len - colon - 1), label, (size_t)n, sk->key);
        p = end ? end + 1 : p + len;
    }
    if (k->n == 0) {
        snprintf(err, err_len, "no key");
        goto fail;
    }
    *out = k;
    return 0;
fail:
    seal_keys_free(k);
    return -1;
}

void seal_keys_free(struct seal_keys *k)
{
    if (k) {
        memset(k, 0, sizeof(*k)); /* no key material left in freed memory */
        free(k);
    }
}

const char *seal_keys_current(const struct seal_keys *k)
{
    return k->keys[0].kid;
}

static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = B64URL[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = B64URL[v & 63];
        }
    }
    out[o] = '\0';
}

/* Decodes unpadded base64url; returns the byte count, or -1 when malformed or over max. */
static long b64url_decode(const char *in, unsigned char *out, size_t max)
{
    size_t n = strlen(in), o = 0;
    unsigned v = 0;
    int bits = 0;
    if (n % 4 == 1) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(B64URL, in[i]);
        if (!c || !in[i]) {
            return -1;
        }
        v = (v << 6) | (unsigned)(c - B64URL);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == max) {
                return -1;
            }
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return (long)o;
}

#define RAW_MAX (CRYPTO_AEAD_NONCE_BYTES + SEAL_PLAIN_MAX + CRYPTO_AEAD_TAG_BYTES)

int seal_seal(const struct seal_keys *k, const char *ctx, const char *plain, char **out)
{
    size_t len = strlen(plain);
    unsigned char raw[RAW_MAX];
    *out = NULL;
    if (len > SEAL_PLAIN_MAX) {
        return -1;
    }
    random_bytes(raw, CRYPTO_AEAD_NONCE_BYTES);
    if (crypto_aead_seal(k->keys[0].key, raw, ctx, strlen(ctx), plain, len,
                         raw + CRYPTO_AEAD_NONCE_BYTES) != 0) {
        return -1;
    }
    size_t n = CRYPTO_AEAD_NONCE_BYTES + len + CRYPTO_AEAD_TAG_BYTES;
    char *s = xmalloc(4 + SEAL_KID_MAX + (n + 2) / 3 * 4 + 1);
    int head = snprintf(s, 4 + SEAL_KID_MAX, "v1.%s.", k->keys[0].kid);
    b64url_encode(raw, n, s + head);
    *out = s;
    return 0;
}

int seal_open(const struct seal_keys *k, const char *ctx, const char *sealed, char **plain)
{
    *plain = NULL;
    if (!sealed || strncmp(sealed, "v1.", 3) != 0) {
        return SEAL_EBAD;
    }
    const char *kid = sealed + 3, *dot = strchr(kid, '.');
    if (!dot || !kid_ok(kid, (size_t)(dot - kid))) {
        return SEAL_EBAD;
    }
    const struct seal_key *key = NULL;
    for (size_t i = 0; i < k->n && !key; i++) {
        if (strlen(k->keys[i].kid) == (size_t)(dot - kid) &&
            memcmp(k->keys[i].kid, kid, (size_t)(dot - kid)) == 0) {
            key = &k->keys[i];
        }
    }
    if (!key) {
        return SEAL_EKEY;
    }
    unsigned char raw[RAW_MAX];
    long n = b64url_decode(dot + 1, raw, sizeof(raw));
    if (n < CRYPTO_AEAD_NONCE_BYTES + CRYPTO_AEAD_TAG_BYTES) {
        return SEAL_EBAD;
    }
    size_t len = (size_t)n - CRYPTO_AEAD_NONCE_BYTES - CRYPTO_AEAD_TAG_BYTES;
    char *out = xmalloc(len + 1);
    if (crypto_aead_open(key->key, raw, ctx, strlen(ctx), raw + CRYPTO_AEAD_NONCE_BYTES,
                         (size_t)n - CRYPTO_AEAD_NONCE_BYTES, (unsigned char *)out) != 0) {
        free(out);
        return SEAL_EBAD;
    }
    out[len] = '\0';
    if (strlen(out) != len) { /* a NUL inside: not something we sealed */
        free(out);
        return SEAL_EBAD;
    }
    *plain = out;
    return 0;
}
