#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define MIB ((size_t)1024 * 1024)
/* Several of the reader's 1 MiB blocks, and not a multiple of anything. */
#define BIG_SIZE (6 * MIB + 4321)
/* What libmicrohttpd asks for at most per call (FILE_READ_BLOCK). */
#define MHD_BLOCK ((size_t)256 * 1024)

struct fixture {
    char top[64];
    char root[80];
    struct blob_store *bs;
    unsigned char *data;
    struct ff_digest d;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Commits len bytes of f->data as a blob, the way a push does. */
static void put_blob(struct fixture *f, size_t len)
{
    struct blob_writer *w = NULL;
    struct ff_err err;
    assert_int_equal(blob_writer_new(f->bs, &w, &err), 0);
    assert_int_equal(blob_writer_write(w, f->data, len, &err), 0);
    assert_int_equal(blob_writer_commit(w, NULL, &f->d, NULL, &err), 0);
    blob_writer_free(w);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    (void)snprintf(f->top, sizeof(f->top), "/tmp/ff-blobread-XXXXXX");
    f->data = malloc(BIG_SIZE);
    struct ff_err err;
    if (f->data == NULL || mkdtemp(f->top) == NULL) {
        free(f->data);
        free(f);
        return -1;
    }
    (void)snprintf(f->root, sizeof(f->root), "%s/store", f->top);
    if (blob_store_open(f->root, 0, &f->bs, &err) != 0) {
        (void)fprintf(stderr, "setup: %s\n", err.msg);
        free(f->data);
        free(f);
        return -1;
    }
    uint32_t x = 88172645u;
    for (size_t i = 0; i < BIG_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f->data[i] = (unsigned char)x;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    blob_store_free(f->bs);
    nftw(f->top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->data);
    free(f);
    return 0;
}

static struct blob_reader *reader_open(struct fixture *f, uint64_t offset, uint64_t length,
                                       int *fd_out)
{
    int fd = -1;
    int64_t size = 0;
    struct ff_err err;
    assert_int_equal(blob_store_open_read(f->bs, &f->d, &fd, &size, &err), 0);
    if (fd_out != NULL)
        *fd_out = dup(fd);
    struct blob_reader *r = NULL;
    assert_int_equal(blob_reader_new(f->bs, &f->d, fd, offset, length, &r), 0);
    return r;
}

/* Reads the whole range as libmicrohttpd does: from where the last read
 * ended, asking for at most step bytes; checks the bytes against data. */
static void read_all(struct blob_reader *r, const unsigned char *want, size_t len, size_t step)
{
    char *buf = malloc(step);
    assert_non_null(buf);
    size_t pos = 0;
    while (pos < len) {
        ssize_t n = blob_reader_read(r, pos, buf, step);
        assert_true(n > 0 && (size_t)n <= step && (size_t)n <= len - pos);
        assert_memory_equal(buf, want + pos, (size_t)n);
        pos += (size_t)n;
    }
    free(buf);
}

/* True if the page at offset of fd is in the page cache. */
static bool cached(int fd, off_t offset)
{
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, offset);
    assert_true(p != MAP_FAILED);
    unsigned char vec[1] = {0};
    assert_int_equal(mincore(p, 4096, vec), 0);
    munmap(p, 4096);
    return (vec[0] & 1) != 0;
}

/* tmpfs keeps every file in the page cache: nothing to observe there. */
static bool on_tmpfs(int fd)
{
    struct statfs sf;
    assert_int_equal(fstatfs(fd, &sf), 0);
    return sf.f_type == TMPFS_MAGIC;
}

static void test_fresh_big_blob_bypasses_page_cache(void **state)
{
    struct fixture *f = *state;
    put_blob(f, BIG_SIZE);
    int fd = -1;
    struct blob_reader *r = reader_open(f, 0, BIG_SIZE, &fd);
    read_all(r, f->data, BIG_SIZE, MHD_BLOCK);
    blob_reader_free(r);
    /* Pushed and pulled with O_DIRECT: the middle never entered the cache. */
    if (!on_tmpfs(fd))
        assert_false(cached(fd, (off_t)(3 * MIB)));
    close(fd);
}

static void test_odd_steps_and_range(void **state)
{
    struct fixture *f = *state;
    put_blob(f, BIG_SIZE);
    uint64_t first = 5000;
    uint64_t len = BIG_SIZE - first - 777;
    struct blob_reader *r = reader_open(f, first, len, NULL);
    read_all(r, f->data + first, len, 100003);
    blob_reader_free(r);
    r = reader_open(f, MIB - 1, 2, NULL);
    read_all(r, f->data + MIB - 1, 2, MHD_BLOCK);
    blob_reader_free(r);
}

static void test_cached_and_small_blobs(void **state)
{
    struct fixture *f = *state;
    put_blob(f, BIG_SIZE);
    int fd = -1;
    struct blob_reader *r = reader_open(f, 0, BIG_SIZE, &fd);
    char *buf = malloc(BIG_SIZE);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, BIG_SIZE, 0), (ssize_t)BIG_SIZE);
    free(buf);
    blob_reader_free(r);
    /* Now in the page cache: read from there. */
    r = reader_open(f, 0, BIG_SIZE, NULL);
    read_all(r, f->data, BIG_SIZE, MHD_BLOCK);
    blob_reader_free(r);
    close(fd);
    put_blob(f, 100);
    r = reader_open(f, 0, 100, NULL);
    read_all(r, f->data, 100, MHD_BLOCK);
    blob_reader_free(r);
}

static void test_jump_back_falls_back_to_plain_reads(void **state)
{
    struct fixture *f = *state;
    put_blob(f, BIG_SIZE);
    struct blob_reader *r = reader_open(f, 0, BIG_SIZE, NULL);
    char buf[4096];
    assert_int_equal(blob_reader_read(r, 3 * MIB / 2, buf, sizeof(buf)), 4096);
    assert_memory_equal(buf, f->data + 3 * MIB / 2, sizeof(buf));
    read_all(r, f->data, BIG_SIZE, MHD_BLOCK);
    assert_int_equal(blob_reader_read(r, BIG_SIZE, buf, sizeof(buf)), FF_EINVAL);
    blob_reader_free(r);
}

static void test_blob_shrunk_under_reader(void **state)
{
    struct fixture *f = *state;
    put_blob(f, BIG_SIZE);
    int fd = -1;
    struct blob_reader *r = reader_open(f, 0, BIG_SIZE, &fd);
    char path[256];
    char hex[FF_DIGEST_STR_SIZE];
    ff_digest_format(&f->d, hex);
    (void)snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", f->root, hex + 7, hex + 7);
    assert_int_equal(truncate(path, (off_t)(2 * MIB)), 0);
    char *buf = malloc(MHD_BLOCK);
    assert_non_null(buf);
    size_t pos = 0;
    ssize_t n;
    while ((n = blob_reader_read(r, pos, buf, MHD_BLOCK)) > 0)
        pos += (size_t)n;
    assert_int_equal(n, FF_EIO);
    assert_true(pos < BIG_SIZE);
    free(buf);
    blob_reader_free(r);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_big_blob_bypasses_page_cache, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_odd_steps_and_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_and_small_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jump_back_falls_back_to_plain_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_blob_shrunk_under_reader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
