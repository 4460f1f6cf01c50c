/* busconf.c - loads config/bus/<name>.json into an immutable struct busconf.
 *
 * Two passes: every file is validated against the bus schema (jschema.h) and its topics and
 * routes are collected with the defaults applied; then the whole set is checked for meaning
 * (unique names, declared topics, http(s) endpoints, no streaming cycle). All problems are
 * reported, one "file: /pointer: message" per line, so an operator fixes them in one round. */
#include "busconf.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "buf.h"
#include "config.h"
#include "crypto.h"
#include "delivery.h"

#define BUSCONF_MAX_FILES 1024
#define BUSCONF_MAX_ERR_LINES 64

struct loader {
    struct buf err;
    int n_errors;
    const char *dir;
    bool is_production; /* BUS_ENV (config_is_production) */
};

static void problem(struct loader *l, const char *file, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct loader *l, const char *file, const char *pointer, const char *fmt, ...)
{
    l->n_errors++;
    if (l->n_errors > BUSCONF_MAX_ERR_LINES) {
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (void)buf_appendf(&l->err, "%s: %s: %s\n", file, pointer[0] ? pointer : "/", msg);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of "*.json" names in dir; returns count or -1. */
static int list_json_files(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < BUSCONF_MAX_FILES) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json") != 0) {
            continue;
        }
        names = xrealloc(names, sizeof *names * (size_t)(n + 1));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 0) {
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    }
    *out = names;
    return n;
}

static char *opt_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

static int opt_int(json_t *obj, const char *key, int dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}

/* Expands ${NAME} from the environment, and ${NAME:-TEXT} (TEXT when NAME is unset, as in the
 * shell). Returns NULL (and reports) when a variable without a default is unset. */
static char *expand_env(struct loader *l, const char *file, const char *pointer, const char *s)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    const char *p = s;
    while (*p) {
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end == NULL) {
                problem(l, file, pointer, "unterminated ${ in secret");
                goto fail;
            }
            char name[256];
            size_t n = (size_t)(end - (p + 2));
            if (n == 0 || n >= sizeof name) {
                problem(l, file, pointer, "bad environment variable name in secret");
                goto fail;
            }
            memcpy(name, p + 2, n);
            name[n] = '\0';
            char *dflt = strstr(name, ":-");
            if (dflt != NULL) {
                *dflt = '\0';
                dflt += 2;
            }
            const char *val = getenv(name);
            if (val == NULL) {
                val = dflt;
            }
            if (val == NULL) {
                problem(l, file, pointer, "environment variable %s is not set", name);
                goto fail;
            }
            if (buf_appends(&b, val) != 0) {
                goto fail;
            }
            p = end + 1;
        } else {
            if (buf_append(&b, p, 1) != 0) {
                goto fail;
            }
            p++;
        }
    }
    return buf_take(&b, NULL);
fail:
    buf_release(&b);
    return NULL;
}

/* A topic's schema path: absolute; or relative to the working directory (the repository root
 * under make run); or to the configuration directory; or to the tree the configuration
 * directory sits in (DIR/../.., the root of a checkout or an installed release tree, where
 * config/bus is), so `busctl validate /abs/config/bus` works from any folder. */
static char *resolve_schema_path(const struct loader *l, const char *path)
{
    struct stat st;
    if (path[0] == '/' || stat(path, &st) == 0) {
        return xstrdup(path);
    }
    char *rel = xasprintf("%s/%s", l->dir, path);
    if (stat(rel, &st) == 0) {
        return rel;
    }
    free(rel);
    rel = xasprintf("%s/../../%s", l->dir, path);
    if (stat(rel, &st) == 0) {
        return rel;
    }
    free(rel);
    return xstrdup(path); /* reported as missing by the caller */
}

/* The producer tokens the repository publishes for development (config/bus/login.json,
 * bin/loginsim's default; config/bus/product.json, guard's publisher_token default): their hashes
 * are refused in production unless flagged development. */
static const char *const BUSCONF_DEV_TOKENS[] = {"dev-login-token",
                                                 "dev-only-guard-producer-token"};

