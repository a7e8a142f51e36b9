/* A user's own credentials: SSH keys (ff keys), API tokens (ff tokens)
 * and the second factor (ff 2fa). */
#include "cli.h"

#include "ff_secret.h"
#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Longest public key file read: an RSA 16384-bit key is under 3 KiB. */
#define PUBKEY_FILE_MAX 16384

static const struct table_col key_cols[] = {
    {"ID", "id", NULL, TABLE_TEXT},
    {"NAME", "name", NULL, TABLE_TEXT},
    {"TYPE", "type", NULL, TABLE_TEXT},
    {"FINGERPRINT", "fingerprint", NULL, TABLE_TEXT},
    {"CREATED", "created_at", NULL, TABLE_TIME},
};

static const struct table_col key_fields[] = {
    {"id", "id", NULL, TABLE_TEXT},
    {"name", "name", NULL, TABLE_TEXT},
    {"type", "type", NULL, TABLE_TEXT},
    {"fingerprint", "fingerprint", NULL, TABLE_TEXT},
    {"created", "created_at", NULL, TABLE_TIME},
};

/* A DELETE of path that answers 204, then what to say. */
static int delete_and_say(struct cli *c, const char *path, const char *done, const char *what,
                          struct ff_err *err)
{
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = api_send(c, "DELETE", path, NULL, NULL, err);
    if (rc == 0)
        rc = out_line(c, err, "%s %s", done, what);
    return rc;
}

/* The first non-empty line of a public key file, and its comment (the
 * third field) as a default name. Both are the caller's to free. */
static int pubkey_parse(const char *file, const char *text, char **line, char **comment,
                        struct ff_err *err)
{
    *line = *comment = NULL;
    const char *s = text;
    while (*s == '\n' || *s == '\r' || *s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, "\r\n");
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0)
        return ff_err_set(err, FF_EINVAL, "\"%s\" is empty", file);
    /* Never send a private key anywhere, not even by mistake. */
    if (ff_str_has_prefix(s, "-----BEGIN"))
        return ff_err_set(err, FF_EINVAL, "\"%s\" looks like a private key; give the public "
                          "key (the .pub file)", file);
    const char *sp1 = memchr(s, ' ', n);
    if (sp1 == NULL)
        return ff_err_set(err, FF_EINVAL, "\"%s\" is not an OpenSSH public key (expected "
                          "\"TYPE BASE64 [COMMENT]\")", file);
    const char *sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - s));
    *line = ff_strndup(s, n);
    if (sp2 != NULL) {
        const char *cs = sp2 + 1;
        while (*cs == ' ')
            cs++;
        *comment = ff_strndup(cs, n - (size_t)(cs - s));
    }
    if (*line == NULL || (sp2 != NULL && *comment == NULL)) {
        free(*line);
        free(*comment);
        *line = *comment = NULL;
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    return 0;
}

int cmd_keys_add(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    const char *file = a->pos[0];
    char *text = NULL, *line = NULL, *comment = NULL;
    json_t *body = NULL, *resp = NULL;
    int rc = config_read_text(file, PUBKEY_FILE_MAX, &text, err);
    if (rc == FF_ENOTFOUND)
        return ff_err_set(err, FF_EIO, "no such file \"%s\"", file);
    if (rc != 0)
        return rc;
    rc = pubkey_parse(file, text, &line, &comment, err);
    if (rc != 0)
        goto out;
    const char *name = args_value(a, "--name");
    const char *base = strrchr(file, '/');
    if (name == NULL)
        name = comment != NULL && comment[0] != '\0' ? comment : base != NULL ? base + 1 : file;
    body = json_pack("{s:s,s:s}", "name", name, "public_key", line);
    if (body == NULL) {
        rc = ff_err_set(err, FF_EINVAL, "the key and its name must be UTF-8");
        goto out;
    }
    rc = api_send(c, "POST", "/v1/keys", body, &resp, err);
    if (rc == 0)
        rc = out_record(c, resp, key_fields, N_OF(key_fields), err);
out:
    json_decref(body);
    json_decref(resp);
    free(text);
    free(line);
    free(comment);
    return rc;
}

int cmd_keys_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    int64_t limit = 0;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_list(c, "/v1/keys", limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, key_cols, N_OF(key_cols), err);
    json_decref(page);
    return rc;
}

int cmd_keys_rm(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    int64_t id = 0;
    int rc = args_id(a->pos[0], "key id", &id, err);
    if (rc != 0)
        return rc;
    char *path = api_pathf("/v1/keys/%s", a->pos[0]);
    rc = delete_and_say(c, path, "removed key", a->pos[0], err);
    free(path);
    return rc;
}

int cmd_tokens_create(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col fields[] = {
        {"id", "id", NULL, TABLE_TEXT},
        {"name", "name", NULL, TABLE_TEXT},
        {"expires", "expires_at", NULL, TABLE_TIME},
        {"token", "token", NULL, TABLE_TEXT},
    };
    int64_t expires = 0;
    int rc = args_int(a, "--expires-in", 1, INT64_MAX, &expires, err);
    if (rc != 0 && rc != FF_ENOTFOUND)
        return rc;
    json_t *body = json_pack("{s:s}", "name", a->pos[0]), *resp = NULL;
    if (body == NULL)
        return ff_err_set(err, FF_EINVAL, "the token name must be UTF-8");
    rc = 0;
    if (expires > 0 && json_object_set_new(body, "expires_in", json_integer(expires)) != 0)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    if (rc == 0)
        rc = api_send(c, "POST", "/v1/tokens", body, &resp, err);
    /* The one time the token is shown: it is what was asked for. */
    if (rc == 0)
        rc = out_record(c, resp, fields, N_OF(fields), err);
    api_wipe_member(resp, "token");
    json_decref(resp);
    json_decref(body);
    return rc;
}

