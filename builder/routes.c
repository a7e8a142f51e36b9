/* The builder's HTTP surface: the route table, and what every request goes
 * through before its handler: the per-address limit, authentication (a
 * Bearer token on /v1, HTTP Basic on /v2/token), the per-identity limit. */
#include "builder.h"

#include "ff_base64.h"
#include "ff_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest Authorization header value we decode: a user name, a colon and a
 * token of about 50 characters, base64-encoded, is far below this. */
#define AUTH_HEADER_MAX 1024

enum route_auth {
    AUTH_NONE,   /* anonymous: login, health */
    AUTH_BEARER, /* /v1: Authorization: Bearer <secret of an identity> */
    AUTH_BASIC,  /* /v2/token: Basic <identity name>:<secret> */
    AUTH_KEY     /* the handler checks a provisioning key or join token */
};

typedef int (*api_fn)(struct ff_http_request *req, struct builder *b,
                      const struct identity *id);

struct route {
    const char *method;
    const char *pattern;
    api_fn fn;
    enum route_auth auth;
    unsigned kinds; /* identity kinds admitted (AUTH_BEARER, AUTH_BASIC) */
    uint64_t max_body;
};

static int healthz(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    (void)b;
    (void)id;
    return ff_http_respond_bytes(req, 200, "text/plain", "ok\n", 3);
}

#define U ID_USER
#define D ID_DEVICE
#define ANY (ID_USER | ID_DEVICE | ID_WORKER | ID_SERVICE)

/* Every route and the identity kinds that may call it; a handler then
 * decides per object (which app, which device). Nothing is reachable by
 * a kind not listed here. */
static const struct route routes[] = {
    {"GET", "/healthz", healthz, AUTH_NONE, 0, 0},
    {"POST", "/v1/login", api_login, AUTH_NONE, 0, BODY_MAX},
    {"GET", "/v1/whoami", api_whoami, AUTH_BEARER, ANY, 0},
    {"POST", "/v1/users", api_user_create, AUTH_BEARER, U, BODY_MAX},
    {"POST", "/v1/tokens", api_token_create, AUTH_BEARER, U, BODY_MAX},
    {"GET", "/v1/tokens", api_token_list, AUTH_BEARER, U, 0},
    {"DELETE", "/v1/tokens/{id}", api_token_revoke, AUTH_BEARER, U, 0},
    {"POST", "/v1/2fa/enrol", api_2fa_enrol, AUTH_BEARER, U, BODY_MAX},
    {"POST", "/v1/2fa/confirm", api_2fa_confirm, AUTH_BEARER, U, BODY_MAX},
    {"POST", "/v1/2fa/disable", api_2fa_disable, AUTH_BEARER, U, BODY_MAX},
    {"POST", "/v1/keys", api_key_add, AUTH_BEARER, U, BODY_MAX},
    {"GET", "/v1/keys", api_key_list, AUTH_BEARER, U, 0},
    {"GET", "/v1/keys/lookup", api_key_lookup, AUTH_BEARER, ID_SERVICE, 0},
    {"DELETE", "/v1/keys/{id}", api_key_delete, AUTH_BEARER, U, 0},
    {"GET", "/v1/audit", api_audit_list, AUTH_BEARER, U, 0},
    {"POST", "/v1/apps", api_app_create, AUTH_BEARER, U, BODY_MAX},
    {"GET", "/v1/apps", api_app_list, AUTH_BEARER, U, 0},
    {"GET", "/v1/apps/{owner}/{name}", api_app_get, AUTH_BEARER, U | D, 0},
    {"DELETE", "/v1/apps/{owner}/{name}", api_app_delete, AUTH_BEARER, U, 0},
    {"GET", "/v1/apps/{owner}/{name}/members", api_member_list, AUTH_BEARER, U, 0},
    {"PUT", "/v1/apps/{owner}/{name}/members/{user}", api_member_put, AUTH_BEARER, U, BODY_MAX},
    {"DELETE", "/v1/apps/{owner}/{name}/members/{user}", api_member_delete, AUTH_BEARER, U, 0},
    {"POST", "/v1/apps/{owner}/{name}/provisioning-keys", api_provision_create, AUTH_BEARER, U,
     BODY_MAX},
    {"GET", "/v1/apps/{owner}/{name}/provisioning-keys", api_provision_list, AUTH_BEARER, U, 0},
    {"DELETE", "/v1/apps/{owner}/{name}/provisioning-keys/{id}", api_provision_revoke,
     AUTH_BEARER, U, 0},
    {"GET", "/v1/apps/{owner}/{name}/devices", api_device_list, AUTH_BEARER, U, 0},
    {"GET", "/v1/apps/{owner}/{name}/env", api_app_env_list, AUTH_BEARER, U | D, 0},
    {"PUT", "/v1/apps/{owner}/{name}/env/{var}", api_app_env_set, AUTH_BEARER, U, BODY_MAX},
    {"DELETE", "/v1/apps/{owner}/{name}/env/{var}", api_app_env_delete, AUTH_BEARER, U, 0},
    {"GET", "/v1/apps/{owner}/{name}/access", api_git_access, AUTH_BEARER, ID_SERVICE, 0},
    {"POST", "/v1/apps/{owner}/{name}/builds", api_build_start, AUTH_BEARER, ID_SERVICE,
     BODY_MAX},
    {"POST", "/v1/devices", api_device_register, AUTH_KEY, 0, BODY_MAX},
    {"GET", "/v1/devices/{uuid}", api_device_get, AUTH_BEARER, U | D, 0},
    {"PATCH", "/v1/devices/{uuid}", api_device_update, AUTH_BEARER, U | D, BODY_MAX},
    {"DELETE", "/v1/devices/{uuid}", api_device_delete, AUTH_BEARER, U, 0},
    {"GET", "/v1/devices/{uuid}/env", api_device_env_list, AUTH_BEARER, U | D, 0},
    {"PUT", "/v1/devices/{uuid}/env/{var}", api_device_env_set, AUTH_BEARER, U, BODY_MAX},
    {"DELETE", "/v1/devices/{uuid}/env/{var}", api_device_env_delete, AUTH_BEARER, U, 0},
    {"POST", "/v1/workers/join-tokens", api_join_token_create, AUTH_BEARER, U, BODY_MAX},
    {"POST", "/v1/workers/join", api_worker_join, AUTH_KEY, 0, BODY_MAX},
    {"GET", "/v1/workers", api_worker_list, AUTH_BEARER, U, 0},
    {"DELETE", "/v1/workers/{id}", api_worker_revoke, AUTH_BEARER, U, 0},
    {"GET", "/v2/token", api_registry_token, AUTH_BASIC, ANY, 0},
};

