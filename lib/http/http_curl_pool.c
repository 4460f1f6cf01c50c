/* http_curl_pool.c - the HTTP pool's curl engine (https:// and anything not plain http://; see
 * http_client_int.h).
 *
 * One thread moves submitted transfers from a locked queue into the multi handle, drives
 * curl_multi_perform/curl_multi_poll, and calls each request's callback when curl reports it
 * done. The multi handle owns the connection cache, shared by all transfers; done transfers go
 * to a free list. */
#include "http/http_client_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "log.h"
#include "wake.h"

#define HTTP_POOL_POLL_MS 1000

/* ---- asynchronous pool over curl multi (https:// and anything not plain http://) ---- */

struct curl_pool {
    CURLM *multi;     /* used by the pool thread only */
    struct wake wake; /* submitters wake the pool thread in curl_multi_poll */
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

static void in_flight_add(struct curl_pool *p, struct transfer *t)
{
    t->in_prev = NULL;
    t->in_next = p->in_flight;
    if (p->in_flight) {
        p->in_flight->in_prev = t;
    }
    p->in_flight = t;
}

static void in_flight_remove(struct curl_pool *p, struct transfer *t)
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

/* Puts t on the free list as it is: the submitter that takes it resets it (hc_transfer_reset frees
 * the header list and the answer's leftovers), which keeps that work off the pool thread. */
static void pool_recycle(struct curl_pool *p, struct transfer *t)
{
    pthread_mutex_lock(&p->lock);
    if (p->n_free < HTTP_POOL_MAX_FREE) {
        t->next = p->free_list;
        p->free_list = t;
        p->n_free++;
        t = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    hc_transfer_free(t);
}

/* Runs the callback, which takes the result's contents. */
static void pool_complete(struct curl_pool *p, struct transfer *t, CURLcode rc,
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
        hc_transfer_result(t, rc, &r);
    }
    t->done(t->done_ctx, &r);
    pool_recycle(p, t);
}

static void pool_drain_messages(struct curl_pool *p)
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
    struct curl_pool *p = arg;
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
        struct curl_waitfd wfd = {.fd = wake_fd(&p->wake), .events = CURL_WAIT_POLLIN};
        curl_multi_poll(p->multi, &wfd, 1, HTTP_POOL_POLL_MS, NULL);
        if (wfd.revents & CURL_WAIT_POLLIN) {
            wake_drain(&p->wake); /* the queue is taken at the top of the loop */
        }
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

struct curl_pool *hc_curl_pool_new(unsigned max_total_connections)
{
    hc_curl_init();
    struct curl_pool *p = xcalloc(1, sizeof *p);
    p->max_connections = max_total_connections ? max_total_connections : 64;
    pthread_mutex_init(&p->lock, NULL);
    p->multi = curl_multi_init();
    if (!p->multi) {
        log_error("http pool: curl_multi_init failed");
        abort();
    }
    if (wake_init(&p->wake) != 0) {
        log_error("http pool: cannot create its eventfd: %s", strerror(errno));
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

void hc_curl_pool_free(struct curl_pool *p)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->is_stopping = true;
    pthread_mutex_unlock(&p->lock);
    wake_signal(&p->wake);
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
        hc_transfer_free(t);
    }
    curl_multi_cleanup(p->multi);
    wake_close(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int hc_curl_pool_submit(struct curl_pool *p, const char *method, const char *url,
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
        hc_transfer_reset(t);
    } else {
        t = hc_transfer_new();
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
    if (hc_transfer_setup(t, method, url, headers, n_headers, copy, body_len, timeout_ms,
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
    if (p->queue_tail) {
        p->queue_tail->next = t;
    } else {
        p->queue_head = t;
    }
    p->queue_tail = t;
    pthread_mutex_unlock(&p->lock);
    /* The pool thread takes the whole queue after each wake-up, and a wake-up still pending
     * costs no syscall: one write and one context switch per batch, not per request. */
    wake_signal(&p->wake);
    return 0;
}
