/* bus-dispatcher - delivers every event of a topic to every route subscribed to it (see
 * docs/bus.md).
 *
 * main wires the modules: configuration (the table below), the bus configuration's routes, the
 * shared HTTP pool and Kafka producer, one struct route per route (route.c: its consumer group,
 * deliveries and commits) and the admin HTTP server. SIGHUP or POST /v1/reload re-reads the bus
 * configuration and starts, restarts or stops only the routes that changed. SIGTERM stops every
 * route (stop fetching, finish in flight up to shutdown_timeout_ms, commit, leave the group).
 *
 * The admin API (/v1/..., Authorization: Bearer <admin.token>) also feeds the bus dashboard, static
 * files from web.dir served at / (bus/dispatcher/web/): topology, live route figures, a route's
 * dead letters and their replay (lib/kafka/dlq.c, shared with busctl). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "app.h"
#include "busconf.h"
#include "crypto.h"
#include "delivery.h"
#include "kafka/dlq.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "kafka/kafka.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "http/webpage.h"

static const struct config_def defs[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8081", 0, 0, 0, NULL,
     "Address and port of the admin HTTP API (/v1/routes, /v1/reload, /metrics) and of the bus "
     "dashboard (/)."},
    {"admin.token", CONFIG_STRING, "dev-admin-token", 0, 512, CONFIG_KEY, "BUS_ADMIN_TOKEN",
     "Bearer token the admin API (/v1/*) and the dashboard require. The default is for "
     "development only: set your own in production."},
    {"signing_secret", CONFIG_STRING, DELIVERY_DEV_SECRET, 0, 4096, CONFIG_KEY,
     "BUS_SIGNING_SECRET",
     "Key(s) every delivery is signed with (Standard Webhooks webhook-signature), for routes "
     "without their own \"secret\"; several separated by spaces while keys rotate "
     "(docs/security.md)."},
    WEBPAGE_CONFIG_DEFS("bus/dispatcher/web", "the bus dashboard", "/"),
    {"bootstrap", CONFIG_STRING, "127.0.0.1:9092", 0, 0, 0, "BUS_BOOTSTRAP",
     "Kafka bootstrap servers (host:port,...)."},
    {"bus_config_dir", CONFIG_STRING, "config/bus", 0, 0, 0, NULL,
     "Directory of the bus configuration files (topics and routes)."},
    {"bus_schema", CONFIG_STRING, "config/schema/bus.schema.json", 0, 0, 0, NULL,
     "JSON Schema the bus configuration files are validated against."},
    {"routes", CONFIG_STRING, "", 0, 0, 0, NULL,
     "Comma-separated route names to run (empty = every route): to split routes between "
     "dispatcher processes."},
    {"instance_id", CONFIG_STRING, "", 0, 200, 0, NULL,
     "This dispatcher's name among those running the same routes, the same after a restart: "
     "exactly-once routes use transactional.id bus.route.<route>.<instance_id>, so a restarted "
     "dispatcher fences its predecessor and aborts the transaction it left open. Empty = "
     "<hostname>:<port of listen>. Two dispatchers must not share one."},
    {"max_pending_per_partition", CONFIG_INT, "5000", 16, 100000, 0, NULL,
     "Events taken in but not finished per partition; beyond it the partition is paused."},
    {"http_connections", CONFIG_INT, "1024", 1, 65536, 0, NULL,
     "Connections the delivery HTTP pool keeps open at most; keep it at or above the sum of "
     "the routes' concurrency (every delivery in flight holds one)."},
    {"shutdown_timeout_ms", CONFIG_INT, "10000", 0, 600000, 0, NULL,
     "On SIGTERM or when a route is removed, how long deliveries in flight may finish."},
    CONFIG_DEF_END,
};

/* busctl sync writes the applied commit here, inside bus_config_dir (docs/bus.md). */
#define DISPATCHER_COMMIT_FILE ".bus-commit"
#define DISPATCHER_COMMIT_MAX 64 /* a SHA-256 object id in hex */

/* Dead letters shown per route at most (the page asks for fewer). */
#define DISPATCHER_DLQ_PEEK_DEFAULT 50
#define DISPATCHER_DLQ_TIMEOUT_MS 10000
/* A replay reads the dead-letter topic until it stays quiet this long. */
#define DISPATCHER_REPLAY_IDLE_MS 1500
#define DISPATCHER_REPLAY_JOIN_MS 30000

