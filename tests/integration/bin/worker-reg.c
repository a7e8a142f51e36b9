/* worker-reg: drives the registry client (workers/regclient.c) from the
 * integration tests.
 *
 *   worker-reg pull REF --arch A --dest DIR
 *   worker-reg push-layout LAYOUT_DIR REPO:TAG [--layout-tag T] [--mount-from REPO]
 *   worker-reg copy SRC_REPO:TAG DST_REPO:TAG
 *   worker-reg push-blob REPO FILE
 *   worker-reg exists REPO DIGEST
 *   worker-reg mount REPO DIGEST FROM_REPO
 *
 * REF is REPO:TAG or REPO@sha256:…. The registry, CA and credentials come
 * from FF_REGISTRY, FF_CA and FF_CREDS (user:secret); FF_CHUNK_SIZE sets the
 * upload chunk size. Output is one "key value…" line per fact, and a final
 * "stats …" line with the client's counters. Exit status: 0 done, 1 failed
 * (one line on stderr), 2 usage. */
#include "worker.h"

#include "ff_file.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE                                                                                   \
    "usage: worker-reg pull REF --arch A --dest DIR\n"                                          \
    "       worker-reg push-layout LAYOUT_DIR REPO:TAG [--layout-tag T] [--mount-from REPO]\n"  \
    "       worker-reg copy SRC_REPO:TAG DST_REPO:TAG\n"                                        \
    "       worker-reg push-blob REPO FILE\n"                                                   \
    "       worker-reg exists REPO DIGEST\n"                                                    \
    "       worker-reg mount REPO DIGEST FROM_REPO\n"

/* Longest REPO:TAG or REPO@digest argument. */
#define REF_ARG_MAX 512

struct ref {
    char repo[REF_ARG_MAX];
    char reference[REF_ARG_MAX];
};

/* Splits REPO:TAG, REPO@DIGEST or REPO (tag "latest"). */
static int ref_split(const char *arg, struct ref *out, struct ff_err *err)
{
    if (strlen(arg) >= REF_ARG_MAX)
        return ff_err_set(err, FF_EINVAL, "reference \"%.64s…\" too long", arg);
    const char *at = strchr(arg, '@');
    const char *slash = strrchr(arg, '/');
    const char *colon = strrchr(arg, ':');
    size_t n;
    const char *rest;
    if (at != NULL) {
        n = (size_t)(at - arg);
        rest = at + 1;
    } else if (colon != NULL && (slash == NULL || colon > slash)) {
        n = (size_t)(colon - arg);
        rest = colon + 1;
    } else {
        n = strlen(arg);
        rest = "latest";
    }
    memcpy(out->repo, arg, n);
    out->repo[n] = '\0';
    ff_strlcpy(out->reference, rest, sizeof(out->reference));
    int rc = regclient_repo_check(out->repo, err);
    return rc == 0 ? regclient_reference_check(out->reference, err) : rc;
}

static int client_from_env(struct regclient **out, struct ff_err *err)
{
    const char *host = getenv("FF_REGISTRY");
    const char *ca = getenv("FF_CA");
    const char *creds = getenv("FF_CREDS");
    if (host == NULL)
        return ff_err_set(err, FF_EINVAL, "FF_REGISTRY is not set");
    char *user = NULL;
    const char *secret = NULL;
    if (creds != NULL && creds[0] != '\0') {
        const char *colon = strchr(creds, ':');
        if (colon == NULL)
            return ff_err_set(err, FF_EINVAL, "FF_CREDS must be user:secret");
        user = ff_strndup(creds, (size_t)(colon - creds));
        secret = colon + 1;
        if (user == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    int rc = regclient_new(out, host, ca != NULL && ca[0] != '\0' ? ca : NULL, user, secret, err);
    free(user);
    const char *chunk = getenv("FF_CHUNK_SIZE");
    uint64_t size = 0;
    if (rc == 0 && chunk != NULL) {
        if (ff_parse_u64(chunk, SIZE_MAX, &size) != 0)
            rc = ff_err_set(err, FF_EINVAL, "FF_CHUNK_SIZE \"%.32s\" is not a number", chunk);
        else
            rc = regclient_chunk_size_set(*out, (size_t)size, err);
        if (rc != 0) {
            regclient_free(*out);
            *out = NULL;
        }
    }
    return rc;
}

static void print_digest(const char *key, const struct ff_digest *d)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, ds);
    printf("%s %s\n", key, ds);
}

