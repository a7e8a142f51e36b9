#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* More than several of the spool's 512 KiB pieces, and not a multiple. */
#define STREAM_SIZE (5 * 1024 * 1024 + 12345)

struct fixture {
    char path[64];
    int fd;
    unsigned char *data;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    (void)snprintf(f->path, sizeof(f->path), "/tmp/ff-spool-XXXXXX");
    f->fd = mkstemp(f->path);
    f->data = malloc(STREAM_SIZE);
    if (f->fd < 0 || f->data == NULL) {
        free(f->data);
        free(f);
        return -1;
    }
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < STREAM_SIZE; i++) {
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
    (void)close(f->fd);
    (void)unlink(f->path);
    free(f->data);
    free(f);
    return 0;
}

/* The file from offset on holds exactly data[0, len). */
static void assert_file(const struct fixture *f, int64_t offset, size_t len)
{
    struct stat st;
    assert_int_equal(fstat(f->fd, &st), 0);
    assert_int_equal(st.st_size, offset + (int64_t)len);
    unsigned char *back = malloc(len + 1);
    assert_non_null(back);
    assert_int_equal(pread(f->fd, back, len, offset), (ssize_t)len);
    assert_memory_equal(back, f->data, len);
    free(back);
}

static void assert_digest_of(struct ff_digest_ctx *ctx, const void *data, size_t len)
{
    struct ff_err err;
    struct ff_digest got, want;
    assert_int_equal(ff_digest_ctx_final(ctx, &got, &err), 0);
    assert_int_equal(ff_digest_buffer(data, len, &want, &err), 0);
    assert_true(ff_digest_equal(&got, &want));
}

/* Pieces of every size from 1 byte to over a buffer, at an offset: the
 * file and the digest are the stream's, in order. */
static void test_stream_in_odd_pieces(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct ff_digest_ctx *ctx = NULL;
    struct spool *sp = NULL;
    assert_int_equal(pwrite(f->fd, "head", 4, 0), 4);
    assert_int_equal(ff_digest_ctx_new(&ctx, &err), 0);
    assert_int_equal(spool_new(f->fd, 4, ctx, &sp, &err), 0);
    size_t off = 0, step = 1;
    while (off < STREAM_SIZE) {
        size_t n = step < STREAM_SIZE - off ? step : STREAM_SIZE - off;
        assert_int_equal(spool_write(sp, f->data + off, n, &err), 0);
        off += n;
        step = step * 3 + 7;
        if (step > 700000)
            step = 1;
    }
    assert_int_equal(spool_flush(sp, &err), 0);
    spool_free(sp);
    assert_file(f, 4, STREAM_SIZE);
    assert_digest_of(ctx, f->data, STREAM_SIZE);
    ff_digest_ctx_free(ctx);
}

/* A flush in the middle leaves everything so far on the file; writing on
 * afterwards continues where it was. No digest wanted: write only. */
static void test_flush_then_go_on_without_digest(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct spool *sp = NULL;
    assert_int_equal(spool_new(f->fd, 0, NULL, &sp, &err), 0);
    assert_int_equal(spool_write(sp, f->data, 100, &err), 0);
    assert_int_equal(spool_flush(sp, &err), 0);
    assert_file(f, 0, 100);
    assert_int_equal(spool_write(sp, f->data + 100, STREAM_SIZE - 100, &err), 0);
    assert_int_equal(spool_flush(sp, &err), 0);
    assert_int_equal(spool_flush(sp, &err), 0);
    spool_free(sp);
    assert_file(f, 0, STREAM_SIZE);
}

/* A file that cannot be written: the error comes back (from a later write
 * or the flush), says what failed, and nothing is claimed written. */
