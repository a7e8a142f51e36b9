#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct ff_conf_key schema[] = {
    {"server", "listen", FF_CONF_STRING, "127.0.0.1:5443", 0, 0},
    {"server", "workers", FF_CONF_INT, "4", 1, 64},
    {"server", "max_body", FF_CONF_SIZE, "4M", 1, 1LL << 40},
    {"server", "tls", FF_CONF_BOOL, "true", 0, 0},
    {"auth", "public_key", FF_CONF_LIST, NULL, 0, 0},
    {"auth", "issuer", FF_CONF_STRING, NULL, 0, 0},
};
#define N_SCHEMA (sizeof(schema) / sizeof(schema[0]))

static void test_defaults(void **state)
{
    (void)state;
    struct ff_conf *c = NULL;
    assert_int_equal(ff_conf_load(NULL, schema, N_SCHEMA, &c, NULL), 0);
    assert_string_equal(ff_conf_string(c, "server", "listen"), "127.0.0.1:5443");
    assert_int_equal(ff_conf_int(c, "server", "workers"), 4);
    assert_int_equal(ff_conf_int(c, "server", "max_body"), 4 << 20);
    assert_true(ff_conf_bool(c, "server", "tls"));
    assert_null(ff_conf_string(c, "auth", "issuer"));
    const char *const *items;
    assert_int_equal(ff_conf_list(c, "auth", "public_key", &items), 0);
    assert_false(ff_conf_is_set(c, "server", "workers"));
    ff_conf_free(c);
}

static void test_values_and_lists(void **state)
{
    (void)state;
    const char *text = "; comment\n[server]\nlisten = 0.0.0.0:1\nworkers=8\nmax_body = 2G\n"
                       "tls = off\n\n[auth]\npublic_key = a.pem\npublic_key = b.pem\n"
                       "issuer = ff-builder\n";
    struct ff_conf *c = NULL;
    struct ff_err err;
    assert_int_equal(ff_conf_load_string(text, "t.ini", schema, N_SCHEMA, &c, &err), 0);
    assert_string_equal(ff_conf_string(c, "server", "listen"), "0.0.0.0:1");
    assert_int_equal(ff_conf_int(c, "server", "workers"), 8);
    assert_int_equal(ff_conf_int(c, "server", "max_body"), 2LL << 30);
    assert_false(ff_conf_bool(c, "server", "tls"));
    const char *const *items;
    assert_int_equal(ff_conf_list(c, "auth", "public_key", &items), 2);
    assert_string_equal(items[0], "a.pem");
    assert_string_equal(items[1], "b.pem");
    assert_true(ff_conf_is_set(c, "server", "workers"));
    ff_conf_free(c);
}

static void expect_error(const char *text, int code, const char *fragment)
{
    struct ff_conf *c = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = ff_conf_load_string(text, "bad.ini", schema, N_SCHEMA, &c, &err);
    if (rc != code || strstr(err.msg, fragment) == NULL)
        fail_msg("rc=%d msg=\"%s\", expected %d and \"%s\"", rc, err.msg, code, fragment);
    assert_null(c);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[server]\nlisten_typo = x\n", FF_EINVAL,
                 "line 2: [server] listen_typo: unknown key \"listen_typo\" in section [server]");
    expect_error("[nosuch]\nlisten = x\n", FF_EINVAL, "unknown key");
    expect_error("listen = x\n", FF_EINVAL, "unknown key \"listen\" in section []");
    expect_error("[server]\nworkers = 0\n", FF_ERANGE, "0 is outside 1..64");
    expect_error("[server]\nworkers = 65\n", FF_ERANGE, "outside");
    expect_error("[server]\nworkers = four\n", FF_EINVAL, "\"four\" is not an integer");
    expect_error("[server]\nworkers = 4x\n", FF_EINVAL, "not an integer");
    expect_error("[server]\nmax_body = 3Q\n", FF_EINVAL, "not a size");
    expect_error("[server]\nmax_body = 2T\n", FF_ERANGE, "outside");
    expect_error("[server]\ntls = maybe\n", FF_EINVAL, "not true or false");
    expect_error("[server]\nworkers = 2\nworkers = 3\n", FF_EINVAL, "line 3: [server] workers: key is set twice");
    expect_error("[server\nworkers = 2\n", FF_EINVAL, "line 1: syntax error");
    expect_error("[server]\njust words\n", FF_EINVAL, "line 2: syntax error");
}

static void test_long_line_refused(void **state)
{
    (void)state;
    char text[512];
    int n = snprintf(text, sizeof(text), "[server]\nlisten = ");
    memset(text + n, 'x', 300);
    memcpy(text + n + 300, "\n", 2);
    expect_error(text, FF_EINVAL, "line 2: longer than 199 characters");
}

static void test_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ff-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[server]\nworkers = 2\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct ff_conf *c = NULL;
    struct ff_err err;
    assert_int_equal(ff_conf_load(path, schema, N_SCHEMA, &c, &err), 0);
    assert_int_equal(ff_conf_int(c, "server", "workers"), 2);
    ff_conf_free(c);
    unlink(path);
    assert_int_equal(ff_conf_load(path, schema, N_SCHEMA, &c, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, path));
}

static void test_require(void **state)
{
    (void)state;
    struct ff_conf *c = NULL;
    struct ff_err err;
    assert_int_equal(ff_conf_load_string("[auth]\nissuer = b\n", "r.ini", schema, N_SCHEMA,
                                         &c, &err), 0);
    assert_int_equal(ff_conf_require(c, "r.ini", "auth", "issuer", &err), 0);
    assert_int_equal(ff_conf_require(c, "r.ini", "server", "listen", &err), 0); /* default */
    ff_conf_free(c);
    assert_int_equal(ff_conf_load(NULL, schema, N_SCHEMA, &c, &err), 0);
    assert_int_equal(ff_conf_require(c, "r.ini", "auth", "issuer", &err), FF_EINVAL);
    assert_string_equal(err.msg, "config \"r.ini\": [auth] issuer is required");
    ff_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_and_lists),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_long_line_refused),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_require),
    };
    return cmocka_run_group_tests_name("lib/conf", tests, NULL, NULL);
}
