/* seal.h - secrets sealed for one recipient on the bus: a small value (an unlock code, a contact
 * confirmation code) that must cross topics, dead letters and HTTP answers without being
 * readable there. Guard seals, notify opens; both hold the same key ring.
 *
 * Sealed form (a JSON string, safe in any event): "v1.<kid>.<base64url(nonce | ct | tag)>",
 * AES-256-GCM (crypto.h) with a random 96-bit nonce. The key of id kid is
 * HMAC-SHA256(secret, "seal v1 " kid), so any secret string of at least 32 bytes serves. The
 * caller's context (e.g. "unlock\n<account id>") is authenticated as associated data: a sealed
 * value moved to another account or purpose does not open.
 *
 * Key ring spec: "kid:secret[,kid:secret...]" (kid 1-32 of [A-Za-z0-9_-]; a secret holds no
 * comma). seal_seal() uses the first key; seal_open() any key named by the value's kid, so keys
 * rotate by putting the new one first at the opener, then at the sealer, then dropping the old.
 *
 * A struct seal_keys is immutable after seal_keys_parse() and may be used from any thread. */
#ifndef SEAL_H
#define SEAL_H

#include <stddef.h>

/* The development key ring of guard and notify (public: production refuses it, CONFIG_KEY). */
#define SEAL_DEV_KEYS "dev:dev-only-code-seal-key-shared-by-guard-and-notify"

#define SEAL_KID_MAX 32
#define SEAL_PLAIN_MAX 256 /* largest value sealed */
#define SEAL_EKEY (-2)     /* no key of the value's kid */
#define SEAL_EBAD (-3)     /* malformed, forged, or sealed for another context */

struct seal_keys;

/* Parses spec into *out (free with seal_keys_free). Returns 0, or -1 with a sentence in err
 * (never quoting a secret). */
int seal_keys_parse(const char *spec, struct seal_keys **out, char *err, size_t err_len);
void seal_keys_free(struct seal_keys *k);
/* The kid seal_seal() uses (borrowed). */
const char *seal_keys_current(const struct seal_keys *k);

/* Seals plain (at most SEAL_PLAIN_MAX bytes) for context ctx; *out receives the sealed string
 * (heap, caller frees). Returns 0, or -1 when plain is too long. */
int seal_seal(const struct seal_keys *k, const char *ctx, const char *plain, char **out);
/* Opens sealed for context ctx; *plain receives the value (heap, NUL-terminated, caller frees and
 * should wipe). Returns 0, SEAL_EKEY or SEAL_EBAD. */
int seal_open(const struct seal_keys *k, const char *ctx, const char *sealed, char **plain);

#endif
