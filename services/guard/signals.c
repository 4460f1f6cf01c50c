/* signals.c - what a login says beyond its country (see guard.h): a country new for the account
 * (not seen in signals.new_country_days) and impossible travel since the account's previous login
 * (faster than signals.impossible_travel_kmh between the two countries' centroids, hops shorter
 * than signals.impossible_travel_min_km ignored).
 *
 * Every login (home countries included) is recorded in guard.login_countries, one row per account
 * and country with the last login's time. A delivery (up to a batch of logins) costs two
 * statements: its accounts' rows are read before the first login is decided, each login is
 * applied on top of them in order (the second login of an account in a batch sees the first),
 * and what changed is written once every login of the delivery is decided (decide.c); a
 * delivery retried, or refused and sent again one event at a time, sees the rows as they were
 * the first time. Locations are country centroids (below): an address's country is all guard knows
 * (its GeoIP database is country-level), so distances are rough: neighbouring countries and big
 * countries' ends are within the minimum distance, and a VPN exit abroad looks like travel —
 * which is why the signal is a reason the player's policy acts on, not a verdict. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "guard.h"
#include "log.h"

/* Country centroids (latitude, longitude in degrees), rounded to 0.01°, from Google's public
 * "countries.csv" canonical dataset (Dataset Publishing Language,
 * https://developers.google.com/public-data/docs/canonical/countries_csv). Countries not listed
 * (and ZZ) have no location: no travel is computed to or from them. Sorted by code. */
