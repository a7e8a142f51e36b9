/* Layer blobs applied to a directory, treating every byte as hostile.
 *
 * The blob is decompressed by compress_in (which caps the uncompressed
 * size and hashes both sides) and parsed by libarchive's tar reader; the
 * file system is written here, never by archive_write_disk. Each entry's
 * path is cleaned ("." and empty components dropped; absolute paths and
 * ".." refused), its parent directory is opened with openat2(RESOLVE_BENEATH
 * | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) from the
 * destination, and the last component is created with *at calls that do
 * not follow it (O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, mknodat, linkat
 * without AT_SYMLINK_FOLLOW). So nothing is ever written through a
 * symlink, whoever made it, nor outside the destination. */
#include "worker.h"

#include "ff_str.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char OPAQUE_NAME[] = ".wh..wh..opq";
static const char WHITEOUT_PREFIX[] = ".wh.";
/* aufs metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless here, skipped
 * as containerd skips them. */
static const char WHITEOUT_META_PREFIX[] = ".wh..wh.";
static const char CAP_XATTR[] = "security.capability";
static const char OPAQUE_XATTR[] = "trusted.overlay.opaque";

/* A directory whose mtime is set once everything inside it exists. */
struct dirtime {
    char *path; /* "" for the destination itself */
    struct timespec mtime;
};

struct lu {
    bool overlay;
    uint64_t max_bytes;
    uint64_t max_entries;
    size_t max_path;
    int destfd;
    struct archive *ar;
    struct compress_in *in;
    int read_rc; /* why the read callback failed, when it did */
    struct ff_err read_err;
    char *path;     /* the current entry, cleaned */
    char *link;     /* its hard link target, cleaned */
    char *entry;    /* its name as the tar gives it, for messages */
    char *ppath;    /* the cached parent directory ... */
    size_t plen;
    int pfd;        /* ... and its descriptor, or -1 */
    struct dirtime *dirs;
    size_t ndirs;
    size_t dirs_cap;
    uint64_t entries;
};

/* Metadata of an entry, checked once. */
struct meta {
    uid_t uid;
    gid_t gid;
    mode_t perm;
    struct timespec times[2];
};

static int refuse(struct lu *u, int code, const char *why, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(u->entry, strlen(u->entry), q);
    return ff_err_set(err, code, "layer entry \"%s\": %s", q, why);
}

static int refuse_errno(struct lu *u, const char *what, struct ff_err *err)
{
    int e = errno;
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(u->entry, strlen(u->entry), q);
    switch (e) {
    case ELOOP:
        return ff_err_set(err, FF_EINVAL, "layer entry \"%s\": %s: the path goes through a "
                          "symlink", q, what);
    case EXDEV:
        return ff_err_set(err, FF_EINVAL, "layer entry \"%s\": %s: the path leaves the "
                          "destination", q, what);
    case ENOTDIR:
        return ff_err_set(err, FF_EINVAL, "layer entry \"%s\": %s: a parent is not a "
                          "directory", q, what);
    case ENOSYS:
        return ff_err_set(err, FF_EIO, "layer entry \"%s\": %s: openat2 is missing (Linux "
                          "5.6 or later is needed)", q, what);
    default:
        return ff_err_set(err, e == ENAMETOOLONG ? FF_ETOOBIG : FF_EIO,
                          "layer entry \"%s\": %s: %s", q, what, strerror(e));
    }
}

/* openat2 confined to dirfd: no "..", no absolute path, no symlink, no
 * mount crossing, anywhere along path. */
