/* COPY and ADD into a rootfs, with BuildKit's semantics (see context.h).
 *
 * The destination is resolved inside the rootfs by context_resolve_path
 * with RESOLVE_IN_ROOT semantics: the image's symlinks, even absolute
 * ones like /etc -> /somewhere, are followed as the image means them and
 * never lead outside root_dir. Below that, everything is created with *at
 * calls relative to directory descriptors we hold, and the last component
 * is never followed: an existing symlink there is replaced, not written
 * through. */
#include "worker.h"

#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A destination directory open while a directory source is copied. */
struct cp_dir {
    int fd;     /* O_RDONLY|O_DIRECTORY */
    char *path; /* inside the rootfs, no leading '/' */
};

struct cp {
    const struct context_sources *s;
    const struct copy_opts *o;
    const char *instr;
    int rootfd;
    char *dest;    /* cleaned, relative to the rootfs */
    bool dest_dir; /* dest is a directory by its form or the number of sources */
    unsigned char *buf;
    char **base; /* per source: where its top went, for hard links */
    int *url_fd; /* per source: the verified download, or -1 */
    /* The source being copied. */
    size_t cur;
    int top_parent; /* a file source: its target's directory ... */
    char *top_name; /* ... and name */
    int top_dir;    /* a directory source: the directory its contents go to */
    struct cp_dir dirs[CONTEXT_DEPTH_MAX + 2];
    size_t depth;
};

static const char *quote(const char *s, char q[FF_STR_QUOTE_SIZE])
{
    ff_str_quote(s, strlen(s), q);
    return q;
}

static char *path_join(const char *a, const char *b)
{
    if (a[0] == '\0')
        return strdup(b);
    if (b[0] == '\0')
        return strdup(a);
    return ff_asprintf("%s/%s", a, b);
}

static int cp_oom(struct ff_err *err)
{
    return CONTEXT_FAIL(err, FF_ENOMEM, "copy: out of memory");
}

static int cp_sys(struct cp *c, const char *what, const char *path, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    int e = errno;
    return CONTEXT_FAIL(err, e == ENOSPC || e == EDQUOT ? FF_ETOOBIG : FF_EIO,
                        "%s: cannot %s \"/%s\": %s", c->instr, what, quote(path, q), strerror(e));
}

static void cp_owner(const struct cp *c, const struct stat *st, uid_t *uid, gid_t *gid)
{
    context_entry_owner(c->s, &c->o->attrs, st, uid, gid);
}

/* Resolves path inside the rootfs with IN_ROOT and the given flags,
 * creating directories as the owner of copied files. */
static int cp_resolve(struct cp *c, const char *path, int flags, struct context_resolved *res,
                      struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct context_res_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.flags = flags | CONTEXT_RES_IN_ROOT;
    ro.uid = c->o->attrs.chown ? c->o->attrs.uid : 0;
    ro.gid = c->o->attrs.chown ? c->o->attrs.gid : 0;
    int rc = context_resolve_path(c->rootfd, path, &ro, res, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s: destination \"/%s\"", c->instr, quote(path, q));
    return 0;
}

/* Resolves path as a directory, creating it and its parents if missing,
 * and opens it for *at calls. */
static int cp_mkdir_all(struct cp *c, const char *path, int *dirfd, char **real, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct context_resolved res;
    int rc = cp_resolve(
        c, path, CONTEXT_RES_FOLLOW_LAST | CONTEXT_RES_MKDIR | CONTEXT_RES_MKDIR_LAST, &res, err);
    if (rc != 0)
        return rc;
    if (!S_ISDIR(res.st.st_mode)) {
        rc = CONTEXT_FAIL(err, FF_EINVAL, "%s: cannot copy to non-directory \"/%s\"", c->instr,
                          quote(res.real, q));
    } else if (dirfd != NULL) {
        *dirfd = openat(res.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (*dirfd < 0)
            rc = cp_sys(c, "open", res.real, err);
    }
    if (rc == 0 && real != NULL) {
        *real = res.real;
        res.real = NULL;
    }
    context_resolved_release(&res);
    return rc;
}

/* Makes name in dirfd free for a new non-directory: a file or symlink
 * there goes (it is replaced, never written through), a directory is an
 * error as in BuildKit. */
static int cp_clear(struct cp *c, int dirfd, const char *name, const char *path, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : cp_sys(c, "stat", path, err);
    if (S_ISDIR(st.st_mode))
        return CONTEXT_FAIL(err, FF_EINVAL, "%s: cannot replace directory \"/%s\" with a file",
                            c->instr, quote(path, q));
    if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT)
        return cp_sys(c, "replace", path, err);
    return 0;
}

