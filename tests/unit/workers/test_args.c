#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The end of a variadic word list: a null pointer of the type read. */
#define END ((char *)NULL)
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define WORDS_MAX 600

/* A fake environment: NAME=value strings, NULL-terminated. */
struct env {
    const char *const *vars;
};

static const char *env_get(void *ctx, const char *name)
{
    const struct env *e = ctx;
    size_t n = strlen(name);
    for (const char *const *v = e->vars; v != NULL && *v != NULL; v++) {
        if (strncmp(*v, name, n) == 0 && (*v)[n] == '=')
            return *v + n + 1;
    }
    return NULL;
}

static const char *const no_vars[] = {NULL};
static struct env empty_env = {no_vars};

static int parse_v(struct build_args *a, struct ff_err *err, struct env *env, char **words,
                   int n)
{
    ff_err_clear(err);
    return build_args_parse(n, words, env_get, env, a, err);
}

/* Parses the NULL-terminated words in env; a is released by the caller. */
static int parse_env(struct build_args *a, struct ff_err *err, struct env *env, ...)
{
    char *words[WORDS_MAX];
    int n = 0;
    va_list ap;
    va_start(ap, env);
    for (char *w = va_arg(ap, char *); w != NULL; w = va_arg(ap, char *))
        words[n++] = w;
    va_end(ap);
    return parse_v(a, err, env, words, n);
}

#define parse(a, err, ...) parse_env((a), (err), &empty_env, __VA_ARGS__)

