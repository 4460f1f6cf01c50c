/* db.h - PostgreSQL access (the only module that includes libpq-fe.h).
 *
 * A small connection pool with parameterised statements only (no string-built SQL), automatic
 * reconnection (a query that fails because the server went away is reported as DB_EUNAVAILABLE
 * so the caller answers 503 and the bus retries), and versioned migrations: files
 * sql/<schema>/NNN_name.sql applied in order inside a transaction each, recorded in
 * <schema>.schema_migrations, guarded by an advisory lock so concurrent starts are safe.
 *
 * Durable: every connection runs with synchronous_commit at least "on" whatever the server's,
 * role's or database's default (raised at connect), so a statement or transaction that returned
 * DB_OK survives a crash of the server: callers may answer 2xx right after it.
 *
 * Thread-safe: each call takes a connection from the pool for its duration. */
#ifndef DB_H
#define DB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The linked library's version, for --version and bus_build_info (static string). */
const char *db_lib_version(void); /* libpq's version, e.g. "15.5" */

#define DB_OK 0
#define DB_EUNAVAILABLE (-1) /* server unreachable or restarting: retry later (503) */
#define DB_ECONFLICT (-2)    /* unique violation */
#define DB_EQUERY (-3)       /* any other error: a bug or bad data */

struct db;

/* url: a libpq connection string or URI. size: pool connections. Does not fail when the server
 * is down (connections are made on demand); returns NULL only on a malformed url. */
struct db *db_new(const char *url, unsigned size, char *err, size_t err_len);
void db_free(struct db *d);

/* libpq's reason the last connection attempt failed, into out; returns 0 (out empty) when the
 * last attempt succeeded or none was made, -1 otherwise. Thread-safe. */
int db_last_error(struct db *d, char *out, size_t out_len);

/* How many of dir's migrations schema has applied and how many are pending (one connection, no
 * change made). DB_OK, DB_EUNAVAILABLE (err holds libpq's reason) or DB_EQUERY. */
int db_migration_status(struct db *d, const char *schema, const char *dir, size_t *applied,
                        size_t *pending, char *err, size_t err_len);

/* Applies pending migrations from dir (e.g. "sql/history") into schema. */
int db_migrate(struct db *d, const char *schema, const char *dir, char *err, size_t err_len);

/* Runs one parameterised statement ($1..$n, all parameters as text, NULL = SQL NULL).
 * When rows is not NULL, *rows receives a JSON array of objects (column name -> text value or
 * null; caller owns it). *affected (may be NULL) receives the number of rows affected. */
int db_exec(struct db *d, const char *sql, const char *const *params, int n_params, json_t **rows,
            long *affected, char *err, size_t err_len);

/* Runs several statements in one transaction (all or nothing; a single one runs alone, which is
 * the same guarantee without the BEGIN and COMMIT round trips). */
struct db_stmt {
    const char *sql;
    const char *const *params;
    int n_params;
};
int db_exec_tx(struct db *d, const struct db_stmt *stmts, size_t n, char *err, size_t err_len);

/* Appends the PostgreSQL array literal of n strings to out ({"a","b\"c"}: each element quoted,
 * " and \ escaped; NULL elements are NULL), to pass a batch as one parameter ($1::text[]) to a
 * statement whose text, and so its planning, does not grow with the batch (= ANY($1), unnest). */
struct buf;
void db_array_literal(struct buf *out, const char *const *items, size_t n);

/* True when a connection can be made and answers SELECT 1 (for /readyz). */
int db_ping(struct db *d);
/* An http_ready_fn (http_server.h) for a process that is ready when its database is: ctx is the
 * struct db. Not ready: *reason = "database unreachable". */
bool db_ready(void *ctx, const char **reason);

#endif
