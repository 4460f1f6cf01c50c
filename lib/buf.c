/* buf.c - growable byte buffer with a hard cap (see buf.h). */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void buf_init(struct buf *b, size_t max_len)
{
    memset(b, 0, sizeof *b);
    b->max_len = max_len;
}

void buf_release(struct buf *b)
{
    free(b->data);
    size_t max = b->max_len;
    memset(b, 0, sizeof *b);
    b->max_len = max;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

static int reserve(struct buf *b, size_t extra)
{
    if (b->max_len && (extra > b->max_len || b->len > b->max_len - extra)) {
        return BUF_ETOOBIG;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
    return reserve(b, extra);
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    int rc = reserve(b, n);
    if (rc) {
        return rc;
    }
    if (n) {
        memcpy(b->data + b->len, data, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

size_t buf_format_int(char out[BUF_INT_LEN], long long v)
{
    char digits[BUF_INT_LEN];
    size_t i = sizeof digits;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0) {
        digits[--i] = '-';
    }
    size_t n = sizeof digits - i;
    memcpy(out, digits + i, n);
    out[n] = '\0';
    return n;
}

int buf_append_int(struct buf *b, long long v)
{
    char num[BUF_INT_LEN];
    return buf_append(b, num, buf_format_int(num, v));
}

int buf_appends(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return -1;
    }
    if ((size_t)n < sizeof small) {
        return buf_append(b, small, (size_t)n);
    }
    int rc = reserve(b, (size_t)n);
    if (rc) {
        return rc;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_seq_len(const unsigned char *p)
{
    if (p[0] < 0x80) {
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (p[0] >= 0xe0 && p[0] <= 0xef) {
        unsigned char lo = p[0] == 0xe0 ? 0xa0 : 0x80;
        unsigned char hi = p[0] == 0xed ? 0x9f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80) {
            return 0;
        }
        return 3;
    }
    if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        unsigned char lo = p[0] == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = p[0] == 0xf4 ? 0x8f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) {
            return 0;
        }
        return 4;
    }
    return 0;
}

int buf_append_json_string(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    int rc = buf_append(b, "\"", 1);
    const char *run = s; /* start of the bytes copied as they are */
    const unsigned char *p = (const unsigned char *)s;
    while (!rc && *p) {
        const char *esc = NULL;
        char u[7];
        size_t seq = 1;
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (*p < 0x20) {
                u[0] = '\\';
                u[1] = 'u';
                u[2] = '0';
                u[3] = '0';
                u[4] = hex[*p >> 4];
                u[5] = hex[*p & 15];
                u[6] = '\0';
                esc = u;
            } else if (*p >= 0x80) {
                /* Invalid UTF-8 would make the whole line unparseable: replace the byte. The
                 * checks stop at the NUL terminator, so they never read past the string. */
                seq = utf8_seq_len(p);
                if (seq == 0) {
                    esc = "\\ufffd";
                    seq = 1;
                }
            }
        }
        if (esc) {
            rc = buf_append(b, run, (size_t)((const char *)p - run));
            if (!rc) {
                rc = buf_appends(b, esc);
            }
            run = (const char *)p + 1;
        }
        p += seq;
    }
    if (!rc) {
        rc = buf_appends(b, run);
    }
    if (!rc) {
        rc = buf_append(b, "\"", 1);
    }
    return rc;
}

char *buf_take(struct buf *b, size_t *len_out)
{
    char *d = b->data ? b->data : xstrdup("");
    if (len_out) {
        *len_out = b->len;
    }
    size_t max = b->max_len;
    memset(b, 0, sizeof *b);
    b->max_len = max;
    return d;
}
