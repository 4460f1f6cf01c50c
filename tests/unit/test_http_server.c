/* test_http_server.c - http_server.h over real loopback HTTP.
 *
 * The client is a raw socket so that requests reach the server byte for byte (no client-side
 * path normalisation: the traversal tests need "../" on the wire). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "http/http_server.h"
#include "log.h"

#define WAIT_MS 10000

/* ---- a raw HTTP/1.1 client ---- */

struct reply {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
};

static int connect_port(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return; /* the server may close early (413); the reply tells */
        }
        data += n;
        len -= (size_t)n;
    }
}

/* Reads until the server closes; parses status line, headers and body (Content-Length or
 * until EOF; the requests say Connection: close). */
static void read_reply(int fd, struct reply *r)
{
    struct buf in;
    buf_init(&in, 16 * 1024 * 1024);
    char chunk[4096];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        assert_int_equal(buf_append(&in, chunk, (size_t)n), 0);
    }
    close(fd);
    memset(r, 0, sizeof *r);
    assert_non_null(in.data);
    char *sep = strstr(in.data, "\r\n\r\n");
    assert_non_null(sep);
    size_t hlen = (size_t)(sep - in.data);
    assert_true(hlen < sizeof r->head);
    memcpy(r->head, in.data, hlen);
    r->head[hlen] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
    r->body_len = in.len - hlen - 4;
    r->body = xstrndup(sep + 4, r->body_len);
    buf_release(&in);
}

static void reply_release(struct reply *r)
{
    free(r->body);
    r->body = NULL;
}

/* Value of a response header (case-insensitive name), copied into out; NULL when absent. */
static const char *reply_header(const struct reply *r, const char *name, char *out, size_t n)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ') {
                v++;
            }
            const char *end = strstr(v, "\r\n");
            size_t len = end ? (size_t)(end - v) : strlen(v);
            snprintf(out, n, "%.*s", (int)len, v);
            return out;
        }
    }
    return NULL;
}

/* A connection the server has accepted and counted: one keep-alive request answered 200 on it
 * (the server accepts on several threads, so a bare connect() may not be counted yet when the
 * next one arrives). */
static int connect_accepted(unsigned port)
{
    int fd = connect_port(port);
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    char got[16];
    size_t have = 0;
    while (have < 12) {
        ssize_t n = recv(fd, got + have, 12 - have, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n > 0);
        have += (size_t)n;
    }
    got[have] = '\0';
    assert_string_equal(got, "HTTP/1.1 200");
    return fd;
}

static void request(unsigned port, const char *method, const char *target, const char *extra,
                    const char *body, size_t body_len, struct reply *r)
{
    int fd = connect_port(port);
    struct buf req;
    buf_init(&req, 0);
    buf_appendf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s", method,
                target, extra ? extra : "");
    if (body) {
        buf_appendf(&req, "Content-Length: %zu\r\n", body_len);
    }
    buf_appends(&req, "\r\n");
    send_all(fd, req.data, req.len);
    if (body) {
        send_all(fd, body, body_len);
    }
    buf_release(&req);
    read_reply(fd, r);
}

static void get(unsigned port, const char *target, struct reply *r)
{
    request(port, "GET", target, NULL, NULL, 0, r);
}

/* Checks that the body is {"error": code, "message": <non-empty string>}. */
static void assert_error_body(const struct reply *r, const char *code)
{
    json_error_t jerr;
    json_t *o = json_loads(r->body, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "error")), code);
    const char *msg = json_string_value(json_object_get(o, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    json_decref(o);
}

/* ---- handlers ---- */

static void h_echo_params(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    json_t *o =
        json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "path", http_path(ex), "a", http_param(ex, 0),
                  "b", http_param(ex, 1), "q", http_query(ex, "q"), "token", http_bearer(ex));
    http_respond_json(ex, 200, o);
}

static void h_echo_body(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    const char *body = http_body(ex, &len);
    assert_int_equal(strlen(body), len); /* NUL-terminated */
    http_add_header(ex, "X-Body-Len", "set");
    http_respond(ex, 201, "text/plain", body, len);
}

/* Async: the handler only records the exchange; the test thread answers. */
static _Atomic(struct http_exchange *) parked;

static void h_park(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    atomic_store(&parked, ex);
}

static struct http_exchange *wait_parked(void)
{
    for (int i = 0; i < WAIT_MS; i++) {
        struct http_exchange *ex = atomic_exchange(&parked, NULL);
        if (ex) {
            return ex;
        }
        struct timespec ts = {.tv_nsec = 1000000};
        nanosleep(&ts, NULL); /* polling interval for the condition, not a stand-in for it */
    }
    fail_msg("the handler was not called");
    return NULL;
}

/* Async from a fresh thread that answers at once: races the handler's return. */
static void *answer_thread(void *arg)
{
    struct http_exchange *ex = arg;
    const char *id = http_param(ex, 0);
    char body[64];
    snprintf(body, sizeof body, "{\"id\":\"%s\"}", id);
    http_respond(ex, 200, NULL, body, strlen(body));
    return NULL;
}

static void h_race(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, answer_thread, ex), 0);
    pthread_detach(t);
}

/* Answers with the name of the polling thread it runs on ("http-0", "http-1", ...). */
static void h_thread(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    http_respond_json(ex, 200, json_pack("{s:s}", "thread", name));
}

static atomic_bool is_ready_flag;

static bool ready_fn(void *ctx, const char **reason)
{
    (void)ctx;
    if (!atomic_load(&is_ready_flag)) {
        *reason = "broker unreachable";
        return false;
    }
    return true;
}

/* ---- fixture ---- */

static char static_dir[256];

