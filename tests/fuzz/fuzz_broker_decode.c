/* fuzz_broker_decode - libFuzzer target for the broker's request decoder and handlers.
 *
 * Each input is fed to a detached connection of a broker whose data lives in a private temp
 * directory, as bytes received from a client: frame splitting, header decoding, every API's
 * request decoder, and the handlers behind them (produce appends, admin calls, group
 * coordination) run on it. A crash, a sanitizer report or a leak is a finding; a closed
 * connection is the expected answer to garbage.
 *
 * Build: make fuzz (clang -fsanitize=fuzzer,address,undefined); run:
 *   build/fuzz/fuzz_broker_decode -max_total_time=60 [corpus_dir] */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../bus/broker/broker.h"
#include "log.h"

static char fuzz_dir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fuzz_cleanup(void)
{
    if (fuzz_dir[0]) {
        nftw(fuzz_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static struct broker *fuzz_broker(void)
{
    static struct broker b;
    static int ready;
    if (ready) {
        return &b;
    }
    char tmpl[] = "/tmp/fuzz-broker-XXXXXX";
    if (!mkdtemp(tmpl)) {
        abort();
    }
    static char dir[64];
    snprintf(dir, sizeof dir, "%s", tmpl);
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s", tmpl);
    atexit(fuzz_cleanup);
    log_init("fuzz-broker", LOG_LEVEL_ERROR);
    struct broker_options opt = {
        .listen = NULL, /* detached: no sockets */
        .advertised_host = "127.0.0.1",
        .data_dir = dir,
        .fsync = FSYNC_NEVER,
        .fsync_interval_ms = 100,
        .topic_defaults = {-1, 1 << 20, 1 << 16},
        .default_partitions = 2,
        .auto_create_topics = 1,
        .max_request_bytes = 1 << 20,
        .max_connections = 16,
        .request_timeout_ms = 1000,
        .idle_timeout_ms = 1000,
        .retention_check_ms = 1000,
        .max_buffered_bytes = 16 << 20,
        .max_topics = 64,
        .max_partitions_per_topic = 64,
        .max_partitions = 256,
    };
    char err[256];
    if (broker_init(&b, &opt, err, sizeof err) != 0) {
        fprintf(stderr, "broker_init: %s\n", err);
        abort();
    }
    char e2[64];
    (void)store_topic_create(&b.store, "t", 2, NULL, e2, sizeof e2);
    ready = 1;
    return &b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long runs;
    struct broker *b = fuzz_broker();
    if (++runs % 1000 == 0) {
        (void)store_enforce_retention(&b->store, 0); /* keep the log bounded (1 MiB) */
    }
    struct conn *c = broker_conn_detached(b);
    (void)broker_conn_feed(b, c, data, size);
    /* Keep the store bounded: drop topics the input created (all but "t"). */
    while (b->store.n_topics > 1) {
        for (size_t i = 0; i < b->store.n_topics; i++) {
            if (strcmp(b->store.topics[i]->name, "t") != 0) {
                char name[STORE_MAX_NAME + 1];
                snprintf(name, sizeof name, "%s", b->store.topics[i]->name);
                store_topic_delete(&b->store, name);
                break;
            }
        }
    }
    return 0;
}
