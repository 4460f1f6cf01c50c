/* app.c - command line, configuration, logger and signals for every process (see app.h). */
#include "app.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "alloc.h"
#include "buildinfo.h"
#include "db.h"
#include "kafka/kafka.h"
#include "log.h"

static const struct config_def AUTO_DEFS[] = {
    {"log.level", CONFIG_STRING, "info", 0, 0, 0, NULL, "debug, info, warn or error"},
};

static void usage(const char *name, const char *env_prefix)
{
    printf("usage: %s [--config FILE] [--check-config] [--config-doc] [--version] [--help]\n"
           "  --config FILE   JSON configuration (also %s_CONFIG); every key can be overridden\n"
           "                  by the environment as %s_<KEY>\n"
           "  --check-config  validate the configuration and exit\n"
           "  --config-doc    print the configuration reference (Markdown) and exit\n"
           "  --version       print the version, compiler and library versions and exit\n"
           "  --migrate       (services with a database) apply the migrations and exit\n"
           "  --check         (services with a database) report the schema's state and exit:\n"
           "                  0 when every migration is applied\n",
           name, env_prefix, env_prefix);
}

/* Frees what app_init allocated when main is going to return without app_release. */
static int finish_early(struct app *app, int rc)
{
    app_release(app);
    return rc;
}

int app_init(struct app *app, int argc, char **argv, const char *name, const char *env_prefix,
             const struct config_def *defs)
{
    char err[1024];
    const char *path = NULL;
    int check_only = 0, doc = 0;
    memset(app, 0, sizeof *app);
    app->name = name;
    log_init(name, LOG_LEVEL_INFO);

    size_t n = 0;
    while (defs && defs[n].key) {
        n++;
    }
    size_t n_auto = sizeof AUTO_DEFS / sizeof AUTO_DEFS[0];
    app->defs_owned = xcalloc(n + n_auto + 1, sizeof *app->defs_owned);
    if (n) {
        memcpy(app->defs_owned, defs, n * sizeof *defs);
    }
    /* A process may declare an automatic key itself (e.g. another default): its entry wins. */
    for (size_t i = 0; i < n_auto; i++) {
        bool declared = false;
        for (size_t j = 0; j < n; j++) {
            declared = declared || strcmp(defs[j].key, AUTO_DEFS[i].key) == 0;
        }
        if (!declared) {
            app->defs_owned[n++] = AUTO_DEFS[i];
        }
    }

    bool has_database = false;
    for (size_t j = 0; j < n; j++) {
        has_database = has_database || strcmp(app->defs_owned[j].key, "database_url") == 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--config") || !strcmp(arg, "-c")) {
            if (i + 1 >= argc) {
                log_error("%s needs a file name (try --help)", arg);
                return finish_early(app, -1);
            }
            path = argv[++i];
        } else if (!strncmp(arg, "--config=", 9)) {
            path = arg + 9;
        } else if (!strcmp(arg, "--migrate") || !strcmp(arg, "--check")) {
            if (!has_database) {
                log_error("%s: %s has no database (try --help)", arg, name);
                return finish_early(app, -1);
            }
            app->db_task = !strcmp(arg, "--migrate") ? APP_DB_MIGRATE : APP_DB_CHECK;
        } else if (!strcmp(arg, "--check-config")) {
            check_only = 1;
        } else if (!strcmp(arg, "--config-doc")) {
            doc = 1;
        } else if (!strcmp(arg, "--version")) {
            buildinfo_print(stdout, name);
            fflush(stdout);
            app->exit_now = 1;
            return finish_early(app, 0);
        } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(name, env_prefix);
            app->exit_now = 1;
            return finish_early(app, 0);
        } else {
            log_error("unknown argument \"%s\" (try --help)", arg);
            return finish_early(app, -1);
        }
    }
    if (doc) {
        config_write_markdown(app->defs_owned, env_prefix, stdout);
        fflush(stdout);
        app->exit_now = 1;
        return finish_early(app, 0);
    }
    if (!path) {
        char var[128];
        snprintf(var, sizeof var, "%s_CONFIG", env_prefix);
        path = getenv(var);
        if (path && !*path) {
            path = NULL;
        }
    }
    if (config_load(&app->cfg, app->defs_owned, env_prefix, path, err, sizeof err) != 0) {
        log_error("configuration refused: %s", err);
        return finish_early(app, -1);
    }
    enum log_level level;
    if (log_level_parse(config_str(app->cfg, "log.level"), &level) != 0) {
        log_error("configuration refused: \"log.level\" must be debug, info, warn or error");
        return finish_early(app, -1);
    }
    log_init(name, level);
    /* Fail closed: a production process never runs on a missing, short or published secret
     * (docs/security.md). One line names the setting; main exits 2. */
    if (config_check_mode(err, sizeof err) != 0) {
        log_error("configuration refused: %s", err);
        return finish_early(app, -1);
    }
    bool is_production = config_is_production();
    if (is_production && config_check_keys(app->cfg, env_prefix, true, err, sizeof err) != 0) {
        log_error("configuration refused: %s", err);
        return finish_early(app, -1);
    }
    if (is_production) {
        log_info("mode: production (BUS_ENV)");
    } else {
        log_warn("mode: development (BUS_ENV=development): development secrets are accepted; "
                 "never expose this process");
        config_check_keys(app->cfg, env_prefix, false, err, sizeof err);
    }
    if (check_only && kafka_conf_validate(config_kafka(app->cfg), err, sizeof err) != 0) {
        log_error("configuration refused: %s", err);
        return finish_early(app, -1);
    }
    if (check_only) {
        printf("configuration OK\n");
        fflush(stdout);
        app->exit_now = 1;
        return finish_early(app, 0);
    }

    log_info("%s %s starting (%s)", name, buildinfo_version(), buildinfo_compiler());
    config_log(app->cfg); /* a log always tells which settings were in force */
    buildinfo_register_metrics();

    /* A background job of a non-interactive shell starts with SIGINT ignored, and an ignored
     * signal is never pending: restore the defaults, then block so only sigwait sees them. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&app->signals);
    sigaddset(&app->signals, SIGTERM);
    sigaddset(&app->signals, SIGINT);
    sigaddset(&app->signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &app->signals, NULL);
    return 0;
}

/* ---- the service manager (systemd Type=notify) ----------------------------------------------
 *
 * A process is started once it first waits for a signal: every main.c starts its modules, then
 * waits. That moment sends READY=1 (and, after a SIGHUP, again: the reload is done by the time
 * the process waits anew); a stop signal sends STOPPING=1, a SIGHUP RELOADING=1. When the unit
 * sets WatchdogSec=, the waiting thread pings WATCHDOG=1 at half the interval. Without a service
 * manager (no NOTIFY_SOCKET) sd_notify does nothing. */