static int open_beneath(int dirfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                  RESOLVE_NO_XDEV;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static int open_dir_beneath(int dirfd, const char *path)
{
    return open_beneath(dirfd, path, O_RDONLY | O_DIRECTORY);
}

/* Writes name as "a/b/c" into out (max_path + 1 bytes). */
static int clean_path(struct lu *u, const char *name, char *out, size_t *outlen,
                      const char *what, struct ff_err *err)
{
    char why[128];
    size_t n = strlen(name);
    if (n > u->max_path) {
        (void)snprintf(why, sizeof(why), "%s is longer than %zu bytes", what, u->max_path);
        return refuse(u, FF_ETOOBIG, why, err);
    }
    if (name[0] == '/') {
        (void)snprintf(why, sizeof(why), "%s is absolute", what);
        return refuse(u, FF_EINVAL, why, err);
    }
    size_t o = 0;
    const char *p = name;
    while (*p != '\0') {
        const char *s = p;
        while (*p != '\0' && *p != '/')
            p++;
        size_t cl = (size_t)(p - s);
        if (cl == 2 && s[0] == '.' && s[1] == '.') {
            (void)snprintf(why, sizeof(why), "%s has a \"..\" component", what);
            return refuse(u, FF_EINVAL, why, err);
        }
        if (cl > 0 && !(cl == 1 && s[0] == '.')) {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, s, cl);
            o += cl;
        }
        while (*p == '/')
            p++;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

static void forget_parent(struct lu *u)
{
    if (u->pfd >= 0)
        (void)close(u->pfd);
    u->pfd = -1;
}

/* Opens, one component at a time, the directory u->ppath, creating the
 * missing ones 0755 root:root as containerd does. */
static int make_parents(struct lu *u, struct ff_err *err)
{
    int cur = u->destfd;
    char *p = u->ppath;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash != NULL)
            *slash = '\0';
        int fd = open_dir_beneath(cur, p);
        if (fd < 0 && errno == ENOENT) {
            if (mkdirat(cur, p, 0755) != 0 && errno != EEXIST)
                fd = -1;
            else
                fd = open_dir_beneath(cur, p);
            if (fd >= 0 && fchmod(fd, 0755) != 0) {
                (void)close(fd);
                fd = -1;
            }
        }
        int e = errno;
        if (slash != NULL)
            *slash = '/';
        if (cur != u->destfd)
            (void)close(cur);
        if (fd < 0) {
            errno = e;
            return refuse_errno(u, "creating its parent directories", err);
        }
        if (slash == NULL) {
            u->pfd = fd;
            return 0;
        }
        cur = fd;
        p = slash + 1;
    }
}

/* The directory holding the entry (the first plen bytes of u->path) as a
 * descriptor that the caller borrows. Consecutive entries usually share a
 * parent, so the last one is kept open: entries that share it can only
 * create or replace its children, never it or what is above it. */
static int get_parent(struct lu *u, size_t plen, int *fd, struct ff_err *err)
{
    if (plen == 0) {
        *fd = u->destfd;
        return 0;
    }
    if (u->pfd >= 0 && u->plen == plen && memcmp(u->ppath, u->path, plen) == 0) {
        *fd = u->pfd;
        return 0;
    }
    forget_parent(u);
    memcpy(u->ppath, u->path, plen);
    u->ppath[plen] = '\0';
    u->plen = plen;
    u->pfd = open_dir_beneath(u->destfd, u->ppath);
    if (u->pfd < 0 && errno == ENOENT) {
        int rc = make_parents(u, err);
        if (rc != 0)
            return rc;
    }
    if (u->pfd < 0)
        return refuse_errno(u, "opening its parent directory", err);
    *fd = u->pfd;
    return 0;
}

/* Clears the way for base in dirfd: a later entry replaces an earlier one
 * of the same name. *keep is set when both are directories. */
static int make_room(struct lu *u, int dirfd, const char *base, bool is_dir, bool *keep,
                     struct ff_err *err)
{
    struct stat st;
    *keep = false;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0;
        return refuse_errno(u, "stat", err);
    }
    if (S_ISDIR(st.st_mode) && is_dir) {
        *keep = true;
        return 0;
    }
    if (unlinkat(dirfd, base, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0)
        return 0;
    if (errno == ENOTEMPTY || errno == EEXIST)
        return refuse(u, FF_EINVAL, "replaces a non-empty directory", err);
    return refuse_errno(u, "removing what it replaces", err);
}

