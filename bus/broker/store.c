/* store.c - the durable partition log (see store.h).
 *
 * Record batch v2 header (protocol guide, "Record Batch"):
 *   0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 |
 *   17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32 |
 *   27 firstTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 |
 *   53 baseSequence i32 | 57 recordCount i32 | 61 records...
 * baseOffset and partitionLeaderEpoch are outside the CRC, so the broker rewrites them freely. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "alloc.h"
#include "log.h"

#define INDEX_INTERVAL_BYTES 4096
#define INDEX_FLUSH_MAX 512 /* pending index entries (~2 MiB of log) written at the latest */
#define MAX_PRODUCERS_PER_PARTITION 256

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s", path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        return -1;
    }
    for (char *q = tmp + 1; *q; q++) {
        if (*q == '/') {
            *q = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *q = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *p, size_t n, uint64_t off)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int store_topic_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > STORE_MAX_NAME || !strcmp(name, ".") || !strcmp(name, "..")) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* ---- segments ---- */

static void seg_path(const struct partition *p, int64_t base, const char *ext, char *out, size_t n)
{
    int r = snprintf(out, n, "%s/%020lld.%s", p->dir, (long long)base, ext);
    if (r < 0 || (size_t)r >= n) {
        out[0] = 0;
    }
}

/* Appends the index entries not yet in the .index file (one write per INDEX_FLUSH_MAX). */
static void seg_idx_flush(struct segment *g)
{
    size_t n = g->n_idx - g->n_idx_written;
    if (n == 0) {
        return;
    }
    if (g->idx_fd >= 0) {
        uint8_t b[8 * INDEX_FLUSH_MAX];
        while (n > 0) {
            size_t k = n < INDEX_FLUSH_MAX ? n : INDEX_FLUSH_MAX;
            for (size_t i = 0; i < k; i++) {
                put_be32(b + 8 * i, g->idx[g->n_idx_written + i].rel);
                put_be32(b + 8 * i + 4, g->idx[g->n_idx_written + i].pos);
            }
            if (write_all(g->idx_fd, b, 8 * k) != 0) {
                log_warn("index write failed: %s", strerror(errno));
                break; /* the index is advisory: a damaged one is rebuilt by a scan */
            }
            g->n_idx_written += k;
            n -= k;
        }
    }
    g->n_idx_written = g->n_idx;
}

/* Adds an index entry in memory; with write_file it goes to the .index file with the next
 * seg_idx_flush (which runs every INDEX_FLUSH_MAX entries at the latest), else it is already
 * there. */
static void seg_idx_add(struct segment *g, int64_t offset, uint64_t pos, int write_file)
{
    if (g->n_idx == g->cap_idx) {
        g->cap_idx = g->cap_idx ? g->cap_idx * 2 : 16;
        g->idx = xrealloc(g->idx, g->cap_idx * sizeof *g->idx);
    }
    struct idx_entry e = {(uint32_t)(offset - g->base), (uint32_t)pos};
    g->idx[g->n_idx++] = e;
    g->last_idx_pos = pos;
    if (!write_file) {
        g->n_idx_written = g->n_idx;
    } else if (g->n_idx - g->n_idx_written >= INDEX_FLUSH_MAX) {
        seg_idx_flush(g);
    }
}

static void seg_release(struct segment *g)
{
    seg_idx_flush(g);
    if (g->fd >= 0) {
        close(g->fd);
    }
    if (g->idx_fd >= 0) {
        close(g->idx_fd);
    }
    free(g->idx);
}

static void producer_note(struct partition *p, int64_t pid, int16_t epoch, int32_t first_seq,
                          int32_t last_seq, int64_t base_offset, long long now_ms);

/* Scans a segment from the start: validates every batch (CRC when verify), rebuilds the index
 * (rewriting the .index file), truncates a torn or corrupt tail. Sets *next to the offset after
 * the last valid batch. Producer state is recovered when recover_producers. */
