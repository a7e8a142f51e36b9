/* A directory written as a reproducible OCI layer.
 *
 * Only what the content says goes into the tar: path, type, mode, numeric
 * owner, whole-second mtime (clamped), size, link target, device numbers
 * and security.capability. Directory listings are sorted, so readdir order,
 * inode numbers, atimes and ctimes cannot change a byte. Names are
 * converted by libarchive in the C.UTF-8 locale whatever the process
 * locale, so a non-ASCII name gets the same pax "path" record on every
 * worker. */
#include "worker.h"

#include "ff_buf.h"
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

/* File content is read in pieces of this size. */
#define WRITE_READ_BUF (1u << 20)
/* The kernel's XATTR_LIST_MAX: one flistxattr always fits. */
#define WRITE_XATTR_LIST_MAX 65536
/* A security.capability value is at most 24 bytes (VFS_CAP_REVISION_3). */
#define WRITE_CAP_MAX 64
/* First size of the hard-link table (a power of two). */
#define WRITE_LINKS_INITIAL 64

static const char OPAQUE_NAME[] = ".wh..wh..opq";
static const char WHITEOUT_PREFIX[] = ".wh.";
static const char CAP_XATTR[] = "security.capability";

struct link {
    dev_t dev;
    ino_t ino;
    char *path; /* NULL: free slot */
};

/* Regular files with several links: (dev, ino) -> path of the first one
 * written. Open addressing, kept at most half full. */
struct links {
    struct link *v;
    size_t cap;
    size_t len;
};

struct lw {
    const struct layer_write_opts *opts;
    struct archive *ar;
    struct archive_entry *ae;
    struct compress_out *out;
    int sink_rc; /* why the sink refused bytes, when it did */
    struct ff_err sink_err;
    struct ff_buf path; /* the current entry, relative to the root */
    unsigned char *buf;
    char *xlist;
    struct links links;
    uint64_t entries;
    unsigned depth;
};

struct xattrs {
    bool opaque;
    bool redirect;
    bool metacopy;
    size_t cap_len;
    unsigned char cap[WRITE_CAP_MAX];
};

const char *layer_media_type(enum layer_compression c)
{
    switch (c) {
    case LAYER_GZIP:
        return "application/vnd.oci.image.layer.v1.tar+gzip";
    case LAYER_ZSTD:
        return "application/vnd.oci.image.layer.v1.tar+zstd";
    case LAYER_UNCOMPRESSED:
        break;
    }
    return "application/vnd.oci.image.layer.v1.tar";
}

int layer_locale_enter(locale_t *saved, struct ff_err *err)
{
    locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (loc == (locale_t)0)
        return ff_err_set(err, FF_EIO, "layer: cannot load the C.UTF-8 locale: %s",
                          strerror(errno));
    *saved = uselocale(loc);
    return 0;
}

void layer_locale_leave(locale_t saved)
{
    locale_t cur = uselocale(saved);
    if (cur != (locale_t)0 && cur != LC_GLOBAL_LOCALE)
        freelocale(cur);
}

static size_t links_hash(dev_t dev, ino_t ino, size_t cap)
{
    uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ull) ^ (uint64_t)dev;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static struct link *links_slot(struct links *l, dev_t dev, ino_t ino)
{
    size_t i = links_hash(dev, ino, l->cap);
    while (l->v[i].path != NULL && (l->v[i].dev != dev || l->v[i].ino != ino))
        i = (i + 1) & (l->cap - 1);
    return &l->v[i];
}

static int links_grow(struct links *l)
{
    size_t cap = l->cap ? l->cap * 2 : WRITE_LINKS_INITIAL;
    struct link *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return FF_ENOMEM;
    struct links bigger = {v, cap, l->len};
    for (size_t i = 0; i < l->cap; i++) {
        if (l->v[i].path != NULL)
            *links_slot(&bigger, l->v[i].dev, l->v[i].ino) = l->v[i];
    }
    free(l->v);
    *l = bigger;
    return 0;
}

