/* http_loop.c - the server's connection loops (see http_server_int.h for the whole picture).
 *
 * One thread per loop, one epoll set each, level-triggered. A connection goes through:
 *
 *   HEAD     waiting for a request head: head_timeout_s from accept for the first request (and
 *            from the first byte of a later one), timeout_s idle between requests
 *   BODY     the head is in, the body coming (Content-Length or chunked): body_timeout_s
 *   HANDLER  the handler has the request: no deadline (the handler answers)
 *   WRITE    an answer did not fit in the socket's buffer: waiting for EPOLLOUT, timeout_s
 *   LINGER   closing after an answer that ends the connection (errors, 413, refusals): our side
 *            is shut, what the client still sends is read and dropped so that its unread bytes
 *            do not turn our close into a reset that destroys the answer (RFC 9112 section
 *            9.6), HTTP_LINGER_MS at most
 *
 * Reads go into one 64 KiB buffer per loop; only the bytes of an incomplete head (or those
 * pipelined behind a request in a handler) are kept per connection, so an idle connection costs
 * its struct and its socket, nothing more. A request costs a read and a write: an asynchronous
 * answer is written by its answering thread when nothing is queued behind it (http_server.c,
 * exchange_answer), else by the loop after one wake-up shared by every answer of a sweep. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "http/http_server_int.h"
#include "log.h"
#include "metrics.h"

#define HTTP_READ_BYTES (64 * 1024)
/* Bytes kept per connection beyond a head: pipelined requests behind one in a handler. Past it
 * the loop stops reading the connection until the answer is sent. */
#define HTTP_CONN_BUFFER_BYTES (HTTP_MAX_HEAD_BYTES + 64 * 1024)
#define HTTP_SWEEP_MS 250
#define HTTP_EPOLL_EVENTS 256
#define HTTP_ACCEPTS_PER_EVENT 64
/* Time given to answers at shutdown to reach their clients. */
#define HTTP_SHUTDOWN_FLUSH_MS 1000
/* Reads of one connection per readiness before the loop turns to others. */
#define HTTP_READS_PER_EVENT 8

enum conn_state { CS_HEAD, CS_BODY, CS_HANDLER, CS_WRITE, CS_LINGER, CS_CLOSED };

struct http_conn {
    int fd;
    enum conn_state state;
    bool is_first;   /* no request answered on it yet */
    bool has_bytes;  /* a byte of the next request came */
    bool is_refused; /* over a cap: answered 503 when its head comes */
    enum refuse_reason refused;
    bool is_reading;        /* EPOLLIN registered */
    bool is_writing;        /* EPOLLOUT registered */
    bool is_peer_gone;      /* closed by the client while a handler held it: out of the epoll
                             * set, its socket open for the answering thread until the answer */
    int64_t deadline_ms;    /* the sooner of limit_ms and the stall timer; 0 = none */
    int64_t limit_ms;       /* the phase's deadline (head, body) */
    unsigned char addr[16]; /* client address, IPv4 mapped into IPv6 */
    struct buf in;          /* bytes read and not consumed */
    size_t scanned;         /* of in (or of the bytes being parsed): the head search's progress */
    struct buf out;         /* an answer's bytes not yet sent */
    size_t out_off;
    bool must_close; /* after out is sent */
    struct http_exchange *ex;
    uint64_t body_left; /* Content-Length bytes still to come */
    struct http_chunked chunked;
    struct http_conn *prev, *next; /* loop->conns */
};

