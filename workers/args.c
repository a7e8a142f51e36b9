/* `ff-worker build` options: one pass collects the words (rejecting
 * unknown and doubled options), a second fills build_opts from them and
 * from the environment, checking each value before anything is built. */
#include "worker.h"

#include "ff_secret.h"
#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

/* Digits of the largest uint64_t, 18446744073709551615. */
#define UINT64_DIGITS_MAX 20

enum opt_id {
    OPT_ARCH,
    OPT_FILE,
    OPT_BUILD_ARG,
    OPT_APP,
    OPT_NO_CACHE,
    OPT_REGISTRY,
    OPT_CREDS,
    OPT_CA,
    OPT_PUSH,
    OPT_OCI_LAYOUT,
    OPT_CACHE,
    OPT_CACHE_MAX,
    OPT_EPOCH,
    OPT_ZSTD,
    OPT_NETWORK,
    OPT_STEP_TIMEOUT,
    OPT_STEP_MEMORY,
    OPT_COUNT
};

struct opt_def {
    const char *name;
    bool takes_value;
    bool repeats; /* handled as it comes (--arch, --build-arg) */
};

static const struct opt_def opt_defs[OPT_COUNT] = {
    [OPT_ARCH] = {"--arch", true, true},
    [OPT_FILE] = {"--file", true, false},
    [OPT_BUILD_ARG] = {"--build-arg", true, true},
    [OPT_APP] = {"--app", true, false},
    [OPT_NO_CACHE] = {"--no-cache", false, false},
    [OPT_REGISTRY] = {"--registry", true, false},
    [OPT_CREDS] = {"--creds", true, false},
    [OPT_CA] = {"--ca", true, false},
    [OPT_PUSH] = {"--push", true, false},
    [OPT_OCI_LAYOUT] = {"--oci-layout", true, false},
    [OPT_CACHE] = {"--cache", true, false},
    [OPT_CACHE_MAX] = {"--cache-max", true, false},
    [OPT_EPOCH] = {"--epoch", true, false},
    [OPT_ZSTD] = {"--zstd", false, false},
    [OPT_NETWORK] = {"--network", false, false},
    [OPT_STEP_TIMEOUT] = {"--step-timeout", true, false},
    [OPT_STEP_MEMORY] = {"--step-memory", true, false},
};

/* The architectures a worker builds for; opts.archs points at these. */
static const char *const known_archs[] = {"amd64", "arm64", "armv7"};

const char build_args_usage[] =
    "usage: ff-worker build CONTEXT --arch A [--arch A]... (--push REPO:TAG | --oci-layout "
    "DIR[:TAG])\n"
    "                       [options]\n"
    "\n"
    "Builds the Dockerfile (or Dockerfile.template) in the directory CONTEXT for each\n"
    "architecture, then pushes the image (an image index for several architectures)\n"
    "and/or writes it as an OCI image layout. Progress goes to standard error; the\n"
    "last line on standard output is the image's digest.\n"
    "\n"
    "  --arch A               amd64, arm64 or armv7; repeat (or A,B) for a multi-arch image\n"
    "  --file F               the recipe, relative to CONTEXT (default: Dockerfile, else\n"
    "                         Dockerfile.template)\n"
    "  --build-arg K=V        set the recipe's ARG K (repeatable)\n"
    "  --app NAME             what %%FF_APP%% of a template becomes\n"
    "  --no-cache             run every step (results are still cached)\n"
    "  --registry HOST:PORT   where FROM images come from and --push goes to\n"
    "                         (default: $FF_REGISTRY)\n"
    "  --creds USER:SECRET    registry credentials (default: $FF_ADMIN_USER and\n"
    "                         $FF_ADMIN_TOKEN; the environment keeps the secret out of ps)\n"
    "  --ca FILE              CA certificate of the registry (default: $FF_CA, else the\n"
    "                         system's)\n"
    "  --push REPO:TAG        push the result to REPO:TAG on the registry\n"
    "  --oci-layout DIR[:TAG] write the result to an OCI image layout (tag: latest)\n"
    "  --cache DIR            the build cache (default: $FF_WORKER_CACHE, else\n"
    "                         " ARGS_CACHE_DIR_DEFAULT ")\n"
    "  --cache-max SIZE       evict least recently used layers above SIZE (K, M, G, T;\n"
    "                         default: no bound)\n"
    "  --epoch N              SOURCE_DATE_EPOCH: image times and the file time clamp\n"
    "                         (default: $SOURCE_DATE_EPOCH, else 0)\n"
    "  --zstd                 zstd layers instead of gzip\n"
    "  --network              RUN steps share the host's network\n"
    "  --step-timeout S       time limit of each RUN step in seconds (default: 3600)\n"
    "  --step-memory SIZE     memory limit of each RUN step (default: 4G)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 built, 1 the build failed, 2 usage error.\n";

