/* http_client.c - the HTTP client over libcurl (see http_client.h).
 *
 * One request = one struct transfer: a curl easy handle plus what the transfer needs to outlive
 * the caller's arguments (a copy of the body, the header list) and to collect the answer (a
 * capped body buffer, Retry-After). Transfers are recycled, never freed per request: the
 * synchronous client keeps idle ones (each easy handle keeps its connections alive), the pool
 * keeps a free list (its multi handle owns the connection cache, shared by all transfers).
 *
 * The pool runs one thread: it moves submitted transfers from a locked queue into the multi
 * handle, drives curl_multi_perform/curl_multi_poll, and calls each request's callback when curl
 * reports it done. http_pool_submit() wakes it with curl_multi_wakeup(). */
#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "log.h"

/* Idle easy handles kept by a synchronous client; more are created under load and freed. */
#define HTTP_CLIENT_MAX_IDLE 16
/* Recycled transfers kept by a pool beyond the connection limit. */
#define HTTP_POOL_MAX_FREE 1024
#define HTTP_POOL_POLL_MS 1000

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
    struct transfer *next; /* in the pool's queue or free list */
    struct transfer *in_prev, *in_next; /* in the pool's in-flight list (pool thread only) */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

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

static struct transfer *transfer_new(void)
{
    pthread_once(&curl_once, curl_init_once);
    struct transfer *t = xcalloc(1, sizeof *t);
    t->easy = curl_easy_init();
    if (!t->easy) {
        log_error("http client: curl_easy_init failed");
        abort();
    }
    buf_init(&t->req_body, 0);
    return t;
}

static void transfer_free(struct transfer *t)
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
static void transfer_reset(struct transfer *t)
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
static int transfer_setup(struct transfer *t, const char *method, const char *url,
                          const struct http_header_kv *headers, size_t n_headers,
                          const char *body, size_t body_len, long timeout_ms,
                          size_t max_body_bytes)
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
static int transfer_result(struct transfer *t, CURLcode rc, struct http_result *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->elapsed_s = (double)(now.tv_sec - t->started.tv_sec) +
                   (double)(now.tv_nsec - t->started.tv_nsec) / 1e9;
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
    pthread_once(&curl_once, curl_init_once);
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
        transfer_free(c->idle[i]);
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
        t = transfer_new();
    }
    int rc = -1;
    if (transfer_setup(t, method, url, headers, n_headers, body, body_len, timeout_ms,
                       max_body_bytes) != 0) {
        snprintf(result->error, sizeof result->error, "bad request arguments");
    } else {
        rc = transfer_result(t, curl_easy_perform(t->easy), result);
    }
    transfer_reset(t);
    pthread_mutex_lock(&c->lock);
    if (c->n_idle < HTTP_CLIENT_MAX_IDLE) {
        c->idle[c->n_idle++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    transfer_free(t);
    return rc;
}

/* ---- asynchronous pool ---- */

struct http_pool {
    CURLM *multi; /* used by the pool thread only, except curl_multi_wakeup */
    pthread_t thread;
    unsigned max_connections;

    /* Shared between submitters and the pool thread, behind lock: */
    pthread_mutex_t lock;
    struct transfer *queue_head, *queue_tail; /* submitted, not yet added to multi */
    struct transfer *free_list;               /* recycled transfers */
    size_t n_free;
    bool is_stopping;

    struct transfer *in_flight; /* added to multi; the pool thread's own */
};

static void in_flight_add(struct http_pool *p, struct transfer *t)
{
    t->in_prev = NULL;
    t->in_next = p->in_flight;
    if (p->in_flight) {
        p->in_flight->in_prev = t;
    }
    p->in_flight = t;
}

static void in_flight_remove(struct http_pool *p, struct transfer *t)
{
    if (t->in_prev) {
        t->in_prev->in_next = t->in_next;
    } else {
        p->in_flight = t->in_next;
    }
    if (t->in_next) {
        t->in_next->in_prev = t->in_prev;
    }
    t->in_prev = t->in_next = NULL;
}

/* Puts t on the free list as it is: the submitter that takes it resets it (transfer_reset frees
 * the header list and the answer's leftovers), which keeps that work off the pool thread. */
static void pool_recycle(struct http_pool *p, struct transfer *t)
{
    pthread_mutex_lock(&p->lock);
    if (p->n_free < HTTP_POOL_MAX_FREE) {
        t->next = p->free_list;
        p->free_list = t;
        p->n_free++;
        t = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    transfer_free(t);
}

/* Runs the callback, which takes the result's contents. */
static void pool_complete(struct http_pool *p, struct transfer *t, CURLcode rc,
                          const char *forced_error)
{
    struct http_result r;
    memset(&r, 0, sizeof r);
    if (forced_error) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        r.elapsed_s = (double)(now.tv_sec - t->started.tv_sec) +
                      (double)(now.tv_nsec - t->started.tv_nsec) / 1e9;
        snprintf(r.error, sizeof r.error, "%s", forced_error);
    } else {
        transfer_result(t, rc, &r);
    }
    t->done(t->done_ctx, &r);
    pool_recycle(p, t);
}

static void pool_drain_messages(struct http_pool *p)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        struct transfer *t = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
        curl_multi_remove_handle(p->multi, e);
        in_flight_remove(p, t);
        pool_complete(p, t, rc, NULL);
    }
}

