/* ff provision-key, ff devices, ff env: what an app owner manages about
 * the devices of an app. */
#include "cli.h"

#include "ff_secret.h"
#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const struct table_col device_cols[] = {
    {"UUID", "uuid", NULL, TABLE_TEXT},
    {"NAME", "name", NULL, TABLE_TEXT},
    {"TYPE", "device_type", NULL, TABLE_TEXT},
    {"ARCH", "arch", NULL, TABLE_TEXT},
    {"STATUS", "status", NULL, TABLE_TEXT},
    {"LAST SEEN", "last_seen_at", NULL, TABLE_TIME},
    {"CREATED", "created_at", NULL, TABLE_TIME},
};

static const struct table_col device_fields[] = {
    {"uuid", "uuid", NULL, TABLE_TEXT},
    {"name", "name", NULL, TABLE_TEXT},
    {"app", "app", NULL, TABLE_TEXT},
    {"type", "device_type", NULL, TABLE_TEXT},
    {"arch", "arch", NULL, TABLE_TEXT},
    {"status", "status", NULL, TABLE_TEXT},
    {"last seen", "last_seen_at", NULL, TABLE_TIME},
    {"created", "created_at", NULL, TABLE_TIME},
};

/* Sets member key of body to the integer option name when it was given. */
static int opt_member(const struct cli_args *a, const char *name, int64_t min, json_t *body,
                      const char *key, struct ff_err *err)
{
    int64_t v = 0;
    int rc = args_int(a, name, min, INT64_MAX, &v, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc == 0 && json_object_set_new(body, key, json_integer((json_int_t)v)) != 0)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    return rc;
}

int cmd_pkey_create(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col fields[] = {
        {"id", "id", NULL, TABLE_TEXT},
        {"name", "name", NULL, TABLE_TEXT},
        {"expires", "expires_at", NULL, TABLE_TIME},
        {"max uses", "max_uses", NULL, TABLE_TEXT},
        {"key", "key", NULL, TABLE_TEXT},
    };
    const char *name = args_value(a, "--name");
    if (name == NULL)
        return ff_err_set(err, CLI_EUSAGE, "--name N is required");
    char *path = NULL;
    json_t *body = json_pack("{s:s}", "name", name), *resp = NULL;
    int rc = body != NULL ? 0 : ff_err_set(err, FF_EINVAL, "--name must be UTF-8");
    if (rc == 0)
        rc = opt_member(a, "--expires-in", 1, body, "expires_in", err);
    if (rc == 0)
        rc = opt_member(a, "--max-uses", 1, body, "max_uses", err);
    if (rc == 0)
        rc = api_app_path(a->pos[0], "/provisioning-keys", NULL, &path, err);
    if (rc == 0)
        rc = api_send(c, "POST", path, body, &resp, err);
    /* Shown once: devices of the app register with it. */
    if (rc == 0)
        rc = out_record(c, resp, fields, N_OF(fields), err);
    api_wipe_member(resp, "key");
    json_decref(body);
    json_decref(resp);
    free(path);
    return api_about(rc, a->pos[0], err);
}

int cmd_pkey_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col cols[] = {
        {"ID", "id", NULL, TABLE_TEXT},
        {"NAME", "name", NULL, TABLE_TEXT},
        {"USES", "uses", NULL, TABLE_TEXT},
        {"MAX USES", "max_uses", NULL, TABLE_TEXT},
        {"EXPIRES", "expires_at", NULL, TABLE_TIME},
        {"CREATED BY", "created_by", NULL, TABLE_TEXT},
        {"CREATED", "created_at", NULL, TABLE_TIME},
        {"REVOKED", "revoked_at", NULL, TABLE_TIME},
    };
    int64_t limit = 0;
    char *path = NULL;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_app_path(a->pos[0], "/provisioning-keys", NULL, &path, err);
    if (rc == 0)
        rc = api_list(c, path, limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, cols, N_OF(cols), err);
    json_decref(page);
    free(path);
    return api_about(rc, a->pos[0], err);
}

int cmd_pkey_revoke(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    int64_t id = 0;
    char *path = NULL;
    int rc = args_id(a->pos[1], "provisioning key id", &id, err);
    if (rc == 0)
        rc = api_app_path(a->pos[0], "/provisioning-keys/%s", a->pos[1], &path, err);
    if (rc == 0)
        rc = api_send(c, "DELETE", path, NULL, NULL, err);
    if (rc == 0)
        rc = out_line(c, err, "revoked provisioning key %s of %s", a->pos[1], a->pos[0]);
    free(path);
    return api_about(rc, a->pos[0], err);
}

int cmd_devices_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    int64_t limit = 0;
    char *path = NULL;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_app_path(a->pos[0], "/devices", NULL, &path, err);
    if (rc == 0)
        rc = api_list(c, path, limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, device_cols, N_OF(device_cols), err);
    json_decref(page);
    free(path);
    return api_about(rc, a->pos[0], err);
}

/* GETs /v1/devices/<uuid>. */
static int device_get(struct cli *c, const char *uuid, json_t **out, struct ff_err *err)
{
    char *path = api_pathf("/v1/devices/%s", uuid);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = api_get(c, path, out, err);
    free(path);
    return rc;
}

int cmd_devices_show(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    json_t *dev = NULL;
    int rc = device_get(c, a->pos[0], &dev, err);
    if (rc == 0)
        rc = out_record(c, dev, device_fields, N_OF(device_fields), err);
    json_decref(dev);
    return api_about(rc, a->pos[0], err);
}

