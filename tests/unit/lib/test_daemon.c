#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_daemon.h"

#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_args(void **state)
{
    (void)state;
    char *argv[] = {"ff-x", "-f", "x.ini", "-n", "-d", "mint-token", "--repo", "a", NULL};
    struct ff_daemon_opts o;
    struct ff_err err;
    assert_int_equal(ff_daemon_parse_args(8, argv, &o, &err), 0);
    assert_string_equal(o.config_path, "x.ini");
    assert_true(o.check_only);
    assert_true(o.debug);
    assert_int_equal(o.argc, 3);
    assert_string_equal(o.argv[0], "mint-token");

    char *none[] = {"ff-x", NULL};
    assert_int_equal(ff_daemon_parse_args(1, none, &o, &err), 0);
    assert_null(o.config_path);
    assert_int_equal(o.argc, 0);

    char *missing[] = {"ff-x", "-f", NULL};
    assert_int_equal(ff_daemon_parse_args(2, missing, &o, &err), FF_EINVAL);
    assert_string_equal(err.msg, "option -f needs a file name");
    char *unknown[] = {"ff-x", "-z", NULL};
    assert_int_equal(ff_daemon_parse_args(2, unknown, &o, &err), FF_EINVAL);
    assert_string_equal(err.msg, "unknown option \"-z\"");
    char *dashdash[] = {"ff-x", "--", "-n", NULL};
    assert_int_equal(ff_daemon_parse_args(3, dashdash, &o, &err), 0);
    assert_false(o.check_only);
    assert_int_equal(o.argc, 1);
}

/* Runs the drop in a child, so this process keeps its privileges. */
static void test_drop_privileges(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct ff_err err;
        if (ff_daemon_drop_privileges(geteuid() == 0 ? "nobody" : NULL, &err) != 0)
            _exit(10);
        if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
            _exit(11);
        if (getuid() == 0 || geteuid() == 0 || setuid(0) == 0)
            _exit(12);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    struct ff_err err;
    if (geteuid() == 0) {
        pid = fork();
        if (pid == 0)
            _exit(ff_daemon_drop_privileges("no-such-user-ff", &err) == FF_ENOTFOUND ? 0 : 1);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_drop_privileges),
    };
    return cmocka_run_group_tests_name("lib/daemon", tests, NULL, NULL);
}
