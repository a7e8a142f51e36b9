#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include "ff_buf.h"
#include "ff_str.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------- */

static struct ff_digest dig(unsigned char b)
{
    struct ff_digest d;
    memset(&d, b, sizeof(d));
    return d;
}

/* "sha256:bbbb…" for a digest of repeated byte b; rotating static buffers. */
static const char *ds(unsigned char b)
{
    static char bufs[8][FF_DIGEST_STR_SIZE];
    static unsigned next;
    char *out = bufs[next++ % 8];
    struct ff_digest d = dig(b);
    ff_digest_format(&d, out);
    return out;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    struct ff_buf b;
    ff_buf_init(&b, 1u << 20);
    assert_int_equal(ff_buf_vprintf(&b, f, ap), 0);
    va_end(ap);
    return ff_buf_steal(&b);
}

static void expect_msg(int rc, int code, const struct ff_err *err, const char *needle)
{
    if (rc != code || strstr(err->msg, needle) == NULL)
        fail_msg("got %d \"%s\", expected %d with \"%s\"", rc, err->msg, code, needle);
}

/* ---- platforms -------------------------------------------------------------------- */

static void test_platform_from_arch(void **state)
{
    (void)state;
    struct oci_platform p;
    struct ff_err err;
    assert_int_equal(oci_platform_from_arch("amd64", &p, &err), 0);
    assert_string_equal(p.os, "linux");
    assert_string_equal(p.architecture, "amd64");
    assert_null(p.variant);
    assert_int_equal(oci_platform_from_arch("arm64", &p, &err), 0);
    assert_string_equal(p.architecture, "arm64");
    assert_string_equal(p.variant, "v8");
    assert_int_equal(oci_platform_from_arch("armv7", &p, &err), 0);
    assert_string_equal(p.architecture, "arm");
    assert_string_equal(p.variant, "v7");
    expect_msg(oci_platform_from_arch("x86", &p, &err), FF_EINVAL, &err,
               "\"x86\": expected amd64, arm64 or armv7");
    expect_msg(oci_platform_from_arch(NULL, &p, &err), FF_EINVAL, &err, "expected amd64");
}

static void test_platform_match(void **state)
{
    (void)state;
    static const struct {
        const char *wa, *wv, *os, *ha, *hv;
        bool match;
    } t[] = {
        {"arm64", "v8", "linux", "arm64", NULL, true},
        {"arm64", "v8", "linux", "arm64", "v8", true},
        {"arm64", NULL, "linux", "arm64", "v8", true},
        {"arm64", "v8", "linux", "aarch64", NULL, true},
        {"arm64", "v8", "linux", "arm64", "v9", false},
        {"arm64", "v8", "linux", "arm", "v8", false},
        {"arm", "v7", "linux", "arm", "v7", true},
        {"arm", "v7", "linux", "arm", NULL, true},
        {"arm", "v7", "linux", "arm", "7", true},
        {"arm", "v7", "linux", "armhf", NULL, true},
        {"arm", "v7", "linux", "arm", "v6", false},
        {"arm", "v7", "linux", "arm64", "v8", false},
        {"amd64", NULL, "linux", "amd64", NULL, true},
        {"amd64", NULL, "linux", "amd64", "v1", true},
        {"amd64", NULL, "linux", "x86_64", NULL, true},
        {"amd64", NULL, "linux", "amd64", "v3", false},
        {"amd64", NULL, "windows", "amd64", NULL, false},
        {"amd64", NULL, "unknown", "unknown", NULL, false},
        {"amd64", NULL, NULL, "amd64", NULL, false},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct oci_platform want = {.os = NULL, .architecture = t[i].wa, .variant = t[i].wv};
        struct oci_platform have = {.os = t[i].os, .architecture = t[i].ha, .variant = t[i].hv};
        if (oci_platform_match(&want, &have) != t[i].match)
            fail_msg("case %zu: %s/%s vs %s/%s/%s", i, t[i].wa, t[i].wv ? t[i].wv : "",
                     t[i].os ? t[i].os : "-", t[i].ha, t[i].hv ? t[i].hv : "");
    }
    char s[OCI_PLATFORM_STR_SIZE];
    struct oci_platform p = {.os = "linux", .architecture = "arm", .variant = "v7"};
    oci_platform_format(&p, s, sizeof(s));
    assert_string_equal(s, "linux/arm/v7");
    struct oci_platform q = {.os = "li\"nux", .architecture = "a b", .variant = NULL};
    oci_platform_format(&q, s, sizeof(s));
    assert_string_equal(s, "li?nux/a?b");
}

/* ---- manifests -------------------------------------------------------------------- */

static char *oci_manifest_doc(void)
{
    return fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
               "\"digest\":\"%s\",\"size\":7},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
               "\"%s\",\"size\":100},{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":0,"
               "\"annotations\":{\"x\":\"y\"}}],\"annotations\":{\"k\":\"v\"}}",
               OCI_MT_MANIFEST, OCI_MT_CONFIG, ds(1), OCI_MT_LAYER_GZIP, ds(2),
               OCI_MT_LAYER_ZSTD, ds(3));
}

