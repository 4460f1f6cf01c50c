/* guard - per-account security policy applied to logins from abroad.
 *
 * Bus delivery (route `guard`, streaming): POST /v1/deliveries/login.checked. A login from a
 * country that is neither a home country (config) nor allowed by the account (optionally until a
 * date, for travel) triggers the account's policy: notify, kick, block_abroad or lock. The answer
 * is the account.action event (200), or 204 when the login needs nothing; a batched delivery
 * (delivery.h) answers the array of those events (null for a 204). Decisions are stored per
 * (account_id, login_id), so a redelivered login gets the same answer and never a second lock or
 * code. The unlock code of a lock is drawn from the CSPRNG once; guard keeps a salted SHA-256 of
 * it, and the event carries it only sealed for notify (seal.h, "sealed_code"), which is how the
 * decision is stored too: a redelivery re-emits the very code the player was sent. No topic, dead
 * letter, HTTP answer or log line holds a code in the clear.
 *
 * Player API (player token of that account): PUT /v1/accounts/{id}/policy, PUT .../contacts
 * (a new contact waits for POST .../contacts/confirm with the code sent to it), GET .../policy,
 * POST .../unlock {"code"} (attempts limited, codes expire). While the account is locked its
 * contacts cannot change and its policy can only get stricter (423); notify and lock need a
 * verified channel (422). Every change is audited and told to the player, through the outbox:
 * messages written in the change's transaction, published by the relay on the main thread to
 * the notification topic (outbox_flush).
 * Login servers: GET /v1/accounts/{id}/status?ip= with a service token (status_tokens), answering
 * admit/reason from guard's own GeoIP lookup and the brute-force throttle (failed logins arrive
 * on POST /v1/deliveries/login.failed, route guard-failures; throttle.c); served from an in-memory
 * cache (write-through: every change is committed to PostgreSQL first, then the cache entry is
 * dropped and reloaded). Staff: POST /v1/support/accounts/{id}/unlock {"reason"}, GET
 * /v1/support/audit?account_id=, and for the support console GET /v1/support/accounts?prefix=
 * (find), .../accounts/{id} (details) and .../accounts/{id}/locks (lock history, guard.lock_events,
 * written in the transaction of each lock and unlock). The console's static files are served at
 * /support/ (web.dir), with CORS for the player page's origin (http.cors_origins). Tables live in
 * the `guard` schema (sql/guard/). */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "app.h"
#include "auth.h"
#include "guard.h"
#include "http/webpage.h"
#include "log.h"
#include "retention.h"

/* SHA-256 of the development status token "dev-status-token" (docs/services/guard.md). */
#define GUARD_DEV_STATUS_TOKENS                                                                    \
    "dev-login-servers:16c99ebb2810c6df9c889c569c0954f906ef282f9ac5b341b5a1288f7ad7b965"
/* SHA-256 of notify's development contacts token "dev-only-notify-contacts-token" (notify's
 * guard_contacts_token; docs/security.md). */
#define GUARD_DEV_CONTACTS_TOKENS                                                                  \
    "dev-notify:ebce0a879da5ff69d4fcb511848db8bf129f67cac67f1aa9b43055ede6439dff"
/* guard's development producer token for the notification topic (config/bus/product.json). */
#define GUARD_DEV_PUBLISHER_TOKEN "dev-only-guard-producer-token"

