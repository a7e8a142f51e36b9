/* Request bodies of the /v1 API, decoded strictly into typed structs: the
 * only place where untrusted JSON becomes values the handlers use. */
#include "builder.h"

#include "ff_json.h"

#include <string.h>

int user_name_check(const char *name, struct ff_err *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > USER_NAME_MAX)
        return ff_err_set(err, FF_EINVAL, "user name must hold 1..%d characters",
                          USER_NAME_MAX);
    /* One separator at a time and never last: the name is the first
     * component of repository names, whose grammar forbids "a..b" and
     * "a-" style components. */
    bool after_sep = true;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool sep = c == '.' || c == '_' || c == '-';
        if (!alnum && !(sep && !after_sep))
            return ff_err_set(err, FF_EINVAL, "user name: character %zu must match %s",
                              i + 1, after_sep ? "[a-z0-9]" : "[a-z0-9._-]");
        after_sep = sep;
    }
    if (after_sep)
        return ff_err_set(err, FF_EINVAL, "user name must end with [a-z0-9]");
    return 0;
}

int app_name_check(const char *name, struct ff_err *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > APP_NAME_MAX)
        return ff_err_set(err, FF_EINVAL, "app name must hold 1..%d characters", APP_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && c == '-');
        if (!ok)
            return ff_err_set(err, FF_EINVAL, "app name: character %zu must match %s", i + 1,
                              i == 0 ? "[a-z0-9]" : "[a-z0-9-]");
    }
    return 0;
}

/* One '/'-separated component of a branch name, len bytes at s. */
static int branch_component_check(const char *s, size_t len, struct ff_err *err)
{
    if (len == 0)
        return ff_err_set(err, FF_EINVAL, "deploy branch: empty component (\"//\" or a '/' at "
                          "either end)");
    if (s[0] == '.')
        return ff_err_set(err, FF_EINVAL, "deploy branch: a component must not start with '.'");
    if (len >= 5 && memcmp(s + len - 5, ".lock", 5) == 0)
        return ff_err_set(err, FF_EINVAL, "deploy branch: a component must not end with .lock");
    return 0;
}

int branch_name_check(const char *name, struct ff_err *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > BRANCH_NAME_MAX)
        return ff_err_set(err, FF_EINVAL, "deploy branch must hold 1..%d characters",
                          BRANCH_NAME_MAX);
    if (name[0] == '-' || name[len - 1] == '.')
        return ff_err_set(err, FF_EINVAL,
                          "deploy branch must not start with '-' or end with '.'");
    if (strstr(name, "..") != NULL || strstr(name, "@{") != NULL || strcmp(name, "@") == 0)
        return ff_err_set(err, FF_EINVAL, "deploy branch must not hold \"..\" or \"@{\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f || strchr("~^:?*[\\", c) != NULL)
            return ff_err_set(err, FF_EINVAL, "deploy branch: character %zu is not allowed "
                              "(printable ASCII without space and ~^:?*[\\)", i + 1);
    }
    for (const char *p = name;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        int rc = branch_component_check(p, n, err);
        if (rc != 0 || slash == NULL)
            return rc;
        p = slash + 1;
    }
}

/* Parses an object body and refuses keys outside allowed. */
static int parse(const char *data, size_t len, const char *const *allowed, json_t **root,
                 struct ff_err *err)
{
    *root = NULL;
    int rc = ff_json_parse_object(data, len, BODY_MAX, root, err);
    if (rc == 0)
        rc = ff_json_check_keys(*root, allowed, "request body", err);
    return rc;
}

/* Optional fields: absent leaves *out as it is and is not an error. */
static int opt_string(const json_t *root, const char *key, size_t max, const char **out,
                      struct ff_err *err)
{
    int rc = ff_json_get_string(root, key, false, max, out, err);
    return rc == FF_ENOTFOUND ? 0 : rc;
}

