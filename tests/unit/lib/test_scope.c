#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_scope.h"

#include <stdlib.h>
#include <string.h>

/* snprintf that fails the test rather than truncate. */
#define FMT(buf, ...) \
    assert_true((unsigned)snprintf((buf), sizeof(buf), __VA_ARGS__) < sizeof(buf))

static void parse_ok(const char *s, struct ff_access *a)
{
    struct ff_err err;
    ff_err_clear(&err);
    int rc = ff_scope_parse(s, a, &err);
    if (rc != 0)
        fail_msg("\"%s\": rc=%d msg=\"%s\"", s, rc, err.msg);
}

static void parse_fails(const char *s, int code, const char *fragment)
{
    struct ff_access a;
    ff_access_init(&a);
    struct ff_err err;
    ff_err_clear(&err);
    int rc = ff_scope_parse(s, &a, &err);
    if (rc != code || strstr(err.msg, fragment) == NULL)
        fail_msg("\"%s\": rc=%d msg=\"%s\", expected %d and \"%s\"", s, rc, err.msg, code,
                 fragment);
    assert_int_equal(a.n, 0);
    ff_access_release(&a);
}

static void test_name_grammar(void **state)
{
    (void)state;
    static const char *const good[] = {
        "a", "app", "app/x", "library/debian", "a0/b1/c2", "a.b", "a_b", "a__b", "a-b",
        "a---b", "a-b.c_d__e/f", "0", "owner/app-1.2/linux_arm64",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct ff_err err;
        if (ff_scope_name_check(good[i], strlen(good[i]), &err) != 0)
            fail_msg("\"%s\" refused: %s", good[i], err.msg);
    }
    static const struct {
        const char *name;
        const char *fragment;
    } bad[] = {
        {"", "empty"},
        {"/a", "component 1 is empty"},
        {"a/", "component 2 is empty"},
        {"a//b", "component 2 is empty"},
        {"a/../b", "component 2 \"..\" must start with [a-z0-9]"},
        {"..", "component 1 \"..\" must start with [a-z0-9]"},
        {"./a", "component 1 \".\" must start with [a-z0-9]"},
        {"A", "must start with [a-z0-9]"},
        {"aB", "character 2 'B' is outside"},
        {"a..b", "separator \".\" must be followed"},
        {"a___b", "separator \"__\" must be followed"},
        {"a._b", "separator \".\" must be followed"},
        {"a-", "separator \"-\" must be followed"},
        {"a:b", "character 2 ':'"},
        {"a b", "character 2 ' '"},
        {"a\xc3\xa9", "(0xc3)"},
        {"-a", "must start with"},
        {"_a", "must start with"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        ff_err_clear(&err);
        int rc = ff_scope_name_check(bad[i].name, strlen(bad[i].name), &err);
        if (rc != FF_EINVAL || strstr(err.msg, bad[i].fragment) == NULL)
            fail_msg("\"%s\": rc=%d msg=\"%s\", expected \"%s\"", bad[i].name, rc, err.msg,
                     bad[i].fragment);
    }
    /* Length-delimited: a prefix of a longer buffer is what counts. */
    assert_int_equal(ff_scope_name_check("app/x:pull", 5, NULL), 0);
    /* Messages never carry bytes a JSON body cannot hold. */
    struct ff_err err;
    assert_int_equal(ff_scope_name_check("a/\"\xff", 4, &err), FF_EINVAL);
    assert_null(memchr(err.msg, 0xff, strlen(err.msg)));
    char longname[FF_SCOPE_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(ff_scope_name_check(longname, FF_SCOPE_NAME_MAX, NULL), 0);
    assert_int_equal(ff_scope_name_check(longname, FF_SCOPE_NAME_MAX + 1, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "limit is 255"));
}

static void test_parse_spec_examples(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    parse_ok("repository:samalba/my-app:pull,push", &a);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.entries[0].type, "repository");
    assert_string_equal(a.entries[0].name, "samalba/my-app");
    assert_int_equal(a.entries[0].actions, FF_ACTION_PULL | FF_ACTION_PUSH);
    parse_ok("registry:catalog:*", &a);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.entries[1].type, "registry");
    assert_int_equal(a.entries[1].actions, FF_ACTION_ALL);
    /* A resource class is accepted and does not change the resource. */
    parse_ok("repository(plugin):samalba/my-app:delete", &a);
    assert_int_equal(a.n, 1 + 1);
    assert_int_equal(a.entries[0].actions, FF_ACTION_PULL | FF_ACTION_PUSH | FF_ACTION_DELETE);
    ff_access_release(&a);
    ff_access_release(NULL);
}