struct dispatcher {
    const struct config *cfg;
    const char *admin_token;
    struct route_env env;
    char instance[400];   /* the default instance_id (env.instance_id) */
    pthread_mutex_t lock; /* guards routes and bus */
    struct route **routes;
    size_t n_routes;
    struct busconf *bus; /* the configuration the routes run with (topology) */
    /* The git commit the configuration came from (DISPATCHER_COMMIT_FILE in bus_config_dir,
     * written by busctl sync), "" when unknown; guarded by lock. */
    char config_commit[DISPATCHER_COMMIT_MAX + 1];
    struct metric *commit_info;  /* bus_dispatcher_config_info{commit=...}; guarded by lock */
    pthread_mutex_t replay_lock; /* one dead-letter replay at a time */
    struct http_server *srv;
};

/* Reads the commit busctl sync recorded beside the configuration: one line of hex (a git object
 * id), else "" (a configuration applied by hand). */
static void read_config_commit(const char *dir, char out[DISPATCHER_COMMIT_MAX + 1])
{
    out[0] = '\0';
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, DISPATCHER_COMMIT_FILE) >= (int)sizeof path) {
        return;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char line[DISPATCHER_COMMIT_MAX + 2];
    if (fgets(line, sizeof line, f) != NULL) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        bool is_hex = n >= 7 && n <= DISPATCHER_COMMIT_MAX;
        for (size_t i = 0; is_hex && i < n; i++) {
            is_hex = (line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f');
        }
        if (is_hex) {
            memcpy(out, line, n + 1);
        }
    }
    fclose(f);
}

static bool is_selected(const char *list, const char *name)
{
    if (list == NULL || list[0] == '\0') {
        return true;
    }
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        const char *end = p;
        while (*end && *end != ',') {
            end++;
        }
        const char *e = end;
        while (e > p && e[-1] == ' ') {
            e--;
        }
        if ((size_t)(e - p) == n && strncmp(p, name, n) == 0) {
            return true;
        }
        p = end;
    }
    return false;
}

/* Loads the bus configuration and brings the running routes in line with it: unchanged routes
 * keep running; changed ones restart (their group's committed offsets carry over, so nothing is
 * skipped); removed ones stop; new ones start. Returns -1 when the configuration is invalid
 * (then nothing changes). */
