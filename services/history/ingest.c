/* ingest.c - deliveries into history (see history.h).
 *
 * Both routes take a single delivery or a batch (CloudEvents batched mode, delivery.h): every
 * event of a delivery is validated first, and one invalid event refuses the whole delivery with
 * nothing written (a batch then comes again one event at a time, see delivery_answer()).
 *
 * Logins: the handler copies each event's fields into a `struct pending` row, all rows of one
 * delivery tied to one `struct group` that holds the exchange, still open, and queues them.
 * Batcher threads take up to batch_max queued rows (waiting at most batch_wait_ms after the first
 * one for more), write them with one INSERT ... SELECT FROM unnest (an array per column; the
 * same statement whatever the batch's size) ON CONFLICT DO NOTHING in one
 * transaction, and only then set each row's outcome; whoever settles a group's last row answers
 * it: 200 {"stored":true} for a single delivery, 204 for a batch (also for duplicates: the row is
 * there), 503 + Retry-After when the database is unavailable (the bus retries; the insert is
 * idempotent so a retry is safe even when the commit did happen but its answer was lost). A
 * group's rows may be split across two INSERTs; one failed row fails the group.
 *
 * Actions: one upsert per event into history.actions (with its reason codes), answered
 * synchronously. Account events (guard's locks, unlocks, settings changes; topic account.event):
 * one insert per event into history.events, idempotent on the event id. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actions.h"
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

/* One delivery (a single event or a batch) whose rows are queued. write_batch sets a row's item
 * outcome before it decrements n_left under ingest.mu, so whoever takes n_left to 0 sees every
 * outcome; it answers the exchange and frees the group. */
struct group {
    struct http_exchange *ex;
    struct delivery_batch batch;
    unsigned n_left;         /* rows not written yet; guarded by ingest.mu */
    struct group *next_done; /* write_batch's list of groups to answer */
};

struct pending {
    struct group *g;          /* the delivery of this row (not owned) */
    struct delivery_item *it; /* this row's item in g->batch, whose outcome write_batch sets */
    char *f[INGEST_COLS];     /* id, ts, account_id, ip, country, server, session_id, client */
    struct pending *next;
};

#define INGEST_DAYS_KNOWN 16

struct ingest {
    struct db *db;
    struct ingest_options o;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    struct pending *head, *tail;
    unsigned n_pending; /* rows queued */
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

/* Checks one login and copies its columns into a new row (it->event is borrowed, the row owns
 * copies). On refusal sets the item's outcome to 422 "invalid_event" and returns NULL. */
static struct pending *login_row_new(struct delivery_item *it)
{
    json_t *ev = it->event;
    const char *v[INGEST_COLS];
    char *client_json = NULL; /* the login schema's "client" is an object: kept as its JSON */
    struct pending *p = NULL;
    for (int i = 0; i < INGEST_COLS; i++) {
        json_t *c = json_object_get(ev, COLS[i]);
        if (i == INGEST_CLIENT_COL && (json_is_object(c) || json_is_array(c))) {
            client_json = json_dumps(c, JSON_COMPACT);
            if (!client_json || strlen(client_json) > INGEST_CLIENT_MAX) {
                delivery_item_fail(it, 422, "invalid_event", "\"client\" is too large");
                goto out;
            }
            v[i] = client_json;
            continue;
        }
        if (get_str(ev, COLS[i], &v[i]) != 0) {
            delivery_item_fail(it, 422, "invalid_event", "\"%s\" must be a short string", COLS[i]);
            goto out;
        }
    }
    if (!v[0] || !*v[0]) {
        v[0] = it->id; /* login_id is the original login's id */
    }
    const char *missing = !v[0] || !*v[0]   ? "login_id"
                          : !v[1]           ? "ts"
                          : !v[2] || !*v[2] ? "account_id"
                          : !v[3]           ? "ip"
                          : !v[4]           ? "country"
                                            : NULL;
    if (missing) {
        delivery_item_fail(it, 422, "invalid_event", "\"%s\" is required", missing);
        goto out;
    }
    if (!valid_ts(v[1])) {
        delivery_item_fail(it, 422, "invalid_event", "\"ts\" is not an RFC 3339 time");
        goto out;
    }
    p = xcalloc(1, sizeof(*p));
    p->it = it;
    for (int i = 0; i < INGEST_COLS; i++) {
        p->f[i] = v[i] ? xstrdup(v[i]) : NULL;
    }
out:
    free(client_json);
    return p;
}

/* A delivery with a refused event writes nothing. Its other events are marked accepted (200, no
 * output) so that delivery_answer() reports the refusal (422 "invalid_event" for a single
 * delivery, 422 "batch_refused" naming the first refused event for a batch) instead of taking an
 * undecided event for a failure to retry. */
static void settle_refused(struct delivery_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i].status == 0) {
            b->items[i].status = 200;
        }
    }
}

