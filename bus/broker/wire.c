/* wire.c - Kafka protocol primitives (see wire.h). */
#include "wire.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void kr_init(struct kr *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = 0;
}

static const uint8_t *kr_take(struct kr *r, size_t n)
{
    if (r->err || r->len - r->pos < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

int8_t kr_i8(struct kr *r)
{
    const uint8_t *q = kr_take(r, 1);
    return q ? (int8_t)q[0] : 0;
}

int16_t kr_i16(struct kr *r)
{
    const uint8_t *q = kr_take(r, 2);
    return q ? (int16_t)(uint16_t)((q[0] << 8) | q[1]) : 0;
}

int32_t kr_i32(struct kr *r)
{
    const uint8_t *q = kr_take(r, 4);
    return q ? (int32_t)be32(q) : 0;
}

int64_t kr_i64(struct kr *r)
{
    const uint8_t *q = kr_take(r, 8);
    return q ? be64(q) : 0;
}

uint64_t kr_uvarint(struct kr *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        const uint8_t *q = kr_take(r, 1);
        if (!q) {
            return 0;
        }
        v |= (uint64_t)(q[0] & 0x7f) << shift;
        if (!(q[0] & 0x80)) {
            return v;
        }
    }
    r->err = 1;
    return 0;
}

struct kstr kr_str(struct kr *r)
{
    struct kstr s = {NULL, -1};
    int16_t n = kr_i16(r);
    if (r->err || n < 0) {
        return s;
    }
    const uint8_t *q = kr_take(r, (size_t)n);
    if (q) {
        s.ptr = (const char *)q;
        s.len = n;
    }
    return s;
}

struct kstr kr_compact_str(struct kr *r)
{
    struct kstr s = {NULL, -1};
    uint64_t n = kr_uvarint(r);
    if (r->err || n == 0) {
        return s;
    }
    if (n - 1 > 0x7fff) {
        r->err = 1;
        return s;
    }
    const uint8_t *q = kr_take(r, (size_t)(n - 1));
    if (q) {
        s.ptr = (const char *)q;
        s.len = (int32_t)(n - 1);
    }
    return s;
}

const uint8_t *kr_bytes(struct kr *r, int32_t *len)
{
    int32_t n = kr_i32(r);
    *len = -1;
    if (r->err || n < 0) {
        return NULL;
    }
    const uint8_t *q = kr_take(r, (size_t)n);
    if (q) {
        *len = n;
    }
    return q;
}

int32_t kr_array(struct kr *r, size_t min_elem_bytes)
{
    int32_t n = kr_i32(r);
    if (r->err) {
        return 0;
    }
    if (n < -1 || (n > 0 && (size_t)n * (min_elem_bytes ? min_elem_bytes : 1) > r->len - r->pos)) {
        r->err = 1;
        return 0;
    }
    return n;
}

int32_t kr_compact_array(struct kr *r, size_t min_elem_bytes)
{
    uint64_t n1 = kr_uvarint(r);
    if (r->err) {
        return 0;
    }
    if (n1 == 0) {
        return -1;
    }
    if (n1 - 1 > (r->len - r->pos) / (min_elem_bytes ? min_elem_bytes : 1)) {
        r->err = 1;
        return 0;
    }
    return (int32_t)(n1 - 1);
}

void kr_skip_tagged(struct kr *r)
{
    uint64_t n = kr_uvarint(r);
    for (uint64_t i = 0; i < n && !r->err; i++) {
        (void)kr_uvarint(r);
        uint64_t size = kr_uvarint(r);
        if (size > r->len) {
            r->err = 1;
        } else {
            (void)kr_take(r, (size_t)size);
        }
    }
}

int kstr_copy(struct kstr s, char *out, size_t n)
{
    if (!s.ptr || s.len < 0 || (size_t)s.len >= n || memchr(s.ptr, 0, (size_t)s.len)) {
        return -1;
    }
    memcpy(out, s.ptr, (size_t)s.len);
    out[s.len] = 0;
    return 0;
}

void kw_init(struct kw *w)
{
    w->p = NULL;
    w->len = 0;
    w->cap = 0;
}

void kw_release(struct kw *w)
{
    free(w->p);
    kw_init(w);
}

void kw_reserve(struct kw *w, size_t n)
{
    if (w->cap - w->len >= n) {
        return;
    }
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->len < n) {
        cap *= 2;
    }
    w->p = xrealloc(w->p, cap);
    w->cap = cap;
}

void kw_raw(struct kw *w, const void *p, size_t n)
{
    kw_reserve(w, n);
    if (n) {
        memcpy(w->p + w->len, p, n);
    }
    w->len += n;
}

void kw_i8(struct kw *w, int8_t v)
{
    kw_raw(w, &v, 1);
}

