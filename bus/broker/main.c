/* bus-broker: a single-node, durable broker speaking the Kafka protocol (see docs/broker.md).
 *
 * main reads the configuration, opens the log (recovering it), starts the admin HTTP server
 * (/healthz, /readyz, /metrics) and runs the Kafka event loop on its own thread until SIGTERM or
 * SIGINT; then it stops the loop, which syncs the log before returning. SIGHUP reloads the users
 * and ACL files. `bus-broker --scram-user NAME` prints a users-file entry for the password read
 * from stdin and exits. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "alloc.h"
#include "app.h"
#include "broker.h"
#include "crypto_scram.h"
#include "http/http_server.h"
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
     "Create a topic when a client asks for its metadata (like Kafka's auto.create.topics.enable). "
     "Unset: true in development, false in production (BUS_ENV)."},
    {"retention_ms", CONFIG_INT, "604800000", -1, 1e15, 0, NULL,
     "Default retention by age in ms (-1 = forever); whole segments are deleted."},
    {"retention_bytes", CONFIG_INT, "-1", -1, 1e15, 0, NULL,
     "Default retention by size per partition in bytes (-1 = unlimited)."},
    {"retention_check_ms", CONFIG_INT, "30000", 10, 3600000, 0, NULL,
     "How often retention is enforced."},
    {"max_request_bytes", CONFIG_INT, "16777216", 1024, 1073741824, 0, NULL,
     "Largest request frame accepted, and so the most one connection buffers of a request; "
     "larger closes the connection."},
    {"max_connections", CONFIG_INT, "1024", 1, 100000, 0, NULL,
     "Client connections beyond this are refused."},
    {"max_connections_per_address", CONFIG_INT, "100", 1, 100000, 0, NULL,
     "Client connections from one IP address beyond this are refused (closed at once)."},
    {"max_buffered_bytes", CONFIG_INT, "16777216", 65536, 1073741824, 0, NULL,
     "Unsent answer bytes held per connection before the broker stops reading its requests."},
    {"max_topics", CONFIG_INT, "1000", 1, 100000, 0, NULL,
     "Topics the broker holds at most; CreateTopics or auto-create beyond: POLICY_VIOLATION."},
    {"max_partitions_per_topic", CONFIG_INT, "1000", 1, 10000, 0, NULL,
     "Partitions of one topic at most; beyond: INVALID_PARTITIONS."},
    {"max_partitions", CONFIG_INT, "4000", 1, 1000000, 0, NULL,
     "Partitions of all topics at most; beyond: POLICY_VIOLATION (also refused when the open "
     "file limit could not hold their segments)."},
    {"request_timeout_ms", CONFIG_INT, "30000", 100, 3600000, 0, NULL,
     "A connection that leaves a request incomplete for this long is closed."},
    {"idle_timeout_ms", CONFIG_INT, "120000", 1000, 86400000, 0, NULL,
     "A connection silent for this long is closed (Kafka's connections.max.idle.ms, whose 10 "
     "minutes let idle clients hold every slot); clients reconnect when they need to."},
    {"group_initial_rebalance_delay_ms", CONFIG_INT, "0", 0, 60000, 0, NULL,
     "Wait this long for more members before the first generation of an empty group."},
    {"topics", CONFIG_STRING, "", 0, 65536, 0, NULL,
     "Topics to create at start when missing: \"name:partitions,name2:partitions\" (the bus "
     "normally creates its topics with busctl apply)."},
    {"sasl.users_file", CONFIG_STRING, "", 0, 4000, 0, NULL,
     "JSON file of SCRAM credentials (bus-broker --scram-user NAME makes an entry); reloaded on "
     "SIGHUP. Empty = no users."},
    {"sasl.required", CONFIG_BOOL, "false", 0, 0, 0, NULL,
     "Refuse every request but ApiVersions and SASL before authentication. Unset: false in "
     "development, true in production (BUS_ENV)."},
    {"sasl.handshake_timeout_ms", CONFIG_INT, "10000", 100, 600000, 0, NULL,
     "When sasl.required: a connection not authenticated this long after it opened is closed."},
    {"sasl.plain", CONFIG_BOOL, "false", 0, 0, 0, NULL,
     "Also offer SASL PLAIN (checked against the SCRAM credentials; the password crosses the "
     "network in clear: only behind TLS or on loopback)."},
    {"acl.file", CONFIG_STRING, "", 0, 4000, 0, NULL,
     "JSON file of ACLs and super users (docs/broker.md, Security); reloaded on SIGHUP. Empty = "
     "every request of every principal is allowed."},
    {"http.listen", CONFIG_STRING, "127.0.0.1:9093", 0, 200, 0, NULL,
     "Admin HTTP listener: /healthz, /readyz, /metrics. Empty = none."},
    CONFIG_DEF_END,
};

/* Creates the missing topics of a "name:partitions,..." list; -1 on a malformed list. */
static int create_topics(struct broker *b, const char *list)
{
    if (!list || !list[0]) {
        return 0;
    }
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
        if (store_topic_find(&b->store, tok)) {
            continue;
        }
        char err[256];
        if (store_topic_create(&b->store, tok, (int32_t)n, NULL, err, sizeof err) != 0) {
            log_error("config key topics: cannot create %s: %s", tok, err);
            rc = -1;
        }
    }
    free(copy);
    return rc;
}