static int cp_data(struct cp *c, int in, int out, const char *path, struct ff_err *err)
{
    bool range = true;
    for (;;) {
        ssize_t n;
        if (range) {
            n = copy_file_range(in, NULL, out, NULL, (size_t)1 << 30, 0);
            if (n > 0)
                continue;
            if (n == 0)
                return 0;
            if (errno == EINTR)
                continue;
            if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS &&
                errno != EBADF && errno != EPERM)
                return cp_sys(c, "write", path, err);
            range = false;
        }
        n = read(in, c->buf, CONTEXT_IO_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cp_sys(c, "read the source of", path, err);
        if (n == 0)
            return 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, c->buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return cp_sys(c, "write", path, err);
            off += w;
        }
    }
}

/* Owner, then mode (chown clears set-id bits), then times, on an open fd. */
static int cp_meta_fd(struct cp *c, int fd, uid_t uid, gid_t gid, mode_t mode,
                      const struct timespec *times, const char *path, struct ff_err *err)
{
    if (fchown(fd, uid, gid) != 0)
        return cp_sys(c, "set the owner of", path, err);
    if (fchmod(fd, mode) != 0)
        return cp_sys(c, "set the mode of", path, err);
    if (times != NULL && futimens(fd, times) != 0)
        return cp_sys(c, "set the times of", path, err);
    return 0;
}

/* Writes a new regular file name in dirfd with in's content. */
static int cp_file(struct cp *c, int in, int dirfd, const char *name, const char *path, uid_t uid,
                   gid_t gid, mode_t mode, const struct timespec *times, struct ff_err *err)
{
    /* Usually nothing is there: clear the name only when creation says
     * something is (O_EXCL fails on a symlink too, without following). */
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int out = openat(dirfd, name, flags, 0600);
    int rc = 0;
    if (out < 0 && errno == EEXIST) {
        rc = cp_clear(c, dirfd, name, path, err);
        if (rc != 0)
            return rc;
        out = openat(dirfd, name, flags, 0600);
    }
    if (out < 0)
        return cp_sys(c, "create", path, err);
    rc = cp_data(c, in, out, path, err);
    if (rc == 0)
        rc = cp_meta_fd(c, out, uid, gid, mode, times, path, err);
    if (close(out) != 0 && rc == 0)
        rc = cp_sys(c, "write", path, err);
    return rc;
}

/* A second link to a file copied earlier in this COPY. */
static int cp_hardlink(struct cp *c, const struct context_entry *e, int dirfd, const char *name,
                       const char *path, struct ff_err *err)
{
    const char *base = c->base[e->hardlink_source];
    if (base == NULL)
        return CONTEXT_FAIL(err, FF_EINVAL, "%s: hard link to a file that was not copied",
                            c->instr);
    char *first = path_join(base, e->hardlink);
    if (first == NULL)
        return cp_oom(err);
    struct context_resolved res;
    int rc = cp_resolve(c, first, 0, &res, err);
    if (rc == 0 && !S_ISREG(res.st.st_mode))
        rc = CONTEXT_FAIL(err, FF_EINVAL, "%s: hard link target \"/%s\" is no longer a file",
                          c->instr, first);
    if (rc == 0)
        rc = cp_clear(c, dirfd, name, path, err);
    if (rc == 0 && linkat(res.parent_fd, res.name, dirfd, name, 0) != 0)
        rc = cp_sys(c, "link", path, err);
    context_resolved_release(&res);
    free(first);
    return rc;
}

