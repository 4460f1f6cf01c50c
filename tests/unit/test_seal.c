/* test_seal.c - the AEAD (AES-256-GCM known answers) and sealed values: round trip, context
 * binding, tampering, unknown key ids, rotation, key ring parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "seal.h"

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    }
}

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13 and 14. */
static void test_aead_known_answers(void **state)
{
    (void)state;
    unsigned char key[32] = {0}, nonce[12] = {0}, zeros[16] = {0}, out[32], back[16];
    char h[65];
    assert_int_equal(crypto_aead_seal(key, nonce, NULL, 0, NULL, 0, out), 0);
    hex(out, 16, h);
    assert_string_equal(h, "530f8afbc74536b9a963b4f1c4cb738b");
    assert_int_equal(crypto_aead_seal(key, nonce, NULL, 0, zeros, 16, out), 0);
    hex(out, 32, h);
    assert_string_equal(h, "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
    assert_int_equal(crypto_aead_open(key, nonce, NULL, 0, out, 32, back), 0);
    assert_memory_equal(back, zeros, 16);
    out[3] ^= 1;
    assert_int_equal(crypto_aead_open(key, nonce, NULL, 0, out, 32, back), -1);
    assert_int_equal(crypto_aead_open(key, nonce, NULL, 0, out, 15, back), -1);
}

static struct seal_keys *keys(const char *spec)
{
    struct seal_keys *k = NULL;
    char err[128];
    assert_int_equal(seal_keys_parse(spec, &k, err, sizeof err), 0);
    return k;
}

static void test_round_trip_and_context(void **state)
{
    (void)state;
    struct seal_keys *k = keys("k1:a-secret-of-at-least-thirty-two-bytes!");
    char *s = NULL, *s2 = NULL, *p = NULL;
    assert_string_equal(seal_keys_current(k), "k1");
    assert_int_equal(seal_seal(k, "unlock\nacct-1", "12345678", &s), 0);
    assert_true(strncmp(s, "v1.k1.", 6) == 0);
    assert_null(strstr(s, "12345678"));
    assert_int_equal(seal_open(k, "unlock\nacct-1", s, &p), 0);
    assert_string_equal(p, "12345678");
    free(p);
    /* another account or purpose: does not open */
    assert_int_equal(seal_open(k, "unlock\nacct-2", s, &p), SEAL_EBAD);
    assert_null(p);
    assert_int_equal(seal_open(k, "contact\nacct-1", s, &p), SEAL_EBAD);
    /* a fresh nonce each time: two seals of one value differ */
    assert_int_equal(seal_seal(k, "unlock\nacct-1", "12345678", &s2), 0);
    assert_string_not_equal(s, s2);
    /* any changed character is refused */
    for (size_t i = 6; i < strlen(s); i++) {
        char *t = strdup(s);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(seal_open(k, "unlock\nacct-1", t, &p), 0);
        assert_null(p);
        free(t);
    }
    const char *bad[] = {"",         "v1",      "v1.k1",      "v1.k1.",  "v2.k1.AAAA",
                         "v1..AAAA", "v1.k1.A", "v1.k1.!!!!", "12345678"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(seal_open(k, "unlock\nacct-1", bad[i], &p), SEAL_EBAD);
    }
    free(s);
    free(s2);
    seal_keys_free(k);
}

static void test_rotation_by_key_id(void **state)
{
    (void)state;
    struct seal_keys *old = keys("k1:the-old-secret-of-thirty-two-bytes-or-more");
    struct seal_keys *both = keys("k2:the-new-secret-of-thirty-two-bytes-or-more,"
                                  "k1:the-old-secret-of-thirty-two-bytes-or-more");
    struct seal_keys *other = keys("k1:a-different-secret-under-the-same-key-id!!");
    char *s_old = NULL, *s_new = NULL, *p = NULL;
    assert_int_equal(seal_seal(old, "c", "code-1", &s_old), 0);
    assert_int_equal(seal_seal(both, "c", "code-2", &s_new), 0);
    assert_true(strncmp(s_new, "v1.k2.", 6) == 0);
    assert_int_equal(seal_open(both, "c", s_old, &p), 0); /* the old key still opens */
    assert_string_equal(p, "code-1");
    free(p);
    assert_int_equal(seal_open(both, "c", s_new, &p), 0);
    assert_string_equal(p, "code-2");
    free(p);
    assert_int_equal(seal_open(old, "c", s_new, &p), SEAL_EKEY);   /* k2 unknown there */
    assert_int_equal(seal_open(other, "c", s_old, &p), SEAL_EBAD); /* same id, other secret */
    free(s_old);
    free(s_new);
    seal_keys_free(old);
    seal_keys_free(both);
    seal_keys_free(other);
}

static void test_key_ring_parsing(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "nokid",
                         ":secret",
                         "k1:",
                         "k 1:secret",
                         "k1:s,",
                         "k1:s,,k2:t",
                         "a-kid-that-is-longer-than-thirty-two-bytes:secret",
                         "a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct seal_keys *k = (struct seal_keys *)1;
        char err[128] = "";
        assert_int_equal(seal_keys_parse(bad[i], &k, err, sizeof err), -1);
        assert_null(k);
        assert_true(err[0] != '\0');
    }
    struct seal_keys *k = keys("a:1,b:2");
    char *s = NULL;
    char big[SEAL_PLAIN_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(seal_seal(k, "c", big, &s), -1);
    assert_null(s);
    seal_keys_free(k);
    seal_keys_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aead_known_answers),
        cmocka_unit_test(test_round_trip_and_context),
        cmocka_unit_test(test_rotation_by_key_id),
        cmocka_unit_test(test_key_ring_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
