/* mktoken - prints a development token (HS256 JWT, see auth.h):
 *
 *   bin/mktoken player ACCOUNT_ID
 *   bin/mktoken staff NAME
 *
 * Signed with env AUTH_SECRET, or the development default AUTH_DEV_SECRET (auth.h), which is the
 * default of every service's auth_secret too. DEVELOPMENT ONLY: production sets AUTH_SECRET (and
 * mints tokens in its real identity provider). TTL: env MKTOKEN_TTL seconds, default 86400. */
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
                        "  signs with env AUTH_SECRET (default: the development secret)\n");
        return 2;
    }
    const char *secret = getenv("AUTH_SECRET");
    if (!secret || !*secret) {
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
