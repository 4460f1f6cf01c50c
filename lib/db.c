/* db.c - PostgreSQL access through libpq (see db.h): a fixed-size connection pool, parameterised
 * statements, error classification for the 503-and-retry contract, and migrations.
 *
 * Pool: `size` slots, each a PGconn or NULL (connected on demand). A caller takes a free slot
 * under the pool mutex (waiting on a condition variable when all are busy), uses it without the
 * lock, and gives it back. A connection that is found broken after a failure is closed and its
 * slot left NULL, so the next user reconnects: that is the whole reconnection strategy, and it is
 * safe because every statement is either idempotent for the caller or inside a transaction that
 * the server rolls back when the connection dies.
 *
 * Prepared statements: db_exec and db_exec_tx prepare each distinct SQL text once per connection
 * (up to DB_PREPARED_MAX of them, then plain) and execute it by name, so PostgreSQL parses,
 * analyses and (after a few executions, with a generic plan) plans it once instead of every time:
 * a third of the server's CPU in the product benchmark. The cache goes with the connection. */
#include "db.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "log.h"
#include "strmap.h"
#include "banned.h"

#define DB_MIGRATION_MAX_BYTES (4u << 20)
#define DB_MIGRATIONS_MAX 1000
#define DB_PREPARED_MAX 256 /* prepared statements per connection */

struct db {
    char *conninfo;
    unsigned size;
    PGconn **conns;       /* size slots; NULL = not connected; shared, under mu */
    unsigned char *busy;  /* size flags; shared, under mu */
    struct strmap **prep; /* size maps SQL text -> prepared statement name, each owned with its
                           * slot (a new connection starts empty) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Why the last connection attempt failed ("" after a success), so an operator reads libpq's
     * own reason (bad role, missing database, SSL mismatch, refused) once per change rather than
     * an endless "unreachable"; shared, under err_mu. */
    pthread_mutex_t err_mu;
    char last_error[512];
};

static char lib_version[24];

static void format_lib_version(void)
{
    int v = PQlibVersion(); /* e.g. 150005 for 15.5 (since 10: major * 10000 + minor) */
    snprintf(lib_version, sizeof lib_version, "%d.%d", v / 10000, v % 10000);
}

const char *db_lib_version(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, format_lib_version);
    return lib_version;
}

static void set_err(char *err, size_t err_len, const char *fmt, const char *a, const char *b)
{
    if (err && err_len > 0) {
        snprintf(err, err_len, fmt, a ? a : "", b ? b : "");
    }
}

struct db *db_new(const char *url, unsigned size, char *err, size_t err_len)
{
    char *perr = NULL;
    if (!url || !*url) {
        set_err(err, err_len, "empty database url%s%s", NULL, NULL);
        return NULL;
    }
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        set_err(err, err_len, "malformed database url: %s%s", perr ? perr : "parse error", NULL);
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(opts);

    struct db *d = xcalloc(1, sizeof(*d));
    d->size = size ? size : 4;
    d->conns = xcalloc(d->size, sizeof(*d->conns));
    d->busy = xcalloc(d->size, 1);
    d->prep = xcalloc(d->size, sizeof(*d->prep));
    for (unsigned i = 0; i < d->size; i++) {
        d->prep[i] = strmap_new();
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_mutex_init(&d->err_mu, NULL);
    /* The url is expanded at connect time with a bounded connect time (see db_connect). */
    d->conninfo = xstrdup(url);
    return d;
}

void db_free(struct db *d)
{
    if (!d) {
        return;
    }
    for (unsigned i = 0; i < d->size; i++) {
        if (d->conns[i]) {
            PQfinish(d->conns[i]);
        }
        strmap_free(d->prep[i]);
    }
    free(d->prep);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->err_mu);
    free(d->conns);
    free(d->busy);
    free(d->conninfo);
    free(d);
}

static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgres: %s", message);
}

/* Records the outcome of a connection attempt: libpq's message on failure (NULL on success). A
 * new reason is logged at error level once, and the first success after a failure at info, so
 * a wrong DATABASE_URL explains itself without flooding the log on every retry. */
static void note_connect(struct db *d, const char *failure)
{
    char text[sizeof d->last_error] = "";
    if (failure) {
        snprintf(text, sizeof text, "%s", failure);
        size_t n = strlen(text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) {
            text[--n] = '\0';
        }
        for (char *p = text; *p; p++) {
            if (*p == '\n') {
                *p = ' '; /* libpq's DETAIL/HINT lines: one log line */
            }
        }
        if (!*text) {
            snprintf(text, sizeof text, "connection failed");
        }
    }
    pthread_mutex_lock(&d->err_mu);
    bool is_new = strcmp(text, d->last_error) != 0;
    bool was_failing = d->last_error[0] != '\0';
    snprintf(d->last_error, sizeof d->last_error, "%s", text);
    pthread_mutex_unlock(&d->err_mu);
    if (is_new && failure) {
        log_error("database connection failed: %s", text);
    } else if (is_new && was_failing) {
        log_info("database connection established again");
    }
}

