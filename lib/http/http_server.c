/* http_server.c - the HTTP server layer over libmicrohttpd (see http_server.h).
 *
 * Each polling thread runs a libmicrohttpd daemon of its own in external-epoll mode (struct
 * http_loop; why: at http_server_start). Each request gets one struct http_exchange, created
 * when its request line is in (URI log callback) and freed once both sides are done with it:
 * libmicrohttpd (request-completed notification) and the handler (its one http_respond*() call).
 * In between the exchange goes through these steps:
 *
 *   line     -> the target kept as received; the connection's head deadline starts
 *   headers  -> target and framing valid? (else 400/501) route found? Content-Length within the
 *               route's cap? (else 404/405/413 at once)
 *   body     -> accumulated into a capped buffer; past the cap the rest is discarded, then 413
 *   handler  -> runs on the polling thread; answers now, or later from any thread
 *   answer   -> queued on the polling thread (after MHD_resume_connection and a wake-up of
 *               the connection's loop when asynchronous)
 *
 * The race between a handler returning and another thread answering is settled under the
 * exchange's lock: whichever comes second queues the response (suspending the connection when the
 * handler returned first). The server keeps a list of suspended exchanges so that
 * http_server_free() can wait for them and answer the late ones 503.
 *
 * Each TCP connection has a struct http_conn (libmicrohttpd's socket context) with its phase and
 * deadline (head, body, idle) and its place in the connection caps; each loop sweeps its own
 * connections for deadlines (loop_sweep). Connections over a cap are answered 503.
 *
 * Lock order: loop->lock, then exchange->lock. http_respond*() takes only the exchange's lock,
 * so it may be called after the server is gone for an exchange the server already answered.
 * The per-client counts (server->clients) have a lock of their own, taken alone. */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"

#define HTTP_DEFAULT_THREADS 2
#define HTTP_MAX_THREADS 64
#define HTTP_DEFAULT_MAX_BODY_BYTES (1024 * 1024)
#define HTTP_DEFAULT_MAX_CONNECTIONS 16384
#define HTTP_DEFAULT_MAX_PER_CLIENT 1024
#define HTTP_DEFAULT_TIMEOUT_S 15
#define HTTP_DEFAULT_HEAD_TIMEOUT_S 10
#define HTTP_DEFAULT_BODY_TIMEOUT_S 30
/* Descriptors kept for everything else of the process when max_connections is fitted under
 * RLIMIT_NOFILE (log files, Kafka and database sockets, static files being served). */
#define HTTP_FD_RESERVE 256
/* A connection refused for a cap waits this long for its request head to answer it 503. */
#define HTTP_REFUSED_LINGER_MS 2000
/* How often each loop looks for connections past their deadline. */
#define HTTP_SWEEP_MS 250
/* Per-connection memory pool of libmicrohttpd: bounds the request line plus headers (larger
 * requests are answered 431 by libmicrohttpd itself) and the body chunk handed over per call. */
#define HTTP_CONNECTION_MEMORY_BYTES (16 * 1024)
#define HTTP_MAX_SEGMENTS 16
/* Time given to 503 answers forced at shutdown to reach the client before the daemon stops. */
#define HTTP_SHUTDOWN_FLUSH_MS 1000

/* The CSP of static files; connect-src gets the CORS origins appended (the pages call them). */
static const char HTTP_STATIC_CSP_HEAD[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'";
static const char HTTP_STATIC_CSP_TAIL[] = "; frame-ancestors 'none'; base-uri 'none'";
#define HTTP_MAX_CORS_ORIGINS 16
#define HTTP_MAX_ORIGIN_BYTES 256
/* How long a browser may reuse a preflight's answer. */
#define HTTP_CORS_MAX_AGE_S "600"

enum route_kind { ROUTE_HANDLER, ROUTE_STATIC, ROUTE_UNMATCHED };

/* Status classes counted by http_requests_total: 1xx .. 5xx. */
#define HTTP_STATUS_CLASSES 5

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

/* Where a connection is in its request cycle, for its deadline (struct http_conn). */
enum conn_phase {
    PHASE_WAIT,    /* for a request line: head_timeout_s from accept, timeout_s after a request */
    PHASE_HEAD,    /* request line in, headers coming: head_timeout_s */
    PHASE_BODY,    /* head in, body coming: body_timeout_s */
    PHASE_HANDLER, /* the handler has it: no deadline (the handler answers) */
    PHASE_REFUSED, /* over a cap: answered 503 when its head comes, closed after a short wait */
    PHASE_CLOSING, /* shut down by the server, libmicrohttpd closes it */
};

enum refuse_reason { REFUSE_MAX_CONNECTIONS, REFUSE_MAX_PER_CLIENT, REFUSE_COUNT };
enum timeout_kind { TIMEOUT_HEAD, TIMEOUT_BODY, TIMEOUT_IDLE, TIMEOUT_COUNT };

/* One TCP connection, from libmicrohttpd's connect notification to its close notification;
 * its socket context. Touched only by its loop's thread. */
struct http_conn {
    int fd;
    enum conn_phase phase;
    bool is_first;                 /* no request answered on it yet */
    enum refuse_reason refused;    /* when phase is PHASE_REFUSED */
    int64_t deadline_ms;           /* CLOCK_MONOTONIC ms; 0 = none */
    unsigned char addr[16];        /* client address, IPv4 mapped into IPv6 */
    struct http_conn *prev, *next; /* loop->conns */
};

/* Open connections per client address, for max_connections_per_client. Shared by the loops,
 * behind lock; touched only when a connection opens or closes. */
struct client_count {
    unsigned char addr[16];
    unsigned n;
    struct client_count *next;
};

#define HTTP_CLIENT_BUCKETS 4096

struct client_table {
    pthread_mutex_t lock;
    struct client_count *buckets[HTTP_CLIENT_BUCKETS];
};

/* One polling thread: a libmicrohttpd daemon of its own in external-epoll mode on the server's
 * listening socket, and an eventfd in that daemon's epoll set that wakes it when another
 * thread resumed one of its connections (written once per wake-up, not once per connection:
 * see loop_wake). */
struct http_loop {
    struct http_server *server;
    struct MHD_Daemon *daemon;
    int wake_fd;
    struct http_conn *conns; /* every open connection of this loop (loop thread only) */
    int64_t next_sweep_ms;
    atomic_bool is_woken;     /* a wake-up is written and not consumed yet */
    atomic_bool must_quiesce; /* http_server_free: stop accepting */
    atomic_bool must_stop;
    bool has_thread;
    pthread_t thread;

    /* Shared between the loop's thread, answering threads and http_server_free(), behind lock
     * (one per loop: the loops do not contend): */
    pthread_mutex_t lock;
    pthread_cond_t cond;             /* signalled only once is_stopping is set */
    struct http_exchange *suspended; /* doubly linked list of suspended exchanges */
    size_t n_active;                 /* exchanges created and not yet completed */
    bool is_quiesced;
    bool is_stopping;
};

struct http_server {
    struct http_server_options opts;
    char *listen;
    struct route *routes;
    size_t n_routes;
    struct route unmatched; /* metrics of 404/405 and rejected requests */
    struct http_loop *loops;
    unsigned n_loops; /* loops with a daemon */
    int listen_fd;
    atomic_uint n_waking; /* threads between resuming a connection and waking its loop */
    unsigned port;
    struct metric *connections_total; /* accepted connections (reuse shows as few of them) */
    struct metric *connections_open;
    struct metric *refused[REFUSE_COUNT];
    struct metric *timed_out[TIMEOUT_COUNT];
    atomic_uint n_open; /* connections open, all loops */
    struct client_table clients;
    char *cors[HTTP_MAX_CORS_ORIGINS]; /* allowed origins (exact match) */
    size_t n_cors;
    char *static_csp;
};

struct http_exchange {
    struct http_server *server; /* NULL once the server forced an answer (may be gone) */
    struct http_loop *loop;     /* the polling thread the connection belongs to */
    struct MHD_Connection *conn;
    struct http_conn *hconn; /* the connection's state (outlives the exchange) */
    const struct route *route;
    const char *method; /* owned by libmicrohttpd, valid for the request */
    char *target;       /* the request target as received (still percent-encoded) */
    bool is_started;    /* on_first_call ran: the head is complete */
    char *path;
    char *seg_copy; /* path split into NUL-separated segments; params point into it */
    const char *params[HTTP_MAX_PARAMS];
    struct buf body;
    size_t discarded_bytes;
    bool is_too_big;
    bool is_handled; /* handler invoked: the handler holds a reference until it responds */
    struct timespec started;
    struct resp_header *headers;
    size_t n_headers;
    char *cors_origin; /* the request's Origin when it is on the allow-list, else NULL */
    bool has_cors;     /* the server has an allow-list: answers vary by Origin */

    /* Shared between the polling thread and the answering thread, behind lock: */
    pthread_mutex_t lock;
    struct MHD_Response *response; /* built by http_respond*, queued on the polling thread */
    unsigned status;
    bool is_answered;  /* a response exists (from the handler or forced by the server) */
    bool is_responded; /* the handler's http_respond*() happened */
    bool is_suspended; /* connection suspended, waiting for the answer */
    bool is_completed; /* libmicrohttpd is done with the request */
    bool is_forced;    /* the server answered 503 at shutdown in the handler's place */
    struct http_exchange *prev, *next; /* loop->suspended list, under loop->lock */
};

/* ---- small helpers ---- */

const char *http_server_lib_version(void)
{
    return MHD_get_version();
}

static double elapsed_s(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Splits copy in place at '/' into at most max segments (empty ones skipped). Returns their
 * number, or -1 when there are more. No allocation: it runs for every request. */
static int split_into(char *copy, char **segs, size_t max)
{
    size_t n = 0;
    char *p = copy;
    for (;;) {
        while (*p == '/') {
            p++;
        }
        if (*p == '\0') {
            return (int)n;
        }
        if (n == max) {
            return -1;
        }
        segs[n++] = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        if (*p == '/') {
            *p++ = '\0';
        }
    }
}

static char **split_segments(char *copy, size_t *n_out, size_t max)
{
    char **segs = xcalloc(max, sizeof *segs);
    int n = split_into(copy, segs, max);
    if (n < 0) {
        free(segs);
        return NULL;
    }
    *n_out = (size_t)n;
    return segs;
}

static void append_label_value(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            buf_append(b, "\\", 1);
        }
        if (*s == '\n') {
            buf_appends(b, "\\n");
            continue;
        }
        buf_append(b, s, 1);
    }
}

