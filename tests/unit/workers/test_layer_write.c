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
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#define EPOCH 1700000000
#define OLD_MTIME 1600000000
#define LONG_NAME_LEN 150

/* A valid VFS_CAP_REVISION_2 value: effective, permitted = cap_net_raw. */
static const unsigned char CAP_VALUE[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20};

struct fixture {
    char root[64];
    char up[96];
    char out[96];
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
    ff_strlcpy(f->root, "/tmp/ff-test-layer-write-XXXXXX", sizeof(f->root));
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    (void)snprintf(f->up, sizeof(f->up), "%s/up", f->root);
    (void)snprintf(f->out, sizeof(f->out), "%s/out", f->root);
    *state = f;
    return mkdir(f->up, 0755) == 0 && mkdir(f->out, 0755) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rm_tree(f->root);
    free(f);
    return 0;
}

static char *join(const char *a, const char *b)
{
    char *p = ff_asprintf("%s/%s", a, b);
    assert_non_null(p);
    return p;
}

static void put_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char *p = join(dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
    free(p);
}

static void put_dir(const char *dir, const char *name, mode_t mode)
{
    char *p = join(dir, name);
    assert_int_equal(mkdir(p, mode), 0);
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

static void put_owner(const char *dir, const char *name, uid_t uid, gid_t gid)
{
    char *p = join(dir, name);
    assert_int_equal(lchown(p, uid, gid), 0);
    free(p);
}

static void put_mtime(const char *dir, const char *name, time_t t)
{
    char *p = join(dir, name);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
    free(p);
}

static void put_node(const char *dir, const char *name, mode_t mode, dev_t dev)
{
    char *p = join(dir, name);
    assert_int_equal(mknod(p, mode, dev), 0);
    assert_int_equal(chmod(p, mode & 07777), 0);
    free(p);
}

static void put_xattr(const char *dir, const char *name, const char *key, const void *v,
                      size_t n)
{
    char *p = join(dir, name);
    assert_int_equal(lsetxattr(p, key, v, n, 0), 0);
    free(p);
}

static void put_socket(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(p) < sizeof(sa.sun_path));
    ff_strlcpy(sa.sun_path, p, sizeof(sa.sun_path));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    (void)close(s);
    free(p);
}

static char long_name[LONG_NAME_LEN + 1];
static char long_dir[130];

/* The overlay upper directory every test looks at. Items are made in
 * order, or in reverse order when reverse is set (so that inode numbers,
 * readdir order and ctimes differ while the content does not). */
static void make_tree(const char *up, bool reverse)
{
    memset(long_name, 'L', LONG_NAME_LEN);
    long_name[LONG_NAME_LEN] = '\0';
    memset(long_dir, 'n', 120);
    long_dir[120] = '\0';
    char *ld = join("longdir", long_dir);
    char *ldf = join(ld, "file");
    for (int step = 0; step < 2; step++) {
        bool files = (step == 0) != reverse;
        if (files) {
            put_file(up, "a.txt", "hello\n", 04755);
            put_file(up, long_name, "long", 0644);
            put_file(up, "h\xc3\xa9llo", "utf-8", 0644);
            put_file(up, "cap", "ping", 0755);
            put_xattr(up, "cap", "security.capability", CAP_VALUE, sizeof(CAP_VALUE));
            put_xattr(up, "cap", "user.dropped", "x", 1);
            put_node(up, "gone", S_IFCHR, makedev(0, 0));
            put_node(up, "null", S_IFCHR | 0666, makedev(1, 3));
            put_node(up, "blk", S_IFBLK | 0660, makedev(7, 0));
            put_node(up, "fifo", S_IFIFO | 0644, 0);
            put_socket(up, "sock");
        } else {
            put_dir(up, "opq", 0755);
            put_xattr(up, "opq", "trusted.overlay.opaque", "y", 1);
            put_file(up, "opq/keep", "kept", 0644);
            put_dir(up, "longdir", 0755);
            put_dir(up, ld, 0755);
            put_file(up, ldf, "deep", 0644);
            put_dir(up, "dir", 0750);
        }
    }
    put_file(up, "dir/file", "x", 0640);
    put_owner(up, "dir/file", 1000, 1000);
    put_owner(up, "dir", 1000, 1000);
    char *a = join(up, "a.txt"), *h = join(up, "dir/hard"), *l = join(up, "dir/link");
    assert_int_equal(link(a, h), 0);
    assert_int_equal(symlink("../a.txt", l), 0);
    free(a);
    free(h);
    free(l);
    put_mtime(up, "a.txt", OLD_MTIME);
    /* Different atimes must not matter: give one tree a far one. */
    if (reverse) {
        char *p = join(up, "opq/keep");
        struct timespec ts[2] = {{12345, 0}, {0, UTIME_OMIT}};
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
        free(p);
    }
    free(ldf);
    free(ld);
}

