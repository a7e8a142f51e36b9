#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli.h"

#include "ff_str.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A temporary directory per test, removed afterwards. */
static int setup(void **state)
{
    char *dir = strdup("/tmp/ff-cli-test.XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    char *dir = *state;
    int rc = nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return rc;
}

static char *path_of(const char *dir, const char *rel)
{
    char *p = ff_asprintf("%s/%s", dir, rel);
    assert_non_null(p);
    return p;
}

static void write_file(const char *dir, const char *rel, const char *text, mode_t mode)
{
    char *p = path_of(dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
    free(p);
}

static mode_t mode_of(const char *dir, const char *rel)
{
    char *p = path_of(dir, rel);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    free(p);
    return st.st_mode & 07777;
}

static void expect_msg(const struct ff_err *err, const char *needle)
{
    if (strstr(err->msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

/* ---- key=value parsing ---------------------------------------------------- */

struct seen {
    char text[512];
};

static int collect(void *ctx, const char *key, const char *value, unsigned line,
                   struct ff_err *err)
{
    (void)err;
    struct seen *s = ctx;
    size_t n = strlen(s->text);
    (void)snprintf(s->text + n, sizeof(s->text) - n, "%u:%s=[%s];", line, key, value);
    return 0;
}

static void test_parse_kv(void **state)
{
    (void)state;
    struct seen s = {""};
    struct ff_err err;
    const char *text = "# Written by 'make up'\n"
                       "\n"
                       "FF_VAR='/srv/ff var'\n"
                       "  api_url = https://h:8443/  \r\n"
                       "ca=\"/etc/ca.crt\"\n"
                       "EMPTY=\n"
                       "Q=''\n"
                       "last=no newline";
    assert_int_equal(config_parse_kv(text, "t", collect, &s, &err), 0);
    assert_string_equal(s.text, "3:FF_VAR=[/srv/ff var];4:api_url=[https://h:8443/];"
                                "5:ca=[/etc/ca.crt];6:EMPTY=[];7:Q=[];8:last=[no newline];");

    const struct {
        const char *text, *msg;
    } bad[] = {
        {"a=1\nno equals\n", "t:2: expected KEY=VALUE"},
        {"=1\n", "t:1: expected a key"},
        {"a b=1\n", "t:1: key must match"},
        {"a='x\n", "t:1: the value must be one single-quoted string"},
        {"a='x'y'\n", "single-quoted"},
        {"a=\"x\n", "double-quoted"},
        {"a='\n", "single-quoted"},
        {"a=x\x1b[0m\n", "t:1: control character"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ff_err_clear(&err);
        assert_int_equal(config_parse_kv(bad[i].text, "t", collect, &s, &err), FF_EINVAL);
        expect_msg(&err, bad[i].msg);
    }
}

/* ---- where values come from ------------------------------------------------ */

static void test_precedence(void **state)
{
    const char *dir = *state;
    struct ff_err err;
    struct cli_config cfg;
    char *xdg = path_of(dir, "xdg");
    char *xdg_ff = path_of(dir, "xdg/ff");
    char *envf = path_of(dir, "farm.env");
    assert_int_equal(mkdir(xdg, 0700), 0);
    assert_int_equal(mkdir(xdg_ff, 0700), 0);
    write_file(dir, "xdg/ff/config", "api_url = https://file:1/\nca = /file/ca.crt\n", 0644);
    write_file(dir, "xdg/ff/token", "ffu_stored\n", 0600);
    write_file(dir, "farm.env",
               "# Written by 'make up'. Source it: . var/farm.env\n"
               "FF_VAR='/var'\nFF_CA='/envfile/ca.crt'\nFF_API_URL='https://envfile:2'\n"
               "FF_ADMIN_USER='admin'\nFF_ADMIN_TOKEN='ffu_admin'\nFF_REGISTRY='h:5443'\n",
               0600);

    /* Environment first. */
    struct cli_env env = {"https://env:3", "/env/ca.crt", "ffu_env", xdg, "/home/x"};
    assert_int_equal(config_load(&env, envf, true, &cfg, &err), 0);
    assert_string_equal(cfg.api_url, "https://env:3");
    assert_string_equal(cfg.ca, "/env/ca.crt");
    assert_string_equal(cfg.token, "ffu_env");
    assert_int_equal(cfg.token_source, CLI_TOKEN_ENV);
    assert_string_equal(cfg.dir, xdg_ff);
    config_release(&cfg);
    config_release(&cfg);

    /* Then the config directory, value by value. */
    env = (struct cli_env){NULL, "/env/ca.crt", "", xdg, NULL};
    assert_int_equal(config_load(&env, envf, true, &cfg, &err), 0);
    assert_string_equal(cfg.api_url, "https://file:1");
    assert_string_equal(cfg.ca, "/env/ca.crt");
    assert_string_equal(cfg.token, "ffu_stored");
    assert_int_equal(cfg.token_source, CLI_TOKEN_STORE);
    config_release(&cfg);

    /* Then the env file. */
    char *ffdir = path_of(dir, "xdg/ff/config");
    assert_int_equal(unlink(ffdir), 0);
    free(ffdir);
    ffdir = path_of(dir, "xdg/ff/token");
    assert_int_equal(unlink(ffdir), 0);
    free(ffdir);
    assert_int_equal(config_load(&env, envf, true, &cfg, &err), 0);
    assert_string_equal(cfg.api_url, "https://envfile:2");
    assert_string_equal(cfg.ca, "/env/ca.crt");
    assert_string_equal(cfg.token, "ffu_admin");
    assert_int_equal(cfg.token_source, CLI_TOKEN_ENV_FILE);
    config_release(&cfg);

    /* Without want_token no token is taken from anywhere. */
    env.token = "ffu_env";
    assert_int_equal(config_load(&env, envf, false, &cfg, &err), 0);
    assert_null(cfg.token);
    assert_int_equal(cfg.token_source, CLI_TOKEN_NONE);
    config_release(&cfg);

    /* Nothing at all is not an error here: commands say what is missing. */
    env = (struct cli_env){0};
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_null(cfg.dir);
    assert_null(cfg.api_url);
    assert_null(cfg.ca);
    assert_null(cfg.token);
    config_release(&cfg);
    free(xdg);
    free(xdg_ff);
    free(envf);
}

static void test_config_dir(void **state)
{
    (void)state;
    struct ff_err err;
    struct cli_config cfg;
    struct cli_env env = {.home = "/nonexistent/home"};
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_string_equal(cfg.dir, "/nonexistent/home/.config/ff");
    config_release(&cfg);
    /* A relative XDG_CONFIG_HOME is ignored, as the specification says. */
    env.xdg_config_home = "relative/config";
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_string_equal(cfg.dir, "/nonexistent/home/.config/ff");
    config_release(&cfg);
    env.xdg_config_home = "/nonexistent/xdg";
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_string_equal(cfg.dir, "/nonexistent/xdg/ff");
    config_release(&cfg);
    env = (struct cli_env){.home = "relative"};
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_null(cfg.dir);
    config_release(&cfg);
}

static void test_bad_configuration(void **state)
{
    const char *dir = *state;
    struct ff_err err;
    struct cli_config cfg;
    char *ffdir = path_of(dir, "ff");
    assert_int_equal(mkdir(ffdir, 0700), 0);
    struct cli_env env = {.xdg_config_home = dir};

    write_file(dir, "ff/config", "api_url = https://h\nproxy = x\n", 0644);
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), FF_EINVAL);
    expect_msg(&err, "config:2: unknown key \"proxy\" (expected api_url or ca)");
    assert_null(cfg.api_url);

    write_file(dir, "ff/config", "api_url = http://h:8443\n", 0644);
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), FF_EINVAL);
    expect_msg(&err, "API URL \"http://h:8443\" must start with https://");
    env.api_url = "https://";
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), FF_EINVAL);
    env.api_url = "https://h//";
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_string_equal(cfg.api_url, "https://h");
    config_release(&cfg);

    /* A token from the environment must fit in a header. */
    env.token = "ffu_a b";
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), FF_EINVAL);
    expect_msg(&err, "FF_TOKEN");
    env.token = NULL;

    /* An env file that is named must exist; a big file is refused. */
    char *missing = path_of(dir, "missing.env");
    assert_int_equal(config_load(&env, missing, true, &cfg, &err), FF_EIO);
    expect_msg(&err, "does not exist");
    free(missing);
    char *big = calloc(CLI_FILE_MAX + 2, 1);
    assert_non_null(big);
    memset(big, '#', CLI_FILE_MAX + 1);
    write_file(dir, "big.env", big, 0600);
    free(big);
    char *bigp = path_of(dir, "big.env");
    assert_int_equal(config_load(&env, bigp, true, &cfg, &err), FF_ETOOBIG);
    free(bigp);
    free(ffdir);
}