#undef U
#undef D
#undef ANY

int api_error_from(struct ff_http_request *req, const struct ff_err *err)
{
    switch (err->code) {
    case FF_EINVAL:
    case FF_ERANGE: return ff_http_respond_error(req, 400, "invalid", "%s", err->msg);
    case FF_ETOOBIG: return ff_http_respond_error(req, 400, "too_big", "%s", err->msg);
    case FF_EAUTH:
    case FF_EEXPIRED: return ff_http_respond_error(req, 401, "unauthorized", "%s", err->msg);
    case FF_EDENIED: return ff_http_respond_error(req, 403, "denied", "%s", err->msg);
    case FF_ENOTFOUND: return ff_http_respond_error(req, 404, "not_found", "%s", err->msg);
    case FF_EEXIST: return ff_http_respond_error(req, 409, "exists", "%s", err->msg);
    case FF_ECONFLICT: return ff_http_respond_error(req, 409, "conflict", "%s", err->msg);
    case FF_EBUSY: return ff_http_respond_error(req, 503, "unavailable", "%s", err->msg);
    default:
        ff_log_error(ff_http_request_id(req), "internal.error", "error=%s code=%s", err->msg,
                     ff_err_name(err->code));
        return ff_http_respond_error(req, 500, "internal", "internal error (request %s)",
                                     ff_http_request_id(req));
    }
}

bool api_page(struct ff_http_request *req, int64_t *after, int *limit)
{
    const char *a = ff_http_request_query(req, "after");
    const char *l = ff_http_request_query(req, "limit");
    int64_t lim = PAGE_DEFAULT;
    *after = 0;
    if ((a != NULL && ff_parse_i64(a, 0, INT64_MAX, after) != 0) ||
        (l != NULL && ff_parse_i64(l, 1, PAGE_MAX, &lim) != 0)) {
        ff_http_respond_error(req, 400, "invalid", "query \"after\" must be an id and "
                              "\"limit\" 1..%d", PAGE_MAX);
        return false;
    }
    *limit = (int)lim;
    return true;
}