static void expect_usage(int rc, const struct ff_err *err, const char *needle)
{
    assert_int_equal(rc, FF_EINVAL);
    if (strstr(err->msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

/* Parses a minimal valid command plus one extra option and value (value
 * may be NULL for a flag) and expects a usage error mentioning needle. */
static void expect_bad(const char *opt, const char *value, const char *needle)
{
    struct build_args a;
    struct ff_err err;
    int rc = value != NULL
                 ? parse(&a, &err, "ctx", "--arch", "amd64", "--oci-layout", "out", (char *)opt,
                         (char *)value, END)
                 : parse(&a, &err, "ctx", "--arch", "amd64", "--oci-layout", "out", (char *)opt,
                         END);
    if (rc != FF_EINVAL || strstr(err.msg, needle) == NULL)
        fail_msg("%s %s: rc %d, message \"%s\", expected one with \"%s\"", opt,
                 value != NULL ? value : "", rc, err.msg, needle);
    build_args_release(&a);
}

static void test_every_option(void **state)
{
    (void)state;
    struct build_args a;
    struct ff_err err;
    assert_int_equal(
        parse(&a, &err, "--arch", "amd64", "app-dir", "--arch=arm64", "--arch", "armv7",
              "--file", "sub/Dockerfile.x", "--build-arg", "A=1", "--build-arg=B_2=x=y",
              "--build-arg", "EMPTY=", "--app", "bob/demo", "--no-cache", "--registry",
              "reg.example:5443", "--creds", "alice:s3cr:et", "--ca", "/etc/ca.crt", "--push",
              "alice/demo:v1.2", "--oci-layout", "/tmp/out:build-7", "--cache", "/c",
              "--cache-max", "2G", "--epoch", "1700000000", "--zstd", "--network",
              "--step-timeout", "90", "--step-memory=512M", END),
        0);
    const struct build_opts *o = &a.opts;
    assert_false(a.help);
    assert_string_equal(o->context, "app-dir");
    assert_string_equal(o->file, "sub/Dockerfile.x");
    assert_int_equal(o->n_archs, 3);
    assert_string_equal(o->archs[0], "amd64");
    assert_string_equal(o->archs[1], "arm64");
    assert_string_equal(o->archs[2], "armv7");
    assert_int_equal(o->n_build_args, 3);
    assert_string_equal(o->build_args[0], "A=1");
    assert_string_equal(o->build_args[1], "B_2=x=y");
    assert_string_equal(o->build_args[2], "EMPTY=");
    assert_string_equal(o->app, "bob/demo");
    assert_true(o->no_cache);
    assert_string_equal(o->registry, "reg.example:5443");
    assert_string_equal(o->user, "alice");
    assert_string_equal(o->secret, "s3cr:et");
    assert_string_equal(o->ca_file, "/etc/ca.crt");
    assert_string_equal(o->push_repo, "alice/demo");
    assert_string_equal(o->push_tag, "v1.2");
    assert_string_equal(o->layout_dir, "/tmp/out");
    assert_string_equal(o->layout_tag, "build-7");
    assert_string_equal(o->cache_dir, "/c");
    assert_int_equal(o->cache_max_bytes, (uint64_t)2 << 30);
    assert_int_equal(o->epoch, 1700000000);
    assert_true(o->zstd);
    assert_true(o->network);
    assert_int_equal(o->step_timeout_s, 90);
    assert_int_equal(o->step_memory, (uint64_t)512 << 20);
    assert_null(o->progress);
    build_args_release(&a);
    /* Released: everything owned is gone and the struct is zero. */
    assert_null(a.secret);
    assert_null(a.opts.secret);
    assert_int_equal(a.opts.n_archs, 0);
    build_args_release(&a);
    build_args_release(NULL);
}

static void test_defaults_without_environment(void **state)
{
    (void)state;
    struct build_args a;
    struct ff_err err;
    assert_int_equal(parse(&a, &err, ".", "--arch", "arm64", "--oci-layout", "out", END), 0);
    const struct build_opts *o = &a.opts;
    assert_string_equal(o->context, ".");
    assert_null(o->file);
    assert_null(o->app);
    assert_int_equal(o->n_archs, 1);
    assert_int_equal(o->n_build_args, 0);
    assert_false(o->no_cache || o->zstd || o->network);
    assert_null(o->registry);
    assert_null(o->ca_file);
    assert_null(o->user);
    assert_null(o->secret);
    assert_null(o->push_repo);
    assert_null(o->push_tag);
    assert_string_equal(o->layout_dir, "out");
    assert_string_equal(o->layout_tag, ARGS_LAYOUT_TAG_DEFAULT);
    assert_string_equal(o->cache_dir, ARGS_CACHE_DIR_DEFAULT);
    assert_int_equal(o->cache_max_bytes, 0);
    assert_int_equal(o->epoch, 0);
    assert_int_equal(o->step_timeout_s, 0);
    assert_int_equal(o->step_memory, 0);
    build_args_release(&a);
}

static void test_defaults_from_environment(void **state)
{
    (void)state;
    static const char *const vars[] = {
        "FF_REGISTRY=127.0.0.1:5443", "FF_ADMIN_USER=admin", "FF_ADMIN_TOKEN=ffu_tok",
        "FF_CA=/var/pki/ca.crt",      "SOURCE_DATE_EPOCH=86400", "FF_WORKER_CACHE=/srv/cache",
        "FF_OTHER=ignored",           NULL};
    struct env env = {vars};
    struct build_args a;
    struct ff_err err;
    assert_int_equal(parse_env(&a, &err, &env, "ctx", "--arch", "amd64", "--push",
                               "library/x:1", END),
                     0);
    assert_string_equal(a.opts.registry, "127.0.0.1:5443");
    assert_string_equal(a.opts.user, "admin");
    assert_string_equal(a.opts.secret, "ffu_tok");
    assert_string_equal(a.opts.ca_file, "/var/pki/ca.crt");
    assert_int_equal(a.opts.epoch, 86400);
    assert_string_equal(a.opts.cache_dir, "/srv/cache");
    assert_string_equal(a.opts.push_repo, "library/x");
    assert_string_equal(a.opts.push_tag, "1");
    assert_null(a.opts.layout_dir);
    build_args_release(&a);

    /* Options win over the environment. */
    assert_int_equal(parse_env(&a, &err, &env, "ctx", "--arch", "amd64", "--push", "a/b:2",
                               "--registry", "other:1", "--creds", "bob:pw", "--ca", "mine.crt",
                               "--epoch", "5", "--cache", "/mine", END),
                     0);
    assert_string_equal(a.opts.registry, "other:1");
    assert_string_equal(a.opts.user, "bob");
    assert_string_equal(a.opts.secret, "pw");
    assert_string_equal(a.opts.ca_file, "mine.crt");
    assert_int_equal(a.opts.epoch, 5);
    assert_string_equal(a.opts.cache_dir, "/mine");
    build_args_release(&a);

    /* Empty variables count as unset. */
    static const char *const blank[] = {"FF_REGISTRY=", "FF_ADMIN_USER=", "FF_ADMIN_TOKEN=",
                                        "FF_CA=", "SOURCE_DATE_EPOCH=", "FF_WORKER_CACHE=",
                                        NULL};
    struct env blank_env = {blank};
    assert_int_equal(parse_env(&a, &err, &blank_env, "ctx", "--arch", "amd64",
                               "--oci-layout", "o", END),
                     0);
    assert_null(a.opts.registry);
    assert_null(a.opts.user);
    assert_null(a.opts.ca_file);
    assert_int_equal(a.opts.epoch, 0);
    assert_string_equal(a.opts.cache_dir, ARGS_CACHE_DIR_DEFAULT);
    build_args_release(&a);
}

static void test_environment_errors(void **state)
{
    (void)state;
    struct build_args a;
    struct ff_err err;
    static const char *const half[] = {"FF_ADMIN_USER=admin", NULL};
    struct env half_env = {half};
    expect_usage(parse_env(&a, &err, &half_env, "c", "--arch", "amd64", "--oci-layout", "o",
                           END),
                 &err, "FF_ADMIN_USER and FF_ADMIN_TOKEN must be set together (only "
                       "FF_ADMIN_USER is)");
    build_args_release(&a);
    /* --creds makes a half-set environment irrelevant. */
    assert_int_equal(parse_env(&a, &err, &half_env, "c", "--arch", "amd64", "--oci-layout",
                               "o", "--creds", "u:p", END),
                     0);
    assert_string_equal(a.opts.user, "u");
    build_args_release(&a);

    static const char *const token_only[] = {"FF_ADMIN_TOKEN=ffu_secretvalue", NULL};
    struct env token_env = {token_only};
    expect_usage(parse_env(&a, &err, &token_env, "c", "--arch", "amd64", "--oci-layout", "o",
                           END),
                 &err, "(only FF_ADMIN_TOKEN is)");
    assert_null(strstr(err.msg, "secretvalue"));
    build_args_release(&a);

    static const char *const bad_epoch[] = {"SOURCE_DATE_EPOCH=yesterday", NULL};
    struct env epoch_env = {bad_epoch};
    expect_usage(parse_env(&a, &err, &epoch_env, "c", "--arch", "amd64", "--oci-layout", "o",
                           END),
                 &err, "SOURCE_DATE_EPOCH: \"yesterday\" is not a time");
    build_args_release(&a);

    static const char *const bad_reg[] = {"FF_REGISTRY=https://r:1", NULL};
    struct env reg_env = {bad_reg};
    expect_usage(parse_env(&a, &err, &reg_env, "c", "--arch", "amd64", "--oci-layout", "o",
                           END),
                 &err, "FF_REGISTRY: \"https://r:1\" is not a registry, expected HOST:PORT");
    build_args_release(&a);
}

static void test_help(void **state)
{
    (void)state;
    struct build_args a;
    struct ff_err err;
    /* --help wins over everything else, even bad options. */
    assert_int_equal(parse(&a, &err, "--bogus", "--help", END), 0);
    assert_true(a.help);
    build_args_release(&a);
    assert_int_equal(parse(&a, &err, "-h", END), 0);
    assert_true(a.help);
    build_args_release(&a);
    /* After "--" it is the context directory. */
    assert_int_equal(parse(&a, &err, "--arch", "amd64", "--oci-layout", "o", "--", "--help",
                           END),
                     0);
    assert_false(a.help);
    assert_string_equal(a.opts.context, "--help");
    build_args_release(&a);
    assert_non_null(strstr(build_args_usage, "--step-memory SIZE"));
    assert_non_null(strstr(build_args_usage, "--oci-layout DIR[:TAG]"));
}

static void test_arch(void **state)
{
    (void)state;
    struct build_args a;
    struct ff_err err;
    assert_int_equal(parse(&a, &err, "c", "--arch", "armv7,amd64", "--oci-layout", "o", END),
                     0);
    assert_int_equal(a.opts.n_archs, 2);
    assert_string_equal(a.opts.archs[0], "armv7");
    assert_string_equal(a.opts.archs[1], "amd64");
    build_args_release(&a);

    expect_bad("--arch", "x86_64",
               "option \"--arch\": unknown architecture \"x86_64\", expected amd64, arm64 or "
               "armv7");
    expect_bad("--arch", "arm", "unknown architecture \"arm\"");
    expect_bad("--arch", "AMD64", "unknown architecture \"AMD64\"");
    expect_bad("--arch", "arm64,", "unknown architecture \"\"");
    expect_bad("--arch", "amd64", "option \"--arch\": \"amd64\" given twice");
    expect_bad("--arch", "arm64,arm64", "\"arm64\" given twice");
    expect_usage(parse(&a, &err, "c", "--oci-layout", "o", END), &err,
                 "option \"--arch\" is required");
    build_args_release(&a);
}

static void test_build_args(void **state)
{
    (void)state;
    expect_bad("--build-arg", "NOVALUE",
               "option \"--build-arg\": \"NOVALUE\" is not NAME=VALUE");
    expect_bad("--build-arg", "=x", "\"\" is not NAME=VALUE");
    expect_bad("--build-arg", "1A=x", "\"1A\" is not NAME=VALUE");
    expect_bad("--build-arg", "A-B=x", "\"A-B\" is not NAME=VALUE");
    expect_bad("--build-arg", "A B=x", "\"A B\" is not NAME=VALUE");

    struct build_args a;
    struct ff_err err;
    expect_usage(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o", "--build-arg",
                       "V=1", "--build-arg", "V=2", END),
                 &err, "option \"--build-arg\": \"V\" given twice");
    build_args_release(&a);
    /* A name that prefixes another is a different name. */
    assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o",
                           "--build-arg", "V=1", "--build-arg", "VV=2", END),
                     0);
    assert_int_equal(a.opts.n_build_args, 2);
    build_args_release(&a);

    /* At most BUILD_ARGS_MAX. */
    static char names[BUILD_ARGS_MAX + 1][32];
    char *words[WORDS_MAX];
    int n = 0;
    words[n++] = (char *)"c";
    words[n++] = (char *)"--arch=amd64";
    words[n++] = (char *)"--oci-layout=o";
    for (int i = 0; i < BUILD_ARGS_MAX; i++) {
        (void)snprintf(names[i], sizeof(names[i]), "--build-arg=A%d=", i);
        words[n++] = names[i];
    }
    assert_int_equal(parse_v(&a, &err, &empty_env, words, n), 0);
    assert_int_equal(a.opts.n_build_args, BUILD_ARGS_MAX);
    assert_string_equal(a.opts.build_args[BUILD_ARGS_MAX - 1], "A255=");
    build_args_release(&a);
    (void)snprintf(names[BUILD_ARGS_MAX], sizeof(names[0]), "--build-arg=LAST=1");
    words[n++] = names[BUILD_ARGS_MAX];
    expect_usage(parse_v(&a, &err, &empty_env, words, n), &err,
                 "option \"--build-arg\": more than 256 values");
    build_args_release(&a);
}

