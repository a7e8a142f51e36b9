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
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

struct t {
    char dir[64];
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
    (void)snprintf(t->dir, sizeof(t->dir), "/tmp/ff-test-context-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    (void)nftw(t->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

static void path_of(const struct t *t, const char *rel, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s", t->dir, rel);
    assert_true(n > 0 && (size_t)n < size);
}

static void mkdir_p(const struct t *t, const char *rel)
{
    char p[512];
    path_of(t, rel, p, sizeof(p));
    for (char *s = p + strlen(t->dir) + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            (void)mkdir(p, 0755);
            *s = '/';
        }
    }
    (void)mkdir(p, 0755);
}

static void write_file(const struct t *t, const char *rel, const char *content, mode_t mode)
{
    char p[512];
    path_of(t, rel, p, sizeof(p));
    char *slash = strrchr(rel, '/');
    if (slash != NULL) {
        char *dir = strndup(rel, (size_t)(slash - rel));
        assert_non_null(dir);
        mkdir_p(t, dir);
        free(dir);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void make_link(const struct t *t, const char *target, const char *rel)
{
    char p[512];
    path_of(t, rel, p, sizeof(p));
    assert_int_equal(symlink(target, p), 0);
}

/* Excludes paths listed in a NULL-terminated array; a name ending in '/'
 * is an excluded directory that may hold exceptions (walk_anyway), and a
 * name starting with '!' is re-included. */
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
        bool under = strncmp(rel, p, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
        if (!under)
            continue;
        *excluded = !exception;
        *walk_anyway = walk && is_dir;
    }
    return 0;
}

static int resolve(const struct t *t, enum context_root_kind kind, const char *const *excl,
                   enum context_instr instr, const char *const *srcs, size_t n,
                   const char *checksum, struct context_root **root, struct context_sources **out,
                   struct ff_err *err)
{
    int rc = context_root_open(t->dir, kind, kind == CONTEXT_ROOT_STAGE ? "stage \"b\"" : NULL,
                               excl != NULL ? exclude_list : NULL, (void *)excl, root, err);
    assert_int_equal(rc, 0);
    return context_resolve(*root, instr, srcs, n, checksum, out, err);
}

static int digest_of(const struct t *t, const char *const *srcs, size_t n,
                     const struct context_attrs *a, const char *const *excl,
                     struct context_memo *memo, struct ff_digest *d, struct context_stats *st)
{
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    int rc = resolve(t, CONTEXT_ROOT_CONTEXT, excl, CONTEXT_COPY, srcs, n, NULL, &root, &s, &err);
    if (rc == 0)
        rc = context_digest(s, a, memo, d, st, &err);
    if (rc != 0)
        print_message("digest: %s\n", err.msg);
    context_sources_free(s);
    context_root_free(root);
    return rc;
}

/* ---- path cleaning ------------------------------------------------------------- */

static void test_path_clean(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        bool escapes;
    } v[] = {
        {"", "", false},
        {".", "", false},
        {"/", "", false},
        {"a", "a", false},
        {"./a/", "a", false},
        {"a//b/./c", "a/b/c", false},
        {"a/b/../c", "a/c", false},
        {"../x", "../x", true},
        {"a/../../x", "../x", true},
        {"/../x", "x", false},
        {"/a/../../b", "b", false},
        {"..", "..", true},
        {"a/..", "", false},
        {"../../a", "../../a", true},
        {"x/./../y/", "y", false},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *out = NULL;
        bool esc = false;
        struct ff_err err;
        assert_int_equal(context_path_clean(v[i].in, &out, &esc, &err), 0);
        assert_string_equal(out, v[i].out);
        assert_int_equal(esc, v[i].escapes);
        free(out);
    }
}

/* ---- glob ------------------------------------------------------------------------ */

enum { NO = 0, YES = 1, BAD = 2 };

static void test_glob_go_vectors(void **state)
{
    (void)state;
    /* Go's path/filepath match_test.go. */
    static const struct {
        const char *pattern, *name;
        int want;
    } v[] = {
        {"abc", "abc", YES},
        {"*", "abc", YES},
        {"*c", "abc", YES},
        {"a*", "a", YES},
        {"a*", "abc", YES},
        {"a*", "ab/c", NO},
        {"a*/b", "abc/b", YES},
        {"a*/b", "a/c/b", NO},
        {"a*b*c*d*e*/f", "axbxcxdxe/f", YES},
        {"a*b*c*d*e*/f", "axbxcxdxexxx/f", YES},
        {"a*b*c*d*e*/f", "axbxcxdxe/xxx/f", NO},
        {"a*b*c*d*e*/f", "axbxcxdxexxx/fff", NO},
        {"a*b?c*x", "abxbbxdbxebxczzx", YES},
        {"a*b?c*x", "abxbbxdbxebxczzy", NO},
        {"ab[c]", "abc", YES},
        {"ab[b-d]", "abc", YES},
        {"ab[e-g]", "abc", NO},
        {"ab[^c]", "abc", NO},
        {"ab[^b-d]", "abc", NO},
        {"ab[^e-g]", "abc", YES},
        {"a\\*b", "a*b", YES},
        {"a\\*b", "ab", NO},
        {"a?b",
         "a\xe2\x98\xba"
         "b",
         YES},
        {"a[^a]b",
         "a\xe2\x98\xba"
         "b",
         YES},
        {"a???b",
         "a\xe2\x98\xba"
         "b",
         NO},
        {"a[^a][^a][^a]b",
         "a\xe2\x98\xba"
         "b",
         NO},
        {"[a-\xce\xb6]*", "\xce\xb1", YES},
        {"*[a-\xce\xb6]", "A", NO},
        {"a?b", "a/b", NO},
        {"a*b", "a/b", NO},
        {"[\\]a]", "]", YES},
        {"[\\-]", "-", YES},
        {"[x\\-]", "x", YES},
        {"[x\\-]", "-", YES},
        {"[x\\-]", "z", NO},
        {"[\\-x]", "x", YES},
        {"[\\-x]", "-", YES},
        {"[\\-x]", "a", NO},
        {"[]a]", "]", BAD},
        {"[-]", "-", BAD},
        {"[x-]", "x", BAD},
        {"[x-]", "-", BAD},
        {"[x-]", "z", BAD},
        {"[-x]", "x", BAD},
        {"[-x]", "-", BAD},
        {"[-x]", "a", BAD},
        {"\\", "a", BAD},
        {"[a-b-c]", "a", BAD},
        {"[", "a", BAD},
        {"[^", "a", BAD},
        {"[^bc", "a", BAD},
        {"a[", "a", BAD},
        {"a[", "ab", BAD},
        {"a[", "x", BAD},
        {"a/b[", "x", BAD},
        {"*x", "xxx", YES},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        bool m = false;
        struct ff_err err;
        int rc = context_glob_match(v[i].pattern, strlen(v[i].pattern), v[i].name,
                                    strlen(v[i].name), &m, NULL, &err);
        if (v[i].want == BAD) {
            assert_int_equal(rc, FF_EINVAL);
            assert_non_null(strstr(err.msg, "bad pattern"));
        } else {
            if (rc != 0 || m != (v[i].want == YES))
                fail_msg("%s vs %s: rc %d match %d", v[i].pattern, v[i].name, rc, m);
        }
    }
}

static void test_glob_meta(void **state)
{
    (void)state;
    assert_true(context_glob_has_meta("a*", 2));
    assert_true(context_glob_has_meta("a?", 2));
    assert_true(context_glob_has_meta("[a]", 3));
    assert_false(context_glob_has_meta("a\\*", 3));
    assert_false(context_glob_has_meta("plain.txt", 9));
}

/* Many stars against a long name that almost matches: Go's chunk-at-a-time
 * matching stays within (name + 2) x (pattern + 1) steps, where a
 * backtracking matcher would take exponential time. */
static void test_glob_bounded(void **state)
{
    (void)state;
    char pattern[CONTEXT_GLOB_SEGMENT_MAX + 2];
    size_t plen = 0;
    while (plen + 2 < CONTEXT_GLOB_SEGMENT_MAX) {
        pattern[plen++] = '*';
        pattern[plen++] = 'a';
    }
    pattern[plen++] = 'b';
    char name[256];
    memset(name, 'a', sizeof(name) - 1);
    name[255] = '\0';
    bool m = true;
    size_t steps = 0;
    struct ff_err err;
    assert_int_equal(context_glob_match(pattern, plen, name, 255, &m, &steps, &err), 0);
    assert_false(m);
    assert_true(steps <= (255 + 2) * (plen + 1));
    /* Longer patterns are refused before any work. */
    pattern[plen++] = '*';
    assert_int_equal(
        context_glob_match(pattern, CONTEXT_GLOB_SEGMENT_MAX + 1, name, 255, &m, NULL, &err),
        FF_ETOOBIG);
}

/* ---- resolving ---------------------------------------------------------------------- */

static void test_resolve_file_dir_glob(void **state)
{
    struct t *t = *state;
    write_file(t, "a.txt", "a", 0644);
    write_file(t, "b.txt", "b", 0644);
    write_file(t, "c.md", "c", 0644);
    write_file(t, "dir/x", "x", 0644);
    write_file(t, "sub/one/f.txt", "1", 0644);
    write_file(t, "sub/two/f.txt", "2", 0644);
    write_file(t, "sub/two/g.txt", "3", 0644);
    const char *srcs[] = {"/a.txt", "dir/", "*.txt", "sub/*/f.txt", "."};
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, srcs, 5, NULL, &root, &s, &err), 0);
    assert_int_equal(s->n, 7);
    static const char *const paths[] = {"a.txt",         "dir",           "a.txt", "b.txt",
                                        "sub/one/f.txt", "sub/two/f.txt", ""};
    static const char *const names[] = {"a.txt", "dir", "a.txt", "b.txt", "f.txt", "f.txt", ""};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(s->v[i].path, paths[i]);
        assert_string_equal(s->v[i].name, names[i]);
    }
    assert_int_equal(s->v[1].type, S_IFDIR);
    assert_int_equal(s->v[0].type, S_IFREG);
    assert_string_equal(s->v[2].spec, "*.txt");
    context_sources_free(s);
    context_root_free(root);
}