static void stats_print(const struct regclient *c)
{
    struct regclient_stats s;
    regclient_stats_get(c, &s);
    printf("stats requests=%lu token_fetches=%lu skipped=%lu mounted=%lu pushed=%lu chunks=%lu "
           "chunk_retries=%lu fetch_resumes=%lu bytes_pushed=%llu bytes_fetched=%llu\n",
           s.requests, s.token_fetches, s.blobs_skipped, s.blobs_mounted, s.blobs_pushed,
           s.chunks, s.chunk_retries, s.fetch_resumes, (unsigned long long)s.bytes_pushed,
           (unsigned long long)s.bytes_fetched);
}

static char *blob_dest(const char *dir, const struct ff_digest *d)
{
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(d, hex);
    return ff_asprintf("%s/%s", dir, hex);
}

static int fetch_to(struct regclient *c, const char *repo, const struct oci_descriptor *d,
                    const char *dir, char **path_out, struct ff_err *err)
{
    char *path = blob_dest(dir, &d->digest);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = regclient_blob_fetch(c, repo, &d->digest, d->size, path, err);
    if (rc == 0 && path_out != NULL)
        *path_out = path;
    else
        free(path);
    return rc;
}

static int write_file(const char *path, const char *data, size_t len, struct ff_err *err)
{
    FILE *f = fopen(path, "wbe");
    if (f == NULL)
        return ff_err_set(err, FF_EIO, "open \"%s\" for writing", path);
    bool ok = fwrite(data, 1, len, f) == len;
    if (fclose(f) != 0)
        ok = false;
    return ok ? 0 : ff_err_set(err, FF_EIO, "write \"%s\"", path);
}

static int cmd_pull(struct regclient *c, const char *refarg, const char *arch, const char *dest,
                    struct ff_err *err)
{
    struct ref r;
    struct oci_platform want;
    int rc = ref_split(refarg, &r, err);
    if (rc == 0)
        rc = oci_platform_from_arch(arch, &want, err);
    if (rc != 0)
        return rc;
    struct regclient_manifest m;
    rc = regclient_resolve(c, r.repo, r.reference, &want, &m, err);
    if (rc != 0)
        return rc;
    if (m.from_index)
        print_digest("index", &m.index_digest);
    print_digest("manifest", &m.digest);
    char *mpath = ff_asprintf("%s/manifest.json", dest);
    char *cpath = NULL, *cdata = NULL;
    size_t clen = 0;
    struct oci_image_config cfg;
    oci_config_init(&cfg);
    rc = mpath == NULL ? ff_err_set(err, FF_ENOMEM, "out of memory")
                       : write_file(mpath, m.bytes, m.len, err);
    if (rc == 0)
        rc = fetch_to(c, r.repo, &m.parsed.config, dest, &cpath, err);
    if (rc == 0)
        rc = ff_file_read(cpath, OCI_CONFIG_MAX, 0, &cdata, &clen, err);
    if (rc == 0)
        rc = oci_config_parse(cdata, clen, &cfg, err);
    if (rc == 0)
        rc = oci_config_platform_check(&cfg, &want, err);
    if (rc == 0) {
        print_digest("config", &m.parsed.config.digest);
        printf("platform %s/%s%s%s\n", cfg.os, cfg.architecture, cfg.variant != NULL ? "/" : "",
               cfg.variant != NULL ? cfg.variant : "");
    }
    for (size_t i = 0; rc == 0 && i < m.parsed.n_layers; i++) {
        rc = fetch_to(c, r.repo, &m.parsed.layers[i], dest, NULL, err);
        if (rc == 0) {
            char ds[FF_DIGEST_STR_SIZE];
            ff_digest_format(&m.parsed.layers[i].digest, ds);
            printf("layer %s %lld\n", ds, (long long)m.parsed.layers[i].size);
        }
    }
    oci_config_release(&cfg);
    free(cdata);
    free(cpath);
    free(mpath);
    regclient_manifest_release(&m);
    return rc;
}

static const char *how_name(enum regclient_blob_how how)
{
    switch (how) {
    case REGCLIENT_BLOB_EXISTED: return "existed";
    case REGCLIENT_BLOB_MOUNTED: return "mounted";
    default: return "pushed";
    }
}

static int blob_put(struct regclient *c, const char *repo, const char *layout,
                    const struct oci_descriptor *d, const char *mount_from, struct ff_err *err)
{
    char *path = oci_layout_blob_path(layout, &d->digest);
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    enum regclient_blob_how how = REGCLIENT_BLOB_PUSHED;
    int rc = regclient_blob_ensure(c, repo, &d->digest, path, mount_from, &how, err);
    if (rc == 0) {
        char ds[FF_DIGEST_STR_SIZE];
        ff_digest_format(&d->digest, ds);
        printf("blob %s %s\n", ds, how_name(how));
    }
    free(path);
    return rc;
}