static int reconcile(struct dispatcher *d, char *err, size_t err_len)
{
    struct busconf *bus = NULL;
    if (busconf_load(config_str(d->cfg, "bus_config_dir"), config_str(d->cfg, "bus_schema"), &bus,
                     err, err_len) != 0) {
        return -1;
    }
    const char *only = config_str(d->cfg, "routes");
    long deadline = (long)config_int(d->cfg, "shutdown_timeout_ms");
    struct route **next = xcalloc(bus->n_routes + 1, sizeof *next);
    size_t n_next = 0;
    int started = 0, stopped = 0, kept = 0;
    long total = 0; /* the selected routes' concurrency */

    pthread_mutex_lock(&d->lock);
    bool *is_kept = xcalloc(d->n_routes + 1, sizeof *is_kept);
    for (size_t i = 0; i < bus->n_routes; i++) {
        const struct busconf_route *rc = &bus->routes[i];
        if (!is_selected(only, rc->name)) {
            continue;
        }
        total += rc->concurrency;
        const struct busconf_topic *out = rc->output ? busconf_topic_find(bus, rc->output) : NULL;
        struct route *cur = NULL;
        size_t j;
        for (j = 0; j < d->n_routes; j++) {
            if (!is_kept[j] && strcmp(route_name(d->routes[j]), rc->name) == 0) {
                cur = d->routes[j];
                break;
            }
        }
        if (cur && route_is_same(cur, rc, out)) {
            is_kept[j] = true;
            next[n_next++] = cur;
            kept++;
            continue;
        }
        if (cur) { /* changed: stop the old one first (same group) */
            is_kept[j] = true;
            route_stop(cur, deadline);
            stopped++;
        }
        char rerr[512];
        struct route *r = route_start(&d->env, rc, out, rerr, sizeof rerr);
        if (r == NULL) {
            log_error("route %s not started: %s", rc->name, rerr);
            continue;
        }
        next[n_next++] = r;
        started++;
    }
    for (size_t j = 0; j < d->n_routes; j++) {
        if (!is_kept[j]) {
            route_stop(d->routes[j], deadline);
            stopped++;
        }
    }
    free(is_kept);
    free(d->routes);
    d->routes = next;
    d->n_routes = n_next;
    struct busconf *old = d->bus;
    d->bus = bus;
    char commit[DISPATCHER_COMMIT_MAX + 1];
    read_config_commit(config_str(d->cfg, "bus_config_dir"), commit);
    if (strcmp(commit, d->config_commit) != 0 || d->commit_info == NULL) {
        if (d->commit_info) {
            metric_set(d->commit_info, 0);
        }
        char labels[DISPATCHER_COMMIT_MAX + 16];
        snprintf(labels, sizeof labels, "commit=\"%s\"", commit);
        d->commit_info = metrics_gauge("bus_dispatcher_config_info",
                                       "1 for the git commit the running routes were applied "
                                       "from (busctl sync; empty: applied by hand)",
                                       labels);
        metric_set(d->commit_info, 1);
        memcpy(d->config_commit, commit, sizeof commit);
    }
    pthread_mutex_unlock(&d->lock);
    busconf_free(old);
    log_info("routes: %d started, %d stopped, %d unchanged%s%s", started, stopped, kept,
             commit[0] ? "; configuration from commit " : "", commit);
    /* Every delivery in flight holds a connection: a pool smaller than the routes' concurrency
     * closes one endpoint's idle connections to open another's, over and over, under load. */
    long cap = (long)config_int(d->cfg, "http_connections");
    if (total > cap) {
        log_warn("the routes' concurrency adds up to %ld, above http_connections (%ld): under "
                 "load connections to one endpoint are closed to open another's; raise "
                 "http_connections to at least %ld",
                 total, cap, total);
    }
    return 0;
}

/* The admin API's gate: answers 401 (no token) or 403 (another token) and returns false, or
 * returns true. Constant-time comparison. */
static bool is_admin(struct http_exchange *ex, const struct dispatcher *d)
{
    const char *token = http_bearer(ex);
    if (token == NULL || *token == '\0') {
        http_add_header(ex, "WWW-Authenticate", "Bearer");
        http_respond_error(ex, 401, "unauthorized", NULL,
                           "The admin API needs Authorization: Bearer <admin token>.");
        return false;
    }
    if (!crypto_equal(token, strlen(token), d->admin_token, strlen(d->admin_token))) {
        http_respond_error(ex, 403, "forbidden", NULL, "This is not the admin token.");
        return false;
    }
    return true;
}

static const char *const ORDERING_NAMES[] = {"key", "partition", "none"};

/* GET /v1/topology: what the dashboard draws. Topics and routes of the loaded configuration
 * (only the routes this process runs, see "routes"), with which topics are outputs and dead-letter
 * topics of which routes. */
static void handle_topology(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    if (!is_admin(ex, d)) {
        return;
    }
    json_t *topics = json_array();
    json_t *routes = json_array();
    pthread_mutex_lock(&d->lock);
    const struct busconf *bus = d->bus;
    for (size_t i = 0; bus && i < bus->n_topics; i++) {
        const struct busconf_topic *t = &bus->topics[i];
        json_array_append_new(topics, json_pack("{s:s, s:i, s:s?, s:i}", "name", t->name,
                                                "partitions", t->partitions, "key", t->key,
                                                "retention_hours", t->retention_hours));
    }
    for (size_t i = 0; i < d->n_routes; i++) {
        const struct busconf_route *rc = busconf_route_find(bus, route_name(d->routes[i]));
        if (rc == NULL) {
            continue;
        }
        json_array_append_new(
            routes,
            json_pack("{s:s, s:s, s:s, s:s, s:s?, s:b, s:s?, s:s?, s:i, s:i, s:s, s:i, s:i}",
                      "name", rc->name, "topic", rc->topic, "endpoint", rc->endpoint, "mode",
                      rc->mode == BUSCONF_STREAMING ? "streaming" : "one-way", "output", rc->output,
                      "exactly_once", rc->is_exactly_once, "dead_letter", rc->dead_letter,
                      "service", rc->service, "concurrency", rc->concurrency, "batch", rc->batch,
                      "ordering", ORDERING_NAMES[rc->ordering], "timeout_ms", rc->timeout_ms,
                      "max_attempts", rc->retry_max_attempts));
    }
    pthread_mutex_unlock(&d->lock);
    http_respond_json(ex, 200, json_pack("{s:o, s:o}", "topics", topics, "routes", routes));
}