/* What the first pass gathered. */
struct words {
    const char *vals[OPT_COUNT];
    const char *context;
};

static void quote(const char *s, char out[FF_STR_QUOTE_SIZE])
{
    ff_str_quote(s, strlen(s), out);
}

static int arch_add(struct build_args *out, const char *name, size_t len, struct ff_err *err)
{
    const char *arch = NULL;
    for (size_t i = 0; i < sizeof(known_archs) / sizeof(known_archs[0]); i++) {
        if (strlen(known_archs[i]) == len && strncmp(known_archs[i], name, len) == 0)
            arch = known_archs[i];
    }
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(name, len, q);
    if (arch == NULL)
        return ff_err_set(err, FF_EINVAL,
                          "option \"--arch\": unknown architecture \"%s\", expected amd64, "
                          "arm64 or armv7",
                          q);
    for (size_t i = 0; i < out->opts.n_archs; i++) {
        if (out->opts.archs[i] == arch)
            return ff_err_set(err, FF_EINVAL, "option \"--arch\": \"%s\" given twice", q);
    }
    if (out->opts.n_archs == BUILD_ARCHS_MAX)
        return ff_err_set(err, FF_EINVAL, "option \"--arch\": more than %d architectures",
                          BUILD_ARCHS_MAX);
    out->opts.archs[out->opts.n_archs++] = arch;
    return 0;
}

/* --arch A or --arch A,B,C. */
static int arch_list_add(struct build_args *out, const char *value, struct ff_err *err)
{
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        int rc = arch_add(out, p, len, err);
        if (rc != 0 || comma == NULL)
            return rc;
        p = comma + 1;
    }
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* --build-arg NAME=value: NAME a shell identifier, each NAME once. */
static int build_arg_add(struct build_args *out, const char *value, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    const char *eq = strchr(value, '=');
    size_t len = eq != NULL ? (size_t)(eq - value) : strlen(value);
    ff_str_quote(value, len, q);
    bool ok = eq != NULL && len > 0;
    for (size_t i = 0; ok && i < len; i++)
        ok = name_char(value[i], i == 0);
    if (!ok)
        return ff_err_set(err, FF_EINVAL,
                          "option \"--build-arg\": \"%s\" is not NAME=VALUE, expected NAME of "
                          "[A-Za-z_][A-Za-z0-9_]* then '='",
                          q);
    for (size_t i = 0; i < out->opts.n_build_args; i++) {
        if (strncmp(out->build_arg_v[i], value, len + 1) == 0)
            return ff_err_set(err, FF_EINVAL, "option \"--build-arg\": \"%s\" given twice", q);
    }
    if (out->opts.n_build_args == BUILD_ARGS_MAX)
        return ff_err_set(err, FF_EINVAL, "option \"--build-arg\": more than %d values",
                          BUILD_ARGS_MAX);
    out->build_arg_v[out->opts.n_build_args++] = value;
    return 0;
}

static int opt_find(const char *arg, size_t len)
{
    for (int i = 0; i < OPT_COUNT; i++) {
        if (strlen(opt_defs[i].name) == len && strncmp(opt_defs[i].name, arg, len) == 0)
            return i;
    }
    return -1;
}

