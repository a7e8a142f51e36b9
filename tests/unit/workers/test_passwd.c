#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n"
                             "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                             "app:x:1000:1000:App,,,:/home/app:/bin/sh\n"
                             "svc:x:1001:50::/:\n";
static const char group[] = "root:x:0:\n"
                            "staff:x:50:svc\n"
                            "users:x:100:app,svc\n"
                            "docker:x:999:bob,app\n"
                            "app:x:1000:\n";

/* Resolves spec against the fixtures above. */
static int resolve(const char *spec, struct passwd_ids *ids, struct ff_err *err)
{
    return passwd_resolve_buf(spec, passwd, sizeof(passwd) - 1, group, sizeof(group) - 1, ids,
                              err);
}

static void expect(const char *spec, uint32_t uid, uint32_t gid, const uint32_t *gids,
                   size_t n_gids)
{
    struct passwd_ids ids = {0};
    struct ff_err err = {0};
    int rc = resolve(spec, &ids, &err);
    if (rc != 0)
        fail_msg("\"%s\": %s", spec, err.msg);
    assert_int_equal(ids.uid, uid);
    assert_int_equal(ids.gid, gid);
    assert_int_equal(ids.n_gids, n_gids);
    if (n_gids == 0)
        assert_null(ids.gids);
    for (size_t i = 0; i < n_gids; i++)
        assert_int_equal(ids.gids[i], gids[i]);
    passwd_ids_release(&ids);
    assert_null(ids.gids);
}

