/* trace.h - busctl trace: an event's whole journey through the product, from the logs and the
 * topics (see trace.c, docs/operations.md). */
#ifndef BUSCTL_TRACE_H
#define BUSCTL_TRACE_H

#include <jansson.h>

/* Runs `busctl trace EVENT_ID [--logs DIR] [--json] [--scan N]`; argv[0] is "trace". Returns the
 * exit code: 0 journey printed, 1 event not found (or broker and logs unreadable), 2 usage. */
int busctl_trace_main(int argc, char **argv);

/* The "kafka.*" settings every Kafka client of busctl is built with (borrowed; an empty object
 * when none): the file named by BUSCTL_CONFIG and BUSCTL_KAFKA_* variables, in the forms the
 * services take (docs/configuration.md), so busctl reaches a cluster behind SASL/TLS. A bad
 * setting is reported and busctl exits 2. Defined in main.c. */
json_t *busctl_kafka(void);

#endif
