/* Drives workers/context.c, copy.c and fetch.c from integration tests and
 * for measuring the context digest:
 *
 *   worker-context digest ROOT SRC... [options]
 *   worker-context copy ROOT ROOTFS DEST SRC... [options]
 *
 * Options: --add (ADD instead of COPY), --stage (ROOT is a stage rootfs),
 * --exclude PREFIX (repeatable: a path equal to PREFIX or below it is
 * excluded), --chmod OCTAL, --chown UID:GID, --checksum sha256:HEX,
 * --workdir DIR, --memo FILE, --settle-ns N, --repeat N (digest N times,
 * timing the last), --ca FILE, --tmp DIR, --max-bytes N.
 *
 * digest prints "key value" lines (digest, entries, files, bytes,
 * bytes_read, memo_hits, seconds, mb_per_s); copy prints "extract KIND
 * DEST" for each archive ADD would extract (they are not extracted here)
 * and "ok". On failure the error goes to stderr and the exit status is 1. */
#include "worker.h"

#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ARGS 256
#define MAX_EXCLUDES 32

struct cli {
    const char *pos[MAX_ARGS];
    size_t n_pos;
    const char *excludes[MAX_EXCLUDES];
    size_t n_excludes;
    bool add;
    bool stage;
    struct context_attrs attrs;
    const char *checksum;
    const char *workdir;
    const char *memo;
    int64_t settle_ns;
    int64_t repeat;
    const char *ca;
    const char *tmp;
    uint64_t max_bytes;
};

static int usage(void)
{
    (void)fprintf(stderr, "usage: worker-context digest ROOT SRC... [options] | "
                          "copy ROOT ROOTFS DEST SRC... [options]\n");
    return 2;
}

static int exclude_prefix(void *ctx, const char *rel, bool is_dir, bool *excluded,
                          bool *walk_anyway, struct ff_err *err)
{
    (void)is_dir;
    (void)err;
    const struct cli *c = ctx;
    for (size_t i = 0; i < c->n_excludes; i++) {
        size_t n = strlen(c->excludes[i]);
        if (strncmp(rel, c->excludes[i], n) == 0 && (rel[n] == '\0' || rel[n] == '/'))
            *excluded = true;
    }
    *walk_anyway = false;
    return 0;
}

static int print_extract(void *ctx, int fd, enum context_archive kind, int dirfd, const char *dest,
                         struct ff_err *err)
{
    (void)ctx;
    (void)fd;
    (void)dirfd;
    (void)err;
    printf("extract %s %s\n", context_archive_name(kind), dest);
    return 0;
}

static int parse_owner(const char *s, struct context_attrs *a)
{
    const char *colon = s != NULL ? strchr(s, ':') : NULL;
    uint64_t uid = 0;
    uint64_t gid = 0;
    char *u = colon != NULL ? ff_strndup(s, (size_t)(colon - s)) : NULL;
    int rc = u != NULL && ff_parse_u64(u, UINT32_MAX, &uid) == 0 &&
                     ff_parse_u64(colon + 1, UINT32_MAX, &gid) == 0
                 ? 0
                 : -1;
    free(u);
    a->chown = true;
    a->uid = (uint32_t)uid;
    a->gid = (uint32_t)gid;
    return rc;
}

static int parse_opt(struct cli *c, const char *opt, const char *val, int *used)
{
    int64_t n = 0;
    *used = 0;
    if (strcmp(opt, "--add") == 0) {
        c->add = true;
        return 0;
    }
    if (strcmp(opt, "--stage") == 0) {
        c->stage = true;
        return 0;
    }
    *used = 1;
    if (strcmp(opt, "--exclude") == 0 && val != NULL && c->n_excludes < MAX_EXCLUDES)
        c->excludes[c->n_excludes++] = val;
    else if (strcmp(opt, "--chmod") == 0 && val != NULL) {
        char *end = NULL;
        long m = strtol(val, &end, 8);
        if (*val == '\0' || *end != '\0' || m < 0 || m > 07777)
            return -1;
        c->attrs.chmod = (int)m;
    } else if (strcmp(opt, "--chown") == 0)
        return parse_owner(val, &c->attrs);
    else if (strcmp(opt, "--checksum") == 0 && val != NULL)
        c->checksum = val;
    else if (strcmp(opt, "--workdir") == 0 && val != NULL)
        c->workdir = val;
    else if (strcmp(opt, "--memo") == 0 && val != NULL)
        c->memo = val;
    else if (strcmp(opt, "--ca") == 0 && val != NULL)
        c->ca = val;
    else if (strcmp(opt, "--tmp") == 0 && val != NULL)
        c->tmp = val;
    else if (strcmp(opt, "--settle-ns") == 0 && val != NULL &&
             ff_parse_i64(val, 0, INT64_MAX, &n) == 0)
        c->settle_ns = n;
    else if (strcmp(opt, "--repeat") == 0 && val != NULL && ff_parse_i64(val, 1, 1000, &n) == 0)
        c->repeat = n;
    else if (strcmp(opt, "--max-bytes") == 0 && val != NULL &&
             ff_parse_i64(val, 1, INT64_MAX, &n) == 0)
        c->max_bytes = (uint64_t)n;
    else
        return -1;
    return 0;
}