/* The route's topic and dead-letter topic (copies), or false when the route does not run here or
 * has no dead-letter topic (answered 404). */
static bool route_dlq_find(struct http_exchange *ex, struct dispatcher *d, const char *name,
                           char **topic, char **dead_letter)
{
    *topic = NULL;
    *dead_letter = NULL;
    bool is_running = false;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_routes; i++) {
        if (strcmp(route_name(d->routes[i]), name) == 0) {
            is_running = true;
        }
    }
    const struct busconf_route *rc = is_running ? busconf_route_find(d->bus, name) : NULL;
    if (rc != NULL && rc->dead_letter != NULL) {
        *topic = xstrdup(rc->topic);
        *dead_letter = xstrdup(rc->dead_letter);
    }
    pthread_mutex_unlock(&d->lock);
    if (rc == NULL) {
        http_respond_error(ex, 404, "unknown_route", json_pack("{s:s}", "route", name),
                           "No route of that name runs in this dispatcher.");
        return false;
    }
    if (*dead_letter == NULL) {
        http_respond_error(ex, 404, "no_dead_letter", json_pack("{s:s}", "route", name),
                           "This route has no dead-letter topic.");
        return false;
    }
    return true;
}

/* GET /v1/routes/{name}/dead-letters?limit=N: the route's newest dead letters (lib/kafka/dlq.c). */
static void handle_dead_letters(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    if (!is_admin(ex, d)) {
        return;
    }
    char *topic = NULL, *dead_letter = NULL;
    if (!route_dlq_find(ex, d, http_param(ex, 0), &topic, &dead_letter)) {
        return;
    }
    long limit = DISPATCHER_DLQ_PEEK_DEFAULT;
    const char *q = http_query(ex, "limit");
    if (q != NULL) {
        char *end = NULL;
        limit = strtol(q, &end, 10);
        if (end == q || *end != '\0' || limit < 1 || limit > DLQ_PEEK_MAX) {
            http_respond_error(ex, 400, "bad_limit", NULL, "limit must be 1 to %d.", DLQ_PEEK_MAX);
            goto out;
        }
    }
    char err[512];
    json_t *doc = dlq_peek(d->env.bootstrap, d->env.kafka_props, http_param(ex, 0), dead_letter,
                           (int)limit, DISPATCHER_DLQ_TIMEOUT_MS, err, sizeof err);
    if (doc == NULL) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_error(ex, 503, "broker_unavailable", NULL, "Cannot read %s: %s", dead_letter,
                           err);
        goto out;
    }
    http_respond_json(ex, 200, doc);
out:
    free(topic);
    free(dead_letter);
}

/* POST /v1/routes/{name}/dead-letters/replay: sends the route's dead letters through the route
 * again (lib/kafka/dlq.c; what busctl dlq replay does). Blocks this handler thread for the replay
 * (seconds): one at a time, a second one meanwhile is answered 409. */
static void handle_replay(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    if (!is_admin(ex, d)) {
        return;
    }
    char *topic = NULL, *dead_letter = NULL;
    const char *name = http_param(ex, 0);
    if (!route_dlq_find(ex, d, name, &topic, &dead_letter)) {
        return;
    }
    if (pthread_mutex_trylock(&d->replay_lock) != 0) {
        http_respond_error(ex, 409, "replay_running", NULL,
                           "A replay is running; try again when it has finished.");
        goto out;
    }
    char err[512];
    long replayed = 0, skipped = 0;
    int rc = dlq_replay(d->env.bootstrap, d->env.kafka_props, name, topic, dead_letter,
                        DISPATCHER_REPLAY_IDLE_MS, DISPATCHER_REPLAY_JOIN_MS, &replayed, &skipped,
                        err, sizeof err);
    pthread_mutex_unlock(&d->replay_lock);
    if (rc != 0) {
        log_error("route %s: dead-letter replay failed: %s", name, err);
        http_add_header(ex, "Retry-After", "5");
        http_respond_error(ex, 503, "replay_failed", NULL, "Replay failed: %s", err);
        goto out;
    }
    log_info("route %s: replayed %ld dead letters to %s", name, replayed, topic);
    http_respond_json(ex, 200,
                      json_pack("{s:s, s:s, s:s, s:I, s:I}", "route", name, "from", dead_letter,
                                "to", topic, "replayed", (json_int_t)replayed, "skipped",
                                (json_int_t)skipped));
out:
    free(topic);
    free(dead_letter);
}

