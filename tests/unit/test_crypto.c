/* test_crypto.c - SHA-256, HMAC-SHA256 (RFC 4231 vectors), X-Bus-Signature, constant-time
 * comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

static void test_sign_and_verify_body(void **state)
{
    (void)state;
    const char *body = "what do ya want for nothing?";
    char sig[72];
    crypto_sign_body("Jefe", body, strlen(body), sig);
    assert_string_equal(sig,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_true(crypto_verify_signature("Jefe", body, strlen(body), sig));
    /* wrong secret, changed body, changed or cut signature, missing header */
    assert_false(crypto_verify_signature("jefe", body, strlen(body), sig));
    assert_false(crypto_verify_signature("Jefe", body, strlen(body) - 1, sig));
    char bad[72];
    memcpy(bad, sig, sizeof bad);
    bad[20] = bad[20] == 'a' ? 'b' : 'a';
    assert_false(crypto_verify_signature("Jefe", body, strlen(body), bad));
    assert_false(crypto_verify_signature("Jefe", body, strlen(body), sig + 7)); /* no prefix */
    memcpy(bad, sig, sizeof bad);
    bad[70] = '\0';
    assert_false(crypto_verify_signature("Jefe", body, strlen(body), bad));
    assert_false(crypto_verify_signature("Jefe", body, strlen(body), NULL));
    assert_false(crypto_verify_signature("Jefe", body, strlen(body), ""));
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
        cmocka_unit_test(test_sign_and_verify_body),
        cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