static int seg_scan(struct partition *p, struct segment *g, int verify, int recover_producers,
                    int64_t *next)
{
    struct stat st;
    if (fstat(g->fd, &st) != 0) {
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size, pos = 0;
    int64_t expect = g->base;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    g->n_idx = g->n_idx_written = 0;
    g->last_idx_pos = 0;
    if (g->idx_fd >= 0 && ftruncate(g->idx_fd, 0) != 0) {
        log_warn("index truncate failed: %s", strerror(errno));
    }
    const char *why = NULL;
    while (pos < size) {
        uint8_t h[STORE_BATCH_HEADER];
        if (size - pos < STORE_BATCH_HEADER || read_full(g->fd, h, sizeof h, pos) != 0) {
            why = "torn batch header";
            break;
        }
        int64_t base = be64(h);
        uint32_t blen = be32(h + 8);
        uint64_t total = 12 + (uint64_t)blen;
        int32_t last_delta = (int32_t)be32(h + 23);
        if (total < STORE_BATCH_HEADER || pos + total > size) {
            why = "torn batch";
            break;
        }
        if (h[16] != 2 || last_delta < 0 || base < expect) {
            why = "invalid batch header";
            break;
        }
        if (verify) {
            if (buf_cap < total) {
                buf_cap = total;
                buf = xrealloc(buf, buf_cap);
            }
            if (read_full(g->fd, buf, total, pos) != 0) {
                why = "read error";
                break;
            }
            if (crc32c(0, buf + 21, total - 21) != be32(h + 17)) {
                why = "CRC mismatch";
                break;
            }
        }
        if (g->n_idx == 0 || pos - g->last_idx_pos >= INDEX_INTERVAL_BYTES) {
            seg_idx_add(g, base, pos, 1);
        }
        if (recover_producers) {
            int64_t pid = be64(h + 43);
            int32_t seq = (int32_t)be32(h + 53);
            if (pid >= 0 && seq >= 0) {
                producer_note(p, pid, (int16_t)((h[51] << 8) | h[52]), seq, seq + last_delta, base,
                              0);
            }
        }
        expect = base + last_delta + 1;
        pos += total;
    }
    free(buf);
    seg_idx_flush(g);
    if (why) {
        log_warn("truncating %s segment %lld at byte %llu of %llu: %s", p->dir, (long long)g->base,
                 (unsigned long long)pos, (unsigned long long)size, why);
        if (ftruncate(g->fd, (off_t)pos) != 0) {
            return -1;
        }
        (void)fdatasync(g->fd);
    }
    g->size = pos;
    *next = expect;
    return 0;
}

/* Loads the .index file of a closed segment; returns -1 when missing or inconsistent. */
static int seg_load_index(struct segment *g)
{
    struct stat st;
    if (g->idx_fd < 0 || fstat(g->idx_fd, &st) != 0 || st.st_size == 0 || st.st_size % 8) {
        return -1;
    }
    size_t n = (size_t)st.st_size / 8;
    uint8_t *b = xmalloc((size_t)st.st_size);
    int rc = read_full(g->idx_fd, b, (size_t)st.st_size, 0);
    g->n_idx = g->n_idx_written = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct idx_entry e = {be32(b + 8 * i), be32(b + 8 * i + 4)};
        if (e.pos >= g->size ||
            (g->n_idx && (e.rel < g->idx[g->n_idx - 1].rel || e.pos <= g->idx[g->n_idx - 1].pos))) {
            rc = -1;
        } else {
            seg_idx_add(g, g->base + e.rel, e.pos, 0);
        }
    }
    free(b);
    if (rc == 0 && (g->n_idx == 0 || g->idx[0].pos != 0)) {
        rc = -1;
    }
    return rc;
}

static int seg_open(struct partition *p, struct segment *g, int64_t base, int create)
{
    char path[4200];
    memset(g, 0, sizeof *g);
    g->base = base;
    g->fd = g->idx_fd = -1;
    seg_path(p, base, "log", path, sizeof path);
    g->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (g->fd < 0) {
        return -1;
    }
    seg_path(p, base, "index", path, sizeof path);
    g->idx_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    if (fstat(g->fd, &st) == 0) {
        g->size = (uint64_t)st.st_size;
        g->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    }
    if (create) {
        g->mtime_ms = wall_ms();
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The log start offset DeleteRecords moved past the first segment's base (data/log_start), or
 * -1 when there is none. */
static int64_t log_start_load(const struct partition *p)
{
    char *path = xasprintf("%s/log_start", p->dir);
    FILE *f = fopen(path, "r");
    long long v = -1;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1) {
            v = -1;
        }
        fclose(f);
    }
    free(path);
    return v;
}

static int log_start_save(const struct partition *p, int64_t offset)
{
    char *path = xasprintf("%s/log_start", p->dir);
    char *tmp = xasprintf("%s.tmp", path);
    char text[32];
    int n = snprintf(text, sizeof text, "%lld\n", (long long)offset);
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0 && n > 0 && write_all(fd, text, (size_t)n) == 0 && fsync(fd) == 0) {
        close(fd);
        fd = -1;
        if (rename(tmp, path) == 0) {
            fsync_dir(p->dir);
            rc = 0;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rc != 0) {
        log_error("cannot write %s: %s", path, strerror(errno));
        (void)unlink(tmp);
    }
    free(tmp);
    free(path);
    return rc;
}

static int partition_load(struct partition *p)
{
    if (mkdir_p(p->dir) != 0) {
        return -1;
    }
    DIR *d = opendir(p->dir);
    if (!d) {
        return -1;
    }
    int64_t *bases = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != 24 || strcmp(e->d_name + 20, ".log") != 0) {
            continue;
        }
        char *end;
        long long v = strtoll(e->d_name, &end, 10);
        if (end != e->d_name + 20 || v < 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            bases = xrealloc(bases, cap * sizeof *bases);
        }
        bases[n++] = v;
    }
    closedir(d);
    if (n > 1) {
        qsort(bases, n, sizeof *bases, cmp_i64);
    }
    int rc = 0;
    if (n == 0) {
        p->segs = xcalloc(1, sizeof *p->segs);
        if (seg_open(p, &p->segs[0], 0, 1) != 0) {
            rc = -1;
        }
        p->n_segs = 1;
        p->next_offset = p->log_start = 0;
        free(bases);
        fsync_dir(p->dir);
        return rc;
    }
    p->segs = xcalloc(n, sizeof *p->segs);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct segment *g = &p->segs[i];
        if (seg_open(p, g, bases[i], 0) != 0) {
            rc = -1;
            break;
        }
        p->n_segs++;
        int64_t next = i + 1 < n ? bases[i + 1] : g->base;
        if (i + 1 == n) {
            if (seg_scan(p, g, 1, 1, &next) != 0) {
                rc = -1;
            }
        } else if (seg_load_index(g) != 0) {
            if (seg_scan(p, g, 1, 0, &next) != 0) {
                rc = -1;
            }
        }
        p->bytes += g->size;
        p->next_offset = next;
    }
    p->log_start = p->segs[0].base;
    free(bases);
    int64_t moved = log_start_load(p);
    if (moved > p->log_start && moved <= p->next_offset) {
        p->log_start = moved;
    }
    return rc;
}