/* ---- the token file ----------------------------------------------------- */

static void test_token_write_modes(void **state)
{
    const char *dir = *state;
    struct ff_err err;
    char *ffdir = path_of(dir, "home/.config/ff");
    /* Even with a permissive umask, the file is 0600 in 0700 directories. */
    mode_t old = umask(0);
    assert_int_equal(config_token_write(ffdir, "ffu_first", &err), 0);
    umask(old);
    assert_int_equal(mode_of(dir, "home"), 0700);
    assert_int_equal(mode_of(dir, "home/.config"), 0700);
    assert_int_equal(mode_of(dir, "home/.config/ff"), 0700);
    assert_int_equal(mode_of(dir, "home/.config/ff/token"), 0600);
    char *tok = NULL;
    assert_int_equal(config_token_read(ffdir, &tok, &err), 0);
    assert_string_equal(tok, "ffu_first");
    free(tok);

    /* A second login replaces the token and tightens a loosened directory. */
    assert_int_equal(chmod(ffdir, 0755), 0);
    assert_int_equal(config_token_write(ffdir, "ffu_second", &err), 0);
    assert_int_equal(mode_of(dir, "home/.config/ff"), 0700);
    assert_int_equal(mode_of(dir, "home/.config/ff/token"), 0600);
    assert_int_equal(config_token_read(ffdir, &tok, &err), 0);
    assert_string_equal(tok, "ffu_second");
    free(tok);

    /* No temporary file is left behind. */
    char *tmp = path_of(dir, "home/.config/ff");
    int n = 0;
    struct dirent **names = NULL;
    int count = scandir(tmp, &names, NULL, alphasort);
    for (int i = 0; i < count; i++) {
        if (names[i]->d_name[0] != '.')
            n++;
        else
            assert_true(strcmp(names[i]->d_name, ".") == 0 ||
                        strcmp(names[i]->d_name, "..") == 0);
        free(names[i]);
    }
    free(names);
    assert_int_equal(n, 1);
    free(tmp);

    assert_int_equal(config_token_write(ffdir, "", &err), FF_EINVAL);
    assert_int_equal(config_token_write(ffdir, "ffu_a\nb", &err), FF_EINVAL);
    assert_int_equal(config_token_remove(ffdir, &err), 0);
    assert_int_equal(config_token_remove(ffdir, &err), FF_ENOTFOUND);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_ENOTFOUND);
    free(ffdir);
}