static void expect_error(const struct t *t, enum context_root_kind kind, const char *const *excl,
                         enum context_instr instr, const char *src, const char *checksum, int code,
                         const char *msg)
{
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    int rc = resolve(t, kind, excl, instr, &src, 1, checksum, &root, &s, &err);
    if (rc != code || strstr(err.msg, msg) == NULL)
        fail_msg("source %s: rc %d (want %d), message \"%s\" (want \"%s\")", src, rc, code, err.msg,
                 msg);
    assert_null(s);
    context_root_free(root);
}

static void test_resolve_errors(void **state)
{
    struct t *t = *state;
    write_file(t, "a.txt", "a", 0644);
    make_link(t, "/etc", "etclink");
    make_link(t, "/etc/passwd", "passwd");
    make_link(t, "../../../../etc/hostname", "up");
    make_link(t, "nowhere", "dangling");
    mkdir_p(t, "empty");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "missing.txt", NULL, FF_ENOTFOUND,
                 "COPY: source \"missing.txt\" not found in the build context");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "../x", NULL, FF_EINVAL,
                 "COPY: forbidden path outside the build context: ../x");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "a/../../x", NULL, FF_EINVAL,
                 "forbidden path outside the build context: ../x");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "etclink", NULL, FF_EINVAL,
                 "symlink \"etclink\" points outside the root");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "etclink/passwd", NULL, FF_EINVAL,
                 "points outside");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "passwd", NULL, FF_EINVAL,
                 "points outside");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "up", NULL, FF_EINVAL,
                 "symlink \"up\" points outside the root");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "dangling", NULL, FF_ENOTFOUND,
                 "source \"dangling\" not found");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "*.none", NULL, FF_ENOTFOUND,
                 "COPY: no source files match \"*.none\" in the build context");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "empty/*", NULL, FF_ENOTFOUND,
                 "no source files match");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "a[", NULL, FF_EINVAL, "bad pattern");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "a.txt/", NULL, FF_ENOTFOUND,
                 "not found");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "a.txt/b", NULL, FF_ENOTFOUND,
                 "not found");
    expect_error(t, CONTEXT_ROOT_STAGE, NULL, CONTEXT_COPY, "missing", NULL, FF_ENOTFOUND,
                 "not found in stage \"b\"");
    /* A checksum is for URLs only, and URLs need one. */
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_ADD, "https://example.com/x.tgz", NULL,
                 FF_EINVAL, "ADD from a URL needs --checksum");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_ADD, "http://example.com/x.tgz",
                 "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                 FF_EINVAL, "only https URLs are fetched");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_ADD, "a.txt",
                 "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                 FF_EINVAL, "--checksum is only for a URL source");
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_ADD, "https://example.com/x.tgz", "md5:abc",
                 FF_EINVAL, "ADD: --checksum");
    /* COPY never treats a URL as one: it is a path, and not there. */
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "https://example.com/x", NULL,
                 FF_ENOTFOUND, "not found");
}

