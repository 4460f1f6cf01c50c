/* campaign - the password-change campaign, added to the product by configuration alone.
 *
 * Route `campaign` (streaming) delivers every login: POST /v1/deliveries/login. The first login of
 * an account on the campaign list since the campaign's start (start.c) answers 200 with a
 * notification event (config "kind", default "campaign_password", on the configured "channels")
 * that the bus publishes to `notification`; every other login answers 204. Each campaign is one
 * process with its own configuration and route (config/campaign/NAME.json, a route in config/bus/).
 * "Once per account" is a row in campaign.sent inserted in the same statement that decides, keyed
 * by (campaign, account); a redelivery of that same login gets the same 200. A batched delivery
 * (delivery.h) answers the array of those answers (null for a 204), or 204. The list (list_file,
 * one account id per line, # comments) is loaded into campaign.targets at start.
 *
 * Most logins are of accounts that are not listed or were already told: those are answered from
 * memory. The listed accounts are read from campaign.targets at start and every
 * targets_refresh_s (so rows added by hand are picked up); an account this process saw
 * notified is remembered with the login that notified it. Only a listed account not yet known
 * as notified costs a statement. */
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "campaign.h"
#include "db.h"
#include "delivery.h"
#include "http/http_server.h"
#include "log.h"
#include "metrics.h"
#include "strmap.h"

#define ID_MAX 128

static const struct config_def CAMPAIGN_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8105", 0, 256, 0, NULL, "HTTP listen address"},
    {"database_url", CONFIG_STRING, "postgresql://bus@127.0.0.1:55432/bus", 0, 4096, CONFIG_SECRET,
     "DATABASE_URL", "PostgreSQL connection URL"},
    {"db_pool", CONFIG_INT, "4", 1, 100, 0, NULL, "Database connections"},
    {"migrations_dir", CONFIG_STRING, "sql/campaign", 0, 4096, 0, NULL,
     "Migrations applied at start"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"campaign", CONFIG_STRING, "password-2026", 1, 128, 0, NULL, "Campaign name"},
    {"list_file", CONFIG_STRING, "config/campaign/password-2026.txt", 0, 4096, 0, NULL,
     "Accounts of the campaign, one per line (loaded at start; empty = the table as it is)"},
    {"kind", CONFIG_STRING, "campaign_password", 1, 64, 0, NULL,
     "Message kind (notify template) of the notification"},
    {"channels", CONFIG_STRING, "ingame", 1, 64, 0, NULL,
     "Where the message goes: email, sms and/or ingame, separated by spaces or commas"},
    {"start", CONFIG_STRING, "now", 1, 64, 0, NULL,
     "Logins that count: now (from the campaign's first run, kept across restarts), backfill "
     "(every login still in the topic) or an RFC 3339 time"},
    {"threads", CONFIG_INT, "4", 1, 64, 0, NULL, "HTTP worker threads"},
    {"targets_refresh_s", CONFIG_INT, "60", 1, 86400, 0, NULL,
     "Seconds between two reads of campaign.targets into memory"},
    {"cache_max", CONFIG_INT, "1000000", 0, 100000000, 0, NULL,
     "Listed accounts kept in memory; a longer list (or 0) makes every login ask the database"},
    CONFIG_DEF_END,
};

struct campaign {
    struct db *db;
    const char *bus_secret, *name, *kind;
    json_t *channels;   /* the notification's channels (config "channels") */
    long long start_ms; /* logins before it are not part of the campaign (start.c) */
    long long cache_max;
    struct metric *m_messages; /* notifications streamed out */
    struct metric *m_memory;   /* logins answered without the database */

    /* Shared by the HTTP threads and the refresh in main, behind lock: */
    pthread_mutex_t lock;
    struct strmap *targets; /* listed accounts; NULL = not in memory: ask the database */
    struct strmap *sent;    /* account -> the login whose answer notified it */
    struct http_server *srv;
};

/* Reads the listed accounts into a fresh set and swaps it in; on failure the old set stays. */
static void targets_refresh(struct campaign *c)
{
    if (c->cache_max <= 0) {
        return;
    }
    char limit[24], err[512];
    snprintf(limit, sizeof limit, "%lld", c->cache_max + 1);
    const char *p[] = {c->name, limit};
    json_t *rows = NULL;
    int rc = db_exec(c->db,
                     "SELECT account_id FROM campaign.targets WHERE campaign = $1 LIMIT $2::bigint",
                     p, 2, &rows, NULL, err, sizeof err);
    if (rc != DB_OK) {
        log_warn("campaign %s: cannot read the list (keeping the one in memory): %s", c->name, err);
        return;
    }
    struct strmap *set = NULL;
    if ((long long)json_array_size(rows) <= c->cache_max) {
        set = strmap_new();
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            strmap_put(set, json_string_value(json_object_get(row, "account_id")), NULL);
        }
    } else {
        log_warn("campaign %s: more than cache_max=%lld listed accounts: every login asks the "
                 "database",
                 c->name, c->cache_max);
    }
    json_decref(rows);
    pthread_mutex_lock(&c->lock);
    struct strmap *old = c->targets;
    c->targets = set;
    pthread_mutex_unlock(&c->lock);
    strmap_free(old);
}

