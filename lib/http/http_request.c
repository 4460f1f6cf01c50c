/* http_request.c - the request head parser, chunked decoder and target checks (see
 * http_request.h). RFC 9112 sections 2-7; the refusals follow what nginx answers for the same
 * inputs (400 malformed, 414 request line, 431 header fields, 501 transfer coding, 505 version). */
#include "http/http_request.h"

#include <string.h>
#include <strings.h>

/* Trailer and chunk-size lines longer than this are refused (the chunk extension is skipped). */
#define HTTP_MAX_CHUNK_LINE_BYTES 4096

static void refuse(struct http_refusal *r, unsigned status, const char *code, const char *message)
{
    r->status = status;
    r->code = code;
    r->message = message;
}

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 section 5.6.2 */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

long http_request_head_end(const char *data, size_t len, size_t *scanned,
                           struct http_refusal *refusal)
{
    size_t p0 = 0; /* the first byte of the request line (leading empty lines skipped) */
    while (p0 < len && (data[p0] == '\r' || data[p0] == '\n')) {
        p0++;
    }
    size_t i = *scanned > p0 ? *scanned : p0;
    const char *first_lf = p0 < len ? memchr(data + p0, '\n', len - p0) : NULL;
    if (!first_lf) {
        if (len - p0 > HTTP_MAX_REQUEST_LINE_BYTES) {
            refuse(refusal, 414, "uri_too_long", "The request line is too long.");
            return -1;
        }
        if (len > HTTP_MAX_HEAD_BYTES) {
            refuse(refusal, 431, "headers_too_large", "The request head is too large.");
            return -1;
        }
        *scanned = len;
        return 0;
    }
    if ((size_t)(first_lf - data) - p0 > HTTP_MAX_REQUEST_LINE_BYTES) {
        refuse(refusal, 414, "uri_too_long", "The request line is too long.");
        return -1;
    }
    if (i <= (size_t)(first_lf - data)) {
        i = (size_t)(first_lf - data) + 1;
    }
    /* An empty line ends the head: "\n\n" or "\n\r\n" past the request line. */
    while (i < len) {
        const char *lf = memchr(data + i, '\n', len - i);
        if (!lf) {
            break;
        }
        size_t at = (size_t)(lf - data);
        if (at == i || (at == i + 1 && data[i] == '\r')) {
            if (at + 1 > HTTP_MAX_HEAD_BYTES) {
                break;
            }
            *scanned = at + 1;
            return (long)(at + 1);
        }
        i = at + 1;
    }
    if (len > HTTP_MAX_HEAD_BYTES) {
        refuse(refusal, 431, "headers_too_large", "The request head is too large.");
        return -1;
    }
    *scanned = i; /* the start of the last, incomplete line */
    return 0;
}

/* Cuts the line starting at *p (ending at '\n', an optional '\r' before it dropped) and moves
 * *p past it. Returns the line, or NULL when it holds a lone CR. */
static char *cut_line(char **p, char *end, size_t *line_len)
{
    char *line = *p;
    char *lf = memchr(line, '\n', (size_t)(end - line));
    if (!lf) {
        lf = end; /* not reached: the head ends with an empty line */
    }
    *p = lf < end ? lf + 1 : end;
    char *stop = lf;
    if (stop > line && stop[-1] == '\r') {
        stop--;
    }
    *stop = '\0';
    *line_len = (size_t)(stop - line);
    return memchr(line, '\r', *line_len) ? NULL : line;
}

static char *trim_ows(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
    return s;
}

/* Does the comma-separated list contain token (case-insensitive)? */
static bool list_has(const char *list, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        const char *e = p;
        while (*e && *e != ',') {
            e++;
        }
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) {
            t--;
        }
        if ((size_t)(t - p) == tlen && strncasecmp(p, token, tlen) == 0) {
            return true;
        }
        p = e;
    }
    return false;
}

