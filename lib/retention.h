/* retention.h - old rows of the tables that grow, deleted in small batches.
 *
 * A service lists its growing tables, each with its time column and the config key giving how
 * many days rows are kept, and calls retention_run() every retention.interval_s from its main
 * loop (RETENTION_CONFIG_DEFS adds those two keys). Each statement deletes at most
 * retention.batch_rows rows, so a pass never holds long locks or bloats one transaction; a pass
 * stops after RETENTION_MAX_BATCHES batches of one table and the next pass goes on. */
#ifndef RETENTION_H
#define RETENTION_H

#include <stddef.h>

#include "config.h"
#include "db.h"

#define RETENTION_MAX_BATCHES 100

/* The keys every service with retention has (to put in its config table). */
#define RETENTION_CONFIG_DEFS                                                                      \
    {"retention.interval_s",                                                                       \
     CONFIG_INT,                                                                                   \
     "3600",                                                                                       \
     1,                                                                                            \
     86400,                                                                                        \
     0,                                                                                            \
     NULL,                                                                                         \
     "How often old rows are deleted (also once at start)"},                                       \
    {                                                                                              \
        "retention.batch_rows", CONFIG_INT, "1000", 1, 100000, 0, NULL,                            \
            "Most rows one retention statement deletes"                                            \
    }

struct retention_table {
    const char *table;     /* schema-qualified name, a constant of the service (never input) */
    const char *ts_column; /* when the row was written */
    const char *days_key;  /* config key (CONFIG_INT): rows older than this many days go */
};

/* Deletes the rows of each table older than its days, in batches of retention.batch_rows (at
 * most RETENTION_MAX_BATCHES per table), logging what was deleted. Returns the number of rows
 * deleted, or -1 when a statement failed (logged; what was deleted stays deleted). */
long retention_run(struct db *db, const struct config *cfg, const struct retention_table *tables,
                   size_t n);

#endif
