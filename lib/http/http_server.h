/* http_server.h - the HTTP server: the project's own HTTP/1.1 layer on epoll (http_loop.c,
 * http_request.c, http_response.c; docs/http.md).
 *
 * Routing by method and path pattern ("/v1/topics/{}/events": each {} captures one segment),
 * limits on body size, header memory, connections and time, JSON error bodies, and the three
 * endpoints every process serves: GET /healthz, GET /readyz (through a ready callback) and
 * GET /metrics (metrics.h). Optional static files for pages.
 *
 * Threading: `threads` polling threads, each with an epoll loop of its own on the one listening
 * socket (no descriptor ceiling but RLIMIT_NOFILE). Handlers run on those threads. A handler
 * answers with http_respond*() exactly once: either before it returns, or later from any thread
 * (asynchronous, e.g. while the publisher waits for the broker's acknowledgement; the answering
 * thread then writes the answer itself when it can). The exchange may be freed by the respond
 * call; don't touch it afterwards. */
#ifndef HTTP_SERVER_H
#define HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* For --version and bus_build_info's libmicrohttpd label (static string): "builtin", the server
 * being the project's own since libmicrohttpd was dropped. */
const char *http_server_lib_version(void);

#define HTTP_MAX_PARAMS 4

struct http_server;
struct http_exchange; /* one request and its pending answer */

typedef void (*http_handler_fn)(struct http_exchange *ex, void *ctx);
/* Fills *reason (static string) and returns true when ready. */
typedef bool (*http_ready_fn)(void *ctx, const char **reason);

struct http_server_options {
    const char *listen;    /* "127.0.0.1:8080" */
    unsigned threads;      /* polling threads; 0 = 2 */
    size_t max_body_bytes; /* default cap for request bodies; 0 = 1 MiB */
    /* Connections open at once (all clients); past it a new connection is answered 503 and
     * closed. 0 = 16384. Lowered to what RLIMIT_NOFILE allows (raised to its hard limit at
     * start), with a warning. */
    unsigned max_connections;
    unsigned max_connections_per_client; /* the same per client address; 0 = 1024 */
    unsigned timeout_s;      /* keep-alive idle time-out, and no byte for this long; 0 = 15 */
    unsigned head_timeout_s; /* a request's head must be complete within; 0 = 10 */
    unsigned body_timeout_s; /* its body within this after the head; 0 = 30 */
    http_ready_fn ready;     /* NULL = always ready */
    void *ready_ctx;
    /* CORS allow-list: comma-separated exact origins ("http://127.0.0.1:8103") whose pages may
     * call the routes from a browser. For a listed Origin the answers carry
     * Access-Control-Allow-Origin (the origin echoed) and OPTIONS preflights of routed paths are
     * answered 204; an unlisted Origin gets no CORS header and its preflight is refused 403. The
     * origins are also added to connect-src of the static files' CSP. NULL/"" = no CORS (OPTIONS
     * is then routed like any other method). Copied; check it first with http_cors_validate(). */
    const char *cors_origins;
};

/* Checks a cors_origins list: every entry is http(s)://host[:port] without path, quote, space or
 * ';'. Returns 0, or -1 with a sentence naming the bad entry in err. */
int http_cors_validate(const char *origins, char *err, size_t err_len);

struct http_server *http_server_new(const struct http_server_options *opts);
/* Registers a route. max_body_bytes 0 = the server default. Call before http_server_start. */
void http_server_route(struct http_server *s, const char *method, const char *pattern,
                       http_handler_fn fn, void *ctx, size_t max_body_bytes);
/* Serves files under dir for GET requests whose path starts with prefix (e.g. "/" or "/ui/"),
 * with strict security headers (CSP without inline script, frame-ancestors 'none', nosniff). */
void http_server_static(struct http_server *s, const char *prefix, const char *dir);
/* Binds and starts serving; returns -1 with err filled on failure (e.g. port in use). */
int http_server_start(struct http_server *s, char *err, size_t err_len);
/* The bound port (useful with port 0). */
unsigned http_server_port(const struct http_server *s);
/* Stops accepting, waits for handlers to finish (pending asynchronous exchanges are answered
 * 503 by the server after grace_ms), and frees the server. NULL is a no-op. */
void http_server_free(struct http_server *s, unsigned grace_ms);

/* Request accessors: valid until the exchange is answered. */
const char *http_method(const struct http_exchange *ex);
const char *http_path(const struct http_exchange *ex);
const char *http_param(const struct http_exchange *ex, unsigned i);        /* i-th {} capture */
const char *http_header(const struct http_exchange *ex, const char *name); /* case-insensitive */
const char *http_query(const struct http_exchange *ex, const char *name);
const char *http_body(const struct http_exchange *ex, size_t *len); /* NUL-terminated */
/* The Bearer token of the Authorization header, or NULL. */
const char *http_bearer(const struct http_exchange *ex);

/* Adds a response header for the coming answer (e.g. "Retry-After"). */
void http_add_header(struct http_exchange *ex, const char *name, const char *value);
/* Answers with a body (copied) and content type (NULL = application/json). */
void http_respond(struct http_exchange *ex, unsigned status, const char *content_type,
                  const char *body, size_t len);
/* Answers with a JSON value (stolen: the reference is consumed). */
void http_respond_json(struct http_exchange *ex, unsigned status, json_t *body);
/* Answers {"error": code, "message": message, ...extra fields} (extra stolen, may be NULL). */
void http_respond_error(struct http_exchange *ex, unsigned status, const char *code, json_t *extra,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers in sweeps. Between http_defer_begin() and http_defer_end() on one thread (they
 * nest), answers given on that thread to exchanges whose handler already returned are built and
 * written at once where they can be, but the polling threads that must write the others are
 * woken only at the outermost http_defer_end(), each once. For a thread that answers in batches
 * (the publisher's Kafka delivery thread). */
void http_defer_begin(void);
void http_defer_end(void);

#endif
