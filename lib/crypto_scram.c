/* crypto_scram.c - SCRAM primitives on OpenSSL's libcrypto (see crypto_scram.h). */
#include "crypto_scram.h"

#include "alloc.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const EVP_MD *md_of(enum scram_hash h)
{
    return h == SCRAM_SHA512 ? EVP_sha512() : EVP_sha256();
}

size_t scram_hash_len(enum scram_hash h)
{
    return h == SCRAM_SHA512 ? 64 : 32;
}

const char *scram_mechanism_name(enum scram_hash h)
{
    return h == SCRAM_SHA512 ? "SCRAM-SHA-512" : "SCRAM-SHA-256";
}

int scram_mechanism_parse(const char *name, enum scram_hash *out)
{
    if (!strcmp(name, "SCRAM-SHA-256")) {
        *out = SCRAM_SHA256;
    } else if (!strcmp(name, "SCRAM-SHA-512")) {
        *out = SCRAM_SHA512;
    } else {
        return -1;
    }
    return 0;
}

int scram_hi(enum scram_hash h, const void *password, size_t password_len, const void *salt,
             size_t salt_len, int iterations, unsigned char *out)
{
    if (iterations < 1 || iterations > SCRAM_MAX_ITERATIONS || password_len > 1 << 20 ||
        salt_len > 1 << 20) {
        return -1;
    }
    /* Hi() is PBKDF2 with HMAC as the PRF and dkLen = the hash length (RFC 5802 section 2.2). */
    if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, iterations, md_of(h),
                          (int)scram_hash_len(h), out) != 1) {
        return -1;
    }
    return 0;
}

void scram_hmac(enum scram_hash h, const void *key, size_t key_len, const void *data, size_t len,
                unsigned char *out)
{
    unsigned int n = 0;
    if (!HMAC(md_of(h), key, (int)key_len, data, len, out, &n)) {
        abort();
    }
}

void scram_h(enum scram_hash h, const void *data, size_t len, unsigned char *out)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, md_of(h), NULL) != 1) {
        abort();
    }
}

int scram_credential_derive(enum scram_hash h, const char *password, size_t password_len,
                            const void *salt, size_t salt_len, int iterations,
                            struct scram_credential *out)
{
    unsigned char salted[SCRAM_MAX_HASH_LEN], client_key[SCRAM_MAX_HASH_LEN];
    if (salt_len > sizeof out->salt) {
        return -1;
    }
    if (scram_hi(h, password, password_len, salt, salt_len, iterations, salted) != 0) {
        return -1;
    }
    size_t n = scram_hash_len(h);
    memset(out, 0, sizeof *out);
    out->hash = h;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    out->iterations = iterations;
    scram_hmac(h, salted, n, "Client Key", 10, client_key);
    scram_h(h, client_key, n, out->stored_key);
    scram_hmac(h, salted, n, "Server Key", 10, out->server_key);
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return 0;
}

void crypto_cleanse(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}

int crypto_random_bytes(void *out, size_t n)
{
    if (n > 1 << 20) {
        return -1;
    }
    return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

long crypto_base64_encode(const void *in, size_t n, char *out, size_t out_len)
{
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (out_len < need || n > 1 << 20) {
        return -1;
    }
    return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int b64_valid(const char *in, size_t n)
{
    if (n % 4 != 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i + 2 >= n);
        if (!ok) {
            return 0;
        }
    }
    if (n >= 2 && in[n - 2] == '=' && in[n - 1] != '=') {
        return 0;
    }
    return 1;
}

long crypto_base64_decode(const char *in, size_t n, unsigned char *out, size_t out_len)
{
    /* EVP_DecodeBlock accepts whitespace and counts padding as zero bytes: validate strictly
     * first and strip what the padding stands for. */
    if (!b64_valid(in, n) || n > 1 << 20) {
        return -1;
    }
    size_t pad = (n >= 1 && in[n - 1] == '=') + (n >= 2 && in[n - 2] == '=');
    size_t len = n / 4 * 3 - pad;
    if (len > out_len) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    unsigned char *tmp = xmalloc(n / 4 * 3 + 1);
    int rc = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    if (rc >= 0) {
        memcpy(out, tmp, len);
    }
    free(tmp);
    return rc < 0 ? -1 : (long)len;
}

/* ---- the server side of an exchange (RFC 5802 sections 3, 5 and 7) ---- */

static int fail(struct scram_server *s, const char *why)
{
    snprintf(s->err, sizeof s->err, "%s", why);
    s->step = 3;
    return -1;
}

/* The value of attribute `name` ("n", "r", ...) at the start of the comma-separated part `p`
 * (len n); NULL when the part is another attribute. */
static const char *attr(const char *p, size_t n, char name, size_t *vlen)
{
    if (n < 2 || p[0] != name || p[1] != '=') {
        return NULL;
    }
    *vlen = n - 2;
    return p + 2;
}

/* Splits msg at commas into at most max parts; returns the count, or -1 when there are more. */
static int split(const char *msg, size_t len, const char **parts, size_t *lens, int max)
{
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || msg[i] == ',') {
            if (n == max) {
                return -1;
            }
            parts[n] = msg + start;
            lens[n++] = i - start;
            start = i + 1;
        }
    }
    return n;
}

