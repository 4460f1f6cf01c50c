/* group.c - the consumer-group coordinator and committed offsets.
 *
 * One coordinator (this node) for every group. Group states follow Kafka's
 * GroupCoordinator: EMPTY -> PREPARING (a join or leave started a rebalance; members rejoin,
 * bounded by the largest rebalance timeout) -> AWAITING_SYNC (generation bumped, the leader got
 * the member list and computes the assignment) -> STABLE (the leader's SyncGroup distributed
 * it). Members are dropped when their session times out; a heartbeat during PREPARING answers
 * REBALANCE_IN_PROGRESS so members rejoin.
 *
 * Committed offsets live in memory and in data_dir/consumer_offsets.log: CRC-framed records
 *   u32 payload length | u32 CRC-32C(payload) | i16 group len, group | i16 topic len, topic |
 *   i32 partition | i64 offset (-1 = deleted; other negative values are stored as committed,
 *   e.g. kafkajs's -2 for "earliest") | i16 metadata len (-1 = null), metadata
 * appended on commit, synced per the fsync policy before the commit is answered, compacted on
 * start (a torn tail is dropped).
 *
 * Group state (generation, protocol, leader, members with their protocols and assignments)
 * survives a restart too, as Kafka keeps it in __consumer_offsets: a member of a generation the
 * broker knew keeps heartbeating and committing across a restart instead of being told "unknown
 * member", losing its commits and rejoining (which made the dispatcher deliver again everything
 * since its last commit: 1,691 records in issue 21's run). data_dir/groups.state is rewritten
 * (write, rename) after each loop pass that changed a group, and at shutdown:
 *   u32 payload length | u32 CRC-32C(payload) | payload: i32 version (1) | i64 member_seq |
 *   i32 groups | per group: str id | i8 state | i32 generation | str protocol_type | str protocol
 *   | str leader | i32 members | per member: str id | str client_id | str client_host |
 *   str instance_id | i32 session_timeout_ms | i32 rebalance_timeout_ms | i32 protocols |
 *   (str name | bytes metadata)* | bytes assignment
 * It is not synced: after a crash of the machine the file may be older or missing, which costs
 * a rebalance, as it did before. A group is restored STABLE when it was, else rebalancing (its
 * members are told to rejoin); every restored member's session starts at the restart, so a
 * member that is gone is dropped after its session time-out. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "broker.h"
#include "log.h"

enum gstate { G_EMPTY, G_PREPARING, G_AWAITING_SYNC, G_STABLE };

struct protocol {
    char *name;
    uint8_t *meta;
    int32_t meta_len;
};

struct member {
    struct member *next;
    char *id;
    char *client_id, *client_host;
    char *instance_id;
    int32_t session_timeout_ms, rebalance_timeout_ms;
    struct protocol *protocols;
    int32_t n_protocols;
    uint8_t *assignment;
    int32_t assignment_len;
    long long last_seen_ms;
    struct reply *join_reply, *sync_reply;
};

struct group {
    struct group *next;
    char *id;
    enum gstate state;
    int32_t generation;
    char *protocol_type;
    char *protocol;
    char *leader;
    struct member *members;
    long long rebalance_deadline_ms;
};

struct committed {
    char *group, *topic, *meta;
    int32_t part;
    int64_t offset;
};

struct groups {
    struct group *list;
    struct committed *offs;
    size_t n_offs, cap_offs;
    int fd;
    char *path;
    char *state_path; /* groups.state */
    int is_dirty;
    int is_state_dirty; /* a group changed: rewrite groups.state at the end of the tick */
    unsigned long member_seq;
};

#define GROUPS_STATE_VERSION 1
#define GROUPS_STATE_MAX_BYTES (64u << 20)

/* ---- offsets file ---- */

static struct committed *offset_find(struct groups *gs, const char *group, const char *topic,
                                     int32_t part)
{
    for (size_t i = 0; i < gs->n_offs; i++) {
        struct committed *c = &gs->offs[i];
        if (c->part == part && !strcmp(c->topic, topic) && !strcmp(c->group, group)) {
            return c;
        }
    }
    return NULL;
}

static void offset_set(struct groups *gs, const char *group, const char *topic, int32_t part,
                       int64_t offset, const char *meta)
{
    struct committed *c = offset_find(gs, group, topic, part);
    if (offset == -1) {
        if (c) {
            free(c->group);
            free(c->topic);
            free(c->meta);
            *c = gs->offs[--gs->n_offs];
        }
        return;
    }
    if (!c) {
        if (gs->n_offs == gs->cap_offs) {
            gs->cap_offs = gs->cap_offs ? gs->cap_offs * 2 : 64;
            gs->offs = xrealloc(gs->offs, gs->cap_offs * sizeof *gs->offs);
        }
        c = &gs->offs[gs->n_offs++];
        c->group = xstrdup(group);
        c->topic = xstrdup(topic);
        c->part = part;
        c->meta = NULL;
    }
    free(c->meta);
    c->meta = meta ? xstrdup(meta) : NULL;
    c->offset = offset;
}