/* The path already written for (dev, ino), or NULL after recording path
 * as its first. */
static int links_seen(struct links *l, dev_t dev, ino_t ino, const char *path,
                      const char **first)
{
    *first = NULL;
    if ((l->len + 1) * 2 > l->cap && links_grow(l) != 0)
        return FF_ENOMEM;
    struct link *s = links_slot(l, dev, ino);
    if (s->path != NULL) {
        *first = s->path;
        return 0;
    }
    s->path = strdup(path);
    if (s->path == NULL)
        return FF_ENOMEM;
    s->dev = dev;
    s->ino = ino;
    l->len++;
    return 0;
}

static void links_release(struct links *l)
{
    for (size_t i = 0; i < l->cap; i++)
        free(l->v[i].path);
    free(l->v);
}

static la_ssize_t lw_sink(struct archive *a, void *ctx, const void *buf, size_t n)
{
    struct lw *w = ctx;
    int rc = compress_out_write(w->out, buf, n, &w->sink_err);
    if (rc != 0) {
        w->sink_rc = rc;
        archive_set_error(a, EIO, "%s", w->sink_err.msg);
        return -1;
    }
    return (la_ssize_t)n;
}

/* The error of a failed libarchive call: the sink's own when it failed. */
static int lw_archive_error(struct lw *w, const char *what, struct ff_err *err)
{
    if (w->sink_rc != 0)
        return ff_err_set(err, w->sink_rc, "%s", w->sink_err.msg);
    const char *msg = archive_error_string(w->ar);
    return ff_err_set(err, FF_EIO, "layer: %s \"%s\": %s", what, w->path.data,
                      msg ? msg : "libarchive failed");
}

static int lw_errno(struct lw *w, const char *what, struct ff_err *err)
{
    int e = errno;
    return ff_err_set(err, e == ENOENT ? FF_ENOTFOUND : FF_EIO, "layer: %s \"%s\": %s", what,
                      w->path.data, strerror(e));
}

/* Sets the path to its first len bytes, then appends "/" (unless at the
 * root), prefix and name. */
static int lw_path_set(struct lw *w, size_t len, const char *prefix, const char *name,
                       struct ff_err *err)
{
    w->path.len = len;
    w->path.data[len] = '\0';
    int rc = 0;
    if (len > 0)
        rc = ff_buf_append_str(&w->path, "/");
    if (rc == 0)
        rc = ff_buf_append_str(&w->path, prefix);
    if (rc == 0)
        rc = ff_buf_append_str(&w->path, name);
    if (rc == FF_ETOOBIG)
        return ff_err_set(err, rc, "layer: a path under \"%.200s\" is longer than %d bytes",
                          w->path.data, LAYER_PATH_MAX);
    if (rc != 0)
        return ff_err_set(err, rc, "layer: out of memory");
    return 0;
}

static int64_t lw_mtime(const struct lw *w, const struct stat *st)
{
    int64_t t = (int64_t)st->st_mtim.tv_sec;
    if (w->opts->clamp_mtime && t > w->opts->epoch)
        return w->opts->epoch;
    return t;
}

/* Starts an entry for the current path with st's type, mode and owner. */
static void lw_fill(struct lw *w, const struct stat *st)
{
    struct archive_entry *ae = archive_entry_clear(w->ae);
    archive_entry_copy_pathname(ae, w->path.data);
    archive_entry_set_mode(ae, st->st_mode);
    archive_entry_set_uid(ae, (la_int64_t)st->st_uid);
    archive_entry_set_gid(ae, (la_int64_t)st->st_gid);
    archive_entry_set_mtime(ae, (time_t)lw_mtime(w, st), 0);
}

/* An empty regular file owned by root: the form of OCI whiteouts. */
static void lw_fill_marker(struct lw *w, int64_t mtime)
{
    struct archive_entry *ae = archive_entry_clear(w->ae);
    archive_entry_copy_pathname(ae, w->path.data);
    archive_entry_set_filetype(ae, AE_IFREG);
    archive_entry_set_perm(ae, 0);
    archive_entry_set_size(ae, 0);
    archive_entry_set_mtime(ae, (time_t)mtime, 0);
}

