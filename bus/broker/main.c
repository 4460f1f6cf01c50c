/* bus-broker: a single-node, durable broker speaking the Kafka protocol (see docs/broker.md).
 *
 * main reads the configuration, opens the log (recovering it), starts the admin HTTP server
 * (/healthz, /readyz, /metrics) and runs the Kafka event loop on its own thread until SIGTERM or
 * SIGINT; then it stops the loop, which syncs the log before returning. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "alloc.h"
#include "app.h"
#include "broker.h"
#include "http_server.h"
#include "log.h"

static const struct config_def BROKER_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:9092", 0, 200, 0, NULL,
     "Kafka protocol listener, IPv4 host:port (port 0 = any free port)."},
    {"advertised_host", CONFIG_STRING, "127.0.0.1", 0, 200, 0, NULL,
     "Host name clients are told to connect to (Metadata, FindCoordinator)."},
    {"advertised_port", CONFIG_INT, "0", 0, 65535, 0, NULL,
     "Port clients are told to connect to; 0 = the listening port (set it behind a proxy)."},
    {"data_dir", CONFIG_STRING, "var/broker", 0, 4000, 0, NULL,
     "Directory of the log, topic metadata and committed offsets."},
    {"fsync", CONFIG_STRING, "always", 0, 16, 0, NULL,
     "always: fsync (in group-commit rounds) before answering acks=all; interval: fsync every "
     "fsync_interval_ms, acks=all waits for it; never: leave it to the OS."},
    {"fsync_interval_ms", CONFIG_INT, "100", 1, 60000, 0, NULL,
     "Period of the interval fsync policy."},
    {"segment_bytes", CONFIG_INT, "67108864", 4096, 1073741824, 0, NULL,
     "Default size at which a partition's active segment is rolled."},
    {"default_partitions", CONFIG_INT, "4", 1, 10000, 0, NULL,
     "Partitions of an auto-created topic and of CreateTopics with -1 partitions."},
    {"auto_create_topics", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "Create a topic when a client asks for its metadata (like Kafka's auto.create.topics.enable)."},
    {"retention_ms", CONFIG_INT, "604800000", -1, 1e15, 0, NULL,
     "Default retention by age in ms (-1 = forever); whole segments are deleted."},
    {"retention_bytes", CONFIG_INT, "-1", -1, 1e15, 0, NULL,
     "Default retention by size per partition in bytes (-1 = unlimited)."},
    {"retention_check_ms", CONFIG_INT, "30000", 10, 3600000, 0, NULL,
     "How often retention is enforced."},
    {"max_request_bytes", CONFIG_INT, "104857600", 1024, 1073741824, 0, NULL,
     "Largest request frame accepted; larger closes the connection."},
    {"max_connections", CONFIG_INT, "1024", 1, 100000, 0, NULL,
     "Client connections beyond this are refused."},
    {"request_timeout_ms", CONFIG_INT, "30000", 100, 3600000, 0, NULL,
     "A connection that leaves a request incomplete for this long is closed."},
    {"idle_timeout_ms", CONFIG_INT, "600000", 1000, 86400000, 0, NULL,
     "A connection silent for this long is closed (Kafka's connections.max.idle.ms)."},
    {"group_initial_rebalance_delay_ms", CONFIG_INT, "0", 0, 60000, 0, NULL,
     "Wait this long for more members before the first generation of an empty group."},
    {"topics", CONFIG_STRING, "", 0, 65536, 0, NULL,
     "Topics to create at start when missing: \"name:partitions,name2:partitions\" (the bus "
     "normally creates its topics with busctl apply)."},
    {"http.listen", CONFIG_STRING, "127.0.0.1:9093", 0, 200, 0, NULL,
     "Admin HTTP listener: /healthz, /readyz, /metrics. Empty = none."},
    CONFIG_DEF_END,
};

/* Creates the missing topics of a "name:partitions,..." list; -1 on a malformed list. */
static int create_topics(struct broker *b, const char *list)
{
    if (!list || !list[0])
        return 0;
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        char *end = NULL;
        long n = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || end == colon + 1 || *end || n < 1 || n > 10000) {
            log_error("config key topics: expected name:partitions, got \"%s\"", tok);
            rc = -1;
            break;
        }
        *colon = 0;
        if (store_topic_find(&b->store, tok))
            continue;
        char err[256];
        if (store_topic_create(&b->store, tok, (int32_t)n, NULL, err, sizeof err) != 0) {
            log_error("config key topics: cannot create %s: %s", tok, err);
            rc = -1;
        }
    }
    free(copy);
    return rc;
}

