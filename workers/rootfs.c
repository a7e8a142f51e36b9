/* The rootfs of a step: an overlay of the parent layers with a fresh upper
 * directory.
 *
 * mount(2) takes its options in one page, and lowerdir= holds every
 * layer's path: about 25 absolute cache paths of 150 bytes fill it. When
 * the paths do not fit (or hold characters overlay would need escaped) each
 * directory is opened and passed as /proc/self/fd/N, about 19 bytes a
 * layer, which the kernel resolves through the magic link while mounting.
 * That bounds a step at ROOTFS_LOWERS_MAX layers with room to spare; the
 * mount no longer needs the descriptors once it exists. Copying layers into
 * one directory, the other way out, would cost seconds per step and is not
 * needed below that bound. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

/* Options after the directories: every change must be a plain entry in
 * upper (no redirect or metacopy xattrs the layer writer cannot turn into
 * tar), no index to keep in step with the lowers, and no syncs for a
 * directory that is thrown away when the worker dies mid-step. */
#define ROOTFS_EXTRA_OPTS ",redirect_dir=off,metacopy=off,index=off,volatile"
/* EBUSY right after a container exits is a reference still being dropped;
 * 50 tries 20 ms apart wait out a second before detaching lazily. */
#define ROOTFS_UMOUNT_TRIES 50
#define ROOTFS_UMOUNT_WAIT_NS 20000000L

static bool path_plain(const char *p)
{
    /* ':' separates lowers and ',' options; '\' escapes them. Rather than
     * trust every kernel's unescaping, such paths go by descriptor. */
    return strpbrk(p, ":,\\") == NULL;
}

static int check_dirs(const char *target, const char *const *lowers, size_t n,
                      const char *upper, const char *work, struct ff_err *err)
{
    if (n == 0)
        return ff_err_set(err, FF_EINVAL, "overlay \"%s\": no lower layers", target);
    if (n > ROOTFS_LOWERS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "overlay \"%s\": %zu lower layers (at most %d)",
                          target, n, ROOTFS_LOWERS_MAX);
    const char *all[] = {target, upper, work};
    for (size_t i = 0; i < 3; i++) {
        if (all[i] == NULL || all[i][0] != '/')
            return ff_err_set(err, FF_EINVAL, "overlay: \"%s\" is not an absolute path",
                              all[i] == NULL ? "(null)" : all[i]);
    }
    for (size_t i = 0; i < n; i++) {
        if (lowers[i] == NULL || lowers[i][0] != '/')
            return ff_err_set(err, FF_EINVAL, "overlay: lower %zu \"%s\" is not an absolute path",
                              i, lowers[i] == NULL ? "(null)" : lowers[i]);
    }
    return 0;
}

/* names[0..n) are the lowers, then upper and work. */
static int build_opts(const char *const *names, size_t n, struct ff_buf *b)
{
    int rc = ff_buf_append_str(b, "lowerdir=");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0)
            rc = ff_buf_append_str(b, ":");
        if (rc == 0)
            rc = ff_buf_append_str(b, names[i]);
    }
    if (rc == 0)
        rc = ff_buf_printf(b, ",upperdir=%s,workdir=%s" ROOTFS_EXTRA_OPTS, names[n], names[n + 1]);
    return rc;
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            (void)close(fds[i]);
    }
}

/* Opens every directory and names it /proc/self/fd/N in names. */
static int open_by_fd(const char *const *paths, size_t n, int *fds, char **names, struct ff_err *err)
{
    for (size_t i = 0; i < n; i++) {
        fds[i] = open(paths[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fds[i] < 0)
            return ff_err_set(err, FF_EIO, "overlay: cannot open directory \"%s\": %s",
                              paths[i], strerror(errno));
        names[i] = ff_asprintf("/proc/self/fd/%d", fds[i]);
        if (names[i] == NULL)
            return ff_err_set(err, FF_ENOMEM, "overlay: out of memory");
    }
    return 0;
}

static int do_mount(const char *target, const char *opts, size_t n_lowers, struct ff_err *err)
{
    if (mount("overlay", target, "overlay", 0, opts) != 0) {
        int e = errno;
        return ff_err_set(err, FF_EIO, "overlay mount at \"%s\" of %zu layers failed: %s%s",
                          target, n_lowers, strerror(e),
                          e == EINVAL ? " (upper and work must be fresh directories on one "
                                        "file system)" : "");
    }
    return 0;
}

int rootfs_mount(const char *target, const char *const *lowers, size_t n_lowers,
                 const char *upper, const char *work, struct ff_err *err)
{
    int rc = check_dirs(target, lowers, n_lowers, upper, work, err);
    if (rc != 0)
        return rc;
    size_t n = n_lowers + 2;
    const char **paths = calloc(n, sizeof(*paths));
    char **names = calloc(n, sizeof(*names));
    int *fds = malloc(n * sizeof(*fds));
    struct ff_buf opts;
    ff_buf_init(&opts, (size_t)1 << 20);
    for (size_t i = 0; fds != NULL && i < n; i++)
        fds[i] = -1;
    if (paths == NULL || names == NULL || fds == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "overlay: out of memory");
        goto out;
    }
    bool plain = true;
    for (size_t i = 0; i < n; i++) {
        paths[i] = i < n_lowers ? lowers[i] : i == n_lowers ? upper : work;
        plain = plain && path_plain(paths[i]);
    }
    long page = sysconf(_SC_PAGESIZE);
    rc = build_opts((const char *const *)paths, n_lowers, &opts);
    if (rc != 0) {
        rc = ff_err_set(err, rc, "overlay: building options failed");
        goto out;
    }
    if (!plain || page <= 0 || opts.len >= (size_t)page) {
        rc = open_by_fd((const char *const *)paths, n, fds, names, err);
        if (rc != 0)
            goto out;
        ff_buf_reset(&opts);
        rc = build_opts((const char *const *)names, n_lowers, &opts);
        if (rc != 0) {
            rc = ff_err_set(err, rc, "overlay: building options failed");
            goto out;
        }
    }
    rc = do_mount(target, opts.data, n_lowers, err);
out:
    if (fds != NULL)
        close_fds(fds, n);
    if (names != NULL) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
    }
    free(names);
    free((void *)paths);
    free(fds);
    ff_buf_release(&opts);
    return rc;
}

int rootfs_unmount(const char *target, struct ff_err *err)
{
    for (int i = 0; i < ROOTFS_UMOUNT_TRIES; i++) {
        if (umount2(target, UMOUNT_NOFOLLOW) == 0)
            return 0;
        if (errno == EINVAL || errno == ENOENT)
            return 0; /* not (or no longer) a mount point */
        if (errno != EBUSY)
            return ff_err_set(err, FF_EIO, "unmounting \"%s\" failed: %s", target,
                              strerror(errno));
        struct timespec ts = {0, ROOTFS_UMOUNT_WAIT_NS};
        (void)nanosleep(&ts, NULL);
    }
    if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL)
        return ff_err_set(err, FF_EIO, "unmounting \"%s\" failed: busy, and detaching: %s",
                          target, strerror(errno));
    return 0;
}
