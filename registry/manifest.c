/* Manifest and index parsing: OCI image manifest and index (image-spec
 * v1.1), Docker image manifest v2 schema 2 and manifest list. Validation is
 * what the registry needs to store a manifest safely and to answer the
 * distribution API (referenced digests, subject, artifactType); fields it
 * does not use are left alone, as the OCI spec requires of unknown ones. */
#include "registry.h"

#include "ff_str.h"

#include "ff_json.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest platform os, architecture or variant kept: real values are short
 * words ("linux", "arm64", "v7"); the bound only stops junk. */
#define PLATFORM_VALUE_MAX 255
/* Longest Content-Type we look at; a real one is under 100 bytes. */
#define CONTENT_TYPE_MAX 512

static const struct {
    const char *media_type;
    enum manifest_kind kind;
} manifest_types[] = {
    {MEDIA_TYPE_OCI_MANIFEST, MANIFEST_OCI_MANIFEST},
    {MEDIA_TYPE_OCI_INDEX, MANIFEST_OCI_INDEX},
    {MEDIA_TYPE_DOCKER_MANIFEST, MANIFEST_DOCKER_MANIFEST},
    {MEDIA_TYPE_DOCKER_LIST, MANIFEST_DOCKER_LIST},
};
#define MANIFEST_TYPES (sizeof(manifest_types) / sizeof(manifest_types[0]))

static bool is_oci(enum manifest_kind kind)
{
    return kind == MANIFEST_OCI_MANIFEST || kind == MANIFEST_OCI_INDEX;
}

static bool is_index(enum manifest_kind kind)
{
    return kind == MANIFEST_OCI_INDEX || kind == MANIFEST_DOCKER_LIST;
}

/* Looks up the manifest type of a Content-Type value: parameters and
 * surrounding blanks are ignored, the comparison is case-insensitive (RFC
 * 9110 media types). */
static bool content_type_kind(const char *ct, enum manifest_kind *kind)
{
    size_t len = strnlen(ct, CONTENT_TYPE_MAX + 1);
    if (len > CONTENT_TYPE_MAX)
        return false;
    const char *semi = memchr(ct, ';', len);
    if (semi != NULL)
        len = (size_t)(semi - ct);
    while (len > 0 && (*ct == ' ' || *ct == '\t')) {
        ct++;
        len--;
    }
    while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < MANIFEST_TYPES; i++) {
        const char *t = manifest_types[i].media_type;
        if (strlen(t) == len && strncasecmp(t, ct, len) == 0) {
            *kind = manifest_types[i].kind;
            return true;
        }
    }
    return false;
}

bool manifest_media_type_supported(const char *content_type)
{
    enum manifest_kind kind;
    return content_type != NULL && content_type_kind(content_type, &kind);
}

/* RFC 6838 restricted-name: [A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126} */
static bool restricted_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > 127)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (alnum)
            continue;
        if (i == 0 || strchr("!#$&^_.+-", c) == NULL || c == '\0')
            return false;
    }
    return true;
}

/* type "/" subtype, each an RFC 6838 restricted-name, no parameters. */
static bool media_type_valid(const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    if (slash == NULL)
        return false;
    size_t type_len = (size_t)(slash - s);
    return restricted_name_valid(s, type_len) &&
           restricted_name_valid(slash + 1, n - type_len - 1);
}

/* Reads an optional (required = false) or required media-type field. */
static int media_type_get(const json_t *obj, const char *key, bool required, const char **out,
                          struct ff_err *err)
{
    const char *s = NULL;
    int rc = ff_json_get_string(obj, key, required, MEDIA_TYPE_MAX, &s, err);
    if (rc != 0)
        return rc;
    size_t n = strlen(s);
    if (!media_type_valid(s, n)) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(s, n, q);
        return ff_err_set(err, FF_EINVAL, "field \"%s\": \"%s\" is not a media type "
                          "(type/subtype, RFC 6838)", key, q);
    }
    *out = s;
    return 0;
}

