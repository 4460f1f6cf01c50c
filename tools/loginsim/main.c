/* loginsim - simulated login servers: POSTs login events to the publisher at a steady rate.
 *
 * Accounts user-00001 .. user-<accounts>; each login picks an account at random, a home country
 * (home, default KR) or, with probability abroad_share, another country of the built-in table,
 * and an IPv4 address inside one of that country's sample ranges (ranges that the GeoIP database
 * maps to the country). Runs until count logins were accepted or duration_s passed (0 = until
 * SIGTERM). A 503 or 429 is retried after its Retry-After (default 1 s): the simulator slows
 * down instead of dropping logins. Every login carries its own ce-id, the same on every retry,
 * so a retry after a lost answer is one event for the consumers. Prints a summary line at the
 * end (with the achieved rate); ids_file records each accepted login's id and the time of its
 * 2xx (for end-to-end latency measurements and exactly-once checks).
 *
 * Before publishing a login it asks guard, as a real login server does, whether the login may be
 * admitted (GET <status_url>/v1/accounts/{id}/status?ip=, status_token): a login guard refuses
 * (account locked, or blocked abroad) is not published and is counted as refused. A 503, 429 or
 * no answer is retried like the publisher's; any other answer (a bad token, say) fails the login
 * closed (counted as failed). An empty status_url publishes without asking (benches of the bus).
 *
 * A login guard admits opens its game session, as a login server hands the player to the game
 * server: before the logins are published, their sessions are opened on the game server stub
 * (POST <game_url>/v1/sessions with game_token, one request per batch; empty game_url = no
 * sessions). Opening first means a kick can never reach the game server before the session it
 * ends; a session the game server did not take is logged and counted, and the login still goes.
 *
 * demo_accounts (make run): a share demo_share of logins picks one of these accounts, from abroad
 * with probability demo_abroad_share, so that each of their policies acts within a minute. An
 * entry "account:en" (or ":ko") gives the language of that player's game client, which the
 * session carries.
 *
 * Failed logins: a share failed_share of the attempts is an attacker guessing the password of one
 * of the first failed_accounts accounts (user-00001 ..., from a home address): asked about like
 * any login, and when guard admits the attempt it fails and is published to the topic
 * login.failed (failed_url, the same producer token) with reason bad_password, one POST each. With
 * make run's share (0.05 of 5 logins/s) the attacked account reaches guard's brute-force threshold
 * (30) within about two minutes, after which guard refuses its logins (reason brute_force) until
 * the wait ends.
 *
 * batch > 1: like a busy login server, each sending thread gathers up to batch logins as they
 * fall due and POSTs them together to the topic's /batch endpoint when the last one is due (the
 * batch's ce-id header makes event i's id "<ce-id>-<i>", the same on every retry). */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "app.h"
#include "buf.h"
#include "http/http_client.h"
#include "ids.h"
#include "log.h"

