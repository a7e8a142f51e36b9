#include "ff_file.h"

#include "ff_secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* First allocation when the size is unknown (fstat says 0: /proc files,
 * pipes); doubled as needed up to max + 2 (max, one byte to see more,
 * the NUL). */
#define FILE_READ_START 4096

static void buf_drop(char *buf, size_t len, unsigned flags)
{
    if (buf != NULL && (flags & FF_FILE_SECRET) != 0)
        ff_secret_wipe(buf, len);
    free(buf);
}

/* Grows *buf (holding len bytes) to at least want bytes, at most limit. */
static int buf_grow(char **buf, size_t *cap, size_t len, size_t want, size_t limit,
                    unsigned flags)
{
    if (want > limit)
        want = limit;
    size_t ncap = *cap != 0 ? *cap : FILE_READ_START;
    while (ncap < want)
        ncap = ncap > limit / 2 ? limit : ncap * 2;
    if (ncap > limit)
        ncap = limit;
    char *nbuf = malloc(ncap);
    if (nbuf == NULL)
        return FF_ENOMEM;
    if (len > 0)
        memcpy(nbuf, *buf, len);
    buf_drop(*buf, len, flags);
    *buf = nbuf;
    *cap = ncap;
    return 0;
}

int ff_file_read_fd(int fd, const char *name, size_t max, unsigned flags, char **out,
                    size_t *len, struct ff_err *err)
{
    *out = NULL;
    *len = 0;
    if (max >= SIZE_MAX - 1)
        return ff_err_set(err, FF_ERANGE, "\"%s\": no size limit given", name);
    /* One byte past max tells a file that is (or grew) too big, one more
     * holds the NUL. */
    size_t limit = max + 2, cap = 0, got = 0;
    char *buf = NULL;
    struct stat st;
    size_t hint = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                          (uint64_t)st.st_size <= max
                      ? (size_t)st.st_size + 2
                      : FILE_READ_START;
    if (buf_grow(&buf, &cap, 0, hint, limit, flags) != 0 || buf == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory reading \"%s\"", name);
    int rc = 0;
    for (;;) {
        if (got + 1 >= cap && buf_grow(&buf, &cap, got, got + 2, limit, flags) != 0) {
            rc = ff_err_set(err, FF_ENOMEM, "out of memory reading \"%s\"", name);
            break;
        }
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ff_err_set(err, FF_EIO, "cannot read \"%s\": %s", name, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max) {
            rc = ff_err_set(err, FF_ETOOBIG, "\"%s\" is larger than %zu bytes", name, max);
            break;
        }
    }
    if (rc != 0) {
        buf_drop(buf, got, flags);
        return rc;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

int ff_file_read(const char *path, size_t max, unsigned flags, char **out, size_t *len,
                 struct ff_err *err)
{
    *out = NULL;
    *len = 0;
    int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if ((flags & FF_FILE_NOFOLLOW) != 0)
        oflags |= O_NOFOLLOW;
    int fd = open(path, oflags);
    if (fd < 0) {
        if (errno == ENOENT)
            return ff_err_set(err, FF_ENOTFOUND, "\"%s\" does not exist", path);
        if (errno == ELOOP && (flags & FF_FILE_NOFOLLOW) != 0)
            return ff_err_set(err, FF_EINVAL, "\"%s\" is a symbolic link", path);
        return ff_err_set(err, FF_EIO, "cannot open \"%s\": %s", path, strerror(errno));
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = ff_err_set(err, FF_EIO, "cannot stat \"%s\": %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = ff_err_set(err, FF_EINVAL, "\"%s\" is not a regular file", path);
    else
        rc = ff_file_read_fd(fd, path, max, flags, out, len, err);
    (void)close(fd);
    return rc;
}