static void test_resolve_symlinks(void **state)
{
    struct t *t = *state;
    write_file(t, "real/file.txt", "content", 0644);
    make_link(t, "real/file.txt", "link.txt");
    make_link(t, "real", "linkdir");
    make_link(t, "/real/file.txt", "abs.txt");
    const char *srcs[] = {"link.txt", "linkdir/file.txt", "linkdir"};
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, srcs, 3, NULL, &root, &s, &err), 0);
    /* Followed inside the root; the name is the link's own (BuildKit). */
    assert_string_equal(s->v[0].path, "real/file.txt");
    assert_string_equal(s->v[0].name, "link.txt");
    assert_string_equal(s->v[1].path, "real/file.txt");
    assert_string_equal(s->v[2].path, "real");
    assert_int_equal(s->v[2].type, S_IFDIR);
    context_sources_free(s);
    context_root_free(root);
    /* An absolute link leaves a build context, but stays inside a stage. */
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "abs.txt", NULL, FF_EINVAL,
                 "points outside");
    const char *abs = "abs.txt";
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_STAGE, NULL, CONTEXT_COPY, &abs, 1, NULL, &root, &s, &err), 0);
    assert_string_equal(s->v[0].path, "real/file.txt");
    context_sources_free(s);
    context_root_free(root);
}

