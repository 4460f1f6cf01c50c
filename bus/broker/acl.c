/* acl.c - the ACL file and the authorization decision (see acl.h). */
#include "acl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define ACL_ALL_OPS ((1u << ACL_N_OPS) - 1)

static const char *const OP_NAMES[ACL_N_OPS] = {
    "Read",     "Write",           "Create",       "Delete",          "Alter",
    "Describe", "DescribeConfigs", "AlterConfigs", "IdempotentWrite",
};
static const char *const RES_NAMES[ACL_N_RESOURCES] = {"topic", "group", "cluster",
                                                       "transactional_id"};

struct acl_rule {
    char *principal; /* "User:NAME" or "User:*" */
    enum acl_resource res;
    char *name; /* NULL for the cluster */
    int is_prefixed;
    int is_deny;
    unsigned ops; /* bit per enum acl_op */
};

struct acl_set {
    char **supers;
    size_t n_supers;
    struct acl_rule *rules;
    size_t n_rules;
};

const char *acl_op_name(enum acl_op op)
{
    return OP_NAMES[op];
}

const char *acl_resource_name(enum acl_resource res)
{
    return RES_NAMES[res];
}

void acl_set_free(struct acl_set *a)
{
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->n_supers; i++) {
        free(a->supers[i]);
    }
    for (size_t i = 0; i < a->n_rules; i++) {
        free(a->rules[i].principal);
        free(a->rules[i].name);
    }
    free(a->supers);
    free(a->rules);
    free(a);
}

size_t acl_set_count(const struct acl_set *a)
{
    return a ? a->n_rules : 0;
}

static int principal_valid(const char *p)
{
    return !strncmp(p, "User:", 5) && p[5] && strlen(p) < 300;
}

static int parse_rule(json_t *o, struct acl_rule *r, char *err, size_t err_len)
{
    const char *principal = json_string_value(json_object_get(o, "principal"));
    const char *res = json_string_value(json_object_get(o, "resource"));
    json_t *name = json_object_get(o, "name");
    json_t *pattern = json_object_get(o, "pattern");
    json_t *perm = json_object_get(o, "permission");
    json_t *ops = json_object_get(o, "operations");
    if (!json_is_object(o) || !principal || !principal_valid(principal)) {
        snprintf(err, err_len, "\"principal\" must be \"User:NAME\" or \"User:*\"");
        return -1;
    }
    r->principal = xstrdup(principal);
    int k;
    for (k = 0; k < ACL_N_RESOURCES; k++) {
        if (res && !strcmp(res, RES_NAMES[k])) {
            break;
        }
    }
    if (k == ACL_N_RESOURCES) {
        snprintf(err, err_len, "\"resource\" must be topic, group, cluster or transactional_id");
        return -1;
    }
    r->res = (enum acl_resource)k;
    if (r->res != ACL_CLUSTER) {
        if (!json_is_string(name) || !json_string_length(name)) {
            snprintf(err, err_len, "\"name\" must be a non-empty string (\"*\" for every one)");
            return -1;
        }
        r->name = xstrdup(json_string_value(name));
    }
    if (pattern &&
        !(json_is_string(pattern) && (!strcmp(json_string_value(pattern), "literal") ||
                                      !strcmp(json_string_value(pattern), "prefixed")))) {
        snprintf(err, err_len, "\"pattern\" must be literal or prefixed");
        return -1;
    }
    r->is_prefixed = pattern && !strcmp(json_string_value(pattern), "prefixed");
    if (perm && !(json_is_string(perm) && (!strcmp(json_string_value(perm), "allow") ||
                                           !strcmp(json_string_value(perm), "deny")))) {
        snprintf(err, err_len, "\"permission\" must be allow or deny");
        return -1;
    }
    r->is_deny = perm && !strcmp(json_string_value(perm), "deny");
    if (!json_is_array(ops) || json_array_size(ops) == 0) {
        snprintf(err, err_len, "\"operations\" must be a non-empty array");
        return -1;
    }
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        const char *s = json_string_value(op);
        if (s && !strcmp(s, "All")) {
            r->ops = ACL_ALL_OPS;
            continue;
        }
        int j;
        for (j = 0; j < ACL_N_OPS; j++) {
            if (s && !strcmp(s, OP_NAMES[j])) {
                break;
            }
        }
        if (j == ACL_N_OPS) {
            snprintf(err, err_len, "unknown operation \"%.40s\"", s ? s : "(not a string)");
            return -1;
        }
        r->ops |= 1u << j;
    }
    return 0;
}

