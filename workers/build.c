/* The build engine: for each architecture, the recipe's stages in order,
 * each starting from its base (scratch, an earlier stage, or an image from
 * the registry, verified and unpacked into the cache), each instruction
 * either changing the image config or making a layer:
 *
 *   RUN        runc over an overlay of the stage's layers (runner.h)
 *   COPY, ADD  an overlay of the stage's layers mounted here, the sources
 *              copied into it (context.h)
 *
 * A step's key chains its parent's key, the expanded instruction and the
 * digest of its inputs; a key the cache knows reuses its layer without
 * running anything. A step's overlay upper directory is both its layer's
 * unpacked form (the next steps' lower directory, whiteouts included) and
 * what layer_write turns into the blob. When every architecture is built,
 * the images are written (publish.c). */
#include "worker.h"

#include "ff_file.h"
#include "ff_http_client.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Longest progress line we format (RUN output lines are passed as they
 * come, the runner splits them at RUNC_LINE_MAX). */
#define BUILD_LINE_MAX 8192
/* What a step key starts with: a new scheme changes every key. */
#define BUILD_KEY_SCHEME "ff-worker step key 1"

/* One stage as it is built. */
struct stage {
    struct build_layer *layers; /* bottom first */
    size_t n_layers;
    struct oci_image_config config;
    struct ff_digest key;
    struct recipe_scope *scope;
    bool cmd_set; /* CMD given in this stage: ENTRYPOINT does not reset it */
};

/* One architecture's build. */
struct arch_build {
    const struct build_opts *o;
    const char *arch;
    struct oci_platform platform;
    char created[OCI_TIME_SIZE];
    struct cache *cache;
    struct regclient *reg;
    struct ff_http_client *http;
    struct recipe *recipe;
    struct recipe_scope *global;
    struct ignore *ignore;
    struct context_root *context;
    struct context_memo *memo;
    struct runc_opts runc;
    char *empty_dir; /* the lower directory of a stage with no layer yet */
    struct stage *stages;
    size_t n_stages;
    unsigned step, n_steps;
    struct build_result *result;
};