static void test_manifest_parse(void **state)
{
    (void)state;
    struct oci_manifest m;
    struct ff_err err;
    char *doc = oci_manifest_doc();
    assert_int_equal(oci_manifest_parse(doc, strlen(doc), OCI_MT_MANIFEST, &m, &err), 0);
    assert_int_equal(m.kind, OCI_KIND_MANIFEST);
    assert_string_equal(m.media_type, OCI_MT_MANIFEST);
    assert_string_equal(m.config.media_type, OCI_MT_CONFIG);
    struct ff_digest d1 = dig(1), d3 = dig(3);
    assert_true(ff_digest_equal(&m.config.digest, &d1));
    assert_int_equal(m.config.size, 7);
    assert_int_equal(m.n_layers, 2);
    assert_int_equal(m.layers[0].size, 100);
    assert_string_equal(m.layers[1].media_type, OCI_MT_LAYER_ZSTD);
    assert_true(ff_digest_equal(&m.layers[1].digest, &d3));
    oci_manifest_release(&m);
    oci_manifest_release(&m); /* twice is safe */
    /* A Content-Type with parameters and another case still agrees. */
    assert_int_equal(oci_manifest_parse(doc, strlen(doc),
                                        "Application/VND.oci.image.manifest.v1+json; q=1", &m,
                                        &err), 0);
    oci_manifest_release(&m);
    free(doc);

    /* Docker schema 2. */
    doc = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
              "\"digest\":\"%s\",\"size\":7},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
              "\"size\":5}]}",
              DOCKER_MT_MANIFEST, DOCKER_MT_CONFIG, ds(1), DOCKER_MT_LAYER_GZIP, ds(2));
    assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
    assert_string_equal(m.media_type, DOCKER_MT_MANIFEST);
    assert_int_equal(m.n_layers, 1);
    oci_manifest_release(&m);
    free(doc);

    /* OCI without mediaType: by Content-Type, else by shape. */
    doc = fmt("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
              "\"size\":7},\"layers\":[]}", OCI_MT_CONFIG, ds(1));
    assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
    assert_int_equal(m.kind, OCI_KIND_MANIFEST);
    assert_int_equal(m.n_layers, 0);
    oci_manifest_release(&m);
    expect_msg(oci_manifest_parse(doc, strlen(doc), OCI_MT_INDEX, &m, &err), FF_EINVAL, &err,
               "an index with \"config\" or \"layers\"");
    expect_msg(oci_manifest_parse(doc, strlen(doc), DOCKER_MT_MANIFEST, &m, &err), FF_EINVAL,
               &err, "without mediaType");
    free(doc);
}

static void manifest_refused(const char *doc, const char *ct, int code, const char *needle)
{
    struct oci_manifest m;
    memset(&m, 0x5a, sizeof(m));
    struct ff_err err;
    int rc = oci_manifest_parse(doc, strlen(doc), ct, &m, &err);
    if (rc != code || strstr(err.msg, needle) == NULL)
        fail_msg("%.200s: got %d \"%s\", expected %d with \"%s\"", doc, rc, err.msg, code,
                 needle);
    assert_null(m.root);
    assert_null(m.layers);
    assert_null(m.manifests);
}

