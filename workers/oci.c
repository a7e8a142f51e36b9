/* OCI image documents: platforms, manifests and indexes (parsed strictly,
 * built deterministically), image configs, and the OCI image layout on
 * disk. Everything parsed here may come from a hostile registry or a
 * tampered layout: sizes, counts and strings are bounded before use and
 * every digest goes through ff_digest_parse. Everything built here is
 * hashed into a digest, so serialisation has one fixed key order (Go's
 * struct order, which other tools use, and maps sorted by key) and no
 * whitespace. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_json.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest Content-Type looked at; a real one is under 100 bytes. */
#define CONTENT_TYPE_MAX 512
/* Longest "created" time string: RFC 3339 with nanoseconds and an offset
 * is 35 bytes. */
#define TIME_STRING_MAX 64
/* Largest oci-layout file: it holds one short field. */
#define LAYOUT_FILE_MAX 4096
/* Longest "port/proto" key of ExposedPorts ("65535/sctp" is 10). */
#define PORT_KEY_MAX 32
/* Copy buffer for blobs. */
#define COPY_BUF_SIZE (256u << 10)
/* Latest representable time for RFC 3339 with four-digit years. */
#define TIME_EPOCH_MAX 253402300799LL

/* ---- platforms ---------------------------------------------------------------- */

int oci_platform_from_arch(const char *arch, struct oci_platform *out, struct ff_err *err)
{
    static const struct {
        const char *name, *architecture, *variant;
    } archs[] = {
        {"amd64", "amd64", NULL},
        {"arm64", "arm64", "v8"},
        {"armv7", "arm", "v7"},
    };
    for (size_t i = 0; arch != NULL && i < sizeof(archs) / sizeof(archs[0]); i++) {
        if (strcmp(arch, archs[i].name) == 0) {
            out->os = "linux";
            out->architecture = archs[i].architecture;
            out->variant = archs[i].variant;
            return 0;
        }
    }
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(arch != NULL ? arch : "", arch != NULL ? strlen(arch) : 0, q);
    return ff_err_set(err, FF_EINVAL, "architecture \"%s\": expected amd64, arm64 or armv7", q);
}

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* containerd's normalisation (platforms.Normalize), so "arm64" and
 * "arm64/v8" or "aarch64" name one platform. */
static void platform_normalise(const struct oci_platform *p, const char **arch,
                               const char **variant)
{
    const char *a = p->architecture != NULL ? p->architecture : "";
    const char *v = p->variant != NULL ? p->variant : "";
    if (strcmp(a, "aarch64") == 0)
        a = "arm64";
    else if (strcmp(a, "x86_64") == 0 || strcmp(a, "x86-64") == 0)
        a = "amd64";
    else if (strcmp(a, "armhf") == 0) {
        a = "arm";
        v = "v7";
    } else if (strcmp(a, "armel") == 0) {
        a = "arm";
        v = "v6";
    }
    if (strcmp(a, "arm64") == 0 && (v[0] == '\0' || strcmp(v, "8") == 0))
        v = "v8";
    else if (strcmp(a, "arm") == 0 && v[0] == '\0')
        v = "v7";
    else if (strcmp(a, "arm") == 0 && v[0] >= '5' && v[0] <= '8' && v[1] == '\0')
        v = v[0] == '5' ? "v5" : v[0] == '6' ? "v6" : v[0] == '7' ? "v7" : "v8";
    else if (strcmp(a, "amd64") == 0 && strcmp(v, "v1") == 0)
        v = "";
    *arch = a;
    *variant = v;
}

bool oci_platform_match(const struct oci_platform *want, const struct oci_platform *have)
{
    if (have->os == NULL || have->architecture == NULL)
        return false;
    if (!str_eq(want->os != NULL ? want->os : "linux", have->os))
        return false;
    const char *wa, *wv, *ha, *hv;
    platform_normalise(want, &wa, &wv);
    platform_normalise(have, &ha, &hv);
    return strcmp(wa, ha) == 0 && strcmp(wv, hv) == 0;
}

void oci_platform_format(const struct oci_platform *p, char *out, size_t size)
{
    const char *v = p->variant != NULL ? p->variant : "";
    int n = snprintf(out, size, "%.*s/%.*s%s%.*s", OCI_PLATFORM_FIELD_MAX,
                     p->os != NULL ? p->os : "?", OCI_PLATFORM_FIELD_MAX,
                     p->architecture != NULL ? p->architecture : "?", v[0] != '\0' ? "/" : "",
                     OCI_PLATFORM_FIELD_MAX, v);
    if (n < 0 && size > 0)
        out[0] = '\0';
    for (size_t i = 0; i < size && out[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)out[i];
        if (ch < 0x21 || ch > 0x7e || ch == '"' || ch == '\\')
            out[i] = '?';
    }
}

/* ---- parsing helpers ------------------------------------------------------------ */

/* RFC 6838 restricted-name characters. */
static bool mt_char(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$&-^_.+", ch) != NULL;
}

static bool media_type_valid(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || slash[1] == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (p != slash && !mt_char((unsigned char)*p))
            return false;
    }
    return (size_t)(slash - s) <= 127 && strlen(slash + 1) <= 127;
}

/* Printable ASCII without spaces, 1..max bytes: platform fields and other
 * short words that end up in messages and paths. */
static bool word_valid(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x21 || ch > 0x7e)
            return false;
    }
    return true;
}

static int media_type_get(const json_t *obj, const char *key, bool required, const char **out,
                          struct ff_err *err)
{
    int rc = ff_json_get_string(obj, key, required, OCI_MEDIA_TYPE_MAX, out, err);
    if (rc != 0)
        return rc;
    if (!media_type_valid(*out)) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(*out, strlen(*out), q);
        return ff_err_set(err, FF_EINVAL, "field \"%s\": \"%s\" is not a media type", key, q);
    }
    return 0;
}

static int platform_field(const json_t *obj, const char *key, bool required, const char **out,
                          struct ff_err *err)
{
    int rc = ff_json_get_string(obj, key, required, OCI_PLATFORM_FIELD_MAX, out, err);
    if (rc != 0)
        return rc;
    if (!word_valid(*out, OCI_PLATFORM_FIELD_MAX))
        return ff_err_set(err, FF_EINVAL, "field \"%s\": expected printable ASCII without "
                          "spaces", key);
    return 0;
}