static void expect_err(const char *spec, int code, const char *msg_part)
{
    struct passwd_ids ids = {.uid = 77};
    struct ff_err err = {0};
    int rc = resolve(spec, &ids, &err);
    if (rc != code)
        fail_msg("\"%s\": got %d (%s), expected %d", spec, rc, err.msg, code);
    if (strstr(err.msg, msg_part) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", spec, err.msg, msg_part);
    assert_int_equal(ids.uid, 77); /* untouched on failure */
}

static void test_names_and_numbers(void **state)
{
    (void)state;
    static const uint32_t app_groups[] = {100, 999};
    expect("app", 1000, 1000, app_groups, 2);
    expect("1000", 1000, 1000, app_groups, 2); /* a known uid brings its name's groups */
    expect("root", 0, 0, NULL, 0);
    expect("0", 0, 0, NULL, 0);
    static const uint32_t svc_groups[] = {50, 100};
    expect("svc", 1001, 50, svc_groups, 2);
    /* Unknown numeric uid: Docker runs it with gid 0. */
    expect("4242", 4242, 0, NULL, 0);
    expect("4294967294", 4294967294u, 0, NULL, 0);
}

static void test_explicit_group(void **state)
{
    (void)state;
    /* An explicit group replaces the primary one and drops the others. */
    expect("app:users", 1000, 100, NULL, 0);
    expect("app:0", 1000, 0, NULL, 0);
    expect("1000:docker", 1000, 999, NULL, 0);
    expect("4242:4343", 4242, 4343, NULL, 0);
    expect("4242:staff", 4242, 50, NULL, 0);
}

static void test_unknown_names(void **state)
{
    (void)state;
    expect_err("bob", FF_ENOTFOUND, "user \"bob\" not found in /etc/passwd");
    expect_err("app:wheel", FF_ENOTFOUND, "group \"wheel\" not found in /etc/group");
    expect_err("ap", FF_ENOTFOUND, "\"ap\""); /* no prefix matches */
    expect_err("App", FF_ENOTFOUND, "\"App\"");
}

static void test_bad_specs(void **state)
{
    (void)state;
    expect_err("", FF_EINVAL, "expected user[:group]");
    expect_err(":users", FF_EINVAL, "expected user[:group]");
    expect_err("app:", FF_EINVAL, "expected user[:group]");
    expect_err("app:users:x", FF_EINVAL, "more than one ':'");
    expect_err("4294967295", FF_ERANGE, "above 4294967294");
    expect_err("99999999999999999999999", FF_ERANGE, "above");
    expect_err("app:4294967296", FF_ERANGE, "gid is above");
    char longspec[PASSWD_SPEC_MAX + 2];
    memset(longspec, 'a', sizeof(longspec) - 1);
    longspec[sizeof(longspec) - 1] = '\0';
    expect_err(longspec, FF_EINVAL, "longer than");
}

static void test_missing_files(void **state)
{
    (void)state;
    struct passwd_ids ids = {0};
    struct ff_err err;
    /* Numeric ids need no files. */
    assert_int_equal(passwd_resolve_buf("1234:5678", NULL, 0, NULL, 0, &ids, &err), 0);
    assert_int_equal(ids.uid, 1234);
    assert_int_equal(ids.gid, 5678);
    assert_int_equal(passwd_resolve_buf("1234", NULL, 0, NULL, 0, &ids, &err), 0);
    assert_int_equal(ids.gid, 0);
    /* Names do, and the message says which file is missing. */
    assert_int_equal(passwd_resolve_buf("app", NULL, 0, NULL, 0, &ids, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "the image has no /etc/passwd"));
    assert_int_equal(passwd_resolve_buf("app:users", passwd, sizeof(passwd) - 1, NULL, 0, &ids,
                                        &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "the image has no /etc/group"));
    /* A user without /etc/group just has no supplementary groups. */
    assert_int_equal(passwd_resolve_buf("app", passwd, sizeof(passwd) - 1, NULL, 0, &ids, &err),
                     0);
    assert_int_equal(ids.n_gids, 0);
    /* Empty files exist, but hold nobody. */
    assert_int_equal(passwd_resolve_buf("app", "", 0, "", 0, &ids, &err), FF_ENOTFOUND);
}

static int resolve_in(const char *pw, const char *spec, struct passwd_ids *ids,
                      struct ff_err *err)
{
    return passwd_resolve_buf(spec, pw, strlen(pw), group, sizeof(group) - 1, ids, err);
}

static void test_hostile_passwd(void **state)
{
    (void)state;
    struct passwd_ids ids = {0};
    struct ff_err err;
    /* Malformed lines about other users are skipped. */
    const char *pw = "garbage\n::::\n:x:5:5\nx:y\n\n#comment:x:1:1\nbob:x:zz:1\n"
                     "app:x:1000:1000::/:/bin/sh";
    assert_int_equal(resolve_in(pw, "app", &ids, &err), 0);
    assert_int_equal(ids.uid, 1000);
    passwd_ids_release(&ids);
    /* ... and by uid too. */
    assert_int_equal(resolve_in(pw, "1000", &ids, &err), 0);
    assert_int_equal(ids.gid, 1000);
    passwd_ids_release(&ids);
    /* A malformed line about the user asked for is an error with its line. */
    assert_int_equal(resolve_in("root:x:0:0\napp:x:abc:1000\n", "app", &ids, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "/etc/passwd line 2: uid \"abc\" is not a number"));
    assert_int_equal(resolve_in("app:x:1000:-1\n", "app", &ids, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "gid \"-1\""));
    assert_int_equal(resolve_in("app:x:+1000:1\n", "app", &ids, &err), FF_EINVAL);
    assert_int_equal(resolve_in("app:x: 1000:1\n", "app", &ids, &err), FF_EINVAL);
    assert_int_equal(resolve_in("app:x::1\n", "app", &ids, &err), FF_EINVAL);
    assert_int_equal(resolve_in("app:x:1000\n", "app", &ids, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "3 fields"));
    assert_int_equal(resolve_in("app:x:99999999999999999999:1\n", "app", &ids, &err),
                     FF_ERANGE);
    assert_int_equal(resolve_in("app:x:4294967295:1\n", "app", &ids, &err), FF_ERANGE);
    /* The first entry wins. */
    assert_int_equal(resolve_in("app:x:1:1\napp:x:2:2\n", "app", &ids, &err), 0);
    assert_int_equal(ids.uid, 1);
    passwd_ids_release(&ids);
    /* Leading zeros are still the number. */
    assert_int_equal(resolve_in("app:x:0001000:00100\n", "app", &ids, &err), 0);
    assert_int_equal(ids.uid, 1000);
    assert_int_equal(ids.gid, 100);
    passwd_ids_release(&ids);
    /* A NUL inside a name does not make it match. */
    static const char nul[] = "ap\0p:x:5:5\napp:x:6:6\n";
    assert_int_equal(passwd_resolve_buf("app", nul, sizeof(nul) - 1, NULL, 0, &ids, &err), 0);
    assert_int_equal(ids.uid, 6);
    /* CRLF files: the gid field holds "\r", which is not a number. */
    assert_int_equal(resolve_in("app:x:1000:1000\r\n", "app", &ids, &err), FF_EINVAL);
}

static void test_long_lines(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    char *pw = malloc(big + 64);
    assert_non_null(pw);
    memset(pw, 'x', big);
    memcpy(pw + big, "\napp:x:7:8:\n", 13);
    struct passwd_ids ids = {0};
    struct ff_err err;
    assert_int_equal(passwd_resolve_buf("app", pw, strlen(pw), NULL, 0, &ids, &err), 0);
    assert_int_equal(ids.uid, 7);
    /* A huge gecos field after the ids does not matter. */
    memcpy(pw, "app:x:9:9:", 10);
    pw[big] = '\0';
    assert_int_equal(passwd_resolve_buf("app", pw, big, NULL, 0, &ids, &err), 0);
    assert_int_equal(ids.uid, 9);
    free(pw);
}

static void test_groups(void **state)
{
    (void)state;
    struct passwd_ids ids = {0};
    struct ff_err err;
    /* Memberships are exact names; duplicates collapse; bad gids are skipped. */
    const char *gr = "a:x:10:appx,xapp\nb:x:11:app\nc:x:11:app\nd:x:zz:app\n"
                     "e:x:12:bob,app,carol\nf:x:13:\ng:x:14: app\n";
    assert_int_equal(passwd_resolve_buf("app", passwd, sizeof(passwd) - 1, gr, strlen(gr), &ids,
                                        &err), 0);
    assert_int_equal(ids.n_gids, 2);
    assert_int_equal(ids.gids[0], 11);
    assert_int_equal(ids.gids[1], 12);
    passwd_ids_release(&ids);
    /* A malformed line for the group asked for is an error. */
    gr = "users:x:notanumber:app\n";
    assert_int_equal(passwd_resolve_buf("app:users", passwd, sizeof(passwd) - 1, gr, strlen(gr),
                                        &ids, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "/etc/group line 1"));
    gr = "users:x\n";
    assert_int_equal(passwd_resolve_buf("app:users", passwd, sizeof(passwd) - 1, gr, strlen(gr),
                                        &ids, &err), FF_EINVAL);
    /* More groups than PASSWD_GIDS_MAX. */
    size_t cap = (size_t)(PASSWD_GIDS_MAX + 1) * 32;
    char *many = malloc(cap);
    assert_non_null(many);
    size_t len = 0;
    for (int i = 0; i <= PASSWD_GIDS_MAX; i++)
        len += (size_t)snprintf(many + len, cap - len, "g%d:x:%d:app\n", i, 2000 + i);
    assert_int_equal(passwd_resolve_buf("app", passwd, sizeof(passwd) - 1, many, len, &ids,
                                        &err), FF_ETOOBIG);
    assert_null(ids.gids);
    free(many);
}

/* A rootfs in a temporary directory. */
struct root {
    char dir[64];
    int fd;
};

static void root_make(struct root *r)
{
    (void)snprintf(r->dir, sizeof(r->dir), "/tmp/ff-passwd-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    char etc[128];
    (void)snprintf(etc, sizeof(etc), "%s/etc", r->dir);
    assert_int_equal(mkdir(etc, 0755), 0);
    r->fd = open(r->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(r->fd >= 0);
}

static void root_write(struct root *r, const char *rel, const char *text)
{
    int fd = openat(r->fd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static void root_path(const struct root *r, const char *rel, char *out, size_t n)
{
    (void)snprintf(out, n, "%s/%s", r->dir, rel);
}

static void root_free(struct root *r)
{
    static const char *const files[] = {"etc/passwd", "etc/group", "elsewhere", "etc"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[256];
        root_path(r, files[i], p, sizeof(p));
        if (unlink(p) != 0)
            (void)rmdir(p);
    }
    (void)rmdir(r->dir);
    (void)close(r->fd);
}

static void test_resolve_in_rootfs(void **state)
{
    (void)state;
    struct root r = {.fd = -1};
    root_make(&r);
    struct passwd_ids ids = {0};
    struct ff_err err;
    /* No spec is root, whatever the files say. */
    assert_int_equal(passwd_resolve(r.fd, NULL, &ids, &err), 0);
    assert_int_equal(ids.uid, 0);
    assert_int_equal(passwd_resolve(r.fd, "", &ids, &err), 0);
    /* No files yet. */
    assert_int_equal(passwd_resolve(r.fd, "1:2", &ids, &err), 0);
    assert_int_equal(passwd_resolve(r.fd, "app", &ids, &err), FF_ENOTFOUND);
    root_write(&r, "etc/passwd", passwd);
    root_write(&r, "etc/group", group);
    assert_int_equal(passwd_resolve(r.fd, "app", &ids, &err), 0);
    assert_int_equal(ids.uid, 1000);
    assert_int_equal(ids.n_gids, 2);
    passwd_ids_release(&ids);

    /* A symlink is followed inside the rootfs, never to the host's file. */
    char p[256];
    root_path(&r, "etc/passwd", p, sizeof(p));
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("/elsewhere", p), 0);
    root_write(&r, "elsewhere", "evil:x:4:4\n");
    assert_int_equal(passwd_resolve(r.fd, "evil", &ids, &err), 0);
    assert_int_equal(ids.uid, 4);
    assert_int_equal(passwd_resolve(r.fd, "daemon", &ids, &err), FF_ENOTFOUND);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("../../../../../../etc/passwd", p), 0); /* loops onto itself */
    assert_true(passwd_resolve(r.fd, "root", &ids, &err) < 0);

    /* Not a regular file: refused without opening it (a FIFO would block). */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkfifo(p, 0644), 0);
    assert_int_equal(passwd_resolve(r.fd, "root", &ids, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "/etc/passwd in the rootfs is not a regular file"));
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(passwd_resolve(r.fd, "root", &ids, &err), FF_EINVAL);
    assert_int_equal(rmdir(p), 0);

    /* Too big. */
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)PASSWD_FILE_MAX + 1), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(passwd_resolve(r.fd, "root", &ids, &err), FF_ETOOBIG);
    root_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_numbers),
        cmocka_unit_test(test_explicit_group),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_hostile_passwd),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_resolve_in_rootfs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
