/* api.c - GET /v1/accounts/{id}/logins?limit=N&cursor=C (see docs/api/history.yaml).
 *
 * A player token reads its own account only (403 otherwise); a staff token reads any. Keyset
 * pagination, newest first, on (ts, id): the cursor is base64url("<ts in µs since epoch>,<id>") of
 * the last row returned, so a page costs one index range scan however deep it is, and rows
 * inserted meanwhile never shift the pages. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "auth.h"
#include "history.h"
#include "log.h"

#define API_LIMIT_DEFAULT 20
#define API_LIMIT_MAX 100
#define API_ID_MAX 128

struct api {
    struct db *db;
    const char *auth_secret;
};

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(const unsigned char *in, size_t n, char *out, size_t out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < out_len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        v |= i + 1 < n ? (unsigned)in[i + 1] << 8 : 0;
        v |= i + 2 < n ? in[i + 2] : 0;
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = B64[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = B64[v & 63];
        }
    }
    out[o] = '\0';
}

/* Returns the decoded length, or -1 on a character outside the alphabet or overflow. */
static long b64url_decode(const char *in, unsigned char *out, size_t out_len)
{
    unsigned v = 0;
    int bits = 0;
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        const char *q = strchr(B64, *p);
        if (!q || *p == '\0') {
            return -1;
        }
        v = (v << 6) | (unsigned)(q - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_len) {
                return -1;
            }
            out[o++] = (unsigned char)((v >> bits) & 0xff);
        }
    }
    return (long)o;
}

/* The range of cursor timestamps: years 1 to 9999, in µs since the Unix epoch. */
#define API_CURSOR_MIN_US (-62135596800000000LL)
#define API_CURSOR_MAX_US 253402300799999999LL

/* Whether s[0..len) is UTF-8 (PostgreSQL refuses text that is not: a 500, not a 400). */
static bool is_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c == 0xE0) {
            need = 2;
            lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            need = 2;
        } else if (c == 0xED) {
            need = 2;
            hi = 0x9F;
        } else if (c == 0xF0) {
            need = 3;
            lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            need = 3;
        } else if (c == 0xF4) {
            need = 3;
            hi = 0x8F;
        } else {
            return false;
        }
        if (i + need >= len) {
            return false;
        }
        for (size_t k = 1; k <= need; k++) {
            if (p[i + k] < lo || p[i + k] > hi) {
                return false;
            }
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return true;
}

/* Parses a cursor into its µs timestamp and id (both NUL-terminated text). */
static int cursor_parse(const char *c, char us[24], char id[API_ID_MAX + 1])
{
    unsigned char raw[24 + API_ID_MAX + 2];
    if (strlen(c) > 4 * sizeof(raw) / 3) {
        return -1;
    }
    long n = b64url_decode(c, raw, sizeof(raw) - 1);
    if (n <= 0) {
        return -1;
    }
    raw[n] = '\0';
    char *comma = memchr(raw, ',', (size_t)n);
    if (!comma || comma == (char *)raw || comma - (char *)raw > 20) {
        return -1;
    }
    size_t ul = (size_t)(comma - (char *)raw);
    for (size_t i = 0; i < ul; i++) {
        if ((raw[i] < '0' || raw[i] > '9') && !(i == 0 && raw[i] == '-')) {
            return -1;
        }
    }
    memcpy(us, raw, ul);
    us[ul] = '\0';
    /* The timestamp must be one PostgreSQL can hold: a number past int64 or past year 9999
     * would make the query fail (a 500) instead of this 400. */
    char *end = NULL;
    errno = 0;
    long long v = strtoll(us, &end, 10);
    if (errno != 0 || end == us || *end != '\0' || v < API_CURSOR_MIN_US || v > API_CURSOR_MAX_US) {
        return -1;
    }
    const char *rest = comma + 1;
    size_t rl = strlen(rest);
    if (rl == 0 || rl > API_ID_MAX || rl != (size_t)(n - (long)ul - 1) || !is_utf8(rest, rl)) {
        return -1;
    }
    memcpy(id, rest, rl + 1);
    return 0;
}

static int parse_limit(const char *s, long *out)
{
    if (!s) {
        *out = API_LIMIT_DEFAULT;
        return 0;
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > API_LIMIT_MAX) {
        return -1;
    }
    *out = v;
    return 0;
}

/* The {id} of the route when the bearer may read it (a player its own account, staff any);
 * NULL after answering 401/400/403. */
static const char *readable_account(struct api *api, struct http_exchange *ex)
{
    const char *account = http_param(ex, 0);
    struct auth_identity who;
    char err[256];

    const char *token = http_bearer(ex);
    if (!token) {
        http_add_header(ex, "WWW-Authenticate", "Bearer");
        http_respond_error(ex, 401, "unauthorized", NULL, "a Bearer token is required");
        return NULL;
    }
    if (auth_verify(api->auth_secret, token, &who, err, sizeof(err)) != 0) {
        http_add_header(ex, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(ex, 401, "unauthorized", NULL, "invalid token: %s", err);
        return NULL;
    }
    if (!account || !*account || strlen(account) > API_ID_MAX) {
        http_respond_error(ex, 400, "bad_request", NULL, "invalid account id");
        return NULL;
    }
    if (who.role != AUTH_STAFF && !(who.role == AUTH_PLAYER && strcmp(who.subject, account) == 0)) {
        http_respond_error(ex, 403, "forbidden", NULL, "this token may not read that account");
        return NULL;
    }
    return account;
}

static void db_error_answer(struct http_exchange *ex, int rc, const char *err)
{
    if (rc == DB_EUNAVAILABLE) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, "db_unavailable", NULL, "the database is unavailable");
        return;
    }
    log_error("history query failed: %s", err);
    http_respond_error(ex, 500, "db_error", NULL, "the history could not be read");
}