static const struct config_def GUARD_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8103", 0, 256, 0, NULL, "HTTP listen address"},
    {"database_url", CONFIG_STRING, "postgresql://bus@127.0.0.1:55432/bus", 0, 4096, CONFIG_SECRET,
     "DATABASE_URL", "PostgreSQL connection URL"},
    {"db_pool", CONFIG_INT, "6", 1, 100, 0, NULL, "Database connections"},
    {"migrations_dir", CONFIG_STRING, "sql/guard", 0, 4096, 0, NULL, "Migrations applied at start"},
    {"auth_secret", CONFIG_STRING, AUTH_DEV_SECRET, 1, 4096, CONFIG_KEY, "AUTH_SECRET",
     "HS256 secret of player and staff tokens (the default is for development only)"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"seal_keys", CONFIG_STRING, SEAL_DEV_KEYS, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     "CODE_SEAL_KEYS",
     "Keys sealing the codes guard sends through notify, kid:secret[,kid:secret] (the first "
     "seals; notify holds the same ring; the default is for development only)"},
    {"status_tokens", CONFIG_STRING, GUARD_DEV_STATUS_TOKENS, 1, 4096, CONFIG_SECRET | CONFIG_KEY,
     NULL,
     "Service tokens of the status API, name:sha256hex[,name:sha256hex] (SHA-256 of each "
     "client's bearer token; the default holds the development token dev-status-token)"},
    {"contacts_tokens", CONFIG_STRING, GUARD_DEV_CONTACTS_TOKENS, 1, 4096,
     CONFIG_SECRET | CONFIG_KEY, NULL,
     "Service tokens of the contacts API (GET /v1/accounts/{id}/contacts, the players' confirmed "
     "contacts for notify), name:sha256hex[,name:sha256hex] (SHA-256 of each client's bearer "
     "token; the default holds notify's development token dev-only-notify-contacts-token)"},
    {"geoip_db", CONFIG_STRING, "var/geoip/geo-whois-asn-country.mmdb", 1, 4096, 0, NULL,
     "MaxMind-format database giving the status API the country of ?ip= (as ipcheck's)"},
    {"geoip_reload_check_ms", CONFIG_INT, "5000", 50, 3600000, 0, NULL,
     "How often the GeoIP database file is checked for replacement"},
    {"home_countries", CONFIG_STRING, "KR", 0, 1024, 0, NULL,
     "Comma-separated ISO alpha-2 countries that never trigger a policy"},
    {"default_policy", CONFIG_STRING, "none", 0, 32, 0, NULL,
     "Policy of accounts that never set one (none|notify|kick|block_abroad|lock)"},
    {"ignore_unknown_country", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "Logins whose country is unknown (ZZ: private or unlisted address) trigger nothing"},
    {"publisher_url", CONFIG_STRING, "http://127.0.0.1:8080", 1, 4096, 0, NULL,
     "The bus's publisher: guard's own messages (contact codes, notices of changes and staff "
     "unlocks) go to its notification topic"},
    {"publisher_token", CONFIG_STRING, GUARD_DEV_PUBLISHER_TOKEN, 1, 4096,
     CONFIG_SECRET | CONFIG_KEY, NULL,
     "guard's producer token for the notification topic (the default is the development token "
     "of config/bus/product.json)"},
    {"outbox_interval_ms", CONFIG_INT, "200", 10, 60000, 0, NULL,
     "How often queued messages are published"},
    {"contact_code_ttl_s", CONFIG_INT, "900", 30, 604800, 0, NULL,
     "How long the code confirming a new email or phone is valid"},
    {"code_ttl_s", CONFIG_INT, "900", 30, 604800, 0, NULL, "How long an unlock code is valid"},
    {"code_attempts", CONFIG_INT, "5", 1, 100, 0, NULL, "Wrong codes before the code is void"},
    {"cache_max", CONFIG_INT, "1000000", 1, 100000000, 0, NULL,
     "Accounts kept in the status cache (the cache is emptied when full)"},
    {"threads", CONFIG_INT, "4", 1, 64, 0, NULL, "HTTP worker threads"},
    {"signals.abroad", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "A login from a country that is neither a home country nor allowed by the account triggers "
     "its policy (reason abroad); off, only the other signals do (a game played worldwide)"},
    {"signals.new_country", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "A login from a country the account has not logged in from within "
     "signals.new_country_days triggers its policy (reason new_country; not for home or allowed "
     "countries, nor an account's first login)"},
    {"signals.new_country_days", CONFIG_INT, "90", 1, 3650, 0, NULL,
     "How long a country stays known to an account after its last login from there"},
    {"signals.impossible_travel", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "A login whose country is too far from the previous login's for the time between them "
     "triggers the account's policy (reason impossible_travel; country centroids; not for home "
     "countries)"},
    {"signals.impossible_travel_kmh", CONFIG_INT, "1000", 100, 100000, 0, NULL,
     "Speed between two logins' countries above which the travel is impossible (an airliner "
     "cruises at about 900 km/h)"},
    {"signals.impossible_travel_min_km", CONFIG_INT, "500", 0, 20000, 0, NULL,
     "Hops shorter than this (between country centroids) are never impossible travel: "
     "neighbouring countries, border regions and nearby VPN exits"},
    {"brute_force", CONFIG_BOOL, "true", 0, 0, 0, NULL,
     "Count failed logins (topic login.failed) per account and per address and refuse logins "
     "for a while once a count reaches its threshold (status API: reason brute_force)"},
    {"brute_force.account_failures", CONFIG_INT, "30", 0, 1000000, 0, NULL,
     "Failed logins of one account that start its wait (Keycloak's failureFactor; 0 = no "
     "per-account throttle)"},
    {"brute_force.address_failures", CONFIG_INT, "100", 0, 1000000, 0, NULL,
     "Failed logins from one address (any account) that start its wait (0 = no per-address "
     "throttle; set it above the failures a shared NAT address sees)"},
    {"brute_force.wait_increment_s", CONFIG_INT, "60", 1, 86400, 0, NULL,
     "The wait after each threshold's worth of failures: increment x (failures / threshold) "
     "(Keycloak's waitIncrementSeconds)"},
    {"brute_force.max_wait_s", CONFIG_INT, "900", 1, 604800, 0, NULL,
     "Longest wait (Keycloak's maxFailureWaitSeconds)"},
    {"brute_force.reset_s", CONFIG_INT, "43200", 1, 31536000, 0, NULL,
     "A count with no failure for this long starts again (Keycloak's maxDeltaTimeSeconds)"},
    {"http.cors_origins", CONFIG_STRING, "http://127.0.0.1:8102,http://localhost:8102", 0, 4096, 0,
     NULL,
     "Comma-separated origins whose pages may call this API from a browser (the player page at "
     "history); also where the support console may connect"},
    {"default_lang", CONFIG_STRING, "ko", 2, 2, 0, NULL,
     "Language (ko|en) of the messages to players who never chose one"},
    {"tz.ko", CONFIG_STRING, "Asia/Seoul", 1, 64, 0, NULL,
     "Time zone (IANA name) of the times in messages to Korean players who never chose one"},
    {"tz.en", CONFIG_STRING, "UTC", 1, 64, 0, NULL,
     "Time zone (IANA name) of the times in messages to English players who never chose one"},
    {"answers.page_url", CONFIG_STRING, "http://127.0.0.1:8102/", 1, 160, 0, NULL,
     "The player page as players reach it: every alert links to <this>#answer=<one-time token> "
     "(\"was it you?\"); list the page's origin in http.cors_origins"},
    {"answers.ttl_s", CONFIG_INT, "604800", 60, 7776000, 0, NULL,
     "How long an alert's \"was it you?\" link can be answered"},
    {"answers.allow_days_max", CONFIG_INT, "30", 0, 365, 0, NULL,
     "Longest time an \"it was me\" answer may allow the login's country for (0: never)"},
    RETENTION_CONFIG_DEFS,
    {"retention.decisions_days", CONFIG_INT, "30", 8, 36500, 0, NULL,
     "Days a login's decision is kept: a login redelivered later (the bus keeps topics 7 days) "
     "would be decided again"},
    {"retention.lock_events_days", CONFIG_INT, "365", 1, 36500, 0, NULL,
     "Days the lock history (locks and unlocks) is kept"},
    {"retention.audit_days", CONFIG_INT, "365", 1, 36500, 0, NULL,
     "Days the audit trail (staff actions, settings changes) is kept"},
    {"retention.outbox_days", CONFIG_INT, "7", 1, 36500, 0, NULL,
     "Days a message the publisher never took is kept before it is given up"},
    {"retention.answers_days", CONFIG_INT, "90", 1, 36500, 0, NULL,
     "Days an alert's \"was it you?\" row (and the player's answer) is kept; keep it longer than "
     "answers.ttl_s, or a link still valid answers 404 instead of 410"},
    WEBPAGE_CONFIG_DEFS("services/guard/web/support", "the support console", "/support/"),
    {"web.history_url", CONFIG_STRING, "http://127.0.0.1:8102", 0, 256, 0, NULL,
     "Base URL of history as the staff's browser reaches it (given to the console in "
     "/support/config.json; list its origin in history's http.cors_origins and in this "
     "http.cors_origins)"},
    CONFIG_DEF_END,
};

