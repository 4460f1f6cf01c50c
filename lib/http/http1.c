/* http1.c - incremental HTTP/1.1 response parser (see http1.h).
 *
 * States follow the message grammar of RFC 9112: status line (section 4), header fields
 * (section 5), then the body by the rules of section 6.3: no body for HEAD, 1xx, 204 and 304;
 * chunked when Transfer-Encoding ends in chunked (section 7.1, chunk extensions ignored,
 * trailers skipped); Content-Length; otherwise up to the close. Interim 1xx responses are
 * skipped. Lines end in CRLF; a bare LF is accepted (section 2.2). */
#include "http/http1.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"

#define HTTP1_RESERVE_MAX ((size_t)1 << 20)

enum {
    ST_STATUS,
    ST_HEADER,
    ST_BODY_LENGTH,
    ST_BODY_EOF,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_END, /* the CRLF after a chunk's data */
    ST_TRAILER,
    ST_DONE,
};

void http1_response_init(struct http1_response *p, bool is_head, struct buf *body)
{
    memset(p, 0, sizeof *p);
    p->state = ST_STATUS;
    p->is_head = is_head;
    p->body = body;
}

void http1_response_release(struct http1_response *p)
{
    free(p->retry_after);
    p->retry_after = NULL;
}

static bool has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t') {
            i++;
        }
        if (i - start == tl && strncasecmp(v + start, token, tl) == 0) {
            return true;
        }
    }
    return false;
}

/* "HTTP/1.x SSS reason" */
static int parse_status(struct http1_response *p, const char *s, size_t len)
{
    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ') {
        return HTTP1_EBAD;
    }
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return HTTP1_EBAD;
        }
        status = status * 10 + (s[i] - '0');
    }
    if (len > 12 && s[12] != ' ') {
        return HTTP1_EBAD;
    }
    p->status = status;
    p->minor_version = s[7] - '0';
    p->is_keep_alive = p->minor_version == 1;
    p->is_chunked = false;
    p->has_length = false;
    p->remaining = 0;
    free(p->retry_after); /* a final response after 1xx starts afresh */
    p->retry_after = NULL;
    return HTTP1_AGAIN;
}

static int parse_header(struct http1_response *p, const char *s, size_t len)
{
    const char *colon = memchr(s, ':', len);
    if (!colon || colon == s) {
        return HTTP1_EBAD;
    }
    size_t nlen = (size_t)(colon - s);
    const char *v = colon + 1;
    const char *end = s + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    size_t vlen = (size_t)(end - v);
#define IS(name) (nlen == sizeof name - 1 && strncasecmp(s, name, nlen) == 0)
    if (IS("content-length")) {
        if (vlen == 0 || vlen > 18) {
            return HTTP1_EBAD;
        }
        uint64_t n = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9') {
                return HTTP1_EBAD;
            }
            n = n * 10 + (uint64_t)(v[i] - '0');
        }
        if (p->has_length && n != p->remaining) {
            return HTTP1_EBAD; /* conflicting lengths: section 6.3 rule 5 */
        }
        p->has_length = true;
        p->remaining = n;
    } else if (IS("transfer-encoding")) {
        /* chunked must be the last coding; anything else is read up to the close. */
        size_t i = vlen;
        while (i > 0 && v[i - 1] != ',' && v[i - 1] != ' ' && v[i - 1] != '\t') {
            i--;
        }
        p->is_chunked = vlen - i == 7 && strncasecmp(v + i, "chunked", 7) == 0;
        if (!p->is_chunked) {
            p->is_keep_alive = false;
        }
    } else if (IS("connection")) {
        if (has_token(v, vlen, "close")) {
            p->is_keep_alive = false;
        } else if (p->minor_version == 0 && has_token(v, vlen, "keep-alive")) {
            p->is_keep_alive = true;
        }
    } else if (IS("retry-after")) {
        free(p->retry_after);
        p->retry_after = xstrndup(v, vlen);
    }
#undef IS
    return HTTP1_AGAIN;
}

