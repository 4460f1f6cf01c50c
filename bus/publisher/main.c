/* bus-publisher - the bus's HTTP front: producers POST JSON events, the publisher writes them
 * to Kafka and answers 202 once the broker acknowledged them (see docs/publisher.md).
 *
 * main wires the modules: configuration (the table below), the bus configuration (topics,
 * producer tokens, event schemas), the Kafka producer, the ingest handlers and the HTTP server,
 * then waits for SIGTERM: stop accepting, wait for in-flight acknowledgements, exit 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "app.h"
#include "busconf.h"
#include "http/http_server.h"
#include "ingest.h"
#include "kafka/kafka.h"
#include "log.h"

static const struct config_def defs[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8080", 0, 0, 0, NULL,
     "Address and port the HTTP API listens on."},
    {"bootstrap", CONFIG_STRING, "127.0.0.1:9092", 0, 0, 0, "BUS_BOOTSTRAP",
     "Kafka bootstrap servers (host:port,...)."},
    {"bus_config_dir", CONFIG_STRING, "config/bus", 0, 0, 0, NULL,
     "Directory of the bus configuration files (topics, producers, routes)."},
    {"bus_schema", CONFIG_STRING, "config/schema/bus.schema.json", 0, 0, 0, NULL,
     "JSON Schema the bus configuration files are validated against."},
    {"threads", CONFIG_INT, "4", 1, 64, 0, NULL, "HTTP polling threads."},
    {"max_connections", CONFIG_INT, "16384", 1, 1000000, 0, NULL,
     "HTTP connections open at once; past it a new connection is answered 503 and closed "
     "(lowered to fit RLIMIT_NOFILE, which is raised to its hard limit at start)."},
    {"max_connections_per_client", CONFIG_INT, "1024", 1, 1000000, 0, NULL,
     "HTTP connections open at once from one client address; past it 503 and closed."},
    {"client_timeout_s", CONFIG_INT, "15", 1, 3600, 0, NULL,
     "Idle keep-alive time-out, and a connection sending nothing for this long is closed."},
    {"request_head_timeout_s", CONFIG_INT, "10", 1, 3600, 0, NULL,
     "A request's line and headers must be complete within this (from the connection's "
     "start for its first request); else the connection is closed."},
    {"request_body_timeout_s", CONFIG_INT, "30", 1, 3600, 0, NULL,
     "A request's body must be complete within this after its headers; else the connection "
     "is closed."},
    {"max_inflight", CONFIG_INT, "20000", 1, 10000000, 0, NULL,
     "Events produced but not yet acknowledged by the broker; beyond it requests get 503."},
    {"queue_max_messages", CONFIG_INT, "100000", 1, 10000000, 0, NULL,
     "Bound of the Kafka client's local queue (queue.buffering.max.messages)."},
    {"produce_timeout_ms", CONFIG_INT, "10000", 100, 300000, 0, NULL,
     "How long an event may wait for the broker's acknowledgement (message.timeout.ms); then "
     "the request gets 503."},
    {"batch_max_events", CONFIG_INT, "1000", 1, 100000, 0, NULL, "Events per batch request."},
    {"batch_max_bytes", CONFIG_INT, "8388608", 1024, 268435456, 0, NULL,
     "Largest batch request body in bytes."},
    {"retry_after_s", CONFIG_INT, "1", 1, 3600, 0, NULL, "Retry-After sent with 503 answers."},
    {"shutdown_grace_ms", CONFIG_INT, "10000", 0, 600000, 0, NULL,
     "On SIGTERM, how long to wait for in-flight acknowledgements before exiting."},
    CONFIG_DEF_END,
};

struct publisher {
    struct kafka_producer *producer;
    struct busconf *bus;
    struct ingest *in;
    struct http_server *srv;
    json_t *props; /* the producer's librdkafka properties */
};

/* Ready: the producer is healthy (not failed fatally, deliveries not failing; lib/kafka/kafka.c
 * replaces a fatally failed producer by itself) and a broker answers. */
static bool is_ready(void *ctx, const char **reason)
{
    struct publisher *p = ctx;
    if (kafka_producer_health(p->producer, reason) != 0) {
        return false;
    }
    if (!kafka_producer_is_connected(p->producer)) {
        *reason = "Kafka broker unreachable";
        return false;
    }
    return true;
}

