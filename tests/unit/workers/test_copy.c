#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A build context and a rootfs side by side in one temporary directory. */
struct t {
    char top[64];
    char ctx[96];
    char root[96];
};

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    (void)snprintf(t->top, sizeof(t->top), "/tmp/ff-test-copy-XXXXXX");
    assert_non_null(mkdtemp(t->top));
    (void)snprintf(t->ctx, sizeof(t->ctx), "%s/ctx", t->top);
    (void)snprintf(t->root, sizeof(t->root), "%s/root", t->top);
    assert_int_equal(mkdir(t->ctx, 0755), 0);
    assert_int_equal(mkdir(t->root, 0755), 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    (void)nftw(t->top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

static void at(const char *base, const char *rel, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s", base, rel);
    assert_true(n > 0 && (size_t)n < size);
}

static void mkdirs(const char *base, const char *rel, mode_t mode)
{
    char p[512];
    at(base, rel, p, sizeof(p));
    for (char *s = p + strlen(base) + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            (void)mkdir(p, 0755);
            *s = '/';
        }
    }
    (void)mkdir(p, mode);
    assert_int_equal(chmod(p, mode), 0);
}

static void put(const char *base, const char *rel, const char *content, mode_t mode)
{
    char p[512];
    at(base, rel, p, sizeof(p));
    const char *slash = strrchr(rel, '/');
    if (slash != NULL) {
        char *dir = strndup(rel, (size_t)(slash - rel));
        assert_non_null(dir);
        char dp[512];
        at(base, dir, dp, sizeof(dp));
        struct stat st;
        if (stat(dp, &st) != 0)
            mkdirs(base, dir, 0755);
        free(dir);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void lnk(const char *base, const char *target, const char *rel)
{
    char p[512];
    at(base, rel, p, sizeof(p));
    assert_int_equal(symlink(target, p), 0);
}

static void expect_file(const struct t *t, const char *rel, const char *content, mode_t mode,
                        uid_t uid, gid_t gid)
{
    char p[512];
    at(t->root, rel, p, sizeof(p));
    struct stat st;
    if (lstat(p, &st) != 0)
        fail_msg("%s: %s", rel, strerror(errno));
    if (!S_ISREG(st.st_mode))
        fail_msg("%s is not a regular file", rel);
    assert_int_equal(st.st_mode & 07777, mode);
    assert_int_equal(st.st_uid, uid);
    assert_int_equal(st.st_gid, gid);
    char buf[256];
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, content);
}

static void expect_dir(const struct t *t, const char *rel, mode_t mode, uid_t uid, gid_t gid)
{
    char p[512];
    at(t->root, rel, p, sizeof(p));
    struct stat st;
    if (lstat(p, &st) != 0)
        fail_msg("%s: %s", rel, strerror(errno));
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, mode);
    assert_int_equal(st.st_uid, uid);
    assert_int_equal(st.st_gid, gid);
}

static void expect_missing(const struct t *t, const char *rel)
{
    char p[512];
    at(t->root, rel, p, sizeof(p));
    struct stat st;
    if (lstat(p, &st) == 0)
        fail_msg("%s exists", rel);
}

struct run {
    enum context_root_kind kind;
    enum context_instr instr;
    const char *const *excl;
    const char *workdir;
    struct context_attrs attrs;
    bool extract;
};

static const struct run COPY = {CONTEXT_ROOT_CONTEXT, CONTEXT_COPY, NULL, NULL,
                                {-1, false, 0, 0},    false};

struct extract_log {
    unsigned calls;
    enum context_archive kind;
    char dest[256];
    char first[8];
};

static int exclude_list(void *ctx, const char *rel, bool is_dir, bool *excluded, bool *walk_anyway,
                        struct ff_err *err)
{
    (void)err;
    const char *const *list = ctx;
    for (size_t i = 0; list[i] != NULL; i++) {
        const char *p = list[i];
        bool exception = p[0] == '!';
        if (exception)
            p++;
        size_t n = strlen(p);
        bool walk = n > 0 && p[n - 1] == '/';
        if (walk)
            n--;
        if (strncmp(rel, p, n) == 0 && (rel[n] == '\0' || rel[n] == '/')) {
            *excluded = !exception;
            *walk_anyway = walk && is_dir;
        }
    }
    return 0;
}

static int log_extract(void *ctx, int fd, enum context_archive kind, int dest_dirfd,
                       const char *dest_in_root, struct ff_err *err)
{
    (void)err;
    struct extract_log *l = ctx;
    l->calls++;
    l->kind = kind;
    (void)snprintf(l->dest, sizeof(l->dest), "%s", dest_in_root);
    assert_int_equal(pread(fd, l->first, 2, 0), 2);
    /* The directory handed over is the destination: mark it to check. */
    int m = openat(dest_dirfd, "extracted-here", O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(m >= 0);
    (void)close(m);
    return 0;
}

static int run_copy(const struct t *t, const struct run *r, const char *const *srcs, size_t n,
                    const char *dest, struct extract_log *log, struct ff_err *err)
{
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    int rc = context_root_open(t->ctx, r->kind, NULL, r->excl != NULL ? exclude_list : NULL,
                               (void *)r->excl, &root, err);
    assert_int_equal(rc, 0);
    rc = context_resolve(root, r->instr, srcs, n, NULL, &s, err);
    if (rc == 0) {
        struct copy_opts o;
        memset(&o, 0, sizeof(o));
        o.workdir = r->workdir;
        o.attrs = r->attrs;
        o.extract = r->extract ? log_extract : NULL;
        o.extract_ctx = log;
        rc = copy_into(t->root, s, dest, &o, err);
    }
    context_sources_free(s);
    context_root_free(root);
    return rc;
}

static void copy_ok(const struct t *t, const struct run *r, const char *const *srcs, size_t n,
                    const char *dest)
{
    struct ff_err err;
    if (run_copy(t, r, srcs, n, dest, NULL, &err) != 0)
        fail_msg("copy to %s: %s", dest, err.msg);
}

static void copy_fails(const struct t *t, const struct run *r, const char *const *srcs, size_t n,
                       const char *dest, int code, const char *msg)
{
    struct ff_err err;
    int rc = run_copy(t, r, srcs, n, dest, NULL, &err);
    if (rc != code || strstr(err.msg, msg) == NULL)
        fail_msg("copy to %s: rc %d (want %d) \"%s\" (want \"%s\")", dest, rc, code, err.msg, msg);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_file_to_file_and_dir(void **state)
{
    struct t *t = *state;
    put(t->ctx, "a.txt", "A", 0640);
    const char *a = "a.txt";
    copy_ok(t, &COPY, &a, 1, "/dst/b.txt");
    expect_file(t, "dst/b.txt", "A", 0640, 0, 0);
    expect_dir(t, "dst", 0755, 0, 0);
    copy_ok(t, &COPY, &a, 1, "/into/");
    expect_file(t, "into/a.txt", "A", 0640, 0, 0);
    /* A file onto an existing directory goes inside it. */
    mkdirs(t->root, "existing", 0700);
    copy_ok(t, &COPY, &a, 1, "/existing");
    expect_file(t, "existing/a.txt", "A", 0640, 0, 0);
    expect_dir(t, "existing", 0700, 0, 0);
    /* Overwrites an existing file. */
    put(t->ctx, "a.txt", "AA", 0600);
    copy_ok(t, &COPY, &a, 1, "/dst/b.txt");
    expect_file(t, "dst/b.txt", "AA", 0600, 0, 0);
}

static void test_dir_contents(void **state)
{
    struct t *t = *state;
    put(t->ctx, "dir/x", "x", 0644);
    put(t->ctx, "dir/sub/y", "y", 0755);
    char p[512];
    at(t->ctx, "dir/sub", p, sizeof(p));
    assert_int_equal(chmod(p, 0750), 0);
    struct timespec ts[2] = {{1000000, 0}, {1234567890, 123456789}};
    at(t->ctx, "dir/x", p, sizeof(p));
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    at(t->ctx, "dir/sub", p, sizeof(p));
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    const char *d = "dir";
    copy_ok(t, &COPY, &d, 1, "/app");
    /* The contents, not the directory itself. */
    expect_file(t, "app/x", "x", 0644, 0, 0);
    expect_file(t, "app/sub/y", "y", 0755, 0, 0);
    expect_missing(t, "app/dir");
    expect_dir(t, "app", 0755, 0, 0);
    expect_dir(t, "app/sub", 0750, 0, 0);
    /* mtimes come from the source. */
    struct stat st;
    at(t->root, "app/x", p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1234567890);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    at(t->root, "app/sub", p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1234567890);
    /* Copying again over the existing tree merges and overwrites. */
    put(t->ctx, "dir/x", "x2", 0600);
    copy_ok(t, &COPY, &d, 1, "/app/");
    expect_file(t, "app/x", "x2", 0600, 0, 0);
}

static void test_several_sources_and_glob(void **state)
{
    struct t *t = *state;
    put(t->ctx, "a.txt", "a", 0644);
    put(t->ctx, "b.txt", "b", 0644);
    put(t->ctx, "c.md", "c", 0644);
    const char *two[] = {"a.txt", "b.txt"};
    /* Several sources make the destination a directory. */
    copy_ok(t, &COPY, two, 2, "/multi");
    expect_file(t, "multi/a.txt", "a", 0644, 0, 0);
    expect_file(t, "multi/b.txt", "b", 0644, 0, 0);
    const char *glob = "*.txt";
    copy_ok(t, &COPY, &glob, 1, "/g/");
    expect_file(t, "g/a.txt", "a", 0644, 0, 0);
    expect_file(t, "g/b.txt", "b", 0644, 0, 0);
    expect_missing(t, "g/c.md");
    const char *none = "*.none";
    copy_fails(t, &COPY, &none, 1, "/g/", FF_ENOTFOUND, "no source files match \"*.none\"");
}

static void test_workdir(void **state)
{
    struct t *t = *state;
    put(t->ctx, "a.txt", "a", 0644);
    const char *a = "a.txt";
    struct run r = COPY;
    r.workdir = "/w/x";
    copy_ok(t, &r, &a, 1, "rel/");
    expect_file(t, "w/x/rel/a.txt", "a", 0644, 0, 0);
    copy_ok(t, &r, &a, 1, ".");
    expect_file(t, "w/x/a.txt", "a", 0644, 0, 0);
    copy_ok(t, &r, &a, 1, "../up.txt");
    expect_file(t, "w/up.txt", "a", 0644, 0, 0);
    copy_ok(t, &r, &a, 1, "../../../../../top.txt");
    expect_file(t, "top.txt", "a", 0644, 0, 0);
}

static void test_symlinks_in_tree(void **state)
{
    struct t *t = *state;
    put(t->ctx, "dir/real", "r", 0644);
    lnk(t->ctx, "real", "dir/link");
    lnk(t->ctx, "/etc/passwd", "dir/abs");
    lnk(t->ctx, "dir/real", "toplink");
    const char *d = "dir";
    copy_ok(t, &COPY, &d, 1, "/d");
    char p[512];
    char target[256];
    at(t->root, "d/link", p, sizeof(p));
    ssize_t n = readlink(p, target, sizeof(target) - 1);
    assert_true(n > 0);
    target[n] = '\0';
    assert_string_equal(target, "real");
    /* Inside a copied tree, even an absolute link is copied as a link. */
    at(t->root, "d/abs", p, sizeof(p));
    n = readlink(p, target, sizeof(target) - 1);
    assert_true(n > 0);
    target[n] = '\0';
    assert_string_equal(target, "/etc/passwd");
    /* A top-level link is followed: a file named after the link. */
    const char *tl = "toplink";
    copy_ok(t, &COPY, &tl, 1, "/t/");
    expect_file(t, "t/toplink", "r", 0644, 0, 0);
}

static void test_dest_through_image_symlink(void **state)
{
    struct t *t = *state;
    put(t->ctx, "a.txt", "a", 0644);
    char outside[128];
    (void)snprintf(outside, sizeof(outside), "/tmp/ff-test-copy-escape-%ld", (long)getpid());
    /* The image's /etc points (absolutely) somewhere: that is inside the
     * rootfs, never the host's directory of that name. */
    lnk(t->root, outside, "etc");
    lnk(t->root, "../../../../../../../tmp", "up");
    const char *a = "a.txt";
    copy_ok(t, &COPY, &a, 1, "/etc/conf");
    char p[512];
    at(t->root, outside + 1, p, sizeof(p));
    (void)snprintf(p + strlen(p), sizeof(p) - strlen(p), "/conf");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(lstat(outside, &st), -1);
    copy_ok(t, &COPY, &a, 1, "/up/x.txt");
    expect_file(t, "tmp/x.txt", "a", 0644, 0, 0);
    /* A symlink as the last component is replaced, not written through. */
    lnk(t->root, "/victim.txt", "link.txt");
    copy_ok(t, &COPY, &a, 1, "/link.txt");
    expect_file(t, "link.txt", "a", 0644, 0, 0);
    expect_missing(t, "victim.txt");
    /* ... but a symlink to a directory takes a file inside it. */
    mkdirs(t->root, "real", 0755);
    lnk(t->root, "/real", "dirlink");
    copy_ok(t, &COPY, &a, 1, "/dirlink");
    expect_file(t, "real/a.txt", "a", 0644, 0, 0);
}

static void test_chown_chmod(void **state)
{
    struct t *t = *state;
    put(t->ctx, "dir/f", "f", 0644);
    put(t->ctx, "dir/sub/g", "g", 0600);
    lnk(t->ctx, "f", "dir/l");
    struct run r = COPY;
    r.attrs.chown = true;
    r.attrs.uid = 1234;
    r.attrs.gid = 5678;
    r.attrs.chmod = 0710;
    const char *d = "dir";
    copy_ok(t, &r, &d, 1, "/new/parent/app");
    expect_file(t, "new/parent/app/f", "f", 0710, 1234, 5678);
    expect_file(t, "new/parent/app/sub/g", "g", 0710, 1234, 5678);
    expect_dir(t, "new/parent/app/sub", 0710, 1234, 5678);
    /* Directories created on the way: 0755, owned as the copy (BuildKit). */
    expect_dir(t, "new", 0755, 1234, 5678);
    expect_dir(t, "new/parent", 0755, 1234, 5678);
    expect_dir(t, "new/parent/app", 0755, 1234, 5678);
    char p[512];
    struct stat st;
    at(t->root, "new/parent/app/l", p, sizeof(p));
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(st.st_uid, 1234);
    /* An existing parent keeps its owner and mode. */
    mkdirs(t->root, "keep", 0700);
    const char *f = "dir/f";
    copy_ok(t, &r, &f, 1, "/keep/f2");
    expect_dir(t, "keep", 0700, 0, 0);
    expect_file(t, "keep/f2", "f", 0710, 1234, 5678);
}

static void test_exclusions(void **state)
{
    struct t *t = *state;
    put(t->ctx, "app/main.c", "m", 0644);
    put(t->ctx, "app/secret.key", "s", 0600);
    put(t->ctx, "app/build/out.o", "o", 0644);
    put(t->ctx, "app/build/keep.txt", "k", 0644);
    put(t->ctx, "app/logs/a.log", "l", 0644);
    char p[512];
    at(t->ctx, "app/build", p, sizeof(p));
    assert_int_equal(chmod(p, 0750), 0);
    static const char *const excl[] = {"app/secret.key", "app/build/", "!app/build/keep.txt",
                                       "app/logs", NULL};
    struct run r = COPY;
    r.excl = excl;
    const char *d = "app";
    copy_ok(t, &r, &d, 1, "/a");
    expect_file(t, "a/main.c", "m", 0644, 0, 0);
    expect_missing(t, "a/secret.key");
    expect_missing(t, "a/logs");
    expect_missing(t, "a/build/out.o");
    expect_file(t, "a/build/keep.txt", "k", 0644, 0, 0);
    /* Created because something inside is copied, with its own mode. */
    expect_dir(t, "a/build", 0750, 0, 0);
    const char *s = "app/secret.key";
    copy_fails(t, &r, &s, 1, "/x", FF_ENOTFOUND, "source \"app/secret.key\" not found");
}

static void test_hardlinks(void **state)
{
    struct t *t = *state;
    put(t->ctx, "d/one", "same", 0644);
    char p[512];
    char q[512];
    at(t->ctx, "d/one", p, sizeof(p));
    at(t->ctx, "d/two", q, sizeof(q));
    assert_int_equal(link(p, q), 0);
    const char *d = "d";
    copy_ok(t, &COPY, &d, 1, "/h");
    struct stat a;
    struct stat b;
    at(t->root, "h/one", p, sizeof(p));
    at(t->root, "h/two", q, sizeof(q));
    assert_int_equal(stat(p, &a), 0);
    assert_int_equal(stat(q, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    assert_int_equal(a.st_nlink, 2);
}

static void test_conflicts(void **state)
{
    struct t *t = *state;
    put(t->ctx, "d/x", "x", 0644);
    put(t->ctx, "f", "f", 0644);
    mkdirs(t->root, "out/x", 0755);
    const char *d = "d";
    copy_fails(t, &COPY, &d, 1, "/out", FF_EINVAL, "cannot replace directory \"/out/x\"");
    put(t->root, "file", "", 0644);
    copy_fails(t, &COPY, &d, 1, "/file", FF_EINVAL, "cannot copy to non-directory \"/file\"");
    put(t->ctx, "e/file/y", "y", 0644);
    const char *e = "e";
    copy_fails(t, &COPY, &e, 1, "/", FF_EINVAL, "cannot copy to non-directory \"/file\"");
    const char *f = "f";
    copy_fails(t, &COPY, &f, 1, "/file/", FF_EINVAL, "file");
}

static void test_special_files(void **state)
{
    struct t *t = *state;
    put(t->ctx, "d/regular", "r", 0644);
    char p[512];
    at(t->ctx, "d/fifo", p, sizeof(p));
    assert_int_equal(mkfifo(p, 0640), 0);
    at(t->ctx, "d/sock", p, sizeof(p));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(p) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, p, strlen(p));
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char *d = "d";
    copy_ok(t, &COPY, &d, 1, "/s");
    (void)close(s);
    struct stat st;
    at(t->root, "s/fifo", p, sizeof(p));
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0640);
    expect_missing(t, "s/sock");
    expect_file(t, "s/regular", "r", 0644, 0, 0);
}

static void test_stage_root(void **state)
{
    struct t *t = *state;
    put(t->ctx, "usr/bin/tool", "tool", 0755);
    char p[512];
    at(t->ctx, "usr/bin/tool", p, sizeof(p));
    assert_int_equal(chown(p, 33, 44), 0);
    lnk(t->ctx, "/usr/bin/tool", "tool-link");
    struct run r = COPY;
    r.kind = CONTEXT_ROOT_STAGE;
    const char *src = "tool-link";
    copy_ok(t, &r, &src, 1, "/bin/");
    expect_file(t, "bin/tool-link", "tool", 0755, 33, 44);
    r.attrs.chown = true;
    copy_ok(t, &r, &src, 1, "/bin/");
    expect_file(t, "bin/tool-link", "tool", 0755, 0, 0);
}

static void write_tgz(const char *path)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_true(archive_write_add_filter_gzip(a) >= ARCHIVE_OK);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "inside.txt");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 2);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, "hi", 2), 2);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static void test_add_archive(void **state)
{
    struct t *t = *state;
    char p[512];
    at(t->ctx, "pkg.tar.gz", p, sizeof(p));
    write_tgz(p);
    put(t->ctx, "not-a-tar.gz", "\x1f\x8bjunk", 0644);
    struct run r = COPY;
    r.instr = CONTEXT_ADD;
    r.extract = true;
    struct extract_log log;
    memset(&log, 0, sizeof(log));
    const char *pkg = "pkg.tar.gz";
    struct ff_err err;
    /* Extracted into the destination, which is a directory even without
     * a trailing '/', and created. */
    assert_int_equal(run_copy(t, &r, &pkg, 1, "/opt/x", &log, &err), 0);
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.kind, CONTEXT_ARCHIVE_GZIP);
    assert_string_equal(log.dest, "/opt/x");
    assert_memory_equal(log.first, "\x1f\x8b", 2);
    at(t->root, "opt/x/extracted-here", p, sizeof(p));
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    expect_missing(t, "opt/x/pkg.tar.gz");
    /* Not a tar inside: copied as a file. */
    const char *junk = "not-a-tar.gz";
    assert_int_equal(run_copy(t, &r, &junk, 1, "/opt/", &log, &err), 0);
    assert_int_equal(log.calls, 1);
    expect_file(t, "opt/not-a-tar.gz", "\x1f\x8bjunk", 0644, 0, 0);
    /* COPY never extracts. */
    struct run c = COPY;
    c.extract = true;
    assert_int_equal(run_copy(t, &c, &pkg, 1, "/copied/", &log, &err), 0);
    assert_int_equal(log.calls, 1);
    at(t->root, "copied/pkg.tar.gz", p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

static void test_url_needs_client(void **state)
{
    struct t *t = *state;
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(context_root_open(t->ctx, CONTEXT_ROOT_CONTEXT, NULL, NULL, NULL, &root, &err),
                     0);
    const char *url = "https://127.0.0.1:1/file.txt";
    assert_int_equal(context_resolve(root, CONTEXT_ADD, &url, 1,
                                     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca4"
                                     "95991b7852b855",
                                     &s, &err),
                     0);
    struct copy_opts o;
    memset(&o, 0, sizeof(o));
    o.attrs.chmod = -1;
    assert_int_equal(copy_into(t->root, s, "/dl/", &o, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no HTTP client"));
    /* Nothing was created: downloads come before any change. */
    expect_missing(t, "dl");
    context_sources_free(s);
    context_root_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_to_file_and_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_contents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_sources_and_glob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_in_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dest_through_image_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chown_chmod, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclusions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hardlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_needs_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