static void write_file(const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", static_dir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static struct http_server *start_server(unsigned threads)
{
    struct http_server_options o = {
        .listen = "127.0.0.1:0", .threads = threads, .max_body_bytes = 1024, .ready = ready_fn};
    struct http_server *s = http_server_new(&o);
    http_server_route(s, "GET", "/v1/items/{}/parts/{}", h_echo_params, NULL, 0);
    http_server_route(s, "GET", "/v1/items/{}", h_echo_params, NULL, 0);
    http_server_route(s, "DELETE", "/v1/items/{}", h_echo_params, NULL, 0);
    http_server_route(s, "POST", "/v1/echo", h_echo_body, NULL, 0);
    http_server_route(s, "POST", "/v1/big", h_echo_body, NULL, 100000);
    http_server_route(s, "POST", "/v1/park", h_park, NULL, 0);
    http_server_route(s, "GET", "/v1/race/{}", h_race, NULL, 0);
    http_server_route(s, "GET", "/v1/thread", h_thread, NULL, 0);
    http_server_static(s, "/ui/", static_dir);
    char err[256];
    assert_int_equal(http_server_start(s, err, sizeof err), 0);
    assert_true(http_server_port(s) > 0);
    return s;
}

static int setup(void **state)
{
    snprintf(static_dir, sizeof static_dir, "/tmp/test_http_server.%d", (int)getpid());
    assert_int_equal(mkdir(static_dir, 0700), 0);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/img", static_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file("index.html", "<!doctype html><title>t</title>");
    write_file("app.js", "console.log(1);");
    write_file("style.css", "body{}");
    write_file("img/logo.svg", "<svg/>");
    write_file("img/dot.png", "PNG");
    write_file("data.json", "{}");
    char link[300];
    snprintf(link, sizeof link, "%s/escape", static_dir);
    assert_int_equal(symlink("/etc/passwd", link), 0);
    atomic_store(&is_ready_flag, true);
    *state = start_server(2);
    return 0;
}

static int teardown(void **state)
{
    http_server_free(*state, 1000);
    const char *files[] = {"index.html",   "app.js",      "style.css",
                           "img/logo.svg", "img/dot.png", "data.json",
                           "escape",       "img",         ""};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", static_dir, files[i]);
        remove(path);
    }
    return 0;
}

static unsigned port_of(void **state)
{
    return http_server_port(*state);
}

/* ---- tests ---- */

/* Reads n answers from one keep-alive connection (Content-Length framed); statuses and bodies
 * in order. */
static void read_answers(int fd, int n, int *status, char bodies[][64])
{
    struct buf in;
    buf_init(&in, 1024 * 1024);
    int got = 0;
    size_t off = 0;
    while (got < n) {
        char *sep = in.data ? strstr(in.data + off, "\r\n\r\n") : NULL;
        const char *cl = sep ? strcasestr(in.data + off, "Content-Length: ") : NULL;
        if (sep && cl && cl < sep) {
            size_t blen = strtoul(cl + 16, NULL, 10);
            size_t body_at = (size_t)(sep - in.data) + 4;
            if (in.len >= body_at + blen) {
                assert_int_equal(sscanf(in.data + off, "HTTP/1.1 %d", &status[got]), 1);
                snprintf(bodies[got], 64, "%.*s", (int)blen, in.data + body_at);
                got++;
                off = body_at + blen;
                continue;
            }
        }
        char chunk[4096];
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        assert_true(r > 0);
        assert_int_equal(buf_append(&in, chunk, (size_t)r), 0);
    }
    assert_int_equal(off, in.len); /* nothing more than the answers asked for */
    buf_release(&in);
}

static void test_route_captures_segments_and_query(void **state)
{
    struct reply r;
    request(port_of(state), "GET", "/v1/items/abc/parts/42?q=x%20y",
            "Authorization: Bearer tok123\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "path")), "/v1/items/abc/parts/42");
    assert_string_equal(json_string_value(json_object_get(o, "a")), "abc");
    assert_string_equal(json_string_value(json_object_get(o, "b")), "42");
    assert_string_equal(json_string_value(json_object_get(o, "q")), "x y");
    assert_string_equal(json_string_value(json_object_get(o, "token")), "tok123");
    json_decref(o);
    reply_release(&r);

    get(port_of(state), "/v1/items/only", &r);
    assert_int_equal(r.status, 200);
    o = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "a")), "only");
    assert_true(json_is_null(json_object_get(o, "b")));
    assert_true(json_is_null(json_object_get(o, "token")));
    json_decref(o);
    reply_release(&r);
}

/* Paths are split at '/', empty segments skipped; a path of more segments than the split keeps
 * (HTTP_MAX_SEGMENTS) is 404, and under ASan proves the split stays within its array. */
static void test_path_segments_edge_cases(void **state)
{
    struct reply r;
    get(port_of(state), "//v1//items/abc/", &r);
    assert_int_equal(r.status, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "a")), "abc");
    json_decref(o);
    reply_release(&r);

    get(port_of(state), "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r", &r);
    assert_int_equal(r.status, 404);
    reply_release(&r);
}