static int get_meta(struct lu *u, struct archive_entry *ae, struct meta *m,
                    struct ff_err *err)
{
    la_int64_t uid = archive_entry_uid(ae);
    la_int64_t gid = archive_entry_gid(ae);
    /* (uid_t)-1 means "unchanged" to chown: not a real owner. */
    if (uid < 0 || uid >= (la_int64_t)UINT32_MAX || gid < 0 || gid >= (la_int64_t)UINT32_MAX)
        return refuse(u, FF_EINVAL, "owner out of range", err);
    long nsec = archive_entry_mtime_nsec(ae);
    if (nsec < 0 || nsec > 999999999)
        return refuse(u, FF_EINVAL, "mtime nanoseconds out of range", err);
    m->uid = (uid_t)uid;
    m->gid = (gid_t)gid;
    m->perm = archive_entry_perm(ae) & 07777;
    m->times[0].tv_sec = archive_entry_mtime(ae);
    m->times[0].tv_nsec = nsec;
    m->times[1] = m->times[0];
    return 0;
}

/* Owner then mode (chown clears setuid bits), on an open fd. */
static int set_owner_mode(struct lu *u, int fd, const struct meta *m, struct ff_err *err)
{
    if (fchown(fd, m->uid, m->gid) != 0)
        return refuse_errno(u, "chown", err);
    if (fchmod(fd, m->perm) != 0)
        return refuse_errno(u, "chmod", err);
    return 0;
}

static int set_caps(struct lu *u, int fd, struct archive_entry *ae, struct ff_err *err)
{
    int n = archive_entry_xattr_reset(ae);
    for (int i = 0; i < n; i++) {
        const char *name;
        const void *value;
        size_t size;
        if (archive_entry_xattr_next(ae, &name, &value, &size) != ARCHIVE_OK)
            break;
        if (strcmp(name, CAP_XATTR) == 0 && fsetxattr(fd, name, value, size, 0) != 0)
            return refuse_errno(u, "setting security.capability", err);
    }
    return 0;
}

static int read_data(struct lu *u, int fd, int64_t size, struct ff_err *err)
{
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(u->ar, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r < ARCHIVE_WARN) {
            if (u->read_rc != 0)
                return ff_err_set(err, u->read_rc, "%s", u->read_err.msg);
            return refuse(u, FF_EINVAL, archive_error_string(u->ar), err);
        }
        if (off < 0 || (uint64_t)off > (uint64_t)size || len > (uint64_t)(size - off))
            return refuse(u, FF_EINVAL, "data beyond the file's size", err);
        const unsigned char *p = buf;
        while (len > 0) {
            ssize_t w = pwrite(fd, p, len, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return refuse_errno(u, "write", err);
            p += w;
            off += w;
            len -= (size_t)w;
        }
    }
}

static int do_file(struct lu *u, struct archive_entry *ae, int dirfd, const char *base,
                   const struct meta *m, struct ff_err *err)
{
    la_int64_t size = archive_entry_size(ae);
    if (size < 0 || (uint64_t)size > u->max_bytes) {
        char why[96];
        (void)snprintf(why, sizeof(why), "file size %lld over the limit of %llu bytes",
                       (long long)size, (unsigned long long)u->max_bytes);
        return refuse(u, FF_ETOOBIG, why, err);
    }
    bool keep;
    int rc = make_room(u, dirfd, base, false, &keep, err);
    if (rc != 0)
        return rc;
    int fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return refuse_errno(u, "create", err);
    rc = read_data(u, fd, size, err);
    /* Trailing holes of a sparse file. */
    if (rc == 0 && ftruncate(fd, size) != 0)
        rc = refuse_errno(u, "truncate", err);
    if (rc == 0)
        rc = set_owner_mode(u, fd, m, err);
    if (rc == 0)
        rc = set_caps(u, fd, ae, err);
    if (rc == 0 && futimens(fd, m->times) != 0)
        rc = refuse_errno(u, "set times", err);
    if (close(fd) != 0 && rc == 0)
        rc = refuse_errno(u, "close", err);
    return rc;
}