int cmd_devices_rm(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    char *path = api_pathf("/v1/devices/%s", a->pos[0]);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = api_send(c, "DELETE", path, NULL, NULL, err);
    if (rc == 0)
        rc = out_line(c, err, "removed device %s; its key no longer works", a->pos[0]);
    free(path);
    return api_about(rc, a->pos[0], err);
}

/* The env path of the app operand, or, with --device, of that device
 * after checking it belongs to the app (so a mistyped UUID cannot change
 * another app's device); name (may be NULL) is the variable. */
static int env_path(struct cli *c, const struct cli_args *a, const char *name, char **out,
                    struct ff_err *err)
{
    *out = NULL;
    const char *uuid = args_value(a, "--device");
    char *app_path = NULL;
    int rc = api_app_path(a->pos[0], name != NULL ? "/env/%s" : "/env", name, &app_path, err);
    if (rc != 0 || uuid == NULL) {
        *out = app_path;
        return rc;
    }
    free(app_path);
    json_t *dev = NULL;
    rc = device_get(c, uuid, &dev, err);
    const char *app = json_string_value(json_object_get(dev, "app"));
    if (rc == 0 && (app == NULL || strcmp(app, a->pos[0]) != 0)) {
        char shown[FF_STR_QUOTE_SIZE];
        ff_str_quote(app != NULL ? app : "", app != NULL ? strlen(app) : 0, shown);
        rc = ff_err_set(err, FF_EINVAL, "device %s belongs to app \"%s\", not %s", uuid, shown,
                        a->pos[0]);
    }
    json_decref(dev);
    if (rc != 0)
        return rc;
    *out = name != NULL ? api_pathf("/v1/devices/%s/env/%s", uuid, name)
                        : api_pathf("/v1/devices/%s/env", uuid);
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
}

int cmd_env_set(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    const char *arg = a->pos[1];
    const char *eq = strchr(arg, '=');
    char *name = ff_strndup(arg, eq != NULL ? (size_t)(eq - arg) : strlen(arg));
    char *typed = NULL, *path = NULL, *label = NULL;
    json_t *body = NULL, *resp = NULL;
    if (name == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    if (name[0] == '\0')
        rc = ff_err_set(err, CLI_EUSAGE, "expected NAME=VALUE, or NAME to read the value from "
                        "standard input");
    /* A secret value stays off the command line: NAME alone reads it. */
    if (rc == 0 && eq == NULL) {
        label = ff_asprintf("value of %s: ", name);
        rc = label != NULL ? prompt_line(label, "value", false, &typed, err)
                           : ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = env_path(c, a, name, &path, err);
    if (rc == 0) {
        body = json_pack("{s:s}", "value", eq != NULL ? eq + 1 : typed);
        if (body == NULL)
            rc = ff_err_set(err, FF_EINVAL, "the value must be UTF-8");
    }
    if (rc == 0)
        rc = api_send(c, "PUT", path, body, &resp, err);
    if (rc == 0)
        rc = c->json ? out_json(c, resp, err) : out_line(c, err, "set %s", name);
    api_wipe_member(body, "value");
    api_wipe_member(resp, "value");
    json_decref(body);
    json_decref(resp);
    ff_secret_free(typed);
    free(label);
    free(name);
    free(path);
    return api_about(rc, a->pos[0], err);
}

static int name_cmp(const void *x, const void *y)
{
    const char *const *l = x;
    const char *const *r = y;
    return strcmp(*l, *r);
}

/* {"vars":{NAME:value}} as items sorted by name, for the table. */
static int env_items(const json_t *resp, json_t **out, struct ff_err *err)
{
    json_t *vars = json_object_get(resp, "vars");
    if (!json_is_object(vars))
        return ff_err_set(err, FF_EINVAL, "the server's answer is not {\"vars\":{…}}");
    size_t n = json_object_size(vars), i = 0;
    const char **keys = calloc(n > 0 ? n : 1, sizeof(*keys));
    json_t *items = json_array();
    if (keys == NULL || items == NULL) {
        free(keys);
        json_decref(items);
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    const char *k;
    json_t *v;
    json_object_foreach(vars, k, v) {
        keys[i++] = k;
    }
    qsort(keys, n, sizeof(*keys), name_cmp);
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        if (json_array_append_new(items, json_pack("{s:s,s:O}", "name", keys[i], "value",
                                                   json_object_get(vars, keys[i]))) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    free(keys);
    if (rc != 0) {
        json_decref(items);
        return rc;
    }
    *out = items;
    return 0;
}

int cmd_env_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col cols[] = {
        {"NAME", "name", NULL, TABLE_TEXT},
        {"VALUE", "value", NULL, TABLE_TEXT},
    };
    char *path = NULL;
    json_t *resp = NULL, *items = NULL;
    int rc = env_path(c, a, NULL, &path, err);
    if (rc == 0)
        rc = api_get(c, path, &resp, err);
    if (rc == 0 && c->json)
        rc = out_json(c, resp, err);
    else if (rc == 0)
        rc = env_items(resp, &items, err);
    if (rc == 0 && items != NULL)
        rc = table_print(c->out, cols, N_OF(cols), items, err);
    json_decref(items);
    json_decref(resp);
    free(path);
    return api_about(rc, a->pos[0], err);
}

int cmd_env_rm(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    char *path = NULL;
    int rc = env_path(c, a, a->pos[1], &path, err);
    if (rc == 0)
        rc = api_send(c, "DELETE", path, NULL, NULL, err);
    if (rc == 0)
        rc = out_line(c, err, "removed %s", a->pos[1]);
    free(path);
    return api_about(rc, a->pos[0], err);
}
