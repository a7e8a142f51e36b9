#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gitd.h"

#include <stdio.h>
#include <string.h>

static void expect_ok(const char *text, enum command_verb verb, const char *owner, const char *app)
{
    struct command cmd;
    struct ff_err err;
    ff_err_clear(&err);
    if (command_parse(text, strlen(text), &cmd, &err) != 0)
        fail_msg("\"%s\" refused: %s", text, err.msg);
    assert_int_equal(cmd.verb, verb);
    assert_string_equal(cmd.owner, owner);
    assert_string_equal(cmd.app, app);
}

static void expect_refused(const char *text, size_t len, int code, const char *needle)
{
    struct command cmd;
    struct ff_err err;
    ff_err_clear(&err);
    assert_int_equal(command_parse(text, len, &cmd, &err), code);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" for \"%.*s\" lacks \"%s\"", err.msg, (int)len, text, needle);
    /* Nothing of a refused command is handed out. */
    assert_string_equal(cmd.owner, "");
    assert_string_equal(cmd.app, "");
}

static void refused(const char *text, const char *needle)
{
    expect_refused(text, strlen(text), FF_EINVAL, needle);
}

static void test_what_git_sends(void **state)
{
    (void)state;
    /* ssh://git@host/bob/web.git */
    expect_ok("git-receive-pack '/bob/web.git'", COMMAND_RECEIVE_PACK, "bob", "web");
    /* git@host:bob/web.git */
    expect_ok("git-receive-pack 'bob/web.git'", COMMAND_RECEIVE_PACK, "bob", "web");
    expect_ok("git-upload-pack 'bob/web'", COMMAND_UPLOAD_PACK, "bob", "web");
    expect_ok("git-upload-pack '/bob/web'", COMMAND_UPLOAD_PACK, "bob", "web");
    expect_ok("git-upload-pack 'a.b_c-d/x-1'", COMMAND_UPLOAD_PACK, "a.b_c-d", "x-1");
    expect_ok("git-upload-pack '0/0.git'", COMMAND_UPLOAD_PACK, "0", "0");
    /* Only one ".git" comes off; the rest must be a valid name. */
    refused("git-upload-pack 'bob/web.git.git'", "the app must be a name");
    assert_string_equal(command_verb_name(COMMAND_RECEIVE_PACK), "git-receive-pack");
    assert_string_equal(command_verb_name(COMMAND_UPLOAD_PACK), "git-upload-pack");
}

static void test_longest_names(void **state)
{
    (void)state;
    char owner[COMMAND_OWNER_MAX + 2], app[COMMAND_APP_MAX + 2], text[COMMAND_TEXT_MAX + 64];
    memset(owner, 'o', COMMAND_OWNER_MAX);
    owner[COMMAND_OWNER_MAX] = '\0';
    memset(app, 'a', COMMAND_APP_MAX);
    app[COMMAND_APP_MAX] = '\0';
    (void)snprintf(text, sizeof(text), "git-receive-pack '/%s/%s.git'", owner, app);
    expect_ok(text, COMMAND_RECEIVE_PACK, owner, app);
    assert_true(strlen(text) <= COMMAND_TEXT_MAX);
    owner[COMMAND_OWNER_MAX] = 'o';
    owner[COMMAND_OWNER_MAX + 1] = '\0';
    (void)snprintf(text, sizeof(text), "git-receive-pack '%s/%s'", owner, "web");
    refused(text, "the owner must be a user name");
    app[COMMAND_APP_MAX] = 'a';
    app[COMMAND_APP_MAX + 1] = '\0';
    (void)snprintf(text, sizeof(text), "git-receive-pack 'bob/%s'", app);
    refused(text, "the app must be a name");
    char longer[COMMAND_TEXT_MAX + 2];
    memset(longer, 'x', sizeof(longer));
    expect_refused(longer, sizeof(longer), FF_ETOOBIG, "longer than 256 bytes");
}

static void test_other_commands(void **state)
{
    (void)state;
    refused("", "command \"\" is not allowed");
    refused("ls", "command \"ls\" is not allowed: only git-receive-pack and git-upload-pack");
    refused("git-upload-archive 'bob/web.git'", "command \"git-upload-archive\"");
    refused("git receive-pack 'bob/web.git'", "command \"git\" is not allowed");
    refused("GIT-RECEIVE-PACK 'bob/web.git'", "is not allowed");
    refused("git-receive-packx 'bob/web.git'", "is not allowed");
    refused("/usr/bin/git-receive-pack 'bob/web.git'", "is not allowed");
    refused("sh -c 'git-receive-pack bob/web.git'", "command \"sh\"");
    /* Control characters in an echoed command are not sent back raw. */
    struct command cmd;
    struct ff_err err;
    const char esc[] = "\x1b[2Jgit";
    assert_int_equal(command_parse(esc, sizeof(esc) - 1, &cmd, &err), FF_EINVAL);
    assert_null(strchr(err.msg, '\x1b'));
}

