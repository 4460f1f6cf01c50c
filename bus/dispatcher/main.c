/* bus-dispatcher - delivers every event of a topic to every route subscribed to it (see
 * docs/bus.md).
 *
 * main wires the modules: configuration (the table below), the bus configuration's routes, the
 * shared HTTP pool and Kafka producer, one struct route per route (route.c: its consumer group,
 * deliveries and commits) and the admin HTTP server. SIGHUP or POST /v1/reload re-reads the bus
 * configuration and starts, restarts or stops only the routes that changed. SIGTERM stops every
 * route (stop fetching, finish in flight up to shutdown_timeout_ms, commit, leave the group). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "app.h"
#include "busconf.h"
#include "http_client.h"
#include "http_server.h"
#include "kafka.h"
#include "log.h"
#include "route.h"

static const struct config_def defs[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8081", 0, 0, 0, NULL,
     "Address and port of the admin HTTP API (/v1/routes, /v1/reload, /metrics)."},
    {"bootstrap", CONFIG_STRING, "127.0.0.1:9092", 0, 0, 0, "BUS_BOOTSTRAP",
     "Kafka bootstrap servers (host:port,...)."},
    {"bus_config_dir", CONFIG_STRING, "config/bus", 0, 0, 0, NULL,
     "Directory of the bus configuration files (topics and routes)."},
    {"bus_schema", CONFIG_STRING, "config/schema/bus.schema.json", 0, 0, 0, NULL,
     "JSON Schema the bus configuration files are validated against."},
    {"routes", CONFIG_STRING, "", 0, 0, 0, NULL,
     "Comma-separated route names to run (empty = every route): to split routes between "
     "dispatcher processes."},
    {"max_pending_per_partition", CONFIG_INT, "5000", 16, 100000, 0, NULL,
     "Events taken in but not finished per partition; beyond it the partition is paused."},
    {"http_connections", CONFIG_INT, "256", 1, 65536, 0, NULL,
     "Connections the delivery HTTP pool keeps open at most."},
    {"shutdown_timeout_ms", CONFIG_INT, "10000", 0, 600000, 0, NULL,
     "On SIGTERM or when a route is removed, how long deliveries in flight may finish."},
    CONFIG_DEF_END,
};

struct dispatcher {
    const struct config *cfg;
    struct route_env env;
    pthread_mutex_t lock; /* guards routes */
    struct route **routes;
    size_t n_routes;
};

static bool is_selected(const char *list, const char *name)
{
    if (list == NULL || list[0] == '\0')
        return true;
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > p && e[-1] == ' ')
            e--;
        if ((size_t)(e - p) == n && strncmp(p, name, n) == 0)
            return true;
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
                     err, err_len) != 0)
        return -1;
    const char *only = config_str(d->cfg, "routes");
    long deadline = (long)config_int(d->cfg, "shutdown_timeout_ms");
    struct route **next = xcalloc(bus->n_routes + 1, sizeof *next);
    size_t n_next = 0;
    int started = 0, stopped = 0, kept = 0;

    pthread_mutex_lock(&d->lock);
    bool *is_kept = xcalloc(d->n_routes + 1, sizeof *is_kept);
    for (size_t i = 0; i < bus->n_routes; i++) {
        const struct busconf_route *rc = &bus->routes[i];
        if (!is_selected(only, rc->name))
            continue;
        const struct busconf_topic *out = rc->output ? busconf_topic_find(bus, rc->output) : NULL;
        struct route *cur = NULL;
        size_t j;
        for (j = 0; j < d->n_routes; j++)
            if (!is_kept[j] && strcmp(route_name(d->routes[j]), rc->name) == 0) {
                cur = d->routes[j];
                break;
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
    for (size_t j = 0; j < d->n_routes; j++)
        if (!is_kept[j]) {
            route_stop(d->routes[j], deadline);
            stopped++;
        }
    free(is_kept);
    free(d->routes);
    d->routes = next;
    d->n_routes = n_next;
    pthread_mutex_unlock(&d->lock);
    busconf_free(bus);
    log_info("routes: %d started, %d stopped, %d unchanged", started, stopped, kept);
    return 0;
}

static void handle_routes(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    json_t *list = json_array();
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_routes; i++)
        json_array_append_new(list, route_status(d->routes[i]));
    pthread_mutex_unlock(&d->lock);
    http_respond_json(ex, 200, json_pack("{s:o}", "routes", list));
}

