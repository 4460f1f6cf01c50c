/* bus-mock - hosts librdkafka's mock Kafka cluster (rdkafka_mock.h) as a process, for tests
 * and for development until the project's own broker is in use.
 *
 *   bus-mock [--bootstrap-file FILE] [--bus-config DIR] [--topic NAME:PARTITIONS]...
 *            [--brokers N]
 *
 * Prints the bootstrap address ("127.0.0.1:PORT") on stdout and writes it (atomically, via a
 * rename) to FILE: librdkafka 2.0.2's mock API has no way to choose the listener port, so the
 * file is how other processes find it. Topics of the bus configuration and --topic flags are
 * created up front because the mock does not answer CreateTopics (it auto-creates unknown
 * topics on metadata requests, with 4 partitions).
 *
 * Signals: SIGTERM/SIGINT exit 0; SIGUSR1 takes broker 1 down (connections refused/closed),
 * SIGUSR2 brings it back: fault injection for tests. Limits of the mock: everything is in
 * memory, about 5 MB per partition (older segments are dropped), no CreateTopics, no
 * persistence across restarts. This is Kafka's behaviour as librdkafka models it, which makes it
 * a useful second implementation to test the embedded broker against. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buildinfo.h"
#include "log.h"

#define MOCK_MAX_TOPICS 256

struct topic_req {
    char name[250];
    int partitions;
};

static int add_topic(struct topic_req *t, int *n, const char *name, int partitions)
{
    if (*n >= MOCK_MAX_TOPICS || strlen(name) >= sizeof t[0].name || partitions < 1) {
        return -1;
    }
    for (int i = 0; i < *n; i++) {
        if (strcmp(t[i].name, name) == 0) {
            if (partitions > t[i].partitions) {
                t[i].partitions = partitions;
            }
            return 0;
        }
    }
    snprintf(t[*n].name, sizeof t[0].name, "%s", name);
    t[*n].partitions = partitions;
    (*n)++;
    return 0;
}

/* Reads the topics (name, partitions; default 3) of every *.json file in dir. Only the shape is
 * read here: validation is busctl's job. */
static int read_bus_config(const char *dir, struct topic_req *t, int *n)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        log_error("cannot open bus config dir %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json") != 0) {
            continue;
        }
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            continue;
        }
        json_error_t jerr;
        json_t *doc = json_load_file(path, 0, &jerr);
        if (doc == NULL) {
            log_error("%s: line %d: %s", path, jerr.line, jerr.text);
            rc = -1;
            continue;
        }
        json_t *topics = json_object_get(doc, "topics");
        for (size_t i = 0; i < json_array_size(topics); i++) {
            json_t *tp = json_array_get(topics, i);
            const char *name = json_string_value(json_object_get(tp, "name"));
            json_t *parts = json_object_get(tp, "partitions");
            int p = json_is_integer(parts) ? (int)json_integer_value(parts) : 3;
            if (name != NULL && add_topic(t, n, name, p) != 0) {
                rc = -1;
            }
        }
        json_decref(doc);
    }
    closedir(d);
    return rc;
}

static int write_bootstrap_file(const char *path, const char *bootstrap)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    int ok = fprintf(f, "%s\n", bootstrap) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The host client's own log lines (syslog levels) go to the product's logger. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level >= 5) {
        return; /* the host client has no brokers configured: its notices are noise */
    }
    log_write(level <= 3 ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, NULL, NULL, NULL, "%s: %s", fac, buf);
}

static void usage(void)
{
    fprintf(stderr, "usage: bus-mock [--bootstrap-file FILE] [--bus-config DIR] "
                    "[--topic NAME:PARTITIONS]... [--brokers N]\n");
}

int main(int argc, char **argv)
{
    const char *bootstrap_file = NULL;
    static struct topic_req topics[MOCK_MAX_TOPICS];
    int n_topics = 0;
    int n_brokers = 1;
    int rc = 1;

    log_init("bus-mock", LOG_LEVEL_INFO);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage();
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            buildinfo_print(stdout, "bus-mock");
            return 0;
        }
        if (v == NULL) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--bootstrap-file") == 0) {
            bootstrap_file = v;
        } else if (strcmp(a, "--bus-config") == 0) {
            if (read_bus_config(v, topics, &n_topics) != 0) {
                return 2;
            }
        } else if (strcmp(a, "--topic") == 0) {
            char name[250];
            const char *colon = strrchr(v, ':');
            int parts = colon ? atoi(colon + 1) : 3;
            size_t len = colon ? (size_t)(colon - v) : strlen(v);
            if (len == 0 || len >= sizeof name || parts < 1) {
                fprintf(stderr, "bus-mock: bad --topic %s (want NAME:PARTITIONS)\n", v);
                return 2;
            }
            memcpy(name, v, len);
            name[len] = '\0';
            if (add_topic(topics, &n_topics, name, parts) != 0) {
                return 2;
            }
        } else if (strcmp(a, "--brokers") == 0) {
            n_brokers = atoi(v);
            if (n_brokers < 1 || n_brokers > 9) {
                fprintf(stderr, "bus-mock: --brokers must be 1..9\n");
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }

    /* Block the signals before librdkafka starts its threads; only sigwait sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        log_error("cannot create the host client: %s", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, n_brokers);
    if (mc == NULL) {
        log_error("cannot create the mock cluster");
        goto out_rk;
    }
    for (int i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mc, topics[i].name, topics[i].partitions, 1);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_error("cannot create topic %s: %s", topics[i].name, rd_kafka_err2str(err));
            goto out_mc;
        }
        log_info("topic %s created with %d partitions", topics[i].name, topics[i].partitions);
    }
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstrap);
    fflush(stdout);
    if (bootstrap_file != NULL && write_bootstrap_file(bootstrap_file, bootstrap) != 0) {
        log_error("cannot write %s: %s", bootstrap_file, strerror(errno));
        goto out_mc;
    }
    log_info("mock Kafka cluster listening on %s", bootstrap);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGUSR1) {
            for (int b = 1; b <= n_brokers; b++) {
                rd_kafka_mock_broker_set_down(mc, b);
            }
            log_info("brokers set down");
        } else if (sig == SIGUSR2) {
            for (int b = 1; b <= n_brokers; b++) {
                rd_kafka_mock_broker_set_up(mc, b);
            }
            log_info("brokers set up");
        } else {
            log_info("signal %d: stopping", sig);
            break;
        }
    }
    rc = 0;
    if (bootstrap_file != NULL) {
        unlink(bootstrap_file);
    }
out_mc:
    rd_kafka_mock_cluster_destroy(mc);
out_rk:
    rd_kafka_destroy(rk);
    return rc;
}
