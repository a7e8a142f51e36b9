/* Machine identities in SQLite: build workers (joined with a single-use
 * join token), service keys (ff-gitd), and the jobs a worker holds, which
 * decide the one repository it may push. */
#include "builder.h"

#include "ff_str.h"

#include <stdio.h>
#include <string.h>

static int prep(struct db *db, const char *sql, sqlite3_stmt **st, struct ff_err *err)
{
    return ff_db_prepare(db_handle(db), sql, st, err);
}

int db_join_token_create(struct db *db, const char *hash, const char *created_by,
                         int64_t expires_at, int64_t *out_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "INSERT INTO worker_join_tokens(hash, created_by, created_at, "
                  "expires_at) VALUES (?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, hash, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, created_by, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)time(NULL), err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, expires_at, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "join token", err);
    if (rc == 0)
        *out_id = ff_db_last_insert_id(db_handle(db));
    return rc;
}

static int worker_insert(struct db *db, const char *name, const char *archs_json,
                         const char *key_hash, int64_t *out_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "INSERT INTO workers(name, archs, key_hash, created_at) "
                  "VALUES (?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, archs_json, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, key_hash, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 4, (int64_t)time(NULL), err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "worker", err);
    if (rc == 0)
        *out_id = ff_db_last_insert_id(db_handle(db));
    return rc;
}

/* Marks the live join token whose hash is hash as used by worker_id.
 * Errors: FF_EAUTH (no such live token), FF_EDB, FF_EBUSY. */
static int join_token_spend(struct db *db, const char *hash, int64_t now, int64_t worker_id,
                            struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE worker_join_tokens SET used_at = ?1, worker_id = ?2 WHERE "
                  "hash = ?3 AND used_at IS NULL AND expires_at > ?1", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, worker_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, hash, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "join token", err);
    if (rc == 0 && ff_db_changes(db_handle(db)) == 0)
        rc = ff_err_set(err, FF_EAUTH, "join token unknown, expired or already used");
    return rc;
}

int db_worker_join(struct db *db, const char *join_hash, int64_t now, const char *name,
                   const char *archs_json, const char *key_hash, int64_t *out_id,
                   struct ff_err *err)
{
    int rc = ff_db_begin(db_handle(db), err);
    if (rc != 0)
        return rc;
    rc = worker_insert(db, name, archs_json, key_hash, out_id, err);
    if (rc == 0)
        rc = join_token_spend(db, join_hash, now, *out_id, err);
    if (rc == 0)
        rc = ff_db_commit(db_handle(db), err);
    if (rc != 0)
        (void)ff_db_rollback(db_handle(db), NULL);
    return rc;
}

int db_worker_by_key(struct db *db, const char *key_hash, int64_t now, int64_t *out_id,
                     struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE workers SET last_seen_at = ? WHERE key_hash = ? AND "
                  "revoked_at IS NULL RETURNING id", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, key_hash, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out_id = sqlite3_column_int64(st, 0);
        rc = ff_db_step(st, err);
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EAUTH, "unknown or invalid credentials");
    }
    ff_db_finalize(db_handle(db), st);
    return rc < 0 ? rc : 0;
}

static json_t *worker_json(sqlite3_stmt *st)
{
    const char *archs = (const char *)sqlite3_column_text(st, 2);
    json_t *a = json_loads(archs != NULL ? archs : "[]", 0, NULL);
    if (a == NULL)
        return NULL;
    int64_t id = sqlite3_column_int64(st, 0);
    char name[IDENTITY_NAME_MAX + 1];
    (void)snprintf(name, sizeof(name), "w_%lld", (long long)id);
    return json_pack("{s:I,s:s,s:s,s:o,s:I,s:o,s:o}", "id", (json_int_t)id, "name", name,
                     "label", (const char *)sqlite3_column_text(st, 1), "archs", a,
                     "created_at", (json_int_t)sqlite3_column_int64(st, 3), "last_seen_at",
                     db_json_int(st, 4), "revoked_at", db_json_int(st, 5));
}

int db_worker_list(struct db *db, int64_t after, int limit, json_t **out, int64_t *out_next,
                   struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT id, name, archs, created_at, last_seen_at, revoked_at FROM "
                  "workers WHERE id > ? ORDER BY id LIMIT ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, (int64_t)limit + 1, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    return db_page(db, st, limit, worker_json, out, out_next, err);
}

int db_worker_revoke(struct db *db, int64_t id, int64_t now, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE workers SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                  &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, id, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "worker", err);
    if (rc == 0 && ff_db_changes(db_handle(db)) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "no live worker %lld", (long long)id);
    return rc;
}

int db_service_key_set(struct db *db, const char *name, const char *key_hash,
                       struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "INSERT INTO services(name, key_hash, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash, "
                  "created_at = excluded.created_at", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, key_hash, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)time(NULL), err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    return db_step_done(db, st, "service key", err);
}

int db_service_by_key(struct db *db, const char *key_hash, char out[IDENTITY_NAME_MAX + 1],
                      struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT name FROM services WHERE key_hash = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, key_hash, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        rc = 0;
        ff_strlcpy(out, (const char *)sqlite3_column_text(st, 0), IDENTITY_NAME_MAX + 1);
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EAUTH, "unknown or invalid credentials");
    }
    ff_db_finalize(db_handle(db), st);
    return rc;
}

int db_worker_holds_app(struct db *db, int64_t worker_id, const char *owner, const char *name,
                        bool *out, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT 1 FROM jobs j JOIN apps a ON a.id = j.app_id JOIN users u ON "
                  "u.id = a.owner_id WHERE j.worker_id = ? AND j.state = 'running' AND "
                  "u.name = ? AND a.name = ? LIMIT 1", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, worker_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, owner, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, name, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(db_handle(db), st);
    if (rc < 0)
        return rc;
    *out = rc == 1;
    return 0;
}
