/* trace.h - busctl trace: an event's whole journey through the product, from the logs and the
 * topics (see trace.c, docs/operations.md). */
#ifndef BUSCTL_TRACE_H
#define BUSCTL_TRACE_H

/* Runs `busctl trace EVENT_ID [--logs DIR] [--json] [--scan N]`; argv[0] is "trace". Returns the
 * exit code: 0 journey printed, 1 event not found (or broker and logs unreadable), 2 usage. */
int busctl_trace_main(int argc, char **argv);

#endif
