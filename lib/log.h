/* log.h - the product's one logger: JSON lines on stderr, one schema for every process.
 *
 *   {"ts":"2026-11-25T04:18:31.123Z","level":"info","service":"bus-publisher",
 *    "msg":"...","trace_id":"<32 hex>","event_id":"<id>", ...extra fields}
 *
 * trace_id and event_id are present only when known. The level is checked before the arguments
 * are evaluated (the macros), so disabled debug lines cost one comparison. Thread-safe: each line
 * is written with a single write(2). Never log secrets: tokens, passwords, codes. */
#ifndef LOG_H
#define LOG_H

#include <jansson.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

extern enum log_level log_min_level;

/* Sets the service name written on every line. Call once at start, before threads. */
void log_init(const char *service, enum log_level min_level);
/* Parses "debug" | "info" | "warn" | "error"; returns -1 when unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* Writes one line. trace_id, event_id and extra may be NULL; extra (borrowed) is a JSON object
 * whose fields are added to the line. */
void log_write(enum log_level level, const char *trace_id, const char *event_id, json_t *extra,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define log_at(level, trace_id, event_id, extra, ...)                                              \
    do {                                                                                           \
        if ((level) >= log_min_level)                                                              \
            log_write((level), (trace_id), (event_id), (extra), __VA_ARGS__);                      \
    } while (0)

#define log_debug(...) log_at(LOG_LEVEL_DEBUG, NULL, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_at(LOG_LEVEL_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LEVEL_WARN, NULL, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_at(LOG_LEVEL_ERROR, NULL, NULL, NULL, __VA_ARGS__)
/* With the event's ids: log_ev(LOG_LEVEL_WARN, trace_id, event_id, "retrying %s", url) */
#define log_ev(level, trace_id, event_id, ...) log_at(level, trace_id, event_id, NULL, __VA_ARGS__)

#endif
