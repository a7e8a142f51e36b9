#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gitd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZERO "0000000000000000000000000000000000000000"
#define A "1111111111111111111111111111111111111111"
#define B "abcdefabcdefabcdefabcdefabcdefabcdef0123"

static int setup(void **state)
{
    (void)state;
    return git_libgit2_init() > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    git_libgit2_shutdown();
    return 0;
}

static int add(struct refcmd_list *l, const char *line, size_t len, struct ff_err *err)
{
    ff_err_clear(err);
    return refcmd_list_add(l, line, len, err);
}

/* Adds a line (which may hold NULs, hence the explicit length) expecting
 * rc and a message holding fragment; the list must not change. */
static void add_fails(struct refcmd_list *l, const char *line, size_t len, int rc,
                      const char *fragment)
{
    size_t before = l->n;
    struct ff_err err;
    int got = add(l, line, len, &err);
    if (got != rc || strstr(err.msg, fragment) == NULL)
        fail_msg("\"%.*s\": rc=%d msg=\"%s\", expected %d \"%s\"", (int)len, line, got, err.msg,
                 rc, fragment);
    assert_int_equal(l->n, before);
}

#define LINE(s) (s), sizeof(s) - 1

static void test_first_line_with_caps(void **state)
{
    (void)state;
    struct refcmd_list l = {0};
    struct ff_err err;
    static const char first[] = ZERO " " A " refs/heads/main\0report-status side-band-64k "
                                "quiet atomic ofs-delta delete-refs object-format=sha1 "
                                "agent=git/2.39.5\n";
    assert_int_equal(add(&l, LINE(first), &err), 0);
    assert_int_equal(l.n, 1);
    assert_true(l.caps.report_status && l.caps.side_band_64k && l.caps.quiet && l.caps.atomic &&
                l.caps.ofs_delta && l.caps.delete_refs);
    assert_string_equal(l.cmds[0].ref, "refs/heads/main");
    assert_true(git_oid_is_zero(&l.cmds[0].old_id));
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof(hex), &l.cmds[0].new_id);
    assert_string_equal(hex, A);
    assert_false(l.cmds[0].rejected);
    assert_false(refcmd_is_delete(&l.cmds[0]));

    /* later lines: no LF needed, a delete, a tag */
    assert_int_equal(add(&l, LINE(B " " ZERO " refs/heads/old"), &err), 0);
    assert_true(refcmd_is_delete(&l.cmds[1]));
    assert_int_equal(add(&l, LINE(ZERO " " B " refs/tags/v1.0\n"), &err), 0);
    assert_int_equal(l.n, 3);
    refcmd_list_release(&l);
    assert_int_equal(l.n, 0);
}