static int defer_mtime(struct lu *u, const char *path, const struct meta *m,
                       struct ff_err *err)
{
    if (u->ndirs == u->dirs_cap) {
        size_t cap = u->dirs_cap ? u->dirs_cap * 2 : 64;
        struct dirtime *v = realloc(u->dirs, cap * sizeof(*v));
        if (v == NULL)
            return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
        u->dirs = v;
        u->dirs_cap = cap;
    }
    char *copy = strdup(path);
    if (copy == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    u->dirs[u->ndirs].path = copy;
    u->dirs[u->ndirs].mtime = m->times[1];
    u->ndirs++;
    return 0;
}

static int do_dir(struct lu *u, int dirfd, const char *base, const struct meta *m,
                  struct ff_err *err)
{
    int fd;
    if (base[0] == '\0') {
        fd = fcntl(u->destfd, F_DUPFD_CLOEXEC, 0);
    } else {
        bool keep;
        int rc = make_room(u, dirfd, base, true, &keep, err);
        if (rc != 0)
            return rc;
        if (!keep && mkdirat(dirfd, base, 0700) != 0)
            return refuse_errno(u, "mkdir", err);
        fd = open_dir_beneath(dirfd, base);
    }
    if (fd < 0)
        return refuse_errno(u, "open", err);
    int rc = set_owner_mode(u, fd, m, err);
    (void)close(fd);
    if (rc == 0)
        rc = defer_mtime(u, u->path, m, err);
    return rc;
}

/* chown and times of a just-made node or symlink, by name without
 * following it. */
static int set_by_name(struct lu *u, int dirfd, const char *base, const struct meta *m,
                       struct ff_err *err)
{
    if (fchownat(dirfd, base, m->uid, m->gid, AT_SYMLINK_NOFOLLOW) != 0)
        return refuse_errno(u, "chown", err);
    if (utimensat(dirfd, base, m->times, AT_SYMLINK_NOFOLLOW) != 0)
        return refuse_errno(u, "set times", err);
    return 0;
}

static int do_symlink(struct lu *u, struct archive_entry *ae, int dirfd, const char *base,
                      const struct meta *m, struct ff_err *err)
{
    const char *target = archive_entry_symlink(ae);
    if (target == NULL || target[0] == '\0')
        return refuse(u, FF_EINVAL, "symlink without a target", err);
    if (strlen(target) > u->max_path)
        return refuse(u, FF_ETOOBIG, "symlink target over the path limit", err);
    bool keep;
    int rc = make_room(u, dirfd, base, false, &keep, err);
    if (rc != 0)
        return rc;
    /* The target is only data: nothing here ever follows it. */
    if (symlinkat(target, dirfd, base) != 0)
        return refuse_errno(u, "symlink", err);
    return set_by_name(u, dirfd, base, m, err);
}

static int make_node(struct lu *u, int dirfd, const char *base, mode_t type, dev_t dev,
                     const struct meta *m, struct ff_err *err)
{
    bool keep;
    int rc = make_room(u, dirfd, base, false, &keep, err);
    if (rc != 0)
        return rc;
    if (mknodat(dirfd, base, type | 0600, dev) != 0)
        return refuse_errno(u, "mknod", err);
    rc = set_by_name(u, dirfd, base, m, err);
    /* base is the node just made, not a symlink: following is moot. */
    if (rc == 0 && fchmodat(dirfd, base, m->perm, 0) != 0)
        rc = refuse_errno(u, "chmod", err);
    return rc;
}

static int do_node(struct lu *u, struct archive_entry *ae, int dirfd, const char *base,
                   const struct meta *m, struct ff_err *err)
{
    mode_t type = archive_entry_filetype(ae);
    dev_t dev = 0;
    if (type == AE_IFCHR || type == AE_IFBLK)
        dev = makedev(archive_entry_rdevmajor(ae), archive_entry_rdevminor(ae));
    return make_node(u, dirfd, base, type, dev, m, err);
}

static int do_hardlink(struct lu *u, const char *target, int dirfd, const char *base,
                       struct ff_err *err)
{
    size_t tlen;
    int rc = clean_path(u, target, u->link, &tlen, "hard link target", err);
    if (rc != 0)
        return rc;
    if (tlen == 0)
        return refuse(u, FF_EINVAL, "hard link to the root directory", err);
    if (strcmp(u->link, u->path) == 0)
        return refuse(u, FF_EINVAL, "hard link to itself", err);
    char *slash = strrchr(u->link, '/');
    const char *tbase = slash ? slash + 1 : u->link;
    int tfd = u->destfd;
    if (slash != NULL) {
        *slash = '\0';
        tfd = open_dir_beneath(u->destfd, u->link);
        if (tfd < 0)
            return refuse_errno(u, "opening the hard link target's directory", err);
    }
    bool keep;
    rc = make_room(u, dirfd, base, false, &keep, err);
    /* Without AT_SYMLINK_FOLLOW a symlink target is linked, not followed. */
    if (rc == 0 && linkat(tfd, tbase, dirfd, base, 0) != 0) {
        if (errno == ENOENT)
            rc = refuse(u, FF_EINVAL, "hard link target is not an earlier entry", err);
        else if (errno == EPERM)
            rc = refuse(u, FF_EINVAL, "hard link to a directory", err);
        else
            rc = refuse_errno(u, "link", err);
    }
    if (tfd != u->destfd)
        (void)close(tfd);
    return rc;
}

/* ".wh.*" in a layer for overlayfs. */
static int do_whiteout(struct lu *u, int dirfd, const char *base, const struct meta *m,
                       struct ff_err *err)
{
    if (strcmp(base, OPAQUE_NAME) == 0) {
        if (fsetxattr(dirfd, OPAQUE_XATTR, "y", 1, 0) != 0)
            return refuse_errno(u, "setting trusted.overlay.opaque", err);
        return 0;
    }
    if (ff_str_has_prefix(base, WHITEOUT_META_PREFIX))
        return 0;
    const char *name = base + strlen(WHITEOUT_PREFIX);
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return refuse(u, FF_EINVAL, "whiteout of no file", err);
    struct meta wm = *m;
    wm.perm = 0;
    return make_node(u, dirfd, name, S_IFCHR, makedev(0, 0), &wm, err);
}

static int do_typed(struct lu *u, struct archive_entry *ae, int dirfd, const char *base,
                    const struct meta *m, struct ff_err *err)
{
    switch (archive_entry_filetype(ae)) {
    case AE_IFREG:
        return do_file(u, ae, dirfd, base, m, err);
    case AE_IFDIR:
        return do_dir(u, dirfd, base, m, err);
    case AE_IFLNK:
        return do_symlink(u, ae, dirfd, base, m, err);
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
        return do_node(u, ae, dirfd, base, m, err);
    default:
        return refuse(u, FF_EINVAL, "unsupported entry type", err);
    }
}

static int do_entry(struct lu *u, struct archive_entry *ae, struct ff_err *err)
{
    const char *name = archive_entry_pathname(ae);
    if (name == NULL)
        return ff_err_set(err, FF_EINVAL, "layer entry %llu has no path",
                          (unsigned long long)u->entries);
    free(u->entry);
    u->entry = strdup(name);
    if (u->entry == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    size_t len = 0;
    int rc = clean_path(u, name, u->path, &len, "path", err);
    struct meta m;
    if (rc == 0)
        rc = get_meta(u, ae, &m, err);
    if (rc != 0)
        return rc;
    char *slash = strrchr(u->path, '/');
    const char *base = slash ? slash + 1 : u->path;
    size_t plen = slash ? (size_t)(slash - u->path) : 0;
    const char *hardlink = archive_entry_hardlink(ae);
    if (len == 0 && (hardlink != NULL || archive_entry_filetype(ae) != AE_IFDIR))
        return refuse(u, FF_EINVAL, "the root can only be a directory", err);
    int dirfd = -1;
    rc = get_parent(u, plen, &dirfd, err);
    if (rc != 0)
        return rc;
    if (u->overlay && ff_str_has_prefix(base, WHITEOUT_PREFIX))
        return do_whiteout(u, dirfd, base, &m, err);
    if (hardlink != NULL)
        return do_hardlink(u, hardlink, dirfd, base, err);
    return do_typed(u, ae, dirfd, base, &m, err);
}

static la_ssize_t lu_read(struct archive *a, void *ctx, const void **buf)
{
    struct lu *u = ctx;
    size_t len;
    int rc = compress_in_read(u->in, buf, &len, &u->read_err);
    if (rc != 0) {
        u->read_rc = rc;
        archive_set_error(a, EIO, "%s", u->read_err.msg);
        return -1;
    }
    return (la_ssize_t)len;
}

static int tar_error(struct lu *u, struct ff_err *err)
{
    if (u->read_rc != 0)
        return ff_err_set(err, u->read_rc, "%s", u->read_err.msg);
    const char *msg = archive_error_string(u->ar);
    return ff_err_set(err, FF_EINVAL, "layer: bad tar after %llu entries: %s",
                      (unsigned long long)u->entries, msg ? msg : "unreadable");
}

static int apply_dirtimes(struct lu *u, struct ff_err *err)
{
    for (size_t i = 0; i < u->ndirs; i++) {
        const struct dirtime *d = &u->dirs[i];
        /* A directory replaced by a later entry is gone or not a
         * directory any more: nothing to do. */
        int fd = d->path[0] ? open_dir_beneath(u->destfd, d->path) : u->destfd;
        if (fd < 0)
            continue;
        struct timespec ts[2] = {d->mtime, d->mtime};
        int rc = 0;
        if (futimens(fd, ts) != 0) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(d->path, strlen(d->path), q);
            rc = ff_err_set(err, FF_EIO, "layer: setting the mtime of \"%s\": %s", q,
                            strerror(errno));
        }
        if (fd != u->destfd)
            (void)close(fd);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_digest(const char *what, const struct ff_digest *want,
                        const struct ff_digest *got, struct ff_err *err)
{
    if (want == NULL || ff_digest_equal(want, got))
        return 0;
    char w[FF_DIGEST_STR_SIZE], g[FF_DIGEST_STR_SIZE];
    ff_digest_format(want, w);
    ff_digest_format(got, g);
    return ff_err_set(err, FF_EINVAL, "layer: %s mismatch (expected %s, got %s)", what, w, g);
}

static int lu_entries(struct lu *u, struct ff_err *err)
{
    for (;;) {
        struct archive_entry *ae;
        int r = archive_read_next_header(u->ar, &ae);
        if (r == ARCHIVE_EOF)
            return 0;
        /* WARN: a name libarchive kept as raw bytes, or a pax record it
         * ignored; the entry is still checked like any other. */
        if (r < ARCHIVE_WARN)
            return tar_error(u, err);
        if (u->entries >= u->max_entries)
            return ff_err_set(err, FF_ETOOBIG, "layer: more than %llu entries (the limit)",
                              (unsigned long long)u->max_entries);
        u->entries++;
        int rc = do_entry(u, ae, err);
        if (rc != 0)
            return rc;
    }
}

static int lu_run(struct lu *u, int fd, const struct layer_unpack_opts *o,
                  struct layer_info *info, struct ff_err *err)
{
    int rc = compress_in_new(&u->in, fd, u->max_bytes, err);
    if (rc != 0)
        return rc;
    u->ar = archive_read_new();
    if (u->ar == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    if (archive_read_support_format_tar(u->ar) != ARCHIVE_OK ||
        archive_read_open(u->ar, u, NULL, lu_read, NULL) != ARCHIVE_OK)
        return tar_error(u, err);
    rc = lu_entries(u, err);
    forget_parent(u);
    if (rc == 0)
        rc = apply_dirtimes(u, err);
    struct layer_info res;
    memset(&res, 0, sizeof(res));
    if (rc == 0)
        rc = compress_in_finish(u->in, &res, err);
    if (rc == 0)
        rc = check_digest("digest", o->digest, &res.digest, err);
    if (rc == 0)
        rc = check_digest("diff_id", o->diff_id, &res.diff_id, err);
    if (rc != 0)
        return rc;
    res.entries = u->entries;
    res.empty = u->entries == 0;
    if (info != NULL)
        *info = res;
    return 0;
}

static int check_empty(int destfd, const char *dest, struct ff_err *err)
{
    int fd = fcntl(destfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        if (fd >= 0)
            (void)close(fd);
        return ff_err_set(err, FF_EIO, "layer: listing \"%s\": %s", dest, strerror(errno));
    }
    int rc = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            rc = ff_err_set(err, FF_EEXIST, "layer: destination \"%s\" is not empty", dest);
            break;
        }
    }
    (void)closedir(d);
    return rc;
}

static int lu_setup(struct lu *u, const char *dest, const struct layer_unpack_opts *o,
                    bool overlay, struct ff_err *err)
{
    u->overlay = overlay;
    u->max_bytes = o->max_bytes ? o->max_bytes : LAYER_UNPACK_MAX_BYTES_DEFAULT;
    u->max_entries = o->max_entries ? o->max_entries : LAYER_UNPACK_MAX_ENTRIES_DEFAULT;
    u->max_path = o->max_path ? o->max_path : LAYER_PATH_MAX;
    if (u->max_path > LAYER_PATH_MAX)
        return ff_err_set(err, FF_EINVAL, "layer: path limit %zu over %d", u->max_path,
                          LAYER_PATH_MAX);
    u->path = malloc(u->max_path + 1);
    u->link = malloc(u->max_path + 1);
    u->ppath = malloc(u->max_path + 1);
    u->entry = strdup("");
    if (u->path == NULL || u->link == NULL || u->ppath == NULL || u->entry == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    u->destfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u->destfd < 0) {
        int e = errno;
        return ff_err_set(err, e == ENOENT ? FF_ENOTFOUND : FF_EIO,
                          "layer: opening destination \"%s\": %s", dest, strerror(e));
    }
    return overlay ? check_empty(u->destfd, dest, err) : 0;
}

static int unpack(int fd, const char *dest, const struct layer_unpack_opts *opts, bool overlay,
                  struct layer_info *info, struct ff_err *err)
{
    static const struct layer_unpack_opts defaults;
    const struct layer_unpack_opts *o = opts ? opts : &defaults;
    struct lu u;
    memset(&u, 0, sizeof(u));
    u.destfd = -1;
    u.pfd = -1;
    locale_t saved = (locale_t)0;
    int rc = layer_locale_enter(&saved, err);
    if (rc != 0)
        return rc;
    rc = lu_setup(&u, dest, o, overlay, err);
    if (rc == 0)
        rc = lu_run(&u, fd, o, info, err);
    forget_parent(&u);
    if (u.ar != NULL)
        (void)archive_read_free(u.ar);
    compress_in_free(u.in);
    for (size_t i = 0; i < u.ndirs; i++)
        free(u.dirs[i].path);
    free(u.dirs);
    free(u.entry);
    free(u.ppath);
    free(u.link);
    free(u.path);
    if (u.destfd >= 0)
        (void)close(u.destfd);
    layer_locale_leave(saved);
    return rc;
}

int layer_unpack(int fd, const char *dest, const struct layer_unpack_opts *opts,
                 struct layer_info *info, struct ff_err *err)
{
    return unpack(fd, dest, opts, true, info, err);
}

int layer_extract_plain(int fd, const char *dest, const struct layer_unpack_opts *opts,
                        struct layer_info *info, struct ff_err *err)
{
    return unpack(fd, dest, opts, false, info, err);
}
