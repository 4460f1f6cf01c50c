/* bus-kclient - a small librdkafka client for the broker's tests and benchmark.
 *
 *   bus-kclient produce BOOTSTRAP TOPIC COUNT [SIZE] [PREFIX] [RATE]
 *       idempotent producer, acks=all; prints "ACK <partition> <offset> <value>" for every
 *       acknowledged message (flushed at once, so a test that kills the broker knows exactly
 *       which messages were acknowledged); keys are "k<i % 16>"; RATE caps messages/s.
 *   bus-kclient consume BOOTSTRAP GROUP TOPIC SECONDS
 *       group member (auto commit); prints "ASSIGNED <n>" after each rebalance and
 *       "MSG <partition> <offset> <value>"; exits after SECONDS or on stdin EOF when SECONDS=0.
 *   bus-kclient create BOOTSTRAP TOPIC PARTITIONS [name=value...]
 *   bus-kclient delete BOOTSTRAP TOPIC
 *   bus-kclient partitions BOOTSTRAP TOPIC TOTAL
 *   bus-kclient describe BOOTSTRAP TOPIC      prints "name=value" lines
 *   bus-kclient delete-records BOOTSTRAP TOPIC PARTITION OFFSET   prints "LOW <low watermark>"
 *   bus-kclient delete-group BOOTSTRAP GROUP  (librdkafka's DeleteRecords and DeleteGroups)
 *   bus-kclient groups BOOTSTRAP              prints "GROUP <id> <state> <members> <protocol>"
 *   bus-kclient bench-produce BOOTSTRAP TOPIC COUNT SIZE   prints "msgs/s MB/s"
 *   bus-kclient bench-consume BOOTSTRAP TOPIC COUNT        prints "msgs/s MB/s first_s"
 *       (first_s: seconds from assign() to the first message)
 * Admin calls print "OK" or "ERR <code name> <message>" and exit 0 / 1.
 * KCLIENT_DEBUG=<contexts> sets librdkafka's "debug" (e.g. protocol,fetch) for diagnosis;
 * KCLIENT_LINGER_MS the producers' linger.ms (default 5); KCLIENT_IDEMPOTENT=0 makes the
 * producers plain (still acks=all) with up to 5 requests in flight per connection: librdkafka
 * 2.0.2's idempotent producer sends a partition's next request only after the previous one is
 * acknowledged (it counts messages, not requests, against its window of 5). */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static long delivered, failed;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bus-kclient: %s: %s\n", what, detail);
    exit(2);
}

static rd_kafka_conf_t *base_conf(const char *bootstrap)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
        die("conf", err);
    }
    /* KCLIENT_CONF="k=v;k=v": more librdkafka settings (e.g. sasl.* for the broker's security
     * tests). */
    const char *extra = getenv("KCLIENT_CONF");
    if (extra && *extra) {
        char *copy = strdup(extra), *save = NULL;
        for (char *kv = strtok_r(copy, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) {
                die("KCLIENT_CONF", kv);
            }
            *eq = 0;
            if (rd_kafka_conf_set(conf, kv, eq + 1, err, sizeof err) != RD_KAFKA_CONF_OK) {
                die(kv, err);
            }
        }
        free(copy);
    }
    const char *dbg = getenv("KCLIENT_DEBUG"); /* librdkafka debug contexts, for diagnosis */
    if (dbg && *dbg && rd_kafka_conf_set(conf, "debug", dbg, err, sizeof err) != RD_KAFKA_CONF_OK) {
        die("debug", err);
    }
    return conf;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        die(k, err);
    }
}

static int print_acks;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        failed++;
        if (print_acks) {
            printf("NACK %s %.*s\n", rd_kafka_err2name(m->err), (int)m->len,
                   (const char *)m->payload);
        }
    } else {
        delivered++;
        if (print_acks) {
            printf("ACK %d %lld %.*s\n", (int)m->partition, (long long)m->offset, (int)m->len,
                   (const char *)m->payload);
        }
    }
    if (print_acks) {
        fflush(stdout);
    }
}