static void test_push_and_layout(void **state)
{
    (void)state;
    struct build_args a;
    struct ff_err err;
    expect_bad("--push", "alice/app", "option \"--push\": \"alice/app\" is not REPO:TAG");
    expect_bad("--push", "reg:5000/alice/app", "is not REPO:TAG");
    expect_bad("--push", "alice/app@sha256:0123", "is not REPO:TAG");
    expect_bad("--push", "alice/app:", "option \"--push\": tag \"\"");
    expect_bad("--push", "alice/app:-x", "option \"--push\": tag \"-x\"");
    expect_bad("--push", "Alice/App:1", "option \"--push\": repository name \"Alice/App\"");
    expect_bad("--push", ":1", "option \"--push\": repository name \"\"");
    /* A push needs a registry, from the option or the environment. */
    expect_usage(parse(&a, &err, "c", "--arch", "amd64", "--push", "a/b:1", END), &err,
                 "option \"--push\" needs a registry: give --registry HOST:PORT or set "
                 "FF_REGISTRY");
    build_args_release(&a);
    expect_usage(parse(&a, &err, "c", "--arch", "amd64", END), &err,
                 "give --push REPO:TAG and/or --oci-layout DIR[:TAG]");
    build_args_release(&a);

    /* DIR[:TAG]: the last ':' splits unless a '/' follows it. */
    static const struct {
        const char *arg, *dir, *tag;
    } ok[] = {
        {"out", "out", "latest"},
        {"/tmp/out:v1", "/tmp/out", "v1"},
        {"/tmp/a:b/c", "/tmp/a:b/c", "latest"},
        {"a:b:c", "a:b", "c"},
    };
    for (size_t i = 0; i < N_OF(ok); i++) {
        assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout",
                               (char *)ok[i].arg, END),
                         0);
        assert_string_equal(a.opts.layout_dir, ok[i].dir);
        assert_string_equal(a.opts.layout_tag, ok[i].tag);
        build_args_release(&a);
    }
    expect_bad("--push", "a/b:1", "option \"--push\" needs a registry");
    struct build_args b;
    expect_usage(parse(&b, &err, "c", "--arch", "amd64", "--oci-layout", ":v1", END), &err,
                 "option \"--oci-layout\": \":v1\" has no directory");
    build_args_release(&b);
    expect_usage(parse(&b, &err, "c", "--arch", "amd64", "--oci-layout", "o:", END), &err,
                 "option \"--oci-layout\": tag \"\"");
    build_args_release(&b);
    expect_usage(parse(&b, &err, "c", "--arch", "amd64", "--oci-layout", "o:t!", END), &err,
                 "option \"--oci-layout\": tag \"t!\"");
    build_args_release(&b);
}