struct want {
    const char *path;
    mode_t type;
    mode_t perm;
    int uid;
    int64_t mtime;
    int64_t size;
    const char *link; /* symlink target or hard link */
};

static void check_entry(struct archive_entry *ae, const struct want *w)
{
    const char *path = archive_entry_pathname(ae);
    assert_non_null(path);
    assert_string_equal(path, w->path);
    const char *hl = archive_entry_hardlink(ae);
    if (w->type == 0) {
        assert_non_null(hl);
        assert_string_equal(hl, w->link);
    } else {
        assert_null(hl);
        assert_int_equal(archive_entry_filetype(ae), w->type);
    }
    assert_int_equal(archive_entry_perm(ae), w->perm);
    assert_int_equal(archive_entry_uid(ae), w->uid);
    assert_int_equal(archive_entry_gid(ae), w->uid);
    assert_int_equal(archive_entry_mtime(ae), w->mtime);
    assert_int_equal(archive_entry_mtime_nsec(ae), 0);
    assert_int_equal(archive_entry_size(ae), w->size);
    /* Content only: no atime, ctime, user or group names. */
    assert_false(archive_entry_atime_is_set(ae));
    assert_false(archive_entry_ctime_is_set(ae));
    const char *uname = archive_entry_uname(ae), *gname = archive_entry_gname(ae);
    assert_true(uname == NULL || uname[0] == '\0');
    assert_true(gname == NULL || gname[0] == '\0');
    if (w->type == AE_IFLNK)
        assert_string_equal(archive_entry_symlink(ae), w->link);
}

static void check_xattrs(struct archive_entry *ae, bool cap)
{
    int n = archive_entry_xattr_reset(ae);
    assert_int_equal(n > 0, cap);
    for (int i = 0; i < n; i++) {
        const char *name;
        const void *value;
        size_t size;
        assert_int_equal(archive_entry_xattr_next(ae, &name, &value, &size), ARCHIVE_OK);
        assert_string_equal(name, "security.capability");
        assert_int_equal(size, sizeof(CAP_VALUE));
        assert_memory_equal(value, CAP_VALUE, sizeof(CAP_VALUE));
    }
}

static int write_layer(const char *up, const char *out, enum layer_compression c, bool overlay,
                       unsigned threads, struct layer_info *info, struct ff_err *err)
{
    struct layer_write_opts o;
    memset(&o, 0, sizeof(o));
    o.compression = c;
    o.threads = threads;
    o.clamp_mtime = true;
    o.epoch = EPOCH;
    o.overlay = overlay;
    return layer_write_file(up, out, &o, info, err);
}