/* Sets an item's outcome from a db_exec result; what names the event in the 500 message. A
 * stored event answers 200 {"stored":true} when single (as before batches); a batch of them 204:
 * the routes are one-way, nothing is published. */
static void set_outcome(struct delivery_item *it, bool is_batch, int rc, const char *what)
{
    if (rc == DB_OK) {
        it->status = 200;
        it->output = is_batch ? NULL : json_pack("{s:b}", "stored", 1);
    } else if (rc == DB_EUNAVAILABLE) {
        delivery_item_fail(it, 503, "db_unavailable", "the database is unavailable; retry later");
        it->retry_after_s = 1;
    } else {
        delivery_item_fail(it, 500, "db_error", "the %s could not be stored", what);
    }
}

static void rows_free(struct pending *p)
{
    struct pending *next;
    for (; p; p = next) {
        next = p->next;
        pending_free(p);
    }
}

static void group_answer(struct group *g)
{
    delivery_answer(g->ex, &g->batch);
    free(g);
}

static void handle_login(struct http_exchange *ex, void *arg)
{
    struct ingest *in = arg;
    const struct delivery_rules rules = {.secret = in->o.bus_secret};
    struct group *g = xcalloc(1, sizeof(*g));
    if (delivery_accept_any(ex, &rules, &g->batch) != 0) {
        free(g);
        return;
    }
    g->ex = ex;
    struct pending *rows = NULL, *last = NULL;
    bool is_refused = false;
    for (size_t i = 0; i < g->batch.n; i++) {
        struct pending *p = login_row_new(&g->batch.items[i]);
        if (!p) {
            is_refused = true;
            continue;
        }
        p->g = g;
        if (last) {
            last->next = p;
        } else {
            rows = p;
        }
        last = p;
    }
    if (is_refused) {
        settle_refused(&g->batch);
        goto answer;
    }
    unsigned n = (unsigned)g->batch.n;
    pthread_mutex_lock(&in->mu);
    /* The group is queued whole or not at all. One larger than max_pending is taken when nothing
     * is queued (else it would be refused forever): the queue stays bounded by max_pending plus
     * one batch. */
    int closing = in->closing;
    if (closing || (in->n_pending > 0 && in->n_pending + n > in->o.max_pending)) {
        pthread_mutex_unlock(&in->mu);
        for (size_t i = 0; i < g->batch.n; i++) {
            struct delivery_item *it = &g->batch.items[i];
            delivery_item_fail(it, 503, closing ? "shutting_down" : "overloaded",
                               "history is %s; retry later", closing ? "stopping" : "overloaded");
            it->retry_after_s = 1;
        }
        goto answer;
    }
    g->n_left = n;
    if (in->tail) {
        in->tail->next = rows;
    } else {
        in->head = rows;
    }
    in->tail = last;
    in->n_pending += n;
    pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
    return; /* answered by a batcher thread; g may already be gone */
answer:
    rows_free(rows);
    group_answer(g);
}

/* Writes one batch of rows; sets their outcomes, answers the groups whose last row this was;
 * frees the rows. */