static void test_creds(void **state)
{
    (void)state;
    expect_bad("--creds", "nocolon-hunter2", "option \"--creds\": expected USER:SECRET");
    expect_bad("--creds", ":hunter2", "expected USER:SECRET, both non-empty");
    expect_bad("--creds", "user:", "expected USER:SECRET, both non-empty");
    struct build_args a;
    struct ff_err err;
    /* The secret never shows in a message. */
    assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o", "--creds",
                           ":hunter2", END),
                     FF_EINVAL);
    assert_null(strstr(err.msg, "hunter2"));
    build_args_release(&a);
    assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o", "--creds",
                           "u:a", "--creds", "u:hunter2", END),
                     FF_EINVAL);
    assert_string_equal(err.msg, "option \"--creds\" given twice");
    build_args_release(&a);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"0", 0},
        {"1", 1},
        {"1k", 1024},
        {"1K", 1024},
        {"1KiB", 1024},
        {"3m", (uint64_t)3 << 20},
        {"3MiB", (uint64_t)3 << 20},
        {"2G", (uint64_t)2 << 30},
        {"7T", (uint64_t)7 << 40},
        {"1024T", ARGS_SIZE_MAX},
        {"1125899906842624", ARGS_SIZE_MAX},
    };
    for (size_t i = 0; i < N_OF(ok); i++) {
        uint64_t v = 12345;
        int rc = build_args_size_parse(ok[i].s, ARGS_SIZE_MAX, &v);
        if (rc != 0 || v != ok[i].v)
            fail_msg("\"%s\": rc %d value %llu", ok[i].s, rc, (unsigned long long)v);
    }
    static const char *const bad[] = {"",    "K",  "1KB", "1 K", " 1",   "-1",  "+1",
                                      "1.5G", "1P", "1Ki", "1KiBB", "0x10", "1\x20", "2gib"};
    for (size_t i = 0; i < N_OF(bad); i++) {
        uint64_t v = 0;
        if (build_args_size_parse(bad[i], ARGS_SIZE_MAX, &v) != FF_EINVAL)
            fail_msg("\"%s\" was taken as a size", bad[i]);
    }
    static const char *const big[] = {"1025T", "1048577G", "1125899906842625",
                                      "99999999999999999999"};
    for (size_t i = 0; i < N_OF(big); i++) {
        uint64_t v = 0;
        if (build_args_size_parse(big[i], ARGS_SIZE_MAX, &v) != FF_ERANGE)
            fail_msg("\"%s\" was not out of range", big[i]);
    }
    uint64_t v = 0;
    assert_int_equal(build_args_size_parse("123456789012345678901", ARGS_SIZE_MAX, &v),
                     FF_ERANGE);

    expect_bad("--cache-max", "lots", "option \"--cache-max\": \"lots\" is not a size");
    expect_bad("--cache-max", "2048T", "option \"--cache-max\": \"2048T\" is out of range");
    expect_bad("--step-memory", "1M",
               "option \"--step-memory\": \"1M\" is out of range, expected 4M to 1024T");
    expect_bad("--step-memory", "4194303", "is out of range");
    struct build_args a;
    struct ff_err err;
    assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o",
                           "--step-memory", "4194304", "--cache-max", "0", END),
                     0);
    assert_int_equal(a.opts.step_memory, (uint64_t)4 << 20);
    assert_int_equal(a.opts.cache_max_bytes, 0);
    build_args_release(&a);
}

