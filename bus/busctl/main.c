/* busctl - the bus configuration from git to the running bus (see docs/bus.md).
 *
 *   busctl validate [DIR]     schema + meaning; errors "file: /json/pointer: message"; exit 1
 *   busctl plan [DIR]         what apply would change on the broker and the dispatchers
 *   busctl apply [DIR]        create topics / partitions, then POST /v1/reload to dispatchers
 *   busctl lag                committed offset, high watermark and lag per route and partition
 *   busctl tail TOPIC [-n N] [--from-beginning]   print events as JSON lines
 *   busctl dlq replay ROUTE   send ROUTE's dead letters through ROUTE again
 *   busctl trace EVENT_ID [--logs DIR] [--json]   the event's journey (trace.c)
 *   busctl sync --repo URL ...  apply config/bus from a git branch when a merge changes it
 *                               (sync.c)
 *
 * DIR defaults to config/bus. Environment: BUS_BOOTSTRAP (127.0.0.1:9092), DISPATCHER_URLS
 * (comma list, http://127.0.0.1:8081), BUS_ADMIN_TOKEN (the dispatchers' admin token,
 * dev-admin-token), BUS_SCHEMA (default: DIR/../schema/bus.schema.json when it exists, else
 * config/schema/bus.schema.json), BUSCTL_CONFIG and BUSCTL_KAFKA_* (the kafka.* settings of its
 * Kafka clients, e.g. SASL and TLS). `busctl --help` and `busctl CMD --help` print the usage on
 * stdout and do nothing else; an unknown option is refused before anything is done. Exit codes:
 * 0 ok, 1 invalid configuration or failed operation, 2 usage. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "buildinfo.h"
#include "busconf.h"
#include "config.h"
#include "kafka/dlq.h"
#include "http/http_client.h"
#include "kafka/kafka.h"
#include "kafka/kafka_admin.h"
#include "kafka/kafka_consumer.h"
#include "log.h"
#include "busctl.h"
#include "sync.h"
#include "trace.h"

#define BUSCTL_TIMEOUT_MS 10000

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static const char USAGE[] =
    "usage: busctl validate [DIR] | plan [DIR] | apply [DIR] | lag |\n"
    "              tail TOPIC [-n N] [--from-beginning] | dlq replay ROUTE [DIR] |\n"
    "              trace EVENT_ID [--logs DIR] [--json] [--scan N] |\n"
    "              sync --repo URL [--branch B] [--path P] [--workdir DIR] [--interval S]\n"
    "                   [--once] | --version | --help\n"
    "  DIR: the bus configuration (default config/bus)\n"
    "  environment: BUS_BOOTSTRAP, DISPATCHER_URLS, BUS_ADMIN_TOKEN, BUS_SCHEMA,\n"
    "               BUSCTL_CONFIG (JSON with kafka.* keys), BUSCTL_KAFKA_<NAME> (docs/bus.md)\n";

/* A usage error: the usage on stderr, exit 2. */
static int usage(void)
{
    fputs(USAGE, stderr);
    return 2;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

json_t *busctl_kafka(void)
{
    static struct config *cfg;
    if (cfg == NULL) {
        static const struct config_def none[] = {CONFIG_DEF_END};
        char err[1024];
        const char *path = getenv("BUSCTL_CONFIG");
        if (config_load(&cfg, none, "BUSCTL", path && *path ? path : NULL, err, sizeof err) != 0) {
            fprintf(stderr, "busctl: %s\n", err);
            exit(2);
        }
        if (kafka_conf_validate(config_kafka(cfg), err, sizeof err) != 0) {
            fprintf(stderr, "busctl: %s\n", err);
            exit(2);
        }
    }
    return config_kafka(cfg);
}

/* The bus schema: BUS_SCHEMA, else the one beside DIR (DIR/../schema/bus.schema.json, as in
 * this repository and in an installed tree), else config/schema/bus.schema.json. */
static const char *schema_for(const char *dir, char *buf, size_t len)
{
    const char *env = getenv("BUS_SCHEMA");
    if (env && *env) {
        return env;
    }
    int n = snprintf(buf, len, "%s/../schema/bus.schema.json", dir);
    if (n > 0 && (size_t)n < len && access(buf, R_OK) == 0) {
        return buf;
    }
    return "config/schema/bus.schema.json";
}

/* Route secrets are written "${NAME}" and expanded from the environment by busconf_load. busctl
 * never signs anything, so where NAME is unset (CI, a laptop) it validates with a placeholder
 * instead of failing; the dispatcher, which signs, still refuses to start without it. */
static void placeholder_secrets(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0) {
            continue;
        }
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            continue;
        }
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        char line[8192];
        while (fgets(line, sizeof line, f) != NULL) {
            for (char *p = strstr(line, "${"); p != NULL; p = strstr(p + 2, "${")) {
                char *end = strchr(p + 2, '}');
                if (end == NULL || end - (p + 2) <= 0 || end - (p + 2) >= 256) {
                    continue;
                }
                char name[256];
                memcpy(name, p + 2, (size_t)(end - (p + 2)));
                name[end - (p + 2)] = '\0';
                /* ${NAME:-TEXT} has its own default; a placeholder is as long as production
                 * wants a key to be (docs/security.md), so it passes the mode's checks. */
                if (strstr(name, ":-") == NULL && getenv(name) == NULL) {
                    fprintf(stderr, "note: %s is not set; checked with a placeholder secret\n",
                            name);
                    setenv(name, "busctl-placeholder-secret-not-for-signing", 0);
                }
            }
        }
        fclose(f);
    }
    closedir(d);
}