static int lw_header(struct lw *w, struct ff_err *err)
{
    /* WARN is libarchive falling back to raw bytes for a name that is not
     * UTF-8: the entry is written, the same way every time. */
    if (archive_write_header(w->ar, w->ae) < ARCHIVE_WARN)
        return lw_archive_error(w, "writing the header of", err);
    w->entries++;
    return 0;
}

static bool xattr_is(const char *name, const char *suffix)
{
    return (ff_str_has_prefix(name, "trusted.overlay.") &&
            strcmp(name + strlen("trusted.overlay."), suffix) == 0) ||
           (ff_str_has_prefix(name, "user.overlay.") &&
            strcmp(name + strlen("user.overlay."), suffix) == 0);
}

static int lw_xattrs(struct lw *w, int fd, struct xattrs *x, struct ff_err *err)
{
    memset(x, 0, sizeof(*x));
    ssize_t n = flistxattr(fd, w->xlist, WRITE_XATTR_LIST_MAX);
    if (n < 0 && (errno == ENOTSUP || errno == ENODATA))
        return 0;
    if (n < 0)
        return lw_errno(w, "listing the xattrs of", err);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(w->xlist + i) + 1) {
        const char *name = w->xlist + i;
        if (strcmp(name, CAP_XATTR) == 0) {
            ssize_t len = fgetxattr(fd, name, x->cap, sizeof(x->cap));
            if (len < 0)
                return lw_errno(w, "reading security.capability of", err);
            x->cap_len = (size_t)len;
        } else if (w->opts->overlay && xattr_is(name, "opaque")) {
            char v[2];
            x->opaque = fgetxattr(fd, name, v, sizeof(v)) == 1 && v[0] == 'y';
        } else if (w->opts->overlay) {
            x->redirect = x->redirect || xattr_is(name, "redirect");
            x->metacopy = x->metacopy || xattr_is(name, "metacopy");
        }
    }
    return 0;
}

static void lw_add_caps(struct lw *w, const struct xattrs *x)
{
    if (x->cap_len > 0)
        archive_entry_xattr_add_entry(w->ae, CAP_XATTR, x->cap, x->cap_len);
}

static int lw_copy_data(struct lw *w, int fd, off_t size, struct ff_err *err)
{
    off_t left = size;
    while (left > 0) {
        size_t want = left < (off_t)WRITE_READ_BUF ? (size_t)left : WRITE_READ_BUF;
        ssize_t r = read(fd, w->buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return lw_errno(w, "reading", err);
        if (r == 0)
            return ff_err_set(err, FF_EIO, "layer: \"%s\" shrank while being read",
                              w->path.data);
        if (archive_write_data(w->ar, w->buf, (size_t)r) != r)
            return lw_archive_error(w, "writing the data of", err);
        left -= r;
    }
    return 0;
}

static int lw_regular(struct lw *w, int dirfd, const char *name, struct ff_err *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return lw_errno(w, "opening", err);
    struct stat st;
    struct xattrs x;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = lw_errno(w, "stat of", err);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ff_err_set(err, FF_EIO, "layer: \"%s\" changed type while read", w->path.data);
        goto out;
    }
    rc = lw_xattrs(w, fd, &x, err);
    if (rc == 0 && x.metacopy)
        rc = ff_err_set(err, FF_EINVAL,
                        "layer: \"%s\" is an overlayfs metacopy upper without its data "
                        "(mount the overlay with metacopy=off)", w->path.data);
    if (rc != 0)
        goto out;
    const char *first = NULL;
    if (st.st_nlink > 1 && links_seen(&w->links, st.st_dev, st.st_ino, w->path.data, &first)) {
        rc = ff_err_set(err, FF_ENOMEM, "layer: out of memory");
        goto out;
    }
    lw_fill(w, &st);
    if (first != NULL) {
        archive_entry_copy_hardlink(w->ae, first);
        archive_entry_set_size(w->ae, 0);
        rc = lw_header(w, err);
        goto out;
    }
    archive_entry_set_size(w->ae, (la_int64_t)st.st_size);
    lw_add_caps(w, &x);
    rc = lw_header(w, err);
    if (rc == 0)
        rc = lw_copy_data(w, fd, st.st_size, err);
out:
    (void)close(fd);
    return rc;
}