static void test_resolve_excluded(void **state)
{
    struct t *t = *state;
    write_file(t, "keep.txt", "k", 0644);
    write_file(t, "secret.txt", "s", 0644);
    write_file(t, "private/a", "a", 0644);
    write_file(t, "private/keep", "k", 0644);
    write_file(t, "ignored/x", "x", 0644);
    static const char *const excl[] = {"secret.txt", "private/", "!private/keep", "ignored", NULL};
    expect_error(t, CONTEXT_ROOT_CONTEXT, excl, CONTEXT_COPY, "secret.txt", NULL, FF_ENOTFOUND,
                 "source \"secret.txt\" not found");
    expect_error(t, CONTEXT_ROOT_CONTEXT, excl, CONTEXT_COPY, "private/a", NULL, FF_ENOTFOUND,
                 "not found");
    expect_error(t, CONTEXT_ROOT_CONTEXT, excl, CONTEXT_COPY, "ignored/x", NULL, FF_ENOTFOUND,
                 "not found");
    const char *srcs[] = {"*.txt", "private/keep", "private"};
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, excl, CONTEXT_COPY, srcs, 3, NULL, &root, &s, &err), 0);
    assert_int_equal(s->n, 3);
    assert_string_equal(s->v[0].path, "keep.txt");
    assert_string_equal(s->v[1].path, "private/keep");
    assert_false(s->v[1].walk_only);
    assert_string_equal(s->v[2].path, "private");
    assert_true(s->v[2].walk_only);
    context_sources_free(s);
    context_root_free(root);
}

static void test_resolve_special(void **state)
{
    struct t *t = *state;
    char p[512];
    path_of(t, "fifo", p, sizeof(p));
    assert_int_equal(mkfifo(p, 0644), 0);
    const char *src = "fifo";
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, &src, 1, NULL, &root, &s, &err), 0);
    assert_int_equal(s->v[0].type, S_IFIFO);
    context_sources_free(s);
    context_root_free(root);
    path_of(t, "null", p, sizeof(p));
    if (mknod(p, S_IFCHR | 0600, makedev(1, 3)) != 0) {
        print_message("mknod not permitted here: device test skipped\n");
        return;
    }
    expect_error(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, "null", NULL, FF_EINVAL,
                 "is a device node");
    /* Inside a copied directory too, found by the walk. */
    mkdir_p(t, "d");
    char q[512];
    path_of(t, "d/null", q, sizeof(q));
    assert_int_equal(rename(p, q), 0);
    const char *d = "d";
    struct context_attrs a = {-1, false, 0, 0};
    struct ff_digest dg;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_COPY, &d, 1, NULL, &root, &s, &err), 0);
    assert_int_equal(context_digest(s, &a, NULL, &dg, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"d/null\" in the build context is a device node"));
    context_sources_free(s);
    context_root_free(root);
}

