/* The worker's layer and step cache (layout and rules in cache.h). Records
 * are small JSON files written to a temporary name and renamed, so a crash
 * leaves either the old record or the new one; a layer's directory and
 * blob are renamed into place before its record is written, so a record
 * never names a layer that is not all there. */
#include "worker.h"

#include "ff_json.h"
#include "ff_str.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest record read: a few short fields. */
#define CACHE_RECORD_MAX 4096
/* Descriptors nftw may keep open while walking a layer. */
#define CACHE_WALK_FDS 32

struct cache {
    char *dir;
    uint64_t max_bytes;
    int lock_fd;
};

/* One layer as eviction sees it. */
struct cache_entry {
    struct ff_digest diff_id;
    uint64_t bytes;
    struct timespec used;
};

static int make_dir(const char *path, struct ff_err *err)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return ff_err_set(err, FF_EIO, "cache: cannot create \"%s\": %s", path, strerror(errno));
    return 0;
}

static char *cache_path(const struct cache *c, const char *sub, const struct ff_digest *d,
                        const char *suffix)
{
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(d, hex);
    return ff_asprintf("%s/%s/%s%s", c->dir, sub, hex, suffix);
}

char *cache_blob_path(const struct cache *c, const struct ff_digest *digest)
{
    return cache_path(c, "blobs/sha256", digest, "");
}

