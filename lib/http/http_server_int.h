/* http_server_int.h - what the server's files share (not part of the public API).
 *
 *   http_server.c   the public API: routes, exchanges and their answers, CORS, static files,
 *                   built-in endpoints, start and free
 *   http_loop.c     the connection loops: accept, read, deadlines, caps, write, shutdown
 *   http_request.c  the request head parser and chunked decoder (http_request.h)
 *   http_response.c the bytes of an answer: status line, headers, body
 *
 * Each polling thread (struct http_loop) owns an epoll set with the shared listening socket
 * (EPOLLEXCLUSIVE: one loop is woken per new connection), its connections and its wake-up
 * (lib/wake.h). The accepting loop gives a new connection (struct http_conn) to the loop with the
 * fewest, which keeps it for its life; a request on it
 * (struct http_exchange) is parsed, routed and handed to its handler on that loop's thread. An
 * answer given on another thread is built there (the bytes of the whole response) and pushed on
 * the loop's answered stack; the loop sends it at its next wake-up: one write per answer, no
 * epoll_ctl, no extra read.
 *
 * Lock order: exchange->lock alone (the loops share nothing else with answering threads but the
 * answered stack, which is lock-free); the per-client counts have a lock of their own. */
#ifndef HTTP_SERVER_INT_H
#define HTTP_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "http/http_request.h"
#include "http/http_server.h"
#include "wake.h"

/* Status classes counted by http_requests_total: 1xx .. 5xx. */
#define HTTP_STATUS_CLASSES 5
#define HTTP_CLIENT_BUCKETS 4096
/* A connection refused for a cap, or closed after an error, waits this long for its request head
 * (to answer it 503) or for the client to read the answer and close. */
#define HTTP_LINGER_MS 2000

enum route_kind { ROUTE_HANDLER, ROUTE_STATIC, ROUTE_UNMATCHED };

struct route {
    enum route_kind kind;
    char *method;
    char *pattern;      /* as registered; the metrics label */
    char *segments_mem; /* the one allocation segments point into */
    char **segments;
    size_t n_segments;
    http_handler_fn fn;
    void *ctx;
    size_t max_body_bytes;
    char *dir; /* ROUTE_STATIC: directory, realpath'd at registration */
    struct metric *requests[HTTP_STATUS_CLASSES];
    struct metric *duration;
};

struct resp_header {
    char *name;
    char *value;
};

enum refuse_reason { REFUSE_MAX_CONNECTIONS, REFUSE_MAX_PER_CLIENT, REFUSE_COUNT };
enum timeout_kind { TIMEOUT_HEAD, TIMEOUT_BODY, TIMEOUT_IDLE, TIMEOUT_COUNT };

/* Open connections per client address, for max_connections_per_client. */
struct client_count {
    unsigned char addr[16];
    unsigned n;
    struct client_count *next;
};

struct client_table {
    pthread_mutex_t lock;
    struct client_count *buckets[HTTP_CLIENT_BUCKETS];
};

struct http_loop;

struct http_server {
    struct http_server_options opts;
    char *listen;
    struct route *routes;
    size_t n_routes;
    struct route unmatched; /* metrics of 404/405 and rejected requests */
    struct http_loop *loops;
    unsigned n_loops; /* loops started */
    int listen_fd;
    /* threads between pushing an answer and waking its loop: written twice per asynchronous
     * answer by the answering thread, so padded onto a cache line of its own (the loops read
     * the fields around it on every request) */
    char pad_waking0[64];
    atomic_uint n_waking;
    char pad_waking1[64];
    unsigned port;
    struct metric *connections_total; /* accepted connections (reuse shows as few of them) */
    struct metric *connections_open;
    struct metric *refused[REFUSE_COUNT];
    struct metric *timed_out[TIMEOUT_COUNT];
    atomic_uint n_open; /* connections open, all loops (padded: written by every loop) */
    char pad_open[64];
    struct client_table clients;
    char *cors[16]; /* allowed origins (exact match) */
    size_t n_cors;
    char *static_csp;
};

