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

static const struct ff_conf_key schema[] = {
    {"server", "listen", FF_CONF_STRING, "127.0.0.1", 0, 0},
    {"server", "port", FF_CONF_INT, "5443", 1, 65535},
    {"server", "cert", FF_CONF_STRING, NULL, 0, 0},
    {"server", "key", FF_CONF_STRING, NULL, 0, 0},
    {"server", "max_connections", FF_CONF_INT, "256", 1, 65536},
    {"server", "max_per_ip", FF_CONF_INT, "64", 1, 65536},
    {"server", "timeout", FF_CONF_INT, "60", 1, 3600},
    {"log", "level", FF_CONF_STRING, "info", 0, 0},
};

static void test_config_helpers(void **state)
{
    (void)state;
    struct ff_conf *c = NULL;
    struct ff_err err;
    const char *text = "[server]\nport = 9\ncert = c.pem\nkey = k.pem\ntimeout = 5\n"
                       "[log]\nlevel = warn\n";
    assert_int_equal(ff_conf_load_string(text, "d.ini", schema, 8, &c, &err), 0);
    struct ff_http_server_config hc;
    ff_daemon_http_config(c, &hc);
    assert_string_equal(hc.bind_addr, "127.0.0.1");
    assert_int_equal(hc.port, 9);
    assert_string_equal(hc.cert_path, "c.pem");
    assert_string_equal(hc.key_path, "k.pem");
    assert_int_equal(hc.max_connections, 256);
    assert_int_equal(hc.max_per_ip, 64);
    assert_int_equal(hc.timeout_seconds, 5);
    enum ff_log_level level = FF_LOG_DEBUG;
    assert_int_equal(ff_daemon_log_level(c, "d.ini", &level, &err), 0);
    assert_int_equal(level, FF_LOG_WARN);
    ff_conf_free(c);
    assert_int_equal(ff_conf_load_string("[log]\nlevel = loud\n", "d.ini", schema, 8, &c, &err),
                     0);
    assert_int_equal(ff_daemon_log_level(c, "d.ini", &level, &err), FF_EINVAL);
    assert_string_equal(err.msg, "config \"d.ini\": [log] level: \"loud\" is not debug, info, "
                                 "warn or error");
    ff_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_drop_privileges),
        cmocka_unit_test(test_config_helpers),
    };
    return cmocka_run_group_tests_name("lib/daemon", tests, NULL, NULL);
}
