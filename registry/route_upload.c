/* Blob uploads: POST (start a session, or a monolithic upload with
 * ?digest=, or a cross-repository mount), PATCH (a chunk), PUT (the last
 * chunk and the digest), GET (status) and DELETE (cancel). Bodies stream
 * into the blob store as they arrive; a blob becomes visible only when its
 * digest matched and it is on disk. */
#include "registry.h"

#include "ff_log.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum upload_op {
    OP_MONOLITHIC, /* POST ?digest=: the body is the whole blob */
    OP_SESSION,    /* POST: start a session (any body is ignored) */
    OP_PATCH,
    OP_PUT
};

struct upload_req {
    struct registry *r;
    enum upload_op op;
    const char *name;
    struct ff_digest expected;
    bool appending;             /* OP_PATCH/OP_PUT with a body under way */
    struct blob_writer *writer; /* OP_MONOLITHIC */
    struct upload *session;     /* OP_PATCH/OP_PUT */
    struct ff_err err;          /* first body error, answered at the end */
};

static void upload_req_free(void *p)
{
    struct upload_req *u = p;
    blob_writer_free(u->writer);
    if (u->session != NULL) {
        if (u->appending)
            upload_append_abort(u->session);
        upload_close(u->session);
    }
    free(u);
}

static int location_set(struct ff_http_request *req, const char *name, const char *kind,
                        const char *what)
{
    char *loc = ff_asprintf("/v2/%s/blobs/%s%s", name, kind, what);
    if (loc == NULL)
        return FF_ENOMEM;
    int rc = ff_http_response_header(req, "Location", loc);
    free(loc);
    return rc;
}

static void range_set(struct ff_http_request *req, int64_t size)
{
    char range[48];
    (void)snprintf(range, sizeof(range), "0-%lld", (long long)(size > 0 ? size - 1 : 0));
    ff_http_response_header(req, "Range", range);
}

/* 202 for an open session: where to send the next chunk and what we hold. */
static int session_accepted(struct ff_http_request *req, const char *name, const char *id,
                            int64_t size)
{
    location_set(req, name, "uploads/", id);
    range_set(req, size);
    ff_http_response_header(req, "Docker-Upload-UUID", id);
    return ff_http_respond_bytes(req, 202, NULL, "", 0);
}

/* 201 for a blob now linked in name. */
static int blob_created(struct ff_http_request *req, const char *name,
                        const struct ff_digest *d)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, ds);
    location_set(req, name, "", ds);
    digest_header(req, d);
    return ff_http_respond_bytes(req, 201, NULL, "", 0);
}

static bool digest_param(struct ff_http_request *req, struct ff_digest *d, bool required)
{
    const char *s = ff_http_request_query(req, "digest");
    if (s == NULL && !required)
        return false;
    struct ff_err err;
    if (s == NULL)
        ff_err_set(&err, FF_EINVAL, "query parameter \"digest\" is required");
    else if (ff_digest_parse_str(s, d, &err) == 0)
        return true;
    oci_error(req, 400, "DIGEST_INVALID", "%s", err.msg);
    return false;
}

/* Links an existing blob of another repository into name, if the caller may
 * pull from there and it is there. Returns true when it answered 201. */
static bool mount_try(struct registry *r, struct ff_http_request *req, const struct auth *a,
                      const char *name)
{
    const char *mount = ff_http_request_query(req, "mount");
    const char *from = ff_http_request_query(req, "from");
    struct ff_digest d;
    if (mount == NULL || from == NULL || ff_digest_parse_str(mount, &d, NULL) != 0 ||
        name_validate(from, NULL) != 0 || !auth_allows(a, from, FF_ACTION_PULL))
        return false;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d, ds);
    int64_t size = 0;
    if (meta_blob_linked(r->meta, from, ds, &size, NULL) != 0)
        return false;
    /* Under the guard, so GC cannot take the bytes between the check that
     * they are there and the new link. */
    struct ff_err err;
    int guard = gc_guard_enter(r, &err);
    if (guard < 0)
        return false;
    int64_t stored = 0;
    int rc = blob_store_stat(r->blobs, &d, &stored, &err);
    if (rc == 0)
        rc = meta_blob_link(r->meta, name, ds, size, &err);
    gc_guard_leave(guard);
    if (rc != 0)
        return false;
    ff_log_info(ff_http_request_id(req), "blob.mount", "repo=%s from=%s digest=%s", name,
                from, ds);
    blob_created(req, name, &d);
    return true;
}