static void test_resolve_url(void **state)
{
    struct t *t = *state;
    const char *srcs[] = {"https://example.com/dl/tool%2Dv1.tar.gz?x=1"};
    const char *sum = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_ADD, srcs, 1, sum, &root, &s, &err), 0);
    assert_int_equal(s->v[0].kind, CONTEXT_SRC_URL);
    assert_string_equal(s->v[0].name, "tool-v1.tar.gz");
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(&s->v[0].checksum, ds);
    assert_string_equal(ds, sum);
    /* Its digest is its checksum and URL: nothing is fetched. */
    struct ff_digest d1;
    struct ff_digest d2;
    struct context_attrs a = {-1, false, 0, 0};
    assert_int_equal(context_digest(s, &a, NULL, &d1, NULL, &err), 0);
    s->v[0].checksum.bytes[0] ^= 1;
    assert_int_equal(context_digest(s, &a, NULL, &d2, NULL, &err), 0);
    assert_false(ff_digest_equal(&d1, &d2));
    context_sources_free(s);
    context_root_free(root);
    const char *two[] = {"https://a.example/x", "https://b.example/y"};
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, NULL, CONTEXT_ADD, two, 2, sum, &root, &s, &err),
        FF_EINVAL);
    assert_non_null(strstr(err.msg, "--checksum takes a single source, got 2"));
    context_root_free(root);
}

/* ---- digest ------------------------------------------------------------------------ */

static void make_tree(const struct t *t, const char *top, bool reversed)
{
    static const char *const files[] = {"b/two.txt", "a/one.txt", "c.txt", "a/z/deep.txt"};
    char rel[256];
    for (size_t k = 0; k < 4; k++) {
        size_t i = reversed ? 3 - k : k;
        (void)snprintf(rel, sizeof(rel), "%s/%s", top, files[i]);
        write_file(t, rel, files[i], 0644);
    }
    (void)snprintf(rel, sizeof(rel), "%s/link", top);
    make_link(t, "c.txt", rel);
}

static void test_digest_stable(void **state)
{
    struct t *t = *state;
    make_tree(t, "x", false);
    make_tree(t, "y", true);
    struct context_attrs a = {-1, false, 0, 0};
    struct ff_digest dx;
    struct ff_digest dy;
    const char *sx = "x";
    const char *sy = "y";
    struct context_stats st = {0, 0, 0, 0, 0};
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, NULL, &dx, &st), 0);
    assert_int_equal(st.files, 4);
    assert_int_equal(st.entries, 9);
    /* Same names and contents created in another order: same digest (the
     * source's own name is not part of a directory's contents). */
    assert_int_equal(digest_of(t, &sy, 1, &a, NULL, NULL, &dy, NULL), 0);
    assert_true(ff_digest_equal(&dx, &dy));
    /* Times change: same digest. */
    char p[512];
    path_of(t, "x/a/one.txt", p, sizeof(p));
    struct timespec ts[2] = {{12345, 0}, {67890, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    path_of(t, "x/a", p, sizeof(p));
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    struct ff_digest d2;
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, NULL, &d2, NULL), 0);
    assert_true(ff_digest_equal(&dx, &d2));
}

static void expect_changed(const struct t *t, const struct ff_digest *before,
                           const struct context_attrs *a)
{
    const char *sx = "x";
    struct ff_digest d;
    assert_int_equal(digest_of(t, &sx, 1, a, NULL, NULL, &d, NULL), 0);
    assert_false(ff_digest_equal(before, &d));
}

