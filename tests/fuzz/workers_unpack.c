/* Layer extraction on hostile blobs: every input is unpacked, as an
 * overlayfs lower layer and as ADD's plain extraction, into a fresh
 * directory with small limits. Whatever the bytes, nothing may appear
 * outside that directory: not in the sentinel directory beside it (what
 * "../sentinel/x" or a symlink to it would reach), not at the absolute
 * canary path the seed corpus aims at, not beside it in the scratch root.
 * A success must respect the limits and report the blob's real digest. */
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits keep each run fast and reach the limit paths. */
#define FUZZ_MAX_BYTES (4u << 20)
#define FUZZ_MAX_ENTRIES 512
#define FUZZ_MAX_PATH 512
/* Absolute paths in the seed corpus point here. */
#define FUZZ_CANARY "/tmp/ff-fuzz-unpack-canary"

static char root[64];
static char dest[96];
static char sentinel[96];

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

static void cleanup(void)
{
    rm_tree(root);
}

static void setup_once(void)
{
    if (root[0] != '\0')
        return;
    (void)snprintf(root, sizeof(root), "/tmp/ff-fuzz-unpack-%ld", (long)getpid());
    (void)snprintf(dest, sizeof(dest), "%s/dest", root);
    (void)snprintf(sentinel, sizeof(sentinel), "%s/sentinel", root);
    rm_tree(root);
    if (mkdir(root, 0700) != 0 || mkdir(sentinel, 0755) != 0)
        abort();
    if (atexit(cleanup) != 0)
        abort();
}

static size_t entries_in(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        abort();
    size_t n = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    (void)closedir(d);
    return n;
}

static void check_nothing_outside(void)
{
    struct stat st;
    if (entries_in(sentinel) != 0 || entries_in(root) != 2)
        abort();
    if (lstat(FUZZ_CANARY, &st) == 0 || errno != ENOENT)
        abort();
}

static void check_result(int rc, const struct ff_err *err, const struct layer_info *info,
                         const uint8_t *data, size_t size)
{
    if (rc != 0) {
        /* Hostile bytes are refused, too big, or fail on the file system:
         * never reported as anything else, never without a message. */
        if ((rc != FF_EINVAL && rc != FF_ETOOBIG && rc != FF_EIO) || err->msg[0] == '\0')
            abort();
        return;
    }
    if (info->tar_size > FUZZ_MAX_BYTES || info->entries > FUZZ_MAX_ENTRIES ||
        info->size != size || info->empty != (info->entries == 0))
        abort();
    struct ff_digest d;
    if (ff_digest_buffer(data, size, &d, NULL) != 0 || !ff_digest_equal(&d, &info->digest))
        abort();
    if (info->compression == LAYER_UNCOMPRESSED && !ff_digest_equal(&d, &info->diff_id))
        abort();
}

static void run_once(int fd, bool plain, const uint8_t *data, size_t size)
{
    if (mkdir(dest, 0755) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    struct layer_unpack_opts o;
    memset(&o, 0, sizeof(o));
    o.max_bytes = FUZZ_MAX_BYTES;
    o.max_entries = FUZZ_MAX_ENTRIES;
    o.max_path = FUZZ_MAX_PATH;
    struct layer_info info;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = plain ? layer_extract_plain(fd, dest, &o, &info, &err)
                   : layer_unpack(fd, dest, &o, &info, &err);
    check_result(rc, &err, &info, data, size);
    check_nothing_outside();
    rm_tree(dest);
    struct stat st;
    if (lstat(dest, &st) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();
    int fd = memfd_create("layer", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            abort();
        off += (size_t)w;
    }
    run_once(fd, false, data, size);
    run_once(fd, true, data, size);
    (void)close(fd);
    return 0;
}
