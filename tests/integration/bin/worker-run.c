/* worker-run: runs one build step the way ff-worker does, for the
 * integration tests of workers/runc.c, rootfs.c, passwd.c and binfmt.c
 * (tests/integration/test_worker_run.py).
 *
 *   worker-run --lower DIR [--lower DIR]... --upper DIR --work DIR --arch A
 *              [--user U] [--env K=V]... [--cwd D] [--timeout S]
 *              [--memory BYTES] [--pids N] [--network] [--shell]
 *              [--bundle DIR] [--state DIR] [--time] [--quiet] -- CMD...
 *   worker-run binfmt ARCH          binfmt_ensure(ARCH)
 *   worker-run binfmt-def FILE      binfmt_ensure_def of a binfmt.d line
 *   worker-run reap --state DIR     runc_reap
 *
 * Output lines are printed as "out: …" and "err: …" as they come (with
 * --quiet only counted: "lines=N bytes=N" on stderr at the end). Exit
 * status: the step's own, 124 when it exceeded its time limit, 125 for any
 * other failure (the message on stderr as "worker-run: …"). The bundle
 * defaults to WORK.bundle and the runc state root to WORK.state. */
#include "worker.h"

#include "ff_err.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_TIMEOUT 124
#define EXIT_FAILED 125
/* A definition file for binfmt-def is one line. */
#define DEF_FILE_MAX 4096

struct list {
    const char **v;
    size_t n;
};

static int list_add(struct list *l, const char *s)
{
    const char **v = realloc((void *)l->v, (l->n + 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    v[l->n++] = s;
    l->v = v;
    return 0;
}

struct counts {
    bool quiet;
    unsigned long long lines, bytes;
};

static void on_line(void *arg, enum runc_stream stream, const char *line, size_t len)
{
    struct counts *c = arg;
    c->lines++;
    c->bytes += len;
    if (c->quiet)
        return;
    (void)printf("%s: %.*s\n", stream == RUNC_STDOUT ? "out" : "err", (int)len, line);
    (void)fflush(stdout);
}

static int fail(const char *msg)
{
    (void)fprintf(stderr, "worker-run: %s\n", msg);
    return EXIT_FAILED;
}

static int read_def(const char *path, struct binfmt_def *def, struct ff_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "%s: %s", path, strerror(errno));
    char buf[DEF_FILE_MAX];
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)close(fd);
    if (n < 0)
        return ff_err_set(err, FF_EIO, "%s: %s", path, strerror(errno));
    return binfmt_def_parse_conf(buf, (size_t)n, def, err);
}

static int cmd_binfmt(int argc, char **argv)
{
    struct ff_err err = {0};
    if (argc != 3)
        return fail("usage: worker-run binfmt ARCH | binfmt-def FILE");
    int rc;
    if (strcmp(argv[1], "binfmt") == 0) {
        rc = binfmt_ensure(argv[2], &err);
    } else {
        struct binfmt_def def = {0};
        rc = read_def(argv[2], &def, &err);
        if (rc == 0)
            rc = binfmt_ensure_def(BINFMT_DIR, &def, &err);
        binfmt_def_release(&def);
    }
    if (rc != 0)
        return fail(err.msg);
    (void)printf("ok\n");
    return 0;
}

struct args {
    struct list lowers, env;
    struct runc_step step;
    struct runc_opts opts;
    const char *arch;
    bool timing;
    bool quiet;
    char *bundle_default, *state_default;
};

enum {
    OPT_LOWER = 256, OPT_UPPER, OPT_WORK, OPT_ARCH, OPT_USER, OPT_ENV, OPT_CWD, OPT_TIMEOUT,
    OPT_MEMORY, OPT_PIDS, OPT_NETWORK, OPT_SHELL, OPT_BUNDLE, OPT_STATE, OPT_TIME, OPT_QUIET
};

static const struct option long_opts[] = {
    {"lower", required_argument, NULL, OPT_LOWER}, {"upper", required_argument, NULL, OPT_UPPER},
    {"work", required_argument, NULL, OPT_WORK}, {"arch", required_argument, NULL, OPT_ARCH},
    {"user", required_argument, NULL, OPT_USER}, {"env", required_argument, NULL, OPT_ENV},
    {"cwd", required_argument, NULL, OPT_CWD}, {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"memory", required_argument, NULL, OPT_MEMORY}, {"pids", required_argument, NULL, OPT_PIDS},
    {"network", no_argument, NULL, OPT_NETWORK}, {"shell", no_argument, NULL, OPT_SHELL},
    {"bundle", required_argument, NULL, OPT_BUNDLE}, {"state", required_argument, NULL, OPT_STATE},
    {"time", no_argument, NULL, OPT_TIME}, {"quiet", no_argument, NULL, OPT_QUIET},
    {NULL, 0, NULL, 0},
};

