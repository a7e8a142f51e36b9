/* /v1/2fa: TOTP two-factor for users. Enrolment stores a pending secret
 * and shows it once (as base32 and as an otpauth:// URI); confirming with a
 * code from the app enables it and shows ten one-time recovery codes once;
 * disabling takes a TOTP or a recovery code. Login asks for the second
 * factor through api_2fa_login_check.
 *
 * Wrong codes on confirm and disable are audited as "2fa.failed" and,
 * like wrong logins, lock these two routes for the user after
 * LOGIN_FAILURES_MAX of them in LOGIN_WINDOW_SECONDS: a stolen session
 * token must not be enough to guess its way to turning 2FA off. Secrets
 * and codes never reach a log line or an audit row. */
#include "builder.h"

#include "ff_json.h"

#include <stdio.h>
#include <string.h>

/* Answers 429 when user name has had too many wrong codes of late. */
static bool twofa_locked(struct ff_http_request *req, struct builder *b, const char *name)
{
    int64_t failures = 0;
    struct ff_err err;
    if (db_audit_count(b->db, name, "2fa.failed", (int64_t)time(NULL) - LOGIN_WINDOW_SECONDS,
                       &failures, &err) != 0) {
        api_error_from(req, &err);
        return true;
    }
    if (failures < LOGIN_FAILURES_MAX)
        return false;
    api_audit(b, req, name, "2fa.locked", "failures=%lld", (long long)failures);
    char retry[16];
    (void)snprintf(retry, sizeof(retry), "%d", LOGIN_LOCK_SECONDS);
    ff_http_response_header(req, "Retry-After", retry);
    ff_http_respond_error(req, 429, "locked", "too many wrong two-factor codes for this user; "
                          "retry in %d s", LOGIN_LOCK_SECONDS);
    return true;
}

/* The body of enrol: nothing, or an object without keys. */
static int decode_empty(const char *data, size_t len, struct ff_err *err)
{
    static const char *const keys[] = {NULL};
    if (len == 0)
        return 0;
    json_t *root = NULL;
    int rc = ff_json_parse_object(data, len, BODY_MAX, &root, err);
    if (rc == 0)
        rc = ff_json_check_keys(root, keys, "request body", err);
    json_decref(root);
    return rc;
}

/* The body of confirm and disable: {"code": "..."}. *code is borrowed from
 * *root, which the caller frees even on error. */
static int decode_code(const char *data, size_t len, json_t **root, const char **code,
                       struct ff_err *err)
{
    static const char *const keys[] = {"code", NULL};
    *root = NULL;
    int rc = ff_json_parse_object(data, len, BODY_MAX, root, err);
    if (rc == 0)
        rc = ff_json_check_keys(*root, keys, "request body", err);
    if (rc == 0)
        rc = ff_json_get_string(*root, "code", true, OTP_CODE_MAX, code, err);
    return rc;
}

int api_2fa_code_shape(const char *otp, const char *field, struct ff_err *err)
{
    if (totp_code_check(otp, NULL) == 0)
        return 0;
    char canon[RECOVERY_CODE_CHARS + 1];
    if (totp_recovery_normalise(otp, canon, NULL) == 0) {
        ff_secret_wipe(canon, sizeof(canon));
        return 0;
    }
    return ff_err_set(err, FF_EINVAL, "field \"%s\" must be a %d-digit two-factor code or a "
                      "recovery code (xxxxx-xxxxx-xxxxx-xxxxx)", field, TOTP_DIGITS);
}

/* The stored secret as key bytes. A secret that does not decode is a
 * corrupt database (FF_EDB), not bad input. */
static int secret_key(const struct totp_state *st, unsigned char key[TOTP_SECRET_MAX],
                      size_t *key_len, struct ff_err *err)
{
    struct ff_err why;
    int rc = totp_base32_decode(st->secret, strlen(st->secret), key, TOTP_SECRET_MAX, key_len,
                                &why);
    if (rc == 0 && *key_len == 0)
        rc = ff_err_set(&why, FF_EINVAL, "empty");
    if (rc != 0) {
        ff_secret_wipe(key, TOTP_SECRET_MAX);
        return ff_err_set(err, FF_EDB, "stored two-factor secret is corrupt: %s", why.msg);
    }
    return 0;
}

/* Checks a TOTP code against st (the user's current state) and spends its
 * time step. Errors: FF_EAUTH (wrong or already used), FF_EDB, FF_EBUSY,
 * FF_ECRYPTO. */