static void test_write_entries_and_order(void **state)
{
    struct fixture *f = *state;
    make_tree(f->up, false);
    char *out = join(f->out, "l.tar.gz");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, true, 0, &info, &err), 0);
    char ldir[160], ldir_file[170];
    (void)snprintf(ldir, sizeof(ldir), "longdir/%s/", long_dir);
    (void)snprintf(ldir_file, sizeof(ldir_file), "longdir/%s/file", long_dir);
    const struct want want[] = {
        {".wh.gone", AE_IFREG, 0, 0, EPOCH, 0, NULL},
        {long_name, AE_IFREG, 0644, 0, EPOCH, 4, NULL},
        {"a.txt", AE_IFREG, 04755, 0, OLD_MTIME, 6, NULL},
        {"blk", AE_IFBLK, 0660, 0, EPOCH, 0, NULL},
        {"cap", AE_IFREG, 0755, 0, EPOCH, 4, NULL},
        {"dir/", AE_IFDIR, 0750, 1000, EPOCH, 0, NULL},
        {"dir/file", AE_IFREG, 0640, 1000, EPOCH, 1, NULL},
        {"dir/hard", 0, 04755, 0, OLD_MTIME, 0, "a.txt"},
        {"dir/link", AE_IFLNK, 0777, 0, EPOCH, 0, "../a.txt"},
        {"fifo", AE_IFIFO, 0644, 0, EPOCH, 0, NULL},
        {"h\xc3\xa9llo", AE_IFREG, 0644, 0, EPOCH, 5, NULL},
        {"longdir/", AE_IFDIR, 0755, 0, EPOCH, 0, NULL},
        {ldir, AE_IFDIR, 0755, 0, EPOCH, 0, NULL},
        {ldir_file, AE_IFREG, 0644, 0, EPOCH, 4, NULL},
        {"null", AE_IFCHR, 0666, 0, EPOCH, 0, NULL},
        {"opq/", AE_IFDIR, 0755, 0, EPOCH, 0, NULL},
        {"opq/.wh..wh..opq", AE_IFREG, 0, 0, EPOCH, 0, NULL},
        {"opq/keep", AE_IFREG, 0644, 0, EPOCH, 4, NULL},
    };
    size_t nwant = sizeof(want) / sizeof(want[0]);
    assert_int_equal(info.entries, nwant);
    assert_false(info.empty);
    assert_int_equal(info.compression, LAYER_GZIP);

    /* Read as UTF-8, as the writer wrote: in the C locale libarchive
     * cannot give the non-ASCII name. */
    locale_t saved;
    assert_int_equal(layer_locale_enter(&saved, &err), 0);
    struct archive *a = archive_read_new();
    assert_non_null(a);
    assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
    assert_int_equal(archive_read_support_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_read_open_filename(a, out, 65536), ARCHIVE_OK);
    struct archive_entry *ae;
    for (size_t i = 0; i < nwant; i++) {
        assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_OK);
        check_entry(ae, &want[i]);
        check_xattrs(ae, strcmp(want[i].path, "cap") == 0);
        if (want[i].type == AE_IFBLK || want[i].type == AE_IFCHR) {
            assert_int_equal(archive_entry_rdevmajor(ae), want[i].type == AE_IFBLK ? 7 : 1);
            assert_int_equal(archive_entry_rdevminor(ae), want[i].type == AE_IFBLK ? 0 : 3);
        }
        if (strcmp(want[i].path, "a.txt") == 0) {
            char buf[16];
            assert_int_equal(archive_read_data(a, buf, sizeof(buf)), 6);
            assert_memory_equal(buf, "hello\n", 6);
        }
    }
    assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_EOF);
    assert_int_equal(archive_read_free(a), ARCHIVE_OK);
    layer_locale_leave(saved);
    free(out);
}

/* Without overlay, a 0/0 char device is a device and opaque is not
 * looked at. */
static void test_write_plain_dir(void **state)
{
    struct fixture *f = *state;
    put_node(f->up, "gone", S_IFCHR, makedev(0, 0));
    put_dir(f->up, "opq", 0755);
    put_xattr(f->up, "opq", "trusted.overlay.opaque", "y", 1);
    char *out = join(f->out, "l.tar");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, out, LAYER_UNCOMPRESSED, false, 0, &info, &err), 0);
    assert_int_equal(info.entries, 2);
    struct archive *a = archive_read_new();
    assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
    assert_int_equal(archive_read_open_filename(a, out, 65536), ARCHIVE_OK);
    struct archive_entry *ae;
    assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_OK);
    assert_string_equal(archive_entry_pathname(ae), "gone");
    assert_int_equal(archive_entry_filetype(ae), AE_IFCHR);
    assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_OK);
    assert_string_equal(archive_entry_pathname(ae), "opq/");
    assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_EOF);
    assert_int_equal(archive_read_free(a), ARCHIVE_OK);
    /* Uncompressed: the blob is the tar. */
    assert_true(ff_digest_equal(&info.digest, &info.diff_id));
    assert_int_equal(info.size, info.tar_size);
    free(out);
}

