/* test_http_client.c - http_client.h against an http_server started in this process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"

#define WAIT_S 20

static struct http_server *server;
static char base[64];

/* ---- server side ---- */

static void h_echo(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    const char *body = http_body(ex, &len);
    const char *h = http_header(ex, "X-Test");
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s%}", "method", http_method(ex), "path",
                          http_path(ex), "x_test", h, "body", body, len);
    http_respond_json(ex, 200, o);
}

static void h_busy(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    http_add_header(ex, "Retry-After", "5");
    http_respond_error(ex, 503, "unavailable", NULL, "Busy.");
}

static void h_large(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    char *big = xmalloc(100000);
    memset(big, 'z', 100000);
    http_respond(ex, 200, "text/plain", big, 100000);
    free(big);
}

static void h_id(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    char body[64];
    snprintf(body, sizeof body, "{\"id\":\"%s\"}", http_param(ex, 0));
    http_respond(ex, 200, NULL, body, strlen(body));
}

/* Never answers by itself: the test answers parked exchanges once the client gave up. */
#define MAX_PARKED 64
static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t parked_cond = PTHREAD_COND_INITIALIZER;
static struct http_exchange *parked[MAX_PARKED];
static size_t n_parked;

static void h_park(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&parked_lock);
    assert_true(n_parked < MAX_PARKED);
    parked[n_parked++] = ex;
    pthread_cond_broadcast(&parked_cond);
    pthread_mutex_unlock(&parked_lock);
}

static void wait_parked(size_t n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&parked_lock);
    while (n_parked < n) {
        if (pthread_cond_timedwait(&parked_cond, &parked_lock, &deadline) != 0) {
            break;
        }
    }
    size_t got = n_parked;
    pthread_mutex_unlock(&parked_lock);
    assert_int_equal(got, n);
}

static void release_parked(void)
{
    pthread_mutex_lock(&parked_lock);
    for (size_t i = 0; i < n_parked; i++) {
        http_respond(parked[i], 204, NULL, "", 0);
    }
    n_parked = 0;
    pthread_mutex_unlock(&parked_lock);
}

static int setup(void **state)
{
    (void)state;
    struct http_server_options o = {.listen = "127.0.0.1:0", .threads = 2,
                                    .max_connections = 512};
    server = http_server_new(&o);
    http_server_route(server, "POST", "/echo", h_echo, NULL, 0);
    http_server_route(server, "PUT", "/echo", h_echo, NULL, 0);
    http_server_route(server, "GET", "/echo", h_echo, NULL, 0);
    http_server_route(server, "GET", "/busy", h_busy, NULL, 0);
    http_server_route(server, "GET", "/large", h_large, NULL, 0);
    http_server_route(server, "POST", "/id/{}", h_id, NULL, 0);
    http_server_route(server, "GET", "/park", h_park, NULL, 0);
    http_server_route(server, "POST", "/small", h_echo, NULL, 16);
    char err[256];
    assert_int_equal(http_server_start(server, err, sizeof err), 0);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", http_server_port(server));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    release_parked();
    http_server_free(server, 1000);
    return 0;
}

/* Connections the test server accepted so far (http_server's own counter). */
static double connections_accepted(void)
{
    return metric_value(metrics_counter("http_connections_total", "",
                                        "listen=\"127.0.0.1:0\""));
}

static char *url(const char *path)
{
    return xasprintf("%s%s", base, path);
}

/* ---- synchronous client ---- */

static void test_request_round_trip_with_headers_and_body(void **state)
{
    (void)state;
    struct http_client *c = http_client_new();
    char *u = url("/echo");
    struct http_header_kv h[] = {{"X-Test", "yes"}, {"Content-Type", "application/json"}};
    /* Several times on one client: the handle and its connection are reused. */
    double before = connections_accepted();
    for (int i = 0; i < 3; i++) {
        struct http_result r;
        const char body[] = "{\"a\":1}";
        assert_int_equal(
            http_client_request(c, "POST", u, h, 2, body, sizeof body - 1, 5000, 4096, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.error, "");
        json_t *o = json_loads(r.body, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "method")), "POST");
        assert_string_equal(json_string_value(json_object_get(o, "x_test")), "yes");
        assert_string_equal(json_string_value(json_object_get(o, "body")), body);
        json_decref(o);
        assert_true(r.elapsed_s >= 0);
        http_result_release(&r);
    }
    assert_true(connections_accepted() - before == 1);
    struct http_result r;
    assert_int_equal(http_client_request(c, "PUT", u, NULL, 0, "x", 1, 5000, 4096, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"PUT\""));
    http_result_release(&r);
    assert_int_equal(http_client_request(c, "GET", u, NULL, 0, NULL, 0, 5000, 4096, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"GET\""));
    http_result_release(&r);
    free(u);
    http_client_free(c);
}

