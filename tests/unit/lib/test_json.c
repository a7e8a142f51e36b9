#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_json.h"

#include <stdlib.h>
#include <string.h>

#define LIMIT 4096

static json_t *parse_ok(const char *text)
{
    json_t *v = NULL;
    struct ff_err err;
    int rc = ff_json_parse_object(text, strlen(text), LIMIT, &v, &err);
    if (rc != 0)
        fail_msg("parse \"%s\": %s", text, err.msg);
    return v;
}

static void parse_fails(const char *text, size_t limit, int code, const char *fragment)
{
    json_t *v = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = ff_json_parse_object(text, strlen(text), limit, &v, &err);
    if (rc != code || strstr(err.msg, fragment) == NULL)
        fail_msg("\"%s\": rc=%d msg=\"%s\", expected %d \"%s\"", text, rc, err.msg, code,
                 fragment);
    assert_null(v);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_fails("{\"a\":1}", 3, FF_ETOOBIG, "7 bytes, limit is 3");
    parse_fails("{\"a\":1,\"a\":2}", LIMIT, FF_EINVAL, "duplicate");
    parse_fails("{\"a\":1} x", LIMIT, FF_EINVAL, "line 1");
    parse_fails("{\"a\":", LIMIT, FF_EINVAL, "json: line 1");
    parse_fails("[1,2]", LIMIT, FF_EINVAL, "expected an object, got array");
    parse_fails("{\"a\":\"\\u0000\"}", LIMIT, FF_EINVAL, "NUL");
    parse_fails("{\"a\":\"\xff\"}", LIMIT, FF_EINVAL, "unable to decode byte 0xff");
    parse_fails("", LIMIT, FF_EINVAL, "json");
}

static void test_depth_limit(void **state)
{
    (void)state;
    char deep[256];
    size_t n = 0;
    deep[n++] = '{';
    deep[n++] = '"';
    deep[n++] = 'a';
    deep[n++] = '"';
    deep[n++] = ':';
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    for (int i = 0; i < 40; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    parse_fails(deep, LIMIT, FF_EINVAL, "nested deeper than 32");
}

static void test_getters(void **state)
{
    (void)state;
    json_t *v = parse_ok("{\"name\":\"app\",\"n\":5,\"b\":true,\"arr\":[1,2],\"o\":{},"
                         "\"empty\":\"\",\"big\":99999999999}");
    struct ff_err err;
    const char *s = NULL;
    int64_t n = 0;
    bool b = false;
    json_t *a = NULL;
    assert_int_equal(ff_json_get_string(v, "name", true, 16, &s, &err), 0);
    assert_string_equal(s, "app");
    assert_int_equal(ff_json_get_int(v, "n", true, 0, 10, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_int_equal(ff_json_get_bool(v, "b", true, &b, &err), 0);
    assert_true(b);
    assert_int_equal(ff_json_get_array(v, "arr", true, 2, &a, &err), 0);
    assert_int_equal(ff_json_get_object(v, "o", true, &a, &err), 0);

    assert_int_equal(ff_json_get_string(v, "missing", false, 16, &s, &err), FF_ENOTFOUND);
    assert_int_equal(ff_json_get_string(v, "missing", true, 16, &s, &err), FF_EINVAL);
    assert_string_equal(err.msg, "field \"missing\": required");
    assert_int_equal(ff_json_get_string(v, "n", true, 16, &s, &err), FF_EINVAL);
    assert_string_equal(err.msg, "field \"n\": expected a string, got integer");
    assert_int_equal(ff_json_get_string(v, "name", true, 2, &s, &err), FF_EINVAL);
    assert_string_equal(err.msg, "field \"name\": 3 bytes long, limit is 2");
    assert_int_equal(ff_json_get_string(v, "empty", true, 2, &s, &err), FF_EINVAL);
    assert_int_equal(ff_json_get_int(v, "big", true, 0, 1000, &n, &err), FF_EINVAL);
    assert_string_equal(err.msg, "field \"big\": 99999999999 is outside 0..1000");
    assert_int_equal(ff_json_get_int(v, "name", true, 0, 1, &n, &err), FF_EINVAL);
    assert_int_equal(ff_json_get_bool(v, "n", true, &b, &err), FF_EINVAL);
    assert_int_equal(ff_json_get_array(v, "arr", true, 1, &a, &err), FF_EINVAL);
    assert_string_equal(err.msg, "field \"arr\": 2 items, limit is 1");
    assert_int_equal(ff_json_get_object(v, "arr", true, &a, &err), FF_EINVAL);
    json_decref(v);
}

static void test_check_keys(void **state)
{
    (void)state;
    json_t *v = parse_ok("{\"name\":\"x\",\"role\":\"admin\"}");
    struct ff_err err;
    static const char *const ok[] = {"name", "role", NULL};
    static const char *const narrow[] = {"name", NULL};
    assert_int_equal(ff_json_check_keys(v, ok, "body", &err), 0);
    assert_int_equal(ff_json_check_keys(v, narrow, "body", &err), FF_EINVAL);
    assert_string_equal(err.msg, "body: unknown field \"role\"");
    json_decref(v);
}

static void test_dump(void **state)
{
    (void)state;
    json_t *v = parse_ok("{ \"b\" : [1, 2], \"a\" : \"x\" }");
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(ff_json_dump(v, &s, &len, NULL), 0);
    assert_string_equal(s, "{\"b\":[1,2],\"a\":\"x\"}");
    assert_int_equal(len, strlen(s));
    free(s);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests_name("lib/json", tests, NULL, NULL);
}