/* A token hash after expansion: 64 lowercase hex digits, or empty (a producer nobody can be: its
 * variable is unset, which production refuses), and in production never a development token's. */
static void check_token_hash(struct loader *l, const char *file, const char *pointer,
                             const char *hash)
{
    size_t len = strlen(hash);
    bool is_hex = len == CRYPTO_SHA256_HEX_LEN;
    for (size_t i = 0; i < len && is_hex; i++) {
        is_hex = (hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f');
    }
    if (len == 0) {
        if (l->is_production) {
            problem(l, file, pointer,
                    "production: the token hash is empty (its environment variable is unset)");
        }
        return;
    }
    if (!is_hex) {
        problem(l, file, pointer, "token_sha256 must be 64 lowercase hex digits");
        return;
    }
    for (size_t i = 0; i < sizeof BUSCONF_DEV_TOKENS / sizeof *BUSCONF_DEV_TOKENS; i++) {
        char dev[CRYPTO_SHA256_HEX_LEN + 1];
        crypto_sha256_hex(BUSCONF_DEV_TOKENS[i], strlen(BUSCONF_DEV_TOKENS[i]), dev);
        if (l->is_production && strcmp(dev, hash) == 0) {
            problem(l, file, pointer,
                    "production: this is the hash of the development token %s (docs/security.md)",
                    BUSCONF_DEV_TOKENS[i]);
        }
    }
}

static void load_topic(struct loader *l, struct busconf *c, const char *file, size_t idx, json_t *t)
{
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/topics/%zu", idx);
    c->topics = xrealloc(c->topics, sizeof *c->topics * (c->n_topics + 1));
    struct busconf_topic *tp = &c->topics[c->n_topics++];
    memset(tp, 0, sizeof *tp);
    tp->name = opt_str(t, "name");
    tp->partitions = opt_int(t, "partitions", 3);
    tp->key = opt_str(t, "key");
    tp->retention_hours = opt_int(t, "retention_hours", 168);
    tp->replication_factor = opt_int(t, "replication_factor", 0);
    tp->min_insync_replicas = opt_int(t, "min_insync_replicas", 0);
    if (tp->replication_factor > 0 && tp->min_insync_replicas > tp->replication_factor) {
        problem(l, file, ptr,
                "min_insync_replicas %d is above replication_factor %d: no acks=all write "
                "could ever succeed",
                tp->min_insync_replicas, tp->replication_factor);
    }
    tp->max_event_bytes = (size_t)opt_int(t, "max_event_bytes", 65536);
    const char *schema = json_string_value(json_object_get(t, "schema"));
    if (schema != NULL) {
        tp->schema_path = resolve_schema_path(l, schema);
        char err[512];
        tp->schema = jschema_load(tp->schema_path, err, sizeof err);
        if (tp->schema == NULL) {
            problem(l, file, ptr, "schema %s: %s", schema, err);
        }
    }
    json_t *prods = json_object_get(t, "producers");
    size_t n = json_array_size(prods);
    if (n > 0) {
        tp->producers = xcalloc(n, sizeof *tp->producers);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(prods, i);
        char pp[128];
        snprintf(pp, sizeof pp, "%s/producers/%zu/token_sha256", ptr, i);
        if (json_is_true(json_object_get(p, "development")) && l->is_production) {
            c->n_development_skipped++; /* never loaded in production (docs/security.md) */
            continue;
        }
        char *hash = expand_env(l, file, pp, json_string_value(json_object_get(p, "token_sha256")));
        if (hash == NULL) {
            continue;
        }
        check_token_hash(l, file, pp, hash);
        tp->producers[k].name = opt_str(p, "name");
        tp->producers[k].token_sha256 = hash;
        k++;
    }
    tp->n_producers = k;
}

static void load_route(struct loader *l, struct busconf *c, const char *file, size_t idx, json_t *r)
{
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/routes/%zu", idx);
    c->routes = xrealloc(c->routes, sizeof *c->routes * (c->n_routes + 1));
    struct busconf_route *rt = &c->routes[c->n_routes++];
    memset(rt, 0, sizeof *rt);
    rt->name = opt_str(r, "name");
    rt->topic = opt_str(r, "topic");
    rt->endpoint = opt_str(r, "endpoint");
    const char *mode = json_string_value(json_object_get(r, "mode"));
    rt->mode =
        (mode != NULL && strcmp(mode, "streaming") == 0) ? BUSCONF_STREAMING : BUSCONF_ONE_WAY;
    rt->output = opt_str(r, "output");
    rt->is_exactly_once = json_is_true(json_object_get(r, "exactly_once"));
    rt->concurrency = opt_int(r, "concurrency", 4);
    rt->batch = opt_int(r, "batch", 1);
    const char *ord = json_string_value(json_object_get(r, "ordering"));
    rt->ordering = BUSCONF_ORDER_KEY;
    if (ord != NULL && strcmp(ord, "partition") == 0) {
        rt->ordering = BUSCONF_ORDER_PARTITION;
    } else if (ord != NULL && strcmp(ord, "none") == 0) {
        rt->ordering = BUSCONF_ORDER_NONE;
    }
    rt->timeout_ms = opt_int(r, "timeout_ms", 5000);
    json_t *retry = json_object_get(r, "retry");
    rt->retry_initial_ms = opt_int(retry, "initial_ms", 200);
    rt->retry_max_ms = opt_int(retry, "max_ms", 30000);
    rt->retry_max_attempts = opt_int(retry, "max_attempts", 0);
    rt->dead_letter = opt_str(r, "dead_letter");
    rt->service = opt_str(r, "service");
    const char *secret = json_string_value(json_object_get(r, "secret"));
    if (secret != NULL) {
        char sp[80];
        snprintf(sp, sizeof sp, "%s/secret", ptr);
        rt->secret = expand_env(l, file, sp, secret);
        char why[512];
        bool is_dev = false;
        if (rt->secret != NULL &&
            config_check_key_value("the route's signing key", rt->secret, DELIVERY_DEV_SECRET,
                                   l->is_production, &is_dev, why, sizeof why) != 0) {
            problem(l, file, sp, "production: %s (docs/security.md)", why);
        }
    }
    rt->raw = json_incref(r);

    if (rt->mode == BUSCONF_STREAMING && rt->output == NULL) {
        problem(l, file, ptr, "streaming route %s needs an output topic", rt->name);
    }
    if (rt->mode == BUSCONF_ONE_WAY && rt->output != NULL) {
        problem(l, file, ptr, "route %s: output is only for streaming routes", rt->name);
    }
    if (rt->mode == BUSCONF_ONE_WAY && rt->is_exactly_once) {
        char ep[80];
        snprintf(ep, sizeof ep, "%s/exactly_once", ptr);
        problem(l, file, ep,
                "route %s: exactly_once is only for streaming routes (a one-way route produces "
                "nothing to commit with its input)",
                rt->name);
    }
    if (rt->retry_max_ms < rt->retry_initial_ms) {
        problem(l, file, ptr, "route %s: retry.max_ms is below retry.initial_ms", rt->name);
    }
}

/* Provenance of each topic/route for error messages, kept beside the arrays during load. */
struct origin {
    char *file;
    size_t idx;
};

static void load_file(struct loader *l, struct busconf *c, const struct jschema *bus_schema,
                      const char *name, struct origin **tor, struct origin **ror)
{
    char *path = xasprintf("%s/%s", l->dir, name);
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        problem(l, name, "", "line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    struct jschema_error verr;
    if (bus_schema != NULL && jschema_validate(bus_schema, doc, &verr) != 0) {
        problem(l, name, verr.pointer, "%s", verr.message);
        goto out;
    }
    if (!json_is_object(doc)) {
        problem(l, name, "", "not a JSON object");
        goto out;
    }
    json_t *topics = json_object_get(doc, "topics");
    for (size_t i = 0; i < json_array_size(topics); i++) {
        *tor = xrealloc(*tor, sizeof **tor * (c->n_topics + 1));
        (*tor)[c->n_topics] = (struct origin){xstrdup(name), i};
        load_topic(l, c, name, i, json_array_get(topics, i));
    }
    json_t *routes = json_object_get(doc, "routes");
    for (size_t i = 0; i < json_array_size(routes); i++) {
        *ror = xrealloc(*ror, sizeof **ror * (c->n_routes + 1));
        (*ror)[c->n_routes] = (struct origin){xstrdup(name), i};
        load_route(l, c, name, i, json_array_get(routes, i));
    }
out:
    json_decref(doc);
    free(path);
}

static long topic_index(const struct busconf *c, const char *name)
{
    if (name == NULL) {
        return -1;
    }
    for (size_t i = 0; i < c->n_topics; i++) {
        if (c->topics[i].name != NULL && strcmp(c->topics[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* DFS over topics with edges topic -> output of each streaming route; state 1 = on stack. */
static bool has_cycle_from(const struct busconf *c, size_t t, unsigned char *state)
{
    if (state[t] == 1) {
        return true;
    }
    if (state[t] == 2) {
        return false;
    }
    state[t] = 1;
    for (size_t i = 0; i < c->n_routes; i++) {
        const struct busconf_route *r = &c->routes[i];
        if (r->mode != BUSCONF_STREAMING || r->topic == NULL ||
            strcmp(r->topic, c->topics[t].name) != 0) {
            continue;
        }
        long o = topic_index(c, r->output);
        if (o >= 0 && has_cycle_from(c, (size_t)o, state)) {
            return true;
        }
    }
    state[t] = 2;
    return false;
}

static void check_meaning(struct loader *l, struct busconf *c, const struct origin *tor,
                          const struct origin *ror)
{
    char ptr[64];
    for (size_t i = 0; i < c->n_topics; i++) {
        snprintf(ptr, sizeof ptr, "/topics/%zu/name", tor[i].idx);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->topics[i].name, c->topics[j].name) == 0) {
                problem(l, tor[i].file, ptr, "topic %s is also declared in %s", c->topics[i].name,
                        tor[j].file);
            }
        }
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        const struct busconf_route *r = &c->routes[i];
        const char *f = ror[i].file;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r->name, c->routes[j].name) == 0) {
                snprintf(ptr, sizeof ptr, "/routes/%zu/name", ror[i].idx);
                problem(l, f, ptr, "route %s is also declared in %s", r->name, ror[j].file);
            }
        }
        snprintf(ptr, sizeof ptr, "/routes/%zu/topic", ror[i].idx);
        if (topic_index(c, r->topic) < 0) {
            problem(l, f, ptr, "topic %s is not declared", r->topic);
        }
        snprintf(ptr, sizeof ptr, "/routes/%zu/output", ror[i].idx);
        if (r->output != NULL && topic_index(c, r->output) < 0) {
            problem(l, f, ptr, "output topic %s is not declared", r->output);
        }
        snprintf(ptr, sizeof ptr, "/routes/%zu/dead_letter", ror[i].idx);
        if (r->dead_letter != NULL && topic_index(c, r->dead_letter) < 0) {
            problem(l, f, ptr, "dead-letter topic %s is not declared", r->dead_letter);
        }
        snprintf(ptr, sizeof ptr, "/routes/%zu/endpoint", ror[i].idx);
        if (strncmp(r->endpoint, "http://", 7) != 0 && strncmp(r->endpoint, "https://", 8) != 0) {
            problem(l, f, ptr, "endpoint must be an http or https URL");
        }
    }
    if (c->n_topics > 0) {
        unsigned char *state = xcalloc(c->n_topics, 1);
        for (size_t t = 0; t < c->n_topics; t++) {
            if (has_cycle_from(c, t, state)) {
                problem(l, tor[t].file, "/topics", "streaming routes form a cycle through %s",
                        c->topics[t].name);
                break;
            }
        }
        free(state);
    }
}

int busconf_load(const char *dir, const char *schema_path, struct busconf **out, char *err,
                 size_t err_len)
{
    struct loader l = {.dir = dir, .is_production = config_is_production()};
    buf_init(&l.err, 64 * 1024);
    struct busconf *c = xcalloc(1, sizeof *c);
    struct origin *tor = NULL, *ror = NULL;
    char **names = NULL;
    int n_files = 0;
    int rc = -1;
    char serr[512];

    struct jschema *bus_schema = jschema_load(schema_path, serr, sizeof serr);
    if (bus_schema == NULL) {
        problem(&l, schema_path, "", "%s", serr);
        goto out;
    }
    n_files = list_json_files(dir, &names);
    if (n_files < 0) {
        problem(&l, dir, "", "cannot read directory: %s", strerror(errno));
        goto out;
    }
    for (int i = 0; i < n_files; i++) {
        load_file(&l, c, bus_schema, names[i], &tor, &ror);
    }
    if (l.n_errors == 0) {
        check_meaning(&l, c, tor, ror);
    }
    if (l.n_errors == 0) {
        rc = 0;
    }
out:
    if (l.n_errors > BUSCONF_MAX_ERR_LINES) {
        (void)buf_appendf(&l.err, "... and %d more problems\n", l.n_errors - BUSCONF_MAX_ERR_LINES);
    }
    if (err_len > 0) {
        const char *text = l.err.data ? l.err.data : "";
        size_t n = strlen(text);
        while (n > 0 && text[n - 1] == '\n') {
            n--;
        }
        if (n >= err_len) {
            n = err_len - 1;
        }
        memcpy(err, text, n);
        err[n] = '\0';
    }
    for (size_t i = 0; tor != NULL && i < c->n_topics; i++) {
        free(tor[i].file);
    }
    for (size_t i = 0; ror != NULL && i < c->n_routes; i++) {
        free(ror[i].file);
    }
    free(tor);
    free(ror);
    for (int i = 0; i < n_files; i++) {
        free(names[i]);
    }
    free(names);
    jschema_free(bus_schema);
    buf_release(&l.err);
    if (rc != 0) {
        busconf_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

void busconf_free(struct busconf *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n_topics; i++) {
        struct busconf_topic *t = &c->topics[i];
        free(t->name);
        free(t->key);
        free(t->schema_path);
        jschema_free(t->schema);
        for (size_t j = 0; j < t->n_producers; j++) {
            free(t->producers[j].name);
            free(t->producers[j].token_sha256);
        }
        free(t->producers);
    }
    free(c->topics);
    for (size_t i = 0; i < c->n_routes; i++) {
        struct busconf_route *r = &c->routes[i];
        free(r->name);
        free(r->topic);
        free(r->endpoint);
        free(r->output);
        free(r->dead_letter);
        free(r->service);
        if (r->secret != NULL) {
            memset(r->secret, 0, strlen(r->secret));
            free(r->secret);
        }
        json_decref(r->raw);
    }
    free(c->routes);
    free(c);
}

const struct busconf_topic *busconf_topic_find(const struct busconf *c, const char *name)
{
    long i = topic_index(c, name);
    return i < 0 ? NULL : &c->topics[i];
}

const struct busconf_route *busconf_route_find(const struct busconf *c, const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        if (strcmp(c->routes[i].name, name) == 0) {
            return &c->routes[i];
        }
    }
    return NULL;
}

const struct busconf_producer *busconf_topic_producer(const struct busconf_topic *t,
                                                      const char *token)
{
    if (t == NULL || token == NULL) {
        return NULL;
    }
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    crypto_sha256_hex(token, strlen(token), hex);
    const struct busconf_producer *found = NULL;
    /* Compare against every producer (no early exit) so timing says nothing about which. */
    for (size_t i = 0; i < t->n_producers; i++) {
        const char *h = t->producers[i].token_sha256;
        if (h != NULL && crypto_equal(hex, CRYPTO_SHA256_HEX_LEN, h, strlen(h)) && found == NULL) {
            found = &t->producers[i];
        }
    }
    return found;
}

bool busconf_topic_allows(const struct busconf_topic *t, const char *token)
{
    return busconf_topic_producer(t, token) != NULL;
}
