/* test_http1.c - the incremental HTTP/1.1 response parser (http1.h), fed whole and in pieces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "http/http1.h"

/* Feeds s to a fresh parser in pieces of step bytes (0 = at once), the way http_client.c does:
 * unconsumed bytes are kept and given again with the next piece. Returns the last code. */
static int feed(struct http1_response *p, struct buf *body, bool is_head, size_t max_body,
                const char *s, size_t step, size_t *left_over)
{
    buf_init(body, max_body);
    http1_response_init(p, is_head, body);
    char pending[4096];
    size_t have = 0, pos = 0, len = strlen(s);
    int rc = HTTP1_AGAIN;
    while (pos < len && rc == HTTP1_AGAIN) {
        size_t n = step == 0 || len - pos < step ? len - pos : step;
        assert_true(have + n <= sizeof pending);
        memcpy(pending + have, s + pos, n);
        have += n;
        pos += n;
        size_t used = 0;
        rc = http1_response_parse(p, pending, have, &used);
        memmove(pending, pending + used, have - used);
        have -= used;
    }
    if (left_over) {
        *left_over = have + (len - pos);
    }
    return rc;
}

static void test_content_length_any_split(void **state)
{
    (void)state;
    const char *msg = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                      "Content-Length: 11\r\n\r\n{\"ok\":true}";
    for (size_t step = 0; step < 8; step++) {
        struct http1_response p;
        struct buf body;
        size_t left = 0;
        assert_int_equal(feed(&p, &body, false, 4096, msg, step, &left), HTTP1_DONE);
        assert_int_equal(left, 0);
        assert_int_equal(p.status, 202);
        assert_true(p.is_keep_alive);
        assert_int_equal(body.len, 11);
        assert_string_equal(body.data, "{\"ok\":true}");
        assert_null(p.retry_after);
        http1_response_release(&p);
        buf_release(&body);
    }
}

static void test_chunked_with_extension_and_trailer(void **state)
{
    (void)state;
    const char *msg = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Length: 999\r\n\r\n"
                      "5;name=value\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-T: 1\r\n\r\n";
    for (size_t step = 0; step < 6; step++) {
        struct http1_response p;
        struct buf body;
        assert_int_equal(feed(&p, &body, false, 4096, msg, step, NULL), HTTP1_DONE);
        assert_string_equal(body.data, "hello, world!!!");
        assert_true(p.is_keep_alive);
        http1_response_release(&p);
        buf_release(&body);
    }
}

static void test_interim_no_body_and_head(void **state)
{
    (void)state;
    struct http1_response p;
    struct buf body;
    assert_int_equal(feed(&p, &body, false, 4096,
                          "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n"
                          "Retry-After: 3\r\n\r\n",
                          3, NULL),
                     HTTP1_DONE);
    assert_int_equal(p.status, 204);
    assert_int_equal(body.len, 0);
    assert_string_equal(p.retry_after, "3");
    http1_response_release(&p);
    buf_release(&body);
    /* HEAD: Content-Length describes the GET answer, no body follows */
    assert_int_equal(
        feed(&p, &body, true, 4096, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 0, NULL),
        HTTP1_DONE);
    assert_int_equal(body.len, 0);
    http1_response_release(&p);
    buf_release(&body);
}

static void test_connection_semantics(void **state)
{
    (void)state;
    struct http1_response p;
    struct buf body;
    assert_int_equal(feed(&p, &body, false, 4096,
                          "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", 0,
                          NULL),
                     HTTP1_DONE);
    assert_false(p.is_keep_alive);
    buf_release(&body);
    assert_int_equal(
        feed(&p, &body, false, 4096, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0, NULL),
        HTTP1_DONE);
    assert_false(p.is_keep_alive);
    buf_release(&body);
    assert_int_equal(feed(&p, &body, false, 4096,
                          "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                          0, NULL),
                     HTTP1_DONE);
    assert_true(p.is_keep_alive);
    buf_release(&body);
    /* no length: the body runs to the close */
    assert_int_equal(feed(&p, &body, false, 4096, "HTTP/1.1 200 OK\r\n\r\nuntil close", 4, NULL),
                     HTTP1_AGAIN);
    assert_false(p.is_keep_alive);
    assert_int_equal(http1_response_eof(&p), HTTP1_DONE);
    assert_string_equal(body.data, "until close");
    buf_release(&body);
    /* a Content-Length body cut short is an error at the close */
    assert_int_equal(
        feed(&p, &body, false, 4096, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab", 0, NULL),
        HTTP1_AGAIN);
    assert_int_equal(http1_response_eof(&p), HTTP1_EBAD);
    buf_release(&body);
}

static void test_bad_and_too_big(void **state)
{
    (void)state;
    struct http1_response p;
    struct buf body;
    const char *bad[] = {
        "SMTP 220 hello\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(feed(&p, &body, false, 4096, bad[i], 0, NULL), HTTP1_EBAD);
        http1_response_release(&p);
        buf_release(&body);
    }
    assert_int_equal(
        feed(&p, &body, false, 10, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 0, NULL),
        HTTP1_ETOOBIG);
    buf_release(&body);
    assert_int_equal(feed(&p, &body, false, 10,
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
                          0, NULL),
                     HTTP1_ETOOBIG);
    buf_release(&body);
}

static void test_bytes_after_the_response_are_left(void **state)
{
    (void)state;
    struct http1_response p;
    struct buf body;
    size_t left = 0;
    assert_int_equal(feed(&p, &body, false, 4096,
                          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 0, &left),
                     HTTP1_DONE);
    assert_int_equal(left, 5);
    assert_string_equal(body.data, "ok");
    buf_release(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_any_split),
        cmocka_unit_test(test_chunked_with_extension_and_trailer),
        cmocka_unit_test(test_interim_no_body_and_head),
        cmocka_unit_test(test_connection_semantics),
        cmocka_unit_test(test_bad_and_too_big),
        cmocka_unit_test(test_bytes_after_the_response_are_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