struct http_loop {
    struct http_server *server;
    int epfd;
    struct wake wake;
    bool has_thread;
    pthread_t thread;
    struct http_conn *conns; /* every open connection */
    struct http_conn *dead;  /* closed, waiting for their exchange's answer (singly linked) */
    /* Pushed by the answering threads (a compare-and-swap per answer): padded onto a cache
     * line of its own, away from the fields the loop reads on every event. */
    char pad_answered0[64];
    _Atomic(struct http_exchange *) answered;
    char pad_answered1[64];
    struct http_exchange *pending; /* exchanges held by handlers (loop thread only) */
    /* Connections accepted by a sibling for this loop (loop_accept balances them), pushed with a
     * compare-and-swap and taken at the next wake-up; n_conns counts them with the loop's own. */
    _Atomic(struct http_conn *) adopted;
    atomic_uint n_conns;
    int64_t next_sweep_ms;
    char *scratch;
    bool is_listening;
    int64_t accept_paused_until_ms;
    /* Shutdown, set by http_loops_stop before it wakes the loop: */
    atomic_bool must_stop;
    int64_t grace_until_ms;
    bool must_take;   /* loop thread: answers to take back before the next wait */
    bool is_stopping; /* loop thread: new asynchronous answers are forced at once */
    bool is_forced;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a vDSO read */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sets the deadline of a phase that must end by limit_ms and must not stall (no byte for
 * timeout_s) on its way. Called at the phase's start and at every read in it. */
static void conn_progress(const struct http_server *s, struct http_conn *c, int64_t now)
{
    int64_t stall = now + (int64_t)s->opts.timeout_s * 1000;
    c->deadline_ms = stall < c->limit_ms ? stall : c->limit_ms;
}

/* ---- per-client counts ---- */

static size_t client_bucket(const unsigned char addr[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < 16; i++) {
        h = (h ^ addr[i]) * 16777619u;
    }
    return h % HTTP_CLIENT_BUCKETS;
}

static unsigned client_add(struct client_table *t, const unsigned char addr[16])
{
    size_t b = client_bucket(addr);
    pthread_mutex_lock(&t->lock);
    struct client_count *c = t->buckets[b];
    while (c && memcmp(c->addr, addr, 16) != 0) {
        c = c->next;
    }
    if (!c) {
        c = xcalloc(1, sizeof *c);
        memcpy(c->addr, addr, 16);
        c->next = t->buckets[b];
        t->buckets[b] = c;
    }
    unsigned n = ++c->n;
    pthread_mutex_unlock(&t->lock);
    return n;
}

static void client_remove(struct client_table *t, const unsigned char addr[16])
{
    size_t b = client_bucket(addr);
    pthread_mutex_lock(&t->lock);
    struct client_count **pc = &t->buckets[b];
    while (*pc && memcmp((*pc)->addr, addr, 16) != 0) {
        pc = &(*pc)->next;
    }
    if (*pc && --(*pc)->n == 0) {
        struct client_count *gone = *pc;
        *pc = gone->next;
        free(gone);
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- epoll interest ---- */

static void conn_interest(struct http_loop *l, struct http_conn *c, bool is_reading,
                          bool is_writing)
{
    if (c->fd < 0 || c->is_peer_gone ||
        (c->is_reading == is_reading && c->is_writing == is_writing)) {
        return;
    }
    struct epoll_event ev = {.events = (is_reading ? EPOLLIN : 0) | (is_writing ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        log_warn("http: epoll_ctl: %s", strerror(errno));
    }
    c->is_reading = is_reading;
    c->is_writing = is_writing;
}

/* ---- closing ---- */

static void pending_remove(struct http_loop *l, struct http_exchange *ex)
{
    if (ex->prev) {
        ex->prev->next = ex->next;
    } else if (l->pending == ex) {
        l->pending = ex->next;
    }
    if (ex->next) {
        ex->next->prev = ex->prev;
    }
    ex->prev = ex->next = NULL;
}

static void conn_free(struct http_conn *c)
{
    buf_release(&c->in);
    buf_release(&c->out);
    free(c);
}

/* Closes the socket and leaves the caps. The struct goes on the dead list: freed at the end of
 * the loop's pass (loop_reap), or, when a handler holds its exchange, once the answer comes back
 * (it is dropped). Callers may still look at c->state (CS_CLOSED) after this. */
static void conn_close(struct http_loop *l, struct http_conn *c)
{
    if (c->state == CS_CLOSED) {
        return;
    }
    struct http_server *s = l->server;
    close(c->fd); /* leaves the epoll set with it */
    c->fd = -1;
    enum conn_state was = c->state;
    c->state = CS_CLOSED;
    c->deadline_ms = 0;
    metric_add(s->connections_open, -1);
    client_remove(&s->clients, c->addr);
    atomic_fetch_sub(&s->n_open, 1);
    atomic_fetch_sub_explicit(&l->n_conns, 1, memory_order_relaxed);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        l->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = NULL;
    if (c->ex && was != CS_HANDLER) {
        http_exchange_done(c->ex);
        c->ex = NULL;
    }
    c->next = l->dead;
    l->dead = c;
}

/* Frees the closed connections whose exchange is not held by a handler. */
static void loop_reap(struct http_loop *l)
{
    struct http_conn **pc = &l->dead;
    while (*pc) {
        struct http_conn *c = *pc;
        if (c->ex) {
            pc = &c->next;
            continue;
        }
        *pc = c->next;
        conn_free(c);
    }
}

static void conn_linger(struct http_loop *l, struct http_conn *c)
{
    (void)shutdown(c->fd, SHUT_WR);
    c->state = CS_LINGER;
    c->deadline_ms = now_ms() + HTTP_LINGER_MS;
    buf_release(&c->in);
    conn_interest(l, c, true, false);
}

/* ---- sending ---- */

static void conn_wait_head(struct http_loop *l, struct http_conn *c)
{
    struct http_server *s = l->server;
    c->state = CS_HEAD;
    c->is_first = false;
    c->has_bytes = c->in.len > 0;
    c->scanned = 0;
    int64_t now = now_ms();
    if (c->has_bytes) {
        c->limit_ms = now + (int64_t)s->opts.head_timeout_s * 1000;
        conn_progress(s, c, now);
    } else {
        c->deadline_ms = now + (int64_t)s->opts.timeout_s * 1000;
    }
}

/* Sends bytes of an answer; what the socket does not take waits in c->out for EPOLLOUT. Returns
 * false when the connection was closed. */
static bool conn_send(struct http_loop *l, struct http_conn *c, const char *data, size_t len,
                      bool must_close)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            buf_reset(&c->out);
            buf_append(&c->out, data + off, len - off);
            c->out_off = 0;
            c->must_close = must_close;
            c->state = CS_WRITE;
            c->deadline_ms = now_ms() + (int64_t)l->server->opts.timeout_s * 1000;
            conn_interest(l, c, c->in.len < HTTP_CONN_BUFFER_BYTES, true);
            return true;
        }
        conn_close(l, c); /* the client is gone */
        return false;
    }
    if (must_close) {
        conn_linger(l, c);
    } else {
        conn_wait_head(l, c);
    }
    return true;
}

/* Sends the exchange's answer and finishes the exchange. Returns false when the connection was
 * closed. */
static bool conn_answer(struct http_loop *l, struct http_conn *c, struct http_exchange *ex)
{
    c->ex = NULL;
    struct buf resp = ex->resp; /* answered: only the loop touches resp from now on */
    size_t off = ex->resp_off;
    memset(&ex->resp, 0, sizeof ex->resp);
    bool must_close = ex->is_close || l->is_stopping;
    http_exchange_done(ex);
    if (c->is_peer_gone) {
        buf_release(&resp);
        conn_close(l, c);
        return false;
    }
    bool is_open = conn_send(l, c, resp.data ? resp.data + off : "", resp.len - off, must_close);
    buf_release(&resp);
    return is_open;
}

/* An answer to a request whose head could not be parsed (or a refused connection's): no route,
 * counted under unmatched. */
static void conn_refuse(struct http_loop *l, struct http_conn *c, unsigned status, const char *code,
                        const char *message)
{
    struct buf out;
    buf_init(&out, 0);
    http_response_error(&out, status, code, message);
    metric_inc(l->server->unmatched.requests[status / 100 - 1]);
    conn_send(l, c, out.data, out.len, true);
    buf_release(&out);
}

/* ---- requests ---- */

/* Bytes came behind a request whose handler holds it: its answer must now go through the loop
 * (which sends it, then works through them). When it was sent directly already and is on the
 * answered stack, the loop takes it back before it waits again; while the answering thread is
 * still sending it (outside the lock), that thread sees may_send_direct cleared when it pushes
 * the exchange and wakes the loop. (This is the common case under load, not a rare one: the
 * client's next request can arrive as soon as the answer left.) */
static void conn_parked_input(struct http_loop *l, struct http_conn *c)
{
    if (c->state != CS_HANDLER || !c->ex || c->in.len == 0) {
        return;
    }
    struct http_exchange *ex = c->ex;
    pthread_mutex_lock(&ex->lock);
    ex->may_send_direct = false;
    bool is_pushed = ex->is_answered && !ex->is_sending;
    pthread_mutex_unlock(&ex->lock);
    if (is_pushed) {
        l->must_take = true;
    }
}

/* The client closed a connection whose request a handler holds: the socket stays open (the
 * answering thread may be writing to it) but leaves the epoll set; closed with the answer. */
static void conn_peer_gone(struct http_loop *l, struct http_conn *c)
{
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->is_peer_gone = true;
    c->is_reading = c->is_writing = false;
}

static int body_sink(void *arg, const char *p, size_t n)
{
    return http_exchange_body(arg, p, n);
}

/* The whole request is in: runs the handler; sends its answer when there is one. */
static void conn_run(struct http_loop *l, struct http_conn *c)
{
    struct http_exchange *ex = c->ex;
    c->state = CS_HANDLER;
    c->deadline_ms = 0;
    ex->fd = c->fd;
    ex->may_send_direct = true; /* until bytes behind the request show up (conn_parked_input) */
    if (http_exchange_run(ex, l->is_stopping)) {
        conn_answer(l, c, ex);
        return;
    }
    ex->next = l->pending;
    if (l->pending) {
        l->pending->prev = ex;
    }
    l->pending = ex;
}

static void conn_too_big(struct http_loop *l, struct http_conn *c)
{
    struct http_exchange *ex = c->ex;
    char msg[128];
    snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.",
             ex->route->max_body_bytes);
    ex->is_close = true;
    http_exchange_error(ex, 413, "too_large", msg);
    conn_answer(l, c, ex);
}

