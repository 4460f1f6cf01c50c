/* ingest.c - deliveries into history (see history.h).
 *
 * Logins: the handler validates the event, copies its fields into a `struct pending` and queues it
 * with its exchange still open. Batcher threads take up to batch_max queued rows (waiting at most
 * batch_wait_ms after the first one for more), write them with one multi-row
 * INSERT ... ON CONFLICT DO NOTHING in one transaction, and only then answer every exchange of the
 * batch: 200 when committed (also for duplicates: the row is there), 503 + Retry-After when the
 * database is unavailable (the bus retries; the insert is idempotent so a retry is safe even when
 * the commit did happen but its answer was lost).
 *
 * Actions: one upsert per delivery into history.actions, answered synchronously. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "delivery.h"
#include "history.h"
#include "log.h"
#include "metrics.h"

#define INGEST_COLS 8
#define INGEST_FIELD_MAX 256
#define INGEST_CLIENT_COL 7    /* "client": free-form object of the login (stored as JSON) */
#define INGEST_CLIENT_MAX 4096 /* its largest JSON text */

struct pending {
    struct http_exchange *ex;
    char *f[INGEST_COLS]; /* id, ts, account_id, ip, country, server, session_id, client */
    struct pending *next;
};

#define INGEST_DAYS_KNOWN 16

struct ingest {
    struct db *db;
    struct ingest_options o;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    struct pending *head, *tail;
    unsigned n_pending;
    int closing;
    pthread_t *threads;
    struct metric *m_stored;
    struct metric *m_batches;
    struct metric *m_unavailable;
    struct metric *m_batch_size;
    /* UTC days whose partition this process has ensured: a batch within them is one INSERT in
     * autocommit (one round trip) instead of BEGIN, ensure_partitions, INSERT, COMMIT. */
    pthread_mutex_t days_mu;
    long days[INGEST_DAYS_KNOWN];
    unsigned n_days, next_day;
};

static const char *const COLS[INGEST_COLS] = {"login_id", "ts",     "account_id", "ip",
                                              "country",  "server", "session_id", "client"};

static void pending_free(struct pending *p)
{
    for (int i = 0; i < INGEST_COLS; i++) {
        free(p->f[i]);
    }
    free(p);
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* RFC 3339 date-time: 2026-11-25T06:00:00(.fff)?(Z|+hh:mm). */
static int valid_ts(const char *s)
{
    size_t n = strlen(s);
    if (n < 20 || n > 40 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2) ||
        s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2)) {
        return 0;
    }
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        int k = 0;
        while (*p >= '0' && *p <= '9') {
            p++;
            k++;
        }
        if (k == 0 || k > 9) {
            return 0;
        }
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        return 1;
    }
    return (*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2) &&
           p[6] == '\0';
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The UTC day (days since 1970-01-01) of a ts that passed valid_ts(). */
static long utc_day(const char *s)
{
    int y = num(s, 4), m = num(s + 5, 2), d = num(s + 8, 2);
    /* days from civil (proleptic Gregorian), March-based year */
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = era * 146097 + doe - 719468;
    long minutes = days * 1440 + num(s + 11, 2) * 60 + num(s + 14, 2);
    const char *p = s + 19;
    while (*p && *p != 'Z' && *p != 'z' && *p != '+' && *p != '-') {
        p++;
    }
    if (*p == '+' || *p == '-') {
        long off = num(p + 1, 2) * 60 + num(p + 4, 2);
        minutes -= *p == '+' ? off : -off;
    }
    return minutes >= 0 ? minutes / 1440 : -((-minutes + 1439) / 1440);
}

static bool day_known(struct ingest *in, long day)
{
    bool known = false;
    pthread_mutex_lock(&in->days_mu);
    for (unsigned i = 0; i < in->n_days && !known; i++) {
        known = in->days[i] == day;
    }
    pthread_mutex_unlock(&in->days_mu);
    return known;
}

static void day_remember(struct ingest *in, long day)
{
    if (day_known(in, day)) {
        return;
    }
    pthread_mutex_lock(&in->days_mu);
    in->days[in->next_day] = day;
    in->next_day = (in->next_day + 1) % INGEST_DAYS_KNOWN;
    if (in->n_days < INGEST_DAYS_KNOWN) {
        in->n_days++;
    }
    pthread_mutex_unlock(&in->days_mu);
}

