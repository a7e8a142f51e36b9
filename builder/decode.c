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
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  (i > 0 && (c == '.' || c == '_' || c == '-'));
        if (!ok)
            return ff_err_set(err, FF_EINVAL, "user name: character %zu must match %s",
                              i + 1, i == 0 ? "[a-z0-9]" : "[a-z0-9._-]");
    }
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

int decode_login(const char *data, size_t len, json_t **root, struct login_body *out,
                 struct ff_err *err)
{
    static const char *const keys[] = {"username", "password", NULL};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "username", true, USER_NAME_MAX, &out->username, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "password", true, FF_SECRET_PASSWORD_MAX,
                                &out->password, err);
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
    if (rc == 0) {
        rc = ff_json_get_string(*root, "role", false, 8, &role, err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
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
    for (size_t i = 0; rc == 0 && out->name[i] != '\0'; i++) {
        unsigned char c = (unsigned char)out->name[i];
        if (c < 0x20 || c == 0x7f)
            rc = ff_err_set(err, FF_EINVAL, "field \"name\": control character at %zu", i + 1);
    }
    if (rc == 0) {
        rc = ff_json_get_int(*root, "expires_in", false, 60, API_TOKEN_TTL_MAX,
                             &out->expires_in, err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    return rc;
}

int decode_app(const char *data, size_t len, json_t **root, struct app_body *out,
               struct ff_err *err)
{
    static const char *const keys[] = {"name", "archs", NULL};
    static const char *const known[] = {"amd64", "arm64", "armv7"};
    memset(out, 0, sizeof(*out));
    int rc = parse(data, len, keys, root, err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "name", true, APP_NAME_MAX, &out->name, err);
    if (rc == 0)
        rc = app_name_check(out->name, err);
    json_t *archs = NULL;
    if (rc == 0)
        rc = ff_json_get_array(*root, "archs", true, APP_ARCHS_MAX, &archs, err);
    if (rc == 0 && json_array_size(archs) == 0)
        rc = ff_err_set(err, FF_EINVAL, "field \"archs\" must list at least one architecture");
    for (size_t i = 0; rc == 0 && i < json_array_size(archs); i++) {
        const char *a = json_string_value(json_array_get(archs, i));
        bool ok = false;
        for (size_t k = 0; a != NULL && k < sizeof(known) / sizeof(known[0]); k++)
            ok = ok || strcmp(a, known[k]) == 0;
        for (size_t k = 0; ok && k < out->n_archs; k++)
            ok = strcmp(a, out->archs[k]) != 0;
        if (!ok)
            rc = ff_err_set(err, FF_EINVAL, "field \"archs\": item %zu must be a distinct "
                            "\"amd64\", \"arm64\" or \"armv7\"", i + 1);
        else
            out->archs[out->n_archs++] = a;
    }
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
