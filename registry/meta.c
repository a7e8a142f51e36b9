/* The registry's metadata in SQLite: which repositories exist, which blobs
 * each may serve, manifests with what they reference, tags and referrers.
 * Blob bytes live in the blob store; this file only decides visibility. */
#include "registry.h"

#include "ff_db.h"
#include "ff_str.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct meta {
    struct ff_db *db;
};

static const struct ff_db_migration meta_migrations[] = {
    {1, "CREATE TABLE repositories("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE repo_blobs("
        "  repo_id INTEGER NOT NULL REFERENCES repositories(id),"
        "  digest TEXT NOT NULL,"
        "  size INTEGER NOT NULL CHECK (size >= 0),"
        "  linked_at INTEGER NOT NULL,"
        "  PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;"
        "CREATE INDEX repo_blobs_digest ON repo_blobs(digest);"
        "CREATE TABLE manifests("
        "  repo_id INTEGER NOT NULL REFERENCES repositories(id),"
        "  digest TEXT NOT NULL,"
        "  media_type TEXT NOT NULL,"
        "  size INTEGER NOT NULL CHECK (size >= 0),"
        "  artifact_type TEXT,"
        "  subject TEXT,"
        "  annotations TEXT,"
        "  created_at INTEGER NOT NULL,"
        "  PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;"
        "CREATE INDEX manifests_subject ON manifests(repo_id, subject)"
        "  WHERE subject IS NOT NULL;"
        "CREATE INDEX manifests_digest ON manifests(digest);"
        "CREATE TABLE manifest_refs("
        "  repo_id INTEGER NOT NULL,"
        "  manifest TEXT NOT NULL,"
        "  child TEXT NOT NULL,"
        "  PRIMARY KEY (repo_id, manifest, child),"
        "  FOREIGN KEY (repo_id, manifest) REFERENCES manifests(repo_id, digest)"
        "    ON DELETE CASCADE) WITHOUT ROWID;"
        "CREATE INDEX manifest_refs_child ON manifest_refs(repo_id, child);"
        "CREATE TABLE tags("
        "  repo_id INTEGER NOT NULL,"
        "  name TEXT NOT NULL,"
        "  digest TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  PRIMARY KEY (repo_id, name),"
        "  FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest))"
        "  WITHOUT ROWID;"
        "CREATE INDEX tags_digest ON tags(repo_id, digest);"},
};

int meta_open(const char *path, struct meta **out, struct ff_err *err)
{
    struct meta *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ff_err_set(err, FF_ENOMEM, "meta: out of memory");
    int rc = ff_db_open(path, meta_migrations,
                        sizeof(meta_migrations) / sizeof(meta_migrations[0]), &m->db, err);
    if (rc != 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void meta_free(struct meta *m)
{
    if (m == NULL)
        return;
    ff_db_free(m->db);
    free(m);
}

struct ff_db *meta_db(struct meta *m)
{
    return m->db;
}

/* Runs a statement with text parameters (NULL binds NULL) to completion,
 * or to its first row when row is non-NULL (then *row is 1 or 0). */
static int meta_run(struct meta *m, const char *sql, const char *const *params, size_t n,
                    int *row, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db, sql, &st, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ff_db_bind_text(st, (int)i + 1, params[i], err);
    if (rc == 0) {
        do
            rc = ff_db_step(st, err);
        while (rc == 1 && row == NULL);
        if (row != NULL && rc >= 0) {
            *row = rc;
            rc = 0;
        }
    }
    ff_db_finalize(m->db, st);
    return rc;
}

/* Id of repo, creating it when create is set. FF_ENOTFOUND otherwise. */
static int repo_id(struct meta *m, const char *repo, bool create, int64_t *out,
                   struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;
    if (create) {
        rc = ff_db_prepare(m->db, "INSERT INTO repositories(name, created_at) VALUES (?, ?)"
                                  " ON CONFLICT(name) DO NOTHING", &st, err);
        if (rc == 0)
            rc = ff_db_bind_text(st, 1, repo, err);
        if (rc == 0)
            rc = ff_db_bind_int64(st, 2, (int64_t)time(NULL), err);
        if (rc == 0)
            rc = ff_db_step(st, err);
        ff_db_finalize(m->db, st);
        if (rc < 0)
            return rc;
        st = NULL;
    }
    rc = ff_db_prepare(m->db, "SELECT id FROM repositories WHERE name = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, repo, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_ENOTFOUND, "repository \"%s\" not known", repo);
    }
    ff_db_finalize(m->db, st);
    return rc;
}

bool meta_repo_exists(struct meta *m, const char *repo)
{
    int64_t id;
    return repo_id(m, repo, false, &id, NULL) == 0;
}

int meta_blob_link(struct meta *m, const char *repo, const char *digest, int64_t size,
                   struct ff_err *err)
{
    int rc = ff_db_begin(m->db, err);
    if (rc != 0)
        return rc;
    int64_t id = 0;
    rc = repo_id(m, repo, true, &id, err);
    sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = ff_db_prepare(m->db, "INSERT INTO repo_blobs(repo_id, digest, size, linked_at)"
                                  " VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                                  " SET linked_at = excluded.linked_at", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, digest, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, size, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, (int64_t)time(NULL), err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(m->db, st);
    if (rc < 0) {
        ff_db_rollback(m->db, NULL);
        return rc;
    }
    return ff_db_commit(m->db, err);
}

int meta_blob_linked(struct meta *m, const char *repo, const char *digest, int64_t *size,
                     struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db, "SELECT b.size FROM repo_blobs b JOIN repositories r"
                                  " ON r.id = b.repo_id WHERE r.name = ? AND b.digest = ?",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, repo, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, digest, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        if (size != NULL)
            *size = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_ENOTFOUND, "blob \"%s\" unknown to repository \"%s\"", digest,
                        repo);
    }
    ff_db_finalize(m->db, st);
    return rc;
}

int meta_blob_unlink(struct meta *m, const char *repo, const char *digest, struct ff_err *err)
{
    const char *p[] = {repo, digest};
    int rc = meta_run(m, "DELETE FROM repo_blobs WHERE digest = ?2 AND repo_id ="
                         " (SELECT id FROM repositories WHERE name = ?1)", p, 2, NULL, err);
    if (rc != 0)
        return rc;
    if (ff_db_changes(m->db) == 0)
        return ff_err_set(err, FF_ENOTFOUND, "blob \"%s\" unknown to repository \"%s\"",
                          digest, repo);
    return 0;
}

/* Checks that every digest in list is present in repo as a linked blob
 * (manifests false) or a manifest (manifests true). */
static int refs_present(struct meta *m, int64_t id, const char *const *list, size_t n,
                        bool manifests, struct ff_err *err)
{
    const char *sql = manifests
        ? "SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?"
        : "SELECT 1 FROM repo_blobs WHERE repo_id = ? AND digest = ?";
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = NULL;
        int rc = ff_db_prepare(m->db, sql, &st, err);
        if (rc == 0)
            rc = ff_db_bind_int64(st, 1, id, err);
        if (rc == 0)
            rc = ff_db_bind_text(st, 2, list[i], err);
        if (rc == 0)
            rc = ff_db_step(st, err);
        ff_db_finalize(m->db, st);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return ff_err_set(err, FF_ENOTFOUND, "%s \"%s\" is not in the repository",
                              manifests ? "manifest" : "blob", list[i]);
    }
    return 0;
}

