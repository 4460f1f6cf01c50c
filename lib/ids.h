/* ids.h - event ids and W3C trace context.
 *
 * Event ids are UUIDv7 (RFC 9562): time-ordered, so ids sort by creation time, and random in
 * their low bits. Trace context follows W3C traceparent:
 * "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>". Thread-safe. */
#ifndef IDS_H
#define IDS_H

#include <stdbool.h>
#include <stddef.h>

#define ID_UUID_LEN 36
#define TRACEPARENT_LEN 55

/* Writes a new UUIDv7 as 36 characters plus NUL. */
void id_uuid7(char out[ID_UUID_LEN + 1]);
/* Writes the id of the index-th event a streaming route (scope: its name) produces from the
 * input event whose id is input_id: a name-based UUIDv8 (RFC 9562 section 5.8, SHA-256 of
 * scope, input_id and index; the layout of its appendix B.2). The same input always yields the
 * same output ids, so an input delivered again produces outputs that consumers deduplicating by
 * id recognise; different scopes, inputs or indexes give different ids. Returns -1 (out
 * untouched) when scope and input_id together exceed 1024 bytes. */
int id_derived(const char *scope, const char *input_id, size_t index, char out[ID_UUID_LEN + 1]);
/* True when s is an acceptable client-supplied event id: 1..128 printable ASCII characters
 * without spaces or quotes. */
bool id_is_valid(const char *s);

struct trace {
    char trace_id[33]; /* 32 lowercase hex */
    char span_id[17];  /* 16 lowercase hex */
    char flags[3];
};
/* Parses a traceparent header; returns -1 when malformed (then start a new trace). */
int trace_parse(const char *traceparent, struct trace *out);
/* A new trace with a random trace and span id, flags "01". */
void trace_new(struct trace *out);
/* Same trace id, new span id: the context to send on the next hop. */
void trace_child(const struct trace *parent, struct trace *out);
/* The trace id of a traceparent header, copied to out; NULL (out untouched) when traceparent is
 * NULL or malformed. For log lines: log_ev(level, trace_id_of(tp, buf), ce_id, ...). */
const char *trace_id_of(const char *traceparent, char out[33]);
/* Formats "00-trace-span-flags". */
void trace_format(const struct trace *t, char out[TRACEPARENT_LEN + 1]);

/* Fills buf with n cryptographically random bytes (getrandom). */
void random_bytes(void *buf, size_t n);

#endif
