/* throttle.c - failed logins and brute-force throttling (see guard.h).
 *
 * Login servers publish each failed login to the topic login.failed (the fields of a login plus
 * "reason"); the bus delivers it here (route guard-failures, one-way): POST
 * /v1/deliveries/login.failed. Each failure is counted twice, per account and per source
 * address, in guard.failures: a count older than brute_force.reset_s starts again at 1; once it
 * reaches its threshold (brute_force.account_failures, brute_force.address_failures), logins
 * are refused for brute_force.wait_increment_s times (count / threshold), at most
 * brute_force.max_wait_s, every further failure renewing the wait (Keycloak's temporary lockout:
 * 30 failures, 60 s increments up to 15 min, counts forgotten after 12 h). A failure already
 * counted (same event id, guard.failure_events) is not counted again.
 *
 * Throttling is noticed: an account's count reaching its threshold starts an episode, and the
 * counting statement then also queues the player's brute_force notice in the outbox (once per
 * episode: renewals, redeliveries and a wait that runs out while failures go on tell nothing;
 * the episode ends when the count starts over). Metrics, labelled kind="account"|"address":
 * guard_throttled_failures_total (each failure that starts or renews a wait) and
 * guard_throttle_episodes_total (each episode started; docs/ops/alerts.yml alerts on bursts).
 *
 * The status API reads the waits from memory (a table of keys refused until a time, filled from
 * the database at start, so a throttle outlives a restart): admit false, reason "brute_force",
 * retry_after the seconds left. A successful login (login.checked) after the wait clears the
 * account's count, as Keycloak does; an address's count only ends with its window (one account's
 * success says nothing of the other accounts tried from that address). To keep logins cheap, the
 * clearing statement runs only for accounts a filter says may have a count: a bit per hash of
 * the account id, set when a failure is counted (and at start for every count stored), never
 * reset while guard runs (a false positive costs one indexed DELETE). */
#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "guard.h"
#include "log.h"

#define THROTTLE_BUCKETS 4096u
#define MAYBE_BITS (1u << 23) /* 1 MiB of filter */

/* A key refused until a wall-clock time (epoch ms). */
struct throttle_entry {
    struct throttle_entry *next;
    long long until;
    char key[]; /* "a:<account>" or "i:<address>" */
};

struct throttle {
    pthread_mutex_t mu;
    struct throttle_entry *buckets[THROTTLE_BUCKETS];
    unsigned char *maybe; /* MAYBE_BITS bits, behind mu */
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

static void key_of(char kind, const char *k, char *out, size_t len)
{
    snprintf(out, len, "%c:%s", kind, k);
}

/* Refuses key until `until` (epoch ms) unless it already is until later; an until in the past
 * changes nothing (an entry ends by expiring: a count answered by an earlier transaction, applied
 * after a later one's wait, must not end that wait). Call with t->mu held. */
static void entry_set_locked(struct throttle *t, const char *key, long long until)
{
    if (until <= now_ms()) {
        return;
    }
    struct throttle_entry **pp = &t->buckets[hash_str(key) % THROTTLE_BUCKETS];
    while (*pp && strcmp((*pp)->key, key) != 0) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        if (until > (*pp)->until) {
            (*pp)->until = until;
        }
        return;
    }
    size_t n = strlen(key);
    struct throttle_entry *e = xmalloc(sizeof(*e) + n + 1);
    memcpy(e->key, key, n + 1);
    e->until = until;
    e->next = NULL;
    *pp = e;
}

/* Milliseconds key is still refused (0 = not refused); an entry past its time is dropped. Call
 * with t->mu held. */
static long long entry_wait_locked(struct throttle *t, const char *key, long long now)
{
    struct throttle_entry **pp = &t->buckets[hash_str(key) % THROTTLE_BUCKETS];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) != 0) {
            continue;
        }
        if ((*pp)->until > now) {
            return (*pp)->until - now;
        }
        struct throttle_entry *e = *pp;
        *pp = e->next;
        free(e);
        return 0;
    }
    return 0;
}

static void maybe_set_locked(struct throttle *t, const char *account)
{
    unsigned b = hash_str(account) % MAYBE_BITS;
    t->maybe[b / 8] |= (unsigned char)(1u << (b % 8));
}

