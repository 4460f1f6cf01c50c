/* smtp_client.h - one email over SMTP (libcurl's smtp://). With http_client.c, the only users of
 * libcurl. Used by notify. */
#ifndef SMTP_CLIENT_H
#define SMTP_CLIENT_H

#include <stddef.h>

/* Sends message (full RFC 5322 text, CRLF lines) from -> to over url (smtp://host:port).
 * Returns 0 when the server accepted it, -1 otherwise (err says why). Blocking, for at most
 * timeout_ms; thread-safe (one curl handle per call). */
int smtp_client_send(const char *url, const char *from, const char *to, const char *message,
                     long timeout_ms, char *err, size_t err_len);

#endif