/* The bus configuration, the producer, the ingest, the server started. */
static int publisher_start(struct app *app, void *ctx)
{
    struct publisher *pub = ctx;
    char err[8192];
    const struct config *cfg = app->cfg;

    if (busconf_load(config_str(cfg, "bus_config_dir"), config_str(cfg, "bus_schema"), &pub->bus,
                     err, sizeof err) != 0) {
        log_error("bus configuration invalid:\n%s", err);
        return 2; /* a configuration refused, as app_init's (production: docs/security.md) */
    }
    if (pub->bus->n_development_skipped > 0) {
        log_warn("production: %zu development producer(s) of the bus configuration not loaded",
                 pub->bus->n_development_skipped);
    }
    pub->props = json_deep_copy(config_kafka(cfg));
    json_t *props = pub->props;
    /* The answer must come within produce_timeout_ms: librdkafka notices a record's time-out
     * up to its reconnect back-off late (500 ms, lib/kafka/kafka.c), so the record's own time-out
     * is that much (at most a fifth) shorter. */
    if (json_object_get(props, "message.timeout.ms") == NULL &&
        json_object_get(props, "delivery.timeout.ms") == NULL) {
        long long t = config_int(cfg, "produce_timeout_ms");
        json_object_set_new(props, "message.timeout.ms",
                            json_integer(t - (t / 5 < 500 ? t / 5 : 500)));
    }
    /* Every request waits for its acknowledgement, so the linger is latency the client pays.
     * 0.5 ms (librdkafka takes fractions): the same connections carry more single events than
     * at 1 ms (bench/publisher.sh, 2026-12-05, alternating: 0.63-0.65 of the bare server
     * against 0.59-0.63; by hand 53-58k requests/s against 50-54k, 2 ms 39-42k, 0.2 ms
     * 50-54k) and concurrent requests still share batches. Not 0:
     * the idempotent producer then re-polls without sleeping while a request is in flight,
     * and the rate falls to a quarter (again 2026-12-06: 15-17k against 52-61k requests/s).
     * librdkafka's broker thread sleeps in whole milliseconds, so an idle producer waits
     * ~1 ms at any linger under 1 (docs/publisher.md); under load, answers wake it sooner. */
    if (json_object_get(props, "linger.ms") == NULL &&
        json_object_get(props, "queue.buffering.max.ms") == NULL) {
        json_object_set_new(props, "linger.ms", json_real(0.5));
    }
    pub->producer =
        kafka_producer_new(config_str(cfg, "bootstrap"), props,
                           (unsigned)config_int(cfg, "queue_max_messages"), err, sizeof err);
    if (pub->producer == NULL) {
        log_error("%s", err);
        return 1;
    }
    /* The acknowledgements of one delivery-thread wake-up are answered in one sweep. */
    kafka_producer_set_sweep(pub->producer, http_defer_begin, http_defer_end);
    struct ingest_options io = {
        .max_inflight = (unsigned)config_int(cfg, "max_inflight"),
        .batch_max_events = (unsigned)config_int(cfg, "batch_max_events"),
        .retry_after_s = (unsigned)config_int(cfg, "retry_after_s"),
    };
    pub->in = ingest_new(pub->bus, pub->producer, &io);
    struct http_server_options ho = {
        .listen = config_str(cfg, "listen"),
        .threads = (unsigned)config_int(cfg, "threads"),
        .max_connections = (unsigned)config_int(cfg, "max_connections"),
        .max_connections_per_client = (unsigned)config_int(cfg, "max_connections_per_client"),
        .timeout_s = (unsigned)config_int(cfg, "client_timeout_s"),
        .head_timeout_s = (unsigned)config_int(cfg, "request_head_timeout_s"),
        .body_timeout_s = (unsigned)config_int(cfg, "request_body_timeout_s"),
        .ready = is_ready,
        .ready_ctx = pub,
    };
    struct http_server *srv = http_server_new(&ho);
    pub->srv = srv;
    ingest_routes(pub->in, srv, (size_t)config_int(cfg, "batch_max_bytes"));
    if (http_server_start(srv, err, sizeof err) != 0) {
        log_error("cannot listen on %s: %s", ho.listen, err);
        return 1;
    }
    log_info("publishing %zu topics to %s; listening on %s", pub->bus->n_topics,
             config_str(cfg, "bootstrap"), ho.listen);
    return 0;
}

/* Until stopped (SIGHUP only logged), then the drain (at most shutdown_grace_ms). */
static void publisher_run(struct app *app, void *ctx)
{
    struct publisher *pub = ctx;
    const struct config *cfg = app->cfg;
    struct ingest *in = pub->in;
    int sig;
    while ((sig = app_wait_signal(app)) == SIGHUP) {
        log_info("SIGHUP ignored: restart to reload the bus configuration");
    }

    /* Shutdown: refuse new requests, let the in-flight ones reach their acknowledgement (the
     * delivery reports answer them), then stop the server. */
    log_info("signal %d: draining %u events in flight", sig, ingest_inflight(in));
    ingest_close(in);
    int grace = (int)config_int(cfg, "shutdown_grace_ms");
    int left = kafka_producer_flush(pub->producer, grace);
    long long deadline = app_now_ms() + grace;
    while (ingest_inflight(in) > 0 && app_now_ms() < deadline) {
        app_wait_signal_for(app, 10);
    }
    if (left > 0 || ingest_inflight(in) > 0) {
        log_warn("%d events still unacknowledged at shutdown", left);
    }
}

static void publisher_release(struct app *app, void *ctx)
{
    (void)app;
    struct publisher *pub = ctx;
    /* The producer goes first: freeing it fails what is left, and those delivery reports
     * still answer their exchanges through the live server. */
    kafka_producer_free(pub->producer, 100);
    http_server_free(pub->srv, 1000);
    ingest_free(pub->in);
    busconf_free(pub->bus);
    json_decref(pub->props);
}

int main(int argc, char **argv)
{
    struct publisher pub = {0};
    const struct app_service svc = {
        .name = "bus-publisher",
        .env_prefix = "PUBLISHER",
        .defs = defs,
        .ctx = &pub,
        .start = publisher_start,
        .run = publisher_run,
        .release = publisher_release,
    };
    return app_serve(argc, argv, &svc);
}