/* The header block ended: decide how the body is delimited. */
static int headers_done(struct http1_response *p)
{
    if (p->status >= 100 && p->status < 200) {
        if (p->status == 101) {
            return HTTP1_EBAD; /* we never ask for an upgrade */
        }
        p->state = ST_STATUS;
        return HTTP1_AGAIN;
    }
    if (p->is_head || p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
        return HTTP1_DONE;
    }
    if (p->is_chunked) {
        p->has_length = false; /* Transfer-Encoding overrides Content-Length */
        p->state = ST_CHUNK_SIZE;
        return HTTP1_AGAIN;
    }
    if (p->has_length) {
        if (p->remaining == 0) {
            p->state = ST_DONE;
            return HTTP1_DONE;
        }
        if (p->body->max_len && p->remaining > p->body->max_len) {
            return HTTP1_ETOOBIG;
        }
        /* Room for the whole body at once, but never more than 1 MiB on a peer's word. */
        size_t want = p->remaining < HTTP1_RESERVE_MAX ? (size_t)p->remaining : HTTP1_RESERVE_MAX;
        if (buf_reserve(p->body, want) != 0) {
            return HTTP1_ETOOBIG;
        }
        p->state = ST_BODY_LENGTH;
        return HTTP1_AGAIN;
    }
    p->is_keep_alive = false;
    p->state = ST_BODY_EOF;
    return HTTP1_AGAIN;
}

static int parse_chunk_size(struct http1_response *p, const char *s, size_t len)
{
    uint64_t n = 0;
    size_t i = 0;
    for (; i < len; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            break;
        }
        if (n >> 56) {
            return HTTP1_EBAD;
        }
        n = n * 16 + (uint64_t)d;
    }
    if (i == 0 || (i < len && s[i] != ';' && s[i] != ' ' && s[i] != '\t')) {
        return HTTP1_EBAD;
    }
    p->remaining = n;
    p->state = n == 0 ? ST_TRAILER : ST_CHUNK_DATA;
    return HTTP1_AGAIN;
}

static int append_body(struct http1_response *p, const char *data, size_t n)
{
    return buf_append(p->body, data, n) == 0 ? HTTP1_AGAIN : HTTP1_ETOOBIG;
}

int http1_response_parse(struct http1_response *p, const char *data, size_t len, size_t *consumed)
{
    size_t pos = 0;
    int rc = HTTP1_AGAIN;
    if (len > 0) {
        p->has_any = true;
    }
    while (rc == HTTP1_AGAIN && pos < len) {
        const char *s = data + pos;
        size_t avail = len - pos;
        if (p->state == ST_BODY_LENGTH || p->state == ST_CHUNK_DATA) {
            size_t n = avail < p->remaining ? avail : (size_t)p->remaining;
            rc = append_body(p, s, n);
            pos += n;
            p->remaining -= n;
            if (rc == HTTP1_AGAIN && p->remaining == 0) {
                if (p->state == ST_CHUNK_DATA) {
                    p->state = ST_CHUNK_END;
                } else {
                    p->state = ST_DONE;
                    rc = HTTP1_DONE;
                }
            }
            continue;
        }
        if (p->state == ST_BODY_EOF) {
            rc = append_body(p, s, avail);
            pos += avail;
            continue;
        }
        if (p->state == ST_DONE) {
            rc = HTTP1_DONE;
            break;
        }
        /* A line-based state: take one complete line. */
        const char *nl = memchr(s, '\n', avail);
        if (!nl) {
            break;
        }
        size_t line_len = (size_t)(nl - s);
        pos += line_len + 1;
        if (line_len > 0 && s[line_len - 1] == '\r') {
            line_len--;
        }
        switch (p->state) {
        case ST_STATUS:
            rc = parse_status(p, s, line_len);
            if (rc == HTTP1_AGAIN) {
                p->state = ST_HEADER;
            }
            break;
        case ST_HEADER:
            rc = line_len == 0 ? headers_done(p) : parse_header(p, s, line_len);
            break;
        case ST_CHUNK_SIZE:
            rc = parse_chunk_size(p, s, line_len);
            break;
        case ST_CHUNK_END:
            rc = line_len == 0 ? HTTP1_AGAIN : HTTP1_EBAD;
            p->state = ST_CHUNK_SIZE;
            break;
        case ST_TRAILER:
            if (line_len == 0) {
                p->state = ST_DONE;
                rc = HTTP1_DONE;
            }
            break;
        default:
            rc = HTTP1_EBAD;
            break;
        }
    }
    *consumed = pos;
    return rc;
}

int http1_response_eof(struct http1_response *p)
{
    if (p->state == ST_BODY_EOF || p->state == ST_DONE) {
        p->state = ST_DONE;
        return HTTP1_DONE;
    }
    return HTTP1_EBAD;
}
