/* history - every login, once, and the player-facing login history API.
 *
 * Bus deliveries (routes `history`, `history-actions` and `history-events`, one-way):
 * login.checked rows are batched into PostgreSQL (ingest.c), account.action sets the action and
 * its reasons shown next to a login, account.event adds guard's locks, unlocks and settings
 * changes to the account's timeline. GET /v1/accounts/{id}/logins and .../events serve them
 * (api.c); the player page's static files are
 * served at / (web.dir, with /config.json telling it where guard is) and CORS answered for guard's
 * support console (http.cors_origins). Tables live in the `history` schema
 * (sql/history/, applied at start); logins are partitioned by day and partitions older than
 * retention_days are dropped by the maintenance pass run at start and every
 * maintenance_interval_s on the main thread. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "auth.h"
#include "db.h"
#include "delivery.h"
#include "history.h"
#include "http/http_server.h"
#include "log.h"
#include "http/webpage.h"

static const struct config_def HISTORY_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8102", 0, 256, 0, NULL, "HTTP listen address"},
    {"database_url", CONFIG_STRING, "postgresql://bus@127.0.0.1:55432/bus", 0, 4096, CONFIG_SECRET,
     "DATABASE_URL",
     "PostgreSQL connection URL (default: the private development cluster of tools/pg.sh)"},
    {"db_pool", CONFIG_INT, "6", 1, 100, 0, NULL, "Database connections"},
    {"migrations_dir", CONFIG_STRING, "sql/history", 0, 4096, 0, NULL,
     "Migrations applied at start"},
    {"auth_secret", CONFIG_STRING, AUTH_DEV_SECRET, 1, 4096, CONFIG_KEY, "AUTH_SECRET",
     "HS256 secret of player and staff tokens (the default is for development only)"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"retention_days", CONFIG_INT, "90", 1, 36500, 0, NULL,
     "Days of history kept (older daily partitions are dropped)"},
    {"partitions_ahead_days", CONFIG_INT, "3", 0, 60, 0, NULL,
     "Future daily partitions created in advance"},
    {"maintenance_interval_s", CONFIG_INT, "3600", 1, 86400, 0, NULL,
     "How often partitions are created and dropped"},
    {"batch_max", CONFIG_INT, "100", 1, 1000, 0, NULL, "Most logins per INSERT"},
    {"batch_wait_ms", CONFIG_INT, "5", 0, 1000, 0, NULL,
     "How long a login waits for others to share its INSERT"},
    {"batch_workers", CONFIG_INT, "2", 1, 32, 0, NULL, "Threads writing batches"},
    {"max_pending", CONFIG_INT, "10000", 1, 1000000, 0, NULL,
     "Queued logins before deliveries are answered 503"},
    {"threads", CONFIG_INT, "4", 1, 64, 0, NULL, "HTTP worker threads"},
    {"http.cors_origins", CONFIG_STRING, "http://127.0.0.1:8103,http://localhost:8103", 0, 4096, 0,
     NULL,
     "Comma-separated origins whose pages may call this API from a browser (the support "
     "console at guard); also where the player page may connect"},
    WEBPAGE_CONFIG_DEFS("services/history/web", "the player page", "/"),
    {"web.guard_url", CONFIG_STRING, "http://127.0.0.1:8103", 0, 256, 0, NULL,
     "Base URL of guard as the player's browser reaches it (given to the page in /config.json; "
     "list its origin in guard's http.cors_origins and in this http.cors_origins)"},
    CONFIG_DEF_END,
};

static void maintain(struct db *d, const struct config *cfg)
{
    char ret[24], ahead[24], err[512];
    json_t *rows = NULL;
    snprintf(ret, sizeof(ret), "%lld", config_int(cfg, "retention_days"));
    snprintf(ahead, sizeof(ahead), "%lld", config_int(cfg, "partitions_ahead_days"));
    const char *params[] = {ret, ahead};
    int rc = db_exec(d, "SELECT history.maintain($1::int, $2::int) AS dropped", params, 2, &rows,
                     NULL, err, sizeof(err));
    if (rc != DB_OK) {
        log_warn("partition maintenance failed (retried later): %s", err);
    } else {
        const char *dropped =
            json_string_value(json_object_get(json_array_get(rows, 0), "dropped"));
        if (dropped && strcmp(dropped, "0") != 0) {
            log_info("retention: dropped %s partition(s) older than %s days", dropped, ret);
        }
    }
    json_decref(rows);
}

/* The process: its modules, for the hooks of app_serve. */
struct history {
    struct db *db;
    struct http_server *srv;
    struct ingest *in;
    struct webpage *page;
};

/* With the database: the retention pass once, the batcher, the API, the player page, the server
 * started. */
static int history_start(struct app *app, void *ctx)
{
    struct history *h = ctx;
    char err[512];
    maintain(h->db, app->cfg);

    const char *cors = config_str(app->cfg, "http.cors_origins");
    struct webpage *page = webpage_new("history", "guard", cors,
                                       config_str(app->cfg, "web.guard_url"), err, sizeof(err));
    h->page = page;
    if (!page) {
        log_error("%s", err);
        return 1;
    }

    struct http_server_options opts = {
        .listen = config_str(app->cfg, "listen"),
        .threads = (unsigned)config_int(app->cfg, "threads"),
        .ready = db_ready,
        .ready_ctx = h->db,
        .cors_origins = cors,
    };
    struct http_server *srv = http_server_new(&opts);
    h->srv = srv;
    const char *bus_secret = config_str(app->cfg, "bus_secret");
    struct ingest_options io = {
        .bus_secret = bus_secret,
        .batch_max = (unsigned)config_int(app->cfg, "batch_max"),
        .batch_wait_ms = (unsigned)config_int(app->cfg, "batch_wait_ms"),
        .max_pending = (unsigned)config_int(app->cfg, "max_pending"),
        .workers = (unsigned)config_int(app->cfg, "batch_workers"),
    };
    h->in = ingest_new(h->db, srv, &io);
    struct api_options ao = {.auth_secret = config_str(app->cfg, "auth_secret")};
    api_register(srv, h->db, &ao);
    webpage_serve(page, srv, "/", config_str(app->cfg, "web.dir"),
                  config_str(app->cfg, "web.common_dir"));
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        return 1;
    }
    log_info("history listening on %s%s", opts.listen,
             bus_secret && *bus_secret ? ", signatures required" : "");
    return 0;
}

/* Until stopped: the retention pass every maintenance_interval_s. */
static void history_run(struct app *app, void *ctx)
{
    struct history *h = ctx;
    long interval_ms = (long)config_int(app->cfg, "maintenance_interval_s") * 1000;
    while (!app_wait_stop_for(app, interval_ms)) {
        maintain(h->db, app->cfg);
    }
}

static void history_release(struct app *app, void *ctx)
{
    (void)app;
    struct history *h = ctx;
    ingest_stop(h->in);
    http_server_free(h->srv, 2000);
    ingest_free(h->in);
    webpage_free(h->page);
}

int main(int argc, char **argv)
{
    struct history h = {0};
    const struct app_service svc = {
        .name = "history",
        .env_prefix = "HISTORY",
        .defs = HISTORY_CONFIG,
        .ctx = &h,
        /* Migrations must be in place before serving; while the database is still starting,
         * wait. */
        .db_schema = "history",
        .db = &h.db,
        .start = history_start,
        .run = history_run,
        .release = history_release,
    };
    return app_serve(argc, argv, &svc);
}
