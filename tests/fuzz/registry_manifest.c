/* Manifest and index parsing on hostile bytes, with every Content-Type the
 * route may pass (none, each supported type, and an unsupported one). */
#include "registry.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int visit(void *ctx, enum manifest_ref_kind kind, const struct descriptor *d)
{
    size_t *n = ctx;
    char s[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d->digest, s);
    if (d->size < 0 || d->media_type == NULL || (unsigned)kind > MANIFEST_REF_SUBJECT)
        abort();
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {
        NULL, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST,
        MEDIA_TYPE_DOCKER_LIST, "application/json",
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct manifest *m = NULL;
        struct ff_err err;
        if (manifest_parse((const char *)data, size, types[i], &m, &err) != 0)
            continue;
        size_t n = 0;
        (void)manifest_foreach_ref(m, visit, &n);
        if (n != m->n_layers + m->n_manifests + (m->has_config ? 1 : 0) +
                     (m->has_subject ? 1 : 0))
            abort();
        (void)manifest_referrer_artifact_type(m);
        for (size_t j = 0; j < m->n_manifests; j++) {
            if (m->manifests[j].has_platform && (m->manifests[j].platform.os == NULL ||
                                                 m->manifests[j].platform.architecture == NULL))
                abort();
        }
        manifest_free(m);
    }
    return 0;
}