/* What the service manager was last told; one process, one state (the main thread's). */
static enum { SD_STARTING, SD_READY, SD_RELOADING, SD_STOPPING } sd_state;

/* The watchdog interval in ms (half of WATCHDOG_USEC), or 0 when none is asked for. */
static long watchdog_ms(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
        return 0;
    }
    long ms = (long)(usec / 2000);
    return ms > 0 ? ms : 1;
}

static void notify_signal(int sig)
{
    if (sig == SIGHUP && sd_state != SD_STOPPING) {
        sd_state = SD_RELOADING;
        sd_notify(0, "RELOADING=1");
    } else if ((sig == SIGTERM || sig == SIGINT) && sd_state != SD_STOPPING) {
        sd_state = SD_STOPPING;
        sd_notify(0, "STOPPING=1");
    }
}

/* Waits for a signal up to timeout_ms (< 0: forever). is_started: the caller has started its
 * modules (every public wait), unlike a wait for the database during start-up. */
static int wait_for(struct app *app, long timeout_ms, bool is_started);

int app_wait_signal(struct app *app)
{
    return wait_for(app, -1, true);
}

int app_wait_signal_for(struct app *app, long timeout_ms)
{
    return wait_for(app, timeout_ms < 0 ? 0 : timeout_ms, true);
}

static int wait_for(struct app *app, long timeout_ms, bool is_started)
{
    if (is_started && (sd_state == SD_STARTING || sd_state == SD_RELOADING)) {
        sd_state = SD_READY;
        sd_notify(0, "READY=1");
    }
    long ping_ms = watchdog_ms();
    long long deadline = timeout_ms >= 0 ? app_now_ms() + timeout_ms : -1;
    for (;;) {
        long slice = -1; /* forever */
        if (deadline >= 0) {
            long long left = deadline - app_now_ms();
            slice = left > 0 ? (long)left : 0;
        }
        if (ping_ms > 0 && (slice < 0 || slice > ping_ms)) {
            slice = ping_ms;
        }
        int sig = 0;
        if (slice < 0) {
            if (sigwait(&app->signals, &sig) != 0) {
                continue;
            }
        } else {
            struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};
            sig = sigtimedwait(&app->signals, NULL, &ts);
            if (sig < 0 && errno == EINTR) {
                continue;
            }
            if (sig < 0) {
                sig = 0; /* EAGAIN: this slice is over */
            }
        }
        if (sig > 0) {
            notify_signal(sig);
            return sig;
        }
        if (ping_ms > 0) {
            sd_notify(0, "WATCHDOG=1");
        }
        if (deadline >= 0 && app_now_ms() >= deadline) {
            return 0;
        }
    }
}

static bool is_stop(int sig)
{
    return sig == SIGTERM || sig == SIGINT;
}

