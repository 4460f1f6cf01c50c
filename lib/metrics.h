/* metrics.h - Prometheus metrics: counters, gauges, histograms, text exposition.
 *
 * One process-wide registry. metrics_counter() and friends get-or-create a series identified by
 * name plus its label set; call them once at start-up (or cache the pointer) and update through
 * the pointer on hot paths: updates are lock-free atomics, safe from any thread. Creation takes a
 * lock. Series live until exit.
 *
 * labels is the Prometheus label text without braces, e.g. "topic=\"login\",reason=\"schema\"",
 * or NULL. Names follow Prometheus conventions: bus_publisher_events_total, *_seconds. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

#include "buf.h"

struct metric;

struct metric *metrics_counter(const char *name, const char *help, const char *labels);
struct metric *metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds (the +Inf bucket is implied); NULL = default latency buckets
 * in seconds (0.0005 .. 10). */
struct metric *metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t n_bounds);

void metric_inc(struct metric *m);               /* counter or gauge += 1 */
void metric_add(struct metric *m, double v);     /* counter (v >= 0) or gauge */
void metric_set(struct metric *m, double v);     /* gauge */
void metric_observe(struct metric *m, double v); /* histogram */
double metric_value(const struct metric *m);     /* counter/gauge value; histogram count */

/* Appends the whole registry in text exposition format 0.0.4. */
int metrics_render(struct buf *out);

/* Callback run before each render, e.g. to refresh gauges computed on demand. */
void metrics_on_render(void (*fn)(void *ctx), void *ctx);

#endif