static void *pool_main(void *arg)
{
    struct http_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        struct transfer *batch = p->queue_head;
        p->queue_head = p->queue_tail = NULL;
        bool is_stopping = p->is_stopping;
        pthread_mutex_unlock(&p->lock);
        while (batch) {
            struct transfer *t = batch;
            batch = t->next;
            t->next = NULL;
            if (is_stopping) {
                pool_complete(p, t, CURLE_OK, "shutdown");
                continue;
            }
            CURLMcode mc = curl_multi_add_handle(p->multi, t->easy);
            if (mc != CURLM_OK) {
                pool_complete(p, t, CURLE_OK, curl_multi_strerror(mc));
            } else {
                in_flight_add(p, t);
            }
        }
        if (is_stopping) {
            break;
        }
        int running = 0;
        curl_multi_perform(p->multi, &running);
        pool_drain_messages(p);
        curl_multi_poll(p->multi, NULL, 0, HTTP_POOL_POLL_MS, NULL);
    }
    /* Shutdown: whatever is still in flight ends now. */
    while (p->in_flight) {
        struct transfer *t = p->in_flight;
        curl_multi_remove_handle(p->multi, t->easy);
        in_flight_remove(p, t);
        pool_complete(p, t, CURLE_OK, "shutdown");
    }
    return NULL;
}

struct http_pool *http_pool_new(unsigned max_total_connections)
{
    pthread_once(&curl_once, curl_init_once);
    struct http_pool *p = xcalloc(1, sizeof *p);
    p->max_connections = max_total_connections ? max_total_connections : 64;
    pthread_mutex_init(&p->lock, NULL);
    p->multi = curl_multi_init();
    if (!p->multi) {
        log_error("http pool: curl_multi_init failed");
        abort();
    }
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)p->max_connections);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)p->max_connections);
    int rc = pthread_create(&p->thread, NULL, pool_main, p);
    if (rc != 0) {
        log_error("http pool: cannot start its thread: %s", strerror(rc));
        abort();
    }
    return p;
}

void http_pool_free(struct http_pool *p)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->is_stopping = true;
    pthread_mutex_unlock(&p->lock);
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
    /* Submissions raced with the stop flag cannot exist (submit checks it under the lock), but
     * the queue may hold transfers added between the thread's last look and the flag. */
    while (p->queue_head) {
        struct transfer *t = p->queue_head;
        p->queue_head = t->next;
        pool_complete(p, t, CURLE_OK, "shutdown");
    }
    while (p->free_list) {
        struct transfer *t = p->free_list;
        p->free_list = t->next;
        transfer_free(t);
    }
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int http_pool_submit(struct http_pool *p, const char *method, const char *url,
                     const struct http_header_kv *headers, size_t n_headers, const char *body,
                     size_t body_len, long timeout_ms, size_t max_body_bytes,
                     http_pool_done_fn done, void *ctx)
{
    pthread_mutex_lock(&p->lock);
    if (p->is_stopping) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    struct transfer *t = p->free_list;
    if (t) {
        p->free_list = t->next;
        p->n_free--;
        t->next = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (t) {
        transfer_reset(t);
    } else {
        t = transfer_new();
    }
    /* The body is copied into the transfer's own buffer, whose memory is kept across reuse. */
    const char *copy = NULL;
    if (body) {
        if (buf_append(&t->req_body, body, body_len) != 0) {
            pool_recycle(p, t);
            return -1;
        }
        copy = t->req_body.data ? t->req_body.data : "";
    }
    if (transfer_setup(t, method, url, headers, n_headers, copy, body_len, timeout_ms,
                       max_body_bytes) != 0) {
        pool_recycle(p, t);
        return -1;
    }
    t->done = done;
    t->done_ctx = ctx;
    pthread_mutex_lock(&p->lock);
    if (p->is_stopping) {
        pthread_mutex_unlock(&p->lock);
        pool_recycle(p, t);
        return -1;
    }
    /* Only a submission to an empty queue wakes the pool thread: it takes the whole queue at
     * once after each wake-up, so a non-empty queue has a wake-up pending (one syscall and one
     * context switch per batch instead of per request). */
    bool is_first = p->queue_head == NULL;
    if (p->queue_tail) {
        p->queue_tail->next = t;
    } else {
        p->queue_head = t;
    }
    p->queue_tail = t;
    pthread_mutex_unlock(&p->lock);
    if (is_first) {
        curl_multi_wakeup(p->multi);
    }
    return 0;
}
