/* test_http_request.c - the request head parser and chunked decoder (http_request.h), on bytes
 * in memory: every refusal and the framing rules of RFC 9112. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "http/http_request.h"

static struct http_field fields[HTTP_MAX_HEADER_FIELDS];

/* Parses text as one head; returns 0 or the refusal's status. */
static unsigned parse(const char *text, struct http_request *r)
{
    size_t scanned = 0;
    struct http_refusal refusal = {0};
    long end = http_request_head_end(text, strlen(text), &scanned, &refusal);
    if (end < 0) {
        return refusal.status;
    }
    assert_true(end > 0);
    char *copy = xstrndup(text, (size_t)end);
    static char *kept; /* the strings of r point into it until the next parse */
    free(kept);
    kept = copy;
    if (http_request_parse(r, copy, (size_t)end, fields, &refusal) != 0) {
        assert_non_null(refusal.code);
        assert_non_null(refusal.message);
        return refusal.status;
    }
    return 0;
}

static void test_request_line_and_fields(void **state)
{
    (void)state;
    struct http_request r;
    assert_int_equal(parse("\r\nPOST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nX-Pad:  v v \t\r\n"
                           "Content-Length: 12\r\n\r\n",
                           &r),
                     0);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.target, "/v1/x?a=1");
    assert_int_equal(r.minor_version, 1);
    assert_string_equal(http_request_field(&r, "x-pad"), "v v");
    assert_true(r.has_length);
    assert_int_equal(r.content_length, 12);
    assert_true(r.is_keep_alive);
    /* bare LF line ends are accepted; absolute-form targets give their path */
    assert_int_equal(parse("GET http://h:1/p/q HTTP/1.0\nConnection: keep-alive\n\n", &r), 0);
    assert_string_equal(r.target, "/p/q");
    assert_true(r.is_keep_alive);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: x, close\r\n\r\n", &r), 0);
    assert_false(r.is_keep_alive);
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &r), 0);
    assert_false(r.is_keep_alive);
}

static void test_refusals(void **state)
{
    (void)state;
    struct http_request r;
    static const struct {
        const char *head;
        unsigned status;
    } cases[] = {
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
        {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET relative HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},                       /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400}, /* two */
        {"GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nA: \x01\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n b\r\n\r\n", 400}, /* obs-fold */
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned got = parse(cases[i].head, &r);
        if (got != cases[i].status) {
            fail_msg("case %zu: %u, expected %u", i, got, cases[i].status);
        }
    }
    /* same Content-Length twice is one length */
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &r),
        0);
    assert_int_equal(r.content_length, 5);
}

static void test_head_limits(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    buf_appends(&b, "GET /");
    for (int i = 0; i < HTTP_MAX_REQUEST_LINE_BYTES; i++) {
        buf_appends(&b, "a");
    }
    size_t scanned = 0;
    struct http_refusal refusal;
    /* no line end yet, already too long: 414 without waiting for the rest */
    assert_int_equal(http_request_head_end(b.data, b.len, &scanned, &refusal), -1);
    assert_int_equal(refusal.status, 414);
    buf_reset(&b);
    buf_appends(&b, "GET / HTTP/1.1\r\nHost: h\r\n");
    while (b.len <= HTTP_MAX_HEAD_BYTES) {
        buf_appends(&b, "X-Fill: 0123456789012345678901234567890123456789\r\n");
    }
    scanned = 0;
    assert_int_equal(http_request_head_end(b.data, b.len, &scanned, &refusal), -1);
    assert_int_equal(refusal.status, 431);
    struct http_request r;
    buf_reset(&b);
    buf_appends(&b, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < HTTP_MAX_HEADER_FIELDS; i++) {
        buf_appendf(&b, "X-%d: v\r\n", i);
    }
    buf_appends(&b, "\r\n");
    assert_int_equal(parse(b.data, &r), 431);
    buf_release(&b);
    /* The end is found however the head is cut into reads. */
    const char head[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\nNEXT";
    for (size_t cut = 1; cut < sizeof head - 5; cut++) {
        scanned = 0;
        long end = http_request_head_end(head, cut, &scanned, &refusal);
        assert_int_equal(end, 0);
        end = http_request_head_end(head, sizeof head - 1, &scanned, &refusal);
        assert_int_equal(end, (long)(sizeof head - 5));
    }
}

static int sink(void *arg, const char *p, size_t n)
{
    return buf_append(arg, p, n) == 0 ? 0 : 1;
}

static void test_chunked_byte_by_byte_and_malformed(void **state)
{
    (void)state;
    const char body[] = "4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                        "0\r\nTrailer: 1\r\n\r\nNEXT";
    struct buf out;
    buf_init(&out, 0);
    struct http_chunked c = {0};
    int rc = HTTP_CHUNKED_AGAIN;
    size_t i = 0;
    while (rc == HTTP_CHUNKED_AGAIN) {
        size_t used = 0;
        rc = http_chunked_decode(&c, body + i, 1, &used, sink, &out);
        assert_int_equal(used, 1);
        i++;
    }
    assert_int_equal(rc, HTTP_CHUNKED_DONE);
    assert_string_equal(body + i, "NEXT");
    assert_string_equal(out.data, "Wikipedia in\r\n\r\nchunks.");
    buf_release(&out);
    static const char *const bad[] = {"x\r\n", "\r\n", "4\r\nWikiX", "1000000000000000\r\n"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct http_chunked d = {0};
        buf_init(&out, 0);
        size_t used = 0;
        rc = http_chunked_decode(&d, bad[k], strlen(bad[k]), &used, sink, &out);
        buf_release(&out);
        if (rc != HTTP_CHUNKED_EBAD) {
            fail_msg("bad chunked body %zu accepted", k);
        }
    }
    /* A sink that refuses stops the decoder where it refused. */
    struct buf small;
    buf_init(&small, 3);
    struct http_chunked e = {0};
    size_t used = 0;
    rc = http_chunked_decode(&e, "5\r\nhello\r\n0\r\n\r\n", 15, &used, sink, &small);
    assert_int_equal(rc, HTTP_CHUNKED_STOP);
    assert_true(used < 15);
    buf_release(&small);
}

static void test_targets(void **state)
{
    (void)state;
    static const char *const good[] = {"/a/b", "/caf%C3%A9", "/%2F", "/a+b", ""};
    static const char *const bad[] = {"/%00", "/%FF", "/%4", "/%G1", "/%C3", "/\xff"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(http_target_part_is_valid(good[i], good[i] + strlen(good[i])));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(http_target_part_is_valid(bad[i], bad[i] + strlen(bad[i])));
    }
    char out[32];
    assert_int_equal(http_percent_decode(out, "a%20b+c", 7, true), 5);
    assert_string_equal(out, "a b c");
    http_percent_decode(out, "a%20b+c", 7, false);
    assert_string_equal(out, "a b+c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_line_and_fields),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_chunked_byte_by_byte_and_malformed),
        cmocka_unit_test(test_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