static struct busconf *load(const char *dir)
{
    placeholder_secrets(dir);
    static char err[65536];
    struct busconf *c = NULL;
    char schema[4096];
    if (busconf_load(dir, schema_for(dir, schema, sizeof schema), &c, err, sizeof err) != 0) {
        fputs(err, stderr);
        if (err[0] && err[strlen(err) - 1] != '\n') {
            fputc('\n', stderr);
        }
        return NULL;
    }
    return c;
}

int busctl_validate(const char *dir)
{
    struct busconf *c = load(dir);
    if (c == NULL) {
        return 1;
    }
    printf("%s: valid (%zu topics, %zu routes)\n", dir, c->n_topics, c->n_routes);
    busconf_free(c);
    return 0;
}

/* ---- dispatchers -------------------------------------------------------------------------- */

/* Calls fn for every URL of DISPATCHER_URLS. */
static int each_dispatcher(int (*fn)(const char *url, void *ctx), void *ctx)
{
    const char *urls = getenv("DISPATCHER_URLS"); /* set but empty: no dispatcher */
    char *list = xstrdup(urls ? urls : "http://127.0.0.1:8081");
    char *save = NULL;
    int rc = 0;
    for (char *u = strtok_r(list, ", ", &save); u; u = strtok_r(NULL, ", ", &save)) {
        if (fn(u, ctx) != 0) {
            rc = -1;
        }
    }
    free(list);
    return rc;
}

static json_t *get_json(const char *method, const char *url, int *status, char *err, size_t err_len)
{
    struct http_client *hc = http_client_new();
    struct http_result res = {0};
    json_t *doc = NULL;
    *status = 0;
    /* The dispatchers' admin API wants its token (docs/bus.md, "Admin token"). */
    char auth[600];
    snprintf(auth, sizeof auth, "Bearer %s", env_or("BUS_ADMIN_TOKEN", "dev-admin-token"));
    const struct http_header_kv hdr[] = {{"Authorization", auth}};
    if (http_client_request(hc, method, url, hdr, 1, method[0] == 'P' ? "" : NULL, 0,
                            BUSCTL_TIMEOUT_MS, 1 << 20, &res) != 0) {
        snprintf(err, err_len, "%s", res.error);
    } else {
        *status = res.status;
        doc = json_loadb(res.body ? res.body : "", res.body_len, 0, NULL);
        if (doc == NULL) {
            snprintf(err, err_len, "answer %d is not JSON", res.status);
        }
    }
    http_result_release(&res);
    http_client_free(hc);
    return doc;
}