static void test_unknown_path_is_404_json(void **state)
{
    struct reply r;
    get(port_of(state), "/v1/nothing/here", &r);
    assert_int_equal(r.status, 404);
    char v[128];
    assert_non_null(reply_header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json");
    assert_error_body(&r, "not_found");
    reply_release(&r);
    /* a pattern segment must match in full */
    get(port_of(state), "/v1/items/a/parts", &r);
    assert_int_equal(r.status, 404);
    reply_release(&r);
}

static void test_other_method_is_405_with_allow(void **state)
{
    struct reply r;
    request(port_of(state), "PUT", "/v1/items/abc", NULL, "{}", 2, &r);
    assert_int_equal(r.status, 405);
    char v[128];
    assert_non_null(reply_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "GET, DELETE");
    assert_error_body(&r, "method_not_allowed");
    reply_release(&r);
}

static void test_body_within_cap_reaches_handler(void **state)
{
    struct reply r;
    const char body[] = "{\"hello\":\"world\"}";
    request(port_of(state), "POST", "/v1/echo", NULL, body, sizeof body - 1, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, body);
    char v[64];
    assert_non_null(reply_header(&r, "X-Body-Len", v, sizeof v));
    reply_release(&r);

    /* a per-route cap larger than the server default */
    char *big = xmalloc(50000);
    memset(big, 'x', 50000);
    request(port_of(state), "POST", "/v1/big", NULL, big, 50000, &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.body_len, 50000);
    reply_release(&r);
    free(big);
}

static void test_content_length_over_cap_is_413_before_body(void **state)
{
    /* Only the headers are sent: the answer must come without the body being read. */
    int fd = connect_port(port_of(state));
    const char req[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                       "Connection: close\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    struct reply r;
    read_reply(fd, &r);
    assert_int_equal(r.status, 413);
    assert_error_body(&r, "too_large");
    reply_release(&r);
}

static void test_chunked_body_over_cap_is_413(void **state)
{
    int fd = connect_port(port_of(state));
    const char head[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        "Connection: close\r\n\r\n";
    send_all(fd, head, sizeof head - 1);
    char chunk[600];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 3; i++) { /* 1800 bytes > 1024 */
        char size[16];
        snprintf(size, sizeof size, "%zx\r\n", sizeof chunk);
        send_all(fd, size, strlen(size));
        send_all(fd, chunk, sizeof chunk);
        send_all(fd, "\r\n", 2);
    }
    send_all(fd, "0\r\n\r\n", 5);
    struct reply r;
    read_reply(fd, &r);
    assert_int_equal(r.status, 413);
    assert_error_body(&r, "too_large");
    reply_release(&r);
}

static void test_async_answer_from_another_thread(void **state)
{
    int fd = connect_port(port_of(state));
    const char req[] = "POST /v1/park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                       "Connection: close\r\n\r\n{}";
    send_all(fd, req, sizeof req - 1);
    struct http_exchange *ex = wait_parked();
    /* Still waiting: nothing was answered yet. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 50), 0);
    http_add_header(ex, "Retry-After", "7");
    http_respond_error(ex, 503, "unavailable", json_pack("{s:i}", "attempt", 3), "Try in %d s.", 7);
    struct reply r;
    read_reply(fd, &r);
    assert_int_equal(r.status, 503);
    char v[32];
    assert_non_null(reply_header(&r, "Retry-After", v, sizeof v));
    assert_string_equal(v, "7");
    assert_error_body(&r, "unavailable");
    json_t *o = json_loads(r.body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(o, "attempt")), 3);
    assert_string_equal(json_string_value(json_object_get(o, "message")), "Try in 7 s.");
    json_decref(o);
    reply_release(&r);
}

/* Answers given inside http_defer_begin/end (nested) leave only at the outermost end. */
static void test_deferred_answers_leave_together(void **state)
{
    /* Two parked requests; the second connection has another request pipelined behind its
     * own, so its answer must go through its loop (which wakes at the outermost
     * http_defer_end), while the first one's is written at once by the answering thread. */
    const char req[] = "POST /v1/park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                       "Connection: close\r\n\r\n{}";
    const char piped[] = "POST /v1/park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                         "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fds[2];
    struct http_exchange *exs[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = connect_port(port_of(state));
        send_all(fds[i], i == 0 ? req : piped, i == 0 ? sizeof req - 1 : sizeof piped - 1);
        exs[i] = wait_parked();
        /* Waiting: no answer before the handler's. */
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 50), 0);
    }
    http_defer_begin();
    http_defer_begin();
    http_respond(exs[0], 202, NULL, "{\"n\":0}", 7);
    http_defer_end(); /* inner: nothing woken yet */
    http_respond(exs[1], 202, NULL, "{\"n\":1}", 7);
    struct reply r;
    read_reply(fds[0], &r); /* written directly, before the sweep ends */
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "{\"n\":0}");
    reply_release(&r);
    http_defer_end();
    int status[2];
    char bodies[2][64];
    read_answers(fds[1], 2, status, bodies); /* its loop was woken: both answers, in order */
    assert_int_equal(status[0], 202);
    assert_string_equal(bodies[0], "{\"n\":1}");
    assert_int_equal(status[1], 200);
    close(fds[1]);
    /* Unbalanced ends are ignored; outside a sweep answers leave at once again. */
    http_defer_end();
    int fd = connect_port(port_of(state));
    send_all(fd, piped, sizeof piped - 1);
    struct http_exchange *ex = wait_parked();
    http_respond(ex, 202, NULL, "{}", 2);
    read_answers(fd, 2, status, bodies);
    assert_int_equal(status[0], 202);
    assert_int_equal(status[1], 200);
    close(fd);
}

static void test_answer_racing_handler_return(void **state)
{
    /* 200 requests whose answer comes from a new thread at once, racing the suspension. Eight
     * connections at a time. */
    enum { TOTAL = 200, PARALLEL = 8 };
    for (int i = 0; i < TOTAL; i += PARALLEL) {
        int fds[PARALLEL];
        for (int k = 0; k < PARALLEL; k++) {
            fds[k] = connect_port(port_of(state));
            char req[128];
            snprintf(req, sizeof req,
                     "GET /v1/race/r%d HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n\r\n",
                     i + k);
            send_all(fds[k], req, strlen(req));
        }
        for (int k = 0; k < PARALLEL; k++) {
            struct reply r;
            read_reply(fds[k], &r);
            assert_int_equal(r.status, 200);
            char want[64];
            snprintf(want, sizeof want, "{\"id\":\"r%d\"}", i + k);
            assert_string_equal(r.body, want);
            reply_release(&r);
        }
    }
}