static rd_kafka_t *new_producer(const char *bootstrap)
{
    char err[512];
    rd_kafka_conf_t *conf = base_conf(bootstrap);
    const char *idem = getenv("KCLIENT_IDEMPOTENT");
    if (idem && !strcmp(idem, "0")) {
        set(conf, "enable.idempotence", "false");
        set(conf, "max.in.flight.requests.per.connection", "5");
    } else {
        set(conf, "enable.idempotence", "true");
    }
    set(conf, "acks", "all");
    set(conf, "message.timeout.ms", "120000");
    const char *linger = getenv("KCLIENT_LINGER_MS"); /* experiments: the batching wait */
    set(conf, "linger.ms", linger && *linger ? linger : "5");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        die("producer", err);
    }
    return rk;
}

static void produce_all(rd_kafka_t *rk, const char *topic, long count, int size, const char *prefix,
                        double rate)
{
    char *buf = malloc((size_t)size + 64);
    double t0 = now_s();
    for (long i = 0; i < count && !stop; i++) {
        while (rate > 0 && (double)i / rate > now_s() - t0) {
            rd_kafka_poll(rk, 1);
        }
        int n = snprintf(buf, (size_t)size + 64, "%s%ld", prefix, i);
        while (n < size) {
            buf[n++] = 'x';
        }
        char key[16];
        int kl = snprintf(key, sizeof key, "k%ld", i % 16);
        for (;;) {
            rd_kafka_resp_err_t e =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(buf, (size_t)n),
                                  RD_KAFKA_V_KEY(key, (size_t)kl),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 10);
                continue;
            }
            if (e) {
                die("produce", rd_kafka_err2str(e));
            }
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    while (!stop && rd_kafka_outq_len(rk) > 0) {
        rd_kafka_poll(rk, 50);
    }
    free(buf);
}

static int cmd_produce(int argc, char **argv)
{
    if (argc < 5) {
        die("usage", "produce BOOTSTRAP TOPIC COUNT [SIZE] [PREFIX]");
    }
    print_acks = 1;
    rd_kafka_t *rk = new_producer(argv[2]);
    produce_all(rk, argv[3], atol(argv[4]), argc > 5 ? atoi(argv[5]) : 0, argc > 6 ? argv[6] : "m",
                argc > 7 ? atof(argv[7]) : 0);
    rd_kafka_destroy(rk);
    fprintf(stderr, "delivered %ld failed %ld\n", delivered, failed);
    return failed ? 1 : 0;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        printf("ASSIGNED %d\n", parts->cnt);
    } else {
        rd_kafka_assign(rk, NULL);
        printf("REVOKED %d\n", parts->cnt);
    }
    fflush(stdout);
}

static int cmd_consume(int argc, char **argv)
{
    if (argc < 6) {
        die("usage", "consume BOOTSTRAP GROUP TOPIC SECONDS");
    }
    char err[512];
    rd_kafka_conf_t *conf = base_conf(argv[2]);
    set(conf, "group.id", argv[3]);
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "session.timeout.ms", "6000");
    set(conf, "heartbeat.interval.ms", "500");
    set(conf, "auto.commit.interval.ms", "200");
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        die("consumer", err);
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, argv[4], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    double end = now_s() + atof(argv[5]);
    while (!stop && now_s() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            continue;
        }
        if (!m->err) {
            printf("MSG %d %lld %.*s\n", (int)m->partition, (long long)m->offset, (int)m->len,
                   (const char *)m->payload);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            printf("ERR %s\n", rd_kafka_err2name(m->err));
        }
        fflush(stdout);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    printf("CLOSED\n");
    return 0;
}

