#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include <string.h>

#define MINIMAL "[server]\ncert = c.crt\nkey = c.key\n[storage]\ndb = b.db\n" \
                "[tokens]\nkey = token.key\n"

static void test_defaults(void **state)
{
    (void)state;
    struct builder_config cfg;
    struct ff_err err;
    assert_int_equal(config_load_string(MINIMAL, "t.ini", &cfg, &err), 0);
    assert_int_equal(ff_conf_int(cfg.conf, "server", "port"), 8443);
    assert_string_equal(ff_conf_string(cfg.conf, "server", "listen"), "127.0.0.1");
    assert_string_equal(ff_conf_string(cfg.conf, "tokens", "issuer"), "ff-builder");
    assert_string_equal(ff_conf_string(cfg.conf, "tokens", "service"), "ff-registry");
    assert_int_equal(ff_conf_int(cfg.conf, "tokens", "ttl"), 300);
    assert_int_equal(cfg.log_level, FF_LOG_INFO);
    config_release(&cfg);
    config_release(&cfg); /* released twice is harmless */
}

static void expect_error(const char *text, int code, const char *needle)
{
    struct builder_config cfg;
    struct ff_err err;
    ff_err_clear(&err);
    assert_int_equal(config_load_string(text, "t.ini", &cfg, &err), code);
    assert_null(cfg.conf);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[server]\nkey = c.key\n[storage]\ndb = b.db\n[tokens]\nkey = t\n",
                 FF_EINVAL, "[server] cert is required");
    expect_error("[server]\ncert = c\nkey = c.key\n[tokens]\nkey = t\n", FF_EINVAL,
                 "[storage] db is required");
    expect_error("[server]\ncert = c\nkey = c.key\n[storage]\ndb = b.db\n", FF_EINVAL,
                 "[tokens] key is required");
    expect_error(MINIMAL "ttl = 301\n", FF_ERANGE, "ttl");
    expect_error(MINIMAL "ttl = 0\n", FF_ERANGE, "ttl");
    expect_error(MINIMAL "service =\n", FF_EINVAL, "service");
    expect_error(MINIMAL "[log]\nlevel = loud\n", FF_EINVAL, "[log] level");
    expect_error(MINIMAL "[server]\nporty = 1\n", FF_EINVAL, "porty");
    expect_error(MINIMAL "[tokens]\nsession_ttl = 10\n", FF_ERANGE, "session_ttl");
    struct builder_config cfg;
    struct ff_err err;
    assert_int_equal(config_load(NULL, &cfg, &err), FF_EINVAL);
    assert_int_equal(config_load("/nonexistent/builder.ini", &cfg, &err), FF_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("builder/config", tests, NULL, NULL);
}
