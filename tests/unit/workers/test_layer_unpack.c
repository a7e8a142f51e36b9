#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include "ff_str.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

/* A valid VFS_CAP_REVISION_2 value: effective, permitted = cap_net_raw. */
static const unsigned char CAP_VALUE[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20};

/* root/dest is where layers go; root/outside is what an escape would
 * reach; root/blob is the layer. */
struct fixture {
    char root[64];
    char dest[96];
    char outside[96];
    char blob[96];
};

/* rm -rf by descriptors: nftw gives up on paths over PATH_MAX. */
static void rm_at(int parent, const char *name)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (d != NULL) {
            const struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                    rm_at(dirfd(d), de->d_name);
            }
            (void)closedir(d);
        } else if (fd >= 0) {
            (void)close(fd);
        }
    }
    (void)unlinkat(parent, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
}

static void rm_tree(const char *path)
{
    rm_at(AT_FDCWD, path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    ff_strlcpy(f->root, "/tmp/ff-test-layer-unpack-XXXXXX", sizeof(f->root));
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    (void)snprintf(f->dest, sizeof(f->dest), "%s/dest", f->root);
    (void)snprintf(f->outside, sizeof(f->outside), "%s/outside", f->root);
    (void)snprintf(f->blob, sizeof(f->blob), "%s/blob", f->root);
    *state = f;
    return mkdir(f->dest, 0755) == 0 && mkdir(f->outside, 0755) == 0 ? 0 : -1;
}

static size_t count_dir(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    (void)closedir(d);
    return n;
}

/* After every test: nothing appeared beside dest or in outside. */
static int teardown(void **state)
{
    struct fixture *f = *state;
    size_t beside = count_dir(f->root);
    size_t out = count_dir(f->outside);
    rm_tree(f->root);
    free(f);
    return beside <= 3 && out == 0 ? 0 : -1;
}

enum filt { F_NONE, F_GZIP, F_ZSTD };

struct tent {
    mode_t type;       /* AE_IF*, or 0 for a hard link */
    mode_t perm;
    const char *path;
    const char *arg;   /* content, symlink target or hard link target */
    int64_t uid;
    size_t zeros;      /* extra zero bytes of content */
    int64_t size;      /* header size when >= 0 and different from content */
};

#define T_FILE(p, data) {AE_IFREG, 0644, (p), (data), 0, 0, -1}
#define T_DIR(p) {AE_IFDIR, 0755, (p), NULL, 0, 0, -1}
#define T_SYMLINK(p, t) {AE_IFLNK, 0777, (p), (t), 0, 0, -1}
#define T_HARDLINK(p, t) {0, 0644, (p), (t), 0, 0, -1}

static void make_tar(const char *out, enum filt filt, const struct tent *v, size_t n)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (filt == F_GZIP)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    if (filt == F_ZSTD)
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, out), ARCHIVE_OK);
    struct archive_entry *ae = archive_entry_new();
    static const char zeros[4096];
    for (size_t i = 0; i < n; i++) {
        archive_entry_clear(ae);
        archive_entry_copy_pathname(ae, v[i].path);
        archive_entry_set_filetype(ae, v[i].type ? v[i].type : AE_IFREG);
        archive_entry_set_perm(ae, v[i].perm);
        archive_entry_set_uid(ae, v[i].uid);
        archive_entry_set_gid(ae, v[i].uid);
        archive_entry_set_mtime(ae, 1600000000 + (time_t)i, 0);
        size_t len = 0;
        if (v[i].type == 0)
            archive_entry_copy_hardlink(ae, v[i].arg);
        else if (v[i].type == AE_IFLNK)
            archive_entry_copy_symlink(ae, v[i].arg);
        else if (v[i].type == AE_IFREG)
            len = (v[i].arg ? strlen(v[i].arg) : 0) + v[i].zeros;
        if (v[i].type == AE_IFCHR || v[i].type == AE_IFBLK) {
            archive_entry_set_rdevmajor(ae, 1);
            archive_entry_set_rdevminor(ae, 5);
        }
        if (v[i].type == AE_IFREG && v[i].arg != NULL && strcmp(v[i].arg, "cap") == 0)
            archive_entry_xattr_add_entry(ae, "security.capability", CAP_VALUE,
                                          sizeof(CAP_VALUE));
        if (v[i].type == AE_IFREG)
            archive_entry_xattr_add_entry(ae, "trusted.overlay.redirect", "/x", 2);
        archive_entry_set_size(ae, v[i].size >= 0 ? v[i].size : (la_int64_t)len);
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        if (v[i].type == AE_IFREG && v[i].arg != NULL)
            assert_int_equal(archive_write_data(a, v[i].arg, strlen(v[i].arg)),
                             (la_ssize_t)strlen(v[i].arg));
        for (size_t z = v[i].zeros; z > 0;) {
            size_t k = z < sizeof(zeros) ? z : sizeof(zeros);
            assert_int_equal(archive_write_data(a, zeros, k), (la_ssize_t)k);
            z -= k;
        }
    }
    archive_entry_free(ae);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    assert_int_equal(archive_write_free(a), ARCHIVE_OK);
}