static void test_parse_host_port_and_multiple(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    parse_ok("repository:localhost:5000/app/x:pull repository:Registry.Example.com/lib/y:push "
             "repository:app/x:pull",
             &a);
    assert_int_equal(a.n, 3);
    assert_string_equal(a.entries[0].name, "localhost:5000/app/x");
    assert_string_equal(a.entries[1].name, "Registry.Example.com/lib/y");
    assert_string_equal(a.entries[2].name, "app/x");
    /* Repeats merge; extra spaces are tolerated. */
    parse_ok("  repository:app/x:push   repository:app/x:pull,pull ", &a);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.entries[2].actions, FF_ACTION_PULL | FF_ACTION_PUSH);
    ff_access_release(&a);
}

static void test_parse_drops_unknown(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    parse_ok("repository:app/x:pull,frobnicate,mount", &a);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.entries[0].actions, FF_ACTION_PULL);
    /* Unknown type, registry name other than catalog, registry:pull, and
     * a scope left without actions: all dropped, none an error. */
    parse_ok("plugin:x:pull registry:other:* registry:catalog:pull repository:app/y:metadata",
             &a);
    assert_int_equal(a.n, 1);
    ff_access_release(&a);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    parse_fails("repository", FF_EINVAL, "expected type:name:actions");
    parse_fails("repository:x", FF_EINVAL, "expected type:name:actions");
    parse_fails(":x:pull", FF_EINVAL, "resource type");
    parse_fails("repository:x:", FF_EINVAL, "action is empty");
    parse_fails("repository:x:pull,,push", FF_EINVAL, "action is empty");
    parse_fails("repository:x:Pull", FF_EINVAL, "action is malformed");
    parse_fails("repository:x:pu*ll", FF_EINVAL, "action is malformed");
    parse_fails("repository:../x:pull", FF_EINVAL, "component 1 \"..\" must start");
    parse_fails("repository:a/../x:pull", FF_EINVAL, "component 2 \"..\"");
    parse_fails("repository::pull", FF_EINVAL, "empty");
    parse_fails("Repository:x:pull", FF_EINVAL, "resource type");
    parse_fails("repository(:x:pull", FF_EINVAL, "resource type");
    parse_fails("repository():x:pull", FF_EINVAL, "resource type");
    parse_fails("repository(a)b:x:pull", FF_EINVAL, "resource type");
    parse_fails("repository:-host:5000/x:pull", FF_EINVAL, "name");
    parse_fails("repository:host:/x:pull", FF_EINVAL, "name");
    parse_fails("repository:host:5000/X:pull", FF_EINVAL, "after host \"host:5000\"");
    parse_fails("", FF_EINVAL, "empty");
    parse_fails("   ", FF_EINVAL, "empty");
    /* A bad scope spoils the whole string: nothing is added. */
    parse_fails("repository:app/x:pull repository:../y:pull", FF_EINVAL, "..");
    /* Hostile bytes stay out of the message. */
    parse_fails("repository:\"\x01\xff:pull", FF_EINVAL, "scope \"repository:???:pull\"");
    char *big = malloc(FF_SCOPE_STRING_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', FF_SCOPE_STRING_MAX + 1);
    big[FF_SCOPE_STRING_MAX + 1] = '\0';
    parse_fails(big, FF_ETOOBIG, "longer than");
    free(big);
}

static void test_parse_limit(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    char s[64];
    for (int i = 0; i < FF_ACCESS_MAX; i++) {
        FMT(s, "repository:r%d:pull", i);
        parse_ok(s, &a);
    }
    assert_int_equal(a.n, FF_ACCESS_MAX);
    struct ff_err err;
    assert_int_equal(ff_scope_parse("repository:one/more:pull", &a, &err), FF_ETOOBIG);
    assert_int_equal(a.n, FF_ACCESS_MAX);
    /* Merging into an existing entry still works at the limit. */
    parse_ok("repository:r0:push", &a);
    assert_true(ff_access_allows(&a, "repository", "r0", FF_ACTION_PUSH));
    assert_int_equal(ff_access_add(&a, "repository", "one/more", FF_ACTION_PULL, &err),
                     FF_ETOOBIG);
    ff_access_release(&a);
}