static void test_manifest_refused(void **state)
{
    (void)state;
    char *good_cfg = fmt("{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":7}", OCI_MT_CONFIG,
                         ds(1));
    struct {
        char *doc;
        const char *ct;
        int code;
        const char *needle;
    } t[] = {
        {fmt("{\"schemaVersion\":1,\"mediaType\":\"%s\"}", OCI_MT_MANIFEST), NULL, FF_EINVAL,
         "schemaVersion"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[]}",
             OCI_MT_MANIFEST, good_cfg), OCI_MT_INDEX, FF_EINVAL, "but Content-Type"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}"), NULL, FF_EINVAL,
         "not an image manifest"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
             "\"digest\":\"sha256:%064d\",\"size\":7},\"layers\":[]}", OCI_MT_MANIFEST,
             OCI_MT_CONFIG, 0), NULL, 0, ""},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
             "\"digest\":\"SHA256:%064d\",\"size\":7},\"layers\":[]}", OCI_MT_MANIFEST,
             OCI_MT_CONFIG, 0), NULL, FF_EINVAL, "config: field \"digest\""},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[{"
             "\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":-1}]}", OCI_MT_MANIFEST, good_cfg,
             OCI_MT_LAYER_GZIP, ds(2)), NULL, FF_EINVAL, "layers[0]: field \"size\""},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[{"
             "\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1.5}]}", OCI_MT_MANIFEST,
             good_cfg, OCI_MT_LAYER_GZIP, ds(2)), NULL, FF_EINVAL, "expected an integer"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[{"
             "\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\","
             "\"digest\":\"%s\",\"size\":1}]}", OCI_MT_MANIFEST, good_cfg, ds(2)), NULL,
         FF_EINVAL, "not a layer we can unpack"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
             "\"application/vnd.cncf.helm.config.v1+json\",\"digest\":\"%s\",\"size\":1},"
             "\"layers\":[]}", OCI_MT_MANIFEST, ds(1)), NULL, FF_EINVAL,
         "not a container image config"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[],"
             "\"manifests\":[]}", OCI_MT_MANIFEST, good_cfg), NULL, FF_EINVAL,
         "with a \"manifests\" field"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[],\"layers\":[]}",
             OCI_MT_INDEX), NULL, FF_EINVAL, "an index with"},
        {fmt("{\"schemaVersion\":2,\"schemaVersion\":2}"), NULL, FF_EINVAL, "duplicate"},
        {fmt("{\"schemaVersion\":2}"), NULL, FF_EINVAL, "neither"},
        {fmt("[1]"), NULL, FF_EINVAL, "object"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[]} x",
             OCI_MT_MANIFEST, good_cfg), NULL, FF_EINVAL, "json"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":5,\"platform\":{\"os\":\"linux\"}}]}", OCI_MT_INDEX,
             OCI_MT_MANIFEST, ds(4)), NULL, FF_EINVAL, "manifests[0]: platform: field "
         "\"architecture\""},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":"
             "\"a b\"}}]}", OCI_MT_INDEX, OCI_MT_MANIFEST, ds(4)), NULL, FF_EINVAL,
         "without spaces"},
        {fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"bad\","
             "\"digest\":\"%s\",\"size\":5}]}", OCI_MT_INDEX, ds(4)), NULL, FF_EINVAL,
         "is not a media type"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (t[i].code == 0) {
            /* The all-zero digest is well-formed: control case. */
            struct oci_manifest m;
            struct ff_err err;
            assert_int_equal(oci_manifest_parse(t[i].doc, strlen(t[i].doc), t[i].ct, &m, &err),
                             0);
            oci_manifest_release(&m);
        } else {
            manifest_refused(t[i].doc, t[i].ct, t[i].code, t[i].needle);
        }
        free(t[i].doc);
    }
    free(good_cfg);
}

static void test_manifest_limits(void **state)
{
    (void)state;
    struct ff_buf b;
    ff_buf_init(&b, OCI_MANIFEST_MAX + 16);
    assert_int_equal(ff_buf_printf(&b, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":"
                                   "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":7},"
                                   "\"layers\":[", OCI_MT_MANIFEST, OCI_MT_CONFIG, ds(1)), 0);
    for (int i = 0; i <= OCI_LAYERS_MAX; i++)
        assert_int_equal(ff_buf_printf(&b, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\","
                                       "\"size\":1}", i > 0 ? "," : "", OCI_MT_LAYER, ds(2)), 0);
    assert_int_equal(ff_buf_append_str(&b, "]}"), 0);
    manifest_refused(b.data, NULL, FF_EINVAL, "257 items, limit is 256");
    ff_buf_release(&b);

    char *big = malloc(OCI_MANIFEST_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', OCI_MANIFEST_MAX + 1);
    big[OCI_MANIFEST_MAX + 1] = '\0';
    manifest_refused(big, NULL, FF_ETOOBIG, "limit is 4194304");
    free(big);
}

static char *index_doc(void)
{
    return fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":10,\"platform\":"
               "{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":11,\"platform\":"
               "{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":12,\"platform\":"
               "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":13,\"platform\":"
               "{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}},"
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":14,\"platform\":"
               "{\"architecture\":\"unknown\",\"os\":\"unknown\"}},"
               "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":15}]}",
               OCI_MT_INDEX, OCI_MT_MANIFEST, ds(10), OCI_MT_MANIFEST, ds(11), OCI_MT_MANIFEST,
               ds(12), DOCKER_MT_MANIFEST, ds(13), OCI_MT_MANIFEST, ds(14), OCI_MT_MANIFEST,
               ds(15));
}

static void test_index_select(void **state)
{
    (void)state;
    char *doc = index_doc();
    struct oci_manifest m;
    struct ff_err err;
    assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
    assert_int_equal(m.kind, OCI_KIND_INDEX);
    assert_int_equal(m.n_manifests, 6);
    assert_null(m.manifests[5].platform.os);
    const struct oci_descriptor *d = NULL;
    struct oci_platform p;
    assert_int_equal(oci_platform_from_arch("amd64", &p, &err), 0);
    assert_int_equal(oci_index_select(&m, &p, &d, &err), 0);
    assert_int_equal(d->size, 10);
    /* arm64/v8 is asked for: the exact entry beats the one without a
     * variant listed before it. */
    assert_int_equal(oci_platform_from_arch("arm64", &p, &err), 0);
    assert_int_equal(oci_index_select(&m, &p, &d, &err), 0);
    assert_int_equal(d->size, 12);
    struct oci_platform bare = {.os = "linux", .architecture = "arm64", .variant = NULL};
    assert_int_equal(oci_index_select(&m, &bare, &d, &err), 0);
    assert_int_equal(d->size, 11);
    /* armv7 is not there: the message lists what is, without the
     * attestation or the entry without platform. */
    assert_int_equal(oci_platform_from_arch("armv7", &p, &err), 0);
    expect_msg(oci_index_select(&m, &p, &d, &err), FF_ENOTFOUND, &err,
               "no image for platform linux/arm/v7; the index has: linux/amd64, linux/arm64, "
               "linux/arm64/v8, linux/arm/v6");
    assert_null(strstr(err.msg, "unknown"));
    oci_manifest_release(&m);
    free(doc);

    /* Selection on a manifest is a programming slip reported as such. */
    doc = oci_manifest_doc();
    assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
    expect_msg(oci_index_select(&m, &p, &d, &err), FF_EINVAL, &err, "not an index");
    oci_manifest_release(&m);
    free(doc);
}

