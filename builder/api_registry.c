/* GET /v2/token: the Docker registry token endpoint. The client (skopeo,
 * docker, a device, a worker) authenticates with HTTP Basic: its identity
 * name and a secret of that identity (builder.h); it gets an ES256 JWT whose access
 * claim holds what it asked for and may have (grant.c). Denied scopes are
 * left out of the token, as distribution expects, and audited. */
#include "builder.h"

#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

static int scope_add(void *ctx, const char *value)
{
    struct ff_access *requested = ctx;
    struct ff_err err;
    return ff_scope_parse(value, requested, &err) == 0 ? 0 : 1;
}

struct app_ctx {
    struct builder *b;
    const struct identity *id;
};

/* Users pull apps they own or are members of (admins: every app); a
 * device pulls its own app's repository. */
static bool can_pull_app(void *ctx, const char *owner, const char *app)
{
    struct app_ctx *c = ctx;
    struct app a;
    enum app_access acc = APP_NONE;
    struct ff_err err;
    int rc = db_app_get(c->b->db, owner, app, &a, NULL, &err);
    if (rc == 0)
        rc = api_access(c->b, c->id, a.id, &acc, &err);
    if (rc != 0 && rc != FF_ENOTFOUND)
        ff_log_error(NULL, "grant.lookup.failed", "error=%s", err.msg);
    return rc == 0 && acc >= APP_VIEWER;
}

/* A worker pushes the repository of a job it holds, and nothing else. */
static bool can_push_app(void *ctx, const char *owner, const char *app)
{
    struct app_ctx *c = ctx;
    bool ok = false;
    struct ff_err err;
    if (db_worker_holds_app(c->b->db, c->id->worker_id, owner, app, &ok, &err) != 0) {
        ff_log_error(NULL, "grant.lookup.failed", "error=%s", err.msg);
        return false;
    }
    return ok;
}

/* Audits each denied scope. */
static void audit_denied(struct ff_http_request *req, struct builder *b, const char *who,
                         const struct ff_access *denied)
{
    for (size_t i = 0; i < denied->n; i++) {
        const struct ff_access_entry *e = &denied->entries[i];
        char *scope = NULL;
        if (ff_access_format_scope(e->type, e->name, e->actions, &scope, NULL) != 0)
            continue;
        api_audit(b, req, who, "token.denied", "scope=%s", scope);
        free(scope);
    }
}

int api_registry_token(struct ff_http_request *req, struct builder *b,
                       const struct identity *id)
{
    const struct ff_conf *c = b->cfg.conf;
    const char *service = ff_http_request_query(req, "service");
    const char *want = ff_conf_string(c, "tokens", "service");
    if (service == NULL || strcmp(service, want) != 0)
        return ff_http_respond_error(req, 400, "invalid", "query \"service\" must be \"%s\"",
                                     want);
    struct ff_access requested, granted, denied;
    ff_access_init(&requested);
    ff_access_init(&granted);
    ff_access_init(&denied);
    struct ff_err err;
    json_t *claims = NULL, *body = NULL;
    char *token = NULL;
    int rc;
    if (ff_http_request_query_each(req, "scope", scope_add, &requested) != 0) {
        rc = ff_http_respond_error(req, 400, "invalid", "query \"scope\" is malformed or "
                                   "asks for more than %d resources", FF_ACCESS_MAX);
        goto out;
    }
    struct app_ctx actx = {.b = b, .id = id};
    struct grant_subject subject = {
        .name = id->name,
        .admin = id->kind == ID_USER && id->user.role == ROLE_ADMIN,
        .library_pull = id->kind != ID_SERVICE,
        .can_pull_app = id->kind == ID_USER || id->kind == ID_DEVICE ? can_pull_app : NULL,
        .can_push_app = id->kind == ID_WORKER ? can_push_app : NULL,
        .ctx = &actx};
    rc = grant_compute(&subject, &requested, &granted, &denied, &err);
    if (rc != 0) {
        rc = api_error_from(req, &err);
        goto out;
    }
    audit_denied(req, b, id->name, &denied);
    int64_t now = (int64_t)time(NULL);
    int64_t ttl = ff_conf_int(c, "tokens", "ttl");
    rc = token_claims(ff_conf_string(c, "tokens", "issuer"), want, id->name, now, ttl,
                      &granted, &claims, &err);
    if (rc == 0)
        rc = ff_jwt_sign(b->token_key, claims, &token, &err);
    if (rc != 0) {
        rc = api_error_from(req, &err);
        goto out;
    }
    char issued[32];
    token_rfc3339(now, issued);
    body = json_pack("{s:s,s:s,s:I,s:s}", "token", token, "access_token", token,
                     "expires_in", (json_int_t)ttl, "issued_at", issued);
    if (body == NULL)
        rc = ff_http_respond_error(req, 500, "internal", "out of memory");
    else
        rc = ff_http_respond_json(req, 200, body);
    ff_log_info(ff_http_request_id(req), "token.issued", "sub=%s granted=%zu denied=%zu",
                id->name, granted.n, denied.n);
out:
    json_decref(body);
    json_decref(claims);
    free(token);
    ff_access_release(&requested);
    ff_access_release(&granted);
    ff_access_release(&denied);
    return rc;
}
