#include "ff_conf.h"

#include "ff_str.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A list key may repeat this often; more is a mistake, not a config. */
#define CONF_LIST_MAX 256

struct conf_slot {
    bool set;
    char *text;      /* last value as written (non-list) */
    int64_t number;  /* parsed INT / SIZE / BOOL */
    char **items;    /* LIST values */
    size_t n_items;
};

struct ff_conf {
    const struct ff_conf_key *schema;
    size_t n;
    struct conf_slot *slots;
    const char *name;  /* file name for messages, valid during load only */
    struct ff_err *err;
    int failed;
    const char *text;  /* in-memory source, for ff_conf_load_string */
    FILE *file;
    int lineno;
    int long_line;
    int failed_line; /* line of the first error the handler found */
};

static ssize_t schema_find(const struct ff_conf_key *schema, size_t n, const char *section,
                           const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(schema[i].section, section) == 0 && strcmp(schema[i].name, name) == 0)
            return (ssize_t)i;
    }
    return -1;
}

static int parse_bool(const char *v, int64_t *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return FF_EINVAL;
}

static int parse_size(const char *v, int64_t min, int64_t max, int64_t *out)
{
    size_t len = strlen(v);
    if (len == 0 || len > 32)
        return FF_EINVAL;
    char digits[33];
    memcpy(digits, v, len + 1);
    int shift = 0;
    switch (digits[len - 1]) {
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    case 'T': case 't': shift = 40; break;
    default: break;
    }
    if (shift != 0)
        digits[len - 1] = '\0';
    int64_t n = 0;
    int rc = ff_parse_i64(digits, 0, INT64_MAX >> shift, &n);
    if (rc != 0)
        return rc;
    n <<= shift;
    if (n < min || n > max)
        return FF_ERANGE;
    *out = n;
    return 0;
}

/* Parses text for key k into slot; FF_EINVAL / FF_ERANGE with message. */
static int value_parse(const struct ff_conf_key *k, const char *text, int64_t *number,
                       struct ff_err *err)
{
    int rc = 0;
    switch (k->type) {
    case FF_CONF_INT:
        rc = ff_parse_i64(text, k->min, k->max, number);
        if (rc == FF_EINVAL)
            return ff_err_set(err, rc, "\"%s\" is not an integer", text);
        if (rc == FF_ERANGE)
            return ff_err_set(err, rc, "%s is outside %lld..%lld", text, (long long)k->min,
                              (long long)k->max);
        return 0;
    case FF_CONF_SIZE:
        rc = parse_size(text, k->min, k->max, number);
        if (rc == FF_EINVAL)
            return ff_err_set(err, rc, "\"%s\" is not a size (a number with optional "
                              "K, M, G or T)", text);
        if (rc == FF_ERANGE)
            return ff_err_set(err, rc, "%s is outside %lld..%lld bytes", text,
                              (long long)k->min, (long long)k->max);
        return 0;
    case FF_CONF_BOOL:
        if (parse_bool(text, number) != 0)
            return ff_err_set(err, FF_EINVAL, "\"%s\" is not true or false", text);
        return 0;
    default:
        return 0;
    }
}

static int conf_set(struct ff_conf *c, size_t idx, const char *value, struct ff_err *err)
{
    const struct ff_conf_key *k = &c->schema[idx];
    struct conf_slot *s = &c->slots[idx];
    if (k->type == FF_CONF_LIST) {
        if (s->n_items >= CONF_LIST_MAX)
            return ff_err_set(err, FF_EINVAL, "more than %d values", CONF_LIST_MAX);
        char **items = realloc(s->items, (s->n_items + 1) * sizeof(*items));
        if (items == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
        s->items = items;
        s->items[s->n_items] = strdup(value);
        if (s->items[s->n_items] == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
        s->n_items++;
        s->set = true;
        return 0;
    }
    if (s->set)
        return ff_err_set(err, FF_EINVAL, "key is set twice");
    int64_t number = 0;
    int rc = value_parse(k, value, &number, err);
    if (rc != 0)
        return rc;
    char *copy = strdup(value);
    if (copy == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    free(s->text);
    s->text = copy;
    s->number = number;
    s->set = true;
    return 0;
}

/* libinih callback: returns nonzero to go on. Only the first error is kept. */
static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ff_conf *c = user;
    /* The reader counts lines; libinih calls us right after reading one. */
    int lineno = c->lineno;
    if (c->failed)
        return 0;
    struct ff_err e;
    ff_err_clear(&e);
    ssize_t idx = schema_find(c->schema, c->n, section, name);
    int rc;
    if (idx < 0)
        rc = ff_err_set(&e, FF_EINVAL, "unknown key \"%s\" in section [%s]", name, section);
    else
        rc = conf_set(c, (size_t)idx, value, &e);
    if (rc != 0) {
        c->failed = rc;
        c->failed_line = lineno;
        ff_err_set(c->err, rc, "config \"%s\" line %d: [%s] %s: %s", c->name, lineno,
                   section, name, e.msg);
        return 0;
    }
    return 1;
}

/* fgets-like reader that refuses lines libinih would split. */
static char *conf_reader(char *str, int num, void *stream)
{
    struct ff_conf *c = stream;
    size_t cap = (size_t)num;
    size_t len = 0;
    int ch = 0;
    for (;;) {
        if (c->file != NULL) {
            ch = fgetc(c->file);
            if (ch == EOF)
                break;
        } else {
            if (*c->text == '\0')
                break;
            ch = (unsigned char)*c->text++;
        }
        if (len + 1 >= cap) {
            c->long_line = c->lineno + 1;
            return NULL;
        }
        str[len++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (len == 0)
        return NULL;
    str[len] = '\0';
    c->lineno++;
    return str;
}

static void conf_release(struct ff_conf *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->slots[i].text);
        for (size_t j = 0; j < c->slots[i].n_items; j++)
            free(c->slots[i].items[j]);
        free(c->slots[i].items);
    }
    free(c->slots);
}

void ff_conf_free(struct ff_conf *conf)
{
    if (conf == NULL)
        return;
    conf_release(conf);
    free(conf);
}

/* Parses every default once: a default that does not parse is a bug. */
static void defaults_apply(struct ff_conf *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct ff_conf_key *k = &c->schema[i];
        if (k->type == FF_CONF_LIST || k->def == NULL || c->slots[i].set)
            continue;
        struct ff_err e;
        if (value_parse(k, k->def, &c->slots[i].number, &e) != 0)
            FF_BUG("config default does not parse");
    }
}

static int conf_parse(struct ff_conf *c, const char *name, struct ff_err *err)
{
    c->name = name;
    c->err = err;
    int line = ini_parse_stream(conf_reader, c, conf_handler, c);
    if (c->long_line)
        return ff_err_set(err, FF_EINVAL, "config \"%s\" line %d: longer than %d characters",
                          name, c->long_line, FF_CONF_LINE_MAX);
    /* libinih goes on after a syntax error: report whichever came first. */
    if (c->failed && (line <= 0 || line >= c->failed_line))
        return c->failed;
    if (line > 0)
        return ff_err_set(err, FF_EINVAL, "config \"%s\" line %d: syntax error, expected "
                          "[section] or key = value", name, line);
    if (line < 0)
        return ff_err_set(err, FF_ENOMEM, "config \"%s\": out of memory", name);
    defaults_apply(c);
    return 0;
}

static int conf_new(const struct ff_conf_key *schema, size_t n, struct ff_conf **out,
                    struct ff_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (schema_find(schema, i, schema[i].section, schema[i].name) >= 0)
            FF_BUG("config schema names a key twice");
    }
    /* Errors return the constant, not ff_err_set's result, so analyzers
     * see that success always sets *out. */
    struct ff_conf *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        (void)ff_err_set(err, FF_ENOMEM, "config: out of memory");
        return FF_ENOMEM;
    }
    c->slots = calloc(n ? n : 1, sizeof(*c->slots));
    if (c->slots == NULL) {
        free(c);
        (void)ff_err_set(err, FF_ENOMEM, "config: out of memory");
        return FF_ENOMEM;
    }
    c->schema = schema;
    c->n = n;
    *out = c;
    return 0;
}

