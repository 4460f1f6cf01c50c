/* admin.c - the broker's configuration and clean-up requests: DescribeConfigs, AlterConfigs,
 * IncrementalAlterConfigs, DeleteGroups and DeleteRecords (protocol guide,
 * https://kafka.apache.org/protocol, the non-flexible versions listed in server.c's table).
 *
 * Topic settings that mean something on this single node are accepted and stored in
 * topics.json (store.c), so they survive a restart: retention.ms, retention.bytes and
 * segment.bytes (used by retention and segment rolls at once), cleanup.policy (only "delete":
 * there is no compaction, so "compact" is refused rather than stored and ignored) and
 * min.insync.replicas (acks=all produce answers NOT_ENOUGH_REPLICAS when it is above 1, as
 * Kafka does with one in-sync replica). The broker's own settings come from its config file:
 * DescribeConfigs shows them, AlterConfigs refuses to change them.
 *
 * Authorization (acl.h): changing a topic's settings needs AlterConfigs (or Alter) on the topic,
 * DeleteGroups Delete on the group, DeleteRecords Delete on the topic, DescribeConfigs
 * DescribeConfigs on the topic or the cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "broker.h"
#include "log.h"

#define RES_TOPIC 2
#define RES_BROKER 4

/* DescribeConfigs config_source values (v1+). */
enum { SRC_DYNAMIC_TOPIC = 1, SRC_STATIC_BROKER = 4, SRC_DEFAULT = 5 };

enum { OP_SET = 0, OP_DELETE = 1, OP_APPEND = 2, OP_SUBTRACT = 3 };

static void kw_kstr(struct kw *w, struct kstr s)
{
    if (!s.ptr) {
        kw_i16(w, -1);
    } else {
        kw_strn(w, s.ptr, (size_t)s.len);
    }
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end) {
        return -1;
    }
    *out = x;
    return 0;
}

/* The topic settings this broker knows: name, bit, and the broker key it defaults from. */
static const struct topic_key {
    const char *name;
    unsigned bit;
    const char *broker_name;
} TOPIC_KEYS[] = {
    {"retention.ms", TOPIC_CONF_RETENTION_MS, "log.retention.ms"},
    {"retention.bytes", TOPIC_CONF_RETENTION_BYTES, "log.retention.bytes"},
    {"segment.bytes", TOPIC_CONF_SEGMENT_BYTES, "log.segment.bytes"},
    {"cleanup.policy", TOPIC_CONF_CLEANUP_POLICY, "log.cleanup.policy"},
    {"min.insync.replicas", TOPIC_CONF_MIN_INSYNC_REPLICAS, "min.insync.replicas"},
};
#define N_TOPIC_KEYS (sizeof TOPIC_KEYS / sizeof TOPIC_KEYS[0])

static const struct topic_key *topic_key_find(const char *name)
{
    for (size_t i = 0; i < N_TOPIC_KEYS; i++) {
        if (!strcmp(TOPIC_KEYS[i].name, name)) {
            return &TOPIC_KEYS[i];
        }
    }
    return NULL;
}

/* The value of a topic setting as text. */
static void topic_value(const struct topic_conf *c, unsigned bit, char *out, size_t n)
{
    switch (bit) {
    case TOPIC_CONF_RETENTION_MS:
        snprintf(out, n, "%lld", (long long)c->retention_ms);
        break;
    case TOPIC_CONF_RETENTION_BYTES:
        snprintf(out, n, "%lld", (long long)c->retention_bytes);
        break;
    case TOPIC_CONF_SEGMENT_BYTES:
        snprintf(out, n, "%lld", (long long)c->segment_bytes);
        break;
    case TOPIC_CONF_CLEANUP_POLICY:
        snprintf(out, n, "delete");
        break;
    default:
        snprintf(out, n, "%d", (int)(c->min_insync_replicas > 0 ? c->min_insync_replicas : 1));
        break;
    }
}