static int manifest_row_put(struct meta *m, int64_t id, const struct meta_manifest_put *put,
                            struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db,
                           "INSERT INTO manifests(repo_id, digest, media_type, size,"
                           " artifact_type, subject, annotations, created_at)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                           /* A re-push restarts the GC grace period, as a
                            * re-uploaded blob's link does: the client is
                            * about to refer to it (an index over it). */
                           " ON CONFLICT DO UPDATE SET created_at = excluded.created_at",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, put->digest, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, put->media_type, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, put->size, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 5, put->artifact_type, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 6, put->subject, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 7, put->annotations, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 8, (int64_t)time(NULL), err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(m->db, st);
    if (rc < 0)
        return rc;
    const char *const *lists[2] = {put->blobs, put->children};
    size_t counts[2] = {put->n_blobs, put->n_children};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            rc = ff_db_prepare(m->db, "INSERT INTO manifest_refs(repo_id, manifest, child)"
                                      " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", &st, err);
            if (rc == 0)
                rc = ff_db_bind_int64(st, 1, id, err);
            if (rc == 0)
                rc = ff_db_bind_text(st, 2, put->digest, err);
            if (rc == 0)
                rc = ff_db_bind_text(st, 3, lists[l][i], err);
            if (rc == 0)
                rc = ff_db_step(st, err);
            ff_db_finalize(m->db, st);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Points tag at digest unless an immutable tag already points elsewhere. */
static int tag_put(struct meta *m, int64_t id, const char *tag, const char *digest,
                   bool immutable, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db, "SELECT digest FROM tags WHERE repo_id = ? AND name = ?",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, tag, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        const char *old = (const char *)sqlite3_column_text(st, 0);
        rc = 0;
        if (immutable && old != NULL && strcmp(old, digest) != 0)
            rc = ff_err_set(err, FF_EDENIED, "tag \"%s\" is immutable and points at %s", tag,
                            old);
    }
    ff_db_finalize(m->db, st);
    if (rc < 0)
        return rc;
    rc = ff_db_prepare(m->db, "INSERT INTO tags(repo_id, name, digest, updated_at)"
                              " VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                              " SET digest = excluded.digest, updated_at = excluded.updated_at",
                       &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, tag, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, digest, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, (int64_t)time(NULL), err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(m->db, st);
    return rc < 0 ? rc : 0;
}

int meta_manifest_refs_check(struct meta *m, const struct meta_manifest_put *put,
                             struct ff_err *err)
{
    int64_t id = 0;
    int rc = repo_id(m, put->repo, false, &id, err);
    if (rc == FF_ENOTFOUND && put->n_blobs + put->n_children == 0)
        return 0;
    if (rc == FF_ENOTFOUND && put->n_blobs > 0)
        return ff_err_set(err, FF_ENOTFOUND, "blob \"%s\" is not in the repository",
                          put->blobs[0]);
    if (rc == FF_ENOTFOUND)
        return ff_err_set(err, FF_ENOTFOUND, "manifest \"%s\" is not in the repository",
                          put->children[0]);
    if (rc == 0)
        rc = refs_present(m, id, put->blobs, put->n_blobs, false, err);
    if (rc == 0)
        rc = refs_present(m, id, put->children, put->n_children, true, err);
    return rc;
}

int meta_manifest_put(struct meta *m, const struct meta_manifest_put *put, struct ff_err *err)
{
    int rc = ff_db_begin(m->db, err);
    if (rc != 0)
        return rc;
    int64_t id = 0;
    rc = repo_id(m, put->repo, true, &id, err);
    if (rc == 0)
        rc = refs_present(m, id, put->blobs, put->n_blobs, false, err);
    if (rc == 0)
        rc = refs_present(m, id, put->children, put->n_children, true, err);
    if (rc == 0)
        rc = manifest_row_put(m, id, put, err);
    if (rc == 0 && put->tag != NULL)
        rc = tag_put(m, id, put->tag, put->digest, put->tag_immutable, err);
    if (rc != 0) {
        ff_db_rollback(m->db, NULL);
        return rc;
    }
    return ff_db_commit(m->db, err);
}

static int manifest_from_row(sqlite3_stmt *st, struct meta_manifest *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *digest = (const char *)sqlite3_column_text(st, 0);
    const char *media = (const char *)sqlite3_column_text(st, 1);
    const char *artifact = (const char *)sqlite3_column_text(st, 3);
    const char *annotations = (const char *)sqlite3_column_text(st, 4);
    if (digest == NULL || media == NULL)
        return ff_err_set(err, FF_EDB, "meta: manifest row without digest or media type");
    ff_strlcpy(out->digest, digest, sizeof(out->digest));
    out->size = sqlite3_column_int64(st, 2);
    out->media_type = strdup(media);
    out->artifact_type = artifact != NULL ? strdup(artifact) : NULL;
    out->annotations = annotations != NULL ? strdup(annotations) : NULL;
    if (out->media_type == NULL || (artifact != NULL && out->artifact_type == NULL) ||
        (annotations != NULL && out->annotations == NULL)) {
        meta_manifest_release(out);
        return ff_err_set(err, FF_ENOMEM, "meta: out of memory");
    }
    return 0;
}

void meta_manifest_release(struct meta_manifest *mm)
{
    free(mm->media_type);
    free(mm->artifact_type);
    free(mm->annotations);
    mm->media_type = mm->artifact_type = mm->annotations = NULL;
}

int meta_manifest_get(struct meta *m, const char *repo, const char *reference,
                      struct meta_manifest *out, struct ff_err *err)
{
    bool by_digest = ff_digest_parse_str(reference, NULL, NULL) == 0;
    const char *sql = by_digest
        ? "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations"
          " FROM manifests m JOIN repositories r ON r.id = m.repo_id"
          " WHERE r.name = ? AND m.digest = ?"
        : "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations"
          " FROM tags t JOIN repositories r ON r.id = t.repo_id"
          " JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest"
          " WHERE r.name = ? AND t.name = ?";
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db, sql, &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, repo, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, reference, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1)
        rc = manifest_from_row(st, out, err);
    else if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "manifest \"%s\" unknown to repository \"%s\"",
                        reference, repo);
    ff_db_finalize(m->db, st);
    return rc;
}

