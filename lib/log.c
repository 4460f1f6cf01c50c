/* log.c - JSON log lines on stderr, one schema for every process (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

/* The message is cut at LOG_MSG_MAX bytes; a whole line never exceeds LOG_LINE_MAX. */
#define LOG_MSG_MAX 4096
#define LOG_LINE_MAX (64 * 1024)

enum log_level log_min_level = LOG_LEVEL_INFO;
static const char *log_service = "unknown";
static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, enum log_level min_level)
{
    log_service = service ? service : "unknown";
    log_min_level = min_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    if (!s) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

static bool is_reserved(const char *key)
{
    static const char *const RESERVED[] = {"ts", "level", "service", "msg", "trace_id", "event_id"};
    for (size_t i = 0; i < sizeof RESERVED / sizeof RESERVED[0]; i++) {
        if (strcmp(key, RESERVED[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void write_all(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(2, data, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return; /* stderr gone: nowhere left to complain */
        }
        data += w;
        len -= (size_t)w;
    }
}

void log_write(enum log_level level, const char *trace_id, const char *event_id, json_t *extra,
               const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[96];
    char msg[LOG_MSG_MAX];
    struct buf b;
    va_list ap;
    int rc = 0;

    if (level > LOG_LEVEL_ERROR) {
        level = LOG_LEVEL_ERROR;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap); /* long messages are cut, never overflow */
    va_end(ap);

    buf_init(&b, LOG_LINE_MAX);
    rc |= buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":", when, LEVEL_NAMES[level]);
    rc |= buf_append_json_string(&b, log_service);
    rc |= buf_appends(&b, ",\"msg\":");
    rc |= buf_append_json_string(&b, msg);
    if (trace_id && *trace_id) {
        rc |= buf_appends(&b, ",\"trace_id\":");
        rc |= buf_append_json_string(&b, trace_id);
    }
    if (event_id && *event_id) {
        rc |= buf_appends(&b, ",\"event_id\":");
        rc |= buf_append_json_string(&b, event_id);
    }
    if (!rc && extra && json_is_object(extra)) {
        const char *key;
        json_t *value;
        size_t mark = b.len;
        json_object_foreach(extra, key, value)
        {
            if (is_reserved(key)) {
                continue; /* the schema's fields are never overwritten */
            }
            char *v = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
            if (!v) {
                continue;
            }
            rc |= buf_appends(&b, ",");
            rc |= buf_append_json_string(&b, key);
            rc |= buf_appends(&b, ":");
            rc |= buf_appends(&b, v);
            free(v);
        }
        if (rc) {
            /* Too big for one line: drop the extra fields, keep the message. */
            b.len = mark;
            b.data[b.len] = '\0';
            rc = buf_appends(&b, ",\"truncated\":true");
        }
    }
    rc |= buf_appends(&b, "}\n");
    if (!rc) {
        write_all(b.data, b.len); /* one write: lines of threads never interleave */
    }
    buf_release(&b);
}
