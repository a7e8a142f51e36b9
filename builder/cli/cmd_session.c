/* ff login, ff logout, ff whoami: the session token and who it is. */
#include "cli.h"

#include "ff_str.h"
#include "ff_secret.h"

#include <stdlib.h>
#include <string.h>

/* Server error code of a 401 that asks for the TOTP code. */
#define OTP_REQUIRED "otp_required"

/* POSTs body to /v1/login without a token; the password in the body is
 * wiped by api_do's copy and by the caller's json_decref-time wipe. */
static int login_post(struct cli *c, json_t *body, json_t **out, char code[CLI_CODE_SIZE],
                      struct ff_err *err)
{
    struct api_req r = {.method = "POST", .path = "/v1/login", .body = body, .anonymous = true};
    return api_do(c, &r, out, code, err);
}

/* Stores the session token of a login answer and says who is logged in. */
static int login_done(struct cli *c, json_t *resp, struct ff_err *err)
{
    const char *token = json_string_value(json_object_get(resp, "token"));
    if (token == NULL)
        return ff_err_set(err, FF_EINVAL, "the server's login answer holds no token");
    int rc = config_token_write(c->cfg.dir, token, err);
    api_wipe_member(resp, "token");
    if (rc != 0)
        return ff_err_wrap(err, "cannot store the session token");
    /* Never print the token: it is stored, and --json output is often
     * kept in logs. */
    (void)json_object_del(resp, "token");
    if (c->json)
        return out_json(c, resp, err);
    json_t *user = json_object_get(resp, "user");
    static const struct table_col cols[] = {
        {"user", "name", NULL, TABLE_TEXT},
        {"role", "role", NULL, TABLE_TEXT},
    };
    static const struct table_col expires = {"expires", "expires_at", NULL, TABLE_TIME};
    char *name = NULL, *role = NULL, *until = NULL;
    rc = table_cell(user, &cols[0], &name, err);
    if (rc == 0)
        rc = table_cell(user, &cols[1], &role, err);
    if (rc == 0)
        rc = table_cell(resp, &expires, &until, err);
    if (rc == 0)
        rc = out_line(c, err, "logged in as %s (%s) until %s; token stored in %s/token", name,
                      role, until, c->cfg.dir);
    free(name);
    free(role);
    free(until);
    return rc;
}

int cmd_login(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    if (c->cfg.dir == NULL)
        return ff_err_set(err, FF_EINVAL, "cannot store a token: neither XDG_CONFIG_HOME nor "
                          "HOME is set to an absolute path");
    const char *user = args_value(a, "--user");
    char *typed = NULL, *password = NULL, *otp = NULL, *label = NULL;
    json_t *body = NULL, *resp = NULL;
    char code[CLI_CODE_SIZE];
    int rc = 0;
    if (user == NULL && !prompt_is_tty())
        return ff_err_set(err, CLI_EUSAGE, "--user NAME is needed when standard input is not "
                          "a terminal");
    if (user == NULL) {
        rc = prompt_line("user: ", "user name", true, &typed, err);
        if (rc != 0)
            goto out;
        user = typed;
    }
    label = ff_asprintf("password for %s: ", user);
    if (label == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    rc = prompt_line(label, "password", false, &password, err);
    if (rc != 0)
        goto out;
    body = json_pack("{s:s,s:s}", "username", user, "password", password);
    if (body == NULL) {
        rc = ff_err_set(err, FF_EINVAL, "the user name and password must be UTF-8");
        goto out;
    }
    rc = login_post(c, body, &resp, code, err);
    if (rc == FF_EAUTH && strcmp(code, OTP_REQUIRED) == 0) {
        rc = prompt_line("2FA code: ", "2FA code", true, &otp, err);
        if (rc == FF_EINVAL)
            rc = ff_err_set(err, FF_EAUTH, "this account needs a 2FA code after the password "
                            "(none was given)");
        if (rc == 0 && json_object_set_new(body, "otp", json_string(otp)) != 0)
            rc = ff_err_set(err, FF_EINVAL, "the 2FA code must be UTF-8");
        if (rc == 0)
            rc = login_post(c, body, &resp, code, err);
    }
    if (rc == 0)
        rc = login_done(c, resp, err);
out:
    api_wipe_member(body, "password");
    api_wipe_member(body, "otp");
    json_decref(body);
    json_decref(resp);
    ff_secret_free(password);
    ff_secret_free(otp);
    free(typed);
    free(label);
    return rc;
}

/* Revokes the session of the stored token on the server. A 401 means the
 * server no longer accepts it, which is what logging out wants. */
static int logout_revoke(struct cli *c, struct ff_err *err)
{
    json_t *me = NULL;
    int rc = api_get(c, "/v1/whoami", &me, err);
    json_t *id = json_object_get(me, "token_id");
    char *path = NULL;
    if (rc == 0 && !json_is_integer(id))
        rc = ff_err_set(err, FF_EINVAL, "the server's whoami answer has no token_id");
    if (rc == 0) {
        char num[24];
        (void)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        path = api_pathf("/v1/tokens/%s", num);
        rc = path != NULL ? api_send(c, "DELETE", path, NULL, NULL, err)
                          : ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    free(path);
    json_decref(me);
    return rc == FF_EAUTH ? 0 : rc;
}

int cmd_logout(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    (void)a;
    if (c->cfg.dir == NULL)
        return ff_err_set(err, FF_EINVAL, "no token store: neither XDG_CONFIG_HOME nor HOME is "
                          "set to an absolute path");
    /* Only the stored token is logged out: FF_TOKEN or an env file's
     * admin token belong to someone's scripts. */
    char *token = NULL;
    int rc = config_token_read(c->cfg.dir, &token, err);
    if (rc == FF_ENOTFOUND)
        return out_line(c, err, "not logged in (no token in %s)", c->cfg.dir);
    if (rc != 0)
        return rc;
    ff_secret_free(c->cfg.token);
    c->cfg.token = token;
    c->cfg.token_source = CLI_TOKEN_STORE;
    struct ff_err rerr;
    ff_err_clear(&rerr);
    int revoke_rc = logout_revoke(c, &rerr);
    rc = config_token_remove(c->cfg.dir, err);
    if (rc != 0 && rc != FF_ENOTFOUND)
        return rc;
    if (revoke_rc != 0) {
        *err = rerr;
        return ff_err_wrap(err, "the token was removed here, but the server did not revoke "
                           "it (it ends when it expires)");
    }
    return out_line(c, err, "logged out");
}

int cmd_whoami(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    (void)a;
    static const struct table_col all[] = {
        {"name", "name", NULL, TABLE_TEXT},   {"kind", "kind", NULL, TABLE_TEXT},
        {"role", "role", NULL, TABLE_TEXT},   {"id", "id", NULL, TABLE_TEXT},
        {"uuid", "uuid", NULL, TABLE_TEXT},   {"token id", "token_id", NULL, TABLE_TEXT},
    };
    json_t *me = NULL;
    int rc = api_get(c, "/v1/whoami", &me, err);
    if (rc != 0)
        return rc;
    /* Each kind of identity has its own fields: show those present. */
    struct table_col shown[sizeof(all) / sizeof(all[0])];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (json_object_get(me, all[i].key) != NULL)
            shown[n++] = all[i];
    }
    rc = out_record(c, me, shown, n, err);
    json_decref(me);
    return rc;
}
