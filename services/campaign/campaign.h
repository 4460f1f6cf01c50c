/* campaign.h - the campaign service's parts (see main.c for the overview):
 *
 *   main.c   configuration, the list, POST /v1/deliveries/login (who is told, once).
 *   start.c  what a campaign is made of beyond its list: its channels (config "channels") and its
 *            start (config "start"; recorded in campaign.campaigns), and the test every login
 *            passes first: a login from before the campaign's start is not part of it. */
#ifndef CAMPAIGN_H
#define CAMPAIGN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "db.h"

/* Parses a channel list ("ingame", "email, ingame": items separated by spaces or commas; each
 * email, sms or ingame, once) into *out (a new array). -1 and a sentence in err when empty or
 * invalid. */
int campaign_channels_parse(const char *list, json_t **out, char *err, size_t err_len);

/* The start of campaign name, in Unix milliseconds, into *start_ms (CAMPAIGN_START_ALL: every
 * login counts). spec "now" keeps the start recorded in campaign.campaigns by an earlier run, or
 * records the present one at the campaign's first run; "backfill" records that every login still
 * in the topic counts; an RFC 3339 time records that time. Returns DB_OK, or a db.h error code
 * with a sentence in err (spec must be campaign_start_valid). Called once at start. */
#define CAMPAIGN_START_ALL (-1LL)
int campaign_start_resolve(struct db *d, const char *name, const char *spec, long long *start_ms,
                           char *err, size_t err_len);

/* True when spec is a valid "start" value (now, backfill or an RFC 3339 time). */
bool campaign_start_valid(const char *spec);

/* True when a login of time ts (its RFC 3339 "ts") is part of a campaign that starts at start_ms.
 * A missing or unreadable ts counts as inside (a message is not lost to a login server's odd
 * clock format; the login schema already requires a date-time). */
bool campaign_login_counts(const char *ts, long long start_ms);

#endif
