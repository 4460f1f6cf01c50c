/* alloc.h - allocation wrappers that log and abort on out-of-memory.
 *
 * Our processes are supervised and restart; what must never happen is unbounded growth, so every
 * buffer sized by input has a cap elsewhere (see buf.h). These never return NULL. */
#ifndef ALLOC_H
#define ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string; aborts on out-of-memory. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