static void test_healthz_readyz_metrics(void **state)
{
    struct reply r;
    get(port_of(state), "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    reply_release(&r);

    get(port_of(state), "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ready\"}");
    reply_release(&r);

    atomic_store(&is_ready_flag, false);
    get(port_of(state), "/readyz", &r);
    atomic_store(&is_ready_flag, true);
    assert_int_equal(r.status, 503);
    assert_error_body(&r, "not_ready");
    json_t *o = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "message")), "broker unreachable");
    json_decref(o);
    reply_release(&r);

    get(port_of(state), "/metrics", &r);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_non_null(reply_header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/plain; version=0.0.4");
    /* The route pattern, not the raw path, is the label; the /readyz requests above count. */
    assert_non_null(strstr(r.body, "http_requests_total{route=\"/readyz\",method=\"GET\","
                                   "status=\"2xx\"}"));
    assert_non_null(strstr(r.body, "http_requests_total{route=\"/readyz\",method=\"GET\","
                                   "status=\"5xx\"}"));
    assert_non_null(strstr(r.body, "http_request_duration_seconds_bucket{route=\"/healthz\""));
    assert_null(strstr(r.body, "/v1/items/abc"));
    reply_release(&r);
}

static void assert_static(unsigned port, const char *target, const char *type, const char *body)
{
    struct reply r;
    get(port, target, &r);
    assert_int_equal(r.status, 200);
    char v[512];
    assert_non_null(reply_header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, type);
    assert_string_equal(r.body, body);
    assert_non_null(reply_header(&r, "Content-Security-Policy", v, sizeof v));
    assert_string_equal(v, "default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'");
    assert_non_null(reply_header(&r, "X-Content-Type-Options", v, sizeof v));
    assert_string_equal(v, "nosniff");
    assert_non_null(reply_header(&r, "Referrer-Policy", v, sizeof v));
    assert_string_equal(v, "no-referrer");
    assert_non_null(reply_header(&r, "X-Frame-Options", v, sizeof v));
    assert_string_equal(v, "DENY");
    reply_release(&r);
}

static void test_static_files_with_types_and_security_headers(void **state)
{
    unsigned p = port_of(state);
    assert_static(p, "/ui/", "text/html; charset=utf-8", "<!doctype html><title>t</title>");
    assert_static(p, "/ui/index.html", "text/html; charset=utf-8",
                  "<!doctype html><title>t</title>");
    assert_static(p, "/ui/app.js", "text/javascript; charset=utf-8", "console.log(1);");
    assert_static(p, "/ui/style.css", "text/css; charset=utf-8", "body{}");
    assert_static(p, "/ui/img/logo.svg", "image/svg+xml", "<svg/>");
    assert_static(p, "/ui/img/dot.png", "image/png", "PNG");
    assert_static(p, "/ui/data.json", "application/json", "{}");
    struct reply r;
    get(p, "/ui/missing.js", &r);
    assert_int_equal(r.status, 404);
    assert_error_body(&r, "not_found");
    reply_release(&r);
}

static void test_static_path_traversal_is_refused(void **state)
{
    const char *attempts[] = {
        "/ui/../../../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/ui/img/../../../etc/passwd",
        "/ui/..%2f..%2f..%2fetc%2fpasswd",
        "/ui/escape", /* a symlink pointing outside the directory */
        "/ui/img/..\\..\\etc\\passwd",
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        struct reply r;
        get(port_of(state), attempts[i], &r);
        assert_int_not_equal(r.status, 200);
        assert_null(strstr(r.body, "root:"));
        reply_release(&r);
    }
}

static void test_cors_validate_accepts_origins_only(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(http_cors_validate(NULL, err, sizeof err), 0);
    assert_int_equal(http_cors_validate("", err, sizeof err), 0);
    assert_int_equal(http_cors_validate("http://127.0.0.1:8102, https://x.example,http://[::1]:80",
                                        err, sizeof err),
                     0);
    const char *bad[] = {
        "http://x.example/",     "http://x.example/path", "ftp://x.example", "x.example",
        "http://x;script-src *", "http://'self'",         "http://"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(http_cors_validate(bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "CORS origin"));
    }
}