static void write_batch(struct ingest *in, struct pending *batch, unsigned n)
{
    char err[512];
    /* one array per column (db_array_literal): the statement's text, and so its planning, is
     * the same whatever the batch's size (a VALUES list of 8 parameters a row was planned anew
     * for every size, up to 800 parameters) */
    const char **col = xcalloc(n, sizeof(*col));
    struct buf arrays[INGEST_COLS];
    const char *params[INGEST_COLS];
    for (int c = 0; c < INGEST_COLS; c++) {
        unsigned i = 0;
        for (struct pending *p = batch; p; p = p->next) {
            col[i++] = p->f[c];
        }
        buf_init(&arrays[c], 0);
        db_array_literal(&arrays[c], col, n);
        params[c] = arrays[c].data;
    }
    free(col);
    const char *sql = "INSERT INTO history.logins (id, ts, account_id, ip, country, server, "
                      "session_id, client) "
                      "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], "
                      "$5::text[], $6::text[], $7::text[], $8::text[]) "
                      "ON CONFLICT DO NOTHING";
    const char *ts_param[1] = {params[1]};
    const int k = INGEST_COLS;

    bool known = true;
    for (struct pending *p = batch; p && known; p = p->next) {
        known = day_known(in, utc_day(p->f[1]));
    }
    int rc = DB_EQUERY;
    if (known) {
        rc = db_exec(in->db, sql, params, k, NULL, NULL, err, sizeof(err));
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
            {sql, params, k},
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
        log_warn("database unavailable, %u rows answered 503: %s", n, err);
    } else {
        log_error("batch insert of %u rows failed: %s", n, err);
    }
    for (struct pending *p = batch; p; p = p->next) {
        set_outcome(p->it, p->g->batch.is_batch, rc, "login");
    }
    struct group *done = NULL;
    pthread_mutex_lock(&in->mu);
    for (struct pending *p = batch; p; p = p->next) {
        if (--p->g->n_left == 0) {
            p->g->next_done = done;
            done = p->g;
        }
    }
    pthread_mutex_unlock(&in->mu);
    rows_free(batch);
    struct group *next;
    for (struct group *g = done; g; g = next) {
        next = g->next_done;
        group_answer(g);
    }
    for (int c = 0; c < INGEST_COLS; c++) {
        buf_release(&arrays[c]);
    }
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

#define INGEST_REASONS_MAX 16

/* The reasons of an account.action event as a JSON array text (caller frees), NULL when absent;
 * -1 when not an array of at most INGEST_REASONS_MAX short strings. */
static int reasons_json(json_t *ev, char **out)
{
    json_t *r = json_object_get(ev, "reasons");
    *out = NULL;
    if (!r || json_is_null(r)) {
        return 0;
    }
    if (!json_is_array(r) || json_array_size(r) > INGEST_REASONS_MAX) {
        return -1;
    }
    for (size_t i = 0; i < json_array_size(r); i++) {
        json_t *v = json_array_get(r, i);
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64) {
            return -1;
        }
    }
    *out = json_dumps(r, JSON_COMPACT);
    return 0;
}

/* The fields of an account.action event (params[4] the reasons' JSON, heap, NULL when absent);
 * -1 when it is not a valid one (nothing to free). */
static int action_fields(json_t *ev, const char *params[5])
{
    const char *login_id = NULL, *account_id = NULL, *action = NULL, *ts = NULL;
    char *reasons = NULL;
    if (get_str(ev, "login_id", &login_id) != 0 || get_str(ev, "account_id", &account_id) != 0 ||
        get_str(ev, "action", &action) != 0 || get_str(ev, "ts", &ts) != 0 || !login_id ||
        !*login_id || !account_id || !*account_id || !action || action_index(action) < 0 ||
        (ts && !valid_ts(ts)) || reasons_json(ev, &reasons) != 0) {
        return -1;
    }
    params[0] = login_id;
    params[1] = account_id;
    params[2] = action;
    params[3] = ts;
    params[4] = reasons;
    return 0;
}

static void handle_action(struct http_exchange *ex, void *arg)
{
    struct ingest *in = arg;
    char err[512];
    static const char INVALID[] = "an account.action event needs login_id, account_id and a known "
                                  "action (and reasons, when given, an array of short strings)";
    const struct delivery_rules rules = {.secret = in->o.bus_secret,
                                         .refusal = {.message = INVALID}};
    struct delivery_batch b;
    if (delivery_accept_any(ex, &rules, &b) != 0) {
        return;
    }
    const char *params[5];
    bool is_refused = false;
    for (size_t i = 0; i < b.n; i++) {
        if (action_fields(b.items[i].event, params) != 0) {
            delivery_item_fail(&b.items[i], 422, "invalid_event", "%s", INVALID);
            is_refused = true;
        } else {
            free((char *)params[4]);
        }
    }
    if (is_refused) {
        settle_refused(&b);
        goto answer;
    }
    int rc = DB_OK;
    for (size_t i = 0; i < b.n; i++) {
        /* After a failure the rest is not tried: the batch is answered as failed and retried. */
        if (rc == DB_OK) {
            action_fields(b.items[i].event, params);
            /* The latest action wins; the row may come before its login (see 001_logins.sql). */
            rc = db_exec(
                in->db,
                "INSERT INTO history.actions (login_id, account_id, action, ts, reasons) "
                "VALUES ($1, $2, $3, COALESCE($4::timestamptz, now()), "
                "CASE WHEN $5::json IS NULL THEN NULL "
                "ELSE ARRAY(SELECT json_array_elements_text($5::json)) END) "
                "ON CONFLICT (account_id, login_id) DO UPDATE SET action = EXCLUDED.action, "
                "ts = EXCLUDED.ts, reasons = EXCLUDED.reasons",
                params, 5, NULL, NULL, err, sizeof(err));
            free((char *)params[4]);
            if (rc != DB_OK && rc != DB_EUNAVAILABLE) {
                log_error("action upsert failed: %s", err);
            }
        }
        set_outcome(&b.items[i], b.is_batch, rc, "action");
    }
answer:
    delivery_answer(ex, &b);
}

