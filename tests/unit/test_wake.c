/* test_wake.c - lib/wake: one write per burst of signals, and no wake-up ever lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "wake.h"

static int readable(const struct wake *w, int timeout_ms)
{
    struct pollfd p = {.fd = wake_fd(w), .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void test_a_burst_costs_one_write(void **state)
{
    (void)state;
    struct wake w;
    assert_int_equal(wake_init(&w), 0);
    assert_true(wake_fd(&w) >= 0);
    assert_false(readable(&w, 0));
    wake_signal(&w);
    wake_signal(&w);
    wake_signal(&w);
    assert_true(readable(&w, 0));
    /* The eventfd's counter holds the number of writes: one for the three signals. */
    uint64_t v = 0;
    assert_int_equal(read(wake_fd(&w), &v, sizeof v), (ssize_t)sizeof v);
    assert_int_equal(v, 1);
    /* The flag is still set (nobody drained): a further signal writes nothing. */
    wake_signal(&w);
    assert_false(readable(&w, 0));
    wake_drain(&w);
    assert_false(readable(&w, 0));
    /* Drained: the next signal wakes again. */
    wake_signal(&w);
    assert_true(readable(&w, 0));
    wake_drain(&w);
    assert_false(readable(&w, 0));
    wake_close(&w);
    assert_int_equal(wake_fd(&w), -1);
    wake_close(&w); /* twice is harmless */
}

/* A producer posts work (a counter) and signals, as fast as it can, while the consumer sleeps
 * in poll and takes the work after each drain. A lost wake-up shows as posted work left
 * untaken with no wake-up coming for seconds: once the flag is stuck nothing wakes it again. */
#define STRESS_POSTS 1000000

struct stress {
    struct wake w;
    atomic_long posted;
    atomic_int is_done;
};

static void *producer(void *arg)
{
    struct stress *s = arg;
    for (long i = 1; i <= STRESS_POSTS; i++) {
        atomic_store(&s->posted, i);
        wake_signal(&s->w);
        for (volatile int spin = 0; spin < (int)(i % 64); spin++) {
        }
    }
    atomic_store(&s->is_done, 1);
    return NULL;
}

static void test_no_wake_up_is_lost(void **state)
{
    (void)state;
    struct stress s = {.posted = 0, .is_done = 0};
    assert_int_equal(wake_init(&s.w), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, &s), 0);
    long seen = 0;
    long lost = 0;
    int quiet_s = 0; /* seconds in a row without a wake-up while posted work is not taken */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (seen < STRESS_POSTS) {
        if (readable(&s.w, 1000)) {
            wake_drain(&s.w);
            seen = atomic_load(&s.posted);
            quiet_s = 0;
            continue;
        }
        /* Nothing to take means a slow (descheduled) producer, not a lost wake-up. */
        if (atomic_load(&s.posted) > seen && ++quiet_s >= 3) {
            lost = atomic_load(&s.posted) - seen;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 120) {
            break;
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(lost, 0);
    assert_int_equal(seen, STRESS_POSTS);
    wake_close(&s.w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_burst_costs_one_write),
        cmocka_unit_test(test_no_wake_up_is_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
