/* metrics.c - Prometheus registry: counters, gauges, histograms, text exposition 0.0.4
 * (see metrics.h). Series are created under one lock and updated lock-free. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };
static const char *const KIND_NAMES[] = {"counter", "gauge", "histogram"};

struct metric {
    enum kind kind;
    char *name;
    char *help;
    char *labels;                /* "" when none */
    _Atomic uint64_t value_bits; /* double, as bits, for counters and gauges */
    double *bounds;
    size_t n_bounds;
    _Atomic uint64_t *buckets; /* n_bounds + 1 (last = +Inf), not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_bits;
    struct metric *next;
};

static const double DEFAULT_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *registry_head, *registry_tail; /* creation order */

#define MAX_HOOKS 16
static struct {
    void (*fn)(void *);
    void *ctx;
} hooks[MAX_HOOKS];
static size_t n_hooks;

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static struct metric *get_or_create(enum kind kind, const char *name, const char *help,
                                    const char *labels, const double *bounds, size_t n_bounds)
{
    if (!labels) {
        labels = "";
    }
    pthread_mutex_lock(&registry_lock);
    struct metric *m;
    for (m = registry_head; m; m = m->next) {
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) {
            break;
        }
    }
    if (m && m->kind != kind) {
        /* Two kinds under one name would make the exposition invalid: a programming error. */
        log_error("metric %s{%s} requested as %s but registered as %s", name, labels,
                  KIND_NAMES[kind], KIND_NAMES[m->kind]);
        abort();
    }
    if (!m) {
        m = xcalloc(1, sizeof *m);
        m->kind = kind;
        m->name = xstrdup(name);
        m->help = xstrdup(help ? help : "");
        m->labels = xstrdup(labels);
        if (kind == KIND_HISTOGRAM) {
            if (!bounds) {
                bounds = DEFAULT_BOUNDS;
                n_bounds = sizeof DEFAULT_BOUNDS / sizeof DEFAULT_BOUNDS[0];
            }
            m->bounds = xmalloc(n_bounds * sizeof *m->bounds);
            memcpy(m->bounds, bounds, n_bounds * sizeof *m->bounds);
            m->n_bounds = n_bounds;
            m->buckets = xcalloc(n_bounds + 1, sizeof *m->buckets);
        }
        if (registry_tail) {
            registry_tail->next = m;
        } else {
            registry_head = m;
        }
        registry_tail = m;
    }
    pthread_mutex_unlock(&registry_lock);
    return m;
}

struct metric *metrics_counter(const char *name, const char *help, const char *labels)
{
    return get_or_create(KIND_COUNTER, name, help, labels, NULL, 0);
}

struct metric *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return get_or_create(KIND_GAUGE, name, help, labels, NULL, 0);
}