int acl_set_load(const char *path, struct acl_set **out, char *err, size_t err_len)
{
    json_error_t je;
    *out = NULL;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, err_len, "%s: %s (line %d)", path, je.text, je.line);
        return -1;
    }
    struct acl_set *a = xcalloc(1, sizeof *a);
    json_t *supers = json_object_get(root, "super_users");
    json_t *acls = json_object_get(root, "acls");
    int rc = -1;
    if (!json_is_object(root) || (supers && !json_is_array(supers)) || !json_is_array(acls)) {
        snprintf(err, err_len, "%s: expected {\"super_users\": [...], \"acls\": [...]}", path);
        goto out;
    }
    a->supers = xcalloc(json_array_size(supers) + 1, sizeof *a->supers);
    size_t i;
    json_t *v;
    json_array_foreach(supers, i, v)
    {
        if (!json_is_string(v) || !principal_valid(json_string_value(v))) {
            snprintf(err, err_len, "%s: super_users[%zu] must be \"User:NAME\"", path, i);
            goto out;
        }
        a->supers[a->n_supers++] = xstrdup(json_string_value(v));
    }
    a->rules = xcalloc(json_array_size(acls) + 1, sizeof *a->rules);
    json_array_foreach(acls, i, v)
    {
        char why[160];
        if (parse_rule(v, &a->rules[a->n_rules++], why, sizeof why) != 0) {
            snprintf(err, err_len, "%s: acls[%zu]: %s", path, i, why);
            goto out;
        }
    }
    rc = 0;
    *out = a;
out:
    json_decref(root);
    if (rc != 0) {
        acl_set_free(a);
    }
    return rc;
}

static int principal_matches(const struct acl_rule *r, const char *principal)
{
    return !strcmp(r->principal, "User:*") || !strcmp(r->principal, principal);
}

static int name_matches(const struct acl_rule *r, const char *name)
{
    if (r->res == ACL_CLUSTER) {
        return 1;
    }
    if (!name) {
        return 0;
    }
    if (r->is_prefixed) {
        return !strncmp(name, r->name, strlen(r->name));
    }
    return !strcmp(r->name, "*") || !strcmp(r->name, name);
}

/* The operations whose allow also allows op (Kafka's implied operations). */
static unsigned implied_by(enum acl_op op)
{
    unsigned m = 1u << op;
    if (op == ACL_DESCRIBE) {
        m |= 1u << ACL_READ | 1u << ACL_WRITE | 1u << ACL_DELETE | 1u << ACL_ALTER;
    }
    if (op == ACL_DESCRIBE_CONFIGS) {
        m |= 1u << ACL_ALTER_CONFIGS;
    }
    return m;
}

static int is_super(const struct acl_set *a, const char *principal)
{
    for (size_t i = 0; i < a->n_supers; i++) {
        if (!strcmp(a->supers[i], principal)) {
            return 1;
        }
    }
    return 0;
}

int acl_set_allows(const struct acl_set *a, const char *principal, enum acl_resource res,
                   const char *name, enum acl_op op)
{
    if (!a || is_super(a, principal)) {
        return 1;
    }
    int allowed = 0;
    unsigned allow_mask = implied_by(op);
    for (size_t i = 0; i < a->n_rules; i++) {
        const struct acl_rule *r = &a->rules[i];
        if (r->res != res || !principal_matches(r, principal) || !name_matches(r, name)) {
            continue;
        }
        if (r->is_deny && (r->ops & (1u << op))) {
            return 0;
        }
        if (!r->is_deny && (r->ops & allow_mask)) {
            allowed = 1;
        }
    }
    return allowed;
}

int acl_set_allows_any(const struct acl_set *a, const char *principal, enum acl_resource res,
                       enum acl_op op)
{
    if (!a || is_super(a, principal)) {
        return 1;
    }
    for (size_t i = 0; i < a->n_rules; i++) {
        const struct acl_rule *r = &a->rules[i];
        if (r->res == res && !r->is_deny && principal_matches(r, principal) &&
            (r->ops & (1u << op))) {
            return 1;
        }
    }
    return 0;
}
