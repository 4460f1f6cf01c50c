/* strmap.h - a map from strings to strings (or a set, with NULL values), for in-memory caches.
 *
 * Open addressing with linear probing (FNV-1a); keys and values are copied. Not thread-safe: the
 * owner guards it (e.g. one mutex around every call). Memory grows with the entries: callers cap
 * the count (strmap_len) and decide what to do when full. */
#ifndef STRMAP_H
#define STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
/* NULL is a no-op. */
void strmap_free(struct strmap *m);
/* Adds key or replaces its value (value may be NULL). */
void strmap_put(struct strmap *m, const char *key, const char *value);
/* 1 when key is present (*value, if given, borrows its value: valid until the next put or
 * clear), 0 otherwise. */
int strmap_get(const struct strmap *m, const char *key, const char **value);
size_t strmap_len(const struct strmap *m);
/* Removes every entry (keeps the table's memory). */
void strmap_clear(struct strmap *m);

#endif