int ff_conf_load_string(const char *text, const char *name, const struct ff_conf_key *schema,
                        size_t n, struct ff_conf **out, struct ff_err *err)
{
    struct ff_conf *c = NULL;
    int rc = conf_new(schema, n, &c, err);
    if (rc != 0)
        return rc;
    c->text = text;
    rc = conf_parse(c, name, err);
    if (rc != 0) {
        ff_conf_free(c);
        return rc;
    }
    c->text = NULL;
    *out = c;
    return 0;
}

int ff_conf_load(const char *path, const struct ff_conf_key *schema, size_t n,
                 struct ff_conf **out, struct ff_err *err)
{
    if (path == NULL)
        return ff_conf_load_string("", "(defaults)", schema, n, out, err);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO,
                          "config \"%s\": %s", path, strerror(errno));
    struct ff_conf *c = NULL;
    int rc = conf_new(schema, n, &c, err);
    if (rc == 0) {
        c->file = f;
        rc = conf_parse(c, path, err);
        c->file = NULL;
    }
    if (rc == 0 && ferror(f))
        rc = ff_err_set(err, FF_EIO, "config \"%s\": read error", path);
    (void)fclose(f);
    if (rc != 0) {
        ff_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static const struct conf_slot *slot_get(const struct ff_conf *c, const char *section,
                                        const char *name, enum ff_conf_type type)
{
    ssize_t idx = schema_find(c->schema, c->n, section, name);
    if (idx < 0)
        FF_BUG("config key not in schema");
    enum ff_conf_type t = c->schema[idx].type;
    bool ok = t == type || (type == FF_CONF_INT && t == FF_CONF_SIZE);
    if (!ok)
        FF_BUG("config key read with the wrong type");
    return &c->slots[idx];
}

const char *ff_conf_string(const struct ff_conf *conf, const char *section, const char *name)
{
    const struct conf_slot *s = slot_get(conf, section, name, FF_CONF_STRING);
    if (s->set)
        return s->text;
    return conf->schema[s - conf->slots].def;
}

int64_t ff_conf_int(const struct ff_conf *conf, const char *section, const char *name)
{
    return slot_get(conf, section, name, FF_CONF_INT)->number;
}

bool ff_conf_bool(const struct ff_conf *conf, const char *section, const char *name)
{
    return slot_get(conf, section, name, FF_CONF_BOOL)->number != 0;
}

size_t ff_conf_list(const struct ff_conf *conf, const char *section, const char *name,
                    const char *const **out)
{
    const struct conf_slot *s = slot_get(conf, section, name, FF_CONF_LIST);
    *out = (const char *const *)s->items;
    return s->n_items;
}

int ff_conf_require(const struct ff_conf *conf, const char *path, const char *section,
                    const char *name, struct ff_err *err)
{
    if (ff_conf_string(conf, section, name) == NULL)
        return ff_err_set(err, FF_EINVAL, "config \"%s\": [%s] %s is required", path,
                          section, name);
    return 0;
}

bool ff_conf_is_set(const struct ff_conf *conf, const char *section, const char *name)
{
    ssize_t idx = schema_find(conf->schema, conf->n, section, name);
    if (idx < 0)
        FF_BUG("config key not in schema");
    return conf->slots[idx].set;
}