static int opt_int(const json_t *root, const char *key, int64_t min, int64_t max,
                   int64_t *out, struct ff_err *err)
{
    int rc = ff_json_get_int(root, key, false, min, max, out, err);
    return rc == FF_ENOTFOUND ? 0 : rc;
}

/* Labels people read (token, key and device names, statuses): no control
 * characters, which would let a value rewrite a terminal or a log line. */
static int label_check(const char *field, const char *s, struct ff_err *err)
{
    for (size_t i = 0; s != NULL && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return ff_err_set(err, FF_EINVAL, "field \"%s\": control character at %zu",
                              field, i + 1);
    }
    return 0;
}

/* An "archs" array: 1..APP_ARCHS_MAX distinct known architectures. */
static int archs_get(const json_t *root, const char *archs_out[APP_ARCHS_MAX], size_t *n,
                     struct ff_err *err)
{
    json_t *archs = NULL;
    *n = 0;
    int rc = ff_json_get_array(root, "archs", true, APP_ARCHS_MAX, &archs, err);
    if (rc == 0 && json_array_size(archs) == 0)
        rc = ff_err_set(err, FF_EINVAL, "field \"archs\" must list at least one architecture");
    for (size_t i = 0; rc == 0 && i < json_array_size(archs); i++) {
        const char *a = json_string_value(json_array_get(archs, i));
        bool ok = a != NULL && arch_check(a, NULL) == 0;
        for (size_t k = 0; ok && k < *n; k++)
            ok = strcmp(a, archs_out[k]) != 0;
        if (!ok)
            rc = ff_err_set(err, FF_EINVAL, "field \"archs\": item %zu must be a distinct "
                            "\"amd64\", \"arm64\" or \"armv7\"", i + 1);
        else
            archs_out[(*n)++] = a;
    }
    return rc;
}

int arch_check(const char *arch, struct ff_err *err)
{
    static const char *const known[] = {"amd64", "arm64", "armv7"};
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
        if (strcmp(arch, known[k]) == 0)
            return 0;
    }
    return ff_err_set(err, FF_EINVAL, "architecture must be \"amd64\", \"arm64\" or "
                      "\"armv7\"");
}

int decode_login(const char *data, size_t len, json_t **root, struct login_body *out,
                 struct ff_err *err)
{
    static const char *const keys[] = {"username", "password", "otp", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "username", true, USER_NAME_MAX, &out->username, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "password", true, FF_SECRET_PASSWORD_MAX,
                                &out->password, err);
    if (rc == 0)
        rc = opt_string(*root, "otp", OTP_CODE_MAX, &out->otp, err);
    return rc;
}