static void partition_free(struct partition *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n_segs; i++) {
        seg_release(&p->segs[i]);
    }
    free(p->segs);
    free(p->producers);
    free(p->dir);
    free(p);
}

static struct partition *partition_new(struct store *s, struct topic *t, int32_t id)
{
    struct partition *p = xcalloc(1, sizeof *p);
    p->topic = t;
    p->id = id;
    p->dir = xasprintf("%s/%s-%d", s->dir, t->name, (int)id);
    if (partition_load(p) != 0) {
        log_error("cannot open partition directory %s: %s", p->dir, strerror(errno));
        partition_free(p);
        return NULL;
    }
    return p;
}

static void topic_free(struct topic *t)
{
    if (!t) {
        return;
    }
    for (int32_t i = 0; i < t->n_parts; i++) {
        partition_free(t->parts[i]);
    }
    free(t->parts);
    free(t);
}

/* ---- topics.json ---- */

static int store_save_topics(struct store *s)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < s->n_topics; i++) {
        struct topic *t = s->topics[i];
        json_array_append_new(
            arr, json_pack("{s:s, s:i, s:I, s:I, s:I, s:i, s:i}", "name", t->name, "partitions",
                           (int)t->n_parts, "retention_ms", (json_int_t)t->conf.retention_ms,
                           "retention_bytes", (json_int_t)t->conf.retention_bytes, "segment_bytes",
                           (json_int_t)t->conf.segment_bytes, "min_insync_replicas",
                           (int)t->conf.min_insync_replicas, "set", (int)t->conf.set_mask));
    }
    json_t *root = json_pack("{s:i, s:o}", "version", 1, "topics", arr);
    char *tmp = xasprintf("%s/topics.json.tmp", s->dir);
    char *dst = xasprintf("%s/topics.json", s->dir);
    int rc = -1;
    char *text = json_dumps(root, JSON_INDENT(1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0 && text && write_all(fd, text, strlen(text)) == 0 && fsync(fd) == 0) {
        close(fd);
        fd = -1;
        if (rename(tmp, dst) == 0) {
            fsync_dir(s->dir);
            rc = 0;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rc != 0) {
        log_error("cannot write %s: %s", dst, strerror(errno));
    }
    free(text);
    free(tmp);
    free(dst);
    json_decref(root);
    return rc;
}

static struct topic *topic_alloc(const char *name, const struct topic_conf *conf)
{
    struct topic *t = xcalloc(1, sizeof *t);
    int n = snprintf(t->name, sizeof t->name, "%s", name);
    (void)n;
    t->conf = *conf;
    return t;
}

static int topic_open_parts(struct store *s, struct topic *t, int32_t from, int32_t to)
{
    t->parts = xrealloc(t->parts, (size_t)to * sizeof *t->parts);
    for (int32_t i = from; i < to; i++) {
        t->parts[i] = partition_new(s, t, i);
        if (!t->parts[i]) {
            return -1;
        }
        t->n_parts = i + 1;
    }
    return 0;
}

static int store_load_topics(struct store *s, char *err, size_t err_len)
{
    char *path = xasprintf("%s/topics.json", s->dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    int rc = 0;
    if (!root) {
        if (access(path, F_OK) == 0) {
            snprintf(err, err_len, "cannot parse %s: %s", path, jerr.text);
            rc = -1;
        }
        free(path);
        return rc;
    }
    json_t *arr = json_object_get(root, "topics"), *v;
    size_t i;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_int_t n = json_integer_value(json_object_get(v, "partitions"));
        if (!name || !store_topic_name_valid(name) || n < 1 || n > 100000) {
            snprintf(err, err_len, "%s: bad topic entry %zu", path, i);
            rc = -1;
            break;
        }
        struct topic_conf c = s->defaults;
        json_t *x;
        if ((x = json_object_get(v, "retention_ms"))) {
            c.retention_ms = json_integer_value(x);
        }
        if ((x = json_object_get(v, "retention_bytes"))) {
            c.retention_bytes = json_integer_value(x);
        }
        if ((x = json_object_get(v, "segment_bytes")) && json_integer_value(x) > 0) {
            c.segment_bytes = json_integer_value(x);
        }
        if ((x = json_object_get(v, "min_insync_replicas")) && json_integer_value(x) > 0) {
            c.min_insync_replicas = (int32_t)json_integer_value(x);
        }
        if ((x = json_object_get(v, "set"))) {
            c.set_mask = (unsigned)json_integer_value(x);
        } else {
            /* Written before settings were told apart: what differs from the defaults. */
            c.set_mask =
                (c.retention_ms != s->defaults.retention_ms ? TOPIC_CONF_RETENTION_MS : 0) |
                (c.retention_bytes != s->defaults.retention_bytes ? TOPIC_CONF_RETENTION_BYTES
                                                                  : 0) |
                (c.segment_bytes != s->defaults.segment_bytes ? TOPIC_CONF_SEGMENT_BYTES : 0);
        }
        struct topic *t = topic_alloc(name, &c);
        s->topics = xrealloc(s->topics, (s->n_topics + 1) * sizeof *s->topics);
        s->topics[s->n_topics++] = t;
        if (topic_open_parts(s, t, 0, (int32_t)n) != 0) {
            snprintf(err, err_len, "cannot open topic %s partitions: %s", name, strerror(errno));
            rc = -1;
            break;
        }
    }
    json_decref(root);
    free(path);
    return rc;
}

int store_open(struct store *s, const char *dir, const struct topic_conf *defaults, char *err,
               size_t err_len)
{
    memset(s, 0, sizeof *s);
    s->dir = xstrdup(dir);
    s->defaults = *defaults;
    s->defaults.set_mask = 0;
    if (s->defaults.min_insync_replicas < 1) {
        s->defaults.min_insync_replicas = 1;
    }
    if (mkdir_p(dir) != 0) {
        snprintf(err, err_len, "cannot create data_dir %s: %s", dir, strerror(errno));
        return -1;
    }
    return store_load_topics(s, err, err_len);
}

void store_close(struct store *s)
{
    (void)store_sync(s);
    for (size_t i = 0; i < s->n_topics; i++) {
        topic_free(s->topics[i]);
    }
    free(s->topics);
    free(s->dirty);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

struct topic *store_topic_find(struct store *s, const char *name)
{
    for (size_t i = 0; i < s->n_topics; i++) {
        if (!strcmp(s->topics[i]->name, name)) {
            return s->topics[i];
        }
    }
    return NULL;
}

int store_topic_create(struct store *s, const char *name, int32_t n, const struct topic_conf *conf,
                       char *err, size_t err_len)
{
    if (!store_topic_name_valid(name)) {
        snprintf(err, err_len, "invalid topic name");
        return KERR_INVALID_TOPIC_EXCEPTION;
    }
    if (store_topic_find(s, name)) {
        snprintf(err, err_len, "topic %s already exists", name);
        return KERR_TOPIC_ALREADY_EXISTS;
    }
    if (n < 1 || n > 10000) {
        snprintf(err, err_len, "partition count must be 1..10000");
        return KERR_INVALID_PARTITIONS;
    }
    struct topic *t = topic_alloc(name, conf ? conf : &s->defaults);
    if (topic_open_parts(s, t, 0, n) != 0) {
        snprintf(err, err_len, "cannot create partition directories");
        topic_free(t);
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    s->topics = xrealloc(s->topics, (s->n_topics + 1) * sizeof *s->topics);
    s->topics[s->n_topics++] = t;
    if (store_save_topics(s) != 0) {
        snprintf(err, err_len, "cannot persist topic metadata");
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    log_info("created topic %s with %d partitions", name, (int)n);
    return 0;
}

static void rm_partition_dir(struct partition *p)
{
    DIR *d = opendir(p->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') {
                continue;
            }
            char *f = xasprintf("%s/%s", p->dir, e->d_name);
            (void)unlink(f);
            free(f);
        }
        closedir(d);
    }
    (void)rmdir(p->dir);
}

static void dirty_remove(struct store *s, struct partition *p)
{
    for (size_t i = 0; i < s->n_dirty; i++) {
        if (s->dirty[i] == p) {
            s->dirty[i] = s->dirty[--s->n_dirty];
            return;
        }
    }
}

int store_topic_delete(struct store *s, const char *name)
{
    for (size_t i = 0; i < s->n_topics; i++) {
        struct topic *t = s->topics[i];
        if (strcmp(t->name, name)) {
            continue;
        }
        s->topics[i] = s->topics[--s->n_topics];
        if (store_save_topics(s) != 0) {
            return KERR_UNKNOWN_SERVER_ERROR;
        }
        for (int32_t k = 0; k < t->n_parts; k++) {
            dirty_remove(s, t->parts[k]);
            rm_partition_dir(t->parts[k]);
        }
        topic_free(t);
        log_info("deleted topic %s", name);
        return 0;
    }
    return KERR_UNKNOWN_TOPIC_OR_PARTITION;
}

int store_topic_add_partitions(struct store *s, struct topic *t, int32_t new_total)
{
    if (new_total <= t->n_parts || new_total > 10000) {
        return KERR_INVALID_PARTITIONS;
    }
    int32_t old = t->n_parts;
    if (topic_open_parts(s, t, old, new_total) != 0) {
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    if (store_save_topics(s) != 0) {
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    log_info("topic %s: partitions %d -> %d", t->name, (int)old, (int)new_total);
    return 0;
}

/* ---- idempotent producers ---- */

static struct producer_state *producer_find(struct partition *p, int64_t pid)
{
    for (size_t i = 0; i < p->n_producers; i++) {
        if (p->producers[i].pid == pid) {
            return &p->producers[i];
        }
    }
    return NULL;
}

static struct producer_state *producer_get(struct partition *p, int64_t pid, long long now_ms)
{
    struct producer_state *ps = producer_find(p, pid);
    if (ps) {
        return ps;
    }
    if (p->n_producers == MAX_PRODUCERS_PER_PARTITION) {
        size_t lru = 0;
        for (size_t i = 1; i < p->n_producers; i++) {
            if (p->producers[i].last_used_ms < p->producers[lru].last_used_ms) {
                lru = i;
            }
        }
        ps = &p->producers[lru];
    } else {
        p->producers = xrealloc(p->producers, (p->n_producers + 1) * sizeof *p->producers);
        ps = &p->producers[p->n_producers++];
    }
    memset(ps, 0, sizeof *ps);
    ps->pid = pid;
    ps->epoch = -1;
    ps->last_seq = -1;
    ps->last_used_ms = now_ms;
    return ps;
}

static void producer_note(struct partition *p, int64_t pid, int16_t epoch, int32_t first_seq,
                          int32_t last_seq, int64_t base_offset, long long now_ms)
{
    struct producer_state *ps = producer_get(p, pid, now_ms);
    if (epoch != ps->epoch) {
        ps->n_recent = ps->next_recent = 0;
        ps->epoch = epoch;
    }
    ps->last_seq = last_seq;
    ps->recent[ps->next_recent].first_seq = first_seq;
    ps->recent[ps->next_recent].last_seq = last_seq;
    ps->recent[ps->next_recent].base_offset = base_offset;
    ps->next_recent = (ps->next_recent + 1) % STORE_PRODUCER_BATCHES;
    if (ps->n_recent < STORE_PRODUCER_BATCHES) {
        ps->n_recent++;
    }
    ps->last_used_ms = now_ms;
}

/* Returns 0 = new batch in sequence, 1 = duplicate (*dup_offset set), or a Kafka error.
 * A producer id the partition has no state for is accepted at any sequence (its state may have
 * been lost with an old segment), as Kafka did before KIP-360. */
static int producer_check(struct partition *p, int64_t pid, int16_t epoch, int32_t first_seq,
                          int32_t last_seq, int64_t *dup_offset)
{
    struct producer_state *ps = producer_find(p, pid);
    if (!ps) {
        return 0;
    }
    if (epoch < ps->epoch) {
        return KERR_INVALID_PRODUCER_EPOCH;
    }
    if (epoch > ps->epoch) {
        return first_seq == 0 ? 0 : KERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    }
    for (unsigned i = 0; i < ps->n_recent; i++) {
        if (ps->recent[i].first_seq == first_seq && ps->recent[i].last_seq == last_seq) {
            *dup_offset = ps->recent[i].base_offset;
            return 1;
        }
    }
    int32_t want = ps->last_seq == INT32_MAX ? 0 : ps->last_seq + 1;
    return first_seq == want ? 0 : KERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
}

/* ---- append / read ---- */

static void mark_dirty(struct store *s, struct partition *p)
{
    if (p->is_dirty) {
        return;
    }
    p->is_dirty = 1;
    if (s->n_dirty == s->cap_dirty) {
        s->cap_dirty = s->cap_dirty ? s->cap_dirty * 2 : 16;
        s->dirty = xrealloc(s->dirty, s->cap_dirty * sizeof *s->dirty);
    }
    s->dirty[s->n_dirty++] = p;
}

static int partition_roll(struct partition *p)
{
    struct segment *old = &p->segs[p->n_segs - 1];
    seg_idx_flush(old);
    if (fdatasync(old->fd) != 0) {
        return -1;
    }
    struct segment g;
    if (seg_open(p, &g, p->next_offset, 1) != 0) {
        return -1;
    }
    fsync_dir(p->dir);
    p->segs = xrealloc(p->segs, (p->n_segs + 1) * sizeof *p->segs);
    p->segs[p->n_segs++] = g;
    return 0;
}

static int append_batches(struct store *s, struct partition *p, uint8_t *data, size_t len,
                          int64_t *base_offset, long long now_ms, int is_control);

int store_append(struct store *s, struct partition *p, uint8_t *data, size_t len,
                 int64_t *base_offset, long long now_ms)
{
    return append_batches(s, p, data, len, base_offset, now_ms, 0);
}

int store_append_control(struct store *s, struct partition *p, uint8_t *data, size_t len,
                         int64_t *base_offset, long long now_ms)
{
    return append_batches(s, p, data, len, base_offset, now_ms, 1);
}

static int append_batches(struct store *s, struct partition *p, uint8_t *data, size_t len,
                          int64_t *base_offset, long long now_ms, int is_control)
{
    if (len < STORE_BATCH_HEADER) {
        return KERR_CORRUPT_MESSAGE;
    }
    /* Validate every batch before writing anything: a request is all or nothing. */
    size_t pos = 0;
    int64_t next = p->next_offset;
    int64_t pid = -1;
    int16_t epoch = 0;
    int32_t first_seq = -1, last_seq = -1;
    int n_batches = 0;
    while (pos < len) {
        uint8_t *h = data + pos;
        if (len - pos < STORE_BATCH_HEADER) {
            return KERR_CORRUPT_MESSAGE;
        }
        uint64_t total = 12 + (uint64_t)be32(h + 8);
        int32_t last_delta = (int32_t)be32(h + 23);
        if (total < STORE_BATCH_HEADER || total > len - pos) {
            return KERR_CORRUPT_MESSAGE;
        }
        if (h[16] != 2) {
            return KERR_UNSUPPORTED_VERSION;
        }
        if (last_delta < 0 || (int32_t)be32(h + 57) < 0) {
            return KERR_CORRUPT_MESSAGE;
        }
        if (crc32c(0, h + 21, total - 21) != be32(h + 17)) {
            return KERR_CORRUPT_MESSAGE;
        }
        int16_t attrs = (int16_t)((h[21] << 8) | h[22]);
        if (!(attrs & 0x20) != !is_control) { /* control batches come from the broker only */
            return KERR_INVALID_RECORD;
        }
        if (n_batches == 0) {
            pid = be64(h + 43);
            epoch = (int16_t)((h[51] << 8) | h[52]);
            first_seq = (int32_t)be32(h + 53);
        }
        if (pid >= 0 && first_seq >= 0) {
            last_seq = (int32_t)be32(h + 53) + last_delta;
        }
        put_be64(h, (uint64_t)next);
        put_be32(h + 12, 0);
        next += last_delta + 1;
        pos += total;
        n_batches++;
    }
    if (pid >= 0 && first_seq >= 0) {
        int64_t dup = 0;
        int rc = producer_check(p, pid, epoch, first_seq, last_seq, &dup);
        if (rc == 1) {
            *base_offset = dup;
            return 0;
        }
        if (rc != 0) {
            return rc;
        }
    }
    struct segment *g = &p->segs[p->n_segs - 1];
    if (g->size > 0 && g->size + len > (uint64_t)p->topic->conf.segment_bytes) {
        if (partition_roll(p) != 0) {
            log_error("%s: cannot roll segment: %s", p->dir, strerror(errno));
            return KERR_KAFKA_STORAGE_ERROR;
        }
        g = &p->segs[p->n_segs - 1];
    }
    if (g->size + len > UINT32_MAX) {
        return KERR_MESSAGE_TOO_LARGE;
    }
    if (write_all(g->fd, data, len) != 0) {
        /* A full disk or an I/O error: nothing of the request is kept (the partial write is cut
         * off), and the answer is KAFKA_STORAGE_ERROR, which clients retry as it is (librdkafka's
         * idempotent producer keeps its epoch and sequence: an unknown error made it bump the
         * epoch on every failure until the 16-bit epoch wrapped, issue 21). */
        log_error("%s: write failed: %s", p->dir, strerror(errno));
        if (ftruncate(g->fd, (off_t)g->size) != 0) {
            log_error("%s: truncate after failed write failed", p->dir);
        }
        return KERR_KAFKA_STORAGE_ERROR;
    }
    /* Index the batches just written. */
    pos = 0;
    while (pos < len) {
        uint64_t total = 12 + (uint64_t)be32(data + pos + 8);
        if (g->n_idx == 0 || g->size + pos - g->last_idx_pos >= INDEX_INTERVAL_BYTES) {
            seg_idx_add(g, be64(data + pos), g->size + pos, 1);
        }
        pos += total;
    }
    *base_offset = p->next_offset;
    if (pid >= 0 && first_seq >= 0) {
        producer_note(p, pid, epoch, first_seq, last_seq, p->next_offset, now_ms);
    }
    g->size += len;
    g->mtime_ms = wall_ms();
    p->bytes += len;
    p->next_offset = next;
    s->write_seq++;
    mark_dirty(s, p);
    return 0;
}

static size_t seg_find(const struct partition *p, int64_t offset)
{
    size_t lo = 0, hi = p->n_segs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->segs[mid].base <= offset) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Position in segment i of the batch containing offset, or the segment size when none. */
static uint64_t seg_locate(const struct segment *g, int64_t offset)
{
    uint64_t pos = 0;
    size_t lo = 0, hi = g->n_idx;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((int64_t)g->idx[mid].rel + g->base <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo > 0) {
        pos = g->idx[lo - 1].pos;
    }
    while (pos + STORE_BATCH_HEADER <= g->size) {
        uint8_t h[27];
        if (read_full(g->fd, h, sizeof h, pos) != 0) {
            return g->size;
        }
        int64_t last = be64(h) + (int32_t)be32(h + 23);
        if (last >= offset) {
            return pos;
        }
        pos += 12 + (uint64_t)be32(h + 8);
    }
    return g->size;
}

/* Finds the byte range [*start, *end) of segment *seg holding the batches from the one that
 * contains offset, whole batches up to max_bytes (at least one). Returns 0 (an empty range at the
 * log end) or OFFSET_OUT_OF_RANGE. */
static int store_range(struct partition *p, int64_t offset, int32_t max_bytes, size_t *seg,
                       uint64_t *start, uint64_t *end)
{
    *seg = 0;
    *start = *end = 0;
    if (offset < p->log_start || offset > p->next_offset) {
        return KERR_OFFSET_OUT_OF_RANGE;
    }
    if (offset == p->next_offset) {
        return 0;
    }
    for (size_t i = seg_find(p, offset); i < p->n_segs; i++) {
        struct segment *g = &p->segs[i];
        uint64_t a = seg_locate(g, offset), z = a;
        while (z + 12 <= g->size) {
            uint8_t h[12];
            if (read_full(g->fd, h, sizeof h, z) != 0) {
                break;
            }
            uint64_t total = 12 + (uint64_t)be32(h + 8);
            if (z > a && z - a + total > (uint64_t)max_bytes) {
                break;
            }
            z += total;
            if (z - a >= (uint64_t)max_bytes) {
                break;
            }
        }
        if (z > g->size) {
            z = g->size;
        }
        if (z > a) {
            *seg = i;
            *start = a;
            *end = z;
            return 0;
        }
    }
    return 0;
}

int store_read(struct store *s, struct partition *p, int64_t offset, int32_t max_bytes,
               struct kw *out)
{
    (void)s;
    size_t i;
    uint64_t a, z;
    int rc = store_range(p, offset, max_bytes, &i, &a, &z);
    if (rc != 0 || z == a) {
        return rc;
    }
    kw_reserve(out, z - a);
    if (read_full(p->segs[i].fd, out->p + out->len, z - a, a) != 0) {
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    out->len += z - a;
    return 0;
}

int store_read_ref(struct partition *p, int64_t offset, int32_t max_bytes, int *fd, uint64_t *pos,
                   uint32_t *len)
{
    size_t i;
    uint64_t a, z;
    *fd = -1;
    *pos = 0;
    *len = 0;
    int rc = store_range(p, offset, max_bytes, &i, &a, &z);
    if (rc != 0 || z == a) {
        return rc;
    }
    *fd = fcntl(p->segs[i].fd, F_DUPFD_CLOEXEC, 0);
    if (*fd < 0) {
        return KERR_UNKNOWN_SERVER_ERROR;
    }
    *pos = a;
    *len = (uint32_t)(z - a);
    return 0;
}

int64_t store_bytes_after(struct partition *p, int64_t offset)
{
    if (offset < p->log_start || offset >= p->next_offset) {
        return 0;
    }
    size_t i = seg_find(p, offset);
    int64_t n = 0;
    for (size_t k = i + 1; k < p->n_segs; k++) {
        n += (int64_t)p->segs[k].size;
    }
    /* Approximate within the first segment with the index (good enough for min_bytes). */
    const struct segment *g = &p->segs[i];
    uint64_t pos = 0;
    for (size_t k = 0; k < g->n_idx; k++) {
        if ((int64_t)g->idx[k].rel + g->base <= offset) {
            pos = g->idx[k].pos;
        }
    }
    return n + (int64_t)(g->size - pos);
}

/* A zigzag varint of a record (protocol guide, "Record"); *ok cleared past the end. */
static int64_t rec_varint(const uint8_t *p, size_t n, size_t *pos, int *ok)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= n) {
            *ok = 0;
            return 0;
        }
        uint8_t c = p[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
        }
    }
    *ok = 0;
    return 0;
}

/* The first record at offset >= from whose timestamp is >= ts among count records (the
 * records section of a batch, len bytes, uncompressed): its offset, and its timestamp in *ts_out;
 * -1 when none. */
static int64_t records_offset_for_time(const uint8_t *recs, size_t len, int32_t count, int64_t base,
                                       int64_t first_ts, int64_t from, int64_t ts, int64_t *ts_out)
{
    size_t at = 0;
    int ok = 1;
    for (int32_t i = 0; i < count && ok; i++) {
        int64_t rlen = rec_varint(recs, len, &at, &ok);
        size_t start = at;
        at++; /* attributes */
        int64_t rts = first_ts + rec_varint(recs, len, &at, &ok);
        int64_t off = base + rec_varint(recs, len, &at, &ok);
        if (!ok || rlen < 0 || start + (uint64_t)rlen > len) {
            break;
        }
        if (off >= from && rts >= ts) {
            *ts_out = rts;
            return off;
        }
        at = start + (size_t)rlen;
    }
    return -1;
}

/* The records section of a gzip batch (src, n bytes) inflated into *out (caller frees), at
 * most STORE_INFLATE_MAX bytes; its length, or -1 (corrupt, or larger than that). Several
 * concatenated gzip members are read one after the other. */
#define STORE_INFLATE_MAX (64u << 20)

static long gzip_inflate(const uint8_t *src, size_t n, uint8_t **out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
        return -1;
    }
    size_t cap = n * 4 + 256, used = 0;
    uint8_t *buf = xmalloc(cap);
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)n;
    int rc = Z_OK;
    for (;;) {
        if (used == cap) {
            if (cap >= STORE_INFLATE_MAX) {
                rc = Z_MEM_ERROR;
                break;
            }
            cap = cap * 2 > STORE_INFLATE_MAX ? STORE_INFLATE_MAX : cap * 2;
            buf = xrealloc(buf, cap);
        }
        z.next_out = buf + used;
        z.avail_out = (uInt)(cap - used);
        rc = inflate(&z, Z_NO_FLUSH);
        used = cap - z.avail_out;
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0) {
                break;
            }
            rc = inflateReset(&z); /* another member follows */
        }
        if (rc != Z_OK && !(rc == Z_BUF_ERROR && z.avail_out == 0)) {
            break;
        }
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    return (long)used;
}