static void test_token_read_refuses_loose_files(void **state)
{
    const char *dir = *state;
    struct ff_err err;
    struct cli_config cfg;
    char *ffdir = path_of(dir, "ff");
    char *tok = NULL;
    assert_int_equal(mkdir(ffdir, 0700), 0);

    write_file(dir, "ff/token", "ffu_loose\n", 0644);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_EDENIED);
    expect_msg(&err, "mode 0644");
    assert_null(tok);
    /* config_load refuses it too, but not when no token is wanted (so
     * ff login can replace it). */
    struct cli_env env = {.xdg_config_home = dir};
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), FF_EDENIED);
    assert_int_equal(config_load(&env, NULL, false, &cfg, &err), 0);
    config_release(&cfg);
    /* FF_TOKEN means the file is not even looked at. */
    env.token = "ffu_env";
    assert_int_equal(config_load(&env, NULL, true, &cfg, &err), 0);
    assert_string_equal(cfg.token, "ffu_env");
    config_release(&cfg);

    write_file(dir, "ff/token", "ffu_group\n", 0640);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_EDENIED);
    write_file(dir, "ff/token", "ffu_ok\r\n", 0400);
    assert_int_equal(config_token_read(ffdir, &tok, &err), 0);
    assert_string_equal(tok, "ffu_ok");
    free(tok);
    tok = NULL;

    write_file(dir, "ff/token", "ffu_a\nffu_b\n", 0600);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_EINVAL);
    write_file(dir, "ff/token", "\n", 0600);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_EINVAL);
    assert_null(tok);

    /* A symbolic link could point at someone else's file: refused. */
    char *real = path_of(dir, "real-token");
    char *link = path_of(dir, "ff/token");
    write_file(dir, "real-token", "ffu_linked\n", 0600);
    assert_int_equal(unlink(link), 0);
    assert_int_equal(symlink(real, link), 0);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_EDENIED);
    expect_msg(&err, "symbolic link");
    /* A directory is not a token file. */
    assert_int_equal(unlink(link), 0);
    assert_int_equal(mkdir(link, 0700), 0);
    assert_int_equal(config_token_read(ffdir, &tok, &err), FF_EDENIED);
    assert_int_equal(rmdir(link), 0);
    free(real);
    free(link);
    free(ffdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_kv),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test(test_config_dir),
        cmocka_unit_test_setup_teardown(test_bad_configuration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_write_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_read_refuses_loose_files, setup, teardown),
    };
    return cmocka_run_group_tests_name("builder/cli/config", tests, NULL, NULL);
}
