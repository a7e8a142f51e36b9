#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include <string.h>

static void test_decoders(void **state)
{
    (void)state;
    json_t *root = NULL;
    struct ff_err err;
    struct user_body u;
    const char *ok = "{\"name\":\"bob\",\"password\":\"long-enough-pass\",\"role\":\"admin\"}";
    assert_int_equal(decode_user(ok, strlen(ok), &root, &u, &err), 0);
    assert_string_equal(u.name, "bob");
    assert_int_equal(u.role, ROLE_ADMIN);
    json_decref(root);
    static const char *const bad[] = {
        "{\"name\":\"bob\",\"password\":\"long-enough-pass\",\"x\":1}",
        "{\"name\":\"Bob\",\"password\":\"long-enough-pass\"}",
        "{\"name\":\"bob\",\"password\":\"short\"}",
        "{\"name\":\"bob\",\"password\":\"long-enough-pass\",\"role\":\"root\"}",
        "{\"name\":1,\"password\":\"long-enough-pass\"}",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode_user(bad[i], strlen(bad[i]), &root, &u, &err), FF_EINVAL);
        json_decref(root);
    }
    struct app_body a;
    const char *app = "{\"name\":\"web-1\",\"archs\":[\"arm64\",\"amd64\"]}";
    assert_int_equal(decode_app(app, strlen(app), &root, &a, &err), 0);
    assert_int_equal(a.n_archs, 2);
    json_decref(root);
    assert_string_equal(a.deploy_branch, "main");
    const char *dup = "{\"name\":\"web\",\"archs\":[\"arm64\",\"arm64\"]}";
    assert_int_equal(decode_app(dup, strlen(dup), &root, &a, &err), FF_EINVAL);
    json_decref(root);
    const char *prod = "{\"name\":\"web\",\"archs\":[\"amd64\"],\"deploy_branch\":\"release/v1\"}";
    assert_int_equal(decode_app(prod, strlen(prod), &root, &a, &err), 0);
    assert_string_equal(a.deploy_branch, "release/v1");
    json_decref(root);
    static const char *const bad_branches[] = {
        "", "-x", "a..b", "a//b", "/a", "a/", "a.lock", "a/.hidden", "x@{1}", "sp ace", "a~1",
        "a^", "a:b", "a?", "a*", "a[b", "a\\\\b", "end.", "@", "tab\\t"};
    for (size_t i = 0; i < sizeof(bad_branches) / sizeof(bad_branches[0]); i++)
        assert_int_equal(branch_name_check(bad_branches[i], &err), FF_EINVAL);
    static const char *const good_branches[] = {"main", "master", "release/v1.2", "prod-eu_1",
                                                "a.b/c"};
    for (size_t i = 0; i < sizeof(good_branches) / sizeof(good_branches[0]); i++)
        assert_int_equal(branch_name_check(good_branches[i], &err), 0);
    struct token_body t;
    const char *tk = "{\"name\":\"ci\",\"expires_in\":60}";
    assert_int_equal(decode_token(tk, strlen(tk), &root, &t, &err), 0);
    assert_int_equal(t.expires_in, 60);
    json_decref(root);
    const char *ctl = "{\"name\":\"a\\u0001b\"}";
    assert_int_equal(decode_token(ctl, strlen(ctl), &root, &t, &err), FF_EINVAL);
    json_decref(root);
    assert_int_equal(app_name_check("a", &err), 0);
    assert_int_equal(app_name_check("-a", &err), FF_EINVAL);
    assert_int_equal(app_name_check("a_b", &err), FF_EINVAL);
    assert_int_equal(user_name_check("a.b_c-d", &err), 0);
    assert_int_equal(user_name_check("", &err), FF_EINVAL);
    /* Names are repository path components: no doubled or trailing
     * separators. */
    assert_int_equal(user_name_check("a..b", &err), FF_EINVAL);
    assert_int_equal(user_name_check("a-", &err), FF_EINVAL);
    assert_int_equal(user_name_check("a._b", &err), FF_EINVAL);
}

static void test_device_and_env_names(void **state)
{
    (void)state;
    struct ff_err err;
    assert_int_equal(device_uuid_check("0123abcd-0000-4000-8000-00000000beef", &err), 0);
    assert_int_equal(device_uuid_check("0123ABCD-0000-4000-8000-00000000beef", &err), FF_EINVAL);
    assert_int_equal(device_uuid_check("0123abcd00000-4000-8000-00000000beef", &err), FF_EINVAL);
    assert_int_equal(device_uuid_check("0123abcd-0000-4000-8000-00000000bee", &err), FF_EINVAL);
    assert_int_equal(env_name_check("LOG_LEVEL", &err), 0);
    assert_int_equal(env_name_check("_x9", &err), 0);
    assert_int_equal(env_name_check("9X", &err), FF_EINVAL);
    assert_int_equal(env_name_check("A-B", &err), FF_EINVAL);
    assert_int_equal(env_name_check("FF_TOKEN", &err), FF_EINVAL);
    assert_int_equal(arch_check("armv7", &err), 0);
    assert_int_equal(arch_check("arm", &err), FF_EINVAL);
}

static void test_device_bodies(void **state)
{
    (void)state;
    json_t *root = NULL;
    struct ff_err err;
    struct device_body d;
    const char *ok = "{\"name\":\"kiosk\",\"device_type\":\"rpi4\",\"arch\":\"arm64\"}";
    assert_int_equal(decode_device(ok, strlen(ok), &root, &d, &err), 0);
    assert_null(d.uuid);
    assert_string_equal(d.arch, "arm64");
    json_decref(root);
    struct device_update_body u;
    const char *none = "{}";
    assert_int_equal(decode_device_update(none, strlen(none), &root, &u, &err), FF_EINVAL);
    json_decref(root);
    struct env_body e;
    const char *empty = "{\"value\":\"\"}";
    assert_int_equal(decode_env(empty, strlen(empty), &root, &e, &err), 0);
    assert_string_equal(e.value, "");
    json_decref(root);
    const char *nul = "{\"value\":\"a\\u0000b\"}";
    assert_int_equal(decode_env(nul, strlen(nul), &root, &e, &err), FF_EINVAL);
    json_decref(root);
    struct provision_body p;
    const char *uses = "{\"name\":\"k\",\"max_uses\":0}";
    assert_int_equal(decode_provision(uses, strlen(uses), &root, &p, &err), FF_EINVAL);
    json_decref(root);
    struct join_token_body j;
    assert_int_equal(decode_join_token(none, strlen(none), &root, &j, &err), 0);
    assert_int_equal(j.expires_in, JOIN_TOKEN_TTL_DEFAULT);
    json_decref(root);
    struct worker_join_body w;
    const char *noarch = "{\"name\":\"w\",\"archs\":[]}";
    assert_int_equal(decode_worker_join(noarch, strlen(noarch), &root, &w, &err), FF_EINVAL);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders),
        cmocka_unit_test(test_device_and_env_names),
        cmocka_unit_test(test_device_bodies),
    };
    return cmocka_run_group_tests_name("builder/decode", tests, NULL, NULL);
}