/* Whether key was given in the config file (flat "a.b" or nested {"a": {"b": ...}}) or in the
 * environment (BROKER_A_B): a key whose default depends on the mode keeps an explicit value. */
static int is_set(struct config *cfg, const char *key)
{
    char env[128];
    size_t k = (size_t)snprintf(env, sizeof env, "BROKER_");
    for (const char *p = key; *p && k + 1 < sizeof env; p++) {
        env[k++] = (*p == '.' || *p == '-') ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    }
    env[k] = 0;
    if (getenv(env)) {
        return 1;
    }
    json_t *file = config_json(cfg);
    if (!file) {
        return 0;
    }
    if (json_object_get(file, key)) {
        return 1;
    }
    const char *dot = strchr(key, '.');
    if (!dot) {
        return 0;
    }
    char head[64];
    snprintf(head, sizeof head, "%.*s", (int)(dot - key), key);
    json_t *sub = json_object_get(file, head);
    return json_is_object(sub) && json_object_get(sub, dot + 1) != NULL;
}

static int mode_bool(struct config *cfg, const char *key, int production_default)
{
    if (is_set(cfg, key) || !config_is_production()) {
        return config_bool(cfg, key);
    }
    return production_default;
}

/* bus-broker --scram-user NAME [ITERATIONS]: reads the password (first line of stdin) and
 * prints the users-file entry with both SCRAM mechanisms. */
static int scram_user_main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bus-broker --scram-user NAME [ITERATIONS] < password\n");
        return 2;
    }
    int iterations = argc == 4 ? atoi(argv[3]) : 8192;
    char pw[1024];
    if (!fgets(pw, sizeof pw, stdin)) {
        fprintf(stderr, "bus-broker: no password on stdin\n");
        return 2;
    }
    pw[strcspn(pw, "\r\n")] = 0;
    if (!pw[0]) {
        fprintf(stderr, "bus-broker: empty password\n");
        return 2;
    }
    json_t *entry = sasl_user_entry_new(argv[2], pw, iterations);
    crypto_cleanse(pw, sizeof pw);
    if (!entry) {
        fprintf(stderr, "bus-broker: bad name, or iterations not in %d..%d\n", SCRAM_MIN_ITERATIONS,
                SCRAM_MAX_ITERATIONS);
        return 2;
    }
    char *text = json_dumps(entry, JSON_INDENT(2));
    printf("%s\n", text);
    free(text);
    json_decref(entry);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Each segment keeps two descriptors open (limits.h): take the hard limit of open files, as
 * Kafka's packaging does, so the partitions the limits allow fit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) {
        return;
    }
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
        log_info("open file limit raised from %lu to %lu", (unsigned long)was,
                 (unsigned long)rl.rlim_max);
    }
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
    if (!atomic_load(&b->is_storage_failing)) {
        return true;
    }
    struct statvfs vfs;
    if (statvfs(b->opt.data_dir, &vfs) == 0 &&
        (unsigned long long)vfs.f_bavail * vfs.f_frsize >= 1ull << 20) {
        atomic_store(&b->is_storage_failing, 0);
        return true;
    }
    *reason = "cannot write the log (disk full or failing)";
    return false;
}

/* The broker and what main runs beside it, for the hooks of app_serve. */
struct broker_main {
    struct broker_options opt;
    struct broker b;
    bool has_broker; /* broker_init was called: broker_release is due */
    struct http_server *http;
    pthread_t th;
    bool is_started; /* the event loop thread runs */
};

/* The options checked, the broker and its admin HTTP server started, the event loop thread
 * started. */
