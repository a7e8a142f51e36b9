#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include "ff_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *s, struct wwwauth_challenge *c, struct ff_err *err)
{
    return wwwauth_parse(s, strlen(s), c, err);
}

static void test_registry_challenge(void **state)
{
    (void)state;
    struct wwwauth_challenge c;
    struct ff_err err;
    assert_int_equal(parse("Bearer realm=\"https://127.0.0.1:8443/v2/token\","
                           "service=\"ff-registry\",scope=\"repository:library/base:pull\"",
                           &c, &err), 0);
    assert_int_equal(c.scheme, WWWAUTH_BEARER);
    assert_string_equal(c.realm, "https://127.0.0.1:8443/v2/token");
    assert_string_equal(c.service, "ff-registry");
    assert_string_equal(c.scope, "repository:library/base:pull");
    assert_null(c.error);
    wwwauth_challenge_release(&c);
    assert_null(c.realm);

    assert_int_equal(parse("Bearer realm=\"https://r/t\",service=\"s\",scope=\"repository:a:"
                           "pull,push\",error=\"insufficient_scope\"", &c, &err), 0);
    assert_string_equal(c.scope, "repository:a:pull,push");
    assert_string_equal(c.error, "insufficient_scope");
    wwwauth_challenge_release(&c);
}

static void test_case_tokens_and_blanks(void **state)
{
    (void)state;
    struct wwwauth_challenge c;
    struct ff_err err;
    /* Scheme and parameter names are case-insensitive; token values;
     * blanks around '=' and empty list elements are allowed. */
    assert_int_equal(parse(" , bearer  Realm = \"https://r\" ,, SERVICE=svc , ", &c, &err), 0);
    assert_int_equal(c.scheme, WWWAUTH_BEARER);
    assert_string_equal(c.realm, "https://r");
    assert_string_equal(c.service, "svc");
    wwwauth_challenge_release(&c);
}

static void test_quoted_pairs(void **state)
{
    (void)state;
    struct wwwauth_challenge c;
    struct ff_err err;
    assert_int_equal(parse("Basic realm=\"say \\\"hi\\\" \\\\ there\"", &c, &err), 0);
    assert_int_equal(c.scheme, WWWAUTH_BASIC);
    assert_string_equal(c.realm, "say \"hi\" \\ there");
    wwwauth_challenge_release(&c);
    assert_int_equal(parse("Basic realm=\"\"", &c, &err), 0);
    assert_string_equal(c.realm, "");
    wwwauth_challenge_release(&c);
}

static void test_several_challenges(void **state)
{
    (void)state;
    struct wwwauth_challenge c;
    struct ff_err err;
    /* Bearer wins over an earlier Basic. */
    assert_int_equal(parse("Basic realm=\"x\", Bearer realm=\"https://r\",service=\"s\"", &c,
                           &err), 0);
    assert_int_equal(c.scheme, WWWAUTH_BEARER);
    assert_string_equal(c.realm, "https://r");
    assert_string_equal(c.service, "s");
    wwwauth_challenge_release(&c);
    /* The RFC 9110 example: an unknown scheme with parameters, then Basic. */
    assert_int_equal(parse("Newauth realm=\"apps\", type=1, title=\"Login to \\\"apps\\\"\", "
                           "Basic realm=\"simple\"", &c, &err), 0);
    assert_int_equal(c.scheme, WWWAUTH_BASIC);
    assert_string_equal(c.realm, "simple");
    wwwauth_challenge_release(&c);
    /* A token68 challenge is skipped whole. */
    assert_int_equal(parse("Negotiate YWJj+/==, Basic", &c, &err), 0);
    assert_int_equal(c.scheme, WWWAUTH_BASIC);
    assert_null(c.realm);
    wwwauth_challenge_release(&c);
    /* The first Bearer is the one answered. */
    assert_int_equal(parse("Bearer realm=\"https://one\", Bearer realm=\"https://two\"", &c,
                           &err), 0);
    assert_string_equal(c.realm, "https://one");
    wwwauth_challenge_release(&c);
}

static void expect_refused(const char *s, size_t len, int code, const char *needle)
{
    struct wwwauth_challenge c;
    memset(&c, 0x5a, sizeof(c));
    struct ff_err err;
    ff_err_clear(&err);
    int rc = wwwauth_parse(s, len, &c, &err);
    if (rc != code || strstr(err.msg, needle) == NULL)
        fail_msg("\"%.60s\": got %d \"%s\", expected %d with \"%s\"", s, rc, err.msg, code,
                 needle);
    /* Nothing is handed out on failure. */
    assert_int_equal(c.scheme, WWWAUTH_NONE);
    assert_null(c.realm);
    assert_null(c.service);
    assert_null(c.scope);
    assert_null(c.error);
}

