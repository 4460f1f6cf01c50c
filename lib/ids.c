/* ids.c - UUIDv7 event ids and W3C trace context (see ids.h). */
#include "ids.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "crypto.h"

static void getrandom_full(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            abort(); /* no entropy source: nothing safe to do */
        }
        p += got;
        n -= (size_t)got;
    }
}

/* Per-thread reserve of kernel random bytes: one getrandom syscall per IDS_RANDOM_POOL_BYTES
 * instead of one (or three) per event id, which was ~3% of the publisher's CPU. Every byte
 * still comes from getrandom and is handed out once, then wiped. (A forked child would inherit
 * its parent's reserve; our processes do not fork.) */
#define IDS_RANDOM_POOL_BYTES 512

struct random_pool {
    unsigned char bytes[IDS_RANDOM_POOL_BYTES];
    size_t left; /* unused bytes at the end of bytes[] */
};

static _Thread_local struct random_pool pool;

void random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    if (n > IDS_RANDOM_POOL_BYTES / 4) {
        getrandom_full(p, n);
        return;
    }
    while (n > 0) {
        if (pool.left == 0) {
            getrandom_full(pool.bytes, sizeof pool.bytes);
            pool.left = sizeof pool.bytes;
        }
        size_t take = n < pool.left ? n : pool.left;
        unsigned char *src = pool.bytes + sizeof pool.bytes - pool.left;
        memcpy(p, src, take);
        memset(src, 0, take);
        pool.left -= take;
        p += take;
        n -= take;
    }
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void id_uuid7(char out[ID_UUID_LEN + 1])
{
    /* RFC 9562 section 5.7: 48-bit Unix milliseconds, version 7, variant 0b10, random rest. */
    unsigned char b[16];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    random_bytes(b + 6, 10);
    for (int i = 0; i < 6; i++) {
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    }
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    /* 8-4-4-4-12 hex digits; formatted by hand, it is on the per-event path. */
    static const unsigned char groups[5] = {4, 2, 2, 2, 6};
    const unsigned char *in = b;
    char *o = out;
    for (int g = 0; g < 5; g++) {
        if (g > 0) {
            *o++ = '-';
        }
        to_hex(in, groups[g], o);
        in += groups[g];
        o += 2 * groups[g];
    }
    *o = '\0';
}

bool id_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) {
        return false;
    }
    for (; *s; s++) {
        if (*s <= 32 || *s >= 127 || *s == '"' || *s == '\'' || *s == '\\') {
            return false;
        }
    }
    return true;
}

static bool is_lower_hex(const char *s, size_t n, bool *all_zero)
{
    *all_zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
        if (c != '0') {
            *all_zero = false;
        }
    }
    return true;
}

int trace_parse(const char *tp, struct trace *out)
{
    /* https://www.w3.org/TR/trace-context/#traceparent-header-field-values: version 00 is
     * exactly 55 characters; a later version may append fields after a '-', and "ff" is
     * forbidden. */
    bool zero;
    if (!tp || strlen(tp) < TRACEPARENT_LEN || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') {
        return -1;
    }
    if (!is_lower_hex(tp, 2, &zero) || strncmp(tp, "ff", 2) == 0) {
        return -1;
    }
    if (strncmp(tp, "00", 2) == 0 ? tp[55] != '\0' : (tp[55] != '\0' && tp[55] != '-')) {
        return -1;
    }
    if (!is_lower_hex(tp + 3, 32, &zero) || zero) {
        return -1;
    }
    if (!is_lower_hex(tp + 36, 16, &zero) || zero) {
        return -1;
    }
    if (!is_lower_hex(tp + 53, 2, &zero)) {
        return -1;
    }
    memcpy(out->trace_id, tp + 3, 32);
    out->trace_id[32] = '\0';
    memcpy(out->span_id, tp + 36, 16);
    out->span_id[16] = '\0';
    memcpy(out->flags, tp + 53, 2);
    out->flags[2] = '\0';
    return 0;
}

static void random_hex(char *out, size_t n_bytes)
{
    unsigned char b[16];
    random_bytes(b, n_bytes);
    b[0] |= 1; /* never all zero */
    to_hex(b, n_bytes, out);
}

void trace_new(struct trace *out)
{
    random_hex(out->trace_id, 16);
    random_hex(out->span_id, 8);
    memcpy(out->flags, "01", 3);
}

void trace_child(const struct trace *parent, struct trace *out)
{
    *out = *parent;
    random_hex(out->span_id, 8);
}

void trace_format(const struct trace *t, char out[TRACEPARENT_LEN + 1])
{
    /* "00-<32 hex>-<16 hex>-<2 hex>", copied by hand: it is on every published event's path. */
    memcpy(out, "00-", 3);
    memcpy(out + 3, t->trace_id, 32);
    out[35] = '-';
    memcpy(out + 36, t->span_id, 16);
    out[52] = '-';
    memcpy(out + 53, t->flags, 2);
    out[55] = '\0';
}

const char *trace_id_of(const char *traceparent, char out[33])
{
    struct trace t;
    if (traceparent == NULL || trace_parse(traceparent, &t) != 0) {
        return NULL;
    }
    memcpy(out, t.trace_id, sizeof t.trace_id);
    return out;
}

int id_derived(const char *scope, const char *input_id, size_t index, char out[ID_UUID_LEN + 1])
{
    /* NUL-separated fields: "a" + "bc" and "ab" + "c" are different names. */
    char name[1024 + 32];
    size_t ls = strlen(scope);
    size_t li = strlen(input_id);
    if (ls + li > 1024) {
        return -1;
    }
    memcpy(name, scope, ls);
    name[ls] = '\0';
    memcpy(name + ls + 1, input_id, li);
    name[ls + 1 + li] = '\0';
    int n = snprintf(name + ls + li + 2, sizeof name - ls - li - 2, "%zu", index);
    if (n < 0 || (size_t)n >= sizeof name - ls - li - 2) {
        return -1;
    }
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex(name, ls + li + 2 + (size_t)n, hex);
    /* The first 128 bits of the hash, version 8 in bits 48-51, variant 10 in bits 64-65. */
    static const char variant[] = "89ab";
    char v = hex[16];
    int nib = (v >= 'a') ? v - 'a' + 10 : v - '0';
    hex[12] = '8';
    hex[16] = variant[nib & 3];
    snprintf(out, ID_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    return 0;
}