static void test_numbers(void **state)
{
    (void)state;
    expect_bad("--epoch", "-1", "option \"--epoch\": \"-1\" is not a time, expected seconds "
                                "since 1970 in 0..253402300799");
    expect_bad("--epoch", "253402300800", "is not a time");
    expect_bad("--epoch", "1e9", "is not a time");
    expect_bad("--step-timeout", "0",
               "option \"--step-timeout\": \"0\" is not a number of seconds in 1..604800");
    expect_bad("--step-timeout", "604801", "in 1..604800");
    expect_bad("--step-timeout", "10s", "\"10s\" is not a number of seconds");
    struct build_args a;
    struct ff_err err;
    assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o", "--epoch",
                           "253402300799", "--step-timeout", "604800", END),
                     0);
    assert_int_equal(a.opts.epoch, ARGS_EPOCH_MAX);
    assert_int_equal(a.opts.step_timeout_s, 604800);
    build_args_release(&a);
}

static void test_word_errors(void **state)
{
    (void)state;
    expect_bad("--bogus", NULL, "unknown option \"--bogus\" (see ff-worker build --help)");
    expect_bad("--bogus=1", NULL, "unknown option \"--bogus\"");
    expect_bad("-x", NULL, "unknown option \"-x\"");
    expect_bad("--no-cache=yes", NULL, "option \"--no-cache\" takes no value");
    expect_bad("--file", NULL, "option \"--file\" needs a value");
    expect_bad("--file", "", "option \"--file\" needs a value, got an empty one");
    expect_bad("--file=", NULL, "got an empty one");
    expect_bad("--oci-layout", "again", "option \"--oci-layout\" given twice");
    expect_bad("--registry", "http://r", "option \"--registry\": \"http://r\" is not a registry");
    expect_bad("--registry", "r/x", "is not a registry");
    expect_bad("--app", "bad name", "option \"--app\": \"bad name\" is not an app name");
    expect_bad("other-dir", NULL, "unexpected operand \"other-dir\": one context directory only");

    static const char *const twice[] = {"--file",     "--app",         "--registry",
                                        "--ca",       "--cache",       "--cache-max",
                                        "--epoch",    "--step-timeout", "--step-memory",
                                        "--no-cache", "--zstd",        "--network"};
    static const char *const vals[] = {"F", "a", "r:1", "ca", "/c", "1", "1", "1", "8M",
                                       NULL, NULL, NULL};
    for (size_t i = 0; i < N_OF(twice); i++) {
        struct build_args a;
        struct ff_err err;
        char msg[128];
        (void)snprintf(msg, sizeof(msg), "option \"%s\" given twice", twice[i]);
        int rc = vals[i] != NULL
                     ? parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o",
                             (char *)twice[i], (char *)vals[i], (char *)twice[i],
                             (char *)vals[i], END)
                     : parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o",
                             (char *)twice[i], (char *)twice[i], END);
        expect_usage(rc, &err, msg);
        build_args_release(&a);
    }

    struct build_args a;
    struct ff_err err;
    expect_usage(parse(&a, &err, "--arch", "amd64", "--oci-layout", "o", END), &err,
                 "the context directory is missing");
    build_args_release(&a);
    expect_usage(parse(&a, &err, "", "--arch", "amd64", "--oci-layout", "o", END), &err,
                 "the context directory is missing");
    build_args_release(&a);
    /* "-" and words after "--" are operands. */
    assert_int_equal(parse(&a, &err, "--arch", "amd64", "--oci-layout", "o", "--", "-dir",
                           END),
                     0);
    assert_string_equal(a.opts.context, "-dir");
    build_args_release(&a);
    assert_int_equal(parse(&a, &err, "-", "--arch", "amd64", "--oci-layout", "o", END), 0);
    assert_string_equal(a.opts.context, "-");
    build_args_release(&a);
    /* A value may start with '-'. */
    assert_int_equal(parse(&a, &err, "c", "--arch", "amd64", "--oci-layout", "o", "--file",
                           "-odd-name", END),
                     0);
    assert_string_equal(a.opts.file, "-odd-name");
    build_args_release(&a);
}