void api_audit(struct builder *b, struct ff_http_request *req, const char *actor,
               const char *event, const char *fmt, ...)
{
    char detail[AUDIT_DETAIL_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    struct ff_err err;
    if (db_audit(b->db, actor, ff_http_request_ip(req), event, detail, &err) != 0)
        ff_log_error(ff_http_request_id(req), "audit.failed", "event=%s error=%s", event,
                     err.msg);
    ff_log_info(ff_http_request_id(req), "audit", "event=%s actor=%s", event,
                actor != NULL ? actor : "-");
}

int api_respond_page(struct ff_http_request *req, json_t *items, int64_t next)
{
    json_t *body = json_pack("{s:o,s:o}", "items", items, "next",
                             next > 0 ? json_integer((json_int_t)next) : json_null());
    if (body == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    int rc = ff_http_respond_json(req, 200, body);
    json_decref(body);
    return rc;
}

int api_respond_secret(struct ff_http_request *req, json_t *out, const char *field,
                               const char *secret)
{
    if (json_object_set_new(out, field, json_string(secret)) != 0) {
        json_decref(out);
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    }
    int rc = ff_http_respond_json(req, 201, out);
    char *copy = (char *)json_string_value(json_object_get(out, field));
    if (copy != NULL)
        ff_secret_wipe(copy, strlen(copy));
    json_decref(out);
    return rc;
}

bool api_path_id(struct ff_http_request *req, int64_t *out)
{
    if (ff_parse_i64(ff_http_request_param(req, "id"), 1, INT64_MAX, out) == 0)
        return true;
    ff_http_respond_error(req, 400, "invalid", "id must be a positive integer");
    return false;
}

/* Adds the RateLimit-* headers of res (draft-ietf-httpapi-ratelimit-headers). */
static void rate_headers(struct ff_http_request *req, const struct ff_ratelimit_result *res)
{
    char v[16];
    (void)snprintf(v, sizeof(v), "%u", res->limit);
    ff_http_response_header(req, "RateLimit-Limit", v);
    (void)snprintf(v, sizeof(v), "%u", res->remaining);
    ff_http_response_header(req, "RateLimit-Remaining", v);
    (void)snprintf(v, sizeof(v), "%u", res->reset);
    ff_http_response_header(req, "RateLimit-Reset", v);
}

/* Takes one token for key; on false the request has been answered 429. */
static bool rate_check(struct ff_ratelimit *rl, struct ff_http_request *req, const char *key,
                       const char *what, bool headers)
{
    struct ff_ratelimit_result res;
    ff_ratelimit_take(rl, key, ff_ratelimit_now(), &res);
    if (headers || !res.allowed)
        rate_headers(req, &res);
    if (res.allowed)
        return true;
    char retry[16];
    (void)snprintf(retry, sizeof(retry), "%u", res.retry_after);
    ff_http_response_header(req, "Retry-After", retry);
    ff_log_warn(ff_http_request_id(req), "rate.limited", "by=%s key=%s retry_after=%u", what,
                key, res.retry_after);
    ff_http_respond_error(req, 429, "rate_limited", "too many requests from this %s; retry "
                          "in %u s", what, res.retry_after);
    return false;
}

/* Authorization: Basic base64(name:secret). The password must be a
 * credential of that same identity, never a user's account password, so
 * that a second factor on login cannot be bypassed through the registry. */
static int basic_identity(struct builder *b, const char *header, struct identity *id,
                          struct ff_err *err)
{
    if (strncasecmp(header, "Basic ", 6) != 0)
        return ff_err_set(err, FF_EAUTH, "expected Basic credentials");
    const char *enc = header + 6;
    size_t len = strlen(enc);
    if (len > AUTH_HEADER_MAX)
        return ff_err_set(err, FF_EAUTH, "credentials too long");
    unsigned char *raw = NULL;
    size_t n = 0;
    if (ff_base64_decode(enc, len, false, &raw, &n) != 0)
        return ff_err_set(err, FF_EAUTH, "credentials are not base64");
    char *text = ff_strndup((const char *)raw, n);
    ff_secret_wipe(raw, n);
    free(raw);
    if (text == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc;
    char *colon = strchr(text, ':');
    if (colon == NULL || strlen(text) != n) {
        rc = ff_err_set(err, FF_EAUTH, "credentials must be name:secret");
        goto out;
    }
    *colon = '\0';
    rc = identity_from_secret(b, colon + 1, id, err);
    if (rc == 0 && strcmp(id->name, text) != 0)
        rc = ff_err_set(err, FF_EAUTH, "the secret does not belong to \"%s\"", id->name);
out:
    ff_secret_wipe(text, n);
    free(text);
    return rc;
}

const char *api_bearer(struct ff_http_request *req)
{
    const char *header = ff_http_request_header(req, "Authorization");
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    return header + 7;
}

/* Authenticates req as route rt needs; on false it has been answered. */
static bool authenticate(struct ff_http_request *req, struct builder *b,
                         const struct route *rt, struct identity *id)
{
    const char *header = ff_http_request_header(req, "Authorization");
    struct ff_err err;
    ff_err_clear(&err);
    int rc;
    if (header == NULL)
        rc = ff_err_set(&err, FF_EAUTH, "authentication required");
    else if (rt->auth == AUTH_BASIC)
        rc = basic_identity(b, header, id, &err);
    else if (api_bearer(req) == NULL)
        rc = ff_err_set(&err, FF_EAUTH, "expected a Bearer token");
    else
        rc = identity_from_secret(b, api_bearer(req), id, &err);
    if (rc == FF_EAUTH) {
        ff_log_info(ff_http_request_id(req), "auth.refused", "ip=%s reason=%s",
                    ff_http_request_ip(req), err.msg);
        ff_http_response_header(req, "WWW-Authenticate", rt->auth == AUTH_BASIC ?
                                "Basic realm=\"ff-builder\"" : "Bearer realm=\"ff-builder\"");
        ff_http_respond_error(req, 401, "unauthorized", "%s", err.msg);
        return false;
    }
    if (rc != 0) {
        api_error_from(req, &err);
        return false;
    }
    if (!(rt->kinds & (unsigned)id->kind)) {
        ff_log_info(ff_http_request_id(req), "auth.wrong_kind", "who=%s kind=%s route=%s",
                    id->name, identity_kind_name(id->kind), rt->pattern);
        ff_http_respond_error(req, 403, "denied", "%s credentials may not use %s %s",
                              identity_kind_name(id->kind), rt->method, rt->pattern);
        return false;
    }
    return rate_check(b->rl_identity, req, id->name, "identity", true);
}

static int dispatch(struct ff_http_request *req)
{
    struct builder *b = ff_http_request_userdata(req);
    const char *method = ff_http_request_method(req);
    const char *pattern = ff_http_request_route(req);
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && rt == NULL; i++) {
        if (strcmp(routes[i].method, method) == 0 && strcmp(routes[i].pattern, pattern) == 0)
            rt = &routes[i];
    }
    if (rt == NULL)
        FF_BUG("dispatch: a registered route is missing from the table");
    const char *ip = ff_http_request_ip(req);
    bool has_id = rt->auth == AUTH_BEARER || rt->auth == AUTH_BASIC;
    /* Identity routes carry the identity's RateLimit-* headers instead. */
    if (!rate_check(b->rl_ip, req, ip, "address", !has_id))
        return 0;
    struct identity id;
    memset(&id, 0, sizeof(id));
    if (has_id && !authenticate(req, b, rt, &id))
        return 0;
    return rt->fn(req, b, has_id ? &id : NULL);
}

int routes_register(struct builder *b, struct ff_err *err)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        struct ff_http_handler h = {.body_mode = FF_HTTP_BODY_BUFFER,
                                    .on_request = dispatch,
                                    .max_body = rt->max_body};
        int rc = ff_http_server_route(b->http, rt->method, rt->pattern, &h, b, err);
        if (rc != 0)
            return ff_err_wrap(err, "route %s %s", rt->method, rt->pattern);
    }
    return 0;
}
