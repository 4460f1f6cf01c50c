/* sasl.c - SASL/SCRAM and PLAIN authentication of Kafka connections (see sasl.h).
 *
 * Protocol: SaslHandshake v1 names the mechanism; then SaslAuthenticate v0-v2 carries the
 * mechanism's messages (KIP-152; Kafka's SaslServerAuthenticator). SCRAM-SHA-256/512 follow
 * RFC 5802/7677 through lib/crypto_scram; the users file holds what Kafka's ScramCredential
 * holds (salt, iterations, StoredKey, ServerKey). PLAIN, only when sasl.plain is set, derives
 * the StoredKey from the password sent and compares it with the stored one: no password is ever
 * kept. */
#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "crypto.h"
#include "log.h"
#include "metrics.h"

#define API_SASL_HANDSHAKE 17
#define API_SASL_AUTHENTICATE 36
#define API_API_VERSIONS 18
#define SASL_NAME_MAX 255

struct sasl_user {
    char *name;
    int has[2]; /* by enum scram_hash */
    struct scram_credential cred[2];
};

struct sasl_users {
    struct sasl_user *v;
    size_t n;
};

/* bus_broker_sasl_auth_total{mechanism, result}: [mech][ok] */
static struct metric *m_auth[4][2];

static const char *mech_name(enum sasl_mech m)
{
    switch (m) {
    case SASL_MECH_PLAIN:
        return "PLAIN";
    case SASL_MECH_SCRAM_SHA256:
        return "SCRAM-SHA-256";
    case SASL_MECH_SCRAM_SHA512:
        return "SCRAM-SHA-512";
    default:
        return "NONE";
    }
}

static void count_auth(enum sasl_mech m, int ok)
{
    if (m == SASL_MECH_NONE) {
        return;
    }
    if (!m_auth[m][ok]) {
        char labels[96];
        snprintf(labels, sizeof labels, "mechanism=\"%s\",result=\"%s\"", mech_name(m),
                 ok ? "ok" : "failed");
        m_auth[m][ok] = metrics_counter("bus_broker_sasl_auth_total",
                                        "SASL authentications by mechanism and result", labels);
    }
    metric_inc(m_auth[m][ok]);
}

/* ---- users file ---- */

static int name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SASL_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int b64_field(json_t *obj, const char *key, unsigned char *out, size_t cap, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        return -1;
    }
    long n = crypto_base64_decode(json_string_value(v), json_string_length(v), out, cap);
    if (n <= 0) {
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

static int load_cred(json_t *o, enum scram_hash h, struct scram_credential *c, char *err,
                     size_t err_len, const char *user)
{
    const char *mech = scram_mechanism_name(h);
    memset(c, 0, sizeof *c);
    c->hash = h;
    json_t *it = json_object_get(o, "iterations");
    size_t hl = scram_hash_len(h), n1 = 0, n2 = 0;
    if (!json_is_object(o) || !json_is_integer(it) ||
        json_integer_value(it) < SCRAM_MIN_ITERATIONS ||
        json_integer_value(it) > SCRAM_MAX_ITERATIONS) {
        snprintf(err, err_len, "user %s, %s: iterations must be %d..%d", user, mech,
                 SCRAM_MIN_ITERATIONS, SCRAM_MAX_ITERATIONS);
        return -1;
    }
    c->iterations = (int)json_integer_value(it);
    if (b64_field(o, "salt", c->salt, sizeof c->salt, &c->salt_len) != 0) {
        snprintf(err, err_len, "user %s, %s: salt must be base64 of 1..64 bytes", user, mech);
        return -1;
    }
    if (b64_field(o, "stored_key", c->stored_key, sizeof c->stored_key, &n1) != 0 || n1 != hl ||
        b64_field(o, "server_key", c->server_key, sizeof c->server_key, &n2) != 0 || n2 != hl) {
        snprintf(err, err_len, "user %s, %s: stored_key and server_key must be base64 of %zu bytes",
                 user, mech, hl);
        return -1;
    }
    return 0;
}

void sasl_users_free(struct sasl_users *u)
{
    if (!u) {
        return;
    }
    for (size_t i = 0; i < u->n; i++) {
        free(u->v[i].name);
    }
    crypto_cleanse(u->v, u->n * sizeof *u->v);
    free(u->v);
    free(u);
}

size_t sasl_users_count(const struct sasl_users *u)
{
    return u ? u->n : 0;
}

int sasl_users_load(const char *path, struct sasl_users **out, char *err, size_t err_len)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    *out = NULL;
    if (!root) {
        snprintf(err, err_len, "%s: %s (line %d)", path, je.text, je.line);
        return -1;
    }
    struct sasl_users *u = xcalloc(1, sizeof *u);
    json_t *users = json_object_get(root, "users");
    int rc = -1;
    if (!json_is_object(users)) {
        snprintf(err, err_len, "%s: expected {\"users\": {NAME: {MECHANISM: {...}}}}", path);
        goto out;
    }
    u->v = xcalloc(json_object_size(users) + 1, sizeof *u->v);
    const char *name;
    json_t *entry;
    json_object_foreach(users, name, entry)
    {
        char why[256];
        if (!name_valid(name) || !json_is_object(entry)) {
            snprintf(err, err_len, "%s: bad user entry \"%.64s\"", path, name);
            goto out;
        }
        struct sasl_user *su = &u->v[u->n++];
        su->name = xstrdup(name);
        const char *mech;
        json_t *o;
        json_object_foreach(entry, mech, o)
        {
            enum scram_hash h;
            if (scram_mechanism_parse(mech, &h) != 0) {
                snprintf(err, err_len, "%s: user %s: unknown mechanism \"%.32s\"", path, name,
                         mech);
                goto out;
            }
            if (load_cred(o, h, &su->cred[h], why, sizeof why, name) != 0) {
                snprintf(err, err_len, "%s: %s", path, why);
                goto out;
            }
            su->has[h] = 1;
        }
        if (!su->has[0] && !su->has[1]) {
            snprintf(err, err_len, "%s: user %s has no credential", path, name);
            goto out;
        }
    }
    rc = 0;
    *out = u;
out:
    json_decref(root);
    if (rc != 0) {
        sasl_users_free(u);
    }
    return rc;
}