/* Refuses when a tag that is_immutable names points at digest. */
static int immutable_tags_check(struct meta *m, int64_t id, const char *digest,
                                bool (*is_immutable)(void *ctx, const char *tag), void *ctx,
                                struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db, "SELECT name FROM tags WHERE repo_id = ? AND digest = ?",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, digest, err);
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        const char *tag = (const char *)sqlite3_column_text(st, 0);
        rc = 0;
        if (tag != NULL && is_immutable != NULL && is_immutable(ctx, tag))
            rc = ff_err_set(err, FF_EDENIED, "manifest \"%s\" is tagged \"%s\", which is "
                            "immutable", digest, tag);
    }
    ff_db_finalize(m->db, st);
    return rc;
}

int meta_manifest_delete(struct meta *m, const char *repo, const char *digest,
                         bool (*is_immutable)(void *ctx, const char *tag), void *ctx,
                         struct ff_err *err)
{
    int rc = ff_db_begin(m->db, err);
    if (rc != 0)
        return rc;
    int64_t id = 0;
    rc = repo_id(m, repo, false, &id, err);
    if (rc == FF_ENOTFOUND)
        rc = ff_err_set(err, FF_ENOTFOUND, "manifest \"%s\" unknown to repository \"%s\"",
                        digest, repo);
    if (rc == 0)
        rc = immutable_tags_check(m, id, digest, is_immutable, ctx, err);
    char idtext[24];
    (void)snprintf(idtext, sizeof(idtext), "%lld", (long long)id);
    const char *p[] = {idtext, digest};
    if (rc == 0)
        rc = meta_run(m, "DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2", p, 2, NULL,
                      err);
    if (rc == 0)
        rc = meta_run(m, "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2", p, 2,
                      NULL, err);
    if (rc == 0 && ff_db_changes(m->db) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "manifest \"%s\" unknown to repository \"%s\"",
                        digest, repo);
    if (rc != 0) {
        ff_db_rollback(m->db, NULL);
        return rc;
    }
    return ff_db_commit(m->db, err);
}