static void days_forget(struct ingest *in)
{
    pthread_mutex_lock(&in->days_mu);
    in->n_days = in->next_day = 0;
    pthread_mutex_unlock(&in->days_mu);
}

/* A string field (NULL when absent or null); -1 when present with another type or too long. */
static int get_str(json_t *ev, const char *key, const char **out)
{
    json_t *v = json_object_get(ev, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) > INGEST_FIELD_MAX) {
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static void handle_login(struct http_exchange *ex, void *arg)
{
    struct ingest *in = arg;
    const struct delivery_rules rules = {.secret = in->o.bus_secret};
    json_t *ev = NULL;
    const char *ce_id = NULL;
    if (delivery_accept(ex, &rules, &ev, &ce_id) != 0) {
        return;
    }
    const char *v[INGEST_COLS];
    char *client_json = NULL; /* the login schema's "client" is an object: kept as its JSON */
    for (int i = 0; i < INGEST_COLS; i++) {
        json_t *c = json_object_get(ev, COLS[i]);
        if (i == INGEST_CLIENT_COL && (json_is_object(c) || json_is_array(c))) {
            client_json = json_dumps(c, JSON_COMPACT);
            if (!client_json || strlen(client_json) > INGEST_CLIENT_MAX) {
                free(client_json);
                http_respond_error(ex, 422, "invalid_event", NULL, "\"client\" is too large");
                json_decref(ev);
                return;
            }
            v[i] = client_json;
            continue;
        }
        if (get_str(ev, COLS[i], &v[i]) != 0) {
            http_respond_error(ex, 422, "invalid_event", NULL, "\"%s\" must be a short string",
                               COLS[i]);
            free(client_json);
            json_decref(ev);
            return;
        }
    }
    if (!v[0] || !*v[0]) {
        v[0] = ce_id; /* login_id is the original login's id */
    }
    const char *missing = !v[0] || !*v[0]   ? "login_id"
                          : !v[1]           ? "ts"
                          : !v[2] || !*v[2] ? "account_id"
                          : !v[3]           ? "ip"
                          : !v[4]           ? "country"
                                            : NULL;
    if (missing) {
        http_respond_error(ex, 422, "invalid_event", NULL, "\"%s\" is required", missing);
        free(client_json);
        json_decref(ev);
        return;
    }
    if (!valid_ts(v[1])) {
        http_respond_error(ex, 422, "invalid_event", NULL, "\"ts\" is not an RFC 3339 time");
        free(client_json);
        json_decref(ev);
        return;
    }
    struct pending *p = xcalloc(1, sizeof(*p));
    p->ex = ex;
    for (int i = 0; i < INGEST_COLS; i++) {
        p->f[i] = v[i] ? xstrdup(v[i]) : NULL;
    }
    free(client_json);
    json_decref(ev);

    pthread_mutex_lock(&in->mu);
    if (in->closing || in->n_pending >= in->o.max_pending) {
        int closing = in->closing;
        pthread_mutex_unlock(&in->mu);
        pending_free(p);
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, closing ? "shutting_down" : "overloaded", NULL,
                           "history is %s; retry later", closing ? "stopping" : "overloaded");
        return;
    }
    if (in->tail) {
        in->tail->next = p;
    } else {
        in->head = p;
    }
    in->tail = p;
    in->n_pending++;
    pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
    /* answered by a batcher thread */
}