/* The first record of the batch (at pos, len bytes; uncompressed or gzip) at offset >= from
 * whose timestamp is >= ts: its offset, and its timestamp in *ts_out; -1 when none, -2 when
 * the records cannot be read (a gzip batch that does not inflate). */
static int64_t batch_offset_for_time(const struct segment *g, uint64_t pos, uint32_t len,
                                     int64_t from, int64_t ts, int64_t *ts_out)
{
    uint8_t *buf = xmalloc(len);
    int64_t found = -2;
    if (read_full(g->fd, buf, len, pos) == 0) {
        int64_t base = be64(buf), first_ts = be64(buf + 27);
        int32_t count = (int32_t)be32(buf + 57);
        int codec = buf[22] & 0x07;
        if (codec == 0) {
            found = records_offset_for_time(buf + STORE_BATCH_HEADER, len - STORE_BATCH_HEADER,
                                            count, base, first_ts, from, ts, ts_out);
        } else {
            uint8_t *recs = NULL;
            long n = gzip_inflate(buf + STORE_BATCH_HEADER, len - STORE_BATCH_HEADER, &recs);
            if (n >= 0) {
                found = records_offset_for_time(recs, (size_t)n, count, base, first_ts, from, ts,
                                                ts_out);
                free(recs);
            }
        }
    }
    free(buf);
    return found;
}