/* Takes the option at argv[*i] (and its value), advancing *i. */
static int word_option(int argc, char *const *argv, int *i, struct words *w,
                       struct build_args *out, struct ff_err *err)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    int k = ff_str_has_prefix(arg, "--") ? opt_find(arg, name_len) : -1;
    if (k < 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(arg, name_len, q);
        return ff_err_set(err, FF_EINVAL, "unknown option \"%s\" (see ff-worker build --help)",
                          q);
    }
    const struct opt_def *d = &opt_defs[k];
    const char *value = "";
    if (!d->takes_value) {
        if (eq != NULL)
            return ff_err_set(err, FF_EINVAL, "option \"%s\" takes no value", d->name);
    } else if (eq != NULL) {
        value = eq + 1;
    } else if (*i + 1 < argc) {
        value = argv[++*i];
    } else {
        return ff_err_set(err, FF_EINVAL, "option \"%s\" needs a value", d->name);
    }
    ++*i;
    if (k == OPT_ARCH)
        return arch_list_add(out, value, err);
    if (k == OPT_BUILD_ARG)
        return build_arg_add(out, value, err);
    if (w->vals[k] != NULL)
        return ff_err_set(err, FF_EINVAL, "option \"%s\" given twice", d->name);
    if (d->takes_value && value[0] == '\0')
        return ff_err_set(err, FF_EINVAL, "option \"%s\" needs a value, got an empty one",
                          d->name);
    w->vals[k] = value;
    return 0;
}

static int words_collect(int argc, char *const *argv, struct words *w, struct build_args *out,
                         struct ff_err *err)
{
    bool options_done = false;
    int i = 0;
    while (i < argc) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            i++;
        } else if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            int rc = word_option(argc, argv, &i, w, out, err);
            if (rc != 0)
                return rc;
        } else if (w->context != NULL) {
            char q[FF_STR_QUOTE_SIZE];
            quote(arg, q);
            return ff_err_set(err, FF_EINVAL,
                              "unexpected operand \"%s\": one context directory only", q);
        } else {
            w->context = arg;
            i++;
        }
    }
    return 0;
}

static bool help_asked(int argc, char *const *argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* The power of two a size suffix stands for; 0 for no suffix we know. */
static unsigned unit_shift(char c)
{
    switch (c) {
    case 'k':
    case 'K':
        return 10;
    case 'm':
    case 'M':
        return 20;
    case 'g':
    case 'G':
        return 30;
    case 't':
    case 'T':
        return 40;
    default:
        return 0;
    }
}

int build_args_size_parse(const char *s, uint64_t max, uint64_t *out)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0)
        return FF_EINVAL;
    if (digits > UINT64_DIGITS_MAX)
        return FF_ERANGE;
    const char *suffix = s + digits;
    unsigned shift = 0;
    if (suffix[0] != '\0') {
        shift = unit_shift(suffix[0]);
        if (shift == 0 || (suffix[1] != '\0' && strcmp(suffix + 1, "iB") != 0))
            return FF_EINVAL;
    }
    char num[UINT64_DIGITS_MAX + 1];
    memcpy(num, s, digits);
    num[digits] = '\0';
    uint64_t n = 0;
    int rc = ff_parse_u64(num, max >> shift, &n);
    if (rc != 0)
        return rc;
    *out = n << shift;
    return 0;
}

/* The message of --step-memory spells its minimum. */
_Static_assert(RUNC_MEMORY_MIN == (UINT64_C(4) << 20), "--step-memory message says 4M");

/* min_text is min as a size, for the message. */
static int size_value(const char *opt, const char *value, uint64_t min, const char *min_text,
                      uint64_t *out, struct ff_err *err)
{
    int rc = build_args_size_parse(value, ARGS_SIZE_MAX, out);
    if (rc == 0 && *out >= min)
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    quote(value, q);
    if (rc == FF_EINVAL)
        return ff_err_set(err, FF_EINVAL,
                          "option \"%s\": \"%s\" is not a size, expected digits with an "
                          "optional K, M, G or T (KiB, MiB, GiB, TiB)",
                          opt, q);
    return ff_err_set(err, FF_EINVAL,
                      "option \"%s\": \"%s\" is out of range, expected %s to 1024T", opt, q,
                      min_text);
}

/* Prefixes err with where a bad value came from: an option or a variable. */
static int from_wrap(struct ff_err *err, const char *from)
{
    if (ff_str_has_prefix(from, "--"))
        return ff_err_wrap(err, "option \"%s\"", from);
    return ff_err_wrap(err, "%s", from);
}

