/* Manifest GET, HEAD, PUT and DELETE by tag or digest. The bytes of a
 * manifest are stored as a blob (by digest); the database records which
 * repository holds it, what it references, and which tags point at it. */
#include "registry.h"

#include "ff_log.h"
#include "ff_str.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Resolves {name} and {reference}, answering errors. */
static bool manifest_target(struct ff_http_request *req, const char **name,
                            struct reference *ref)
{
    *name = ff_http_request_param(req, "name");
    if (!repo_name_check(req, *name))
        return false;
    struct ff_err err;
    const char *s = ff_http_request_param(req, "reference");
    if (reference_parse(s, ref, &err) != 0) {
        bool digestish = strchr(s, ':') != NULL;
        oci_error(req, 400, digestish ? "DIGEST_INVALID" : "TAG_INVALID", "%s", err.msg);
        return false;
    }
    return true;
}

static void reference_text(const struct reference *ref, char out[FF_DIGEST_STR_SIZE + 64])
{
    if (ref->kind == REFERENCE_DIGEST)
        ff_digest_format(&ref->digest, out);
    else
        ff_strlcpy(out, ref->tag, FF_DIGEST_STR_SIZE + 64);
}

int manifest_get(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name;
    struct reference ref;
    if (!manifest_target(req, &name, &ref))
        return 0;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PULL))
        return 0;
    char rs[FF_DIGEST_STR_SIZE + 64];
    reference_text(&ref, rs);
    struct meta_manifest mm;
    struct ff_err err;
    if (meta_manifest_get(r->meta, name, rs, &mm, &err) != 0) {
        if (err.code == FF_ENOTFOUND)
            return oci_error(req, 404, "MANIFEST_UNKNOWN", "%s", err.msg);
        return oci_error_from(req, &err, "MANIFEST_INVALID");
    }
    struct ff_digest d;
    int fd = -1;
    int64_t size = 0;
    int rc = ff_digest_parse_str(mm.digest, &d, &err);
    if (rc == 0)
        rc = blob_store_open_read(r->blobs, &d, &fd, &size, &err);
    if (rc != 0) {
        meta_manifest_release(&mm);
        return oci_error_from(req, &err, "MANIFEST_UNKNOWN");
    }
    digest_header(req, &d);
    if (strcmp(ff_http_request_method(req), "HEAD") == 0) {
        close(fd);
        rc = ff_http_respond_head(req, 200, (uint64_t)size, mm.media_type);
    } else {
        rc = ff_http_respond_fd(req, 200, fd, 0, (uint64_t)size, mm.media_type);
    }
    meta_manifest_release(&mm);
    return rc;
}

/* What a manifest refers to, for meta_manifest_put: the digests as text,
 * one slot per descriptor, and the lists of pointers into them. */
struct refs {
    char (*text)[FF_DIGEST_STR_SIZE];
    size_t n_text;
    const char **blobs;
    size_t n_blobs;
    const char **children;
    size_t n_children;
    char subject[FF_DIGEST_STR_SIZE];
    bool has_subject;
};

static int refs_collect(void *ctx, enum manifest_ref_kind kind, const struct descriptor *d)
{
    struct refs *rf = ctx;
    if (kind == MANIFEST_REF_SUBJECT) {
        ff_digest_format(&d->digest, rf->subject);
        rf->has_subject = true;
        return 0;
    }
    char *slot = rf->text[rf->n_text++];
    ff_digest_format(&d->digest, slot);
    if (kind == MANIFEST_REF_BLOB)
        rf->blobs[rf->n_blobs++] = slot;
    else
        rf->children[rf->n_children++] = slot;
    return 0;
}

static void refs_release(struct refs *rf)
{
    free(rf->text);
    free(rf->blobs);
    free(rf->children);
}

/* Fills rf from m. Errors: FF_ENOMEM (rf still needs refs_release). */
static int refs_build(const struct manifest *m, struct refs *rf)
{
    /* config, layers and index entries: at most this many descriptors */
    size_t n = m->n_layers + m->n_manifests + 1;
    memset(rf, 0, sizeof(*rf));
    rf->text = calloc(n, sizeof(*rf->text));
    rf->blobs = calloc(n, sizeof(*rf->blobs));
    rf->children = calloc(n, sizeof(*rf->children));
    if (rf->text == NULL || rf->blobs == NULL || rf->children == NULL)
        return FF_ENOMEM;
    return manifest_foreach_ref(m, refs_collect, rf);
}

static bool immutable_cb(void *ctx, const char *tag)
{
    return config_tag_immutable(ctx, tag);
}

/* Stores the bytes as a blob and records the manifest, under the GC guard
 * so the bytes cannot be collected before the record exists. */
static int manifest_store(struct registry *r, const char *body, size_t len,
                          const struct manifest *m, struct meta_manifest_put *put,
                          struct ff_err *err)
{
    /* Refuse a manifest with missing references before its bytes are
     * stored, so a refused PUT leaves nothing behind; the transaction in
     * meta_manifest_put checks again against concurrent deletes. */
    int rc = meta_manifest_refs_check(r->meta, put, err);
    if (rc != 0)
        return rc;
    int guard = gc_guard_enter(r, err);
    if (guard < 0)
        return guard;
    struct blob_writer *w = NULL;
    rc = blob_writer_new(r->blobs, &w, err);
    if (rc == 0)
        rc = blob_writer_write(w, body, len, err);
    if (rc == 0)
        rc = blob_writer_commit(w, &m->digest, NULL, NULL, err);
    blob_writer_free(w);
    if (rc == 0)
        rc = meta_manifest_put(r->meta, put, err);
    gc_guard_leave(guard);
    return rc;
}