static void test_allows_matrix(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    parse_ok("repository:app/ro:pull repository:app/rw:pull,push repository:app/all:* "
             "repository:app/del:delete registry:catalog:*",
             &a);
    static const struct {
        const char *type;
        const char *name;
        unsigned action;
        bool allowed;
    } cases[] = {
        {"repository", "app/ro", FF_ACTION_PULL, true},
        {"repository", "app/ro", FF_ACTION_PUSH, false},
        {"repository", "app/ro", FF_ACTION_DELETE, false},
        {"repository", "app/ro", FF_ACTION_PULL | FF_ACTION_PUSH, false},
        {"repository", "app/rw", FF_ACTION_PULL | FF_ACTION_PUSH, true},
        {"repository", "app/rw", FF_ACTION_DELETE, false},
        {"repository", "app/all", FF_ACTION_DELETE, true},
        {"repository", "app/all", FF_ACTION_PULL | FF_ACTION_PUSH, true},
        {"repository", "app/del", FF_ACTION_DELETE, true},
        {"repository", "app/del", FF_ACTION_PULL, false},
        {"repository", "app/ro", 0, false},
        {"repository", "app/r", FF_ACTION_PULL, false},
        {"repository", "app/ro/x", FF_ACTION_PULL, false},
        {"repository", "APP/ro", FF_ACTION_PULL, false},
        {"registry", "app/ro", FF_ACTION_PULL, false},
        {"registry", "catalog", FF_ACTION_ALL, true},
        {"registry", "catalog", FF_ACTION_PULL, true},
        {"repository", "catalog", FF_ACTION_PULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = ff_access_allows(&a, cases[i].type, cases[i].name, cases[i].action);
        if (got != cases[i].allowed)
            fail_msg("case %zu: %s:%s:%u gave %d", i, cases[i].type, cases[i].name,
                     cases[i].action, got);
    }
    ff_access_release(&a);
    struct ff_access empty;
    ff_access_init(&empty);
    assert_false(ff_access_allows(&empty, "repository", "app/ro", FF_ACTION_PULL));
}

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_ALLOW_NUL, &jerr);
    if (v == NULL)
        fail_msg("bad test json: %s", jerr.text);
    return v;
}

static void test_claim_round_trip(void **state)
{
    (void)state;
    const char *text = "[{\"type\":\"repository\",\"name\":\"app/x\",\"actions\":[\"pull\","
                       "\"push\"]},{\"type\":\"registry\",\"name\":\"catalog\",\"actions\":"
                       "[\"*\"]},{\"type\":\"repository\",\"name\":\"localhost:5000/lib/y\","
                       "\"actions\":[\"pull\",\"push\",\"delete\",\"*\"]}]";
    json_t *claim = load(text);
    struct ff_access a;
    ff_access_init(&a);
    struct ff_err err;
    assert_int_equal(ff_access_from_json(claim, &a, &err), 0);
    assert_int_equal(a.n, 3);
    json_t *back = NULL;
    assert_int_equal(ff_access_to_json(&a, &back, &err), 0);
    assert_true(json_equal(claim, back));
    json_decref(back);
    json_decref(claim);
    ff_access_release(&a);

    /* Unknown things are dropped, extra keys ignored, repeats merged. */
    claim = load("[{\"type\":\"repository\",\"name\":\"app/x\",\"actions\":[\"pull\","
                 "\"mount\"],\"x\":1},{\"type\":\"plugin\",\"name\":\"../whatever\","
                 "\"actions\":[\"pull\"]},{\"type\":\"registry\",\"name\":\"x\",\"actions\":"
                 "[\"*\"]},{\"type\":\"repository\",\"name\":\"app/y\",\"actions\":[]},"
                 "{\"type\":\"repository\",\"name\":\"app/x\",\"actions\":[\"push\"]}]");
    assert_int_equal(ff_access_from_json(claim, &a, &err), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.entries[0].actions, FF_ACTION_PULL | FF_ACTION_PUSH);
    json_decref(claim);
    ff_access_release(&a);

    assert_int_equal(ff_access_to_json(&a, &back, &err), 0);
    assert_int_equal(json_array_size(back), 0);
    json_decref(back);
}

static void claim_fails(const char *text, int code, const char *fragment)
{
    json_t *claim = load(text);
    struct ff_access a;
    ff_access_init(&a);
    struct ff_err err;
    ff_err_clear(&err);
    int rc = ff_access_from_json(claim, &a, &err);
    if (rc != code || strstr(err.msg, fragment) == NULL)
        fail_msg("%s: rc=%d msg=\"%s\", expected \"%s\"", text, rc, err.msg, fragment);
    assert_int_equal(a.n, 0);
    json_decref(claim);
}