static int platform_parse(const json_t *obj, struct oci_platform *p, struct ff_err *err)
{
    json_t *pl = NULL;
    int rc = ff_json_get_object(obj, "platform", false, &pl, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = platform_field(pl, "architecture", true, &p->architecture, err);
    if (rc == 0)
        rc = platform_field(pl, "os", true, &p->os, err);
    if (rc == 0) {
        rc = platform_field(pl, "variant", false, &p->variant, err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    if (rc != 0) {
        memset(p, 0, sizeof(*p));
        return ff_err_wrap(err, "platform");
    }
    return 0;
}

static int ref_name_parse(const json_t *obj, const char **out, struct ff_err *err)
{
    json_t *ann = NULL;
    int rc = ff_json_get_object(obj, "annotations", false, &ann, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = ff_json_get_string(ann, OCI_ANNOTATION_REF_NAME, false, OCI_STRING_MAX, out, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    return rc != 0 ? ff_err_wrap(err, "annotations") : 0;
}

static int descriptor_parse(const json_t *obj, struct oci_descriptor *d, struct ff_err *err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(obj))
        return ff_err_set(err, FF_EINVAL, "expected an object, got %s", ff_json_type_name(obj));
    const char *digest = NULL;
    int rc = media_type_get(obj, "mediaType", true, &d->media_type, err);
    if (rc == 0)
        rc = ff_json_get_string(obj, "digest", true, FF_DIGEST_STR_MAX, &digest, err);
    if (rc == 0 && ff_digest_parse_str(digest, &d->digest, err) != 0)
        rc = ff_err_wrap(err, "field \"digest\"");
    if (rc == 0)
        rc = ff_json_get_int(obj, "size", true, 0, OCI_BLOB_SIZE_MAX, &d->size, err);
    if (rc == 0)
        rc = platform_parse(obj, &d->platform, err);
    if (rc == 0)
        rc = ref_name_parse(obj, &d->ref_name, err);
    return rc;
}

/* ---- manifests and indexes -------------------------------------------------------- */

static const struct {
    const char *media_type;
    enum oci_kind kind;
    bool oci;
} manifest_types[] = {
    {OCI_MT_MANIFEST, OCI_KIND_MANIFEST, true},
    {OCI_MT_INDEX, OCI_KIND_INDEX, true},
    {DOCKER_MT_MANIFEST, OCI_KIND_MANIFEST, false},
    {DOCKER_MT_LIST, OCI_KIND_INDEX, false},
};
#define MANIFEST_TYPES (sizeof(manifest_types) / sizeof(manifest_types[0]))

static int type_lookup(const char *mt, size_t len)
{
    for (size_t i = 0; i < MANIFEST_TYPES; i++) {
        const char *t = manifest_types[i].media_type;
        if (strlen(t) == len && strncasecmp(t, mt, len) == 0)
            return (int)i;
    }
    return -1;
}

/* Index of the manifest type named by a Content-Type value (parameters
 * and blanks ignored), or -1. */
static int content_type_lookup(const char *ct)
{
    if (ct == NULL)
        return -1;
    size_t len = strnlen(ct, CONTENT_TYPE_MAX + 1);
    if (len > CONTENT_TYPE_MAX)
        return -1;
    const char *semi = memchr(ct, ';', len);
    if (semi != NULL)
        len = (size_t)(semi - ct);
    while (len > 0 && (*ct == ' ' || *ct == '\t')) {
        ct++;
        len--;
    }
    while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    return type_lookup(ct, len);
}

static int manifest_type_decide(const json_t *root, const char *content_type, int *out,
                                struct ff_err *err)
{
    const char *mt = NULL;
    int rc = media_type_get(root, "mediaType", false, &mt, err);
    if (rc != 0 && rc != FF_ENOTFOUND)
        return rc;
    int ct = content_type_lookup(content_type);
    if (mt != NULL) {
        int t = type_lookup(mt, strlen(mt));
        if (t < 0)
            return ff_err_set(err, FF_EINVAL, "mediaType \"%s\" is not an image manifest or "
                              "index", mt);
        if (ct >= 0 && ct != t)
            return ff_err_set(err, FF_EINVAL, "mediaType \"%s\" but Content-Type \"%s\"", mt,
                              manifest_types[ct].media_type);
        *out = t;
        return 0;
    }
    if (ct >= 0 && !manifest_types[ct].oci)
        return ff_err_set(err, FF_EINVAL, "a %s document without mediaType",
                          manifest_types[ct].media_type);
    if (ct >= 0) {
        *out = ct;
        return 0;
    }
    bool has_manifests = json_object_get(root, "manifests") != NULL;
    bool has_config = json_object_get(root, "config") != NULL;
    if (has_manifests == has_config)
        return ff_err_set(err, FF_EINVAL, "no mediaType, and neither \"config\" nor "
                          "\"manifests\" alone says what the document is");
    *out = has_manifests ? 1 : 0;
    return 0;
}

static bool layer_type_ok(const char *mt)
{
    static const char *const ok[] = {OCI_MT_LAYER, OCI_MT_LAYER_GZIP, OCI_MT_LAYER_ZSTD,
                                     DOCKER_MT_LAYER_GZIP};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(mt, ok[i]) == 0)
            return true;
    }
    return false;
}

static int descriptors_parse(const json_t *arr, const char *key, struct oci_descriptor **out,
                             size_t *n_out, struct ff_err *err)
{
    size_t n = json_array_size(arr);
    struct oci_descriptor *d = calloc(n > 0 ? n : 1, sizeof(*d));
    if (d == NULL)
        return ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    for (size_t i = 0; i < n; i++) {
        int rc = descriptor_parse(json_array_get(arr, i), &d[i], err);
        if (rc == 0 && strcmp(key, "layers") == 0 && !layer_type_ok(d[i].media_type))
            rc = ff_err_set(err, FF_EINVAL, "media type \"%s\" is not a layer we can unpack",
                            d[i].media_type);
        if (rc != 0) {
            free(d);
            return ff_err_wrap(err, "%s[%zu]", key, i);
        }
    }
    *out = d;
    *n_out = n;
    return 0;
}

static int image_manifest_parse(struct oci_manifest *m, struct ff_err *err)
{
    json_t *cfg = NULL, *layers = NULL;
    if (json_object_get(m->root, "manifests") != NULL)
        return ff_err_set(err, FF_EINVAL, "an image manifest with a \"manifests\" field");
    int rc = ff_json_get_object(m->root, "config", true, &cfg, err);
    if (rc != 0)
        return rc;
    rc = descriptor_parse(cfg, &m->config, err);
    if (rc != 0)
        return ff_err_wrap(err, "config");
    if (strcmp(m->config.media_type, OCI_MT_CONFIG) != 0 &&
        strcmp(m->config.media_type, DOCKER_MT_CONFIG) != 0)
        return ff_err_set(err, FF_EINVAL, "config media type \"%s\": not a container image "
                          "config", m->config.media_type);
    rc = ff_json_get_array(m->root, "layers", true, OCI_LAYERS_MAX, &layers, err);
    if (rc != 0)
        return rc;
    return descriptors_parse(layers, "layers", &m->layers, &m->n_layers, err);
}

static int index_parse(struct oci_manifest *m, struct ff_err *err)
{
    json_t *entries = NULL;
    if (json_object_get(m->root, "config") != NULL || json_object_get(m->root, "layers") != NULL)
        return ff_err_set(err, FF_EINVAL, "an index with \"config\" or \"layers\"");
    int rc = ff_json_get_array(m->root, "manifests", true, OCI_INDEX_MAX, &entries, err);
    if (rc != 0)
        return rc;
    return descriptors_parse(entries, "manifests", &m->manifests, &m->n_manifests, err);
}

int oci_manifest_parse(const void *data, size_t len, const char *content_type,
                       struct oci_manifest *out, struct ff_err *err)
{
    struct oci_manifest m;
    memset(&m, 0, sizeof(m));
    memset(out, 0, sizeof(*out));
    if (len > OCI_MANIFEST_MAX)
        return ff_err_set(err, FF_ETOOBIG, "manifest: %zu bytes, limit is %u", len,
                          OCI_MANIFEST_MAX);
    int rc = ff_json_parse_object(data, len, OCI_MANIFEST_MAX, &m.root, err);
    if (rc != 0)
        return ff_err_wrap(err, "manifest");
    int64_t version = 0;
    int t = -1;
    rc = ff_json_get_int(m.root, "schemaVersion", true, 2, 2, &version, err);
    if (rc == 0)
        rc = manifest_type_decide(m.root, content_type, &t, err);
    if (rc == 0) {
        m.kind = manifest_types[t].kind;
        m.media_type = manifest_types[t].media_type;
        rc = m.kind == OCI_KIND_MANIFEST ? image_manifest_parse(&m, err) : index_parse(&m, err);
    }
    if (rc != 0) {
        oci_manifest_release(&m);
        return ff_err_wrap(err, "manifest");
    }
    *out = m;
    return 0;
}

void oci_manifest_release(struct oci_manifest *m)
{
    if (m == NULL)
        return;
    free(m->layers);
    free(m->manifests);
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

static bool is_image_manifest_type(const char *mt)
{
    return strcmp(mt, OCI_MT_MANIFEST) == 0 || strcmp(mt, DOCKER_MT_MANIFEST) == 0;
}

/* Lists the runnable platforms of index m into b, for messages. */
static void platforms_list(const struct oci_manifest *m, struct ff_buf *b)
{
    size_t shown = 0;
    for (size_t i = 0; i < m->n_manifests; i++) {
        const struct oci_descriptor *d = &m->manifests[i];
        if (d->platform.os == NULL || strcmp(d->platform.os, "unknown") == 0 ||
            !is_image_manifest_type(d->media_type))
            continue;
        char s[OCI_PLATFORM_STR_SIZE];
        oci_platform_format(&d->platform, s, sizeof(s));
        if (ff_buf_printf(b, "%s%s", shown++ > 0 ? ", " : "", s) != 0)
            return;
    }
    if (shown == 0)
        (void)ff_buf_append_str(b, "none");
}

int oci_index_select(const struct oci_manifest *m, const struct oci_platform *want,
                     const struct oci_descriptor **out, struct ff_err *err)
{
    if (m->kind != OCI_KIND_INDEX)
        return ff_err_set(err, FF_EINVAL, "platform selection on a manifest, not an index");
    const struct oci_descriptor *found = NULL;
    for (size_t i = 0; i < m->n_manifests; i++) {
        const struct oci_descriptor *d = &m->manifests[i];
        if (!is_image_manifest_type(d->media_type) || d->platform.os == NULL ||
            strcmp(d->platform.os, "unknown") == 0 || !oci_platform_match(want, &d->platform))
            continue;
        if (str_eq(d->platform.architecture, want->architecture) &&
            str_eq(d->platform.variant, want->variant)) {
            found = d;
            break;
        }
        if (found == NULL)
            found = d;
    }
    if (found != NULL) {
        *out = found;
        return 0;
    }
    char w[OCI_PLATFORM_STR_SIZE];
    oci_platform_format(want, w, sizeof(w));
    struct ff_buf list;
    ff_buf_init(&list, FF_ERR_MSG_MAX);
    platforms_list(m, &list);
    int rc = ff_err_set(err, FF_ENOTFOUND, "no image for platform %s; the index has: %s", w,
                        list.data != NULL ? list.data : "none");
    ff_buf_release(&list);
    return rc;
}

/* ---- building manifests and indexes ------------------------------------------------- */

/* json_object_set_new that reports failure (it frees value either way). */
static bool set_new(json_t *obj, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(obj, key, value) == 0;
}

static int annotation_cmp(const void *a, const void *b)
{
    const struct oci_annotation *const *x = a;
    const struct oci_annotation *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

/* {"k": "v", ...} sorted by key; duplicates refused. */
static int annotations_json(const struct oci_annotation *ann, size_t n, json_t **out,
                            struct ff_err *err)
{
    const struct oci_annotation **sorted =
        calloc(n > 0 ? n : 1, sizeof(const struct oci_annotation *));
    json_t *obj = json_object();
    int rc = 0;
    if (sorted == NULL || obj == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "annotations: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (ann[i].key == NULL || ann[i].key[0] == '\0' || ann[i].value == NULL) {
            rc = ff_err_set(err, FF_EINVAL, "annotation %zu: empty key or no value", i);
            goto out;
        }
        sorted[i] = &ann[i];
    }
    qsort(sorted, n, sizeof(const struct oci_annotation *), annotation_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i - 1]->key, sorted[i]->key) == 0) {
            rc = ff_err_set(err, FF_EINVAL, "annotation \"%s\" given twice", sorted[i]->key);
            goto out;
        }
        if (!set_new(obj, sorted[i]->key, json_string(sorted[i]->value))) {
            rc = ff_err_set(err, FF_EINVAL, "annotation \"%s\": not UTF-8", sorted[i]->key);
            goto out;
        }
    }
    *out = obj;
    obj = NULL;
out:
    json_decref(obj);
    free(sorted);
    return rc;
}

