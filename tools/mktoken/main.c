/* mktoken - prints a development token (HS256 JWT, see auth.h):
 *
 *   bin/mktoken player ACCOUNT_ID
 *   bin/mktoken staff NAME
 *
 * Signed with env AUTH_SECRET, or, only when BUS_ENV=development, the development default
 * AUTH_DEV_SECRET (auth.h), which is the default of every service's auth_secret in development.
 * Without either it refuses (exit 2): a production service never accepts the development secret
 * (docs/security.md), so a token signed with it would only mislead. TTL: env MKTOKEN_TTL
 * seconds, default 86400. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buildinfo.h"

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        buildinfo_print(stdout, "mktoken");
        return 0;
    }
    if (argc != 3 || (strcmp(argv[1], "player") != 0 && strcmp(argv[1], "staff") != 0)) {
        fprintf(stderr, "usage: mktoken player ACCOUNT_ID | staff NAME\n"
                        "  signs with env AUTH_SECRET (with BUS_ENV=development: the development "
                        "secret)\n");
        return 2;
    }
    const char *secret = getenv("AUTH_SECRET");
    if (!secret || !*secret) {
        const char *mode = getenv("BUS_ENV");
        if (!mode || strcmp(mode, "development") != 0) {
            fprintf(stderr, "mktoken: set AUTH_SECRET, or BUS_ENV=development for the "
                            "development secret (docs/security.md)\n");
            return 2;
        }
        secret = AUTH_DEV_SECRET;
    }
    long ttl = 86400;
    const char *t = getenv("MKTOKEN_TTL");
    if (t && *t) {
        ttl = strtol(t, NULL, 10);
    }
    enum auth_role role = strcmp(argv[1], "player") == 0 ? AUTH_PLAYER : AUTH_STAFF;
    char *tok = auth_mint(secret, role, argv[2], ttl);
    if (!tok) {
        fprintf(stderr, "mktoken: cannot mint a token (empty subject or bad MKTOKEN_TTL?)\n");
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}