char *cache_layer_path(const struct cache *c, const struct ff_digest *diff_id)
{
    return cache_path(c, "layers", diff_id, "");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int cache_remove_tree(const char *path, struct ff_err *err)
{
    struct stat st;
    if (path == NULL)
        return 0;
    if (lstat(path, &st) != 0)
        return errno == ENOENT
                   ? 0
                   : ff_err_set(err, FF_EIO, "cannot remove \"%s\": %s", path, strerror(errno));
    if (nftw(path, remove_entry, CACHE_WALK_FDS, FTW_DEPTH | FTW_PHYS) != 0)
        return ff_err_set(err, FF_EIO, "cannot remove \"%s\": %s", path, strerror(errno));
    return 0;
}

/* Decodes the octal escapes (\040 for a space) mountinfo writes in paths. */
static void mountinfo_unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0';) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* Detaches every mount under tmp: the overlays of a build that died
 * mid-step, which removing tmp/ would otherwise trip over (or write
 * whiteouts through). */
static int unmount_under(const char *tmp, struct ff_err *err)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return ff_err_set(err, FF_EIO, "cache: cannot read /proc/self/mountinfo: %s",
                          strerror(errno));
    size_t tlen = strlen(tmp);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        /* id parent major:minor root mountpoint ... */
        char *save = NULL, *field = strtok_r(line, " ", &save);
        for (int i = 0; field != NULL && i < 4; i++)
            field = strtok_r(NULL, " ", &save);
        if (field == NULL)
            continue;
        mountinfo_unescape(field);
        if (strncmp(field, tmp, tlen) == 0 && field[tlen] == '/' &&
            umount2(field, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
            rc = ff_err_set(err, FF_EIO, "cache: cannot unmount \"%s\": %s", field,
                            strerror(errno));
    }
    free(line);
    (void)fclose(f);
    return rc;
}

int cache_open(const char *dir, uint64_t max_bytes, struct cache **out, struct ff_err *err)
{
    *out = NULL;
    struct cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    c->lock_fd = -1;
    c->max_bytes = max_bytes;
    static const char *const subs[] = {"", "/blobs", "/blobs/sha256", "/layers", "/steps"};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *p = ff_asprintf("%s%s", dir, subs[i]);
        rc = p == NULL ? ff_err_set(err, FF_ENOMEM, "cache: out of memory") : make_dir(p, err);
        free(p);
    }
    /* Absolute, so that mount points under it can be found in mountinfo. */
    if (rc == 0 && (c->dir = realpath(dir, NULL)) == NULL)
        rc = ff_err_set(err, FF_EIO, "cache: \"%s\": %s", dir, strerror(errno));
    if (rc == 0)
        dir = c->dir;
    char *lock = rc == 0 ? ff_asprintf("%s/lock", dir) : NULL;
    if (rc == 0 && lock == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    if (rc == 0) {
        c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (c->lock_fd < 0 || flock(c->lock_fd, LOCK_EX) != 0)
            rc = ff_err_set(err, FF_EIO, "cache: cannot lock \"%s\": %s", lock, strerror(errno));
    }
    free(lock);
    /* We hold the lock: whatever is in tmp/ was left by a build that died. */
    char *tmp = rc == 0 ? ff_asprintf("%s/tmp", dir) : NULL;
    if (rc == 0 && tmp == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    if (rc == 0)
        rc = unmount_under(tmp, err);
    if (rc == 0)
        rc = cache_remove_tree(tmp, err);
    if (rc == 0)
        rc = make_dir(tmp, err);
    free(tmp);
    if (rc != 0) {
        cache_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cache_close(struct cache *c)
{
    if (c == NULL)
        return;
    if (c->lock_fd >= 0)
        (void)close(c->lock_fd);
    free(c->dir);
    free(c);
}

int cache_tmp_dir(struct cache *c, const char *prefix, char **out, struct ff_err *err)
{
    *out = ff_asprintf("%s/tmp/%s-XXXXXX", c->dir, prefix);
    if (*out == NULL)
        return ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    if (mkdtemp(*out) == NULL) {
        int rc = ff_err_set(err, FF_EIO, "cache: cannot create \"%s\": %s", *out, strerror(errno));
        free(*out);
        *out = NULL;
        return rc;
    }
    return 0;
}

/* Writes text to path through a temporary file and a rename. */
static int write_atomic(const char *path, const char *text, size_t len, struct ff_err *err)
{
    char *tmp = ff_asprintf("%s.tmp", path);
    if (tmp == NULL)
        return ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = ff_err_set(err, FF_EIO, "cache: cannot write \"%s\": %s", tmp, strerror(errno));
        goto done;
    }
    size_t off = 0;
    while (rc == 0 && off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = ff_err_set(err, FF_EIO, "cache: cannot write \"%s\": %s", tmp, strerror(errno));
        else
            off += (size_t)n;
    }
    if (close(fd) != 0 && rc == 0)
        rc = ff_err_set(err, FF_EIO, "cache: cannot write \"%s\": %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = ff_err_set(err, FF_EIO, "cache: cannot rename \"%s\": %s", tmp, strerror(errno));
    if (rc != 0)
        (void)unlink(tmp);
done:
    free(tmp);
    return rc;
}

/* Reads a record; *found is false when there is none. */
static int read_record(const char *path, json_t **out, bool *found, struct ff_err *err)
{
    *out = NULL;
    *found = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? 0
                   : ff_err_set(err, FF_EIO, "cache: cannot read \"%s\": %s", path, strerror(errno));
    char buf[CACHE_RECORD_MAX];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, buf + len, sizeof(buf) - len)) > 0)
        len += (size_t)n;
    int saved = errno;
    (void)close(fd);
    if (n < 0)
        return ff_err_set(err, FF_EIO, "cache: cannot read \"%s\": %s", path, strerror(saved));
    int rc = ff_json_parse_object(buf, len, sizeof(buf) - 1, out, err);
    if (rc != 0)
        return ff_err_set(err, FF_EINVAL, "cache: damaged record \"%s\": %s", path, err->msg);
    *found = true;
    return 0;
}

static int get_digest(const json_t *obj, const char *key, struct ff_digest *out,
                      struct ff_err *err)
{
    const char *s = NULL;
    int rc = ff_json_get_string(obj, key, true, FF_DIGEST_STR_MAX, &s, err);
    return rc != 0 ? rc : ff_digest_parse_str(s, out, err);
}