static int lw_symlink(struct lw *w, int dirfd, const char *name, const struct stat *st,
                      struct ff_err *err)
{
    if (st->st_size < 0 || st->st_size > LAYER_PATH_MAX)
        return ff_err_set(err, FF_ETOOBIG, "layer: symlink \"%s\" target over %d bytes",
                          w->path.data, LAYER_PATH_MAX);
    size_t cap = (size_t)st->st_size + 1;
    char *target = malloc(cap);
    if (target == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    int rc = 0;
    ssize_t n = readlinkat(dirfd, name, target, cap);
    if (n < 0) {
        rc = lw_errno(w, "reading the symlink", err);
    } else if ((size_t)n != cap - 1) {
        rc = ff_err_set(err, FF_EIO, "layer: symlink \"%s\" changed while read", w->path.data);
    } else {
        target[n] = '\0';
        lw_fill(w, st);
        archive_entry_copy_symlink(w->ae, target);
        rc = lw_header(w, err);
    }
    free(target);
    return rc;
}

static int lw_node(struct lw *w, const struct stat *st, struct ff_err *err)
{
    lw_fill(w, st);
    archive_entry_set_rdevmajor(w->ae, major(st->st_rdev));
    archive_entry_set_rdevminor(w->ae, minor(st->st_rdev));
    return lw_header(w, err);
}

static int lw_whiteout(struct lw *w, size_t parent_len, const char *name,
                       const struct stat *st, struct ff_err *err)
{
    int rc = lw_path_set(w, parent_len, WHITEOUT_PREFIX, name, err);
    if (rc != 0)
        return rc;
    lw_fill_marker(w, lw_mtime(w, st));
    return lw_header(w, err);
}

static int lw_dir(struct lw *w, int dirfd, struct ff_err *err);

static int lw_directory(struct lw *w, int dirfd, const char *name, struct ff_err *err)
{
    if (w->depth >= LAYER_WRITE_DEPTH_MAX)
        return ff_err_set(err, FF_ETOOBIG, "layer: \"%.200s\" is nested deeper than %d",
                          w->path.data, LAYER_WRITE_DEPTH_MAX);
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return lw_errno(w, "opening the directory", err);
    struct stat st;
    struct xattrs x;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = lw_errno(w, "stat of", err);
        goto out;
    }
    rc = lw_xattrs(w, fd, &x, err);
    if (rc == 0 && x.redirect)
        rc = ff_err_set(err, FF_EINVAL,
                        "layer: \"%s\" is an overlayfs redirect (a renamed lower directory; "
                        "mount the overlay with redirect_dir=off)", w->path.data);
    if (rc != 0)
        goto out;
    lw_fill(w, &st);
    lw_add_caps(w, &x);
    rc = lw_header(w, err);
    size_t len = w->path.len;
    if (rc == 0 && x.opaque) {
        rc = lw_path_set(w, len, "", OPAQUE_NAME, err);
        if (rc == 0) {
            lw_fill_marker(w, lw_mtime(w, &st));
            rc = lw_header(w, err);
        }
        w->path.len = len;
        w->path.data[len] = '\0';
    }
    if (rc == 0) {
        w->depth++;
        rc = lw_dir(w, fd, err);
        w->depth--;
    }
out:
    (void)close(fd);
    return rc;
}

struct child {
    char *name;
    char *key; /* the name in the tar: name, or ".wh."name for a whiteout */
    struct stat st;
};

