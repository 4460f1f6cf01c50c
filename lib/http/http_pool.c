/* http_pool.c - struct http_pool (see http_client.h and http_client_int.h): the native
 * HTTP/1.1 engine for plain http:// URLs; every other URL goes to the curl engine
 * (http_curl_pool.c). */
#include "http/http_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "http/http1.h"
#include "http/http_client_int.h"
#include "log.h"
#include "wake.h"

/* ---- asynchronous pool: native HTTP/1.1 keep-alive client for http:// URLs ----
 *
 * Why not curl here: the dispatcher makes one request per event, and curl's multi interface
 * spent ~75 µs of CPU per request (per-request state and header list allocations, matching our
 * custom headers against its own, curl_multi_perform walking every handle). This engine does
 * per request: one send() of a request preformatted by the submitter, one epoll_wait, one recv()
 * parsed by http1.c, and no allocation but the answer's body handed to the callback.
 *
 * Threads: submitters format the request into a recycled struct req and queue it (pool->lock);
 * the pool thread owns everything else (hosts, connections, timers) and runs the callbacks.
 *
 * Connections: per host:port a stack of idle keep-alive connections (the most recent first),
 * at most max_connections open in all; a request that finds none idle and no room waits in its
 * host's queue. Sockets are registered once, edge-triggered, for input and output. A request
 * that finds its reused connection closed by the server before any byte of the answer came is
 * retried once on a fresh connection (the server may close an idle connection at any time,
 * RFC 9112 section 9.3.1; curl does the same). Every request has one deadline (connect, send
 * and answer together) in a list sorted by deadline: deadlines of a route are submitted in
 * order, so inserting from the tail is O(1) in practice. */

#define NATIVE_RX_BYTES 16384 /* per connection: holds at most one header line at a time */
#define NATIVE_MAX_EVENTS 64
#define NATIVE_NAME_MAX 256

enum conn_state { CONN_CONNECTING, CONN_BUSY, CONN_IDLE, CONN_DEAD };

struct host;
struct conn;

struct req {
    struct buf out; /* request line, headers and body, as sent; memory kept across reuse */
    size_t out_off;
    struct buf resp_body;
    bool is_head;
    int n_retries;
    char name[NATIVE_NAME_MAX]; /* host name or address, without brackets */
    char port[8];
    size_t max_body_bytes;
    int64_t deadline_ms; /* CLOCK_MONOTONIC; 0 = none */
    struct timespec started;
    http_pool_done_fn done;
    void *done_ctx;
    struct host *host;
    struct conn *conn;
    struct req *next;            /* submit queue, free list or host wait queue */
    struct req *t_prev, *t_next; /* deadline list */
    bool has_timer;
};

struct host {
    char name[NATIVE_NAME_MAX];
    char port[8];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool needs_resolve;                /* a connect failed: the address may have changed */
    struct conn *idle;                 /* stack of idle connections (i_next) */
    struct req *wait_head, *wait_tail; /* requests waiting for a connection */
    struct host *next;
};

struct conn {
    int fd;
    enum conn_state state;
    bool is_reused;      /* answered a request before: may be stale */
    bool is_peer_closed; /* the peer's FIN is queued behind the bytes read */
    struct host *host;
    struct req *req;
    struct http1_response resp;
    struct conn *i_prev, *i_next; /* host's idle stack */
    struct conn *a_prev, *a_next; /* pool's list of all connections; dead list (a_next) */
    size_t rx_len;
    char rx[NATIVE_RX_BYTES];
};

struct http_pool {
    pthread_t thread;
    int epfd;
    struct wake wake; /* submitters wake the pool thread */
    unsigned max_connections;

    /* Shared between submitters and the pool thread, behind lock: */
    pthread_mutex_t lock;
    struct req *queue_head, *queue_tail;
    struct req *free_list;
    size_t n_free;
    bool is_stopping;
    struct curl_pool *curl; /* created on the first URL this engine does not take */