static void route_init_metrics(struct route *r)
{
    static const char *const classes[HTTP_STATUS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    struct buf labels;
    buf_init(&labels, 4096);
    for (size_t i = 0; i < HTTP_STATUS_CLASSES; i++) {
        buf_reset(&labels);
        buf_appends(&labels, "route=\"");
        append_label_value(&labels, r->pattern);
        buf_appends(&labels, "\",method=\"");
        append_label_value(&labels, r->method);
        buf_appendf(&labels, "\",status=\"%s\"", classes[i]);
        r->requests[i] = metrics_counter("http_requests_total",
                                         "HTTP requests answered, by route pattern, method and "
                                         "status class.",
                                         labels.data);
    }
    buf_reset(&labels);
    buf_appends(&labels, "route=\"");
    append_label_value(&labels, r->pattern);
    buf_appends(&labels, "\",method=\"");
    append_label_value(&labels, r->method);
    buf_appends(&labels, "\"");
    r->duration =
        metrics_histogram("http_request_duration_seconds",
                          "Time from the request line to its completion.", labels.data, NULL, 0);
    buf_release(&labels);
}

static void route_release(struct route *r)
{
    free(r->method);
    free(r->pattern);
    free(r->segments_mem);
    free(r->segments);
    free(r->dir);
}

/* ---- exchange lifetime ---- */

static void exchange_free(struct http_exchange *ex)
{
    for (size_t i = 0; i < ex->n_headers; i++) {
        free(ex->headers[i].name);
        free(ex->headers[i].value);
    }
    free(ex->headers);
    free(ex->cors_origin);
    if (ex->response) {
        MHD_destroy_response(ex->response);
    }
    buf_release(&ex->body);
    free(ex->target);
    free(ex->path);
    free(ex->seg_copy);
    pthread_mutex_destroy(&ex->lock);
    free(ex);
}

/* Builds the response. Takes ex->lock. Returns true when the connection must be resumed by the
 * caller (the exchange is suspended on the polling thread). */
static bool exchange_answer(struct http_exchange *ex, unsigned status, const char *content_type,
                            const char *body, size_t len, bool is_from_handler)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        log_error("http: cannot create a response (out of memory)");
        abort();
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type ? content_type : "application/json");
    bool must_resume = false;
    bool must_free = false;
    pthread_mutex_lock(&ex->lock);
    if (is_from_handler) {
        if (ex->is_responded) {
            pthread_mutex_unlock(&ex->lock);
            MHD_destroy_response(resp);
            log_error("http: an exchange was answered twice (ignored)");
            return false;
        }
        ex->is_responded = true;
    }
    if (ex->is_answered) {
        /* The server answered 503 at shutdown already; the exchange only waited for us. */
        must_free = ex->is_completed;
        pthread_mutex_unlock(&ex->lock);
        MHD_destroy_response(resp);
        if (must_free) {
            exchange_free(ex);
        }
        return false;
    }
    for (size_t i = 0; i < ex->n_headers; i++) {
        MHD_add_response_header(resp, ex->headers[i].name, ex->headers[i].value);
    }
    if (ex->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", ex->cors_origin);
    }
    if (ex->has_cors) {
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    ex->response = resp;
    ex->status = status;
    ex->is_answered = true;
    if (ex->is_suspended) {
        ex->is_suspended = false;
        must_resume = true;
    }
    pthread_mutex_unlock(&ex->lock);
    return must_resume;
}

/* Wakes a polling thread after one of its connections was resumed. In external-epoll mode
 * MHD_resume_connection only marks the connection; the loop takes it back on its next pass. Only
 * the first wake-up since the loop last looked writes the eventfd: a sweep of answers costs one
 * write per loop, where libmicrohttpd's own threads write theirs once per connection. */
