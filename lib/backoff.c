/* backoff.c - retry delays (see backoff.h). */
#include "backoff.h"

#include <ctype.h>
#include <stdlib.h>

long backoff_retry_after_ms(const char *retry_after)
{
    if (retry_after == NULL) {
        return -1;
    }
    while (isspace((unsigned char)*retry_after)) {
        retry_after++;
    }
    if (!isdigit((unsigned char)*retry_after)) {
        return -1;
    }
    char *end;
    long s = strtol(retry_after, &end, 10);
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end != '\0' || s < 0) {
        return -1;
    }
    if (s > 86400) {
        s = 86400;
    }
    return s * 1000;
}

long backoff_delay_ms(long initial_ms, long max_ms, int attempt, const char *retry_after,
                      uint32_t rnd)
{
    if (initial_ms < 1) {
        initial_ms = 1;
    }
    if (max_ms < initial_ms) {
        max_ms = initial_ms;
    }
    long ceiling = initial_ms;
    for (int i = 1; i < attempt && ceiling < max_ms; i++) {
        ceiling *= 2;
    }
    if (ceiling > max_ms) {
        ceiling = max_ms;
    }
    long half = ceiling / 2;
    long delay = half + (long)(rnd % (uint32_t)(ceiling - half + 1));
    long ra = backoff_retry_after_ms(retry_after);
    if (ra > delay) {
        delay = ra > max_ms ? max_ms : ra;
    }
    return delay;
}