    /* The pool thread's own: */
    struct host *hosts;
    struct conn *conns; /* all open connections */
    struct conn *dead;  /* closed this round; freed after the round's events */
    unsigned n_conns;
    unsigned n_idle;
    size_t n_waiting;
    struct req *timers_head, *timers_tail;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void req_free(struct req *r)
{
    if (!r) {
        return;
    }
    buf_release(&r->out);
    buf_release(&r->resp_body);
    free(r);
}

static void native_recycle(struct http_pool *p, struct req *r)
{
    buf_release(&r->resp_body);
    r->conn = NULL;
    r->host = NULL;
    r->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->n_free < HTTP_POOL_MAX_FREE) {
        r->next = p->free_list;
        p->free_list = r;
        p->n_free++;
        r = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    req_free(r);
}

static void timer_remove(struct http_pool *p, struct req *r)
{
    if (!r->has_timer) {
        return;
    }
    if (r->t_prev) {
        r->t_prev->t_next = r->t_next;
    } else {
        p->timers_head = r->t_next;
    }
    if (r->t_next) {
        r->t_next->t_prev = r->t_prev;
    } else {
        p->timers_tail = r->t_prev;
    }
    r->t_prev = r->t_next = NULL;
    r->has_timer = false;
}

static void timer_add(struct http_pool *p, struct req *r)
{
    if (r->deadline_ms == 0) {
        return;
    }
    struct req *after = p->timers_tail;
    while (after && after->deadline_ms > r->deadline_ms) {
        after = after->t_prev;
    }
    r->t_prev = after;
    r->t_next = after ? after->t_next : p->timers_head;
    if (r->t_next) {
        r->t_next->t_prev = r;
    } else {
        p->timers_tail = r;
    }
    if (after) {
        after->t_next = r;
    } else {
        p->timers_head = r;
    }
    r->has_timer = true;
}

/* Ends r: the callback takes the answer (status > 0) or the error. */
static void native_complete(struct http_pool *p, struct req *r, int status, const char *error)
{
    timer_remove(p, r);
    struct http_result res;
    memset(&res, 0, sizeof res);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    res.elapsed_s =
        (double)(now.tv_sec - r->started.tv_sec) + (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
    if (status > 0) {
        res.status = status;
        res.body = buf_take(&r->resp_body, &res.body_len);
    } else {
        snprintf(res.error, sizeof res.error, "%s", error);
    }
    r->done(r->done_ctx, &res);
    native_recycle(p, r);
}

static void idle_push(struct http_pool *p, struct conn *c)
{
    struct host *h = c->host;
    c->state = CONN_IDLE;
    c->i_prev = NULL;
    c->i_next = h->idle;
    if (h->idle) {
        h->idle->i_prev = c;
    }
    h->idle = c;
    p->n_idle++;
}

static void idle_remove(struct http_pool *p, struct conn *c)
{
    if (c->i_prev) {
        c->i_prev->i_next = c->i_next;
    } else {
        c->host->idle = c->i_next;
    }
    if (c->i_next) {
        c->i_next->i_prev = c->i_prev;
    }
    c->i_prev = c->i_next = NULL;
    p->n_idle--;
}

/* Closes c (its request, if any, is the caller's to finish); the struct lives until the end of
 * the round, since later events of the same epoll_wait may name it. */
static void conn_close(struct http_pool *p, struct conn *c)
{
    if (c->state == CONN_DEAD) {
        return;
    }
    if (c->state == CONN_IDLE) {
        idle_remove(p, c);
    }
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = CONN_DEAD;
    if (c->req) {
        c->req->conn = NULL;
        c->req = NULL;
    }
    http1_response_release(&c->resp);
    if (c->a_prev) {
        c->a_prev->a_next = c->a_next;
    } else {
        p->conns = c->a_next;
    }
    if (c->a_next) {
        c->a_next->a_prev = c->a_prev;
    }
    c->a_prev = NULL;
    c->a_next = p->dead;
    p->dead = c;
    p->n_conns--;
}

static void serve_waiting(struct http_pool *p);
static void dispatch(struct http_pool *p, struct req *r);

/* Fails c's request with error and closes c; a freed slot may serve a waiting request. */
static void conn_fail(struct http_pool *p, struct conn *c, const char *error)
{
    struct req *r = c->req;
    conn_close(p, c);
    if (r) {
        native_complete(p, r, 0, error);
    }
    serve_waiting(p);
}

/* The connection broke before any byte of the answer: a reused connection the server had
 * closed while idle gets one retry on a fresh connection (a request that never reached the
 * server, or that the server dropped unanswered on closing, as curl does); its host's other
 * idle connections are likely stale too and are closed. */
static void conn_broken(struct http_pool *p, struct conn *c, const char *error)
{
    struct req *r = c->req;
    if (!r || !c->is_reused || r->n_retries > 0 || c->resp.has_any) {
        conn_fail(p, c, error);
        return;
    }
    struct host *h = c->host;
    conn_close(p, c);
    while (h->idle) {
        conn_close(p, h->idle);
    }
    r->n_retries++;
    r->out_off = 0;
    dispatch(p, r);
}

static void conn_write(struct http_pool *p, struct conn *c)
{
    struct req *r = c->req;
    while (r->out_off < r->out.len) {
        ssize_t n = send(c->fd, r->out.data + r->out_off, r->out.len - r->out_off, MSG_NOSIGNAL);
        if (n >= 0) {
            r->out_off += (size_t)n;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return; /* EPOLLOUT will come */
        } else {
            conn_broken(p, c, "connection reset");
            return;
        }
    }
}

static void conn_assign(struct http_pool *p, struct conn *c, struct req *r)
{
    c->req = r;
    r->conn = c;
    r->out_off = 0;
    c->state = CONN_BUSY;
    c->rx_len = 0;
    http1_response_init(&c->resp, r->is_head, &r->resp_body);
    conn_write(p, c);
}

/* Opens a connection to r's host for r. */
static void conn_open(struct http_pool *p, struct req *r)
{
    struct host *h = r->host;
    char detail[96];
    int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(detail, sizeof detail, "cannot connect: %s", strerror(errno));
        native_complete(p, r, 0, detail);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int rc = connect(fd, (struct sockaddr *)&h->addr, h->addr_len);
    if (rc != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        h->needs_resolve = true;
        if (e == ECONNREFUSED) {
            native_complete(p, r, 0, "connection refused");
        } else {
            snprintf(detail, sizeof detail, "cannot connect: %s", strerror(e));
            native_complete(p, r, 0, detail);
        }
        return;
    }
    struct conn *c = xcalloc(1, sizeof *c);
    c->fd = fd;
    c->host = h;
    c->state = CONN_CONNECTING;
    c->a_next = p->conns;
    if (p->conns) {
        p->conns->a_prev = c;
    }
    p->conns = c;
    p->n_conns++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        snprintf(detail, sizeof detail, "cannot connect: epoll: %s", strerror(errno));
        conn_close(p, c);
        native_complete(p, r, 0, detail);
        return;
    }
    c->req = r;
    r->conn = c;
    if (rc == 0) {
        conn_assign(p, c, r);
    }
}

/* Closes one idle connection of any host to make room; false when there is none. */
static bool close_any_idle(struct http_pool *p)
{
    for (struct host *h = p->hosts; h; h = h->next) {
        if (h->idle) {
            conn_close(p, h->idle);
            return true;
        }
    }
    return false;
}

static void dispatch(struct http_pool *p, struct req *r)
{
    struct host *h = r->host;
    if (h->idle) {
        struct conn *c = h->idle;
        idle_remove(p, c);
        conn_assign(p, c, r);
        return;
    }
    if (p->n_conns >= p->max_connections && !close_any_idle(p)) {
        r->next = NULL;
        if (h->wait_tail) {
            h->wait_tail->next = r;
        } else {
            h->wait_head = r;
        }
        h->wait_tail = r;
        p->n_waiting++;
        return;
    }
    conn_open(p, r);
}

static struct req *wait_pop(struct http_pool *p, struct host *h)
{
    struct req *r = h->wait_head;
    if (r) {
        h->wait_head = r->next;
        if (!h->wait_head) {
            h->wait_tail = NULL;
        }
        r->next = NULL;
        p->n_waiting--;
    }
    return r;
}

/* Opens connections for waiting requests while there is room. */
static void serve_waiting(struct http_pool *p)
{
    while (p->n_waiting > 0 && (p->n_conns < p->max_connections || close_any_idle(p))) {
        struct host *h = p->hosts;
        while (h && !h->wait_head) {
            h = h->next;
        }
        if (!h) {
            break;
        }
        conn_open(p, wait_pop(p, h));
    }
}

/* The answer on c is complete. */
static void conn_done(struct http_pool *p, struct conn *c)
{
    struct req *r = c->req;
    int status = c->resp.status;
    char *retry_after = c->resp.retry_after;
    c->resp.retry_after = NULL;
    bool is_reusable = c->resp.is_keep_alive && c->rx_len == 0 && !c->is_peer_closed;
    c->req = NULL;
    r->conn = NULL;
    if (!is_reusable) {
        conn_close(p, c);
        serve_waiting(p);
    } else {
        c->is_reused = true;
        struct req *next = wait_pop(p, c->host);
        if (next) {
            conn_assign(p, c, next);
        } else if (p->n_waiting > 0) {
            conn_close(p, c); /* another host waits for the slot */
            serve_waiting(p);
        } else {
            idle_push(p, c);
        }
    }
    /* The callback last: by now the connection serves its next request. */
    timer_remove(p, r);
    struct http_result res;
    memset(&res, 0, sizeof res);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    res.elapsed_s =
        (double)(now.tv_sec - r->started.tv_sec) + (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
    res.status = status;
    res.body = buf_take(&r->resp_body, &res.body_len);
    res.retry_after = retry_after;
    r->done(r->done_ctx, &res);
    native_recycle(p, r);
}

/* is_hup: epoll reported the peer's close (or an error), which a short read does not show:
 * read on until recv() says 0 or EAGAIN. */
static void conn_read(struct http_pool *p, struct conn *c, bool is_hup)
{
    c->is_peer_closed = is_hup;
    for (;;) {
        size_t space = sizeof c->rx - c->rx_len;
        if (space == 0) {
            conn_fail(p, c, "response too large"); /* one header line over NATIVE_RX_BYTES */
            return;
        }
        ssize_t n = recv(c->fd, c->rx + c->rx_len, space, 0);
        if (n > 0) {
            c->rx_len += (size_t)n;
            size_t used = 0;
            int rc = http1_response_parse(&c->resp, c->rx, c->rx_len, &used);
            c->rx_len -= used;
            if (c->rx_len > 0 && used > 0) {
                memmove(c->rx, c->rx + used, c->rx_len);
            }
            if (rc == HTTP1_DONE) {
                conn_done(p, c);
                return;
            }
            if (rc == HTTP1_ETOOBIG) {
                conn_fail(p, c, "response too large");
                return;
            }
            if (rc == HTTP1_EBAD) {
                conn_fail(p, c, "bad response");
                return;
            }
            if ((size_t)n < space && !is_hup) {
                return; /* drained: edge-triggered epoll reports the next bytes */
            }
        } else if (n == 0) {
            if (http1_response_eof(&c->resp) == HTTP1_DONE) {
                c->resp.is_keep_alive = false;
                conn_done(p, c);
            } else if (c->resp.has_any) {
                conn_fail(p, c, "connection reset");
            } else {
                conn_broken(p, c, "empty reply");
            }
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else {
            conn_broken(p, c, "connection reset");
            return;
        }
    }
}

static void conn_event(struct http_pool *p, struct conn *c, uint32_t events)
{
    if (c->state == CONN_DEAD) {
        return;
    }
    if (c->state == CONN_IDLE) {
        /* An idle connection has nothing to say: the server closed it (or misbehaves). */
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            conn_close(p, c);
            serve_waiting(p);
        }
        return;
    }
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
            err = errno;
        }
        if (err == 0 && !(events & (EPOLLERR | EPOLLHUP)) && (events & EPOLLOUT)) {
            conn_assign(p, c, c->req);
            return;
        }
        if (err == 0 && !(events & (EPOLLERR | EPOLLHUP))) {
            return;
        }
        char detail[96];
        c->host->needs_resolve = true;
        if (err == ECONNREFUSED || err == 0) {
            conn_fail(p, c, "connection refused");
        } else {
            snprintf(detail, sizeof detail, "cannot connect: %s", strerror(err));
            conn_fail(p, c, detail);
        }
        return;
    }
    /* CONN_BUSY */
    if ((events & EPOLLOUT) && c->req->out_off < c->req->out.len) {
        conn_write(p, c);
        if (c->state != CONN_BUSY) {
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        conn_read(p, c, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
    }
}

/* Resolves name:port into h's address; -1 when it does not resolve. */
static int host_resolve(struct host *h, const char *name, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(name, port, &hints, &res) != 0 || !res) {
        return -1;
    }
    /* IPv4 first: "localhost" may list ::1 first while the server listens on 127.0.0.1 only. */
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    memcpy(&h->addr, pick->ai_addr, pick->ai_addrlen);
    h->addr_len = (socklen_t)pick->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Finds (or resolves and adds) the host of r; NULL when the name does not resolve. A host whose
 * last connect failed is resolved again (keeping the old address if that fails). */
static struct host *host_get(struct http_pool *p, struct req *r)
{
    for (struct host *h = p->hosts; h; h = h->next) {
        if (strcmp(h->port, r->port) == 0 && strcmp(h->name, r->name) == 0) {
            if (h->needs_resolve) {
                h->needs_resolve = false;
                host_resolve(h, r->name, r->port);
            }
            return h;
        }
    }
    struct host *h = xcalloc(1, sizeof *h);
    if (host_resolve(h, r->name, r->port) != 0) {
        free(h);
        return NULL;
    }
    snprintf(h->name, sizeof h->name, "%s", r->name);
    snprintf(h->port, sizeof h->port, "%s", r->port);
    h->next = p->hosts;
    p->hosts = h;
    return h;
}

static void expire_timers(struct http_pool *p)
{
    if (!p->timers_head) {
        return;
    }
    int64_t now = now_ms();
    while (p->timers_head && p->timers_head->deadline_ms <= now) {
        struct req *r = p->timers_head;
        timer_remove(p, r);
        if (r->conn) {
            conn_close(p, r->conn); /* half an answer: the connection cannot be reused */
            native_complete(p, r, 0, "timeout");
            serve_waiting(p);
            continue;
        }
        /* Waiting for a connection: unlink it from its host's queue. */
        struct host *h = r->host;
        struct req *prev = NULL;
        for (struct req *w = h->wait_head; w; prev = w, w = w->next) {
            if (w != r) {
                continue;
            }
            if (prev) {
                prev->next = w->next;
            } else {
                h->wait_head = w->next;
            }
            if (h->wait_tail == w) {
                h->wait_tail = prev;
            }
            p->n_waiting--;
            break;
        }
        r->next = NULL;
        native_complete(p, r, 0, "timeout");
    }
}

static int next_timeout_ms(struct http_pool *p)
{
    if (!p->timers_head) {
        return -1;
    }
    int64_t left = p->timers_head->deadline_ms - now_ms();
    if (left <= 0) {
        return 0;
    }
    return left > 60000 ? 60000 : (int)left;
}

static void start_req(struct http_pool *p, struct req *r)
{
    r->host = host_get(p, r);
    if (!r->host) {
        native_complete(p, r, 0, "cannot resolve host");
        return;
    }
    timer_add(p, r);
    dispatch(p, r);
}

static void native_shutdown(struct http_pool *p)
{
    while (p->conns) {
        struct conn *c = p->conns;
        struct req *r = c->req;
        conn_close(p, c);
        if (r) {
            native_complete(p, r, 0, "shutdown");
        }
    }
    for (struct host *h = p->hosts; h; h = h->next) {
        struct req *r;
        while ((r = wait_pop(p, h)) != NULL) {
            native_complete(p, r, 0, "shutdown");
        }
    }
}

static void free_dead(struct http_pool *p)
{
    while (p->dead) {
        struct conn *c = p->dead;
        p->dead = c->a_next;
        free(c);
    }
}

static void *native_main(void *arg)
{
    struct http_pool *p = arg;
    struct epoll_event evs[NATIVE_MAX_EVENTS];
    for (;;) {
        pthread_mutex_lock(&p->lock);
        struct req *batch = p->queue_head;
        p->queue_head = p->queue_tail = NULL;
        bool is_stopping = p->is_stopping;
        pthread_mutex_unlock(&p->lock);
        while (batch) {
            struct req *r = batch;
            batch = r->next;
            r->next = NULL;
            if (is_stopping) {
                native_complete(p, r, 0, "shutdown");
            } else {
                start_req(p, r);
            }
        }
        if (is_stopping) {
            break;
        }
        free_dead(p);
        int n = epoll_wait(p->epfd, evs, NATIVE_MAX_EVENTS, next_timeout_ms(p));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                wake_drain(&p->wake); /* the queue is taken at the top of the loop */
                continue;
            }
            conn_event(p, evs[i].data.ptr, evs[i].events);
        }
        expire_timers(p);
    }
    native_shutdown(p);
    free_dead(p);
    return NULL;
}

