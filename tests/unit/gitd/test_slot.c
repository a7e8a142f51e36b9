#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gitd.h"

#include "ff_str.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    ff_strlcpy(dir, "/tmp/ff-gitd-slots-XXXXXX", sizeof(dir));
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[128];
        if (e->d_name[0] != '.' && snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) > 0)
            (void)unlink(path);
    }
    if (d != NULL)
        (void)closedir(d);
    return rmdir(dir);
}

static unsigned count_files(void)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d != NULL)
        (void)closedir(d);
    return n;
}

static void test_limit(void **state)
{
    (void)state;
    int a = -1, b = -1, c = -1, other = -1;
    struct ff_err err;
    assert_int_equal(slot_take(&a, dir, "user", "bob", 2, &err), 0);
    assert_int_equal(slot_take(&b, dir, "user", "bob", 2, &err), 0);
    assert_int_equal(slot_take(&c, dir, "user", "bob", 2, &err), FF_EBUSY);
    assert_int_equal(c, -1);
    assert_non_null(strstr(err.msg, "all 2 user slots of \"bob\" are taken"));
    /* Names and kinds count apart. */
    assert_int_equal(slot_take(&other, dir, "user", "carol", 2, &err), 0);
    (void)close(other);
    assert_int_equal(slot_take(&other, dir, "addr", "bob", 1, &err), 0);
    (void)close(other);
    /* Closing frees the slot. */
    (void)close(a);
    assert_int_equal(slot_take(&c, dir, "user", "bob", 2, &err), 0);
    (void)close(b);
    (void)close(c);
}

static void test_dead_process_frees_its_slot(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int s = -1;
        struct ff_err e;
        char ok = slot_take(&s, dir, "addr", "10.0.0.1", 1, &e) == 0 ? 'y' : 'n';
        if (write(fds[1], &ok, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char ok = 0;
    assert_int_equal(read(fds[0], &ok, 1), 1);
    assert_int_equal(ok, 'y');
    int s = -1;
    struct ff_err err;
    assert_int_equal(slot_take(&s, dir, "addr", "10.0.0.1", 1, &err), FF_EBUSY);
    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, NULL, 0);
    assert_int_equal(slot_take(&s, dir, "addr", "10.0.0.1", 1, &err), 0);
    (void)close(s);
    (void)close(fds[0]);
    (void)close(fds[1]);
}

static void test_sweep(void **state)
{
    (void)state;
    int held = -1, freed = -1;
    struct ff_err err;
    assert_int_equal(slot_take(&held, dir, "addr", "::1", 3, &err), 0);
    assert_int_equal(slot_take(&freed, dir, "addr", "192.0.2.7", 3, &err), 0);
    (void)close(freed);
    unsigned before = count_files();
    assert_int_equal(slot_sweep(dir, &err), 0);
    assert_int_equal(count_files(), 1);
    assert_true(before >= 2);
    /* The held slot still counts after a sweep. */
    int again = -1;
    assert_int_equal(slot_take(&again, dir, "addr", "::1", 1, &err), FF_EBUSY);
    (void)close(held);
    assert_int_equal(slot_take(&again, dir, "addr", "::1", 1, &err), 0);
    (void)close(again);
    assert_int_equal(slot_sweep("/nonexistent/run", &err), FF_EIO);
}

static void test_bad_names(void **state)
{
    (void)state;
    int fd = -1;
    struct ff_err err;
    const char *bad[] = {"", "../x", "a/b", ".hidden", "sp ace", "tab\t", "\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(slot_take(&fd, dir, "user", bad[i], 4, &err), FF_EINVAL);
        assert_int_equal(fd, -1);
    }
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(slot_take(&fd, dir, "user", longname, 4, &err), FF_EINVAL);
    assert_int_equal(slot_take(&fd, "/nonexistent/run", "user", "bob", 4, &err), FF_EIO);
    assert_int_equal(count_files(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_process_frees_its_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