static int unpack_blob(const char *blob, const char *dest, bool plain,
                       const struct layer_unpack_opts *o, struct layer_info *info,
                       struct ff_err *err)
{
    int fd = open(blob, O_RDONLY);
    assert_true(fd >= 0);
    int rc = plain ? layer_extract_plain(fd, dest, o, info, err)
                   : layer_unpack(fd, dest, o, info, err);
    (void)close(fd);
    return rc;
}

/* Builds the tar v into the blob and unpacks it; returns the result. */
static int unpack_tar(struct fixture *f, enum filt filt, const struct tent *v, size_t n,
                      const struct layer_unpack_opts *o, struct ff_err *err)
{
    make_tar(f->blob, filt, v, n);
    struct layer_info info;
    ff_err_clear(err);
    return unpack_blob(f->blob, f->dest, false, o, &info, err);
}

static char *at(const char *dir, const char *name)
{
    char *p = ff_asprintf("%s/%s", dir, name);
    assert_non_null(p);
    return p;
}

static bool exists(const char *dir, const char *name)
{
    char *p = at(dir, name);
    struct stat st;
    bool r = lstat(p, &st) == 0;
    free(p);
    return r;
}

static struct stat stat_of(const char *dir, const char *name)
{
    char *p = at(dir, name);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    free(p);
    return st;
}

static void expect_refused(struct fixture *f, const struct tent *v, size_t n, int code,
                           const char *in_msg)
{
    struct ff_err err;
    assert_int_equal(unpack_tar(f, F_NONE, v, n, NULL, &err), code);
    if (strstr(err.msg, in_msg) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, in_msg);
    assert_int_equal(count_dir(f->outside), 0);
}

static void test_refuse_absolute(void **state)
{
    struct fixture *f = *state;
    char *abs = at(f->outside, "x");
    const struct tent v[] = {T_FILE(abs, "pwned")};
    expect_refused(f, v, 1, FF_EINVAL, "is absolute");
    assert_int_equal(count_dir(f->dest), 0);
    free(abs);
}

static void test_refuse_dotdot(void **state)
{
    struct fixture *f = *state;
    const struct tent v1[] = {T_FILE("ok", "1"), T_FILE("../outside/x", "pwned"),
                              T_FILE("after", "2")};
    expect_refused(f, v1, 3, FF_EINVAL, "layer entry \"../outside/x\": path has a \"..\"");
    /* The entry before was written, nothing after. */
    assert_true(exists(f->dest, "ok"));
    assert_false(exists(f->dest, "after"));
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    const struct tent v2[] = {T_DIR("a/"), T_FILE("a/../../outside/x", "pwned")};
    expect_refused(f, v2, 2, FF_EINVAL, "\"..\" component");
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    /* A ".." that would stay inside is refused all the same. */
    const struct tent v3[] = {T_FILE("a/b/../c", "x")};
    expect_refused(f, v3, 1, FF_EINVAL, "\"..\" component");
}