struct http_pool *http_pool_new(unsigned max_total_connections)
{
    struct http_pool *p = xcalloc(1, sizeof *p);
    p->max_connections = max_total_connections ? max_total_connections : 64;
    pthread_mutex_init(&p->lock, NULL);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0 || wake_init(&p->wake) != 0) {
        log_error("http pool: cannot create its epoll or eventfd: %s", strerror(errno));
        abort();
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, wake_fd(&p->wake), &ev) != 0) {
        log_error("http pool: epoll_ctl: %s", strerror(errno));
        abort();
    }
    int rc = pthread_create(&p->thread, NULL, native_main, p);
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
    struct curl_pool *curl = p->curl;
    pthread_mutex_unlock(&p->lock);
    wake_signal(&p->wake);
    pthread_join(p->thread, NULL);
    while (p->queue_head) {
        struct req *r = p->queue_head;
        p->queue_head = r->next;
        native_complete(p, r, 0, "shutdown");
    }
    hc_curl_pool_free(curl);
    while (p->free_list) {
        struct req *r = p->free_list;
        p->free_list = r->next;
        req_free(r);
    }
    while (p->hosts) {
        struct host *h = p->hosts;
        p->hosts = h->next;
        free(h);
    }
    close(p->epfd);
    wake_close(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Splits a plain "http://host[:port][/path][?query]" URL; false for anything else (https,
 * user info, odd bytes), which goes to curl. */
static bool url_split(const char *url, char *name, size_t name_size, char *port, size_t port_size,
                      const char **authority, size_t *authority_len, const char **path)
{
    if (strncasecmp(url, "http://", 7) != 0) {
        return false;
    }
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || memchr(a, '@', alen)) {
        return false;
    }
    const char *name_start = a;
    size_t name_len;
    const char *port_start = NULL;
    if (a[0] == '[') {
        const char *close_br = memchr(a, ']', alen);
        if (!close_br) {
            return false;
        }
        name_start = a + 1;
        name_len = (size_t)(close_br - name_start);
        if (close_br + 1 < a + alen) {
            if (close_br[1] != ':') {
                return false;
            }
            port_start = close_br + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        name_len = colon ? (size_t)(colon - a) : alen;
        port_start = colon ? colon + 1 : NULL;
    }
    if (name_len == 0 || name_len >= name_size) {
        return false;
    }
    memcpy(name, name_start, name_len);
    name[name_len] = '\0';
    if (port_start) {
        size_t plen = (size_t)(a + alen - port_start);
        if (plen == 0 || plen >= port_size || strspn(port_start, "0123456789") < plen) {
            return false;
        }
        memcpy(port, port_start, plen);
        port[plen] = '\0';
        long n = strtol(port, NULL, 10);
        if (n < 1 || n > 65535) {
            return false;
        }
    } else {
        snprintf(port, port_size, "80");
    }
    for (const char *s = a + alen; *s && *s != '#'; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f) {
            return false;
        }
    }
    *authority = a;
    *authority_len = alen;
    *path = a + alen;
    return true;
}

