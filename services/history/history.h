/* history.h - the history service's parts (see main.c for the overview):
 *
 *   ingest.c  POST /v1/deliveries/login.checked, .../account.action and .../account.event,
 *             single deliveries or batches (delivery.h): signature, validation, and the batcher
 *             that groups the logins of concurrent deliveries into one INSERT.
 *   api.c     GET /v1/accounts/{id}/logins (with reasons; keyset pagination) and
 *             GET /v1/accounts/{id}/events: tokens. */
#ifndef HISTORY_H
#define HISTORY_H

#include <stddef.h>

#include "db.h"
#include "http/http_server.h"

struct ingest_options {
    const char *bus_secret; /* NULL/"" = signatures not checked */
    unsigned batch_max;     /* rows per INSERT */
    unsigned batch_wait_ms; /* how long the first row of a batch waits for company */
    unsigned max_pending;   /* queued rows before answering 503 */
    unsigned workers;       /* batcher threads */
};

struct ingest;

/* Starts the batcher threads and registers the delivery routes on s. d is borrowed. */
struct ingest *ingest_new(struct db *d, struct http_server *s, const struct ingest_options *o);
/* Answers 503 to new deliveries from now on, commits (or fails) what is queued and answers it,
 * joins the threads. Call before http_server_free (which may still run handlers), and
 * ingest_free after it. */
void ingest_stop(struct ingest *in);
/* Stops if needed and frees. NULL is a no-op. */
void ingest_free(struct ingest *in);

struct api_options {
    const char *auth_secret;
};

/* Registers GET /v1/accounts/{}/logins and .../events on s. d and o's strings are borrowed. */
void api_register(struct http_server *s, struct db *d, const struct api_options *o);

#endif
