/* test_offset_tracker.c - contiguous-prefix commits under out-of-order completion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kafka/offset_tracker.h"

static void test_in_order(void **state)
{
    (void)state;
    struct offset_tracker t;
    offset_tracker_init(&t, 4);
    assert_int_equal(offset_tracker_add(&t, 10), 0);
    assert_int_equal(offset_tracker_add(&t, 11), 0);
    assert_int_equal(offset_tracker_take_committable(&t), -1);
    assert_int_equal(offset_tracker_finish(&t, 10), 0);
    assert_int_equal(offset_tracker_take_committable(&t), 11);
    assert_int_equal(offset_tracker_finish(&t, 11), 0);
    assert_int_equal(offset_tracker_take_committable(&t), 12);
    assert_int_equal(offset_tracker_count(&t), 0);
    offset_tracker_release(&t);
}

static void test_out_of_order_waits_for_gap(void **state)
{
    (void)state;
    struct offset_tracker t;
    offset_tracker_init(&t, 8);
    for (int64_t o = 0; o < 5; o++) {
        assert_int_equal(offset_tracker_add(&t, o), 0);
    }
    assert_int_equal(offset_tracker_finish(&t, 3), 0);
    assert_int_equal(offset_tracker_finish(&t, 1), 0);
    assert_int_equal(offset_tracker_take_committable(&t), -1); /* 0 unfinished */
    assert_int_equal(offset_tracker_finish(&t, 0), 0);
    assert_int_equal(offset_tracker_take_committable(&t), 2); /* 0,1 done; 2 not */
    assert_int_equal(offset_tracker_finish(&t, 2), 0);
    assert_int_equal(offset_tracker_take_committable(&t), 4); /* 2,3 done; 4 not */
    assert_int_equal(offset_tracker_count(&t), 1);
    offset_tracker_release(&t);
}

static void test_gaps_in_offsets_and_wraparound(void **state)
{
    (void)state;
    struct offset_tracker t;
    offset_tracker_init(&t, 3);
    int64_t next = 100;
    for (int round = 0; round < 10; round++) {
        /* offsets with holes (compacted topics, transaction markers) */
        assert_int_equal(offset_tracker_add(&t, next), 0);
        assert_int_equal(offset_tracker_add(&t, next + 2), 0);
        assert_int_equal(offset_tracker_add(&t, next + 5), 0);
        assert_true(offset_tracker_is_full(&t));
        assert_int_equal(offset_tracker_add(&t, next + 6), -1);
        assert_int_equal(offset_tracker_finish(&t, next + 1), -1); /* never tracked */
        assert_int_equal(offset_tracker_finish(&t, next + 5), 0);
        assert_int_equal(offset_tracker_finish(&t, next + 2), 0);
        assert_int_equal(offset_tracker_take_committable(&t), -1);
        assert_int_equal(offset_tracker_finish(&t, next), 0);
        assert_int_equal(offset_tracker_take_committable(&t), next + 6);
        next += 6;
    }
    offset_tracker_release(&t);
}

static void test_rejects_out_of_order_add(void **state)
{
    (void)state;
    struct offset_tracker t;
    offset_tracker_init(&t, 4);
    assert_int_equal(offset_tracker_add(&t, 5), 0);
    assert_int_equal(offset_tracker_add(&t, 5), -1);
    assert_int_equal(offset_tracker_add(&t, 4), -1);
    offset_tracker_release(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_waits_for_gap),
        cmocka_unit_test(test_gaps_in_offsets_and_wraparound),
        cmocka_unit_test(test_rejects_out_of_order_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