static bool is_header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* Appends "name: value\r\n"; -1 (nothing appended) when either holds CR or LF, which would let
 * it smuggle in headers of its own. One pass over each, one reserve for the line (this runs for
 * every header of every delivery). */
static int append_header(struct buf *o, const char *name, const char *value)
{
    size_t name_len = strcspn(name, "\r\n");
    size_t value_len = strcspn(value, "\r\n");
    if (name[name_len] != '\0' || value[value_len] != '\0' ||
        buf_reserve(o, name_len + value_len + 4) != 0) {
        return -1;
    }
    char *at = o->data + o->len;
    memcpy(at, name, name_len);
    at += name_len;
    memcpy(at, ": ", 2);
    at += 2;
    memcpy(at, value, value_len);
    at += value_len;
    memcpy(at, "\r\n", 2);
    o->len += name_len + value_len + 4;
    o->data[o->len] = '\0';
    return 0;
}

/* Appends "Content-Length: N\r\n" without printf (this runs once per delivery). */
static int append_content_length(struct buf *o, size_t n)
{
    int rc = buf_append(o, "Content-Length: ", 16);
    rc |= buf_append_int(o, (long long)n);
    rc |= buf_append(o, "\r\n", 2);
    return rc;
}

/* Formats the request into r->out. -1 on bad arguments. */
static int format_request(struct req *r, const char *method, const char *authority,
                          size_t authority_len, const char *path,
                          const struct http_header_kv *headers, size_t n_headers, const char *body,
                          size_t body_len)
{
    struct buf *o = &r->out;
    size_t path_len = strcspn(path, "#");
    int rc = buf_reserve(o, 256 + path_len + body_len);
    rc |= buf_appends(o, method);
    rc |= buf_append(o, " ", 1);
    if (path_len == 0 || path[0] == '?') {
        rc |= buf_append(o, "/", 1);
    }
    rc |= buf_append(o, path, path_len);
    rc |= buf_append(o, " HTTP/1.1\r\n", 11);
    bool has_host = false;
    for (size_t i = 0; i < n_headers; i++) {
        const char *name = headers[i].name;
        if (!name[0]) {
            return -1;
        }
        /* The framing headers are ours. */
        if ((name[0] == 'c' || name[0] == 'C') && strcasecmp(name, "content-length") == 0) {
            continue;
        }
        if ((name[0] == 't' || name[0] == 'T') && strcasecmp(name, "transfer-encoding") == 0) {
            continue;
        }
        has_host |= (name[0] == 'h' || name[0] == 'H') && strcasecmp(name, "host") == 0;
        if (append_header(o, name, headers[i].value) != 0) {
            return -1;
        }
    }
    if (!has_host) {
        rc |= buf_append(o, "Host: ", 6);
        rc |= buf_append(o, authority, authority_len);
        rc |= buf_append(o, "\r\n", 2);
    }
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        rc |= append_content_length(o, body ? body_len : 0);
    }
    rc |= buf_append(o, "\r\n", 2);
    if (body && body_len > 0) {
        rc |= buf_append(o, body, body_len);
    }
    return rc == 0 ? 0 : -1;
}

