/* http1.h - an incremental HTTP/1.1 response parser (RFC 9112) for the client side.
 *
 * The HTTP pool (http_client.c) reads a connection's bytes into its own buffer and hands them to
 * http1_response_parse() as they come: the parser takes complete lines of the status line and
 * the header block, and body bytes as they are (Content-Length, chunked, or up to the close),
 * appending the body to a caller's capped buffer. It keeps no pointer into the caller's bytes
 * between calls, so the caller may compact its buffer. Not thread-safe; no allocation except
 * the body (struct buf) and Retry-After. */
#ifndef HTTP1_H
#define HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum http1_rc {
    HTTP1_AGAIN = 0,    /* needs more bytes */
    HTTP1_DONE = 1,     /* a whole final response was parsed */
    HTTP1_EBAD = -1,    /* not HTTP/1.x or malformed */
    HTTP1_ETOOBIG = -2, /* the body exceeded the body buffer's cap */
};

struct http1_response {
    int state; /* private */
    int status;
    int minor_version; /* 1.0 or 1.1 */
    bool is_head;      /* the request was HEAD: no body whatever the headers say */
    bool is_chunked;
    bool has_length;
    bool is_keep_alive; /* the connection may carry another request after this response */
    bool has_any;       /* at least one byte of a response arrived */
    uint64_t remaining; /* of the Content-Length body or of the current chunk */
    struct buf *body;   /* borrowed; receives the body */
    char *retry_after;  /* heap or NULL; the caller takes it */
};

/* Starts a response; body is borrowed for its duration (its cap is the body limit). */
void http1_response_init(struct http1_response *p, bool is_head, struct buf *body);
/* Frees what the parser still owns (Retry-After). */
void http1_response_release(struct http1_response *p);
/* Parses data[0..len) and sets *consumed to the bytes taken. Bytes not taken are the start of an
 * incomplete line: pass them again, followed by more. Once HTTP1_DONE, bytes past the response
 * are not taken. */
int http1_response_parse(struct http1_response *p, const char *data, size_t len, size_t *consumed);
/* The peer closed the connection: HTTP1_DONE when that ends a body delimited by the close,
 * HTTP1_EBAD when the response is incomplete. */
int http1_response_eof(struct http1_response *p);

#endif
