/* Strict JSON over jansson for bodies that come from outside.
 *
 * Every parse has a byte limit and a nesting limit, refuses duplicate keys,
 * NUL characters and trailing data, and says where it failed. The getters
 * check types and ranges and name the field in their messages, so a handler
 * can answer 400 with err->msg as it is. */
#ifndef FF_JSON_H
#define FF_JSON_H

#include "ff_err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting accepted: real documents (OCI manifests, API bodies) stay
 * under 10; the cap keeps recursive walkers far from the stack's end. */
#define FF_JSON_DEPTH_MAX 32

/* Parses len bytes of data as one JSON value. Refuses more than max bytes
 * (FF_ETOOBIG), malformed JSON, duplicate object keys, nesting deeper than
 * FF_JSON_DEPTH_MAX (FF_EINVAL). On success *out belongs to the caller
 * (json_decref). */
int ff_json_parse(const char *data, size_t len, size_t max, json_t **out, struct ff_err *err);

/* Same, and the value must be an object. */
int ff_json_parse_object(const char *data, size_t len, size_t max, json_t **out,
                         struct ff_err *err);

/* Refuses (FF_EINVAL, naming the field) any key of obj not in allowed, a
 * NULL-terminated list; where prefixes the message ("request body"). */
int ff_json_check_keys(const json_t *obj, const char *const *allowed, const char *where,
                       struct ff_err *err);

/* Getters: a missing key is FF_ENOTFOUND when required is false (out left
 * unchanged) and FF_EINVAL when it is true; a value of the wrong type, or
 * outside the stated bounds, is FF_EINVAL. Returned strings are borrowed
 * from obj. Strings must be valid UTF-8 (jansson guarantees it) and hold
 * 1..max_len bytes. */
int ff_json_get_string(const json_t *obj, const char *key, bool required, size_t max_len,
                       const char **out, struct ff_err *err);
int ff_json_get_int(const json_t *obj, const char *key, bool required, int64_t min,
                    int64_t max, int64_t *out, struct ff_err *err);
int ff_json_get_bool(const json_t *obj, const char *key, bool required, bool *out,
                     struct ff_err *err);
/* max_items bounds the array length. */
int ff_json_get_array(const json_t *obj, const char *key, bool required, size_t max_items,
                      json_t **out, struct ff_err *err);
int ff_json_get_object(const json_t *obj, const char *key, bool required, json_t **out,
                       struct ff_err *err);

/* "object", "array", "string", "integer", "real", "true", "false", "null". */
const char *ff_json_type_name(const json_t *v);

/* Compact serialisation with keys in insertion order. *out is malloc'd and
 * belongs to the caller; *out_len excludes the NUL. Errors: FF_ENOMEM. */
int ff_json_dump(const json_t *v, char **out, size_t *out_len, struct ff_err *err);

#endif
