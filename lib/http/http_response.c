/* http_response.c - the bytes of an answer (RFC 9112 section 4 and 6): one buffer with the
 * status line, the headers and the body, so that the loop sends it with one write. Built by
 * whichever thread answers (see http_server_int.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/http_server_int.h"

static const char *status_reason(unsigned status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* The Date header's value (RFC 9110 section 5.6.7), formatted once a second per thread. */
static const char *http_date(void)
{
    static _Thread_local time_t cached_s = -1;
    static _Thread_local char text[40];
    time_t now = time(NULL);
    if (now != cached_s) {
        struct tm tm;
        gmtime_r(&now, &tm);
        if (strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0) {
            text[0] = '\0';
        }
        cached_s = now;
    }
    return text;
}

static void append_head(struct buf *out, unsigned status, const char *content_type, size_t len)
{
    char line[256];
    bool has_body = status != 204 && status != 304 && status >= 200;
    int n = snprintf(line, sizeof line, "HTTP/1.1 %u %s\r\nDate: %s\r\n", status,
                     status_reason(status), http_date());
    if (n > 0 && (size_t)n < sizeof line) {
        buf_append(out, line, (size_t)n);
    }
    if (has_body) {
        buf_appends(out, "Content-Type: ");
        buf_appends(out, content_type ? content_type : "application/json");
        n = snprintf(line, sizeof line, "\r\nContent-Length: %zu\r\n", len);
        if (n > 0 && (size_t)n < sizeof line) {
            buf_append(out, line, (size_t)n);
        }
    }
}

void http_response_build(struct buf *out, const struct http_exchange *ex, unsigned status,
                         const char *content_type, const char *body, size_t len)
{
    (void)buf_reserve(out, 256 + len);
    append_head(out, status, content_type, len);
    if (ex->is_close) {
        buf_appends(out, "Connection: close\r\n");
    } else if (ex->req.minor_version == 0) {
        buf_appends(out, "Connection: keep-alive\r\n");
    }
    for (size_t i = 0; i < ex->n_headers; i++) {
        buf_appends(out, ex->headers[i].name);
        buf_appends(out, ": ");
        buf_appends(out, ex->headers[i].value);
        buf_appends(out, "\r\n");
    }
    if (ex->cors_origin) {
        buf_appends(out, "Access-Control-Allow-Origin: ");
        buf_appends(out, ex->cors_origin);
        buf_appends(out, "\r\n");
    }
    if (ex->has_cors) {
        buf_appends(out, "Vary: Origin\r\n");
    }
    buf_appends(out, "\r\n");
    if (!ex->is_head_method && status != 204 && status != 304) {
        buf_append(out, body, len);
    }
}

void http_response_error(struct buf *out, unsigned status, const char *code, const char *message)
{
    struct buf body;
    buf_init(&body, 0);
    buf_appends(&body, "{\"error\":");
    buf_append_json_string(&body, code);
    buf_appends(&body, ",\"message\":");
    buf_append_json_string(&body, message);
    buf_appends(&body, "}");
    append_head(out, status, NULL, body.len);
    buf_appends(out, "Connection: close\r\n\r\n");
    buf_append(out, body.data, body.len);
    buf_release(&body);
}
