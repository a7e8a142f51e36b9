/* Devices in SQLite: the provisioning keys that register them, the
 * devices with their key hashes, and environment variables per app and
 * per device. */
#include "builder.h"

#include "ff_str.h"

#include <string.h>

/* Prepares sql on the database under db. */
static int prep(struct db *db, const char *sql, sqlite3_stmt **st, struct ff_err *err)
{
    return ff_db_prepare(db_handle(db), sql, st, err);
}

#define PROVISION_COLUMNS "id, name, created_by, created_at, expires_at, max_uses, uses, " \
                          "revoked_at"

static json_t *provision_json(sqlite3_stmt *st)
{
    return json_pack("{s:I,s:s,s:s,s:I,s:o,s:o,s:I,s:o}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "name",
                     (const char *)sqlite3_column_text(st, 1), "created_by",
                     (const char *)sqlite3_column_text(st, 2), "created_at",
                     (json_int_t)sqlite3_column_int64(st, 3), "expires_at", db_json_int(st, 4),
                     "max_uses", db_json_int(st, 5), "uses",
                     (json_int_t)sqlite3_column_int64(st, 6), "revoked_at",
                     db_json_int(st, 7));
}

/* Binds v at idx, or NULL when v is 0 ("never", "unlimited"). */
static int bind_opt(sqlite3_stmt *st, int idx, int64_t v, struct ff_err *err)
{
    return v > 0 ? ff_db_bind_int64(st, idx, v, err) : ff_db_bind_null(st, idx, err);
}

int db_provision_create(struct db *db, const struct provision_new *p, json_t **out,
                        struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "INSERT INTO provisioning_keys(app_id, name, hash, created_by, "
                  "created_at, expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?) "
                  "RETURNING " PROVISION_COLUMNS, &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, p->app_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, p->name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, p->hash, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 4, p->created_by, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 5, (int64_t)time(NULL), err);
    if (rc == 0)
        rc = bind_opt(st, 6, p->expires_at, err);
    if (rc == 0)
        rc = bind_opt(st, 7, p->max_uses, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *out = provision_json(st);
        rc = *out != NULL ? 0 : ff_err_set(err, FF_ENOMEM, "db: out of memory");
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EDB, "db: insert returned no row");
    }
    ff_db_finalize(db_handle(db), st);
    return rc == FF_ECONFLICT ? ff_err_set(err, FF_EEXIST, "provisioning key already exists")
                              : rc;
}

int db_provision_list(struct db *db, int64_t app_id, int64_t after, int limit, json_t **out,
                      int64_t *out_next, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT " PROVISION_COLUMNS " FROM provisioning_keys WHERE app_id = ? "
                  "AND id > ? ORDER BY id LIMIT ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)limit + 1, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    return db_page(db, st, limit, provision_json, out, out_next, err);
}

int db_provision_revoke(struct db *db, int64_t app_id, int64_t id, int64_t now,
                        struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE provisioning_keys SET revoked_at = ? WHERE id = ? AND "
                  "app_id = ? AND revoked_at IS NULL", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, app_id, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "provisioning key", err);
    if (rc == 0 && ff_db_changes(db_handle(db)) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "no live provisioning key %lld in this app",
                        (long long)id);
    return rc;
}

/* Counts one use of the live key whose hash is key_hash; *app_id and
 * *key_id are its app and id. Errors: FF_EAUTH, FF_EDB, FF_EBUSY. */
static int provision_use(struct db *db, const char *key_hash, int64_t now, int64_t *app_id,
                         int64_t *key_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE provisioning_keys SET uses = uses + 1 WHERE hash = ?1 AND "
                  "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2) AND "
                  "(max_uses IS NULL OR uses < max_uses) RETURNING app_id, id", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, key_hash, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, now, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        *app_id = sqlite3_column_int64(st, 0);
        *key_id = sqlite3_column_int64(st, 1);
        rc = ff_db_step(st, err);
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EAUTH, "provisioning key unknown, revoked, expired or used up");
    }
    ff_db_finalize(db_handle(db), st);
    return rc < 0 ? rc : 0;
}

