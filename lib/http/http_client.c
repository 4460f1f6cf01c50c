/* http_client.c - the HTTP client over libcurl (see http_client.h): one transfer and the
 * synchronous client. The parts of the client share http_client_int.h.
 *
 * One request = one struct transfer: a curl easy handle plus what the transfer needs to outlive
 * the caller's arguments (a copy of the body, the header list) and to collect the answer (a
 * capped body buffer, Retry-After). Transfers are recycled, never freed per request: the
 * synchronous client keeps idle ones (each easy handle keeps its connections alive), the pool
 * keeps a free list (its multi handle owns the connection cache, shared by all transfers).
 *
 * The pool (struct http_pool) has two engines. Plain http:// URLs, i.e. every delivery of the
 * dispatcher, take the native HTTP/1.1 engine (http_pool.c: epoll, http1.c's parser).
 * Everything else (https://) takes the curl engine (http_curl_pool.c, struct curl_pool), created
 * on first use. Each engine's thread sleeps in epoll_wait / curl_multi_poll and is woken by
 * submitters through a struct wake (wake.h). */
#include "http/http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "http/http_client_int.h"
#include "log.h"

/* Idle easy handles kept by a synchronous client; more are created under load and freed. */
#define HTTP_CLIENT_MAX_IDLE 16

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

const char *http_client_lib_version(void)
{
    return curl_version_info(CURLVERSION_NOW)->version;
}

static void curl_init_once(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        log_error("http client: curl_global_init failed: %s", curl_easy_strerror(rc));
        abort();
    }
}

void http_result_release(struct http_result *r)
{
    if (!r) {
        return;
    }
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    free(r->retry_after);
    r->retry_after = NULL;
}

void hc_curl_init(void)
{
    pthread_once(&curl_once, curl_init_once);
}

/* ---- one transfer ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb;
    if (buf_append(&t->resp_body, data, n) != 0) {
        t->is_too_big = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new header block (after 100 Continue): forget the previous one. */
        free(t->retry_after);
        t->retry_after = NULL;
    } else if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        const char *end = data + n;
        while (v < end && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) {
            end--;
        }
        free(t->retry_after);
        t->retry_after = xstrndup(v, (size_t)(end - v));
    }
    return n;
}

struct transfer *hc_transfer_new(void)
{
    hc_curl_init();
    struct transfer *t = xcalloc(1, sizeof *t);
    t->easy = curl_easy_init();
    if (!t->easy) {
        log_error("http client: curl_easy_init failed");
        abort();
    }
    buf_init(&t->req_body, 0);
    return t;
}

void hc_transfer_free(struct transfer *t)
{
    if (!t) {
        return;
    }
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    buf_release(&t->req_body);
    buf_release(&t->resp_body);
    free(t->retry_after);
    free(t);
}

/* Clears what one request left behind; keeps the easy handle (and its connections) and the
 * request body's memory. */
void hc_transfer_reset(struct transfer *t)
{
    curl_easy_reset(t->easy);
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    buf_reset(&t->req_body);
    buf_release(&t->resp_body);
    free(t->retry_after);
    t->retry_after = NULL;
    t->is_too_big = false;
    t->errbuf[0] = '\0';
    t->done = NULL;
    t->done_ctx = NULL;
    t->next = NULL;
    t->in_prev = t->in_next = NULL;
}

/* Sets up the easy handle for one request. body must stay valid during the transfer. */
int hc_transfer_setup(struct transfer *t, const char *method, const char *url,
                      const struct http_header_kv *headers, size_t n_headers, const char *body,
                      size_t body_len, long timeout_ms, size_t max_body_bytes)
{
    CURL *e = t->easy;
    buf_init(&t->resp_body, max_body_bytes);
    clock_gettime(CLOCK_MONOTONIC, &t->started);
    for (size_t i = 0; i < n_headers; i++) {
        char line[1024];
        int n = snprintf(line, sizeof line, "%s: %s", headers[i].name, headers[i].value);
        if (n < 0 || (size_t)n >= sizeof line) {
            return -1;
        }
        struct curl_slist *l = curl_slist_append(t->headers, line);
        if (!l) {
            return -1;
        }
        t->headers = l;
    }
    /* No "Expect: 100-continue" round trip: our servers answer 413 on Content-Length. */
    struct curl_slist *l = curl_slist_append(t->headers, "Expect:");
    if (!l) {
        return -1;
    }
    t->headers = l;

    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK) {                                                                      \
            rc = curl_easy_setopt(e, opt, val);                                                    \
        }                                                                                          \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 0L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 0L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HTTPHEADER, t->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_PRIVATE, t);
    if (strcmp(method, "GET") == 0 && !body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
            strcmp(method, "PATCH") == 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
            SET(CURLOPT_POSTFIELDS, body ? body : "");
        }
        if (strcmp(method, "POST") != 0) {
            SET(CURLOPT_CUSTOMREQUEST, method);
        }
    }