struct http_exchange {
    struct http_server *server; /* not to be used once is_forced (the server may be gone) */
    struct http_loop *loop;     /* the polling thread the connection belongs to */
    struct http_conn *conn;     /* loop thread only */
    const struct route *route;
    struct http_request req; /* method, target, fields: point into head */
    char *head;              /* the request head, copied from the connection and parsed */
    struct http_field *fields;
    char *path;     /* decoded */
    char *seg_copy; /* path split into NUL-separated segments; params point into it */
    const char *params[HTTP_MAX_PARAMS];
    char **query; /* decoded name/value pairs, NULL-terminated; built at the first http_query */
    struct buf body;
    bool is_head_method; /* HEAD: the answer has no body */
    bool is_close;       /* answer with Connection: close and close the connection after it */
    bool is_handled;     /* handler invoked: the handler holds a reference until it responds */
    struct timespec started;
    struct resp_header *headers;
    size_t n_headers;
    char *cors_origin; /* the request's Origin when it is on the allow-list, else NULL */
    bool has_cors;     /* the server has an allow-list: answers vary by Origin */

    /* Shared between the polling thread and the answering thread, behind lock: */
    pthread_mutex_t lock;
    /* An answer given after the handler returned is written to the socket by the answering
     * thread itself while nothing is queued behind it (no pipelined request, no earlier bytes
     * pending): the loop then only learns of it at its next wake-up for any reason, and a
     * request costs no wake-up. The loop keeps the socket open meanwhile (fd). */
    bool may_send_direct;
    bool is_sending; /* the answering thread is writing resp (outside the lock), then pushes */
    int fd;
    size_t resp_off; /* bytes of resp already written by the answering thread */
    struct buf resp; /* the answer's bytes, built by whoever answers */
    unsigned status;
    bool is_answered;  /* resp holds an answer (from the handler or forced by the server) */
    bool is_responded; /* the handler's http_respond*() happened */
    bool is_returned;  /* the handler returned: an answer after this goes through the stack */
    bool is_done;      /* the loop is finished with the exchange */
    bool is_forced;    /* the server answered 503 at shutdown in the handler's place */
    struct http_exchange *next_answered; /* the loop's answered stack */
    struct http_exchange *prev, *next;   /* the loop's pending list (loop thread only) */
};

/* ---- http_server.c, for the loops ---- */

/* A new exchange for a request whose head is head[0..len) (copied). */
struct http_exchange *http_exchange_new(struct http_server *s, struct http_loop *l,
                                        struct http_conn *c, const char *head, size_t len);
/* Once the head is parsed: checks the target and framing, answers CORS preflights, routes,
 * refuses a body over the route's cap, serves static files. Returns true when the exchange still
 * needs its body and handler (ex->route set), false when it is answered. */
bool http_exchange_begin(struct http_exchange *ex);
/* Runs the handler once the body is in. Returns true when the answer is there. */
bool http_exchange_run(struct http_exchange *ex, bool is_stopping);
/* Appends body bytes; -1 past the route's cap. */
int http_exchange_body(struct http_exchange *ex, const char *p, size_t n);
/* Answers on behalf of the server (not the handler). */
void http_exchange_error(struct http_exchange *ex, unsigned status, const char *code,
                         const char *message);
/* Forces 503 in the handler's place at shutdown; false when an answer was there already. */
bool http_exchange_force(struct http_exchange *ex);
/* The loop is done with the exchange (answer sent, or its connection gone): counts it, logs it,
 * frees it unless a handler still holds it. */
void http_exchange_done(struct http_exchange *ex);

/* ---- http_loop.c ---- */

int http_loops_start(struct http_server *s, char *err, size_t err_len);
/* Stops accepting, waits up to grace_ms for pending answers, forces 503 for the rest, gives the
 * answers time to leave, stops and frees the loops. */
void http_loops_stop(struct http_server *s, unsigned grace_ms);
/* From the answering thread, under ex->lock with n_waking counted: hands an answered exchange
 * back to its loop; wakes it when must_wake (unless a deferred sweep is open on this thread). */
void http_loop_deliver(struct http_exchange *ex, bool must_wake);

/* ---- http_response.c ---- */

/* Builds the whole answer of ex into out: status line, Date, Content-Type, Content-Length,
 * Connection, the exchange's headers and CORS headers, then the body (not for HEAD). */
void http_response_build(struct buf *out, const struct http_exchange *ex, unsigned status,
                         const char *content_type, const char *body, size_t len);
/* An error answer without an exchange (a head that could not be parsed): JSON, Connection:
 * close. */
void http_response_error(struct buf *out, unsigned status, const char *code, const char *message);

#endif