/* Answers from memory when it can: 204 for an unlisted account or one notified by another login,
 * the same 200 again for a redelivery of the login that notified it. Returns 0 when it answered
 * (*answer_200 tells which), -1 when the database must decide. */
static int answer_from_memory(struct campaign *c, const char *account, const char *login_id,
                              bool *answer_200)
{
    int rc = -1;
    const char *sent_for = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->targets && !strmap_get(c->targets, account, NULL)) {
        *answer_200 = false;
        rc = 0;
    } else if (strmap_get(c->sent, account, &sent_for)) {
        *answer_200 = sent_for && strcmp(sent_for, login_id) == 0;
        rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void remember_sent(struct campaign *c, const char *account, const char *login_id)
{
    pthread_mutex_lock(&c->lock);
    if ((long long)strmap_len(c->sent) >= c->cache_max) {
        strmap_clear(c->sent); /* only a cache: the database still knows */
    }
    if (c->cache_max > 0) {
        strmap_put(c->sent, account, login_id);
    }
    pthread_mutex_unlock(&c->lock);
}

/* The notification event that tells account (a new reference). */
static json_t *notification_new(const struct campaign *c, const char *account)
{
    char dedupe[300];
    snprintf(dedupe, sizeof(dedupe), "%s/%s", c->name, account);
    return json_pack("{s:s, s:s, s:O, s:{s:s}, s:s}", "account_id", account, "kind", c->kind,
                     "channels", c->channels, "params", "campaign", c->name, "dedupe_key", dedupe);
}

static int load_list(struct campaign *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("list_file %s: cannot open", path);
        return -1;
    }
    char line[512], err[512];
    json_t *batch = json_array();
    long total = 0;
    int rc = 0;
    for (;;) {
        int eof = !fgets(line, sizeof(line), f);
        if (!eof) {
            line[strcspn(line, "\r\n")] = '\0';
            char *s = line + strspn(line, " \t");
            size_t n = strlen(s);
            while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
                s[--n] = '\0';
            }
            if (n > 0 && s[0] != '#' && n <= ID_MAX) {
                json_array_append_new(batch, json_string(s));
            }
        }
        if (json_array_size(batch) >= 5000 || (eof && json_array_size(batch) > 0)) {
            char *arr = json_dumps(batch, JSON_COMPACT);
            const char *p[] = {c->name, arr};
            rc = db_exec(c->db,
                         "INSERT INTO campaign.targets (campaign, account_id) SELECT $1, value "
                         "FROM json_array_elements_text($2::json) ON CONFLICT DO NOTHING",
                         p, 2, NULL, NULL, err, sizeof(err));
            free(arr);
            total += (long)json_array_size(batch);
            json_array_clear(batch);
            if (rc != DB_OK) {
                log_error("loading %s: %s", path, err);
                break;
            }
        }
        if (eof) {
            break;
        }
    }
    fclose(f);
    json_decref(batch);
    if (rc == DB_OK) {
        log_info("campaign %s: %ld account(s) from %s", c->name, total, path);
    }
    return rc;
}

/* Decides one login: 200 with the notification as its output for the login that notifies its
 * account (again when redelivered), 204 for any other; 422 for an event without a usable
 * account_id; 503 with Retry-After 1 while the database is unavailable, 500 on its errors (a
 * delivery_decide_fn; ctx is the campaign). */
static void campaign_decide(void *ctx, struct delivery_item *it)
{
    struct campaign *c = ctx;
    const char *account = json_string_value(json_object_get(it->event, "account_id"));
    const char *login_id = it->id;
    if (!account || !*account || strlen(account) > ID_MAX) {
        delivery_item_fail(it, 422, "invalid_event", "account_id and ce-id are required");
        return;
    }
    bool is_200 = false;
    if (!campaign_login_counts(json_string_value(json_object_get(it->event, "ts")), c->start_ms)) {
        metric_inc(c->m_memory); /* a login from before the campaign: not part of it */
        it->status = 204;
        return;
    }
    if (answer_from_memory(c, account, login_id, &is_200) == 0) {
        metric_inc(c->m_memory);
        it->status = is_200 ? 200 : 204;
        it->output = is_200 ? notification_new(c, account) : NULL;
        return;
    }
    const char *p[] = {c->name, account, login_id};
    json_t *rows = NULL;
    char err[512];
    int rc = db_exec(c->db,
                     "WITH ins AS (INSERT INTO campaign.sent (campaign, account_id, login_id) "
                     "SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM campaign.targets "
                     "WHERE campaign = $1 AND account_id = $2) "
                     "ON CONFLICT (campaign, account_id) DO NOTHING RETURNING login_id) "
                     "SELECT login_id FROM ins UNION ALL SELECT login_id FROM campaign.sent "
                     "WHERE campaign = $1 AND account_id = $2",
                     p, 3, &rows, NULL, err, sizeof(err));
    if (rc == DB_EUNAVAILABLE) {
        delivery_item_fail(it, 503, "unavailable", "database unavailable");
        it->retry_after_s = 1;
        return;
    }
    if (rc != DB_OK) {
        log_error("campaign: %s", err);
        delivery_item_fail(it, 500, "internal", "database error");
        return;
    }
    const char *sent_for = json_string_value(json_object_get(json_array_get(rows, 0), "login_id"));
    if (sent_for) {
        remember_sent(c, account, sent_for);
    }
    if (!sent_for || strcmp(sent_for, login_id) != 0) {
        it->status = 204;
    } else {
        metric_inc(c->m_messages);
        it->status = 200;
        it->output = notification_new(c, account);
    }
    json_decref(rows);
}