static int parse_request_line(struct http_request *r, char *line, struct http_refusal *refusal)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1 || sp1 == line) {
        refuse(refusal, 400, "bad_request", "The request line is malformed.");
        return -1;
    }
    *sp1 = '\0';
    for (const char *m = line; *m; m++) {
        if (!is_tchar((unsigned char)*m)) {
            refuse(refusal, 400, "bad_request", "The request method is malformed.");
            return -1;
        }
    }
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target) {
        refuse(refusal, 400, "bad_request", "The request line is malformed.");
        return -1;
    }
    *sp2 = '\0';
    for (const unsigned char *t = (const unsigned char *)target; *t; t++) {
        if (*t <= 0x20 || *t == 0x7f) {
            refuse(refusal, 400, "bad_request", "The request target has a control character.");
            return -1;
        }
    }
    const char *v = sp2 + 1;
    if (strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
        v[7] > '9' || v[8] != '\0') {
        refuse(refusal, 400, "bad_request", "The request line does not end with an HTTP version.");
        return -1;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        refuse(refusal, 505, "version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are served.");
        return -1;
    }
    r->minor_version = v[7] - '0';
    /* absolute-form (RFC 9112 section 3.2.2): serve its path. */
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        char *path = strchr(strstr(target, "//") + 2, '/');
        target = path ? path : (char *)"/";
    }
    if (target[0] != '/' && strcmp(target, "*") != 0) {
        refuse(refusal, 400, "bad_request", "The request target is not a path.");
        return -1;
    }
    r->method = line;
    r->target = target;
    return 0;
}

/* The framing headers (RFC 9112 section 6.3). Content-Length beside Transfer-Encoding and two
 * different lengths are both smuggling hazards: refused. */
static int parse_framing(struct http_request *r, struct http_refusal *refusal)
{
    const char *length = NULL;
    unsigned n_encoding = 0, n_host = 0;
    const char *encoding = NULL;
    r->is_keep_alive = r->minor_version == 1;
    for (size_t i = 0; i < r->n_fields; i++) {
        const struct http_field *f = &r->fields[i];
        /* Names of another length are not looked at (a strcasecmp per name and field was ~3% of
         * the publisher's instructions per event, callgrind, 2026-12-07). */
        size_t nlen = strlen(f->name);
        if (nlen != 14 && nlen != 17 && nlen != 4 && nlen != 10 && nlen != 6) {
            continue;
        }
        if (strcasecmp(f->name, "Content-Length") == 0) {
            const char *v = f->value;
            size_t n = strspn(v, "0123456789");
            if (n == 0 || v[n] != '\0' || n > 18) {
                refuse(refusal, 400, "bad_request",
                       n > 18 && v[n] == '\0'
                           ? "The request's Content-Length is too large."
                           : "The request carries a malformed or conflicting Content-Length.");
                return -1;
            }
            if (length && strcmp(length, v) != 0) {
                refuse(refusal, 400, "bad_request",
                       "The request carries conflicting Content-Length values.");
                return -1;
            }
            length = v;
        } else if (strcasecmp(f->name, "Transfer-Encoding") == 0) {
            encoding = f->value;
            n_encoding++;
        } else if (strcasecmp(f->name, "Host") == 0) {
            n_host++;
        } else if (strcasecmp(f->name, "Connection") == 0) {
            if (list_has(f->value, "close")) {
                r->is_keep_alive = false;
            } else if (r->minor_version == 0 && list_has(f->value, "keep-alive")) {
                r->is_keep_alive = true;
            }
        } else if (strcasecmp(f->name, "Expect") == 0) {
            r->expects_continue =
                r->minor_version == 1 && strcasecmp(f->value, "100-continue") == 0;
        }
    }
    if (n_host > 1 || (n_host == 0 && r->minor_version == 1)) {
        refuse(refusal, 400, "bad_request",
               n_host ? "The request carries more than one Host." : "The request has no Host.");
        return -1;
    }
    if (n_encoding > 0 && (length || r->minor_version == 0)) {
        refuse(refusal, 400, "bad_request",
               length ? "The request carries both Content-Length and Transfer-Encoding."
                      : "An HTTP/1.0 request cannot carry Transfer-Encoding.");
        return -1;
    }
    if (n_encoding > 1 || (n_encoding == 1 && strcasecmp(encoding, "chunked") != 0)) {
        refuse(refusal, 501, "not_implemented", "Only the chunked transfer coding is supported.");
        return -1;
    }
    r->is_chunked = n_encoding == 1;
    if (length) {
        r->has_length = true;
        r->content_length = 0;
        for (const char *p = length; *p; p++) {
            r->content_length = r->content_length * 10 + (uint64_t)(*p - '0');
        }
    }
    return 0;
}