/* A head is in: data[0..len) holds it. */
static void conn_begin(struct http_loop *l, struct http_conn *c, const char *data, size_t len)
{
    struct http_server *s = l->server;
    struct http_exchange *ex = http_exchange_new(s, l, c, data, len);
    c->ex = ex;
    struct http_refusal refusal;
    if (http_request_parse(&ex->req, ex->head, len, ex->fields, &refusal) != 0) {
        ex->is_close = true;
        http_exchange_error(ex, refusal.status, refusal.code, refusal.message);
        conn_answer(l, c, ex);
        return;
    }
    ex->is_close = !ex->req.is_keep_alive;
    if (c->is_refused) {
        bool is_global = c->refused == REFUSE_MAX_CONNECTIONS;
        ex->is_close = true;
        http_add_header(ex, "Retry-After", "1");
        http_exchange_error(ex, 503, "too_many_connections",
                            is_global ? "The server has as many connections open as it takes; "
                                        "retry later."
                                      : "This client address has as many connections open as "
                                        "the server takes from one; reuse them or retry later.");
        conn_answer(l, c, ex);
        return;
    }
    bool has_body = ex->req.is_chunked || (ex->req.has_length && ex->req.content_length > 0);
    if (!http_exchange_begin(ex)) {
        /* Answered before the body: keep the connection only when there is no body to skip. */
        if (has_body) {
            ex->is_close = true;
        }
        /* The answer was built with the old is_close: rebuild is not needed when it stays. */
        conn_answer(l, c, ex);
        return;
    }
    c->state = CS_BODY;
    int64_t now = now_ms();
    c->limit_ms = now + (int64_t)s->opts.body_timeout_s * 1000;
    conn_progress(s, c, now);
    c->body_left = ex->req.has_length ? ex->req.content_length : 0;
    memset(&c->chunked, 0, sizeof c->chunked);
    if (!has_body) {
        conn_run(l, c);
    }
}