static int parse_number(const char *s, uint64_t max, uint64_t *out)
{
    return ff_parse_u64(s, max, out);
}

static int parse_opt(struct args *a, int c, const char *v)
{
    uint64_t n = 0;
    switch (c) {
    case OPT_LOWER: return list_add(&a->lowers, v);
    case OPT_ENV: return list_add(&a->env, v);
    case OPT_UPPER: a->step.upper = v; return 0;
    case OPT_WORK: a->step.work = v; return 0;
    case OPT_ARCH: a->arch = v; return 0;
    case OPT_USER: a->step.user = v; return 0;
    case OPT_CWD: a->step.cwd = v; return 0;
    case OPT_NETWORK: a->step.network = true; return 0;
    case OPT_SHELL: a->step.shell_form = true; return 0;
    case OPT_BUNDLE: a->step.bundle = v; return 0;
    case OPT_STATE: a->opts.state_root = v; return 0;
    case OPT_TIME: a->timing = true; return 0;
    case OPT_QUIET: a->quiet = true; return 0;
    case OPT_TIMEOUT:
        if (parse_number(v, RUNC_TIMEOUT_MAX_S, &n) != 0)
            return -1;
        a->step.timeout_s = (unsigned)n;
        return 0;
    case OPT_MEMORY:
        if (parse_number(v, (uint64_t)INT64_MAX, &n) != 0)
            return -1;
        a->step.memory_limit = n;
        return 0;
    case OPT_PIDS:
        if (parse_number(v, (uint64_t)INT64_MAX, &n) != 0)
            return -1;
        a->step.pids_limit = (int64_t)n;
        return 0;
    default: return -1;
    }
}

static int parse_args(struct args *a, int argc, char **argv)
{
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (parse_opt(a, c, optarg) != 0)
            return -1;
    }
    if (optind >= argc || a->lowers.n == 0 || a->step.upper == NULL || a->step.work == NULL ||
        a->arch == NULL)
        return -1;
    a->step.lowers = a->lowers.v;
    a->step.n_lowers = a->lowers.n;
    a->step.env = a->env.v;
    a->step.n_env = a->env.n;
    a->step.args = (const char *const *)(argv + optind);
    a->step.n_args = (size_t)(argc - optind);
    if (a->step.bundle == NULL) {
        a->bundle_default = ff_asprintf("%s.bundle", a->step.work);
        a->step.bundle = a->bundle_default;
    }
    if (a->opts.state_root == NULL) {
        a->state_default = ff_asprintf("%s.state", a->step.work);
        a->opts.state_root = a->state_default;
    }
    return a->step.bundle != NULL && a->opts.state_root != NULL ? 0 : -1;
}

static int64_t now_us(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmd_reap(int argc, char **argv)
{
    if (argc != 4 || strcmp(argv[2], "--state") != 0)
        return fail("usage: worker-run reap --state DIR");
    struct runc_opts o = {.state_root = argv[3]};
    struct ff_err err = {0};
    if (runc_reap(&o, &err) != 0)
        return fail(err.msg);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    struct args a = {0};
    int ret = EXIT_FAILED;
    struct ff_err err = {0};
    if (parse_args(&a, argc, argv) != 0) {
        ret = fail("usage: worker-run --lower DIR... --upper DIR --work DIR --arch A "
                   "[options] -- CMD...");
        goto out;
    }
    if (binfmt_ensure(a.arch, &err) != 0) {
        ret = fail(err.msg);
        goto out;
    }
    int status = -1;
    int64_t t0 = now_us();
    struct counts counts = {.quiet = a.quiet};
    int rc = runc_step_run(&a.opts, &a.step, on_line, &counts, &status, &err);
    int64_t t1 = now_us();
    if (a.timing)
        (void)fprintf(stderr, "time_us=%lld\n", (long long)(t1 - t0));
    if (a.quiet)
        (void)fprintf(stderr, "lines=%llu bytes=%llu\n", counts.lines, counts.bytes);
    if (rc == FF_ETIMEOUT) {
        (void)fprintf(stderr, "worker-run: %s: %s\n", ff_err_name(rc), err.msg);
        ret = EXIT_TIMEOUT;
    } else if (rc != 0) {
        (void)fprintf(stderr, "worker-run: %s: %s\n", ff_err_name(rc), err.msg);
        ret = EXIT_FAILED;
    } else {
        ret = status;
    }
out:
    free((void *)a.lowers.v);
    free((void *)a.env.v);
    free(a.bundle_default);
    free(a.state_default);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "binfmt") == 0 || strcmp(argv[1], "binfmt-def") == 0))
        return cmd_binfmt(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "reap") == 0)
        return cmd_reap(argc, argv);
    return cmd_run(argc, argv);
}