static void test_refuse_through_symlink(void **state)
{
    struct fixture *f = *state;
    const struct tent v1[] = {T_SYMLINK("a", f->outside), T_FILE("a/passwd", "pwned")};
    expect_refused(f, v1, 2, FF_EINVAL,
                   "layer entry \"a/passwd\": opening its parent directory: the path goes "
                   "through a symlink");
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    /* Relative, deeper, and a directory entry through it. */
    const struct tent v2[] = {T_DIR("d/"), T_SYMLINK("d/up", "../../outside"),
                              T_DIR("d/up/sub/")};
    expect_refused(f, v2, 3, FF_EINVAL, "goes through a symlink");
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    /* Even a symlink that stays inside is not followed. */
    const struct tent v3[] = {T_DIR("real/"), T_SYMLINK("s", "real"), T_FILE("s/x", "x")};
    expect_refused(f, v3, 3, FF_EINVAL, "goes through a symlink");
    assert_false(exists(f->dest, "real/x"));
}

static void test_refuse_hardlinks(void **state)
{
    struct fixture *f = *state;
    char *secret = at(f->outside, "secret");
    FILE *fp = fopen(secret, "w");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    const struct tent v1[] = {T_SYMLINK("l", f->outside), T_HARDLINK("h", "l/secret")};
    struct ff_err err;
    assert_int_equal(unpack_tar(f, F_NONE, v1, 2, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer entry \"h\""));
    assert_non_null(strstr(err.msg, "through a symlink"));
    assert_false(exists(f->dest, "h"));
    assert_int_equal(stat_of(f->outside, "secret").st_nlink, 1);
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    const struct tent v1r[] = {T_SYMLINK("r", "../outside"), T_HARDLINK("h", "r/secret")};
    assert_int_equal(unpack_tar(f, F_NONE, v1r, 2, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "the hard link target's directory: the path goes through"));
    assert_int_equal(stat_of(f->outside, "secret").st_nlink, 1);
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    const struct tent v2[] = {T_HARDLINK("h", "../../etc/shadow")};
    assert_int_equal(unpack_tar(f, F_NONE, v2, 1, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "hard link target has a \"..\" component"));
    const struct tent v3[] = {T_HARDLINK("h", secret)};
    assert_int_equal(unpack_tar(f, F_NONE, v3, 1, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "hard link target is absolute"));
    const struct tent v4[] = {T_HARDLINK("h", "nothing")};
    assert_int_equal(unpack_tar(f, F_NONE, v4, 1, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "not an earlier entry"));
    const struct tent v5[] = {T_DIR("d/"), T_HARDLINK("h", "d")};
    assert_int_equal(unpack_tar(f, F_NONE, v5, 2, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "hard link to a directory"));
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    const struct tent v6[] = {T_FILE("f", "x"), T_HARDLINK("f", "./f")};
    assert_int_equal(unpack_tar(f, F_NONE, v6, 2, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "hard link to itself"));
    assert_int_equal(stat_of(f->outside, "secret").st_nlink, 1);
    assert_int_equal(unlink(secret), 0);
    free(secret);
}

static void test_limits(void **state)
{
    struct fixture *f = *state;
    struct layer_unpack_opts o;
    memset(&o, 0, sizeof(o));
    o.max_entries = 3;
    struct ff_err err;
    const struct tent many[] = {T_FILE("1", "1"), T_FILE("2", "2"), T_FILE("3", "3"),
                                T_FILE("4", "4"), T_FILE("5", "5")};
    assert_int_equal(unpack_tar(f, F_GZIP, many, 3, &o, &err), 0);
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    assert_int_equal(unpack_tar(f, F_GZIP, many, 5, &o, &err), FF_ETOOBIG);
    assert_string_equal(err.msg, "layer: more than 3 entries (the limit)");
    assert_false(exists(f->dest, "4"));

    /* A bomb: 8 MiB of zeros is a few KiB of gzip. */
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    memset(&o, 0, sizeof(o));
    o.max_bytes = 1u << 20;
    /* Each file under the cap, together 8 MiB. */
    struct tent bomb[16];
    for (size_t i = 0; i < 16; i++) {
        static const char *const names[] = {"0", "1", "2", "3", "4", "5", "6", "7",
                                            "8", "9", "a", "b", "c", "d", "e", "f"};
        struct tent t = {AE_IFREG, 0644, names[i], NULL, 0, 512u << 10, -1};
        bomb[i] = t;
    }
    make_tar(f->blob, F_GZIP, bomb, 16);
    struct stat st;
    assert_int_equal(stat(f->blob, &st), 0);
    assert_true(st.st_size < (off_t)64 * 1024);
    struct layer_info info;
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &o, &info, &err), FF_ETOOBIG);
    assert_string_equal(err.msg, "layer: more than 1048576 uncompressed bytes (the limit)");
    assert_false(exists(f->dest, "2"));
    /* The same under zstd, and a header claiming more than the cap. */
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    make_tar(f->blob, F_ZSTD, bomb, 16);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &o, &info, &err), FF_ETOOBIG);
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    const struct tent liar[] = {{AE_IFREG, 0644, "big", NULL, 0, 0, 2u << 20}};
    make_tar(f->blob, F_NONE, liar, 1);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &o, &info, &err), FF_ETOOBIG);
    assert_string_equal(err.msg, "layer entry \"big\": file size 2097152 over the limit of "
                                 "1048576 bytes");
    /* Path length. */
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
    memset(&o, 0, sizeof(o));
    o.max_path = 20;
    const struct tent longp[] = {T_FILE("aaaaaaaaaa/bbbbbbbbbb/c", "x")};
    assert_int_equal(unpack_tar(f, F_NONE, longp, 1, &o, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "longer than 20 bytes"));
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x55;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    (void)close(fd);
}