/* Runs argv with stdout to out_fd (or /dev/null when -1) and stderr to
 * /dev/null; returns the exit status. */
static int run(char *const argv[], int out_fd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        int fd = out_fd >= 0 ? out_fd : null;
        if (null < 0 || dup2(fd, 1) < 0 || dup2(null, 2) < 0)
            _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* sha256 of what a decompressor prints for path. */
static void digest_of_output(const char *tool, const char *path, struct ff_digest *d)
{
    char tmpl[] = "/tmp/ff-test-layer-dec-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    char *argv[] = {(char *)tool, (char *)"-dc", (char *)path, NULL};
    assert_int_equal(run(argv, fd), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct ff_err err;
    assert_int_equal(ff_digest_fd(fd, d, &err), 0);
    (void)close(fd);
    (void)unlink(tmpl);
}

static void check_blob(const char *path, const struct layer_info *info, const char *tool)
{
    struct ff_digest d;
    struct ff_err err;
    assert_int_equal(ff_digest_file(path, &d, &err), 0);
    assert_true(ff_digest_equal(&d, &info->digest));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, info->size);
    char *argv[] = {(char *)tool, (char *)"-t", (char *)path, NULL};
    assert_int_equal(run(argv, -1), 0);
    digest_of_output(tool, path, &d);
    assert_true(ff_digest_equal(&d, &info->diff_id));
}

static void test_write_digests_match_tools(void **state)
{
    struct fixture *f = *state;
    make_tree(f->up, false);
    char *gz = join(f->out, "l.tar.gz"), *zst = join(f->out, "l.tar.zst");
    struct layer_info ig, iz;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, gz, LAYER_GZIP, true, 0, &ig, &err), 0);
    assert_int_equal(write_layer(f->up, zst, LAYER_ZSTD, true, 0, &iz, &err), 0);
    check_blob(gz, &ig, "gzip");
    check_blob(zst, &iz, "zstd");
    /* The same tar under both compressions. */
    assert_true(ff_digest_equal(&ig.diff_id, &iz.diff_id));
    assert_int_equal(ig.tar_size, iz.tar_size);
    assert_false(ff_digest_equal(&ig.digest, &iz.digest));
    assert_string_equal(layer_media_type(iz.compression),
                        "application/vnd.oci.image.layer.v1.tar+zstd");
    assert_string_equal(layer_media_type(ig.compression),
                        "application/vnd.oci.image.layer.v1.tar+gzip");
    free(gz);
    free(zst);
}

static void test_write_reproducible(void **state)
{
    struct fixture *f = *state;
    char *up2 = join(f->root, "up2");
    assert_int_equal(mkdir(up2, 0755), 0);
    make_tree(f->up, false);
    make_tree(up2, true);
    char *o1 = join(f->out, "1"), *o2 = join(f->out, "2"), *o3 = join(f->out, "3");
    struct layer_info i1, i2, i3;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, o1, LAYER_GZIP, true, 1, &i1, &err), 0);
    /* Another process locale must not change how names are written. */
    assert_non_null(setlocale(LC_ALL, "C.UTF-8"));
    assert_int_equal(write_layer(up2, o2, LAYER_GZIP, true, 3, &i2, &err), 0);
    assert_non_null(setlocale(LC_ALL, "C"));
    assert_int_equal(write_layer(f->up, o3, LAYER_GZIP, true, 2, &i3, &err), 0);
    assert_true(ff_digest_equal(&i1.digest, &i2.digest));
    assert_true(ff_digest_equal(&i1.digest, &i3.digest));
    assert_true(ff_digest_equal(&i1.diff_id, &i2.diff_id));
    assert_int_equal(i1.size, i2.size);
    struct ff_digest d1, d2;
    assert_int_equal(ff_digest_file(o1, &d1, &err), 0);
    assert_int_equal(ff_digest_file(o2, &d2, &err), 0);
    assert_true(ff_digest_equal(&d1, &d2));
    /* And a content change does change it. */
    put_file(up2, "a.txt", "hellO\n", 04755);
    put_mtime(up2, "a.txt", OLD_MTIME);
    assert_int_equal(write_layer(up2, o2, LAYER_GZIP, true, 2, &i2, &err), 0);
    assert_false(ff_digest_equal(&i1.diff_id, &i2.diff_id));
    free(o1);
    free(o2);
    free(o3);
    rm_tree(up2);
    free(up2);
}