static int printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e || p[i] == ',') {
            return 0;
        }
    }
    return 1;
}

/* Decodes a saslname ("=2C" -> ',', "=3D" -> '='); -1 on another escape or when too long. */
static int saslname_decode(const char *p, size_t n, char *out, size_t out_len)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '=') {
            if (i + 2 >= n) {
                return -1;
            }
            if (p[i + 1] == '2' && p[i + 2] == 'C') {
                c = ',';
            } else if (p[i + 1] == '3' && p[i + 2] == 'D') {
                c = '=';
            } else {
                return -1;
            }
            i += 2;
        } else if (c == 0) {
            return -1;
        }
        if (k + 1 >= out_len) {
            return -1;
        }
        out[k++] = c;
    }
    out[k] = 0;
    return k ? 0 : -1;
}

int scram_server_client_first(struct scram_server *s, const char *msg, size_t len, char *user,
                              size_t user_len)
{
    memset(s, 0, sizeof *s);
    const char *parts[16];
    size_t lens[16];
    int n = split(msg, len, parts, lens, 16);
    if (n < 4) {
        return fail(s, "malformed client-first message");
    }
    /* gs2-header: "n" (no channel binding) or "y" (client could but thinks we cannot); "p=" asks
     * for channel binding, which Kafka does not offer either. */
    if (lens[0] != 1 || (parts[0][0] != 'n' && parts[0][0] != 'y')) {
        return fail(s, "channel binding is not supported");
    }
    size_t ulen = 0, nlen = 0, alen = 0;
    const char *authzid = lens[1] ? attr(parts[1], lens[1], 'a', &alen) : NULL;
    if (lens[1] && !authzid) {
        return fail(s, "malformed authorization id");
    }
    const char *u = attr(parts[2], lens[2], 'n', &ulen);
    const char *nonce = attr(parts[3], lens[3], 'r', &nlen);
    if (!u || !nonce || nlen == 0 || nlen >= sizeof s->client_nonce || !printable(nonce, nlen)) {
        return fail(s, "malformed client-first message");
    }
    if (saslname_decode(u, ulen, user, user_len) != 0) {
        return fail(s, "malformed user name");
    }
    if (authzid) {
        char az[256];
        if (saslname_decode(authzid, alen, az, sizeof az) != 0 || strcmp(az, user) != 0) {
            return fail(s, "authorization id must be the user name");
        }
    }
    size_t gs2 = (size_t)(parts[2] - msg);
    if (gs2 >= sizeof s->gs2_header) {
        return fail(s, "malformed client-first message");
    }
    memcpy(s->gs2_header, msg, gs2);
    s->gs2_header[gs2] = 0;
    memcpy(s->client_nonce, nonce, nlen);
    s->client_nonce[nlen] = 0;
    s->client_first_bare = xstrndup(parts[2], len - gs2);
    s->step = 1;
    return 0;
}