static const struct centroid {
    char code[3];
    double lat, lon;
} CENTROIDS[] = {
    {"AD", 42.55, 1.60},    {"AE", 23.42, 53.85},   {"AF", 33.94, 67.71},   {"AG", 17.06, -61.80},
    {"AL", 41.15, 20.17},   {"AM", 40.07, 45.04},   {"AO", -11.20, 17.87},  {"AR", -38.42, -63.62},
    {"AT", 47.52, 14.55},   {"AU", -25.27, 133.78}, {"AZ", 40.14, 47.58},   {"BA", 43.92, 17.68},
    {"BB", 13.19, -59.54},  {"BD", 23.68, 90.36},   {"BE", 50.50, 4.47},    {"BF", 12.24, -1.56},
    {"BG", 42.73, 25.49},   {"BH", 25.93, 50.64},   {"BI", -3.37, 29.92},   {"BJ", 9.31, 2.32},
    {"BN", 4.54, 114.73},   {"BO", -16.29, -63.59}, {"BR", -14.24, -51.93}, {"BS", 25.03, -77.40},
    {"BT", 27.51, 90.43},   {"BW", -22.33, 24.68},  {"BY", 53.71, 27.95},   {"BZ", 17.19, -88.50},
    {"CA", 56.13, -106.35}, {"CD", -4.04, 21.76},   {"CF", 6.61, 20.94},    {"CG", -0.23, 15.83},
    {"CH", 46.82, 8.23},    {"CI", 7.54, -5.55},    {"CL", -35.68, -71.54}, {"CM", 7.37, 12.35},
    {"CN", 35.86, 104.20},  {"CO", 4.57, -74.30},   {"CR", 9.75, -83.75},   {"CU", 21.52, -77.78},
    {"CV", 16.00, -24.01},  {"CY", 35.13, 33.43},   {"CZ", 49.82, 15.47},   {"DE", 51.17, 10.45},
    {"DJ", 11.83, 42.59},   {"DK", 56.26, 9.50},    {"DO", 18.74, -70.16},  {"DZ", 28.03, 1.66},
    {"EC", -1.83, -78.18},  {"EE", 58.60, 25.01},   {"EG", 26.82, 30.80},   {"ER", 15.18, 39.78},
    {"ES", 40.46, -3.75},   {"ET", 9.15, 40.49},    {"FI", 61.92, 25.75},   {"FJ", -16.58, 179.41},
    {"FR", 46.23, 2.21},    {"GA", -0.80, 11.61},   {"GB", 55.38, -3.44},   {"GE", 42.32, 43.36},
    {"GH", 7.95, -1.02},    {"GM", 13.44, -15.31},  {"GN", 9.95, -9.70},    {"GQ", 1.65, 10.27},
    {"GR", 39.07, 21.82},   {"GT", 15.78, -90.23},  {"GU", 13.44, 144.79},  {"GY", 4.86, -58.93},
    {"HK", 22.40, 114.11},  {"HN", 15.20, -86.24},  {"HR", 45.10, 15.20},   {"HT", 18.97, -72.29},
    {"HU", 47.16, 19.50},   {"ID", -0.79, 113.92},  {"IE", 53.41, -8.24},   {"IL", 31.05, 34.85},
    {"IN", 20.59, 78.96},   {"IQ", 33.22, 43.68},   {"IR", 32.43, 53.69},   {"IS", 64.96, -19.02},
    {"IT", 41.87, 12.57},   {"JM", 18.11, -77.30},  {"JO", 30.59, 36.24},   {"JP", 36.20, 138.25},
    {"KE", -0.02, 37.91},   {"KG", 41.20, 74.77},   {"KH", 12.57, 104.99},  {"KP", 40.34, 127.51},
    {"KR", 35.91, 127.77},  {"KW", 29.31, 47.48},   {"KZ", 48.02, 66.92},   {"LA", 19.86, 102.50},
    {"LB", 33.85, 35.86},   {"LK", 7.87, 80.77},    {"LR", 6.43, -9.43},    {"LS", -29.61, 28.23},
    {"LT", 55.17, 23.88},   {"LU", 49.82, 6.13},    {"LV", 56.88, 24.60},   {"LY", 26.34, 17.23},
    {"MA", 31.79, -7.09},   {"MD", 47.41, 28.37},   {"ME", 42.71, 19.37},   {"MG", -18.77, 46.87},
    {"MK", 41.61, 21.75},   {"ML", 17.57, -4.00},   {"MM", 21.91, 95.96},   {"MN", 46.86, 103.85},
    {"MO", 22.20, 113.54},  {"MR", 21.01, -10.94},  {"MT", 35.94, 14.38},   {"MU", -20.35, 57.55},
    {"MV", 3.20, 73.22},    {"MW", -13.25, 34.30},  {"MX", 23.63, -102.55}, {"MY", 4.21, 101.98},
    {"MZ", -18.67, 35.53},  {"NA", -22.96, 18.49},  {"NE", 17.61, 8.08},    {"NG", 9.08, 8.68},
    {"NI", 12.87, -85.21},  {"NL", 52.13, 5.29},    {"NO", 60.47, 8.47},    {"NP", 28.39, 84.12},
    {"NZ", -40.90, 174.89}, {"OM", 21.51, 55.92},   {"PA", 8.54, -80.78},   {"PE", -9.19, -75.02},
    {"PG", -6.31, 143.96},  {"PH", 12.88, 121.77},  {"PK", 30.38, 69.35},   {"PL", 51.92, 19.15},
    {"PR", 18.22, -66.59},  {"PS", 31.95, 35.23},   {"PT", 39.40, -8.22},   {"PY", -23.44, -58.44},
    {"QA", 25.35, 51.18},   {"RO", 45.94, 24.97},   {"RS", 44.02, 21.01},   {"RU", 61.52, 105.32},
    {"RW", -1.94, 29.87},   {"SA", 23.89, 45.08},   {"SD", 12.86, 30.22},   {"SE", 60.13, 18.64},
    {"SG", 1.35, 103.82},   {"SI", 46.15, 15.00},   {"SK", 48.67, 19.70},   {"SL", 8.46, -11.78},
    {"SN", 14.50, -14.45},  {"SO", 5.15, 46.20},    {"SR", 3.92, -56.03},   {"SV", 13.79, -88.90},
    {"SY", 34.80, 39.00},   {"TD", 15.45, 18.73},   {"TG", 8.62, 0.82},     {"TH", 15.87, 100.99},
    {"TJ", 38.86, 71.28},   {"TM", 38.97, 59.56},   {"TN", 33.89, 9.54},    {"TR", 38.96, 35.24},
    {"TT", 10.69, -61.22},  {"TW", 23.70, 120.96},  {"TZ", -6.37, 34.89},   {"UA", 48.38, 31.17},
    {"UG", 1.37, 32.29},    {"US", 37.09, -95.71},  {"UY", -32.52, -55.77}, {"UZ", 41.38, 64.59},
    {"VE", 6.42, -66.59},   {"VN", 14.06, 108.28},  {"XK", 42.60, 20.90},   {"YE", 15.55, 48.52},
    {"ZA", -30.56, 22.94},  {"ZM", -13.13, 27.85},  {"ZW", -19.02, 29.15}};