static json_t *platform_json(const struct oci_platform *p)
{
    json_t *obj = json_object();
    if (obj == NULL)
        return NULL;
    bool ok = set_new(obj, "architecture", json_string(p->architecture)) &&
              set_new(obj, "os", json_string(p->os));
    if (ok && p->variant != NULL && p->variant[0] != '\0')
        ok = set_new(obj, "variant", json_string(p->variant));
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Descriptor fields in the order of Go's v1.Descriptor: mediaType,
 * digest, size, annotations, platform. */
static int descriptor_json(const struct oci_descriptor *d, bool with_platform, json_t **out,
                           struct ff_err *err)
{
    if (d->media_type == NULL || !media_type_valid(d->media_type))
        return ff_err_set(err, FF_EINVAL, "descriptor without a valid media type");
    if (d->size < 0)
        return ff_err_set(err, FF_EINVAL, "descriptor with a negative size");
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d->digest, ds);
    json_t *obj = json_object();
    bool ok = obj != NULL && set_new(obj, "mediaType", json_string(d->media_type)) &&
              set_new(obj, "digest", json_string(ds)) &&
              set_new(obj, "size", json_integer((json_int_t)d->size));
    if (ok && d->ref_name != NULL) {
        json_t *ann = json_object();
        ok = ann != NULL && set_new(ann, OCI_ANNOTATION_REF_NAME, json_string(d->ref_name));
        if (ok)
            ok = set_new(obj, "annotations", ann); /* takes ann either way */
        else
            json_decref(ann);
    }
    if (ok && with_platform && d->platform.os != NULL) {
        if (d->platform.architecture == NULL) {
            json_decref(obj);
            return ff_err_set(err, FF_EINVAL, "platform without an architecture");
        }
        ok = set_new(obj, "platform", platform_json(&d->platform));
    }
    if (!ok) {
        json_decref(obj);
        return ff_err_set(err, FF_ENOMEM, "descriptor: out of memory or a string not UTF-8");
    }
    *out = obj;
    return 0;
}

static int document_start(const char *media_type, json_t **out, struct ff_err *err)
{
    json_t *root = json_object();
    if (root == NULL || !set_new(root, "schemaVersion", json_integer(2)) ||
        !set_new(root, "mediaType", json_string(media_type))) {
        json_decref(root);
        return ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    }
    *out = root;
    return 0;
}

static int descriptors_json(const struct oci_descriptor *d, size_t n, bool with_platform,
                            json_t **out, struct ff_err *err)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *one = NULL;
        int rc = descriptor_json(&d[i], with_platform, &one, err);
        if (rc == 0 && json_array_append_new(arr, one) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
        if (rc != 0) {
            json_decref(arr);
            return ff_err_wrap(err, "entry %zu", i);
        }
    }
    *out = arr;
    return 0;
}

static int document_finish(json_t *root, const struct oci_annotation *ann, size_t n_ann,
                           char **out, size_t *out_len, struct ff_err *err)
{
    int rc = 0;
    if (n_ann > 0) {
        json_t *obj = NULL;
        rc = annotations_json(ann, n_ann, &obj, err);
        if (rc == 0 && !set_new(root, "annotations", obj))
            rc = ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    }
    if (rc == 0)
        rc = ff_json_dump(root, out, out_len, err);
    json_decref(root);
    return rc;
}

int oci_manifest_build(const struct oci_descriptor *config, const struct oci_descriptor *layers,
                       size_t n_layers, const struct oci_annotation *annotations,
                       size_t n_annotations, char **out, size_t *out_len, struct ff_err *err)
{
    if (n_layers > OCI_LAYERS_MAX)
        return ff_err_set(err, FF_EINVAL, "manifest: %zu layers, limit is %d", n_layers,
                          OCI_LAYERS_MAX);
    json_t *root = NULL, *cfg = NULL, *arr = NULL;
    int rc = document_start(OCI_MT_MANIFEST, &root, err);
    if (rc != 0)
        return rc;
    rc = descriptor_json(config, false, &cfg, err);
    if (rc != 0) {
        json_decref(root);
        return ff_err_wrap(err, "manifest config");
    }
    if (!set_new(root, "config", cfg)) {
        json_decref(root);
        return ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    }
    rc = descriptors_json(layers, n_layers, false, &arr, err);
    if (rc == 0 && !set_new(root, "layers", arr))
        rc = ff_err_set(err, FF_ENOMEM, "manifest: out of memory");
    if (rc != 0) {
        json_decref(root);
        return ff_err_wrap(err, "manifest layers");
    }
    return document_finish(root, annotations, n_annotations, out, out_len, err);
}

int oci_index_build(const struct oci_descriptor *manifests, size_t n,
                    const struct oci_annotation *annotations, size_t n_annotations, char **out,
                    size_t *out_len, struct ff_err *err)
{
    if (n > OCI_INDEX_MAX)
        return ff_err_set(err, FF_EINVAL, "index: %zu entries, limit is %d", n, OCI_INDEX_MAX);
    json_t *root = NULL, *arr = NULL;
    int rc = document_start(OCI_MT_INDEX, &root, err);
    if (rc != 0)
        return rc;
    rc = descriptors_json(manifests, n, true, &arr, err);
    if (rc == 0 && !set_new(root, "manifests", arr))
        rc = ff_err_set(err, FF_ENOMEM, "index: out of memory");
    if (rc != 0) {
        json_decref(root);
        return ff_err_wrap(err, "index");
    }
    return document_finish(root, annotations, n_annotations, out, out_len, err);
}

/* ---- image config: parsing ------------------------------------------------------------ */

