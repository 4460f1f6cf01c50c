/* config.h - process configuration: one declarative table per process, a JSON file, env
 * overrides.
 *
 * Each process declares a table of struct config_def (key, type, default, range, flags,
 * description). config_load() reads an optional JSON file (a flat object, or nested objects whose
 * keys are joined with '.': {"http": {"listen": ...}} is "http.listen"), then applies environment
 * overrides, then validates every value against the table. An unknown key in the file, a value of
 * the wrong type or out of range refuses the start with a message naming the key.
 *
 * Environment: every key K can be overridden by <PREFIX>_<K upper-cased, '.' and '-' as '_'>,
 * where PREFIX is the table's env prefix (e.g. PUBLISHER_LISTEN for "listen"). A def may also
 * name a product-wide variable in .env (e.g. "BUS_BOOTSTRAP", "DATABASE_URL"), which wins over
 * the file but loses to the prefixed one.
 *
 * Keys starting with "kafka." are free-form: they are not declared in the table and are passed
 * as they are to the Kafka client (see kafka.h). Env form: <PREFIX>_KAFKA_<NAME>, NAME in
 * upper case with '_' for '.' and "__" for '_' (PUBLISHER_KAFKA_SASL_PASSWORD is
 * kafka.sasl.password, PUBLISHER_KAFKA_LOG__LEVEL is kafka.log_level); it wins over the file. A
 * variable of another form after <PREFIX>_KAFKA_ refuses the start (unless it is the env name of
 * a declared key). kafka.* keys naming a password or secret are redacted like CONFIG_SECRET
 * keys (config_kafka_is_secret).
 *
 * Secrets (CONFIG_SECRET, CONFIG_KEY) may also come from a file: <VAR>_FILE names a file whose
 * content (without trailing line breaks) is the value of <VAR>, for every environment name of the
 * key; setting both <VAR> and <VAR>_FILE refuses the start. An empty CONFIG_KEY value counts as
 * unset (its development default applies, which production refuses).
 *
 * A config is immutable after load and may be read from any thread. */
#ifndef CONFIG_H
#define CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL, CONFIG_DOUBLE };

#define CONFIG_SECRET 0x1u   /* redacted in logs and dumps */
#define CONFIG_REQUIRED 0x2u /* must be set (no default) */
/* A cryptographic secret (implies CONFIG_SECRET): in production (BUS_ENV) it must be set, at least
 * 32 bytes long and not equal to the table's default, which is its documented development value;
 * a list (items separated by spaces or commas) is checked item by item. */
#define CONFIG_KEY 0x4u

struct config_def {
    const char *key;
    enum config_type type;
    const char *default_value; /* as text; NULL = unset */
    double min, max;           /* for INT/DOUBLE; both 0 = unbounded; for STRING: max length */
    unsigned flags;
    const char *env; /* optional product-wide env name, e.g. "BUS_BOOTSTRAP" */
    const char *description;
};
#define CONFIG_DEF_END                                                                             \
    {                                                                                              \
        NULL, 0, NULL, 0, 0, 0, NULL, NULL                                                         \
    }

struct config;

/* Loads the table defs (terminated by CONFIG_DEF_END). path may be NULL (defaults and env only).
 * env_prefix like "PUBLISHER". On failure returns -1 and writes a sentence to err. */
int config_load(struct config **out, const struct config_def *defs, const char *env_prefix,
                const char *path, char *err, size_t err_len);
void config_free(struct config *c);

/* Getters abort (programming error) when the key is not in the table or of another type.
 * config_str returns NULL for an unset optional string; the pointer lives as long as c. */
const char *config_str(const struct config *c, const char *key);
long long config_int(const struct config *c, const char *key);
bool config_bool(const struct config *c, const char *key);
double config_double(const struct config *c, const char *key);

/* The "kafka.*" keys (file, then environment) as an object {"bootstrap.servers": "...", ...}
 * without the prefix (borrowed; empty object when none). */
json_t *config_kafka(const struct config *c);
/* True when a kafka.* property (name without the prefix) holds a secret: any name containing
 * "password" or "secret" (sasl.password, ssl.key.password, ssl.keystore.password,
 * sasl.oauthbearer.client.secret), and ssl.key.pem. */
bool config_kafka_is_secret(const char *key);
/* The whole parsed file (borrowed), for processes with structured sections beyond the table. */
json_t *config_json(const struct config *c);

/* ---- modes (docs/security.md) ----------------------------------------------------------------
 * BUS_ENV=production (the default: unset or empty) or development. */
#define CONFIG_KEY_MIN_BYTES 32
/* True unless BUS_ENV is "development". */
bool config_is_production(void);
/* 0 when BUS_ENV is unset, empty, "production" or "development"; else -1 and a sentence. */
int config_check_mode(char *err, size_t err_len);
/* Checks one secret key named name (for messages) against the mode's rules: value may be a list
 * of keys separated by spaces or commas (rotation), each checked. In production returns -1 with a
 * sentence in err when value is NULL or empty, a key is shorter than CONFIG_KEY_MIN_BYTES, or
 * equal to dev_value (may be NULL). Otherwise 0; *is_dev tells whether dev_value is in use
 * (err then says so, for a warning). */
int config_check_key_value(const char *name, const char *value, const char *dev_value,
                           bool is_production, bool *is_dev, char *err, size_t err_len);
/* Checks every CONFIG_KEY of c (its default is its development value) with
 * config_check_key_value: in production returns -1 and one sentence naming the first key that
 * fails and its environment variables; in development logs one warning per development value in
 * use and returns 0. */
int config_check_keys(const struct config *c, const char *env_prefix, bool is_production, char *err,
                      size_t err_len);

/* Logs every effective value at info level (kafka.* keys included), secrets as "[redacted]". */
void config_log(const struct config *c);
/* Writes the table as a Markdown reference (docs are generated from it and checked in CI). */
void config_write_markdown(const struct config_def *defs, const char *env_prefix, FILE *out);

#endif