struct routes_acc {
    json_t *routes; /* name -> status object */
    int failures;
};

static int collect_routes(const char *base, void *ctx)
{
    struct routes_acc *acc = ctx;
    char url[1024], err[256];
    int status;
    snprintf(url, sizeof url, "%s/v1/routes", base);
    json_t *doc = get_json("GET", url, &status, err, sizeof err);
    if (doc == NULL || status != 200) {
        fprintf(stderr, "dispatcher %s: %s\n", base, doc ? "unexpected answer" : err);
        json_decref(doc);
        acc->failures++;
        return -1;
    }
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(doc, "routes"), i, r)
    {
        json_object_set_new(r, "dispatcher", json_string(base));
        const char *name = json_string_value(json_object_get(r, "name"));
        json_t *prev = json_object_get(acc->routes, name);
        if (prev == NULL) {
            json_t *arr = json_array();
            json_object_set_new(acc->routes, name, arr);
            prev = arr;
        }
        json_array_append(prev, r);
    }
    json_decref(doc);
    return 0;
}

/* What the reloaded dispatchers report, checked against the configuration being applied. */
struct reload_check {
    const struct busconf *c;
    json_t *running; /* route name -> true, over every dispatcher */
    int foreign;     /* routes a dispatcher runs that the configuration does not have */
};

static int reload_one(const char *base, void *ctx)
{
    struct reload_check *chk = ctx;
    char url[1024], err[256];
    int status;
    snprintf(url, sizeof url, "%s/v1/reload", base);
    json_t *doc = get_json("POST", url, &status, err, sizeof err);
    if (doc == NULL || status != 200) {
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        fprintf(stderr, "reload %s: %s\n", base, text ? text : err);
        free(text);
        json_decref(doc);
        return -1;
    }
    json_t *routes = json_object_get(doc, "routes");
    char *names = json_dumps(routes, JSON_COMPACT);
    printf("reloaded %s: routes %s\n", base, names);
    free(names);
    size_t i;
    json_t *r;
    json_array_foreach(routes, i, r)
    {
        const char *name = json_string_value(r);
        if (name == NULL) {
            continue;
        }
        json_object_set_new(chk->running, name, json_true());
        if (busconf_route_find(chk->c, name) == NULL) {
            /* The dispatcher reloaded a configuration other than this one (its own
             * bus_config_dir): what was asked is not what runs. */
            fprintf(stderr, "dispatcher %s runs route %s, which %s does not have\n", base, name,
                    "the applied configuration");
            chk->foreign++;
        }
    }
    json_decref(doc);
    return 0;
}

/* After the reloads: every route of the configuration must run on some dispatcher. */
static int check_applied(const struct reload_check *chk)
{
    int missing = 0;
    for (size_t i = 0; i < chk->c->n_routes; i++) {
        const char *name = chk->c->routes[i].name;
        if (json_object_get(chk->running, name) == NULL) {
            fprintf(stderr, "route %s is not running on any dispatcher after the reload\n", name);
            missing++;
        }
    }
    if (missing || chk->foreign) {
        fprintf(stderr,
                "apply: the dispatchers do not run the applied routes (%d missing, %d foreign): "
                "is their bus_config_dir the directory applied?\n",
                missing, chk->foreign);
        return -1;
    }
    return 0;
}

/* ---- plan / apply ------------------------------------------------------------------------- */

