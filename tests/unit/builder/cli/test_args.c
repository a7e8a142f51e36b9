#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const struct cli_opt opts[] = {
    {"--name", "N", "a name"},
    {"--limit", "N", "a count"},
    {"--admin", NULL, "a flag"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))
/* The variadic list's end: a null pointer of the type read (bare NULL may
 * be an int). */
#define END ((char *)NULL)

/* Parses the NULL-terminated words with opts; returns the result code. */
static int parse(struct cli_args *a, struct ff_err *err, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (char *w = va_arg(ap, char *); w != NULL; w = va_arg(ap, char *))
        argv[argc++] = w;
    va_end(ap);
    args_init(a, opts, N_OPTS);
    ff_err_clear(err);
    int used = -1;
    int rc = args_parse(a, argc, argv, false, &used, err);
    if (rc == 0)
        assert_int_equal(used, argc);
    return rc;
}

static void expect_usage(int rc, const struct ff_err *err, const char *needle)
{
    assert_int_equal(rc, CLI_EUSAGE);
    if (strstr(err->msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

static void test_options_and_operands_in_any_order(void **state)
{
    (void)state;
    struct cli_args a;
    struct ff_err err;
    assert_int_equal(parse(&a, &err, "one", "--name", "x", "two", "--admin", "--json",
                           "--limit=5", END), 0);
    assert_int_equal(a.n_pos, 2);
    assert_string_equal(a.pos[0], "one");
    assert_string_equal(a.pos[1], "two");
    assert_string_equal(args_value(&a, "--name"), "x");
    assert_string_equal(args_value(&a, "--limit"), "5");
    assert_string_equal(args_value(&a, "--admin"), "");
    assert_true(a.json);
    assert_false(a.help);
    assert_null(a.env_file);

    /* Absent options are NULL; "--" makes the rest operands; "-" is an
     * operand (standard input, by convention). */
    assert_int_equal(parse(&a, &err, "--", "--name", "-x", "-", END), 0);
    assert_null(args_value(&a, "--name"));
    assert_null(args_value(&a, "--admin"));
    assert_int_equal(a.n_pos, 3);
    assert_string_equal(a.pos[0], "--name");
    assert_string_equal(a.pos[1], "-x");
    assert_string_equal(a.pos[2], "-");

    /* An empty value is a value; a value may start with '-'. */
    assert_int_equal(parse(&a, &err, "--name=", "--limit", "-3", END), 0);
    assert_string_equal(args_value(&a, "--name"), "");
    assert_string_equal(args_value(&a, "--limit"), "-3");
}

static void test_global_options(void **state)
{
    (void)state;
    struct cli_args a;
    struct ff_err err;
    assert_int_equal(parse(&a, &err, "-h", "--env-file", "var/farm.env", END), 0);
    assert_true(a.help);
    assert_string_equal(a.env_file, "var/farm.env");
    assert_int_equal(parse(&a, &err, "--help", "--env-file=x.env", END), 0);
    assert_true(a.help);
    assert_string_equal(a.env_file, "x.env");
    expect_usage(parse(&a, &err, "--env-file", END), &err, "--env-file");
    expect_usage(parse(&a, &err, "--env-file=", END), &err, "needs a FILE");
    expect_usage(parse(&a, &err, "--env-file=a", "--env-file", "b", END), &err, "twice");
    /* A prefix of --env-file is not it. */
    expect_usage(parse(&a, &err, "--env-filex", END), &err, "unknown option \"--env-filex\"");
}

static void test_stop_at_operand(void **state)
{
    (void)state;
    char *argv[] = {"--json", "--env-file", "f", "app", "create", "--name", "x"};
    struct cli_args g;
    struct ff_err err;
    int used = 0;
    args_init(&g, NULL, 0);
    assert_int_equal(args_parse(&g, 7, argv, true, &used, &err), 0);
    assert_int_equal(used, 3);
    assert_true(g.json);
    assert_string_equal(g.env_file, "f");
    assert_int_equal(g.n_pos, 0);
    /* A command option before the command words is unknown there. */
    char *early[] = {"--name", "x", "app"};
    args_init(&g, NULL, 0);
    expect_usage(args_parse(&g, 3, early, true, &used, &err), &err, "unknown option \"--name\"");
}

static void test_errors(void **state)
{
    (void)state;
    struct cli_args a;
    struct ff_err err;
    expect_usage(parse(&a, &err, "--bogus", END), &err, "unknown option \"--bogus\"");
    expect_usage(parse(&a, &err, "--bogus=1", END), &err, "unknown option \"--bogus\"");
    expect_usage(parse(&a, &err, "-n", END), &err, "unknown option \"-n\"");
    expect_usage(parse(&a, &err, "--name", END), &err, "\"--name\" needs a value N");
    expect_usage(parse(&a, &err, "--admin=yes", END), &err, "\"--admin\" takes no value");
    expect_usage(parse(&a, &err, "--name", "a", "--name=b", END), &err,
                 "\"--name\" given twice");
    expect_usage(parse(&a, &err, "--admin", "--admin", END), &err, "given twice");
    expect_usage(parse(&a, &err, "1", "2", "3", "4", "5", "6", "7", "8", "9", END), &err,
                 "too many operands");
    assert_int_equal(parse(&a, &err, "1", "2", "3", "4", "5", "6", "7", "8", END), 0);
    /* Hostile bytes in an unknown option do not reach the message. */
    expect_usage(parse(&a, &err, "--\x1b[2J", END), &err, "unknown option \"--?[2J\"");
}

static void test_numbers(void **state)
{
    (void)state;
    struct cli_args a;
    struct ff_err err;
    int64_t v = 7;
    assert_int_equal(parse(&a, &err, END), 0);
    assert_int_equal(args_int(&a, "--limit", 1, 10, &v, &err), FF_ENOTFOUND);
    assert_int_equal(v, 7);
    assert_int_equal(args_limit(&a, &v, &err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(parse(&a, &err, "--limit", "10", END), 0);
    assert_int_equal(args_int(&a, "--limit", 1, 10, &v, &err), 0);
    assert_int_equal(v, 10);
    assert_int_equal(args_limit(&a, &v, &err), 0);
    assert_int_equal(v, 10);
    assert_int_equal(parse(&a, &err, "--limit", "11", END), 0);
    expect_usage(args_int(&a, "--limit", 1, 10, &v, &err), &err, "not a number in 1..10");
    const char *bad[] = {"0", "-1", "1x", "", " 1", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&a, &err, "--limit", bad[i], END), 0);
        expect_usage(args_limit(&a, &v, &err), &err, "--limit");
    }
    assert_int_equal(args_id("42", "key id", &v, &err), 0);
    assert_int_equal(v, 42);
    expect_usage(args_id("0", "key id", &v, &err), &err, "key id \"0\" is not a positive");
    expect_usage(args_id("abc", "token id", &v, &err), &err, "token id \"abc\"");
    expect_usage(args_id("", "token id", &v, &err), &err, "token id");
}

static void test_app_operand(void **state)
{
    (void)state;
    struct ff_err err;
    char *owner = NULL, *name = NULL;
    assert_int_equal(args_app("bob/demo", &owner, &name, &err), 0);
    assert_string_equal(owner, "bob");
    assert_string_equal(name, "demo");
    free(owner);
    free(name);
    const char *bad[] = {"demo", "/demo", "bob/", "a/b/c", "/", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        owner = name = (char *)"untouched";
        expect_usage(args_app(bad[i], &owner, &name, &err), &err, "must be OWNER/NAME");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_and_operands_in_any_order),
        cmocka_unit_test(test_global_options),
        cmocka_unit_test(test_stop_at_operand),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_app_operand),
    };
    return cmocka_run_group_tests_name("builder/cli/args", tests, NULL, NULL);
}
