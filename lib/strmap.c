/* strmap.c - string map with open addressing (see strmap.h).
 *
 * The table's size is a power of two kept at most 3/4 full, so a probe always ends on an empty
 * slot. There is no removal of single keys (the caches that use it only add and clear), which
 * keeps linear probing free of tombstones. */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define STRMAP_MIN_SLOTS 64

struct slot {
    char *key; /* NULL = empty */
    char *value;
    uint32_t hash;
};

struct strmap {
    struct slot *slots;
    size_t n_slots; /* power of two */
    size_t len;
};

static uint32_t hash_key(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

struct strmap *strmap_new(void)
{
    struct strmap *m = xcalloc(1, sizeof *m);
    m->n_slots = STRMAP_MIN_SLOTS;
    m->slots = xcalloc(m->n_slots, sizeof *m->slots);
    return m;
}

void strmap_clear(struct strmap *m)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        free(m->slots[i].key);
        free(m->slots[i].value);
    }
    memset(m->slots, 0, m->n_slots * sizeof *m->slots);
    m->len = 0;
}

void strmap_free(struct strmap *m)
{
    if (!m) {
        return;
    }
    strmap_clear(m);
    free(m->slots);
    free(m);
}

/* The slot holding key, or the empty slot where it would go. */
static struct slot *find(const struct strmap *m, const char *key, uint32_t h)
{
    size_t mask = m->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0)) {
            return s;
        }
    }
}

static void grow(struct strmap *m)
{
    struct slot *old = m->slots;
    size_t n_old = m->n_slots;
    m->n_slots *= 2;
    m->slots = xcalloc(m->n_slots, sizeof *m->slots);
    for (size_t i = 0; i < n_old; i++) {
        if (old[i].key) {
            *find(m, old[i].key, old[i].hash) = old[i];
        }
    }
    free(old);
}

void strmap_put(struct strmap *m, const char *key, const char *value)
{
    if ((m->len + 1) * 4 > m->n_slots * 3) {
        grow(m);
    }
    uint32_t h = hash_key(key);
    struct slot *s = find(m, key, h);
    if (!s->key) {
        s->key = xstrdup(key);
        s->hash = h;
        m->len++;
    } else {
        free(s->value);
    }
    s->value = value ? xstrdup(value) : NULL;
}

int strmap_get(const struct strmap *m, const char *key, const char **value)
{
    const struct slot *s = find(m, key, hash_key(key));
    if (!s->key) {
        return 0;
    }
    if (value) {
        *value = s->value;
    }
    return 1;
}

size_t strmap_len(const struct strmap *m)
{
    return m->len;
}