/* Sends 100 Continue when the client waits for it (RFC 9110 section 10.1.1) and the body has not
 * started coming. */
static void conn_continue(struct http_conn *c, size_t buffered)
{
    if (c->ex->req.expects_continue && buffered == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)!send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL);
    }
}

/* Consumes data[0..len) as far as the connection's state allows; returns the bytes taken (the
 * rest is kept for later). The connection may be closed on return (c->state == CS_CLOSED). */
static size_t conn_consume(struct http_loop *l, struct http_conn *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->state != CS_CLOSED) {
        if (c->state == CS_HEAD) {
            if (!c->has_bytes) {
                c->has_bytes = true;
                if (!c->is_refused) {
                    int64_t now = now_ms();
                    if (!c->is_first) {
                        c->limit_ms = now + (int64_t)l->server->opts.head_timeout_s * 1000;
                    }
                    conn_progress(l->server, c, now);
                }
            }
            struct http_refusal refusal;
            long end = http_request_head_end(data + off, len - off, &c->scanned, &refusal);
            if (end == 0) {
                return off;
            }
            if (end < 0) {
                conn_refuse(l, c, refusal.status, refusal.code, refusal.message);
                return len;
            }
            const char *head = data + off;
            off += (size_t)end;
            c->scanned = 0;
            conn_begin(l, c, head, (size_t)end);
            if (c->state == CS_BODY) {
                conn_continue(c, len - off);
            }
        } else if (c->state == CS_BODY) {
            struct http_exchange *ex = c->ex;
            if (!ex->req.is_chunked) {
                size_t n = len - off;
                if ((uint64_t)n > c->body_left) {
                    n = (size_t)c->body_left;
                }
                int rc = http_exchange_body(ex, data + off, n);
                off += n;
                c->body_left -= n;
                if (rc != 0) {
                    conn_too_big(l, c);
                    return len;
                }
                if (c->body_left == 0) {
                    conn_run(l, c);
                }
                continue;
            }
            size_t used = 0;
            int rc = http_chunked_decode(&c->chunked, data + off, len - off, &used, body_sink, ex);
            off += used;
            if (rc == HTTP_CHUNKED_EBAD) {
                ex->is_close = true;
                http_exchange_error(ex, 400, "bad_request", "The chunked body is malformed.");
                conn_answer(l, c, ex);
                return len;
            }
            if (rc == HTTP_CHUNKED_DONE) {
                conn_run(l, c);
            } else if (rc == HTTP_CHUNKED_STOP) {
                conn_too_big(l, c); /* the sink refused: past the cap */
                return len;
            }
        } else if (c->state == CS_LINGER) {
            return len;
        } else {
            return off; /* HANDLER, WRITE: kept until the answer is sent */
        }
    }
    return off;
}