static void handle_logins(struct http_exchange *ex, void *arg)
{
    struct api *api = arg;
    char err[256];
    const char *account = readable_account(api, ex);
    if (!account) {
        return;
    }
    long limit;
    if (parse_limit(http_query(ex, "limit"), &limit) != 0) {
        http_respond_error(ex, 400, "bad_request", NULL, "limit must be an integer 1..%d",
                           API_LIMIT_MAX);
        return;
    }
    char us[24] = "", cid[API_ID_MAX + 1] = "";
    const char *cursor = http_query(ex, "cursor");
    if (cursor && *cursor && cursor_parse(cursor, us, cid) != 0) {
        http_respond_error(ex, 400, "bad_request", NULL, "invalid cursor");
        return;
    }
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit + 1);
    const char *params[] = {account, lim, *us ? us : NULL, *us ? cid : NULL};
    json_t *rows = NULL;
    int rc = db_exec(
        api->db,
        "SELECT l.id, to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts, "
        "l.ip, l.country, l.server, a.action, "
        /* actions stored before guard sent reasons had one signal: not a home country */
        "COALESCE(array_to_json(a.reasons), CASE WHEN a.action IS NOT NULL "
        "THEN '[\"abroad\"]'::json END)::text AS reasons, "
        /* a lock's login says when the lock was lifted (the first unlock after it) */
        "CASE WHEN a.action = 'lock' THEN (SELECT to_char(min(e.ts) AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM history.events e WHERE e.account_id = "
        "l.account_id AND e.kind = 'unlocked' AND e.ts >= l.ts) END AS unlocked_at, "
        "(extract(epoch FROM l.ts) * 1000000)::bigint AS us "
        "FROM history.logins l LEFT JOIN history.actions a "
        "ON a.account_id = l.account_id AND a.login_id = l.id "
        "WHERE l.account_id = $1 AND ($3::bigint IS NULL OR (l.ts, l.id) < "
        "(timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::text)) "
        "ORDER BY l.ts DESC, l.id DESC LIMIT $2::int",
        params, 4, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        db_error_answer(ex, rc, err);
        return;
    }
    json_t *logins = json_array();
    json_t *next = json_null();
    size_t n = json_array_size(rows);
    for (size_t i = 0; i < n && (long)i < limit; i++) {
        json_t *r = json_array_get(rows, i);
        json_t *o = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(r, "id"), "ts",
                              json_object_get(r, "ts"), "ip", json_object_get(r, "ip"), "country",
                              json_object_get(r, "country"), "server", json_object_get(r, "server"),
                              "action", json_object_get(r, "action"));
        const char *reasons = json_string_value(json_object_get(r, "reasons"));
        json_error_t jerr;
        json_t *rj = reasons ? json_loads(reasons, 0, &jerr) : NULL;
        json_object_set_new(o, "reasons", rj ? rj : json_array());
        json_object_set(o, "unlocked_at", json_object_get(r, "unlocked_at"));
        json_array_append_new(logins, o);
        if ((long)i == limit - 1 && (long)n > limit) {
            char raw[24 + API_ID_MAX + 2];
            char enc[2 * sizeof(raw)];
            int k = snprintf(raw, sizeof(raw), "%s,%s", json_string_value(json_object_get(r, "us")),
                             json_string_value(json_object_get(r, "id")));
            if (k > 0 && (size_t)k < sizeof(raw)) {
                b64url_encode((const unsigned char *)raw, (size_t)k, enc, sizeof(enc));
                json_decref(next);
                next = json_string(enc);
            }
        }
    }
    json_decref(rows);
    http_respond_json(ex, 200, json_pack("{s:o,s:o}", "logins", logins, "next_cursor", next));
}

/* GET /v1/accounts/{id}/events?limit=N: the account's locks, unlocks and settings changes,
 * newest first. */
static void handle_events(struct http_exchange *ex, void *arg)
{
    struct api *api = arg;
    char err[256];
    const char *account = readable_account(api, ex);
    if (!account) {
        return;
    }
    long limit;
    if (parse_limit(http_query(ex, "limit"), &limit) != 0) {
        http_respond_error(ex, 400, "bad_request", NULL, "limit must be an integer 1..%d",
                           API_LIMIT_MAX);
        return;
    }
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *params[] = {account, lim};
    json_t *rows = NULL;
    int rc = db_exec(api->db,
                     "SELECT id, to_char(ts AT TIME ZONE 'UTC', "
                     "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts, kind, actor AS by, change, "
                     "login_id FROM history.events WHERE account_id = $1 "
                     "ORDER BY ts DESC, id DESC LIMIT $2::int",
                     params, 2, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        json_decref(rows);
        db_error_answer(ex, rc, err);
        return;
    }
    http_respond_json(ex, 200, json_pack("{s:o}", "events", rows));
}

void api_register(struct http_server *s, struct db *d, const struct api_options *o)
{
    static struct api api; /* one per process, lives as long as the server */
    api.db = d;
    api.auth_secret = o->auth_secret;
    http_server_route(s, "GET", "/v1/accounts/{}/logins", handle_logins, &api, 0);
    http_server_route(s, "GET", "/v1/accounts/{}/events", handle_events, &api, 0);
}
