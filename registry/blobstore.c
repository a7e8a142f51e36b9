/* Content-addressed blob storage on a local file system.
 *
 * Crash safety comes from the order of operations: bytes go to a file in
 * tmp/ while they are hashed; at commit the digest is checked, the file is
 * fsync'd, hard-linked to blobs/sha256/<ab>/<hex>, and that directory is
 * fsync'd before anyone is told. A crash before the link leaves only debris
 * in tmp/ (removed at the next open); after it, the blob is whole. link()
 * rather than rename() so that an existing blob is never replaced: the
 * first copy of a digest wins and later ones are dropped. */
#include "registry.h"

#include "ff_log.h"
#include "ff_str.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every 8 MiB written, write-back of that stretch is started, so a commit's
 * fsync finds little left to flush; small enough to keep the disk busy
 * during an upload, large enough to cost nothing per chunk. */
#define WRITEBACK_CHUNK ((int64_t)8 << 20)
/* Random bytes in a temporary file name: collisions are then impossible in
 * practice, and O_EXCL catches the rest. */
#define TMP_RANDOM_BYTES 8
/* "blob-" + hex + NUL */
#define TMP_NAME_SIZE (5 + 2 * TMP_RANDOM_BYTES + 1)
/* "ab/" + 64 hex + NUL: a blob's path under blobs/sha256/ */
#define BLOB_PATH_SIZE (3 + FF_DIGEST_HEX_SIZE)
/* Number of fan-out directories (first two hex digits). */
#define FANOUT_DIRS 256

struct blob_store {
    char *root;       /* for messages */
    int root_fd;
    int lock_fd;
    int sha_fd;       /* blobs/sha256 */
    int tmp_fd;       /* tmp */
    int64_t max_size;
};

struct blob_writer {
    struct blob_store *bs;
    int fd;
    char name[TMP_NAME_SIZE];
    bool has_temp;    /* name still exists in tmp/ */
    bool spent;       /* a write failed or commit ran: no more use */
    struct ff_digest_ctx *ctx;
    struct spool *spool; /* writes to fd and hashes into ctx */
    int64_t size;         /* bytes taken, flushed or not */
};

static void blob_path(const struct ff_digest *d, char out[BLOB_PATH_SIZE])
{
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(d, hex);
    out[0] = hex[0];
    out[1] = hex[1];
    out[2] = '/';
    memcpy(out + 3, hex, FF_DIGEST_HEX_SIZE);
}

/* Name of fan-out directory i: two lower-case hex digits. */
static void fanout_name(unsigned i, char out[3])
{
    unsigned char b = (unsigned char)i;
    ff_hex_encode(&b, 1, out);
}

/* For descriptors whose data is already fsync'd or never written. */
static void fd_close(int fd)
{
    if (fd >= 0)
        (void)close(fd);
}

/* Creates name in parent when missing; *created tells whether it did. */
static int dir_ensure(int parent, const char *name, bool *created, struct ff_err *err)
{
    if (mkdirat(parent, name, 0700) == 0) {
        *created = true;
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    return ff_err_set(err, FF_EIO, "blob store: mkdir \"%s\": %s", name, strerror(errno));
}

static int dir_open(int parent, const char *name, int *out, struct ff_err *err)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "blob store: open \"%s\": %s", name, strerror(errno));
    *out = fd;
    return 0;
}

static int fsync_checked(int fd, const char *what, struct ff_err *err)
{
    if (fsync(fd) != 0)
        return ff_err_set(err, FF_EIO, "blob store: fsync %s: %s", what, strerror(errno));
    return 0;
}

/* Removes every entry of tmp/: files there were never acknowledged. */
static int tmp_clean(struct blob_store *bs, struct ff_err *err)
{
    int fd = openat(bs->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int rc = ff_err_set(err, FF_EIO, "blob store \"%s\": read tmp/: %s", bs->root,
                            strerror(errno));
        fd_close(fd);
        return rc;
    }
    unsigned removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(bs->tmp_fd, e->d_name, 0) == 0)
            removed++;
        else
            ff_log_warn(NULL, "blobstore.tmp_clean", "root=%s file=%s error=%s", bs->root,
                        e->d_name, strerror(errno));
    }
    closedir(d);
    if (removed > 0)
        ff_log_info(NULL, "blobstore.tmp_clean", "root=%s removed=%u", bs->root, removed);
    return 0;
}

