/* Concurrent-session limits as lock files: a limit of n for a name is the
 * files <dir>/<kind>.<name>.0 .. n-1, and a session holds one of them with
 * flock for as long as it lives. The kernel drops the lock when the
 * process dies, however it dies, so no count can leak; and since every
 * session is its own process, no shared counter is needed. */
#include "gitd.h"

#include "ff_str.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest name in a slot file: user names and IPv6 addresses are shorter. */
#define SLOT_NAME_MAX 64

static bool name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > SLOT_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f || c == '/')
            return false;
    }
    return true;
}

/* Locks the file at path if nobody holds it. The file may be removed by
 * slot_sweep between our open and our lock; a lock on a removed file
 * counts for nobody, so it is checked and retried. Returns the locked
 * descriptor, -1 with errno EWOULDBLOCK when held, or -1 on failure. */
static int lock_path(const char *path)
{
    for (int tries = 0; tries < 3; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            (void)close(fd);
            errno = e;
            return -1;
        }
        struct stat held, named;
        if (fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_ino == named.st_ino &&
            held.st_dev == named.st_dev)
            return fd;
        (void)close(fd);
    }
    errno = EAGAIN;
    return -1;
}

int slot_take(int *fd, const char *dir, const char *kind, const char *name, unsigned limit,
              struct ff_err *err)
{
    *fd = -1;
    if (!name_ok(name)) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(name, strlen(name), q);
        return ff_err_set(err, FF_EINVAL, "slot name \"%s\" is not a file name", q);
    }
    for (unsigned i = 0; i < limit; i++) {
        char *path = ff_asprintf("%s/%s.%s.%u", dir, kind, name, i);
        if (path == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
        int got = lock_path(path);
        int e = errno;
        free(path);
        if (got >= 0) {
            *fd = got;
            return 0;
        }
        if (e != EWOULDBLOCK && e != EAGAIN)
            return ff_err_set(err, FF_EIO, "slot %s.%s.%u in \"%s\": %s", kind, name, i, dir,
                              strerror(e));
    }
    return ff_err_set(err, FF_EBUSY, "all %u %s slots of \"%s\" are taken", limit, kind, name);
}

int slot_sweep(const char *dir, struct ff_err *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (dfd >= 0)
            (void)close(dfd);
        return ff_err_set(err, FF_EIO, "run directory \"%s\": %s", dir, strerror(e));
    }
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        int fd = openat(dfd, ent->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
            continue;
        /* Held: in use. Free: remove it while we hold it, so that whoever
         * opened it meanwhile sees the name gone and retries. */
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0)
            (void)unlinkat(dfd, ent->d_name, 0);
        (void)close(fd);
    }
    (void)closedir(d);
    return 0;
}