static void test_claim_strict(void **state)
{
    (void)state;
    claim_fails("{}", FF_EINVAL, "expected an array, got object");
    claim_fails("[1]", FF_EINVAL, "item 0: expected an object, got integer");
    claim_fails("[{\"name\":\"a\",\"actions\":[]}]", FF_EINVAL, "\"type\": required");
    claim_fails("[{\"type\":1,\"name\":\"a\",\"actions\":[]}]", FF_EINVAL, "\"type\"");
    claim_fails("[{\"type\":\"repository\",\"actions\":[]}]", FF_EINVAL, "\"name\": required");
    claim_fails("[{\"type\":\"repository\",\"name\":\"a\"}]", FF_EINVAL,
                "\"actions\": required");
    claim_fails("[{\"type\":\"repository\",\"name\":\"a\",\"actions\":\"pull\"}]", FF_EINVAL,
                "\"actions\": expected an array");
    claim_fails("[{\"type\":\"repository\",\"name\":\"a\",\"actions\":[\"pull\",7]}]",
                FF_EINVAL, "item 1: expected a string");
    claim_fails("[{\"type\":\"repository\",\"name\":\"a/../b\",\"actions\":[\"pull\"]}]",
                FF_EINVAL, "component 2");
    claim_fails("[{\"type\":\"repository\",\"name\":\"a\",\"actions\":[\"pull\"]},"
                "{\"type\":\"repository\",\"name\":\"\",\"actions\":[\"pull\"]}]",
                FF_EINVAL, "item 1");
    claim_fails("[{\"type\":\"repository\",\"name\":\"a\\u0000b\",\"actions\":[\"pull\"]}]",
                FF_EINVAL, "NUL");

    json_t *big = json_array();
    for (int i = 0; i <= FF_ACCESS_MAX; i++)
        json_array_append_new(big, json_object());
    struct ff_access a;
    ff_access_init(&a);
    struct ff_err err;
    assert_int_equal(ff_access_from_json(big, &a, &err), FF_ETOOBIG);
    json_decref(big);
}

static void test_add_and_format(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    struct ff_err err;
    assert_int_equal(ff_access_add(&a, "repository", "app/x", FF_ACTION_PULL, &err), 0);
    assert_int_equal(ff_access_add(&a, "repository", "app/x", 0, &err), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(ff_access_add(&a, "registry", "catalog", FF_ACTION_ALL, &err), 0);
    assert_int_equal(ff_access_add(&a, "registry", "catalog", FF_ACTION_PULL, &err), FF_EINVAL);
    assert_int_equal(ff_access_add(&a, "registry", "other", FF_ACTION_ALL, &err), FF_EINVAL);
    assert_int_equal(ff_access_add(&a, "plugin", "x", FF_ACTION_PULL, &err), FF_EINVAL);
    assert_int_equal(ff_access_add(&a, "repository", "a/../b", FF_ACTION_PULL, &err),
                     FF_EINVAL);
    assert_non_null(strstr(err.msg, "name \"a/../b\""));
    assert_int_equal(ff_access_add(&a, "repository", "x", 0x10, &err), FF_EINVAL);
    assert_int_equal(a.n, 2);
    ff_access_release(&a);

    char *s = NULL;
    assert_int_equal(ff_access_format_scope("repository", "app/x",
                                            FF_ACTION_PUSH | FF_ACTION_PULL, &s, &err), 0);
    assert_string_equal(s, "repository:app/x:pull,push");
    free(s);
    assert_int_equal(ff_access_format_scope("repository", "app/x", FF_ACTION_DELETE, &s, &err),
                     0);
    assert_string_equal(s, "repository:app/x:delete");
    free(s);
    assert_int_equal(ff_access_format_scope("registry", "catalog", FF_ACTION_ALL, &s, &err), 0);
    assert_string_equal(s, "registry:catalog:*");
    /* What we format, we parse back to the same grant. */
    ff_access_init(&a);
    parse_ok(s, &a);
    assert_true(ff_access_allows(&a, "registry", "catalog", FF_ACTION_ALL));
    ff_access_release(&a);
    free(s);
    s = NULL;
    assert_int_equal(ff_access_format_scope("repository", "app/x\" realm=\"evil",
                                            FF_ACTION_PULL, &s, &err), FF_EINVAL);
    assert_null(s);
    assert_int_equal(ff_access_format_scope("repository", "app/x", 0, &s, &err), FF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_grammar),
        cmocka_unit_test(test_parse_spec_examples),
        cmocka_unit_test(test_parse_host_port_and_multiple),
        cmocka_unit_test(test_parse_drops_unknown),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_limit),
        cmocka_unit_test(test_allows_matrix),
        cmocka_unit_test(test_claim_round_trip),
        cmocka_unit_test(test_claim_strict),
        cmocka_unit_test(test_add_and_format),
    };
    return cmocka_run_group_tests_name("lib/scope", tests, NULL, NULL);
}
