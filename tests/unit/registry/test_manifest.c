#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include "ff_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HEX_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define DC "sha256:" HEX_C
#define DD "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

#define CT_OCI MEDIA_TYPE_OCI_MANIFEST
#define CT_INDEX MEDIA_TYPE_OCI_INDEX
#define CT_DOCKER MEDIA_TYPE_DOCKER_MANIFEST
#define CT_LIST MEDIA_TYPE_DOCKER_LIST

static const char oci_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CT_OCI "\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" DA
    "\",\"size\":1469},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\""
    DB "\",\"size\":3370706},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
    "\"digest\":\"" DC "\",\"size\":0,\"annotations\":{\"org.opencontainers.image.title\":"
    "\"x\"}}],\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}}";

static const char oci_index[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CT_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" CT_OCI "\",\"digest\":\"" DA "\",\"size\":7143,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" CT_OCI "\",\"digest\":\"" DB "\",\"size\":7682,"
    "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\","
    "\"os.features\":[\"x\"]}},"
    "{\"mediaType\":\"" CT_OCI "\",\"digest\":\"" DC "\",\"size\":566,"
    "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}}]}";

static const char docker_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CT_DOCKER "\","
    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":"
    "7023,\"digest\":\"" DA "\"},\"layers\":[{\"mediaType\":"
    "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":32654,\"digest\":\"" DB
    "\"}]}";

static const char docker_list[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CT_LIST "\",\"manifests\":["
    "{\"mediaType\":\"" CT_DOCKER "\",\"size\":7143,\"digest\":\"" DA "\","
    "\"platform\":{\"architecture\":\"ppc64le\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" CT_DOCKER "\",\"size\":7682,\"digest\":\"" DB "\","
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}}]}";