int meta_tag_delete(struct meta *m, const char *repo, const char *tag, bool immutable,
                    struct ff_err *err)
{
    if (immutable)
        return ff_err_set(err, FF_EDENIED, "tag \"%s\" is immutable", tag);
    const char *p[] = {repo, tag};
    int rc = meta_run(m, "DELETE FROM tags WHERE name = ?2 AND repo_id ="
                         " (SELECT id FROM repositories WHERE name = ?1)", p, 2, NULL, err);
    if (rc != 0)
        return rc;
    if (ff_db_changes(m->db) == 0)
        return ff_err_set(err, FF_ENOTFOUND, "tag \"%s\" unknown to repository \"%s\"", tag,
                          repo);
    return 0;
}

/* Pages through one text column: up to n rows after last, one more row
 * fetched only to learn whether more follow. */
static int meta_page(struct meta *m, const char *sql, int64_t id, const char *last, int64_t n,
                     int (*fn)(void *ctx, const char *name), void *ctx, bool *more,
                     struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db, sql, &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, last != NULL ? last : "", err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, n + 1, err);
    int64_t seen = 0;
    *more = false;
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        rc = 0;
        if (seen == n) {
            *more = true;
            break;
        }
        seen++;
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (name != NULL)
            rc = fn(ctx, name);
    }
    ff_db_finalize(m->db, st);
    return rc < 0 ? rc : 0;
}

int meta_tags_list(struct meta *m, const char *repo, const char *last, int64_t n,
                   int (*fn)(void *ctx, const char *name), void *ctx, bool *more,
                   struct ff_err *err)
{
    int64_t id = 0;
    int rc = repo_id(m, repo, false, &id, err);
    if (rc != 0)
        return rc;
    return meta_page(m, "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2"
                        " ORDER BY name LIMIT ?3", id, last, n, fn, ctx, more, err);
}

int meta_catalog(struct meta *m, const char *last, int64_t n,
                 int (*fn)(void *ctx, const char *name), void *ctx, bool *more,
                 struct ff_err *err)
{
    return meta_page(m, "SELECT name FROM repositories WHERE ?1 = ?1 AND name > ?2"
                        " ORDER BY name LIMIT ?3", 0, last, n, fn, ctx, more, err);
}

int meta_referrers(struct meta *m, const char *repo, const char *subject,
                   const char *artifact_type,
                   int (*fn)(void *ctx, const struct meta_manifest *mm), void *ctx,
                   struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = ff_db_prepare(m->db,
                           "SELECT m.digest, m.media_type, m.size, m.artifact_type,"
                           " m.annotations FROM manifests m JOIN repositories r"
                           " ON r.id = m.repo_id WHERE r.name = ?1 AND m.subject = ?2"
                           " AND (?3 IS NULL OR m.artifact_type = ?3) ORDER BY m.digest",
                           &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, repo, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, subject, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, artifact_type, err);
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        struct meta_manifest mm;
        rc = manifest_from_row(st, &mm, err);
        if (rc == 0) {
            rc = fn(ctx, &mm);
            meta_manifest_release(&mm);
        }
    }
    ff_db_finalize(m->db, st);
    return rc < 0 ? rc : 0;
}