static void *loop_main(void *arg)
{
    broker_run(arg);
    return NULL;
}

/* /readyz: not ready while writes fail (a full disk); the broker still serves reads then, and
 * becomes ready again with the first write that succeeds, or as soon as the data directory has
 * room again (a probe that stops traffic must not keep it stopped). */
static bool is_ready(void *ctx, const char **reason)
{
    struct broker *b = ctx;
    if (!atomic_load(&b->is_storage_failing))
        return true;
    struct statvfs vfs;
    if (statvfs(b->opt.data_dir, &vfs) == 0 &&
        (unsigned long long)vfs.f_bavail * vfs.f_frsize >= 1ull << 20) {
        atomic_store(&b->is_storage_failing, 0);
        return true;
    }
    *reason = "cannot write the log (disk full or failing)";
    return false;
}

int main(int argc, char **argv)
{
    struct app app;
    if (app_init(&app, argc, argv, "bus-broker", "BROKER", BROKER_CONFIG) != 0)
        return 2;
    if (app.exit_now)
        return 0;
    int rc = 1;
    struct config *cfg = app.cfg;
    /* Fetch answers are large, short-lived buffers: keep them in the heap instead of mapping and
     * faulting in fresh pages for every answer. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    struct broker_options opt = {
        .listen = config_str(cfg, "listen"),
        .advertised_host = config_str(cfg, "advertised_host"),
        .advertised_port = (int)config_int(cfg, "advertised_port"),
        .data_dir = config_str(cfg, "data_dir"),
        .fsync_interval_ms = (long)config_int(cfg, "fsync_interval_ms"),
        .topic_defaults = {config_int(cfg, "retention_ms"), config_int(cfg, "retention_bytes"),
                           config_int(cfg, "segment_bytes")},
        .default_partitions = (int)config_int(cfg, "default_partitions"),
        .auto_create_topics = config_bool(cfg, "auto_create_topics"),
        .max_request_bytes = (long)config_int(cfg, "max_request_bytes"),
        .max_connections = (long)config_int(cfg, "max_connections"),
        .request_timeout_ms = (long)config_int(cfg, "request_timeout_ms"),
        .idle_timeout_ms = (long)config_int(cfg, "idle_timeout_ms"),
        .retention_check_ms = (long)config_int(cfg, "retention_check_ms"),
        .group_initial_rebalance_delay_ms =
            (long)config_int(cfg, "group_initial_rebalance_delay_ms"),
    };
    const char *fs = config_str(cfg, "fsync");
    if (!strcmp(fs, "always"))
        opt.fsync = FSYNC_ALWAYS;
    else if (!strcmp(fs, "interval"))
        opt.fsync = FSYNC_INTERVAL;
    else if (!strcmp(fs, "never"))
        opt.fsync = FSYNC_NEVER;
    else {
        log_error("config key fsync: expected always, interval or never, got \"%s\"", fs);
        app_release(&app);
        return 2;
    }
    struct broker b;
    char err[512] = "";
    struct http_server *http = NULL;
    pthread_t th;
    int started = 0;
    if (broker_init(&b, &opt, err, sizeof err) != 0) {
        log_error("cannot start: %s", err);
        goto out;
    }
    if (create_topics(&b, config_str(cfg, "topics")) != 0)
        goto out;
    const char *hl = config_str(cfg, "http.listen");
    if (hl && hl[0]) {
        struct http_server_options ho = {.listen = hl, .threads = 1, .ready = is_ready,
                                         .ready_ctx = &b};
        http = http_server_new(&ho);
        if (http_server_start(http, err, sizeof err) != 0) {
            log_error("cannot start admin HTTP server: %s", err);
            goto out;
        }
    }
    if (pthread_create(&th, NULL, loop_main, &b) != 0) {
        log_error("cannot start the event loop thread");
        goto out;
    }
    started = 1;
    int sig;
    while ((sig = app_wait_signal(&app)) == SIGHUP)
        log_info("SIGHUP ignored: restart to change the configuration");
    log_info("signal %d: shutting down", sig);
    rc = 0;
out:
    if (started) {
        broker_stop(&b);
        pthread_join(th, NULL);
    }
    http_server_free(http, 1000);
    broker_release(&b);
    app_release(&app);
    return rc;
}