/* The non-ASCII name goes in a pax "path" record as UTF-8, with no
 * "hdrcharset=BINARY" that a C locale would cause. */
static void test_write_utf8_names(void **state)
{
    struct fixture *f = *state;
    put_file(f->up, "h\xc3\xa9llo", "x", 0644);
    char *out = join(f->out, "l.tar");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, out, LAYER_UNCOMPRESSED, true, 0, &info, &err), 0);
    FILE *fp = fopen(out, "rb");
    assert_non_null(fp);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), fp);
    (void)fclose(fp);
    assert_true(n >= 1536);
    assert_non_null(memmem(buf, n, "path=h\xc3\xa9llo\n", 12));
    assert_null(memmem(buf, n, "hdrcharset", 10));
    free(out);
}

/* Counts the gzip members of a file by inflating them one by one. */
static int gzip_members(const char *path, size_t *total_out)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    static unsigned char in[1 << 16], out[1 << 16];
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, 16 + 15), Z_OK);
    int members = 0;
    *total_out = 0;
    size_t n = fread(in, 1, sizeof(in), fp);
    zs.next_in = in;
    zs.avail_in = (uInt)n;
    for (;;) {
        if (zs.avail_in == 0) {
            n = fread(in, 1, sizeof(in), fp);
            if (n == 0)
                break;
            zs.next_in = in;
            zs.avail_in = (uInt)n;
        }
        zs.next_out = out;
        zs.avail_out = sizeof(out);
        int r = inflate(&zs, Z_NO_FLUSH);
        *total_out += sizeof(out) - zs.avail_out;
        if (r == Z_STREAM_END) {
            members++;
            assert_int_equal(inflateReset(&zs), Z_OK);
        } else {
            assert_int_equal(r, Z_OK);
        }
    }
    (void)inflateEnd(&zs);
    (void)fclose(fp);
    return members;
}

static void put_big_file(const char *dir, const char *name, size_t size)
{
    char *p = join(dir, name);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; i++) {
        /* Half compressible: runs of text, runs of noise. */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        assert_true(fputc((i / 4096) % 2 ? (int)(x & 0xff) : "layer "[i % 6], fp) != EOF);
    }
    assert_int_equal(fclose(fp), 0);
    free(p);
}

static void test_write_multi_member_gzip(void **state)
{
    struct fixture *f = *state;
    put_big_file(f->up, "big", 3 * LAYER_GZIP_CHUNK + 12345);
    char *o1 = join(f->out, "1"), *o2 = join(f->out, "2");
    struct layer_info i1, i2;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, o1, LAYER_GZIP, true, 1, &i1, &err), 0);
    assert_int_equal(write_layer(f->up, o2, LAYER_GZIP, true, 4, &i2, &err), 0);
    assert_true(ff_digest_equal(&i1.digest, &i2.digest));
    size_t total = 0;
    /* One member per started MiB of tar. */
    int want = (int)((i1.tar_size + LAYER_GZIP_CHUNK - 1) / LAYER_GZIP_CHUNK);
    assert_int_equal(want, 4);
    assert_int_equal(gzip_members(o1, &total), want);
    assert_int_equal(total, i1.tar_size);
    check_blob(o1, &i1, "gzip");
    assert_true(i1.size < i1.tar_size);
    free(o1);
    free(o2);
}