static int totp_use(struct builder *b, int64_t user_id, const struct totp_state *st,
                    const char *code, struct ff_err *err)
{
    unsigned char key[TOTP_SECRET_MAX];
    size_t key_len = 0;
    int64_t step = 0;
    int rc = secret_key(st, key, &key_len, err);
    if (rc == 0)
        rc = totp_verify(key, key_len, code, (int64_t)time(NULL), st->last_step, &step, err);
    ff_secret_wipe(key, sizeof(key));
    if (rc == 0)
        rc = db_2fa_step_use(b->db, user_id, st->secret, step, err);
    return rc;
}

/* Spends code, a TOTP or a recovery code, of the user whose enabled state
 * is st (anything else is simply wrong); *recovery says which kind it was
 * and *left how many recovery codes stay (recovery only). Errors as
 * totp_use. */
static int code_use(struct builder *b, int64_t user_id, const struct totp_state *st,
                    const char *code, bool *recovery, int64_t *left, struct ff_err *err)
{
    *recovery = totp_code_check(code, NULL) != 0;
    if (!*recovery)
        return totp_use(b, user_id, st, code, err);
    int rc = db_2fa_recovery_use(b->db, user_id, code, (int64_t)time(NULL), left, err);
    /* A malformed one cannot be a good one. */
    if (rc == FF_EINVAL)
        rc = ff_err_set(err, FF_EAUTH, "recovery code is wrong or already used");
    return rc;
}

/* Overwrites the string value of obj[key] (a secret the response showed). */
static void json_wipe_string(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v)) {
        char *s = (char *)json_string_value(v);
        ff_secret_wipe(s, strlen(s));
    }
}

