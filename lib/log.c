/* log.c - JSON log lines on stderr, one schema for every process (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

enum log_level log_min_level = LOG_LEVEL_INFO;
static const char *log_service = "unknown";
static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, enum log_level min_level)
{
    log_service = service;
    log_min_level = min_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_write(enum log_level level, const char *trace_id, const char *event_id, json_t *extra,
               const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[96];
    char msg[2048];
    struct buf b;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap); /* long messages are cut, never overflow */
    va_end(ap);

    buf_init(&b, 64 * 1024);
    buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":", when,
                LEVEL_NAMES[level <= LOG_LEVEL_ERROR ? level : LOG_LEVEL_ERROR]);
    buf_append_json_string(&b, log_service);
    buf_appends(&b, ",\"msg\":");
    buf_append_json_string(&b, msg);
    if (trace_id && *trace_id) {
        buf_appends(&b, ",\"trace_id\":");
        buf_append_json_string(&b, trace_id);
    }
    if (event_id && *event_id) {
        buf_appends(&b, ",\"event_id\":");
        buf_append_json_string(&b, event_id);
    }
    if (extra && json_is_object(extra)) {
        const char *key;
        json_t *value;
        json_object_foreach(extra, key, value)
        {
            char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
            if (!v)
                continue;
            buf_appends(&b, ",");
            buf_append_json_string(&b, key);
            buf_appends(&b, ":");
            buf_appends(&b, v);
            free(v);
        }
    }
    buf_appends(&b, "}\n");
    if (b.data) {
        ssize_t w = write(2, b.data, b.len); /* one write: lines of threads never interleave */
        (void)w;
    }
    buf_release(&b);
}
