/* /v1 users and their credentials: password login into a session token,
 * whoami, user creation by admins, named API tokens, and the audit log
 * for admins. Tokens are shown
 * once and stored only as SHA-256 hashes. */
#include "builder.h"

#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *role_name(enum role r)
{
    return r == ROLE_ADMIN ? "admin" : "user";
}

/* Makes a token of kind for user, audits event once it is stored, and
 * answers 201 with it (shown once). */
static int token_issue(struct ff_http_request *req, struct builder *b, const struct user *u,
                       const char *name, enum token_kind kind, int64_t expires_at,
                       const char *event)
{
    struct ff_err err;
    char *token = NULL;
    char hash[FF_SECRET_HASH_HEX_SIZE];
    int64_t id = 0;
    int rc = ff_secret_token_new(USER_TOKEN_PREFIX, &token, hash, &err);
    if (rc == 0)
        rc = db_token_create(b->db, u->id, name, hash, kind, expires_at, &id, &err);
    if (rc != 0) {
        ff_secret_free(token);
        return api_error_from(req, &err);
    }
    api_audit(b, req, u->name, event, "id=%lld name=%s", (long long)id, name);
    json_t *body = json_pack("{s:I,s:s,s:s,s:s,s:o,s:{s:s,s:s}}", "id", (json_int_t)id,
                             "name", name, "kind", kind == TOKEN_API ? "api" : "session",
                             "token", token, "expires_at",
                             expires_at > 0 ? json_integer((json_int_t)expires_at)
                                            : json_null(),
                             "user", "name", u->name, "role", role_name(u->role));
    ff_secret_free(token);
    if (body == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    rc = ff_http_respond_json(req, 201, body);
    /* Wipe the JSON's copy; the serialised one belongs to the server. */
    json_t *t = json_object_get(body, "token");
    if (t != NULL) {
        char *s = (char *)json_string_value(t);
        ff_secret_wipe(s, strlen(s));
    }
    json_decref(body);
    return rc;
}

/* Whether name is locked out after too many failed logins; answers 429. */
static bool login_locked(struct ff_http_request *req, struct builder *b, const char *name)
{
    int64_t now = (int64_t)time(NULL);
    int64_t failures = 0;
    struct ff_err err;
    if (db_audit_count(b->db, name, "login.failed", now - LOGIN_WINDOW_SECONDS, &failures,
                       &err) != 0) {
        api_error_from(req, &err);
        return true;
    }
    if (failures < LOGIN_FAILURES_MAX)
        return false;
    api_audit(b, req, name, "login.locked", "failures=%lld", (long long)failures);
    char retry[16];
    (void)snprintf(retry, sizeof(retry), "%d", LOGIN_LOCK_SECONDS);
    ff_http_response_header(req, "Retry-After", retry);
    ff_http_respond_error(req, 429, "locked", "too many failed logins for this user; retry "
                          "in %d s", LOGIN_LOCK_SECONDS);
    return true;
}

int api_login(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    (void)id;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    struct login_body body;
    struct ff_err err;
    char *hash = NULL;
    struct user u;
    enum otp_outcome otp = OTP_NOT_NEEDED;
    int rc = decode_login(data, len, &root, &body, &err);
    /* Something that cannot be a code is bad input, refused before
     * anything is counted or spent. */
    if (rc == 0 && body.otp != NULL)
        rc = api_2fa_code_shape(body.otp, "otp", &err);
    if (rc != 0) {
        rc = api_error_from(req, &err);
        goto out;
    }
    if (login_locked(req, b, body.username)) {
        rc = 0;
        goto out;
    }
    rc = db_user_by_name(b->db, body.username, &u, &hash, &err);
    if (rc == FF_ENOTFOUND) {
        /* Spend the same time as for a real user, so timing does not say
         * which names exist. */
        (void)ff_secret_password_verify(body.password, b->dummy_hash, NULL);
        rc = ff_err_set(&err, FF_EAUTH, "wrong user name or password");
    } else if (rc == 0) {
        rc = ff_secret_password_verify(body.password, hash, &err);
        if (rc == FF_EAUTH)
            rc = ff_err_set(&err, FF_EAUTH, "wrong user name or password");
    }
    ff_secret_free(hash);
    if (rc == FF_EAUTH) {
        api_audit(b, req, body.username, "login.failed", "reason=password");
        rc = ff_http_respond_error(req, 401, "unauthorized", "%s", err.msg);
        goto out;
    }
    /* The second factor is asked for only once the password is right. A
     * missing code is not a failure (the client prompts and retries), so
     * it is audited under its own event, which the lock-out does not
     * count; a wrong code counts like a wrong password. */
    if (rc == 0)
        rc = api_2fa_login_check(req, b, &u, body.otp, &otp, &err);
    if (rc != 0) {
        rc = api_error_from(req, &err);
        goto out;
    }
    if (otp == OTP_MISSING) {
        api_audit(b, req, u.name, "login.otp_required", "reason=otp_missing");
        rc = ff_http_respond_error(req, 401, "otp_required", "two-factor code required");
        goto out;
    }
    if (otp == OTP_WRONG) {
        api_audit(b, req, u.name, "login.failed", "reason=otp");
        rc = ff_http_respond_error(req, 401, "unauthorized", "two-factor code is wrong or "
                                   "already used");
        goto out;
    }
    int64_t ttl = ff_conf_int(b->cfg.conf, "tokens", "session_ttl");
    rc = token_issue(req, b, &u, "session", TOKEN_SESSION, (int64_t)time(NULL) + ttl,
                     "login.ok");
out:
    /* The password and code live in the parsed body: wipe them with it. */
    if (body.password != NULL)
        ff_secret_wipe((char *)body.password, strlen(body.password));
    if (body.otp != NULL)
        ff_secret_wipe((char *)body.otp, strlen(body.otp));
    json_decref(root);
    return rc;
}

int api_whoami(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    (void)b;
    json_t *body = json_pack("{s:s,s:s}", "kind", identity_kind_name(id->kind), "name", id->name);
    int rc = body != NULL ? 0 : -1;
    if (rc == 0 && id->kind == ID_USER)
        rc = json_object_update_new(body, json_pack("{s:I,s:s,s:I}", "id",
                                                    (json_int_t)id->user.id, "role",
                                                    role_name(id->user.role), "token_id",
                                                    (json_int_t)id->token_id));
    if (rc == 0 && id->kind == ID_DEVICE)
        rc = json_object_set_new(body, "uuid", json_string(id->device_uuid));
    if (rc == 0 && id->kind == ID_WORKER)
        rc = json_object_set_new(body, "id", json_integer((json_int_t)id->worker_id));
    if (rc != 0) {
        json_decref(body);
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    }
    rc = ff_http_respond_json(req, 200, body);
    json_decref(body);
    return rc;
}

int api_user_create(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    if (id->user.role != ROLE_ADMIN)
        return ff_http_respond_error(req, 403, "denied", "only admins create users");
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    struct user_body body;
    struct ff_err err;
    char *hash = NULL;
    int64_t uid = 0;
    int rc = decode_user(data, len, &root, &body, &err);
    if (rc == 0)
        rc = ff_secret_password_hash(body.password, &hash, &err);
    if (rc == 0)
        rc = db_user_create(b->db, body.name, hash, body.role, &uid, &err);
    ff_secret_free(hash);
    if (rc != 0) {
        json_decref(root);
        return api_error_from(req, &err);
    }
    api_audit(b, req, id->user.name, "user.create", "user=%s role=%s", body.name,
          role_name(body.role));
    json_t *out = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)uid, "name", body.name, "role",
                            role_name(body.role));
    json_decref(root);
    if (out == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    rc = ff_http_respond_json(req, 201, out);
    json_decref(out);
    return rc;
}