#undef SET
    if (rc != CURLE_OK) {
        log_warn("http client: cannot set up a request to %s: %s", url, curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

/* Fills result from a finished transfer; moves the body and Retry-After out of t. Returns 0 when
 * an HTTP answer arrived. */
int hc_transfer_result(struct transfer *t, CURLcode rc, struct http_result *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->elapsed_s =
        (double)(now.tv_sec - t->started.tv_sec) + (double)(now.tv_nsec - t->started.tv_nsec) / 1e9;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    r->error[0] = '\0';
    if (rc == CURLE_OK) {
        r->status = (int)status;
        r->body = buf_take(&t->resp_body, &r->body_len);
        r->retry_after = t->retry_after;
        t->retry_after = NULL;
        return 0;
    }
    r->status = 0;
    const char *why = NULL;
    char detail[CURL_ERROR_SIZE + 64];
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        why = "timeout";
        break;
    case CURLE_COULDNT_CONNECT: {
        long os_errno = 0;
        curl_easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno == ECONNREFUSED || os_errno == 0) {
            why = "connection refused";
        } else {
            snprintf(detail, sizeof detail, "cannot connect: %s", strerror((int)os_errno));
            why = detail;
        }
        break;
    }
    case CURLE_COULDNT_RESOLVE_HOST:
        why = "cannot resolve host";
        break;
    case CURLE_WRITE_ERROR:
        why = t->is_too_big ? "response too large" : "write error";
        break;
    case CURLE_GOT_NOTHING:
        why = "empty reply";
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        why = "connection reset";
        break;
    default:
        snprintf(detail, sizeof detail, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
        why = detail;
        break;
    }
    snprintf(r->error, sizeof r->error, "%.*s", (int)sizeof r->error - 1, why);
    return -1;
}

/* ---- synchronous client ---- */

struct http_client {
    pthread_mutex_t lock; /* guards idle */
    struct transfer *idle[HTTP_CLIENT_MAX_IDLE];
    size_t n_idle;
};

struct http_client *http_client_new(void)
{
    hc_curl_init();
    struct http_client *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void http_client_free(struct http_client *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->n_idle; i++) {
        hc_transfer_free(c->idle[i]);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int http_client_request(struct http_client *c, const char *method, const char *url,
                        const struct http_header_kv *headers, size_t n_headers, const char *body,
                        size_t body_len, long timeout_ms, size_t max_body_bytes,
                        struct http_result *result)
{
    memset(result, 0, sizeof *result);
    pthread_mutex_lock(&c->lock);
    /* The most recently used handle first: its connection is the likeliest to be alive. */
    struct transfer *t = c->n_idle ? c->idle[--c->n_idle] : NULL;
    pthread_mutex_unlock(&c->lock);
    if (!t) {
        t = hc_transfer_new();
    }
    int rc = -1;
    if (hc_transfer_setup(t, method, url, headers, n_headers, body, body_len, timeout_ms,
                          max_body_bytes) != 0) {
        snprintf(result->error, sizeof result->error, "bad request arguments");
    } else {
        rc = hc_transfer_result(t, curl_easy_perform(t->easy), result);
    }
    hc_transfer_reset(t);
    pthread_mutex_lock(&c->lock);
    if (c->n_idle < HTTP_CLIENT_MAX_IDLE) {
        c->idle[c->n_idle++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    hc_transfer_free(t);
    return rc;
}
