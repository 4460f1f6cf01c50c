/* test_auth.c - HS256 player/staff tokens: round trip, wrong secret, tampering, "alg": "none",
 * expiry, missing claims. Hand-built tokens are signed here with crypto.h's HMAC so the checks
 * don't depend on auth_mint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "auth.h"
#include "crypto.h"

static const char *SECRET = "unit-test-secret";

static void b64url(const unsigned char *in, size_t n, char *out, size_t out_len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        assert_true(o + 4 < out_len);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = tbl[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = tbl[v & 63];
        }
    }
    out[o] = '\0';
}

/* header.payload.signature with HMAC-SHA256(secret); sign = 0 leaves the signature empty. */
static void make_token(const char *header, const char *payload, const char *secret, int sign,
                       char *out, size_t out_len)
{
    char h[512], p[512];
    b64url((const unsigned char *)header, strlen(header), h, sizeof(h));
    b64url((const unsigned char *)payload, strlen(payload), p, sizeof(p));
    char signing[1100];
    snprintf(signing, sizeof(signing), "%s.%s", h, p);
    char sig64[128] = "";
    if (sign) {
        char hex[CRYPTO_SHA256_HEX_LEN + 1];
        unsigned char raw[32];
        crypto_hmac_sha256_hex(secret, strlen(secret), signing, strlen(signing), hex);
        for (int i = 0; i < 32; i++) {
            unsigned v;
            assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
            raw[i] = (unsigned char)v;
        }
        b64url(raw, sizeof(raw), sig64, sizeof(sig64));
    }
    snprintf(out, out_len, "%s.%s", signing, sig64);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct auth_identity id;
    char err[128];
    char *t = auth_mint(SECRET, AUTH_PLAYER, "acct-42", 60);
    assert_non_null(t);
    assert_int_equal(auth_verify(SECRET, t, &id, err, sizeof(err)), 0);
    assert_int_equal(id.role, AUTH_PLAYER);
    assert_string_equal(id.subject, "acct-42");
    free(t);

    t = auth_mint(SECRET, AUTH_STAFF, "alice", 60);
    assert_non_null(t);
    assert_int_equal(auth_verify(SECRET, t, &id, err, sizeof(err)), 0);
    assert_int_equal(id.role, AUTH_STAFF);
    assert_string_equal(id.subject, "alice");
    free(t);
}

static void test_mint_refuses_bad_input(void **state)
{
    (void)state;
    assert_null(auth_mint("", AUTH_PLAYER, "a", 60));
    assert_null(auth_mint(SECRET, AUTH_NONE, "a", 60));
    assert_null(auth_mint(SECRET, AUTH_PLAYER, "", 60));
    assert_null(auth_mint(SECRET, AUTH_PLAYER, "a", 0));
}

static void test_wrong_secret_and_tampering(void **state)
{
    (void)state;
    struct auth_identity id;
    char err[128];
    char *t = auth_mint(SECRET, AUTH_PLAYER, "acct-1", 60);
    assert_non_null(t);
    assert_int_equal(auth_verify("other-secret", t, &id, err, sizeof(err)), -1);
    assert_int_equal(id.role, AUTH_NONE);
    assert_int_equal(auth_verify("", t, &id, err, sizeof(err)), -1);

    /* Swap the payload for one claiming staff, keep the original signature. */
    char forged[1200];
    make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
               "{\"sub\":\"acct-1\",\"role\":\"staff\",\"exp\":9999999999}", "guess", 1, forged,
               sizeof(forged));
    const char *orig_sig = strrchr(t, '.');
    char *forged_sig = strrchr(forged, '.');
    snprintf(forged_sig, sizeof(forged) - (size_t)(forged_sig - forged), "%s", orig_sig);
    assert_int_equal(auth_verify(SECRET, forged, &id, err, sizeof(err)), -1);
    free(t);

    assert_int_equal(auth_verify(SECRET, "not-a-token", &id, err, sizeof(err)), -1);
    assert_int_equal(auth_verify(SECRET, "", &id, err, sizeof(err)), -1);
    assert_int_equal(auth_verify(SECRET, NULL, &id, err, sizeof(err)), -1);
}