static void loop_wake(struct http_loop *l)
{
    if (!atomic_exchange(&l->is_woken, true)) {
        uint64_t one = 1;
        if (write(l->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN) {
            log_error("http: cannot wake a polling thread: %s", strerror(errno));
        }
    }
}

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
        loop_wake(deferred.loops[i]);
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

static void exchange_resume(struct http_exchange *ex, bool must_resume)
{
    /* Only the thread that answered a suspended exchange resumes it, and the exchange cannot be
     * completed (freed) before it is resumed, so ex is valid up to MHD_resume_connection. After
     * it only the loop is used, and n_waking keeps http_server_free() from closing it. */
    if (!must_resume) {
        return;
    }
    struct http_loop *l = ex->loop;
    struct http_server *s = l->server;
    if (deferred.depth > 0) {
        bool is_listed = false;
        for (size_t i = 0; i < deferred.n && !is_listed; i++) {
            is_listed = deferred.loops[i] == l;
        }
        if (!is_listed) {
            if (deferred.n == HTTP_DEFER_MAX) {
                deferred_flush();
            }
            atomic_fetch_add(&s->n_waking, 1);
            deferred.loops[deferred.n++] = l;
        }
        MHD_resume_connection(ex->conn);
        return;
    }
    atomic_fetch_add(&s->n_waking, 1);
    MHD_resume_connection(ex->conn);
    loop_wake(l);
    atomic_fetch_sub(&s->n_waking, 1);
}

/* An answer produced by the server itself (404, 413, built-ins ...): no handler holds the
 * exchange. Called on the polling thread. */
static void server_answer(struct http_exchange *ex, unsigned status, const char *content_type,
                          const char *body, size_t len)
{
    exchange_answer(ex, status, content_type, body, len, false);
}

static void server_answer_error(struct http_exchange *ex, unsigned status, const char *code,
                                const char *message)
{
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message", message);
    char *text = json_dumps(o, JSON_COMPACT);
    server_answer(ex, status, NULL, text, strlen(text));
    free(text);
    json_decref(o);
}

/* ---- the public request accessors and answers ---- */

const char *http_method(const struct http_exchange *ex)
{
    return ex->method;
}

const char *http_path(const struct http_exchange *ex)
{
    return ex->path;
}

const char *http_param(const struct http_exchange *ex, unsigned i)
{
    return i < HTTP_MAX_PARAMS ? ex->params[i] : NULL;
}

const char *http_header(const struct http_exchange *ex, const char *name)
{
    return MHD_lookup_connection_value(ex->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const struct http_exchange *ex, const char *name)
{
    return MHD_lookup_connection_value(ex->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_body(const struct http_exchange *ex, size_t *len)
{
    if (len) {
        *len = ex->body.len;
    }
    return ex->body.data ? ex->body.data : "";
}

const char *http_bearer(const struct http_exchange *ex)
{
    const char *v = http_header(ex, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!v || strncasecmp(v, "Bearer ", 7) != 0) {
        return NULL;
    }
    v += 7;
    while (*v == ' ') {
        v++;
    }
    return *v ? v : NULL;
}

void http_add_header(struct http_exchange *ex, const char *name, const char *value)
{
    ex->headers = xrealloc(ex->headers, (ex->n_headers + 1) * sizeof *ex->headers);
    ex->headers[ex->n_headers].name = xstrdup(name);
    ex->headers[ex->n_headers].value = xstrdup(value);
    ex->n_headers++;
}

void http_respond(struct http_exchange *ex, unsigned status, const char *content_type,
                  const char *body, size_t len)
{
    bool must_resume = exchange_answer(ex, status, content_type, body ? body : "", len, true);
    exchange_resume(ex, must_resume);
}

void http_respond_json(struct http_exchange *ex, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!text) {
        text = xstrdup("null");
    }
    http_respond(ex, status, NULL, text, strlen(text));
    free(text);
    json_decref(body);
}

void http_respond_error(struct http_exchange *ex, unsigned status, const char *code, json_t *extra,
                        const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (n < 0) {
        message[0] = '\0';
    }
    /* A truncated message is still a sentence for a person; nothing to do when n >= size. */
    json_t *o = json_object();
    if (extra && json_is_object(extra)) {
        json_object_update(o, extra);
    }
    json_decref(extra);
    json_object_set_new(o, "error", json_string(code));
    json_t *m = json_string(message);
    if (!m) {
        /* Not UTF-8 (e.g. echoes a raw request byte): keep the ASCII part readable. */
        for (char *p = message; *p; p++) {
            if ((unsigned char)*p >= 0x80) {
                *p = '?';
            }
        }
        m = json_string(message);
    }
    json_object_set_new(o, "message", m);
    http_respond_json(ex, status, o);
}

/* ---- built-in endpoints ---- */

static void builtin_healthz(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    static const char body[] = "{\"status\":\"ok\"}";
    http_respond(ex, 200, NULL, body, sizeof body - 1);
}

static void builtin_readyz(struct http_exchange *ex, void *ctx)
{
    struct http_server *s = ctx;
    const char *reason = NULL;
    if (s->opts.ready && !s->opts.ready(s->opts.ready_ctx, &reason)) {
        http_respond_error(ex, 503, "not_ready", NULL, "%s", reason ? reason : "not ready");
        return;
    }
    static const char body[] = "{\"status\":\"ready\"}";
    http_respond(ex, 200, NULL, body, sizeof body - 1);
}

static void builtin_metrics(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    struct buf out;
    buf_init(&out, 0);
    if (metrics_render(&out) != 0) {
        buf_release(&out);
        http_respond_error(ex, 500, "internal", NULL, "The metrics could not be rendered.");
        return;
    }
    http_respond(ex, 200, "text/plain; version=0.0.4", out.data ? out.data : "", out.len);
    buf_release(&out);
}

/* ---- static files ---- */

static const char *content_type_for(const char *path)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash)) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (strcasecmp(dot, types[i].ext) == 0) {
                return types[i].type;
            }
        }
    }
    return "application/octet-stream";
}

static void add_security_headers(struct MHD_Response *resp, const char *csp)
{
    MHD_add_response_header(resp, "Content-Security-Policy", csp);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
}

/* Resolves the request path under the route's directory; NULL when it is not a regular file
 * inside it. Rejects "." and ".." segments and anything that resolves (through symlinks) outside
 * the directory. Returns a heap path. */
static char *static_resolve(const struct route *r, const char *rel)
{
    char *copy = xstrdup(rel);
    char *save = NULL;
    struct buf path;
    buf_init(&path, PATH_MAX);
    buf_appends(&path, r->dir);
    bool is_ok = true;
    for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0 || strchr(seg, '\\')) {
            is_ok = false;
            break;
        }
        if (buf_appendf(&path, "/%s", seg) != 0) {
            is_ok = false;
            break;
        }
    }
    free(copy);
    char *resolved = NULL;
    if (is_ok) {
        struct stat st;
        if (stat(path.data, &st) == 0 && S_ISDIR(st.st_mode)) {
            is_ok = buf_appends(&path, "/index.html") == 0;
        }
    }
    if (is_ok) {
        resolved = realpath(path.data, NULL);
    }
    buf_release(&path);
    if (!resolved) {
        return NULL;
    }
    size_t dlen = strlen(r->dir);
    struct stat st;
    if (strncmp(resolved, r->dir, dlen) != 0 || resolved[dlen] != '/' || stat(resolved, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        free(resolved);
        return NULL;
    }
    return resolved;
}

/* Serves a static file; on the polling thread, before any handler. */
static void static_serve(struct http_exchange *ex, const struct route *r, const char *rel)
{
    char *file = static_resolve(r, rel);
    int fd = file ? open(file, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        free(file);
        server_answer_error(ex, 404, "not_found", "No such file.");
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        free(file);
        server_answer_error(ex, 500, "internal", "The file could not be served.");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type_for(file));
    add_security_headers(resp, ex->server->static_csp);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    free(file);
    pthread_mutex_lock(&ex->lock);
    ex->response = resp;
    ex->status = 200;
    ex->is_answered = true;
    pthread_mutex_unlock(&ex->lock);
}

/* ---- routing ---- */

static bool route_matches(const struct route *r, char **segs, size_t n, const char **params)
{
    if (r->n_segments != n) {
        return false;
    }
    unsigned k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r->segments[i], "{}") == 0) {
            if (k < HTTP_MAX_PARAMS) {
                params[k++] = segs[i];
            }
        } else if (strcmp(r->segments[i], segs[i]) != 0) {
            return false;
        }
    }
    return true;
}

static bool static_matches(const struct route *r, const char *path)
{
    size_t plen = strlen(r->pattern);
    if (strncmp(path, r->pattern, plen) == 0) {
        return true;
    }
    /* "/ui" for a "/ui/" prefix */
    return plen > 1 && r->pattern[plen - 1] == '/' && strlen(path) == plen - 1 &&
           strncmp(path, r->pattern, plen - 1) == 0;
}

/* Finds the route for the exchange; answers 404/405 itself (returns NULL) when there is none. */
static const struct route *route_find(struct http_server *s, struct http_exchange *ex)
{
    char *seg_mem[HTTP_MAX_SEGMENTS];
    int n_segs = split_into(ex->seg_copy, seg_mem, HTTP_MAX_SEGMENTS);
    char **segs = n_segs >= 0 ? seg_mem : NULL;
    size_t n = n_segs >= 0 ? (size_t)n_segs : 0;
    struct buf allow;
    buf_init(&allow, 1024);
    const struct route *found = NULL;
    bool is_get = strcmp(ex->method, "GET") == 0 || strcmp(ex->method, "HEAD") == 0;
    for (size_t i = 0; segs && i < s->n_routes && !found; i++) {
        const struct route *r = &s->routes[i];
        if (r->kind != ROUTE_HANDLER) {
            continue;
        }
        const char *params[HTTP_MAX_PARAMS] = {NULL};
        if (!route_matches(r, segs, n, params)) {
            continue;
        }
        if (strcmp(r->method, ex->method) == 0) {
            memcpy(ex->params, params, sizeof params);
            found = r;
        } else if (!allow.data || !strstr(allow.data, r->method)) {
            if (allow.len) {
                buf_appends(&allow, ", ");
            }
            buf_appends(&allow, r->method);
        }
    }
    /* Static files come after the API routes, whatever the registration order; the longest
     * matching prefix wins ("/support/common/" before "/support/"). */
    if (is_get && !found && !allow.len) {
        size_t best = 0;
        for (size_t i = 0; i < s->n_routes; i++) {
            const struct route *r = &s->routes[i];
            size_t plen = strlen(r->pattern);
            if (r->kind == ROUTE_STATIC && plen > best && static_matches(r, ex->path)) {
                found = r;
                best = plen;
            }
        }
    }
    if (!found) {
        ex->route = &s->unmatched;
        if (allow.len) {
            http_add_header(ex, "Allow", allow.data);
            char msg[256];
            snprintf(msg, sizeof msg, "Method %.32s is not allowed here; allowed: %.128s.",
                     ex->method, allow.data);
            server_answer_error(ex, 405, "method_not_allowed", msg);
        } else {
            server_answer_error(ex, 404, "not_found", "No such resource.");
        }
    }
    buf_release(&allow);
    return found;
}

