/* crypto.c - SHA-256, HMAC-SHA256 bus signatures, constant-time comparison (see crypto.h). */
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"

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
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1) {
        abort();
    }
    to_hex(md, 32, out);
}

void crypto_hmac_sha256_hex(const char *key, size_t key_len, const void *data, size_t len,
                            char out[CRYPTO_SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, md, &md_len)) {
        abort();
    }
    to_hex(md, 32, out);
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32])
{
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &md_len) || md_len != 32) {
        abort();
    }
}

/* One AES-256-GCM operation; enc 1 seals (tag written after the output), 0 opens (tag read). */
static int aead(int enc, const unsigned char *key, const unsigned char *nonce, const void *aad,
                size_t aad_len, const unsigned char *in, size_t len, unsigned char *out,
                unsigned char *tag)
{
    int rc = -1, n = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c) {
        abort();
    }
    if (len > INT32_MAX || aad_len > INT32_MAX) {
        goto out;
    }
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_AEAD_NONCE_BYTES, NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1) {
        goto out;
    }
    if (aad_len && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1) {
        goto out;
    }
    if (len && EVP_CipherUpdate(c, out, &n, in, (int)len) != 1) {
        goto out;
    }
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPTO_AEAD_TAG_BYTES, tag) != 1) {
        goto out;
    }
    if (EVP_CipherFinal_ex(c, out + n, &n) != 1) { /* opening: the tag did not verify */
        goto out;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPTO_AEAD_TAG_BYTES, tag) != 1) {
        goto out;
    }
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
    if (len < CRYPTO_AEAD_TAG_BYTES) {
        return -1;
    }
    size_t n = len - CRYPTO_AEAD_TAG_BYTES;
    unsigned char tag[CRYPTO_AEAD_TAG_BYTES];
    memcpy(tag, in + n, sizeof tag);
    int rc = aead(0, key, nonce, aad, aad_len, in, n, out, tag);
    if (rc != 0) {
        OPENSSL_cleanse(out, n);
    }
    return rc;
}

bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (a_len != b_len) {
        return false;
    }
    return CRYPTO_memcmp(a, b, a_len) == 0;
}

/* One key of a space-separated list: the bytes HMAC takes (a whsec_ key decoded). Returns the
 * length, or -1 for a whsec_ key that is not base64 or too long. */
static int key_bytes(const char *key, size_t key_len, unsigned char *out, size_t out_len)
{
    if (key_len > 6 && strncmp(key, "whsec_", 6) == 0) {
        size_t b64_len = key_len - 6;
        if (b64_len % 4 != 0 || b64_len / 4 * 3 > out_len) {
            return -1;
        }
        int n = EVP_DecodeBlock(out, (const unsigned char *)key + 6, (int)b64_len);
        if (n < 0) {
            return -1;
        }
        /* EVP_DecodeBlock counts the '=' padding as zero bytes */
        for (size_t i = key_len; i > 6 && key[i - 1] == '='; i--) {
            n--;
        }
        return n;
    }
    if (key_len > out_len) {
        return -1;
    }
    memcpy(out, key, key_len);
    return (int)key_len;
}

/* The HMAC implementation, fetched once (a fetch per message would look it up every time). */
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_alg;

static void hmac_fetch(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!hmac_alg) {
        abort();
    }
}

/* An HMAC-SHA256 context holding one key of a list (its padded key hashed once), or NULL for a
 * whsec_ key that does not decode. */
static EVP_MAC_CTX *mac_new(const char *key, size_t key_len)
{
    unsigned char raw[1024];
    int raw_len = key_bytes(key, key_len, raw, sizeof raw);
    if (raw_len <= 0) {
        return NULL;
    }
    pthread_once(&hmac_once, hmac_fetch);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_alg);
    if (!ctx) {
        abort();
    }
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx, raw, (size_t)raw_len, params) != 1) {
        abort();
    }
    OPENSSL_cleanse(raw, sizeof raw);
    return ctx;
}

/* base64(HMAC-SHA256(ctx's key, "<id>.<timestamp>.<body>")) into out. EVP_MAC_init without a
 * key starts a new message with the key already set (OpenSSL's HMAC keeps the key's inner and
 * outer states and copies them), whatever ctx signed before. */
static void mac_message(EVP_MAC_CTX *ctx, const char *id, long long timestamp, const void *body,
                        size_t len, char out[CRYPTO_WEBHOOK_SIG_LEN + 1])
{
    char head[BUF_INT_LEN + 2]; /* ".<timestamp>." */
    head[0] = '.';
    size_t head_len = 1 + buf_format_int(head + 1, timestamp);
    head[head_len++] = '.';
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t md_len = 0;
    int ok = EVP_MAC_init(ctx, NULL, 0, NULL) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)head, head_len) == 1 &&
             EVP_MAC_update(ctx, body, len) == 1 && EVP_MAC_final(ctx, md, &md_len, sizeof md) == 1;
    if (!ok || md_len != 32) {
        abort();
    }
    EVP_EncodeBlock((unsigned char *)out, md, 32);
}

/* The next key of a space-separated list from *p: its start and length (0 at the end). */
static size_t next_key(const char **p, const char **key)
{
    while (**p == ' ') {
        (*p)++;
    }
    *key = *p;
    while (**p && **p != ' ') {
        (*p)++;
    }
    return (size_t)(*p - *key);
}

struct crypto_webhook_signer {
    EVP_MAC_CTX *macs[CRYPTO_WEBHOOK_MAX_KEYS]; /* one per key, in the list's order */
    int n_keys;
};

