/* config.c - process configuration: declarative table, JSON file, env overrides (see
 * config.h). Values are validated once at load; a config is immutable afterwards. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h> /* environ (_GNU_SOURCE) */

#include "alloc.h"
#include "log.h"

#define CONFIG_SECRET_FILE_MAX (64 * 1024)

struct config {
    const struct config_def *defs;
    json_t *file;   /* the parsed file, or an empty object */
    json_t *kafka;  /* "kafka.*" keys without the prefix */
    json_t *values; /* key -> effective value (absent = unset) */
};

static const struct config_def *find_def(const struct config_def *defs, const char *key)
{
    for (const struct config_def *d = defs; d->key; d++) {
        if (strcmp(d->key, key) == 0) {
            return d;
        }
    }
    return NULL;
}

/* Converts text (from a default or the environment) to a JSON value of the def's type. */
static json_t *parse_text(const struct config_def *d, const char *text)
{
    char *end = NULL;
    switch (d->type) {
    case CONFIG_STRING:
        return json_string(text);
    case CONFIG_INT: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end) {
            return NULL;
        }
        return json_integer(v);
    }
    case CONFIG_DOUBLE: {
        errno = 0;
        double v = strtod(text, &end);
        if (errno || end == text || *end) {
            return NULL;
        }
        return json_real(v);
    }
    case CONFIG_BOOL:
        if (!strcasecmp(text, "true") || !strcmp(text, "1") || !strcasecmp(text, "yes")) {
            return json_true();
        }
        if (!strcasecmp(text, "false") || !strcmp(text, "0") || !strcasecmp(text, "no")) {
            return json_false();
        }
        return NULL;
    }
    return NULL;
}

/* Checks a file value against the def's type; returns a new reference or NULL. */
static json_t *coerce(const struct config_def *d, json_t *v)
{
    switch (d->type) {
    case CONFIG_STRING:
        return json_is_string(v) ? json_incref(v) : NULL;
    case CONFIG_INT:
        return json_is_integer(v) ? json_incref(v) : NULL;
    case CONFIG_DOUBLE:
        return json_is_number(v) ? json_real(json_number_value(v)) : NULL;
    case CONFIG_BOOL:
        return json_is_boolean(v) ? json_incref(v) : NULL;
    }
    return NULL;
}

static const char *type_name(enum config_type t)
{
    static const char *const names[] = {"string", "integer", "boolean", "number"};
    return names[t];
}

/* Flattens nested objects into "a.b" keys; "kafka" subtrees go to kafka props. */
static int flatten(struct config *c, json_t *obj, const char *prefix, const char *path, char *err,
                   size_t err_len)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        char key[256];
        int n = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", k);
        if (n < 0 || (size_t)n >= sizeof key) {
            snprintf(err, err_len, "%s: configuration key too long: %.64s...", path, key);
            return -1;
        }
        if (strncmp(key, "kafka.", 6) == 0 && !json_is_object(v)) {
            json_t *s = json_is_string(v) ? json_incref(v) : NULL;
            if (!s && (json_is_integer(v) || json_is_boolean(v) || json_is_real(v))) {
                char *txt = json_dumps(v, JSON_ENCODE_ANY);
                s = json_string(txt);
                free(txt);
            }
            if (!s) {
                snprintf(err, err_len, "%s: \"%s\" must be a string, number or boolean", path, key);
                return -1;
            }
            json_object_set_new(c->kafka, key + 6, s);
            continue;
        }
        if (json_is_object(v) && !find_def(c->defs, key)) {
            if (flatten(c, v, key, path, err, err_len) != 0) {
                return -1;
            }
            continue;
        }
        const struct config_def *d = find_def(c->defs, key);
        if (!d) {
            snprintf(err, err_len, "%s: unknown configuration key \"%s\"", path, key);
            return -1;
        }
        json_t *val = coerce(d, v);
        if (!val) {
            snprintf(err, err_len, "%s: \"%s\" must be of type %s", path, key, type_name(d->type));
            return -1;
        }
        json_object_set_new(c->values, key, val);
    }
    return 0;
}