/* ---- CORS (https://fetch.spec.whatwg.org/#http-cors-protocol) ---- */

static const char *cors_find(const struct http_server *s, const char *origin)
{
    for (size_t i = 0; origin && i < s->n_cors; i++) {
        if (strcmp(s->cors[i], origin) == 0) {
            return s->cors[i];
        }
    }
    return NULL;
}

/* Answers an OPTIONS preflight on the polling thread: 204 with the methods of the routes the path
 * matches when the origin is allowed, 403 when it is not, 404 when no route matches. */
static void cors_preflight(struct http_server *s, struct http_exchange *ex)
{
    char *copy = xstrdup(ex->path);
    size_t n = 0;
    char **segs = split_segments(copy, &n, HTTP_MAX_SEGMENTS);
    struct buf methods;
    buf_init(&methods, 1024);
    for (size_t i = 0; segs && i < s->n_routes; i++) {
        const struct route *r = &s->routes[i];
        const char *params[HTTP_MAX_PARAMS] = {NULL};
        if (r->kind != ROUTE_HANDLER || !route_matches(r, segs, n, params)) {
            continue;
        }
        if (!methods.data || !strstr(methods.data, r->method)) {
            if (methods.len) {
                buf_appends(&methods, ", ");
            }
            buf_appends(&methods, r->method);
        }
    }
    free(segs);
    free(copy);
    ex->route = &s->unmatched;
    if (!methods.len) {
        server_answer_error(ex, 404, "not_found", "No such resource.");
    } else if (!ex->cors_origin) {
        server_answer_error(ex, 403, "cors_refused",
                            "This origin may not call this service from a browser.");
    } else {
        http_add_header(ex, "Access-Control-Allow-Methods", methods.data);
        http_add_header(ex, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        http_add_header(ex, "Access-Control-Max-Age", HTTP_CORS_MAX_AGE_S);
        server_answer(ex, 204, NULL, "", 0);
    }
    buf_release(&methods);
}

static bool origin_is_valid(const char *o, size_t len)
{
    size_t skip = 0;
    if (len > 7 && strncmp(o, "http://", 7) == 0) {
        skip = 7;
    } else if (len > 8 && strncmp(o, "https://", 8) == 0) {
        skip = 8;
    }
    if (!skip || len >= HTTP_MAX_ORIGIN_BYTES) {
        return false;
    }
    for (size_t i = skip; i < len; i++) {
        char c = o[i];
        bool is_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
        if (!is_ok) {
            return false;
        }
    }
    return true;
}

/* Calls fn for each comma-separated entry of list (trimmed, non-empty). Stops at the first
 * non-zero return, which it returns. */
static int cors_each(const char *list, int (*fn)(const char *o, size_t len, void *arg), void *arg)
{
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        const char *end = p;
        while (*end && *end != ',' && *end != ' ') {
            end++;
        }
        if (end > p) {
            int rc = fn(p, (size_t)(end - p), arg);
            if (rc != 0) {
                return rc;
            }
        }
        p = end;
    }
    return 0;
}

struct cors_check {
    char *err;
    size_t err_len;
    size_t n;
};

static int cors_check_one(const char *o, size_t len, void *arg)
{
    struct cors_check *c = arg;
    if (++c->n > HTTP_MAX_CORS_ORIGINS) {
        snprintf(c->err, c->err_len, "more than %d CORS origins", HTTP_MAX_CORS_ORIGINS);
        return -1;
    }
    if (!origin_is_valid(o, len)) {
        snprintf(c->err, c->err_len,
                 "CORS origin '%.*s' is not http(s)://host[:port] (no path, no trailing '/')",
                 (int)(len < 128 ? len : 128), o);
        return -1;
    }
    return 0;
}

int http_cors_validate(const char *origins, char *err, size_t err_len)
{
    struct cors_check c = {err, err_len, 0};
    return cors_each(origins, cors_check_one, &c);
}

static int cors_add_one(const char *o, size_t len, void *arg)
{
    struct http_server *s = arg;
    if (s->n_cors == HTTP_MAX_CORS_ORIGINS || !origin_is_valid(o, len)) {
        log_error("http: CORS origin '%.*s' ignored (invalid or too many)",
                  (int)(len < 128 ? len : 128), o);
        return 0;
    }
    char *copy = xmalloc(len + 1);
    memcpy(copy, o, len);
    copy[len] = '\0';
    s->cors[s->n_cors++] = copy;
    return 0;
}

static void cors_init(struct http_server *s, const char *origins)
{
    cors_each(origins, cors_add_one, s);
    struct buf csp;
    buf_init(&csp, 8192);
    buf_appends(&csp, HTTP_STATIC_CSP_HEAD);
    for (size_t i = 0; i < s->n_cors; i++) {
        buf_appendf(&csp, " %s", s->cors[i]);
    }
    buf_appends(&csp, HTTP_STATIC_CSP_TAIL);
    s->static_csp = xstrdup(csp.data);
    buf_release(&csp);
}

/* ---- request checks made before routing ---- */

/* UTF-8 decoding state for utf8_step (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF). */
struct utf8_state {
    unsigned need;        /* continuation bytes still expected */
    unsigned char lo, hi; /* the range of the next continuation byte */
};

static bool utf8_step(struct utf8_state *u, unsigned char c)
{
    if (u->need > 0) {
        if (c < u->lo || c > u->hi) {
            return false;
        }
        u->need--;
        u->lo = 0x80;
        u->hi = 0xBF;
        return true;
    }
    u->lo = 0x80;
    u->hi = 0xBF;
    if (c < 0x80) {
        return true;
    } else if (c >= 0xC2 && c <= 0xDF) {
        u->need = 1;
    } else if (c == 0xE0) {
        u->need = 2;
        u->lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        u->need = 2;
    } else if (c == 0xED) {
        u->need = 2;
        u->hi = 0x9F;
    } else if (c == 0xF0) {
        u->need = 3;
        u->lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        u->need = 3;
    } else if (c == 0xF4) {
        u->need = 3;
        u->hi = 0x8F;
    } else {
        return false;
    }
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Checks one part (path or query) of a request target as received, [p, end): every '%' starts
 * a two-digit hex escape, none decodes to NUL (it would cut the decoded string short: the
 * path "/index.html%00.js" would serve index.html), and the decoded bytes are UTF-8 (an
 * account id "%FF" must be refused here rather than fail later in JSON or SQL). */
static bool target_part_is_valid(const char *p, const char *end)
{
    struct utf8_state u = {0};
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            int hi = p + 2 < end ? hex_value(p[1]) : -1;
            int lo = hi >= 0 ? hex_value(p[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return false;
            }
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
        }
        if (!utf8_step(&u, c)) {
            return false;
        }
    }
    return u.need == 0;
}

/* The framing headers of a request, collected by framing_header. */
struct framing {
    unsigned n_length;
    bool is_length_conflict;
    const char *length;
    const char *encoding;
    unsigned n_encoding;
};

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    struct framing *f = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->n_length > 0 && strcmp(f->length, value) != 0) {
            f->is_length_conflict = true;
        }
        if (strchr(value, ',')) {
            f->is_length_conflict = true; /* "5, 6" is a list of lengths */
        }
        f->length = value;
        f->n_length++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->encoding = value;
        f->n_encoding++;
    }
    return MHD_YES;
}

/* Checks what libmicrohttpd lets through but a request must not carry. Returns 0, or the
 * status to refuse it with (code and message filled): 400 for a bad target or conflicting
 * framing (two different Content-Lengths, or Content-Length beside Transfer-Encoding: RFC 9112
 * section 6.3 calls both smuggling hazards), 501 for a transfer coding other than chunked
 * (libmicrohttpd would wait for a body it cannot delimit until the time-out). */