void kw_i16(struct kw *w, int16_t v)
{
    uint8_t b[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
    kw_raw(w, b, 2);
}

void kw_i32(struct kw *w, int32_t v)
{
    uint8_t b[4];
    put_be32(b, (uint32_t)v);
    kw_raw(w, b, 4);
}

void kw_i64(struct kw *w, int64_t v)
{
    uint8_t b[8];
    put_be64(b, (uint64_t)v);
    kw_raw(w, b, 8);
}

void kw_uvarint(struct kw *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    kw_raw(w, b, n);
}

void kw_strn(struct kw *w, const char *s, size_t n)
{
    kw_i16(w, (int16_t)n);
    kw_raw(w, s, n);
}

void kw_str(struct kw *w, const char *s)
{
    if (!s) {
        kw_i16(w, -1);
        return;
    }
    kw_strn(w, s, strlen(s));
}

void kw_compact_str(struct kw *w, const char *s)
{
    if (!s) {
        kw_uvarint(w, 0);
        return;
    }
    size_t n = strlen(s);
    kw_uvarint(w, n + 1);
    kw_raw(w, s, n);
}

void kw_bytes(struct kw *w, const void *p, int32_t n)
{
    kw_i32(w, n);
    if (n > 0) {
        kw_raw(w, p, (size_t)n);
    }
}

size_t kw_mark_i32(struct kw *w)
{
    size_t at = w->len;
    kw_i32(w, 0);
    return at;
}

void kw_patch_i32(struct kw *w, size_t at, int32_t v)
{
    put_be32(w->p + at, (uint32_t)v);
}

uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int64_t be64(const uint8_t *p)
{
    return (int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4));
}

void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* CRC-32C: table-driven fallback (reflected polynomial 0x82F63B78) and the SSE4.2 crc32
 * instruction when available (checked once at run time). */
static uint32_t crc_table[8][256];
static int crc_mode; /* 1 = table, 2 = sse4.2; set once by crc_init */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
        }
    }
}

static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--) {
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
/* The crc32 instruction has a latency of 3 cycles but a throughput of 1 per cycle, so long
 * buffers are cut into three interleaved streams (CRC_LONG, then CRC_SHORT bytes each) whose
 * CRCs are combined: crc(A || B) = shift_|B|(crc(A)) ^ crc(B) on the raw register, where
 * shift_n (appending n zero bytes) is linear and tabulated per byte of the register. */
#define CRC_LONG 8192
#define CRC_SHORT 256
static uint32_t crc_shift_long[4][256], crc_shift_short[4][256];

__attribute__((target("sse4.2"))) static uint32_t crc32c_zeros(uint32_t crc, size_t n)
{
    uint64_t c = crc;
    for (size_t i = 0; i < n / 8; i++) {
        c = __builtin_ia32_crc32di(c, 0);
    }
    return (uint32_t)c;
}

static void crc_init_shift(uint32_t t[4][256], size_t n)
{
    uint32_t basis[32];
    for (int i = 0; i < 32; i++) {
        basis[i] = crc32c_zeros(1u << i, n);
    }
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int i = 0; i < 8; i++) {
                if (b & (1u << i)) {
                    v ^= basis[8 * k + i];
                }
            }
            t[k][b] = v;
        }
    }
}

static uint32_t crc_shift(uint32_t t[4][256], uint32_t crc)
{
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw_streams(uint32_t crc, const uint8_t **pp, size_t *lenp, size_t block, uint32_t t[4][256])
{
    const uint8_t *p = *pp;
    size_t len = *lenp;
    uint64_t c0 = crc;
    while (len >= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < block; i += 8) {
            uint64_t a, b, d;
            memcpy(&a, p + i, 8);
            memcpy(&b, p + block + i, 8);
            memcpy(&d, p + 2 * block + i, 8);
            c0 = __builtin_ia32_crc32di(c0, a);
            c1 = __builtin_ia32_crc32di(c1, b);
            c2 = __builtin_ia32_crc32di(c2, d);
        }
        c0 = crc_shift(t, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = crc_shift(t, (uint32_t)c0) ^ (uint32_t)c2;
        p += 3 * block;
        len -= 3 * block;
    }
    *pp = p;
    *lenp = len;
    return (uint32_t)c0;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    crc = crc32c_hw_streams(crc, &p, &len, CRC_LONG, crc_shift_long);
    crc = crc32c_hw_streams(crc, &p, &len, CRC_SHORT, crc_shift_short);
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return c32;
}
#endif

static void crc_init(void)
{
    crc_init_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    int hw = __builtin_cpu_supports("sse4.2");
    if (hw) {
        crc_init_shift(crc_shift_long, CRC_LONG);
        crc_init_shift(crc_shift_short, CRC_SHORT);
    }
    crc_mode = hw ? 2 : 1;
#else
    crc_mode = 1;
#endif
}

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (crc_mode == 2) {
        return ~crc32c_hw(crc, data, len);
    }
#endif
    return ~crc32c_table(crc, data, len);
}