/* Works through the bytes kept on the connection (after an answer went out). */
static void conn_resume_input(struct http_loop *l, struct http_conn *c)
{
    if (c->state != CS_HEAD || c->in.len == 0) {
        return;
    }
    size_t used = conn_consume(l, c, c->in.data, c->in.len);
    if (c->state == CS_CLOSED || c->state == CS_LINGER) {
        return;
    }
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    if (c->in.len == 0) {
        buf_release(&c->in); /* an idle connection holds no buffer */
    } else {
        c->in.data[c->in.len] = '\0';
        conn_parked_input(l, c);
    }
    if (c->state == CS_HEAD || c->state == CS_BODY) {
        conn_interest(l, c, true, false);
    }
}

static void conn_readable(struct http_loop *l, struct http_conn *c)
{
    for (int round = 0; round < HTTP_READS_PER_EVENT && c->state != CS_CLOSED; round++) {
        bool is_parked = c->state == CS_HANDLER || c->state == CS_WRITE;
        size_t room = HTTP_READ_BYTES;
        if (is_parked) {
            room = c->in.len < HTTP_CONN_BUFFER_BYTES ? HTTP_CONN_BUFFER_BYTES - c->in.len : 0;
            if (room == 0) {
                conn_interest(l, c, false, c->is_writing);
                return;
            }
            room = room < HTTP_READ_BYTES ? room : HTTP_READ_BYTES;
        }
        ssize_t n = recv(c->fd, l->scratch, room, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            if (c->state == CS_HANDLER) {
                conn_peer_gone(l, c);
            } else {
                conn_close(l, c);
            }
            return;
        }
        if (c->state == CS_LINGER) {
            continue;
        }
        if (!c->is_refused && (c->state == CS_BODY || (c->state == CS_HEAD && c->has_bytes))) {
            conn_progress(l->server, c, now_ms());
        }
        if (is_parked || c->in.len > 0) {
            if (c->in.max_len == 0) {
                buf_init(&c->in, HTTP_CONN_BUFFER_BYTES);
            }
            if (buf_append(&c->in, l->scratch, (size_t)n) != 0) {
                conn_refuse(l, c, 431, "headers_too_large", "The request head is too large.");
                return;
            }
            if (!is_parked) {
                conn_resume_input(l, c);
            }
        } else {
            size_t used = conn_consume(l, c, l->scratch, (size_t)n);
            if (used < (size_t)n && c->state != CS_CLOSED && c->state != CS_LINGER) {
                buf_init(&c->in, HTTP_CONN_BUFFER_BYTES);
                buf_append(&c->in, l->scratch + used, (size_t)n - used);
            }
        }
        conn_parked_input(l, c);
        if ((size_t)n < room) {
            return;
        }
    }
}

static void conn_writable(struct http_loop *l, struct http_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        conn_close(l, c);
        return;
    }
    buf_release(&c->out);
    c->out_off = 0;
    conn_interest(l, c, true, false);
    if (c->must_close) {
        conn_linger(l, c);
        return;
    }
    conn_wait_head(l, c);
    conn_resume_input(l, c);
}

/* ---- accepting ---- */

static void addr_key(const struct sockaddr_storage *ss, unsigned char out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
    }
}

/* The loop a new connection goes to: the one with the fewest, this one on a tie. The listening
 * socket wakes one loop per new connection (EPOLLEXCLUSIVE), often the same one for a whole burst
 * of connections: every one of 128 connections opened at once by a client could land on one
 * loop while the others idled. */
static struct http_loop *loop_least_busy(struct http_loop *l)
{
    struct http_server *s = l->server;
    struct http_loop *best = l;
    unsigned least = atomic_load_explicit(&l->n_conns, memory_order_relaxed);
    for (unsigned i = 0; i < s->n_loops && least > 0; i++) {
        unsigned n = atomic_load_explicit(&s->loops[i].n_conns, memory_order_relaxed);
        if (n < least) {
            least = n;
            best = &s->loops[i];
        }
    }
    return best;
}

/* Links a new connection into the loop and its epoll set (counted in n_conns already). */
static void conn_adopt(struct http_loop *l, struct http_conn *c)
{
    c->prev = NULL;
    c->next = l->conns;
    if (l->conns) {
        l->conns->prev = c;
    }
    l->conns = c;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        log_warn("http: epoll_ctl: %s", strerror(errno));
        conn_close(l, c);
    }
}

/* Counts a new connection against the caps; one over a cap is still accepted, to be answered
 * 503 when its head comes (closing it at once would look like a network fault to the client,
 * not accepting would look like a hang). */
