/* backoff.h - retry delays: exponential back-off with full jitter, honouring Retry-After
 * (pure; no I/O). */
#ifndef BACKOFF_H
#define BACKOFF_H

#include <stdint.h>

/* Delay before attempt number `attempt` + 1 after `attempt` failed attempts (attempt >= 1):
 * the ceiling is min(max_ms, initial_ms * 2^(attempt-1)); the delay is drawn uniformly in
 * [ceiling/2, ceiling] from rnd (any 32-bit random value). A Retry-After value (seconds, or
 * NULL/unparsable) raises the delay to at least that many seconds, capped by max_ms. */
long backoff_delay_ms(long initial_ms, long max_ms, int attempt, const char *retry_after,
                      uint32_t rnd);
/* Parses Retry-After as delay-seconds; returns -1 when absent or not a number (HTTP dates are
 * not honoured: callers fall back to the back-off). */
long backoff_retry_after_ms(const char *retry_after);

#endif