static void test_without_cors_options_is_405_and_no_cors_header(void **state)
{
    struct reply r;
    request(port_of(state), "OPTIONS", "/v1/items/1", "Origin: http://127.0.0.1:9999\r\n", NULL, 0,
            &r);
    assert_int_equal(r.status, 405);
    char v[256];
    assert_null(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_null(reply_header(&r, "Vary", v, sizeof v));
    reply_release(&r);
}

static void test_cors_echoes_listed_origin_and_answers_preflight(void **state)
{
    (void)state;
    struct http_server_options o = {.listen = "127.0.0.1:0",
                                    .cors_origins = "http://a.example:8102, http://b.example"};
    struct http_server *s = http_server_new(&o);
    http_server_route(s, "GET", "/v1/items/{}", h_echo_params, NULL, 0);
    http_server_route(s, "DELETE", "/v1/items/{}", h_echo_params, NULL, 0);
    http_server_static(s, "/ui/", static_dir);
    char err[256];
    assert_int_equal(http_server_start(s, err, sizeof err), 0);
    unsigned p = http_server_port(s);
    char v[512];
    struct reply r;

    request(p, "GET", "/v1/items/7", "Origin: http://b.example\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_string_equal(v, "http://b.example");
    assert_non_null(reply_header(&r, "Vary", v, sizeof v));
    assert_string_equal(v, "Origin");
    reply_release(&r);

    request(p, "GET", "/v1/items/7", "Origin: http://b.example.evil\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_null(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    reply_release(&r);

    request(p, "OPTIONS", "/v1/items/7",
            "Origin: http://a.example:8102\r\nAccess-Control-Request-Method: DELETE\r\n", NULL, 0,
            &r);
    assert_int_equal(r.status, 204);
    assert_non_null(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_string_equal(v, "http://a.example:8102");
    assert_non_null(reply_header(&r, "Access-Control-Allow-Methods", v, sizeof v));
    assert_string_equal(v, "GET, DELETE");
    assert_non_null(reply_header(&r, "Access-Control-Allow-Headers", v, sizeof v));
    assert_non_null(strstr(v, "Authorization"));
    reply_release(&r);

    request(p, "OPTIONS", "/v1/items/7", "Origin: http://c.example\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 403);
    assert_error_body(&r, "cors_refused");
    assert_null(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    reply_release(&r);

    request(p, "OPTIONS", "/v1/nothing", "Origin: http://b.example\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 404);
    reply_release(&r);

    get(p, "/ui/app.js", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(reply_header(&r, "Content-Security-Policy", v, sizeof v));
    assert_string_equal(v, "default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self' http://a.example:8102 "
                           "http://b.example; frame-ancestors 'none'; base-uri 'none'");
    reply_release(&r);
    http_server_free(s, 1000);
}

static void test_bad_percent_encoding_in_path_is_400_json(void **state)
{
    /* Refused before routing, so every route (and the static files) gets the same answer. */
    static const char *const bad[] = {
        "/v1/items/%FF",        /* decodes to a byte that is not UTF-8 */
        "/v1/items/%zz",        /* not hex */
        "/v1/items/%4",         /* cut short */
        "/v1/items/a%00b",      /* an encoded NUL */
        "/ui/index.html%00.js", /* would have served index.html */
        "/v1/items/%C3%28",     /* a broken two-byte sequence */
        "/v1/items/%ED%A0%80",  /* a UTF-16 surrogate */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct reply r;
        get(port_of(state), bad[i], &r);
        if (r.status != 400) {
            fail_msg("%s: %d %s", bad[i], r.status, r.body);
        }
        assert_error_body(&r, "bad_path");
        reply_release(&r);
    }
    struct reply r;
    get(port_of(state), "/v1/items/x?q=%FF", &r);
    assert_int_equal(r.status, 400);
    assert_error_body(&r, "bad_query");
    reply_release(&r);
    /* Valid escapes still decode: "café" and a space. */
    get(port_of(state), "/v1/items/caf%C3%A9?q=a%20b", &r);
    assert_int_equal(r.status, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "a")), "caf\xc3\xa9");
    assert_string_equal(json_string_value(json_object_get(o, "q")), "a b");
    json_decref(o);
    reply_release(&r);
}

static void test_conflicting_framing_is_400(void **state)
{
    struct reply r;
    request(port_of(state), "POST", "/v1/echo", "Content-Length: 3\r\n", "ab", 2, &r);
    assert_int_equal(r.status, 400); /* 3, then 2 from request() */
    assert_error_body(&r, "bad_request");
    reply_release(&r);
    request(port_of(state), "POST", "/v1/echo", "Transfer-Encoding: chunked\r\n", "ab", 2, &r);
    assert_int_equal(r.status, 400);
    assert_error_body(&r, "bad_request");
    reply_release(&r);
    /* The same length twice is one length (RFC 9112 section 6.3). */
    request(port_of(state), "POST", "/v1/echo", "Content-Length: 2\r\n", "ab", 2, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "ab");
    reply_release(&r);
}

static void test_unknown_transfer_encoding_is_501_at_once(void **state)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct reply r;
    request(port_of(state), "POST", "/v1/echo", "Transfer-Encoding: gzip\r\n", NULL, 0, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(r.status, 501);
    assert_error_body(&r, "not_implemented");
    reply_release(&r);
    /* At once, not after the idle time-out (15 s) nor the client's wait (10 s). */
    assert_true(t1.tv_sec - t0.tv_sec < 5);
    request(port_of(state), "POST", "/v1/echo", "Transfer-Encoding: gzip, chunked\r\n", NULL, 0,
            &r);
    assert_int_equal(r.status, 501);
    reply_release(&r);
}

static void test_oversized_headers_are_refused(void **state)
{
    /* Far over the head limit (16 KiB): answered 431 JSON while the client still sends. */
    enum { N = 66 * 1024 };
    char *big = xmalloc(N + 64);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'b', N);
    memcpy(big + 7 + N, "\r\n", 3);
    struct reply r;
    request(port_of(state), "GET", "/healthz", big, NULL, 0, &r);
    free(big);
    assert_int_equal(r.status, 431);
    assert_error_body(&r, "headers_too_large");
    reply_release(&r);
}

static void test_port_in_use_fails_with_reason(void **state)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port_of(state));
    struct http_server_options o = {.listen = listen};
    struct http_server *s = http_server_new(&o);
    char err[256] = "";
    assert_int_equal(http_server_start(s, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    http_server_free(s, 0);

    struct http_server_options bad = {.listen = "nonsense"};
    s = http_server_new(&bad);
    assert_int_equal(http_server_start(s, err, sizeof err), -1);
    http_server_free(s, 0);
}

static void test_connection_past_descriptor_1024_is_served(void **state)
{
    /* The loops use epoll: a connection whose descriptors (client's and server's, in this one
     * process) lie past FD_SETSIZE (1024) is served like any other; select() refused them. */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < FD_SETSIZE + 64) {
        skip(); /* http_server_start raised the soft limit to the hard one: still too low */
    }
    int *fillers = xcalloc(FD_SETSIZE + 8, sizeof *fillers);
    size_t n_fillers = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        fillers[n_fillers++] = fd;
        if (fd >= FD_SETSIZE + 4) {
            break;
        }
    }
    struct reply r;
    get(port_of(state), "/healthz", &r); /* both ends of it get descriptors above 1028 */
    assert_int_equal(r.status, 200);
    reply_release(&r);
    /* A server whose listening socket lands above 1024 starts and serves (the broker's admin
     * server could not, once its log held ~600 partitions). */
    struct http_server *s = start_server(1);
    get(http_server_port(s), "/healthz", &r);
    assert_int_equal(r.status, 200);
    reply_release(&r);
    http_server_free(s, 100);
    for (size_t i = 0; i < n_fillers; i++) {
        close(fillers[i]);
    }
    free(fillers);
}

/* A server with the given limits and the test routes; threads 1 keeps one loop. */
static struct http_server *start_limited(unsigned max_conns, unsigned per_client, unsigned head_s,
                                         unsigned body_s, unsigned idle_s)
{
    struct http_server_options o = {.listen = "127.0.0.1:0",
                                    .threads = 2,
                                    .max_body_bytes = 1024,
                                    .max_connections = max_conns,
                                    .max_connections_per_client = per_client,
                                    .head_timeout_s = head_s,
                                    .body_timeout_s = body_s,
                                    .timeout_s = idle_s};
    struct http_server *s = http_server_new(&o);
    http_server_route(s, "POST", "/v1/echo", h_echo_body, NULL, 0);
    char err[256];
    assert_int_equal(http_server_start(s, err, sizeof err), 0);
    return s;
}

/* Whether the server closes fd within ms (EOF or reset), reading and dropping what comes. */
static bool closed_within(int fd, int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) {
            return false;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) {
            continue;
        }
        char buf[512];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return true;
        }
    }
}

