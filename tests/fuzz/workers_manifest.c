/* Manifests, indexes and image configs as a registry or an image layout
 * may hand them to the worker. The first byte picks what the rest is
 * parsed as (and which Content-Type the registry claimed). Whatever is
 * accepted must respect the limits, rebuild into a document that parses to
 * the same descriptors, and (configs) serialise to a fixed point: parse,
 * build, parse, build gives the same bytes twice. Platform selection must
 * only ever answer a matching entry. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_descriptor(const struct oci_descriptor *d)
{
    if (d->media_type == NULL || d->size < 0 || d->size > OCI_BLOB_SIZE_MAX)
        abort();
    if (d->platform.os != NULL && d->platform.architecture == NULL)
        abort();
}

static void same_descriptors(const struct oci_descriptor *a, const struct oci_descriptor *b,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!ff_digest_equal(&a[i].digest, &b[i].digest) || a[i].size != b[i].size ||
            strcmp(a[i].media_type, b[i].media_type) != 0)
            abort();
    }
}

static void check_select(const struct oci_manifest *m)
{
    static const char *const archs[] = {"amd64", "arm64", "armv7"};
    for (size_t a = 0; a < 3; a++) {
        struct oci_platform want;
        if (oci_platform_from_arch(archs[a], &want, NULL) != 0)
            abort();
        const struct oci_descriptor *d = NULL;
        struct ff_err err;
        int rc = oci_index_select(m, &want, &d, &err);
        if (rc == 0 && (d == NULL || !oci_platform_match(&want, &d->platform)))
            abort();
        if (rc != 0 && rc != FF_ENOTFOUND)
            abort();
    }
}

static void check_manifest(const struct oci_manifest *m)
{
    char *out = NULL;
    size_t len = 0;
    struct ff_err err;
    struct oci_manifest back;
    if (m->kind == OCI_KIND_MANIFEST) {
        if (m->n_layers > OCI_LAYERS_MAX || m->manifests != NULL)
            abort();
        check_descriptor(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
            check_descriptor(&m->layers[i]);
        if (oci_manifest_build(&m->config, m->layers, m->n_layers, NULL, 0, &out, &len, &err) != 0)
            abort();
        if (oci_manifest_parse(out, len, NULL, &back, &err) != 0 || back.n_layers != m->n_layers)
            abort();
        same_descriptors(&m->config, &back.config, 1);
        same_descriptors(m->layers, back.layers, m->n_layers);
    } else if (m->kind == OCI_KIND_INDEX) {
        if (m->n_manifests > OCI_INDEX_MAX || m->layers != NULL)
            abort();
        for (size_t i = 0; i < m->n_manifests; i++)
            check_descriptor(&m->manifests[i]);
        check_select(m);
        if (oci_index_build(m->manifests, m->n_manifests, NULL, 0, &out, &len, &err) != 0)
            abort();
        if (oci_manifest_parse(out, len, NULL, &back, &err) != 0 ||
            back.n_manifests != m->n_manifests)
            abort();
        same_descriptors(m->manifests, back.manifests, m->n_manifests);
    } else {
        abort();
    }
    oci_manifest_release(&back);
    free(out);
}

static void check_config(const char *doc, size_t size)
{
    struct oci_image_config c, again;
    struct ff_err err;
    if (oci_config_parse(doc, size, &c, &err) != 0)
        return;
    if (c.architecture == NULL || c.os == NULL || c.n_diff_ids > OCI_LAYERS_MAX ||
        c.n_history > OCI_LIST_MAX || c.n_env > OCI_LIST_MAX)
        abort();
    char *one = NULL, *two = NULL;
    size_t n1 = 0, n2 = 0;
    if (oci_config_build(&c, &one, &n1, &err) != 0)
        abort();
    if (oci_config_parse(one, n1, &again, &err) != 0)
        abort();
    if (oci_config_build(&again, &two, &n2, &err) != 0 || n1 != n2 || memcmp(one, two, n1) != 0)
        abort();
    oci_config_release(&again);
    oci_config_release(&c);
    free(one);
    free(two);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const content_types[] = {NULL, OCI_MT_MANIFEST, OCI_MT_INDEX,
                                                DOCKER_MT_MANIFEST, DOCKER_MT_LIST};
    if (size == 0)
        return 0;
    unsigned mode = data[0] % 6;
    const char *doc = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 5) {
        check_config(doc, len);
        return 0;
    }
    struct oci_manifest m;
    struct ff_err err;
    if (oci_manifest_parse(doc, len, content_types[mode], &m, &err) != 0) {
        if (m.root != NULL || m.layers != NULL || m.manifests != NULL)
            abort();
        return 0;
    }
    check_manifest(&m);
    oci_manifest_release(&m);
    return 0;
}
