/* What ff-gitd asks the builder, with its service key: may this user push
 * or clone this app, and build this commit. gitd never opens the
 * builder's database (DESIGN.md §2); these answers are all it knows. */
#include "builder.h"

#include "ff_json.h"

#include <string.h>

/* The gitd service only; on false the request has been answered 403. */
static bool gitd_only(struct ff_http_request *req, const struct identity *id)
{
    if (id->kind == ID_SERVICE && strcmp(id->name, "svc_" SERVICE_GITD) == 0)
        return true;
    ff_http_respond_error(req, 403, "denied", "only the gitd service asks this");
    return false;
}

/* The app of the {owner}/{name} path parameters; *out_json (may be NULL)
 * as db_app_get. On false the request has been answered. */
static bool path_app(struct ff_http_request *req, struct builder *b, struct app *app,
                     json_t **out_json)
{
    const char *owner = ff_http_request_param(req, "owner");
    const char *name = ff_http_request_param(req, "name");
    struct ff_err err;
    int rc = user_name_check(owner, &err);
    if (rc == 0)
        rc = app_name_check(name, &err);
    if (rc == 0)
        rc = db_app_get(b->db, owner, name, app, out_json, &err);
    if (rc != 0)
        api_error_from(req, &err);
    return rc == 0;
}

static const char *access_name(enum app_access a)
{
    static const char *const names[] = {"none", "viewer", "developer", "owner"};
    return names[a];
}

int api_git_access(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    if (!gitd_only(req, id))
        return 0;
    const char *who = ff_http_request_query(req, "user");
    struct ff_err err;
    struct app app;
    struct user u;
    json_t *app_json = NULL;
    enum app_access have = APP_NONE;
    if (who == NULL)
        return ff_http_respond_error(req, 400, "invalid", "query \"user\" is required");
    if (!path_app(req, b, &app, &app_json))
        return 0;
    int rc = user_name_check(who, &err);
    if (rc == 0)
        rc = db_user_by_name(b->db, who, &u, NULL, &err);
    if (rc == 0) {
        struct identity as_user = {.kind = ID_USER, .user = u};
        rc = api_access(b, &as_user, app.id, &have, &err);
    }
    if (rc != 0) {
        json_decref(app_json);
        return api_error_from(req, &err);
    }
    json_t *out = json_pack("{s:s,s:s,s:b,s:b,s:O,s:O}", "user", u.name, "access",
                            access_name(have), "push", have >= APP_DEVELOPER, "pull",
                            have >= APP_VIEWER, "deploy_branch",
                            json_object_get(app_json, "deploy_branch"), "archs",
                            json_object_get(app_json, "archs"));
    json_decref(app_json);
    if (out == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}

int api_build_start(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    if (!gitd_only(req, id))
        return 0;
    struct app app;
    if (!path_app(req, b, &app, NULL))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    struct build_body body;
    struct ff_err err;
    int rc = decode_build(data, len, &root, &body, &err);
    if (rc != 0) {
        json_decref(root);
        return api_error_from(req, &err);
    }
    api_audit(b, req, body.user, "build.refused", "app=%s/%s commit=%s reason=no_builder",
              app.owner, app.name, body.commit);
    json_decref(root);
    /* Build dispatch lands with the orchestration issue; until a worker can
     * take the job, the honest answer is that nobody can build it. */
    return ff_http_respond_error(req, 503, "no_builder", "no builder available");
}