int scram_server_first(struct scram_server *s, const struct scram_credential *cred,
                       const char *server_nonce, char *out, size_t out_len)
{
    if (s->step != 1) {
        return fail(s, "unexpected server-first step");
    }
    char rnd[40];
    if (!server_nonce) {
        unsigned char raw[24];
        if (crypto_random_bytes(raw, sizeof raw) != 0 ||
            crypto_base64_encode(raw, sizeof raw, rnd, sizeof rnd) < 0) {
            return fail(s, "no random bytes");
        }
        server_nonce = rnd;
    }
    char salt[128];
    if (crypto_base64_encode(cred->salt, cred->salt_len, salt, sizeof salt) < 0) {
        return fail(s, "salt too long");
    }
    int n = snprintf(s->nonce, sizeof s->nonce, "%s%s", s->client_nonce, server_nonce);
    if (n < 0 || (size_t)n >= sizeof s->nonce) {
        return fail(s, "nonce too long");
    }
    n = snprintf(out, out_len, "r=%s,s=%s,i=%d", s->nonce, salt, cred->iterations);
    if (n < 0 || (size_t)n >= out_len) {
        return fail(s, "server-first message too long");
    }
    s->cred = *cred;
    s->server_first = xstrdup(out);
    s->step = 2;
    return 0;
}

int scram_server_final(struct scram_server *s, const char *msg, size_t len, char *out,
                       size_t out_len)
{
    if (s->step != 2) {
        return fail(s, "unexpected client-final step");
    }
    const char *parts[16];
    size_t lens[16];
    int n = split(msg, len, parts, lens, 16);
    size_t clen = 0, rlen = 0, plen = 0;
    const char *cb = n >= 3 ? attr(parts[0], lens[0], 'c', &clen) : NULL;
    const char *r = n >= 3 ? attr(parts[1], lens[1], 'r', &rlen) : NULL;
    const char *p = n >= 3 ? attr(parts[n - 1], lens[n - 1], 'p', &plen) : NULL;
    if (!cb || !r || !p) {
        return fail(s, "malformed client-final message");
    }
    char want_cb[512];
    if (crypto_base64_encode(s->gs2_header, strlen(s->gs2_header), want_cb, sizeof want_cb) < 0 ||
        strlen(want_cb) != clen || memcmp(want_cb, cb, clen) != 0) {
        return fail(s, "channel binding does not match");
    }
    /* Kafka checks that the nonce *ends with* the server's (ScramSaslServer), and librdkafka
     * relies on it: it sends its client nonce again in front of the combined one. The proof
     * covers the message as sent, so this weakens nothing. */
    size_t nl = strlen(s->nonce);
    if (rlen < nl || memcmp(r + rlen - nl, s->nonce, nl) != 0) {
        return fail(s, "nonce does not match");
    }
    enum scram_hash h = s->cred.hash;
    size_t hl = scram_hash_len(h);
    unsigned char proof[SCRAM_MAX_HASH_LEN + 3];
    if (crypto_base64_decode(p, plen, proof, sizeof proof) != (long)hl) {
        return fail(s, "malformed client proof");
    }
    /* AuthMessage = client-first-message-bare + "," + server-first-message + "," +
     * client-final-message-without-proof */
    size_t without_proof = (size_t)(parts[n - 1] - msg) - 1;
    char *auth =
        xasprintf("%s,%s,%.*s", s->client_first_bare, s->server_first, (int)without_proof, msg);
    unsigned char sig[SCRAM_MAX_HASH_LEN], key[SCRAM_MAX_HASH_LEN], stored[SCRAM_MAX_HASH_LEN];
    scram_hmac(h, s->cred.stored_key, hl, auth, strlen(auth), sig);
    for (size_t i = 0; i < hl; i++) {
        key[i] = proof[i] ^ sig[i];
    }
    scram_h(h, key, hl, stored);
    int ok = CRYPTO_memcmp(stored, s->cred.stored_key, hl) == 0;
    int rc = -1;
    if (!ok) {
        fail(s, "invalid credentials");
        goto out;
    }
    scram_hmac(h, s->cred.server_key, hl, auth, strlen(auth), sig);
    char v[SCRAM_MAX_HASH_LEN * 2];
    if (crypto_base64_encode(sig, hl, v, sizeof v) < 0 ||
        snprintf(out, out_len, "v=%s", v) >= (int)out_len) {
        fail(s, "server-final message too long");
        goto out;
    }
    s->step = 3;
    rc = 0;
out:
    OPENSSL_cleanse(key, sizeof key);
    free(auth);
    return rc;
}

void scram_server_release(struct scram_server *s)
{
    free(s->client_first_bare);
    free(s->server_first);
    OPENSSL_cleanse(s, sizeof *s);
}