static int put_answer(struct ff_http_request *req, const char *name, const struct manifest *m,
                      const struct refs *rf)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&m->digest, ds);
    char *loc = ff_asprintf("/v2/%s/manifests/%s", name, ds);
    if (loc == NULL)
        return FF_ENOMEM;
    ff_http_response_header(req, "Location", loc);
    free(loc);
    digest_header(req, &m->digest);
    if (rf->has_subject)
        ff_http_response_header(req, "OCI-Subject", rf->subject);
    return ff_http_respond_bytes(req, 201, NULL, "", 0);
}

int manifest_put(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name;
    struct reference ref;
    if (!manifest_target(req, &name, &ref))
        return 0;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_PUSH))
        return 0;
    const char *ctype = ff_http_request_header(req, "Content-Type");
    if (ctype == NULL || !manifest_media_type_supported(ctype))
        return oci_error(req, 415, "MANIFEST_INVALID",
                         "manifest media type \"%s\" is not supported (OCI manifest or index, "
                         "Docker v2 schema 2 manifest or list)", ctype ? ctype : "");
    size_t len = 0;
    const char *body = ff_http_request_body(req, &len);
    struct manifest *m = NULL;
    struct ff_err err;
    if (manifest_parse(body, len, ctype, &m, &err) != 0)
        return err.code == FF_ETOOBIG ? oci_error(req, 413, "SIZE_INVALID", "%s", err.msg)
                                      : oci_error(req, 400, "MANIFEST_INVALID", "%s", err.msg);
    int rc = 0;
    struct refs rf = {0};
    if (ref.kind == REFERENCE_DIGEST && !ff_digest_equal(&ref.digest, &m->digest)) {
        char got[FF_DIGEST_STR_SIZE];
        ff_digest_format(&m->digest, got);
        rc = oci_error(req, 400, "DIGEST_INVALID", "manifest digest is %s, not the %s in the "
                       "URL", got, ff_http_request_param(req, "reference"));
        goto out;
    }
    rc = refs_build(m, &rf);
    if (rc != 0)
        goto out;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&m->digest, ds);
    char *annotations = m->annotations != NULL
                            ? json_dumps(m->annotations, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct meta_manifest_put put = {
        .repo = name,
        .digest = ds,
        .media_type = m->media_type,
        .size = (int64_t)len,
        .artifact_type = manifest_referrer_artifact_type(m),
        .subject = rf.has_subject ? rf.subject : NULL,
        .annotations = annotations,
        .blobs = rf.blobs,
        .n_blobs = rf.n_blobs,
        .children = rf.children,
        .n_children = rf.n_children,
        .tag = ref.kind == REFERENCE_TAG ? ref.tag : NULL,
        .tag_immutable = ref.kind == REFERENCE_TAG && config_tag_immutable(&r->cfg, ref.tag),
    };
    rc = manifest_store(r, body, len, m, &put, &err);
    free(annotations);
    if (rc == FF_ENOTFOUND)
        rc = oci_error(req, 400, "MANIFEST_BLOB_UNKNOWN", "%s", err.msg);
    else if (rc != 0)
        rc = oci_error_from(req, &err, "MANIFEST_INVALID");
    else {
        ff_log_info(ff_http_request_id(req), "manifest.put", "repo=%s digest=%s tag=%s", name,
                    ds, put.tag ? put.tag : "");
        rc = put_answer(req, name, m, &rf);
    }
out:
    refs_release(&rf);
    manifest_free(m);
    return rc;
}

int manifest_delete(struct ff_http_request *req)
{
    struct registry *r = ff_http_request_userdata(req);
    const char *name;
    struct reference ref;
    if (!manifest_target(req, &name, &ref))
        return 0;
    if (!auth_permit(r, req, FF_SCOPE_TYPE_REPOSITORY, name, FF_ACTION_DELETE))
        return 0;
    struct ff_err err;
    int rc;
    if (ref.kind == REFERENCE_TAG) {
        rc = meta_tag_delete(r->meta, name, ref.tag, config_tag_immutable(&r->cfg, ref.tag),
                             &err);
    } else {
        char ds[FF_DIGEST_STR_SIZE];
        ff_digest_format(&ref.digest, ds);
        rc = meta_manifest_delete(r->meta, name, ds, immutable_cb, &r->cfg, &err);
    }
    if (rc == FF_ENOTFOUND)
        return oci_error(req, 404, "MANIFEST_UNKNOWN", "%s", err.msg);
    if (rc != 0)
        return oci_error_from(req, &err, "MANIFEST_INVALID");
    ff_log_info(ff_http_request_id(req), "manifest.delete", "repo=%s reference=%s", name,
                ff_http_request_param(req, "reference"));
    return ff_http_respond_bytes(req, 202, NULL, "", 0);
}