static const char artifact[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" CT_OCI "\","
    "\"artifactType\":\"application/vnd.example.sbom.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" DA
    "\",\"size\":2,\"data\":\"e30=\"},"
    "\"layers\":[{\"mediaType\":\"application/vnd.example.sbom.v1+json\",\"digest\":\"" DB
    "\",\"size\":1234}],"
    "\"subject\":{\"mediaType\":\"" CT_OCI "\",\"digest\":\"" DD "\",\"size\":1024},"
    "\"annotations\":{\"org.example.kind\":\"sbom\"}}";

static struct manifest *parse_ok(const char *text, const char *ct)
{
    struct manifest *m = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = manifest_parse(text, strlen(text), ct, &m, &err);
    if (rc != 0)
        fail_msg("rc=%d msg=\"%s\" for %s", rc, err.msg, text);
    return m;
}

static void parse_fails(const char *text, const char *ct, int code, const char *fragment)
{
    struct manifest *m = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = manifest_parse(text, strlen(text), ct, &m, &err);
    if (rc != code || strstr(err.msg, fragment) == NULL)
        fail_msg("rc=%d msg=\"%s\", expected %d and \"%s\" for %.200s", rc, err.msg, code,
                 fragment, text);
    assert_null(m);
}

static void digest_is(const struct ff_digest *d, const char *want)
{
    char s[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, s);
    assert_string_equal(s, want);
}

/* Replaces the first occurrence of from in text by to; caller frees. */
static char *edit(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    if (at == NULL)
        fail_msg("edit: \"%s\" not in test text", from);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    int w = snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    assert_true(w >= 0 && (size_t)w < n);
    return out;
}

static void edit_fails(const char *base, const char *from, const char *to, const char *ct,
                       const char *fragment)
{
    char *text = edit(base, from, to);
    parse_fails(text, ct, FF_EINVAL, fragment);
    free(text);
}

static void test_oci_manifest(void **state)
{
    (void)state;
    struct manifest *m = parse_ok(oci_manifest, CT_OCI);
    assert_int_equal(m->kind, MANIFEST_OCI_MANIFEST);
    assert_string_equal(m->media_type, CT_OCI);
    assert_true(m->has_config);
    assert_string_equal(m->config.media_type, "application/vnd.oci.image.config.v1+json");
    digest_is(&m->config.digest, DA);
    assert_int_equal(m->config.size, 1469);
    assert_int_equal(m->n_layers, 2);
    digest_is(&m->layers[0].digest, DB);
    assert_int_equal(m->layers[0].size, 3370706);
    assert_null(m->layers[0].annotations);
    assert_int_equal(m->layers[1].size, 0);
    assert_string_equal(json_string_value(json_object_get(m->layers[1].annotations,
                        "org.opencontainers.image.title")), "x");
    assert_non_null(m->annotations);
    assert_int_equal(m->n_manifests, 0);
    assert_false(m->has_subject);
    assert_null(m->artifact_type);
    /* The referrers rule falls back to the config media type. */
    assert_string_equal(manifest_referrer_artifact_type(m),
                        "application/vnd.oci.image.config.v1+json");
    struct ff_digest want;
    assert_int_equal(ff_digest_buffer(oci_manifest, strlen(oci_manifest), &want, NULL), 0);
    assert_true(ff_digest_equal(&m->digest, &want));
    manifest_free(m);
    manifest_free(NULL);

    /* Content-Type with parameters and other case; or none at all. */
    m = parse_ok(oci_manifest, "Application/VND.oci.image.manifest.v1+json ; charset=utf-8");
    manifest_free(m);
    m = parse_ok(oci_manifest, NULL);
    assert_int_equal(m->kind, MANIFEST_OCI_MANIFEST);
    manifest_free(m);
}

static void test_oci_without_media_type(void **state)
{
    (void)state;
    char *text = edit(oci_manifest, "\"mediaType\":\"" CT_OCI "\",", "");
    struct manifest *m = parse_ok(text, CT_OCI);
    assert_int_equal(m->kind, MANIFEST_OCI_MANIFEST);
    manifest_free(m);
    parse_fails(text, NULL, FF_EINVAL, "no \"mediaType\" field and no Content-Type");
    /* The Content-Type says index, but the body is a manifest. */
    parse_fails(text, CT_INDEX, FF_EINVAL, "an index must not have a \"config\"");
    free(text);
}

static void test_oci_index(void **state)
{
    (void)state;
    struct manifest *m = parse_ok(oci_index, CT_INDEX);
    assert_int_equal(m->kind, MANIFEST_OCI_INDEX);
    assert_false(m->has_config);
    assert_int_equal(m->n_layers, 0);
    assert_int_equal(m->n_manifests, 3);
    assert_true(m->manifests[0].has_platform);
    assert_string_equal(m->manifests[0].platform.os, "linux");
    assert_string_equal(m->manifests[0].platform.architecture, "amd64");
    assert_null(m->manifests[0].platform.variant);
    assert_string_equal(m->manifests[1].platform.architecture, "arm");
    assert_string_equal(m->manifests[1].platform.variant, "v7");
    assert_false(m->manifests[2].has_platform);
    assert_non_null(m->manifests[2].annotations);
    digest_is(&m->manifests[2].digest, DC);
    assert_null(manifest_referrer_artifact_type(m));
    manifest_free(m);
}

static void test_docker_types(void **state)
{
    (void)state;
    struct manifest *m = parse_ok(docker_manifest, CT_DOCKER);
    assert_int_equal(m->kind, MANIFEST_DOCKER_MANIFEST);
    assert_string_equal(m->media_type, CT_DOCKER);
    assert_int_equal(m->n_layers, 1);
    assert_int_equal(m->layers[0].size, 32654);
    manifest_free(m);
    m = parse_ok(docker_list, CT_LIST);
    assert_int_equal(m->kind, MANIFEST_DOCKER_LIST);
    assert_int_equal(m->n_manifests, 2);
    assert_string_equal(m->manifests[1].platform.variant, "v8");
    manifest_free(m);
    m = parse_ok(docker_list, NULL);
    manifest_free(m);
    /* Docker types must name themselves in the body. */
    edit_fails(docker_manifest, "\"mediaType\":\"" CT_DOCKER "\",", "", CT_DOCKER,
               "\"mediaType\" is required for docker");
    edit_fails(docker_list, "\"mediaType\":\"" CT_LIST "\",", "", CT_LIST,
               "\"mediaType\" is required for docker");
}

static void test_media_type_checks(void **state)
{
    (void)state;
    assert_true(manifest_media_type_supported(CT_OCI));
    assert_true(manifest_media_type_supported(CT_INDEX));
    assert_true(manifest_media_type_supported(CT_DOCKER));
    assert_true(manifest_media_type_supported(CT_LIST));
    assert_true(manifest_media_type_supported(" " CT_LIST ";q=1"));
    assert_false(manifest_media_type_supported(
        "application/vnd.docker.distribution.manifest.v1+prettyjws"));
    assert_false(
        manifest_media_type_supported("application/vnd.docker.distribution.manifest.v1+json"));
    assert_false(manifest_media_type_supported("application/json"));
    assert_false(manifest_media_type_supported(""));
    assert_false(manifest_media_type_supported(NULL));
    assert_false(manifest_media_type_supported(CT_OCI "x"));

    /* Body and Content-Type disagree. */
    parse_fails(oci_manifest, CT_DOCKER, FF_EINVAL, "but Content-Type is");
    parse_fails(oci_index, CT_OCI, FF_EINVAL, "but Content-Type is");
    parse_fails(oci_manifest, "application/json", FF_EINVAL,
                "content type \"application/json\" is not a supported");
    edit_fails(oci_manifest, "\"mediaType\":\"" CT_OCI "\"",
               "\"mediaType\":\"application/vnd.oci.artifact.manifest.v1+json\"", NULL,
               "is not a supported manifest type");
    edit_fails(oci_manifest, "\"mediaType\":\"" CT_OCI "\"", "\"mediaType\":7", CT_OCI,
               "\"mediaType\": expected a string");
}

static void test_schema_version(void **state)
{
    (void)state;
    parse_fails("{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"latest\",\"fsLayers\":[],"
                "\"signatures\":[]}", NULL, FF_EINVAL, "schemaVersion 1 (docker image "
                "manifest v2 schema 1) is not supported");
    edit_fails(oci_manifest, "\"schemaVersion\":2", "\"schemaVersion\":3", CT_OCI,
               "schemaVersion 3, expected 2");
    edit_fails(oci_manifest, "\"schemaVersion\":2", "\"schemaVersion\":\"2\"", CT_OCI,
               "expected an integer, got string");
    edit_fails(oci_manifest, "\"schemaVersion\":2,", "", CT_OCI,
               "\"schemaVersion\": required");
}

static void test_descriptor_errors(void **state)
{
    (void)state;
    edit_fails(oci_manifest, "\"config\"", "\"konfig\"", CT_OCI,
               "manifest: config: field \"config\": required");
    edit_fails(oci_manifest, "\"layers\"", "\"lairs\"", CT_OCI, "\"layers\": required");
    edit_fails(oci_manifest, "\"layers\":[", "\"layers\":7,\"x\":[", CT_OCI,
               "\"layers\": expected an array");
    /* A bad digest in the second layer (index 1). */
    edit_fails(oci_manifest, DC, "sha256:1234", CT_OCI, "layer 1: field \"digest\"");
    edit_fails(oci_manifest, DC, "SHA256:" HEX_C, CT_OCI,
               "layer 1: field \"digest\"");
    edit_fails(oci_manifest, DC, "sha512:" HEX_C, CT_OCI,
               "unsupported algorithm");
    edit_fails(oci_manifest, "\"size\":0", "\"size\":-1", CT_OCI,
               "layer 1: field \"size\": expected a non-negative integer, got a negative one");
    edit_fails(oci_manifest, "\"size\":0", "\"size\":1.5", CT_OCI,
               "expected a non-negative integer, got real");
    edit_fails(oci_manifest, "\"size\":0", "\"size\":\"0\"", CT_OCI, "got string");
    edit_fails(oci_manifest, ",\"size\":0", "", CT_OCI, "layer 1: field \"size\": required");
    edit_fails(oci_manifest, "\"size\":1469", "\"size\":-5", CT_OCI, "config: field \"size\"");
    edit_fails(oci_manifest, "application/vnd.oci.image.layer.v1.tar+gzip", "tar+gzip", CT_OCI,
               "layer 0: field \"mediaType\": \"tar+gzip\" is not a media type");
    edit_fails(oci_manifest, "application/vnd.oci.image.layer.v1.tar+gzip",
               "application/x; charset=1", CT_OCI, "is not a media type");
    edit_fails(oci_manifest, "application/vnd.oci.image.layer.v1.tar+gzip", "/x", CT_OCI,
               "is not a media type");
    edit_fails(oci_manifest, "\"x\"}}]", "7}}]", CT_OCI,
               "field \"annotations\": value of \"org.opencontainers.image.title\" is integer");
    edit_fails(oci_manifest, "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\"",
               "7,{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\"", CT_OCI,
               "layer 0: expected an object, got integer");
    edit_fails(oci_index, "\"os\":\"linux\"", "\"oz\":\"linux\"", CT_INDEX,
               "manifest 0: platform: field \"os\": required");
    edit_fails(oci_index, "\"platform\":{", "\"platform\":[],\"x\":{", CT_INDEX,
               "field \"platform\": expected an object");
    /* Content confusion: an image manifest with manifests, an index with layers. */
    edit_fails(oci_manifest, "\"layers\":", "\"manifests\":[],\"layers\":", CT_OCI,
               "must not have a \"manifests\" field");
    edit_fails(oci_index, "\"manifests\":", "\"layers\":[],\"manifests\":", CT_INDEX,
               "must not have a \"config\" or \"layers\" field");
    edit_fails(artifact, "\"size\":1024", "\"size\":-1", CT_OCI,
               "manifest: subject: field \"size\"");
    edit_fails(artifact, "\"subject\":{", "\"subject\":3,\"x\":{", CT_OCI,
               "field \"subject\": expected an object");
    edit_fails(artifact, "\"artifactType\":\"application/vnd.example.sbom.v1+json\"",
               "\"artifactType\":\"sbom\"", CT_OCI, "field \"artifactType\"");
}

static void test_json_errors(void **state)
{
    (void)state;
    parse_fails("[]", CT_OCI, FF_EINVAL, "expected an object");
    parse_fails("{\"schemaVersion\":2,", CT_OCI, FF_EINVAL, "manifest: json");
    parse_fails("", CT_OCI, FF_EINVAL, "manifest: json");
    /* Duplicate keys could let two parsers see two manifests: refused. */
    edit_fails(oci_manifest, "\"config\":", "\"config\":{},\"config\":", CT_OCI, "duplicate");
    edit_fails(oci_manifest, "\"size\":1469", "\"size\":1469,\"size\":1", CT_OCI, "duplicate");
}

static void test_unknown_fields_tolerated(void **state)
{
    (void)state;
    char *a = edit(oci_manifest, "\"config\":", "\"x-future\":{\"deep\":[1,2,null]},\"config\":");
    char *b = edit(a, "\"size\":1469", "\"size\":1469,\"urls\":[\"https://x\"],\"zzz\":true");
    struct manifest *m = parse_ok(b, CT_OCI);
    assert_int_equal(m->n_layers, 2);
    manifest_free(m);
    free(a);
    free(b);
    /* Docker manifests carry no subject: a stray one is an unknown field. */
    a = edit(docker_manifest, "\"layers\":", "\"subject\":5,\"layers\":");
    m = parse_ok(a, CT_DOCKER);
    assert_false(m->has_subject);
    manifest_free(m);
    free(a);
}

struct refs {
    int n_blob;
    int n_manifest;
    int n_subject;
    int stop_at;
    int seen;
    char last[FF_DIGEST_STR_SIZE];
};

static int count_ref(void *ctx, enum manifest_ref_kind kind, const struct descriptor *d)
{
    struct refs *r = ctx;
    r->seen++;
    if (kind == MANIFEST_REF_BLOB)
        r->n_blob++;
    else if (kind == MANIFEST_REF_MANIFEST)
        r->n_manifest++;
    else
        r->n_subject++;
    ff_digest_format(&d->digest, r->last);
    return r->seen == r->stop_at ? 42 : 0;
}

static void test_subject_and_refs(void **state)
{
    (void)state;
    struct manifest *m = parse_ok(artifact, CT_OCI);
    assert_true(m->has_subject);
    digest_is(&m->subject.digest, DD);
    assert_int_equal(m->subject.size, 1024);
    assert_string_equal(m->artifact_type, "application/vnd.example.sbom.v1+json");
    assert_string_equal(manifest_referrer_artifact_type(m),
                        "application/vnd.example.sbom.v1+json");
    assert_string_equal(m->config.media_type, "application/vnd.oci.empty.v1+json");
    struct refs r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(manifest_foreach_ref(m, count_ref, &r), 0);
    assert_int_equal(r.n_blob, 2);
    assert_int_equal(r.n_manifest, 0);
    assert_int_equal(r.n_subject, 1);
    assert_string_equal(r.last, DD);
    memset(&r, 0, sizeof(r));
    r.stop_at = 2;
    assert_int_equal(manifest_foreach_ref(m, count_ref, &r), 42);
    assert_int_equal(r.seen, 2);
    manifest_free(m);

    m = parse_ok(oci_index, CT_INDEX);
    memset(&r, 0, sizeof(r));
    assert_int_equal(manifest_foreach_ref(m, count_ref, &r), 0);
    assert_int_equal(r.n_blob, 0);
    assert_int_equal(r.n_manifest, 3);
    assert_int_equal(r.n_subject, 0);
    manifest_free(m);

    /* An index may have a subject and an artifactType too. */
    char *text = edit(oci_index, "\"manifests\":", "\"subject\":{\"mediaType\":\"" CT_OCI
                      "\",\"digest\":\"" DD "\",\"size\":3},\"manifests\":");
    m = parse_ok(text, CT_INDEX);
    assert_true(m->has_subject);
    assert_null(manifest_referrer_artifact_type(m));
    manifest_free(m);
    free(text);
}

/* An image manifest with n layers. */
static char *many_layers(size_t n)
{
    struct ff_buf b;
    ff_buf_init(&b, 1u << 30);
    assert_int_equal(ff_buf_append_str(&b, "{\"schemaVersion\":2,\"mediaType\":\"" CT_OCI "\","
                     "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                     "\"digest\":\"" DA "\",\"size\":1},\"layers\":["), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ff_buf_printf(&b, "%s{\"mediaType\":\"application/vnd.oci.image."
                                       "layer.v1.tar+gzip\",\"digest\":\"" DB "\",\"size\":%zu}",
                                       i ? "," : "", i), 0);
    assert_int_equal(ff_buf_append_str(&b, "]}"), 0);
    return ff_buf_steal(&b);
}

static void test_limits(void **state)
{
    (void)state;
    char *text = many_layers(300);
    struct manifest *m = parse_ok(text, CT_OCI);
    assert_int_equal(m->n_layers, 300);
    assert_int_equal(m->layers[299].size, 299);
    manifest_free(m);
    free(text);
    text = many_layers(MANIFEST_LAYERS_MAX);
    m = parse_ok(text, CT_OCI);
    manifest_free(m);
    free(text);
    text = many_layers(MANIFEST_LAYERS_MAX + 1);
    parse_fails(text, CT_OCI, FF_EINVAL, "\"layers\": 1025 items, limit is 1024");
    free(text);

    /* Exactly 4 MiB (padded with blanks) passes; one byte more does not. */
    size_t base = sizeof(oci_manifest) - 1;
    char *big = malloc(MANIFEST_SIZE_MAX + 2);
    assert_non_null(big);
    memcpy(big, oci_manifest, base);
    memset(big + base, ' ', MANIFEST_SIZE_MAX + 1 - base);
    struct ff_err err;
    assert_int_equal(manifest_parse(big, MANIFEST_SIZE_MAX, CT_OCI, &m, &err), 0);
    manifest_free(m);
    m = NULL;
    assert_int_equal(manifest_parse(big, MANIFEST_SIZE_MAX + 1, CT_OCI, &m, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "4194305 bytes, limit is 4194304"));
    assert_null(m);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oci_manifest),
        cmocka_unit_test(test_oci_without_media_type),
        cmocka_unit_test(test_oci_index),
        cmocka_unit_test(test_docker_types),
        cmocka_unit_test(test_media_type_checks),
        cmocka_unit_test(test_schema_version),
        cmocka_unit_test(test_descriptor_errors),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_unknown_fields_tolerated),
        cmocka_unit_test(test_subject_and_refs),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests_name("registry/manifest", tests, NULL, NULL);
}
