/* /v1/apps: apps are owned by a user, who (or an admin) manages their
 * members. An app's repository in the registry is <owner>/<name>. */
#include "builder.h"

#include "ff_json.h"

#include <stdlib.h>
#include <string.h>

int api_app_create(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *archs = NULL, *out = NULL;
    struct app_body body;
    struct ff_err err;
    char *archs_text = NULL;
    size_t archs_len = 0;
    int64_t app_id = 0;
    int rc = decode_app(data, len, &root, &body, &err);
    if (rc == 0) {
        archs = json_array();
        for (size_t i = 0; archs != NULL && i < body.n_archs; i++) {
            if (json_array_append_new(archs, json_string(body.archs[i])) != 0) {
                json_decref(archs);
                archs = NULL;
            }
        }
        rc = archs != NULL ? ff_json_dump(archs, &archs_text, &archs_len, &err)
                           : ff_err_set(&err, FF_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = db_app_create(b->db, id->user.id, body.name, archs_text, body.deploy_branch, &app_id,
                           &err);
    if (rc == 0)
        rc = db_app_get(b->db, id->user.name, body.name, &(struct app){0}, &out, &err);
    if (rc == 0) {
        api_audit(b, req, id->user.name, "app.create", "app=%s/%s", id->user.name, body.name);
        rc = ff_http_respond_json(req, 201, out);
    } else {
        rc = api_error_from(req, &err);
    }
    free(archs_text);
    json_decref(archs);
    json_decref(out);
    json_decref(root);
    return rc;
}

int api_app_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_app_list(b->db, id->user.id, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

int api_access(struct builder *b, const struct identity *id, int64_t app_id,
               enum app_access *out, struct ff_err *err)
{
    *out = APP_NONE;
    if (id->kind == ID_DEVICE) {
        /* A device reads its own app and nothing else. */
        if (id->app_id == app_id)
            *out = APP_VIEWER;
        return 0;
    }
    if (id->kind != ID_USER)
        return 0;
    if (id->user.role == ROLE_ADMIN) {
        *out = APP_OWNER;
        return 0;
    }
    return db_app_access(b->db, app_id, id->user.id, out, err);
}

int api_access_check(struct ff_http_request *req, const char *what, enum app_access have,
                     enum app_access need)
{
    static const char *const needs[] = {"", "a viewer", "a developer", "the owner or an admin"};
    if (have == APP_NONE)
        return ff_http_respond_error(req, 404, "not_found", "%s not found", what);
    if (have < need)
        return ff_http_respond_error(req, 403, "denied", "only %s of the app may do this",
                                     needs[need]);
    return 1;
}

bool api_app_find(struct ff_http_request *req, struct builder *b, const struct identity *id,
                  enum app_access need, struct app *app, json_t **out_json)
{
    const char *owner = ff_http_request_param(req, "owner");
    const char *name = ff_http_request_param(req, "name");
    struct ff_err err;
    enum app_access have = APP_NONE;
    if (out_json != NULL)
        *out_json = NULL;
    int rc = user_name_check(owner, &err);
    if (rc == 0)
        rc = app_name_check(name, &err);
    if (rc == 0)
        rc = db_app_get(b->db, owner, name, app, out_json, &err);
    if (rc == FF_ENOTFOUND) {
        api_access_check(req, "app", APP_NONE, need);
        return false;
    }
    if (rc == 0)
        rc = api_access(b, id, app->id, &have, &err);
    if (rc == 0 && api_access_check(req, "app", have, need) == 1)
        return true;
    if (out_json != NULL) {
        json_decref(*out_json);
        *out_json = NULL;
    }
    if (rc != 0)
        api_error_from(req, &err);
    return false;
}

int api_app_get(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    json_t *out = NULL;
    if (!api_app_find(req, b, id, APP_VIEWER, &app, &out))
        return 0;
    int rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

int api_app_delete(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    struct ff_err err;
    if (!api_app_find(req, b, id, APP_OWNER, &app, NULL))
        return 0;
    if (db_app_delete(b->db, app.id, &err) != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->name, "app.delete", "app=%s/%s", app.owner, app.name);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

int api_member_put(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    if (!api_app_find(req, b, id, APP_OWNER, &app, NULL))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    struct member_body body;
    struct ff_err err;
    struct user u;
    const char *who = ff_http_request_param(req, "user");
    int rc = decode_member(data, len, &root, &body, &err);
    json_decref(root);
    if (rc == 0)
        rc = db_user_by_name(b->db, who, &u, NULL, &err);
    if (rc == 0 && u.id == app.owner_id)
        rc = ff_err_set(&err, FF_EINVAL, "user \"%s\" owns the app", who);
    if (rc == 0)
        rc = db_member_set(b->db, app.id, u.id, body.role, &err);
    if (rc != 0)
        return api_error_from(req, &err);
    const char *role = body.role == MEMBER_DEVELOPER ? "developer" : "viewer";
    api_audit(b, req, id->name, "app.member", "app=%s/%s user=%s role=%s", app.owner,
              app.name, u.name, role);
    json_t *out = json_pack("{s:s,s:s}", "user", u.name, "role", role);
    if (out == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

int api_member_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    struct app app;
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_app_find(req, b, id, APP_VIEWER, &app, NULL) || !api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_member_list(b->db, app.id, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

int api_member_delete(struct ff_http_request *req, struct builder *b,
                      const struct identity *id)
{
    struct app app;
    if (!api_app_find(req, b, id, APP_OWNER, &app, NULL))
        return 0;
    const char *who = ff_http_request_param(req, "user");
    struct user u;
    struct ff_err err;
    int rc = db_user_by_name(b->db, who, &u, NULL, &err);
    if (rc == 0)
        rc = db_member_delete(b->db, app.id, u.id, &err);
    if (rc != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->name, "app.member.remove", "app=%s/%s user=%s", app.owner, app.name,
              u.name);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}
