/* notify.h - the notify process's parts (see main.c for the overview). */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <stddef.h>

/* Sends message (full RFC 5322 text, CRLF lines) from -> to over url (smtp://host:port).
 * Returns 0 when the server accepted it, -1 otherwise (err says why). */
int smtp_send(const char *url, const char *from, const char *to, const char *message,
              long timeout_ms, char *err, size_t err_len);

#endif
