/* geo.h - country of an IP address from a MaxMind-format database (the only place that includes
 * maxminddb.h), reloaded in place when the file is replaced. Used by ipcheck (every login) and
 * guard (the status API's admission answer).
 *
 * Readers never block on a reload: each lookup takes a reference to the current database under a
 * short mutex, looks up without any lock, and drops the reference; geo_reload_if_changed() opens
 * the new file first and only then swaps the pointer, so the old database is closed by whichever
 * thread drops the last reference. No request ever sees a closed database or fails because of a
 * reload. */
#ifndef GEO_H
#define GEO_H

#include <stddef.h>

#define GEO_UNKNOWN "ZZ"

struct geo;

/* Opens path; NULL with err filled when it can't be read as an MMDB. */
struct geo *geo_new(const char *path, char *err, size_t err_len);
void geo_free(struct geo *g);

/* Parses ip (IPv4 or IPv6 text). Returns -1 when it is not an IP address; otherwise 0 and writes
 * the upper-case ISO 3166-1 alpha-2 country, or "ZZ" for private, loopback, link-local, reserved,
 * documentation or multicast addresses and for addresses the database doesn't know. Thread-safe. */
int geo_country(struct geo *g, const char *ip, char out[3]);

/* stat()s the file; when its inode, size or mtime changed, opens it and swaps it in. Returns 1
 * when reloaded, 0 when unchanged, -1 when the new file can't be opened (the old one stays). */
int geo_reload_if_changed(struct geo *g, char *err, size_t err_len);

/* True when addr is in a private, loopback, link-local, reserved, documentation or multicast
 * range (exposed for tests). */
int geo_is_special(const char *ip);

#endif