void oci_config_init(struct oci_image_config *c)
{
    memset(c, 0, sizeof(*c));
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void history_entry_release(struct oci_history *h)
{
    free(h->created);
    free(h->created_by);
    free(h->author);
    free(h->comment);
}

void oci_config_release(struct oci_image_config *c)
{
    if (c == NULL)
        return;
    free(c->created);
    free(c->architecture);
    free(c->variant);
    free(c->os);
    free(c->user);
    free(c->working_dir);
    strv_free(c->env, c->n_env);
    strv_free(c->entrypoint, c->n_entrypoint);
    strv_free(c->cmd, c->n_cmd);
    for (size_t i = 0; i < c->n_labels; i++) {
        free(c->labels[i].key);
        free(c->labels[i].value);
    }
    free(c->labels);
    strv_free(c->exposed_ports, c->n_exposed_ports);
    json_decref(c->extra);
    free(c->diff_ids);
    for (size_t i = 0; i < c->n_history; i++)
        history_entry_release(&c->history[i]);
    free(c->history);
    memset(c, 0, sizeof(*c));
}

/* An optional string that may be empty or null: *out is a copy, or NULL
 * when absent or null. */
static int string_copy_get(const json_t *obj, const char *key, size_t max, char **out,
                           struct ff_err *err)
{
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return ff_err_set(err, FF_EINVAL, "field \"%s\": expected a string, got %s", key,
                          ff_json_type_name(v));
    if (json_string_length(v) > max)
        return ff_err_set(err, FF_EINVAL, "field \"%s\": %zu bytes long, limit is %zu", key,
                          json_string_length(v), max);
    *out = strdup(json_string_value(v));
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "config: out of memory");
}

/* An array of strings or null; *has says whether it was there (not null). */
static int strv_get(const json_t *obj, const char *key, char ***out, size_t *n_out, bool *has,
                    struct ff_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (has != NULL)
        *has = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return ff_err_set(err, FF_EINVAL, "field \"%s\": expected an array, got %s", key,
                          ff_json_type_name(v));
    size_t n = json_array_size(v);
    if (n > OCI_LIST_MAX)
        return ff_err_set(err, FF_EINVAL, "field \"%s\": %zu items, limit is %d", key, n,
                          OCI_LIST_MAX);
    char **sv = calloc(n > 0 ? n : 1, sizeof(*sv));
    if (sv == NULL)
        return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(v, i);
        if (!json_is_string(item) || json_string_length(item) > OCI_STRING_MAX) {
            strv_free(sv, i);
            return ff_err_set(err, FF_EINVAL, "field \"%s\": item %zu is not a string of at "
                              "most %d bytes", key, i, OCI_STRING_MAX);
        }
        sv[i] = strdup(json_string_value(item));
        if (sv[i] == NULL) {
            strv_free(sv, i);
            return ff_err_set(err, FF_ENOMEM, "config: out of memory");
        }
    }
    *out = sv;
    *n_out = n;
    if (has != NULL)
        *has = true;
    return 0;
}

static int env_check(char *const *env, size_t n, struct ff_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(env[i], '=');
        if (eq == NULL || eq == env[i])
            return ff_err_set(err, FF_EINVAL, "field \"Env\": item %zu is not NAME=value", i);
        for (size_t j = 0; j < i; j++) {
            if (strncmp(env[j], env[i], (size_t)(eq - env[i]) + 1) == 0)
                return ff_err_set(err, FF_EINVAL, "field \"Env\": item %zu repeats a name", i);
        }
    }
    return 0;
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct oci_label *)a)->key, ((const struct oci_label *)b)->key);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int labels_get(const json_t *cfg, struct oci_image_config *c, struct ff_err *err)
{
    json_t *v = json_object_get(cfg, "Labels");
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return ff_err_set(err, FF_EINVAL, "field \"Labels\": expected an object, got %s",
                          ff_json_type_name(v));
    size_t n = json_object_size(v);
    if (n > OCI_LIST_MAX)
        return ff_err_set(err, FF_EINVAL, "field \"Labels\": %zu labels, limit is %d", n,
                          OCI_LIST_MAX);
    c->labels = calloc(n > 0 ? n : 1, sizeof(*c->labels));
    if (c->labels == NULL)
        return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (!json_is_string(val) || json_string_length(val) > OCI_STRING_MAX ||
            strlen(key) > OCI_STRING_MAX)
            return ff_err_set(err, FF_EINVAL, "field \"Labels\": a value that is not a string "
                              "of at most %d bytes", OCI_STRING_MAX);
        struct oci_label *l = &c->labels[c->n_labels];
        l->key = strdup(key);
        l->value = strdup(json_string_value(val));
        c->n_labels++;
        if (l->key == NULL || l->value == NULL)
            return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    }
    qsort(c->labels, c->n_labels, sizeof(*c->labels), label_cmp);
    return 0;
}

static int ports_get(const json_t *cfg, struct oci_image_config *c, struct ff_err *err)
{
    json_t *v = json_object_get(cfg, "ExposedPorts");
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return ff_err_set(err, FF_EINVAL, "field \"ExposedPorts\": expected an object, got %s",
                          ff_json_type_name(v));
    size_t n = json_object_size(v);
    if (n > OCI_LIST_MAX)
        return ff_err_set(err, FF_EINVAL, "field \"ExposedPorts\": %zu ports, limit is %d", n,
                          OCI_LIST_MAX);
    c->exposed_ports = calloc(n > 0 ? n : 1, sizeof(*c->exposed_ports));
    if (c->exposed_ports == NULL)
        return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (!word_valid(key, PORT_KEY_MAX) || !json_is_object(val))
            return ff_err_set(err, FF_EINVAL, "field \"ExposedPorts\": expected \"port/proto\""
                              ": {} entries");
        c->exposed_ports[c->n_exposed_ports] = strdup(key);
        if (c->exposed_ports[c->n_exposed_ports] == NULL)
            return ff_err_set(err, FF_ENOMEM, "config: out of memory");
        c->n_exposed_ports++;
    }
    qsort(c->exposed_ports, c->n_exposed_ports, sizeof(char *), str_cmp);
    return 0;
}

/* Config fields carried over from a base image without being modelled,
 * in sorted order. */
static const char *const extra_keys[] = {"Healthcheck", "Shell", "StopSignal", "Volumes"};

static int extra_get(const json_t *cfg, struct oci_image_config *c, struct ff_err *err)
{
    for (size_t i = 0; i < sizeof(extra_keys) / sizeof(extra_keys[0]); i++) {
        json_t *v = json_object_get(cfg, extra_keys[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (c->extra == NULL && (c->extra = json_object()) == NULL)
            return ff_err_set(err, FF_ENOMEM, "config: out of memory");
        if (!set_new(c->extra, extra_keys[i], json_deep_copy(v)))
            return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    }
    return 0;
}

static int run_config_parse(const json_t *root, struct oci_image_config *c, struct ff_err *err)
{
    json_t *cfg = json_object_get(root, "config");
    if (cfg == NULL || json_is_null(cfg))
        return 0;
    if (!json_is_object(cfg))
        return ff_err_set(err, FF_EINVAL, "field \"config\": expected an object, got %s",
                          ff_json_type_name(cfg));
    int rc = string_copy_get(cfg, "User", OCI_STRING_MAX, &c->user, err);
    if (rc == 0)
        rc = string_copy_get(cfg, "WorkingDir", OCI_STRING_MAX, &c->working_dir, err);
    if (rc == 0)
        rc = strv_get(cfg, "Env", &c->env, &c->n_env, NULL, err);
    if (rc == 0)
        rc = env_check(c->env, c->n_env, err);
    if (rc == 0)
        rc = strv_get(cfg, "Entrypoint", &c->entrypoint, &c->n_entrypoint, &c->has_entrypoint,
                      err);
    if (rc == 0)
        rc = strv_get(cfg, "Cmd", &c->cmd, &c->n_cmd, &c->has_cmd, err);
    if (rc == 0)
        rc = labels_get(cfg, c, err);
    if (rc == 0)
        rc = ports_get(cfg, c, err);
    if (rc == 0)
        rc = extra_get(cfg, c, err);
    return rc != 0 ? ff_err_wrap(err, "config") : 0;
}

static int rootfs_parse(const json_t *root, struct oci_image_config *c, struct ff_err *err)
{
    json_t *rootfs = NULL, *ids = NULL;
    const char *type = NULL;
    int rc = ff_json_get_object(root, "rootfs", true, &rootfs, err);
    if (rc == 0)
        rc = ff_json_get_string(rootfs, "type", true, 64, &type, err);
    if (rc == 0 && strcmp(type, "layers") != 0)
        rc = ff_err_set(err, FF_EINVAL, "field \"type\": expected \"layers\"");
    if (rc == 0)
        rc = ff_json_get_array(rootfs, "diff_ids", true, OCI_LAYERS_MAX, &ids, err);
    if (rc != 0)
        return ff_err_wrap(err, "rootfs");
    size_t n = json_array_size(ids);
    c->diff_ids = calloc(n > 0 ? n : 1, sizeof(*c->diff_ids));
    if (c->diff_ids == NULL)
        return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(ids, i));
        if (s == NULL)
            return ff_err_set(err, FF_EINVAL, "rootfs: diff_ids[%zu] is not a string", i);
        if (ff_digest_parse_str(s, &c->diff_ids[i], err) != 0)
            return ff_err_wrap(err, "rootfs: diff_ids[%zu]", i);
    }
    c->n_diff_ids = n;
    return 0;
}