/* Fails with FF_EINVAL unless arch is one of app_id's architectures. */
static int app_builds_arch(struct db *db, int64_t app_id, const char *arch, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT 1 FROM apps a, json_each(a.archs) e WHERE a.id = ? AND "
                  "e.value = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, arch, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    ff_db_finalize(db_handle(db), st);
    if (rc == 0)
        return ff_err_set(err, FF_EINVAL, "field \"arch\": the app is not built for \"%s\"",
                          arch);
    return rc < 0 ? rc : 0;
}

#define DEVICE_COLUMNS "d.id, d.uuid, d.name, d.device_type, d.arch, u.name || '/' || a.name, " \
                       "d.status, d.created_at, d.last_seen_at, d.app_id"
#define DEVICE_FROM " FROM devices d JOIN apps a ON a.id = d.app_id JOIN users u ON " \
                    "u.id = a.owner_id "

static json_t *device_json(sqlite3_stmt *st)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:o}", "uuid",
                     (const char *)sqlite3_column_text(st, 1), "name",
                     (const char *)sqlite3_column_text(st, 2), "device_type",
                     (const char *)sqlite3_column_text(st, 3), "arch",
                     (const char *)sqlite3_column_text(st, 4), "app",
                     (const char *)sqlite3_column_text(st, 5), "status", db_json_text(st, 6),
                     "created_at", (json_int_t)sqlite3_column_int64(st, 7), "last_seen_at",
                     db_json_int(st, 8));
}

static int device_insert(struct db *db, const struct device_new *d, int64_t app_id,
                         int64_t key_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "INSERT INTO devices(uuid, app_id, name, device_type, arch, key_hash, "
                  "provisioning_key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, d->uuid, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, d->name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 4, d->device_type, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 5, d->arch, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 6, d->key_hash, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 7, key_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 8, (int64_t)time(NULL), err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "device", err);
    if (rc == FF_EEXIST)
        rc = ff_err_set(err, FF_EEXIST, "a device with uuid %s already exists", d->uuid);
    return rc;
}

int db_device_register(struct db *db, const char *key_hash, int64_t now,
                       const struct device_new *d, json_t **out, struct ff_err *err)
{
    int64_t app_id = 0, key_id = 0;
    int rc = ff_db_begin(db_handle(db), err);
    if (rc != 0)
        return rc;
    rc = provision_use(db, key_hash, now, &app_id, &key_id, err);
    if (rc == 0)
        rc = app_builds_arch(db, app_id, d->arch, err);
    if (rc == 0)
        rc = device_insert(db, d, app_id, key_id, err);
    if (rc == 0)
        rc = ff_db_commit(db_handle(db), err);
    if (rc != 0) {
        (void)ff_db_rollback(db_handle(db), NULL);
        return rc;
    }
    struct device dev;
    return db_device_get(db, d->uuid, &dev, out, err);
}

int db_device_by_key(struct db *db, const char *key_hash, int64_t now, struct device *out,
                     struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE devices SET last_seen_at = ? WHERE key_hash = ? "
                  "RETURNING id, app_id, uuid", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, now, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, key_hash, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 1) {
        out->id = sqlite3_column_int64(st, 0);
        out->app_id = sqlite3_column_int64(st, 1);
        ff_strlcpy(out->uuid, (const char *)sqlite3_column_text(st, 2), sizeof(out->uuid));
        rc = ff_db_step(st, err);
    } else if (rc == 0) {
        rc = ff_err_set(err, FF_EAUTH, "unknown or invalid credentials");
    }
    ff_db_finalize(db_handle(db), st);
    return rc < 0 ? rc : 0;
}

int db_device_get(struct db *db, const char *uuid, struct device *out, json_t **out_json,
                  struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT " DEVICE_COLUMNS DEVICE_FROM "WHERE d.uuid = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 1, uuid, err);
    if (rc == 0)
        rc = ff_db_step(st, err);
    if (rc == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "device not found");
    if (rc == 1) {
        rc = 0;
        out->id = sqlite3_column_int64(st, 0);
        out->app_id = sqlite3_column_int64(st, 9);
        ff_strlcpy(out->uuid, (const char *)sqlite3_column_text(st, 1), sizeof(out->uuid));
        if (out_json != NULL && (*out_json = device_json(st)) == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
    }
    ff_db_finalize(db_handle(db), st);
    return rc;
}