static void test_digest_changes(void **state)
{
    struct t *t = *state;
    make_tree(t, "x", false);
    struct context_attrs a = {-1, false, 0, 0};
    const char *sx = "x";
    struct ff_digest d0;
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, NULL, &d0, NULL), 0);
    /* --chmod and --chown are inputs. */
    struct context_attrs with_chmod = {0600, false, 0, 0};
    expect_changed(t, &d0, &with_chmod);
    struct context_attrs with_chown = {-1, true, 1000, 1000};
    expect_changed(t, &d0, &with_chown);
    /* Content, same size. */
    write_file(t, "x/c.txt", "C.txt", 0644);
    expect_changed(t, &d0, &a);
    write_file(t, "x/c.txt", "c.txt", 0644);
    struct ff_digest d;
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, NULL, &d, NULL), 0);
    assert_true(ff_digest_equal(&d0, &d));
    /* Mode. */
    char p[512];
    path_of(t, "x/c.txt", p, sizeof(p));
    assert_int_equal(chmod(p, 0755), 0);
    expect_changed(t, &d0, &a);
    assert_int_equal(chmod(p, 0644), 0);
    /* Name. */
    char q[512];
    path_of(t, "x/c2.txt", q, sizeof(q));
    assert_int_equal(rename(p, q), 0);
    expect_changed(t, &d0, &a);
    assert_int_equal(rename(q, p), 0);
    /* Symlink target. */
    path_of(t, "x/link", p, sizeof(p));
    assert_int_equal(unlink(p), 0);
    make_link(t, "a/one.txt", "x/link");
    expect_changed(t, &d0, &a);
    assert_int_equal(unlink(p), 0);
    make_link(t, "c.txt", "x/link");
    /* A hard link is not two files. */
    path_of(t, "x/a/one.txt", p, sizeof(p));
    path_of(t, "x/hard", q, sizeof(q));
    write_file(t, "x/hard", "a/one.txt", 0644);
    struct ff_digest copy;
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, NULL, &copy, NULL), 0);
    assert_int_equal(unlink(q), 0);
    assert_int_equal(link(p, q), 0);
    expect_changed(t, &copy, &a);
    assert_int_equal(unlink(q), 0);
    /* An exclusion changes what is there. */
    static const char *const excl[] = {"x/b", NULL};
    assert_int_equal(digest_of(t, &sx, 1, &a, excl, NULL, &d, NULL), 0);
    assert_false(ff_digest_equal(&d0, &d));
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, NULL, &d, NULL), 0);
    assert_true(ff_digest_equal(&d0, &d));
}

static void test_digest_memo(void **state)
{
    struct t *t = *state;
    make_tree(t, "x", false);
    char memo_path[512];
    path_of(t, "memo", memo_path, sizeof(memo_path));
    struct context_memo *m = NULL;
    struct ff_err err;
    assert_int_equal(context_memo_open(memo_path, &m, &err), 0);
    assert_int_equal(context_memo_count(m), 0);
    /* Fresh files are not memoised: they may still change within a tick. */
    const char *sx = "x";
    struct context_attrs a = {-1, false, 0, 0};
    struct ff_digest d0;
    struct ff_digest d;
    struct context_stats st = {0, 0, 0, 0, 0};
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, m, &d0, &st), 0);
    assert_int_equal(context_memo_count(m), 0);
    context_memo_set_settle(m, -2000000000LL);
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, m, &d, &st), 0);
    assert_int_equal(st.bytes_read, st.bytes);
    assert_int_equal(context_memo_count(m), 4);
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, m, &d, &st), 0);
    assert_int_equal(st.memo_hits, 4);
    assert_int_equal(st.bytes_read, 0);
    assert_true(ff_digest_equal(&d0, &d));
    assert_int_equal(context_memo_save(m, &err), 0);
    context_memo_free(m);
    /* Reloaded from disk, it still answers. */
    assert_int_equal(context_memo_open(memo_path, &m, &err), 0);
    assert_int_equal(context_memo_count(m), 4);
    context_memo_set_settle(m, -2000000000LL);
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, m, &d, &st), 0);
    assert_int_equal(st.memo_hits, 4);
    assert_true(ff_digest_equal(&d0, &d));
    /* Same size, times put back: ctime still moved, so it is read again. */
    char p[512];
    path_of(t, "x/c.txt", p, sizeof(p));
    struct stat before;
    assert_int_equal(stat(p, &before), 0);
    write_file(t, "x/c.txt", "C.txt", 0644);
    struct timespec ts[2] = {before.st_atim, before.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, m, &d, &st), 0);
    assert_int_equal(st.memo_hits, 3);
    assert_int_equal(st.bytes_read, 5);
    assert_false(ff_digest_equal(&d0, &d));
    context_memo_free(m);
}

