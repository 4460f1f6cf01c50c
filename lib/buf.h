/* buf.h - a growable byte buffer with a hard cap.
 *
 * Every buffer whose size is driven by input is created with a cap (curl's curlx_dyn idea):
 * appending past it fails with BUF_ETOOBIG instead of growing without end. Data is always kept
 * NUL-terminated so it can be used as a C string. Not thread-safe. */
#ifndef BUF_H
#define BUF_H

#include <stdarg.h>
#include <stddef.h>

#define BUF_ETOOBIG (-2)

struct buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;     /* allocated bytes */
    size_t max_len; /* hard limit on len; 0 = SIZE_MAX */
};

void buf_init(struct buf *b, size_t max_len);
void buf_release(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps memory */
/* Makes room for extra more bytes at once (e.g. a body of known Content-Length), so that
 * appending them does not grow the buffer step by step. BUF_ETOOBIG past max_len. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_appends(struct buf *b, const char *s);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vappendf(struct buf *b, const char *fmt, va_list ap);
/* Room for the decimal text of any long long, its sign and the NUL included. */
#define BUF_INT_LEN 24
/* Writes the decimal text of v into out, NUL-terminated; returns its length. Without printf, for
 * the numbers written on every request or delivery (vfprintf showed in their profiles). */
size_t buf_format_int(char out[BUF_INT_LEN], long long v);
/* Appends the decimal text of v. */
int buf_append_int(struct buf *b, long long v);
/* Appends s as a JSON string literal, quotes included. */
int buf_append_json_string(struct buf *b, const char *s);
/* Transfers ownership of the data to the caller (never NULL: "" when empty); b is reset. */
char *buf_take(struct buf *b, size_t *len_out);

#endif