static void test_manifest_build(void **state)
{
    (void)state;
    struct oci_descriptor cfg = {.media_type = OCI_MT_CONFIG, .digest = dig(1), .size = 10};
    struct oci_descriptor layers[2] = {
        {.media_type = OCI_MT_LAYER_GZIP, .digest = dig(2), .size = 20},
        {.media_type = OCI_MT_LAYER_ZSTD, .digest = dig(3), .size = 30},
    };
    const struct oci_annotation ann[] = {{"org.z", "last"}, {"org.a", "first"}};
    char *out = NULL;
    size_t len = 0;
    struct ff_err err;
    assert_int_equal(oci_manifest_build(&cfg, layers, 2, ann, 2, &out, &len, &err), 0);
    char *want = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                     "\"%s\",\"digest\":\"%s\",\"size\":10},\"layers\":[{\"mediaType\":\"%s\","
                     "\"digest\":\"%s\",\"size\":20},{\"mediaType\":\"%s\",\"digest\":\"%s\","
                     "\"size\":30}],\"annotations\":{\"org.a\":\"first\",\"org.z\":\"last\"}}",
                     OCI_MT_MANIFEST, OCI_MT_CONFIG, ds(1), OCI_MT_LAYER_GZIP, ds(2),
                     OCI_MT_LAYER_ZSTD, ds(3));
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    /* What we build parses back to the same descriptors. */
    struct oci_manifest m;
    assert_int_equal(oci_manifest_parse(out, len, OCI_MT_MANIFEST, &m, &err), 0);
    assert_int_equal(m.n_layers, 2);
    assert_int_equal(m.layers[1].size, 30);
    oci_manifest_release(&m);
    free(out);
    free(want);

    const struct oci_annotation dup[] = {{"a", "1"}, {"a", "2"}};
    expect_msg(oci_manifest_build(&cfg, layers, 2, dup, 2, &out, &len, &err), FF_EINVAL, &err,
               "given twice");
    struct oci_descriptor bad = {.media_type = "nonsense", .digest = dig(1), .size = 1};
    expect_msg(oci_manifest_build(&bad, layers, 2, NULL, 0, &out, &len, &err), FF_EINVAL, &err,
               "valid media type");
    layers[1].size = -1;
    expect_msg(oci_manifest_build(&cfg, layers, 2, NULL, 0, &out, &len, &err), FF_EINVAL, &err,
               "negative size");
    expect_msg(oci_manifest_build(&cfg, layers, OCI_LAYERS_MAX + 1, NULL, 0, &out, &len, &err),
               FF_EINVAL, &err, "limit is 256");
}

static void test_index_build(void **state)
{
    (void)state;
    struct oci_descriptor e[2] = {
        {.media_type = OCI_MT_MANIFEST, .digest = dig(5), .size = 500,
         .platform = {.os = "linux", .architecture = "amd64", .variant = NULL}},
        {.media_type = OCI_MT_MANIFEST, .digest = dig(6), .size = 600,
         .platform = {.os = "linux", .architecture = "arm", .variant = "v7"},
         .ref_name = "v1"},
    };
    char *out = NULL;
    size_t len = 0;
    struct ff_err err;
    assert_int_equal(oci_index_build(e, 2, NULL, 0, &out, &len, &err), 0);
    char *want = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":"
                     "\"%s\",\"digest\":\"%s\",\"size\":500,\"platform\":{\"architecture\":"
                     "\"amd64\",\"os\":\"linux\"}},{\"mediaType\":\"%s\",\"digest\":\"%s\","
                     "\"size\":600,\"annotations\":{\"%s\":\"v1\"},\"platform\":{\"architecture\""
                     ":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}}]}",
                     OCI_MT_INDEX, OCI_MT_MANIFEST, ds(5), OCI_MT_MANIFEST, ds(6),
                     OCI_ANNOTATION_REF_NAME);
    assert_string_equal(out, want);
    struct oci_manifest m;
    assert_int_equal(oci_manifest_parse(out, len, NULL, &m, &err), 0);
    assert_string_equal(m.manifests[1].ref_name, "v1");
    assert_string_equal(m.manifests[1].platform.variant, "v7");
    oci_manifest_release(&m);
    free(out);
    free(want);
}

/* ---- image config ------------------------------------------------------------------ */

