/* crypto_scram.h - the primitives of SCRAM (RFC 5802, RFC 7677) as Kafka uses them (KIP-84):
 * Hi() (PBKDF2 with HMAC), HMAC, H, the stored credential (StoredKey, ServerKey), base64 and
 * random bytes. Part of the crypto family: only lib/crypto*.c include OpenSSL headers.
 *
 * Everything here is a pure function of its arguments and thread-safe. Secrets are compared with
 * crypto_equal() (constant time, crypto.h). */
#ifndef CRYPTO_SCRAM_H
#define CRYPTO_SCRAM_H

#include <stddef.h>

enum scram_hash { SCRAM_SHA256, SCRAM_SHA512 };

#define SCRAM_MAX_HASH_LEN 64
/* Kafka refuses fewer iterations (ScramMechanism.minIterations). */
#define SCRAM_MIN_ITERATIONS 4096
#define SCRAM_MAX_ITERATIONS 1000000

/* 32 for SHA-256, 64 for SHA-512. */
size_t scram_hash_len(enum scram_hash h);
/* "SCRAM-SHA-256" / "SCRAM-SHA-512". */
const char *scram_mechanism_name(enum scram_hash h);
/* Parses a mechanism name; -1 when it is not one of the two. */
int scram_mechanism_parse(const char *name, enum scram_hash *out);

/* Hi(password, salt, iterations) (RFC 5802 section 2.2) into out (scram_hash_len bytes).
 * Returns 0, or -1 when iterations are out of range or OpenSSL fails. */
int scram_hi(enum scram_hash h, const void *password, size_t password_len, const void *salt,
             size_t salt_len, int iterations, unsigned char *out);
/* HMAC(key, data) into out (scram_hash_len bytes). */
void scram_hmac(enum scram_hash h, const void *key, size_t key_len, const void *data, size_t len,
                unsigned char *out);
/* H(data) into out (scram_hash_len bytes). */
void scram_h(enum scram_hash h, const void *data, size_t len, unsigned char *out);

/* What a server keeps of a password (RFC 5802 section 3; Kafka's ScramCredential). */
struct scram_credential {
    enum scram_hash hash;
    unsigned char salt[64];
    size_t salt_len;
    int iterations;
    unsigned char stored_key[SCRAM_MAX_HASH_LEN];
    unsigned char server_key[SCRAM_MAX_HASH_LEN];
};

/* Derives StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey =
 * HMAC(SaltedPassword, "Server Key") from a password and salt (salt_len <= 64). Returns 0 or -1
 * (bad iterations or salt length). */
int scram_credential_derive(enum scram_hash h, const char *password, size_t password_len,
                            const void *salt, size_t salt_len, int iterations,
                            struct scram_credential *out);

/* The server side of one SCRAM exchange (RFC 5802 section 5; no channel binding, as Kafka):
 *
 *   client-first  --scram_server_client_first-->  (caller looks the user up)
 *                 --scram_server_first-->          server-first sent
 *   client-final  --scram_server_final-->          server-final (v=...) or failure
 *
 * A plain value owned by the caller (embed or allocate it); scram_server_release() wipes it.
 * Every function returns 0, or -1 with a sentence in s->err (for logs and Kafka's error
 * message); after -1 the exchange is over. */
struct scram_server {
    struct scram_credential cred;
    char *client_first_bare; /* heap; for AuthMessage */
    char *server_first;      /* heap */
    char client_nonce[256];
    char nonce[512]; /* client nonce + server nonce */
    char gs2_header[300];
    int step; /* 0 = nothing yet, 1 = client-first parsed, 2 = server-first sent, 3 = done */
    char err[160];
};

/* Parses client-first-message "n,[a=authzid],n=user,r=nonce[,ext]" and writes the user name
 * (SASL-name decoded: "=2C" is ',', "=3D" is '=') into user. An authzid other than the user, a
 * channel binding request ("p=") or a malformed message fail. */
int scram_server_client_first(struct scram_server *s, const char *msg, size_t len, char *user,
                              size_t user_len);
/* Builds server-first-message "r=<client nonce><server nonce>,s=<salt>,i=<iterations>" for the
 * user's credential into out (NUL-terminated). server_nonce NULL = 24 random bytes in base64
 * (tests pass the RFC's). */
int scram_server_first(struct scram_server *s, const struct scram_credential *cred,
                       const char *server_nonce, char *out, size_t out_len);
/* Checks client-final-message "c=<gs2 header b64>,r=<nonce>,p=<proof>": the nonce and channel
 * binding must match and H(ClientProof XOR HMAC(StoredKey, AuthMessage)) must equal StoredKey
 * (compared in constant time). On success writes server-final "v=<ServerSignature>" into out. */
int scram_server_final(struct scram_server *s, const char *msg, size_t len, char *out,
                       size_t out_len);
void scram_server_release(struct scram_server *s);

/* Overwrites n bytes at p with zeros in a way the compiler does not remove (key material). */
void crypto_cleanse(void *p, size_t n);

/* Fills out with n cryptographically random bytes; 0 or -1. */
int crypto_random_bytes(void *out, size_t n);

/* Standard base64 with padding. The encoder NUL-terminates; out_len must be at least
 * 4 * ((n + 2) / 3) + 1. Returns the text length, or -1 when out is too small. */
long crypto_base64_encode(const void *in, size_t n, char *out, size_t out_len);
/* Decodes padded standard base64 into out; returns the byte count, or -1 when the text is not
 * valid base64 or does not fit. */
long crypto_base64_decode(const char *in, size_t n, unsigned char *out, size_t out_len);

#endif