int topic_conf_set(struct topic_conf *c, const char *key, const char *value, char *msg,
                   size_t msg_len)
{
    const struct topic_key *k = topic_key_find(key);
    if (!k) {
        snprintf(msg, msg_len,
                 "unsupported topic config %s (bus-broker stores retention.ms, retention.bytes, "
                 "segment.bytes, cleanup.policy, min.insync.replicas)",
                 key);
        return -1;
    }
    if (!value) {
        snprintf(msg, msg_len, "%s: a value is required", key);
        return KERR_INVALID_CONFIG;
    }
    int64_t v = 0;
    int is_num = parse_i64(value, &v) == 0;
    switch (k->bit) {
    case TOPIC_CONF_RETENTION_MS:
    case TOPIC_CONF_RETENTION_BYTES:
        if (!is_num || v < -1) {
            snprintf(msg, msg_len, "%s must be an integer >= -1, got \"%.40s\"", key, value);
            return KERR_INVALID_CONFIG;
        }
        if (k->bit == TOPIC_CONF_RETENTION_MS) {
            c->retention_ms = v;
        } else {
            c->retention_bytes = v;
        }
        break;
    case TOPIC_CONF_SEGMENT_BYTES:
        if (!is_num || v < 1024 || v > 1073741824) {
            snprintf(msg, msg_len, "segment.bytes must be 1024..1073741824, got \"%.40s\"", value);
            return KERR_INVALID_CONFIG;
        }
        c->segment_bytes = v;
        break;
    case TOPIC_CONF_CLEANUP_POLICY:
        if (strcmp(value, "delete") != 0) {
            snprintf(msg, msg_len,
                     "cleanup.policy \"%.40s\" refused: bus-broker only deletes old segments "
                     "(no log compaction)",
                     value);
            return KERR_INVALID_CONFIG;
        }
        break;
    default:
        if (!is_num || v < 1 || v > 1000) {
            snprintf(msg, msg_len, "min.insync.replicas must be an integer >= 1, got \"%.40s\"",
                     value);
            return KERR_INVALID_CONFIG;
        }
        c->min_insync_replicas = (int32_t)v;
        break;
    }
    c->set_mask |= k->bit;
    return 0;
}

/* Returns one setting to the broker's default (incremental DELETE). */
static void topic_conf_reset(struct topic_conf *c, const struct topic_conf *def, unsigned bit)
{
    switch (bit) {
    case TOPIC_CONF_RETENTION_MS:
        c->retention_ms = def->retention_ms;
        break;
    case TOPIC_CONF_RETENTION_BYTES:
        c->retention_bytes = def->retention_bytes;
        break;
    case TOPIC_CONF_SEGMENT_BYTES:
        c->segment_bytes = def->segment_bytes;
        break;
    case TOPIC_CONF_MIN_INSYNC_REPLICAS:
        c->min_insync_replicas = def->min_insync_replicas;
        break;
    default:
        break;
    }
    c->set_mask &= ~bit;
}

/* ---- DescribeConfigs v0-v2 ---- */

static int want_key(const struct kstr *keys, int32_t nk, const char *name)
{
    if (nk < 0) {
        return 1;
    }
    for (int32_t i = 0; i < nk; i++) {
        if (keys[i].len == (int32_t)strlen(name) &&
            !memcmp(keys[i].ptr, name, (size_t)keys[i].len)) {
            return 1;
        }
    }
    return 0;
}

struct conf_entry {
    const char *name;
    char value[64];
    int8_t source;
    int8_t is_read_only;
    const char *synonym; /* the broker key a topic default comes from, or NULL */
};

static void entry_write(struct kw *w, int16_t v, const struct conf_entry *e, int with_synonyms)
{
    kw_str(w, e->name);
    kw_str(w, e->value);
    kw_i8(w, e->is_read_only);
    if (v == 0) {
        kw_i8(w, e->source == SRC_DEFAULT || e->source == SRC_STATIC_BROKER); /* is_default */
    } else {
        kw_i8(w, e->source);
    }
    kw_i8(w, 0); /* is_sensitive */
    if (v >= 1) {
        if (!with_synonyms) {
            kw_i32(w, 0);
        } else if (e->synonym) {
            /* Kafka lists the setting itself (when on the topic), then where the default
             * comes from. */
            int has_own = e->source == SRC_DYNAMIC_TOPIC;
            kw_i32(w, has_own ? 2 : 1);
            if (has_own) {
                kw_str(w, e->name);
                kw_str(w, e->value);
                kw_i8(w, SRC_DYNAMIC_TOPIC);
            }
            kw_str(w, e->synonym);
            kw_str(w, "");
            kw_i8(w, SRC_STATIC_BROKER);
        } else {
            kw_i32(w, 1);
            kw_str(w, e->name);
            kw_str(w, e->value);
            kw_i8(w, e->source);
        }
    }
}