int cmd_tokens_list(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    static const struct table_col cols[] = {
        {"ID", "id", NULL, TABLE_TEXT},
        {"NAME", "name", NULL, TABLE_TEXT},
        {"KIND", "kind", NULL, TABLE_TEXT},
        {"CREATED", "created_at", NULL, TABLE_TIME},
        {"EXPIRES", "expires_at", NULL, TABLE_TIME},
        {"LAST USED", "last_used_at", NULL, TABLE_TIME},
        {"REVOKED", "revoked_at", NULL, TABLE_TIME},
    };
    int64_t limit = 0;
    json_t *page = NULL;
    int rc = args_limit(a, &limit, err);
    if (rc == 0)
        rc = api_list(c, "/v1/tokens", limit, &page, err);
    if (rc == 0)
        rc = out_list(c, page, cols, N_OF(cols), err);
    json_decref(page);
    return rc;
}

int cmd_tokens_revoke(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    int64_t id = 0;
    int rc = args_id(a->pos[0], "token id", &id, err);
    if (rc != 0)
        return rc;
    char *path = api_pathf("/v1/tokens/%s", a->pos[0]);
    rc = delete_and_say(c, path, "revoked token", a->pos[0], err);
    free(path);
    return rc;
}

/* Reads a TOTP or recovery code and POSTs it as {"code": …} to path. */
static int code_post(struct cli *c, const char *path, json_t **out, struct ff_err *err)
{
    char *code = NULL;
    int rc = prompt_line("code: ", "2FA code", true, &code, err);
    if (rc != 0)
        return rc;
    json_t *body = json_pack("{s:s}", "code", code);
    ff_secret_free(code);
    if (body == NULL)
        return ff_err_set(err, FF_EINVAL, "the code must be UTF-8");
    rc = api_send(c, "POST", path, body, out, err);
    api_wipe_member(body, "code");
    json_decref(body);
    return rc;
}

/* Prints the enrolment so a person can add it to an authenticator. */
static int enrol_show(struct cli *c, const json_t *enrol, struct ff_err *err)
{
    static const struct table_col fields[] = {
        {"uri", "uri", NULL, TABLE_TEXT},
        {"secret", "secret", NULL, TABLE_TEXT},
    };
    int rc = out_line(c, err, "Add this account to your authenticator app (scan the URI as a "
                      "QR code, or type the secret):");
    if (rc == 0)
        rc = out_record(c, enrol, fields, N_OF(fields), err);
    if (rc == 0)
        rc = out_line(c, err, "Then enter the code it shows.");
    /* The code is typed after reading this, maybe through a pipe. */
    if (rc == 0 && fflush(c->out) != 0)
        rc = ff_err_set(err, FF_EIO, "cannot write the output");
    return rc;
}

int cmd_2fa_enable(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    (void)a;
    json_t *empty = json_object(), *enrol = NULL, *done = NULL;
    if (empty == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = api_send(c, "POST", "/v1/2fa/enrol", empty, &enrol, err);
    if (rc == 0)
        rc = enrol_show(c, enrol, err);
    if (rc == 0) {
        rc = code_post(c, "/v1/2fa/confirm", &done, err);
        if (rc != 0)
            rc = ff_err_wrap(err, "confirm");
    }
    json_t *codes = json_object_get(done, "recovery_codes");
    if (rc == 0 && !json_is_array(codes))
        rc = ff_err_set(err, FF_EINVAL, "the server's answer has no recovery_codes");
    if (rc == 0 && c->json)
        rc = out_json(c, done, err);
    if (rc == 0)
        rc = out_line(c, err, "Two-factor authentication is on. Recovery codes (each works "
                      "once; keep them safe, they are not shown again):");
    size_t i;
    json_t *item;
    json_array_foreach(codes, i, item) {
        char *clean = json_is_string(item) ? table_clean(json_string_value(item)) : NULL;
        if (rc == 0)
            rc = clean != NULL ? out_line(c, err, "  %s", clean)
                               : ff_err_set(err, FF_EINVAL, "recovery code %zu is not text",
                                            i + 1);
        ff_secret_free(clean);
    }
    if (enrol != NULL)
        api_wipe_member(enrol, "secret");
    for (i = 0; i < json_array_size(codes); i++) {
        item = json_array_get(codes, i);
        if (json_is_string(item))
            ff_secret_wipe((char *)json_string_value(item), json_string_length(item));
    }
    json_decref(empty);
    json_decref(enrol);
    json_decref(done);
    return rc;
}

int cmd_2fa_disable(struct cli *c, const struct cli_args *a, struct ff_err *err)
{
    (void)a;
    int rc = code_post(c, "/v1/2fa/disable", NULL, err);
    if (rc == 0)
        rc = out_line(c, err, "Two-factor authentication is off.");
    return rc;
}