/* Annotations: an object whose values are all strings. */
static int annotations_get(const json_t *obj, const json_t **out, struct ff_err *err)
{
    json_t *ann = NULL;
    int rc = ff_json_get_object(obj, "annotations", false, &ann, err);
    if (rc == FF_ENOTFOUND) {
        *out = NULL;
        return 0;
    }
    if (rc != 0)
        return rc;
    const char *key;
    json_t *v;
    json_object_foreach(ann, key, v) {
        if (!json_is_string(v)) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(key, strlen(key), q);
            return ff_err_set(err, FF_EINVAL, "field \"annotations\": value of \"%s\" is %s, "
                              "expected a string", q, ff_json_type_name(v));
        }
    }
    *out = ann;
    return 0;
}

static int platform_get(const json_t *obj, struct descriptor *d, struct ff_err *err)
{
    json_t *p = NULL;
    int rc = ff_json_get_object(obj, "platform", false, &p, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = ff_json_get_string(p, "os", true, PLATFORM_VALUE_MAX, &d->platform.os, err);
    if (rc == 0)
        rc = ff_json_get_string(p, "architecture", true, PLATFORM_VALUE_MAX,
                                &d->platform.architecture, err);
    if (rc == 0) {
        rc = ff_json_get_string(p, "variant", false, PLATFORM_VALUE_MAX,
                                &d->platform.variant, err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    if (rc != 0)
        return ff_err_wrap(err, "platform");
    d->has_platform = true;
    return 0;
}

/* Parses one descriptor; the caller wraps errors with where it was. */
static int descriptor_parse(const json_t *obj, bool index_entry, struct descriptor *d,
                            struct ff_err *err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(obj))
        return ff_err_set(err, FF_EINVAL, "expected an object, got %s",
                          ff_json_type_name(obj));
    int rc = media_type_get(obj, "mediaType", true, &d->media_type, err);
    if (rc != 0)
        return rc;
    const char *digest = NULL;
    rc = ff_json_get_string(obj, "digest", true, FF_DIGEST_STR_MAX, &digest, err);
    if (rc != 0)
        return rc;
    rc = ff_digest_parse(digest, strlen(digest), &d->digest, err);
    if (rc != 0)
        return ff_err_wrap(err, "field \"digest\"");
    json_t *size = json_object_get(obj, "size");
    if (size == NULL)
        return ff_err_set(err, FF_EINVAL, "field \"size\": required");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return ff_err_set(err, FF_EINVAL, "field \"size\": expected a non-negative integer, "
                          "got %s", json_is_integer(size) ? "a negative one"
                                                          : ff_json_type_name(size));
    d->size = (int64_t)json_integer_value(size);
    rc = media_type_get(obj, "artifactType", false, &d->artifact_type, err);
    if (rc != 0 && rc != FF_ENOTFOUND)
        return rc;
    rc = annotations_get(obj, &d->annotations, err);
    if (rc != 0)
        return rc;
    if (index_entry)
        return platform_get(obj, d, err);
    return 0;
}

/* Parses the array under key into a new descriptor array. */
static int descriptors_parse(const json_t *root, const char *key, size_t max, const char *what,
                             bool index_entries, struct descriptor **out, size_t *n_out,
                             struct ff_err *err)
{
    json_t *arr = NULL;
    int rc = ff_json_get_array(root, key, true, max, &arr, err);
    if (rc != 0)
        return rc;
    size_t n = json_array_size(arr);
    struct descriptor *ds = calloc(n > 0 ? n : 1, sizeof(*ds));
    if (ds == NULL)
        return ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) {
        rc = descriptor_parse(item, index_entries, &ds[i], err);
        if (rc != 0) {
            free(ds);
            return ff_err_wrap(err, "%s %zu", what, i);
        }
    }
    *out = ds;
    *n_out = n;
    return 0;
}

/* The "mediaType" field decides together with the Content-Type. */
static int kind_decide(const json_t *root, const char *content_type, enum manifest_kind *out,
                       struct ff_err *err)
{
    enum manifest_kind ct_kind = MANIFEST_OCI_MANIFEST;
    char q[FF_STR_QUOTE_SIZE];
    if (content_type != NULL && !content_type_kind(content_type, &ct_kind)) {
        ff_str_quote(content_type, strnlen(content_type, CONTENT_TYPE_MAX + 1), q);
        return ff_err_set(err, FF_EINVAL, "manifest: content type \"%s\" is not a supported "
                          "manifest type", q);
    }
    const char *mt = NULL;
    int rc = ff_json_get_string(root, "mediaType", false, MEDIA_TYPE_MAX, &mt, err);
    if (rc == FF_ENOTFOUND) {
        if (content_type == NULL)
            return ff_err_set(err, FF_EINVAL, "manifest: no \"mediaType\" field and no "
                              "Content-Type");
        if (!is_oci(ct_kind))
            return ff_err_set(err, FF_EINVAL, "manifest: field \"mediaType\" is required "
                              "for docker manifests");
        *out = ct_kind;
        return 0;
    }
    if (rc != 0)
        return ff_err_wrap(err, "manifest");
    for (size_t i = 0; i < MANIFEST_TYPES; i++) {
        if (strcmp(mt, manifest_types[i].media_type) != 0)
            continue;
        if (content_type != NULL && ct_kind != manifest_types[i].kind) {
            ff_str_quote(mt, strlen(mt), q);
            char qct[FF_STR_QUOTE_SIZE];
            ff_str_quote(content_type, strnlen(content_type, CONTENT_TYPE_MAX), qct);
            return ff_err_set(err, FF_EINVAL, "manifest: field \"mediaType\" is \"%s\" but "
                              "Content-Type is \"%s\"", q, qct);
        }
        *out = manifest_types[i].kind;
        return 0;
    }
    ff_str_quote(mt, strlen(mt), q);
    return ff_err_set(err, FF_EINVAL, "manifest: field \"mediaType\" \"%s\" is not a "
                      "supported manifest type", q);
}

static int schema_version_check(const json_t *root, struct ff_err *err)
{
    json_t *v = json_object_get(root, "schemaVersion");
    if (v == NULL)
        return ff_err_set(err, FF_EINVAL, "manifest: field \"schemaVersion\": required");
    if (!json_is_integer(v))
        return ff_err_set(err, FF_EINVAL, "manifest: field \"schemaVersion\": expected an "
                          "integer, got %s", ff_json_type_name(v));
    json_int_t n = json_integer_value(v);
    if (n == 1)
        return ff_err_set(err, FF_EINVAL, "manifest: schemaVersion 1 (docker image manifest "
                          "v2 schema 1) is not supported, expected 2");
    if (n != 2)
        return ff_err_set(err, FF_EINVAL, "manifest: schemaVersion %lld, expected 2",
                          (long long)n);
    return 0;
}

/* Fields of an image manifest; the content-confusion rule first. */
static int image_parse(struct manifest *m, struct ff_err *err)
{
    if (json_object_get(m->root, "manifests") != NULL)
        return ff_err_set(err, FF_EINVAL, "manifest: an image manifest must not have a "
                          "\"manifests\" field");
    json_t *config = NULL;
    int rc = ff_json_get_object(m->root, "config", true, &config, err);
    if (rc == 0)
        rc = descriptor_parse(config, false, &m->config, err);
    if (rc != 0)
        return ff_err_wrap(err, "manifest: config");
    m->has_config = true;
    rc = descriptors_parse(m->root, "layers", MANIFEST_LAYERS_MAX, "layer", false, &m->layers,
                           &m->n_layers, err);
    if (rc != 0)
        return rc == FF_ENOMEM ? rc : ff_err_wrap(err, "manifest");
    return 0;
}

static int index_parse(struct manifest *m, struct ff_err *err)
{
    if (json_object_get(m->root, "config") != NULL || json_object_get(m->root, "layers") != NULL)
        return ff_err_set(err, FF_EINVAL, "manifest: an index must not have a \"config\" or "
                          "\"layers\" field");
    int rc = descriptors_parse(m->root, "manifests", MANIFEST_INDEX_ENTRIES_MAX, "manifest",
                               true, &m->manifests, &m->n_manifests, err);
    if (rc != 0)
        return rc == FF_ENOMEM ? rc : ff_err_wrap(err, "index");
    return 0;
}

/* artifactType, subject and annotations: OCI v1.1 fields. */
static int oci_fields_parse(struct manifest *m, struct ff_err *err)
{
    int rc = media_type_get(m->root, "artifactType", false, &m->artifact_type, err);
    if (rc != 0 && rc != FF_ENOTFOUND)
        return ff_err_wrap(err, "manifest");
    json_t *subject = NULL;
    rc = ff_json_get_object(m->root, "subject", false, &subject, err);
    if (rc == 0) {
        rc = descriptor_parse(subject, false, &m->subject, err);
        if (rc != 0)
            return ff_err_wrap(err, "manifest: subject");
        m->has_subject = true;
    } else if (rc != FF_ENOTFOUND) {
        return ff_err_wrap(err, "manifest");
    }
    rc = annotations_get(m->root, &m->annotations, err);
    if (rc != 0)
        return ff_err_wrap(err, "manifest");
    return 0;
}

int manifest_parse(const char *data, size_t len, const char *content_type,
                   struct manifest **out, struct ff_err *err)
{
    if (len > MANIFEST_SIZE_MAX)
        return ff_err_set(err, FF_ETOOBIG, "manifest: %zu bytes, limit is %u", len,
                          MANIFEST_SIZE_MAX);
    struct manifest *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    int rc = ff_json_parse_object(data, len, MANIFEST_SIZE_MAX, &m->root, err);
    if (rc != 0) {
        ff_err_wrap(err, "manifest");
        goto fail;
    }
    rc = schema_version_check(m->root, err);
    if (rc != 0)
        goto fail;
    rc = kind_decide(m->root, content_type, &m->kind, err);
    if (rc != 0)
        goto fail;
    for (size_t i = 0; i < MANIFEST_TYPES; i++) {
        if (manifest_types[i].kind == m->kind)
            m->media_type = manifest_types[i].media_type;
    }
    rc = is_index(m->kind) ? index_parse(m, err) : image_parse(m, err);
    if (rc != 0)
        goto fail;
    if (is_oci(m->kind)) {
        rc = oci_fields_parse(m, err);
        if (rc != 0)
            goto fail;
    }
    rc = ff_digest_buffer(data, len, &m->digest, err);
    if (rc != 0)
        goto fail;
    *out = m;
    return 0;
fail:
    manifest_free(m);
    return rc;
}

void manifest_free(struct manifest *m)
{
    if (m == NULL)
        return;
    free(m->layers);
    free(m->manifests);
    json_decref(m->root);
    free(m);
}

const char *manifest_referrer_artifact_type(const struct manifest *m)
{
    if (m->artifact_type != NULL)
        return m->artifact_type;
    if (m->has_config)
        return m->config.media_type;
    return NULL;
}

int manifest_foreach_ref(const struct manifest *m, manifest_ref_fn fn, void *ctx)
{
    int rc = 0;
    if (m->has_config)
        rc = fn(ctx, MANIFEST_REF_BLOB, &m->config);
    for (size_t i = 0; rc == 0 && i < m->n_layers; i++)
        rc = fn(ctx, MANIFEST_REF_BLOB, &m->layers[i]);
    for (size_t i = 0; rc == 0 && i < m->n_manifests; i++)
        rc = fn(ctx, MANIFEST_REF_MANIFEST, &m->manifests[i]);
    if (rc == 0 && m->has_subject)
        rc = fn(ctx, MANIFEST_REF_SUBJECT, &m->subject);
    return rc;
}