int db_last_error(struct db *d, char *out, size_t out_len)
{
    pthread_mutex_lock(&d->err_mu);
    snprintf(out, out_len, "%s", d->last_error);
    pthread_mutex_unlock(&d->err_mu);
    return out[0] ? -1 : 0;
}

static PGconn *db_connect(struct db *d)
{
    /* A bounded connect time so a dead server answers 503 quickly instead of hanging a handler.
     * libpq processes the arrays in order and the last value of a repeated keyword wins, so
     * connect_timeout here overrides one in the url. */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {d->conninfo, "3", "bus", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        note_connect(d, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        note_connect(d, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    note_connect(d, NULL);
    PQsetNoticeProcessor(c, notice_quiet, NULL);
    /* Every write we answer 2xx for must be durable when answered: a cluster (or a role or a
     * database) whose default is synchronous_commit = off loses acknowledged commits in a crash
     * (issue 21: 10-17 logins per postmaster SIGKILL). Only "off" is raised to "on": local,
     * remote_write and remote_apply are at least as durable on this server and are kept. */
    PGresult *res = PQexec(c, "SELECT set_config('synchronous_commit', 'on', false) "
                              "WHERE current_setting('synchronous_commit') = 'off'");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn("database connect: cannot set synchronous_commit: %s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        return NULL;
    }
    PQclear(res);
    return c;
}

/* Takes a slot (blocking while all are busy); returns its index. */
static unsigned pool_take(struct db *d)
{
    pthread_mutex_lock(&d->mu);
    for (;;) {
        /* Prefer a slot that already has a connection. */
        for (unsigned i = 0; i < d->size; i++) {
            if (!d->busy[i] && d->conns[i]) {
                d->busy[i] = 1;
                pthread_mutex_unlock(&d->mu);
                return i;
            }
        }
        for (unsigned i = 0; i < d->size; i++) {
            if (!d->busy[i]) {
                d->busy[i] = 1;
                pthread_mutex_unlock(&d->mu);
                return i;
            }
        }
        pthread_cond_wait(&d->cv, &d->mu);
    }
}

static void pool_give(struct db *d, unsigned i)
{
    pthread_mutex_lock(&d->mu);
    d->busy[i] = 0;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* The connection of slot i, connecting when needed; NULL when the server can't be reached. The
 * slot is owned by the caller (busy), so no lock is needed. */
static PGconn *slot_conn(struct db *d, unsigned i)
{
    PGconn *c = d->conns[i];
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
    }
    if (!c) {
        strmap_clear(d->prep[i]); /* a new connection has none */
    }
    if (!c) {
        c = db_connect(d);
    }
    d->conns[i] = c;
    return c;
}

static void slot_drop(struct db *d, unsigned i)
{
    if (d->conns[i]) {
        PQfinish(d->conns[i]);
        d->conns[i] = NULL;
    }
    strmap_clear(d->prep[i]);
}

/* Maps a failed result to DB_E*; drops the connection when it is no longer usable. */
static int classify(struct db *d, unsigned i, const PGresult *res, char *err, size_t err_len)
{
    PGconn *c = d->conns[i];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg) {
        msg = c ? PQerrorMessage(c) : "no connection";
    }
    set_err(err, err_len, "%s%s", msg, NULL);
    if (err && err_len > 0) {
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' ')) {
            err[--n] = '\0';
        }
    }
    int broken = !c || PQstatus(c) != CONNECTION_OK;
    if (broken || !state || strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
        strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 || strcmp(state, "53300") == 0 ||
        strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
        /* Connection-class errors, shutdown, too many connections, serialization/deadlock:
         * all worth retrying later. A missing SQLSTATE means the connection died. */
        if (broken || !state || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
            slot_drop(d, i);
        }
        return DB_EUNAVAILABLE;
    }
    if (strcmp(state, "23505") == 0) {
        return DB_ECONFLICT;
    }
    if (strcmp(state, "0A000") == 0 && strstr(msg, "cached plan") != NULL) {
        /* a prepared statement outlived a change of its table: start a fresh connection */
        slot_drop(d, i);
        return DB_EUNAVAILABLE;
    }
    return DB_EQUERY;
}