static struct kafka_admin *admin(void)
{
    char err[512];
    struct kafka_admin *a =
        kafka_admin_new(env_or("BUS_BOOTSTRAP", "127.0.0.1:9092"), busctl_kafka(), err, sizeof err);
    if (a == NULL) {
        fprintf(stderr, "%s\n", err);
    }
    return a;
}

/* The Kafka settings busctl manages on a topic, from its configuration (new reference). */
static json_t *topic_settings(const struct busconf_topic *t)
{
    json_t *set = json_object();
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)t->retention_hours * 3600000LL);
    json_object_set_new(set, "retention.ms", json_string(v));
    if (t->min_insync_replicas > 0) {
        snprintf(v, sizeof v, "%d", t->min_insync_replicas);
        json_object_set_new(set, "min.insync.replicas", json_string(v));
    }
    return set;
}

/* Plans (and with is_apply makes) the changes of an existing topic's settings: what the
 * configuration asks for against what the broker describes. Returns the failed steps. */
static int plan_topic_settings(const struct busconf_topic *t, struct kafka_admin *a, bool is_apply,
                               int *changes)
{
    char err[512];
    int failed = 0;
    if (t->replication_factor > 0) {
        int rf = kafka_admin_replication_factor(a, t->name, BUSCTL_TIMEOUT_MS);
        if (rf > 0 && rf != t->replication_factor) {
            printf("! topic %s has replication factor %d, configured %d: busctl does not "
                   "reassign replicas (left as is; kafka-reassign-partitions does)\n",
                   t->name, rf, t->replication_factor);
        }
    }
    json_t *have = kafka_admin_topic_configs(a, t->name, BUSCTL_TIMEOUT_MS, err, sizeof err);
    if (have == NULL) {
        if (strncmp(err, "unsupported:", 12) == 0) {
            printf("  ! broker does not describe topic settings (%s): retention not compared\n",
                   err);
            return 0;
        }
        fprintf(stderr, "  ! reading the settings of topic %s: %s\n", t->name, err);
        return 1;
    }
    json_t *want = topic_settings(t), *diff = json_object();
    const char *key;
    json_t *val;
    json_object_foreach(want, key, val)
    {
        const char *now = json_string_value(json_object_get(json_object_get(have, key), "value"));
        if (now == NULL || strcmp(now, json_string_value(val)) != 0) {
            printf("~ topic %s %s %s -> %s", t->name, key, now ? now : "(unknown)",
                   json_string_value(val));
            if (strcmp(key, "retention.ms") == 0) {
                printf(" (retention_hours %d)", t->retention_hours);
            }
            printf("\n");
            json_object_set(diff, key, val);
            (*changes)++;
        }
    }
    if (is_apply && json_object_size(diff) > 0 &&
        kafka_admin_alter_topic_configs(a, t->name, diff, BUSCTL_TIMEOUT_MS, err, sizeof err) !=
            0) {
        fprintf(stderr, "  ! changing the settings of topic %s: %s\n", t->name, err);
        failed++;
    }
    json_decref(diff);
    json_decref(want);
    json_decref(have);
    return failed;
}

/* Prints the plan; with is_apply, carries out the topic part. is_mock: librdkafka's mock
 * cluster, which keeps no topic settings. Returns the number of failed steps (apply) or 0. */
