/* The registry's HTTP surface: which handler serves which route, the OCI
 * error body every handler uses, and the small endpoints (base check,
 * health, metrics). */
#include "registry.h"

#include "ff_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int oci_error(struct ff_http_request *req, unsigned status, const char *code, const char *fmt,
              ...)
{
    char message[FF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:[{s:s,s:s,s:{}}]}", "errors", "code", code, "message",
                             message, "detail");
    if (body == NULL)
        return ff_http_respond_bytes(req, 500, NULL, "", 0);
    int rc = ff_http_respond_json(req, status, body);
    json_decref(body);
    return rc;
}

int oci_error_from(struct ff_http_request *req, const struct ff_err *err, const char *code_400)
{
    switch (err->code) {
    case FF_EINVAL: return oci_error(req, 400, code_400, "%s", err->msg);
    case FF_ETOOBIG: return oci_error(req, 413, "SIZE_INVALID", "%s", err->msg);
    case FF_ERANGE: return oci_error(req, 416, "BLOB_UPLOAD_INVALID", "%s", err->msg);
    case FF_EDENIED: return oci_error(req, 403, "DENIED", "%s", err->msg);
    case FF_EBUSY: return oci_error(req, 503, "UNAVAILABLE", "%s", err->msg);
    default:
        ff_log_error(ff_http_request_id(req), "internal.error", "error=%s code=%s", err->msg,
                     ff_err_name(err->code));
        return oci_error(req, 500, "UNKNOWN", "internal error (request %s)",
                         ff_http_request_id(req));
    }
}

int digest_header(struct ff_http_request *req, const struct ff_digest *d)
{
    char s[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, s);
    return ff_http_response_header(req, "Docker-Content-Digest", s);
}

bool repo_name_check(struct ff_http_request *req, const char *name)
{
    struct ff_err err;
    if (name_validate(name, &err) == 0)
        return true;
    oci_error(req, 400, "NAME_INVALID", "%s", err.msg);
    return false;
}

static int base_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    if (!auth_permit(r, req, NULL, NULL, 0))
        return 0;
    ff_http_response_header(req, "Docker-Distribution-API-Version", "registry/2.0");
    return ff_http_respond_bytes(req, 200, "application/json", "{}", 2);
}

static int healthz_get(struct ff_http_request *req)
{
    return ff_http_respond_bytes(req, 200, "text/plain", "ok\n", 3);
}

static int count_upload(void *ctx, const char *id, const char *repo, int64_t size,
                        time_t created, time_t updated)
{
    (void)id;
    (void)repo;
    (void)size;
    (void)created;
    (void)updated;
    (*(int64_t *)ctx)++;
    return 0;
}

static int metrics_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    int64_t uploads = 0;
    upload_iterate(r->uploads, count_upload, &uploads, NULL);
    struct ff_buf b;
    /* Bounded by METRICS_SERIES_MAX series of a few hundred bytes each. */
    ff_buf_init(&b, 16u << 20);
    int rc = metrics_render(r->metrics, uploads, &b);
    if (rc == 0)
        rc = ff_http_respond_bytes(req, 200, "text/plain; version=0.0.4", b.data, b.len);
    ff_buf_release(&b);
    return rc;
}

struct route {
    const char *method;
    const char *pattern;
    int (*on_request)(struct ff_http_request *req); /* NULL: a streamed upload */
    uint64_t max_body;
};

int routes_register(struct registry *r, struct ff_err *err)
{
    const struct route routes[] = {
        {"GET", "/v2/", base_get, 0},
        {"GET", "/healthz", healthz_get, 0},
        {"GET", "/metrics", metrics_get, 0},
        {"GET", "/v2/_catalog", catalog_get, 0},
        {"POST", "/v2/{name+}/blobs/uploads/", NULL, 0},
        {"PATCH", "/v2/{name+}/blobs/uploads/{id}", NULL, 0},
        {"PUT", "/v2/{name+}/blobs/uploads/{id}", NULL, 0},
        {"GET", "/v2/{name+}/blobs/uploads/{id}", upload_status_get, 0},
        {"DELETE", "/v2/{name+}/blobs/uploads/{id}", upload_cancel_delete, 0},
        {"GET", "/v2/{name+}/blobs/{digest}", blob_get, 0},
        {"HEAD", "/v2/{name+}/blobs/{digest}", blob_get, 0},
        {"DELETE", "/v2/{name+}/blobs/{digest}", blob_delete, 0},
        {"GET", "/v2/{name+}/manifests/{reference}", manifest_get, 0},
        {"HEAD", "/v2/{name+}/manifests/{reference}", manifest_get, 0},
        {"PUT", "/v2/{name+}/manifests/{reference}", manifest_put, MANIFEST_SIZE_MAX},
        {"DELETE", "/v2/{name+}/manifests/{reference}", manifest_delete, 0},
        {"GET", "/v2/{name+}/tags/list", tags_get, 0},
        {"GET", "/v2/{name+}/referrers/{digest}", referrers_get, 0},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        struct ff_http_handler h = {.body_mode = FF_HTTP_BODY_BUFFER,
                                    .on_request = rt->on_request,
                                    .max_body = rt->max_body};
        if (rt->on_request == NULL) {
            h = (struct ff_http_handler){
                .body_mode = FF_HTTP_BODY_STREAM,
                .max_body = (uint64_t)blob_store_max_size(r->blobs),
                .on_headers = upload_on_headers,
                .on_body = upload_on_body,
                .on_complete = upload_on_complete,
            };
        }
        int rc = ff_http_server_route(r->http, rt->method, rt->pattern, &h, r, err);
        if (rc != 0)
            return ff_err_wrap(err, "route %s %s", rt->method, rt->pattern);
    }
    return 0;
}