static void test_memo_corrupt(void **state)
{
    struct t *t = *state;
    make_tree(t, "x", false);
    char memo_path[512];
    path_of(t, "memo", memo_path, sizeof(memo_path));
    struct context_memo *m = NULL;
    struct ff_err err;
    assert_int_equal(context_memo_open(memo_path, &m, &err), 0);
    context_memo_set_settle(m, -2000000000LL);
    const char *sx = "x";
    struct context_attrs a = {-1, false, 0, 0};
    struct ff_digest d;
    assert_int_equal(digest_of(t, &sx, 1, &a, NULL, m, &d, NULL), 0);
    void *img = NULL;
    size_t len = 0;
    assert_int_equal(context_memo_image(m, &img, &len, &err), 0);
    context_memo_free(m);
    /* Every single-byte corruption and every truncation gives an empty
     * memo, never a wrong one. */
    unsigned char *b = img;
    for (size_t i = 0; i < len; i += 7) {
        b[i] ^= 0x5a;
        assert_int_equal(context_memo_parse(b, len, &m, &err), 0);
        assert_int_equal(context_memo_count(m), 0);
        context_memo_free(m);
        b[i] ^= 0x5a;
    }
    for (size_t n = 0; n < len; n += 13) {
        assert_int_equal(context_memo_parse(b, n, &m, &err), 0);
        assert_int_equal(context_memo_count(m), 0);
        context_memo_free(m);
    }
    assert_int_equal(context_memo_parse(b, len, &m, &err), 0);
    assert_int_equal(context_memo_count(m), 4);
    context_memo_free(m);
    free(img);
    /* A memo file that is not one is ignored. */
    write_file(t, "memo", "not a memo", 0600);
    assert_int_equal(context_memo_open(memo_path, &m, &err), 0);
    assert_int_equal(context_memo_count(m), 0);
    context_memo_free(m);
}