/* The broker's settings, as Kafka names them (values from bus-broker's config file). */
static size_t broker_entries(struct broker *b, struct conf_entry *out, size_t cap)
{
    const struct broker_options *o = &b->opt;
    const struct topic_conf *d = &b->store.defaults;
    struct {
        const char *name;
        long long v;
        const char *s;
    } items[] = {
        {"broker.id", 0, NULL},
        {"log.retention.ms", (long long)d->retention_ms, NULL},
        {"log.retention.bytes", (long long)d->retention_bytes, NULL},
        {"log.segment.bytes", (long long)d->segment_bytes, NULL},
        {"log.cleanup.policy", 0, "delete"},
        {"log.retention.check.interval.ms", o->retention_check_ms, NULL},
        {"min.insync.replicas", d->min_insync_replicas, NULL},
        {"default.replication.factor", 1, NULL},
        {"num.partitions", o->default_partitions, NULL},
        {"auto.create.topics.enable", 0, o->auto_create_topics ? "true" : "false"},
        {"socket.request.max.bytes", o->max_request_bytes, NULL},
        {"max.connections", o->max_connections, NULL},
        {"max.connections.per.ip", o->max_connections_per_address, NULL},
        {"connections.max.idle.ms", o->idle_timeout_ms, NULL},
        {"group.initial.rebalance.delay.ms", o->group_initial_rebalance_delay_ms, NULL},
        {"log.flush.policy", 0,
         o->fsync == FSYNC_ALWAYS     ? "always"
         : o->fsync == FSYNC_INTERVAL ? "interval"
                                      : "never"},
        {"log.flush.interval.ms", o->fsync_interval_ms, NULL},
        {"sasl.enabled.mechanisms", 0,
         o->is_sasl_plain ? "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN" : "SCRAM-SHA-256,SCRAM-SHA-512"},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof items / sizeof items[0] && n < cap; i++) {
        struct conf_entry *e = &out[n++];
        e->name = items[i].name;
        if (items[i].s) {
            snprintf(e->value, sizeof e->value, "%s", items[i].s);
        } else {
            snprintf(e->value, sizeof e->value, "%lld", items[i].v);
        }
        e->source = SRC_STATIC_BROKER;
        e->is_read_only = 1;
        e->synonym = NULL;
    }
    return n;
}

static size_t topic_entries(struct broker *b, const struct topic *t, struct conf_entry *out)
{
    for (size_t i = 0; i < N_TOPIC_KEYS; i++) {
        struct conf_entry *e = &out[i];
        const struct topic_key *k = &TOPIC_KEYS[i];
        int is_set = (t->conf.set_mask & k->bit) != 0;
        e->name = k->name;
        topic_value(&t->conf, k->bit, e->value, sizeof e->value);
        e->source = is_set ? SRC_DYNAMIC_TOPIC : SRC_STATIC_BROKER;
        e->is_read_only = 0;
        e->synonym = k->broker_name;
    }
    (void)b;
    return N_TOPIC_KEYS;
}

