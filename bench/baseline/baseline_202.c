/* bench-baseline-202 - the yardstick of bench/publisher.sh: a minimal libmicrohttpd server that
 * reads the request body and answers 202 with a small JSON object, using the same threading
 * model as lib/http_server.c (internal polling thread pool, N threads). It keeps epoll
 * (MHD_USE_AUTO) where lib/http_server.c uses poll(): a server that never suspends a
 * connection does as well or better with epoll (91k against 84k requests/s, three runs each),
 * so the yardstick stays the stronger one. The publisher's request rate is reported as a
 * fraction of this one's, measured in the same run.
 *
 * With --suspend it is a diagnostic instead: every request is suspended and resumed by another
 * thread (in sweeps, like the publisher's delivery thread), with poll() like lib/http_server.c,
 * then answered. That is the least any libmicrohttpd server pays to answer after an
 * asynchronous acknowledgement; bench/publisher.sh prints it beside the two others.
 *
 *   bench-baseline-202 PORT [THREADS] [--suspend]     (runs until SIGTERM/SIGINT) */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define MAX_WAITING 4096

static const char ANSWER[] = "{\"id\":\"0190b3c4-0000-7000-8000-000000000000\",\"topic\":\"login\","
                             "\"partition\":0,\"offset\":0}";

/* --suspend: the connections waiting for the resumer thread. */
static bool suspend_mode;
static pthread_mutex_t waiting_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t waiting_cond = PTHREAD_COND_INITIALIZER;
static struct MHD_Connection *waiting[MAX_WAITING];
static size_t n_waiting;

static void *resumer_main(void *arg)
{
    (void)arg;
    static struct MHD_Connection *sweep[MAX_WAITING];
    for (;;) {
        pthread_mutex_lock(&waiting_lock);
        while (n_waiting == 0)
            pthread_cond_wait(&waiting_cond, &waiting_lock);
        size_t n = n_waiting;
        memcpy(sweep, waiting, n * sizeof *sweep);
        n_waiting = 0;
        pthread_mutex_unlock(&waiting_lock);
        for (size_t i = 0; i < n; i++)
            MHD_resume_connection(sweep[i]);
    }
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)cls;
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
            waiting[n_waiting++] = conn;
            pthread_cond_signal(&waiting_cond);
        }
        pthread_mutex_unlock(&waiting_lock);
        if (room)
            return MHD_YES;
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
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | (suspend_mode ? MHD_USE_POLL : MHD_USE_AUTO) |
            MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG,
        0, NULL, NULL,
        on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, 1024u,
        MHD_OPTION_CONNECTION_TIMEOUT, 15u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bench-baseline-202: cannot listen on port %u\n", port);
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
