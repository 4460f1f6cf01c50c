/* ingest.h - the publisher's request path: POST /v1/topics/{topic}/events and /batch.
 *
 * Checks token, topic, size, JSON and schema, stamps ids and trace context, produces to Kafka
 * and answers 202 only from the delivery report (the HTTP exchange stays suspended meanwhile).
 * Every rejection is counted (bus_publisher_rejected_total) and answered with a JSON error. */
#ifndef INGEST_H
#define INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "busconf.h"
#include "http/http_server.h"
#include "kafka/kafka.h"

struct ingest_options {
    unsigned max_inflight;     /* events produced but not yet acknowledged; beyond: 503 */
    unsigned batch_max_events; /* events per batch request; beyond: 413 */
    unsigned retry_after_s;    /* Retry-After on 503 */
};

struct ingest;

/* conf and producer are borrowed and must outlive the ingest. */
struct ingest *ingest_new(const struct busconf *conf, struct kafka_producer *producer,
                          const struct ingest_options *opts);
/* Registers the two routes on s (before http_server_start). batch_max_bytes caps batch bodies;
 * single events are capped by the largest max_event_bytes of any topic (then per topic). */
void ingest_routes(struct ingest *in, struct http_server *s, size_t batch_max_bytes);
/* From now on every new request is answered 503 shutting_down; in-flight ones complete. */
void ingest_close(struct ingest *in);
/* Events produced and not yet acknowledged. Thread-safe. */
unsigned ingest_inflight(const struct ingest *in);
/* Frees; call only once no request is in flight (after the producer is flushed and freed). */
void ingest_free(struct ingest *in);

#endif
