/* webpage.c - a service's browser page: config.json and its CORS prerequisites (see webpage.h). */
#include "http/webpage.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

struct webpage {
    char *config_json; /* the answer of <prefix>config.json */
};

struct webpage *webpage_new(const char *self, const char *peer, const char *cors,
                            const char *peer_url, char *err, size_t err_len)
{
    char why[512];
    if (http_cors_validate(cors, why, sizeof why) != 0) {
        snprintf(err, err_len, "http.cors_origins: %s", why);
        return NULL;
    }
    if (peer_url && *peer_url && http_cors_validate(peer_url, why, sizeof why) != 0) {
        snprintf(err, err_len, "web.%s_url: %s", peer, why);
        return NULL;
    }
    char self_key[64], peer_key[64];
    snprintf(self_key, sizeof self_key, "%s_url", self);
    snprintf(peer_key, sizeof peer_key, "%s_url", peer);
    json_t *pc = json_pack("{s:s, s:s}", self_key, "", peer_key, peer_url ? peer_url : "");
    struct webpage *w = xcalloc(1, sizeof *w);
    w->config_json = json_dumps(pc, JSON_COMPACT);
    json_decref(pc);
    return w;
}

static void handle_config(struct http_exchange *ex, void *ctx)
{
    const struct webpage *w = ctx;
    http_add_header(ex, "Cache-Control", "no-cache");
    http_respond(ex, 200, NULL, w->config_json, strlen(w->config_json));
}

void webpage_serve_files(struct http_server *s, const char *prefix, const char *dir,
                         const char *common_dir)
{
    if (!dir || !*dir) {
        return;
    }
    if (common_dir && *common_dir) {
        char common[256];
        snprintf(common, sizeof common, "%scommon/", prefix);
        http_server_static(s, common, common_dir);
    }
    http_server_static(s, prefix, dir);
}

void webpage_serve(struct webpage *w, struct http_server *s, const char *prefix, const char *dir,
                   const char *common_dir)
{
    if (!dir || !*dir) {
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%sconfig.json", prefix);
    http_server_route(s, "GET", path, handle_config, w, 0);
    webpage_serve_files(s, prefix, dir, common_dir);
}

void webpage_free(struct webpage *w)
{
    if (!w) {
        return;
    }
    free(w->config_json);
    free(w);
}
