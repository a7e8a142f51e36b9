#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gitd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static ssize_t no_read(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    return 0;
}

static int collect(void *ctx, const void *buf, size_t n)
{
    return ff_buf_append(ctx, buf, n) == 0 ? 0 : -1;
}

/* Replays text as a recording; returns the gate's result, with what it
 * printed in *printed and its reason in *reason (both freed by the caller). */
static int replay(const char *text, char **printed, char **reason)
{
    char path[] = "/tmp/ff-fakebuild-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);

    struct ff_buf out;
    ff_buf_init(&out, 1u << 20);
    struct gitd_stream s = {.read = no_read, .write = collect, .write_err = collect, .ctx = &out};
    struct pktline pkt;
    assert_int_equal(pktline_init(&pkt, &s, NULL), 0);
    struct progress p = {.pkt = &pkt, .quiet = false};
    git_oid id;
    memset(&id, 0xab, sizeof(id));
    int rc = fakebuild_gate(path, NULL, "refs/heads/main", &id, &id, &p, reason);
    pktline_release(&pkt);
    assert_int_equal(unlink(path), 0);
    *printed = ff_buf_steal(&out);
    return rc;
}

static void test_success(void **state)
{
    (void)state;
    char *printed, *reason;
    int rc = replay("# recorded\n\nlog amd64 Step 1/3 : FROM alpine\r\nsleep 0.01\n"
                    "log arm64 Step 1/3 : FROM alpine\nresult ok " DIGEST " release 3\n"
                    "log amd64 never printed\n",
                    &printed, &reason);
    assert_int_equal(rc, 0);
    assert_null(reason);
    assert_string_equal(printed, "building abababababab for refs/heads/main\n"
                                 "amd64: Step 1/3 : FROM alpine\n"
                                 "arm64: Step 1/3 : FROM alpine\n"
                                 "build succeeded: release 3, image " DIGEST "\n");
    free(printed);
}

static void test_failure(void **state)
{
    (void)state;
    char *printed, *reason;
    int rc = replay("log amd64 Step 2/3 : RUN false\nresult failed\n", &printed, &reason);
    assert_int_equal(rc, FF_EDENIED);
    assert_string_equal(reason, "build failed");
    assert_non_null(strstr(printed, "amd64: Step 2/3 : RUN false\nbuild failed\n"));
    free(printed);
    free(reason);
}

static void test_bad_recordings(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *reason;
    } bad[] = {
        {"log amd64 x\n", "fake build: the recording has no result"},
        {"bogus\n", "fake build: line 1 not understood"},
        {"sleep 61\n", "line 1 not understood"},
        {"sleep x\n", "line 1 not understood"},
        {"\nresult ok sha256:abc release 3\n", "line 2 not understood"},
        {"result ok " DIGEST " release x\n", "line 1 not understood"},
        {"result ok " DIGEST " release 3 extra\n", "line 1 not understood"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *printed, *reason;
        int rc = replay(bad[i].text, &printed, &reason);
        if (rc != FF_EINVAL || reason == NULL || strstr(reason, bad[i].reason) == NULL)
            fail_msg("\"%s\": rc=%d reason=%s", bad[i].text, rc, reason ? reason : "(null)");
        free(printed);
        free(reason);
    }
    char *reason = NULL;
    git_oid id;
    memset(&id, 0, sizeof(id));
    struct progress p = {.pkt = NULL, .quiet = true};
    assert_int_equal(fakebuild_gate("/nonexistent/recording", NULL, "refs/heads/main", &id, &id,
                                    &p, &reason),
                     FF_ENOTFOUND);
    assert_non_null(strstr(reason, "cannot read the recording: \"/nonexistent/recording\" "
                                   "does not exist"));
    free(reason);
}

static void test_deploy_ref(void **state)
{
    (void)state;
    struct receive_config cfg;
    receive_config_init(&cfg);
    assert_true(receive_is_deploy_ref(&cfg, "refs/heads/main"));
    assert_true(receive_is_deploy_ref(&cfg, "refs/heads/master"));
    assert_false(receive_is_deploy_ref(&cfg, "refs/heads/mainline"));
    assert_false(receive_is_deploy_ref(&cfg, "refs/tags/main"));
    cfg.deploy_branch = "prod";
    assert_true(receive_is_deploy_ref(&cfg, "refs/heads/prod"));
    assert_false(receive_is_deploy_ref(&cfg, "refs/heads/master"));
    assert_false(receive_is_deploy_ref(&cfg, "refs/heads/main"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_failure),
        cmocka_unit_test(test_bad_recordings),
        cmocka_unit_test(test_deploy_ref),
    };
    return cmocka_run_group_tests_name("gitd/fakebuild", tests, NULL, NULL);
}