static void test_error_status_is_an_answer_with_retry_after(void **state)
{
    (void)state;
    struct http_client *c = http_client_new();
    char *u = url("/busy");
    struct http_result r;
    assert_int_equal(http_client_request(c, "GET", u, NULL, 0, NULL, 0, 5000, 4096, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(r.retry_after);
    assert_string_equal(r.retry_after, "5");
    assert_non_null(strstr(r.body, "\"unavailable\""));
    http_result_release(&r);
    free(u);

    /* the server's own 413 on a body over the route's cap */
    u = url("/small");
    const char big[] = "0123456789012345678901234567890123456789";
    assert_int_equal(
        http_client_request(c, "POST", u, NULL, 0, big, sizeof big - 1, 5000, 4096, &r), 0);
    assert_int_equal(r.status, 413);
    http_result_release(&r);
    free(u);
    http_client_free(c);
}

static void test_response_over_cap_is_aborted(void **state)
{
    (void)state;
    struct http_client *c = http_client_new();
    char *u = url("/large");
    struct http_result r;
    assert_int_equal(http_client_request(c, "GET", u, NULL, 0, NULL, 0, 5000, 1000, &r), -1);
    assert_string_equal(r.error, "response too large");
    http_result_release(&r);
    /* the same client still works afterwards */
    assert_int_equal(http_client_request(c, "GET", u, NULL, 0, NULL, 0, 5000, 200000, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 100000);
    http_result_release(&r);
    free(u);
    http_client_free(c);
}

static void test_slow_server_times_out(void **state)
{
    (void)state;
    struct http_client *c = http_client_new();
    char *u = url("/park");
    struct http_result r;
    assert_int_equal(http_client_request(c, "GET", u, NULL, 0, NULL, 0, 300, 4096, &r), -1);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "timeout");
    assert_true(r.elapsed_s >= 0.25 && r.elapsed_s < 5);
    http_result_release(&r);
    wait_parked(1);
    release_parked();
    free(u);
    http_client_free(c);
}

static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* bound, never listening, now closed: nothing accepts there */
    return ntohs(sa.sin_port);
}

static void test_closed_port_is_connection_refused(void **state)
{
    (void)state;
    struct http_client *c = http_client_new();
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%u/x", closed_port());
    struct http_result r;
    assert_int_equal(http_client_request(c, "POST", u, NULL, 0, "{}", 2, 2000, 4096, &r), -1);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "connection refused");
    assert_null(r.body);
    http_result_release(&r);
    http_client_free(c);
}

/* ---- pool ---- */

struct pool_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned done, ok, shutdown;
    bool seen[256];
    bool is_body_wrong;
};

static void on_done(void *ctx, struct http_result *r)
{
    struct pool_wait *w = ctx;
    pthread_mutex_lock(&w->lock);
    w->done++;
    if (r->status == 200) {
        unsigned id = 0;
        if (sscanf(r->body, "{\"id\":\"%u\"}", &id) == 1 && id < 256 && !w->seen[id]) {
            w->seen[id] = true;
            w->ok++;
        } else {
            w->is_body_wrong = true;
        }
    } else if (strcmp(r->error, "shutdown") == 0) {
        w->shutdown++;
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    http_result_release(r);
}

static void wait_done(struct pool_wait *w, unsigned n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&w->lock);
    while (w->done < n) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
}

