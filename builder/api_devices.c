/* Devices: an app's owner makes provisioning keys; a device registers
 * itself with one and gets its own device key, shown once. A device key
 * reads its own record, its app and its variables, and reports its status;
 * deleting the device revokes the key at once (it is looked up per
 * request). Variables are per app, overridden per device. */
#include "builder.h"

#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int api_provision_create(struct ff_http_request *req, struct builder *b,
                         const struct identity *id)
{
    struct app app;
    if (!api_app_find(req, b, id, APP_OWNER, &app, NULL))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *out = NULL;
    struct provision_body body;
    struct ff_err err;
    char *key = NULL;
    char hash[FF_SECRET_HASH_HEX_SIZE];
    int rc = decode_provision(data, len, &root, &body, &err);
    if (rc == 0)
        rc = ff_secret_token_new(PROVISION_KEY_PREFIX, &key, hash, &err);
    if (rc == 0) {
        struct provision_new p = {.app_id = app.id,
                                  .name = body.name,
                                  .hash = hash,
                                  .created_by = id->name,
                                  .expires_at = body.expires_in > 0
                                                    ? (int64_t)time(NULL) + body.expires_in
                                                    : 0,
                                  .max_uses = body.max_uses};
        rc = db_provision_create(b->db, &p, &out, &err);
    }
    if (rc != 0) {
        json_decref(root);
        ff_secret_free(key);
        return api_error_from(req, &err);
    }
    api_audit(b, req, id->name, "provision_key.create", "app=%s/%s id=%lld name=%s", app.owner,
              app.name, (long long)json_integer_value(json_object_get(out, "id")), body.name);
    json_decref(root);
    rc = api_respond_secret(req, out, "key", key);
    ff_secret_free(key);
    return rc;
}

