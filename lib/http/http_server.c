/* http_server.c - the HTTP server's public API (see http_server.h): routes, exchanges and their
 * answers, CORS, static files, the built-in endpoints, start and free. The connections are
 * http_loop.c's, the request parser http_request.c's, the answer's bytes http_response.c's
 * (http_server_int.h has the map).
 *
 * An exchange is one request. The loop creates it when the request's head is in, parses the head
 * into it (http_exchange_new), routes it and answers what it can at once (http_exchange_begin),
 * feeds it its body and runs its handler (http_exchange_run). A handler answers with
 * http_respond*() exactly once, before it returns or later from any thread: the answer's bytes
 * are built by the answering thread, and an answer that comes after the handler returned is
 * pushed back to the loop (http_loop_deliver). The exchange is freed by whichever comes second
 * of the loop being done with it (http_exchange_done) and the handler's answer: both under the
 * exchange's lock, so that an answer given after a forced 503 at shutdown (is_forced) is still
 * safe, the server gone. */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "http/http_server_int.h"
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
#define HTTP_MAX_SEGMENTS 16
/* A static file larger than this is not served (the pages are small; it is read into memory). */
#define HTTP_MAX_STATIC_BYTES (64 * 1024 * 1024)

/* The CSP of static files; connect-src gets the CORS origins appended (the pages call them). */
static const char HTTP_STATIC_CSP_HEAD[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'";
static const char HTTP_STATIC_CSP_TAIL[] = "; frame-ancestors 'none'; base-uri 'none'";
#define HTTP_MAX_CORS_ORIGINS 16
#define HTTP_MAX_ORIGIN_BYTES 256
/* How long a browser may reuse a preflight's answer. */
#define HTTP_CORS_MAX_AGE_S "600"

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

const char *http_server_lib_version(void)
{
    return "builtin"; /* the HTTP/1.1 layer is the project's own (http_request.c) */
}

/* ---- exchange lifetime ---- */

static char query_no_value[1]; /* a query name without '=': its value (never freed) */

static void exchange_free(struct http_exchange *ex)
{
    for (size_t i = 0; i < ex->n_headers; i++) {
        free(ex->headers[i].name);
        free(ex->headers[i].value);
    }
    free(ex->headers);
    free(ex->cors_origin);
    buf_release(&ex->resp);
    buf_release(&ex->body);
    free(ex->path);
    free(ex->seg_copy);
    if (ex->query) {
        for (char **q = ex->query; *q; q++) {
            if (*q != query_no_value) {
                free(*q);
            }
        }
        free(ex->query);
    }
    pthread_mutex_destroy(&ex->lock);
    free(ex);
}

struct http_exchange *http_exchange_new(struct http_server *s, struct http_loop *l,
                                        struct http_conn *c, const char *head, size_t len)
{
    /* One allocation: the exchange, room for its header fields (at most one per line) and the
     * head's copy. */
    size_t n_lines = 0;
    for (const char *p = head; (p = memchr(p, '\n', len - (size_t)(p - head))) != NULL; p++) {
        n_lines++;
    }
    size_t n_fields = n_lines < HTTP_MAX_HEADER_FIELDS ? n_lines : HTTP_MAX_HEADER_FIELDS;
    size_t fields_at = (sizeof(struct http_exchange) + 15) & ~(size_t)15;
    size_t head_at = fields_at + n_fields * sizeof(struct http_field);
    char *mem = xcalloc(1, head_at + len + 1);
    struct http_exchange *ex = (struct http_exchange *)(void *)mem;
    ex->fields = (struct http_field *)(void *)(mem + fields_at);
    ex->head = mem + head_at;
    memcpy(ex->head, head, len);
    pthread_mutex_init(&ex->lock, NULL);
    ex->server = s;
    ex->loop = l;
    ex->conn = c;
    ex->req.minor_version = 1;
    clock_gettime(CLOCK_MONOTONIC, &ex->started);
    return ex;
}

/* Builds the answer's bytes (outside the lock), then records it. From a handler (is_from_handler)
 * an answer after the handler returned goes back to the loop. */
static void exchange_answer(struct http_exchange *ex, unsigned status, const char *content_type,
                            const char *body, size_t len, bool is_from_handler)
{
    struct buf resp;
    buf_init(&resp, 0);
    http_response_build(&resp, ex, status, content_type, body, len);
    pthread_mutex_lock(&ex->lock);
    if (is_from_handler) {
        if (ex->is_responded) {
            pthread_mutex_unlock(&ex->lock);
            buf_release(&resp);
            log_error("http: an exchange was answered twice (ignored)");
            return;
        }
        ex->is_responded = true;
    }
    if (ex->is_answered) {
        /* The server answered 503 at shutdown already; the exchange only waited for us. */
        bool must_free = ex->is_done;
        pthread_mutex_unlock(&ex->lock);
        buf_release(&resp);
        if (must_free) {
            exchange_free(ex);
        }
        return;
    }
    ex->resp = resp;
    ex->status = status;
    ex->is_answered = true;
    if (!is_from_handler || !ex->is_returned) {
        pthread_mutex_unlock(&ex->lock);
        return;
    }
    /* Counted before the lock is released: the loops are not freed (http_loops_stop) until the
     * exchange is pushed and its loop woken. The loop keeps the socket open and the exchange
     * alive until it takes it back from the stack, which it cannot before the push. */
    atomic_fetch_add(&ex->server->n_waking, 1);
    if (!ex->may_send_direct) {
        http_loop_deliver(ex, true);
        pthread_mutex_unlock(&ex->lock);
        return;
    }
    /* The send happens outside the lock: it wakes the client, which may preempt this thread,
     * and the loop locks the exchange when the client's next request arrives (it used to wait
     * here for the whole send, with a context switch each time). Nobody else writes the socket
     * meanwhile: the loop only does after it took the exchange back. */
    ex->is_sending = true;
    pthread_mutex_unlock(&ex->lock);
    size_t off = ex->resp_off;
    while (off < resp.len) {
        ssize_t n = send(ex->fd, resp.data + off, resp.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break; /* full or failed: the loop sends the rest or sees the error */
        }
    }
    pthread_mutex_lock(&ex->lock);
    ex->resp_off = off;
    ex->is_sending = false;
    /* Not sent whole, or bytes came behind the request meanwhile (conn_parked_input cleared
     * may_send_direct): the loop must take the exchange back now, so it is woken. */
    http_loop_deliver(ex, off != resp.len || !ex->may_send_direct);
    pthread_mutex_unlock(&ex->lock);
}

static void server_answer(struct http_exchange *ex, unsigned status, const char *content_type,
                          const char *body, size_t len)
{
    exchange_answer(ex, status, content_type, body, len, false);
}

static void server_answer_error(struct http_exchange *ex, unsigned status, const char *code,
                                const char *message)
{
    struct buf b;
    buf_init(&b, 0);
    buf_appends(&b, "{\"error\":");
    buf_append_json_string(&b, code);
    buf_appends(&b, ",\"message\":");
    buf_append_json_string(&b, message);
    buf_appends(&b, "}");
    server_answer(ex, status, NULL, b.data, b.len);
    buf_release(&b);
}

void http_exchange_error(struct http_exchange *ex, unsigned status, const char *code,
                         const char *message)
{
    if (!ex->route) {
        ex->route = &ex->server->unmatched;
    }
    server_answer_error(ex, status, code, message);
}

int http_exchange_body(struct http_exchange *ex, const char *p, size_t n)
{
    return buf_append(&ex->body, p, n) == 0 ? 0 : -1;
}

/* 503 in the handler's place: the handler may still add headers on its thread, so the answer is
 * built without them. */
static void exchange_force_build(struct buf *out)
{
    buf_init(out, 0);
    http_response_error(out, 503, "shutting_down", "The server is shutting down.");
}

bool http_exchange_run(struct http_exchange *ex, bool is_stopping)
{
    ex->is_handled = true;
    ex->route->fn(ex, ex->route->ctx);
    pthread_mutex_lock(&ex->lock);
    ex->is_returned = true;
    bool is_answered = ex->is_answered;
    pthread_mutex_unlock(&ex->lock);
    if (is_answered || !is_stopping) {
        return is_answered;
    }
    /* Too late to wait for an asynchronous answer: the server answers for the handler. */
    return http_exchange_force(ex);
}

bool http_exchange_force(struct http_exchange *ex)
{
    struct buf resp;
    exchange_force_build(&resp);
    pthread_mutex_lock(&ex->lock);
    if (ex->is_answered) {
        pthread_mutex_unlock(&ex->lock);
        buf_release(&resp);
        return false;
    }
    ex->resp = resp;
    ex->status = 503;
    ex->is_answered = true;
    ex->is_forced = true;
    ex->is_close = true;
    pthread_mutex_unlock(&ex->lock);
    return true;
}

/* One debug line per request that belongs to a trace (it carries a traceparent: a publish, a
 * delivery), with the trace and event ids, so every hop of an event's journey is in the log
 * (docs/logging.md, busctl trace). Scrapes and probes carry none and stay out of the log. */
static void log_traced_request(const struct http_exchange *ex, unsigned status)
{
    const char *tp = http_header(ex, "traceparent");
    struct trace t;
    if (tp == NULL || trace_parse(tp, &t) != 0) {
        return;
    }
    const char *ce_id = http_header(ex, "ce-id");
    const char *bus_route = http_header(ex, "X-Bus-Route");
    const char *attempt = http_header(ex, "X-Bus-Attempt");
    const char *method = ex->req.method ? ex->req.method : "?";
    json_t *extra =
        json_pack("{s:s, s:s, s:i, s:f}", "method", method, "path", ex->path ? ex->path : "",
                  "status", (int)status, "seconds", elapsed_s(&ex->started));
    if (extra && bus_route) {
        json_object_set_new(extra, "route", json_string(bus_route));
    }
    if (extra && attempt) {
        json_object_set_new(extra, "attempt", json_integer(atoi(attempt)));
    }
    log_at(LOG_LEVEL_DEBUG, t.trace_id, ce_id, extra, "http: %s %s answered %u", method,
           ex->path ? ex->path : "?", status);
    json_decref(extra);
}

void http_exchange_done(struct http_exchange *ex)
{
    struct http_server *s = ex->server;
    const struct route *r = ex->route ? ex->route : &s->unmatched;
    pthread_mutex_lock(&ex->lock);
    unsigned status = ex->is_answered ? ex->status : 0;
    pthread_mutex_unlock(&ex->lock);
    if (status >= 100 && status < 600) {
        metric_inc(r->requests[status / 100 - 1]);
    }
    metric_observe(r->duration, elapsed_s(&ex->started));
    if (log_min_level <= LOG_LEVEL_DEBUG && ex->req.method) {
        log_traced_request(ex, status); /* before is_done: ex is still ours */
    }
    pthread_mutex_lock(&ex->lock);
    ex->is_done = true;
    /* A handler that holds the exchange and has not answered yet frees it when it does. */
    bool must_free = !ex->is_handled || ex->is_responded;
    pthread_mutex_unlock(&ex->lock);
    if (must_free) {
        exchange_free(ex);
    }
}

/* ---- the public request accessors and answers ---- */

const char *http_method(const struct http_exchange *ex)
{
    return ex->req.method;
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
    return http_request_field(&ex->req, name);
}

/* The query's name=value pairs, decoded (form encoding: '+' is a space), as a NULL-terminated
 * array name, value, name, value ... (a name without '=' has a NULL value: not given). */
static char **query_parse(const char *q)
{
    size_t n = 1;
    for (const char *p = q; *p; p++) {
        n += *p == '&';
    }
    char **out = xcalloc(2 * n + 1, sizeof *out);
    size_t k = 0;
    while (*q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t name_len = eq ? (size_t)(eq - q) : len;
        if (name_len > 0) {
            out[k] = xmalloc(name_len + 1);
            http_percent_decode(out[k], q, name_len, true);
            k++;
            if (eq) {
                size_t vlen = len - name_len - 1;
                out[k] = xmalloc(vlen + 1);
                http_percent_decode(out[k], eq + 1, vlen, true);
            } else {
                out[k] = query_no_value;
            }
            k++;
        }
        q += len + (end ? 1 : 0);
    }
    out[k] = NULL;
    return out;
}

const char *http_query(const struct http_exchange *ex, const char *name)
{
    struct http_exchange *mut = (struct http_exchange *)(uintptr_t)ex; /* the cache only */
    if (!mut->query) {
        const char *q = mut->req.target ? strchr(mut->req.target, '?') : NULL;
        mut->query = query_parse(q ? q + 1 : "");
    }
    for (char **p = mut->query; p[0] && p[1]; p += 2) {
        if (strcmp(p[0], name) == 0) {
            return p[1] == query_no_value ? NULL : p[1];
        }
    }
    return NULL;
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
    const char *v = http_header(ex, "Authorization");
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
    if (strcasecmp(name, "Connection") == 0) {
        /* The connection's fate is the server's: "close" is honoured, nothing else is sent. */
        if (strcasecmp(value, "close") == 0) {
            ex->is_close = true;
        }
        return;
    }
    ex->headers = xrealloc(ex->headers, (ex->n_headers + 1) * sizeof *ex->headers);
    ex->headers[ex->n_headers].name = xstrdup(name);
    ex->headers[ex->n_headers].value = xstrdup(value);
    ex->n_headers++;
}

void http_respond(struct http_exchange *ex, unsigned status, const char *content_type,
                  const char *body, size_t len)
{
    exchange_answer(ex, status, content_type, body ? body : "", len, true);
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

/* Serves a static file (read into memory: the pages are small); on the polling thread, before
 * any handler. */
static void static_serve(struct http_exchange *ex, const struct route *r, const char *rel)
{
    char *file = static_resolve(r, rel);
    int fd = file ? open(file, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size > HTTP_MAX_STATIC_BYTES) {
        if (fd >= 0) {
            close(fd);
        }
        free(file);
        server_answer_error(ex, 404, "not_found", "No such file.");
        return;
    }
    size_t size = (size_t)st.st_size;
    char *data = xmalloc(size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, data + got, size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (got != size) {
        free(data);
        free(file);
        server_answer_error(ex, 500, "internal", "The file could not be served.");
        return;
    }
    http_add_header(ex, "Content-Security-Policy", ex->server->static_csp);
    http_add_header(ex, "X-Content-Type-Options", "nosniff");
    http_add_header(ex, "Referrer-Policy", "no-referrer");
    http_add_header(ex, "X-Frame-Options", "DENY");
    http_add_header(ex, "Cache-Control", "no-cache");
    server_answer(ex, 200, content_type_for(file), data, size);
    free(data);
    free(file);
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
    bool is_get = strcmp(ex->req.method, "GET") == 0 || strcmp(ex->req.method, "HEAD") == 0;
    for (size_t i = 0; segs && i < s->n_routes && !found; i++) {
        const struct route *r = &s->routes[i];
        if (r->kind != ROUTE_HANDLER) {
            continue;
        }
        const char *params[HTTP_MAX_PARAMS] = {NULL};
        if (!route_matches(r, segs, n, params)) {
            continue;
        }
        if (strcmp(r->method, ex->req.method) == 0) {
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
                     ex->req.method, allow.data);
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

/* ---- a request's head is in ---- */

bool http_exchange_begin(struct http_exchange *ex)
{
    struct http_server *s = ex->server;
    ex->route = &s->unmatched;
    ex->is_head_method = strcmp(ex->req.method, "HEAD") == 0;
    const char *t = ex->req.target;
    const char *q = strchr(t, '?');
    size_t path_len = q ? (size_t)(q - t) : strlen(t);
    if (!http_target_part_is_valid(t, t + path_len)) {
        server_answer_error(ex, 400, "bad_path",
                            "The path has an invalid percent-encoding, an encoded NUL or is not "
                            "UTF-8.");
        return false;
    }
    if (q && !http_target_part_is_valid(q + 1, q + strlen(q))) {
        server_answer_error(ex, 400, "bad_query",
                            "The query has an invalid percent-encoding, an encoded NUL or is not "
                            "UTF-8.");
        return false;
    }
    ex->path = xmalloc(path_len + 1);
    http_percent_decode(ex->path, t, path_len, false);
    ex->seg_copy = xstrdup(ex->path);

    if (s->n_cors > 0) {
        const char *allowed = cors_find(s, http_header(ex, "Origin"));
        ex->cors_origin = allowed ? xstrdup(allowed) : NULL;
        ex->has_cors = true;
        if (strcmp(ex->req.method, "OPTIONS") == 0) {
            cors_preflight(s, ex);
            return false;
        }
    }

    const struct route *r = route_find(s, ex);
    if (!r) {
        return false; /* 404 / 405 */
    }
    ex->route = r;
    if (r->kind == ROUTE_STATIC) {
        /* The part after the prefix, keeping its leading '/'. */
        size_t plen = strlen(r->pattern);
        const char *rel = strlen(ex->path) >= plen ? ex->path + plen : "";
        static_serve(ex, r, rel);
        return false;
    }
    buf_init(&ex->body, r->max_body_bytes);
    if (ex->req.has_length) {
        if (ex->req.content_length > r->max_body_bytes) {
            char msg[128];
            snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.",
                     r->max_body_bytes);
            ex->is_close = true; /* the body is not read */
            server_answer_error(ex, 413, "too_large", msg);
            return false;
        }
        /* One allocation for the announced body (bounded by the cap checked just above). */
        if (ex->req.content_length > 0) {
            (void)buf_reserve(&ex->body, (size_t)ex->req.content_length);
        }
    }
    return true;
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

/* The listening socket every loop accepts from (non-blocking: a loop that loses the race for a
 * new connection gets EAGAIN). Returns the socket, or -1 with errno set. */
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
    if (http_loops_start(s, err, err_len) != 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
        return -1;
    }
    log_info("http: listening on %s (port %u)", s->listen, s->port);
    return 0;
}

unsigned http_server_port(const struct http_server *s)
{
    return s->port;
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

void http_server_free(struct http_server *s, unsigned grace_ms)
{
    if (!s) {
        return;
    }
    if (s->loops) {
        http_loops_stop(s, grace_ms);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
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