/* The sum of the metric series in /metrics whose text contains series (every server of this
 * process registers its own, all with listen="127.0.0.1:0"), or -1 when there is none. */
static double metric_value(unsigned port, const char *series)
{
    struct reply r;
    get(port, "/metrics", &r);
    double v = -1;
    for (const char *p = strstr(r.body, series); p; p = strstr(p + 1, series)) {
        v = (v < 0 ? 0 : v) + strtod(p + strlen(series), NULL);
    }
    reply_release(&r);
    return v;
}

static void test_slow_head_is_closed_at_its_deadline_others_served(void **state)
{
    (void)state;
    struct http_server *s = start_limited(0, 0, 1, 0, 0);
    unsigned port = http_server_port(s);
    /* Slowloris: the request line, then a header line every 200 ms, never the blank line.
     * Each line resets libmicrohttpd's idle timer; the head deadline (1 s) still closes it. */
    int fd = connect_port(port);
    const char *line = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    send_all(fd, line, strlen(line));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool is_closed = false;
    for (int i = 0; i < 25 && !is_closed; i++) {
        send_all(fd, "X-Slow: 1\r\n", strlen("X-Slow: 1\r\n"));
        is_closed = closed_within(fd, 200);
        struct reply r;
        get(port, "/healthz", &r); /* served meanwhile */
        assert_int_equal(r.status, 200);
        reply_release(&r);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);
    assert_true(is_closed);
    assert_true(t1.tv_sec - t0.tv_sec < 4);
    assert_true(metric_value(port, "http_connections_timed_out_total{listen=\"127.0.0.1:0\","
                                   "phase=\"head\"}") >= 1);
    /* A connection that sends nothing is closed at the same deadline. */
    fd = connect_port(port);
    assert_true(closed_within(fd, 3000));
    close(fd);
    http_server_free(s, 100);
}

static void test_slow_body_and_idle_keepalive_are_closed(void **state)
{
    (void)state;
    struct http_server *s = start_limited(0, 0, 0, 1, 1);
    unsigned port = http_server_port(s);
    int fd = connect_port(port);
    const char *head = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    send_all(fd, head, strlen(head));
    bool is_closed = false;
    for (int i = 0; i < 25 && !is_closed; i++) {
        send_all(fd, "a", 1); /* progress, but far too slow */
        is_closed = closed_within(fd, 200);
    }
    close(fd);
    assert_true(is_closed);
    /* After an answer, an idle keep-alive connection goes after timeout_s (1 s). */
    fd = connect_port(port);
    const char *req = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    send_all(fd, req, strlen(req));
    char buf[512];
    assert_true(recv(fd, buf, sizeof buf, 0) > 0);
    assert_true(closed_within(fd, 3000));
    close(fd);
    assert_true(metric_value(port, "phase=\"body\"}") >= 1);
    assert_true(metric_value(port, "phase=\"idle\"}") >= 1);
    http_server_free(s, 100);
}

