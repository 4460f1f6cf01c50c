/* http_request.h - the HTTP/1.1 request side of the server (RFC 9112): the request head parser,
 * the chunked body decoder and the checks of a request target.
 *
 * The connection loop (http_loop.c) finds the end of a request head in its bytes
 * (http_request_head_end), copies the head into memory the request owns and parses it there in
 * place (http_request_parse): the request line and header fields become NUL-terminated strings
 * inside that copy. Every refusal is a status (400, 414, 431, 501, 505) with a short error code
 * and a sentence, which the server sends as JSON. Not thread-safe; no allocation except the
 * header array given by the caller. */
#ifndef HTTP_REQUEST_H
#define HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A request line longer than this is refused 414 (nginx's default large buffer is 8 KiB). */
#define HTTP_MAX_REQUEST_LINE_BYTES (8 * 1024)
/* A request head (line and header fields) longer than this is refused 431. */
#define HTTP_MAX_HEAD_BYTES (16 * 1024)
/* More header fields than this is refused 431. */
#define HTTP_MAX_HEADER_FIELDS 100

struct http_field {
    const char *name; /* as received (case kept); compare with strcasecmp */
    const char *value;
};

/* A parsed request head. The strings point into the buffer given to http_request_parse. */
struct http_request {
    const char *method;
    const char *target; /* as received, still percent-encoded */
    int minor_version;  /* HTTP/1.0 or HTTP/1.1 */
    struct http_field *fields;
    size_t n_fields;
    /* Framing, from Content-Length and Transfer-Encoding: */
    bool has_length;
    uint64_t content_length;
    bool is_chunked;
    bool is_keep_alive;    /* Connection and the version allow another request after this one */
    bool expects_continue; /* Expect: 100-continue */
};

/* A refusal: the status to answer, its error code and sentence (static strings). */
struct http_refusal {
    unsigned status;
    const char *code;
    const char *message;
};

/* Looks for the end of a request head in data[0..len), resuming at *scanned (0 at first; updated
 * so that bytes are looked at once). Returns the head's length (its blank line included), 0 when
 * it is not complete yet, or -1 with *refusal filled when what came already breaks a limit
 * (414, 431) or cannot be a request (400). Leading empty lines are part of the head. */
long http_request_head_end(const char *data, size_t len, size_t *scanned,
                           struct http_refusal *refusal);

/* Parses a complete head of len bytes (as found by http_request_head_end) in place: the bytes
 * are modified (NULs inserted). fields has room for HTTP_MAX_HEADER_FIELDS entries. Returns 0,
 * or -1 with *refusal filled (400 malformed or conflicting framing, 431 too many fields, 501
 * unknown transfer coding, 505 version). */
int http_request_parse(struct http_request *r, char *head, size_t len, struct http_field *fields,
                       struct http_refusal *refusal);

/* The value of a header field (the first of that name), or NULL. */
const char *http_request_field(const struct http_request *r, const char *name);

/* Checks one part (path or query) of a request target as received, [p, end): every '%' starts
 * a two-digit hex escape, none decodes to NUL, and the decoded bytes are UTF-8. */
bool http_target_part_is_valid(const char *p, const char *end);

/* Percent-decodes src[0..len) into dst (room for len + 1), NUL-terminated; with is_form, '+'
 * decodes to a space (the query string's form encoding). Returns the decoded length. Invalid
 * escapes are kept as they are (the caller checked the target first). */
size_t http_percent_decode(char *dst, const char *src, size_t len, bool is_form);

/* The chunked body decoder (RFC 9112 section 7.1): chunk sizes, extensions (skipped), data and
 * trailer fields (skipped). */
struct http_chunked {
    int state;          /* private */
    uint64_t remaining; /* of the current chunk's data */
    size_t line_len;    /* bytes of the current size or trailer line, for its limit */
    unsigned n_digits;  /* of the current chunk size */
};

enum http_chunked_rc {
    HTTP_CHUNKED_AGAIN = 0, /* needs more bytes */
    HTTP_CHUNKED_DONE = 1,  /* the last chunk and the trailer are in */
    HTTP_CHUNKED_STOP = 2,  /* the sink refused bytes */
    HTTP_CHUNKED_EBAD = -1, /* malformed */
};

/* Decodes data[0..len): the body bytes found are given to sink (in place: they point into
 * data), *consumed is set to the bytes taken (all of them unless DONE). sink returns non-zero to
 * stop: then the rc is STOP and *consumed covers what was given. */
int http_chunked_decode(struct http_chunked *c, const char *data, size_t len, size_t *consumed,
                        int (*sink)(void *arg, const char *p, size_t n), void *arg);

#endif