/* Fills layer from a layer record (everything but diff_id). */
static int layer_from_json(const json_t *obj, struct cache_layer *layer, uint64_t *bytes,
                           struct ff_err *err)
{
    const char *media = NULL;
    int64_t size = 0, used = 0;
    int rc = get_digest(obj, "digest", &layer->digest, err);
    if (rc == 0)
        rc = ff_json_get_int(obj, "size", true, 0, INT64_MAX, &size, err);
    if (rc == 0)
        rc = ff_json_get_string(obj, "media_type", true, CACHE_MEDIA_TYPE_MAX, &media, err);
    if (rc == 0 && bytes != NULL)
        rc = ff_json_get_int(obj, "bytes", true, 0, INT64_MAX, &used, err);
    if (rc != 0)
        return rc;
    layer->size = (uint64_t)size;
    ff_strlcpy(layer->media_type, media, sizeof(layer->media_type));
    if (bytes != NULL)
        *bytes = (uint64_t)used;
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return path != NULL && lstat(path, &st) == 0;
}

int cache_layer_get(struct cache *c, const struct ff_digest *diff_id, struct cache_layer *out,
                    bool *found, struct ff_err *err)
{
    *found = false;
    /* diff_id may point into out (cache_step_get does that). */
    const struct ff_digest id = *diff_id;
    char *rec = cache_path(c, "layers", &id, ".json");
    char *dir = cache_layer_path(c, &id);
    json_t *obj = NULL;
    bool have = false;
    int rc = rec == NULL || dir == NULL ? ff_err_set(err, FF_ENOMEM, "cache: out of memory")
                                        : read_record(rec, &obj, &have, err);
    if (rc == 0 && have) {
        memset(out, 0, sizeof(*out));
        out->diff_id = id;
        rc = layer_from_json(obj, out, NULL, err);
    }
    char *blob = rc == 0 && have ? cache_blob_path(c, &out->digest) : NULL;
    if (rc == 0 && have && exists(dir) && exists(blob)) {
        *found = true;
        /* The record's mtime is the layer's last use, for eviction. */
        (void)utimensat(AT_FDCWD, rec, NULL, 0);
    }
    json_decref(obj);
    free(blob);
    free(rec);
    free(dir);
    return rc;
}

/* nftw's callback has no context argument; the cache is held by one
 * build at a time, so one total for the walk in progress is enough. */
static uint64_t walk_bytes;

static int add_usage(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)flag;
    (void)ftw;
    walk_bytes += (uint64_t)st->st_blocks * 512u;
    return 0;
}

/* Disk bytes under path. */
static uint64_t tree_bytes(const char *path)
{
    walk_bytes = 0;
    (void)nftw(path, add_usage, CACHE_WALK_FDS, FTW_PHYS);
    return walk_bytes;
}

static int write_layer_record(struct cache *c, const struct cache_layer *layer, uint64_t bytes,
                              struct ff_err *err)
{
    char digest[FF_DIGEST_STR_SIZE];
    ff_digest_format(&layer->digest, digest);
    json_t *obj = json_pack("{s:s, s:I, s:s, s:I}", "digest", digest, "size",
                            (json_int_t)layer->size, "media_type", layer->media_type, "bytes",
                            (json_int_t)bytes);
    char *text = NULL, *rec = cache_path(c, "layers", &layer->diff_id, ".json");
    size_t len = 0;
    int rc = obj == NULL || rec == NULL ? ff_err_set(err, FF_ENOMEM, "cache: out of memory")
                                        : ff_json_dump(obj, &text, &len, err);
    if (rc == 0)
        rc = write_atomic(rec, text, len, err);
    json_decref(obj);
    free(text);
    free(rec);
    return rc;
}