static unsigned request_check(struct http_exchange *ex, const char **code, const char **message)
{
    const char *t = ex->target ? ex->target : "";
    const char *q = strchr(t, '?');
    const char *t_end = q ? q : t + strlen(t);
    if (!target_part_is_valid(t, t_end)) {
        *code = "bad_path";
        *message = "The path has an invalid percent-encoding, an encoded NUL or is not UTF-8.";
        return 400;
    }
    if (q && !target_part_is_valid(q + 1, q + strlen(q))) {
        *code = "bad_query";
        *message = "The query has an invalid percent-encoding, an encoded NUL or is not UTF-8.";
        return 400;
    }
    struct framing f = {0};
    MHD_get_connection_values(ex->conn, MHD_HEADER_KIND, framing_header, &f);
    if (f.is_length_conflict) {
        *code = "bad_request";
        *message = "The request carries conflicting Content-Length values.";
        return 400;
    }
    if (f.n_encoding > 0 && f.n_length > 0) {
        *code = "bad_request";
        *message = "The request carries both Content-Length and Transfer-Encoding.";
        return 400;
    }
    if (f.n_encoding > 1 || (f.n_encoding == 1 && strcasecmp(f.encoding, "chunked") != 0)) {
        *code = "not_implemented";
        *message = "Only the chunked transfer coding is supported.";
        return 501;
    }
    return 0;
}

/* ---- connections: caps and deadlines ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a vDSO read: it runs a few times a request */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t client_bucket(const unsigned char addr[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < 16; i++) {
        h = (h ^ addr[i]) * 16777619u;
    }
    return h % HTTP_CLIENT_BUCKETS;
}

/* Counts one more connection of addr; returns how many it has now. */
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

static void client_table_release(struct client_table *t)
{
    for (size_t b = 0; b < HTTP_CLIENT_BUCKETS; b++) {
        while (t->buckets[b]) {
            struct client_count *c = t->buckets[b];
            t->buckets[b] = c->next;
            free(c);
        }
    }
    pthread_mutex_destroy(&t->lock);
}

/* The client's address as 16 bytes (IPv4 as ::ffff:a.b.c.d, so both families share a key). */
static void client_addr(struct MHD_Connection *conn, unsigned char out[16])
{
    memset(out, 0, 16);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) {
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
}

static struct http_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_phase(struct http_conn *c, enum conn_phase phase, unsigned after_s)
{
    if (!c || c->phase == PHASE_REFUSED || c->phase == PHASE_CLOSING) {
        return;
    }
    c->phase = phase;
    c->deadline_ms = after_s ? now_ms() + (int64_t)after_s * 1000 : 0;
}

/* Closes the loop's connections past their deadline: shutdown() of the socket, which
 * libmicrohttpd then sees as the client gone (it owns the descriptor and closes it). No answer
 * is sent: the client is too slow to be waiting for one (nginx's client_header_timeout does the
 * same). Runs on the loop's thread every HTTP_SWEEP_MS. */
static void loop_sweep(struct http_loop *l, int64_t now)
{
    struct http_server *s = l->server;
    for (struct http_conn *c = l->conns; c; c = c->next) {
        if (c->deadline_ms == 0 || now < c->deadline_ms) {
            continue;
        }
        if (c->phase == PHASE_HEAD || (c->phase == PHASE_WAIT && c->is_first)) {
            metric_inc(s->timed_out[TIMEOUT_HEAD]);
        } else if (c->phase == PHASE_BODY) {
            metric_inc(s->timed_out[TIMEOUT_BODY]);
        } else if (c->phase == PHASE_WAIT) {
            metric_inc(s->timed_out[TIMEOUT_IDLE]);
        }
        (void)shutdown(c->fd, SHUT_RDWR);
        c->phase = PHASE_CLOSING;
        c->deadline_ms = 0;
    }
}

/* ---- libmicrohttpd callbacks ---- */

static enum MHD_Result queue_answer(struct http_exchange *ex)
{
    return MHD_queue_response(ex->conn, ex->status, ex->response);
}

/* libmicrohttpd's URI log callback: the request line is in, the headers are not yet. The
 * exchange starts here, with the target as received (libmicrohttpd decodes it before the access
 * handler sees it, and a decoded "%00" would cut it short). What this returns is the request's
 * req_cls, and libmicrohttpd reports its completion whatever happens next. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_loop *l = cls;
    struct http_exchange *ex = xcalloc(1, sizeof *ex);
    pthread_mutex_init(&ex->lock, NULL);
    ex->server = l->server;
    ex->loop = l;
    ex->conn = conn;
    ex->target = xstrdup(uri ? uri : "");
    clock_gettime(CLOCK_MONOTONIC, &ex->started);
    ex->hconn = conn_of(conn);
    /* A fresh connection keeps the deadline it got at accept for its whole first head. */
    if (ex->hconn && !(ex->hconn->is_first && ex->hconn->phase == PHASE_WAIT)) {
        conn_phase(ex->hconn, PHASE_HEAD, l->server->opts.head_timeout_s);
    } else if (ex->hconn) {
        ex->hconn->phase = PHASE_HEAD;
    }
    pthread_mutex_lock(&l->lock);
    l->n_active++;
    pthread_mutex_unlock(&l->lock);
    return ex;
}

static enum MHD_Result on_first_call(struct http_loop *l, struct MHD_Connection *conn,
                                     const char *url, const char *method, struct http_exchange *ex)
{
    struct http_server *s = l->server;
    ex->is_started = true;
    ex->conn = conn;
    ex->method = method;
    ex->path = xstrdup(url);
    ex->seg_copy = xstrdup(url);

    if (ex->hconn && ex->hconn->phase == PHASE_REFUSED) {
        bool is_global = ex->hconn->refused == REFUSE_MAX_CONNECTIONS;
        ex->route = &s->unmatched;
        http_add_header(ex, "Retry-After", "1");
        http_add_header(ex, MHD_HTTP_HEADER_CONNECTION, "close");
        server_answer_error(ex, 503, "too_many_connections",
                            is_global ? "The server has as many connections open as it takes; "
                                        "retry later."
                                      : "This client address has as many connections open as "
                                        "the server takes from one; reuse them or retry later.");
        return queue_answer(ex);
    }
    conn_phase(ex->hconn, PHASE_BODY, s->opts.body_timeout_s);

    const char *code = NULL, *message = NULL;
    unsigned refuse = request_check(ex, &code, &message);
    if (refuse != 0) {
        ex->route = &s->unmatched;
        server_answer_error(ex, refuse, code, message);
        return queue_answer(ex);
    }

    if (s->n_cors > 0) {
        const char *allowed =
            cors_find(s, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"));
        ex->cors_origin = allowed ? xstrdup(allowed) : NULL;
        ex->has_cors = true;
        if (strcmp(method, "OPTIONS") == 0) {
            cors_preflight(s, ex);
            return queue_answer(ex);
        }
    }

    const struct route *r = route_find(s, ex);
    if (!r) {
        return queue_answer(ex); /* 404 / 405 */
    }
    ex->route = r;
    if (r->kind == ROUTE_STATIC) {
        /* The part after the prefix, keeping its leading '/'. */
        size_t plen = strlen(r->pattern);
        const char *rel = strlen(ex->path) >= plen ? ex->path + plen : "";
        static_serve(ex, r, rel);
        return queue_answer(ex);
    }
    buf_init(&ex->body, r->max_body_bytes);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && v > r->max_body_bytes) {
            char msg[128];
            snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.",
                     r->max_body_bytes);
            server_answer_error(ex, 413, "too_large", msg);
            return queue_answer(ex);
        }
        /* One allocation for the announced body instead of doubling through it (~5% of the
         * publisher's batch path); bounded by the route's cap checked just above. */
        if (errno == 0 && end != cl && v > 0) {
            (void)buf_reserve(&ex->body, (size_t)v);
        }
    }
    return MHD_YES;
}

