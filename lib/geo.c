/* geo.c - IP → country with libmaxminddb and reference-counted hot reload (see geo.h).
 *
 * Two database layouts are read: the npm "geo-whois-asn-country" layout ({"country_code": "AU"})
 * and MaxMind's GeoLite2/GeoIP2 layout ({"country": {"iso_code": "AU"}}). */
#include "geo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "log.h"

struct geo_db {
    MMDB_s mmdb;
    atomic_int refs; /* one for being current + one per lookup in flight */
};

struct geo {
    char *path;
    pthread_mutex_t mu; /* guards cur (swap and take-reference only) */
    struct geo_db *cur; /* shared: read under mu */
    dev_t dev;          /* reload bookkeeping: touched by the reloading thread only */
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static struct geo_db *db_open(const char *path, char *err, size_t err_len)
{
    struct geo_db *db = xcalloc(1, sizeof(*db));
    int rc = MMDB_open(path, MMDB_MODE_MMAP, &db->mmdb);
    if (rc != MMDB_SUCCESS) {
        snprintf(err, err_len, "cannot open GeoIP database %s: %s%s%s", path, MMDB_strerror(rc),
                 rc == MMDB_IO_ERROR ? ": " : "", rc == MMDB_IO_ERROR ? strerror(errno) : "");
        free(db);
        return NULL;
    }
    atomic_init(&db->refs, 1);
    return db;
}

static void db_unref(struct geo_db *db)
{
    if (db && atomic_fetch_sub(&db->refs, 1) == 1) {
        MMDB_close(&db->mmdb);
        free(db);
    }
}

static struct geo_db *db_take(struct geo *g)
{
    pthread_mutex_lock(&g->mu);
    struct geo_db *db = g->cur;
    atomic_fetch_add(&db->refs, 1);
    pthread_mutex_unlock(&g->mu);
    return db;
}

static void remember_stat(struct geo *g, const struct stat *st)
{
    g->dev = st->st_dev;
    g->ino = st->st_ino;
    g->size = st->st_size;
    g->mtime = st->st_mtim;
}

struct geo *geo_new(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, err_len, "cannot open GeoIP database %s: %s", path, strerror(errno));
        return NULL;
    }
    struct geo_db *db = db_open(path, err, err_len);
    if (!db) {
        return NULL;
    }
    struct geo *g = xcalloc(1, sizeof(*g));
    g->path = xstrdup(path);
    pthread_mutex_init(&g->mu, NULL);
    g->cur = db;
    remember_stat(g, &st);
    return g;
}

void geo_free(struct geo *g)
{
    if (!g) {
        return;
    }
    db_unref(g->cur);
    pthread_mutex_destroy(&g->mu);
    free(g->path);
    free(g);
}

int geo_reload_if_changed(struct geo *g, char *err, size_t err_len)
{
    struct stat st;
    if (stat(g->path, &st) != 0) {
        snprintf(err, err_len, "cannot stat %s: %s", g->path, strerror(errno));
        return -1;
    }
    if (st.st_dev == g->dev && st.st_ino == g->ino && st.st_size == g->size &&
        st.st_mtim.tv_sec == g->mtime.tv_sec && st.st_mtim.tv_nsec == g->mtime.tv_nsec) {
        return 0;
    }
    struct geo_db *fresh = db_open(g->path, err, err_len);
    if (!fresh) {
        /* Perhaps a half-written file (a copy in progress): keep the old database and try again
         * at the next check, since the stat isn't remembered. */
        return -1;
    }
    pthread_mutex_lock(&g->mu);
    struct geo_db *old = g->cur;
    g->cur = fresh;
    pthread_mutex_unlock(&g->mu);
    db_unref(old);
    remember_stat(g, &st);
    return 1;
}