int handle_describe_configs(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int32_t nr = kr_array(q, 4);
    struct {
        int8_t type;
        struct kstr name;
        struct kstr keys[64];
        int32_t nk;
    } *res = xcalloc(nr > 0 ? (size_t)nr : 1, sizeof *res);
    for (int32_t i = 0; i < nr && !q->err; i++) {
        res[i].type = kr_i8(q);
        res[i].name = kr_str(q);
        res[i].nk = kr_array(q, 2);
        if (res[i].nk > 64) {
            free(res);
            return -1;
        }
        for (int32_t k = 0; k < res[i].nk; k++) {
            res[i].keys[k] = kr_str(q);
        }
    }
    int with_synonyms = v >= 1 ? kr_i8(q) != 0 : 0;
    if (q->err) {
        free(res);
        return -1;
    }
    struct kw *w = &r->w;
    kw_i32(w, 0);
    kw_i32(w, nr < 0 ? 0 : nr);
    for (int32_t i = 0; i < nr; i++) {
        int8_t type = res[i].type;
        char name[STORE_MAX_NAME + 1] = "";
        int has_name = kstr_copy(res[i].name, name, sizeof name) == 0;
        struct topic *t = has_name && type == RES_TOPIC ? store_topic_find(&b->store, name) : NULL;
        int err = 0;
        const char *msg = NULL;
        if (type == RES_TOPIC) {
            if (!has_name || !reply_allowed(b, r, ACL_TOPIC, name, ACL_DESCRIBE_CONFIGS)) {
                err = KERR_TOPIC_AUTHORIZATION_FAILED;
                msg = "not authorized";
            } else if (!t) {
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
                msg = "unknown topic";
            }
        } else if (type == RES_BROKER) {
            if (!reply_allowed(b, r, ACL_CLUSTER, NULL, ACL_DESCRIBE_CONFIGS)) {
                err = KERR_CLUSTER_AUTHORIZATION_FAILED;
                msg = "not authorized";
            }
        } else {
            err = KERR_INVALID_REQUEST;
            msg = "unsupported resource type (topics and the broker only)";
        }
        kw_i16(w, (int16_t)err);
        kw_str(w, msg);
        kw_i8(w, type);
        kw_kstr(w, res[i].name);
        struct conf_entry entries[32];
        size_t n = err                 ? 0
                   : type == RES_TOPIC ? topic_entries(b, t, entries)
                                       : broker_entries(b, entries, 32);
        size_t mark = kw_mark_i32(w);
        int32_t count = 0;
        for (size_t k = 0; k < n; k++) {
            if (!want_key(res[i].keys, res[i].nk, entries[k].name)) {
                continue;
            }
            entry_write(w, v, &entries[k], with_synonyms);
            count++;
        }
        kw_patch_i32(w, mark, count);
    }
    free(res);
    return 0;
}

/* ---- AlterConfigs v0-v1 and IncrementalAlterConfigs v0 ---- */

/* One resource of an alter request: checks, then (unless validate_only) applies and persists
 * the changes. cfgs is the request's config array, read again here. Writes the response entry. */