/* A config as Docker writes one, with fields we drop and one we carry. */
static char *docker_config(void)
{
    return fmt("{\"architecture\":\"arm\",\"variant\":\"v7\",\"os\":\"linux\","
               "\"created\":\"2023-01-02T03:04:05.123456789Z\",\"docker_version\":\"20.10\","
               "\"container_config\":{\"Hostname\":\"abc\"},"
               "\"config\":{\"Hostname\":\"\",\"User\":\"\",\"AttachStdin\":false,"
               "\"ExposedPorts\":{\"8080/tcp\":{},\"53/udp\":{}},"
               "\"Env\":[\"PATH=/usr/bin:/bin\",\"LANG=C.UTF-8\"],\"Cmd\":[\"sh\"],"
               "\"Entrypoint\":null,\"WorkingDir\":\"/srv\",\"StopSignal\":\"SIGQUIT\","
               "\"Labels\":{\"z\":\"last\",\"a\":\"first\"},\"OnBuild\":null},"
               "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]},"
               "\"history\":[{\"created\":\"2023-01-02T03:04:05Z\",\"created_by\":\"ADD x /\"},"
               "{\"created_by\":\"CMD [\\\"sh\\\"]\",\"empty_layer\":true},"
               "{\"created_by\":\"RUN true\",\"comment\":\"c\"}]}",
               ds(7), ds(8));
}

static void test_config_parse_and_build(void **state)
{
    (void)state;
    char *doc = docker_config();
    struct oci_image_config c;
    struct ff_err err;
    assert_int_equal(oci_config_parse(doc, strlen(doc), &c, &err), 0);
    assert_string_equal(c.architecture, "arm");
    assert_string_equal(c.variant, "v7");
    assert_string_equal(c.os, "linux");
    assert_string_equal(c.user, "");
    assert_string_equal(c.working_dir, "/srv");
    assert_int_equal(c.n_env, 2);
    assert_string_equal(oci_config_env_get(&c, "PATH"), "/usr/bin:/bin");
    assert_null(oci_config_env_get(&c, "PAT"));
    assert_true(c.has_cmd);
    assert_int_equal(c.n_cmd, 1);
    assert_false(c.has_entrypoint);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[0].key, "a");
    assert_int_equal(c.n_exposed_ports, 2);
    assert_string_equal(c.exposed_ports[0], "53/udp");
    assert_int_equal(c.n_diff_ids, 2);
    assert_int_equal(c.n_history, 3);
    assert_true(c.history[1].empty_layer);
    assert_string_equal(c.history[2].comment, "c");

    char *out = NULL;
    size_t len = 0;
    assert_int_equal(oci_config_build(&c, &out, &len, &err), 0);
    char *want = fmt("{\"created\":\"2023-01-02T03:04:05.123456789Z\",\"architecture\":\"arm\","
                     "\"variant\":\"v7\",\"os\":\"linux\",\"config\":{\"User\":\"\","
                     "\"ExposedPorts\":{\"53/udp\":{},\"8080/tcp\":{}},\"Env\":[\"PATH=/usr/bin:"
                     "/bin\",\"LANG=C.UTF-8\"],\"Cmd\":[\"sh\"],\"WorkingDir\":\"/srv\","
                     "\"Labels\":{\"a\":\"first\",\"z\":\"last\"},\"StopSignal\":\"SIGQUIT\"},"
                     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]},"
                     "\"history\":[{\"created\":\"2023-01-02T03:04:05Z\",\"created_by\":"
                     "\"ADD x /\"},{\"created_by\":\"CMD [\\\"sh\\\"]\",\"empty_layer\":true},"
                     "{\"created_by\":\"RUN true\",\"comment\":\"c\"}]}",
                     ds(7), ds(8));
    assert_string_equal(out, want);
    /* Parsing what we wrote and writing again gives the same bytes. */
    struct oci_image_config again;
    assert_int_equal(oci_config_parse(out, len, &again, &err), 0);
    char *out2 = NULL;
    size_t len2 = 0;
    assert_int_equal(oci_config_build(&again, &out2, &len2, &err), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(out2, out, len);
    oci_config_release(&again);
    oci_config_release(&c);
    oci_config_release(&c);
    free(out);
    free(out2);
    free(want);
    free(doc);
}

static void config_refused(const char *doc, int code, const char *needle)
{
    struct oci_image_config c;
    memset(&c, 0x5a, sizeof(c));
    struct ff_err err;
    int rc = oci_config_parse(doc, strlen(doc), &c, &err);
    if (rc != code || strstr(err.msg, needle) == NULL)
        fail_msg("%.200s: got %d \"%s\", expected %d with \"%s\"", doc, rc, err.msg, code,
                 needle);
    assert_null(c.architecture);
    assert_null(c.env);
    assert_null(c.history);
}

#define ROOTFS "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}"

