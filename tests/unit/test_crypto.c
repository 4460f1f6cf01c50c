/* test_crypto.c - SHA-256, HMAC-SHA256 (RFC 4231 vectors), Standard Webhooks signatures,
 * constant-time comparison. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"

static void test_sha256_known_answers(void **state)
{
    (void)state;
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    crypto_sha256_hex("abc", 3, hex); /* FIPS 180-2 appendix B.1 */
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_hmac_sha256_rfc4231(void **state)
{
    (void)state;
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    /* RFC 4231 section 4.2, test case 1 */
    char key1[20];
    memset(key1, 0x0b, sizeof key1);
    crypto_hmac_sha256_hex(key1, sizeof key1, "Hi There", 8, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* test case 2: a key shorter than the output */
    const char *data2 = "what do ya want for nothing?";
    crypto_hmac_sha256_hex("Jefe", 4, data2, strlen(data2), hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* test case 6: a key longer than the block size is hashed first */
    char key6[131];
    memset(key6, 0xaa, sizeof key6);
    const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    crypto_hmac_sha256_hex(key6, sizeof key6, data6, strlen(data6), hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* The Standard Webhooks libraries' test vector (a whsec_ key), then our own form (the key's
 * bytes), several keys, and every way a signature can be wrong. */
static void test_webhook_sign_and_verify(void **state)
{
    (void)state;
    const char *key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *body = "{\"test\": 2432232314}";
    char sig[256];
    assert_int_equal(crypto_webhook_sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                         strlen(body), sig, sizeof sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_true(crypto_webhook_verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                      strlen(body), sig));
    /* a plain key is its bytes: HMAC-SHA256("Jefe", "id.7.body"), base64 */
    assert_int_equal(crypto_webhook_sign("Jefe", "id", 7, "body", 4, sig, sizeof sig), 0);
    assert_string_equal(sig, "v1,WNt7vFu0W7pkrwahO3NN7FLnyYR7PXHGflR980k2+Io=");
    /* wrong key, id, timestamp, body; cut, missing or other-scheme signature */
    assert_false(crypto_webhook_verify("jefe", "id", 7, "body", 4, sig));
    assert_false(crypto_webhook_verify("Jefe", "iD", 7, "body", 4, sig));
    assert_false(crypto_webhook_verify("Jefe", "id", 8, "body", 4, sig));
    assert_false(crypto_webhook_verify("Jefe", "id", 7, "bodY", 4, sig));
    assert_false(crypto_webhook_verify("Jefe", "id", 7, "body", 4, sig + 3));
    assert_false(crypto_webhook_verify("Jefe", "id", 7, "body", 4, NULL));
    assert_false(crypto_webhook_verify("Jefe", "id", 7, "body", 4, ""));
    char other[300];
    snprintf(other, sizeof other, "v1a,%s", sig + 3);
    assert_false(crypto_webhook_verify("Jefe", "id", 7, "body", 4, other));
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    assert_false(crypto_webhook_verify("Jefe", "id", 7, "body", 4, sig));
    /* rotation: two keys sign twice; a receiver with either key (or both) accepts */
    char two[256];
    assert_int_equal(crypto_webhook_sign("new-key  old-key", "id", 7, "body", 4, two, sizeof two),
                     0);
    assert_non_null(strchr(two, ' '));
    assert_true(crypto_webhook_verify("old-key", "id", 7, "body", 4, two));
    assert_true(crypto_webhook_verify("new-key", "id", 7, "body", 4, two));
    assert_true(crypto_webhook_verify("x new-key", "id", 7, "body", 4, two));
    assert_false(crypto_webhook_verify("third-key", "id", 7, "body", 4, two));
    /* no key, a bad whsec_ key, an output too small: refused */
    assert_int_equal(crypto_webhook_sign("  ", "id", 7, "body", 4, sig, sizeof sig), -1);
    assert_int_equal(crypto_webhook_sign("whsec_!!!!", "id", 7, "body", 4, sig, sizeof sig), -1);
    assert_int_equal(crypto_webhook_sign("Jefe", "id", 7, "body", 4, sig, 20), -1);
}

/* A signer signs what crypto_webhook_sign signs, message after message (its keys are set up
 * once and every message starts afresh from them), for one key, several and whsec_ keys. */
static void test_webhook_signer(void **state)
{
    (void)state;
    const char *lists[] = {"Jefe", "new-key  old-key", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                           "k1 k2 k3 k4 k5 k6 k7 k8"};
    const char *bodies[] = {"body", "", "{\"test\": 2432232314}", "body"};
    const long long stamps[] = {7, 0, 1614265330, -12};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        struct crypto_webhook_signer *s = crypto_webhook_signer_new(lists[l]);
        assert_non_null(s);
        for (int round = 0; round < 3; round++) {
            for (size_t m = 0; m < sizeof bodies / sizeof bodies[0]; m++) {
                char want[512], got[512];
                const char *id = m % 2 ? "msg_p5jXN8AQM9LWM0D4loKWxJek" : "id";
                assert_int_equal(crypto_webhook_sign(lists[l], id, stamps[m], bodies[m],
                                                     strlen(bodies[m]), want, sizeof want),
                                 0);
                assert_int_equal(crypto_webhook_signer_sign(s, id, stamps[m], bodies[m],
                                                            strlen(bodies[m]), got, sizeof got),
                                 0);
                assert_string_equal(got, want);
                assert_true(crypto_webhook_verify(lists[l], id, stamps[m], bodies[m],
                                                  strlen(bodies[m]), got));
            }
        }
        crypto_webhook_signer_free(s);
    }
    /* the known answers, through a signer that signed something else first */
    struct crypto_webhook_signer *s = crypto_webhook_signer_new("Jefe");
    char sig[256];
    assert_int_equal(crypto_webhook_signer_sign(s, "other", 99, "x", 1, sig, sizeof sig), 0);
    assert_int_equal(crypto_webhook_signer_sign(s, "id", 7, "body", 4, sig, sizeof sig), 0);
    assert_string_equal(sig, "v1,WNt7vFu0W7pkrwahO3NN7FLnyYR7PXHGflR980k2+Io=");
    assert_int_equal(crypto_webhook_signer_sign(s, "id", 7, "body", 4, sig, 20), -1);
    crypto_webhook_signer_free(s);
    /* no key, too many, a bad whsec_ key: no signer */
    assert_null(crypto_webhook_signer_new("  "));
    assert_null(crypto_webhook_signer_new(NULL));
    assert_null(crypto_webhook_signer_new("k1 k2 k3 k4 k5 k6 k7 k8 k9"));
    assert_null(crypto_webhook_signer_new("Jefe whsec_!!!!"));
    crypto_webhook_signer_free(NULL);
}

/* A verifier keeps each thread's last key list set up: a list that changes is set up again, a bad
 * whsec_ key in a list is skipped, and threads verifying under different lists at once do not
 * see each other's (each thread's is freed when it ends: ASan's leak check). */
struct verify_job {
    const char *keys, *other;
    int n_ok;
};

static void *verify_many(void *arg)
{
    struct verify_job *j = arg;
    char sig[256], other_sig[256];
    crypto_webhook_sign(j->keys, "id", 7, "body", 4, sig, sizeof sig);
    crypto_webhook_sign(j->other, "id", 7, "body", 4, other_sig, sizeof other_sig);
    for (int i = 0; i < 500; i++) {
        j->n_ok += crypto_webhook_verify(j->keys, "id", 7, "body", 4, sig);
        j->n_ok -= crypto_webhook_verify(j->keys, "id", 7, "body", 4, other_sig);
    }
    return NULL;
}

static void test_webhook_verifier_per_thread(void **state)
{
    (void)state;
    char sig[256];
    assert_int_equal(crypto_webhook_sign("b-key", "id", 7, "body", 4, sig, sizeof sig), 0);
    assert_false(crypto_webhook_verify("a-key", "id", 7, "body", 4, sig));
    assert_true(crypto_webhook_verify("b-key", "id", 7, "body", 4, sig));
    assert_false(crypto_webhook_verify("a-key", "id", 7, "body", 4, sig));
    assert_true(crypto_webhook_verify("whsec_!!!! b-key", "id", 7, "body", 4, sig));
    assert_false(crypto_webhook_verify("whsec_!!!!", "id", 7, "body", 4, sig));
    assert_false(crypto_webhook_verify("", "id", 7, "body", 4, sig));
    /* eight good keys are read, bad ones not counted; a ninth is not */
    assert_true(
        crypto_webhook_verify("k1 whsec_!!!! k2 k3 k4 k5 k6 k7 b-key", "id", 7, "body", 4, sig));
    assert_false(crypto_webhook_verify("k1 k2 k3 k4 k5 k6 k7 k8 b-key", "id", 7, "body", 4, sig));
    struct verify_job jobs[2] = {{"a-key", "b-key", 0}, {"b-key old-key", "a-key", 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, verify_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].n_ok, 500);
    }
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(crypto_equal("abc", 3, "abc", 3));
    assert_false(crypto_equal("abc", 3, "abd", 3));
    assert_false(crypto_equal("abc", 3, "abcd", 4));
    assert_true(crypto_equal("", 0, "", 0));
    assert_true(crypto_equal("a\0b", 3, "a\0b", 3)); /* bytes, not C strings */
    assert_false(crypto_equal("a\0b", 3, "a\0c", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_answers),
        cmocka_unit_test(test_hmac_sha256_rfc4231),
        cmocka_unit_test(test_webhook_sign_and_verify),
        cmocka_unit_test(test_webhook_signer),
        cmocka_unit_test(test_webhook_verifier_per_thread),
        cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