static int history_entry_parse(const json_t *h, struct oci_history *out, struct ff_err *err)
{
    if (!json_is_object(h))
        return ff_err_set(err, FF_EINVAL, "expected an object, got %s", ff_json_type_name(h));
    int rc = string_copy_get(h, "created", TIME_STRING_MAX, &out->created, err);
    if (rc == 0)
        rc = string_copy_get(h, "created_by", OCI_STRING_MAX, &out->created_by, err);
    if (rc == 0)
        rc = string_copy_get(h, "author", OCI_STRING_MAX, &out->author, err);
    if (rc == 0)
        rc = string_copy_get(h, "comment", OCI_STRING_MAX, &out->comment, err);
    if (rc == 0) {
        rc = ff_json_get_bool(h, "empty_layer", false, &out->empty_layer, err);
        if (rc == FF_ENOTFOUND)
            rc = 0;
    }
    return rc;
}

static int history_parse(const json_t *root, struct oci_image_config *c, struct ff_err *err)
{
    json_t *arr = NULL;
    int rc = ff_json_get_array(root, "history", false, OCI_LIST_MAX, &arr, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    size_t n = json_array_size(arr);
    c->history = calloc(n > 0 ? n : 1, sizeof(*c->history));
    if (c->history == NULL)
        return ff_err_set(err, FF_ENOMEM, "config: out of memory");
    for (size_t i = 0; i < n; i++) {
        c->n_history = i + 1;
        rc = history_entry_parse(json_array_get(arr, i), &c->history[i], err);
        if (rc != 0)
            return ff_err_wrap(err, "history[%zu]", i);
    }
    return 0;
}

static int platform_copy_get(const json_t *root, const char *key, bool required, char **out,
                             struct ff_err *err)
{
    const char *s = NULL;
    int rc = platform_field(root, key, required, &s, err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    *out = strdup(s);
    return *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "config: out of memory");
}

int oci_config_parse(const void *data, size_t len, struct oci_image_config *out,
                     struct ff_err *err)
{
    oci_config_init(out);
    if (len > OCI_CONFIG_MAX)
        return ff_err_set(err, FF_ETOOBIG, "image config: %zu bytes, limit is %u", len,
                          OCI_CONFIG_MAX);
    json_t *root = NULL;
    int rc = ff_json_parse_object(data, len, OCI_CONFIG_MAX, &root, err);
    if (rc != 0)
        return ff_err_wrap(err, "image config");
    rc = platform_copy_get(root, "architecture", true, &out->architecture, err);
    if (rc == 0)
        rc = platform_copy_get(root, "os", true, &out->os, err);
    if (rc == 0)
        rc = platform_copy_get(root, "variant", false, &out->variant, err);
    if (rc == 0)
        rc = string_copy_get(root, "created", TIME_STRING_MAX, &out->created, err);
    if (rc == 0)
        rc = run_config_parse(root, out, err);
    if (rc == 0)
        rc = rootfs_parse(root, out, err);
    if (rc == 0)
        rc = history_parse(root, out, err);
    json_decref(root);
    if (rc != 0) {
        oci_config_release(out);
        return ff_err_wrap(err, "image config");
    }
    return 0;
}

/* ---- image config: building ------------------------------------------------------------- */

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, json_string(v[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static bool opt_string(json_t *obj, const char *key, const char *value)
{
    return value == NULL || set_new(obj, key, json_string(value));
}

/* The "config" object in the order of Go's v1.ImageConfig. */
static json_t *run_config_json(const struct oci_image_config *c)
{
    json_t *cfg = json_object();
    if (cfg == NULL || !opt_string(cfg, "User", c->user))
        goto fail;
    if (c->n_exposed_ports > 0) {
        json_t *ports = json_object();
        if (!set_new(cfg, "ExposedPorts", ports))
            goto fail;
        for (size_t i = 0; i < c->n_exposed_ports; i++) {
            if (!set_new(ports, c->exposed_ports[i], json_object()))
                goto fail;
        }
    }
    if (c->n_env > 0 && !set_new(cfg, "Env", strv_json(c->env, c->n_env)))
        goto fail;
    if (c->has_entrypoint &&
        !set_new(cfg, "Entrypoint", strv_json(c->entrypoint, c->n_entrypoint)))
        goto fail;
    if (c->has_cmd && !set_new(cfg, "Cmd", strv_json(c->cmd, c->n_cmd)))
        goto fail;
    if (!opt_string(cfg, "WorkingDir", c->working_dir))
        goto fail;
    if (c->n_labels > 0) {
        json_t *labels = json_object();
        if (!set_new(cfg, "Labels", labels))
            goto fail;
        for (size_t i = 0; i < c->n_labels; i++) {
            if (!set_new(labels, c->labels[i].key, json_string(c->labels[i].value)))
                goto fail;
        }
    }
    for (size_t i = 0; c->extra != NULL && i < sizeof(extra_keys) / sizeof(extra_keys[0]); i++) {
        json_t *v = json_object_get(c->extra, extra_keys[i]);
        if (v != NULL && !set_new(cfg, extra_keys[i], json_deep_copy(v)))
            goto fail;
    }
    return cfg;
fail:
    json_decref(cfg);
    return NULL;
}

static json_t *rootfs_json(const struct oci_image_config *c)
{
    json_t *rootfs = json_object();
    json_t *ids = json_array();
    if (rootfs == NULL || ids == NULL || !set_new(rootfs, "type", json_string("layers"))) {
        json_decref(rootfs);
        json_decref(ids);
        return NULL;
    }
    if (!set_new(rootfs, "diff_ids", ids)) {
        json_decref(rootfs);
        return NULL;
    }
    for (size_t i = 0; i < c->n_diff_ids; i++) {
        char ds[FF_DIGEST_STR_SIZE];
        ff_digest_format(&c->diff_ids[i], ds);
        if (json_array_append_new(ids, json_string(ds)) != 0) {
            json_decref(rootfs);
            return NULL;
        }
    }
    return rootfs;
}

static json_t *history_json(const struct oci_image_config *c)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < c->n_history; i++) {
        const struct oci_history *h = &c->history[i];
        json_t *e = json_object();
        bool ok = e != NULL && opt_string(e, "created", h->created) &&
                  opt_string(e, "created_by", h->created_by) &&
                  opt_string(e, "author", h->author) && opt_string(e, "comment", h->comment) &&
                  (!h->empty_layer || set_new(e, "empty_layer", json_true()));
        if (!ok || json_array_append_new(arr, e) != 0) {
            if (ok)
                e = NULL; /* json_array_append_new freed it */
            json_decref(e);
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int oci_config_build(const struct oci_image_config *c, char **out, size_t *out_len,
                     struct ff_err *err)
{
    if (c->architecture == NULL || c->os == NULL)
        return ff_err_set(err, FF_EINVAL, "image config: architecture and os are required");
    json_t *root = json_object();
    bool ok = root != NULL && opt_string(root, "created", c->created) &&
              set_new(root, "architecture", json_string(c->architecture)) &&
              opt_string(root, "variant", c->variant) &&
              set_new(root, "os", json_string(c->os)) &&
              set_new(root, "config", run_config_json(c)) &&
              set_new(root, "rootfs", rootfs_json(c)) &&
              (c->n_history == 0 || set_new(root, "history", history_json(c)));
    int rc = ok ? ff_json_dump(root, out, out_len, err)
                : ff_err_set(err, FF_ENOMEM, "image config: out of memory or a string not "
                             "UTF-8");
    json_decref(root);
    return rc;
}

/* ---- image config: editing --------------------------------------------------------------- */

static int list_grow(void **v, size_t n, size_t elem, struct ff_err *err)
{
    if (n >= OCI_LIST_MAX)
        return ff_err_set(err, FF_ETOOBIG, "image config: more than %d items in a list",
                          OCI_LIST_MAX);
    void *p = realloc(*v, (n + 1) * elem);
    if (p == NULL)
        return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
    *v = p;
    return 0;
}

static int name_check(const char *what, const char *name, bool allow_eq, struct ff_err *err)
{
    if (name == NULL || name[0] == '\0' || (!allow_eq && strchr(name, '=') != NULL))
        return ff_err_set(err, FF_EINVAL, "%s name: empty%s", what, allow_eq ? "" : " or with '='");
    return 0;
}

static const char *env_value_of(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=' ? entry + n + 1 : NULL;
}

const char *oci_config_env_get(const struct oci_image_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_env; i++) {
        const char *v = env_value_of(c->env[i], name);
        if (v != NULL)
            return v;
    }
    return NULL;
}

int oci_config_env_set(struct oci_image_config *c, const char *name, const char *value,
                       struct ff_err *err)
{
    int rc = name_check("Env", name, false, err);
    if (rc != 0)
        return rc;
    char *entry = ff_asprintf("%s=%s", name, value != NULL ? value : "");
    if (entry == NULL)
        return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
    for (size_t i = 0; i < c->n_env; i++) {
        if (env_value_of(c->env[i], name) != NULL) {
            free(c->env[i]);
            c->env[i] = entry;
            return 0;
        }
    }
    rc = list_grow((void **)&c->env, c->n_env, sizeof(*c->env), err);
    if (rc != 0) {
        free(entry);
        return rc;
    }
    c->env[c->n_env++] = entry;
    return 0;
}

int oci_config_label_set(struct oci_image_config *c, const char *key, const char *value,
                         struct ff_err *err)
{
    int rc = name_check("label", key, true, err);
    if (rc != 0)
        return rc;
    char *v = strdup(value != NULL ? value : "");
    if (v == NULL)
        return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
    size_t at = 0;
    while (at < c->n_labels && strcmp(c->labels[at].key, key) < 0)
        at++;
    if (at < c->n_labels && strcmp(c->labels[at].key, key) == 0) {
        free(c->labels[at].value);
        c->labels[at].value = v;
        return 0;
    }
    char *k = strdup(key);
    rc = k == NULL ? ff_err_set(err, FF_ENOMEM, "image config: out of memory")
                   : list_grow((void **)&c->labels, c->n_labels, sizeof(*c->labels), err);
    if (rc != 0) {
        free(k);
        free(v);
        return rc;
    }
    memmove(&c->labels[at + 1], &c->labels[at], (c->n_labels - at) * sizeof(*c->labels));
    c->labels[at].key = k;
    c->labels[at].value = v;
    c->n_labels++;
    return 0;
}

/* Normalises "80", "80/tcp", "53/UDP" to "<n>/<proto>". */
static int port_normalise(const char *port, char out[PORT_KEY_MAX], struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(port, strlen(port), q);
    const char *slash = strchr(port, '/');
    size_t nlen = slash != NULL ? (size_t)(slash - port) : strlen(port);
    char num[8];
    int64_t n = 0;
    if (nlen == 0 || nlen >= sizeof(num))
        return ff_err_set(err, FF_EINVAL, "port \"%s\": expected <1-65535>[/tcp|udp|sctp]", q);
    memcpy(num, port, nlen);
    num[nlen] = '\0';
    const char *proto = slash != NULL ? slash + 1 : "tcp";
    const char *canon = strcasecmp(proto, "tcp") == 0   ? "tcp"
                        : strcasecmp(proto, "udp") == 0  ? "udp"
                        : strcasecmp(proto, "sctp") == 0 ? "sctp"
                                                         : NULL;
    if (ff_parse_i64(num, 1, 65535, &n) != 0 || canon == NULL)
        return ff_err_set(err, FF_EINVAL, "port \"%s\": expected <1-65535>[/tcp|udp|sctp]", q);
    (void)snprintf(out, PORT_KEY_MAX, "%lld/%s", (long long)n, canon);
    return 0;
}

int oci_config_port_add(struct oci_image_config *c, const char *port, struct ff_err *err)
{
    char key[PORT_KEY_MAX];
    int rc = port_normalise(port != NULL ? port : "", key, err);
    if (rc != 0)
        return rc;
    size_t at = 0;
    while (at < c->n_exposed_ports && strcmp(c->exposed_ports[at], key) < 0)
        at++;
    if (at < c->n_exposed_ports && strcmp(c->exposed_ports[at], key) == 0)
        return 0;
    char *k = strdup(key);
    rc = k == NULL ? ff_err_set(err, FF_ENOMEM, "image config: out of memory")
                   : list_grow((void **)&c->exposed_ports, c->n_exposed_ports, sizeof(char *),
                               err);
    if (rc != 0) {
        free(k);
        return rc;
    }
    memmove(&c->exposed_ports[at + 1], &c->exposed_ports[at],
            (c->n_exposed_ports - at) * sizeof(char *));
    c->exposed_ports[at] = k;
    c->n_exposed_ports++;
    return 0;
}

int oci_config_argv_set(struct oci_image_config *c, const char *which, const char *const *argv,
                        size_t n, struct ff_err *err)
{
    bool cmd = which != NULL && strcmp(which, "Cmd") == 0;
    if (!cmd && (which == NULL || strcmp(which, "Entrypoint") != 0))
        return ff_err_set(err, FF_EINVAL, "argv field must be Cmd or Entrypoint");
    if (n > OCI_LIST_MAX)
        return ff_err_set(err, FF_ETOOBIG, "%s: %zu items, limit is %d", which, n, OCI_LIST_MAX);
    char **v = calloc(n > 0 ? n : 1, sizeof(*v));
    if (v == NULL)
        return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(argv[i] != NULL ? argv[i] : "");
        if (v[i] == NULL) {
            strv_free(v, i);
            return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
        }
    }
    char ***slot = cmd ? &c->cmd : &c->entrypoint;
    size_t *count = cmd ? &c->n_cmd : &c->n_entrypoint;
    strv_free(*slot, *count);
    *slot = v;
    *count = n;
    *(cmd ? &c->has_cmd : &c->has_entrypoint) = true;
    return 0;
}

int oci_config_string_set(struct oci_image_config *c, const char *field, const char *value,
                          struct ff_err *err)
{
    char **slot = NULL;
    if (field == NULL)
        slot = NULL;
    else if (strcmp(field, "User") == 0)
        slot = &c->user;
    else if (strcmp(field, "WorkingDir") == 0)
        slot = &c->working_dir;
    else if (strcmp(field, "created") == 0)
        slot = &c->created;
    else if (strcmp(field, "architecture") == 0)
        slot = &c->architecture;
    else if (strcmp(field, "os") == 0)
        slot = &c->os;
    else if (strcmp(field, "variant") == 0)
        slot = &c->variant;
    if (slot == NULL)
        return ff_err_set(err, FF_EINVAL, "image config: no string field \"%s\"",
                          field != NULL ? field : "");
    char *v = NULL;
    if (value != NULL && (v = strdup(value)) == NULL)
        return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
    free(*slot);
    *slot = v;
    return 0;
}

static char *dup_opt(const char *s, bool *ok)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *ok = false;
    return d;
}

int oci_config_history_add(struct oci_image_config *c, const char *created,
                           const char *created_by, const struct ff_digest *diff_id,
                           struct ff_err *err)
{
    if (diff_id != NULL && c->n_diff_ids >= OCI_LAYERS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "image config: more than %d layers", OCI_LAYERS_MAX);
    int rc = list_grow((void **)&c->history, c->n_history, sizeof(*c->history), err);
    if (rc == 0 && diff_id != NULL)
        rc = list_grow((void **)&c->diff_ids, c->n_diff_ids, sizeof(*c->diff_ids), err);
    if (rc != 0)
        return rc;
    struct oci_history h;
    memset(&h, 0, sizeof(h));
    bool ok = true;
    h.created = dup_opt(created, &ok);
    h.created_by = dup_opt(created_by, &ok);
    h.empty_layer = diff_id == NULL;
    if (!ok) {
        history_entry_release(&h);
        return ff_err_set(err, FF_ENOMEM, "image config: out of memory");
    }
    c->history[c->n_history++] = h;
    if (diff_id != NULL)
        c->diff_ids[c->n_diff_ids++] = *diff_id;
    return 0;
}

int oci_config_platform_check(const struct oci_image_config *c, const struct oci_platform *want,
                              struct ff_err *err)
{
    struct oci_platform have = {.os = c->os, .architecture = c->architecture,
                                .variant = c->variant};
    if (oci_platform_match(want, &have))
        return 0;
    char w[OCI_PLATFORM_STR_SIZE], h[OCI_PLATFORM_STR_SIZE];
    oci_platform_format(want, w, sizeof(w));
    oci_platform_format(&have, h, sizeof(h));
    return ff_err_set(err, FF_EINVAL, "image is for %s, expected %s", h, w);
}

int oci_time_format(int64_t epoch, char out[OCI_TIME_SIZE], struct ff_err *err)
{
    if (epoch < 0 || epoch > TIME_EPOCH_MAX)
        return ff_err_set(err, FF_ERANGE, "time %lld is outside 1970..9999", (long long)epoch);
    time_t t = (time_t)epoch;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, OCI_TIME_SIZE, "%Y-%m-%dT%H:%M:%SZ", &tm) != OCI_TIME_SIZE - 1)
        return ff_err_set(err, FF_ERANGE, "time %lld cannot be formatted", (long long)epoch);
    return 0;
}

