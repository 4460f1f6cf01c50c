/* buildinfo.c - version text and the process_* metrics (see buildinfo.h).
 *
 * The process metrics follow the names Prometheus's own client libraries export, so existing
 * dashboards and alerts work unchanged: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds.
 * They are read from /proc/self at each render (a scrape every few seconds at most). */
#include "buildinfo.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto.h"
#include "db.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "kafka/kafka.h"
#include "metrics.h"

#ifndef BUS_VERSION
#define BUS_VERSION "unknown"
#endif

const char *buildinfo_version(void)
{
    return BUS_VERSION;
}

const char *buildinfo_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

void buildinfo_print(FILE *out, const char *name)
{
    fprintf(out,
            "%s %s\n"
            "compiler: %s\n"
            "librdkafka %s, libpq %s, libmicrohttpd %s, libcurl %s, jansson %s, %s\n",
            name, buildinfo_version(), buildinfo_compiler(), kafka_lib_version(), db_lib_version(),
            http_server_lib_version(), http_client_lib_version(), JANSSON_VERSION,
            crypto_lib_version());
}

static struct {
    pthread_mutex_t mu; /* one render at a time updates the CPU counter */
    double cpu_reported_s;
    struct metric *cpu, *rss, *vsize, *open_fds, *max_fds, *start_time;
} proc = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Fields of /proc/self/stat after the command name (which may hold spaces, so it is skipped to
 * its closing parenthesis): state is field 3; utime 14, stime 15, starttime 22, vsize 23,
 * rss 24 (proc(5)). Returns 0 when read. */
static int read_stat(double *cpu_s, double *start_s, double *vsize, double *rss)
{
    char text[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) {
        return -1;
    }
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')');
    if (!p) {
        return -1;
    }
    p += 2; /* ") " : p is at field 3 */
    unsigned long long field[25] = {0};
    for (int i = 3; i <= 24 && *p; i++) {
        char *end;
        field[i] = strtoull(p, &end, 10);
        if (end == p && i > 3) {
            return -1;
        }
        p = end;
        while (*p && *p != ' ') {
            p++; /* the state letter (field 3) is not a number */
        }
        while (*p == ' ') {
            p++;
        }
    }
    double ticks = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks <= 0 || page <= 0) {
        return -1;
    }
    *cpu_s = (double)(field[14] + field[15]) / ticks;
    *vsize = (double)field[23];
    *rss = (double)field[24] * (double)page;

    /* starttime is in ticks since boot: add the boot time (btime in /proc/stat). */
    double btime = 0;
    f = fopen("/proc/stat", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "btime ", 6) == 0) {
                btime = strtod(line + 6, NULL);
                break;
            }
        }
        fclose(f);
    }
    *start_s = btime + (double)field[22] / ticks;
    return 0;
}

static double count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        return -1;
    }
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n - 1; /* the descriptor opendir itself holds */
}

static void refresh(void *ctx)
{
    (void)ctx;
    double cpu_s, start_s, vsize, rss;
    pthread_mutex_lock(&proc.mu);
    if (read_stat(&cpu_s, &start_s, &vsize, &rss) == 0) {
        /* A counter only moves forward: add what was used since the last render. */
        if (cpu_s > proc.cpu_reported_s) {
            metric_add(proc.cpu, cpu_s - proc.cpu_reported_s);
            proc.cpu_reported_s = cpu_s;
        }
        metric_set(proc.vsize, vsize);
        metric_set(proc.rss, rss);
        metric_set(proc.start_time, start_s);
    }
    double fds = count_open_fds();
    if (fds >= 0) {
        metric_set(proc.open_fds, fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        metric_set(proc.max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
    }
    pthread_mutex_unlock(&proc.mu);
}

static void register_once(void)
{
    char labels[512];
    /* Label values here hold no quote or backslash (git describe, compiler and library version
     * strings), so they need no escaping. */
    snprintf(labels, sizeof labels,
             "version=\"%s\",compiler=\"%s\",librdkafka=\"%s\",libpq=\"%s\",libmicrohttpd=\"%s\"",
             buildinfo_version(), buildinfo_compiler(), kafka_lib_version(), db_lib_version(),
             http_server_lib_version());
    metric_set(
        metrics_gauge("bus_build_info", "Always 1; the labels say which build is running", labels),
        1);
    proc.cpu = metrics_counter("process_cpu_seconds_total",
                               "Total user and system CPU time spent in seconds", NULL);
    proc.rss =
        metrics_gauge("process_resident_memory_bytes", "Resident memory size in bytes", NULL);
    proc.vsize =
        metrics_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes", NULL);
    proc.open_fds = metrics_gauge("process_open_fds", "Number of open file descriptors", NULL);
    proc.max_fds = metrics_gauge("process_max_fds",
                                 "Maximum number of open file descriptors (soft limit)", NULL);
    proc.start_time =
        metrics_gauge("process_start_time_seconds",
                      "Start time of the process since the Unix epoch in seconds", NULL);
    metrics_on_render(refresh, NULL);
}

void buildinfo_register_metrics(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_once);
}