static void test_write_error_is_reported(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    int ro = open(f->path, O_RDONLY | O_CLOEXEC);
    assert_true(ro >= 0);
    struct spool *sp = NULL;
    assert_int_equal(spool_new(ro, 0, NULL, &sp, &err), 0);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < STREAM_SIZE; off += 65536) {
        size_t n = STREAM_SIZE - off < 65536 ? STREAM_SIZE - off : 65536;
        rc = spool_write(sp, f->data + off, n, &err);
    }
    if (rc == 0)
        rc = spool_flush(sp, &err);
    assert_int_equal(rc, FF_EIO);
    assert_non_null(strstr(err.msg, "write"));
    spool_free(sp);
    (void)close(ro);

    /* A short blob fails at the flush, on the caller's thread. */
    ro = open(f->path, O_RDONLY | O_CLOEXEC);
    assert_true(ro >= 0);
    assert_int_equal(spool_new(ro, 0, NULL, &sp, &err), 0);
    assert_int_equal(spool_write(sp, "abc", 3, &err), 0);
    assert_int_equal(spool_flush(sp, &err), FF_EIO);
    spool_free(sp);
    (void)close(ro);
}

/* True if the page at offset of fd is in the page cache; false on tmpfs,
 * which keeps everything there, where the test cannot tell. */
static bool cached_off_tmpfs(int fd, off_t offset)
{
    struct statfs sf;
    assert_int_equal(fstatfs(fd, &sf), 0);
    if (sf.f_type == TMPFS_MAGIC)
        return false;
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, offset);
    assert_true(p != MAP_FAILED);
    unsigned char vec[1] = {0};
    assert_int_equal(mincore(p, 4096, vec), 0);
    munmap(p, 4096);
    return (vec[0] & 1) != 0;
}

/* With O_DIRECT allowed, an append at an odd offset still ends up whole
 * and hashed in order, and the aligned middle went past the page cache. */
static void test_direct_at_odd_offset(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct ff_digest_ctx *ctx = NULL;
    struct spool *sp = NULL;
    unsigned char head[4097] = {0};
    assert_int_equal(pwrite(f->fd, head, sizeof(head), 0), (ssize_t)sizeof(head));
    assert_int_equal(ff_digest_ctx_new(&ctx, &err), 0);
    assert_int_equal(spool_new(f->fd, sizeof(head), ctx, &sp, &err), 0);
    spool_direct_open(sp, AT_FDCWD, f->path);
    for (size_t off = 0, n; off < STREAM_SIZE; off += n) {
        n = STREAM_SIZE - off < 16411 ? STREAM_SIZE - off : 16411;
        assert_int_equal(spool_write(sp, f->data + off, n, &err), 0);
    }
    assert_int_equal(spool_flush(sp, &err), 0);
    spool_free(sp);
    assert_false(cached_off_tmpfs(f->fd, (off_t)2 << 20));
    assert_file(f, sizeof(head), STREAM_SIZE);
    assert_digest_of(ctx, f->data, STREAM_SIZE);
    ff_digest_ctx_free(ctx);
}

/* A name that is not the spool's file is not used for anything. */
static void test_direct_refuses_another_file(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    char other[64];
    (void)snprintf(other, sizeof(other), "/tmp/ff-spool-other-XXXXXX");
    int ofd = mkstemp(other);
    assert_true(ofd >= 0);
    struct spool *sp = NULL;
    assert_int_equal(spool_new(f->fd, 0, NULL, &sp, &err), 0);
    spool_direct_open(sp, AT_FDCWD, other);
    assert_int_equal(spool_write(sp, f->data, STREAM_SIZE, &err), 0);
    assert_int_equal(spool_flush(sp, &err), 0);
    spool_free(sp);
    assert_file(f, 0, STREAM_SIZE);
    struct stat st;
    assert_int_equal(fstat(ofd, &st), 0);
    assert_int_equal(st.st_size, 0);
    (void)close(ofd);
    (void)unlink(other);
}

/* Freed without a flush (an aborted upload): no leak, no hang, and the
 * file is no longer touched afterwards. */
static void test_free_without_flush(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    struct spool *sp = NULL;
    assert_int_equal(spool_new(f->fd, 0, NULL, &sp, &err), 0);
    assert_int_equal(spool_write(sp, f->data, STREAM_SIZE, &err), 0);
    spool_free(sp);
    struct stat st;
    assert_int_equal(fstat(f->fd, &st), 0);
    assert_true(st.st_size <= STREAM_SIZE);
    spool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_in_odd_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_then_go_on_without_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_without_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_at_odd_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_refuses_another_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