static void alter_resource(struct broker *b, struct reply *r, int is_incremental, int8_t type,
                           struct kstr rname, struct kr *cfgs, int32_t nc, int validate_only)
{
    char name[STORE_MAX_NAME + 1] = "";
    char msg[256] = "";
    int err = 0;
    int has_name = kstr_copy(rname, name, sizeof name) == 0;
    struct topic *t = NULL;
    if (type == RES_TOPIC) {
        if (!has_name || (!reply_may(b, r, ACL_TOPIC, name, ACL_ALTER_CONFIGS) &&
                          !reply_allowed(b, r, ACL_TOPIC, name, ACL_ALTER))) {
            err = KERR_TOPIC_AUTHORIZATION_FAILED;
            snprintf(msg, sizeof msg, "not authorized to alter this topic's configs");
        } else if (!(t = store_topic_find(&b->store, name))) {
            err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            snprintf(msg, sizeof msg, "unknown topic");
        }
    } else if (type == RES_BROKER) {
        if (!reply_allowed(b, r, ACL_CLUSTER, NULL, ACL_ALTER_CONFIGS)) {
            err = KERR_CLUSTER_AUTHORIZATION_FAILED;
            snprintf(msg, sizeof msg, "not authorized");
        } else {
            err = KERR_INVALID_REQUEST;
            snprintf(msg, sizeof msg,
                     "bus-broker's own settings come from its configuration file: change them "
                     "there and restart");
        }
    } else {
        err = KERR_INVALID_REQUEST;
        snprintf(msg, sizeof msg, "unsupported resource type (topics only)");
    }
    struct topic_conf c = t ? t->conf : b->store.defaults;
    if (t && !is_incremental) {
        /* AlterConfigs replaces the whole set: what is not named returns to the default. */
        c = b->store.defaults;
        c.set_mask = 0;
    }
    for (int32_t k = 0; k < nc && !cfgs->err; k++) {
        struct kstr ks = kr_str(cfgs);
        int8_t op = is_incremental ? kr_i8(cfgs) : OP_SET;
        struct kstr vs = kr_str(cfgs);
        if (err) {
            continue;
        }
        char key[128], value[128];
        int has_value = kstr_copy(vs, value, sizeof value) == 0;
        if (kstr_copy(ks, key, sizeof key) != 0) {
            err = KERR_INVALID_CONFIG;
            snprintf(msg, sizeof msg, "bad config name");
            continue;
        }
        if (vs.ptr && !has_value) {
            err = KERR_INVALID_CONFIG;
            snprintf(msg, sizeof msg, "%s: value too long", key);
            continue;
        }
        if (op == OP_SET) {
            err = topic_conf_set(&c, key, has_value ? value : NULL, msg, sizeof msg);
            err = err < 0 ? KERR_INVALID_CONFIG : err;
        } else if (op == OP_DELETE) {
            const struct topic_key *tk = topic_key_find(key);
            if (!tk) {
                err = KERR_INVALID_CONFIG;
                snprintf(msg, sizeof msg, "unsupported topic config %s", key);
            } else {
                topic_conf_reset(&c, &b->store.defaults, tk->bit);
            }
        } else {
            /* APPEND/SUBTRACT are for list settings; cleanup.policy's only value is "delete". */
            err = KERR_INVALID_CONFIG;
            snprintf(msg, sizeof msg, "%s: operation %d is not supported (SET and DELETE only)",
                     key, (int)op);
        }
    }
    if (!err && t && !validate_only) {
        if (store_topic_set_conf(&b->store, t, &c) != 0) {
            err = KERR_KAFKA_STORAGE_ERROR;
            snprintf(msg, sizeof msg, "cannot persist the topic's settings");
        } else {
            log_info("topic %s: settings changed (retention.ms %lld, retention.bytes %lld, "
                     "segment.bytes %lld, min.insync.replicas %d)",
                     t->name, (long long)c.retention_ms, (long long)c.retention_bytes,
                     (long long)c.segment_bytes, (int)c.min_insync_replicas);
            b->next_retention_ms = 0; /* a shorter retention takes effect on this loop pass */
        }
    }
    struct kw *w = &r->w;
    kw_i16(w, (int16_t)err);
    kw_str(w, err ? msg : NULL);
    kw_i8(w, type);
    kw_kstr(w, rname);
}

static int handle_alter(struct broker *b, struct reply *r, struct kr *q, int is_incremental)
{
    int32_t nr = kr_array(q, 7);
    /* validate_only comes after the resources: find it first, then decode again. */
    size_t start = q->pos;
    for (int32_t i = 0; i < nr && !q->err; i++) {
        (void)kr_i8(q);
        (void)kr_str(q);
        int32_t nc = kr_array(q, 4);
        for (int32_t k = 0; k < nc && !q->err; k++) {
            (void)kr_str(q);
            if (is_incremental) {
                (void)kr_i8(q);
            }
            (void)kr_str(q);
        }
    }
    int validate_only = kr_i8(q) != 0;
    if (q->err) {
        return -1;
    }
    size_t end = q->pos;
    q->pos = start;
    struct kw *w = &r->w;
    kw_i32(w, 0);
    kw_i32(w, nr < 0 ? 0 : nr);
    for (int32_t i = 0; i < nr && !q->err; i++) {
        int8_t type = kr_i8(q);
        struct kstr rname = kr_str(q);
        int32_t nc = kr_array(q, 4);
        alter_resource(b, r, is_incremental, type, rname, q, nc, validate_only);
    }
    q->pos = end;
    return q->err ? -1 : 0;
}

int handle_alter_configs(struct broker *b, struct reply *r, struct kr *q)
{
    return handle_alter(b, r, q, 0);
}

int handle_incremental_alter_configs(struct broker *b, struct reply *r, struct kr *q)
{
    return handle_alter(b, r, q, 1);
}

/* ---- DeleteGroups v0-v1 ---- */