static void test_digest_walk_anyway(void **state)
{
    struct t *t = *state;
    write_file(t, "x/private/a", "a", 0644);
    write_file(t, "x/private/keep", "k", 0644);
    write_file(t, "x/pub", "p", 0644);
    static const char *const excl[] = {"x/private/", "!x/private/keep", NULL};
    static const char *const excl_all[] = {"x/private", NULL};
    const char *sx = "x";
    struct context_attrs a = {-1, false, 0, 0};
    struct ff_digest d1;
    struct ff_digest d2;
    struct context_stats st = {0, 0, 0, 0, 0};
    assert_int_equal(digest_of(t, &sx, 1, &a, excl, NULL, &d1, &st), 0);
    /* x, private, private/keep, pub */
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.files, 2);
    assert_int_equal(digest_of(t, &sx, 1, &a, excl_all, NULL, &d2, &st), 0);
    assert_int_equal(st.entries, 2);
    assert_false(ff_digest_equal(&d1, &d2));
    /* An excluded directory whose exceptions match nothing is not there. */
    char p[512];
    path_of(t, "x/private/keep", p, sizeof(p));
    assert_int_equal(unlink(p), 0);
    const char *sp = "x/private";
    struct context_root *root = NULL;
    struct context_sources *s = NULL;
    struct ff_err err;
    assert_int_equal(
        resolve(t, CONTEXT_ROOT_CONTEXT, excl, CONTEXT_COPY, &sp, 1, NULL, &root, &s, &err), 0);
    assert_int_equal(context_digest(s, &a, NULL, &d1, NULL, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not found"));
    context_sources_free(s);
    context_root_free(root);
}

static void test_digest_stage_owner(void **state)
{
    struct t *t = *state;
    write_file(t, "f", "f", 0644);
    char p[512];
    path_of(t, "f", p, sizeof(p));
    const char *src = "f";
    struct context_attrs a = {-1, false, 0, 0};
    struct ff_digest d[4];
    for (int k = 0; k < 4; k++) {
        enum context_root_kind kind = k < 2 ? CONTEXT_ROOT_CONTEXT : CONTEXT_ROOT_STAGE;
        assert_int_equal(chown(p, (uid_t)(k % 2) * 1000, 0), 0);
        struct context_root *root = NULL;
        struct context_sources *s = NULL;
        struct ff_err err;
        assert_int_equal(resolve(t, kind, NULL, CONTEXT_COPY, &src, 1, NULL, &root, &s, &err), 0);
        assert_int_equal(context_digest(s, &a, NULL, &d[k], NULL, &err), 0);
        context_sources_free(s);
        context_root_free(root);
    }
    /* A context's owners are not copied (0:0); a stage's are. */
    assert_true(ff_digest_equal(&d[0], &d[1]));
    assert_false(ff_digest_equal(&d[2], &d[3]));
}

/* ---- archives ------------------------------------------------------------------------ */

static void write_archive(const char *path, int filter, bool tar)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    if (filter >= 0)
        assert_true(archive_write_add_filter(a, filter) >= ARCHIVE_OK);
    assert_int_equal(tar ? archive_write_set_format_pax_restricted(a)
                         : archive_write_set_format_raw(a),
                     ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "hello.txt");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 6);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, "hello\n", 6), 6);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static enum context_archive detect(const struct t *t, const char *rel)
{
    char p[512];
    path_of(t, rel, p, sizeof(p));
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    enum context_archive k = CONTEXT_ARCHIVE_NONE;
    struct ff_err err;
    assert_int_equal(context_archive_detect(fd, &k, &err), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
    (void)close(fd);
    return k;
}

static void test_archive_detect(void **state)
{
    struct t *t = *state;
    static const struct {
        const char *name;
        int filter;
        enum context_archive kind;
    } v[] = {
        {"a.tar", -1, CONTEXT_ARCHIVE_TAR},
        {"a.tar.gz", ARCHIVE_FILTER_GZIP, CONTEXT_ARCHIVE_GZIP},
        {"a.tar.bz2", ARCHIVE_FILTER_BZIP2, CONTEXT_ARCHIVE_BZIP2},
        {"a.tar.xz", ARCHIVE_FILTER_XZ, CONTEXT_ARCHIVE_XZ},
        {"a.tar.zst", ARCHIVE_FILTER_ZSTD, CONTEXT_ARCHIVE_ZSTD},
    };
    char p[512];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        path_of(t, v[i].name, p, sizeof(p));
        write_archive(p, v[i].filter, true);
        assert_int_equal(detect(t, v[i].name), v[i].kind);
    }
    /* A compressed file that is not a tar is copied, not extracted. */
    path_of(t, "plain.gz", p, sizeof(p));
    write_archive(p, ARCHIVE_FILTER_GZIP, false);
    assert_int_equal(detect(t, "plain.gz"), CONTEXT_ARCHIVE_NONE);
    path_of(t, "plain.zst", p, sizeof(p));
    write_archive(p, ARCHIVE_FILTER_ZSTD, false);
    assert_int_equal(detect(t, "plain.zst"), CONTEXT_ARCHIVE_NONE);
    /* Magic bytes alone, text, empty, and "ustar" with a bad checksum. */
    write_file(t, "magic.gz", "\x1f\x8b", 0644);
    assert_int_equal(detect(t, "magic.gz"), CONTEXT_ARCHIVE_NONE);
    write_file(t, "text", "just some text\n", 0644);
    assert_int_equal(detect(t, "text"), CONTEXT_ARCHIVE_NONE);
    write_file(t, "empty", "", 0644);
    assert_int_equal(detect(t, "empty"), CONTEXT_ARCHIVE_NONE);
    char block[513];
    memset(block, 'x', 512);
    memcpy(block + 257, "ustar", 5);
    block[512] = '\0';
    write_file(t, "fake.tar", block, 0644);
    assert_int_equal(detect(t, "fake.tar"), CONTEXT_ARCHIVE_NONE);
    assert_string_equal(context_archive_name(CONTEXT_ARCHIVE_XZ), "xz");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_clean),
        cmocka_unit_test(test_glob_go_vectors),
        cmocka_unit_test(test_glob_meta),
        cmocka_unit_test(test_glob_bounded),
        cmocka_unit_test_setup_teardown(test_resolve_file_dir_glob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_excluded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_special, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_memo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memo_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_walk_anyway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_stage_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_detect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