static bool is_whiteout(const struct lw *w, const struct stat *st)
{
    return w->opts->overlay && S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* One child of the directory whose path is the current one. */
static int lw_child(struct lw *w, int dirfd, const struct child *c, struct ff_err *err)
{
    size_t parent_len = w->path.len;
    const struct stat *st = &c->st;
    int rc = lw_path_set(w, parent_len, "", c->name, err);
    if (rc != 0)
        return rc;
    if (is_whiteout(w, st))
        rc = lw_whiteout(w, parent_len, c->name, st, err);
    else if (S_ISREG(st->st_mode))
        rc = lw_regular(w, dirfd, c->name, err);
    else if (S_ISDIR(st->st_mode))
        rc = lw_directory(w, dirfd, c->name, err);
    else if (S_ISLNK(st->st_mode))
        rc = lw_symlink(w, dirfd, c->name, st, err);
    else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) || S_ISFIFO(st->st_mode))
        rc = lw_node(w, st, err);
    /* Sockets cannot be in a tar; containerd skips them too. */
    w->path.len = parent_len;
    w->path.data[parent_len] = '\0';
    return rc;
}

static int child_cmp(const void *a, const void *b)
{
    const struct child *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->name, y->name);
}

static void children_free(struct child *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].key != v[i].name)
            free(v[i].key);
        free(v[i].name);
    }
    free(v);
}

/* Names and lstat of one directory entry, appended to *v. */
static int child_add(struct lw *w, int dirfd, const char *name, struct child **v, size_t *n,
                     size_t *cap, struct ff_err *err)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct child *nv = realloc(*v, ncap * sizeof(**v));
        if (nv == NULL)
            return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
        *v = nv;
        *cap = ncap;
    }
    struct child *c = &(*v)[*n];
    memset(c, 0, sizeof(*c));
    if (fstatat(dirfd, name, &c->st, AT_SYMLINK_NOFOLLOW) != 0) {
        size_t len = w->path.len;
        int rc = lw_path_set(w, len, "", name, err);
        if (rc == 0)
            rc = lw_errno(w, "stat of", err);
        w->path.len = len;
        w->path.data[len] = '\0';
        return rc;
    }
    c->name = strdup(name);
    c->key = is_whiteout(w, &c->st) ? ff_asprintf("%s%s", WHITEOUT_PREFIX, name) : c->name;
    if (c->name == NULL || c->key == NULL) {
        if (c->key != c->name)
            free(c->key);
        free(c->name);
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    }
    (*n)++;
    return 0;
}

/* The children of dirfd in the order they go into the tar: by their name
 * in the tar, bytewise. *out belongs to the caller. */
static int lw_children(struct lw *w, int dirfd, struct child **out, size_t *count,
                       struct ff_err *err)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        int rc = lw_errno(w, "listing", err);
        if (fd >= 0)
            (void)close(fd);
        return rc;
    }
    struct child *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        const struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                rc = lw_errno(w, "listing", err);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = child_add(w, dirfd, de->d_name, &v, &n, &cap, err);
        if (rc != 0)
            break;
    }
    (void)closedir(d);
    if (rc != 0) {
        children_free(v, n);
        return rc;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), child_cmp);
    *out = v;
    *count = n;
    return 0;
}

