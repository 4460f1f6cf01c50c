/* ipcheck - adds the country to login events (streaming route `ipcheck`: login → login.checked).
 *
 * POST /v1/deliveries/login with a login event answers 200 with the same event plus "login_id"
 * (the delivery's ce-id) and "country" (ISO 3166-1 alpha-2, "ZZ" when private, reserved or
 * unknown); the dispatcher publishes that body to login.checked. An invalid IP is a 422, which
 * the dispatcher dead-letters. A batched delivery (delivery.h) answers the array of enriched
 * events; one invalid IP in it refuses the batch, whose events the bus then redelivers one by
 * one. The answer is a pure function of the delivery, so a redelivered event (same ce-id) gets
 * the same answer: deduplication is free here.
 *
 * The GeoIP database is re-checked every reload_check_ms on the main thread and swapped in
 * without dropping a request (see geo.h). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "delivery.h"
#include "geo.h"
#include "http/http_server.h"
#include "log.h"
#include "metrics.h"

static const struct config_def IPCHECK_CONFIG[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8101", 0, 256, 0, NULL, "HTTP listen address"},
    {"geoip_db", CONFIG_STRING, "var/geoip/geo-whois-asn-country.mmdb", 0, 4096, 0, NULL,
     "MaxMind-format database (npm geo-whois-asn-country or GeoLite2-Country layout)"},
    {"reload_check_ms", CONFIG_INT, "1000", 50, 3600000, 0, NULL,
     "How often the database file is checked for replacement"},
    DELIVERY_SECRET_CONFIG_DEF,
    {"threads", CONFIG_INT, "4", 1, 64, 0, NULL, "HTTP worker threads"},
    CONFIG_DEF_END,
};

struct ipcheck {
    struct geo *geo;
    const char *bus_secret; /* NULL or "" = not checked */
    struct metric *m_ok;
    struct metric *m_invalid;
    struct metric *m_unknown;
    struct metric *m_reloads; /* main thread's */
    struct http_server *srv;
};

/* Decides one login: 200 with the event enriched with "login_id" and "country" as its output,
 * or 422 for an invalid IP or a login without an id. The event is the batch's: it is enriched in
 * place and the output is a new reference to it. */
static void ipcheck_decide(struct ipcheck *ic, struct delivery_item *it)
{
    json_t *ev = it->event;
    const char *ip = json_string_value(json_object_get(ev, "ip"));
    char country[3];
    if (!ip || geo_country(ic->geo, ip, country) != 0) {
        metric_inc(ic->m_invalid);
        delivery_item_fail(it, 422, "invalid_ip", "\"ip\" is not an IPv4 or IPv6 address");
        return;
    }
    if (it->id && *it->id) {
        json_object_set_new(ev, "login_id", json_string(it->id));
    } else if (!json_is_string(json_object_get(ev, "login_id"))) {
        metric_inc(ic->m_invalid);
        delivery_item_fail(it, 422, "missing_id", "no ce-id header and no \"login_id\"");
        return;
    }
    json_object_set_new(ev, "country", json_string(country));
    if (strcmp(country, GEO_UNKNOWN) == 0) {
        metric_inc(ic->m_unknown);
    }
    metric_inc(ic->m_ok);
    it->status = 200;
    it->output = json_incref(ev);
}

/* One login, or a batch of them (delivery.h): every item is decided, none needs a retry. */
static void handle_login(struct http_exchange *ex, void *arg)
{
    struct ipcheck *ic = arg;
    const struct delivery_rules rules = {.secret = ic->bus_secret};
    struct delivery_batch b;
    int refused = delivery_accept_any(ex, &rules, &b);
    if (refused != 0) {
        if (refused != 401) {
            metric_inc(ic->m_invalid);
        }
        return;
    }
    for (size_t i = 0; i < b.n; i++) {
        ipcheck_decide(ic, &b.items[i]);
    }
    delivery_answer(ex, &b);
}

/* The GeoIP database, the metrics, the server started. */
static int ipcheck_start(struct app *app, void *ctx)
{
    struct ipcheck *ic = ctx;
    char err[512];
    ic->geo = geo_new(config_str(app->cfg, "geoip_db"), err, sizeof(err));
    if (!ic->geo) {
        log_error("%s (make deps fetches it)", err);
        return 1;
    }
    ic->bus_secret = config_str(app->cfg, "bus_secret");
    ic->m_ok = metrics_counter("ipcheck_lookups_total", "Logins enriched with a country", NULL);
    ic->m_invalid =
        metrics_counter("ipcheck_invalid_total", "Deliveries refused with 422 (bad IP)", NULL);
    ic->m_unknown = metrics_counter("ipcheck_unknown_country_total",
                                    "Lookups answered ZZ (private, reserved, unknown)", NULL);
    ic->m_reloads = metrics_counter("ipcheck_db_reloads_total", "GeoIP database reloads", NULL);

    struct http_server_options opts = {
        .listen = config_str(app->cfg, "listen"),
        .threads = (unsigned)config_int(app->cfg, "threads"),
        .max_body_bytes = 64 * 1024,
    };
    struct http_server *srv = http_server_new(&opts);
    ic->srv = srv;
    http_server_route(srv, "POST", "/v1/deliveries/login", handle_login, ic,
                      DELIVERY_MAX_BODY_BYTES);
    if (http_server_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot listen: %s", err);
        return 1;
    }
    log_info("ipcheck listening on %s, database %s%s", opts.listen,
             config_str(app->cfg, "geoip_db"),
             ic->bus_secret && *ic->bus_secret ? ", signatures required" : "");
    return 0;
}

/* Until stopped: the GeoIP database checked for replacement every reload_check_ms. */
static void ipcheck_run(struct app *app, void *ctx)
{
    struct ipcheck *ic = ctx;
    char err[512];
    long check_ms = (long)config_int(app->cfg, "reload_check_ms");
    while (!app_wait_stop_for(app, check_ms)) {
        int r = geo_reload_if_changed(ic->geo, err, sizeof(err));
        if (r == 1) {
            metric_inc(ic->m_reloads);
            log_info("GeoIP database reloaded");
        } else if (r < 0) {
            log_warn("GeoIP reload skipped: %s", err);
        }
    }
}

static void ipcheck_release(struct app *app, void *ctx)
{
    (void)app;
    struct ipcheck *ic = ctx;
    http_server_free(ic->srv, 2000);
    geo_free(ic->geo);
}

int main(int argc, char **argv)
{
    struct ipcheck ic = {0};
    const struct app_service svc = {
        .name = "ipcheck",
        .env_prefix = "IPCHECK",
        .defs = IPCHECK_CONFIG,
        .ctx = &ic,
        .start = ipcheck_start,
        .run = ipcheck_run,
        .release = ipcheck_release,
    };
    return app_serve(argc, argv, &svc);
}