static void test_wipe_secret(void **state)
{
    (void)state;
    char w0[] = "ctx";
    char w1[] = "--creds";
    char w2[] = "alice:hunter2";
    char w3[] = "--creds=bob:swordfish";
    char w4[] = "--";
    char w5[] = "--creds";
    char w6[] = "carol:keepme";
    char *argv[] = {w0, w1, w2, w3, w4, w5, w6};
    build_args_wipe_secret((int)N_OF(argv), argv);
    assert_string_equal(w0, "ctx");
    assert_string_equal(w2, "alice:");
    assert_memory_equal(w2 + 6, "\0\0\0\0\0\0\0", 7);
    assert_string_equal(w3, "--creds=bob:");
    assert_memory_equal(w3 + 12, "\0\0\0\0\0\0\0\0\0", 9);
    /* After "--" nothing is an option. */
    assert_string_equal(w6, "carol:keepme");
    /* A --creds at the end without a value, and values without ':' are left. */
    char v0[] = "--creds";
    char v1[] = "--credsx=a:b";
    char *argv2[] = {v1, v0};
    build_args_wipe_secret(2, argv2);
    assert_string_equal(v1, "--credsx=a:b");
    assert_string_equal(v0, "--creds");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_defaults_without_environment),
        cmocka_unit_test(test_defaults_from_environment),
        cmocka_unit_test(test_environment_errors),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_arch),
        cmocka_unit_test(test_build_args),
        cmocka_unit_test(test_push_and_layout),
        cmocka_unit_test(test_creds),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_word_errors),
        cmocka_unit_test(test_wipe_secret),
    };
    return cmocka_run_group_tests_name("workers/args", tests, NULL, NULL);
}
