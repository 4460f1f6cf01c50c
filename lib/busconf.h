/* busconf.h - the bus configuration: topics and routes from config/bus/<name>.json.
 *
 * Each file is {"topics": [...], "routes": [...]} and is validated against
 * config/schema/bus.schema.json (JSON Schema 2020-12, jschema.h), then for meaning: unique
 * topic and route names, every route's topic, output and dead_letter declared, endpoint URLs
 * http(s), no cycle through streaming routes. Errors read "file: /json/pointer: message".
 * Used by the publisher (topics, producers), the dispatcher (routes) and busctl (everything).
 *
 * Defaults (documented in the schema, applied here): partitions 3, retention_hours 168,
 * max_event_bytes 65536, mode one-way, concurrency 4, batch 1, ordering key, timeout_ms 5000,
 * retry {initial_ms 200, max_ms 30000, max_attempts 0 = until retention}.
 *
 * Modes (BUS_ENV, config_is_production; docs/security.md): a producer flagged "development" is
 * loaded only in development; in production it is skipped (counted in n_development_skipped),
 * and a load fails when a producer's token hash is a development token's or empty, or a route's
 * signing secret is shorter than 32 bytes or the development value. token_sha256 and secret
 * expand ${NAME} and ${NAME:-TEXT} from the environment.
 *
 * A loaded struct busconf is immutable; a reload builds a new one. */
#ifndef BUSCONF_H
#define BUSCONF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "jschema/jschema.h"

struct busconf_producer {
    char *name;
    char *token_sha256; /* lowercase hex SHA-256 of the bearer token; never the token itself;
                         * "" = nobody (its ${VAR:-} was unset) */
};

struct busconf_topic {
    char *name;
    int partitions;
    char *key;              /* JSON pointer into the event ("/account_id"), or NULL */
    char *schema_path;      /* resolved path of the event's JSON Schema, or NULL */
    struct jschema *schema; /* compiled, or NULL */
    int retention_hours;
    int replication_factor;  /* 0 = the broker's default */
    int min_insync_replicas; /* 0 = the broker's default */
    size_t max_event_bytes;
    struct busconf_producer *producers;
    size_t n_producers;
};

enum busconf_mode { BUSCONF_ONE_WAY, BUSCONF_STREAMING };
enum busconf_ordering { BUSCONF_ORDER_KEY, BUSCONF_ORDER_PARTITION, BUSCONF_ORDER_NONE };

struct busconf_route {
    char *name;
    char *topic;
    char *endpoint;
    enum busconf_mode mode;
    char *output;         /* streaming only, else NULL */
    bool is_exactly_once; /* streaming only: outputs and input offsets in one transaction */
    int concurrency;
    int batch; /* most events per request (1 = one per request, CloudEvents binary mode) */
    enum busconf_ordering ordering;
    int timeout_ms;
    int retry_initial_ms;
    int retry_max_ms;
    int retry_max_attempts; /* 0 = until retention */
    char *dead_letter;      /* topic name, or NULL (then: <topic>.dlq is not implied) */
    char *service;          /* the service behind the endpoint (for people), or NULL */
    char *secret;           /* signing secret after ${ENV} expansion, or NULL */
    json_t *raw;            /* the route's JSON as written (for plan/diff) */
};

struct busconf {
    size_t n_development_skipped; /* producers flagged "development" not loaded (production) */
    struct busconf_topic *topics;
    size_t n_topics;
    struct busconf_route *routes;
    size_t n_routes;
};

/* Loads every *.json of dir (sorted by name), validating against schema_path. On failure
 * returns -1 and writes every problem found, one "file: /pointer: message" per line, into err. */
int busconf_load(const char *dir, const char *schema_path, struct busconf **out, char *err,
                 size_t err_len);
void busconf_free(struct busconf *c);

const struct busconf_topic *busconf_topic_find(const struct busconf *c, const char *name);
const struct busconf_route *busconf_route_find(const struct busconf *c, const char *name);

/* True when token (as presented) is allowed to produce to topic; constant-time comparison of
 * the token's SHA-256 against each producer's hash. */
bool busconf_topic_allows(const struct busconf_topic *t, const char *token);
/* The producer whose token hash matches token (as presented), or NULL; constant-time like
 * busconf_topic_allows. The publisher writes its name as ce-source. */
const struct busconf_producer *busconf_topic_producer(const struct busconf_topic *t,
                                                      const char *token);

#endif
