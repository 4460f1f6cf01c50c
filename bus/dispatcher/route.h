/* route.h - one running route: its consumer group, its deliveries, its commits.
 *
 * Each route runs on its own thread with its own consumer (group "bus.route.<name>"), so a slow
 * route never slows another and reloading one leaves the others alone. Deliveries go through the
 * shared http_pool; streaming outputs and dead letters through the shared producer. Their
 * completions come back on other threads and are queued to the route thread, which owns all
 * delivery state: scheduling (concurrency, ordering), retries, the breaker and commits. An
 * exactly-once route also owns a transactional producer (lib/kafka/kafka_txn.h) for its outputs
 * and offsets (docs/bus.md "Exactly once"). */
#ifndef ROUTE_H
#define ROUTE_H

#include <jansson.h>
#include <stdbool.h>

#include "busconf.h"
#include "http/http_client.h"
#include "kafka/kafka.h"

/* What every route shares (borrowed; outlives the routes). */
struct route_env {
    const char *bootstrap;
    json_t *kafka_props;
    struct http_pool *pool;
    struct kafka_producer *producer;
    unsigned max_pending_per_partition;
    const char *signing_secret; /* key list of routes without their own "secret" (never NULL) */
    const char *instance_id;    /* this dispatcher's, in exactly-once routes' transactional.id */
};

struct route;

/* Starts the route (copies everything it needs from conf and the output topic, which may be
 * NULL). Returns NULL with err filled when the consumer cannot be created. */
struct route *route_start(const struct route_env *env, const struct busconf_route *conf,
                          const struct busconf_topic *output_topic, char *err, size_t err_len);
/* Stops fetching, lets deliveries in flight finish (then abandons them uncommitted), commits
 * what finished, leaves the group and frees, all within deadline_ms whatever the broker does
 * (two thirds of it, at least all but 1 s, for the deliveries); then waits for the callbacks of
 * abandoned deliveries (bounded by the HTTP and produce time-outs). NULL is a no-op. */
void route_stop(struct route *r, long deadline_ms);
/* The same in two steps, to stop several routes at once: route_stop_begin() tells the route to
 * stop by stop_by_ms (app_now_ms() time) and returns; route_stop_end() waits for it. With
 * may_abandon, callbacks still due at stop_by_ms are not waited for: route_stop_end() then
 * returns r (else NULL, r freed), to be freed with route_free_late() once the HTTP pool and the
 * producer are freed (every callback has run then). */
void route_stop_begin(struct route *r, long long stop_by_ms);
struct route *route_stop_end(struct route *r, bool may_abandon);
void route_free_late(struct route *r);

const char *route_name(const struct route *r);
/* True when conf (and its output topic's key) is what the route runs with. */
bool route_is_same(const struct route *r, const struct busconf_route *conf,
                   const struct busconf_topic *output_topic);
/* The admin view: {name, topic, endpoint, mode, state, in_flight, partitions: [...]} (new
 * reference). */
json_t *route_status(struct route *r);

#endif