/* ---- OCI image layout ---------------------------------------------------------------------- */

static int mkdir_p1(const char *path, struct ff_err *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return ff_err_set(err, FF_EIO, "mkdir \"%s\": %s", path, strerror(errno));
    return 0;
}

static int fsync_dir(const char *dir, struct ff_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "open \"%s\": %s", dir, strerror(errno));
    int rc = fsync(fd) != 0 ? ff_err_set(err, FF_EIO, "fsync \"%s\": %s", dir, strerror(errno))
                            : 0;
    close(fd);
    return rc;
}

static int write_all(int fd, const void *data, size_t len, const char *path, struct ff_err *err)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return ff_err_set(err, FF_EIO, "write \"%s\": %s", path,
                              n < 0 ? strerror(errno) : "no progress");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Opens a new temporary file beside final; *tmp_out is its malloc'd path. */
static int temp_open(const char *final, char **tmp_out, int *fd_out, struct ff_err *err)
{
    /* Constant codes, not ff_err_set's result, so that callers (and the
     * static analyser) know *tmp_out is set exactly when 0 is returned. */
    char *tmp = ff_asprintf("%s.tmp.XXXXXX", final);
    if (tmp == NULL) {
        (void)ff_err_set(err, FF_ENOMEM, "out of memory");
        return FF_ENOMEM;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        (void)ff_err_set(err, FF_EIO, "create a temporary file for \"%s\": %s", final,
                         strerror(errno));
        free(tmp);
        return FF_EIO;
    }
    *tmp_out = tmp;
    *fd_out = fd;
    return 0;
}