static void test_config_refused(void **state)
{
    (void)state;
    config_refused("{\"os\":\"linux\"," ROOTFS "}", FF_EINVAL, "\"architecture\": required");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\"}", FF_EINVAL,
                   "\"rootfs\": required");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"x\","
                   "\"diff_ids\":[]}}", FF_EINVAL, "expected \"layers\"");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":"
                   "\"layers\",\"diff_ids\":[\"sha256:00\"]}}", FF_EINVAL, "diff_ids[0]");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":"
                   "\"layers\",\"diff_ids\":[7]}}", FF_EINVAL, "diff_ids[0] is not a string");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"X\"]},"
                   ROOTFS "}", FF_EINVAL, "config: field \"Env\": item 0 is not NAME=value");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"X=1\","
                   "\"X=2\"]}," ROOTFS "}", FF_EINVAL, "repeats a name");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"a\",1]},"
                   ROOTFS "}", FF_EINVAL, "\"Cmd\": item 1");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":\"sh\"},"
                   ROOTFS "}", FF_EINVAL, "\"Cmd\": expected an array");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Labels\":{\"a\""
                   ":1}}," ROOTFS "}", FF_EINVAL, "\"Labels\"");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"ExposedPorts\":"
                   "{\"8 0\":{}}}," ROOTFS "}", FF_EINVAL, "\"ExposedPorts\"");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":0},"
                   ROOTFS "}", FF_EINVAL, "\"User\": expected a string");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":[]," ROOTFS "}",
                   FF_EINVAL, "\"config\": expected an object");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\"," ROOTFS ",\"history\":[1]}",
                   FF_EINVAL, "history[0]: expected an object");
    config_refused("{\"architecture\":\"amd64\",\"os\":\"linux\"," ROOTFS ",\"history\":[{"
                   "\"empty_layer\":\"yes\"}]}", FF_EINVAL, "history[0]: field \"empty_layer\"");
    config_refused("{\"architecture\":\"amd 64\",\"os\":\"linux\"," ROOTFS "}", FF_EINVAL,
                   "without spaces");
    /* Over the size limit, refused before parsing. */
    char *big = malloc(OCI_CONFIG_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', OCI_CONFIG_MAX + 1);
    big[OCI_CONFIG_MAX + 1] = '\0';
    config_refused(big, FF_ETOOBIG, "limit");
    free(big);
}

