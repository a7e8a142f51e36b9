#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/ff-file-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"f", "link", "fifo", "sub"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[128];
        (void)snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        (void)remove(p);
    }
    (void)rmdir(f->dir);
    free(f);
    return 0;
}

static const char *at(struct fixture *f, const char *name)
{
    (void)snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
    return f->path;
}

static void put(struct fixture *f, const char *name, const void *data, size_t len)
{
    FILE *fp = fopen(at(f, name), "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Sizes around the cap and the first buffer: exact bytes, NUL after. */
static void test_sizes(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 10000};
    char *data = malloc(10001);
    assert_non_null(data);
    for (size_t i = 0; i < 10001; i++)
        data[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        put(f, "f", data, sizes[i]);
        struct ff_err err;
        char *out = NULL;
        size_t len = 99;
        assert_int_equal(ff_file_read(at(f, "f"), 10000, 0, &out, &len, &err), 0);
        assert_int_equal(len, sizes[i]);
        assert_memory_equal(out, data, len);
        assert_int_equal(out[len], '\0');
        free(out);
        /* One byte over the cap is refused, naming the file. */
        if (sizes[i] > 0) {
            assert_int_equal(ff_file_read(at(f, "f"), sizes[i] - 1, FF_FILE_SECRET, &out, &len,
                                          &err),
                             FF_ETOOBIG);
            assert_null(out);
            assert_non_null(strstr(err.msg, "is larger than"));
            assert_non_null(strstr(err.msg, f->dir));
        }
    }
    free(data);
}

static void test_not_a_plain_file(void **state)
{
    struct fixture *f = *state;
    struct ff_err err;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(ff_file_read(at(f, "f"), 100, 0, &out, &len, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "does not exist"));

    assert_int_equal(mkdir(at(f, "sub"), 0700), 0);
    assert_int_equal(ff_file_read(at(f, "sub"), 100, 0, &out, &len, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));

    /* A FIFO with no writer: refused at once, not waited on. */
    assert_int_equal(mkfifo(at(f, "fifo"), 0600), 0);
    assert_int_equal(ff_file_read(at(f, "fifo"), 100, 0, &out, &len, &err), FF_EINVAL);

    put(f, "f", "hello", 5);
    assert_int_equal(symlink("f", at(f, "link")), 0);
    assert_int_equal(ff_file_read(at(f, "link"), 100, 0, &out, &len, &err), 0);
    assert_string_equal(out, "hello");
    free(out);
    out = NULL;
    assert_int_equal(ff_file_read(at(f, "link"), 100, FF_FILE_NOFOLLOW, &out, &len, &err),
                     FF_EINVAL);
    assert_non_null(strstr(err.msg, "symbolic link"));
    assert_null(out);
}

/* From a descriptor whose size fstat cannot tell (a pipe): read to the
 * end in growing pieces; the cap still holds. */
static void test_read_fd_from_a_pipe(void **state)
{
    (void)state;
    enum { N = 70000 };
    char *data = malloc(N);
    assert_non_null(data);
    memset(data, 'x', N);
    for (int cap = 0; cap < 2; cap++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            (void)close(p[0]);
            ssize_t w = write(p[1], data, N);
            _exit(w == N ? 0 : 1);
        }
        (void)close(p[1]);
        struct ff_err err;
        char *out = NULL;
        size_t len = 0;
        int rc = ff_file_read_fd(p[0], "pipe", cap ? N - 1 : N, 0, &out, &len, &err);
        (void)close(p[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (cap) {
            assert_int_equal(rc, FF_ETOOBIG);
            assert_null(out);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(len, N);
            assert_memory_equal(out, data, N);
            free(out);
        }
    }
    free(data);

    struct ff_err err;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(ff_file_read_fd(0, "stdin", SIZE_MAX, 0, &out, &len, &err), FF_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_plain_file, setup, teardown),
        cmocka_unit_test(test_read_fd_from_a_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