static int broker_start(struct app *app, void *ctx)
{
    struct broker_main *m = ctx;
    struct config *cfg = app->cfg;
    /* Fetch answers are large, short-lived buffers: keep them in the heap instead of mapping and
     * faulting in fresh pages for every answer. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    m->opt = (struct broker_options){
        .listen = config_str(cfg, "listen"),
        .advertised_host = config_str(cfg, "advertised_host"),
        .advertised_port = (int)config_int(cfg, "advertised_port"),
        .data_dir = config_str(cfg, "data_dir"),
        .fsync_interval_ms = (long)config_int(cfg, "fsync_interval_ms"),
        .topic_defaults = {config_int(cfg, "retention_ms"), config_int(cfg, "retention_bytes"),
                           config_int(cfg, "segment_bytes")},
        .default_partitions = (int)config_int(cfg, "default_partitions"),
        .auto_create_topics = mode_bool(cfg, "auto_create_topics", 0),
        .max_request_bytes = (long)config_int(cfg, "max_request_bytes"),
        .max_connections = (long)config_int(cfg, "max_connections"),
        .request_timeout_ms = (long)config_int(cfg, "request_timeout_ms"),
        .idle_timeout_ms = (long)config_int(cfg, "idle_timeout_ms"),
        .retention_check_ms = (long)config_int(cfg, "retention_check_ms"),
        .group_initial_rebalance_delay_ms =
            (long)config_int(cfg, "group_initial_rebalance_delay_ms"),
        .sasl_users_file = config_str(cfg, "sasl.users_file"),
        .is_sasl_required = mode_bool(cfg, "sasl.required", 1),
        .is_sasl_plain = config_bool(cfg, "sasl.plain"),
        .acl_file = config_str(cfg, "acl.file"),
        .sasl_handshake_timeout_ms = (long)config_int(cfg, "sasl.handshake_timeout_ms"),
        .max_connections_per_address = (long)config_int(cfg, "max_connections_per_address"),
        .max_buffered_bytes = (long)config_int(cfg, "max_buffered_bytes"),
        .max_topics = (long)config_int(cfg, "max_topics"),
        .max_partitions_per_topic = (long)config_int(cfg, "max_partitions_per_topic"),
        .max_partitions = (long)config_int(cfg, "max_partitions"),
    };
    if (m->opt.is_sasl_required && !(m->opt.sasl_users_file && m->opt.sasl_users_file[0])) {
        log_error("configuration refused: sasl.users_file must be set when sasl.required is true "
                  "(the default in production)");
        return 2;
    }
    const char *fs = config_str(cfg, "fsync");
    if (!strcmp(fs, "always")) {
        m->opt.fsync = FSYNC_ALWAYS;
    } else if (!strcmp(fs, "interval")) {
        m->opt.fsync = FSYNC_INTERVAL;
    } else if (!strcmp(fs, "never")) {
        m->opt.fsync = FSYNC_NEVER;
    } else {
        log_error("config key fsync: expected always, interval or never, got \"%s\"", fs);
        return 2;
    }
    raise_nofile();
    char err[512] = "";
    m->has_broker = true;
    if (broker_init(&m->b, &m->opt, err, sizeof err) != 0) {
        log_error("cannot start: %s", err);
        return 1;
    }
    if (create_topics(&m->b, config_str(cfg, "topics")) != 0) {
        return 1;
    }
    const char *hl = config_str(cfg, "http.listen");
    if (hl && hl[0]) {
        struct http_server_options ho = {
            .listen = hl, .threads = 1, .ready = is_ready, .ready_ctx = &m->b};
        m->http = http_server_new(&ho);
        if (http_server_start(m->http, err, sizeof err) != 0) {
            log_error("cannot start admin HTTP server: %s", err);
            return 1;
        }
    }
    if (pthread_create(&m->th, NULL, loop_main, &m->b) != 0) {
        log_error("cannot start the event loop thread");
        return 1;
    }
    m->is_started = true;
    return 0;
}

/* Until stopped: SIGHUP reloads the users and ACL files. */
static void broker_main_run(struct app *app, void *ctx)
{
    struct broker_main *m = ctx;
    int sig;
    while ((sig = app_wait_signal(app)) == SIGHUP) {
        log_info("SIGHUP: reloading the users and ACL files (other settings need a restart)");
        broker_reload(&m->b);
    }
    log_info("signal %d: shutting down", sig);
}

static void broker_main_release(struct app *app, void *ctx)
{
    (void)app;
    struct broker_main *m = ctx;
    if (m->is_started) {
        broker_stop(&m->b);
        pthread_join(m->th, NULL);
    }
    http_server_free(m->http, 1000);
    if (m->has_broker) {
        broker_release(&m->b);
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--scram-user")) {
        return scram_user_main(argc, argv);
    }
    struct broker_main m;
    memset(&m, 0, sizeof(m));
    const struct app_service svc = {
        .name = "bus-broker",
        .env_prefix = "BROKER",
        .defs = BROKER_CONFIG,
        .ctx = &m,
        .start = broker_start,
        .run = broker_main_run,
        .release = broker_main_release,
    };
    return app_serve(argc, argv, &svc);
}
