/* What operators (admins) do: read the audit log, create users, let
 * workers join. The server decides who is an admin; these commands only
 * ask. */
#include "cli.h"

#include "ff_str.h"
#include "ff_secret.h"

#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

int cmd_audit(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col cols[] = {
        {"ID", "id", NULL, TABLE_TEXT},       {"TIME", "at", NULL, TABLE_TIME},
        {"ACTOR", "actor", NULL, TABLE_TEXT}, {"IP", "ip", NULL, TABLE_TEXT},
        {"EVENT", "event", NULL, TABLE_TEXT}, {"DETAIL", "detail", NULL, TABLE_TEXT},
    };
    int64_t limit = 0;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_list(c, "/v1/audit", limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, cols, N_OF(cols), err);
    json_decref(page);
    return rc;
}

/* The new user's password: typed twice at a terminal, one line from a
 * pipe. *out is the caller's (ff_secret_free). */
static int new_password(const char *user, char **out, struct ff_err *err)
{
    char *label = ff_asprintf("password for %s: ", user);
    char *again = NULL;
    if (label == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = prompt_line(label, "password", false, out, err);
    free(label);
    if (rc != 0 || !prompt_is_tty())
        return rc;
    rc = prompt_line("again: ", "password", false, &again, err);
    if (rc == 0 && !ff_secret_str_equal(*out, again))
        rc = ff_err_set(err, FF_EINVAL, "the two passwords differ");
    ff_secret_free(again);
    if (rc != 0) {
        ff_secret_free(*out);
        *out = NULL;
    }
    return rc;
}

int cmd_users_create(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col fields[] = {
        {"id", "id", NULL, TABLE_TEXT},
        {"name", "name", NULL, TABLE_TEXT},
        {"role", "role", NULL, TABLE_TEXT},
    };
    const char *role = args_value(a, "--admin") != NULL ? "admin" : "user";
    char *password = NULL;
    json_t *body = NULL, *resp = NULL;
    int rc = new_password(a->pos[0], &password, err);
    if (rc == 0) {
        body = json_pack("{s:s,s:s,s:s}", "name", a->pos[0], "password", password, "role", role);
        if (body == NULL)
            rc = ff_err_set(err, FF_EINVAL, "the user name and password must be UTF-8");
    }
    if (rc == 0)
        rc = api_send(c, "POST", "/v1/users", body, &resp, err);
    if (rc == 0)
        rc = out_record(c, resp, fields, N_OF(fields), err);
    api_wipe_member(body, "password");
    json_decref(body);
    json_decref(resp);
    ff_secret_free(password);
    return rc;
}

int cmd_workers_join_token(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col fields[] = {
        {"id", "id", NULL, TABLE_TEXT},
        {"expires", "expires_at", NULL, TABLE_TIME},
        {"token", "token", NULL, TABLE_TEXT},
    };
    int64_t expires = 0;
    json_t *body = json_object(), *resp = NULL;
    if (body == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = args_int(a, "--expires-in", 1, INT64_MAX, &expires, err);
    if (rc == FF_ENOTFOUND)
        rc = 0;
    else if (rc == 0 && json_object_set_new(body, "expires_in", json_integer(expires)) != 0)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    if (rc == 0)
        rc = api_send(c, "POST", "/v1/workers/join-tokens", body, &resp, err);
    /* Shown once: the worker's operator passes it to ff-worker join. */
    if (rc == 0)
        rc = out_record(c, resp, fields, N_OF(fields), err);
    api_wipe_member(resp, "token");
    json_decref(body);
    json_decref(resp);
    return rc;
}