static void loop_accept(struct http_loop *l)
{
    struct http_server *s = l->server;
    for (int i = 0; i < HTTP_ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage ss;
        socklen_t ss_len = sizeof ss;
        int fd =
            accept4(s->listen_fd, (struct sockaddr *)&ss, &ss_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of spinning. */
                log_warn("http: %s: cannot accept: %s", s->listen, strerror(errno));
                epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
                l->is_listening = false;
                l->accept_paused_until_ms = now_ms() + 100;
            }
            return;
        }
        int on = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        struct http_conn *c = xcalloc(1, sizeof *c);
        c->fd = fd;
        c->is_first = true;
        c->is_reading = true;
        addr_key(&ss, c->addr);
        metric_inc(s->connections_total);
        metric_add(s->connections_open, 1);
        unsigned open = atomic_fetch_add(&s->n_open, 1) + 1;
        unsigned of_client = client_add(&s->clients, c->addr);
        c->state = CS_HEAD;
        c->limit_ms = now_ms() + (int64_t)s->opts.head_timeout_s * 1000;
        c->deadline_ms = c->limit_ms;
        if (open > s->opts.max_connections || of_client > s->opts.max_connections_per_client) {
            c->is_refused = true;
            c->refused =
                open > s->opts.max_connections ? REFUSE_MAX_CONNECTIONS : REFUSE_MAX_PER_CLIENT;
            c->limit_ms = now_ms() + HTTP_LINGER_MS;
            c->deadline_ms = c->limit_ms;
            metric_inc(s->refused[c->refused]);
        }
        struct http_loop *to = loop_least_busy(l);
        atomic_fetch_add_explicit(&to->n_conns, 1, memory_order_relaxed);
        if (to == l) {
            conn_adopt(l, c);
        } else {
            c->next = atomic_load_explicit(&to->adopted, memory_order_relaxed);
            while (!atomic_compare_exchange_weak_explicit(
                &to->adopted, &c->next, c, memory_order_release, memory_order_relaxed)) {
            }
            wake_signal(&to->wake);
        }
    }
}

/* Takes the connections a sibling accepted for this loop. */
static void loop_adopt(struct http_loop *l)
{
    struct http_conn *c = atomic_exchange_explicit(&l->adopted, NULL, memory_order_acquire);
    while (c) {
        struct http_conn *next = c->next;
        conn_adopt(l, c);
        c = next;
    }
}

static void loop_listen(struct http_loop *l, bool is_on)
{
    struct http_server *s = l->server;
    if (is_on == l->is_listening) {
        return;
    }
    if (is_on) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &l->scratch};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0) {
            log_warn("http: epoll_ctl (listen): %s", strerror(errno));
            return;
        }
    } else {
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    }
    l->is_listening = is_on;
}

/* ---- answers from other threads ---- */

/* The loops to wake at the end of an http_defer_begin/end sweep on this thread. A fixed array: a
 * full one is flushed at once, so nothing is allocated. Each entry holds one n_waking count. */
#define HTTP_DEFER_MAX 64
static _Thread_local struct {
    unsigned depth;
    size_t n;
    struct http_loop *loops[HTTP_DEFER_MAX];
} deferred;

static void deferred_flush(void)
{
    for (size_t i = 0; i < deferred.n; i++) {
        struct http_server *s = deferred.loops[i]->server;
        wake_signal(&deferred.loops[i]->wake);
        atomic_fetch_sub(&s->n_waking, 1); /* the last touch of s */
    }
    deferred.n = 0;
}

void http_defer_begin(void)
{
    deferred.depth++;
}

void http_defer_end(void)
{
    if (deferred.depth > 0 && --deferred.depth == 0) {
        deferred_flush();
    }
}

/* Called under ex->lock, with n_waking already counted by the caller for this delivery: pushes
 * the exchange and arranges the wake-up. The exchange may be sent and freed by the loop as soon
 * as the lock is released. */
void http_loop_deliver(struct http_exchange *ex, bool must_wake)
{
    struct http_loop *l = ex->loop;
    struct http_server *s = l->server;
    ex->next_answered = atomic_load_explicit(&l->answered, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&l->answered, &ex->next_answered, ex,
                                                  memory_order_release, memory_order_relaxed)) {
    }
    if (!must_wake) {
        /* Sent already: the loop takes it back at its next wake-up, which the client's next
         * request on the connection is (the stack is looked at before the events). */
        atomic_fetch_sub(&s->n_waking, 1);
        return;
    }
    if (deferred.depth > 0) {
        for (size_t i = 0; i < deferred.n; i++) {
            if (deferred.loops[i] == l) {
                atomic_fetch_sub(&s->n_waking, 1);
                return;
            }
        }
        if (deferred.n == HTTP_DEFER_MAX) {
            deferred_flush();
        }
        deferred.loops[deferred.n++] = l;
        return;
    }
    wake_signal(&l->wake);
    atomic_fetch_sub(&s->n_waking, 1);
}