/* Writes every entry below dirfd, whose path is the current one. */
static int lw_dir(struct lw *w, int dirfd, struct ff_err *err)
{
    struct child *v = NULL;
    size_t n = 0;
    int rc = lw_children(w, dirfd, &v, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = lw_child(w, dirfd, &v[i], err);
    children_free(v, n);
    return rc;
}

static int lw_open_archive(struct lw *w, struct ff_err *err)
{
    w->ar = archive_write_new();
    w->ae = archive_entry_new();
    if (w->ar == NULL || w->ae == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    /* Block size 0: no padding past the two zero blocks that end the tar,
     * like Go's archive/tar. */
    if (archive_write_set_format_pax_restricted(w->ar) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w->ar, 0) != ARCHIVE_OK ||
        archive_write_open2(w->ar, w, NULL, lw_sink, NULL, NULL) != ARCHIVE_OK)
        return lw_archive_error(w, "starting the tar for", err);
    return 0;
}

static int lw_run(struct lw *w, int dirfd, int out_fd, struct layer_info *info,
                  struct ff_err *err)
{
    const struct layer_write_opts *o = w->opts;
    int rc = compress_out_new(&w->out, out_fd, o->compression, o->level, o->threads, err);
    if (rc == 0)
        rc = lw_open_archive(w, err);
    if (rc == 0)
        rc = lw_dir(w, dirfd, err);
    if (rc == 0 && archive_write_close(w->ar) != ARCHIVE_OK)
        rc = lw_archive_error(w, "ending the tar of", err);
    struct layer_info res;
    memset(&res, 0, sizeof(res));
    if (rc == 0)
        rc = compress_out_finish(w->out, &res, err);
    if (rc != 0)
        return rc;
    res.entries = w->entries;
    res.empty = w->entries == 0;
    *info = res;
    return 0;
}

int layer_write_fd(const char *dir, int fd, const struct layer_write_opts *opts,
                   struct layer_info *info, struct ff_err *err)
{
    static const struct layer_write_opts defaults;
    struct lw w;
    memset(&w, 0, sizeof(w));
    w.opts = opts ? opts : &defaults;
    ff_buf_init(&w.path, LAYER_PATH_MAX);
    locale_t saved = (locale_t)0;
    int rc = layer_locale_enter(&saved, err);
    if (rc != 0)
        return rc;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(dir, strlen(dir), q);
        rc = ff_err_set(err, e == ENOENT ? FF_ENOTFOUND : FF_EIO,
                        "layer: opening directory \"%s\": %s", q, strerror(e));
        goto out;
    }
    w.buf = malloc(WRITE_READ_BUF);
    w.xlist = malloc(WRITE_XATTR_LIST_MAX);
    if (w.buf == NULL || w.xlist == NULL || ff_buf_append_str(&w.path, "") != 0) {
        rc = ff_err_set(err, FF_ENOMEM, "layer: out of memory");
        goto out;
    }
    rc = lw_run(&w, dirfd, fd, info, err);
out:
    if (w.ar != NULL)
        (void)archive_write_free(w.ar);
    archive_entry_free(w.ae);
    compress_out_free(w.out);
    links_release(&w.links);
    free(w.xlist);
    free(w.buf);
    ff_buf_release(&w.path);
    if (dirfd >= 0)
        (void)close(dirfd);
    layer_locale_leave(saved);
    return rc;
}

/* Directory part of path, for the fsync after rename; "." for a bare name. */
static char *parent_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return ff_strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const char *path, struct ff_err *err)
{
    char *dir = parent_of(path);
    if (dir == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    int rc = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rc = ff_err_set(err, FF_EIO, "layer: fsync of directory \"%s\": %s", dir,
                        strerror(errno));
    if (fd >= 0)
        (void)close(fd);
    free(dir);
    return rc;
}

int layer_write_file(const char *dir, const char *out_path, const struct layer_write_opts *opts,
                     struct layer_info *info, struct ff_err *err)
{
    char *tmp = ff_asprintf("%s.tmp-XXXXXX", out_path);
    if (tmp == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    int rc = 0;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = ff_err_set(err, FF_EIO, "layer: creating \"%s\": %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    /* Blobs are public content; mkostemp made it 0600. */
    if (fchmod(fd, 0644) != 0)
        rc = ff_err_set(err, FF_EIO, "layer: chmod \"%s\": %s", tmp, strerror(errno));
    if (rc == 0)
        rc = layer_write_fd(dir, fd, opts, info, err);
    if (rc == 0 && fsync(fd) != 0)
        rc = ff_err_set(err, FF_EIO, "layer: fsync \"%s\": %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = ff_err_set(err, FF_EIO, "layer: close \"%s\": %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, out_path) != 0)
        rc = ff_err_set(err, FF_EIO, "layer: rename to \"%s\": %s", out_path, strerror(errno));
    if (rc != 0)
        (void)unlink(tmp);
    else
        rc = fsync_dir(out_path, err);
    free(tmp);
    return rc;
}