int cache_layer_add(struct cache *c, const struct cache_layer *layer, const char *dir,
                    const char *blob, struct ff_err *err)
{
    struct cache_layer have;
    bool found = false;
    int rc = cache_layer_get(c, &layer->diff_id, &have, &found, err);
    if (rc == 0 && found) {
        rc = cache_remove_tree(dir, err);
        if (rc == 0 && blob != NULL && unlink(blob) != 0 && errno != ENOENT)
            rc = ff_err_set(err, FF_EIO, "cache: cannot remove \"%s\": %s", blob, strerror(errno));
        return rc;
    }
    char *dst_dir = cache_layer_path(c, &layer->diff_id);
    char *dst_blob = cache_blob_path(c, &layer->digest);
    if (rc == 0 && (dst_dir == NULL || dst_blob == NULL))
        rc = ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    /* A directory left by an interrupted add has no record: replace it. */
    if (rc == 0)
        rc = cache_remove_tree(dst_dir, err);
    if (rc == 0 && rename(dir, dst_dir) != 0)
        rc = ff_err_set(err, FF_EIO, "cache: cannot move \"%s\" into place: %s", dir,
                        strerror(errno));
    if (rc == 0 && blob != NULL && rename(blob, dst_blob) != 0)
        rc = ff_err_set(err, FF_EIO, "cache: cannot move \"%s\" into place: %s", blob,
                        strerror(errno));
    if (rc == 0 && !exists(dst_blob))
        rc = ff_err_set(err, FF_EIO, "cache: the blob of layer \"%s\" is missing", dst_dir);
    if (rc == 0)
        rc = write_layer_record(c, layer, tree_bytes(dst_dir) + layer->size, err);
    free(dst_dir);
    free(dst_blob);
    return rc;
}

int cache_step_get(struct cache *c, const struct ff_digest *key, struct cache_step *out,
                   bool *hit, struct ff_err *err)
{
    *hit = false;
    memset(out, 0, sizeof(*out));
    char *rec = cache_path(c, "steps", key, "");
    json_t *obj = NULL;
    bool have = false;
    int rc = rec == NULL ? ff_err_set(err, FF_ENOMEM, "cache: out of memory")
                         : read_record(rec, &obj, &have, err);
    if (rc == 0 && have)
        rc = ff_json_get_bool(obj, "empty", true, &out->empty, err);
    if (rc == 0 && have && out->empty)
        *hit = true;
    if (rc == 0 && have && !out->empty) {
        rc = get_digest(obj, "diff_id", &out->layer.diff_id, err);
        if (rc == 0)
            rc = cache_layer_get(c, &out->layer.diff_id, &out->layer, hit, err);
    }
    if (rc == FF_EINVAL && have)
        rc = ff_err_set(err, FF_EINVAL, "cache: damaged step record \"%s\": %s", rec, err->msg);
    json_decref(obj);
    free(rec);
    return rc;
}

