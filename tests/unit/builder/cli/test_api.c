#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void test_exit_status(void **state)
{
    (void)state;
    assert_int_equal(cli_exit_status(0), CLI_EXIT_OK);
    assert_int_equal(cli_exit_status(CLI_EUSAGE), 2);
    assert_int_equal(cli_exit_status(FF_EAUTH), 3);
    assert_int_equal(cli_exit_status(FF_EEXPIRED), 3);
    assert_int_equal(cli_exit_status(FF_ENOTFOUND), 4);
    assert_int_equal(cli_exit_status(FF_ENET), 5);
    assert_int_equal(cli_exit_status(FF_ETIMEOUT), 5);
    /* A server's 400, 403, 409, 429, 5xx and local failures are all 1. */
    const int ones[] = {FF_EINVAL, FF_EDENIED, FF_EEXIST, FF_EBUSY, FF_EIO, FF_ENOMEM,
                        FF_ETOOBIG};
    for (size_t i = 0; i < sizeof(ones) / sizeof(ones[0]); i++)
        assert_int_equal(cli_exit_status(ones[i]), CLI_EXIT_ERROR);
}

static void expect_path(char *got, const char *want)
{
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_pathf(void **state)
{
    (void)state;
    expect_path(api_pathf("/v1/tokens/%s", "12"), "/v1/tokens/12");
    expect_path(api_pathf("/v1/apps/%s/%s", "bob", "demo-1.x_y~"), "/v1/apps/bob/demo-1.x_y~");
    /* Nothing in an operand can add a path step or a query. */
    expect_path(api_pathf("/v1/devices/%s", "a/../../v1/audit?x=1#f"),
                "/v1/devices/a%2F..%2F..%2Fv1%2Faudit%3Fx%3D1%23f");
    expect_path(api_pathf("/v1/keys/%s", ".."), "/v1/keys/%2E%2E");
    expect_path(api_pathf("/v1/keys/%s", "."), "/v1/keys/%2E");
    expect_path(api_pathf("/v1/keys/%s", "..."), "/v1/keys/...");
    expect_path(api_pathf("/x/%s/env/%s", "caf\xc3\xa9", "A B%"), "/x/caf%C3%A9/env/A%20B%25");
    expect_path(api_pathf("/x/%s", ""), "/x/");

    char *path = NULL;
    struct ff_err err;
    assert_int_equal(api_app_path("bob/demo", "/env/%s", "K/V", &path, &err), 0);
    expect_path(path, "/v1/apps/bob/demo/env/K%2FV");
    assert_int_equal(api_app_path("bob/demo", "", NULL, &path, &err), 0);
    expect_path(path, "/v1/apps/bob/demo");
    assert_int_equal(api_app_path("bob", "", NULL, &path, &err), CLI_EUSAGE);
    assert_null(path);
}

static void test_requests_need_configuration(void **state)
{
    (void)state;
    struct cli c = {.cmd = "test", .out = stdout};
    struct ff_err err;
    json_t *out = (json_t *)1;
    /* No URL: nothing is sent, and the message says where to set it. */
    assert_int_equal(api_get(&c, "/v1/whoami", &out, &err), FF_EINVAL);
    assert_null(out);
    if (strstr(err.msg, "FF_API_URL") == NULL)
        fail_msg("message: %s", err.msg);
    /* No token: exit 3, and it says how to get one. */
    c.cfg.api_url = strdup("https://127.0.0.1:1");
    assert_int_equal(api_get(&c, "/v1/whoami", &out, &err), FF_EAUTH);
    assert_int_equal(cli_exit_status(FF_EAUTH), CLI_EXIT_AUTH);
    if (strstr(err.msg, "ff login") == NULL)
        fail_msg("message: %s", err.msg);
    assert_null(c.http);
    config_release(&c.cfg);
    api_release(&c);
}

static void test_about(void **state)
{
    (void)state;
    struct ff_err err;
    (void)ff_err_set(&err, FF_ENOTFOUND, "app not found");
    assert_int_equal(api_about(FF_ENOTFOUND, "bob/x", &err), FF_ENOTFOUND);
    assert_string_equal(err.msg, "bob/x: app not found");
    (void)ff_err_set(&err, FF_EDENIED, "no");
    assert_int_equal(api_about(FF_EDENIED, "bob/x", &err), FF_EDENIED);
    assert_string_equal(err.msg, "no");
    assert_int_equal(api_about(0, "bob/x", &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_pathf),
        cmocka_unit_test(test_requests_need_configuration),
        cmocka_unit_test(test_about),
    };
    return cmocka_run_group_tests_name("builder/cli/api", tests, NULL, NULL);
}