int64_t store_offset_for_time(struct partition *p, int64_t ts, int64_t *ts_out)
{
    *ts_out = -1;
    for (size_t i = seg_find(p, p->log_start); i < p->n_segs; i++) {
        struct segment *g = &p->segs[i];
        uint64_t pos = i == seg_find(p, p->log_start) ? seg_locate(g, p->log_start) : 0;
        while (pos + STORE_BATCH_HEADER <= g->size) {
            uint8_t h[STORE_BATCH_HEADER];
            if (read_full(g->fd, h, sizeof h, pos) != 0) {
                break;
            }
            uint32_t len = 12 + be32(h + 8);
            if (len < STORE_BATCH_HEADER || len > g->size - pos) {
                break;
            }
            int16_t attr = (int16_t)((h[21] << 8) | h[22]);
            int64_t max_ts = be64(h + 35);
            int is_control = (attr & 0x20) != 0;
            if (!is_control && max_ts >= ts) {
                /* Log-append time (bit 3) gives every record the batch's max timestamp.
                 * Uncompressed and gzip batches are read record by record; one of another
                 * codec (snappy, lz4, zstd: no library here), or a gzip batch that does not
                 * inflate, counts as one record at its first offset with its max timestamp. */
                int codec = attr & 0x07;
                int64_t off = -2;
                if (!(attr & 0x08) && codec <= 1) {
                    off = batch_offset_for_time(g, pos, len, p->log_start, ts, ts_out);
                }
                if (off == -2) {
                    int64_t base = be64(h);
                    *ts_out = max_ts;
                    return base > p->log_start ? base : p->log_start;
                }
                if (off >= 0) {
                    return off;
                }
            }
            pos += len;
        }
    }
    return -1;
}

