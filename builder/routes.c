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
    AUTH_BEARER, /* /v1: Authorization: Bearer <token> */
    AUTH_BASIC   /* /v2/token: Basic user:<token> */
};

typedef int (*api_fn)(struct ff_http_request *req, struct builder *b,
                      const struct identity *id);

struct route {
    const char *method;
    const char *pattern;
    api_fn fn;
    enum route_auth auth;
    uint64_t max_body;
};

static int healthz(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    (void)b;
    (void)id;
    return ff_http_respond_bytes(req, 200, "text/plain", "ok\n", 3);
}

static const struct route routes[] = {
    {"GET", "/healthz", healthz, AUTH_NONE, 0},
    {"POST", "/v1/login", api_login, AUTH_NONE, BODY_MAX},
    {"GET", "/v1/whoami", api_whoami, AUTH_BEARER, 0},
    {"POST", "/v1/users", api_user_create, AUTH_BEARER, BODY_MAX},
    {"POST", "/v1/tokens", api_token_create, AUTH_BEARER, BODY_MAX},
    {"GET", "/v1/tokens", api_token_list, AUTH_BEARER, 0},
    {"DELETE", "/v1/tokens/{id}", api_token_revoke, AUTH_BEARER, 0},
    {"GET", "/v1/audit", api_audit_list, AUTH_BEARER, 0},
    {"POST", "/v1/apps", api_app_create, AUTH_BEARER, BODY_MAX},
    {"GET", "/v1/apps", api_app_list, AUTH_BEARER, 0},
    {"GET", "/v1/apps/{owner}/{name}", api_app_get, AUTH_BEARER, 0},
    {"DELETE", "/v1/apps/{owner}/{name}", api_app_delete, AUTH_BEARER, 0},
    {"PUT", "/v1/apps/{owner}/{name}/members/{user}", api_member_put, AUTH_BEARER, BODY_MAX},
    {"GET", "/v2/token", api_registry_token, AUTH_BASIC, 0},
};

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

/* Looks token up: *id is its user when it is live. */
static int token_identity(struct builder *b, const char *token, struct identity *id,
                          struct ff_err *err)
{
    char hash[FF_SECRET_HASH_HEX_SIZE];
    ff_secret_token_hash(token, hash);
    if (hash[0] == '\0')
        return ff_err_set(err, FF_ENOMEM, "out of memory hashing a token");
    return db_token_lookup(b->db, hash, (int64_t)time(NULL), &id->user, &id->token_id, err);
}

/* Authorization: Basic base64(user:token). The password must be a session
 * or API token of that same user, never the account password, so that a
 * second factor on login cannot be bypassed through the registry. */
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
        rc = ff_err_set(err, FF_EAUTH, "credentials must be user:token");
        goto out;
    }
    *colon = '\0';
    rc = token_identity(b, colon + 1, id, err);
    if (rc == 0 && strcmp(id->user.name, text) != 0)
        rc = ff_err_set(err, FF_EAUTH, "token does not belong to user \"%s\"", id->user.name);
out:
    ff_secret_wipe(text, n);
    free(text);
    return rc;
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
    if (!rate_check(b->rl_ip, req, ip, "address", rt->auth == AUTH_NONE))
        return 0;
    struct identity id;
    memset(&id, 0, sizeof(id));
    if (rt->auth != AUTH_NONE) {
        const char *header = ff_http_request_header(req, "Authorization");
        struct ff_err err;
        ff_err_clear(&err);
        int rc;
        if (header == NULL)
            rc = ff_err_set(&err, FF_EAUTH, "authentication required");
        else if (rt->auth == AUTH_BASIC)
            rc = basic_identity(b, header, &id, &err);
        else if (strncasecmp(header, "Bearer ", 7) != 0)
            rc = ff_err_set(&err, FF_EAUTH, "expected a Bearer token");
        else
            rc = token_identity(b, header + 7, &id, &err);
        if (rc == FF_EAUTH) {
            ff_log_info(ff_http_request_id(req), "auth.refused", "ip=%s reason=%s", ip, err.msg);
            ff_http_response_header(req, "WWW-Authenticate", rt->auth == AUTH_BASIC ?
                                    "Basic realm=\"ff-builder\"" : "Bearer realm=\"ff-builder\"");
            return ff_http_respond_error(req, 401, "unauthorized", "%s", err.msg);
        }
        if (rc != 0)
            return api_error_from(req, &err);
        if (!rate_check(b->rl_identity, req, id.user.name, "identity", true))
            return 0;
    }
    return rt->fn(req, b, rt->auth == AUTH_NONE ? NULL : &id);
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
