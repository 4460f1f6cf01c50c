/* bench-baseline-202 - the yardstick of bench/publisher.sh: a minimal libmicrohttpd server that
 * reads the request body and answers 202 with a small JSON object on N polling threads, the
 * handler running on the polling thread, as in lib/http/http_server.c. It keeps libmicrohttpd's own
 * thread pool with epoll (MHD_USE_AUTO) where lib/http/http_server.c runs a select() loop per
 * thread: for a server that never suspends a connection the pool is as fast or faster (83.7k to
 * 86.2k requests/s against 81.4k to 82.3k for the same server on select() loops, three
 * alternating runs, 2026-12-06), so the yardstick stays the stronger one. The publisher's
 * request rate is reported as a fraction of this one's, measured in the same run.
 *
 * Since 2026-12-07 the product's server is its own HTTP/1.1 layer (lib/http/http_loop.c); this
 * program is the only user of libmicrohttpd left, as the yardstick.
 *
 * With --suspend it is a diagnostic instead, built like lib/http/http_server.c was on
 * libmicrohttpd: THREADS loops, each
 * a daemon of its own in external-select mode on one listening socket, and every request suspended
 * and resumed by another thread (in sweeps, like the publisher's delivery thread), which wakes
 * a loop through its eventfd only when the loop has not been woken since it last looked; then
 * answered. That is the least a server on lib/http/http_server.c pays to answer after an
 * asynchronous acknowledgement; bench/publisher.sh prints it beside the two others.
 *
 *   bench-baseline-202 PORT [THREADS] [--suspend]     (runs until SIGTERM/SIGINT) */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WAITING 4096
#define MAX_LOOPS 16

/* --suspend: one polling thread (as in lib/http/http_server.c). */
struct loop {
    struct MHD_Daemon *daemon;
    int wake_fd;
    atomic_bool is_woken;
};
static struct loop loops[MAX_LOOPS];

static const char ANSWER[] = "{\"id\":\"0190b3c4-0000-7000-8000-000000000000\",\"topic\":\"login\","
                             "\"partition\":0,\"offset\":0}";

/* --suspend: the connections waiting for the resumer thread. */
static bool suspend_mode;
static pthread_mutex_t waiting_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t waiting_cond = PTHREAD_COND_INITIALIZER;
static struct {
    struct MHD_Connection *conn;
    struct loop *loop;
} waiting[MAX_WAITING];
static size_t n_waiting;

static void loop_wake(struct loop *l)
{
    if (!atomic_exchange(&l->is_woken, true)) {
        uint64_t one = 1;
        if (write(l->wake_fd, &one, sizeof one) < 0) {
            perror("bench-baseline-202: eventfd");
        }
    }
}

static void *resumer_main(void *arg)
{
    (void)arg;
    static __typeof__(waiting) sweep;
    for (;;) {
        pthread_mutex_lock(&waiting_lock);
        while (n_waiting == 0) {
            pthread_cond_wait(&waiting_cond, &waiting_lock);
        }
        size_t n = n_waiting;
        memcpy(sweep, waiting, n * sizeof *sweep);
        n_waiting = 0;
        pthread_mutex_unlock(&waiting_lock);
        for (size_t i = 0; i < n; i++) {
            MHD_resume_connection(sweep[i].conn);
        }
        for (size_t i = 0; i < n; i++) {
            loop_wake(sweep[i].loop);
        }
    }
    return NULL;
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    for (;;) {
        fd_set rs, ws, es;
        FD_ZERO(&rs);
        FD_ZERO(&ws);
        FD_ZERO(&es);
        FD_SET(l->wake_fd, &rs);
        MHD_socket max_fd = l->wake_fd;
        MHD_get_fdset2(l->daemon, &rs, &ws, &es, &max_fd, FD_SETSIZE);
        struct timeval tv = {.tv_sec = 1};
        MHD_UNSIGNED_LONG_LONG ms;
        if (MHD_get_timeout(l->daemon, &ms) == MHD_YES && ms < 1000) {
            tv.tv_sec = 0, tv.tv_usec = (suseconds_t)ms * 1000;
        }
        int n = select(max_fd + 1, &rs, &ws, &es, &tv);
        if (n < 0) {
            FD_ZERO(&rs);
            FD_ZERO(&ws);
            FD_ZERO(&es);
        } else if (FD_ISSET(l->wake_fd, &rs)) {
            uint64_t count;
            if (read(l->wake_fd, &count, sizeof count) < 0 && errno != EAGAIN) {
                perror("bench-baseline-202: eventfd");
            }
            atomic_store(&l->is_woken, false);
        }
        MHD_run_from_select(l->daemon, &rs, &ws, &es);
    }
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls);

/* --suspend: THREADS loops on one listening socket. */
static int start_loops(const struct sockaddr_in *addr, unsigned threads)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, SOMAXCONN) != 0) {
        return -1;
    }
    for (unsigned i = 0; i < threads && i < MAX_LOOPS; i++) {
        struct loop *l = &loops[i];
        l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        l->daemon = MHD_start_daemon(MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                     on_request, l, MHD_OPTION_LISTEN_SOCKET, fd,
                                     MHD_OPTION_CONNECTION_LIMIT, 1024u / threads,
                                     MHD_OPTION_CONNECTION_TIMEOUT, 15u, MHD_OPTION_END);
        pthread_t t;
        if (l->wake_fd < 0 || l->daemon == NULL || pthread_create(&t, NULL, loop_main, l) != 0) {
            return -1;
        }
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    /* Where the request is: &reading until its body is in, &resumed once suspended (--suspend);
     * the call after the resume answers. */
    static int reading, resumed;
    if (*req_cls == NULL) {
        *req_cls = &reading;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* consume the body */
        return MHD_YES;
    }
    if (suspend_mode && *req_cls == &reading) {
        pthread_mutex_lock(&waiting_lock);
        bool room = n_waiting < MAX_WAITING;
        if (room) {
            *req_cls = &resumed;
            MHD_suspend_connection(conn);
            waiting[n_waiting].conn = conn;
            waiting[n_waiting++].loop = cls;
            pthread_cond_signal(&waiting_cond);
        }
        pthread_mutex_unlock(&waiting_lock);
        if (room) {
            return MHD_YES;
        }
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof ANSWER - 1, (void *)(uintptr_t)ANSWER, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, 202, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-baseline-202 PORT [THREADS] [--suspend]\n");
        return 2;
    }
    unsigned port = (unsigned)atoi(argv[1]);
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    suspend_mode = argc > 3 && strcmp(argv[3], "--suspend") == 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    pthread_t resumer;
    if (suspend_mode && pthread_create(&resumer, NULL, resumer_main, NULL) != 0) {
        fprintf(stderr, "bench-baseline-202: cannot start the resumer thread\n");
        return 1;
    }
    struct MHD_Daemon *d = NULL;
    if (suspend_mode
            ? start_loops(&addr, threads) != 0
            : (d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                                        MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG,
                                    0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                                    (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, threads,
                                    MHD_OPTION_CONNECTION_LIMIT, 1024u,
                                    MHD_OPTION_CONNECTION_TIMEOUT, 15u, MHD_OPTION_END)) == NULL) {
        fprintf(stderr, "bench-baseline-202: cannot listen on port %u\n", port);
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    if (d) {
        MHD_stop_daemon(d); /* the loops end with the process */
    }
    return 0;
}
