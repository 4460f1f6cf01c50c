/* kafka_admin.c - topic administration over librdkafka's Admin API (see kafka_admin.h).
 *
 * Topic settings are changed with IncrementalAlterConfigs (KIP-339) when librdkafka has it
 * (2.2.0 and later). Older libraries (Debian's 2.0.2) only have AlterConfigs, which replaces
 * every setting of the topic: the topic's own settings (source DYNAMIC_TOPIC_CONFIG) are read
 * first and sent back with the change, so nothing set elsewhere is reset. */
#include "kafka/kafka_admin.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

struct kafka_admin {
    rd_kafka_t *rk;
};

struct kafka_admin *kafka_admin_new(const char *bootstrap, json_t *props, char *err, size_t err_len)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr)) {
        snprintf(err, err_len, "kafka: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    const char *key;
    json_t *val;
    json_object_foreach(props, key, val)
    {
        if (!json_is_string(val)) {
            continue;
        }
        if (rd_kafka_conf_set(conf, key, json_string_value(val), errstr, sizeof errstr)) {
            snprintf(err, err_len, "kafka.%s: %s", key, errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        snprintf(err, err_len, "kafka: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    struct kafka_admin *a = xcalloc(1, sizeof *a);
    a->rk = rk;
    return a;
}

void kafka_admin_free(struct kafka_admin *a)
{
    if (a == NULL) {
        return;
    }
    rd_kafka_destroy(a->rk);
    free(a);
}

json_t *kafka_admin_topics(struct kafka_admin *a, int timeout_ms, char *err, size_t err_len)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(a->rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, err_len, "metadata: %s", rd_kafka_err2str(e));
        return NULL;
    }
    json_t *out = json_object();
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *t = &md->topics[i];
        if (strncmp(t->topic, "__", 2) == 0 || t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            continue;
        }
        json_object_set_new(out, t->topic, json_integer(t->partition_cnt));
    }
    rd_kafka_metadata_destroy(md);
    return out;
}

int kafka_admin_cluster_id(struct kafka_admin *a, char *out, size_t out_len)
{
    char *id = rd_kafka_clusterid(a->rk, 5000);
    if (id == NULL) {
        return -1;
    }
    snprintf(out, out_len, "%s", id);
    rd_kafka_mem_free(a->rk, id);
    return 0;
}

/* Runs one admin request on a temporary queue and checks the single topic result. */
static int wait_result(struct kafka_admin *a, rd_kafka_queue_t *q, rd_kafka_event_type_t type,
                       int timeout_ms, char *err, size_t err_len)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    (void)a;
    if (ev == NULL) {
        snprintf(err, err_len, "no answer from the broker within %d ms", timeout_ms);
        return -1;
    }
    int rc = 0;
    if (rd_kafka_event_error(ev)) {
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        snprintf(err, err_len, "%s%s",
                 e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
                         e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION
                     ? "unsupported: "
                     : "",
                 rd_kafka_event_error_string(ev));
        rc = -1;
        goto out;
    }
    const rd_kafka_topic_result_t **res = NULL;
    size_t n = 0;
    if (type == RD_KAFKA_EVENT_CREATETOPICS_RESULT) {
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    } else {
        res =
            rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
    }
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *msg = rd_kafka_topic_result_error_string(res[i]);
            snprintf(err, err_len, "%s%s",
                     e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION ||
                             e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE
                         ? "unsupported: "
                         : "",
                     msg ? msg : rd_kafka_err2str(e));
            rc = -1;
        }
    }
out:
    rd_kafka_event_destroy(ev);
    return rc;
}

int kafka_admin_create_topic(struct kafka_admin *a, const char *topic, int partitions,
                             int replication_factor, json_t *configs, int timeout_ms, char *err,
                             size_t err_len)
{
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
        topic, partitions, replication_factor > 0 ? replication_factor : -1, errstr, sizeof errstr);
    if (nt == NULL) {
        snprintf(err, err_len, "%s", errstr);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(configs, key, val)
    {
        if (json_is_string(val)) {
            rd_kafka_NewTopic_set_config(nt, key, json_string_value(val));
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr, sizeof errstr);
    rd_kafka_CreateTopics(a->rk, &nt, 1, o, q);
    int rc = wait_result(a, q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, timeout_ms, err, err_len);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int kafka_admin_create_partitions(struct kafka_admin *a, const char *topic, int total,
                                  int timeout_ms, char *err, size_t err_len)
{
    char errstr[512];
    rd_kafka_NewPartitions_t *np =
        rd_kafka_NewPartitions_new(topic, (size_t)total, errstr, sizeof errstr);
    if (np == NULL) {
        snprintf(err, err_len, "%s", errstr);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr, sizeof errstr);
    rd_kafka_CreatePartitions(a->rk, &np, 1, o, q);
    int rc = wait_result(a, q, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT, timeout_ms, err, err_len);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewPartitions_destroy(np);
    return rc;
}

int kafka_admin_replication_factor(struct kafka_admin *a, const char *topic, int timeout_ms)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(a->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int rf = -1;
    if (t != NULL &&
        rd_kafka_metadata(a->rk, 0, t, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topics[0].partition_cnt > 0) {
            rf = md->topics[0].partitions[0].replica_cnt;
        }
        rd_kafka_metadata_destroy(md);
    }
    if (t != NULL) {
        rd_kafka_topic_destroy(t);
    }
    return rf;
}

/* Waits for a config request's result: its single resource, or NULL with err filled (and the
 * event in *evp to destroy either way). */
static const rd_kafka_ConfigResource_t *config_result(rd_kafka_queue_t *q, rd_kafka_event_t **evp,
                                                      int timeout_ms, char *err, size_t err_len)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    *evp = ev;
    if (ev == NULL) {
        snprintf(err, err_len, "no answer from the broker within %d ms", timeout_ms);
        return NULL;
    }
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    if (e) {
        snprintf(err, err_len, "%s%s",
                 e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
                         e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION
                     ? "unsupported: "
                     : "",
                 rd_kafka_event_error_string(ev));
        return NULL;
    }
    const rd_kafka_ConfigResource_t **res = NULL;
    size_t n = 0;
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT:
        res = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev),
                                                        &n);
        break;
    case RD_KAFKA_EVENT_ALTERCONFIGS_RESULT:
        res = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
        break;
