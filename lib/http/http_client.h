/* http_client.h - the HTTP client over libcurl (the only module that includes curl.h).
 *
 * Two faces:
 * - http_client_request(): synchronous, for services that call a provider now and then. Each
 *   http_client keeps its connections alive (one curl easy handle per thread-cache slot); a
 *   client may be shared by threads (internally locked pool of handles).
 * - struct http_pool: asynchronous, for the dispatcher's many deliveries in flight.
 *   http_pool_submit() queues a request from any thread and the callback runs on a pool thread
 *   when it completes, fails or times out. Plain http:// URLs go to a native HTTP/1.1
 *   keep-alive engine (one epoll thread, idle connections reused per host:port, a stale one
 *   retried once on a fresh connection); https:// and anything else to curl's multi interface on
 *   a second thread, started on first use. Connections are reused per host; at most
 *   max_total_connections per engine. */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include <stddef.h>

/* The linked library's version, for --version and bus_build_info (static string). */
const char *http_client_lib_version(void); /* libcurl's version */

struct http_header_kv {
    const char *name;
    const char *value;
};

struct http_result {
    int status; /* HTTP status, or 0 when no answer (see error) */
    char *body; /* heap, NUL-terminated, capped (see max_body_bytes); caller frees */
    size_t body_len;
    char *retry_after; /* value of Retry-After, heap or NULL */
    char error[128];   /* "" or why no answer: "connection refused", "timeout", ... */
    double elapsed_s;
};
void http_result_release(struct http_result *r);

struct http_client;
struct http_client *http_client_new(void);
void http_client_free(struct http_client *c);
/* Sends one request. body may be NULL. Returns 0 when an HTTP answer arrived (any status), -1
 * otherwise (result->error says why). result must be released by the caller in both cases. */
int http_client_request(struct http_client *c, const char *method, const char *url,
                        const struct http_header_kv *headers, size_t n_headers, const char *body,
                        size_t body_len, long timeout_ms, size_t max_body_bytes,
                        struct http_result *result);

struct http_pool;
/* Called once per submitted request on the pool thread; takes ownership of result's heap fields
 * (body, retry_after: http_result_release() them or keep them). The struct itself is valid only
 * during the call. */
typedef void (*http_pool_done_fn)(void *ctx, struct http_result *result);

struct http_pool *http_pool_new(unsigned max_total_connections);
/* Stops the pool thread; requests still in flight complete with error "shutdown". */
void http_pool_free(struct http_pool *p);
/* Copies everything it needs; returns -1 when the pool is shutting down. */
int http_pool_submit(struct http_pool *p, const char *method, const char *url,
                     const struct http_header_kv *headers, size_t n_headers, const char *body,
                     size_t body_len, long timeout_ms, size_t max_body_bytes,
                     http_pool_done_fn done, void *ctx);

#endif