int handle_delete_groups(struct broker *b, struct reply *r, struct kr *q)
{
    int32_t n = kr_array(q, 2);
    struct kw *w = &r->w;
    kw_i32(w, 0);
    kw_i32(w, n < 0 ? 0 : n);
    int deleted = 0;
    for (int32_t i = 0; i < n && !q->err; i++) {
        struct kstr s = kr_str(q);
        char gid[256];
        int err;
        if (kstr_copy(s, gid, sizeof gid) != 0 || !gid[0]) {
            err = KERR_INVALID_GROUP_ID;
        } else if (!reply_allowed(b, r, ACL_GROUP, gid, ACL_DELETE)) {
            err = KERR_GROUP_AUTHORIZATION_FAILED;
        } else {
            err = groups_delete(b, gid);
            deleted += err == 0;
        }
        kw_kstr(w, s);
        kw_i16(w, (int16_t)err);
    }
    if (deleted && b->opt.fsync != FSYNC_NEVER) {
        /* The deletions are in the offsets file: answer once the next fsync round has it. */
        b->store.write_seq++;
        r->wait_seq = b->store.write_seq;
    }
    return q->err ? -1 : 0;
}

/* ---- DeleteRecords v0-v1 ---- */

int handle_delete_records(struct broker *b, struct reply *r, struct kr *q)
{
    int32_t nt = kr_array(q, 6);
    struct kw *w = &r->w;
    kw_i32(w, 0);
    kw_i32(w, nt < 0 ? 0 : nt);
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr tname = kr_str(q);
        int32_t np = kr_array(q, 12);
        kw_kstr(w, tname);
        kw_i32(w, np < 0 ? 0 : np);
        char name[STORE_MAX_NAME + 1];
        int has_name = kstr_copy(tname, name, sizeof name) == 0;
        int may_delete = np <= 0 || (has_name && reply_allowed(b, r, ACL_TOPIC, name, ACL_DELETE));
        struct topic *t = has_name ? store_topic_find(&b->store, name) : NULL;
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t idx = kr_i32(q);
            int64_t off = kr_i64(q);
            if (q->err) {
                break;
            }
            struct partition *p = t && idx >= 0 && idx < t->n_parts ? t->parts[idx] : NULL;
            int err = !may_delete ? KERR_TOPIC_AUTHORIZATION_FAILED
                      : !p        ? KERR_UNKNOWN_TOPIC_OR_PARTITION
                                  : store_delete_records(&b->store, p, off);
            if (!err) {
                log_info("delete records: %s/%d now starts at %lld", name, (int)idx,
                         (long long)p->log_start);
            }
            kw_i32(w, idx);
            kw_i64(w, err ? -1 : p->log_start);
            kw_i16(w, (int16_t)err);
        }
    }
    (void)kr_i32(q); /* timeout_ms */
    return q->err ? -1 : 0;
}

/* ---- ConsumerGroupHeartbeat v0-v1 (KIP-848): refused ----
 *
 * bus-broker runs the classic group protocol only. Like a Kafka broker whose new group
 * coordinator is disabled, it lists the API and answers every heartbeat UNSUPPORTED_VERSION
 * with a sentence: librdkafka then fails the consumer with a fatal error naming the cause,
 * where an API left out of ApiVersions makes it retry the coordinator lookup silently. */
int handle_consumer_group_heartbeat(struct broker *b, struct reply *r, struct kr *q)
{
    (void)b;
    q->pos = q->len; /* the request does not matter: every one gets the same answer */
    struct kw *w = &r->w;
    kw_uvarint(w, 0); /* response header v1: tagged fields */
    kw_i32(w, 0);     /* throttle_time_ms */
    kw_i16(w, KERR_UNSUPPORTED_VERSION);
    kw_compact_str(w, "bus-broker implements the classic consumer group protocol only "
                      "(KIP-848 is not supported): set group.protocol=classic");
    kw_compact_str(w, NULL); /* member_id */
    kw_i32(w, 0);            /* member_epoch */
    kw_i32(w, 0);            /* heartbeat_interval_ms */
    kw_i8(w, -1);            /* assignment: null */
    kw_uvarint(w, 0);        /* tagged fields */
    log_warn("ConsumerGroupHeartbeat from %s refused: KIP-848 groups are not supported (client "
             "set group.protocol=consumer)",
             reply_peer(r));
    return 0;
}