/* fsyncs and closes fd, renames tmp to final and fsyncs dir; on failure
 * tmp is removed. Frees tmp. */
static int temp_commit(int fd, char *tmp, const char *final, const char *dir,
                       struct ff_err *err)
{
    int rc = 0;
    if (fsync(fd) != 0)
        rc = ff_err_set(err, FF_EIO, "fsync \"%s\": %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = ff_err_set(err, FF_EIO, "close \"%s\": %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, final) != 0)
        rc = ff_err_set(err, FF_EIO, "rename \"%s\": %s", final, strerror(errno));
    if (rc != 0)
        (void)unlink(tmp);
    free(tmp);
    return rc == 0 ? fsync_dir(dir, err) : rc;
}

static void temp_abort(int fd, char *tmp)
{
    close(fd);
    (void)unlink(tmp);
    free(tmp);
}

static int file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                             struct ff_err *err)
{
    char *final = ff_asprintf("%s/%s", dir, name);
    char *tmp = NULL;
    int fd = -1;
    if (final == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = temp_open(final, &tmp, &fd, err);
    if (rc == 0) {
        rc = write_all(fd, data, len, tmp, err);
        if (rc != 0)
            temp_abort(fd, tmp);
        else
            rc = temp_commit(fd, tmp, final, dir, err);
    }
    free(final);
    return rc;
}

/* Reads a whole file of at most max bytes; *out is NUL-terminated. */
static int file_read_max(const char *path, size_t max, char **out, size_t *out_len,
                         struct ff_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO, "open \"%s\": %s", path,
                          strerror(errno));
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ff_err_set(err, FF_EIO, "\"%s\": not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = ff_err_set(err, FF_ETOOBIG, "\"%s\": %lld bytes, limit is %zu", path,
                        (long long)st.st_size, max);
        goto out;
    }
    size_t size = (size_t)st.st_size, got = 0;
    buf = malloc(size + 1);
    if (buf == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = ff_err_set(err, FF_EIO, "read \"%s\": %s", path,
                            n < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)n;
    }
    buf[size] = '\0';
    *out = buf;
    *out_len = size;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

static char *blobs_dir(const char *dir)
{
    return ff_asprintf("%s/blobs/sha256", dir);
}

char *oci_layout_blob_path(const char *dir, const struct ff_digest *d)
{
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(d, hex);
    return ff_asprintf("%s/blobs/sha256/%s", dir, hex);
}