/* Called with l->lock held. */
static void suspended_remove(struct http_loop *l, struct http_exchange *ex)
{
    if (ex->prev || ex->next || l->suspended == ex) {
        if (ex->prev) {
            ex->prev->next = ex->next;
        } else {
            l->suspended = ex->next;
        }
        if (ex->next) {
            ex->next->prev = ex->prev;
        }
        ex->prev = ex->next = NULL;
        if (l->is_stopping) {
            pthread_cond_broadcast(&l->cond);
        }
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    (void)version;
    struct http_loop *l = cls;
    struct http_exchange *ex = *req_cls;
    if (!ex) {
        /* Always set by on_request_line; without it there is nothing to answer with. */
        log_error("http: a request reached the handler without its exchange");
        return MHD_NO;
    }
    if (!ex->is_started) {
        return on_first_call(l, conn, url, method, ex);
    }
    if (ex->is_handled) {
        /* Resumed: the answer is there (from the handler or forced at shutdown). */
        pthread_mutex_lock(&l->lock);
        suspended_remove(l, ex);
        pthread_mutex_lock(&ex->lock);
        enum MHD_Result rc = ex->response ? queue_answer(ex) : MHD_NO;
        pthread_mutex_unlock(&ex->lock);
        pthread_mutex_unlock(&l->lock);
        return rc;
    }
    if (ex->response) {
        /* Answered by the server at the first call (404/405/413, static file): whatever still
         * comes is dropped. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!ex->is_too_big && buf_append(&ex->body, upload_data, n) == 0) {
            return MHD_YES;
        }
        /* Past the cap: keep nothing more, read on to answer 413 at the end; give up (close)
         * when the client sends as much again. */
        ex->is_too_big = true;
        ex->discarded_bytes += n;
        return ex->discarded_bytes > ex->route->max_body_bytes + HTTP_CONNECTION_MEMORY_BYTES
                   ? MHD_NO
                   : MHD_YES;
    }
    if (ex->is_too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.",
                 ex->route->max_body_bytes);
        server_answer_error(ex, 413, "too_large", msg);
        return queue_answer(ex);
    }

    /* The whole request is here: run the handler. */
    ex->is_handled = true;
    conn_phase(ex->hconn, PHASE_HANDLER, 0);
    ex->route->fn(ex, ex->route->ctx);

    pthread_mutex_lock(&l->lock);
    pthread_mutex_lock(&ex->lock);
    enum MHD_Result rc = MHD_YES;
    if (ex->is_answered) {
        rc = queue_answer(ex);
    } else if (l->is_stopping) {
        /* Too late to wait for an asynchronous answer: the server answers for the handler. */
        pthread_mutex_unlock(&ex->lock);
        server_answer_error(ex, 503, "shutting_down", "The server is shutting down.");
        pthread_mutex_lock(&ex->lock);
        ex->is_forced = true;
        ex->server = NULL;
        rc = queue_answer(ex);
    } else {
        MHD_suspend_connection(conn);
        ex->is_suspended = true;
        ex->next = l->suspended;
        if (l->suspended) {
            l->suspended->prev = ex;
        }
        l->suspended = ex;
    }
    pthread_mutex_unlock(&ex->lock);
    pthread_mutex_unlock(&l->lock);
    return rc;
}

/* One debug line per request that belongs to a trace (it carries a traceparent: a publish, a
 * delivery), with the trace and event ids, so every hop of an event's journey is in the log
 * (docs/logging.md, busctl trace). Scrapes and probes carry none and stay out of the log. */