static void reset(struct fixture *f)
{
    rm_tree(f->dest);
    assert_int_equal(mkdir(f->dest, 0755), 0);
}

static void test_corrupt_blobs(void **state)
{
    struct fixture *f = *state;
    char text[3000];
    for (size_t i = 0; i < sizeof(text) - 1; i++)
        text[i] = (char)('a' + (i * 7) % 26);
    text[sizeof(text) - 1] = '\0';
    const struct tent v[] = {T_FILE("a", text), T_FILE("b", text)};
    struct layer_info info;
    struct ff_err err;

    /* The CRC-32 at the end of the member is checked. */
    make_tar(f->blob, F_GZIP, v, 2);
    struct stat st;
    assert_int_equal(stat(f->blob, &st), 0);
    flip_byte(f->blob, st.st_size - 8);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "gzip stream is corrupt: incorrect data check"));
    /* Damage in the middle: refused, by inflate or by the tar reader. */
    reset(f);
    make_tar(f->blob, F_GZIP, v, 2);
    flip_byte(f->blob, st.st_size / 2);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);

    reset(f);
    make_tar(f->blob, F_GZIP, v, 2);
    assert_int_equal(truncate(f->blob, st.st_size - 10), 0);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "gzip stream is truncated"));

    reset(f);
    make_tar(f->blob, F_ZSTD, v, 2);
    assert_int_equal(stat(f->blob, &st), 0);
    assert_int_equal(truncate(f->blob, st.st_size - 5), 0);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "zstd stream"));

    /* A tar cut in the middle of a file's data (after its pax header,
     * pax data and ustar header). */
    reset(f);
    make_tar(f->blob, F_NONE, v, 2);
    assert_int_equal(truncate(f->blob, 3 * 512 + 1000), 0);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer entry \"a\""));

    /* Junk after a gzip stream, as Go's reader also refuses. */
    reset(f);
    make_tar(f->blob, F_GZIP, v, 2);
    FILE *fp = fopen(f->blob, "ab");
    assert_non_null(fp);
    assert_int_equal(fwrite("junkjunk", 1, 8, fp), 8);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "gzip stream is corrupt"));

    /* Not a tar at all. */
    reset(f);
    fp = fopen(f->blob, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, 1024, fp), 1024);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "bad tar"));
    assert_int_equal(count_dir(f->dest), 0);
}