static void env_name(const char *prefix, const char *key, char *out, size_t len)
{
    size_t i = 0;
    int n = snprintf(out, len, "%s_", prefix);
    if (n < 0 || (size_t)n >= len) {
        out[0] = '\0';
        return;
    }
    i = (size_t)n;
    for (const char *p = key; *p && i + 1 < len; p++) {
        out[i++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    }
    out[i] = '\0';
}

static bool is_secret(const struct config_def *d)
{
    return (d->flags & (CONFIG_SECRET | CONFIG_KEY)) != 0;
}

/* Reads the secret a <NAME>_FILE variable points to (a mounted secret, e.g. Docker or systemd
 * credentials): the whole file, at most CONFIG_SECRET_FILE_MAX bytes, without trailing line
 * breaks. Returns a heap string, or NULL with err naming the variable. */
static char *read_secret_file(const char *var, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "environment %s: cannot read %s", var, path);
        return NULL;
    }
    char *text = xmalloc(CONFIG_SECRET_FILE_MAX + 1);
    size_t n = fread(text, 1, CONFIG_SECRET_FILE_MAX + 1, f);
    bool is_error = ferror(f) != 0;
    fclose(f);
    if (is_error || n > CONFIG_SECRET_FILE_MAX) {
        snprintf(err, err_len, "environment %s: %s is unreadable or larger than %d bytes", var,
                 path, CONFIG_SECRET_FILE_MAX);
        free(text);
        return NULL;
    }
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) {
        n--;
    }
    text[n] = '\0';
    if (memchr(text, '\0', n)) {
        snprintf(err, err_len, "environment %s: %s holds a NUL byte", var, path);
        free(text);
        return NULL;
    }
    return text;
}

/* Applies the environment variable name to d; for a secret also name_FILE (the secret read from
 * that file). Both set is refused: which one wins would be a guess. */
static int apply_env(struct config *c, const struct config_def *d, const char *name, char *err,
                     size_t err_len)
{
    const char *text = getenv(name);
    char *from_file = NULL;
    if (is_secret(d)) {
        char file_var[300];
        snprintf(file_var, sizeof file_var, "%s_FILE", name);
        const char *path = getenv(file_var);
        if (path && *path) {
            if (text) {
                snprintf(err, err_len, "environment: set %s or %s, not both", name, file_var);
                return -1;
            }
            from_file = read_secret_file(file_var, path, err, err_len);
            if (!from_file) {
                return -1;
            }
            text = from_file;
        }
    }
    if (!text) {
        return 0;
    }
    json_t *v = parse_text(d, text);
    free(from_file);
    if (!v) {
        snprintf(err, err_len, "environment %s: \"%s\" must be of type %s", name, d->key,
                 type_name(d->type));
        return -1;
    }
    json_object_set_new(c->values, d->key, v);
    return 0;
}

/* The kafka.* key of an environment variable's tail after "<PREFIX>_KAFKA_": upper-case letters
 * and digits, '_' for '.', "__" for '_' (librdkafka names are lower-case words joined by dots,
 * a few with an underscore: log_level). Returns -1 when the tail is not of that form. */
