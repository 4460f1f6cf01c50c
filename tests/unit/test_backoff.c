/* test_backoff.c - exponential back-off with jitter and Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

static void test_grows_and_caps(void **state)
{
    (void)state;
    /* rnd 0 gives the lower bound (ceiling/2), rnd max-ish the ceiling */
    assert_int_equal(backoff_delay_ms(200, 30000, 1, NULL, 0), 100);
    assert_int_equal(backoff_delay_ms(200, 30000, 1, NULL, 100), 200);
    assert_int_equal(backoff_delay_ms(200, 30000, 2, NULL, 200), 400);
    assert_int_equal(backoff_delay_ms(200, 30000, 4, NULL, 800), 1600);
    assert_int_equal(backoff_delay_ms(200, 30000, 30, NULL, 15000), 30000);
    assert_int_equal(backoff_delay_ms(200, 30000, 1000, NULL, 0), 15000);
}

static void test_jitter_stays_in_range(void **state)
{
    (void)state;
    for (uint32_t r = 0; r < 5000; r += 7) {
        long d = backoff_delay_ms(100, 10000, 3, NULL, r * 2654435761u);
        assert_true(d >= 200 && d <= 400);
    }
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(backoff_retry_after_ms("3"), 3000);
    assert_int_equal(backoff_retry_after_ms(" 2 "), 2000);
    assert_int_equal(backoff_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), -1);
    assert_int_equal(backoff_retry_after_ms(NULL), -1);
    assert_int_equal(backoff_retry_after_ms("-1"), -1);
    assert_int_equal(backoff_delay_ms(200, 30000, 1, "2", 0), 2000);
    assert_int_equal(backoff_delay_ms(200, 1000, 1, "60", 0), 1000); /* capped by max_ms */
    assert_int_equal(backoff_delay_ms(200, 30000, 4, "0", 0), 800);  /* back-off wins */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_caps),
        cmocka_unit_test(test_jitter_stays_in_range),
        cmocka_unit_test(test_retry_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