static void test_malformed_lines(void **state)
{
    (void)state;
    struct refcmd_list l = {0};
    add_fails(&l, LINE(""), FF_EINVAL, "command 1: \"\" is not \"<old-id> <new-id> <ref>\"");
    add_fails(&l, LINE(ZERO " " A), FF_EINVAL, "is not \"<old-id> <new-id> <ref>\"");
    add_fails(&l, LINE(ZERO " " A " "), FF_EINVAL, "is not \"<old-id> <new-id> <ref>\"");
    add_fails(&l, LINE(ZERO "  " A " refs/heads/x"), FF_EINVAL, "is not \"<old-id>");
    add_fails(&l, LINE(ZERO " ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEF0123 refs/heads/x"), FF_EINVAL,
              "are not two 40-digit lower-case hex ids");
    add_fails(&l, LINE(ZERO " g111111111111111111111111111111111111111 refs/heads/x"), FF_EINVAL,
              "lower-case hex");
    add_fails(&l, LINE(ZERO " " ZERO " refs/heads/x"), FF_EINVAL, "both zero");
    add_fails(&l, LINE(ZERO " " A " refs/heads/../x"), FF_EINVAL,
              "\"refs/heads/../x\" is not a valid ref name");
    add_fails(&l, LINE(ZERO " " A " refs/heads/a\x01" "b"), FF_EINVAL,
              "ref name \"refs/heads/a?b\" holds control character 0x01");
    add_fails(&l, LINE(ZERO " " A " refs/heads/a\x7f"), FF_EINVAL, "control character 0x7f");
    add_fails(&l, LINE(ZERO " " A " refs/heads/a b"), FF_EINVAL, "is not a valid ref name");
    add_fails(&l, LINE(ZERO " " A " refs/heads/x.lock"), FF_EINVAL, "is not a valid ref name");
    add_fails(&l, LINE(ZERO " " A " refs/heads/x\0bogus-cap"), FF_EINVAL,
              "capability \"bogus-cap\" was not advertised");
    add_fails(&l, LINE(ZERO " " A " refs/heads/x\0report-status push-options"), FF_EINVAL,
              "capability \"push-options\"");
    add_fails(&l, LINE(ZERO " " A " refs/heads/x\0agent=a\tb"), FF_EINVAL,
              "capabilities hold control character 0x09");
    add_fails(&l, LINE(ZERO " " A " refs/heads/x\0agent="), FF_EINVAL, "\"agent=\"");

    char *longref = malloc(REFCMD_NAME_MAX + 100);
    assert_non_null(longref);
    int n = snprintf(longref, REFCMD_NAME_MAX + 100, ZERO " " A " refs/heads/");
    memset(longref + n, 'x', REFCMD_NAME_MAX);
    add_fails(&l, longref, (size_t)n + REFCMD_NAME_MAX, FF_EINVAL, "is longer than 1024 bytes");
    free(longref);
    assert_int_equal(l.n, 0);
    refcmd_list_release(&l);
}

static void test_list_rules(void **state)
{
    (void)state;
    struct refcmd_list l = {0};
    struct ff_err err;
    assert_int_equal(add(&l, LINE(ZERO " " A " refs/heads/main\0report-status"), &err), 0);
    add_fails(&l, LINE(ZERO " " A " refs/heads/two\0report-status"), FF_EINVAL,
              "command 2: capabilities are allowed on the first command only");
    add_fails(&l, LINE(A " " B " refs/heads/main"), FF_EINVAL,
              "command 2: ref \"refs/heads/main\" is named twice");
    /* a valid name outside heads and tags is accepted, but rejected */
    assert_int_equal(add(&l, LINE(ZERO " " A " refs/notes/commits"), &err), 0);
    assert_true(l.cmds[1].rejected);
    assert_string_equal(l.cmds[1].reason, "only refs/heads/ and refs/tags/ may be pushed");
    assert_int_equal(add(&l, LINE(ZERO " " A " HEAD"), &err), 0);
    assert_true(l.cmds[2].rejected);
    refcmd_list_release(&l);
}

static void test_command_limit(void **state)
{
    (void)state;
    struct refcmd_list l = {0};
    struct ff_err err;
    char line[128];
    for (int i = 0; i < REFCMD_MAX; i++) {
        int n = snprintf(line, sizeof(line), ZERO " " A " refs/tags/t%d", i);
        assert_int_equal(add(&l, line, (size_t)n, &err), 0);
    }
    int n = snprintf(line, sizeof(line), ZERO " " A " refs/tags/one-more");
    add_fails(&l, line, (size_t)n, FF_ETOOBIG, "more than 10000 commands");
    refcmd_list_release(&l);
}

static void test_reject(void **state)
{
    (void)state;
    struct refcmd c = {0};
    refcmd_reject(&c, "first\n%s", "reason");
    refcmd_reject(&c, "second");
    assert_true(c.rejected);
    assert_string_equal(c.reason, "first?reason");
    free(c.reason);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_line_with_caps),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_list_rules),
        cmocka_unit_test(test_command_limit),
        cmocka_unit_test(test_reject),
    };
    return cmocka_run_group_tests_name("gitd/refcmd", tests, setup, teardown);
}