/* Creates the layout, including all fan-out directories up front, so that
 * a commit never has to create (and fsync) a directory. */
static int layout_create(struct blob_store *bs, struct ff_err *err)
{
    bool created = false;
    int rc = dir_ensure(bs->root_fd, "blobs", &created, err);
    if (rc == 0)
        rc = dir_ensure(bs->root_fd, "tmp", &created, err);
    if (rc == 0 && created)
        rc = fsync_checked(bs->root_fd, "root", err);
    int blobs_fd = -1;
    if (rc == 0)
        rc = dir_open(bs->root_fd, "blobs", &blobs_fd, err);
    created = false;
    if (rc == 0)
        rc = dir_ensure(blobs_fd, "sha256", &created, err);
    if (rc == 0 && created)
        rc = fsync_checked(blobs_fd, "blobs/", err);
    if (rc == 0)
        rc = dir_open(blobs_fd, "sha256", &bs->sha_fd, err);
    fd_close(blobs_fd);
    if (rc == 0)
        rc = dir_open(bs->root_fd, "tmp", &bs->tmp_fd, err);
    created = false;
    for (unsigned i = 0; rc == 0 && i < FANOUT_DIRS; i++) {
        char name[3];
        fanout_name(i, name);
        rc = dir_ensure(bs->sha_fd, name, &created, err);
    }
    if (rc == 0 && created)
        rc = fsync_checked(bs->sha_fd, "blobs/sha256/", err);
    if (rc != 0)
        return ff_err_wrap(err, "\"%s\"", bs->root);
    return 0;
}

/* exclusive: the serving registry's open, which owns tmp/ and the upload
 * sessions; otherwise a collector's open beside it. */
static int store_open(const char *root, int64_t max_blob_size, bool exclusive,
                      struct blob_store **out, struct ff_err *err)
{
    struct blob_store *bs = calloc(1, sizeof(*bs));
    if (bs == NULL)
        return ff_err_set(err, FF_ENOMEM, "blob store: out of memory");
    bs->root_fd = bs->lock_fd = bs->sha_fd = bs->tmp_fd = -1;
    bs->max_size = max_blob_size > 0 ? max_blob_size : BLOB_SIZE_MAX_DEFAULT;
    int rc = 0;
    bs->root = strdup(root);
    if (bs->root == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "blob store: out of memory");
        goto fail;
    }
    if (mkdir(root, 0700) != 0 && errno != EEXIST) {
        rc = ff_err_set(err, FF_EIO, "blob store: mkdir \"%s\": %s", root, strerror(errno));
        goto fail;
    }
    bs->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bs->root_fd < 0) {
        rc = ff_err_set(err, FF_EIO, "blob store: open \"%s\": %s", root, strerror(errno));
        goto fail;
    }
    if (!exclusive) {
        rc = layout_create(bs, err);
        if (rc != 0)
            goto fail;
        *out = bs;
        return 0;
    }
    bs->lock_fd = openat(bs->root_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (bs->lock_fd < 0) {
        rc = ff_err_set(err, FF_EIO, "blob store \"%s\": open lock: %s", root, strerror(errno));
        goto fail;
    }
    if (flock(bs->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            rc = ff_err_set(err, FF_EBUSY, "blob store \"%s\": in use by another process",
                            root);
        else
            rc = ff_err_set(err, FF_EIO, "blob store \"%s\": lock: %s", root, strerror(errno));
        goto fail;
    }
    rc = layout_create(bs, err);
    if (rc == 0)
        rc = tmp_clean(bs, err);
    if (rc != 0)
        goto fail;
    *out = bs;
    return 0;
fail:
    blob_store_free(bs);
    return rc;
}

int blob_store_open(const char *root, int64_t max_blob_size, struct blob_store **out,
                    struct ff_err *err)
{
    return store_open(root, max_blob_size, true, out, err);
}

int blob_store_open_shared(const char *root, struct blob_store **out, struct ff_err *err)
{
    return store_open(root, 0, false, out, err);
}

void blob_store_free(struct blob_store *bs)
{
    if (bs == NULL)
        return;
    fd_close(bs->tmp_fd);
    fd_close(bs->sha_fd);
    fd_close(bs->lock_fd); /* releases the flock */
    fd_close(bs->root_fd);
    free(bs->root);
    free(bs);
}

int blob_store_root_fd(const struct blob_store *bs)
{
    return bs->root_fd;
}

int64_t blob_store_max_size(const struct blob_store *bs)
{
    return bs->max_size;
}

static int not_found_or_io(const struct blob_store *bs, const struct ff_digest *d,
                           const char *op, struct ff_err *err)
{
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, ds);
    if (errno == ENOENT)
        return ff_err_set(err, FF_ENOTFOUND, "blob %s: not found", ds);
    return ff_err_set(err, FF_EIO, "blob store \"%s\": %s %s: %s", bs->root, op, ds,
                      strerror(errno));
}