static void test_quoting(void **state)
{
    (void)state;
    const char *expected = "expected one argument in single quotes";
    refused("git-receive-pack", expected);
    refused("git-receive-pack ", expected);
    refused("git-receive-pack bob/web.git", expected);
    refused("git-receive-pack \"bob/web.git\"", expected);
    refused("git-receive-pack  'bob/web.git'", expected);
    refused("git-receive-pack 'bob/web.git", expected);
    refused("git-receive-pack bob/web.git'", expected);
    refused("git-receive-pack 'bob/web.git' ", expected);
    refused("git-receive-pack 'bob/web.git'; rm -rf /", expected);
    refused("git-receive-pack 'bob/web.git' 'x'", expected);
    refused("git-receive-pack 'bob'\\''/web.git'", expected);
    refused("git-receive-pack ''", "expected '<owner>/<app>.git'");
    refused("git-receive-pack '''", expected);
    refused("git-receive-pack\t'bob/web.git'", "is not allowed");
    /* A NUL inside: the whole length counts, not the C string. */
    const char nul[] = "git-upload-pack 'bob/web.git'\0x";
    expect_refused(nul, sizeof(nul) - 1, FF_EINVAL, expected);
}

static void test_paths(void **state)
{
    (void)state;
    const char *owner = "the owner must be a user name";
    const char *app = "the app must be a name";
    refused("git-upload-pack 'web.git'", "expected '<owner>/<app>.git'");
    refused("git-upload-pack '/web'", "expected '<owner>/<app>.git'");
    refused("git-upload-pack '//bob/web'", owner);
    refused("git-upload-pack '../etc/passwd'", owner);
    refused("git-upload-pack '/../bob/web'", owner);
    refused("git-upload-pack './bob/web'", owner);
    refused("git-upload-pack 'bob/../web'", app);
    refused("git-upload-pack 'bob/web/'", app);
    refused("git-upload-pack 'bob/web/x'", app);
    refused("git-upload-pack 'bob//web'", app);
    refused("git-upload-pack 'bob/.git'", app);
    refused("git-upload-pack 'bob/'", app);
    refused("git-upload-pack '/bob'", "expected '<owner>/<app>.git'");
    refused("git-upload-pack 'Bob/web'", owner);
    refused("git-upload-pack 'bob-/web'", owner);
    refused("git-upload-pack '-bob/web'", owner);
    refused("git-upload-pack 'b..ob/web'", owner);
    refused("git-upload-pack 'b_-ob/web'", owner);
    refused("git-upload-pack '~bob/web'", owner);
    refused("git-upload-pack 'bob/-web'", app);
    refused("git-upload-pack 'bob/We'", app);
    refused("git-upload-pack 'bob/w_b'", app);
    refused("git-upload-pack 'bob/w.b'", app);
    refused("git-upload-pack 'bob/w b'", app);
    refused("git-upload-pack '/srv/git/bob/web.git'", app);
    /* The quoted path is echoed with hostile bytes replaced. */
    struct command cmd;
    struct ff_err err;
    const char bad[] = "git-upload-pack 'b\x07ob/web'";
    assert_int_equal(command_parse(bad, sizeof(bad) - 1, &cmd, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "repository \"b?ob/web\""));
}

static void test_name_grammar(void **state)
{
    (void)state;
    assert_true(command_owner_valid("bob", 3));
    assert_true(command_owner_valid("a.b-c_d", 7));
    assert_false(command_owner_valid("", 0));
    assert_false(command_owner_valid(".bob", 4));
    assert_false(command_owner_valid("bob.", 4));
    assert_false(command_owner_valid("b--b", 4));
    assert_false(command_owner_valid("BOB", 3));
    assert_true(command_app_valid("web-1", 5));
    assert_true(command_app_valid("1", 1));
    assert_false(command_app_valid("-web", 4));
    assert_false(command_app_valid("web.x", 5));
    assert_false(command_app_valid("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_what_git_sends), cmocka_unit_test(test_longest_names),
        cmocka_unit_test(test_other_commands), cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_paths),          cmocka_unit_test(test_name_grammar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