int api_2fa_enrol(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    struct ff_err err;
    int rc = decode_empty(data, len, &err);
    if (rc != 0)
        return api_error_from(req, &err);
    unsigned char key[TOTP_SECRET_BYTES];
    char secret[TOTP_SECRET_B32_SIZE];
    char *uri = NULL;
    rc = ff_secret_random(key, sizeof(key), &err);
    if (rc == 0) {
        /* Unpadded: authenticator apps read the secret parameter that way. */
        (void)totp_base32_encode(key, sizeof(key), false, secret);
        rc = db_2fa_enrol(b->db, id->user.id, secret, &err);
    }
    if (rc == 0)
        rc = totp_uri(id->user.name, secret, &uri, &err);
    ff_secret_wipe(key, sizeof(key));
    if (rc != 0) {
        ff_secret_wipe(secret, sizeof(secret));
        return api_error_from(req, &err);
    }
    api_audit(b, req, id->user.name, "2fa.enrol", "pending=1");
    json_t *body = json_pack("{s:s,s:s}", "secret", secret, "uri", uri);
    ff_secret_wipe(secret, sizeof(secret));
    ff_secret_free(uri);
    if (body == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    rc = ff_http_respond_json(req, 200, body);
    json_wipe_string(body, "secret");
    json_wipe_string(body, "uri");
    json_decref(body);
    return rc;
}

/* Answers a wrong code on confirm or disable: audited, counted, and 400,
 * not 401 or 403: the caller's token is good and the route is theirs; the
 * code in the body is what is wrong. */
static int code_refused(struct ff_http_request *req, struct builder *b, const char *name,
                        const char *action)
{
    api_audit(b, req, name, "2fa.failed", "action=%s", action);
    return ff_http_respond_error(req, 400, "invalid", "two-factor code is wrong or already "
                                 "used");
}

/* Makes RECOVERY_CODES fresh codes into codes and a JSON array of them
 * into *out (the caller's; wipe its strings). Errors: FF_ECRYPTO,
 * FF_ENOMEM. */
static int recovery_make(char codes[RECOVERY_CODES][RECOVERY_CODE_SIZE], json_t **out,
                         struct ff_err *err)
{
    json_t *arr = json_array();
    int rc = arr != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < RECOVERY_CODES; i++) {
        rc = totp_recovery_new(codes[i], err);
        if (rc == 0 && json_array_append_new(arr, json_string(codes[i])) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    if (rc != 0) {
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char *s = (char *)json_string_value(json_array_get(arr, i));
            ff_secret_wipe(s, strlen(s));
        }
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

int api_2fa_confirm(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    if (twofa_locked(req, b, id->user.name))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    const char *code = NULL;
    struct ff_err err;
    struct totp_state st;
    char codes[RECOVERY_CODES][RECOVERY_CODE_SIZE];
    const char *ptrs[RECOVERY_CODES];
    json_t *list = NULL;
    json_t *body = NULL;
    unsigned char key[TOTP_SECRET_MAX];
    size_t key_len = 0;
    int64_t step = 0;
    memset(&st, 0, sizeof(st));
    memset(codes, 0, sizeof(codes));
    int rc = decode_code(data, len, &root, &code, &err);
    if (rc == 0 && totp_code_check(code, NULL) != 0)
        rc = ff_err_set(&err, FF_EINVAL, "field \"code\" must be the %d-digit code the "
                        "authenticator app shows", TOTP_DIGITS);
    if (rc == 0)
        rc = db_2fa_get(b->db, id->user.id, &st, &err);
    if (rc == 0 && st.enabled)
        rc = ff_err_set(&err, FF_ECONFLICT, "two-factor authentication is already enabled");
    else if (rc == 0 && st.secret[0] == '\0')
        rc = ff_err_set(&err, FF_ECONFLICT, "no two-factor enrolment is pending; "
                        "POST /v1/2fa/enrol first");
    if (rc != 0) {
        rc = api_error_from(req, &err);
        goto out;
    }
    rc = secret_key(&st, key, &key_len, &err);
    if (rc == 0)
        rc = totp_verify(key, key_len, code, (int64_t)time(NULL), st.last_step, &step, &err);
    ff_secret_wipe(key, sizeof(key));
    if (rc == FF_EAUTH) {
        rc = code_refused(req, b, id->user.name, "confirm");
        goto out;
    }
    if (rc == 0)
        rc = recovery_make(codes, &list, &err);
    for (size_t i = 0; i < RECOVERY_CODES; i++)
        ptrs[i] = codes[i];
    if (rc == 0)
        rc = db_2fa_enable(b->db, id->user.id, st.secret, step, (int64_t)time(NULL), ptrs,
                           RECOVERY_CODES, &err);
    if (rc != 0) {
        rc = api_error_from(req, &err);
        goto out;
    }
    api_audit(b, req, id->user.name, "2fa.enable", "recovery_codes=%d", RECOVERY_CODES);
    body = json_pack("{s:O}", "recovery_codes", list);
    rc = body != NULL ? ff_http_respond_json(req, 200, body)
                      : ff_http_respond_error(req, 500, "internal", "out of memory");
out:
    for (size_t i = 0; i < json_array_size(list); i++) {
        char *s = (char *)json_string_value(json_array_get(list, i));
        ff_secret_wipe(s, strlen(s));
    }
    json_decref(body);
    json_decref(list);
    json_decref(root);
    ff_secret_wipe(codes, sizeof(codes));
    ff_secret_wipe(&st, sizeof(st));
    return rc;
}

int api_2fa_disable(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    if (twofa_locked(req, b, id->user.name))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    const char *code = NULL;
    struct ff_err err;
    struct totp_state st;
    bool recovery = false;
    int64_t left = 0;
    memset(&st, 0, sizeof(st));
    int rc = decode_code(data, len, &root, &code, &err);
    if (rc == 0)
        rc = api_2fa_code_shape(code, "code", &err);
    if (rc == 0)
        rc = db_2fa_get(b->db, id->user.id, &st, &err);
    if (rc == 0 && !st.enabled)
        rc = ff_err_set(&err, FF_ECONFLICT, "two-factor authentication is not enabled");
    if (rc == 0)
        rc = code_use(b, id->user.id, &st, code, &recovery, &left, &err);
    ff_secret_wipe(&st, sizeof(st));
    json_decref(root);
    if (rc == FF_EAUTH)
        return code_refused(req, b, id->user.name, "disable");
    if (rc == 0)
        rc = db_2fa_disable(b->db, id->user.id, &err);
    if (rc != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->user.name, "2fa.disable", "with=%s", recovery ? "recovery" : "totp");
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

int api_2fa_login_check(struct ff_http_request *req, struct builder *b, const struct user *u,
                        const char *otp, enum otp_outcome *out, struct ff_err *err)
{
    struct totp_state st;
    int rc = db_2fa_get(b->db, u->id, &st, err);
    if (rc != 0)
        return rc;
    bool recovery = false;
    int64_t left = 0;
    if (!st.enabled) {
        *out = OTP_NOT_NEEDED;
    } else if (otp == NULL) {
        *out = OTP_MISSING;
    } else {
        rc = code_use(b, u->id, &st, otp, &recovery, &left, err);
        *out = rc == 0 ? OTP_OK : OTP_WRONG;
        if (rc == FF_EAUTH)
            rc = 0;
    }
    ff_secret_wipe(&st, sizeof(st));
    if (rc == 0 && *out == OTP_OK && recovery)
        api_audit(b, req, u->name, "2fa.recovery_used", "left=%lld", (long long)left);
    return rc;
}