static int epoch_value(const char *value, const char *from, int64_t *out, struct ff_err *err)
{
    if (ff_parse_i64(value, 0, ARGS_EPOCH_MAX, out) == 0)
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    quote(value, q);
    (void)ff_err_set(err, FF_EINVAL,
                     "\"%s\" is not a time, expected seconds since 1970 in 0..%lld", q,
                     (long long)ARGS_EPOCH_MAX);
    return from_wrap(err, from);
}

static int timeout_value(const char *value, unsigned *out, struct ff_err *err)
{
    uint64_t n = 0;
    if (ff_parse_u64(value, RUNC_TIMEOUT_MAX_S, &n) == 0 && n > 0) {
        *out = (unsigned)n;
        return 0;
    }
    char q[FF_STR_QUOTE_SIZE];
    quote(value, q);
    return ff_err_set(err, FF_EINVAL,
                      "option \"--step-timeout\": \"%s\" is not a number of seconds in 1..%u",
                      q, RUNC_TIMEOUT_MAX_S);
}

/* HOST[:PORT] as regclient takes it: no scheme, no path. */
static int registry_value(const char *value, const char *from, struct ff_err *err)
{
    size_t n = strlen(value);
    bool ok = n > 0 && n <= 255 && strspn(value,
                                          "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") == n;
    if (ok)
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    quote(value, q);
    (void)ff_err_set(err, FF_EINVAL, "\"%s\" is not a registry, expected HOST:PORT", q);
    return from_wrap(err, from);
}

/* Splits USER:SECRET into owned copies. The secret is never quoted. */
static int creds_split(const char *value, const char *from, struct build_args *out,
                       struct ff_err *err)
{
    const char *colon = strchr(value, ':');
    if (colon == NULL || colon == value || colon[1] == '\0')
        return ff_err_set(err, FF_EINVAL, "%s: expected USER:SECRET, both non-empty", from);
    out->user = ff_strndup(value, (size_t)(colon - value));
    out->secret = ff_strndup(colon + 1, strlen(colon + 1));
    if (out->user == NULL || out->secret == NULL)
        return ff_err_set(err, FF_ENOMEM, "%s: out of memory", from);
    return 0;
}

static int creds_from_env(args_getenv_fn getenv_fn, void *env_ctx, struct build_args *out,
                          struct ff_err *err)
{
    const char *user = getenv_fn(env_ctx, "FF_ADMIN_USER");
    const char *token = getenv_fn(env_ctx, "FF_ADMIN_TOKEN");
    bool has_user = user != NULL && user[0] != '\0';
    bool has_token = token != NULL && token[0] != '\0';
    if (!has_user && !has_token)
        return 0;
    if (!has_user || !has_token)
        return ff_err_set(err, FF_EINVAL,
                          "FF_ADMIN_USER and FF_ADMIN_TOKEN must be set together "
                          "(only %s is), or give --creds",
                          has_user ? "FF_ADMIN_USER" : "FF_ADMIN_TOKEN");
    out->user = ff_strndup(user, strlen(user));
    out->secret = ff_strndup(token, strlen(token));
    if (out->user == NULL || out->secret == NULL)
        return ff_err_set(err, FF_ENOMEM, "credentials: out of memory");
    return 0;
}

/* --push REPO:TAG: a tag is required (pushing by digest makes no sense
 * for an image not yet built). */
static int push_value(const char *value, struct build_args *out, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    quote(value, q);
    const char *colon = strrchr(value, ':');
    const char *slash = strrchr(value, '/');
    if (strchr(value, '@') != NULL || colon == NULL || (slash != NULL && slash > colon))
        return ff_err_set(err, FF_EINVAL,
                          "option \"--push\": \"%s\" is not REPO:TAG (the registry comes from "
                          "--registry)",
                          q);
    out->push_repo = ff_strndup(value, (size_t)(colon - value));
    if (out->push_repo == NULL)
        return ff_err_set(err, FF_ENOMEM, "option \"--push\": out of memory");
    out->opts.push_tag = colon + 1;
    int rc = regclient_repo_check(out->push_repo, err);
    if (rc == 0)
        rc = regclient_reference_check(out->opts.push_tag, err);
    if (rc != 0)
        return ff_err_wrap(err, "option \"--push\"");
    out->opts.push_repo = out->push_repo;
    return 0;
}