int api_token_create(struct ff_http_request *req, struct builder *b,
                     const struct identity *id)
{
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    struct token_body body;
    struct ff_err err;
    int rc = decode_token(data, len, &root, &body, &err);
    if (rc != 0) {
        json_decref(root);
        return api_error_from(req, &err);
    }
    int64_t expires = body.expires_in > 0 ? (int64_t)time(NULL) + body.expires_in : 0;
    rc = token_issue(req, b, &id->user, body.name, TOKEN_API, expires, "token.create");
    json_decref(root);
    return rc;
}

int api_token_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_token_list(b->db, id->user.id, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

int api_token_revoke(struct ff_http_request *req, struct builder *b,
                     const struct identity *id)
{
    int64_t tid = 0;
    struct ff_err err;
    if (ff_parse_i64(ff_http_request_param(req, "id"), 1, INT64_MAX, &tid) != 0)
        return ff_http_respond_error(req, 400, "invalid", "token id must be a positive "
                                     "integer");
    if (db_token_revoke(b->db, id->user.id, tid, (int64_t)time(NULL), &err) != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->user.name, "token.revoke", "id=%lld", (long long)tid);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

int api_audit_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    if (id->user.role != ROLE_ADMIN)
        return ff_http_respond_error(req, 403, "denied", "only admins read the audit log");
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_audit_list(b->db, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}
