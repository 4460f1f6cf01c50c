/* trace.c - busctl trace EVENT_ID: one event's journey through the product.
 *
 * Every hop of an event carries its W3C trace id: the publisher puts a traceparent on the record,
 * the dispatcher sends a child of it with each delivery and puts it on every event a streaming
 * route produces, and every process logs the trace id with each delivery it makes or handles
 * (docs/logging.md). So the journey is: the event's trace id (from the logs, or from the record
 * whose ce-id is EVENT_ID), then every log line and every record of that trace, in time order.
 *
 * Sources, both bounded: the *.log files of --logs DIR (default var/log, where `make run` writes;
 * lines are matched as text first and parsed only when they mention the ids), and the last
 * --scan N records (default 2000) of every partition of every topic of BUS_BOOTSTRAP. Either may
 * be missing (a broker that is down, logs shipped elsewhere): what is found is printed, with a
 * note on stderr. Per-delivery lines are debug lines: processes log them with log.level debug
 * (`make run` does). */
#include "trace.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "busctl.h"
#include "ids.h"
#include "kafka/kafka_admin.h"
#include "kafka/kafka_consumer.h"

#define TRACE_DEFAULT_SCAN 2000
#define TRACE_LINE_MAX (128 * 1024) /* longer lines are not ours (the logger caps at 64 KiB) */
#define TRACE_TIMEOUT_MS 10000

struct trace_run {
    const char *event_id;
    char trace_id[33]; /* "" until known */
    json_t *hops;      /* array of {"ts", "source": "log"|"topic", ...} */
    json_t *records;   /* topic records with a trace id, before the trace id is known */
    bool is_json;
};

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static int trace_usage(void)
{
    fprintf(stderr, "usage: busctl trace EVENT_ID [--logs DIR] [--json] [--scan N]\n");
    return 2;
}

/* ---- logs ----------------------------------------------------------------------------------- */

typedef void (*line_fn)(struct trace_run *t, json_t *line, const char *file);

/* Calls fn for every JSON line of DIR/<*.log> that contains needle (or needle2) as text. */
static int each_log_line(struct trace_run *t, const char *dir, const char *needle,
                         const char *needle2, line_fn fn)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    struct dirent *de;
    char *line = NULL;
    size_t cap = 0;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".log") != 0) {
            continue;
        }
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            continue;
        }
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
            if (len > TRACE_LINE_MAX || line[0] != '{') {
                continue;
            }
            if (strstr(line, needle) == NULL &&
                (needle2 == NULL || strstr(line, needle2) == NULL)) {
                continue;
            }
            json_t *j = json_loadb(line, (size_t)len, 0, NULL);
            if (json_is_object(j)) {
                fn(t, j, de->d_name);
            }
            json_decref(j);
        }
        fclose(f);
    }
    free(line);
    closedir(d);
    return 0;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void find_trace_in_line(struct trace_run *t, json_t *line, const char *file)
{
    (void)file;
    const char *eid = jstr(line, "event_id"), *tid = jstr(line, "trace_id");
    if (t->trace_id[0] == '\0' && eid && tid && strcmp(eid, t->event_id) == 0 &&
        strlen(tid) == 32) {
        memcpy(t->trace_id, tid, 33);
    }
}

static void collect_line(struct trace_run *t, json_t *line, const char *file)
{
    const char *eid = jstr(line, "event_id"), *tid = jstr(line, "trace_id");
    bool is_ours = (tid && strcmp(tid, t->trace_id) == 0) || (eid && strcmp(eid, t->event_id) == 0);
    if (!is_ours || jstr(line, "ts") == NULL) {
        return;
    }
    json_array_append_new(t->hops, json_pack("{s:s, s:s, s:s, s:O}", "ts", jstr(line, "ts"),
                                             "source", "log", "file", file, "line", line));
}

/* ---- topics --------------------------------------------------------------------------------- */

static void format_ms(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms % 1000));
}

static void on_record(void *opaque, struct kafka_record *rec)
{
    struct trace_run *t = opaque;
    char tid[33];
    const char *ce_id = kafka_record_header(rec, "ce-id");
    if (trace_id_of(kafka_record_header(rec, "traceparent"), tid) == NULL) {
        goto out;
    }
    if (t->trace_id[0] == '\0' && ce_id && strcmp(ce_id, t->event_id) == 0) {
        memcpy(t->trace_id, tid, sizeof tid);
    }
    char when[32];
    const char *ce_time = kafka_record_header(rec, "ce-time");
    if (ce_time == NULL && rec->timestamp_ms > 0) {
        format_ms(rec->timestamp_ms, when);
    }
    json_t *r = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s?, s:s?, s:s?, s:s?, s:s, s:s?}", "ts",
                          ce_time                 ? ce_time
                          : rec->timestamp_ms > 0 ? when
                                                  : "",
                          "source", "topic", "topic", rec->topic, "partition", (int)rec->partition,
                          "offset", (json_int_t)rec->offset, "ce_id", ce_id, "ce_source",
                          kafka_record_header(rec, "ce-source"), "causation_id",
                          kafka_record_header(rec, "causation-id"), "key", rec->key, "trace_id",
                          tid, "dead_letter_route", kafka_record_header(rec, "x-bus-route"));
    if (r != NULL) {
        json_array_append_new(t->records, r);
    }
out:
    kafka_record_free(rec);
}