static void record_encode(struct kw *w, const char *group, const char *topic, int32_t part,
                          int64_t offset, const char *meta)
{
    size_t start = w->len;
    kw_i32(w, 0);
    kw_i32(w, 0);
    kw_str(w, group);
    kw_str(w, topic);
    kw_i32(w, part);
    kw_i64(w, offset);
    kw_str(w, meta);
    size_t plen = w->len - start - 8;
    put_be32(w->p + start, (uint32_t)plen);
    put_be32(w->p + start + 4, crc32c(0, w->p + start + 8, plen));
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int offsets_load(struct groups *gs, char *err, size_t err_len)
{
    int fd = open(gs->path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        uint8_t *data = NULL;
        size_t size = 0;
        if (fstat(fd, &st) == 0 && st.st_size > 0) {
            size = (size_t)st.st_size;
            data = xmalloc(size);
            size_t got = 0;
            while (got < size) {
                ssize_t n = read(fd, data + got, size - got);
                if (n <= 0) {
                    break;
                }
                got += (size_t)n;
            }
            size = got;
        }
        close(fd);
        size_t pos = 0;
        while (size - pos >= 8) {
            uint32_t plen = be32(data + pos);
            if (plen > size - pos - 8 || crc32c(0, data + pos + 8, plen) != be32(data + pos + 4)) {
                break;
            }
            struct kr q;
            kr_init(&q, data + pos + 8, plen);
            char group[256], topic[STORE_MAX_NAME + 1], meta[4096];
            struct kstr g = kr_str(&q), t = kr_str(&q);
            int32_t part = kr_i32(&q);
            int64_t off = kr_i64(&q);
            struct kstr m = kr_str(&q);
            if (q.err || kstr_copy(g, group, sizeof group) || kstr_copy(t, topic, sizeof topic)) {
                break;
            }
            int has_meta = kstr_copy(m, meta, sizeof meta) == 0;
            offset_set(gs, group, topic, part, off, has_meta ? meta : NULL);
            pos += 8 + plen;
        }
        if (pos < size) {
            log_warn("%s: dropping %zu bytes of torn or corrupt tail", gs->path, size - pos);
        }
        free(data);
    }
    /* Compact: rewrite the live entries, then append from there. */
    char *tmp = xasprintf("%s.tmp", gs->path);
    struct kw w;
    kw_init(&w);
    for (size_t i = 0; i < gs->n_offs; i++) {
        struct committed *c = &gs->offs[i];
        record_encode(&w, c->group, c->topic, c->part, c->offset, c->meta);
    }
    int rc = -1;
    int tfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tfd >= 0 && write_all(tfd, w.p, w.len) == 0 && fsync(tfd) == 0 &&
        rename(tmp, gs->path) == 0) {
        rc = 0;
    }
    if (tfd >= 0) {
        close(tfd);
    }
    if (rc != 0) {
        /* A full disk: start anyway, appending to the file as it is (its torn tail, if any, is
         * dropped at the next start); commits are refused until space returns. */
        log_warn("%s: cannot compact (%s): appending to it as it is", gs->path, strerror(errno));
        (void)unlink(tmp);
        rc = 0;
    }
    kw_release(&w);
    free(tmp);
    gs->fd = open(gs->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (gs->fd < 0) {
        rc = -1;
        snprintf(err, err_len, "cannot open %s: %s", gs->path, strerror(errno));
    }
    return rc;
}

int groups_offset_commit_one(struct broker *b, const char *group, const char *topic, int32_t part,
                             int64_t offset, const char *meta)
{
    struct kw rec;
    kw_init(&rec);
    record_encode(&rec, group, topic, part, offset, meta);
    struct stat st;
    off_t size_before = fstat(b->groups->fd, &st) == 0 ? st.st_size : -1;
    int rc = write_all(b->groups->fd, rec.p, rec.len);
    kw_release(&rec);
    if (rc != 0) {
        log_error("%s: write failed: %s", b->groups->path, strerror(errno));
        if (size_before >= 0 && ftruncate(b->groups->fd, size_before) != 0) {
            log_error("%s: truncate after failed write failed", b->groups->path);
        }
        return -1;
    }
    offset_set(b->groups, group, topic, part, offset, meta);
    if (b->opt.fsync != FSYNC_NEVER) {
        b->groups->is_dirty = 1;
        b->store.write_seq++;
    }
    return 0;
}

/* ---- group state file ---- */

static void group_free(struct group *g);

static void state_encode(struct groups *gs, struct kw *w)
{
    kw_i32(w, 0);
    kw_i32(w, 0);
    kw_i32(w, GROUPS_STATE_VERSION);
    kw_i64(w, (int64_t)gs->member_seq);
    size_t mark = kw_mark_i32(w);
    int32_t n = 0;
    for (struct group *g = gs->list; g; g = g->next) {
        if (!g->members) {
            continue; /* an empty group is only its committed offsets */
        }
        n++;
        kw_str(w, g->id);
        kw_i8(w, (int8_t)g->state);
        kw_i32(w, g->generation);
        kw_str(w, g->protocol_type);
        kw_str(w, g->protocol);
        kw_str(w, g->leader);
        size_t mmark = kw_mark_i32(w);
        int32_t nm = 0;
        for (struct member *m = g->members; m; m = m->next) {
            nm++;
            kw_str(w, m->id);
            kw_str(w, m->client_id);
            kw_str(w, m->client_host);
            kw_str(w, m->instance_id);
            kw_i32(w, m->session_timeout_ms);
            kw_i32(w, m->rebalance_timeout_ms);
            kw_i32(w, m->n_protocols);
            for (int32_t i = 0; i < m->n_protocols; i++) {
                kw_str(w, m->protocols[i].name);
                kw_bytes(w, m->protocols[i].meta, m->protocols[i].meta_len);
            }
            kw_bytes(w, m->assignment, m->assignment ? m->assignment_len : -1);
        }
        kw_patch_i32(w, mmark, nm);
    }
    kw_patch_i32(w, mark, n);
    size_t plen = w->len - 8;
    put_be32(w->p, (uint32_t)plen);
    put_be32(w->p + 4, crc32c(0, w->p + 8, plen));
}

static void groups_state_save(struct groups *gs)
{
    gs->is_state_dirty = 0;
    struct kw w;
    kw_init(&w);
    state_encode(gs, &w);
    char *tmp = xasprintf("%s.tmp", gs->state_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd >= 0 ? write_all(fd, w.p, w.len) : -1;
    if (fd >= 0 && close(fd) != 0) {
        rc = -1;
    }
    if (rc == 0 && rename(tmp, gs->state_path) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        /* e.g. a full disk: the groups keep working; a restart now would cost a rebalance */
        log_warn("%s: cannot write the group state: %s", gs->state_path, strerror(errno));
        (void)unlink(tmp);
    }
    free(tmp);
    kw_release(&w);
}

static char *kstr_dup(struct kstr s)
{
    return s.ptr ? xstrndup(s.ptr, (size_t)s.len) : NULL;
}

static uint8_t *bytes_dup(const uint8_t *p, int32_t len)
{
    if (!p || len <= 0) {
        return NULL;
    }
    uint8_t *c = xmalloc((size_t)len);
    memcpy(c, p, (size_t)len);
    return c;
}

/* Decodes one group of the state file into a new group (NULL when malformed). */
static struct group *state_decode_group(struct kr *q, long long now)
{
    struct group *g = xcalloc(1, sizeof *g);
    struct kstr id = kr_str(q);
    int8_t state = kr_i8(q);
    g->generation = kr_i32(q);
    g->protocol_type = kstr_dup(kr_str(q));
    g->protocol = kstr_dup(kr_str(q));
    g->leader = kstr_dup(kr_str(q));
    int32_t nm = kr_array(q, 30);
    g->id = id.ptr ? kstr_dup(id) : xstrdup("");
    struct member **tail = &g->members;
    for (int32_t i = 0; i < nm && !q->err; i++) {
        struct member *m = xcalloc(1, sizeof *m);
        *tail = m;
        tail = &m->next;
        m->id = kstr_dup(kr_str(q));
        m->client_id = kstr_dup(kr_str(q));
        m->client_host = kstr_dup(kr_str(q));
        m->instance_id = kstr_dup(kr_str(q));
        m->session_timeout_ms = kr_i32(q);
        m->rebalance_timeout_ms = kr_i32(q);
        int32_t np = kr_array(q, 6);
        if (np > 0) {
            m->protocols = xcalloc((size_t)np, sizeof *m->protocols);
            for (int32_t k = 0; k < np && !q->err; k++) {
                m->protocols[k].name = kstr_dup(kr_str(q));
                int32_t len;
                const uint8_t *meta = kr_bytes(q, &len);
                m->protocols[k].meta = bytes_dup(meta, len);
                m->protocols[k].meta_len = len < 0 ? 0 : len;
                m->n_protocols = k + 1;
            }
        }
        int32_t alen;
        const uint8_t *a = kr_bytes(q, &alen);
        m->assignment = bytes_dup(a, alen);
        m->assignment_len = m->assignment ? alen : 0;
        m->last_seen_ms = now; /* its session starts now */
        if (!m->id || m->session_timeout_ms < 1000) {
            q->err = 1;
        }
        for (int32_t k = 0; k < m->n_protocols; k++) {
            if (!m->protocols[k].name) {
                q->err = 1;
            }
        }
    }
    if (q->err || !id.ptr || !g->members) {
        group_free(g);
        return NULL;
    }
    if (state == G_STABLE && g->protocol && g->leader) {
        g->state = G_STABLE;
    } else {
        /* Caught mid-rebalance: the members rejoin (their heartbeats are told so), bounded by
         * the largest rebalance time-out as any rebalance. */
        int32_t t = 0;
        for (struct member *m = g->members; m; m = m->next) {
            if (m->rebalance_timeout_ms > t) {
                t = m->rebalance_timeout_ms;
            }
        }
        g->state = G_PREPARING;
        g->rebalance_deadline_ms = now + t;
    }
    return g;
}

static void groups_state_load(struct groups *gs)
{
    int fd = open(gs->state_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    struct stat st;
    uint8_t *data = NULL;
    size_t size = 0;
    if (fstat(fd, &st) == 0 && st.st_size >= 8 && (uint64_t)st.st_size <= GROUPS_STATE_MAX_BYTES) {
        data = xmalloc((size_t)st.st_size);
        while (size < (size_t)st.st_size) {
            ssize_t n = read(fd, data + size, (size_t)st.st_size - size);
            if (n <= 0) {
                break;
            }
            size += (size_t)n;
        }
    }
    close(fd);
    uint32_t plen = size >= 8 ? be32(data) : 0;
    if (size < 8 || plen != size - 8 || crc32c(0, data + 8, plen) != be32(data + 4)) {
        log_warn("%s: unreadable, ignored (groups rebalance as their members rejoin)",
                 gs->state_path);
        free(data);
        return;
    }
    struct kr q;
    kr_init(&q, data + 8, plen);
    int32_t version = kr_i32(&q);
    int64_t seq = kr_i64(&q);
    int32_t n = kr_array(&q, 20);
    long long now = broker_now_ms();
    int restored = 0;
    for (int32_t i = 0; version == GROUPS_STATE_VERSION && i < n && !q.err; i++) {
        struct group *g = state_decode_group(&q, now);
        if (!g) {
            break;
        }
        g->next = gs->list;
        gs->list = g;
        restored++;
        log_info("group %s: restored, generation %d, %s", g->id, (int)g->generation,
                 g->state == G_STABLE ? "stable" : "rebalancing");
    }
    if (version != GROUPS_STATE_VERSION || q.err) {
        log_warn("%s: version %d or malformed: restored %d groups", gs->state_path, (int)version,
                 restored);
    }
    if (seq > 0) {
        gs->member_seq = (unsigned long)seq;
    }
    free(data);
}

struct groups *groups_new(struct broker *b, char *err, size_t err_len)
{
    struct groups *gs = xcalloc(1, sizeof *gs);
    gs->fd = -1;
    gs->path = xasprintf("%s/consumer_offsets.log", b->opt.data_dir);
    gs->state_path = xasprintf("%s/groups.state", b->opt.data_dir);
    if (offsets_load(gs, err, err_len) != 0) {
        groups_free(gs);
        return NULL;
    }
    groups_state_load(gs);
    return gs;
}

static void member_free(struct member *m)
{
    if (m->join_reply) {
        m->join_reply->backref = NULL;
    }
    if (m->sync_reply) {
        m->sync_reply->backref = NULL;
    }
    for (int32_t i = 0; i < m->n_protocols; i++) {
        free(m->protocols[i].name);
        free(m->protocols[i].meta);
    }
    free(m->protocols);
    free(m->assignment);
    free(m->id);
    free(m->client_id);
    free(m->client_host);
    free(m->instance_id);
    free(m);
}

static void group_free(struct group *g)
{
    while (g->members) {
        struct member *m = g->members;
        g->members = m->next;
        member_free(m);
    }
    free(g->id);
    free(g->protocol_type);
    free(g->protocol);
    free(g->leader);
    free(g);
}

void groups_free(struct groups *gs)
{
    if (!gs) {
        return;
    }
    if (gs->state_path && gs->fd >= 0) {
        groups_state_save(gs); /* a graceful stop: members keep their generation */
    }
    while (gs->list) {
        struct group *g = gs->list;
        gs->list = g->next;
        group_free(g);
    }
    for (size_t i = 0; i < gs->n_offs; i++) {
        free(gs->offs[i].group);
        free(gs->offs[i].topic);
        free(gs->offs[i].meta);
    }
    free(gs->offs);
    if (gs->fd >= 0) {
        (void)fdatasync(gs->fd);
        close(gs->fd);
    }
    free(gs->path);
    free(gs->state_path);
    free(gs);
}

void groups_topic_deleted(struct broker *b, const char *topic)
{
    struct groups *gs = b->groups;
    struct kw w;
    kw_init(&w);
    for (size_t i = 0; i < gs->n_offs;) {
        struct committed *c = &gs->offs[i];
        if (!strcmp(c->topic, topic)) {
            record_encode(&w, c->group, c->topic, c->part, -1, NULL);
            offset_set(gs, c->group, topic, c->part, -1, NULL);
        } else {
            i++;
        }
    }
    if (w.len && write_all(gs->fd, w.p, w.len) != 0) {
        log_error("%s: write failed: %s", gs->path, strerror(errno));
    }
    kw_release(&w);
}

/* ---- coordinator ---- */

static struct group *group_find(struct groups *gs, const char *id, int create);
static struct member *member_find(struct group *g, const char *id);

int groups_check_generation(struct broker *b, const char *gid, const char *mid, int32_t gen)
{
    if (gen < 0 && !mid[0]) {
        return 0; /* a producer that sent no group metadata (before KIP-447) */
    }
    struct group *g = group_find(b->groups, gid, 0);
    if (mid[0] && (!g || !member_find(g, mid))) {
        return KERR_UNKNOWN_MEMBER_ID;
    }
    if (gen >= 0 && (!g || gen != g->generation)) {
        return KERR_ILLEGAL_GENERATION;
    }
    return 0;
}

int groups_delete(struct broker *b, const char *gid)
{
    struct groups *gs = b->groups;
    struct group *g = group_find(gs, gid, 0);
    if (g && g->members) {
        return KERR_NON_EMPTY_GROUP;
    }
    struct kw w;
    kw_init(&w);
    for (size_t i = 0; i < gs->n_offs; i++) {
        struct committed *c = &gs->offs[i];
        if (!strcmp(c->group, gid)) {
            record_encode(&w, c->group, c->topic, c->part, -1, NULL);
        }
    }
    if (!g && w.len == 0) {
        kw_release(&w);
        return KERR_GROUP_ID_NOT_FOUND;
    }
    if (w.len && write_all(gs->fd, w.p, w.len) != 0) {
        log_error("%s: write failed: %s", gs->path, strerror(errno));
        kw_release(&w);
        return KERR_KAFKA_STORAGE_ERROR;
    }
    kw_release(&w);
    for (size_t i = 0; i < gs->n_offs;) {
        struct committed *c = &gs->offs[i];
        if (!strcmp(c->group, gid)) {
            char *topic = xstrdup(c->topic);
            offset_set(gs, gid, topic, c->part, -1, NULL);
            free(topic);
        } else {
            i++;
        }
    }
    if (g) {
        for (struct group **pp = &gs->list; *pp; pp = &(*pp)->next) {
            if (*pp == g) {
                *pp = g->next;
                break;
            }
        }
        group_free(g);
        gs->is_state_dirty = 1;
    }
    gs->is_dirty = 1;
    log_info("deleted group %s", gid);
    return 0;
}

static struct group *group_find(struct groups *gs, const char *id, int create)
{
    for (struct group *g = gs->list; g; g = g->next) {
        if (!strcmp(g->id, id)) {
            return g;
        }
    }
    if (!create) {
        return NULL;
    }
    struct group *g = xcalloc(1, sizeof *g);
    g->id = xstrdup(id);
    g->next = gs->list;
    gs->list = g;
    return g;
}

static struct member *member_find(struct group *g, const char *id)
{
    for (struct member *m = g->members; m; m = m->next) {
        if (!strcmp(m->id, id)) {
            return m;
        }
    }
    return NULL;
}

static int group_size(const struct group *g)
{
    int n = 0;
    for (struct member *m = g->members; m; m = m->next) {
        n++;
    }
    return n;
}

static void answer_join_error(struct broker *b, struct reply *r, int16_t err, const char *mid)
{
    struct kw *w = &r->w;
    w->len = 0;
    if (r->api_version >= 2) {
        kw_i32(w, 0);
    }
    kw_i16(w, err);
    kw_i32(w, -1);
    kw_str(w, "");
    kw_str(w, "");
    kw_str(w, mid ? mid : "");
    kw_i32(w, 0);
    if (r->is_ready == 0) {
        reply_done(b, r);
    }
}

static void answer_sync(struct broker *b, struct reply *r, int16_t err, const uint8_t *a,
                        int32_t alen)
{
    struct kw *w = &r->w;
    w->len = 0;
    if (r->api_version >= 1) {
        kw_i32(w, 0);
    }
    kw_i16(w, err);
    kw_bytes(w, a ? a : (const uint8_t *)"", a ? alen : 0);
    if (r->is_ready == 0) {
        reply_done(b, r);
    }
}

static void start_rebalance(struct broker *b, struct group *g, const char *why)
{
    long long now = broker_now_ms();
    /* Members waiting for an assignment of the old generation must rejoin. */
    for (struct member *m = g->members; m; m = m->next) {
        if (m->sync_reply) {
            answer_sync(b, m->sync_reply, KERR_REBALANCE_IN_PROGRESS, NULL, 0);
        }
    }
    int32_t t = 0;
    for (struct member *m = g->members; m; m = m->next) {
        if (m->rebalance_timeout_ms > t) {
            t = m->rebalance_timeout_ms;
        }
    }
    if (g->state == G_EMPTY && b->opt.group_initial_rebalance_delay_ms > 0) {
        t = (int32_t)b->opt.group_initial_rebalance_delay_ms;
    }
    g->rebalance_deadline_ms = now + t;
    g->state = G_PREPARING;
    b->groups->is_state_dirty = 1;
    log_info("group %s: rebalancing (%s), %d members", g->id, why, group_size(g));
}

static void member_remove(struct broker *b, struct group *g, struct member *m)
{
    b->groups->is_state_dirty = 1;
    for (struct member **pp = &g->members; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    if (m->join_reply) {
        answer_join_error(b, m->join_reply, KERR_UNKNOWN_MEMBER_ID, m->id);
    }
    if (m->sync_reply) {
        answer_sync(b, m->sync_reply, KERR_UNKNOWN_MEMBER_ID, NULL, 0);
    }
    if (g->leader && !strcmp(g->leader, m->id)) {
        free(g->leader);
        g->leader = NULL;
    }
    member_free(m);
}

static const char *choose_protocol(struct group *g)
{
    struct member *first = g->members;
    for (int32_t i = 0; first && i < first->n_protocols; i++) {
        const char *name = first->protocols[i].name;
        int all = 1;
        for (struct member *m = first->next; m && all; m = m->next) {
            int has = 0;
            for (int32_t k = 0; k < m->n_protocols; k++) {
                has |= !strcmp(m->protocols[k].name, name);
            }
            all = has;
        }
        if (all) {
            return name;
        }
    }
    return NULL;
}

static const struct protocol *member_protocol(const struct member *m, const char *name)
{
    for (int32_t k = 0; k < m->n_protocols; k++) {
        if (!strcmp(m->protocols[k].name, name)) {
            return &m->protocols[k];
        }
    }
    return NULL;
}

static void complete_join(struct broker *b, struct group *g)
{
    b->groups->is_state_dirty = 1;
    /* Members that did not rejoin in time are out. */
    for (struct member *m = g->members, *next; m; m = next) {
        next = m->next;
        if (!m->join_reply) {
            log_info("group %s: member %s did not rejoin in time", g->id, m->id);
            member_remove(b, g, m);
        }
    }
    if (!g->members) {
        g->state = G_EMPTY;
        g->generation++;
        free(g->protocol);
        g->protocol = NULL;
        return;
    }
    const char *proto = choose_protocol(g);
    if (!proto) {
        for (struct member *m = g->members, *next; m; m = next) {
            next = m->next;
            answer_join_error(b, m->join_reply, KERR_INCONSISTENT_GROUP_PROTOCOL, m->id);
            m->join_reply = NULL;
        }
        g->state = G_EMPTY;
        return;
    }
    free(g->protocol);
    g->protocol = xstrdup(proto);
    g->generation++;
    if (!g->leader || !member_find(g, g->leader)) {
        free(g->leader);
        g->leader = xstrdup(g->members->id);
    }
    g->state = G_AWAITING_SYNC;
    long long now = broker_now_ms();
    log_info("group %s: generation %d with %d members, leader %s, protocol %s", g->id,
             (int)g->generation, group_size(g), g->leader, g->protocol);
    for (struct member *m = g->members; m; m = m->next) {
        struct reply *r = m->join_reply;
        struct kw *w = &r->w;
        int16_t v = r->api_version;
        int is_leader = !strcmp(m->id, g->leader);
        w->len = 0;
        if (v >= 2) {
            kw_i32(w, 0);
        }
        kw_i16(w, 0);
        kw_i32(w, g->generation);
        kw_str(w, g->protocol);
        kw_str(w, g->leader);
        kw_str(w, m->id);
        if (is_leader) {
            kw_i32(w, group_size(g));
            for (struct member *o = g->members; o; o = o->next) {
                const struct protocol *p = member_protocol(o, g->protocol);
                kw_str(w, o->id);
                if (v >= 5) {
                    kw_str(w, o->instance_id);
                }
                kw_bytes(w, p->meta, p->meta_len);
            }
        } else {
            kw_i32(w, 0);
        }
        m->last_seen_ms = now;
        reply_done(b, r);
    }
}

static void maybe_complete_join(struct broker *b, struct group *g)
{
    if (g->state != G_PREPARING) {
        return;
    }
    for (struct member *m = g->members; m; m = m->next) {
        if (!m->join_reply) {
            return;
        }
    }
    if (b->opt.group_initial_rebalance_delay_ms > 0 && g->generation == 0 &&
        broker_now_ms() < g->rebalance_deadline_ms) {
        return;
    }
    complete_join(b, g);
}

void groups_tick(struct broker *b, long long now)
{
    for (struct group *g = b->groups->list; g; g = g->next) {
        if (g->state == G_PREPARING && now >= g->rebalance_deadline_ms) {
            complete_join(b, g);
        }
        int expired = 0;
        for (struct member *m = g->members, *next; m; m = next) {
            next = m->next;
            if (!m->join_reply && now - m->last_seen_ms > m->session_timeout_ms) {
                log_info("group %s: member %s session timed out", g->id, m->id);
                member_remove(b, g, m);
                expired = 1;
            }
        }
        if (expired) {
            if (g->members) {
                start_rebalance(b, g, "session timeout");
            } else {
                g->state = G_EMPTY;
            }
            maybe_complete_join(b, g);
        }
    }
    if (b->groups->is_state_dirty) {
        groups_state_save(b->groups);
    }
}

int groups_take_dirty_fd(struct broker *b)
{
    if (!b->groups->is_dirty) {
        return -1;
    }
    b->groups->is_dirty = 0;
    int fd = dup(b->groups->fd);
    if (fd < 0 && fdatasync(b->groups->fd) != 0) { /* out of descriptors: sync here instead */
        log_error("%s: fdatasync failed: %s", b->groups->path, strerror(errno));
    }
    return fd;
}

long long groups_next_deadline(struct broker *b)
{
    long long d = -1;
    for (struct group *g = b->groups->list; g; g = g->next) {
        if (g->state == G_PREPARING && (d < 0 || g->rebalance_deadline_ms < d)) {
            d = g->rebalance_deadline_ms;
        }
    }
    return d;
}

/* An OffsetCommit or OffsetFetch lists at most as many partitions as the broker may hold
 * (max_partitions): each one listed is looked up among the committed offsets, so a request
 * listing millions (16 MiB of them) would hold the event loop. Past it the request counts as
 * malformed (the connection is closed, nothing is committed). Adds np to *n_listed; 1 when
 * past the limit. */
static int listed_too_many(const struct broker *b, long *n_listed, int32_t np, struct kr *q)
{
    *n_listed += np > 0 ? np : 0;
    if (*n_listed <= b->opt.max_partitions) {
        return 0;
    }
    log_warn("a request lists more than %ld partitions (max_partitions): refused",
             b->opt.max_partitions);
    q->err = 1;
    return 1;
}

/* ---- handlers ---- */

int handle_find_coordinator(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    struct kstr key = kr_str(q);
    int8_t key_type = 0;
    if (v >= 1) {
        key_type = kr_i8(q); /* 0 = group, 1 = transaction (txn.c): this node for both */
    }
    if (q->err) {
        return -1;
    }
    char gid[256];
    int16_t err = key_type == 0 && kstr_copy(key, gid, sizeof gid) == 0 &&
                          !reply_allowed(b, r, ACL_GROUP, gid, ACL_DESCRIBE)
                      ? KERR_GROUP_AUTHORIZATION_FAILED
                      : 0;
    if (key_type == 1 && kstr_copy(key, gid, sizeof gid) == 0 &&
        !reply_allowed(b, r, ACL_TRANSACTIONAL_ID, gid, ACL_DESCRIBE)) {
        err = 53; /* TRANSACTIONAL_ID_AUTHORIZATION_FAILED (txn.c) */
    }
    struct kw *w = &r->w;
    if (v >= 1) {
        kw_i32(w, 0);
    }
    kw_i16(w, err);
    if (v >= 1) {
        kw_str(w, err ? "not authorized to describe this group or transactional id" : NULL);
    }
    kw_i32(w, 0);
    kw_str(w, b->opt.advertised_host);
    kw_i32(w, b->port);
    return 0;
}

int handle_join_group(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    char gid[256], mid[256], ptype[256];
    struct kstr g_s = kr_str(q);
    int32_t session = kr_i32(q);
    int32_t rebalance = v >= 1 ? kr_i32(q) : session;
    struct kstr m_s = kr_str(q);
    struct kstr inst = {NULL, -1};
    if (v >= 5) {
        inst = kr_str(q);
    }
    struct kstr pt = kr_str(q);
    int32_t np = kr_array(q, 6);
    if (q->err || np < 0 || np > 64) {
        return -1;
    }
    struct protocol protos[64];
    for (int32_t i = 0; i < np; i++) {
        struct kstr name = kr_str(q);
        int32_t mlen;
        const uint8_t *meta = kr_bytes(q, &mlen);
        if (q->err || !name.ptr) {
            for (int32_t k = 0; k < i; k++) {
                free(protos[k].name);
                free(protos[k].meta);
            }
            return -1;
        }
        char *nm = xstrndup(name.ptr, (size_t)name.len);
        protos[i].name = nm;
        protos[i].meta_len = mlen < 0 ? 0 : mlen;
        protos[i].meta = NULL;
        if (mlen > 0) {
            protos[i].meta = xmalloc((size_t)mlen);
            memcpy(protos[i].meta, meta, (size_t)mlen);
        }
    }
    int16_t err = 0;
    if (kstr_copy(g_s, gid, sizeof gid) != 0 || !gid[0]) {
        err = KERR_INVALID_GROUP_ID;
    } else if (kstr_copy(m_s, mid, sizeof mid) != 0) {
        err = KERR_UNKNOWN_MEMBER_ID;
    } else if (!reply_allowed(b, r, ACL_GROUP, gid, ACL_READ)) {
        err = KERR_GROUP_AUTHORIZATION_FAILED;
    } else if (kstr_copy(pt, ptype, sizeof ptype) != 0 || np == 0) {
        err = KERR_INCONSISTENT_GROUP_PROTOCOL;
    } else if (session < 1000 || session > 1800000) {
        err = KERR_INVALID_SESSION_TIMEOUT;
    }
    struct group *g = NULL;
    struct member *m = NULL;
    if (!err) {
        g = group_find(b->groups, gid, 1);
        if (g->members && g->protocol_type && strcmp(g->protocol_type, ptype)) {
            err = KERR_INCONSISTENT_GROUP_PROTOCOL;
        } else if (mid[0] && !(m = member_find(g, mid))) {
            err = KERR_UNKNOWN_MEMBER_ID;
        }
    }
    if (err) {
        for (int32_t i = 0; i < np; i++) {
            free(protos[i].name);
            free(protos[i].meta);
        }
        answer_join_error(b, r, err, mid[0] ? mid : NULL);
        return 0;
    }
    if (!m) {
        m = xcalloc(1, sizeof *m);
        m->id = xasprintf("%s-%lu-%lld", gid, ++b->groups->member_seq, broker_now_ms());
        if (inst.ptr) {
            m->instance_id = xstrndup(inst.ptr, (size_t)inst.len);
        }
        m->client_id = xstrdup(r->client_id);
        const char *peer = reply_peer(r);
        const char *colon = strrchr(peer, ':');
        m->client_host = xasprintf("/%.*s", (int)(colon ? colon - peer : (long)strlen(peer)), peer);
        /* Append: the first member stays first (and the natural leader). */
        struct member **pp = &g->members;
        while (*pp) {
            pp = &(*pp)->next;
        }
        *pp = m;
    }
    for (int32_t i = 0; i < m->n_protocols; i++) {
        free(m->protocols[i].name);
        free(m->protocols[i].meta);
    }
    free(m->protocols);
    m->protocols = xmalloc((size_t)np * sizeof *m->protocols);
    memcpy(m->protocols, protos, (size_t)np * sizeof *protos);
    m->n_protocols = np;
    m->session_timeout_ms = session;
    m->rebalance_timeout_ms = rebalance;
    m->last_seen_ms = broker_now_ms();
    free(g->protocol_type);
    g->protocol_type = xstrdup(ptype);
    if (m->join_reply) {
        answer_join_error(b, m->join_reply, KERR_REBALANCE_IN_PROGRESS, m->id);
    }
    reply_park(r, &m->join_reply);
    if (g->state != G_PREPARING) {
        start_rebalance(b, g, "member joined");
    }
    maybe_complete_join(b, g);
    return 0;
}

int handle_sync_group(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    char gid[256], mid[256];
    struct kstr g_s = kr_str(q);
    int32_t gen = kr_i32(q);
    struct kstr m_s = kr_str(q);
    if (v >= 3) {
        (void)kr_str(q);
    }
    int32_t na = kr_array(q, 6);
    size_t assign_at = q->pos;
    for (int32_t i = 0; i < na && !q->err; i++) {
        int32_t alen;
        (void)kr_str(q);
        (void)kr_bytes(q, &alen);
    }
    if (q->err) {
        return -1;
    }
    struct group *g = NULL;
    struct member *m = NULL;
    if (kstr_copy(g_s, gid, sizeof gid) == 0 && kstr_copy(m_s, mid, sizeof mid) == 0 &&
        (g = group_find(b->groups, gid, 0))) {
        m = member_find(g, mid);
    }
    if (g && !reply_allowed(b, r, ACL_GROUP, gid, ACL_READ)) {
        answer_sync(b, r, KERR_GROUP_AUTHORIZATION_FAILED, NULL, 0);
        return 0;
    }
    if (!m) {
        answer_sync(b, r, KERR_UNKNOWN_MEMBER_ID, NULL, 0);
        return 0;
    }
    m->last_seen_ms = broker_now_ms();
    if (gen != g->generation) {
        answer_sync(b, r, KERR_ILLEGAL_GENERATION, NULL, 0);
        return 0;
    }
    if (g->state == G_PREPARING) {
        answer_sync(b, r, KERR_REBALANCE_IN_PROGRESS, NULL, 0);
        return 0;
    }
    if (g->state == G_STABLE) {
        answer_sync(b, r, 0, m->assignment, m->assignment_len);
        return 0;
    }
    if (m->sync_reply) {
        answer_sync(b, m->sync_reply, KERR_REBALANCE_IN_PROGRESS, NULL, 0);
    }
    reply_park(r, &m->sync_reply);
    if (strcmp(m->id, g->leader ? g->leader : "")) {
        return 0;
    }
    /* The leader's assignment: store it and answer every waiting member. */
    struct kr a;
    kr_init(&a, q->p + assign_at, q->pos - assign_at);
    for (struct member *o = g->members; o; o = o->next) {
        free(o->assignment);
        o->assignment = NULL;
        o->assignment_len = 0;
    }
    for (int32_t i = 0; i < na; i++) {
        char who[256];
        struct kstr w_s = kr_str(&a);
        int32_t alen;
        const uint8_t *data = kr_bytes(&a, &alen);
        struct member *o;
        if (kstr_copy(w_s, who, sizeof who) != 0 || !(o = member_find(g, who)) || alen <= 0) {
            continue;
        }
        free(o->assignment);
        o->assignment = xmalloc((size_t)alen);
        memcpy(o->assignment, data, (size_t)alen);
        o->assignment_len = alen;
    }
    g->state = G_STABLE;
    b->groups->is_state_dirty = 1;
    for (struct member *o = g->members; o; o = o->next) {
        if (o->sync_reply) {
            answer_sync(b, o->sync_reply, 0, o->assignment, o->assignment_len);
        }
    }
    return 0;
}

int handle_heartbeat(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    char gid[256], mid[256];
    struct kstr g_s = kr_str(q);
    int32_t gen = kr_i32(q);
    struct kstr m_s = kr_str(q);
    if (v >= 3) {
        (void)kr_str(q);
    }
    if (q->err) {
        return -1;
    }
    struct group *g = NULL;
    struct member *m = NULL;
    if (kstr_copy(g_s, gid, sizeof gid) == 0 && kstr_copy(m_s, mid, sizeof mid) == 0 &&
        (g = group_find(b->groups, gid, 0))) {
        m = member_find(g, mid);
    }
    int16_t err = 0;
    if (g && !reply_allowed(b, r, ACL_GROUP, gid, ACL_READ)) {
        err = KERR_GROUP_AUTHORIZATION_FAILED;
    } else if (!m) {
        err = KERR_UNKNOWN_MEMBER_ID;
    } else {
        m->last_seen_ms = broker_now_ms();
        if (g->state == G_PREPARING) {
            err = KERR_REBALANCE_IN_PROGRESS;
        } else if (gen != g->generation) {
            err = KERR_ILLEGAL_GENERATION;
        }
    }
    if (v >= 1) {
        kw_i32(&r->w, 0);
    }
    kw_i16(&r->w, err);
    return 0;
}

int handle_leave_group(struct broker *b, struct reply *r, struct kr *q)
{
    char gid[256], mid[256];
    struct kstr g_s = kr_str(q);
    struct kstr m_s = kr_str(q);
    if (q->err) {
        return -1;
    }
    struct group *g = NULL;
    struct member *m = NULL;
    if (kstr_copy(g_s, gid, sizeof gid) == 0 && kstr_copy(m_s, mid, sizeof mid) == 0 &&
        (g = group_find(b->groups, gid, 0))) {
        m = member_find(g, mid);
    }
    int may_leave = !g || reply_allowed(b, r, ACL_GROUP, gid, ACL_READ);
    if (!may_leave) {
        m = NULL; /* denied: the member stays */
    }
    if (r->api_version >= 1) {
        kw_i32(&r->w, 0);
    }
    kw_i16(&r->w, !may_leave ? KERR_GROUP_AUTHORIZATION_FAILED : m ? 0 : KERR_UNKNOWN_MEMBER_ID);
    if (m) {
        log_info("group %s: member %s left", g->id, m->id);
        member_remove(b, g, m);
        if (g->members) {
            start_rebalance(b, g, "member left");
            maybe_complete_join(b, g);
        } else {
            g->state = G_EMPTY;
        }
    }
    return 0;
}

int handle_offset_commit(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    char gid[256], mid[256] = "";
    struct kstr g_s = kr_str(q);
    int32_t gen = kr_i32(q);
    struct kstr m_s = kr_str(q);
    if (v >= 7) {
        (void)kr_str(q);
    }
    if (v >= 2 && v <= 4) {
        (void)kr_i64(q); /* retention_time_ms */
    }
    int16_t gerr = 0;
    if (kstr_copy(g_s, gid, sizeof gid) != 0 || !gid[0]) {
        gerr = KERR_INVALID_GROUP_ID;
    } else if (kstr_copy(m_s, mid, sizeof mid) != 0) {
        gerr = KERR_UNKNOWN_MEMBER_ID;
    } else if (!reply_allowed(b, r, ACL_GROUP, gid, ACL_READ)) {
        gerr = KERR_GROUP_AUTHORIZATION_FAILED;
    }
    if (!gerr && (gen >= 0 || mid[0])) {
        struct group *g = group_find(b->groups, gid, 0);
        struct member *m = g ? member_find(g, mid) : NULL;
        if (!m) {
            gerr = KERR_UNKNOWN_MEMBER_ID;
        } else if (gen != g->generation) {
            gerr = KERR_ILLEGAL_GENERATION;
        } else if (g->state == G_AWAITING_SYNC) {
            gerr = KERR_REBALANCE_IN_PROGRESS; /* as Kafka: commits are fine while preparing */
        } else {
            m->last_seen_ms = broker_now_ms();
        }
    } else if (!gerr) {
        struct group *g = group_find(b->groups, gid, 0);
        if (g && g->members) {
            gerr = KERR_UNKNOWN_MEMBER_ID; /* a simple commit into an active group */
        }
    }
    struct kw *w = &r->w;
    if (v >= 3) {
        kw_i32(w, 0);
    }
    int32_t nt = kr_array(q, 4);
    kw_i32(w, nt < 0 ? 0 : nt);
    struct kw rec;
    kw_init(&rec);
    /* The commits of the request take effect only once written: where each accepted one's
     * error code sits in the answer, to turn it into KAFKA_STORAGE_ERROR when the write fails
     * (a full disk), which the committer retries. */
    size_t *accepted_at = NULL;
    size_t n_accepted = 0, cap_accepted = 0;
    long n_listed = 0;
    for (int32_t i = 0; i < nt && !q->err; i++) {
        struct kstr t_s = kr_str(q);
        int32_t np = kr_array(q, 14);
        if (listed_too_many(b, &n_listed, np, q)) {
            break;
        }
        if (t_s.ptr) {
            kw_strn(w, t_s.ptr, (size_t)t_s.len);
        } else {
            kw_i16(w, -1);
        }
        kw_i32(w, np < 0 ? 0 : np);
        char topic[STORE_MAX_NAME + 1];
        int has_topic = kstr_copy(t_s, topic, sizeof topic) == 0;
        struct topic *t = has_topic ? store_topic_find(&b->store, topic) : NULL;
        int may_read =
            gerr || !has_topic || np <= 0 || reply_allowed(b, r, ACL_TOPIC, topic, ACL_READ);
        for (int32_t k = 0; k < np && !q->err; k++) {
            int32_t part = kr_i32(q);
            int64_t off = kr_i64(q);
            if (v >= 6) {
                (void)kr_i32(q);
            }
            struct kstr meta_s = kr_str(q);
            char meta[4096];
            int has_meta = kstr_copy(meta_s, meta, sizeof meta) == 0;
            int16_t err = gerr ? gerr : may_read ? 0 : KERR_TOPIC_AUTHORIZATION_FAILED;
            if (!err && (!t || part < 0 || part >= t->n_parts)) {
                err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
            }
            /* Any offset is stored as given, as Kafka stores it: kafkajs's resetOffsets commits
             * -2 (earliest) or -1 (latest) and waits for the commit to succeed; -1 reads back as
             * "no committed offset", the same as Kafka's answer for it. */
            if (!err) {
                record_encode(&rec, gid, topic, part, off, has_meta ? meta : NULL);
            }
            kw_i32(w, part);
            if (!err) {
                if (n_accepted == cap_accepted) {
                    cap_accepted = cap_accepted ? 2 * cap_accepted : 16;
                    accepted_at = xrealloc(accepted_at, cap_accepted * sizeof *accepted_at);
                }
                accepted_at[n_accepted++] = w->len;
            }
            kw_i16(w, err);
        }
    }
    int rc = q->err ? -1 : 0;
    if (rec.len && !q->err) { /* a malformed request commits nothing */
        size_t at = 0;
        struct stat st;
        off_t size_before = fstat(b->groups->fd, &st) == 0 ? st.st_size : -1;
        if (write_all(b->groups->fd, rec.p, rec.len) != 0) {
            log_error("%s: write failed: %s", b->groups->path, strerror(errno));
            /* Cut off what was written of it, so that the next record starts clean. */
            if (size_before >= 0 && ftruncate(b->groups->fd, size_before) != 0) {
                log_error("%s: truncate after failed write failed", b->groups->path);
            }
            for (size_t i = 0; i < n_accepted; i++) {
                w->p[accepted_at[i]] = (uint8_t)((KERR_KAFKA_STORAGE_ERROR >> 8) & 0xff);
                w->p[accepted_at[i] + 1] = (uint8_t)(KERR_KAFKA_STORAGE_ERROR & 0xff);
            }
        } else {
            /* Written: now they take effect. */
            while (at + 8 <= rec.len) {
                uint32_t plen = be32(rec.p + at);
                struct kr one;
                kr_init(&one, rec.p + at + 8, plen);
                char g[256], t[STORE_MAX_NAME + 1], m[4096];
                struct kstr gs_ = kr_str(&one), ts_ = kr_str(&one);
                int32_t part = kr_i32(&one);
                int64_t off = kr_i64(&one);
                struct kstr ms_ = kr_str(&one);
                if (!one.err && kstr_copy(gs_, g, sizeof g) == 0 &&
                    kstr_copy(ts_, t, sizeof t) == 0) {
                    offset_set(b->groups, g, t, part, off,
                               kstr_copy(ms_, m, sizeof m) == 0 ? m : NULL);
                }
                at += 8 + plen;
            }
        }
        if (at == 0) {
            /* not written: nothing to sync */
        } else if (b->opt.fsync != FSYNC_NEVER) {
            /* Synced by the next round of the fsync thread with the logs (group commit), not
             * here on the loop; the answer waits for that round like an acks=all produce. */
            b->groups->is_dirty = 1;
            b->store.write_seq++;
            r->wait_seq = b->store.write_seq;
        }
    }
    kw_release(&rec);
    free(accepted_at);
    return rc;
}

/* OffsetFetch's strings and arrays: compact from v6 on (the flexible versions). */
static struct kstr of_read_str(struct kr *q, int is_flex)
{
    return is_flex ? kr_compact_str(q) : kr_str(q);
}

static int32_t of_read_array(struct kr *q, int is_flex, size_t min_elem_bytes)
{
    return is_flex ? kr_compact_array(q, min_elem_bytes) : kr_array(q, min_elem_bytes);
}

static void of_write_array_len(struct kw *w, int is_flex, int32_t n)
{
    if (is_flex) {
        kw_uvarint(w, (uint64_t)n + 1);
    } else {
        kw_i32(w, n);
    }
}

/* A string as the request gave it (null stays null). */
static void of_write_kstr(struct kw *w, int is_flex, struct kstr s)
{
    if (!s.ptr) {
        if (is_flex) {
            kw_uvarint(w, 0);
        } else {
            kw_i16(w, -1);
        }
    } else if (is_flex) {
        kw_uvarint(w, (uint64_t)s.len + 1);
        kw_raw(w, s.ptr, (size_t)s.len);
    } else {
        kw_strn(w, s.ptr, (size_t)s.len);
    }
}

/* One partition of the answer: index, offset, leader epoch (v5+), metadata, error. */
static void of_write_partition(struct kw *w, int16_t v, int32_t part, int64_t offset,
                               const char *meta, int16_t err)
{
    int is_flex = v >= 6;
    kw_i32(w, part);
    kw_i64(w, offset);
    if (v >= 5) {
        kw_i32(w, -1);
    }
    if (is_flex) {
        kw_compact_str(w, meta);
    } else {
        kw_str(w, meta);
    }
    kw_i16(w, err);
    if (is_flex) {
        kw_uvarint(w, 0); /* partition's tagged fields */
    }
}

/* v7's require_stable comes after the topics: read from a copy of the reader that skips them.
 * A malformed list leaves it 0; the real pass then finds the same fault. */
static int of_require_stable(const struct kr *q, int16_t v)
{
    if (v < 7) {
        return 0;
    }
    struct kr scan = *q;
    int32_t nt = kr_compact_array(&scan, 3);
    for (int32_t i = 0; i < nt && !scan.err; i++) {
        (void)kr_compact_str(&scan);
        int32_t np = kr_compact_array(&scan, 4);
        for (int32_t k = 0; k < np && !scan.err; k++) {
            (void)kr_i32(&scan);
        }
        kr_skip_tagged(&scan);
    }
    int8_t is_stable = kr_i8(&scan);
    return !scan.err && is_stable != 0;
}

/* OffsetFetch v1-v7: group_id, topics [name, partitions [index]] (null, v2+: every committed
 * offset of the group), require_stable (v7) -> throttle (v3+), topics [name, partitions [index,
 * offset, leader_epoch (v5+), metadata, error]], error (v2+). v6+ is flexible (compact strings
 * and arrays, tagged fields; request header v2, response header v1). With require_stable
 * (KIP-447) a partition an open transaction holds offsets for (txn_pending_of_group) is
 * answered UNSTABLE_OFFSET_COMMIT with offset -1, in the null-topics form too (as Kafka's
 * GroupMetadataManager.getOffsets): the client retries until the transaction ends, instead of
 * starting from the offset the transaction is about to replace. */
int handle_offset_fetch(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int is_flex = v >= 6;
    char gid[256];
    struct kstr g_s = of_read_str(q, is_flex);
    int has_gid = kstr_copy(g_s, gid, sizeof gid) == 0;
    int may_describe = !has_gid || reply_allowed(b, r, ACL_GROUP, gid, ACL_DESCRIBE);
    if (!may_describe) {
        has_gid = 0; /* nothing of the group is shown */
    }
    int is_stable_required = of_require_stable(q, v);
    struct txn_pending *pend = is_stable_required && has_gid ? txn_pending_of_group(b, gid) : NULL;
    struct kw *w = &r->w;
    if (is_flex) {
        kw_uvarint(w, 0); /* response header v1: tagged fields */
    }
    if (v >= 3) {
        kw_i32(w, 0);
    }
    int32_t nt = of_read_array(q, is_flex, is_flex ? 3 : 4);
    struct groups *gs = b->groups;
    if (nt < 0) {
        /* All committed offsets of the group, one topic entry per partition. */
        struct kw all;
        kw_init(&all);
        int32_t n = 0;
        for (size_t i = 0; has_gid && i < gs->n_offs; i++) {
            struct committed *c = &gs->offs[i];
            if (strcmp(c->group, gid) || !reply_may(b, r, ACL_TOPIC, c->topic, ACL_DESCRIBE)) {
                continue;
            }
            int is_unstable = txn_pending_has(pend, c->topic, c->part);
            n++;
            if (is_flex) {
                kw_compact_str(&all, c->topic);
            } else {
                kw_str(&all, c->topic);
            }
            of_write_array_len(&all, is_flex, 1);
            of_write_partition(&all, v, c->part, is_unstable ? -1 : c->offset,
                               !is_unstable && c->meta ? c->meta : "",
                               is_unstable ? KERR_UNSTABLE_OFFSET_COMMIT : 0);
            if (is_flex) {
                kw_uvarint(&all, 0); /* topic's tagged fields */
            }
        }
        of_write_array_len(w, is_flex, n);
        kw_raw(w, all.p, all.len);
        kw_release(&all);
    } else {
        of_write_array_len(w, is_flex, nt);
        long n_listed = 0;
        for (int32_t i = 0; i < nt && !q->err; i++) {
            struct kstr t_s = of_read_str(q, is_flex);
            char topic[STORE_MAX_NAME + 1];
            int has_topic = kstr_copy(t_s, topic, sizeof topic) == 0;
            int32_t np = of_read_array(q, is_flex, 4);
            if (listed_too_many(b, &n_listed, np, q)) {
                break;
            }
            of_write_kstr(w, is_flex, t_s);
            of_write_array_len(w, is_flex, np < 0 ? 0 : np);
            int may_topic = !has_topic || np <= 0 || !has_gid ||
                            reply_allowed(b, r, ACL_TOPIC, topic, ACL_DESCRIBE);
            for (int32_t k = 0; k < np && !q->err; k++) {
                int32_t part = kr_i32(q);
                int is_known = has_gid && has_topic && may_topic;
                struct committed *c = is_known ? offset_find(gs, gid, topic, part) : NULL;
                int16_t err = !may_describe ? KERR_GROUP_AUTHORIZATION_FAILED
                              : may_topic   ? 0
                                            : KERR_TOPIC_AUTHORIZATION_FAILED;
                if (!err && is_known && txn_pending_has(pend, topic, part)) {
                    err = KERR_UNSTABLE_OFFSET_COMMIT;
                    c = NULL;
                }
                of_write_partition(w, v, part, c ? c->offset : -1, c && c->meta ? c->meta : "",
                                   err);
            }
            if (is_flex) {
                kr_skip_tagged(q);
                kw_uvarint(w, 0); /* topic's tagged fields */
            }
        }
    }
    if (v >= 7) {
        (void)kr_i8(q); /* require_stable, read above */
    }
    if (is_flex) {
        kr_skip_tagged(q);
    }
    if (v >= 2) {
        kw_i16(w, !may_describe ? KERR_GROUP_AUTHORIZATION_FAILED
                  : has_gid     ? 0
                                : KERR_INVALID_GROUP_ID);
    }
    if (is_flex) {
        kw_uvarint(w, 0);
    }
    txn_pending_free(pend);
    return q->err ? -1 : 0;
}

static const char *state_name(enum gstate s)
{
    switch (s) {
    case G_PREPARING:
        return "PreparingRebalance";
    case G_AWAITING_SYNC:
        return "CompletingRebalance";
    case G_STABLE:
        return "Stable";
    default:
        return "Empty";
    }
}

/* ListGroups v0-v2: every group the coordinator knows (with members or committed offsets). */
int handle_list_groups(struct broker *b, struct reply *r, struct kr *q)
{
    (void)q;
    struct kw *w = &r->w;
    if (r->api_version >= 1) {
        kw_i32(w, 0);
    }
    kw_i16(w, 0);
    size_t mark = kw_mark_i32(w);
    int32_t n = 0;
    for (struct group *g = b->groups->list; g; g = g->next) {
        if (!reply_may(b, r, ACL_GROUP, g->id, ACL_DESCRIBE)) {
            continue; /* Kafka lists only the groups the principal may describe */
        }
        kw_str(w, g->id);
        kw_str(w, g->protocol_type ? g->protocol_type : "consumer");
        n++;
    }
    /* Groups known only by their committed offsets (e.g. after a restart). */
    struct groups *gs = b->groups;
    for (size_t i = 0; i < gs->n_offs; i++) {
        const char *id = gs->offs[i].group;
        int seen = group_find(gs, id, 0) != NULL;
        for (size_t k = 0; k < i && !seen; k++) {
            seen = !strcmp(gs->offs[k].group, id);
        }
        if (seen || !reply_may(b, r, ACL_GROUP, id, ACL_DESCRIBE)) {
            continue;
        }
        kw_str(w, id);
        kw_str(w, "consumer");
        n++;
    }
    kw_patch_i32(w, mark, n);
    return 0;
}

/* DescribeGroups v0-v4. */
int handle_describe_groups(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int32_t n = kr_array(q, 2);
    struct kw *w = &r->w;
    if (v >= 1) {
        kw_i32(w, 0);
    }
    kw_i32(w, n < 0 ? 0 : n);
    for (int32_t i = 0; i < n && !q->err; i++) {
        struct kstr s = kr_str(q);
        char gid[256];
        int has_gid = kstr_copy(s, gid, sizeof gid) == 0;
        int may = !has_gid || reply_allowed(b, r, ACL_GROUP, gid, ACL_DESCRIBE);
        struct group *g = has_gid && may ? group_find(b->groups, gid, 0) : NULL;
        kw_i16(w, may ? 0 : KERR_GROUP_AUTHORIZATION_FAILED);
        if (s.ptr) {
            kw_strn(w, s.ptr, (size_t)s.len);
        } else {
            kw_str(w, "");
        }
        kw_str(w, g ? state_name(g->state) : "Dead");
        kw_str(w, g && g->protocol_type ? g->protocol_type : "");
        kw_str(w, g && g->protocol && g->state != G_PREPARING ? g->protocol : "");
        size_t mark = kw_mark_i32(w);
        int32_t nm = 0;
        for (struct member *m = g ? g->members : NULL; m; m = m->next) {
            const struct protocol *p =
                g->protocol && g->state == G_STABLE ? member_protocol(m, g->protocol) : NULL;
            kw_str(w, m->id);
            if (v >= 4) {
                kw_str(w, m->instance_id);
            }
            kw_str(w, m->client_id ? m->client_id : "");
            kw_str(w, m->client_host ? m->client_host : "");
            kw_bytes(w, p ? p->meta : NULL, p ? p->meta_len : 0);
            kw_bytes(w, m->assignment, m->assignment ? m->assignment_len : 0);
            nm++;
        }
        kw_patch_i32(w, mark, nm);
        if (v >= 3) {
            kw_i32(w, INT32_MIN);
        }
    }
    if (v >= 3) {
        (void)kr_i8(q);
    }
    return q->err ? -1 : 0;
}