static int parse_args(struct cli *c, int argc, char **argv)
{
    memset(c, 0, sizeof(*c));
    c->attrs.chmod = -1;
    c->settle_ns = -1;
    c->repeat = 1;
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            if (c->n_pos == MAX_ARGS)
                return -1;
            c->pos[c->n_pos++] = argv[i];
            continue;
        }
        int used = 0;
        if (parse_opt(c, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &used) != 0) {
            (void)fprintf(stderr, "worker-context: bad option %s\n", argv[i]);
            return -1;
        }
        i += used;
    }
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    (void)clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int run_digest(struct cli *c, const struct context_sources *s, struct ff_err *err)
{
    struct context_memo *memo = NULL;
    int rc = c->memo != NULL ? context_memo_open(c->memo, &memo, err) : 0;
    if (rc == 0 && memo != NULL && c->settle_ns >= 0)
        context_memo_set_settle(memo, c->settle_ns);
    struct ff_digest d;
    struct context_stats st;
    memset(&d, 0, sizeof(d));
    memset(&st, 0, sizeof(st));
    double t = 0;
    for (int64_t i = 0; i < c->repeat && rc == 0; i++) {
        double t0 = now_s();
        rc = context_digest(s, &c->attrs, memo, &d, &st, err);
        t = now_s() - t0;
    }
    if (rc == 0 && memo != NULL)
        rc = context_memo_save(memo, err);
    context_memo_free(memo);
    if (rc != 0)
        return rc;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&d, ds);
    printf("digest %s\nentries %llu\nfiles %llu\nbytes %llu\nbytes_read %llu\n"
           "memo_hits %llu\nseconds %.6f\nmb_per_s %.1f\n",
           ds, (unsigned long long)st.entries, (unsigned long long)st.files,
           (unsigned long long)st.bytes, (unsigned long long)st.bytes_read,
           (unsigned long long)st.memo_hits, t, t > 0 ? (double)st.bytes / 1e6 / t : 0.0);
    return 0;
}

static int run_copy(struct cli *c, const struct context_sources *s, const char *rootfs,
                    const char *dest, struct ff_err *err)
{
    struct copy_opts o;
    memset(&o, 0, sizeof(o));
    o.workdir = c->workdir;
    o.attrs = c->attrs;
    o.extract = print_extract;
    o.tmp_dir = c->tmp != NULL ? c->tmp : "/tmp";
    o.fetch_max_bytes = c->max_bytes;
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.ca_file = c->ca;
    cfg.follow_redirects = true;
    cfg.max_retries = 0;
    int rc = ff_http_client_new(&cfg, &o.http, err);
    if (rc == 0)
        rc = copy_into(rootfs, s, dest, &o, err);
    ff_http_client_free(o.http);
    if (rc == 0)
        printf("ok\n");
    return rc;
}

int main(int argc, char **argv)
{
    struct cli c;
    if (argc < 2 || parse_args(&c, argc, argv) != 0)
        return usage();
    bool digest = strcmp(argv[1], "digest") == 0;
    size_t skip = digest ? 1 : 3;
    if ((!digest && strcmp(argv[1], "copy") != 0) || c.n_pos <= skip)
        return usage();
    struct ff_err err;
    ff_err_clear(&err);
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    int rc = context_root_open(c.pos[0], c.stage ? CONTEXT_ROOT_STAGE : CONTEXT_ROOT_CONTEXT,
                               c.stage ? "stage \"test\"" : "the build context",
                               c.n_excludes ? exclude_prefix : NULL, &c, &root, &err);
    if (rc == 0)
        rc = context_resolve(root, c.add ? CONTEXT_ADD : CONTEXT_COPY, c.pos + skip, c.n_pos - skip,
                             c.checksum, &s, &err);
    if (rc == 0)
        rc = digest ? run_digest(&c, s, &err) : run_copy(&c, s, c.pos[1], c.pos[2], &err);
    context_sources_free(s);
    context_root_free(root);
    if (rc != 0) {
        (void)fprintf(stderr, "worker-context: %s\n", err.msg);
        return 1;
    }
    return 0;
}
