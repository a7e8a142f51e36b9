#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gitd.h"

#include "ff_secret.h"
#include "ff_str.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Everything required but the builder's URL. */
#define NO_URL                                                                                     \
    "[server]\nhost_key = /k/host\n[builder]\nkey_file = /k/gitd.key\n"                            \
    "[storage]\nrepos = /srv/repos\n"
#define MINIMAL NO_URL "[builder]\nurl = https://127.0.0.1:8443\n"

static void test_defaults(void **state)
{
    (void)state;
    struct gitd_config cfg;
    struct ff_err err;
    assert_int_equal(config_load_string(MINIMAL, "t.ini", &cfg, &err), 0);
    assert_string_equal(cfg.address, "127.0.0.1");
    assert_int_equal(cfg.port, 2222);
    assert_string_equal(cfg.host_key, "/k/host");
    assert_null(cfg.user);
    assert_string_equal(cfg.builder_url, "https://127.0.0.1:8443");
    assert_null(cfg.builder_ca);
    assert_string_equal(cfg.key_file, "/k/gitd.key");
    assert_string_equal(cfg.repos, "/srv/repos");
    assert_string_equal(cfg.run_dir, "/srv/repos/.run");
    assert_int_equal(cfg.sessions, 100);
    assert_int_equal(cfg.sessions_per_user, 4);
    assert_int_equal(cfg.sessions_per_address, 8);
    assert_int_equal(cfg.auth_timeout_s, 30);
    assert_int_equal(cfg.idle_timeout_s, 600);
    /* The schema's text defaults are receive.c's constants. */
    assert_true(cfg.max_pack_bytes == RECEIVE_MAX_PACK_BYTES_DEFAULT);
    assert_int_equal(cfg.max_objects, RECEIVE_MAX_OBJECTS_DEFAULT);
    assert_int_equal(cfg.log_level, FF_LOG_INFO);
    config_release(&cfg);
    config_release(&cfg); /* released twice is harmless */
}

static void test_everything_set(void **state)
{
    (void)state;
    struct gitd_config cfg;
    struct ff_err err;
    const char *text =
        MINIMAL "[server]\naddress = ::\nport = 22\nuser = ff-gitd\n"
                "[builder]\nca = /k/ca.crt\n[storage]\nrun = /run/ff-gitd\n"
                "[limits]\nsessions = 7\nsessions_per_user = 1\nsessions_per_address = 2\n"
                "auth_timeout = 5\nidle_timeout = 60\nmax_pack_bytes = 10M\nmax_objects = 500\n"
                "[log]\nlevel = debug\n";
    assert_int_equal(config_load_string(text, "t.ini", &cfg, &err), 0);
    assert_string_equal(cfg.address, "::");
    assert_int_equal(cfg.port, 22);
    assert_string_equal(cfg.user, "ff-gitd");
    assert_string_equal(cfg.builder_ca, "/k/ca.crt");
    assert_string_equal(cfg.run_dir, "/run/ff-gitd");
    assert_int_equal(cfg.sessions, 7);
    assert_int_equal(cfg.sessions_per_user, 1);
    assert_int_equal(cfg.sessions_per_address, 2);
    assert_int_equal(cfg.auth_timeout_s, 5);
    assert_int_equal(cfg.idle_timeout_s, 60);
    assert_true(cfg.max_pack_bytes == 10u << 20);
    assert_int_equal(cfg.max_objects, 500);
    assert_int_equal(cfg.log_level, FF_LOG_DEBUG);
    config_release(&cfg);
}