static int plan_topics(struct busconf *c, json_t *live, struct kafka_admin *a, bool is_apply,
                       bool is_mock, int *changes)
{
    int failed = 0;
    char err[512];
    for (size_t i = 0; i < c->n_topics; i++) {
        const struct busconf_topic *t = &c->topics[i];
        json_t *have = json_object_get(live, t->name);
        if (have == NULL) {
            printf("+ topic %s (%d partitions, retention %d h", t->name, t->partitions,
                   t->retention_hours);
            if (t->replication_factor > 0) {
                printf(", replication factor %d", t->replication_factor);
            }
            if (t->min_insync_replicas > 0) {
                printf(", min.insync.replicas %d", t->min_insync_replicas);
            }
            printf(")\n");
            (*changes)++;
            json_t *settings = topic_settings(t);
            if (is_apply &&
                kafka_admin_create_topic(a, t->name, t->partitions, t->replication_factor, settings,
                                         BUSCTL_TIMEOUT_MS, err, sizeof err) != 0) {
                if (strncmp(err, "unsupported:", 12) == 0) {
                    printf("  ! broker does not create topics (%s); with bin/bus-mock, "
                           "start it with --bus-config DIR\n",
                           err);
                } else {
                    fprintf(stderr, "  ! creating topic %s: %s\n", t->name, err);
                    failed++;
                }
            }
            json_decref(settings);
            continue;
        }
        if (json_integer_value(have) < t->partitions) {
            printf("~ topic %s partitions %lld -> %d\n", t->name,
                   (long long)json_integer_value(have), t->partitions);
            (*changes)++;
            if (is_apply &&
                kafka_admin_create_partitions(a, t->name, t->partitions, BUSCTL_TIMEOUT_MS, err,
                                              sizeof err) != 0) {
                if (strncmp(err, "unsupported:", 12) == 0) {
                    printf("  ! broker does not add partitions (%s)\n", err);
                } else {
                    fprintf(stderr, "  ! adding partitions to %s: %s\n", t->name, err);
                    failed++;
                }
            }
        } else if (json_integer_value(have) > t->partitions) {
            printf("! topic %s has %lld partitions, configured %d: Kafka cannot remove "
                   "partitions (left as is)\n",
                   t->name, (long long)json_integer_value(have), t->partitions);
        }
        if (!is_mock) {
            failed += plan_topic_settings(t, a, is_apply, changes);
        }
    }
    return failed;
}

static void plan_routes(struct busconf *c, json_t *running, int *changes)
{
    for (size_t i = 0; i < c->n_routes; i++) {
        const struct busconf_route *r = &c->routes[i];
        json_t *have = json_array_get(json_object_get(running, r->name), 0);
        if (have == NULL) {
            printf("+ route %s (%s -> %s)\n", r->name, r->topic, r->endpoint);
            (*changes)++;
            continue;
        }
        const char *ep = json_string_value(json_object_get(have, "endpoint"));
        const char *tp = json_string_value(json_object_get(have, "topic"));
        int conc = (int)json_integer_value(json_object_get(have, "concurrency"));
        if ((ep && strcmp(ep, r->endpoint) != 0) || (tp && strcmp(tp, r->topic) != 0) ||
            conc != r->concurrency) {
            printf("~ route %s (%s -> %s, concurrency %d)\n", r->name, r->topic, r->endpoint,
                   r->concurrency);
            (*changes)++;
        }
    }
    const char *name;
    json_t *v;
    json_object_foreach(running, name, v)
    {
        if (busconf_route_find(c, name) == NULL) {
            printf("- route %s\n", name);
            (*changes)++;
        }
    }
}