int http_request_parse(struct http_request *r, char *head, size_t len, struct http_field *fields,
                       struct http_refusal *refusal)
{
    memset(r, 0, sizeof *r);
    r->fields = fields;
    char *p = head, *end = head + len;
    while (p < end && (*p == '\r' || *p == '\n')) {
        p++;
    }
    size_t line_len = 0;
    char *line = cut_line(&p, end, &line_len);
    if (!line) {
        refuse(refusal, 400, "bad_request", "The request line is malformed.");
        return -1;
    }
    if (strlen(line) != line_len) {
        refuse(refusal, 400, "bad_request", "The request line holds a NUL byte.");
        return -1;
    }
    if (parse_request_line(r, line, refusal) != 0) {
        return -1;
    }
    for (;;) {
        line = cut_line(&p, end, &line_len);
        if (!line) {
            refuse(refusal, 400, "bad_request", "A header line holds a lone CR.");
            return -1;
        }
        if (line_len == 0) {
            break;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            /* obs-fold (RFC 9112 section 5.2): a server may refuse it. */
            refuse(refusal, 400, "bad_request", "Folded header lines are not accepted.");
            return -1;
        }
        if (strlen(line) != line_len) {
            refuse(refusal, 400, "bad_request", "A header line holds a NUL byte.");
            return -1;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            refuse(refusal, 400, "bad_request", "A header line is malformed.");
            return -1;
        }
        *colon = '\0';
        for (const char *n = line; *n; n++) {
            if (!is_tchar((unsigned char)*n)) {
                refuse(refusal, 400, "bad_request", "A header name is malformed.");
                return -1;
            }
        }
        char *value = trim_ows(colon + 1);
        for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
            if ((*v < 0x20 && *v != '\t') || *v == 0x7f) {
                refuse(refusal, 400, "bad_request", "A header value has a control character.");
                return -1;
            }
        }
        if (r->n_fields == HTTP_MAX_HEADER_FIELDS) {
            refuse(refusal, 431, "headers_too_large", "The request has too many header fields.");
            return -1;
        }
        r->fields[r->n_fields].name = line;
        r->fields[r->n_fields].value = value;
        r->n_fields++;
    }
    return parse_framing(r, refusal);
}

const char *http_request_field(const struct http_request *r, const char *name)
{
    /* The first byte first (| 0x20: equal for the two cases of a letter, so it never rejects a
     * match): most fields differ there, and strcasecmp is a call. */
    char c0 = (char)(name[0] | 0x20);
    for (size_t i = 0; i < r->n_fields; i++) {
        const char *n = r->fields[i].name;
        if ((char)(n[0] | 0x20) == c0 && strcasecmp(n, name) == 0) {
            return r->fields[i].value;
        }
    }
    return NULL;
}

/* ---- targets ---- */

/* UTF-8 decoding state for utf8_step (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF). */
struct utf8_state {
    unsigned need;        /* continuation bytes still expected */
    unsigned char lo, hi; /* the range of the next continuation byte */
};

static bool utf8_step(struct utf8_state *u, unsigned char c)
{
    if (u->need > 0) {
        if (c < u->lo || c > u->hi) {
            return false;
        }
        u->need--;
        u->lo = 0x80;
        u->hi = 0xBF;
        return true;
    }
    u->lo = 0x80;
    u->hi = 0xBF;
    if (c < 0x80) {
        return true;
    } else if (c >= 0xC2 && c <= 0xDF) {
        u->need = 1;
    } else if (c == 0xE0) {
        u->need = 2;
        u->lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        u->need = 2;
    } else if (c == 0xED) {
        u->need = 2;
        u->hi = 0x9F;
    } else if (c == 0xF0) {
        u->need = 3;
        u->lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        u->need = 3;
    } else if (c == 0xF4) {
        u->need = 3;
        u->hi = 0x8F;
    } else {
        return false;
    }
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* An encoded NUL would cut the decoded string short (the path "/index.html%00.js" would serve
 * index.html); bytes that are not UTF-8 (an account id "%FF") must be refused here rather than
 * fail later in JSON or SQL. */
bool http_target_part_is_valid(const char *p, const char *end)
{
    struct utf8_state u = {0};
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            int hi = p + 2 < end ? hex_value(p[1]) : -1;
            int lo = hi >= 0 ? hex_value(p[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return false;
            }
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
        }
        if (!utf8_step(&u, c)) {
            return false;
        }
    }
    return u.need == 0;
}

