/* ff-worker: the build engine's one-shot command.
 *
 *   ff-worker build CONTEXT --arch A [...] (--push REPO:TAG | --oci-layout DIR[:TAG])
 *
 * args.c turns the words into build_opts, build.c builds; progress goes to
 * stderr as it comes, and the image's digest is the last line on stdout so
 * that scripts can capture it. A failure is one line "ff-worker: <message>"
 * on stderr and exit status 1 (the build failed) or 2 (usage error). The
 * worker daemon that claims jobs from the builder will be a second command
 * here. */
#include "worker.h"

#include "ff_digest.h"
#include "ff_err.h"
#include "ff_log.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_BUILD_FAILED 1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: ff-worker build CONTEXT --arch A [--arch A]... (--push REPO:TAG | --oci-layout "
    "DIR[:TAG]) [options]\n"
    "       ff-worker build --help    the options of build\n";

static const char *env_get(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

static void progress_line(void *ctx, const char *line)
{
    (void)ctx;
    (void)fprintf(stderr, "%s\n", line);
}

static int fail(int status, const char *msg)
{
    (void)fprintf(stderr, "ff-worker: %s\n", msg);
    return status;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    (void)clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Builds, then reports: a summary on stderr, the digest on stdout. */
static int build_and_report(const struct build_opts *opts)
{
    struct timespec t0;
    (void)clock_gettime(CLOCK_MONOTONIC, &t0);
    struct build_result res;
    memset(&res, 0, sizeof(res));
    struct ff_err err;
    ff_err_clear(&err);
    int rc = build_run(opts, &res, &err);
    if (rc != 0)
        return fail(EXIT_BUILD_FAILED, err.msg[0] != '\0' ? err.msg : ff_err_name(rc));
    char digest[FF_DIGEST_STR_SIZE];
    ff_digest_format(&res.digest, digest);
    (void)fprintf(stderr, "built %s (%s) in %.1f s: %u steps run, %u from the cache\n", digest,
                  res.is_index ? "image index" : "image", seconds_since(&t0), res.steps_run,
                  res.steps_cached);
    if (printf("%s\n", digest) < 0 || fflush(stdout) != 0)
        return fail(EXIT_BUILD_FAILED, "cannot write the digest to standard output");
    return 0;
}

/* The cache directory as an absolute path (malloc'd into *out): the
 * overlay mounts made under it take absolute paths only, and the
 * directory may not exist yet, so realpath cannot be used. */
static int cache_dir_absolute(const char *dir, char **out)
{
    if (dir[0] == '/') {
        *out = ff_strndup(dir, strlen(dir));
        return *out != NULL ? 0 : fail(EXIT_BUILD_FAILED, "out of memory");
    }
    char *cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        return fail(EXIT_BUILD_FAILED, "cannot find the current directory for --cache");
    *out = ff_asprintf("%s/%s", cwd, dir);
    free(cwd);
    return *out != NULL ? 0 : fail(EXIT_BUILD_FAILED, "out of memory");
}

static int cmd_build(int argc, char **argv)
{
    struct build_args args;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = build_args_parse(argc, argv, env_get, NULL, &args, &err);
    build_args_wipe_secret(argc, argv);
    char *cache_dir = NULL;
    int status = 0;
    if (rc != 0) {
        status = fail(rc == FF_EINVAL ? EXIT_USAGE : EXIT_BUILD_FAILED, err.msg);
    } else if (args.help) {
        (void)fputs(build_args_usage, stdout);
    } else {
        status = cache_dir_absolute(args.opts.cache_dir, &cache_dir);
        args.opts.cache_dir = cache_dir;
        args.opts.progress = progress_line;
        if (status == 0)
            status = build_and_report(&args.opts);
    }
    free(cache_dir);
    build_args_release(&args);
    return status;
}

int main(int argc, char **argv)
{
    /* The parts log only what goes wrong on the side (a retried chunk, a
     * cancelled upload); progress has its own lines. */
    ff_log_open("ff-worker", FF_LOG_WARN);
    if (argc >= 2 && strcmp(argv[1], "build") == 0)
        return cmd_build(argc - 2, argv + 2);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        (void)fputs(usage, stdout);
        return 0;
    }
    if (argc >= 2) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(argv[1], strlen(argv[1]), q);
        (void)fprintf(stderr, "ff-worker: unknown command \"%s\" (expected build)\n", q);
        return EXIT_USAGE;
    }
    (void)fputs(usage, stderr);
    return EXIT_USAGE;
}