static const struct sasl_user *users_find(const struct sasl_users *u, const char *name)
{
    for (size_t i = 0; u && i < u->n; i++) {
        if (!strcmp(u->v[i].name, name)) {
            return &u->v[i];
        }
    }
    return NULL;
}

json_t *sasl_user_entry_new(const char *name, const char *password, int iterations)
{
    if (!name_valid(name) || iterations < SCRAM_MIN_ITERATIONS ||
        iterations > SCRAM_MAX_ITERATIONS) {
        return NULL;
    }
    json_t *mechs = json_object();
    for (int h = 0; h < 2; h++) {
        unsigned char salt[32];
        struct scram_credential c;
        char s[64], sk[100], vk[100];
        if (crypto_random_bytes(salt, sizeof salt) != 0 ||
            scram_credential_derive((enum scram_hash)h, password, strlen(password), salt,
                                    sizeof salt, iterations, &c) != 0) {
            json_decref(mechs);
            return NULL;
        }
        size_t hl = scram_hash_len((enum scram_hash)h);
        crypto_base64_encode(salt, sizeof salt, s, sizeof s);
        crypto_base64_encode(c.stored_key, hl, sk, sizeof sk);
        crypto_base64_encode(c.server_key, hl, vk, sizeof vk);
        json_object_set_new(mechs, scram_mechanism_name((enum scram_hash)h),
                            json_pack("{s:s, s:i, s:s, s:s}", "salt", s, "iterations", iterations,
                                      "stored_key", sk, "server_key", vk));
        crypto_cleanse(&c, sizeof c);
    }
    json_t *entry = json_object();
    json_object_set_new(entry, name, mechs);
    return entry;
}

/* ---- sessions ---- */

void sasl_session_init(struct sasl_session *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->principal, sizeof s->principal, "%s", SASL_ANONYMOUS);
}

void sasl_session_release(struct sasl_session *s)
{
    if (s->scram) {
        scram_server_release(s->scram);
        free(s->scram);
        s->scram = NULL;
    }
}