/* --oci-layout DIR[:TAG], split at the last ':' when a '/' does not
 * follow it, as skopeo's oci:DIR:TAG is. */
static int layout_value(const char *value, struct build_args *out, struct ff_err *err)
{
    const char *colon = strrchr(value, ':');
    if (colon != NULL && strchr(colon, '/') != NULL)
        colon = NULL;
    size_t dir_len = colon != NULL ? (size_t)(colon - value) : strlen(value);
    const char *tag = colon != NULL ? colon + 1 : ARGS_LAYOUT_TAG_DEFAULT;
    if (dir_len == 0) {
        char q[FF_STR_QUOTE_SIZE];
        quote(value, q);
        return ff_err_set(err, FF_EINVAL, "option \"--oci-layout\": \"%s\" has no directory, "
                          "expected DIR[:TAG]", q);
    }
    if (regclient_reference_check(tag, err) != 0)
        return ff_err_wrap(err, "option \"--oci-layout\"");
    out->layout_dir = ff_strndup(value, dir_len);
    out->layout_tag = ff_strndup(tag, strlen(tag));
    if (out->layout_dir == NULL || out->layout_tag == NULL)
        return ff_err_set(err, FF_ENOMEM, "option \"--oci-layout\": out of memory");
    out->opts.layout_dir = out->layout_dir;
    out->opts.layout_tag = out->layout_tag;
    return 0;
}

static int app_value(const char *value, struct ff_err *err)
{
    size_t n = strlen(value);
    bool ok = n <= RECIPE_APP_MAX &&
              strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") ==
                  n;
    if (ok)
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    quote(value, q);
    return ff_err_set(err, FF_EINVAL,
                      "option \"--app\": \"%s\" is not an app name, expected 1 to %d of "
                      "[A-Za-z0-9._/-]",
                      q, RECIPE_APP_MAX);
}

/* The value of option k, else of the environment variable var (NULL: none);
 * *from names where it came from, for messages. */
