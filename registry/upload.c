/* Upload sessions: chunked, resumable and crash-safe.
 *
 * A session is created complete in uploads/.new-<id>/ and renamed to
 * uploads/<id>/, so after a crash it either exists whole or not at all. A
 * chunk is written at the acknowledged size, fsync'd, and only then is the
 * new size recorded by replacing info (write info.tmp, fsync, rename, fsync
 * the directory). Whatever lies past the recorded size after a crash was
 * never acknowledged and is cut off when the session is next opened.
 *
 * Sessions in use are cached (struct upload_session) with their descriptors
 * and the running digest of the acknowledged bytes. One mutex guards the
 * cache and each session's state; the slow work (writing, fsync, hashing)
 * runs outside it while the session is marked busy, which is also what
 * refuses a second concurrent PATCH. */
#include "registry.h"

#include "ff_json.h"
#include "ff_log.h"
#include "ff_str.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Prefix of a session still being created (never a valid id). */
#define STAGING_PREFIX ".new-"
#define STAGING_NAME_SIZE (sizeof(STAGING_PREFIX) - 1 + UPLOAD_ID_LEN + 1)
/* Read size when a session's data must be hashed again after a restart. */
#define UPLOAD_HASH_CHUNK (1u << 20)

struct upload_session {
    char id[UPLOAD_ID_LEN + 1];
    char *repo;
    int64_t created;
    int dir_fd;                 /* uploads/<id> */
    int data_fd;                /* uploads/<id>/data, read-write */
    int64_t size;               /* acknowledged bytes */
    struct ff_digest_ctx *ctx;  /* digest of data[0, size), or NULL: rehash */
    unsigned refs;              /* open handles */
    bool busy;                  /* an append, finish or cancel owns it */
    bool gone;                  /* removed from disk and from the cache */
    uint64_t last_used;         /* for evicting the idlest session */
};

struct upload_store {
    struct blob_store *bs;
    int fd; /* uploads/ */
    pthread_mutex_t mu;
    struct upload_session *live[UPLOAD_LIVE_MAX];
    size_t n_live;
    uint64_t clock;
};

struct upload {
    struct upload_store *us;
    struct upload_session *s;
    bool appending;             /* this handle owns s->busy for an append */
    int64_t offset;             /* where the next byte of the chunk goes */
    struct ff_digest_ctx *work; /* running digest including the chunk */
    struct spool *spool;        /* writes the chunk, hashes it into work */
};

static void fd_close(int fd)
{
    if (fd >= 0)
        (void)close(fd);
}

static void lock(struct upload_store *us)
{
    if (pthread_mutex_lock(&us->mu) != 0)
        FF_BUG("upload: mutex lock failed");
}

static void unlock(struct upload_store *us)
{
    if (pthread_mutex_unlock(&us->mu) != 0)
        FF_BUG("upload: mutex unlock failed");
}

static bool id_valid(const char *id)
{
    if (strnlen(id, UPLOAD_ID_LEN + 1) != UPLOAD_ID_LEN)
        return false;
    for (size_t i = 0; i < UPLOAD_ID_LEN; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    }
    return true;
}

static void session_free(struct upload_session *s)
{
    if (s == NULL)
        return;
    fd_close(s->data_fd);
    fd_close(s->dir_fd);
    ff_digest_ctx_free(s->ctx);
    free(s->repo);
    free(s);
}

/* Removes directory name of parent and the files in it. */
static int dir_remove(int parent, const char *name, struct ff_err *err)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int rc = ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO, "upload: open "
                            "uploads/%s: %s", name, strerror(errno));
        fd_close(fd);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(fd, e->d_name, 0) != 0 && errno != ENOENT && rc == 0)
            rc = ff_err_set(err, FF_EIO, "upload: remove uploads/%s/%s: %s", name, e->d_name,
                            strerror(errno));
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) != 0)
        rc = ff_err_set(err, FF_EIO, "upload: remove uploads/%s: %s", name, strerror(errno));
    return rc;
}