static void test_write_empty_dir(void **state)
{
    struct fixture *f = *state;
    char *out = join(f->out, "e.tar.gz");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, true, 0, &info, &err), 0);
    assert_true(info.empty);
    assert_int_equal(info.entries, 0);
    /* Just the two zero blocks that end a tar. */
    assert_int_equal(info.tar_size, 1024);
    check_blob(out, &info, "gzip");
    /* A socket alone is still empty: tar cannot hold it. */
    put_socket(f->up, "sock");
    assert_int_equal(write_layer(f->up, out, LAYER_ZSTD, true, 0, &info, &err), 0);
    assert_true(info.empty);
    check_blob(out, &info, "zstd");
    free(out);
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

static void test_write_errors(void **state)
{
    struct fixture *f = *state;
    char *out = join(f->out, "l");
    char *missing = join(f->root, "missing");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(missing, out, LAYER_GZIP, true, 0, &info, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "missing"));
    /* Nothing left behind: neither the blob nor its temporary file. */
    assert_int_equal(count_dir(f->out), 0);

    struct layer_write_opts o;
    memset(&o, 0, sizeof(o));
    o.level = 13;
    assert_int_equal(layer_write_file(f->up, out, &o, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "gzip level 13"));
    o.compression = LAYER_ZSTD;
    o.level = 99;
    assert_int_equal(layer_write_file(f->up, out, &o, &info, &err), FF_EINVAL);
    o.level = 0;
    o.threads = LAYER_THREADS_MAX + 1;
    assert_int_equal(layer_write_file(f->up, out, &o, &info, &err), FF_EINVAL);
    o.threads = 0;
    o.compression = (enum layer_compression)7;
    assert_int_equal(layer_write_file(f->up, out, &o, &info, &err), FF_EINVAL);
    assert_int_equal(count_dir(f->out), 0);

    /* Overlay uppers this writer cannot express. */
    put_dir(f->up, "moved", 0755);
    put_xattr(f->up, "moved", "trusted.overlay.redirect", "/old", 4);
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, true, 0, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"moved\""));
    assert_non_null(strstr(err.msg, "redirect_dir=off"));
    assert_int_equal(count_dir(f->out), 0);
    /* A plain directory carries no overlay meaning. */
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, false, 0, &info, &err), 0);
    char *moved = join(f->up, "moved");
    assert_int_equal(rmdir(moved), 0);
    put_file(f->up, "meta", "", 0644);
    put_xattr(f->up, "meta", "trusted.overlay.metacopy", "", 0);
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, true, 0, &info, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "metacopy=off"));
    free(moved);
    free(missing);
    free(out);
}

static void test_write_path_too_long(void **state)
{
    struct fixture *f = *state;
    char comp[256];
    memset(comp, 'd', 255);
    comp[255] = '\0';
    int fd = open(f->up, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    /* 17 components of 255 bytes: past LAYER_PATH_MAX. */
    for (int i = 0; i < 17; i++) {
        assert_int_equal(mkdirat(fd, comp, 0755), 0);
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY);
        assert_true(next >= 0);
        (void)close(fd);
        fd = next;
    }
    (void)close(fd);
    char *out = join(f->out, "l");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, true, 0, &info, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "longer than 4096"));
    assert_int_equal(count_dir(f->out), 0);
    free(out);
}