int sasl_may_serve(const struct broker *b, const struct sasl_session *s, int16_t api_key)
{
    if (s->state == SASL_AUTHENTICATED) {
        return 1;
    }
    if (api_key == API_API_VERSIONS || api_key == API_SASL_HANDSHAKE ||
        api_key == API_SASL_AUTHENTICATE) {
        return 1;
    }
    /* Halfway through a handshake nothing else is served, required or not (Kafka: "Unexpected
     * Kafka request of type ... during SASL handshake"). */
    if (s->state != SASL_START) {
        return 0;
    }
    return !b->opt.is_sasl_required;
}

int security_load(struct broker *b, int is_initial, char *err, size_t err_len)
{
    const char *path = b->opt.sasl_users_file;
    struct sasl_users *u = NULL;
    int rc = 0;
    if (path && path[0] && sasl_users_load(path, &u, err, err_len) != 0) {
        if (is_initial) {
            return -1;
        }
        log_error("reload: keeping the previous users: %s", err);
        rc = -1;
    } else {
        sasl_users_free(b->users);
        b->users = u;
        if (path && path[0]) {
            log_info("users file %s: %zu users", path, sasl_users_count(u));
        }
    }
    path = b->opt.acl_file;
    struct acl_set *a = NULL;
    if (path && path[0] && acl_set_load(path, &a, err, err_len) != 0) {
        if (is_initial) {
            return -1;
        }
        log_error("reload: keeping the previous ACLs: %s", err);
        rc = -1;
    } else {
        acl_set_free(b->acls);
        b->acls = a;
        if (path && path[0]) {
            log_info("ACL file %s: %zu rules", path, acl_set_count(a));
        }
    }
    return rc;
}

void security_release(struct broker *b)
{
    sasl_users_free(b->users);
    b->users = NULL;
    acl_set_free(b->acls);
    b->acls = NULL;
}

/* bus_broker_acl_denied_total{operation, resource} */
static struct metric *m_denied[ACL_N_OPS][ACL_N_RESOURCES];

int reply_may(struct broker *b, struct reply *r, enum acl_resource res, const char *name,
              enum acl_op op)
{
    if (!b->acls) {
        return 1;
    }
    return acl_set_allows(b->acls, reply_session(r)->principal, res, name, op);
}

int reply_allowed(struct broker *b, struct reply *r, enum acl_resource res, const char *name,
                  enum acl_op op)
{
    if (reply_may(b, r, res, name, op)) {
        return 1;
    }
    if (!m_denied[op][res]) {
        char labels[96];
        snprintf(labels, sizeof labels, "operation=\"%s\",resource=\"%s\"", acl_op_name(op),
                 acl_resource_name(res));
        m_denied[op][res] = metrics_counter("bus_broker_acl_denied_total",
                                            "Requests denied by the ACLs, by operation and "
                                            "resource type",
                                            labels);
    }
    metric_inc(m_denied[op][res]);
    /* Debug only: a client retrying a denied request would flood the log otherwise. */
    log_debug("denied %s on %s %s to %s from %s", acl_op_name(op), acl_resource_name(res),
              name ? name : "", reply_session(r)->principal, reply_peer(r));
    return 0;
}

/* ---- SaslHandshake v0-v1 ---- */

static void write_mechanisms(struct broker *b, struct kw *w)
{
    kw_i32(w, b->opt.is_sasl_plain ? 3 : 2);
    kw_str(w, "SCRAM-SHA-256");
    kw_str(w, "SCRAM-SHA-512");
    if (b->opt.is_sasl_plain) {
        kw_str(w, "PLAIN");
    }
}

int handle_sasl_handshake(struct broker *b, struct reply *r, struct kr *q)
{
    struct kstr m = kr_str(q);
    if (q->err) {
        return -1;
    }
    struct sasl_session *s = reply_session(r);
    char mech[32] = "";
    (void)kstr_copy(m, mech, sizeof mech);
    int err = 0;
    if (s->state != SASL_START) {
        err = KERR_ILLEGAL_SASL_STATE;
    } else if (!strcmp(mech, "SCRAM-SHA-256")) {
        s->mech = SASL_MECH_SCRAM_SHA256;
    } else if (!strcmp(mech, "SCRAM-SHA-512")) {
        s->mech = SASL_MECH_SCRAM_SHA512;
    } else if (!strcmp(mech, "PLAIN") && b->opt.is_sasl_plain) {
        s->mech = SASL_MECH_PLAIN;
    } else {
        err = KERR_UNSUPPORTED_SASL_MECHANISM;
    }
    kw_i16(&r->w, (int16_t)err);
    write_mechanisms(b, &r->w);
    if (err) {
        log_warn("SASL handshake from %s refused: %s \"%s\"", reply_peer(r),
                 err == KERR_ILLEGAL_SASL_STATE ? "repeated handshake" : "unsupported mechanism",
                 mech);
        reply_close_after(r);
        return 0;
    }
    s->state = SASL_MECHANISM;
    /* v0: the mechanism's messages follow as bare length-prefixed frames (before KIP-152). */
    s->is_raw = r->api_version == 0;
    return 0;
}