static const struct config_def LOGINSIM_CONFIG[] = {
    {"publisher_url", CONFIG_STRING, "http://127.0.0.1:8080/v1/topics/login/events", 1, 4096, 0,
     NULL, "Where login events are POSTed"},
    {"token", CONFIG_STRING, "dev-login-token", 1, 4096, CONFIG_KEY, NULL,
     "Producer bearer token of the login topic (the default is the development token)"},
    {"status_url", CONFIG_STRING, "http://127.0.0.1:8103", 0, 4096, 0, NULL,
     "Base URL of guard's status API, asked before each login (empty = publish without asking)"},
    {"status_token", CONFIG_STRING, "dev-status-token", 1, 4096, CONFIG_SECRET | CONFIG_KEY, NULL,
     "Service token of guard's status API (the default is the development token)"},
    {"rate", CONFIG_DOUBLE, "5", 0, 1000000, 0, NULL, "Logins per second (0 = do nothing)"},
    {"accounts", CONFIG_INT, "1000", 1, 100000000, 0, NULL, "Number of simulated accounts"},
    {"home", CONFIG_STRING, "KR", 2, 2, 0, NULL, "Home country of the players"},
    {"abroad_share", CONFIG_DOUBLE, "0.05", 0, 1, 0, NULL, "Share of logins from abroad"},
    {"count", CONFIG_INT, "0", 0, 1000000000, 0, NULL, "Stop after this many logins (0 = no)"},
    {"duration_s", CONFIG_DOUBLE, "0", 0, 1e9, 0, NULL, "Stop after this long (0 = no)"},
    {"threads", CONFIG_INT, "2", 1, 256, 0, NULL, "Sending threads"},
    {"timeout_ms", CONFIG_INT, "5000", 10, 600000, 0, NULL, "Time-out of one POST"},
    {"batch", CONFIG_INT, "1", 1, 1000, 0, NULL,
     "Logins per request; above 1 they go to the topic's /batch endpoint (publisher_url ending "
     "in /events, with /batch in its place)"},
    {"ids_file", CONFIG_STRING, "", 0, 4096, 0, NULL,
     "When set: one line per accepted login: <event id> TAB <unix time in ms of its 2xx>"},
    {"game_url", CONFIG_STRING, "http://127.0.0.1:8109", 0, 4096, 0, NULL,
     "Base URL of the game server (gamesim) where each admitted login's session is opened "
     "(empty = no sessions)"},
    {"game_token", CONFIG_STRING, "dev-only-gamesim-admin-token", 1, 4096,
     CONFIG_SECRET | CONFIG_KEY, NULL,
     "Bearer token of the game server's POST /v1/sessions (the default is the development token)"},
    {"demo_accounts", CONFIG_STRING, "", 0, 65536, 0, NULL,
     "Accounts (separated by spaces or commas) that log in more often, for demonstrations; "
     "account:en or account:ko gives its game client's language"},
    {"demo_share", CONFIG_DOUBLE, "0", 0, 1, 0, NULL, "Share of logins by one of demo_accounts"},
    {"demo_abroad_share", CONFIG_DOUBLE, "0.5", 0, 1, 0, NULL,
     "Share of demo_accounts' logins from abroad"},
    {"failed_share", CONFIG_DOUBLE, "0", 0, 1, 0, NULL,
     "Share of login attempts that are password guesses against one of failed_accounts, published "
     "to login.failed when guard lets them try (0 = none; make run: 0.05)"},
    {"failed_accounts", CONFIG_INT, "1", 1, 1000000, 0, NULL,
     "How many accounts the password guesses target (user-00001 ...)"},
    {"failed_url", CONFIG_STRING, "http://127.0.0.1:8080/v1/topics/login.failed/events", 1, 4096, 0,
     NULL, "Where failed logins are POSTed (with token)"},
    CONFIG_DEF_END,
};

struct range {
    const char *country;
    unsigned a, b, c; /* first three octets of a /24 base */
    unsigned span;    /* how many consecutive /24s */
};

/* Sample IPv4 blocks per country, inside allocations the GeoIP database maps to them. */
static const struct range RANGES[] = {
    {"KR", 211, 234, 0, 64}, {"KR", 121, 128, 0, 64}, {"US", 8, 8, 8, 1},
    {"US", 12, 0, 0, 64},    {"JP", 126, 0, 0, 64},   {"CN", 36, 96, 0, 64},
    {"CN", 114, 240, 0, 16}, {"DE", 217, 0, 0, 64},   {"BR", 177, 0, 0, 64},
    {"BR", 189, 0, 0, 64},
};
#define N_RANGES (sizeof(RANGES) / sizeof(RANGES[0]))
#define ACCOUNT_MAX 129 /* account ids: up to 128 bytes (the login schema) */

struct sim {
    const struct config *cfg;
    volatile sig_atomic_t stop;
    pthread_mutex_t mu;
    long long sent, accepted, retried, failed, refused;
    long long guesses;                   /* failed logins published (login.failed) */
    long long sessions, sessions_failed; /* game sessions opened / not taken by the game server */
    char **demo;                         /* demo_accounts */
    const char **demo_lang;              /* their languages ("ko", "en" or NULL) */
    size_t n_demo;
    char sessions_url[4200]; /* game_url + /v1/sessions, or "" */
    unsigned finished;       /* worker threads that returned */
    long long finished_ms;   /* when the last of them returned */
    long long started_ms;
    FILE *ids;            /* ids_file or NULL; written under mu */
    char batch_url[4200]; /* publisher_url with /batch for /events (batch > 1) */
};

