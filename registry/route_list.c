/* Listings: tags of a repository and the catalog (both paginated with n
 * and last, and a Link header to the next page), and the referrers of a
 * manifest (an OCI index, optionally filtered by artifactType). */
#include "registry.h"

#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

/* Page size when the client gives no n, and the largest it may ask for:
 * distribution's default and a cap that keeps a page under a few MiB. */
#define LIST_PAGE_DEFAULT 100
#define LIST_PAGE_MAX 10000

static int append_name(void *ctx, const char *name)
{
    return json_array_append_new(ctx, json_string(name)) == 0 ? 0 : FF_ENOMEM;
}

/* Reads n and last; answers 400 and returns false when malformed. */
static bool page_params(struct ff_http_request *req, int64_t *n, const char **last)
{
    *n = LIST_PAGE_DEFAULT;
    const char *ns = ff_http_request_query(req, "n");
    if (ns != NULL && ff_parse_i64(ns, 0, LIST_PAGE_MAX, n) != 0) {
        oci_error(req, 400, "PAGINATION_NUMBER_INVALID", "n=\"%s\" is not a number in "
                  "0..%d", ns, LIST_PAGE_MAX);
        return false;
    }
    *last = ff_http_request_query(req, "last");
    return true;
}

/* Sets Link: <path?n=N&last=X>; rel="next" (X is a tag or repository name,
 * which the grammars keep free of characters needing escapes). */
static void link_next(struct ff_http_request *req, const char *path, int64_t n,
                      json_t *names)
{
    json_t *lastv = json_array_get(names, json_array_size(names) - 1);
    if (lastv == NULL)
        return;
    char *link = ff_asprintf("<%s?n=%lld&last=%s>; rel=\"next\"", path, (long long)n,
                             json_string_value(lastv));
    if (link != NULL)
        ff_http_response_header(req, "Link", link);
    free(link);
}

int tags_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name = ff_http_request_param(req, "name");
    if (!repo_name_check(req, name))
        return 0;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PULL))
        return 0;
    int64_t n;
    const char *last;
    if (!page_params(req, &n, &last))
        return 0;
    json_t *tags = json_array();
    bool more = false;
    struct ff_err err;
    int rc = tags != NULL ? meta_tags_list(r->meta, name, last, n, append_name, tags, &more,
                                           &err)
                          : ff_err_set(&err, FF_ENOMEM, "out of memory");
    if (rc == FF_ENOTFOUND)
        rc = oci_error(req, 404, "NAME_UNKNOWN", "%s", err.msg);
    else if (rc != 0)
        rc = oci_error_from(req, &err, "NAME_UNKNOWN");
    else {
        if (more)
            link_next(req, ff_http_request_path(req), n, tags);
        json_t *body = json_pack("{s:s,s:O}", "name", name, "tags", tags);
        rc = body != NULL ? ff_http_respond_json(req, 200, body) : FF_ENOMEM;
        json_decref(body);
    }
    json_decref(tags);
    return rc;
}

int catalog_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REGISTRY, FF_SCOPE_NAME_CATALOG, FF_ACTION_ALL))
        return 0;
    int64_t n;
    const char *last;
    if (!page_params(req, &n, &last))
        return 0;
    json_t *repos = json_array();
    bool more = false;
    struct ff_err err;
    int rc = repos != NULL ? meta_catalog(r->meta, last, n, append_name, repos, &more, &err)
                           : ff_err_set(&err, FF_ENOMEM, "out of memory");
    if (rc != 0) {
        rc = oci_error_from(req, &err, "UNKNOWN");
    } else {
        if (more)
            link_next(req, "/v2/_catalog", n, repos);
        json_t *body = json_pack("{s:O}", "repositories", repos);
        rc = body != NULL ? ff_http_respond_json(req, 200, body) : FF_ENOMEM;
        json_decref(body);
    }
    json_decref(repos);
    return rc;
}

static int append_referrer(void *ctx, const struct meta_manifest *mm)
{
    json_t *d = json_pack("{s:s,s:s,s:I}", "mediaType", mm->media_type, "digest", mm->digest,
                          "size", (json_int_t)mm->size);
    if (d == NULL)
        return FF_ENOMEM;
    if (mm->artifact_type != NULL)
        json_object_set_new(d, "artifactType", json_string(mm->artifact_type));
    if (mm->annotations != NULL) {
        json_t *ann = json_loads(mm->annotations, 0, NULL);
        if (ann != NULL)
            json_object_set_new(d, "annotations", ann);
    }
    return json_array_append_new(ctx, d) == 0 ? 0 : FF_ENOMEM;
}

int referrers_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name = ff_http_request_param(req, "name");
    if (!repo_name_check(req, name))
        return 0;
    struct ff_err err;
    struct ff_digest d;
    if (ff_digest_parse_str(ff_http_request_param(req, "digest"), &d, &err) != 0)
        return oci_error(req, 400, "DIGEST_INVALID", "%s", err.msg);
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PULL))
        return 0;
    const char *filter = ff_http_request_query(req, "artifactType");
    if (filter != NULL && filter[0] == '\0')
        filter = NULL;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d, ds);
    json_t *list = json_array();
    int rc = list != NULL ? meta_referrers(r->meta, name, ds, filter, append_referrer, list,
                                           &err)
                          : ff_err_set(&err, FF_ENOMEM, "out of memory");
    if (rc != 0) {
        json_decref(list);
        return oci_error_from(req, &err, "UNKNOWN");
    }
    json_t *index = json_pack("{s:i,s:s,s:O}", "schemaVersion", 2, "mediaType",
                              MEDIA_TYPE_OCI_INDEX, "manifests", list);
    json_decref(list);
    if (index == NULL)
        return FF_ENOMEM;
    if (filter != NULL)
        ff_http_response_header(req, "OCI-Filters-Applied", "artifactType");
    char *text = json_dumps(index, JSON_COMPACT);
    json_decref(index);
    if (text == NULL)
        return FF_ENOMEM;
    rc = ff_http_respond_bytes(req, 200, MEDIA_TYPE_OCI_INDEX, text, strlen(text));
    free(text);
    return rc;
}
