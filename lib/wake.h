/* wake.h - wake a thread that sleeps in epoll/poll, once however many times it is asked.
 *
 * An eventfd plus a "wake-up pending" flag: wake_signal() writes to the eventfd only when no
 * wake-up is pending, so a burst of signals costs one syscall; the woken thread calls
 * wake_drain() before it looks at the work it was woken for, so a signal that arrives after
 * the drain is never lost (it sets the flag again and writes again).
 *
 * Thread-safety: wake_signal() from any thread; wake_drain() from the one thread that watches
 * wake_fd(). */
#ifndef WAKE_H
#define WAKE_H

#include <stdatomic.h>

struct wake {
    int fd;
    atomic_int pending;
};

/* Creates the eventfd (non-blocking, close-on-exec). 0, or -1 with errno set. */
int wake_init(struct wake *w);
/* Wakes the watching thread unless a wake-up is already pending. */
void wake_signal(struct wake *w);
/* Called by the watching thread when wake_fd() is readable: clears the pending flag and the
 * eventfd's counter. */
void wake_drain(struct wake *w);
/* The descriptor to watch for readability (EPOLLIN / POLLIN); -1 before wake_init. */
int wake_fd(const struct wake *w);
/* Closes the eventfd; safe on a zeroed or already-closed struct wake with fd -1. */
void wake_close(struct wake *w);

#endif
