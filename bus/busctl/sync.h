/* sync.h - busctl sync: the bus configuration from a git branch to the running bus (sync.c,
 * docs/bus.md "From git to the running bus"). */
#ifndef BUSCTL_SYNC_H
#define BUSCTL_SYNC_H

/* Runs `busctl sync --repo URL [--branch B] [--path P] [--workdir DIR] [--interval S] [--once]`;
 * argv[0] is "sync". Returns the exit code: 0 up to date or applied (--once), or stopped by
 * SIGTERM/SIGINT; 1 a commit refused or an apply failed (--once); 2 usage. */
int busctl_sync_main(int argc, char **argv);

#endif