static void log_traced_request(struct MHD_Connection *conn, const struct http_exchange *ex,
                               unsigned status)
{
    const char *tp = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "traceparent");
    struct trace t;
    if (tp == NULL || trace_parse(tp, &t) != 0) {
        return;
    }
    const char *ce_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "ce-id");
    const char *bus_route = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Bus-Route");
    const char *attempt = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Bus-Attempt");
    json_t *extra = json_pack("{s:s, s:s, s:i, s:f}", "method", ex->method ? ex->method : "",
                              "path", ex->path ? ex->path : "", "status", (int)status, "seconds",
                              elapsed_s(&ex->started));
    if (extra && bus_route) {
        json_object_set_new(extra, "route", json_string(bus_route));
    }
    if (extra && attempt) {
        json_object_set_new(extra, "attempt", json_integer(atoi(attempt)));
    }
    log_at(LOG_LEVEL_DEBUG, t.trace_id, ce_id, extra, "http: %s %s answered %u",
           ex->method ? ex->method : "?", ex->path ? ex->path : "?", status);
    json_decref(extra);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    struct http_loop *l = cls;
    struct http_server *s = l->server;
    struct http_exchange *ex = *req_cls;
    if (!ex) {
        return;
    }
    *req_cls = NULL;
    if (ex->hconn) {
        conn_phase(ex->hconn, PHASE_WAIT, s->opts.timeout_s);
        ex->hconn->is_first = false;
    }
    const struct route *r = ex->route ? ex->route : &s->unmatched;
    pthread_mutex_lock(&ex->lock);
    unsigned status = ex->is_answered ? ex->status : 0;
    if (log_min_level <= LOG_LEVEL_DEBUG) {
        log_traced_request(conn, ex, status); /* before is_completed: ex is still ours */
    }
    ex->is_completed = true;
    /* A handler that holds the exchange and has not answered yet frees it when it does. */
    bool must_free = !ex->is_handled || ex->is_responded;
    pthread_mutex_unlock(&ex->lock);

    if (status >= 100 && status < 600) {
        metric_inc(r->requests[status / 100 - 1]);
    }
    metric_observe(r->duration, elapsed_s(&ex->started));

    pthread_mutex_lock(&l->lock);
    /* A resumed connection whose client went away completes without another access call. */
    suspended_remove(l, ex);
    l->n_active--;
    if (l->is_stopping) {
        pthread_cond_broadcast(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
    if (must_free) {
        exchange_free(ex);
    }
}

/* A connection opens or closes (on its loop's thread). Opening counts it against the caps; one
 * over a cap is still accepted, to be answered 503 when its head comes (closing it at once
 * would look like a network fault to the client, not knowing would look like a hang). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_loop *l = cls;
    struct http_server *s = l->server;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        metric_inc(s->connections_total);
        metric_add(s->connections_open, 1);
        struct http_conn *c = xcalloc(1, sizeof *c);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->is_first = true;
        client_addr(conn, c->addr);
        unsigned open = atomic_fetch_add(&s->n_open, 1) + 1;
        unsigned of_client = client_add(&s->clients, c->addr);
        c->phase = PHASE_WAIT;
        c->deadline_ms = now_ms() + (int64_t)s->opts.head_timeout_s * 1000;
        if (open > s->opts.max_connections || of_client > s->opts.max_connections_per_client) {
            c->phase = PHASE_REFUSED;
            c->refused =
                open > s->opts.max_connections ? REFUSE_MAX_CONNECTIONS : REFUSE_MAX_PER_CLIENT;
            c->deadline_ms = now_ms() + HTTP_REFUSED_LINGER_MS;
            metric_inc(s->refused[c->refused]);
        }
        c->next = l->conns;
        if (l->conns) {
            l->conns->prev = c;
        }
        l->conns = c;
        *socket_ctx = c;
        return;
    }
    metric_add(s->connections_open, -1);
    struct http_conn *c = *socket_ctx;
    if (!c) {
        return;
    }
    *socket_ctx = NULL;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        l->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    client_remove(&s->clients, c->addr);
    atomic_fetch_sub(&s->n_open, 1);
    free(c);
}

/* ---- server lifecycle ---- */

static void add_route(struct http_server *s, enum route_kind kind, const char *method,
                      const char *pattern, http_handler_fn fn, void *ctx, size_t max_body_bytes)
{
    s->routes = xrealloc(s->routes, (s->n_routes + 1) * sizeof *s->routes);
    struct route *r = &s->routes[s->n_routes];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->method = xstrdup(method);
    r->pattern = xstrdup(pattern);
    r->fn = fn;
    r->ctx = ctx;
    r->max_body_bytes = max_body_bytes ? max_body_bytes : s->opts.max_body_bytes;
    if (kind == ROUTE_HANDLER) {
        r->segments_mem = xstrdup(pattern);
        r->segments = split_segments(r->segments_mem, &r->n_segments, HTTP_MAX_SEGMENTS);
        if (!r->segments || r->n_segments == 0) {
            log_error("http: route pattern '%s' is invalid", pattern);
            abort(); /* a programming error in the process's wiring */
        }
    }
    route_init_metrics(r);
    s->n_routes++;
}

struct http_server *http_server_new(const struct http_server_options *opts)
{
    struct http_server *s = xcalloc(1, sizeof *s);
    s->opts = *opts;
    s->listen = xstrdup(opts->listen ? opts->listen : "127.0.0.1:8080");
    s->opts.listen = s->listen;
    if (!s->opts.threads) {
        s->opts.threads = HTTP_DEFAULT_THREADS;
    }
    if (s->opts.threads > HTTP_MAX_THREADS) {
        s->opts.threads = HTTP_MAX_THREADS;
    }
    s->listen_fd = -1;
    if (!s->opts.max_body_bytes) {
        s->opts.max_body_bytes = HTTP_DEFAULT_MAX_BODY_BYTES;
    }
    if (!s->opts.max_connections) {
        s->opts.max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
    }
    if (!s->opts.timeout_s) {
        s->opts.timeout_s = HTTP_DEFAULT_TIMEOUT_S;
    }
    if (!s->opts.max_connections_per_client) {
        s->opts.max_connections_per_client = HTTP_DEFAULT_MAX_PER_CLIENT;
    }
    if (!s->opts.head_timeout_s) {
        s->opts.head_timeout_s = HTTP_DEFAULT_HEAD_TIMEOUT_S;
    }
    if (!s->opts.body_timeout_s) {
        s->opts.body_timeout_s = HTTP_DEFAULT_BODY_TIMEOUT_S;
    }
    pthread_mutex_init(&s->clients.lock, NULL);
    s->unmatched.kind = ROUTE_UNMATCHED;
    s->unmatched.method = xstrdup("any");
    s->unmatched.pattern = xstrdup("unmatched");
    route_init_metrics(&s->unmatched);
    cors_init(s, opts->cors_origins);
    s->opts.cors_origins = NULL; /* the caller's string is not kept */
    struct buf labels;
    buf_init(&labels, 1024);
    buf_appends(&labels, "listen=\"");
    append_label_value(&labels, s->listen);
    buf_appends(&labels, "\"");
    s->connections_total = metrics_counter(
        "http_connections_total", "TCP connections accepted by the HTTP server.", labels.data);
    s->connections_open = metrics_gauge("http_connections_open",
                                        "TCP connections open on the HTTP server.", labels.data);
    static const char *const refuse_names[REFUSE_COUNT] = {"max_connections", "max_per_client"};
    for (int i = 0; i < REFUSE_COUNT; i++) {
        buf_reset(&labels);
        buf_appends(&labels, "listen=\"");
        append_label_value(&labels, s->listen);
        buf_appendf(&labels, "\",reason=\"%s\"", refuse_names[i]);
        s->refused[i] =
            metrics_counter("http_connections_refused_total",
                            "Connections answered 503 and closed for a cap, by cap.", labels.data);
    }
    static const char *const timeout_names[TIMEOUT_COUNT] = {"head", "body", "idle"};
    for (int i = 0; i < TIMEOUT_COUNT; i++) {
        buf_reset(&labels);
        buf_appends(&labels, "listen=\"");
        append_label_value(&labels, s->listen);
        buf_appendf(&labels, "\",phase=\"%s\"", timeout_names[i]);
        s->timed_out[i] = metrics_counter("http_connections_timed_out_total",
                                          "Connections closed by the server at a deadline: "
                                          "request head, request body, or idle keep-alive.",
                                          labels.data);
    }
    buf_release(&labels);
    add_route(s, ROUTE_HANDLER, "GET", "/healthz", builtin_healthz, s, 0);
    add_route(s, ROUTE_HANDLER, "GET", "/readyz", builtin_readyz, s, 0);
    add_route(s, ROUTE_HANDLER, "GET", "/metrics", builtin_metrics, s, 0);
    return s;
}

void http_server_route(struct http_server *s, const char *method, const char *pattern,
                       http_handler_fn fn, void *ctx, size_t max_body_bytes)
{
    add_route(s, ROUTE_HANDLER, method, pattern, fn, ctx, max_body_bytes);
}

void http_server_static(struct http_server *s, const char *prefix, const char *dir)
{
    char *real = realpath(dir, NULL);
    if (!real) {
        log_error("http: static directory '%s' not found: %s", dir, strerror(errno));
        real = xstrdup(dir); /* serves nothing: every lookup fails */
    }
    add_route(s, ROUTE_STATIC, "GET", prefix, NULL, NULL, 0);
    s->routes[s->n_routes - 1].dir = real;
}

/* libmicrohttpd's own error messages, into our log. Clients that go away, or that the server
 * closes at a deadline, are routine (thousands a second in a slow-header attack): debug. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n > 0) {
        size_t len = strlen(line);
        while (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        }
        bool is_routine = strstr(line, "closed") || strstr(line, "reset") ||
                          strstr(line, "disconnected") || strstr(line, "Broken pipe");
        if (is_routine) {
            log_debug("http: libmicrohttpd: %s", line);
        } else {
            log_warn("http: libmicrohttpd: %s", line);
        }
    }
}

/* Parses "host:port" / "[v6]:port" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *ss_len,
                        char *err, size_t err_len)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host) {
        snprintf(err, err_len, "listen address '%s' is not host:port", listen);
        return -1;
    }
    const char *h = listen;
    size_t hlen = (size_t)(colon - listen);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535) {
        snprintf(err, err_len, "listen address '%s' has a bad port", listen);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%ld", port);
    int rc = getaddrinfo(hlen ? host : NULL, port_s, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, err_len, "listen address '%s': %s", listen, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *ss_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The listening socket every loop's daemon accepts from (non-blocking: the loop that loses the
 * race for a new connection gets EAGAIN). Returns the socket, or -1 with errno set. */
static int listen_socket(const struct sockaddr_storage *ss, socklen_t ss_len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0) ||
        bind(fd, (const struct sockaddr *)ss, ss_len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One polling thread: libmicrohttpd's own epoll_wait over its daemon's sockets, the listening
 * socket and the loop's wake-up eventfd (added to the daemon's epoll set with a NULL pointer,
 * which libmicrohttpd skips: so a wake-up costs no second poll call), then the daemon does what
 * is ready (accept, read, run handlers, take back resumed connections, write, time out idle
 * ones); then the deadlines of the loop's connections. */
static void *loop_main(void *arg)
{
    struct http_loop *l = arg;
    while (!atomic_load(&l->must_stop)) {
        if (atomic_load(&l->must_quiesce) && !l->is_quiesced) {
            (void)MHD_quiesce_daemon(l->daemon); /* the socket is the server's to close */
            pthread_mutex_lock(&l->lock);
            l->is_quiesced = true;
            pthread_cond_broadcast(&l->cond);
            pthread_mutex_unlock(&l->lock);
        }
        int64_t now = now_ms();
        int64_t wait_ms = l->next_sweep_ms > now ? l->next_sweep_ms - now : 0;
        (void)MHD_run_wait(l->daemon, (int32_t)wait_ms);
        /* The eventfd is edge-triggered: every write is one wake-up and it is never read (its
         * counter cannot reach its limit of 2^64 - 2). Cleared after the daemon ran: it takes
         * back resumed connections first thing in its next run, and a connection resumed after
         * this line writes the eventfd again. */
        atomic_store(&l->is_woken, false);
        now = now_ms();
        if (now >= l->next_sweep_ms) {
            loop_sweep(l, now);
            l->next_sweep_ms = now + HTTP_SWEEP_MS;
        }
    }
    return NULL;
}

/* Stops and frees the loops (their threads first) and closes the listening socket. */
static void loops_stop(struct http_server *s)
{
    for (unsigned i = 0; i < s->n_loops; i++) {
        struct http_loop *l = &s->loops[i];
        if (l->has_thread) {
            atomic_store(&l->must_stop, true);
            atomic_store(&l->is_woken, false);
            loop_wake(l);
        }
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        struct http_loop *l = &s->loops[i];
        if (l->has_thread) {
            pthread_join(l->thread, NULL);
        }
        if (!l->is_quiesced) {
            (void)MHD_quiesce_daemon(l->daemon); /* else MHD_stop_daemon closes the socket */
        }
        MHD_stop_daemon(l->daemon);
    }
    /* A thread that resumed a connection may not have woken its loop yet. */
    while (atomic_load(&s->n_waking) > 0) {
        sched_yield();
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        close(s->loops[i].wake_fd);
    }
    for (unsigned i = 0; i < s->opts.threads && s->loops; i++) {
        pthread_cond_destroy(&s->loops[i].cond);
        pthread_mutex_destroy(&s->loops[i].lock);
    }
    free(s->loops);
    s->loops = NULL;
    s->n_loops = 0;
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
    }
}

/* Raises RLIMIT_NOFILE's soft limit to its hard limit (LimitNOFILE= in a systemd unit sets
 * both; a shell's ulimit -n often only the soft one), then lowers max_connections to what fits
 * under it, with a warning: a connection must never fail for want of a descriptor. */