static bool maybe_has(struct throttle *t, const char *account)
{
    unsigned b = hash_str(account) % MAYBE_BITS;
    pthread_mutex_lock(&t->mu);
    bool r = (t->maybe[b / 8] >> (b % 8)) & 1u;
    pthread_mutex_unlock(&t->mu);
    return r;
}

/* The canonical text of an IPv4 or IPv6 address (so one address has one count), -1 when ip is
 * not one. */
static int address_canon(const char *ip, char out[INET6_ADDRSTRLEN])
{
    unsigned char a[16];
    if (!ip || strlen(ip) > 64) {
        return -1;
    }
    if (inet_pton(AF_INET, ip, a) == 1) {
        return inet_ntop(AF_INET, a, out, INET6_ADDRSTRLEN) ? 0 : -1;
    }
    if (inet_pton(AF_INET6, ip, a) == 1) {
        return inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN) ? 0 : -1;
    }
    return -1;
}

long long throttle_wait(struct guard *g, const char *account, const char *ip)
{
    struct throttle *t = g->throttle;
    if (!t || !config_bool(g->cfg, "brute_force")) {
        return 0;
    }
    char key[ID_MAX + INET6_ADDRSTRLEN + 4], canon[INET6_ADDRSTRLEN];
    long long now = now_ms(), wait = 0;
    pthread_mutex_lock(&t->mu);
    key_of('a', account, key, sizeof(key));
    wait = entry_wait_locked(t, key, now);
    if (ip && address_canon(ip, canon) == 0) {
        key_of('i', canon, key, sizeof(key));
        long long w = entry_wait_locked(t, key, now);
        wait = w > wait ? w : wait;
    }
    pthread_mutex_unlock(&t->mu);
    /* until and now both rounded down to the ms: never more than the configured wait */
    return (wait + 999) / 1000;
}

int throttle_init(struct guard *g, char *err, size_t err_len)
{
    struct throttle *t = xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->maybe = xcalloc(MAYBE_BITS / 8, 1);
    g->throttle = t;
    json_t *rows = NULL;
    int rc = db_exec(g->db,
                     "SELECT kind, key, coalesce(floor(extract(epoch FROM locked_until) * 1000), "
                     "0)::bigint::text AS until FROM guard.failures",
                     NULL, 0, &rows, NULL, err, err_len);
    if (rc != DB_OK) {
        return rc;
    }
    char key[ID_MAX + INET6_ADDRSTRLEN + 4];
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const char *kind = row_str(rows, i, "kind"), *k = row_str(rows, i, "key");
        bool is_account = strcmp(kind, "account") == 0;
        if (is_account) {
            maybe_set_locked(t, k);
        }
        key_of(is_account ? 'a' : 'i', k, key, sizeof(key));
        entry_set_locked(t, key, atoll(row_str(rows, i, "until")));
    }
    pthread_mutex_unlock(&t->mu);
    json_decref(rows);
    return DB_OK;
}

void throttle_release(struct guard *g)
{
    struct throttle *t = g->throttle;
    if (!t) {
        return;
    }
    for (unsigned i = 0; i < THROTTLE_BUCKETS; i++) {
        while (t->buckets[i]) {
            struct throttle_entry *e = t->buckets[i];
            t->buckets[i] = e->next;
            free(e);
        }
    }
    free(t->maybe);
    pthread_mutex_destroy(&t->mu);
    free(t);
    g->throttle = NULL;
}

int throttle_login_ok(struct guard *g, const char *account, char *err, size_t err_len)
{
    if (!g->throttle || !maybe_has(g->throttle, account)) {
        return DB_OK;
    }
    const char *p[] = {account};
    return db_exec(g->db,
                   "DELETE FROM guard.failures WHERE kind = 'account' AND key = $1 "
                   "AND (locked_until IS NULL OR locked_until <= now())",
                   p, 1, NULL, NULL, err, err_len);
}

