/* One INI file per daemon, read with libinih against a schema.
 *
 * The daemon declares every key it knows, with a type, a default and a
 * range; a key the schema does not name is an error (a typo must not
 * silently leave a default in force), and so is a value of the wrong type
 * or out of range, a repeated key (except lists), and a line too long for
 * libinih. Errors name the file, the line and what was expected. */
#ifndef FF_CONF_H
#define FF_CONF_H

#include "ff_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ff_conf_type {
    FF_CONF_STRING, /* any text up to FF_CONF_VALUE_MAX bytes */
    FF_CONF_INT,    /* decimal integer in [min, max] */
    FF_CONF_SIZE,   /* bytes, with optional K, M, G or T suffix (powers of 1024) */
    FF_CONF_BOOL,   /* true/false, yes/no, on/off, 1/0 */
    FF_CONF_LIST    /* the key may repeat; each line adds one item */
};

/* Longest line libinih (Debian: INI_MAX_LINE 200) handles whole; longer
 * lines would be split silently, so they are refused. */
#define FF_CONF_LINE_MAX 199

struct ff_conf_key {
    const char *section;
    const char *name;
    enum ff_conf_type type;
    const char *def;  /* default as text, NULL for none (lists: ignored) */
    int64_t min, max; /* bounds for INT and SIZE */
};

struct ff_conf;

/* Reads path against schema (n keys). path NULL means "no file": all
 * defaults. On success *out belongs to the caller (ff_conf_free).
 * Errors: FF_ENOTFOUND (no such file), FF_EIO, FF_EINVAL (syntax, unknown
 * key, bad value, repeated key, long line), FF_ERANGE, FF_ENOMEM. */
int ff_conf_load(const char *path, const struct ff_conf_key *schema, size_t n,
                 struct ff_conf **out, struct ff_err *err);

/* Same, from text in memory; name is used in messages. */
int ff_conf_load_string(const char *text, const char *name, const struct ff_conf_key *schema,
                        size_t n, struct ff_conf **out, struct ff_err *err);

void ff_conf_free(struct ff_conf *conf);

/* Getters return the configured value, else the default. Asking for a key
 * the schema lacks, or with the wrong type, is a programmer error (abort).
 * Strings are borrowed from conf (NULL when unset with no default). */
const char *ff_conf_string(const struct ff_conf *conf, const char *section, const char *name);
int64_t ff_conf_int(const struct ff_conf *conf, const char *section, const char *name);
bool ff_conf_bool(const struct ff_conf *conf, const char *section, const char *name);

/* Items of a LIST key in file order; *out is borrowed. Returns the count. */
size_t ff_conf_list(const struct ff_conf *conf, const char *section, const char *name,
                    const char *const **out);

/* Refuses (FF_EINVAL, naming path and the key) a key that has neither a
 * value nor a default: a setting the daemon cannot run without. */
int ff_conf_require(const struct ff_conf *conf, const char *path, const char *section,
                    const char *name, struct ff_err *err);

/* Whether the file set the key (as opposed to the default applying). */
bool ff_conf_is_set(const struct ff_conf *conf, const char *section, const char *name);

#endif
