/* /v1/keys: a user's SSH public keys, which ff-gitd authenticates git
 * pushes with. Users add, list and remove their own keys; ff-gitd, with
 * its service key, asks which user holds the key a client has just proved
 * it owns. A key belongs to one user at most, so that answer is unique. */
#include "builder.h"

#include "ff_json.h"
#include "ff_str.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int decode_key(const char *data, size_t len, json_t **root, struct key_body *out,
               struct ff_err *err)
{
    static const char *const keys[] = {"name", "public_key", NULL};
    memset(out, 0, sizeof(*out));
    *root = NULL;
    int rc = ff_json_parse_object(data, len, BODY_MAX, root, err);
    if (rc == 0)
        rc = ff_json_check_keys(*root, keys, "request body", err);
    if (rc == 0) {
        rc = ff_json_get_string(*root, "name", false, KEY_NAME_MAX, &out->name, err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    for (size_t i = 0; rc == 0 && out->name != NULL && out->name[i] != '\0'; i++) {
        unsigned char c = (unsigned char)out->name[i];
        if (c < 0x20 || c == 0x7f)
            rc = ff_err_set(err, FF_EINVAL, "field \"name\": control character at %zu", i + 1);
    }
    if (rc == 0)
        rc = ff_json_get_string(*root, "public_key", true, SSHKEY_LINE_MAX, &out->public_key,
                                err);
    return rc;
}

/* The name a key is stored under: the one asked for, else the line's
 * comment (what ssh-keygen sets to user@host) cut to KEY_NAME_MAX bytes
 * without splitting a UTF-8 character, else the key type. */
static void key_name(const struct key_body *body, const struct sshkey *k,
                     char out[KEY_NAME_MAX + 1])
{
    const char *src = body->name != NULL ? body->name
                      : k->comment != NULL ? k->comment
                                           : k->type;
    size_t n = strlen(src);
    if (n > KEY_NAME_MAX) {
        n = KEY_NAME_MAX;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(out, src, n);
    out[n] = '\0';
}

int api_key_add(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *out = NULL;
    struct key_body body;
    struct sshkey k = {0};
    struct ff_err err;
    char name[KEY_NAME_MAX + 1];
    int rc = decode_key(data, len, &root, &body, &err);
    if (rc == 0)
        rc = sshkey_parse(body.public_key, strlen(body.public_key), &k, &err);
    if (rc == 0) {
        key_name(&body, &k, name);
        rc = db_key_add(b->db, id->user.id, name, &k, &out, &err);
    }
    if (rc == 0) {
        api_audit(b, req, id->user.name, "key.add", "id=%lld type=%s bits=%u fingerprint=%s",
                  (long long)json_integer_value(json_object_get(out, "id")), k.type, k.bits,
                  k.fingerprint);
        rc = ff_http_respond_json(req, 201, out);
    } else {
        /* Someone may register another person's public key (it is public)
         * to keep them from adding it: leave admins a trace of who tried. */
        if (rc == FF_EEXIST)
            api_audit(b, req, id->user.name, "key.duplicate", "fingerprint=%s", k.fingerprint);
        rc = api_error_from(req, &err);
    }
    sshkey_release(&k);
    json_decref(out);
    json_decref(root);
    return rc;
}

int api_key_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_key_list(b->db, id->user.id, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

int api_key_delete(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    int64_t kid = 0;
    struct ff_err err;
    char fp[SSHKEY_FINGERPRINT_LEN + 1];
    if (ff_parse_i64(ff_http_request_param(req, "id"), 1, INT64_MAX, &kid) != 0)
        return ff_http_respond_error(req, 400, "invalid", "key id must be a positive integer");
    /* Only the caller's own keys: another user's key id is "not found",
     * so ids do not tell who holds which key. */
    if (db_key_delete(b->db, id->user.id, kid, fp, &err) != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->user.name, "key.remove", "id=%lld fingerprint=%s", (long long)kid,
              fp);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

int api_key_lookup(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    /* The route admits service identities; of those, only ff-gitd
     * authenticates SSH clients. */
    if (strcmp(id->name, "svc_" SERVICE_GITD) != 0)
        return ff_http_respond_error(req, 403, "denied", "only the gitd service looks keys up");
    const char *fp = ff_http_request_query(req, "fingerprint");
    struct ff_err err;
    if (fp == NULL)
        return ff_http_respond_error(req, 400, "invalid", "query \"fingerprint\" is required");
    if (sshkey_fingerprint_check(fp, &err) != 0)
        return api_error_from(req, &err);
    struct user u;
    int64_t key_id = 0;
    int rc = db_key_lookup(b->db, fp, &u, &key_id, &err);
    ff_log_info(ff_http_request_id(req), "key.lookup", "fingerprint=%s user=%s", fp,
                rc == 0 ? u.name : "-");
    if (rc != 0)
        return api_error_from(req, &err);
    json_t *out = json_pack("{s:s,s:s,s:I}", "user", u.name, "role",
                            u.role == ROLE_ADMIN ? "admin" : "user", "key_id",
                            (json_int_t)key_id);
    if (out == NULL)
        return ff_http_respond_error(req, 500, "internal", "out of memory");
    rc = ff_http_respond_json(req, 200, out);
    json_decref(out);
    return rc;
}
