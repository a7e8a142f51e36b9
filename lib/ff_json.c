#include "ff_json.h"

#include <stdlib.h>
#include <string.h>

const char *ff_json_type_name(const json_t *v)
{
    if (v == NULL)
        return "null";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

static bool depth_ok(const json_t *v, int depth)
{
    if (depth > FF_JSON_DEPTH_MAX)
        return false;
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child) {
            if (!depth_ok(child, depth + 1))
                return false;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            if (!depth_ok(child, depth + 1))
                return false;
        }
    }
    return true;
}

int ff_json_parse(const char *data, size_t len, size_t max, json_t **out, struct ff_err *err)
{
    if (len > max)
        return ff_err_set(err, FF_ETOOBIG, "json: %zu bytes, limit is %zu", len, max);
    json_error_t jerr;
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        return ff_err_set(err, FF_EINVAL, "json: line %d column %d: %s", jerr.line,
                          jerr.column, jerr.text);
    if (!depth_ok(v, 1)) {
        json_decref(v);
        return ff_err_set(err, FF_EINVAL, "json: nested deeper than %d levels",
                          FF_JSON_DEPTH_MAX);
    }
    *out = v;
    return 0;
}

int ff_json_parse_object(const char *data, size_t len, size_t max, json_t **out,
                         struct ff_err *err)
{
    json_t *v = NULL;
    int rc = ff_json_parse(data, len, max, &v, err);
    if (rc != 0)
        return rc;
    if (!json_is_object(v)) {
        rc = ff_err_set(err, FF_EINVAL, "json: expected an object, got %s",
                        ff_json_type_name(v));
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

int ff_json_check_keys(const json_t *obj, const char *const *allowed, const char *where,
                       struct ff_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool known = false;
        for (const char *const *a = allowed; *a != NULL; a++) {
            if (strcmp(*a, key) == 0) {
                known = true;
                break;
            }
        }
        if (!known)
            return ff_err_set(err, FF_EINVAL, "%s: unknown field \"%.64s\"", where, key);
    }
    return 0;
}

/* Looks key up; FF_ENOTFOUND / FF_EINVAL as the getters document. */
static int field_get(const json_t *obj, const char *key, bool required, json_t **out,
                     struct ff_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            return ff_err_set(err, FF_EINVAL, "field \"%s\": required", key);
        return FF_ENOTFOUND;
    }
    *out = v;
    return 0;
}

static int wrong_type(const char *key, const char *want, const json_t *v, struct ff_err *err)
{
    return ff_err_set(err, FF_EINVAL, "field \"%s\": expected %s, got %s", key, want,
                      ff_json_type_name(v));
}

int ff_json_get_string(const json_t *obj, const char *key, bool required, size_t max_len,
                       const char **out, struct ff_err *err)
{
    json_t *v = NULL;
    int rc = field_get(obj, key, required, &v, err);
    if (rc != 0)
        return rc;
    if (!json_is_string(v))
        return wrong_type(key, "a string", v, err);
    size_t len = json_string_length(v);
    if (len == 0)
        return ff_err_set(err, FF_EINVAL, "field \"%s\": must not be empty", key);
    if (len > max_len)
        return ff_err_set(err, FF_EINVAL, "field \"%s\": %zu bytes long, limit is %zu", key,
                          len, max_len);
    *out = json_string_value(v);
    return 0;
}

int ff_json_get_int(const json_t *obj, const char *key, bool required, int64_t min,
                    int64_t max, int64_t *out, struct ff_err *err)
{
    json_t *v = NULL;
    int rc = field_get(obj, key, required, &v, err);
    if (rc != 0)
        return rc;
    if (!json_is_integer(v))
        return wrong_type(key, "an integer", v, err);
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return ff_err_set(err, FF_EINVAL, "field \"%s\": %lld is outside %lld..%lld", key,
                          (long long)n, (long long)min, (long long)max);
    *out = (int64_t)n;
    return 0;
}

int ff_json_get_bool(const json_t *obj, const char *key, bool required, bool *out,
                     struct ff_err *err)
{
    json_t *v = NULL;
    int rc = field_get(obj, key, required, &v, err);
    if (rc != 0)
        return rc;
    if (!json_is_boolean(v))
        return wrong_type(key, "true or false", v, err);
    *out = json_is_true(v);
    return 0;
}

int ff_json_get_array(const json_t *obj, const char *key, bool required, size_t max_items,
                      json_t **out, struct ff_err *err)
{
    json_t *v = NULL;
    int rc = field_get(obj, key, required, &v, err);
    if (rc != 0)
        return rc;
    if (!json_is_array(v))
        return wrong_type(key, "an array", v, err);
    if (json_array_size(v) > max_items)
        return ff_err_set(err, FF_EINVAL, "field \"%s\": %zu items, limit is %zu", key,
                          json_array_size(v), max_items);
    *out = v;
    return 0;
}

int ff_json_get_object(const json_t *obj, const char *key, bool required, json_t **out,
                       struct ff_err *err)
{
    json_t *v = NULL;
    int rc = field_get(obj, key, required, &v, err);
    if (rc != 0)
        return rc;
    if (!json_is_object(v))
        return wrong_type(key, "an object", v, err);
    *out = v;
    return 0;
}

int ff_json_dump(const json_t *v, char **out, size_t *out_len, struct ff_err *err)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL)
        return ff_err_set(err, FF_ENOMEM, "json: cannot serialise");
    *out = s;
    if (out_len != NULL)
        *out_len = strlen(s);
    return 0;
}