/* Pushes one image manifest of the layout: its blobs, then the manifest
 * under tag (NULL: by digest). */
static int image_push(struct regclient *c, const char *repo, const char *tag,
                      const char *layout, const struct oci_descriptor *d, const char *mount_from,
                      struct ff_err *err)
{
    char *bytes = NULL;
    size_t len = 0;
    struct oci_manifest m;
    int rc = oci_layout_blob_read(layout, &d->digest, OCI_MANIFEST_MAX, &bytes, &len, err);
    if (rc != 0)
        return rc;
    rc = oci_manifest_parse(bytes, len, d->media_type, &m, err);
    if (rc != 0) {
        free(bytes);
        return rc;
    }
    if (m.kind == OCI_KIND_INDEX) {
        for (size_t i = 0; rc == 0 && i < m.n_manifests; i++)
            rc = image_push(c, repo, NULL, layout, &m.manifests[i], mount_from, err);
    } else {
        rc = blob_put(c, repo, layout, &m.config, mount_from, err);
        for (size_t i = 0; rc == 0 && i < m.n_layers; i++)
            rc = blob_put(c, repo, layout, &m.layers[i], mount_from, err);
    }
    struct ff_digest pushed;
    if (rc == 0)
        rc = regclient_manifest_push(c, repo, tag, m.media_type, bytes, len, &pushed, err);
    if (rc == 0)
        print_digest(m.kind == OCI_KIND_INDEX ? "pushed-index" : "pushed-manifest", &pushed);
    oci_manifest_release(&m);
    free(bytes);
    return rc;
}

static int cmd_push_layout(struct regclient *c, const char *layout, const char *dst,
                           const char *layout_tag, const char *mount_from, struct ff_err *err)
{
    struct ref r;
    int rc = ref_split(dst, &r, err);
    if (rc != 0)
        return rc;
    if (strchr(r.reference, ':') != NULL)
        return ff_err_set(err, FF_EINVAL, "push-layout needs REPO:TAG");
    struct oci_layout l;
    rc = oci_layout_open(layout, &l, err);
    if (rc != 0)
        return rc;
    const struct oci_descriptor *d = NULL;
    rc = oci_layout_find(&l, layout_tag, &d, err);
    if (rc == 0)
        rc = image_push(c, r.repo, r.reference, layout, d, mount_from, err);
    oci_layout_close(&l);
    return rc;
}

/* Makes one blob of src present in dst: mounted, or downloaded and pushed. */
static int blob_copy(struct regclient *c, const struct ref *src, const struct ref *dst,
                     const struct oci_descriptor *d, const char *tmpdir, struct ff_err *err)
{
    enum regclient_blob_how how = REGCLIENT_BLOB_PUSHED;
    int rc = regclient_blob_ensure(c, dst->repo, &d->digest, NULL, src->repo, &how, err);
    char *path = NULL;
    if (rc == FF_ENOTFOUND) {
        rc = fetch_to(c, src->repo, d, tmpdir, &path, err);
        if (rc == 0)
            rc = regclient_blob_ensure(c, dst->repo, &d->digest, path, NULL, &how, err);
        if (path != NULL)
            (void)unlink(path);
        free(path);
    }
    if (rc == 0) {
        char ds[FF_DIGEST_STR_SIZE];
        ff_digest_format(&d->digest, ds);
        printf("blob %s %s\n", ds, how_name(how));
    }
    return rc;
}

static int manifest_copy(struct regclient *c, const struct ref *src, const struct ref *dst,
                         const char *reference, const char *tag, const char *tmpdir,
                         struct ff_err *err)
{
    struct regclient_manifest m;
    int rc = regclient_manifest_fetch(c, src->repo, reference, &m, err);
    if (rc != 0)
        return rc;
    const struct oci_manifest *p = &m.parsed;
    for (size_t i = 0; rc == 0 && p->kind == OCI_KIND_INDEX && i < p->n_manifests; i++) {
        char ds[FF_DIGEST_STR_SIZE];
        ff_digest_format(&p->manifests[i].digest, ds);
        rc = manifest_copy(c, src, dst, ds, NULL, tmpdir, err);
    }
    if (rc == 0 && p->kind == OCI_KIND_MANIFEST) {
        rc = blob_copy(c, src, dst, &p->config, tmpdir, err);
        for (size_t i = 0; rc == 0 && i < p->n_layers; i++)
            rc = blob_copy(c, src, dst, &p->layers[i], tmpdir, err);
    }
    struct ff_digest pushed;
    if (rc == 0)
        rc = regclient_manifest_push(c, dst->repo, tag, p->media_type, m.bytes, m.len, &pushed,
                                     err);
    if (rc == 0)
        print_digest(p->kind == OCI_KIND_INDEX ? "pushed-index" : "pushed-manifest", &pushed);
    regclient_manifest_release(&m);
    return rc;
}