/* The fields of an account.event event (guard's locks, unlocks and settings changes); -1 when it
 * is not a valid one. params: id, account_id, ts, kind, actor, change, login_id. */
static int event_fields(struct delivery_item *it, const char *params[7])
{
    json_t *ev = it->event;
    const char *account_id = NULL, *ts = NULL, *kind = NULL, *actor = NULL, *change = NULL,
               *login_id = NULL;
    if (!it->id || !*it->id || strlen(it->id) > INGEST_FIELD_MAX ||
        get_str(ev, "account_id", &account_id) != 0 || get_str(ev, "ts", &ts) != 0 ||
        get_str(ev, "kind", &kind) != 0 || get_str(ev, "by", &actor) != 0 ||
        get_str(ev, "change", &change) != 0 || get_str(ev, "login_id", &login_id) != 0 ||
        !account_id || !*account_id || !ts || !valid_ts(ts) || !kind || !actor ||
        (strcmp(kind, "locked") != 0 && strcmp(kind, "unlocked") != 0 &&
         strcmp(kind, "settings_changed") != 0) ||
        (strcmp(actor, "policy") != 0 && strcmp(actor, "player") != 0 &&
         strcmp(actor, "support") != 0)) {
        return -1;
    }
    params[0] = it->id;
    params[1] = account_id;
    params[2] = ts;
    params[3] = kind;
    params[4] = actor;
    params[5] = change;
    params[6] = login_id;
    return 0;
}

static void handle_event(struct http_exchange *ex, void *arg)
{
    struct ingest *in = arg;
    char err[512];
    static const char INVALID[] =
        "an account.event needs an id, account_id, ts, kind (locked, unlocked, settings_changed) "
        "and by (policy, player, support)";
    const struct delivery_rules rules = {.secret = in->o.bus_secret,
                                         .refusal = {.message = INVALID}};
    struct delivery_batch b;
    if (delivery_accept_any(ex, &rules, &b) != 0) {
        return;
    }
    const char *params[7];
    bool is_refused = false;
    for (size_t i = 0; i < b.n; i++) {
        if (event_fields(&b.items[i], params) != 0) {
            delivery_item_fail(&b.items[i], 422, "invalid_event", "%s", INVALID);
            is_refused = true;
        }
    }
    if (is_refused) {
        settle_refused(&b);
        goto answer;
    }
    int rc = DB_OK;
    for (size_t i = 0; i < b.n; i++) {
        if (rc == DB_OK) {
            event_fields(&b.items[i], params);
            rc = db_exec(in->db,
                         "INSERT INTO history.events (id, account_id, ts, kind, actor, change, "
                         "login_id) VALUES ($1, $2, $3::timestamptz, $4, $5, $6, $7) "
                         "ON CONFLICT DO NOTHING",
                         params, 7, NULL, NULL, err, sizeof(err));
            if (rc != DB_OK && rc != DB_EUNAVAILABLE) {
                log_error("event insert failed: %s", err);
            }
        }
        set_outcome(&b.items[i], b.is_batch, rc, "event");
    }
answer:
    delivery_answer(ex, &b);
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
    http_server_route(s, "POST", "/v1/deliveries/login.checked", handle_login, in,
                      DELIVERY_MAX_BODY_BYTES);
    http_server_route(s, "POST", "/v1/deliveries/account.action", handle_action, in,
                      DELIVERY_MAX_BODY_BYTES);
    http_server_route(s, "POST", "/v1/deliveries/account.event", handle_event, in,
                      DELIVERY_MAX_BODY_BYTES);
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