int busctl_plan_apply(const char *dir, bool is_apply)
{
    int rc = 1;
    struct busconf *c = load(dir);
    struct kafka_admin *a = NULL;
    json_t *live = NULL;
    struct routes_acc acc = {json_object(), 0};
    char err[512];
    int changes = 0;
    if (c == NULL) {
        goto out;
    }
    a = admin();
    if (a == NULL) {
        goto out;
    }
    live = kafka_admin_topics(a, BUSCTL_TIMEOUT_MS, err, sizeof err);
    if (live == NULL) {
        fprintf(stderr, "broker %s: %s\n", env_or("BUS_BOOTSTRAP", "127.0.0.1:9092"), err);
        goto out;
    }
    /* librdkafka's mock cluster (bin/bus-mock) answers no CreateTopics: its topics come from
     * bus-mock --bus-config DIR. */
    char cid[128];
    bool is_mock =
        kafka_admin_cluster_id(a, cid, sizeof cid) == 0 && strncmp(cid, "mockCluster", 11) == 0;
    if (is_mock && is_apply) {
        printf("broker is librdkafka's mock cluster (%s): topics are not created by apply "
               "(start bin/bus-mock with --bus-config DIR)\n",
               cid);
    }
    int failed = plan_topics(c, live, a, is_apply && !is_mock, is_mock, &changes);
    each_dispatcher(collect_routes, &acc);
    plan_routes(c, acc.routes, &changes);
    if (changes == 0) {
        printf("no changes\n");
    }
    if (!is_apply) {
        rc = acc.failures ? 1 : 0;
        goto out;
    }
    if (failed) {
        fprintf(stderr, "apply: %d topic steps failed; dispatchers not reloaded\n", failed);
        goto out;
    }
    const char *urls = getenv("DISPATCHER_URLS");
    if (urls && !*urls) {
        rc = 0; /* no dispatcher to reload (DISPATCHER_URLS set but empty) */
        goto out;
    }
    struct reload_check chk = {c, json_object(), 0};
    rc = each_dispatcher(reload_one, &chk) == 0 && check_applied(&chk) == 0 ? 0 : 1;
    json_decref(chk.running);
out:
    json_decref(acc.routes);
    json_decref(live);
    kafka_admin_free(a);
    busconf_free(c);
    return rc;
}

/* ---- lag ------------------------------------------------------------------------------------ */

static int cmd_lag(void)
{
    struct routes_acc acc = {json_object(), 0};
    each_dispatcher(collect_routes, &acc);
    printf("%-24s %-5s %12s %12s %8s %8s  %s\n", "ROUTE", "PART", "COMMITTED", "HIGH", "LAG",
           "PENDING", "STATE");
    const char *name;
    json_t *arr;
    json_object_foreach(acc.routes, name, arr)
    {
        size_t i, j;
        json_t *r, *p;
        json_array_foreach(arr, i, r)
        {
            json_array_foreach(json_object_get(r, "partitions"), j, p)
            {
                printf("%-24s %-5lld %12lld %12lld %8lld %8lld  %s\n", name,
                       (long long)json_integer_value(json_object_get(p, "partition")),
                       (long long)json_integer_value(json_object_get(p, "committed")),
                       (long long)json_integer_value(json_object_get(p, "high_watermark")),
                       (long long)json_integer_value(json_object_get(p, "lag")),
                       (long long)json_integer_value(json_object_get(p, "pending")),
                       json_string_value(json_object_get(r, "state")));
            }
        }
    }
    int rc = acc.failures ? 1 : 0;
    json_decref(acc.routes);
    return rc;
}

/* ---- tail ----------------------------------------------------------------------------------- */

static json_t *record_json(const struct kafka_record *rec)
{
    json_t *h = json_object();
    for (size_t i = 0; i < rec->n_headers; i++) {
        json_object_set_new(h, rec->headers[i].name, json_string(rec->headers[i].value));
    }
    json_t *value = json_loadb(rec->value, rec->value_len, 0, NULL);
    if (value == NULL) {
        value = json_stringn(rec->value, rec->value_len);
    }
    return json_pack("{s:s, s:i, s:I, s:s?, s:o, s:o}", "topic", rec->topic, "partition",
                     (int)rec->partition, "offset", (json_int_t)rec->offset, "key", rec->key,
                     "headers", h, "value", value ? value : json_null());
}