static void test_config_edit(void **state)
{
    (void)state;
    struct oci_image_config c;
    oci_config_init(&c);
    struct ff_err err;
    char created[OCI_TIME_SIZE];
    assert_int_equal(oci_time_format(1700000000, created, &err), 0);
    assert_string_equal(created, "2023-11-14T22:13:20Z");
    assert_int_equal(oci_config_string_set(&c, "created", created, &err), 0);
    assert_int_equal(oci_config_string_set(&c, "architecture", "arm64", &err), 0);
    assert_int_equal(oci_config_string_set(&c, "variant", "v8", &err), 0);
    assert_int_equal(oci_config_string_set(&c, "os", "linux", &err), 0);
    assert_int_equal(oci_config_string_set(&c, "User", "1000:1000", &err), 0);
    assert_int_equal(oci_config_string_set(&c, "WorkingDir", "/app", &err), 0);
    expect_msg(oci_config_string_set(&c, "Nope", "x", &err), FF_EINVAL, &err, "\"Nope\"");
    assert_int_equal(oci_config_env_set(&c, "PATH", "/bin", &err), 0);
    assert_int_equal(oci_config_env_set(&c, "A", "1", &err), 0);
    assert_int_equal(oci_config_env_set(&c, "PATH", "/usr/bin:/bin", &err), 0);
    assert_int_equal(c.n_env, 2);
    assert_string_equal(c.env[0], "PATH=/usr/bin:/bin"); /* replaced in place */
    expect_msg(oci_config_env_set(&c, "A=B", "1", &err), FF_EINVAL, &err, "with '='");
    expect_msg(oci_config_env_set(&c, "", "1", &err), FF_EINVAL, &err, "empty");
    assert_int_equal(oci_config_label_set(&c, "org.b", "2", &err), 0);
    assert_int_equal(oci_config_label_set(&c, "org.a", "1", &err), 0);
    assert_int_equal(oci_config_label_set(&c, "org.b", "3", &err), 0);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[0].key, "org.a");
    assert_string_equal(c.labels[1].value, "3");
    assert_int_equal(oci_config_port_add(&c, "80", &err), 0);
    assert_int_equal(oci_config_port_add(&c, "53/UDP", &err), 0);
    assert_int_equal(oci_config_port_add(&c, "80/tcp", &err), 0);
    assert_int_equal(c.n_exposed_ports, 2);
    assert_string_equal(c.exposed_ports[0], "53/udp");
    assert_string_equal(c.exposed_ports[1], "80/tcp");
    expect_msg(oci_config_port_add(&c, "0", &err), FF_EINVAL, &err, "expected <1-65535>");
    expect_msg(oci_config_port_add(&c, "70000/tcp", &err), FF_EINVAL, &err, "\"70000/tcp\"");
    expect_msg(oci_config_port_add(&c, "80/icmp", &err), FF_EINVAL, &err, "\"80/icmp\"");
    expect_msg(oci_config_port_add(&c, "/tcp", &err), FF_EINVAL, &err, "\"/tcp\"");
    const char *argv[] = {"/app/run", "--port", "80"};
    assert_int_equal(oci_config_argv_set(&c, "Entrypoint", argv, 1, &err), 0);
    assert_int_equal(oci_config_argv_set(&c, "Cmd", argv + 1, 2, &err), 0);
    assert_int_equal(oci_config_argv_set(&c, "Cmd", argv + 1, 2, &err), 0);
    expect_msg(oci_config_argv_set(&c, "Args", argv, 1, &err), FF_EINVAL, &err,
               "Cmd or Entrypoint");
    struct ff_digest l1 = dig(0x21);
    assert_int_equal(oci_config_history_add(&c, created, "COPY . /app", &l1, &err), 0);
    assert_int_equal(oci_config_history_add(&c, created, "ENV A=1", NULL, &err), 0);
    assert_int_equal(c.n_diff_ids, 1);
    assert_int_equal(c.n_history, 2);

    char *out = NULL;
    size_t len = 0;
    assert_int_equal(oci_config_build(&c, &out, &len, &err), 0);
    char *want = fmt("{\"created\":\"2023-11-14T22:13:20Z\",\"architecture\":\"arm64\","
                     "\"variant\":\"v8\",\"os\":\"linux\",\"config\":{\"User\":\"1000:1000\","
                     "\"ExposedPorts\":{\"53/udp\":{},\"80/tcp\":{}},\"Env\":[\"PATH=/usr/bin:"
                     "/bin\",\"A=1\"],\"Entrypoint\":[\"/app/run\"],\"Cmd\":[\"--port\",\"80\"],"
                     "\"WorkingDir\":\"/app\",\"Labels\":{\"org.a\":\"1\",\"org.b\":\"3\"}},"
                     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]},\"history\":["
                     "{\"created\":\"2023-11-14T22:13:20Z\",\"created_by\":\"COPY . /app\"},"
                     "{\"created\":\"2023-11-14T22:13:20Z\",\"created_by\":\"ENV A=1\","
                     "\"empty_layer\":true}]}",
                     ds(0x21));
    assert_string_equal(out, want);
    free(out);
    free(want);

    /* An empty Cmd is written as [], a cleared field disappears. */
    assert_int_equal(oci_config_argv_set(&c, "Cmd", NULL, 0, &err), 0);
    assert_int_equal(oci_config_string_set(&c, "User", NULL, &err), 0);
    assert_int_equal(oci_config_build(&c, &out, &len, &err), 0);
    assert_non_null(strstr(out, "\"Cmd\":[]"));
    assert_null(strstr(out, "\"User\""));
    free(out);
    assert_int_equal(oci_config_string_set(&c, "os", NULL, &err), 0);
    expect_msg(oci_config_build(&c, &out, &len, &err), FF_EINVAL, &err, "required");
    oci_config_release(&c);

    expect_msg(oci_time_format(-1, created, &err), FF_ERANGE, &err, "outside");
    expect_msg(oci_time_format(253402300800LL, created, &err), FF_ERANGE, &err, "outside");
    assert_int_equal(oci_time_format(0, created, &err), 0);
    assert_string_equal(created, "1970-01-01T00:00:00Z");
}

/* ---- OCI image layout ---------------------------------------------------------------- */

static char *tmpdir_new(void)
{
    char *d = strdup("/tmp/test_oci.XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        assert_non_null(dir);
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *child = ff_asprintf("%s/%s", path, e->d_name);
            rm_rf(child);
            free(child);
        }
        closedir(dir);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void file_put(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, strlen(data), f), strlen(data));
    assert_int_equal(fclose(f), 0);
}

