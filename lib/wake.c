/* wake.c - see wake.h. */
#include "wake.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int wake_init(struct wake *w)
{
    atomic_init(&w->pending, 0);
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return w->fd < 0 ? -1 : 0;
}

void wake_signal(struct wake *w)
{
    if (atomic_exchange_explicit(&w->pending, 1, memory_order_acq_rel) != 0) {
        return;
    }
    uint64_t one = 1;
    /* EAGAIN means the counter is at its maximum: the thread is woken anyway. */
    (void)!write(w->fd, &one, sizeof one);
}

void wake_drain(struct wake *w)
{
    /* Clear the flag first: a signal racing with this drain then writes again, and the
     * next epoll_wait returns at once instead of the wake-up being swallowed. */
    atomic_store_explicit(&w->pending, 0, memory_order_release);
    uint64_t v;
    (void)!read(w->fd, &v, sizeof v);
}

int wake_fd(const struct wake *w)
{
    return w->fd;
}

void wake_close(struct wake *w)
{
    if (w->fd >= 0) {
        close(w->fd);
    }
    w->fd = -1;
}
