/* kafka_admin.c - topic administration over librdkafka's Admin API (see kafka_admin.h). */
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
                             int retention_hours, int timeout_ms, char *err, size_t err_len)
{
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, errstr, sizeof errstr);
    if (nt == NULL) {
        snprintf(err, err_len, "%s", errstr);
        return -1;
    }
    if (retention_hours > 0) {
        char ms[32];
        snprintf(ms, sizeof ms, "%lld", (long long)retention_hours * 3600000LL);
        rd_kafka_NewTopic_set_config(nt, "retention.ms", ms);
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