/* Replaces info in dir_fd atomically and durably. */
static int info_write(int dir_fd, const char *repo, int64_t created, int64_t size,
                      struct ff_err *err)
{
    json_t *obj = json_object();
    char *text = NULL;
    size_t len = 0;
    int fd = -1;
    int rc;
    if (obj == NULL || json_object_set_new(obj, "repo", json_string(repo)) != 0 ||
        json_object_set_new(obj, "created", json_integer(created)) != 0 ||
        json_object_set_new(obj, "size", json_integer(size)) != 0) {
        rc = ff_err_set(err, FF_ENOMEM, "upload: out of memory");
        goto out;
    }
    rc = ff_json_dump(obj, &text, &len, err);
    if (rc != 0)
        goto out;
    fd = openat(dir_fd, "info.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                0600);
    if (fd < 0) {
        rc = ff_err_set(err, FF_EIO, "upload: create info: %s", strerror(errno));
        goto out;
    }
    rc = blob_fd_write(fd, 0, text, len, err);
    if (rc != 0)
        goto out;
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = ff_err_set(err, FF_EIO, "upload: fsync info: %s", strerror(errno));
        goto out;
    }
    fd = -1;
    if (renameat(dir_fd, "info.tmp", dir_fd, "info") != 0 || fsync(dir_fd) != 0) {
        rc = ff_err_set(err, FF_EIO, "upload: replace info: %s", strerror(errno));
        goto out;
    }
out:
    fd_close(fd);
    free(text);
    json_decref(obj);
    return rc;
}

/* Reads info of a session directory. *repo belongs to the caller. A missing
 * info is FF_ENOTFOUND, a malformed one FF_EIO. */