static void test_digests(void **state)
{
    struct fixture *f = *state;
    const struct tent v[] = {T_FILE("a", "hello")};
    make_tar(f->blob, F_GZIP, v, 1);
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), 0);
    assert_int_equal(info.compression, LAYER_GZIP);
    assert_int_equal(info.entries, 1);
    struct ff_digest blob;
    assert_int_equal(ff_digest_file(f->blob, &blob, &err), 0);
    assert_true(ff_digest_equal(&blob, &info.digest));
    struct stat st;
    assert_int_equal(stat(f->blob, &st), 0);
    assert_int_equal(info.size, (uint64_t)st.st_size);

    struct layer_unpack_opts o;
    memset(&o, 0, sizeof(o));
    struct ff_digest good_diff = info.diff_id, good_blob = info.digest, bad = info.diff_id;
    bad.bytes[0] ^= 1;
    o.diff_id = &good_diff;
    o.digest = &good_blob;
    reset(f);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &o, &info, &err), 0);
    reset(f);
    o.diff_id = &bad;
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &o, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer: diff_id mismatch (expected sha256:"));
    reset(f);
    o.diff_id = NULL;
    o.digest = &bad;
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &o, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer: digest mismatch"));
    /* Uncompressed: one digest for both. */
    reset(f);
    make_tar(f->blob, F_NONE, v, 1);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), 0);
    assert_int_equal(info.compression, LAYER_UNCOMPRESSED);
    assert_true(ff_digest_equal(&info.digest, &info.diff_id));
    assert_int_equal(info.size, info.tar_size);
}

static void test_dest_checks(void **state)
{
    struct fixture *f = *state;
    const struct tent v[] = {T_FILE("a", "hello")};
    make_tar(f->blob, F_NONE, v, 1);
    struct layer_info info;
    struct ff_err err;
    char *missing = at(f->root, "missing");
    assert_int_equal(unpack_blob(f->blob, missing, false, NULL, &info, &err), FF_ENOTFOUND);
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), 0);
    /* A lower layer goes into an empty directory only. */
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EEXIST);
    assert_non_null(strstr(err.msg, "is not empty"));
    free(missing);
}

static void test_whiteouts(void **state)
{
    struct fixture *f = *state;
    const struct tent v[] = {
        T_DIR("d/"),
        T_FILE("d/.wh..wh..opq", NULL),
        T_FILE("d/keep", "k"),
        T_FILE(".wh.gone", NULL),
        T_FILE("x/.wh.deep", NULL),
        T_FILE(".wh..wh.plnk", NULL),
        T_FILE(".wh.", NULL),
    };
    struct ff_err err;
    assert_int_equal(unpack_tar(f, F_GZIP, v, 6, NULL, &err), 0);
    struct stat st = stat_of(f->dest, "gone");
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(0, 0));
    st = stat_of(f->dest, "x/deep");
    assert_true(S_ISCHR(st.st_mode));
    assert_false(exists(f->dest, ".wh.gone"));
    assert_false(exists(f->dest, ".wh..wh.plnk"));
    assert_false(exists(f->dest, "d/.wh..wh..opq"));
    char *d = at(f->dest, "d");
    char v1[4];
    assert_int_equal(getxattr(d, "trusted.overlay.opaque", v1, sizeof(v1)), 1);
    assert_int_equal(v1[0], 'y');
    /* The file's own xattrs other than security.capability are dropped. */
    char *keep = at(f->dest, "d/keep");
    assert_int_equal(getxattr(keep, "trusted.overlay.redirect", v1, sizeof(v1)), -1);
    reset(f);
    assert_int_equal(unpack_tar(f, F_NONE, v, 7, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer entry \".wh.\": whiteout of no file"));
    /* Plain extraction keeps them as the files they are. */
    reset(f);
    struct layer_info info;
    assert_int_equal(unpack_blob(f->blob, f->dest, true, NULL, &info, &err), 0);
    assert_true(S_ISREG(stat_of(f->dest, ".wh.gone").st_mode));
    assert_true(S_ISREG(stat_of(f->dest, "d/.wh..wh..opq").st_mode));
    assert_true(S_ISREG(stat_of(f->dest, ".wh.").st_mode));
    assert_int_equal(getxattr(d, "trusted.overlay.opaque", v1, sizeof(v1)), -1);
    free(keep);
    free(d);
}