/* One login, or a batch of them (delivery.h: after an item to retry, the rest is not decided). */
static void handle_login(struct http_exchange *ex, void *arg)
{
    struct campaign *c = arg;
    const struct delivery_rules rules = {
        .secret = c->bus_secret,
        .needs_event_id = true,
        .event_id_max = ID_MAX,
        .refusal = {.message = "account_id and ce-id are required"},
    };
    struct delivery_batch b;
    if (delivery_accept_any(ex, &rules, &b) != 0) {
        return;
    }
    delivery_decide_all(&b, campaign_decide, c);
    delivery_answer(ex, &b);
}

/* Before the database: the settings, the in-memory sets, the metrics. */
static int campaign_prepare(struct app *app, void *ctx)
{
    struct campaign *c = ctx;
    c->bus_secret = config_str(app->cfg, "bus_secret");
    c->name = config_str(app->cfg, "campaign");
    c->kind = config_str(app->cfg, "kind");
    c->cache_max = config_int(app->cfg, "cache_max");
    char err[512];
    if (campaign_channels_parse(config_str(app->cfg, "channels"), &c->channels, err, sizeof(err)) !=
        0) {
        log_error("%s", err);
        return 2;
    }
    if (!campaign_start_valid(config_str(app->cfg, "start"))) {
        log_error("start: \"%s\" is not now, backfill or an RFC 3339 time",
                  config_str(app->cfg, "start"));
        return 2;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->sent = strmap_new();
    c->m_messages =
        metrics_counter("campaign_messages_total",
                        "Campaign notifications streamed to the notification topic", NULL);
    c->m_memory = metrics_counter("campaign_memory_answers_total",
                                  "Logins answered from memory (account not listed, or already "
                                  "notified) without a database statement",
                                  NULL);
    return 0;
}

/* With the database: the list loaded, the listed accounts read, the server started. */
static int campaign_start(struct app *app, void *ctx)
{
    struct campaign *c = ctx;
    char err[512];
    const char *list = config_str(app->cfg, "list_file");
    if (list && *list && load_list(c, list) != 0) {
        return 1;
    }
    if (campaign_start_resolve(c->db, c->name, config_str(app->cfg, "start"), &c->start_ms, err,
                               sizeof(err)) != DB_OK) {
        log_error("campaign %s: cannot record its start: %s", c->name, err);
        return 1;
    }
    targets_refresh(c);
    struct http_server_options opts = {
        .listen = config_str(app->cfg, "listen"),
        .threads = (unsigned)config_int(app->cfg, "threads"),
        .ready = db_ready,
        .ready_ctx = c->db,
    };
    struct http_server *srv = http_server_new(&opts);
    c->srv = srv;
    http_server_route(srv, "POST", "/v1/deliveries/login", handle_login, c,
                      DELIVERY_MAX_BODY_BYTES);
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        return 1;
    }
    log_info("campaign %s listening on %s (logins %s count)", c->name, opts.listen,
             c->start_ms == CAMPAIGN_START_ALL ? "still in the topic" : "since its start");
    return 0;
}

/* Until stopped: the listed accounts read again every targets_refresh_s. */
static void campaign_run(struct app *app, void *ctx)
{
    while (!app_wait_stop_for(app, config_int(app->cfg, "targets_refresh_s") * 1000L)) {
        targets_refresh(ctx);
    }
}

static void campaign_release(struct app *app, void *ctx)
{
    (void)app;
    struct campaign *c = ctx;
    http_server_free(c->srv, 2000);
    strmap_free(c->targets);
    strmap_free(c->sent);
    json_decref(c->channels);
    pthread_mutex_destroy(&c->lock);
}

int main(int argc, char **argv)
{
    struct campaign c;
    memset(&c, 0, sizeof(c));
    const struct app_service svc = {
        .name = "campaign",
        .env_prefix = "CAMPAIGN",
        .defs = CAMPAIGN_CONFIG,
        .ctx = &c,
        .db_schema = "campaign",
        .db = &c.db,
        .prepare = campaign_prepare,
        .start = campaign_start,
        .run = campaign_run,
        .release = campaign_release,
    };
    return app_serve(argc, argv, &svc);
}