/* Writes one batch; answers every exchange in it; frees it. */
static void write_batch(struct ingest *in, struct pending *batch, unsigned n)
{
    struct buf sql;
    struct buf tss;
    char err[512];
    const char **params = xcalloc((size_t)n * INGEST_COLS, sizeof(*params));
    const char *ts_param[1];

    buf_init(&sql, 1 << 20);
    buf_init(&tss, 1 << 20);
    buf_appends(&sql, "INSERT INTO history.logins (id, ts, account_id, ip, country, server, "
                      "session_id, client) VALUES ");
    buf_appends(&tss, "{");
    unsigned k = 0;
    unsigned i = 0;
    for (struct pending *p = batch; p; p = p->next, i++) {
        buf_appends(&sql, i ? ",(" : "(");
        for (int c = 0; c < INGEST_COLS; c++) {
            params[k++] = p->f[c];
            buf_appendf(&sql, "%s$%u%s", c ? "," : "", k, c == 1 ? "::timestamptz" : "");
        }
        buf_appendf(&sql, ")");
        /* ts values are validated RFC 3339 (no quotes, commas or braces): a safe array literal */
        buf_appendf(&tss, "%s%s", i ? "," : "", p->f[1]);
    }
    buf_appends(&sql, " ON CONFLICT DO NOTHING");
    buf_appends(&tss, "}");
    ts_param[0] = tss.data;

    bool known = true;
    for (struct pending *p = batch; p && known; p = p->next) {
        known = day_known(in, utc_day(p->f[1]));
    }
    int rc = DB_EQUERY;
    if (known) {
        rc = db_exec(in->db, sql.data, params, (int)k, NULL, NULL, err, sizeof(err));
        if (rc != DB_OK && rc != DB_EUNAVAILABLE) {
            /* e.g. retention dropped a partition this process had ensured: ensure and retry */
            log_warn("batch insert without ensuring partitions failed, retrying: %s", err);
            days_forget(in);
            known = false;
        }
    }
    if (!known) {
        struct db_stmt stmts[2] = {
            {"SELECT history.ensure_partitions($1::timestamptz[])", ts_param, 1},
            {sql.data, params, (int)k},
        };
        rc = db_exec_tx(in->db, stmts, 2, err, sizeof(err));
        for (struct pending *p = batch; p && rc == DB_OK; p = p->next) {
            day_remember(in, utc_day(p->f[1]));
        }
    }
    metric_inc(in->m_batches);
    metric_observe(in->m_batch_size, n);
    if (rc == DB_OK) {
        metric_add(in->m_stored, n);
    } else if (rc == DB_EUNAVAILABLE) {
        metric_add(in->m_unavailable, n);
        log_warn("database unavailable, %u deliveries answered 503: %s", n, err);
    } else {
        log_error("batch insert of %u rows failed: %s", n, err);
    }
    struct pending *next;
    for (struct pending *p = batch; p; p = next) {
        next = p->next;
        if (rc == DB_OK) {
            http_respond(p->ex, 200, "application/json", "{\"stored\":true}", 15);
        } else if (rc == DB_EUNAVAILABLE) {
            http_add_header(p->ex, "Retry-After", "1");
            http_respond_error(p->ex, 503, "db_unavailable", NULL,
                               "the database is unavailable; retry later");
        } else {
            http_respond_error(p->ex, 500, "db_error", NULL, "the login could not be stored");
        }
        pending_free(p);
    }
    free(params);
    buf_release(&sql);
    buf_release(&tss);
}

static void add_ms(struct timespec *t, unsigned ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static void *batcher(void *arg)
{
    struct ingest *in = arg;
    pthread_mutex_lock(&in->mu);
    for (;;) {
        while (!in->head && !in->closing) {
            pthread_cond_wait(&in->cv, &in->mu);
        }
        if (!in->head && in->closing) {
            break;
        }
        /* Give concurrent deliveries a moment to join this batch. */
        if (in->n_pending < in->o.batch_max && !in->closing && in->o.batch_wait_ms > 0) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            add_ms(&until, in->o.batch_wait_ms);
            while (in->n_pending < in->o.batch_max && !in->closing && in->head) {
                if (pthread_cond_timedwait(&in->cv, &in->mu, &until) == ETIMEDOUT) {
                    break;
                }
            }
            if (!in->head) {
                continue; /* another batcher took them */
            }
        }
        struct pending *batch = in->head;
        struct pending *last = batch;
        unsigned n = 1;
        while (last->next && n < in->o.batch_max) {
            last = last->next;
            n++;
        }
        in->head = last->next;
        if (!in->head) {
            in->tail = NULL;
        }
        last->next = NULL;
        in->n_pending -= n;
        if (in->head) {
            pthread_cond_signal(&in->cv); /* more work for another batcher */
        }
        pthread_mutex_unlock(&in->mu);
        write_batch(in, batch, n);
        pthread_mutex_lock(&in->mu);
    }
    pthread_mutex_unlock(&in->mu);
    return NULL;
}

