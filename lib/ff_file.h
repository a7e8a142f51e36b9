/* Reading a whole small file into memory: how daemons and tools load keys,
 * configuration, recipes, tokens and memos, with one set of checks (a
 * regular file, a size cap held even if the file grows while read, EINTR
 * and short reads handled, secrets wiped). */
#ifndef FF_FILE_H
#define FF_FILE_H

#include "ff_err.h"

#include <stddef.h>

enum ff_file_flags {
    FF_FILE_NOFOLLOW = 1u << 0, /* a symbolic link as the last component is refused */
    FF_FILE_SECRET = 1u << 1    /* bytes read are wiped before any buffer is freed */
};

/* Reads everything from the open descriptor fd (named name in messages),
 * at most max bytes, into *out: malloc'd, NUL-terminated after *len bytes,
 * freed by the caller (wiped first when secret). fd stays open. Errors:
 * FF_ETOOBIG ("name" is larger than max bytes), FF_ENOMEM, FF_EIO (the
 * errno text), FF_ERANGE (max is SIZE_MAX - 1 or more); *out is NULL
 * then. */
int ff_file_read_fd(int fd, const char *name, size_t max, unsigned flags, char **out,
                    size_t *len, struct ff_err *err);

/* Opens path and reads it as ff_file_read_fd does; flags are enum
 * ff_file_flags. Errors: FF_ENOTFOUND ("path" does not exist),
 * FF_EINVAL (not a regular file, or a symbolic link under
 * FF_FILE_NOFOLLOW), and those of ff_file_read_fd; each message names
 * path. */
int ff_file_read(const char *path, size_t max, unsigned flags, char **out, size_t *len,
                 struct ff_err *err);

#endif