static unsigned long long rng_next(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double rng_unit(unsigned long long *rng)
{
    return (double)(rng_next(rng) % 1000000) / 1e6;
}

static void pick_ip(struct sim *s, unsigned long long *rng, double abroad_share, char *country,
                    char *ip, size_t len)
{
    const char *home = config_str(s->cfg, "home");
    int abroad = rng_unit(rng) < abroad_share;
    size_t cand[N_RANGES], n = 0;
    for (size_t i = 0; i < N_RANGES; i++) {
        if ((strcmp(RANGES[i].country, home) != 0) == abroad) {
            cand[n++] = i;
        }
    }
    if (n == 0) { /* a home without sample ranges: any range */
        for (size_t i = 0; i < N_RANGES; i++) {
            cand[n++] = i;
        }
    }
    const struct range *r = &RANGES[cand[rng_next(rng) % n]];
    unsigned third = r->c + (unsigned)(rng_next(rng) % r->span);
    snprintf(country, 3, "%s", r->country);
    snprintf(ip, len, "%u.%u.%u.%u", r->a, r->b + third / 256, third % 256,
             1 + (unsigned)(rng_next(rng) % 254));
}

/* One login event as JSON text (caller frees); account, ip and session receive its account,
 * address and session id; *lang the player's game client language (NULL: not known). */
static char *login_json(struct sim *s, unsigned long long *rng, long long accounts,
                        char account[ACCOUNT_MAX], char ip[32], char session[ID_UUID_LEN + 1],
                        const char **lang)
{
    char country[3], ts[32];
    *lang = NULL;
    if (s->n_demo > 0 && rng_unit(rng) < config_double(s->cfg, "demo_share")) {
        size_t d = (size_t)(rng_next(rng) % s->n_demo);
        snprintf(account, ACCOUNT_MAX, "%s", s->demo[d]);
        *lang = s->demo_lang[d];
        pick_ip(s, rng, config_double(s->cfg, "demo_abroad_share"), country, ip, 32);
    } else {
        snprintf(account, ACCOUNT_MAX, "user-%05llu",
                 1 + (unsigned long long)(rng_next(rng) % (unsigned long long)accounts));
        pick_ip(s, rng, config_double(s->cfg, "abroad_share"), country, ip, 32);
    }
    app_time_rfc3339(ts);
    id_uuid7(session);
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "account_id", account, "ip", ip, "ts", ts,
                  "session_id", session, "server", "loginsim-1", "client", "sim_country", country);
    char *body = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return body;
}