/* ---- SaslAuthenticate v0-v2 ---- */

/* PLAIN (RFC 4616): "[authzid] NUL authcid NUL passwd", checked against the user's salted
 * credential (SHA-256 when the user has one). Returns 0 and the user name, or -1. */
static int plain_check(struct broker *b, const uint8_t *p, size_t n, char *user, size_t user_len,
                       char *why, size_t why_len)
{
    const uint8_t *z1 = memchr(p, 0, n);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - p)) : NULL;
    if (!z1 || !z2) {
        snprintf(why, why_len, "malformed PLAIN message");
        return -1;
    }
    size_t alen = (size_t)(z1 - p), ulen = (size_t)(z2 - z1 - 1), plen = n - (size_t)(z2 + 1 - p);
    if (ulen == 0 || ulen >= user_len || (alen && (alen != ulen || memcmp(p, z1 + 1, ulen)))) {
        snprintf(why, why_len, "bad user or authorization id");
        return -1;
    }
    memcpy(user, z1 + 1, ulen);
    user[ulen] = 0;
    const struct sasl_user *u = users_find(b->users, user);
    if (!u) {
        snprintf(why, why_len, "unknown user");
        return -1;
    }
    const struct scram_credential *c =
        u->has[SCRAM_SHA256] ? &u->cred[SCRAM_SHA256] : &u->cred[SCRAM_SHA512];
    struct scram_credential got;
    if (scram_credential_derive(c->hash, (const char *)z2 + 1, plen, c->salt, c->salt_len,
                                c->iterations, &got) != 0) {
        snprintf(why, why_len, "cannot derive the key");
        return -1;
    }
    int ok = crypto_equal(got.stored_key, scram_hash_len(c->hash), c->stored_key,
                          scram_hash_len(c->hash));
    crypto_cleanse(&got, sizeof got);
    if (!ok) {
        snprintf(why, why_len, "invalid credentials");
        return -1;
    }
    return 0;
}

/* One SCRAM step; writes the server's message into out. Returns 1 when authenticated, 0 to go
 * on, -1 on failure (why filled). */
static int scram_step(struct broker *b, struct sasl_session *s, const uint8_t *p, size_t n,
                      char *out, size_t out_len, char *why, size_t why_len)
{
    enum scram_hash h = s->mech == SASL_MECH_SCRAM_SHA512 ? SCRAM_SHA512 : SCRAM_SHA256;
    if (s->state == SASL_MECHANISM) {
        char user[SASL_NAME_MAX + 1];
        s->scram = xcalloc(1, sizeof *s->scram);
        if (scram_server_client_first(s->scram, (const char *)p, n, user, sizeof user) != 0) {
            snprintf(why, why_len, "%s", s->scram->err);
            return -1;
        }
        const struct sasl_user *u = users_find(b->users, user);
        if (!u || !u->has[h]) {
            snprintf(why, why_len, "unknown user");
            return -1;
        }
        if (scram_server_first(s->scram, &u->cred[h], NULL, out, out_len) != 0) {
            snprintf(why, why_len, "%s", s->scram->err);
            return -1;
        }
        snprintf(s->principal, sizeof s->principal, "User:%s", user);
        s->state = SASL_SCRAM_FIRST;
        return 0;
    }
    if (scram_server_final(s->scram, (const char *)p, n, out, out_len) != 0) {
        snprintf(why, why_len, "%s", s->scram->err);
        return -1;
    }
    return 1;
}

/* One authentication step on auth bytes p: returns 1 when authenticated, 0 to go on (out is the
 * server's message), -1 for bad credentials, -2 for a step out of order (why filled). */