#if RD_KAFKA_VERSION >= 0x020200ff
    case RD_KAFKA_EVENT_INCREMENTALALTERCONFIGS_RESULT:
        res = rd_kafka_IncrementalAlterConfigs_result_resources(
            rd_kafka_event_IncrementalAlterConfigs_result(ev), &n);
        break;
#endif
    default:
        break;
    }
    if (n != 1) {
        snprintf(err, err_len, "unexpected answer (%zu resources)", n);
        return NULL;
    }
    e = rd_kafka_ConfigResource_error(res[0]);
    if (e) {
        const char *msg = rd_kafka_ConfigResource_error_string(res[0]);
        snprintf(err, err_len, "%s", msg && *msg ? msg : rd_kafka_err2str(e));
        return NULL;
    }
    return res[0];
}

json_t *kafka_admin_topic_configs(struct kafka_admin *a, const char *topic, int timeout_ms,
                                  char *err, size_t err_len)
{
    char errstr[512];
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr, sizeof errstr);
    rd_kafka_DescribeConfigs(a->rk, &cr, 1, o, q);
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_ConfigResource_t *res = config_result(q, &ev, timeout_ms, err, err_len);
    json_t *out = NULL;
    if (res != NULL) {
        out = json_object();
        size_t n = 0;
        const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res, &n);
        for (size_t i = 0; i < n; i++) {
            const char *value = rd_kafka_ConfigEntry_value(entries[i]);
            json_object_set_new(out, rd_kafka_ConfigEntry_name(entries[i]),
                                json_pack("{s:o, s:b}", "value",
                                          value ? json_string(value) : json_null(), "is_topic",
                                          rd_kafka_ConfigEntry_source(entries[i]) ==
                                              RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG));
        }
    }
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(cr);
    return out;
}

int kafka_admin_alter_topic_configs(struct kafka_admin *a, const char *topic, json_t *set,
                                    int timeout_ms, char *err, size_t err_len)
{
    char errstr[512];
    const char *key;
    json_t *val;
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
#if RD_KAFKA_VERSION >= 0x020200ff
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS);
    json_object_foreach(set, key, val)
    {
        rd_kafka_error_t *e = rd_kafka_ConfigResource_add_incremental_config(
            cr, key, RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, json_string_value(val));
        if (e != NULL) {
            snprintf(err, err_len, "%s: %s", key, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            rd_kafka_AdminOptions_destroy(o);
            rd_kafka_ConfigResource_destroy(cr);
            return -1;
        }
    }
#else
    /* AlterConfigs replaces the whole set: keep the topic's own settings not being changed. */
    json_t *have = kafka_admin_topic_configs(a, topic, timeout_ms, err, err_len);
    if (have == NULL) {
        rd_kafka_ConfigResource_destroy(cr);
        return -1;
    }
    json_object_foreach(have, key, val)
    {
        const char *v = json_string_value(json_object_get(val, "value"));
        if (json_is_true(json_object_get(val, "is_topic")) && v != NULL &&
            json_object_get(set, key) == NULL) {
            rd_kafka_ConfigResource_set_config(cr, key, v);
        }
    }
    json_decref(have);
    json_object_foreach(set, key, val)
    {
        rd_kafka_ConfigResource_set_config(cr, key, json_string_value(val));
    }
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
#endif
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr, sizeof errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
#if RD_KAFKA_VERSION >= 0x020200ff
    rd_kafka_IncrementalAlterConfigs(a->rk, &cr, 1, o, q);
#else
    rd_kafka_AlterConfigs(a->rk, &cr, 1, o, q);
#endif
    rd_kafka_event_t *ev = NULL;
    int rc = config_result(q, &ev, timeout_ms, err, err_len) != NULL ? 0 : -1;
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(cr);
    return rc;
}
