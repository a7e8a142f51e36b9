#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include "ff_log.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
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
    struct upload_store *us;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int stores_open(struct fixture *f, int64_t max)
{
    struct ff_err err;
    if (blob_store_open(f->root, max, &f->bs, &err) != 0 ||
        upload_store_open(f->bs, &f->us, &err) != 0) {
        (void)fprintf(stderr, "open: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Closes everything without finishing anything: as far as the disk is
 * concerned this is what a kill -9 leaves. */
static void stores_close(struct fixture *f)
{
    upload_store_free(f->us);
    blob_store_free(f->bs);
    f->us = NULL;
    f->bs = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    FMT(f->root, "/tmp/ff-upload-XXXXXX");
    if (mkdtemp(f->root) == NULL || stores_open(f, 0) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stores_close(f);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct ff_digest digest_of(const char *s)
{
    struct ff_digest d;
    assert_int_equal(ff_digest_parse_str(s, &d, NULL), 0);
    return d;
}

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

static struct upload *open_ok(struct fixture *f, const char *repo, const char *id)
{
    struct upload *u = NULL;
    struct ff_err err;
    if (upload_open(f->us, repo, id, &u, &err) != 0)
        fail_msg("open %s: %s", id, err.msg);
    return u;
}

static void blob_is(struct fixture *f, const char *digest, int64_t size)
{
    struct ff_digest d = digest_of(digest);
    int64_t got = -1;
    assert_int_equal(blob_store_stat(f->bs, &d, &got, NULL), 0);
    assert_int_equal(got, size);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    struct ff_err err;
    assert_int_equal(upload_create(f->us, "app/x", id, &err), 0);
    assert_int_equal(strlen(id), UPLOAD_ID_LEN);
    struct upload *u = open_ok(f, "app/x", id);
    assert_string_equal(upload_id(u), id);
    assert_int_equal(upload_size(u), 0);
    int64_t size = -1;
    assert_int_equal(upload_append(u, 0, "hello", 5, &size, &err), 0);
    assert_int_equal(size, 5);
    assert_int_equal(upload_append(u, 5, "", 0, &size, &err), 0);
    assert_int_equal(size, 5);
    assert_int_equal(upload_append(u, 5, " wor", 4, &size, &err), 0);
    assert_int_equal(upload_append(u, 9, "ld", 2, &size, &err), 0);
    assert_int_equal(upload_size(u), 11);
    struct ff_digest want = digest_of(HELLO_DIGEST);
    assert_int_equal(upload_finish(u, &want, &size, &err), 0);
    assert_int_equal(size, 11);
    /* The handle outlives the session; everything on it now says so. */
    assert_int_equal(upload_append(u, 11, "x", 1, NULL, &err), FF_ENOTFOUND);
    assert_int_equal(upload_finish(u, &want, NULL, &err), FF_ENOTFOUND);
    upload_close(u);
    upload_close(NULL);
    blob_is(f, HELLO_DIGEST, 11);
    assert_int_equal(count_dir(f, "uploads"), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(upload_open(f->us, "app/x", id, &u, &err), FF_ENOTFOUND);
}

static void test_out_of_order(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *u = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append(u, 0, "abc", 3, NULL, &err), 0);
    assert_int_equal(upload_append(u, 0, "abc", 3, NULL, &err), FF_ERANGE);
    assert_non_null(strstr(err.msg, "chunk starts at 0, expected 3"));
    assert_int_equal(upload_append(u, 4, "d", 1, NULL, &err), FF_ERANGE);
    assert_int_equal(upload_append(u, -1, "d", 1, NULL, &err), FF_ERANGE);
    assert_int_equal(upload_size(u), 3);
    /* A refused chunk does not leave the session busy. */
    struct ff_digest want = digest_of(ABC_DIGEST);
    assert_int_equal(upload_finish(u, &want, NULL, &err), 0);
    upload_close(u);
    blob_is(f, ABC_DIGEST, 3);
}

static void test_digest_mismatch_keeps_session(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *u = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append(u, 0, "abc", 3, NULL, &err), 0);
    struct ff_digest wrong = digest_of(HELLO_DIGEST);
    assert_int_equal(upload_finish(u, &wrong, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "digest mismatch (expected " HELLO_DIGEST ", got "
                                    ABC_DIGEST ")"));
    assert_int_equal(blob_store_stat(f->bs, &wrong, NULL, NULL), FF_ENOTFOUND);
    assert_int_equal(count_dir(f, "blobs/sha256/ba"), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    /* The client may go on: append more, then finish with the right one. */
    assert_int_equal(upload_size(u), 3);
    upload_close(u);
    u = open_ok(f, "app/x", id);
    assert_int_equal(upload_append(u, 3, "d", 1, NULL, &err), 0);
    struct ff_digest abcd;
    assert_int_equal(ff_digest_buffer("abcd", 4, &abcd, NULL), 0);
    assert_int_equal(upload_finish(u, &abcd, NULL, &err), 0);
    upload_close(u);
}

static void write_file(const char *path, const char *content, int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | flags, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static void test_resume_after_crash(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *u = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append(u, 0, "hello ", 6, NULL, &err), 0);
    /* A chunk in flight when the process dies: written, never acknowledged. */
    assert_int_equal(upload_append_begin(u, 6, &err), 0);
    assert_int_equal(upload_append_write(u, "GARBAGE", 7, &err), 0);
    /* Closing aborts the chunk, which a kill -9 would not do; put the disk
     * back the way a crash leaves it: the tail, and a half-written info. */
    upload_close(u);
    char path[256];
    FMT(path, "%s/uploads/%s/info.tmp", f->root, id);
    write_file(path, "{\"half", 0);
    FMT(path, "%s/uploads/%s/data", f->root, id);
    write_file(path, "GARBAGE", O_APPEND);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 13);
    stores_close(f);

    assert_int_equal(stores_open(f, 0), 0);
    u = open_ok(f, "app/x", id);
    assert_int_equal(upload_size(u), 6);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 6);
    FMT(path, "%s/uploads/%s/info.tmp", f->root, id);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(upload_append(u, 6, "world", 5, NULL, &err), 0);
    struct ff_digest want = digest_of(HELLO_DIGEST);
    int64_t size = 0;
    assert_int_equal(upload_finish(u, &want, &size, &err), 0);
    assert_int_equal(size, 11);
    upload_close(u);
    blob_is(f, HELLO_DIGEST, 11);
}

/* A crash after finish committed the blob but before it removed the
 * session: the session must not come back to life, since its data file is
 * the blob's inode and a further PATCH would corrupt the blob. */
static void test_crash_after_commit(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *u = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append(u, 0, "abc", 3, NULL, &err), 0);
    upload_close(u);
    /* What upload_finish does first: commit the data file as the blob. */
    char path[256];
    FMT(path, "%s/uploads/%s", f->root, id);
    int dir_fd = open(path, O_RDONLY | O_DIRECTORY);
    assert_true(dir_fd >= 0);
    int data_fd = openat(dir_fd, "data", O_RDONLY);
    assert_true(data_fd >= 0);
    struct ff_digest want = digest_of(ABC_DIGEST);
    assert_int_equal(blob_store_adopt(f->bs, dir_fd, "data", data_fd, NULL, &want, NULL, NULL,
                                      &err), 0);
    close(data_fd);
    close(dir_fd);
    stores_close(f);

    assert_int_equal(stores_open(f, 0), 0);
    assert_int_equal(upload_open(f->us, "app/x", id, &u, &err), FF_ENOTFOUND);
    assert_int_equal(count_dir(f, "uploads"), 0);
    blob_is(f, ABC_DIGEST, 3);
}

static void test_staging_and_junk(void **state)
{
    struct fixture *f = *state;
    char path[256];
    FMT(path, "%s/uploads/.new-0123456789abcdef0123456789abcdef", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    char file[300];
    FMT(file, "%s/data", path);
    write_file(file, "x", 0);
    /* A session directory without info: opening it is an error, not a crash. */
    FMT(path, "%s/uploads/00000000000000000000000000000000", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    /* One with a damaged info. */
    FMT(path, "%s/uploads/11111111111111111111111111111111", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    FMT(file, "%s/info", path);
    write_file(file, "{\"repo\":\"app/x\",\"created\":1,\"size\":-4}", 0);
    stores_close(f);
    assert_int_equal(stores_open(f, 0), 0);
    assert_int_equal(count_dir(f, "uploads"), 2);
    struct upload *u = NULL;
    struct ff_err err;
    assert_int_equal(upload_open(f->us, "app/x", "00000000000000000000000000000000", &u, &err),
                     FF_ENOTFOUND);
    assert_int_equal(upload_open(f->us, "app/x", "11111111111111111111111111111111", &u, &err),
                     FF_EIO);
    assert_non_null(strstr(err.msg, "malformed info"));
    assert_null(u);
}

static void age(struct fixture *f, const char *id, time_t when)
{
    static const char *const files[] = {"info", "data", ""};
    struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};
    for (size_t i = 0; i < 3; i++) {
        char path[256];
        FMT(path, "%s/uploads/%s/%s", f->root, id, files[i]);
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    }
}

static void test_expire(void **state)
{
    struct fixture *f = *state;
    char old_id[UPLOAD_ID_LEN + 1], young_id[UPLOAD_ID_LEN + 1], held_id[UPLOAD_ID_LEN + 1];
    char cached_id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", old_id, NULL), 0);
    assert_int_equal(upload_create(f->us, "app/x", young_id, NULL), 0);
    assert_int_equal(upload_create(f->us, "app/x", held_id, NULL), 0);
    assert_int_equal(upload_create(f->us, "app/x", cached_id, NULL), 0);
    struct upload *held = open_ok(f, "app/x", held_id);
    struct upload *cached = open_ok(f, "app/x", cached_id);
    assert_int_equal(upload_append(cached, 0, "abc", 3, NULL, NULL), 0);
    upload_close(cached); /* stays in the cache, idle */
    time_t two_hours_ago = time(NULL) - 7200;
    age(f, old_id, two_hours_ago);
    age(f, held_id, two_hours_ago);
    age(f, cached_id, two_hours_ago);
    char stale[256];
    FMT(stale, "%s/uploads/.new-22222222222222222222222222222222", f->root);
    assert_int_equal(mkdir(stale, 0700), 0);
    struct timespec ts[2] = {{.tv_sec = two_hours_ago}, {.tv_sec = two_hours_ago}};
    assert_int_equal(utimensat(AT_FDCWD, stale, ts, 0), 0);

    unsigned count = 0;
    struct ff_err err;
    assert_int_equal(upload_expire(f->us, 3600, &count, &err), 0);
    assert_int_equal(count, 3); /* old, cached and the stale staging directory */
    struct upload *u = NULL;
    assert_int_equal(upload_open(f->us, "app/x", old_id, &u, &err), FF_ENOTFOUND);
    assert_int_equal(upload_open(f->us, "app/x", cached_id, &u, &err), FF_ENOTFOUND);
    u = open_ok(f, "app/x", young_id);
    upload_close(u);
    /* The held one survives and still works. */
    assert_int_equal(upload_append(held, 0, "abc", 3, NULL, &err), 0);
    upload_close(held);
    assert_int_equal(upload_expire(f->us, 3600, &count, &err), 0);
    assert_int_equal(count, 0);
    assert_int_equal(upload_expire(f->us, 0, &count, &err), 0);
    assert_int_equal(count, 2);
    assert_int_equal(count_dir(f, "uploads"), 0);
}

static void test_concurrent_append_refused(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *h1 = open_ok(f, "app/x", id);
    struct upload *h2 = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append_begin(h1, 0, &err), 0);
    assert_int_equal(upload_append_write(h1, "ab", 2, &err), 0);
    assert_int_equal(upload_append_begin(h2, 0, &err), FF_EBUSY);
    assert_non_null(strstr(err.msg, "another request is using it"));
    assert_int_equal(upload_append_begin(h1, 0, &err), FF_EBUSY);
    struct ff_digest want = digest_of(ABC_DIGEST);
    assert_int_equal(upload_finish(h2, &want, NULL, &err), FF_EBUSY);
    assert_int_equal(upload_cancel(h2, &err), FF_EBUSY);
    assert_int_equal(upload_finish(h1, &want, NULL, &err), FF_EBUSY);
    assert_int_equal(upload_append_write(h2, "x", 1, &err), FF_EINVAL);
    assert_int_equal(upload_append_end(h2, NULL, &err), FF_EINVAL);
    int64_t size = 0;
    assert_int_equal(upload_append_end(h1, &size, &err), 0);
    assert_int_equal(size, 2);
    assert_int_equal(upload_append(h2, 2, "c", 1, &size, &err), 0);
    assert_int_equal(upload_size(h1), 3);
    /* Closing a handle mid-append aborts that append. */
    assert_int_equal(upload_append_begin(h1, 3, &err), 0);
    assert_int_equal(upload_append_write(h1, "zz", 2, &err), 0);
    upload_close(h1);
    assert_int_equal(upload_size(h2), 3);
    assert_int_equal(upload_finish(h2, &want, NULL, &err), 0);
    upload_close(h2);
    blob_is(f, ABC_DIGEST, 3);
}

static void test_abort_and_cancel(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *u = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append(u, 0, "ab", 2, NULL, &err), 0);
    assert_int_equal(upload_append_begin(u, 2, &err), 0);
    assert_int_equal(upload_append_write(u, "xyz", 3, &err), 0);
    upload_append_abort(u);
    upload_append_abort(u);
    assert_int_equal(upload_size(u), 2);
    char path[256];
    FMT(path, "%s/uploads/%s/data", f->root, id);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 2);
    assert_int_equal(upload_append(u, 2, "c", 1, NULL, &err), 0);
    assert_int_equal(upload_cancel(u, &err), 0);
    assert_int_equal(upload_cancel(u, &err), FF_ENOTFOUND);
    upload_close(u);
    assert_int_equal(count_dir(f, "uploads"), 0);
    assert_int_equal(upload_open(f->us, "app/x", id, &u, &err), FF_ENOTFOUND);
    struct ff_digest d = digest_of(ABC_DIGEST);
    assert_int_equal(blob_store_stat(f->bs, &d, NULL, NULL), FF_ENOTFOUND);
}

static void test_invalid_ids_and_repos(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    struct ff_err err;
    assert_int_equal(upload_create(f->us, "../x", id, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "repository name"));
    assert_int_equal(count_dir(f, "uploads"), 0);
    assert_int_equal(upload_create(f->us, "app/x", id, &err), 0);
    char upper[UPLOAD_ID_LEN + 1];
    for (size_t i = 0; i <= UPLOAD_ID_LEN; i++)
        upper[i] = (char)toupper((unsigned char)id[i]);
    char shorter[UPLOAD_ID_LEN];
    FMT(shorter, "%.*s", UPLOAD_ID_LEN - 1, id);
    char longer[UPLOAD_ID_LEN + 2];
    FMT(longer, "%s0", id);
    char dotted[UPLOAD_ID_LEN + 1];
    FMT(dotted, "../%s", id + 3);
    const char *const bad[] = {"../x", upper, shorter, longer, dotted, "",
                               ".new-0123456789abcdef0123456789ab", "/etc/passwd"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct upload *u = NULL;
        if (upload_open(f->us, "app/x", bad[i], &u, &err) != FF_ENOTFOUND)
            fail_msg("id \"%s\" accepted", bad[i]);
        assert_null(u);
    }
    struct upload *u = NULL;
    assert_int_equal(upload_open(f->us, "app/x", "0123456789abcdef0123456789abcdef", &u, &err),
                     FF_ENOTFOUND);
    /* A session belongs to its repository. */
    assert_int_equal(upload_open(f->us, "app/y", id, &u, &err), FF_ENOTFOUND);
    u = open_ok(f, "app/x", id);
    upload_close(u);
}

static void test_size_limit(void **state)
{
    struct fixture *f = *state;
    stores_close(f);
    assert_int_equal(stores_open(f, 4), 0);
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", id, NULL), 0);
    struct upload *u = open_ok(f, "app/x", id);
    struct ff_err err;
    assert_int_equal(upload_append(u, 0, "abc", 3, NULL, &err), 0);
    assert_int_equal(upload_append(u, 3, "de", 2, NULL, &err), FF_ETOOBIG);
    assert_int_equal(upload_size(u), 3);
    assert_int_equal(upload_append(u, 3, "d", 1, NULL, &err), 0);
    upload_close(u);
}

struct seen {
    int n;
    int64_t total;
    char repo[NAME_LEN_MAX + 1];
};

static int seen_fn(void *ctx, const char *id, const char *repo, int64_t size, time_t created,
                   time_t updated)
{
    struct seen *s = ctx;
    assert_int_equal(strlen(id), UPLOAD_ID_LEN);
    assert_true(created > 0 && updated >= created - 1);
    s->n++;
    s->total += size;
    FMT(s->repo, "%s", repo);
    return 0;
}

static void test_iterate(void **state)
{
    struct fixture *f = *state;
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/x", a, NULL), 0);
    assert_int_equal(upload_create(f->us, "lib/y", b, NULL), 0);
    struct upload *u = open_ok(f, "lib/y", b);
    assert_int_equal(upload_append(u, 0, "abcd", 4, NULL, NULL), 0);
    upload_close(u);
    struct seen s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(upload_iterate(f->us, seen_fn, &s, NULL), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.total, 4);
    /* Again from disk only. */
    stores_close(f);
    assert_int_equal(stores_open(f, 0), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(upload_iterate(f->us, seen_fn, &s, NULL), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.total, 4);
}

/* More sessions than the cache holds: the idlest are evicted and their
 * digests recomputed from disk at finish. */
static void test_eviction(void **state)
{
    struct fixture *f = *state;
    enum { N = UPLOAD_LIVE_MAX + 8 };
    char (*ids)[UPLOAD_ID_LEN + 1] = calloc(N, sizeof(*ids));
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        assert_int_equal(upload_create(f->us, "app/x", ids[i], NULL), 0);
        struct upload *u = open_ok(f, "app/x", ids[i]);
        assert_int_equal(upload_append(u, 0, "ab", 2, NULL, NULL), 0);
        upload_close(u);
    }
    struct ff_digest want = digest_of(ABC_DIGEST);
    for (int i = 0; i < N; i += 97) {
        struct upload *u = open_ok(f, "app/x", ids[i]);
        assert_int_equal(upload_append(u, 2, "c", 1, NULL, NULL), 0);
        struct ff_err err;
        if (upload_finish(u, &want, NULL, &err) != 0)
            fail_msg("finish %d: %s", i, err.msg);
        upload_close(u);
    }
    free(ids);
}

/* A 64 MiB blob streamed in 1 MiB chunks, each chunk written in pieces. */
static void test_big_upload(void **state)
{
    struct fixture *f = *state;
    const size_t chunk = 1u << 20;
    const size_t piece = 64u << 10;
    unsigned char *buf = malloc(chunk);
    assert_non_null(buf);
    struct ff_digest_ctx *ctx = NULL;
    assert_int_equal(ff_digest_ctx_new(&ctx, NULL), 0);
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/big", id, NULL), 0);
    struct ff_err err;
    int64_t offset = 0;
    for (int i = 0; i < 64; i++) {
        for (size_t j = 0; j < chunk; j++)
            buf[j] = (unsigned char)(j * 7u + (size_t)i * 13u);
        assert_int_equal(ff_digest_ctx_update(ctx, buf, chunk, NULL), 0);
        /* Every chunk is its own PATCH: open, stream, acknowledge, close. */
        struct upload *u = open_ok(f, "app/big", id);
        assert_int_equal(upload_append_begin(u, offset, &err), 0);
        for (size_t p = 0; p < chunk; p += piece)
            assert_int_equal(upload_append_write(u, buf + p, piece, &err), 0);
        assert_int_equal(upload_append_end(u, &offset, &err), 0);
        upload_close(u);
    }
    struct ff_digest want;
    assert_int_equal(ff_digest_ctx_final(ctx, &want, NULL), 0);
    ff_digest_ctx_free(ctx);
    free(buf);
    struct upload *u = open_ok(f, "app/big", id);
    int64_t size = 0;
    assert_int_equal(upload_finish(u, &want, &size, &err), 0);
    upload_close(u);
    assert_int_equal(size, 64 << 20);
    int fd = -1;
    assert_int_equal(blob_store_open_read(f->bs, &want, &fd, &size, &err), 0);
    struct ff_digest again;
    assert_int_equal(ff_digest_fd(fd, &again, NULL), 0);
    close(fd);
    assert_true(ff_digest_equal(&want, &again));
}

/* Threads race PATCHes of identical chunks at the same session: each is
 * either acknowledged whole or refused (busy or wrong offset), never
 * interleaved, so the result is k identical chunks. */
struct race {
    struct fixture *f;
    const char *id;
    int acked;
    int refused;
};

#define RACE_CHUNK 4096
#define RACE_TRIES 200

static void *race_thread(void *arg)
{
    struct race *r = arg;
    char chunk[RACE_CHUNK];
    memset(chunk, 'r', sizeof(chunk));
    for (int i = 0; i < RACE_TRIES; i++) {
        struct upload *u = NULL;
        if (upload_open(r->f->us, "app/race", r->id, &u, NULL) != 0)
            return NULL;
        int rc = upload_append(u, upload_size(u), chunk, sizeof(chunk), NULL, NULL);
        if (rc == 0)
            __atomic_add_fetch(&r->acked, 1, __ATOMIC_SEQ_CST);
        else if (rc == FF_EBUSY || rc == FF_ERANGE)
            __atomic_add_fetch(&r->refused, 1, __ATOMIC_SEQ_CST);
        upload_close(u);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *f = *state;
    char id[UPLOAD_ID_LEN + 1];
    assert_int_equal(upload_create(f->us, "app/race", id, NULL), 0);
    struct race r = {.f = f, .id = id};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(r.acked + r.refused, 4 * RACE_TRIES);
    assert_true(r.acked > 0);
    char *all = malloc((size_t)r.acked * RACE_CHUNK);
    assert_non_null(all);
    memset(all, 'r', (size_t)r.acked * RACE_CHUNK);
    struct ff_digest want;
    assert_int_equal(ff_digest_buffer(all, (size_t)r.acked * RACE_CHUNK, &want, NULL), 0);
    free(all);
    struct upload *u = open_ok(f, "app/race", id);
    assert_int_equal(upload_size(u), (int64_t)r.acked * RACE_CHUNK);
    struct ff_err err;
    assert_int_equal(upload_finish(u, &want, NULL, &err), 0);
    upload_close(u);
}

int main(void)
{
    ff_log_open("ff-test", FF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_mismatch_keeps_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_and_junk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_append_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_ids_and_repos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests_name("registry/upload", tests, NULL, NULL);
}
