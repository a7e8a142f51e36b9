#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include "ff_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* snprintf that fails the test rather than truncate. */
#define FMT(buf, ...) \
    assert_true((unsigned)snprintf((buf), sizeof(buf), __VA_ARGS__) < sizeof(buf))

#define HELLO_DIGEST "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
#define ABC_DIGEST "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

struct fixture {
    char root[64];
    struct blob_store *bs;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    FMT(f->root, "/tmp/ff-blob-XXXXXX");
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    /* The store's files live one level down, so creation is tested too. */
    strncat(f->root, "/store", sizeof(f->root) - strlen(f->root) - 1);
    struct ff_err err;
    if (blob_store_open(f->root, 0, &f->bs, &err) != 0) {
        (void)fprintf(stderr, "setup: %s\n", err.msg);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    blob_store_free(f->bs);
    char top[64];
    FMT(top, "%s", f->root);
    *strrchr(top, '/') = '\0';
    nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Number of entries (other than . and ..) in root/sub. */
static int count_dir(const struct fixture *f, const char *sub)
{
    char path[256];
    FMT(path, "%s/%s", f->root, sub);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

struct walk {
    int n;
    int64_t total;
    time_t mtime;
    struct ff_digest last;
};

static int walk_fn(void *ctx, const struct ff_digest *d, int64_t size, time_t mtime)
{
    struct walk *w = ctx;
    w->n++;
    w->total += size;
    w->mtime = mtime;
    w->last = *d;
    return 0;
}

static int walk_count(struct blob_store *bs)
{
    struct walk w;
    memset(&w, 0, sizeof(w));
    assert_int_equal(blob_store_iterate(bs, walk_fn, &w, NULL), 0);
    return w.n;
}

static struct ff_digest digest_of(const char *s)
{
    struct ff_digest d;
    assert_int_equal(ff_digest_parse_str(s, &d, NULL), 0);
    return d;
}

static void put(struct blob_store *bs, const char *content, const char *expected)
{
    struct blob_writer *w = NULL;
    struct ff_err err;
    assert_int_equal(blob_writer_new(bs, &w, &err), 0);
    assert_int_equal(blob_writer_write(w, content, strlen(content), &err), 0);
    struct ff_digest want = digest_of(expected);
    if (blob_writer_commit(w, &want, NULL, NULL, &err) != 0)
        fail_msg("commit: %s", err.msg);
    blob_writer_free(w);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w = NULL;
    struct ff_err err;
    assert_int_equal(blob_writer_new(f->bs, &w, &err), 0);
    assert_int_equal(count_dir(f, "tmp"), 1);
    assert_int_equal(blob_writer_write(w, "hello", 5, &err), 0);
    assert_int_equal(blob_writer_write(w, "", 0, &err), 0);
    assert_int_equal(blob_writer_write(w, " world", 6, &err), 0);
    assert_int_equal(blob_writer_size(w), 11);
    struct ff_digest want = digest_of(HELLO_DIGEST);
    struct ff_digest got;
    int64_t size = 0;
    assert_int_equal(blob_writer_commit(w, &want, &got, &size, &err), 0);
    assert_true(ff_digest_equal(&got, &want));
    assert_int_equal(size, 11);
    /* The writer is spent. */
    assert_int_equal(blob_writer_write(w, "x", 1, &err), FF_EINVAL);
    assert_int_equal(blob_writer_commit(w, NULL, NULL, NULL, &err), FF_EINVAL);
    blob_writer_free(w);
    blob_writer_free(NULL);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(count_dir(f, "blobs/sha256/b9"), 1);

    assert_int_equal(blob_store_stat(f->bs, &want, &size, &err), 0);
    assert_int_equal(size, 11);
    int fd = -1;
    assert_int_equal(blob_store_open_read(f->bs, &want, &fd, &size, &err), 0);
    char buf[32];
    assert_int_equal(read(fd, buf, sizeof(buf)), 11);
    assert_memory_equal(buf, "hello world", 11);
    close(fd);

    struct walk wk;
    memset(&wk, 0, sizeof(wk));
    assert_int_equal(blob_store_iterate(f->bs, walk_fn, &wk, &err), 0);
    assert_int_equal(wk.n, 1);
    assert_int_equal(wk.total, 11);
    assert_true(ff_digest_equal(&wk.last, &want));
    assert_true(wk.mtime > 0);
}

static void test_commit_without_expected(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(f->bs, &w, NULL), 0);
    assert_int_equal(blob_writer_write(w, "abc", 3, NULL), 0);
    struct ff_digest got;
    assert_int_equal(blob_writer_commit(w, NULL, &got, NULL, NULL), 0);
    blob_writer_free(w);
    struct ff_digest want = digest_of(ABC_DIGEST);
    assert_true(ff_digest_equal(&got, &want));
    /* The empty blob is a blob too. */
    assert_int_equal(blob_writer_new(f->bs, &w, NULL), 0);
    int64_t size = -1;
    assert_int_equal(blob_writer_commit(w, NULL, &got, &size, NULL), 0);
    blob_writer_free(w);
    assert_int_equal(size, 0);
    assert_int_equal(walk_count(f->bs), 2);
}

static void test_digest_mismatch(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w = NULL;
    struct ff_err err;
    assert_int_equal(blob_writer_new(f->bs, &w, &err), 0);
    assert_int_equal(blob_writer_write(w, "hello world", 11, &err), 0);
    struct ff_digest wrong = digest_of(ABC_DIGEST);
    assert_int_equal(blob_writer_commit(w, &wrong, NULL, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "digest mismatch (expected " ABC_DIGEST ", got "
                                    HELLO_DIGEST ")"));
    blob_writer_free(w);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(walk_count(f->bs), 0);
    struct ff_digest actual = digest_of(HELLO_DIGEST);
    int64_t size;
    assert_int_equal(blob_store_stat(f->bs, &actual, &size, &err), FF_ENOTFOUND);
    assert_int_equal(blob_store_stat(f->bs, &wrong, &size, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not found"));
}

static void test_dedup(void **state)
{
    struct fixture *f = *state;
    put(f->bs, "abc", ABC_DIGEST);
    /* Age the blob, then push it again: one copy, made young. */
    char path[256];
    FMT(path, "%s/blobs/sha256/ba/%s", f->root, ABC_DIGEST + 7);
    struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    struct stat st1;
    assert_int_equal(stat(path, &st1), 0);
    put(f->bs, "abc", ABC_DIGEST);
    struct stat st2;
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_true(st2.st_mtime > st1.st_mtime);
    assert_int_equal(walk_count(f->bs), 1);
    assert_int_equal(count_dir(f, "tmp"), 0);
}

static void test_free_aborts(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(f->bs, &w, NULL), 0);
    assert_int_equal(blob_writer_write(w, "partial", 7, NULL), 0);
    assert_int_equal(count_dir(f, "tmp"), 1);
    blob_writer_free(w);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(walk_count(f->bs), 0);
}

static void test_stale_tmp_removed_and_lock(void **state)
{
    struct fixture *f = *state;
    /* A crash leaves half-written temp files behind. */
    static const char *const names[] = {"blob-0123456789abcdef", "blob-fedcba9876543210"};
    for (size_t i = 0; i < 2; i++) {
        char path[256];
        FMT(path, "%s/tmp/%s", f->root, names[i]);
        int fd = open(path, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "half", 4), 4);
        close(fd);
    }
    assert_int_equal(count_dir(f, "tmp"), 2);

    /* While it is open, nobody else may open the store. */
    struct blob_store *other = NULL;
    struct ff_err err;
    assert_int_equal(blob_store_open(f->root, 0, &other, &err), FF_EBUSY);
    assert_non_null(strstr(err.msg, "in use by another process"));

    blob_store_free(f->bs);
    f->bs = NULL;
    assert_int_equal(blob_store_open(f->root, 0, &f->bs, &err), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(walk_count(f->bs), 0);
}

static void test_delete_and_junk(void **state)
{
    struct fixture *f = *state;
    put(f->bs, "abc", ABC_DIGEST);
    char path[256];
    FMT(path, "%s/blobs/sha256/ba/not-a-digest", f->root);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    FMT(path, "%s/blobs/sha256/00/%s", f->root, ABC_DIGEST + 7);
    fd = open(path, O_WRONLY | O_CREAT, 0600); /* right name, wrong fan-out */
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(walk_count(f->bs), 1);
    struct ff_digest d = digest_of(ABC_DIGEST);
    struct ff_err err;
    assert_int_equal(blob_store_delete(f->bs, &d, &err), 0);
    assert_int_equal(blob_store_delete(f->bs, &d, &err), FF_ENOTFOUND);
    int64_t size;
    assert_int_equal(blob_store_stat(f->bs, &d, &size, &err), FF_ENOTFOUND);
    int rfd = -1;
    assert_int_equal(blob_store_open_read(f->bs, &d, &rfd, &size, &err), FF_ENOTFOUND);
    assert_int_equal(walk_count(f->bs), 0);
}

static void test_fanout_recreated(void **state)
{
    struct fixture *f = *state;
    char path[256];
    FMT(path, "%s/blobs/sha256/ba", f->root);
    assert_int_equal(rmdir(path), 0);
    put(f->bs, "abc", ABC_DIGEST);
    assert_int_equal(count_dir(f, "blobs/sha256/ba"), 1);
    assert_int_equal(count_dir(f, "tmp"), 0);
}

static int stop_fn(void *ctx, const struct ff_digest *d, int64_t size, time_t mtime)
{
    (void)d;
    (void)size;
    (void)mtime;
    (*(int *)ctx)++;
    return 7;
}

static void test_iterate_stops(void **state)
{
    struct fixture *f = *state;
    put(f->bs, "abc", ABC_DIGEST);
    put(f->bs, "hello world", HELLO_DIGEST);
    int calls = 0;
    assert_int_equal(blob_store_iterate(f->bs, stop_fn, &calls, NULL), 7);
    assert_int_equal(calls, 1);
}

static void test_size_limit(void **state)
{
    struct fixture *f = *state;
    blob_store_free(f->bs);
    struct ff_err err;
    assert_int_equal(blob_store_open(f->root, 10, &f->bs, &err), 0);
    assert_int_equal(blob_store_max_size(f->bs), 10);
    struct blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(f->bs, &w, &err), 0);
    assert_int_equal(blob_writer_write(w, "0123456", 7, &err), 0);
    assert_int_equal(blob_writer_write(w, "7890", 4, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "limit of 10 bytes"));
    assert_int_equal(blob_writer_write(w, "789", 3, &err), 0);
    assert_int_equal(blob_writer_commit(w, NULL, NULL, NULL, &err), 0);
    blob_writer_free(w);
    assert_int_equal(walk_count(f->bs), 1);
}

static void test_adopt(void **state)
{
    struct fixture *f = *state;
    int root = blob_store_root_fd(f->bs);
    int fd = openat(root, "outside", O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    struct ff_digest want = digest_of(ABC_DIGEST);
    struct ff_digest wrong = digest_of(HELLO_DIGEST);
    struct ff_digest got;
    int64_t size = 0;
    struct ff_err err;
    /* No digest given: the store hashes the file itself. */
    assert_int_equal(blob_store_adopt(f->bs, root, "outside", fd, NULL, &wrong, &got, &size,
                                      &err), FF_EINVAL);
    assert_int_equal(walk_count(f->bs), 0);
    assert_int_equal(blob_store_adopt(f->bs, root, "outside", fd, NULL, &want, &got, &size,
                                      &err), 0);
    assert_true(ff_digest_equal(&got, &want));
    assert_int_equal(size, 3);
    assert_int_equal(walk_count(f->bs), 1);
    /* The source stays for the caller to remove. */
    assert_int_equal(unlinkat(root, "outside", 0), 0);
    close(fd);
}

/* 64 MiB in 1 MiB chunks, checked against a digest computed separately. */
static void test_big_blob(void **state)
{
    struct fixture *f = *state;
    const size_t chunk = 1u << 20;
    const int chunks = 64;
    unsigned char *buf = malloc(chunk);
    assert_non_null(buf);
    struct ff_digest_ctx *ctx = NULL;
    assert_int_equal(ff_digest_ctx_new(&ctx, NULL), 0);
    struct blob_writer *w = NULL;
    struct ff_err err;
    assert_int_equal(blob_writer_new(f->bs, &w, &err), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < chunks; i++) {
        for (size_t j = 0; j < chunk; j++)
            buf[j] = (unsigned char)(j * 31u + (unsigned)i);
        assert_int_equal(ff_digest_ctx_update(ctx, buf, chunk, NULL), 0);
        assert_int_equal(blob_writer_write(w, buf, chunk, &err), 0);
    }
    struct ff_digest want;
    assert_int_equal(ff_digest_ctx_final(ctx, &want, NULL), 0);
    ff_digest_ctx_free(ctx);
    int64_t size = 0;
    assert_int_equal(blob_writer_commit(w, &want, NULL, &size, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    blob_writer_free(w);
    free(buf);
    assert_int_equal(size, (int64_t)chunk * chunks);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("64 MiB written, hashed and committed in %.3f s (test hashes twice)\n", secs);
    int fd = -1;
    assert_int_equal(blob_store_open_read(f->bs, &want, &fd, &size, &err), 0);
    struct ff_digest again;
    assert_int_equal(ff_digest_fd(fd, &again, NULL), 0);
    close(fd);
    assert_true(ff_digest_equal(&want, &again));
}

static void test_open_errors(void **state)
{
    (void)state;
    struct blob_store *bs = NULL;
    struct ff_err err;
    assert_int_equal(blob_store_open("/proc/ff-no-such/store", 0, &bs, &err), FF_EIO);
    assert_null(bs);
    assert_non_null(strstr(err.msg, "/proc/ff-no-such/store"));
}

int main(void)
{
    ff_log_open("ff-test", FF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_without_expected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_tmp_removed_and_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_junk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fanout_recreated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterate_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_blob, setup, teardown),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests_name("registry/blobstore", tests, NULL, NULL);
}