static int valid_action(const char *a)
{
    static const char *const ACTIONS[] = {"none", "notify", "kick", "block_abroad", "lock"};
    for (size_t i = 0; i < sizeof(ACTIONS) / sizeof(ACTIONS[0]); i++) {
        if (strcmp(a, ACTIONS[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static void handle_action(struct http_exchange *ex, void *arg)
{
    struct ingest *in = arg;
    char err[512];
    static const char INVALID[] =
        "an account.action event needs login_id, account_id and a known action";
    const struct delivery_rules rules = {.secret = in->o.bus_secret,
                                         .refusal = {.message = INVALID}};
    json_t *ev = NULL;
    if (delivery_accept(ex, &rules, &ev, NULL) != 0) {
        return;
    }
    const char *login_id = NULL, *account_id = NULL, *action = NULL, *ts = NULL;
    if (get_str(ev, "login_id", &login_id) != 0 || get_str(ev, "account_id", &account_id) != 0 ||
        get_str(ev, "action", &action) != 0 || get_str(ev, "ts", &ts) != 0 || !login_id ||
        !*login_id || !account_id || !*account_id || !action || !valid_action(action) ||
        (ts && !valid_ts(ts))) {
        json_decref(ev);
        http_respond_error(ex, 422, "invalid_event", NULL, "%s", INVALID);
        return;
    }
    const char *params[] = {login_id, account_id, action, ts};
    /* The latest action wins; the row may come before its login (see 001_logins.sql). */
    int rc = db_exec(in->db,
                     "INSERT INTO history.actions (login_id, account_id, action, ts) "
                     "VALUES ($1, $2, $3, COALESCE($4::timestamptz, now())) "
                     "ON CONFLICT (login_id) DO UPDATE SET action = EXCLUDED.action, "
                     "ts = EXCLUDED.ts",
                     params, 4, NULL, NULL, err, sizeof(err));
    json_decref(ev);
    if (rc == DB_OK) {
        http_respond(ex, 200, "application/json", "{\"stored\":true}", 15);
    } else if (rc == DB_EUNAVAILABLE) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_error(ex, 503, "db_unavailable", NULL,
                           "the database is unavailable; retry later");
    } else {
        log_error("action upsert failed: %s", err);
        http_respond_error(ex, 500, "db_error", NULL, "the action could not be stored");
    }
}

struct ingest *ingest_new(struct db *d, struct http_server *s, const struct ingest_options *o)
{
    struct ingest *in = xcalloc(1, sizeof(*in));
    in->db = d;
    in->o = *o;
    if (in->o.batch_max == 0) {
        in->o.batch_max = 100;
    }
    if (in->o.workers == 0) {
        in->o.workers = 2;
    }
    if (in->o.max_pending == 0) {
        in->o.max_pending = 10000;
    }
    pthread_mutex_init(&in->mu, NULL);
    pthread_mutex_init(&in->days_mu, NULL);
    pthread_cond_init(&in->cv, NULL);
    in->m_stored = metrics_counter("history_logins_written_total",
                                   "Login rows written (duplicates included)", NULL);
    in->m_batches = metrics_counter("history_batches_total", "Batch inserts attempted", NULL);
    in->m_unavailable = metrics_counter("history_unavailable_total",
                                        "Deliveries answered 503 (database unavailable)", NULL);
    static const double sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500};
    in->m_batch_size = metrics_histogram("history_batch_rows", "Rows per batch insert", NULL, sizes,
                                         sizeof(sizes) / sizeof(sizes[0]));
    in->threads = xcalloc(in->o.workers, sizeof(*in->threads));
    for (unsigned i = 0; i < in->o.workers; i++) {
        if (pthread_create(&in->threads[i], NULL, batcher, in) != 0) {
            log_error("cannot start batcher thread");
            abort();
        }
    }
    http_server_route(s, "POST", "/v1/deliveries/login.checked", handle_login, in, 64 * 1024);
    http_server_route(s, "POST", "/v1/deliveries/account.action", handle_action, in, 64 * 1024);
    return in;
}

void ingest_stop(struct ingest *in)
{
    if (!in || !in->threads) {
        return;
    }
    pthread_mutex_lock(&in->mu);
    in->closing = 1;
    pthread_cond_broadcast(&in->cv);
    pthread_mutex_unlock(&in->mu);
    for (unsigned i = 0; i < in->o.workers; i++) {
        pthread_join(in->threads[i], NULL);
    }
    free(in->threads);
    in->threads = NULL;
}

void ingest_free(struct ingest *in)
{
    if (!in) {
        return;
    }
    ingest_stop(in);
    pthread_cond_destroy(&in->cv);
    pthread_mutex_destroy(&in->mu);
    pthread_mutex_destroy(&in->days_mu);
    free(in);
}