int cache_step_put(struct cache *c, const struct ff_digest *key, const struct cache_step *s,
                   struct ff_err *err)
{
    json_t *obj = json_pack("{s:b}", "empty", s->empty);
    if (obj != NULL && !s->empty) {
        char diff_id[FF_DIGEST_STR_SIZE];
        ff_digest_format(&s->layer.diff_id, diff_id);
        if (json_object_set_new(obj, "diff_id", json_string(diff_id)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    char *text = NULL, *rec = cache_path(c, "steps", key, "");
    size_t len = 0;
    int rc = obj == NULL || rec == NULL ? ff_err_set(err, FF_ENOMEM, "cache: out of memory")
                                        : ff_json_dump(obj, &text, &len, err);
    if (rc == 0)
        rc = write_atomic(rec, text, len, err);
    json_decref(obj);
    free(text);
    free(rec);
    return rc;
}

/* Reads every layer record into *out (malloc'd). Records that cannot be
 * read are skipped: eviction must not stop on one damaged file. */
static int list_layers(struct cache *c, struct cache_entry **out, size_t *n, struct ff_err *err)
{
    *out = NULL;
    *n = 0;
    char *dir = ff_asprintf("%s/layers", c->dir);
    DIR *d = dir != NULL ? opendir(dir) : NULL;
    if (d == NULL) {
        int rc = dir == NULL ? ff_err_set(err, FF_ENOMEM, "cache: out of memory")
                             : ff_err_set(err, FF_EIO, "cache: cannot list \"%s\": %s", dir,
                                          strerror(errno));
        free(dir);
        return rc;
    }
    size_t cap = 0;
    int rc = 0;
    const struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        struct cache_entry ent;
        memset(&ent, 0, sizeof(ent));
        if (len != FF_DIGEST_HEX_SIZE - 1 + 5 || strcmp(e->d_name + len - 5, ".json") != 0 ||
            ff_hex_decode(e->d_name, FF_DIGEST_SIZE, ent.diff_id.bytes) != 0)
            continue;
        char *rec = ff_asprintf("%s/%s", dir, e->d_name);
        json_t *obj = NULL;
        bool have = false;
        struct cache_layer layer;
        struct stat st;
        struct ff_err skip;
        if (rec != NULL && read_record(rec, &obj, &have, &skip) == 0 && have &&
            layer_from_json(obj, &layer, &ent.bytes, &skip) == 0 && stat(rec, &st) == 0) {
            ent.used = st.st_mtim;
            if (*n == cap) {
                size_t ncap = cap == 0 ? 64 : cap * 2;
                struct cache_entry *grown = realloc(*out, ncap * sizeof(**out));
                if (grown == NULL) {
                    rc = ff_err_set(err, FF_ENOMEM, "cache: out of memory");
                    json_decref(obj);
                    free(rec);
                    break;
                }
                *out = grown;
                cap = ncap;
            }
            (*out)[(*n)++] = ent;
        }
        json_decref(obj);
        free(rec);
    }
    (void)closedir(d);
    free(dir);
    return rc;
}

static int by_use(const void *a, const void *b)
{
    const struct timespec *x = &((const struct cache_entry *)a)->used;
    const struct timespec *y = &((const struct cache_entry *)b)->used;
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? -1 : 1;
    return x->tv_nsec < y->tv_nsec ? -1 : x->tv_nsec > y->tv_nsec;
}

/* Removes one layer: its record first, so a crash midway leaves a
 * directory without a record (ignored and replaced), never the reverse. */
static int evict_layer(struct cache *c, const struct ff_digest *diff_id, struct ff_err *err)
{
    struct cache_layer layer;
    bool found = false;
    char *rec = cache_path(c, "layers", diff_id, ".json");
    char *dir = cache_layer_path(c, diff_id);
    if (rec == NULL || dir == NULL) {
        free(rec);
        free(dir);
        return ff_err_set(err, FF_ENOMEM, "cache: out of memory");
    }
    int rc = cache_layer_get(c, diff_id, &layer, &found, err);
    char *blob = rc == 0 && found ? cache_blob_path(c, &layer.digest) : NULL;
    if (rc == 0 && unlink(rec) != 0 && errno != ENOENT)
        rc = ff_err_set(err, FF_EIO, "cache: cannot remove \"%s\": %s", rec, strerror(errno));
    if (rc == 0)
        rc = cache_remove_tree(dir, err);
    if (rc == 0 && blob != NULL && unlink(blob) != 0 && errno != ENOENT)
        rc = ff_err_set(err, FF_EIO, "cache: cannot remove \"%s\": %s", blob, strerror(errno));
    free(blob);
    free(rec);
    free(dir);
    return rc;
}

int cache_usage(struct cache *c, uint64_t *bytes, struct ff_err *err)
{
    struct cache_entry *ents = NULL;
    size_t n = 0;
    *bytes = 0;
    int rc = list_layers(c, &ents, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        *bytes += ents[i].bytes;
    free(ents);
    return rc;
}

int cache_evict(struct cache *c, uint64_t *freed, struct ff_err *err)
{
    if (freed != NULL)
        *freed = 0;
    if (c->max_bytes == 0)
        return 0;
    struct cache_entry *ents = NULL;
    size_t n = 0;
    int rc = list_layers(c, &ents, &n, err);
    uint64_t total = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        total += ents[i].bytes;
    if (rc == 0 && n > 1)
        qsort(ents, n, sizeof(*ents), by_use);
    for (size_t i = 0; rc == 0 && i < n && total > c->max_bytes; i++) {
        rc = evict_layer(c, &ents[i].diff_id, err);
        if (rc == 0) {
            total -= ents[i].bytes;
            if (freed != NULL)
                *freed += ents[i].bytes;
        }
    }
    free(ents);
    return rc;
}
