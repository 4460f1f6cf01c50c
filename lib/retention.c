/* retention.c - old rows deleted in small batches (see retention.h). */
#include "retention.h"

#include <stdio.h>

#include "log.h"

long retention_run(struct db *db, const struct config *cfg, const struct retention_table *tables,
                   size_t n)
{
    long total = 0;
    char batch[24], err[512], sql[512];
    snprintf(batch, sizeof(batch), "%lld", config_int(cfg, "retention.batch_rows"));
    for (size_t i = 0; i < n; i++) {
        const struct retention_table *t = &tables[i];
        char days[24];
        snprintf(days, sizeof(days), "%lld", config_int(cfg, t->days_key));
        /* ctid: one statement shape for every table, whatever its key */
        int len = snprintf(sql, sizeof(sql),
                           "DELETE FROM %s WHERE ctid IN (SELECT ctid FROM %s WHERE %s < now() - "
                           "make_interval(days => $1::int) LIMIT $2::int)",
                           t->table, t->table, t->ts_column);
        if (len < 0 || (size_t)len >= sizeof(sql)) {
            log_error("retention: statement for %s too long", t->table);
            return -1;
        }
        const char *p[] = {days, batch};
        long deleted = 0;
        for (int b = 0; b < RETENTION_MAX_BATCHES; b++) {
            long affected = 0;
            int rc = db_exec(db, sql, p, 2, NULL, &affected, err, sizeof(err));
            if (rc != DB_OK) {
                log_warn("retention: deleting from %s failed (next pass retries): %s", t->table,
                         err);
                return -1;
            }
            deleted += affected;
            if (affected < config_int(cfg, "retention.batch_rows")) {
                break;
            }
        }
        if (deleted > 0) {
            log_info("retention: deleted %ld row(s) of %s older than %s days", deleted, t->table,
                     days);
        }
        total += deleted;
    }
    return total;
}