int db_device_list(struct db *db, int64_t app_id, int64_t after, int limit, json_t **out,
                   int64_t *out_next, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "SELECT " DEVICE_COLUMNS DEVICE_FROM "WHERE d.app_id = ? AND d.id > ? "
                  "ORDER BY d.id LIMIT ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, after, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, (int64_t)limit + 1, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    return db_page(db, st, limit, device_json, out, out_next, err);
}

int db_device_update(struct db *db, int64_t device_id, const char *name, const char *status,
                     struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "UPDATE devices SET name = coalesce(?, name), "
                  "status = coalesce(?, status) WHERE id = ?", &st, err);
    if (rc == 0)
        rc = name != NULL ? ff_db_bind_text(st, 1, name, err) : ff_db_bind_null(st, 1, err);
    if (rc == 0)
        rc = status != NULL ? ff_db_bind_text(st, 2, status, err) : ff_db_bind_null(st, 2, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 3, device_id, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "device", err);
    if (rc == 0 && ff_db_changes(db_handle(db)) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "device not found");
    return rc;
}

int db_device_delete(struct db *db, int64_t device_id, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, "DELETE FROM devices WHERE id = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, device_id, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "device", err);
    if (rc == 0 && ff_db_changes(db_handle(db)) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "device not found");
    return rc;
}

int db_env_set(struct db *db, int64_t app_id, int64_t device_id, const char *name,
               const char *value, struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = device_id > 0
                 ? prep(db, "INSERT INTO device_env(device_id, name, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (device_id, name) DO UPDATE SET value = excluded.value",
                        &st, err)
                 : prep(db, "INSERT INTO app_env(app_id, name, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (app_id, name) DO UPDATE SET value = excluded.value",
                        &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, device_id > 0 ? device_id : app_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, name, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 3, value, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    return db_step_done(db, st, "variable", err);
}

int db_env_delete(struct db *db, int64_t app_id, int64_t device_id, const char *name,
                  struct ff_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = device_id > 0
                 ? prep(db, "DELETE FROM device_env WHERE device_id = ? AND name = ?", &st, err)
                 : prep(db, "DELETE FROM app_env WHERE app_id = ? AND name = ?", &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, device_id > 0 ? device_id : app_id, err);
    if (rc == 0)
        rc = ff_db_bind_text(st, 2, name, err);
    if (rc != 0) {
        ff_db_finalize(db_handle(db), st);
        return rc;
    }
    rc = db_step_done(db, st, "variable", err);
    if (rc == 0 && ff_db_changes(db_handle(db)) == 0)
        rc = ff_err_set(err, FF_ENOTFOUND, "variable \"%s\" not set here", name);
    return rc;
}

int db_env_get(struct db *db, int64_t app_id, int64_t device_id, json_t **out,
               struct ff_err *err)
{
    json_t *vars = json_object();
    if (vars == NULL)
        return ff_err_set(err, FF_ENOMEM, "db: out of memory");
    sqlite3_stmt *st = NULL;
    /* App variables first, then the device's, so a device value replaces
     * the app's in the object. */
    int rc = prep(db, "SELECT name, value, 0 FROM app_env WHERE app_id = ?1 UNION ALL "
                  "SELECT name, value, 1 FROM device_env WHERE device_id = ?2 ORDER BY 3, 1",
                  &st, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 1, app_id, err);
    if (rc == 0)
        rc = ff_db_bind_int64(st, 2, device_id, err);
    while (rc == 0 && (rc = ff_db_step(st, err)) == 1) {
        rc = 0;
        if (json_object_set_new(vars, (const char *)sqlite3_column_text(st, 0),
                                json_string((const char *)sqlite3_column_text(st, 1))) != 0)
            rc = ff_err_set(err, FF_ENOMEM, "db: out of memory");
    }
    ff_db_finalize(db_handle(db), st);
    if (rc < 0) {
        json_decref(vars);
        return rc;
    }
    *out = vars;
    return 0;
}