static int admin_result(rd_kafka_event_t *ev)
{
    const rd_kafka_topic_result_t **res = NULL;
    size_t n = 0;
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_CREATETOPICS_RESULT:
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        break;
    case RD_KAFKA_EVENT_DELETETOPICS_RESULT:
        res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
        break;
    case RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT:
        res =
            rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
        break;
    default:
        break;
    }
    if (rd_kafka_event_error(ev)) {
        printf("ERR %s %s\n", rd_kafka_err2name(rd_kafka_event_error(ev)),
               rd_kafka_event_error_string(ev));
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_topic_result_error(res[i])) {
            printf("ERR %s %s\n", rd_kafka_err2name(rd_kafka_topic_result_error(res[i])),
                   rd_kafka_topic_result_error_string(res[i])
                       ? rd_kafka_topic_result_error_string(res[i])
                       : "");
            return 1;
        }
    }
    printf("OK\n");
    return 0;
}

static int cmd_admin(int argc, char **argv)
{
    char err[512];
    const char *cmd = argv[1];
    if (argc < 4) {
        die("usage", "create|delete|partitions|describe BOOTSTRAP TOPIC ...");
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(argv[2]), err, sizeof err);
    if (!rk) {
        die("admin", err);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(opts, 10000, err, sizeof err);
    int rc = 1;
    if (!strcmp(cmd, "create") && argc >= 5) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(argv[3], atoi(argv[4]), 1, err, sizeof err);
        if (!nt) {
            die("NewTopic", err);
        }
        for (int i = 5; i < argc; i++) {
            char *eq = strchr(argv[i], '=');
            if (!eq) {
                die("config", argv[i]);
            }
            *eq = 0;
            rd_kafka_NewTopic_set_config(nt, argv[i], eq + 1);
        }
        rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
        rd_kafka_NewTopic_destroy(nt);
    } else if (!strcmp(cmd, "delete")) {
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(argv[3]);
        rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
        rd_kafka_DeleteTopic_destroy(dt);
    } else if (!strcmp(cmd, "partitions") && argc >= 5) {
        rd_kafka_NewPartitions_t *np =
            rd_kafka_NewPartitions_new(argv[3], (size_t)atoi(argv[4]), err, sizeof err);
        rd_kafka_CreatePartitions(rk, &np, 1, opts, q);
        rd_kafka_NewPartitions_destroy(np);
    } else if (!strcmp(cmd, "delete-records") && argc >= 6) {
        rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tl, argv[3], atoi(argv[4]))->offset = atoll(argv[5]);
        rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(tl);
        rd_kafka_DeleteRecords(rk, &dr, 1, opts, q);
        rd_kafka_DeleteRecords_destroy(dr);
        rd_kafka_topic_partition_list_destroy(tl);
    } else if (!strcmp(cmd, "delete-group")) {
        rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(argv[3]);
        rd_kafka_DeleteGroups(rk, &dg, 1, opts, q);
        rd_kafka_DeleteGroup_destroy(dg);
    } else if (!strcmp(cmd, "describe")) {
        rd_kafka_ConfigResource_t *cr =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, argv[3]);
        rd_kafka_DescribeConfigs(rk, &cr, 1, opts, q);
        rd_kafka_ConfigResource_destroy(cr);
    } else {
        die("usage", "unknown admin command");
    }
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    if (!ev) {
        printf("ERR _TIMED_OUT no answer\n");
    } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT) {
        size_t n = 0;
        const rd_kafka_ConfigResource_t **rs = rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &n);
        if (rd_kafka_event_error(ev) || n != 1 || rd_kafka_ConfigResource_error(rs[0])) {
            printf("ERR %s\n", rd_kafka_err2name(n == 1 ? rd_kafka_ConfigResource_error(rs[0])
                                                        : rd_kafka_event_error(ev)));
        } else {
            size_t nc = 0;
            const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(rs[0], &nc);
            for (size_t i = 0; i < nc; i++) {
                printf("%s=%s\n", rd_kafka_ConfigEntry_name(ce[i]),
                       rd_kafka_ConfigEntry_value(ce[i]) ? rd_kafka_ConfigEntry_value(ce[i]) : "");
            }
            rc = 0;
        }
    } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DELETERECORDS_RESULT) {
        const rd_kafka_topic_partition_list_t *tl =
            rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
        if (rd_kafka_event_error(ev) || !tl || tl->cnt != 1 || tl->elems[0].err) {
            printf("ERR %s\n", rd_kafka_err2name(rd_kafka_event_error(ev) ? rd_kafka_event_error(ev)
                                                 : tl && tl->cnt == 1     ? tl->elems[0].err
                                                                      : RD_KAFKA_RESP_ERR__FAIL));
        } else {
            printf("LOW %lld\n", (long long)tl->elems[0].offset);
            rc = 0;
        }
    } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DELETEGROUPS_RESULT) {
        size_t n = 0;
        const rd_kafka_group_result_t **gs =
            rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &n);
        const rd_kafka_error_t *ge = n == 1 ? rd_kafka_group_result_error(gs[0]) : NULL;
        if (rd_kafka_event_error(ev) || n != 1 || ge) {
            printf("ERR %s\n",
                   ge ? rd_kafka_error_name(ge) : rd_kafka_err2name(rd_kafka_event_error(ev)));
        } else {
            printf("OK\n");
            rc = 0;
        }
    } else {
        rc = admin_result(ev);
    }
    if (ev) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* bench_produce_all: the bench's producing loop. rd_kafka_produce_batch hands librdkafka
 * BENCH_CHUNK messages under one lock (the key still picks each one's partition), where a
 * producev call per message spent most of this thread's time on locks and the clock; the
 * values differ only in their decimal sequence number, written by hand. */
enum { BENCH_CHUNK = 1024 };

static void bench_produce_all(rd_kafka_t *rk, const char *topic, long count, int size)
{
    static char keys[16][16];
    rd_kafka_message_t *msgs = calloc(BENCH_CHUNK, sizeof *msgs);
    char *vals = malloc((size_t)BENCH_CHUNK * (size_t)size);
    if (!msgs || !vals || size < 24) {
        die("bench-produce", "out of memory or SIZE < 24");
    }
    memset(vals, 'x', (size_t)BENCH_CHUNK * (size_t)size);
    for (int k = 0; k < 16; k++) {
        snprintf(keys[k], sizeof keys[k], "k%d", k);
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    for (long i = 0; i < count && !stop;) {
        int n = count - i < BENCH_CHUNK ? (int)(count - i) : BENCH_CHUNK;
        for (int j = 0; j < n; j++) {
            char *v = vals + (size_t)j * (size_t)size;
            v[0] = 'b'; /* "b<i>" then 'x's, as produce_all writes them */
            long x = i + j;
            int d = 1;
            for (long t = x; t >= 10; t /= 10) {
                d++;
            }
            for (int q = d; q > 0; q--, x /= 10) {
                v[q] = (char)('0' + x % 10);
            }
            memset(v + d + 1, 'x', (size_t)size - (size_t)d - 1);
            msgs[j] = (rd_kafka_message_t){.payload = v,
                                           .len = (size_t)size,
                                           .key = keys[(i + j) % 16],
                                           .key_len = strlen(keys[(i + j) % 16])};
        }
        /* A full queue refuses some messages (not necessarily the last ones): offer those
         * again once deliveries have made room. */
        for (int left = n; left > 0 && !stop;) {
            rd_kafka_produce_batch(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, msgs, left);
            int k = 0;
            for (int j = 0; j < left; j++) {
                if (msgs[j].err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                    msgs[j].err = RD_KAFKA_RESP_ERR_NO_ERROR;
                    msgs[k++] = msgs[j];
                } else if (msgs[j].err) {
                    die("produce", rd_kafka_err2str(msgs[j].err));
                }
            }
            left = k;
            rd_kafka_poll(rk, left ? 10 : 0);
        }
        i += n;
    }
    while (!stop && rd_kafka_outq_len(rk) > 0) {
        rd_kafka_poll(rk, 50);
    }
    rd_kafka_topic_destroy(rkt);
    free(vals);
    free(msgs);
}

static int cmd_bench_produce(int argc, char **argv)
{
    if (argc < 6) {
        die("usage", "bench-produce BOOTSTRAP TOPIC COUNT SIZE");
    }
    rd_kafka_t *rk = new_producer(argv[2]);
    long count = atol(argv[4]);
    int size = atoi(argv[5]);
    double t0 = now_s();
    bench_produce_all(rk, argv[3], count, size);
    rd_kafka_flush(rk, 60000);
    double dt = now_s() - t0;
    rd_kafka_destroy(rk);
    printf("%.0f %.2f\n", (double)delivered / dt, (double)delivered * size / dt / 1e6);
    return failed ? 1 : 0;
}

static int cmd_bench_consume(int argc, char **argv)
{
    if (argc < 5) {
        die("usage", "bench-consume BOOTSTRAP TOPIC COUNT");
    }
    char err[512];
    rd_kafka_conf_t *conf = base_conf(argv[2]);
    set(conf, "group.id", "bench-consume");
    set(conf, "enable.auto.commit", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        die("consumer", err);
    }
    rd_kafka_poll_set_consumer(rk);
    const rd_kafka_metadata_t *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[3], NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1) {
        die("metadata", argv[3]);
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        rd_kafka_topic_partition_list_add(parts, argv[3], i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    long count = atol(argv[4]), got = 0;
    double bytes = 0, t0 = now_s(), t_first = 0;
    /* Up to BENCH_CHUNK messages per call, as bench-produce hands them over. */
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t **ms = calloc(BENCH_CHUNK, sizeof *ms);
    if (!q || !ms) {
        die("bench-consume", "no consumer queue or out of memory");
    }
    while (got < count && !stop && now_s() - t0 < 120) {
        /* It waits until it has them all or the time-out passed: ask for no more than what
         * is left. */
        size_t want = count - got < BENCH_CHUNK ? (size_t)(count - got) : BENCH_CHUNK;
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, ms, want);
        for (ssize_t j = 0; j < n; j++) {
            if (!ms[j]->err) {
                if (got++ == 0) {
                    t_first = now_s() - t0;
                }
                bytes += (double)ms[j]->len;
            }
            rd_kafka_message_destroy(ms[j]);
        }
    }
    double dt = now_s() - t0;
    free(ms);
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    printf("%.0f %.2f %.3f\n", (double)got / dt, bytes / dt / 1e6, t_first);
    return got == count ? 0 : 1;
}

static int cmd_groups(int argc, char **argv)
{
    if (argc < 3) {
        die("usage", "groups BOOTSTRAP");
    }
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(argv[2]), err, sizeof err);
    if (!rk) {
        die("groups", err);
    }
    const struct rd_kafka_group_list *gl = NULL;
    rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, NULL, &gl, 10000);
    int rc = 1;
    if (e) {
        printf("ERR %s\n", rd_kafka_err2name(e));
    } else {
        for (int i = 0; i < gl->group_cnt; i++) {
            const struct rd_kafka_group_info *g = &gl->groups[i];
            printf("GROUP %s %s %d %s\n", g->group, g->state, g->member_cnt,
                   g->protocol && g->protocol[0] ? g->protocol : "-");
        }
        rd_kafka_group_list_destroy(gl);
        rc = 0;
    }
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (argc < 2) {
        die("usage",
            "produce|consume|create|delete|partitions|describe|bench-produce|bench-consume");
    }
    const char *c = argv[1];
    if (!strcmp(c, "produce")) {
        return cmd_produce(argc, argv);
    }
    if (!strcmp(c, "consume")) {
        return cmd_consume(argc, argv);
    }
    if (!strcmp(c, "bench-produce")) {
        return cmd_bench_produce(argc, argv);
    }
    if (!strcmp(c, "bench-consume")) {
        return cmd_bench_consume(argc, argv);
    }
    if (!strcmp(c, "groups")) {
        return cmd_groups(argc, argv);
    }
    return cmd_admin(argc, argv);
}
