/* app.h - what every process's main.c does first and last: command line, configuration,
 * logger, signals, and the skeleton they run in.
 *
 * A long-running process's main() is one call to app_serve() with a table of its hooks:
 *
 *   static const struct app_service SERVICE = {.name = "guard", .env_prefix = "GUARD", ...};
 *   int main(int argc, char **argv) { return app_serve(argc, argv, &SERVICE); }
 *
 * app_serve does, in this order: app_init; the process's prepare hook; for a process with a
 * database, app_db_open (migrations, or --migrate / --check); the start hook (modules, the HTTP
 * server started); the run hook until a stop signal (app_run when none: SIGHUP ignored); then the
 * release hook, the database closed and app_release. See struct app_service for exit codes.
 *
 * The parts it is made of, for a program of another shape (tools/loginsim, a load generator):
 *
 *   struct app app;
 *   if (app_init(&app, argc, argv, "bus-publisher", "PUBLISHER", defs) != 0) return 2;
 *   ... start modules ...
 *   while ((sig = app_wait_signal(&app)) == SIGHUP) reload();
 *   ... stop modules ...
 *   app_release(&app);
 *
 * A process without SIGHUP handling opens its database with app_db_open() (or migrates with
 * app_db_migrate()), starts its modules, then blocks in app_run() instead of the SIGHUP loop
 * (or loops `while (!app_wait_stop_for(&app, ms)) tick();` when it has periodic work).
 *
 * Command line: --config PATH (also env <PREFIX>_CONFIG), --help, --config-doc (prints the
 * configuration table as Markdown and exits 0), --check-config (validates and exits).
 * Every table gets "log.level" (debug|info|warn|error, default info) added automatically. On a
 * normal start the effective configuration is logged once (config_log, secrets redacted).
 * Modes (docs/security.md): BUS_ENV=production, the default, or development. The mode is logged
 * at start. In production a CONFIG_KEY that is missing, shorter than 32 bytes or its development
 * default refuses the start with one line naming it (config_check_keys; main exits 2); in
 * development each development value in use is one warning.
 * Signals SIGTERM, SIGINT and SIGHUP are blocked in every thread (call app_init before creating
 * threads) and delivered only through app_wait_signal(); SIGPIPE is ignored. */
#ifndef APP_H
#define APP_H

#include <signal.h>

#include "config.h"

struct app {
    const char *name;
    struct config *cfg;
    sigset_t signals;
    int exit_now; /* set by app_init for --help/--config-doc: main returns 0 at once */
    /* --migrate / --check (processes with a database): app_db_open runs that task instead of
     * preparing to serve, and main exits with its outcome. */
    enum { APP_DB_SERVE, APP_DB_MIGRATE, APP_DB_CHECK } db_task;
    struct config_def *defs_owned; /* the process's table plus the automatic keys */
};

/* Returns 0 on success; on bad arguments or configuration logs why and returns -1. When
 * app->exit_now is set after a 0 return, main should return 0 immediately. */
int app_init(struct app *app, int argc, char **argv, const char *name, const char *env_prefix,
             const struct config_def *defs);
/* Blocks until SIGTERM, SIGINT or SIGHUP arrives; returns the signal number. */
int app_wait_signal(struct app *app);
/* Like app_wait_signal but gives up after timeout_ms and returns 0. */
int app_wait_signal_for(struct app *app, long timeout_ms);
/* Blocks until SIGTERM or SIGINT arrives and returns it; SIGHUP is ignored. */
int app_run(struct app *app);
/* Waits up to timeout_ms for SIGTERM or SIGINT: returns that signal, or 0 when the time passed or
 * SIGHUP arrived (so a periodic task also runs on SIGHUP). */
int app_wait_stop_for(struct app *app, long timeout_ms);

#define APP_STOPPED 1 /* app_db_migrate: a stop signal came before the database did */

struct db;
/* Applies the migrations of dir to schema (db_migrate), retrying every second while the database
 * is unavailable, so a process can start before its database. Returns 0 once applied,
 * APP_STOPPED when SIGTERM or SIGINT arrived while waiting (main should exit 0), -1 on any other
 * error (logged). */
int app_db_migrate(struct app *app, struct db *d, const char *schema, const char *dir);
/* For a process whose table declares "database_url" (string), "db_pool" (int) and
 * "migrations_dir" (string): opens the pool (db_new) and runs app_db_migrate into schema.
 * Returns 0 with *out set (the caller db_free()s it), or APP_STOPPED / -1 (logged) with *out
 * NULL.
 * With --migrate it applies the migrations once (no waiting for the database) and returns
 * APP_STOPPED when they are in place, -1 otherwise; with --check it changes nothing, prints the
 * schema's state on stdout and returns APP_STOPPED when every migration is applied, -1 when
 * some are pending or the database cannot be reached (libpq's reason logged). */
int app_db_open(struct app *app, const char *schema, struct db **out);

/* ---- the service skeleton ---- */

/* A long-running process, as app_serve runs it. Every hook gets the app (its configuration in
 * app->cfg) and ctx. prepare and start return 0, or the process's exit code after logging why:
 * 1 for a failure, 2 for a refused configuration. */
struct app_service {
    const char *name;       /* the process's name in logs, --help and --version */
    const char *env_prefix; /* PREFIX_CONFIG and PREFIX_<KEY> in the environment */
    const struct config_def *defs;
    void *ctx;
    /* A process with a database names its schema (its table then declares database_url, db_pool
     * and migrations_dir, see app_db_open) and where the pool goes: *db is set before start and
     * closed by app_serve after release. NULL for a process without one. */
    const char *db_schema;
    struct db **db;
    int (*prepare)(struct app *app, void *ctx); /* before the database; NULL: nothing to do */
    int (*start)(struct app *app, void *ctx);   /* after it: modules started, serving */
    /* Returns when the process is to stop (its stop signal received, drained if it drains).
     * NULL: app_run, SIGHUP ignored. */
    void (*run)(struct app *app, void *ctx);
    /* Frees what prepare and start made; runs once app_init succeeded, whatever failed after it
     * (so every field it frees must be valid or NULL). NULL: nothing to free. */
    void (*release)(struct app *app, void *ctx);
};

/* Runs svc and returns main's exit code: 2 when the arguments or configuration are refused
 * (app_init) or prepare/start say so; 0 after --help, --version, --config-doc, --check-config,
 * a successful --migrate or --check, a stop signal while waiting for the database, or a run
 * that ended; 1 when the database cannot be opened or migrated or prepare/start fail. */
int app_serve(int argc, char **argv, const struct app_service *svc);

/* Frees the configuration and the table. Safe after a failed app_init, after an exit_now return
 * (app_init has then already released everything) and when called twice. */
void app_release(struct app *app);

/* Monotonic clock in milliseconds / seconds. */
long long app_now_ms(void);
double app_now_s(void);
/* Wall clock as RFC 3339 with milliseconds, UTC: "2026-11-25T04:18:31.123Z" (25 bytes). */
void app_time_rfc3339(char out[32]);

#endif