static int kafka_env_key(const char *tail, size_t tail_len, char *out, size_t len)
{
    size_t o = 0;
    if (tail_len == 0 || tail[0] == '_' || tail[tail_len - 1] == '_') {
        return -1;
    }
    for (size_t i = 0; i < tail_len; i++) {
        char ch = tail[i];
        if (ch == '_' && i + 1 < tail_len && tail[i + 1] == '_') {
            if (i + 2 < tail_len && tail[i + 2] == '_') {
                return -1; /* "___" reads two ways */
            }
            ch = '_';
            i++;
        } else if (ch == '_') {
            ch = '.';
        } else if ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
            ch = (char)tolower((unsigned char)ch);
        } else {
            return -1;
        }
        if (o + 1 >= len) {
            return -1;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* Applies <PREFIX>_KAFKA_<NAME> variables to the kafka.* props (over the file). A variable that
 * is the env name of a declared key belongs to that key. */
static int apply_kafka_env(struct config *c, const char *prefix, char *err, size_t err_len)
{
    char head[128];
    int n = snprintf(head, sizeof head, "%s_KAFKA_", prefix);
    if (n < 0 || (size_t)n >= sizeof head) {
        return 0;
    }
    size_t head_len = (size_t)n;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || strncmp(*e, head, head_len) != 0) {
            continue;
        }
        size_t name_len = (size_t)(eq - *e);
        bool is_declared = false;
        for (const struct config_def *d = c->defs; d->key && !is_declared; d++) {
            char name[256];
            env_name(prefix, d->key, name, sizeof name);
            is_declared = strlen(name) == name_len && strncmp(name, *e, name_len) == 0;
        }
        if (is_declared) {
            continue;
        }
        char key[256];
        if (kafka_env_key(*e + head_len, name_len - head_len, key, sizeof key) != 0) {
            snprintf(err, err_len,
                     "environment %.*s: not a kafka.* setting (after %s: upper-case words, '_' "
                     "for '.', \"__\" for '_')",
                     (int)name_len, *e, head);
            return -1;
        }
        /* <PREFIX>_KAFKA_SASL_PASSWORD_FILE: a secret property read from a file, as every
         * declared secret may be (no librdkafka property ends in ".file"). */
        size_t key_len = strlen(key);
        if (key_len > 5 && strcmp(key + key_len - 5, ".file") == 0) {
            key[key_len - 5] = '\0';
            char var[300];
            snprintf(var, sizeof var, "%.*s", (int)name_len, *e);
            if (!config_kafka_is_secret(key)) {
                snprintf(err, err_len,
                         "environment %s: kafka.%s is not a secret (only secret "
                         "properties have a _FILE form)",
                         var, key);
                return -1;
            }
            var[name_len - 5] = '\0';
            if (getenv(var)) {
                snprintf(err, err_len, "environment: set %s or %s_FILE, not both", var, var);
                return -1;
            }
            var[name_len - 5] = '_';
            char *text = read_secret_file(var, eq + 1, err, err_len);
            if (!text) {
                return -1;
            }
            json_object_set_new(c->kafka, key, json_string(text));
            free(text);
            continue;
        }
        json_object_set_new(c->kafka, key, json_string(eq + 1));
    }
    return 0;
}

bool config_kafka_is_secret(const char *key)
{
    return strstr(key, "password") || strstr(key, "secret") || strcmp(key, "ssl.key.pem") == 0;
}

static int check_range(const struct config_def *d, json_t *v, char *err, size_t err_len)
{
    if (d->min == 0 && d->max == 0) {
        return 0;
    }
    if (d->type == CONFIG_INT || d->type == CONFIG_DOUBLE) {
        double x = json_number_value(v);
        if (x < d->min || x > d->max) {
            snprintf(err, err_len, "\"%s\" = %.15g is out of range [%.15g, %.15g]", d->key, x,
                     d->min, d->max);
            return -1;
        }
    } else if (d->type == CONFIG_STRING && d->max > 0 &&
               (double)strlen(json_string_value(v)) > d->max) {
        snprintf(err, err_len, "\"%s\" is longer than %g characters", d->key, d->max);
        return -1;
    }
    return 0;
}

int config_load(struct config **out, const struct config_def *defs, const char *env_prefix,
                const char *path, char *err, size_t err_len)
{
    struct config *c = xcalloc(1, sizeof *c);
    c->defs = defs;
    c->kafka = json_object();
    c->values = json_object();
    c->file = NULL;

    for (const struct config_def *d = defs; d->key; d++) {
        if (!d->default_value) {
            continue;
        }
        json_t *v = parse_text(d, d->default_value);
        if (!v) {
            snprintf(err, err_len, "built-in default of \"%s\" is not a valid %s", d->key,
                     type_name(d->type));
            goto fail;
        }
        json_object_set_new(c->values, d->key, v);
    }
    if (path) {
        json_error_t je;
        c->file = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        if (!c->file) {
            if (je.line > 0) {
                snprintf(err, err_len, "%s:%d: %s", path, je.line, je.text);
            } else {
                snprintf(err, err_len, "%s", je.text); /* "unable to open PATH: reason" */
            }
            goto fail;
        }
        if (!json_is_object(c->file)) {
            snprintf(err, err_len, "%s: the configuration must be a JSON object", path);
            goto fail;
        }
        if (flatten(c, c->file, "", path, err, err_len) != 0) {
            goto fail;
        }
    } else {
        c->file = json_object();
    }
    for (const struct config_def *d = defs; d->key; d++) {
        char name[256];
        if (d->env && apply_env(c, d, d->env, err, err_len) != 0) {
            goto fail;
        }
        env_name(env_prefix, d->key, name, sizeof name);
        if (apply_env(c, d, name, err, err_len) != 0) {
            goto fail;
        }
        json_t *v = json_object_get(c->values, d->key);
        if ((d->flags & CONFIG_KEY) && json_is_string(v) && json_string_value(v)[0] == '\0') {
            /* An empty key is no key: its development value applies (config_check_keys then
             * refuses it in production), or it stays unset. */
            if (d->default_value) {
                json_object_set_new(c->values, d->key, json_string(d->default_value));
            } else {
                json_object_del(c->values, d->key);
            }
            v = json_object_get(c->values, d->key);
        }
        if (!v && (d->flags & CONFIG_REQUIRED)) {
            snprintf(err, err_len, "\"%s\" is required (set it in the file or %s)", d->key, name);
            goto fail;
        }
        if (v && check_range(d, v, err, err_len) != 0) {
            goto fail;
        }
    }
    if (apply_kafka_env(c, env_prefix, err, err_len) != 0) {
        goto fail;
    }
    *out = c;
    return 0;
fail:
    config_free(c);
    return -1;
}