int blob_store_stat(struct blob_store *bs, const struct ff_digest *d, int64_t *size,
                    struct ff_err *err)
{
    char path[BLOB_PATH_SIZE];
    blob_path(d, path);
    struct stat st;
    if (fstatat(bs->sha_fd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return not_found_or_io(bs, d, "stat", err);
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return not_found_or_io(bs, d, "stat", err);
    }
    *size = (int64_t)st.st_size;
    return 0;
}

int blob_store_open_read(struct blob_store *bs, const struct ff_digest *d, int *fd,
                         int64_t *size, struct ff_err *err)
{
    char path[BLOB_PATH_SIZE];
    blob_path(d, path);
    int f = openat(bs->sha_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0)
        return not_found_or_io(bs, d, "open", err);
    struct stat st;
    if (fstat(f, &st) != 0) {
        int rc = not_found_or_io(bs, d, "fstat", err);
        fd_close(f);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        fd_close(f);
        errno = EINVAL;
        return not_found_or_io(bs, d, "open", err);
    }
    *fd = f;
    *size = (int64_t)st.st_size;
    return 0;
}

int blob_fd_reopen_direct(int dir_fd, const char *name, int access, int same_as)
{
    int f = openat(dir_fd, name, access | O_DIRECT | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0)
        return -1;
    struct stat a;
    struct stat b;
    if (fstat(f, &a) != 0 || fstat(same_as, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
        fd_close(f);
        return -1;
    }
    return f;
}

int blob_store_open_direct(struct blob_store *bs, const struct ff_digest *d, int fd)
{
    char path[BLOB_PATH_SIZE];
    blob_path(d, path);
    return blob_fd_reopen_direct(bs->sha_fd, path, O_RDONLY, fd);
}

int blob_store_delete(struct blob_store *bs, const struct ff_digest *d, struct ff_err *err)
{
    char path[BLOB_PATH_SIZE];
    blob_path(d, path);
    if (unlinkat(bs->sha_fd, path, 0) != 0)
        return not_found_or_io(bs, d, "unlink", err);
    return 0;
}

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* Walks one fan-out directory. */
static int fanout_iterate(struct blob_store *bs, const char *sub, blob_store_iter_fn fn,
                          void *ctx, struct ff_err *err)
{
    int fd = openat(bs->sha_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int rc = ff_err_set(err, FF_EIO, "blob store \"%s\": read blobs/sha256/%s: %s",
                            bs->root, sub, strerror(errno));
        fd_close(fd);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n != FF_DIGEST_HEX_SIZE - 1 || !lower_hex(e->d_name, n) ||
            memcmp(e->d_name, sub, 2) != 0)
            continue;
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue; /* deleted while we walked */
            rc = ff_err_set(err, FF_EIO, "blob store \"%s\": stat %s: %s", bs->root,
                            e->d_name, strerror(errno));
            break;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        struct ff_digest dg;
        if (ff_hex_decode(e->d_name, FF_DIGEST_SIZE, dg.bytes) != 0)
            continue;
        rc = fn(ctx, &dg, (int64_t)st.st_size, st.st_mtime);
    }
    closedir(d);
    return rc;
}

int blob_store_iterate(struct blob_store *bs, blob_store_iter_fn fn, void *ctx,
                       struct ff_err *err)
{
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < FANOUT_DIRS; i++) {
        char sub[3];
        fanout_name(i, sub);
        rc = fanout_iterate(bs, sub, fn, ctx, err);
    }
    return rc;
}