static const char *value_or_env(const struct words *w, enum opt_id k, const char *var,
                                args_getenv_fn getenv_fn, void *env_ctx, const char **from)
{
    *from = opt_defs[k].name;
    if (w->vals[k] != NULL || var == NULL)
        return w->vals[k];
    const char *v = getenv_fn(env_ctx, var);
    *from = var;
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The registry, its CA and credentials. */
static int apply_registry(const struct words *w, args_getenv_fn getenv_fn, void *env_ctx,
                          struct build_args *out, struct ff_err *err)
{
    const char *from = NULL;
    const char *reg = value_or_env(w, OPT_REGISTRY, "FF_REGISTRY", getenv_fn, env_ctx, &from);
    if (reg != NULL) {
        int rc = registry_value(reg, from, err);
        if (rc != 0)
            return rc;
    }
    out->opts.registry = reg;
    out->opts.ca_file = value_or_env(w, OPT_CA, "FF_CA", getenv_fn, env_ctx, &from);
    int rc = w->vals[OPT_CREDS] != NULL
                 ? creds_split(w->vals[OPT_CREDS], "option \"--creds\"", out, err)
                 : creds_from_env(getenv_fn, env_ctx, out, err);
    if (rc != 0)
        return rc;
    out->opts.user = out->user;
    out->opts.secret = out->secret;
    return 0;
}

/* Where the result goes. */
static int apply_outputs(const struct words *w, struct build_args *out, struct ff_err *err)
{
    if (w->vals[OPT_PUSH] == NULL && w->vals[OPT_OCI_LAYOUT] == NULL)
        return ff_err_set(err, FF_EINVAL,
                          "nothing to do with the image: give --push REPO:TAG and/or "
                          "--oci-layout DIR[:TAG]");
    if (w->vals[OPT_PUSH] != NULL) {
        int rc = push_value(w->vals[OPT_PUSH], out, err);
        if (rc != 0)
            return rc;
        if (out->opts.registry == NULL)
            return ff_err_set(err, FF_EINVAL,
                              "option \"--push\" needs a registry: give --registry HOST:PORT "
                              "or set FF_REGISTRY");
    }
    return w->vals[OPT_OCI_LAYOUT] != NULL ? layout_value(w->vals[OPT_OCI_LAYOUT], out, err) : 0;
}

/* Limits, times and the cache. */
static int apply_numbers(const struct words *w, args_getenv_fn getenv_fn, void *env_ctx,
                         struct build_args *out, struct ff_err *err)
{
    struct build_opts *o = &out->opts;
    const char *from = NULL;
    const char *epoch = value_or_env(w, OPT_EPOCH, "SOURCE_DATE_EPOCH", getenv_fn, env_ctx,
                                     &from);
    int rc = epoch != NULL ? epoch_value(epoch, from, &o->epoch, err) : 0;
    if (rc == 0 && w->vals[OPT_CACHE_MAX] != NULL)
        rc = size_value("--cache-max", w->vals[OPT_CACHE_MAX], 0, "0", &o->cache_max_bytes,
                        err);
    if (rc == 0 && w->vals[OPT_STEP_MEMORY] != NULL)
        rc = size_value("--step-memory", w->vals[OPT_STEP_MEMORY], RUNC_MEMORY_MIN, "4M",
                        &o->step_memory, err);
    if (rc == 0 && w->vals[OPT_STEP_TIMEOUT] != NULL)
        rc = timeout_value(w->vals[OPT_STEP_TIMEOUT], &o->step_timeout_s, err);
    if (rc != 0)
        return rc;
    o->cache_dir = value_or_env(w, OPT_CACHE, "FF_WORKER_CACHE", getenv_fn, env_ctx, &from);
    if (o->cache_dir == NULL)
        o->cache_dir = ARGS_CACHE_DIR_DEFAULT;
    return 0;
}

static int apply(const struct words *w, args_getenv_fn getenv_fn, void *env_ctx,
                 struct build_args *out, struct ff_err *err)
{
    struct build_opts *o = &out->opts;
    if (w->context == NULL || w->context[0] == '\0')
        return ff_err_set(err, FF_EINVAL, "the context directory is missing "
                          "(ff-worker build CONTEXT --arch A ...)");
    if (o->n_archs == 0)
        return ff_err_set(err, FF_EINVAL, "option \"--arch\" is required: amd64, arm64 or armv7");
    o->context = w->context;
    o->file = w->vals[OPT_FILE];
    o->app = w->vals[OPT_APP];
    if (o->app != NULL && app_value(o->app, err) != 0)
        return FF_EINVAL;
    o->build_args = out->build_arg_v;
    o->no_cache = w->vals[OPT_NO_CACHE] != NULL;
    o->zstd = w->vals[OPT_ZSTD] != NULL;
    o->network = w->vals[OPT_NETWORK] != NULL;
    int rc = apply_registry(w, getenv_fn, env_ctx, out, err);
    if (rc == 0)
        rc = apply_outputs(w, out, err);
    if (rc == 0)
        rc = apply_numbers(w, getenv_fn, env_ctx, out, err);
    return rc;
}

int build_args_parse(int argc, char *const *argv, args_getenv_fn getenv_fn, void *env_ctx,
                     struct build_args *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (help_asked(argc, argv)) {
        out->help = true;
        return 0;
    }
    struct words w;
    memset(&w, 0, sizeof(w));
    int rc = words_collect(argc, argv, &w, out, err);
    return rc != 0 ? rc : apply(&w, getenv_fn, env_ctx, out, err);
}

void build_args_release(struct build_args *out)
{
    if (out == NULL)
        return;
    free(out->user);
    ff_secret_free(out->secret);
    free(out->push_repo);
    free(out->layout_dir);
    free(out->layout_tag);
    memset(out, 0, sizeof(*out));
}

static void secret_wipe(char *value)
{
    char *colon = strchr(value, ':');
    if (colon != NULL)
        ff_secret_wipe(colon + 1, strlen(colon + 1));
}

void build_args_wipe_secret(int argc, char **argv)
{
    static const char opt[] = "--creds";
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], opt) == 0 && i + 1 < argc)
            secret_wipe(argv[++i]);
        else if (strncmp(argv[i], opt, sizeof(opt) - 1) == 0 && argv[i][sizeof(opt) - 1] == '=')
            secret_wipe(argv[i] + sizeof(opt));
    }
}