/* Sends the answers pushed by other threads, oldest first. */
static void loop_take_answers(struct http_loop *l)
{
    struct http_exchange *ex = atomic_exchange_explicit(&l->answered, NULL, memory_order_acquire);
    struct http_exchange *fifo = NULL;
    while (ex) {
        struct http_exchange *next = ex->next_answered;
        ex->next_answered = fifo;
        fifo = ex;
        ex = next;
    }
    while (fifo) {
        ex = fifo;
        fifo = ex->next_answered;
        pending_remove(l, ex);
        struct http_conn *c = ex->conn;
        if (c->state == CS_CLOSED) {
            /* The client went away meanwhile: drop the answer (loop_reap frees the connection). */
            c->ex = NULL;
            http_exchange_done(ex);
            continue;
        }
        if (conn_answer(l, c, ex)) {
            conn_resume_input(l, c);
            if (c->state == CS_HEAD) {
                conn_interest(l, c, true, c->is_writing);
            }
        }
    }
}

/* ---- deadlines ---- */

/* Closes the loop's connections past their deadline, without an answer (nginx's
 * client_header_timeout does the same: a client that slow is not waiting for one). */
static void loop_sweep(struct http_loop *l, int64_t now)
{
    struct http_server *s = l->server;
    struct http_conn *next = NULL;
    for (struct http_conn *c = l->conns; c; c = next) {
        next = c->next;
        if (c->deadline_ms == 0 || now < c->deadline_ms) {
            continue;
        }
        if (c->is_refused || c->state == CS_LINGER || c->state == CS_WRITE) {
            /* not a time-out of the client's request */
        } else if (c->state == CS_HEAD && (c->has_bytes || c->is_first)) {
            metric_inc(s->timed_out[TIMEOUT_HEAD]);
        } else if (c->state == CS_BODY) {
            metric_inc(s->timed_out[TIMEOUT_BODY]);
        } else if (c->state == CS_HEAD) {
            metric_inc(s->timed_out[TIMEOUT_IDLE]);
        }
        conn_close(l, c);
    }
    loop_reap(l);
    if (!l->is_listening && !l->is_stopping && now >= l->accept_paused_until_ms) {
        loop_listen(l, true);
    }
}

/* ---- the loop ---- */

/* At shutdown: the handlers' answers still pending are answered 503 by the server. */
static void loop_force(struct http_loop *l)
{
    struct http_exchange *next = NULL;
    for (struct http_exchange *ex = l->pending; ex; ex = next) {
        next = ex->next;
        if (!http_exchange_force(ex)) {
            continue; /* answered meanwhile: it is on the answered stack */
        }
        pending_remove(l, ex);
        struct http_conn *c = ex->conn;
        if (c->state == CS_CLOSED) {
            c->ex = NULL;
            http_exchange_done(ex);
            continue;
        }
        conn_answer(l, c, ex);
    }
    l->is_forced = true;
}

static bool loop_has_output(const struct http_loop *l)
{
    for (const struct http_conn *c = l->conns; c; c = c->next) {
        if (c->state == CS_WRITE) {
            return true;
        }
    }
    return false;
}

static void *loop_main(void *arg)
{
    struct http_loop *l = arg;
    struct epoll_event events[HTTP_EPOLL_EVENTS];
    int64_t flush_until_ms = 0;
    for (;;) {
        int64_t now = now_ms();
        if (atomic_load(&l->must_stop)) {
            if (!l->is_stopping) {
                /* Stop accepting; answers still to come get the grace time. */
                loop_listen(l, false);
                l->is_stopping = true;
            }
            if (!l->is_forced && (l->pending == NULL || now >= l->grace_until_ms)) {
                loop_force(l);
                flush_until_ms = now + HTTP_SHUTDOWN_FLUSH_MS;
            }
            if (l->is_forced && (!loop_has_output(l) || now >= flush_until_ms)) {
                break;
            }
        }
        int64_t wait_ms = l->next_sweep_ms > now ? l->next_sweep_ms - now : 0;
        if (l->is_stopping) {
            wait_ms = wait_ms < 20 ? wait_ms : 20;
        }
        if (l->must_take) {
            wait_ms = 0; /* conn_parked_input: an answer sent directly is on the stack */
            l->must_take = false;
        }
        int n = epoll_wait(l->epfd, events, HTTP_EPOLL_EVENTS, (int)wait_ms);
        /* Answers sent directly by their answering threads first: a connection's next request
         * must find it past its previous one. */
        loop_take_answers(l);
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &l->wake) {
                wake_drain(&l->wake);
                loop_adopt(l);
                loop_take_answers(l);
            } else if (p == &l->scratch) {
                loop_accept(l);
            } else {
                struct http_conn *c = p;
                if (c->state == CS_CLOSED) {
                    continue; /* closed earlier in this batch; still on the dead list */
                }
                if (events[i].events & EPOLLOUT) {
                    conn_writable(l, c);
                }
                if (c->state == CS_CLOSED) {
                    continue;
                }
                if (events[i].events & EPOLLIN) {
                    conn_readable(l, c);
                } else if (events[i].events & (EPOLLHUP | EPOLLERR)) {
                    /* not reading it (parked): the client is gone */
                    if (c->state == CS_HANDLER) {
                        conn_peer_gone(l, c);
                    } else {
                        conn_close(l, c);
                    }
                }
            }
        }
        loop_reap(l);
        now = now_ms();
        if (now >= l->next_sweep_ms) {
            loop_sweep(l, now);
            l->next_sweep_ms = now + HTTP_SWEEP_MS;
        }
    }
    return NULL;
}