static int post_headers(struct registry *r, struct ff_http_request *req, struct upload_req *u,
                        const struct auth *a)
{
    if (mount_try(r, req, a, u->name))
        return 0;
    struct ff_err err;
    if (ff_http_request_query(req, "digest") != NULL) {
        if (!digest_param(req, &u->expected, true))
            return 0;
        u->op = OP_MONOLITHIC;
        if (blob_writer_new(r->blobs, &u->writer, &err) != 0)
            return oci_error_from(req, &err, "BLOB_UPLOAD_INVALID");
        return 0;
    }
    char id[UPLOAD_ID_LEN + 1];
    if (upload_create(r->uploads, u->name, id, &err) != 0)
        return oci_error_from(req, &err, "BLOB_UPLOAD_INVALID");
    u->op = OP_SESSION;
    return session_accepted(req, u->name, id, 0);
}

/* Where a PATCH chunk starts: Content-Range "<first>-<last>" if given (the
 * spec's form, without "bytes "), else the end of what we hold. */
static int chunk_start(struct ff_http_request *req, const struct upload *s, int64_t *out)
{
    const char *cr = ff_http_request_header(req, "Content-Range");
    if (cr == NULL) {
        *out = upload_size(s);
        return 0;
    }
    if (strncmp(cr, "bytes ", 6) == 0)
        cr += 6;
    const char *dash = strchr(cr, '-');
    char first[24];
    size_t len = dash != NULL ? (size_t)(dash - cr) : 0;
    if (dash == NULL || len == 0 || len >= sizeof(first))
        return FF_EINVAL;
    memcpy(first, cr, len);
    first[len] = '\0';
    return ff_parse_i64(first, 0, INT64_MAX, out);
}

static int session_headers(struct registry *r, struct ff_http_request *req,
                           struct upload_req *u)
{
    struct ff_err err;
    int rc = upload_open(r->uploads, u->name, ff_http_request_param(req, "id"), &u->session,
                         &err);
    if (rc == FF_ENOTFOUND)
        return oci_error(req, 404, "BLOB_UPLOAD_UNKNOWN", "%s", err.msg);
    if (rc != 0)
        return oci_error_from(req, &err, "BLOB_UPLOAD_INVALID");
    int64_t start = upload_size(u->session);
    if (u->op == OP_PATCH && chunk_start(req, u->session, &start) != 0)
        return oci_error(req, 400, "BLOB_UPLOAD_INVALID",
                         "Content-Range \"%s\" is not <first>-<last>",
                         ff_http_request_header(req, "Content-Range"));
    uint64_t length = 0;
    bool has_body = ff_http_request_content_length(req, &length) != 0 || length > 0;
    if (u->op == OP_PUT && !has_body)
        return 0;
    rc = upload_append_begin(u->session, start, &err);
    if (rc == FF_ERANGE) {
        range_set(req, upload_size(u->session));
        return oci_error(req, 416, "BLOB_UPLOAD_INVALID",
                         "chunk starts at %lld, expected %lld", (long long)start,
                         (long long)upload_size(u->session));
    }
    if (rc != 0)
        return oci_error_from(req, &err, "BLOB_UPLOAD_INVALID");
    u->appending = true;
    return 0;
}

int upload_on_headers(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name = ff_http_request_param(req, "name");
    if (!repo_name_check(req, name))
        return 0;
    struct auth a;
    if (!auth_require(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PUSH, &a))
        return 0;
    struct upload_req *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        auth_release(&a);
        return FF_ENOMEM;
    }
    u->r = r;
    u->name = name;
    ff_http_request_set_state(req, u, upload_req_free);
    const char *method = ff_http_request_method(req);
    int rc;
    if (strcmp(method, "POST") == 0) {
        rc = post_headers(r, req, u, &a);
    } else {
        u->op = strcmp(method, "PATCH") == 0 ? OP_PATCH : OP_PUT;
        rc = (u->op == OP_PUT && !digest_param(req, &u->expected, true))
                 ? 0 : session_headers(r, req, u);
    }
    auth_release(&a);
    return rc;
}