size_t http_percent_decode(char *dst, const char *src, size_t len, bool is_form)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        int hi = c == '%' && i + 2 < len ? hex_value(src[i + 1]) : -1;
        int lo = hi >= 0 ? hex_value(src[i + 2]) : -1;
        if (c == '%' && hi >= 0 && lo >= 0) {
            dst[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && is_form) {
            dst[n++] = ' ';
        } else {
            dst[n++] = c;
        }
    }
    dst[n] = '\0';
    return n;
}

/* ---- chunked bodies ---- */

enum {
    C_SIZE,
    C_EXT,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILER_START,
    C_TRAILER,
    C_END_LF,
    C_DONE,
};

int http_chunked_decode(struct http_chunked *c, const char *data, size_t len, size_t *consumed,
                        int (*sink)(void *arg, const char *p, size_t n), void *arg)
{
    size_t i = 0;
    int rc = HTTP_CHUNKED_AGAIN;
    while (i < len && rc == HTTP_CHUNKED_AGAIN) {
        char ch = data[i];
        bool is_end_of_size = false;
        switch (c->state) {
        case C_SIZE: {
            int v = hex_value(ch);
            if (v >= 0) {
                if (c->n_digits >= 15) {
                    rc = HTTP_CHUNKED_EBAD; /* a chunk of 2^60 bytes is no chunk */
                    break;
                }
                c->remaining = c->remaining * 16 + (uint64_t)v;
                c->n_digits++;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = C_EXT;
            } else if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (ch == '\n') {
                is_end_of_size = true;
            } else {
                rc = HTTP_CHUNKED_EBAD;
            }
            i++;
            break;
        }
        case C_EXT:
            if (++c->line_len > HTTP_MAX_CHUNK_LINE_BYTES) {
                rc = HTTP_CHUNKED_EBAD;
            } else if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (ch == '\n') {
                is_end_of_size = true;
            }
            i++;
            break;
        case C_SIZE_LF:
            if (ch != '\n') {
                rc = HTTP_CHUNKED_EBAD;
            }
            is_end_of_size = true;
            i++;
            break;
        case C_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->remaining) {
                n = (size_t)c->remaining;
            }
            if (sink(arg, data + i, n) != 0) {
                *consumed = i + n;
                c->remaining -= n;
                if (c->remaining == 0) {
                    c->state = C_DATA_CR;
                }
                return HTTP_CHUNKED_STOP;
            }
            i += n;
            c->remaining -= n;
            if (c->remaining == 0) {
                c->state = C_DATA_CR;
            }
            break;
        }
        case C_DATA_CR:
            if (ch == '\r') {
                c->state = C_DATA_LF;
            } else if (ch == '\n') {
                c->state = C_SIZE;
                c->n_digits = 0;
                c->line_len = 0;
            } else {
                rc = HTTP_CHUNKED_EBAD;
            }
            i++;
            break;
        case C_DATA_LF:
            if (ch != '\n') {
                rc = HTTP_CHUNKED_EBAD;
            }
            c->state = C_SIZE;
            c->n_digits = 0;
            c->line_len = 0;
            i++;
            break;
        case C_TRAILER_START:
            if (ch == '\r') {
                c->state = C_END_LF;
            } else if (ch == '\n') {
                c->state = C_DONE;
                rc = HTTP_CHUNKED_DONE;
            } else {
                c->state = C_TRAILER;
                c->line_len = 1;
            }
            i++;
            break;
        case C_TRAILER:
            if (++c->line_len > HTTP_MAX_CHUNK_LINE_BYTES) {
                rc = HTTP_CHUNKED_EBAD;
            } else if (ch == '\n') {
                c->state = C_TRAILER_START;
            }
            i++;
            break;
        case C_END_LF:
            if (ch != '\n') {
                rc = HTTP_CHUNKED_EBAD;
            } else {
                c->state = C_DONE;
                rc = HTTP_CHUNKED_DONE;
            }
            i++;
            break;
        default:
            rc = HTTP_CHUNKED_DONE;
            break;
        }
        if (is_end_of_size && rc == HTTP_CHUNKED_AGAIN) {
            if (c->n_digits == 0) {
                rc = HTTP_CHUNKED_EBAD;
            } else {
                c->state = c->remaining == 0 ? C_TRAILER_START : C_DATA;
                c->line_len = 0;
            }
        }
    }
    *consumed = i;
    return rc;
}
