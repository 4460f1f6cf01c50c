/* sync.c - busctl sync: the talk's "pull request, review, merge, live" without a human in the
 * loop. It follows one branch of a git repository and, when a merged commit changes the bus
 * configuration, validates it, prints the plan and applies it; an invalid configuration is
 * refused before anything changes.
 *
 * Layout: --workdir is a clone of the repository (created on the first round, without a
 * checkout). The dispatchers' bus_config_dir must be WORKDIR/PATH: that is the directory
 * apply reloads them from, and beside it busctl writes the applied commit (.bus-commit), which
 * the dispatchers report in GET /v1/routes and bus_dispatcher_config_info.
 *
 * One round: fetch the branch; if its head differs from the applied commit and changes PATH or
 * the schemas beside it (PATH/../schema), extract that commit into a staging tree inside .git,
 * validate and plan it there, and only then check it out in the clone and apply it. git runs as
 * a child process (the git command line is the stable interface of git). */
#include "sync.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "busctl.h"

#define SYNC_COMMIT_FILE ".bus-commit" /* the dispatcher's DISPATCHER_COMMIT_FILE */
#define SYNC_SHA_MAX 64

extern char **environ;

struct sync_opts {
    const char *repo, *branch, *path, *workdir;
    long interval_s;
    bool is_once;
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Runs argv (PATH lookup), its stdout into out (NUL-terminated, trailing newline removed) when
 * out is not NULL, else inherited. Returns the exit status, or -1 when it could not run. */
static int run(const char *const argv[], char *out, size_t out_len)
{
    int pipefd[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out != NULL) {
        if (pipe(pipefd) != 0) {
            posix_spawn_file_actions_destroy(&fa);
            return -1;
        }
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&fa, pipefd[0]);
        posix_spawn_file_actions_addclose(&fa, pipefd[1]);
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (out != NULL) {
        close(pipefd[1]);
        size_t n = 0;
        if (rc == 0) {
            ssize_t r;
            char sink[512];
            while ((r = read(pipefd[0], n + 1 < out_len ? out + n : sink,
                             n + 1 < out_len ? out_len - 1 - n : sizeof sink)) != 0) {
                if (r < 0 && errno == EINTR) {
                    continue;
                }
                if (r < 0) {
                    break;
                }
                if (n + 1 < out_len) {
                    n += (size_t)r;
                }
            }
        }
        close(pipefd[0]);
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) {
            n--;
        }
        out[n] = '\0';
    }
    if (rc != 0) {
        fprintf(stderr, "sync: cannot run %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool is_sha(const char *s)
{
    size_t n = strlen(s);
    if (n < 7 || n > SYNC_SHA_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* The commit recorded as applied in WORKDIR/PATH, or "" (none yet). */
static void read_applied(const char *live_dir, char out[SYNC_SHA_MAX + 1])
{
    out[0] = '\0';
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", live_dir, SYNC_COMMIT_FILE) >= (int)sizeof path) {
        return;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char line[SYNC_SHA_MAX + 2];
    if (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (is_sha(line)) {
            snprintf(out, SYNC_SHA_MAX + 1, "%.64s", line);
        }
    }
    fclose(f);
}

/* Records sha (or removes the record when sha is ""); 0 on success. */
static int write_applied(const char *live_dir, const char *sha)
{
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof path, "%s/%s", live_dir, SYNC_COMMIT_FILE) >= (int)sizeof path) {
        return -1;
    }
    if (sha[0] == '\0') {
        return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    bool is_ok = fprintf(f, "%s\n", sha) > 0;
    is_ok = fclose(f) == 0 && is_ok;
    return is_ok && rename(tmp, path) == 0 ? 0 : -1;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* One round; returns 0 (nothing to do, or applied) or 1 (refused or failed). refused holds the
 * last commit refused, so a loop reports it once. */
static int sync_round(const struct sync_opts *o, char refused[SYNC_SHA_MAX + 1])
{
    char gitdir[4096], live[4096], staging[4096], tarball[4096], head[256];
    if (snprintf(gitdir, sizeof gitdir, "%s/.git", o->workdir) >= (int)sizeof gitdir ||
        snprintf(live, sizeof live, "%s/%s", o->workdir, o->path) >= (int)sizeof live ||
        snprintf(staging, sizeof staging, "%s/.git/bus-sync-staging", o->workdir) >=
            (int)sizeof staging ||
        snprintf(tarball, sizeof tarball, "%s/.git/bus-sync-staging.tar", o->workdir) >=
            (int)sizeof tarball) {
        fprintf(stderr, "sync: --workdir or --path too long\n");
        return 1;
    }

    if (!exists(gitdir)) {
        const char *clone[] = {"git",           "clone",    "--quiet",
                               "--no-checkout", "--branch", o->branch,
                               o->repo,         o->workdir, NULL};
        if (run(clone, NULL, 0) != 0) {
            fprintf(stderr, "sync: cannot clone %s (branch %s)\n", o->repo, o->branch);
            return 1;
        }
    }
    const char *fetch[] = {"git", "-C", o->workdir, "fetch", "--quiet", "origin", o->branch, NULL};
    const char *rev[] = {"git", "-C", o->workdir, "rev-parse", "FETCH_HEAD", NULL};
    if (run(fetch, NULL, 0) != 0 || run(rev, head, sizeof head) != 0 || !is_sha(head)) {
        fprintf(stderr, "sync: cannot fetch branch %s of %s\n", o->branch, o->repo);
        return 1;
    }
    char applied[SYNC_SHA_MAX + 1];
    read_applied(live, applied);
    if (strcmp(head, applied) == 0) {
        printf("sync: up to date at %s\n", head);
        return 0;
    }
    if (strcmp(head, refused) == 0) {
        return 1; /* said already; a new commit on the branch is needed */
    }
    if (applied[0] != '\0') {
        char schema_dir[4096];
        snprintf(schema_dir, sizeof schema_dir, "%s/../schema", o->path);
        const char *diff[] = {"git", "-C", o->workdir, "diff",     "--quiet", applied,
                              head,  "--", o->path,    schema_dir, NULL};
        if (run(diff, NULL, 0) == 0) {
            printf("sync: %s changes nothing under %s; %s stays applied\n", head, o->path, applied);
            return 0;
        }
    }
    printf("sync: %s on %s changes the bus configuration\n", head, o->branch);
    fflush(stdout);

    /* Stage the commit's tree apart from the live directory: an invalid commit never reaches
     * the directory the dispatchers read. */
    const char *clean[] = {"rm", "-rf", staging, tarball, NULL};
    const char *archive[] = {"git", "-C",    o->workdir, "archive", "--format=tar",
                             "-o",  tarball, head,       NULL};
    const char *untar[] = {"tar", "-xf", tarball, "-C", staging, NULL};
    if (run(clean, NULL, 0) != 0 || run(archive, NULL, 0) != 0 || mkdir(staging, 0700) != 0 ||
        run(untar, NULL, 0) != 0) {
        fprintf(stderr, "sync: cannot extract %s\n", head);
        return 1;
    }
    char staged[8200], cwd[4096];
    if (snprintf(staged, sizeof staged, "%s/%s", staging, o->path) >= (int)sizeof staged ||
        getcwd(cwd, sizeof cwd) == NULL) {
        return 1;
    }
    /* Relative paths in the configuration (topic schemas) resolve in the tree being checked. */
    int rc = 1;
    if (chdir(staging) != 0) {
        return 1;
    }
    bool is_valid = busctl_validate(staged) == 0;
    if (is_valid) {
        busctl_plan_apply(staged, false); /* the plan, printed before anything changes */
    }
    if (chdir(cwd) != 0) {
        return 1;
    }
    if (!is_valid) {
        fprintf(stderr,
                "sync: %s refused: the bus configuration is invalid; the running routes are "
                "unchanged\n",
                head);
        snprintf(refused, SYNC_SHA_MAX + 1, "%.64s", head);
        run(clean, NULL, 0);
        return 1;
    }
    const char *checkout[] = {"git",     "-C",       o->workdir, "checkout", "--quiet",
                              "--force", "--detach", head,       NULL};
    if (run(checkout, NULL, 0) != 0) {
        fprintf(stderr, "sync: cannot check out %s\n", head);
        goto out;
    }
    /* The dispatchers read the commit while they reload: record it first, and put the previous
     * one back when the apply fails, so the next round tries again. */
    if (write_applied(live, head) != 0) {
        fprintf(stderr, "sync: cannot record the commit in %s\n", live);
        goto out;
    }
    if (chdir(o->workdir) != 0) {
        goto out;
    }
    int applied_rc = busctl_plan_apply(live, true);
    if (chdir(cwd) != 0) {
        goto out;
    }
    if (applied_rc != 0) {
        write_applied(live, applied);
        fprintf(stderr, "sync: applying %s failed; will try again\n", head);
        goto out;
    }
    printf("sync: applied %s\n", head);
    rc = 0;
out:
    fflush(stdout);
    run(clean, NULL, 0);
    return rc;
}

static int usage(void)
{
    fputs("usage: busctl sync --repo URL [--branch main] [--path config/bus]\n"
          "                   [--workdir var/bus-sync] [--interval 30] [--once]\n",
          stderr);
    return 2;
}

int busctl_sync_main(int argc, char **argv)
{
    struct sync_opts o = {NULL, "main", "config/bus", "var/bus-sync", 30, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--once") == 0) {
            o.is_once = true;
            continue;
        }
        if (v == NULL) {
            return usage();
        }
        if (strcmp(a, "--repo") == 0) {
            o.repo = v;
        } else if (strcmp(a, "--branch") == 0) {
            o.branch = v;
        } else if (strcmp(a, "--path") == 0) {
            o.path = v;
        } else if (strcmp(a, "--workdir") == 0) {
            o.workdir = v;
        } else if (strcmp(a, "--interval") == 0) {
            char *end;
            o.interval_s = strtol(v, &end, 10);
            if (*end != '\0' || o.interval_s < 1 || o.interval_s > 86400) {
                return usage();
            }
        } else {
            return usage();
        }
        i++;
    }
    if (o.repo == NULL || o.path[0] == '/' || strstr(o.path, "..") != NULL) {
        return usage();
    }
    char refused[SYNC_SHA_MAX + 1] = "";
    if (o.is_once) {
        return sync_round(&o, refused);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stop_requested) {
        sync_round(&o, refused);
        fflush(stdout);
        for (long s = 0; s < o.interval_s * 10 && !stop_requested; s++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}