int app_run(struct app *app)
{
    for (;;) {
        int sig = app_wait_signal(app);
        if (is_stop(sig)) {
            return sig;
        }
    }
}

int app_wait_stop_for(struct app *app, long timeout_ms)
{
    int sig = app_wait_signal_for(app, timeout_ms);
    return is_stop(sig) ? sig : 0;
}

int app_db_migrate(struct app *app, struct db *d, const char *schema, const char *dir)
{
    char err[512];
    for (;;) {
        int rc = db_migrate(d, schema, dir, err, sizeof err);
        if (rc == DB_OK) {
            return 0;
        }
        if (rc != DB_EUNAVAILABLE) {
            log_error("migrations failed: %s", err);
            return -1;
        }
        log_warn("database unavailable, retrying migrations: %s", err);
        if (is_stop(wait_for(app, 1000, false))) {
            return APP_STOPPED;
        }
    }
}

/* --migrate: one attempt, as a deployment step that fails loudly instead of waiting. */
static int db_task_migrate(struct db *d, const char *schema, const char *dir)
{
    char err[768];
    if (db_migrate(d, schema, dir, err, sizeof err) != DB_OK) {
        log_error("migrations of %s failed: %s", schema, err);
        return -1;
    }
    log_info("migrations of %s applied from %s", schema, dir);
    return APP_STOPPED;
}

/* --check: the schema's state on stdout; nothing changed. */
static int db_task_check(struct app *app, struct db *d, const char *schema, const char *dir)
{
    char err[768];
    size_t applied = 0, pending = 0;
    if (db_migration_status(d, schema, dir, &applied, &pending, err, sizeof err) != DB_OK) {
        log_error("database check failed: %s", err);
        return -1;
    }
    printf("%s: database reachable; schema %s: %zu migrations applied, %zu pending\n", app->name,
           schema, applied, pending);
    fflush(stdout);
    return pending == 0 ? APP_STOPPED : -1;
}

int app_db_open(struct app *app, const char *schema, struct db **out)
{
    char err[512];
    *out = NULL;
    struct db *d = db_new(config_str(app->cfg, "database_url"),
                          (unsigned)config_int(app->cfg, "db_pool"), err, sizeof err);
    if (!d) {
        log_error("database_url: %s", err);
        return -1;
    }
    const char *dir = config_str(app->cfg, "migrations_dir");
    if (app->db_task != APP_DB_SERVE) {
        int rc = app->db_task == APP_DB_MIGRATE ? db_task_migrate(d, schema, dir)
                                                : db_task_check(app, d, schema, dir);
        db_free(d);
        return rc;
    }
    int rc = app_db_migrate(app, d, schema, dir);
    if (rc != 0) {
        db_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int app_serve(int argc, char **argv, const struct app_service *svc)
{
    struct app app;
    if (app_init(&app, argc, argv, svc->name, svc->env_prefix, svc->defs) != 0) {
        return 2;
    }
    if (app.exit_now) {
        return 0;
    }
    bool is_done = false; /* --migrate/--check done, or stopped while waiting: exit 0 */
    int rc = svc->prepare ? svc->prepare(&app, svc->ctx) : 0;
    if (rc == 0 && svc->db_schema) {
        /* Migrations must be in place before serving; while the database is still starting,
         * wait (a stop signal meanwhile ends the process normally). */
        int m = app_db_open(&app, svc->db_schema, svc->db);
        is_done = m == APP_STOPPED;
        rc = m == 0 || is_done ? 0 : 1;
    }
    if (rc == 0 && !is_done) {
        rc = svc->start(&app, svc->ctx);
    }
    if (rc == 0 && !is_done) {
        if (svc->run) {
            svc->run(&app, svc->ctx);
        } else {
            app_run(&app);
        }
    }
    if (svc->release) {
        svc->release(&app, svc->ctx);
    }
    if (svc->db) {
        db_free(*svc->db);
        *svc->db = NULL;
    }
    app_release(&app);
    return rc;
}

void app_release(struct app *app)
{
    config_free(app->cfg);
    app->cfg = NULL;
    free(app->defs_owned);
    app->defs_owned = NULL;
}

long long app_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

double app_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void app_time_rfc3339(char out[32])
{
    /* Every published event stamps its time: the date and the second are formatted once per
     * second and thread, the milliseconds by hand (snprintf and gmtime_r's lock were 1.8 % of
     * the publisher's single-event path). */
    static _Thread_local time_t cached_sec = (time_t)-1;
    static _Thread_local char cached[32]; /* "2026-11-25T04:18:31." */
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    if (t.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&t.tv_sec, &tm);
        snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.",
                 (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100,
                 tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
        cached_sec = t.tv_sec;
    }
    int ms = (int)(t.tv_nsec / 1000000) % 1000;
    memcpy(out, cached, 20);
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
}