static size_t dir_count(const char *path)
{
    DIR *dir = opendir(path);
    assert_non_null(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

static void test_layout_write_read(void **state)
{
    (void)state;
    char *tmp = tmpdir_new();
    char *layout = ff_asprintf("%s/layout", tmp);
    char *layer = ff_asprintf("%s/layer.tar", tmp);
    file_put(layer, "layer bytes");
    struct ff_digest layer_d, cfg_d;
    struct ff_err err;
    assert_int_equal(ff_digest_file(layer, &layer_d, &err), 0);
    assert_int_equal(oci_layout_init(layout, &err), 0);
    assert_int_equal(oci_layout_blob_add_bytes(layout, "{}", 2, &cfg_d, &err), 0);

    struct oci_descriptor cfg = {.media_type = OCI_MT_CONFIG, .digest = cfg_d, .size = 2};
    struct oci_descriptor lay = {.media_type = OCI_MT_LAYER, .digest = layer_d, .size = 11};
    char *man = NULL;
    size_t man_len = 0;
    assert_int_equal(oci_manifest_build(&cfg, &lay, 1, NULL, 0, &man, &man_len, &err), 0);
    const char *paths[] = {layer};
    assert_int_equal(oci_layout_write(layout, "v1", OCI_MT_MANIFEST, man, man_len, &layer_d,
                                      paths, 1, true, &err), 0);
    assert_int_equal(oci_layout_write(layout, "v2", OCI_MT_MANIFEST, man, man_len, &layer_d,
                                      paths, 1, false, &err), 0);
    /* Writing v1 again replaces its entry instead of adding one. */
    assert_int_equal(oci_layout_write(layout, "v1", OCI_MT_MANIFEST, man, man_len, &layer_d,
                                      paths, 1, false, &err), 0);

    struct oci_layout l;
    assert_int_equal(oci_layout_open(layout, &l, &err), 0);
    assert_int_equal(l.index.n_manifests, 2);
    const struct oci_descriptor *d = NULL;
    assert_int_equal(oci_layout_find(&l, "v1", &d, &err), 0);
    assert_int_equal(d->size, (int64_t)man_len);
    expect_msg(oci_layout_find(&l, "v3", &d, &err), FF_ENOTFOUND, &err, "no tag \"v3\" (has: v2, "
               "v1)");
    expect_msg(oci_layout_find(&l, NULL, &d, &err), FF_EINVAL, &err, "2 images");
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(oci_layout_blob_read(layout, &d->digest, OCI_MANIFEST_MAX, &bytes, &len,
                                          &err), 0);
    assert_int_equal(len, man_len);
    assert_memory_equal(bytes, man, len);
    free(bytes);
    expect_msg(oci_layout_blob_read(layout, &d->digest, 10, &bytes, &len, &err), FF_ETOOBIG,
               &err, "limit is 10");
    oci_layout_close(&l);
    oci_layout_close(&l);

    /* The layer went in as a hard link; its bytes are there. */
    char *blob = oci_layout_blob_path(layout, &layer_d);
    struct stat a, b;
    assert_int_equal(stat(blob, &a), 0);
    assert_int_equal(stat(layer, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);

    /* A tampered blob is caught when read. */
    char *cfg_path = oci_layout_blob_path(layout, &cfg_d);
    assert_int_equal(unlink(cfg_path), 0);
    file_put(cfg_path, "{ }");
    expect_msg(oci_layout_blob_read(layout, &cfg_d, 100, &bytes, &len, &err), FF_EINVAL, &err,
               "digest mismatch");

    free(cfg_path);
    free(blob);
    free(man);
    free(layer);
    free(layout);
    rm_rf(tmp);
    free(tmp);
}

static void test_layout_refused(void **state)
{
    (void)state;
    char *tmp = tmpdir_new();
    char *layout = ff_asprintf("%s/layout", tmp);
    char *src = ff_asprintf("%s/src", tmp);
    struct ff_err err;
    file_put(src, "real bytes");
    assert_int_equal(oci_layout_init(layout, &err), 0);
    /* A copy that does not hash to the digest claimed is refused, and no
     * file (not even a temporary one) is left. */
    struct ff_digest wrong = dig(0x33);
    expect_msg(oci_layout_blob_add_file(layout, &wrong, src, false, &err), FF_EINVAL, &err,
               "digest mismatch (expected sha256:3333");
    char *sha = ff_asprintf("%s/blobs/sha256", layout);
    assert_int_equal(dir_count(sha), 0);
    expect_msg(oci_layout_blob_add_file(layout, &wrong, "/nonexistent/x", false, &err),
               FF_ENOTFOUND, &err, "/nonexistent/x");
    /* No index.json yet. */
    struct oci_layout l;
    expect_msg(oci_layout_open(layout, &l, &err), FF_ENOTFOUND, &err, "index.json");
    /* Another layout version. */
    char *marker = ff_asprintf("%s/oci-layout", layout);
    file_put(marker, "{\"imageLayoutVersion\":\"2.0.0\"}");
    expect_msg(oci_layout_init(layout, &err), FF_EINVAL, &err, "expected \"1.0.0\"");
    expect_msg(oci_layout_open(layout, &l, &err), FF_EINVAL, &err, "expected \"1.0.0\"");
    /* An index.json that is a manifest. */
    file_put(marker, "{\"imageLayoutVersion\":\"1.0.0\"}");
    char *index = ff_asprintf("%s/index.json", layout);
    char *doc = oci_manifest_doc();
    file_put(index, doc);
    expect_msg(oci_layout_open(layout, &l, &err), FF_EINVAL, &err, "but Content-Type");
    free(doc);
    free(index);
    free(marker);
    free(sha);
    free(src);
    free(layout);
    rm_rf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_platform_from_arch),
        cmocka_unit_test(test_platform_match),
        cmocka_unit_test(test_manifest_parse),
        cmocka_unit_test(test_manifest_refused),
        cmocka_unit_test(test_manifest_limits),
        cmocka_unit_test(test_index_select),
        cmocka_unit_test(test_manifest_build),
        cmocka_unit_test(test_index_build),
        cmocka_unit_test(test_config_parse_and_build),
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_config_edit),
        cmocka_unit_test(test_layout_write_read),
        cmocka_unit_test(test_layout_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