static int parse_home(struct guard *g, const char *list)
{
    char tmp[1025];
    snprintf(tmp, sizeof(tmp), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (!valid_country(t) || g->n_home >= HOME_MAX) {
            log_error("home_countries: \"%s\" is not an ISO alpha-2 code", t);
            return -1;
        }
        memcpy(g->home[g->n_home++], t, 3);
    }
    return 0;
}

/* Before the database: the checks of the configuration that app_init cannot make, the GeoIP
 * database, the metrics. */
static int guard_prepare(struct app *app, void *ctx)
{
    struct guard *g = ctx;
    char err[512];
    cache_init(g);
    g->cfg = app->cfg;
    g->auth_secret = config_str(app->cfg, "auth_secret");
    g->bus_secret = config_str(app->cfg, "bus_secret");
    if (seal_keys_parse(config_str(app->cfg, "seal_keys"), &g->seal, err, sizeof(err)) != 0) {
        log_error("seal_keys: %s", err);
        return 1;
    }
    if (action_index(config_str(app->cfg, "default_policy")) < 0) {
        log_error("default_policy must be none, notify, kick, block_abroad or lock");
        return 1;
    }
    const char *lang = config_str(app->cfg, "default_lang");
    if (strcmp(lang, "ko") != 0 && strcmp(lang, "en") != 0) {
        log_error("default_lang must be ko or en");
        return 1;
    }
    if (parse_home(g, config_str(app->cfg, "home_countries")) != 0) {
        return 1;
    }
    if (auth_clients_parse(&g->status_clients, "status_tokens",
                           config_str(app->cfg, "status_tokens"), err, sizeof(err)) != 0 ||
        auth_clients_parse(&g->contacts_clients, "contacts_tokens",
                           config_str(app->cfg, "contacts_tokens"), err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    g->geo = geo_new(config_str(app->cfg, "geoip_db"), err, sizeof(err));
    if (!g->geo) {
        log_error("geoip_db: %s", err);
        return 1;
    }
    g->m_actions = metrics_counter("guard_actions_total", "Logins that triggered a policy", NULL);
    g->m_status_hit =
        metrics_counter("guard_status_cache_hits_total", "Status answers from the cache", NULL);
    g->m_status_miss = metrics_counter("guard_status_cache_misses_total",
                                       "Status answers loaded from the database", NULL);
    g->m_outbox_sent =
        metrics_counter("guard_messages_published_total",
                        "Messages guard sent on its own, acknowledged by the bus", NULL);
    g->m_outbox_dropped = metrics_counter("guard_messages_dropped_total",
                                          "Messages the publisher refused for good (logged)", NULL);
    static const char THROTTLED_HELP[] =
        "Failed logins that started or renewed a brute-force wait, of an account or an address";
    static const char STARTS_HELP[] = "Brute-force throttling episodes started (a count reached "
                                      "its threshold), of an account or an address";
    g->m_throttled_account =
        metrics_counter("guard_throttled_failures_total", THROTTLED_HELP, "kind=\"account\"");
    g->m_throttled_address =
        metrics_counter("guard_throttled_failures_total", THROTTLED_HELP, "kind=\"address\"");
    g->m_throttle_starts_account =
        metrics_counter("guard_throttle_episodes_total", STARTS_HELP, "kind=\"account\"");
    g->m_throttle_starts_address =
        metrics_counter("guard_throttle_episodes_total", STARTS_HELP, "kind=\"address\"");
    g->http = http_client_new();
    return 0;
}

/* With the database: the routes of every part, the console's files, the server started. */
static int guard_start(struct app *app, void *ctx)
{
    struct guard *g = ctx;
    char err[512];
    const char *cors = config_str(app->cfg, "http.cors_origins");
    struct webpage *page = webpage_new("guard", "history", cors,
                                       config_str(app->cfg, "web.history_url"), err, sizeof(err));
    g->page = page;
    if (!page) {
        log_error("%s", err);
        return 1;
    }
    struct http_server_options opts = {
        .listen = config_str(app->cfg, "listen"),
        .threads = (unsigned)config_int(app->cfg, "threads"),
        .ready = db_ready,
        .ready_ctx = g->db,
        .cors_origins = cors,
    };
    int rc = throttle_init(g, err, sizeof(err));
    if (rc == DB_EQUERY) { /* a migrations_dir without 007_signals.sql (an older release's) */
        log_warn("failed-login counts not loaded (no throttle until they are): %s", err);
    } else if (rc != DB_OK) {
        log_error("failed-login counts not loaded: %s", err);
        return 1;
    }
    struct http_server *srv = http_server_new(&opts);
    g->srv = srv;
    decide_routes(srv, g);
    account_routes(srv, g);
    player_routes(srv, g);
    unlock_routes(srv, g);
    support_routes(srv, g);
    answer_routes(srv, g);
    throttle_routes(srv, g);
    contacts_routes(srv, g);
    webpage_serve(page, srv, "/support/", config_str(app->cfg, "web.dir"),
                  config_str(app->cfg, "web.common_dir"));
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        return 1;
    }
    log_info("guard listening on %s%s", opts.listen,
             g->bus_secret && *g->bus_secret ? ", signatures required" : "");
    return 0;
}

/* guard's tables that grow, trimmed by retention_run. */
static const struct retention_table GUARD_RETENTION[] = {
    {"guard.decisions", "created_at", "retention.decisions_days"},
    {"guard.lock_events", "ts", "retention.lock_events_days"},
    {"guard.audit", "ts", "retention.audit_days"},
    {"guard.outbox", "created_at", "retention.outbox_days"},
    {"guard.answers", "created_at", "retention.answers_days"},
};

/* Until stopped: the outbox relayed every outbox_interval_ms, the GeoIP database checked for
 * replacement every geoip_reload_check_ms, old rows deleted every retention.interval_s (and once
 * at start). */
static void guard_run(struct app *app, void *ctx)
{
    struct guard *g = ctx;
    char err[512];
    long check_ms = (long)config_int(app->cfg, "geoip_reload_check_ms");
    long long geo_checked_ms = app_now_ms(), trimmed_ms = app_now_ms();
    long long retention_ms = 1000LL * config_int(app->cfg, "retention.interval_s");
    long long retained_ms = app_now_ms() - retention_ms;
    while (!app_wait_stop_for(app, (long)config_int(app->cfg, "outbox_interval_ms"))) {
        outbox_flush(g);
        if (app_now_ms() - retained_ms >= retention_ms) {
            retained_ms = app_now_ms();
            retention_run(g->db, app->cfg, GUARD_RETENTION,
                          sizeof(GUARD_RETENTION) / sizeof(GUARD_RETENTION[0]));
        }
        if (app_now_ms() - trimmed_ms >= 60000) {
            trimmed_ms = app_now_ms();
            throttle_trim(g);
            signals_trim(g);
        }
        if (app_now_ms() - geo_checked_ms < check_ms) {
            continue;
        }
        geo_checked_ms = app_now_ms();
        int r = geo_reload_if_changed(g->geo, err, sizeof(err));
        if (r == 1) {
            log_info("GeoIP database reloaded");
        } else if (r < 0) {
            log_warn("GeoIP reload skipped: %s", err);
        }
    }
}

static void guard_release(struct app *app, void *ctx)
{
    (void)app;
    struct guard *g = ctx;
    http_server_free(g->srv, 2000);
    geo_free(g->geo);
    http_client_free(g->http);
    cache_release(g);
    throttle_release(g);
    seal_keys_free(g->seal);
    webpage_free(g->page);
}

int main(int argc, char **argv)
{
    struct guard g;
    memset(&g, 0, sizeof(g));
    const struct app_service svc = {
        .name = "guard",
        .env_prefix = "GUARD",
        .defs = GUARD_CONFIG,
        .ctx = &g,
        .db_schema = "guard",
        .db = &g.db,
        .prepare = guard_prepare,
        .start = guard_start,
        .run = guard_run,
        .release = guard_release,
    };
    return app_serve(argc, argv, &svc);
}
