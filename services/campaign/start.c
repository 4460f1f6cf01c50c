/* start.c - a campaign's channels and start (see campaign.h).
 *
 * Why a start: the route of a new campaign is a new consumer group, which reads the login topic
 * from its beginning, i.e. up to retention_hours (7 days) of logins that happened before anyone
 * decided on the campaign. Those logins must not send its message (the players did nothing to
 * deserve a week-old prompt, and a burst of them would flood notify). The start is recorded at
 * the campaign's first run, so a restart or a replay (busctl dlq replay) keeps the same line. */
#include "campaign.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const CHANNELS[] = {"email", "sms", "ingame"};

int campaign_channels_parse(const char *list, json_t **out, char *err, size_t err_len)
{
    json_t *arr = json_array();
    const char *p = list ? list : "";
    while (*p) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n == 0) {
            break;
        }
        const char *known = NULL;
        for (size_t i = 0; i < sizeof(CHANNELS) / sizeof(CHANNELS[0]); i++) {
            if (strlen(CHANNELS[i]) == n && strncmp(p, CHANNELS[i], n) == 0) {
                known = CHANNELS[i];
            }
        }
        if (!known) {
            snprintf(err, err_len, "channels: \"%.*s\" is not one of email, sms, ingame",
                     (int)(n > 32 ? 32 : n), p);
            json_decref(arr);
            return -1;
        }
        size_t i;
        json_t *have;
        json_array_foreach(arr, i, have)
        {
            if (strcmp(json_string_value(have), known) == 0) {
                snprintf(err, err_len, "channels: %s is named twice", known);
                json_decref(arr);
                return -1;
            }
        }
        json_array_append_new(arr, json_string(known));
        p += n;
    }
    if (json_array_size(arr) == 0) {
        snprintf(err, err_len, "channels: name at least one of email, sms, ingame");
        json_decref(arr);
        return -1;
    }
    *out = arr;
    return 0;
}

/* An RFC 3339 time ("2026-12-07T13:00:00Z", "...T13:00:00.123+09:00") in Unix milliseconds. */
static int rfc3339_ms(const char *s, long long *out)
{
    int y, mo, d, h, mi, sec, used = 0;
    if (!s ||
        sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
        used != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return -1;
    }
    const char *p = s + used;
    long long ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
            }
            digits++;
            p++;
        }
        if (digits == 0) {
            return -1;
        }
        for (; digits < 3; digits++) {
            ms *= 10;
        }
    }
    long long offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59) {
            return -1;
        }
        offset_s = (oh * 3600LL + om * 60LL) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0') {
        return -1;
    }
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *out = ((long long)t - offset_s) * 1000LL + ms;
    return 0;
}

bool campaign_start_valid(const char *spec)
{
    long long ms;
    return spec && (strcmp(spec, "now") == 0 || strcmp(spec, "backfill") == 0 ||
                    rfc3339_ms(spec, &ms) == 0);
}

int campaign_start_resolve(struct db *d, const char *name, const char *spec, long long *start_ms,
                           char *err, size_t err_len)
{
    /* "now" inserts only when the campaign has no start yet; the others set it. -infinity is
     * "every login". */
    const char *sql =
        strcmp(spec, "now") == 0
            ? "WITH ins AS (INSERT INTO campaign.campaigns (campaign, starts_at) VALUES ($1, "
              "now()) "
              "ON CONFLICT (campaign) DO NOTHING RETURNING starts_at) "
              "SELECT CASE WHEN isfinite(s) THEN (extract(epoch FROM s) * 1000)::bigint END AS ms "
              "FROM (SELECT starts_at AS s FROM ins UNION ALL SELECT starts_at FROM "
              "campaign.campaigns WHERE campaign = $1) x LIMIT 1"
            : "INSERT INTO campaign.campaigns (campaign, starts_at) VALUES ($1, $2::timestamptz) "
              "ON CONFLICT (campaign) DO UPDATE SET starts_at = EXCLUDED.starts_at "
              "RETURNING CASE WHEN isfinite(starts_at) THEN "
              "(extract(epoch FROM starts_at) * 1000)::bigint END AS ms";
    const char *at = strcmp(spec, "backfill") == 0 ? "-infinity" : spec;
    const char *p[] = {name, at};
    json_t *rows = NULL;
    int rc = db_exec(d, sql, p, strcmp(spec, "now") == 0 ? 1 : 2, &rows, NULL, err, err_len);
    if (rc != DB_OK) {
        return rc;
    }
    const char *ms = json_string_value(json_object_get(json_array_get(rows, 0), "ms"));
    *start_ms = ms ? atoll(ms) : CAMPAIGN_START_ALL;
    json_decref(rows);
    return DB_OK;
}

bool campaign_login_counts(const char *ts, long long start_ms)
{
    long long at;
    if (start_ms == CAMPAIGN_START_ALL || rfc3339_ms(ts, &at) != 0) {
        return true;
    }
    return at >= start_ms;
}