int decode_user(const char *data, size_t len, json_t **root, struct user_body *out,
                struct ff_err *err)
{
    static const char *const keys[] = {"name", "password", "role", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, USER_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = user_name_check(out->name, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "password", true, FF_SECRET_PASSWORD_MAX,
                                &out->password, err);
    if (rc == 0 && strlen(out->password) < FF_SECRET_PASSWORD_MIN)
        rc = ff_err_set(err, FF_EINVAL, "field \"password\" must hold at least %d characters",
                        FF_SECRET_PASSWORD_MIN);
    const char *role = "user";
    if (rc == 0)
        rc = opt_string(*root, "role", 8, &role, err);
    if (rc == 0 && strcmp(role, "admin") == 0)
        out->role = ROLE_ADMIN;
    else if (rc == 0 && strcmp(role, "user") == 0)
        out->role = ROLE_USER;
    else if (rc == 0)
        rc = ff_err_set(err, FF_EINVAL, "field \"role\" must be \"admin\" or \"user\"");
    return rc;
}

int decode_token(const char *data, size_t len, json_t **root, struct token_body *out,
                 struct ff_err *err)
{
    static const char *const keys[] = {"name", "expires_in", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, TOKEN_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = label_check("name", out->name, err);
    if (rc == 0)
        rc = opt_int(*root, "expires_in", 60, API_TOKEN_TTL_MAX, &out->expires_in, err);
    return rc;
}

int decode_app(const char *data, size_t len, json_t **root, struct app_body *out,
               struct ff_err *err)
{
    static const char *const keys[] = {"name", "archs", "deploy_branch", NULL};
    memset(out, 0, sizeof(*out));
    out->deploy_branch = "main";
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, APP_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = app_name_check(out->name, err);
    if (rc == 0)
        rc = archs_get(*root, out->archs, &out->n_archs, err);
    if (rc == 0)
        rc = opt_string(*root, "deploy_branch", BRANCH_NAME_MAX, &out->deploy_branch, err);
    if (rc == 0)
        rc = branch_name_check(out->deploy_branch, err);
    return rc;
}

int decode_member(const char *data, size_t len, json_t **root, struct member_body *out,
                  struct ff_err *err)
{
    static const char *const keys[] = {"role", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    const char *role = NULL;
    if (rc == 0)
        rc = ff_json_get_string(*root, "role", true, 16, &role, err);
    if (rc == 0 && strcmp(role, "developer") == 0)
        out->role = MEMBER_DEVELOPER;
    else if (rc == 0 && strcmp(role, "viewer") == 0)
        out->role = MEMBER_VIEWER;
    else if (rc == 0)
        rc = ff_err_set(err, FF_EINVAL, "field \"role\" must be \"developer\" or \"viewer\"");
    return rc;
}

int decode_provision(const char *data, size_t len, json_t **root, struct provision_body *out,
                     struct ff_err *err)
{
    static const char *const keys[] = {"name", "expires_in", "max_uses", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, TOKEN_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = label_check("name", out->name, err);
    if (rc == 0)
        rc = opt_int(*root, "expires_in", 60, PROVISION_TTL_MAX, &out->expires_in, err);
    if (rc == 0)
        rc = opt_int(*root, "max_uses", 1, PROVISION_USES_MAX, &out->max_uses, err);
    return rc;
}

int device_uuid_check(const char *uuid, struct ff_err *err)
{
    if (strlen(uuid) != DEVICE_UUID_LEN)
        return ff_err_set(err, FF_EINVAL, "device uuid must be %d characters "
                          "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", DEVICE_UUID_LEN);
    for (size_t i = 0; i < DEVICE_UUID_LEN; i++) {
        char c = uuid[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        bool ok = dash ? c == '-' : (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (!ok)
            return ff_err_set(err, FF_EINVAL, "device uuid: character %zu must be %s", i + 1,
                              dash ? "'-'" : "a lowercase hex digit");
    }
    return 0;
}

/* Device types name hardware ("raspberrypi4-64"): [a-z0-9-]. */
static int device_type_check(const char *t, struct ff_err *err)
{
    for (size_t i = 0; t[i] != '\0'; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return ff_err_set(err, FF_EINVAL, "field \"device_type\": character %zu must "
                              "match [a-z0-9-]", i + 1);
    }
    return 0;
}

int decode_device(const char *data, size_t len, json_t **root, struct device_body *out,
                  struct ff_err *err)
{
    static const char *const keys[] = {"uuid", "name", "device_type", "arch", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = opt_string(*root, "uuid", DEVICE_UUID_LEN, &out->uuid, err);
    if (rc == 0 && out->uuid != NULL)
        rc = device_uuid_check(out->uuid, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, DEVICE_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = label_check("name", out->name, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "device_type", true, DEVICE_NAME_MAX, &out->device_type,
                                err);
    if (rc == 0)
        rc = device_type_check(out->device_type, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "arch", true, 8, &out->arch, err);
    if (rc == 0 && arch_check(out->arch, err) != 0)
        rc = ff_err_wrap(err, "field \"arch\"");
    return rc;
}

int decode_device_update(const char *data, size_t len, json_t **root,
                         struct device_update_body *out, struct ff_err *err)
{
    static const char *const keys[] = {"name", "status", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = opt_string(*root, "name", DEVICE_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = label_check("name", out->name, err);
    if (rc == 0)
        rc = opt_string(*root, "status", DEVICE_STATUS_MAX, &out->status, err);
    if (rc == 0)
        rc = label_check("status", out->status, err);
    if (rc == 0 && out->name == NULL && out->status == NULL)
        rc = ff_err_set(err, FF_EINVAL, "request body must set \"name\" or \"status\"");
    return rc;
}

int env_name_check(const char *name, struct ff_err *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > ENV_NAME_MAX)
        return ff_err_set(err, FF_EINVAL, "variable name must hold 1..%d characters",
                          ENV_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return ff_err_set(err, FF_EINVAL, "variable name: character %zu must match %s",
                              i + 1, i == 0 ? "[A-Za-z_]" : "[A-Za-z0-9_]");
    }
    /* FF_ names are the farm's own (what the device agent sets). */
    if (strncmp(name, "FF_", 3) == 0)
        return ff_err_set(err, FF_EINVAL, "variable names starting with FF_ are reserved");
    return 0;
}

int decode_env(const char *data, size_t len, json_t **root, struct env_body *out,
               struct ff_err *err)
{
    static const char *const keys[] = {"value", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0) {
        json_t *v = json_object_get(*root, "value");
        /* An empty value is a value (FOO=), so "" is allowed here. */
        if (v == NULL || !json_is_string(v))
            rc = ff_err_set(err, FF_EINVAL, "field \"value\" must be a string");
        else if (json_string_length(v) > ENV_VALUE_MAX)
            rc = ff_err_set(err, FF_EINVAL, "field \"value\" must hold at most %d bytes",
                            ENV_VALUE_MAX);
        else if (strlen(json_string_value(v)) != json_string_length(v))
            rc = ff_err_set(err, FF_EINVAL, "field \"value\" must not contain NUL");
        else
            out->value = json_string_value(v);
    }
    return rc;
}

int decode_join_token(const char *data, size_t len, json_t **root, struct join_token_body *out,
                      struct ff_err *err)
{
    static const char *const keys[] = {"expires_in", NULL};
    memset(out, 0, sizeof(*out));
    out->expires_in = JOIN_TOKEN_TTL_DEFAULT;
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = opt_int(*root, "expires_in", 60, JOIN_TOKEN_TTL_MAX, &out->expires_in, err);
    return rc;
}

int decode_worker_join(const char *data, size_t len, json_t **root,
                       struct worker_join_body *out, struct ff_err *err)
{
    static const char *const keys[] = {"name", "archs", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, DEVICE_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = label_check("name", out->name, err);
    if (rc == 0)
        rc = archs_get(*root, out->archs, &out->n_archs, err);
    return rc;
}

int decode_build(const char *data, size_t len, json_t **root, struct build_body *out,
                 struct ff_err *err)
{
    static const char *const keys[] = {"commit", "ref", "user", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "commit", true, 40, &out->commit, err);
    for (size_t i = 0; rc == 0 && i < 40; i++) {
        char c = out->commit[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            rc = ff_err_set(err, FF_EINVAL, "field \"commit\" must be 40 lowercase hex digits");
    }
    if (rc == 0)
        rc = ff_json_get_string(*root, "ref", true, 255, &out->ref, err);
    if (rc == 0 && (strncmp(out->ref, "refs/heads/", 11) != 0 || out->ref[11] == '\0'))
        rc = ff_err_set(err, FF_EINVAL, "field \"ref\" must be refs/heads/<branch>");
    if (rc == 0)
        rc = label_check("ref", out->ref, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "user", true, USER_NAME_MAX, &out->user, err);
    if (rc == 0)
        rc = user_name_check(out->user, err);
    return rc;
}