static const char layout_file_content[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

static int layout_version_check(const char *dir, struct ff_err *err)
{
    char *path = ff_asprintf("%s/oci-layout", dir);
    char *data = NULL;
    size_t len = 0;
    json_t *root = NULL;
    const char *version = NULL;
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = file_read_max(path, LAYOUT_FILE_MAX, &data, &len, err);
    if (rc == 0)
        rc = ff_json_parse_object(data, len, LAYOUT_FILE_MAX, &root, err);
    if (rc == 0)
        rc = ff_json_get_string(root, "imageLayoutVersion", true, 32, &version, err);
    if (rc == 0 && strcmp(version, "1.0.0") != 0)
        rc = ff_err_set(err, FF_EINVAL, "imageLayoutVersion \"%s\", expected \"1.0.0\"",
                        version);
    if (rc != 0)
        ff_err_wrap(err, "oci layout \"%s\"", dir);
    json_decref(root);
    free(data);
    free(path);
    return rc;
}

int oci_layout_init(const char *dir, struct ff_err *err)
{
    char *blobs = ff_asprintf("%s/blobs", dir);
    char *sha = blobs_dir(dir);
    int rc;
    if (blobs == NULL || sha == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    rc = mkdir_p1(dir, err);
    if (rc == 0)
        rc = mkdir_p1(blobs, err);
    if (rc == 0)
        rc = mkdir_p1(sha, err);
    if (rc == 0) {
        rc = layout_version_check(dir, err);
        if (rc == FF_ENOTFOUND)
            rc = file_write_atomic(dir, "oci-layout", layout_file_content,
                                   sizeof(layout_file_content) - 1, err);
    }
out:
    free(blobs);
    free(sha);
    return rc;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Copies src into the layout as blob d, hashing on the way. */
static int blob_copy(const char *dir, const struct ff_digest *d, const char *src,
                     const char *dest, struct ff_err *err)
{
    char *sha = blobs_dir(dir);
    unsigned char *buf = malloc(COPY_BUF_SIZE);
    struct ff_digest_ctx *ctx = NULL;
    char *tmp = NULL;
    int in = -1, out = -1;
    int rc;
    if (sha == NULL || buf == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto done;
    }
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        rc = ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO, "open \"%s\": %s", src,
                        strerror(errno));
        goto done;
    }
    rc = ff_digest_ctx_new(&ctx, err);
    if (rc == 0)
        rc = temp_open(dest, &tmp, &out, err);
    while (rc == 0) {
        ssize_t n = read(in, buf, COPY_BUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = ff_err_set(err, FF_EIO, "read \"%s\": %s", src, strerror(errno));
        if (n <= 0)
            break;
        rc = ff_digest_ctx_update(ctx, buf, (size_t)n, err);
        if (rc == 0)
            rc = write_all(out, buf, (size_t)n, tmp, err);
    }
    struct ff_digest got;
    if (rc == 0)
        rc = ff_digest_ctx_final(ctx, &got, err);
    if (rc == 0 && !ff_digest_equal(&got, d)) {
        char want_s[FF_DIGEST_STR_SIZE], got_s[FF_DIGEST_STR_SIZE];
        ff_digest_format(d, want_s);
        ff_digest_format(&got, got_s);
        rc = ff_err_set(err, FF_EINVAL, "\"%s\": digest mismatch (expected %s, got %s)", src,
                        want_s, got_s);
    }
    if (tmp != NULL) {
        if (rc == 0)
            rc = temp_commit(out, tmp, dest, sha, err);
        else
            temp_abort(out, tmp);
    }
done:
    if (in >= 0)
        close(in);
    ff_digest_ctx_free(ctx);
    free(buf);
    free(sha);
    return rc;
}

int oci_layout_blob_add_file(const char *dir, const struct ff_digest *d, const char *path,
                             bool link_ok, struct ff_err *err)
{
    char *dest = oci_layout_blob_path(dir, d);
    if (dest == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    if (file_exists(dest))
        goto out;
    if (link_ok && link(path, dest) == 0)
        goto out;
    if (link_ok && errno == EEXIST)
        goto out;
    rc = blob_copy(dir, d, path, dest, err);
out:
    free(dest);
    return rc;
}

int oci_layout_blob_add_bytes(const char *dir, const void *data, size_t len,
                              struct ff_digest *out, struct ff_err *err)
{
    struct ff_digest d;
    int rc = ff_digest_buffer(data, len, &d, err);
    if (rc != 0)
        return rc;
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(&d, hex);
    char *sha = blobs_dir(dir);
    char *dest = oci_layout_blob_path(dir, &d);
    if (sha == NULL || dest == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    else if (!file_exists(dest))
        rc = file_write_atomic(sha, hex, data, len, err);
    if (rc == 0 && out != NULL)
        *out = d;
    free(sha);
    free(dest);
    return rc;
}

int oci_layout_blob_read(const char *dir, const struct ff_digest *d, size_t max, char **out,
                         size_t *out_len, struct ff_err *err)
{
    char *path = oci_layout_blob_path(dir, d);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    char *data = NULL;
    size_t len = 0;
    struct ff_digest got;
    int rc = file_read_max(path, max, &data, &len, err);
    if (rc == 0)
        rc = ff_digest_buffer(data, len, &got, err);
    if (rc == 0 && !ff_digest_equal(&got, d)) {
        char want_s[FF_DIGEST_STR_SIZE], got_s[FF_DIGEST_STR_SIZE];
        ff_digest_format(d, want_s);
        ff_digest_format(&got, got_s);
        rc = ff_err_set(err, FF_EINVAL, "layout blob \"%s\": digest mismatch (expected %s, "
                        "got %s)", path, want_s, got_s);
    }
    if (rc == 0) {
        *out = data;
        *out_len = len;
        data = NULL;
    }
    free(data);
    free(path);
    return rc;
}

int oci_layout_index_write(const char *dir, const struct oci_descriptor *entries, size_t n,
                           struct ff_err *err)
{
    char *json = NULL;
    size_t len = 0;
    int rc = oci_index_build(entries, n, NULL, 0, &json, &len, err);
    if (rc == 0)
        rc = file_write_atomic(dir, "index.json", json, len, err);
    free(json);
    return rc;
}

/* index.json with the entries of old (if any) not named tag, and added. */
static int index_merge_write(const char *dir, const struct oci_layout *old,
                             const struct oci_descriptor *added, struct ff_err *err)
{
    size_t n_old = old != NULL ? old->index.n_manifests : 0;
    struct oci_descriptor *all = calloc(n_old + 1, sizeof(*all));
    if (all == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < n_old; i++) {
        const struct oci_descriptor *e = &old->index.manifests[i];
        if (e->ref_name == NULL || strcmp(e->ref_name, added->ref_name) != 0)
            all[n++] = *e;
    }
    all[n++] = *added;
    int rc = oci_layout_index_write(dir, all, n, err);
    free(all);
    return rc;
}

int oci_layout_write(const char *dir, const char *tag, const char *media_type,
                     const char *manifest, size_t manifest_len, const struct ff_digest *digests,
                     const char *const *blob_paths, size_t n_blobs, bool link_ok,
                     struct ff_err *err)
{
    if (tag == NULL || tag[0] == '\0' || media_type == NULL)
        return ff_err_set(err, FF_EINVAL, "oci layout: a tag and a media type are required");
    int rc = oci_layout_init(dir, err);
    for (size_t i = 0; rc == 0 && i < n_blobs; i++)
        rc = oci_layout_blob_add_file(dir, &digests[i], blob_paths[i], link_ok, err);
    struct oci_descriptor entry;
    memset(&entry, 0, sizeof(entry));
    entry.media_type = media_type;
    entry.size = (int64_t)manifest_len;
    entry.ref_name = tag;
    if (rc == 0)
        rc = oci_layout_blob_add_bytes(dir, manifest, manifest_len, &entry.digest, err);
    if (rc != 0)
        return rc;
    struct oci_layout old;
    rc = oci_layout_open(dir, &old, err);
    if (rc == FF_ENOTFOUND)
        return index_merge_write(dir, NULL, &entry, err);
    if (rc != 0)
        return rc;
    rc = index_merge_write(dir, &old, &entry, err);
    oci_layout_close(&old);
    return rc;
}

int oci_layout_open(const char *dir, struct oci_layout *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = layout_version_check(dir, err);
    if (rc != 0)
        return rc;
    char *path = ff_asprintf("%s/index.json", dir);
    char *data = NULL;
    size_t len = 0;
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = file_read_max(path, OCI_MANIFEST_MAX, &data, &len, err);
    if (rc == 0) {
        rc = oci_manifest_parse(data, len, OCI_MT_INDEX, &out->index, err);
        if (rc == 0 && out->index.kind != OCI_KIND_INDEX) {
            oci_manifest_release(&out->index);
            rc = ff_err_set(err, FF_EINVAL, "index.json is not an index");
        }
        if (rc != 0)
            ff_err_wrap(err, "oci layout \"%s\"", dir);
    }
    free(data);
    free(path);
    if (rc == 0 && (out->dir = strdup(dir)) == NULL) {
        oci_manifest_release(&out->index);
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    return rc;
}

int oci_layout_find(const struct oci_layout *l, const char *tag,
                    const struct oci_descriptor **out, struct ff_err *err)
{
    const struct oci_manifest *ix = &l->index;
    if (tag == NULL) {
        if (ix->n_manifests != 1)
            return ff_err_set(err, FF_EINVAL, "oci layout \"%s\": %zu images, name one by tag",
                              l->dir, ix->n_manifests);
        *out = &ix->manifests[0];
        return 0;
    }
    for (size_t i = 0; i < ix->n_manifests; i++) {
        if (ix->manifests[i].ref_name != NULL && strcmp(ix->manifests[i].ref_name, tag) == 0) {
            *out = &ix->manifests[i];
            return 0;
        }
    }
    struct ff_buf tags;
    ff_buf_init(&tags, FF_ERR_MSG_MAX);
    for (size_t i = 0; i < ix->n_manifests; i++) {
        const char *name = ix->manifests[i].ref_name;
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(name != NULL ? name : "(untagged)", name != NULL ? strlen(name) : 10, q);
        if (ff_buf_printf(&tags, "%s%s", i > 0 ? ", " : "", q) != 0)
            break;
    }
    char tq[FF_STR_QUOTE_SIZE];
    ff_str_quote(tag, strlen(tag), tq);
    int rc = ff_err_set(err, FF_ENOTFOUND, "oci layout \"%s\": no tag \"%s\" (has: %s)", l->dir,
                        tq, tags.data != NULL ? tags.data : "nothing");
    ff_buf_release(&tags);
    return rc;
}

void oci_layout_close(struct oci_layout *l)
{
    if (l == NULL)
        return;
    oci_manifest_release(&l->index);
    free(l->dir);
    memset(l, 0, sizeof(*l));
}