#define N_CENTROIDS (sizeof(CENTROIDS) / sizeof(CENTROIDS[0]))

static int centroid_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct centroid *)elem)->code);
}

static const struct centroid *centroid_of(const char *country)
{
    return bsearch(country, CENTROIDS, N_CENTROIDS, sizeof(CENTROIDS[0]), centroid_cmp);
}

double country_distance_km(const char *a, const char *b)
{
    const struct centroid *ca = centroid_of(a), *cb = centroid_of(b);
    if (!ca || !cb) {
        return -1;
    }
    const double r = 6371.0, rad = M_PI / 180.0; /* haversine, mean Earth radius */
    double dlat = (cb->lat - ca->lat) * rad, dlon = (cb->lon - ca->lon) * rad;
    double h = sin(dlat / 2) * sin(dlat / 2) +
               cos(ca->lat * rad) * cos(cb->lat * rad) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * r * asin(sqrt(h < 1 ? h : 1));
}

double signals_time_of(const char *ts)
{
    /* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), every field in range */
    int y, mo, d, h, mi, sec, n = 0;
    if (strlen(ts) > 40 ||
        sscanf(ts, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60) {
        return -1;
    }
    const char *p = ts + n;
    double frac = 0;
    if (*p == '.') {
        size_t digits = strspn(p + 1, "0123456789");
        if (digits == 0) {
            return -1;
        }
        frac = atof(p); /* ".123" */
        p += 1 + digits;
    }
    long offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':' &&
               strspn(p + 1, "0123456789") == 2 && strspn(p + 4, "0123456789") == 2) {
        int oh = (p[1] - '0') * 10 + (p[2] - '0'), om = (p[4] - '0') * 10 + (p[5] - '0');
        if (oh > 23 || om > 59) {
            return -1;
        }
        offset_s = (*p == '-' ? -1 : 1) * (oh * 3600L + om * 60L);
        p += 6;
    } else {
        return -1;
    }
    if (*p) {
        return -1;
    }
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) { /* 31 April and the like roll over: refused */
        return -1;
    }
    return (double)(t - offset_s) + frac;
}

/* How stale the time of an account's latest country may be before a login from there again is
 * written: travel speeds are computed with it, so it is small beside an hour's flight. */
#define SIGNALS_REFRESH_S 300.0

/* One (account, country) as signals see it: the last login's time. */
struct signals_seen {
    const char *account;
    char country[3];
    double at;
    bool is_dirty; /* set by a login of this delivery: to record */
    unsigned next; /* the account's next entry (index + 1), 0 = none */
};

static unsigned account_hash(const char *s)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/* The account's first entry (index + 1), 0 = none. */
static unsigned *account_head(struct signals_batch *sb, const char *account)
{
    return &sb->heads[account_hash(account) & (sb->n_heads - 1)];
}

