/* http_response.c - the bytes of an answer (RFC 9112 section 4 and 6): one buffer with the
 * status line, the headers and the body, so that the loop sends it with one write. Built by
 * whichever thread answers (see http_server_int.h). */
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

/* The status line and the Date header of status, "HTTP/1.1 202 Accepted\r\nDate: ...\r\n",
 * into out (at least HTTP_HEAD_LINES_MAX bytes); returns its length. The Date value (RFC 9110
 * section 5.6.7) is formatted once a second per thread, and the line of the last status is kept
 * with it: an answer's head costs two copies, no snprintf (they were ~4% of the publisher's
 * answering thread, bench/publisher.sh, 2026-12-07). */
#define HTTP_HEAD_LINES_MAX 128

static size_t status_and_date(unsigned status, char *out)
{
    static _Thread_local time_t cached_s = -1;
    static _Thread_local char date[40];
    static _Thread_local size_t date_len;
    static _Thread_local unsigned line_status;
    static _Thread_local char line[80];
    static _Thread_local size_t line_len;
    time_t now = time(NULL);
    if (now != cached_s) {
        struct tm tm;
        gmtime_r(&now, &tm);
        date_len = strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_s = now;
    }
    if (status != line_status || line_len == 0) {
        const char *reason = status_reason(status);
        size_t rlen = strlen(reason);
        unsigned code = status > 999 ? 999 : status;
        memcpy(line, "HTTP/1.1 ", 9);
        line[9] = (char)('0' + code / 100);
        line[10] = (char)('0' + code / 10 % 10);
        line[11] = (char)('0' + code % 10);
        line[12] = ' ';
        memcpy(line + 13, reason, rlen); /* the longest reason is 31 bytes */
        memcpy(line + 13 + rlen, "\r\nDate: ", 8);
        line_len = 13 + rlen + 8;
        line_status = status;
    }
    memcpy(out, line, line_len);
    memcpy(out + line_len, date, date_len);
    memcpy(out + line_len + date_len, "\r\n", 2);
    return line_len + date_len + 2;
}

static void append_head(struct buf *out, unsigned status, const char *content_type, size_t len)
{
    char lines[HTTP_HEAD_LINES_MAX];
    bool has_body = status != 204 && status != 304 && status >= 200;
    buf_append(out, lines, status_and_date(status, lines));
    if (has_body) {
        buf_appends(out, "Content-Type: ");
        buf_appends(out, content_type ? content_type : "application/json");
        buf_appends(out, "\r\nContent-Length: ");
        buf_append_int(out, (long long)len);
        buf_append(out, "\r\n", 2);
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
