/* Garbage collection: mark and sweep that is safe while the registry
 * serves, in-process (periodic) or from `ff-registry gc` beside it.
 *
 * 1. Manifests: an untagged manifest older than the grace period that no
 *    other manifest of its repository refers to (as an index entry) and
 *    whose subject, if any, is gone, is deleted; repeated until nothing
 *    changes, since deleting an index frees its entries.
 * 2. Links: a blob link older than the grace period that no manifest of
 *    its repository refers to is removed.
 * 3. Files: a blob file older than the grace period that no repository
 *    links and no manifest is, is deleted.
 * The grace period keeps everything a push in progress has written (layers
 * go up before their manifest). Step 3 holds the guard lock exclusively;
 * every commit holds it shared from the moment its file appears in the
 * store until its link is in the database, so GC never deletes a blob
 * between those two steps, and a blob it judged dead cannot be revived
 * under it. */
#include "registry.h"

#include "ff_db.h"
#include "ff_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define GC_LOCK_FILE "gc.lock"

static int guard_open(struct registry *r, struct ff_err *err)
{
    int fd = openat(blob_store_root_fd(r->blobs), GC_LOCK_FILE,
                    O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "gc lock: %s", strerror(errno));
    return fd;
}

static int guard_lock(int fd, int how, struct ff_err *err)
{
    while (flock(fd, how) != 0) {
        if (errno != EINTR) {
            close(fd);
            return ff_err_set(err, FF_EIO, "gc lock: %s", strerror(errno));
        }
    }
    return fd;
}

int gc_guard_enter(struct registry *r, struct ff_err *err)
{
    /* A descriptor of its own per holder: flock locks belong to the open
     * file, so threads sharing one descriptor would release each other. */
    int fd = guard_open(r, err);
    return fd < 0 ? fd : guard_lock(fd, LOCK_SH, err);
}

void gc_guard_leave(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Runs one DELETE whose ?1 is the cutoff time in its own transaction;
 * *n gets how many rows it removed. */
static int sweep(struct ff_db *db, const char *sql, int64_t cutoff, int *n,
                 struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_begin(db, err);
    if (rc != 0)
        return rc;
    rc = ff_db_prepare(db, sql, &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, cutoff, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(db, st);
    if (rc < 0) {
        (void)ff_db_rollback(db, NULL);
        return rc;
    }
    *n = ff_db_changes(db);
    return ff_db_commit(db, err);
}

/* Step 1: untagged manifests older than the cutoff that no index of their
 * repository lists and whose subject (if any) is gone. */
static const char manifests_sweep_sql[] =
    "DELETE FROM manifests AS m WHERE m.created_at < ?1"
    " AND NOT EXISTS (SELECT 1 FROM tags t"
    "   WHERE t.repo_id = m.repo_id AND t.digest = m.digest)"
    " AND NOT EXISTS (SELECT 1 FROM manifest_refs r"
    "   WHERE r.repo_id = m.repo_id AND r.child = m.digest)"
    " AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s"
    "   WHERE s.repo_id = m.repo_id AND s.digest = m.subject))";

/* Step 2: blob links older than the cutoff that no manifest references. */
static const char links_sweep_sql[] =
    "DELETE FROM repo_blobs AS b WHERE b.linked_at < ?1"
    " AND NOT EXISTS (SELECT 1 FROM manifest_refs r"
    "   WHERE r.repo_id = b.repo_id AND r.child = b.digest)";

struct files_sweep {
    struct registry *r;
    struct ff_db *db;
    time_t cutoff;
    struct gc_stats *stats;
    struct ff_err *err;
};

static bool digest_in_use(struct ff_db *db, const char *digest, struct ff_err *err, int *rc)
{
    sqlite3_stmt *st = NULL;
    *rc = ff_db_prepare(db, "SELECT 1 WHERE EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)"
                            " OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)", &st, err);
    if (*rc == 0)
        *rc = ff_db_bind_text(st, 1, digest, err);
    int step = *rc == 0 ? ff_db_step(st, err) : *rc;
    ff_db_finalize(db, st);
    if (step < 0) {
        *rc = step;
        return true; /* when in doubt, keep it */
    }
    *rc = 0;
    return step == 1;
}

static int file_visit(void *ctx, const struct ff_digest *d, int64_t size, time_t mtime)
{
    struct files_sweep *s = ctx;
    s->stats->blobs_seen++;
    if (mtime >= s->cutoff)
        return 0;
    char ds[FF_DIGEST_STR_SIZE];
    ff_digest_format(d, ds);
    int rc = 0;
    if (digest_in_use(s->db, ds, s->err, &rc))
        return rc;
    rc = blob_store_delete(s->r->blobs, d, s->err);
    if (rc == FF_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    s->stats->blobs_deleted++;
    s->stats->bytes_freed += size;
    ff_log_info(NULL, "gc.blob.deleted", "digest=%s size=%lld", ds, (long long)size);
    return 0;
}

int gc_run(struct registry *r, int64_t grace, struct gc_stats *stats, struct ff_err *err)
{
    memset(stats, 0, sizeof(*stats));
    struct ff_db *db = meta_db(r->meta);
    int64_t cutoff = (int64_t)time(NULL) - grace;
    int rc = 0;
    for (int n = 1; rc == 0 && n > 0;) {
        rc = sweep(db, manifests_sweep_sql, cutoff, &n, err);
        stats->manifests_deleted += n;
    }
    int links = 0;
    if (rc == 0)
        rc = sweep(db, links_sweep_sql, cutoff, &links, err);
    stats->links_deleted = links;
    if (rc != 0)
        return ff_err_wrap(err, "gc");
    int fd = guard_open(r, err);
    if (fd < 0)
        return fd;
    if (guard_lock(fd, LOCK_EX, err) < 0)
        return FF_EIO;
    struct files_sweep s = {r, db, (time_t)cutoff, stats, err};
    rc = blob_store_iterate(r->blobs, file_visit, &s, err);
    gc_guard_leave(fd);
    ff_log_info(NULL, "gc.done", "manifests=%d links=%d blobs=%d/%d bytes=%lld",
                stats->manifests_deleted, stats->links_deleted, stats->blobs_deleted,
                stats->blobs_seen, (long long)stats->bytes_freed);
    return rc;
}
