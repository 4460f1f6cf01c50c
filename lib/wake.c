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
    /* Read first, then clear the flag. A signal before the clear finds the flag set and writes
     * nothing, but its work is already there for this thread, which looks after this call; a
     * signal after the clear writes again. Clearing first would lose wake-ups for good: a signal
     * between the clear and the read would set the flag and write, the read would take its
     * count, and the flag would stay set with nothing left to wake the thread. The exchange
     * (acquire) pairs with wake_signal's, so the work of a signal that wrote nothing is seen. */
    uint64_t v;
    (void)!read(w->fd, &v, sizeof v);
    atomic_exchange_explicit(&w->pending, 0, memory_order_acq_rel);
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