static struct signals_seen *seen_add(struct signals_batch *sb, const char *account,
                                     const char *country, double at)
{
    if (sb->n == sb->cap) {
        sb->cap = sb->cap ? sb->cap * 2 : 64;
        sb->seen = xrealloc(sb->seen, sb->cap * sizeof(*sb->seen));
    }
    struct signals_seen *e = &sb->seen[sb->n++];
    *e = (struct signals_seen){.account = account, .at = at};
    snprintf(e->country, sizeof(e->country), "%s", country);
    unsigned *head = account_head(sb, account);
    e->next = *head;
    *head = (unsigned)sb->n;
    return e;
}

int signals_begin(struct guard *g, const char *const *accounts, size_t n, struct signals_batch *sb,
                  char *err, size_t err_len)
{
    memset(sb, 0, sizeof(*sb));
    sb->is_on = config_bool(g->cfg, "signals.new_country") ||
                config_bool(g->cfg, "signals.impossible_travel");
    if (!sb->is_on || n == 0) {
        return DB_OK;
    }
    sb->n_heads = 64;
    while (sb->n_heads < 2 * n) {
        sb->n_heads *= 2;
    }
    sb->heads = xcalloc(sb->n_heads, sizeof(*sb->heads));
    struct buf list;
    buf_init(&list, 0);
    db_array_literal(&list, accounts, n);
    const char *p[] = {list.data};
    /* One index probe per account, whatever the table's statistics say: with none yet (a new
     * table growing fast) "account_id = ANY($1)" of 50 accounts is planned as a scan of the
     * whole table. The LATERAL subquery (OFFSET 0 keeps it from being flattened into a join the
     * planner could hash) is looked up by each account in turn. */
    int rc = db_exec(g->db,
                     "SELECT lc.account_id, lc.country, "
                     "extract(epoch FROM lc.last_at)::float8::text AS at "
                     "FROM (SELECT DISTINCT a FROM unnest($1::text[]) AS u(a)) k "
                     "CROSS JOIN LATERAL (SELECT account_id, country, last_at "
                     "FROM guard.login_countries WHERE account_id = k.a OFFSET 0) lc",
                     p, 1, &sb->rows, NULL, err, err_len);
    buf_release(&list);
    if (rc != DB_OK) {
        signals_batch_release(sb);
        return rc;
    }
    for (size_t i = 0; i < json_array_size(sb->rows); i++) {
        const char *account = row_str(sb->rows, i, "account_id"),
                   *country = row_str(sb->rows, i, "country"), *at = row_str(sb->rows, i, "at");
        if (account && country && at) {
            seen_add(sb, account, country, atof(at));
        }
    }
    return DB_OK;
}

unsigned signals_of(struct guard *g, struct signals_batch *sb, const char *account,
                    const char *country, const char *ts)
{
    if (!sb->is_on || strcmp(country, "ZZ") == 0) {
        return 0;
    }
    double at = signals_time_of(ts);
    if (at < 0) { /* the login's own time when it reads as one, else now */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    }
    /* the account's previous login (its latest country) and this country's last login */
    struct signals_seen *prev = NULL, *cur = NULL;
    for (unsigned i = *account_head(sb, account); i; i = sb->seen[i - 1].next) {
        struct signals_seen *e = &sb->seen[i - 1];
        if (strcmp(e->account, account) != 0) {
            continue; /* another account in the same hash bucket */
        }
        if (!prev || e->at > prev->at) {
            prev = e;
        }
        if (strcmp(e->country, country) == 0) {
            cur = e;
        }
    }
    unsigned reasons = 0;
    /* new: the account has logged in before (a first login has nothing to compare with), but not
     * from here within the window */
    if (config_bool(g->cfg, "signals.new_country") && prev &&
        (!cur || at - cur->at > (double)config_int(g->cfg, "signals.new_country_days") * 86400.0)) {
        reasons |= REASON_NEW_COUNTRY;
    }
    if (config_bool(g->cfg, "signals.impossible_travel") && prev &&
        strcmp(prev->country, country) != 0) {
        double km = country_distance_km(prev->country, country);
        double hours = fabs(at - prev->at) / 3600.0;
        if (km >= (double)config_int(g->cfg, "signals.impossible_travel_min_km") &&
            km > (double)config_int(g->cfg, "signals.impossible_travel_kmh") * hours) {
            reasons |= REASON_IMPOSSIBLE_TRAVEL;
        }
    }
    /* applied: the next login of this delivery sees this one (cur may move: seen_add grows). A
     * login older than the row's changes nothing; so does one from the account's latest country
     * within SIGNALS_REFRESH_S of its time (most logins: a player at home again), which would
     * only make a later trip look that much slower. */
    if (!cur) {
        seen_add(sb, account, country, at)->is_dirty = true;
    } else if (at > cur->at && (cur != prev || at - cur->at >= SIGNALS_REFRESH_S)) {
        cur->at = at;
        cur->is_dirty = true;
    }
    return reasons;
}