static void expect_error(const char *text, int code, const char *needle)
{
    struct gitd_config cfg;
    struct ff_err err;
    ff_err_clear(&err);
    assert_int_equal(config_load_string(text, "t.ini", &cfg, &err), code);
    assert_null(cfg.conf);
    assert_null(cfg.run_dir);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[builder]\nurl = https://b\nkey_file = k\n[storage]\nrepos = r\n", FF_EINVAL,
                 "[server] host_key is required");
    expect_error("[server]\nhost_key = h\n[builder]\nkey_file = k\n[storage]\nrepos = r\n",
                 FF_EINVAL, "[builder] url is required");
    expect_error("[server]\nhost_key = h\n[builder]\nurl = https://b\n[storage]\nrepos = r\n",
                 FF_EINVAL, "[builder] key_file is required");
    expect_error("[server]\nhost_key = h\n[builder]\nurl = https://b\nkey_file = k\n", FF_EINVAL,
                 "[storage] repos is required");
    expect_error("[server]\nhost_key = h\n[builder]\nurl = https://b\nkey_file = k\n"
                 "[storage]\nrepos =\n",
                 FF_EINVAL, "[storage] repos must not be empty");
    expect_error(MINIMAL "[server]\nuser =\n", FF_EINVAL, "[server] user must not be empty");
    expect_error(MINIMAL "[server]\naddress = localhost\n", FF_EINVAL,
                 "address \"localhost\" is not a numeric IPv4 or IPv6 address");
    expect_error(NO_URL "[builder]\nurl = http://127.0.0.1:8443\n", FF_EINVAL,
                 "is not https://host[:port]");
    expect_error(NO_URL "[builder]\nurl = https://127.0.0.1:8443/v1\n", FF_EINVAL,
                 "is not https://host[:port]");
    expect_error(NO_URL "[builder]\nurl = https://user@host\n", FF_EINVAL, "url");
    expect_error(NO_URL "[builder]\nurl = https://\n", FF_EINVAL, "url");
    expect_error(MINIMAL "[server]\nport = 0\n", FF_ERANGE, "port");
    expect_error(MINIMAL "[server]\nport = 65536\n", FF_ERANGE, "port");
    expect_error(MINIMAL "[limits]\nsessions_per_user = 0\n", FF_ERANGE, "sessions_per_user");
    expect_error(MINIMAL "[limits]\nsessions_per_address = 1001\n", FF_ERANGE,
                 "sessions_per_address");
    expect_error(MINIMAL "[limits]\nauth_timeout = 601\n", FF_ERANGE, "auth_timeout");
    expect_error(MINIMAL "[limits]\nidle_timeout = 0\n", FF_ERANGE, "idle_timeout");
    expect_error(MINIMAL "[limits]\nmax_pack_bytes = lots\n", FF_EINVAL, "max_pack_bytes");
    expect_error(MINIMAL "[limits]\nmax_objects = 4294967296\n", FF_ERANGE, "max_objects");
    expect_error(MINIMAL "[limits]\nsesions = 3\n", FF_EINVAL, "sesions");
    expect_error(MINIMAL "[log]\nlevel = loud\n", FF_EINVAL, "[log] level");
    expect_error(MINIMAL "[server]\nport = 1\nport = 2\n", FF_EINVAL, "port");
    struct gitd_config cfg;
    struct ff_err err;
    assert_int_equal(config_load(NULL, &cfg, &err), FF_EINVAL);
    assert_int_equal(config_load("/nonexistent/gitd.ini", &cfg, &err), FF_ENOTFOUND);
}

/* Writes text to a fresh file of mode; returns its path (static storage). */
static const char *key_file(const char *text, mode_t mode)
{
    static char path[64];
    ff_strlcpy(path, "/tmp/ff-gitd-key-XXXXXX", sizeof(path));
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
    return path;
}

static void expect_key(const char *text, const char *key)
{
    const char *path = key_file(text, 0600);
    char *got = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = config_service_key_read(path, &got, &err);
    (void)unlink(path);
    if (rc != 0)
        fail_msg("\"%s\" refused: %s", text, err.msg);
    assert_string_equal(got, key);
    ff_secret_free(got);
}

static void expect_key_error(const char *text, mode_t mode, int code, const char *needle)
{
    const char *path = key_file(text, mode);
    char *got = (char *)"untouched";
    struct ff_err err;
    ff_err_clear(&err);
    assert_int_equal(config_service_key_read(path, &got, &err), code);
    (void)unlink(path);
    assert_null(got);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    /* Messages never quote the key. */
    assert_null(strstr(err.msg, "ffg_secret"));
}

static void test_service_key_file(void **state)
{
    (void)state;
    expect_key("FF_GITD_KEY=ffg_abc_DEF-123\n", "ffg_abc_DEF-123");
    expect_key("ffg_bare", "ffg_bare");
    expect_key("# issued by ff-builder service-key gitd\n\nFF_GITD_KEY=ffg_x\r\n\n", "ffg_x");
    expect_key_error("", 0600, FF_EINVAL, "holds no key");
    expect_key_error("# only a comment\n\n", 0600, FF_EINVAL, "holds no key");
    expect_key_error("FF_GITD_KEY=\n", 0600, FF_EINVAL, "must hold 1..256 characters");
    expect_key_error("FF_GITD_KEY=ffg_a\nFF_GITD_KEY=ffg_b\n", 0600, FF_EINVAL,
                     "more than one key");
    expect_key_error("FF_GITD_KEY=ffg_secret with space\n", 0600, FF_EINVAL,
                     "a space or a control character");
    expect_key_error("ffg_secret\x01\n", 0600, FF_EINVAL, "control character");
    expect_key_error("FF_GITD_KEY=ffg_secret\n", 0644, FF_EDENIED, "readable by every user");
    /* Group-readable is fine: root:ff-gitd 0640 is how it is deployed. */
    const char *path = key_file("FF_GITD_KEY=ffg_g\n", 0640);
    char *got = NULL;
    struct ff_err err;
    assert_int_equal(config_service_key_read(path, &got, &err), 0);
    (void)unlink(path);
    assert_string_equal(got, "ffg_g");
    ff_secret_free(got);
    char big[CONFIG_KEY_FILE_MAX + 10];
    memset(big, '#', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    expect_key_error(big, 0600, FF_ETOOBIG, "longer than 4096 bytes");
    char long_key[CONFIG_SERVICE_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    expect_key_error(long_key, 0600, FF_EINVAL, "must hold 1..256 characters");
    got = (char *)"untouched";
    assert_int_equal(config_service_key_read("/nonexistent/gitd.key", &got, &err), FF_EIO);
    assert_null(got);
    assert_non_null(strstr(err.msg, "/nonexistent/gitd.key"));
    assert_int_equal(config_service_key_read("/tmp", &got, &err), FF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_everything_set),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_service_key_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
