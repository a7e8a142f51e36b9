/* ff app: apps and their members. */
#include "cli.h"

#include "ff_str.h"
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const struct table_col app_cols[] = {
    {"APP", "owner", "name", TABLE_TEXT},
    {"ARCHS", "archs", NULL, TABLE_TEXT},
    {"BRANCH", "deploy_branch", NULL, TABLE_TEXT},
    {"RELEASE", "target_release", NULL, TABLE_TEXT},
    {"CREATED", "created_at", NULL, TABLE_TIME},
};

static const struct table_col app_fields[] = {
    {"app", "owner", "name", TABLE_TEXT},
    {"archs", "archs", NULL, TABLE_TEXT},
    {"deploy branch", "deploy_branch", NULL, TABLE_TEXT},
    {"target release", "target_release", NULL, TABLE_TEXT},
    {"created", "created_at", NULL, TABLE_TIME},
};

int cmd_app_create(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    const char *arch = args_value(a, "--arch");
    if (arch == NULL)
        return ff_err_set(err, CLI_EUSAGE, "--arch A[,B] is required (amd64, arm64, armv7)");
    json_t *archs = json_array(), *body = NULL, *resp = NULL;
    int rc = archs != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
    for (const char *p = arch; rc == 0;) {
        size_t n = strcspn(p, ",");
        if (n == 0)
            rc = ff_err_set(err, CLI_EUSAGE, "--arch: empty architecture in \"%s\"", arch);
        else if (json_array_append_new(archs, json_stringn(p, n)) != 0)
            rc = ff_err_set(err, CLI_EUSAGE, "--arch must be UTF-8");
        if (rc != 0 || p[n] == '\0')
            break;
        p += n + 1;
    }
    if (rc == 0) {
        body = json_pack("{s:s,s:O}", "name", a->pos[0], "archs", archs);
        if (body == NULL)
            rc = ff_err_set(err, FF_EINVAL, "the app name must be UTF-8");
    }
    const char *branch = args_value(a, "--deploy-branch");
    if (rc == 0 && branch != NULL &&
        json_object_set_new(body, "deploy_branch", json_string(branch)) != 0)
        rc = ff_err_set(err, FF_EINVAL, "--deploy-branch must be UTF-8");
    if (rc == 0)
        rc = api_send(c, "POST", "/v1/apps", body, &resp, err);
    if (rc == 0)
        rc = out_record(c, resp, app_fields, N_OF(app_fields), err);
    json_decref(archs);
    json_decref(body);
    json_decref(resp);
    return rc;
}

int cmd_app_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    int64_t limit = 0;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_list(c, "/v1/apps", limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, app_cols, N_OF(app_cols), err);
    json_decref(page);
    return rc;
}

int cmd_app_show(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    char *path = NULL;
    json_t *app = NULL;
    int rc = api_app_path(a->pos[0], "", NULL, &path, err);
    if (rc == 0)
        rc = api_get(c, path, &app, err);
    if (rc == 0)
        rc = out_record(c, app, app_fields, N_OF(app_fields), err);
    json_decref(app);
    free(path);
    return api_about(rc, a->pos[0], err);
}

int cmd_app_rm(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    char *path = NULL;
    int rc = api_app_path(a->pos[0], "", NULL, &path, err);
    if (rc == 0)
        rc = api_send(c, "DELETE", path, NULL, NULL, err);
    if (rc == 0)
        rc = out_line(c, err, "removed app %s", a->pos[0]);
    free(path);
    return api_about(rc, a->pos[0], err);
}

static int members_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col cols[] = {
        {"USER", "user", NULL, TABLE_TEXT},
        {"ROLE", "role", NULL, TABLE_TEXT},
    };
    int64_t limit = 0;
    char *path = NULL;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_app_path(a->pos[0], "/members", NULL, &path, err);
    if (rc == 0)
        rc = api_list(c, path, limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, cols, N_OF(cols), err);
    json_decref(page);
    free(path);
    return rc;
}

int cmd_app_members(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    const char *role = args_value(a, "--role");
    const char *verb = a->n_pos > 1 ? a->pos[1] : NULL;
    bool add = verb != NULL && strcmp(verb, "add") == 0;
    bool rm = verb != NULL && strcmp(verb, "rm") == 0;
    if (verb != NULL && !add && !rm)
        return ff_err_set(err, CLI_EUSAGE, "expected \"add\" or \"rm\" after the app, not "
                          "\"%s\"", verb);
    if ((add || rm) && a->n_pos != 3)
        return ff_err_set(err, CLI_EUSAGE, "%s needs exactly one USER", verb);
    if (verb == NULL && a->n_pos != 1)
        return ff_err_set(err, CLI_EUSAGE, "too many operands");
    if (add && role == NULL)
        return ff_err_set(err, CLI_EUSAGE, "add needs --role developer|viewer");
    if (!add && role != NULL)
        return ff_err_set(err, CLI_EUSAGE, "--role goes only with add");
    if (add && strcmp(role, "developer") != 0 && strcmp(role, "viewer") != 0)
        return ff_err_set(err, CLI_EUSAGE, "--role must be developer or viewer");
    if (verb == NULL)
        return api_about(members_list(c, a, err), a->pos[0], err);
    if (args_value(a, "--limit") != NULL)
        return ff_err_set(err, CLI_EUSAGE, "--limit goes only with the list of members");
    char *path = NULL;
    json_t *body = NULL, *resp = NULL;
    int rc = api_app_path(a->pos[0], "/members/%s", a->pos[2], &path, err);
    if (rc == 0 && add) {
        body = json_pack("{s:s}", "role", role);
        rc = body != NULL ? api_send(c, "PUT", path, body, &resp, err)
                          : ff_err_set(err, FF_ENOMEM, "out of memory");
        if (rc == 0)
            rc = c->json ? out_json(c, resp, err)
                         : out_line(c, err, "%s is now a %s of %s", a->pos[2], role, a->pos[0]);
    } else if (rc == 0) {
        rc = api_send(c, "DELETE", path, NULL, NULL, err);
        if (rc == 0)
            rc = out_line(c, err, "%s is no longer a member of %s", a->pos[2], a->pos[0]);
    }
    json_decref(body);
    json_decref(resp);
    free(path);
    return api_about(rc, a->pos[0], err);
}