static void refused(const char *s, int code, const char *needle)
{
    expect_refused(s, strlen(s), code, needle);
}

static void test_malformed(void **state)
{
    (void)state;
    refused("Bearer service=\"s\"", FF_EINVAL, "without a realm");
    refused("Bearer realm=\"\"", FF_EINVAL, "without a realm");
    refused("Bearer realm=\"https://r", FF_EINVAL, "unterminated");
    refused("Bearer realm=\"https://r\\", FF_EINVAL, "unterminated");
    refused("Bearer realm=\"a\",Realm=\"b\"", FF_EINVAL, "repeated");
    refused("Bearer realm=\"a\" service=\"b\"", FF_EINVAL, "expected ','");
    refused("Bearer realm=", FF_EINVAL, "expected a token or a quoted string");
    refused("Bearer realm=,service=x", FF_EINVAL, "expected a token or a quoted string");
    refused("=x", FF_EINVAL, "expected an authentication scheme");
    refused("Bearer\trealm=\"x\"", FF_EINVAL, "expected a space");
    refused("Bearer realm=\"a\nb\"", FF_EINVAL, "0x0a");
    refused("Bearer realm=\"a\x7f\"", FF_EINVAL, "0x7f");
    refused("Bearer realm=\"a\xc3\xa9\"", FF_EINVAL, "0xc3");
    refused("Bearer realm=\"a\tb\"", FF_EINVAL, "tab");
    refused("Bearer realm=\"a\\\x01\"", FF_EINVAL, "0x01");
    refused("Bearer \"realm\"", FF_EINVAL, "expected name=value");
    refused("", FF_ENOTFOUND, "no Bearer or Basic");
    refused("Negotiate abc, Digest realm=\"x\"", FF_ENOTFOUND, "among 2");
    /* A NUL inside the counted bytes is a control character, not an end. */
    expect_refused("Bearer realm=\"a\0b\"", 18, FF_EINVAL, "0x00");
}

static void test_limits(void **state)
{
    (void)state;
    char *s = malloc(WWWAUTH_HEADER_MAX + 64);
    assert_non_null(s);
    /* A value one byte over the limit; at the limit it parses. */
    int n = snprintf(s, WWWAUTH_HEADER_MAX + 64, "Bearer realm=\"https://r\",scope=\"");
    memset(s + n, 'a', WWWAUTH_VALUE_MAX + 1);
    memcpy(s + n + WWWAUTH_VALUE_MAX + 1, "\"", 2);
    refused(s, FF_ETOOBIG, "longer than");
    memcpy(s + n + WWWAUTH_VALUE_MAX, "\"", 2);
    struct wwwauth_challenge c;
    struct ff_err err;
    assert_int_equal(parse(s, &c, &err), 0);
    assert_int_equal(strlen(c.scope), WWWAUTH_VALUE_MAX);
    wwwauth_challenge_release(&c);
    /* The same for an unquoted token value. */
    n = snprintf(s, WWWAUTH_HEADER_MAX + 64, "Bearer realm=\"https://r\",scope=");
    memset(s + n, 'a', WWWAUTH_VALUE_MAX + 1);
    s[n + WWWAUTH_VALUE_MAX + 1] = '\0';
    refused(s, FF_ETOOBIG, "longer than");
    /* The whole header. */
    memset(s, ' ', WWWAUTH_HEADER_MAX + 1);
    expect_refused(s, WWWAUTH_HEADER_MAX + 1, FF_ETOOBIG, "limit");
    /* Challenges and parameters. */
    struct ff_buf b;
    ff_buf_init(&b, WWWAUTH_HEADER_MAX);
    for (int i = 0; i <= WWWAUTH_CHALLENGES_MAX; i++)
        assert_int_equal(ff_buf_append_str(&b, "Basic, "), 0);
    refused(b.data, FF_ETOOBIG, "challenges");
    ff_buf_reset(&b);
    assert_int_equal(ff_buf_append_str(&b, "Bearer realm=\"https://r\""), 0);
    for (int i = 1; i <= WWWAUTH_PARAMS_MAX; i++)
        assert_int_equal(ff_buf_printf(&b, ",p%d=v", i), 0);
    refused(b.data, FF_ETOOBIG, "parameters");
    ff_buf_release(&b);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_challenge), cmocka_unit_test(test_case_tokens_and_blanks),
        cmocka_unit_test(test_quoted_pairs),       cmocka_unit_test(test_several_challenges),
        cmocka_unit_test(test_malformed),          cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
