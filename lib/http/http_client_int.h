/* http_client_int.h - what the parts of the HTTP client share (private to lib/http/).
 *
 * http_client.c   one curl transfer (struct transfer) and the synchronous client;
 * http_curl_pool.c  the pool's curl engine (https:// and anything not plain http://), one
 *                 thread on a curl multi handle;
 * http_pool.c     struct http_pool and its native HTTP/1.1 engine for http:// URLs, which hands
 *                 every other URL to the curl engine.
 * Callers include http/http_client.h only. The hc_ prefix marks these private functions. */
#ifndef HTTP_CLIENT_INT_H
#define HTTP_CLIENT_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "http/http_client.h"

/* Recycled transfers (and requests) kept by a pool beyond the connection limit. */
#define HTTP_POOL_MAX_FREE 1024

struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    struct buf req_body;  /* pool: copy of the request body (memory kept across reuse) */
    struct buf resp_body; /* capped by max_body_bytes */
    char *retry_after;
    bool is_too_big;
    char errbuf[CURL_ERROR_SIZE];
    struct timespec started;
    /* pool only */
    http_pool_done_fn done;
    void *done_ctx;
    struct transfer *next;              /* in the pool's queue or free list */
    struct transfer *in_prev, *in_next; /* in the pool's in-flight list (pool thread only) */
};

/* curl_global_init, once per process (aborts when it fails). */
void hc_curl_init(void);

/* http_client.c: one transfer, recycled rather than freed per request. */
struct transfer *hc_transfer_new(void);
void hc_transfer_free(struct transfer *t);
/* Clears what one request left behind; keeps the easy handle (and its connections) and the
 * request body's memory. */
void hc_transfer_reset(struct transfer *t);
/* Sets up the easy handle for one request. body must stay valid during the transfer. */
int hc_transfer_setup(struct transfer *t, const char *method, const char *url,
                      const struct http_header_kv *headers, size_t n_headers, const char *body,
                      size_t body_len, long timeout_ms, size_t max_body_bytes);
/* Fills result from a finished transfer; moves the body and Retry-After out of t. Returns 0 when
 * an HTTP answer arrived. */
int hc_transfer_result(struct transfer *t, CURLcode rc, struct http_result *r);

/* http_curl_pool.c: the curl engine, created by the pool on the first URL its native engine
 * does not take. */
struct curl_pool;
struct curl_pool *hc_curl_pool_new(unsigned max_total_connections);
/* Stops the thread; requests in flight or queued complete with error "shutdown". */
void hc_curl_pool_free(struct curl_pool *p);
/* Copies everything it needs; returns -1 when the pool is shutting down. */
int hc_curl_pool_submit(struct curl_pool *p, const char *method, const char *url,
                        const struct http_header_kv *headers, size_t n_headers, const char *body,
                        size_t body_len, long timeout_ms, size_t max_body_bytes,
                        http_pool_done_fn done, void *ctx);

#endif