static int info_read(int dir_fd, char **repo, int64_t *created, int64_t *size,
                     struct ff_err *err)
{
    static const char *const keys[] = {"repo", "created", "size", NULL};
    int fd = openat(dir_fd, "info", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO, "upload: open info: "
                          "%s", strerror(errno));
    char buf[UPLOAD_INFO_MAX + 1];
    size_t len = 0;
    int rc = 0;
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ff_err_set(err, FF_EIO, "upload: read info: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    fd_close(fd);
    if (rc != 0)
        return rc;
    json_t *obj = NULL;
    const char *r = NULL;
    int64_t c = 0;
    int64_t s = 0;
    struct ff_err perr;
    ff_err_clear(&perr);
    rc = ff_json_parse_object(buf, len, UPLOAD_INFO_MAX, &obj, &perr);
    if (rc == 0)
        rc = ff_json_check_keys(obj, keys, "info", &perr);
    if (rc == 0)
        rc = ff_json_get_string(obj, "repo", true, NAME_LEN_MAX, &r, &perr);
    if (rc == 0)
        rc = ff_json_get_int(obj, "created", true, 0, INT64_MAX, &c, &perr);
    if (rc == 0)
        rc = ff_json_get_int(obj, "size", true, 0, INT64_MAX, &s, &perr);
    if (rc != 0) {
        json_decref(obj);
        /* Our own file, damaged: a storage fault, not bad client input. */
        return ff_err_set(err, FF_EIO, "upload: malformed info: %s", perr.msg);
    }
    *repo = strdup(r);
    json_decref(obj);
    if (*repo == NULL)
        return ff_err_set(err, FF_ENOMEM, "upload: out of memory");
    *created = c;
    *size = s;
    return 0;
}

/* Reads session id from disk, cutting off any unacknowledged tail. */
static int session_load(struct upload_store *us, const char *id, struct upload_session **out,
                        struct ff_err *err)
{
    struct upload_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ff_err_set(err, FF_ENOMEM, "upload: out of memory");
    s->dir_fd = s->data_fd = -1;
    memcpy(s->id, id, UPLOAD_ID_LEN + 1);
    int rc = 0;
    s->dir_fd = openat(us->fd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (s->dir_fd < 0) {
        rc = errno == ENOENT ? ff_err_set(err, FF_ENOTFOUND, "upload %s: unknown", id)
                             : ff_err_set(err, FF_EIO, "upload %s: open: %s", id,
                                          strerror(errno));
        goto fail;
    }
    rc = info_read(s->dir_fd, &s->repo, &s->created, &s->size, err);
    if (rc == 0) {
        s->data_fd = openat(s->dir_fd, "data", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (s->data_fd < 0)
            rc = ff_err_set(err, FF_EIO, "upload: open data: %s", strerror(errno));
    }
    struct stat st;
    memset(&st, 0, sizeof(st));
    if (rc == 0 && fstat(s->data_fd, &st) != 0)
        rc = ff_err_set(err, FF_EIO, "upload: stat data: %s", strerror(errno));
    if (rc == 0 && st.st_nlink > 1) {
        /* upload_finish linked data into blobs/, then a crash stopped it from
         * removing the session. Its data is a committed blob's inode now and
         * must never be written again: the session is over. */
        (void)dir_remove(us->fd, id, NULL);
        rc = ff_err_set(err, FF_ENOTFOUND, "upload %s: unknown", id);
    }
    if (rc == 0 && (int64_t)st.st_size < s->size) {
        /* Only when a failed acknowledgement was undone after info had been
         * replaced, or the disk lost acknowledged data: resume from what is
         * there; the digest check at finish catches any hole. */
        ff_log_warn(NULL, "upload.short", "upload_id=%s bytes=%lld recorded=%lld", id,
                    (long long)st.st_size, (long long)s->size);
        s->size = (int64_t)st.st_size;
    }
    if (rc == 0 && (int64_t)st.st_size > s->size && ftruncate(s->data_fd, s->size) != 0)
        rc = ff_err_set(err, FF_EIO, "upload: cut unacknowledged data: %s", strerror(errno));
    if (rc == 0 && s->size == 0)
        rc = ff_digest_ctx_new(&s->ctx, err);
    if (rc != 0) {
        if (rc != FF_ENOTFOUND)
            ff_err_wrap(err, "upload %s", id);
        goto fail;
    }
    (void)unlinkat(s->dir_fd, "info.tmp", 0); /* an interrupted replace; ENOENT is normal */
    *out = s;
    return 0;
fail:
    session_free(s);
    return rc;
}

static struct upload_session *live_find(struct upload_store *us, const char *id)
{
    for (size_t i = 0; i < us->n_live; i++) {
        if (memcmp(us->live[i]->id, id, UPLOAD_ID_LEN) == 0)
            return us->live[i];
    }
    return NULL;
}

static void live_remove(struct upload_store *us, struct upload_session *s)
{
    for (size_t i = 0; i < us->n_live; i++) {
        if (us->live[i] == s) {
            us->live[i] = us->live[--us->n_live];
            return;
        }
    }
}

/* Caches s, evicting the idlest unused session when the cache is full. */
static int live_insert(struct upload_store *us, struct upload_session *s, struct ff_err *err)
{
    if (us->n_live == UPLOAD_LIVE_MAX) {
        struct upload_session *victim = NULL;
        for (size_t i = 0; i < us->n_live; i++) {
            struct upload_session *c = us->live[i];
            if (c->refs == 0 && !c->busy &&
                (victim == NULL || c->last_used < victim->last_used))
                victim = c;
        }
        if (victim == NULL)
            return ff_err_set(err, FF_EBUSY, "upload: %d sessions in use, try again later",
                              UPLOAD_LIVE_MAX);
        live_remove(us, victim);
        session_free(victim);
    }
    us->live[us->n_live++] = s;
    return 0;
}

/* Opens uploads/ for a walk with its own read position (a dup would share
 * one with concurrent walks). The DIR is the caller's; NULL means FF_EIO. */
static DIR *uploads_dir(struct upload_store *us, struct ff_err *err)
{
    int fd = openat(us->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        ff_err_set(err, FF_EIO, "upload: read uploads/: %s", strerror(errno));
        fd_close(fd);
    }
    return d;
}

/* The cached session id, loading it from disk when it is not cached.
 * Called locked. NULL on error, with *rc set. */
static struct upload_session *session_get(struct upload_store *us, const char *id, int *rc,
                                          struct ff_err *err)
{
    struct upload_session *s = live_find(us, id);
    if (s != NULL)
        return s;
    *rc = session_load(us, id, &s, err);
    if (*rc != 0)
        return NULL;
    *rc = live_insert(us, s, err);
    if (*rc != 0) {
        session_free(s);
        return NULL;
    }
    return s;
}

/* Removes stale staging directories: creates a crash interrupted. */
static int staging_clean(struct upload_store *us, struct ff_err *err)
{
    DIR *d = uploads_dir(us, err);
    if (d == NULL)
        return FF_EIO;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!ff_str_has_prefix(e->d_name, STAGING_PREFIX))
            continue;
        struct ff_err e2;
        if (dir_remove(us->fd, e->d_name, &e2) != 0)
            ff_log_warn(NULL, "upload.staging_clean", "dir=%s error=%s", e->d_name, e2.msg);
    }
    closedir(d);
    return 0;
}

int upload_store_open(struct blob_store *bs, struct upload_store **out, struct ff_err *err)
{
    struct upload_store *us = calloc(1, sizeof(*us));
    if (us == NULL)
        return ff_err_set(err, FF_ENOMEM, "upload: out of memory");
    us->bs = bs;
    us->fd = -1;
    int root = blob_store_root_fd(bs);
    int rc = 0;
    if (mkdirat(root, "uploads", 0700) == 0) {
        if (fsync(root) != 0)
            rc = ff_err_set(err, FF_EIO, "upload: fsync root: %s", strerror(errno));
    } else if (errno != EEXIST) {
        rc = ff_err_set(err, FF_EIO, "upload: mkdir uploads/: %s", strerror(errno));
    }
    if (rc == 0) {
        us->fd = openat(root, "uploads", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (us->fd < 0)
            rc = ff_err_set(err, FF_EIO, "upload: open uploads/: %s", strerror(errno));
    }
    if (rc == 0)
        rc = staging_clean(us, err);
    if (rc == 0 && pthread_mutex_init(&us->mu, NULL) != 0)
        rc = ff_err_set(err, FF_ENOMEM, "upload: cannot create mutex");
    if (rc != 0) {
        fd_close(us->fd);
        free(us);
        return rc;
    }
    *out = us;
    return 0;
}

void upload_store_free(struct upload_store *us)
{
    if (us == NULL)
        return;
    for (size_t i = 0; i < us->n_live; i++)
        session_free(us->live[i]);
    fd_close(us->fd);
    pthread_mutex_destroy(&us->mu);
    free(us);
}

int upload_create(struct upload_store *us, const char *repo, char id[UPLOAD_ID_LEN + 1],
                  struct ff_err *err)
{
    int rc = name_validate(repo, err);
    if (rc != 0)
        return rc;
    unsigned char rnd[UPLOAD_ID_LEN / 2];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return ff_err_set(err, FF_ECRYPTO, "upload: no randomness");
    char new_id[UPLOAD_ID_LEN + 1];
    ff_hex_encode(rnd, sizeof(rnd), new_id);
    char staging[STAGING_NAME_SIZE];
    memcpy(staging, STAGING_PREFIX, sizeof(STAGING_PREFIX) - 1);
    memcpy(staging + sizeof(STAGING_PREFIX) - 1, new_id, sizeof(new_id));
    if (mkdirat(us->fd, staging, 0700) != 0)
        return ff_err_set(err, FF_EIO, "upload: mkdir uploads/%s: %s", staging,
                          strerror(errno));
    int dir_fd = openat(us->fd, staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int data_fd = dir_fd < 0 ? -1
                             : openat(dir_fd, "data", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                                      0600);
    if (data_fd < 0) {
        rc = ff_err_set(err, FF_EIO, "upload: create uploads/%s: %s", staging,
                        strerror(errno));
        goto fail;
    }
    fd_close(data_fd); /* empty: the directory fsync in info_write makes it durable */
    rc = info_write(dir_fd, repo, (int64_t)time(NULL), 0, err);
    if (rc != 0)
        goto fail;
    if (renameat(us->fd, staging, us->fd, new_id) != 0 || fsync(us->fd) != 0) {
        rc = ff_err_set(err, FF_EIO, "upload: publish uploads/%s: %s", new_id,
                        strerror(errno));
        goto fail;
    }
    fd_close(dir_fd);
    memcpy(id, new_id, sizeof(new_id));
    return 0;
fail:
    fd_close(dir_fd);
    (void)dir_remove(us->fd, staging, NULL); /* else swept at the next open */
    return rc;
}

int upload_open(struct upload_store *us, const char *repo, const char *id,
                struct upload **out, struct ff_err *err)
{
    if (!id_valid(id))
        return ff_err_set(err, FF_ENOTFOUND, "upload: unknown id (expected %d lower-case "
                          "hex digits)", UPLOAD_ID_LEN);
    struct upload *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return ff_err_set(err, FF_ENOMEM, "upload: out of memory");
    u->us = us;
    int rc = 0;
    lock(us);
    struct upload_session *s = session_get(us, id, &rc, err);
    if (s != NULL && strcmp(s->repo, repo) != 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "upload %s: unknown", id);
    if (s != NULL && rc == 0) {
        s->refs++;
        s->last_used = ++us->clock;
        u->s = s;
    }
    unlock(us);
    if (rc != 0) {
        free(u);
        return rc;
    }
    *out = u;
    return 0;
}

void upload_close(struct upload *u)
{
    if (u == NULL)
        return;
    upload_append_abort(u);
    struct upload_store *us = u->us;
    lock(us);
    struct upload_session *s = u->s;
    s->refs--;
    bool drop = s->gone && s->refs == 0;
    unlock(us);
    if (drop)
        session_free(s);
    free(u);
}

const char *upload_id(const struct upload *u)
{
    return u->s->id;
}

int64_t upload_size(const struct upload *u)
{
    lock(u->us);
    int64_t size = u->s->size;
    unlock(u->us);
    return size;
}

/* Takes s->busy for the caller, or says why not. Called locked. */
static int busy_take(struct upload_session *s, struct ff_err *err)
{
    if (s->gone)
        return ff_err_set(err, FF_ENOTFOUND, "upload %s: unknown", s->id);
    if (s->busy)
        return ff_err_set(err, FF_EBUSY, "upload %s: another request is using it", s->id);
    s->busy = true;
    return 0;
}

static void busy_release(struct upload_store *us, struct upload_session *s)
{
    lock(us);
    s->busy = false;
    s->last_used = ++us->clock;
    unlock(us);
}

int upload_append_begin(struct upload *u, int64_t offset, struct ff_err *err)
{
    struct upload_session *s = u->s;
    if (u->appending)
        return ff_err_set(err, FF_EBUSY, "upload %s: an append is already in progress", s->id);
    lock(u->us);
    int rc = busy_take(s, err);
    if (rc == 0 && offset != s->size) {
        s->busy = false;
        rc = ff_err_set(err, FF_ERANGE, "upload %s: chunk starts at %lld, expected %lld", s->id,
                        (long long)offset, (long long)s->size);
    }
    unlock(u->us);
    if (rc != 0)
        return rc;
    /* Only the busy holder touches ctx and size, so no lock is needed. */
    if (s->ctx != NULL) {
        rc = ff_digest_ctx_dup(s->ctx, &u->work, err);
        if (rc != 0) {
            busy_release(u->us, s);
            return rc;
        }
    }
    rc = spool_new(s->data_fd, s->size, u->work, &u->spool, err);
    if (rc != 0) {
        ff_digest_ctx_free(u->work);
        u->work = NULL;
        busy_release(u->us, s);
        return rc;
    }
    spool_direct_open(u->spool, s->dir_fd, "data");
    u->appending = true;
    u->offset = s->size;
    return 0;
}

int upload_append_write(struct upload *u, const void *data, size_t len, struct ff_err *err)
{
    struct upload_session *s = u->s;
    if (!u->appending)
        return ff_err_set(err, FF_EINVAL, "upload %s: no append in progress", s->id);
    int64_t max = blob_store_max_size(u->us->bs);
    int64_t end;
    if (len > (size_t)INT64_MAX || __builtin_add_overflow(u->offset, (int64_t)len, &end) ||
        end > max)
        return ff_err_set(err, FF_ETOOBIG, "upload %s: larger than the limit of %lld bytes",
                          s->id, (long long)max);
    int rc = spool_write(u->spool, data, len, err);
    if (rc != 0)
        return ff_err_wrap(err, "upload %s", s->id);
    u->offset = end;
    return 0;
}

void upload_append_abort(struct upload *u)
{
    if (!u->appending)
        return;
    struct upload_session *s = u->s;
    /* The helper must be done writing before the tail is cut. */
    spool_free(u->spool);
    u->spool = NULL;
    /* If this fails the tail stays past the acknowledged size; the next
     * chunk overwrites it and finish and reopen cut it off. */
    if (u->offset != s->size && ftruncate(s->data_fd, s->size) != 0)
        ff_log_warn(NULL, "upload.abort", "upload_id=%s error=%s", s->id, strerror(errno));
    ff_digest_ctx_free(u->work);
    u->work = NULL;
    u->appending = false;
    busy_release(u->us, s);
}

int upload_append_end(struct upload *u, int64_t *size, struct ff_err *err)
{
    struct upload_session *s = u->s;
    if (!u->appending)
        return ff_err_set(err, FF_EINVAL, "upload %s: no append in progress", s->id);
    int rc = spool_flush(u->spool, err);
    if (rc != 0) {
        upload_append_abort(u);
        return ff_err_wrap(err, "upload %s", s->id);
    }
    spool_free(u->spool);
    u->spool = NULL;
    if (u->offset != s->size) {
        if (fsync(s->data_fd) != 0)
            rc = ff_err_set(err, FF_EIO, "upload %s: fsync data: %s", s->id, strerror(errno));
        if (rc == 0)
            rc = info_write(s->dir_fd, s->repo, s->created, u->offset, err);
        if (rc != 0) {
            upload_append_abort(u);
            return ff_err_wrap(err, "upload %s", s->id);
        }
    }
    lock(u->us);
    s->size = u->offset;
    ff_digest_ctx_free(s->ctx);
    s->ctx = u->work;
    s->busy = false;
    s->last_used = ++u->us->clock;
    unlock(u->us);
    u->work = NULL;
    u->appending = false;
    if (size != NULL)
        *size = u->offset;
    return 0;
}

int upload_append(struct upload *u, int64_t offset, const void *data, size_t len,
                  int64_t *size, struct ff_err *err)
{
    int rc = upload_append_begin(u, offset, err);
    if (rc != 0)
        return rc;
    rc = upload_append_write(u, data, len, err);
    if (rc != 0) {
        upload_append_abort(u);
        return rc;
    }
    return upload_append_end(u, size, err);
}

/* Hashes the acknowledged data again (after a restart or an eviction) and
 * keeps the state, so a retried finish need not hash again. */
static int session_rehash(struct upload_session *s, struct ff_err *err)
{
    struct ff_digest_ctx *ctx = NULL;
    int rc = ff_digest_ctx_new(&ctx, err);
    if (rc != 0)
        return rc;
    unsigned char *buf = malloc(UPLOAD_HASH_CHUNK);
    if (buf == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "upload: out of memory");
        goto out;
    }
    int64_t off = 0;
    while (off < s->size) {
        size_t want = (size_t)(s->size - off < (int64_t)UPLOAD_HASH_CHUNK ? s->size - off
                                                                           : UPLOAD_HASH_CHUNK);
        ssize_t n = pread(s->data_fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = ff_err_set(err, FF_EIO, "upload %s: read data: %s", s->id,
                            n < 0 ? strerror(errno) : "shorter than acknowledged");
            goto out;
        }
        rc = ff_digest_ctx_update(ctx, buf, (size_t)n, err);
        if (rc != 0)
            goto out;
        off += n;
    }
    s->ctx = ctx;
    ctx = NULL;
out:
    free(buf);
    ff_digest_ctx_free(ctx);
    return rc;
}

/* Drops the session from disk and the cache; the handles keep the memory
 * until they close. Called with s->busy held. */
static int session_remove(struct upload_store *us, struct upload_session *s,
                          struct ff_err *err)
{
    int rc = dir_remove(us->fd, s->id, err);
    lock(us);
    s->gone = true;
    s->busy = false;
    live_remove(us, s);
    unlock(us);
    return rc;
}

int upload_finish(struct upload *u, const struct ff_digest *expected, int64_t *size,
                  struct ff_err *err)
{
    struct upload_session *s = u->s;
    if (u->appending)
        return ff_err_set(err, FF_EBUSY, "upload %s: an append is in progress", s->id);
    lock(u->us);
    int rc = busy_take(s, err);
    unlock(u->us);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(s->data_fd, &st) != 0 ||
        ((int64_t)st.st_size != s->size && ftruncate(s->data_fd, s->size) != 0)) {
        rc = ff_err_set(err, FF_EIO, "upload %s: data: %s", s->id, strerror(errno));
        goto fail;
    }
    if (s->ctx == NULL) {
        rc = session_rehash(s, err);
        if (rc != 0)
            goto fail;
    }
    struct ff_digest_ctx *copy = NULL;
    struct ff_digest got;
    rc = ff_digest_ctx_dup(s->ctx, &copy, err);
    if (rc == 0)
        rc = ff_digest_ctx_final(copy, &got, err);
    ff_digest_ctx_free(copy);
    int64_t bsize = 0;
    if (rc == 0)
        rc = blob_store_adopt(u->us->bs, s->dir_fd, "data", s->data_fd, &got, expected, NULL,
                              &bsize, err);
    if (rc != 0)
        goto fail;
    struct ff_err rm;
    if (session_remove(u->us, s, &rm) != 0)
        ff_log_warn(NULL, "upload.remove", "upload_id=%s error=%s", s->id, rm.msg);
    if (size != NULL)
        *size = bsize;
    return 0;
fail:
    busy_release(u->us, s);
    return rc;
}

int upload_cancel(struct upload *u, struct ff_err *err)
{
    struct upload_session *s = u->s;
    if (u->appending)
        return ff_err_set(err, FF_EBUSY, "upload %s: an append is in progress", s->id);
    lock(u->us);
    int rc = busy_take(s, err);
    unlock(u->us);
    if (rc != 0)
        return rc;
    return session_remove(u->us, s, err);
}

/* Latest modification time of a session directory's files (or of the
 * directory itself when they are missing). */
static time_t session_updated(int uploads_fd, const char *name)
{
    static const char *const files[] = {"info", "data"};
    time_t latest = 0;
    char path[STAGING_NAME_SIZE + 8];
    struct stat st;
    for (size_t i = 0; i < 2; i++) {
        int n = snprintf(path, sizeof(path), "%s/%s", name, files[i]);
        if (n > 0 && (size_t)n < sizeof(path) &&
            fstatat(uploads_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mtime > latest)
            latest = st.st_mtime;
    }
    if (latest == 0 && fstatat(uploads_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        latest = st.st_mtime;
    return latest;
}

int upload_expire(struct upload_store *us, int64_t max_age, unsigned *count,
                  struct ff_err *err)
{
    DIR *d = uploads_dir(us, err);
    if (d == NULL)
        return FF_EIO;
    time_t now = time(NULL);
    unsigned removed = 0;
    lock(us);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        bool staging = ff_str_has_prefix(name, STAGING_PREFIX);
        if (!staging && !id_valid(name))
            continue;
        struct upload_session *s = staging ? NULL : live_find(us, name);
        if (s != NULL && (s->refs > 0 || s->busy))
            continue;
        if ((int64_t)(now - session_updated(us->fd, name)) < max_age)
            continue;
        if (s != NULL) {
            live_remove(us, s);
            session_free(s);
        }
        struct ff_err e2;
        if (dir_remove(us->fd, name, &e2) != 0) {
            ff_log_warn(NULL, "upload.expire", "dir=%s error=%s", name, e2.msg);
            continue;
        }
        removed++;
    }
    unlock(us);
    closedir(d);
    if (count != NULL)
        *count = removed;
    return 0;
}

int upload_iterate(struct upload_store *us, upload_iter_fn fn, void *ctx, struct ff_err *err)
{
    DIR *d = uploads_dir(us, err);
    if (d == NULL)
        return FF_EIO;
    int rc = 0;
    lock(us);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!id_valid(e->d_name))
            continue;
        const struct upload_session *s = live_find(us, e->d_name);
        time_t updated = session_updated(us->fd, e->d_name);
        if (s != NULL) {
            rc = fn(ctx, s->id, s->repo, s->size, (time_t)s->created, updated);
            continue;
        }
        int dir_fd = openat(us->fd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dir_fd < 0)
            continue;
        char *repo = NULL;
        int64_t created = 0;
        int64_t size = 0;
        if (info_read(dir_fd, &repo, &created, &size, NULL) == 0)
            rc = fn(ctx, e->d_name, repo, size, (time_t)created, updated);
        free(repo);
        fd_close(dir_fd);
    }
    unlock(us);
    closedir(d);
    return rc;
}