static void test_entry_kinds(void **state)
{
    struct fixture *f = *state;
    const struct tent v[] = {
        {AE_IFDIR, 0711, "./", NULL, 0, 0, -1},
        {AE_IFREG, 04755, "./bin/su", "setuid", 0, 0, -1},
        {AE_IFREG, 0755, "ping", "cap", 0, 0, -1},
        {AE_IFDIR, 0700, "home/u/", NULL, 1000, 0, -1},
        {AE_IFREG, 0600, "home/u/f", "mine", 1000, 0, -1},
        T_HARDLINK("home/u/su", "bin/su"),
        T_SYMLINK("etc-link", "/etc"),
        {AE_IFCHR, 0666, "dev/null", NULL, 0, 0, -1},
        {AE_IFBLK, 0660, "dev/blk", NULL, 0, 0, -1},
        {AE_IFIFO, 0644, "dev/fifo", NULL, 0, 0, -1},
        T_FILE("twice", "first"),
        T_FILE("twice", "second"),
        T_FILE("dir-then-file", NULL),
        T_DIR("dir-then-file/"),
        {AE_IFREG, 0644, "zeros", NULL, 0, 3000, -1},
    };
    size_t n = sizeof(v) / sizeof(v[0]);
    struct ff_err err;
    if (unpack_tar(f, F_ZSTD, v, n, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    struct stat st = stat_of(f->dest, "bin/su");
    assert_int_equal(st.st_mode & 07777, 04755);
    assert_int_equal(st.st_nlink, 2);
    assert_int_equal(st.st_mtime, 1600000001);
    assert_int_equal(stat_of(f->dest, "home/u/su").st_ino, st.st_ino);
    /* The implicit parent "bin" is 0755 root. */
    assert_int_equal(stat_of(f->dest, "bin").st_mode & 07777, 0755);
    st = stat_of(f->dest, "home/u");
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_mode & 07777, 0700);
    /* Directory mtimes are set after what is inside them was made. */
    assert_int_equal(st.st_mtime, 1600000003);
    assert_int_equal(stat_of(f->dest, ".").st_mode & 07777, 0711);
    assert_int_equal(stat_of(f->dest, ".").st_mtime, 1600000000);
    assert_int_equal(stat_of(f->dest, "home/u/f").st_uid, 1000);
    char target[16];
    char *link = at(f->dest, "etc-link");
    assert_int_equal(readlink(link, target, sizeof(target)), 4);
    assert_memory_equal(target, "/etc", 4);
    st = stat_of(f->dest, "dev/null");
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(1, 5));
    assert_int_equal(st.st_mode & 07777, 0666);
    assert_true(S_ISBLK(stat_of(f->dest, "dev/blk").st_mode));
    assert_true(S_ISFIFO(stat_of(f->dest, "dev/fifo").st_mode));
    assert_int_equal(stat_of(f->dest, "twice").st_size, 6);
    assert_true(S_ISDIR(stat_of(f->dest, "dir-then-file").st_mode));
    assert_int_equal(stat_of(f->dest, "zeros").st_size, 3000);
    char *ping = at(f->dest, "ping");
    unsigned char cap[32];
    assert_int_equal(getxattr(ping, "security.capability", cap, sizeof(cap)),
                     (ssize_t)sizeof(CAP_VALUE));
    assert_memory_equal(cap, CAP_VALUE, sizeof(CAP_VALUE));

    /* A later entry may not replace a directory that has content. */
    reset(f);
    const struct tent v2[] = {T_FILE("d/x", "x"), T_FILE("d", "file")};
    assert_int_equal(unpack_tar(f, F_NONE, v2, 2, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer entry \"d\": replaces a non-empty directory"));
    reset(f);
    const struct tent v3[] = {T_FILE(".", "x")};
    assert_int_equal(unpack_tar(f, F_NONE, v3, 1, NULL, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "the root can only be a directory"));
    free(ping);
    free(link);
}

/* ADD's extraction into a rootfs that has content already. */
static void test_extract_plain(void **state)
{
    struct fixture *f = *state;
    char *old = at(f->dest, "old");
    FILE *fp = fopen(old, "w");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    char *lnk = at(f->dest, "lib");
    assert_int_equal(symlink(f->outside, lnk), 0);
    const struct tent v[] = {T_FILE("old", "replaced"), T_FILE("new/f", "n")};
    make_tar(f->blob, F_GZIP, v, 2);
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(unpack_blob(f->blob, f->dest, true, NULL, &info, &err), 0);
    assert_int_equal(stat_of(f->dest, "old").st_size, 8);
    assert_true(exists(f->dest, "new/f"));
    /* An existing symlink on the way is refused, not followed. */
    const struct tent v2[] = {T_FILE("lib/evil.so", "x")};
    make_tar(f->blob, F_NONE, v2, 1);
    assert_int_equal(unpack_blob(f->blob, f->dest, true, NULL, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "layer entry \"lib/evil.so\""));
    assert_int_equal(count_dir(f->outside), 0);
    /* The same as a lower layer cannot even start: dest is not empty. */
    assert_int_equal(unpack_blob(f->blob, f->dest, false, NULL, &info, &err), FF_EEXIST);
    free(lnk);
    free(old);
}

