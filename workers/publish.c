/* Writing a finished build: into an OCI image layout, or to the registry.
 * Either way blobs go first and the manifest (or index) that names them
 * last, so a reader never sees a tag whose content is missing. */
#include "worker.h"

#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int publish_index(const struct build_image *images, size_t n, char **out, size_t *out_len,
                  struct ff_digest *digest, struct ff_err *err)
{
    if (n == 0)
        return ff_err_set(err, FF_EINVAL, "an index needs at least one image");
    struct oci_descriptor *d = calloc(n, sizeof(*d));
    if (d == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        d[i].media_type = OCI_MT_MANIFEST;
        d[i].digest = images[i].manifest_digest;
        d[i].size = (int64_t)images[i].manifest_len;
        d[i].platform = images[i].platform;
    }
    int rc = oci_index_build(d, n, NULL, 0, out, out_len, err);
    free(d);
    if (rc == 0)
        rc = ff_digest_buffer(*out, *out_len, digest, err);
    return rc;
}

/* Every blob of one image, then its manifest, into the layout. */
static int layout_image(const char *dir, const struct build_image *img, struct ff_err *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < img->n_layers; i++)
        rc = oci_layout_blob_add_file(dir, &img->layers[i].digest, img->layers[i].blob_path, true,
                                      err);
    if (rc == 0)
        rc = oci_layout_blob_add_bytes(dir, img->config, img->config_len, NULL, err);
    if (rc == 0)
        rc = oci_layout_blob_add_bytes(dir, img->manifest, img->manifest_len, NULL, err);
    return rc;
}

/* index.json: the other tags of an existing layout, then tag -> top. */
static int layout_tag(const char *dir, const char *tag, const struct oci_descriptor *top,
                      struct ff_err *err)
{
    struct oci_layout old;
    memset(&old, 0, sizeof(old));
    struct ff_err ignored;
    bool have = oci_layout_open(dir, &old, &ignored) == 0;
    size_t n_old = have ? old.index.n_manifests : 0;
    struct oci_descriptor *entries = calloc(n_old + 1, sizeof(*entries));
    if (entries == NULL) {
        if (have)
            oci_layout_close(&old);
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < n_old; i++) {
        const struct oci_descriptor *e = &old.index.manifests[i];
        if (e->ref_name == NULL || strcmp(e->ref_name, tag) != 0)
            entries[n++] = *e;
    }
    entries[n++] = *top;
    int rc = oci_layout_index_write(dir, entries, n, err);
    free(entries);
    if (have)
        oci_layout_close(&old);
    return rc;
}

int publish_layout(const char *dir, const char *tag, const struct build_image *images,
                   size_t n, struct ff_digest *digest, struct ff_err *err)
{
    int rc = oci_layout_init(dir, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = layout_image(dir, &images[i], err);
    if (rc != 0)
        return rc;
    struct oci_descriptor top = {.ref_name = tag};
    char *index = NULL;
    size_t index_len = 0;
    if (n == 1) {
        top.media_type = OCI_MT_MANIFEST;
        top.digest = images[0].manifest_digest;
        top.size = (int64_t)images[0].manifest_len;
    } else {
        rc = publish_index(images, n, &index, &index_len, &top.digest, err);
        if (rc == 0)
            rc = oci_layout_blob_add_bytes(dir, index, index_len, NULL, err);
        top.media_type = OCI_MT_INDEX;
        top.size = (int64_t)index_len;
    }
    if (rc == 0)
        rc = layout_tag(dir, tag, &top, err);
    if (rc == 0)
        *digest = top.digest;
    free(index);
    return rc;
}

/* The config blob as a file the upload can stream. */
static int config_file(const char *tmp_dir, const struct build_image *img, char **out,
                       struct ff_err *err)
{
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(&img->config_digest, hex);
    *out = ff_asprintf("%s/config-%s", tmp_dir, hex);
    if (*out == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int fd = open(*out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "cannot write \"%s\": %s", *out, strerror(errno));
    size_t off = 0;
    int rc = 0;
    while (rc == 0 && off < img->config_len) {
        ssize_t w = write(fd, img->config + off, img->config_len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = ff_err_set(err, FF_EIO, "cannot write \"%s\": %s", *out, strerror(errno));
        else
            off += (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = ff_err_set(err, FF_EIO, "cannot write \"%s\": %s", *out, strerror(errno));
    return rc;
}

static int push_image(struct regclient *reg, const char *repo, const char *tag,
                      const struct build_image *img, const char *tmp_dir, struct ff_err *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < img->n_layers; i++) {
        const struct build_layer *l = &img->layers[i];
        const char *from = l->source_repo != NULL && strcmp(l->source_repo, repo) != 0
                               ? l->source_repo
                               : NULL;
        rc = regclient_blob_ensure(reg, repo, &l->digest, l->blob_path, from, NULL, err);
    }
    char *path = NULL;
    if (rc == 0)
        rc = config_file(tmp_dir, img, &path, err);
    if (rc == 0)
        rc = regclient_blob_ensure(reg, repo, &img->config_digest, path, NULL, NULL, err);
    if (path != NULL)
        (void)unlink(path);
    free(path);
    if (rc == 0)
        rc = regclient_manifest_push(reg, repo, tag, OCI_MT_MANIFEST, img->manifest,
                                     img->manifest_len, NULL, err);
    return rc;
}

int publish_push(struct regclient *reg, const char *repo, const char *tag,
                 const struct build_image *images, size_t n, const char *tmp_dir,
                 struct ff_digest *digest, struct ff_err *err)
{
    if (n == 1) {
        int rc = push_image(reg, repo, tag, &images[0], tmp_dir, err);
        if (rc == 0)
            *digest = images[0].manifest_digest;
        return rc;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = push_image(reg, repo, NULL, &images[i], tmp_dir, err);
    char *index = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = publish_index(images, n, &index, &len, digest, err);
    if (rc == 0)
        rc = regclient_manifest_push(reg, repo, tag, OCI_MT_INDEX, index, len, NULL, err);
    free(index);
    return rc;
}