void config_free(struct config *c)
{
    if (!c) {
        return;
    }
    json_decref(c->file);
    json_decref(c->kafka);
    json_decref(c->values);
    free(c);
}

static json_t *value_of(const struct config *c, const char *key, enum config_type type)
{
    const struct config_def *d = find_def(c->defs, key);
    if (!d || d->type != type) {
        log_error("configuration key \"%s\" read as %s but declared %s", key, type_name(type),
                  d ? type_name(d->type) : "nowhere");
        abort();
    }
    return json_object_get(c->values, key);
}

const char *config_str(const struct config *c, const char *key)
{
    return json_string_value(value_of(c, key, CONFIG_STRING));
}

long long config_int(const struct config *c, const char *key)
{
    return json_integer_value(value_of(c, key, CONFIG_INT));
}

bool config_bool(const struct config *c, const char *key)
{
    return json_is_true(value_of(c, key, CONFIG_BOOL));
}

double config_double(const struct config *c, const char *key)
{
    return json_number_value(value_of(c, key, CONFIG_DOUBLE));
}

json_t *config_kafka(const struct config *c)
{
    return c->kafka;
}

json_t *config_json(const struct config *c)
{
    return c->file;
}

void config_log(const struct config *c)
{
    json_t *extra = json_object();
    for (const struct config_def *d = c->defs; d->key; d++) {
        json_t *v = json_object_get(c->values, d->key);
        if (!v) {
            continue;
        }
        json_object_set_new(extra, d->key,
                            is_secret(d) ? json_string("[redacted]") : json_incref(v));
    }
    const char *k;
    json_t *v;
    json_object_foreach(c->kafka, k, v)
    {
        char key[300];
        snprintf(key, sizeof key, "kafka.%s", k);
        json_object_set_new(extra, key,
                            config_kafka_is_secret(k) ? json_string("[redacted]") : json_incref(v));
    }
    log_at(LOG_LEVEL_INFO, NULL, NULL, extra, "configuration");
    json_decref(extra);
}

/* Writes text into a Markdown table cell: '|' escaped, newlines as spaces. */
static void md_cell(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '|') {
            fputs("\\|", out);
        } else if (*p == '\n' || *p == '\r') {
            fputc(' ', out);
        } else {
            fputc(*p, out);
        }
    }
}

void config_write_markdown(const struct config_def *defs, const char *env_prefix, FILE *out)
{
    fprintf(out, "| key | environment | type | default | range | description |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (const struct config_def *d = defs; d->key; d++) {
        char name[256];
        env_name(env_prefix, d->key, name, sizeof name);
        char range[64] = "";
        if (d->min != 0 || d->max != 0) {
            if (d->type == CONFIG_STRING) {
                snprintf(range, sizeof range, "≤ %g chars", d->max);
            } else if (d->type == CONFIG_INT) {
                snprintf(range, sizeof range, "%.0f – %.0f", d->min, d->max);
            } else {
                snprintf(range, sizeof range, "%g – %g", d->min, d->max);
            }
        }
        fprintf(out, "| `%s` | `%s`", d->key, name);
        if (d->env) {
            fprintf(out, ", `%s`", d->env);
        }
        fprintf(out, " | %s | ", type_name(d->type));
        if (d->default_value && (d->flags & CONFIG_KEY) && *d->default_value) {
            fputs("(development value)", out);
        } else if (d->default_value && is_secret(d) && *d->default_value) {
            fputs("(secret)", out);
        } else if (d->default_value) {
            fprintf(out, "`%s`", d->default_value);
        } else {
            fputs((d->flags & CONFIG_REQUIRED) ? "required" : "—", out);
        }
        fprintf(out, " | %s | ", range);
        md_cell(out, d->description ? d->description : "");
        if (d->flags & CONFIG_KEY) {
            fputs(" (secret key: in production required, at least 32 bytes, not the development "
                  "value; a list: items separated by spaces or commas; also `_FILE`)",
                  out);
        } else if (is_secret(d)) {
            fputs(" (secret; also `_FILE`)", out);
        }
        fputs(" |\n", out);
    }
}