static void say(struct arch_build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct arch_build *b, const char *fmt, ...)
{
    if (b->o->progress == NULL)
        return;
    char line[BUILD_LINE_MAX];
    int n = snprintf(line, sizeof(line), "[%s] ", b->arch);
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    b->o->progress(b->o->progress_ctx, line);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- step keys --------------------------------------------------------- */

/* key = sha256(scheme, parent, text, inputs): inputs may be NULL. */
static int key_next(struct ff_digest *key, const char *text, const struct ff_digest *inputs,
                    struct ff_err *err)
{
    char parent[FF_DIGEST_STR_SIZE], in[FF_DIGEST_STR_SIZE] = "-";
    ff_digest_format(key, parent);
    if (inputs != NULL)
        ff_digest_format(inputs, in);
    struct ff_digest_ctx *ctx = NULL;
    int rc = ff_digest_ctx_new(&ctx, err);
    const char *parts[] = {BUILD_KEY_SCHEME, parent, in, text};
    for (size_t i = 0; rc == 0 && i < sizeof(parts) / sizeof(parts[0]); i++) {
        /* Each part with its length: no two sequences of parts hash alike. */
        char len[24];
        int n = snprintf(len, sizeof(len), "%zu:", strlen(parts[i]));
        rc = ff_digest_ctx_update(ctx, len, (size_t)n, err);
        if (rc == 0)
            rc = ff_digest_ctx_update(ctx, parts[i], strlen(parts[i]), err);
    }
    if (rc == 0)
        rc = ff_digest_ctx_final(ctx, key, err);
    ff_digest_ctx_free(ctx);
    return rc;
}

/* The digest of what a RUN sees besides its command: environment, user,
 * working directory, network. */
static int run_inputs(const struct stage *st, char **env, size_t n_env, bool network,
                      struct ff_digest *out, struct ff_err *err)
{
    struct ff_digest_ctx *ctx = NULL;
    int rc = ff_digest_ctx_new(&ctx, err);
    const char *user = st->config.user != NULL ? st->config.user : "";
    const char *dir = st->config.working_dir != NULL ? st->config.working_dir : "/";
    const char *fixed[] = {user, dir, network ? "network" : "no-network"};
    for (size_t i = 0; rc == 0 && i < sizeof(fixed) / sizeof(fixed[0]); i++)
        rc = ff_digest_ctx_update(ctx, fixed[i], strlen(fixed[i]) + 1, err);
    for (size_t i = 0; rc == 0 && i < n_env; i++)
        rc = ff_digest_ctx_update(ctx, env[i], strlen(env[i]) + 1, err);
    if (rc == 0)
        rc = ff_digest_ctx_final(ctx, out, err);
    ff_digest_ctx_free(ctx);
    return rc;
}

/* ---- stages: layers and config ----------------------------------------- */

static void layer_release(struct build_layer *l)
{
    free(l->blob_path);
    free(l->source_repo);
}

static void stage_release(struct stage *st)
{
    for (size_t i = 0; i < st->n_layers; i++)
        layer_release(&st->layers[i]);
    free(st->layers);
    oci_config_release(&st->config);
    recipe_scope_free(st->scope);
    memset(st, 0, sizeof(*st));
}

/* Appends a layer the cache holds (blob path from the cache). */
static int stage_layer_add(struct arch_build *b, struct stage *st, const struct cache_layer *cl,
                           const char *source_repo, struct ff_err *err)
{
    struct build_layer *grown = realloc(st->layers, (st->n_layers + 1) * sizeof(*grown));
    if (grown == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    st->layers = grown;
    struct build_layer *l = &st->layers[st->n_layers];
    memset(l, 0, sizeof(*l));
    l->diff_id = cl->diff_id;
    l->digest = cl->digest;
    l->size = (int64_t)cl->size;
    /* Docker's gzip layer type names the same bytes as OCI's. */
    ff_strlcpy(l->media_type,
               strcmp(cl->media_type, DOCKER_MT_LAYER_GZIP) == 0 ? OCI_MT_LAYER_GZIP
                                                                 : cl->media_type,
               sizeof(l->media_type));
    l->blob_path = cache_blob_path(b->cache, &cl->digest);
    l->source_repo = source_repo != NULL ? ff_strndup(source_repo, strlen(source_repo)) : NULL;
    if (l->blob_path == NULL || (source_repo != NULL && l->source_repo == NULL)) {
        layer_release(l);
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    st->n_layers++;
    return 0;
}

/* Lower directories for an overlay of st: topmost first; a stage with no
 * layer gets the empty directory. *out (malloc'd array of malloc'd
 * strings) is released with lowers_free. */
static int stage_lowers(struct arch_build *b, const struct stage *st, char ***out, size_t *n,
                        struct ff_err *err)
{
    size_t count = st->n_layers > 0 ? st->n_layers : 1;
    if (count > ROOTFS_LOWERS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "the image has %zu layers, at most %d can be stacked",
                          count, ROOTFS_LOWERS_MAX);
    char **v = calloc(count, sizeof(*v));
    if (v == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        v[i] = st->n_layers > 0
                   ? cache_layer_path(b->cache, &st->layers[st->n_layers - 1 - i].diff_id)
                   : ff_strndup(b->empty_dir, strlen(b->empty_dir));
        if (v[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return ff_err_set(err, FF_ENOMEM, "out of memory");
        }
    }
    *out = v;
    *n = count;
    return 0;
}

static void lowers_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

/* A deep copy of a config, through its JSON form. */
static int config_copy(const struct oci_image_config *from, struct oci_image_config *to,
                       struct ff_err *err)
{
    char *json = NULL;
    size_t len = 0;
    int rc = oci_config_build(from, &json, &len, err);
    if (rc == 0)
        rc = oci_config_parse(json, len, to, err);
    free(json);
    return rc;
}

/* FROM an earlier stage: its layers, config and key. */
static int base_from_stage(struct arch_build *b, struct stage *st, const struct stage *base,
                           struct ff_err *err)
{
    int rc = config_copy(&base->config, &st->config, err);
    for (size_t i = 0; rc == 0 && i < base->n_layers; i++) {
        struct cache_layer cl = {.diff_id = base->layers[i].diff_id,
                                 .digest = base->layers[i].digest,
                                 .size = (uint64_t)base->layers[i].size};
        ff_strlcpy(cl.media_type, base->layers[i].media_type, sizeof(cl.media_type));
        rc = stage_layer_add(b, st, &cl, base->layers[i].source_repo, err);
    }
    st->key = base->key;
    return rc;
}

/* Splits an image reference: "name[:tag][@digest]" against our registry.
 * A name without '/' is in library/ (as on Docker Hub); a name whose first
 * component looks like a host must be our registry's. *repo and *ref are
 * malloc'd. */
static int image_ref_split(const struct arch_build *b, const char *image, char **repo,
                           char **ref, struct ff_err *err)
{
    *repo = NULL;
    *ref = NULL;
    const char *name = image;
    const char *slash = strchr(image, '/');
    if (slash != NULL && (memchr(image, '.', (size_t)(slash - image)) != NULL ||
                          memchr(image, ':', (size_t)(slash - image)) != NULL ||
                          strncmp(image, "localhost/", 10) == 0)) {
        size_t host_len = (size_t)(slash - image);
        if (b->o->registry == NULL || strlen(b->o->registry) != host_len ||
            strncmp(image, b->o->registry, host_len) != 0)
            return ff_err_set(err, FF_EINVAL,
                              "\"%s\" names another registry: base images come from %s", image,
                              b->o->registry != NULL ? b->o->registry : "the farm's registry");
        name = slash + 1;
    }
    const char *at = strchr(name, '@');
    const char *last_slash = strrchr(name, '/');
    const char *colon = strrchr(name, ':');
    if (colon != NULL && ((last_slash != NULL && colon < last_slash) || (at != NULL && colon > at)))
        colon = NULL;
    size_t name_len = at != NULL ? (size_t)(at - name) : strlen(name);
    if (colon != NULL && colon < name + name_len)
        name_len = (size_t)(colon - name);
    const char *reference = at != NULL ? at + 1 : colon != NULL ? colon + 1 : "latest";
    size_t ref_len = at != NULL || colon == NULL ? strlen(reference)
                                                 : (size_t)((at != NULL ? at : name + strlen(name)) -
                                                            reference);
    bool bare = memchr(name, '/', name_len) == NULL;
    *repo = ff_asprintf("%s%.*s", bare ? "library/" : "", (int)name_len, name);
    *ref = ff_strndup(reference, ref_len);
    if (*repo == NULL || *ref == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = regclient_repo_check(*repo, err);
    if (rc == 0)
        rc = regclient_reference_check(*ref, err);
    return rc;
}

/* Makes one base layer present in the cache: fetched (digest verified),
 * unpacked (diff_id verified), added. */
static int base_layer_fetch(struct arch_build *b, const char *repo,
                            const struct oci_descriptor *d, const struct ff_digest *diff_id,
                            struct cache_layer *out, struct ff_err *err)
{
    bool found = false;
    int rc = cache_layer_get(b->cache, diff_id, out, &found, err);
    if (rc != 0 || found)
        return rc;
    char *tmp = NULL, *blob = NULL, *dir = NULL;
    int fd = -1;
    rc = cache_tmp_dir(b->cache, "base", &tmp, err);
    if (rc != 0)
        return rc;
    blob = ff_asprintf("%s/blob", tmp);
    dir = ff_asprintf("%s/layer", tmp);
    if (blob == NULL || dir == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto done;
    }
    rc = regclient_blob_fetch(b->reg, repo, &d->digest, d->size, blob, err);
    if (rc == 0 && mkdir(dir, 0755) != 0)
        rc = ff_err_set(err, FF_EIO, "cannot create \"%s\": %s", dir, strerror(errno));
    if (rc == 0 && (fd = open(blob, O_RDONLY | O_CLOEXEC)) < 0)
        rc = ff_err_set(err, FF_EIO, "cannot open \"%s\": %s", blob, strerror(errno));
    if (rc == 0) {
        struct layer_unpack_opts uo = {.diff_id = diff_id, .digest = &d->digest};
        rc = layer_unpack(fd, dir, &uo, NULL, err);
    }
    if (fd >= 0)
        (void)close(fd);
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        out->diff_id = *diff_id;
        out->digest = d->digest;
        out->size = (uint64_t)d->size;
        ff_strlcpy(out->media_type, d->media_type, sizeof(out->media_type));
        rc = cache_layer_add(b->cache, out, dir, blob, err);
    }
done:;
    struct ff_err ignored;
    (void)cache_remove_tree(tmp, &ignored);
    free(tmp);
    free(blob);
    free(dir);
    return rc;
}

/* The base image's config, fetched and checked against the platform. */
static int base_config_fetch(struct arch_build *b, const char *repo,
                             const struct regclient_manifest *m, struct oci_image_config *out,
                             struct ff_err *err)
{
    char *tmp = NULL, *path = NULL, *data = NULL;
    size_t len = 0;
    int rc = cache_tmp_dir(b->cache, "config", &tmp, err);
    if (rc == 0 && (path = ff_asprintf("%s/config", tmp)) == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    if (rc == 0)
        rc = regclient_blob_fetch(b->reg, repo, &m->parsed.config.digest, m->parsed.config.size,
                                  path, err);
    if (rc == 0)
        rc = ff_file_read(path, OCI_CONFIG_MAX, 0, &data, &len, err);
    if (rc == 0)
        rc = oci_config_parse(data, len, out, err);
    if (rc == 0)
        rc = oci_config_platform_check(out, &b->platform, err);
    if (rc == 0 && out->n_diff_ids != m->parsed.n_layers)
        rc = ff_err_set(err, FF_EINVAL, "%s: the config lists %zu layers, the manifest %zu", repo,
                        out->n_diff_ids, m->parsed.n_layers);
    struct ff_err ignored;
    if (tmp != NULL)
        (void)cache_remove_tree(tmp, &ignored);
    free(data);
    free(path);
    free(tmp);
    return rc;
}

/* FROM an image of the registry: resolved to a digest for the platform,
 * every byte verified, layers unpacked into the cache. */
static int base_from_image(struct arch_build *b, struct stage *st, const struct recipe_from *from,
                           struct ff_err *err)
{
    if (b->reg == NULL)
        return ff_err_set(err, FF_EINVAL, "FROM %s needs a registry (--registry)", from->image);
    char *repo = NULL, *ref = NULL;
    struct regclient_manifest m;
    memset(&m, 0, sizeof(m));
    int rc = image_ref_split(b, from->image, &repo, &ref, err);
    if (rc == 0)
        rc = regclient_resolve(b->reg, repo, ref, &b->platform, &m, err);
    if (rc == 0)
        rc = base_config_fetch(b, repo, &m, &st->config, err);
    for (size_t i = 0; rc == 0 && i < m.parsed.n_layers; i++) {
        struct cache_layer cl;
        rc = base_layer_fetch(b, repo, &m.parsed.layers[i], &st->config.diff_ids[i], &cl, err);
        if (rc == 0)
            rc = stage_layer_add(b, st, &cl, repo, err);
    }
    if (rc == 0) {
        char digest[FF_DIGEST_STR_SIZE];
        ff_digest_format(&m.digest, digest);
        say(b, "FROM %s: %s@%s, %zu layers", from->image, repo, digest, st->n_layers);
        memset(&st->key, 0, sizeof(st->key));
        rc = key_next(&st->key, "FROM image", &m.digest, err);
    }
    regclient_manifest_release(&m);
    free(repo);
    free(ref);
    return rc;
}

static int base_from_scratch(struct arch_build *b, struct stage *st, struct ff_err *err)
{
    oci_config_init(&st->config);
    memset(&st->key, 0, sizeof(st->key));
    (void)b;
    return key_next(&st->key, "FROM scratch", NULL, err);
}

/* ---- instructions that change only the config ----------------------- */

static int argv_of(const struct recipe_instr *in, const char *const **argv, size_t *n,
                   const char *shell[3])
{
    if (in->exec_form) {
        *argv = (const char *const *)in->args;
        *n = in->n_args;
        return 0;
    }
    shell[0] = "/bin/sh";
    shell[1] = "-c";
    shell[2] = in->n_args > 0 ? in->args[0] : "";
    *argv = shell;
    *n = 3;
    return 0;
}

/* WORKDIR: relative paths are relative to the current one. */
static int workdir_set(struct stage *st, const char *path, struct ff_err *err)
{
    const char *cur = st->config.working_dir != NULL ? st->config.working_dir : "/";
    char *full = path[0] == '/' ? ff_strndup(path, strlen(path))
                                : ff_asprintf("%s%s%s", cur,
                                              cur[strlen(cur) - 1] == '/' ? "" : "/", path);
    if (full == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = oci_config_string_set(&st->config, "WorkingDir", full, err);
    free(full);
    return rc;
}

static int config_step(struct stage *st, const struct recipe_instr *in, struct ff_err *err)
{
    int rc = 0;
    const char *shell[3];
    const char *const *argv = NULL;
    size_t n = 0;
    switch (in->kind) {
    case RECIPE_ENV:
        for (size_t i = 0; rc == 0 && i < in->n_kvs; i++)
            rc = oci_config_env_set(&st->config, in->kvs[i].key, in->kvs[i].value, err);
        break;
    case RECIPE_LABEL:
        for (size_t i = 0; rc == 0 && i < in->n_kvs; i++)
            rc = oci_config_label_set(&st->config, in->kvs[i].key, in->kvs[i].value, err);
        break;
    case RECIPE_EXPOSE:
        for (size_t i = 0; rc == 0 && i < in->n_args; i++)
            rc = oci_config_port_add(&st->config, in->args[i], err);
        break;
    case RECIPE_CMD:
        (void)argv_of(in, &argv, &n, shell);
        rc = oci_config_argv_set(&st->config, "Cmd", argv, n, err);
        st->cmd_set = true;
        break;
    case RECIPE_ENTRYPOINT:
        (void)argv_of(in, &argv, &n, shell);
        rc = oci_config_argv_set(&st->config, "Entrypoint", argv, n, err);
        /* As Docker: a new ENTRYPOINT drops a CMD inherited from the base. */
        if (rc == 0 && !st->cmd_set) {
            rc = oci_config_argv_set(&st->config, "Cmd", NULL, 0, err);
            st->config.has_cmd = false;
        }
        break;
    case RECIPE_USER:
        rc = oci_config_string_set(&st->config, "User", in->args[0], err);
        break;
    case RECIPE_WORKDIR:
        rc = workdir_set(st, in->args[0], err);
        break;
    default:
        break;
    }
    return rc;
}

/* ---- steps that make layers -------------------------------------------- */

struct step_dirs {
    char *tmp;    /* the step's directory in the cache's tmp/ */
    char *upper;  /* tmp/upper: the layer */
    char *work;   /* tmp/work */
    char *bundle; /* tmp/bundle (RUN) or the mount point (COPY) */
    char *blob;   /* tmp/blob */
};

static void step_dirs_release(struct step_dirs *d)
{
    struct ff_err ignored;
    if (d->tmp != NULL)
        (void)cache_remove_tree(d->tmp, &ignored);
    free(d->tmp);
    free(d->upper);
    free(d->work);
    free(d->bundle);
    free(d->blob);
    memset(d, 0, sizeof(*d));
}

static int step_dirs_make(struct arch_build *b, struct step_dirs *d, bool make_bundle,
                          struct ff_err *err)
{
    memset(d, 0, sizeof(*d));
    int rc = cache_tmp_dir(b->cache, "step", &d->tmp, err);
    if (rc != 0)
        return rc;
    d->upper = ff_asprintf("%s/upper", d->tmp);
    d->work = ff_asprintf("%s/work", d->tmp);
    d->bundle = ff_asprintf("%s/%s", d->tmp, make_bundle ? "rootfs" : "bundle");
    d->blob = ff_asprintf("%s/blob", d->tmp);
    if (d->upper == NULL || d->work == NULL || d->bundle == NULL || d->blob == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    const char *dirs[] = {d->upper, d->work, make_bundle ? d->bundle : NULL};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (dirs[i] != NULL && mkdir(dirs[i], 0755) != 0)
            return ff_err_set(err, FF_EIO, "cannot create \"%s\": %s", dirs[i], strerror(errno));
    }
    return 0;
}

/* Turns a step's upper directory into a layer of the stage (or nothing,
 * when the step changed nothing) and records the step. */
static int step_commit(struct arch_build *b, struct stage *st, struct step_dirs *d,
                       const struct ff_digest *key, const char *created_by, struct ff_err *err)
{
    struct layer_write_opts wo = {
        .compression = b->o->zstd ? LAYER_ZSTD : LAYER_GZIP,
        .clamp_mtime = true,
        .epoch = b->o->epoch,
        .overlay = true,
    };
    struct layer_info info;
    struct cache_step s = {.empty = true};
    int rc = layer_write_file(d->upper, d->blob, &wo, &info, err);
    if (rc == 0 && !info.empty) {
        s.empty = false;
        s.layer.diff_id = info.diff_id;
        s.layer.digest = info.digest;
        s.layer.size = info.size;
        ff_strlcpy(s.layer.media_type, layer_media_type(info.compression),
                   sizeof(s.layer.media_type));
        rc = cache_layer_add(b->cache, &s.layer, d->upper, d->blob, err);
    }
    if (rc == 0)
        rc = cache_step_put(b->cache, key, &s, err);
    if (rc == 0 && !s.empty)
        rc = stage_layer_add(b, st, &s.layer, NULL, err);
    if (rc == 0)
        rc = oci_config_history_add(&st->config, b->created, created_by,
                                    s.empty ? NULL : &s.layer.diff_id, err);
    return rc;
}

/* A cache hit: the step's layer joins the stage without any work. */
static int step_reuse(struct arch_build *b, struct stage *st, const struct cache_step *s,
                      const char *created_by, struct ff_err *err)
{
    int rc = s->empty ? 0 : stage_layer_add(b, st, &s->layer, NULL, err);
    if (rc == 0)
        rc = oci_config_history_add(&st->config, b->created, created_by,
                                    s->empty ? NULL : &s->layer.diff_id, err);
    return rc;
}

/* Looks the key up unless --no-cache; *hit says whether s holds it. */
static int step_lookup(struct arch_build *b, const struct ff_digest *key, struct cache_step *s,
                       bool *hit, struct ff_err *err)
{
    *hit = false;
    if (b->o->no_cache)
        return 0;
    int rc = cache_step_get(b->cache, key, s, hit, err);
    if (rc == FF_EINVAL) {
        /* A damaged record is a miss: the step runs and rewrites it. */
        say(b, "cache: %s", err->msg);
        *hit = false;
        rc = 0;
    }
    return rc;
}

static void run_output(void *arg, enum runc_stream stream, const char *line, size_t len)
{
    struct arch_build *b = arg;
    (void)stream;
    say(b, "  %.*s", (int)len, line);
}

static int run_step(struct arch_build *b, struct stage *st, const struct recipe_instr *in,
                    struct ff_err *err)
{
    char **env = NULL;
    size_t n_env = 0;
    struct ff_digest inputs;
    int rc = recipe_scope_run_env(st->scope, &env, &n_env, err);
    if (rc == 0)
        rc = run_inputs(st, env, n_env, b->o->network, &inputs, err);
    if (rc == 0)
        rc = key_next(&st->key, in->text, &inputs, err);
    struct cache_step s;
    bool hit = false;
    if (rc == 0)
        rc = step_lookup(b, &st->key, &s, &hit, err);
    if (rc == 0 && hit) {
        b->result->steps_cached++;
        recipe_strv_free(env, n_env);
        return step_reuse(b, st, &s, in->text, err);
    }
    struct step_dirs d;
    char **lowers = NULL;
    size_t n_lowers = 0;
    memset(&d, 0, sizeof(d));
    if (rc == 0)
        rc = step_dirs_make(b, &d, false, err);
    if (rc == 0)
        rc = stage_lowers(b, st, &lowers, &n_lowers, err);
    int status = 0;
    if (rc == 0) {
        struct runc_step rs = {
            .lowers = (const char *const *)lowers,
            .n_lowers = n_lowers,
            .upper = d.upper,
            .work = d.work,
            .bundle = d.bundle,
            .shell_form = !in->exec_form,
            .args = (const char *const *)in->args,
            .n_args = in->n_args,
            .env = (const char *const *)env,
            .n_env = n_env,
            .cwd = st->config.working_dir,
            .user = st->config.user,
            .network = b->o->network,
            .timeout_s = b->o->step_timeout_s,
            .memory_limit = b->o->step_memory,
        };
        rc = runc_step_run(&b->runc, &rs, run_output, b, &status, err);
    }
    if (rc == 0 && status != 0)
        rc = ff_err_set(err, FF_EINVAL, "exited with status %d: %s", status,
                        in->n_args > 0 ? in->args[0] : "");
    if (rc == 0)
        rc = step_commit(b, st, &d, &st->key, in->text, err);
    if (rc == 0)
        b->result->steps_run++;
    lowers_free(lowers, n_lowers);
    step_dirs_release(&d);
    recipe_strv_free(env, n_env);
    return rc;
}

/* ADD of a local archive: extracted with the layer code's checks. */
static int extract_archive(void *ctx, int fd, enum context_archive kind, int dest_dirfd,
                           const char *dest_in_root, struct ff_err *err)
{
    (void)ctx;
    if (kind == CONTEXT_ARCHIVE_BZIP2 || kind == CONTEXT_ARCHIVE_XZ)
        return ff_err_set(err, FF_EINVAL, "ADD: %s is a %s archive; ADD extracts tar, gzip and "
                          "zstd archives", dest_in_root, context_archive_name(kind));
    char path[64];
    (void)snprintf(path, sizeof(path), "/proc/self/fd/%d", dest_dirfd);
    return layer_extract_plain(fd, path, NULL, NULL, err);
}

/* --chown as numbers, resolved in the rootfs mounted at root. */
static int chown_resolve(const char *root, const char *spec, struct context_attrs *attrs,
                         struct ff_err *err)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "cannot open \"%s\": %s", root, strerror(errno));
    struct passwd_ids ids;
    memset(&ids, 0, sizeof(ids));
    int rc = passwd_resolve(fd, spec, &ids, err);
    (void)close(fd);
    if (rc == 0) {
        attrs->chown = true;
        attrs->uid = ids.uid;
        attrs->gid = ids.gid;
    }
    passwd_ids_release(&ids);
    return rc;
}

/* Mounts an overlay of st at d->bundle, so that COPY writes land in
 * d->upper. */
static int copy_mount(struct arch_build *b, const struct stage *st, struct step_dirs *d,
                      struct ff_err *err)
{
    char **lowers = NULL;
    size_t n = 0;
    int rc = stage_lowers(b, st, &lowers, &n, err);
    if (rc == 0)
        rc = rootfs_mount(d->bundle, (const char *const *)lowers, n, d->upper, d->work, err);
    lowers_free(lowers, n);
    return rc;
}

/* A read-only view of an earlier stage's rootfs for COPY --from. */
static int from_stage_mount(struct arch_build *b, const struct stage *from, struct step_dirs *d,
                            struct ff_err *err)
{
    int rc = step_dirs_make(b, d, true, err);
    if (rc == 0)
        rc = copy_mount(b, from, d, err);
    return rc;
}

/* A COPY or ADD that missed the cache: the sources copied into an overlay
 * of the stage, whose upper directory becomes the layer. */
static int copy_fresh(struct arch_build *b, struct stage *st, const struct recipe_instr *in,
                      const struct context_sources *srcs, struct context_attrs attrs,
                      struct ff_err *err)
{
    struct step_dirs d;
    int rc = step_dirs_make(b, &d, true, err);
    bool mounted = false;
    if (rc == 0) {
        rc = copy_mount(b, st, &d, err);
        mounted = rc == 0;
    }
    if (rc == 0 && in->chown != NULL)
        rc = chown_resolve(d.bundle, in->chown, &attrs, err);
    if (rc == 0) {
        struct copy_opts co = {
            .workdir = st->config.working_dir,
            .attrs = attrs,
            .extract = in->kind == RECIPE_ADD ? extract_archive : NULL,
            .http = b->http,
            .tmp_dir = d.tmp,
        };
        rc = copy_into(d.bundle, srcs, in->args[in->n_args - 1], &co, err);
    }
    struct ff_err e2;
    if (mounted && rootfs_unmount(d.bundle, &e2) != 0 && rc == 0) {
        *err = e2;
        rc = FF_EIO;
    }
    if (rc == 0)
        rc = step_commit(b, st, &d, &st->key, in->text, err);
    step_dirs_release(&d);
    return rc;
}

/* The root COPY reads from: the context, or for --from an earlier stage's
 * rootfs mounted in from_dirs (*from_root then belongs to the caller). */
static int copy_root(struct arch_build *b, size_t stage_ix, const struct recipe_instr *in,
                     struct step_dirs *from_dirs, struct context_root **from_root,
                     const struct context_root **root, struct ff_err *err)
{
    *root = b->context;
    if (in->from == NULL)
        return 0;
    if (in->from_image || in->from_stage < 0 || (size_t)in->from_stage >= stage_ix)
        return ff_err_set(err, FF_EINVAL, "--from=%s: only an earlier stage can be copied from",
                          in->from);
    int rc = from_stage_mount(b, &b->stages[in->from_stage], from_dirs, err);
    char *what = rc == 0 ? ff_asprintf("stage \"%s\"", in->from) : NULL;
    if (rc == 0 && what == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    if (rc == 0)
        rc = context_root_open(from_dirs->bundle, CONTEXT_ROOT_STAGE, what, NULL, NULL,
                               from_root, err);
    free(what);
    *root = *from_root;
    return rc;
}

static int copy_step(struct arch_build *b, size_t stage_ix, struct stage *st,
                     const struct recipe_instr *in, struct ff_err *err)
{
    struct step_dirs from_dirs;
    memset(&from_dirs, 0, sizeof(from_dirs));
    struct context_root *from_root = NULL;
    const struct context_root *root = NULL;
    struct context_sources *srcs = NULL;
    int rc = copy_root(b, stage_ix, in, &from_dirs, &from_root, &root, err);
    if (rc == 0)
        rc = context_resolve(root, in->kind == RECIPE_ADD ? CONTEXT_ADD : CONTEXT_COPY,
                             (const char *const *)in->args, in->n_args - 1, in->checksum, &srcs,
                             err);
    /* The digest sees --chmod; --chown is in the instruction's text (names
     * can only be resolved in the rootfs, which a cache hit never mounts). */
    struct context_attrs attrs = {.chmod = in->chmod_mode};
    struct ff_digest inputs;
    if (rc == 0)
        rc = context_digest(srcs, &attrs, root == b->context ? b->memo : NULL, &inputs, NULL,
                            err);
    if (rc == 0)
        rc = key_next(&st->key, in->text, &inputs, err);
    struct cache_step s;
    bool hit = false;
    if (rc == 0)
        rc = step_lookup(b, &st->key, &s, &hit, err);
    if (rc == 0 && hit) {
        b->result->steps_cached++;
        rc = step_reuse(b, st, &s, in->text, err);
    } else if (rc == 0) {
        rc = copy_fresh(b, st, in, srcs, attrs, err);
        if (rc == 0)
            b->result->steps_run++;
    }
    context_sources_free(srcs);
    context_root_free(from_root);
    struct ff_err ignored;
    if (from_dirs.bundle != NULL)
        (void)rootfs_unmount(from_dirs.bundle, &ignored);
    step_dirs_release(&from_dirs);
    return rc;
}

/* Puts "<file>:<line>: <INSTRUCTION>: " in front of err's message unless
 * the recipe code did already. */
static int err_at(const struct arch_build *b, struct ff_err *err, int rc, unsigned line,
                  const char *instr)
{
    const char *file = b->recipe->file;
    if (rc == FF_ENOMEM || strncmp(err->msg, file, strlen(file)) == 0)
        return rc;
    /* context.c and fetch.c start their messages with the instruction. */
    char msg[FF_ERR_MSG_MAX];
    const char *m = err->msg;
    size_t n = strlen(instr);
    if (strncmp(m, instr, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        m += n + 2;
    ff_strlcpy(msg, m, sizeof(msg));
    return recipe_err_at(err, rc, file, line, instr, "%s", msg);
}

/* One instruction of a stage: expanded, then applied. Errors get the
 * recipe's file:line and the instruction in front. */
static int stage_step(struct arch_build *b, size_t stage_ix, struct stage *st,
                      const struct recipe_instr *raw, struct ff_err *err)
{
    struct recipe_instr *in = NULL;
    int rc = recipe_scope_step(st->scope, raw, &in, err);
    if (rc != 0)
        return rc;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned before_cached = b->result->steps_cached;
    bool layer_step = in->kind == RECIPE_RUN || in->kind == RECIPE_COPY ||
                      in->kind == RECIPE_ADD;
    if (layer_step)
        say(b, "step %u/%u %s", ++b->step, b->n_steps, in->text);
    else
        b->step++;
    if (in->kind == RECIPE_RUN)
        rc = run_step(b, st, in, err);
    else if (layer_step)
        rc = copy_step(b, stage_ix, st, in, err);
    else {
        rc = key_next(&st->key, in->text, NULL, err);
        if (rc == 0)
            rc = config_step(st, in, err);
        if (rc == 0 && in->kind != RECIPE_ARG)
            rc = oci_config_history_add(&st->config, b->created, in->text, NULL, err);
    }
    if (rc == 0 && layer_step)
        say(b, "step %u/%u %s: %s in %.2fs", b->step, b->n_steps, recipe_kind_name(in->kind),
            b->result->steps_cached > before_cached ? "cached" : "done", seconds_since(&t0));
    if (rc != 0)
        rc = err_at(b, err, rc, in->line, recipe_kind_name(in->kind));
    recipe_instr_free(in);
    return rc;
}

/* A stage's image environment as "NAME=value" strings for its scope. */
static int stage_build(struct arch_build *b, size_t ix, struct ff_err *err)
{
    struct stage *st = &b->stages[ix];
    struct recipe_from *from = NULL;
    int rc = recipe_scope_from(b->global, ix, &from, err);
    const struct recipe_scope *base_scope = NULL;
    if (rc == 0) {
        if (from->scratch)
            rc = base_from_scratch(b, st, err);
        else if (from->base_stage >= 0) {
            rc = base_from_stage(b, st, &b->stages[from->base_stage], err);
            base_scope = b->stages[from->base_stage].scope;
        } else
            rc = base_from_image(b, st, from, err);
        if (rc != 0)
            rc = err_at(b, err, rc, from->line, "FROM");
    }
    if (rc == 0)
        rc = recipe_scope_stage_new(b->global, ix, base_scope,
                                    base_scope != NULL ? NULL
                                                       : (const char *const *)st->config.env,
                                    base_scope != NULL ? 0 : st->config.n_env, &st->scope, err);
    const struct recipe_stage *rs = &b->recipe->stages[ix];
    for (size_t i = 0; rc == 0 && i < rs->n_instrs; i++)
        rc = stage_step(b, ix, st, &rs->instrs[i], err);
    recipe_from_free(from);
    return rc;
}

/* ---- one architecture -------------------------------------------------- */

static int recipe_load(struct arch_build *b, struct ff_err *err)
{
    const char *file = b->o->file;
    char *path = NULL, *text = NULL, *expanded = NULL;
    size_t len = 0, exp_len = 0;
    int rc = 0;
    if (file == NULL) {
        path = ff_asprintf("%s/Dockerfile", b->o->context);
        struct stat st;
        if (path != NULL && lstat(path, &st) != 0) {
            free(path);
            path = ff_asprintf("%s/Dockerfile.template", b->o->context);
            file = "Dockerfile.template";
        } else {
            file = "Dockerfile";
        }
    } else {
        path = ff_asprintf("%s/%s", b->o->context, file);
    }
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = ff_file_read(path, RECIPE_SIZE_MAX, 0, &text, &len, err);
    if (rc == FF_ENOTFOUND)
        rc = ff_err_set(err, FF_ENOTFOUND, "no recipe: %s has no %s", b->o->context,
                        b->o->file != NULL ? b->o->file : "Dockerfile or Dockerfile.template");
    size_t flen = strlen(file);
    bool tmpl = flen >= 9 && strcmp(file + flen - 9, ".template") == 0;
    if (rc == 0 && tmpl)
        rc = recipe_template(text, len, b->arch, b->o->app != NULL ? b->o->app : "", &expanded,
                             &exp_len, err);
    if (rc == 0)
        rc = recipe_parse(tmpl ? expanded : text, tmpl ? exp_len : len, file, &b->recipe, err);
    free(path);
    free(text);
    free(expanded);
    return rc;
}

static int exclude_cb(void *ctx, const char *rel_path, bool is_dir, bool *excluded,
                      bool *walk_anyway, struct ff_err *err)
{
    const struct ignore *ig = ctx;
    *walk_anyway = false;
    int rc = ignore_match(ig, rel_path, excluded, err);
    if (rc == 0 && *excluded && is_dir)
        rc = ignore_dir_may_contain_exceptions(ig, rel_path, walk_anyway, err);
    return rc;
}

/* The digest memo of this context: one per context directory, so that
 * builds of different repositories on one worker do not evict each
 * other's entries. */
static int memo_open(struct arch_build *b, struct ff_err *err)
{
    char *abs = realpath(b->o->context, NULL);
    if (abs == NULL)
        return ff_err_set(err, FF_ENOTFOUND, "context \"%s\": %s", b->o->context,
                          strerror(errno));
    struct ff_digest where;
    int rc = ff_digest_buffer(abs, strlen(abs), &where, err);
    free(abs);
    if (rc != 0)
        return rc;
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(&where, hex);
    char *memo = ff_asprintf("%s/context-%.16s.memo", b->o->cache_dir, hex);
    if (memo == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    rc = context_memo_open(memo, &b->memo, err);
    free(memo);
    return rc;
}

static int context_open(struct arch_build *b, struct ff_err *err)
{
    char *path = ff_asprintf("%s/.dockerignore", b->o->context);
    char *text = NULL;
    size_t len = 0;
    if (path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = ff_file_read(path, IGNORE_SIZE_MAX, 0, &text, &len, err);
    if (rc == FF_ENOTFOUND)
        rc = 0;
    if (rc == 0)
        rc = ignore_parse(text != NULL ? text : "", len, &b->ignore, err);
    if (rc == 0)
        rc = context_root_open(b->o->context, CONTEXT_ROOT_CONTEXT, "the build context",
                               exclude_cb, b->ignore, &b->context, err);
    free(path);
    free(text);
    return rc == 0 ? memo_open(b, err) : rc;
}

static const char *host_arch(void)
{
    struct utsname u;
    if (uname(&u) != 0)
        return "amd64";
    if (strcmp(u.machine, "aarch64") == 0)
        return "arm64";
    if (strncmp(u.machine, "armv7", 5) == 0)
        return "armv7";
    return "amd64";
}

static int arch_setup(struct arch_build *b, struct ff_err *err)
{
    int rc = oci_platform_from_arch(b->arch, &b->platform, err);
    if (rc == 0)
        rc = oci_time_format(b->o->epoch, b->created, err);
    if (rc == 0 && strcmp(b->arch, host_arch()) != 0)
        rc = binfmt_ensure(b->arch, err);
    if (rc == 0)
        rc = recipe_load(b, err);
    if (rc == 0)
        rc = recipe_scope_global_new(b->recipe, b->o->build_args, b->o->n_build_args, b->arch,
                                     host_arch(), &b->global, err);
    if (rc == 0)
        rc = context_open(b, err);
    if (rc == 0) {
        b->n_stages = b->recipe->n_stages;
        b->stages = calloc(b->n_stages, sizeof(*b->stages));
        if (b->stages == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        for (size_t i = 0; i < b->recipe->n_stages; i++)
            b->n_steps += (unsigned)b->recipe->stages[i].n_instrs;
    }
    if (rc == 0)
        rc = cache_tmp_dir(b->cache, "empty", &b->empty_dir, err);
    return rc;
}

static void arch_release(struct arch_build *b)
{
    for (size_t i = 0; b->stages != NULL && i < b->n_stages; i++)
        stage_release(&b->stages[i]);
    free(b->stages);
    recipe_scope_free(b->global);
    recipe_free(b->recipe);
    context_root_free(b->context);
    ignore_free(b->ignore);
    context_memo_free(b->memo);
    free(b->empty_dir);
}

/* The last stage as an image: config and manifest. */
static int arch_image(struct arch_build *b, struct build_image *img, struct ff_err *err)
{
    struct stage *st = &b->stages[b->n_stages - 1];
    struct oci_image_config *c = &st->config;
    int rc = oci_config_string_set(c, "architecture", b->platform.architecture, err);
    if (rc == 0)
        rc = oci_config_string_set(c, "os", b->platform.os, err);
    if (rc == 0)
        rc = oci_config_string_set(c, "variant", b->platform.variant, err);
    if (rc == 0)
        rc = oci_config_string_set(c, "created", b->created, err);
    if (rc == 0)
        rc = oci_config_build(c, &img->config, &img->config_len, err);
    if (rc == 0)
        rc = ff_digest_buffer(img->config, img->config_len, &img->config_digest, err);
    if (rc != 0)
        return rc;
    struct oci_descriptor *layers = calloc(st->n_layers + 1, sizeof(*layers));
    if (layers == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    for (size_t i = 0; i < st->n_layers; i++) {
        layers[i].media_type = st->layers[i].media_type;
        layers[i].digest = st->layers[i].digest;
        layers[i].size = st->layers[i].size;
    }
    struct oci_descriptor config = {.media_type = OCI_MT_CONFIG,
                                    .digest = img->config_digest,
                                    .size = (int64_t)img->config_len};
    rc = oci_manifest_build(&config, layers, st->n_layers, NULL, 0, &img->manifest,
                                &img->manifest_len, err);
    free(layers);
    if (rc == 0)
        rc = ff_digest_buffer(img->manifest, img->manifest_len, &img->manifest_digest, err);
    if (rc == 0) {
        img->platform = b->platform;
        /* The image takes the layers over from the stage. */
        img->layers = st->layers;
        img->n_layers = st->n_layers;
        st->layers = NULL;
        st->n_layers = 0;
    }
    return rc;
}

static int arch_build_run(struct arch_build *b, struct build_image *img, struct ff_err *err)
{
    int rc = arch_setup(b, err);
    for (size_t i = 0; rc == 0 && i < b->n_stages; i++)
        rc = stage_build(b, i, err);
    if (rc == 0)
        rc = arch_image(b, img, err);
    if (rc == 0) {
        char *unused = NULL;
        if (recipe_scope_unused_build_args(b->global, &unused, err) == 0 && unused != NULL)
            say(b, "warning: build args not consumed: %s", unused);
        free(unused);
        if (context_memo_save(b->memo, err) != 0)
            say(b, "warning: %s", err->msg);
    }
    return rc;
}

static void image_release(struct build_image *img)
{
    for (size_t i = 0; i < img->n_layers; i++)
        layer_release(&img->layers[i]);
    free(img->layers);
    free(img->config);
    free(img->manifest);
    memset(img, 0, sizeof(*img));
}

/* ---- the whole build --------------------------------------------------- */

static int build_check(const struct build_opts *o, struct ff_err *err)
{
    if (o->context == NULL || o->cache_dir == NULL)
        return ff_err_set(err, FF_EINVAL, "a context directory and a cache directory are needed");
    if (o->n_archs == 0 || o->n_archs > BUILD_ARCHS_MAX)
        return ff_err_set(err, FF_EINVAL, "give 1 to %d architectures", BUILD_ARCHS_MAX);
    for (size_t i = 0; i < o->n_archs; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(o->archs[i], o->archs[j]) == 0)
                return ff_err_set(err, FF_EINVAL, "architecture %s given twice", o->archs[i]);
        }
    }
    if (o->push_repo == NULL && o->layout_dir == NULL)
        return ff_err_set(err, FF_EINVAL, "nowhere to put the image: --push or --oci-layout");
    if (o->push_repo != NULL && o->registry == NULL)
        return ff_err_set(err, FF_EINVAL, "--push needs a registry");
    return 0;
}

static int clients_new(const struct build_opts *o, struct regclient **reg,
                       struct ff_http_client **http, struct ff_err *err)
{
    int rc = 0;
    if (o->registry != NULL)
        rc = regclient_new(reg, o->registry, o->ca_file, o->user, o->secret, err);
    struct ff_http_client_config hc = {
        .connect_timeout_ms = 30000,
        .low_speed_limit = 1,
        .low_speed_time_s = 60,
        .max_retries = 2,
        .retry_base_ms = 500,
        .retry_max_ms = 5000,
        .retry_after_max_ms = 30000,
        .follow_redirects = true,
    };
    if (rc == 0)
        rc = ff_http_client_new(&hc, http, err);
    return rc;
}

static int publish(const struct build_opts *o, struct regclient *reg, struct cache *cache,
                   const struct build_image *imgs, size_t n, struct build_result *out,
                   struct ff_err *err)
{
    int rc = 0;
    if (o->layout_dir != NULL)
        rc = publish_layout(o->layout_dir, o->layout_tag != NULL ? o->layout_tag : "latest", imgs,
                            n, &out->digest, err);
    if (rc == 0 && o->push_repo != NULL) {
        char *tmp = NULL;
        rc = cache_tmp_dir(cache, "push", &tmp, err);
        if (rc == 0)
            rc = publish_push(reg, o->push_repo, o->push_tag != NULL ? o->push_tag : "latest",
                              imgs, n, tmp, &out->digest, err);
        struct ff_err ignored;
        if (tmp != NULL)
            (void)cache_remove_tree(tmp, &ignored);
        free(tmp);
    }
    return rc;
}

int build_run(const struct build_opts *o, struct build_result *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = build_check(o, err);
    if (rc != 0)
        return rc;
    struct cache *cache = NULL;
    struct regclient *reg = NULL;
    struct ff_http_client *http = NULL;
    struct build_image imgs[BUILD_ARCHS_MAX];
    memset(imgs, 0, sizeof(imgs));
    char *runc_root = ff_asprintf("%s/runc", o->cache_dir);
    rc = runc_root == NULL ? ff_err_set(err, FF_ENOMEM, "out of memory")
                           : cache_open(o->cache_dir, o->cache_max_bytes, &cache, err);
    struct runc_opts runc = {.state_root = runc_root};
    if (rc == 0)
        rc = runc_reap(&runc, err);
    if (rc == 0)
        rc = clients_new(o, &reg, &http, err);
    for (size_t i = 0; rc == 0 && i < o->n_archs; i++) {
        struct arch_build b = {.o = o,
                               .arch = o->archs[i],
                               .cache = cache,
                               .reg = reg,
                               .http = http,
                               .runc = runc,
                               .result = out};
        rc = arch_build_run(&b, &imgs[i], err);
        if (rc != 0 && o->n_archs > 1)
            (void)ff_err_wrap(err, "%s", o->archs[i]);
        arch_release(&b);
    }
    if (rc == 0)
        rc = publish(o, reg, cache, imgs, o->n_archs, out, err);
    if (rc == 0) {
        out->is_index = o->n_archs > 1;
        struct ff_err e2;
        if (cache_evict(cache, NULL, &e2) != 0 && o->progress != NULL)
            o->progress(o->progress_ctx, e2.msg);
    }
    for (size_t i = 0; i < BUILD_ARCHS_MAX; i++)
        image_release(&imgs[i]);
    ff_http_client_free(http);
    regclient_free(reg);
    cache_close(cache);
    free(runc_root);
    return rc;
}