void throttle_trim(struct guard *g)
{
    struct throttle *t = g->throttle;
    if (t) { /* waits that ended and were never asked about again */
        long long now = now_ms();
        pthread_mutex_lock(&t->mu);
        for (unsigned i = 0; i < THROTTLE_BUCKETS; i++) {
            struct throttle_entry **pp = &t->buckets[i];
            while (*pp) {
                if ((*pp)->until <= now) {
                    struct throttle_entry *e = *pp;
                    *pp = e->next;
                    free(e);
                } else {
                    pp = &(*pp)->next;
                }
            }
        }
        pthread_mutex_unlock(&t->mu);
    }
    char err[512], reset[24];
    snprintf(reset, sizeof(reset), "%lld", config_int(g->cfg, "brute_force.reset_s"));
    const char *p[] = {reset};
    struct db_stmt st[2] = {
        {"DELETE FROM guard.failure_events WHERE at < now() - interval '1 day'", NULL, 0},
        {"DELETE FROM guard.failures WHERE last_at < now() - make_interval(secs => $1::int) "
         "AND (locked_until IS NULL OR locked_until <= now())",
         p, 1},
    };
    if (db_exec_tx(g->db, st, 2, err, sizeof(err)) != DB_OK) {
        log_warn("failed logins not trimmed: %s", err);
    }
}

/* Counts one failed login (a delivery_decide_fn; ctx is the guard): 204 once counted (or when
 * counted before); 422 for an event without a valid account_id, ip, ts and reason. */