static int v4_special(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
    } ranges[] = {
        {0x00000000u, 8},  /* 0.0.0.0/8 this network */
        {0x0A000000u, 8},  /* 10/8 private */
        {0x64400000u, 10}, /* 100.64/10 CGNAT */
        {0x7F000000u, 8},  /* 127/8 loopback */
        {0xA9FE0000u, 16}, /* 169.254/16 link-local */
        {0xAC100000u, 12}, /* 172.16/12 private */
        {0xC0000000u, 24}, /* 192.0.0/24 IETF */
        {0xC0000200u, 24}, /* 192.0.2/24 TEST-NET-1 */
        {0xC0A80000u, 16}, /* 192.168/16 private */
        {0xC6120000u, 15}, /* 198.18/15 benchmarking */
        {0xC6336400u, 24}, /* 198.51.100/24 TEST-NET-2 */
        {0xCB007100u, 24}, /* 203.0.113/24 TEST-NET-3 */
        {0xE0000000u, 4},  /* 224/4 multicast */
        {0xF0000000u, 4},  /* 240/4 reserved + broadcast */
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        uint32_t mask = ranges[i].bits == 0 ? 0 : 0xFFFFFFFFu << (32 - ranges[i].bits);
        if ((a & mask) == ranges[i].net) {
            return 1;
        }
    }
    return 0;
}

static int v6_special(const unsigned char *b)
{
    static const unsigned char zero[16] = {0};
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) {
        return 1; /* :: and ::1 */
    }
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0) {
        uint32_t a =
            ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) | ((uint32_t)b[14] << 8) | b[15];
        return v4_special(a);
    }
    if ((b[0] & 0xfe) == 0xfc) {
        return 1; /* fc00::/7 unique local */
    }
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) {
        return 1; /* fe80::/10 link-local */
    }
    if (b[0] == 0xff) {
        return 1; /* ff00::/8 multicast */
    }
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) {
        return 1; /* 2001:db8::/32 documentation */
    }
    if (b[0] == 0x01 && b[1] == 0x00 && memcmp(b + 2, zero, 6) == 0) {
        return 1; /* 100::/64 discard */
    }
    return 0;
}

/* 1 = special, 0 = public, -1 = not an IP. */
static int classify(const char *ip)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        return v4_special(ntohl(a4.s_addr));
    }
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        return v6_special(a6.s6_addr);
    }
    return -1;
}

int geo_is_special(const char *ip)
{
    return classify(ip) == 1;
}

static int read_code(MMDB_entry_s *entry, char out[3])
{
    MMDB_entry_data_s data;
    int rc = MMDB_get_value(entry, &data, "country_code", NULL);
    if (rc != MMDB_SUCCESS || !data.has_data) {
        rc = MMDB_get_value(entry, &data, "country", "iso_code", NULL);
    }
    if (rc != MMDB_SUCCESS || !data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING ||
        data.data_size != 2) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        char c = data.utf8_string[i];
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        if (c < 'A' || c > 'Z') {
            return -1;
        }
        out[i] = c;
    }
    out[2] = '\0';
    return 0;
}

int geo_country(struct geo *g, const char *ip, char out[3])
{
    memcpy(out, GEO_UNKNOWN, 3);
    if (!ip || strlen(ip) > 45) {
        return -1;
    }
    int kind = classify(ip);
    if (kind < 0) {
        return -1;
    }
    if (kind == 1) {
        return 0;
    }
    /* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is looked up as the IPv4 address: not every
     * database aliases ::ffff:0:0/96 to its IPv4 tree. */
    char v4[INET_ADDRSTRLEN];
    struct in6_addr a6;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (inet_pton(AF_INET6, ip, &a6) == 1 && memcmp(a6.s6_addr, mapped, 12) == 0 &&
        inet_ntop(AF_INET, a6.s6_addr + 12, v4, sizeof(v4)) != NULL) {
        ip = v4;
    }
    struct geo_db *db = db_take(g);
    int gai_error = 0;
    int mmdb_error = MMDB_SUCCESS;
    MMDB_lookup_result_s r = MMDB_lookup_string(&db->mmdb, ip, &gai_error, &mmdb_error);
    if (gai_error == 0 && mmdb_error == MMDB_SUCCESS && r.found_entry) {
        char code[3];
        if (read_code(&r.entry, code) == 0) {
            memcpy(out, code, 3);
        }
    } else if (mmdb_error != MMDB_SUCCESS) {
        /* e.g. an IPv6 address in an IPv4-only database: unknown, not an error. */
        log_debug("geoip lookup: %s", MMDB_strerror(mmdb_error));
    }
    db_unref(db);
    return 0;
}