/* A signer of keys. is_lenient (for verifying): a bad whsec_ key is skipped and the list is
 * read up to CRYPTO_WEBHOOK_MAX_KEYS good keys; otherwise either is a failure. */
static struct crypto_webhook_signer *signer_make(const char *keys, bool is_lenient)
{
    struct crypto_webhook_signer *s = xcalloc(1, sizeof *s);
    const char *p = keys ? keys : "", *key;
    size_t key_len;
    while ((key_len = next_key(&p, &key)) > 0) {
        if (s->n_keys == CRYPTO_WEBHOOK_MAX_KEYS) {
            if (is_lenient) {
                break;
            }
            goto fail;
        }
        s->macs[s->n_keys] = mac_new(key, key_len);
        if (!s->macs[s->n_keys]) {
            if (is_lenient) {
                continue;
            }
            goto fail;
        }
        s->n_keys++;
    }
    if (s->n_keys == 0) {
        goto fail;
    }
    return s;
fail:
    crypto_webhook_signer_free(s);
    return NULL;
}

struct crypto_webhook_signer *crypto_webhook_signer_new(const char *keys)
{
    return signer_make(keys, false);
}

void crypto_webhook_signer_free(struct crypto_webhook_signer *s)
{
    if (!s) {
        return;
    }
    for (int i = 0; i < s->n_keys; i++) {
        EVP_MAC_CTX_free(s->macs[i]);
    }
    free(s);
}

int crypto_webhook_signer_sign(struct crypto_webhook_signer *s, const char *id, long long timestamp,
                               const void *body, size_t len, char *out, size_t out_len)
{
    /* "v1,<sig>" per key, space-separated, and the NUL */
    if (out_len < (size_t)s->n_keys * (CRYPTO_WEBHOOK_SIG_LEN + 4)) {
        return -1;
    }
    char *o = out;
    for (int i = 0; i < s->n_keys; i++) {
        if (i > 0) {
            *o++ = ' ';
        }
        memcpy(o, "v1,", 3);
        mac_message(s->macs[i], id, timestamp, body, len, o + 3);
        o += 3 + CRYPTO_WEBHOOK_SIG_LEN;
    }
    *o = '\0';
    return 0;
}

int crypto_webhook_sign(const char *keys, const char *id, long long timestamp, const void *body,
                        size_t len, char *out, size_t out_len)
{
    struct crypto_webhook_signer *s = crypto_webhook_signer_new(keys);
    if (!s) {
        return -1;
    }
    int rc = crypto_webhook_signer_sign(s, id, timestamp, body, len, out, out_len);
    crypto_webhook_signer_free(s);
    return rc;
}

/* Each thread's verifier: the signer of the last key list it verified with (a receiver checks
 * every delivery against one list), so a check costs hashing the message, not setting up the
 * keys (2.4 against 0.6 us for one key and a 300-byte body). Freed when the thread ends. */
struct verifier {
    char *keys;
    struct crypto_webhook_signer *signer; /* NULL: keys holds no good key */
};
static pthread_once_t verifier_once = PTHREAD_ONCE_INIT;
static pthread_key_t verifier_key;

/* Wipes and frees the copy of the key list (a secret). */
static void keys_free(char *keys)
{
    if (keys) {
        OPENSSL_cleanse(keys, strlen(keys));
        free(keys);
    }
}

static void verifier_free(void *arg)
{
    struct verifier *v = arg;
    crypto_webhook_signer_free(v->signer);
    keys_free(v->keys);
    free(v);
}

static void verifier_key_make(void)
{
    if (pthread_key_create(&verifier_key, verifier_free) != 0) {
        abort();
    }
}

static struct crypto_webhook_signer *verifier_for(const char *keys)
{
    pthread_once(&verifier_once, verifier_key_make);
    struct verifier *v = pthread_getspecific(verifier_key);
    if (v && strcmp(v->keys, keys) == 0) {
        return v->signer;
    }
    if (!v) {
        v = xcalloc(1, sizeof *v);
        if (pthread_setspecific(verifier_key, v) != 0) {
            abort();
        }
    }
    crypto_webhook_signer_free(v->signer);
    keys_free(v->keys);
    v->keys = xstrdup(keys);
    v->signer = signer_make(keys, true);
    return v->signer;
}

bool crypto_webhook_verify(const char *keys, const char *id, long long timestamp, const void *body,
                           size_t len, const char *header)
{
    if (!header || !keys) {
        return false;
    }
    struct crypto_webhook_signer *s = verifier_for(keys);
    char want[CRYPTO_WEBHOOK_MAX_KEYS][CRYPTO_WEBHOOK_SIG_LEN + 1];
    int n_want = s ? s->n_keys : 0;
    for (int i = 0; i < n_want; i++) {
        mac_message(s->macs[i], id, timestamp, body, len, want[i]);
    }
    bool is_match = false;
    int n_seen = 0;
    const char *p = header;
    const char *sig;
    size_t sig_len;
    while (n_seen++ < CRYPTO_WEBHOOK_MAX_KEYS && (sig_len = next_key(&p, &sig)) > 0) {
        if (sig_len < 3 || strncmp(sig, "v1,", 3) != 0) {
            continue; /* another scheme (v1a, ...): not ours */
        }
        for (int i = 0; i < n_want; i++) {
            is_match |= crypto_equal(want[i], CRYPTO_WEBHOOK_SIG_LEN, sig + 3, sig_len - 3);
        }
    }
    return is_match;
}
