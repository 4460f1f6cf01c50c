/* webpage.h - a browser page that a service serves next to its API and that also calls a peer
 * service (history's player page calls guard, guard's support console calls history).
 *
 * The page learns where the services are from GET <prefix>config.json:
 * {"<self>_url": "", "<peer>_url": "<peer_url>"} ("" = same origin). The peer's origin must be
 * in the page's CSP connect-src and the peer must allow this service's origin, so both
 * services take an http.cors_origins list (http_server_options.cors_origins) and a
 * web.<peer>_url; webpage_new() validates both before the server starts. */
#ifndef WEBPAGE_H
#define WEBPAGE_H

#include <stddef.h>

#include "http/http_server.h"

/* The two configuration entries of a process that serves a page (config.h's struct config_def):
 * web.dir (default dir; PAGE names the page, PREFIX where it is served, both string literals)
 * and web.common_dir (lib/web, served under PREFIX "common/"). */
#define WEBPAGE_CONFIG_DEFS(dir, PAGE, PREFIX)                                                     \
    {"web.dir",                                                                                    \
     CONFIG_STRING,                                                                                \
     dir,                                                                                          \
     0,                                                                                            \
     4096,                                                                                         \
     0,                                                                                            \
     NULL,                                                                                         \
     "Directory of " PAGE " served at " PREFIX " (relative to the working directory; empty: "      \
     "none)"},                                                                                     \
    {                                                                                              \
        "web.common_dir", CONFIG_STRING, "lib/web", 0, 4096, 0, NULL,                              \
            "Directory of the pages' shared sheet and scripts, served under " PREFIX               \
            "common/ (relative to the working directory)"                                          \
    }

struct webpage;

/* self, peer: service names ("history", "guard"). cors: the http.cors_origins value; peer_url:
 * web.<peer>_url (NULL or "" = none). Both strings are checked with http_cors_validate(). Returns
 * NULL with a sentence naming the bad key in err. */
struct webpage *webpage_new(const char *self, const char *peer, const char *cors,
                            const char *peer_url, char *err, size_t err_len);
/* When dir is set (not NULL or ""): serves GET <prefix>config.json and the page's files (see
 * webpage_serve_files). The page must outlive the server. */
void webpage_serve(struct webpage *w, struct http_server *s, const char *prefix, const char *dir,
                   const char *common_dir);
/* When dir is set: serves the static files of dir under prefix ("/" or "/support/") and those
 * of common_dir (lib/web: the pages' shared sheet and scripts) under <prefix>common/. */
void webpage_serve_files(struct http_server *s, const char *prefix, const char *dir,
                         const char *common_dir);
/* NULL is a no-op. */
void webpage_free(struct webpage *w);

#endif