int http_pool_submit(struct http_pool *p, const char *method, const char *url,
                     const struct http_header_kv *headers, size_t n_headers, const char *body,
                     size_t body_len, long timeout_ms, size_t max_body_bytes,
                     http_pool_done_fn done, void *ctx)
{
    char name[NATIVE_NAME_MAX], port[8];
    const char *authority = NULL, *path = NULL;
    size_t authority_len = 0;
    if (!url_split(url, name, sizeof name, port, sizeof port, &authority, &authority_len, &path)) {
        pthread_mutex_lock(&p->lock);
        if (p->is_stopping) {
            pthread_mutex_unlock(&p->lock);
            return -1;
        }
        if (!p->curl) {
            p->curl = hc_curl_pool_new(p->max_connections);
        }
        struct curl_pool *curl = p->curl;
        pthread_mutex_unlock(&p->lock);
        return hc_curl_pool_submit(curl, method, url, headers, n_headers, body, body_len,
                                   timeout_ms, max_body_bytes, done, ctx);
    }
    if (!is_header_safe(method) || strpbrk(method, " \t") || !method[0]) {
        return -1;
    }
    pthread_mutex_lock(&p->lock);
    if (p->is_stopping) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    struct req *r = p->free_list;
    if (r) {
        p->free_list = r->next;
        p->n_free--;
    }
    pthread_mutex_unlock(&p->lock);
    if (r) {
        buf_reset(&r->out);
    } else {
        r = xcalloc(1, sizeof *r);
        buf_init(&r->out, 0);
    }
    r->next = NULL;
    if (format_request(r, method, authority, authority_len, path, headers, n_headers, body,
                       body_len) != 0) {
        native_recycle(p, r);
        return -1;
    }
    r->out_off = 0;
    r->is_head = strcmp(method, "HEAD") == 0;
    r->n_retries = 0;
    memcpy(r->name, name, sizeof name);
    memcpy(r->port, port, sizeof port);
    r->max_body_bytes = max_body_bytes;
    buf_init(&r->resp_body, max_body_bytes);
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    r->deadline_ms = timeout_ms > 0 ? (int64_t)r->started.tv_sec * 1000 +
                                          r->started.tv_nsec / 1000000 + timeout_ms
                                    : 0;
    r->done = done;
    r->done_ctx = ctx;
    r->host = NULL;
    r->conn = NULL;
    r->has_timer = false;
    r->t_prev = r->t_next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->is_stopping) {
        pthread_mutex_unlock(&p->lock);
        native_recycle(p, r);
        return -1;
    }
    if (p->queue_tail) {
        p->queue_tail->next = r;
    } else {
        p->queue_head = r;
    }
    p->queue_tail = r;
    pthread_mutex_unlock(&p->lock);
    /* The pool thread takes the whole queue after each wake-up, and a wake-up still pending
     * costs no syscall: one write and one context switch per batch, not per request. */
    wake_signal(&p->wake);
    return 0;
}