/* An overlay upper written as a layer and unpacked again gives the same
 * overlay back: whiteouts, opaque directory, owners, modes, links. */
static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    char *up = at(f->root, "up");
    assert_int_equal(mkdir(up, 0755), 0);
    char *p = at(up, "gone");
    assert_int_equal(mknod(p, S_IFCHR, makedev(0, 0)), 0);
    free(p);
    p = at(up, "opq");
    assert_int_equal(mkdir(p, 0750), 0);
    assert_int_equal(chown(p, 1000, 1000), 0);
    assert_int_equal(setxattr(p, "trusted.overlay.opaque", "y", 1, 0), 0);
    free(p);
    p = at(up, "opq/su");
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    assert_int_equal(fputs("data", fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(p, 04711), 0);
    assert_int_equal(setxattr(p, "security.capability", CAP_VALUE, sizeof(CAP_VALUE), 0), 0);
    char *h = at(up, "opq/hard");
    assert_int_equal(link(p, h), 0);
    free(h);
    free(p);
    p = at(up, "opq/sym");
    assert_int_equal(symlink("su", p), 0);
    free(p);
    /* 2.5 MiB: several gzip members. */
    p = at(up, "big");
    fp = fopen(p, "w");
    assert_non_null(fp);
    for (int i = 0; i < 250000; i++)
        assert_true(fprintf(fp, "line %07d\n", i) > 0);
    assert_int_equal(fclose(fp), 0);
    free(p);

    struct layer_write_opts wo;
    memset(&wo, 0, sizeof(wo));
    wo.overlay = true;
    wo.clamp_mtime = true;
    wo.epoch = 1700000000;
    struct layer_info wi, ui;
    struct ff_err err;
    assert_int_equal(layer_write_file(up, f->blob, &wo, &wi, &err), 0);
    struct layer_unpack_opts uo;
    memset(&uo, 0, sizeof(uo));
    uo.diff_id = &wi.diff_id;
    uo.digest = &wi.digest;
    assert_int_equal(unpack_blob(f->blob, f->dest, false, &uo, &ui, &err), 0);
    assert_int_equal(ui.entries, wi.entries);
    assert_int_equal(ui.tar_size, wi.tar_size);

    struct stat st = stat_of(f->dest, "gone");
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(0, 0));
    char *opq = at(f->dest, "opq");
    char v[2];
    assert_int_equal(getxattr(opq, "trusted.overlay.opaque", v, sizeof(v)), 1);
    st = stat_of(f->dest, "opq");
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(st.st_mtime, 1700000000);
    st = stat_of(f->dest, "opq/su");
    assert_int_equal(st.st_mode & 07777, 04711);
    assert_int_equal(st.st_nlink, 2);
    assert_int_equal(stat_of(f->dest, "opq/hard").st_ino, st.st_ino);
    assert_true(S_ISLNK(stat_of(f->dest, "opq/sym").st_mode));
    assert_int_equal(stat_of(f->dest, "big").st_size, 250000 * 13);
    char *su = at(f->dest, "opq/su");
    unsigned char cap[32];
    assert_int_equal(getxattr(su, "security.capability", cap, sizeof(cap)),
                     (ssize_t)sizeof(CAP_VALUE));
    /* And written again, the unpacked tree gives the same layer. */
    char *again = at(f->root, "again");
    struct layer_info wi2;
    assert_int_equal(layer_write_file(f->dest, again, &wo, &wi2, &err), 0);
    assert_true(ff_digest_equal(&wi.digest, &wi2.digest));
    assert_int_equal(unlink(again), 0);
    rm_tree(up);
    free(again);
    free(su);
    free(opq);
    free(up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refuse_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_dotdot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_through_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_hardlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dest_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extract_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