struct metric *metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *bounds, size_t n_bounds)
{
    return get_or_create(KIND_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

void metric_inc(struct metric *m)
{
    metric_add(m, 1.0);
}

void metric_add(struct metric *m, double v)
{
    if (m->kind == KIND_HISTOGRAM || (m->kind == KIND_COUNTER && !(v >= 0))) {
        return; /* a counter only goes up */
    }
    atomic_add_double(&m->value_bits, v);
}

void metric_set(struct metric *m, double v)
{
    if (m->kind != KIND_GAUGE) {
        return;
    }
    atomic_store_explicit(&m->value_bits, double_to_bits(v), memory_order_relaxed);
}

void metric_observe(struct metric *m, double v)
{
    if (m->kind != KIND_HISTOGRAM) {
        return;
    }
    size_t i = 0;
    while (i < m->n_bounds && v > m->bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&m->sum_bits, v);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

double metric_value(const struct metric *m)
{
    if (m->kind == KIND_HISTOGRAM) {
        return (double)atomic_load((_Atomic uint64_t *)&m->count);
    }
    return bits_to_double(atomic_load((_Atomic uint64_t *)&m->value_bits));
}

void metrics_on_render(void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&registry_lock);
    if (n_hooks < MAX_HOOKS) {
        hooks[n_hooks].fn = fn;
        hooks[n_hooks].ctx = ctx;
        n_hooks++;
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Shortest of %.15g / %.17g that reads back as v (like Go's strconv, which Prometheus uses). */
static void format_double(char out[32], double v)
{
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) != v) {
        snprintf(out, 32, "%.17g", v);
    }
}

static int append_value(struct buf *out, double v)
{
    char txt[32];
    if (isnan(v)) {
        return buf_appends(out, "NaN");
    }
    if (isinf(v)) {
        return buf_appends(out, v > 0 ? "+Inf" : "-Inf");
    }
    format_double(txt, v);
    return buf_appends(out, txt);
}

static int series(struct buf *out, const char *name, const char *suffix, const char *labels,
                  const char *extra_label, double v)
{
    int rc = 0;
    rc |= buf_appends(out, name);
    rc |= buf_appends(out, suffix);
    if (*labels || extra_label) {
        rc |= buf_appendf(out, "{%s%s%s}", labels, (*labels && extra_label) ? "," : "",
                          extra_label ? extra_label : "");
    }
    rc |= buf_appends(out, " ");
    rc |= append_value(out, v);
    rc |= buf_appends(out, "\n");
    return rc;
}

/* HELP text escapes backslash and newline (exposition format 0.0.4). */
static int append_help(struct buf *out, const char *help)
{
    int rc = 0;
    for (const char *p = help; *p && !rc; p++) {
        if (*p == '\\') {
            rc = buf_appends(out, "\\\\");
        } else if (*p == '\n') {
            rc = buf_appends(out, "\\n");
        } else {
            rc = buf_append(out, p, 1);
        }
    }
    return rc;
}

static int render_series(struct buf *out, struct metric *m)
{
    if (m->kind != KIND_HISTOGRAM) {
        return series(out, m->name, "", m->labels, NULL, metric_value(m));
    }
    int rc = 0;
    uint64_t cumulative = 0;
    char le[64], bound[32];
    for (size_t i = 0; i <= m->n_bounds; i++) {
        cumulative += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        if (i < m->n_bounds) {
            format_double(bound, m->bounds[i]);
            snprintf(le, sizeof le, "le=\"%s\"", bound);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        rc |= series(out, m->name, "_bucket", m->labels, le, (double)cumulative);
    }
    rc |= series(out, m->name, "_sum", m->labels, NULL,
                 bits_to_double(atomic_load_explicit(&m->sum_bits, memory_order_relaxed)));
    /* _count from the same bucket loads, so it always equals the +Inf bucket. */
    rc |= series(out, m->name, "_count", m->labels, NULL, (double)cumulative);
    return rc;
}

int metrics_render(struct buf *out)
{
    size_t nh;
    int rc = 0;
    pthread_mutex_lock(&registry_lock);
    nh = n_hooks;
    pthread_mutex_unlock(&registry_lock);
    for (size_t i = 0; i < nh; i++) {
        hooks[i].fn(hooks[i].ctx);
    }

    pthread_mutex_lock(&registry_lock);
    for (struct metric *m = registry_head; m && !rc; m = m->next) {
        bool first = true; /* each name is rendered as one group, at its first series */
        for (struct metric *p = registry_head; p != m; p = p->next) {
            if (strcmp(p->name, m->name) == 0) {
                first = false;
                break;
            }
        }
        if (!first) {
            continue;
        }
        rc |= buf_appendf(out, "# HELP %s ", m->name);
        rc |= append_help(out, m->help);
        rc |= buf_appendf(out, "\n# TYPE %s %s\n", m->name, KIND_NAMES[m->kind]);
        for (struct metric *p = m; p; p = p->next) {
            if (strcmp(p->name, m->name) == 0) {
                rc |= render_series(out, p);
            }
        }
    }
    pthread_mutex_unlock(&registry_lock);
    /* A cut exposition must not be served: the caller answers 500 instead. */
    return rc ? BUF_ETOOBIG : 0;
}
