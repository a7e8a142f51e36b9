/* Build workers join the farm with a single-use join token an admin made
 * and get a worker key of their own, shown once. Admins list and revoke
 * workers. A worker key by itself grants nothing in the registry: a
 * worker pushes only the repository of a job it holds (grant.c). */
#include "builder.h"

#include "ff_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Admins only; on false the request has been answered 403. */
static bool admin_only(struct ff_http_request *req, const struct identity *id)
{
    if (id->kind == ID_USER && id->user.role == ROLE_ADMIN)
        return true;
    ff_http_respond_error(req, 403, "denied", "only admins manage workers");
    return false;
}

int api_join_token_create(struct ff_http_request *req, struct builder *b,
                          const struct identity *id)
{
    if (!admin_only(req, id))
        return 0;
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL;
    struct join_token_body body;
    struct ff_err err;
    char *token = NULL;
    char hash[FF_SECRET_HASH_HEX_SIZE];
    int64_t tid = 0;
    int64_t expires = 0;
    int rc = decode_join_token(data, len, &root, &body, &err);
    json_decref(root);
    if (rc == 0)
        rc = ff_secret_token_new(JOIN_TOKEN_PREFIX, &token, hash, &err);
    if (rc == 0) {
        expires = (int64_t)time(NULL) + body.expires_in;
        rc = db_join_token_create(b->db, hash, id->name, expires, &tid, &err);
    }
    if (rc != 0) {
        ff_secret_free(token);
        return api_error_from(req, &err);
    }
    api_audit(b, req, id->name, "worker.join_token.create", "id=%lld", (long long)tid);
    json_t *out = json_pack("{s:I,s:I}", "id", (json_int_t)tid, "expires_at",
                            (json_int_t)expires);
    rc = out != NULL ? api_respond_secret(req, out, "token", token)
                     : ff_http_respond_error(req, 500, "internal", "out of memory");
    ff_secret_free(token);
    return rc;
}

int api_worker_join(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    (void)id;
    const char *join = api_bearer(req);
    if (join == NULL || strncmp(join, JOIN_TOKEN_PREFIX "_", 4) != 0) {
        api_audit(b, req, NULL, "worker.join.refused", "reason=no join token");
        ff_http_response_header(req, "WWW-Authenticate", "Bearer realm=\"ff-builder\"");
        return ff_http_respond_error(req, 401, "unauthorized", "a worker join token is "
                                     "required (Authorization: Bearer ffj_...)");
    }
    size_t len = 0;
    const char *data = ff_http_request_body(req, &len);
    json_t *root = NULL, *archs = NULL;
    struct worker_join_body body;
    struct ff_err err;
    char *key = NULL, *archs_text = NULL;
    size_t archs_len = 0;
    char key_hash[FF_SECRET_HASH_HEX_SIZE], join_hash[FF_SECRET_HASH_HEX_SIZE];
    int64_t wid = 0;
    ff_secret_token_hash(join, join_hash);
    int rc = decode_worker_join(data, len, &root, &body, &err);
    if (rc == 0) {
        archs = json_array();
        for (size_t i = 0; archs != NULL && i < body.n_archs; i++) {
            if (json_array_append_new(archs, json_string(body.archs[i])) != 0) {
                json_decref(archs);
                archs = NULL;
            }
        }
        rc = archs != NULL ? ff_json_dump(archs, &archs_text, &archs_len, &err)
                           : ff_err_set(&err, FF_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = ff_secret_token_new(WORKER_KEY_PREFIX, &key, key_hash, &err);
    if (rc == 0)
        rc = db_worker_join(b->db, join_hash, (int64_t)time(NULL), body.name, archs_text,
                            key_hash, &wid, &err);
    if (rc == FF_EAUTH)
        api_audit(b, req, NULL, "worker.join.refused", "reason=%s", err.msg);
    json_t *out = NULL;
    if (rc == 0) {
        char name[IDENTITY_NAME_MAX + 1];
        (void)snprintf(name, sizeof(name), "w_%lld", (long long)wid);
        api_audit(b, req, name, "worker.join", "label=%s", body.name);
        out = json_pack("{s:I,s:s,s:s,s:O}", "id", (json_int_t)wid, "name", name, "label",
                        body.name, "archs", archs);
        if (out == NULL)
            rc = ff_err_set(&err, FF_ENOMEM, "out of memory");
    }
    rc = rc == 0 ? api_respond_secret(req, out, "key", key) : api_error_from(req, &err);
    ff_secret_free(key);
    free(archs_text);
    json_decref(archs);
    json_decref(root);
    return rc;
}

int api_worker_list(struct ff_http_request *req, struct builder *b, const struct identity *id)
{
    int64_t after = 0, next = 0;
    int limit = 0;
    if (!admin_only(req, id) || !api_page(req, &after, &limit))
        return 0;
    json_t *items = NULL;
    struct ff_err err;
    if (db_worker_list(b->db, after, limit, &items, &next, &err) != 0)
        return api_error_from(req, &err);
    return api_respond_page(req, items, next);
}

int api_worker_revoke(struct ff_http_request *req, struct builder *b,
                      const struct identity *id)
{
    int64_t wid = 0;
    if (!admin_only(req, id) || !api_path_id(req, &wid))
        return 0;
    struct ff_err err;
    if (db_worker_revoke(b->db, wid, (int64_t)time(NULL), &err) != 0)
        return api_error_from(req, &err);
    api_audit(b, req, id->name, "worker.revoke", "worker=w_%lld", (long long)wid);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}