static void handle_routes(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    if (!is_admin(ex, d)) {
        return;
    }
    json_t *list = json_array();
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_routes; i++) {
        json_array_append_new(list, route_status(d->routes[i]));
    }
    json_t *commit = d->config_commit[0] ? json_string(d->config_commit) : json_null();
    pthread_mutex_unlock(&d->lock);
    http_respond_json(ex, 200, json_pack("{s:o, s:o}", "routes", list, "config_commit", commit));
}

static void handle_reload(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    if (!is_admin(ex, d)) {
        return;
    }
    char err[8192];
    if (reconcile(d, err, sizeof err) != 0) {
        log_error("reload refused, bus configuration invalid:\n%s", err);
        http_respond_error(ex, 422, "invalid_config", json_pack("{s:s}", "errors", err),
                           "bus configuration invalid; routes unchanged");
        return;
    }
    json_t *names = json_array();
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_routes; i++) {
        json_array_append_new(names, json_string(route_name(d->routes[i])));
    }
    pthread_mutex_unlock(&d->lock);
    http_respond_json(ex, 200, json_pack("{s:b, s:o}", "reloaded", 1, "routes", names));
}

/* Ready: its producer (streaming outputs, dead letters) is healthy and a broker answers. */
static bool is_ready(void *ctx, const char **reason)
{
    struct dispatcher *d = ctx;
    if (kafka_producer_health(d->env.producer, reason) != 0) {
        return false;
    }
    if (!kafka_producer_is_connected(d->env.producer)) {
        *reason = "Kafka broker unreachable";
        return false;
    }
    return true;
}

/* The state every other hook relies on (its locks). */
static int dispatcher_prepare(struct app *app, void *ctx)
{
    struct dispatcher *d = ctx;
    d->cfg = app->cfg;
    d->admin_token = config_str(app->cfg, "admin.token");
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->replay_lock, NULL);
    return 0;
}

/* The bus configuration checked, the producer, the routes started, the admin API started. */
static int dispatcher_start(struct app *app, void *ctx)
{
    struct dispatcher *d = ctx;
    char err[8192];
    const struct config *cfg = app->cfg;
    if (d->admin_token == NULL || d->admin_token[0] == '\0') {
        log_error("admin.token is empty: set a token (the admin API and the dashboard need it)");
        return 1;
    }
    /* The bus configuration is checked before anything connects, so a refusal (production:
     * a development token, a weak route key) is the only line the start logs after the
     * configuration. */
    struct busconf *first = NULL;
    if (busconf_load(config_str(cfg, "bus_config_dir"), config_str(cfg, "bus_schema"), &first, err,
                     sizeof err) != 0) {
        log_error("bus configuration invalid:\n%s", err);
        return 2;
    }
    busconf_free(first);
    d->env.signing_secret = config_str(cfg, "signing_secret");
    d->env.bootstrap = config_str(cfg, "bootstrap");
    d->env.instance_id = config_str(cfg, "instance_id");
    if (d->env.instance_id[0] == '\0') {
        char host[256] = "localhost";
        (void)gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        const char *listen = config_str(cfg, "listen");
        const char *port = strrchr(listen, ':');
        snprintf(d->instance, sizeof d->instance, "%s:%s", host, port ? port + 1 : listen);
        d->env.instance_id = d->instance;
    }
    d->env.kafka_props = config_kafka(cfg);
    d->env.max_pending_per_partition = (unsigned)config_int(cfg, "max_pending_per_partition");
    d->env.pool = http_pool_new((unsigned)config_int(cfg, "http_connections"));
    d->env.producer = kafka_producer_new(d->env.bootstrap, d->env.kafka_props, 0, err, sizeof err);
    if (d->env.producer == NULL) {
        log_error("%s", err);
        return 1;
    }
    if (reconcile(d, err, sizeof err) != 0) {
        log_error("bus configuration invalid:\n%s", err);
        return 2; /* a configuration refused, as app_init's (production: docs/security.md) */
    }
    /* Four threads: a dead-letter replay holds one for seconds. */
    struct http_server_options ho = {
        .listen = config_str(cfg, "listen"), .threads = 4, .ready = is_ready, .ready_ctx = d};
    struct http_server *srv = http_server_new(&ho);
    d->srv = srv;
    http_server_route(srv, "GET", "/v1/routes", handle_routes, d, 0);
    http_server_route(srv, "POST", "/v1/reload", handle_reload, d, 0);
    http_server_route(srv, "GET", "/v1/topology", handle_topology, d, 0);
    http_server_route(srv, "GET", "/v1/routes/{}/dead-letters", handle_dead_letters, d, 0);
    http_server_route(srv, "POST", "/v1/routes/{}/dead-letters/replay", handle_replay, d, 0);
    webpage_serve_files(srv, "/", config_str(cfg, "web.dir"), config_str(cfg, "web.common_dir"));
    if (http_server_start(srv, err, sizeof err) != 0) {
        log_error("cannot listen on %s: %s", ho.listen, err);
        return 1;
    }
    log_info("dispatching %zu routes from %s; admin on %s", d->n_routes, d->env.bootstrap,
             ho.listen);
    return 0;
}

