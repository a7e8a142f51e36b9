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
    const char *dup = "{\"name\":\"web\",\"archs\":[\"arm64\",\"arm64\"]}";
    assert_int_equal(decode_app(dup, strlen(dup), &root, &a, &err), FF_EINVAL);
    json_decref(root);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders),
    };
    return cmocka_run_group_tests_name("builder/decode", tests, NULL, NULL);
}