int api_provision_list(struct ff_http_request *req, struct builder *b,
                       const struct identity *id)
{
    struct app app;
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_app_find(req, b, id, APP_OWNER, &app, NULL) || !api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_provision_list(b->db, app.id, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

int api_provision_revoke(struct ff_http_request *req, struct builder *b,
                         const struct identity *id)
{
    struct app app;
    int64_t kid = 0;
    if (!api_app_find(req, b, id, APP_OWNER, &app, NULL) || !api_path_id(req, &kid))
        return 0;
    struct ff_err err;
    if (db_provision_revoke(b->db, app.id, kid, (int64_t)time(NULL), &err) != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->name, "provision_key.revoke", "app=%s/%s id=%lld", app.owner,
              app.name, (long long)kid);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

/* A random (version 4) UUID in canonical form. */
static int uuid_new(char out[DEVICE_UUID_LEN + 1], struct ff_err *err)
{
    unsigned char r[16];
    int rc = ff_secret_random(r, sizeof(r), err);
    if (rc != 0)
        return rc;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (size_t i = 0; i < sizeof(r); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        (void)snprintf(out + o, 3, "%02x", r[i]);
        o += 2;
    }
    return 0;
}

int api_device_register(struct ff_http_request *req, struct builder *b,
                        const struct identity *id)
{
    (void)id;
    const char *pkey = api_bearer(req);
    if (pkey == NULL || strncmp(pkey, PROVISION_KEY_PREFIX "_", 4) != 0) {
        api_audit(b, req, NULL, "device.register.refused", "reason=no provisioning key");
        ff_http_response_header(req, "WWW-Authenticate", "Bearer realm=\"ff-builder\"");
        return ff_http_respond_error(req, 401, "unauthorized", "a provisioning key is "
                                     "required (Authorization: Bearer ffp_...)");
    }
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *out = NULL;
    struct device_body body;
    struct ff_err err;
    char uuid[DEVICE_UUID_LEN + 1];
    char *key = NULL;
    char key_hash[FF_SECRET_HASH_HEX_SIZE], pkey_hash[FF_SECRET_HASH_HEX_SIZE];
    ff_secret_token_hash(pkey, pkey_hash);
    int rc = decode_device(data, len, &root, &body, &err);
    if (rc == 0 && body.uuid != NULL)
        ff_strlcpy(uuid, body.uuid, sizeof(uuid));
    else if (rc == 0)
        rc = uuid_new(uuid, &err);
    if (rc == 0)
        rc = ff_secret_token_new(DEVICE_KEY_PREFIX, &key, key_hash, &err);
    if (rc == 0) {
        struct device_new d = {.uuid = uuid,
                               .name = body.name,
                               .device_type = body.device_type,
                               .arch = body.arch,
                               .key_hash = key_hash};
        rc = db_device_register(b->db, pkey_hash, (int64_t)time(NULL), &d, &out, &err);
    }
    json_decref(root);
    if (rc == FF_EAUTH)
        api_audit(b, req, NULL, "device.register.refused", "reason=%s", err.msg);
    if (rc != 0) {
        ff_secret_free(key);
        return api_error_from(req, &err);
    }
    api_audit(b, req, NULL, "device.register", "device=d_%s app=%s", uuid,
              json_string_value(json_object_get(out, "app")));
    rc = api_respond_secret(req, out, "key", key);
    ff_secret_free(key);
    return rc;
}

int api_device_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_app_find(req, b, id, APP_VIEWER, &app, NULL) || !api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_device_list(b->db, app.id, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

/* Looks up the device of the {uuid} path parameter and checks that id
 * has need on it: a device has APP_VIEWER on itself and nothing on other
 * devices; users have their access to the device's app. On false the
 * request has been answered. */
static bool device_find(struct ff_http_request *req, struct builder *b,
                        const struct identity *id, enum app_access need, struct device *dev,
                        json_t **out_json)
{
    const char *uuid = ff_http_request_param(req, "uuid");
    struct ff_err err;
    enum app_access have = APP_NONE;
    if (out_json != NULL)
        *out_json = NULL;
    int rc = device_uuid_check(uuid, &err);
    if (rc == 0)
        rc = db_device_get(b->db, uuid, dev, out_json, &err);
    if (rc == 0 && id->kind == ID_DEVICE)
        have = id->device_id == dev->id ? APP_VIEWER : APP_NONE;
    else if (rc == 0)
        rc = api_access(b, id, dev->app_id, &have, &err);
    if (rc == 0 && api_access_check(req, "device", have, need) == 1)
        return true;
    if (out_json != NULL) {
        json_decref(*out_json);
        *out_json = NULL;
    }
    if (rc == FF_ENOTFOUND)
        api_access_check(req, "device", APP_NONE, need);
    else if (rc != 0)
        api_error_from(req, &err);
    return false;
}

int api_device_get(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct device dev;
    json_t *out = NULL;
    if (!device_find(req, b, id, APP_VIEWER, &dev, &out))
        return 0;
    int rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

int api_device_update(struct ff_http_request *req, struct builder *b,
                      const struct identity *id)
{
    struct device dev;
    /* The device itself reports its status and may rename itself; people
     * rename devices of apps they develop, but a status is the device's
     * own report. */
    bool self = id->kind == ID_DEVICE;
    if (!device_find(req, b, id, self ? APP_VIEWER : APP_DEVELOPER, &dev, NULL))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *out = NULL;
    struct device_update_body body;
    struct ff_err err;
    int rc = decode_device_update(data, len, &root, &body, &err);
    if (rc == 0 && !self && body.status != NULL)
        rc = ff_err_set(&err, FF_EDENIED, "only the device itself reports its status");
    if (rc == 0)
        rc = db_device_update(b->db, dev.id, body.name, body.status, &err);
    if (rc == 0)
        rc = db_device_get(b->db, dev.uuid, &dev, &out, &err);
    json_decref(root);
    if (rc != 0)
        return api_error_from(req, &err);
    rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

int api_device_delete(struct ff_http_request *req, struct builder *b,
                      const struct identity *id)
{
    struct device dev;
    if (!device_find(req, b, id, APP_OWNER, &dev, NULL))
        return 0;
    struct ff_err err;
    if (db_device_delete(b->db, dev.id, &err) != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->name, "device.delete", "device=d_%s", dev.uuid);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

/* Answers 200 {"vars": {...}} with the variables of the app, overridden
 * by the device's when device_id is not 0. */
static int env_respond(struct ff_http_request *req, struct builder *b, int64_t app_id,
                       int64_t device_id)
{
    json_t *vars = NULL;
    struct ff_err err;
    if (db_env_get(b->db, app_id, device_id, &vars, &err) != 0)
        return api_error_from(req, &err);
    json_t *out = json_pack("{s:o}", "vars", vars);
    if (out == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    int rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

/* Sets variable {var} of the app (device_id 0) or of the device from the
 * request body, answering 200 {name, value}. */
static int env_set(struct ff_http_request *req, struct builder *b, const struct identity *id,
                   int64_t app_id, int64_t device_id, const char *where)
{
    const char *name = ff_http_request_param(req, "var");
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *out = NULL;
    struct env_body body;
    struct ff_err err;
    int rc = env_name_check(name, &err);
    if (rc == 0)
        rc = decode_env(data, len, &root, &body, &err);
    if (rc == 0)
        rc = db_env_set(b->db, app_id, device_id, name, body.value, &err);
    if (rc == 0)
        out = json_pack("{s:s,s:s}", "name", name, "value", body.value);
    json_decref(root);
    if (rc != 0)
        return api_error_from(req, &err);
    if (out == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    api_audit(b, req, id->name, "env.set", "%s name=%s", where, name);
    rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

static int env_delete(struct ff_http_request *req, struct builder *b, const struct identity *id,
                      int64_t app_id, int64_t device_id, const char *where)
{
    const char *name = ff_http_request_param(req, "var");
    struct ff_err err;
    int rc = env_name_check(name, &err);
    if (rc == 0)
        rc = db_env_delete(b->db, app_id, device_id, name, &err);
    if (rc != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->name, "env.delete", "%s name=%s", where, name);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

int api_app_env_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    if (!api_app_find(req, b, id, APP_VIEWER, &app, NULL))
        return 0;
    return env_respond(req, b, app.id, 0);
}

int api_app_env_set(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    if (!api_app_find(req, b, id, APP_DEVELOPER, &app, NULL))
        return 0;
    char where[USER_NAME_MAX + APP_NAME_MAX + 8];
    (void)snprintf(where, sizeof(where), "app=%s/%s", app.owner, app.name);
    return env_set(req, b, id, app.id, 0, where);
}

int api_app_env_delete(struct ff_http_request *req, struct builder *b,
                       const struct identity *id)
{
    struct app app;
    if (!api_app_find(req, b, id, APP_DEVELOPER, &app, NULL))
        return 0;
    char where[USER_NAME_MAX + APP_NAME_MAX + 8];
    (void)snprintf(where, sizeof(where), "app=%s/%s", app.owner, app.name);
    return env_delete(req, b, id, app.id, 0, where);
}

int api_device_env_list(struct ff_http_request *req, struct builder *b,
                        const struct identity *id)
{
    struct device dev;
    if (!device_find(req, b, id, APP_VIEWER, &dev, NULL))
        return 0;
    return env_respond(req, b, dev.app_id, dev.id);
}

int api_device_env_set(struct ff_http_request *req, struct builder *b,
                       const struct identity *id)
{
    struct device dev;
    if (!device_find(req, b, id, APP_DEVELOPER, &dev, NULL))
        return 0;
    char where[DEVICE_UUID_LEN + 16];
    (void)snprintf(where, sizeof(where), "device=d_%s", dev.uuid);
    return env_set(req, b, id, dev.app_id, dev.id, where);
}

int api_device_env_delete(struct ff_http_request *req, struct builder *b,
                          const struct identity *id)
{
    struct device dev;
    if (!device_find(req, b, id, APP_DEVELOPER, &dev, NULL))
        return 0;
    char where[DEVICE_UUID_LEN + 16];
    (void)snprintf(where, sizeof(where), "device=d_%s", dev.uuid);
    return env_delete(req, b, id, dev.app_id, dev.id, where);
}