static int cp_symlink(struct cp *c, const struct context_entry *e, int dirfd, const char *name,
                      const char *path, struct ff_err *err)
{
    uid_t uid = 0;
    gid_t gid = 0;
    cp_owner(c, &e->st, &uid, &gid);
    const struct timespec times[2] = {e->st.st_atim, e->st.st_mtim};
    int rc = cp_clear(c, dirfd, name, path, err);
    if (rc != 0)
        return rc;
    if (symlinkat(e->link, dirfd, name) != 0)
        return cp_sys(c, "create symlink", path, err);
    if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return cp_sys(c, "set the owner of", path, err);
    if (utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW) != 0)
        return cp_sys(c, "set the times of", path, err);
    return 0;
}

static int cp_fifo(struct cp *c, const struct context_entry *e, int dirfd, const char *name,
                   const char *path, struct ff_err *err)
{
    uid_t uid = 0;
    gid_t gid = 0;
    cp_owner(c, &e->st, &uid, &gid);
    const struct timespec times[2] = {e->st.st_atim, e->st.st_mtim};
    int rc = cp_clear(c, dirfd, name, path, err);
    if (rc != 0)
        return rc;
    if (mkfifoat(dirfd, name, 0600) != 0)
        return cp_sys(c, "create fifo", path, err);
    if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 ||
        fchmodat(dirfd, name, context_entry_mode(&c->o->attrs, &e->st), 0) != 0)
        return cp_sys(c, "set the owner and mode of", path, err);
    if (utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW) != 0)
        return cp_sys(c, "set the times of", path, err);
    return 0;
}

static int cp_leaf(struct cp *c, const struct context_entry *e, int dirfd, const char *name,
                   const char *path, struct ff_err *err)
{
    if (S_ISLNK(e->st.st_mode))
        return cp_symlink(c, e, dirfd, name, path, err);
    if (S_ISFIFO(e->st.st_mode))
        return cp_fifo(c, e, dirfd, name, path, err);
    if (e->hardlink != NULL)
        return cp_hardlink(c, e, dirfd, name, path, err);
    struct stat st;
    int in = context_entry_open(e, &st, err);
    if (in < 0)
        return ff_err_wrap(err, "%s", c->instr);
    uid_t uid = 0;
    gid_t gid = 0;
    cp_owner(c, &e->st, &uid, &gid);
    const struct timespec times[2] = {e->st.st_atim, e->st.st_mtim};
    int rc = cp_file(c, in, dirfd, name, path, uid, gid, context_entry_mode(&c->o->attrs, &e->st),
                     times, err);
    (void)close(in);
    return rc;
}

static int cp_push(struct cp *c, int fd, char *path, struct ff_err *err)
{
    if (c->depth >= sizeof(c->dirs) / sizeof(c->dirs[0])) {
        (void)close(fd);
        free(path);
        return CONTEXT_FAIL(err, FF_ETOOBIG, "%s: more than %d directory levels", c->instr,
                            CONTEXT_DEPTH_MAX);
    }
    c->dirs[c->depth].fd = fd;
    c->dirs[c->depth].path = path;
    c->depth++;
    return 0;
}

static void cp_pop(struct cp *c)
{
    struct cp_dir *d = &c->dirs[--c->depth];
    (void)close(d->fd);
    free(d->path);
    d->path = NULL;
}

/* A directory inside a directory source: created with the source's
 * metadata (applied when it is left), or an existing one reused. */
