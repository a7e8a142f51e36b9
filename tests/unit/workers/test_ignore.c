#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ignore *parse_ok(const char *text)
{
    struct ignore *ig = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    if (ignore_parse(text, strlen(text), &ig, &err) != 0)
        fail_msg("parse of <<%s>>: %s", text, err.msg);
    return ig;
}

static bool excluded(const struct ignore *ig, const char *path)
{
    bool ex = false;
    struct ff_err err;
    if (ignore_match(ig, path, &ex, &err) != 0)
        fail_msg("match \"%s\": %s", path, err.msg);
    return ex;
}

/* Each case: .dockerignore text, then paths prefixed '-' (excluded) or
 * '+' (kept). */
static const struct {
    const char *ignore;
    const char *paths[12];
} match_cases[] = {
    /* Docker's documentation example. */
    {"# comment\n*/temp*\n*/*/temp*\ntemp?\n",
     {"-somedir/temporary.txt", "-somedir/temp", "-somedir/subdir/temporary.txt", "-tempa",
      "-tempb", "+temp", "+temporary.txt", "+a/b/c/temp", "+somedir/x/y/temp",
      "-somedir/temp/inside", NULL}},
    /* ** any number of directories, none included. */
    {"**/*.go\n",
     {"-main.go", "-a/b/c.go", "-x.go/inside", "+main.gox", "+a/go", "+a.go.txt", NULL}},
    /* The last matching pattern wins; exceptions re-include. */
    {"*.md\n!README.md\n", {"-CHANGES.md", "+README.md", "+src/README.md", "+src/x.md", NULL}},
    {"*.md\n!README*.md\nREADME-secret.md\n",
     {"-CHANGES.md", "+README.md", "+README-public.md", "-README-secret.md", NULL}},
    {"*.md\nREADME-secret.md\n!README*.md\n", {"-CHANGES.md", "+README-secret.md", NULL}},
    /* A directory excludes what is under it; an exception re-includes. */
    {"build\n!build/keep\n",
     {"-build", "-build/a", "-build/a/b", "+build/keep", "+build/keep/x", "+buildx", NULL}},
    {"*\n!src\n", {"-Dockerfile", "-.dockerignore", "+src", "+src/main.c", "-docs/x", NULL}},
    /* Cleaning: leading / and ./, trailing /, duplicate /, . and .. */
    {"/node_modules/\n./dist\nlogs//old/\ncache/../tmp\n./a/./b\n",
     {"-node_modules", "-node_modules/x/y", "-dist/a", "-logs/old/1", "+logs/new", "-tmp/x",
      "+cache/x", "-a/b", NULL}},
    /* Blanks around patterns go; a '#' not in column 0 is a pattern. */
    {"  spaced  \n\t\ttabbed\n #hash\n\n",
     {"-spaced", "-tabbed", "-#hash", "+ #hash", NULL}},
    /* Prefix (text then "**"), suffix ("**" then text) and all ("**"). */
    {"a/**\n", {"-a/b", "-a/b/c", "+a", "+ab/c", NULL}},
    {"**/foo\n", {"-foo", "-x/foo", "-x/y/foo/z", "+xfoo", "+foo.txt", NULL}},
    {"**foo\n", {"-xfoo", "-a/bfoo", "-foo", NULL}},
    {"**\n", {"-a", "-a/b/c", "-.dockerignore", NULL}},
    {"a/**/b\n", {"-a/b", "-a/x/b", "-a/x/y/b", "+a/xb", "+b", "-a/b/c", NULL}},
    {"a/**/*.txt\n", {"-a/x.txt", "-a/b/c/x.txt", "+b/x.txt", NULL}},
    /* ? and * never cross '/'. */
    {"a?b\na*c\n", {"-axb", "+a/b", "-abbbc", "+a/c", "-ac", NULL}},
    /* Classes and escapes. */
    {"[abc].txt\nf[0-9]\nn[^x]\nlit\\*\n",
     {"-a.txt", "-c.txt", "+d.txt", "-f7", "+fx", "-ny", "+nx", "-lit*", "+litx", NULL}},
    /* Regular-expression characters are plain text. */
    {"a.b\n(x)+\n{y}|$\n", {"-a.b", "+axb", "-(x)+", "+xx", "-{y}|$", NULL}},
    /* UTF-8: ? is one character. */
    {"?.txt\nd\xc3\xa9j\xc3\xa0/\n", {"-\xc3\xa9.txt", "+ab.txt", "-d\xc3\xa9j\xc3\xa0/x", NULL}},
    /* Exceptions can reach below an excluded directory through wildcards. */
    {"vendor\n!vendor/**/*.go\n",
     {"-vendor/a.txt", "+vendor/a.go", "+vendor/x/y.go", "-vendor/x/y.txt", NULL}},
    /* Dockerfile and .dockerignore are not special here. */
    {"Dockerfile\n.dockerignore\n", {"-Dockerfile", "-.dockerignore", "+Dockerfile.old", NULL}},
    /* CRLF and a BOM. */
    {"\xef\xbb\xbf" "a\r\nb\r\n", {"-a", "-b", NULL}},
    {"", {"+a", "+a/b", NULL}},
};