static int result_ok(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static json_t *result_rows(const PGresult *res)
{
    json_t *rows = json_array();
    int nr = PQntuples(res);
    int nf = PQnfields(res);
    for (int r = 0; r < nr; r++) {
        json_t *o = json_object();
        for (int f = 0; f < nf; f++) {
            json_t *v = PQgetisnull(res, r, f)
                            ? json_null()
                            : json_stringn(PQgetvalue(res, r, f), (size_t)PQgetlength(res, r, f));
            if (!v) {
                v = json_null(); /* not UTF-8: never expected for our schemas */
            }
            json_object_set_new(o, PQfname(res, f), v);
        }
        json_array_append_new(rows, o);
    }
    return rows;
}

static PGresult *run(PGconn *c, const char *sql, const char *const *params, int n_params)
{
    return PQexecParams(c, sql, n_params, NULL, params, NULL, NULL, 0);
}

/* Runs sql on slot i's connection as a prepared statement, preparing it on first use. A failed
 * preparation is returned as the statement's result (nothing is cached). */
static PGresult *run_prepared(struct db *d, unsigned i, const char *sql, const char *const *params,
                              int n_params)
{
    PGconn *c = d->conns[i];
    struct strmap *p = d->prep[i];
    const char *name = NULL;
    if (strmap_get(p, sql, &name)) {
        return PQexecPrepared(c, name, n_params, params, NULL, NULL, 0);
    }
    if (strmap_len(p) == DB_PREPARED_MAX) {
        return run(c, sql, params, n_params);
    }
    char fresh[24];
    snprintf(fresh, sizeof(fresh), "bus_%zu", strmap_len(p));
    PGresult *res = PQprepare(c, fresh, sql, n_params, NULL);
    if (!result_ok(res)) {
        return res;
    }
    PQclear(res);
    strmap_put(p, sql, fresh);
    return PQexecPrepared(c, fresh, n_params, params, NULL, NULL, 0);
}

int db_exec(struct db *d, const char *sql, const char *const *params, int n_params, json_t **rows,
            long *affected, char *err, size_t err_len)
{
    int rc = DB_OK;
    if (rows) {
        *rows = NULL;
    }
    if (affected) {
        *affected = 0;
    }
    unsigned i = pool_take(d);
    PGconn *c = slot_conn(d, i);
    if (!c) {
        set_err(err, err_len, "database unreachable%s%s", NULL, NULL);
        rc = DB_EUNAVAILABLE;
        goto out;
    }
    PGresult *res = run_prepared(d, i, sql, params, n_params);
    if (!result_ok(res)) {
        rc = classify(d, i, res, err, err_len);
        PQclear(res);
        goto out;
    }
    if (rows) {
        *rows = result_rows(res);
    }
    if (affected) {
        const char *t = PQcmdTuples(res);
        *affected = (t && *t) ? strtol(t, NULL, 10) : (long)PQntuples(res);
    }
    PQclear(res);
out:
    pool_give(d, i);
    return rc;
}

/* Runs a plain command on c; on failure classifies it. */
static int simple(struct db *d, unsigned i, const char *sql, char *err, size_t err_len)
{
    PGresult *res = PQexec(d->conns[i], sql);
    int rc = result_ok(res) ? DB_OK : classify(d, i, res, err, err_len);
    PQclear(res);
    return rc;
}

int db_exec_tx(struct db *d, const struct db_stmt *stmts, size_t n, char *err, size_t err_len)
{
    if (n == 1) { /* one statement is a transaction by itself: no BEGIN and COMMIT round trips */
        return db_exec(d, stmts[0].sql, stmts[0].params, stmts[0].n_params, NULL, NULL, err,
                       err_len);
    }
    int rc = DB_OK;
    unsigned i = pool_take(d);
    PGconn *c = slot_conn(d, i);
    if (!c) {
        set_err(err, err_len, "database unreachable%s%s", NULL, NULL);
        rc = DB_EUNAVAILABLE;
        goto out;
    }
    rc = simple(d, i, "BEGIN", err, err_len);
    if (rc != DB_OK) {
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        PGresult *res = run_prepared(d, i, stmts[k].sql, stmts[k].params, stmts[k].n_params);
        if (!result_ok(res)) {
            rc = classify(d, i, res, err, err_len);
            PQclear(res);
            goto rollback;
        }
        PQclear(res);
    }
    rc = simple(d, i, "COMMIT", err, err_len);
    goto out;
rollback:
    if (d->conns[i]) {
        char ignored[64];
        (void)simple(d, i, "ROLLBACK", ignored, sizeof(ignored));
    }
out:
    pool_give(d, i);
    return rc;
}

int db_ping(struct db *d)
{
    json_t *rows = NULL;
    char err[256];
    int rc = db_exec(d, "SELECT 1", NULL, 0, &rows, NULL, err, sizeof(err));
    json_decref(rows);
    return rc == DB_OK;
}

bool db_ready(void *ctx, const char **reason)
{
    if (!db_ping(ctx)) {
        *reason = "database unreachable";
        return false;
    }
    return true;
}

/* ---- migrations ---- */

static int valid_ident(const char *s)
{
    if (!s || !*s || strlen(s) > 63) {
        return 0;
    }
    for (const char *p = s; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || *p == '_' || (p != s && *p >= '0' && *p <= '9');
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_migration_name(const char *n)
{
    size_t len = strlen(n);
    return len > 8 && n[0] >= '0' && n[0] <= '9' && n[1] >= '0' && n[1] <= '9' && n[2] >= '0' &&
           n[2] <= '9' && n[3] == '_' && strcmp(n + len - 4, ".sql") == 0;
}

static char *read_file(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = xmalloc(DB_MIGRATION_MAX_BYTES + 1);
    size_t n = fread(text, 1, DB_MIGRATION_MAX_BYTES + 1, f);
    fclose(f);
    if (n > DB_MIGRATION_MAX_BYTES) {
        set_err(err, err_len, "migration %s is larger than 4 MiB%s", path, NULL);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

/* The migration files of dir in the order they apply (heap array of heap strings, *n of them;
 * free with free_names), or NULL with err set. */
static char **list_migrations(const char *dir, size_t *n, char *err, size_t err_len)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        set_err(err, err_len, "cannot open migrations dir %s: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = xcalloc(DB_MIGRATIONS_MAX, sizeof(*names));
    size_t n_names = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL && n_names < DB_MIGRATIONS_MAX) {
        if (is_migration_name(de->d_name)) {
            names[n_names++] = xstrdup(de->d_name);
        }
    }
    closedir(dh);
    qsort(names, n_names, sizeof(*names), cmp_str);
    *n = n_names;
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t k = 0; names && k < n; k++) {
        free(names[k]);
    }
    free(names);
}

/* What db_migrate and db_migration_status do first: check the schema name, list dir's
 * migrations and take a connection. Returns the names (NULL with *rc = DB_EQUERY and err set when
 * the name or the folder is bad); *c is the slot *i's connection, or NULL with *rc =
 * DB_EUNAVAILABLE and libpq's reason in err (the slot is still taken: give it back). */
static char **migration_start(struct db *d, const char *schema, const char *dir, size_t *n_names,
                              unsigned *i, PGconn **c, int *rc, char *err, size_t err_len)
{
    *rc = DB_EQUERY;
    *c = NULL;
    if (!valid_ident(schema)) {
        set_err(err, err_len, "invalid schema name '%s'%s", schema, NULL);
        return NULL;
    }
    char **names = list_migrations(dir, n_names, err, err_len);
    if (!names) {
        return NULL;
    }
    *rc = DB_OK;
    *i = pool_take(d);
    *c = slot_conn(d, *i);
    if (!*c) {
        char why[sizeof d->last_error];
        db_last_error(d, why, sizeof why);
        set_err(err, err_len, "database unreachable: %s%s", why[0] ? why : "no connection", NULL);
        *rc = DB_EUNAVAILABLE;
    }
    return names;
}

int db_migration_status(struct db *d, const char *schema, const char *dir, size_t *applied,
                        size_t *pending, char *err, size_t err_len)
{
    char sql[256];
    size_t n_names = 0;
    int rc = DB_OK;
    unsigned i;
    PGconn *c;
    *applied = *pending = 0;
    char **names = migration_start(d, schema, dir, &n_names, &i, &c, &rc, err, err_len);
    if (!names) {
        return rc;
    }
    if (!c) {
        goto out;
    }
    /* A schema that was never migrated has no table yet: nothing applied, not an error. */
    char table[160];
    snprintf(table, sizeof table, "%s.schema_migrations", schema);
    const char *table_params[] = {table};
    PGresult *res = run(c, "SELECT to_regclass($1) IS NOT NULL", table_params, 1);
    if (!result_ok(res)) {
        rc = classify(d, i, res, err, err_len);
        PQclear(res);
        goto out;
    }
    bool has_table = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    /* The schema is a checked identifier (identifiers cannot be parameters). */
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s.schema_migrations WHERE version = $1", schema);
    for (size_t k = 0; k < n_names; k++) {
        if (!has_table) {
            (*pending)++;
            continue;
        }
        const char *ver_params[] = {names[k]};
        res = run(c, sql, ver_params, 1);
        if (!result_ok(res)) {
            rc = classify(d, i, res, err, err_len);
            PQclear(res);
            goto out;
        }
        if (PQntuples(res) > 0) {
            (*applied)++;
        } else {
            (*pending)++;
        }
        PQclear(res);
    }
out:
    pool_give(d, i);
    free_names(names, n_names);
    return rc;
}

int db_migrate(struct db *d, const char *schema, const char *dir, char *err, size_t err_len)
{
    char sql[512];
    char **names = NULL;
    size_t n_names = 0;
    int rc = DB_OK;
    int locked = 0;

    unsigned i;
    PGconn *c;
    names = migration_start(d, schema, dir, &n_names, &i, &c, &rc, err, err_len);
    if (!names) {
        return rc;
    }
    if (!c) {
        goto out;
    }
    /* Session-level advisory lock keyed by the schema name: concurrent starts of the same service
     * apply each migration once; the second waits, then finds everything applied. */
    const char *lock_params[] = {schema};
    PGresult *res =
        run(c, "SELECT pg_advisory_lock(hashtext('db_migrate:' || $1))", lock_params, 1);
    if (!result_ok(res)) {
        rc = classify(d, i, res, err, err_len);
        PQclear(res);
        goto out;
    }
    PQclear(res);
    locked = 1;
    /* The schema name is validated as a plain identifier above: it is the one piece of SQL built
     * from a string here, because identifiers can't be parameters. */
    snprintf(sql, sizeof(sql),
             "CREATE SCHEMA IF NOT EXISTS %s; CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
             "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
             schema, schema);
    rc = simple(d, i, sql, err, err_len);
    if (rc != DB_OK) {
        goto out;
    }
    for (size_t k = 0; k < n_names; k++) {
        const char *ver_params[] = {names[k]};
        snprintf(sql, sizeof(sql), "SELECT 1 FROM %s.schema_migrations WHERE version = $1", schema);
        res = run(c, sql, ver_params, 1);
        if (!result_ok(res)) {
            rc = classify(d, i, res, err, err_len);
            PQclear(res);
            goto out;
        }
        int applied = PQntuples(res) > 0;
        PQclear(res);
        if (applied) {
            continue;
        }
        char path[1024];
        int pn = snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
        if (pn < 0 || (size_t)pn >= sizeof(path)) {
            set_err(err, err_len, "migration path too long%s%s", NULL, NULL);
            rc = DB_EQUERY;
            goto out;
        }
        char *text = read_file(path, err, err_len);
        if (!text) {
            rc = DB_EQUERY;
            goto out;
        }
        rc = simple(d, i, "BEGIN", err, err_len);
        if (rc == DB_OK) {
            rc = simple(d, i, text, err, err_len);
        }
        free(text);
        if (rc == DB_OK) {
            snprintf(sql, sizeof(sql), "INSERT INTO %s.schema_migrations (version) VALUES ($1)",
                     schema);
            res = run(c, sql, ver_params, 1);
            rc = result_ok(res) ? DB_OK : classify(d, i, res, err, err_len);
            PQclear(res);
        }
        if (rc == DB_OK) {
            rc = simple(d, i, "COMMIT", err, err_len);
        }
        if (rc != DB_OK) {
            if (d->conns[i]) {
                char ignored[64];
                (void)simple(d, i, "ROLLBACK", ignored, sizeof(ignored));
            }
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", err ? err : "");
            if (err && err_len > 0) {
                snprintf(err, err_len, "migration %s failed: %s", names[k], msg);
            }
            goto out;
        }
        log_info("applied migration %s/%s", schema, names[k]);
    }
out:
    if (locked && d->conns[i]) {
        res = run(d->conns[i], "SELECT pg_advisory_unlock(hashtext('db_migrate:' || $1))",
                  lock_params, 1);
        PQclear(res);
    }
    pool_give(d, i);
    for (size_t k = 0; k < n_names; k++) {
        free(names[k]);
    }
    free(names);
    return rc;
}

void db_array_literal(struct buf *out, const char *const *items, size_t n)
{
    buf_appends(out, "{");
    for (size_t i = 0; i < n; i++) {
        if (i) {
            buf_appends(out, ",");
        }
        if (!items[i]) {
            buf_appends(out, "NULL");
            continue;
        }
        buf_appends(out, "\"");
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\') {
                buf_appends(out, "\\");
            }
            buf_append(out, p, 1);
        }
        buf_appends(out, "\"");
    }
    buf_appends(out, "}");
}