/* Closes every connection of a stopped loop and frees what is left. */
static void loop_release(struct http_loop *l)
{
    /* Answers pushed after the loop's last look. */
    struct http_exchange *ex = atomic_exchange(&l->answered, NULL);
    while (ex) {
        struct http_exchange *next = ex->next_answered;
        pending_remove(l, ex);
        if (ex->conn) {
            ex->conn->ex = NULL;
        }
        http_exchange_done(ex);
        ex = next;
    }
    loop_adopt(l); /* handed over by a sibling after this loop's last look: closed below */
    while (l->conns) {
        struct http_conn *c = l->conns;
        if (c->ex && c->state == CS_HANDLER) {
            pending_remove(l, c->ex);
            http_exchange_done(c->ex); /* forced: the handler frees it when it answers */
            c->ex = NULL;
        }
        conn_close(l, c);
    }
    for (struct http_conn *c = l->dead; c; c = c->next) {
        if (c->ex) {
            pending_remove(l, c->ex);
            http_exchange_done(c->ex);
            c->ex = NULL;
        }
    }
    loop_reap(l);
    wake_close(&l->wake);
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    free(l->scratch);
}

int http_loops_start(struct http_server *s, char *err, size_t err_len)
{
    s->loops = xcalloc(s->opts.threads, sizeof *s->loops);
    for (unsigned i = 0; i < s->opts.threads; i++) {
        struct http_loop *l = &s->loops[i];
        l->server = s;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        l->wake.fd = -1;
        l->scratch = xmalloc(HTTP_READ_BYTES);
        s->n_loops++;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->wake};
        if (l->epfd < 0 || wake_init(&l->wake) != 0 ||
            epoll_ctl(l->epfd, EPOLL_CTL_ADD, wake_fd(&l->wake), &ev) != 0) {
            snprintf(err, err_len, "cannot create a polling loop: %s", strerror(errno));
            http_loops_stop(s, 0);
            return -1;
        }
        loop_listen(l, true);
        if (!l->is_listening) {
            snprintf(err, err_len, "cannot poll the listening socket: %s", strerror(errno));
            http_loops_stop(s, 0);
            return -1;
        }
        l->next_sweep_ms = now_ms() + HTTP_SWEEP_MS;
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        struct http_loop *l = &s->loops[i];
        int rc = pthread_create(&l->thread, NULL, loop_main, l);
        if (rc != 0) {
            snprintf(err, err_len, "cannot start a polling thread: %s", strerror(rc));
            http_loops_stop(s, 0);
            return -1;
        }
        l->has_thread = true;
        char name[16];
        snprintf(name, sizeof name, "http-%u", i);
        pthread_setname_np(l->thread, name);
    }
    return 0;
}

void http_loops_stop(struct http_server *s, unsigned grace_ms)
{
    for (unsigned i = 0; i < s->n_loops; i++) {
        struct http_loop *l = &s->loops[i];
        l->grace_until_ms = now_ms() + grace_ms;
        atomic_store(&l->must_stop, true);
        if (l->has_thread) {
            wake_signal(&l->wake);
        }
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        if (s->loops[i].has_thread) {
            pthread_join(s->loops[i].thread, NULL);
        }
    }
    /* A thread that pushed an answer may not have woken its loop yet. */
    while (atomic_load(&s->n_waking) > 0) {
        sched_yield();
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        loop_release(&s->loops[i]);
    }
    free(s->loops);
    s->loops = NULL;
    s->n_loops = 0;
}