int blob_fd_write(int fd, int64_t offset, const void *data, size_t len, struct ff_err *err)
{
    const char *p = data;
    int64_t start = offset;
    size_t left = len;
    while (left > 0) {
        ssize_t n = pwrite(fd, p, left, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return ff_err_set(err, FF_EIO, "write: %s", n < 0 ? strerror(errno)
                                                             : "no progress");
        p += n;
        left -= (size_t)n;
        offset += n;
    }
    int64_t done = (offset / WRITEBACK_CHUNK) * WRITEBACK_CHUNK;
    int64_t from = (start / WRITEBACK_CHUNK) * WRITEBACK_CHUNK;
    /* A hint only: if it fails, the fsync at commit still flushes it all. */
    if (done > from)
        (void)sync_file_range(fd, (off_t)from, (off_t)(done - from), SYNC_FILE_RANGE_WRITE);
    return 0;
}

/* Hashes fd from offset 0. */
static int fd_hash(int fd, struct ff_digest *out, struct ff_err *err)
{
    if (lseek(fd, 0, SEEK_SET) != 0)
        return ff_err_set(err, FF_EIO, "seek: %s", strerror(errno));
    return ff_digest_fd(fd, out, err);
}

int blob_store_adopt(struct blob_store *bs, int dirfd, const char *name, int fd,
                     const struct ff_digest *actual, const struct ff_digest *expected,
                     struct ff_digest *actual_out, int64_t *size, struct ff_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return ff_err_set(err, FF_EIO, "blob store \"%s\": fstat \"%s\": %s", bs->root, name,
                          strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ff_err_set(err, FF_EIO, "blob store \"%s\": \"%s\" is not a regular file",
                          bs->root, name);
    if ((int64_t)st.st_size > bs->max_size)
        return ff_err_set(err, FF_ETOOBIG, "blob: %lld bytes, limit is %lld",
                          (long long)st.st_size, (long long)bs->max_size);
    struct ff_digest got;
    if (actual != NULL) {
        got = *actual;
    } else {
        int rc = fd_hash(fd, &got, err);
        if (rc != 0)
            return ff_err_wrap(err, "blob store \"%s\": hash \"%s\"", bs->root, name);
    }
    char gs[FF_DIGEST_STR_SIZE];
    ff_digest_format(&got, gs);
    if (expected != NULL && !ff_digest_equal(expected, &got)) {
        char es[FF_DIGEST_STR_SIZE];
        ff_digest_format(expected, es);
        return ff_err_set(err, FF_EINVAL, "blob: digest mismatch (expected %s, got %s)", es,
                          gs);
    }
    if (fsync(fd) != 0)
        return ff_err_set(err, FF_EIO, "blob store \"%s\": fsync %s: %s", bs->root, gs,
                          strerror(errno));
    char path[BLOB_PATH_SIZE];
    blob_path(&got, path);
    char sub[3] = {path[0], path[1], '\0'};
    int linked = linkat(dirfd, name, bs->sha_fd, path, 0);
    if (linked != 0 && errno == ENOENT) {
        /* The fan-out directory went missing (an operator's cleanup?):
         * recreate it durably and try once more. */
        bool created = false;
        if (dir_ensure(bs->sha_fd, sub, &created, err) != 0 ||
            fsync_checked(bs->sha_fd, "blobs/sha256/", err) != 0)
            return ff_err_wrap(err, "blob %s", gs);
        linked = linkat(dirfd, name, bs->sha_fd, path, 0);
    }
    if (linked != 0) {
        if (errno != EEXIST)
            return ff_err_set(err, FF_EIO, "blob store \"%s\": link %s: %s", bs->root, gs,
                              strerror(errno));
        /* Same digest, same bytes: keep the copy we have, and make it look
         * new so a GC grace period covers the client that just pushed it. */
        if (utimensat(bs->sha_fd, path, NULL, AT_SYMLINK_NOFOLLOW) != 0)
            return ff_err_set(err, FF_EIO, "blob store \"%s\": touch %s: %s", bs->root, gs,
                              strerror(errno));
    } else {
        int sub_fd = -1;
        int rc = dir_open(bs->sha_fd, sub, &sub_fd, err);
        if (rc == 0)
            rc = fsync_checked(sub_fd, "blobs/sha256/<ab>", err);
        fd_close(sub_fd);
        if (rc != 0)
            return ff_err_wrap(err, "blob %s", gs);
    }
    if (actual_out != NULL)
        *actual_out = got;
    if (size != NULL)
        *size = (int64_t)st.st_size;
    return 0;
}

int blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct ff_err *err)
{
    struct blob_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return ff_err_set(err, FF_ENOMEM, "blob writer: out of memory");
    w->bs = bs;
    w->fd = -1;
    int rc = ff_digest_ctx_new(&w->ctx, err);
    if (rc != 0)
        goto fail;
    for (int attempt = 0; attempt < 4 && w->fd < 0; attempt++) {
        unsigned char rnd[TMP_RANDOM_BYTES];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            rc = ff_err_set(err, FF_ECRYPTO, "blob writer: no randomness");
            goto fail;
        }
        memcpy(w->name, "blob-", 5);
        ff_hex_encode(rnd, sizeof(rnd), w->name + 5);
        w->fd = openat(bs->tmp_fd, w->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (w->fd < 0 && errno != EEXIST)
            break;
    }
    if (w->fd < 0) {
        rc = ff_err_set(err, FF_EIO, "blob store \"%s\": create tmp/%s: %s", bs->root, w->name,
                        strerror(errno));
        goto fail;
    }
    w->has_temp = true;
    rc = spool_new(w->fd, 0, w->ctx, &w->spool, err);
    if (rc != 0)
        goto fail;
    spool_direct_open(w->spool, bs->tmp_fd, w->name);
    *out = w;
    return 0;
fail:
    blob_writer_free(w);
    return rc;
}

int blob_writer_write(struct blob_writer *w, const void *data, size_t len, struct ff_err *err)
{
    if (w->spent)
        return ff_err_set(err, FF_EINVAL, "blob writer: used after an error or a commit");
    int64_t end;
    if (len > (size_t)INT64_MAX || __builtin_add_overflow(w->size, (int64_t)len, &end) ||
        end > w->bs->max_size)
        return ff_err_set(err, FF_ETOOBIG, "blob: larger than the limit of %lld bytes",
                          (long long)w->bs->max_size);
    int rc = spool_write(w->spool, data, len, err);
    if (rc != 0) {
        w->spent = true;
        return ff_err_wrap(err, "blob store \"%s\": tmp/%s", w->bs->root, w->name);
    }
    w->size = end;
    return 0;
}

int64_t blob_writer_size(const struct blob_writer *w)
{
    return w->size;
}

int blob_writer_commit(struct blob_writer *w, const struct ff_digest *expected,
                       struct ff_digest *actual, int64_t *size, struct ff_err *err)
{
    if (w->spent)
        return ff_err_set(err, FF_EINVAL, "blob writer: used after an error or a commit");
    w->spent = true;
    struct ff_digest got;
    int rc = spool_flush(w->spool, err);
    if (rc != 0)
        rc = ff_err_wrap(err, "blob store \"%s\": tmp/%s", w->bs->root, w->name);
    else
        rc = ff_digest_ctx_final(w->ctx, &got, err);
    if (rc == 0)
        rc = blob_store_adopt(w->bs, w->bs->tmp_fd, w->name, w->fd, &got, expected, actual,
                              size, err);
    /* Committed or refused, the temporary name goes: the blob (if any) now
     * has its own name in blobs/. */
    if (unlinkat(w->bs->tmp_fd, w->name, 0) == 0)
        w->has_temp = false;
    return rc;
}

void blob_writer_free(struct blob_writer *w)
{
    if (w == NULL)
        return;
    spool_free(w->spool);
    if (w->has_temp)
        (void)unlinkat(w->bs->tmp_fd, w->name, 0); /* tmp/ is swept at the next open */
    fd_close(w->fd);
    ff_digest_ctx_free(w->ctx);
    free(w);
}