static void test_hand_built_valid_token(void **state)
{
    (void)state;
    struct auth_identity id;
    char err[128], tok[1200], payload[256];
    snprintf(payload, sizeof(payload), "{\"sub\":\"p9\",\"role\":\"player\",\"exp\":%lld}",
             (long long)time(NULL) + 100);
    make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, SECRET, 1, tok, sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), 0);
    assert_string_equal(id.subject, "p9");
}

static void test_alg_none_refused(void **state)
{
    (void)state;
    struct auth_identity id;
    char err[128], tok[1200];
    make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}",
               "{\"sub\":\"acct-1\",\"role\":\"staff\",\"exp\":9999999999}", SECRET, 0, tok,
               sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), -1);
    assert_int_equal(id.role, AUTH_NONE);
    /* Also with an HS512 header signed with the secret: only HS256 is accepted. */
    make_token("{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
               "{\"sub\":\"acct-1\",\"role\":\"staff\",\"exp\":9999999999}", SECRET, 1, tok,
               sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), -1);
}

static void test_expiry_and_claims(void **state)
{
    (void)state;
    struct auth_identity id;
    char err[128], tok[1200], payload[256];
    snprintf(payload, sizeof(payload), "{\"sub\":\"p1\",\"role\":\"player\",\"exp\":%lld}",
             (long long)time(NULL) - 5);
    make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, SECRET, 1, tok, sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expired"));

    make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"p1\",\"role\":\"player\"}",
               SECRET, 1, tok, sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), -1);

    make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
               "{\"sub\":\"p1\",\"role\":\"admin\",\"exp\":9999999999}", SECRET, 1, tok,
               sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), -1);

    make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"role\":\"staff\",\"exp\":9999999999}",
               SECRET, 1, tok, sizeof(tok));
    assert_int_equal(auth_verify(SECRET, tok, &id, err, sizeof(err)), -1);
}

/* Service clients: "name:sha256hex[,...]" parsed, a token found by its hash, anything else not. */
static void test_service_clients(void **state)
{
    (void)state;
    char ha[CRYPTO_SHA256_HEX_LEN + 1], hb[CRYPTO_SHA256_HEX_LEN + 1], spec[256], err[128];
    crypto_sha256_hex("token-a", 7, ha);
    crypto_sha256_hex("token-b", 7, hb);
    snprintf(spec, sizeof spec, "fleet-a:%s,fleet-b:%s", ha, hb);
    struct auth_clients cl;
    assert_int_equal(auth_clients_parse(&cl, "status_tokens", spec, err, sizeof err), 0);
    assert_int_equal(cl.n, 2);
    assert_string_equal(auth_clients_find(&cl, "token-b")->name, "fleet-b");
    assert_string_equal(auth_clients_find(&cl, "token-a")->name, "fleet-a");
    assert_null(auth_clients_find(&cl, "token-c"));
    assert_null(auth_clients_find(&cl, ""));
    assert_null(auth_clients_find(&cl, NULL));
    assert_null(auth_clients_find(&cl, ha)); /* the hash itself is no token */
    assert_int_equal(auth_clients_parse(&cl, "k", "", err, sizeof err), 0);
    assert_int_equal(cl.n, 0);
    assert_null(auth_clients_find(&cl, "token-a"));
    const char *bad[] = {
        "nocolon",   ":abc", "name:ABCDEF",
        "name:0123", "a:",   "x:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(auth_clients_parse(&cl, "contacts_tokens", bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "contacts_tokens: entry 1"));
    }
    snprintf(spec, sizeof spec, "ok:%s,:%s", ha, hb);
    assert_int_equal(auth_clients_parse(&cl, "k", spec, err, sizeof err), -1);
    assert_non_null(strstr(err, "entry 2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_mint_refuses_bad_input),
        cmocka_unit_test(test_wrong_secret_and_tampering),
        cmocka_unit_test(test_hand_built_valid_token),
        cmocka_unit_test(test_alg_none_refused),
        cmocka_unit_test(test_expiry_and_claims),
        cmocka_unit_test(test_service_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
