/* busctl.h - what busctl's commands share (main.c defines them; trace.c and sync.c use them). */
#ifndef BUSCTL_H
#define BUSCTL_H

#include <jansson.h>
#include <stdbool.h>

/* The "kafka.*" settings every Kafka client of busctl is built with (borrowed; an empty object
 * when none): the file named by BUSCTL_CONFIG and BUSCTL_KAFKA_* variables, in the forms the
 * services take (docs/configuration.md), so busctl reaches a cluster behind SASL/TLS. A bad
 * setting is reported and busctl exits 2. */
json_t *busctl_kafka(void);

/* `busctl validate DIR`: prints the verdict (errors on stderr); the exit code (0 valid, 1). */
int busctl_validate(const char *dir);

/* `busctl plan DIR` (is_apply false) or `busctl apply DIR`: prints the plan, and for apply
 * creates topics and partitions, reloads the dispatchers and checks they run DIR's routes.
 * Returns the exit code (0 done, 1 failed). */
int busctl_plan_apply(const char *dir, bool is_apply);

#endif