int store_sync(struct store *s)
{
    int n = 0;
    for (size_t i = 0; i < s->n_dirty; i++) {
        struct partition *p = s->dirty[i];
        if (fdatasync(p->segs[p->n_segs - 1].fd) != 0) {
            log_error("%s: fdatasync failed: %s", p->dir, strerror(errno));
        }
        p->is_dirty = 0;
        n++;
    }
    s->n_dirty = 0;
    return n;
}

int *store_take_dirty(struct store *s, size_t *n)
{
    *n = 0;
    if (s->n_dirty == 0) {
        return NULL;
    }
    int *fds = xmalloc(s->n_dirty * sizeof *fds);
    for (size_t i = 0; i < s->n_dirty; i++) {
        struct partition *p = s->dirty[i];
        int fd = dup(p->segs[p->n_segs - 1].fd);
        if (fd < 0) {
            /* Out of descriptors: sync here instead. */
            if (fdatasync(p->segs[p->n_segs - 1].fd) != 0) {
                log_error("%s: fdatasync failed: %s", p->dir, strerror(errno));
            }
        } else {
            fds[(*n)++] = fd;
        }
        p->is_dirty = 0;
    }
    s->n_dirty = 0;
    return fds;
}

/* Deletes the oldest segment (never the active one); the log start moves to the next
 * segment's base unless DeleteRecords already moved it further. */
