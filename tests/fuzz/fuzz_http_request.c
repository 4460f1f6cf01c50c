/* fuzz_http_request - libFuzzer target for the HTTP/1.1 request parser (lib/http/http_request.c).
 *
 * The input is a connection's bytes: heads are found (fed in two cuts, as reads would), parsed
 * in place, and when a head announces a chunked body the rest is decoded, byte by byte for the
 * first half and at once for the rest. Targets are checked and decoded. A crash, a sanitizer
 * report or a refusal without a status and message is a finding; refusals are expected.
 *
 * Build: make build/fuzz/fuzz_http_request; run:
 *   build/fuzz/fuzz_http_request -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_field fields[HTTP_MAX_HEADER_FIELDS];

static int sink(void *arg, const char *p, size_t n)
{
    size_t *total = arg;
    *total += n;
    (void)p;
    return *total > 4096; /* a cap, as the server's body buffer has */
}

static void check_refusal(const struct http_refusal *r)
{
    if (r->status < 400 || r->status > 599 || !r->code || !r->message) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t off = 0;
    for (int n = 0; n < 8 && off < size; n++) {
        size_t scanned = 0;
        struct http_refusal refusal = {0};
        size_t cut = (size - off) / 2;
        long end = http_request_head_end(in + off, cut, &scanned, &refusal);
        if (end == 0) {
            end = http_request_head_end(in + off, size - off, &scanned, &refusal);
        }
        if (end < 0) {
            check_refusal(&refusal);
            return 0;
        }
        if (end == 0) {
            return 0;
        }
        char *head = malloc((size_t)end + 1);
        memcpy(head, in + off, (size_t)end);
        head[end] = '\0';
        off += (size_t)end;
        struct http_request r;
        if (http_request_parse(&r, head, (size_t)end, fields, &refusal) != 0) {
            check_refusal(&refusal);
            free(head);
            return 0;
        }
        const char *q = strchr(r.target, '?');
        size_t plen = q ? (size_t)(q - r.target) : strlen(r.target);
        if (http_target_part_is_valid(r.target, r.target + plen)) {
            char *path = malloc(plen + 1);
            http_percent_decode(path, r.target, plen, false);
            free(path);
        }
        (void)http_request_field(&r, "Host");
        if (r.is_chunked) {
            struct http_chunked c = {0};
            size_t total = 0, used = 0;
            int rc = HTTP_CHUNKED_AGAIN;
            size_t half = (size - off) / 2;
            while (rc == HTTP_CHUNKED_AGAIN && half > 0 && off < size) {
                rc = http_chunked_decode(&c, in + off, 1, &used, sink, &total);
                off += used;
                half--;
            }
            if (rc == HTTP_CHUNKED_AGAIN && off < size) {
                rc = http_chunked_decode(&c, in + off, size - off, &used, sink, &total);
                off += used;
            }
            if (rc != HTTP_CHUNKED_DONE) {
                free(head);
                return 0;
            }
        } else if (r.has_length) {
            off += r.content_length < size - off ? (size_t)r.content_length : size - off;
        }
        free(head);
    }
    return 0;
}