static void test_ignore_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        struct ignore *ig = parse_ok(match_cases[i].ignore);
        for (size_t k = 0; match_cases[i].paths[k] != NULL; k++) {
            const char *p = match_cases[i].paths[k];
            bool want = p[0] == '-';
            if (excluded(ig, p + 1) != want)
                fail_msg("case %zu <<%s>>: \"%s\" should be %s", i, match_cases[i].ignore, p + 1,
                         want ? "excluded" : "kept");
        }
        ignore_free(ig);
    }
}

static void test_ignore_paths_are_cleaned(void **state)
{
    (void)state;
    struct ignore *ig = parse_ok("a/b\n");
    static const char *const same[] = {"a/b", "./a/b", "/a/b", "a//b", "a/./b/", "./a/b/c"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        assert_true(excluded(ig, same[i]));
    assert_false(excluded(ig, ""));
    assert_false(excluded(ig, "."));
    assert_false(excluded(ig, "a"));
    bool ex = false;
    struct ff_err err;
    assert_int_equal(ignore_match(ig, "a/../b", &ex, &err), FF_EINVAL);
    assert_string_equal(err.msg, "path \"a/../b\" has a \"..\" component, expected a path inside "
                                 "the context");
    char *longp = malloc(IGNORE_PATH_MAX + 2);
    assert_non_null(longp);
    memset(longp, 'x', IGNORE_PATH_MAX + 1);
    longp[IGNORE_PATH_MAX + 1] = '\0';
    assert_int_equal(ignore_match(ig, longp, &ex, &err), FF_ETOOBIG);
    bool may = false;
    assert_int_equal(ignore_dir_may_contain_exceptions(ig, longp, &may, &err), FF_ETOOBIG);
    free(longp);
    ignore_free(ig);
}

static void test_ignore_walk_decisions(void **state)
{
    (void)state;
    static const struct {
        const char *ignore;
        const char *dir;
        bool may;
    } cases[] = {
        {"build\n", "build", false},
        {"build\n!build/keep\n", "build", true},
        {"build\n!build/keep\n", "build/other", false},
        {"build\n!build/keep\n", "build/keep", true}, /* not excluded */
        {"docs\n!docs/keep.txt\n", "src", true},      /* not excluded */
        {"docs\n!docs/keep.txt\n", "docs/sub", false},
        {"*\n!**/*.go\n", "anything/deep", true},
        {"*\n!src/*/main.go\n", "src", true},
        {"*\n!src/*/main.go\n", "src/cmd", true},
        {"*\n!src/*/main.go\n", "src/cmd/sub", false},
        {"*\n!src/*/main.go\n", "lib", false},
        {"*\n!src/**\n", "src", true},
        {"*\n!src/**\n", "srcs", false},
        {"*\n!sr**\n", "src", true},
        {"*\n!**.keep\n", "x", true},
        {"*\n![ab]/x\n", "a", true},
        {"*\n![ab]/x\n", "c", false},
        {"*\n!x\n", "", true},
        {"*\n", "", true}, /* the root is never excluded */
        {"*\n", "x", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ignore *ig = parse_ok(cases[i].ignore);
        bool may = !cases[i].may;
        struct ff_err err;
        assert_int_equal(ignore_dir_may_contain_exceptions(ig, cases[i].dir, &may, &err), 0);
        if (may != cases[i].may)
            fail_msg("case %zu <<%s>> dir \"%s\": got %d", i, cases[i].ignore, cases[i].dir, may);
        ignore_free(ig);
    }
}

/* The walk's promise: when a directory is excluded and may be skipped,
 * everything below it is excluded. Checked over a grid of patterns and
 * paths. */
static void test_ignore_skip_is_sound(void **state)
{
    (void)state;
    static const char *const ignores[] = {
        "a\n!a/b/c\n", "*\n!*/keep\n", "a\n!**/x\n", "a/*\n!a/b\nb/**\n", "**/t*\n!a/t1/**\n",
        "[ab]\n!a/[xy]\n", "*/*\n!c/c/c\n",
    };
    static const char *const dirs[] = {"a", "b", "c", "a/b", "a/t1", "c/c", "a/x"};
    static const char *const leaves[] = {"b", "x", "keep", "t1", "c", "y", "b/c", "x/t1"};
    for (size_t i = 0; i < sizeof(ignores) / sizeof(ignores[0]); i++) {
        struct ignore *ig = parse_ok(ignores[i]);
        for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
            bool may = true;
            struct ff_err err;
            assert_int_equal(ignore_dir_may_contain_exceptions(ig, dirs[d], &may, &err), 0);
            if (!excluded(ig, dirs[d]) || may)
                continue;
            for (size_t l = 0; l < sizeof(leaves) / sizeof(leaves[0]); l++) {
                char path[64];
                (void)snprintf(path, sizeof(path), "%s/%s", dirs[d], leaves[l]);
                if (!excluded(ig, path))
                    fail_msg("<<%s>>: \"%s\" skipped but \"%s\" kept", ignores[i], dirs[d], path);
            }
        }
        ignore_free(ig);
    }
}

static void test_ignore_counts(void **state)
{
    (void)state;
    struct ignore *ig = parse_ok("# c\n\na\n!b\n");
    assert_int_equal(ignore_count(ig), 2);
    assert_true(ignore_has_exceptions(ig));
    ignore_free(ig);
    ig = parse_ok("a\nb\n");
    assert_false(ignore_has_exceptions(ig));
    bool may = true;
    struct ff_err err;
    assert_int_equal(ignore_dir_may_contain_exceptions(ig, "a", &may, &err), 0);
    assert_false(may);
    ignore_free(ig);
    ignore_free(NULL);
}

static void test_ignore_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        int code;
        const char *msg;
    } cases[] = {
        {"a\n!\n", 0, FF_EINVAL,
         ".dockerignore:2: illegal exclusion pattern \"!\", expected !<pattern>"},
        {"!  \n", 0, FF_EINVAL, ".dockerignore:1: illegal exclusion pattern \"!\""},
        {"a\nb[\n", 0, FF_EINVAL,
         ".dockerignore:2: bad pattern \"b[\": unterminated character class, expected a "
         "pattern of text, *, ?, ** and [...] classes"},
        {"[]\n", 0, FF_EINVAL, ".dockerignore:1: bad pattern \"[]\": bad character class"},
        {"[a-]\n", 0, FF_EINVAL, ".dockerignore:1: bad pattern \"[a-]\": bad range in character "
                                 "class"},
        {"[-a]\n", 0, FF_EINVAL, ".dockerignore:1: bad pattern \"[-a]\": bad character class"},
        {"[z-a]\n", 0, FF_EINVAL,
         ".dockerignore:1: bad pattern \"[z-a]\": range out of order in character class"},
        {"[a\n", 0, FF_EINVAL, ".dockerignore:1: bad pattern \"[a\": unterminated"},
        {"x\\\n", 0, FF_EINVAL, ".dockerignore:1: bad pattern \"x?\": trailing backslash"},
        {"!a[\n", 0, FF_EINVAL, ".dockerignore:1: bad pattern \"a[\""},
        {"a\nb\0c\n", 6, FF_EINVAL, ".dockerignore:2: NUL byte, expected text"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ignore *ig = NULL;
        struct ff_err err;
        ff_err_clear(&err);
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        int rc = ignore_parse(cases[i].text, len, &ig, &err);
        if (rc != cases[i].code || strncmp(err.msg, cases[i].msg, strlen(cases[i].msg)) != 0)
            fail_msg("case %zu: rc %d <<%s>> want <<%s>>", i, rc, err.msg, cases[i].msg);
        assert_null(ig);
    }
}