/* Until stopped: SIGHUP reconciles the routes with the bus configuration. */
static void dispatcher_run(struct app *app, void *ctx)
{
    struct dispatcher *d = ctx;
    char err[8192];
    int sig;
    while ((sig = app_wait_signal(app)) == SIGHUP) {
        if (reconcile(d, err, sizeof err) != 0) {
            log_error("SIGHUP: bus configuration invalid, routes unchanged:\n%s", err);
        }
    }
    log_info("signal %d: stopping %zu routes", sig, d->n_routes);
}

static void dispatcher_release(struct app *app, void *ctx)
{
    struct dispatcher *d = ctx;
    const struct config *cfg = app->cfg;
    /* Everything ends within shutdown_timeout_ms, whatever the broker and the endpoints do
     * (issue 21): every route stops at once (not one after the other), by the deadline less a
     * tail for the producer's last acknowledgements; routes with callbacks still due are freed
     * after the pool and the producer, whose freeing runs those callbacks. */
    long long stop_at = app_now_ms();
    long long budget = (long long)config_int(cfg, "shutdown_timeout_ms");
    long long tail = budget / 5 < 1000 ? budget / 5 : 1000;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_routes; i++) {
        route_stop_begin(d->routes[i], stop_at + budget - tail);
    }
    struct route **late = xcalloc(d->n_routes + 1, sizeof *late);
    size_t n_late = 0;
    for (size_t i = 0; i < d->n_routes; i++) {
        struct route *r = route_stop_end(d->routes[i], true);
        if (r) {
            late[n_late++] = r;
        }
    }
    free(d->routes);
    d->routes = NULL;
    d->n_routes = 0;
    pthread_mutex_unlock(&d->lock);
    http_server_free(d->srv, 200);
    long long left = stop_at + budget - app_now_ms();
    kafka_producer_free(d->env.producer, left > 0 ? (int)left : 0);
    http_pool_free(d->env.pool);
    for (size_t i = 0; i < n_late; i++) {
        route_free_late(late[i]);
    }
    free(late);
    busconf_free(d->bus);
    pthread_mutex_destroy(&d->replay_lock);
    pthread_mutex_destroy(&d->lock);
}

int main(int argc, char **argv)
{
    struct dispatcher d = {0};
    const struct app_service svc = {
        .name = "bus-dispatcher",
        .env_prefix = "DISPATCHER",
        .defs = defs,
        .ctx = &d,
        .prepare = dispatcher_prepare,
        .start = dispatcher_start,
        .run = dispatcher_run,
        .release = dispatcher_release,
    };
    return app_serve(argc, argv, &svc);
}