bool config_is_production(void)
{
    const char *mode = getenv("BUS_ENV");
    return !(mode && strcmp(mode, "development") == 0);
}

int config_check_mode(char *err, size_t err_len)
{
    const char *mode = getenv("BUS_ENV");
    if (!mode || !*mode || strcmp(mode, "production") == 0 || strcmp(mode, "development") == 0) {
        return 0;
    }
    snprintf(err, err_len, "BUS_ENV must be production or development, not \"%.64s\"", mode);
    return -1;
}

/* The next item of a key list from *p (separated by spaces or commas): its start and length
 * (0 at the end). */
static size_t next_item(const char **p, const char **item)
{
    while (**p == ' ' || **p == ',') {
        (*p)++;
    }
    *item = *p;
    while (**p && **p != ' ' && **p != ',') {
        (*p)++;
    }
    return (size_t)(*p - *item);
}

/* True when item (n bytes) is one of the items of list (may be NULL). */
static bool is_list_item(const char *list, const char *item, size_t n)
{
    const char *p = list ? list : "", *it;
    size_t len;
    while ((len = next_item(&p, &it)) > 0) {
        if (len == n && strncmp(it, item, n) == 0) {
            return true;
        }
    }
    return false;
}

int config_check_key_value(const char *name, const char *value, const char *dev_value,
                           bool is_production, bool *is_dev, char *err, size_t err_len)
{
    *is_dev = false;
    if (!value || !*value) {
        snprintf(err, err_len, "%s is missing", name);
        return is_production ? -1 : 0;
    }
    /* A key may be a list (rotation: "new old", or "kid:key,kid:key"); each one must hold on
     * its own, and none may be one of the development value's. */
    const char *p = value, *item;
    size_t n;
    while ((n = next_item(&p, &item)) > 0) {
        if (is_list_item(dev_value, item, n)) {
            *is_dev = true;
            snprintf(err, err_len, "%s is the development value", name);
            if (is_production) {
                return -1;
            }
        } else if (is_production && n < CONFIG_KEY_MIN_BYTES) {
            snprintf(err, err_len, "%s is shorter than %d bytes", name, CONFIG_KEY_MIN_BYTES);
            return -1;
        }
    }
    return 0;
}

int config_check_keys(const struct config *c, const char *env_prefix, bool is_production, char *err,
                      size_t err_len)
{
    for (const struct config_def *d = c->defs; d->key; d++) {
        if (!(d->flags & CONFIG_KEY) || d->type != CONFIG_STRING) {
            continue;
        }
        char env[256], name[700];
        env_name(env_prefix, d->key, env, sizeof env);
        if (d->env) {
            snprintf(name, sizeof name, "\"%s\" (%s or %s, or %s_FILE)", d->key, d->env, env,
                     d->env);
        } else {
            snprintf(name, sizeof name, "\"%s\" (%s or %s_FILE)", d->key, env, env);
        }
        const char *v = json_string_value(json_object_get(c->values, d->key));
        bool is_dev = false;
        char why[1024];
        if (config_check_key_value(name, v, d->default_value, is_production, &is_dev, why,
                                   sizeof why) != 0) {
            snprintf(err, err_len,
                     "production: %s; generate one with `openssl rand -base64 32` "
                     "(docs/security.md)",
                     why);
            return -1;
        }
        if (is_dev) {
            log_warn("development: %s (never in production)", why);
        }
    }
    return 0;
}
