/* limits.c - topic and partition limits (see limits.h). */
#include "limits.h"

#include <stdio.h>
#include <sys/resource.h>

#include "broker.h"

void limits_usage(const struct broker *b, long *partitions, long *segments)
{
    long np = 0, ns = 0;
    for (size_t i = 0; i < b->store.n_topics; i++) {
        const struct topic *t = b->store.topics[i];
        np += t->n_parts;
        for (int32_t k = 0; k < t->n_parts; k++) {
            ns += (long)t->parts[k]->n_segs;
        }
    }
    *partitions = np;
    *segments = ns;
}

int limits_check_partitions(const struct broker *b, int is_new_topic, int32_t topic_total,
                            int32_t add, char *msg, size_t msg_len)
{
    const struct broker_options *o = &b->opt;
    if (topic_total < 1) {
        snprintf(msg, msg_len, "the partition count must be at least 1");
        return KERR_INVALID_PARTITIONS;
    }
    if (topic_total > o->max_partitions_per_topic) {
        snprintf(msg, msg_len, "at most %ld partitions per topic (max_partitions_per_topic)",
                 o->max_partitions_per_topic);
        return KERR_INVALID_PARTITIONS;
    }
    if (is_new_topic && (long)b->store.n_topics + 1 > o->max_topics) {
        snprintf(msg, msg_len, "the broker holds %zu topics, the most it takes (max_topics)",
                 b->store.n_topics);
        return KERR_POLICY_VIOLATION;
    }
    long parts, segs;
    limits_usage(b, &parts, &segs);
    if (parts + add > o->max_partitions) {
        snprintf(msg, msg_len,
                 "the broker holds %ld partitions; %d more would pass max_partitions (%ld)", parts,
                 (int)add, o->max_partitions);
        return KERR_POLICY_VIOLATION;
    }
    /* Two descriptors per segment (log and index), one segment per new partition. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long budget = (long)rl.rlim_cur - o->max_connections - LIMITS_FD_RESERVE;
        if (2 * (segs + add) > budget) {
            snprintf(msg, msg_len,
                     "not enough file descriptors: %ld segments held, the limit (%ld) leaves "
                     "room for %ld; raise RLIMIT_NOFILE",
                     segs, (long)rl.rlim_cur, budget > 0 ? budget / 2 : 0);
            return KERR_POLICY_VIOLATION;
        }
    }
    return 0;
}