static void fit_descriptor_limit(struct http_server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            rl = raised;
        }
    }
    if (rl.rlim_cur == RLIM_INFINITY) {
        return;
    }
    rlim_t room =
        rl.rlim_cur > 2 * HTTP_FD_RESERVE ? rl.rlim_cur - HTTP_FD_RESERVE : rl.rlim_cur / 2;
    if ((rlim_t)s->opts.max_connections > room) {
        log_warn("http: %s: max_connections %u lowered to %lu to fit the descriptor limit "
                 "(RLIMIT_NOFILE %lu; raise LimitNOFILE for more)",
                 s->listen, s->opts.max_connections, (unsigned long)room,
                 (unsigned long)rl.rlim_cur);
        s->opts.max_connections = (unsigned)room;
    }
}

int http_server_start(struct http_server *s, char *err, size_t err_len)
{
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    if (parse_listen(s->listen, &ss, &ss_len, err, err_len) != 0) {
        return -1;
    }
    s->listen_fd = listen_socket(&ss, ss_len);
    if (s->listen_fd < 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", s->listen, strerror(errno));
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname(s->listen_fd, (struct sockaddr *)&bound, &bound_len) == 0) {
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    }
    fit_descriptor_limit(s);
    /* Each polling thread runs a daemon of its own in external-epoll mode instead of
     * libmicrohttpd's internal thread pool: there, every MHD_resume_connection() writes the
     * daemon's eventfd, one system call per asynchronous answer (~25 % of the publisher's);
     * here a resume only marks the connection and loop_wake() writes once per sweep
     * (docs/performance.md). Each daemon may take every connection (the loops race for
     * accept); the caps are the server's (on_connection), and libmicrohttpd's own limit, past
     * which it would stop accepting, sits above them with room for the refused ones. */
    unsigned mhd_limit = s->opts.max_connections + s->opts.max_connections / 8 + 64;
    s->loops = xcalloc(s->opts.threads, sizeof *s->loops);
    for (unsigned i = 0; i < s->opts.threads; i++) {
        struct http_loop *l = &s->loops[i];
        l->server = s;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
        l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->wake_fd < 0) {
            snprintf(err, err_len, "cannot create an eventfd: %s", strerror(errno));
            loops_stop(s);
            return -1;
        }
        struct MHD_OptionItem options[] = {
            {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL}, /* first, to catch all */
            {MHD_OPTION_LISTEN_SOCKET, s->listen_fd, NULL},
            /* Its idle timer one second later than ours: the sweep closes idle keep-alive
             * connections (and counts them); this one remains for a client that stops
             * sending in the middle of a request. */
            {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)s->opts.timeout_s + 1, NULL},
            {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)mhd_limit, NULL},
            {MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONNECTION_MEMORY_BYTES, NULL},
            {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, l},
            {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, l},
            {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_request_line, l},
            {MHD_OPTION_END, 0, NULL},
        };
        unsigned flags = MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
        if (ss.ss_family == AF_INET6) {
            flags |= MHD_USE_IPv6;
        }
        errno = 0;
        l->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, l, MHD_OPTION_ARRAY, options,
                                     MHD_OPTION_END);
        const union MHD_DaemonInfo *di =
            l->daemon ? MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
        struct epoll_event wake = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
        if (!l->daemon || !di || epoll_ctl(di->epoll_fd, EPOLL_CTL_ADD, l->wake_fd, &wake) != 0) {
            snprintf(err, err_len, "cannot listen on %s: %s", s->listen,
                     errno ? strerror(errno) : "libmicrohttpd refused to start");
            if (l->daemon) {
                (void)MHD_quiesce_daemon(l->daemon);
                MHD_stop_daemon(l->daemon);
            }
            close(l->wake_fd);
            loops_stop(s);
            return -1;
        }
        l->next_sweep_ms = now_ms() + HTTP_SWEEP_MS;
        s->n_loops++;
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        struct http_loop *l = &s->loops[i];
        int rc = pthread_create(&l->thread, NULL, loop_main, l);
        if (rc != 0) {
            snprintf(err, err_len, "cannot start a polling thread: %s", strerror(rc));
            loops_stop(s);
            return -1;
        }
        l->has_thread = true;
        char name[16];
        snprintf(name, sizeof name, "http-%u", i);
        pthread_setname_np(l->thread, name);
    }
    log_info("http: listening on %s (port %u)", s->listen, s->port);
    return 0;
}

unsigned http_server_port(const struct http_server *s)
{
    return s->port;
}

static struct timespec deadline_in(unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

/* Waits on l->cond until pred holds or the deadline passes. Called with l->lock held. */
static void wait_until(struct http_loop *l, bool (*pred)(const struct http_loop *),
                       const struct timespec *deadline)
{
    while (!pred(l)) {
        if (pthread_cond_timedwait(&l->cond, &l->lock, deadline) == ETIMEDOUT) {
            break;
        }
    }
}

static bool is_quiesced(const struct http_loop *l)
{
    return l->is_quiesced;
}

static bool has_no_suspended(const struct http_loop *l)
{
    return l->suspended == NULL;
}

static bool has_no_active(const struct http_loop *l)
{
    return l->n_active == 0;
}

/* Answers 503 in their handlers' place the exchanges of l still waiting; a handler answering
 * later finds is_answered set and only frees the exchange. Called with l->lock held; the
 * connections are resumed by the caller outside it (libmicrohttpd takes its own locks there),
 * and stay valid until then. Returns how many of them went into resume. */
static size_t force_answers(struct http_loop *l, struct http_exchange **resume)
{
    static const char body[] =
        "{\"error\":\"shutting_down\",\"message\":\"The server is shutting down.\"}";
    size_t n = 0;
    for (struct http_exchange *ex = l->suspended; ex; ex = ex->next) {
        pthread_mutex_lock(&ex->lock);
        bool is_pending = !ex->is_answered;
        pthread_mutex_unlock(&ex->lock);
        if (!is_pending) {
            continue;
        }
        bool must_resume = exchange_answer(ex, 503, NULL, body, sizeof body - 1, false);
        pthread_mutex_lock(&ex->lock);
        ex->is_forced = true;
        ex->server = NULL;
        pthread_mutex_unlock(&ex->lock);
        if (must_resume) {
            resume[n++] = ex;
        }
    }
    return n;
}

void http_server_free(struct http_server *s, unsigned grace_ms)
{
    if (!s) {
        return;
    }
    if (s->n_loops > 0) {
        /* Stop accepting: each loop quiesces its own daemon. From then on a handler that goes
         * asynchronous is answered 503 at once (is_stopping). */
        for (unsigned i = 0; i < s->n_loops; i++) {
            atomic_store(&s->loops[i].must_quiesce, true);
            loop_wake(&s->loops[i]);
        }
        struct timespec deadline = deadline_in(HTTP_SHUTDOWN_FLUSH_MS);
        for (unsigned i = 0; i < s->n_loops; i++) {
            struct http_loop *l = &s->loops[i];
            pthread_mutex_lock(&l->lock);
            wait_until(l, is_quiesced, &deadline);
            l->is_stopping = true;
            pthread_mutex_unlock(&l->lock);
        }
        /* Wait for the suspended exchanges to be answered, then answer the rest. */
        deadline = deadline_in(grace_ms);
        for (unsigned i = 0; i < s->n_loops; i++) {
            struct http_loop *l = &s->loops[i];
            pthread_mutex_lock(&l->lock);
            wait_until(l, has_no_suspended, &deadline);
            size_t n = 0;
            for (struct http_exchange *ex = l->suspended; ex; ex = ex->next) {
                n++;
            }
            struct http_exchange **resume = xcalloc(n + 1, sizeof *resume);
            n = force_answers(l, resume);
            pthread_mutex_unlock(&l->lock);
            for (size_t k = 0; k < n; k++) {
                exchange_resume(resume[k], true);
            }
            free(resume);
        }
        /* Give the answers time to leave. */
        deadline = deadline_in(HTTP_SHUTDOWN_FLUSH_MS);
        for (unsigned i = 0; i < s->n_loops; i++) {
            struct http_loop *l = &s->loops[i];
            pthread_mutex_lock(&l->lock);
            wait_until(l, has_no_active, &deadline);
            pthread_mutex_unlock(&l->lock);
        }
    }
    loops_stop(s);
    for (size_t i = 0; i < s->n_routes; i++) {
        route_release(&s->routes[i]);
    }
    free(s->routes);
    route_release(&s->unmatched);
    for (size_t i = 0; i < s->n_cors; i++) {
        free(s->cors[i]);
    }
    free(s->static_csp);
    free(s->listen);
    client_table_release(&s->clients);
    free(s);
}