/* Sleeps for a Retry-After value (default 1 s, at most a minute). */
static void wait_retry(struct sim *s, long wait_ms)
{
    pthread_mutex_lock(&s->mu);
    s->retried++;
    pthread_mutex_unlock(&s->mu);
    if (wait_ms <= 0 || wait_ms > 60000) {
        wait_ms = 1000;
    }
    struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

enum admission { ADMIT, REFUSE, CHECK_FAILED };

/* Asks guard whether this login may be admitted, retrying while guard is unavailable. */
static enum admission ask_guard(struct sim *s, struct http_client *hc, const char *account,
                                const char *ip)
{
    char url[4400], auth[4200];
    snprintf(url, sizeof(url), "%s/v1/accounts/%s/status?ip=%s", config_str(s->cfg, "status_url"),
             account, ip); /* both are ours: letters, digits, '-' and '.' need no escaping */
    snprintf(auth, sizeof(auth), "Bearer %s", config_str(s->cfg, "status_token"));
    struct http_header_kv h[] = {{"Authorization", auth}};
    while (!s->stop) {
        struct http_result r;
        memset(&r, 0, sizeof(r));
        int rc = http_client_request(hc, "GET", url, h, 1, NULL, 0,
                                     (long)config_int(s->cfg, "timeout_ms"), 65536, &r);
        int status = rc == 0 ? r.status : 0;
        long wait_ms = r.retry_after ? atol(r.retry_after) * 1000 : 1000;
        json_error_t jerr;
        json_t *st = status == 200 ? json_loads(r.body, 0, &jerr) : NULL;
        http_result_release(&r);
        json_t *admit = json_object_get(st, "admit");
        if (json_is_boolean(admit)) {
            enum admission a = json_is_true(admit) ? ADMIT : REFUSE;
            if (a == REFUSE) { /* what a player would be told at the login screen */
                const char *why = json_string_value(json_object_get(st, "reason"));
                log_info(
                    "login of %s from %s refused by guard: %s", account, ip,
                    why ? why
                        : (json_is_true(json_object_get(st, "locked")) ? "locked" : "refused"));
            }
            json_decref(st);
            return a;
        }
        json_decref(st);
        if (status == 503 || status == 429 || status == 0) {
            wait_retry(s, wait_ms);
            continue;
        }
        log_warn("guard's status API answered %d: login refused (fail closed)", status);
        return CHECK_FAILED;
    }
    return CHECK_FAILED;
}

/* Opens the sessions of admitted logins on the game server (one attempt: the game server stub is
 * not what the logins wait for; a failure is logged and counted). */
static void open_sessions(struct sim *s, struct http_client *hc, json_t *sessions)
{
    char auth[4200];
    snprintf(auth, sizeof(auth), "Bearer %s", config_str(s->cfg, "game_token"));
    struct http_header_kv h[] = {{"Content-Type", "application/json"}, {"Authorization", auth}};
    char *body = json_dumps(sessions, JSON_COMPACT);
    struct http_result r;
    memset(&r, 0, sizeof(r));
    int rc = http_client_request(hc, "POST", s->sessions_url, h, 2, body, strlen(body),
                                 (long)config_int(s->cfg, "timeout_ms"), 65536, &r);
    int status = rc == 0 ? r.status : 0;
    http_result_release(&r);
    free(body);
    long long n = (long long)json_array_size(sessions);
    pthread_mutex_lock(&s->mu);
    bool first_failure = status != 201 && s->sessions_failed == 0;
    *(status == 201 ? &s->sessions : &s->sessions_failed) += n;
    pthread_mutex_unlock(&s->mu);
    if (first_failure) {
        log_warn("the game server did not open %lld session(s) (status %d): logins go on without "
                 "sessions (logged once)",
                 n, status);
    }
}

/* Publishes one failed login (a password guess against account from ip) to login.failed,
 * retrying 503, 429 and no answer under the same ce-id, three attempts at most (then logged and
 * dropped: the simulated logins must not slow down for the attacker's). */
static void publish_failed(struct sim *s, struct http_client *hc, const char *account,
                           const char *ip)
{
    char auth[4200], ce_id[ID_UUID_LEN + 1], ts[32];
    snprintf(auth, sizeof(auth), "Bearer %s", config_str(s->cfg, "token"));
    id_uuid7(ce_id);
    app_time_rfc3339(ts);
    struct http_header_kv h[] = {
        {"Content-Type", "application/json"}, {"Authorization", auth}, {"ce-id", ce_id}};
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "account_id", account, "ip", ip, "ts", ts,
                           "server", "loginsim-1", "reason", "bad_password");
    char *body = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    int attempts = 0;
    while (!s->stop) {
        struct http_result r;
        memset(&r, 0, sizeof(r));
        int rc =
            http_client_request(hc, "POST", config_str(s->cfg, "failed_url"), h, 3, body,
                                strlen(body), (long)config_int(s->cfg, "timeout_ms"), 65536, &r);
        int status = rc == 0 ? r.status : 0;
        long wait_ms = r.retry_after ? atol(r.retry_after) * 1000 : 1000;
        http_result_release(&r);
        if (status >= 200 && status < 300) {
            pthread_mutex_lock(&s->mu);
            s->guesses++;
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if ((status == 503 || status == 429 || status == 0) && ++attempts < 3) {
            wait_retry(s, wait_ms); /* a few tries only: the logins must not wait for guesses */
            continue;
        }
        log_warn("failed login not published (status %d)", status);
        break;
    }
    free(body);
}

/* With probability failed_share: a password guess against one of failed_accounts, asked about
 * and, when guard lets it try, published as failed. Returns whether the attempt was a guess. */
static bool maybe_guess(struct sim *s, struct http_client *hc, unsigned long long *rng,
                        bool asks_guard)
{
    if (rng_unit(rng) >= config_double(s->cfg, "failed_share")) {
        return false;
    }
    char account[ACCOUNT_MAX], ip[32], country[3];
    snprintf(account, ACCOUNT_MAX, "user-%05llu",
             1 + (unsigned long long)(rng_next(rng) %
                                      (unsigned long long)config_int(s->cfg, "failed_accounts")));
    pick_ip(s, rng, 0, country, ip, sizeof(ip));
    enum admission a = asks_guard ? ask_guard(s, hc, account, ip) : ADMIT;
    if (a == ADMIT) {
        publish_failed(s, hc, account, ip);
    } else {
        pthread_mutex_lock(&s->mu);
        *(a == REFUSE ? &s->refused : &s->failed) += 1;
        pthread_mutex_unlock(&s->mu);
    }
    return true;
}

static void *worker(void *arg)
{
    struct sim *s = arg;
    struct http_client *hc = http_client_new();
    unsigned long long rng = (unsigned long long)app_now_ms() ^ (unsigned long long)(size_t)&rng;
    random_bytes(&rng, sizeof(rng));
    rng |= 1;
    double rate = config_double(s->cfg, "rate");
    long long count = config_int(s->cfg, "count");
    double duration = config_double(s->cfg, "duration_s");
    long long batch = config_int(s->cfg, "batch");
    const char *url = batch > 1 ? s->batch_url : config_str(s->cfg, "publisher_url");
    char auth[4200];
    snprintf(auth, sizeof(auth), "Bearer %s", config_str(s->cfg, "token"));
    char ce_id[ID_UUID_LEN + 1];
    struct http_header_kv h[] = {
        {"Content-Type", "application/json"}, {"Authorization", auth}, {"ce-id", ce_id}};
    long long accounts = config_int(s->cfg, "accounts");
    bool asks_guard = config_str(s->cfg, "status_url")[0] != '\0';
    struct buf body;
    buf_init(&body, 1 << 20);
    while (!s->stop && rate > 0) {
        /* claim logins n .. n + k - 1; the request is due when the last of them is */
        pthread_mutex_lock(&s->mu);
        long long n = s->sent;
        long long k = count > 0 && count - n < batch ? count - n : batch;
        if (k <= 0) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->sent += k;
        pthread_mutex_unlock(&s->mu);
        long long due = s->started_ms + (long long)((double)(n + k - 1) * 1000.0 / rate);
        long long now = app_now_ms();
        if (duration > 0 && (double)(now - s->started_ms) >= duration * 1000.0) {
            break;
        }
        if (due > now) {
            struct timespec ts = {(time_t)((due - now) / 1000),
                                  (long)((due - now) % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        buf_reset(&body);
        if (batch > 1) {
            buf_appends(&body, "[");
        }
        long long admitted = 0;
        json_t *sessions = json_array();
        for (long long i = 0; i < k; i++) {
            char account[ACCOUNT_MAX], ip[32], session[ID_UUID_LEN + 1];
            const char *lang;
            if (maybe_guess(s, hc, &rng, asks_guard)) {
                continue;
            }
            char *ev = login_json(s, &rng, accounts, account, ip, session, &lang);
            enum admission a = asks_guard ? ask_guard(s, hc, account, ip) : ADMIT;
            if (a == ADMIT) {
                buf_appendf(&body, "%s%s", admitted ? "," : "", ev);
                admitted++;
                json_array_append_new(sessions, json_pack("{s:s, s:s, s:s, s:s*}", "session_id",
                                                          session, "account_id", account, "server",
                                                          "loginsim-1", "lang", lang));
            } else {
                pthread_mutex_lock(&s->mu);
                *(a == REFUSE ? &s->refused : &s->failed) += 1;
                pthread_mutex_unlock(&s->mu);
            }
            free(ev);
        }
        if (batch > 1) {
            buf_appends(&body, "]");
        }
        k = admitted;
        if (k > 0 && s->sessions_url[0] != '\0') {
            open_sessions(s, hc, sessions);
        }
        json_decref(sessions);
        if (k == 0) {
            continue;
        }
        id_uuid7(ce_id);
        for (;;) {
            struct http_result r;
            memset(&r, 0, sizeof(r));
            int rc = http_client_request(hc, "POST", url, h, 3, body.data, body.len,
                                         (long)config_int(s->cfg, "timeout_ms"), 65536, &r);
            int status = rc == 0 ? r.status : 0;
            long wait_ms = r.retry_after ? atol(r.retry_after) * 1000 : 1000;
            http_result_release(&r);
            if (status >= 200 && status < 300) {
                struct timespec wall;
                clock_gettime(CLOCK_REALTIME, &wall); /* compared with other processes' clocks */
                double at_ms = (double)wall.tv_sec * 1000.0 + (double)wall.tv_nsec / 1e6;
                pthread_mutex_lock(&s->mu);
                s->accepted += k;
                for (long long i = 0; s->ids && i < k; i++) {
                    if (batch > 1) {
                        fprintf(s->ids, "%s-%lld\t%.3f\n", ce_id, i, at_ms);
                    } else {
                        fprintf(s->ids, "%s\t%.3f\n", ce_id, at_ms);
                    }
                }
                pthread_mutex_unlock(&s->mu);
                break;
            }
            if ((status == 503 || status == 429 || status == 0) && !s->stop) {
                wait_retry(s, wait_ms);
                continue;
            }
            log_warn("login refused by the publisher: status %d", status);
            pthread_mutex_lock(&s->mu);
            s->failed += k;
            pthread_mutex_unlock(&s->mu);
            break;
        }
    }
    buf_release(&body);
    http_client_free(hc);
    pthread_mutex_lock(&s->mu);
    s->finished++;
    s->finished_ms = app_now_ms();
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* demo_accounts into s->demo and s->demo_lang; -1 (logged) for an id longer than an account id
 * may be or a language other than ko and en. */
static int parse_demo(struct sim *s, const char *list)
{
    const char *p = list ? list : "";
    while (*p) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n == 0) {
            break;
        }
        size_t id_len = strcspn(p, " ,\t:");
        const char *lang = NULL;
        if (id_len < n) { /* "account:lang" */
            size_t lang_len = n - id_len - 1;
            if (lang_len == 2 && strncmp(p + id_len + 1, "en", 2) == 0) {
                lang = "en";
            } else if (lang_len == 2 && strncmp(p + id_len + 1, "ko", 2) == 0) {
                lang = "ko";
            } else {
                log_error("demo_accounts: \"%.*s\": the language after ':' is ko or en",
                          (int)(n > 200 ? 200 : n), p);
                return -1;
            }
        }
        if (id_len == 0 || id_len >= ACCOUNT_MAX) {
            log_error("demo_accounts: an account id is empty or longer than %d bytes",
                      ACCOUNT_MAX - 1);
            return -1;
        }
        s->demo = xrealloc(s->demo, (s->n_demo + 1) * sizeof(*s->demo));
        s->demo_lang = xrealloc(s->demo_lang, (s->n_demo + 1) * sizeof(*s->demo_lang));
        char *id = xmalloc(id_len + 1);
        memcpy(id, p, id_len);
        id[id_len] = '\0';
        s->demo_lang[s->n_demo] = lang;
        s->demo[s->n_demo++] = id;
        p += n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct app app;
    struct sim s;
    memset(&s, 0, sizeof(s));
    if (app_init(&app, argc, argv, "loginsim", "LOGINSIM", LOGINSIM_CONFIG) != 0) {
        return 2;
    }
    if (app.exit_now) {
        app_release(&app);
        return 0;
    }
    s.cfg = app.cfg;
    if (config_int(app.cfg, "batch") > 1) {
        const char *u = config_str(app.cfg, "publisher_url");
        size_t ul = strlen(u);
        if (ul < 7 || strcmp(u + ul - 7, "/events") != 0 || ul + 1 > sizeof(s.batch_url)) {
            log_error("batch > 1 needs a publisher_url ending in /events, got %s", u);
            app_release(&app);
            return 2;
        }
        snprintf(s.batch_url, sizeof(s.batch_url), "%.*s/batch", (int)(ul - 7), u);
    }
    const char *game = config_str(app.cfg, "game_url");
    if (game && game[0] != '\0' &&
        snprintf(s.sessions_url, sizeof(s.sessions_url), "%s/v1/sessions", game) >=
            (int)sizeof(s.sessions_url)) {
        log_error("game_url is too long");
        app_release(&app);
        return 2;
    }
    if (parse_demo(&s, config_str(app.cfg, "demo_accounts")) != 0) {
        app_release(&app);
        return 2;
    }
    const char *ids_path = config_str(app.cfg, "ids_file");
    if (ids_path[0] != '\0') {
        s.ids = fopen(ids_path, "a");
        if (!s.ids) {
            log_error("cannot open ids_file %s", ids_path);
            app_release(&app);
            return 2;
        }
        setvbuf(s.ids, NULL, _IOLBF, 0); /* whole lines, readable while the run goes on */
    }
    pthread_mutex_init(&s.mu, NULL);
    s.started_ms = app_now_ms();
    unsigned n = (unsigned)config_int(app.cfg, "threads");
    pthread_t *t = calloc(n, sizeof(*t));
    for (unsigned i = 0; i < n; i++) {
        pthread_create(&t[i], NULL, worker, &s);
    }
    /* wait for the workers to finish or a signal */
    for (;;) {
        int sig = app_wait_signal_for(&app, 200);
        if (sig == SIGTERM || sig == SIGINT) {
            s.stop = 1;
            break;
        }
        pthread_mutex_lock(&s.mu);
        long long done = s.accepted + s.failed + s.refused + s.guesses;
        unsigned finished = s.finished;
        pthread_mutex_unlock(&s.mu);
        if (finished == n && config_double(app.cfg, "rate") > 0) {
            break; /* every worker reached count or duration_s */
        }
        long long count = config_int(app.cfg, "count");
        double dur = config_double(app.cfg, "duration_s");
        if ((count > 0 && done >= count) ||
            (dur > 0 && (double)(app_now_ms() - s.started_ms) >= dur * 1000.0 + 1000.0) ||
            config_double(app.cfg, "rate") <= 0) {
            if (config_double(app.cfg, "rate") <= 0) {
                continue; /* rate 0: idle until a signal */
            }
            s.stop = 1;
            break;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
    free(t);
    /* the run's length: until the last worker's last answer (not the 200 ms wait above) */
    long long end_ms = s.finished == n ? s.finished_ms : app_now_ms();
    double el = (double)(end_ms - s.started_ms) / 1000.0;
    if (s.ids && fclose(s.ids) != 0) {
        log_error("writing ids_file failed");
        s.failed++;
    }
    printf("{\"accepted\": %lld, \"refused\": %lld, \"failed\": %lld, \"retried\": %lld, "
           "\"failed_logins\": %lld, \"sessions\": %lld, \"sessions_failed\": %lld, "
           "\"seconds\": %.3f, \"rate\": %.1f, \"target_rate\": %.1f}\n",
           s.accepted, s.refused, s.failed, s.retried, s.guesses, s.sessions, s.sessions_failed, el,
           el > 0 ? (double)s.accepted / el : 0.0, config_double(app.cfg, "rate"));
    fflush(stdout);
    pthread_mutex_destroy(&s.mu);
    for (size_t i = 0; i < s.n_demo; i++) {
        free(s.demo[i]);
    }
    free(s.demo);
    free(s.demo_lang);
    app_release(&app);
    return s.failed ? 1 : 0;
}