static void handle_reload(struct http_exchange *ex, void *ctx)
{
    struct dispatcher *d = ctx;
    char err[8192];
    if (reconcile(d, err, sizeof err) != 0) {
        log_error("reload refused, bus configuration invalid:\n%s", err);
        http_respond_error(ex, 422, "invalid_config", json_pack("{s:s}", "errors", err),
                           "bus configuration invalid; routes unchanged");
        return;
    }
    json_t *names = json_array();
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_routes; i++)
        json_array_append_new(names, json_string(route_name(d->routes[i])));
    pthread_mutex_unlock(&d->lock);
    http_respond_json(ex, 200, json_pack("{s:b, s:o}", "reloaded", 1, "routes", names));
}

static bool is_ready(void *ctx, const char **reason)
{
    struct dispatcher *d = ctx;
    if (!kafka_producer_is_connected(d->env.producer)) {
        *reason = "Kafka broker unreachable";
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct app app;
    if (app_init(&app, argc, argv, "bus-dispatcher", "DISPATCHER", defs) != 0)
        return 2;
    if (app.exit_now)
        return 0;

    int rc = 1;
    char err[8192];
    struct http_server *srv = NULL;
    struct dispatcher d = {.cfg = app.cfg};
    pthread_mutex_init(&d.lock, NULL);
    const struct config *cfg = app.cfg;
    d.env.bootstrap = config_str(cfg, "bootstrap");
    d.env.kafka_props = config_kafka(cfg);
    d.env.max_pending_per_partition = (unsigned)config_int(cfg, "max_pending_per_partition");
    d.env.pool = http_pool_new((unsigned)config_int(cfg, "http_connections"));
    d.env.producer = kafka_producer_new(d.env.bootstrap, d.env.kafka_props, 0, err, sizeof err);
    if (d.env.producer == NULL) {
        log_error("%s", err);
        goto out;
    }
    if (reconcile(&d, err, sizeof err) != 0) {
        log_error("bus configuration invalid:\n%s", err);
        goto out;
    }
    struct http_server_options ho = {
        .listen = config_str(cfg, "listen"), .ready = is_ready, .ready_ctx = &d};
    srv = http_server_new(&ho);
    http_server_route(srv, "GET", "/v1/routes", handle_routes, &d, 0);
    http_server_route(srv, "POST", "/v1/reload", handle_reload, &d, 0);
    if (http_server_start(srv, err, sizeof err) != 0) {
        log_error("cannot listen on %s: %s", ho.listen, err);
        goto out;
    }
    log_info("dispatching %zu routes from %s; admin on %s", d.n_routes, d.env.bootstrap,
             ho.listen);

    int sig;
    while ((sig = app_wait_signal(&app)) == SIGHUP) {
        if (reconcile(&d, err, sizeof err) != 0)
            log_error("SIGHUP: bus configuration invalid, routes unchanged:\n%s", err);
    }
    log_info("signal %d: stopping %zu routes", sig, d.n_routes);
    rc = 0;
out:
    /* Routes first (they finish deliveries through the pool and producer), then the server. */
    pthread_mutex_lock(&d.lock);
    for (size_t i = 0; i < d.n_routes; i++)
        route_stop(d.routes[i], (long)config_int(cfg, "shutdown_timeout_ms"));
    free(d.routes);
    d.routes = NULL;
    d.n_routes = 0;
    pthread_mutex_unlock(&d.lock);
    http_server_free(srv, 1000);
    kafka_producer_free(d.env.producer, 2000);
    http_pool_free(d.env.pool);
    pthread_mutex_destroy(&d.lock);
    app_release(&app);
    return rc;
}