static void partition_drop_first_segment(struct partition *p)
{
    struct segment *g = &p->segs[0];
    char path[4200];
    seg_path(p, g->base, "log", path, sizeof path);
    (void)unlink(path);
    seg_path(p, g->base, "index", path, sizeof path);
    (void)unlink(path);
    p->bytes -= g->size;
    seg_release(g);
    memmove(p->segs, p->segs + 1, (p->n_segs - 1) * sizeof *p->segs);
    p->n_segs--;
    if (p->segs[0].base > p->log_start) {
        p->log_start = p->segs[0].base;
    }
}

int store_delete_records(struct store *s, struct partition *p, int64_t offset)
{
    (void)s;
    if (offset == -1) {
        offset = p->next_offset;
    }
    if (offset < 0 || offset > p->next_offset) {
        return KERR_OFFSET_OUT_OF_RANGE;
    }
    if (offset <= p->log_start) {
        return 0;
    }
    if (log_start_save(p, offset) != 0) {
        return KERR_KAFKA_STORAGE_ERROR;
    }
    p->log_start = offset;
    while (p->n_segs > 1 && p->segs[1].base <= offset) {
        log_info("delete records: deleted segment %lld of %s (below offset %lld)",
                 (long long)p->segs[0].base, p->dir, (long long)offset);
        partition_drop_first_segment(p);
    }
    return 0;
}