static void test_ignore_limits(void **state)
{
    (void)state;
    struct ignore *ig = NULL;
    struct ff_err err;
    char *big = malloc(IGNORE_SIZE_MAX + 1);
    assert_non_null(big);
    memset(big, '#', IGNORE_SIZE_MAX + 1);
    assert_int_equal(ignore_parse(big, IGNORE_SIZE_MAX + 1, &ig, &err), FF_ETOOBIG);
    assert_string_equal(err.msg, ".dockerignore: 1048577 bytes, expected at most 1048576");
    /* One pattern too long. */
    memset(big, 'x', IGNORE_PATH_MAX + 1);
    assert_int_equal(ignore_parse(big, IGNORE_PATH_MAX + 1, &ig, &err), FF_ETOOBIG);
    assert_string_equal(err.msg, ".dockerignore:1: pattern of 4097 bytes, expected at most 4096");
    /* Too many patterns. */
    for (size_t i = 0; i <= IGNORE_PATTERNS_MAX; i++) {
        big[i * 2] = 'a';
        big[i * 2 + 1] = '\n';
    }
    assert_int_equal(ignore_parse(big, (size_t)IGNORE_PATTERNS_MAX * 2, &ig, &err), 0);
    assert_int_equal(ignore_count(ig), IGNORE_PATTERNS_MAX);
    ignore_free(ig);
    assert_int_equal(ignore_parse(big, (size_t)(IGNORE_PATTERNS_MAX + 1) * 2, &ig, &err),
                     FF_ETOOBIG);
    assert_string_equal(err.msg, ".dockerignore:4097: more than 4096 patterns, expected at most "
                                 "4096");
    /* A long path through many wildcard patterns stays quick (linear). */
    size_t n = 0;
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(big + n, 64, "*a*a*a*a*a*a*a*a*a*a*a*a*a*b%d\n", i);
    assert_int_equal(ignore_parse(big, n, &ig, &err), 0);
    char path[IGNORE_PATH_MAX + 1];
    memset(path, 'a', IGNORE_PATH_MAX);
    path[IGNORE_PATH_MAX] = '\0';
    bool ex = true;
    assert_int_equal(ignore_match(ig, path, &ex, &err), 0);
    assert_false(ex);
    ignore_free(ig);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ignore_cases),
        cmocka_unit_test(test_ignore_paths_are_cleaned),
        cmocka_unit_test(test_ignore_walk_decisions),
        cmocka_unit_test(test_ignore_skip_is_sound),
        cmocka_unit_test(test_ignore_counts),
        cmocka_unit_test(test_ignore_errors),
        cmocka_unit_test(test_ignore_limits),
    };
    return cmocka_run_group_tests_name("workers/ignore", tests, NULL, NULL);
}
