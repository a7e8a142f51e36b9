#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry.h"

#include <stdio.h>
#include <string.h>

#define ABC_DIGEST "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void name_fails(const char *name, const char *fragment)
{
    struct ff_err err;
    ff_err_clear(&err);
    int rc = name_validate(name, &err);
    if (rc != FF_EINVAL || strstr(err.msg, fragment) == NULL)
        fail_msg("\"%s\": rc=%d msg=\"%s\", expected \"%s\"", name, rc, err.msg, fragment);
}

static void test_names_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "a", "app", "app/x", "library/debian", "owner/app/linux-arm64", "a.b", "a_b", "a__b",
        "a-b", "a--b", "0/1/2/3/4/5/6/7", "my-app.v2/sub_dir/x__y",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct ff_err err;
        if (name_validate(good[i], &err) != 0)
            fail_msg("\"%s\" refused: %s", good[i], err.msg);
    }
}

static void test_names_invalid(void **state)
{
    (void)state;
    name_fails("a/../b", "repository name \"a/../b\": component 2 \"..\" must start with "
                         "[a-z0-9]");
    name_fails("..", "component 1 \"..\" must start");
    name_fails("../etc/passwd", "component 1 \"..\"");
    name_fails("a/./b", "component 2 \".\"");
    name_fails("/abs/path", "component 1 is empty");
    name_fails("a/", "component 2 is empty");
    name_fails("a//b", "component 2 is empty");
    name_fails("", "empty");
    name_fails("App", "must start with [a-z0-9]");
    name_fails("app/X", "component 2 \"X\"");
    name_fails("a..b", "separator \".\" must be followed");
    name_fails("a___b", "separator \"__\"");
    name_fails("a-", "separator \"-\"");
    name_fails("a\\b", "character 2");
    name_fails("host:5000/app", "character 5 ':'");
    name_fails("a\nb", "repository name \"a?b\"");
    name_fails("a\xc3\xa9", "repository name \"a??\"");
    name_fails("0/1/2/3/4/5/6/7/8", "9 components, limit is 8");
    char longname[NAME_LEN_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    name_fails(longname, "longer than 255 characters");
    longname[NAME_LEN_MAX] = '\0';
    assert_int_equal(name_validate(longname, NULL), 0);
}

static void test_tags(void **state)
{
    (void)state;
    static const char *const good[] = {"latest", "v1.2.3", "_x", "1", "A-b_c.D",
                                       "sha256-abc.sig"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(tag_validate(good[i], NULL), 0);
    static const struct {
        const char *tag;
        const char *fragment;
    } bad[] = {
        {"", "empty"},
        {".x", "character 1 is not [a-zA-Z0-9_]"},
        {"-x", "character 1"},
        {"a/b", "character 2 is not [a-zA-Z0-9._-]"},
        {"a:b", "character 2"},
        {"a b", "character 2"},
        {"..", "character 1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        ff_err_clear(&err);
        int rc = tag_validate(bad[i].tag, &err);
        if (rc != FF_EINVAL || strstr(err.msg, bad[i].fragment) == NULL)
            fail_msg("\"%s\": rc=%d msg=\"%s\"", bad[i].tag, rc, err.msg);
    }
    char tag[TAG_LEN_MAX + 2];
    memset(tag, 'a', sizeof(tag) - 1);
    tag[sizeof(tag) - 1] = '\0';
    struct ff_err err;
    assert_int_equal(tag_validate(tag, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "longer than 128"));
    tag[TAG_LEN_MAX] = '\0';
    assert_int_equal(tag_validate(tag, NULL), 0);
}

static void test_reference(void **state)
{
    (void)state;
    struct reference r;
    struct ff_err err;
    assert_int_equal(reference_parse("v1.0", &r, &err), 0);
    assert_int_equal(r.kind, REFERENCE_TAG);
    assert_string_equal(r.tag, "v1.0");
    assert_int_equal(reference_parse(ABC_DIGEST, &r, &err), 0);
    assert_int_equal(r.kind, REFERENCE_DIGEST);
    assert_string_equal(r.tag, "");
    char s[FF_DIGEST_STR_SIZE];
    ff_digest_format(&r.digest, s);
    assert_string_equal(s, ABC_DIGEST);

    memset(&r, 0x5a, sizeof(r));
    struct reference before = r;
    assert_int_equal(reference_parse("sha256:abc", &r, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "reference: digest"));
    assert_memory_equal(&r, &before, sizeof(r)); /* untouched on error */
    assert_int_equal(reference_parse("sha512:" "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715"
                                     "dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b9"
                                     "31bd47417a81a538327af927da3e", &r, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "unsupported algorithm"));
    assert_int_equal(reference_parse("../x", &r, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "reference: tag"));
    assert_int_equal(reference_parse("", &r, &err), FF_EINVAL);
    assert_int_equal(reference_parse("a\xff", &r, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "(0xff) is not printable ASCII"));
    assert_int_equal(reference_parse("a b", &r, &err), FF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_valid),
        cmocka_unit_test(test_names_invalid),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests_name("registry/name", tests, NULL, NULL);
}