int store_topic_set_conf(struct store *s, struct topic *t, const struct topic_conf *conf)
{
    struct topic_conf old = t->conf;
    t->conf = *conf;
    if (store_save_topics(s) != 0) {
        t->conf = old;
        return -1;
    }
    return 0;
}

int store_enforce_retention(struct store *s, long long now_wall_ms)
{
    int deleted = 0;
    for (size_t ti = 0; ti < s->n_topics; ti++) {
        struct topic *t = s->topics[ti];
        for (int32_t k = 0; k < t->n_parts; k++) {
            struct partition *p = t->parts[k];
            while (p->n_segs > 1) {
                struct segment *g = &p->segs[0];
                int too_old =
                    t->conf.retention_ms >= 0 && g->mtime_ms < now_wall_ms - t->conf.retention_ms;
                int too_big = t->conf.retention_bytes >= 0 &&
                              p->bytes - g->size >= (uint64_t)t->conf.retention_bytes;
                if (!too_old && !too_big) {
                    break;
                }
                log_info("retention: deleted segment %lld of %s (%s)", (long long)g->base, p->dir,
                         too_old ? "age" : "size");
                partition_drop_first_segment(p);
                deleted++;
            }
        }
    }
    return deleted;
}

int64_t store_bytes_before(struct partition *p, int64_t offset, int64_t end)
{
    if (offset >= end || offset < p->log_start || offset >= p->next_offset) {
        return 0;
    }
    const struct segment *g = &p->segs[seg_find(p, offset)];
    uint64_t a = seg_locate(g, offset);
    uint64_t z = end >= p->next_offset ? g->size : seg_locate(g, end);
    return z > a ? (int64_t)(z - a) : 0;
}
