/* Docker token authentication: every /v2/ request carries an ES256 JWT
 * minted by ff-builder; this file verifies it against the builder's public
 * keys and decides per repository and action. The registry holds no
 * private key and knows no user. */
#include "registry.h"

#include "ff_jwt.h"
#include "ff_log.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int auth_keys_load(const struct registry_config *cfg, struct ff_jwt_keyset **out,
                   struct ff_err *err)
{
    struct ff_jwt_keyset *set = ff_jwt_keyset_new();
    if (set == NULL)
        return ff_err_set(err, FF_ENOMEM, "auth: out of memory");
    const char *const *paths = NULL;
    size_t n = ff_conf_list(cfg->conf, "auth", "public_key", &paths);
    for (size_t i = 0; i < n; i++) {
        struct ff_jwt_key *key = NULL;
        int rc = ff_jwt_key_load(paths[i], NULL, false, &key, err);
        if (rc == 0) {
            rc = ff_jwt_keyset_add(set, key, err);
            if (rc != 0)
                ff_jwt_key_free(key);
        }
        if (rc != 0) {
            ff_jwt_keyset_free(set);
            return ff_err_wrap(err, "[auth] public_key \"%s\"", paths[i]);
        }
        ff_log_info(NULL, "auth.key", "path=%s kid=%s", paths[i], ff_jwt_key_kid(key));
    }
    *out = set;
    return 0;
}

void auth_release(struct auth *a)
{
    ff_access_release(&a->access);
}

static const char *action_word(unsigned action)
{
    switch (action) {
    case FF_ACTION_PUSH: return "pull,push";
    case FF_ACTION_DELETE: return "delete";
    case FF_ACTION_ALL: return "*";
    default: return "pull";
    }
}

/* Answers 401 with the challenge the Docker token flow expects: where to
 * get a token and for which scope. error is NULL (no token), or
 * "invalid_token" / "insufficient_scope" (RFC 6750 §3.1). */
static void auth_challenge(struct registry *r, struct ff_http_request *req, const char *type,
                           const char *name, unsigned action, const char *error,
                           const char *message)
{
    char challenge[1024];
    int n = snprintf(challenge, sizeof(challenge), "Bearer realm=\"%s\",service=\"%s\"",
                     ff_conf_string(r->cfg.conf, "auth", "realm"),
                     ff_conf_string(r->cfg.conf, "auth", "service"));
    if (type != NULL && n > 0 && (size_t)n < sizeof(challenge))
        n += snprintf(challenge + n, sizeof(challenge) - (size_t)n, ",scope=\"%s:%s:%s\"",
                      type, name, action_word(action));
    if (error != NULL && n > 0 && (size_t)n < sizeof(challenge))
        (void)snprintf(challenge + n, sizeof(challenge) - (size_t)n, ",error=\"%s\"", error);
    ff_http_response_header(req, "WWW-Authenticate", challenge);
    oci_error(req, 401, "UNAUTHORIZED", "%s", message);
}

static bool rate_check(struct ff_ratelimit *rl, struct ff_http_request *req, const char *key,
                       const char *what)
{
    struct ff_ratelimit_result res;
    ff_ratelimit_take(rl, key, ff_ratelimit_now(), &res);
    if (res.allowed)
        return true;
    char retry[16];
    (void)snprintf(retry, sizeof(retry), "%u", res.retry_after);
    ff_http_response_header(req, "Retry-After", retry);
    ff_log_warn(ff_http_request_id(req), "rate.limited", "by=%s key=%s retry_after=%u", what,
                key, res.retry_after);
    oci_error(req, 429, "TOOMANYREQUESTS", "too many requests from this %s; retry in %u s",
              what, res.retry_after);
    return false;
}

/* Verifies the bearer token of req into a (claims' sub and access). */
static int token_verify(struct registry *r, const char *header, struct auth *a,
                        struct ff_err *err)
{
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return ff_err_set(err, FF_EAUTH, "expected a Bearer token");
    struct ff_jwt_expect expect = {
        .iss = ff_conf_string(r->cfg.conf, "auth", "issuer"),
        .aud = ff_conf_string(r->cfg.conf, "auth", "service"),
        .now = 0,
        .leeway = (long)ff_conf_int(r->cfg.conf, "auth", "leeway"),
    };
    json_t *claims = NULL;
    int rc = ff_jwt_verify(r->keys, header + 7, &expect, &claims, err);
    if (rc != 0)
        return rc;
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    if (sub == NULL || sub[0] == '\0' || strlen(sub) >= sizeof(a->subject)) {
        json_decref(claims);
        return ff_err_set(err, FF_EINVAL, "token: claim \"sub\" missing or too long");
    }
    ff_strlcpy(a->subject, sub, sizeof(a->subject));
    json_t *access = json_object_get(claims, "access");
    rc = access != NULL ? ff_access_from_json(access, &a->access, err) : 0;
    json_decref(claims);
    return rc;
}

bool auth_require(struct registry *r, struct ff_http_request *req, const char *type,
                  const char *name, unsigned action, struct auth *out)
{
    memset(out, 0, sizeof(*out));
    ff_access_init(&out->access);
    if (!rate_check(r->rl_ip, req, ff_http_request_ip(req), "address"))
        return false;
    const char *header = ff_http_request_header(req, "Authorization");
    if (header == NULL) {
        auth_challenge(r, req, type, name, action, NULL, "authentication required");
        return false;
    }
    struct ff_err err;
    ff_err_clear(&err);
    if (token_verify(r, header, out, &err) != 0) {
        ff_log_info(ff_http_request_id(req), "auth.refused", "reason=%s", err.msg);
        auth_release(out);
        auth_challenge(r, req, type, name, action, "invalid_token", err.msg);
        return false;
    }
    if (!rate_check(r->rl_subject, req, out->subject, "token subject")) {
        auth_release(out);
        return false;
    }
    if (type != NULL && !ff_access_allows(&out->access, type, name, action)) {
        ff_log_info(ff_http_request_id(req), "auth.denied", "sub=%s type=%s name=%s action=%s",
                    out->subject, type, name, action_word(action));
        auth_challenge(r, req, type, name, action, "insufficient_scope",
                       "the token does not grant this access");
        auth_release(out);
        return false;
    }
    return true;
}

bool auth_permit(struct registry *r, struct ff_http_request *req, const char *type,
                 const char *name, unsigned action)
{
    struct auth a;
    if (!auth_require(r, req, type, name, action, &a))
        return false;
    auth_release(&a);
    return true;
}

bool auth_allows(const struct auth *a, const char *name, unsigned action)
{
    return ff_access_allows(&a->access, FF_SCOPE_TYPE_REPOSITORY, name, action);
}