static void test_connection_caps_answer_503_json(void **state)
{
    (void)state;
    /* Two per client: the third connection from 127.0.0.1 is answered 503 and closed. */
    struct http_server *s = start_limited(0, 2, 0, 0, 0);
    unsigned port = http_server_port(s);
    int a = connect_accepted(port), b = connect_accepted(port);
    struct reply r;
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_error_body(&r, "too_many_connections");
    char v[64];
    assert_non_null(reply_header(&r, "Retry-After", v, sizeof v));
    reply_release(&r);
    close(a);
    close(b);
    /* Once they are gone the client is served again (the server notices the close). */
    for (int i = 0; i < 100; i++) {
        get(port, "/healthz", &r);
        int status = r.status;
        reply_release(&r);
        if (status == 200) {
            break;
        }
        assert_true(i < 99);
        struct timespec ts = {.tv_nsec = 20000000};
        nanosleep(&ts, NULL); /* polling interval for the condition, not a stand-in for it */
    }
    assert_true(metric_value(port, "reason=\"max_per_client\"}") >= 1);
    http_server_free(s, 100);

    /* Three in all: the fourth connection, whatever its address, is answered 503. */
    s = start_limited(3, 0, 0, 0, 0);
    port = http_server_port(s);
    a = connect_accepted(port);
    b = connect_accepted(port);
    int c = connect_accepted(port);
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_error_body(&r, "too_many_connections");
    reply_release(&r);
    close(a);
    close(b);
    close(c);
    for (int i = 0; i < 100; i++) {
        get(port, "/healthz", &r);
        int status = r.status;
        reply_release(&r);
        if (status == 200) {
            break;
        }
        assert_true(i < 99);
        struct timespec ts = {.tv_nsec = 20000000};
        nanosleep(&ts, NULL); /* polling interval for the condition, not a stand-in for it */
    }
    assert_true(metric_value(port, "reason=\"max_connections\"}") >= 1);
    http_server_free(s, 100);
}

static void test_free_answers_pending_503_and_late_respond_is_safe(void **state)
{
    (void)state;
    struct http_server *s = start_server(1);
    int fd = connect_port(http_server_port(s));
    const char req[] = "POST /v1/park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                       "Connection: close\r\n\r\n{}";
    send_all(fd, req, sizeof req - 1);
    struct http_exchange *ex = wait_parked();
    http_server_free(s, 50);
    struct reply r;
    read_reply(fd, &r);
    assert_int_equal(r.status, 503);
    assert_error_body(&r, "shutting_down");
    reply_release(&r);
    /* The handler answers after all: ignored, and frees the exchange (ASan checks). */
    http_respond(ex, 200, NULL, "{}", 2);
}

/* ---- the HTTP/1.1 layer's own answers ---- */

/* Sends bytes on a fresh connection and reads the reply until the server closes. */
static void raw_request(unsigned port, const char *bytes, size_t len, struct reply *r)
{
    int fd = connect_port(port);
    send_all(fd, bytes, len);
    read_reply(fd, r);
}

static void assert_json_refusal(unsigned port, const char *bytes, size_t len, int status,
                                const char *code)
{
    struct reply r;
    raw_request(port, bytes, len, &r);
    assert_int_equal(r.status, status);
    char v[128];
    assert_non_null(reply_header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json");
    assert_error_body(&r, code);
    reply_release(&r);
}

static void test_malformed_heads_get_json_errors(void **state)
{
    unsigned port = port_of(state);
    struct buf b;
    buf_init(&b, 0);
    /* 414: a request line over 8 KiB */
    buf_appends(&b, "GET /v1/items/");
    for (int i = 0; i < 9000; i++) {
        buf_appends(&b, "a");
    }
    buf_appends(&b, " HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_json_refusal(port, b.data, b.len, 414, "uri_too_long");
    /* 431: more header fields than 100 */
    buf_reset(&b);
    buf_appends(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 101; i++) {
        buf_appendf(&b, "X-H%d: v\r\n", i);
    }
    buf_appends(&b, "\r\n");
    assert_json_refusal(port, b.data, b.len, 431, "headers_too_large");
    buf_release(&b);
    /* 505: a version other than 1.0 / 1.1 */
    static const char v2[] = "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n";
    assert_json_refusal(port, v2, sizeof v2 - 1, 505, "version_not_supported");
    /* 400: not a request line, no Host in 1.1, a folded header, a space before the colon, a
     * lone CR, a bad chunk size */
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
        "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_json_refusal(port, bad[i], strlen(bad[i]), 400, "bad_request");
    }
}

static void test_pipelined_requests_are_answered_in_order(void **state)
{
    unsigned port = port_of(state);
    int fd = connect_port(port);
    /* Three requests in one write; the second is answered later from this thread. */
    const char reqs[] = "GET /v1/items/a HTTP/1.1\r\nHost: x\r\n\r\n"
                        "POST /v1/park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                        "GET /v1/items/b HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, reqs, sizeof reqs - 1);
    struct http_exchange *ex = wait_parked();
    http_respond(ex, 202, NULL, "{\"parked\":1}", 12);
    int status[3];
    char bodies[3][64];
    read_answers(fd, 3, status, bodies);
    assert_int_equal(status[0], 200);
    assert_non_null(strstr(bodies[0], "\"a\":\"a\""));
    assert_int_equal(status[1], 202);
    assert_string_equal(bodies[1], "{\"parked\":1}");
    assert_int_equal(status[2], 200);
    assert_non_null(strstr(bodies[2], "\"a\":\"b\""));
    /* The connection stays open for more. */
    const char again[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, again, sizeof again - 1);
    read_answers(fd, 1, status, bodies);
    assert_int_equal(status[0], 200);
    close(fd);
}

/* Connections opened in a burst are spread over the polling threads: the listening socket wakes
 * one loop per readiness, and that loop used to accept the whole burst (128 connections of a
 * client, all on one of two threads, in 3 of 4 runs). */
