/* test_crypto_scram.c - SCRAM primitives and the server side of an exchange against the RFC 7677
 * (SCRAM-SHA-256) test vector, plus base64 and refusals of bad client messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto_scram.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SERVER_FIRST                                                                           \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL                                                                           \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                                 \
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static void rfc_credential(struct scram_credential *cred)
{
    unsigned char salt[32];
    const char *b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
    long n = crypto_base64_decode(b64, strlen(b64), salt, sizeof salt);
    assert_int_equal(n, 16);
    assert_int_equal(
        scram_credential_derive(SCRAM_SHA256, "pencil", 6, salt, (size_t)n, 4096, cred), 0);
}

static void test_rfc7677_exchange(void **state)
{
    (void)state;
    struct scram_credential cred;
    rfc_credential(&cred);
    struct scram_server s;
    char user[64], out[512];
    assert_int_equal(scram_server_client_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), user,
                                               sizeof user),
                     0);
    assert_string_equal(user, "user");
    assert_int_equal(scram_server_first(&s, &cred, RFC_SERVER_NONCE, out, sizeof out), 0);
    assert_string_equal(out, RFC_SERVER_FIRST);
    assert_int_equal(
        scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, sizeof out), 0);
    assert_string_equal(out, RFC_SERVER_FINAL);
    scram_server_release(&s);
}

static void test_wrong_password_is_refused(void **state)
{
    (void)state;
    struct scram_credential cred;
    unsigned char salt[16] = {0};
    assert_int_equal(scram_credential_derive(SCRAM_SHA256, "pencils", 7, salt, 16, 4096, &cred), 0);
    rfc_credential(&cred); /* the right salt, then a different password below */
    struct scram_credential other;
    assert_int_equal(
        scram_credential_derive(SCRAM_SHA256, "pencil!", 7, cred.salt, cred.salt_len, 4096, &other),
        0);
    struct scram_server s;
    char user[64], out[512];
    assert_int_equal(scram_server_client_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), user,
                                               sizeof user),
                     0);
    assert_int_equal(scram_server_first(&s, &other, RFC_SERVER_NONCE, out, sizeof out), 0);
    assert_int_equal(
        scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, sizeof out), -1);
    assert_string_equal(s.err, "invalid credentials");
    scram_server_release(&s);
}

static void test_tampered_nonce_and_binding_are_refused(void **state)
{
    (void)state;
    struct scram_credential cred;
    rfc_credential(&cred);
    const char *bad[] = {
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct scram_server s;
        char user[64], out[512];
        assert_int_equal(scram_server_client_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
                                                   user, sizeof user),
                         0);
        assert_int_equal(scram_server_first(&s, &cred, RFC_SERVER_NONCE, out, sizeof out), 0);
        assert_int_equal(scram_server_final(&s, bad[i], strlen(bad[i]), out, sizeof out), -1);
        scram_server_release(&s);
    }
}

static void test_client_first_parsing(void **state)
{
    (void)state;
    struct scram_server s;
    char user[64];
    const char *m = "n,,n=a=2Cb=3Dc,r=abc";
    assert_int_equal(scram_server_client_first(&s, m, strlen(m), user, sizeof user), 0);
    assert_string_equal(user, "a,b=c");
    scram_server_release(&s);
    m = "n,a=alice,n=alice,r=abc";
    assert_int_equal(scram_server_client_first(&s, m, strlen(m), user, sizeof user), 0);
    scram_server_release(&s);
    const char *bad[] = {"p=tls-unique,,n=user,r=abc",
                         "n,a=bob,n=alice,r=abc",
                         "n,,n=user",
                         "n,,n=a=2,r=abc",
                         "n,,n=,r=abc",
                         "",
                         "n,,r=abc,n=user"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(scram_server_client_first(&s, bad[i], strlen(bad[i]), user, sizeof user),
                         -1);
        scram_server_release(&s);
    }
}

static void test_sha512_and_iterations(void **state)
{
    (void)state;
    struct scram_credential a, b;
    unsigned char salt[16] = {1, 2, 3};
    assert_int_equal(scram_credential_derive(SCRAM_SHA512, "pw", 2, salt, 16, 4096, &a), 0);
    assert_int_equal(scram_credential_derive(SCRAM_SHA512, "pw", 2, salt, 16, 4097, &b), 0);
    assert_int_equal(scram_hash_len(SCRAM_SHA512), 64);
    assert_memory_not_equal(a.stored_key, b.stored_key, 64);
    assert_int_equal(scram_credential_derive(SCRAM_SHA512, "pw", 2, salt, 16, 0, &b), -1);
    enum scram_hash h;
    assert_int_equal(scram_mechanism_parse("SCRAM-SHA-512", &h), 0);
    assert_int_equal(h, SCRAM_SHA512);
    assert_int_equal(scram_mechanism_parse("PLAIN", &h), -1);
}

static void test_base64(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(crypto_base64_encode("n,,", 3, out, sizeof out), 4);
    assert_string_equal(out, "biws");
    assert_int_equal(crypto_base64_encode("ab", 2, out, 4), -1);
    unsigned char raw[8];
    assert_int_equal(crypto_base64_decode("YWI=", 4, raw, sizeof raw), 2);
    assert_memory_equal(raw, "ab", 2);
    assert_int_equal(crypto_base64_decode("YW I=", 5, raw, sizeof raw), -1);
    assert_int_equal(crypto_base64_decode("Y=Jj", 4, raw, sizeof raw), -1);
    assert_int_equal(crypto_base64_decode("YWJjZA==", 8, raw, 3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_exchange),
        cmocka_unit_test(test_wrong_password_is_refused),
        cmocka_unit_test(test_tampered_nonce_and_binding_are_refused),
        cmocka_unit_test(test_client_first_parsing),
        cmocka_unit_test(test_sha512_and_iterations),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
