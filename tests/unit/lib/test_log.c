#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs one log call with output captured in a pipe; returns the line. */
static char captured[(size_t)FF_LOG_LINE_MAX * 2];

static int pipe_fds[2];

static int setup(void **state)
{
    (void)state;
    if (pipe(pipe_fds) != 0)
        return -1;
    ff_log_open("ff-test", FF_LOG_DEBUG);
    ff_log_set_fd(pipe_fds[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ff_log_set_fd(2);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return 0;
}

static const char *drain(void)
{
    ssize_t n = read(pipe_fds[0], captured, sizeof(captured) - 1);
    assert_true(n > 0);
    captured[n] = '\0';
    return captured;
}

static void test_line_shape(void **state)
{
    (void)state;
    ff_log_info("abc123", "blob.put", "repo=%s bytes=%zu status=%d", "app/x", (size_t)512, 201);
    const char *line = drain();
    assert_non_null(strstr(line, " info ff-test event=blob.put req=abc123 repo=app/x bytes=512 status=201\n"));
    assert_int_equal(line[4], '-');
    assert_int_equal(line[23], 'Z');
    assert_int_equal(strchr(line, '\n') - line, (long)strlen(line) - 1);
}

static void test_values_are_escaped(void **state)
{
    (void)state;
    ff_log_warn(NULL, "bad.input", "name=%s", "evil\nfake=1 \"q\"\x01");
    const char *line = drain();
    assert_non_null(strstr(line, "name=\"evil\\nfake=1 \\\"q\\\"\\x01\"\n"));
    assert_int_equal(strchr(line, '\n') - line, (long)strlen(line) - 1);
}

static void test_secrets_are_redacted(void **state)
{
    (void)state;
    ff_log_info(NULL, "login", "user=%s password=%s api_token=%s key=%s token_id=%s kid=%s",
                "alice", "hunter2", "tok", "k", "t-1", "kid-1");
    const char *line = drain();
    assert_null(strstr(line, "hunter2"));
    assert_null(strstr(line, "=tok"));
    assert_non_null(strstr(line, "password=[redacted] api_token=[redacted] key=[redacted]"));
    assert_non_null(strstr(line, "token_id=t-1 kid=kid-1"));
}

static void test_level_filter(void **state)
{
    (void)state;
    ff_log_open("ff-test", FF_LOG_WARN);
    ff_log_info(NULL, "hidden", "");
    ff_log_error(NULL, "shown", "");
    const char *line = drain();
    assert_null(strstr(line, "hidden"));
    assert_non_null(strstr(line, "error ff-test event=shown\n"));
    ff_log_open("ff-test", FF_LOG_DEBUG);
}

static void test_long_value_is_clipped(void **state)
{
    (void)state;
    char *big = malloc((size_t)FF_LOG_LINE_MAX * 2);
    assert_non_null(big);
    memset(big, 'a', (size_t)FF_LOG_LINE_MAX * 2 - 1);
    big[(size_t)FF_LOG_LINE_MAX * 2 - 1] = '\0';
    ff_log_info(NULL, "big", "v=%s", big);
    const char *line = drain();
    assert_true(strlen(line) < FF_LOG_VALUE_MAX + 200);
    assert_non_null(strstr(line, "aaa...\n"));
    free(big);
}

/* Not a literal NULL, which the compiler would rightly flag. */
static const char *volatile null_value = NULL;

static void test_precision_and_null(void **state)
{
    (void)state;
    ff_log_info(NULL, "e", "a=%.*s b=%s c=%lld d=%x", 3, "abcdef", null_value,
                -5LL, 255u);
    const char *line = drain();
    assert_non_null(strstr(line, "a=abc b=(null) c=-5 d=ff\n"));
}

static void test_level_parse(void **state)
{
    (void)state;
    enum ff_log_level l;
    assert_int_equal(ff_log_level_parse("warn", &l), 0);
    assert_int_equal(l, FF_LOG_WARN);
    assert_int_not_equal(ff_log_level_parse("verbose", &l), 0);
    assert_int_not_equal(ff_log_level_parse("", &l), 0);
}

static void test_reqid(void **state)
{
    (void)state;
    char a[FF_LOG_REQID_SIZE], b[FF_LOG_REQID_SIZE];
    ff_log_reqid_new(a);
    ff_log_reqid_new(b);
    assert_int_equal(strlen(a), FF_LOG_REQID_SIZE - 1);
    assert_string_not_equal(a, b);
    assert_int_equal(strspn(a, "0123456789abcdef"), FF_LOG_REQID_SIZE - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_shape),
        cmocka_unit_test(test_values_are_escaped),
        cmocka_unit_test(test_secrets_are_redacted),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_long_value_is_clipped),
        cmocka_unit_test(test_precision_and_null),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_reqid),
    };
    return cmocka_run_group_tests_name("lib/log", tests, setup, teardown);
}
