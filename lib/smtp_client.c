/* smtp_client.c - one email over SMTP with libcurl's smtp:// (see smtp_client.h). */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "smtp_client.h"

struct upload {
    const char *data;
    size_t len, off;
};

static size_t read_cb(char *out, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t room = size * n, left = u->len - u->off;
    size_t k = left < room ? left : room;
    memcpy(out, u->data + u->off, k);
    u->off += k;
    return k;
}

int smtp_client_send(const char *url, const char *from, const char *to, const char *message,
                     long timeout_ms, char *err, size_t err_len)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, err_len, "curl init failed");
        return -1;
    }
    struct upload u = {message, strlen(message), 0};
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}