static void count_failure(void *ctx, struct delivery_item *it)
{
    struct guard *g = ctx;
    json_t *ev = it->event;
    const char *account = json_string_value(json_object_get(ev, "account_id"));
    const char *ip = json_string_value(json_object_get(ev, "ip"));
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    const char *ts = json_string_value(json_object_get(ev, "ts"));
    char canon[INET6_ADDRSTRLEN];
    if (!valid_id(account) || address_canon(ip, canon) != 0 || !reason || !*reason ||
        strlen(reason) > 64 || !ts) {
        delivery_item_fail(it, 422, "invalid_event",
                           "account_id, ip (an IPv4 or IPv6 address), ts and reason are required");
        return;
    }
    it->status = 204;
    if (!config_bool(g->cfg, "brute_force")) {
        return;
    }
    char na[24], nb[24], inc[24], max[24], reset[24];
    snprintf(na, sizeof(na), "%lld", config_int(g->cfg, "brute_force.account_failures"));
    snprintf(nb, sizeof(nb), "%lld", config_int(g->cfg, "brute_force.address_failures"));
    snprintf(inc, sizeof(inc), "%lld", config_int(g->cfg, "brute_force.wait_increment_s"));
    snprintf(max, sizeof(max), "%lld", config_int(g->cfg, "brute_force.max_wait_s"));
    snprintf(reset, sizeof(reset), "%lld", config_int(g->cfg, "brute_force.reset_s"));
    char note_id[ID_UUID_LEN + 1];
    id_uuid7(note_id);
    /* a name nobody has (the login server says so) has no player to tell */
    const char *is_told = strcmp(reason, "unknown_account") == 0 ? "false" : "true";
    const char *p[] = {it->id, account, canon, na, nb, inc, max, reset, note_id, is_told};
    /* A threshold of 0 counts nothing of that kind. The new count n: 1 after a gap longer than
     * reset_s, else one more; at n >= threshold the wait is inc * (n / threshold), capped.
     * An account's count reaching its threshold (n = threshold: counts grow one at a time, so
     * this is once per episode) also queues, in the same statement, the brute_force notice to
     * the player: on every channel that reaches them (in-game and the contacts in effect, as
     * player_channels), in their language, with the count and the wait in minutes; not when
     * the failure that reaches it is for an unknown account. */
    static const char *sql =
        "WITH fresh AS (INSERT INTO guard.failure_events (id) VALUES ($1) "
        "ON CONFLICT DO NOTHING RETURNING id), "
        "k AS (SELECT 'account' AS kind, $2::text AS key, $4::int AS thr "
        "UNION ALL SELECT 'address', $3::text, $5::int), "
        "up AS (INSERT INTO guard.failures AS f (kind, key, failures, last_at, locked_until) "
        "SELECT kind, key, 1, now(), CASE WHEN thr = 1 THEN now() + make_interval(secs => "
        "least($6::int, $7::int)) END FROM k WHERE thr > 0 AND EXISTS (SELECT 1 FROM fresh) "
        "ON CONFLICT (kind, key) DO UPDATE SET "
        "failures = CASE WHEN f.last_at < now() - make_interval(secs => $8::int) THEN 1 "
        "ELSE f.failures + 1 END, "
        "last_at = now(), "
        "locked_until = CASE WHEN (CASE WHEN f.last_at < now() - make_interval(secs => $8::int) "
        "THEN 1 ELSE f.failures + 1 END) >= (CASE f.kind WHEN 'account' THEN $4::int "
        "ELSE $5::int END) THEN now() + make_interval(secs => least($6::bigint * ((CASE WHEN "
        "f.last_at < now() - make_interval(secs => $8::int) THEN 1 ELSE f.failures + 1 END) / "
        "(CASE f.kind WHEN 'account' THEN $4::int ELSE $5::int END)), $7::bigint)::int) "
        "WHEN f.last_at < now() - make_interval(secs => $8::int) THEN NULL "
        "ELSE f.locked_until END "
        "RETURNING kind, key, failures, locked_until, "
        "coalesce(floor(extract(epoch FROM locked_until) * 1000), 0)::bigint::text AS until), "
        "note AS (INSERT INTO guard.outbox (event_id, event) "
        "SELECT $9, (jsonb_build_object('account_id', up.key, 'kind', 'brute_force', "
        "'channels', jsonb_build_array('ingame') "
        "|| CASE WHEN a.email IS NULL THEN '[]'::jsonb ELSE '[\"email\"]'::jsonb END "
        "|| CASE WHEN a.phone IS NULL THEN '[]'::jsonb ELSE '[\"sms\"]'::jsonb END, "
        "'contacts', jsonb_strip_nulls(jsonb_build_object('email', a.email, 'phone', a.phone)), "
        "'params', jsonb_build_object('failures', up.failures, 'wait_minutes', "
        "greatest(1, ceil(extract(epoch FROM up.locked_until - now()) / 60))::int), "
        "'dedupe_key', $9::text) "
        "|| CASE WHEN a.lang IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('lang', a.lang) "
        "END)::text "
        "FROM up LEFT JOIN guard.accounts a ON a.account_id = up.key "
        "WHERE up.kind = 'account' AND up.failures = $4::int AND up.locked_until > now() "
        "AND $10::bool) "
        "SELECT kind, key, failures::text AS failures, until FROM up";
    json_t *rows = NULL;
    char err[512];
    int rc = db_exec(g->db, sql, p, 10, &rows, NULL, err, sizeof(err));
    if (rc != DB_OK) {
        item_db_fail(it, rc, err);
        return;
    }
    struct throttle *t = g->throttle;
    char key[ID_MAX + INET6_ADDRSTRLEN + 4];
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        bool is_account = strcmp(row_str(rows, i, "kind"), "account") == 0;
        if (is_account) {
            maybe_set_locked(t, account);
        }
        key_of(is_account ? 'a' : 'i', row_str(rows, i, "key"), key, sizeof(key));
        entry_set_locked(t, key, atoll(row_str(rows, i, "until")));
    }
    pthread_mutex_unlock(&t->mu);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        long long until = atoll(row_str(rows, i, "until"));
        if (until > now_ms()) {
            bool is_account = strcmp(row_str(rows, i, "kind"), "account") == 0;
            long long thr = config_int(g->cfg, is_account ? "brute_force.account_failures"
                                                          : "brute_force.address_failures");
            bool is_start = atoll(row_str(rows, i, "failures")) == thr;
            char trace_id[33];
            log_ev(LOG_LEVEL_INFO, trace_id_of(it->traceparent, trace_id), it->id,
                   "brute force: %s %s throttled after %s failures (%s)%s",
                   row_str(rows, i, "kind"), row_str(rows, i, "key"), row_str(rows, i, "failures"),
                   reason, is_start ? ": a new episode" : "");
            metric_inc(is_account ? g->m_throttled_account : g->m_throttled_address);
            if (is_start) {
                metric_inc(is_account ? g->m_throttle_starts_account
                                      : g->m_throttle_starts_address);
            }
        }
    }
    json_decref(rows);
}

/* One login.failed event, or a batch of them. */
static void handle_failed(struct http_exchange *ex, void *arg)
{
    struct guard *g = arg;
    const struct delivery_rules rules = {
        .secret = g->bus_secret,
        .needs_event_id = true,
        .event_id_max = DELIVERY_ID_MAX,
        .refusal = {.message = "account_id, ip, ts and reason are required"},
    };
    struct delivery_batch b;
    if (delivery_accept_any(ex, &rules, &b) != 0) {
        return;
    }
    delivery_decide_all(&b, count_failure, g);
    delivery_answer(ex, &b);
}

void throttle_routes(struct http_server *srv, struct guard *g)
{
    http_server_route(srv, "POST", "/v1/deliveries/login.failed", handle_failed, g,
                      DELIVERY_MAX_BODY_BYTES);
}