/* Reads the tail of every topic; returns -1 when the broker cannot be asked at all. */
static int scan_topics(struct trace_run *t, long scan)
{
    char err[512];
    const char *bootstrap = env_or("BUS_BOOTSTRAP", "127.0.0.1:9092");
    struct kafka_admin *a = kafka_admin_new(bootstrap, busctl_kafka(), err, sizeof err);
    if (a == NULL) {
        fprintf(stderr, "note: topics not read: %s\n", err);
        return -1;
    }
    json_t *topics = kafka_admin_topics(a, 5000, err, sizeof err);
    kafka_admin_free(a);
    if (topics == NULL) {
        fprintf(stderr, "note: topics not read (%s): %s\n", bootstrap, err);
        return -1;
    }
    const char *name;
    json_t *parts;
    json_object_foreach(topics, name, parts)
    {
        (void)parts;
        if (kafka_read_tail(bootstrap, busctl_kafka(), name, scan, TRACE_TIMEOUT_MS, on_record, t,
                            NULL, err, sizeof err) != 0) {
            fprintf(stderr, "note: topic %s not read: %s\n", name, err);
        }
    }
    json_decref(topics);
    return 0;
}

/* ---- output --------------------------------------------------------------------------------- */

static int hop_cmp(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(jstr(x, "ts"), jstr(y, "ts"));
    if (c != 0) {
        return c;
    }
    /* Same millisecond: keep the order they were found in (logs before records). */
    json_int_t i = json_integer_value(json_object_get(x, "_seq"));
    json_int_t j = json_integer_value(json_object_get(y, "_seq"));
    return i < j ? -1 : i > j;
}

static void print_hop(json_t *h)
{
    const char *ts = jstr(h, "ts");
    if (strcmp(jstr(h, "source"), "topic") == 0) {
        const char *cause = jstr(h, "causation_id");
        const char *ce_id = jstr(h, "ce_id");
        const char *what =
            ce_id && strcmp(ce_id, json_string_value(json_object_get(h, "_event"))) == 0
                ? "published"
            : jstr(h, "dead_letter_route") ? "dead letter"
            : cause                        ? "produced"
                                           : "event";
        printf("%-24s  %-15s %s %s[%lld]@%lld  ce-id=%s source=%s%s%s\n", ts, "topic", what,
               jstr(h, "topic"), (long long)json_integer_value(json_object_get(h, "partition")),
               (long long)json_integer_value(json_object_get(h, "offset")), ce_id ? ce_id : "-",
               jstr(h, "ce_source") ? jstr(h, "ce_source") : "-", cause ? " causation-id=" : "",
               cause ? cause : "");
        return;
    }
    json_t *line = json_object_get(h, "line");
    const char *service = jstr(line, "service");
    printf("%-24s  %-15s %s", ts, service ? service : "?",
           jstr(line, "msg") ? jstr(line, "msg") : "");
    json_t *sec = json_object_get(line, "seconds");
    if (json_is_number(sec)) {
        printf("  (%.1f ms)", json_number_value(sec) * 1000.0);
    }
    const char *eid = jstr(line, "event_id");
    if (eid != NULL) {
        printf("  [%s]", eid);
    }
    printf("\n");
}

static void print_journey(struct trace_run *t)
{
    size_t n = json_array_size(t->hops);
    json_t **v = xcalloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = json_array_get(t->hops, i);
        json_object_set_new(v[i], "_seq", json_integer((json_int_t)i));
        json_object_set_new(v[i], "_event", json_string(t->event_id));
    }
    qsort(v, n, sizeof *v, hop_cmp);
    if (t->is_json) {
        json_t *out =
            json_pack("{s:s, s:s, s:[]}", "event_id", t->event_id, "trace_id", t->trace_id, "hops");
        json_t *arr = json_object_get(out, "hops");
        for (size_t i = 0; i < n; i++) {
            json_object_del(v[i], "_seq");
            json_object_del(v[i], "_event");
            json_array_append(arr, v[i]);
        }
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(out);
    } else {
        printf("event %s  trace %s  (%zu hops)\n", t->event_id, t->trace_id, n);
        for (size_t i = 0; i < n; i++) {
            print_hop(v[i]);
        }
    }
    free(v);
}

int busctl_trace_main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        return trace_usage();
    }
    struct trace_run t = {.event_id = argv[1], .hops = json_array(), .records = json_array()};
    const char *logs = "var/log";
    long scan = TRACE_DEFAULT_SCAN;
    bool has_topics = true;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--logs") == 0 && i + 1 < argc) {
            logs = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            t.is_json = true;
        } else if (strcmp(argv[i], "--scan") == 0 && i + 1 < argc) {
            scan = strtol(argv[++i], NULL, 10);
            has_topics = scan > 0;
        } else {
            json_decref(t.hops);
            json_decref(t.records);
            return trace_usage();
        }
    }
    int rc = 1;
    bool has_logs = each_log_line(&t, logs, t.event_id, NULL, find_trace_in_line) == 0;
    if (!has_logs) {
        fprintf(stderr, "note: no logs read: %s is not a readable directory\n", logs);
    }
    if (has_topics) {
        scan_topics(&t, scan);
    }
    if (t.trace_id[0] == '\0') {
        fprintf(stderr,
                "event %s: not found in %s nor in the last %ld records of each topic "
                "partition\n",
                t.event_id, logs, has_topics ? scan : 0);
        goto out;
    }
    if (has_logs) {
        each_log_line(&t, logs, t.trace_id, t.event_id, collect_line);
    }
    size_t i;
    json_t *r;
    json_array_foreach(t.records, i, r)
    {
        if (strcmp(jstr(r, "trace_id"), t.trace_id) == 0) {
            json_array_append(t.hops, r);
        }
    }
    print_journey(&t);
    rc = 0;
out:
    json_decref(t.hops);
    json_decref(t.records);
    return rc;
}