int upload_on_body(struct ff_http_request *req, const char *data, size_t len)
{
    struct upload_req *u = ff_http_request_state(req);
    int rc = 0;
    if (u->op == OP_MONOLITHIC)
        rc = blob_writer_write(u->writer, data, len, &u->err);
    else if (u->appending)
        rc = upload_append_write(u->session, data, len, &u->err);
    if (rc != 0)
        oci_error_from(req, &u->err, "BLOB_UPLOAD_INVALID");
    return rc;
}

/* Commits the blob (from the monolithic writer or the session) and links
 * it into the repository, under the GC guard so the bytes cannot be
 * collected in between; then answers, a digest mismatch as the spec's
 * DIGEST_INVALID. */
static int finish_answer(struct ff_http_request *req, struct upload_req *u)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&u->expected, ds);
    int64_t size = 0;
    int guard = gc_guard_enter(u->r, &u->err);
    if (guard < 0)
        return oci_error_from(req, &u->err, "BLOB_UPLOAD_INVALID");
    int rc = u->op == OP_MONOLITHIC
                 ? blob_writer_commit(u->writer, &u->expected, NULL, &size, &u->err)
                 : upload_finish(u->session, &u->expected, &size, &u->err);
    bool committed = rc == 0;
    if (committed)
        rc = meta_blob_link(u->r->meta, u->name, ds, size, &u->err);
    gc_guard_leave(guard);
    if (rc == FF_EINVAL && !committed)
        return oci_error(req, 400, "DIGEST_INVALID", "%s", u->err.msg);
    if (rc != 0)
        return oci_error_from(req, &u->err, "BLOB_UPLOAD_INVALID");
    ff_log_info(ff_http_request_id(req), "blob.put", "repo=%s digest=%s size=%lld", u->name,
                ds, (long long)size);
    return blob_created(req, u->name, &u->expected);
}

int upload_on_complete(struct ff_http_request *req)
{
    struct upload_req *u = ff_http_request_state(req);
    int64_t size = 0;
    switch (u->op) {
    case OP_MONOLITHIC:
        return finish_answer(req, u);
    case OP_PATCH:
        u->appending = false;
        if (upload_append_end(u->session, &size, &u->err) != 0)
            return oci_error_from(req, &u->err, "BLOB_UPLOAD_INVALID");
        return session_accepted(req, u->name, upload_id(u->session), size);
    case OP_PUT:
        if (u->appending) {
            u->appending = false;
            if (upload_append_end(u->session, NULL, &u->err) != 0)
                return oci_error_from(req, &u->err, "BLOB_UPLOAD_INVALID");
        }
        return finish_answer(req, u);
    default:
        return ff_http_respond_bytes(req, 202, NULL, "", 0);
    }
}

/* GET and DELETE of a session: small requests without a body. */
static bool session_open(struct ff_http_request *req, struct registry *r,
                         struct upload **out)
{
    const char *name = ff_http_request_param(req, "name");
    if (!repo_name_check(req, name))
        return false;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PUSH))
        return false;
    struct ff_err err;
    int rc = upload_open(r->uploads, name, ff_http_request_param(req, "id"), out, &err);
    if (rc == FF_ENOTFOUND)
        oci_error(req, 404, "BLOB_UPLOAD_UNKNOWN", "%s", err.msg);
    else if (rc != 0)
        oci_error_from(req, &err, "BLOB_UPLOAD_INVALID");
    return rc == 0;
}

int upload_status_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    struct upload *s = NULL;
    if (!session_open(req, r, &s))
        return 0;
    location_set(req, ff_http_request_param(req, "name"), "uploads/", upload_id(s));
    range_set(req, upload_size(s));
    ff_http_response_header(req, "Docker-Upload-UUID", upload_id(s));
    upload_close(s);
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}

int upload_cancel_delete(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    struct upload *s = NULL;
    if (!session_open(req, r, &s))
        return 0;
    struct ff_err err;
    int rc = upload_cancel(s, &err);
    upload_close(s);
    if (rc == FF_ENOTFOUND)
        return oci_error(req, 404, "BLOB_UPLOAD_UNKNOWN", "%s", err.msg);
    if (rc != 0)
        return oci_error_from(req, &err, "BLOB_UPLOAD_INVALID");
    return ff_http_respond_bytes(req, 204, NULL, "", 0);
}