static int cmd_tail(const char *topic, long count, bool is_from_beginning)
{
    char group[128], err[512];
    snprintf(group, sizeof group, "busctl.tail.%ld.%ld", (long)getpid(), (long)time(NULL));
    json_t *props = json_deep_copy(busctl_kafka());
    json_object_set_new(props, "auto.offset.reset",
                        json_string(is_from_beginning ? "earliest" : "latest"));
    struct kafka_consumer *c = kafka_consumer_new(env_or("BUS_BOOTSTRAP", "127.0.0.1:9092"), group,
                                                  topic, props, NULL, NULL, err, sizeof err);
    json_decref(props);
    if (c == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    long seen = 0;
    while (count <= 0 || seen < count) {
        struct kafka_record *rec = NULL;
        if (kafka_consumer_poll(c, 500, &rec) != 1) {
            continue;
        }
        json_t *j = record_json(rec);
        char *line = json_dumps(j, JSON_COMPACT);
        printf("%s\n", line);
        fflush(stdout);
        free(line);
        json_decref(j);
        kafka_record_free(rec);
        seen++;
    }
    kafka_consumer_free(c);
    return 0;
}

/* ---- dlq replay ----------------------------------------------------------------------------- */

/* lib/kafka/dlq.c does the work (the dispatcher's dashboard replays with the same code). */
static int cmd_dlq_replay(const char *dir, const char *route_name, long idle_ms)
{
    char err[512];
    struct busconf *c = load(dir);
    if (c == NULL) {
        return 1;
    }
    int rc = 1;
    const struct busconf_route *r = busconf_route_find(c, route_name);
    if (r == NULL || r->dead_letter == NULL) {
        fprintf(stderr, "route %s %s\n", route_name,
                r ? "has no dead_letter topic" : "not found in the configuration");
        goto out;
    }
    long replayed = 0, skipped = 0;
    if (dlq_replay(env_or("BUS_BOOTSTRAP", "127.0.0.1:9092"), busctl_kafka(), r->name, r->topic,
                   r->dead_letter, idle_ms, 60000, &replayed, &skipped, err, sizeof err) != 0) {
        fprintf(stderr, "replay of %s: %s\n", r->name, err);
        goto out;
    }
    printf("replayed %ld dead letters of route %s to topic %s (%ld of other routes skipped)\n",
           replayed, r->name, r->topic, skipped);
    rc = 0;
out:
    busconf_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    log_init("busctl", LOG_LEVEL_WARN);
    if (argc < 2) {
        return usage();
    }
    /* GNU conventions: --help wherever it is prints the usage and does nothing else (`busctl
     * apply --help` must not apply), and an option a command does not take is refused before
     * anything is done. */
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        }
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0) {
        buildinfo_print(stdout, "busctl");
        return 0;
    }
    bool is_config_cmd =
        strcmp(cmd, "validate") == 0 || strcmp(cmd, "plan") == 0 || strcmp(cmd, "apply") == 0;
    if (is_config_cmd) {
        if (argc > 3 || (argc == 3 && argv[2][0] == '-')) {
            return usage();
        }
        const char *dir = argc == 3 ? argv[2] : "config/bus";
        if (strcmp(cmd, "validate") == 0) {
            return busctl_validate(dir);
        }
        return busctl_plan_apply(dir, strcmp(cmd, "apply") == 0);
    }
    if (strcmp(cmd, "lag") == 0) {
        return argc == 2 ? cmd_lag() : usage();
    }
    if (strcmp(cmd, "tail") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            return usage();
        }
        long count = 0;
        bool is_from_beginning = false;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
                count = strtol(argv[++i], NULL, 10);
            } else if (strcmp(argv[i], "--from-beginning") == 0) {
                is_from_beginning = true;
            } else {
                return usage();
            }
        }
        return cmd_tail(argv[2], count, is_from_beginning);
    }
    if (strcmp(cmd, "trace") == 0) {
        return busctl_trace_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "sync") == 0) {
        return busctl_sync_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "dlq") == 0 && (argc == 4 || argc == 5) && strcmp(argv[2], "replay") == 0 &&
        argv[3][0] != '-' && (argc == 4 || argv[4][0] != '-')) {
        const char *rdir = argc > 4 ? argv[4] : "config/bus";
        return cmd_dlq_replay(rdir, argv[3], 2000);
    }
    return usage();
}
