/* Drives workers/layer*.c from integration tests and benchmarks:
 *
 *   worker-layer write DIR OUT [--gzip|--zstd|--none] [--level N]
 *                [--threads N] [--epoch N] [--overlay]
 *   worker-layer compress IN OUT [--gzip|--zstd|--none] [--level N] [--threads N]
 *   worker-layer unpack BLOB DIR [--plain] [--diff-id D] [--digest D]
 *                [--max-bytes N] [--max-entries N]
 *
 * On success prints "key value" lines (diff_id, digest, size, tar_size,
 * entries, empty, media_type, seconds); on failure the error on stderr and
 * exit status 1. */
#include "worker.h"

#include "ff_str.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Read size of the compress command. */
#define CLI_BUF (1u << 20)

struct cli {
    struct layer_write_opts w;
    struct layer_unpack_opts u;
    struct ff_digest diff_id;
    struct ff_digest digest;
    bool plain;
};

static int usage(void)
{
    (void)fprintf(stderr, "usage: worker-layer write DIR OUT [options] | "
                          "compress IN OUT [options] | unpack BLOB DIR [options]\n");
    return 2;
}

static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || ff_parse_i64(s, min, max, out) != 0) {
        (void)fprintf(stderr, "worker-layer: bad number \"%s\"\n", s ? s : "");
        return -1;
    }
    return 0;
}

static int parse_digest(const char *s, struct ff_digest *d, const struct ff_digest **slot)
{
    struct ff_err err;
    if (s == NULL || ff_digest_parse_str(s, d, &err) != 0) {
        (void)fprintf(stderr, "worker-layer: bad digest \"%s\"\n", s ? s : "");
        return -1;
    }
    *slot = d;
    return 0;
}

static int parse_opt(struct cli *c, const char *opt, const char *val, int *used)
{
    int64_t n = 0;
    *used = 1;
    if (strcmp(opt, "--gzip") == 0 || strcmp(opt, "--zstd") == 0 || strcmp(opt, "--none") == 0) {
        c->w.compression = opt[2] == 'g' ? LAYER_GZIP : opt[2] == 'z' ? LAYER_ZSTD
                                                                     : LAYER_UNCOMPRESSED;
        *used = 0;
        return 0;
    }
    if (strcmp(opt, "--overlay") == 0 || strcmp(opt, "--plain") == 0) {
        c->w.overlay = opt[2] == 'o';
        c->plain = opt[2] == 'p';
        *used = 0;
        return 0;
    }
    if (strcmp(opt, "--diff-id") == 0)
        return parse_digest(val, &c->diff_id, &c->u.diff_id);
    if (strcmp(opt, "--digest") == 0)
        return parse_digest(val, &c->digest, &c->u.digest);
    if (parse_int(val, 0, INT64_MAX, &n) != 0)
        return -1;
    if (strcmp(opt, "--level") == 0 && n <= 99)
        c->w.level = (int)n;
    else if (strcmp(opt, "--threads") == 0 && n <= 99)
        c->w.threads = (unsigned)n;
    else if (strcmp(opt, "--epoch") == 0) {
        c->w.clamp_mtime = true;
        c->w.epoch = n;
    }
    else if (strcmp(opt, "--max-bytes") == 0)
        c->u.max_bytes = (uint64_t)n;
    else if (strcmp(opt, "--max-entries") == 0)
        c->u.max_entries = (uint64_t)n;
    else
        return -1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_info(const struct layer_info *info, double seconds)
{
    char d[FF_DIGEST_STR_SIZE], t[FF_DIGEST_STR_SIZE];
    ff_digest_format(&info->diff_id, t);
    ff_digest_format(&info->digest, d);
    (void)printf("diff_id %s\ndigest %s\nsize %llu\ntar_size %llu\nentries %llu\nempty %d\n"
                 "media_type %s\nseconds %.3f\n", t, d, (unsigned long long)info->size,
                 (unsigned long long)info->tar_size, (unsigned long long)info->entries,
                 info->empty ? 1 : 0, layer_media_type(info->compression), seconds);
}

static int compress_file(const char *in_path, const char *out_path, const struct cli *c,
                         struct layer_info *info, struct ff_err *err)
{
    static unsigned char buf[CLI_BUF];
    int in = open(in_path, O_RDONLY | O_CLOEXEC);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    struct compress_out *o = NULL;
    int rc = in < 0 || out < 0 ? ff_err_set(err, FF_EIO, "cannot open the files") : 0;
    if (rc == 0)
        rc = compress_out_new(&o, out, c->w.compression, c->w.level, c->w.threads, err);
    while (rc == 0) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n <= 0) {
            rc = n < 0 ? ff_err_set(err, FF_EIO, "read failed") : 0;
            break;
        }
        rc = compress_out_write(o, buf, (size_t)n, err);
    }
    if (rc == 0)
        rc = compress_out_finish(o, info, err);
    compress_out_free(o);
    if (in >= 0)
        (void)close(in);
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = ff_err_set(err, FF_EIO, "close failed");
    return rc;
}

static int unpack_file(const char *blob, const char *dir, const struct cli *c,
                       struct layer_info *info, struct ff_err *err)
{
    int fd = open(blob, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_ENOTFOUND, "cannot open \"%s\"", blob);
    int rc = c->plain ? layer_extract_plain(fd, dir, &c->u, info, err)
                      : layer_unpack(fd, dir, &c->u, info, err);
    (void)close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    struct cli c;
    memset(&c, 0, sizeof(c));
    for (int i = 4; i < argc; i++) {
        int used = 0;
        if (parse_opt(&c, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &used) != 0)
            return usage();
        i += used;
    }
    struct layer_info info;
    struct ff_err err;
    memset(&info, 0, sizeof(info));
    ff_err_clear(&err);
    double t0 = now();
    int rc;
    if (strcmp(argv[1], "write") == 0)
        rc = layer_write_file(argv[2], argv[3], &c.w, &info, &err);
    else if (strcmp(argv[1], "compress") == 0)
        rc = compress_file(argv[2], argv[3], &c, &info, &err);
    else if (strcmp(argv[1], "unpack") == 0)
        rc = unpack_file(argv[2], argv[3], &c, &info, &err);
    else
        return usage();
    if (rc != 0) {
        (void)fprintf(stderr, "worker-layer: %s (%s)\n", err.msg, ff_err_name(rc));
        return 1;
    }
    print_info(&info, now() - t0);
    return 0;
}