static int cp_enter_dir(struct cp *c, const struct context_entry *e, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    const struct cp_dir *parent = &c->dirs[c->depth - 1];
    char *path = path_join(parent->path, e->name);
    if (path == NULL)
        return cp_oom(err);
    struct stat st;
    int rc = 0;
    if (fstatat(parent->fd, e->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT || mkdirat(parent->fd, e->name, 0700) != 0)
            rc = cp_sys(c, "create directory", path, err);
    } else if (!S_ISDIR(st.st_mode)) {
        rc = CONTEXT_FAIL(err, FF_EINVAL, "%s: cannot copy to non-directory \"/%s\"", c->instr,
                          quote(path, q));
    }
    int fd =
        rc == 0 ? openat(parent->fd, e->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (rc == 0 && fd < 0)
        rc = cp_sys(c, "open", path, err);
    if (rc != 0) {
        free(path);
        return rc;
    }
    return cp_push(c, fd, path, err);
}

static int cp_leave_dir(struct cp *c, const struct context_entry *e, struct ff_err *err)
{
    const struct cp_dir *d = &c->dirs[c->depth - 1];
    const struct timespec times[2] = {e->st.st_atim, e->st.st_mtim};
    int rc = 0;
    if (e->top) {
        /* BuildKit leaves the destination's owner and mode alone and only
         * restores the source directory's times on it. */
        if (futimens(d->fd, times) != 0)
            rc = cp_sys(c, "set the times of", d->path, err);
    } else {
        uid_t uid = 0;
        gid_t gid = 0;
        cp_owner(c, &e->st, &uid, &gid);
        rc = cp_meta_fd(c, d->fd, uid, gid, context_entry_mode(&c->o->attrs, &e->st), times,
                        d->path, err);
    }
    cp_pop(c);
    return rc;
}

static int cp_visit(void *ctx, const struct context_entry *e, enum context_visit v,
                    struct ff_err *err)
{
    struct cp *c = ctx;
    if (v == CONTEXT_VISIT_LEAVE)
        return cp_leave_dir(c, e, err);
    if (S_ISDIR(e->st.st_mode)) {
        if (!e->top)
            return cp_enter_dir(c, e, err);
        int fd = fcntl(c->top_dir, F_DUPFD_CLOEXEC, 0);
        char *path = strdup(c->base[c->cur]);
        if (fd < 0 || path == NULL) {
            if (fd >= 0)
                (void)close(fd);
            free(path);
            return cp_oom(err);
        }
        return cp_push(c, fd, path, err);
    }
    if (e->top)
        return cp_leaf(c, e, c->top_parent, c->top_name, c->base[c->cur], err);
    const struct cp_dir *parent = &c->dirs[c->depth - 1];
    char *path = path_join(parent->path, e->name);
    if (path == NULL)
        return cp_oom(err);
    int rc = cp_leaf(c, e, parent->fd, e->name, path, err);
    free(path);
    return rc;
}

/* Where a file-like source named name goes: inside dest when that is a
 * directory (a symlink to one counts), else dest itself, whose last
 * component is then replaced, not followed. Sets top_parent, top_name
 * and base[i]. */
static int cp_file_target(struct cp *c, size_t i, const char *name, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct context_resolved res;
    int rc = cp_resolve(c, c->dest, CONTEXT_RES_FOLLOW_LAST | CONTEXT_RES_MISSING_OK, &res, err);
    if (rc != 0)
        return rc;
    if (res.fd >= 0 && S_ISDIR(res.st.st_mode)) {
        if (name[0] == '\0')
            rc = CONTEXT_FAIL(err, FF_EINVAL,
                              "%s: \"%s\": no file name to give it in \"/%s\"; "
                              "name the file in the destination",
                              c->instr, quote(c->s->v[i].spec, q), res.real);
        c->top_parent = rc == 0 ? res.fd : -1;
        if (rc == 0)
            res.fd = -1;
        c->top_name = rc == 0 ? strdup(name) : NULL;
        c->base[i] = rc == 0 ? path_join(res.real, name) : NULL;
        context_resolved_release(&res);
        if (rc == 0 && (c->top_parent < 0 || c->top_name == NULL || c->base[i] == NULL))
            rc = cp_oom(err);
        return rc;
    }
    context_resolved_release(&res);
    rc = cp_resolve(c, c->dest, CONTEXT_RES_MISSING_OK, &res, err);
    if (rc != 0)
        return rc;
    c->top_parent = res.parent_fd;
    c->top_name = res.name;
    c->base[i] = res.real;
    res.parent_fd = -1;
    res.name = NULL;
    res.real = NULL;
    context_resolved_release(&res);
    return 0;
}

static void cp_source_done(struct cp *c)
{
    while (c->depth > 0)
        cp_pop(c);
    if (c->top_parent >= 0)
        (void)close(c->top_parent);
    if (c->top_dir >= 0)
        (void)close(c->top_dir);
    free(c->top_name);
    c->top_parent = -1;
    c->top_dir = -1;
    c->top_name = NULL;
}

/* Opens path source i's file (for archive detection), checking it is the
 * regular file that was resolved. */
static int cp_open_source(struct cp *c, size_t i, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    const struct context_source *src = &c->s->v[i];
    struct context_res_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.flags = CONTEXT_RES_NO_SYMLINKS;
    struct context_resolved res;
    int rc = context_resolve_path(context_root_fd(c->s->root), src->path, &ro, &res, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s: source \"%s\" changed since it was resolved", c->instr,
                           quote(src->spec, q));
    int fd = -1;
    if (S_ISREG(res.st.st_mode))
        fd = openat(res.parent_fd, res.name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != res.st.st_ino) {
        if (fd >= 0)
            (void)close(fd);
        fd = CONTEXT_FAIL(err, FF_EINVAL, "%s: source \"%s\" changed since it was resolved",
                          c->instr, quote(src->spec, q));
    }
    context_resolved_release(&res);
    return fd;
}

/* ADD of a local archive: extracted into dest, which is a directory. */
static int cp_extract(struct cp *c, int fd, enum context_archive kind, struct ff_err *err)
{
    int dirfd = -1;
    char *real = NULL;
    int rc = cp_mkdir_all(c, c->dest, &dirfd, &real, err);
    if (rc != 0)
        return rc;
    char *shown = ff_asprintf("/%s", real);
    if (shown == NULL)
        rc = cp_oom(err);
    else
        rc = c->o->extract(c->o->extract_ctx, fd, kind, dirfd, shown, err);
    free(shown);
    free(real);
    (void)close(dirfd);
    return rc;
}

/* ADD: whether source i is a local archive, which is then extracted. */
static int cp_try_archive(struct cp *c, size_t i, bool *done, struct ff_err *err)
{
    *done = false;
    const struct context_source *src = &c->s->v[i];
    if (c->s->instr != CONTEXT_ADD || c->o->extract == NULL || src->type != S_IFREG)
        return 0;
    int fd = cp_open_source(c, i, err);
    if (fd < 0)
        return fd;
    enum context_archive kind = CONTEXT_ARCHIVE_NONE;
    int rc = context_archive_detect(fd, &kind, err);
    if (rc == 0 && kind != CONTEXT_ARCHIVE_NONE) {
        rc = cp_extract(c, fd, kind, err);
        *done = true;
    }
    (void)close(fd);
    return rc;
}

static int cp_url(struct cp *c, size_t i, struct ff_err *err)
{
    const struct context_source *src = &c->s->v[i];
    const struct context_attrs *a = &c->o->attrs;
    uid_t uid = a->chown ? a->uid : 0;
    gid_t gid = a->chown ? a->gid : 0;
    mode_t mode = a->chmod >= 0 ? (mode_t)a->chmod : 0600;
    int rc = cp_file_target(c, i, src->name, err);
    if (rc == 0 && lseek(c->url_fd[i], 0, SEEK_SET) != 0)
        rc = cp_sys(c, "rewind the download for", c->base[i], err);
    if (rc == 0)
        rc = cp_file(c, c->url_fd[i], c->top_parent, c->top_name, c->base[i], uid, gid, mode, NULL,
                     err);
    return rc;
}

static int cp_source(struct cp *c, struct context_walk *w, size_t i, struct ff_err *err)
{
    const struct context_source *src = &c->s->v[i];
    c->cur = i;
    if (src->kind == CONTEXT_SRC_URL)
        return cp_url(c, i, err);
    bool done = false;
    int rc = cp_try_archive(c, i, &done, err);
    if (rc != 0 || done)
        return rc;
    if (src->type == S_IFDIR)
        rc = cp_mkdir_all(c, c->dest, &c->top_dir, &c->base[i], err);
    else
        rc = cp_file_target(c, i, src->name, err);
    if (rc == 0)
        rc = context_walk_source(w, i, cp_visit, c, err);
    return rc;
}

/* dest made absolute against workdir and cleaned; whether its form makes
 * it a directory. */
static int cp_dest(struct cp *c, const char *dest, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    const char *wd = c->o->workdir != NULL ? c->o->workdir : "/";
    size_t n = strlen(dest);
    c->dest_dir = n == 0 || strcmp(dest, ".") == 0 || dest[n - 1] == '/' ||
                  (n >= 2 && dest[n - 1] == '.' && dest[n - 2] == '/') || c->s->n > 1;
    char *full = dest[0] == '/' ? strdup(dest) : ff_asprintf("/%s/%s", wd, dest);
    if (full == NULL)
        return cp_oom(err);
    bool escapes = false;
    int rc = context_path_clean(full, &c->dest, &escapes, err);
    free(full);
    if (rc != 0)
        return ff_err_wrap(err, "%s: destination \"%s\"", c->instr, quote(dest, q));
    return 0;
}

/* The destination's parents (or itself, when it is a directory) exist
 * before anything is copied, as BuildKit's Copy ensures. */
static int cp_ensure_dest(struct cp *c, struct ff_err *err)
{
    if (c->dest_dir)
        return cp_mkdir_all(c, c->dest, NULL, NULL, err);
    const char *slash = strrchr(c->dest, '/');
    if (slash == NULL)
        return 0;
    char *parent = ff_strndup(c->dest, (size_t)(slash - c->dest));
    if (parent == NULL)
        return cp_oom(err);
    int rc = cp_mkdir_all(c, parent, NULL, NULL, err);
    free(parent);
    return rc;
}

/* Every download first: a wrong checksum must leave the rootfs untouched. */
static int cp_fetch_all(struct cp *c, struct ff_err *err)
{
    const struct copy_opts *o = c->o;
    for (size_t i = 0; i < c->s->n; i++) {
        const struct context_source *src = &c->s->v[i];
        if (src->kind != CONTEXT_SRC_URL)
            continue;
        int rc = fetch_url(o->http, src->url, &src->checksum, o->tmp_dir,
                           o->fetch_max_bytes ? o->fetch_max_bytes : CONTEXT_FETCH_MAX_BYTES,
                           o->fetch_timeout_ms ? o->fetch_timeout_ms : CONTEXT_FETCH_TIMEOUT_MS,
                           &c->url_fd[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void cp_release(struct cp *c)
{
    cp_source_done(c);
    for (size_t i = 0; i < c->s->n; i++) {
        if (c->url_fd != NULL && c->url_fd[i] >= 0)
            (void)close(c->url_fd[i]);
        if (c->base != NULL)
            free(c->base[i]);
    }
    free(c->url_fd);
    free(c->base);
    free(c->buf);
    free(c->dest);
    if (c->rootfd >= 0)
        (void)close(c->rootfd);
}

static int cp_init(struct cp *c, const char *root_dir, const struct context_sources *s,
                   const struct copy_opts *opts, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->o = opts;
    c->instr = context_instr_name(s->instr);
    c->top_parent = -1;
    c->top_dir = -1;
    c->rootfd = open(root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    c->base = calloc(s->n ? s->n : 1, sizeof(*c->base));
    c->url_fd = malloc((s->n ? s->n : 1) * sizeof(*c->url_fd));
    c->buf = malloc(CONTEXT_IO_BUF);
    if (c->url_fd != NULL) {
        for (size_t i = 0; i < s->n; i++)
            c->url_fd[i] = -1;
    }
    if (c->rootfd < 0)
        return CONTEXT_FAIL(err, FF_ENOTFOUND, "%s: cannot open the rootfs \"%s\": %s", c->instr,
                            quote(root_dir, q), strerror(errno));
    if (c->base == NULL || c->url_fd == NULL || c->buf == NULL)
        return cp_oom(err);
    if (opts->attrs.chmod > 07777)
        return CONTEXT_FAIL(err, FF_EINVAL, "%s: --chmod %o out of range", c->instr,
                            (unsigned)opts->attrs.chmod);
    return 0;
}

int copy_into(const char *root_dir, const struct context_sources *s, const char *dest,
              const struct copy_opts *opts, struct ff_err *err)
{
    struct cp c;
    struct context_walk *w = NULL;
    int rc = cp_init(&c, root_dir, s, opts, err);
    if (rc == 0)
        rc = cp_dest(&c, dest, err);
    if (rc == 0)
        rc = cp_fetch_all(&c, err);
    if (rc == 0)
        rc = cp_ensure_dest(&c, err);
    if (rc == 0)
        rc = context_walk_new(s, &w, err);
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        rc = cp_source(&c, w, i, err);
        cp_source_done(&c);
    }
    context_walk_free(w);
    cp_release(&c);
    return rc;
}