static void test_write_too_deep(void **state)
{
    struct fixture *f = *state;
    int fd = open(f->up, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    for (int i = 0; i <= LAYER_WRITE_DEPTH_MAX; i++) {
        assert_int_equal(mkdirat(fd, "a", 0755), 0);
        int next = openat(fd, "a", O_RDONLY | O_DIRECTORY);
        assert_true(next >= 0);
        (void)close(fd);
        fd = next;
    }
    (void)close(fd);
    char *out = join(f->out, "l");
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(write_layer(f->up, out, LAYER_GZIP, true, 0, &info, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "is nested deeper than 256"));
    assert_int_equal(count_dir(f->out), 0);
    free(out);
}

/* Without clamping, times are kept (whole seconds). */
static void test_write_no_clamp(void **state)
{
    struct fixture *f = *state;
    put_file(f->up, "new", "n", 0644);
    char *p = join(f->up, "new");
    struct timespec ts[2] = {{2000000000, 999}, {2000000000, 999}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    int fd = open(f->out, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    int out = openat(fd, "l.tar", O_WRONLY | O_CREAT, 0644);
    assert_true(out >= 0);
    struct layer_write_opts o;
    memset(&o, 0, sizeof(o));
    o.compression = LAYER_UNCOMPRESSED;
    struct layer_info info;
    struct ff_err err;
    assert_int_equal(layer_write_fd(f->up, out, &o, &info, &err), 0);
    (void)close(out);
    struct archive *a = archive_read_new();
    assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
    char *path = join(f->out, "l.tar");
    assert_int_equal(archive_read_open_filename(a, path, 65536), ARCHIVE_OK);
    struct archive_entry *ae;
    assert_int_equal(archive_read_next_header(a, &ae), ARCHIVE_OK);
    assert_int_equal(archive_entry_mtime(ae), 2000000000);
    assert_int_equal(archive_entry_mtime_nsec(ae), 0);
    assert_int_equal(archive_read_free(a), ARCHIVE_OK);
    (void)close(fd);
    free(path);
    free(p);
}

/* compress_out alone: the output depends on the bytes, not on how they
 * were fed nor on the thread count; an empty input is a valid gzip. */
static void test_compress_feeding(void **state)
{
    struct fixture *f = *state;
    size_t n = 2 * LAYER_GZIP_CHUNK + 777;
    unsigned char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    struct ff_digest first;
    for (unsigned t = 1; t <= 3; t++) {
        char name[16];
        (void)snprintf(name, sizeof(name), "c%u", t);
        char *p = join(f->out, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        struct compress_out *o = NULL;
        struct ff_err err;
        assert_int_equal(compress_out_new(&o, fd, LAYER_GZIP, 0, t, &err), 0);
        /* Pieces that straddle chunk boundaries, differently each time. */
        size_t step = t == 1 ? n : 1000 * t + 1;
        for (size_t off = 0; off < n; off += step)
            assert_int_equal(compress_out_write(o, data + off, off + step > n ? n - off : step,
                                                &err), 0);
        struct layer_info info;
        assert_int_equal(compress_out_finish(o, &info, &err), 0);
        compress_out_free(o);
        (void)close(fd);
        assert_int_equal(info.tar_size, n);
        if (t == 1)
            first = info.digest;
        assert_true(ff_digest_equal(&first, &info.digest));
        check_blob(p, &info, "gzip");
        free(p);
    }
    char *p = join(f->out, "empty");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct compress_out *o = NULL;
    struct ff_err err;
    struct layer_info info;
    assert_int_equal(compress_out_new(&o, fd, LAYER_GZIP, 9, 2, &err), 0);
    assert_int_equal(compress_out_finish(o, &info, &err), 0);
    compress_out_free(o);
    (void)close(fd);
    check_blob(p, &info, "gzip");
    assert_int_equal(info.tar_size, 0);
    /* A write error is reported, with the reason. */
    int ro = open(p, O_RDONLY);
    assert_int_equal(compress_out_new(&o, ro, LAYER_ZSTD, 0, 1, &err), 0);
    int rc = compress_out_write(o, data, n, &err);
    if (rc == 0)
        rc = compress_out_finish(o, &info, &err);
    assert_int_equal(rc, FF_EIO);
    assert_non_null(strstr(err.msg, "Bad file descriptor"));
    compress_out_free(o);
    (void)close(ro);
    free(p);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_entries_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_plain_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_digests_match_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_reproducible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_utf8_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_multi_member_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_empty_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_path_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_too_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_no_clamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compress_feeding, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
