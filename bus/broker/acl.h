/* acl.h - authorization of Kafka requests per principal (Kafka's AclAuthorizer, simplified to
 * one node): allow and deny rules on topics, groups and the cluster, read from a JSON file
 * (acl.file) and reloaded on SIGHUP.
 *
 * Decision for (principal, resource, operation), as Kafka decides it:
 *   1. a super user (the file's "super_users") may do everything;
 *   2. a matching deny rule denies;
 *   3. a matching allow rule allows; Read, Write, Delete and Alter imply Describe, AlterConfigs
 *      implies DescribeConfigs, All is every operation;
 *   4. nothing matched: denied.
 * Without an ACL file every request is allowed (development, and SASL without ACLs).
 *
 * Threading: the event-loop thread only (the set is replaced there on reload). */
#ifndef BROKER_ACL_H
#define BROKER_ACL_H

#include <stddef.h>

/* ACL_TRANSACTIONAL_ID is Kafka's resource type 5 ("transactional_id" in the file): Write lets a
 * producer use the id (InitProducerId, AddPartitionsToTxn, Produce, EndTxn), Describe find its
 * coordinator. */
enum acl_resource { ACL_TOPIC, ACL_GROUP, ACL_CLUSTER, ACL_TRANSACTIONAL_ID, ACL_N_RESOURCES };

enum acl_op {
    ACL_READ,
    ACL_WRITE,
    ACL_CREATE,
    ACL_DELETE,
    ACL_ALTER,
    ACL_DESCRIBE,
    ACL_DESCRIBE_CONFIGS,
    ACL_ALTER_CONFIGS,
    ACL_IDEMPOTENT_WRITE,
    ACL_N_OPS,
};

struct acl_set;

/* Loads an ACL file:
 *   {"super_users": ["User:admin"],
 *    "acls": [{"principal": "User:alice" | "User:*",
 *              "resource": "topic" | "group" | "cluster" | "transactional_id",
 *              "name": "login" | "*", "pattern": "literal" | "prefixed",
 *              "operations": ["Read", "Describe", ...] | ["All"],
 *              "permission": "allow" | "deny"}]}
 * ("pattern" defaults to literal, "permission" to allow, "name" may be left out for the
 * cluster). Returns 0 with *out set, or -1 with a sentence naming the bad entry in err. */
int acl_set_load(const char *path, struct acl_set **out, char *err, size_t err_len);
void acl_set_free(struct acl_set *a);
size_t acl_set_count(const struct acl_set *a);

/* The decision above; name is ignored for the cluster. */
int acl_set_allows(const struct acl_set *a, const char *principal, enum acl_resource res,
                   const char *name, enum acl_op op);
/* Whether some rule lets principal do op on at least one resource of the type (Kafka lets an
 * idempotent producer in with Write on any topic). */
int acl_set_allows_any(const struct acl_set *a, const char *principal, enum acl_resource res,
                       enum acl_op op);

const char *acl_op_name(enum acl_op op);
const char *acl_resource_name(enum acl_resource res);

#endif