static int cmd_copy(struct regclient *c, const char *srcarg, const char *dstarg,
                    struct ff_err *err)
{
    struct ref src, dst;
    int rc = ref_split(srcarg, &src, err);
    if (rc == 0)
        rc = ref_split(dstarg, &dst, err);
    if (rc != 0)
        return rc;
    if (strchr(dst.reference, ':') != NULL)
        return ff_err_set(err, FF_EINVAL, "copy needs a destination tag");
    const char *base = getenv("TMPDIR");
    char *tmpdir = ff_asprintf("%s/worker-reg.XXXXXX", base != NULL ? base : "/tmp");
    if (tmpdir == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    if (mkdtemp(tmpdir) == NULL) {
        free(tmpdir);
        return ff_err_set(err, FF_EIO, "mkdtemp failed");
    }
    rc = manifest_copy(c, &src, &dst, src.reference, dst.reference, tmpdir, err);
    (void)rmdir(tmpdir);
    free(tmpdir);
    return rc;
}

static int cmd_push_blob(struct regclient *c, const char *repo, const char *file,
                         struct ff_err *err)
{
    struct ff_digest d;
    int rc = ff_digest_file(file, &d, err);
    if (rc == 0)
        rc = regclient_blob_push(c, repo, &d, file, err);
    if (rc == 0)
        print_digest("pushed-blob", &d);
    return rc;
}

static int cmd_exists(struct regclient *c, const char *repo, const char *digest,
                      struct ff_err *err)
{
    struct ff_digest d;
    bool exists = false;
    int rc = ff_digest_parse_str(digest, &d, err);
    if (rc == 0)
        rc = regclient_blob_exists(c, repo, &d, &exists, err);
    if (rc == 0)
        printf("exists %s\n", exists ? "yes" : "no");
    return rc;
}

static int cmd_mount(struct regclient *c, const char *repo, const char *digest, const char *from,
                     struct ff_err *err)
{
    struct ff_digest d;
    bool mounted = false;
    int rc = ff_digest_parse_str(digest, &d, err);
    if (rc == 0)
        rc = regclient_blob_mount(c, repo, &d, from, &mounted, err);
    if (rc == 0)
        printf("mounted %s\n", mounted ? "yes" : "no");
    return rc;
}

/* Value of "--name VALUE" among argv[from..], or NULL. */
static const char *option(int argc, char **argv, int from, const char *name)
{
    for (int i = from; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return NULL;
}

static int run(struct regclient *c, int argc, char **argv, struct ff_err *err)
{
    const char *cmd = argv[1];
    if (strcmp(cmd, "pull") == 0 && argc >= 3) {
        const char *arch = option(argc, argv, 3, "--arch");
        const char *dest = option(argc, argv, 3, "--dest");
        if (arch == NULL || dest == NULL)
            return 2;
        return cmd_pull(c, argv[2], arch, dest, err);
    }
    if (strcmp(cmd, "push-layout") == 0 && argc >= 4)
        return cmd_push_layout(c, argv[2], argv[3], option(argc, argv, 4, "--layout-tag"),
                               option(argc, argv, 4, "--mount-from"), err);
    if (strcmp(cmd, "copy") == 0 && argc == 4)
        return cmd_copy(c, argv[2], argv[3], err);
    if (strcmp(cmd, "push-blob") == 0 && argc == 4)
        return cmd_push_blob(c, argv[2], argv[3], err);
    if (strcmp(cmd, "exists") == 0 && argc == 4)
        return cmd_exists(c, argv[2], argv[3], err);
    if (strcmp(cmd, "mount") == 0 && argc == 5)
        return cmd_mount(c, argv[2], argv[3], argv[4], err);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        (void)fputs(USAGE, stderr);
        return 2;
    }
    struct ff_err err;
    ff_err_clear(&err);
    struct regclient *c = NULL;
    int rc = client_from_env(&c, &err);
    if (rc == 0) {
        rc = run(c, argc, argv, &err);
        stats_print(c);
    }
    regclient_free(c);
    if (rc == 2) {
        (void)fputs(USAGE, stderr);
        return 2;
    }
    if (rc != 0) {
        (void)fprintf(stderr, "worker-reg: %s (%s)\n", err.msg, ff_err_name(rc));
        return 1;
    }
    return 0;
}
