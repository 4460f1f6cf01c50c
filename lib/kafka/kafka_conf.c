/* kafka_conf.c - the configuration shared by our producer and consumer (see kafka_conf.h). */
#include "kafka/kafka_conf.h"
#include "kafka/kafka.h"

#include <stdio.h>

#include "log.h"

const char *kafka_lib_version(void)
{
    return rd_kafka_version_str();
}

/* librdkafka logs with syslog levels (0 emergency .. 7 debug). */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    enum log_level l = level <= 3   ? LOG_LEVEL_ERROR
                       : level == 4 ? LOG_LEVEL_WARN
                       : level <= 6 ? LOG_LEVEL_INFO
                                    : LOG_LEVEL_DEBUG;
    if (l < log_min_level) {
        return;
    }
    json_t *extra = json_pack("{s:s, s:s}", "component", "librdkafka", "facility", fac);
    log_write(l, NULL, NULL, extra, "%s", buf);
    json_decref(extra);
}

/* Sets the "kafka.*" props; numbers and booleans as their text. */
static int set_props(rd_kafka_conf_t *conf, json_t *props, char *err, size_t err_len)
{
    char errstr[512];
    const char *key;
    json_t *val;
    json_object_foreach(props, key, val)
    {
        char text[64];
        const char *v = text;
        if (json_is_string(val)) {
            v = json_string_value(val);
        } else if (json_is_integer(val)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(val));
        } else if (json_is_boolean(val)) {
            v = json_is_true(val) ? "true" : "false";
        } else if (json_is_real(val)) {
            snprintf(text, sizeof text, "%g", json_real_value(val));
        } else {
            snprintf(err, err_len, "kafka.%s: not a string, number or boolean", key);
            return -1;
        }
        if (rd_kafka_conf_set(conf, key, v, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            snprintf(err, err_len, "kafka.%s: %s", key, errstr);
            return -1;
        }
    }
    return 0;
}

int kafka_conf_validate(json_t *props, char *err, size_t err_len)
{
    if (props == NULL || json_object_size(props) == 0) {
        return 0;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = set_props(conf, props, err, err_len);
    rd_kafka_conf_destroy(conf);
    return rc;
}

rd_kafka_conf_t *kafka_conf_new(const char *what, const char *bootstrap,
                                const char *const defaults[][2], size_t n_defaults, json_t *props,
                                char *err, size_t err_len)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        goto fail_default;
    }
    for (size_t i = 0; i < n_defaults; i++) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            goto fail_default;
        }
    }
    if (props != NULL && set_props(conf, props, err, err_len) != 0) {
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
fail_default:
    snprintf(err, err_len, "%s configuration: %s", what, errstr);
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