static void test_burst_of_connections_is_spread_over_the_loops(void **state)
{
    unsigned port = port_of(state);
    enum { N = 64 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_port(port);
    }
    const char req[] = "GET /v1/thread HTTP/1.1\r\nHost: x\r\n\r\n";
    int on_first = 0;
    for (int i = 0; i < N; i++) {
        send_all(fds[i], req, sizeof req - 1);
        int status = 0;
        char body[1][64];
        read_answers(fds[i], 1, &status, body);
        assert_int_equal(status, 200);
        if (strstr(body[0], "\"http-0\"")) {
            on_first++;
        } else {
            assert_non_null(strstr(body[0], "\"http-1\""));
        }
    }
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    /* 32 and 32 when nothing else is open; connections of earlier tests that the server has not
     * seen closed yet may tip it by a few. */
    assert_in_range(on_first, N / 2 - 4, N / 2 + 4);
}

static void test_chunked_body_and_expect_continue(void **state)
{
    unsigned port = port_of(state);
    /* chunk extensions and trailer fields are skipped; the chunks arrive byte by byte */
    int fd = connect_port(port);
    const char req[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n"
                       "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    for (size_t i = 0; i < sizeof req - 1; i++) {
        send_all(fd, req + i, 1);
    }
    struct reply r;
    read_reply(fd, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "hello world");
    reply_release(&r);
    /* Expect: 100-continue: the interim answer comes before the body is sent. */
    fd = connect_port(port);
    const char head[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                        "Expect: 100-continue\r\nConnection: close\r\n\r\n";
    send_all(fd, head, sizeof head - 1);
    char interim[64] = {0};
    size_t got = 0;
    while (got < 25) {
        ssize_t n = recv(fd, interim + got, 25 - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_string_equal(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    send_all(fd, "12345", 5);
    read_reply(fd, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "12345");
    reply_release(&r);
}

static void test_http10_closes_unless_keep_alive(void **state)
{
    unsigned port = port_of(state);
    struct reply r;
    static const char close10[] = "GET /healthz HTTP/1.0\r\n\r\n";
    raw_request(port, close10, sizeof close10 - 1, &r); /* read_reply needs the close */
    assert_int_equal(r.status, 200);
    reply_release(&r);
    int fd = connect_port(port);
    static const char ka10[] = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    int status[1];
    char bodies[1][64];
    send_all(fd, ka10, sizeof ka10 - 1);
    read_answers(fd, 1, status, bodies);
    send_all(fd, ka10, sizeof ka10 - 1); /* still open */
    read_answers(fd, 1, status, bodies);
    assert_int_equal(status[0], 200);
    close(fd);
}

static void test_client_gone_while_handler_holds_the_request(void **state)
{
    unsigned port = port_of(state);
    int fd = connect_port(port);
    const char req[] = "POST /v1/park HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    send_all(fd, req, sizeof req - 1);
    struct http_exchange *ex = wait_parked();
    close(fd);
    /* Let the server see the close before the answer: until the open-connections gauge is
     * down to the scrape's own connection. */
    for (int i = 0; i < 500; i++) {
        if (metric_value(port, "http_connections_open{listen=\"127.0.0.1:0\"}") <= 1) {
            break;
        }
        struct timespec ts = {.tv_nsec = 10000000};
        nanosleep(&ts, NULL); /* polling interval for the condition, not a stand-in for it */
    }
    http_respond(ex, 202, NULL, "{}", 2); /* dropped; the exchange is freed (ASan checks) */
    struct reply r;
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    reply_release(&r);
}

int main(void)
{
    log_init("test_http_server", LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_captures_segments_and_query),
        cmocka_unit_test(test_burst_of_connections_is_spread_over_the_loops),
        cmocka_unit_test(test_path_segments_edge_cases),
        cmocka_unit_test(test_unknown_path_is_404_json),
        cmocka_unit_test(test_other_method_is_405_with_allow),
        cmocka_unit_test(test_body_within_cap_reaches_handler),
        cmocka_unit_test(test_content_length_over_cap_is_413_before_body),
        cmocka_unit_test(test_chunked_body_over_cap_is_413),
        cmocka_unit_test(test_async_answer_from_another_thread),
        cmocka_unit_test(test_deferred_answers_leave_together),
        cmocka_unit_test(test_answer_racing_handler_return),
        cmocka_unit_test(test_healthz_readyz_metrics),
        cmocka_unit_test(test_static_files_with_types_and_security_headers),
        cmocka_unit_test(test_static_path_traversal_is_refused),
        cmocka_unit_test(test_cors_validate_accepts_origins_only),
        cmocka_unit_test(test_without_cors_options_is_405_and_no_cors_header),
        cmocka_unit_test(test_cors_echoes_listed_origin_and_answers_preflight),
        cmocka_unit_test(test_bad_percent_encoding_in_path_is_400_json),
        cmocka_unit_test(test_conflicting_framing_is_400),
        cmocka_unit_test(test_unknown_transfer_encoding_is_501_at_once),
        cmocka_unit_test(test_oversized_headers_are_refused),
        cmocka_unit_test(test_port_in_use_fails_with_reason),
        cmocka_unit_test(test_connection_past_descriptor_1024_is_served),
        cmocka_unit_test(test_slow_head_is_closed_at_its_deadline_others_served),
        cmocka_unit_test(test_slow_body_and_idle_keepalive_are_closed),
        cmocka_unit_test(test_connection_caps_answer_503_json),
        cmocka_unit_test(test_free_answers_pending_503_and_late_respond_is_safe),
        cmocka_unit_test(test_malformed_heads_get_json_errors),
        cmocka_unit_test(test_pipelined_requests_are_answered_in_order),
        cmocka_unit_test(test_chunked_body_and_expect_continue),
        cmocka_unit_test(test_http10_closes_unless_keep_alive),
        cmocka_unit_test(test_client_gone_while_handler_holds_the_request),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
