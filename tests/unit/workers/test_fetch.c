#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include "ff_str.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_is_url(void **state)
{
    (void)state;
    assert_true(fetch_is_url("https://example.com/x"));
    assert_true(fetch_is_url("HTTP://example.com/x"));
    assert_true(fetch_is_url("http://example.com"));
    assert_false(fetch_is_url("https:/example.com"));
    assert_false(fetch_is_url("ftp://example.com/x"));
    assert_false(fetch_is_url("dir/https://x"));
    assert_false(fetch_is_url(""));
}

static void test_file_name(void **state)
{
    (void)state;
    static const struct {
        const char *url, *name;
    } ok[] = {
        {"https://h/a/b.tgz", "b.tgz"},
        {"https://h:8443/dl/tool%2Dv1.tar.gz?token=a/b#frag/x", "tool-v1.tar.gz"},
        {"https://h/b%20c.txt", "b c.txt"},
        {"https://h/x.bin?", "x.bin"},
        {"https://h/%E2%98%BA", "\xe2\x98\xba"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *name = NULL;
        struct ff_err err;
        if (fetch_url_file_name(ok[i].url, &name, &err) != 0)
            fail_msg("%s: %s", ok[i].url, err.msg);
        assert_string_equal(name, ok[i].name);
        free(name);
    }
    static const char *const bad[] = {
        "https://h",     "https://h/",         "https://h/dir/",      "https://h/%2e%2e",
        "https://h/.",   "https://h/a%2Fb",    "https://h/a%00b",     "https://h/%zz",
        "https://h/x%4", "https://h?x=/y.txt", "https://h#/frag.txt",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *name = NULL;
        struct ff_err err;
        int rc = fetch_url_file_name(bad[i], &name, &err);
        if (rc != FF_EINVAL)
            fail_msg("%s: rc %d name %s", bad[i], rc, name != NULL ? name : "");
        assert_null(name);
        assert_true(ff_str_has_prefix(err.msg, "ADD: \""));
    }
}

/* An unlinked temporary file for the sink to write to. */
static int tmp_fd(void)
{
    int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    assert_true(fd >= 0);
    return fd;
}

static void test_sink_ok(void **state)
{
    (void)state;
    int fd = tmp_fd();
    struct fetch_sink s;
    struct ff_err err;
    assert_int_equal(fetch_sink_init(&s, fd, 10, &err), 0);
    assert_int_equal(fetch_sink_write(&s, "hello", 5, &err), 0);
    assert_int_equal(fetch_sink_write(&s, " you", 4, &err), 0);
    assert_int_equal(s.got, 9);
    struct ff_digest want;
    assert_int_equal(ff_digest_buffer("hello you", 9, &want, &err), 0);
    assert_int_equal(fetch_sink_finish(&s, "https://h/x", &want, &err), 0);
    fetch_sink_release(&s);
    char buf[16];
    assert_int_equal(pread(fd, buf, sizeof(buf), 0), 9);
    assert_memory_equal(buf, "hello you", 9);
    (void)close(fd);
}

static void test_sink_cap(void **state)
{
    (void)state;
    int fd = tmp_fd();
    struct fetch_sink s;
    struct ff_err err;
    assert_int_equal(fetch_sink_init(&s, fd, 8, &err), 0);
    assert_int_equal(fetch_sink_write(&s, "12345678", 8, &err), 0);
    assert_int_equal(fetch_sink_write(&s, "9", 1, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "larger than 8 bytes"));
    /* Nothing past the cap reached the file. */
    assert_int_equal(lseek(fd, 0, SEEK_END), 8);
    fetch_sink_release(&s);
    (void)close(fd);
}

static void test_sink_mismatch(void **state)
{
    (void)state;
    int fd = tmp_fd();
    struct fetch_sink s;
    struct ff_err err;
    assert_int_equal(fetch_sink_init(&s, fd, 100, &err), 0);
    assert_int_equal(fetch_sink_write(&s, "evil", 4, &err), 0);
    struct ff_digest want;
    assert_int_equal(ff_digest_buffer("good", 4, &want, &err), 0);
    struct ff_digest got;
    assert_int_equal(ff_digest_buffer("evil", 4, &got, &err), 0);
    char w[FF_DIGEST_STR_SIZE];
    char g[FF_DIGEST_STR_SIZE];
    ff_digest_format(&want, w);
    ff_digest_format(&got, g);
    assert_int_equal(fetch_sink_finish(&s, "https://h/tool.tgz", &want, &err), FF_EINVAL);
    char expect[512];
    (void)snprintf(expect, sizeof(expect),
                   "ADD: \"https://h/tool.tgz\": checksum mismatch (expected %s, got %s)", w, g);
    assert_string_equal(err.msg, expect);
    fetch_sink_release(&s);
    fetch_sink_release(&s);
    (void)close(fd);
}

static size_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    size_t n = 0;
    while (readdir(d) != NULL)
        n++;
    (void)closedir(d);
    return n;
}

static void test_fetch_refused(void **state)
{
    (void)state;
    struct ff_digest want;
    struct ff_err err;
    assert_int_equal(ff_digest_buffer("x", 1, &want, &err), 0);
    struct ff_http_client_config cfg;
    ff_http_client_config_init(&cfg);
    cfg.max_retries = 0;
    cfg.connect_timeout_ms = 2000;
    struct ff_http_client *http = NULL;
    assert_int_equal(ff_http_client_new(&cfg, &http, &err), 0);
    int fd = -1;
    /* The first request may leave curl's own descriptors (connection
     * cache, wake-up pipe) with the client: count after it. */
    assert_int_equal(fetch_url(http, "https://127.0.0.1:1/x", &want, "/tmp", 100, 5000, &fd, &err),
                     FF_ENET);
    size_t fds = open_fds();
    assert_int_equal(fetch_url(http, "http://127.0.0.1:1/x", &want, "/tmp", 100, 1000, &fd, &err),
                     FF_EINVAL);
    assert_non_null(strstr(err.msg, "only https URLs are fetched"));
    assert_int_equal(fetch_url(NULL, "https://127.0.0.1:1/x", &want, "/tmp", 100, 1000, &fd, &err),
                     FF_EINVAL);
    assert_int_equal(fetch_url(http, "https://127.0.0.1:1/x", &want, "/nonexistent-ff-dir", 100,
                               1000, &fd, &err),
                     FF_EIO);
    assert_non_null(strstr(err.msg, "temporary file"));
    /* Nothing listens on port 1: a network error naming the URL, and the
     * temporary file is gone with it. */
    assert_int_equal(fetch_url(http, "https://127.0.0.1:1/x", &want, "/tmp", 100, 5000, &fd, &err),
                     FF_ENET);
    assert_true(ff_str_has_prefix(err.msg, "ADD: \"https://127.0.0.1:1/x\": "));
    assert_int_equal(fd, -1);
    assert_int_equal(open_fds(), fds);
    ff_http_client_free(http);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_url),        cmocka_unit_test(test_file_name),
        cmocka_unit_test(test_sink_ok),       cmocka_unit_test(test_sink_cap),
        cmocka_unit_test(test_sink_mismatch), cmocka_unit_test(test_fetch_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
