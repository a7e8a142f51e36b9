/* Blob GET, HEAD (with Range) and DELETE. A blob is served from a
 * repository only when that repository links it. */
#include "registry.h"

#include "ff_str.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Parses "bytes=<first>-[<last>]" against a blob of size bytes into an
 * inclusive range. Returns 0, FF_EINVAL (malformed) or FF_ERANGE (starts
 * past the end); both are answered 416, since a client that asks for a
 * range cannot use the whole blob instead. Suffix ranges ("bytes=-N") and
 * lists are not used by registry clients and count as malformed. */
static int range_parse(const char *h, int64_t size, int64_t *first, int64_t *last)
{
    if (strncmp(h, "bytes=", 6) != 0)
        return FF_EINVAL;
    const char *dash = strchr(h + 6, '-');
    if (dash == NULL || dash == h + 6 || strchr(dash + 1, ',') != NULL)
        return FF_EINVAL;
    char a[24];
    size_t alen = (size_t)(dash - (h + 6));
    if (alen >= sizeof(a))
        return FF_EINVAL;
    memcpy(a, h + 6, alen);
    a[alen] = '\0';
    int64_t f = 0;
    int64_t l = size - 1;
    if (ff_parse_i64(a, 0, INT64_MAX, &f) != 0)
        return FF_EINVAL;
    if (dash[1] != '\0' && ff_parse_i64(dash + 1, 0, INT64_MAX, &l) != 0)
        return FF_EINVAL;
    if (l < f)
        return FF_EINVAL;
    if (f >= size)
        return FF_ERANGE;
    if (l >= size)
        l = size - 1;
    *first = f;
    *last = l;
    return 0;
}

/* Resolves {name} and {digest} of a blob route, answering errors. */
static bool blob_target(struct ff_http_request *req, const char **name, struct ff_digest *d,
                        char digest_str[FF_DIGEST_STR_SIZE])
{
    *name = ff_http_request_param(req, "name");
    if (!repo_name_check(req, *name))
        return false;
    struct ff_err err;
    if (ff_digest_parse_str(ff_http_request_param(req, "digest"), d, &err) != 0) {
        oci_error(req, 400, "DIGEST_INVALID", "%s", err.msg);
        return false;
    }
    ff_digest_format(d, digest_str);
    return true;
}

int blob_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name;
    struct ff_digest d;
    char ds[FF_DIGEST_STR_SIZE];
    if (!blob_target(req, &name, &d, ds))
        return 0;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PULL))
        return 0;
    struct ff_err err;
    if (meta_blob_linked(r->meta, name, ds, NULL, &err) != 0) {
        if (err.code == FF_ENOTFOUND)
            return oci_error(req, 404, "BLOB_UNKNOWN", "%s", err.msg);
        return oci_error_from(req, &err, "BLOB_UNKNOWN");
    }
    int fd = -1;
    int64_t size = 0;
    if (blob_store_open_read(r->blobs, &d, &fd, &size, &err) != 0) {
        if (err.code == FF_ENOTFOUND)
            return oci_error(req, 404, "BLOB_UNKNOWN", "blob \"%s\" is gone", ds);
        return oci_error_from(req, &err, "BLOB_UNKNOWN");
    }
    digest_header(req, &d);
    ff_http_response_header(req, "Accept-Ranges", "bytes");
    bool head = strcmp(ff_http_request_method(req), "HEAD") == 0;
    const char *range = ff_http_request_header(req, "Range");
    int64_t first = 0;
    int64_t last = size - 1;
    unsigned status = 200;
    if (range != NULL && !head) {
        int rc = range_parse(range, size, &first, &last);
        if (rc != 0) {
            close(fd);
            char cr[48];
            (void)snprintf(cr, sizeof(cr), "bytes */%lld", (long long)size);
            ff_http_response_header(req, "Content-Range", cr);
            return oci_error(req, 416, "BLOB_UNKNOWN", rc == FF_ERANGE
                                 ? "range \"%s\" starts past the end of a %lld-byte blob"
                                 : "range \"%s\" is not bytes=<first>-[<last>]",
                             range, (long long)size);
        }
        char cr[80];
        (void)snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)first, (long long)last,
                 (long long)size);
        ff_http_response_header(req, "Content-Range", cr);
        status = 206;
    }
    if (head) {
        close(fd);
        return ff_http_respond_head(req, 200, (uint64_t)size, "application/octet-stream");
    }
    uint64_t length = size == 0 ? 0 : (uint64_t)(last - first + 1);
    struct blob_reader *br = NULL;
    int rc = blob_reader_new(r->blobs, &d, fd, (uint64_t)first, length, &br);
    if (rc != 0)
        return rc;
    return ff_http_respond_reader(req, status, length, blob_reader_read, br, blob_reader_free,
                                  "application/octet-stream");
}

int blob_delete(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name;
    struct ff_digest d;
    char ds[FF_DIGEST_STR_SIZE];
    if (!blob_target(req, &name, &d, ds))
        return 0;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_DELETE))
        return 0;
    struct ff_err err;
    if (meta_blob_unlink(r->meta, name, ds, &err) != 0) {
        if (err.code == FF_ENOTFOUND)
            return oci_error(req, 404, "BLOB_UNKNOWN", "%s", err.msg);
        return oci_error_from(req, &err, "BLOB_UNKNOWN");
    }
    digest_header(req, &d);
    return ff_http_respond_bytes(req, 202, NULL, "", 0);
}