static void test_pool_completes_200_concurrent_requests(void **state)
{
    (void)state;
    struct pool_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct http_pool *p = http_pool_new(16);
    struct http_header_kv h[] = {{"Content-Type", "application/json"}};
    double before = connections_accepted();
    enum { N = 200 };
    for (unsigned i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof path, "/id/%u", i);
        char *u = url(path);
        char body[32];
        snprintf(body, sizeof body, "{\"n\":%u}", i);
        /* the pool copies url, headers and body: free them at once */
        assert_int_equal(
            http_pool_submit(p, "POST", u, h, 1, body, strlen(body), 10000, 4096, on_done, &w),
            0);
        free(u);
    }
    wait_done(&w, N);
    pthread_mutex_lock(&w.lock);
    assert_int_equal(w.done, N);
    assert_int_equal(w.ok, N);
    assert_false(w.is_body_wrong);
    pthread_mutex_unlock(&w.lock);

    /* at most the pool's 16 connections were opened... */
    double after_first = connections_accepted();
    printf("pool: %.0f connections for %d requests\n", after_first - before, N);
    assert_true(after_first - before > 0 && after_first - before <= 16);
    /* ...and a second wave on the same pool reuses its transfers and connections */
    memset(w.seen, 0, sizeof w.seen);
    w.done = w.ok = 0;
    for (unsigned i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof path, "/id/%u", i);
        char *u = url(path);
        assert_int_equal(http_pool_submit(p, "POST", u, NULL, 0, "{}", 2, 10000, 4096, on_done,
                                          &w),
                         0);
        free(u);
    }
    wait_done(&w, N);
    assert_int_equal(w.ok, N);
    assert_true(connections_accepted() == after_first);
    http_pool_free(p);
}

struct one_result {
    struct pool_wait *w;
    struct http_result r;
};

static void on_one(void *ctx, struct http_result *r)
{
    struct one_result *o = ctx;
    pthread_mutex_lock(&o->w->lock);
    o->r = *r; /* takes the body and Retry-After */
    o->w->done++;
    pthread_cond_broadcast(&o->w->cond);
    pthread_mutex_unlock(&o->w->lock);
}

static void test_pool_reports_refused_and_timeout(void **state)
{
    (void)state;
    struct pool_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct one_result refused = {.w = &w}, slow = {.w = &w};
    struct http_pool *p = http_pool_new(4);
    char u_refused[64];
    snprintf(u_refused, sizeof u_refused, "http://127.0.0.1:%u/x", closed_port());
    char *u_slow = url("/park");
    assert_int_equal(
        http_pool_submit(p, "POST", u_refused, NULL, 0, "{}", 2, 5000, 4096, on_one, &refused), 0);
    assert_int_equal(http_pool_submit(p, "GET", u_slow, NULL, 0, NULL, 0, 300, 4096, on_one, &slow),
                     0);
    wait_done(&w, 2);
    assert_int_equal(w.done, 2);
    assert_int_equal(refused.r.status, 0);
    assert_string_equal(refused.r.error, "connection refused");
    assert_int_equal(slow.r.status, 0);
    assert_string_equal(slow.r.error, "timeout");
    assert_true(slow.r.elapsed_s >= 0.25);
    http_result_release(&refused.r);
    http_result_release(&slow.r);
    wait_parked(1);
    release_parked();
    free(u_slow);
    http_pool_free(p);
}

static void test_pool_free_completes_pending_with_shutdown(void **state)
{
    (void)state;
    struct pool_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct http_pool *p = http_pool_new(8);
    char *u = url("/park");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(http_pool_submit(p, "GET", u, NULL, 0, NULL, 0, 60000, 4096, on_done, &w),
                         0);
    }
    wait_parked(5); /* all five are at the server, waiting */
    http_pool_free(p);
    assert_int_equal(w.done, 5);
    assert_int_equal(w.shutdown, 5);
    release_parked();
    free(u);
}

int main(void)
{
    log_init("test_http_client", LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip_with_headers_and_body),
        cmocka_unit_test(test_error_status_is_an_answer_with_retry_after),
        cmocka_unit_test(test_response_over_cap_is_aborted),
        cmocka_unit_test(test_slow_server_times_out),
        cmocka_unit_test(test_closed_port_is_connection_refused),
        cmocka_unit_test(test_pool_completes_200_concurrent_requests),
        cmocka_unit_test(test_pool_reports_refused_and_timeout),
        cmocka_unit_test(test_pool_free_completes_pending_with_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