static int auth_step(struct broker *b, struct sasl_session *s, const uint8_t *p, size_t n,
                     char *out, size_t out_len, char *why, size_t why_len)
{
    if (s->state != SASL_MECHANISM && s->state != SASL_SCRAM_FIRST) {
        snprintf(why, why_len, "SaslAuthenticate before SaslHandshake or after authentication");
        return -2;
    }
    if (s->mech != SASL_MECH_PLAIN) {
        return scram_step(b, s, p, n, out, out_len, why, why_len);
    }
    char user[SASL_NAME_MAX + 1];
    if (plain_check(b, p, n, user, sizeof user, why, why_len) != 0) {
        return -1;
    }
    snprintf(s->principal, sizeof s->principal, "User:%s", user);
    return 1;
}

static void auth_done(struct sasl_session *s, struct reply *r, int rc, const char *why)
{
    if (rc < 0) {
        count_auth(s->mech, 0);
        log_warn("SASL %s authentication from %s (%s) failed: %s", mech_name(s->mech),
                 reply_peer(r), s->principal, why);
        snprintf(s->principal, sizeof s->principal, "%s", SASL_ANONYMOUS);
        sasl_session_release(s);
        reply_close_after(r);
    } else if (rc == 1) {
        count_auth(s->mech, 1);
        s->state = SASL_AUTHENTICATED;
        s->is_raw = 0;
        sasl_session_release(s);
        log_info("%s authenticated %s from %s", mech_name(s->mech), s->principal, reply_peer(r));
    }
}

int sasl_raw_authenticate(struct broker *b, struct reply *r, const uint8_t *p, size_t n)
{
    struct sasl_session *s = reply_session(r);
    char out[1024] = "", why[200] = "";
    int rc = auth_step(b, s, p, n, out, sizeof out, why, sizeof why);
    auth_done(s, r, rc, why);
    if (rc < 0) {
        return -1; /* no answer: Kafka closes the connection of a failed v0 exchange */
    }
    kw_raw(&r->w, out, strlen(out));
    return 0;
}

int handle_sasl_authenticate(struct broker *b, struct reply *r, struct kr *q)
{
    int16_t v = r->api_version;
    int32_t n = 0;
    const uint8_t *p;
    if (v >= 2) {
        /* COMPACT_BYTES: length + 1 as an unsigned varint. */
        uint64_t len1 = kr_uvarint(q);
        n = len1 ? (int32_t)(len1 - 1) : -1;
        p = q->p + q->pos;
        if (len1 == 0 || len1 - 1 > q->len - q->pos) {
            q->err = 1;
            return -1;
        }
        q->pos += (size_t)(len1 - 1);
        kr_skip_tagged(q);
    } else {
        p = kr_bytes(q, &n);
    }
    if (q->err || !p || n < 0) {
        return -1;
    }
    struct sasl_session *s = reply_session(r);
    char out[1024] = "", why[200] = "";
    int rc = auth_step(b, s, p, (size_t)n, out, sizeof out, why, sizeof why);
    struct kw *w = &r->w;
    if (v >= 2) {
        kw_uvarint(w, 0); /* response header v1: tagged fields (flexible version) */
    }
    int16_t err = rc == -2 ? KERR_ILLEGAL_SASL_STATE : rc < 0 ? KERR_SASL_AUTHENTICATION_FAILED : 0;
    char msg[256];
    /* Kafka's own wording, which clients show to the user. */
    snprintf(msg, sizeof msg,
             "Authentication failed during authentication due to invalid credentials with SASL "
             "mechanism %s",
             mech_name(s->mech));
    kw_i16(w, err);
    if (v >= 2) {
        if (err) {
            kw_compact_str(w, rc == -2 ? why : msg);
        } else {
            kw_uvarint(w, 0);
        }
        kw_uvarint(w, strlen(out) + 1);
        kw_raw(w, out, strlen(out));
    } else {
        kw_str(w, err ? (rc == -2 ? why : msg) : NULL);
        kw_bytes(w, out, (int32_t)strlen(out));
    }
    if (v >= 1) {
        kw_i64(w, 0); /* session_lifetime_ms: no re-authentication (KIP-368) */
    }
    if (v >= 2) {
        kw_uvarint(w, 0);
    }
    auth_done(s, r, rc, why);
    return 0;
}