int signals_commit(struct guard *g, struct signals_batch *sb, char *err, size_t err_len)
{
    size_t n = 0;
    for (size_t i = 0; i < sb->n; i++) {
        n += sb->seen[i].is_dirty;
    }
    if (n == 0) {
        return DB_OK;
    }
    /* three arrays of n (one statement whatever the batch's size: planned alike every time) */
    const char **accounts = xcalloc(n, sizeof(*accounts)),
               **countries = xcalloc(n, sizeof(*countries)), **ats = xcalloc(n, sizeof(*ats));
    char(*at)[32] = xcalloc(n, sizeof(*at));
    size_t k = 0;
    for (size_t i = 0; i < sb->n; i++) {
        const struct signals_seen *e = &sb->seen[i];
        if (e->is_dirty) {
            snprintf(at[k], sizeof(at[k]), "%.6f", e->at);
            accounts[k] = e->account;
            countries[k] = e->country;
            ats[k] = at[k];
            k++;
        }
    }
    struct buf la, lc, lt;
    buf_init(&la, 0);
    buf_init(&lc, 0);
    buf_init(&lt, 0);
    db_array_literal(&la, accounts, n);
    db_array_literal(&lc, countries, n);
    db_array_literal(&lt, ats, n);
    const char *p[] = {la.data, lc.data, lt.data};
    int rc = db_exec(g->db,
                     "INSERT INTO guard.login_countries AS c (account_id, country, last_at) "
                     "SELECT acc, ctry, to_timestamp(t) FROM unnest($1::text[], $2::text[], "
                     "$3::float8[]) AS u(acc, ctry, t) "
                     "ON CONFLICT (account_id, country) "
                     "DO UPDATE SET last_at = greatest(c.last_at, excluded.last_at)",
                     p, 3, NULL, NULL, err, err_len);
    buf_release(&la);
    buf_release(&lc);
    buf_release(&lt);
    free(at);
    free(ats);
    free(countries);
    free(accounts);
    return rc;
}

void signals_batch_release(struct signals_batch *sb)
{
    json_decref(sb->rows);
    free(sb->seen);
    free(sb->heads);
    memset(sb, 0, sizeof(*sb));
}

void signals_trim(struct guard *g)
{
    char err[512], days[24];
    snprintf(days, sizeof(days), "%lld", config_int(g->cfg, "signals.new_country_days"));
    const char *p[] = {days};
    if (db_exec(g->db,
                "DELETE FROM guard.login_countries "
                "WHERE last_at < now() - make_interval(days => $1::int)",
                p, 1, NULL, NULL, err, sizeof(err)) != DB_OK) {
        log_warn("login countries not trimmed: %s", err);
    }
}

json_t *reasons_json(unsigned reasons)
{
    json_t *a = json_array();
    if (reasons & REASON_ABROAD) {
        json_array_append_new(a, json_string("abroad"));
    }
    if (reasons & REASON_NEW_COUNTRY) {
        json_array_append_new(a, json_string("new_country"));
    }
    if (reasons & REASON_IMPOSSIBLE_TRAVEL) {
        json_array_append_new(a, json_string("impossible_travel"));
    }
    return a;
}
